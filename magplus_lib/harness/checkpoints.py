"""Loading weights into a model with an error that says exactly how a checkpoint does not fit."""

from __future__ import annotations

import os
from pathlib import Path

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


def safetensors_bytes(tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> bytes:
    """The safetensors file for `tensors`, with its JSON header's keys sorted.

    safetensors writes `metadata` from a hash map whose order changes from one process to the next, so
    equal tensors could give files of different sha256 (and cache checksums that never match). The
    header is re-serialised sorted and space-padded to the 8-byte alignment the format requires; the
    data section (and so every offset in the header) is unchanged.
    """
    import json
    import struct

    from safetensors.torch import save

    raw = save(tensors, metadata=metadata)
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + raw[8 + n :]


def save_safetensors(
    path: str | os.PathLike, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None
) -> Path:
    """Write `tensors` to `path` byte-reproducibly (sorted header), atomically, with the umask's mode."""
    from magplus_lib.harness.atomicio import write_bytes

    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    return write_bytes(path, safetensors_bytes(tensors, metadata))
