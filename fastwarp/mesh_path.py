"""The mesh path's maps and the editor's shared types (docs/design.md, "Motion from
landmarks"): :class:`Maps` (what a face's networks predict), :func:`image_tensor` (a crop as
their input) and :class:`MeshMotion` (landmark motion, ``mesh_flow`` and the mesh texture).
:mod:`fastwarp.expression_editor` re-exports all three.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from . import ops
from .face.jaws import UPPER_SHARE, split_mouth_flow, upper_share
from .face.fold import warp_motion
from .face.mesh import MESH_POINTS, mesh_triangles, mesh_vertices, texture_regions
from .models.landmark_motion import LandmarkMotion
from .models.mesh_texture import MeshTexture, gate_mask, opening_map
from .region_paint import RegionMotion, RegionPainter, region_motion

__all__ = ["Maps", "MeshMotion", "image_tensor"]


def image_tensor(bgr: np.ndarray, device: torch.device, dtype: torch.dtype = torch.float32, *,
                 channels_last: bool = False) -> Tensor:
    """A uint8 BGR image ``[H, W, 3]`` as the networks' and ``warp_blend``'s input: RGB
    ``[1, 3, H, W]`` in [-1, 1] (values as :func:`fastwarp.images.bgr_to_tensor`'s).

    On the CPU the conversion runs in numpy, on one thread: for one frame's crop, waking
    torch's intra-op threads costs more than the work (and many times more where other
    processes share the cores). On a GPU the uint8 image is uploaded and converted there.
    ``channels_last`` gives NHWC memory, else contiguous NCHW.
    """
    if device.type == "cpu":
        hwc = bgr[..., ::-1].astype(np.float32) / np.float32(127.5) - np.float32(1.0)
        t = torch.from_numpy(hwc).permute(2, 0, 1)[None]
        if not channels_last:
            t = torch.from_numpy(np.ascontiguousarray(hwc.transpose(2, 0, 1)))[None]
        return t if dtype == torch.float32 else t.to(dtype)
    t = torch.from_numpy(np.ascontiguousarray(bgr)).to(device).flip(-1).permute(2, 0, 1)[None]
    t = (t.float() / 127.5 - 1.0).to(dtype)
    return t.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def _on_grid(points: np.ndarray, crop_size: int, grid: int) -> Tensor:
    """``[1, P, 2]`` float32: crop pixels ``[P, 2 or 3]`` on the maps' ``grid`` (pixel centres map
    as ``(u + 0.5) grid / crop_size - 0.5``)."""
    p = torch.as_tensor(np.asarray(points, np.float32)[:, :2])[None]
    return (p + 0.5) * (grid / crop_size) - 0.5


class Maps(NamedTuple):
    """What the editor networks predict for a batch of crops, at the model's resolution S.

    flow (Tensor[N, 2, S, S]): backward flow in pixels of the S x S grid;
    texture (Tensor[N, 3, S, S]): RGB in [-1, 1]; mask (Tensor[N, 1, S, S]): in [0, 1],
    1 = keep the warped pixel. One device and one floating dtype (the runner's).
    """

    flow: Tensor
    texture: Tensor
    mask: Tensor
    #: The mesh path's landmark motion in the crop (for the region textures,
    #: :mod:`fastwarp.region_paint`); None for the dense path and where nothing moves.
    motion: RegionMotion | None = None


class MeshMotion:
    """The mesh path's maps (docs/design.md, "Motion from landmarks"): the landmark motion
    model moves a face's landmarks, :func:`fastwarp.ops.mesh_flow` renders the motion through
    the face mesh (:mod:`fastwarp.face.mesh`) and the mesh texture model paints where the
    mesh opened.

    Args:
        motion_model: a :class:`~fastwarp.models.landmark_motion.LandmarkMotion`.
        texture_model: a :class:`~fastwarp.models.mesh_texture.MeshTexture`, or None for the
            mesh warp alone (mask 1).
        grid: side of the maps' grid.

    Both models are tiny and run on the CPU; :meth:`maps` moves the maps to the device asked.
    """

    def __init__(self, motion_model: LandmarkMotion, texture_model: MeshTexture | None = None, grid: int = 128) -> None:
        self.motion_model = motion_model.eval()
        self.texture_model = texture_model.eval() if texture_model is not None else None
        self.grid = int(grid)
        #: Teeth follow the jaws (:func:`fastwarp.face.jaws.split_mouth_flow`) in the maps' flow.
        self.split_mouth = True
        #: Where the jaws part in the source mouth: None, each face's own
        #: (:func:`fastwarp.face.jaws.upper_share`); a number, that share for every face (1: all
        #: the source shows between its lips stays with the upper lip, the editor before it).
        self.upper_share: float | None = None
        #: The regions, of the ``painter`` of :meth:`maps`, that the mesh texture leaves to the region
        #: textures where they paint (mask 1 there; no network where nothing else opened):
        #: ``("eye",)`` by default; ``("eye", "mouth")`` was measured and not kept (the mesh texture
        #: under the mouth texture is worth 0.04-0.10 dB on held-out opening pairs, and a jaw drop
        #: still opens the lids' ring a little, so its network ran anyway: no faster); ``()``: it
        #: paints under every region (the editor before phase 7).
        self.cover: tuple[str, ...] = ("eye",)
        #: Video: with a track's ``memory`` (:meth:`maps`), run the mesh texture's network on every
        #: ``refresh``-th frame only and reuse its last output between (the real-time engine sets
        #: it with the region textures' ``region_refresh``).
        self.refresh = 1
        self.triangles = torch.from_numpy(np.array(mesh_triangles()))
        self.regions = tuple(torch.from_numpy(np.array(r)) for r in texture_regions())

    @torch.no_grad()
    def motion(self, landmarks: np.ndarray, crop_size: int, current_aus: Sequence[float] | np.ndarray,
               target_aus: Sequence[float] | np.ndarray, grid: int,
               shape: np.ndarray | None = None) -> tuple[Tensor, Tensor]:
        """The face mesh and its motion on a ``grid`` x ``grid`` map: ``(vertices,
        displacement)``, each float32 ``[1, 468 + ring, 2]`` in grid pixels (the ring of
        :mod:`fastwarp.face.mesh` does not move; no AU change moves nothing), from the
        landmark motion model.

        Args:
            landmarks: ``[478, 2 or 3]`` in pixels of the ``crop_size`` crop.
            current_aus, target_aus: ``[17]``, 0..5.
            shape: ``[478, 2]``, the face shape (eye-line frame) the motion is computed from
                (``LandmarkMotion``'s ``shape``); None: the landmarks' own.
        """
        current = torch.as_tensor(np.asarray(current_aus, np.float32))[None]
        target = torch.as_tensor(np.asarray(target_aus, np.float32))[None]
        lm_grid = _on_grid(landmarks, crop_size, grid)
        verts = mesh_vertices(lm_grid)
        moved = torch.zeros_like(verts)
        if not torch.equal(current, target):
            q = None if shape is None else torch.as_tensor(np.asarray(shape, np.float32))
            moved[:, :MESH_POINTS] = self.motion_model(lm_grid, current, target, q)[:, :MESH_POINTS]
        return verts, moved

    def motion_to(self, landmarks: np.ndarray, target: np.ndarray, crop_size: int) -> tuple[Tensor, Tensor]:
        """:meth:`motion` on the maps' :attr:`grid` for known target landmarks instead of the
        landmark motion model's: each mesh landmark moves to its place in ``target`` (what the
        held-out frame pairs drive the editor with, ``tools/frame_pairs.py``).

        Args:
            landmarks, target: ``[478, 2 or 3]`` in pixels of the ``crop_size`` crop.
        """
        verts = mesh_vertices(_on_grid(landmarks, crop_size, self.grid))
        moved = torch.zeros_like(verts)
        moved[:, :MESH_POINTS] = _on_grid(target, crop_size, self.grid)[:, :MESH_POINTS] - verts[:, :MESH_POINTS]
        return verts, moved

    @torch.no_grad()
    def maps(self, crop_bgr: np.ndarray, landmarks: np.ndarray, current_aus: Sequence[float] | np.ndarray,
             target_aus: Sequence[float] | np.ndarray, device: torch.device | None = None,
             shape: np.ndarray | None = None, painter: RegionPainter | None = None,
             memory: dict | None = None) -> Maps:
        """:class:`Maps` of the mesh path on the maps' grid (:attr:`grid`), batch 1.

        flow: :func:`fastwarp.ops.mesh_flow` of :meth:`motion` (0 beyond the mesh's
        ring), with lids that meet (:func:`fastwarp.face.lids.close_lids`: a closing eye's pixels
        get the landmarks' gap less FaceMesh's floor) and no fold-overs
        (:func:`fastwarp.face.fold.unfold`: a smiling corner takes its cheek along); texture and mask: the mesh texture model on
        the crop warped by the mesh flow,
        run on its own (smaller) grid and bilinearly upsampled, its mask gated by the opening
        map on the maps' grid (:func:`~fastwarp.models.mesh_texture.opening_map`), so it is
        exactly 1 wherever the mesh did not open (where nothing opened the texture network
        does not run). No AU change: flow exactly 0, mask exactly 1. ``shape``: see :meth:`motion`.
        ``painter``: the region textures that paint after the composite: the mesh texture leaves
        the regions of :attr:`cover` they paint to them (mask 1 there, :meth:`RegionPainter.cover`),
        and does not run where nothing else opened.
        ``memory``: video only, one face track's state across frames (a dict the caller keeps per
        track, empty at its start; the key ``"mesh"`` is this method's). With :attr:`refresh` N > 1
        the mesh texture's network runs on every N-th frame that needs it, and the frames between
        reuse its last texture and ungated mask on the maps' grid (crop coordinates, which move
        with the face), gated by this frame's opening map: a changed edit or a new opening reaches
        the texture within N - 1 frames, as with the region textures
        (:meth:`RegionPainter.paint`).
        """
        verts, moved = self.motion(landmarks, crop_bgr.shape[0], current_aus, target_aus, self.grid, shape)
        return self.maps_from_motion(crop_bgr, landmarks, verts, moved, current_aus, target_aus, device, painter,
                                     memory)

    @torch.no_grad()
    def maps_from_motion(self, crop_bgr: np.ndarray, landmarks: np.ndarray, verts: Tensor, moved: Tensor,
                         current_aus: Sequence[float] | np.ndarray, target_aus: Sequence[float] | np.ndarray,
                         device: torch.device | None = None, painter: RegionPainter | None = None,
                         memory: dict | None = None) -> Maps:
        """:meth:`maps` for a given mesh motion instead of the landmark motion model's: ``verts``
        and ``moved`` as :meth:`motion` returns them (float32 ``[1, 468 + ring, 2]`` on the
        :attr:`grid`; the ring must not move), e.g. :meth:`motion_to` a real target frame's
        landmarks."""
        device = device or torch.device("cpu")
        G = self.grid
        texture, mask = torch.zeros(1, 3, G, G), torch.ones(1, 1, G, G)
        if not moved.any():
            if memory is not None:
                memory.pop("mesh", None)
            return Maps(torch.zeros(1, 2, G, G, device=device), texture.to(device), mask.to(device))
        # The warp closes what the landmarks close (lids that meet, fastwarp.face.lids) and folds
        # nothing over (fastwarp.face.fold); the region textures get the landmarks' own motion and
        # apply the same rules on their grid.
        lids = warp_motion(verts, moved)
        flow, index = ops.mesh_flow(verts, lids, self.triangles, (G, G))
        rigid, found = None, {}
        if self.split_mouth:
            def share_of(_: int) -> float:  # this face's, read only if its lips open
                fixed = self.upper_share
                found["share"] = upper_share(crop_bgr, landmarks) if fixed is None else float(fixed)
                return found["share"]

            flow, _, rigid = split_mouth_flow(flow, verts, verts + lids, share_of)
        share = found.get("share", UPPER_SHARE)  # the mouth region splits at the same line
        motion = region_motion(landmarks, moved, G, crop_bgr.shape[0],
                               np.asarray(target_aus, np.float32) - np.asarray(current_aus, np.float32), share)
        opened = opening_map(verts, lids, self.triangles, index, *self.regions)
        cover = (painter.cover(motion, G, crop_bgr.shape[0], self.cover)
                 if painter is not None and self.cover and opened.any() else None)
        if cover is not None:
            # The region textures paint these regions over the warp alone, as they were trained: the
            # mesh texture's blurred lid under the eye's partial mask is what read as a pale, soft lid
            # (held-out closing pairs: 22.45 dB with it under the eye texture, 24.28 without)
            opened = torch.where(cover, torch.zeros_like(opened), opened)
        last = memory.get("mesh") if memory is not None else None
        if self.texture_model is not None and opened.any():  # (nothing opened: mask 1, no network)
            if last is not None and last[2] + 1 < self.refresh:
                texture, m = last[0], last[1]  # video, between refreshes: the last run's paint, this frame's gate
                age = last[2] + 1
            else:
                texture, m = self._texture(crop_bgr, verts, lids, current_aus, target_aus)
                age = 0
            if memory is not None:
                memory["mesh"] = (texture, m, age)
            mask = gate_mask(m, opened)
            if rigid is not None:  # the teeth that moved with a lip stay as the warp brought them
                mask = torch.where(rigid > 0, torch.ones_like(mask), mask)
        elif memory is not None:
            memory.pop("mesh", None)  # nothing to paint: the next opening runs the network afresh
        return Maps(flow.to(device), texture.to(device), mask.to(device), motion)

    def _texture(self, crop_bgr: np.ndarray, verts: Tensor, lids: Tensor, current_aus: Sequence[float] | np.ndarray,
                 target_aus: Sequence[float] | np.ndarray) -> tuple[Tensor, Tensor]:
        """The mesh texture network's texture and ungated mask on the maps' grid, for the crop
        warped by the mesh motion ``lids`` (grid pixels)."""
        G = self.grid
        T = self.texture_model.config.size
        small = cv2.resize(crop_bgr, (T, T), interpolation=cv2.INTER_AREA) if crop_bgr.shape[0] != T else crop_bgr
        # The same motion on the T grid (it scales with the grid: pixel centres map as
        # (u + 0.5) T / G - 0.5), without running the motion model again.
        v_t, m_t = (verts + 0.5) * (T / G) - 0.5, lids * (T / G)
        flow_t, index_t = ops.mesh_flow(v_t, m_t, self.triangles, (T, T))
        warped = ops.warp(image_tensor(small, torch.device("cpu")), flow_t)
        cur = torch.as_tensor(np.asarray(current_aus, np.float32))[None]
        tgt = torch.as_tensor(np.asarray(target_aus, np.float32))[None]
        opening = opening_map(v_t, m_t, self.triangles, index_t, *self.regions)
        texture, m = self.texture_model.ungated(warped, opening, cur, tgt)
        if T != G:
            texture = F.interpolate(texture, size=(G, G), mode="bilinear", align_corners=False)
            m = F.interpolate(m, size=(G, G), mode="bilinear", align_corners=False)
        return texture, m
