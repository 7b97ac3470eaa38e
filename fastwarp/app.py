"""``fastwarp app``: a local web app (Gradio) to edit a photo's expression with sliders, and a
webcam tab on the real-time engine (docs/app.md).

The photo tab loads a photo, finds its face and crops it **once** (:meth:`PhotoEditor.load`:
FaceMesh and the aligned crop, the slow steps), then re-runs only the cheap steps on every
slider move (:meth:`PhotoEditor.render`: the AU targets, the mesh motion and texture, and one
``warp_blend`` on the photo; :meth:`ExpressionEditor.edit` split at its steps). Sliders: one
per AU the estimator sees (:data:`fastwarp.face.aus.VISIBLE_AUS`, 0..5, set to the face's
estimate when a photo is loaded; a slider moved away from that sets its AU) and one per
preset (:data:`fastwarp.presets.PRESETS`, intensity 0..1). Presets apply first, then the
moved AU sliders (later edits win). With nothing moved the output is the photo bit for bit.

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
from .face import FaceCrop
from .face.aus import VISIBLE_AUS

__all__ = ["AU_STEP", "MAX_PIXELS", "MAX_UPLOAD_BYTES", "PRESET_STEP", "LiveEditor", "Photo", "PhotoEditor",
           "UploadError", "build_ui", "launch", "read_photo"]

#: Uploads larger than this are refused (by Gradio at the upload, and by :func:`read_photo`).
MAX_UPLOAD_BYTES = 25 * 1024 * 1024
#: Photos with more pixels than this are refused before they are decoded (24 MP, 6000 x 4000).
MAX_PIXELS = 24_000_000
#: Slider steps: AU intensity (0..5) and preset intensity (0..1).
AU_STEP = 0.1
PRESET_STEP = 0.05


class UploadError(ValueError):
    """An upload the app cannot edit (not an image, too large, no face): the message is shown
    in the page."""


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
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise UploadError(f"cannot read the upload {name}: {exc.strerror or exc}") from None
    if size > MAX_UPLOAD_BYTES:
        raise UploadError(f"{name} is {size / 2**20:.0f} MB; the app takes photos up to "
                          f"{MAX_UPLOAD_BYTES / 2**20:.0f} MB")
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
    """A loaded photo: the frame, its face's aligned crop and AU estimate, found once.

    Attributes:
        frame: ``[H, W, 3]`` uint8 BGR.
        crop: the aligned crop of the largest face.
        current: float32 ``[17]``, the face's estimated AUs (0..5).
        sliders: the AU sliders' starting values (the estimate rounded to :data:`AU_STEP`); a
            slider away from its start is an edit.
    """

    frame: np.ndarray
    crop: FaceCrop
    current: np.ndarray
    sliders: dict[str, float] = field(default_factory=dict)


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
        self.editor = editor if editor is not None else ExpressionEditor(weights, device)
        self.lock = threading.Lock()

    def close(self) -> None:
        if self._owned:
            self.editor.close()

    def load(self, frame_bgr: np.ndarray) -> Photo:
        """Find the largest face and crop it (the slow steps, once per photo).

        Raises:
            UploadError: no face found.
        """
        with self.lock:
            faces = self.editor.detect(frame_bgr)
            if not faces:
                raise UploadError("no face found in this photo (the app edits a face seen from the front)")
            crop = self.editor.crop(frame_bgr, faces[0])
            current, _ = self.editor.aus(crop, [])
        return Photo(frame_bgr, crop, current, slider_start(current))

    def render(self, photo: Photo, edits: Sequence) -> tuple[np.ndarray, np.ndarray, float]:
        """The photo edited by ``edits`` (AU triples and ``ExprEdit``\\ s, later ones win):
        ``(frame [H, W, 3] uint8 BGR, target AUs float32 [17], milliseconds taken)``. The
        crop is the one :meth:`load` found; this runs the AU targets, the networks and the
        composite. No AU change: the photo itself, bit for bit."""
        with self.lock:
            t0 = time.perf_counter()
            result = self.editor.edit_crop(photo.frame, photo.crop, list(edits))
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
                self.engine = RealtimeEngine(edits, self.weights, self.device, runtime="torch", max_faces=1)
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


def build_ui(photos: PhotoEditor, live: LiveEditor | None = None):
    """The Gradio Blocks of the app (needs gradio: ``pip install 'fastwarp[app]'``)."""
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
        return (photo, rgb, rgb, au_table(photo.current),
                f"Loaded a {w}x{h} photo; move a slider to edit it.",
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
                            gr.Markdown("**Presets** (intensity 0..1)")
                            preset_sliders = [gr.Slider(0, 1, value=0, step=PRESET_STEP, label=name,
                                                        info=PRESETS[name].description, elem_id=f"preset-{name}")
                                              for name in preset_names]
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
    return demo


def launch(host: str = "127.0.0.1", port: int | None = 7860, weights: str | None = None, device: str | None = None,
           *, share: bool = False, block: bool = True):
    """Start the app (loads the models first). ``block=False`` returns the running
    ``gradio.Blocks`` (close it with ``.close()``)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # a local app: no calls home
    photos = PhotoEditor(weights, device)
    live = LiveEditor(weights, device)
    demo = build_ui(photos, live)
    demo.queue(default_concurrency_limit=1)
    try:
        demo.launch(server_name=host, server_port=port, share=share, max_file_size=MAX_UPLOAD_BYTES,
                    prevent_thread_lock=not block, show_error=False, quiet=False)
    finally:
        if block:
            photos.close()
            live.close()
    return demo
