"""What every device shares: close() that tolerates repeats, context manager, status(),
and a bridge that runs a blocking read loop in a thread and hands results to asyncio."""
from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any, AsyncIterator, Callable

from hal.errors import DeviceClosed

log = logging.getLogger("roombox.hal")

THREAD_JOIN_TIMEOUT_S = 2.0


class Device:
    """Base of every hal device.

    Subclasses override ``_close()`` (blocking, called once) and extend ``status()``.
    ``backend`` is set by the opener to the registered backend name.
    """

    kind = "device"
    backend = "?"

    def __init__(self) -> None:
        self._closed = False
        self._lock = threading.Lock()
        self._readers: list[ThreadedReader] = []

    @property
    def is_closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Release the device. Safe to call more than once and from any thread.

        Reader threads are stopped first: releasing a PCM or camera while a thread is still
        inside its blocking read crashes the driver library (seen: pyalsaaudio segfault)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        stuck = [reader.name for reader in self._readers if not reader.stop()]
        if stuck:
            log.warning("%s: %s still blocked in a read; leaving the device open rather than "
                        "freeing it under the thread", self.kind, ", ".join(stuck))
            return
        self._close()

    def _reader(self, name: str, read: Callable[[], Any], max_queue: int) -> "ThreadedReader":
        """A ThreadedReader that close() will stop before releasing the device."""
        reader = ThreadedReader(name, read, max_queue)
        self._readers = [r for r in self._readers if r.is_running] + [reader]
        return reader

    def _close(self) -> None:
        pass

    def _check_open(self) -> None:
        if self._closed:
            raise DeviceClosed(f"{self.kind}: {self.backend} is closed")

    def status(self) -> dict[str, Any]:
        return {"kind": self.kind, "backend": self.backend, "open": not self._closed}

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class ThreadedReader:
    """Runs ``read()`` (blocking) in a thread and yields its results on the event loop.

    The queue is bounded; when the consumer falls behind, the oldest item is dropped and
    counted (live media wants the newest data, not a growing backlog). ``read()`` returning
    None ends the stream; an exception it raises is re-raised in the consumer.
    """

    def __init__(self, name: str, read: Callable[[], Any], max_queue: int = 4) -> None:
        self.name = name
        self._read = read
        self._max_queue = max_queue
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.dropped = 0
        self.delivered = 0

    @property
    def is_running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout_s: float = THREAD_JOIN_TIMEOUT_S) -> bool:
        """Ask the thread to stop after its current read and wait; False if it is stuck."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout_s)
        return not self.is_running

    async def __aiter__(self) -> AsyncIterator[Any]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue(self._max_queue)
        stop = self._stop

        def put(item: Any) -> None:
            if queue.full():
                queue.get_nowait()
                self.dropped += 1
            queue.put_nowait(item)

        def run() -> None:
            item: Any = None
            try:
                while not stop.is_set():
                    item = self._read()
                    if item is None:
                        break
                    loop.call_soon_threadsafe(put, item)
                item = None
            except BaseException as exc:  # handed to the consumer, which re-raises it
                item = exc
            finally:
                if not loop.is_closed():
                    loop.call_soon_threadsafe(put, _End(item))

        thread = self._thread = threading.Thread(target=run, name=self.name, daemon=True)
        thread.start()
        try:
            while True:
                item = await queue.get()
                if isinstance(item, _End):
                    if item.error is not None:
                        raise item.error
                    return
                self.delivered += 1
                yield item
        finally:
            stop.set()
            await asyncio.to_thread(thread.join, THREAD_JOIN_TIMEOUT_S)
            if thread.is_alive():
                log.warning("%s: reader thread still blocked after %.1f s", self.name, THREAD_JOIN_TIMEOUT_S)


class _End:
    __slots__ = ("error",)

    def __init__(self, error: BaseException | None) -> None:
        self.error = error
