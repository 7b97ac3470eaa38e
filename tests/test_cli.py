"""The ``fastwarp`` command end to end on real faces with the bundled default weights."""

import subprocess
import sys

import cv2
import numpy as np
import pytest

from fastwarp.au import AU_INDEX, parse_au_edit
from fastwarp.cli import main
from fastwarp.face import FACE_OVAL, FaceMesh, estimate_aus

# Frontal photos with a closed, non-smiling mouth (MANIFEST.csv: "neutral").
NEUTRAL_PHOTOS = ("images/st_people_0.png", "images/dt_uncut_src_img.jpg", "images/fr_john2.jpeg")


def _landmarks(image):
    with FaceMesh(static_image_mode=True) as mesh:
        faces = mesh.detect(image)
    assert faces, "no face found"
    return faces[0]


def _face_region(image, landmarks, grow):
    """Boolean [H, W]: where an edit may change pixels, dilated by ``grow`` pixels: the
    mesh's fixed ring (the face oval scaled by RING_SCALE about its centroid, beyond which
    the mesh motion's flow is 0) where the mesh path is installed, else the face oval."""
    from fastwarp.expression_editor import mesh_weights_installed
    from fastwarp.face.mesh import ring_points

    region = np.zeros(image.shape[:2], np.uint8)
    outline = (ring_points(landmarks[None, :, :2])[0] if mesh_weights_installed()
               else landmarks[list(FACE_OVAL), :2])
    cv2.fillPoly(region, [np.round(outline).astype(np.int32)], 1)
    return cv2.dilate(region, np.ones((2 * grow + 1, 2 * grow + 1), np.uint8)) > 0


@pytest.mark.slow
@pytest.mark.parametrize("photo", NEUTRAL_PHOTOS)
def test_edit_smile_on_real_photo(faces_dir, tmp_path, photo, capsys):
    src = faces_dir / photo
    out = tmp_path / "smile.png"
    assert main(["edit", str(src), "--au", "AU12=3", "--au", "AU25=1", "-o", str(out), "--device", "cpu"]) == 0
    assert str(out) in capsys.readouterr().out
    before, after = cv2.imread(str(src)), cv2.imread(str(out))
    assert after.shape == before.shape

    lm_before = _landmarks(before)
    face = _face_region(before, lm_before, grow=3)
    # Outside the face (with a 3 px margin for the oval's rasterisation) not one pixel changes.
    np.testing.assert_array_equal(after[~face], before[~face])
    diff = np.abs(after.astype(np.int16) - before.astype(np.int16)).max(-1)
    assert (diff[face] > 8).mean() > 0.01, "the face region did not change"

    # The smile request moves the estimated AU12 (lip-corner puller) up.
    au_before = estimate_aus(lm_before)[AU_INDEX["AU12"]]
    au_after = estimate_aus(_landmarks(after))[AU_INDEX["AU12"]]
    print(f"{photo}: AU12 {au_before:.2f} -> {au_after:.2f} (requested 3)")
    assert au_after > au_before + 0.25


@pytest.mark.slow
def test_edit_writes_side_by_side(faces_dir, tmp_path):
    out, cmp_ = tmp_path / "o.jpg", tmp_path / "cmp.png"
    src = faces_dir / NEUTRAL_PHOTOS[0]
    assert main(["edit", str(src), "--au", "AU12=+2", "-o", str(out), "--side-by-side", str(cmp_)]) == 0
    h, w = cv2.imread(str(src)).shape[:2]
    assert cv2.imread(str(cmp_)).shape == (h + 28, 2 * w, 3)


@pytest.mark.slow
@pytest.mark.parametrize("edit", ["AU12=+0", "AU04=+0"])
def test_edit_that_changes_no_au_writes_the_input(faces_dir, tmp_path, capsys, edit):
    src = faces_dir / NEUTRAL_PHOTOS[0]
    out = tmp_path / "same.png"
    assert main(["edit", str(src), "--au", edit, "-o", str(out), "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    assert "no AU changed" in text and str(out.resolve()) in text
    np.testing.assert_array_equal(cv2.imread(str(out)), cv2.imread(str(src)))


@pytest.mark.parametrize("args, message", [
    (["edit", "{missing}", "--au", "AU12=3"], "image not found"),
    (["edit", "{photo}", "--au", "AU99=3"], "unknown AU 'AU99'"),
    (["edit", "{photo}", "--au", "AU12=9"], r"must be in 0\.\.5, got 9"),
    (["edit", "{photo}"], "no edit requested"),
    (["edit", "{not_image}", "--au", "AU12=3"], "cannot read image"),
    (["edit", "{blank}", "--au", "AU12=3"], "no face found"),
    (["edit", "{photo}", "--au", "AU12=3", "--side-by-side", "{tmp}/cmp.xyz"], "cannot write images of type"),
    (["video", "{missing}", "--au", "AU12=3"], "video not found"),
    (["video", "{not_image}", "--au", "AU12=3"], "cannot read video"),
])
def test_errors_one_line_nonzero_no_output(faces_dir, tmp_path, capsys, args, message):
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((200, 200, 3), 127, np.uint8))
    not_image = tmp_path / "notes.mp4"
    not_image.write_bytes(b"this is not a video or an image" * 100)
    values = dict(missing=tmp_path / "nope.png", photo=faces_dir / NEUTRAL_PHOTOS[0], not_image=not_image,
                  blank=blank, tmp=tmp_path)
    out = tmp_path / ("out.mp4" if args[0] == "video" else "out.png")
    argv = [a.format(**values) for a in args] + ["-o", str(out)]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fastwarp: error: ")
    assert pytest.importorskip("re").search(message, err[0])
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp file left behind


@pytest.mark.slow
def test_video_progress_fps_and_passthrough(faces_dir, tmp_path, capsys):
    src = faces_dir / "videos" / "lp_d0.mp4"
    cap = cv2.VideoCapture(str(src))
    frames = [cap.read()[1] for _ in range(6)]
    cap.release()
    # A frame with no face in the middle of the clip must pass through and the run go on.
    frames[3] = np.full_like(frames[0], 90)
    clip = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 25, frames[0].shape[1::-1])
    for f in frames:
        writer.write(f)
    writer.release()

    out = tmp_path / "edited.mp4"
    assert main(["video", str(clip), "--au", "AU12=3", "-o", str(out), "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    assert "6 frames in" in captured.out and "frames/s" in captured.out
    assert "face edited in 5, passed through unchanged in 1" in captured.out
    assert "fastwarp video" in captured.err  # the tqdm progress bar
    cap = cv2.VideoCapture(str(out))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 6
    ok, first = cap.read()
    cap.release()
    assert ok and first.shape == frames[0].shape


@pytest.mark.slow
def test_editor_passes_faceless_frame_through_exactly():
    from fastwarp import ExpressionEditor

    frame = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    with ExpressionEditor(device="cpu") as editor:
        result = editor.edit(frame, [parse_au_edit("AU12=3")])
    assert not result.face_found
    np.testing.assert_array_equal(result.frame, frame)
    assert result.frame is not frame


def test_console_script_entry_point(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "fastwarp.cli", "edit", str(tmp_path / "x.png"), "--au", "AU12=3",
                           "-o", str(tmp_path / "y.png")], capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"fastwarp: error: image not found: {tmp_path / 'x.png'}"
    info = subprocess.run([sys.executable, "-m", "fastwarp.cli", "info"], capture_output=True, text=True)
    assert info.returncode == 0 and "backends: cpu=yes" in info.stdout


def test_info_names_the_weights_and_the_default_motion(capsys):
    from fastwarp.expression_editor import mesh_weights_installed

    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "bundled weights 'base'" in out
    assert ("mesh motion: installed" in out) == mesh_weights_installed()
    assert f"the default motion is {'mesh' if mesh_weights_installed() else 'dense'}" in out


def _mouth_widths(image, n):
    """Mouth width (inter-ocular units, training/edit_metrics.py) of the ``n`` faces of
    ``image``, left to right."""
    from training.edit_metrics import landmark_measures

    with FaceMesh(static_image_mode=True, max_faces=n) as mesh:
        faces = mesh.detect(image)
    assert len(faces) == n, f"found {len(faces)} faces, expected {n}"
    return [landmark_measures(lm)["mouth_width"] for lm in sorted(faces, key=lambda lm: lm[:, 0].mean())]


@pytest.mark.slow
def test_edit_all_faces_widens_every_mouth_as_much_as_each_alone(faces_dir, tmp_path, capsys):
    """A two-person photo (two real photos side by side): --all-faces smiles both faces, each
    by about what editing its own photo gives; without it only one face changes."""
    from test_editor import two_person_photo

    left, right = two_person_photo()
    paths = {name: tmp_path / f"{name}.png" for name in ("both", "left", "right")}
    for name, image in (("both", np.hstack([left, right])), ("left", left), ("right", right)):
        cv2.imwrite(str(paths[name]), image)
    runs = {"all": (paths["both"], ["--all-faces"]), "one": (paths["both"], []),
            "left": (paths["left"], []), "right": (paths["right"], [])}
    out = {}
    for name, (src, extra) in runs.items():
        out[name] = tmp_path / f"out_{name}.png"
        assert main(["edit", str(src), "--au", "AU12=+2", "-o", str(out[name]), "--device", "cpu", *extra]) == 0
        text = capsys.readouterr().out
        if name == "all":  # one line per face
            assert [line.startswith(f"edited {src}, face {i} of 2 (at x=") for i, line in
                    enumerate(text.splitlines()[:2], 1)] == [True, True], text
    read = lambda name: cv2.imread(str(name))  # noqa: E731
    w = left.shape[1]
    # Each face measured in its own half (MediaPipe reads a face in a wider image a little
    # differently, so the alone edits are measured the same way: on their own photos).
    before = [_mouth_widths(read(paths[s]), 1)[0] for s in ("left", "right")]
    every = [_mouth_widths(half, 1)[0] for half in (read(out["all"])[:, :w], read(out["all"])[:, w:])]
    alone = [_mouth_widths(read(out[s]), 1)[0] / b for s, b in zip(("left", "right"), before)]
    gains = [a / b for a, b in zip(every, before)]
    print(f"mouth width x{gains[0]:.3f}, x{gains[1]:.3f} with --all-faces; alone x{alone[0]:.3f}, x{alone[1]:.3f}")
    for g, a in zip(gains, alone):
        assert g > 1.03 and a > 1.03
        assert abs(g - a) < 0.25 * (a - 1), (gains, alone)  # a similar widening: within a quarter of it
    one = read(out["one"])
    both = read(paths["both"])
    assert sorted([np.array_equal(one[:, :w], both[:, :w]), np.array_equal(one[:, w:], both[:, w:])]) == [False, True]
