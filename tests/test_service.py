"""sd_notify and the watchdog, against a real unix datagram socket standing in for systemd."""

from __future__ import annotations

import os
import socket
import time
import uuid

import pytest

from edge_app import service


@pytest.fixture
def systemd_socket(tmp_path, monkeypatch):
    """A bound datagram socket at a path, exported as $NOTIFY_SOCKET."""
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2.0)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    yield sock
    sock.close()


def received(sock: socket.socket) -> str:
    return sock.recv(4096).decode("utf-8")


def test_no_systemd_means_no_ops(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    assert service.notify_ready("x") is False
    assert service.notify_watchdog() is False
    assert service.watchdog_interval() is None
    dog = service.Watchdog().start()
    assert dog._thread is None  # nothing runs without a watchdog
    dog.stop()


def test_ready_status_stopping_reach_the_socket(systemd_socket):
    assert service.notify_ready("models loaded\ncamera 0")
    assert received(systemd_socket) == "READY=1\nSTATUS=models loaded camera 0"
    assert service.notify_status("window 12")
    assert received(systemd_socket) == "STATUS=window 12"
    assert service.notify_watchdog()
    assert received(systemd_socket) == "WATCHDOG=1"
    assert service.notify_stopping()
    assert received(systemd_socket) == "STOPPING=1"


def test_abstract_namespace_socket(monkeypatch):
    name = f"deemo-edge-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        sock.settimeout(2.0)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert service.notify("READY=1")
        assert received(sock) == "READY=1"


def test_unreachable_socket_returns_false(tmp_path, monkeypatch):
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens"))
    assert service.notify_ready() is False


def test_watchdog_interval_is_half_of_watchdog_usec(monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert service.watchdog_interval() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert service.watchdog_interval() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert service.watchdog_interval() is None  # meant for another process
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    monkeypatch.setenv("WATCHDOG_USEC", "soon")
    assert service.watchdog_interval() is None


def test_watchdog_thread_pings_while_healthy(systemd_socket, monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "100000")  # 0.1 s -> a ping every 0.05 s
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    beat = service.Heartbeat(max_age_s=0.3)
    with service.Watchdog(healthy=beat) as dog:
        assert dog.interval == pytest.approx(0.05)
        assert [received(systemd_socket) for _ in range(3)] == ["WATCHDOG=1"] * 3
        # The pipeline stops beating: after max_age_s the pings stop.
        deadline = time.monotonic() + 2.0
        while beat() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not beat()
        time.sleep(0.1)  # let a ping already on its way arrive
        systemd_socket.settimeout(0.05)
        for _ in range(100):  # drain the few pings sent before the beat went stale
            try:
                systemd_socket.recv(4096)
            except TimeoutError:
                break
        systemd_socket.settimeout(0.3)
        with pytest.raises(TimeoutError):
            systemd_socket.recv(4096)
        beat.beat()  # progress again: pings resume
        systemd_socket.settimeout(2.0)
        assert received(systemd_socket) == "WATCHDOG=1"
    assert dog._thread is None and dog.pings >= 4
