"""``fastwarp video``'s file side: FFmpeg's libraries (PyAV: decode with the stream's colour
matrix, H.264 CRF 18 ``superfast`` + the audio copied) against what it replaced (OpenCV's
``VideoCapture`` and an MPEG-4 Part 2 ``mp4v`` ``VideoWriter``, no audio), the same engine
between them (``fastwarp video``'s defaults: the bundled ``base`` weights, mesh motion,
``--expr blink=1``).

A round is one :meth:`RealtimeEngine.run` over the first ``FRAMES`` frames of ``VIDEO``
(480x480, ../shared/data/faces), decoded, edited and encoded to a file on the engine's
threads, as ``fastwarp video`` does. Both providers run in the same session, one after the
other; their ratio is the issue's measure ("at most 10 % below"). ``extra_info`` has
frames per second.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import harness

FACES = Path(os.environ.get("FASTWARP_FACES_DIR") or harness.ROOT.parent / "shared" / "data" / "faces")
VIDEO = FACES / "videos" / "lp_d6.mp4"
FRAMES = 90
PROVIDERS = ("pyav-h264", "opencv-mp4v")


class _OpenCVWriter:
    """What ``fastwarp video`` wrote with before PyAV: ``cv2.VideoWriter`` with ``mp4v``."""

    def __init__(self, path, fps, size) -> None:
        import cv2

        self.writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)

    def write(self, frame, t=None) -> None:
        self.writer.write(frame)

    def close(self, trim: bool = False) -> None:
        self.writer.release()


@pytest.fixture(scope="module")
def engine():
    from fastwarp.expression_editor import mesh_weights_installed
    from fastwarp.presets import ExprEdit
    from fastwarp.realtime import RealtimeEngine

    if not VIDEO.is_file():
        pytest.skip(f"{VIDEO} not found (set FASTWARP_FACES_DIR)")
    if not mesh_weights_installed():
        pytest.skip("the mesh-path weights are not installed")
    with RealtimeEngine([ExprEdit("blink", 1.0)], "base", "cpu", runtime="torch") as e:
        yield e


@pytest.mark.parametrize("provider", PROVIDERS)
def test_video_file(benchmark, engine, tmp_path, provider):
    import cv2

    from fastwarp.realtime import VideoFileSink, VideoSource

    state: dict = {}

    def setup():
        if provider == "pyav-h264":
            source = VideoSource(VIDEO)
            sink = VideoFileSink(tmp_path / "out.mp4", source)
        else:
            source = VideoSource(str(VIDEO), capture=cv2.VideoCapture(str(VIDEO)), live=False)
            sink = _OpenCVWriter(tmp_path / "out.mp4", source.fps, (source.width, source.height))
        state.update(source=source, sink=sink)
        return (), {}

    def run():
        try:
            stats = engine.run(state["source"], [state["sink"]], max_frames=FRAMES)
        finally:
            state["sink"].close(trim=True)
            state["source"].close()
        assert stats.frames == FRAMES, (stats.stop, stats.error)

    benchmark.group = "video file cpu"
    benchmark.extra_info.update(op="video_file", provider=provider, video=VIDEO.name, frames=FRAMES,
                                edits="blink=1", weights="base")
    benchmark.pedantic(run, setup=setup, rounds=3, warmup_rounds=1)
    benchmark.extra_info["fps"] = round(FRAMES / benchmark.stats.stats.median, 2)
