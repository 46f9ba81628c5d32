"""Backbones that passed the competence gate but then failed to run (05 sweep, 06 generation).

An external backbone can pass 03 and still fail later, e.g. its official script runs out of GPU memory
on a longer clip. Such a failure costs that backbone its rows, not the stage: 05 and 06 record it in
``<results>/metrics/backbones_failed_<dataset>.json`` and go on with the others; 06, 07 and 08 then
treat it like a backbone that could not be built (`competence.Admission.unavailable`), so every caption
says which backbone was left out and why. Each table reads the records of the datasets it shows (the
ones `make` runs before it); the figures, which follow every dataset, read all.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from magplus_lib.backbones.competence import Admission
from magplus_lib.harness.atomicio import write_json


def failures_path(metrics_dir: str | Path, dataset: str) -> Path:
    return Path(metrics_dir) / f"backbones_failed_{dataset}.json"


def reset(metrics_dir: str | Path, dataset: str) -> None:
    """Start a dataset's record afresh (05 does, before sweeping): failures of an earlier run go."""
    write_json(failures_path(metrics_dir, dataset), {})


def record(metrics_dir: str | Path, dataset: str, backbone: str, stage: str, reason: str) -> None:
    """Add `backbone`'s failure in `stage` to the dataset's record (written atomically)."""
    path = failures_path(metrics_dir, dataset)
    current = read(metrics_dir, [dataset]) if path.is_file() else {}
    current[backbone] = f"{stage} on {dataset}: {reason}"
    write_json(path, current)


def read(metrics_dir: str | Path, datasets: list[str]) -> dict[str, str]:
    """{backbone: why} over the datasets' records (a missing record = no failure: 05 has not run)."""
    out: dict[str, str] = {}
    for d in datasets:
        path = failures_path(metrics_dir, d)
        if not path.is_file():
            continue
        try:
            found = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(
                f"{path} is not a failures record ({exc}); rerun notebooks/05_alpha_sweep.py"
            ) from exc
        if not isinstance(found, dict):
            raise ValueError(
                f"{path} is not a failures record (a JSON object); rerun notebooks/05_alpha_sweep.py"
            )
        for name, why in found.items():
            out[name] = "; ".join(filter(None, [out.get(name), why]))
    return out


def without_failed(gate: Admission, failed: dict[str, str]) -> Admission:
    """`gate` with the failed backbones moved from `admitted` to `unavailable`."""
    hit = {b: why for b, why in failed.items() if b in gate.admitted}
    return dataclasses.replace(
        gate,
        admitted=[b for b in gate.admitted if b not in hit],
        unavailable={**gate.unavailable, **{b: f"failed at run time, {why}" for b, why in hit.items()}},
    )
