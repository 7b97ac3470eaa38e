"""Lids that meet (fastwarp.face.lids): the mesh warp of a closing eye takes FaceMesh's floor off
the lid gap its landmarks give, against the formula written out here; every other motion is
left bit for bit; and through the editor, on real photos, a blink warped so reads more closed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fastwarp.face.lids import LID_FLOOR, LOWER_LID, UPPER_LID, close_lids
from fastwarp.face.mesh import mesh_template, mesh_vertices
from fastwarp.face.regions import eye_gap

from op_helpers import FACES_DIR


def _face() -> np.ndarray:
    """The mesh template as FaceMesh landmarks ``[478, 2]`` (IOD 150 px; iris points at the eye
    centres), float64."""
    t = mesh_template().astype(np.float64)
    iris = np.repeat([0.5 * (t[33] + t[133]), 0.5 * (t[263] + t[362])], 5, axis=0)
    return np.concatenate([t, iris])[:, :2] * 150.0 + 300.0


def _closed(face: np.ndarray, close: tuple[float, float]) -> np.ndarray:
    """The face with each eye's upper lid line moved ``close`` (right, left) of the way to its
    lower lid line (negative: the eye widens)."""
    out = face.copy()
    for eye, c in enumerate(close):
        up, lo = list(UPPER_LID[eye]), list(LOWER_LID[eye])
        out[up] += c * (face[lo] - face[up])
    return out


def _mesh(source: np.ndarray, target: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    v = mesh_vertices(torch.from_numpy(source)[None])
    return v, mesh_vertices(torch.from_numpy(target)[None]) - v


def _moved(source: np.ndarray, target: np.ndarray, floor: float | None = None) -> np.ndarray:
    v, d = _mesh(source, target)
    out = target.copy()  # [478, 2]: the mesh's 468 points moved, the iris points as given
    out[:468] = (v + close_lids(v, d, floor))[0, :468].numpy()
    return out


def test_a_closing_eye_gets_the_gap_less_the_floor():
    """g' = g_s P(g_t) / P(g_s), P(g) = sqrt(max(g^2 - floor^2, 0)), per eye; only the upper lid
    lines move, each point along its line to its lower point."""
    source = _face()
    target = _closed(source, (0.5, 0.7))
    g_s, g_t = eye_gap(source[None])[0].astype(np.float64), eye_gap(target[None])[0].astype(np.float64)
    assert (g_t > LID_FLOOR).all() and (g_s > g_t).all()
    p = lambda g: np.sqrt(np.maximum(g ** 2 - LID_FLOOR ** 2, 0.0))  # noqa: E731
    out = _moved(source, target)
    np.testing.assert_allclose(eye_gap(out[None])[0], g_s * p(g_t) / p(g_s), rtol=1e-5)
    assert (eye_gap(out[None])[0] < g_t).all()
    upper = sorted(UPPER_LID[0] + UPPER_LID[1])
    rest = np.setdiff1d(np.arange(468), upper)
    np.testing.assert_allclose(out[rest], target[rest], atol=1e-4)  # lower lids, corners, the rest
    for eye in (0, 1):
        up, lo = list(UPPER_LID[eye]), list(LOWER_LID[eye])
        a, b = target[up] - target[lo], out[up] - target[lo]
        cross = a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]
        np.testing.assert_allclose(cross / (np.linalg.norm(a, axis=1) ** 2), 0.0, atol=1e-5)  # on the line
        assert ((a * b).sum(1) > 0).all() and (np.linalg.norm(b, axis=1) < np.linalg.norm(a, axis=1)).all()


def test_lids_meet_from_the_floor_down():
    source = _face()
    target = _closed(source, (0.8, 0.8))  # gap 0.06 of about 0.3: under the floor
    assert (eye_gap(target[None])[0] < LID_FLOOR).all()
    out = _moved(source, target)
    assert (eye_gap(out[None])[0] < 1e-4).all()
    for eye in (0, 1):
        np.testing.assert_allclose(out[list(UPPER_LID[eye])], target[list(LOWER_LID[eye])], atol=1e-3)


@pytest.mark.parametrize("close", [(0.0, 0.0), (-0.3, -0.2), (0.0, -0.3)])
def test_eyes_that_do_not_close_are_left_bit_for_bit(close):
    source = _face()
    v, d = _mesh(source, _closed(source, close))
    out = close_lids(v, d)
    assert torch.equal(out, d)
    if not d.any():
        assert out is d  # no motion: the same tensor, no copy


def test_one_eye_closes_the_other_is_left_and_floor_zero_changes_nothing():
    source = _face()
    v, d = _mesh(source, _closed(source, (0.6, -0.2)))
    out = close_lids(v, d)
    left = list(UPPER_LID[1]) + list(LOWER_LID[1])
    assert torch.equal(out[:, left], d[:, left]) and not torch.equal(out, d)
    assert torch.equal(close_lids(v, d, floor=0.0), d)
    # a source eye already at the floor is left as it is
    shut = _closed(source, (0.8, 0.8))
    v2, d2 = _mesh(shut, _closed(shut, (0.5, 0.5)))
    assert torch.equal(close_lids(v2, d2), d2)


def test_lid_contours_of_the_warp_or_of_the_landmarks():
    """region_inputs with ``lid_contours="warp"`` draws a closing eye's target contours where the
    warp puts the lids: under the floor the upper lid line lies on the lower one (drawn here from
    the lower lid's own points, independently of close_lids); with ``lid_floor=0``, for an eye
    that opens, and by default (``"landmarks"``, as the eye textures were trained), the
    landmarks' own lines, exactly."""
    from fastwarp.face.regions import EYE, contour_map, region_matrix, to_region
    from fastwarp.models.region_texture import region_inputs

    source = _face()
    m = region_matrix(source[None], EYE, "right")[0]
    src = to_region(source, m).astype(np.float32)

    def contours(target, floor=None, lines="warp"):
        tgt = torch.from_numpy(to_region(target, m).astype(np.float32))[None]
        kw = {} if lines is None else {"lid_contours": lines}  # None: the default
        got = region_inputs(torch.zeros(1, 3, EYE.height, EYE.width), torch.from_numpy(src)[None], tgt, "eye",
                            ["right"], cavity=True, lid_floor=floor, **kw)
        return got["contours"][0].numpy(), tgt[0].numpy()

    shut = _closed(source, (0.8, 0.8))  # under the floor: the lids meet
    got, tgt = contours(shut)
    met = tgt.copy()
    met[list(UPPER_LID[0])] = tgt[list(LOWER_LID[0])]
    np.testing.assert_allclose(got, contour_map(met, "eye", EYE.height, EYE.width, "right"), atol=0.02)
    assert np.abs(got - contour_map(tgt, "eye", EYE.height, EYE.width, "right")).max() > 0.5
    for literal, tgt in (contours(shut, floor=0.0), contours(shut, lines="landmarks"), contours(shut, lines=None)):
        assert np.array_equal(literal, contour_map(tgt, "eye", EYE.height, EYE.width, "right"))
    with pytest.raises(ValueError, match="lid_contours must be 'warp' or 'landmarks', got 'lids'"):
        contours(shut, lines="lids")
    wide, tgt = contours(_closed(source, (-0.3, -0.3)))
    assert np.array_equal(wide, contour_map(tgt, "eye", EYE.height, EYE.width, "right"))


@pytest.mark.skipif(not (FACES_DIR / "images" / "df_img41.jpg").is_file(), reason="faces data not found")
def test_a_blink_warped_with_lids_that_meet_reads_more_closed(monkeypatch):
    """Through the editor (the mesh warp alone, ``texture="none"``), on two photos whose eyes a
    blink left open in phase 6: MediaPipe reads a smaller lid gap on the output with the floor than
    without it, and a zero edit is the photo bit for bit either way."""
    import cv2

    import fastwarp.face.lids as lids
    from fastwarp import ExpressionEditor
    from fastwarp.au import parse_au_edit
    from fastwarp.face.landmarks import FaceMesh

    blink = [parse_au_edit("AU45=5")]
    with ExpressionEditor("base", "cpu", texture="none") as ed, FaceMesh(static_image_mode=True) as reader:
        for name in ("df_img41.jpg", "df_img19.jpg"):
            image = cv2.imread(str(FACES_DIR / "images" / name), cv2.IMREAD_COLOR)
            gaps = {}
            for floor in (0.0, LID_FLOOR):
                monkeypatch.setattr(lids, "LID_FLOOR", floor)
                gaps[floor] = eye_gap(reader.detect(ed.edit(image, blink).frame)[0][None])[0].mean()
                assert np.array_equal(ed.edit(image, [parse_au_edit("AU45=+0")]).frame, image)
            assert gaps[LID_FLOOR] < gaps[0.0] - 0.005, (name, gaps)
