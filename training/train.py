"""Train a EditorNet: motion + texture with WGAN-GP, AU regression, cycle and video-pair
supervision, single-process or under ``torchrun`` (DDP).

One iteration ("step") is one critic update; every ``n_critic`` steps the generator is
updated too (GANimation's schedule). The terms are in :mod:`training.objectives`:

- critic: :func:`critic_wgan_loss` + λ_gp :func:`gradient_penalty` + λ_AU
  :func:`au_regression_loss` on real images (their estimated AUs);
- generator: λ_adv :func:`generator_wgan_loss` + λ_AU :func:`au_regression_loss` (the
  critic's AU estimate of the edit vs the target AUs) + λ_cycle :func:`cycle_loss` +
  GANimation's mask terms (:func:`mask_mean_loss`, :func:`mask_smoothness_loss`) +
  :func:`flow_smoothness_loss`; with video pairs also :func:`reconstruction_loss` (the
  source frame edited to the target frame's AUs must be the target frame) and
  :func:`landmark_flow_loss`; optionally the perceptual term.

Data: a dataset folder from ``python -m training.data`` (frame pairs of one video, split by
identity) or a GANimation-layout folder (``imgs/`` + ``aus_openface.pkl``: unpaired, the
target AUs are another image's plus noise, as in GANimation).

Machinery: ``torchrun --nproc_per_node N -m training.train ...`` runs DDP (gloo on CPU,
NCCL on GPU; each rank samples its own batches); bfloat16 autocast on GPU; a checkpoint
(safetensors: editor, critic, optimiser state; JSON: step, RNG states of every rank,
history) every ``checkpoint_every`` steps and at exit (also on SIGTERM / SIGINT), written
to a temp folder and renamed, so a kill loses at most the steps since the last one;
``--resume`` continues exactly (bit-identical to an uninterrupted run on the same
machine); TensorBoard scalars and image grids (input | warped | texture | mask | output |
target) in ``<out>/tb``; a tqdm bar.

CLI: ``python -m training.train --config training/configs/base.toml [--data DIR] [--out DIR]
[--max-steps N] [--minutes M] [--set key=value ...] [--resume] [--install NAME]``
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from fastwarp._io import atomic_path
from fastwarp.images import bgr_to_tensor
from fastwarp.models import WEIGHTS_DIR, EditorNet

from . import objectives as L
from .config import TrainConfig, load_config
from .critic import Critic

CHECKPOINTS = "checkpoints"
LATEST = "latest"


def git_commit() -> str:
    """The commit the code runs from, with "-dirty" when the working tree has changes."""
    try:
        return subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True,
                              check=True, cwd=Path(__file__).resolve().parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


# --- data ----------------------------------------------------------------------------------


class _Sampler:
    """A batch sampler whose randomness is one numpy generator (``self.rng``): its state
    is the sampler's, saved in checkpoints so a resumed run draws the same batches."""

    rng: np.random.Generator

    def state(self) -> dict:
        return self.rng.bit_generator.state

    def load_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state


class PairSampler(_Sampler):
    """Random batches of frame pairs of one video: source and target crops ``[B, 3, S, S]``
    in [-1, 1], their AUs ``[B, 17]`` (0..5) and landmarks ``[B, 478, 2]`` (crop pixels).

    Pairs: head pose within ``max_pose_diff`` rad, any expression change (small changes
    teach the model to leave a face alone). Half the pairs are mirrored (both frames): the
    AUs are bilateral. The sampler's state (``state()`` / ``load_state()``) is its numpy
    generator's, so a resumed run draws the same batches.
    """

    paired = True

    def __init__(self, dataset: dict, videos: list[str], seed: int, max_pose_diff: float) -> None:
        from .data import make_pairs

        self.rng = np.random.default_rng(seed)
        self.pairs = make_pairs(dataset, videos, max_pose_diff=max_pose_diff, min_au_diff=0.0,
                                pairs_per_video=2000, rng=self.rng)
        if not self.pairs:
            raise ValueError("no training pairs: no training video has two frames within the head-pose limit")
        self.dataset = dataset

    def batch(self, size: int):
        idx = self.rng.integers(0, len(self.pairs), size)
        chosen = [self.pairs[i] for i in idx]
        d = self.dataset
        src = bgr_to_tensor(np.stack([d[v]["crops"][s] for v, s, _ in chosen]))
        tgt = bgr_to_tensor(np.stack([d[v]["crops"][t] for v, _, t in chosen]))
        au_s = torch.from_numpy(np.stack([d[v]["aus"][s] for v, s, _ in chosen]))
        au_t = torch.from_numpy(np.stack([d[v]["aus"][t] for v, _, t in chosen]))
        lm_s = torch.from_numpy(np.stack([d[v]["landmarks"][s] for v, s, _ in chosen]))
        lm_t = torch.from_numpy(np.stack([d[v]["landmarks"][t] for v, _, t in chosen]))
        flip = torch.from_numpy(self.rng.random(size) < 0.5)
        src[flip] = src[flip].flip(-1)
        tgt[flip] = tgt[flip].flip(-1)
        width = src.shape[-1]
        for lm in (lm_s, lm_t):
            lm[flip, :, 0] = (width - 1) - lm[flip, :, 0]
        return {"src": src, "tgt": tgt, "au_s": au_s, "au_t": au_t, "lm_s": lm_s, "lm_t": lm_t}


class ImageSampler(_Sampler):
    """Unpaired batches from a GANimation-layout dataset: source crops, their AUs, and
    target AUs taken from other random images plus N(0, ``au_noise``) noise, clipped to
    0..5 (GANimation's sampling of desired expressions)."""

    paired = False

    def __init__(self, images, indices: np.ndarray, seed: int, au_noise: float) -> None:
        if len(indices) == 0:
            raise ValueError("no training images")
        self.images, self.indices = images, np.asarray(indices)
        self.rng = np.random.default_rng(seed)
        self.au_noise = au_noise

    def batch(self, size: int):
        idx = self.indices[self.rng.integers(0, len(self.indices), size)]
        other = self.indices[self.rng.integers(0, len(self.indices), size)]
        src = bgr_to_tensor(self.images.crops(idx))
        au_s = torch.from_numpy(self.images.aus[idx].astype(np.float32))
        noise = self.rng.normal(0.0, self.au_noise, (size, au_s.shape[1])).astype(np.float32)
        au_t = torch.from_numpy(np.clip(self.images.aus[other] + noise, 0.0, 5.0).astype(np.float32))
        flip = torch.from_numpy(self.rng.random(size) < 0.5)
        src[flip] = src[flip].flip(-1)
        return {"src": src, "tgt": None, "au_s": au_s, "au_t": au_t, "lm_s": None, "lm_t": None}


def is_ganimation_layout(path: Path) -> bool:
    return (path / "aus_openface.pkl").is_file()


def build_data(cfg: TrainConfig, rank: int):
    """(sampler, image size, description, validation-set info) for this rank."""
    path = Path(cfg.data)
    if not path.is_dir():
        raise FileNotFoundError(f"data folder not found: {path}")
    seed = cfg.seed + 1000 * rank
    if is_ganimation_layout(path):
        from .data import GanimationDataset

        images = GanimationDataset(path)
        train_idx, val_idx = images.split(cfg.val_fraction, cfg.seed)
        size = int(images.crops(train_idx[:1]).shape[1])
        sampler = ImageSampler(images, train_idx, seed, cfg.au_noise)
        info = {"layout": "ganimation", "train_images": int(len(train_idx)), "validation_images": int(len(val_idx))}
        return sampler, size, None, info
    from .data import dataset_identities, load_dataset, split_videos

    dataset = load_dataset(path)
    if not dataset:
        raise ValueError(f"dataset {path} has no videos")
    train_videos, val_videos = split_videos(sorted(dataset), cfg.val_fraction, cfg.seed, dataset_identities(path))
    sampler = PairSampler(dataset, train_videos, seed, cfg.max_pose_diff)
    size = int(next(iter(dataset.values()))["crops"].shape[1])
    info = {"layout": "videos", "train_videos": train_videos, "validation_videos": val_videos,
            "train_pairs": len(sampler.pairs)}
    return sampler, size, dataset, info


# --- checkpoints ---------------------------------------------------------------------------


def _optimizer_to_flat(prefix: str, opt: torch.optim.Optimizer) -> tuple[dict, dict]:
    """Optimiser state as safetensors tensors + JSON (no pickle)."""
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for pid, state in sd["state"].items():
        for key, value in state.items():
            if torch.is_tensor(value):
                tensors[f"{prefix}.{pid}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{pid}.{key}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _optimizer_from_flat(prefix: str, opt: torch.optim.Optimizer, tensors: dict, meta: dict) -> None:
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        head, pid, key = name.split(".", 2)
        if head == prefix:
            state.setdefault(int(pid), {})[key] = value
    for name, value in meta["scalars"].items():
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = value
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def _rng_state(sampler, device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state().tolist(), "sampler": sampler.state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device).tolist()
    return state


def _load_rng_state(state: dict, sampler, device: torch.device) -> None:
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    sampler.load_state(state["sampler"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(torch.tensor(state["cuda"], dtype=torch.uint8), device)


def latest_checkpoint(out: Path) -> Path | None:
    """The folder named by ``<out>/checkpoints/latest``, or None."""
    pointer = out / CHECKPOINTS / LATEST
    if not pointer.is_file():
        return None
    folder = out / CHECKPOINTS / pointer.read_text().strip()
    return folder if (folder / "state.json").is_file() else None


def save_checkpoint(out: Path, step: int, model: EditorNet, critic: Critic, g_opt, d_opt, state: dict,
                    keep: int) -> Path:
    """Write ``<out>/checkpoints/step-XXXXXXX/`` via a temp folder + rename, then point
    ``latest`` at it (atomically) and delete the oldest beyond ``keep``."""
    root = out / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    name = f"step-{step:07d}"
    final = root / name
    for stale in root.glob(".step-*.tmp-*"):  # left by a run killed while writing
        shutil.rmtree(stale, ignore_errors=True)
    tmp = root / f".{name}.tmp-{os.getpid()}"
    tmp.mkdir()
    model.save(tmp / "editor")
    save_file({k: v.detach().cpu().contiguous() for k, v in critic.state_dict().items()}, str(tmp / "critic.safetensors"))
    g_tensors, g_meta = _optimizer_to_flat("g", g_opt)
    d_tensors, d_meta = _optimizer_to_flat("d", d_opt)
    save_file({**g_tensors, **d_tensors}, str(tmp / "optim.safetensors"))
    (tmp / "state.json").write_text(json.dumps({**state, "step": step, "g_opt": g_meta, "d_opt": d_meta}))
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    with atomic_path(root / LATEST) as p:
        p.write_text(name)
    old = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-") and p != final)
    for p in old[:max(0, len(old) - (keep - 1))]:
        shutil.rmtree(p, ignore_errors=True)
    return final


def load_checkpoint(folder: Path, model: EditorNet, critic: Critic, g_opt, d_opt) -> dict:
    """Load weights and optimiser state in place; return the JSON state."""
    state = json.loads((folder / "state.json").read_text())
    model.load_state_dict(load_file(str(folder / "editor.safetensors")))
    critic.load_state_dict(load_file(str(folder / "critic.safetensors")))
    tensors = load_file(str(folder / "optim.safetensors"))
    _optimizer_from_flat("g", g_opt, tensors, state["g_opt"])
    _optimizer_from_flat("d", d_opt, tensors, state["d_opt"])
    return state


# --- distributed ---------------------------------------------------------------------------


def setup_distributed(cfg: TrainConfig) -> tuple[int, int, torch.device]:
    """(rank, world size, device). Under torchrun (``WORLD_SIZE`` > 1) initialises the
    process group: NCCL when training on CUDA, else gloo."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    want_cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("config: device = 'cuda' but torch sees no CUDA GPU")
    device = torch.device("cuda", local) if want_cuda else torch.device("cpu")
    if want_cuda:
        torch.cuda.set_device(device)
    if world > 1:
        dist.init_process_group("nccl" if want_cuda else "gloo", rank=rank, world_size=world)
    return rank, world, device


def _mean_across(values: dict[str, float], world: int) -> dict[str, float]:
    if world == 1:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64)
    dist.all_reduce(t)
    return {k: float(v) / world for k, v in zip(keys, t)}


# --- training ------------------------------------------------------------------------------


class _Stop:
    """Set by SIGTERM / SIGINT: the loop ends after the current step and checkpoints."""

    def __init__(self) -> None:
        self.flag = False
        self.previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self.previous[sig] = signal.signal(sig, self._handle)

    def close(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame) -> None:
        if self.flag:  # second signal: give up at once
            raise KeyboardInterrupt
        self.flag = True


def image_grid(batch: dict, fwd, n: int = 4) -> torch.Tensor:
    """``[3, n*S, 6*S]`` in [0, 1]: input | warped | texture | mask | output | target rows,
    all shown at the input's size (maps on a smaller grid upsampled)."""
    import torch.nn.functional as F

    size = batch["src"].shape[-2:]
    up = lambda t: F.interpolate(t[:n].float(), size=size, mode="bilinear", align_corners=False)  # noqa: E731
    target = batch["tgt"] if batch["tgt"] is not None else torch.zeros_like(batch["src"])
    cols = [batch["src"][:n], up(fwd.warped), up(fwd.texture), up(fwd.mask).expand(-1, 3, -1, -1) * 2 - 1,
            fwd.output[:n].float(), target[:n]]
    rows = torch.cat([c.detach().cpu().float() for c in cols], dim=3)  # [n, 3, S, 6S]
    return ((torch.cat(list(rows), dim=1) + 1) / 2).clamp(0, 1)


def train(cfg: TrainConfig, resume: bool = False, install: str | None = None, progress: bool = True) -> dict:
    """Run (or continue) training; returns the summary written to ``<out>/summary.json``.

    Raises:
        ValueError: bad config, or a checkpoint in ``out`` without ``resume``.
        FileNotFoundError: missing data.
    """
    cfg.validate()
    threads = torch.get_num_threads()
    rank, world, device = setup_distributed(cfg)
    try:
        return _train(cfg, rank, world, device, resume, install, progress)
    finally:
        torch.set_num_threads(threads)  # cfg.threads is for this run only
        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def _train(cfg, rank, world, device, resume, install, progress) -> dict:
    out = Path(cfg.out)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    ckpt = latest_checkpoint(out)
    if ckpt is not None and not resume:
        raise ValueError(f"{out} already has a checkpoint ({ckpt.name}): pass --resume to continue it, or choose "
                         "another --out")
    if resume and ckpt is None:
        raise ValueError(f"--resume: no checkpoint in {out / CHECKPOINTS}")
    torch.manual_seed(cfg.seed + 1000 * rank)
    commit = git_commit()
    sampler, size, dataset, data_info = build_data(cfg, rank)
    if rank == 0:
        desc = (f"{len(data_info['train_videos'])} training videos ({data_info['train_pairs']} pairs), "
                f"{len(data_info['validation_videos'])} validation videos" if data_info["layout"] == "videos" else
                f"{data_info['train_images']} training images, {data_info['validation_images']} validation images")
        print(f"{desc}; {world} process(es) on {device}, batch {cfg.batch} each", flush=True)

    torch.manual_seed(cfg.seed)  # identical initial weights on every rank (DDP also broadcasts them)
    model = EditorNet(cfg.editor_config(size)).to(device)
    critic = Critic(size, cfg.critic_width, cfg.critic_repeat, cfg.critic_max_width).to(device)
    if cfg.init_weights:
        init = EditorNet.load(cfg.init_weights)
        # identity_gate changes no parameter: weights trained without it fine-tune with it.
        same = dict(extra={}, identity_gate=model.config.identity_gate)
        if dataclasses.replace(init.config, **same) != dataclasses.replace(model.config, **same):
            raise ValueError(f"init_weights {cfg.init_weights}: architecture {dataclasses.asdict(init.config)} "
                             f"differs from the config's {dataclasses.asdict(model.config)}")
        model.load_state_dict(init.state_dict())
    torch.manual_seed(cfg.seed + 1000 * rank)
    templates = [p for n, p in model.named_parameters() if n.endswith("templates")]
    others = [p for n, p in model.named_parameters() if not n.endswith("templates")]
    groups = [{"params": others}]
    if templates:
        groups.append({"params": templates, "lr": cfg.lr * cfg.template_lr_scale})
    g_opt = torch.optim.Adam(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
    d_opt = torch.optim.Adam(critic.parameters(), lr=cfg.lr_critic, betas=(cfg.beta1, cfg.beta2))
    perceptual = L.PerceptualLoss(cfg.perceptual_weights).to(device) if cfg.w_perceptual > 0 else None

    state: dict = {"elapsed_seconds": 0.0, "history": [], "world_size": world}
    step = 0
    if ckpt is not None:
        state = load_checkpoint(ckpt, model, critic, g_opt, d_opt)
        if state.get("world_size") != world:
            raise ValueError(f"checkpoint {ckpt} was written by {state.get('world_size')} processes; resume it "
                             f"with the same number (got {world})")
        step = int(state["step"])
        _load_rng_state(state["rng"][rank], sampler, device)
        if rank == 0:
            print(f"resumed from {ckpt} at step {step}", flush=True)

    g_ddp, d_ddp = model, critic
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [device.index] if device.type == "cuda" else None
        g_ddp, d_ddp = DDP(model, device_ids=ids), DDP(critic, device_ids=ids)
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" and cfg.amp
                else nullcontext())

    writer = None
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        with atomic_path(out / "config.json") as p:
            p.write_text(json.dumps(dataclasses.asdict(cfg), indent=2) + "\n")
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out / "tb"), purge_step=step)

    stopper = _Stop()
    try:
        return _loop(cfg, rank, world, device, out, ckpt, state, step, model, critic, g_ddp, d_ddp, g_opt, d_opt,
                     sampler, size, dataset, data_info, perceptual, autocast, writer, commit, install, progress,
                     stopper)
    finally:
        stopper.close()
        if writer is not None:
            writer.close()


def _loop(cfg, rank, world, device, out, ckpt, state, step, model, critic, g_ddp, d_ddp, g_opt, d_opt, sampler,
          size, dataset, data_info, perceptual, autocast, writer, commit, install, progress, stopper) -> dict:
    def checkpoint_now(elapsed: float) -> None:
        rng = _rng_state(sampler, device)
        if world > 1:
            gathered: list = [None] * world
            dist.all_gather_object(gathered, rng)
        else:
            gathered = [rng]
        if rank == 0:
            payload = {**{k: v for k, v in state.items() if k not in ("g_opt", "d_opt", "step")},
                       "elapsed_seconds": elapsed, "rng": gathered, "world_size": world, "commit": commit}
            save_checkpoint(out, step, model, critic, g_opt, d_opt, payload, cfg.keep_checkpoints)
            _write_loss_csv(out, state["history"])
        if world > 1:
            dist.barrier()

    budget = cfg.minutes * 60.0
    start_elapsed = float(state["elapsed_seconds"])
    t0 = time.perf_counter()
    bar = tqdm(total=cfg.max_steps or None, initial=step, desc="train", unit="step", dynamic_ncols=True,
               disable=not progress or rank != 0)
    paired = sampler.paired
    last_saved = step
    g_logs: dict[str, float] = {}
    last_image = None
    while True:
        elapsed = start_elapsed + time.perf_counter() - t0
        done = (cfg.max_steps and step >= cfg.max_steps) or (budget and elapsed >= budget)
        stop = torch.tensor([1 if (done or stopper.flag) else 0])
        if world > 1:  # every rank stops at the same step
            dist.all_reduce(stop, op=dist.ReduceOp.MAX)
        if stop.item():
            break
        model.train(), critic.train()
        b = sampler.batch(cfg.batch)
        b = {k: (v.to(device) if v is not None else None) for k, v in b.items()}
        real, au_real = (b["tgt"], b["au_t"]) if paired else (b["src"], b["au_s"])
        logs: dict[str, float] = {}

        # critic
        critic.requires_grad_(True)
        with torch.no_grad(), autocast:
            fake = model(b["src"], b["au_t"], b["au_s"]).output
        with autocast:
            score_real, au_pred = d_ddp(real)
            score_fake, _ = d_ddp(fake.detach())
            loss_w = L.critic_wgan_loss(score_real.float(), score_fake.float())
            loss_au = L.au_regression_loss(au_pred.float(), au_real)
        loss_gp = L.gradient_penalty(d_ddp, real, fake)
        loss_d = loss_w + cfg.w_gp * loss_gp + cfg.w_au * loss_au
        d_opt.zero_grad(set_to_none=True)
        loss_d.backward()
        d_opt.step()
        logs.update(critic_wasserstein=-loss_w.item(), critic_gp=loss_gp.item(), critic_au=loss_au.item(),
                    critic_loss=loss_d.item())

        # generator, every n_critic-th step (GANimation: (i + 1) % n == 0; the critic is
        # frozen and bypasses DDP here)
        fwd = None
        if (step + 1) % cfg.n_critic == 0 and step >= cfg.critic_warmup:
            critic.requires_grad_(False)
            with autocast:
                fwd = g_ddp(b["src"], b["au_t"], b["au_s"])
                score, au_fake = critic(fwd.output)
                terms = {"adv": (cfg.w_adv, L.generator_wgan_loss(score.float())),
                         "au": (cfg.w_au, L.au_regression_loss(au_fake.float(), b["au_t"])),
                         "flow_tv": (cfg.w_flow_tv, L.flow_smoothness_loss(fwd.flow.float())),
                         "mask": (cfg.w_mask, L.mask_mean_loss(fwd.mask.float(), cfg.mask_penalty)),
                         "mask_tv": (cfg.w_mask_tv, L.mask_smoothness_loss(fwd.mask.float()))}
                if paired:
                    terms["rec"] = (cfg.w_rec, L.reconstruction_loss(fwd.output.float(), b["tgt"]))
                    if cfg.use_motion and cfg.w_landmark > 0:
                        terms["landmark"] = (cfg.w_landmark, L.landmark_flow_loss(
                            fwd.flow.float(), b["lm_s"], b["lm_t"], image_size=size))
                    if perceptual is not None:
                        terms["perceptual"] = (cfg.w_perceptual, perceptual(fwd.output.float(), b["tgt"]))
                if cfg.w_cycle > 0:
                    back = g_ddp(fwd.output, b["au_s"], b["au_t"])
                    terms["cycle"] = (cfg.w_cycle, L.cycle_loss(back.output.float(), b["src"]))
                    terms["flow_tv"] = (cfg.w_flow_tv, terms["flow_tv"][1] + L.flow_smoothness_loss(back.flow.float()))
                loss_g = sum(w * v for w, v in terms.values())
            g_opt.zero_grad(set_to_none=True)
            loss_g.backward()
            g_opt.step()
            g_logs = {f"g_{k}": v.item() for k, (_, v) in terms.items()}
            g_logs["g_loss"] = loss_g.item()
            if paired:
                g_logs["identity_l1"] = (b["src"] - b["tgt"]).abs().mean().item()
            g_logs["flow_px"] = fwd.flow.abs().mean().item()
            g_logs["mask_mean"] = fwd.mask.mean().item()
        step += 1
        bar.update(1)
        if step % cfg.log_every == 0:
            logs = _mean_across({**logs, **g_logs}, world)  # the generator's from its last step
            if rank == 0:
                state["history"].append({"step": step, **{k: round(v, 6) for k, v in logs.items()}})
                for k, v in logs.items():
                    writer.add_scalar(f"train/{k}", v, step)
                if "g_rec" in logs:
                    bar.set_postfix(rec=f"{logs['g_rec']:.4f}", ident=f"{logs['identity_l1']:.4f}",
                                    flow=f"{logs['flow_px']:.2f}px", mask=f"{logs['mask_mean']:.2f}")
        if rank == 0 and fwd is not None and (last_image is None or step - last_image >= cfg.image_every):
            writer.add_image("train/input|warped|texture|mask|output|target", image_grid(b, fwd), step)
            last_image = step
        if step % cfg.checkpoint_every == 0:
            checkpoint_now(start_elapsed + time.perf_counter() - t0)
            last_saved = step
    bar.close()
    elapsed = start_elapsed + time.perf_counter() - t0
    if step != last_saved:
        checkpoint_now(elapsed)
    if stopper.flag:
        if rank == 0:
            print(f"stopped by signal at step {step}; checkpoint written, continue with --resume", flush=True)
    return _finish(cfg, rank, world, out, model, step, elapsed, commit, dataset, data_info, install,
                   stopped=stopper.flag)


def _write_loss_csv(out: Path, history: list[dict]) -> None:
    keys = sorted({k for h in history for k in h if k != "step"})
    lines = ["step," + ",".join(keys)] + [f"{h['step']}," + ",".join(str(h.get(k, "")) for k in keys)
                                          for h in history]
    with atomic_path(out / "loss.csv") as p:
        p.write_text("\n".join(lines) + "\n")


def _finish(cfg, rank, world, out, model, step, elapsed, commit, dataset, data_info, install, stopped) -> dict:
    if cfg.save_every_rank:
        model.save(out / f"rank{rank}" / "editor")
    if rank != 0:
        return {}
    machine = (f"{world} x {torch.cuda.get_device_name()}" if torch.cuda.is_available() and cfg.device != "cpu"
               else f"{world} process(es) x CPU, {torch.get_num_threads()} threads each ({os.cpu_count()} cores), "
                    f"torch {torch.__version__}")
    model.config.extra = {
        "trained_by": "python -m training.train " + " ".join(sys.argv[1:]),
        "config": {k: v for k, v in dataclasses.asdict(cfg).items() if k != "extra"},
        "data": data_info,
        "commit": commit,
        "steps": step,
        "generator_steps": sum(1 for s in range(cfg.critic_warmup, step) if (s + 1) % cfg.n_critic == 0),
        "batch": cfg.batch * world,
        "train_minutes": round(elapsed / 60, 1),
        "machine": machine,
        "licence_note": "trained on clips whose footage may carry non-commercial terms (see MANIFEST.csv)",
    }
    model.save(out / "editor")
    summary = {"steps": step, "train_seconds": elapsed, "stopped_by_signal": stopped,
               "config": dataclasses.asdict(cfg), "data": data_info}
    print(f"trained {step} steps ({model.config.extra['generator_steps']} generator steps) in "
          f"{elapsed / 60:.1f} min; weights: {out / 'editor'}.safetensors", flush=True)
    if cfg.evaluate and dataset is not None and data_info.get("validation_videos") and not stopped:
        from fastwarp.face import FaceMesh

        from .evaluate import evaluate_pairs, format_table, validation_pairs

        with FaceMesh(static_image_mode=True) as mesh:
            result = evaluate_pairs(model.cpu().eval(), dataset,
                                    validation_pairs(dataset, data_info["validation_videos"], cfg.seed), mesh)
        print(format_table(result), flush=True)
        summary["validation"] = result
        model.config.extra["validation"] = {k: result[k] for k in ("model", "identity", "n_pairs")}
        model.save(out / "editor")
    with atomic_path(out / "summary.json") as p:
        p.write_text(json.dumps(summary, indent=2) + "\n")
    if install:
        target = WEIGHTS_DIR / install
        model.save(target, dtype=torch.float16)  # half the size; loading converts back to float32
        print(f"installed as the bundled weights {install!r}: {target}.safetensors/.json", flush=True)
    return summary


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m training.train", description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=None, help="TOML or JSON config (see training/configs/)")
    ap.add_argument("--data", default=None, help="dataset folder (overrides the config)")
    ap.add_argument("--out", default=None, help="run folder (overrides the config)")
    ap.add_argument("--max-steps", type=int, default=None, help="stop after this many (critic) steps")
    ap.add_argument("--minutes", type=float, default=None, help="wall-clock budget over all resumes")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override any config key")
    ap.add_argument("--resume", action="store_true", help="continue from the run folder's latest checkpoint")
    ap.add_argument("--install", default=None, metavar="NAME",
                    help="also store the result as bundled weights fastwarp/weights/NAME (float16)")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    try:
        if args.resume and args.out and (Path(args.out) / "config.json").is_file() and args.config is None:
            args.config = str(Path(args.out) / "config.json")
        cfg = load_config(args.config, args.set, data=args.data, out=args.out, max_steps=args.max_steps,
                          minutes=args.minutes)
        train(cfg, resume=args.resume, install=args.install, progress=not args.no_progress)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"training.train: error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
