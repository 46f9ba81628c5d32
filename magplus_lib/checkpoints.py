"""Loading weights into a model with an error that says exactly how a checkpoint does not fit."""

from __future__ import annotations

import torch
from torch import nn


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: unreadable, wrong layout, or wrong shapes for the model."""


def load_state_dict_checked(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """`model.load_state_dict(state, strict=True)`, but a mismatch raises CheckpointError naming the
    file (`source`), the model class and up to three missing, unexpected and mis-shaped tensors."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in sorted(own.items())
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or wrong:
        parts = []
        if wrong:
            parts.append(f"{len(wrong)} tensor(s) of the wrong shape, e.g. {wrong[:3]}")
        if missing:
            parts.append(f"{len(missing)} missing, e.g. {missing[:3]}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected, e.g. {unexpected[:3]}")
        raise CheckpointError(
            f"{source}: does not match the model ({type(model).__name__}): " + "; ".join(parts)
        )
    model.load_state_dict(state, strict=True)
