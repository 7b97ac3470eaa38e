"""Frame sources of the real-time engine: a camera (OpenCV) or a video file (FFmpeg's
libraries through :class:`fastwarp.media.video.VideoReader`): :class:`VideoSource`."""

from __future__ import annotations

import os
import time
from pathlib import Path

import cv2
import numpy as np


__all__ = ["VideoSource", "StreamError"]


class StreamError(RuntimeError):
    """The video source failed mid-stream (camera disconnected, file truncated or corrupt),
    or could not be opened; the message names the source and what happened."""


class VideoSource:
    """Frames from a camera (an int index: live; OpenCV's ``VideoCapture``) or a video file
    (:class:`~fastwarp.media.video.VideoReader`: any container FFmpeg reads, rotation applied,
    each frame's own timestamp).

    Args:
        spec: camera index, or a video file path (which stands in for a camera: it plays
            as fast as it is processed and stops at its end).
        capture: an already opened capture (anything with ``read``, ``get``, ``release``
            and ``isOpened``) to read from instead of opening ``spec``.
        live: treat the source as a live camera (default: ``spec`` is an int): read
            failures are a disconnection, and frames are dropped rather than queued when
            editing falls behind.
        pace: a video file plays at its own speed, each frame delivered at its timestamp
            (a camera's pace: ``fastwarp webcam --camera clip.mp4 --pace``), and is live:
            frames are dropped, not queued, when editing falls behind; its end is an end.
    Raises:
        StreamError: the camera or file cannot be opened.

    Attributes: ``fps`` (the source's, or 30 for a camera that reports none), ``width``,
    ``height``, ``frame_count`` (a file's declared count, else None), ``name``, ``path`` (a
    file's, else None), ``time_base`` (a file's timestamp unit, else None), ``last_time``
    (the time in seconds of the frame :meth:`read` returned last: a file's own timestamp,
    None for a camera).
    """

    def __init__(self, spec: int | str | os.PathLike, *, capture=None, live: bool | None = None,
                 pace: bool = False) -> None:
        self.live = isinstance(spec, int) or pace if live is None else bool(live)
        self.pace = bool(pace) and not isinstance(spec, int)
        self._clock: tuple[float, float] | None = None  # (wall clock, stream time) of the first paced frame
        self.name = f"camera {spec}" if isinstance(spec, int) else f"video {spec}"
        self.path: Path | None = None
        self.time_base = None
        self.colorspace: str | None = None  # a file's colour matrix ("bt601"/"bt709")
        self.last_time: float | None = None
        self.frames_read = 0
        self.skipped = 0
        self.reader = None
        if capture is None and not isinstance(spec, int):
            self._open_file(Path(spec))
            return
        if capture is None:
            if isinstance(spec, int):
                # OpenCV logs its own warnings when no camera answers; the StreamError below
                # is the one message.
                level = cv2.getLogLevel()
                cv2.setLogLevel(0)  # LOG_LEVEL_SILENT
                try:
                    capture = cv2.VideoCapture(spec)
                finally:
                    cv2.setLogLevel(level)
        self.cap = capture
        if not self.cap.isOpened():
            self.cap.release()
            raise StreamError(f"cannot open camera {spec} (no camera with that index, or another program holds it)"
                              if isinstance(spec, int)
                              else f"cannot read video {spec}: not a video OpenCV can decode")
        fps = float(self.cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if 0 < fps < 1000 else (30.0 if self.live else 25.0)
        self.width = int(self.cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        self.height = int(self.cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        count = int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.frame_count = count if count > 0 and not self.live else None

    def _open_file(self, path: Path) -> None:
        from ..media.video import VideoError, VideoReader

        try:
            self.reader = VideoReader(path)
        except VideoError as exc:
            raise StreamError(str(exc)) from None
        self.cap = None
        self.path = path
        self.fps, self.width, self.height = self.reader.fps, self.reader.width, self.reader.height
        self.frame_count = self.reader.frame_count
        self.time_base = self.reader.time_base
        self.colorspace = self.reader.colorspace

    #: Consecutive failed reads after which a camera counts as disconnected, and the pause
    #: between them (a USB camera can miss a frame or two without being gone).
    LIVE_RETRIES, LIVE_RETRY_S = 10, 0.02
    #: Extra reads a file gets past an undecodable frame before it counts as ended.
    FILE_RETRIES = 2

    def read(self) -> np.ndarray | None:
        """The next frame, ``[H, W, 3]`` uint8 BGR, or None at a file's normal end.

        Raises:
            StreamError: a camera stopped delivering frames; a file ended before the frame
                count its container declares (truncated or corrupt).
        """
        if self.reader is not None:
            return self._read_file()
        ok, frame = self.cap.read()
        retries = self.LIVE_RETRIES if self.live else self.FILE_RETRIES
        failed = 0
        while not ok or frame is None:
            failed += 1
            if failed > retries:
                return self._ended()
            if self.live:
                time.sleep(self.LIVE_RETRY_S)
            ok, frame = self.cap.read()
        if failed and not self.live:
            self.skipped += failed
        self.frames_read += 1
        if frame.ndim == 2:
            frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
        elif frame.shape[2] == 4:
            frame = cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
        return frame

    def _read_file(self) -> np.ndarray | None:
        from ..media.video import VideoError

        try:
            item = self.reader.read()
        except VideoError as exc:
            raise StreamError(str(exc)) from None
        if item is None:
            return self._ended()
        self.frames_read += 1
        frame, self.last_time = item
        return frame

    def pace_wait(self) -> None:
        """With ``pace``: sleep until the frame :meth:`read` returned last is due (its
        timestamp after the first frame's, on the wall clock), as a camera delivers it. The
        engine's decode thread calls it after timing the decode."""
        if not self.pace or self.last_time is None:
            return
        now = time.perf_counter()
        if self._clock is None:
            self._clock = (now, self.last_time)
        wait = self._clock[0] + (self.last_time - self._clock[1]) - now
        if wait > 0:
            time.sleep(wait)

    def _ended(self) -> None:
        n = self.frames_read
        if self.live and self.reader is None:  # a camera (a paced file's end is an end)
            raise StreamError(f"{self.name} stopped delivering frames after {n} frame{'s' * (n != 1)} "
                              "(disconnected?)")
        # One frame of slack: containers without a frame index give an estimate (duration x fps).
        if self.frame_count is not None and n + self.skipped < self.frame_count - 1:
            raise StreamError(f"{self.name}: decoding failed after frame {n} of the {self.frame_count} its "
                              "container declares (truncated or corrupt file)")
        return None

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()
        else:
            self.cap.release()

    def __enter__(self) -> "VideoSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
