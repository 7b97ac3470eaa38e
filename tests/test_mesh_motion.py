"""The mesh motion path (docs/design.md, "Motion from landmarks"): the torch AU estimator
against the numpy one, the face mesh, the landmark motion and mesh texture models, their
training, and the bundled models' behaviour on real photos."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest
import torch

from fastwarp import ops
from fastwarp.au import AU_INDEX, AU_MAX, NUM_AUS
from fastwarp.face import estimate_aus_batch
from fastwarp.face.aus_torch import (estimate_aus_torch, eye_line_frame_torch, eye_line_transform, from_eye_line,
                                     to_eye_line)
from fastwarp.face.landmarks import FACE_OVAL
from fastwarp.face.landmarks import INNER_LIPS, LEFT_EYE, OUTER_LIPS, RIGHT_EYE
from fastwarp.face.mesh import (MESH_POINTS, RING_SCALE, RING_SIZE, eye_triangles, mesh_template, mesh_triangles,
                                mesh_vertices, mouth_triangles)
from fastwarp.models.landmark_motion import LandmarkMotion, MotionConfig
from fastwarp.models.mesh_texture import MeshTexture, TextureConfig, gate_mask, opening_map
from op_helpers import FACES_DIR

needs_faces = pytest.mark.skipif(not (FACES_DIR / "images").is_dir(),
                                 reason=f"real photos not found at {FACES_DIR}/images (set FASTWARP_FACES_DIR)")


@pytest.fixture(scope="module")
def photo_landmarks():
    """FaceMesh landmarks ``[F, 478, 3]`` of eight real photos (frame pixels)."""
    if not (FACES_DIR / "images").is_dir():
        pytest.skip(f"real photos not found at {FACES_DIR}/images")
    from fastwarp.face import FaceMesh

    out = []
    with FaceMesh(static_image_mode=True) as mesh:
        for path in sorted((FACES_DIR / "images").iterdir())[::6]:
            faces = mesh.detect(cv2.imread(str(path)))
            if faces:
                out.append(faces[0])
    assert len(out) >= 6
    return np.stack(out)


def _template_face(n: int = 1, seed: int = 0) -> np.ndarray:
    """Faces ``[n, 478, 2]`` from the mesh template (IOD units -> ~100 px), irises at the eye
    centres, randomly rotated, scaled and moved."""
    rng = np.random.default_rng(seed)
    t = mesh_template().astype(np.float64)
    lm = np.concatenate([t, np.repeat(t[[33, 133, 362, 263]].mean(0, keepdims=True), 10, 0)])
    out = []
    for _ in range(n):
        a, s = rng.uniform(-0.4, 0.4), rng.uniform(60, 140)
        r = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        out.append(lm @ r.T * s + rng.uniform(50, 150, 2))
    return np.stack(out)


# --- the torch AU estimator ------------------------------------------------------------------

@needs_faces
def test_torch_estimator_equals_numpy_on_real_and_perturbed_faces(photo_landmarks):
    rng = np.random.default_rng(0)
    lm = photo_landmarks[..., :2].astype(np.float64)
    iod = np.linalg.norm(lm[:, 263] - lm[:, 33], axis=-1)[:, None, None]
    # Expression-sized perturbations (a tenth of the IOD) cover readings at 0, inside and at 5.
    batch = np.concatenate([lm] + [lm + rng.normal(0, 0.1, lm.shape) * iod for _ in range(20)])
    ref = estimate_aus_batch(batch).astype(np.float64)
    got = estimate_aus_torch(torch.from_numpy(batch)).numpy()
    np.testing.assert_allclose(got, ref, atol=2e-5)  # numpy's result is float32
    assert (ref == 0).any() and (ref == AU_MAX).any() and ((ref > 0.5) & (ref < 4.5)).any()
    raw = estimate_aus_torch(torch.from_numpy(batch), raw=True).numpy()
    # AUs read from one feature score: raw differs from the estimate only where the clip acts.
    single = [AU_INDEX[a] for a in ("AU01", "AU02", "AU05", "AU10", "AU15", "AU17", "AU23", "AU25", "AU45")]
    r, e = raw[:, single], got[:, single]
    inside = (r > 0) & (r < AU_MAX)
    np.testing.assert_allclose(r[inside], e[inside], atol=1e-9)
    np.testing.assert_allclose(np.clip(r, 0, AU_MAX), e, atol=1e-9)
    assert (raw < 0).any() and (raw > AU_MAX).any()


def test_torch_estimator_is_differentiable_and_similarity_invariant():
    lm = torch.from_numpy(_template_face(3, seed=1)).requires_grad_(True)
    raw = estimate_aus_torch(lm, raw=True)
    raw[:, AU_INDEX["AU12"]].sum().backward()
    g = lm.grad.norm(dim=-1)
    assert (g[:, [61, 291]] > 0).all()  # the mouth corners move AU12
    assert (g[:, 10] == 0).all()  # the forehead does not
    q = torch.from_numpy(_template_face(1, seed=2))
    q2 = q @ torch.tensor([[0.0, -2.0], [2.0, 0.0]], dtype=q.dtype).T + 7.0  # rotate 90 degrees, scale 2, move
    torch.testing.assert_close(eye_line_frame_torch(q2), eye_line_frame_torch(q))
    torch.testing.assert_close(estimate_aus_torch(q2), estimate_aus_torch(q))
    with pytest.raises(ValueError, match="landmarks must have shape"):
        estimate_aus_torch(torch.zeros(1, 10, 2))


# --- the face mesh --------------------------------------------------------------------------

def test_mesh_topology_covers_the_face_and_fades_to_the_ring():
    tri = mesh_triangles()
    assert tri.dtype == np.int32 and tri.min() >= 0 and tri.max() == MESH_POINTS + RING_SIZE - 1
    assert not tri.flags.writeable
    face = _template_face(1, seed=3)
    verts = mesh_vertices(face)
    assert verts.shape == (1, MESH_POINTS + RING_SIZE, 2)
    oval = face[0, list(FACE_OVAL)]
    np.testing.assert_allclose(verts[0, MESH_POINTS:] - oval.mean(0), RING_SCALE * (oval - oval.mean(0)))
    area2 = np.cross(verts[0, tri[:, 1]] - verts[0, tri[:, 0]], verts[0, tri[:, 2]] - verts[0, tri[:, 0]])
    assert (np.abs(area2) > 1e-3).all()  # no degenerate triangle on a face
    size = 256
    v = torch.from_numpy(verts).float()
    _, index = ops.mesh_flow(v, torch.zeros_like(v), torch.from_numpy(np.array(tri)), (size, size))
    inside = np.zeros((size, size), np.uint8)
    cv2.fillPoly(inside, [np.round(oval).astype(np.int32)], 1)
    inside = cv2.erode(inside, np.ones((3, 3), np.uint8)).astype(bool)
    assert (index[0].numpy()[inside] >= 0).all()  # every face pixel is on the mesh
    # torch and numpy vertices agree
    torch.testing.assert_close(mesh_vertices(torch.from_numpy(face)), torch.from_numpy(verts))


# --- the landmark motion model --------------------------------------------------------------

def _random_motion(seed: int = 0) -> LandmarkMotion:
    g = torch.Generator().manual_seed(seed)
    cfg = MotionConfig(motion_components=8, shape_components=4, hidden=16)
    model = LandmarkMotion(cfg, motion_basis=torch.randn(8, 478, 2, generator=g) * 0.01,
                           motion_scale=torch.rand(8, generator=g) + 0.5,
                           shape_mean=torch.from_numpy(eye_line_frame_torch(
                               torch.from_numpy(_template_face(1))).numpy()[0]).float(),
                           shape_basis=torch.randn(4, 478, 2, generator=g) * 0.05)
    with torch.no_grad():
        model.au_basis.normal_(generator=g)
        for p in model.mlp.parameters():
            p.normal_(0, 0.3, generator=g)
    return model.eval()


def test_no_au_change_moves_nothing_exactly():
    model = _random_motion()
    lm = torch.from_numpy(_template_face(4, seed=4)).float()
    cur = torch.rand(4, NUM_AUS) * AU_MAX
    assert torch.equal(model(lm, cur, cur), torch.zeros(4, 478, 2))
    tgt = cur.clone()
    tgt[:, AU_INDEX["AU12"]] += 1.0
    assert model(lm, cur, tgt).abs().amax() > 0


def test_motion_follows_the_face_under_similarity_transforms():
    model = _random_motion(1)
    lm = torch.from_numpy(_template_face(1, seed=5)).double()
    model = model.double()
    cur = torch.rand(1, NUM_AUS, dtype=torch.float64) * 2
    tgt = cur + 1.0
    d = model(lm, cur, tgt)
    a, s = 0.7, 1.8
    r = torch.tensor([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]], dtype=torch.float64)
    d2 = model(lm @ r.T * s + 3.0, cur, tgt)
    torch.testing.assert_close(d2, d @ r.T * s)


def test_motion_checkpoint_round_trip_and_errors(tmp_path):
    model = _random_motion(2)
    model.save(tmp_path / "m")
    back = LandmarkMotion.load(tmp_path / "m.safetensors")
    for k, v in model.state_dict().items():
        assert torch.equal(back.state_dict()[k], v), k
    with pytest.raises(FileNotFoundError, match="landmark motion checkpoint not found"):
        LandmarkMotion.load(tmp_path / "missing")
    cfg = json.loads((tmp_path / "m.json").read_text())
    cfg["hidden"] = 32
    (tmp_path / "m.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="does not match"):
        LandmarkMotion.load(tmp_path / "m")
    with pytest.raises(ValueError, match="current AUs must have shape"):
        model(torch.zeros(1, 478, 2), torch.zeros(2, NUM_AUS), torch.zeros(1, NUM_AUS))


# --- the mesh texture -----------------------------------------------------------------------

def test_opening_map_measures_triangle_growth():
    verts = torch.tensor([[[0.0, 0.0], [8.0, 0.0], [0.0, 8.0], [8.0, 8.0]]])
    tri = torch.tensor([[0, 1, 2], [1, 3, 2]])
    disp = torch.zeros_like(verts)
    flow, index = ops.mesh_flow(verts, disp, tri, (10, 10))
    assert torch.equal(opening_map(verts, disp, tri, index), torch.zeros(1, 1, 10, 10))
    disp[0, 3] = torch.tensor([8.0, 8.0])  # triangle 1 grows to 3x its area, triangle 0 keeps it
    flow, index = ops.mesh_flow(verts, disp, tri, (20, 20))
    o = opening_map(verts, disp, tri, index)[0, 0]
    assert torch.equal(o[index[0] == 1], torch.ones_like(o[index[0] == 1]))
    assert torch.equal(o[index[0] == 0], torch.zeros_like(o[index[0] == 0]))
    assert torch.equal(o[index[0] < 0], torch.zeros_like(o[index[0] < 0]))


def test_texture_mask_is_one_wherever_nothing_opened(tmp_path):
    torch.manual_seed(0)
    model = MeshTexture(TextureConfig(width=8, res_blocks=1)).eval()
    warped = torch.rand(2, 3, 32, 32) * 2 - 1
    opening = torch.zeros(2, 1, 32, 32)
    opening[:, :, 10:20, 10:20] = 0.5
    cur, tgt = torch.zeros(2, NUM_AUS), torch.ones(2, NUM_AUS)
    tex, mask = model(warped, opening, cur, tgt)
    assert tex.shape == (2, 3, 32, 32) and tex.abs().max() <= 1
    assert torch.equal(mask[opening == 0], torch.ones_like(mask[opening == 0]))
    assert (mask[opening > 0] < 1).all()
    _, m = model.ungated(warped, opening, cur, tgt)
    torch.testing.assert_close(gate_mask(m, opening), mask)
    model.save(tmp_path / "t")
    torch.testing.assert_close(MeshTexture.load(tmp_path / "t")(warped, opening, cur, tgt)[1], mask)


def test_opening_map_counts_shrinking_in_closing_triangles_only():
    verts = torch.tensor([[[0.0, 0.0], [8.0, 0.0], [0.0, 8.0], [8.0, 8.0]]])
    tri = torch.tensor([[0, 1, 2], [1, 3, 2]])
    disp = torch.zeros_like(verts)
    disp[0, 3] = torch.tensor([-2.0, -2.0])  # triangle 1 shrinks to half its area
    _, index = ops.mesh_flow(verts, disp, tri, (10, 10))
    assert torch.equal(opening_map(verts, disp, tri, index), torch.zeros(1, 1, 10, 10))
    o = opening_map(verts, disp, tri, index, closing=torch.tensor([False, True]))[0, 0]
    assert torch.allclose(o[index[0] == 1], torch.ones(1))  # lost half: CLOSING_FULL
    assert torch.equal(o[index[0] == 0], torch.zeros_like(o[index[0] == 0]))
    grown = disp.clone()
    grown[0, 3] = torch.tensor([8.0, 8.0])  # growth outside ``region`` does not count
    _, index = ops.mesh_flow(verts, grown, tri, (20, 20))
    assert torch.equal(opening_map(verts, grown, tri, index, region=torch.tensor([True, False])),
                       torch.zeros(1, 1, 20, 20))


def test_mouth_and_eye_triangles_lie_on_their_contours():
    tri = mesh_triangles()
    mouth, eyes = mouth_triangles(), eye_triangles()
    assert mouth.sum() >= 10 and eyes.sum() >= 20 and not (mouth & eyes).any()
    assert set(tri[mouth].ravel()) <= set(INNER_LIPS) | set(OUTER_LIPS)
    assert set(tri[eyes].ravel()) <= set(LEFT_EYE) | set(RIGHT_EYE)


def test_consistent_targets_follow_the_estimator_partners():
    from fastwarp.face.aus import consistent_targets

    i = {a: AU_INDEX[a] for a in ("AU05", "AU25", "AU26", "AU45", "AU12")}
    cur = np.zeros(NUM_AUS, np.float32)
    cur[i["AU05"]] = 1.5
    tgt = cur.copy()
    tgt[i["AU26"]], tgt[i["AU25"]], tgt[i["AU12"]] = 0.3, 1.0, 2.0
    out = consistent_targets(cur, tgt)
    # AU26 = 0.3 alone needs an inner-lip gap of 0.113 + 0.3 / 5 * 0.242 IOD, where AU25 reads
    # (gap - 0.010) / 0.161 * 5 (fastwarp.face.aus._CALIBRATION), by hand: 3.6497
    assert out[i["AU25"]] == pytest.approx(3.6497, abs=1e-3)
    assert out[i["AU12"]] == 2.0 and out[i["AU05"]] == 1.5 and tgt[i["AU25"]] == 1.0  # no copy written
    tgt[i["AU26"]] = 2.5
    assert consistent_targets(cur, tgt)[i["AU25"]] == AU_MAX  # a dropped jaw parts the lips fully
    tgt[i["AU45"]] = 5.0
    out = consistent_targets(cur, tgt)
    assert out[i["AU05"]] == 0.0 and out[i["AU45"]] == 5.0  # closing eyes do not stay wide
    widen = cur.copy()
    widen[i["AU05"]] = 3.0
    widen_from = cur.copy()
    widen_from[i["AU45"]] = 2.0
    assert consistent_targets(widen_from, np.where(np.arange(NUM_AUS) == i["AU45"], 2.0, widen))[i["AU45"]] == 0.0
    assert np.array_equal(consistent_targets(cur, cur), cur)  # no edit, no change
    torch.testing.assert_close(consistent_targets(torch.from_numpy(cur)[None], torch.from_numpy(tgt)[None])[0],
                               torch.from_numpy(consistent_targets(cur, tgt)))


# --- brows from where they rest (LandmarkMotion.forward, brow_rest_share) -----------------------

def _raw_brow_in(landmarks: np.ndarray) -> np.ndarray:
    """Inner-brow height in AU01 units, unclipped (numpy estimator's feature and calibration:
    the independent reference)."""
    from fastwarp.face.aus import _CALIBRATION, geometric_features

    neutral, strong = _CALIBRATION["brow_in"]
    return (geometric_features(landmarks)["brow_in"] - neutral) / (strong - neutral) * AU_MAX


def test_brow_rest_share_counts_only_raised_brows_resting_below_neutral():
    from fastwarp.models.landmark_motion import brow_rest_share

    face = torch.as_tensor(_template_face(1)[..., :2])
    q = eye_line_frame_torch(face)
    r = estimate_aus_torch(q, raw=True)[0]
    cur = torch.zeros(1, NUM_AUS)
    tgt = cur.clone()
    tgt[0, AU_INDEX["AU12"]] = 2.5  # no brow AU raised: the whole motion
    assert brow_rest_share(q, cur, tgt).item() == 1.0
    # Brows lowered by 0.05 IOD: AU01 and AU02 rest below neutral by the calibration's units.
    low = q.clone()
    low[:, [46, 52, 53, 55, 63, 65, 66, 70, 105, 107, 276, 282, 283, 285, 293, 295, 296, 300, 334, 336], 1] += 0.05
    rl = estimate_aus_torch(low, raw=True)[0]
    below = [max(-float(rl[AU_INDEX[a]]), 0.0) for a in ("AU01", "AU02")]
    assert below[0] > 1.0 and below[1] > 1.0
    tgt = cur.clone()
    tgt[0, AU_INDEX["AU01"]], tgt[0, AU_INDEX["AU02"]] = 2.5, 1.0
    want = 3.5 / (2.5 + below[0] + 1.0 + below[1])
    assert brow_rest_share(low, cur, tgt).item() == pytest.approx(want, rel=1e-5)
    # A lowered brow AU (AU04 down) is not a raise; nor is a brow AU the edit leaves alone.
    tgt = cur.clone()
    tgt[0, AU_INDEX["AU01"]] = 2.5
    assert brow_rest_share(low, cur, tgt).item() == pytest.approx(2.5 / (2.5 + below[0]), rel=1e-5)
    tgt = cur.clone()
    tgt[0, AU_INDEX["AU04"]] = 2.0  # the template's brows rest above AU04's neutral (raw < 0)
    assert float(r[AU_INDEX["AU04"]]) < 0
    assert brow_rest_share(q, cur, tgt).item() == pytest.approx(2.0 / (2.0 - float(r[AU_INDEX["AU04"]])), rel=1e-5)


@needs_faces
def test_brows_up_moves_the_asked_change_from_where_the_brows_rest(photo_landmarks):
    """The bundled motion raises a brow by the AU change asked, whatever its rest: on real
    photos whose brows rest below the estimator's neutral, the model alone (trained to reach
    the absolute reading) lifts them by the change plus the distance up to neutral."""
    from fastwarp.expression_editor import MOTION_WEIGHTS

    model = LandmarkMotion.load(MOTION_WEIGHTS)
    lm = torch.as_tensor(photo_landmarks[..., :2], dtype=torch.float32)
    cur = torch.as_tensor(estimate_aus_batch(photo_landmarks))
    tgt = cur.clone()
    tgt[:, AU_INDEX["AU01"]] = (cur[:, AU_INDEX["AU01"]] + 2.5).clamp(max=AU_MAX)
    asked = (tgt - cur)[:, AU_INDEX["AU01"]].numpy()
    rest = _raw_brow_in(photo_landmarks)
    with torch.no_grad():
        d = model(lm, cur, tgt).numpy()
        origin, ex, iod = eye_line_transform(lm)
        own = model.displacement_iod(to_eye_line(lm, origin, ex, iod), cur, tgt)  # without the rule
        own_px = from_eye_line(own, ex, iod).numpy()
    moved = _raw_brow_in(photo_landmarks[..., :2] + d) - rest
    moved_own = _raw_brow_in(photo_landmarks[..., :2] + own_px) - rest
    low = rest < -1.5
    assert low.sum() >= 2, f"need photos whose brows rest below neutral, rests {np.round(rest, 2)}"
    # The rule: the asked change from rest (the model is within 0.15 AU of its targets on
    # held-out faces, its card; the share is computed from the summed brow AUs).
    np.testing.assert_allclose(moved, asked, atol=0.75)
    assert abs(np.median(moved[low] - asked[low])) < 0.3
    # Without it the low brows go up to neutral first.
    assert np.all(moved_own[low] > asked[low] + 0.5 * np.minimum(-rest[low], 3.0))
