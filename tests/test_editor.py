"""The photo pipeline (ExpressionEditor) on the frame-space composite, with the bundled
weights, on the real photos of ../shared/data/faces/images: no edit means no change, bit
for bit, and an edit keeps the face's detail (docs/design.md, "Data flow")."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from fastwarp import ExpressionEditor
from fastwarp.au import parse_au_edit
from fastwarp.expression_editor import grid_theta
from fastwarp.face import align_face
from op_helpers import FACES_DIR

needs_faces = pytest.mark.skipif(not (FACES_DIR / "images").is_dir(),
                                 reason=f"real photos not found at {FACES_DIR}/images (set FASTWARP_FACES_DIR)")
PHOTOS = sorted((FACES_DIR / "images").iterdir()) if (FACES_DIR / "images").is_dir() else []


@pytest.fixture(scope="module", params=["base", "lite"])
def editor(request):
    with ExpressionEditor(request.param, "cpu") as e:
        yield e


def _read(path):
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None, path
    return image


@needs_faces
@pytest.mark.slow
def test_zero_edit_returns_every_photo_bit_for_bit(editor):
    edited = 0
    for path in PHOTOS:
        image = _read(path)
        for edit in ("AU12=+0", "AU04=+0"):
            r = editor.edit(image, [parse_au_edit(edit)])
            assert r.frame.shape == image.shape and r.frame.dtype == np.uint8
            assert np.array_equal(r.frame, image), (path.name, int(np.abs(r.frame.astype(int) - image).max()))
            assert r.frame is not image
        edited += r.face_found
    assert edited >= 0.8 * len(PHOTOS)  # most photos have a face: the identity was tested through the networks


def _laplacian_var(image, box):
    x0, y0, x1, y1 = box
    grey = cv2.cvtColor(image[y0:y1, x0:x1], cv2.COLOR_BGR2GRAY).astype(np.float64)
    return cv2.Laplacian(grey, cv2.CV_64F).var()


def _chain(editor, image, crop, maps):
    """The editor's previous blend, kept as the comparison: crop at the face's own side
    (at most 512 px), warp_blend of the crop, paste back under the feathered mask."""
    from fastwarp import ops
    from fastwarp.expression_editor import image_bgr, image_tensor
    from fastwarp.face import paste_back

    patch = cv2.warpAffine(image, crop.matrix, (crop.size, crop.size), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE)
    edited = image_bgr(ops.warp_blend(image_tensor(patch, maps.flow.device), maps.flow, maps.texture, maps.mask))
    return paste_back(image, edited, crop)


@needs_faces
@pytest.mark.slow
@pytest.mark.parametrize("name", ["df_img19.jpg", "df_img39.jpg", "df_img12.jpg"])
def test_an_edit_keeps_more_detail_than_crop_and_paste(editor, name):
    """Detail (variance of the Laplacian in the face box) after AU12=+2.5, the same maps
    through the composite and through the crop + warp_blend + paste-back chain: one
    resampling keeps more, for a small (169 px) face and for faces beyond max_crop_size
    (628 and 767 px, which the chain shrank to 512)."""
    image = _read(FACES_DIR / "images" / name)
    lm = editor.detect(image)[0]
    x0, y0 = np.floor(lm[:, :2].min(0)).astype(int)
    x1, y1 = np.ceil(lm[:, :2].max(0)).astype(int) + 1
    box = (max(x0, 0), max(y0, 0), min(x1, image.shape[1]), min(y1, image.shape[0]))
    crop = editor.crop(image, lm)
    current, target = editor.aus(crop, [parse_au_edit("AU12=+2.5")])
    maps = editor.predict(crop.image, target, current)
    composite = editor.blend(image, crop, maps)
    base = _laplacian_var(image, box)
    ours, chain = _laplacian_var(composite, box) / base, _laplacian_var(_chain(editor, image, crop, maps), box) / base
    assert ours >= chain + 0.05, (ours, chain)
    changed = np.abs(composite.astype(int) - image).max(-1) > 8
    assert changed[box[1]:box[3], box[0]:box[2]].mean() > 0.005  # and it is an edit


def _oval_landmarks(rng, centre, radii):
    from fastwarp.face import FACE_OVAL

    lm = np.tile(np.asarray(centre, np.float32), (478, 1))
    t = np.linspace(0, 2 * np.pi, len(FACE_OVAL), endpoint=False)
    lm[list(FACE_OVAL)] = np.stack([centre[0] + radii[0] * np.cos(t), centre[1] + radii[1] * np.sin(t)], 1)
    return lm + rng.normal(0, 0.5, lm.shape).astype(np.float32)


def test_grid_theta_places_the_grid_where_the_crop_was():
    """theta maps a frame pixel to where the crop's pixel centre sits on the grid:
    crop pixel u' (warpAffine) -> grid (u' + 0.5) s / S' - 0.5."""
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    lm = np.zeros((478, 2), np.float32)
    lm[:, 0], lm[:, 1] = rng.uniform(150, 250, 478), rng.uniform(100, 200, 478)
    crop = align_face(frame, lm, 200)
    theta = grid_theta(crop, 50)
    pts = rng.uniform(0, 300, (20, 2))
    crop_uv = pts @ crop.matrix[:, :2].T + crop.matrix[:, 2]
    np.testing.assert_allclose(pts @ theta[:, :2].T + theta[:, 2], (crop_uv + 0.5) * 50 / 200 - 0.5, atol=1e-9)


def test_blend_with_zero_flow_and_unit_mask_is_the_frame_and_never_writes_it():
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    before = frame.copy()
    lm = _oval_landmarks(rng, (80, 60), (30, 40))
    crop = align_face(frame, lm, 128)
    from fastwarp.expression_editor import Maps

    editor = ExpressionEditor.__new__(ExpressionEditor)  # blend needs no model
    maps = Maps(torch.zeros(1, 2, 64, 64), torch.rand(1, 3, 64, 64) * 2 - 1, torch.ones(1, 1, 64, 64))
    out = editor.blend(frame, crop, maps)
    assert np.array_equal(out, frame) and np.array_equal(frame, before) and out is not frame
    maps = Maps(torch.full((1, 2, 64, 64), 3.0), torch.rand(1, 3, 64, 64) * 2 - 1, torch.rand(1, 1, 64, 64))
    out = editor.blend(frame, crop, maps)
    assert np.array_equal(frame, before) and not np.array_equal(out, frame)
