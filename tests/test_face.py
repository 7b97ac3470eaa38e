"""fastwarp.face on real photos from ../shared/data/faces (FASTWARP_FACES_DIR overrides)."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from fastwarp.au import AU_INDEX, AU_NAMES
from fastwarp.face import (
    EXPRESSION_REGIONS,
    FACE_OVAL,
    INNER_LIPS,
    LEFT_BROW,
    LEFT_EYE,
    OUTER_LIPS,
    RIGHT_BROW,
    RIGHT_EYE,
    VISIBLE_AUS,
    FaceCrop,
    FaceMesh,
    align_face,
    estimate_aus,
    face_mask,
    head_pose,
    inter_ocular_distance,
    paste_back,
)
from fastwarp.face.aus import estimate_aus_batch

FACES = Path(os.environ.get("FASTWARP_FACES_DIR", Path(__file__).resolve().parents[1].parent / "shared" / "data" / "faces"))
pytestmark = pytest.mark.skipif(not (FACES / "images").is_dir(), reason=f"real face data not found at {FACES}")

PHOTOS = ["fr_obama.jpg", "lp_s2.jpg", "st_happy1.png", "st_sad.png", "dt_f30.png", "lp_d9_img.jpg", "fr_two_people.jpg"]
MOUTH_OPEN, MOUTH_CLOSED = "lp_d9_img.jpg", "st_sad.png"  # checked by eye: screaming vs closed lips
SMILE, NO_SMILE = "st_happy1.png", "st_sad.png"


@pytest.fixture(scope="module")
def mesh():
    with FaceMesh() as m:
        yield m


@pytest.fixture(scope="module")
def faces(mesh):
    """{photo: (image, landmarks [478, 3])} for PHOTOS."""
    out = {}
    for name in PHOTOS:
        img = cv2.imread(str(FACES / "images" / name))
        assert img is not None, name
        found = mesh.detect(img)
        assert found, f"no face found in {name}"
        out[name] = (img, found[0])
    return out


# ---------------------------------------------------------------- landmarks


def test_landmarks_inside_image(faces):
    for name, (img, lm) in faces.items():
        h, w = img.shape[:2]
        assert lm.shape == (478, 3) and lm.dtype == np.float32, name
        assert (lm[:, 0] >= 0).all() and (lm[:, 0] < w).all(), name
        assert (lm[:, 1] >= 0).all() and (lm[:, 1] < h).all(), name
        # left/right follow the subject: the subject's left eye is on the image's right
        assert lm[list(LEFT_EYE), 0].mean() > lm[list(RIGHT_EYE), 0].mean(), name


def test_largest_face_first():
    img = cv2.imread(str(FACES / "images" / "fr_two_people.jpg"))
    with FaceMesh(max_faces=2) as m:
        found = m.detect(img)
    assert len(found) == 2
    area = [np.ptp(f[:, 0]) * np.ptp(f[:, 1]) for f in found]
    assert area[0] >= area[1]


def test_video_mode_reset_starts_a_new_stream():
    def frames(name, n):
        cap = cv2.VideoCapture(str(FACES / "videos" / name))
        out = [cap.read()[1] for _ in range(n)]
        cap.release()
        return out

    first, second = frames("lp_d0.mp4", 3), frames("st_WDA_AOC_000.mp4", 3)
    with FaceMesh(static_image_mode=False) as fresh:
        want = [fresh.detect(f)[0] for f in second]
    with FaceMesh(static_image_mode=False) as m:
        for f in first:
            m.detect(f)
        tracked = m.detect(second[0])[0]  # still tracking: seeded by the other stream's face
        m.reset()
        got = [m.detect(f)[0] for f in second]
    for w, g in zip(want, got):
        np.testing.assert_array_equal(g, w)
    assert not np.array_equal(tracked, want[0])
    m.close()
    with pytest.raises(RuntimeError, match="closed"):
        m.reset()


def test_no_face_gives_empty_list(mesh):
    assert mesh.detect(np.full((240, 320, 3), 127, np.uint8)) == []


@pytest.mark.parametrize("bad, msg", [
    (np.zeros((64, 64, 3), np.float32), "uint8"),
    (np.zeros((64, 64), np.uint8), r"\[H, W, 3\]"),
    (np.zeros((64, 64, 4), np.uint8), r"\[H, W, 3\]"),
    ([[0, 1]], "numpy array"),
])
def test_detect_rejects_bad_images(mesh, bad, msg):
    with pytest.raises(ValueError, match=msg):
        mesh.detect(bad)


def test_index_groups_are_simple_polygons(faces):
    assert len(FACE_OVAL) == 36 and len(LEFT_EYE) == len(RIGHT_EYE) == 16
    assert len(OUTER_LIPS) == len(INNER_LIPS) == 20 and len(LEFT_BROW) == len(RIGHT_BROW) == 10
    assert 61 in OUTER_LIPS and 78 in INNER_LIPS
    assert set(EXPRESSION_REGIONS) == {"mouth", "eyes", "brows"}
    _, lm = faces["fr_obama.jpg"]
    for poly in (FACE_OVAL, LEFT_EYE, RIGHT_EYE, OUTER_LIPS):
        pts = lm[list(poly), :2]
        # an ordered (non-self-intersecting) convex-ish loop has nearly its hull's area
        assert abs(cv2.contourArea(pts)) > 0.85 * cv2.contourArea(cv2.convexHull(pts))


def test_inter_ocular_distance_and_head_pose(faces):
    img, lm = faces["fr_two_people.jpg"]
    assert inter_ocular_distance(lm) == pytest.approx(float(np.linalg.norm(lm[263, :2] - lm[33, :2])))
    yaw, pitch = head_pose(lm)
    assert abs(yaw) > 0.1  # this face is turned
    with FaceMesh() as m:
        flipped = m.detect(np.ascontiguousarray(img[:, ::-1]))[0]
    yaw_f, pitch_f = head_pose(flipped)
    assert yaw_f == pytest.approx(-yaw, abs=0.06) and pitch_f == pytest.approx(pitch, abs=0.06)
    for name in ("fr_obama.jpg", "st_sad.png"):
        assert abs(head_pose(faces[name][1])[0]) < 0.15  # frontal
    with pytest.raises(ValueError, match=r"\[478, 3\]"):
        head_pose(lm[:, :2])


# ---------------------------------------------------------------- AUs


def test_aus_range_and_invisible_zero(faces):
    invisible = [AU_INDEX[a] for a in AU_NAMES if a not in VISIBLE_AUS]
    assert invisible, "some AUs are expected to stay 0"
    for name, (_, lm) in faces.items():
        aus = estimate_aus(lm)
        assert aus.shape == (17,) and aus.dtype == np.float32
        assert (aus >= 0).all() and (aus <= 5).all(), name
        assert (aus[invisible] == 0).all(), name
    batch = estimate_aus_batch(np.stack([lm for _, lm in faces.values()]))
    np.testing.assert_allclose(batch, [estimate_aus(lm) for _, lm in faces.values()], atol=1e-6)


def test_aus_invariant_to_similarity_transforms(faces):
    rng = np.random.default_rng(0)
    for name, (_, lm) in faces.items():
        ref = estimate_aus(lm)
        for _ in range(5):
            a, s = rng.uniform(-0.8, 0.8), rng.uniform(0.3, 3.0)
            rot = s * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
            moved = lm[:, :2] @ rot.T + rng.uniform(-500, 500, 2)
            np.testing.assert_allclose(estimate_aus(moved), ref, atol=1e-3, err_msg=name)


def test_aus_smooth_in_landmarks(faces):
    """Lipschitz-like: the AU change shrinks in proportion to the landmark jitter.

    Measured over 100 jitters on three photos: the worst AU moved at most ~435·sigma (sigma
    in IOD units; median of the per-trial worst ~90-175·sigma), the same ratio at sigma =
    1e-3 and 1e-5. The bound here is 600·sigma.
    """
    _, lm = faces["fr_obama.jpg"]
    iod = inter_ocular_distance(lm)
    rng = np.random.default_rng(1)
    ref = estimate_aus(lm)
    for sigma in (1e-3, 1e-4, 1e-5):  # landmark jitter as a fraction of the inter-ocular distance
        for _ in range(10):
            moved = lm[:, :2] + rng.normal(0, sigma * iod, (478, 2))
            assert np.abs(estimate_aus(moved) - ref).max() < 600 * sigma


def test_open_mouth_and_smile_read_out(faces):
    au = {n: estimate_aus(faces[n][1]) for n in (MOUTH_OPEN, MOUTH_CLOSED, SMILE)}
    assert au[MOUTH_OPEN][AU_INDEX["AU25"]] > au[MOUTH_CLOSED][AU_INDEX["AU25"]] + 2
    assert au[MOUTH_OPEN][AU_INDEX["AU26"]] > au[MOUTH_CLOSED][AU_INDEX["AU26"]]
    assert au[SMILE][AU_INDEX["AU12"]] > au[NO_SMILE][AU_INDEX["AU12"]] + 2


def test_estimate_aus_rejects_bad_landmarks():
    with pytest.raises(ValueError, match="shape"):
        estimate_aus(np.zeros((68, 2)))
    with pytest.raises(ValueError, match="NaN"):
        estimate_aus(np.full((478, 2), np.nan))
    with pytest.raises(ValueError, match="degenerate"):
        estimate_aus(np.zeros((478, 2)))


# ---------------------------------------------------------------- align / mask / paste back


def _frame_face_region(img, lm, grow):
    """Frame-space face-oval polygon mask, dilated by ``grow`` px (bilinear spill)."""
    region = np.zeros(img.shape[:2], np.uint8)
    cv2.fillPoly(region, [np.round(lm[list(FACE_OVAL), :2]).astype(np.int32)], 1)
    if grow:
        region = cv2.dilate(region, np.ones((2 * grow + 1, 2 * grow + 1), np.uint8))
    return region.astype(bool)


def test_align_face_crop(faces):
    img, lm = faces["fr_obama.jpg"]
    crop = align_face(img, lm, 128)
    assert isinstance(crop, FaceCrop) and crop.size == 128
    assert crop.image.shape == (128, 128, 3) and crop.image.dtype == np.uint8
    assert crop.matrix.shape == (2, 3) and crop.matrix.dtype == np.float64
    np.testing.assert_allclose(crop.landmarks[:, :2], lm[:, :2] @ crop.matrix[:, :2].T + crop.matrix[:, 2], atol=1e-3)
    c = crop.landmarks
    eyes_y = (c[33, 1] + c[263, 1]) / 2
    assert abs(c[33, 1] - c[263, 1]) < 2  # eyes level
    assert 0 < c[list(LEFT_BROW + RIGHT_BROW), 1].min() and c[152, 1] < 128  # brows..chin inside
    assert 0.2 * 128 < eyes_y < 0.45 * 128 and abs(c[1, 0] - 64) < 6  # consistent placement
    # same face, another scale/position → same crop geometry
    small = cv2.resize(img, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    crop2 = align_face(small, lm * np.float32([0.5, 0.5, 0.5]), 128)
    np.testing.assert_allclose(crop2.landmarks[:, :2], c[:, :2], atol=0.5)


def test_face_mask_zero_outside_oval(faces):
    img, lm = faces["dt_f30.png"]
    crop = align_face(img, lm, 128)
    m = face_mask(crop.landmarks, 128)
    assert m.shape == (128, 128) and m.dtype == np.float32
    assert m.min() >= 0 and m.max() <= 1
    inside = np.zeros((128, 128), np.uint8)
    cv2.fillPoly(inside, [np.round(crop.landmarks[list(FACE_OVAL), :2] * 16).astype(np.int32)], 1, shift=4)
    assert (m[inside == 0] == 0).all()
    nose = np.round(crop.landmarks[1, :2]).astype(int)
    assert m[nose[1], nose[0]] == pytest.approx(1.0)
    assert 0 < ((m > 0) & (m < 1)).sum()  # feathered, not a hard edge


@pytest.mark.parametrize("name, size, max_mae", [("dt_f30.png", 256, 2.5), ("fr_obama.jpg", 128, 8.0)])
def test_paste_back_round_trip(faces, name, size, max_mae):
    img, lm = faces[name]
    before = img.copy()
    crop = align_face(img, lm, size)
    out = paste_back(img, crop.image, crop)
    assert out.dtype == np.uint8 and out.shape == img.shape
    np.testing.assert_array_equal(img, before)  # input untouched
    region = _frame_face_region(img, lm, grow=2)
    np.testing.assert_array_equal(out[~region], img[~region])  # bit-identical outside
    core = cv2.erode(_frame_face_region(img, lm, 0).astype(np.uint8), np.ones((15, 15), np.uint8)).astype(bool)
    mae = np.abs(out[core].astype(np.float32) - img[core]).mean()
    print(f"round-trip MAE {name} crop {size}: {mae:.2f} (scale {crop.scale:.2f} crop px/frame px)")
    assert mae < max_mae
    # float crop input gives the same result
    np.testing.assert_array_equal(paste_back(img, crop.image.astype(np.float32), crop), out)


def test_paste_back_modified_crop_changes_only_face(faces):
    img, lm = faces["fr_obama.jpg"]
    crop = align_face(img, lm, 128)
    out = paste_back(img, 255 - crop.image, crop)
    changed = (out != img).any(-1)
    region = _frame_face_region(img, lm, grow=2)
    assert changed.any() and not changed[~region].any()
    core = cv2.erode(region.astype(np.uint8), np.ones((41, 41), np.uint8)).astype(bool)
    assert np.abs(out[core].astype(int) - img[core]).mean() > 50
    # an all-zero mask leaves the frame as is
    np.testing.assert_array_equal(paste_back(img, 255 - crop.image, crop, mask=np.zeros((128, 128), np.float32)), img)


def test_align_and_paste_reject_bad_inputs(faces):
    img, lm = faces["dt_f30.png"]
    with pytest.raises(ValueError, match="uint8"):
        align_face(img.astype(np.float32), lm)
    with pytest.raises(ValueError, match="shape"):
        align_face(img, lm[:68])
    with pytest.raises(ValueError, match="size"):
        align_face(img, lm, 8)
    with pytest.raises(ValueError, match="face_scale"):
        align_face(img, lm, 64, face_scale=0)
    crop = align_face(img, lm, 64)
    with pytest.raises(ValueError, match=r"edited crop must have shape \(64, 64, 3\)"):
        paste_back(img, np.zeros((32, 32, 3), np.uint8), crop)
    with pytest.raises(ValueError, match="dtype"):
        paste_back(img, np.zeros((64, 64, 3), np.int64), crop)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        paste_back(img, crop.image, crop, mask=np.full((64, 64), 2.0, np.float32))
    with pytest.raises(ValueError, match="feather"):
        face_mask(crop.landmarks, 64, feather=-1)
