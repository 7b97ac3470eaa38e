"""Training of the mesh path's models (training.motion, training.texture) on a small synthetic
dataset cache: the losses' semantics, learning, exact resumption, and the CLI's refusals."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fastwarp.au import AU_INDEX, AU_MAX, NUM_AUS
from fastwarp.face import estimate_aus_batch
from fastwarp.face.mesh import mesh_template
from training.motion import MotionTrainConfig, au_consistency, train_motion
from training.texture import TextureTrainConfig, train_texture

ROOT = Path(__file__).resolve().parents[1]


def _bumps(rng, lm, count=4, radius=0.25, scale=0.04):
    """A smooth random displacement of face ``lm`` (IOD units): Gaussian bumps."""
    d = np.zeros_like(lm)
    for _ in range(count):
        c = lm[rng.integers(len(lm))]
        w = np.exp(-((lm - c) ** 2).sum(-1) / (2 * radius ** 2))[:, None]
        d += w * rng.normal(0, scale, 2)
    return d


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """Four 'videos' of 12 frames (two people each in two files), 32 px crops."""
    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("cache")
    t = mesh_template().astype(np.float64)
    face = np.concatenate([t, np.repeat(t[[33, 133, 362, 263]].mean(0, keepdims=True), 10, 0)])
    manifest = {"videos": {}}
    for v in range(4):
        frames = face[None] + np.stack([_bumps(rng, face) for _ in range(12)])
        lm = (frames * 12.0 + np.array([16.0, 12.0])).astype(np.float32)  # IOD 12 px in a 32 px crop
        crops = rng.integers(0, 255, (12, 32, 32, 3), dtype=np.uint8)
        name = f"person{v // 2}_clip{v}"
        np.savez(root / f"{name}.npz", crops=crops, aus=estimate_aus_batch(lm), landmarks=lm,
                 pose=np.zeros((12, 2), np.float32), frame_idx=np.arange(12, dtype=np.int32))
        manifest["videos"][name] = {"frames": 12, "source": f"videos/{name}.mp4", "kind": "video"}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def _motion_cfg(cache, out, **kw):
    base = dict(data=str(cache), out=str(out), steps=40, batch=48, components=6, hidden=16, every=20,
                val_fraction=0.3, frontal=1.0)
    base.update(kw)
    return MotionTrainConfig(**base)


def test_au_consistency_is_one_sided_at_the_ends():
    raw = torch.tensor([[-1.0, 0.5, 6.0, 4.0, 2.0]])
    tgt = torch.tensor([[0.0, 0.0, AU_MAX, AU_MAX, 3.0]])
    assert au_consistency(raw, tgt).tolist() == [[0.0, 0.5, 0.0, 1.0, 1.0]]


def test_motion_training_learns_and_resumes_bit_for_bit(cache, tmp_path):
    whole = train_motion(_motion_cfg(cache, tmp_path / "a"), progress=False)
    v = whole["validation"]
    assert v["pair_au_err"] < v["pair_au_err_identity"]  # the AU targets are reached better than by not moving
    assert set(v["per_au"]) and all(0.0 <= r["monotonic"] <= 1.0 for r in v["per_au"].values())
    assert train_motion(_motion_cfg(cache, tmp_path / "b"), progress=False, stop_at=25) is None
    train_motion(_motion_cfg(cache, tmp_path / "b"), progress=False, resume=True)
    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)["model"]
    for k in a:
        assert torch.equal(a[k], b[k]), k
    from fastwarp.models.landmark_motion import LandmarkMotion

    model = LandmarkMotion.load(tmp_path / "a" / "motion")
    cur = torch.zeros(1, NUM_AUS)
    tgt = cur.clone()
    tgt[0, AU_INDEX["AU25"]] = 3.0
    lm = torch.from_numpy(np.load(cache / "person0_clip0.npz")["landmarks"][:1])
    assert torch.equal(model(lm, cur, cur), torch.zeros(1, 478, 2))
    assert model(lm, cur, tgt).abs().amax() > 0


def test_motion_cli_refuses_to_overwrite_and_to_resume_nothing(cache, tmp_path):
    train_motion(_motion_cfg(cache, tmp_path / "run", steps=2, every=1), progress=False)
    cmd = [sys.executable, "-m", "training.motion", "--data", str(cache), "--out", str(tmp_path / "run"),
           "--steps", "2", "--no-progress"]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2 and "already has a checkpoint" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = subprocess.run(cmd[:6] + [str(tmp_path / "none"), "--resume"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2 and "no checkpoint" in r.stderr


def test_texture_training_resumes_bit_for_bit(cache, tmp_path):
    cfg = dict(data=str(cache), steps=6, batch=4, width=4, res_blocks=1, size=16, every=3, val_fraction=0.3)
    whole = train_texture(TextureTrainConfig(out=str(tmp_path / "a"), **cfg), progress=False)
    assert np.isfinite(whole["validation"]["full_l1"])
    assert train_texture(TextureTrainConfig(out=str(tmp_path / "b"), **cfg), progress=False, stop_at=4) is None
    train_texture(TextureTrainConfig(out=str(tmp_path / "b"), **cfg), progress=False, resume=True)
    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)["model"]
    for k in a:
        assert torch.equal(a[k], b[k]), k
