"""What FaceMesh's lid gap reads on real eyes: the training videos' eye regions binned by their
lid gap (:func:`fastwarp.face.regions.eye_gap`, eye widths), five at random per bin, at 2x
(nearest neighbour) with the eye contour's landmarks drawn, and the gap's percentiles; where the
lids visibly meet is what :data:`fastwarp.face.lids.LID_FLOOR` stands for.

    python tools/lid_gap_sheet.py [--data /root/fastwarp-runs/regions] [--out docs/evaluation/regions/lid_gaps.png]

Only regions not upsampled more than 1.6x from their frame (sharp enough to judge) are drawn.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fastwarp.face.landmarks import LEFT_EYE, RIGHT_EYE  # noqa: E402
from training.regions import load_regions  # noqa: E402

BINS = ((0.0, 0.05), (0.05, 0.08), (0.08, 0.11), (0.11, 0.15), (0.15, 0.20))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path("/root/fastwarp-runs/regions"))
    ap.add_argument("--out", type=Path, default=ROOT / "docs/evaluation/regions/lid_gaps.png")
    ap.add_argument("--per-bin", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    manifest = json.loads((args.data / "manifest.json").read_text())
    done = set(manifest["videos"])
    rs = load_regions(args.data, "eye", [v for v in manifest["train_videos"] if v in done])
    g = rs.gap
    print(f"{len(rs)} eye regions; lid gap percentiles 1/5/10/25/50/75/95: "
          + " / ".join(f"{x:.3f}" for x in np.percentile(g, [1, 5, 10, 25, 50, 75, 95])))
    rng = np.random.default_rng(args.seed)
    rows = []
    for lo, hi in BINS:
        pick = np.flatnonzero((g >= lo) & (g < hi) & (rs.scale <= 1.6))
        pick = rng.choice(pick, min(args.per_bin, len(pick)), replace=False)
        tiles = []
        for k in pick:
            im = cv2.resize(np.ascontiguousarray(rs.images[k][..., ::-1]), None, fx=2, fy=2,
                            interpolation=cv2.INTER_NEAREST)
            contour = sorted(RIGHT_EYE if rs.side[k] == 0 else LEFT_EYE)  # a left eye is mirrored with its points
            for x, y in rs.landmarks[k][contour]:
                cv2.circle(im, (int(round(2 * x + 0.5)), int(round(2 * y + 0.5))), 1, (0, 255, 0), -1)
            cv2.putText(im, f"{g[k]:.3f}", (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
            tiles.append(im)
        strip = np.full((22, sum(t.shape[1] for t in tiles), 3), 255, np.uint8)
        cv2.putText(strip, f"lid gap {lo:.2f}-{hi:.2f} eye widths", (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                    (0, 0, 0), 1, cv2.LINE_AA)
        rows.append(np.vstack([strip, np.hstack(tiles)]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), np.vstack(rows))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
