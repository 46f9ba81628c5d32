"""The registry that builds the frozen facial-animation backbones by name from the profile.

``Backbone.animate(source (3, H, W), driving (T, 3, H, W)) -> (T, 3, H, W)`` in [0, 1]: the source
identity performing the driver's motion, with driving frame 0 taken as the neutral reference (relative
motion). Each backbone declares its ``native_size``; ``animate`` resizes in and out, so callers work at
any resolution.

Names (the profile's ``backbones_list``):
- ``fomm``: our First Order Motion Model (magplus_lib.backbones.fomm); the official vox-256 weights when
  ``backbones.fomm.checkpoint`` is set, else the study's checkpoint ``backbone_fomm.safetensors``.
- ``latent``: the latent-expression family (magplus_lib.backbones.latent), study checkpoint
  ``backbone_latent``.
- ``emolatent``: the same architecture trained with an added expression-category objective on its code
  (EmoPortraits-style; magplus_lib.backbones.latent.EmoLatentAnimator), study checkpoint
  ``backbone_emolatent``.
- ``landmark``: driven by a landmark tracker through landmark images (MetaPortrait's family;
  magplus_lib.backbones.landmark), study checkpoint ``backbone_landmark``.
- ``flowwarp``: training-free; Farneback flow from driving frame t back to frame 0 is used to backward-warp
  the source (SynthME faces share a canonical layout, so the driver's flow field fits the source).
- ``fsrt``, ``metaportrait``, ``emoportraits``: subprocess adapters over the user's checkout of the
  official repository (magplus_lib.backbones.external).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from magplus_lib.backbones.base import (
    Backbone,
    BackboneError,
    ModuleBackbone,
    checkpoint_path,
    load_safetensors_into,
    read_checkpoint_meta,
)
from magplus_lib.backbones.flowwarp import FlowWarpBackbone, FlowWarpConfig
from magplus_lib.harness.profiles import from_dict

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
    from magplus_lib.backbones.fomm import FOMM, FOMMConfig, load_official_fomm

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
    from magplus_lib.backbones.latent import LatentAnimator, LatentConfig

    return LatentAnimator, LatentConfig


def _emolatent_classes():
    from magplus_lib.backbones.latent import EmoLatentAnimator, EmoLatentConfig

    return EmoLatentAnimator, EmoLatentConfig


def _landmark_classes():
    from magplus_lib.backbones.landmark import LandmarkAnimator, LandmarkConfig

    return LandmarkAnimator, LandmarkConfig


def _build_flowwarp(cfg: BackbonesConfig, checkpoint_dir, device) -> Backbone:
    return FlowWarpBackbone(from_dict(FlowWarpConfig, cfg.flowwarp, "backbones.flowwarp"), device)


def _build_external(name: str):
    def build(cfg: BackbonesConfig, checkpoint_dir, device) -> Backbone:
        from magplus_lib.backbones import external

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
    from magplus_lib.harness.checkpoints import CheckpointError

    built, unavailable = {}, {}
    for name in names:
        try:
            built[name] = build_backbone(name, cfg, checkpoint_dir, device)
        except (BackboneError, CheckpointError, FileNotFoundError) as exc:
            unavailable[name] = str(exc)
    return built, unavailable
