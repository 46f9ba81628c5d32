"""The fine-tuned magnifiers' accuracy on held-out synthetic clips, before and after a retraining.

    python benchmarks/magnifier_before_after.py BEFORE_COMMIT [--results results/default]

02 writes, per checkpoint, `metrics/magnifier_<magplus|demagplus>_<dataset>_clips.csv`: for every
held-out clip (MagPlus: the test subjects' micro clips; DeMagPlus: the macro clips) and alpha, the
achieved magnification (Farneback over the motion region, output / input) and the PSNR of the output
against SynthME's exactly magnified frame. This pairs the committed file of BEFORE_COMMIT with the one
in the working tree clip by clip and prints, per checkpoint and alpha: n, the median achieved /
requested before and after, and the paired mean changes (after - before) of the error
|log(achieved / requested)| (negative: more accurate) and of the PSNR against the exact frame, each
with a bootstrap 95% interval that resamples whole subjects. Issue 25 asks that this accuracy does not
get worse. Not a test: a measurement of two runs.
"""

from __future__ import annotations

import argparse
import io
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd

from magplus_lib.evaluation.stats import bootstrap
from magplus_lib.harness.profiles import REPO_ROOT


def committed_csv(commit: str, path: Path) -> pd.DataFrame:
    rel = path.resolve().relative_to(REPO_ROOT)
    text = subprocess.run(
        ["git", "show", f"{commit}:{rel}"], cwd=REPO_ROOT, check=True, capture_output=True, text=True
    ).stdout
    return pd.read_csv(io.StringIO(text), dtype={"clip": str})


def compare(before: pd.DataFrame, after: pd.DataFrame) -> pd.DataFrame:
    keys = ["clip", "alpha"]
    both = before.merge(after, on=keys, suffixes=("_before", "_after"), validate="one_to_one")
    if len(both) != len(before) or len(both) != len(after):
        raise ValueError(
            f"the two runs measured different clips: {len(before)} / {len(after)} rows, {len(both)} paired"
        )
    rows = []
    for alpha, g in both.groupby("alpha"):
        err = {k: np.abs(np.log(g[f"achieved_{k}"].clip(lower=1e-6) / alpha)) for k in ("before", "after")}
        subjects = g["clip"].str.split("_").str[0]  # SAMM 009_4_1, CAS(ME)^3 spNO.110_a_15
        d_err = bootstrap((err["after"] - err["before"]).to_numpy(), clusters=subjects.to_numpy())
        d_psnr = bootstrap(
            (g["psnr_output_after"] - g["psnr_output_before"]).to_numpy(), clusters=subjects.to_numpy()
        )
        rows.append(
            {
                "alpha": f"{alpha:.3g}",
                "n": len(g),
                "achieved/requested before": f"{(g['achieved_before'] / alpha).median():.3f}",
                "after": f"{(g['achieved_after'] / alpha).median():.3f}",
                "Δ |log error|": f"{d_err.value:+.3f} [{d_err.low:+.3f}, {d_err.high:+.3f}]",
                "PSNR vs exact before": f"{g['psnr_output_before'].median():.2f}",
                "PSNR after": f"{g['psnr_output_after'].median():.2f}",
                "Δ PSNR dB": f"{d_psnr.value:+.2f} [{d_psnr.low:+.2f}, {d_psnr.high:+.2f}]",
            }
        )
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before", help="the commit whose committed metrics are 'before'")
    ap.add_argument("--results", default=str(REPO_ROOT / "results" / "default"))
    args = ap.parse_args()
    metrics = Path(args.results) / "metrics"
    files = sorted(metrics.glob("magnifier_*_clips.csv"))
    if not files:
        raise SystemExit(f"{metrics}: no magnifier_*_clips.csv (run 02_finetune first)")
    for path in files:
        after = pd.read_csv(path, dtype={"clip": str})
        table = compare(committed_csv(args.before, path), after)
        print(f"\n{path.name} (before {args.before[:10]}, after: working tree)")
        print(table.to_string(index=False))


if __name__ == "__main__":
    main()
