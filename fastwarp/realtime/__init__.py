"""Real-time expression editing of a camera or a video stream (docs/design.md, "Real time").

One module per job, in the order a frame meets them:

- :mod:`~fastwarp.realtime.sources`: :class:`VideoSource` (camera or file), :class:`StreamError`;
- :mod:`~fastwarp.realtime.tracking`: :class:`FaceTracker` and the One Euro filter;
- :mod:`~fastwarp.realtime.runners`: the network runners (torch, ONNX Runtime, CUDA graph,
  ``torch.compile``, ``"auto"``), :func:`make_network`;
- :mod:`~fastwarp.realtime.stats`: per-stage timings, :class:`RealtimeStats`;
- :mod:`~fastwarp.realtime.sinks`: :class:`VideoFileSink`, :class:`VirtualCamSink`;
- :mod:`~fastwarp.realtime.controls`: the live hotkeys of ``fastwarp webcam --show``;
- :mod:`~fastwarp.realtime.engine`: :class:`RealtimeEngine`, the pipeline that runs them.
"""

from __future__ import annotations

from .controls import LiveControls
from .engine import FaceResult, FrameResult, RealtimeEngine
from .runners import (GPU_GRAPHS, RUNTIMES, AutoNetwork, CompiledNetwork, CudaGraphNetwork, OnnxNetwork, RuntimeChoice,
                      default_weights, make_network)
from .sinks import FrameSizeError, SinkError, VideoFileSink, VirtualCamSink
from .sources import StreamError, VideoSource
from .stats import STAGES, RealtimeStats, StageStats
from .tracking import FaceTracker, OneEuroFilter

__all__ = [
    "RealtimeEngine", "RealtimeStats", "StageStats", "FrameResult", "FaceResult", "OneEuroFilter", "FaceTracker",
    "OnnxNetwork", "CudaGraphNetwork", "CompiledNetwork", "AutoNetwork", "make_network", "RuntimeChoice",
    "default_weights", "VideoSource", "VideoFileSink", "VirtualCamSink", "LiveControls", "StreamError", "SinkError",
    "FrameSizeError", "STAGES", "RUNTIMES", "GPU_GRAPHS",
]
