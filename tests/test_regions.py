"""Face regions at the face's own resolution (fastwarp.face.regions, training.regions) and the
region texture's adversarial training (training.region_gan): the deterministic parts.

Synthetic faces (the mesh's median template placed in a frame), so these run in seconds
without the faces data."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from fastwarp.face.mesh import mesh_template
from fastwarp.face.regions import (
    EYE,
    MOUTH,
    contour_map,
    cut_region,
    eye_gap,
    region_matrices,
    region_matrix,
    to_region,
)
from fastwarp.models.region_texture import RegionTexture, RegionTextureConfig, composite
from training.region_gan import PairSampler, RegionGanConfig, make_batch, train_region_gan
from training.regions import RegionSet, held_out_videos, quality_ok


def _face(iod: float = 150.0, angle_deg: float = 8.0, centre=(400.0, 300.0)) -> np.ndarray:
    """FaceMesh-like landmarks ``[478, 3]`` in frame pixels: the mesh template (eye-line frame,
    IOD units) rotated, scaled and moved; the 10 iris points at the eye centres."""
    t = mesh_template().astype(np.float64)
    iris = np.repeat([0.5 * (t[33] + t[133]), 0.5 * (t[263] + t[362])], 5, axis=0)
    q = np.concatenate([t, iris]) * iod
    a = np.deg2rad(angle_deg)
    r = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    p = q @ r.T + np.asarray(centre)
    return np.concatenate([p, np.zeros((478, 1))], axis=1).astype(np.float32)


def _blob_frame(points: np.ndarray, shape=(700, 900), sigma: float = 2.0) -> np.ndarray:
    """A grey frame with a bright Gaussian blob at each point (subpixel), uint8 ``[H, W, 3]``."""
    h, w = shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.full((h, w), 40.0)
    for x, y in points:
        x0, y0 = int(round(x)), int(round(y))
        sl = (slice(max(y0 - 12, 0), y0 + 13), slice(max(x0 - 12, 0), x0 + 13))
        img[sl] += 200.0 * np.exp(-((xs[sl] - x) ** 2 + (ys[sl] - y) ** 2) / (2 * sigma ** 2))
    return np.repeat(np.clip(img, 0, 255).round().astype(np.uint8)[..., None], 3, axis=2)


def _centroid(img: np.ndarray, x: float, y: float, r: int) -> tuple[float, float]:
    g = img[..., 0].astype(np.float64) - 40.0
    x0, y0 = int(round(x)), int(round(y))
    win = g[y0 - r:y0 + r + 1, x0 - r:x0 + r + 1].clip(0)
    ys, xs = np.mgrid[y0 - r:y0 + r + 1, x0 - r:x0 + r + 1]
    return float((win * xs).sum() / win.sum()), float((win * ys).sum() / win.sum())


@pytest.mark.parametrize("iod", [120.0, 600.0])  # upsampled (scale 1.7) and area-downsampled (0.33) eyes
def test_region_round_trip(iod):
    lm = _face(iod, centre=(450.0, 350.0) if iod < 200 else (1500.0, 1100.0))
    for kind, spec in (("eye", EYE), ("mouth", MOUTH)):
        mats = region_matrices(lm[None], kind)[0]
        for m in (mats if kind == "eye" else mats[None]):
            # landmarks -> region -> frame: the inverse similarity brings them back
            reg = to_region(lm, m)
            inv = np.linalg.inv(np.vstack([m, [0, 0, 1]]))[:2]
            back = reg.astype(np.float64) @ inv[:, :2].T + inv[:, 2]
            assert np.abs(back - lm[:, :2]).max() < 1e-3
    # image content lands where the landmarks say, within 0.5 region pixels
    points = {"eye": (33, 133, 159, 145), "mouth": (61, 291, 13, 14, 0, 17)}
    for kind, spec in (("eye", EYE), ("mouth", MOUTH)):
        idx = points[kind]
        scale = spec.width / (spec.span * iod)
        sigma = max(2.0, 1.5 / scale)  # a blob at least 1.5 region px wide
        shape = (2200, 3000) if iod > 200 else (700, 900)
        m = region_matrices(lm[None], kind)[0]
        m = m[0] if kind == "eye" else m
        region, inside = cut_region(_blob_frame(lm[list(idx), :2], shape, sigma), m, spec)
        assert inside == 1.0
        reg = to_region(lm, m)
        for i in idx:
            cx, cy = _centroid(region, *reg[i], r=max(3, int(3 * sigma * scale)))
            assert abs(cx - reg[i, 0]) < 0.5 and abs(cy - reg[i, 1]) < 0.5, (kind, i, cx, cy, reg[i])


def test_left_eye_is_mirrored():
    rng = np.random.default_rng(0)
    lm = _face(180.0, 5.0, (450.0, 350.0))
    # smooth texture: OpenCV's warp rounds sample positions to 1/32 px, which a sharp edge would show
    frame = cv2.GaussianBlur(rng.integers(0, 256, (700, 900, 3), dtype=np.uint8), (0, 0), 3)
    right, left = region_matrices(lm[None], "eye")[0]
    assert np.linalg.det(right[:, :2]) > 0 > np.linalg.det(left[:, :2])
    # in both regions the outer corner lies left of the inner corner, at about the same place
    r, l_ = to_region(lm, right), to_region(lm, left)
    assert r[33, 0] < r[133, 0] and l_[263, 0] < l_[362, 0]
    # the mirrored frame's right eye is the frame's left eye: flip x and swap the corners
    W = frame.shape[1]
    flipped = np.ascontiguousarray(frame[:, ::-1])
    lf = lm.copy()
    lf[:, 0] = W - 1 - lm[:, 0]
    for a, b in ((33, 263), (133, 362)):
        lf[[a, b]] = lf[[b, a]]
    mf = region_matrix(lf[None], EYE, "right")[0]
    flipped_points = lm.copy()
    flipped_points[:, 0] = W - 1 - lm[:, 0]
    np.testing.assert_allclose(to_region(flipped_points, mf), to_region(lm, left), atol=1e-3)
    a = cut_region(flipped, mf, EYE)[0].astype(int)
    b = cut_region(frame, left, EYE)[0].astype(int)
    assert np.abs(a - b).max() <= 1
    # and its contours are drawn from the left eye's lids
    c = contour_map(l_, "eye", EYE.height, EYE.width, "left")
    assert c.shape == (2, 64, 128) and c[0].max() > 0.5 and c[1].max() > 0.5


def test_gap_and_quality():
    lm = _face()[None]
    g = eye_gap(lm)
    assert g.shape == (1, 2) and (g > 0.15).all() and (g < 0.5).all()
    assert quality_ok(lm, np.zeros((1, 2))).all()
    squashed = lm.copy()
    squashed[:, 263, 0] = squashed[:, 362, 0] + 3  # a 3 px wide left eye: a landmark failure
    assert not quality_ok(squashed, np.zeros((1, 2))).any()


def test_held_out_split_keeps_people_apart(faces_dir):
    from training.data import manifest_identities

    train, held = held_out_videos(faces_dir)
    ids = manifest_identities(faces_dir)
    assert train and held and not {ids.get(n, n) for n in train} & {ids.get(n, n) for n in held}
    assert {"lp_d3", "dt_W009_happy", "sty_src_Obama_clip1"} <= set(held)


def _synthetic_set(n: int = 24, seed: int = 0) -> RegionSet:
    """Eye regions of two 'videos' of the template face whose lids open and close."""
    rng = np.random.default_rng(seed)
    base = _face(150.0, 3.0, (400.0, 300.0))
    lms, imgs, gaps = [], [], []
    ys, xs = np.mgrid[0:EYE.height, 0:EYE.width]
    for i in range(n):
        lm = base.copy()
        close = (i % 6) / 5.0  # 0 open .. 1 closed
        for up, down in ((159, 145), (158, 153), (160, 144), (386, 374), (385, 380), (387, 373)):
            lm[up, 1] += 0.95 * close * (lm[down, 1] - lm[up, 1])
        lm[:, :2] += rng.normal(0, 0.3, (478, 2))
        m = region_matrix(lm[None], EYE, "right")[0]
        lms.append(to_region(lm, m))
        gaps.append(eye_gap(lm[None])[0, 0])
        img = 120 + 60 * np.sin(xs / 7.0 + i) * np.cos(ys / 5.0) + rng.normal(0, 5, xs.shape)
        imgs.append(np.repeat(img.clip(0, 255).astype(np.uint8)[..., None], 3, axis=2))
    group = np.repeat([0, 1], n // 2)
    return RegionSet("eye", np.stack(imgs), np.stack(lms), rng.uniform(0, 2, (n, 17)).astype(np.float32),
                     np.zeros((n, 2), np.float32), np.array(gaps, np.float32), np.zeros(n, np.float32),
                     np.linspace(0.8, 2.0, n).astype(np.float32), group.astype(np.int64), np.zeros(n, np.int8),
                     np.arange(n, dtype=np.int32), ["a", "b"])


def test_zero_motion_pair_is_the_source():
    rs = _synthetic_set()
    b = make_batch(rs, np.array([[3, 3], [7, 7]]))
    assert torch.equal(b["flow"], torch.zeros_like(b["flow"]))
    assert torch.equal(b["gate"], torch.zeros_like(b["gate"]))
    model = RegionTexture(RegionTextureConfig("eye", 64, 128, [4, 8], 1, 4))
    tex, mask = model(b["warped"], b["opening"], b["contours"], b["gate"], b["au_delta"])
    assert torch.equal(mask, torch.ones_like(mask))
    assert torch.equal(composite(b["warped"], tex, mask), b["source"])


def test_pair_sampler_categories():
    rs = _synthetic_set()
    sampler = PairSampler(rs)
    assert set(sampler.mix) == {"closing", "opening", "any"}
    rows = sampler.sample(32, np.random.Generator(np.random.PCG64(0)), "closing")
    assert (rs.gap[rows[:, 1]] < 0.12).all() and (rs.gap[rows[:, 0]] >= rs.gap[rows[:, 1]] + 0.12).all()
    assert (rs.group[rows[:, 0]] == rs.group[rows[:, 1]]).all() and (rows[:, 0] != rows[:, 1]).all()


def _tiny(out) -> RegionGanConfig:
    return RegionGanConfig(data="", out=str(out), kind="eye", steps=4, batch=2, channels="4,8", critic_width=4,
                           critic_layers=2, every=100, sheet_every=1000, sheet_rows=2)


def test_training_resumes_bit_for_bit(tmp_path):
    train, val = _synthetic_set(seed=0), _synthetic_set(seed=1)
    train_region_gan(_tiny(tmp_path / "straight"), progress=False, train=train, val=val)
    assert train_region_gan(_tiny(tmp_path / "split"), progress=False, stop_at=2, train=train, val=val) is None
    train_region_gan(_tiny(tmp_path / "split"), resume=True, progress=False, train=train, val=val)
    a = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=False)
    b = torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=False)
    assert a["step"] == b["step"] == 4
    for key in ("g", "d", "ema"):
        for name, t in a[key].items():
            assert torch.equal(t, b[key][name]), (key, name)
    assert a["rng"] == b["rng"]
    loaded = RegionTexture.load(tmp_path / "split" / "region_eye")
    for name, t in loaded.state_dict().items():
        assert torch.equal(t, b["ema"][name])


def test_resume_refuses_other_settings(tmp_path):
    train, val = _synthetic_set(seed=0), _synthetic_set(seed=1)
    cfg = _tiny(tmp_path / "run")
    assert train_region_gan(cfg, progress=False, stop_at=1, train=train, val=val) is None
    cfg.lambda_l1 = 5.0
    with pytest.raises(ValueError, match="lambda_l1=20.0"):
        train_region_gan(cfg, resume=True, progress=False, train=train, val=val)


def test_init_starts_a_new_run_from_another_runs_weights(tmp_path):
    """--init: the new run's models start as the old run's (generator, EMA, critic) with fresh
    optimisers at step 0 and its own settings; a model of another size is refused."""
    train, val = _synthetic_set(seed=0), _synthetic_set(seed=1)
    first = _tiny(tmp_path / "first")
    first.seed = 7  # other initial weights than the runs below (seed 0)
    train_region_gan(first, progress=False, train=train, val=val)
    old = torch.load(tmp_path / "first" / "checkpoint.pt", weights_only=False)
    cfg = _tiny(tmp_path / "tuned")
    cfg.init, cfg.lambda_mask = str(tmp_path / "first" / "checkpoint.pt"), 0.02
    assert train_region_gan(cfg, progress=False, stop_at=1, train=train, val=val) is None
    new = torch.load(tmp_path / "tuned" / "checkpoint.pt", weights_only=False)
    assert new["step"] == 1 and new["config"]["lambda_mask"] == 0.02
    assert all(float(v["step"]) == 1 for v in new["opt_g"]["state"].values())  # fresh Adam, one step
    scratch = _tiny(tmp_path / "scratch")
    assert train_region_gan(scratch, progress=False, stop_at=1, train=train, val=val) is None
    scratch = torch.load(tmp_path / "scratch" / "checkpoint.pt", weights_only=False)
    # One step from the old weights: the EMA (0.999) has hardly left them; from scratch it is elsewhere.
    floats = [n for n, t in old["ema"].items() if t.is_floating_point()]
    near = max(float((new["ema"][n] - old["ema"][n]).abs().max()) for n in floats)
    far = max(float((scratch["ema"][n] - old["ema"][n]).abs().max()) for n in floats)
    assert near < 0.05 * far, (near, far)
    other = _tiny(tmp_path / "other")
    other.init, other.channels = cfg.init, "4,8,16"
    with pytest.raises(ValueError, match=r"--init: .* has another architecture \(channels='4,8'\)"):
        train_region_gan(other, progress=False, train=train, val=val)


def test_init_from_a_shipped_model_takes_its_weights_and_a_new_critic(tmp_path):
    """--init with a model (path without suffix, as fastwarp/weights/region_eye): generator and
    EMA start as its weights, the critic anew; a model of other channels is refused in one line."""
    train, val = _synthetic_set(seed=0), _synthetic_set(seed=1)
    first = _tiny(tmp_path / "first")
    first.seed = 7
    train_region_gan(first, progress=False, train=train, val=val)
    shipped = RegionTexture.load(tmp_path / "first" / "region_eye")
    old = torch.load(tmp_path / "first" / "checkpoint.pt", weights_only=False)
    still = {}
    for name in ("tuned", "scratch"):  # one step that changes no weight (learning rates 0)
        cfg = _tiny(tmp_path / name)
        cfg.lr_g = cfg.lr_d = 0.0
        if name == "tuned":
            cfg.init, cfg.lambda_commit = str(tmp_path / "first" / "region_eye"), 2.0
        assert train_region_gan(cfg, progress=False, stop_at=1, train=train, val=val) is None
        still[name] = torch.load(tmp_path / name / "checkpoint.pt", weights_only=False)
    new = still["tuned"]
    assert new["config"]["lambda_commit"] == 2.0
    for name, t in shipped.state_dict().items():
        assert torch.equal(new["g"][name], t) and torch.allclose(new["ema"][name].float(), t.float(), atol=1e-6), name
    for n, t in new["d"].items():  # the critic: a new one (as a run from scratch has), not the first run's
        assert torch.equal(t, still["scratch"]["d"][n]), n
    assert any(not torch.equal(t, old["d"][n]) for n, t in new["d"].items() if t.is_floating_point())
    other = _tiny(tmp_path / "other")
    other.init, other.channels = str(tmp_path / "first" / "region_eye"), "4,8,16"
    with pytest.raises(ValueError, match=r"--init: .* is a eye texture of channels \[4, 8\]; pass the same settings"):
        train_region_gan(other, progress=False, train=train, val=val)


def test_the_commit_term_is_zero_for_a_mask_that_keeps_or_paints():
    from training.region_gan import commit_term

    gate = torch.zeros(2, 1, 8, 8)
    gate[:, :, 2:6, 2:6] = 1.0
    paint = torch.where(gate > 0, torch.zeros_like(gate), torch.ones_like(gate))
    assert float(commit_term(paint, gate)) == 0.0 and float(commit_term(torch.ones_like(gate), gate)) == 0.0
    half = 1.0 - 0.5 * gate  # half-transparent where gated
    assert float(commit_term(half, gate)) == pytest.approx(0.25)


def test_motion_gate_against_opencv():
    """motion_gate = window * box_mean(max_filter(clamp(change / full))), both 9 x 9 with the
    border replicated, against OpenCV's dilate and blur (an independent implementation)."""
    from fastwarp.models.region_texture import motion_gate, region_window

    rng = np.random.default_rng(3)
    change = np.zeros((2, 1, 40, 72), np.float32)
    change[0, 0, 10:14, 20:30] = rng.uniform(0.0, 0.6, (4, 10))
    change[1, 0, 0:3, 60:72] = rng.uniform(0.0, 0.6, (3, 12))  # at the border: replicate padding counts
    gate = motion_gate(torch.from_numpy(change), full=0.3, grow=4)
    window = region_window(40, 72)[0, 0].numpy()
    for n in range(2):
        s = np.clip(change[n, 0] / 0.3, 0.0, 1.0)
        s = cv2.dilate(s, np.ones((9, 9), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=0.0)
        s = cv2.blur(s, (9, 9), borderType=cv2.BORDER_REPLICATE)
        s = np.where(s > 1e-6, s, 0.0) * window
        np.testing.assert_allclose(gate[n, 0].numpy(), s, atol=1e-5)
        assert np.array_equal(gate[n, 0].numpy() == 0, s == 0)  # exactly 0 where nothing deformed near


def test_an_unknown_upper_share_is_refused(tmp_path):
    train, val = _synthetic_set(seed=0), _synthetic_set(seed=1)
    cfg = _tiny(tmp_path / "run")
    cfg.upper_share = "0.5"
    with pytest.raises(ValueError, match="--upper-share must be 1 or auto"):
        train_region_gan(cfg, progress=False, stop_at=1, train=train, val=val)
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
@pytest.mark.parametrize("name, low, high", [("lp_d12_img.jpg", 0.65, 0.85), ("fr_obama2.jpg", 0.25, 0.45)])
def test_mouth_pairs_split_the_jaws_where_the_source_mouth_parts(name, low, high):
    """``--upper-share auto``: each source mouth region's own split (:func:`training.regions.mouth_shares`,
    read on the region as the editor reads it on the frame: the same line, within the
    resampling's error) reaches the pair's warp; without it every tooth stays with the upper lip."""
    from fastwarp.face.jaws import upper_share
    from fastwarp.face.landmarks import FaceMesh
    from fastwarp.face.regions import LOWER_INNER_LIP, LOWER_OUTER_LIP
    from fastwarp.models.region_texture import region_inputs
    from op_helpers import FACES_DIR
    from training.regions import mouth_shares

    path = FACES_DIR / "images" / name
    if not path.is_file():
        pytest.skip(f"faces data not found at {FACES_DIR}")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    with FaceMesh() as det:
        lm = det.detect(image)[0][:, :2].astype(np.float64)
    m = region_matrix(lm[None], MOUTH, None)[0]
    region = cut_region(image, m, MOUTH)[0][..., ::-1]  # RGB, as a RegionSet holds it
    source = to_region(lm, m).astype(np.float32)
    target = source.copy()
    lower = sorted((set(LOWER_INNER_LIP) | set(LOWER_OUTER_LIP)) - {78, 308, 61, 291})
    below = np.flatnonzero(source[:468, 1] > source[14, 1])  # under the lower inner lip: the chin
    target[sorted(set(lower) | set(below.tolist())), 1] += 12.0  # the jaw drops
    rs = RegionSet("mouth", np.stack([region, region]), np.stack([source, target]), np.zeros((2, 17), np.float32),
                   np.zeros((2, 2), np.float32), np.zeros(2, np.float32), np.zeros(2, np.float32),
                   np.ones(2, np.float32), np.zeros(2, np.int64), np.zeros(2, np.int8), np.arange(2, dtype=np.int32),
                   ["a"])
    shares = mouth_shares(rs)
    assert abs(shares[0] - upper_share(image, lm)) < 0.05 and low - 0.05 < shares[0] < high + 0.05
    rows = np.array([[0, 1]])
    fixed = make_batch(rs, rows)
    rs.share = shares
    own = make_batch(rs, rows)
    expect = region_inputs(torch.from_numpy(region.copy()).permute(2, 0, 1)[None].float() / 127.5 - 1.0,
                           torch.from_numpy(source)[None], torch.from_numpy(target)[None], "mouth", ["right"],
                           upper_share=[shares[0]])
    assert torch.equal(own["flow"], expect["flow"])
    assert (own["flow"] - fixed["flow"]).abs().amax() > 2.0  # the lower teeth go down with the jaw


def test_the_cavity_setting_reaches_the_saved_model(tmp_path):
    """``--cavity``: the generator, its EMA and the saved model carry ``RegionTextureConfig.cavity``,
    so the editor fills and paints the cavity as the model was trained."""
    train, val = _synthetic_set(seed=0), _synthetic_set(seed=1)
    cfg = _tiny(tmp_path / "run")
    cfg.cavity = True
    train_region_gan(cfg, progress=False, train=train, val=val)
    assert RegionTexture.load(tmp_path / "run" / "region_eye").config.cavity is True
    plain = _tiny(tmp_path / "plain")
    train_region_gan(plain, progress=False, train=train, val=val)
    assert RegionTexture.load(tmp_path / "plain" / "region_eye").config.cavity is False


@pytest.mark.parametrize("text, value", [("1", True), ("true", True), ("0", False), ("no", False)])
def test_a_boolean_setting_is_read_as_written(text, value, monkeypatch, tmp_path):
    """``--cavity 0`` is off (``bool("0")`` would be True), ``--cavity 1`` on; other words are
    refused in one line (exit 2)."""
    from training import region_gan

    seen = {}
    monkeypatch.setattr(region_gan, "train_region_gan", lambda cfg, **kw: seen.setdefault("cfg", cfg))
    monkeypatch.setattr(region_gan, "_report", lambda summary: None)
    region_gan.main(["--out", str(tmp_path / "run"), "--cavity", text])
    assert seen["cfg"].cavity is value


def test_a_boolean_setting_refuses_other_words(capsys, tmp_path):
    from training import region_gan

    with pytest.raises(SystemExit) as e:
        region_gan.main(["--out", str(tmp_path / "run"), "--cavity", "maybe"])
    assert e.value.code == 2 and "expected 0 or 1, got 'maybe'" in capsys.readouterr().err


def _closed_eye(close: float) -> tuple[np.ndarray, np.ndarray]:
    """The right eye region's landmarks (region pixels, float32 ``[478, 2]``) of the template face,
    open, and with its whole upper lid moved ``close`` of the way down to the lower lid (a blink
    for close near 1; negative: the eye widens)."""
    from fastwarp.face.mesh import RIGHT_EYE
    lm = _face(150.0, 3.0, (400.0, 300.0))
    m = region_matrix(lm[None], EYE, "right")[0]
    source = to_region(lm, m)[:, :2].astype(np.float32)
    target = source.copy()
    eye = np.array(sorted(RIGHT_EYE))
    pts = source[eye]
    upper = pts[:, 1] < pts[:, 1].mean()  # the eye line is level in the region
    order = np.argsort(pts[~upper, 0])
    lower_y = np.interp(pts[upper, 0], pts[~upper, 0][order], pts[~upper, 1][order])
    target[eye[upper], 1] += close * (lower_y - pts[upper, 1])
    return source, target


def test_the_closing_eye_aperture_is_painted_in_proportion_to_its_loss_of_area():
    """``region_inputs(kind="eye", cavity=True)``: the closing aperture is each eye-opening
    triangle's loss of area under the landmarks' own motion (shoelace areas written out here; full
    from half the area lost), under a 3 x 3 box filter, also where the warp's lids meet
    (``fastwarp.face.lids``: the face's coarser flow grid still crosses the open eye there); the
    input is not filled; a blink paints a strip whole, a widening eye and a zero motion nothing,
    and ``paint_cavity`` keeps nothing of the warp where it is full."""
    from fastwarp import ops
    from fastwarp.face.mesh import eye_triangles, mesh_triangles, mesh_vertices
    from fastwarp.models.region_texture import paint_cavity, region_inputs

    source, target = _closed_eye(0.8)
    g = torch.Generator().manual_seed(0)
    image = torch.rand(1, 3, EYE.height, EYE.width, generator=g) * 2 - 1
    src, tgt = torch.from_numpy(source)[None], torch.from_numpy(target)[None]
    plain = region_inputs(image, src, tgt, "eye", ["right"])
    painted = region_inputs(image, src, tgt, "eye", ["right"], cavity=True)
    assert not plain["cavity"].any()
    for k in ("warped", "flow", "gate", "opening", "contours"):
        assert torch.equal(painted[k], plain[k]), k  # nothing filled: a half-closed eye keeps its iris
    # the reference: per triangle, the share of its area lost, on the eye opening's triangles only
    tri = np.array(mesh_triangles())
    v0 = mesh_vertices(src)[0].double().numpy()
    v1 = mesh_vertices(tgt)[0].double().numpy()

    def area(v):
        a, b, c = v[tri[:, 0]], v[tri[:, 1]], v[tri[:, 2]]
        return 0.5 * np.abs((b - a)[:, 0] * (c - a)[:, 1] - (b - a)[:, 1] * (c - a)[:, 0])

    from fastwarp.face.lids import close_lids
    vt = mesh_vertices(src)
    assert not torch.equal(close_lids(vt, mesh_vertices(tgt) - vt), mesh_vertices(tgt) - vt)  # the warp's lids meet
    iod = np.linalg.norm(v0[263] - v0[33])
    lost = np.clip((area(v0) - area(v1)) / np.maximum(area(v0), (0.05 * iod) ** 2) / 0.5, 0.0, 1.0)
    lost = np.where(np.asarray(eye_triangles()), lost, 0.0)
    _, index = ops.mesh_flow(mesh_vertices(src), mesh_vertices(tgt) - mesh_vertices(src),
                             torch.from_numpy(tri), (EYE.height, EYE.width))
    idx = index[0].numpy()
    per_px = np.where(idx >= 0, lost[np.clip(idx, 0, None)], 0.0)
    h = np.pad(per_px, 1, mode="edge")
    box = sum(h[dy:dy + EYE.height, dx:dx + EYE.width] for dy in range(3) for dx in range(3)) / 9.0
    np.testing.assert_allclose(painted["cavity"][0, 0].numpy(), box, atol=1e-5)
    full = painted["cavity"][0, 0] > 1 - 1e-6
    assert full.sum() >= 40, int(full.sum())  # a strip along the meeting lids, painted whole
    mask = torch.rand(1, 1, EYE.height, EYE.width, generator=g)
    assert (paint_cavity(mask, painted["cavity"])[0, 0][full] == 0).all()
    # a widening eye loses no aperture, a zero motion none either: the mask is the generator's own
    wide_s, wide_t = _closed_eye(-0.3)
    for s, t in ((wide_s, wide_t), (source, source)):
        out = region_inputs(image, torch.from_numpy(s)[None], torch.from_numpy(t)[None], "eye", ["right"], cavity=True)
        assert not out["cavity"].any()
        assert torch.equal(paint_cavity(mask, out["cavity"]), mask)
