"""Generated clips cached on disk, each under a key that hashes what it depends on (its inputs' file and
tensor digests), so that a rerun regenerates only the clips whose inputs changed.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path

import torch

from magplus_lib.harness.atomicio import write_json
from magplus_lib.harness.checkpoints import save_safetensors

# ---- caching ----
_FILE_HASHES: dict[tuple[str, int, int], str] = {}


def fingerprint_file(path: str | Path | None) -> str | None:
    """sha256 of a file's content (memoised by path, size and mtime); None stays None."""
    if path is None:
        return None
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"cannot fingerprint {path}: no such file")
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _FILE_HASHES:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        _FILE_HASHES[key] = h.hexdigest()
    return _FILE_HASHES[key]


def fingerprint_tensor(t: torch.Tensor) -> str:
    t = t.detach().cpu().contiguous()
    return hashlib.sha256(str(tuple(t.shape)).encode() + t.numpy().tobytes()).hexdigest()


def cache_key(inputs: dict) -> str:
    """A stable hash of JSON-serialisable inputs (sorted keys)."""
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()


def safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(name))


def generated_path(results_dir: str | Path, dataset: str, backbone: str, setting: str, clip_id: str) -> Path:
    return (
        Path(results_dir)
        / "generated"
        / dataset
        / backbone
        / safe_name(setting)
        / f"{safe_name(clip_id)}.safetensors"
    )


def to_uint8(frames: torch.Tensor) -> torch.Tensor:
    return (frames.detach().float().cpu().clamp(0, 1) * 255.0 + 0.5).to(torch.uint8)


def save_generated(path: str | Path, frames: torch.Tensor, meta: dict) -> None:
    """uint8 frames (T, 3, H, W) as safetensors and `meta` (onset/apex positions, key, ...) as JSON."""
    path = Path(path)
    if frames.ndim != 4 or frames.shape[1] != 3:
        raise ValueError(f"save_generated: frames must be (T, 3, H, W), got {tuple(frames.shape)}")
    save_safetensors(path, {"frames": to_uint8(frames)})
    write_json(path.with_suffix(".json"), meta)


def load_generated(path: str | Path) -> tuple[torch.Tensor, dict]:
    """(frames float32 (T, 3, H, W) in [0, 1], metadata)."""
    from safetensors.torch import load_file

    path = Path(path)
    side = path.with_suffix(".json")
    if not path.is_file() or not side.is_file():
        raise FileNotFoundError(f"generated clip {path} (or its side file {side.name}) does not exist")
    frames = load_file(str(path))["frames"]
    return frames.float() / 255.0, json.loads(side.read_text())


def generate_cached(
    path: str | Path, key_inputs: dict, make: Callable[[], torch.Tensor], meta: dict | None = None
) -> tuple[torch.Tensor, dict, bool]:
    """(frames, metadata, reused): reuse the stored clip when its key matches, else call `make()`."""
    path = Path(path)
    key = cache_key(key_inputs)
    side = path.with_suffix(".json")
    if path.is_file() and side.is_file():
        try:
            stored = json.loads(side.read_text())
        except json.JSONDecodeError:
            stored = {}
        if stored.get("key") == key:
            frames, stored = load_generated(path)
            return frames, stored, True
    frames = make()
    full_meta = {**(meta or {}), "key": key, "inputs": key_inputs}
    save_generated(path, frames, full_meta)
    return to_uint8(frames).float() / 255.0, full_meta, False
