"""End-to-end benchmarks of the real-time engine (``fastwarp.realtime``) on real video.

One benchmark per weights and runtime: ``test_e2e[<weights>-<runtime>]`` (``base`` and
``lite``; ``mesh``: the mesh motion path, no editor network; ``torch`` and ``onnx``: the
editor network's dense path, on the CPU, ``torch`` — float16, channels_last, a CUDA
graph, batch 1 — on a GPU), with the engine's defaults, and each again with FaceMesh
limited to one face (``-maxfaces1``: ``--max-faces 1``, no per-frame face detection). A round is one :meth:`RealtimeEngine.run` over the first
``FRAMES_PER_ROUND`` frames of one 512x512 video of ../shared/data/faces (MANIFEST.csv gives
the sizes), decoded, edited (AU12=3) and encoded to an mp4 file with the engine's threads,
as ``fastwarp webcam --camera VIDEO -o OUT.mp4`` does; rounds rotate through the videos.
pytest-benchmark's time is the round's (``FRAMES_PER_ROUND`` frames, from the run's start
to its last encoded frame); ``extra_info`` holds the frames per second and, over all timed
rounds, each stage's mean / p50 / p95 milliseconds (decode, landmarks, crop, model,
blend, encode, latency), which ``bench/ratios.py`` prints in its end-to-end table
with the real-time issue's targets.

Rounds: one per 512x512 video (``--bench-rounds`` overrides), one warm-up round. Weights
not installed (a copy without ``fastwarp/weights/lite.safetensors``) are skipped with
the reason, as is the data where ../shared/data/faces is missing
(``FASTWARP_FACES_DIR`` points elsewhere).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

import harness

FACES = Path(os.environ.get("FASTWARP_FACES_DIR") or harness.ROOT.parent / "shared" / "data" / "faces")
# The shortest 512x512 video (lp_d0) has 78 frames.
FRAMES_PER_ROUND = {"cpu": 24, "cuda": 75}
EDITS = [("AU12", 3.0, False)]
WEIGHTS = ("base", "lite")
# "mesh": the mesh motion path (landmark motion, mesh_flow, mesh texture; no editor network);
# "torch" and "onnx": the editor network's dense path on that runtime.
RUNTIMES = ("mesh", "torch", "onnx")
# FaceMesh's face limit: the engine's default (4: the largest of several faces is found, at
# the cost of FaceMesh's detector on every frame) and 1 (a single face tracked: the
# detector runs only when the face is lost).
MAX_FACES = (None, 1)


def e2e_videos(faces: Path = FACES, size: int = 512) -> list[Path]:
    """The ``size`` x ``size`` videos of the faces data, from its MANIFEST.csv, sorted."""
    manifest = faces / "MANIFEST.csv"
    if not manifest.is_file():
        return []
    with open(manifest, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("kind") == "video"
                and r.get("width") == str(size) and r.get("height") == str(size)]
    return sorted(faces / r["file"] for r in rows if (faces / r["file"]).is_file())


@pytest.fixture(scope="module")
def videos() -> list[Path]:
    found = e2e_videos()
    if not found:
        pytest.skip(f"no 512x512 videos: the real face data (MANIFEST.csv) was not found at {FACES} "
                    "(set FASTWARP_FACES_DIR)")
    return found


def _params():
    for faces in MAX_FACES:
        for w in WEIGHTS:
            for r in RUNTIMES:
                yield pytest.param(w, r, faces, id=f"{w}-{r}" + (f"-maxfaces{faces}" if faces else ""))


@pytest.mark.parametrize("weights, runtime, max_faces", list(_params()))
def test_e2e(benchmark, bench_config, tmp_path, videos, weights, runtime, max_faces):
    from fastwarp.models import WEIGHTS_DIR
    from fastwarp.realtime import STAGES, RealtimeEngine, StageStats, VideoFileSink, VideoSource

    dev = bench_config.device
    if runtime == "onnx" and dev.type == "cuda":
        pytest.skip("ONNX Runtime runs on the CPU here; the GPU path is torch float16 + CUDA graph (the -torch case)")
    if not (WEIGHTS_DIR / f"{weights}.safetensors").is_file():
        pytest.skip(f"weights {weights!r} are not installed ({WEIGHTS_DIR / weights}.safetensors is missing)")
    frames = FRAMES_PER_ROUND[dev.type]
    rounds = bench_config.rounds if bench_config.rounds_given else len(videos)
    if runtime == "mesh":
        from fastwarp.expression_editor import mesh_weights_installed

        if not mesh_weights_installed():
            pytest.skip("the mesh-path weights (fastwarp/weights/motion, texture) are not installed")
    engine = RealtimeEngine(EDITS, weights, dev.type, runtime="auto" if runtime == "mesh" else runtime,
                            max_faces=max_faces, onnx_cache=tmp_path / "onnx",
                            motion="mesh" if runtime == "mesh" else "dense")
    benchmark.group = f"e2e {dev.type}"
    provider = f"{weights}-{runtime}" + (f"-maxfaces{max_faces}" if max_faces else "")
    benchmark.extra_info.update(op="e2e", provider=provider, weights=weights, runtime=runtime,
                                runner=engine.runtime.runner, runtime_reason=engine.runtime.reason,
                                image_size=engine.editor.size, max_faces=engine.max_faces,
                                frames_per_round=frames, videos=[p.name for p in videos],
                                video_size=[512, 512], edits="AU12=3", batch=1)
    state = {"round": 0, "source": None, "sink": None}
    timed: list = []

    def close():
        if state["sink"] is not None:
            state["sink"].close()  # finalising the file is not part of a frame
        if state["source"] is not None:
            state["source"].close()
        state["sink"] = state["source"] = None

    def setup():
        close()
        source = VideoSource(videos[state["round"] % len(videos)])
        state["round"] += 1
        state["source"] = source
        state["sink"] = VideoFileSink(tmp_path / "out.mp4", source)
        return (), {}

    def run():
        stats = engine.run(state["source"], [state["sink"]], max_frames=frames)
        if stats.frames != frames:
            raise RuntimeError(f"{state['source'].name}: {stats.frames} of {frames} frames "
                               f"({stats.stop}, {stats.error})")
        timed.append(stats)

    try:
        benchmark.pedantic(run, setup=setup, rounds=rounds, warmup_rounds=1)
    finally:
        close()
        engine.close()
    measured = timed[1:]  # the warm-up round's stats are dropped
    if not benchmark.stats or not measured:
        return
    samples = {s: [ms for st in measured for ms in st.samples_ms[s]] for s in STAGES}
    wall = sum(st.wall_s for st in measured)
    benchmark.extra_info.update(
        fps=round(frames / benchmark.stats.stats.median, 2),
        fps_overall=round(sum(st.frames for st in measured) / wall, 2),
        faces_edited=sum(st.faces_edited for st in measured),
        passed_through=sum(st.passed_through for st in measured),
        dropped=sum(st.dropped for st in measured),
        stages={s: {k: round(v, 3) for k, v in vars(StageStats.of(samples[s])).items()}
                for s in STAGES if samples[s]},
    )
