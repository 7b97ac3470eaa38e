"""Is a constant edit of a talking clip steady over time? (issue "Media in, media out, kept
whole", item 5; docs/evaluation/video_steadiness.md.)

For each clip: its first ``--frames`` frames are edited by :class:`fastwarp.realtime.RealtimeEngine`
in-process (``engine.process`` frame after frame: the per-frame code of ``engine.run`` and of
``fastwarp video``, without its threads), with a zero edit (``--au AU12=+0``), ``--expr smile=1``
and ``--expr blink=1``. Each edited sequence is then encoded and decoded again as ``fastwarp
video`` writes an .mp4 by default (``--codec h264``: libx264, CRF 18, yuv420p, in memory;
``--codec none`` skips it). MediaPipe FaceMesh (:class:`fastwarp.face.FaceMesh`; static image
mode by default: every frame detected afresh, ``--mesh-mode video`` tracks) reads the input
frames and every output, and three measures are taken per frame in inter-ocular distances
(IOD, outer eye corners of the *input* frame's landmarks, so both sides of a frame share one
scale):

- ``mouth``: the lip-corner distance (landmarks 61-291);
- ``lids``: the upper-to-lower lid gap, mean of both eyes (159-145, 386-374);
- ``brows``: each brow's centre (mean of its outline) to its eye's upper lid (159, 386), mean
  of both sides.

The edit offset of a frame is ``measure(output) - measure(input)``; the jitter of a sequence is
the standard deviation of its frame-to-frame change (``np.diff``), in IOD. The zero edit returns
the frame bit for bit, so its offset is what re-encoding alone does to MediaPipe's reading: the
floor. ``ratio`` = edit jitter / floor jitter (1 = the edit adds nothing; with ``--codec none``
the floor is exactly 0 and only the absolute jitters mean anything).

Two more views of the same runs:

- engine side (mesh motion only): the same measures of the engine's own landmarks before and
  after the motion its warp was rendered from (no MediaPipe on the output): the jitter of
  that offset over the jitter of the landmarks' own measure (:func:`engine_side`);
- ``--controls``: steady changes by construction (every frame shifted half a pixel, or zoomed
  3 %), through the same codec and reading: what MediaPipe's reading of changed pixels adds
  by itself (:data:`CONTROLS`).

Variants: ``before`` runs the engine with ``smoothing={"steady_edit": False}`` (the edit read off
each frame's smoothed landmarks: the engine before the steady edit), ``after`` with the
defaults; ``NAME=JSON`` runs any other smoothing dict. ::

    OMP_NUM_THREADS=1 python tools/video_jitter.py --controls --out docs/evaluation/video_steadiness

writes ``video_steadiness.json`` (every number; per-frame offsets of ``--figure-clip`` only),
``video_steadiness_table.md`` and ``video_steadiness.png`` (the offsets over time of
``--figure-clip``, before/after).
"""

from __future__ import annotations

import argparse
import io
import json
import re
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

#: Held out from the bundled mesh-path models: these clips' people are in the
#: ``validation_videos`` of fastwarp/weights/motion.json and texture.json (split by identity).
DEFAULT_CLIPS = ("lp_d3", "lp_d12", "eamm_surprised", "sty_src_Obama_clip1", "dt_W009_neutral")
EDITS = {"zero": "--au AU12=+0", "smile": "--expr smile=1", "blink": "--expr blink=1"}
MEASURES = ("mouth", "lids", "brows")
VARIANTS = {"before": {"steady_edit": False}, "after": {}}

_RIGHT_OUTER, _LEFT_OUTER = 33, 263
_CORNERS = (61, 291)
_LIDS = ((159, 145), (386, 374))
_UPPER_LIDS = (159, 386)


def parse_edit(name: str) -> list:
    """The edit list of one of :data:`EDITS`."""
    from fastwarp.au import parse_au_edit
    from fastwarp.presets import parse_expr_edit

    flag, spec = EDITS[name].split()
    return [parse_au_edit(spec) if flag == "--au" else parse_expr_edit(spec)]


def read_frames(path: str | Path, count: int, start: int = 0) -> tuple[list[np.ndarray], float]:
    """Frames ``start .. start + count`` of a video (uint8 BGR) and its frame rate."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise SystemExit(f"cannot open {path}")
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 25.0)
    frames, i = [], 0
    while len(frames) < count:
        ok, frame = cap.read()
        if not ok:
            break
        if i >= start:
            frames.append(frame)
        i += 1
    cap.release()
    return frames, fps


def roundtrip(frames: list[np.ndarray], fps: float, codec: str = "h264", crf: int = 18) -> list[np.ndarray]:
    """``frames`` encoded as ``fastwarp video`` writes an .mp4 by default (libx264, CRF
    ``crf``, yuv420p) and decoded again; ``codec="none"``: the frames themselves."""
    if codec == "none":
        return [f.copy() for f in frames]
    import av
    from fractions import Fraction

    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as box:
        stream = box.add_stream({"h264": "libx264"}[codec], rate=Fraction(fps).limit_denominator(1001))
        h, w = frames[0].shape[:2]
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": str(crf)}
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="bgr24")):
                box.mux(packet)
        for packet in stream.encode():
            box.mux(packet)
    buf.seek(0)
    with av.open(buf, "r") as box:
        out = [fr.to_ndarray(format="bgr24") for fr in box.decode(video=0)]
    if len(out) != len(frames):
        raise RuntimeError(f"round trip gave {len(out)} frames of {len(frames)}")
    return out


def landmarks(frames: list[np.ndarray], mode: str = "static") -> np.ndarray:
    """FaceMesh landmarks ``[N, 478, 3]`` of each frame (NaN: no face): ``mode="static"``
    detects every frame afresh, ``"video"`` tracks through the sequence (a fresh FaceMesh
    for each sequence)."""
    from fastwarp.face import FaceMesh

    out = np.full((len(frames), 478, 3), np.nan, np.float32)
    with FaceMesh(static_image_mode=mode == "static", max_faces=1) as mesh:
        for i, f in enumerate(frames):
            found = mesh.detect(f)
            if found:
                out[i] = found[0]
    return out


def iod(lm: np.ndarray) -> np.ndarray:
    """``[N]`` inter-ocular (outer eye corner) distance in pixels."""
    return np.linalg.norm(lm[:, _LEFT_OUTER, :2] - lm[:, _RIGHT_OUTER, :2], axis=-1)


def measures(lm: np.ndarray, scale: np.ndarray) -> dict[str, np.ndarray]:
    """The three measures of landmarks ``[N, 478, 2 or 3]``, each ``[N]`` in units of ``scale``
    (``[N]`` pixels: the input frames' IOD)."""
    from fastwarp.face.landmarks import LEFT_BROW, RIGHT_BROW

    p = np.asarray(lm, np.float64)[..., :2]

    def dist(a, b):
        return np.linalg.norm(p[:, a] - p[:, b], axis=-1)

    brows = [np.linalg.norm(p[:, list(brow)].mean(1) - p[:, lid], axis=-1)
             for brow, lid in ((RIGHT_BROW, _UPPER_LIDS[0]), (LEFT_BROW, _UPPER_LIDS[1]))]
    return {"mouth": dist(*_CORNERS) / scale,
            "lids": 0.5 * (dist(*_LIDS[0]) + dist(*_LIDS[1])) / scale,
            "brows": 0.5 * (brows[0] + brows[1]) / scale}


def jitter(offset: np.ndarray) -> float:
    """Standard deviation of the frame-to-frame change of ``offset`` (frames without a face
    on either side are left out)."""
    d = np.diff(np.asarray(offset, np.float64))
    d = d[np.isfinite(d)]
    return float(d.std()) if len(d) > 1 else float("nan")


def edit_sequence(frames: list[np.ndarray], fps: float, edit: str, smoothing: dict, *, weights=None,
                  device: str = "cpu", max_faces: int = 1) -> tuple[list[np.ndarray], float, dict | None]:
    """The frames edited in-process by a fresh :class:`RealtimeEngine` (frame times ``i /
    fps``). Returns them, the engine's mean milliseconds per frame and, on the mesh path, the
    motion the engine applied (:func:`engine_side`), else None."""
    from fastwarp.realtime import RealtimeEngine

    out, moves = [], []
    with RealtimeEngine(parse_edit(edit), weights, device, max_faces=max_faces, smoothing=dict(smoothing)) as engine:
        mesh = engine.editor.mesh_motion
        if mesh is not None:  # record the mesh and the motion each frame's warp was rendered from
            motion = mesh.motion

            def recorded(*args, **kwargs):
                verts, moved = motion(*args, **kwargs)
                moves.append((len(out), verts[0, :478].numpy().copy(), moved[0, :478].numpy().copy()))
                return verts, moved

            mesh.motion = recorded
        engine.reset()
        t0 = time.perf_counter()
        for i, frame in enumerate(frames):
            out.append(engine.process(frame, i / fps, i).frame)
        ms = (time.perf_counter() - t0) / max(len(frames), 1) * 1e3
    return out, ms, (engine_side(moves, len(frames)) if mesh is not None else None)


def engine_side(moves: list[tuple[int, np.ndarray, np.ndarray]], count: int) -> dict:
    """The edit as the engine applied it, without MediaPipe reading the output: for each frame
    the three measures of the engine's own (smoothed) landmarks before and after the motion
    the warp was rendered from (map-grid pixels; IOD of those landmarks). Returns per measure
    the jitter of that offset, the jitter of the landmarks' own measure (the face's motion as
    the engine sees it) and their ratio: about 1 when the edit undoes the face's motion from
    frame to frame (the offset mirrors it), near 0 when the edit is the same in every frame.
    Frames where no motion was computed (a zero edit) count as offset 0."""
    lm = np.full((count, 478, 2), np.nan)
    moved = np.zeros((count, 478, 2))
    for i, v, m in moves:
        lm[i], moved[i] = v, m
    scale = iod(lm)
    before, after = measures(lm, scale), measures(lm + moved, scale)
    out = {}
    for k in MEASURES:
        offset = after[k] - before[k]
        j, own = jitter(offset), jitter(before[k])
        out[k] = {"offset_jitter": j, "face_jitter": own, "ratio": j / own if own > 0 else float("nan"),
                  "offset": [None if not np.isfinite(x) else round(float(x), 6) for x in offset]}
    return out


def measure_clip(path: Path, count: int, variants: dict[str, dict], codec: str, *, start: int = 0,
                 weights=None, device: str = "cpu", mode: str = "static", controls: bool = False, log=print) -> dict:
    """Every number of one clip: per variant and edit, each measure's jitter, mean offset and
    offset series (IOD), and the engine's ms per frame."""
    frames, fps = read_frames(path, count, start)
    lm_in = landmarks(frames, mode)
    scale = iod(lm_in)
    m_in = measures(lm_in, scale)
    result = {"clip": path.stem, "frames": len(frames), "fps": fps, "start": start, "codec": codec, "mesh_mode": mode,
              "input_jitter": {k: jitter(v) for k, v in m_in.items()}, "variants": {}}
    zero = None
    for vname, smoothing in variants.items():
        runs = {}
        for edit in EDITS:
            out, ms, inside = edit_sequence(frames, fps, edit, smoothing, weights=weights, device=device)
            identical = all(np.array_equal(a, b) for a, b in zip(out, frames))
            if edit == "zero" and zero is not None and identical and zero["bit_identical"]:
                runs[edit] = zero  # the input itself again: the same reading
                log(f"  {path.stem:<22} {vname:<7} zero   {ms:6.1f} ms/frame  the input bit for bit, as before")
                continue
            m_out = measures(landmarks(roundtrip(out, fps, codec), mode), scale)
            offsets = {k: m_out[k] - m_in[k] for k in MEASURES}
            runs[edit] = {"ms_per_frame": ms, "bit_identical": identical, "engine_side": inside,
                          "jitter": {k: jitter(offsets[k]) for k in MEASURES},
                          "mean_offset": {k: float(np.nanmean(offsets[k])) for k in MEASURES},
                          "offset": {k: [None if not np.isfinite(x) else round(float(x), 6) for x in offsets[k]]
                                     for k in MEASURES}}
            if edit == "zero":
                zero = runs[edit]
                if not identical:
                    log(f"  warning: {path.stem} {vname}: the zero edit changed pixels")
            log(f"  {path.stem:<22} {vname:<7} {edit:<6} {ms:6.1f} ms/frame  jitter "
                + "  ".join(f"{k} {runs[edit]['jitter'][k]:.5f}" for k in MEASURES)
                + ("" if not inside or edit == "zero" else "  engine-side ratio "
                   + "  ".join(f"{k} {inside[k]['ratio']:.2f}" for k in MEASURES)))
        for edit in ("smile", "blink"):
            runs[edit]["ratio"] = {k: runs[edit]["jitter"][k] / zero["jitter"][k] if zero["jitter"][k] > 0
                                   else float("inf") for k in MEASURES}
        result["variants"][vname] = runs
    if controls:
        result["controls"] = {}
        for name, (transform, factor) in CONTROLS.items():
            m_out = measures(landmarks(roundtrip([transform(f) for f in frames], fps, codec), mode), scale)
            offsets = {k: m_out[k] / factor - m_in[k] for k in MEASURES}
            j = {k: jitter(offsets[k]) for k in MEASURES}
            result["controls"][name] = {"jitter": j, "ratio": {k: j[k] / zero["jitter"][k] if zero["jitter"][k] > 0
                                                               else float("inf") for k in MEASURES}}
            log(f"  {path.stem:<22} control {name:<10} jitter "
                + "  ".join(f"{k} {j[k]:.5f} ({result['controls'][name]['ratio'][k]:.2f}x)" for k in MEASURES))
    return result


def _shift(frame: np.ndarray, dx: float = 0.5, dy: float = 0.5) -> np.ndarray:
    import cv2

    m = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(frame, m, frame.shape[1::-1], flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _zoom(frame: np.ndarray, factor: float = 1.03) -> np.ndarray:
    import cv2

    h, w = frame.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), 0.0, factor)
    return cv2.warpAffine(frame, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


#: Steady changes by construction (``--controls``): every frame moved half a pixel right and
#: down, and zoomed 3 % about its centre (measures divided by the zoom). Their offsets are
#: constant, so their jitter is what MediaPipe's reading alone adds once the pixels differ
#: from the input's, with no motion at all (an edit changes the pixels more than these do).
CONTROLS = {"shift_0.5px": (_shift, 1.0), "zoom_3%": (_zoom, 1.03)}


def table(results: list[dict], limit: float) -> str:
    """The markdown tables: per clip, variant and measure the zero, smile and blink jitter
    (IOD x 1000) and the ratios; whether each clip meets the target; the engine-side ratios;
    the steady controls where measured."""
    lines = ["| clip | variant | measure | zero edit | smile | blink | smile / zero | blink / zero |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    for r in results:
        for vname, runs in r["variants"].items():
            for k in MEASURES:
                z, s, b = (runs[e]["jitter"][k] * 1e3 for e in ("zero", "smile", "blink"))
                rs, rb = runs["smile"]["ratio"][k], runs["blink"]["ratio"][k]
                lines.append(f"| {r['clip']} | {vname} | {k} | {z:.2f} | {s:.2f} | {b:.2f} | {rs:.2f} | {rb:.2f} |")
    lines += ["", f"Target: a constant smile adds at most {limit:g}x the zero edit's jitter to the mouth, a constant "
              f"blink at most {limit:g}x to the lids.", "",
              "| clip | variant | smile / zero (mouth) | blink / zero (lids) | max ratio, all measures | target met |",
              "|---|---|---:|---:|---:|---|"]
    for r in results:
        for vname, runs in r["variants"].items():
            rs, rb = runs["smile"]["ratio"]["mouth"], runs["blink"]["ratio"]["lids"]
            worst = max(runs[e]["ratio"][k] for e in ("smile", "blink") for k in MEASURES)
            ok = "yes" if max(rs, rb) <= limit else "no"
            lines.append(f"| {r['clip']} | {vname} | {rs:.2f} | {rb:.2f} | {worst:.2f} | {ok} |")
    if all(r["variants"][v]["smile"].get("engine_side") for r in results for v in r["variants"]):
        lines += ["", "Engine side (no MediaPipe on the output): jitter of the offset the engine's motion gives its "
                  "own landmarks, over the jitter of those landmarks' measure (1: the edit mirrors the face's "
                  "frame-to-frame motion; 0: the same edit in every frame).", "",
                  "| clip | variant | smile: mouth | smile: lids | smile: brows | blink: mouth | blink: lids | "
                  "blink: brows |", "|---|---|---:|---:|---:|---:|---:|---:|"]
        for r in results:
            for vname, runs in r["variants"].items():
                cells = [f"{runs[e]['engine_side'][k]['ratio']:.2f}" for e in ("smile", "blink") for k in MEASURES]
                lines.append(f"| {r['clip']} | {vname} | " + " | ".join(cells) + " |")
    if all("controls" in r for r in results):
        names = list(results[0]["controls"])
        lines += ["", "Steady controls (no edit; every frame shifted or zoomed alike, same codec and reading): "
                  "ratio to the zero edit's jitter.", "",
                  "| clip | " + " | ".join(f"{n}: {k}" for n in names for k in MEASURES) + " |",
                  "|---|" + "---:|" * (len(names) * len(MEASURES))]
        for r in results:
            lines.append(f"| {r['clip']} | " + " | ".join(f"{r['controls'][n]['ratio'][k]:.2f}" for n in names
                                                          for k in MEASURES) + " |")
    return "\n".join(lines) + "\n"


def figure(result: dict, path: Path) -> None:
    """The edit offsets over time of one clip: smile's mouth and blink's lids, before and after,
    with the zero edit's (the floor)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fps = result["fps"]
    panels = [("smile", "mouth", "--expr smile=1: mouth-corner distance"),
              ("blink", "lids", "--expr blink=1: lid gap (both eyes)")]
    fig, axes = plt.subplots(len(panels), 1, figsize=(11, 8), sharex=True)
    for ax, (edit, k, title) in zip(axes, panels):
        zero = np.array(result["variants"]["after"]["zero"]["offset"][k], dtype=float)
        t = np.arange(len(zero)) / fps
        for vname, colour in (("before", "tab:red"), ("after", "tab:blue")):
            if vname not in result["variants"]:
                continue
            run = result["variants"][vname][edit]
            off = np.array(run["offset"][k], dtype=float)
            ax.plot(t, off, color=colour, lw=1.2,
                    label=f"{vname}, MediaPipe on the output: jitter {run['jitter'][k] * 1e3:.2f}e-3 IOD "
                          f"({run['ratio'][k]:.2f}x zero)")
            if run.get("engine_side"):
                inside = run["engine_side"][k]
                ax.plot(t, np.array(inside["offset"], dtype=float), color=colour, lw=1.0, ls="--", alpha=0.8,
                        label=f"{vname}, the engine's own motion: jitter {inside['offset_jitter'] * 1e3:.2f}e-3 IOD "
                              f"({inside['ratio']:.2f}x the face's)")
        ax.plot(t, zero, color="0.45", lw=1.0,
                label=f"zero edit (floor): jitter {result['variants']['after']['zero']['jitter'][k] * 1e3:.2f}e-3 IOD")
        ax.set_title(f"{result['clip']}: {title}", fontsize=10)
        ax.set_ylabel("offset, output - input (IOD)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7.5, loc="best", framealpha=0.85)
    axes[-1].set_xlabel("time (s)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--faces", default=str(ROOT.parent / "shared" / "data" / "faces"),
                    help="the faces data folder (its videos/ holds the clips)")
    ap.add_argument("--clips", nargs="+", default=list(DEFAULT_CLIPS), help="clip names (videos/NAME.mp4)")
    ap.add_argument("--frames", type=int, default=240, help="frames per clip (from --start)")
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--codec", choices=("h264", "none"), default="h264",
                    help="re-encode the outputs as fastwarp video's .mp4 default (h264) or not (none)")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS),
                    help=f"engine variants: {', '.join(VARIANTS)}, or NAME=JSON (RealtimeEngine's smoothing dict)")
    ap.add_argument("--mesh-mode", choices=("static", "video"), default="static",
                    help="how FaceMesh reads input and outputs: every frame afresh, or tracking (default: static)")
    ap.add_argument("--weights", default=None, help="editor weights (default: the engine's)")
    ap.add_argument("--limit", type=float, default=1.5, help="the target ratio")
    ap.add_argument("--controls", action="store_true",
                    help="also measure steady changes by construction (half-pixel shift, 3%% zoom): what "
                         "MediaPipe's reading alone adds")
    ap.add_argument("--figure-clip", default=None, help="clip of the figure (default: the first)")
    ap.add_argument("--out", default=None,
                    help="output prefix: writes PREFIX.json, PREFIX_table.md and PREFIX.png")
    args = ap.parse_args(argv)
    videos = Path(args.faces) / "videos"
    variants = {}
    for v in args.variants:
        name, _, spec = v.partition("=")
        variants[name] = json.loads(spec) if spec else VARIANTS[name]
    results = []
    for clip in args.clips:
        path = videos / (clip if clip.endswith(".mp4") else clip + ".mp4")
        results.append(measure_clip(path, args.frames, variants, args.codec, start=args.start,
                                    weights=args.weights, mode=args.mesh_mode, controls=args.controls))
    text = table(results, args.limit)
    print(text)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        clip = args.figure_clip or results[0]["clip"]
        if {"before", "after"} <= set(variants):
            figure(next(r for r in results if r["clip"] == clip), out.with_suffix(".png"))
        for r in results:  # the per-frame offsets are kept for the figure's clip only
            for runs in r["variants"].values():
                for run in runs.values():
                    if r["clip"] != clip:
                        run.pop("offset", None)
                        for k in (run.get("engine_side") or {}).values():
                            k.pop("offset", None)
        meta = {"command": "python tools/video_jitter.py " + " ".join(sys.argv[1:] if argv is None else argv),
                "limit": args.limit, "variants": variants, "edits": EDITS, "results": results}
        text_json = re.sub(r"\[\s+([-0-9.eE,\snul]+?)\s+\]", lambda m: "[" + " ".join(m.group(1).split()) + "]",
                           json.dumps(meta, indent=1))  # (number lists on one line)
        out.with_suffix(".json").write_text(text_json + "\n")
        (out.parent / (out.name + "_table.md")).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
