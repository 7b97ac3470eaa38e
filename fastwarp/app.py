"""``fastwarp app``: a local web app (Gradio) to edit a photo's expression with sliders, and a
webcam tab on the real-time engine (docs/app.md).

The photo tab loads a photo, finds its faces (up to :data:`MAX_FACES`) and crops them
**once** (:meth:`PhotoEditor.load`: FaceMesh and the aligned crops, the slow steps), then
re-runs only the cheap steps on every slider move (:meth:`PhotoEditor.render`: the AU
targets, the mesh motion and texture, and one ``warp_blend`` per face on the photo;
:meth:`ExpressionEditor.edit` split at its steps). Sliders: one per AU the estimator sees
(:data:`fastwarp.face.aus.VISIBLE_AUS`, 0..5, set to the largest face's estimate when a
photo is loaded; a slider moved away from that sets its AU) and one per preset
(:data:`fastwarp.presets.PRESETS`, intensity 0..1). Presets apply first, then the moved AU
sliders (later edits win). The sliders edit every face of a group photo: a preset moves
each face from its own estimate, and a moved AU slider sets the largest face's AU and moves
each other face's AU by the same amount from that face's own estimate. With nothing moved
the output is the photo bit for bit.

Everything but :func:`build_ui` and :func:`launch` is plain Python (no gradio), so the
logic is tested without a browser (tests/test_app.py); gradio is imported only by those two,
and fastwarp imports without it.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .au import AU_DESCRIPTIONS, AU_INDEX, AU_MAX
from .app_common import AU_STEP, PRESET_STEP, UploadError, check_upload_size  # (AU_STEP ...: this module's API too)
from .app_common import preset_sliders as make_preset_sliders
from .face import FaceCrop
from .face.aus import VISIBLE_AUS

__all__ = ["AU_STEP", "MAX_FACES", "MAX_PIXELS", "MAX_UPLOAD_BYTES", "PRESET_STEP", "LiveEditor", "Photo",
           "PhotoEditor", "UploadError", "build_ui", "face_edits", "launch", "read_photo"]

#: Uploads larger than this are refused (by Gradio at the upload, and by :func:`read_photo`).
MAX_UPLOAD_BYTES = 25 * 1024 * 1024
#: Photos with more pixels than this are refused before they are decoded (24 MP, 6000 x 4000).
MAX_PIXELS = 24_000_000
#: The most faces of a photo the photo tab finds and edits.
MAX_FACES = 4


def read_photo(path: str | os.PathLike) -> np.ndarray:
    """The uploaded file as a uint8 BGR image ``[H, W, 3]`` (EXIF orientation applied, alpha
    dropped).

    Raises:
        UploadError: over :data:`MAX_UPLOAD_BYTES`, not an image Pillow can decode, or over
            :data:`MAX_PIXELS` (checked from the header, before decoding).
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    name = path.name
    check_upload_size(path, MAX_UPLOAD_BYTES, "photos")
    try:
        with Image.open(path) as im:
            w, h = im.size
            if w * h > MAX_PIXELS:
                raise UploadError(f"{name} is {w}x{h} ({w * h / 1e6:.0f} megapixels); the app takes photos up to "
                                  f"{MAX_PIXELS / 1e6:.0f} megapixels (resize it first)")
            im = ImageOps.exif_transpose(im).convert("RGB")
            rgb = np.asarray(im)
    except UploadError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError, SyntaxError):
        raise UploadError(f"{name} is not an image the app can read (use a PNG or JPEG photo)") from None
    if rgb.ndim != 3 or min(rgb.shape[:2]) < 16:
        raise UploadError(f"{name} is too small to hold a face ({rgb.shape[1]}x{rgb.shape[0]})")
    return np.ascontiguousarray(rgb[..., ::-1])


@dataclass
class Photo:
    """A loaded photo: the frame, its faces' aligned crops and AU estimates, found once.

    Attributes:
        frame: ``[H, W, 3]`` uint8 BGR.
        crop: the aligned crop of the largest face.
        current: float32 ``[17]``, the largest face's estimated AUs (0..5).
        sliders: the AU sliders' starting values (the largest face's estimate rounded to
            :data:`AU_STEP`); a slider away from its start is an edit.
        crops, currents: every face found (up to :data:`MAX_FACES`), largest first: their
            crops and estimates (``crops[0] is crop``). Default: the largest face alone.
    """

    frame: np.ndarray
    crop: FaceCrop
    current: np.ndarray
    sliders: dict[str, float] = field(default_factory=dict)
    crops: list[FaceCrop] = field(default_factory=list)
    currents: list[np.ndarray] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.crops:
            self.crops, self.currents = [self.crop], [self.current]


def slider_start(current: np.ndarray) -> dict[str, float]:
    """The AU sliders' values for a face whose estimate is ``current`` ``[17]``."""
    return {name: round(round(float(current[AU_INDEX[name]]) / AU_STEP) * AU_STEP, 6) for name in VISIBLE_AUS}


def slider_edits(photo: Photo, au_values: Mapping[str, float], preset_values: Mapping[str, float]) -> list:
    """The edits the sliders ask for: one ``ExprEdit`` per preset above 0, then one absolute AU
    edit ``(name, value, False)`` per AU slider moved away from its start (so AU sliders win
    over presets). No slider moved: ``[]``."""
    from .presets import ExprEdit

    edits: list = [ExprEdit(name, float(v)) for name, v in preset_values.items() if v is not None and v > 0]
    for name, v in au_values.items():
        if v is not None and abs(float(v) - photo.sliders[name]) > AU_STEP / 4:
            edits.append((name, float(min(max(v, 0.0), AU_MAX)), False))
    return edits


def face_edits(photo: Photo, edits: Sequence) -> list[list]:
    """The sliders' ``edits`` for each face of ``photo`` (largest first): the largest face
    takes them as they are; for each other face an absolute AU edit of a slider (``(name,
    value, False)``) becomes the slider's move from its start, relative to that face's own
    estimate (``(name, value - start, True)``). Presets and relative edits move every face
    from its own estimate already."""
    others = [(e[0], float(e[1]) - photo.sliders[e[0]], True)
              if isinstance(e, tuple) and len(e) == 3 and not e[2] and e[0] in photo.sliders else e for e in edits]
    return [list(edits)] + [list(others) for _ in photo.crops[1:]]


def describe(photo: Photo, au_values: Mapping[str, float], preset_values: Mapping[str, float]) -> str:
    """The sliders' edits in words, e.g. ``"smile 0.80, AU25 1.0"`` (``"no change"``)."""
    parts = [f"{n} {v:.2f}" for n, v in preset_values.items() if v is not None and v > 0]
    parts += [f"{n} {float(v):.1f}" for n, v in au_values.items()
              if v is not None and abs(float(v) - photo.sliders[n]) > AU_STEP / 4]
    return ", ".join(parts) or "no change"


class PhotoEditor:
    """The photo tab's engine: one :class:`~fastwarp.expression_editor.ExpressionEditor`
    (models loaded once) shared by the sessions, one call at a time.

    Args:
        weights, device: as :class:`~fastwarp.expression_editor.ExpressionEditor`'s.
        editor: an editor to use instead (its owner closes it).
    """

    def __init__(self, weights: str | None = None, device: str | None = None, *, editor=None) -> None:
        from .expression_editor import ExpressionEditor

        self._owned = editor is None
        self.editor = editor if editor is not None else ExpressionEditor(weights, device, max_faces=MAX_FACES)
        self.lock = threading.Lock()

    def close(self) -> None:
        if self._owned:
            self.editor.close()

    def load(self, frame_bgr: np.ndarray) -> Photo:
        """Find the faces (up to the editor's ``max_faces``, :data:`MAX_FACES` for the
        editor this class makes) and crop them: the slow steps, once per photo.

        Raises:
            UploadError: no face found.
        """
        with self.lock:
            faces = self.editor.detect(frame_bgr)
            if not faces:
                raise UploadError("no face found in this photo (the app edits a face seen from the front)")
            crops = [self.editor.crop(frame_bgr, lm) for lm in faces]
            currents = [self.editor.aus(crop, [])[0] for crop in crops]
        return Photo(frame_bgr, crops[0], currents[0], slider_start(currents[0]), crops, currents)

    def render(self, photo: Photo, edits: Sequence) -> tuple[np.ndarray, np.ndarray, float]:
        """The photo edited by ``edits`` (AU triples and ``ExprEdit``\\ s, later ones win)
        on every face :meth:`load` found (:func:`face_edits`: the sliders' absolute AU
        values are the largest face's; the other faces move by as much from their own
        estimates): ``(frame [H, W, 3] uint8 BGR, the largest face's target AUs float32
        [17], milliseconds taken)``. The crops are the ones :meth:`load` found; this runs the
        AU targets, the networks and one composite per face. No AU change: the photo itself,
        bit for bit."""
        with self.lock:
            t0 = time.perf_counter()
            result = self.editor.edit_crops(photo.frame, photo.crops, face_edits(photo, list(edits)), per_face=True)
            ms = (time.perf_counter() - t0) * 1e3
        return result.frame, result.target_aus, ms


class LiveEditor:
    """The webcam tab's engine: a :class:`~fastwarp.realtime.RealtimeEngine` (video mode,
    One Euro smoothing), made at the first frame and shared, one frame at a time."""

    def __init__(self, weights: str | None = None, device: str | None = None) -> None:
        self.weights, self.device = weights, device
        self.engine = None
        self.lock = threading.Lock()
        self.t0 = time.monotonic()

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()

    def frame(self, frame_bgr: np.ndarray, edits: Sequence) -> np.ndarray:
        """One camera frame edited by ``edits`` (uint8 BGR in and out; a frame with no face
        comes back unchanged). A new frame size starts a new stream."""
        from .realtime import FrameSizeError, RealtimeEngine

        with self.lock:
            if self.engine is None:
                self.engine = RealtimeEngine(edits, self.weights, self.device, runtime="torch", max_faces=1,
                                             region_refresh=5)  # as `fastwarp webcam`
            self.engine.set_edits(edits)
            t = time.monotonic() - self.t0
            try:
                return self.engine.process(frame_bgr, t).frame
            except FrameSizeError:
                self.engine.reset()
                return self.engine.process(frame_bgr, t).frame


def au_table(current: np.ndarray | None, target: np.ndarray | None = None) -> str:
    """Markdown table of the visible AUs: the face's estimate and the edit's target."""
    if current is None:
        return "*Load a photo to see its face's estimated AUs.*"
    rows = ["| AU | estimated | target |", "|---|---:|---:|"]
    for name in VISIBLE_AUS:
        i = AU_INDEX[name]
        tgt = "" if target is None else (f"**{target[i]:.2f}**" if abs(target[i] - current[i]) >= 0.05
                                         else f"{target[i]:.2f}")
        rows.append(f"| {name} | {current[i]:.2f} | {tgt} |")
    return "\n".join(rows)


def _rgb(bgr: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(bgr[..., ::-1])


def build_ui(photos: PhotoEditor, live: LiveEditor | None = None, video=None):
    """The Gradio Blocks of the app (needs gradio: ``pip install 'fastwarp[app]'``); ``video``:
    a :class:`fastwarp.app_video.VideoEditor` for the Video tab (fastwarp/app_video.py)."""
    import gradio as gr

    from .presets import PRESETS

    preset_names = list(PRESETS)

    def values(args: Sequence[float]) -> tuple[dict[str, float], dict[str, float]]:
        au = dict(zip(VISIBLE_AUS, args[:len(VISIBLE_AUS)]))
        return au, dict(zip(preset_names, args[len(VISIBLE_AUS):]))

    def on_upload(path):
        keep = [gr.update()] * (len(VISIBLE_AUS) + len(preset_names))
        if not path:
            return None, None, None, au_table(None), "", *keep
        try:
            photo = photos.load(read_photo(path))
        except UploadError as exc:
            gr.Warning(str(exc))
            return None, None, None, au_table(None), f"**Cannot edit this upload:** {exc}", *keep
        rgb = _rgb(photo.frame)
        h, w = photo.frame.shape[:2]
        n = len(photo.crops)
        faces = "" if n == 1 else (f" with {n} faces (the sliders start at the largest face's estimate and "
                                   f"edit every face)")
        return (photo, rgb, rgb, au_table(photo.current),
                f"Loaded a {w}x{h} photo{faces}; move a slider to edit it.",
                *[gr.update(value=photo.sliders[n]) for n in VISIBLE_AUS], *[gr.update(value=0)] * len(preset_names))

    def on_slider(photo, *args):
        if photo is None:
            return gr.update(), gr.update(), "Load a photo first."
        au, presets = values(args)
        out, target, ms = photos.render(photo, slider_edits(photo, au, presets))
        return _rgb(out), au_table(photo.current, target), f"Edited in {ms:.0f} ms: {describe(photo, au, presets)}."

    def on_reset(photo):
        if photo is None:
            return gr.update(), gr.update(), "", *[gr.update()] * (len(VISIBLE_AUS) + len(preset_names))
        return (_rgb(photo.frame), au_table(photo.current), "Reset to the photo.",
                *[gr.update(value=photo.sliders[n]) for n in VISIBLE_AUS], *[gr.update(value=0)] * len(preset_names))

    with gr.Blocks(title="fastwarp") as demo:
        gr.Markdown("# fastwarp: edit a face's expression\nLoad a photo, then move the sliders: named "
                    "expressions (presets, 0..1) or single Action Units (0..5).")
        with gr.Tab("Photo"):
            photo = gr.State(None)
            with gr.Row():
                with gr.Column(scale=1, min_width=260):
                    upload = gr.File(label="Photo (PNG or JPEG)", file_types=["image"], type="filepath",
                                     elem_id="photo-upload")
                    status = gr.Markdown("", elem_id="status")
                    reset = gr.Button("Reset sliders")
                    with gr.Accordion("Estimated AUs", open=True):
                        table = gr.Markdown(au_table(None), elem_id="au-table")
                with gr.Column(scale=3):
                    with gr.Row():
                        original = gr.Image(label="input", type="numpy", format="png", interactive=False,
                                            elem_id="original")
                        edited = gr.Image(label="edited", type="numpy", format="png", interactive=False,
                                          buttons=["download", "fullscreen"], elem_id="edited")
                    with gr.Row():
                        with gr.Column():
                            preset_sliders = make_preset_sliders(gr, preset_names, "preset-")
                        with gr.Column():
                            gr.Markdown("**Action Units** (intensity 0..5; starts at the face's estimate)")
                            au_sliders = [gr.Slider(0, AU_MAX, value=0, step=AU_STEP,
                                                    label=f"{name} {AU_DESCRIPTIONS[name]}", elem_id=f"au-{name}")
                                          for name in VISIBLE_AUS]
            sliders = [*au_sliders, *preset_sliders]
            upload.upload(on_upload, [upload], [photo, original, edited, table, status, *sliders])
            upload.clear(lambda: (None, None, None, au_table(None), ""), None, [photo, original, edited, table, status])
            reset.click(on_reset, [photo], [edited, table, status, *sliders])
            for s in sliders:  # .input: moved by the user (not by a load or reset); the newest move wins
                s.input(on_slider, [photo, *sliders], [edited, table, status], trigger_mode="always_last",
                        show_progress="hidden")
        if live is not None:
            with gr.Tab("Webcam"):
                gr.Markdown("The real-time engine (`fastwarp webcam`) on your camera, with the presets below.")
                with gr.Row():
                    cam = gr.Image(label="camera", sources=["webcam"], streaming=True, type="numpy", elem_id="cam")
                    cam_out = gr.Image(label="edited", type="numpy", elem_id="cam-edited")
                live_sliders = [gr.Slider(0, 1, value=0, step=PRESET_STEP, label=name, elem_id=f"live-{name}")
                                for name in preset_names]

                def on_frame(rgb, *intensities):
                    if rgb is None:
                        return gr.update()
                    from .presets import ExprEdit

                    edits = [ExprEdit(n, float(v)) for n, v in zip(preset_names, intensities) if v and v > 0]
                    return _rgb(live.frame(_rgb(rgb), edits))

                cam.stream(on_frame, [cam, *live_sliders], [cam_out], stream_every=0.1, time_limit=600,
                           concurrency_limit=1)
        if video is not None:
            from .app_video import build_video_tab

            build_video_tab(video)
    return demo


def launch(host: str = "127.0.0.1", port: int | None = 7860, weights: str | None = None, device: str | None = None,
           *, share: bool = False, block: bool = True):
    """Start the app (loads the models first). ``block=False`` returns the running
    ``gradio.Blocks`` (close it with ``.close()``)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # a local app: no calls home
    from .app_video import MAX_VIDEO_BYTES, VideoEditor

    photos = PhotoEditor(weights, device)
    live = LiveEditor(weights, device)
    video = VideoEditor(weights, device)
    demo = build_ui(photos, live, video)
    demo.queue(default_concurrency_limit=1)
    try:  # (Gradio's upload limit is the video's; read_photo refuses photos over MAX_UPLOAD_BYTES)
        demo.launch(server_name=host, server_port=port, share=share, max_file_size=max(MAX_UPLOAD_BYTES,
                    MAX_VIDEO_BYTES), prevent_thread_lock=not block, show_error=False, quiet=False)
    finally:
        if block:
            photos.close()
            live.close()
            video.close()
    return demo
