"""Per-stage timings of the real-time engine: :class:`StageStats` (mean, p50, p95 in ms) and
:class:`RealtimeStats` (a run's stages, frames/s, runtime choice, how it stopped)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np


__all__ = ["STAGES", "StageStats", "RealtimeStats"]


#: Per-frame stages, in pipeline order (``latency``: from a frame's decoding to its encoding).
STAGES = ("decode", "landmarks", "crop", "model", "blend", "encode", "latency")


@dataclass
class StageStats:
    """One stage's per-frame times in milliseconds: ``count`` samples, their mean, median
    (p50) and 95th percentile (p95)."""

    count: int
    mean_ms: float
    p50_ms: float
    p95_ms: float

    @classmethod
    def of(cls, samples_ms: Sequence[float]) -> "StageStats":
        if not samples_ms:
            return cls(0, float("nan"), float("nan"), float("nan"))
        a = np.asarray(samples_ms, np.float64)
        return cls(len(a), float(a.mean()), float(np.percentile(a, 50)), float(np.percentile(a, 95)))


@dataclass
class RealtimeStats:
    """What one :meth:`RealtimeEngine.run` did and how fast.

    Attributes:
        frames: frames written to the sinks (each processed frame, edited or not).
        faces_edited: frames in which at least one face was edited; ``passed_through``:
            frames with no face, written unchanged. ``faces``: faces edited in all.
        dropped: frames of a live camera dropped because editing fell behind (a file
            source never drops).
        skipped: frames the decoder could not read but read past (corrupt data).
        wall_s: from the run's start to its last encoded frame, seconds.
        stop: why the run ended: ``"end"`` (the source ended), ``"max_frames"``,
            ``"stopped"`` (``on_frame`` returned False), ``"interrupted"`` (Ctrl-C),
            ``"read_failed"`` (see ``error``).
        error: the read failure's message (the frames before it were written).
        runtime, runner, runtime_reason, runtime_ms: see :class:`RuntimeChoice`.
        device, weights: where and with what the networks ran.
        samples_ms: per stage (:data:`STAGES`), one sample per frame (model / crop / blend:
            per frame with a face, summed over its faces).
    """

    frames: int = 0
    faces_edited: int = 0
    passed_through: int = 0
    faces: int = 0
    dropped: int = 0
    skipped: int = 0
    wall_s: float = 0.0
    stop: str = ""
    error: str | None = None
    runtime: str = ""
    runner: str = ""
    runtime_reason: str = ""
    runtime_ms: dict[str, float] = field(default_factory=dict)
    device: str = ""
    weights: str = ""
    samples_ms: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STAGES})

    @property
    def fps(self) -> float:
        """End-to-end frames per second: frames written over ``wall_s``."""
        return self.frames / self.wall_s if self.wall_s > 0 else 0.0

    def count(self, result) -> None:
        """Add one edited frame (a :class:`~fastwarp.realtime.engine.FrameResult`): its stage
        times and whether it had faces."""
        for stage, ms in result.timings_ms.items():
            self.samples_ms[stage].append(ms)
        if result.faces:
            self.faces_edited += 1
            self.faces += len(result.faces)
        else:
            self.passed_through += 1

    def stage(self, name: str) -> StageStats:
        """:class:`StageStats` of one of :data:`STAGES`."""
        return StageStats.of(self.samples_ms.get(name, []))

    def stages(self) -> dict[str, StageStats]:
        return {s: self.stage(s) for s in STAGES}

    def as_dict(self) -> dict:
        """A JSON-ready summary (no raw samples): counts, fps, runtime, per-stage stats."""
        d = {k: v for k, v in asdict(self).items() if k != "samples_ms"}
        d["fps"] = self.fps
        d["stages"] = {k: asdict(v) for k, v in self.stages().items() if v.count}
        return d

    def format(self) -> str:
        """A table: one row per stage (frames, mean, p50, p95 ms), then frames/s and the runtime."""
        lines = [f"{'stage':<10}{'frames':>8}{'mean ms':>10}{'p50 ms':>10}{'p95 ms':>10}"]
        for name, st in self.stages().items():
            if st.count:
                lines.append(f"{name:<10}{st.count:>8}{st.mean_ms:>10.2f}{st.p50_ms:>10.2f}{st.p95_ms:>10.2f}")
        lines.append(f"end to end: {self.frames} frames in {self.wall_s:.2f} s = {self.fps:.1f} frames/s "
                     f"({self.device}, weights {self.weights}, runtime {self.runner})")
        lines.append(f"runtime: {self.runtime_reason}")
        if self.dropped or self.skipped:
            lines.append(f"dropped {self.dropped} live frames (editing fell behind); skipped {self.skipped} "
                         "undecodable frames")
        return "\n".join(lines)
