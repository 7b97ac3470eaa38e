"""EditorNet, the editing network (not the photo/video pipeline, which is
:class:`fastwarp.ExpressionEditor`): motion (flow warp) then texture (blend), as in "Self-supervised Deformation
Modeling for Facial Expression Editing" (Athar, Shu, Samaras, FG 2020), through
fastwarp's fused ops. Checkpoints are safetensors + a JSON config (docs/design.md,
"Checkpoints"): never a pickle.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from .. import ops
from .._io import atomic_path
from ..au import AU_NAMES
from .networks import MotionNet, TextureNet

__all__ = ["EditorConfig", "EditResult", "EditorNet", "FaceEditor", "texture_gate", "DEFAULT_WEIGHTS", "WEIGHTS_DIR", "BUNDLED_WEIGHTS",
           "resolve_weights"]

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
#: The weights that ship with the package (``fastwarp/weights/<name>.safetensors/.json/.md``):
#: "base" (paper-like, 128 px; the default) and "lite" (narrow, for real time on a CPU).
BUNDLED_WEIGHTS = ("base", "lite")
DEFAULT_WEIGHTS = WEIGHTS_DIR / "base"


def resolve_weights(weights: str | os.PathLike | None = None) -> Path:
    """Checkpoint path (without suffix) for ``weights``: None → the bundled "base"; a
    bundled name ("base", "lite") → ``fastwarp/weights/<name>``; anything else is a path
    (a ``.safetensors`` / ``.json`` suffix is dropped)."""
    if weights is None:
        return DEFAULT_WEIGHTS
    if isinstance(weights, str) and weights in BUNDLED_WEIGHTS:
        return WEIGHTS_DIR / weights
    base = Path(weights)
    return base.with_suffix("") if base.suffix in (".safetensors", ".json") else base


@dataclass
class EditorConfig:
    """Architecture of a :class:`EditorNet` (saved next to its weights)."""

    image_size: int = 128
    motion_width: int = 64
    motion_res_blocks: int = 6
    texture_width: int = 64
    texture_res_blocks: int = 6
    max_flow: float = 0.15
    # Side of the grid the networks run on and emit flow / texture / mask at (0: the image
    # size). Smaller (the "lite" weights: 64) downsamples the input (area averaging), and
    # fastwarp.warp_blend upsamples the maps inside the kernel, so the output keeps the
    # full image resolution at a quarter of the network cost.
    map_size: int = 0
    use_motion: bool = True  # False: GANimation's texture-only editing (the ablation)
    # What the networks see: "target" — the target AUs (GANimation); "delta" — target minus
    # the face's current AUs (difference attributes, STGAN, Liu et al. CVPR 2019): an
    # unchanged AU reads 0, so "no edit" is the zero condition.
    conditioning: str = "target"
    # Identity by construction (needs "delta" conditioning): no AU-independent flow
    # (MotionNet bias_flow=False) and the texture's share gated by the size of the AU
    # change, mask -> 1 - g * (1 - mask), g = min(1, max_k |target_k - current_k|): a zero
    # AU change gives flow exactly 0 and mask exactly 1, so the editor returns its input.
    identity_gate: bool = False
    au_names: list[str] = field(default_factory=lambda: list(AU_NAMES))
    extra: dict = field(default_factory=dict)  # provenance: training data, command, commit


class EditResult(NamedTuple):
    """Everything one edit produced. ``output`` has the input's resolution ``S``; the maps
    are on the networks' grid ``M`` (``config.map_size``, = ``S`` unless set smaller).

    output (Tensor[N, 3, S, S]) in [-1, 1]; flow (Tensor[N, 2, M, M]) in pixels of the
    ``M`` grid; warped (Tensor[N, 3, M, M]) the network-resolution input warped by it;
    texture (Tensor[N, 3, M, M]) in [-1, 1]; mask (Tensor[N, 1, M, M]) in [0, 1],
    1 = keep the warped pixel.
    """

    output: Tensor
    flow: Tensor
    warped: Tensor
    texture: Tensor
    mask: Tensor


def texture_gate(delta: Tensor) -> Tensor:
    """The texture's share for an AU change ``delta`` ``[N, 17]`` (intensity units):
    ``min(1, max_k |delta_k|)``, ``[N]``; exactly 0 for no change, 1 from a change of one
    intensity level on (:attr:`EditorConfig.identity_gate`)."""
    return delta.abs().amax(dim=1).clamp(max=1.0)


class EditorNet(nn.Module):
    """Edit aligned face crops to target Action Units.

    Forward:
        image (Tensor[N, 3, S, S]): RGB in [-1, 1], S = ``config.image_size``.
        aus (Tensor[N, 17]): target AU intensities 0..5 in :data:`fastwarp.AU_NAMES` order.
        source_aus (Tensor[N, 17] or None): the face's current AUs; required when
            ``config.conditioning == "delta"`` (the networks then see ``aus - source_aus``).
    Returns:
        :class:`EditResult`; ``output = mask * warp(image, flow) + (1 - mask) * texture``.
    """

    def __init__(self, config: EditorConfig | None = None) -> None:
        super().__init__()
        self.config = config or EditorConfig()
        c = self.config
        if c.conditioning not in ("target", "delta"):
            raise ValueError(f"config.conditioning must be 'target' or 'delta', got {c.conditioning!r}")
        if c.map_size and not (4 <= c.map_size <= c.image_size and c.map_size % 4 == 0):
            raise ValueError(f"config.map_size must be 0 or a multiple of 4 in [4, image_size={c.image_size}], "
                             f"got {c.map_size}")
        if c.identity_gate and c.conditioning != "delta":
            raise ValueError("config.identity_gate needs conditioning='delta' (the gate is the size of the AU change)")
        if list(c.au_names) != list(AU_NAMES):
            raise ValueError(f"config.au_names must be fastwarp's AU order {list(AU_NAMES)}, got {c.au_names}")
        self.motion = (MotionNet(c.motion_width, c.motion_res_blocks, c.max_flow, bias_flow=not c.identity_gate)
                       if c.use_motion else None)
        self.texture = TextureNet(c.texture_width, c.texture_res_blocks)
        #: ``backend=`` of the warp ops (:func:`fastwarp.resolve_backend`); the ONNX export
        #: sets "reference", whose grid_sample exports as the standard GridSample op.
        self.warp_backend = "auto"

    def forward(self, image: Tensor, aus: Tensor, source_aus: Tensor | None = None) -> EditResult:
        if image.dim() != 4 or image.shape[1] != 3:
            raise ValueError(f"image must have shape [N, 3, S, S], got {list(image.shape)}")
        expected = (image.shape[0], len(AU_NAMES))
        if aus.shape != expected:
            raise ValueError(f"aus must have shape [{image.shape[0]}, {len(AU_NAMES)}], got {list(aus.shape)}")
        if self.config.conditioning == "delta":
            if source_aus is None:
                raise ValueError("this model is conditioned on AU differences: pass source_aus (the face's "
                                 "current AUs)")
            if source_aus.shape != expected:
                raise ValueError(f"source_aus must have shape [{expected[0]}, {expected[1]}], "
                                 f"got {list(source_aus.shape)}")
            aus = aus - source_aus
        small = image
        if self.config.map_size and self.config.map_size != image.shape[-1]:
            small = F.interpolate(image, size=(self.config.map_size, self.config.map_size), mode="area")
        if self.motion is not None:
            flow = self.motion(small, aus)
            warped = ops.warp(small, flow, backend=self.warp_backend)
        else:
            flow = small.new_zeros(small.shape[0], 2, *small.shape[2:])
            warped = small
        texture, mask = self.texture(warped, aus)
        if self.config.identity_gate:
            mask = 1 - texture_gate(aus).to(mask.dtype)[:, None, None, None] * (1 - mask)
        # With zero flow (texture-only) warp_blend samples pixel centres exactly, so this is
        # GANimation's mask * image + (1 - mask) * texture. Maps on a smaller grid are
        # upsampled inside the kernel (flow scaled to image pixels).
        output = ops.warp_blend(image, flow, texture, mask, backend=self.warp_backend)
        return EditResult(output, flow, warped, texture, mask)

    # --- checkpoints ---------------------------------------------------------------------

    def save(self, path: str | os.PathLike, dtype: torch.dtype | None = None) -> tuple[Path, Path]:
        """Write ``<path>.safetensors`` and ``<path>.json`` atomically (temp file, then rename).

        Args:
            dtype: store floating-point tensors in this dtype (e.g. ``torch.float16`` halves
                the file; :meth:`load` converts back to the model's dtype).
        Returns:
            The two paths written.
        """
        base = Path(path)
        base.parent.mkdir(parents=True, exist_ok=True)
        weights, config = base.with_suffix(".safetensors"), base.with_suffix(".json")
        tensors = {k: v.detach().cpu().to(dtype if dtype is not None and v.is_floating_point() else v.dtype)
                   .contiguous() for k, v in self.state_dict().items()}
        with atomic_path(weights) as tmp:
            save_file(tensors, str(tmp), metadata={"format": "pt"})
        with atomic_path(config) as tmp:
            tmp.write_text(json.dumps(dataclasses.asdict(self.config), indent=2) + "\n")
        return weights, config

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, map_location: str | torch.device = "cpu") -> "EditorNet":
        """Load ``<path>.safetensors`` + ``<path>.json``; ``path`` may also name bundled
        weights ("base", "lite"; None: "base"), see :func:`resolve_weights`.

        Raises:
            FileNotFoundError: either file is missing.
            ValueError: the config or the weights do not match the architecture, or the
                weights file is not safetensors (corrupt, truncated).
        """
        base = resolve_weights(path)
        weights, config = base.with_suffix(".safetensors"), base.with_suffix(".json")
        for p in (weights, config):
            if not p.is_file():
                raise FileNotFoundError(f"checkpoint file not found: {p}")
        try:
            raw = json.loads(config.read_text())
            cfg = EditorConfig(**raw)
        except (json.JSONDecodeError, TypeError) as exc:
            raise ValueError(f"invalid editor config {config}: {exc}") from exc
        model = cls(cfg)
        try:
            state = load_file(str(weights), device=str(map_location))
        except SafetensorError as exc:
            raise ValueError(f"cannot read weights {weights}: {exc} (not a safetensors file, or a truncated one)"
                             ) from exc
        try:
            missing, unexpected = model.load_state_dict(state, strict=False)
        except RuntimeError as exc:  # a tensor of another shape: the weights of another config
            detail = next((line.strip() for line in str(exc).splitlines()[1:] if line.strip()), str(exc))
            raise ValueError(f"weights {weights} do not match the config {config}: {detail}") from exc
        if missing or unexpected:
            raise ValueError(f"weights {weights} do not match the config: missing {missing[:5]}, "
                             f"unexpected {unexpected[:5]}")
        return model.to(map_location).eval()



#: The earlier name of :class:`EditorNet`, kept so existing code keeps working.
FaceEditor = EditorNet
