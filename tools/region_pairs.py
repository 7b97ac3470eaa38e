"""Held-out region pairs (issue 19's pair table): how close each way of making the target gets
to the real target region, per pair category.

For pairs (source region, target region) of one held-out video's track (``training.region_gan``'s
:class:`~training.region_gan.PairSampler`, fixed seed, one pair per target), the source is moved
to the target's landmarks and compared with the real target region:

- ``warp (mesh)``: the mesh warp alone, the inside of the mouth stretched with its triangles
  (the shipped warp before issue 19's teeth that follow the jaws);
- ``warp (jaws)``: the editor's warp now (for the mouth :func:`fastwarp.face.jaws.split_mouth_flow`;
  for the eyes the same as the mesh warp);
- each ``--model NAME=PATH`` region texture over ``warp (jaws)`` (its inputs from
  :func:`fastwarp.models.region_texture.region_inputs`, as the editor makes them).

PSNR (dB, RGB) is taken over the pixels where the region deforms (the motion gate of the mesh
alone, :func:`~fastwarp.models.region_texture.motion_gate`, the same weights for every row, teeth
included), pooled over the category's pairs.

    python tools/region_pairs.py --kind mouth --model new=fastwarp/weights/region_mouth \\
        [--data /root/fastwarp-runs/regions] [--faces ../shared/data/faces] [--pairs 64] [--out F.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fastwarp.models.region_texture import RegionTexture, composite, region_inputs  # noqa: E402
from training.region_gan import CATEGORIES, held_out_rows, make_batch  # noqa: E402
from training.regions import held_out_videos, load_regions  # noqa: E402


def _psnr(sq: float, n: float) -> float:
    return float(10 * np.log10(255.0 ** 2 / max(sq / max(n, 1e-9), 1e-10)))


@torch.no_grad()
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kind", default="mouth", choices=("eye", "mouth"))
    ap.add_argument("--data", type=Path, default=Path("/root/fastwarp-runs/regions"))
    ap.add_argument("--faces", type=Path, default=Path("../shared/data/faces"))
    ap.add_argument("--model", action="append", default=[], metavar="NAME=PATH")
    ap.add_argument("--pairs", type=int, default=64, help="pairs per category")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    _, val_videos = held_out_videos(args.faces)
    rs = load_regions(args.data, args.kind, val_videos)
    models = {n: RegionTexture.load(p).eval() for n, p in (m.split("=", 1) for m in args.model)}
    names = ["warp (mesh)", "warp (jaws)", *models]
    result = {}
    print(f"{args.kind}: {len(rs)} held-out regions of {len(set(rs.videos))} videos")
    print("| category | pairs | " + " | ".join(names) + " |")
    print("|---|---:|" + "---:|" * len(names))
    for cat in (c for c in CATEGORIES[args.kind] if c != "any"):
        try:
            rows = held_out_rows(rs, args.pairs, seed=3, category=cat, sharpest=False)
        except (ValueError, KeyError):
            continue
        sq = {n: 0.0 for n in names}
        count = 0.0
        for chunk in np.array_split(rows, max(1, len(rows) // 16)):
            b = make_batch(rs, chunk)
            side = ["left" if rs.side[r] == 1 else "right" for r in chunk[:, 1]]
            mesh = region_inputs(b["source"], torch.from_numpy(rs.landmarks[chunk[:, 0]]).float(),
                                 torch.from_numpy(rs.landmarks[chunk[:, 1]]).float(), rs.kind, side, jaws=False)
            w = mesh["gate"]  # the mesh's own motion gate: the same weights for every column, teeth included
            outs = {"warp (mesh)": mesh["warped"], "warp (jaws)": b["warped"]}
            for n, m in models.items():
                bm = make_batch(rs, chunk, cavity=True) if m.config.cavity else b  # its own inputs
                tex, mask = m(bm["warped"], bm["opening"], bm["contours"], bm["gate"], bm["au_delta"], bm["cavity"])
                outs[n] = composite(bm["warped"], tex, mask)
            for n, o in outs.items():
                sq[n] += float((((o.clamp(-1, 1) - b["target"]) * 127.5) ** 2 * w).sum())
            count += float(w.sum() * 3)
        result[cat] = {"pairs": len(rows), **{n: _psnr(sq[n], count) for n in names}}
        print(f"| {cat} | {len(rows)} | " + " | ".join(f"{result[cat][n]:.2f}" for n in names) + " |", flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"kind": args.kind, "psnr_db": result}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
