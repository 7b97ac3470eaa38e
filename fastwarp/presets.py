"""Expression presets: named expressions as Action Unit targets, scaled by an intensity.

A :class:`Preset` is a set of AU intensities at full strength (0..5, names of
:data:`fastwarp.au.AU_NAMES`). An :class:`ExprEdit` ``(name, s)`` with ``s`` in 0..1 moves
each AU the preset names from the face's current (estimated) value towards the preset's::

    target[au] = current[au] + s * (full[au] - current[au])

so ``s = 0`` changes nothing and ``s = 1`` reaches the preset's value whatever the face's
current value; AUs the preset does not name keep what earlier edits set.
:func:`fastwarp.au.apply_au_edits` takes ExprEdits and ``(AU, value, relative)`` triples in
one ordered list, later items winning where they set the same AU.

Every preset names only AUs the geometric estimator measures
(:data:`fastwarp.face.aus.VISIBLE_AUS`): the motion model was trained on that estimator's
readings, in which AU09 and AU14 are always 0, so it has learnt no motion for them. Where
an emotion prototype needs an AU outside that set (disgust's AU09, AU16) the preset takes
the prototype's listed variant built from visible AUs, and :attr:`Preset.source` says so.

The emotion presets follow the EMFACS prototypes (Friesen & Ekman's Emotion FACS) as given in
the FACS Investigator's Guide (Ekman, Friesen & Hager 2002) and reproduced in Cohn, Ambadar &
Ekman (2007), "Observer-based measurement of facial expression with the Facial Action Coding
System"; intensities are ours, chosen on the photos of the fastwarp face set with
the bundled weights (docs/presets.md).

What AUs cannot express, so no preset pretends to: gaze (the eyes' direction), head pose,
and one-sided actions such as a wink or a half smile (the 17 AUs are bilateral here).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping, NamedTuple, Sequence

import numpy as np

from .au import AU_INDEX, AU_MAX, NUM_AUS, normalize_au_name
from .face.aus import VISIBLE_AUS

__all__ = ["Preset", "PRESETS", "ExprEdit", "parse_expr_edit", "preset_target", "format_presets",
           "CANNOT_EXPRESS"]

_EKMAN = ("EMFACS prototype {aus} (Ekman, Friesen & Hager 2002, FACS Investigator's Guide; "
          "as reproduced in Cohn, Ambadar & Ekman 2007)")


@dataclass(frozen=True)
class Preset:
    """A named expression.

    Attributes:
        name: the name used by ``--expr NAME=S`` (``"smile"``).
        aus: full-strength AU targets, ``{"AU06": 2.5, "AU12": 4.0}``: canonical names of
            :data:`fastwarp.au.AU_NAMES`, intensities 0..5, only AUs of
            :data:`~fastwarp.face.aus.VISIBLE_AUS`.
        description: one line for tables and UI labels.
        source: where the AU combination comes from (the EMFACS prototypes); empty for
            fastwarp's own presets.
    """

    name: str
    aus: Mapping[str, float]
    description: str
    source: str = ""

    def __post_init__(self):
        aus = {normalize_au_name(k): float(v) for k, v in self.aus.items()}
        for k, v in aus.items():
            if not 0.0 <= v <= AU_MAX:
                raise ValueError(f"preset {self.name!r}: {k} must be in 0..{AU_MAX:g}, got {v:g}")
        object.__setattr__(self, "aus", MappingProxyType(aus))

    def vector(self) -> tuple[np.ndarray, np.ndarray]:
        """``(full, named)``: float32 ``[17]`` full-strength values (0 where not named) and a
        bool ``[17]`` mask of the AUs the preset names."""
        full, named = np.zeros(NUM_AUS, np.float32), np.zeros(NUM_AUS, bool)
        for k, v in self.aus.items():
            full[AU_INDEX[k]], named[AU_INDEX[k]] = v, True
        return full, named


def _preset(name: str, aus: Mapping[str, float], description: str, source: str = "") -> Preset:
    return Preset(name, aus, description, source)


_P = [
    # --- mouth ---------------------------------------------------------------------------------
    _preset("smile", {"AU06": 2.5, "AU12": 4.5}, "closed-lip smile: lip corners up, cheeks raised"),
    _preset("grin", {"AU06": 2.5, "AU12": 4.0, "AU25": 4.0}, "broad smile with the lips apart"),
    _preset("laugh", {"AU06": 3.5, "AU12": 5.0, "AU25": 5.0, "AU26": 3.0},
            "laugh: a full smile with the jaw dropped"),
    _preset("open", {"AU25": 4.0, "AU26": 3.0}, "mouth open: lips apart, jaw lowered"),
    _preset("aaa", {"AU25": 5.0, "AU26": 4.5, "AU12": 0.0, "AU20": 0.0}, "vowel 'aaa': jaw dropped wide"),
    _preset("eee", {"AU20": 4.0, "AU25": 3.0, "AU26": 0.0}, "vowel 'eee': lips stretched sideways and apart"),
    _preset("ooo", {"AU23": 3.0, "AU25": 3.0, "AU26": 1.5, "AU12": 0.0, "AU20": 0.0},
            "vowel 'ooo' (approximate: no pucker AU): lips tightened, slightly open"),
    _preset("pout", {"AU15": 3.0, "AU17": 4.0}, "sulky pout: lip corners down, chin pushed up"),
    _preset("press", {"AU23": 4.0, "AU17": 2.0, "AU25": 0.0, "AU26": 0.0},
            "lips pressed together and thinned"),
    # --- eyes and brows ------------------------------------------------------------------------
    _preset("blink", {"AU45": 5.0}, "both eyes closed"),
    _preset("brows_up", {"AU01": 3.0, "AU02": 3.0}, "both brows raised"),
    _preset("frown", {"AU04": 4.0}, "brows lowered and drawn together"),
    # --- EMFACS prototypes of the six basic emotions -------------------------------------------
    _preset("happy", {"AU06": 3.5, "AU12": 5.0}, "happiness (EMFACS 6+12)", _EKMAN.format(aus="6+12")),
    _preset("sad", {"AU01": 3.5, "AU04": 2.5, "AU15": 3.5}, "sadness (EMFACS 1+4+15)",
            _EKMAN.format(aus="1+4+15")),
    _preset("surprise", {"AU01": 3.5, "AU02": 3.0, "AU05": 2.0, "AU26": 3.0}, "surprise (EMFACS 1+2+5B+26)",
            _EKMAN.format(aus="1+2+5B+26")),
    _preset("fear", {"AU01": 3.5, "AU02": 3.0, "AU04": 2.5, "AU05": 3.5, "AU20": 3.5, "AU25": 3.0, "AU26": 1.5},
            "fear (EMFACS 1+2+4+5+20+25/26)", _EKMAN.format(aus="1+2+4+5*+20*+25/26")),
    _preset("anger", {"AU04": 4.0, "AU05": 2.5, "AU07": 3.0, "AU23": 3.5}, "anger (EMFACS 4+5+7+23)",
            _EKMAN.format(aus="4+5*+7+23")),
    _preset("disgust", {"AU10": 5.0, "AU17": 3.0}, "disgust (EMFACS variant 10+17: no AU09 nose wrinkle)",
            _EKMAN.format(aus="9+15+16, variant 10+17") + "; AU09 (nose wrinkler) is a skin texture the "
            "landmarks do not see and AU16 is not among the 17 AUs, so the preset is the listed variant "
            "10+17"),
    # --- the face's rest ----------------------------------------------------------------------
    _preset("neutral", {au: 0.0 for au in VISIBLE_AUS}, "every AU the estimator sees back to rest"),
]

#: The presets by name, in the order of docs/presets.md.
PRESETS: dict[str, Preset] = {p.name: p for p in _P}

#: What no AU vector expresses, said plainly wherever the presets are listed.
CANNOT_EXPRESS = (
    "AUs cannot express gaze (where the eyes look), head pose (turn, tilt, nod) or one-sided actions "
    "such as a wink or a half smile: fastwarp's 17 AUs are bilateral, so blink closes both eyes. "
    "AU09 (nose wrinkler) and AU14 (dimpler) are not measured by the estimator and no preset uses "
    "them; lip pucker, funneler and presser (AU18, AU22, AU24) are not among the 17 AUs, so "
    "'ooo' and 'press' are approximations."
)


class ExprEdit(NamedTuple):
    """An expression edit: preset ``name`` (a key of :data:`PRESETS`) at ``intensity`` 0..1.

    Goes into the same ordered list as ``(AU, value, relative)`` edits
    (:func:`fastwarp.au.apply_au_edits`, :meth:`fastwarp.ExpressionEditor.edit`).
    """

    name: str
    intensity: float

    def apply(self, current: Sequence[float] | np.ndarray, target: np.ndarray) -> np.ndarray:
        """``target`` (float32 ``[17]``) with the preset's AUs set to
        :func:`preset_target` of the face's ``current`` AUs; the others unchanged."""
        _, named = PRESETS[_preset_name(self.name)].vector()
        return np.where(named, preset_target(current, self.name, self.intensity), target).astype(np.float32)


def _preset_name(name: str) -> str:
    key = str(name).strip().lower().replace("-", "_")
    if key not in PRESETS:
        raise ValueError(f"unknown expression {name!r}; expected one of {', '.join(PRESETS)}")
    return key


def _intensity(name: str, value) -> float:
    try:
        s = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"expression intensity for {name} must be a number in 0..1, got {value!r}") from None
    if not 0.0 <= s <= 1.0:  # (NaN fails too)
        raise ValueError(f"expression intensity for {name} must be in 0..1, got {value}")
    return s


def parse_expr_edit(spec: str) -> ExprEdit:
    """Parse one ``--expr`` argument: ``"smile=0.8"`` (``NAME=S``, S in 0..1); ``"smile"``
    alone means ``smile=1``. Names are case-insensitive, ``-`` reads as ``_``.

    Raises:
        ValueError: one line naming what was wrong: an unknown name (listing the names), an
            intensity that is not a number or lies outside 0..1.
    """
    head, sep, tail = str(spec).partition("=")
    if not head.strip():
        raise ValueError(f"malformed expression edit {spec!r}; expected NAME=INTENSITY such as smile=0.8")
    name = _preset_name(head)
    if sep and not tail.strip():
        raise ValueError(f"expression intensity for {name} is missing in {spec!r}; expected a number in 0..1, "
                         f"e.g. {name}=0.8")
    return ExprEdit(name, _intensity(name, tail.strip() if sep else 1.0))


def preset_target(current: Sequence[float] | np.ndarray, name: str, intensity: float) -> np.ndarray:
    """The face's ``current`` AUs (``[17]``, 0..5) moved towards preset ``name``: for each AU
    the preset names, ``current + intensity * (full - current)``; the other AUs as they are.

    Returns:
        float32 ``[17]`` in 0..5.
    Raises:
        ValueError: an unknown preset, an intensity outside 0..1, ``current`` not ``[17]``.
    """
    cur = np.asarray(current, dtype=np.float32)
    if cur.shape != (NUM_AUS,):
        raise ValueError(f"current AUs must have shape ({NUM_AUS},), got {cur.shape}")
    key = _preset_name(name)
    s = np.float32(_intensity(key, intensity))
    full, named = PRESETS[key].vector()
    moved = cur + s * (full - cur)
    return np.clip(np.where(named, moved, cur), 0.0, AU_MAX).astype(np.float32)


def format_presets() -> str:
    """The preset table of ``fastwarp presets``: name, AUs at full strength, description;
    then what AUs cannot express."""
    rows = [(p.name, " ".join(f"{k}={v:g}" for k, v in p.aus.items()), p.description) for p in PRESETS.values()
            if p.name != "neutral"]
    rows.append(("neutral", "every visible AU=0", f"{PRESETS['neutral'].description}: {' '.join(VISIBLE_AUS)}"))
    w0, w1 = max(len(r[0]) for r in rows), max(len(r[1]) for r in rows)
    lines = [f"{'name':<{w0}}  {'AUs at full strength (S=1)':<{w1}}  description"]
    lines += [f"{name:<{w0}}  {aus:<{w1}}  {desc}" for name, aus, desc in rows]
    usage = ("usage: --expr NAME=S (S in 0..1; S=0 changes nothing, S=1 reaches the values above), "
             "repeatable and mixed with --au: later flags win where they set the same AU.")
    emfacs = ("emotion presets (happy, sad, surprise, fear, anger, disgust) follow the EMFACS prototypes "
              "(Ekman, Friesen & Hager 2002); see docs/presets.md.")
    lines += ["", usage, emfacs, "", "cannot express: " + CANNOT_EXPRESS]
    return "\n".join(lines)
