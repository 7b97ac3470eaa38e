"""Pure-PyTorch reference of fastwarp's ops: the specification every backend is tested
against (in float64 on CPU) and the baseline every benchmark compares with.

``warp`` is exactly ``F.grid_sample(image, base_grid + normalised_flow, mode=mode,
padding_mode=..., align_corners=True)`` (docs/design.md, "The ops"), ``mode`` "bilinear" or
"bicubic" (grid_sample's Keys cubic, a = -0.75, each tap's index clamped for "border"). ``align_corners=True``
puts pixel centres at integer coordinates, so the flow in pixels is normalised by
``2 / (size - 1)``. A size-1 axis has no extent: grid_sample maps every finite
coordinate onto its only pixel, so its normalising factor is 0 (non-finite flow still
gives NaN coordinates there, as grid_sample would).

Resolution independence (docs/design.md): ``flow``, ``texture`` and ``mask`` may share a
smaller size ``h x w`` (``h <= H``, ``w <= W``). They are first brought to the image's
size by :func:`upsample` (``F.interpolate(..., mode="bilinear", align_corners=False)``),
the flow's values scaled by ``W / w`` (dx) and ``H / h`` (dy), so a flow stays in pixels
of the grid it was predicted on.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["warp", "warp_blend", "normalised_grid", "upsample", "upsample_flow", "grid_coordinates", "footprint",
           "sample_grid", "mesh_flow", "MESH_MIN_AREA2"]


def normalised_grid(flow: Tensor) -> Tensor:
    """Sampling grid for ``F.grid_sample(..., align_corners=True)`` from a pixel flow.

    Args:
        flow (Tensor[N, 2, H, W]): ``flow[:, 0]`` = dx, ``flow[:, 1]`` = dy, in pixels.
    Returns:
        Tensor[N, H, W, 2]: ``(x, y)`` in [-1, 1] where the sample stays inside the image.
    """
    _, _, H, W = flow.shape
    opts = dict(dtype=flow.dtype, device=flow.device)
    xs = torch.linspace(-1.0, 1.0, W, **opts)
    ys = torch.linspace(-1.0, 1.0, H, **opts)
    sx = 2.0 / (W - 1) if W > 1 else 0.0
    sy = 2.0 / (H - 1) if H > 1 else 0.0
    gx = xs.view(1, 1, W) + flow[:, 0] * sx
    gy = ys.view(1, H, 1) + flow[:, 1] * sy
    return torch.stack((gx, gy), dim=-1)


def upsample(t: Tensor, size: tuple[int, int]) -> Tensor:
    """``t`` bilinearly resized to ``size`` = (H, W) with ``align_corners=False``
    (``F.interpolate`` semantics); returned unchanged when it already has that size.

    Args:
        t (Tensor[N, C, h, w]): floating point.
        size: (H, W), each at least the input's.
    Returns:
        Tensor[N, C, H, W].
    """
    if tuple(t.shape[-2:]) == tuple(size):
        return t
    if t.numel() == 0:  # F.interpolate refuses a tensor with no channels; no values to resize
        return t.reshape(*t.shape[:-2], *size)
    return F.interpolate(t, size=tuple(size), mode="bilinear", align_corners=False)


def upsample_flow(flow: Tensor, size: tuple[int, int]) -> Tensor:
    """A flow in pixels of its own ``h x w`` grid, as a flow in pixels of an ``H x W``
    grid: :func:`upsample`, then dx times ``W / w`` and dy times ``H / h``.

    Args:
        flow (Tensor[N, 2, h, w]): (dx, dy) in pixels of the h x w grid.
        size: (H, W).
    Returns:
        Tensor[N, 2, H, W].
    """
    h, w = flow.shape[-2:]
    H, W = size
    if (h, w) == (H, W):
        return flow
    up = upsample(flow, size)
    return torch.stack((up[:, 0] * (W / w), up[:, 1] * (H / h)), dim=1)


def grid_coordinates(theta: Tensor, size: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """Where each image pixel centre sits on the maps' grid: ``(u, v) = theta[n] @ (x, y, 1)``
    (docs/design.md, "Frame-space composite").

    Args:
        theta (Tensor[N, 2, 3]): the affine map from image pixels to grid pixels.
        size: the image's (H, W).
    Returns:
        (u, v), each Tensor[N, H, W] in theta's dtype.
    """
    H, W = size
    opts = dict(dtype=theta.dtype, device=theta.device)
    x = torch.arange(W, **opts).view(1, 1, W)
    y = torch.arange(H, **opts).view(1, H, 1)
    t = theta.view(-1, 6, 1, 1)
    return t[:, 0] * x + t[:, 1] * y + t[:, 2], t[:, 3] * x + t[:, 4] * y + t[:, 5]


def footprint(theta: Tensor, grid: tuple[int, int], size: tuple[int, int]) -> Tensor:
    """Image pixels whose centre falls on the ``h x w`` grid (``-0.5 <= u <= w - 0.5`` and
    ``-0.5 <= v <= h - 0.5``): Tensor[N, 1, H, W] bool."""
    h, w = grid
    u, v = grid_coordinates(theta, size)
    return ((u >= -0.5) & (u <= w - 0.5) & (v >= -0.5) & (v <= h - 0.5)).unsqueeze(1)


def sample_grid(maps: Tensor, theta: Tensor, size: tuple[int, int]) -> Tensor:
    """``maps`` (Tensor[N, K, h, w]) sampled bilinearly at every image pixel's ``(u, v)``,
    the coordinate clamped to the grid (``F.grid_sample(..., align_corners=True,
    padding_mode="border")``): Tensor[N, K, H, W]."""
    h, w = maps.shape[-2:]
    u, v = grid_coordinates(theta.to(maps.dtype), size)
    gx = u * (2.0 / (w - 1)) - 1.0 if w > 1 else u * 0.0
    gy = v * (2.0 / (h - 1)) - 1.0 if h > 1 else v * 0.0
    return F.grid_sample(maps, torch.stack((gx, gy), dim=-1), mode="bilinear", padding_mode="border",
                         align_corners=True)


def _composite(image: Tensor, flow: Tensor, texture: Tensor | None, mask: Tensor | None, theta: Tensor,
               padding_mode: str, mode: str = "bilinear") -> Tensor:
    """The frame-space composite, in the maps' dtype (float32 math for a uint8 image)."""
    theta = theta.detach()
    size = image.shape[-2:]
    frame = image.to(flow.dtype) if image.dtype == torch.uint8 else image
    inverse = torch.linalg.inv(theta[:, :, :2].to(torch.float64)).to(flow.dtype)  # L^-1: grid px -> image px
    f = sample_grid(flow, theta, size)
    disp = torch.einsum("nij,njhw->nihw", inverse, f)
    out = warp(frame, disp, padding_mode=padding_mode, mode=mode)
    if texture is not None:
        m = sample_grid(mask, theta, size)
        out = m * out + (1 - m) * sample_grid(texture, theta, size)
    out = torch.where(footprint(theta, flow.shape[-2:], size), out, frame)
    if image.dtype == torch.uint8:
        return out.clamp(0, 255).round().to(torch.uint8)
    return out


def warp(image: Tensor, flow: Tensor, *, padding_mode: str = "border", theta: Tensor | None = None,
         mode: str = "bilinear") -> Tensor:
    """Reference backward warp: ``out[n, c, y, x] = sample(image[n, c], x + dx, y + dy)``.

    Args:
        image (Tensor[N, C, H, W]): floating point (uint8 with ``theta``: float32 math,
            rounded to the nearest integer).
        flow (Tensor[N, 2, h, w]): displacement (dx, dy) in pixels, same dtype and device;
            ``h <= H``, ``w <= W`` (upsampled by :func:`upsample_flow`).
        padding_mode (str): ``"border"`` or ``"zeros"``.
        mode (str): ``"bilinear"`` or ``"bicubic"``: the image taps (grid_sample's modes).
        theta (Tensor[N, 2, 3] or None): places the flow's grid on the image
            (docs/design.md, "Frame-space composite"): the flow is sampled at
            ``theta @ (x, y, 1)`` (clamped to the grid) in grid pixels, mapped to image pixels
            by the inverse of theta's linear part; pixels outside the grid's footprint are
            the image's own.
    Returns:
        Tensor[N, C, H, W].
    """
    if theta is not None:
        return _composite(image, flow, None, None, theta, padding_mode, mode)
    flow = upsample_flow(flow, image.shape[-2:])
    return F.grid_sample(image, normalised_grid(flow), mode=mode, padding_mode=padding_mode, align_corners=True)


def warp_blend(image: Tensor, flow: Tensor, texture: Tensor, mask: Tensor, *,
               padding_mode: str = "border", theta: Tensor | None = None, mode: str = "bilinear") -> Tensor:
    """Reference warp-plus-blend: ``mask * warp(image, flow) + (1 - mask) * texture``.

    Args:
        image (Tensor[N, C, H, W]), flow (Tensor[N, 2, h, w]), theta, mode as in :func:`warp`.
        texture (Tensor[N, C, h, w]): the texture network's image.
        mask (Tensor[N, 1, h, w]): attention mask, 1 keeps the warped pixel (GANimation).
    Texture and mask are upsampled to H x W by :func:`upsample` (with ``theta``: sampled
    at each pixel's grid position, as the flow).
    """
    if theta is not None:
        return _composite(image, flow, texture, mask, theta, padding_mode, mode)
    size = image.shape[-2:]
    mask = upsample(mask, size)
    return mask * warp(image, flow, padding_mode=padding_mode, mode=mode) + (1 - mask) * upsample(texture, size)


# --- mesh_flow: a landmark mesh's motion rendered to a dense flow (docs/design.md, "mesh_flow") ---

#: Twice a destination triangle's signed area (pixels^2) must reach this in absolute value, in
#: the working precision, or the triangle is degenerate and skipped (csrc/mesh_flow.h).
MESH_MIN_AREA2 = {torch.float32: 1e-8, torch.float64: 1e-12}


def _edge_functions(x0, y0, x1, y1, x2, y2, px, py):
    """``(w0, w1, w2, area2)``: the edge functions of point (px, py) in triangle (x_k, y_k)
    and twice its signed area, in this order of operations (every backend's); the barycentric
    coordinates are ``b_k = w_k / area2``."""
    w0 = (x1 - px) * (y2 - py) - (x2 - px) * (y1 - py)
    w1 = (x2 - px) * (y0 - py) - (x0 - px) * (y2 - py)
    w2 = (x0 - px) * (y1 - py) - (x1 - px) * (y0 - py)
    area2 = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
    return w0, w1, w2, area2


def _triangle_index(dest: Tensor, triangles: Tensor, size: tuple[int, int]) -> Tensor:
    """The containment rule: for each pixel the lowest-index destination triangle holding it,
    -1 where none: Tensor[N, H, W] int64. Triangles are visited from the last to the first, each
    over its bounding box (the union over the batch), each overwriting: the lowest index wins."""
    N, H, W = dest.shape[0], *size
    index = torch.full((N, H, W), -1, dtype=torch.int64, device=dest.device)
    T = triangles.shape[0]
    if T == 0 or N == 0:
        return index
    D = dest[:, triangles]  # [N, T, 3, 2]
    x, y = D[..., 0], D[..., 1]
    area2 = _edge_functions(x[..., 0], y[..., 0], x[..., 1], y[..., 1], x[..., 2], y[..., 2], 0.0, 0.0)[3]
    valid = (area2.abs() >= MESH_MIN_AREA2[dest.dtype]) & torch.isfinite(area2)  # [N, T]
    big = torch.tensor(float("inf"), dtype=dest.dtype, device=dest.device)
    xmin, xmax = x.amin(-1), x.amax(-1)
    ymin, ymax = y.amin(-1), y.amax(-1)
    # Pixel columns ceil(xmin)..floor(xmax) (rows likewise), over the batch items where t is valid.
    boxes = torch.stack([torch.where(valid, xmin, big).amin(0).ceil().clamp(0, W),
                         torch.where(valid, xmax, -big).amax(0).floor().clamp(-1, W - 1),
                         torch.where(valid, ymin, big).amin(0).ceil().clamp(0, H),
                         torch.where(valid, ymax, -big).amax(0).floor().clamp(-1, H - 1)], 1).long().tolist()
    for t in range(T - 1, -1, -1):
        x0, x1, y0, y1 = boxes[t]
        if x1 < x0 or y1 < y0:
            continue
        px = torch.arange(x0, x1 + 1, dtype=dest.dtype, device=dest.device).view(1, 1, -1)
        py = torch.arange(y0, y1 + 1, dtype=dest.dtype, device=dest.device).view(1, -1, 1)
        c = [v[:, t].view(N, 1, 1) for v in (x[..., 0], y[..., 0], x[..., 1], y[..., 1], x[..., 2], y[..., 2])]
        w0, w1, w2, a2 = _edge_functions(*c, px, py)
        inside = ((w0 / a2 >= 0) & (w1 / a2 >= 0) & (w2 / a2 >= 0) & valid[:, t].view(N, 1, 1)
                  & (px >= xmin[:, t].view(N, 1, 1)) & (px <= xmax[:, t].view(N, 1, 1))
                  & (py >= ymin[:, t].view(N, 1, 1)) & (py <= ymax[:, t].view(N, 1, 1)))
        box = index[:, y0:y1 + 1, x0:x1 + 1]
        box.copy_(torch.where(inside, t, box))
    return index


def mesh_flow(vertices: Tensor, displacement: Tensor, triangles: Tensor,
              size: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """Reference of :func:`fastwarp.ops.mesh_flow`: a triangle mesh's motion as the backward
    flow of its piecewise-affine map (docs/design.md, "mesh_flow").

    For each pixel p (centres at integers: pixel (row i, column j) is (x, y) = (j, i)), the
    lowest-index triangle t of the destination mesh ``dest = vertices + displacement`` holding
    p (:func:`_triangle_index`) and p's barycentric coordinates b in it give
    ``flow(p) = sum_k b_k * vertices[t_k] - p``, computed as ``-sum_k b_k * displacement[t_k]``
    (equal, as ``sum_k b_k dest[t_k] = p`` and ``sum_k b_k = 1``: a mesh that does not move
    gives exactly 0); 0 where no triangle holds p.

    Args:
        vertices (Tensor[N, V, 2]): source positions (x, y) in pixels, float32 or float64.
        displacement (Tensor[N, V, 2]): each vertex's forward motion, same dtype.
        triangles (Tensor[T, 3]): vertex indices, int32 or int64.
        size: (H, W) of the flow.
    Returns:
        (flow Tensor[N, 2, H, W] in the vertices' dtype, differentiable through plain torch ops
        with respect to vertices and displacement; triangle_index Tensor[N, H, W] int32, -1
        where no triangle holds the pixel).
    """
    H, W = size
    N = vertices.shape[0]
    dest = vertices + displacement
    tri = triangles.long()
    with torch.no_grad():
        index = _triangle_index(dest.detach(), tri, (H, W))
    if tri.shape[0] == 0 or N == 0:
        return vertices.new_zeros((N, 2, H, W)), index.to(torch.int32)
    inside = index >= 0
    corners = tri[index.clamp(min=0).view(N, H * W)].view(N, H * W * 3, 1).expand(-1, -1, 2)
    d = displacement.gather(1, corners).view(N, H, W, 3, 2)
    D = dest.gather(1, corners).view(N, H, W, 3, 2)
    px = torch.arange(W, dtype=vertices.dtype, device=vertices.device).view(1, 1, W)
    py = torch.arange(H, dtype=vertices.dtype, device=vertices.device).view(1, H, 1)
    w0, w1, w2, area2 = _edge_functions(D[..., 0, 0], D[..., 0, 1], D[..., 1, 0], D[..., 1, 1], D[..., 2, 0],
                                        D[..., 2, 1], px, py)
    area2 = torch.where(inside, area2, 1.0)  # pixels in no triangle: no 0/0 in the gradient
    b0, b1, b2 = w0 / area2, w1 / area2, w2 / area2
    fx = -(b0 * d[..., 0, 0] + b1 * d[..., 1, 0] + b2 * d[..., 2, 0])
    fy = -(b0 * d[..., 0, 1] + b1 * d[..., 1, 1] + b2 * d[..., 2, 1])
    flow = torch.where(inside.unsqueeze(1), torch.stack((fx, fy), 1), 0.0)
    return flow, index.to(torch.int32)
