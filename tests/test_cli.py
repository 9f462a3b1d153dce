"""`deemo-edge file` end to end, on real media, including every kind of bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import count_frames, label_colour_pixels, write_video

from edge_app.cli import build_parser
from edge_app.errors import UsageError

CLI = [sys.executable, "-m", "edge_app.cli"]


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=600, cwd=cwd)


def assert_one_line_error(proc: subprocess.CompletedProcess, code: int, fragment: str) -> None:
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("deemo-edge: error:")]
    assert len(errors) == 1, proc.stderr
    assert fragment in errors[0]


def test_help_documents_every_flag_and_default():
    text = build_parser()._subparsers._group_actions[0].choices["file"].format_help()
    for flag in ("--json", "--save-anonymized", "--window", "--hop", "--mask", "--quiet",
                 "--config", "--seed", "--pose-fps", "--face-backend", "--plot", "--dereverb"):
        assert flag in text
    assert "exit codes" in text and "default" in text


def test_sample_clip_end_to_end(sample_clip, tmp_path):
    out_json, out_video, plot = tmp_path / "r.json", tmp_path / "anon.mp4", tmp_path / "t.png"
    proc = run("file", str(sample_clip), "--json", str(out_json), "--plot", str(plot),
               "--save-anonymized", str(out_video), "--seed", "1", "--quiet")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out_json.read_text())
    assert result["input"] == str(sample_clip)
    assert result["duration_s"] > 3
    assert result["windows"] and all(w["end"] > w["start"] for w in result["windows"])
    privacy = result["privacy"]
    assert privacy["frames_seen"] > 0 and privacy["frames_dropped"] == 0
    assert privacy["faces_masked"] > 0
    assert privacy["voice_method"]
    assert 0.0 <= privacy["voice_gain_db"] <= 40.0  # the output level control's gain, dB
    assert {"decode_deid", "pose", "audio_deid", "total"} <= set(result["timings"])
    # the body of the person is visible in the sample: some window has body cues
    assert any(w["cues"]["body"] for w in result["windows"])
    assert any(w["cues"]["prosody"] for w in result["windows"])
    # the anonymised copy keeps frame count, rate and duration, and carries audio
    n_in, dur_in, _ = count_frames(sample_clip)
    n_out, dur_out, has_audio = count_frames(out_video)
    assert n_out == n_in
    assert abs(dur_out - dur_in) < 0.1
    assert has_audio
    # the timeline picture shows the answer: the overall label's colour fills a window's bar
    assert label_colour_pixels(plot, result["label"]) > 5000


@pytest.mark.parametrize(
    "content, fragment",
    [(None, "no such file"), (b"", "empty"), (b"not a video\n" * 50, "not a readable media file")],
    ids=["missing", "empty", "not-media"],
)
def test_bad_single_input_is_one_line_error(tmp_path, content, fragment):
    path = tmp_path / "clip.mp4"
    if content is not None:
        path.write_bytes(content)
    proc = run("file", str(path), "--quiet")
    assert_one_line_error(proc, 3, fragment)
    assert proc.stdout == ""


@pytest.mark.parametrize("content, fragment", [(b"not a model\n" * 20, "not a GGUF file"),
                                               (b"GGUF\x03\x00\x00\x00" + bytes(24), "could not load")],
                         ids=["not-gguf", "empty-gguf"])  # fmt: skip
def test_wrong_model_file_is_the_only_line_on_stderr(sample_clip, tmp_path, content, fragment):
    """A bad --model fails before MediaPipe starts (its threads would log after the error)."""
    pytest.importorskip("llama_cpp")
    model = tmp_path / "model.gguf"
    model.write_bytes(content)
    proc = run("file", str(sample_clip), "--model", str(model), "--quiet")
    assert_one_line_error(proc, 3, fragment)
    assert proc.stderr.strip().count("\n") == 0, proc.stderr


@pytest.mark.parametrize("flag", ["--json", "--plot", "--save-anonymized"])
def test_missing_output_folder_is_a_usage_error_before_any_work(sample_clip, tmp_path, flag):
    proc = run("file", str(sample_clip), flag, str(tmp_path / "nope" / "out.x"), "--quiet")
    assert_one_line_error(proc, 2, f"folder {tmp_path / 'nope'} does not exist")


def test_a_timeline_that_cannot_be_drawn_keeps_the_result(sample_clip, tmp_path):
    pytest.importorskip("matplotlib")
    blocked = tmp_path / "t.png"
    blocked.mkdir()  # a folder where the picture should go: the drawing fails after the analysis
    out_json = tmp_path / "r.json"
    proc = run("file", str(sample_clip), "--json", str(out_json), "--plot", str(blocked), "--quiet", "--cues-only")
    assert_one_line_error(proc, 3, f"timeline {blocked} not drawn")
    assert json.loads(out_json.read_text())["windows"]  # the analysis is not lost


def test_truncated_file_keeps_what_decodes(sample_clip, tmp_path):
    data = sample_clip.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    proc = run("file", str(cut), "--quiet")
    assert "Traceback" not in proc.stderr
    # Either a clean one-line input error (index lost) or a partial result: never a crash.
    if proc.returncode == 3:
        assert_one_line_error(proc, 3, str(cut))
    else:
        assert proc.returncode == 0
        assert json.loads(proc.stdout)["windows"]


def test_several_inputs_jsonl_in_order_with_error_line(sample_clip, angry_flac, tmp_path):
    out = tmp_path / "all.jsonl"
    anon = tmp_path / "anon"
    proc = run("file", str(angry_flac), str(tmp_path / "nope.wav"), str(sample_clip),
               "--json", str(out), "--save-anonymized", str(anon), "--quiet", "--seed", "3",
               "--plot", str(tmp_path / "plots"))
    assert proc.returncode == 3
    assert "Traceback" not in proc.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["input"] for line in lines] == [str(angry_flac), str(tmp_path / "nope.wav"),
                                                  str(sample_clip)]
    assert "error" in lines[1] and "error" not in lines[0] and "error" not in lines[2]
    assert (anon / f"{angry_flac.stem}.anon.wav").exists()
    assert (anon / "sample.anon.mp4").exists()
    plots = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert plots == sorted([f"{angry_flac.stem}.timeline.png", "sample.timeline.png"])
    # an audio-only clip is still drawn (no body events), in its answer's colour
    assert label_colour_pixels(tmp_path / "plots" / f"{angry_flac.stem}.timeline.png", lines[0]["label"]) > 5000


def test_audio_only_input(angry_flac, tmp_path):
    wav = tmp_path / "voice.wav"
    proc = run("file", str(angry_flac), "--save-anonymized", str(wav), "--quiet", "--window", "2",
               "--seed", "0")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["media"]["has_video"] is False
    assert len(result["windows"]) >= 1
    assert all(w["cues"]["body"] is None for w in result["windows"])
    # speech is found in the de-identified voice (the share varies with the random alpha)
    assert max(w["cues"]["prosody"]["voiced_ratio"] for w in result["windows"]) > 0.1
    assert result["label"] in result["scores"] and result["reasoning"]
    import soundfile as sf

    anon, sr = sf.read(wav)
    original, sr0 = sf.read(angry_flac)
    assert sr == sr0 and abs(len(anon) - len(original)) <= sr // 100
    assert not np.allclose(anon[: len(original)], original[: len(anon)], atol=1e-2)


def test_no_person_no_audio_still_works(tmp_path):
    rng = np.random.default_rng(0)
    frames = [np.full((180, 320, 3), 40 + i, np.uint8) for i in range(40)]
    for f in frames:
        f[60:120, 100:200] = rng.integers(0, 255, (60, 100, 3), dtype=np.uint8)
    clip = write_video(tmp_path / "empty_room.mp4", frames)
    proc = run("file", str(clip), "--quiet")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["media"]["has_audio"] is False
    assert result["privacy"]["faces_masked"] == 0
    assert result["privacy"]["voice_method"] is None
    assert result["privacy"]["voice_gain_db"] is None
    for window in result["windows"]:
        body = window["cues"]["body"]
        assert body is None or body["person_visible_ratio"] == 0


def test_huge_and_variable_frame_rate_inputs(tmp_path):
    big = [np.full((2160, 3840, 3), 90, np.uint8) for _ in range(6)]
    huge = write_video(tmp_path / "huge.mp4", big, fps=10)
    times = [0.0, 0.04, 0.07, 0.2, 0.24, 0.5, 0.55, 0.9, 1.0, 1.3]
    vfr = write_video(tmp_path / "vfr.mp4", [np.full((120, 160, 3), 128, np.uint8)] * len(times),
                      fps=10, times=times)
    out = tmp_path / "r.jsonl"
    proc = run("file", str(huge), str(vfr), "--json", str(out), "--quiet",
               "--save-anonymized", str(tmp_path / "anon"))
    assert proc.returncode == 0, proc.stderr
    huge_result, vfr_result = [json.loads(line) for line in out.read_text().splitlines()]
    assert any("downscaled" in w for w in huge_result["warnings"])
    assert vfr_result["privacy"]["frames_out"] == len(times)
    n, duration, _ = count_frames(tmp_path / "anon" / "vfr.anon.mp4")
    assert n == len(times)
    assert abs(duration - 1.3) < 0.25


def test_folder_and_glob_inputs(sample_clip, tmp_path):
    folder = tmp_path / "clips"
    folder.mkdir()
    shutil.copy(sample_clip, folder / "a.mp4")
    (folder / "readme.txt").write_text("not media")
    proc = run("file", str(folder), str(tmp_path / "clips" / "*.mp4"), "--quiet", "--window", "3")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 2 and all(json.loads(x)["input"].endswith("a.mp4") for x in lines)


def test_config_errors_name_the_key(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[video]\nmask = "sparkles"\n')
    proc = run("file", "whatever.mp4", "--config", str(cfg))
    assert_one_line_error(proc, 2, "video.mask")
    cfg.write_text("[video]\nmask_colour = 1\n")
    assert_one_line_error(run("config", "--config", str(cfg)), 2, "video.mask_colour")
    proc = run("config")
    assert proc.returncode == 0 and "[video]" in proc.stdout and "window_s" in proc.stdout
    # out-of-range values are caught at start (exit 2), not when the first input is processed
    cfg.write_text("[voice]\nltas_norm_strength = 3\n")
    assert_one_line_error(run("file", "whatever.mp4", "--config", str(cfg)), 2, "ltas_norm_strength")


def test_config_tuples_from_toml_arrays(tmp_path):
    from edge_app.config import load_config

    cfg = tmp_path / "c.toml"
    cfg.write_text('[voice]\nmethod = "pitch+vtl"\nalpha_range = [0.6, 0.7]\nformant_scale_range = [0.8, 1.25]\n')
    voice = load_config(str(cfg)).voice
    assert voice.alpha_range == (0.6, 0.7) and voice.vtl_range == (0.8, 1.25) and voice.ltas_strength == 1.0
    cfg.write_text('[voice]\nformant_scale_range = "wide"\n')
    with pytest.raises(UsageError, match=r"voice\.formant_scale_range"):
        load_config(str(cfg))


def test_unknown_flag_is_usage_error():
    proc = run("file", "x.mp4", "--no-such-flag")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr


def test_config_overrides_reach_nested_tables():
    from edge_app.config import load_config

    config = load_config(None, {"answer.llm.n_threads": 1, "answer.llm": {"model_path": "m.gguf"},
                                "live.capture_nice": 0, "voice.seed": None})
    assert config.answer.llm.n_threads == 1 and config.answer.llm.model_path == "m.gguf"
    assert config.live.capture_nice == 0 and config.voice.seed is None
