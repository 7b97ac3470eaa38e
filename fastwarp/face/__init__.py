"""Face pipeline: FaceMesh landmarks, geometric AU estimates, similarity alignment,
face mask and paste-back.

MediaPipe is imported only when a :class:`FaceMesh` is constructed, so importing this
package costs numpy + OpenCV, not the TFLite runtime.
"""

from __future__ import annotations

from .align import FaceCrop, align_face, face_mask, paste_back
from .aus import PROXY_AUS, VISIBLE_AUS, estimate_aus, estimate_aus_batch
from .landmarks import (
    EXPRESSION_REGIONS,
    FACE_OVAL,
    INNER_LIPS,
    LEFT_BROW,
    LEFT_EYE,
    OUTER_LIPS,
    RIGHT_BROW,
    RIGHT_EYE,
    FaceMesh,
    head_pose,
    inter_ocular_distance,
)

__all__ = [
    "FaceMesh", "estimate_aus", "estimate_aus_batch", "VISIBLE_AUS", "PROXY_AUS",
    "align_face", "paste_back", "face_mask", "FaceCrop", "head_pose", "inter_ocular_distance",
    "LEFT_EYE", "RIGHT_EYE", "LEFT_BROW", "RIGHT_BROW", "OUTER_LIPS", "INNER_LIPS",
    "FACE_OVAL", "EXPRESSION_REGIONS",
]
