"""Frozen facial-animation backbones behind one interface, and the registry that builds them by name.

``Backbone.animate(source (3, H, W), driving (T, 3, H, W)) -> (T, 3, H, W)`` in [0, 1]: the source
identity performing the driver's motion, with driving frame 0 taken as the neutral reference (relative
motion). Each backbone declares its ``native_size``; ``animate`` resizes in and out, so callers work at
any resolution.

Names (the profile's ``backbones_list``):
- ``fomm``: our First Order Motion Model (magplus_lib.fomm); the official vox-256 weights when
  ``backbones.fomm.checkpoint`` is set, else the study's checkpoint ``backbone_fomm.safetensors``.
- ``latent``: the latent-expression family (magplus_lib.latent), study checkpoint ``backbone_latent``.
- ``emolatent``: the same architecture trained with an added expression-category objective on its code
  (EmoPortraits-style; magplus_lib.latent.EmoLatentAnimator), study checkpoint ``backbone_emolatent``.
- ``landmark``: driven by a landmark tracker through landmark images (MetaPortrait's family;
  magplus_lib.landmark), study checkpoint ``backbone_landmark``.
- ``flowwarp``: training-free; Farneback flow from driving frame t back to frame 0 is used to backward-warp
  the source (SynthME faces share a canonical layout, so the driver's flow field fits the source).
- ``fsrt``, ``metaportrait``, ``emoportraits``: subprocess adapters over the user's checkout of the
  official repository (magplus_lib.external).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .profiles import from_dict


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


@dataclass
class FlowWarpConfig:
    size: int | None = None  # working size; None = the input size
    winsize: int = 15  # Farneback window (the study's evaluation uses 15)


class FlowWarpBackbone(Backbone):
    """Training-free reference: out_t = warp(source, Farneback flow(driving_t -> driving_0))."""

    name = "flowwarp"

    def __init__(self, cfg: FlowWarpConfig | None = None, device="cpu"):
        super().__init__("cpu")  # Farneback runs on the CPU whatever the device
        self.cfg = cfg or FlowWarpConfig()
        self.native_size = self.cfg.size

    def _animate_native(self, source, driving):
        from .flow import farneback_flow, warp

        ref = driving[0]
        frames = []
        for t in range(driving.shape[0]):
            # Flow on frame t's grid pointing to where each pixel sits in frame 0: sampling the source
            # there moves it the way the driver moved from frame 0 to frame t.
            flow = farneback_flow(driving[t], ref, winsize=self.cfg.winsize)
            flow_t = torch.from_numpy(flow).permute(2, 0, 1)[None].to(source.dtype)
            frames.append(warp(source, flow_t))
        return torch.cat(frames, dim=0)


# ----------------------------------------------------------------------------------------------------
# configuration and registry


@dataclass
class BackbonesConfig:
    """The profile's `backbones:` section; each entry is turned into its module's config on use."""

    train: dict[str, Any] = field(default_factory=dict)
    training_set: dict[str, Any] = field(default_factory=dict)  # backbone_data.TrainingSetConfig
    fomm: dict[str, Any] = field(default_factory=dict)
    latent: dict[str, Any] = field(default_factory=dict)
    emolatent: dict[str, Any] = field(default_factory=dict)
    landmark: dict[str, Any] = field(default_factory=dict)
    flowwarp: dict[str, Any] = field(default_factory=dict)
    fsrt: dict[str, Any] = field(default_factory=dict)
    metaportrait: dict[str, Any] = field(default_factory=dict)
    emoportraits: dict[str, Any] = field(default_factory=dict)
    eval: dict[str, Any] = field(
        default_factory=dict
    )  # notebook settings (backbone_training.BackboneEvalConfig)
    competence: dict[str, Any] = field(default_factory=dict)  # competence.CompetenceConfig


def as_backbones_config(cfg: BackbonesConfig | dict | None) -> BackbonesConfig:
    if isinstance(cfg, BackbonesConfig):
        return cfg
    return from_dict(BackbonesConfig, cfg or {}, "backbones")


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


def _require_checkpoint(checkpoint_dir, name: str) -> Path:
    if checkpoint_dir is None:
        raise BackboneError(f"backbone '{name}' needs checkpoint_dir (results/<profile>/checkpoints)")
    path = checkpoint_path(checkpoint_dir, name)
    if not path.is_file():
        raise BackboneError(
            f"backbone '{name}': checkpoint {path} is missing; train it first with "
            f"notebooks/03_backbones.py (make backbones)"
        )
    return path


def _build_fomm(cfg: BackbonesConfig, checkpoint_dir, device) -> Backbone:
    from .fomm import FOMM, FOMMConfig, load_official_fomm

    fcfg = from_dict(FOMMConfig, cfg.fomm, "backbones.fomm")
    if fcfg.checkpoint:
        model = load_official_fomm(fcfg.checkpoint, fcfg, device)
        return ModuleBackbone("fomm", model, fcfg.image_size, device)
    path = _require_checkpoint(checkpoint_dir, "fomm")
    meta = read_checkpoint_meta(path)
    model_cfg = from_dict(FOMMConfig, meta["model_config"], f"{path.with_suffix('.json')}: model_config")
    model_cfg.batch_size = fcfg.batch_size
    model = FOMM(model_cfg)
    load_safetensors_into(model, path)
    return ModuleBackbone("fomm", model, meta["native_size"], device)


def _build_study_module(name: str, classes):
    """Builder for a backbone the study trains; `classes()` imports its (model, config) classes.

    The checkpoint's side file holds the model config. (Imports stay explicit `from .x import` lines,
    which the Makefile's dependency scan of the notebooks' library imports reads.)
    """

    def build(cfg: BackbonesConfig, checkpoint_dir, device) -> Backbone:
        model_class, config_class = classes()
        path = _require_checkpoint(checkpoint_dir, name)
        meta = read_checkpoint_meta(path)
        model_cfg = from_dict(config_class, meta["model_config"], str(path.with_suffix(".json")))
        model = model_class(model_cfg)
        load_safetensors_into(model, path)  # emolatent: its expression classifier too (unused here)
        return ModuleBackbone(name, model, meta["native_size"], device)

    return build


def _latent_classes():
    from .latent import LatentAnimator, LatentConfig

    return LatentAnimator, LatentConfig


def _emolatent_classes():
    from .latent import EmoLatentAnimator, EmoLatentConfig

    return EmoLatentAnimator, EmoLatentConfig


def _landmark_classes():
    from .landmark import LandmarkAnimator, LandmarkConfig

    return LandmarkAnimator, LandmarkConfig


def _build_flowwarp(cfg: BackbonesConfig, checkpoint_dir, device) -> Backbone:
    return FlowWarpBackbone(from_dict(FlowWarpConfig, cfg.flowwarp, "backbones.flowwarp"), device)


def _build_external(name: str):
    def build(cfg: BackbonesConfig, checkpoint_dir, device) -> Backbone:
        from . import external

        return external.build_external(name, getattr(cfg, name), device)

    return build


BUILDERS = {
    "fomm": _build_fomm,
    "latent": _build_study_module("latent", _latent_classes),
    "flowwarp": _build_flowwarp,
    "emolatent": _build_study_module("emolatent", _emolatent_classes),
    "landmark": _build_study_module("landmark", _landmark_classes),
    "fsrt": _build_external("fsrt"),
    "metaportrait": _build_external("metaportrait"),
    "emoportraits": _build_external("emoportraits"),
}


def build_backbone(
    name: str,
    cfg: BackbonesConfig | dict | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    device: torch.device | str = "cpu",
) -> Backbone:
    """Build backbone `name` from the profile's `backbones` section and the study's checkpoint folder."""
    if name not in BUILDERS:
        raise BackboneError(f"unknown backbone '{name}'; known backbones: {', '.join(BUILDERS)}")
    cfg = as_backbones_config(cfg)
    unset = sorted(set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", json.dumps(getattr(cfg, name, {})))))
    if unset:  # a backbone left out of backbones_list keeps its ${VAR}s unexpanded (profiles.load_profile)
        raise BackboneError(f"backbone '{name}' needs {', '.join(unset)} set (see the profile's env_help)")
    return BUILDERS[name](cfg, checkpoint_dir, torch.device(device))


def build_available(
    names: list[str],
    cfg: BackbonesConfig | dict | None,
    checkpoint_dir: str | os.PathLike | None,
    device: torch.device | str = "cpu",
) -> tuple[dict[str, Backbone], dict[str, str]]:
    """({name: backbone} built, {name: why not}) for `names`: one absent checkout, unset path or
    unreadable checkpoint leaves that backbone out (with its reason) instead of stopping the others."""
    from .checkpoints import CheckpointError

    built, unavailable = {}, {}
    for name in names:
        try:
            built[name] = build_backbone(name, cfg, checkpoint_dir, device)
        except (BackboneError, CheckpointError, FileNotFoundError) as exc:
            unavailable[name] = str(exc)
    return built, unavailable


def load_safetensors_into(model: torch.nn.Module, path: str | os.PathLike) -> None:
    from safetensors.torch import load_file

    from .checkpoints import load_state_dict_checked

    try:
        state = load_file(str(path))
    except Exception as exc:  # noqa: BLE001 - re-raised with the file name
        raise BackboneError(f"{path}: cannot be read as safetensors: {exc}") from exc
    load_state_dict_checked(model, state, str(path))
