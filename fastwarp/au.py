"""Facial Action Units: the 17 OpenFace intensity AUs fastwarp conditions on.

The order is OpenFace's (and GANimation's ``aus_openface.pkl``); every AU vector in
fastwarp is a float array of shape ``[17]`` (or ``[N, 17]``) in this order, intensities
0..5. Networks see ``intensity / 5``.
"""

from __future__ import annotations

import re
from typing import Iterable, Mapping, Sequence

import numpy as np

AU_NAMES: tuple[str, ...] = (
    "AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU09", "AU10", "AU12",
    "AU14", "AU15", "AU17", "AU20", "AU23", "AU25", "AU26", "AU45",
)
NUM_AUS = len(AU_NAMES)
AU_INDEX: dict[str, int] = {name: i for i, name in enumerate(AU_NAMES)}
AU_MAX = 5.0

AU_DESCRIPTIONS: dict[str, str] = {
    "AU01": "inner brow raiser", "AU02": "outer brow raiser", "AU04": "brow lowerer",
    "AU05": "upper lid raiser", "AU06": "cheek raiser", "AU07": "lid tightener",
    "AU09": "nose wrinkler", "AU10": "upper lip raiser", "AU12": "lip corner puller",
    "AU14": "dimpler", "AU15": "lip corner depressor", "AU17": "chin raiser",
    "AU20": "lip stretcher", "AU23": "lip tightener", "AU25": "lips part",
    "AU26": "jaw drop", "AU45": "blink",
}

_SPEC = re.compile(r"^\s*(AU)?0*(\d{1,2})\s*=\s*([+-]?)\s*(\d+(?:\.\d*)?|\.\d+)\s*$", re.IGNORECASE)


def normalize_au_name(name: str) -> str:
    """Return the canonical name (``"AU12"``) for ``"AU12"``, ``"au12"``, ``"12"``.

    Raises:
        ValueError: the name is not one of the 17 AUs in :data:`AU_NAMES`.
    """
    m = re.fullmatch(r"\s*(?:AU)?0*(\d{1,2})\s*", name, re.IGNORECASE)
    canon = f"AU{int(m.group(1)):02d}" if m else name
    if canon not in AU_INDEX:
        raise ValueError(f"unknown AU {name!r}; expected one of {', '.join(AU_NAMES)}")
    return canon


def parse_au_edit(spec: str) -> tuple[str, float, bool]:
    """Parse one ``--au`` argument.

    ``"AU12=3"`` sets AU12 to intensity 3 (absolute); ``"AU12=+2"`` / ``"AU12=-1"`` add to
    the face's current estimate (relative).

    Returns:
        ``(name, value, relative)``.
    Raises:
        ValueError: malformed spec, unknown AU, or an absolute intensity outside 0..5
            (relative deltas must lie in -5..5).
    """
    m = _SPEC.match(spec)
    if not m:
        raise ValueError(f"malformed AU edit {spec!r}; expected NAME=VALUE such as AU12=3 or AU12=+2")
    name = normalize_au_name(spec.split("=", 1)[0])
    sign, number = m.group(3), float(m.group(4))
    relative = sign != ""
    value = -number if sign == "-" else number
    if not relative and not 0.0 <= value <= AU_MAX:
        raise ValueError(f"AU intensity for {name} must be in 0..{AU_MAX:g}, got {value:g}")
    if relative and not -AU_MAX <= value <= AU_MAX:
        raise ValueError(f"relative AU change for {name} must be in -{AU_MAX:g}..+{AU_MAX:g}, got {value:+g}")
    return name, value, relative


def apply_au_edits(current: Sequence[float] | np.ndarray, edits: Iterable) -> np.ndarray:
    """Target AU vector: ``current`` (shape ``[17]``, 0..5) with ``edits`` applied in order.

    ``edits`` mixes ``(name, value, relative)`` AU triples and expression edits
    (:class:`fastwarp.presets.ExprEdit`, ``(preset, intensity)``) in one list. Absolute AU
    edits replace the AU's value; relative ones add to its value so far. An expression edit
    sets each AU its preset names to ``current + intensity * (full - current)`` (from the
    face's ``current`` value, whatever earlier items set) and leaves the other AUs as earlier
    items set them. Later items win where they set the same AU. The result is clipped to
    0..5; AUs no edit names keep their current value.

    Raises:
        ValueError: ``current`` is not ``[17]``, an unknown AU or preset, an intensity
            outside 0..1.
    """
    cur = np.asarray(current, dtype=np.float32)
    if cur.shape != (NUM_AUS,):
        raise ValueError(f"current AUs must have shape ({NUM_AUS},), got {cur.shape}")
    target = cur.copy()
    for edit in edits:
        apply = getattr(edit, "apply", None)
        if callable(apply):  # an expression edit (fastwarp.presets.ExprEdit); duck-typed: no import circle
            target = np.asarray(apply(cur, target), dtype=np.float32)
            continue
        name, value, relative = edit
        i = AU_INDEX[normalize_au_name(name)]
        target[i] = target[i] + value if relative else value
    return np.clip(target, 0.0, AU_MAX)


def au_edits_only(edits: Iterable) -> list[tuple[str, float, bool]]:
    """The ``(name, value, relative)`` AU triples of a mixed edit list (expression edits,
    which have an ``apply`` method, left out), in order."""
    return [e for e in edits if not callable(getattr(e, "apply", None))]


def clamped_edits(current: Sequence[float] | np.ndarray, edits: Iterable) -> list[str]:
    """One line for each edit whose target :func:`apply_au_edits` clamps: a relative change
    that would leave 0..5, the range the models were trained on (e.g. ``"AU12: 4.1 +2.5 is
    beyond 0..5, clamped to 5"``). Empty when nothing is clamped. Expression edits (whose
    values lie in 0..5 by construction) are skipped."""
    cur = np.asarray(current, dtype=np.float32)
    out = []
    for name, value, relative in au_edits_only(edits):
        name = normalize_au_name(name)
        if not relative:
            continue
        want = float(cur[AU_INDEX[name]]) + value
        if not 0.0 <= want <= AU_MAX:
            out.append(f"{name}: {cur[AU_INDEX[name]]:.1f} {value:+g} is beyond 0..{AU_MAX:g}, "
                       f"clamped to {min(max(want, 0.0), AU_MAX):g}")
    return out


def au_vector(values: Mapping[str, float]) -> np.ndarray:
    """A ``[17]`` float32 AU vector from ``{"AU12": 3.0, ...}`` (others 0)."""
    vec = np.zeros(NUM_AUS, dtype=np.float32)
    for name, value in values.items():
        vec[AU_INDEX[normalize_au_name(name)]] = value
    return vec
