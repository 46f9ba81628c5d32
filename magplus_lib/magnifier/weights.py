"""A magnifier's weights on disk: our safetensors checkpoints with their JSON side file, and FlowMag's
released generator converted to our module names and channel order.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import torch

from magplus_lib.harness.atomicio import write_json
from magplus_lib.harness.checkpoints import load_state_dict_checked, save_safetensors
from magplus_lib.magnifier.flow import FlowConfig
from magplus_lib.magnifier.model import FlowPriorMagUNet, MagUNet


def side_path(path: str | os.PathLike) -> Path:
    """The JSON side file of a checkpoint: same stem, .json."""
    return Path(path).with_suffix(".json")


def save_magnifier(model: MagUNet, path: str | os.PathLike, meta: dict | None = None) -> Path:
    """Write the weights (and BatchNorm buffers) as safetensors and `meta` + width to the JSON side file.

    Both are written atomically; the weights go first so that a side file never describes weights
    that are not on disk yet. A FlowPriorMagUNet's prior estimator settings go into both, so the
    weights file alone rebuilds the model.
    """
    model = getattr(model, "module", model)
    path = Path(path)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    arch = type(model).__name__
    meta = {**(meta or {}), "width": model.width, "embed_dim": model.embed_dim, "architecture": arch}
    metadata = {"width": str(model.width), "format": arch}
    if isinstance(model, FlowPriorMagUNet):
        meta["prior"] = dataclasses.asdict(model.prior)
        metadata["prior"] = json.dumps(meta["prior"], sort_keys=True)
    save_safetensors(path, tensors, metadata=metadata)
    write_json(side_path(path), meta)
    return path


def read_side(path: str | os.PathLike) -> dict:
    """The side-file metadata of a checkpoint ({} when there is none)."""
    p = side_path(path)
    if not p.is_file():
        return {}
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"checkpoint side file {p} is not valid JSON: {exc}") from exc


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open
    from safetensors.torch import load_file

    if not path.is_file():
        raise FileNotFoundError(f"magnifier checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as fh:
            metadata = fh.metadata() or {}
        return load_file(str(path)), metadata
    except Exception as exc:  # noqa: BLE001 - report any parse failure with the file name
        raise ValueError(f"{path} is not a readable safetensors checkpoint: {exc}") from exc


def load_magnifier(path: str | os.PathLike, device: str | torch.device = "cpu") -> MagUNet:
    """Load a MagUNet or FlowPriorMagUNet written by `save_magnifier` (the kind from the file's
    metadata, the width from the weights), in eval mode."""
    from magplus_lib.harness.profiles import from_dict

    path = Path(path)
    state, metadata = _read_safetensors(path)
    key = "down_layers.0.double_conv.0.weight"
    if key not in state or state[key].dim() != 4:
        raise ValueError(f"{path} is not a MagUNet checkpoint (no tensor '{key}')")
    width, embed_dim = int(state[key].shape[0]), int(state[key].shape[1]) - 6
    arch = metadata.get("format", "MagUNet")
    if arch == "MagUNet":
        model = MagUNet(width=width, embed_dim=embed_dim)
    elif arch == "FlowPriorMagUNet":
        try:
            prior = from_dict(FlowConfig, json.loads(metadata["prior"]), where=f"{path} prior")
        except (KeyError, json.JSONDecodeError) as exc:
            raise ValueError(
                f"{path}: a FlowPriorMagUNet checkpoint without readable prior settings"
            ) from exc
        model = FlowPriorMagUNet(prior, width=width, embed_dim=embed_dim)
    else:
        raise ValueError(f"{path}: unknown magnifier format '{arch}' (known: MagUNet, FlowPriorMagUNet)")
    load_state_dict_checked(model, state, str(path))
    return model.to(device).eval()


# ----------------------------------------------------------------------------------------------------
# FlowMag's released checkpoint
# ----------------------------------------------------------------------------------------------------

FLOWMAG_PREFIX = "module.generator."
# Our input channel c comes from FlowMag's channel FLOWMAG_FROM_OURS[c]: FlowMag interleaves
# (R0, R1, G0, G1, B0, B1), we stack (R0, G0, B0, R1, G1, B1); the embedding channels are unchanged.
FLOWMAG_FROM_OURS = [0, 2, 4, 1, 3, 5]


def convert_flowmag_state(raw: dict, source: str = "FlowMag checkpoint") -> dict[str, torch.Tensor]:
    """FlowMag's checkpoint dict (or its state_dict) -> a MagUNet state dict.

    Keeps the `module.generator.` entries without the prefix, drops the RAFT weights and everything else,
    and permutes the first convolution's six image input channels into our order.
    """
    state = raw.get("state_dict", raw) if isinstance(raw, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"{source}: expected a dict with a 'state_dict' mapping")
    out = {k[len(FLOWMAG_PREFIX) :]: v for k, v in state.items() if k.startswith(FLOWMAG_PREFIX)}
    if not out:
        # Tolerate checkpoints saved without DataParallel's `module.` prefix.
        out = {k[len("generator.") :]: v for k, v in state.items() if k.startswith("generator.")}
    if not out:
        raise ValueError(f"{source}: no '{FLOWMAG_PREFIX}*' generator weights found")
    first = "down_layers.0.double_conv.0.weight"
    if first not in out or out[first].dim() != 4 or out[first].shape[1] < 6:
        raise ValueError(f"{source}: generator has no usable '{first}'")
    w = out[first].clone()
    order = FLOWMAG_FROM_OURS + list(range(6, w.shape[1]))
    out[first] = w[:, order].contiguous()
    return {
        k: torch.as_tensor(v).float() if torch.is_floating_point(torch.as_tensor(v)) else v
        for k, v in out.items()
    }


def load_flowmag_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> MagUNet:
    """FlowMag's released checkpoint (torch pickle, loaded with weights_only=True) as a MagUNet."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"FlowMag checkpoint not found: {path}")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise ValueError(f"{path} could not be read as a torch checkpoint: {exc}") from exc
    state = convert_flowmag_state(raw, str(path))
    width = int(state["down_layers.0.double_conv.0.weight"].shape[0])
    model = MagUNet(width=width, embed_dim=int(state["down_layers.0.double_conv.0.weight"].shape[1]) - 6)
    load_state_dict_checked(model, state, str(path))
    return model.to(device).eval()


# ----------------------------------------------------------------------------------------------------
# Inference
# ----------------------------------------------------------------------------------------------------
