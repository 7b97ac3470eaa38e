"""The frame-space composite against the chain it replaced, per edited face.

``composite``: :meth:`fastwarp.ExpressionEditor.blend` with bilinear taps, one ``warp_blend``
with ``theta`` on the uint8 frame itself (``composite-bicubic``: the same with bicubic taps,
the editor's default) (the face mask folded into the maps, texture converted to the
frame's BGR 0..255). ``chain``: the editor's previous steps, kept here as the baseline:
``cv2.warpAffine`` crop at the face's own side (at most 512 px) -> ``warp_blend`` of the
float crop with the 128 px maps -> uint8 -> ``paste_back`` (inverse ``warpAffine`` under the
feathered mask). Both get the same frame, crop transform and maps; the networks are not
timed (they are the same for both). Frames 480p, 720p and 1080p with a face of 200, 400 and
800 px (800 only where it fits), on this run's device.

Names: ``test_composite[<frame>-<face>-<provider>]``; ``bench/ratios.py`` prints chain /
composite per case.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fastwarp import ops
from fastwarp.expression_editor import ExpressionEditor, Maps, image_bgr, image_tensor
from fastwarp.face import FACE_OVAL, FaceCrop, paste_back

FRAMES = {"480p": (480, 854), "720p": (720, 1280), "1080p": (1080, 1920)}
FACES = (200, 400, 800)
PROVIDERS = ("composite", "composite-bicubic", "chain")
GRID = 128
MAX_CROP = 512


def _case(frame: str, face: int, device: torch.device, seed: int = 0):
    """A frame with a face of ``face`` px (its crop's side in the frame), its FaceCrop (crop
    side min(face, 512), a slight rotation), and 128 px maps on ``device``."""
    H, W = FRAMES[frame]
    g = np.random.default_rng(seed)
    image = g.integers(0, 256, (H, W, 3), dtype=np.uint8)
    side = min(face, MAX_CROP)
    scale, angle = side / face, 0.08
    c, s = math.cos(angle) * scale, math.sin(angle) * scale
    centre = np.array([W / 2, H / 2])
    L = np.array([[c, -s], [s, c]])
    matrix = np.concatenate([L, ((side - 1) / 2 - L @ centre)[:, None]], axis=1)
    lm = np.full((478, 2), (side - 1) / 2, np.float32)
    t = np.linspace(0, 2 * math.pi, len(FACE_OVAL), endpoint=False)
    lm[list(FACE_OVAL)] = np.stack([(0.5 + 0.38 * np.cos(t)) * side, (0.5 + 0.45 * np.sin(t)) * side], 1)
    crop = FaceCrop(image=np.zeros((side, side, 3), np.uint8), matrix=matrix, size=side, landmarks=lm)
    gen = torch.Generator().manual_seed(seed)
    maps = Maps(flow=(torch.randn(1, 2, GRID, GRID, generator=gen) * 2).to(device),
                texture=(torch.rand(1, 3, GRID, GRID, generator=gen) * 2 - 1).to(device),
                mask=torch.rand(1, 1, GRID, GRID, generator=gen).to(device))
    return image, crop, maps


def _chain(image: np.ndarray, crop: FaceCrop, maps: Maps) -> np.ndarray:
    """The previous editor: crop, warp_blend at crop resolution, paste back."""
    import cv2

    patch = cv2.warpAffine(image, crop.matrix, (crop.size, crop.size), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE)
    t = image_tensor(patch, maps.flow.device, maps.flow.dtype)
    edited = image_bgr(ops.warp_blend(t, maps.flow, maps.texture, maps.mask))
    return paste_back(image, edited, crop)


def _params():
    for frame, (H, _W) in FRAMES.items():
        for face in FACES:
            if face > H:
                continue
            for provider in PROVIDERS:
                yield pytest.param(frame, face, provider, id=f"{frame}-{face}-{provider}")


@pytest.mark.parametrize("frame, face, provider", list(_params()))
def test_composite(benchmark, bench_config, frame, face, provider):
    dev = bench_config.device
    image, crop, maps = _case(frame, face, dev)
    editor = ExpressionEditor.__new__(ExpressionEditor)  # blend() needs no model or FaceMesh
    # composite: the bilinear taps this benchmark has always timed; composite-bicubic: the
    # editor's default since issue 21 (bench/ratios.py prints bicubic / bilinear).
    editor.resample = "bicubic" if provider == "composite-bicubic" else "bilinear"
    fn = (lambda: _chain(image, crop, maps)) if provider == "chain" else (lambda: editor.blend(image, crop, maps))
    out = fn()
    assert out.shape == image.shape and out.dtype == np.uint8
    benchmark.group = f"composite {frame} face {face}"
    benchmark.extra_info.update(op="composite", frame=frame, face=face, provider=provider, grid=GRID,
                                crop_side=crop.size)
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)

    def call():
        fn()
        sync()

    benchmark.pedantic(call, rounds=bench_config.rounds, warmup_rounds=bench_config.warmup, iterations=1)
    if provider == "chain" and face > MAX_CROP:
        benchmark.extra_info["note"] = f"the chain shrinks the {face} px face to a {MAX_CROP} px crop"

