"""Where results go: stdout, a rotating JSON Lines file, an MQTT broker, a timeline picture.

Sinks carry results only (labels, scores, reasoning, cue summaries, timings):
each one refuses arrays and byte buffers with TypeError (`base.encode_result`).

    sinks = open_sinks(config.output)
    try:
        for result in results:
            publish_all(sinks, result)
    finally:
        close_all(sinks)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from edge_app.errors import UsageError
from edge_app.sinks.base import ResultSink, encode_result
from edge_app.sinks.jsonl import JsonlOptions, JsonlSink
from edge_app.sinks.stdout import StdoutSink

__all__ = [
    "OutputOptions",
    "ResultSink",
    "close_all",
    "encode_result",
    "open_sinks",
    "publish_all",
]

log = logging.getLogger("deemo_edge.sinks")


@dataclass
class OutputOptions:
    """The [output] section: which sinks are on and how they are set up."""

    # Print each result as one JSON line on stdout (default True).
    stdout: bool = True
    # Append results to this JSON Lines file; None (default) = no file.
    jsonl_path: str | None = None
    # Rotate the file before it grows past this many bytes (default 10 MiB).
    jsonl_max_bytes: int = 10 * 1024 * 1024
    # Rotated files kept next to it: path.1 .. path.N (default 5).
    jsonl_backups: int = 5
    # fsync after every line: survives power cuts, costs a disk sync per result.
    jsonl_fsync: bool = False
    # MQTT broker host; None (default) = no MQTT.
    mqtt_host: str | None = None
    # Broker port (default 1883).
    mqtt_port: int = 1883
    # Topic; "{device_id}" is replaced by device_id.
    mqtt_topic: str = "deemo-edge/{device_id}/results"
    # Device id in topics and the MQTT client id; None = the host name.
    device_id: str | None = None
    # MQTT client id; None = "deemo-edge-<device_id>".
    mqtt_client_id: str | None = None
    # 1 (default): a result leaves the disk queue only when the broker acknowledged it.
    mqtt_qos: int = 1
    # Broker login; None = anonymous. Prefer mqtt_password_file to a password in this file.
    mqtt_username: str | None = None
    mqtt_password: str | None = field(default=None, repr=False)
    mqtt_password_file: str | None = None
    # TLS to the broker (default False); CA file None = the system's CA store.
    mqtt_tls: bool = False
    mqtt_ca_file: str | None = None
    # Client certificate + key for mutual TLS.
    mqtt_cert_file: str | None = None
    mqtt_key_file: str | None = None
    # MQTT keep-alive in seconds (default 30).
    mqtt_keepalive_s: int = 30
    # Seconds for connecting and for the broker's answer (default 5).
    mqtt_connect_timeout_s: float = 5.0
    # Reconnect back-off doubles from min to max seconds (defaults 1 and 60).
    mqtt_reconnect_min_s: float = 1.0
    mqtt_reconnect_max_s: float = 60.0
    # Folder of the MQTT disk queue; None = $STATE_DIRECTORY/queue under systemd,
    # else ~/.local/state/deemo-edge/queue.
    queue_dir: str | None = None
    # Results kept while the broker is unreachable; beyond, the oldest are
    # dropped and counted (default 10000).
    queue_max: int = 10000
    # Seconds spent on shutdown sending the backlog (default 5); the rest stays queued.
    close_timeout_s: float = 5.0
    # Redraw a timeline PNG of the latest windows here (live / serve); None (default) = none.
    # Needs matplotlib (the `plot` extra).
    timeline_path: str | None = None
    # Seconds between two drawings of the timeline, at most (default 10; once more at the end).
    timeline_every_s: float = 10.0
    # Windows the timeline shows: the latest ones (default 600, 20 min at a 2 s hop).
    timeline_max_windows: int = 600

    def __post_init__(self) -> None:
        # Build the sub-options once so a bad value fails when the config loads.
        self.jsonl_options()
        self.mqtt_options()

    def jsonl_options(self) -> JsonlOptions | None:
        if self.jsonl_path is None:
            return None
        return JsonlOptions(
            path=self.jsonl_path,
            max_bytes=self.jsonl_max_bytes,
            backups=self.jsonl_backups,
            fsync=self.jsonl_fsync,
        )

    def mqtt_options(self):  # -> MqttOptions | None (paho is imported only when used)
        if self.mqtt_host is None:
            return None
        return _mqtt_module().MqttOptions(
            host=self.mqtt_host,
            port=self.mqtt_port,
            topic=self.mqtt_topic,
            device_id=self.device_id,
            client_id=self.mqtt_client_id,
            qos=self.mqtt_qos,
            username=self.mqtt_username,
            password=self.mqtt_password,
            password_file=self.mqtt_password_file,
            tls=self.mqtt_tls,
            ca_file=self.mqtt_ca_file,
            cert_file=self.mqtt_cert_file,
            key_file=self.mqtt_key_file,
            keepalive_s=self.mqtt_keepalive_s,
            connect_timeout_s=self.mqtt_connect_timeout_s,
            reconnect_min_s=self.mqtt_reconnect_min_s,
            reconnect_max_s=self.mqtt_reconnect_max_s,
            queue_dir=self.queue_dir,
            queue_max=self.queue_max,
            close_timeout_s=self.close_timeout_s,
        )


def open_sinks(options: OutputOptions) -> list[ResultSink]:
    """The sinks `options` turns on, in order stdout, jsonl, mqtt, timeline (may be empty)."""
    sinks: list[ResultSink] = []
    try:
        if options.stdout:
            sinks.append(StdoutSink())
        jsonl = options.jsonl_options()
        if jsonl is not None:
            sinks.append(_open_jsonl(jsonl))
        mqtt = options.mqtt_options()
        if mqtt is not None:
            sinks.append(_mqtt_module().MqttSink(mqtt))
        if options.timeline_path is not None:  # last: drawing is the slowest publish
            sinks.append(_open_timeline(options))
    except BaseException:
        close_all(sinks)  # do not leak the ones already open
        raise
    return sinks


def _mqtt_module():
    """edge_app.sinks.mqtt, imported on first use so stdout/jsonl work without paho."""
    try:
        from edge_app.sinks import mqtt
    except ImportError as err:
        raise UsageError(
            f"output.mqtt_host is set but MQTT support is missing ({err}); "
            "install it with: pip install 'paho-mqtt>=2'"
        ) from None
    return mqtt


def _open_jsonl(options: JsonlOptions) -> JsonlSink:
    try:
        return JsonlSink(options)
    except OSError as err:
        raise UsageError(f"output.jsonl_path: cannot open {options.path}: {err}") from None


def _open_timeline(options: OutputOptions) -> ResultSink:
    from pathlib import Path

    from edge_app.sinks.timeline import TimelineSink

    folder = Path(options.timeline_path).parent
    if not folder.is_dir():
        raise UsageError(f"output.timeline_path: folder {folder} does not exist")
    if options.timeline_every_s < 0 or options.timeline_max_windows < 1:
        raise UsageError("output.timeline_every_s must be >= 0 and output.timeline_max_windows >= 1")
    try:
        return TimelineSink(options.timeline_path, options.timeline_every_s, options.timeline_max_windows)
    except UsageError:
        raise UsageError("output.timeline_path (live --plot) needs matplotlib: pip install 'deemo-edge[plot]'") from None


def publish_all(sinks: list[ResultSink], result: dict) -> None:
    """Publish to every sink. The media check runs first, so a refused result reaches none."""
    encode_result(result)
    for sink in sinks:
        sink.publish(result)


def close_all(sinks: list[ResultSink]) -> None:
    """Close every sink, also when one of them fails; the first error is raised after."""
    first: Exception | None = None
    for sink in sinks:
        try:
            sink.close()
        except Exception as err:  # noqa: BLE001 - keep closing the others, then re-raise
            log.error("closing %s failed: %s", type(sink).__name__, err)
            first = first or err
    if first is not None:
        raise first
