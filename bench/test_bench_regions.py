"""The region textures' cost per edited frame against the mesh texture alone (issue 19).

Each provider edits the same real photo (``df_img19.jpg``, a 628 px face on a 1280x853 frame)
with ``lite`` weights and mesh motion; the landmarks, crop and AU estimate are computed once
outside the timing. One call is :meth:`~fastwarp.ExpressionEditor.predict` then
:meth:`~fastwarp.ExpressionEditor.blend`:

- ``mesh``: ``texture="mesh"`` without teeth that follow the jaws (the path before issue 19);
- ``regions``: ``texture="regions"``, the region networks on every call (a photo, or a video at
  ``--region-refresh 1``);
- ``regions-refresh5``: the same with ``RegionPainter.refresh = 5`` and one face track's
  memory, as ``fastwarp webcam`` runs: the networks on one call in five, the stored textures
  blended on the others. Its MEAN over rounds (a multiple of five) is the cost per frame; its
  median is a frame that reuses.

Edits: ``blink`` (``ExprEdit("blink", 1)``: both eyes) and ``open`` (the mouth).
Names: ``test_region_textures[<edit>-<provider>]``; ``bench/ratios.py`` prints each provider
against ``mesh``. Skipped where the photo or the region weights are missing.
"""

from __future__ import annotations

import numpy as np
import pytest

PHOTO = "df_img19.jpg"
PROVIDERS = ("mesh", "regions", "regions-refresh5")


@pytest.mark.parametrize("edit, provider", [pytest.param(e, p, id=f"{e}-{p}") for e in ("blink", "open")
                                            for p in PROVIDERS])
def test_region_textures(benchmark, bench_config, photo, edit, provider):
    from fastwarp.expression_editor import ExpressionEditor, mesh_weights_installed
    from fastwarp.presets import ExprEdit
    from fastwarp.region_paint import eye_weights_installed, mouth_weights_installed

    if not (mesh_weights_installed() and eye_weights_installed() and mouth_weights_installed()):
        pytest.skip("the mesh-path and region weights (fastwarp/weights) are not installed")
    if bench_config.device.type != "cpu":
        pytest.skip("the region textures run on the CPU beside the mesh path")
    editor = ExpressionEditor("lite", "cpu", motion="mesh", texture="mesh" if provider == "mesh" else "regions")
    if provider == "mesh":
        editor.mesh_motion.split_mouth = False
    refresh = 5 if provider == "regions-refresh5" else 1
    if editor.regions is not None:
        editor.regions.refresh = refresh
    lm = editor.detect(photo)[0]
    crop = editor.crop(photo, lm)
    current, target = editor.aus(crop, [ExprEdit(edit, 1.0)])
    memory: dict | None = {} if refresh > 1 else None

    def call():
        maps = editor.predict(crop.image, target, current, crop.landmarks)
        return editor.blend(photo, crop, maps, memory)

    out = call()
    assert out.shape == photo.shape and not np.array_equal(out, photo)
    if memory is not None:
        memory.clear()
    rounds = max(5, bench_config.rounds - bench_config.rounds % 5)
    benchmark.group = f"region textures {edit}"
    benchmark.extra_info.update(op="region textures", edit=edit, provider=provider, photo=PHOTO, weights="lite",
                                refresh=refresh, crop_side=crop.size)
    try:
        benchmark.pedantic(call, rounds=rounds, warmup_rounds=0 if refresh > 1 else bench_config.warmup,
                           iterations=1)
    finally:
        editor.close()
