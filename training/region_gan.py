"""Adversarial training of :class:`fastwarp.models.region_texture.RegionTexture` on real
region pairs (issue 19).

Pairs: two regions of one eye (or the mouth) from one video and one landmark track whose head
poses differ by at most ``max_pose_diff`` radians in yaw and pitch. The source region is
warped to the target's landmarks through the face mesh (:func:`fastwarp.ops.mesh_flow` with
the real landmark motion, region pixels), so what is left between the warped source and the
real target is what motion cannot make: a closed lid where an eye closes, a cavity and teeth
where the lips part, folds and shading where a smile pushes the cheeks. Pairs are drawn by
category (:data:`CATEGORIES`: e.g. half of the eye pairs close the eye).

Losses (the generator's composite ``mask * warped + (1 - mask) * texture``):

- a PatchGAN critic per region type (:class:`PatchCritic`, spectral norm, hinge loss, the
  image's high-pass beside it) judges the COMPOSITE beside the target's rasterised contours
  (pix2pix's conditional critic), so the mask learns to commit; the real target is the real;
  each patch counts by how much of it moved (the motion gate), and the critic takes
  ``d_steps`` updates per generator update; optionally (``lambda_mismatch``, off by default:
  it pulled the critic to a constant output) the unedited source beside the target's
  contours is a second fake where the pair's opening changed; regions upsampled more than
  ``max_adv_scale`` from their frame (soft, small faces) are left out of the adversarial terms,
  so the critic learns sharpness from sharp regions only;
- L1 of the 4x box-downsampled composite against the target's, inside the motion gate (the
  pair's reconstruction, at low frequency: the critic decides the detail);
- feature matching on the critic's layers (pix2pixHD);
- ``mean(1 - mask)`` (paint only where needed);
- with ``cavity`` (the mouth), the cavity that opens between the jaws is filled with a dark
  colour in the generator's input and always painted (the generator's mask is 0 there): the split flow repeats
  its split line there, streaked where it crosses teeth, and a texture that may keep it copies the
  streaks; (the eye) the closing aperture is painted in proportion to its loss of area (wholly from
  half of it), so no squeezed iris or sclera is kept under a grey mask (the pale, soft lid of a mask
  that does not commit);
- the mouth pairs' warp splits the jaws at ``upper_share``: 1 (every tooth the source shows stays
  with the upper lip, as the shipped mouth textures were trained) or ``auto`` (each source's own
  split, :func:`fastwarp.face.jaws.upper_share`, as the editor warps a face since phase 5);
- optionally (``lambda_commit``, off by default) ``sum(mask (1 - mask)) / sum(gate)``: a mask
  that keeps the warp or paints, not a grey between (where the critic alone leaves a
  half-transparent lid over the squeezed iris).

An exponential moving average of the generator's weights is the model written out. Adam;
checkpoints written atomically with every RNG state, so ``--resume`` continues bit for bit
(and refuses settings other than the step count, budget and intervals);
``--max-minutes`` stops (with a checkpoint) when a budget is spent. Every ``sheet_every``
steps: a picture sheet of held-out pairs at 100 % (source | warped | composite | real target |
mask) and held-out numbers (L1 and PSNR inside the gate, warp only against composite).

CLI: ``python -m training.region_gan --kind eye --data /root/fastwarp-runs/regions
--out /root/fastwarp-runs/eye_gan [--steps N] [--max-minutes M] [--resume]``; ``--init
<run>/checkpoint.pt`` starts a new run from another's weights (a fine-tune with other settings).
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm
from tqdm import tqdm

from fastwarp._io import atomic_path
from fastwarp.au import AU_INDEX
from fastwarp.face.regions import REGIONS, contour_map
from fastwarp.models.region_texture import (
    RegionTexture,
    RegionTextureConfig,
    composite,
    region_inputs,
)

from .regions import CLOSED_GAP, OPEN_GAP, TEETH_FRACTION, RegionSet, load_regions, mouth_shares
from .small_run import cli, open_run

__all__ = ["RegionGanConfig", "PatchCritic", "PairSampler", "CATEGORIES", "make_batch", "train_region_gan",
           "commit_term", "picture_sheet", "evaluate_pairs", "main"]

CHECKPOINT = "checkpoint.pt"

#: Pair categories and their share of a batch, per region kind (see :class:`PairSampler`).
CATEGORIES = {
    "eye": {"closing": 0.5, "opening": 0.1, "any": 0.4},
    "mouth": {"opening": 0.3, "teeth": 0.2, "smile": 0.2, "closing": 0.1, "any": 0.2},
}


@dataclass
class RegionGanConfig:
    data: str = "/root/fastwarp-runs/regions"
    out: str = "/root/fastwarp-runs/eye_gan"
    kind: str = "eye"
    steps: int = 20000
    batch: int = 16
    lr_g: float = 2e-4
    lr_d: float = 4e-4  # two time-scale update rule (Heusel et al. 2017): the critic learns faster
    seed: int = 0
    max_pose_diff: float = 0.08
    channels: str = "16,32,64,128"
    res_blocks: int = 1
    critic_width: int = 32
    critic_layers: int = 3
    critic_highpass: float = 4.0
    d_steps: int = 2           # critic updates per generator update (the extra ones on the same batch)
    lambda_l1: float = 20.0
    lambda_fm: float = 10.0
    lambda_mask: float = 0.2
    lambda_commit: float = 0.0  # sum(mask (1 - mask)) / sum(gate): a mask that keeps or paints, not between
    lambda_mismatch: float = 0.0  # 0.5 pulled the critic to a constant output in a 400-step try
    max_adv_scale: float = 1.6
    cavity: bool = False  # the mouth's cavity (filled in the input) or the eye's closing aperture, always painted
    # (RegionTextureConfig.cavity)
    upper_share: str = "1"  # the mouth pairs' jaw split: "1" (UPPER_SHARE, all teeth with the upper lip) or
    # "auto" (each source mouth's own, fastwarp.face.jaws.upper_share, as the editor warps it)
    ema: float = 0.999
    every: int = 100
    sheet_every: int = 250
    sheet_rows: int = 8
    max_minutes: float = 0.0  # 0: no budget
    init: str = ""  # a run's checkpoint.pt to start from (its generator, EMA and critic; fresh optimisers, step 0),
    # or a shipped model (path without suffix, e.g. fastwarp/weights/region_eye: generator and EMA, a new critic)


class PatchCritic(nn.Module):
    """A PatchGAN critic (pix2pix, Isola et al. 2017) with spectral norm (Miyato et al. 2018)
    on every convolution: ``layers`` 4x4 stride-2 convolutions (LeakyReLU 0.2), the width
    doubling from ``width``, and a 3x3 convolution to one realness logit per patch.

    Forward: ``image`` (Tensor[N, 3, H, W], RGB [-1, 1]) and ``condition``
    (Tensor[N, C, H, W], the target's contours). Returns ``(scores [N, 1, H / 2^L, W / 2^L],
    features)``, ``features`` the list of every layer's activations (feature matching).
    """

    def __init__(self, cond_channels: int = 2, width: int = 32, layers: int = 3, highpass: float = 0.0) -> None:
        super().__init__()
        self.highpass = float(highpass)
        convs, cin = [], 3 + cond_channels + (3 if highpass else 0)
        for i in range(layers):
            cout = width * 2 ** i
            convs.append(spectral_norm(nn.Conv2d(cin, cout, 4, 2, 1)))
            cin = cout
        self.convs = nn.ModuleList(convs)
        self.head = spectral_norm(nn.Conv2d(cin, 1, 3, 1, 1))

    def forward(self, image: Tensor, condition: Tensor) -> tuple[Tensor, list[Tensor]]:
        parts = [image, condition.to(image.dtype)]
        if self.highpass:  # the image minus its 3x3 box blur, amplified: sharpness made visible to the first layer
            parts.append(self.highpass * (image - F.avg_pool2d(F.pad(image, (1, 1, 1, 1), mode="replicate"), 3, 1)))
        x = torch.cat(parts, dim=1)
        feats = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.2)
            feats.append(x)
        return self.head(x), feats


class PairSampler:
    """Draws (source, target) rows of a :class:`~training.regions.RegionSet`: same group
    (video, track, eye side), |pose difference| <= ``max_pose_diff`` in yaw and pitch, source
    != target, in the categories of :data:`CATEGORIES`:

    - eye ``closing``: target gap < :data:`~training.regions.CLOSED_GAP`, source gap at least
      0.12 larger; ``opening`` the reverse (target gap >= OPEN_GAP, source 0.12 smaller);
    - mouth ``opening``: target inner-lip gap at least 0.08 IOD larger; ``teeth``: the source
      shows teeth and the target's gap is 0.05 larger; ``smile``: target AU12 at least 1.5
      higher; ``closing``: the gap 0.08 smaller;
    - ``any``: every compatible pair.

    A category with no pair in the set is skipped (its share goes to ``any``). Sampling uses a
    numpy ``Generator`` the caller owns (its state goes into checkpoints).
    """

    def __init__(self, rs: RegionSet, max_pose_diff: float = 0.08) -> None:
        self.rs = rs
        self.max_pose_diff = max_pose_diff
        self.mix = dict(CATEGORIES[rs.kind])
        starts = np.flatnonzero(np.r_[True, rs.group[1:] != rs.group[:-1]]) if len(rs) else np.zeros(0, int)
        ends = np.r_[starts[1:], len(rs)]
        self.span = np.zeros((len(rs), 2), np.int64)
        for s, e in zip(starts, ends):
            self.span[s:e] = (s, e)
        self.targets: dict[str, np.ndarray] = {}
        for cat in self.mix:
            ok = np.zeros(len(rs), bool)
            for s, e in zip(starts, ends):
                ok[s:e] = self._compatible(cat, np.arange(s, e)[:, None], np.arange(s, e)[None, :]).any(1)
            self.targets[cat] = np.flatnonzero(ok)
        for cat in [c for c in self.mix if c != "any" and len(self.targets[c]) == 0]:
            self.mix["any"] += self.mix.pop(cat)
        if len(self.targets["any"]) == 0:
            raise ValueError(f"no {rs.kind} pair within the pose bound in this set ({len(rs)} regions)")

    def _compatible(self, cat: str, t: np.ndarray, s: np.ndarray) -> np.ndarray:
        """``[len(t), len(s)]`` bool: may row ``s`` be the source of target ``t`` in ``cat``."""
        rs = self.rs
        ok = (np.abs(rs.pose[t] - rs.pose[s]) <= self.max_pose_diff).all(-1) & (t != s)
        gt, gs = rs.gap[t], rs.gap[s]
        if rs.kind == "eye":
            if cat == "closing":
                ok &= (gt < CLOSED_GAP) & (gs >= gt + 0.12)
            elif cat == "opening":
                ok &= (gt >= OPEN_GAP) & (gs <= gt - 0.12)
        else:
            if cat == "opening":
                ok &= gt >= gs + 0.08
            elif cat == "teeth":
                ok &= (rs.teeth[s] >= TEETH_FRACTION) & (gt >= gs + 0.05)
            elif cat == "smile":
                i = AU_INDEX["AU12"]
                ok &= rs.aus[t, i] >= rs.aus[s, i] + 1.5
            elif cat == "closing":
                ok &= gt <= gs - 0.08
        return ok

    def sample(self, n: int, rng: np.random.Generator, category: str | None = None) -> np.ndarray:
        """``[n, 2]`` int64 (source, target) rows; with ``category`` all of that category."""
        cats = list(self.mix)
        if category is None:
            p = np.array([self.mix[c] for c in cats])
            picks = rng.choice(len(cats), size=n, p=p / p.sum())
        else:
            picks = np.full(n, cats.index(category if category in self.mix else "any"))
        out = np.zeros((n, 2), np.int64)
        for k, c in enumerate(picks):
            cat = cats[c]
            t = int(self.targets[cat][rng.integers(len(self.targets[cat]))])
            s0, s1 = self.span[t]
            cand = s0 + np.flatnonzero(self._compatible(cat, np.array([[t]]), np.arange(s0, s1)[None, :])[0])
            out[k] = (int(cand[rng.integers(len(cand))]), t)
        return out


def make_batch(rs: RegionSet, rows: np.ndarray, *, flip: np.ndarray | None = None,
               cavity: bool = False) -> dict[str, Tensor]:
    """The tensors of pairs ``rows`` ``[B, 2]`` (source, target):

    ``source``, ``target``, ``warped`` (RGB [-1, 1] ``[B, 3, H, W]``), ``flow`` ``[B, 2, H, W]``
    (region pixels), ``opening``, ``gate`` ``[B, 1, H, W]``, ``contours`` ``[B, 2, H, W]`` (the
    target's), ``au_delta`` ``[B, 17]``, ``source_contours``, ``gap_change`` ``[B]`` (target minus
    source gap), ``scale`` ``[B]`` (the target's region px per frame px). ``flip`` (bool ``[B]``)
    mirrors those samples left-right after they are made (the mouth's augmentation: the
    mesh, the warp and the maps all commute with a mirror). A mouth set's ``share``
    (:func:`training.regions.mouth_shares`) splits each source's jaws where its own teeth part;
    ``cavity`` fills the opening mouth's cavity (``region_inputs(cavity=True)``; ``cavity`` in the
    batch, 0 without).
    """
    s, t = rows[:, 0], rows[:, 1]
    H, W = rs.images.shape[1:3]
    img = lambda r: torch.from_numpy(rs.images[r]).permute(0, 3, 1, 2).float() / 127.5 - 1.0  # noqa: E731
    src, tgt = img(s), img(t)
    side = lambda r: "left" if rs.side[r] == 1 else "right"  # noqa: E731
    # The generator's inputs, as the editor makes them (fastwarp.models.region_texture.region_inputs).
    inputs = region_inputs(src, torch.from_numpy(rs.landmarks[s]).float(), torch.from_numpy(rs.landmarks[t]).float(),
                           rs.kind, [side(r) for r in t], upper_share=None if rs.share is None else rs.share[s],
                           cavity=cavity)
    src_contours = torch.from_numpy(np.stack([contour_map(rs.landmarks[r], rs.kind, H, W, side(r)) for r in s]))
    b = {"source": src, "target": tgt, **inputs, "source_contours": src_contours,
         "au_delta": torch.from_numpy(rs.aus[t] - rs.aus[s]).float(),
         "gap_change": torch.from_numpy(rs.gap[t] - rs.gap[s]).float(),
         "scale": torch.from_numpy(rs.scale[t]).float()}
    if flip is not None and flip.any():
        f = torch.from_numpy(np.asarray(flip, bool))
        for k in ("source", "target", "warped", "opening", "gate", "contours", "source_contours", "inside", "cavity"):
            b[k] = torch.where(f[:, None, None, None], b[k].flip(-1), b[k])
        fl = b["flow"].flip(-1) * torch.tensor([-1.0, 1.0])[None, :, None, None]
        b["flow"] = torch.where(f[:, None, None, None], fl, b["flow"])
    return b


def _low(x: Tensor) -> Tensor:
    return F.avg_pool2d(x, 4)


def _patch_mean(score: Tensor, patch_w: Tensor, sample_w: Tensor) -> Tensor:
    """The critic's per-patch term ``score`` ``[B, 1, h, w]`` averaged with weights
    ``patch_w`` (same shape: how much of each patch moved) within a sample and ``sample_w``
    ``[B]`` across samples; 0 when every weight is 0."""
    per = (score * patch_w).flatten(1).sum(1) / patch_w.flatten(1).sum(1).clamp_min(1e-6)
    w = sample_w * (patch_w.flatten(1).sum(1) > 1e-6).float()
    return (per * w).sum() / w.sum().clamp_min(1.0)


def _psnr(a: Tensor, b: Tensor, w: Tensor) -> float:
    mse = (((a - b) * 127.5) ** 2 * w).sum() / (w.sum() * a.shape[1]).clamp_min(1e-8)
    return float(10 * torch.log10(255.0 ** 2 / mse.clamp_min(1e-10)))


class _Run:
    """The models, optimisers and samplers of one run, and one training step."""

    def __init__(self, cfg: RegionGanConfig, train: RegionSet) -> None:
        self.cfg = cfg
        spec = REGIONS[cfg.kind]
        torch.manual_seed(cfg.seed)
        self.g = RegionTexture(RegionTextureConfig(cfg.kind, spec.height, spec.width,
                                                   [int(c) for c in cfg.channels.split(",")], cfg.res_blocks,
                                                   cavity=cfg.cavity))
        self.d = PatchCritic(2, cfg.critic_width, cfg.critic_layers, cfg.critic_highpass)
        self.ema = copy.deepcopy(self.g).eval()
        for p in self.ema.parameters():
            p.requires_grad_(False)
        self.opt_g = torch.optim.Adam(self.g.parameters(), lr=cfg.lr_g, betas=(0.5, 0.999))
        self.opt_d = torch.optim.Adam(self.d.parameters(), lr=cfg.lr_d, betas=(0.5, 0.999))
        self.sampler = PairSampler(train, cfg.max_pose_diff)
        self.rng = np.random.Generator(np.random.PCG64(cfg.seed))
        self.train = train
        self.step = 0
        self.history: list[dict] = []
        self.seconds = 0.0

    # --- checkpoints ----------------------------------------------------------------------
    def state(self) -> dict:
        return {"g": self.g.state_dict(), "d": self.d.state_dict(), "ema": self.ema.state_dict(),
                "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(), "step": self.step,
                "rng": self.rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
                "history": self.history, "seconds": self.seconds, "config": asdict(self.cfg)}

    def load(self, state: dict) -> None:
        self.g.load_state_dict(state["g"])
        self.d.load_state_dict(state["d"])
        self.ema.load_state_dict(state["ema"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.step, self.history, self.seconds = state["step"], state["history"], state["seconds"]
        self.rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])

    def save(self, path: Path) -> None:
        with atomic_path(path) as tmp:
            torch.save(self.state(), tmp)

    # --- one step -------------------------------------------------------------------------
    def batch(self) -> dict[str, Tensor]:
        rows = self.sampler.sample(self.cfg.batch, self.rng)
        flip = self.rng.random(len(rows)) < 0.5 if self.cfg.kind == "mouth" else None
        return make_batch(self.train, rows, flip=flip, cavity=self.cfg.cavity)

    def _d_loss(self, b: dict[str, Tensor], fake: Tensor, adv_w: Tensor, mis_w: Tensor):
        """The critic's hinge loss on one batch: the real target against ``fake`` (and the
        unedited source, :attr:`RegionGanConfig.lambda_mismatch`), beside the target's contours,
        each patch weighted by how much of it moved (elsewhere the composite is the warp, and
        real and fake differ by nothing the texture made). Returns ``(loss, patch weights,
        real scores, fake scores, real features)``."""
        cfg = self.cfg
        real_score, real_feats = self.d(b["target"], b["contours"])
        pw = F.adaptive_avg_pool2d(b["gate"], real_score.shape[-2:])
        fake_score, _ = self.d(fake, b["contours"])
        loss = _patch_mean(F.relu(1 - real_score), pw, adv_w) + _patch_mean(F.relu(1 + fake_score), pw, adv_w)
        if cfg.lambda_mismatch:
            mis_score, _ = self.d(b["source"], b["contours"])
            loss = loss + cfg.lambda_mismatch * _patch_mean(F.relu(1 + mis_score), pw, mis_w)
        return loss, pw, real_score, fake_score, real_feats

    def train_step(self) -> dict[str, float]:
        cfg = self.cfg
        b = self.batch()
        tex, mask = self.g(b["warped"], b["opening"], b["contours"], b["gate"], b["au_delta"], b["cavity"])
        comp = composite(b["warped"], tex, mask)
        adv_w = (b["scale"] <= cfg.max_adv_scale).float()
        mis_w = adv_w * (b["gap_change"].abs() >= (0.1 if cfg.kind == "eye" else 0.06)).float()

        d_loss, pw, real_score, fake_score, real_feats = self._d_loss(b, comp.detach(), adv_w, mis_w)

        # generator, judged by the same critic
        for p in self.d.parameters():
            p.requires_grad_(False)
        g_score, g_feats = self.d(comp, b["contours"])
        for p in self.d.parameters():
            p.requires_grad_(True)
        adv = _patch_mean(-g_score, pw, adv_w)
        fm = sum((gf - rf.detach()).abs().mean() for gf, rf in zip(g_feats, real_feats)) / len(g_feats)
        w = _low(b["gate"])
        l1 = ((_low(comp) - _low(b["target"])).abs() * w).sum() / (w.sum() * 3).clamp_min(1.0)
        mask_term = (1 - mask).mean()
        commit = commit_term(mask, b["gate"])
        g_loss = adv + cfg.lambda_fm * fm + cfg.lambda_l1 * l1 + cfg.lambda_mask * mask_term
        if cfg.lambda_commit:
            g_loss = g_loss + cfg.lambda_commit * commit

        self.opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        self.opt_g.step()
        self.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt_d.step()
        for _ in range(cfg.d_steps - 1):
            self.opt_d.zero_grad(set_to_none=True)
            self._d_loss(b, comp.detach(), adv_w, mis_w)[0].backward()
            self.opt_d.step()
        with torch.no_grad():
            decay = min(cfg.ema, (1 + self.step) / (10 + self.step))
            for pe, pg in zip(self.ema.parameters(), self.g.parameters()):
                pe.mul_(decay).add_(pg.detach(), alpha=1 - decay)
        self.step += 1
        terms = {"d": d_loss, "adv": adv, "fm": fm, "l1": l1, "mask": mask_term, "commit": commit,
                 "adv_share": adv_w.mean(),
                 "real": _patch_mean(real_score, pw, adv_w), "fake": _patch_mean(fake_score, pw, adv_w)}
        return {k: float(v.detach()) for k, v in terms.items()}


def commit_term(mask: Tensor, gate: Tensor) -> Tensor:
    """``sum(mask (1 - mask)) / sum(gate)``: 0 where the mask keeps the warp (1) or paints (0),
    at most 0.25 per gated pixel, for a half-transparent mask (:attr:`RegionGanConfig.lambda_commit`).

    Args:
        mask, gate (Tensor[N, 1, H, W]): the generator's gated mask and the motion gate.
    """
    return (mask * (1 - mask)).sum() / gate.sum().clamp_min(1.0)


def held_out_rows(val: RegionSet, n: int, seed: int = 1, category: str | None = None,
                  sharpest: bool = True) -> np.ndarray:
    """``n`` fixed held-out pairs of ``category`` (default: the kind's first, e.g. closing
    eyes), one per target. With ``sharpest``, for the picture sheet: the pair with the least
    upsampled target of each video, videos in turn (as many people as there are), then the
    next sharpest of each; else a plain random draw."""
    sampler = PairSampler(val)
    cat = category or next(iter(CATEGORIES[val.kind]))
    rows = sampler.sample(8 * n, np.random.Generator(np.random.PCG64(seed)), cat)
    rows = rows[np.sort(np.unique(rows[:, 1], return_index=True)[1])]  # one pair per target, in draw order
    if not sharpest:
        return rows[:n]
    video = np.array([val.videos[g] for g in val.group[rows[:, 1]]])
    order = np.lexsort((val.scale[rows[:, 1]], video))
    rank = np.zeros(len(rows), int)
    for v in np.unique(video):
        idx = order[video[order] == v]
        rank[idx] = np.arange(len(idx))
    pick = np.lexsort((val.scale[rows[:, 1]], rank))[:n]
    return rows[pick]


@torch.no_grad()
def evaluate_pairs(model: RegionTexture, val: RegionSet, rows: np.ndarray) -> dict:
    """Held-out pairs ``rows``: L1 (RGB [-1, 1]) and PSNR (dB) inside the motion gate, warp
    only against the composite."""
    outs, warps, tgts, ws = [], [], [], []
    for chunk in np.array_split(rows, max(1, len(rows) // 16)):
        b = make_batch(val, chunk, cavity=model.config.cavity)
        tex, mask = model(b["warped"], b["opening"], b["contours"], b["gate"], b["au_delta"], b["cavity"])
        outs.append(composite(b["warped"], tex, mask)), warps.append(b["warped"])
        tgts.append(b["target"]), ws.append(b["gate"])
    out, warped, tgt, w = (torch.cat(x) for x in (outs, warps, tgts, ws))
    norm = (w.sum() * 3).clamp_min(1e-8)
    return {"pairs": len(rows), "warp_l1": float(((warped - tgt).abs() * w).sum() / norm),
            "full_l1": float(((out - tgt).abs() * w).sum() / norm),
            "warp_psnr": _psnr(warped, tgt, w), "full_psnr": _psnr(out, tgt, w)}


@torch.no_grad()
def picture_sheet(model: RegionTexture, rs: RegionSet, rows: np.ndarray) -> np.ndarray:
    """BGR uint8 sheet at 100 %: one row per pair, columns source | warped | composite | real
    target | mask (white = keep the warp), 2 px gaps."""
    b = make_batch(rs, rows, cavity=model.config.cavity)
    tex, mask = model(b["warped"], b["opening"], b["contours"], b["gate"], b["au_delta"], b["cavity"])
    comp = composite(b["warped"], tex, mask)
    to_u8 = lambda x: ((x.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()[..., ::-1]  # noqa: E731
    cols = [to_u8(b["source"]), to_u8(b["warped"]), to_u8(comp), to_u8(b["target"]),
            (mask.clamp(0, 1) * 255).round().byte().expand(-1, 3, -1, -1).permute(0, 2, 3, 1).numpy()]
    H, W = cols[0].shape[1:3]
    gap = 2
    sheet = np.full((len(rows) * (H + gap) - gap, len(cols) * (W + gap) - gap, 3), 255, np.uint8)
    for i in range(len(rows)):
        for j, c in enumerate(cols):
            sheet[i * (H + gap):i * (H + gap) + H, j * (W + gap):j * (W + gap) + W] = c[i]
    return sheet


#: Settings a resumed run may change (the rest would make it another run).
_MAY_CHANGE = frozenset({"steps", "max_minutes", "every", "sheet_every", "data", "out"})
#: The settings that shape the models: an ``--init`` checkpoint must share them.
_ARCHITECTURE = ("kind", "channels", "res_blocks", "critic_width", "critic_layers", "critic_highpass")


def _save_model(run: _Run, out: Path, train: RegionSet, val: RegionSet) -> None:
    """The EMA generator as ``<out>/region_<kind>.safetensors/.json`` with its provenance."""
    run.ema.config.extra = {"trained_by": "python -m training.region_gan", "config": asdict(run.cfg),
                            "steps": run.step, "seconds": round(run.seconds), "train_videos": sorted(set(train.videos)),
                            "train_regions": len(train), "held_out_videos": sorted(set(val.videos))}
    run.ema.save(out / f"region_{run.cfg.kind}")


def train_region_gan(cfg: RegionGanConfig, *, resume: bool = False, progress: bool = True, stop_at: int | None = None,
                     train: RegionSet | None = None, val: RegionSet | None = None) -> dict | None:
    """Train (or resume) a region texture into ``cfg.out``; returns the summary, or None when
    stopped early (``stop_at`` steps, or the ``max_minutes`` budget: a checkpoint written).

    ``train`` / ``val``: region sets to use instead of loading ``cfg.data`` (tests).
    """
    if cfg.upper_share != "auto" and cfg.upper_share != "1":
        raise ValueError(f"--upper-share must be 1 or auto, got {cfg.upper_share!r}")
    out = Path(cfg.out)
    ckpt = open_run(out, resume)
    torch.set_num_threads(1)
    if train is None or val is None:
        manifest = json.loads((Path(cfg.data) / "manifest.json").read_text())
        done = set(manifest["videos"])
        train = load_regions(cfg.data, cfg.kind, [v for v in manifest["train_videos"] if v in done])
        val = load_regions(cfg.data, cfg.kind, [v for v in manifest["held_out_videos"] if v in done])
    if cfg.upper_share == "auto" and cfg.kind == "mouth":
        train.share, val.share = mouth_shares(train), mouth_shares(val)
    run = _Run(cfg, train)
    if resume:
        state = torch.load(ckpt, weights_only=False)
        changed = sorted(k for k, v in state["config"].items()
                         if k not in _MAY_CHANGE and getattr(cfg, k, None) != v)
        if changed:
            was = ", ".join(f"{k}={state['config'][k]!r}" for k in changed)
            raise ValueError(f"--resume: the run was started with other settings ({was}); pass the same ones "
                             "(only the step count, budget, checkpoint and sheet intervals may change)")
        run.load(state)
    elif cfg.init and not cfg.init.endswith(".pt"):  # a shipped model: its weights, a new critic
        model = RegionTexture.load(cfg.init)
        if model.config.kind != cfg.kind or list(model.config.channels) != [int(c) for c in cfg.channels.split(",")] \
                or model.config.res_blocks != cfg.res_blocks:
            raise ValueError(f"--init: {cfg.init} is a {model.config.kind} texture of channels "
                             f"{list(model.config.channels)}; pass the same settings")
        run.g.load_state_dict(model.state_dict())
        run.ema.load_state_dict(model.state_dict())
    elif cfg.init:  # a fine-tune with other settings: the weights, not the optimisers or the step
        state = torch.load(cfg.init, weights_only=False)
        other = [k for k in _ARCHITECTURE if state["config"].get(k) != getattr(cfg, k)]
        if other:
            was = ", ".join(f"{k}={state['config'].get(k)!r}" for k in other)
            raise ValueError(f"--init: {cfg.init} has another architecture ({was}); pass the same settings")
        run.g.load_state_dict(state["g"])
        run.ema.load_state_dict(state["ema"])
        run.d.load_state_dict(state["d"])
    sheet_rows = held_out_rows(val, cfg.sheet_rows)
    eval_rows = held_out_rows(val, 64, seed=2, sharpest=False)
    (out / "sheets").mkdir(exist_ok=True)
    t_start = time.time()
    bar = tqdm(total=cfg.steps, initial=run.step, disable=not progress, desc=f"{cfg.kind} gan", mininterval=30)
    stopped = False
    try:
        while run.step < cfg.steps:
            t0 = time.time()
            losses = run.train_step()
            run.seconds += time.time() - t0
            bar.update(1)
            if run.step % 10 == 0:
                run.history.append({"step": run.step, "s_per_step": round(run.seconds / max(run.step, 1), 3), **losses})
                bar.set_postfix(d=f"{losses['d']:.3f}", l1=f"{losses['l1']:.4f}", fm=f"{losses['fm']:.3f}")
            if run.step % cfg.sheet_every == 0 or run.step == cfg.steps:
                run.ema.eval()
                cv2.imwrite(str(out / "sheets" / f"sheet_{run.step:06d}.png"), picture_sheet(run.ema, val, sheet_rows))
                ev = evaluate_pairs(run.ema, val, eval_rows)
                run.history.append({"step": run.step, "eval": ev})
                with atomic_path(out / "eval.jsonl") as tmp:
                    tmp.write_text("".join(json.dumps(h) + "\n" for h in run.history if "eval" in h))
                _save_model(run, out, train, val)  # usable weights at every sheet, not only at the end
            over = cfg.max_minutes > 0 and time.time() - t_start > 60 * cfg.max_minutes
            if run.step % cfg.every == 0 or run.step == cfg.steps or run.step == stop_at or over:
                run.save(ckpt)
            if run.step == stop_at or over:
                stopped = True
                break
    finally:
        bar.close()
    if stopped:
        return None
    _save_model(run, out, train, val)
    summary = {"config": asdict(cfg), "steps": run.step, "seconds": run.seconds,
               "validation": evaluate_pairs(run.ema, val, eval_rows), "history": run.history[-5:]}
    with atomic_path(out / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _report(summary: dict | None) -> None:
    if summary is None:
        print("stopped (budget or stop_at): resume with --resume")
        return
    v = summary["validation"]
    print(f"{summary['steps']} steps in {summary['seconds']:.0f} s; held-out ({v['pairs']} pairs, inside the gate): "
          f"warp only L1 {v['warp_l1']:.4f} PSNR {v['warp_psnr']:.2f} dB; composite L1 {v['full_l1']:.4f} "
          f"PSNR {v['full_psnr']:.2f} dB")


def main(argv=None) -> None:
    cli(argv, "python -m training.region_gan", __doc__, RegionGanConfig, train_region_gan, _report)


if __name__ == "__main__":
    main()
