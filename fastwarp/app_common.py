"""What the web app's tabs share (:mod:`fastwarp.app`, :mod:`fastwarp.app_video`): the
sliders' steps and the error an upload gets in the page."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["AU_STEP", "PRESET_STEP", "UploadError", "check_upload_size", "preset_sliders"]

#: Slider steps: AU intensity (0..5 or a change of it), preset intensity (0..1).
AU_STEP = 0.1
PRESET_STEP = 0.05


class UploadError(ValueError):
    """An upload the app cannot edit (not an image or video, too large, no face): the message is
    shown in the page."""


def check_upload_size(path: str | os.PathLike, limit: int, what: str, name: str | None = None) -> None:
    """Refuse an upload of more than ``limit`` bytes (``what``: "photos", "clips"), or one that
    cannot be read, with a message naming it (``name``, default the file's name).

    Raises:
        UploadError: unreadable, or over the limit.
    """
    path = Path(path)
    name = name or path.name
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise UploadError(f"cannot read the upload {name}: {exc.strerror or exc}") from None
    if size > limit:
        raise UploadError(f"{name} is {size / 2**20:.0f} MB; the app takes {what} up to {limit / 2**20:.0f} MB")


def preset_sliders(gr, names, elem_prefix: str) -> list:
    """A "Presets" heading and one 0..1 slider per preset name (``elem_id``: the prefix and the
    name), in the current Gradio block; ``gr`` is the gradio module."""
    from .presets import PRESETS

    gr.Markdown("**Presets** (intensity 0..1)")
    return [gr.Slider(0, 1, value=0, step=PRESET_STEP, label=name, info=PRESETS[name].description,
                      elem_id=f"{elem_prefix}{name}") for name in names]
