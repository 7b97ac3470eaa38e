"""The photo/video pipeline: end-to-end expression editing of photos and video frames
(docs/design.md, "Data flow"). Its networks are :class:`fastwarp.models.EditorNet`.

frame → FaceMesh landmarks → similarity-aligned crop (for the networks only) → current AUs
(geometric estimate) → target AUs (absolute or relative edits) → the editor networks at the
model's resolution (128 px by default) → the feathered face mask folded into their flow,
texture and mask → **one** :func:`fastwarp.warp_blend` with ``theta`` on the frame itself
(the frame-space composite): every face pixel is sampled once from the original frame,
faces of any size keep their full detail, pixels outside the face are the frame's own, and
with the bundled weights a zero AU change returns the frame bit for bit. Frames are uint8,
or uint16 (16-bit photos: detection and the networks see an 8-bit copy, the composite
samples the 16-bit frame itself). :meth:`ExpressionEditor.edit` edits the largest face, or
every face with ``all_faces=True`` (each composited in turn, as the real-time engine does).

:class:`ExpressionEditor` holds each step as its own method (:meth:`~ExpressionEditor.detect`,
:meth:`~ExpressionEditor.crop`, :meth:`~ExpressionEditor.aus`,
:meth:`~ExpressionEditor.predict`, :meth:`~ExpressionEditor.blend`), so the photo path
(:meth:`~ExpressionEditor.edit`) and the real-time engine (:mod:`fastwarp.realtime`, which
times each step and swaps in other network runners) run the same code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import cv2
import numpy as np
import torch
from torch import Tensor

from . import ops
from .au import apply_au_edits
from .face import FaceCrop, FaceMesh, align_face, estimate_aus, face_mask
from .face.align import alignment_matrix
from .face.aus import consistent_targets
from .images import achromatic, luma_texture, tensor_to_bgr
from .models import BUNDLED_WEIGHTS, WEIGHTS_DIR, EditorNet
from .models.landmark_motion import LandmarkMotion
from .models.mesh_texture import MeshTexture
from .mesh_path import Maps, MeshMotion, image_tensor  # noqa: F401  (re-exported: the editor's types)
from .region_paint import TEXTURES, RegionPainter, eye_weights, eye_weights_installed, mouth_weights_for

__all__ = ["ExpressionEditor", "FaceEdit", "FrameEdit", "Maps", "Network", "TorchNetwork", "default_device",
           "image_tensor", "image_bgr", "grid_theta", "MOTIONS", "MeshMotion", "mesh_weights_installed",
           "still_motion_weight", "STILL_MOTION"]

AUEdit = tuple[str, float, bool]

#: The bundled mesh-path models, shared by the "base" and "lite" weights: the landmark motion
#: (:class:`~fastwarp.models.landmark_motion.LandmarkMotion`) and its texture
#: (:class:`~fastwarp.models.mesh_texture.MeshTexture`).
MOTION_WEIGHTS = WEIGHTS_DIR / "motion"
TEXTURE_WEIGHTS = WEIGHTS_DIR / "texture"
MOTIONS = ("auto", "mesh", "dense")
#: The image taps of the frame composite (``resample=``; the ops' ``mode``): bicubic keeps more
#: of a moved face's detail than bilinear (docs/evaluation/resample.md).
RESAMPLE_MODES = ("bicubic", "bilinear")


def is_bundled(weights) -> bool:
    """Whether ``weights`` names the bundled editor networks (None, "base" or "lite")."""
    return weights is None or (isinstance(weights, str) and weights in BUNDLED_WEIGHTS)


def mesh_weights_installed() -> bool:
    """Whether the bundled mesh-path weights (motion and texture) are installed."""
    return all(w.with_suffix(".safetensors").is_file() for w in (MOTION_WEIGHTS, TEXTURE_WEIGHTS))


def default_device() -> str:
    """``"cuda"`` where fastwarp's CUDA kernels and a GPU are available, else ``"cpu"``."""
    return "cuda" if ops.backends()["cuda"] else "cpu"


def image_bgr(t: Tensor) -> np.ndarray:
    """``[1, 3, H, W]`` RGB in [-1, 1] → uint8 BGR ``[H, W, 3]``, rounded and clipped (as
    :func:`fastwarp.images.tensor_to_bgr`; in numpy on the CPU, see :func:`image_tensor`)."""
    if t.device.type != "cpu":
        return tensor_to_bgr(t)[0]
    hwc = t.detach()[0].permute(1, 2, 0).float().numpy()
    out = np.rint((np.clip(hwc, -1.0, 1.0) + np.float32(1.0)) * np.float32(127.5)).astype(np.uint8)
    return np.ascontiguousarray(out[..., ::-1])


def _uint8(frame: np.ndarray) -> np.ndarray:
    """The frame detection and the networks see: uint8 as it is, uint16 as
    ``round(v / 257)`` (:func:`fastwarp.media.image.to_uint8`)."""
    if frame.dtype == np.uint8:
        return frame
    from .media.image import to_uint8

    return to_uint8(frame)


#: Motion below ``STILL_MOTION[0]`` frame pixels is dropped and motion above ``STILL_MOTION[1]``
#: kept, with a smoothstep between (see :func:`still_motion_weight`).
STILL_MOTION = (0.25, 0.75)


def still_motion_weight(flow: Tensor, frame_px_per_grid_px: float) -> Tensor:
    """``[N, 1, h, w]`` weight in 0..1 that drops imperceptible motion from a flow: the
    smoothstep of the flow's length in frame pixels from ``STILL_MOTION[0]`` (0) to
    ``STILL_MOTION[1]`` (1). A bilinear sample at a fraction of a pixel blurs, so skin that
    the mesh motion moves by a quarter of a pixel (far from the edit) stays the frame's own
    pixels; the warp stays continuous.

    Args:
        flow (Tensor[N, 2, h, w]): in grid pixels.
        frame_px_per_grid_px: frame pixels per grid pixel.
    """
    lo, hi = STILL_MOTION
    t = ((flow.norm(dim=1, keepdim=True) * frame_px_per_grid_px - lo) / (hi - lo)).clamp(0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def grid_theta(crop: FaceCrop, grid: int) -> np.ndarray:
    """``theta`` ``[2, 3]`` float64 of the frame-space composite: frame pixels -> pixels of the
    maps' ``grid x grid`` grid, i.e. the crop's similarity transform (frame -> crop of side
    ``S'``) followed by the crop -> grid scale ``(u + 0.5) grid / S' - 0.5`` (the maps
    cover the crop as ``F.interpolate(align_corners=False)`` would upsample them onto it)."""
    scale = grid / crop.size
    theta = crop.matrix * scale
    theta[:, 2] += 0.5 * scale - 0.5
    return theta


#: A network runner: ``(image [N, 3, S, S] float32 RGB in [-1, 1], target_aus [N, 17],
#: current_aus [N, 17]) -> Maps``, inputs on the runner's device (its ``device``
#: attribute). :class:`TorchNetwork` is the eager one; :mod:`fastwarp.realtime` adds ONNX
#: Runtime and CUDA-graph runners.
Network = Callable[[Tensor, Tensor, Tensor], Maps]


class TorchNetwork:
    """Eager PyTorch runner of a :class:`~fastwarp.models.EditorNet`'s networks.

    Args:
        model: the editor (its device is the runner's; eval mode is set).
        dtype: run the networks in this floating dtype (e.g. ``torch.float16`` on a GPU);
            default: the model's. Inputs are cast to it; :class:`Maps` come out in it.
        channels_last: run in the channels_last memory format (faster convolutions on
            GPUs with tensor cores).
    """

    name = "torch"

    def __init__(self, model: EditorNet, *, dtype: torch.dtype | None = None, channels_last: bool = False) -> None:
        self.dtype = dtype or next(model.parameters()).dtype
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model = model.to(dtype=self.dtype, memory_format=self.memory_format).eval()
        self.device = next(model.parameters()).device
        self.size = model.config.image_size

    @torch.no_grad()
    def __call__(self, image: Tensor, target_aus: Tensor, current_aus: Tensor) -> Maps:
        image = image.to(self.dtype).contiguous(memory_format=self.memory_format)
        r = self.model(image, target_aus.to(self.dtype), current_aus.to(self.dtype))
        return Maps(r.flow, r.texture, r.mask)

    def __repr__(self) -> str:
        return f"TorchNetwork(device={self.device}, dtype={self.dtype}, memory_format={self.memory_format})"


@dataclass
class FaceEdit:
    """One face of a :class:`FrameEdit`.

    Attributes:
        crop: the aligned crop the networks saw (its ``matrix`` maps frame pixels to it).
        current_aus, target_aus: ``[17]`` float32 intensities 0..5.
    """

    crop: FaceCrop
    current_aus: np.ndarray
    target_aus: np.ndarray

    @property
    def changed(self) -> bool:
        """Whether the edit changes any AU of this face."""
        return not np.array_equal(self.current_aus, self.target_aus)


@dataclass
class FrameEdit:
    """Result of editing one frame.

    Attributes:
        frame: ``[H, W, 3]`` BGR in the input's dtype (uint8 or uint16), the edited frame
            (the input, copied, if no face).
        face_found: whether a face was found and edited.
        current_aus, target_aus: ``[17]`` float32 intensities 0..5 of the first (largest)
            face edited (None if no face).
        crop: the aligned crop of that face (None if no face).
        faces: every face edited (:class:`FaceEdit`), largest first; ``faces[0]`` is the
            face of ``current_aus``, ``target_aus`` and ``crop``. Empty if no face.
    """

    frame: np.ndarray
    face_found: bool
    current_aus: np.ndarray | None = None
    target_aus: np.ndarray | None = None
    crop: FaceCrop | None = None
    faces: list[FaceEdit] = field(default_factory=list)


class ExpressionEditor:
    """Edit the largest face of photos or video frames to target Action Units.

    Args:
        weights: bundled weights name ("base", "lite") or checkpoint path without suffix
            (default: "base"); ignored when ``model`` is given.
        device: ``"cpu"``, ``"cuda"`` or None for :func:`default_device`.
        video: track landmarks across consecutive frames (MediaPipe's video mode) instead
            of detecting afresh in every image.
        max_crop_size: largest side of the aligned crop the networks' input is
            area-resized from (the crop takes the face's own resolution between the model's
            size and this). It feeds the networks only: the output is sampled from the
            frame itself, so faces of any size keep their full detail.
        max_faces: the most faces FaceMesh looks for (:meth:`detect` returns them largest
            first; :meth:`edit` edits the largest, or with ``all_faces=True`` each of them).
        model: an already loaded :class:`~fastwarp.models.EditorNet` (moved to ``device``).
        network: the runner of the networks (a :data:`Network`); default an eager
            :class:`TorchNetwork` of the model.
        motion: where the flow comes from. ``"mesh"``: the landmark motion model
            (:class:`~fastwarp.models.landmark_motion.LandmarkMotion`) moves the face's
            landmarks and :func:`fastwarp.ops.mesh_flow` renders their motion through the
            face mesh (:mod:`fastwarp.face.mesh`), and the mesh texture model paints
            where the mesh opened (:class:`MeshMotion`; the editor network is not run).
            ``"dense"``: the network's own flow (the ablation). ``"auto"`` (default):
            ``"mesh"`` for the bundled weights ("base", "lite") where the mesh-path weights
            are installed (or ``motion_weights`` is given), ``"dense"`` for another
            checkpoint or ``model``.
        motion_weights, texture_weights: landmark motion and mesh texture checkpoints
            (paths without suffix) instead of the bundled ones; ``texture_weights="none"``
            edits by the mesh warp alone (the warp-only ablation).
        resample: the image taps of the frame composite (:meth:`blend`): ``"bicubic"``
            (default: 4 x 4 taps, Keys' cubic, keeps a moved face's detail) or
            ``"bilinear"`` (2 x 2 taps, a little faster, softer where pixels move by a
            fraction of a pixel). A zero edit returns the input bit for bit either way.
        texture: what paints where the warp cannot (mesh motion): ``"regions"`` the mesh
            texture and, on top, the eye and mouth region textures at the region's own
            resolution (:mod:`fastwarp.region_paint`: a closed lid with its lash line instead
            of a smeared open eye, a cavity between the teeth instead of stretched teeth);
            ``"eyes"`` the eye region texture only; ``"mesh"`` the mesh texture alone (before issue 19);
            ``"none"`` the warp alone. ``"auto"`` (default): ``"regions"`` where the eye
            weights are installed (``fastwarp/weights/region_eye.*``) or given
            (``region_weights``), else ``"mesh"``; with the dense path, the network's own.
        region_weights: an eye region texture checkpoint (path without suffix) instead of
            the bundled one (``region_eye``; ``region_eye_lite`` for ``"lite"`` where installed).
        mouth_weights: with ``"regions"``, a mouth region texture checkpoint (path without
            suffix) instead of the bundled ``region_mouth`` (``region_mouth_lite`` for
            ``"lite"``; painted where installed: the cavity of a mouth that opens, the lips of
            a smile); ``"none"``: the mouth keeps the mesh texture.

    Raises:
        FileNotFoundError / ValueError: from :meth:`EditorNet.load` and
            :meth:`LandmarkMotion.load`; ValueError: an unknown ``motion``, ``resample`` or
            ``texture``, or ``texture="regions"`` without mesh motion.

    Use as a context manager (or call :meth:`close`) to release MediaPipe.
    """

    #: The mesh path's models (None: the network's dense flow).
    mesh_motion: MeshMotion | None = None
    #: The eye and mouth region textures (None: not painted) and the composite's image taps.
    regions: RegionPainter | None = None
    resample: str = "bicubic"

    def __init__(self, weights: str | None = None, device: str | None = None, *, video: bool = False,
                 max_crop_size: int = 512, max_faces: int = 1, model: EditorNet | None = None,
                 network: Network | None = None, motion: str = "auto", motion_weights: str | None = None,
                 texture_weights: str | None = None, resample: str = "bicubic", texture: str = "auto",
                 region_weights: str | None = None, mouth_weights: str | None = None) -> None:
        if texture not in TEXTURES:
            raise ValueError(f"texture must be one of {', '.join(TEXTURES)}, got {texture!r}")
        if motion not in MOTIONS:
            raise ValueError(f"motion must be one of {', '.join(MOTIONS)}, got {motion!r}")
        if resample not in RESAMPLE_MODES:
            raise ValueError(f"resample must be one of {', '.join(RESAMPLE_MODES)}, got {resample!r}")
        self.resample = resample
        self.device = torch.device(device or default_device())
        self.model = (model.to(self.device).eval() if model is not None
                      else EditorNet.load(weights, map_location=self.device))
        if motion == "auto":
            motion = "mesh" if motion_weights or (model is None and is_bundled(weights) and mesh_weights_installed()) \
                else "dense"
        self.motion = motion
        self.size = self.model.config.image_size
        self.mesh_motion: MeshMotion | None = None
        self.regions: RegionPainter | None = None
        if texture == "auto":
            texture = "regions" if motion == "mesh" and (region_weights or eye_weights_installed()) else "mesh"
        if texture in ("regions", "eyes") and motion != "mesh":
            raise ValueError(f"texture={texture!r} paints through the mesh motion: use motion='mesh' (--motion mesh)")
        if texture == "eyes":
            texture, mouth_weights = "regions", "none"
        if texture == "none":
            texture_weights = "none"
        if motion == "mesh":
            mesh_texture = None if texture_weights == "none" else MeshTexture.load(texture_weights or TEXTURE_WEIGHTS)
            self.mesh_motion = MeshMotion(LandmarkMotion.load(motion_weights or MOTION_WEIGHTS), mesh_texture,
                                          self.model.config.map_size or self.size)
            if texture == "regions":
                self.regions = RegionPainter.load(region_weights or eye_weights(weights),
                                                  mouth_weights_for(mouth_weights, weights))
        self.max_crop_size = max(int(max_crop_size), self.size)
        self.network: Network = network if network is not None else TorchNetwork(self.model)
        self.mesh = FaceMesh(static_image_mode=not video, max_faces=max_faces)

    def __enter__(self) -> ExpressionEditor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.mesh.close()

    # --- the steps -------------------------------------------------------------------------

    def detect(self, frame_bgr: np.ndarray) -> list[np.ndarray]:
        """FaceMesh landmarks of the faces in ``frame_bgr`` (``[H, W, 3]`` uint8 BGR; uint16
        is detected on its 8-bit copy, :func:`fastwarp.media.image.to_uint8`), each float32
        ``[478, 3]`` in frame pixels, largest (landmark bounding box) first."""
        return self.mesh.detect(_uint8(frame_bgr))

    def crop(self, frame_bgr: np.ndarray, landmarks: np.ndarray) -> FaceCrop:
        """The aligned crop of one face at its own resolution: side ``S'`` between the
        model's size and ``max_crop_size`` (a multiple of 4), so crop pixels map about 1:1
        onto frame pixels. The crop is uint8 (a uint16 frame's 8-bit copy): it feeds the
        networks only."""
        m = alignment_matrix(landmarks, self.size)
        native = int(round(self.size / np.sqrt(abs(np.linalg.det(m[:, :2])))))
        side = int(np.clip(native - native % 4, self.size, self.max_crop_size))
        return align_face(_uint8(frame_bgr), landmarks, side)

    # Kept for callers of the old private name.
    _crop = crop

    @staticmethod
    def aus(crop: FaceCrop, edits: Iterable[AUEdit]) -> tuple[np.ndarray, np.ndarray]:
        """``(current, target)`` AU vectors, float32 ``[17]`` in 0..5: the geometric
        estimate from the crop's landmarks, and it with ``edits`` (AU triples and
        :class:`~fastwarp.presets.ExprEdit` expression edits, in order) applied
        (:func:`fastwarp.au.apply_au_edits`) and made consistent with how the estimator reads
        them (:func:`fastwarp.face.aus.consistent_targets`: a jaw drop parts the lips, a
        closing eye does not widen)."""
        current = estimate_aus(crop.landmarks)
        return current, consistent_targets(current, apply_au_edits(current, list(edits)))

    @torch.no_grad()
    def predict(self, crop_bgr: np.ndarray, target_aus: Sequence[float] | np.ndarray,
                current_aus: Sequence[float] | np.ndarray, landmarks: np.ndarray | None = None,
                shape: np.ndarray | None = None, memory: dict | None = None) -> Maps:
        """Run the networks on an aligned crop ``[S', S', 3]`` uint8 BGR (resized to the
        model's S with area averaging when ``S' > S``); AU vectors ``[17]``, 0..5. With mesh
        motion the maps are :meth:`MeshMotion.maps` of the crop's ``landmarks``
        (``[478, 2 or 3]``, crop pixels; required then), the motion computed from ``shape``
        where given (``[478, 2]``, eye-line frame: a video's steady face shape); ``memory``: video,
        a face track's state (:meth:`MeshMotion.maps`, the same dict as :meth:`blend`'s
        ``region_memory``).

        Returns:
            :class:`Maps` at S px (batch 1), in the runner's dtype and device.
        Raises:
            ValueError: mesh motion without ``landmarks``.
        """
        device = torch.device(getattr(self.network, "device", self.device))
        if self.mesh_motion is not None:
            if landmarks is None:
                raise ValueError("predict: mesh motion needs the crop's landmarks (landmarks=crop.landmarks)")
            return self.mesh_motion.maps(crop_bgr, landmarks, current_aus, target_aus, device, shape, self.regions,
                                         memory)
        small = crop_bgr if crop_bgr.shape[0] == self.size else cv2.resize(
            crop_bgr, (self.size, self.size), interpolation=cv2.INTER_AREA)
        as_batch = lambda a: torch.as_tensor(np.asarray(a, np.float32), device=device)[None]  # noqa: E731
        return self.network(image_tensor(small, device), as_batch(target_aus), as_batch(current_aus))

    @torch.no_grad()
    def blend(self, frame_bgr: np.ndarray, crop: FaceCrop, maps: Maps, region_memory: dict | None = None) -> np.ndarray:
        """The edited frame: the frame-space composite (docs/design.md), one
        :func:`fastwarp.warp_blend` call with ``theta`` on the frame itself.

        ``frame_bgr``: ``[H, W, 3]`` BGR, uint8, or uint16 (a 16-bit photo): the composite
        then runs on a float32 copy of the frame (values 0..65535; float32 holds each
        exactly) with the texture scaled by 65535 / 255, and is rounded and clipped back to
        uint16, so pixels outside the face's footprint are the input's bit for bit.

        Every face pixel is sampled once from the original frame; the feathered face mask
        ``a`` (:func:`fastwarp.face.face_mask` on the maps' grid) is folded into the maps
        (``flow * a``, ``1 - a * (1 - mask)``), so the flow fades to 0 and the mask to 1 at
        the face's edge and nothing cross-fades two images; outside the grid's footprint
        the frame is untouched. Returns a new ``[H, W, 3]`` BGR frame in the input's dtype
        (the input is never written); a zero flow with mask 1 returns it bit for bit.

        With ``texture="regions"`` the eyes and the mouth are painted next
        (:mod:`fastwarp.region_paint`); ``region_memory`` (video: a dict kept per face track)
        steadies their texture over frames (:meth:`RegionPainter.paint`).

        Raises:
            TypeError: a frame neither uint8 nor uint16.
        """
        if frame_bgr.dtype not in (np.uint8, np.uint16):
            raise TypeError(f"blend: expected a uint8 or uint16 frame, got {frame_bgr.dtype}")
        device = maps.flow.device
        grid = maps.flow.shape[-1]
        theta = grid_theta(crop, grid)
        feather = face_mask((crop.landmarks[:, :2] + 0.5) * (grid / crop.size) - 0.5, grid)
        # Mesh motion's flow already falls to 0 at the mesh's fixed ring (beyond the face
        # oval, where a dropped jaw moves to): it is not feathered, and its support counts.
        mesh = self.mesh_motion is not None
        support = feather > 0
        if mesh:
            support = support | (maps.flow.detach().abs().sum(1)[0] > 0).cpu().numpy()
        rows, cols = np.nonzero(support)
        if len(rows) == 0:  # no face pixel on the grid: nothing moves
            return np.array(frame_bgr, copy=True)
        # Only the face's part of the grid (one zero-weight cell of margin): outside it the
        # feathered maps are flow 0 and mask 1, the frame itself, so the footprint, and
        # the work, shrink to the face's box with the same output.
        i0, i1 = max(rows.min() - 1, 0), min(rows.max() + 2, grid)
        j0, j1 = max(cols.min() - 1, 0), min(cols.max() + 2, grid)
        theta[:, 2] -= (j0, i0)
        a = torch.from_numpy(feather[i0:i1, j0:j1]).to(device)[None, None]
        window = (Ellipsis, slice(i0, i1), slice(j0, j1))
        flow = maps.flow[window].float()
        if mesh:
            flow = flow * still_motion_weight(flow, crop.size / crop.scale / grid)
        else:
            flow = flow * a
        mask = 1.0 - a * (1.0 - maps.mask[window].float())
        # A grey picture (black and white stored as colour) gets grey paint: the textures were
        # trained on colour faces and would tint its lips and lids.
        grey = achromatic(crop.image)
        painted = luma_texture(maps.texture[window].float()) if grey else maps.texture[window].float()
        texture = (painted.flip(1) + 1.0) * 127.5  # RGB in [-1, 1] -> the frame's BGR 0..255
        deep = frame_bgr.dtype == np.uint16
        if deep:  # 16 bits: composite in float32 (exact for every uint16), texture to 0..65535
            texture = texture * (65535.0 / 255.0)
            frame = torch.from_numpy(frame_bgr.astype(np.float32)).to(device)
        else:
            frame = torch.from_numpy(np.ascontiguousarray(frame_bgr)).to(device)
        out = ops.warp_blend(frame.permute(2, 0, 1)[None], flow, texture, mask,
                             theta=torch.from_numpy(theta[None]).to(device), mode=self.resample)
        if self.regions is not None and maps.motion is not None:  # the eyes and mouth, at their own resolution
            if deep:  # a valid image under the regions, as the 8-bit composite is (bicubic taps overshoot)
                out = out.clamp(0.0, 65535.0)
            out = self.regions.paint(out, _uint8(frame_bgr), crop.matrix, maps.motion, 65535.0 / 255.0 if deep else 1.0,
                                     region_memory, grey=grey)
        elif region_memory:
            region_memory.clear()  # nothing moved: no region painted, so no past to keep
        out = out[0].permute(1, 2, 0)
        if deep:
            return out.round().clamp(0, 65535).cpu().numpy().astype(np.uint16)
        return out.cpu().numpy()

    # --- whole edits -----------------------------------------------------------------------

    @torch.no_grad()
    def edit(self, frame_bgr: np.ndarray, edits: Iterable[AUEdit], *, all_faces: bool = False) -> FrameEdit:
        """Edit one frame.

        Args:
            frame_bgr: ``[H, W, 3]`` BGR (OpenCV), uint8 or uint16 (a 16-bit photo, see
                :meth:`blend`).
            edits: ``(AU name, value, relative)`` triples, e.g. from
                :func:`fastwarp.au.parse_au_edit` (absolute values set the AU, relative
                ones add to the face's current estimate), and expression edits
                :class:`~fastwarp.presets.ExprEdit` (``ExprEdit("smile", 0.8)``, see
                docs/presets.md), in one list; later items win where they set the same AU.
            all_faces: edit every face found (up to the editor's ``max_faces``), each by
                ``edits`` relative to its own estimate, instead of the largest only.
        Returns:
            :class:`FrameEdit` (``faces``: one :class:`FaceEdit` per face edited); with no
            face, the frame comes back unchanged.
        """
        frame8 = _uint8(frame_bgr)  # (the frame itself when it is uint8)
        faces = self.detect(frame8)
        if not faces:
            return FrameEdit(frame=frame_bgr.copy(), face_found=False)
        crops = [self.crop(frame8, lm) for lm in (faces if all_faces else faces[:1])]
        return self.edit_crops(frame_bgr, crops, edits)

    @torch.no_grad()
    def edit_crops(self, frame_bgr: np.ndarray, crops: Sequence[FaceCrop],
                   edits: Iterable[AUEdit] | Sequence[Iterable[AUEdit]], *, per_face: bool = False) -> FrameEdit:
        """:meth:`edit_crop` of several faces of one frame, composited in turn (each face's
        networks see its crop of the original frame; its composite goes onto the frame as
        the faces before it left it, as the real-time engine's ``render`` does).

        Args:
            frame_bgr: ``[H, W, 3]`` uint8 or uint16 BGR.
            crops: the faces' crops (:meth:`crop`), at least one; the first is the
                :class:`FrameEdit`'s ``crop``.
            edits: one list of edits for every face, or with ``per_face=True`` one list per
                crop.
        Returns:
            :class:`FrameEdit` with ``faces`` in the order of ``crops``.
        Raises:
            ValueError: no crop, or ``per_face`` with a number of edit lists other than
                the number of crops.
        """
        if not crops:
            raise ValueError("edit_crops: no face crop given")
        lists = [list(e) for e in edits] if per_face else [list(edits)] * len(crops)
        if len(lists) != len(crops):
            raise ValueError(f"edit_crops: {len(lists)} edit lists for {len(crops)} faces")
        out, done = frame_bgr, []
        for crop, face_edits in zip(crops, lists):
            current, target = self.aus(crop, face_edits)
            maps = self.predict(crop.image, target, current, crop.landmarks)
            out = self.blend(out, crop, maps)
            done.append(FaceEdit(crop, current, target))
        return FrameEdit(frame=out, face_found=True, current_aus=done[0].current_aus,
                         target_aus=done[0].target_aus, crop=done[0].crop, faces=done)

    @torch.no_grad()
    def edit_crop(self, frame_bgr: np.ndarray, crop: FaceCrop, edits: Iterable[AUEdit]) -> FrameEdit:
        """:meth:`edit` of a face already found and cropped (:meth:`detect`, :meth:`crop`):
        targets, maps and composite only, so one photo can be edited again and again without
        running FaceMesh (the web app's sliders). ``frame_bgr`` uint8 or uint16. Returns a
        :class:`FrameEdit` with ``face_found=True``; no AU change returns the frame bit for
        bit."""
        return self.edit_crops(frame_bgr, [crop], edits)
