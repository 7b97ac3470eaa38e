"""Live AU controls of ``fastwarp webcam --show``: hotkeys that pick an AU and change its edit."""

from __future__ import annotations

from typing import Iterable

import numpy as np

from ..au import AU_INDEX, AU_MAX, AU_NAMES, normalize_au_name
from ..expression_editor import AUEdit

__all__ = ["LiveControls"]


class LiveControls:
    """Key bindings that change the AU targets while a preview window runs.

    Keys: ``[`` / ``]`` pick the previous / next AU; ``+`` (or ``=``) and ``-`` change
    the picked AU by ``step``: an AU given absolutely (``AU12=3``) changes its target
    intensity (0..5), any other its change relative to the face (``AU12=+0.5``, -5..5);
    ``0`` removes the picked AU's edit; ``space`` turns editing off and on; ``r`` goes
    back to the command line's edits; ``q`` or Esc quits.

    Args:
        edits: the starting ``(AU, value, relative)`` edits.
        step: the change per key press, AU intensity units.
    """

    HELP = ("keys: [ ] pick AU, + / - change it, 0 clear it, space edit on/off, r reset, q or Esc quit")

    def __init__(self, edits: Iterable[AUEdit] = (), step: float = 0.5) -> None:
        self.initial = [(normalize_au_name(n), float(v), bool(r)) for n, v, r in edits]
        self.step = float(step)
        self.reset()

    def reset(self) -> None:
        """Back to the starting edits, editing on, the first edited AU (else AU12) picked."""
        self.values: dict[str, tuple[float, bool]] = {n: (v, r) for n, v, r in self.initial}
        self.selected = AU_INDEX[self.initial[0][0]] if self.initial else AU_INDEX["AU12"]
        self.enabled = True

    @property
    def selected_name(self) -> str:
        return AU_NAMES[self.selected]

    def edits(self) -> list[AUEdit]:
        """The current edits, in AU order (empty while editing is off)."""
        if not self.enabled:
            return []
        return [(n, v, r) for n in AU_NAMES if n in self.values for v, r in [self.values[n]]]

    def handle_key(self, key: int) -> str | None:
        """Apply one key code (``cv2.waitKey``'s; -1 for none). Returns ``"quit"``,
        ``"changed"`` (the edits changed), ``"selected"`` (another AU picked) or None."""
        if key < 0:
            return None
        ch = chr(key & 0xFF)
        # Lower case only: OpenCV's Qt windows report the arrow keys as 81..84 ("Q".."T").
        if ch in ("q", "\x1b"):
            return "quit"
        if ch == "]":
            self.selected = (self.selected + 1) % len(AU_NAMES)
            return "selected"
        if ch == "[":
            self.selected = (self.selected - 1) % len(AU_NAMES)
            return "selected"
        name = self.selected_name
        if ch in ("+", "=", "-", "_"):
            sign = 1.0 if ch in ("+", "=") else -1.0
            value, relative = self.values.get(name, (0.0, True))
            lo = -AU_MAX if relative else 0.0
            self.values[name] = (float(np.clip(value + sign * self.step, lo, AU_MAX)), relative)
            return "changed"
        if ch == "0":
            return "changed" if self.values.pop(name, None) is not None else None
        if ch == " ":
            self.enabled = not self.enabled
            return "changed"
        if ch == "r":
            self.reset()
            return "changed"
        return None

    def describe(self) -> str:
        """One line: the edits, the picked AU marked with ``>``, and whether editing is on."""
        parts = []
        for n in AU_NAMES:
            if n in self.values or n == self.selected_name:
                v, r = self.values.get(n, (0.0, True))
                text = f"{n}={v:+.1f}" if r else f"{n}={v:.1f}"
                parts.append(f">{text}" if n == self.selected_name else text)
        return ("" if self.enabled else "[editing off] ") + " ".join(parts)
