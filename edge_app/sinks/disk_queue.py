"""A bounded first-in-first-out message queue in one SQLite file.

The MQTT sink writes every result here before sending it and deletes it only
when the broker has acknowledged it, so results survive broker outages and
process restarts. When the queue is full the oldest messages are dropped and
counted (the count is stored in the file too): a device offline for weeks must
not fill its disk.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from dataclasses import dataclass

log = logging.getLogger("deemo_edge.sinks")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- AUTOINCREMENT: ids never reused, so id order is send order
    topic TEXT NOT NULL,
    payload TEXT NOT NULL,
    queued_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


@dataclass(frozen=True)
class QueuedMessage:
    id: int
    topic: str
    payload: str
    queued_at: float


class DiskQueue:
    """Thread-safe; one process owns a queue file at a time."""

    def __init__(self, path: str, max_messages: int):
        if max_messages < 1:
            raise ValueError(f"queue size must be >= 1, got {max_messages}")
        self.path = path
        self.max_messages = max_messages
        self._lock = threading.Lock()
        folder = os.path.dirname(path)
        if folder:
            os.makedirs(folder, mode=0o700, exist_ok=True)
        # Create the file private before SQLite opens it: results are personal data.
        os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
        # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE below).
        self._db = sqlite3.connect(
            path, timeout=10.0, isolation_level=None, check_same_thread=False
        )
        # WAL + FULL: a committed message survives a crash or a power cut.
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def put(self, topic: str, payload: str) -> int:
        """Append one message; returns how many old messages were dropped to make room."""
        with self._lock, self._transaction():
            self._db.execute(
                "INSERT INTO messages (topic, payload, queued_at) VALUES (?, ?, ?)",
                (topic, payload, time.time()),
            )
            excess = self._count() - self.max_messages
            if excess > 0:
                self._db.execute(
                    "DELETE FROM messages WHERE id IN (SELECT id FROM messages ORDER BY id LIMIT ?)",
                    (excess,),
                )
                self._db.execute(
                    "INSERT INTO counters (name, value) VALUES ('dropped', ?) "
                    "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
                    (excess,),
                )
        if excess > 0:
            log.warning(
                "queue %s full (%d): dropped %d oldest", self.path, self.max_messages, excess
            )
        return max(excess, 0)

    def peek(self, after_id: int = 0, limit: int = 100) -> list[QueuedMessage]:
        """Up to `limit` messages with id > after_id, oldest first; nothing is removed."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, topic, payload, queued_at FROM messages WHERE id > ? ORDER BY id LIMIT ?",
                (after_id, limit),
            ).fetchall()
        return [QueuedMessage(*row) for row in rows]

    def remove(self, message_id: int) -> None:
        """Delete one message (acknowledged); a message already dropped is ignored."""
        with self._lock, self._transaction():
            self._db.execute("DELETE FROM messages WHERE id = ?", (message_id,))

    def __len__(self) -> int:
        with self._lock:
            return self._count()

    @property
    def dropped(self) -> int:
        """Messages dropped because the queue was full, over the file's lifetime."""
        with self._lock:
            row = self._db.execute("SELECT value FROM counters WHERE name = 'dropped'").fetchone()
        return row[0] if row else 0

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _count(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM messages").fetchone()[0]

    def _transaction(self):
        return _Transaction(self._db)


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK when the block raises."""

    def __init__(self, db: sqlite3.Connection):
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, exc, tb) -> None:
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")
