"""training.data: identity split, dataset preparation (real videos and photos), pairs, and
the GANimation-layout dataset with its restricted AU unpickler."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest

from fastwarp.face import FaceMesh, align_face, estimate_aus
from training.data import (
    GanimationDataset,
    identity_key,
    load_au_pickle,
    load_dataset,
    make_pairs,
    prepare_dataset,
    split_videos,
)

FACES = Path(os.environ.get("FASTWARP_FACES_DIR", Path(__file__).resolve().parents[1].parent / "shared" / "data" / "faces"))
needs_faces = pytest.mark.skipif(not (FACES / "videos").is_dir(), reason=f"real face data not found at {FACES}")
needs_photos = pytest.mark.skipif(not (FACES / "images").is_dir(),
                                  reason=f"real face photos not found at {FACES}/images")

NAMES = [
    "dt_M030_angry.mp4", "dt_M030_happy.mp4", "dt_M030_neutral.mp4", "dt_W009_sad.mp4", "dt_W009_happy.mp4",
    "sty_src_Obama_clip1.mp4", "sty_src_Obama_clip3.mp4", "sty_src_andrew_clip_1.mp4", "lp_d0.mp4", "lp_d3.mp4",
    "lp_d6.mp4", "vr_face1.mp4", "pcavs_audio_00086.mp4", "tps_driving.mp4",
]


def test_identity_key():
    assert identity_key("dt_M030_angry.mp4") == identity_key("dt_M030_sad") == "dt_M030"
    assert identity_key("dt_W009_happy.mp4") != identity_key("dt_M030_happy.mp4")
    assert identity_key("sty_src_Obama_clip1.mp4") == identity_key("sty_src_Obama_clip3.mp4")
    assert identity_key("sty_src_andrew_clip_1.mp4") == "sty_src_andrew"
    assert identity_key("lp_d0.mp4") != identity_key("lp_d3.mp4")


def _all_names():
    if (FACES / "videos").is_dir():
        return sorted(p.name for p in (FACES / "videos").iterdir() if p.suffix == ".mp4")
    return NAMES


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("frac", [0.1, 0.3, 0.5])
def test_split_keeps_identities_apart(seed, frac):
    names = _all_names()
    train, val = split_videos(names, frac, seed)
    assert sorted(train + val) == sorted(names) and not set(train) & set(val)
    assert train and val and len(val) >= frac * len(names)
    assert not {identity_key(n) for n in train} & {identity_key(n) for n in val}


def test_split_puts_photos_in_training_and_keeps_the_video_split():
    photos = ["img_a", "img_b", "img_st_people_0"]
    assert split_videos(NAMES + photos, 0.3, 1) == (sorted(split_videos(NAMES, 0.3, 1)[0] + photos),
                                                    split_videos(NAMES, 0.3, 1)[1])


def test_split_edge_cases():
    assert split_videos(NAMES, 0.0) == (sorted(NAMES), [])
    with pytest.raises(ValueError, match="val_fraction"):
        split_videos(NAMES, 1.5)


@needs_faces
def test_prepare_dataset_writes_and_resumes(tmp_path):
    vids = ["sty_style_furious_talk2_clip1.mp4", "dt_M030_happy.mp4"]
    out = tmp_path / "ds"
    manifest = prepare_dataset(FACES, out, size=64, frames_per_video=4, progress=False, videos=vids)
    assert set(manifest["videos"]) == {Path(v).stem for v in vids}
    assert json.loads((out / "manifest.json").read_text()) == manifest
    data = load_dataset(out)
    for name, d in data.items():
        f = manifest["videos"][name]["frames"]
        assert f == 4
        assert d["crops"].shape == (f, 64, 64, 3) and d["crops"].dtype == np.uint8
        assert d["aus"].shape == (f, 17) and d["aus"].dtype == np.float32
        assert ((d["aus"] >= 0) & (d["aus"] <= 5)).all()
        assert d["landmarks"].shape == (f, 478, 2) and d["pose"].shape == (f, 2)
        assert (np.diff(d["frame_idx"]) > 0).all()
        assert (d["landmarks"] > -8).all() and (d["landmarks"] < 72).all()
    assert not list(out.glob("*.tmp"))

    # resume: existing npz are not recomputed; a lost manifest is rebuilt from them
    mtimes = {p: p.stat().st_mtime_ns for p in out.glob("*.npz")}
    (out / "manifest.json").unlink()
    again = prepare_dataset(FACES, out, size=64, frames_per_video=4, progress=False, videos=vids)
    assert {p: p.stat().st_mtime_ns for p in out.glob("*.npz")} == mtimes
    assert {k: v["frames"] for k, v in again["videos"].items()} == {k: v["frames"] for k, v in manifest["videos"].items()}


def test_prepare_dataset_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="videos"):
        prepare_dataset(tmp_path, tmp_path / "out", progress=False)


def test_make_pairs_respects_pose_and_au_limits():
    rng = np.random.default_rng(0)
    ds = {}
    for v in ("a", "b"):
        ds[v] = {"pose": rng.uniform(-0.3, 0.3, (30, 2)).astype(np.float32),
                 "aus": rng.uniform(0, 5, (30, 17)).astype(np.float32) * (rng.random((30, 1)) > 0.5)}
    pairs = make_pairs(ds, ["a", "b"], max_pose_diff=0.1, min_au_diff=1.0, pairs_per_video=15,
                       rng=np.random.default_rng(1))
    assert 0 < len(pairs) <= 30 and len(set(pairs)) == len(pairs)
    for v, i, j in pairs:
        assert i != j
        assert np.abs(ds[v]["pose"][i] - ds[v]["pose"][j]).max() <= 0.1
        assert np.abs(ds[v]["aus"][i] - ds[v]["aus"][j]).max() >= 1.0
    same = {"pose": np.zeros((5, 2), np.float32), "aus": np.ones((5, 17), np.float32)}
    assert make_pairs({"s": same}, ["s"], rng=np.random.default_rng(0)) == []


# --- photos ---------------------------------------------------------------------------------

def test_identity_key_keeps_photos_apart():
    assert identity_key("img_fr_rose_leslie1") != identity_key("img_fr_rose_leslie2")
    # the video rules do not merge photos: "_clipN" and MEAD-like stems stay whole
    assert identity_key("img_foo_clip1") == "img_foo_clip1" != identity_key("img_foo_clip2")
    assert identity_key("img_dt_M030_happy") == "img_dt_M030_happy" != identity_key("dt_M030_happy")
    assert identity_key("img_a.b") != identity_key("img_a.c")
    names = ["img_a_clip1", "img_a_clip2", "img_b", "lp_d0", "lp_d3"]
    train, val = split_videos(names, 0.5, 0)
    assert sorted(train + val) == sorted(names)
    assert len(val) == 1 and val[0].startswith("lp_")  # photos always train; videos split by identity
    assert {"img_a_clip1", "img_a_clip2", "img_b"} <= set(train)


@needs_faces
@needs_photos
def test_prepare_dataset_videos_and_photos(tmp_path):
    vids, photos = ["dt_M030_happy.mp4"], ["fr_obama.jpg", "st_happy.png"]
    out = tmp_path / "ds"
    manifest = prepare_dataset(FACES, out, size=64, frames_per_video=2, progress=False, videos=vids, photos=photos)
    entries = manifest["videos"]
    assert set(entries) == {"dt_M030_happy", "img_fr_obama", "img_st_happy"}
    assert entries["dt_M030_happy"]["kind"] == "video" and entries["dt_M030_happy"]["frames"] == 2
    data = load_dataset(out)
    with FaceMesh(static_image_mode=True) as mesh:
        for photo in photos:
            name = "img_" + Path(photo).stem
            assert entries[name] == {"frames": 1, "source": str(FACES / "images" / photo), "kind": "photo"}
            d = data[name]
            assert d["crops"].shape == (1, 64, 64, 3) and d["crops"].dtype == np.uint8
            assert d["frame_idx"].tolist() == [0] and d["pose"].shape == (1, 2)
            # independent recomputation through the public face API
            image = cv2.imread(str(FACES / "images" / photo))
            crop = align_face(image, mesh.detect(image)[0], 64)
            np.testing.assert_array_equal(d["crops"][0], crop.image)
            np.testing.assert_allclose(d["landmarks"][0], crop.landmarks[:, :2], atol=1e-4)
            np.testing.assert_allclose(d["aus"][0], estimate_aus(crop.landmarks), atol=1e-5)
    assert not {identity_key(n) for n in ("img_fr_obama",)} & {identity_key("img_st_happy")}

    # resumable: nothing is recomputed, a lost manifest is rebuilt with the kinds
    mtimes = {q: q.stat().st_mtime_ns for q in out.glob("*.npz")}
    (out / "manifest.json").unlink()
    again = prepare_dataset(FACES, out, size=64, frames_per_video=2, progress=False, videos=vids, photos=photos)
    assert {q: q.stat().st_mtime_ns for q in out.glob("*.npz")} == mtimes
    assert again["videos"] == entries


@needs_faces
@needs_photos
def test_prepare_dataset_plain_folder(tmp_path):
    """Videos and photos directly in the folder; a photo without a face gives 0 frames."""
    src = tmp_path / "faces"
    src.mkdir()
    (src / "clip.mp4").symlink_to(FACES / "videos" / "dt_W009_happy.mp4")
    (src / "face.png").symlink_to(FACES / "images" / "st_happy.png")
    cv2.imwrite(str(src / "wall.jpg"), np.full((96, 96, 3), 128, np.uint8))
    (src / "notes.txt").write_text("not media")
    manifest = prepare_dataset(src, tmp_path / "ds", size=64, frames_per_video=2, progress=False)
    got = {k: (v["kind"], v["frames"]) for k, v in manifest["videos"].items()}
    assert got == {"clip": ("video", 2), "img_face": ("photo", 1), "img_wall": ("photo", 0)}
    assert load_dataset(tmp_path / "ds")["img_wall"]["crops"].shape == (0, 64, 64, 3)


def test_prepare_dataset_input_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="faces folder not found"):
        prepare_dataset(tmp_path / "nope", tmp_path / "out", progress=False)
    plain = tmp_path / "plain"
    plain.mkdir()
    for name in ("a.jpg", "a.png"):
        cv2.imwrite(str(plain / name), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match=r"a\.jpg and .*a\.png would both be stored as img_a"):
        prepare_dataset(plain, tmp_path / "out", progress=False)
    with pytest.raises(FileNotFoundError, match="photos not found.*b.jpg"):
        prepare_dataset(plain, tmp_path / "out", progress=False, photos=["b.jpg"])
    (plain / "a.png").unlink()
    (plain / "a.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match="cannot read photo .*a.jpg"):
        prepare_dataset(plain, tmp_path / "out", progress=False)
    assert not (tmp_path / "out" / "img_a.npz").exists()


# --- GANimation layout ----------------------------------------------------------------------

PHOTO = FACES / "images" / "fr_obama.jpg"
_SIZES = {"N_0000.jpg": (128, 128), "N_0001.jpg": (100, 100), "N_0002.jpg": (150, 120), "N_0003.png": (128, 128),
          "N_0004.jpg": (128, 128)}


def _au(i: int) -> np.ndarray:
    return np.linspace(-1.0, 6.0, 17) * (i + 1) / 5  # some values outside 0..5, to be clipped


def _write_ganimation(root: Path, aus: dict | None = None) -> dict[str, np.ndarray]:
    """imgs/ cut from a real photo (various sizes); AUs for N_0000..N_0003 (keys: stems and a
    full name) and for a missing image; N_0004 has no AUs."""
    photo = cv2.imread(str(PHOTO))
    (root / "imgs").mkdir(parents=True)
    for i, (name, (h, w)) in enumerate(_SIZES.items()):
        y, x = 200 + 40 * i, 150 + 30 * i
        cv2.imwrite(str(root / "imgs" / name), photo[y:y + h, x:x + w])
    if aus is None:
        aus = {"N_0000": _au(0), "N_0001": _au(1).astype(np.float32), "N_0002.jpg": _au(2), "N_0003": _au(3),
               "N_9999": _au(4)}
    with open(root / "aus_openface.pkl", "wb") as f:
        pickle.dump(aus, f)
    return aus


@pytest.fixture
def gan_root(tmp_path):
    if not PHOTO.is_file():
        pytest.skip(f"real face photo not found at {PHOTO}")
    _write_ganimation(tmp_path / "gan")
    return tmp_path / "gan"


def test_ganimation_names_aus_and_crops(gan_root):
    ds = GanimationDataset(gan_root, size=128)
    assert ds.names == ["N_0000.jpg", "N_0001.jpg", "N_0002.jpg", "N_0003.png"] and len(ds) == 4
    assert ds.aus.dtype == np.float32 and ds.aus.shape == (4, 17)
    np.testing.assert_array_equal(ds.aus, np.clip(np.stack([_au(i) for i in range(4)]), 0, 5).astype(np.float32))
    crops = ds.crops([3, 0, 2, 1])
    assert crops.shape == (4, 128, 128, 3) and crops.dtype == np.uint8
    for k, i in enumerate([3, 0, 2, 1]):
        ref = cv2.imread(str(gan_root / "imgs" / ds.names[i]))
        if ref.shape[:2] != (128, 128):
            ref = cv2.resize(ref, (128, 128), interpolation=cv2.INTER_AREA)
        np.testing.assert_array_equal(crops[k], ref)
    # BGR, as read: the untouched 128x128 png is bit-identical to the photo region it was cut from
    photo = cv2.imread(str(PHOTO))
    np.testing.assert_array_equal(crops[0], photo[320:448, 240:368])
    assert GanimationDataset(gan_root, size=64).crops([0]).shape == (1, 64, 64, 3)
    assert ds.crops(np.array([], dtype=int)).shape == (0, 128, 128, 3)
    with pytest.raises(IndexError, match="out of range for 4 images"):
        ds.crops([4])
    (gan_root / "imgs" / "N_0001.jpg").write_bytes(b"broken")
    with pytest.raises(ValueError, match="cannot read image .*N_0001.jpg"):
        ds.crops([1])


def test_ganimation_split_random(gan_root):
    ds = GanimationDataset(gan_root)
    train, val = ds.split(0.25, seed=3)
    assert train.dtype == val.dtype == np.int64
    assert len(val) == 1 and sorted(train.tolist() + val.tolist()) == [0, 1, 2, 3]
    assert (np.diff(train) > 0).all()
    again = ds.split(0.25, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(again, (train, val)))
    assert {tuple(ds.split(0.5, seed=s)[1]) for s in range(20)} != {tuple(ds.split(0.5, seed=0)[1])}
    assert len(ds.split(0.0)[1]) == 0 and len(ds.split(0.01)[1]) == 1 and len(ds.split(0.99)[0]) == 1
    with pytest.raises(ValueError, match="val_fraction"):
        ds.split(1.5)


def test_ganimation_split_by_ids(gan_root):
    (gan_root / "train_ids.csv").write_text("N_0000.jpg\nN_0002.jpg\nN_0004.jpg\n")  # N_0004 has no AUs
    (gan_root / "test_ids.csv").write_text("N_0003.png\n\n")
    ds = GanimationDataset(gan_root)
    train, val = ds.split(0.9, seed=1)  # the files decide; val_fraction is unused
    assert [ds.names[i] for i in train] == ["N_0000.jpg", "N_0002.jpg"]  # N_0001 is in neither file
    assert [ds.names[i] for i in val] == ["N_0003.png"]
    (gan_root / "train_ids.csv").unlink()
    (gan_root / "test_ids.csv").write_text("N_0001\n")  # a stem matches too
    train, val = ds.split()
    assert val.tolist() == [1] and train.tolist() == [0, 2, 3]


def test_ganimation_errors(tmp_path, gan_root):
    with pytest.raises(FileNotFoundError, match="imgs"):
        GanimationDataset(tmp_path / "empty")
    (tmp_path / "noaus" / "imgs").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="aus_openface.pkl"):
        GanimationDataset(tmp_path / "noaus")
    with pytest.raises(ValueError, match="size"):
        GanimationDataset(gan_root, size=0)
    cases = {
        "list": ([np.zeros(17)], "expected a pickled dict"),
        "short": ({"N_0000": np.zeros(16)}, "'N_0000' must have 17 values"),
        "nan": ({"N_0000": np.full(17, np.nan)}, "not finite"),
        "nokey": ({"other": np.zeros(17)}, "no image of .* has AUs"),
        "intkey": ({3: np.zeros(17)}, "keys must be image names"),
    }
    for case, (obj, msg) in cases.items():
        root = tmp_path / case
        _write_ganimation(root, obj)
        with pytest.raises(ValueError, match=msg):
            GanimationDataset(root)
    (tmp_path / "garbage.pkl").write_bytes(b"\x80\x04garbage")
    with pytest.raises(ValueError, match="garbage.pkl"):
        load_au_pickle(tmp_path / "garbage.pkl")


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_au_pickle_protocols(tmp_path, protocol):
    """numpy arrays of several dtypes, numpy scalars and lists load under every protocol."""
    obj = {"a": np.arange(17, dtype=np.float64) / 4, "b": np.ones(17, np.float32), "c": [np.float32(2.5)] * 17}
    with open(tmp_path / "aus.pkl", "wb") as f:
        pickle.dump(obj, f, protocol=protocol)
    got = load_au_pickle(tmp_path / "aus.pkl")
    assert set(got) == {"a", "b", "c"} and all(v.dtype == np.float32 for v in got.values())
    np.testing.assert_array_equal(got["a"], np.clip(np.arange(17) / 4, 0, 5).astype(np.float32))
    np.testing.assert_array_equal(got["c"], np.full(17, 2.5, np.float32))


class _Evil:
    """Unpickling this would run ``func(arg)``."""

    def __init__(self, func, arg):
        self.func, self.arg = func, arg

    def __reduce__(self):
        return self.func, (self.arg,)


@pytest.mark.parametrize("kind", ["os.system", "builtins.eval", "nested"])
def test_malicious_au_pickle_is_refused_and_not_run(tmp_path, kind):
    marker = tmp_path / "pwned"
    if kind == "os.system":
        payload = _Evil(os.system, f"touch {marker}")
    elif kind == "builtins.eval":
        payload = _Evil(eval, f"open({str(marker)!r}, 'w').close()")
    else:  # hidden inside an otherwise valid AU dict
        payload = {"N_0000": np.zeros(17), "N_0001": _Evil(os.system, f"touch {marker}")}
    (tmp_path / "imgs").mkdir()
    cv2.imwrite(str(tmp_path / "imgs" / "N_0000.jpg"), np.zeros((16, 16, 3), np.uint8))
    with open(tmp_path / "aus_openface.pkl", "wb") as f:
        pickle.dump(payload, f)
    with pytest.raises(ValueError, match=r"aus_openface\.pkl: refusing to unpickle (posix|os|builtins)\.(system|eval)"):
        GanimationDataset(tmp_path)
    assert not marker.exists()


def test_split_by_the_manifest_identity_column(tmp_path):
    from training.data import dataset_identities, manifest_identities

    faces = tmp_path / "faces"
    (faces / "videos").mkdir(parents=True)
    rows = ["file,kind,identity", "videos/lp_d0.mp4,video,lp_d0", "videos/lpf_sideye2.mp4,video,lp_d0",
            "videos/eamm_fear.mp4,video,eamm_subject", "videos/eamm_surprised.mp4,video,eamm_subject",
            "videos/lp_d3.mp4,video,lp_d3", "images/rose.jpg,image,rose", "videos/other.mp4,video,"]
    (faces / "MANIFEST.csv").write_text("\n".join(rows) + "\n")
    ids = manifest_identities(faces)
    assert ids == {"lp_d0": "lp_d0", "lpf_sideye2": "lp_d0", "eamm_fear": "eamm_subject",
                   "eamm_surprised": "eamm_subject", "lp_d3": "lp_d3", "img_rose": "rose"}
    names = ["lp_d0", "lpf_sideye2", "eamm_fear", "eamm_surprised", "lp_d3", "other"]
    for seed in range(6):
        train, val = split_videos(names, 0.4, seed, ids)
        # one person's files (different file names) never fall on both sides
        for group in (("lp_d0", "lpf_sideye2"), ("eamm_fear", "eamm_surprised")):
            assert set(group) <= set(train) or set(group) <= set(val), (seed, train, val)
    assert manifest_identities(tmp_path / "nowhere") == {}
    data = tmp_path / "data"
    data.mkdir()
    (data / "manifest.json").write_text(json.dumps({"videos": {"lp_d0": {"source": str(faces / "videos" / "lp_d0.mp4")}}}))
    assert dataset_identities(data) == ids
