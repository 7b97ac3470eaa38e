"""Training of :class:`fastwarp.models.LandmarkMotion`, self-supervised, in landmark space
(docs/design.md, "Motion from landmarks"; issue 12).

Data: the landmarks of the dataset cache (``python -m training.data``), videos only (the
photos stay held out for the per-edit evaluation), split by person (the ``identity`` column
of the faces' MANIFEST.csv). Everything is in the eye-line frame (IOD units).

The fixed parts of the model come from the training videos: the motion basis is the
principal components of each frame's landmarks minus its video's mean (near-frontal frames,
so head turns do not enter), the shape code the principal components of the faces.

Each batch mixes three kinds of targets for a source frame (GANimation's unpaired targets
plus sweeps, so every AU learns its whole range, beside real pairs):

- pairs: another frame of the same video (head pose within ``max_pose_diff``), all AUs;
- sweeps: one visible AU (half the time two or three) set to levels drawn from 0..5, the
  others kept (then :func:`fastwarp.face.aus.consistent_targets`, as the editor does);
- unpaired: another training face's AUs plus Gaussian noise (made consistent too).

Losses on the moved landmarks ``q + d``:

- AU consistency (the exact regressor, :func:`fastwarp.face.aus_torch.estimate_aus_torch`):
  |AU(q + d) - t| per visible AU, plus ``w_raw`` times the same on the raw (unclipped)
  read-out, one-sided at the ends of the range (a target 0 only asks the raw reading not to
  exceed 0, a target 5 not to fall short of 5), which gives a gradient where a clip holds
  the exact estimate flat. Where the target is asked for: every AU of a pair; of a sweep,
  the swept AUs with weight 1, the AUs that share their landmarks (:data:`COUPLED`) not at
  all, the others with ``w_keep``; of an unpaired target, every visible AU with weight 0.5;
- balance (``w_balance``; generated targets only): each of the two feature scores of a
  composite AU (``COMPOSITE_AUS``: AU12 corner raise and mouth widening, AU04, AU26) asked for
  the AU's target, as the calibration on real faces reads them together;
- real motion (pairs only): mean |d - (q_target - q_source)| over the landmarks (``w_data``);
- rigidity: mean |d| on the nose ridge, the eye corners and the upper face oval (``w_rigid``);
- an L2 on the coefficients (``w_reg``; they are in units of the real motion's standard
  deviations, so this prefers the motions real faces make most).

CLI: ``python -m training.motion --data .cache/dataset128 --out runs/motion [--steps N] [--resume]``
writes checkpoints (atomically, every ``--every`` steps, resumed bit for bit), the final
model (``<out>/motion.safetensors/.json``) and ``<out>/summary.json`` with the held-out
metrics of :func:`evaluate_motion`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from fastwarp.au import AU_INDEX, AU_MAX, NUM_AUS
from fastwarp.face import VISIBLE_AUS
from fastwarp.face.align import _ALIGN_POINTS
from fastwarp.face.aus import consistent_targets, eye_line_frame
from fastwarp.face.aus_torch import COMPOSITE_AUS, estimate_aus_torch, feature_scores
from fastwarp.face.landmarks import FACE_OVAL
from fastwarp.models.landmark_motion import LandmarkMotion, MotionConfig

from .small_run import cli, finish, open_run, run_loop, video_split

__all__ = ["COUPLED", "MotionData", "MotionTrainConfig", "evaluate_motion", "main", "motion_losses", "train_motion"]

_VISIBLE = torch.tensor([AU_INDEX[a] for a in VISIBLE_AUS])

#: AUs read from the same landmarks: moving one moves the others' readings, so a sweep of
#: one asks nothing of the rest of its groups.
COUPLED: tuple[tuple[str, ...], ...] = (
    ("AU01", "AU02", "AU04"),
    ("AU04", "AU05", "AU07"),  # lowered brows push the upper lids down and tighten the lower ones
    ("AU05", "AU45", "AU06", "AU07"),
    ("AU06", "AU07", "AU12", "AU15", "AU20"),
    ("AU10", "AU12", "AU15", "AU17", "AU20", "AU23", "AU25", "AU26"),
)


@dataclass
class MotionTrainConfig:
    data: str = ".cache/dataset128"
    out: str = "runs/motion"
    steps: int = 8000
    batch: int = 256
    lr: float = 2e-3
    seed: int = 0
    val_fraction: float = 0.15
    max_pose_diff: float = 0.08
    frontal: float = 0.2          # frames with |yaw| or |pitch| above this are not used
    au_noise: float = 0.3
    w_keep: float = 0.3
    w_raw: float = 0.1
    w_balance: float = 1.0
    w_data: float = 5.0
    w_rigid: float = 30.0
    w_reg: float = 0.01
    every: int = 500
    components: int = 64          # K, principal components of real motion
    hidden: int = 256


def _coupling_matrix() -> torch.Tensor:
    m = torch.zeros(NUM_AUS, NUM_AUS, dtype=torch.bool)
    for group in COUPLED:
        for a in group:
            for b in group:
                m[AU_INDEX[a], AU_INDEX[b]] = True
    return m


def rigid_points(q_template: np.ndarray) -> list[int]:
    """Landmarks that no expression moves (in the eye-line frame): the alignment points
    (eye corners, nose ridge) and the face oval above the mouth corners."""
    upper_oval = [i for i in FACE_OVAL if q_template[i, 1] < 0.55]
    return sorted(set(_ALIGN_POINTS) | set(upper_oval))


class MotionData:
    """Eye-line-frame landmarks and AUs of the training or validation videos (near-frontal
    frames), with the per-video index lists the samplers draw from."""

    def __init__(self, dataset: dict, videos: list[str], frontal: float) -> None:
        qs, aus, pose, vid = [], [], [], []
        for i, name in enumerate(videos):
            d = dataset[name]
            keep = (np.abs(d["pose"]) <= frontal).all(axis=1)
            if keep.sum() < 2:
                continue
            qs.append(eye_line_frame(d["landmarks"][keep]).astype(np.float32))
            aus.append(d["aus"][keep])
            pose.append(d["pose"][keep])
            vid.append(np.full(int(keep.sum()), i))
        self.q = torch.from_numpy(np.concatenate(qs))
        self.aus = torch.from_numpy(np.concatenate(aus)).float()
        self.pose = torch.from_numpy(np.concatenate(pose)).float()
        self.video = torch.from_numpy(np.concatenate(vid))
        self.videos = videos

    def __len__(self) -> int:
        return len(self.q)

    def pca(self, components: int, *, per_video: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(mean [478, 2], basis [K, 478, 2], std [K])``: principal components of the
        landmarks (``per_video``: of each frame minus its video's mean)."""
        x = self.q.reshape(len(self.q), -1).double()
        if per_video:
            for v in self.video.unique():
                sel = self.video == v
                x[sel] -= x[sel].mean(0)
        mean = x.mean(0)
        _, s, vt = torch.linalg.svd(x - mean, full_matrices=False)
        std = s[:components] / math.sqrt(len(x) - 1)
        return (mean.reshape(-1, 2).float(), vt[:components].reshape(components, -1, 2).float(), std.float())

    def pairs(self, n: int, g: torch.Generator, max_pose_diff: float) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` (source, target) frame indices of one video each, head poses within
        ``max_pose_diff`` (rejection sampling)."""
        src, tgt = [], []
        while len(src) < n:
            a = torch.randint(len(self), (4 * n,), generator=g)
            b = torch.randint(len(self), (4 * n,), generator=g)
            ok = (self.video[a] == self.video[b]) & (a != b)
            ok &= ((self.pose[a] - self.pose[b]).abs() <= max_pose_diff).all(1)
            src.extend(a[ok].tolist())
            tgt.extend(b[ok].tolist())
        return torch.tensor(src[:n]), torch.tensor(tgt[:n])


def sample_batch(data: MotionData, cfg: MotionTrainConfig, g: torch.Generator) -> dict[str, torch.Tensor]:
    """One batch: a third each of pairs, sweeps and unpaired targets (see the module
    docstring). Returns ``q`` [B, 478, 2], ``current``/``target`` [B, 17], ``weight`` [B, 17]
    (the AU-consistency weight of each AU), ``motion`` [B, 478, 2] and ``paired`` [B]."""
    n = cfg.batch // 3
    s_pair, t_pair = data.pairs(n, g, cfg.max_pose_diff)
    s_rest = torch.randint(len(data), (cfg.batch - n,), generator=g)
    src = torch.cat([s_pair, s_rest])
    current = data.aus[src].clone()
    target = current.clone()
    weight = torch.zeros(cfg.batch, NUM_AUS)
    visible = torch.zeros(NUM_AUS, dtype=torch.bool)
    visible[_VISIBLE] = True
    # pairs
    target[:n] = data.aus[t_pair]
    weight[:n] = visible.float()
    # sweeps: one visible AU, or (half of them) two or three, set to levels in 0..5
    m = (cfg.batch - n) // 2
    sw = slice(n, n + m)
    coupling = _coupling_matrix()
    w = torch.full((m, NUM_AUS), cfg.w_keep) * visible
    swept = torch.zeros(m, NUM_AUS, dtype=torch.bool)
    count = torch.where(torch.rand(m, generator=g) < 0.5, 1, torch.randint(2, 4, (m,), generator=g))
    for k in range(3):
        au = _VISIBLE[torch.randint(len(_VISIBLE), (m,), generator=g)]
        level = torch.rand(m, generator=g) * AU_MAX
        level = torch.where(torch.rand(m, generator=g) < 0.3, level.round(), level)  # the ends 0 and 5 often
        on = count > k
        rows = torch.arange(n, n + m)[on]
        target[rows, au[on]] = level[on]
        w[on] = torch.where(coupling[au[on]], 0.0, w[on])
        swept[torch.arange(m)[on], au[on]] = True
    w[swept] = 1.0
    weight[sw] = w
    target[sw] = consistent_targets(current[sw], target[sw])
    # unpaired
    up = slice(n + m, cfg.batch)
    k = cfg.batch - n - m
    other = data.aus[torch.randint(len(data), (k,), generator=g)]
    noisy = (other + cfg.au_noise * torch.randn(k, NUM_AUS, generator=g)).clamp(0.0, AU_MAX) * visible
    target[up] = consistent_targets(current[up], noisy)
    weight[up] = 0.5 * visible.float()
    motion = torch.zeros(cfg.batch, *data.q.shape[1:])
    motion[:n] = data.q[t_pair] - data.q[s_pair]
    paired = torch.zeros(cfg.batch, dtype=torch.bool)
    paired[:n] = True
    return {"q": data.q[src], "current": current, "target": target, "weight": weight, "motion": motion,
            "paired": paired}


def au_consistency(moved_raw: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-AU error ``[B, 17]`` of raw read-outs against targets, one-sided at 0 and 5
    (what the clipped estimator reads as the target)."""
    err = (moved_raw - target).abs()
    low = torch.relu(moved_raw)
    high = torch.relu(AU_MAX - moved_raw)
    return torch.where(target <= 1e-3, low, torch.where(target >= AU_MAX - 1e-3, high, err))


def motion_losses(model: LandmarkMotion, batch: dict, cfg: MotionTrainConfig,
                  rigid: list[int]) -> dict[str, torch.Tensor]:
    """The training losses of one batch (see the module docstring); ``total`` is their
    weighted sum."""
    q, cur, tgt = batch["q"], batch["current"], batch["target"]
    z = model.coefficients(q, cur, tgt)
    d = torch.einsum("nk,kvd->nvd", z * model.motion_scale, model.motion_basis)
    moved = q + d
    w = batch["weight"]
    norm = w.sum().clamp_min(1.0)
    # The exact (clipped) estimator decides; the raw read-out adds a gradient where a clip
    # holds the estimate flat (a feature below "neutral"), weighted low so that it cannot
    # be met by overshooting one clipped score of a two-score AU.
    exact = ((estimate_aus_torch(moved) - tgt).abs() * w).sum() / norm
    helper = (au_consistency(estimate_aus_torch(moved, raw=True), tgt) * w).sum() / norm
    au = exact + cfg.w_raw * helper
    # The two feature scores of a composite AU (COMPOSITE_AUS) each asked for its target too,
    # on the generated targets (sweeps, unpaired; real pairs keep their own mix): the
    # estimator calibrated both on real faces, so a smile widens as it raises the corners.
    balance = moved.new_zeros(())
    if cfg.w_balance > 0:
        scores = feature_scores(moved, raw=True)
        gen = (~batch["paired"]).to(w.dtype)
        for name, parts in COMPOSITE_AUS.items():
            i = AU_INDEX[name]
            wi = w[:, i] * gen
            for part in parts:
                balance = balance + (au_consistency(scores[part], tgt[:, i]) * wi).sum()
        balance = balance / (2 * norm)
    paired = batch["paired"]
    data = (d[paired] - batch["motion"][paired]).norm(dim=-1).mean() if paired.any() else d.sum() * 0
    rig = d[:, rigid].norm(dim=-1).mean()
    reg = z.pow(2).mean()
    total = au + cfg.w_balance * balance + cfg.w_data * data + cfg.w_rigid * rig + cfg.w_reg * reg
    return {"total": total, "au": au, "balance": balance, "data": data, "rigid": rig, "reg": reg}


@torch.no_grad()
def evaluate_motion(model: LandmarkMotion, data: MotionData, *, pairs: int = 2000, faces: int = 200,
                    seed: int = 0) -> dict:
    """Held-out metrics of a landmark motion model (landmark space, exact estimator):

    - ``pair_nme`` / ``pair_nme_identity``: mean landmark distance (IOD units) between the
      moved source and the real target frame, and between source and target;
      ``pair_au_err`` / ``pair_au_err_identity``: mean |AU| error over the visible AUs;
    - per visible AU, a sweep of levels 0..5 on ``faces`` frames: ``sweep_err`` (mean
      |reading - level|), ``pearson`` (median over faces of Pearson r between level and
      reading; faces whose reading does not vary are counted as r = 0) and ``monotonic``
      (fraction of faces whose reading never falls as the level rises, 0.05 AU tolerance).
    """
    g = torch.Generator().manual_seed(seed)
    s, t = data.pairs(pairs, g, 0.08)
    q = data.q[s]
    d = model.displacement_iod(q, data.aus[s], data.aus[t])
    vis = _VISIBLE
    moved = estimate_aus_torch(q + d)
    out = {
        "pair_nme": float((q + d - data.q[t]).norm(dim=-1).mean()),
        "pair_nme_identity": float((q - data.q[t]).norm(dim=-1).mean()),
        "pair_au_err": float((moved - data.aus[t])[:, vis].abs().mean()),
        "pair_au_err_identity": float((data.aus[s] - data.aus[t])[:, vis].abs().mean()),
        "per_au": {},
    }
    idx = torch.randperm(len(data), generator=g)[:faces]
    levels = torch.arange(0, 6, dtype=torch.float32)
    qf, cf = data.q[idx], data.aus[idx]
    for name in VISIBLE_AUS:
        a = AU_INDEX[name]
        readings = []
        for lv in levels:
            tgt = cf.clone()
            tgt[:, a] = lv
            tgt = consistent_targets(cf, tgt)  # as the editor asks
            readings.append(estimate_aus_torch(qf + model.displacement_iod(qf, cf, tgt))[:, a])
        r = torch.stack(readings, 1)  # [F, 6]
        x = levels - levels.mean()
        rc = r - r.mean(1, keepdim=True)
        den = rc.norm(dim=1) * x.norm()
        pear = torch.where(den > 1e-6, (rc * x).sum(1) / den.clamp_min(1e-12), torch.zeros_like(den))
        mono = (r[:, 1:] - r[:, :-1] >= -0.05).all(1).float()
        out["per_au"][name] = {"sweep_err": float((r - levels).abs().mean()), "pearson": float(pear.median()),
                               "monotonic": float(mono.mean())}
    return out


def train_motion(cfg: MotionTrainConfig, *, resume: bool = False, progress: bool = True,
                 stop_at: int | None = None) -> dict | None:
    """Train (or resume) a landmark motion model into ``cfg.out`` (:mod:`training.small_run`:
    ``stop_at`` interrupts it, returning None; ValueError for a run folder it may not use);
    returns the summary."""
    out = Path(cfg.out)
    ckpt = open_run(out, resume)
    dataset, train_v, val_v = video_split(cfg.data, cfg.val_fraction, cfg.seed)
    train, val = MotionData(dataset, train_v, cfg.frontal), MotionData(dataset, val_v, cfg.frontal)
    torch.manual_seed(cfg.seed)
    mcfg = MotionConfig(motion_components=cfg.components, hidden=cfg.hidden)
    shape_mean, shape_basis, _ = train.pca(mcfg.shape_components, per_video=False)
    _, motion_basis, motion_std = train.pca(mcfg.motion_components, per_video=True)
    model = LandmarkMotion(mcfg, motion_basis=motion_basis, motion_scale=motion_std, shape_mean=shape_mean,
                           shape_basis=shape_basis)
    rigid = rigid_points(shape_mean.numpy())
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    g = torch.Generator().manual_seed(cfg.seed)
    ran = run_loop(ckpt, model, opt, g, steps=cfg.steps, lr=cfg.lr, every=cfg.every, desc="motion",
                   step_fn=lambda: motion_losses(model, sample_batch(train, cfg, g), cfg, rigid), resume=resume,
                   progress=progress, stop_at=stop_at, log_every=50)
    if ran is None:
        return None
    history, seconds = ran
    extra = {"trained_by": "python -m training.motion", "config": asdict(cfg), "train_videos": train_v,
             "validation_videos": val_v, "train_frames": len(train), "validation_frames": len(val)}
    model.eval()
    return finish(out, model, "motion", extra, {
        "config": asdict(cfg), "seconds": seconds, "validation": evaluate_motion(model, val),
        "train_videos": len(train_v), "validation_videos": val_v, "history": history[-5:]})


def _report(summary: dict) -> None:
    v = summary["validation"]
    print(f"held out: NME {v['pair_nme']:.4f} (identity {v['pair_nme_identity']:.4f}), "
          f"AU error {v['pair_au_err']:.3f} (identity {v['pair_au_err_identity']:.3f})")
    for name, r in v["per_au"].items():
        print(f"  {name}: sweep error {r['sweep_err']:.2f}, Pearson r {r['pearson']:.3f}, "
              f"monotonic {r['monotonic']:.2f}")


def main(argv=None) -> None:
    cli(argv, "python -m training.motion", __doc__, MotionTrainConfig, train_motion, _report)


if __name__ == "__main__":
    main()
