"""``fastwarp app`` in a real browser: headless Chromium (Debian's ``chromium``, driven by
Playwright through ``executable_path``; no browser download) loads the page served by the
``fastwarp app`` command, uploads a photo of ../shared/data/faces/images, moves the smile
preset's slider with the keyboard, and receives the edited image, whose FaceMesh landmarks
must show a wider mouth (training/edit_metrics.py's ``mouth_width``) while the pixels away
from the face stay the photo's own. The Webcam tab gets Chromium's fake camera, a y4m file made
from a clip of ../shared/data/faces/videos (each frame stamped with its index): the smile
preset's slider at 1 must widen the mouth of the streamed frames over their camera frames'.

Skips, saying why, only where gradio, Playwright or a Chromium binary is missing (``make
test`` installs the first two, ``.ci/run`` installs Chromium). ``FASTWARP_APP_SCREENSHOT=path``
also saves a screenshot of the page there (docs/app.png is made that way).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
PHOTO = "st_people_0.png"  # a front-facing face with a closed, resting mouth


def _chromium() -> str | None:
    for candidate in (os.environ.get("FASTWARP_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if candidate and (path := shutil.which(candidate)):
            return path
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_url():
    """``fastwarp app`` on a free port of 127.0.0.1, in a subprocess; stopped after the module."""
    for module, why in (("gradio", "pip install 'fastwarp[app]' (make test does)"),
                        ("playwright", "pip install -r requirements-app.txt (make test does)")):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed: {why}")
    if _chromium() is None:
        pytest.skip("no Chromium binary (install Debian's chromium: apt-get install chromium; .ci/run does)")
    port = _free_port()
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", OMP_WAIT_POLICY="PASSIVE")
    proc = subprocess.Popen([sys.executable, "-m", "fastwarp.cli", "app", "--port", str(port), "--device", "cpu"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"fastwarp app exited with status {proc.returncode} before serving")
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("fastwarp app did not serve its page within 120 s")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def browser(app_url):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), args=["--no-sandbox", "--headless=new"])
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser, app_url):
    """A fresh page of the app (a new Gradio session)."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.set_default_timeout(60_000)
        page.goto(app_url, wait_until="domcontentloaded")  # (not "networkidle": Gradio keeps a connection open)
        page.wait_for_selector("#photo-upload input[type=file]", state="attached")
        yield page
    finally:
        page.close()


def _status_contains(page, text: str) -> None:
    page.wait_for_function("t => (document.querySelector('#status')?.innerText || '').includes(t)", arg=text)


def _image(page, selector: str) -> np.ndarray:
    import cv2

    src = page.locator(f"{selector} img").get_attribute("src")
    body = page.request.get(src).body()
    image = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, f"{selector} did not show an image ({src})"
    return image


def test_a_smile_slider_in_the_browser_widens_the_mouth(page, faces_dir, tmp_path):
    import cv2

    from fastwarp.face import FaceMesh
    from training.edit_metrics import landmark_measures

    photo = faces_dir / "images" / PHOTO
    page.locator("#photo-upload input[type=file]").set_input_files(str(photo))
    _status_contains(page, "Loaded")
    # The AU sliders start at the face's estimate (AU12's is the lip corners' pull).
    assert page.locator("#au-AU12 input[type=number]").input_value() != ""
    before = _image(page, "#edited")
    original = cv2.imread(str(photo), cv2.IMREAD_COLOR)
    assert np.array_equal(before, original)  # loaded, not edited yet: the photo itself

    slider = page.locator("#preset-smile input[type=range]")
    slider.focus()
    for _ in range(20):  # 0 -> 1 in steps of 0.05, as a keyboard user moves it
        page.keyboard.press("ArrowRight")
    assert slider.input_value() == "1"
    _status_contains(page, "smile 1.00")  # the last move's render (the newest move wins)
    after = _image(page, "#edited")
    if path := os.environ.get("FASTWARP_APP_SCREENSHOT"):
        page.screenshot(path=path, full_page=False)

    assert after.shape == original.shape
    with FaceMesh(static_image_mode=True) as mesh:
        m0, m1 = (landmark_measures(mesh.detect(im)[0]) for im in (original, after))
    # A full smile pulls the lip corners apart: on a resting mouth well over 3% of its width
    # (the bundled weights give about +6..20% on the neutral faces of the photo set).
    assert m1["mouth_width"] > 1.03 * m0["mouth_width"], (m0, m1)
    # Only the face moved: the photo's corners are its own pixels, bit for bit.
    for window in (np.s_[:40, :40], np.s_[:40, -40:], np.s_[-40:, :40], np.s_[-40:, -40:]):
        assert np.array_equal(after[window], original[window])
    assert np.abs(after.astype(int) - original.astype(int)).max() > 20  # and it is an edit


def test_an_upload_that_is_not_a_photo_gets_a_message_in_the_page(page, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("not a photo")
    page.locator("#photo-upload input[type=file]").set_input_files(str(bad))
    _status_contains(page, "Cannot edit this upload: notes.png is not an image the app can read")
    assert page.locator("#preset-smile input[type=range]").count() == 1  # the page is still the app


# The Webcam tab, fed by Chromium's fake camera: a y4m file made from a clip of the face set.
CLIP = "lpf_blinkx2.mp4"  # MANIFEST.csv: frontal (yaw 0.00..0.02), neutral closed mouth, only blinks
CAM_W, CAM_H, CAM_FRAMES = 640, 480, 40
_BITS, _BLOCK = 6, 16  # the frame index, stamped as black/white blocks along the top edge


def _block_x(k: int) -> int:
    return 8 + k * (_BLOCK + 4)


def _stamp(frame: np.ndarray, index: int) -> None:
    """Writes ``index`` as ``_BITS`` black/white blocks at the top left and, mirrored, at the
    top right (Gradio's webcam mirrors the frames it sends), far from the face."""
    w = frame.shape[1]
    for k in range(_BITS):
        x, v = _block_x(k), 255 if index >> k & 1 else 0
        frame[8:8 + _BLOCK, x:x + _BLOCK] = v
        frame[8:8 + _BLOCK, w - x - _BLOCK:w - x] = v


def _read_stamp(frame: np.ndarray) -> int:
    """The index of :func:`_stamp`, read from a mirrored frame or not (JPEG and WebP on the way)."""
    return sum(1 << k for k in range(_BITS)
               if frame[12:8 + _BLOCK - 4, _block_x(k) + 4:_block_x(k) + _BLOCK - 4].mean() > 128)


def _write_y4m(path: Path, frames: list[np.ndarray], fps: int = 25) -> None:
    """YUV4MPEG2, 4:2:0: a text header, then per frame ``FRAME\\n`` and the Y, U, V planes."""
    import cv2

    h, w = frames[0].shape[:2]
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for bgr in frames:
            f.write(b"FRAME\n")
            f.write(cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420).tobytes())  # Y [h, w], U, V [h/2, w/2]


def _camera_frames(video: Path) -> list[np.ndarray]:
    """The clip's first frames, cut to 4:3 about the centre and resized to CAM_W x CAM_H, each
    stamped with its index."""
    import cv2

    cap = cv2.VideoCapture(str(video))
    frames = []
    try:
        while len(frames) < CAM_FRAMES:
            ok, frame = cap.read()
            assert ok, f"{video} has fewer than {CAM_FRAMES} frames"
            h, w = frame.shape[:2]
            ch = min(h, w * CAM_H // CAM_W)
            cw = ch * CAM_W // CAM_H
            y, x = (h - ch) // 2, (w - cw) // 2
            frame = cv2.resize(frame[y:y + ch, x:x + cw], (CAM_W, CAM_H), interpolation=cv2.INTER_AREA)
            _stamp(frame, len(frames))
            frames.append(frame)
    finally:
        cap.release()
    return frames


def _new_output(page, previous: str | None) -> str:
    """Waits for the edited stream's <img> to show a frame other than ``previous``; its src."""
    handle = page.wait_for_function(
        "prev => { const s = document.querySelector('#cam-edited img')?.src; return s && s !== prev ? s : null; }",
        arg=previous)
    return handle.json_value()


def test_the_webcam_tab_smiles_on_a_fake_camera_stream(browser, app_url, faces_dir, tmp_path):
    from fastwarp.face import FaceMesh
    from training.edit_metrics import landmark_measures

    frames = _camera_frames(faces_dir / "videos" / CLIP)
    y4m = tmp_path / "camera.y4m"
    _write_y4m(y4m, frames)
    cam_browser = browser.browser_type.launch(
        executable_path=_chromium(),
        args=["--no-sandbox", "--headless=new", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
              f"--use-file-for-fake-video-capture={y4m}"])
    mesh = FaceMesh(static_image_mode=True)

    def mouth_width(image: np.ndarray) -> float:
        faces = mesh.detect(image)
        assert faces, "FaceMesh found no face"
        return landmark_measures(faces[0])["mouth_width"]

    def widening() -> float:
        """The mouth width of the edited frame the page shows over that of the camera frame
        it was made from (found by its stamp)."""
        out = _image(page, "#cam-edited")
        assert out.shape == frames[0].shape, out.shape
        cam = frames[_read_stamp(out)]
        if np.abs(out.astype(int) - cam[:, ::-1]).mean() < np.abs(out.astype(int) - cam).mean():
            cam = np.ascontiguousarray(cam[:, ::-1])  # the webcam's mirror
        # That frame indeed: its stamp and the background above the face, up to JPEG and WebP.
        assert np.abs(out[:40].astype(int) - cam[:40]).mean() < 6
        return mouth_width(out) / mouth_width(cam)

    try:
        page = cam_browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(60_000)
        page.goto(app_url, wait_until="domcontentloaded")
        page.get_by_role("tab", name="Webcam").click()
        page.locator("#cam [title='grant webcam access'] button").click()
        page.locator("#cam button", has_text="Record").click()  # starts the stream: a frame every 0.1 s
        src = _new_output(page, None)
        plain = widening()
        # Before the slider moves the edited stream is the camera itself.
        assert abs(plain - 1) < 0.03, plain

        slider = page.locator("#live-smile input[type=range]")
        slider.focus()
        for _ in range(20):  # 0 -> 1 in steps of 0.05, as a keyboard user moves it
            page.keyboard.press("ArrowRight")
        assert slider.input_value() == "1"
        # Frames sent before the move (or during it, at lower intensities) may still be queued:
        # within 20 new frames the mouth must be over 3% wider than in the camera frame, and
        # stay so for 3 frames in a row (the bundled weights give about +20% on this clip).
        seen, streak = [], 0
        while streak < 3 and len(seen) < 20:
            src = _new_output(page, src)
            seen.append(round(widening(), 3))
            streak = streak + 1 if seen[-1] > 1.03 else 0
        assert streak == 3, seen
    finally:
        mesh.close()
        cam_browser.close()
