"""The web app's logic without a browser (fastwarp/app.py): reading uploads, the face found
once per photo, the sliders' edits, and the edit itself on a real photo (no slider moved:
the photo bit for bit; the smile preset: a wider mouth). The page itself is tested in
Chromium by tests/test_app_browser.py."""

from __future__ import annotations

import numpy as np
import pytest

from fastwarp import app
from fastwarp.app import PhotoEditor, UploadError, read_photo, slider_edits
from fastwarp.au import AU_INDEX
from fastwarp.face.aus import VISIBLE_AUS
from fastwarp.presets import PRESETS, ExprEdit

PHOTO = "st_people_0.png"


@pytest.fixture(scope="module")
def photos():
    editor = PhotoEditor("base", "cpu")
    yield editor
    editor.close()


@pytest.fixture
def photo_path(faces_dir):
    return faces_dir / "images" / PHOTO


def _unmoved(photo):
    return dict(photo.sliders), {name: 0.0 for name in PRESETS}


def test_read_photo_gives_the_bgr_image(photo_path):
    import cv2

    assert np.array_equal(read_photo(photo_path), cv2.imread(str(photo_path), cv2.IMREAD_COLOR))


def test_an_upload_that_is_not_an_image_is_refused_with_a_message(tmp_path):
    bad = tmp_path / "holiday.png"
    bad.write_text("this is not a PNG")
    with pytest.raises(UploadError, match="holiday.png is not an image the app can read"):
        read_photo(bad)
    with pytest.raises(UploadError, match="cannot read the upload"):
        read_photo(tmp_path / "gone.png")


def test_a_huge_upload_is_refused_before_decoding(tmp_path, monkeypatch):
    from PIL import Image

    big = tmp_path / "big.png"
    Image.new("1", (6100, 4000)).save(big)  # 24.4 megapixels, a few kB on disk
    with pytest.raises(UploadError, match=r"6100x4000 \(24 megapixels\); the app takes photos up to 24 megapixels"):
        read_photo(big)
    monkeypatch.setattr(app, "MAX_UPLOAD_BYTES", 1000)
    with pytest.raises(UploadError, match="the app takes photos up to 0 MB"):
        read_photo(big)


def test_a_photo_without_a_face_is_refused_with_a_message(photos):
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    with pytest.raises(UploadError, match="no face found"):
        photos.load(noise)


def test_sliders_start_at_the_estimate_and_only_moved_ones_edit(photos, photo_path):
    photo = photos.load(read_photo(photo_path))
    for name in VISIBLE_AUS:
        assert abs(photo.sliders[name] - photo.current[AU_INDEX[name]]) <= app.AU_STEP / 2 + 1e-6
    au, presets = _unmoved(photo)
    assert slider_edits(photo, au, presets) == []
    au["AU25"] = photo.sliders["AU25"] + 1.0
    presets["smile"] = 0.5
    edits = slider_edits(photo, au, presets)
    # the presets first, then the AU sliders, so a moved AU slider wins
    assert edits == [ExprEdit("smile", 0.5), ("AU25", pytest.approx(photo.sliders["AU25"] + 1.0), False)]


def test_no_slider_moved_returns_the_photo_bit_for_bit(photos, photo_path):
    frame = read_photo(photo_path)
    photo = photos.load(frame)
    out, target, _ = photos.render(photo, slider_edits(photo, *_unmoved(photo)))
    assert np.array_equal(out, frame)
    assert np.array_equal(target, photo.current)
    assert out is not frame  # a new image: the photo the session holds is never written


def test_the_smile_preset_widens_the_mouth_and_an_au_slider_sets_its_au(photos, photo_path):
    from fastwarp.face import FaceMesh
    from training.edit_metrics import landmark_measures

    frame = read_photo(photo_path)
    photo = photos.load(frame)
    au, presets = _unmoved(photo)
    presets["smile"] = 1.0
    smiled, target, _ = photos.render(photo, slider_edits(photo, au, presets))
    assert target[AU_INDEX["AU12"]] > photo.current[AU_INDEX["AU12"]] + 1.0
    with FaceMesh(static_image_mode=True) as mesh:
        m0, m1 = (landmark_measures(mesh.detect(im)[0]) for im in (frame, smiled))
    assert m1["mouth_width"] > 1.03 * m0["mouth_width"], (m0, m1)
    assert np.array_equal(photo.frame, frame)  # rendering never writes the loaded photo

    au, presets = _unmoved(photo)
    au["AU12"] = 0.0  # the AU slider, moved below the face's 1.5: the lip corners relax
    _, target, _ = photos.render(photo, slider_edits(photo, au, presets))
    assert target[AU_INDEX["AU12"]] == 0.0
    presets["smile"] = 1.0  # with the smile preset as well, the AU slider still wins
    _, target, _ = photos.render(photo, slider_edits(photo, au, presets))
    assert target[AU_INDEX["AU12"]] == 0.0


def test_the_au_table_marks_the_changed_targets(photos, photo_path):
    photo = photos.load(read_photo(photo_path))
    target = photo.current.copy()
    target[AU_INDEX["AU12"]] = 4.0
    table = app.au_table(photo.current, target)
    assert f"| AU12 | {photo.current[AU_INDEX['AU12']]:.2f} | **4.00** |" in table
    assert f"| AU01 | {photo.current[AU_INDEX['AU01']]:.2f} | {photo.current[AU_INDEX['AU01']]:.2f} |" in table
    assert "| AU01 |" in table and "AU09" not in table  # the visible AUs only


def test_fastwarp_imports_without_gradio_and_the_app_binds_localhost_by_default():
    import subprocess
    import sys

    code = "import sys, fastwarp, fastwarp.app, fastwarp.cli; assert 'gradio' not in sys.modules, 'gradio imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
    from fastwarp.cli import build_parser

    args = build_parser().parse_args(["app"])
    assert (args.host, args.port, args.share) == ("127.0.0.1", 7860, False)


def test_fastwarp_app_without_gradio_is_one_error_line(monkeypatch, capsys):
    import importlib.util

    from fastwarp import cli

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gradio" else real(name, *a))
    assert cli.main(["app"]) == cli.EXIT_ERROR
    err = capsys.readouterr().err
    assert err == ("fastwarp: error: the web app needs gradio: pip install 'fastwarp[app]' (or make app)\n")


def test_the_webcam_tab_edits_frames_on_the_realtime_engine(photo_path):
    frame = read_photo(photo_path)
    live = app.LiveEditor("base", "cpu")
    try:
        smiled = live.frame(frame, [ExprEdit("smile", 1.0)])
        assert smiled.shape == frame.shape and not np.array_equal(smiled, frame)
        blank = np.zeros((240, 320, 3), np.uint8)  # a new frame size starts a new stream; no face: unchanged
        assert np.array_equal(live.frame(blank, [ExprEdit("smile", 1.0)]), blank)
        assert np.array_equal(live.frame(frame, []), frame)  # no edit: the frame itself
    finally:
        live.close()
