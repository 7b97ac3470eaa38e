"""Video files through FFmpeg's libraries (PyAV): frames with their timestamps in, edited
frames out with the input's audio carried over.

:class:`VideoReader` decodes the first video stream of any container FFmpeg reads into
upright BGR frames (the display matrix applied: a phone's portrait clip comes out portrait)
with each frame's own timestamp (variable frame rate kept).

:class:`VideoWriter` encodes BGR frames (H.264 ``yuv420p`` by default, so every browser
plays the file; H.265, VP9, AV1 or lossless FFV1 on request) at the timestamps it is given,
and carries the other streams of an input file over: audio copied packet for packet where
the container takes the codec (AAC, MP3, Opus into MP4), re-encoded where it does not (AAC
into WebM becomes Opus), subtitles copied where the container takes them, container and
stream metadata kept. The carried packets are interleaved with the video as it is written,
so sound and picture stay in sync whatever the source's timestamps.

Errors are :class:`VideoError` with a one-line message naming the file.
"""

from __future__ import annotations

import fractions
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from .carry import Carrier

__all__ = ["VideoError", "VideoReader", "VideoWriter", "CODECS", "CONTAINERS", "DEFAULT_CRF", "codec_for",
           "colour_matrix", "read_frames"]


class VideoError(RuntimeError):
    """A video file cannot be read or written; the message is one line naming the file."""


#: ``--codec`` names -> FFmpeg encoders (all in PyAV's wheels).
CODECS = {"h264": "libx264", "h265": "libx265", "vp9": "libvpx-vp9", "av1": "libsvtav1", "ffv1": "ffv1"}

#: The default constant rate factor of each codec: near-lossless for the face (x264's 18 is
#: "visually lossless"; the others' scales differ). FFV1 is lossless and takes none.
DEFAULT_CRF = {"h264": 18, "h265": 20, "vp9": 24, "av1": 26}

#: Largest CRF each encoder accepts.
_MAX_CRF = {"h264": 51, "h265": 51, "vp9": 63, "av1": 63}


@dataclass(frozen=True)
class _Container:
    format: str
    default_codec: str
    codecs: tuple[str, ...]
    audio_copy: frozenset[str]  # audio codecs copied as they are
    audio_encoder: str          # what any other audio becomes
    subtitle_copy: frozenset[str]
    faststart: bool = False


_MP4_AUDIO = frozenset({"aac", "mp3", "mp3float", "opus", "flac", "alac", "ac3", "eac3"})

#: Output suffix -> the container, the codecs it takes (the first is the default), and which
#: audio and subtitle codecs are copied into it as they are.
CONTAINERS: dict[str, _Container] = {
    ".mp4": _Container("mp4", "h264", ("h264", "h265", "av1", "vp9"), _MP4_AUDIO, "aac",
                       frozenset({"mov_text"}), faststart=True),
    ".m4v": _Container("mp4", "h264", ("h264", "h265", "av1"), _MP4_AUDIO, "aac", frozenset({"mov_text"}),
                       faststart=True),
    ".mov": _Container("mov", "h264", ("h264", "h265", "av1", "ffv1"), _MP4_AUDIO | {"pcm_s16le", "pcm_s24le"},
                       "aac", frozenset({"mov_text"}), faststart=True),
    ".mkv": _Container("matroska", "h264", ("h264", "h265", "vp9", "av1", "ffv1"),
                       _MP4_AUDIO | {"vorbis", "pcm_s16le", "pcm_s24le", "pcm_f32le"}, "aac",
                       frozenset({"subrip", "srt", "ass", "ssa", "webvtt"})),
    ".webm": _Container("webm", "vp9", ("vp9", "av1"), frozenset({"opus", "vorbis"}), "libopus",
                        frozenset({"webvtt"})),
}


def codec_for(path: str | os.PathLike, codec: str | None = None) -> tuple[_Container, str]:
    """The container of ``path`` (by its suffix) and the codec to encode with: ``codec``, or
    the container's default where None or ``"auto"`` (H.264; VP9 for ``.webm``).

    Raises:
        VideoError: an unknown suffix, an unknown codec, or one the container cannot hold.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in CONTAINERS:
        raise VideoError(f"cannot write video {path}: unknown container '{suffix or '(no suffix)'}' "
                         f"(use {', '.join(CONTAINERS)})")
    box = CONTAINERS[suffix]
    if codec in (None, "auto"):
        return box, box.default_codec
    if codec not in CODECS:
        raise VideoError(f"unknown codec {codec!r} (use one of: {', '.join(CODECS)})")
    if codec not in box.codecs:
        raise VideoError(f"cannot write video {path}: a {suffix} file cannot hold {codec} "
                         f"(it takes {', '.join(box.codecs)})")
    return box, codec


def _rotation_k(rotation: float) -> int:
    """np.rot90's k (counter-clockwise quarter turns) for a display matrix's rotation (degrees
    counter-clockwise, FFmpeg's ``av_display_rotation_get``); 0 for none or an odd angle."""
    if not rotation or not math.isfinite(rotation):
        return 0
    quarter = rotation / 90.0
    return int(round(quarter)) % 4 if abs(quarter - round(quarter)) < 1e-3 else 0


#: The two colour matrices (Y'CbCr <-> R'G'B'), by name: swscale's name and the tags written
#: into a stream (matrix, primaries, transfer: H.273 codes).
_MATRICES = {"bt601": ("ITU601", 6), "bt709": ("ITU709", 1)}


def colour_matrix(tag: int | None, height: int) -> str:
    """The colour matrix of frames tagged ``tag`` (FFmpeg's ``AVColorSpace``: 1 BT.709, 5/6
    BT.601), ``"bt709"`` or ``"bt601"``; untagged ones follow the players' convention: BT.709
    from 720 lines up, BT.601 below (what OpenCV, which ignores tags, always assumes)."""
    if tag == 1:
        return "bt709"
    if tag in (5, 6):
        return "bt601"
    return "bt709" if height >= 720 else "bt601"


def _accurate(full_chroma: bool = False):
    """swscale flags for colour conversions without its fast paths' rounding bias (about one
    grey level each way, measured on a real clip: a BGR -> yuv420p -> BGR round trip is off by
    +2.1 levels on average with the defaults, +0.1 with these)."""
    from av.video.reformatter import Interpolation

    flags = Interpolation.BILINEAR | Interpolation.ACCURATE_RND
    return flags | Interpolation.FULL_CHR_H_INT if full_chroma else flags


def _av():
    try:
        import av
    except ImportError:  # pragma: no cover - a dependency of fastwarp
        raise VideoError("video files need PyAV: pip install av") from None
    return av


class VideoReader:
    """The frames of a video file, upright and with their timestamps.

    Args:
        path: any file FFmpeg reads (MP4, MOV, MKV, WebM, AVI, ...); its first video stream.
    Raises:
        VideoError: the file is missing, not a video FFmpeg can read, or has no video stream.

    Attributes:
        width, height: the upright frames' size (after the rotation).
        fps: the stream's average frame rate (25 where it declares none).
        time_base: ``fractions.Fraction``, the unit of the stream's timestamps (seconds).
        frame_count: the frames the container declares (None where it does not).
        rotation: the display matrix's rotation in degrees counter-clockwise (0, 90, 180, -90).
        colorspace: the colour matrix the frames are decoded with, ``"bt601"`` or ``"bt709"``
            (:func:`colour_matrix`: the stream's tag, else by height).
        start_time: the first frame's time in seconds.
        frames_read: frames returned so far.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        av = _av()
        self.path = Path(path)
        if not self.path.is_file():
            raise VideoError(f"video not found: {self.path}")
        try:
            self.container = av.open(str(self.path), "r")
        except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
            raise VideoError(f"cannot read video {self.path}: not a video FFmpeg can read ({_why(exc)})") from None
        if not self.container.streams.video:
            self.container.close()
            raise VideoError(f"cannot read video {self.path}: it has no video stream")
        self.stream = self.container.streams.video[0]
        self.stream.thread_type = "AUTO"
        cc = self.stream.codec_context
        rate = self.stream.average_rate or self.stream.guessed_rate
        self.fps = float(rate) if rate and 0 < float(rate) < 1000 else 25.0
        self.time_base = self.stream.time_base or fractions.Fraction(1, 90000)
        self.frame_count = int(self.stream.frames) if self.stream.frames and self.stream.frames > 0 else None
        self._frames: Iterator | None = None
        self.frames_read = 0
        self.last_pts: int | None = None
        self.rotation = 0.0
        # The first frame tells the rotation (frame side data) and the real size.
        try:
            first = next(self._decoded(), None)
        except (av.FFmpegError, OSError) as exc:
            self.close()
            raise VideoError(f"cannot read video {self.path}: no decodable frame ({_why(exc)})") from None
        if first is None:
            self.close()
            raise VideoError(f"cannot read video {self.path}: no decodable frame")
        self._first = first
        self.rotation = float(getattr(first, "rotation", 0) or 0)
        self.colorspace = colour_matrix(int(first.colorspace), first.height or cc.height)
        self._k = _rotation_k(self.rotation)
        w, h = first.width or cc.width, first.height or cc.height
        self.width, self.height = (h, w) if self._k % 2 else (w, h)
        start = first.pts if first.pts is not None else 0
        self.start_time = float(start * self.time_base)

    def _decoded(self) -> Iterator:
        if self._frames is None:
            self._frames = self.container.decode(self.stream)
        return self._frames

    def _next_decoded(self):
        av = _av()
        try:
            return next(self._decoded())
        except StopIteration:
            return None
        except (av.FFmpegError, OSError) as exc:
            declared = f" of the {self.frame_count} its container declares" if self.frame_count else ""
            raise VideoError(f"cannot read video {self.path}: decoding failed after frame {self.frames_read}{declared} "
                             f"(truncated or corrupt file: {_why(exc)})") from None

    def read(self) -> tuple[np.ndarray, float] | None:
        """The next frame and its time: ``([H, W, 3] uint8 BGR, seconds)``, or None at the end.
        A frame without a timestamp gets the previous one's plus ``1 / fps``.

        Raises:
            VideoError: decoding failed mid-stream (truncated or corrupt file).
        """
        frame = self._first if self._first is not None else self._next_decoded()
        self._first = None
        if frame is None:
            return None
        image = frame.reformat(format="bgr24", src_colorspace=_MATRICES[self.colorspace][0],
                               interpolation=_accurate(full_chroma=True)).to_ndarray()
        if self._k:
            image = np.ascontiguousarray(np.rot90(image, self._k))
        if frame.pts is not None:
            pts = int(frame.pts)
        elif self.last_pts is not None:
            pts = self.last_pts + max(1, int(round(1 / (self.fps * self.time_base))))
        else:
            pts = 0
        self.last_pts = pts
        self.frames_read += 1
        return image, float(pts * self.time_base)

    def seek(self, t: float) -> None:
        """Make the next :meth:`read` return the first frame at or after ``t`` seconds (the
        stream's clock): a seek to the keyframe before it and a decode up to it, so the frame
        is bit for bit the one a sequential read gives (codecs decode from a keyframe exactly).

        Raises:
            VideoError: the container cannot seek, or decoding failed.
        """
        av = _av()
        target = int(round(t / self.time_base))
        try:
            self.container.seek(target, stream=self.stream, backward=True, any_frame=False)
        except (av.FFmpegError, OSError) as exc:
            raise VideoError(f"cannot seek in video {self.path}: {_why(exc)}") from None
        self._frames, self._first, self.last_pts = None, None, None
        frame = self._next_decoded()
        while frame is not None and frame.pts is not None and frame.pts < target:
            frame = self._next_decoded()
        self._first = frame
        if frame is None:  # past the end: read() returns None
            self._frames = iter(())

    def __iter__(self) -> Iterator[tuple[np.ndarray, float]]:
        while (item := self.read()) is not None:
            yield item

    def close(self) -> None:
        self.container.close()

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_frames(path: str | os.PathLike, limit: int = 0) -> tuple[list[np.ndarray], list[float]]:
    """All frames of a video (or the first ``limit``) and their times in seconds."""
    frames, times = [], []
    with VideoReader(path) as reader:
        for image, t in reader:
            frames.append(image)
            times.append(t)
            if limit and len(frames) >= limit:
                break
    return frames, times


def _why(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return " ".join(str(text).split())


class VideoWriter:
    """Encodes BGR frames into a video file, carrying another file's audio over.

    Args:
        path: the file to write; its suffix picks the container (:data:`CONTAINERS`:
            ``.mp4``, ``.m4v``, ``.mov``, ``.mkv``, ``.webm``).
        fps: the nominal frame rate (the stream's declared rate; each frame's time comes
            from :meth:`write`).
        size: ``(width, height)`` of the frames; a first frame of another size reopens the
            video stream at that size.
        codec: ``"h264"`` (``yuv420p``, the browsers' codec), ``"h265"``, ``"vp9"``,
            ``"av1"``, ``"ffv1"`` (lossless BGR, for tests and archives), or None/``"auto"``
            for the container's default (H.264; VP9 for ``.webm``).
        crf: constant rate factor (lower: better; default :data:`DEFAULT_CRF`).
        time_base: the timestamps' unit (seconds), e.g. the source stream's, so the source's
            timestamps are kept exactly (default 1/90000).
        audio_from: a file whose audio and subtitle streams (and container metadata) are
            carried into the output (see the module docstring); None: video only.
        preset: the x264/x265 speed preset (default ``"superfast"``, see :data:`PRESET`).
        colorspace: the colour matrix to encode with and tag, ``"bt601"`` or ``"bt709"``: the
            source's (:attr:`VideoReader.colorspace`), so its pixels come back where they were;
            None: by height (:func:`colour_matrix`).
    Raises:
        VideoError: an unknown container or codec, a codec the container cannot hold, a CRF
            out of range, or FFmpeg cannot open the file.

    Open it on a temporary path (:func:`fastwarp._io.atomic_path`) and :meth:`close` it
    before the rename: ``close`` writes the remaining audio and finalises the container.
    """

    #: x264/x265 preset. "superfast": on 2 cores `fastwarp video` (480 px, blink) runs at 39.2
    #: frames/s with it against 42.2 with OpenCV's mp4v writer (veryfast: 38.5, files about half
    #: the size at the same CRF; ultrafast: twice the size again): tools/video_speed.py.
    PRESET = "superfast"

    def __init__(self, path: str | os.PathLike, fps: float, size: tuple[int, int], *, codec: str | None = None,
                 crf: int | None = None, time_base: fractions.Fraction | None = None,
                 audio_from: str | os.PathLike | None = None, preset: str | None = None,
                 name: str | os.PathLike | None = None, colorspace: str | None = None) -> None:
        av = _av()
        self.path = Path(path)
        self.name = Path(name) if name is not None else self.path  # in messages (the user's path)
        self.box, self.codec = codec_for(self.name, codec)
        if crf is not None and self.codec in _MAX_CRF and not 0 <= crf <= _MAX_CRF[self.codec]:
            raise VideoError(f"--crf for {self.codec} must be in 0..{_MAX_CRF[self.codec]}, got {crf}")
        if crf is not None and self.codec == "ffv1":
            raise VideoError("--crf does not apply to ffv1 (it is lossless)")
        self.crf = crf if crf is not None else DEFAULT_CRF.get(self.codec)
        self.preset = preset or self.PRESET
        self.fps = float(fps) if fps and fps > 0 else 25.0
        if colorspace not in (None, *_MATRICES):
            raise VideoError(f"colorspace must be one of {', '.join(_MATRICES)} or None, got {colorspace!r}")
        self.colorspace = colorspace or colour_matrix(None, int(size[1]))
        self.time_base = fractions.Fraction(time_base) if time_base else fractions.Fraction(1, 90000)
        try:
            self.container = av.open(str(self.path), "w", format=self.box.format,
                                     options={"movflags": "+faststart"} if self.box.faststart else {})
        except (av.FFmpegError, OSError) as exc:
            raise VideoError(f"cannot write video {self.name}: {_why(exc)}") from None
        self.carrier: Carrier | None = None
        self.frames = 0
        self._stream = None
        self._size = (int(size[0]), int(size[1]))
        self._last_pts: int | None = None
        self._t0: float | None = None
        self._closed = False
        try:
            self._open_stream(*self._size)  # the video first: stream 0, as players expect
            if audio_from is not None:
                self.carrier = Carrier(Path(audio_from), self.container, self.box)
                for key, value in self.carrier.input.metadata.items():
                    if key not in ("encoder", "major_brand", "minor_version", "compatible_brands"):
                        self.container.metadata[key] = value
            self.container.metadata["encoding_tool"] = "fastwarp"
        except VideoError:
            self._abort()
            raise
        except (av.FFmpegError, OSError, ValueError) as exc:
            self._abort()
            raise VideoError(f"cannot carry the audio of {audio_from} into {self.name}: {_why(exc)}") from None

    @property
    def size(self) -> tuple[int, int]:
        return self._size

    @property
    def carried(self) -> str:
        """What was carried over besides the video, in words (for the command's summary)."""
        if self.carrier is None:
            return "video only"
        n_audio, n_sub = self.carrier.counts["audio"], self.carrier.counts["subtitle"]
        plural = lambda n, what: f"{n} {what} stream{'s' * (n != 1)}"  # noqa: E731
        if not n_audio:
            parts = ["no audio in the source"]
        elif self.carrier.reencoded:
            parts = [plural(n_audio, "audio") + " carried (re-encoded: " + ", ".join(self.carrier.reencoded) + ")"]
        else:
            parts = [plural(n_audio, "audio") + " copied"]
        if n_sub:
            parts.append(plural(n_sub, "subtitle") + " copied")
        if self.carrier.dropped:
            parts.append("not carried (the container cannot hold them): " + ", ".join(self.carrier.dropped))
        return "; ".join(parts)

    def _open_stream(self, width: int, height: int) -> None:
        av = _av()
        encoder = CODECS[self.codec]
        rate = fractions.Fraction(self.fps).limit_denominator(1001)
        options: dict[str, str] = {}
        if self.codec in ("h264", "h265"):
            options = {"crf": str(self.crf), "preset": self.preset}
            if self.codec == "h265":
                options["x265-params"] = "log-level=error"
        elif self.codec == "vp9":
            options = {"crf": str(self.crf), "b": "0", "deadline": "realtime", "cpu-used": "8", "row-mt": "1"}
        elif self.codec == "av1":
            options = {"crf": str(self.crf), "preset": "10"}
        try:
            stream = self.container.add_stream(encoder, rate=rate, options=options)
        except (av.FFmpegError, ValueError) as exc:
            raise VideoError(f"cannot write video {self.name} with codec {self.codec}: {_why(exc)}") from None
        stream.codec_context.time_base = self.time_base
        stream.time_base = self.time_base
        if self.codec != "ffv1":
            # The matrix (the source's), limited range, written into the stream (VUI / colour
            # box) and used by the conversion in write(): players decode the frames' own BGR back.
            code = _MATRICES[self.colorspace][1]
            cc = stream.codec_context
            cc.colorspace, cc.color_primaries, cc.color_trc, cc.color_range = code, code, code, 1
        if self.codec == "h265":
            stream.codec_context.codec_tag = "hvc1"  # the tag Apple's and the browsers' players want
        self._stream = stream
        self._resize(width, height)

    def _resize(self, width: int, height: int) -> None:
        # 4:2:0 needs even sides; an odd-sized video keeps full chroma instead (plays in fewer browsers).
        even = width % 2 == 0 and height % 2 == 0
        self._stream.width, self._stream.height = width, height
        self._stream.pix_fmt = "bgr0" if self.codec == "ffv1" else ("yuv420p" if even else "yuv444p")
        self._size = (width, height)

    def write(self, frame: np.ndarray, t: float | None = None) -> None:
        """Encode one ``[H, W, 3]`` uint8 BGR frame shown at ``t`` seconds (the source's clock:
        the carried audio keeps its own timestamps on the same clock). None: one frame after
        the previous. Times that do not increase are nudged one tick later.

        Raises:
            VideoError: the frame's size differs from the first frame's, or encoding failed.
        """
        av = _av()
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise VideoError(f"expected a [H, W, 3] uint8 BGR frame, got {frame.dtype} {list(frame.shape)}")
        size = (frame.shape[1], frame.shape[0])
        if size != self._size and self.frames == 0:  # a camera that reported another size: not encoding yet
            self._resize(*size)
        elif size != self._size:
            raise VideoError(f"cannot write video {self.name}: frame size changed from {self._size[0]}x"
                             f"{self._size[1]} to {size[0]}x{size[1]}")
        if t is None:
            pts = 0 if self._last_pts is None else self._last_pts + max(1, round(1 / (self.fps * self.time_base)))
        else:
            pts = int(round(t / self.time_base))
        if self._last_pts is not None and pts <= self._last_pts:
            pts = self._last_pts + 1
        self._last_pts = pts
        picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="bgr24")
        if self.codec != "ffv1":
            picture = picture.reformat(format=self._stream.pix_fmt, dst_colorspace=_MATRICES[self.colorspace][0],
                                       dst_color_range="MPEG", interpolation=_accurate())
            picture.colorspace, picture.color_range = _MATRICES[self.colorspace][1], 1
        picture.pts = pts
        picture.time_base = self.time_base
        try:
            if self.carrier is not None:  # the audio up to this frame first: interleaved, in sync
                self.carrier.until(float(pts * self.time_base))
            for packet in self._stream.encode(picture):
                self.container.mux(packet)
        except (av.FFmpegError, OSError) as exc:
            raise VideoError(f"cannot write video {self.name}: {_why(exc)}") from None
        self.frames += 1

    def close(self, trim: bool = False) -> None:
        """Flush the encoder, write the rest of the carried streams and finalise the file
        (safe to call twice). ``trim``: the video stopped before the source's end (a frame
        limit, Ctrl-C, a read failure): the carried streams end with the last frame too."""
        if self._closed:
            return
        self._closed = True
        av = _av()
        try:
            if self.frames:
                for packet in self._stream.encode(None):
                    self.container.mux(packet)
            if self.carrier is not None:
                end = None
                if trim and self._last_pts is not None:
                    end = float(self._last_pts * self.time_base) + 1.0 / self.fps
                self.carrier.finish(end)
        except (av.FFmpegError, OSError) as exc:
            self._abort()
            raise VideoError(f"cannot write video {self.name}: {_why(exc)}") from None
        finally:
            if self.carrier is not None:
                self.carrier.close()
        self.container.close()

    def _abort(self) -> None:
        self._closed = True
        if self.carrier is not None:
            self.carrier.close()
        try:
            self.container.close()
        except Exception:  # noqa: BLE001  (the file is being discarded)
            pass

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self.close()
        else:
            self._abort()
