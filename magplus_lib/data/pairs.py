"""Frame-pair and clip datasets: (onset, frame t) micro pairs for fine-tuning, generic pretraining pairs,
and whole cropped clips for generation and evaluation."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import ConcatDataset, Dataset, Subset

from magplus_lib.data.clips import Clip, DataError
from magplus_lib.data.faces import CropConfig, as_config, cropped_uint8


class _ClipCache:
    """Cropped clips as uint8 arrays, loaded on first use (crops are cached on disk by faces).

    npy caches are memory-mapped, so a large training set costs page cache, not process memory; other
    arrays are kept for the `keep` most recently used clips.
    """

    def __init__(self, clips, size, cache_dir, crop, keep: int = 64):
        self.clips, self.size, self.cache_dir, self.crop = list(clips), size, cache_dir, crop
        self.keep = keep
        self.mem: OrderedDict[int, np.ndarray] = OrderedDict()

    def get(self, i: int) -> np.ndarray:
        if i in self.mem:
            self.mem.move_to_end(i)
            return self.mem[i]
        arr = cropped_uint8(self.clips[i], self.size, self.cache_dir, self.crop, mmap=True)[0]
        npy = as_config(self.crop).cache_format == "npy"
        if self.cache_dir is not None and npy and not isinstance(arr, np.memmap):
            # first computation: reopen from the cache as a memory map
            arr = cropped_uint8(self.clips[i], self.size, self.cache_dir, self.crop, mmap=True)[0]
        self.mem[i] = arr
        if len(self.mem) > self.keep and not isinstance(arr, np.memmap):
            self.mem.popitem(last=False)
        return arr


def _to_tensor(u8: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(u8, copy=True)).permute(2, 0, 1).float().div_(255.0)


class MicroPairDataset(Dataset):
    """(I0, It) float32 (3, size, size) in [0, 1]: the onset frame and frame t, t in onset+1..offset.

    `include_onset` adds the identity pair t = onset; `max_pairs_per_clip` keeps an evenly spaced
    subset of t per clip (deterministic). Frames are face-cropped (one box per clip) and cached.
    """

    def __init__(
        self,
        clips: list[Clip],
        size: int,
        cache_dir: str | Path | None,
        crop: CropConfig | dict | None = None,
        include_onset: bool = False,
        max_pairs_per_clip: int | None = None,
    ):
        if not clips:
            raise DataError("MicroPairDataset: no clips (empty split part?)")
        self.cache = _ClipCache(clips, size, cache_dir, crop)
        self.items: list[tuple[int, int, int]] = []
        for i, c in enumerate(clips):
            o, e = c.onset_index, c.offset_index
            ts = list(range(o if include_onset else o + 1, e + 1))
            if max_pairs_per_clip and len(ts) > max_pairs_per_clip:
                ts = [ts[int(k)] for k in np.linspace(0, len(ts) - 1, max_pairs_per_clip).round()]
            self.items += [(i, o, t) for t in ts]
        if not self.items:
            raise DataError("MicroPairDataset: the clips have no frame after their onset")

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, k: int):
        i, o, t = self.items[k]
        arr = self.cache.get(i)
        return _to_tensor(arr[o]), _to_tensor(arr[t])


class ClipDataset(Dataset):
    """Whole cropped clips: (frames (T, 3, size, size) float32, clip index)."""

    def __init__(
        self,
        clips: list[Clip],
        size: int,
        cache_dir: str | Path | None,
        crop: CropConfig | dict | None = None,
    ):
        self.clips = list(clips)
        self.cache = _ClipCache(clips, size, cache_dir, crop)

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int):
        arr = np.array(self.cache.get(i), copy=True)
        return torch.from_numpy(arr).permute(0, 3, 1, 2).float().div_(255.0), i


class GenericPairDataset(Dataset):
    """Generic pretraining pairs listed in root/pairs.csv: (I0, I1) float32 (3, size, size) in [0, 1]."""

    def __init__(self, root: str | Path, size: int):
        import pandas as pd

        self.root, self.size = Path(root), size
        index = self.root / "pairs.csv"
        if not index.is_file():
            raise DataError(f"{index}: generic pair index not found (run notebooks/00_data.py)")
        df = pd.read_csv(index)
        missing = {"frame0", "frame1"} - set(df.columns)
        if missing:
            raise DataError(f"{index}: missing column(s) {sorted(missing)}")
        if df.empty:
            raise DataError(f"{index}: no pairs (every candidate failed the flow filter?)")
        self.pairs = list(zip(df["frame0"], df["frame1"]))

    def __len__(self) -> int:
        return len(self.pairs)

    def _read(self, rel: str) -> torch.Tensor:
        import cv2

        p = self.root / rel
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img is None:
            raise DataError(f"{p}: missing or unreadable pair frame")
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        if img.shape[:2] != (self.size, self.size):
            img = cv2.resize(img, (self.size, self.size), interpolation=cv2.INTER_AREA)
        return _to_tensor(img)

    def __getitem__(self, k: int):
        a, b = self.pairs[k]
        return self._read(a), self._read(b)


def with_replay(pairs: Dataset, replay: Dataset, share: float) -> Dataset:
    """`pairs` plus evenly spaced pairs of `replay`, so that about `share` of the result is replayed
    (capped at all of `replay`); share 0 returns `pairs` itself."""
    if not 0.0 <= share < 1.0:
        raise ValueError(f"replay share must be in [0, 1), got {share}")
    n = min(len(replay), round(len(pairs) * share / (1.0 - share)))
    if n == 0:
        return pairs
    keep = np.linspace(0, len(replay) - 1, n).round().astype(int).tolist()
    return ConcatDataset([pairs, Subset(replay, keep)])


def finetune_pairs(
    micro: Dataset, max_pairs: int | None, replay: Dataset | None = None, share: float = 0.0
) -> Dataset:
    """A fine-tuning set: at most `max_pairs` evenly spaced micro pairs (so every training clip keeps
    some), plus `share` replayed from `replay` (`with_replay`) when one is given."""
    pairs = micro
    if max_pairs is not None and len(micro) > max_pairs:
        keep = np.linspace(0, len(micro) - 1, max_pairs).round().astype(int).tolist()
        pairs = Subset(micro, keep)
    if replay is not None and share:
        pairs = with_replay(pairs, replay, share)
    return pairs


def changing_pairs(pairs: Dataset, min_mse: float) -> Dataset:
    """The pairs whose two frames differ by a mean squared error above `min_mse` on the 0-255 scale
    (FlowMag's pair filter keeps MSE > 10; reference/flowmag.md), as a Subset in their order.

    A diagnostic for the fine-tuning set (`benchmarks/finetune_trajectory.py --micro-min-mse`): about
    half of SynthME's micro pairs at 64 px are below 10, frames only just after the onset or before
    the offset. Raises DataError when no pair is left."""
    keep = [
        k for k in range(len(pairs)) if float(((pairs[k][0] - pairs[k][1]) ** 2).mean()) * 255**2 > min_mse
    ]
    if not keep:
        raise DataError(f"no pair differs by more than MSE {min_mse:g} (0-255 scale) among {len(pairs)}")
    return Subset(pairs, keep)
