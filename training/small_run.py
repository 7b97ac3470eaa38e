"""The run of a small mesh-path model (training.motion, training.texture): the run folder, the
video split, a resumable loop with a cosine learning rate, and the CLI around it.

A checkpoint (``<out>/checkpoint.pt``: the model's and optimiser's state, the step, the
sampler's RNG state and the loss history) is written atomically every ``cfg.every`` steps
and at the end, so ``resume`` continues bit for bit; a run folder with a checkpoint is
never overwritten without ``resume``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import torch
from tqdm import tqdm

from fastwarp._io import atomic_path

from .data import dataset_identities, load_dataset, split_videos

__all__ = ["open_run", "video_split", "run_loop", "finish", "cli"]

CHECKPOINT = "checkpoint.pt"


def open_run(out: str | Path, resume: bool) -> Path:
    """The run's checkpoint path (the folder created).

    Raises:
        ValueError: a checkpoint exists without ``resume``, or ``resume`` without one.
    """
    out = Path(out)
    ckpt = out / CHECKPOINT
    if ckpt.exists() and not resume:
        raise ValueError(f"{out} already has a checkpoint: pass --resume to continue it, or choose another --out")
    if resume and not ckpt.exists():
        raise ValueError(f"--resume: no checkpoint {ckpt}")
    out.mkdir(parents=True, exist_ok=True)
    return ckpt


def video_split(data: str | Path, val_fraction: float, seed: int) -> tuple[dict, list[str], list[str]]:
    """``(dataset, train videos, validation videos)`` of a dataset cache: its videos only (the
    photos stay held out), split by person (:func:`training.data.dataset_identities`)."""
    dataset = load_dataset(data)
    videos = sorted(n for n in dataset if not n.startswith("img_"))
    train, val = split_videos(videos, val_fraction, seed, dataset_identities(data))
    return dataset, train, val


def run_loop(ckpt: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, g: torch.Generator, *, steps: int,
             lr: float, every: int, step_fn: Callable[[], dict[str, torch.Tensor]], desc: str, resume: bool,
             progress: bool, stop_at: int | None, log_every: int) -> tuple[list[dict], float] | None:
    """Optimise ``model`` for ``steps`` steps of ``step_fn`` (it draws a batch with ``g`` and
    returns its losses, ``"total"`` first, not yet backpropagated), the learning rate
    ``lr * (1 + cos(pi step / steps)) / 2``; resumed from ``ckpt`` when ``resume``.

    Returns:
        ``(history, seconds)``: the losses every ``log_every`` steps and this call's time; None
        when stopped at ``stop_at`` (a checkpoint written: an interrupted run).
    """
    step, history = 0, []
    if resume:
        state = torch.load(ckpt, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        g.set_state(state["rng"])
        step, history = state["step"], state["history"]
    t0 = time.time()
    bar = tqdm(total=steps, initial=step, disable=not progress, desc=desc)
    try:
        while step < steps:
            for group in opt.param_groups:
                group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * min(step / steps, 1.0)))
            losses = step_fn()
            opt.zero_grad(set_to_none=True)
            losses["total"].backward()
            opt.step()
            step += 1
            bar.update(1)
            if step % log_every == 0:
                history.append({"step": step, **{k: float(v.detach()) for k, v in losses.items()}})
                bar.set_postfix(loss=f"{history[-1]['total']:.4f}")
            if step % every == 0 or step == steps or step == stop_at:
                with atomic_path(ckpt) as tmp:
                    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step,
                                "rng": g.get_state(), "history": history}, tmp)
            if step == stop_at:
                return None
    finally:
        bar.close()
    return history, time.time() - t0


def finish(out: Path, model, stem: str, extra: dict, summary: dict) -> dict:
    """Save the trained ``model`` (eval mode, ``extra`` as its config's provenance) as
    ``<out>/<stem>.safetensors/.json`` and ``summary`` as ``<out>/summary.json``; returns it."""
    model.eval()
    model.config.extra = extra
    model.save(Path(out) / stem)
    with atomic_path(Path(out) / "summary.json") as tmp:
        Path(tmp).write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _flag(text: str) -> bool:
    """A boolean setting's value: 1 / true / yes or 0 / false / no (``bool("0")`` would be True)."""
    low = text.strip().lower()
    if low in ("1", "true", "yes"):
        return True
    if low in ("0", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected 0 or 1, got {text!r}")


def cli(argv, prog: str, doc: str, config_cls, train_fn, report: Callable[[dict], None]) -> None:
    """``--<field>`` for every field of ``config_cls``, ``--resume``, ``--no-progress``; runs
    ``train_fn(config, resume=, progress=)`` and ``report``s its summary; a bad run folder or
    dataset exits 2 with one line."""
    ap = argparse.ArgumentParser(prog=prog, description=doc.splitlines()[0])
    for f, default in asdict(config_cls()).items():
        ap.add_argument("--" + f.replace("_", "-"), type=_flag if isinstance(default, bool) else type(default),
                        default=default, metavar="0|1" if isinstance(default, bool) else None)
    ap.add_argument("--resume", action="store_true", help="continue from <out>/checkpoint.pt")
    ap.add_argument("--no-progress", action="store_true")
    args = vars(ap.parse_args(argv))
    resume, progress = args.pop("resume"), not args.pop("no_progress")
    try:
        summary = train_fn(config_cls(**args), resume=resume, progress=progress)
    except (ValueError, FileNotFoundError) as e:
        ap.exit(2, f"error: {e}\n")
    report(summary)
