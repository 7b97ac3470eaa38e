"""The Video tab's logic without a browser (fastwarp/app_video.py): probing and refusing
uploads, seeking the preview's frame, the sliders' edits, the preview, and a whole render of
a short real clip with sound (H.264, every frame, the audio copied, the mouth wider). The page
itself is tested in Chromium by tests/test_app_video_browser.py."""

from __future__ import annotations

import numpy as np
import pytest

from fastwarp import app_video
from fastwarp.app import UploadError
from fastwarp.app_video import VideoEditor, describe_edits, probe_video, read_frame, video_edits
from fastwarp.face.aus import VISIBLE_AUS
from fastwarp.presets import PRESETS, ExprEdit

CLIP = "hm_tbh.mp4"  # 512x512, 39 frames at 15 frames/s, H.264 + AAC: a laugh (AU12 already at 5)
# The edit the render test asks for: on this face "happy" raises the cheeks (AU06) and AU20
# +4 stretches the lips, which FaceMesh measures as a mouth 4.5..10% wider on its frames.
EDIT_AU, EDIT_PRESET = {"AU20": 4.0}, {"happy": 1.0}


@pytest.fixture
def clip_path(faces_dir):
    return faces_dir / "videos" / CLIP


@pytest.fixture(scope="module")
def videos():
    editor = VideoEditor("base", "cpu")
    yield editor
    editor.close()


def _sliders(au=None, presets=None):
    return ({n: 0.0 for n in VISIBLE_AUS} | (au or {}), {n: 0.0 for n in PRESETS} | (presets or {}))


def _mouth_width(mesh, image) -> float:
    from training.edit_metrics import landmark_measures

    faces = mesh.detect(image)
    assert faces, "FaceMesh found no face"
    return landmark_measures(faces[0])["mouth_width"]


def test_probe_reads_the_clip_and_seeks_any_frame_exactly(clip_path, faces_dir):
    from fastwarp.media.video import read_frames

    clip = probe_video(clip_path)
    assert (clip.width, clip.height, clip.frames, clip.fps, clip.audio) == (512, 512, 39, 15.0, ["aac"])
    assert clip.duration == pytest.approx(2.6, abs=0.01)
    assert "39 frames" in clip.summary() and "with sound (aac)" in clip.summary()
    frames, times = read_frames(clip_path)
    assert np.array_equal(clip.frame, frames[0])
    assert clip.times == pytest.approx(times)
    for k in (1, 20, 38):  # a seek to the keyframe before, then a decode up to it: bit for bit
        assert np.array_equal(read_frame(clip, k), frames[k]), k
    # A longer clip (448 frames at 30 frames/s, several keyframes).
    long = faces_dir / "videos" / "lp_d10.mp4"
    clip = probe_video(long)
    frames, _ = read_frames(long)
    assert clip.frames == len(frames) == 448
    for k in (223, 447):
        assert np.array_equal(read_frame(clip, k), frames[k]), k


def test_an_upload_that_is_not_a_video_is_refused_with_a_message(tmp_path, faces_dir):
    bad = tmp_path / "holiday.mp4"
    bad.write_text("this is not a video")
    with pytest.raises(UploadError, match="holiday.mp4 is not a video the app can read"):
        probe_video(bad)
    with pytest.raises(UploadError, match="cannot read the upload"):
        probe_video(tmp_path / "gone.mp4")
    # FFmpeg reads a PNG as a one-frame video: refused, pointing at the Photo tab.
    with pytest.raises(UploadError, match="st_people_0.png is a still image, not a video"):
        probe_video(faces_dir / "images" / "st_people_0.png")


def test_too_large_too_long_or_too_big_a_frame_is_refused(clip_path, monkeypatch):
    monkeypatch.setattr(app_video, "MAX_VIDEO_BYTES", 1000)
    with pytest.raises(UploadError, match=r"hm_tbh.mp4 is 0 MB; the app takes clips up to 0 MB"):
        probe_video(clip_path)
    monkeypatch.undo()
    monkeypatch.setattr(app_video, "MAX_VIDEO_FRAMES", 30)  # 39 frames: counted from the packets
    with pytest.raises(UploadError, match=r"hm_tbh.mp4 is too long \(over 30 frames\)"):
        probe_video(clip_path)
    monkeypatch.undo()
    monkeypatch.setattr(app_video, "MAX_VIDEO_SECONDS", 2.0)  # 2.6 s: from the container's duration
    with pytest.raises(UploadError, match=r"hm_tbh.mp4 is too long \(3 s\); the app renders clips up to"):
        probe_video(clip_path)
    monkeypatch.undo()
    monkeypatch.setattr(app_video, "MAX_VIDEO_PIXELS", 500 * 500)
    with pytest.raises(UploadError, match="hm_tbh.mp4 is 512x512"):
        probe_video(clip_path)


def test_sliders_give_presets_then_relative_au_changes():
    assert video_edits(*_sliders()) == []
    au, presets = _sliders({"AU25": 1.0, "AU12": -7.0}, {"smile": 0.5})
    edits = video_edits(au, presets)
    # the presets first, then the AU sliders as changes of the face's own intensity (clamped)
    assert edits == [ExprEdit("smile", 0.5), ("AU12", -5.0, True), ("AU25", 1.0, True)]
    assert describe_edits(edits) == "smile 0.50, AU12 -5.0, AU25 +1.0"
    assert describe_edits([]) == "no change"


def test_the_preview_edits_the_chosen_frame(videos, clip_path):
    from fastwarp.face import FaceMesh

    clip = probe_video(clip_path)
    clip.index, clip.frame = 20, read_frame(clip, 20)
    out, faces, _ = videos.preview(clip, [])
    assert out is clip.frame and faces == 0  # nothing moved: the frame itself
    out, faces, _ = videos.preview(clip, video_edits(*_sliders({"AU20": 4.0})))
    assert faces == 1 and out.shape == clip.frame.shape
    with FaceMesh(static_image_mode=True) as mesh:
        assert _mouth_width(mesh, out) > 1.03 * _mouth_width(mesh, clip.frame)
    assert np.array_equal(out[:40, :40], clip.frame[:40, :40])  # away from the face: untouched


@pytest.mark.slow
def test_a_render_is_h264_with_every_frame_and_the_sound_and_edits_the_face(videos, clip_path):
    import av

    from fastwarp.face import FaceMesh
    from fastwarp.media.video import read_frames

    clip = probe_video(clip_path)
    clip.output = videos.workdir / "earlier" / "hm_tbh_edited.mp4"  # a render of this clip before
    clip.output.parent.mkdir()
    clip.output.write_bytes(b"")
    progress = []
    rendered = videos.render(clip, video_edits(*_sliders(EDIT_AU, EDIT_PRESET)),
                             progress=lambda done, total: progress.append((done, total)))
    assert rendered.path.is_file() and rendered.path.name == "hm_tbh_edited.mp4"
    assert rendered.path.is_relative_to(videos.workdir)
    assert progress[-1] == (39, 39) and len(progress) == 39
    assert (rendered.frames, rendered.faces_edited, rendered.error) == (39, 39, None)
    assert rendered.carried == "1 audio stream copied"
    with av.open(str(rendered.path)) as out, av.open(str(clip_path)) as src:
        video, = out.streams.video
        assert (video.codec_context.name, video.codec_context.pix_fmt) == ("h264", "yuv420p")
        assert (video.codec_context.width, video.codec_context.height) == (512, 512)
        audio, = out.streams.audio
        assert audio.codec_context.name == "aac"
        assert audio.frames == src.streams.audio[0].frames  # every audio packet copied
    edited, times = read_frames(rendered.path)
    original, src_times = read_frames(clip_path)
    assert len(edited) == len(original) == 39
    assert times == pytest.approx(src_times, abs=1e-3)  # the source's timestamps kept
    with FaceMesh(static_image_mode=True) as mesh:
        for k in (10, 20, 30):
            ratio = _mouth_width(mesh, edited[k]) / _mouth_width(mesh, original[k])
            assert ratio > 1.03, (k, ratio)
    # The clip's earlier render is gone (with its folder); this one is the clip's now.
    assert not (videos.workdir / "earlier").exists() and clip.output == rendered.path


def test_render_folders_are_made_at_first_use_and_those_of_stopped_apps_removed(tmp_path, monkeypatch):
    import os
    import subprocess
    import sys
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # tempfile.gettempdir()
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f"fastwarp-video-{int(ended.stdout)}-x1"  # an app stopped by a signal: no close()
    stale.mkdir()
    (stale / "clip_edited.mp4").write_bytes(b"")
    running = tmp_path / f"fastwarp-video-{os.getppid()}-x2"  # a process that still runs
    running.mkdir()
    editor = VideoEditor("base", "cpu")
    assert stale.exists()  # nothing done before the first render
    workdir = editor.workdir
    assert workdir.parent == tmp_path and workdir.name.startswith(f"fastwarp-video-{os.getpid()}-")
    assert not stale.exists() and running.exists()
    editor.close()
    assert not workdir.exists() and running.exists()
