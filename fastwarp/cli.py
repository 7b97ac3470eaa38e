"""The ``fastwarp`` command: edit the expression of a face in a photo or a video.

    fastwarp edit IMAGE --au AU12=3 --au AU25=1 -o OUT.png [--side-by-side CMP.png]
    fastwarp video IN.mp4 --au AU12=+2 -o OUT.mp4
    fastwarp info
    fastwarp export --format onnx -o fastwarp.onnx

``--au NAME=VALUE`` sets an AU to an absolute intensity (0..5); ``NAME=+D`` / ``NAME=-D``
changes the face's current (estimated) intensity by D. Errors print one line and exit
non-zero; outputs are written to a temporary file and renamed, so a failed run never
leaves a partial output.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from .au import AU_NAMES, parse_au_edit

EXIT_ERROR = 1
EXIT_USAGE = 2


class CLIError(Exception):
    """A user-facing error: printed as one line, exit status EXIT_ERROR."""


def _edits(specs: list[str]) -> list[tuple[str, float, bool]]:
    if not specs:
        raise CLIError("no edit requested: give at least one --au NAME=VALUE (e.g. --au AU12=3)")
    try:
        return [parse_au_edit(s) for s in specs]
    except ValueError as exc:
        raise CLIError(str(exc)) from None


def _check_input(path: Path, what: str) -> None:
    if not path.exists():
        raise CLIError(f"{what} not found: {path}")
    if not path.is_file():
        raise CLIError(f"{what} is not a file: {path}")


def _check_image_output(path: Path) -> None:
    import cv2

    if not cv2.haveImageWriter(str(path)):
        raise CLIError(f"cannot write images of type '{path.suffix or '(none)'}': {path} (use .png or .jpg)")


def _au_summary(current: np.ndarray, target: np.ndarray) -> str:
    changed = [f"{n} {c:.1f}->{t:.1f}" for n, c, t in zip(AU_NAMES, current, target) if abs(t - c) >= 0.05]
    return ", ".join(changed) if changed else "no AU changed"


def side_by_side(before: np.ndarray, after: np.ndarray, labels=("input", "edited")) -> np.ndarray:
    """Input and output next to each other with a caption strip, ``[H + 28, 2W, 3]`` uint8."""
    import cv2

    h, w = before.shape[:2]
    strip = np.full((28, 2 * w, 3), 255, np.uint8)
    for i, text in enumerate(labels):
        cv2.putText(strip, text, (i * w + 8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    return np.vstack([strip, np.hstack([before, after])])


def _write_image(path: Path, image: np.ndarray) -> None:
    import cv2

    from ._io import atomic_path

    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), image):
            raise CLIError(f"could not write {path}")


def cmd_edit(args: argparse.Namespace) -> int:
    import cv2

    edits = _edits(args.au)
    image_path, out_path = Path(args.image), Path(args.output)
    _check_input(image_path, "image")
    _check_image_output(out_path)
    if args.side_by_side:
        _check_image_output(Path(args.side_by_side))
    frame = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
    if frame is None:
        raise CLIError(f"cannot read image {image_path}: not an image OpenCV can decode")
    from .editor import ExpressionEditor

    with ExpressionEditor(args.weights, args.device, max_crop_size=args.max_crop_size) as editor:
        result = editor.edit(frame, edits)
    if not result.face_found:
        raise CLIError(f"no face found in {image_path}")
    _write_image(out_path, result.frame)
    print(f"edited {image_path}: {_au_summary(result.current_aus, result.target_aus)}")
    print(f"wrote {out_path.resolve()}")
    if args.side_by_side:
        _write_image(Path(args.side_by_side), side_by_side(frame, result.frame))
        print(f"wrote {Path(args.side_by_side).resolve()} (input | edited)")
    return 0


def cmd_video(args: argparse.Namespace) -> int:
    import cv2
    from tqdm import tqdm

    from ._io import atomic_path
    from .editor import ExpressionEditor

    edits = _edits(args.au)
    in_path, out_path = Path(args.input), Path(args.output)
    _check_input(in_path, "video")
    cap = cv2.VideoCapture(str(in_path))
    try:
        if not cap.isOpened():
            raise CLIError(f"cannot read video {in_path}: not a video OpenCV can decode")
        fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
        ok, frame = cap.read()
        if not ok:
            raise CLIError(f"cannot read video {in_path}: no decodable frame")
        h, w = frame.shape[:2]
        n = edited = 0
        with atomic_path(out_path) as tmp, ExpressionEditor(args.weights, args.device, video=True,
                                                            max_crop_size=args.max_crop_size) as editor:
            writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*args.fourcc), fps, (w, h))
            if not writer.isOpened():
                raise CLIError(f"cannot write video {out_path} with codec {args.fourcc!r} (try an .mp4 output)")
            t0 = time.perf_counter()
            try:
                with tqdm(total=total, unit="frame", desc="fastwarp video", disable=args.quiet) as bar:
                    while ok:
                        if frame.shape[:2] != (h, w):
                            raise CLIError(f"frame {n} of {in_path} changes size to {frame.shape[1]}x{frame.shape[0]}")
                        result = editor.edit(frame, edits)
                        writer.write(result.frame)
                        n += 1
                        edited += result.face_found
                        bar.update(1)
                        bar.set_postfix(fps=f"{n / (time.perf_counter() - t0):.1f}")
                        if args.max_frames and n >= args.max_frames:
                            break
                        ok, frame = cap.read()
            finally:
                writer.release()
            elapsed = time.perf_counter() - t0
    finally:
        cap.release()
    print(f"{n} frames in {elapsed:.1f}s ({n / elapsed:.1f} frames/s); face edited in {edited}, "
          f"passed through unchanged in {n - edited}")
    print(f"wrote {out_path.resolve()}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    import torch

    from . import __version__, backends
    from .models import BUNDLED_WEIGHTS, DEFAULT_WEIGHTS, WEIGHTS_DIR

    print(f"fastwarp {__version__}, torch {torch.__version__}")
    print("backends: " + ", ".join(f"{k}={'yes' if v else 'no'}" for k, v in backends().items()))
    print(f"default weights: {DEFAULT_WEIGHTS}.safetensors")
    for name in BUNDLED_WEIGHTS:
        path = WEIGHTS_DIR / f"{name}.safetensors"
        print(f"bundled weights {name!r}: {path if path.is_file() else 'not installed'}")
    print("AUs: " + " ".join(AU_NAMES))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    out_path = Path(args.output)
    if args.format == "tensorrt":
        import importlib.util

        if importlib.util.find_spec("tensorrt") is None:
            raise CLIError("--format tensorrt needs NVIDIA TensorRT (the tensorrt Python package), which is not "
                           "installed here; export --format onnx and build an engine where TensorRT is installed")
        raise CLIError("--format tensorrt is not implemented yet; export --format onnx and build an fp16 engine "
                       "with trtexec --onnx=MODEL.onnx --fp16")
    if out_path.suffix != ".onnx":
        raise CLIError(f"the ONNX output must end in .onnx, got {out_path}")
    from .export import export_onnx, onnx_parity
    from .models import FaceEditor

    try:
        model = FaceEditor.load(args.weights)
        export_onnx(out_path, model, opset=args.opset)
    except (FileNotFoundError, ValueError, ImportError) as exc:
        raise CLIError(str(exc)) from None
    print(f"wrote {out_path.resolve()} (opset {args.opset}, dynamic batch)")
    if args.check:
        worst = onnx_parity(out_path, model)
        print("max |onnxruntime - pytorch|: " + ", ".join(f"{k} {v:.2e}" for k, v in worst.items()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fastwarp", description="Edit facial expressions by Action Units.")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--au", action="append", default=[], metavar="NAME=VALUE",
                        help="target AU: absolute (AU12=3) or relative to the face (AU12=+2); repeatable")
        sp.add_argument("-o", "--output", required=True, help="output file")
        sp.add_argument("--weights", default=None, help="bundled weights name (base, lite) or a checkpoint path without suffix (default: base)")
        sp.add_argument("--device", default=None, choices=("cpu", "cuda"), help="default: cuda if available")
        sp.add_argument("--max-crop-size", type=int, default=512,
                        help="largest face crop side in pixels (detail is kept up to this)")

    e = sub.add_parser("edit", help="edit the largest face of a photo")
    e.add_argument("image", help="input photo (any format OpenCV reads)")
    common(e)
    e.add_argument("--side-by-side", default=None, metavar="PATH", help="also write input | edited")
    e.set_defaults(func=cmd_edit)

    v = sub.add_parser("video", help="edit the largest face in every frame of a video")
    v.add_argument("input", help="input video (any format OpenCV reads)")
    common(v)
    v.add_argument("--fourcc", default="mp4v", help="output codec (default mp4v)")
    v.add_argument("--max-frames", type=int, default=0, help="stop after this many frames (0: all)")
    v.add_argument("--quiet", action="store_true", help="no progress bar")
    v.set_defaults(func=cmd_video)

    i = sub.add_parser("info", help="version, available kernel backends, default weights")
    i.set_defaults(func=cmd_info)

    x = sub.add_parser("export", help="export the editor network (warp as standard GridSample) to ONNX")
    x.add_argument("--format", default="onnx", choices=("onnx", "tensorrt"), help="default: onnx")
    x.add_argument("-o", "--output", required=True, help="output file (.onnx)")
    x.add_argument("--weights", default=None, help="bundled weights name (base, lite) or a checkpoint path without suffix (default: base)")
    x.add_argument("--opset", type=int, default=18, choices=range(16, 20), metavar="{16..19}",
                   help="ONNX opset (default 18; TensorRT reads opset 20's bilinear GridSample as nearest)")
    x.add_argument("--check", action="store_true",
                   help="also run it in ONNX Runtime and print the largest difference from PyTorch")
    x.set_defaults(func=cmd_export)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except CLIError as exc:
        print(f"fastwarp: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("fastwarp: interrupted; no output written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
