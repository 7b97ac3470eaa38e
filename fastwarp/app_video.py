"""The Video tab of ``fastwarp app`` (docs/app.md): upload a clip, preview an edit on a chosen
frame with preset and AU sliders, render the whole clip in the app's process (a progress bar
in the page), play the result with its sound in the page and download it.

- **Upload** (:func:`probe_video`): any container FFmpeg reads (PyAV); refused with a message
  in the page where it is not a video, over :data:`MAX_VIDEO_BYTES`, longer than
  :data:`MAX_VIDEO_SECONDS` or :data:`MAX_VIDEO_FRAMES`, or larger than
  :data:`MAX_VIDEO_PIXELS` a frame. The frames' timestamps are read once from the
  container's packets (no decoding), so any frame can be sought for the preview
  (:func:`read_frame`).
- **Sliders** (:func:`video_edits`): one per preset (intensity 0..1, as the photo tab) and one
  per visible AU as a **relative** change (-5..+5, start 0: ``(name, delta, True)``), since a
  face's AUs change over a clip. Presets apply first, then the moved AU sliders.
- **Preview** (:meth:`VideoEditor.preview`): the chosen frame edited by a
  :class:`~fastwarp.realtime.RealtimeEngine` of its own (the same steps as the render, on that
  frame alone: no smoothing from the frames before it).
- **Render** (:meth:`VideoEditor.render`): :meth:`RealtimeEngine.run` from a
  :class:`~fastwarp.realtime.VideoSource` into a :class:`~fastwarp.realtime.VideoFileSink`
  (H.264 ``yuv420p`` MP4 with ``+faststart``, the source's audio copied), as ``fastwarp
  video`` does; written through a temporary file and a rename into a folder of the app's
  (removed by :meth:`VideoEditor.close`).

Everything but :func:`build_video_tab` is plain Python (no gradio), tested without a browser
by tests/test_app_video.py; the page by tests/test_app_video_browser.py.
"""

from __future__ import annotations

import fractions
import os
import shutil
import tempfile
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .app_common import AU_STEP, UploadError, check_upload_size
from .app_common import preset_sliders as make_preset_sliders
from .au import AU_DESCRIPTIONS
from .face.aus import VISIBLE_AUS

__all__ = ["AU_DELTA_MAX", "MAX_VIDEO_BYTES", "MAX_VIDEO_FRAMES", "MAX_VIDEO_PIXELS", "MAX_VIDEO_SECONDS", "Clip",
           "Rendered", "VideoEditor", "build_video_tab", "describe_edits", "probe_video", "read_frame",
           "video_edits"]

#: Uploads larger than this are refused (by the app; Gradio's own upload limit is set to it too).
MAX_VIDEO_BYTES = 200 * 1024 * 1024
#: Longest clip the tab renders, in seconds and in frames (2 minutes at 30 frames/s).
MAX_VIDEO_SECONDS = 120.0
MAX_VIDEO_FRAMES = 3600
#: Largest frame, in pixels (4K UHD, 3840 x 2160).
MAX_VIDEO_PIXELS = 3840 * 2160
#: The AU sliders' range: a change of the face's own intensity, -5..+5.
AU_DELTA_MAX = 5.0

_KINDS = "an MP4, MOV, MKV, WebM or AVI clip"


@dataclass
class Clip:
    """An uploaded clip, probed once, and the frame the preview shows.

    Attributes:
        path: the uploaded file; ``name`` its name (for messages and the output's name).
        width, height: the upright frames' size; ``fps`` the stream's rate.
        pts: each frame's timestamp in the stream's ``time_base``, in presentation order
            (from the packets: ``len(pts)`` is the frame count); ``times`` the same in seconds.
        audio: the audio streams' codecs (``["aac"]``; empty: a silent clip).
        index, frame: the previewed frame's number and image (``[H, W, 3]`` uint8 BGR).
        output: the last render of this clip (deleted when the clip renders again).
    """

    path: Path
    name: str
    width: int
    height: int
    fps: float
    time_base: fractions.Fraction
    pts: list[int]
    times: list[float]
    audio: list[str]
    index: int = 0
    frame: np.ndarray | None = None
    output: Path | None = None

    @property
    def frames(self) -> int:
        return len(self.pts)

    @property
    def duration(self) -> float:
        """Seconds from the first frame to the end of the last."""
        if not self.times:
            return 0.0
        return self.times[-1] - self.times[0] + 1.0 / self.fps

    def summary(self) -> str:
        sound = (" with sound (" + ", ".join(self.audio) + ")") if self.audio else ", no sound"
        return (f"{self.name}: {self.width}x{self.height}, {self.frames} frames, {self.fps:g} frames/s, "
                f"{self.duration:.1f} s{sound}")


def _fail(name: str) -> UploadError:
    return UploadError(f"{name} is not a video the app can read (use {_KINDS})")


def probe_video(path: str | os.PathLike, name: str | None = None) -> Clip:
    """The uploaded clip, checked and probed: its size, rate, audio, and every frame's
    timestamp (from the packets, without decoding), and its first frame decoded.

    Args:
        path: the file; ``name``: what messages call it (default its file name).
    Raises:
        UploadError: missing, over :data:`MAX_VIDEO_BYTES`, not a video FFmpeg reads,
            a still image (FFmpeg reads PNG, JPEG, ... as one-frame videos), longer than
            :data:`MAX_VIDEO_SECONDS` or :data:`MAX_VIDEO_FRAMES`, or frames over
            :data:`MAX_VIDEO_PIXELS`.
    """
    from .media.video import VideoError, VideoReader

    path = Path(path)
    name = name or path.name
    check_upload_size(path, MAX_VIDEO_BYTES, "clips", name)
    import av

    try:
        reader = VideoReader(path)
    except VideoError:
        raise _fail(name) from None
    with reader:
        fmt = reader.container.format.name
        if fmt.endswith("_pipe") or fmt in ("image2", "webp"):  # FFmpeg reads a photo as a one-frame video
            raise UploadError(f"{name} is a still image, not a video (edit photos in the Photo tab)")
        w, h, fps, time_base = reader.width, reader.height, reader.fps, reader.time_base
        if w * h > MAX_VIDEO_PIXELS:
            raise UploadError(f"{name} is {w}x{h}; the app takes clips up to {MAX_VIDEO_PIXELS / 1e6:.1f} "
                              "megapixels a frame (3840x2160)")
        declared = reader.container.duration / 1e6 if reader.container.duration else None
        if declared is not None and declared > MAX_VIDEO_SECONDS + 0.5:
            raise _too_long(name, f"{declared:.0f} s")
        first, first_t = reader.read()  # (VideoReader decoded it already: no extra work)
    pts: list[int] = []
    audio: list[str] = []
    try:
        with av.open(str(path), "r") as container:
            stream = container.streams.video[0]
            audio = [s.codec_context.name if s.codec_context is not None else "?" for s in container.streams.audio]
            for packet in container.demux(stream):
                if packet.size == 0:  # the demuxer's flush packet
                    continue
                stamp = packet.pts if packet.pts is not None else packet.dts
                pts.append(int(stamp) if stamp is not None else -1)
                if len(pts) > MAX_VIDEO_FRAMES:
                    raise _too_long(name, f"over {MAX_VIDEO_FRAMES} frames")
    except UploadError:
        raise
    except (av.FFmpegError, OSError, ValueError):
        raise _fail(name) from None
    if not pts or min(pts) < 0:  # no usable timestamps: one frame every 1/fps from the first's
        step = max(1, round(1 / (fps * time_base)))
        start = round(first_t / time_base)
        pts = [start + i * step for i in range(len(pts) or 1)]
    pts.sort()
    times = [float(p * time_base) for p in pts]
    clip = Clip(path, name, w, h, fps, time_base, pts, times, audio, 0, first)
    if clip.duration > MAX_VIDEO_SECONDS + 0.5:
        raise _too_long(name, f"{clip.duration:.0f} s")
    return clip


def _too_long(name: str, what: str) -> UploadError:
    return UploadError(f"{name} is too long ({what}); the app renders clips up to {MAX_VIDEO_SECONDS / 60:g} "
                       f"minutes and {MAX_VIDEO_FRAMES} frames (cut it first, or use `fastwarp video`)")


def read_frame(clip: Clip, index: int) -> np.ndarray:
    """Frame ``index`` of the clip (``[H, W, 3]`` uint8 BGR, upright), as
    :class:`~fastwarp.media.video.VideoReader` decodes it (its colour conversion and rotation,
    so the preview shows the frames the render edits): a seek to the keyframe before it, then
    a decode up to it (bit for bit the frame of a sequential read: H.264 decodes from a
    keyframe exactly).

    Raises:
        UploadError: the clip cannot be decoded there.
    """
    import av

    from .media.video import VideoError, VideoReader

    index = int(min(max(index, 0), clip.frames - 1))
    target = clip.pts[index]
    try:
        with VideoReader(clip.path) as reader:
            if index > 0:
                reader.seek(float(target * reader.time_base))
            item = reader.read()
            if item is not None:
                return item[0]
    except (VideoError, av.FFmpegError, OSError) as exc:
        raise UploadError(f"cannot decode frame {index} of {clip.name} ({exc})") from None
    raise UploadError(f"cannot decode frame {index} of {clip.name}")


def video_edits(au_deltas: Mapping[str, float], preset_values: Mapping[str, float]) -> list:
    """The edits the sliders ask for: one ``ExprEdit`` per preset above 0, then one relative AU
    edit ``(name, delta, True)`` per AU slider moved away from 0 (applied after the presets:
    a change of what they set). Nothing moved: ``[]``."""
    from .presets import ExprEdit

    edits: list = [ExprEdit(name, float(v)) for name, v in preset_values.items() if v is not None and v > 0]
    for name, d in au_deltas.items():
        if d is not None and abs(float(d)) > AU_STEP / 4:
            edits.append((name, float(min(max(d, -AU_DELTA_MAX), AU_DELTA_MAX)), True))
    return edits


def describe_edits(edits: Sequence) -> str:
    """The edits in words, e.g. ``"smile 0.80, AU25 +1.0"`` (``"no change"``)."""
    parts = []
    for e in edits:
        if hasattr(e, "apply"):
            parts.append(f"{e.name} {e.intensity:.2f}")
        else:
            parts.append(f"{e[0]} {e[1]:+.1f}")
    return ", ".join(parts) or "no change"


@dataclass
class Rendered:
    """A rendered clip: the file, its frames, what was edited, and the time it took."""

    path: Path
    frames: int
    faces_edited: int
    passed_through: int
    wall_s: float
    carried: str
    error: str | None = None

    def summary(self) -> str:
        fps = self.frames / self.wall_s if self.wall_s > 0 else 0.0
        text = (f"Rendered {self.frames} frames in {self.wall_s:.1f} s ({fps:.1f} frames/s): face edited in "
                f"{self.faces_edited}, no face (left as it was) in {self.passed_through}; sound: {self.carried}.")
        if self.error:
            text += f" **The clip could not be decoded to its end** ({self.error}): the frames before it are kept."
        return text


_WORKDIR_PREFIX = "fastwarp-video-"


def _remove_stale_workdirs() -> None:
    """Removes the render folders (``fastwarp-video-PID-*``, this user's) of processes that
    no longer run."""
    for folder in Path(tempfile.gettempdir()).glob(f"{_WORKDIR_PREFIX}*-*"):
        pid = folder.name[len(_WORKDIR_PREFIX):].split("-", 1)[0]
        try:
            if not pid.isdigit() or int(pid) == os.getpid() or folder.stat().st_uid != os.getuid():
                continue
            os.kill(int(pid), 0)
        except ProcessLookupError:  # gone: its renders with it
            shutil.rmtree(folder, ignore_errors=True)
        except OSError:  # not ours to signal, or the folder vanished: leave it
            continue


class VideoEditor:
    """The Video tab's engines: one :class:`~fastwarp.realtime.RealtimeEngine` for the
    previews and one for the renders (so a preview need not wait for a render), each made at
    its first use and used one call at a time; the rendered files live in a temporary folder
    of their own until :meth:`close`.

    Args:
        weights, device: as :class:`~fastwarp.realtime.RealtimeEngine`'s.
        workdir: where renders are written (default: a new folder in the system's temp
            directory, which Gradio serves files from).
    """

    def __init__(self, weights: str | None = None, device: str | None = None, *,
                 workdir: str | os.PathLike | None = None) -> None:
        self.weights, self.device = weights, device
        self._workdir = Path(workdir) if workdir is not None else None
        self._cleanup = None
        self._engines: dict[str, object] = {}
        self._locks = {"preview": threading.Lock(), "render": threading.Lock(), "workdir": threading.Lock()}

    @property
    def workdir(self) -> Path:
        """The folder of the renders, made at the first use: ``fastwarp-video-PID-*`` in the
        system's temp directory. The folders of app processes that are gone (stopped by a
        signal, which skips :meth:`close`) are removed then."""
        with self._locks["workdir"]:
            if self._workdir is None:
                _remove_stale_workdirs()
                self._workdir = Path(tempfile.mkdtemp(prefix=f"{_WORKDIR_PREFIX}{os.getpid()}-"))
                # The renders go with the folder at close, or when the interpreter exits without one.
                self._cleanup = weakref.finalize(self, shutil.rmtree, self._workdir, True)
            return self._workdir

    def close(self) -> None:
        for engine in self._engines.values():
            engine.close()
        self._engines.clear()
        if self._cleanup is not None:
            self._cleanup()

    def _engine(self, role: str, edits: Sequence, all_faces: bool):
        from .realtime import RealtimeEngine

        engine = self._engines.get(role)
        if engine is None:
            engine = self._engines[role] = RealtimeEngine(edits, self.weights, self.device, runtime="torch")
        engine.set_edits(edits)
        engine.all_faces = bool(all_faces)
        return engine

    def preview(self, clip: Clip, edits: Sequence, *, all_faces: bool = False) -> tuple[np.ndarray, int, float]:
        """The previewed frame edited by ``edits``: ``(frame [H, W, 3] uint8 BGR, faces
        edited, milliseconds)``. No edit: the frame itself."""
        if clip.frame is None:
            clip.frame = read_frame(clip, clip.index)
        if not edits:
            return clip.frame, 0, 0.0
        with self._locks["preview"]:
            engine = self._engine("preview", edits, all_faces)
            t0 = time.perf_counter()
            engine.reset()  # one frame on its own: no tracking or smoothing from another
            result = engine.process(clip.frame, clip.times[clip.index], clip.index)
            ms = (time.perf_counter() - t0) * 1e3
        return result.frame, len(result.faces), ms

    def render(self, clip: Clip, edits: Sequence, *, all_faces: bool = False,
               progress: Callable[[int, int], None] | None = None) -> Rendered:
        """The whole clip edited by ``edits`` into an H.264 MP4 carrying the clip's audio
        (``<stem>_edited.mp4`` in a folder of its own); ``progress(done, total)`` after each
        frame. The clip's previous render is deleted.

        Raises:
            UploadError: the clip cannot be read or the file cannot be written (the message
                says why; nothing is left behind).
        """
        from ._io import atomic_path
        from .realtime import FrameSizeError, SinkError, StreamError, VideoFileSink, VideoSource

        folder = self.workdir / uuid.uuid4().hex
        out = folder / f"{Path(clip.name).stem or 'clip'}_edited.mp4"
        total = clip.frames
        with self._locks["render"]:
            engine = self._engine("render", edits, all_faces)
            try:
                source = VideoSource(clip.path)
            except StreamError as exc:
                raise UploadError(str(exc).replace(str(clip.path), clip.name)) from None
            try:
                with atomic_path(out) as tmp:
                    try:
                        sink = VideoFileSink(tmp, source, audio=True, name=out.name)
                    except SinkError as exc:
                        raise UploadError(str(exc)) from None
                    done = 0

                    def on_frame(result) -> None:
                        nonlocal done
                        done += 1
                        if progress is not None:
                            progress(done, max(total, done))

                    try:
                        try:
                            stats = engine.run(source, [sink], on_frame=on_frame)
                        finally:
                            sink.close()  # (finalises the file: a valid video of the frames written)
                    except (FrameSizeError, SinkError) as exc:
                        raise UploadError(f"{clip.name}: {exc}") from None
                    if stats.frames == 0:
                        raise UploadError(f"cannot read video {clip.name}: no decodable frame")
            except OSError as exc:
                shutil.rmtree(folder, ignore_errors=True)
                raise UploadError(f"cannot write the rendered clip: {exc.strerror or exc}") from None
            except BaseException:
                shutil.rmtree(folder, ignore_errors=True)
                raise
            finally:
                source.close()
        if clip.output is not None and clip.output.parent != folder:
            shutil.rmtree(clip.output.parent, ignore_errors=True)
        clip.output = out
        error = stats.error.replace(str(clip.path), clip.name) if stats.error else None
        return Rendered(out, stats.frames, stats.faces_edited, stats.passed_through, stats.wall_s, sink.carried,
                        error)


def _rgb(bgr: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(bgr[..., ::-1])


def build_video_tab(videos: VideoEditor):
    """The Video tab (call inside a ``gradio.Blocks``; needs gradio)."""
    import gradio as gr

    from .presets import PRESETS

    preset_names = list(PRESETS)
    n_au = len(VISIBLE_AUS)

    def edits_of(args: Sequence[float]) -> list:
        return video_edits(dict(zip(VISIBLE_AUS, args[:n_au])), dict(zip(preset_names, args[n_au:])))

    def on_upload(path):
        blank = (None, None, None, gr.update(value=0, maximum=1, interactive=False))
        if not path:
            return *blank, ""
        try:
            clip = probe_video(path)
        except UploadError as exc:
            gr.Warning(str(exc))
            return *blank, f"**Cannot edit this upload:** {exc}"
        rgb = _rgb(clip.frame)
        return (clip, rgb, rgb, gr.update(value=0, maximum=max(clip.frames - 1, 1), interactive=clip.frames > 1),
                f"Loaded {clip.summary()}. Move a slider to preview an edit on a frame, then render the clip.")

    def on_preview(clip, index, all_faces, *args):
        """A slider moved: the chosen frame (read again where the frame slider moved), edited."""
        if clip is None:
            return None, gr.update(), gr.update(), "Load a clip first."
        index = int(min(max(int(index or 0), 0), clip.frames - 1))
        try:
            if clip.frame is None or index != clip.index:
                clip.frame, clip.index = read_frame(clip, index), index
            edits = edits_of(args)
            out, faces, ms = videos.preview(clip, edits, all_faces=all_faces)
        except UploadError as exc:
            return clip, gr.update(), gr.update(), f"**Cannot preview:** {exc}"
        t = clip.times[index] - clip.times[0]
        if not edits:
            text = f"Frame {index} ({t:.2f} s): no slider moved."
        elif faces == 0:
            text = f"Frame {index} ({t:.2f} s): no face found on this frame (frames without a face stay as they are)."
        else:
            text = f"Frame {index} ({t:.2f} s) edited in {ms:.0f} ms: {describe_edits(edits)}."
        return clip, _rgb(clip.frame), _rgb(out), text

    def on_render(clip, all_faces, *args, progress=gr.Progress()):
        if clip is None:
            return gr.update(), gr.update(), "Load a clip first."
        edits = edits_of(args)
        progress((0, clip.frames), desc="Rendering", unit="frames")

        def step(done: int, total: int) -> None:
            progress((done, total), desc="Rendering", unit="frames")

        try:
            rendered = videos.render(clip, edits, all_faces=all_faces, progress=step)
        except UploadError as exc:
            gr.Warning(str(exc))
            return None, gr.update(value=None, interactive=False), f"**Cannot render:** {exc}"
        return (str(rendered.path), gr.update(value=str(rendered.path), interactive=True),
                f"{rendered.summary()} Edit: {describe_edits(edits)}.")

    with gr.Tab("Video"):
        gr.Markdown("Load a clip, preview an edit on any frame with the sliders, then render the whole clip "
                    "(its sound is kept). AU sliders **change** the face's own intensity on every frame "
                    f"(-{AU_DELTA_MAX:g}..+{AU_DELTA_MAX:g}); presets move towards a named expression (0..1). "
                    f"Clips up to {MAX_VIDEO_BYTES / 2**20:.0f} MB and {MAX_VIDEO_SECONDS / 60:g} minutes.")
        clip = gr.State(None)
        with gr.Row():
            with gr.Column(scale=1, min_width=260):
                upload = gr.File(label="Video (MP4, MOV, MKV, WebM, ...)", file_types=["video"], type="filepath",
                                 elem_id="video-upload")
                status = gr.Markdown("", elem_id="video-status")
                frame = gr.Slider(0, 1, value=0, step=1, label="Preview frame", interactive=False,
                                  elem_id="video-frame")
                all_faces = gr.Checkbox(False, label="Edit every face (up to 4; default: the largest)",
                                        elem_id="video-all-faces")
                render = gr.Button("Render the clip", variant="primary", elem_id="video-render")
                download = gr.DownloadButton("Download the edited clip", interactive=False,
                                             elem_id="video-download")
            with gr.Column(scale=4):
                with gr.Row(equal_height=True):
                    original = gr.Image(label="frame", type="numpy", format="png", interactive=False, height=360,
                                        elem_id="video-original")
                    preview = gr.Image(label="frame, edited (preview)", type="numpy", format="png", height=360,
                                       interactive=False, elem_id="video-preview")
                    result = gr.Video(label="edited clip (rendered)", interactive=False, height=360,
                                      elem_id="video-edited")
        with gr.Row():
            with gr.Column():
                preset_sliders = make_preset_sliders(gr, preset_names, "video-preset-")
            with gr.Column():
                gr.Markdown(f"**Action Units** (change of the face's own intensity, -{AU_DELTA_MAX:g}..+"
                            f"{AU_DELTA_MAX:g}; 0: unchanged)")
                au_sliders = [gr.Slider(-AU_DELTA_MAX, AU_DELTA_MAX, value=0, step=AU_STEP,
                                        label=f"{name} {AU_DESCRIPTIONS[name]}", elem_id=f"video-au-{name}")
                              for name in VISIBLE_AUS]
        sliders = [*au_sliders, *preset_sliders]
        upload.upload(on_upload, [upload], [clip, original, preview, frame, status])
        upload.clear(lambda: (None, None, None, gr.update(value=0, interactive=False), ""), None,
                     [clip, original, preview, frame, status])
        for s in [frame, all_faces, *sliders]:  # the newest move wins
            s.input(on_preview, [clip, frame, all_faces, *sliders], [clip, original, preview, status],
                    trigger_mode="always_last", show_progress="hidden")
        render.click(on_render, [clip, all_faces, *sliders], [result, download, status])
