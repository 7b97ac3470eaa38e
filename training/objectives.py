"""The training objective, one named function per term (each with its source).

Units: images RGB in [-1, 1]; flows in pixels; AUs as intensities 0..5 (the critic's AU head
predicts intensity / 5, as GANimation's conditioning vector); masks in [0, 1] with
1 = keep the (warped) input. Every function returns a scalar tensor.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fastwarp.au import AU_MAX

__all__ = [
    "critic_wgan_loss", "generator_wgan_loss", "gradient_penalty", "au_regression_loss", "reconstruction_loss",
    "cycle_loss", "mask_mean_loss", "mask_smoothness_loss", "flow_smoothness_loss", "landmark_flow_loss",
    "PerceptualLoss",
]


def critic_wgan_loss(score_real: Tensor, score_fake: Tensor) -> Tensor:
    """Wasserstein critic loss ``E[D(fake)] - E[D(real)]`` (Arjovsky et al., "Wasserstein
    GAN", ICML 2017, eq. 3; GANimation eq. 1, critic side). Scores ``[N]``."""
    return score_fake.mean() - score_real.mean()


def generator_wgan_loss(score_fake: Tensor) -> Tensor:
    """Wasserstein generator loss ``-E[D(G(x))]`` (GANimation eq. 1, generator side)."""
    return -score_fake.mean()


def gradient_penalty(critic: nn.Module, real: Tensor, fake: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """WGAN-GP penalty ``E[(||grad_x D(x_hat)||_2 - 1)^2]`` on random interpolates
    ``x_hat = a * real + (1 - a) * fake``, ``a ~ U[0, 1]`` per sample (Gulrajani et al.,
    "Improved Training of Wasserstein GANs", NeurIPS 2017, eq. 3; GANimation λ_gp = 10).

    ``critic`` returns ``(score [N], aus)`` (:class:`training.critic.Critic`, possibly
    wrapped in DDP); the penalty's graph is kept (``create_graph``), so its backward trains
    the critic. ``real`` and ``fake`` ``[N, 3, S, S]``; ``fake`` is detached here.
    """
    alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device, dtype=real.dtype, generator=generator)
    x_hat = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    score, _ = critic(x_hat)
    (grad,) = torch.autograd.grad(score.sum(), x_hat, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


def au_regression_loss(predicted: Tensor, aus: Tensor) -> Tensor:
    """Mean squared error between the critic's AU estimate (intensity / 5) and AUs
    (intensities 0..5, divided by 5 here) (GANimation eq. 4, the conditional expression
    loss; λ_AU = 4000 there). ``predicted`` and ``aus`` ``[N, 17]``. (GANimation's code
    also divides this by the batch size; we do not: the weight means the same at any batch.)"""
    return F.mse_loss(predicted, aus.to(predicted.dtype) / AU_MAX)


def reconstruction_loss(output: Tensor, target: Tensor) -> Tensor:
    """L1 between the source frame edited to the target frame's AUs and the real target
    frame of the same video: real supervision, which neither GANimation nor Athar et al.
    (FG 2020) had (both train on unpaired images). ``[N, 3, S, S]`` each."""
    return (output - target).abs().mean()


def cycle_loss(reconstruction: Tensor, source: Tensor) -> Tensor:
    """L1 of ``G(G(x, y_tgt), y_src) - x`` (GANimation eq. 5, identity / cycle loss, after
    CycleGAN, Zhu et al. ICCV 2017; λ_cycle = 10 there)."""
    return (reconstruction - source).abs().mean()


def mask_mean_loss(mask: Tensor, penalise: str = "texture") -> Tensor:
    """Mean of the blend share being penalised (GANimation eq. 3, the attention-mask L1
    term; λ = 0.1 there).

    ``penalise="input"`` is GANimation's term: the mean of the mask (the share that keeps
    the input), so the mask cannot saturate to "keep everything" and ignore the condition.
    ``penalise="texture"`` (fastwarp's default for the motion model) penalises ``1 - mask``
    instead: with a warp the edit is geometric and the texture is the fallback, so edits
    stay geometric wherever motion explains them (the premise of Athar et al. 2020).
    ``mask`` ``[N, 1, H, W]`` in [0, 1].

    Raises:
        ValueError: ``penalise`` not "input" or "texture".
    """
    if penalise == "input":
        return mask.mean()
    if penalise == "texture":
        return (1 - mask).mean()
    raise ValueError(f"mask penalty must be 'input' or 'texture', got {penalise!r}")


def mask_smoothness_loss(mask: Tensor) -> Tensor:
    """Total variation of the mask: sum of absolute differences of horizontally and
    vertically adjacent values per image, averaged over the batch (GANimation eq. 3, the
    smoothness term; λ = 1e-5 there, with this sum, not a mean)."""
    tv = (mask[..., 1:, :] - mask[..., :-1, :]).abs().flatten(1).sum(1)
    tv = tv + (mask[..., :, 1:] - mask[..., :, :-1]).abs().flatten(1).sum(1)
    return tv.mean()


def flow_smoothness_loss(flow: Tensor) -> Tensor:
    """Mean absolute difference of adjacent flow vectors, in pixels per pixel: a first-order
    smoothness prior on the deformation (Athar et al., FG 2020, flow regularisation; as in
    optical-flow estimation). ``flow`` ``[N, 2, H, W]``."""
    return (flow[..., 1:, :] - flow[..., :-1, :]).abs().mean() + (flow[..., :, 1:] - flow[..., :, :-1]).abs().mean()


def landmark_flow_loss(flow: Tensor, lm_src: Tensor, lm_tgt: Tensor, image_size: int | None = None) -> Tensor:
    """L1 (pixels of the image) between the backward flow sampled at the target frame's
    landmarks and the displacement to the same landmarks in the source frame: MediaPipe
    landmarks of both frames supervise the motion that a photometric loss leaves
    ambiguous (fastwarp's own term; L1, not smooth-L1, since most displacements are under
    a pixel, where a smooth-L1 is nearly flat).

    Args:
        flow (Tensor[N, 2, M, M]): backward flow in pixels of its own grid ``M``.
        lm_src, lm_tgt (Tensor[N, P, 2]): landmark (x, y) in pixels of the image.
        image_size: side of the image the landmarks refer to (default ``M``); the flow is
            scaled by ``image_size / M`` as fastwarp's kernels do when upsampling it.
    """
    size = flow.shape[-1]
    image_size = image_size or size
    scale = image_size / size
    # Pixel centre p of the image lies at (p + 0.5) / scale - 0.5 on the flow's grid
    # (F.interpolate, align_corners=False).
    pos = (lm_tgt + 0.5) / scale - 0.5
    grid = (pos / (size - 1) * 2 - 1)[:, None].to(flow.dtype)  # [N, 1, P, 2], align_corners=True
    sampled = F.grid_sample(flow, grid, mode="bilinear", padding_mode="border", align_corners=True)[:, :, 0]
    return (sampled.transpose(1, 2) * scale - (lm_src - lm_tgt)).abs().mean()


class PerceptualLoss(nn.Module):
    """L1 between VGG-16 features (relu1_2, relu2_2, relu3_3) of output and target
    (Johnson et al., "Perceptual Losses for Real-Time Style Transfer", ECCV 2016).

    Optional, and only with weights that load offline: ``weights`` is a safetensors file
    with torchvision's ``vgg16().features`` state dict keys (``0.weight``, ``0.bias``, ...,
    ``14.bias``); nothing is downloaded.

    Raises:
        FileNotFoundError: ``weights`` missing.
        ValueError: the file lacks a layer.
    """

    _CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256)
    _TAPS = (3, 8, 15)  # indices (in the torchvision features Sequential) after relu1_2, relu2_2, relu3_3

    def __init__(self, weights: str | Path) -> None:
        super().__init__()
        from safetensors.torch import load_file

        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(f"perceptual loss: VGG-16 weights not found: {path} (nothing is downloaded; "
                                    "set perceptual_weights to a local safetensors file or w_perceptual = 0)")
        layers: list[nn.Module] = []
        cin = 3
        for v in self._CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(cin, int(v), 3, padding=1), nn.ReLU()]
                cin = int(v)
        self.features = nn.Sequential(*layers)
        state = load_file(str(path))
        missing = [k for k in self.features.state_dict() if k not in state]
        if missing:
            raise ValueError(f"perceptual loss: {path} lacks VGG-16 layers {missing[:4]}")
        self.features.load_state_dict({k: state[k] for k in self.features.state_dict()})
        self.requires_grad_(False).eval()
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def forward(self, output: Tensor, target: Tensor) -> Tensor:
        x = torch.cat([output, target]).add(1).div(2).sub(self.mean).div(self.std)
        loss = output.new_zeros(())
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self._TAPS:
                a, b = x.chunk(2)
                loss = loss + (a - b).abs().mean()
            if i >= self._TAPS[-1]:
                break
        return loss
