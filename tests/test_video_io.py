"""Video files in and out (fastwarp.media.video, ``fastwarp video``): what a user gets back.

Checked against independent readers on real clips of ../shared/data/faces/videos (H.264 +
AAC): the output is H.264 in yuv420p that headless Chromium plays, has every input frame at
its own timestamp (variable frame rate included), carries the audio over packet for packet
(decoded samples equal), honours rotation metadata, and, written losslessly (FFV1), shows
the user's edit inside the face and the input's own pixels outside it. Errors about codecs
and containers are one line, before any work.
"""

from __future__ import annotations

import fractions
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av")

from fastwarp.cli import main  # noqa: E402
from fastwarp.media.video import VideoError, VideoReader, VideoWriter, codec_for, read_frames  # noqa: E402
from op_helpers import FACES_DIR  # noqa: E402

VIDEOS = FACES_DIR / "videos"
CLIP = "ap_pose_ref_video.mp4"  # a talking head, 512x512, 125 frames at 25 frames/s, H.264 + AAC 48 kHz stereo

pytestmark = pytest.mark.skipif(not (VIDEOS / CLIP).is_file(),
                                reason=f"faces data not found at {FACES_DIR} (set FASTWARP_FACES_DIR)")


# --- independent readers (PyAV's demuxer and decoders directly) --------------------------------

def _streams(path) -> list[tuple[str, str]]:
    with av.open(str(path)) as c:
        return [(s.type, s.codec_context.name) for s in c.streams]


def _video_times(path) -> list[fractions.Fraction]:
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        return [f.pts * v.time_base for f in c.decode(v)]


def _audio_packets(path) -> list[tuple[int, bytes]]:
    with av.open(str(path)) as c:
        a = c.streams.audio[0]
        return [(p.pts, bytes(p)) for p in c.demux(a) if p.size]


def _audio_samples(path) -> np.ndarray:
    with av.open(str(path)) as c:
        return np.concatenate([f.to_ndarray() for f in c.decode(c.streams.audio[0])], axis=-1)


def _mouth_widths(frames) -> np.ndarray:
    from fastwarp.face import FaceMesh
    from training.edit_metrics import landmark_measures

    with FaceMesh(static_image_mode=True) as mesh:
        return np.array([landmark_measures(mesh.detect(f)[0])["mouth_width"] for f in frames])


def _run(capsys, *argv) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


# --- reading -------------------------------------------------------------------------------

def test_reader_matches_opencv_decode_and_the_streams_clock():
    import cv2

    frames, times = read_frames(VIDEOS / CLIP)
    cap = cv2.VideoCapture(str(VIDEOS / CLIP))
    ref = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        ref.append(frame)
    cap.release()
    assert len(frames) == len(ref) == 125
    # The same pictures (OpenCV converts with BT.601 whatever the stream says; this clip is
    # tagged BT.709, which the reader honours: a few grey levels apart, no more).
    assert max(np.abs(a.astype(int) - b.astype(int)).mean() for a, b in zip(frames, ref)) < 3.0
    assert times == pytest.approx([float(t) for t in _video_times(VIDEOS / CLIP)], abs=0)
    assert np.allclose(np.diff(times), 1 / 25, atol=1e-3)


def test_colours_survive_the_h264_round_trip(tmp_path):
    """Frames written as H.264 (yuv420p, BT.709) and decoded again are the frames, up to the
    codec's error: no shift of the mean (swscale's fast paths alone add about 2 levels)."""
    frames, times = read_frames(VIDEOS / CLIP, limit=10)
    with VideoWriter(tmp_path / "rt.mp4", 25, (512, 512)) as writer:
        for frame, t in zip(frames, times):
            writer.write(frame, t)
    back, _ = read_frames(tmp_path / "rt.mp4")
    diff = np.stack(back).astype(float) - np.stack(frames)
    assert len(back) == 10 and abs(diff.mean()) < 0.5 and np.abs(diff).mean() < 2.0, (diff.mean(), np.abs(diff).mean())


def _clip_with(tmp_path, name, frames, pts, time_base, rotation=None) -> Path:
    """An H.264 clip of ``frames`` (BGR) at the given timestamps, written by PyAV directly."""
    path = tmp_path / name
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=30, options={"crf": "12", "preset": "ultrafast"})
        s.height, s.width = frames[0].shape[:2]
        s.pix_fmt = "yuv420p"
        s.codec_context.time_base = time_base
        if rotation is not None:
            s.set_display_rotation(rotation)
        for frame, p in zip(frames, pts):
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="bgr24")
            vf.pts, vf.time_base = p, time_base
            for packet in s.encode(vf):
                c.mux(packet)
        for packet in s.encode(None):
            c.mux(packet)
    return path


def test_rotation_metadata_is_applied_and_the_edit_comes_out_upright(tmp_path, capsys):
    upright, _ = read_frames(VIDEOS / CLIP, limit=6)
    upright = [f[:, 64:448] for f in upright]  # 384 wide x 512 high: a portrait clip
    stored = [np.ascontiguousarray(np.rot90(f, -1)) for f in upright]  # stored sideways, as phones do
    tb = fractions.Fraction(1, 15360)
    clip = _clip_with(tmp_path, "phone.mp4", stored, [i * 512 for i in range(6)], tb, rotation=90)
    with VideoReader(clip) as reader:
        assert reader.rotation == 90 and (reader.width, reader.height) == (384, 512)
        got = [frame for frame, _ in reader]
    assert all(g.shape == (512, 384, 3) for g in got)
    assert max(np.abs(g.astype(int) - u.astype(int)).mean() for g, u in zip(got, upright)) < 3.0
    out = tmp_path / "edited.mp4"
    rc, stdout, _ = _run(capsys, "video", clip, "--expr", "smile=1", "-o", out, "--quiet", "--device", "cpu")
    assert rc == 0 and "face edited in 6, passed through unchanged in 0" in stdout  # the face was found upright
    with av.open(str(out)) as c:
        first = next(c.decode(c.streams.video[0]))
        assert (first.width, first.height) == (384, 512) and not first.rotation  # upright pixels, no matrix


def test_variable_frame_rate_timestamps_are_kept(tmp_path, capsys):
    frames, _ = read_frames(VIDEOS / CLIP, limit=10)
    tb = fractions.Fraction(1, 90000)
    pts = [0, 3000, 9000, 10000, 16000, 30000, 31000, 40000, 45000, 60000]  # 33 ms to 156 ms apart
    clip = _clip_with(tmp_path, "vfr.mp4", frames, pts, tb)
    out = tmp_path / "edited.mp4"
    rc, _, _ = _run(capsys, "video", clip, "--au", "AU12=+1", "-o", out, "--quiet", "--device", "cpu")
    assert rc == 0
    assert _video_times(out) == [p * tb for p in pts]


# --- the command's output: codec, frames, timestamps, audio ---------------------------------------

@pytest.fixture(scope="module")
def smile_mp4(tmp_path_factory):
    out = tmp_path_factory.mktemp("video") / "smile.mp4"
    assert main(["video", str(VIDEOS / CLIP), "--expr", "smile=1", "-o", str(out), "--quiet", "--device", "cpu"]) == 0
    return out


def test_video_output_is_h264_with_every_frame_at_its_time_and_the_audio_copied(smile_mp4):
    src = VIDEOS / CLIP
    assert _streams(smile_mp4) == [("video", "h264"), ("audio", "aac")]
    with av.open(str(smile_mp4)) as c:
        assert c.streams.video[0].codec_context.pix_fmt == "yuv420p"
    assert _video_times(smile_mp4) == _video_times(src)
    # Copied packet for packet: the same bytes at the same times, so the same sound.
    assert _audio_packets(smile_mp4) == _audio_packets(src)
    assert np.array_equal(_audio_samples(smile_mp4), _audio_samples(src))


def test_video_output_shows_the_edit(smile_mp4):
    src_frames, _ = read_frames(VIDEOS / CLIP)
    out_frames, _ = read_frames(smile_mp4)
    picks = [0, 62, 124]
    before = _mouth_widths([src_frames[i] for i in picks])
    after = _mouth_widths([out_frames[i] for i in picks])
    assert (after > 1.03 * before).all(), (before, after)


def test_lossless_output_edits_inside_the_face_and_keeps_every_other_pixel(tmp_path, capsys):
    """FFV1 is lossless: the pixels outside the face are the decoded input's, bit for bit,
    and a zero edit returns every frame exactly (the user's edit cannot silently become one)."""
    from fastwarp.face import FaceMesh

    src = VIDEOS / CLIP
    inputs, _ = read_frames(src, limit=8)
    smile, zero = tmp_path / "smile.mkv", tmp_path / "zero.mkv"
    for out, edit in ((smile, ["--expr", "smile=1"]), (zero, ["--au", "AU12=+0"])):
        rc, _, _ = _run(capsys, "video", src, *edit, "--codec", "ffv1", "-o", out, "--max-frames", 8, "--quiet",
                        "--device", "cpu")
        assert rc == 0
    assert _streams(smile)[0] == ("video", "ffv1")
    zero_frames, _ = read_frames(zero)
    assert len(zero_frames) == 8 and all(np.array_equal(a, b) for a, b in zip(zero_frames, inputs))
    edited, _ = read_frames(smile)
    with FaceMesh(static_image_mode=True) as mesh:
        for frame, out in zip(inputs, edited):
            lm = mesh.detect(frame)[0][:, :2]
            # The mesh path's reach: its fixed ring at 1.3x the face oval about the centre.
            centre = lm.mean(0)
            lo, hi = centre + 1.35 * (lm.min(0) - centre), centre + 1.35 * (lm.max(0) - centre)
            ys, xs = np.nonzero((out != frame).any(-1))
            assert len(ys) > 500  # edited
            assert xs.min() >= lo[0] - 1 and xs.max() <= hi[0] + 1 and ys.min() >= lo[1] - 1 and ys.max() <= hi[1] + 1
            outside = np.ones(frame.shape[:2], bool)
            outside[int(lo[1]):int(np.ceil(hi[1])) + 1, int(lo[0]):int(np.ceil(hi[0])) + 1] = False
            assert np.array_equal(out[outside], frame[outside])
    assert (_mouth_widths(edited[::3]) > 1.03 * _mouth_widths(inputs[::3])).all()


def test_webm_gets_vp9_and_the_audio_reencoded_to_opus_ending_with_the_last_frame(tmp_path, capsys):
    src = VIDEOS / CLIP
    out = tmp_path / "smile.webm"
    rc, stdout, _ = _run(capsys, "video", src, "--expr", "smile=1", "-o", out, "--max-frames", 25, "--quiet",
                         "--device", "cpu")
    assert rc == 0 and "1 audio stream carried (re-encoded: aac -> libopus)" in stdout
    assert _streams(out) == [("video", "vp9"), ("audio", "opus")]
    # Matroska keeps milliseconds.
    assert np.allclose([float(t) for t in _video_times(out)], [float(t) for t in _video_times(src)[:25]], atol=1e-3)
    with av.open(str(src)) as a, av.open(str(out)) as b:
        def span(c):
            frames = list(c.decode(c.streams.audio[0]))
            return float(frames[0].pts * frames[0].time_base), sum(f.samples for f in frames) / frames[0].sample_rate
        (s0, _), (s1, d1) = span(a), span(b)
    # The sound starts where the source's does and stops with the 25th frame (1 s).
    assert abs(s1 - max(s0, 0.0)) < 0.03 and abs(d1 - 1.0) < 0.06, (s0, s1, d1)


def test_subtitles_are_copied_where_the_container_takes_them(tmp_path):
    """An MKV with an SRT track (muxed as packets, as a subtitle file is): copied into MKV
    with its timestamps, named as not carried into MP4 (which takes mov_text only)."""
    frames, _ = read_frames(VIDEOS / CLIP, limit=5)
    src = tmp_path / "subs.mkv"
    with av.open(str(src), "w") as c:
        v = c.add_stream("libx264", rate=25, options={"preset": "ultrafast"})
        v.height, v.width = frames[0].shape[:2]
        v.pix_fmt = "yuv420p"
        sub = c.add_mux_stream("subrip", time_base=fractions.Fraction(1, 1000))
        for i, frame in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(frame, format="bgr24")
            vf.pts, vf.time_base = i, fractions.Fraction(1, 25)
            for packet in v.encode(vf):
                c.mux(packet)
            if i in (0, 3):
                packet = av.Packet(f"line {i}".encode())
                packet.stream, packet.pts, packet.dts, packet.duration = sub, i * 40, i * 40, 100
                packet.time_base = fractions.Fraction(1, 1000)
                c.mux(packet)
        for packet in v.encode(None):
            c.mux(packet)
    for suffix, expect in ((".mkv", "1 subtitle stream copied"), (".mp4", "not carried (the container cannot hold "
                                                                          "them): subtitle srt")):
        out = tmp_path / f"out{suffix}"
        with VideoReader(src) as reader, VideoWriter(out, reader.fps, (reader.width, reader.height),
                                                     time_base=reader.time_base, audio_from=src) as writer:
            for frame, t in reader:
                writer.write(frame, t)
        assert expect in writer.carried, writer.carried
    with av.open(str(tmp_path / "out.mkv")) as c:
        assert [(p.pts, bytes(p)) for p in c.demux(c.streams.subtitles[0]) if p.size] == [(0, b"line 0"),
                                                                                            (120, b"line 3")]
    assert _streams(tmp_path / "out.mp4") == [("video", "h264")]


def test_no_audio_flag_and_a_source_without_audio(tmp_path, capsys):
    out = tmp_path / "mute.mp4"
    rc, stdout, _ = _run(capsys, "video", VIDEOS / CLIP, "--au", "AU12=+1", "--no-audio", "-o", out, "--quiet",
                         "--max-frames", 3, "--device", "cpu")
    assert rc == 0 and _streams(out) == [("video", "h264")] and "video only" in stdout


# --- errors: one line, before any work, nothing left behind ------------------------------------

@pytest.mark.parametrize("extra, output, pattern", [
    ([], "out.xyz", r"cannot write video .*out\.xyz: unknown container '\.xyz' \(use \.mp4, .*\.webm\)$"),
    (["--codec", "vp9"], "out.mov", r"a \.mov file cannot hold vp9 \(it takes h264, h265, av1, ffv1\)$"),
    (["--fourcc", "mp4v"], "out.mp4", r"--fourcc is retired: .*--codec h264\|h265\|vp9\|av1\|ffv1"),
    (["--crf", "99"], "out.mp4", r"--crf for h264 must be in 0\.\.51, got 99$"),
    (["--codec", "ffv1", "--crf", "10"], "out.mkv", r"--crf does not apply to ffv1"),
])
def test_codec_and_container_errors_are_one_line(tmp_path, capsys, extra, output, pattern):
    out = tmp_path / output
    rc, stdout, stderr = _run(capsys, "video", VIDEOS / CLIP, "--au", "AU12=+1", *extra, "-o", out, "--device", "cpu")
    lines = stderr.strip().splitlines()
    assert rc == 1 and len(lines) == 1 and lines[0].startswith("fastwarp: error: "), stderr
    assert re.search(pattern, lines[0]), lines[0]
    assert not list(tmp_path.iterdir())  # no output, no temporary file


def test_writer_refuses_a_frame_of_another_size(tmp_path):
    with VideoWriter(tmp_path / "a.mp4", 25, (64, 48)) as w:
        w.write(np.zeros((48, 64, 3), np.uint8))
        with pytest.raises(VideoError, match=r"frame size changed from 64x48 to 32x32"):
            w.write(np.zeros((32, 32, 3), np.uint8))


def test_codec_choice_by_suffix():
    assert codec_for("a.mp4")[1] == "h264" and codec_for("a.webm")[1] == "vp9" and codec_for("a.MKV")[1] == "h264"
    assert codec_for("a.mkv", "av1")[1] == "av1"
    with pytest.raises(VideoError, match="unknown codec 'mpeg2'"):
        codec_for("a.mp4", "mpeg2")


def test_camera_recording_is_h264_stamped_from_its_first_frame(tmp_path):
    """The webcam's -o writer: a live source's clock (time.monotonic) becomes timestamps from 0."""
    from fastwarp.realtime import VideoFileSink

    class Camera:
        fps, width, height, path, time_base = 30.0, 64, 48, None, None

    sink = VideoFileSink(tmp_path / "cam.mp4", Camera())
    for t in (1000.0, 1000.04, 1000.1, 1000.2):
        sink.write(np.full((48, 64, 3), 128, np.uint8), t)
    sink.close()
    assert _streams(tmp_path / "cam.mp4") == [("video", "h264")]
    assert np.allclose([float(t) for t in _video_times(tmp_path / "cam.mp4")], [0, 0.04, 0.1, 0.2], atol=1e-4)


# --- a browser plays it ------------------------------------------------------------------------

def _chromium() -> str | None:
    return next((p for p in (shutil.which("chromium"), "/usr/bin/chromium", shutil.which("chromium-browser"))
                 if p and Path(p).exists()), None)


def _plays_in_chromium(path: Path) -> dict:
    """Loads ``path`` in a ``<video>`` of headless Chromium (served over local HTTP), plays it
    muted for a moment and returns readyState, error code, duration and how far it played."""
    import functools
    import http.server
    import threading

    from playwright.sync_api import sync_playwright

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(path.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.RequestHandlerClass.log_message = lambda *a, **k: None
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=_chromium(), args=["--autoplay-policy=no-user-gesture-required"])
            page = browser.new_page()
            page.goto(url + "?")
            page.set_content(f'<video id="v" src="{url}{path.name}" muted playsinline></video>')
            return page.evaluate("""async () => {
                const v = document.getElementById('v');
                const settled = await new Promise(resolve => {
                    if (v.readyState >= 2) return resolve('loaded');
                    v.addEventListener('loadeddata', () => resolve('loaded'));
                    v.addEventListener('error', () => resolve('error'));
                    setTimeout(() => resolve('timeout'), 15000);
                });
                let played = 0;
                if (settled === 'loaded') {
                    try { await v.play(); } catch (e) {}
                    await new Promise(r => setTimeout(r, 700));
                    played = v.currentTime;
                }
                return {settled, readyState: v.readyState, error: v.error ? v.error.code : null,
                        duration: v.duration, played};
            }""")
    finally:
        server.shutdown()


@pytest.mark.slow
def test_headless_chromium_plays_the_output(smile_mp4, tmp_path):
    pytest.importorskip("playwright")
    if _chromium() is None:
        pytest.skip("no Chromium binary (.ci/run installs Debian's chromium)")
    state = _plays_in_chromium(smile_mp4)
    assert state["settled"] == "loaded" and state["readyState"] >= 2 and state["error"] is None, state
    assert state["duration"] == pytest.approx(125 / 25, abs=0.2) and state["played"] > 0.1, state


def test_a_paced_file_delivers_each_frame_at_its_time_and_is_live():
    import time

    from fastwarp.realtime import VideoSource

    with VideoSource(VIDEOS / CLIP, pace=True) as source:
        assert source.live  # frames are dropped, not queued, when editing falls behind
        start, arrivals = time.perf_counter(), []
        for _ in range(10):
            assert source.read() is not None
            source.pace_wait()
            arrivals.append((time.perf_counter() - start, source.last_time))
    t0 = arrivals[0][1]
    # Never early (a loaded machine may make it late, never early).
    assert all(wall >= (t - t0) - 0.002 for wall, t in arrivals), arrivals
    assert arrivals[-1][0] >= 9 / 25 - 0.002


def test_pace_needs_a_file(capsys):
    rc, _, err = _run(capsys, "webcam", "--camera", "0", "--pace", "--au", "AU12=+1", "--stats")
    assert rc == 1 and err.strip() == ("fastwarp: error: --pace plays a video file at its own frame rate: give "
                                       "--camera FILE (a camera is paced already)")


def test_seek_gives_the_frame_of_a_sequential_read():
    frames, times = read_frames(VIDEOS / CLIP)
    with VideoReader(VIDEOS / CLIP) as reader:
        for i in (100, 3, 60, 124):
            reader.seek(times[i])
            frame, t = reader.read()
            assert t == times[i] and np.array_equal(frame, frames[i]), i
        reader.seek(times[-1] + 1.0)
        assert reader.read() is None


@pytest.mark.parametrize("name, tag", [("ap_pose_ref_video.mp4", 6), ("hm_tbh.mp4", 1)])
def test_the_output_keeps_the_sources_colour_matrix(tmp_path, name, tag):
    """An untagged SD clip is BT.601 to every player (and to OpenCV, which ignores tags); a
    BT.709-tagged one is BT.709: the output is encoded and tagged the same, so a player shows
    the pixels where the source had them."""
    frames, times = read_frames(VIDEOS / name, limit=5)
    with VideoReader(VIDEOS / name) as reader:
        colorspace = reader.colorspace
    with VideoWriter(tmp_path / "out.mp4", 25, frames[0].shape[1::-1], colorspace=colorspace) as writer:
        for frame, t in zip(frames, times):
            writer.write(frame, t)
    with av.open(str(tmp_path / "out.mp4")) as c:
        first = next(c.decode(c.streams.video[0]))
        assert (int(first.colorspace), int(first.color_range)) == (tag, 1)
    back, _ = read_frames(tmp_path / "out.mp4")
    assert abs(np.stack(back).astype(float).mean() - np.stack(frames).astype(float).mean()) < 0.5
