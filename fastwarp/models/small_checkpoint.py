"""Checkpoints of the small mesh-path models (:class:`~fastwarp.models.landmark_motion.LandmarkMotion`,
:class:`~fastwarp.models.mesh_texture.MeshTexture`): ``<path>.safetensors`` (the state dict)
and ``<path>.json`` (the dataclass config), each written atomically; never a pickle."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from .._io import atomic_path

__all__ = ["checkpoint_base", "load_small", "save_small", "SmallModel"]


def checkpoint_base(path: str | os.PathLike) -> Path:
    """``path`` without a ``.safetensors`` / ``.json`` suffix."""
    p = Path(path)
    return p.with_suffix("") if p.suffix in (".safetensors", ".json") else p


def save_small(module: nn.Module, path: str | os.PathLike) -> None:
    """Write ``module.state_dict()`` and ``asdict(module.config)`` next to each other."""
    base = checkpoint_base(path)
    base.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(base.with_suffix(".safetensors")) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}, str(tmp))
    with atomic_path(base.with_suffix(".json")) as tmp:
        Path(tmp).write_text(json.dumps(asdict(module.config), indent=2) + "\n")


def load_small(cls, config_cls, path: str | os.PathLike, what: str, map_location: str | torch.device = "cpu"):
    """``cls(config_cls(**json))`` with the saved weights, in eval mode on ``map_location``.

    Raises:
        FileNotFoundError: a file is missing (named ``what``). ValueError: weights and config
            disagree.
    """
    base = checkpoint_base(path)
    for suffix in (".json", ".safetensors"):
        if not base.with_suffix(suffix).is_file():
            raise FileNotFoundError(f"{what} checkpoint not found: {base.with_suffix(suffix)}")
    model = cls(config_cls(**json.loads(base.with_suffix(".json").read_text())))
    try:
        model.load_state_dict(load_file(str(base.with_suffix(".safetensors"))))
    except RuntimeError as e:
        raise ValueError(f"{base}.safetensors does not match {base}.json: {str(e).splitlines()[0]}") from None
    return model.to(map_location).eval()


class SmallModel(nn.Module):
    """A module with :meth:`save` / :meth:`load` through :func:`save_small` / :func:`load_small`;
    subclasses set ``config_class`` (a dataclass, kept as ``self.config``) and
    ``checkpoint_what`` (named in errors)."""

    config_class: type = object
    checkpoint_what: str = "model"

    def save(self, path: str | os.PathLike) -> None:
        """Write ``<path>.safetensors`` and ``<path>.json`` (each atomically)."""
        save_small(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike, map_location: str | torch.device = "cpu"):
        """Load a checkpoint written by :meth:`save`, in eval mode.

        Raises:
            FileNotFoundError: a file is missing. ValueError: weights and config disagree.
        """
        return load_small(cls, cls.config_class, path, cls.checkpoint_what, map_location)
