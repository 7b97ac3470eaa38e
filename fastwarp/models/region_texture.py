"""RegionTexture: texture that creates, per face region (issue 19; docs/design.md, "Data flow").

Each eye and the mouth is cut from the frame near its own resolution
(:mod:`fastwarp.face.regions`); the region is warped by the mesh motion, and a small U-Net
paints what the warp cannot make (a closed lid with its lash line, the cavity and teeth of a
mouth that opens, the folds and shading of a smile). Output: ``texture`` (RGB in [-1, 1]) and
``mask`` (sigmoid, GANimation's convention: 1 keeps the warped pixel); the composite is
``mask * warped + (1 - mask) * texture``.

The network's mask is gated, ``mask = 1 - gate * (1 - m)``: :func:`motion_gate` is where the
region's mesh deforms (:func:`deformation_map`: triangles that grew or shrank), dilated and
smoothed, times :func:`region_window`, which falls to 0 at the region's border. So
with no motion the mask is exactly 1 (the zero edit stays the identity) and at the region's
border it is exactly 1 too (the region's maps meet the frame's without a seam).

Inputs (all on the region's ``H x W`` grid, ``H`` and ``W`` divisible by 8):

- warped (Tensor[N, 3, H, W]): the source region warped to the target landmarks, RGB [-1, 1];
- opening (Tensor[N, 1, H, W]): :func:`fastwarp.models.mesh_texture.opening_map`, 0..1;
- contours (Tensor[N, 2, H, W]): :func:`fastwarp.face.regions.contour_map` of the target
  landmarks (eye: upper and lower lid; mouth: inner and outer lip line), 0..1;
- gate (Tensor[N, 1, H, W]): :func:`motion_gate`, 0..1;
- au_delta (Tensor[N, 17]): target minus current AUs (intensities, -5..5); it enters every
  block through FiLM on GroupNorm (tiled AUs would be erased by the normalisation).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import ops
from ..au import AU_MAX, NUM_AUS
from ..face.jaws import split_mouth_flow
from ..face.fold import warp_motion
from ..face.mesh import MESH_POINTS, mesh_triangles, mesh_vertices, texture_regions
from ..face.regions import contour_map
from .mesh_texture import opening_map
from .small_checkpoint import SmallModel

__all__ = ["RegionTextureConfig", "RegionTexture", "motion_gate", "deformation_map", "region_window", "composite",
           "region_inputs", "paint_cavity", "CAVITY_FILL"]


def region_window(height: int, width: int, ramp: float = 6.0, *, dtype: torch.dtype = torch.float32,
                  device: torch.device | str | None = None) -> Tensor:
    """``[1, 1, H, W]``: 0 on the region's outermost pixels, rising linearly to 1 over ``ramp``
    pixels inwards (``clamp(d / ramp, 0, 1)``, ``d`` the distance in pixels to the nearest
    border pixel centre)."""
    y = torch.arange(height, dtype=dtype, device=device)
    x = torch.arange(width, dtype=dtype, device=device)
    dy = torch.minimum(y, height - 1 - y)[:, None]
    dx = torch.minimum(x, width - 1 - x)[None, :]
    return (torch.minimum(dy, dx) / ramp).clamp(0.0, 1.0)[None, None]


def motion_gate(change: Tensor, full: float = 0.3, grow: int = 4) -> Tensor:
    """Where the texture may paint: ``[N, 1, H, W]`` in 0..1, exactly 0 where no mesh triangle
    within ``grow`` pixels changed its area, and on the region's border.

    ``s = clamp(change / full, 0, 1)``, dilated by a ``2 grow + 1`` max filter and smoothed by
    a box filter of the same size, times :func:`region_window`. Area change, not the flow's
    size: a frame's region and another's differ by a little rigid motion (alignment, head),
    which moves every pixel and deforms nothing; an edit of one frame has no rigid part.

    Args:
        change (Tensor[N, 1, H, W]): each pixel's triangle's relative area change, 0..1
            (:func:`deformation_map`).
        full: the change counted as full motion.
    """
    s = (change / full).clamp(0.0, 1.0)
    k = 2 * grow + 1
    # both filters separably (rows, then columns): the same max, the same mean up to float
    # rounding, at half the cost of the k x k window on the CPU
    s = F.max_pool2d(F.max_pool2d(s, (k, 1), 1, (grow, 0)), (1, k), 1, (0, grow))
    s = F.pad(s, (grow,) * 4, mode="replicate")
    s = F.avg_pool2d(F.avg_pool2d(s, (k, 1), 1, 0), (1, k), 1, 0)
    # exact zeros survive the box filter's rounding only where every input is 0
    s = torch.where(s > 1e-6, s, torch.zeros_like(s))
    return s * region_window(change.shape[-2], change.shape[-1], dtype=change.dtype, device=change.device)


def deformation_map(vertices: Tensor, displacement: Tensor, triangles: Tensor, triangle_index: Tensor) -> Tensor:
    """Every triangle's area change at each pixel, ``[N, 1, H, W]`` 0..1:
    :func:`~fastwarp.models.mesh_texture.opening_map` with growth and shrinkage counted in all
    triangles (exactly 0 with no displacement, and for any rigid motion up to rounding)."""
    every = torch.ones(triangles.shape[0], dtype=torch.bool, device=vertices.device)
    return opening_map(vertices, displacement, triangles, triangle_index, None, every)


@lru_cache(maxsize=1)
def _mesh_tensors() -> tuple[Tensor, tuple[Tensor, ...]]:
    """The face mesh's triangles and texture regions as tensors (built once)."""
    return (torch.from_numpy(np.array(mesh_triangles())),
            tuple(torch.from_numpy(np.array(r)) for r in texture_regions()))


#: RGB in [-1, 1] that fills an opening mouth's cavity in the generator's input (``cavity=True``):
#: a dark red-brown, the mouth's inside in shadow (the texture paints over it).
CAVITY_FILL = (-0.70, -0.86, -0.86)


def region_inputs(source: Tensor, source_landmarks: Tensor, target_landmarks: Tensor, kind: str,
                  sides: Sequence[str], *, jaws: bool = True,
                  upper_share: float | Sequence[float] | None = None, cavity: bool = False,
                  lid_floor: float | None = None, lid_contours: str = "landmarks") -> dict[str, Tensor]:
    """The generator's inputs for regions moved from their source landmarks to their target
    landmarks through the face mesh: what training pairs them with (training/region_gan.py,
    ``make_batch``) and what the editor paints with (:mod:`fastwarp.region_paint`), one function
    so the two cannot drift apart.

    Args:
        source (Tensor[B, 3, H, W]): the regions, RGB in [-1, 1].
        source_landmarks, target_landmarks (Tensor[B, 478, 2]): float32, in region pixels.
        kind: ``"eye"`` or ``"mouth"`` (which contours, :func:`fastwarp.face.regions.contour_map`).
        sides: each region's eye side (``"right"``, ``"left"``; any for the mouth).
        jaws: for the mouth, teeth that follow the jaws (False: the mesh warp alone, as before
            issue 19's phase 3; for comparisons).
        upper_share: for the mouth, where the jaws part in each source mouth
            (:func:`fastwarp.face.jaws.split_mouth_flow`; the editor passes the face's own,
            :func:`fastwarp.face.jaws.upper_share`); None: :data:`fastwarp.face.jaws.UPPER_SHARE`
            (what the shipped mouth textures were trained with).
        cavity: for the mouth with ``jaws``, the cavity that opens between the jaws (where the
            split flow repeats its split line, streaked where that line crosses teeth) is filled
            with :data:`CAVITY_FILL` in ``warped``, softly (the binary cavity under a 3 x 3 box
            filter), and returned for :func:`paint_cavity` (a texture trained so,
            :attr:`RegionTextureConfig.cavity`, always paints it). For the eye, the closing
            aperture: the eye-opening triangles' loss of area
            (:func:`~fastwarp.models.mesh_texture.opening_map`'s ``closing``, 1 from half the
            area lost; a blink loses 70 % or more) under the landmarks' own motion (the strip
            between the target's lid landmarks, whether or not the lids meet there), under the
            same 3 x 3 box filter; ``warped`` is not filled there (a half-closed eye still shows
            its iris), and a texture trained so paints it in proportion (wholly where the eye
            closes).

    The mesh moves from the source landmarks to the target's with lids that meet
    (:func:`fastwarp.face.lids.close_lids`, as the face's own warp in the editor): a closing eye's
    gap less FaceMesh's floor (``lid_floor``; None: :data:`fastwarp.face.lids.LID_FLOOR`, 0: the
    landmarks' own motion), and no fold-overs (:func:`fastwarp.face.fold.unfold`; both
    :func:`fastwarp.face.fold.warp_motion`). ``lid_contours``: ``"landmarks"`` (default) draws the target's lid
    lines where the landmarks put them (FaceMesh's closed lids stay 0.03-0.10 eye widths apart,
    as in the real closed eyes the eye textures learn from); ``"warp"``, where the warp puts them
    (lids that meet drawn meeting: measured in phase 8 and not kept, docs/evaluation/regions).

    Returns:
        ``warped`` [B, 3, H, W] (the source warped by ``flow``), ``flow`` [B, 2, H, W] (region
        pixels; for the mouth with its inside split between the jaws,
        :func:`fastwarp.face.jaws.split_mouth_flow`), ``opening``, ``gate`` [B, 1, H, W]
        (:func:`motion_gate`; for the mouth 0 on the teeth that moved rigidly with a lip, so
        the texture keeps them at the frame's own resolution), ``contours`` [B, 2, H, W] (the
        target's lines, as ``lid_contours`` says), ``inside`` [B, 1, H, W] bool (inside the
        moved mesh, whose fixed ring bounds every edit: the editor paints nowhere else),
        ``cavity`` [B, 1, H, W] (0..1 where ``cavity``, else 0).
    """
    if lid_contours not in ("warp", "landmarks"):
        raise ValueError(f"lid_contours must be 'warp' or 'landmarks', got {lid_contours!r}")
    tri, regions = _mesh_tensors()
    H, W = source.shape[-2:]
    verts = mesh_vertices(source_landmarks)
    literal = mesh_vertices(target_landmarks) - verts
    disp = warp_motion(verts, literal, lid_floor)  # lids that meet, no fold-overs: as the face's warp
    flow, index = ops.mesh_flow(verts, disp, tri, (H, W))
    gate = motion_gate(deformation_map(verts, disp, tri, index))
    hole = torch.zeros_like(gate)
    if kind == "mouth" and jaws:  # teeth follow the jaws, as in the editor's face flow, and are kept as they are
        flow, opened, rigid = split_mouth_flow(flow, source_landmarks, target_landmarks, upper_share)
        gate = gate * (1.0 - rigid)
        if cavity:
            hole = F.avg_pool2d(F.pad(opened.to(gate.dtype), (1, 1, 1, 1), mode="replicate"), 3, 1)
    elif kind == "eye" and cavity:  # the closing aperture: its squeezed iris and sclera become lid and lashes
        # on the landmarks' own motion: where lids meet their aperture has no area left on the
        # region's grid, but the face's coarser flow grid (64 or 128 px a face) still crosses the
        # open eye between the two lids there (a jagged dark line of pupil through lite's blink)
        lit_index = index if disp is literal else ops.mesh_flow(verts, literal, tri, (H, W))[1]
        closed = opening_map(verts, literal, tri, lit_index, torch.zeros_like(regions[1]), regions[1])
        hole = F.avg_pool2d(F.pad(closed, (1, 1, 1, 1), mode="replicate"), 3, 1)
    warped = ops.warp(source, flow)
    if kind == "mouth" and cavity and bool(hole.any()):
        fill = torch.tensor(CAVITY_FILL, dtype=warped.dtype)[None, :, None, None]
        warped = warped * (1.0 - hole) + fill * hole
    # "warp": the lids the warp made, where they meet their contours meet too (phase 8: a thinner
    # painted band that MediaPipe reads as more closed, but an orange lid margin; not kept)
    drawn = target_landmarks
    if disp is not literal and lid_contours == "warp":
        drawn = target_landmarks.clone()
        drawn[:, :MESH_POINTS] = (verts + disp)[:, :MESH_POINTS].to(drawn.dtype)
    contours = np.stack([contour_map(lm, kind, H, W, side) for lm, side in zip(drawn.numpy(), sides)])
    return {"warped": warped, "flow": flow, "opening": opening_map(verts, disp, tri, index, *regions),
            "gate": gate, "contours": torch.from_numpy(contours), "inside": (index >= 0)[:, None], "cavity": hole}


def paint_cavity(mask: Tensor, cavity: Tensor) -> Tensor:
    """``mask (1 - cavity)``: the texture paints the opening mouth's cavity
    (:func:`region_inputs` with ``cavity=True``); ``mask`` itself where ``cavity`` is 0.

    Args:
        mask (Tensor[N, 1, H, W]): the generator's gated mask. cavity: the same shape, 0..1.
    """
    return mask * (1.0 - cavity.to(mask.dtype))


def composite(warped: Tensor, texture: Tensor, mask: Tensor) -> Tensor:
    """``mask * warped + (1 - mask) * texture`` (GANimation; :func:`fastwarp.warp_blend`'s blend)."""
    return mask * warped + (1.0 - mask) * texture


@dataclass
class RegionTextureConfig:
    kind: str = "eye"          # "eye" or "mouth"
    height: int = 64
    width: int = 128
    channels: list = field(default_factory=lambda: [16, 32, 64, 128])  # per level, full res first
    res_blocks: int = 1        # at the bottleneck
    groups: int = 8
    cavity: bool = False       # trained to paint the mouth's cavity, or the eye's closing aperture
    # (region_inputs(cavity=True), paint_cavity)
    extra: dict = field(default_factory=dict)


class _FiLMNorm(nn.Module):
    """GroupNorm whose scale and shift depend on the AU change (FiLM, Perez et al. 2018),
    starting as plain GroupNorm (the linear map is zero at init)."""

    def __init__(self, ch: int, groups: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(min(groups, ch), ch)
        self.film = nn.Linear(NUM_AUS, 2 * ch)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        gamma, beta = self.film(cond).chunk(2, dim=1)
        return self.norm(x) * (1 + gamma[:, :, None, None]) + beta[:, :, None, None]


class _Conv(nn.Module):
    def __init__(self, cin: int, cout: int, groups: int, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.norm = _FiLMNorm(cout, groups)

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        return F.leaky_relu(self.norm(self.conv(x), cond), 0.2)


class _Res(nn.Module):
    def __init__(self, ch: int, groups: int) -> None:
        super().__init__()
        self.a = _Conv(ch, ch, groups)
        self.b = nn.Conv2d(ch, ch, 3, 1, 1, bias=False)
        self.norm = _FiLMNorm(ch, groups)

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        return F.leaky_relu(x + self.norm(self.b(self.a(x, cond)), cond), 0.2)


class RegionTexture(SmallModel):
    """A small U-Net: (warped, opening, contours, gate, AU change) -> (texture, gated mask).

    Levels ``channels[0..L-1]``: a 3x3 conv pair at full resolution, then per level a stride-2
    3x3 conv and a 3x3 conv; :attr:`RegionTextureConfig.res_blocks` residual blocks at the
    bottleneck; the decoder upsamples (nearest) and merges the encoder's skip with a 3x3
    conv. Heads: 3x3 conv to RGB (tanh) and to the mask logit (sigmoid, biased to start at
    0.9: keep the warp first).

    Forward: see the module docstring; ``cavity`` (optional, [N, 1, H, W], :func:`region_inputs`'
    ``cavity``) is painted by a model trained so, wholly where it is 1 (:attr:`RegionTextureConfig.cavity`,
    :func:`paint_cavity`), and ignored by others. Returns ``(texture [N, 3, H, W], mask [N, 1, H,
    W])`` with ``mask = 1 - gate * (1 - sigmoid(logit))``.

    Raises:
        ValueError: H or W not divisible by ``2 ** (levels - 1)``, or an AU vector not of 17.
    """

    config_class = RegionTextureConfig
    checkpoint_what = "region texture"
    in_channels = 3 + 1 + 2 + 1

    def __init__(self, config: RegionTextureConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or RegionTextureConfig()
        ch, g = list(c.channels), c.groups
        self.stem = nn.ModuleList([_Conv(self.in_channels, ch[0], g), _Conv(ch[0], ch[0], g)])
        self.down = nn.ModuleList([nn.ModuleList([_Conv(ch[i], ch[i + 1], g, stride=2), _Conv(ch[i + 1], ch[i + 1], g)])
                                   for i in range(len(ch) - 1)])
        self.mid = nn.ModuleList([_Res(ch[-1], g) for _ in range(c.res_blocks)])
        self.up = nn.ModuleList([nn.ModuleList([_Conv(ch[i + 1], ch[i], g), _Conv(2 * ch[i], ch[i], g)])
                                 for i in reversed(range(len(ch) - 1))])
        self.texture_head = nn.Conv2d(ch[0], 3, 3, 1, 1)
        self.mask_head = nn.Conv2d(ch[0], 1, 3, 1, 1)
        nn.init.normal_(self.mask_head.weight, std=1e-3)
        nn.init.constant_(self.mask_head.bias, float(torch.logit(torch.tensor(0.9))))

    def forward(self, warped: Tensor, opening: Tensor, contours: Tensor, gate: Tensor,
                au_delta: Tensor, cavity: Tensor | None = None) -> tuple[Tensor, Tensor]:
        levels = len(self.config.channels) - 1
        if warped.shape[-1] % (2 ** levels) or warped.shape[-2] % (2 ** levels):
            raise ValueError(f"region height and width must be divisible by {2 ** levels}, "
                             f"got {list(warped.shape[-2:])}")
        if au_delta.dim() != 2 or au_delta.shape[-1] != NUM_AUS:
            raise ValueError(f"au_delta must be [N, {NUM_AUS}], got {list(au_delta.shape)}")
        dt = warped.dtype
        cond = (au_delta / AU_MAX).to(dt)
        x = torch.cat([warped, opening.to(dt), contours.to(dt), gate.to(dt)], dim=1)
        for layer in self.stem:
            x = layer(x, cond)
        skips = [x]
        for a, b in self.down:
            x = b(a(x, cond), cond)
            skips.append(x)
        for block in self.mid:
            x = block(x, cond)
        skips.pop()
        for a, b in self.up:
            x = a(F.interpolate(x, scale_factor=2.0, mode="nearest"), cond)
            x = b(torch.cat([x, skips.pop()], dim=1), cond)
        texture = torch.tanh(self.texture_head(x))
        m = torch.sigmoid(self.mask_head(x))
        mask = 1.0 - gate.to(dt) * (1.0 - m)
        if self.config.cavity and cavity is not None:
            mask = paint_cavity(mask, cavity)
        return texture, mask

    def extra_repr(self) -> str:
        c = self.config
        return f"kind={c.kind!r}, size={c.height}x{c.width}, channels={list(c.channels)}"
