"""The interface every face-animation backbone implements, its errors and its checkpoint files.

``Backbone.animate(source (3, H, W), driving (T, 3, H, W)) -> (T, 3, H, W)`` in [0, 1]: the source
identity performing the driver's motion, with driving frame 0 taken as the neutral reference (relative
motion). Each backbone declares its ``native_size``; ``animate`` resizes in and out, so callers work at
any resolution.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F


class BackboneError(ValueError):
    """A backbone that cannot be built or run: unknown name, missing checkpoint, bad input."""


def resize_frames(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, *size), bilinear with antialiasing when shrinking; identity if equal."""
    if tuple(frames.shape[-2:]) == tuple(size):
        return frames
    shrinking = size[0] < frames.shape[-2] or size[1] < frames.shape[-1]
    out = F.interpolate(frames, size=size, mode="bilinear", align_corners=False, antialias=shrinking)
    return out.clamp(0.0, 1.0)


def check_inputs(source: torch.Tensor, driving: torch.Tensor, who: str = "animate") -> None:
    if not isinstance(source, torch.Tensor) or source.dim() != 3 or source.shape[0] != 3:
        raise BackboneError(
            f"{who}: source must be a (3, H, W) tensor, got {getattr(source, 'shape', type(source))}"
        )
    if not isinstance(driving, torch.Tensor) or driving.dim() != 4 or driving.shape[1] != 3:
        raise BackboneError(
            f"{who}: driving must be a (T, 3, H, W) tensor, got {getattr(driving, 'shape', type(driving))}"
        )
    if driving.shape[0] < 1:
        raise BackboneError(f"{who}: driving has no frames")
    if not (source.is_floating_point() and driving.is_floating_point()):
        raise BackboneError(f"{who}: frames must be float tensors in [0, 1]")


class Backbone:
    """Base class: subclasses implement `_animate_native(source (1,3,S,S), driving (T,3,S,S))`."""

    name: str = "backbone"
    native_size: int | None = None  # None: run at the input resolution

    def __init__(self, device: torch.device | str = "cpu"):
        self.device = torch.device(device)

    def _animate_native(self, source: torch.Tensor, driving: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def animate(self, source: torch.Tensor, driving: torch.Tensor) -> torch.Tensor:
        check_inputs(source, driving, f"{self.name}.animate")
        out_hw = tuple(source.shape[-2:])
        size = (self.native_size, self.native_size) if self.native_size else out_hw
        src = resize_frames(source[None].float().to(self.device), size)
        drv = resize_frames(driving.float().to(self.device), size)
        out = self._animate_native(src, drv)
        if out.shape != drv.shape:
            raise BackboneError(
                f"{self.name}: produced {tuple(out.shape)} for a driver of {tuple(drv.shape)}"
            )
        return resize_frames(out.float(), out_hw).clamp(0.0, 1.0).to(source.device)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, native_size={self.native_size})"


class ModuleBackbone(Backbone):
    """A backbone backed by a torch module with `animate(source (1,3,S,S), driving (T,3,S,S))`."""

    def __init__(self, name: str, model: torch.nn.Module, native_size: int, device="cpu"):
        super().__init__(device)
        self.name = name
        self.model = model.to(self.device).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.native_size = int(native_size)

    def _animate_native(self, source, driving):
        return self.model.animate(source, driving)


def checkpoint_path(checkpoint_dir: str | os.PathLike, name: str) -> Path:
    """`<checkpoint_dir>/backbone_<name>.safetensors`."""
    return Path(checkpoint_dir) / f"backbone_{name}.safetensors"


def read_checkpoint_meta(path: Path) -> dict[str, Any]:
    side = path.with_suffix(".json")
    if not side.is_file():
        raise BackboneError(
            f"{side}: the metadata file of checkpoint {path.name} is missing; retrain the backbone"
        )
    try:
        return json.loads(side.read_text())
    except json.JSONDecodeError as exc:
        raise BackboneError(f"{side}: not valid JSON ({exc})") from exc


def load_safetensors_into(model: torch.nn.Module, path: str | os.PathLike) -> None:
    from safetensors.torch import load_file

    from magplus_lib.harness.checkpoints import load_state_dict_checked

    try:
        state = load_file(str(path))
    except Exception as exc:  # noqa: BLE001 - re-raised with the file name
        raise BackboneError(f"{path}: cannot be read as safetensors: {exc}") from exc
    load_state_dict_checked(model, state, str(path))
