"""Training v0: self-supervised FaceEditor training on video frame pairs.

Each sample is two frames of one video (similar head pose): the model edits the source
frame to the target frame's estimated AUs and must reconstruct the target frame. Loss:
- reconstruction  L1(edit(src, AU_tgt), tgt)                         (weight ``--w-rec``)
- cycle           L1(edit(edit(src, AU_tgt), AU_src), src)           (GANimation's cycle loss)
- flow smoothness total variation of the flow, in pixels             (``--w-flow-tv``)
- mask terms      GANimation's L1 mask penalty and mask total variation (``--w-mask``,
                  ``--w-mask-tv``). GANimation penalises the share of its attention mask
                  that keeps the input so the generator cannot ignore the condition; here
                  the warp is the edit and the texture the fallback, so the same penalty
                  falls on the texture's share (1 - mask): edits stay geometric wherever
                  motion explains them (the premise of Athar et al. 2020).
Videos are split by identity; validation reports L1 and landmark NME of the model against
the identity baseline (output = source) on held-out videos.

CLI: ``python -m training.train --data .cache/dataset128 --out runs/v0 --minutes 25``
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from fastwarp.convert import bgr_to_tensor
from fastwarp.face import FaceMesh
from fastwarp.models import DEFAULT_WEIGHTS, EditorConfig, FaceEditor

from .data import load_dataset, make_pairs, split_videos
from .evaluate import evaluate_pairs, format_table, validation_pairs


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of horizontally and vertically adjacent pixels of ``[N, C, H, W]``."""
    return (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., :, 1:] - x[..., :, :-1]).abs().mean()


def mask_terms(mask: torch.Tensor, w_mask: float, w_tv: float) -> torch.Tensor:
    """GANimation's mask regularisers on the texture's share (see the module docstring)."""
    return w_mask * (1 - mask).mean() + w_tv * total_variation(mask)


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


class PairSampler:
    """Random training batches: (source crops, target crops, source AUs, target AUs)."""

    def __init__(self, dataset: dict, videos: list[str], seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        # Training uses every pose-compatible pair, also small expression changes (those
        # teach the model to leave a face alone when the AUs barely change).
        self.pairs = make_pairs(dataset, videos, max_pose_diff=0.15, min_au_diff=0.0, pairs_per_video=2000,
                                rng=self.rng)
        if not self.pairs:
            raise ValueError("no training pairs: the dataset has no video with two pose-compatible frames")
        self.dataset = dataset

    def batch(self, size: int):
        idx = self.rng.integers(0, len(self.pairs), size)
        chosen = [self.pairs[i] for i in idx]
        src = np.stack([self.dataset[v]["crops"][s] for v, s, _ in chosen])
        tgt = np.stack([self.dataset[v]["crops"][t] for v, _, t in chosen])
        au_s = np.stack([self.dataset[v]["aus"][s] for v, s, _ in chosen])
        au_t = np.stack([self.dataset[v]["aus"][t] for v, _, t in chosen])
        src_t, tgt_t = bgr_to_tensor(src), bgr_to_tensor(tgt)
        # Mirror half the pairs (both frames alike): the AUs are bilateral, so labels hold.
        flip = torch.from_numpy(self.rng.random(size) < 0.5)
        src_t[flip] = src_t[flip].flip(-1)
        tgt_t[flip] = tgt_t[flip].flip(-1)
        return src_t, tgt_t, torch.from_numpy(au_s), torch.from_numpy(au_t)


def train(args: argparse.Namespace) -> dict:
    torch.manual_seed(args.seed)
    dataset = load_dataset(args.data)
    names = sorted(dataset)
    train_videos, val_videos = split_videos(names, args.val_fraction, args.seed)
    sampler = PairSampler(dataset, train_videos, args.seed)
    print(f"{len(train_videos)} training videos ({len(sampler.pairs)} pairs), "
          f"{len(val_videos)} validation videos: {', '.join(val_videos)}", flush=True)
    size = int(next(iter(dataset.values()))["crops"].shape[1])
    config = EditorConfig(image_size=size, motion_width=args.width, motion_res_blocks=args.res_blocks,
                          texture_width=args.width, texture_res_blocks=args.res_blocks, use_motion=not args.no_motion)
    model = FaceEditor(config)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.5, 0.999))
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    budget = args.minutes * 60.0
    t0 = time.perf_counter()
    history = []
    bar = tqdm(total=args.max_steps or None, desc="train", unit="step", dynamic_ncols=True)
    step = 0
    while True:
        elapsed = time.perf_counter() - t0
        if (args.max_steps and step >= args.max_steps) or elapsed >= budget:
            break
        model.train()
        src, tgt, au_s, au_t = sampler.batch(args.batch)
        fwd = model(src, au_t)
        loss_rec = (fwd.output - tgt).abs().mean()
        loss = args.w_rec * loss_rec + args.w_flow_tv * total_variation(fwd.flow)
        loss = loss + mask_terms(fwd.mask, args.w_mask, args.w_mask_tv)
        if args.w_cycle > 0:
            back = model(fwd.output, au_s)
            loss = loss + args.w_cycle * (back.output - src).abs().mean()
            loss = loss + args.w_flow_tv * total_variation(back.flow) + mask_terms(back.mask, args.w_mask,
                                                                                    args.w_mask_tv)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        ident = (src - tgt).abs().mean().item()
        history.append((step, loss.item(), loss_rec.item(), ident))
        bar.update(1)
        if step % 10 == 0:
            recent = np.mean([h[2] for h in history[-50:]]), np.mean([h[3] for h in history[-50:]])
            bar.set_postfix(rec=f"{recent[0]:.4f}", identity=f"{recent[1]:.4f}",
                            flow=f"{fwd.flow.abs().mean().item():.2f}px", mask=f"{fwd.mask.mean().item():.2f}",
                            min=f"{elapsed / 60:.1f}")
        if args.checkpoint_every and step % args.checkpoint_every == 0:
            model.save(out_dir / "editor")
    bar.close()
    train_seconds = time.perf_counter() - t0
    print(f"trained {step} steps in {train_seconds / 60:.1f} min", flush=True)

    config.extra = {
        "trained_by": "python -m training.train " + " ".join(sys.argv[1:]),
        "data": f"{len(train_videos)} videos of ../shared/data/faces (frames from `python -m training.data`)",
        "validation_videos": val_videos,
        "commit": git_commit(),
        "steps": step,
        "batch": args.batch,
        "train_minutes": round(train_seconds / 60, 1),
        "machine": f"CPU, {torch.get_num_threads()} threads, torch {torch.__version__}",
        "licence_note": "trained on clips whose footage may carry non-commercial terms (see MANIFEST.csv)",
    }
    model.config = config
    model.save(out_dir / "editor")

    with FaceMesh(static_image_mode=True) as mesh:
        result = evaluate_pairs(model, dataset, validation_pairs(dataset, val_videos, args.seed), mesh)
    table = format_table(result)
    print(table, flush=True)
    summary = {"steps": step, "train_seconds": train_seconds, "validation": result,
               "config": dataclasses.asdict(config)}
    config.extra["validation"] = {k: result[k] for k in ("model", "identity", "n_pairs")}
    model.save(out_dir / "editor")
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out_dir / "loss.csv").write_text("step,loss,rec,identity\n" + "".join(
        f"{s},{l:.5f},{r:.5f},{i:.5f}\n" for s, l, r, i in history))
    if args.install:
        for suffix in (".safetensors", ".json"):
            shutil.copyfile((out_dir / "editor").with_suffix(suffix), DEFAULT_WEIGHTS.with_suffix(suffix))
        print(f"installed as the default weights: {DEFAULT_WEIGHTS}.safetensors/.json")
    return summary


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m training.train", description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="dataset folder from `python -m training.data`")
    ap.add_argument("--out", required=True, help="run folder (checkpoints, summary.json, loss.csv)")
    ap.add_argument("--minutes", type=float, default=25.0, help="wall-clock training budget")
    ap.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (0: time budget only)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--width", type=int, default=24, help="trunk width (GANimation: 64)")
    ap.add_argument("--res-blocks", type=int, default=3, help="residual blocks (GANimation: 6)")
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--w-rec", type=float, default=1.0)
    ap.add_argument("--w-cycle", type=float, default=1.0)
    ap.add_argument("--w-flow-tv", type=float, default=0.01)
    ap.add_argument("--w-mask", type=float, default=0.1)
    ap.add_argument("--w-mask-tv", type=float, default=1e-5)
    ap.add_argument("--no-motion", action="store_true", help="texture-only ablation (GANimation: no flow)")
    ap.add_argument("--val-fraction", type=float, default=0.15)
    ap.add_argument("--checkpoint-every", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--install", action="store_true", help="copy the result over the bundled default weights")
    train(ap.parse_args(argv))


if __name__ == "__main__":
    main()
