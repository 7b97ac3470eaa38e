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
    maps = editor.predict(crop.image, target, current, crop.landmarks)
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


@needs_faces
def test_mesh_motion_moves_only_the_face_and_paints_only_where_it_opened():
    """The mesh path's maps on a real photo: the flow is exactly 0 beyond the mesh's fixed
    ring, the mask exactly 1 outside the mouth's opened and the eyes' closed triangles, and
    the edit moves the landmarks the asked AU reads (an open mouth reads AU25/AU26 higher)."""
    from fastwarp.face import estimate_aus
    from fastwarp.face.mesh import mesh_vertices

    image = _read(FACES_DIR / "images" / "df_img10.jpg")
    with ExpressionEditor("base", "cpu", motion="mesh") as editor:
        assert editor.mesh_motion is not None
        crop = editor.crop(image, editor.detect(image)[0])
        current, target = editor.aus(crop, [parse_au_edit("AU25=+2"), parse_au_edit("AU26=+2.5")])
        maps = editor.predict(crop.image, target, current, crop.landmarks)
        grid = maps.flow.shape[-1]
        ring = mesh_vertices(((crop.landmarks[None, :, :2] + 0.5) * grid / crop.size - 0.5))[0, 468:]
        outside = np.ones((grid, grid), np.uint8)
        cv2.fillPoly(outside, [np.round(ring).astype(np.int32)], 0)
        outside = cv2.erode(outside, np.ones((3, 3), np.uint8)).astype(bool)
        assert outside.any() and (maps.flow[0].abs().sum(0).numpy()[outside] == 0).all()
        assert maps.flow.abs().max() > 1.0
        opened = maps.mask[0, 0].numpy() < 1
        assert 0 < opened.mean() < 0.05  # the texture paints the mouth's gap, not the face
        out = editor.blend(image, crop, maps)
        moved = editor.detect(out)[0]
        after = estimate_aus(editor.crop(out, moved).landmarks)
        from fastwarp.au import AU_INDEX

        assert after[AU_INDEX["AU26"]] >= current[AU_INDEX["AU26"]] + 1.0, (after, current)
        with pytest.raises(ValueError, match="needs the crop's landmarks"):
            editor.predict(crop.image, target, current)
    with pytest.raises(ValueError, match="motion must be one of"):
        ExpressionEditor("base", "cpu", motion="sparse")


def test_still_motion_weight_drops_subpixel_motion_continuously():
    from fastwarp.expression_editor import STILL_MOTION, still_motion_weight

    lo, hi = STILL_MOTION
    lengths = torch.tensor([0.0, lo * 0.99, (lo + hi) / 2, hi, 5.0])
    flow = torch.stack([lengths, torch.zeros_like(lengths)])[None, :, None, :] / 2.0  # 2 frame px per grid px
    w = still_motion_weight(flow, 2.0)[0, 0, 0]
    assert w[0] == 0 and w[1] == 0 and w[2] == pytest.approx(0.5) and w[3] == 1 and w[4] == 1
    dense = torch.linspace(0, 1.5, 301)
    flow = torch.stack([dense * 0.6, dense * 0.8])[None, :, None, :]
    steps = still_motion_weight(flow, 1.0)[0, 0, 0].diff()
    assert (steps >= 0).all() and steps.abs().max() < 0.02  # monotonic, no jump


# --- 16-bit frames and every face ------------------------------------------------------------------

#: Two frontal, neutral faces (MANIFEST.csv) side by side make the group photo.
TWO_PEOPLE = ("st_people_0.png", "dt_uncut_src_img.jpg")


def two_person_photo() -> tuple[np.ndarray, np.ndarray]:
    """``(left, right)``: two real face photos padded (grey, below) to one height; side by side
    (``np.hstack``) they are a two-person photo, and each alone is its face's own photo."""
    left, right = (_read(FACES_DIR / "images" / name) for name in TWO_PEOPLE)
    h = max(left.shape[0], right.shape[0])
    return tuple(cv2.copyMakeBorder(im, 0, h - im.shape[0], 0, 0, cv2.BORDER_CONSTANT, value=(127, 127, 127))
                 for im in (left, right))


def _deep(bgr8: np.ndarray) -> np.ndarray:
    """16 bits with a non-trivial (random) low byte."""
    return (bgr8.astype(np.uint16) << 8) | np.random.default_rng(0).integers(0, 256, bgr8.shape, dtype=np.uint16)


@needs_faces
@pytest.mark.slow
def test_a_16_bit_frame_is_edited_at_16_bits(editor):
    """A uint16 frame: detection and the networks see its 8-bit copy, the composite samples
    the 16-bit frame (in float32) itself. No AU change returns it bit for bit; an edit stays
    uint16, leaves everything outside the face bit for bit, and rounded to 8 bits is the
    8-bit copy's own edit within rounding (a texture left at 0..255 would be black there)."""
    from fastwarp.media.image import to_uint8
    from test_cli import _face_region

    deep = _deep(_read(FACES_DIR / "images" / TWO_PEOPLE[0]))
    same = editor.edit(deep, [parse_au_edit("AU12=+0")])
    assert same.frame.dtype == np.uint16 and np.array_equal(same.frame, deep) and same.frame is not deep
    r16 = editor.edit(deep, [parse_au_edit("AU12=+2")])
    r8 = editor.edit(to_uint8(deep), [parse_au_edit("AU12=+2")])
    assert r16.frame.dtype == np.uint16 and np.array_equal(r16.target_aus, r8.target_aus)
    face = _face_region(r8.frame, editor.detect(to_uint8(deep))[0], grow=3)
    assert np.array_equal(r16.frame[~face], deep[~face])
    changed = np.abs(r8.frame.astype(int) - to_uint8(deep)).max(-1) > 8
    assert changed.mean() > 0.005
    diff = np.abs(to_uint8(r16.frame).astype(int) - r8.frame)
    # Bound: the 8-bit copy's quantisation (0.5) through bicubic taps (sum |w| <= 1.5625 in 2-D:
    # 0.78), rounded once per 8-bit blend (the face's composite, then the mouth region's texture
    # on top where a smile moves the lips: 2 x 0.5) and once to 8 bits (0.5): under 3.
    assert diff.max() <= 3 and diff[changed].mean() < 0.3, (diff.max(), diff[changed].mean())  # (0.27 here)


@pytest.fixture(scope="module")
def group_editor():
    with ExpressionEditor("base", "cpu", max_faces=4) as e:
        yield e


@needs_faces
@pytest.mark.slow
def test_all_faces_edits_each_face_as_if_alone(group_editor):
    """edit(all_faces=True) on a two-person photo: both faces edited, each composited in turn,
    so each face's pixels are what editing that face's crop alone gives; without it only the
    largest face changes. FrameEdit keeps its one-face fields (the largest face)."""
    from fastwarp.expression_editor import FrameEdit

    left, right = two_person_photo()
    both = np.hstack([left, right])
    edits = [parse_au_edit("AU12=+2")]
    one = group_editor.edit(both, edits)
    every = group_editor.edit(both, edits, all_faces=True)
    assert len(one.faces) == 1 and len(every.faces) == 2
    assert every.crop is every.faces[0].crop and np.array_equal(every.target_aus, every.faces[0].target_aus)
    assert all(f.changed for f in every.faces)
    halves = lambda im: (im[:, :left.shape[1]], im[:, left.shape[1]:])  # noqa: E731
    moved = [not np.array_equal(a, b) for a, b in zip(halves(every.frame), halves(both))]
    assert moved == [True, True]
    moved_one = [not np.array_equal(a, b) for a, b in zip(halves(one.frame), halves(both))]
    assert sorted(moved_one) == [False, True]
    # each face: the pixels its crop's edit alone changes are the all-faces frame's there
    union = np.zeros(both.shape[:2], bool)
    for f in every.faces:
        alone = group_editor.edit_crops(both, [f.crop], edits).frame
        mine = (alone != both).any(-1)
        assert mine.any() and np.array_equal(every.frame[mine], alone[mine])
        union |= mine
    assert np.array_equal((every.frame != both).any(-1), union)
    with pytest.raises(ValueError, match="1 edit lists for 2 faces"):
        group_editor.edit_crops(both, [f.crop for f in every.faces], [edits], per_face=True)
    assert FrameEdit(frame=both, face_found=False).faces == []  # built as before, by keyword


@needs_faces
@pytest.mark.slow
def test_the_app_photo_tab_edits_every_face_of_a_group_photo(group_editor):
    """PhotoEditor (fastwarp/app.py) finds both faces once; a preset moves each from its own
    estimate; a moved AU slider sets the largest face's AU and moves the other by as much
    from its own estimate; nothing moved: the photo bit for bit."""
    from fastwarp.app import PhotoEditor, slider_edits
    from fastwarp.au import AU_INDEX
    from fastwarp.presets import PRESETS

    left, right = two_person_photo()
    both = np.hstack([left, right])
    photos = PhotoEditor(editor=group_editor)
    photo = photos.load(both)
    assert len(photo.crops) == 2 and photo.crops[0] is photo.crop
    au, presets = dict(photo.sliders), {name: 0.0 for name in PRESETS}
    out, _, _ = photos.render(photo, slider_edits(photo, au, presets))
    assert np.array_equal(out, both)
    au["AU12"] = photo.sliders["AU12"] + 1.5
    edits = slider_edits(photo, au, presets)
    out, target, _ = photos.render(photo, edits)
    assert target[AU_INDEX["AU12"]] == pytest.approx(photo.sliders["AU12"] + 1.5)  # the largest face: set
    halves = lambda im: (im[:, :left.shape[1]], im[:, left.shape[1]:])  # noqa: E731
    assert [not np.array_equal(a, b) for a, b in zip(halves(out), halves(both))] == [True, True]
    # the other face: its own estimate + 1.5, the pixels of that edit alone
    other = group_editor.edit_crops(both, [photo.crops[1]], [("AU12", 1.5, True)])
    assert other.target_aus[AU_INDEX["AU12"]] == pytest.approx(min(photo.currents[1][AU_INDEX["AU12"]] + 1.5, 5.0))
    mine = (other.frame != both).any(-1)
    assert mine.any() and np.array_equal(out[mine], other.frame[mine])
