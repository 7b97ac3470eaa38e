"""Frame sinks of the real-time engine: a video file written through a temp file and a rename
(:class:`VideoFileSink`, FFmpeg's libraries through PyAV) and a virtual camera
(:class:`VirtualCamSink`, pyvirtualcam)."""

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
    """Writes the edited frames to a video file (:class:`fastwarp.media.video.VideoWriter`:
    H.264 by default, at each frame's own time, the source file's audio carried over).

    Open it on a temporary path (:func:`fastwarp._io.atomic_path`) and :meth:`close` it
    before the rename: ``close`` finalises the container, so the file is a valid video of
    every frame written, whenever the stream stopped.

    Args:
        path: the file to write (its suffix picks the container: .mp4, .m4v, .mov, .mkv, .webm).
        source: the :class:`~fastwarp.realtime.VideoSource` the frames come from: its rate,
            size and timestamp unit, and a file's audio and subtitle streams (carried over).
            A camera's frames are stamped by the clock from the first one on.
        codec, crf: see :class:`~fastwarp.media.video.VideoWriter` (default: the container's
            codec, H.264 at CRF 18).
        audio: carry a source file's audio over (default True).
        name: the path named in messages (the user's, when ``path`` is a temporary file).
    Raises:
        SinkError: an unknown container or codec, or FFmpeg cannot write the file.
    """

    def __init__(self, path: str | os.PathLike, source, *, codec: str | None = None, crf: int | None = None,
                 audio: bool = True, name: str | os.PathLike | None = None) -> None:
        from ..media.video import VideoError, VideoWriter

        self.path = Path(path)
        file = getattr(source, "path", None)
        self.relative = file is None  # a camera: times from its first frame on
        self._origin: float | None = None
        try:
            self.writer = VideoWriter(path, source.fps, (source.width, source.height), codec=codec, crf=crf,
                                      time_base=getattr(source, "time_base", None) if file else None,
                                      audio_from=file if audio and file else None, name=name,
                                      colorspace=getattr(source, "colorspace", None))
        except VideoError as exc:
            raise SinkError(str(exc)) from None

    @property
    def frames(self) -> int:
        return self.writer.frames

    @property
    def size(self) -> tuple[int, int]:
        return self.writer.size

    @property
    def carried(self) -> str:
        return self.writer.carried

    def write(self, frame: np.ndarray, t: float | None = None) -> None:
        """Encode one ``[H, W, 3]`` uint8 BGR frame shown at ``t`` seconds (the source's clock).

        Raises:
            SinkError: its size differs from the first frame's, or encoding failed.
        """
        from ..media.video import VideoError

        if t is not None and self.relative:
            if self._origin is None:
                self._origin = t
            t -= self._origin
        try:
            self.writer.write(frame, t)
        except VideoError as exc:
            raise SinkError(str(exc)) from None

    def close(self, trim: bool = False) -> None:
        """Finalise the file (safe to call twice); ``trim``: the stream stopped before the
        source's end, so the carried audio ends with the last frame written."""
        from ..media.video import VideoError

        try:
            self.writer.close(trim=trim)
        except VideoError as exc:
            raise SinkError(str(exc)) from None


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

    def write(self, frame: np.ndarray, t: float | None = None) -> None:
        if (frame.shape[1], frame.shape[0]) != self.size:
            frame = cv2.resize(frame, self.size, interpolation=cv2.INTER_AREA)
        self.cam.send(np.ascontiguousarray(frame))

    def close(self) -> None:
        self.cam.close()
