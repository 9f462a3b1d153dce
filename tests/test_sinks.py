"""Result sinks: media refusal, stdout, rotating JSON Lines, and MQTT against a
real Mosquitto broker on loopback (started per test, killed at the end).

Every wait is bounded (`wait_until`); the whole file runs in well under a minute.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from edge_app.errors import UsageError
from edge_app.sinks import OutputOptions, close_all, encode_result, open_sinks, publish_all
from edge_app.sinks.disk_queue import DiskQueue
from edge_app.sinks.jsonl import JsonlOptions, JsonlSink
from edge_app.sinks.stdout import StdoutSink

paho = pytest.importorskip("paho.mqtt.client", reason="paho-mqtt>=2 is not installed")
from paho.mqtt.enums import CallbackAPIVersion

from edge_app.sinks.mqtt import MqttOptions, MqttSink

LOOPBACK = "127.0.0.1"
DEVICE = "test-device"
TOPIC = f"deemo-edge/{DEVICE}/results"
MOSQUITTO = shutil.which("mosquitto") or next(
    (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.access(p, os.X_OK)), None
)
needs_broker = pytest.mark.skipif(
    MOSQUITTO is None, reason="mosquitto binary not found (apt-get install mosquitto)"
)


def result(i: int) -> dict:
    return {
        "seq": i,
        "label": "neutral",
        "scores": {"neutral": 0.7, "happy": 0.3},
        "reasoning": "calm",
    }


def wait_until(predicate, timeout: float, step: float = 0.02) -> bool:
    """Poll `predicate` until true or `timeout` seconds pass (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


class Broker:
    """A Mosquitto process on a loopback port with its own config in `folder`."""

    def __init__(
        self, folder: Path, port: int | None = None, persistence: bool = False, anonymous: bool = True
    ):
        self.folder = folder
        self.port = port or free_port()
        self.persistence = persistence
        self.anonymous = anonymous
        self.log_path = folder / "mosquitto.log"
        self.proc: subprocess.Popen | None = None

    def _write_config(self) -> Path:
        lines = [f"listener {self.port} {LOOPBACK}", f"allow_anonymous {str(self.anonymous).lower()}"]
        if self.persistence:
            # Keeps the subscriber's session (subscription + queued QoS 1 messages)
            # across the restart; saved on SIGTERM.
            lines += [
                "persistence true",
                f"persistence_location {self.folder}/",
                "autosave_interval 0",
            ]
        else:
            lines.append("persistence false")
        if os.geteuid() == 0:
            lines.append("user root")  # else mosquitto drops to 'mosquitto' and cannot write folder
        conf = self.folder / "mosquitto.conf"
        conf.write_text("\n".join(lines) + "\n")
        return conf

    def start(self) -> None:
        conf = self._write_config()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([MOSQUITTO, "-c", str(conf), "-v"], stdout=log, stderr=log)
        if not wait_until(self._accepting, timeout=5.0, step=0.05):
            self.stop()
            pytest.fail(
                f"mosquitto did not start on port {self.port}:\n{self.log_path.read_text()}"
            )

    def _accepting(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            return False
        try:
            with socket.create_connection((LOOPBACK, self.port), timeout=0.2):
                return True
        except OSError:
            return False

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)


@pytest.fixture
def broker_factory(tmp_path):
    brokers: list[Broker] = []

    def make(**kwargs) -> Broker:
        folder = tmp_path / f"broker{len(brokers)}"
        folder.mkdir()
        broker = Broker(folder, **kwargs)
        brokers.append(broker)
        return broker

    yield make
    for broker in brokers:
        broker.stop(signal.SIGKILL)


class Subscriber:
    """A paho subscriber (QoS 1) that re-subscribes on every connect."""

    def __init__(self, port: int, client_id: str, clean_session: bool = True):
        self.payloads: list[dict] = []
        self._lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=clean_session,
        )
        self.client.reconnect_delay_set(min_delay=0.1, max_delay=0.5)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *args: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(LOOPBACK, port, keepalive=10)
        self.client.loop_start()
        assert self.subscribed.wait(5.0), "subscriber got no SUBACK"

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        client.subscribe(TOPIC, qos=1)

    def _on_message(self, client, userdata, message) -> None:
        with self._lock:
            self.payloads.append(json.loads(message.payload))

    def seqs(self) -> list[int]:
        with self._lock:
            return [p["seq"] for p in self.payloads]

    def unique_seqs(self) -> list[int]:
        """Arrival order with repeats (at-least-once) removed, first arrival kept."""
        seen: dict[int, None] = {}
        for s in self.seqs():
            seen.setdefault(s, None)
        return list(seen)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def mqtt_options(port: int, queue_dir: Path, **kwargs) -> MqttOptions:
    defaults = {
        "host": LOOPBACK,
        "port": port,
        "device_id": DEVICE,
        "queue_dir": str(queue_dir),
        # Fast reconnects keep the broker-restart test short.
        "reconnect_min_s": 0.1,
        "reconnect_max_s": 0.5,
        "connect_timeout_s": 2.0,
        "close_timeout_s": 3.0,
    }
    return MqttOptions(**{**defaults, **kwargs})


# -- the media check ----------------------------------------------------------

MEDIA = [
    np.zeros((4, 4, 3), np.uint8),
    b"\x00\x01",
    bytearray(b"\x00"),
    memoryview(b"\x00"),
    np.zeros(0, np.int16),
]


@pytest.mark.parametrize("media", MEDIA, ids=lambda m: type(m).__name__)
def test_encode_refuses_media_at_any_depth(media):
    for wrapped in ({"frame": media}, {"a": {"b": [1, {"c": media}]}}, {"t": (1, media)}):
        with pytest.raises(TypeError, match="never media"):
            encode_result(wrapped)


def test_encode_refuses_non_json_and_accepts_numpy_scalars():
    with pytest.raises(TypeError):
        encode_result([1, 2])  # not a dict
    with pytest.raises(TypeError):
        encode_result({"s": {1, 2}})
    with pytest.raises(TypeError):
        encode_result({"x": float("nan")})
    with pytest.raises(TypeError):
        encode_result({1: "int key"})
    text = encode_result(
        {"score": np.float32(0.25), "n": np.int64(3), "ok": np.bool_(True), "t": (1, 2)}
    )
    assert json.loads(text) == {"score": 0.25, "n": 3, "ok": True, "t": [1, 2]}


def test_every_sink_refuses_media_and_writes_nothing(tmp_path, capsys):
    frame = np.zeros((8, 8, 3), np.uint8)
    jsonl = JsonlSink(JsonlOptions(path=str(tmp_path / "r.jsonl")))
    mqtt = MqttSink(mqtt_options(free_port(), tmp_path / "q"))  # no broker: the queue is checked
    sinks = [StdoutSink(), jsonl, mqtt]
    try:
        for sink in sinks:
            with pytest.raises(TypeError):
                sink.publish({"label": "happy", "frame": frame})
        with pytest.raises(TypeError):
            publish_all(sinks, {"audio": b"\x00" * 32})
        assert mqtt.pending == 0
    finally:
        close_all(sinks)
    assert capsys.readouterr().out == ""
    assert (tmp_path / "r.jsonl").read_text() == ""


# -- stdout and JSON Lines ----------------------------------------------------


def test_stdout_prints_one_json_line_per_result(capsys):
    sink = StdoutSink()
    for i in range(3):
        sink.publish(result(i))
    sink.close()
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [0, 1, 2]


def test_jsonl_rotation_keeps_every_line(tmp_path):
    path = tmp_path / "out" / "results.jsonl"
    sink = JsonlSink(JsonlOptions(path=str(path), max_bytes=1024, backups=50, fsync=True))
    for i in range(100):
        sink.publish(result(i))
    sink.close()
    files = [Path(f"{path}.{k}") for k in range(50, 0, -1)] + [path]
    files = [f for f in files if f.exists()]
    assert len(files) > 3, "expected several rotations"
    assert all(f.stat().st_size <= 1024 for f in files)
    seqs = [json.loads(line)["seq"] for f in files for line in f.read_text().splitlines()]
    assert seqs == list(range(100))  # oldest backup first, every line once, none split


def test_jsonl_keeps_only_n_backups_and_appends_after_restart(tmp_path):
    path = tmp_path / "results.jsonl"
    options = JsonlOptions(path=str(path), max_bytes=1024, backups=2)
    sink = JsonlSink(options)
    sink.publish(result(0))
    sink.close()
    sink = JsonlSink(options)  # a restart appends to the same file
    for i in range(1, 100):
        sink.publish(result(i))
    sink.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "results.jsonl",
        "results.jsonl.1",
        "results.jsonl.2",
    ]
    files = (Path(f"{path}.2"), Path(f"{path}.1"), path)
    seqs = [json.loads(line)["seq"] for f in files for line in f.read_text().splitlines()]
    assert seqs == list(range(seqs[0], 100))  # contiguous: only whole old files fell off
    assert seqs[0] > 0


def test_output_options_validation_and_factory(tmp_path, capsys):
    with pytest.raises(UsageError, match="mqtt_qos"):
        OutputOptions(mqtt_host=LOOPBACK, mqtt_qos=3)
    with pytest.raises(UsageError, match="mqtt_topic"):
        OutputOptions(mqtt_host=LOOPBACK, mqtt_topic="x/{device}/y")
    with pytest.raises(UsageError, match="mqtt_topic"):
        OutputOptions(mqtt_host=LOOPBACK, mqtt_topic="x/#")
    with pytest.raises(UsageError, match="jsonl_backups"):
        OutputOptions(jsonl_path=str(tmp_path / "x"), jsonl_backups=-1)
    assert "secret" not in repr(OutputOptions(mqtt_host=LOOPBACK, mqtt_password="secret"))
    options = OutputOptions(
        stdout=True,
        jsonl_path=str(tmp_path / "r.jsonl"),
        mqtt_host=LOOPBACK,
        mqtt_port=free_port(),
        device_id=DEVICE,
        queue_dir=str(tmp_path / "q"),
        close_timeout_s=0.5,
    )
    sinks = open_sinks(options)
    assert [type(s).__name__ for s in sinks] == ["StdoutSink", "JsonlSink", "MqttSink"]
    publish_all(sinks, result(7))
    assert sinks[2].topic == TOPIC and sinks[2].pending == 1
    close_all(sinks)
    assert json.loads(capsys.readouterr().out)["seq"] == 7
    assert open_sinks(OutputOptions(stdout=False)) == []


# -- the disk queue -----------------------------------------------------------


def test_disk_queue_drops_oldest_and_counts_across_reopen(tmp_path):
    path = str(tmp_path / "q" / "mqtt.sqlite3")
    queue = DiskQueue(path, max_messages=5)
    dropped = [queue.put("t", json.dumps(result(i))) for i in range(8)]
    assert dropped == [0] * 5 + [1, 1, 1]
    assert len(queue) == 5 and queue.dropped == 3
    queue.close()
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    queue = DiskQueue(path, max_messages=5)
    messages = queue.peek(limit=10)
    assert [json.loads(m.payload)["seq"] for m in messages] == [3, 4, 5, 6, 7]
    queue.remove(messages[0].id)
    assert [json.loads(m.payload)["seq"] for m in queue.peek(after_id=messages[1].id)] == [5, 6, 7]
    assert len(queue) == 4 and queue.dropped == 3
    queue.close()


# -- MQTT against a real broker -------------------------------------------------


@needs_broker
def test_mqtt_publishes_every_result_in_order(broker_factory, tmp_path):
    broker = broker_factory()
    broker.start()
    subscriber = Subscriber(broker.port, "test-sub")
    sink = MqttSink(mqtt_options(broker.port, tmp_path / "q"))
    try:
        for i in range(200):
            sink.publish(result(i))
        assert wait_until(lambda: len(subscriber.unique_seqs()) >= 200, timeout=10.0)
        assert subscriber.unique_seqs() == list(range(200))
        assert wait_until(lambda: sink.pending == 0, timeout=5.0)
        assert subscriber.payloads[5] == result(5)
    finally:
        sink.close()
        subscriber.close()
    assert sink.sent == 200 and sink.dropped == 0


@needs_broker
def test_mqtt_broker_restart_loses_nothing(broker_factory, tmp_path):
    broker = broker_factory(persistence=True)
    broker.start()
    # Persistent session: the broker keeps this subscription and queues for it
    # while it reconnects, so the test does not race the publisher's reconnect.
    subscriber = Subscriber(broker.port, "test-sub-persistent", clean_session=False)
    sink = MqttSink(mqtt_options(broker.port, tmp_path / "q"))
    try:
        for i in range(20):
            sink.publish(result(i))
        assert wait_until(lambda: len(subscriber.unique_seqs()) >= 20, timeout=10.0)

        broker.stop(signal.SIGTERM)  # the broker goes away mid-run
        assert wait_until(lambda: not sink.connected, timeout=10.0)
        for i in range(20, 60):
            sink.publish(result(i))  # down: they wait in the disk queue
        time.sleep(0.3)  # a few failed reconnects happen meanwhile
        assert sink.pending == 40

        broker.start()  # same port
        assert wait_until(lambda: len(subscriber.unique_seqs()) >= 60, timeout=20.0), (
            f"got {len(subscriber.unique_seqs())}/60\n{broker.log_path.read_text()[-3000:]}"
        )
        for i in range(60, 70):
            sink.publish(result(i))
        assert wait_until(lambda: len(subscriber.unique_seqs()) >= 70, timeout=10.0)
        assert subscriber.unique_seqs() == list(range(70))  # none lost, in order
        assert wait_until(lambda: sink.pending == 0, timeout=5.0)
    finally:
        sink.close()
        subscriber.close()
    assert sink.dropped == 0


@needs_broker
def test_mqtt_refused_login_backs_off_and_keeps_results(broker_factory, tmp_path):
    broker = broker_factory(anonymous=False)
    broker.start()
    sink = MqttSink(mqtt_options(broker.port, tmp_path / "q"))
    try:
        for i in range(3):
            sink.publish(result(i))
        time.sleep(2.0)
        assert not sink.connected and sink.pending == 3
    finally:
        sink.close()
    attempts = broker.log_path.read_text().count("New connection from")
    # Back-off 0.1 -> 0.5 s (with jitter): about 6 tries in 2 s, not one per loop pass.
    assert 1 <= attempts <= 12, attempts


@needs_broker
def test_mqtt_queue_survives_process_restart(broker_factory, tmp_path):
    port = free_port()  # nothing listens yet: the first "process" never connects
    first = MqttSink(mqtt_options(port, tmp_path / "q"))
    for i in range(10):
        first.publish(result(i))
    assert first.pending == 10 and not first.connected
    first.close()

    broker = broker_factory(port=port)
    broker.start()
    subscriber = Subscriber(port, "test-sub-restart")
    second = MqttSink(mqtt_options(port, tmp_path / "q"))  # a new process, same queue
    try:
        second.publish(result(10))
        assert wait_until(lambda: len(subscriber.unique_seqs()) >= 11, timeout=10.0)
        assert subscriber.unique_seqs() == list(range(11))
        assert wait_until(lambda: second.pending == 0, timeout=5.0)
    finally:
        second.close()
        subscriber.close()


@needs_broker
def test_mqtt_full_queue_drops_oldest_and_counts(broker_factory, tmp_path):
    port = free_port()
    sink = MqttSink(mqtt_options(port, tmp_path / "q", queue_max=5))
    for i in range(8):
        sink.publish(result(i))
    assert sink.pending == 5 and sink.dropped == 3
    sink.close()

    broker = broker_factory(port=port)
    broker.start()
    subscriber = Subscriber(port, "test-sub-bound")
    sink = MqttSink(mqtt_options(port, tmp_path / "q", queue_max=5))
    try:
        assert wait_until(lambda: len(subscriber.unique_seqs()) >= 5, timeout=10.0)
        assert subscriber.unique_seqs() == [3, 4, 5, 6, 7]  # the 3 oldest were dropped
        assert sink.dropped == 3  # the count is kept in the queue file
    finally:
        sink.close()
        subscriber.close()
