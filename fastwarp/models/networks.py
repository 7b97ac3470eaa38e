"""The editor networks: GANimation's generator trunk with a flow head (MotionNet) or
texture and mask heads (TextureNet).

Trunk (GANimation, Pumarola et al. ECCV 2018, public code): 7×7 conv (InstanceNorm,
ReLU) → two 4×4 stride-2 convs (×2 width each) → residual blocks → two 4×4 stride-2
transposed convs → 7×7 heads. Input: RGB in [-1, 1] concatenated with the AU vector
(intensity / 5) tiled over the image. Unlike GANimation, every InstanceNorm is also
conditioned on the AU vector (:class:`CondInstanceNorm`: tiled conditions alone are
erased by instance normalisation except at the image border). GANimation uses width 64 and 6 residual blocks;
both are configurable here (the bundled CPU weights use smaller ones, see their card).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..au import AU_MAX, NUM_AUS

__all__ = ["Trunk", "MotionNet", "TextureNet", "CondInstanceNorm", "tile_aus"]


def tile_aus(aus: Tensor, height: int, width: int) -> Tensor:
    """AU condition ``[N, 17]`` → maps ``[N, 17, H, W]`` of value / 5 (intensities 0..5
    give 0..1 as in GANimation; AU differences -5..5 give -1..1)."""
    if aus.dim() != 2 or aus.shape[1] != NUM_AUS:
        raise ValueError(f"aus must have shape [N, {NUM_AUS}], got {list(aus.shape)}")
    return (aus / AU_MAX)[:, :, None, None].expand(-1, -1, height, width)


class CondInstanceNorm(nn.Module):
    """InstanceNorm whose scale and shift depend on the AU condition: conditional instance
    normalisation (Dumoulin et al., ICLR 2017), i.e. FiLM (Perez et al., AAAI 2018) on
    normalised features: ``IN(x) * (1 + gamma(c)) + beta(c)``.

    Why: GANimation concatenates the AUs tiled over the image to the input, but tiled
    values are constant per channel, and the first conv turns them into a per-channel
    constant that InstanceNorm's mean subtraction removes; the condition survives only
    in the zero-padded border. Here it enters every layer. The linear map starts at zero,
    so an untrained network is the plain GANimation trunk.

    Args: channels; cond_dim (17 AUs). Forward: x [N, C, H, W], cond [N, cond_dim].
    """

    def __init__(self, channels: int, cond_dim: int = NUM_AUS) -> None:
        super().__init__()
        self.norm = nn.InstanceNorm2d(channels, affine=True)
        self.film = nn.Linear(cond_dim, 2 * channels)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        gamma, beta = self.film(cond.to(x.dtype)).chunk(2, dim=1)
        return self.norm(x) * (1 + gamma[:, :, None, None]) + beta[:, :, None, None]


class _ConvNormAct(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, stride: int, pad: int, transposed: bool = False,
                 act: bool = True) -> None:
        super().__init__()
        self.conv = (nn.ConvTranspose2d if transposed else nn.Conv2d)(cin, cout, k, stride, pad, bias=False)
        self.norm = CondInstanceNorm(cout)
        self.act = act

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        x = self.norm(self.conv(x), cond)
        return torch.relu(x) if self.act else x


class _ResBlock(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.a = _ConvNormAct(ch, ch, 3, 1, 1)
        self.b = _ConvNormAct(ch, ch, 3, 1, 1, act=False)

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        return x + self.b(self.a(x, cond), cond)


class Trunk(nn.Module):
    """GANimation's encoder/decoder: ``[N, in_ch, S, S]`` → features ``[N, width, S, S]``,
    with every InstanceNorm conditioned on the AU vector (:class:`CondInstanceNorm`).

    ``S`` must be divisible by 4 (two stride-2 stages).
    """

    def __init__(self, in_ch: int, width: int = 64, n_res: int = 6) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([
            _ConvNormAct(in_ch, width, 7, 1, 3),
            _ConvNormAct(width, 2 * width, 4, 2, 1),
            _ConvNormAct(2 * width, 4 * width, 4, 2, 1),
            *[_ResBlock(4 * width) for _ in range(n_res)],
            _ConvNormAct(4 * width, 2 * width, 4, 2, 1, transposed=True),
            _ConvNormAct(2 * width, width, 4, 2, 1, transposed=True),
        ])

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        if x.shape[-1] % 4 or x.shape[-2] % 4:
            raise ValueError(f"image height and width must be divisible by 4, got {list(x.shape[-2:])}")
        for block in self.blocks:
            x = block(x, cond)
        return x


class MotionNet(nn.Module):
    """Image + AU condition → dense flow in pixels (the motion step of Athar et al. 2020).

    The flow is a sum of per-AU motion fields weighted by the condition ``c = aus / 5``
    (target AUs, or their change from the face's current AUs, see ``EditorConfig``):

        flow = tanh(sum_k c_k * (T_k + F_k(image, c)) + b * (T_0 + F_0(image, c))) * max_flow * S

    with ``b = 1`` (a free, AU-independent flow) or, with ``bias_flow=False``, ``b = 0``:
    every motion term is then scaled by the condition, so a zero condition (no AU change,
    with ``"delta"`` conditioning) gives a flow of exactly 0 (identity by construction).

    ``T_k`` are learned AU motion templates: one flow field per AU in the similarity-aligned
    crop frame (a 2-D expression blendshape basis, stored at ``template_size`` and upsampled),
    ``F_k`` the trunk's face-specific corrections (GANimation trunk, 2 x 18 output maps).
    Facial action units combine roughly additively (FACS), and in aligned crops a pixel
    position already says which part of the face is there, so the templates learn the
    bulk of each AU's motion in a few hundred steps; the trunk refines it per face.

    Args:
        width, n_res: trunk size (GANimation: 64, 6).
        max_flow (float): bound on |dx| and |dy| as a fraction of the image size.
        template_size (int): side of the stored templates.
        bias_flow (bool): keep the AU-independent term ``T_0 + F_0`` (see above).

    Forward:
        image (Tensor[N, 3, S, S]) in [-1, 1]; aus (Tensor[N, 17]) the condition (0..5, or
        -5..5 for AU changes). Returns flow (Tensor[N, 2, S, S]) in pixels of the input,
        (dx, dy) for :func:`fastwarp.warp`.
    """

    def __init__(self, width: int = 64, n_res: int = 6, max_flow: float = 0.15, template_size: int = 32,
                 bias_flow: bool = True) -> None:
        super().__init__()
        self.max_flow = float(max_flow)
        self.bias_flow = bool(bias_flow)
        self.trunk = Trunk(3 + NUM_AUS, width, n_res)
        self.flow_head = nn.Conv2d(width, 2 * (NUM_AUS + 1), 7, 1, 3)
        self.templates = nn.Parameter(torch.zeros(NUM_AUS + 1, 2, template_size, template_size))
        # Start at the identity warp: an untrained motion step must not scramble the face.
        nn.init.normal_(self.flow_head.weight, std=1e-4)
        nn.init.zeros_(self.flow_head.bias)

    def forward(self, image: Tensor, aus: Tensor) -> Tensor:
        n, _, height, width = image.shape
        c = aus.to(image.dtype) / AU_MAX
        x = torch.cat([image, tile_aus(aus, height, width).to(image.dtype)], dim=1)
        fields = self.flow_head(self.trunk(x, c)).view(n, NUM_AUS + 1, 2, height, width)
        templates = F.interpolate(self.templates.to(image.dtype), size=(height, width), mode="bilinear",
                                  align_corners=False)
        bias = torch.ones_like(c[:, :1]) if self.bias_flow else torch.zeros_like(c[:, :1])
        weights = torch.cat([c, bias], dim=1)[:, :, None, None, None]
        return torch.tanh(((fields + templates[None]) * weights).sum(1)) * (self.max_flow * width)


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
        features = self.trunk(x, aus / AU_MAX)
        return torch.tanh(self.texture_head(features)), torch.sigmoid(self.mask_head(features))
