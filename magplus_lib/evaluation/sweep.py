"""Choosing alpha_MagPlus and alpha_DeMagPlus: the validation grid sweep and an automatic calibration.

The paper selects both factors "via a small validation sweep" per backbone and names the manual sweep
as a limitation. `run_grid` evaluates every (alpha_mag, alpha_demag) pair on validation subjects and
`select_pair` applies a named selection rule (default: best UAR, ties broken by |log MMR|).

Beyond the paper, `calibrate_alpha_demag` sets alpha_DeMagPlus without a grid: it measures the gain of
MagPlus -> backbone on validation clips (MMR of its output against the real drivers) and takes
alpha_DeMagPlus = 1 / gain, so that the full pipeline's MMR is 1 if DeMagPlus attenuates exactly as
asked; a few fixed-point corrections alpha <- alpha / MMR(alpha) then absorb DeMagPlus's own error.

Spurious motion. MMR only measures how much the output moves, not whether that motion is the driver's:
on a backbone whose output is nearly static (MMR << 1), a DeMagPlus that adds artefact motion raises
the MMR towards 1 and a "closest to 1" rule would reward it. So `CachedPipeline` also measures, per
alpha_demag, the motion DeMagPlus adds to the backbone's output for a static driver (each validation
clip's onset frame repeated), in MMR units, and `is_spurious` flags a DeMagPlus setting that raises
the motion it was asked to attenuate or whose added motion is a large share of its MMR;
`select_pair` never chooses a flagged row.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from tqdm.auto import tqdm

from magplus_lib.evaluation.metrics import log_mmr_distance
from magplus_lib.harness.atomicio import write_json

if TYPE_CHECKING:
    import torch

# Each rule: ordered criteria (column, "max" | "min"); "abs_log_mmr" is |log MMR|. Remaining ties go
# to the mildest processing (smallest alpha_mag, then alpha_demag closest to 1), so the choice is unique.
RULES: dict[str, list[tuple[str, str]]] = {
    "uar_then_logmmr": [("UAR", "max"), ("abs_log_mmr", "min")],
    "uf1_then_logmmr": [("UF1", "max"), ("abs_log_mmr", "min")],
    "logmmr_then_uar": [("abs_log_mmr", "min"), ("UAR", "max")],
}

# Fixed a priori (not tuned on the sweep's results). A DeMagPlus setting whose added motion on a
# motionless clip is at least half of the row's MMR means at least half of the measured motion could
# be DeMagPlus's own artefacts rather than the driver's motion; such an MMR says nothing about
# preserved motion. See `is_spurious`.
SPURIOUS_SHARE = 0.5


@dataclass
class SweepConfig:
    """Profile section `sweep:`. Alphas may be numbers or fractions written as strings ("1/3")."""

    alpha_mag: list = field(default_factory=lambda: [2, 3, 5, 7])
    alpha_demag: list = field(default_factory=lambda: [1, "1/2", "1/3", "1/5"])
    rule: str = "uar_then_logmmr"
    tie_tolerance: float = 1e-9  # scores closer than this count as a tie
    max_val_clips: int | None = None  # cap on validation drivers (time budget); None = all
    calibrate: bool = True  # also run the automatic calibration of alpha_DeMagPlus
    calibration_iterations: int = 2  # fixed-point corrections after alpha = 1 / gain


def parse_alpha(value) -> float:
    """A positive magnification factor from a number or a fraction string ("1/3")."""
    try:
        alpha = float(Fraction(str(value).strip())) if isinstance(value, str) else float(value)
    except (ValueError, ZeroDivisionError) as exc:
        raise ValueError(f"not a magnification factor: {value!r}") from exc
    if not alpha > 0 or not math.isfinite(alpha):
        raise ValueError(f"a magnification factor must be positive and finite, got {value!r}")
    return alpha


def run_grid(
    evaluate: Callable[[float, float], dict],
    alpha_mag_values: Sequence,
    alpha_demag_values: Sequence,
) -> pd.DataFrame:
    """Evaluate every pair; `evaluate(alpha_mag, alpha_demag)` returns at least UAR and MMR."""
    mags = [parse_alpha(a) for a in alpha_mag_values]
    demags = [parse_alpha(a) for a in alpha_demag_values]
    if not mags or not demags:
        raise ValueError("run_grid: empty alpha grid")
    rows = []
    for am, ad in tqdm([(am, ad) for am in mags for ad in demags], desc="alpha grid", leave=False):
        rows.append({"alpha_mag": am, "alpha_demag": ad, **evaluate(am, ad)})
    return pd.DataFrame(rows)


def is_spurious(
    alpha_demag: float, mmr: float, mmr_no_demag: float, static_added: float, share: float = SPURIOUS_SHARE
) -> bool:
    """Whether a grid row's MMR may move toward 1 only because DeMagPlus adds motion.

    A row with alpha_demag < 1 is spurious when DeMagPlus raises the motion it was asked to attenuate
    (MMR > MMR without DeMagPlus at the same alpha_MagPlus), or when the motion it adds to a static
    clip is at least `share` of the row's MMR (static_added >= share * MMR). alpha_demag = 1 means
    DeMagPlus is not run, so such a row is never spurious. NaN measurements flag nothing.
    """
    if not alpha_demag < 1:
        return False
    return bool(mmr > mmr_no_demag or static_added >= share * mmr)


def static_driver(frames: torch.Tensor, onset_pos: int) -> torch.Tensor:
    """A motionless driver with the clip's length: its onset frame repeated for every position."""
    return frames[onset_pos : onset_pos + 1].expand_as(frames).clone()


def select_pair(grid: pd.DataFrame, rule: str = "uar_then_logmmr", tie_tolerance: float = 1e-9) -> dict:
    """The selected grid row (as a dict) under `rule`; see RULES.

    When the grid has a `spurious` column (see `CachedPipeline`), flagged rows are excluded before the
    rule is applied and the result's `excluded_spurious` says how many; older grids without the column
    select exactly as before.
    """
    if rule not in RULES:
        raise ValueError(f"unknown selection rule '{rule}'; known rules: {sorted(RULES)}")
    if grid.empty:
        raise ValueError("select_pair: empty grid")
    df = grid.copy()
    excluded = None
    if "spurious" in df.columns:
        flagged = df["spurious"].eq(True)  # NaN (not measured) is not a flag
        excluded = int(flagged.sum())
        df = df[~flagged]
        if df.empty:
            raise ValueError(
                "select_pair: every grid row is flagged spurious; include alpha_demag = 1 (no DeMagPlus)"
            )
    df["abs_log_mmr"] = [log_mmr_distance(v) for v in df["MMR"]]
    for col, direction in RULES[rule]:
        if col not in df.columns:
            raise ValueError(
                f"select_pair: rule '{rule}' needs column '{col}', grid has {list(grid.columns)}"
            )
        values = df[col].astype(float)
        best = values.max() if direction == "max" else values.min()
        if math.isnan(best):
            continue
        df = df[(values - best).abs() <= tie_tolerance] if math.isfinite(best) else df[values == best]
    df = df.assign(_demag_dist=[abs(math.log(v)) for v in df["alpha_demag"]])
    df = df.sort_values(["alpha_mag", "_demag_dist"], kind="mergesort")
    row = df.iloc[0].drop(labels=["_demag_dist"]).to_dict()
    row["rule"] = rule
    if excluded is not None:
        row["excluded_spurious"] = excluded
    return row


class CachedPipeline:
    """Evaluate (alpha_mag, alpha_demag) pairs, running MagPlus -> backbone once per alpha_mag.

    `drive(i, alpha_mag)` returns the backbone output for validation driver i driven by its
    MagPlus-magnified version; `demag(frames, alpha_demag)` applies DeMagPlus; `score(outputs)` maps
    the list of generated clips to a metrics dict (UAR, UF1, Accuracy, MMR). All are injected, so the
    sweep logic is tested with stand-ins and the notebook passes the real modules.

    With `drive_static(i)` (the backbone output for validation driver i's static driver, see
    `static_driver`; no MagPlus) and `motion(outputs)` (per-clip motion of the outputs in MMR units:
    each clip's motion over its real driver's motion, at that driver's onset and targets), each row
    also gets MMR_no_demag, static_added and spurious (see `is_spurious`). Without them the rows are
    as before.
    """

    def __init__(
        self,
        n: int,
        drive: Callable,
        demag: Callable,
        score: Callable[[list], dict],
        drive_static: Callable | None = None,
        motion: Callable[[list], Sequence[float]] | None = None,
    ):
        if (drive_static is None) != (motion is None):
            raise ValueError("CachedPipeline: give both drive_static and motion, or neither")
        self.n, self.drive, self.demag, self.score = n, drive, demag, score
        self.drive_static, self.motion = drive_static, motion
        self._driven: dict[float, list] = {}
        self._gain: dict[float, float] = {}
        self._static: list | None = None
        self._static_base: list[float] | None = None
        self._added: dict[float, float] = {}

    def driven(self, alpha_mag: float) -> list:
        if alpha_mag not in self._driven:
            self._driven[alpha_mag] = [self.drive(i, alpha_mag) for i in range(self.n)]
        return self._driven[alpha_mag]

    def __call__(self, alpha_mag: float, alpha_demag: float) -> dict:
        row = self.score([self.demag(x, alpha_demag) for x in self.driven(alpha_mag)])
        if self.drive_static is None:
            return row
        mmr_no_demag = self.gain(alpha_mag)
        added = self.added_static(alpha_demag)
        spurious = is_spurious(alpha_demag, float(row["MMR"]), mmr_no_demag, added)
        return {**row, "MMR_no_demag": mmr_no_demag, "static_added": added, "spurious": spurious}

    def gain(self, alpha_mag: float) -> float:
        """MMR of MagPlus -> backbone (no DeMagPlus) against the real drivers."""
        if alpha_mag not in self._gain:
            self._gain[alpha_mag] = float(self.score(self.driven(alpha_mag))["MMR"])
        return self._gain[alpha_mag]

    def added_static(self, alpha_demag: float) -> float:
        """Mean over clips of the motion DeMagPlus at `alpha_demag` adds to the backbone's output for a
        static driver, in MMR units: [motion(DeMagPlus(B(static_i))) - motion(B(static_i))] / motion(real_i).

        A motionless driver should stay motionless, so anything DeMagPlus adds here is its own motion.
        The static outputs and their motion are computed once per clip and reused for every alpha.
        """
        if self.drive_static is None:
            raise ValueError("CachedPipeline.added_static needs drive_static and motion")
        if self._static is None:
            self._static = [self.drive_static(i) for i in range(self.n)]
            self._static_base = [float(m) for m in self.motion(self._static)]
        if alpha_demag not in self._added:
            with_demag = self.motion([self.demag(x, alpha_demag) for x in self._static])
            diffs = [float(m) - b for m, b in zip(with_demag, self._static_base, strict=True)]
            self._added[alpha_demag] = float(sum(diffs) / len(diffs))
        return self._added[alpha_demag]


def calibrate_alpha_demag(
    measure_mmr: Callable[[float], float],
    gain: float,
    alpha_min: float = 1 / 16,
    alpha_max: float = 1.0,
    iterations: int = 2,
    tolerance: float = 0.02,
) -> tuple[float, list[dict]]:
    """alpha_DeMagPlus that brings the pipeline's MMR to 1, and the trace of measurements.

    Start from 1 / `gain` (the measured MMR of MagPlus -> backbone), clipped to DeMagPlus's trained
    range [alpha_min, alpha_max]; then up to `iterations` times measure MMR(alpha) with
    `measure_mmr` and correct alpha <- alpha / MMR (exact when DeMagPlus's achieved attenuation is
    proportional to the requested one). Stops early when |log MMR| < tolerance. When the gain is
    below 1 (the backbone suppresses even the magnified motion), alpha stays at alpha_max and the MMR
    stays below 1: DeMagPlus cannot amplify, the remedy is a larger alpha_MagPlus.
    """
    if not gain > 0 or not math.isfinite(gain):
        raise ValueError(f"calibrate_alpha_demag: the measured gain must be positive and finite, got {gain}")

    def clip(a: float) -> float:
        return min(max(a, alpha_min), alpha_max)

    alpha = clip(1.0 / gain)
    trace = []
    value = measure_mmr(alpha)
    trace.append({"alpha_demag": alpha, "MMR": value})
    for _ in range(iterations):
        if not value > 0 or abs(math.log(value)) < tolerance:
            break
        new_alpha = clip(alpha / value)
        if new_alpha == alpha:
            break
        alpha = new_alpha
        value = measure_mmr(alpha)
        trace.append({"alpha_demag": alpha, "MMR": value})
    best = min(trace, key=lambda r: log_mmr_distance(r["MMR"]))
    return best["alpha_demag"], trace


def alpha_path(results_dir: str | Path, dataset: str, backbone: str) -> Path:
    return Path(results_dir) / "alpha" / f"{dataset}_{backbone}.json"


def save_alpha_choice(path: str | Path, choice: dict) -> Path:
    for key in ("dataset", "backbone", "selected"):
        if key not in choice:
            raise ValueError(f"alpha choice for {path} lacks '{key}'")
    return write_json(path, choice)


def load_alpha_choice(path: str | Path, use: str = "sweep") -> tuple[float, float]:
    """(alpha_mag, alpha_demag) from an alpha JSON: the sweep's pair or the calibrated one."""
    import json

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"alpha file {path} does not exist (run notebooks/05_alpha_sweep.py first)")
    choice = json.loads(path.read_text())
    if use == "sweep":
        sel = choice["selected"]
        return float(sel["alpha_mag"]), float(sel["alpha_demag"])
    if use == "calibrated":
        if not choice.get("calibrated"):
            raise ValueError(f"{path}: no calibrated alpha (run the sweep with sweep.calibrate: true)")
        cal = choice["calibrated"]
        return float(cal["alpha_mag"]), float(cal["alpha_demag"])
    raise ValueError(f"unknown alpha source '{use}'; use 'sweep' or 'calibrated'")
