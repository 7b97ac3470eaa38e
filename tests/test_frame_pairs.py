"""The held-out frame pairs' editor (tools/frame_pairs.py, MeshMotion.maps_from_motion): the whole
editor driven by a target's landmarks instead of the landmark motion model, on a real photo,
checked by MediaPipe on the output (an independent reading of where the lips went)."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from fastwarp import ExpressionEditor
from fastwarp.face.regions import LOWER_INNER_LIP, LOWER_OUTER_LIP, UPPER_INNER_LIP, eye_line_axes, mouth_gap

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import frame_pairs  # noqa: E402


@pytest.fixture(scope="module")
def editor():
    with ExpressionEditor("lite", "cpu", texture="mesh") as ed:
        yield ed


def test_lips_driven_to_a_target_reach_it(faces_dir, editor):
    image = cv2.imread(str(faces_dir / "images" / "df_img10.jpg"), cv2.IMREAD_COLOR)
    lm = editor.detect(image)[0]
    _, ey, iod = eye_line_axes(lm[None, :, :2].astype(np.float64))
    target = lm[:, :2].astype(np.float64).copy()
    lower = sorted((set(LOWER_INNER_LIP) | set(LOWER_OUTER_LIP)) - set(UPPER_INNER_LIP))
    target[lower] += 0.12 * iod[0] * ey[0]  # the lower lip drops by 0.12 IOD
    before = float(mouth_gap(lm[None])[0])
    wanted = float(mouth_gap(target[None])[0]) - before
    assert wanted > 0.1
    outs = frame_pairs.edit_pair(editor, image, lm, target)
    assert set(outs) == {"warp", "shipped", "new"}
    for name, out in outs.items():
        assert out.shape == image.shape and out.dtype == np.uint8
        got = float(mouth_gap(editor.detect(out)[0][None])[0]) - before
        assert got > 0.6 * wanted, (name, got, wanted)
        far = np.abs(out.astype(int) - image.astype(int)).max(-1)
        assert far[:, : int(lm[:, 0].min()) - 40].max() == 0  # left of the face: untouched


def test_no_motion_returns_the_frame(faces_dir, editor):
    image = cv2.imread(str(faces_dir / "images" / "df_img10.jpg"), cv2.IMREAD_COLOR)
    lm = editor.detect(image)[0]
    for out in frame_pairs.edit_pair(editor, image, lm, lm[:, :2].astype(np.float64)).values():
        assert np.array_equal(out, image)


def test_an_unknown_variant_is_refused_in_one_line(capsys):
    with pytest.raises(SystemExit) as e:
        frame_pairs.main(["--variants", "shipped,sharp", "--kind", "mouth"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.endswith("unknown variant(s) sharp: choose from warp, shipped, new, jaws, regions_only, share1, "
                        "regions_raw")
