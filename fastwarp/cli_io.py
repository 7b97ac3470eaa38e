"""The ``fastwarp`` command's checks of its inputs and outputs, and its one-line errors
(:mod:`fastwarp.cli`, :mod:`fastwarp.app`): every user error is a :class:`CLIError`, printed
as ``fastwarp: error: ...`` on one line with exit status 1; a malformed command line exits 2
(:class:`UsageParser`); outputs are checked before any work and written through a temporary
file and a rename, so a failed run never leaves a partial output.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

import numpy as np

__all__ = ["EXIT_ERROR", "EXIT_USAGE", "CLIError", "UsageParser", "check_device", "check_image_output",
           "check_input", "check_output", "one_line", "output_file", "read_image", "side_by_side", "write_image"]

EXIT_ERROR = 1
EXIT_USAGE = 2


class CLIError(Exception):
    """A user-facing error: printed as one line, exit status EXIT_ERROR."""


class UsageParser(argparse.ArgumentParser):
    """argparse with a one-line usage error (exit status EXIT_USAGE): ``fastwarp: error: ...``."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"fastwarp: error: {one_line(message)} (see: {self.prog} --help)\n")


def one_line(message: str) -> str:
    return "; ".join(line.strip() for line in str(message).splitlines() if line.strip())


def check_device(device: str | None) -> None:
    """``--device cuda`` where torch has no CUDA device: say so before loading anything."""
    if device != "cuda":
        return
    import torch

    if not torch.cuda.is_available():
        why = "this torch is a CPU-only build" if torch.version.cuda is None else "torch sees no CUDA device"
        raise CLIError(f"--device cuda, but no CUDA GPU is available ({why}, torch {torch.__version__}); "
                       "use --device cpu")


def _cannot_write(path: Path, exc: OSError) -> str:
    return f"cannot write {path}: {exc.strerror or exc}"


def check_output(path: Path) -> None:
    """Refuse an output that cannot be written before any work is done (writing it later is
    still checked: :func:`output_file`)."""
    parent = path.parent
    if path.is_dir():
        raise CLIError(f"cannot write {path}: it is a directory")
    if not parent.is_dir():
        raise CLIError(f"cannot write {path}: {parent} " + ("is not a directory" if parent.exists()
                                                           else "does not exist (create the directory first)"))
    if not os.access(parent, os.W_OK | os.X_OK):
        raise CLIError(f"cannot write {path}: the directory {parent} is not writable")


@contextlib.contextmanager
def output_file(path: Path):
    """:func:`fastwarp._io.atomic_path`, with its own failures (the temporary file beside
    ``path``, the final rename) as CLIError; errors of the ``with`` block pass unchanged."""
    from ._io import atomic_path

    ctx = atomic_path(path)
    try:
        tmp = ctx.__enter__()
    except OSError as exc:
        raise CLIError(_cannot_write(path, exc)) from None
    try:
        yield tmp
    except BaseException:
        if not ctx.__exit__(*sys.exc_info()):
            raise
    else:
        try:
            ctx.__exit__(None, None, None)
        except OSError as exc:
            raise CLIError(_cannot_write(path, exc)) from None


def check_input(path: Path, what: str) -> None:
    if not path.exists():
        raise CLIError(f"{what} not found: {path}")
    if not path.is_file():
        raise CLIError(f"{what} is not a file: {path}")


def check_image_output(path: Path) -> None:
    """Refuse an image output whose suffix names no format :func:`write_image` writes
    (:data:`fastwarp.media.image.WRITABLE_SUFFIXES`: .png .jpg .jpeg .tif .tiff .webp .bmp)."""
    from .media.image import WRITABLE_SUFFIXES

    if path.suffix.lower() not in WRITABLE_SUFFIXES:
        raise CLIError(f"cannot write images of type '{path.suffix or '(none)'}': {path} "
                       f"(use .png, .jpg, .tif, .webp or .bmp)")


def side_by_side(before: np.ndarray, after: np.ndarray, labels=("input", "edited")) -> np.ndarray:
    """Input and output next to each other with a caption strip, ``[H + 28, 2W, 3]`` uint8."""
    import cv2

    w = before.shape[1]
    strip = np.full((28, 2 * w, 3), 255, np.uint8)
    for i, text in enumerate(labels):
        cv2.putText(strip, text, (i * w + 8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    return np.vstack([strip, np.hstack([before, after])])


def read_image(path: Path):
    """:func:`fastwarp.media.image.read_image` with its error as a CLIError (one line:
    ``cannot read image PATH: truncated JPEG (...)``)."""
    from .media.image import ImageReadError
    from .media.image import read_image as read

    try:
        return read(path)
    except ImageReadError as exc:
        raise CLIError(str(exc)) from None


def write_image(path: Path, image: np.ndarray, photo=None) -> list[str]:
    """Write ``image`` (``[H, W, 3]`` uint8 or uint16 BGR) to ``path`` through a temporary
    file and a rename, kept as ``photo`` (a :class:`fastwarp.media.image.Photo`: its alpha,
    bit depth, grey, ICC profile, EXIF) when given. Returns the notes of
    :func:`fastwarp.media.image.write_image` (what the format could not keep).

    Raises:
        CLIError: the file cannot be written (nothing is left at ``path``).
    """
    from .media.image import write_image as write

    with output_file(path) as tmp:
        try:
            return write(tmp, photo, image)
        except (OSError, ValueError) as exc:
            raise CLIError(f"could not write {path}: {one_line(getattr(exc, 'strerror', None) or exc)}") from None
