"""Ordered background writes: a `Writer` runs the calls it is given one at a time, in the order given,
on one thread of its own, so that the caller (the Tune driver's event loop, for `deepdiff_study.tracker`)
goes on at once instead of waiting for a store.

- Bounded: at most `limit` calls wait; a caller submitting more waits for room (the loop slows down
  rather than memory growing without end while the store is slow).
- Nothing lost at a clean stop: `close` (and, for a process that exits without it, an exit hook) runs
  every call submitted before it. A process killed outright loses the calls still waiting.
- Failures are not hidden: the first exception a call raises is raised again, to the caller, by its
  next `submit`, `flush` or `close` (the calls after a failed one are dropped: they may depend on it).
"""

from __future__ import annotations

import atexit
import queue
import threading
import weakref
from collections.abc import Callable
from typing import Any

LIMIT = 10_000  # calls waiting at most: a few per trial result, so minutes of a 460-trial study's results
_STOP = object()  # the last item a writer's thread takes


class Writer:
    """One thread running submitted calls in order; see the module docstring. `name` names the thread."""

    def __init__(self, name: str, *, limit: int = LIMIT) -> None:
        self.name = name
        self._queue: queue.Queue = queue.Queue(maxsize=limit)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def submit(self, call: Callable[..., Any], *args: Any) -> None:
        """Run ``call(*args)`` after every call submitted before it (waits only while `limit` calls wait)."""
        self._raise_error()
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()
            atexit.register(_close_at_exit, weakref.ref(self))
        self._queue.put((call, args))

    def flush(self) -> None:
        """Wait until every call submitted so far has run; raise the first one's exception, if any."""
        if self._thread is not None:
            self._queue.join()
        self._raise_error()

    def close(self) -> None:
        """`flush`, then end the thread (a later `submit` starts another)."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put((_STOP, ()))
            thread.join()
        self._raise_error()

    @property
    def waiting(self) -> int:
        """Calls submitted and not yet run."""
        return self._queue.unfinished_tasks

    def _run(self) -> None:
        while True:
            call, args = self._queue.get()
            try:
                if call is _STOP:
                    return
                if self._error is None:
                    call(*args)
            except BaseException as err:  # noqa: BLE001 - handed to the caller by _raise_error
                self._error = err
            finally:
                self._queue.task_done()

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error


def _close_at_exit(ref: weakref.ref) -> None:
    writer = ref()
    if writer is not None and writer._thread is not None:  # noqa: SLF001 - its own module
        try:
            writer.close()
        except BaseException:  # noqa: BLE001 - at exit the caller is gone; the failure was raised to it or is lost
            pass
