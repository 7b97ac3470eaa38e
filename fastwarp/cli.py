"""The ``fastwarp`` command: edit the expression of a face in a photo or a video.

    fastwarp edit IMAGE --au AU12=3 --au AU25=1 -o OUT.png [--side-by-side CMP.png]
    fastwarp edit IMAGE --expr smile=0.8 --expr brows_up=0.5 -o OUT.png
    fastwarp video IN.mp4 --au AU12=+2 -o OUT.mp4
    fastwarp webcam --au AU12=3 [--camera 0|IN.mp4] [--show] [--virtual-cam] [-o OUT.mp4] [--stats]
    fastwarp presets
    fastwarp info
    fastwarp app [--host 127.0.0.1] [--port 7860]
    fastwarp export --format onnx -o fastwarp.onnx

``--au NAME=VALUE`` sets an AU to an absolute intensity (0..5); ``NAME=+D`` / ``NAME=-D``
changes the face's current (estimated) intensity by D. ``--expr NAME=S`` moves a preset's AUs
(:mod:`fastwarp.presets`) a fraction S of the way to it; later flags win. Errors print one line,
``fastwarp: error: ...``, and exit 1 (2 for a malformed command line); outputs are written
to a temporary file and renamed, so a failed run never leaves a partial output. On success
stderr stays quiet: ``-v`` (before or after the command) lets MediaPipe's, TensorFlow
Lite's and FFmpeg's own log lines through.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

import numpy as np

from ._native_log import quiet_native_stderr, show_native_logs
from .au import AU_NAMES, au_edits_only, clamped_edits, parse_au_edit
from .cli_io import (  # EXIT_USAGE, side_by_side: part of this module's API
    EXIT_ERROR,
    EXIT_USAGE,  # noqa: F401
    CLIError,
    UsageParser,
    check_device,
    check_image_output,
    check_input,
    check_output,
    one_line,
    output_file,
    side_by_side,
    write_image,
)


class _EditAction(argparse.Action):
    """``--au`` and ``--expr`` append ``(flag, text)`` to one list, keeping the flags' order."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, [*(getattr(namespace, self.dest, None) or []), (self.const, values)])


def _edits(specs: list[tuple[str, str]]) -> list:
    """In command-line order: ``(AU, value, relative)`` for ``--au``, ExprEdit for ``--expr``."""
    if not specs:
        raise CLIError("no edit requested: give at least one --au NAME=VALUE (e.g. --au AU12=3) "
                       "or --expr NAME=S (e.g. --expr smile=0.8; see: fastwarp presets)")
    from .presets import parse_expr_edit

    try:
        return [parse_au_edit(text) if flag == "au" else parse_expr_edit(text) for flag, text in specs]
    except ValueError as exc:
        raise CLIError(str(exc)) from None


def _au_summary(current: np.ndarray, target: np.ndarray) -> str:
    changed = [f"{n} {c:.1f}->{t:.1f}" for n, c, t in zip(AU_NAMES, current, target) if abs(t - c) >= 0.05]
    return ", ".join(changed) if changed else "no AU changed"


def cmd_edit(args: argparse.Namespace) -> int:
    edits = _edits(args.edits)
    image_path, out_path = Path(args.image), Path(args.output)
    check_input(image_path, "image")
    check_image_output(out_path)
    check_output(out_path)
    if args.side_by_side:
        check_image_output(Path(args.side_by_side))
        check_output(Path(args.side_by_side))
    if args.max_faces < 1:
        raise CLIError(f"--max-faces must be at least 1, got {args.max_faces}")
    check_device(args.device)
    from .cli_io import read_image

    photo = read_image(image_path)  # alpha, bit depth, grey, ICC, EXIF kept for the output
    for note in photo.notes:
        print(f"note: {note}")
    from .expression_editor import ExpressionEditor

    try:
        editor = ExpressionEditor(args.weights, args.device, max_crop_size=args.max_crop_size, motion=args.motion,
                                  max_faces=args.max_faces, resample=args.resample, texture=args.texture)
    except (OSError, ValueError) as exc:  # (FileNotFoundError: weights)
        raise CLIError(str(exc)) from None
    with editor:
        result = editor.edit(photo.bgr, edits, all_faces=args.all_faces)
    if not result.face_found:
        raise CLIError(f"no face found in {image_path}")
    if not any(face.changed for face in result.faces):
        # The editor's output is the input itself here (identity by construction with the
        # bundled weights: tests/test_cli.py checks the written pixels).
        print(f"no AU changed in {image_path} (the edits leave every AU at its current value)")
    n = len(result.faces)
    for i, face in enumerate(result.faces):
        if n > 1:  # one line per face: which one (the centre of its crop in the photo) and its AUs
            inv = np.linalg.inv(np.vstack([face.crop.matrix, [0.0, 0.0, 1.0]]))
            x, y = (inv[:2] @ [face.crop.size / 2, face.crop.size / 2, 1.0]).round().astype(int)
            print(f"edited {image_path}, face {i + 1} of {n} (at x={x}, y={y}): "
                  f"{_au_summary(face.current_aus, face.target_aus)}")
        elif face.changed:
            print(f"edited {image_path}: {_au_summary(face.current_aus, face.target_aus)}")
        for note in clamped_edits(face.current_aus, edits):
            print(f"note: {note}" if n == 1 else f"note: face {i + 1}: {note}")
    for note in write_image(out_path, result.frame, photo):
        print(f"note: {note}")
    print(f"wrote {out_path.resolve()}")
    if args.side_by_side:
        from .media.image import to_uint8

        write_image(Path(args.side_by_side), side_by_side(photo.bgr8, to_uint8(result.frame)))
        print(f"wrote {Path(args.side_by_side).resolve()} (input | edited)")
    return 0


def _camera_spec(text: str) -> int | Path:
    """``--camera``: an int is a camera index, anything else a video file standing in for one."""
    return int(text) if text.strip().isdigit() else Path(text)


def _check_display() -> None:
    import os

    # OpenCV's Qt window aborts the whole process where it finds no display: say so first.
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
                                                 or os.environ.get("QT_QPA_PLATFORM")):
        raise CLIError("--show needs a display, and neither DISPLAY nor WAYLAND_DISPLAY is set "
                       "(write the edited video with -o out.mp4, or send it to --virtual-cam)")


def _open_source(spec: int | Path, pace: bool = False):
    from .realtime import StreamError, VideoSource

    try:
        with quiet_native_stderr():  # FFmpeg's complaints about a file it cannot decode
            source = VideoSource(spec, pace=pace)
    except StreamError as exc:
        raise CLIError(str(exc)) from None
    if isinstance(spec, Path) and (source.width <= 0 or source.height <= 0):  # a stream with no picture size
        source.close()
        raise CLIError(f"cannot read video {spec}: no decodable frame")
    return source


def _make_engine(args: argparse.Namespace, edits, weights):
    from .realtime import RealtimeEngine

    smoothing = not args.no_smooth
    try:
        return RealtimeEngine(edits, weights, args.device, runtime=args.runtime, all_faces=args.all_faces,
                              max_faces=args.max_faces, smoothing=smoothing, max_crop_size=args.max_crop_size,
                              gpu_graph=args.gpu_graph, motion=args.motion, engine=args.engine,
                              resample=args.resample, texture=args.texture, region_refresh=args.region_refresh)
    except (OSError, ValueError, ImportError, RuntimeError) as exc:  # (FileNotFoundError: weights; TensorRT)
        raise CLIError(str(exc)) from None


def _check_video_output(args: argparse.Namespace, out_path: Path) -> None:
    """The container and codec of a video output, checked before any work."""
    if args.fourcc is not None:
        raise CLIError("--fourcc is retired: videos are written with FFmpeg's encoders; choose one with "
                       "--codec h264|h265|vp9|av1|ffv1 (default: h264, vp9 for .webm)")
    from .media.video import VideoError, codec_for

    try:
        codec_for(out_path, args.codec)
    except VideoError as exc:
        raise CLIError(str(exc)) from None


def _file_sink(path: Path, source, args: argparse.Namespace, out_path: Path):
    """The video writer of the temporary file ``path`` that becomes ``out_path``."""
    from .realtime import SinkError, VideoFileSink

    try:
        return VideoFileSink(path, source, codec=args.codec, crf=args.crf, audio=not args.no_audio, name=out_path)
    except SinkError as exc:
        raise CLIError(str(exc)) from None


def _summary(stats) -> str:
    return (f"{stats.frames} frames in {stats.wall_s:.1f}s ({stats.fps:.1f} frames/s); face edited in "
            f"{stats.faces_edited}, passed through unchanged in {stats.passed_through}")


def _stream_failed(stats, out_path: Path | None) -> int:
    """After a run that a read failure stopped: one error line saying what was kept."""
    n = stats.frames
    kept = (f"; the {n} frame{'s' * (n != 1)} edited before it {'are' if n != 1 else 'is'} in "
            f"{out_path.resolve()} (a valid, shorter video)") if out_path is not None else ""
    print(f"fastwarp: error: {stats.error}{kept}", file=sys.stderr)
    return EXIT_ERROR


def cmd_video(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .realtime import FrameSizeError, SinkError

    edits = _edits(args.edits)
    in_path, out_path = Path(args.input), Path(args.output)
    check_input(in_path, "video")
    _check_video_output(args, out_path)
    check_output(out_path)
    check_device(args.device)
    with _open_source(in_path) as source:  # noqa: SIM117 (the source must be open before the engine is made)
        with _make_engine(args, edits, args.weights or "base") as engine, output_file(out_path) as tmp:
            sink = _file_sink(tmp, source, args, out_path)
            bar = tqdm(total=source.frame_count, unit="frame", desc="fastwarp video", disable=args.quiet)

            def progress(result) -> None:
                bar.update(1)
                elapsed = bar.format_dict.get("elapsed") or 0.0
                if elapsed > 0:
                    bar.set_postfix(fps=f"{bar.n / elapsed:.1f}", refresh=False)

            try:
                stats = engine.run(source, [sink], max_frames=args.max_frames, on_frame=progress)
            except FrameSizeError as exc:
                raise CLIError(f"{in_path}: {exc}") from None
            except SinkError as exc:
                raise CLIError(str(exc)) from None
            finally:  # a run stopped early (--max-frames, Ctrl-C, a read failure) ends its audio there too
                sink.close(trim=engine.stats.stop != "end")
                bar.close()
            if stats.stop == "interrupted":
                raise KeyboardInterrupt
            if stats.frames == 0:
                raise CLIError(f"cannot read video {in_path}: no decodable frame"
                               + (f" ({stats.error})" if stats.error else ""))
    print(_summary(stats))
    print(f"wrote {out_path.resolve()} ({sink.writer.codec}; {sink.carried})")
    if args.stats:
        print(stats.format())
    return _stream_failed(stats, out_path) if stats.error else 0


def _show_window(controls, engine, expressions=()):
    """The --show callback: the edited frame with the AU targets and frames/s drawn on it;
    keys change the targets (LiveControls), applied after the ``--expr`` ``expressions``;
    returns False to stop."""
    expressions = list(expressions)
    prefix = " ".join(f"{e.name}={e.intensity:g}" for e in expressions)
    import collections

    import cv2

    window = "fastwarp webcam"
    cv2.namedWindow(window, cv2.WINDOW_NORMAL)
    stamps: collections.deque = collections.deque(maxlen=30)

    def on_frame(result) -> bool:
        stamps.append(time.perf_counter())
        fps = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 and stamps[-1] > stamps[0] else 0.0
        view = result.frame.copy()
        lines = [(prefix + " " if prefix and controls.enabled else "") + controls.describe(), f"{fps:.1f} frames/s, {len(result.faces)} face(s) edited"]
        for i, text in enumerate(lines):
            y = 22 + 22 * i
            cv2.putText(view, text, (8, y), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 3, cv2.LINE_AA)
            cv2.putText(view, text, (8, y), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 1, cv2.LINE_AA)
        cv2.imshow(window, view)
        action = controls.handle_key(cv2.waitKey(1))
        if action == "changed":
            engine.set_edits(expressions + controls.edits() if controls.enabled else [])
        if action == "quit" or cv2.getWindowProperty(window, cv2.WND_PROP_VISIBLE) < 1:
            return False
        return True

    return on_frame


def cmd_webcam(args: argparse.Namespace) -> int:
    from .realtime import FrameSizeError, LiveControls, SinkError, VirtualCamSink

    edits = [] if args.show and not args.edits else _edits(args.edits)
    spec = _camera_spec(args.camera)
    if isinstance(spec, Path):
        check_input(spec, "video")
    out_path = Path(args.output) if args.output else None
    if not (out_path or args.show or args.virtual_cam or args.stats):
        raise CLIError("nothing to do: give -o OUT.mp4, --show or --virtual-cam (or --stats to only measure)")
    if out_path:
        _check_video_output(args, out_path)
        check_output(out_path)
    check_device(args.device)
    if args.show:
        _check_display()
    sinks, vcam = [], None
    if args.pace and not isinstance(spec, Path):
        raise CLIError("--pace plays a video file at its own frame rate: give --camera FILE (a camera is paced already)")
    with _open_source(spec, pace=args.pace) as source, contextlib.ExitStack() as cleanup:
        if args.virtual_cam:
            try:
                vcam = VirtualCamSink(source.width, source.height, source.fps)
            except SinkError as exc:
                raise CLIError(str(exc)) from None
            cleanup.callback(vcam.close)
        engine = cleanup.enter_context(_make_engine(args, edits, args.weights))
        print(f"fastwarp webcam: {source.name} ({source.width}x{source.height}, {source.fps:g} fps), weights "
              f"{engine.weights} on {engine.device}, runtime {engine.runtime.runner}")
        on_frame = None
        if args.show:
            import cv2

            controls = LiveControls(au_edits_only(edits))
            print(controls.HELP)
            on_frame = _show_window(controls, engine, [e for e in edits if hasattr(e, "apply")])
            cleanup.callback(cv2.destroyAllWindows)
        tmp = cleanup.enter_context(output_file(out_path)) if out_path else None
        if tmp is not None:
            sinks.append(_file_sink(tmp, source, args, out_path))
        if vcam is not None:
            sinks.append(vcam)
            print(f"sending to virtual camera {vcam.device}")
        try:
            stats = engine.run(source, sinks, max_frames=args.max_frames, on_frame=on_frame)
        except FrameSizeError as exc:
            raise CLIError(f"{source.name}: {exc}") from None
        except SinkError as exc:
            raise CLIError(str(exc)) from None
        finally:
            if tmp is not None:
                sinks[0].close(trim=engine.stats.stop != "end")
        if stats.frames == 0:
            raise CLIError(stats.error or f"{source.name} gave no frame")
    if stats.stop == "interrupted":
        print(f"stopped by Ctrl-C after {stats.frames} frames")
    print(_summary(stats))
    if out_path:
        print(f"wrote {out_path.resolve()}")
    print(stats.format() if args.stats else f"runtime: {stats.runtime_reason}")
    return _stream_failed(stats, out_path) if stats.error else 0


def cmd_presets(args: argparse.Namespace) -> int:
    from .presets import format_presets

    print(format_presets())
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    import torch

    from . import __version__, backends, build_info
    from .models import BUNDLED_WEIGHTS, DEFAULT_WEIGHTS, WEIGHTS_DIR

    print(f"fastwarp {__version__}, torch {torch.__version__}")
    print("backends: " + ", ".join(f"{k}={'yes' if v else 'no'}" for k, v in backends().items()))
    info = build_info()
    print("CUDA kernels: " + (f"built for {', '.join(info['cuda_archs'])}; GPU visible: "
                              f"{'yes' if info['cuda_device'] else 'no'}" if info["cuda_kernels"] else "not built"))
    print(f"default weights: {DEFAULT_WEIGHTS}.safetensors")
    for name in BUNDLED_WEIGHTS:
        path = WEIGHTS_DIR / f"{name}.safetensors"
        print(f"bundled weights {name!r}: {path if path.is_file() else 'not installed'}")
    from .expression_editor import MOTION_WEIGHTS, TEXTURE_WEIGHTS, mesh_weights_installed

    print(f"mesh motion: {'installed' if mesh_weights_installed() else 'not installed'} "
          f"({MOTION_WEIGHTS}.safetensors, {TEXTURE_WEIGHTS}.safetensors); the default motion is "
          f"{'mesh' if mesh_weights_installed() else 'dense'}")
    print("region textures: " + ", ".join(
        f"{n} {'installed' if (WEIGHTS_DIR / f'{n}.safetensors').is_file() else 'not installed'}"
        for n in ("region_eye", "region_eye_lite", "region_mouth", "region_mouth_lite")))
    print("AUs: " + " ".join(AU_NAMES))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .export.graph import DEFAULT_OPSET

    out_path = Path(args.output)
    opset = args.opset if args.opset is not None else DEFAULT_OPSET
    if args.format == "tensorrt":
        if out_path.suffix not in (".engine", ".plan"):
            raise CLIError(f"the TensorRT engine must end in .engine or .plan, got {out_path}")
        if args.onnx and (args.weights is not None or args.opset is not None):
            raise CLIError("--onnx builds that file as it is: --weights and --opset apply only when fastwarp "
                           "exports the ONNX graph itself")
        if args.onnx and args.check:
            raise CLIError("--check compares the engine with the PyTorch model of --weights: not with --onnx")
        if args.max_batch < 1:
            raise CLIError(f"--max-batch must be at least 1, got {args.max_batch}")
        if not 1 <= args.opt_batch <= args.max_batch:
            raise CLIError(f"--opt-batch must be in 1..--max-batch ({args.max_batch}), got {args.opt_batch}")
        check_output(out_path)
        from .export.tensorrt import export_tensorrt
        from .models import EditorNet
        from .export.tensorrt import TensorRTUnavailableError, engine_parity

        try:
            model = None if args.onnx else EditorNet.load(args.weights)
            export_tensorrt(out_path, model, onnx_path=args.onnx, opset=opset, max_batch=args.max_batch,
                            opt_batch=args.opt_batch)
        except (TensorRTUnavailableError, OSError, ValueError, ImportError, RuntimeError) as exc:
            raise CLIError(str(exc)) from None
        print(f"wrote {out_path.resolve()} (TensorRT fp16 engine, batch 1..{args.max_batch}, tuned for "
              f"{args.opt_batch}; runs only on this GPU model with this TensorRT version)")
        if args.check:
            try:
                worst = engine_parity(out_path, model)
            except (TensorRTUnavailableError, ValueError, RuntimeError) as exc:
                raise CLIError(f"wrote {out_path}, but could not run it: {exc}") from None
            print("max |tensorrt fp16 - pytorch float32|: " + ", ".join(f"{k} {v:.2e}" for k, v in worst.items()))
        return 0
    if args.onnx:
        raise CLIError("--onnx is the input of --format tensorrt; --format onnx exports the weights")
    if out_path.suffix != ".onnx":
        raise CLIError(f"the ONNX output must end in .onnx, got {out_path}")
    check_output(out_path)
    from .export.onnx import export_onnx, onnx_parity
    from .models import EditorNet

    try:
        model = EditorNet.load(args.weights)
        export_onnx(out_path, model, opset=opset)
    except (OSError, ValueError, ImportError) as exc:  # (FileNotFoundError: weights; OSError: writing)
        raise CLIError(str(exc)) from None
    print(f"wrote {out_path.resolve()} (opset {opset}, dynamic batch)")
    if args.check:
        try:
            worst = onnx_parity(out_path, model)
        except (ImportError, ValueError, RuntimeError) as exc:  # (onnxruntime's errors are RuntimeErrors)
            raise CLIError(f"wrote {out_path}, but could not run it with ONNX Runtime: {exc}") from None
        print("max |onnxruntime - pytorch|: " + ", ".join(f"{k} {v:.2e}" for k, v in worst.items()))
    return 0


def cmd_app(args: argparse.Namespace) -> int:
    import importlib.util

    if importlib.util.find_spec("gradio") is None:
        raise CLIError("the web app needs gradio: pip install 'fastwarp[app]' (or make app)")
    check_device(args.device)
    from .app import launch

    print(f"fastwarp app: loading the models, then serving http://{args.host}:{args.port} (Ctrl-C stops it)")
    try:
        launch(args.host, args.port, args.weights, args.device, share=args.share)
    except (OSError, ValueError) as exc:  # (a port in use; FileNotFoundError: weights)
        raise CLIError(str(exc)) from None
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = UsageParser(prog="fastwarp", description="Edit facial expressions by Action Units.")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="let MediaPipe's, TensorFlow Lite's and FFmpeg's own log lines through to stderr")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser, output: str = "output file", live: str = "",
               weights: str = "default: base") -> None:
        sp.add_argument("--au", action=_EditAction, dest="edits", const="au", default=[], metavar="NAME=VALUE",
                        help="target AU: absolute (AU12=3) or relative to the face (AU12=+2); repeatable" + live)
        sp.add_argument("--expr", action=_EditAction, dest="edits", const="expr", default=[], metavar="NAME=S",
                        help="named expression at intensity S in 0..1 (smile=0.8; see: fastwarp presets); "
                             "repeatable, mixed with --au in command-line order (later flags win)" + live)
        sp.add_argument("-o", "--output", required=not live, default=None, help=output)
        sp.add_argument("--weights", default=None,
                        help=f"bundled weights name (base, lite) or a checkpoint path without suffix ({weights})")
        sp.add_argument("--device", default=None, choices=("cpu", "cuda"), help="default: cuda if available")
        sp.add_argument("--motion", default="auto", choices=("auto", "mesh", "dense"),
                        help="mesh: landmark motion through the face mesh (the default where its weights are "
                             "installed); dense: the editor network's own flow")
        sp.add_argument("--texture", default="auto", choices=("auto", "regions", "eyes", "mesh", "none"),
                        help="what paints where the warp cannot (mesh motion): regions = the mesh texture and the "
                             "eye and mouth region textures (a closed lid, not a smeared eye; a cavity between the "
                             "teeth, not stretched teeth); eyes = the eye region texture only; mesh = the mesh "
                             "texture alone; none = the warp alone; auto (default) = regions where its weights "
                             "are installed")
        sp.add_argument("--resample", default="bicubic", choices=("bicubic", "bilinear"),
                        help="image taps of the composite: bicubic (default; keeps the moved face's detail) or "
                             "bilinear (a little faster, softer)")
        sp.add_argument("--max-crop-size", type=int, default=512,
                        help="largest side of the face crop the networks see (their input is resized from it; the output keeps every face at full detail)")

    e = sub.add_parser("edit", help="edit the largest face of a photo (or every face: --all-faces)")
    e.add_argument("image", help="input photo (any format Pillow reads; alpha, 16 bits, grey, ICC profile and "
                                 "EXIF are kept in the output)")
    common(e)
    e.add_argument("--side-by-side", default=None, metavar="PATH", help="also write input | edited")
    e.add_argument("--all-faces", action="store_true", help="edit every face, not only the largest")
    e.add_argument("--max-faces", type=int, default=4,
                   help="the most faces to look for (default 4); the largest of them is edited, or each "
                        "with --all-faces")
    e.set_defaults(func=cmd_edit)

    def stream(sp: argparse.ArgumentParser, runtime: str, refresh: int) -> None:
        sp.add_argument("--codec", default="auto", choices=("auto", "h264", "h265", "vp9", "av1", "ffv1"),
                        help="video codec of the output (default auto: h264 in yuv420p, which every browser plays; "
                             "vp9 for .webm; ffv1 is lossless, for .mkv or .mov)")
        sp.add_argument("--crf", type=int, default=None,
                        help="constant rate factor, lower is better (default: h264 18, h265 20, vp9 24, av1 26)")
        sp.add_argument("--no-audio", action="store_true",
                        help="do not carry the input's audio over (by default every audio stream is copied, or "
                             "re-encoded where the container cannot hold it)")
        sp.add_argument("--fourcc", default=None, help=argparse.SUPPRESS)  # retired: says so
        sp.add_argument("--max-frames", type=int, default=0, help="stop after this many frames (0: all)")
        sp.add_argument("--runtime", default=runtime, choices=("auto", "torch", "onnx", "tensorrt"),
                        help=f"network runtime: on the CPU auto runs torch and ONNX Runtime in turn on the first "
                             f"faces and keeps the faster; on a GPU auto takes tensorrt where TensorRT is installed, "
                             f"else torch; tensorrt needs --motion dense (default {runtime})")
        sp.add_argument("--engine", default=None, metavar="FILE",
                        help="tensorrt: an engine of these weights (fastwarp export --format tensorrt); default: "
                             "one built once into the cache")
        sp.add_argument("--all-faces", action="store_true", help="edit every face, not only the largest")
        sp.add_argument("--max-faces", type=int, default=4,
                        help="the most faces to look for (default 4; 1 is faster but keeps the first face found)")
        sp.add_argument("--no-smooth", action="store_true", help="no One Euro smoothing of the landmarks")
        sp.add_argument("--gpu-graph", default="cuda-graph", choices=("cuda-graph", "compile", "none"),
                        help="on a GPU: CUDA graph capture, torch.compile reduce-overhead, or eager")
        sp.add_argument("--stats", action="store_true", help="print per-stage timings (mean, p50, p95 ms) and frames/s")
        sp.add_argument("--region-refresh", type=int, default=refresh, metavar="N",
                        help="run the region textures and the mesh texture under them on every N-th frame of a "
                             f"face, reusing their last paint on the frames between (faster; default {refresh})")

    v = sub.add_parser("video", help="edit the largest face in every frame of a video")
    v.add_argument("input", help="input video (any container FFmpeg reads; its audio is carried over)")
    common(v)
    stream(v, "torch", 1)
    v.add_argument("--quiet", action="store_true", help="no progress bar")
    v.set_defaults(func=cmd_video)

    w = sub.add_parser("webcam", help="edit a camera (or a video file standing in for one) in real time")
    w.add_argument("--camera", default="0", help="camera index, or a video file played as a camera (default 0)")
    common(w, "also write the edited video here (e.g. out.mp4)", " (optional with --show: the keys set AUs "
           "live, after the --expr edits)", "default: lite on a CPU where installed, else base")
    w.add_argument("--show", action="store_true", help="preview window; keys change the AU targets live")
    w.add_argument("--pace", action="store_true",
                   help="with --camera FILE: play the file at its own frame rate, as a camera would (frames are "
                        "dropped when editing falls behind; --stats then gives a camera's latency)")
    w.add_argument("--virtual-cam", action="store_true",
                   help="send the edited video to a virtual camera (pyvirtualcam; v4l2loopback on Linux)")
    stream(w, "auto", 5)  # lite, blink: 0.82-0.84x of the mesh path at 5, 0.59x at 1 (docs/evaluation/regions)
    w.set_defaults(func=cmd_webcam)

    sub.add_parser("presets", help="list the named expressions of --expr (name, AUs at full strength, "
                                   "description) and what AUs cannot express").set_defaults(func=cmd_presets)

    i = sub.add_parser("info", help="version, available kernel backends, default weights")
    i.set_defaults(func=cmd_info)

    x = sub.add_parser("export", help="export the editor network to ONNX (warp as standard GridSample), or build "
                                      "an fp16 TensorRT engine from that graph (needs TensorRT 10 and a CUDA GPU)")
    x.add_argument("--format", default="onnx", choices=("onnx", "tensorrt"), help="default: onnx")
    x.add_argument("-o", "--output", required=True, help="output file (.onnx; .engine or .plan for tensorrt)")
    x.add_argument("--weights", default=None, help="bundled weights name (base, lite) or a checkpoint path without suffix (default: base)")
    x.add_argument("--opset", type=int, default=None, choices=range(16, 20), metavar="{16..19}",
                   help="ONNX opset (default 18; TensorRT reads opset 20's bilinear GridSample as nearest)")
    x.add_argument("--onnx", default=None, metavar="PATH",
                   help="tensorrt: build from this ONNX file (of fastwarp export, opset 16..19) instead of the weights")
    x.add_argument("--max-batch", type=int, default=32, help="tensorrt: largest batch the engine accepts (default 32)")
    x.add_argument("--opt-batch", type=int, default=1, help="tensorrt: the batch its kernels are tuned for (default 1)")
    x.add_argument("--check", action="store_true",
                   help="also run it (ONNX Runtime, or TensorRT) and print the largest difference from PyTorch")
    x.set_defaults(func=cmd_export)
    a = sub.add_parser("app", help="a local web app (Gradio): edit a photo with sliders, or your webcam")
    a.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    a.add_argument("--port", type=int, default=7860, help="port to listen on (default 7860)")
    a.add_argument("--weights", default=None, help="bundled weights name (base, lite) or a checkpoint path without suffix (default: base)")
    a.add_argument("--device", default=None, choices=("cpu", "cuda"), help="default: cuda if available")
    a.add_argument("--share", action="store_true", help="also a public gradio.live link (off by default)")
    a.set_defaults(func=cmd_app)
    for sp in sub.choices.values():  # -v after the command too (SUPPRESS: it does not undo a -v before it)
        sp.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    show_native_logs(args.verbose)
    if not args.verbose:
        import logging

        # torch.onnx's exporter warns about every torchvision op it cannot register.
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    try:
        return args.func(args)
    except CLIError as exc:
        print(f"fastwarp: error: {one_line(exc)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("fastwarp: interrupted; no output written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
