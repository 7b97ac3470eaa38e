"""Training v0: self-supervised FaceEditor training on video frame pairs.

Each sample is two frames of one video (similar head pose): the model edits the source
frame to the target frame's estimated AUs and must reconstruct the target frame. Loss:
- reconstruction  L1(edit(src, AU_tgt), tgt)                         (weight ``--w-rec``)
- cycle           L1(edit(edit(src, AU_tgt), AU_src), src)           (GANimation's cycle loss)
- flow smoothness total variation of the flow, in pixels             (``--w-flow-tv``)
- landmark flow   at each MediaPipe landmark of the target frame, the backward flow must
                  point to the same landmark in the source frame: L1 of
                  flow(p_tgt) - (p_src - p_tgt) in pixels (``--w-landmark``). Both crops
                  come with landmarks from data preparation, so this is free supervision
                  of the motion that a photometric loss alone leaves ambiguous (L1).
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

from fastwarp._io import atomic_path
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


def landmark_flow_loss(flow: torch.Tensor, lm_src: torch.Tensor, lm_tgt: torch.Tensor) -> torch.Tensor:
    """L1 (pixels) between the flow sampled at the target landmarks and the displacement
    to the source landmarks (L1, not smooth-L1: most displacements are under a pixel,
    where a smooth-L1 is nearly flat).

    Args:
        flow (Tensor[N, 2, S, S]): backward flow in pixels.
        lm_src, lm_tgt (Tensor[N, P, 2]): landmark (x, y) in crop pixels, same points.
    """
    size = flow.shape[-1]
    grid = (lm_tgt / (size - 1) * 2 - 1)[:, None]  # [N, 1, P, 2], align_corners=True
    sampled = torch.nn.functional.grid_sample(flow, grid, mode="bilinear", padding_mode="border",
                                              align_corners=True)[:, :, 0]  # [N, 2, P]
    return (sampled.transpose(1, 2) - (lm_src - lm_tgt)).abs().mean()


def git_commit() -> str:
    """The commit the code runs from, with "-dirty" when the working tree has changes."""
    try:
        return subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


class PairSampler:
    """Random training batches: source and target crops ``[B, 3, S, S]`` in [-1, 1], their
    AUs ``[B, 17]`` and their landmarks ``[B, 478, 2]`` in crop pixels."""

    def __init__(self, dataset: dict, videos: list[str], seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        # Training uses every pose-compatible pair, also small expression changes (those
        # teach the model to leave a face alone when the AUs barely change).
        # Head pose within 0.06 rad: at 128 px a larger turn moves landmarks more than most
        # expressions do.
        self.pairs = make_pairs(dataset, videos, max_pose_diff=0.06, min_au_diff=0.0, pairs_per_video=2000,
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
        lm_s = torch.from_numpy(np.stack([self.dataset[v]["landmarks"][s] for v, s, _ in chosen]))
        lm_t = torch.from_numpy(np.stack([self.dataset[v]["landmarks"][t] for v, _, t in chosen]))
        src_t, tgt_t = bgr_to_tensor(src), bgr_to_tensor(tgt)
        # Mirror half the pairs (both frames alike): the AUs are bilateral, so labels hold,
        # and a landmark keeps its correspondence when both positions are mirrored.
        flip = torch.from_numpy(self.rng.random(size) < 0.5)
        src_t[flip] = src_t[flip].flip(-1)
        tgt_t[flip] = tgt_t[flip].flip(-1)
        width = src_t.shape[-1]
        for lm in (lm_s, lm_t):
            lm[flip, :, 0] = (width - 1) - lm[flip, :, 0]
        return src_t, tgt_t, torch.from_numpy(au_s), torch.from_numpy(au_t), lm_s, lm_t


def write_card(path: Path, summary: dict, table: str) -> None:
    """The weights card: what the checkpoint is, how it was made, what it scores."""
    cfg = summary["config"]
    extra = cfg["extra"]
    text = f"""# fastwarp default weights (training v0)

FaceEditor (MotionNet + TextureNet: GANimation trunk with AU-conditioned instance norms;
the motion net adds learned per-AU motion templates) at {cfg['image_size']} px, trunk width
{cfg['motion_width']}, {cfg['motion_res_blocks']} residual blocks per network, max flow
{cfg['max_flow']} x image size, conditioned on `{cfg['conditioning']}` AUs. Files:
`base.safetensors` (weights), `base.json` (architecture, AU order, provenance).

## How they were made

- Command: `{extra['trained_by']}` (after `python -m training.data --faces ../shared/data/faces
  --out .cache/dataset128 --size 128`), at commit `{extra['commit']}`.
- Data: {extra['data']}; validation videos (held out by identity): {', '.join(extra['validation_videos'])}.
- {extra['steps']} steps of batch {extra['batch']} in {extra['train_minutes']} min on {extra['machine']}.
- Losses: L1 reconstruction of the target frame, cycle L1, landmark flow (L1,
  pixels), flow total variation, GANimation's mask terms on the texture's share.

Stored in float16 (loading converts to float32); `python -m training.evaluate --data
.cache/dataset128` reproduces the table below from the stored weights.

## Validation (held-out videos; pairs with head pose within 0.15 rad and some AU
differing by at least 1; identity = output the source frame unchanged)

{table}

l1: mean absolute RGB error in [-1, 1] units over the crop; nme: MediaPipe landmark error
divided by the inter-ocular distance (all points, and mouth / eyes / brows); au_err: mean
|AU(output) - AU(target)| over the AUs the geometric estimator sees.

## Caveats

- A small model trained for minutes on one CPU: edits are real but modest, soft at the
  mouth; no adversarial or AU-regression training yet.
- AU targets come from fastwarp's geometric estimator (not OpenFace).
- {extra['licence_note']}.
"""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def train(args: argparse.Namespace) -> dict:
    torch.manual_seed(args.seed)
    commit = git_commit()  # at the start: the code that trains, not what is committed meanwhile
    dataset = load_dataset(args.data)
    names = sorted(dataset)
    train_videos, val_videos = split_videos(names, args.val_fraction, args.seed)
    sampler = PairSampler(dataset, train_videos, args.seed)
    print(f"{len(train_videos)} training videos ({len(sampler.pairs)} pairs), "
          f"{len(val_videos)} validation videos: {', '.join(val_videos)}", flush=True)
    size = int(next(iter(dataset.values()))["crops"].shape[1])
    config = EditorConfig(image_size=size, motion_width=args.width, motion_res_blocks=args.res_blocks,
                          texture_width=args.width, texture_res_blocks=args.res_blocks, use_motion=not args.no_motion,
                          conditioning=args.conditioning)
    model = FaceEditor(config)
    # The AU motion templates are a few thousand free parameters with one meaning each (a
    # flow field in pre-tanh units); they take larger steps than the convolution weights.
    templates = [p for n, p in model.named_parameters() if n.endswith("templates")]
    others = [p for n, p in model.named_parameters() if not n.endswith("templates")]
    opt = torch.optim.Adam([{"params": others}, {"params": templates, "lr": args.lr * args.template_lr_scale}],
                           lr=args.lr, betas=(0.5, 0.999))
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
        src, tgt, au_s, au_t, lm_s, lm_t = sampler.batch(args.batch)
        fwd = model(src, au_t, au_s)
        loss_rec = (fwd.output - tgt).abs().mean()
        loss = args.w_rec * loss_rec + args.w_flow_tv * total_variation(fwd.flow)
        if args.w_landmark > 0 and not args.no_motion:
            loss = loss + args.w_landmark * landmark_flow_loss(fwd.flow, lm_s, lm_t)
        loss = loss + mask_terms(fwd.mask, args.w_mask, args.w_mask_tv)
        if args.w_cycle > 0:
            back = model(fwd.output, au_s, au_t)
            loss = loss + args.w_cycle * (back.output - src).abs().mean()
            loss = loss + args.w_flow_tv * total_variation(back.flow) + mask_terms(back.mask, args.w_mask,
                                                                                    args.w_mask_tv)
            if args.w_landmark > 0 and not args.no_motion:
                loss = loss + args.w_landmark * landmark_flow_loss(back.flow, lm_t, lm_s)
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
        "commit": commit,
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
    write_card(out_dir / "editor.md", summary, table)
    (out_dir / "loss.csv").write_text("step,loss,rec,identity\n" + "".join(
        f"{s},{l:.5f},{r:.5f},{i:.5f}\n" for s, l, r, i in history))
    if args.install:
        # Shipped in float16 (half the size; loading converts back to float32).
        model.save(DEFAULT_WEIGHTS, dtype=torch.float16)
        shutil.copyfile(out_dir / "editor.md", DEFAULT_WEIGHTS.with_suffix(".md"))
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
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--template-lr-scale", type=float, default=10.0, help="learning-rate factor of the AU templates")
    ap.add_argument("--w-rec", type=float, default=1.0)
    ap.add_argument("--w-cycle", type=float, default=1.0)
    ap.add_argument("--w-flow-tv", type=float, default=0.01)
    ap.add_argument("--w-landmark", type=float, default=0.1)
    ap.add_argument("--w-mask", type=float, default=0.1)
    ap.add_argument("--w-mask-tv", type=float, default=1e-5)
    ap.add_argument("--conditioning", choices=("target", "delta"), default="delta",
                    help="networks see the target AUs (GANimation) or target minus source AUs (STGAN)")
    ap.add_argument("--no-motion", action="store_true", help="texture-only ablation (GANimation: no flow)")
    ap.add_argument("--val-fraction", type=float, default=0.15)
    ap.add_argument("--checkpoint-every", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--install", action="store_true", help="copy the result over the bundled default weights")
    train(ap.parse_args(argv))


if __name__ == "__main__":
    main()
