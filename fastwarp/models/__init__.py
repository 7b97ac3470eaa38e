"""Editor networks: :class:`MotionNet` (flow), :class:`TextureNet` (texture + mask) and
:class:`EditorNet` composing them through :func:`fastwarp.warp` / :func:`fastwarp.warp_blend`."""

from .editor_net import (BUNDLED_WEIGHTS, DEFAULT_WEIGHTS, WEIGHTS_DIR, EditorConfig, EditorNet, EditResult,
                         FaceEditor, resolve_weights)
from .networks import MotionNet, TextureNet, Trunk, tile_aus

__all__ = ["EditorConfig", "EditResult", "EditorNet", "FaceEditor", "MotionNet", "TextureNet", "Trunk", "tile_aus",
           "DEFAULT_WEIGHTS", "WEIGHTS_DIR", "BUNDLED_WEIGHTS", "resolve_weights"]
