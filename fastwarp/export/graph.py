"""What every export shares: the exported function (:class:`ExportGraph`), its input and
output names, the supported opsets and example inputs (docs/design.md, "Export").

Inputs (float32, batch dimension dynamic):
    ``image`` [N, 3, S, S] in [-1, 1] (RGB, S = ``config.image_size``, 128 for the bundled
    weights); ``aus`` [N, 17] target AU intensities 0..5 in :data:`fastwarp.AU_NAMES`
    order; ``source_aus`` [N, 17], the face's current AUs (used by ``"delta"``-conditioned
    models such as the bundled ones; ignored by ``"target"`` ones).
Outputs: ``output`` [N, 3, S, S], ``flow`` [N, 2, M, M] (pixels of the M x M grid),
``texture`` [N, 3, M, M], ``mask`` [N, 1, M, M] (M = ``config.map_size``).

Opsets 16 to 19 only: GridSample exists from opset 16, and TensorRT's ONNX parser reads
opset 20's GridSample "linear" mode as nearest.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..au import AU_NAMES
from ..models.editor_net import EditorNet

__all__ = ["OPSETS", "DEFAULT_OPSET", "INPUT_NAMES", "OUTPUT_NAMES", "ExportGraph", "example_inputs",
           "float_cpu_copy", "check_opset"]

OPSETS = range(16, 20)
DEFAULT_OPSET = 18
INPUT_NAMES = ("image", "aus", "source_aus")
OUTPUT_NAMES = ("output", "flow", "texture", "mask")


class ExportGraph(nn.Module):
    """The exported function: EditorNet's forward with its outputs as a tuple."""

    def __init__(self, model: EditorNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: Tensor, aus: Tensor, source_aus: Tensor) -> tuple[Tensor, ...]:
        r = self.model(image, aus, source_aus)
        return r.output, r.flow, r.texture, r.mask


def example_inputs(model: EditorNet, batch: int, seed: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    size = model.config.image_size
    image = torch.rand(batch, 3, size, size, generator=gen) * 2 - 1
    aus = torch.rand(batch, len(AU_NAMES), generator=gen) * 5
    source_aus = torch.rand(batch, len(AU_NAMES), generator=gen) * 5
    return image, aus, source_aus


def float_cpu_copy(model: EditorNet) -> EditorNet:
    copy = EditorNet(model.config)
    copy.load_state_dict({k: v.detach().float().cpu() for k, v in model.state_dict().items()})
    return copy


def check_opset(opset: int) -> None:
    """Raises ValueError unless ``opset`` is one of :data:`OPSETS`."""
    if opset not in OPSETS:
        raise ValueError(f"opset must be in {OPSETS.start}..{OPSETS.stop - 1} (GridSample needs 16; "
                         f"TensorRT reads opset 20's bilinear GridSample as nearest), got {opset}")
