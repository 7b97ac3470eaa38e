"""Training of :class:`fastwarp.models.mesh_texture.MeshTexture`: texture where motion cannot
reach (docs/design.md, "Motion from landmarks"; issue 12).

Real video pairs of the training identities (the dataset cache of ``python -m training.data``,
split by the MANIFEST's ``identity`` column): the source crop is warped by the mesh flow of
the REAL target landmarks (:func:`fastwarp.ops.mesh_flow` with displacement = target - source
landmarks), so what is left between the warped source and the real target frame is exactly
what motion cannot make: a mouth cavity and teeth where the lips part, lid and lashes where
an eye closes. Half the pairs are drawn among those where the lips part or an eye closes.
The loss is L1 against the target, weighted by the opening map (the mouth's gap and the lids'
triangles that grew, the eyes' that shrank: the texture reaches nothing else).

CLI: ``python -m training.texture --data .cache/dataset128 --out runs/texture [--steps N] [--resume]``;
writes ``<out>/texture.safetensors/.json``, ``<out>/summary.json`` (held-out L1 and PSNR in
the opened regions, warp-only against warp + texture) and checkpoints (atomically, resumed
bit for bit).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from fastwarp import ops
from fastwarp.face.aus import geometric_features
from fastwarp.face.mesh import MESH_POINTS, mesh_triangles, mesh_vertices, texture_regions
from fastwarp.models.mesh_texture import MeshTexture, TextureConfig, opening_map

from .small_run import cli, finish, open_run, run_loop, video_split

__all__ = ["TextureTrainConfig", "PairData", "warp_pairs", "train_texture", "evaluate_texture", "main"]


@dataclass
class TextureTrainConfig:
    data: str = ".cache/dataset128"
    out: str = "runs/texture"
    steps: int = 3000
    batch: int = 12
    lr: float = 1e-3
    seed: int = 0
    val_fraction: float = 0.15
    max_pose_diff: float = 0.08
    width: int = 16
    res_blocks: int = 2
    size: int = 64                # the texture's grid (the crops are area-downsampled to it)
    every: int = 250


class PairData:
    """Crops (RGB in [-1, 1]), landmarks (crop pixels) and AUs of the frames of some videos,
    with the same-video, same-pose pairs the sampler draws from, split into all pairs and
    "opening" pairs (the inner-lip gap grows by 0.08 IOD or more, or the eye aspect ratio
    falls by 0.1 or more)."""

    def __init__(self, dataset: dict, videos: list[str], max_pose_diff: float) -> None:
        crops, lms, aus, pairs, opening = [], [], [], [], []
        base = 0
        for name in videos:
            d = dataset[name]
            n = len(d["crops"])
            if n < 2:
                continue
            crops.append(d["crops"][..., ::-1])
            lms.append(d["landmarks"])
            aus.append(d["aus"])
            f = geometric_features(d["landmarks"])
            pose = d["pose"]
            ok = (np.abs(pose[:, None] - pose[None]) <= max_pose_diff).all(-1) & ~np.eye(n, dtype=bool)
            opens = (f["gap"][None] - f["gap"][:, None] >= 0.08) | (f["ear"][:, None] - f["ear"][None] >= 0.1)
            s, t = np.nonzero(ok)
            pairs.append(np.stack([s, t], 1) + base)
            opening.append(opens[s, t])
            base += n
        self.crops = torch.from_numpy(np.ascontiguousarray(np.concatenate(crops))).permute(0, 3, 1, 2)
        self.landmarks = torch.from_numpy(np.concatenate(lms)).float()
        self.aus = torch.from_numpy(np.concatenate(aus)).float()
        self.pairs = torch.from_numpy(np.concatenate(pairs)).long()
        self.opening_pairs = self.pairs[torch.from_numpy(np.concatenate(opening))]

    def sample(self, n: int, g: torch.Generator) -> torch.Tensor:
        """``[n, 2]`` (source, target) rows: half opening pairs, half any pairs."""
        k = n // 2 if len(self.opening_pairs) else 0
        a = self.opening_pairs[torch.randint(len(self.opening_pairs), (k,), generator=g)] if k else self.pairs[:0]
        b = self.pairs[torch.randint(len(self.pairs), (n - k,), generator=g)]
        return torch.cat([a, b])


def warp_pairs(data: PairData, rows: torch.Tensor, size: int = 64) -> dict[str, torch.Tensor]:
    """The mesh-warped sources of pairs ``rows`` ``[B, 2]`` on a ``size`` grid (the crops
    area-downsampled, a whole factor of their side): ``source``, ``target`` (RGB [-1, 1]),
    ``warped``, ``opening`` ``[B, 1, size, size]``, ``current``/``target_aus`` ``[B, 17]``."""
    s, t = rows[:, 0], rows[:, 1]
    factor = data.crops.shape[-1] // size
    src = F.avg_pool2d(data.crops[s].float() / 127.5 - 1.0, factor)
    tgt = F.avg_pool2d(data.crops[t].float() / 127.5 - 1.0, factor)
    lm_s = (data.landmarks[s] + 0.5) / factor - 0.5
    lm_t = (data.landmarks[t] + 0.5) / factor - 0.5
    verts = mesh_vertices(lm_s)
    disp = torch.zeros_like(verts)
    disp[:, :MESH_POINTS] = lm_t[:, :MESH_POINTS] - lm_s[:, :MESH_POINTS]
    tri = torch.from_numpy(np.array(mesh_triangles()))
    flow, index = ops.mesh_flow(verts, disp, tri, (size, size))
    warped = ops.warp(src, flow)
    opening = opening_map(verts, disp, tri, index, *(torch.from_numpy(np.array(r)) for r in texture_regions()))
    return {"source": src, "target": tgt, "warped": warped, "opening": opening,
            "current": data.aus[s], "target_aus": data.aus[t]}


def _psnr(a: torch.Tensor, b: torch.Tensor, w: torch.Tensor) -> float:
    mse = (((a - b) * 127.5) ** 2 * w).sum() / (w.sum() * a.shape[1]).clamp_min(1e-8)
    return float(10 * torch.log10(255.0 ** 2 / mse.clamp_min(1e-10)))


@torch.no_grad()
def evaluate_texture(model: MeshTexture, data: PairData, pairs: int = 96, seed: int = 0, size: int = 64) -> dict:
    """Held-out opening pairs (any pairs where there are none): L1 (RGB [-1, 1] units) and
    PSNR (dB, uint8 scale) inside the opened regions (weighted by the opening map), warp-only
    against warp + texture."""
    g = torch.Generator().manual_seed(seed)
    pool = data.opening_pairs if len(data.opening_pairs) else data.pairs  # (a tiny split may have none)
    rows = pool[torch.randperm(len(pool), generator=g)[:pairs]]
    sums = {"warp_l1": 0.0, "full_l1": 0.0}
    outs, warps, tgts, ws = [], [], [], []
    for chunk in rows.split(16):
        b = warp_pairs(data, chunk, size)
        tex, mask = model(b["warped"], b["opening"], b["current"], b["target_aus"])
        out = mask * b["warped"] + (1 - mask) * tex
        outs.append(out), warps.append(b["warped"]), tgts.append(b["target"]), ws.append(b["opening"])
    out, warped, tgt, w = (torch.cat(x) for x in (outs, warps, tgts, ws))
    norm = (w.sum() * 3).clamp_min(1e-8)
    sums["warp_l1"] = float(((warped - tgt).abs() * w).sum() / norm)
    sums["full_l1"] = float(((out - tgt).abs() * w).sum() / norm)
    sums["warp_psnr"] = _psnr(warped, tgt, w)
    sums["full_psnr"] = _psnr(out, tgt, w)
    sums["pairs"] = len(rows)
    return sums


def texture_loss(model: MeshTexture, batch: dict) -> dict[str, torch.Tensor]:
    """L1 of warp + texture against the real target, weighted by the opening map."""
    tex, mask = model(batch["warped"], batch["opening"], batch["current"], batch["target_aus"])
    out = mask * batch["warped"] + (1 - mask) * tex
    w = batch["opening"]
    return {"total": ((out - batch["target"]).abs() * w).sum() / (w.sum() * 3).clamp_min(1.0)}


def train_texture(cfg: TextureTrainConfig, *, resume: bool = False, progress: bool = True,
                  stop_at: int | None = None) -> dict | None:
    """Train (or resume) a mesh texture model into ``cfg.out`` (as
    :func:`training.motion.train_motion`); returns the summary."""
    out = Path(cfg.out)
    ckpt = open_run(out, resume)
    dataset, train_v, val_v = video_split(cfg.data, cfg.val_fraction, cfg.seed)
    train, val = PairData(dataset, train_v, cfg.max_pose_diff), PairData(dataset, val_v, cfg.max_pose_diff)
    torch.manual_seed(cfg.seed)
    model = MeshTexture(TextureConfig(cfg.width, cfg.res_blocks, cfg.size))
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(0.5, 0.999))
    g = torch.Generator().manual_seed(cfg.seed)
    ran = run_loop(ckpt, model, opt, g, steps=cfg.steps, lr=cfg.lr, every=cfg.every, desc="texture",
                   step_fn=lambda: texture_loss(model, warp_pairs(train, train.sample(cfg.batch, g), cfg.size)),
                   resume=resume, progress=progress, stop_at=stop_at, log_every=25)
    if ran is None:
        return None
    history, seconds = ran
    model.eval()
    extra = {"trained_by": "python -m training.texture", "config": asdict(cfg), "train_videos": train_v,
             "validation_videos": val_v}
    return finish(out, model, "texture", extra, {
        "config": asdict(cfg), "seconds": seconds, "validation": evaluate_texture(model, val, size=cfg.size),
        "validation_videos": val_v, "history": history[-5:]})


def _report(summary: dict) -> None:
    v = summary["validation"]
    print(f"held-out opened regions ({v['pairs']} pairs): warp only L1 {v['warp_l1']:.4f} "
          f"PSNR {v['warp_psnr']:.2f} dB; warp + texture L1 {v['full_l1']:.4f} PSNR {v['full_psnr']:.2f} dB")


def main(argv=None) -> None:
    cli(argv, "python -m training.texture", __doc__, TextureTrainConfig, train_texture, _report)


if __name__ == "__main__":
    main()
