"""Results published to an MQTT broker, through a bounded on-disk queue.

Delivery is at-least-once and in order per device:

* `publish` only appends the result to a SQLite queue (see `disk_queue`), so it
  never blocks on the network and a result is on disk before anything is sent.
* One worker thread owns the paho client: it connects, hands queued messages
  to paho oldest first (at most `max_inflight` unacknowledged at a time) and
  deletes a message only when the broker's PUBACK (QoS 1) arrives.
* When the connection drops, paho re-sends its unacknowledged messages first on
  reconnect, then the worker continues with the backlog, so order is kept. After
  a process restart everything still in the queue is sent again, oldest first.
  A message may therefore arrive twice; receivers de-duplicate if they care.
* Reconnects back off exponentially between `reconnect_min_s` and
  `reconnect_max_s`, with jitter so a fleet does not reconnect in lock-step.
"""

from __future__ import annotations

import collections
import logging
import os
import random
import re
import socket
import sqlite3
import threading
import time
from dataclasses import dataclass, field

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from edge_app.errors import UsageError
from edge_app.sinks.base import encode_result
from edge_app.sinks.disk_queue import DiskQueue

log = logging.getLogger("deemo_edge.sinks")

# How long one paho network pass waits for traffic; bounds the delay between a
# `publish` call and the send, and how fast `close` is noticed.
_LOOP_S = 0.1


def default_device_id() -> str:
    return socket.gethostname() or "deemo-edge"


def default_queue_dir() -> str:
    """$STATE_DIRECTORY/queue under systemd (StateDirectory=), else ~/.local/state/deemo-edge/queue."""
    state = os.environ.get("STATE_DIRECTORY")
    if state:
        return os.path.join(state.split(":")[0], "queue")
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return os.path.join(base, "deemo-edge", "queue")


@dataclass
class MqttOptions:
    """Broker, topic, credentials and queue of the MQTT sink.

    Error messages name the [output] keys (`OutputOptions`) these come from.
    """

    # Broker host name or address.
    host: str
    # Broker port (default 1883; 8883 is usual with TLS).
    port: int = 1883
    # Topic; "{device_id}" is replaced by the device id.
    topic: str = "deemo-edge/{device_id}/results"
    # Device id used in the topic and the client id; None = the host name.
    device_id: str | None = None
    # MQTT client id; None = "deemo-edge-<device id>". Must be unique per broker.
    client_id: str | None = None
    # 1 (default): each message is kept until the broker acknowledges it.
    # 0 removes it once written to the socket (may be lost); 2 waits for PUBCOMP.
    qos: int = 1
    # Broker login; None = anonymous.
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    # Read the password from this file instead (first line), so it can stay out
    # of the config file (e.g. /etc/deemo-edge/mqtt-password, mode 0640).
    password_file: str | None = None
    # Connect with TLS (default False). ca_file None = the system's CA store.
    tls: bool = False
    ca_file: str | None = None
    # Client certificate and key for brokers that require mutual TLS.
    cert_file: str | None = None
    key_file: str | None = None
    # Seconds between MQTT keep-alive pings (default 30).
    keepalive_s: int = 30
    # Seconds allowed for the TCP/TLS connect and the broker's CONNACK (default 5).
    connect_timeout_s: float = 5.0
    # Back-off between reconnect attempts: doubles from min to max (defaults 1 and 60 s).
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 60.0
    # Folder of the queue file; None = default_queue_dir().
    queue_dir: str | None = None
    # Messages kept while the broker is unreachable; when full the oldest are
    # dropped and counted (default 10000, a few MB).
    queue_max: int = 10000
    # Messages sent but not yet acknowledged, at most (default 20).
    max_inflight: int = 20
    # On close, seconds spent sending the backlog if connected (default 5);
    # what is left stays queued for the next start.
    close_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        if not self.host:
            raise UsageError("output.mqtt_host must be a host name or address")
        if not 0 < self.port < 65536:
            raise UsageError(f"output.mqtt_port must be 1..65535, got {self.port}")
        if self.qos not in (0, 1, 2):
            raise UsageError(f"output.mqtt_qos = {self.qos}; allowed: 0, 1, 2")
        if self.password is not None and self.password_file is not None:
            raise UsageError("output.mqtt_password and output.mqtt_password_file: set only one")
        if (self.cert_file is None) != (self.key_file is None):
            raise UsageError("output.mqtt_cert_file and output.mqtt_key_file go together")
        if not 0 < self.reconnect_min_s <= self.reconnect_max_s:
            raise UsageError(
                "output.mqtt_reconnect_min_s / _max_s must satisfy 0 < min <= max, "
                f"got {self.reconnect_min_s} / {self.reconnect_max_s}"
            )
        for key in ("keepalive_s", "connect_timeout_s", "queue_max", "max_inflight"):
            if getattr(self, key) <= 0:
                raise UsageError(f"output.{_output_key(key)} must be > 0, got {getattr(self, key)}")
        if self.close_timeout_s < 0:
            raise UsageError(f"output.close_timeout_s must be >= 0, got {self.close_timeout_s}")
        self.topic_name()  # validates the template

    @property
    def resolved_device_id(self) -> str:
        return self.device_id or default_device_id()

    @property
    def resolved_client_id(self) -> str:
        return self.client_id or f"deemo-edge-{self.resolved_device_id}"

    def topic_name(self) -> str:
        try:
            topic = self.topic.format(device_id=self.resolved_device_id)
        except (KeyError, IndexError, ValueError) as err:
            raise UsageError(
                f"output.mqtt_topic = {self.topic!r}: only {{device_id}} may be substituted ({err})"
            ) from None
        if not topic or "+" in topic or "#" in topic or "\0" in topic:
            raise UsageError(
                f"output.mqtt_topic = {topic!r}: must be non-empty, without + # or NUL"
            )
        return topic

    def queue_path(self) -> str:
        folder = os.path.expanduser(self.queue_dir or default_queue_dir())
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", self.resolved_client_id)
        return os.path.join(folder, f"mqtt-{safe}.sqlite3")


def _output_key(field_name: str) -> str:
    return field_name if field_name.startswith("queue") else f"mqtt_{field_name}"


class _Backoff:
    """Exponential delays from `low` to `high`, each with up to 50 % jitter."""

    def __init__(self, low: float, high: float):
        self.low, self.high = low, high
        self._next = low

    def reset(self) -> None:
        self._next = self.low

    def delay(self) -> float:
        value = self._next
        self._next = min(self._next * 2, self.high)
        return value * random.uniform(0.5, 1.0)


class MqttSink:
    """`ResultSink` publishing to MQTT; see the module docstring for delivery."""

    def __init__(self, options: MqttOptions):
        self.options = options
        self.topic = options.topic_name()
        self._queue = _open_queue(options)
        self._client = self._make_client()
        self._backoff = _Backoff(options.reconnect_min_s, options.reconnect_max_s)
        # Worker-thread state (only the worker touches paho and these three).
        self._inflight: dict[int, int] = {}  # paho mid -> queue id
        self._last_handed = 0  # highest queue id handed to paho
        self._connect_deadline: float | None = None
        self._failed_connects = 0
        # Written by paho callbacks, which run on the worker thread too.
        self._acked: collections.deque[int] = collections.deque()
        self._state = "down"  # down | connecting | up
        self._closing = threading.Event()
        self._closed = False
        self._final: tuple[int, int] | None = None  # (pending, dropped) at close
        self._failure: BaseException | None = None
        self.sent = 0  # messages acknowledged since this sink started
        self._thread = threading.Thread(target=self._run, name="deemo-edge-mqtt", daemon=True)
        self._thread.start()

    # -- public API --------------------------------------------------------

    def publish(self, result: dict) -> None:
        """Queue `result` on disk; the worker sends it. Never blocks on the network."""
        payload = encode_result(result)
        if self._closed:
            raise ValueError("mqtt sink is closed")
        self._queue.put(self.topic, payload)
        if self._failure is not None:
            # The result is safely queued; fail loudly so the service restarts.
            raise RuntimeError(f"mqtt sink worker stopped: {self._failure}") from self._failure

    def close(self) -> None:
        """Send the backlog for up to `close_timeout_s` if connected, then disconnect."""
        if self._closed:
            return
        self._closed = True
        self._closing.set()
        opts = self.options
        self._thread.join(opts.close_timeout_s + opts.connect_timeout_s + 2.0)
        if self._thread.is_alive():
            log.warning("mqtt worker did not stop in time; %d messages stay queued", self.pending)
            return
        self._final = (len(self._queue), self._queue.dropped)
        self._queue.close()
        if self._final[0]:
            log.info("mqtt sink closed; %d messages stay queued for the next start", self._final[0])

    @property
    def connected(self) -> bool:
        return self._state == "up"

    @property
    def pending(self) -> int:
        """Messages on disk not yet acknowledged by the broker."""
        return self._final[0] if self._final else len(self._queue)

    @property
    def dropped(self) -> int:
        """Messages dropped because the queue was full (over the queue file's lifetime)."""
        return self._final[1] if self._final else self._queue.dropped

    # -- worker thread -----------------------------------------------------

    def _run(self) -> None:
        try:
            self._serve()
        except Exception as err:  # re-raised to the caller of publish(), not lost with the thread
            self._failure = err
            log.exception("mqtt sink worker failed")
        finally:
            self._disconnect()

    def _serve(self) -> None:
        close_deadline: float | None = None
        while True:
            if self._closing.is_set():
                close_deadline = close_deadline or time.monotonic() + self.options.close_timeout_s
                if self._state != "up" or self._drained() or time.monotonic() >= close_deadline:
                    return
            if self._state == "down" and not self._connect():
                self._closing.wait(self._backoff.delay())
                continue
            rc = self._client.loop(timeout=_LOOP_S)
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                self._lost(paho.error_string(rc))
                continue
            if self._connack_overdue():
                self._lost(f"no CONNACK within {self.options.connect_timeout_s} s")
                continue
            if self._state == "down":  # refused in CONNACK or disconnected by the broker
                self._lost("closed by the broker")
                continue
            self._settle_acks()
            if self._state == "up":
                self._hand_over()
                self._settle_acks()  # QoS 0 "acks" arrive during publish()

    def _connect(self) -> bool:
        """Open the socket and send CONNECT; the CONNACK arrives in a later loop()."""
        if self._closing.is_set():
            return False
        opts = self.options
        try:
            self._client.reconnect()
        except OSError as err:  # refused, unreachable, DNS, TLS handshake
            self._failed_connects += 1
            # A long outage would log every attempt; the first and every 10th are enough.
            level = logging.WARNING if self._failed_connects % 10 == 1 else logging.DEBUG
            log.log(
                level,
                "mqtt %s:%d: cannot connect (%s, attempt %d); %d queued",
                opts.host,
                opts.port,
                err,
                self._failed_connects,
                self.pending,
            )
            return False
        self._state = "connecting"
        self._connect_deadline = time.monotonic() + opts.connect_timeout_s
        return True

    def _connack_overdue(self) -> bool:
        return (
            self._state == "connecting"
            and self._connect_deadline is not None
            and time.monotonic() > self._connect_deadline
        )

    def _lost(self, why: str) -> None:
        log.warning(
            "mqtt %s:%d: connection lost (%s); %d queued",
            self.options.host,
            self.options.port,
            why,
            self.pending,
        )
        self._state = "down"
        self._closing.wait(self._backoff.delay())

    def _hand_over(self) -> None:
        """Give paho the next queued messages, oldest first, up to max_inflight."""
        room = self.options.max_inflight - len(self._inflight)
        if room <= 0:
            return
        for msg in self._queue.peek(after_id=self._last_handed, limit=room):
            info = self._client.publish(
                msg.topic, msg.payload.encode("utf-8"), qos=self.options.qos
            )
            # NO_CONN: paho keeps QoS>0 messages and sends them after reconnecting.
            if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
                log.warning("mqtt publish: %s; retrying later", paho.error_string(info.rc))
                return
            self._inflight[info.mid] = msg.id
            self._last_handed = msg.id

    def _settle_acks(self) -> None:
        while self._acked:
            queue_id = self._inflight.pop(self._acked.popleft(), None)
            if queue_id is not None:
                self._queue.remove(queue_id)
                self.sent += 1

    def _drained(self) -> bool:
        return not self._inflight and len(self._queue) == 0

    def _disconnect(self) -> None:
        if self._state == "down":
            return
        self._client.disconnect()
        # Let paho write the DISCONNECT packet (on_disconnect then sets "down");
        # bounded, the broker need not answer.
        for _ in range(10):
            if (
                self._state == "down"
                or self._client.loop(timeout=_LOOP_S) != MQTTErrorCode.MQTT_ERR_SUCCESS
            ):
                break
        self._state = "down"

    # -- paho callbacks (run on the worker thread, inside loop()) -----------

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("mqtt broker %s refused the connection: %s", self.options.host, reason_code)
            self._state = "down"
            return
        self._state = "up"
        self._backoff.reset()
        self._failed_connects = 0
        log.info(
            "mqtt connected to %s:%d; %d queued", self.options.host, self.options.port, self.pending
        )

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self._state = "down"

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        self._acked.append(mid)

    def _make_client(self) -> paho.Client:
        opts = self.options
        client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=opts.resolved_client_id,
            clean_session=True,  # nothing to keep on the broker: the queue is on our disk
            protocol=paho.MQTTv311,
        )
        client.enable_logger(logging.getLogger("deemo_edge.sinks.paho"))
        client.max_inflight_messages_set(opts.max_inflight)
        client.connect_timeout = opts.connect_timeout_s
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        password = _read_password(opts)
        if opts.username is not None or password is not None:
            client.username_pw_set(opts.username, password)
        if opts.tls:
            _set_tls(client, opts)
        # Records host/port/keepalive without connecting; the worker connects.
        client.connect_async(opts.host, opts.port, keepalive=opts.keepalive_s)
        return client


def _open_queue(opts: MqttOptions) -> DiskQueue:
    path = opts.queue_path()
    try:
        return DiskQueue(path, opts.queue_max)
    except (OSError, sqlite3.Error) as err:
        raise UsageError(f"output.queue_dir: cannot open queue {path}: {err}") from None


def _read_password(opts: MqttOptions) -> str | None:
    if opts.password_file is None:
        return opts.password
    try:
        with open(opts.password_file, encoding="utf-8") as fh:
            return fh.readline().rstrip("\r\n")
    except OSError as err:
        raise UsageError(f"output.mqtt_password_file: {err}") from None


def _set_tls(client: paho.Client, opts: MqttOptions) -> None:
    try:
        client.tls_set(ca_certs=opts.ca_file, certfile=opts.cert_file, keyfile=opts.key_file)
    except (OSError, ValueError) as err:  # ssl.SSLError is an OSError
        raise UsageError(f"output.mqtt_tls: cannot load certificates: {err}") from None
