"""Region textures in the editor: paint what the warp cannot make inside each eye and the
mouth (issue 19; docs/design.md, "Data flow"), at the region's own resolution, after the
face's composite.

For each region of an edited face (:class:`RegionPainter.paint`):

1. the region (:data:`fastwarp.face.regions.EYE`, 64 x 128 px along the eye line, the left
   eye mirrored; :data:`~fastwarp.face.regions.MOUTH`, 128 x 128 px below the nose) is cut
   from the frame before the edit (:func:`cut_region`);
2. it is warped through the face mesh by the same landmark motion as the face
   (:func:`fastwarp.ops.mesh_flow` on the region's grid, as in training), which gives the
   network its inputs: the warped region, the opening map, the moved lids' contours, the
   motion gate, and the AU change;
3. :class:`~fastwarp.models.region_texture.RegionTexture` returns texture and mask; the mask
   is exactly 1 where no mesh triangle deformed and on the region's border;
4. texture and mask are blended onto the face's composite by one
   :func:`fastwarp.warp_blend` with a zero flow and ``theta`` = the region's matrix: a zero
   flow samples every pixel at its own centre (bilinear and bicubic taps both return the
   pixel itself there), so no frame pixel is resampled a second time; where the mask is 1
   (outside the region, its border, everything that did not deform) the output is the
   composite bit for bit.

The eye network runs only for an eye whose lids move: the lid gap (:func:`eye_gap`, in eye
widths) of the moved landmarks differs from the face's by :data:`LID_MOTION` or more, and
the region deforms at all. Blinks, half-closed and widened eyes (AU45, AU43, AU05, AU07)
move the gap by 0.06 to 0.3; a smile, a jaw drop, brows or a frown by 0.02 at most (three
photos, measured), and there the mesh texture alone paints as before. The mouth network
(where loaded) runs only when a lip landmark moves by :data:`LIP_MOTION` IOD or more: lips
parting by AU25 +2 / AU26 +2.5 move them by 0.14 to 0.25, a smile of AU12 +2.5 by 0.05 to
0.09 (less on a face that already smiles); a blink, brows or a frown by 0.033 at most
(twelve photos, measured), and there the mouth keeps the mesh texture; it runs only for an
edit that changes a lower-face AU (:data:`MOUTH_AUS`), so the lip motion a video's steadied
target adds under, say, a blink does not wake it. A zero edit, or an
edit that moves no lid and no lip, costs nothing here and changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import Tensor

from . import ops
from .au import AU_INDEX
from .face.jaws import UPPER_SHARE
from .face.mesh import MESH_POINTS
from .face.regions import (EYE, LOWER_INNER_LIP, LOWER_OUTER_LIP, MOUTH, UPPER_INNER_LIP, UPPER_OUTER_LIP,
                           RegionSpec, cut_region, eye_gap, eye_line_axes, region_footprint, region_matrix,
                           to_region)
from .images import luma_texture
from .models import WEIGHTS_DIR
from .models.region_texture import RegionTexture, region_inputs

__all__ = ["EYE_WEIGHTS", "EYE_WEIGHTS_LITE", "MOUTH_WEIGHTS", "MOUTH_WEIGHTS_LITE", "LID_MOTION", "LIP_MOTION",
           "MOUTH_AUS", "MOUTH_AU_CHANGE",
           "VIDEO_SMOOTHING", "TEXTURES", "eye_weights", "eye_weights_installed", "mouth_weights_installed",
           "mouth_weights_for", "RegionMotion", "RegionPainter"]

#: The bundled eye region texture (trained by ``python -m training.region_gan --kind eye``), and
#: its narrower ``lite`` form (8-16-32-64 channels, a quarter of the parameters) that the
#: ``lite`` editor uses where installed.
EYE_WEIGHTS = WEIGHTS_DIR / "region_eye"
EYE_WEIGHTS_LITE = WEIGHTS_DIR / "region_eye_lite"
#: The bundled mouth region texture (``python -m training.region_gan --kind mouth``): the cavity
#: and teeth of a mouth that opens, the lips and folds of a smile.
MOUTH_WEIGHTS = WEIGHTS_DIR / "region_mouth"
MOUTH_WEIGHTS_LITE = WEIGHTS_DIR / "region_mouth_lite"
#: The editor's ``texture=`` choices: the mesh texture and the eye and mouth region textures on
#: top ("regions"), the eye region textures only ("eyes"), the mesh texture alone ("mesh", the
#: texture before issue 19), or none (the warp alone).
TEXTURES = ("auto", "regions", "eyes", "mesh", "none")
#: The lid gap change (eye widths) from which an eye's region texture runs.
LID_MOTION = 0.03
#: The largest lip landmark displacement (IOD) from which the mouth's region texture runs.
LIP_MOTION = 0.045
#: The lower-face AUs (cheeks, nose, lips, jaw): an edit that changes one of them by
#: :data:`MOUTH_AU_CHANGE` or more (intensity) asks something of the mouth (:meth:`RegionPainter.moving`).
MOUTH_AUS = ("AU06", "AU09", "AU10", "AU12", "AU14", "AU15", "AU17", "AU20", "AU23", "AU25", "AU26")
MOUTH_AU_CHANGE = 0.1
_MOUTH_AU_INDEX = np.array([AU_INDEX[a] for a in MOUTH_AUS])
#: The lip landmarks (inner and outer lines) whose motion wakes the mouth texture.
_LIPS = np.array(sorted(set(UPPER_INNER_LIP + LOWER_INNER_LIP + UPPER_OUTER_LIP + LOWER_OUTER_LIP)))
#: Video: the weight of this frame's texture and mask against the previous frame's, in the
#: region's own coordinates (which move with the face): an exponential moving average that
#: steadies the generator's frame-to-frame noise without dragging the texture behind motion.
VIDEO_SMOOTHING = 0.5


def eye_weights(editor_weights: str | None = None) -> Path:
    """The bundled eye region texture for an editor's weights: ``region_eye_lite`` for
    ``"lite"`` where installed, else ``region_eye``."""
    if editor_weights == "lite" and EYE_WEIGHTS_LITE.with_suffix(".safetensors").is_file():
        return EYE_WEIGHTS_LITE
    return EYE_WEIGHTS


def eye_weights_installed() -> bool:
    return EYE_WEIGHTS.with_suffix(".safetensors").is_file()


def mouth_weights_installed() -> bool:
    return MOUTH_WEIGHTS.with_suffix(".safetensors").is_file()


def mouth_weights_for(choice: str | Path | None, editor_weights: str | None = None) -> Path | None:
    """The mouth region texture to paint with: ``choice`` (a checkpoint path without suffix),
    None for ``"none"``; for None the bundled one where installed: :data:`MOUTH_WEIGHTS`, and
    for ``"lite"`` editor weights :data:`MOUTH_WEIGHTS_LITE` only (the full-width mouth costs
    too much per frame for real time)."""
    if choice is None:
        bundled = MOUTH_WEIGHTS_LITE if editor_weights == "lite" else MOUTH_WEIGHTS
        return bundled if bundled.with_suffix(".safetensors").is_file() else None
    return None if str(choice) == "none" else Path(choice)


@dataclass
class RegionMotion:
    """A face's landmark motion in its crop, for the region textures (mesh motion only).

    Attributes:
        source, target: ``[478, 2]`` float64 landmarks in pixels of the crop, before and after
            the edit (the iris points, 468..477, do not move).
        au_delta: ``[17]`` float32, target minus current AU intensities.
        upper_share: where the jaws part in the source mouth, as a fraction of its lip gap
            (:func:`fastwarp.face.jaws.upper_share`; the face's split, which the mouth region
            repeats on its own grid).
    """

    source: np.ndarray
    target: np.ndarray
    au_delta: np.ndarray
    upper_share: float = UPPER_SHARE


class RegionPainter:
    """The region textures of :mod:`fastwarp.region_paint`, applied to a face's composite.

    Args:
        eye: a :class:`RegionTexture` of kind ``"eye"`` (both eyes), or None.
        mouth: a :class:`RegionTexture` of kind ``"mouth"``, or None (the mouth keeps the mesh
            texture). Both models are put in eval mode and channels_last memory, in place.
    Raises:
        ValueError: a model is not of its region's kind and size, or neither is given.
    """

    def __init__(self, eye: RegionTexture | None, mouth: RegionTexture | None = None) -> None:
        for model, spec in ((eye, EYE), (mouth, MOUTH)):
            c = None if model is None else model.config
            if c is not None and (c.kind != spec.kind or (c.height, c.width) != (spec.height, spec.width)):
                raise ValueError(f"the {spec.kind} region texture must be kind {spec.kind!r} of "
                                 f"{spec.height}x{spec.width}, got {c.kind!r} {c.height}x{c.width}")
        if eye is None and mouth is None:
            raise ValueError("RegionPainter needs an eye or a mouth region texture")
        # channels_last: the small convolutions run 1.2-1.4x faster so on the CPU (measured,
        # lite eye and mouth, 1 and 2 threads); the outputs differ by rounding only (< 1e-4).
        self.eye = None if eye is None else eye.eval().to(memory_format=torch.channels_last)
        self.mouth = None if mouth is None else mouth.eval().to(memory_format=torch.channels_last)
        #: Video: run a region's network on every ``refresh``-th frame of a track (see :meth:`paint`).
        self.refresh = 1
        #: The closing eye's lid contours the eye network sees (``region_inputs``' ``lid_contours``):
        #: ``"landmarks"`` (as trained), or ``"warp"`` (the variant measured in phase 8, not kept).
        self.lid_contours = "landmarks"

    @classmethod
    def load(cls, eye_weights: str | Path | None = None, mouth_weights: str | Path | None = None) -> "RegionPainter":
        """From checkpoint files (default: the bundled :data:`EYE_WEIGHTS`; the mouth only
        where ``mouth_weights`` names one).

        Raises:
            FileNotFoundError: a file is missing. ValueError: not a region texture of its kind.
        """
        mouth = RegionTexture.load(mouth_weights) if mouth_weights else None
        return cls(RegionTexture.load(eye_weights or EYE_WEIGHTS), mouth)

    @torch.no_grad()
    def region_inputs(self, frame8: np.ndarray, source: np.ndarray, target: np.ndarray, spec: RegionSpec,
                      sides: list[str | None], upper_share: float | None = None,
                      cavity: bool = False) -> tuple[list[np.ndarray], dict[str, Tensor]]:
        """``(matrices, inputs)``: per region of ``sides`` its matrix ``[2, 3]`` frame -> region,
        and the generator's inputs for all of them as one batch
        (:func:`~fastwarp.models.region_texture.region_inputs`, as in training; a region whose
        ``gate`` is all 0 does not deform).

        Args:
            frame8: ``[H, W, 3]`` uint8 BGR, the frame before the edit.
            source, target: ``[478, 2]`` landmarks in frame pixels.
            spec: :data:`EYE` or :data:`MOUTH`.
            sides: ``"right"`` or ``"left"`` per eye (the subject's); ``[None]`` for the mouth.
            upper_share: the mouth's split between the jaws (:attr:`RegionMotion.upper_share`);
                None: :data:`fastwarp.face.jaws.UPPER_SHARE`.
            cavity: fill the opening mouth's cavity (for a texture trained so,
                :attr:`~fastwarp.models.region_texture.RegionTextureConfig.cavity`).
        """
        matrices = [region_matrix(source[None], spec, side)[0] for side in sides]
        # RGB in [-1, 1], converted in numpy (as image_tensor: for a few regions, waking torch's
        # intra-op threads costs more than the work); the same values as torch's conversion
        bgr = np.stack([cut_region(frame8, m, spec)[0] for m in matrices])
        rgb = torch.from_numpy(bgr[..., ::-1].astype(np.float32) / np.float32(127.5) - np.float32(1.0))
        rgb = rgb.permute(0, 3, 1, 2)
        inputs = region_inputs(rgb, torch.from_numpy(np.stack([to_region(source, m) for m in matrices])),
                               torch.from_numpy(np.stack([to_region(target, m) for m in matrices])), spec.kind,
                               [side or "right" for side in sides], upper_share=upper_share, cavity=cavity,
                               lid_contours=self.lid_contours)
        return matrices, inputs

    def moving(self, source: np.ndarray, target: np.ndarray, au_delta: np.ndarray | None = None) -> list[str]:
        """The regions a motion wakes, of ``"right"``, ``"left"`` (eyes whose lid gap moves by
        :data:`LID_MOTION` or more, with an eye model) and ``"mouth"`` (a lip landmark moving by
        :data:`LIP_MOTION` IOD or more, with a mouth model, and, where ``au_delta`` is given, an
        edit that changes a lower-face AU (:data:`MOUTH_AUS`) by :data:`MOUTH_AU_CHANGE` or more).
        Cheap: landmarks only.

        The AU condition keeps the mouth texture to edits that ask something of the mouth. On a
        video, the real-time engine's steadied target moves a talking face's lips under any edit
        (measured on ``lp_d6.mp4``: under a blink, on 23 of 90 frames, by 0.045 IOD or more, while
        every lower-face AU change was exactly 0), and there the mesh texture paints as before.

        Args:
            source, target: ``[478, 2]`` landmarks in frame pixels, before and after the edit.
            au_delta: ``[17]`` target minus current AUs, or None (the landmarks alone decide).
        """
        names = []
        if self.eye is not None:
            gaps = eye_gap(np.stack([target, source]))
            gap = gaps[0] - gaps[1]  # (right, left), eye widths
            names += [side for i, side in enumerate(("right", "left")) if abs(float(gap[i])) >= LID_MOTION]
        asked = au_delta is None or float(np.abs(np.asarray(au_delta)[_MOUTH_AU_INDEX]).max()) >= MOUTH_AU_CHANGE
        if self.mouth is not None and asked:
            iod = float(eye_line_axes(source[None])[2][0])
            if float(np.linalg.norm(target[_LIPS] - source[_LIPS], axis=-1).max()) >= LIP_MOTION * max(iod, 1e-6):
                names.append("mouth")
        return names

    def cover(self, motion: RegionMotion, grid: int, crop_size: int,
              kinds: tuple[str, ...] = ("eye",)) -> Tensor | None:
        """Where this painter paints the regions of ``kinds`` (``"eye"``, ``"mouth"``) for
        ``motion`` (:meth:`moving`): ``[1, 1, grid, grid]`` bool on the face's maps grid (crop
        pixels ``u`` at ``(u + 0.5) grid / crop_size - 0.5``), True at the grid pixels whose
        centres fall inside such a region; None where it paints none of them. The face's mesh
        texture leaves these to the region textures, which were trained over the mesh warp alone
        (:attr:`fastwarp.mesh_path.MeshMotion.cover`).

        Args:
            motion: the face's :class:`RegionMotion` (crop pixels: :meth:`moving` reads ratios, so
                crop and frame pixels wake the same regions).
        """
        names = [n for n in self.moving(motion.source, motion.target, motion.au_delta)
                 if ("mouth" if n == "mouth" else "eye") in kinds]
        if not names:
            return None
        c = (np.arange(grid, dtype=np.float64) + 0.5) * (crop_size / grid) - 0.5  # grid centres in crop pixels
        x, y = np.meshgrid(c, c)
        cover = np.zeros((grid, grid), bool)
        for name in names:
            spec, side = (MOUTH, None) if name == "mouth" else (EYE, name)
            cover |= region_footprint(motion.source, spec, side, x, y)
        return torch.from_numpy(cover)[None, None]

    @torch.no_grad()
    def maps(self, frame8: np.ndarray, source: np.ndarray, target: np.ndarray, au_delta: np.ndarray,
             names: list[str] | None = None,
             upper_share: float | None = None) -> dict[str, tuple[np.ndarray, Tensor, Tensor]]:
        """``{name: (matrix [2, 3], texture [1, 3, h, w] RGB [-1, 1], mask [1, 1, h, w])}`` for
        each region of ``names`` (default: :meth:`moving`) that deforms: the eyes (64 x 128)
        run as one batch (a small network's convolutions cost little more for two images than
        for one), the mouth (128 x 128) on its own. Each mask is 1 beyond the mesh's ring.

        Args:
            frame8, source, target, upper_share: as :meth:`region_inputs`.
            au_delta: ``[17]`` target minus current AUs.
        """
        names = self.moving(source, target, au_delta) if names is None else names
        out: dict[str, tuple[np.ndarray, Tensor, Tensor]] = {}
        for model, group in ((self.eye, [(n, EYE, n) for n in ("right", "left") if n in names]),
                             (self.mouth, [("mouth", MOUTH, None)] if "mouth" in names else [])):
            if model is None or not group:
                continue
            matrices, inputs = self.region_inputs(frame8, source, target, group[0][1], [side for _, _, side in group],
                                                  upper_share, model.config.cavity)
            deforms = [j for j in range(len(group)) if inputs["gate"][j].any()]
            if not deforms:
                continue
            rows = torch.tensor(deforms)
            batch = {k: inputs[k][rows].contiguous(memory_format=torch.channels_last)
                     for k in ("warped", "opening", "contours", "gate", "inside", "cavity")}
            au = torch.from_numpy(np.asarray(au_delta, np.float32))[None].expand(len(deforms), -1)
            # (a texture trained to paint the mouth's cavity or the eye's closing aperture paints it)
            texture, mask = model(batch["warped"], batch["opening"], batch["contours"], batch["gate"], au,
                                  batch["cavity"])
            # Nothing beyond the mesh's fixed ring (the gate's dilation could reach past it near the jaw).
            mask = torch.where(batch["inside"], mask, torch.ones_like(mask))
            out.update({group[j][0]: (matrices[j], texture[i:i + 1], mask[i:i + 1]) for i, j in enumerate(deforms)})
        return out

    @torch.no_grad()
    def paint(self, image: Tensor, frame8: np.ndarray, crop_matrix: np.ndarray, motion: RegionMotion,
              scale: float = 1.0, memory: dict | None = None, grey: bool = False) -> Tensor:
        """The eyes and the mouth painted onto a face's composite.

        Args:
            image (Tensor[1, 3, H, W]): the composite (BGR; uint8, or float32 for a 16-bit
                frame), as :meth:`ExpressionEditor.blend` holds it; never written.
            frame8: ``[H, W, 3]`` uint8 BGR, the frame before this face's edit (the regions
                are cut from it).
            crop_matrix: ``[2, 3]`` frame -> crop (:attr:`FaceCrop.matrix`).
            motion: the face's :class:`RegionMotion`.
            scale: the frame's value of 255 (65535 / 255 for a 16-bit frame composited in
                float32).
            memory: video only: one face track's state across frames (a dict the caller keeps
                per track, empty at its start; ``{name: (texture, mask, age, texture in the
                frame's BGR)}``, the last kept for the frames that reuse it). Each region's
                texture and mask are then ``VIDEO_SMOOTHING * this + (1 - VIDEO_SMOOTHING) *
                previous`` in region coordinates; a region that is not painted forgets its
                past. With :attr:`refresh` N > 1 a region's network runs on every N-th frame
                only, and the frames between blend its last texture and mask at the region's
                place in that frame (real time: the cost of the networks over N; a changed edit
                reaches the regions within N - 1 frames. Refreshing early when the AU change
                moves was tried: the live face's own AU estimate moves it, by more than 0.5 on a
                clip where the person blinks, and 60 frames ran the network 21 times instead of
                12).
            grey: the picture is grey (:func:`fastwarp.images.achromatic`): paint each texture's
                luma (:func:`fastwarp.images.luma_texture`), no colour.
        Returns:
            Tensor like ``image``: the composite, bit for bit where no region deforms.
        """
        inv = cv2.invertAffineTransform(np.asarray(crop_matrix, np.float64))
        source = motion.source @ inv[:, :2].T + inv[:, 2]
        target = motion.target @ inv[:, :2].T + inv[:, 2]
        wanted = self.moving(source, target, motion.au_delta)
        keep = [n for n in wanted if memory is not None and n in memory and memory[n][2] + 1 < self.refresh]
        if any(n in wanted and n not in keep for n in ("right", "left")):
            # the eyes run as one batch (two cost little more than one): when one is due, both
            # refresh, so their cycles stay in step instead of running the network twice as often
            keep = [n for n in keep if n == "mouth"]
        painted = self.maps(frame8, source, target, motion.au_delta, [n for n in wanted if n not in keep],
                            motion.upper_share)
        out = image
        for name in ("right", "left", "mouth"):
            if name in keep:
                texture, mask, age, bgr = memory[name]
                spec, side = (MOUTH, None) if name == "mouth" else (EYE, name)
                matrix = region_matrix(source[None], spec, side)[0]
                memory[name] = (texture, mask, age + 1, bgr)
            elif name in painted:
                matrix, texture, mask = painted[name]
                if memory is not None and name in memory:
                    a = VIDEO_SMOOTHING
                    texture = a * texture + (1.0 - a) * memory[name][0]
                    mask = a * mask + (1.0 - a) * memory[name][1]
                shown = luma_texture(texture) if grey else texture.contiguous()
                bgr = (shown.flip(1) + 1.0) * (127.5 * scale)  # RGB [-1, 1] -> the frame's BGR
                if memory is not None:
                    memory[name] = (texture, mask, 0, bgr)
            else:
                if memory is not None:
                    memory.pop(name, None)
                continue
            theta = torch.from_numpy(matrix[None]).to(device=out.device, dtype=torch.float32)
            zero = torch.zeros(1, 2, *texture.shape[-2:], device=out.device)
            # A zero flow reads each frame pixel at its own centre, where bilinear and bicubic taps
            # both give the pixel itself, bit for bit (tests/test_theta.py): the bilinear
            # kernel, 4 taps instead of 16 (0.14 against 0.16-0.22 ms for an eye on a 480 px frame).
            out = ops.warp_blend(out, zero, bgr.to(out.device), mask.to(out.device), theta=theta, mode="bilinear")
        return out


def region_motion(landmarks: np.ndarray, moved: Tensor, grid: int, crop_size: int, au_delta: np.ndarray,
                  upper_share: float = UPPER_SHARE) -> RegionMotion:
    """A :class:`RegionMotion` from the mesh path's motion on its ``grid`` (``moved``: the mesh
    vertices' displacement ``[1, V, 2]`` in grid pixels; grid pixels scale to crop pixels by
    ``crop_size / grid``)."""
    source = np.asarray(landmarks, np.float64)[:, :2]
    target = source.copy()
    target[:MESH_POINTS] += moved[0, :MESH_POINTS].double().numpy() * (crop_size / grid)
    return RegionMotion(source, target, np.asarray(au_delta, np.float32), float(upper_share))
