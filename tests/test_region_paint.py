"""The region textures in the editor (fastwarp/region_paint.py, issue 19), on real photos:
a blink closes the eye as MediaPipe reads it (more than the mesh texture alone) and changes
nothing outside the eye regions; edits that do not move the lids, and the zero edit, are
the mesh texture's output bit for bit; 16-bit photos take the same path. The mouth's texture
paints only inside the mouth region and only for edits that move the lips."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from fastwarp.au import parse_au_edit
from fastwarp.face import FaceMesh
from fastwarp.face.regions import EYE, MOUTH, eye_gap, region_matrix
from fastwarp.region_paint import RegionMotion, eye_weights_installed, mouth_weights_installed
from op_helpers import FACES_DIR

PHOTOS = ["df_img2.jpg", "df_img24.jpg", "st_people_0.png"]

pytestmark = [
    pytest.mark.skipif(not (FACES_DIR / "images" / PHOTOS[0]).is_file(), reason=f"faces data not found at {FACES_DIR}"),
    pytest.mark.skipif(not eye_weights_installed(), reason="the eye region texture (fastwarp/weights/region_eye.*) "
                                                          "is not installed"),
]


@pytest.fixture(scope="module")
def editors():
    from fastwarp import ExpressionEditor

    eds = {t: ExpressionEditor("base", "cpu", texture=t) for t in ("regions", "eyes", "mesh")}
    yield eds
    for e in eds.values():
        e.close()


def _photo(name: str) -> np.ndarray:
    return cv2.imread(str(FACES_DIR / "images" / name), cv2.IMREAD_COLOR)


def _eye_boxes(landmarks: np.ndarray, shape, spec=EYE, sides=("right", "left")) -> np.ndarray:
    """Pixels under the regions' footprints (where a region texture may paint): both eyes, or
    the mouth with ``spec=MOUTH, sides=(None,)``."""
    inside = np.zeros(shape[:2], bool)
    ys, xs = np.mgrid[0:shape[0], 0:shape[1]]
    for side in sides:
        m = region_matrix(landmarks[None], spec, side)[0]
        u = m[0, 0] * xs + m[0, 1] * ys + m[0, 2]
        v = m[1, 0] * xs + m[1, 1] * ys + m[1, 2]
        inside |= (u >= -0.5) & (u <= spec.width - 0.5) & (v >= -0.5) & (v <= spec.height - 0.5)
    return inside


@pytest.mark.parametrize("name", PHOTOS)
def test_blink_closes_the_eye_more_and_paints_only_the_eye_regions(editors, name):
    image = _photo(name)
    blink = [parse_au_edit("AU45=5")]
    regions, mesh = editors["eyes"].edit(image, blink).frame, editors["mesh"].edit(image, blink).frame
    assert np.array_equal(regions, editors["regions"].edit(image, blink).frame)  # a blink moves no lip
    landmarks = editors["mesh"].detect(image)[0]
    differ = np.any(regions != mesh, axis=2)
    assert differ.sum() > 200  # the region texture painted
    assert not differ[~_eye_boxes(landmarks[:, :2].astype(np.float64), image.shape)].any()
    with FaceMesh(static_image_mode=True) as reader:  # MediaPipe reads each output afresh
        gaps = {k: eye_gap(reader.detect(im)[0][None]).mean() for k, im in (("input", image), ("regions", regions))}
    # closed by a third or more (0.22-0.65 of the input's gap on these three, phase 7); the
    # mesh texture alone is no reference here: its pale smear over the lids reads as closed skin
    assert gaps["regions"] < 0.75 * gaps["input"], gaps


@pytest.mark.parametrize("au", ["AU12=+2.5", "AU25=+2 AU26=+2.5", "AU01=+2.5 AU02=+2.5", "AU04=+3", "AU12=+0"])
def test_edits_that_do_not_move_the_lids_are_the_mesh_texture_bit_for_bit(editors, au):
    image = _photo(PHOTOS[0])
    edits = [parse_au_edit(a) for a in au.split()]
    assert np.array_equal(editors["eyes"].edit(image, edits).frame, editors["mesh"].edit(image, edits).frame)


needs_mouth = pytest.mark.skipif(not mouth_weights_installed(), reason="the mouth region texture "
                                 "(fastwarp/weights/region_mouth.*) is not installed")


@needs_mouth
@pytest.mark.parametrize("name", PHOTOS)
def test_an_opening_mouth_is_painted_inside_the_mouth_region_only(editors, name):
    image = _photo(name)
    edits = [parse_au_edit("AU25=+2"), parse_au_edit("AU26=+2.5")]
    regions, eyes = editors["regions"].edit(image, edits).frame, editors["eyes"].edit(image, edits).frame
    landmarks = editors["mesh"].detect(image)[0][:, :2].astype(np.float64)
    differ = np.any(regions != eyes, axis=2)
    assert differ.sum() > 200
    assert not differ[~_eye_boxes(landmarks, image.shape, MOUTH, (None,))].any()


@needs_mouth
@pytest.mark.parametrize("au", ["AU45=5", "AU01=+2.5 AU02=+2.5", "AU12=+0"])
def test_edits_that_do_not_move_the_lips_leave_the_mouth_texture_out(editors, au):
    image = _photo(PHOTOS[1])
    edits = [parse_au_edit(a) for a in au.split()]
    assert np.array_equal(editors["regions"].edit(image, edits).frame, editors["eyes"].edit(image, edits).frame)
    assert editors["regions"].regions.mouth is not None and editors["eyes"].regions.mouth is None


@needs_mouth
def test_the_mouth_wakes_for_lip_motion_that_an_edit_asks_for(editors):
    """Lips moved by 0.1 IOD: the mouth texture runs when a lower-face AU changes (here AU12 by
    0.5), not when only AU45 does (a video's steadied target moves lips under a blink), and the
    landmarks alone decide without an AU change given."""
    from fastwarp.au import AU_INDEX
    from fastwarp.face.regions import LOWER_OUTER_LIP, eye_line_axes

    image = _photo(PHOTOS[1])
    painter = editors["regions"].regions
    source = editors["regions"].detect(image)[0][:, :2].astype(np.float64)
    target = source.copy()
    _, ey, iod = eye_line_axes(source[None])
    target[list(LOWER_OUTER_LIP)] += 0.1 * iod[0] * ey[0]
    blink, smile = np.zeros(17, np.float32), np.zeros(17, np.float32)
    blink[AU_INDEX["AU45"]], smile[AU_INDEX["AU12"]] = 5.0, 0.5
    assert "mouth" in painter.moving(source, target)
    assert "mouth" in painter.moving(source, target, smile)
    assert "mouth" not in painter.moving(source, target, blink)
    assert "mouth" not in painter.moving(source, source, smile)  # no lip motion: nothing to paint


def test_the_mouth_model_must_be_a_mouth(tmp_path):
    from fastwarp.models.region_texture import RegionTexture, RegionTextureConfig
    from fastwarp.region_paint import RegionPainter

    eye = RegionTexture(RegionTextureConfig(kind="eye", height=64, width=128, channels=[8, 16]))
    with pytest.raises(ValueError, match="the mouth region texture must be kind 'mouth' of 128x128"):
        RegionPainter(eye, mouth=eye)
    with pytest.raises(ValueError, match="needs an eye or a mouth region texture"):
        RegionPainter(None)


def test_no_lid_motion_returns_the_composite_itself(editors):
    """RegionPainter.paint with target == source: the composite tensor, untouched."""
    image = _photo(PHOTOS[0])
    ed = editors["regions"]
    crop = ed.crop(image, ed.detect(image)[0])
    lm = crop.landmarks[:, :2].astype(np.float64)
    composite = torch.from_numpy(image.copy()).permute(2, 0, 1)[None]
    out = ed.regions.paint(composite, image, crop.matrix, RegionMotion(lm, lm.copy(), np.zeros(17, np.float32)))
    assert out is composite


def test_a_16_bit_photo_takes_the_same_paint(editors):
    image = _photo(PHOTOS[0])
    deep = image.astype(np.uint16) * 257
    blink = [parse_au_edit("AU45=5")]
    out8 = editors["regions"].edit(image, blink).frame
    out16 = editors["regions"].edit(deep, blink).frame
    assert out16.dtype == np.uint16
    # The same edit within a grey level (the composite rounds once at 16 bits, once at 8).
    assert np.abs(np.rint(out16 / 257.0) - out8).max() <= 1
    assert not np.array_equal(out8, editors["mesh"].edit(image, blink).frame)


def test_texture_regions_needs_mesh_motion():
    from fastwarp import ExpressionEditor

    with pytest.raises(ValueError, match="texture='regions' paints through the mesh motion"):
        ExpressionEditor("base", "cpu", motion="dense", texture="regions")
    with pytest.raises(ValueError, match="texture='eyes' paints through the mesh motion"):
        ExpressionEditor("base", "cpu", motion="dense", texture="eyes")
    with pytest.raises(ValueError, match="texture must be one of"):
        ExpressionEditor("base", "cpu", texture="gan")


def test_lite_uses_the_lite_eye_texture_where_installed():
    from fastwarp import ExpressionEditor
    from fastwarp.realtime import RealtimeEngine
    from fastwarp.region_paint import EYE_WEIGHTS_LITE, eye_weights

    want = EYE_WEIGHTS_LITE if EYE_WEIGHTS_LITE.with_suffix(".safetensors").is_file() else eye_weights("base")
    assert eye_weights("lite") == want and eye_weights("base") != EYE_WEIGHTS_LITE
    with ExpressionEditor("lite", "cpu") as ed:
        lite_channels = ed.regions.eye.config.channels
    with RealtimeEngine([], "lite", "cpu", runtime="torch") as engine:
        assert engine.editor.regions.eye.config.channels == lite_channels
    with ExpressionEditor("base", "cpu") as ed:
        assert ed.regions.eye.config.channels == [16, 32, 64, 128]
    if want == EYE_WEIGHTS_LITE:
        assert lite_channels == [8, 16, 32, 64]
    from fastwarp.region_paint import MOUTH_WEIGHTS_LITE

    with ExpressionEditor("lite", "cpu") as ed:
        if MOUTH_WEIGHTS_LITE.with_suffix(".safetensors").is_file():
            assert ed.regions.mouth.config.channels == [8, 16, 32, 64]
        else:
            assert ed.regions.mouth is None


def test_video_memory_averages_each_eye_over_frames_and_forgets_unpainted_eyes(editors):
    """RegionPainter.paint with a track's memory: the same frame twice gives the same output
    (the average of two equal textures is that texture), the memory holds both eyes, and a
    frame whose lids do not move empties it."""
    image = _photo(PHOTOS[0])
    ed = editors["regions"]
    crop = ed.crop(image, ed.detect(image)[0])
    current, target = ed.aus(crop, [parse_au_edit("AU45=5")])
    maps = ed.predict(crop.image, target, current, crop.landmarks)
    memory: dict = {}
    first = ed.blend(image, crop, maps, memory)
    assert set(memory) == {"right", "left"}
    again = ed.blend(image, crop, maps, memory)
    assert np.abs(again.astype(int) - first.astype(int)).max() <= 1
    assert np.array_equal(first, ed.blend(image, crop, maps))  # no memory: the photo path
    still = ed.predict(crop.image, current, current, crop.landmarks)
    ed.blend(image, crop, still, memory)
    assert memory == {}


def _blink_maps(ed):
    """``(image, crop, maps)`` of a blink (AU45=5) on the first photo, for blending repeatedly."""
    image = _photo(PHOTOS[0])
    crop = ed.crop(image, ed.detect(image)[0])
    current, target = ed.aus(crop, [parse_au_edit("AU45=5")])
    return image, crop, ed.predict(crop.image, target, current, crop.landmarks)


def test_refresh_runs_the_network_every_nth_frame_and_blends_its_last_texture_between(editors):
    """RegionPainter.refresh = 3 on one track: the eye network runs on frames 0 and 3 of six,
    the frames between blend the stored texture (the same frame repeated: the same output),
    and the real-time engine refuses a refresh under 1."""
    from fastwarp.realtime import RealtimeEngine

    ed = editors["eyes"]
    image, crop, maps = _blink_maps(ed)
    calls = []
    hook = ed.regions.eye.register_forward_hook(lambda *a: calls.append(1))
    memory: dict = {}
    try:
        ed.regions.refresh = 3
        outs = [ed.blend(image, crop, maps, memory) for _ in range(6)]
    finally:
        ed.regions.refresh = 1
        hook.remove()
    assert len(calls) == 2 and set(memory) == {"right", "left"}
    assert all(np.array_equal(o, outs[0]) for o in outs[1:3])
    assert not np.array_equal(outs[0], image)
    with pytest.raises(ValueError, match="region_refresh must be >= 1, got 0"):
        RealtimeEngine([], "base", "cpu", runtime="torch", region_refresh=0)


def test_under_a_refresh_the_eyes_refresh_together(editors):
    """One eye due (its stored texture as old as the refresh allows), the other not: both run,
    in one batch of the eye network, and both ages restart at 0 (their cycles stay in step)."""
    ed = editors["eyes"]
    image, crop, maps = _blink_maps(ed)
    batches = []
    hook = ed.regions.eye.register_forward_hook(lambda m, args, out: batches.append(args[0].shape[0]))
    memory: dict = {}
    try:
        ed.regions.refresh = 3
        ed.blend(image, crop, maps, memory)
        assert batches == [2] and {n: memory[n][2] for n in memory} == {"right": 0, "left": 0}
        memory["right"] = memory["right"][:2] + (2,) + memory["right"][3:]  # the right eye is due, the left is not
        ed.blend(image, crop, maps, memory)
    finally:
        ed.regions.refresh = 1
        hook.remove()
    assert batches == [2, 2]
    assert {n: memory[n][2] for n in memory} == {"right": 0, "left": 0}


def test_under_a_refresh_the_mesh_texture_reuses_its_last_paint_under_this_frames_gate(editors, monkeypatch):
    """MeshMotion.refresh = 3 with a track's memory (the real-time engine's region_refresh): the
    mesh texture's network runs on frames 0 and 3 of six; between, the frame gets the stored
    texture and ungated mask, gated by its own opening map (a smaller edit opens less: the same
    texture, a mask of 1 wherever it did not open); the first frame is the photo path's maps bit for bit; a frame
    that moves nothing forgets the stored paint. The engine sets the refresh with the regions'."""
    from fastwarp.realtime import RealtimeEngine

    ed = editors["regions"]
    mm = ed.mesh_motion
    image = _photo(PHOTOS[0])
    crop = ed.crop(image, ed.detect(image)[0])
    current, target = ed.aus(crop, [parse_au_edit("AU25=+2"), parse_au_edit("AU26=+2.5")])
    _, smaller = ed.aus(crop, [parse_au_edit("AU25=+1"), parse_au_edit("AU26=+1")])
    calls = []
    ungated = mm.texture_model.ungated
    monkeypatch.setattr(mm.texture_model, "ungated", lambda *a: calls.append(1) or ungated(*a))
    photo = ed.predict(crop.image, target, current, crop.landmarks)
    alone = ed.predict(crop.image, smaller, current, crop.landmarks)
    assert len(calls) == 2
    memory: dict = {}
    monkeypatch.setattr(mm, "refresh", 3)
    runs = [ed.predict(crop.image, t, current, crop.landmarks, memory=memory)
            for t in (target, smaller, target, target, target, target)]
    assert len(calls) == 2 + 2 and memory["mesh"][2] == 2
    assert torch.equal(runs[0].texture, photo.texture) and torch.equal(runs[0].mask, photo.mask)
    # frame 1: frame 0's paint, its own (smaller) opening
    assert torch.equal(runs[1].texture, photo.texture) and not torch.equal(runs[1].texture, alone.texture)
    assert (runs[1].mask[alone.mask == 1] == 1).all()  # gated where this frame opened: 1 wherever it did not
    assert not torch.equal(runs[1].mask, photo.mask)
    assert torch.equal(runs[2].mask, photo.mask) and torch.equal(runs[3].mask, photo.mask)  # frame 3 ran afresh
    ed.predict(crop.image, current, current, crop.landmarks, memory=memory)
    assert "mesh" not in memory
    with RealtimeEngine([], "base", "cpu", runtime="torch", texture="regions", region_refresh=4) as engine:
        assert engine.editor.mesh_motion.refresh == 4
    with RealtimeEngine([], "base", "cpu", runtime="torch", texture="mesh", region_refresh=4) as engine:
        assert engine.editor.mesh_motion.refresh == 1  # the mesh path alone, as shipped


def test_mouth_weights_pick_the_bundled_mouth_and_lite_only_its_own(tmp_path, monkeypatch):
    from pathlib import Path

    import fastwarp.region_paint as rp

    monkeypatch.setattr(rp, "MOUTH_WEIGHTS", tmp_path / "m")
    monkeypatch.setattr(rp, "MOUTH_WEIGHTS_LITE", tmp_path / "m_lite")
    assert rp.mouth_weights_for(None, "base") is None  # nothing installed
    (tmp_path / "m.safetensors").write_bytes(b"")
    assert rp.mouth_weights_for(None, "base") == tmp_path / "m"
    assert rp.mouth_weights_for(None, "lite") is None  # the full-width mouth is too slow for lite
    (tmp_path / "m_lite.safetensors").write_bytes(b"")
    assert rp.mouth_weights_for(None, "lite") == tmp_path / "m_lite"
    assert rp.mouth_weights_for("none", "base") is None
    assert rp.mouth_weights_for("some/where", "lite") == Path("some/where")


@needs_mouth
def test_a_mouth_texture_trained_to_paint_the_cavity_paints_all_of_it(editors):
    """A mouth texture whose config says it was trained with the cavity filled
    (``RegionTextureConfig.cavity``, as the bundled ones since phase 6) gets the filled input and
    paints the whole cavity: its mask is 0 where the jaws' split opens a cavity, on df_img24 opened
    on its teeth; the same weights without the flag keep part of the warp there."""
    import copy

    from fastwarp.au import AU_INDEX
    from fastwarp.face.jaws import upper_share
    from fastwarp.face.regions import LOWER_INNER_LIP, LOWER_OUTER_LIP, eye_line_axes
    from fastwarp.region_paint import RegionPainter

    image = _photo("df_img24.jpg")
    painter = editors["regions"].regions
    source = editors["regions"].detect(image)[0][:, :2].astype(np.float64)
    target = source.copy()
    _, ey, iod = eye_line_axes(source[None])
    below = np.flatnonzero(source[:468, 1] > source[14, 1])
    moved = sorted((set(LOWER_INNER_LIP) | set(LOWER_OUTER_LIP) | set(below.tolist())) - {78, 308, 61, 291})
    target[moved] += 0.15 * iod[0] * ey[0]
    au = np.zeros(17, np.float32)
    au[AU_INDEX["AU26"]] = 2.5
    share = upper_share(image, source)
    mouth, untrained = copy.deepcopy(painter.mouth), copy.deepcopy(painter.mouth)
    mouth.config.cavity, untrained.config.cavity = True, False
    trained = RegionPainter(None, mouth=mouth)
    _, inputs = trained.region_inputs(image, source, target, MOUTH, [None], share, cavity=True)
    full = inputs["cavity"][0, 0] > 1 - 1e-6
    assert int(full.sum()) > 50
    _, mask = trained.maps(image, source, target, au, ["mouth"], share)["mouth"][1:]
    assert (mask[0, 0][full] == 0).all()
    _, plain = RegionPainter(None, mouth=untrained).maps(image, source, target, au, ["mouth"], share)["mouth"][1:]
    assert float(plain[0, 0][full].max()) > 0.05  # without the flag the mask keeps part of the streaked warp there


def test_an_eye_texture_trained_to_paint_the_closing_aperture_paints_all_of_it(editors):
    """An eye texture whose config says it was trained to paint the closing aperture
    (``RegionTextureConfig.cavity``) paints it wholly where a blink squeezes it (mask 0: no iris or
    sclera of the open eye is kept), on df_img41, the photo whose eye closed least in phase 6; the
    same weights without the flag keep part of the squeezed eye there."""
    import copy

    from fastwarp.au import AU_INDEX
    from fastwarp.region_paint import RegionPainter

    image = _photo("df_img41.jpg")
    ed = editors["eyes"]
    crop = ed.crop(image, ed.detect(image)[0])
    current, target_au = ed.aus(crop, [parse_au_edit("AU45=5")])
    maps = ed.predict(crop.image, target_au, current, crop.landmarks)
    inv = cv2.invertAffineTransform(np.asarray(crop.matrix, np.float64))
    source = maps.motion.source @ inv[:, :2].T + inv[:, 2]
    target = maps.motion.target @ inv[:, :2].T + inv[:, 2]
    au = np.zeros(17, np.float32)
    au[AU_INDEX["AU45"]] = 5.0
    eye, untrained = copy.deepcopy(ed.regions.eye), copy.deepcopy(ed.regions.eye)
    eye.config.cavity, untrained.config.cavity = True, False
    trained = RegionPainter(eye)
    _, inputs = trained.region_inputs(image, source, target, EYE, ["right", "left"], cavity=True)
    full = inputs["cavity"][:, 0] > 1 - 1e-6
    # the right eye keeps a squeezed strip (its moved lids stay above the floor where lids meet,
    # fastwarp.face.lids); the left eye's lids meet
    assert int(full[0].sum()) > 20
    painted = trained.maps(image, source, target, au, ["right", "left"])
    plain = RegionPainter(untrained).maps(image, source, target, au, ["right", "left"])
    for i, side in enumerate(("right", "left")):
        if not full[i].any():
            continue
        assert (painted[side][2][0, 0][full[i]] == 0).all()
        assert float(plain[side][2][0, 0][full[i]].max()) > 0.05  # without the flag part of the warp is kept


def test_the_mesh_texture_leaves_the_painted_eyes_to_the_eye_texture(editors, monkeypatch):
    """With the region textures the face's mesh texture does not paint inside the eye regions they
    paint (its mask is exactly 1 there: the eye texture was trained over the warp alone), and for a
    blink, whose warp opens nothing elsewhere, its network does not run at all; an edit that also
    opens the mouth still gets the mesh texture there. Without the painter (``--texture mesh``)
    the mesh texture paints the eyes as before."""
    from fastwarp.mesh_path import MeshMotion

    image = _photo("df_img2.jpg")
    ed = editors["eyes"]
    crop = ed.crop(image, ed.detect(image)[0])
    calls = []
    real = type(ed.mesh_motion.texture_model).ungated
    monkeypatch.setattr(type(ed.mesh_motion.texture_model), "ungated",
                        lambda self, *a: calls.append(1) or real(self, *a))
    for au, runs in (("AU45=5", False), ("AU45=5 AU25=+2 AU26=+2.5", True)):
        current, target = ed.aus(crop, [parse_au_edit(a) for a in au.split()])
        calls.clear()
        maps = ed.predict(crop.image, target, current, crop.landmarks)
        cover = ed.regions.cover(maps.motion, maps.mask.shape[-1], crop.size)
        assert cover is not None and int(cover.sum()) > 50
        assert (maps.mask[cover] == 1).all()
        assert bool(calls) == runs, au
        if runs:
            assert float(maps.mask[~cover].min()) < 0.9  # the opening mouth keeps its mesh texture
        plain = MeshMotion.maps(ed.mesh_motion, crop.image, crop.landmarks, current, target)  # no painter
        assert float(plain.mask[cover].min()) < 0.9  # the mesh texture paints the eyes without one



# --- grey pictures (fastwarp.images.achromatic, luma_texture) ------------------------------------

def test_achromatic_and_luma_texture_against_pillow():
    from PIL import Image

    from fastwarp.images import achromatic, luma_texture

    rng = np.random.default_rng(3)
    grey = np.repeat(rng.integers(0, 256, (40, 50, 1), dtype=np.uint8), 3, axis=2)
    assert achromatic(grey)
    jitter = np.clip(grey.astype(np.int16) + rng.integers(-1, 2, grey.shape), 0, 255).astype(np.uint8)
    assert achromatic(jitter)  # JPEG's rounding: channels within 2 levels
    tinted = grey.copy()
    tinted[12, 30, 2] = np.uint8(min(int(tinted[12, 30, 0]) + 9, 255) if tinted[12, 30, 0] < 200 else 0)
    assert not achromatic(tinted)  # one pixel off the strided sample still counts
    assert not achromatic(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8))
    assert achromatic(np.repeat(rng.integers(0, 65536, (9, 9, 1), dtype=np.uint16), 3, axis=2))
    with pytest.raises(ValueError, match="image"):
        achromatic(grey[..., 0])
    # luma against Pillow's convert("L") on the same pixels (RGB in [-1, 1] <-> 0..255)
    rgb = rng.integers(0, 256, (8, 11, 3), dtype=np.uint8)
    t = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 127.5 - 1.0
    got = (luma_texture(t) + 1.0) * 127.5
    want = np.asarray(Image.fromarray(rgb).convert("L"), np.float64)
    assert torch.equal(got[:, 0], got[:, 1]) and torch.equal(got[:, 0], got[:, 2])
    np.testing.assert_allclose(got[0, 0].numpy(), want, atol=0.51)
    with pytest.raises(ValueError, match="texture"):
        luma_texture(t[:, :2])
