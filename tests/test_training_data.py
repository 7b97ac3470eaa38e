"""training.data: identity split, dataset preparation (real videos), pairs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from training.data import identity_key, load_dataset, make_pairs, prepare_dataset, split_videos

FACES = Path(os.environ.get("FASTWARP_FACES_DIR", Path(__file__).resolve().parents[1].parent / "shared" / "data" / "faces"))
needs_faces = pytest.mark.skipif(not (FACES / "videos").is_dir(), reason=f"real face data not found at {FACES}")

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
