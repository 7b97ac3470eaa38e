"""The editor networks: GANimation's generator trunk with a flow head (MotionNet) or
texture and mask heads (TextureNet).

Trunk (GANimation, Pumarola et al. ECCV 2018, public code): 7×7 conv (InstanceNorm,
ReLU) → two 4×4 stride-2 convs (×2 width each) → residual blocks → two 4×4 stride-2
transposed convs → 7×7 heads. Input: RGB in [-1, 1] concatenated with the AU vector
(intensity / 5) tiled over the image. GANimation uses width 64 and 6 residual blocks;
both are configurable here (the bundled CPU weights use smaller ones, see their card).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..au import AU_MAX, NUM_AUS

__all__ = ["Trunk", "MotionNet", "TextureNet", "tile_aus"]


def tile_aus(aus: Tensor, height: int, width: int) -> Tensor:
    """AU intensities ``[N, 17]`` (0..5) → conditioning maps ``[N, 17, H, W]`` of intensity / 5."""
    if aus.dim() != 2 or aus.shape[1] != NUM_AUS:
        raise ValueError(f"aus must have shape [N, {NUM_AUS}], got {list(aus.shape)}")
    return (aus / AU_MAX)[:, :, None, None].expand(-1, -1, height, width)


def _conv_block(cin: int, cout: int, k: int, stride: int, pad: int, transposed: bool = False) -> nn.Sequential:
    conv = (nn.ConvTranspose2d if transposed else nn.Conv2d)(cin, cout, k, stride, pad, bias=False)
    return nn.Sequential(conv, nn.InstanceNorm2d(cout, affine=True), nn.ReLU(inplace=True))


class _ResBlock(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(ch, ch, 3, 1, 1, bias=False), nn.InstanceNorm2d(ch, affine=True), nn.ReLU(inplace=True),
            nn.Conv2d(ch, ch, 3, 1, 1, bias=False), nn.InstanceNorm2d(ch, affine=True),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class Trunk(nn.Module):
    """GANimation's encoder/decoder: ``[N, in_ch, S, S]`` → features ``[N, width, S, S]``.

    ``S`` must be divisible by 4 (two stride-2 stages).
    """

    def __init__(self, in_ch: int, width: int = 64, n_res: int = 6) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            _conv_block(in_ch, width, 7, 1, 3),
            _conv_block(width, 2 * width, 4, 2, 1),
            _conv_block(2 * width, 4 * width, 4, 2, 1),
            *[_ResBlock(4 * width) for _ in range(n_res)],
            _conv_block(4 * width, 2 * width, 4, 2, 1, transposed=True),
            _conv_block(2 * width, width, 4, 2, 1, transposed=True),
        )

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] % 4 or x.shape[-2] % 4:
            raise ValueError(f"image height and width must be divisible by 4, got {list(x.shape[-2:])}")
        return self.layers(x)


class MotionNet(nn.Module):
    """Image + target AUs → dense flow in pixels (the motion step of Athar et al. 2020).

    Args:
        width, n_res: trunk size (GANimation: 64, 6).
        max_flow (float): bound on |dx| and |dy| as a fraction of the image size; the flow
            is ``tanh(head) * max_flow * S``, so it stays bounded for any input.

    Forward:
        image (Tensor[N, 3, S, S]) in [-1, 1]; aus (Tensor[N, 17]) intensities 0..5.
        Returns flow (Tensor[N, 2, S, S]) in pixels of the input, (dx, dy) for
        :func:`fastwarp.warp`.
    """

    def __init__(self, width: int = 64, n_res: int = 6, max_flow: float = 0.15) -> None:
        super().__init__()
        self.max_flow = float(max_flow)
        self.trunk = Trunk(3 + NUM_AUS, width, n_res)
        self.flow_head = nn.Conv2d(width, 2, 7, 1, 3)
        # Start at the identity warp: an untrained motion step must not scramble the face.
        nn.init.normal_(self.flow_head.weight, std=1e-3)
        nn.init.zeros_(self.flow_head.bias)

    def forward(self, image: Tensor, aus: Tensor) -> Tensor:
        size = image.shape[-1]
        x = torch.cat([image, tile_aus(aus, image.shape[-2], size).to(image.dtype)], dim=1)
        return torch.tanh(self.flow_head(self.trunk(x))) * (self.max_flow * size)


class TextureNet(nn.Module):
    """Warped image + target AUs → texture in [-1, 1] and blend mask in [0, 1] (the
    texture step of Athar et al. 2020; GANimation's colour and attention heads).

    Forward:
        warped (Tensor[N, 3, S, S]) in [-1, 1]; aus (Tensor[N, 17]) 0..5.
        Returns ``(texture [N, 3, S, S], mask [N, 1, S, S])``; mask = 1 keeps the warped
        pixel (``out = mask * warped + (1 - mask) * texture``).
    """

    def __init__(self, width: int = 64, n_res: int = 6, mask_init: float = 0.9) -> None:
        super().__init__()
        self.trunk = Trunk(3 + NUM_AUS, width, n_res)
        self.texture_head = nn.Conv2d(width, 3, 7, 1, 3)
        self.mask_head = nn.Conv2d(width, 1, 7, 1, 3)
        # Start by keeping the warped image almost everywhere: motion explains most of an
        # expression, the texture only what motion cannot.
        nn.init.normal_(self.mask_head.weight, std=1e-3)
        nn.init.constant_(self.mask_head.bias, float(torch.logit(torch.tensor(mask_init))))

    def forward(self, warped: Tensor, aus: Tensor) -> tuple[Tensor, Tensor]:
        x = torch.cat([warped, tile_aus(aus, warped.shape[-2], warped.shape[-1]).to(warped.dtype)], dim=1)
        features = self.trunk(x)
        return torch.tanh(self.texture_head(features)), torch.sigmoid(self.mask_head(features))
