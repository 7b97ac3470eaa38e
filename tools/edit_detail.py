"""Does an edit keep the face? Zero edits and smile edits through ExpressionEditor on real
photos: the largest pixel change, the face's PSNR and the detail kept (variance of the
Laplacian in the face box, edited over input: docs/design.md, "Evaluation protocol"), with
a picture sheet to judge by eye.

    python tools/edit_detail.py --faces ../shared/data/faces --out docs/evaluation/composite

writes ``table.md``, ``metrics.json`` and ``sheet.jpg`` (per photo: input | zero edit |
smile | 4x the absolute smile difference, face crops). Photos without a face are listed
and skipped. Uses only ``ExpressionEditor.edit`` and ``FrameEdit.frame``, so the same file
measures an older checkout of fastwarp too (run it with that checkout first on sys.path).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import cv2
import numpy as np

DEFAULT_PHOTOS = 10
SMILE = "AU12=+2.5"


def face_box(landmarks: np.ndarray, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """The landmarks' bounding box (x0, y0, x1, y1), clipped to the image."""
    x0, y0 = np.floor(landmarks[:, :2].min(0)).astype(int)
    x1, y1 = np.ceil(landmarks[:, :2].max(0)).astype(int) + 1
    return max(x0, 0), max(y0, 0), min(x1, shape[1]), min(y1, shape[0])


def detail(image: np.ndarray, box: tuple[int, int, int, int]) -> float:
    """Variance of the Laplacian of the grey image inside ``box``."""
    x0, y0, x1, y1 = box
    grey = cv2.cvtColor(image[y0:y1, x0:x1], cv2.COLOR_BGR2GRAY).astype(np.float64)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def measure(faces: Path, weights: str | None, limit: int,
            resample: str | None = None) -> tuple[list[dict], list[str], list[np.ndarray]]:
    try:
        from fastwarp import ExpressionEditor
    except ImportError:  # checkouts before the layout issue
        from fastwarp.editor import ExpressionEditor
    from fastwarp.au import parse_au_edit

    rows, skipped, tiles = [], [], []
    photos = sorted((faces / "images").iterdir())
    options = {"resample": resample} if resample else {}  # (older checkouts have no resample=)
    with ExpressionEditor(weights, "cpu", **options) as editor:
        for path in photos:
            if len(rows) >= limit:
                break
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                continue
            zero = editor.edit(image, [parse_au_edit("AU12=+0")])
            if not zero.face_found:
                skipped.append(path.name)
                continue
            smile = editor.edit(image, [parse_au_edit(SMILE)])
            landmarks = editor.detect(image)[0]
            box = face_box(landmarks, image.shape)
            x0, y0, x1, y1 = box
            base = detail(image, box)
            rows.append({
                "photo": path.name, "size": f"{image.shape[1]}x{image.shape[0]}", "face_px": int(max(x1 - x0, y1 - y0)),
                "zero_max_diff": int(np.abs(zero.frame.astype(int) - image).max()),
                "zero_face_psnr": psnr(zero.frame[y0:y1, x0:x1], image[y0:y1, x0:x1]),
                "zero_detail": detail(zero.frame, box) / base,
                "smile_detail": detail(smile.frame, box) / base,
            })
            crops = [im[y0:y1, x0:x1] for im in (image, zero.frame, smile.frame)]
            crops.append(np.clip(np.abs(smile.frame.astype(int) - image) * 4, 0, 255).astype(np.uint8)[y0:y1, x0:x1])
            tiles.append(np.hstack([cv2.resize(c, (256, 256), interpolation=cv2.INTER_AREA) for c in crops]))
    return rows, skipped, tiles


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--faces", type=Path, default=Path("../shared/data/faces"))
    ap.add_argument("--weights", default=None, help="bundled name or checkpoint (default: base)")
    ap.add_argument("--photos", type=int, default=DEFAULT_PHOTOS, help="how many photos with a face")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--label", default="", help="a line on what was measured (e.g. the commit)")
    ap.add_argument("--resample", choices=("bicubic", "bilinear"), default=None,
                    help="the composite's image taps (default: the editor's own)")
    args = ap.parse_args(argv)
    rows, skipped, tiles = measure(args.faces, args.weights, args.photos, args.resample)
    if not rows:
        print("no photo with a face", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    med = {k: float(np.median([r[k] for r in rows])) for k in ("zero_face_psnr", "zero_detail", "smile_detail")}
    lines = [f"# Zero and smile edits on {len(rows)} photos {args.label}".rstrip(), "",
             "| photo | size | face px | zero edit: max diff | zero edit: face PSNR dB | zero edit: detail | "
             f"`{SMILE}`: detail |", "|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['photo']} | {r['size']} | {r['face_px']} | {r['zero_max_diff']} | "
                     f"{r['zero_face_psnr']:.1f} | {r['zero_detail']:.3f} | {r['smile_detail']:.3f} |")
    lines += ["", f"Worst zero-edit difference: {max(r['zero_max_diff'] for r in rows)} grey levels; median face "
              f"PSNR {med['zero_face_psnr']:.1f} dB; median detail kept: zero edit {med['zero_detail']:.3f}x, "
              f"smile {med['smile_detail']:.3f}x (minimum {min(r['smile_detail'] for r in rows):.3f}x).",
              "Detail: variance of the Laplacian in the face's landmark box, edited over input.",
              "Sheet (`sheet.jpg`): input | zero edit | smile | 4x |smile - input|, face boxes."]
    if skipped:
        lines.append(f"No face found (skipped): {', '.join(skipped)}.")
    (args.out / "table.md").write_text("\n".join(lines) + "\n")
    (args.out / "metrics.json").write_text(json.dumps({"rows": rows, "median": med, "skipped": skipped},
                                                      indent=1, default=str) + "\n")
    cv2.imwrite(str(args.out / "sheet.jpg"), np.vstack(tiles), [cv2.IMWRITE_JPEG_QUALITY, 88])
    print("\n".join(lines))
    print(f"wrote {args.out}/table.md, metrics.json, sheet.jpg")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
