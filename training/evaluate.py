"""Edit-quality evaluation on held-out video pairs (DESIGN.md, "Evaluation protocol").

For pairs (source frame, target frame) of one held-out video, the model edits the source
to the target frame's AUs and the output is compared with the real target frame:
- L1 of output vs target (RGB in [-1, 1], whole crop);
- landmark NME: MediaPipe landmarks of output and target (both found on the aligned
  crops by the same detector), mean point distance / inter-ocular distance, over all
  478 points and over the expression regions (mouth, eyes, brows);
- AU error |AU(output) - AU(target)| on the AUs the geometric estimator sees.
The identity baseline (output = source) is measured on the same pairs.

CLI: ``python -m training.evaluate --weights fastwarp/weights/default --data .cache/dataset128``
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from fastwarp.au import AU_INDEX
from fastwarp.convert import bgr_to_tensor, tensor_to_bgr
from fastwarp.face import VISIBLE_AUS, FaceMesh, estimate_aus, inter_ocular_distance
from fastwarp.face.landmarks import EXPRESSION_REGIONS
from fastwarp.models import FaceEditor

from .data import load_dataset, make_pairs, split_videos

_VISIBLE = [AU_INDEX[a] for a in VISIBLE_AUS]


def landmark_errors(pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """NME of landmarks ``pred`` vs ``target`` (``[478, 2+]``, pixels), normalised by the
    target's inter-ocular distance: over all points and per expression region."""
    iod = inter_ocular_distance(target)
    d = np.linalg.norm(pred[:, :2] - target[:, :2], axis=1) / iod
    out = {"nme": float(d.mean())}
    for region, idx in EXPRESSION_REGIONS.items():
        out[f"nme_{region}"] = float(d[list(idx)].mean())
    return out


@torch.no_grad()
def evaluate_pairs(model: FaceEditor, dataset: dict, pairs: list[tuple[str, int, int]], mesh: FaceMesh,
                   batch_size: int = 16, progress: bool = True) -> dict[str, dict[str, float]]:
    """Mean metrics of ``model`` and of the identity baseline over ``pairs``.

    Returns:
        ``{"model": {...}, "identity": {...}, "n_pairs": {...}}`` with keys ``l1``, ``nme``,
        ``nme_mouth``, ``nme_eyes``, ``nme_brows``, ``au_err`` (means over the pairs where
        MediaPipe found a face in both images; ``n_pairs`` counts them).
    """
    model.eval()
    rows: dict[str, list[dict[str, float]]] = {"model": [], "identity": []}
    for start in tqdm(range(0, len(pairs), batch_size), desc="evaluate", disable=not progress, leave=False):
        chunk = pairs[start:start + batch_size]
        src = np.stack([dataset[v]["crops"][s] for v, s, _ in chunk])
        tgt = np.stack([dataset[v]["crops"][t] for v, _, t in chunk])
        aus = torch.from_numpy(np.stack([dataset[v]["aus"][t] for v, _, t in chunk]))
        src_aus = torch.from_numpy(np.stack([dataset[v]["aus"][s] for v, s, _ in chunk]))
        src_t = bgr_to_tensor(src)
        out_t = model(src_t, aus, src_aus).output
        out = tensor_to_bgr(out_t)
        tgt_t = bgr_to_tensor(tgt)
        for i in range(len(chunk)):
            lm_t = mesh.detect(tgt[i])
            if not lm_t:
                continue
            for name, img, img_t in (("model", out[i], out_t[i]), ("identity", src[i], src_t[i])):
                lm = mesh.detect(img)
                if not lm:
                    continue
                row = landmark_errors(lm[0], lm_t[0])
                row["l1"] = float((img_t - tgt_t[i]).abs().mean())
                row["au_err"] = float(np.abs(estimate_aus(lm[0]) - estimate_aus(lm_t[0]))[_VISIBLE].mean())
                rows[name].append(row)
    result: dict[str, dict[str, float]] = {"n_pairs": {k: len(v) for k, v in rows.items()}}
    for name, rs in rows.items():
        result[name] = {k: float(np.mean([r[k] for r in rs])) for k in rs[0]} if rs else {}
    return result


def validation_pairs(dataset: dict, val_videos: list[str], seed: int = 0, pairs_per_video: int = 12):
    """The fixed evaluation pairs: head pose within 0.15 rad, some AU differing by >= 1."""
    return make_pairs(dataset, val_videos, max_pose_diff=0.15, min_au_diff=1.0, pairs_per_video=pairs_per_video,
                      rng=np.random.default_rng(seed))


def format_table(result: dict) -> str:
    keys = ["l1", "nme", "nme_mouth", "nme_eyes", "nme_brows", "au_err"]
    lines = ["| | " + " | ".join(keys) + " | pairs |", "|---|" + "---|" * (len(keys) + 1)]
    for name in ("identity", "model"):
        vals = result.get(name, {})
        lines.append(f"| {name} | " + " | ".join(f"{vals.get(k, float('nan')):.4f}" for k in keys)
                     + f" | {result['n_pairs'].get(name, 0)} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default=None, help="checkpoint path without suffix (default: bundled weights)")
    ap.add_argument("--data", required=True, help="dataset folder from `python -m training.data`")
    ap.add_argument("--val-fraction", type=float, default=0.15)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="also write the result as JSON here")
    args = ap.parse_args(argv)
    dataset = load_dataset(args.data)
    _, val = split_videos(sorted(dataset), args.val_fraction, args.seed)
    model = FaceEditor.load(args.weights)
    with FaceMesh(static_image_mode=True) as mesh:
        result = evaluate_pairs(model, dataset, validation_pairs(dataset, val, args.seed), mesh)
    print(f"validation videos: {', '.join(val)}")
    print(format_table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
