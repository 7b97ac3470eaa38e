"""MeshTexture: the texture step of the mesh motion path (docs/design.md, "Motion from
landmarks"): what the warp cannot make, painted only where the mesh opened.

Where the lips part, the destination triangles of the face mesh between them are larger than
their sources, so the warp stretches a thin strip of the source across them (a lip line
becomes a pink block). :func:`opening_map` measures that per pixel,
``o = clamp((area_dest / area_source - 1) / OPENING_FULL, 0, 1)`` of the pixel's triangle,
in the mouth's gap and around the eyes (:func:`fastwarp.face.mesh.texture_regions`: where an eye
closes, the warp stretches the thin visible part of the upper lid, lashes and liner, over the
eye, where a real lid unfolds skin that was hidden in its crease); the triangles across the eye
shrink and keep a squeezed strip of iris and sclera that should be lid and lashes, so there
their loss of area counts (``closing``). The texture network sees
the map beside the warped crop and the AU change; its mask is gated by it,
``mask = 1 - o * (1 - m)``, so the texture reaches only opened regions and with no motion
(``o = 0`` everywhere) the mask is exactly 1: no edit, no change.

Trained by ``python -m training.texture`` on real video pairs: the source crop warped by the
mesh flow of the real target landmarks, the texture then fills what is left (a dark mouth
cavity, teeth, eyelid skin), region-weighted L1 against the real target frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ..au import AU_MAX, NUM_AUS
from .networks import Trunk
from .small_checkpoint import SmallModel

__all__ = ["OPENING_FULL", "CLOSING_FULL", "MIN_AREA_IOD", "MeshTexture", "TextureConfig", "opening_map", "gate_mask"]

#: Area growth of a triangle at which its pixels count as fully opened.
OPENING_FULL = 1.0
#: Area loss of a ``closing`` triangle at which its pixels count as fully closed.
CLOSING_FULL = 0.5
#: The smallest source area growth is measured against: a triangle of this side, in IOD units.
MIN_AREA_IOD = 0.05


def _area2(p: Tensor, triangles: Tensor) -> Tensor:
    a, b, c = (p[:, triangles[:, k]] for k in range(3))
    return ((b - a)[..., 0] * (c - a)[..., 1] - (b - a)[..., 1] * (c - a)[..., 0]).abs()


def opening_map(vertices: Tensor, displacement: Tensor, triangles: Tensor, triangle_index: Tensor,
                region: Tensor | None = None, closing: Tensor | None = None) -> Tensor:
    """How much each pixel's mesh triangle grew (in the triangles of ``region``) or shrank
    (in the triangles of ``closing``), 0..1: where the texture may paint.

    Args:
        vertices, displacement (Tensor[N, V, 2]): the mesh and its motion (as given to
            :func:`fastwarp.ops.mesh_flow`). With 468 or more vertices they are taken as
            FaceMesh's (the outer eye corners 33 and 263 give the inter-ocular distance, IOD).
        triangles (Tensor[T, 3]): int.
        triangle_index (Tensor[N, H, W]): int32 from :func:`fastwarp.ops.mesh_flow`, -1 off
            the mesh.
        region (Tensor[T], bool): the triangles whose growth counts (e.g.
            :func:`fastwarp.face.mesh.mouth_triangles`); default all.
        closing (Tensor[T], bool): triangles whose loss of area counts too,
            ``clamp((A_src - A_dest) / A_src / CLOSING_FULL, 0, 1)`` (e.g.
            :func:`fastwarp.face.mesh.eye_triangles`: a closing eye leaves a squeezed strip of
            iris and sclera that should be lid and lashes).
    Returns:
        Tensor[N, 1, H, W] in the vertices' dtype: ``clamp((A_dest - A_src) / max(A_src,
        A_min) / OPENING_FULL, 0, 1)`` of the pixel's triangle, ``A_min = (MIN_AREA_IOD *
        IOD)^2`` for a FaceMesh mesh (else no minimum), 0 off the mesh; exactly 0 everywhere
        when the displacement is 0.
    """
    tri = triangles.long()
    src = _area2(vertices, tri)
    dst = _area2(vertices + displacement, tri)
    # Growth relative to the source area, but never to less than a (0.05 IOD)^2 triangle: the
    # slivers between closed lips must open by a visible area, not by a ratio of nearly nothing.
    base = src
    if vertices.shape[1] >= 468:  # a FaceMesh mesh: the outer eye corners give the IOD
        iod = (vertices[:, 263] - vertices[:, 33]).norm(dim=-1, keepdim=True)
        base = torch.maximum(src, 2.0 * (MIN_AREA_IOD * iod) ** 2)  # (_area2 is twice the area)
    base = base.clamp_min(1e-6)
    grow = ((dst - src) / base / OPENING_FULL).clamp(0.0, 1.0)  # [N, T]
    grow = torch.where(dst > src, grow, torch.zeros_like(grow))
    if region is not None:
        grow = torch.where(region.to(grow.device), grow, torch.zeros_like(grow))
    if closing is not None:
        shrink = ((src - dst) / base / CLOSING_FULL).clamp(0.0, 1.0)
        grow = torch.where(closing.to(grow.device), torch.maximum(grow, shrink), grow)
    idx = triangle_index.long()
    n = idx.shape[0]
    o = grow.gather(1, idx.clamp_min(0).reshape(n, idx[0].numel() if n else 0)).view_as(idx)
    return torch.where(idx >= 0, o, torch.zeros_like(o))[:, None]


def gate_mask(m: Tensor, opening: Tensor) -> Tensor:
    """``1 - opening * (1 - m)``: the texture's share confined to opened pixels (exactly 1
    where ``opening`` is 0)."""
    return 1.0 - opening.to(m.dtype) * (1.0 - m)


@dataclass
class TextureConfig:
    width: int = 16
    res_blocks: int = 2
    size: int = 64  # the grid it was trained on (the editor runs it there)
    extra: dict = field(default_factory=dict)


class MeshTexture(SmallModel):
    """Warped crop + opening map + AU change → texture and gated mask.

    Forward:
        warped (Tensor[N, 3, S, S]): the crop warped by the mesh flow, RGB in [-1, 1];
        opening (Tensor[N, 1, S, S]): :func:`opening_map`, 0..1;
        current, target (Tensor[N, 17]): AU intensities 0..5.
        Returns ``(texture [N, 3, S, S] in [-1, 1], mask [N, 1, S, S] in [0, 1])`` with
        ``mask = 1 - opening * (1 - m)``: 1 wherever the mesh did not open.
    """

    config_class = TextureConfig
    checkpoint_what = "mesh texture"

    def __init__(self, config: TextureConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or TextureConfig()
        self.trunk = Trunk(3 + 1, c.width, c.res_blocks)
        self.texture_head = nn.Conv2d(c.width, 3, 7, 1, 3)
        self.mask_head = nn.Conv2d(c.width, 1, 7, 1, 3)

    def ungated(self, warped: Tensor, opening: Tensor, current: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """``(texture, m)``: the network's texture and its mask before the opening gate
        (for callers that gate on another grid, see :meth:`forward`)."""
        cond = ((target - current) / AU_MAX).to(warped.dtype)
        if cond.shape[-1] != NUM_AUS:
            raise ValueError(f"AU vectors must have {NUM_AUS} entries, got {cond.shape[-1]}")
        features = self.trunk(torch.cat([warped, opening.to(warped.dtype)], dim=1), cond)
        return torch.tanh(self.texture_head(features)), torch.sigmoid(self.mask_head(features))

    def forward(self, warped: Tensor, opening: Tensor, current: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        texture, m = self.ungated(warped, opening, current, target)
        return texture, gate_mask(m, opening)
