"""Dataset dispatch, the data-stage configuration, and the reference 3-class counts of the real data."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from magplus_lib.data.clips import ClipList, DataError

# MEGC 2019 3-class counts on the real data (reference/datasets.md): a loader run on a full copy
# should print the same numbers in its summary.
REFERENCE_COUNTS = {
    "samm": {"samples": 133, "subjects": 28, "Negative": 92, "Positive": 26, "Surprise": 15},
    "casme3": {"samples": 699, "subjects": 88, "Negative": 457, "Positive": 55, "Surprise": 187},
    "casme2": {"samples": 145, "subjects": 24},
}
KNOWN = ("samm", "casme3", "casme2")


def check_direction(direction: str) -> None:
    """A magnifier direction is 'forward' (MagPlus) or 'inverse' (DeMagPlus)."""
    if direction not in ("forward", "inverse"):
        raise ValueError(f"direction must be 'forward' or 'inverse', got '{direction}'")


@dataclasses.dataclass
class DataConfig:
    """Profile `data:` section. Relative roots are resolved against the profile's results_dir."""

    roots: dict = dataclasses.field(default_factory=dict)  # dataset name (+ macro, generic) -> folder
    crop: dict = dataclasses.field(default_factory=dict)  # faces.CropConfig settings
    crop_cache: str = "data/crops"
    precrop: bool = True  # fill the crop cache at image_size in 00_data
    split: dict = dataclasses.field(default_factory=lambda: {"train": 0.6, "val": 0.2, "test": 0.2})
    generic_source: str | None = None  # folder of user videos (full); None -> synthetic generic pairs
    generic_pairs: int = 145000  # pairs to sample from generic_source (full)
    generic_filter: dict = dataclasses.field(default_factory=dict)  # synthme.GenericFilter settings

    def root(self, name: str, results_dir: str | Path) -> Path:
        if name not in self.roots or self.roots[name] in (None, ""):
            raise DataError(f"profile data.roots has no folder for '{name}' (it has {sorted(self.roots)})")
        return Path(results_dir) / self.roots[name]

    def inverse_pairs_root(self, results_dir: str | Path) -> Path:
        """Pairs of the DeMagPlus stages: `generic_inverse` when the profile has it, else `generic`."""
        return self.root("generic_inverse" if self.roots.get("generic_inverse") else "generic", results_dir)

    def pretrain_pairs_root(self, direction: str, results_dir: str | Path) -> Path:
        """Pairs a direction pretrains on (and its fine-tune replays): `generic` forward, else
        `inverse_pairs_root`."""
        check_direction(direction)
        return (
            self.inverse_pairs_root(results_dir)
            if direction == "inverse"
            else self.root("generic", results_dir)
        )

    def cache_dir(self, results_dir: str | Path) -> Path:
        return Path(results_dir) / self.crop_cache


def load_clips(name: str, root: str | Path, **kwargs) -> ClipList:
    """Clips of dataset `name` ('samm' | 'casme3' | 'casme2') read from `root`."""
    key = name.lower().replace("(", "").replace(")", "").replace("^", "").replace("_", "")
    if key == "samm":
        from magplus_lib.data.samm import load_samm

        return load_samm(root, **kwargs)
    if key in ("casme3", "casme3parta"):
        from magplus_lib.data.casme3 import load_casme3

        return load_casme3(root, **kwargs)
    if key == "casme2":
        from magplus_lib.data.casme2 import load_casme2

        return load_casme2(root, **kwargs)
    raise DataError(f"unknown dataset '{name}': known datasets are {list(KNOWN)}")


def folder_bytes(path: str | Path) -> int:
    """Total size of the files under `path` (0 when it does not exist)."""
    path = Path(path)
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def prepare(
    data: dict,
    synthme_cfg: dict | None,
    names: list[str],
    results_dir: str | Path,
    seed: int,
    image_size: int,
) -> dict:
    """The data stage: build (SynthME) or index (real data) the corpora, save splits, fill the crop cache.

    Returns {"clips": {name: ClipList}, "splits": {name: DataFrame}, "stamp": SynthME stamp or None,
    "seconds": {step: s}, "crop_stats": {...}}.
    """
    import time

    from tqdm.auto import tqdm

    from magplus_lib.data import faces, splits, synthme
    from magplus_lib.harness.profiles import from_dict

    dcfg = from_dict(DataConfig, data, "data")
    res = Path(results_dir)
    seconds, stamp = {}, None
    t0 = time.perf_counter()
    gfilter = from_dict(synthme.GenericFilter, dcfg.generic_filter, "data.generic_filter")
    if synthme_cfg:
        scfg = from_dict(synthme.SynthMEConfig, synthme_cfg, "synthme")
        out = res / "data"
        for key, folder in synthme.corpora(scfg).items():
            if key in dcfg.roots and dcfg.root(key, res).resolve() != (out / folder).resolve():
                raise DataError(f"data.roots.{key} = {dcfg.roots[key]!r}, but SynthME writes {out / folder}")
        stamp = synthme.generate_corpus(scfg, out, generic_filter=gfilter)
    elif dcfg.generic_source:
        groot = dcfg.root("generic", res)
        synthme.ensure_generic_pairs(dcfg.generic_source, groot, gfilter, dcfg.generic_pairs, seed)
    seconds["corpus"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    clips, split_tables = {}, {}
    for name in names:
        clips[name] = load_clips(name, dcfg.root(name, res))
        split_tables[name] = splits.make_subject_split(clips[name], dcfg.split, seed)
        splits.save_split(split_tables[name], res / "splits" / f"{name}.csv")
    seconds["index_and_split"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    if dcfg.precrop:
        every = [c for name in names for c in clips[name]]
        for c in tqdm(every, desc=f"face crops at {image_size}px"):
            faces.cropped_uint8(c, image_size, dcfg.cache_dir(res), dcfg.crop)
    seconds["crops"] = time.perf_counter() - t0
    return {
        "clips": clips,
        "splits": split_tables,
        "stamp": stamp,
        "seconds": seconds,
        "crop_stats": faces.crop_stats(),
        "config": dcfg,
    }
