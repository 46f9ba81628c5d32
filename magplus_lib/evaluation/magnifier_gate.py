"""The competence rule for the magnifiers (issue 25), as `backbones.competence` is for the backbones.

A fine-tuned MagPlus or DeMagPlus enters a table only once it beats returning the input unchanged on
02's real-frame check: face photographs the project never trains on, moved by known fields, where the
lower bound of the PSNR gain over the unmagnified frame must be above zero at every checked alpha and
size (`real_frames.summarise`'s `beats_input`). 02 writes one verdict per checkpoint,
`metrics/realframe_<prefix>_<dataset>.json`; the tables read them here. A pipeline setting that uses a
failed magnifier is left out of every table (or kept and flagged where the profile's gate only reports).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from magplus_lib.evaluation.reporting import DATASET_NAMES

NAMES = {"magplus": "MagPlus", "demagplus": "DeMagPlus"}


def verdict_path(metrics: str | Path, prefix: str, dataset: str) -> Path:
    return Path(metrics) / f"realframe_{prefix}_{dataset}.json"


def uses(setting: str) -> set[str]:
    """The magnifiers a generation setting runs ('magplus+demagplus' -> both, 'backbone' -> none)."""
    return set(setting.split("+")) & set(NAMES)


@dataclass
class MagnifierAdmission:
    """One dataset's fine-tuned magnifiers: which failed the real-frame check, and why."""

    dataset: str
    failed: dict[str, str] = field(default_factory=dict)  # prefix -> the failed cells
    enforced: bool = True  # failed magnifiers' settings are left out (else kept, flagged)

    def left_out(self, setting: str) -> bool:
        return self.enforced and bool(uses(setting) & set(self.failed))

    def apply(self, generated: pd.DataFrame) -> pd.DataFrame:
        """`generated` (06's per-clip rows) less the settings that use a failed magnifier."""
        keep = [not self.left_out(s) for s in generated["setting"]]
        return generated[keep]

    def note(self) -> str:
        """A sentence for captions ('' when both magnifiers beat the input)."""
        if not self.failed:
            return ""
        parts = "; ".join(
            f"{NAMES[p]} fine-tuned on {self.dataset} ({why})" for p, why in self.failed.items()
        )
        if self.enforced:
            return (
                f"Not better than returning the input on real photographs, so its rows are left out: {parts}."
            )
        kept = (
            "NOT better than returning the input on real photographs, kept only because this profile's gate"
        )
        return f"{kept} reports: {parts}."


def admitted(metrics: str | Path, dataset: str, enforced: bool = True) -> MagnifierAdmission:
    """Read 02's verdicts for `dataset`. A missing or unreadable verdict is an error naming the file:
    a magnifier that was never checked does not pass silently."""
    failed = {}
    for prefix in NAMES:
        path = verdict_path(metrics, prefix, dataset)
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} is missing: run notebooks/02_finetune.py for {dataset} ({prefix}), whose "
                "real-frame check admits the magnifier to the tables"
            )
        try:
            verdict = json.loads(path.read_text())
            beats, failing = verdict["beats_input"], verdict["failing"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ValueError(f"{path} is not a real-frame verdict ({e!r}); rerun 02_finetune") from e
        if not isinstance(beats, bool):
            raise ValueError(f"{path}: beats_input must be true or false, got {beats!r}")
        if not beats:
            failed[prefix] = "below the real-frame bar at " + (", ".join(failing) or "a checked cell")
    return MagnifierAdmission(dataset, failed, enforced)


DIRECTIONS = {"magplus": "forward", "demagplus": "inverse"}


def competence_table(metrics: str | Path, datasets: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One row per magnifier checkpoint (pretrained, then fine-tuned per dataset) over the real-frame
    check's checked cells (01's and 02's `realframe_*.csv`): achieved / exact range, the smallest PSNR
    gain over the input with its 95% interval, the largest colour shift and static excess, whether it
    meets issue 25's bar and whether it beats the input. Returns (values, the same as text cells)."""
    rows = []
    for prefix, direction in DIRECTIONS.items():
        sources = [("pretrained", Path(metrics) / f"realframe_pretrain_{direction}.csv")]
        sources += [
            (f"fine-tuned, {DATASET_NAMES.get(d, d)}", Path(metrics) / f"realframe_{prefix}_{d}.csv")
            for d in datasets
        ]
        for what, path in sources:
            if not path.is_file():
                raise FileNotFoundError(
                    f"{path} is missing: the real-frame check of {NAMES[prefix]} ({what})"
                )
            summary = pd.read_csv(path)
            checked = summary[summary["checked"].astype(bool)]
            if checked.empty:
                raise ValueError(f"{path} has no row at the bar's alphas")
            worst = checked.loc[checked["psnr_gain"].idxmin()]
            rows.append(
                {
                    "magnifier": f"{NAMES[prefix]} {what}",
                    "cells": ", ".join(f"{a:.3g}@{s}" for a, s in zip(checked["alpha"], checked["size"])),
                    "n": int(checked["n"].min()),
                    "ratio_min": checked["ratio_to_exact"].min(),
                    "ratio_max": checked["ratio_to_exact"].max(),
                    "psnr_gain_min": worst["psnr_gain"],
                    "psnr_gain_min_low": worst["psnr_gain_low"],
                    "psnr_gain_min_high": worst["psnr_gain_high"],
                    "colour_shift_max": checked["colour_shift_max"].max(),
                    "static_excess_px_max": checked["static_excess_px"].max(),
                    "meets_bar": bool(checked["passes"].astype(bool).all()),
                    "beats_input": bool(checked["beats_input"].astype(bool).all()),
                }
            )
    values = pd.DataFrame(rows)
    shown = pd.DataFrame(
        {
            "magnifier": values["magnifier"],
            "cells (alpha@px)": values["cells"],
            "n": values["n"],
            "achieved / exact": [
                f"{lo:.2f}-{hi:.2f}" for lo, hi in zip(values["ratio_min"], values["ratio_max"])
            ],
            "smallest PSNR gain (dB)": [
                f"{v:+.2f} [{lo:+.2f}, {hi:+.2f}]"
                for v, lo, hi in zip(
                    values["psnr_gain_min"], values["psnr_gain_min_low"], values["psnr_gain_min_high"]
                )
            ],
            "colour shift (max)": values["colour_shift_max"].map(lambda v: f"{v:.2f}"),
            "static excess px (max)": values["static_excess_px_max"].map(lambda v: f"{v:.2f}"),
            "meets bar": values["meets_bar"].map({True: "yes", False: "NO"}),
            "beats input": values["beats_input"].map({True: "yes", False: "NO"}),
        }
    )
    return values, shown
