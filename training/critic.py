"""GANimation's critic: a PatchGAN-style conv stack with a realness map and an AU-regression
head (Pumarola et al., "GANimation", ECCV 2018, section 4 and their public code).

Layers: ``repeat`` 4x4 stride-2 convolutions, each followed by LeakyReLU(0.01) and no
normalisation (WGAN-GP forbids batch statistics in the critic), the width doubling from
``width`` (capped at ``max_width``); then two heads on the final ``S / 2**repeat`` grid:
a 3x3 convolution to one channel (the WGAN realness score per patch, averaged) and a
convolution covering the whole grid to 17 outputs (the AU intensities / 5). GANimation:
width 64, 6 layers at 128 px, no cap.
"""

from __future__ import annotations

from torch import Tensor, nn

from fastwarp.au import NUM_AUS

__all__ = ["Critic"]


class Critic(nn.Module):
    """WGAN critic with an AU-regression head.

    Args:
        image_size (int): side S of the input; must be divisible by ``2 ** repeat``.
        width (int): channels of the first layer (GANimation: 64).
        repeat (int): stride-2 layers (GANimation: 6).
        max_width (int): cap on the channels (0: none, GANimation).

    Forward:
        image (Tensor[N, 3, S, S]) RGB in [-1, 1].
    Returns:
        ``(score [N], aus [N, 17])``: the critic's realness (unbounded, WGAN) and its AU
        estimate in intensity / 5 units (0..1 for 0..5).
    Raises:
        ValueError: ``image_size`` not divisible by ``2 ** repeat``.
    """

    def __init__(self, image_size: int = 128, width: int = 64, repeat: int = 6, max_width: int = 0) -> None:
        super().__init__()
        if repeat < 1 or image_size % (2 ** repeat):
            raise ValueError(f"critic: image_size {image_size} must be divisible by 2**repeat = {2 ** repeat}")
        layers: list[nn.Module] = []
        cin, cout = 3, width
        for _ in range(repeat):
            layers += [nn.Conv2d(cin, cout, 4, 2, 1), nn.LeakyReLU(0.01)]
            cin, cout = cout, (min(2 * cout, max_width) if max_width else 2 * cout)
        self.main = nn.Sequential(*layers)
        grid = image_size // (2 ** repeat)
        self.realness = nn.Conv2d(cin, 1, 3, 1, 1, bias=False)
        self.au_head = nn.Conv2d(cin, NUM_AUS, grid, 1, 0, bias=False)
        self.image_size = image_size

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor]:
        if image.dim() != 4 or image.shape[1] != 3 or image.shape[-1] != self.image_size:
            raise ValueError(f"critic: image must be [N, 3, {self.image_size}, {self.image_size}], "
                             f"got {list(image.shape)}")
        h = self.main(image)
        return self.realness(h).flatten(1).mean(1), self.au_head(h).flatten(1)
