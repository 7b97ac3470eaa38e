"""Training configuration: one dataclass, read from a TOML or JSON file, overridden on the
command line (``--set key=value``). Defaults are GANimation's where GANimation has the
term (Pumarola et al., ECCV 2018: λ_gp 10, λ_AU 4000, λ_cycle 10, mask 0.1, mask TV 1e-5,
Adam 1e-4 with β = (0.5, 0.999), generator every 5 critic steps); the recipes in
``training/configs/`` change some of them for a CPU budget and say why.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["TrainConfig", "load_config", "apply_overrides"]


@dataclass
class TrainConfig:
    # --- data ---------------------------------------------------------------------------
    data: str = ""                 # dataset folder (`python -m training.data`) or GANimation layout
    out: str = ""                  # run folder: checkpoints, TensorBoard, summary
    val_fraction: float = 0.15     # share of videos (identities) held out
    max_pose_diff: float = 0.06    # training pairs: |Δyaw|, |Δpitch| at most this (radians)
    au_noise: float = 0.1          # unpaired (GANimation layout) targets: AUs of another image + N(0, σ)
    # --- model (fastwarp.models.EditorConfig) --------------------------------------------
    width: int = 64                # trunk width of both networks (GANimation: 64)
    res_blocks: int = 6            # residual blocks of both networks (GANimation: 6)
    map_size: int = 0              # grid of the networks' maps (0: the crop size; "lite": 64)
    use_motion: bool = True        # False: the texture-only ablation (GANimation: no flow)
    conditioning: str = "delta"    # "target" (GANimation) or "delta" (target - source AUs)
    max_flow: float = 0.15         # bound on |flow| as a fraction of the image size
    identity_gate: bool = False    # no AU change -> flow exactly 0, mask exactly 1 (EditorConfig)
    init_weights: str = ""         # start the editor from these weights (a checkpoint path or
                                   # bundled name; same architecture), e.g. to fine-tune
    # --- critic (training.critic.Critic) -------------------------------------------------
    critic_width: int = 64         # GANimation: 64
    critic_repeat: int = 6         # GANimation: 6 stride-2 layers at 128 px
    critic_max_width: int = 0      # channel cap (0: none, GANimation)
    # --- optimisation --------------------------------------------------------------------
    batch: int = 8                 # per process
    lr: float = 1e-4               # generator (GANimation: 1e-4)
    lr_critic: float = 1e-4        # critic (GANimation: 1e-4)
    beta1: float = 0.5
    beta2: float = 0.999
    template_lr_scale: float = 10.0  # learning-rate factor of the AU motion templates
    n_critic: int = 5              # critic steps per generator step (GANimation: 5)
    critic_warmup: int = 0         # first steps train the critic only (a new critic next to
                                   # initial weights: its AU head learns before it steers)
    max_steps: int = 0             # critic steps (iterations); 0: time budget only
    minutes: float = 0.0           # wall-clock budget over all resumes; 0: none
    seed: int = 0
    # --- loss weights ---------------------------------------------------------------------
    w_adv: float = 1.0             # WGAN generator term
    w_gp: float = 10.0             # gradient penalty (GANimation: 10)
    w_au: float = 4000.0           # AU regression, MSE of intensity / 5 (GANimation: 4000)
    w_cycle: float = 10.0          # cycle consistency (GANimation: 10)
    w_mask: float = 0.1            # mask mean (GANimation: 0.1)
    mask_penalty: str = "texture"  # "input" (GANimation) or "texture" (see objectives.mask_mean_loss)
    w_mask_tv: float = 1e-5        # mask total variation, summed (GANimation: 1e-5)
    w_rec: float = 10.0            # video-pair reconstruction (source edited to the target's AUs)
    w_flow_tv: float = 0.01        # flow smoothness
    w_landmark: float = 0.1        # landmark flow supervision (pixels)
    w_perceptual: float = 0.0      # VGG-16 perceptual term (needs perceptual_weights)
    perceptual_weights: str = ""   # local safetensors of torchvision's vgg16().features
    # --- machinery ------------------------------------------------------------------------
    device: str = "auto"           # "auto" (CUDA where available), "cpu", "cuda"
    amp: bool = True               # bfloat16 autocast on GPU (ignored on CPU)
    threads: int = 0               # torch CPU threads per process (0: torch's default)
    checkpoint_every: int = 100    # steps between checkpoints (and one at exit)
    keep_checkpoints: int = 2
    log_every: int = 10            # steps between TensorBoard scalars
    image_every: int = 200         # steps between TensorBoard image grids
    evaluate: bool = True          # evaluate held-out videos at the end (rank 0)
    save_every_rank: bool = False  # also write each rank's final weights (the DDP smoke test)
    notes: str = ""                # free text recorded with the weights
    extra: dict = field(default_factory=dict)

    def editor_config(self, image_size: int):
        from fastwarp.models import EditorConfig

        return EditorConfig(image_size=image_size, motion_width=self.width, motion_res_blocks=self.res_blocks,
                            texture_width=self.width, texture_res_blocks=self.res_blocks, max_flow=self.max_flow,
                            map_size=self.map_size, use_motion=self.use_motion, conditioning=self.conditioning,
                            identity_gate=self.identity_gate)

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad field."""
        if not self.data:
            raise ValueError("config: data is required (a dataset folder from `python -m training.data`, or a "
                             "GANimation-layout folder with imgs/ and aus_openface.pkl)")
        if not self.out:
            raise ValueError("config: out is required (the run folder)")
        if self.conditioning not in ("target", "delta"):
            raise ValueError(f"config: conditioning must be 'target' or 'delta', got {self.conditioning!r}")
        if self.mask_penalty not in ("input", "texture"):
            raise ValueError(f"config: mask_penalty must be 'input' or 'texture', got {self.mask_penalty!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"config: device must be 'auto', 'cpu' or 'cuda', got {self.device!r}")
        for name in ("batch", "n_critic", "checkpoint_every", "log_every", "image_every", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ValueError(f"config: {name} must be >= 1, got {getattr(self, name)}")
        if self.max_steps <= 0 and self.minutes <= 0:
            raise ValueError("config: set max_steps or minutes (or both), else training never stops")
        if self.w_perceptual > 0 and not self.perceptual_weights:
            raise ValueError("config: w_perceptual > 0 needs perceptual_weights (a local VGG-16 safetensors file; "
                             "nothing is downloaded)")


_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def _coerce(name: str, value: Any) -> Any:
    kind = type(getattr(TrainConfig(), name))
    if isinstance(value, str) and kind is not str:
        if kind is bool:
            low = value.lower()
            if low not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError(f"config: {name} must be true or false, got {value!r}")
            return low in ("1", "true", "yes")
        try:
            return kind(value)
        except ValueError:
            raise ValueError(f"config: {name} must be {kind.__name__}, got {value!r}") from None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind):
        raise ValueError(f"config: {name} must be {kind.__name__}, got {value!r}")
    return value


def apply_overrides(config: TrainConfig, values: dict[str, Any]) -> TrainConfig:
    """A copy of ``config`` with ``values`` set (strings are parsed to the field's type).

    Raises:
        ValueError: an unknown key or a value of the wrong type.
    """
    changes = {}
    for key, value in values.items():
        name = key.replace("-", "_")
        if name not in _FIELDS:
            raise ValueError(f"config: unknown key {key!r} (known: {', '.join(sorted(_FIELDS))})")
        changes[name] = _coerce(name, value) if name != "extra" else value
    return dataclasses.replace(config, **changes)


def load_config(path: str | Path | None, overrides: list[str] | None = None, **values: Any) -> TrainConfig:
    """Config from a TOML (``.toml``) or JSON file (keys at top level, or under
    ``[train]``), then ``values`` (non-None ones), then ``overrides`` (``"key=value"``).

    Raises:
        FileNotFoundError: ``path`` missing. ValueError: unparsable file, unknown key, bad
        value or a malformed override.
    """
    config = TrainConfig()
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"config file not found: {p}")
        try:
            raw = tomllib.loads(p.read_text()) if p.suffix == ".toml" else json.loads(p.read_text())
        except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"config file {p} does not parse: {exc}") from exc
        raw = raw.get("train", raw)
        # Relative paths in a config file are relative to the working directory (the repo).
        config = apply_overrides(config, raw)
    config = apply_overrides(config, {k: v for k, v in values.items() if v is not None})
    parsed = {}
    for item in overrides or []:
        if "=" not in item:
            raise ValueError(f"--set expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        parsed[key.strip()] = value.strip()
    return apply_overrides(config, parsed)
