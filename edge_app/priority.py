"""CPU priority of the live loop's best-effort threads.

On a 2-core device the camera stage (face removal) and pose keep about one core
busy on their own, and the analysis worker's LLM burst then shares the CPU with
them, which doubles its time. Those two stages can afford to fall behind: a frame
that is not de-identified in time is discarded raw (never passed on) and pose
samples fewer frames. The latency of a result cannot. So they run at a higher
nice value than the analysis worker and the microphone (audio has no slack:
a late read overflows PortAudio's buffer).

Linux applies nice per thread (`setpriority` on a thread id). Library worker
threads (MediaPipe's graph executor) inherit the nice value of the thread that
creates them, hence `build_niced`: the model is created on a short-lived thread
that lowered its own priority first. Raising the value needs no privileges;
lowering it back does, so nothing here ever touches the main thread.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import TypeVar

log = logging.getLogger("deemo_edge.live")

T = TypeVar("T")


def nice_current_thread(increment: int) -> bool:
    """Raise this thread's nice value by `increment` (Linux); False where not possible."""
    if increment <= 0:
        return False
    if not hasattr(os, "setpriority") or not hasattr(threading, "get_native_id"):
        return False
    tid = threading.get_native_id()
    try:
        current = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(19, current + increment))
    except OSError as err:  # e.g. a sandbox that forbids it: run at normal priority
        log.debug("cannot lower the priority of thread %s: %s", tid, err)
        return False
    return True


def thread_nice() -> int | None:
    """This thread's nice value (None where it cannot be read)."""
    if not hasattr(os, "getpriority") or not hasattr(threading, "get_native_id"):
        return None
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def build_niced(factory: Callable[[], T], increment: int) -> T:
    """`factory()` run on a thread whose nice value was raised by `increment`, so the
    worker threads it starts inherit the lower priority. Errors propagate."""
    if increment <= 0:
        return factory()
    result: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        nice_current_thread(increment)
        try:
            result.append(factory())
        except BaseException as err:  # noqa: BLE001 - re-raised in the caller's thread
            failure.append(err)

    worker = threading.Thread(target=run, name="deemo-edge-model-load", daemon=True)
    worker.start()
    worker.join()
    if failure:
        raise failure[0]
    return result[0]
