"""Teeth that follow the jaws (fastwarp/face/jaws.py, issue 19): inside an opening mouth the
flow moves what the source shows between its lips rigidly with the upper lip and leaves the
cavity above the lower lip to the texture; everywhere else, and for a mouth that closes, the
mesh flow is untouched. Checked against the geometry written out by hand on the median face."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fastwarp.face.jaws import UPPER_SHARE, split_mouth_flow, upper_share
from fastwarp.face.mesh import mesh_template
from fastwarp.face.regions import LOWER_INNER_LIP, UPPER_INNER_LIP

SIZE = 160
LOWER_ONLY = sorted(set(LOWER_INNER_LIP) - set(UPPER_INNER_LIP))  # the corners belong to both lines


def _face(gap: float = 6.0) -> np.ndarray:
    """[478, 2] landmarks of the median face, IOD 100 px, the mouth open by ``gap`` px."""
    lm = np.zeros((478, 2))
    lm[:468] = mesh_template().astype(np.float64) * 100.0
    d = lm[308] - lm[78]  # level the mouth's corners, so "up" in the mouth is up in the image
    a = -np.arctan2(d[1], d[0])
    lm[:468] = lm[:468] @ np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])
    lm[:468] += np.array([SIZE / 2, SIZE / 2 - 40]) - lm[[78, 308]].mean(0) + np.array([0.0, 40.0])
    lm[468:] = lm[:468].mean(0)
    lm[LOWER_ONLY, 1] += gap
    return lm


def _lower_line_y(lm: np.ndarray, x: np.ndarray) -> np.ndarray:
    p = lm[list(LOWER_INNER_LIP)]
    return np.interp(x, p[:, 0], p[:, 1])


def _upper_line_y(lm: np.ndarray, x: np.ndarray) -> np.ndarray:
    p = lm[list(UPPER_INNER_LIP)]
    return np.interp(x, p[:, 0], p[:, 1])


def test_the_upper_teeth_stay_with_the_upper_lip_and_the_cavity_opens_above_the_lower_lip():
    source = _face(6.0)
    target = source.copy()
    target[LOWER_ONLY, 1] += 20.0  # the jaw drops 20 px
    flow = torch.randn(1, 2, SIZE, SIZE, dtype=torch.float64)
    out, cavity, rigid = split_mouth_flow(flow, source[None], target[None])
    ys, xs = np.mgrid[0:SIZE, 0:SIZE]
    up_t, low_t = _upper_line_y(target, xs), _lower_line_y(target, xs)
    up_s, low_s = _upper_line_y(source, xs), _lower_line_y(source, xs)
    inside = (xs > target[78, 0] + 1) & (xs < target[308, 0] - 1) & (ys > up_t + 0.5) & (ys < low_t - 0.5)
    assert inside.sum() > 500
    # The rows within the source's gap of the (unmoved) upper lip: the upper teeth, flow 0, kept.
    teeth = inside & (ys - up_t < (low_s - up_s) - 0.5)
    # Below them: the cavity, sampling the source's lower lip line at the same column.
    hole = inside & (ys - up_t > (low_s - up_s) + 0.5)
    assert teeth.sum() > 100 and hole.sum() > 100
    f = out[0].numpy()
    np.testing.assert_allclose(f[:, teeth], 0.0, atol=1e-6)
    assert (rigid[0, 0].numpy()[teeth] == 1).all() and (cavity[0, 0].numpy()[teeth] == 0).all()
    assert (cavity[0, 0].numpy()[hole] == 1).all() and (rigid[0, 0].numpy()[hole] == 0).all()
    sx, sy = xs[hole] + f[0][hole], ys[hole] + f[1][hole]
    np.testing.assert_allclose(sy, _lower_line_y(source, sx), atol=0.05)
    np.testing.assert_allclose(sx, xs[hole], atol=0.05)  # the corners did not move: straight up
    # Outside the target's inner lips the flow is the input's, bit for bit.
    outside = ~((xs >= target[78, 0] - 1) & (xs <= target[308, 0] + 1) & (ys >= up_t - 1) & (ys <= low_t + 1))
    assert torch.equal(out[:, :, torch.from_numpy(outside)], flow[:, :, torch.from_numpy(outside)])
    assert not (cavity[0, 0].numpy()[outside].any() or rigid[0, 0].numpy()[outside].any())


def test_the_teeth_move_rigidly_with_a_lip_that_moves():
    source = _face(8.0)
    target = source + np.array([3.0, -2.0])  # the whole mouth moves ...
    target[LOWER_ONLY, 1] += 15.0           # ... and the jaw drops
    out, cavity, rigid = split_mouth_flow(torch.zeros(1, 2, SIZE, SIZE), source[None], target[None])
    r = rigid[0, 0].numpy() == 1
    assert r.sum() > 100 and cavity.sum() > 100
    np.testing.assert_allclose(out[0, 0].numpy()[r], -3.0, atol=1e-4)
    np.testing.assert_allclose(out[0, 1].numpy()[r], 2.0, atol=1e-4)


@pytest.mark.parametrize("jaw", [0.0, -4.0])
def test_a_mouth_that_does_not_open_keeps_the_mesh_flow(jaw):
    source = _face(6.0)
    target = source.copy()
    target[LOWER_ONLY, 1] += jaw
    flow = torch.randn(2, 2, SIZE, SIZE)
    out, cavity, rigid = split_mouth_flow(flow, np.stack([source, source]), np.stack([target, target]))
    assert torch.equal(out, flow) and not cavity.any() and not rigid.any()
    assert out is not flow


def _mouth_image(lm: np.ndarray, shade) -> np.ndarray:
    """A grey [SIZE, SIZE, 3] uint8 image whose mouth, between the inner lip lines of the level
    face ``lm``, has the grey level ``shade(u)`` at ``u`` = 0 (upper lip) .. 1 (lower lip)."""
    ys, xs = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    up, low = _upper_line_y(lm, xs), _lower_line_y(lm, xs)
    u = (ys - up) / np.maximum(low - up, 1e-9)
    inside = (xs > lm[78, 0]) & (xs < lm[308, 0]) & (u >= 0) & (u <= 1)
    grey = np.full((SIZE, SIZE), 150.0)  # lips and skin
    grey[inside] = shade(u[inside])
    return np.repeat(np.clip(grey, 0, 255).round().astype(np.uint8)[..., None], 3, axis=2)


@pytest.mark.parametrize("dip", [0.3, 0.55, 0.8])
def test_the_jaws_part_on_the_dark_line_under_the_upper_teeth(dip):
    """Upper teeth (220) down to a dark line (a V, 10 at ``dip``), lower teeth (200) below it:
    upper_share puts the split on the line."""
    lm = _face(30.0)

    def shade(u):
        return np.where(u < dip, np.minimum(220.0, 10.0 + (dip - u) * 700.0),
                        np.minimum(200.0, 10.0 + (u - dip) * 700.0))

    assert abs(upper_share(_mouth_image(lm, shade), lm) - dip) < 0.03


@pytest.mark.parametrize("case", ["bright", "dim", "narrow", "teeth to the lip"])
def test_the_jaws_part_at_the_lower_lip_without_a_dark_line(case):
    """No split (UPPER_SHARE, 1) where the gap shows no teeth (all dim), no dark line (teeth down to
    the lower lip, or a bright gap), or is too narrow to read (2 px at IOD 100)."""
    lm = _face(-9.5 if case == "narrow" else 30.0)  # the template's lips are 11.5 px apart
    shade = {"bright": lambda u: np.full_like(u, 210.0), "dim": lambda u: np.full_like(u, 40.0),
             "narrow": lambda u: np.where(u < 0.5, 220.0, 10.0),
             "teeth to the lip": lambda u: 200.0 - 60.0 * u}[case]
    assert upper_share(_mouth_image(lm, shade), lm) == UPPER_SHARE == 1.0


def test_a_split_inside_the_gap_keeps_both_rows_of_teeth():
    """upper_share 0.5: the source's upper half moves with the upper lip, its lower half with the
    lower lip (the jaw), and the cavity between samples the source's split line."""
    source = _face(10.0)
    target = source.copy()
    target[LOWER_ONLY, 1] += 20.0
    out, cavity, rigid = split_mouth_flow(torch.zeros(1, 2, SIZE, SIZE, dtype=torch.float64), source[None],
                                          target[None], 0.5)
    ys, xs = np.mgrid[0:SIZE, 0:SIZE]
    up_t, low_t = _upper_line_y(target, xs), _lower_line_y(target, xs)
    up_s, low_s = _upper_line_y(source, xs), _lower_line_y(source, xs)
    half = 0.5 * (low_s - up_s)
    cols = (xs > target[78, 0] + 8) & (xs < target[308, 0] - 8)
    upper = cols & (ys > up_t + 0.5) & (ys - up_t < half - 0.5)
    lower = cols & (ys < low_t - 0.5) & (low_t - ys < half - 0.5)
    hole = cols & (ys - up_t > half + 0.5) & (low_t - ys > half + 0.5)
    assert upper.sum() > 50 and lower.sum() > 50 and hole.sum() > 100
    f = out[0].numpy()
    np.testing.assert_allclose(f[:, upper], 0.0, atol=1e-6)  # the upper lip did not move
    np.testing.assert_allclose(f[1][lower], -20.0, atol=0.05)  # the jaw dropped 20 px
    assert (rigid[0, 0].numpy()[upper | lower] == 1).all() and (cavity[0, 0].numpy()[hole] == 1).all()
    sy = ys[hole] + f[1][hole]
    np.testing.assert_allclose(sy, (up_s + half)[hole], atol=0.05)


def test_bad_shapes_are_refused():
    lm = _face()[None]
    with pytest.raises(ValueError, match=r"flow must be \[N, 2, H, W\]"):
        split_mouth_flow(torch.zeros(1, 3, 8, 8), lm, lm)
    with pytest.raises(ValueError, match="landmarks for 1 and 1 faces, flow for 2"):
        split_mouth_flow(torch.zeros(2, 2, 8, 8), lm, lm)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["df_img24.jpg", "df_img39.jpg", "df_img19.jpg"])
def test_teeth_that_show_stay_sharp_when_the_mouth_opens(name):
    """On photos that smile with teeth, `--au AU25=+2 --au AU26=+2.5` (mesh texture): the detail
    (Laplacian variance) inside the input's inner lips keeps at least half the input's, where
    the mesh warp alone stretches the teeth into a column (measured: 0.7-0.9x against
    0.1-0.3x of the input)."""
    import cv2

    from fastwarp import ExpressionEditor
    from fastwarp.au import parse_au_edit
    from op_helpers import FACES_DIR

    path = FACES_DIR / "images" / name
    if not path.is_file():
        pytest.skip(f"faces data not found at {FACES_DIR}")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    edits = [parse_au_edit("AU25=+2"), parse_au_edit("AU26=+2.5")]
    with ExpressionEditor("base", "cpu", texture="mesh") as ed:
        lm = ed.detect(image)[0][:, :2]
        inner = np.zeros(image.shape[:2], np.uint8)
        cv2.fillPoly(inner, [np.round(lm[list(UPPER_INNER_LIP) + list(LOWER_INNER_LIP)[::-1]]).astype(np.int32)], 1)
        inner = inner.astype(bool)
        detail = {}
        for split in (True, False):
            ed.mesh_motion.split_mouth = split
            out = ed.edit(image, edits).frame
            detail[split] = cv2.Laplacian(cv2.cvtColor(out, cv2.COLOR_BGR2GRAY).astype(float), cv2.CV_64F)[inner].var()
    before = cv2.Laplacian(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(float), cv2.CV_64F)[inner].var()
    assert inner.sum() > 2000
    assert detail[True] >= 0.5 * before and detail[True] >= 2.0 * detail[False], (before, detail)


@pytest.mark.slow
@pytest.mark.parametrize("name, low, high", [("lp_d12_img.jpg", 0.65, 0.85), ("fr_obama2.jpg", 0.25, 0.45)])
def test_a_mouth_opened_on_its_own_split_is_dark_between_the_jaws(name, low, high):
    """Photos whose lips part on the upper teeth with a dark line under them (lp_d12: the upper row
    and the mouth's dark; fr_obama2: both rows, a dark gap between): the split is read on that
    line and reaches the mouth region's split; and under `--au AU25=+2 --au AU26=+2.5` the opened
    mouth (inside the output's own inner lips, MediaPipe) is darker than with the jaws parting at
    the lower lip, whose pink inner edge the cavity repeats there. The darkness is the split's
    own, measured with the mesh texture under the cavity (``mouth_weights="none"``: 53 / 51
    against 69 / 65, min(B, G, R)): the bundled mouth textures paint the whole cavity whatever
    the split (phase 6; with them 67 / 57 against 71 / 65)."""
    import cv2

    from fastwarp import ExpressionEditor
    from fastwarp.au import parse_au_edit
    from op_helpers import FACES_DIR

    path = FACES_DIR / "images" / name
    if not path.is_file():
        pytest.skip(f"faces data not found at {FACES_DIR}")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    edits = [parse_au_edit("AU25=+2"), parse_au_edit("AU26=+2.5")]
    with ExpressionEditor("base", "cpu") as ed:
        assert low < upper_share(image, ed.detect(image)[0][:, :2]) < high
        # the face's split is read on its crop and reaches the mouth region's split unchanged
        crop = ed.crop(image, ed.detect(image)[0])
        current, target = ed.aus(crop, edits)
        maps = ed.predict(crop.image, target, current, crop.landmarks)
        assert maps.motion.upper_share == upper_share(crop.image, crop.landmarks[:, :2])
        assert low - 0.05 < maps.motion.upper_share < high + 0.05
        seen = []
        region_inputs = ed.regions.region_inputs

        def spy(frame8, source, target, spec, sides, upper_share=None, cavity=False):
            seen.append((spec.kind, upper_share))
            return region_inputs(frame8, source, target, spec, sides, upper_share, cavity)

        ed.regions.region_inputs = spy
        ed.edit(image, edits)
        ed.regions.region_inputs = region_inputs
        mouth = [share for kind, share in seen if kind == "mouth"]
        assert mouth and all(abs(x - maps.motion.upper_share) < 0.02 for x in mouth), seen
    with ExpressionEditor("base", "cpu", mouth_weights="none") as ed:
        own = ed.edit(image, edits).frame
        ed.mesh_motion.upper_share = 1.0
        lower_lip = ed.edit(image, edits).frame
        lm = ed.detect(own)[0][:, :2]
    inner = np.zeros(image.shape[:2], np.uint8)
    cv2.fillPoly(inner, [np.round(lm[list(UPPER_INNER_LIP) + list(LOWER_INNER_LIP)[::-1]]).astype(np.int32)], 1)
    inner = inner.astype(bool)
    assert inner.sum() > 2000
    dark_own, dark_lip = own.min(-1)[inner].mean(), lower_lip.min(-1)[inner].mean()
    assert dark_own < dark_lip - 5.0, (dark_own, dark_lip)


def test_the_quick_test_for_an_opening_mouth_agrees_with_a_fine_scan():
    """_mouth_opens (the split's early exit, from the lip lines' kinks) against the split's own
    condition scanned on 20,001 points of s: random lip motions of both signs, none missed."""
    from fastwarp.face.jaws import _lip_lines, _mouth_opens

    rng = np.random.default_rng(7)
    s = np.linspace(0.0, 1.0, 20001)
    agree = {True: 0, False: 0}
    for _ in range(300):
        source = _face(float(rng.uniform(-12.0, 6.0)))
        target = source.copy()
        target[LOWER_ONLY] += rng.normal(0.0, 1.5, (len(LOWER_ONLY), 2)) + np.array([0.0, rng.uniform(-3.0, 2.0)])
        lines = _lip_lines(target, s)
        if lines is None:  # a folded lip line: the split does nothing
            continue
        (vu, vl), (vus, vls) = lines, _lip_lines(source, s)
        scan = bool(np.any(vl - vu > np.maximum(vls - vus, 0.0)))
        quick = _mouth_opens(source, target)
        assert quick or not scan  # never "closed" where a point opens (it may find one between samples)
        agree[scan] += quick == scan
    assert agree[True] > 50 and agree[False] > 50, agree


def test_region_inputs_fill_and_paint_the_cavity_for_a_texture_trained_so():
    """``region_inputs(cavity=True)`` (a mouth texture trained to paint the cavity,
    ``RegionTextureConfig.cavity``): the cavity the split flow reports is filled with
    ``CAVITY_FILL`` in the generator's input (softly: a 3 x 3 box filter of it), elsewhere the input
    is the plain split warp bit for bit, and ``paint_cavity`` leaves nothing of the warp there;
    without ``cavity``, and for a mouth that does not open, nothing changes."""
    from fastwarp.models.region_texture import CAVITY_FILL, paint_cavity, region_inputs

    source = _face(6.0)
    target = source.copy()
    target[LOWER_ONLY, 1] += 20.0
    g = torch.Generator().manual_seed(0)
    image = torch.rand(1, 3, SIZE, SIZE, generator=g) * 2 - 1
    src, tgt = torch.from_numpy(source)[None].float(), torch.from_numpy(target)[None].float()
    plain = region_inputs(image, src, tgt, "mouth", ["right"])
    filled = region_inputs(image, src, tgt, "mouth", ["right"], cavity=True)
    _, hole, _ = split_mouth_flow(plain["flow"], source[None], target[None])
    assert not plain["cavity"].any() and hole.sum() > 100
    c = filled["cavity"]
    h = np.pad(hole[0, 0].numpy(), 1, mode="edge")  # the 3 x 3 mean, written out
    box = sum(h[dy:dy + SIZE, dx:dx + SIZE] for dy in range(3) for dx in range(3)) / 9.0
    np.testing.assert_allclose(c[0, 0].numpy(), box, atol=1e-6)
    full = (c[0, 0] > 1 - 1e-6)
    fill = torch.tensor(CAVITY_FILL)[:, None]
    torch.testing.assert_close(filled["warped"][0][:, full], fill.expand(-1, int(full.sum())), rtol=0, atol=1e-6)
    away = c[0, 0] == 0
    assert torch.equal(filled["warped"][0][:, away], plain["warped"][0][:, away])
    assert torch.equal(filled["gate"], plain["gate"]) and torch.equal(filled["flow"], plain["flow"])
    mask = torch.rand(1, 1, SIZE, SIZE, generator=g)
    assert torch.equal(paint_cavity(mask, plain["cavity"]), mask)
    assert (paint_cavity(mask, c)[0, 0][full] == 0).all()
    # a mouth that closes opens no cavity: nothing is filled
    closing = region_inputs(image, tgt, src, "mouth", ["right"], cavity=True)
    assert not closing["cavity"].any()
    assert torch.equal(closing["warped"], region_inputs(image, tgt, src, "mouth", ["right"])["warped"])
