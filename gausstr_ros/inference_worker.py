"""A latest-only worker thread: a one-slot mailbox in front of a slow handler.

`submit(item)` never blocks: it replaces an item still waiting (which is dropped and counted), so
when the handler is slower than the input only the newest item is processed and memory holds at
most two items (the one running and the one waiting).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass
class WorkerStats:
    submitted: int = 0
    dropped: int = 0  # replaced before the handler took them
    processed: int = 0  # handler returned (or raised)
    failed: int = 0  # handler raised


class LatestOnlyWorker:
    """Runs `handler(item)` in one thread on the newest submitted item.

    on_error(item, exception) is called (in the worker thread) when the handler raises; the worker
    keeps running.
    """

    def __init__(self, handler: Callable[[Any], None], on_error: Callable[[Any, BaseException], None],
                 name: str = "inference") -> None:
        self._handler = handler
        self._on_error = on_error
        self._cond = threading.Condition()
        self._slot: Any = None
        self._has_item = False
        self._busy = False
        self._stopping = False
        self.stats = WorkerStats()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, item: Any) -> bool:
        """Queue `item`; True if it replaced a waiting item (then counted in stats.dropped)."""
        with self._cond:
            if self._stopping:
                raise RuntimeError("LatestOnlyWorker: submit after stop")
            replaced = self._has_item
            self._slot, self._has_item = item, True
            self.stats.submitted += 1
            self.stats.dropped += int(replaced)
            self._cond.notify()
        return replaced

    def discard(self) -> bool:
        """Drop a waiting item (counted in stats.dropped); True if there was one. A running handler goes on."""
        with self._cond:
            had, self._slot, self._has_item = self._has_item, None, False
            self.stats.dropped += int(had)
            self._cond.notify_all()
        return had

    def wait_idle(self, timeout_s: float) -> bool:
        """Block until nothing is waiting or running (True), or timeout_s passes (False)."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._has_item and not self._busy, timeout_s)

    def stop(self, timeout_s: float = 30.0) -> None:
        """Discard a waiting item, let a running handler finish, end the thread."""
        with self._cond:
            self._stopping = True
            self._slot, self._has_item = None, False
            self._cond.notify_all()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._has_item or self._stopping)
                if self._stopping:
                    return
                item, self._slot, self._has_item = self._slot, None, False
                self._busy = True
            try:
                self._handler(item)
            except Exception as err:  # noqa: BLE001 -- reported, the worker must survive bad input
                self.stats.failed += 1
                self._on_error(item, err)
            finally:
                with self._cond:
                    self._busy = False
                    self.stats.processed += 1
                    self._cond.notify_all()
