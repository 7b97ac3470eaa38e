"""Editor networks: :class:`MotionNet` (flow), :class:`TextureNet` (texture + mask) and
:class:`FaceEditor` composing them through :func:`fastwarp.warp` / :func:`fastwarp.warp_blend`."""

from .editor import DEFAULT_WEIGHTS, EditorConfig, EditResult, FaceEditor
from .networks import MotionNet, TextureNet, Trunk, tile_aus

__all__ = ["EditorConfig", "EditResult", "FaceEditor", "MotionNet", "TextureNet", "Trunk", "tile_aus",
           "DEFAULT_WEIGHTS"]
