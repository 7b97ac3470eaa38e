"""The threads around the real-time engine's editing loop: decode, optionally locate
(landmarks and crops, on a GPU), and encode, each behind a bounded queue.

:class:`StreamThreads` hands the caller one :class:`Work` item at a time
(:meth:`StreamThreads.next`) and takes the edited frame back (:meth:`StreamThreads.emit`);
the caller's thread only edits. A camera's queues hold one frame, the newest: older ones
are dropped when editing falls behind (counted in ``stats.dropped``), so editing never
works on a stale frame. A file's frames are all kept, in order.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from .sources import StreamError, VideoSource
from .stats import RealtimeStats

__all__ = ["StreamThreads", "Work"]

_END = object()  # the encode queue's end marker
_POLL_S = 0.05   # how often a blocked thread looks at the stop flag


@dataclass
class Work:
    """One item for the editing loop: a decoded frame (``frame``, ``index``, ``t``), or the
    same already located (``located``: what the ``locate`` callable returned), or the end of
    the stream (``end`` = ``(stop, error)``: ``("end", None)``, ``("read_failed", message)``
    or ``("failed", None)``). ``ready``: ``time.perf_counter()`` when it was decoded."""

    index: int = -1
    frame: np.ndarray | None = None
    t: float = 0.0
    ready: float = 0.0
    located: Any = None
    end: tuple[str, str | None] | None = None


class StreamThreads:
    """Decode (and locate) ahead of the editing loop, encode behind it.

    Args:
        source: the frames (:class:`VideoSource`); its ``live`` decides the queue policy.
        sinks: objects with ``write(frame, t)`` (``t``: the frame's time in seconds), written in
            order on the encode thread.
        stats: where decode, encode and latency times, frames, drops and skips are counted.
        locate: ``locate(frame, t, index)`` run on a thread of its own, so that it overlaps
            the editing of the previous frame; None: the editing loop locates.
        queue_size: capacity of a file's queues (a camera's hold one frame).

    Use :meth:`start`, then :meth:`next` / :meth:`emit` until the end, then :meth:`close`
    (always, e.g. in ``finally``) and :meth:`raise_failure`.
    """

    def __init__(self, source: VideoSource, sinks: Sequence, stats: RealtimeStats, *,
                 locate: Callable[[np.ndarray, float, int], Any] | None = None, queue_size: int = 4) -> None:
        self.source, self.sinks, self.stats, self.locate = source, list(sinks), stats, locate
        self.live = source.live
        depth = 1 if self.live else max(1, queue_size)
        self._decoded: queue.Queue = queue.Queue(maxsize=depth)
        self._located: queue.Queue = queue.Queue(maxsize=depth)
        self._encoded: queue.Queue = queue.Queue(maxsize=max(1, queue_size))
        self._stop = threading.Event()
        self._failure: dict[str, BaseException] = {}
        self._decoder = threading.Thread(target=self._decode, name="fastwarp-decode", daemon=True)
        self._locator = threading.Thread(target=self._locate, name="fastwarp-landmarks", daemon=True)
        self._encoder = threading.Thread(target=self._encode, name="fastwarp-encode", daemon=True)
        self._threads = [self._decoder, self._locator, self._encoder] if locate else [self._decoder, self._encoder]

    # --- the editing loop's side -----------------------------------------------------------

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    @property
    def encode_failed(self) -> bool:
        return "encode" in self._failure

    def next(self) -> Work | None:
        """The next item (its ``end`` set at the end of the stream), or None once stopped."""
        if self.locate is not None:
            return self._get(self._located, self._locator)
        return self._get(self._decoded, self._decoder)

    def emit(self, frame: np.ndarray, ready: float, t: float | None = None) -> bool:
        """Queue an edited frame shown at ``t`` seconds for the sinks; False once the stream
        has stopped."""
        return self._put(self._encoded, (frame, ready, t))

    def close(self) -> None:
        """Stop decoding; frames already emitted are still encoded; join the threads."""
        self._stop.set()
        while self._encoder.is_alive():
            try:
                self._encoded.put(_END, timeout=_POLL_S)
                break
            except queue.Full:
                continue
        if self._encoder.ident is not None:
            self._encoder.join()
        for thread in self._threads:
            if thread.ident is not None:
                thread.join(timeout=5)

    def raise_failure(self) -> None:
        """Re-raise an error of a thread (the encoder's first, then locate's, then decode's)."""
        for where in ("encode", "landmarks", "decode"):
            if where in self._failure:
                raise self._failure[where]

    # --- queues ------------------------------------------------------------------------------

    def _put(self, q: queue.Queue, item) -> bool:
        while not self._stop.is_set():
            try:
                q.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _get(self, q: queue.Queue, producer: threading.Thread):
        while not self._stop.is_set():
            try:
                return q.get(timeout=_POLL_S)
            except queue.Empty:
                if not producer.is_alive() and q.empty():
                    return Work(end=("end", None))
        return None

    def _put_newest(self, q: queue.Queue, item) -> None:
        while True:  # a camera: the newest frame wins, the oldest is dropped when full
            try:
                q.put_nowait(item)
                return
            except queue.Full:
                try:
                    q.get_nowait()
                    self.stats.dropped += 1
                except queue.Empty:
                    pass

    # --- the threads -------------------------------------------------------------------------

    def _decode(self) -> None:
        index, end = 0, ("end", None)
        try:
            while not self._stop.is_set():
                t0 = time.perf_counter()
                try:
                    frame = self.source.read()
                except StreamError as exc:
                    end = ("read_failed", str(exc))
                    break
                t1 = time.perf_counter()
                if frame is None:
                    break
                self.stats.samples_ms["decode"].append((t1 - t0) * 1e3)
                if getattr(self.source, "pace", False):  # a file played as a camera: the frame arrives when due
                    self.source.pace_wait()
                    t1 = time.perf_counter()
                stamp = getattr(self.source, "last_time", None)  # a file's own timestamp (variable rate kept)
                t = stamp if stamp is not None else (time.monotonic() if self.live else index / self.source.fps)
                work = Work(index=index, frame=frame, t=t, ready=t1)
                index += 1
                if self.live:
                    self._put_newest(self._decoded, work)
                elif not self._put(self._decoded, work):
                    return
        except BaseException as exc:  # noqa: BLE001  (re-raised on the editing thread)
            self._failure["decode"] = exc
            end = ("failed", None)
        self.stats.skipped = getattr(self.source, "skipped", 0)
        self._put(self._decoded, Work(end=end))

    def _locate(self) -> None:
        try:
            while True:
                work = self._get(self._decoded, self._decoder)
                if work is None:
                    return
                if work.end is None:
                    work.located = self.locate(work.frame, work.t, work.index)
                if not self._put(self._located, work) or work.end is not None:
                    return
        except BaseException as exc:  # noqa: BLE001
            self._failure["landmarks"] = exc
            self._put(self._located, Work(end=("failed", None)))

    def _encode(self) -> None:
        try:
            while True:
                item = self._encoded.get()
                if item is _END:
                    return
                frame, ready, t = item
                t0 = time.perf_counter()
                for sink in self.sinks:
                    sink.write(frame, t)
                t1 = time.perf_counter()
                self.stats.samples_ms["encode"].append((t1 - t0) * 1e3)
                self.stats.samples_ms["latency"].append((t1 - ready) * 1e3)
                self.stats.frames += 1
        except BaseException as exc:  # noqa: BLE001
            self._failure["encode"] = exc
            self._stop.set()
