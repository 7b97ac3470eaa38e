"""Frame sinks of the real-time engine: a video file written through a temp file and a rename
(:class:`VideoFileSink`) and a virtual camera (:class:`VirtualCamSink`, pyvirtualcam)."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np


__all__ = ["VideoFileSink", "VirtualCamSink", "SinkError", "FrameSizeError"]


class SinkError(RuntimeError):
    """An output (video file, virtual camera) could not be opened or written."""


class FrameSizeError(ValueError):
    """A frame of a stream differs in size from the stream's first frame."""


class VideoFileSink:
    """Writes frames to a video file with OpenCV's ``VideoWriter``.

    Open it on a temporary path (:func:`fastwarp._io.atomic_path`) and :meth:`close` it
    before the rename: ``close`` finalises the container, so the file is a valid video of
    every frame written, whenever the stream stopped.

    Args:
        path: the file to write (its suffix picks the container).
        fps: frames per second recorded in the file.
        size: ``(width, height)``; if the first frame differs (a camera that reported
            another size) the writer is reopened at the frame's size.
        fourcc: codec (default ``mp4v``).
    Raises:
        SinkError: OpenCV cannot write this container/codec.
    """

    def __init__(self, path: str | os.PathLike, fps: float, size: tuple[int, int], fourcc: str = "mp4v") -> None:
        self.path, self.fps, self.fourcc = Path(path), float(fps), fourcc
        self.frames = 0
        self._open(size)

    def _open(self, size: tuple[int, int]) -> None:
        self.size = (int(size[0]), int(size[1]))
        self.writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*self.fourcc), self.fps, self.size)
        if not self.writer.isOpened():
            raise SinkError(f"cannot write video {self.path} with codec {self.fourcc!r} (try an .mp4 output)")

    def write(self, frame: np.ndarray) -> None:
        size = (frame.shape[1], frame.shape[0])
        if size != self.size:
            if self.frames:
                raise SinkError(f"frame size changed from {self.size[0]}x{self.size[1]} to {size[0]}x{size[1]}")
            self.writer.release()
            self._open(size)
        self.writer.write(frame)
        self.frames += 1

    def close(self) -> None:
        """Finalise the file (safe to call twice)."""
        self.writer.release()


class VirtualCamSink:
    """Sends frames to a virtual camera (pyvirtualcam: v4l2loopback on Linux, OBS on
    Windows/macOS) that video-call applications can pick as a webcam.

    Raises:
        SinkError: pyvirtualcam is missing, or no virtual camera device exists (on Linux:
            no v4l2loopback device; the message says how to create one).
    """

    def __init__(self, width: int, height: int, fps: float) -> None:
        try:
            import pyvirtualcam
        except ImportError:
            raise SinkError("--virtual-cam needs pyvirtualcam (pip install pyvirtualcam)") from None
        try:
            self.cam = pyvirtualcam.Camera(width=int(width), height=int(height), fps=float(fps),
                                           fmt=pyvirtualcam.PixelFormat.BGR)
        except Exception as exc:
            detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if os.name == "posix" and "v4l2" in detail.lower():
                raise SinkError("--virtual-cam needs a v4l2loopback video device and none was found at "
                                "/dev/video*: load the kernel module first (sudo modprobe v4l2loopback devices=1 "
                                f"exclusive_caps=1); pyvirtualcam said: {detail}") from None
            raise SinkError(f"--virtual-cam: no virtual camera could be opened: {detail}") from None
        self.size = (int(width), int(height))
        self.device = getattr(self.cam, "device", "virtual camera")

    def write(self, frame: np.ndarray) -> None:
        if (frame.shape[1], frame.shape[0]) != self.size:
            frame = cv2.resize(frame, self.size, interpolation=cv2.INTER_AREA)
        self.cam.send(np.ascontiguousarray(frame))

    def close(self) -> None:
        self.cam.close()
