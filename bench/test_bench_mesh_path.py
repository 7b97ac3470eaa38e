"""The mesh motion path against the dense MotionNet path, per edited frame (issue 12).

``mesh``: :meth:`fastwarp.ExpressionEditor.predict` with mesh motion (landmark motion model,
``mesh_flow`` on the maps' grid, the mesh texture at 64 px on the crop warped by its own
mesh flow) then :meth:`~fastwarp.ExpressionEditor.blend`; ``dense``: ``predict`` with the
editor network (MotionNet + TextureNet, eager torch) then the same ``blend``. Both edit the
same real photo (``df_img19.jpg``, a 628 px face on a 1280x853 frame) with AU12=+2.5; the
landmarks, crop and AU estimate are computed once outside the timing (the two paths share
them). ``base`` (maps on a 128 px grid) and ``lite`` (64 px).

Names: ``test_mesh_path[<weights>-<provider>]``; ``bench/ratios.py`` prints dense / mesh.
Skipped where the photo or the mesh weights are missing.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

PHOTO = "df_img19.jpg"
PROVIDERS = ("mesh", "dense")


@pytest.mark.parametrize("weights, provider", [pytest.param(w, p, id=f"{w}-{p}") for w in ("base", "lite")
                                               for p in PROVIDERS])
def test_mesh_path(benchmark, bench_config, photo, weights, provider):
    from fastwarp.au import parse_au_edit
    from fastwarp.expression_editor import ExpressionEditor, mesh_weights_installed

    if not mesh_weights_installed():
        pytest.skip("the mesh-path weights (fastwarp/weights/motion, texture) are not installed")
    dev = bench_config.device
    editor = ExpressionEditor(weights, dev.type, motion=provider)
    lm = editor.detect(photo)[0]
    crop = editor.crop(photo, lm)
    current, target = editor.aus(crop, [parse_au_edit("AU12=+2.5")])
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)

    def call():
        maps = editor.predict(crop.image, target, current, crop.landmarks)
        out = editor.blend(photo, crop, maps)
        sync()
        return out

    out = call()
    assert out.shape == photo.shape and not np.array_equal(out, photo)
    benchmark.group = f"mesh path {weights}"
    benchmark.extra_info.update(op="mesh path", weights=weights, provider=provider, photo=PHOTO,
                                crop_side=crop.size, grid=int(editor.model.config.map_size or editor.size))
    try:
        benchmark.pedantic(call, rounds=bench_config.rounds, warmup_rounds=bench_config.warmup, iterations=1)
    finally:
        editor.close()
