"""The real-time engine: the per-frame pipeline and the threads that stream it.

The pipeline (docs/design.md, "Data flow"), one frame at a time, batch 1::

    decode thread      editing thread (RealtimeEngine)                            encode thread
    VideoSource.read  -> landmarks -> smoothing -> crop -> model -> blend (composite) ---> VideoFileSink,
          (bounded queue)                                             (bounded queue)  VirtualCamSink

:meth:`RealtimeEngine.locate` is the first half (landmarks, smoothing, crops, AU targets),
:meth:`RealtimeEngine.render` the second (networks, then one warp_blend on the frame itself);
:class:`~fastwarp.realtime.threads.StreamThreads` runs the threads around them.

Decoding and encoding run on their own threads behind bounded queues, so the main thread
only edits (on a GPU the landmarks get a thread of their own too, so the CPU's share of
one frame overlaps the GPU's share of the previous one). The editing steps are :class:`fastwarp.ExpressionEditor`'s (the photo
path's own code); the package adds (one module each):

- **Landmark smoothing** (:mod:`.tracking`) with the One Euro filter (Casiez, Roussel, Vogel, "1€ Filter: A
  Simple Speed-based Low-pass Filter for Noisy Input in Interactive Systems", CHI 2012):
  a first-order low-pass whose cutoff rises with the landmarks' speed, so a still face
  does not jitter and a moving one does not lag. The crop, the face mesh the warp moves
  and the feathered face mask come from the smoothed landmarks. The edit itself (the current
  AUs it starts from, and the shape the landmark motion model reads) comes from a steadier
  copy, the face's shape low-passed at 0.5 Hz in its eye-line frame
  (:meth:`FaceTracker.edit_shape`): a constant edit is then the same motion in every frame,
  while speech and blinks pass through it (docs/evaluation/video_steadiness.md). Each face is
  a track; a track ends (and its filters start afresh) when its face is lost or jumps.
- **Network runners** (:mod:`.runners`, :func:`make_network`): eager PyTorch; on a GPU float16 +
  channels_last under a CUDA graph (or ``torch.compile(mode="reduce-overhead")``); on the
  CPU also ONNX Runtime on :func:`fastwarp.export.export_onnx`'s graph (cached on disk); on a
  GPU a TensorRT engine (given, or built once into a cache from the exported graph), which
  ``runtime="auto"`` takes where TensorRT is installed.
  The networks' flow, texture and mask are applied at crop resolution by
  :func:`fastwarp.warp_blend` in every case. On a CPU ``runtime="auto"`` runs torch and ONNX
  Runtime in turn on the first faces of the stream and keeps the faster
  (:attr:`RealtimeStats.runtime_reason` says which and why).
- **Per-stage timings** (:mod:`.stats`, :class:`RealtimeStats`): decode, landmarks, crop, model, blend
  (the composite), encode, and the latency from a decoded frame to its encoded output; mean, p50
  and p95 in milliseconds, and end-to-end frames per second.
- **Sources and sinks** (:mod:`.sources`, :mod:`.sinks`) and the live hotkeys of
  ``--show`` (:mod:`.controls`).
- **Robustness** (here): a frame with no face passes through unchanged; with several faces the
  largest is edited, or each with ``all_faces=True``; a camera that stops delivering
  frames, or a file that cannot be decoded to its end, stops the run with one message
  (:attr:`RealtimeStats.error`) after the frames already processed have been written.

Example::

    from fastwarp.au import parse_au_edit
    from fastwarp.realtime import RealtimeEngine, VideoSource, VideoFileSink

    with RealtimeEngine([parse_au_edit("AU12=3")]) as engine, VideoSource(0) as camera:
        sink = VideoFileSink("out.mp4", camera)
        stats = engine.run(camera, [sink], max_frames=300)
        sink.close()  # finalises the file
    print(stats.format())
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import numpy as np
import torch

from ..expression_editor import (AUEdit, ExpressionEditor, Network, TorchNetwork, default_device, is_bundled,
                                 mesh_weights_installed)
from ..au import AU_MAX, apply_au_edits
from ..face import FaceCrop
from ..face.aus import consistent_targets, estimate_aus_batch
from ..models import EditorNet

from .sinks import FrameSizeError
from .sources import VideoSource
from .stats import RealtimeStats
from .threads import StreamThreads
from .tracking import FaceTracker
from .runners import RUNTIMES, RuntimeChoice, default_weights, make_network

__all__ = ["RealtimeEngine", "FrameResult", "FaceResult"]


@dataclass
class FaceResult:
    """One edited face of a frame.

    Attributes:
        landmarks: float32 ``[478, 3]`` as FaceMesh found them (frame pixels).
        smoothed: float32 ``[478, 3]`` after the One Euro filter (what the crop, the mesh and
            the mask used; equal to ``landmarks`` with smoothing off or on a new track).
        track: the face's track id; ``new_track``: this frame started it.
        crop: the aligned crop; ``current_aus``, ``target_aus``: float32 ``[17]``, 0..5, the
            AUs the edit starts from and goes to.
        shape: float32 ``[478, 2]``, the steady face shape the edit was computed from (eye-line
            frame, :meth:`FaceTracker.edit_shape`; ``current_aus`` are its AUs), or None where
            the edit follows each frame's landmarks (smoothing off, ``steady_edit=False``).
    """

    landmarks: np.ndarray
    smoothed: np.ndarray
    track: int
    new_track: bool
    crop: FaceCrop
    current_aus: np.ndarray
    target_aus: np.ndarray
    shape: np.ndarray | None = None


@dataclass
class FrameResult:
    """One processed frame: ``frame`` ``[H, W, 3]`` uint8 BGR (a copy of the input where no
    face was edited), its ``index`` and time ``t`` (s), the edited ``faces``, how many
    faces FaceMesh found, and this frame's stage times in ms."""

    frame: np.ndarray
    index: int
    t: float
    faces: list[FaceResult]
    faces_found: int
    timings_ms: dict[str, float]

    @property
    def face_found(self) -> bool:
        return bool(self.faces)


class RealtimeEngine:
    """Streaming expression editor: one frame in, one edited frame out, as fast as it goes.

    Args:
        edits: ``(AU, value, relative)`` edits (:func:`fastwarp.au.parse_au_edit`);
            change them while running with :meth:`set_edits`.
        weights: bundled name ("base", "lite") or checkpoint path; default
            :func:`default_weights` ("lite" on a CPU where installed, else "base").
        device: "cpu" or "cuda" (default: CUDA where fastwarp's CUDA kernels run).
        runtime: "auto", "torch", "onnx" or "tensorrt" (see :func:`make_network` and
            :func:`~fastwarp.realtime.runners.select_runtime`: "auto" takes TensorRT on a GPU
            where it is installed).
        all_faces: edit every face found (up to ``max_faces``) instead of the largest.
        max_faces: the most faces FaceMesh tracks (default 4: the largest of up to four
            faces is found; 1 is faster, about 5 ms a frame on 2 CPU cores, as FaceMesh then
            re-detects only when it loses its face, but it keeps whichever face it found first).
        smoothing: :class:`FaceTracker`'s parameters (a dict), True for the defaults, False
            for no smoothing at all (the edit then follows each frame's landmarks too). The
            keys and defaults: the landmarks' One Euro filter ``min_cutoff=1.0``,
            ``beta=20.0``, ``d_cutoff=1.0`` and ``max_jump=0.5``; the steady edit
            ``steady_edit=True`` (False: the edit follows each frame's smoothed landmarks),
            ``edit_min_cutoff=0.5``, ``edit_beta=0.0``, ``edit_d_cutoff=1.0``.
        max_crop_size: largest crop side (see :class:`~fastwarp.expression_editor.ExpressionEditor`).
        half, channels_last, gpu_graph: the GPU runner (see :func:`make_network`).
        onnx_cache: where ONNX exports are cached.
        engine: a TensorRT engine file of these weights (``runtime="tensorrt"`` or ``"auto"``);
            default: one built once into ``engine_cache`` (see
            :func:`~fastwarp.realtime.runners.cached_engine`).
        engine_cache: where built TensorRT engines are kept.
        auto_trial_calls: with ``runtime="auto"`` on a CPU, the faces each runtime edits
            before the faster is kept (:class:`AutoNetwork`).
        model: an already loaded :class:`~fastwarp.models.EditorNet` (``weights`` ignored).
        motion: ``"mesh"``, ``"dense"`` or ``"auto"`` (mesh for the bundled weights where
            the mesh-path weights are installed, dense for another checkpoint or ``model``;
            see :class:`~fastwarp.expression_editor.ExpressionEditor`); with mesh motion the
            editor network is not run, so ``runtime`` is moot (``stats.runtime`` is ``"mesh"``)
            and ``runtime="tensorrt"`` or an ``engine`` is refused (ValueError: TensorRT runs
            the dense path, ``motion="dense"``).
        resample: the frame composite's image taps, ``"bicubic"`` (default) or ``"bilinear"``
            (see :class:`~fastwarp.expression_editor.ExpressionEditor`).
        texture: ``"auto"``, ``"regions"``, ``"eyes"``, ``"mesh"`` or ``"none"`` (see
            :class:`~fastwarp.expression_editor.ExpressionEditor`).
        region_refresh: run each region texture's network on every N-th frame of a face
            track, blending its last texture and mask at the region's current place between
            (:meth:`fastwarp.region_paint.RegionPainter.paint`), and the face's mesh texture
            network under them likewise (:meth:`fastwarp.mesh_path.MeshMotion.maps`); 1
            (default) every frame. Without region textures (``texture="mesh"``) it is moot.
    Raises:
        FileNotFoundError / ValueError: weights missing or invalid; a bad ``runtime``,
            ``gpu_graph``, ``max_faces`` or ``region_refresh``; ``runtime="tensorrt"`` with mesh
            motion or on the CPU. ImportError: ``runtime="onnx"`` without ONNX Runtime.
            TensorRTUnavailableError: ``runtime="tensorrt"`` without TensorRT or a CUDA GPU.

    Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, edits: Iterable[AUEdit] = (), weights: str | os.PathLike | None = None,
                 device: str | None = None, *, runtime: str = "auto", all_faces: bool = False,
                 max_faces: int | None = None, smoothing: bool | dict = True, max_crop_size: int = 512,
                 half: bool | None = None, channels_last: bool | None = None, gpu_graph: str = "cuda-graph",
                 onnx_cache: str | os.PathLike | None = None, auto_trial_calls: int = 4,
                 model: EditorNet | None = None, motion: str = "auto", engine: str | os.PathLike | None = None,
                 engine_cache: str | os.PathLike | None = None, resample: str = "bicubic",
                 texture: str = "auto", region_refresh: int = 1) -> None:
        self.device = torch.device(device or default_device())
        from_bundled = model is None and (weights is None or is_bundled(str(weights)))
        if model is None:
            self.weights = str(weights) if weights is not None else default_weights(self.device)
            model = EditorNet.load(self.weights, map_location=self.device)
        else:
            self.weights = str(weights) if weights is not None else "(model)"
            model = model.to(self.device).eval()
        if motion == "auto":  # (as ExpressionEditor: the mesh path serves the bundled weights)
            motion = "mesh" if from_bundled and mesh_weights_installed() else "dense"
        if runtime not in RUNTIMES:  # (checked here too: mesh motion never calls make_network)
            raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
        if motion == "mesh" and (runtime == "tensorrt" or engine is not None):
            raise ValueError("runtime='tensorrt' runs the editor network, which mesh motion does not run: "
                             "use motion='dense' (--motion dense) with TensorRT")
        if motion == "mesh":  # the editor network is not run: no runner to export or time
            network, self.runtime = TorchNetwork(model), RuntimeChoice(
                "mesh", "mesh", "mesh motion: landmark motion, mesh_flow and the mesh texture, eager torch on the "
                "CPU (the editor network is not run)")
        else:
            network, self.runtime = make_network(model, runtime, half=half, channels_last=channels_last,
                                                 gpu_graph=gpu_graph, onnx_cache=onnx_cache,
                                                 trial_calls=auto_trial_calls, engine=engine,
                                                 engine_cache=engine_cache)
        self.all_faces = bool(all_faces)
        self.max_faces = int(max_faces) if max_faces is not None else 4
        if self.max_faces < 1:
            raise ValueError(f"max_faces must be >= 1, got {max_faces}")
        # (weights names the bundled editor, which picks its eye region texture; the model is the one loaded here)
        self.editor = ExpressionEditor(self.weights if from_bundled else None, device=str(self.device), video=True,
                                       max_crop_size=max_crop_size,
                                       max_faces=self.max_faces, model=model, network=network, motion=motion,
                                       resample=resample, texture=texture)
        if int(region_refresh) < 1:
            raise ValueError(f"region_refresh must be >= 1, got {region_refresh}")
        if self.editor.regions is not None:
            self.editor.regions.refresh = int(region_refresh)
            if self.editor.mesh_motion is not None:  # the mesh texture under them keeps their cadence
                self.editor.mesh_motion.refresh = int(region_refresh)
        params = smoothing if isinstance(smoothing, dict) else {}
        self.tracker = FaceTracker(**params) if smoothing is not False else None
        self.edits: list[AUEdit] = list(edits)
        self.stats = self._new_stats()
        self._size: tuple[int, int] | None = None
        # Per face track: the region textures of its previous frames (ExpressionEditor.blend).
        self._region_memory: dict[int, dict] = {}

    def __enter__(self) -> "RealtimeEngine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.editor.close()

    @property
    def network(self) -> Network:
        return self.editor.network

    def set_edits(self, edits: Iterable[AUEdit]) -> None:
        """Replace the AU edits; the next frame uses them (safe from another thread)."""
        self.edits = list(edits)

    def _new_stats(self) -> RealtimeStats:
        return RealtimeStats(runtime=self.runtime.runtime, runner=self.runtime.runner,
                             runtime_reason=self.runtime.reason, runtime_ms=dict(self.runtime.measured_ms),
                             device=str(self.device), weights=self.weights)

    def reset(self) -> None:
        """Start a new stream: forget FaceMesh's tracking, the face tracks (smoothing starts
        afresh) and the frame size."""
        self.editor.mesh.reset()
        if self.tracker is not None:
            self.tracker.reset()
        self._size = None
        self._region_memory.clear()

    # --- one frame ---------------------------------------------------------------------

    def locate(self, frame_bgr: np.ndarray, t: float, index: int = 0) -> "_Located":
        """The first half of :meth:`process`: landmarks, smoothing, crops and AU targets."""
        size = (frame_bgr.shape[1], frame_bgr.shape[0]) if getattr(frame_bgr, "ndim", 0) == 3 else None
        if self._size is None:
            self._size = size
        elif size != self._size:
            raise FrameSizeError(f"frame {index} changes size from {self._size[0]}x{self._size[1]} to "
                                 f"{frame_bgr.shape[1]}x{frame_bgr.shape[0]}")
        clock = time.perf_counter
        t0 = clock()
        found = self.editor.detect(frame_bgr)
        chosen = found if self.all_faces else found[:1]
        if self.tracker is not None:
            tracked = self.tracker.update(chosen, t)
        else:
            tracked = [(i, lm, True) for i, lm in enumerate(chosen)]
        t1 = clock()
        timings = {"landmarks": (t1 - t0) * 1e3}
        faces, edits = [], list(self.edits)
        for raw, (track, lm, new) in zip(chosen, tracked):
            crop = self.editor.crop(frame_bgr, lm)
            shape = self.tracker.edit_shape(track, lm, t) if self.tracker is not None else None
            if shape is None:
                current, target = self.editor.aus(crop, edits)
            else:
                current, live = estimate_aus_batch(np.stack([shape, crop.landmarks[:, :2]]))
                target = _steady_target(current, live, edits)
            faces.append(FaceResult(raw, lm, track, new, crop, current, target, shape))
        if faces:
            timings["crop"] = (clock() - t1) * 1e3
        return _Located(frame_bgr, index, t, faces, len(found), timings)

    @torch.no_grad()
    def render(self, located: "_Located") -> FrameResult:
        """The second half of :meth:`process`: the networks and the frame-space composite
        (:meth:`ExpressionEditor.blend`: one warp_blend on the frame itself) of each
        located face."""
        clock = time.perf_counter
        out, timings = located.frame, dict(located.timings)
        for face in located.faces:
            t0 = clock()
            memory = self._region_memory.setdefault(face.track, {})
            if face.new_track:
                memory.clear()
            maps = self.editor.predict(face.crop.image, face.target_aus, face.current_aus, face.crop.landmarks,
                                       shape=face.shape, memory=memory)
            if maps.flow.device.type == "cuda":
                torch.cuda.synchronize(maps.flow.device)  # time the model, not the blend that waits for it
            t1 = clock()
            out = self.editor.blend(out, face.crop, maps, memory)
            t2 = clock()
            for stage, dt in (("model", t1 - t0), ("blend", t2 - t1)):
                timings[stage] = timings.get(stage, 0.0) + dt * 1e3
        for track in set(self._region_memory) - {face.track for face in located.faces}:
            del self._region_memory[track]  # tracks that ended
        if not located.faces:
            out = located.frame.copy()
        return FrameResult(out, located.index, located.t, located.faces, located.faces_found, timings)

    def process(self, frame_bgr: np.ndarray, t: float, index: int = 0) -> FrameResult:
        """Edit one frame (on the calling thread) and time its stages.

        Args:
            frame_bgr: ``[H, W, 3]`` uint8 BGR; every frame of a stream has one size.
            t: its time in seconds (increasing; drives the smoothing).
            index: its number in the stream (for messages).
        Returns:
            :class:`FrameResult`; with no face, a copy of the frame.
        Raises:
            ValueError: not a uint8 BGR image; FrameSizeError: a frame size different from
                the stream's.
        """
        return self.render(self.locate(frame_bgr, t, index))

    # --- a stream ----------------------------------------------------------------------

    def run(self, source: VideoSource, sinks: Sequence = (), *, max_frames: int = 0,
            on_frame: Callable[[FrameResult], bool | None] | None = None, queue_size: int = 4,
            landmark_thread: bool | None = None) -> RealtimeStats:
        """Edit a stream: decode on one thread, edit here, encode on another.

        Args:
            source: a :class:`VideoSource` (a camera or a file).
            sinks: objects with ``write(frame, t)`` (:class:`VideoFileSink`,
                :class:`VirtualCamSink`), written in order on the encode thread; the caller
                closes them.
            max_frames: stop after this many frames (0: until the source ends).
            on_frame: called on this thread with each :class:`FrameResult` before it is
                encoded (a preview window, a progress bar); returning False stops the run.
            queue_size: capacity of the queues between the threads (a live camera's decode
                queue holds one frame, the newest: older ones are dropped when editing falls
                behind, counted in :attr:`RealtimeStats.dropped`).
            landmark_thread: find landmarks and crops on a thread of their own, so that they
                overlap the networks of the previous frame (default: on a GPU, where the
                CPU's steps bound the frame rate; on a CPU the networks already use every core).
        Returns:
            :class:`RealtimeStats` (also :attr:`stats`). A camera that stops delivering
            frames or a file that cannot be decoded to its end ends the run with
            ``stop == "read_failed"`` and ``error`` set; Ctrl-C ends it with
            ``"interrupted"``. Every frame edited before that is written first.
        Raises:
            FrameSizeError: a frame of another size than the first; any error of the
                editing or of a sink is raised too (after the threads have stopped).
        """
        self.reset()
        if landmark_thread is None:
            landmark_thread = self.device.type == "cuda"
        stats = self.stats = self._new_stats()
        stream = StreamThreads(source, sinks, stats, locate=self.locate if landmark_thread else None,
                               queue_size=queue_size)
        start = time.perf_counter()
        stream.start()
        processed = 0
        try:
            while not stream.encode_failed:
                work = stream.next()
                if work is None:
                    break
                if work.end is not None:
                    stats.stop, stats.error = work.end
                    break
                located = work.located if work.located is not None else self.locate(work.frame, work.t, work.index)
                result = self.render(located)
                stats.count(result)
                keep_going = on_frame(result) if on_frame is not None else True
                if not stream.emit(result.frame, work.ready, work.t):
                    break
                processed += 1
                if keep_going is False:
                    stats.stop = "stopped"
                    break
                if max_frames and processed >= max_frames:
                    stats.stop = "max_frames"
                    break
        except KeyboardInterrupt:
            stats.stop = "interrupted"
        finally:
            stream.close()  # the decoder stops reading; frames already edited are still encoded
            stats.wall_s = time.perf_counter() - start
            # runtime="auto" decides on the stream's first faces.
            stats.runtime, stats.runner = self.runtime.runtime, self.runtime.runner
            stats.runtime_reason, stats.runtime_ms = self.runtime.reason, dict(self.runtime.measured_ms)
        stream.raise_failure()
        if stats.stop == "failed":
            stats.stop = "end"
        return stats


def _steady_target(current: np.ndarray, live: np.ndarray, edits: list) -> np.ndarray:
    """The target AUs (float32 ``[17]``) of an edit that starts from a face's steady shape
    (:meth:`FaceTracker.edit_shape`), whose AUs are ``current``: the edit of ``current`` as
    :meth:`ExpressionEditor.aus` sets it, with each AU's change cut where, added to the
    frame's own AUs (``live``), it would pass either end of 0..5: while the face itself
    blinks a closing eye is not closed further (its lids would cross), and no AU is pushed
    below rest. No change stays no change (the target is ``current`` itself)."""
    target = consistent_targets(current, apply_au_edits(current, edits))
    change = np.clip(live + (target - current), 0.0, AU_MAX) - live
    return np.where(target == current, current, current + change).astype(np.float32)


@dataclass
class _Located:
    """A frame with its faces found, smoothed, cropped and their AU targets set."""

    frame: np.ndarray
    index: int
    t: float
    faces: list[FaceResult]
    faces_found: int
    timings: dict[str, float]
