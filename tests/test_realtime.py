"""fastwarp.realtime and ``fastwarp webcam``: the streaming engine on real face videos.

The engine's edit is checked against an independent re-implementation of the pipeline
(align_face → the networks with the pure-PyTorch reference warp → fastwarp.reference's
frame-space composite: one warp_blend of the frame with theta); the One Euro filter against the paper's
scalar algorithm; robustness (no face, a face leaving and re-entering, two faces, a camera
that disconnects, truncated files) on frames of ../shared/data/faces/videos. A tiny random
model keeps it fast (its edits are large and easy to see).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from fastwarp import reference
from fastwarp.au import AU_INDEX, parse_au_edit
from fastwarp.cli import main
from fastwarp.expression_editor import Maps
from fastwarp.face import FACE_OVAL, align_face, estimate_aus, face_mask
from fastwarp.models import EditorConfig, EditorNet
from fastwarp.realtime import (
    FaceTracker,
    LiveControls,
    OneEuroFilter,
    RealtimeEngine,
    StreamError,
    VideoFileSink,
    VideoSource,
)
from op_helpers import FACES_DIR

VIDEOS = FACES_DIR / "videos"
needs_faces = pytest.mark.skipif(not VIDEOS.is_dir(), reason=f"real face data not found at {FACES_DIR} "
                                 "(set FASTWARP_FACES_DIR to its location)")
MAIN_VIDEO = "lp_d0.mp4"       # 512x512, one frontal face (MANIFEST.csv)
OTHER_VIDEO = "st_WDA_AOC_000.mp4"  # 512x512, another person
SMILE = [parse_au_edit("AU12=3")]


# --- helpers -----------------------------------------------------------------------------

def _frames(name: str, n: int, step: int = 1) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(VIDEOS / name))
    out = []
    while len(out) < n:
        ok, frame = cap.read()
        assert ok, f"{name} has fewer than {n * step} frames"
        out.append(frame)
        for _ in range(step - 1):
            cap.read()
    cap.release()
    return out


class FrameStack:
    """A capture over numpy frames (what cv2.VideoCapture offers the engine), so outputs
    can be compared with the exact input frames; ``fail_after`` makes read() fail from
    then on, like a camera that is unplugged."""

    def __init__(self, frames, fps=25.0, fail_after=None):
        self.frames, self.fps, self.fail_after, self.i = list(frames), fps, fail_after, 0

    def isOpened(self):
        return True

    def get(self, prop):
        h, w = self.frames[0].shape[:2]
        return {cv2.CAP_PROP_FPS: self.fps, cv2.CAP_PROP_FRAME_WIDTH: w, cv2.CAP_PROP_FRAME_HEIGHT: h,
                cv2.CAP_PROP_FRAME_COUNT: len(self.frames)}.get(prop, 0.0)

    def read(self):
        if self.i >= len(self.frames) or (self.fail_after is not None and self.i >= self.fail_after):
            return False, None
        self.i += 1
        return True, self.frames[self.i - 1].copy()

    def release(self):
        pass


def _run(engine, frames, **kw):
    results = []
    stats = engine.run(VideoSource("stack", capture=FrameStack(frames), live=False),
                       on_frame=lambda r: results.append(r), **kw)
    return stats, results


def _video_frames(path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    out = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        out.append(frame)
    cap.release()
    return out


def _face_region(shape, landmarks, grow=4) -> np.ndarray:
    region = np.zeros(shape[:2], np.uint8)
    cv2.fillPoly(region, [np.round(landmarks[list(FACE_OVAL), :2]).astype(np.int32)], 1)
    return cv2.dilate(region, np.ones((2 * grow + 1, 2 * grow + 1), np.uint8)) > 0


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    """A random, tiny delta-conditioned EditorNet saved as a checkpoint (path without suffix)."""
    torch.manual_seed(0)
    model = EditorNet(EditorConfig(motion_width=8, motion_res_blocks=1, texture_width=8, texture_res_blocks=1,
                                    conditioning="delta"))
    with torch.no_grad():  # from the near-identity initialisation to a visible edit
        torch.nn.init.normal_(model.motion.flow_head.weight, std=0.05)
        model.texture.mask_head.bias.fill_(-1.0)
    base = tmp_path_factory.mktemp("weights") / "tiny"
    model.save(base)
    return base


@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("onnx")


@pytest.fixture(scope="module")
def engine(tiny_weights):
    with RealtimeEngine(SMILE, str(tiny_weights), "cpu", runtime="torch") as e:
        yield e


# --- One Euro filter and tracks ------------------------------------------------------------

def _one_euro_scalar(xs, ts, min_cutoff, beta, d_cutoff, scale=1.0):
    """The 1€ filter of Casiez et al. (CHI 2012), one scalar at a time, as the paper writes it."""
    def alpha(cutoff, te):
        tau = 1.0 / (2 * math.pi * cutoff)
        return 1.0 / (1.0 + tau / te)

    out, x_hat, dx_hat, t_prev = [], None, 0.0, None
    for x, t in zip(xs, ts):
        if x_hat is None:
            x_hat = x
        else:
            te = t - t_prev
            dx = (x - x_hat) / te
            a_d = alpha(d_cutoff, te)
            dx_hat = a_d * dx + (1 - a_d) * dx_hat
            a = alpha(min_cutoff + beta * abs(dx_hat) / scale, te)
            x_hat = a * x + (1 - a) * x_hat
        t_prev = t
        out.append(x_hat)
    return np.array(out)


def test_one_euro_matches_the_papers_scalar_filter():
    rng = np.random.default_rng(0)
    ts = np.cumsum(rng.uniform(0.01, 0.05, 60))  # irregular frame times
    signal = np.cumsum(rng.normal(0, 2, (60, 5, 2)), axis=0) + rng.normal(0, 0.5, (60, 5, 2))
    f = OneEuroFilter(min_cutoff=1.3, beta=0.2, d_cutoff=0.8)
    got = np.stack([f(x, t, scale=2.0) for x, t in zip(signal, ts)])
    for idx in np.ndindex(5, 2):
        want = _one_euro_scalar(signal[:, idx[0], idx[1]], ts, 1.3, 0.2, 0.8, scale=2.0)
        np.testing.assert_allclose(got[:, idx[0], idx[1]], want, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(got[0], signal[0])  # the first sample passes through
    f.reset()
    np.testing.assert_array_equal(f(signal[30], ts[30]), signal[30])  # ... and the first after reset


def test_one_euro_smooths_rest_and_follows_motion():
    rng = np.random.default_rng(1)
    ts = np.arange(200) / 30.0
    noise = rng.normal(0, 1.0, (200, 50))
    still = OneEuroFilter(min_cutoff=1.0, beta=0.0)
    out = np.stack([still(x, t) for x, t in zip(noise, ts)])
    assert out[30:].std() < 0.4 * noise[30:].std()  # jitter at rest mostly removed
    # A fast ramp (300 units/s): without beta the output lags by about v * tau = 48 units,
    # with a speed-driven cutoff only a few.
    ramp = 300.0 * ts[:, None] + noise
    lag = {}
    for beta in (0.0, 1.0):
        f = OneEuroFilter(min_cutoff=1.0, beta=beta)
        out = np.stack([f(x, t) for x, t in zip(ramp, ts)])
        lag[beta] = float(np.abs(out[60:] - 300.0 * ts[60:, None]).mean())
    assert lag[0.0] > 30 and lag[1.0] < 3, lag
    with pytest.raises(ValueError, match="min_cutoff > 0"):
        OneEuroFilter(min_cutoff=0)


def _fake_face(cx, cy, iod=60.0):
    """Landmarks [478, 3]: a point cloud around (cx, cy) with the outer eye corners iod apart."""
    lm = np.random.default_rng(int(cx * 7 + cy)).normal(0, 10, (478, 3)).astype(np.float32)
    lm[:, 0] += cx
    lm[:, 1] += cy
    lm[33, :2] = (cx - iod / 2, cy)
    lm[263, :2] = (cx + iod / 2, cy)
    return lm


def test_face_tracker_continues_ends_and_restarts_tracks():
    tracker = FaceTracker()
    (tid, first, new), = tracker.update([_fake_face(100, 100)], 0.0)
    assert new and np.array_equal(first, _fake_face(100, 100))
    # Moved by 0.1 IOD: the same track, smoothed (between the old and the new position).
    (tid2, smoothed, new2), = tracker.update([_fake_face(106, 100)], 1 / 30)
    assert tid2 == tid and not new2
    assert 100 < smoothed[33, 0] + 30 < 106
    # Lost for a frame: the track ends; the face's return starts a new, unsmoothed one.
    assert tracker.update([], 2 / 30) == []
    (tid3, back, new3), = tracker.update([_fake_face(106, 100)], 3 / 30)
    assert new3 and tid3 != tid and np.array_equal(back, _fake_face(106, 100))
    # A jump of more than max_jump IODs is another face.
    (tid4, _, new4), = tracker.update([_fake_face(300, 100)], 4 / 30)
    assert new4 and tid4 != tid3
    # Two faces keep their own tracks whatever order they come in.
    tracker.update([_fake_face(300, 100), _fake_face(100, 300)], 5 / 30)
    a, b = tracker.update([_fake_face(102, 300), _fake_face(301, 100)], 6 / 30)
    assert a[0] != tid4 and b[0] == tid4 and not a[2] and not b[2]


def test_default_weights_lite_on_cpu_only_where_installed(tmp_path, monkeypatch):
    import fastwarp.realtime.runners as realtime

    monkeypatch.setattr(realtime, "WEIGHTS_DIR", tmp_path)
    assert realtime.default_weights("cpu") == "base"
    (tmp_path / "lite.safetensors").write_bytes(b"")
    assert realtime.default_weights("cpu") == "lite"
    assert realtime.default_weights("cuda") == "base"


def test_live_controls_keys_change_the_edits():
    c = LiveControls([parse_au_edit("AU12=3"), parse_au_edit("AU25=+1")])
    assert c.selected_name == "AU12"
    assert c.handle_key(ord("+")) == "changed" and c.edits() == [("AU12", 3.5, False), ("AU25", 1.0, True)]
    for _ in range(5):
        c.handle_key(ord("+"))
    assert c.edits()[0] == ("AU12", 5.0, False)  # absolute targets stay in 0..5
    assert c.handle_key(ord("]")) == "selected" and c.selected_name == "AU14"
    c.handle_key(ord("-"))  # an AU with no edit yet: a change relative to the face
    assert ("AU14", -0.5, True) in c.edits()
    c.handle_key(ord("0"))
    assert [e[0] for e in c.edits()] == ["AU12", "AU25"]
    c.handle_key(ord("["))
    c.handle_key(ord("["))
    assert c.selected_name == "AU10"
    c.handle_key(ord(" "))
    assert c.edits() == [] and "editing off" in c.describe()
    assert c.handle_key(ord("r")) == "changed"
    assert c.edits() == [("AU12", 3.0, False), ("AU25", 1.0, True)] and c.selected_name == "AU12"
    assert c.handle_key(-1) is None and c.handle_key(ord("x")) is None
    assert c.handle_key(ord("q")) == "quit" and c.handle_key(27) == "quit"


# --- the engine on real video ----------------------------------------------------------------

def _to_tensor(bgr):
    return torch.from_numpy(np.ascontiguousarray(bgr[..., ::-1])).permute(2, 0, 1)[None].double() / 127.5 - 1


def _reference_edit(model, frame, landmarks, side):
    """The pipeline written out with fastwarp.reference (float64): crop, AUs, networks at
    128 px, the face mask folded into the maps, one warp_blend of the frame itself with
    theta (crop transform, then crop -> grid scale), rounded to uint8."""
    crop = align_face(frame, landmarks, side)
    current = estimate_aus(crop.landmarks)
    target = current.copy()
    target[AU_INDEX["AU12"]] = 3.0
    small = cv2.resize(crop.image, (128, 128), interpolation=cv2.INTER_AREA) if side != 128 else crop.image
    ref = EditorNet(model.config).double().eval()
    ref.load_state_dict(model.state_dict())
    ref.warp_backend = "reference"
    with torch.no_grad():
        r = ref(_to_tensor(small), torch.from_numpy(target).double()[None], torch.from_numpy(current).double()[None])
        grid = r.flow.shape[-1]
        k = grid / side  # crop pixel centre u' -> grid u = (u' + 0.5) k - 0.5
        theta = np.concatenate([crop.matrix[:, :2] * k, crop.matrix[:, 2:] * k + 0.5 * k - 0.5], axis=1)
        a = torch.from_numpy(face_mask((crop.landmarks[:, :2] + 0.5) * k - 0.5, grid)).double()[None, None]
        frame_t = torch.from_numpy(frame).double().permute(2, 0, 1)[None]  # BGR 0..255
        out = reference.warp_blend(frame_t, r.flow * a, (r.texture.flip(1) + 1) * 127.5, 1 - a * (1 - r.mask),
                                   theta=torch.from_numpy(theta)[None], mode="bicubic")  # the editor's default taps
    return out[0].permute(1, 2, 0).clamp(0, 255).round().to(torch.uint8).numpy(), crop


@needs_faces
def test_engine_edit_matches_reference_pipeline(tiny_weights):
    frames = _frames(MAIN_VIDEO, 3, step=5)
    with RealtimeEngine(SMILE, str(tiny_weights), "cpu", runtime="torch", smoothing=False) as engine:
        stats, results = _run(engine, frames)
    assert stats.stop == "end" and stats.frames == 3 and stats.faces_edited == 3
    model = EditorNet.load(tiny_weights)
    for frame, r in zip(frames, results):
        (face,) = r.faces
        np.testing.assert_array_equal(face.smoothed, face.landmarks)  # smoothing off
        assert face.crop.size > 128  # the face is larger than the model: sampled from the frame at full detail
        want, crop = _reference_edit(model, frame, face.landmarks, face.crop.size)
        np.testing.assert_allclose(face.crop.matrix, crop.matrix)
        diff = np.abs(r.frame.astype(int) - want.astype(int))
        # float32 kernels against the float64 reference: rounding, one level here and there.
        assert diff.max() <= 2 and (diff > 0).mean() < 0.01, (diff.max(), (diff > 0).mean())
        changed = np.abs(r.frame.astype(int) - frame.astype(int)).max(-1) > 8
        assert changed.mean() > 0.01  # the edit is visible
        outside = ~_face_region(frame.shape, face.landmarks)
        np.testing.assert_array_equal(r.frame[outside], frame[outside])


@needs_faces
def test_runtimes_onnx_and_auto_match_torch(tiny_weights, onnx_cache):
    frames = _frames(MAIN_VIDEO, 6)
    outputs = {}
    for runtime in ("torch", "onnx", "auto"):
        with RealtimeEngine(SMILE, str(tiny_weights), "cpu", runtime=runtime, onnx_cache=onnx_cache,
                            smoothing=False, auto_trial_calls=2) as engine:
            if runtime == "auto":
                assert engine.runtime.runtime == "auto" and engine.network.trial_calls == 2
            stats, results = _run(engine, frames)
        outputs[runtime] = [r.frame for r in results]
        assert stats.runtime in ("torch", "onnx") and stats.frames == 6
        if runtime == "auto":  # torch and onnx in turn on the first 2 faces each, then the faster
            times = engine.network.times
            assert [len(times["torch"]), len(times["onnx"])] == [2, 2]
            ms = stats.runtime_ms
            assert ms == {k: pytest.approx(float(np.median(v))) for k, v in times.items()}
            assert stats.runtime == min(ms, key=ms.get) and f"kept {stats.runtime}" in stats.runtime_reason
        else:
            assert stats.runtime == runtime
    assert list(onnx_cache.glob("*.onnx"))  # exported once, reused by auto
    for runtime in ("onnx", "auto"):
        for a, b in zip(outputs["torch"], outputs[runtime]):
            assert np.abs(a.astype(int) - b.astype(int)).max() <= 2


@needs_faces
def test_stats_cover_every_stage(engine):
    frames = _frames(MAIN_VIDEO, 4)
    stats, _ = _run(engine, frames, max_frames=3)
    assert stats.stop == "max_frames" and stats.frames == 3
    st = stats.stages()
    for stage in ("landmarks", "crop", "model", "blend", "encode", "latency"):
        assert st[stage].count == 3, stage
        assert 0 < st[stage].p50_ms <= st[stage].p95_ms
    assert st["decode"].count >= 3
    assert stats.fps == pytest.approx(3 / stats.wall_s)
    text = stats.format()
    assert re.search(r"^model\s+3\s", text, re.M) and "frames/s" in text
    d = stats.as_dict()
    assert d["frames"] == 3 and d["stages"]["model"]["count"] == 3 and "samples_ms" not in d


@needs_faces
def test_landmark_thread_gives_the_same_frames(engine):
    # The GPU's default: landmarks of frame i+1 overlap the networks of frame i.
    frames = _frames(MAIN_VIDEO, 4, step=3)
    _, inline = _run(engine, frames)
    stats, threaded = _run(engine, frames, landmark_thread=True)
    assert stats.frames == 4 and stats.stage("landmarks").count == 4
    for a, b in zip(inline, threaded):
        np.testing.assert_array_equal(a.frame, b.frame)


@pytest.mark.parametrize("landmark_thread", [False, True])
def test_frame_size_change_stops_the_run_with_its_error(engine, landmark_thread):
    from fastwarp.realtime import FrameSizeError

    frames = [np.full((64, 80, 3), 40, np.uint8)] * 3 + [np.full((64, 96, 3), 40, np.uint8)]
    with pytest.raises(FrameSizeError, match="frame 3 changes size from 80x64 to 96x64"):
        _run(engine, frames, landmark_thread=landmark_thread)


@needs_faces
def test_face_leaving_and_reentering_passes_through_and_restarts_smoothing(engine):
    frames = _frames(MAIN_VIDEO, 9, step=2)
    gone = (3, 4)
    for i in gone:  # the face leaves: only the green-screen background is left
        frames[i] = np.full_like(frames[i], 0) + frames[i][5:6, 5:6]
    stats, results = _run(engine, frames)
    assert stats.frames == 9 and stats.passed_through == 2 and stats.faces_edited == 7
    for i in gone:
        assert not results[i].faces
        np.testing.assert_array_equal(results[i].frame, frames[i])
    tracks = [r.faces[0].track if r.faces else None for r in results]
    new = [r.faces[0].new_track if r.faces else None for r in results]
    assert new == [True, False, False, None, None, True, False, False, False]
    assert len(set(tracks[:3])) == 1 and len(set(tracks[5:])) == 1 and tracks[0] != tracks[5]
    # On a new track the crop uses the detected landmarks as they are; later frames smooth.
    np.testing.assert_array_equal(results[5].faces[0].smoothed, results[5].faces[0].landmarks)
    assert np.abs(results[6].faces[0].smoothed - results[6].faces[0].landmarks).max() > 0.01


@needs_faces
def test_two_faces_largest_or_all(tiny_weights):
    big, small = _frames(MAIN_VIDEO, 3), _frames(OTHER_VIDEO, 3)
    frames = []
    for a, b in zip(big, small):
        canvas = np.zeros((512, 832, 3), np.uint8)
        canvas[:, :512] = a
        canvas[128:384, 544:800] = cv2.resize(b, (256, 256), interpolation=cv2.INTER_AREA)
        frames.append(canvas)
    left, right = np.s_[:, :512], np.s_[:, 544:]
    for all_faces in (False, True):
        with RealtimeEngine(SMILE, str(tiny_weights), "cpu", runtime="torch", all_faces=all_faces) as engine:
            stats, results = _run(engine, frames)
        assert stats.frames == 3
        for frame, r in zip(frames, results):
            assert r.faces_found == 2
            assert len(r.faces) == (2 if all_faces else 1)
            assert r.faces[0].landmarks[:, 0].max() < 512  # the largest first: the big face on the left
            if all_faces:
                assert r.faces[1].landmarks[:, 0].min() > 544
            assert (np.abs(r.frame[left].astype(int) - frame[left].astype(int)) > 8).any()
            right_changed = (np.abs(r.frame[right].astype(int) - frame[right].astype(int)) > 8).any()
            assert right_changed == all_faces
        assert stats.faces == (6 if all_faces else 3)


@needs_faces
def test_camera_disconnect_stops_and_finalises_output(engine, tmp_path):
    frames = _frames(MAIN_VIDEO, 8)
    camera = VideoSource(0, capture=FrameStack(frames, fail_after=5), live=True)
    assert camera.live and camera.name == "camera 0"
    out = tmp_path / "cam.mp4"
    sink = VideoFileSink(out, camera)
    stats = engine.run(camera, [sink])
    sink.close()
    # A live camera's frames are dropped, not queued, while editing is busy (this one
    # delivers them faster than any camera).
    assert stats.stop == "read_failed" and stats.frames >= 1 and stats.frames + stats.dropped == 5
    assert stats.error == "camera 0 stopped delivering frames after 5 frames (disconnected?)"
    written = _video_frames(out)
    assert len(written) == stats.frames and written[0].shape == frames[0].shape


def _truncated_clip(tmp_path):
    """12 real frames in an MJPG .avi cut in half: the container promises more frames than
    can be decoded."""
    path = tmp_path / "clip.avi"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (512, 512))
    for f in _frames(MAIN_VIDEO, 12):
        w.write(f)
    w.release()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@needs_faces
def test_truncated_file_is_a_read_failure_not_an_end(tmp_path):
    path = _truncated_clip(tmp_path)
    with VideoSource(path) as src:
        assert src.frame_count == 12
        n = 0
        with pytest.raises(StreamError, match=r"decoding failed after frame \d+ of the 12 .*truncated or corrupt"):
            while src.read() is not None:
                n += 1
        assert 0 < n < 12


# --- the command line ----------------------------------------------------------------------------

def _one_error_line(capsys, *patterns):
    err = [line for line in capsys.readouterr().err.strip().splitlines() if line.startswith("fastwarp")]
    assert len(err) == 1 and err[0].startswith("fastwarp: error: "), err
    for p in patterns:
        assert re.search(p, err[0]), (p, err[0])
    return err[0]


@needs_faces
def test_webcam_with_a_video_file_as_camera_writes_edited_frames(tiny_weights, tmp_path, capsys, monkeypatch,
                                                                 onnx_cache):
    monkeypatch.setenv("FASTWARP_CACHE_DIR", str(onnx_cache))
    src = VIDEOS / MAIN_VIDEO
    out = tmp_path / "out.mp4"
    rc = main(["webcam", "--camera", str(src), "--au", "AU12=3", "-o", str(out), "--max-frames", "5", "--stats",
               "--weights", str(tiny_weights), "--device", "cpu"])
    captured = capsys.readouterr().out
    assert rc == 0
    assert "5 frames in" in captured and "face edited in 5, passed through unchanged in 0" in captured
    assert re.search(r"^model\s+5\s", captured, re.M) and "runtime:" in captured
    written, inputs = _video_frames(out), _frames(MAIN_VIDEO, 5)
    assert len(written) == 5 and written[0].shape == (512, 512, 3)
    # mp4v is lossy: the edit must stand out against the codec's own error.
    face = np.zeros((512, 512), bool)
    face[150:420, 150:360] = True
    err = [np.abs(w.astype(int) - i.astype(int)).mean(-1) for w, i in zip(written, inputs)]
    assert np.mean([e[face].mean() for e in err]) > 3 * np.mean([e[~face].mean() for e in err])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@needs_faces
def test_video_command_on_truncated_file_keeps_a_valid_partial_output(tiny_weights, tmp_path, capsys):
    clip = _truncated_clip(tmp_path)
    out = tmp_path / "edited.mp4"
    rc = main(["video", str(clip), "--au", "AU12=3", "-o", str(out), "--weights", str(tiny_weights), "--quiet",
               "--device", "cpu"])
    assert rc == 1
    line = _one_error_line(capsys, r"truncated or corrupt", r"frames edited before it are in .*edited\.mp4",
                           r"a valid, shorter video")
    n = int(re.search(r"the (\d+) frames edited", line).group(1))
    assert 0 < n < 12 and len(_video_frames(out)) == n


@needs_faces
def test_truncated_mp4_is_a_clear_error_and_no_output(tmp_path, capsys):
    data = (VIDEOS / MAIN_VIDEO).read_bytes()
    clip = tmp_path / "cut.mp4"
    clip.write_bytes(data[: len(data) * 6 // 10])
    out = tmp_path / "out.mp4"
    for argv in (["webcam", "--camera", str(clip), "--au", "AU12=3"], ["video", str(clip), "--au", "AU12=3"]):
        assert main(argv + ["-o", str(out)]) == 1
        _one_error_line(capsys, r"cannot read video .*cut\.mp4: not a video FFmpeg can read")
        assert not out.exists()


@needs_faces
def test_webcam_camera_disconnect_keeps_what_was_written(tiny_weights, tmp_path, capsys, monkeypatch):
    import fastwarp.realtime.sources as sources

    frames = _frames(MAIN_VIDEO, 6)
    real = sources.cv2.VideoCapture

    def fake_capture(spec, *args):
        return FrameStack(frames, fail_after=4) if spec == 0 else real(spec, *args)

    monkeypatch.setattr(sources.cv2, "VideoCapture", fake_capture)
    out = tmp_path / "cam.mp4"
    rc = main(["webcam", "--au", "AU12=3", "-o", str(out), "--weights", str(tiny_weights), "--runtime", "torch",
               "--device", "cpu"])
    assert rc == 1
    line = _one_error_line(capsys, r"camera 0 stopped delivering frames after 4 frames \(disconnected\?\); the \d+ "
                                   r"frames? edited before it (are|is) in .*cam\.mp4 \(a valid, shorter video\)")
    n = int(re.search(r"the (\d+) frame", line).group(1))
    assert 1 <= n <= 4 and len(_video_frames(out)) == n  # (the rest dropped while editing was busy)


@needs_faces
def test_webcam_show_window_keys_change_the_edits_and_quit(tiny_weights, tmp_path, capsys, monkeypatch):
    # No display here: OpenCV's window calls are replaced by a fake "user" pressing +, then q.
    import fastwarp.realtime as realtime

    shown, keys, set_edits = [], iter([ord("+"), ord("q")]), []
    monkeypatch.setenv("DISPLAY", ":99")
    monkeypatch.setattr(cv2, "namedWindow", lambda *a: None)
    monkeypatch.setattr(cv2, "imshow", lambda name, image: shown.append(image))
    monkeypatch.setattr(cv2, "waitKey", lambda delay: next(keys, -1))
    monkeypatch.setattr(cv2, "getWindowProperty", lambda *a: 1.0)
    monkeypatch.setattr(cv2, "destroyAllWindows", lambda: None)
    original = realtime.RealtimeEngine.set_edits
    monkeypatch.setattr(realtime.RealtimeEngine, "set_edits",
                        lambda self, edits: (set_edits.append(list(edits)), original(self, edits))[1])
    out = tmp_path / "shown.mp4"
    rc = main(["webcam", "--camera", str(VIDEOS / MAIN_VIDEO), "--au", "AU12=3", "--show", "-o", str(out),
               "--weights", str(tiny_weights), "--runtime", "torch", "--device", "cpu"])
    assert rc == 0
    assert LiveControls.HELP in capsys.readouterr().out
    assert set_edits == [[("AU12", 3.5, False)]]
    assert len(shown) == 2 and shown[0].shape == (512, 512, 3)  # q on the second frame stops the run
    assert len(_video_frames(out)) == 2


@pytest.mark.parametrize("args, message", [
    (["--camera", "7", "-o", "{out}"], r"cannot open camera 7"),
    (["--camera", "{missing}", "-o", "{out}"], r"video not found"),
    (["--camera", "{video}", "--virtual-cam"], r"--virtual-cam needs a v4l2loopback video device .*modprobe"),
    (["--camera", "{video}", "--show"], r"--show needs a display"),
    (["--camera", "{video}"], r"nothing to do"),
    (["--camera", "{video}", "--runtime", "fast", "-o", "{out}"], None),
])
def test_webcam_errors(tmp_path, capsys, monkeypatch, args, message):
    import glob

    if "--virtual-cam" in args and glob.glob("/dev/video*"):
        pytest.skip("a video device exists here, so the virtual camera may open")
    video = VIDEOS / MAIN_VIDEO
    if "{video}" in args and not video.is_file():
        pytest.skip(f"real face data not found at {FACES_DIR}")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    out = tmp_path / "out.mp4"
    argv = ["webcam", "--au", "AU12=3"] + [a.format(out=out, missing=tmp_path / "nope.mp4", video=video) for a in args]
    if message is None:  # argparse's own usage error
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
        return
    assert main(argv) == 1
    _one_error_line(capsys, message)
    assert not out.exists()


@pytest.mark.needs_cuda
def test_gpu_runner_float16_cuda_graph_matches_cpu(tiny_weights):
    from fastwarp.realtime import make_network

    model = EditorNet.load(tiny_weights)
    gpu_net, choice = make_network(EditorNet.load(tiny_weights, map_location="cuda"), "torch")  # (auto: TensorRT where installed)
    assert choice.runner == "torch-cuda-graph", choice.reason
    gen = torch.Generator().manual_seed(3)
    for _ in range(2):  # replayed with new inputs
        image = torch.rand(1, 3, 128, 128, generator=gen) * 2 - 1
        target, current = torch.rand(1, 17, generator=gen) * 5, torch.rand(1, 17, generator=gen) * 5
        with torch.no_grad():
            want = model(image, target, current)
        got = gpu_net(image.cuda(), target.cuda(), current.cuda())
        assert got.flow.dtype == torch.float16
        assert got.flow.is_contiguous(memory_format=torch.channels_last)
        for name in ("flow", "texture", "mask"):
            torch.testing.assert_close(getattr(got, name).float().cpu(), getattr(want, name), atol=2e-2, rtol=2e-2)


@pytest.mark.needs_cuda
@needs_faces
def test_gpu_engine_matches_cpu_engine(tiny_weights):
    # float16, channels_last, CUDA graph, landmarks on their own thread: the same edit as
    # the CPU's float32 within half-precision rounding.
    frames = _frames(MAIN_VIDEO, 3, step=4)
    out = {}
    for device in ("cpu", "cuda"):
        with RealtimeEngine(SMILE, str(tiny_weights), device, runtime="torch", smoothing=False) as engine:
            stats, results = _run(engine, frames)
        assert stats.frames == 3 and stats.faces_edited == 3
        out[device] = results
    assert stats.runner == "torch-cuda-graph", stats.runtime_reason
    for a, b in zip(out["cpu"], out["cuda"]):
        diff = np.abs(a.frame.astype(int) - b.frame.astype(int))
        assert np.percentile(diff, 99.9) <= 3 and (diff > 1).mean() < 0.01


@needs_faces
def test_engine_with_mesh_motion_runs_no_network_and_edits_only_inside_the_ring():
    from fastwarp.expression_editor import mesh_weights_installed
    from fastwarp.face.mesh import ring_points

    if not mesh_weights_installed():
        pytest.skip("the mesh-path weights are not installed")
    frames = _frames("lp_d0.mp4", 4, step=5)
    with RealtimeEngine([parse_au_edit("AU12=3")], "lite", "cpu", smoothing=False, max_faces=1) as engine:
        assert engine.runtime.runtime == "mesh" and engine.editor.mesh_motion is not None
        stats, results = _run(engine, frames)
    assert stats.frames == len(frames) and stats.runtime == "mesh"
    for frame, r in zip(frames, results):
        (face,) = r.faces
        ring = np.zeros(frame.shape[:2], np.uint8)
        cv2.fillPoly(ring, [np.round(ring_points(face.landmarks[None, :, :2])[0]).astype(np.int32)], 1)
        outside = ~(cv2.dilate(ring, np.ones((9, 9), np.uint8)) > 0)
        np.testing.assert_array_equal(r.frame[outside], frame[outside])
        assert (np.abs(r.frame.astype(int) - frame).max(-1) > 8).mean() > 0.005  # the smile is visible
    with RealtimeEngine([parse_au_edit("AU12=3")], "lite", "cpu", motion="dense", runtime="torch") as dense:
        assert dense.runtime.runtime == "torch" and dense.editor.mesh_motion is None


# --- runtime selection: TensorRT (issue 13, item 9) ----------------------------------------
# No GPU needed: TensorRT's presence and the GPU are what fastwarp.export.tensorrt sees
# (patched), the device is a torch.device; the engine's build is faked where it would run.

@pytest.fixture
def trt_machine(monkeypatch):
    """Set what fastwarp sees: ``trt_machine(package=..., gpu=...)``."""
    from fastwarp.export import tensorrt as fw_trt

    def set_(*, package: bool, gpu: bool) -> None:
        monkeypatch.setattr(fw_trt, "_has_tensorrt_package", lambda: package)
        monkeypatch.setattr(fw_trt, "_has_cuda_gpu", lambda: gpu)
    return set_


@pytest.mark.parametrize("package", [True, False])
def test_auto_takes_tensorrt_only_on_a_gpu_with_tensorrt(trt_machine, package):
    from fastwarp.realtime.runners import select_runtime

    trt_machine(package=package, gpu=True)
    runtime, why = select_runtime("auto", "cuda")
    assert runtime == ("tensorrt" if package else "torch")
    if not package:
        assert "without TensorRT (the tensorrt Python package missing)" in why
    # The CPU never gets TensorRT, installed or not: auto times torch and ONNX Runtime.
    assert select_runtime("auto", "cpu")[0] == "auto"
    assert select_runtime("torch", "cuda")[0] == "torch" and select_runtime("onnx", "cpu")[0] == "onnx"


@pytest.mark.parametrize("package, gpu, missing", [
    (False, True, "missing here: the tensorrt Python package \\("),
    (True, False, "missing here: a CUDA GPU \\(torch sees none"),
    (False, False, "missing here: the tensorrt Python package and a CUDA GPU"),
])
def test_tensorrt_runtime_names_what_is_missing(trt_machine, package, gpu, missing):
    from fastwarp.export.tensorrt import TensorRTUnavailableError
    from fastwarp.realtime.runners import select_runtime

    trt_machine(package=package, gpu=gpu)
    for device in ("cuda", "cpu"):
        with pytest.raises(TensorRTUnavailableError, match=f"^runtime='tensorrt' needs NVIDIA TensorRT 10 or 11 "
                                                           f"and a CUDA GPU; {missing}") as exc:
            select_runtime("tensorrt", device)
        assert "\n" not in str(exc.value) and "runtime='torch'" in str(exc.value)
    with pytest.raises(TensorRTUnavailableError, match=missing):  # an engine asks for TensorRT too
        select_runtime("auto", "cuda", engine="m.engine")


def test_tensorrt_runtime_argument_errors(trt_machine):
    from fastwarp.realtime.runners import select_runtime

    trt_machine(package=True, gpu=True)
    assert select_runtime("tensorrt", "cuda") == ("tensorrt", "runtime='tensorrt'")
    assert select_runtime("auto", "cuda:0", engine="m.engine")[0] == "tensorrt"
    with pytest.raises(ValueError, match="runtime='tensorrt' runs on a CUDA GPU, but the model is on cpu: "
                                         "use device='cuda'"):
        select_runtime("tensorrt", "cpu")
    with pytest.raises(ValueError, match=r"a TensorRT engine \(m.engine\) runs with runtime='tensorrt', not "
                                         r"runtime='torch'"):
        select_runtime("torch", "cuda", engine="m.engine")
    with pytest.raises(ValueError, match="runtime must be one of auto, torch, onnx, tensorrt, got 'trt'"):
        select_runtime("trt", "cuda")
    with pytest.raises(ValueError, match="runtime='onnx' runs ONNX Runtime on the CPU"):
        select_runtime("onnx", "cuda")


def test_tensorrt_runtime_on_this_machine(tiny_weights):
    # Unpatched: what a user of a machine without TensorRT or a GPU gets, before any work.
    from fastwarp.export.tensorrt import TensorRTUnavailableError, missing_requirements
    from fastwarp.realtime.runners import make_network

    if not missing_requirements():
        pytest.skip("TensorRT and a CUDA GPU are present here: no error to see")
    with pytest.raises(TensorRTUnavailableError, match="^runtime='tensorrt' needs NVIDIA TensorRT 10 or 11"):
        make_network(EditorNet.load(tiny_weights), "tensorrt")
    with pytest.raises(TensorRTUnavailableError, match="^runtime='tensorrt' needs"):
        RealtimeEngine(SMILE, str(tiny_weights), "cpu", runtime="tensorrt", motion="dense")


def test_tensorrt_with_mesh_motion_is_refused(tiny_weights, trt_machine):
    # Mesh motion runs no editor network, so there is nothing for TensorRT to run.
    trt_machine(package=True, gpu=True)
    for kwargs in ({"runtime": "tensorrt"}, {"engine": "m.engine"}):
        with pytest.raises(ValueError, match="^runtime='tensorrt' runs the editor network, which mesh motion does "
                                             "not run: use motion='dense'"):
            RealtimeEngine(SMILE, str(tiny_weights), "cpu", motion="mesh", **kwargs)
    with pytest.raises(ValueError, match="runtime must be one of"):  # checked with mesh motion too
        RealtimeEngine(SMILE, str(tiny_weights), "cpu", motion="mesh", runtime="fast")


@pytest.fixture
def fake_trt_build(monkeypatch):
    """cached_engine with TensorRT's parts faked: version, GPU name, the ONNX export and the
    build (which writes ``engine bytes`` in two writes, or fails after the first with
    ``fail=True``). Returns the list of builds."""
    from fastwarp.export import tensorrt as fw_trt

    builds = []
    state = {"gpu": "NVIDIA H200", "version": "11.4.0.106", "fail": False}

    def build_engine(onnx_file, path, *, max_batch, opt_batch):
        builds.append((Path(onnx_file).name, Path(path), max_batch, opt_batch))
        with open(path, "wb") as f:
            f.write(b"engine ")
            f.flush()
            if state["fail"]:
                raise RuntimeError("TensorRT could not build the engine: out of memory")
            f.write(b"bytes")
        return Path(path)

    def export(path, model=None, *, opset):
        Path(path).write_bytes(b"onnx")
        return Path(path)

    monkeypatch.setattr(fw_trt, "tensorrt_version", lambda: state["version"])
    monkeypatch.setattr(fw_trt, "precision_mode", lambda trt=None: fw_trt.STRONGLY_TYPED)
    monkeypatch.setattr(fw_trt, "export_onnx_fp16", export)
    monkeypatch.setattr(fw_trt, "build_engine", build_engine)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: state["gpu"])
    return builds, state


def test_engine_cache_builds_once_per_key(tiny_weights, tmp_path, fake_trt_build):
    from fastwarp.realtime.runners import _model_digest, cached_engine, engine_cache_name

    builds, state = fake_trt_build
    model = EditorNet.load(tiny_weights)
    path = cached_engine(model, tmp_path)
    digest = _model_digest(model)
    assert path == tmp_path / f"editor-{digest}-nvidia-h200-trt11.4.0.106-s128-b1.1.4-opset18.engine"
    assert path.read_bytes() == b"engine bytes" and len(builds) == 1
    assert builds[0][0] == "editor.onnx" and builds[0][2:] == (4, 1)  # the exported graph, batch 1..4 tuned for 1
    assert cached_engine(model, tmp_path) == path and len(builds) == 1  # reused
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no ONNX or temporary file left
    # Every part of the key builds another engine: GPU, TensorRT version, weights, shapes.
    state["gpu"] = "NVIDIA GeForce RTX 4090"
    assert "nvidia-geforce-rtx-4090" in cached_engine(model, tmp_path).name and len(builds) == 2
    state["version"] = "10.16.1.11"
    assert "-trt10.16.1.11-" in cached_engine(model, tmp_path).name and len(builds) == 3
    with torch.no_grad():
        next(model.parameters()).add_(1e-3)
    assert _model_digest(model) != digest and cached_engine(model, tmp_path).name.startswith(
        f"editor-{_model_digest(model)}-") and len(builds) == 4
    assert "-b1.2.8-" in cached_engine(model, tmp_path, batch=(1, 2, 8)).name and builds[-1][2:] == (8, 2)
    names = {engine_cache_name(digest, "GPU", "11.4", image_size=s, batch=b, opset=o)
             for s, b, o in [(128, (1, 1, 4), 18), (256, (1, 1, 4), 18), (128, (1, 1, 4), 19), (128, (1, 1, 2), 18)]}
    assert len(names) == 4 and len(list(tmp_path.iterdir())) == 5
    with pytest.raises(ValueError, match=r"batch profile must start at 1, got \(2, 2, 4\)"):
        cached_engine(model, tmp_path, batch=(2, 2, 4))


def test_engine_cache_write_is_atomic(tiny_weights, tmp_path, fake_trt_build):
    from fastwarp.realtime.runners import cached_engine

    builds, state = fake_trt_build
    model = EditorNet.load(tiny_weights)
    state["fail"] = True  # the build dies after writing part of the engine
    with pytest.raises(RuntimeError, match="out of memory"):
        cached_engine(model, tmp_path)
    written = builds[0][1]
    assert written.parent == tmp_path and written.name.startswith(".") and ".tmp" in written.name
    assert list(tmp_path.iterdir()) == []  # neither the partial engine nor its temporary file
    state["fail"] = False  # the next start builds it afresh, under its name only when complete
    path = cached_engine(model, tmp_path)
    assert path.read_bytes() == b"engine bytes" and builds[1][1] != path
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_tensorrt_runner_wraps_the_engine_outputs(tiny_weights, monkeypatch):
    # TensorRTNetwork's glue without a GPU: the runner faked, the model's device faked.
    import types

    from fastwarp.export import tensorrt as fw_trt
    from fastwarp.export.tensorrt import EngineOutputs
    from fastwarp.realtime.runners import TensorRTNetwork

    model = EditorNet.load(tiny_weights)
    with pytest.raises(ValueError, match="runtime='tensorrt' runs on a CUDA GPU, but the model is on cpu"):
        TensorRTNetwork(model, engine="m.engine")

    class Runner:
        image_size = 128

        def __init__(self, path, device):
            self.path, self.device = path, device

        def __call__(self, image, aus, source_aus):
            n = image.shape[0]
            return EngineOutputs(image, torch.full((n, 2, 128, 128), 2.0), torch.zeros(n, 3, 128, 128),
                                 torch.ones(n, 1, 128, 128))

    class OnGpu:  # what TensorRTNetwork reads of a model: its device and input side
        config = model.config

        def parameters(self):
            return iter([types.SimpleNamespace(device=torch.device("cuda", 0))])

    monkeypatch.setattr(fw_trt, "TensorRTRunner", Runner)
    net = TensorRTNetwork(OnGpu(), engine="m.engine")
    assert (net.device, net.dtype, net.size, net.path) == (torch.device("cuda", 0), torch.float32, 128, Path("m.engine"))
    maps = net(torch.zeros(1, 3, 128, 128), torch.zeros(1, 17), torch.zeros(1, 17))
    assert isinstance(maps, Maps) and maps.motion is None and float(maps.flow[0, 0, 0, 0]) == 2.0
    assert float(maps.mask.min()) == 1.0 and "TensorRTNetwork(m.engine" in repr(net)
    Runner.image_size = 256
    with pytest.raises(ValueError, match="takes 256 px images, the model 128 px"):
        TensorRTNetwork(OnGpu(), engine="m.engine")


@needs_faces
@pytest.mark.parametrize("args, message", [
    (["--runtime", "tensorrt", "--motion", "mesh"], (r"runtime='tensorrt' runs the editor network, which mesh motion "
                                                    r"does not run: use motion='dense' \(--motion dense\)")),
    (["--runtime", "torch", "--engine", "{tmp}/m.engine", "--motion", "dense"],
     r"a TensorRT engine \(.*m\.engine\) runs with runtime='tensorrt', not runtime='torch'"),
])
def test_cli_tensorrt_runtime_errors(tmp_path, capsys, trt_machine, tiny_weights, args, message):
    trt_machine(package=True, gpu=True)
    out = tmp_path / "out.mp4"
    argv = ["video", str(VIDEOS / MAIN_VIDEO), "--au", "AU12=2", "-o", str(out), "--weights", str(tiny_weights),
            "--device", "cpu"] + [a.format(tmp=tmp_path) for a in args]
    assert main(argv) == 1
    _one_error_line(capsys, message)
    assert not out.exists()


@needs_faces
def test_cli_tensorrt_runtime_without_tensorrt(tmp_path, capsys, trt_machine, tiny_weights):
    trt_machine(package=False, gpu=False)
    out = tmp_path / "out.mp4"
    assert main(["video", str(VIDEOS / MAIN_VIDEO), "--au", "AU12=2", "-o", str(out), "--weights", str(tiny_weights),
                 "--runtime", "tensorrt", "--motion", "dense"]) == 1
    _one_error_line(capsys, r"^fastwarp: error: runtime='tensorrt' needs NVIDIA TensorRT 10 or 11 and a CUDA GPU; "
                            r"missing here: the tensorrt Python package and a CUDA GPU")
    assert not out.exists()
