"""Promises of the command that a user sees, each held through ``fastwarp edit`` on a real
photo (../shared/data/faces/images): the side-by-side shows input | output, an AU asked
beyond 0..5 is clamped and said so, and a zero edit returns the photo bit for bit on every
motion path and every bundled network. (``fastwarp video``'s edit and zero edit are held in
tests/test_video_io.py, on lossless output.)
"""

from __future__ import annotations

import re

import cv2
import numpy as np
import pytest

from fastwarp.cli import main
from fastwarp.models import BUNDLED_WEIGHTS
from op_helpers import FACES_DIR

PHOTO = FACES_DIR / "images" / "st_people_0.png"

pytestmark = pytest.mark.skipif(not PHOTO.is_file(), reason=f"faces data not found at {FACES_DIR}")


def _edit(capsys, *argv) -> tuple[int, str]:
    rc = main(["edit", str(PHOTO), *map(str, argv), "--device", "cpu"])
    return rc, capsys.readouterr().out


def test_side_by_side_shows_the_input_then_the_output(tmp_path, capsys):
    out, sbs = tmp_path / "out.png", tmp_path / "sbs.png"
    rc, _ = _edit(capsys, "--au", "AU12=+2", "-o", out, "--side-by-side", sbs)
    assert rc == 0
    photo, edited, pair = (cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in (PHOTO, out, sbs))
    h, w = photo.shape[:2]
    assert pair.shape[:2] == (h + 28, 2 * w)  # a caption strip above input | edited
    assert np.array_equal(pair[28:, :w], photo[..., :3])
    assert np.array_equal(pair[28:, w:], edited[..., :3])
    assert not np.array_equal(edited, photo)  # so the two halves differ


def test_an_au_beyond_the_scale_is_clamped_and_said_so(tmp_path, capsys):
    rc, out = _edit(capsys, "--au", "AU12=+5", "-o", tmp_path / "out.png")
    assert rc == 0
    current = float(re.search(r"AU12 (\d\.\d)->5\.0", out).group(1))  # the target is the clamp, 5
    assert re.search(rf"^note: AU12: {current:.1f} \+5 is beyond 0\.\.5, clamped to 5$", out, re.M), out
    rc, out = _edit(capsys, "--au", "AU12=+0.5", "-o", tmp_path / "in_range.png")
    assert rc == 0 and "note:" not in out  # and only then


@pytest.mark.parametrize("weights", BUNDLED_WEIGHTS)
@pytest.mark.parametrize("motion", ["mesh", "dense"])
def test_zero_edit_returns_the_photo_bit_for_bit_on_every_path(tmp_path, capsys, weights, motion):
    out = tmp_path / "out.png"
    rc, stdout = _edit(capsys, "--au", "AU12=+0", "--weights", weights, "--motion", motion, "-o", out)
    assert rc == 0 and "no AU changed" in stdout
    assert np.array_equal(cv2.imread(str(out), cv2.IMREAD_UNCHANGED), cv2.imread(str(PHOTO), cv2.IMREAD_UNCHANGED))
    # The same path with a real edit does change the photo (the test is not of a no-op).
    rc, _ = _edit(capsys, "--au", "AU12=+2", "--weights", weights, "--motion", motion, "-o", out)
    assert rc == 0
    assert not np.array_equal(cv2.imread(str(out), cv2.IMREAD_UNCHANGED), cv2.imread(str(PHOTO), cv2.IMREAD_UNCHANGED))


def test_bicubic_taps_keep_more_of_the_face_than_bilinear(tmp_path, capsys):
    """``--resample`` (default bicubic) against ``--resample bilinear`` on a real smile: the same
    pixels change (the face's footprint; everything else bit for bit), and the bicubic edit
    keeps more of the face's detail (variance of the Laplacian in the landmark box; ten photos
    measured 0.93x vs 0.75x of the input's, docs/evaluation/resample.md)."""
    photo = FACES_DIR / "images" / "df_img2.jpg"
    outs = {}
    for mode in ("bilinear", "bicubic"):
        outs[mode] = tmp_path / f"{mode}.png"
        rc = main(["edit", str(photo), "--au", "AU12=+2.5", "--resample", mode, "-o", str(outs[mode]),
                   "--device", "cpu"])
        assert rc == 0
    image = cv2.imread(str(photo), cv2.IMREAD_COLOR)
    bilinear, bicubic = (cv2.imread(str(outs[m]), cv2.IMREAD_COLOR) for m in ("bilinear", "bicubic"))
    changed = [np.any(im != image, axis=2) for im in (bilinear, bicubic)]
    ys, xs = np.nonzero(changed[0] | changed[1])
    assert len(ys) > 1000
    box = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
    outside = np.ones(image.shape[:2], bool)
    outside[box] = False
    assert np.array_equal(bilinear[outside], image[outside]) and np.array_equal(bicubic[outside], image[outside])

    def detail(im):
        grey = cv2.cvtColor(im[box], cv2.COLOR_BGR2GRAY).astype(np.float64)
        return cv2.Laplacian(grey, cv2.CV_64F).var()

    assert detail(bicubic) > 1.1 * detail(bilinear), (detail(image), detail(bilinear), detail(bicubic))
    rc, _ = _edit(capsys, "--au", "AU12=+0", "--resample", "bicubic", "-o", tmp_path / "zero.png")
    assert np.array_equal(cv2.imread(str(tmp_path / "zero.png"), cv2.IMREAD_UNCHANGED),
                          cv2.imread(str(PHOTO), cv2.IMREAD_UNCHANGED))


@pytest.mark.parametrize("weights", BUNDLED_WEIGHTS)
def test_a_grey_photo_stored_as_colour_stays_grey(tmp_path, capsys, weights):
    """The textures were trained on colour faces: on a black-and-white photo saved as RGB they
    would tint the lips and lids. Blink and an open mouth wake the eye and mouth textures and
    the mesh texture; every output pixel keeps three equal channels."""
    from PIL import Image

    grey = tmp_path / "grey.png"
    Image.open(PHOTO).convert("L").convert("RGB").save(grey)
    out = tmp_path / "out.png"
    rc = main(["edit", str(grey), "--au", "AU45=5", "--au", "AU25=+2", "--au", "AU26=+2.5", "--weights", weights,
               "--device", "cpu", "-o", str(out)])
    assert rc == 0, capsys.readouterr().out
    edited = cv2.imread(str(out), cv2.IMREAD_COLOR).astype(np.int32)
    assert not np.array_equal(edited, cv2.imread(str(grey), cv2.IMREAD_COLOR))  # the edit did paint
    chroma = np.abs(edited - edited[..., :1]).max()
    assert chroma == 0, f"a grey photo came back with colour (largest channel difference {chroma})"
