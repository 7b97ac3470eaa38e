"""AU names, ``--au`` parsing and target vectors (fastwarp.au)."""

import numpy as np
import pytest

from fastwarp.au import AU_NAMES, apply_au_edits, au_vector, normalize_au_name, parse_au_edit


def test_au_order_is_openface():
    assert AU_NAMES == ("AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU09", "AU10", "AU12", "AU14", "AU15",
                        "AU17", "AU20", "AU23", "AU25", "AU26", "AU45")


@pytest.mark.parametrize("spec, expected", [
    ("AU12=3", ("AU12", 3.0, False)),
    ("au12=3", ("AU12", 3.0, False)),
    ("12=3", ("AU12", 3.0, False)),
    ("AU1=2.5", ("AU01", 2.5, False)),
    ("AU12=+2", ("AU12", 2.0, True)),
    ("AU45=-1.5", ("AU45", -1.5, True)),
    ("AU25=0", ("AU25", 0.0, False)),
    ("AU25=5", ("AU25", 5.0, False)),
])
def test_parse_au_edit(spec, expected):
    assert parse_au_edit(spec) == expected


@pytest.mark.parametrize("spec, match", [
    ("AU99=1", "unknown AU 'AU99'"),
    ("AU13=1", "unknown AU"),
    ("AU12=6", r"must be in 0\.\.5, got 6"),
    ("AU12=+6", r"relative AU change for AU12 must be in -5\.\.\+5, got \+6"),
    ("AU12", "malformed AU edit"),
    ("AU12=abc", "malformed AU edit"),
    ("=3", "malformed AU edit"),
])
def test_parse_au_edit_rejects(spec, match):
    with pytest.raises(ValueError, match=match):
        parse_au_edit(spec)


def test_apply_au_edits_absolute_relative_and_clipping():
    current = np.zeros(17, np.float32)
    current[AU_NAMES.index("AU12")] = 1.0
    current[AU_NAMES.index("AU45")] = 4.0
    target = apply_au_edits(current, [parse_au_edit("AU12=+2"), parse_au_edit("AU25=1"),
                                      parse_au_edit("AU45=+3")])
    assert target[AU_NAMES.index("AU12")] == 3.0
    assert target[AU_NAMES.index("AU25")] == 1.0
    assert target[AU_NAMES.index("AU45")] == 5.0  # clipped to the AU range
    untouched = [i for i, n in enumerate(AU_NAMES) if n not in ("AU12", "AU25", "AU45")]
    np.testing.assert_array_equal(target[untouched], current[untouched])
    assert current[AU_NAMES.index("AU12")] == 1.0  # input not modified


def test_apply_au_edits_checks_shape_and_au_vector():
    with pytest.raises(ValueError, match=r"shape \(17,\)"):
        apply_au_edits(np.zeros(5), [])
    v = au_vector({"AU12": 3, "au25": 1})
    assert v.shape == (17,) and v.sum() == 4 and v[AU_NAMES.index("AU25")] == 1
    assert normalize_au_name("6") == "AU06"


def test_clamped_edits_names_each_target_beyond_the_trained_range():
    from fastwarp.au import AU_INDEX, clamped_edits

    cur = np.zeros(17, np.float32)
    cur[AU_INDEX["AU12"]] = 4.1
    notes = clamped_edits(cur, [("AU12", 2.5, True), ("AU01", -1.0, True), ("AU04", 3.0, False), ("AU12", 0.5, True)])
    assert notes == ["AU12: 4.1 +2.5 is beyond 0..5, clamped to 5", "AU01: 0.0 -1 is beyond 0..5, clamped to 0"]
    assert clamped_edits(cur, [("AU25", 2.0, True)]) == []
