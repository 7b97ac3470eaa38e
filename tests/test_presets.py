"""Expression presets (fastwarp.presets): parsing, the target formula, their order with AU
edits on the command line, the vocabulary's validity, and on real photos that a preset at
intensity 0 is the identity and that ``--expr smile=1`` / ``--expr blink=1`` move the face's
landmarks the right way (docs/presets.md)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from fastwarp.au import AU_INDEX, AU_MAX, AU_NAMES, apply_au_edits, parse_au_edit
from fastwarp.cli import _edits, build_parser, main
from fastwarp.face import VISIBLE_AUS
from fastwarp.presets import PRESETS, ExprEdit, parse_expr_edit, preset_target

# A face's current AUs: distinct values, so a mix-up of indices shows.
CURRENT = np.linspace(0.3, 4.1, len(AU_NAMES)).astype(np.float32)
REQUIRED = ("smile", "grin", "laugh", "open", "aaa", "eee", "ooo", "pout", "press", "blink", "brows_up",
            "frown", "sad", "happy", "surprise", "fear", "anger", "disgust", "neutral")
EMOTIONS = ("happy", "sad", "surprise", "fear", "anger", "disgust")


def _hand(current: np.ndarray, au: str, full: float, s: float) -> float:
    """The documented formula, written out: current + s * (full - current)."""
    c = float(current[AU_INDEX[au]])
    return c + s * (full - c)


# --- parsing ---------------------------------------------------------------------------------

@pytest.mark.parametrize("spec, expected", [
    ("smile=0.8", ("smile", 0.8)), ("smile", ("smile", 1.0)), (" Smile = 0.25 ", ("smile", 0.25)),
    ("brows-up=0.5", ("brows_up", 0.5)), ("blink=1", ("blink", 1.0)), ("neutral=0", ("neutral", 0.0)),
    ("laugh=.5", ("laugh", 0.5)),
])
def test_parse_expr_edit(spec, expected):
    edit = parse_expr_edit(spec)
    assert isinstance(edit, ExprEdit) and tuple(edit) == expected


@pytest.mark.parametrize("spec, match", [
    ("smil=0.5", r"unknown expression 'smil'; expected one of smile, grin, laugh"),
    ("AU12=3", r"unknown expression 'AU12'"),
    ("smile=1.5", r"intensity for smile must be in 0\.\.1, got 1\.5"),
    ("smile=-0.1", r"must be in 0\.\.1, got -0\.1"),
    ("smile=nan", r"must be in 0\.\.1"),
    ("smile=lots", r"must be a number in 0\.\.1, got 'lots'"),
    ("smile=", r"intensity for smile is missing"),
    ("=0.5", r"malformed expression edit"),
])
def test_parse_expr_edit_errors_are_one_line(spec, match):
    with pytest.raises(ValueError, match=match) as info:
        parse_expr_edit(spec)
    assert "\n" not in str(info.value)


def test_unknown_name_error_lists_every_preset():
    with pytest.raises(ValueError) as info:
        parse_expr_edit("wink=1")
    assert all(name in str(info.value) for name in PRESETS)


# --- the vocabulary --------------------------------------------------------------------------

def test_the_vocabulary_has_every_required_name():
    assert set(REQUIRED) <= set(PRESETS)
    assert all(key == p.name for key, p in PRESETS.items())


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_names_only_visible_aus_in_range(name):
    p = PRESETS[name]
    assert p.aus, name
    for au, value in p.aus.items():
        assert au in AU_NAMES and au in VISIBLE_AUS, (name, au)
        assert 0.0 <= value <= AU_MAX, (name, au, value)
    assert p.description and "\n" not in p.description


def test_emotions_cite_their_source_and_neutral_rests_every_visible_au():
    for name in EMOTIONS:
        assert "EMFACS" in PRESETS[name].source and "2002" in PRESETS[name].source, name
    assert dict(PRESETS["neutral"].aus) == {au: 0.0 for au in VISIBLE_AUS}
    # The prototypes' AUs that the estimator sees (Ekman, Friesen & Hager 2002).
    assert {"AU06", "AU12"} <= set(PRESETS["happy"].aus)
    assert {"AU01", "AU04", "AU15"} <= set(PRESETS["sad"].aus)
    assert {"AU01", "AU02", "AU05", "AU26"} <= set(PRESETS["surprise"].aus)
    assert {"AU01", "AU02", "AU04", "AU05", "AU20"} <= set(PRESETS["fear"].aus)
    assert {"AU04", "AU05", "AU07", "AU23"} <= set(PRESETS["anger"].aus)
    assert {"AU10", "AU17"} <= set(PRESETS["disgust"].aus)


def test_docs_table_matches_the_presets():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "presets.md").read_text()
    for name, p in PRESETS.items():
        row = next((line for line in text.splitlines() if line.startswith(f"| `{name}` |")), None)
        assert row is not None, name
        if name != "neutral":
            assert row.split("|")[2].strip() == ", ".join(f"{au} {v:g}" for au, v in p.aus.items()), row


def test_presets_are_frozen():
    with pytest.raises(TypeError):
        PRESETS["smile"].aus["AU12"] = 0.0  # type: ignore[index]


# --- the target formula and the order of edits ----------------------------------------------

@pytest.mark.parametrize("name", list(PRESETS))
@pytest.mark.parametrize("s", [0.0, 0.3, 1.0])
def test_preset_target_is_the_documented_formula(name, s):
    full = dict(PRESETS[name].aus)
    target = preset_target(CURRENT, name, s)
    assert target.dtype == np.float32 and target.shape == (len(AU_NAMES),)
    for au in AU_NAMES:
        want = _hand(CURRENT, au, full[au], s) if au in full else float(CURRENT[AU_INDEX[au]])
        assert target[AU_INDEX[au]] == pytest.approx(want, abs=1e-5), (name, s, au)
    if s == 0.0:
        assert np.array_equal(target, CURRENT)  # exactly: intensity 0 changes nothing
        assert np.array_equal(apply_au_edits(CURRENT, [ExprEdit(name, 0.0)]), CURRENT)


def test_preset_target_errors():
    with pytest.raises(ValueError, match="unknown expression"):
        preset_target(CURRENT, "nope", 0.5)
    with pytest.raises(ValueError, match=r"in 0\.\.1"):
        preset_target(CURRENT, "smile", 1.01)
    with pytest.raises(ValueError, match=r"shape \(17,\)"):
        preset_target(CURRENT[:5], "smile", 0.5)


def test_mixed_edits_later_items_win():
    smile = dict(PRESETS["smile"].aus)
    i12, i06, i01 = AU_INDEX["AU12"], AU_INDEX["AU06"], AU_INDEX["AU01"]
    # --expr smile=0.8 --au AU12=2: the AU edit comes later and wins on AU12.
    t = apply_au_edits(CURRENT, [ExprEdit("smile", 0.8), ("AU12", 2.0, False)])
    assert t[i12] == pytest.approx(2.0)
    assert t[i06] == pytest.approx(_hand(CURRENT, "AU06", smile["AU06"], 0.8))
    # The reverse order: the smile's AU12, from the face's current value (not from 2).
    t = apply_au_edits(CURRENT, [("AU12", 2.0, False), ExprEdit("smile", 0.8)])
    assert t[i12] == pytest.approx(_hand(CURRENT, "AU12", smile["AU12"], 0.8))
    # AUs a preset does not name keep what earlier items set; a relative edit after a preset
    # adds to the preset's value.
    t = apply_au_edits(CURRENT, [("AU01", 3.0, False), ExprEdit("smile", 1.0), ("AU12", -1.0, True)])
    assert t[i01] == pytest.approx(3.0)
    assert t[i12] == pytest.approx(smile["AU12"] - 1.0)
    # Two presets naming the same AU: the later one's.
    t = apply_au_edits(CURRENT, [ExprEdit("smile", 1.0), ExprEdit("neutral", 1.0)])
    assert np.all(t[[AU_INDEX[a] for a in VISIBLE_AUS]] == 0.0)
    untouched = [AU_INDEX[a] for a in AU_NAMES if a not in VISIBLE_AUS]
    assert np.array_equal(t[untouched], CURRENT[untouched])


@pytest.mark.parametrize("command", [["edit", "in.png", "-o", "o.png"], ["video", "in.mp4", "-o", "o.mp4"],
                                     ["webcam"]])
def test_command_line_keeps_the_order_of_au_and_expr(command):
    smile12 = _hand(CURRENT, "AU12", PRESETS["smile"].aus["AU12"], 0.8)
    parser = build_parser()
    first = _edits(parser.parse_args(command + ["--expr", "smile=0.8", "--au", "AU12=2", "--expr", "brows_up=0.5"])
                   .edits)
    assert first == [ExprEdit("smile", 0.8), parse_au_edit("AU12=2"), ExprEdit("brows_up", 0.5)]
    assert apply_au_edits(CURRENT, first)[AU_INDEX["AU12"]] == pytest.approx(2.0)
    second = _edits(parser.parse_args(command + ["--au", "AU12=2", "--expr", "smile=0.8"]).edits)
    assert apply_au_edits(CURRENT, second)[AU_INDEX["AU12"]] == pytest.approx(smile12)


def test_cli_errors_for_expr_are_one_line(capsys):
    assert main(["edit", "in.png", "-o", "o.png", "--expr", "smirk=1"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("fastwarp: error: unknown expression 'smirk'") and err.count("\n") == 1
    assert main(["edit", "in.png", "-o", "o.png"]) == 1
    assert "--expr" in capsys.readouterr().err


def test_presets_command_lists_every_preset(capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    for name, p in PRESETS.items():
        row = next((line for line in lines if line.split(" ", 1)[0] == name), None)
        assert row is not None, name
        assert p.description in row
        if name != "neutral":
            assert all(f"{au}={v:g}" in row for au, v in p.aus.items()), row
    for words in ("gaze", "head pose", "wink", "bilateral"):
        assert words in out


# --- real photos -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def base_editor():
    from fastwarp import ExpressionEditor

    with ExpressionEditor("base", "cpu") as e:
        yield e


@pytest.mark.slow
@pytest.mark.parametrize("photo", ["st_people_0.png", "fr_obama.jpg", "lp_s2.jpg"])
def test_intensity_zero_returns_the_photo_bit_for_bit(faces_dir, base_editor, photo):
    image = cv2.imread(str(faces_dir / "images" / photo), cv2.IMREAD_COLOR)
    for name in ("smile", "blink", "surprise", "neutral"):
        r = base_editor.edit(image, [ExprEdit(name, 0.0)])
        assert r.face_found
        assert np.array_equal(r.target_aus, r.current_aus), name
        assert np.array_equal(r.frame, image), (photo, name, int(np.abs(r.frame.astype(int) - image).max()))


def _measures(image):
    from fastwarp.face import FaceMesh
    from training.edit_metrics import landmark_measures

    with FaceMesh(static_image_mode=True) as mesh:
        faces = mesh.detect(image)
    assert faces, "no face found"
    return landmark_measures(faces[0])


@pytest.mark.slow
@pytest.mark.parametrize("photo", ["st_people_0.png", "dt_uncut_src_img.jpg"])
def test_smile_widens_the_mouth_and_blink_closes_the_eyes(faces_dir, tmp_path, photo, capsys):
    """``fastwarp edit --expr smile=1`` / ``--expr blink=1`` on neutral photos, measured with
    an independent FaceMesh on the output: the direction, with a generous margin (over all
    photos of the face set, with the base weights, the medians are +15 % mouth width and -46 %
    eyelid gap)."""
    src = faces_dir / "images" / photo
    before = _measures(cv2.imread(str(src)))
    out = {}
    for name in ("smile", "blink"):
        out[name] = tmp_path / f"{name}.png"
        assert main(["edit", str(src), "--expr", f"{name}=1", "-o", str(out[name]), "--device", "cpu"]) == 0
    assert "AU12" in capsys.readouterr().out
    smile, blink = _measures(cv2.imread(str(out["smile"]))), _measures(cv2.imread(str(out["blink"])))
    assert smile["mouth_width"] > 1.03 * before["mouth_width"], (before, smile)
    assert blink["eyelid_gap"] < 0.8 * before["eyelid_gap"], (before, blink)
