"""The Video tab of ``fastwarp app`` in a real browser: headless Chromium (Debian's
``chromium``, driven by Playwright; the app, browser and page fixtures of
tests/test_app_browser.py) opens the tab, uploads a clip of ../shared/data/faces/videos,
moves the frame slider and the smile preset's slider (the preview changes), renders the
clip (Gradio's progress bar shows the frames done), and the page's ``<video>`` element plays
the result with its sound; the served and the downloaded files are H.264 with every frame and
the clip's AAC audio, edited where the face is.

Skips, saying why, only where gradio, Playwright or a Chromium binary is missing (as
tests/test_app_browser.py). ``FASTWARP_APP_VIDEO_SCREENSHOT=path`` also saves a screenshot
of the tab there (docs/app_video.png is made that way).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from test_app_browser import _image, app_url, browser, page  # noqa: F401  (shared fixtures)

CLIP = "hm_tbh.mp4"  # 512x512, 39 frames at 15 frames/s, H.264 + AAC, 2.6 s
FRAME = 20  # the previewed frame


def _status_contains(page, text: str) -> None:
    page.wait_for_function("t => (document.querySelector('#video-status')?.innerText || '').includes(t)", arg=text)


def _press(page, selector: str, times: int) -> None:
    """Moves a slider as a keyboard user does: ``times`` steps to the right."""
    page.locator(f"{selector} input[type=range]").focus()
    for _ in range(times):
        page.keyboard.press("ArrowRight")


def _open_tab(page) -> None:
    page.get_by_role("tab", name="Video").click()
    page.wait_for_selector("#video-upload input[type=file]", state="attached")


# Records what Gradio's progress tracker shows while the render runs (it is gone at the end).
_WATCH_PROGRESS = """() => {
  window.__progress = [];
  const seen = () => document.querySelectorAll('.progress-level-inner, .progress-text, .eta-bar').forEach(e => {
    const t = (e.innerText || '').trim();
    if (t && !window.__progress.includes(t)) window.__progress.push(t);
  });
  new MutationObserver(seen).observe(document.body, {subtree: true, childList: true, characterData: true});
}"""

# Plays the page's <video> muted for a moment and reports what the media element says.
_PLAY = """async () => {
  const v = document.querySelector('#video-edited video');
  v.muted = true;
  await v.play();
  const t0 = performance.now();
  while (v.currentTime < 1.0 && !v.ended && performance.now() - t0 < 20000) await new Promise(r => setTimeout(r, 100));
  v.pause();
  return {readyState: v.readyState, error: v.error && {code: v.error.code, message: v.error.message},
          currentTime: v.currentTime, duration: v.duration, width: v.videoWidth, height: v.videoHeight,
          audioBytes: v.webkitAudioDecodedByteCount, videoBytes: v.webkitVideoDecodedByteCount};
}"""


def _probe(path) -> dict:
    import av

    from fastwarp.media.video import read_frames

    with av.open(str(path)) as c:
        info = {"video": [(s.codec_context.name, s.codec_context.pix_fmt) for s in c.streams.video],
                "audio": [s.codec_context.name for s in c.streams.audio]}
    info["frames"] = read_frames(path)[0]
    return info


def test_the_video_tab_previews_renders_and_plays_a_clip_with_its_sound(page, faces_dir, tmp_path):
    from fastwarp.media.video import read_frames

    clip = faces_dir / "videos" / CLIP
    original, _ = read_frames(clip)
    _open_tab(page)
    page.locator("#video-upload input[type=file]").set_input_files(str(clip))
    _status_contains(page, "Loaded hm_tbh.mp4: 512x512, 39 frames, 15 frames/s, 2.6 s with sound (aac)")
    assert np.array_equal(_image(page, "#video-preview"), original[0])  # nothing moved: the frame itself

    _press(page, "#video-frame", FRAME)  # the frame slider: 0 -> 20
    _status_contains(page, f"Frame {FRAME} (")
    assert np.array_equal(_image(page, "#video-original"), original[FRAME])
    unedited = _image(page, "#video-preview")
    assert np.array_equal(unedited, original[FRAME])

    _press(page, "#video-preset-smile", 20)  # 0 -> 1 in steps of 0.05
    assert page.locator("#video-preset-smile input[type=range]").input_value() == "1"
    _status_contains(page, "smile 1.00.")  # the last move's preview (the newest move wins)
    edited = _image(page, "#video-preview")
    assert edited.shape == unedited.shape
    diff = np.abs(edited.astype(int) - unedited.astype(int))
    assert diff.max() > 20  # an edit of the face...
    assert diff[:40, :40].max() == 0  # ...and only of the face

    page.evaluate(_WATCH_PROGRESS)
    page.locator("#video-render").click()
    _status_contains(page, "Rendered 39 frames")
    page.wait_for_selector("#video-edited video[src]")
    # Gradio's progress bar showed the frames done (the tracker says e.g. "Rendering 12/39 frames").
    shown = page.evaluate("() => window.__progress")
    assert any("/39 frames" in t for t in shown) and any("Rendering" in t for t in shown), shown

    # The page plays it: decoded video and audio, no MediaError.
    played = page.evaluate(_PLAY)
    if path := os.environ.get("FASTWARP_APP_VIDEO_SCREENSHOT"):  # (paused at 1 s: the player shows a frame)
        page.evaluate("() => window.scrollTo(0, 0)")
        page.screenshot(path=path, full_page=False)
    assert played["error"] is None, played
    assert played["readyState"] >= 2 and played["currentTime"] >= 1.0, played
    assert (played["width"], played["height"]) == (512, 512), played
    assert played["duration"] == pytest.approx(2.6, abs=0.1), played
    assert played["videoBytes"] > 0 and played["audioBytes"] > 0, played  # the sound is in the file and decodes

    # The file the page plays, and the one its download button saves.
    src = page.locator("#video-edited video").get_attribute("src")
    served = tmp_path / "served.mp4"
    served.write_bytes(page.request.get(src).body())
    with page.expect_download() as download:
        page.locator("#video-download").click()
    assert download.value.suggested_filename == "hm_tbh_edited.mp4"
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    assert saved.read_bytes() == served.read_bytes()
    info = _probe(saved)
    assert info["video"] == [("h264", "yuv420p")] and info["audio"] == ["aac"], info
    frames = info["frames"]
    assert len(frames) == len(original) == 39
    changed = [np.abs(a.astype(int) - b.astype(int)).max() for a, b in zip(frames, original)]
    assert min(changed) > 25, changed  # every frame's face is edited (the encoder alone moves a few levels)
    # The frame the preview showed is the rendered one, up to the encoder (and the smoothing
    # over the frames before it, which the one-frame preview has not got).
    assert np.abs(frames[FRAME].astype(int) - edited.astype(int)).mean() < 3


def test_an_upload_that_is_not_a_video_gets_a_message_in_the_page(page, tmp_path):
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video")
    _open_tab(page)
    page.locator("#video-upload input[type=file]").set_input_files(str(bad))
    _status_contains(page, "Cannot edit this upload: notes.mp4 is not a video the app can read")
    assert page.locator("#video-render").count() == 1  # the page is still the app
