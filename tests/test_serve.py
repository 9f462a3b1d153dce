"""`deemo-edge serve` as systemd runs it: a real notify socket, the watchdog, sinks from the config."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from live_media import json_lines, make_camera_clip, make_speech, media_files

CLI = [sys.executable, "-m", "edge_app.cli"]
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def notify_socket(tmp_path):
    """A datagram socket standing in for systemd; collects every message sent to it."""
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(0.2)
    messages: list[str] = []
    done = threading.Event()

    def collect() -> None:
        while not done.is_set():
            try:
                messages.append(sock.recv(4096).decode("utf-8"))
            except TimeoutError:
                continue

    thread = threading.Thread(target=collect, daemon=True)
    thread.start()
    yield path, messages
    done.set()
    thread.join(2)
    sock.close()


def _serve(config: Path, notify: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), NOTIFY_SOCKET=str(notify), WATCHDOG_USEC="500000")
    env.pop("WATCHDOG_PID", None)
    env.pop("DISPLAY", None)
    return subprocess.run([*CLI, "serve", "--config", str(config)], capture_output=True, text=True,
                          timeout=120, cwd=ROOT, env=env)


def test_serve_notifies_systemd_and_writes_the_configured_sink(tmp_path, notify_socket):
    notify, messages = notify_socket
    speech = make_speech(tmp_path / "speech.flac")
    camera = make_camera_clip(tmp_path / "camera.mp4", seconds=8.0)
    results = tmp_path / "state" / "results.jsonl"
    config = tmp_path / "config.toml"
    config.write_text(f"""
[live]
camera = "{camera}"
mic = "{speech}"
window_s = 2.0
hop_s = 1.0
duration_s = 4.0
status_every_s = 1.0

[output]
stdout = false
jsonl_path = "{results}"
""")
    proc = _serve(config, notify)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""  # stdout sink off: results go to the file only
    kinds = [m.split("\n")[0].split("=")[0] for m in messages]
    assert "READY" in kinds and "WATCHDOG" in kinds and "STOPPING" in kinds, messages
    assert kinds.index("READY") < len(kinds) - 1 - kinds[::-1].index("STOPPING")
    assert kinds[0] in ("WATCHDOG", "STATUS")  # pings and status began before READY
    assert any(m.startswith("STATUS=") and "windows" in m for m in messages), messages
    lines = json_lines(results.read_text())
    assert len(lines) >= 2
    assert all({"start", "end", "clues", "cues", "latency_s", "dropped_windows"} <= set(r) for r in lines)
    assert media_files(results.parent) == []


def test_serve_rejects_a_bad_config_key_at_start(tmp_path, notify_socket):
    notify, messages = notify_socket
    config = tmp_path / "bad.toml"
    config.write_text('[live]\ncamra = "0"\n')
    proc = _serve(config, notify)
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("deemo-edge: error:")]
    assert len(errors) == 1 and "live.camra" in errors[0], proc.stderr
    assert "allowed: camera, mic" in errors[0]
    assert not any(m.startswith("READY=1") for m in messages)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ('[live]\nwindow_s = "long"\n', "'live.window_s' must be float"),
        ("[live]\nhop_s = 0\n", "'live.hop_s'"),
        ('[live]\ncamera = "none"\nmic = "none"\n', "nothing to analyse"),
        ('[output]\nstdout = "yes"\n', "'output.stdout' must be bool"),
    ],
)
def test_bad_live_and_output_values_name_the_key(tmp_path, body, fragment):
    from edge_app.config import load_config
    from edge_app.errors import UsageError

    config = tmp_path / "bad.toml"
    config.write_text(body)
    with pytest.raises(UsageError, match=fragment):
        load_config(str(config))
