"""training.edit_metrics: the landmark measures against direct computations on synthetic faces
of known geometry, the bookkeeping of measure_edits and linearity with a scripted editor and
FaceMesh, the real-range statistics on a synthetic mini cache, the tables, the picture sheet
(atomic), the dlib identity distance (where the eval extra is installed), and one end-to-end
run with the bundled "base" weights on real photos."""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from scipy.stats import pearsonr

from fastwarp.au import AU_INDEX, AU_MAX, NUM_AUS, apply_au_edits
from fastwarp.expression_editor import FrameEdit
from fastwarp.face import LEFT_BROW, RIGHT_BROW
from training import edit_metrics as em

REPO = Path(__file__).resolve().parents[1]
LID_PAIRS = ((159, 145), (158, 153), (160, 144), (386, 374), (385, 380), (387, 373))
LIP_PAIRS = ((13, 14), (82, 87), (312, 317))
BROWS = list(LEFT_BROW + RIGHT_BROW)


# --- synthetic faces ---------------------------------------------------------------------------

def _template(seed: int = 0) -> np.ndarray:
    """float64 [478, 2] in the eye-line frame (IOD units, y towards the chin): random
    points, with eye corners, lids, brows, mouth corners and inner lips placed by hand
    (IOD = 1, mouth 0.62 wide, lips 0.04 apart, lids 0.1 apart, brows about 0.25 up)."""
    rng = np.random.default_rng(seed)
    q = np.column_stack([rng.uniform(-0.8, 0.8, 478), rng.uniform(-0.6, 1.4, 478)])
    q[[33, 133, 362, 263]] = [(-0.5, 0.0), (-0.2, 0.0), (0.2, 0.0), (0.5, 0.0)]
    for (u, lo), x in zip(LID_PAIRS, (-0.35, -0.3, -0.4, 0.35, 0.3, 0.4)):
        q[u], q[lo] = (x, -0.05), (x, 0.05)
    q[BROWS, 1] = rng.uniform(-0.3, -0.2, len(BROWS))
    q[61], q[291] = (-0.31, 0.9), (0.31, 0.9)
    for (u, lo), x in zip(LIP_PAIRS, (0.0, -0.1, 0.1)):
        q[u], q[lo] = (x, 0.88), (x, 0.92)
    return q


def _to_pixels(q: np.ndarray, scale: float = 100.0, angle: float = 0.3, shift=(320.0, 240.0)) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return (scale * q @ np.array([[c, s], [-s, c]]) + np.asarray(shift)).astype(np.float64)


def _reference(p: np.ndarray) -> dict[str, float]:
    """The four measures written out from their definitions (pixels in, IOD units out)."""
    iod = np.linalg.norm(p[263] - p[33])
    rc, lc = 0.5 * (p[33] + p[133]), 0.5 * (p[263] + p[362])
    ex = (lc - rc) / np.linalg.norm(lc - rc)
    up = np.array([ex[1], -ex[0]])  # unit normal of the eye line towards the forehead (y down)
    return {
        "mouth_width": np.linalg.norm(p[61] - p[291]) / iod,
        "lip_gap": np.mean([np.linalg.norm(p[a] - p[b]) for a, b in LIP_PAIRS]) / iod,
        "brow_height": np.mean([(p[i] - rc) @ up for i in BROWS]) / iod,
        "eyelid_gap": np.mean([np.linalg.norm(p[a] - p[b]) for a, b in LID_PAIRS]) / iod,
    }


def _smile(q, f):
    q = q.copy()
    mid = 0.5 * (q[61] + q[291])
    q[[61, 291]] = mid + f * (q[[61, 291]] - mid)
    return q


def _open(q, d):
    q = q.copy()
    q[[b for _, b in LIP_PAIRS], 1] += d
    return q


def _brows(q, f):
    q = q.copy()
    q[BROWS, 1] *= f  # the eye line is y = 0: heights scale by f
    return q


def _blink(q, f):
    q = q.copy()
    for u, lo in LID_PAIRS:
        mid = 0.5 * (q[u] + q[lo])
        q[u], q[lo] = mid + f * (q[u] - mid), mid + f * (q[lo] - mid)
    return q


# --- measures ----------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1])
def test_measures_match_their_definitions(seed):
    q = _template(seed)
    p = _to_pixels(q, angle=0.2 * seed - 0.1)
    got, want = em.landmark_measures(p), _reference(p)
    for k in em.MEASURES:
        assert got[k] == pytest.approx(want[k], rel=1e-9), k
    assert got["mouth_width"] == pytest.approx(0.62) and got["lip_gap"] == pytest.approx(0.04)
    assert got["eyelid_gap"] == pytest.approx(0.1)


def test_measures_invariant_to_similarity_transforms():
    q = _template(3)
    base = em.landmark_measures(_to_pixels(q, 1.0, 0.0, (0.0, 0.0)))
    for scale, angle, shift in [(37.0, 0.7, (10.0, -4.0)), (412.5, -0.4, (900.0, 1200.0)), (3.0, 3.0, (0.5, 0.5))]:
        got = em.landmark_measures(_to_pixels(q, scale, angle, shift))
        for k in em.MEASURES:
            assert got[k] == pytest.approx(base[k], rel=1e-9, abs=1e-12), k
    # z is ignored; a batch gives arrays of the single values
    p = _to_pixels(q)
    p3 = np.concatenate([p, np.full((478, 1), 7.0)], axis=1)
    assert em.landmark_measures(p3) == pytest.approx(em.landmark_measures(p))
    batch = em.landmark_measures(np.stack([p, _to_pixels(_smile(q, 1.5))]))
    assert batch["mouth_width"].shape == (2,) and batch["mouth_width"][1] == pytest.approx(1.5 * 0.62)


@pytest.mark.parametrize("edit, change, relative, expected", [
    (_smile, 1.2, True, ("mouth_width", 20.0)),
    (_open, 0.3, False, ("lip_gap", 0.3)),
    (_brows, 1.25, True, ("brow_height", 25.0)),
    (_brows, 0.8, True, ("brow_height", -20.0)),
    (_blink, 0.3, True, ("eyelid_gap", -70.0)),
])
def test_known_edits_give_known_changes(edit, change, relative, expected):
    q = _template(2)
    before = em.landmark_measures(_to_pixels(q))
    after = em.landmark_measures(_to_pixels(edit(q, change), scale=57.0, angle=-0.5))  # other pose: same change
    measure, want = expected
    assert em.measure_change(before[measure], after[measure], relative) == pytest.approx(want, rel=1e-9)
    others = [k for k in em.MEASURES if k != measure]
    for k in others:  # the edit moves only its own measure
        assert after[k] == pytest.approx(before[k], rel=1e-9)


def test_measure_change_units_and_zero():
    assert em.measure_change(0.5, 0.6, True) == pytest.approx(20.0)
    assert em.measure_change(0.5, 0.6, False) == pytest.approx(0.1)
    assert math.isnan(em.measure_change(0.0, 0.1, True))
    assert em.measure_change(0.0, 0.1, False) == pytest.approx(0.1)


def test_measures_reject_bad_landmarks():
    with pytest.raises(ValueError, match="478"):
        em.landmark_measures(np.zeros((68, 2)))
    with pytest.raises(ValueError, match="eye corners"):
        em.landmark_measures(np.zeros((478, 2)))


def test_edit_specs():
    names = [e.name for e in em.FIVE_EDITS]
    assert names == ["smile", "open", "brows_up", "frown", "blink"]
    spec = {e.name: e for e in em.FIVE_EDITS}
    assert spec["open"].au_args == "--au AU25=+2 --au AU26=+2.5"
    assert spec["blink"].au_args == "--au AU45=5"
    assert spec["frown"].direction == -1 and spec["frown"].meets(-12.0) and not spec["frown"].meets(-11.9)
    assert spec["open"].unit == "IOD" and spec["open"].meets(0.25) and not spec["open"].meets(math.nan)


# --- pearson / monotonic -------------------------------------------------------------------------

def test_pearson_against_scipy():
    rng = np.random.default_rng(0)
    x = np.arange(6.0)
    for _ in range(5):
        y = 0.8 * x + rng.normal(0, 0.5, 6)
        assert em.pearson(x, y) == pytest.approx(pearsonr(x, y)[0], rel=1e-12)
    assert em.pearson(x, 2 * x + 1) == pytest.approx(1.0)
    assert em.pearson(x, -x) == pytest.approx(-1.0)
    assert em.pearson(x, np.zeros(6)) == 0.0  # a flat response: the control moves nothing
    y = x.copy()
    y[2] = np.nan
    assert em.pearson(x, y) == pytest.approx(1.0)  # NaN pairs left out
    assert math.isnan(em.pearson([1.0], [2.0])) and math.isnan(em.pearson([1.0, 1.0], [1.0, 2.0]))


def test_is_monotonic():
    assert em.is_monotonic([0, 1, 1, 2])
    assert not em.is_monotonic([0, 1, 0.9, 2])
    assert em.is_monotonic([0, 1, 0.96, 2], tol=0.05)
    assert em.is_monotonic([0, np.nan, 1]) and em.is_monotonic([3.0]) and em.is_monotonic([])


# --- measure_edits and linearity with a scripted editor and FaceMesh ----------------------------------

_CODES = {"AU12": 1, "AU25": 2, "AU01": 3, "AU04": 4, "AU45": 5}
# per photo id: the factor each edit applies to its measure (smile, open, brows, frown, blink)
_EFFECT = {1: (1.2, 0.3, 1.2, 0.9, 0.2), 2: (1.1, 0.1, 1.1, 0.8, None), 3: (1.3, 0.2, 1.0, 0.7, 0.4)}


def _photo(pid: int) -> np.ndarray:
    img = np.zeros((8, 8, 3), np.uint8)
    img[0, 0, 0] = pid
    return img


class ScriptedMesh:
    """FaceMesh stand-in: the face of photo ``img[0, 0, 0]`` (none for unknown ids), moved by
    edit ``img[0, 0, 1]`` (0 = input) per _EFFECT, or by AU level ``img[0, 0, 2] - 10`` (sweeps)."""

    def detect(self, img):
        pid, code, level = int(img[0, 0, 0]), int(img[0, 0, 1]), int(img[0, 0, 2])
        if pid not in _EFFECT:
            return []
        q = _template(pid)
        if code:
            f = _EFFECT[pid][code - 1]
            if f is None:  # the edit lost the face
                return []
            q = (_smile, _open, _brows, _brows, _blink)[code - 1](q, f)
        if level:  # sweep of AU12: the mouth widens with the level
            q = _smile(q, 1.0 + 0.04 * (level - 10))
        p = _to_pixels(q, scale=40.0 + pid)
        return [np.concatenate([p, np.zeros((478, 1))], axis=1).astype(np.float32)]

    def close(self):
        pass


class ScriptedEditor:
    """ExpressionEditor stand-in: marks the output with the edit's code (or the AU12 level)."""

    def __init__(self):
        self.mesh = ScriptedMesh()

    def detect(self, img):
        return self.mesh.detect(img)

    def edit(self, img, edits):
        current = np.zeros(NUM_AUS, np.float32)
        if img[0, 0, 0] == 3:
            current[AU_INDEX["AU12"]] = 4.0  # a face already smiling: +2.5 is clipped to 5
        out = img.copy()
        name, value, relative = edits[0]
        if relative or name == "AU45":
            out[0, 0, 1] = _CODES[name]
        elif name == "AU12":
            out[0, 0, 2] = 10 + int(value)
        target = apply_au_edits(current, edits)
        if img[0, 0, 0] == 2 and any(e[0] == "AU26" for e in edits):
            target[AU_INDEX["AU25"]] = 5.0  # the AU consistency: a jaw drop parts the lips further than asked
        return FrameEdit(frame=out, face_found=bool(self.detect(img)), current_aus=current, target_aus=target)


def test_measure_edits_bookkeeping():
    photos = {"a": _photo(1), "b": _photo(2), "c": _photo(3), "noface": _photo(9)}
    res = em.measure_edits(ScriptedEditor(), photos, mesh=ScriptedMesh(), keep_images=["a"], progress=False)
    assert res["n_photos"] == 4 and res["no_face"] == ["noface"]
    s = res["summary"]
    approx = lambda v: pytest.approx(v, rel=1e-5, abs=1e-5)  # noqa: E731 (float32 landmarks)
    assert s["smile"]["n"] == 3 and s["smile"]["median"] == approx(20.0)
    assert s["smile"]["p25"] == approx(15.0) and s["smile"]["p75"] == approx(25.0)
    assert s["smile"]["median_delta_iod"] == approx(0.2 * 0.62) and s["smile"]["meets"]
    assert s["smile"]["clipped"] == ["c"] and s["smile"]["raised"] == []
    assert s["open"]["raised"] == ["b"] and s["open"]["clipped"] == []  # more than asked is not "clipped"
    assert res["photos"]["c"]["edits"]["smile"]["au_change"] == {"AU12": pytest.approx(1.0)}
    assert s["open"]["median"] == approx(0.2) and not s["open"]["meets"]
    assert s["brows_up"]["median"] == approx(10.0)
    assert s["frown"]["median"] == approx(-20.0) and s["frown"]["meets"]
    # the blink lost photo b's face: reported, not dropped
    assert s["blink"]["lost"] == ["b"] and s["blink"]["n"] == 2
    assert s["blink"]["median"] == approx(-70.0) and s["blink"]["meets"] is (s["blink"]["median"] <= -70.0)
    assert res["photos"]["b"]["edits"]["blink"] == {"face_found": False, "reason": "no face in the edited photo"}
    assert s["smile"]["median_identity"] is None  # no embedder
    row = res["photos"]["a"]["edits"]["smile"]
    assert row["before"] == approx(0.62) and row["after"] == approx(1.2 * 0.62)
    assert set(res["images"]) == {"a"} and set(res["images"]["a"]["outputs"]) == {e.name for e in em.FIVE_EDITS}
    json.dumps(em._jsonable({k: v for k, v in res.items() if k != "images"}), allow_nan=False)


class TwoFaceMesh(ScriptedMesh):
    """Photo 1 with a second, smaller face beside it; in an edited photo the second face comes
    first (MediaPipe's order is not the editor's)."""

    def detect(self, img):
        main = super().detect(img)
        other = main[0].copy()
        other[:, :2] = (other[:, :2] - 320.0) * 0.5 + 900.0  # half the size, far to the right
        other[:, :2] += 3.0 * _template(7)  # another person's shape
        return [other] + main if img[0, 0, 1] or img[0, 0, 2] else main + [other]


def test_measure_edits_follows_the_edited_face_among_several():
    """With two faces, each output is measured on the face the input's largest was (nearest
    centre), not on the face FaceMesh lists first: the same changes as the one-face photo."""
    one = em.measure_edits(ScriptedEditor(), {"a": _photo(1)}, mesh=ScriptedMesh(), progress=False)
    two = em.measure_edits(ScriptedEditor(), {"a": _photo(1)}, mesh=TwoFaceMesh(), progress=False)
    for spec in em.FIVE_EDITS:
        assert two["photos"]["a"]["edits"][spec.name]["change"] == one["photos"]["a"]["edits"][spec.name]["change"]


def test_linearity_bookkeeping():
    photos = {"a": _photo(1), "b": _photo(2), "noface": _photo(9)}
    lin = em.linearity(ScriptedEditor(), photos, ["AU12", "AU04"], mesh=ScriptedMesh(), progress=False)
    assert lin["levels"] == [0, 1, 2, 3, 4, 5] and lin["no_face"] == ["noface"]
    au12 = lin["aus"]["AU12"]
    for name, row in au12["photos"].items():  # against an independent Pearson
        assert row["r"] == pytest.approx(pearsonr(lin["levels"], row["responses"])[0], rel=1e-9)
        assert row["monotonic"]
        # the unclipped reading equals the estimate wherever the estimate is not clipped
        inside = [(a, b) for a, b in zip(row["responses"], row["responses_raw"]) if 0.01 < a < AU_MAX - 0.01]
        assert inside and all(b == pytest.approx(a, abs=1e-4) for a, b in inside)
        assert row["r_raw"] == pytest.approx(pearsonr(lin["levels"], row["responses_raw"])[0], rel=1e-9)
    assert au12["n"] == 2 and au12["r_median"] > 0.95 and au12["meets"] and au12["monotonic_photos"] == 1.0
    assert au12["curve"] == pytest.approx(np.median([r["responses"] for r in au12["photos"].values()], axis=0))
    # the scripted editor ignores AU04: a flat response, r = 0
    assert lin["aus"]["AU04"]["r_median"] == 0.0 and not lin["aus"]["AU04"]["meets"]
    assert lin["aus"]["AU04"]["slope_median"] == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="levels"):
        em.linearity(ScriptedEditor(), photos, ["AU12"], levels=[0, 6], mesh=ScriptedMesh(), progress=False)
    with pytest.raises(ValueError, match="unknown AU"):
        em.linearity(ScriptedEditor(), photos, ["AU99"], mesh=ScriptedMesh(), progress=False)


# --- real ranges ---------------------------------------------------------------------------------

# video -> mouth-corner factors per frame (frame 0 is the input face); lips part by 0.01 per frame
_VIDEOS = {"v_smile": [1.0, 1.1, 1.2, 1.3, 1.25, 1.05], "v_still": [1.0] * 5, "v_some": [1.05, 1.0, 1.1, 1.15]}
# MANIFEST.csv descriptions: only the text before " | " names what a video shows
_NOTES = {"v_smile": "woman; big smile | auto: mouth-width change", "v_still": "talking head | auto: blink/eyes closed",
          "v_some": "man; slight smile, blink"}


def _video_landmarks(factors, seed):
    q = _template(seed)
    return np.stack([_to_pixels(_open(_smile(q, f), 0.1 * (f - 1.0)), scale=50.0, angle=0.1 * i)
                     for i, f in enumerate(factors)]).astype(np.float32)


def _mini_cache(root: Path) -> Path:
    cache = root / "cache"
    cache.mkdir()
    entries = {}
    for seed, (name, factors) in enumerate(_VIDEOS.items()):
        lm = _video_landmarks(factors, seed)
        np.savez(cache / f"{name}.npz", landmarks=lm, frame_idx=np.arange(len(lm), dtype=np.int32))
        entries[name] = {"frames": len(lm), "kind": "video", "source": f"videos/{name}.mp4"}
    np.savez(cache / "img_photo.npz", landmarks=_video_landmarks([2.0], 7))  # a photo entry: not a video
    entries["img_photo"] = {"frames": 1, "kind": "photo", "source": "images/photo.jpg"}
    (cache / "manifest.json").write_text(json.dumps({"videos": entries}))
    faces = root / "faces"
    faces.mkdir()
    with open(faces / "MANIFEST.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "kind", "notes", "identity"])
        for name in _VIDEOS:
            w.writerow([f"videos/{name}.mp4", "video", _NOTES[name], f"person_{name[-1]}"])
    return cache


def test_video_change_neutral_and_percentile():
    spec = {e.name: e for e in em.FIVE_EDITS}
    lm = _video_landmarks(_VIDEOS["v_some"], 0)
    widths = np.array([_reference(p)["mouth_width"] for p in lm.astype(np.float64)])
    change, neutral = em.video_change(lm, spec["smile"])
    assert neutral == 1  # the narrowest, closed mouth: the lowest AU sum
    assert change == pytest.approx(100 * (np.percentile(widths, 95) / widths[1] - 1), rel=1e-6)
    change100, _ = em.video_change(lm, spec["smile"], percentile=100)
    assert change100 == pytest.approx(100 * (widths.max() / widths[1] - 1), rel=1e-6)
    with pytest.raises(ValueError, match="percentile"):
        em.video_change(lm, spec["smile"], percentile=20)


def test_real_ranges_on_a_mini_cache(tmp_path):
    cache = _mini_cache(tmp_path)
    real = em.real_ranges(tmp_path / "faces", cache=cache, progress=False)
    assert real["source"] == "cache" and real["n_videos"] == 3 and set(real["videos"]) == set(_VIDEOS)
    v = real["videos"]["v_smile"]
    assert v["identity"] == "person_e" and v["notes"] == _NOTES["v_smile"] and v["neutral_frame"] == 0
    assert v["frames"] == 6
    want = {}
    for name, factors in _VIDEOS.items():
        f = np.array(factors)
        want[name] = 100 * (np.percentile(f, 95) / f.min() - 1)  # widths scale with the factors
        assert real["videos"][name]["changes"]["smile"] == pytest.approx(want[name], rel=1e-5, abs=1e-3)
    vals = np.array(list(want.values()))
    s = real["edits"]["smile"]
    assert s["n"] == 3 and s["unit"] == "%"
    assert s["median"] == pytest.approx(np.median(vals), rel=1e-5, abs=1e-3)
    assert s["p75"] == pytest.approx(np.percentile(vals, 75), rel=1e-5, abs=1e-3)
    assert s["p90"] == pytest.approx(np.percentile(vals, 90), rel=1e-5, abs=1e-3)
    assert s["max_video"] == "v_smile" and s["max"] == pytest.approx(want["v_smile"], rel=1e-5)
    # the videos whose description names a smile (v_still's says "talking head")
    shows = s["showing"]
    assert shows["videos"] == ["v_smile", "v_some"] and shows["n"] == 2
    assert shows["median"] == pytest.approx(np.median([want["v_smile"], want["v_some"]]), rel=1e-5)
    assert real["edits"]["blink"]["showing"]["videos"] == ["v_some"]  # not v_still: its "blink" is after " | "
    # lip gap opens by 0.1 IOD per unit of factor: an absolute change in IOD
    assert real["videos"]["v_smile"]["changes"]["open"] == pytest.approx(0.1 * (np.percentile(_VIDEOS["v_smile"], 95)
                                                                               - 1.0), rel=1e-4)
    # a decreasing edit: its percentiles are taken on the side it moves to
    frown = np.array([real["videos"][n]["changes"]["frown"] for n in _VIDEOS])
    assert real["edits"]["frown"]["p90"] == pytest.approx(np.percentile(frown, 10), abs=1e-9)
    assert real["edits"]["frown"]["max"] == pytest.approx(frown.min(), abs=1e-9)
    with pytest.raises(ValueError, match="faces_dir or cache"):
        em.real_ranges()
    with pytest.raises(FileNotFoundError, match="manifest.json"):
        em.real_ranges(cache=tmp_path / "faces")


def test_real_ranges_from_a_decoded_video(tmp_path, faces_dir):
    faces = tmp_path / "faces"
    (faces / "videos").mkdir(parents=True)
    name = "dt_M030_happy"
    (faces / "videos" / f"{name}.mp4").symlink_to(faces_dir / "videos" / f"{name}.mp4")
    with open(faces / "MANIFEST.csv", "w", newline="") as f:
        csv.writer(f).writerows([["file", "kind", "notes", "identity"],
                                 [f"videos/{name}.mp4", "video", "happy", "M030"]])
    real = em.real_ranges(faces, frames=4, progress=False)
    assert real["source"] == "videos" and real["n_videos"] == 1
    v = real["videos"][name]
    assert v["identity"] == "M030" and v["frames"] == 4 and all(math.isfinite(c) for c in v["changes"].values())


# --- tables and sheet -----------------------------------------------------------------------------

def _scripted_result():
    photos = {"a": _photo(1), "b": _photo(2), "c": _photo(3), "noface": _photo(9)}
    return em.measure_edits(ScriptedEditor(), photos, mesh=ScriptedMesh(), keep_images=["a", "b"], progress=False)


def test_format_edit_table(tmp_path):
    res = _scripted_result()
    real = em.real_ranges(tmp_path / "faces", cache=_mini_cache(tmp_path), progress=False)
    table = em.format_edit_table(res, real)
    lines = table.splitlines()
    assert lines[0].startswith("| edit | `--au` |") and len(lines[0].split("|")) == len(lines[1].split("|"))
    smile = next(line for line in lines if line.startswith("| smile |"))
    assert "`--au AU12=+2.5`" in smile and "**+20.0 %**" in smile and "≥ +15.0 %" in smile
    assert smile.rstrip().endswith("| yes |") and "v_smile (+" in smile
    opened = next(line for line in lines if line.startswith("| open |"))
    assert "**+0.200**" in opened and "≥ +0.250" in opened and opened.rstrip().endswith("| no |")
    assert "- no face found in 1 of 4 photos: noface" in table
    assert "- blink: face lost in the output of b" in table
    assert "- smile: the AU change was clipped" in table and "photos: c" in table
    assert "- open: an AU moved further than asked" in table and "- open: the AU change was clipped" not in table
    assert "v_smile (+" in smile and "(2) | n/a | yes |" in smile  # 2 videos show a smile; no identity measured
    bare = em.format_edit_table(res).splitlines()
    assert all(row.endswith(("| n/a | n/a | n/a | n/a | yes |", "| n/a | n/a | n/a | n/a | no |"))
               for row in bare[2:7])


def test_format_linearity_and_identity_tables():
    lin = em.linearity(ScriptedEditor(), {"a": _photo(1)}, ["AU12", "AU04"], mesh=ScriptedMesh(), progress=False)
    table = em.format_linearity_table(lin)
    lines = table.splitlines()
    assert "response at 0, 1, 2, 3, 4, 5" in lines[0] and len(lines) == 4
    assert lines[2].startswith("| AU12 | 1 | 1.000 |") or lines[2].startswith("| AU12 | 1 | 0.99")
    assert lines[2].endswith("| yes |") and lines[3].startswith("| AU04 | 1 | 0.000 |") and lines[3].endswith("| no |")
    refs = em.identity_references({"a": np.zeros(128), "b": np.full(128, 0.1), "c": np.ones(128)},
                                  {"a": "x", "b": "x", "c": "y"})
    assert refs["same_person"] == {"n": 1, "median": pytest.approx(math.sqrt(128) * 0.1)}
    assert refs["different_people"]["n"] == 2
    assert refs["different_people"]["median"] == pytest.approx(np.median([math.sqrt(128), math.sqrt(128) * 0.9]))
    text = em.format_identity_references(refs)
    assert "same person, another photo: median 1.131 over 1 photo pairs" in text


def _real_sized(res):
    """The kept images of a scripted result, blown up to a size the sheet can crop faces from."""
    for kept in res["images"].values():
        kept["box"] = (100, 100, 300, 300)
        kept["input"] = np.full((400, 400, 3), 90, np.uint8)
        kept["outputs"] = {k: (None if v is None else np.full((400, 400, 3), 150, np.uint8))
                           for k, v in kept["outputs"].items()}
    return res


def test_write_edit_sheet_from_a_result(tmp_path):
    res = _real_sized(_scripted_result())
    rows = em._sheet_rows(res, None, em.FIVE_EDITS, 6)
    assert [r[0] for r in rows] == ["a", "b"] and rows[1][2]["blink"] == "face lost"  # the mesh lost it
    assert rows[0][2]["smile"] == "+20.0 %" and rows[0][2]["open"] == "+0.300"
    res["images"]["b"]["outputs"]["blink"] = None  # as when the editor finds no face
    path = em.write_edit_sheet(tmp_path / "sheet.jpg", res, cell=96)
    img = cv2.imread(str(path))
    assert img.shape == (em.SHEET_HEADER + 2 * 96, 6 * 96, 3)
    # panels show the images (grey levels 90 / 150), the lost blink of photo b is left dark
    y = em.SHEET_HEADER + 30
    assert abs(int(img[y, 48, 0]) - 90) < 8 and abs(int(img[y, 96 + 48, 0]) - 150) < 8
    assert img[em.SHEET_HEADER + 96 + 10, 5 * 96 + 10].max() < 60
    assert [p.name for p in tmp_path.iterdir()] == ["sheet.jpg"]


def test_write_edit_sheet_from_an_editor(tmp_path):
    photos = {"noface": _photo(9), "a": _photo(1), "b": _photo(2), "c": _photo(3)}
    path = em.write_edit_sheet(tmp_path / "s.png", ScriptedEditor(), photos, n=2, cell=64)
    assert cv2.imread(str(path)).shape == (em.SHEET_HEADER + 2 * 64, 6 * 64, 3)  # first two with a face
    with pytest.raises(ValueError, match="photos are needed"):
        em.write_edit_sheet(tmp_path / "x.png", ScriptedEditor())
    with pytest.raises(ValueError, match="no photo with a face"):
        em.write_edit_sheet(tmp_path / "x.png", ScriptedEditor(), {"noface": _photo(9)})
    with pytest.raises(ValueError, match="keep_images"):
        em.write_edit_sheet(tmp_path / "x.png", {"photos": {}})


def test_write_edit_sheet_is_atomic(tmp_path, monkeypatch):
    res = _real_sized(_scripted_result())
    target = tmp_path / "sheet.jpg"
    target.write_bytes(b"old sheet")

    def failing_imwrite(path, img, params=None):
        Path(path).write_bytes(b"partial")  # a writer that dies half way
        raise OSError("disk full")

    monkeypatch.setattr(em.cv2, "imwrite", failing_imwrite)
    with pytest.raises(OSError, match="disk full"):
        em.write_edit_sheet(target, res)
    assert target.read_bytes() == b"old sheet" and [p.name for p in tmp_path.iterdir()] == ["sheet.jpg"]
    monkeypatch.setattr(em.cv2, "imwrite", lambda *a, **k: False)
    with pytest.raises(OSError, match="could not write"):
        em.write_edit_sheet(tmp_path / "new.jpg", res)
    assert not (tmp_path / "new.jpg").exists() and len(list(tmp_path.iterdir())) == 1


# --- identity (dlib: the eval extra) -----------------------------------------------------------------

def test_runtime_never_imports_dlib():
    # A source check, not an import in a subprocess: that would cost a torch import (seconds).
    imports = re.compile(r"^\s*(import|from)\s+(dlib|face_recognition_models)\b", re.MULTILINE)
    for path in (REPO / "fastwarp").rglob("*.py"):
        assert not imports.search(path.read_text()), f"{path} imports dlib: it is an evaluation extra only"


@pytest.fixture(scope="module")
def embedder():
    pytest.importorskip("dlib", reason="dlib is an evaluation extra: pip install -r requirements-eval.txt")
    if em.importlib.util.find_spec("face_recognition_models") is None:
        pytest.skip("face_recognition_models is an evaluation extra: pip install -r requirements-eval.txt")
    with em.FaceEmbedder() as emb:
        yield emb


def _read(faces_dir, name):
    img = cv2.imread(str(faces_dir / "images" / name))
    assert img is not None, name
    return img


def test_identity_distance(embedder, faces_dir):
    from fastwarp.expression_editor import ExpressionEditor

    obama, obama2, biden = (_read(faces_dir, n) for n in ("fr_obama.jpg", "fr_obama2.jpg", "fr_biden2.jpg"))
    assert em.identity_distance(obama, obama, embedder) == 0.0
    with ExpressionEditor("base", "cpu") as editor:
        edited = editor.edit(obama, [("AU12", 2.5, True), ("AU25", 2.0, True)]).frame
    d_edit = em.identity_distance(obama, edited, embedder)
    d_same_person = em.identity_distance(obama, obama2, embedder)
    d_other = em.identity_distance(obama, biden, embedder)
    assert 0.0 < d_edit < 0.6 < d_other  # dlib's same-person threshold
    assert d_edit < d_other and d_same_person < d_other
    assert math.isnan(em.identity_distance(obama, np.zeros((64, 64, 3), np.uint8), embedder))  # no face
    batch = em.identity_distances([(obama, obama), (obama, biden)], embedder)
    assert batch.shape == (2,) and batch[0] == 0.0 and batch[1] == pytest.approx(d_other)


def test_dlib_box_matches_dlibs_detector(embedder, faces_dir):
    import dlib

    from fastwarp.face import FaceMesh

    img = _read(faces_dir, "st_people_0.png")
    with FaceMesh() as mesh:
        lm = mesh.detect(img)[0]
    x0, y0, x1, y1 = em.dlib_box(lm)
    r = max(dlib.get_frontal_face_detector()(np.ascontiguousarray(img[..., ::-1]), 1), key=lambda r: r.area())
    ix = max(0, min(x1, r.right()) - max(x0, r.left()))
    iy = max(0, min(y1, r.bottom()) - max(y0, r.top()))
    inter = ix * iy
    iou = inter / ((x1 - x0) * (y1 - y0) + r.width() * r.height() - inter)
    assert iou > 0.6


# --- end to end ----------------------------------------------------------------------------------------

@pytest.mark.slow
def test_measure_edits_end_to_end_base_weights(faces_dir):
    from fastwarp.expression_editor import ExpressionEditor

    zero = em.EditSpec("zero", (("AU12", 0.0, True),), "mouth_width", True, 0.0)
    edits = (*em.FIVE_EDITS, zero)
    paths = [faces_dir / "images" / "df_img10.jpg", faces_dir / "images" / "st_people_0.png"]
    with ExpressionEditor("base", "cpu") as editor:
        res = em.measure_edits(editor, paths, edits, progress=False)
    assert res["n_photos"] == 2 and res["no_face"] == []
    for spec in edits:
        s = res["summary"][spec.name]
        assert s["n"] == 2 and s["lost"] == [] and math.isfinite(s["median"]), spec.name
    # the bundled weights return the photo bit for bit for a zero AU change: no landmark moves
    for photo in res["photos"].values():
        row = photo["edits"]["zero"]
        assert row["change"] == 0.0 and row["after"] == row["before"] and row["au_change"] == {"AU12": 0.0}
    assert res["summary"]["blink"]["median"] < 0  # closing the eyes does not open them


@pytest.mark.slow
def test_cli_writes_table_metrics_and_sheet(tmp_path, faces_dir):
    cache = _mini_cache(tmp_path)
    out = tmp_path / "out"
    metrics = em.main(["--faces", str(faces_dir), "--weights", "lite", "--photos", "1", "--cache", str(cache),
                       "--linearity-photos", "1", "--linearity-aus", "AU12", "--sheet-photos", "1",
                       "--no-identity", "--no-progress", "--out", str(out)])
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "sheet.jpg", "table.md"]
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["real"]["n_videos"] == 3 and saved["edits"]["n_photos"] == 1
    assert set(saved["linearity"]["aus"]) == {"AU12"} and metrics["weights"] == "lite"
    table = (out / "table.md").read_text()
    assert "| smile | `--au AU12=+2.5` |" in table and "## Control linearity" in table
    sheet = cv2.imread(str(out / "sheet.jpg"))
    assert sheet.shape == (em.SHEET_HEADER + em.SHEET_CELL, 6 * em.SHEET_CELL, 3)
    with pytest.raises(SystemExit):
        em.main(["--faces", str(tmp_path), "--no-progress"])  # no images folder


def test_evaluate_cli_hook(tmp_path, monkeypatch):
    from training import evaluate as ev

    calls = []
    monkeypatch.setattr(em, "main", lambda argv: calls.append(argv) or {"ok": True})
    got = ev.run_edit_metrics("faces", {"full": Path("runs/full/editor"), "lite": Path("w/lite")}, tmp_path,
                              progress=False)
    assert got == {"full": {"ok": True}, "lite": {"ok": True}}
    assert calls[0] == ["--faces", "faces", "--weights", "runs/full/editor", "--out", str(tmp_path / "edits" / "full"),
                        "--no-progress"]
    with pytest.raises(SystemExit):  # checked before the (long) pair evaluation starts
        ev.main(["--data", str(tmp_path), "--faces", str(tmp_path), "--out", str(tmp_path / "o")])
