"""The magnifier on real photographs with a known motion: the check a magnifier must pass (issue 25).

Two real faces the project never trains on: matplotlib's `grace_hopper.jpg` and scikit-image's
`astronaut.png` (held out of `texture_pairs`), each cut to its Haar face box. Each is moved by `fields`
known smooth fields (`known_motion.deformation_example`, peak `peak_px` working pixels) and magnified
by each alpha; the output is compared with the exactly magnified frame (`known_motion.measure_real_frame`):

* `ratio_to_exact` = motion achieved / motion read the same way (Farneback) on the exact frame;
* `psnr_gain` = PSNR(output, exact) - PSNR(input frame, exact): what magnifying adds over returning
  the input unchanged (the trivial baseline);
* `colour_shift_max` = the largest |mean change| of a channel where nothing moves (0-255 levels);
* `static_excess_px` = motion read where nothing moves in the output minus in the exact frame.

Each is summarised per size and alpha by its median over faces x fields with a bootstrap 95% interval.
A magnifier *beats the input* when the PSNR gain's interval lies above 0 at every checked alpha and
size; it *meets the bar* when, in addition, the medians satisfy `RealFrameBar`.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import torch

from magplus_lib.evaluation import stats
from magplus_lib.magnifier import known_motion

# name -> (package, file): a real face photograph that ships with a dependency
EVALUATION_FACES = {
    "grace_hopper": ("matplotlib", "grace_hopper.jpg"),
    "astronaut": ("skimage", "astronaut.png"),
}


# Requested factors and the peak of the known field (working pixels): micro motion for MagPlus, the
# motion of a magnified or macro clip for DeMagPlus.
ALPHAS = {"forward": (2.0, 3.0, 5.0, 7.0, 10.0), "inverse": (1 / 2, 1 / 3, 1 / 5)}
PEAK_PX = {"forward": 0.4, "inverse": 2.0}


@dataclasses.dataclass
class RealFrameBar:
    """Issue 25's bar (fixed before measuring), checked at `alphas` (the direction's) and every size."""

    ratio_tolerance: float = 0.10
    psnr_gain_db: float = 4.0
    colour_shift: float = 1.0
    static_excess_px: float = 0.05
    forward_alphas: tuple = (3.0, 5.0)
    inverse_alphas: tuple = (1 / 3,)

    def alphas(self, direction: str) -> tuple:
        return self.forward_alphas if direction == "forward" else self.inverse_alphas


def face_patch(name: str, crop=None) -> torch.Tensor:
    """The face box (`faces.face_box`) of one of EVALUATION_FACES, (3, S, S) float in [0, 1]."""
    import cv2

    from magplus_lib.data.faces import face_box

    if name not in EVALUATION_FACES:
        raise ValueError(f"unknown evaluation face {name!r}; known: {sorted(EVALUATION_FACES)}")
    package, file = EVALUATION_FACES[name]
    if package == "matplotlib":
        from matplotlib import cbook

        path = cbook.get_sample_data(file, asfileobj=False)
    else:
        from magplus_lib.data.texture_pairs import image_folder

        path = image_folder() / file
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(f"{path}: missing or unreadable evaluation image")
    rgb = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    box = face_box(rgb, crop, where=str(path))
    patch = np.ascontiguousarray(rgb[box.y0 : box.y0 + box.side, box.x0 : box.x0 + box.side])
    return torch.from_numpy(patch).permute(2, 0, 1).float() / 255


def measure(model, patches: dict, sizes, alphas, peak_px: float, fields: int = 8) -> pd.DataFrame:
    """One row per face, size, field and alpha (`known_motion.measure_real_frame`'s keys plus the
    derived `psnr_gain`, `colour_shift_max`, `static_excess_px`). Field k of every face uses seed k."""
    rows = []
    for face, patch in patches.items():
        for size in sizes:
            for seed in range(fields):
                ex = known_motion.deformation_example(patch, size, alphas, peak_px, seed)
                for a in alphas:
                    row = known_motion.measure_real_frame(model, ex, a)
                    rows.append({"face": face, "size": int(size), "field": seed, **row})
    df = pd.DataFrame(rows)
    df["psnr_gain"] = df["psnr_output"] - df["psnr_unmagnified"]
    df["colour_shift_max"] = df[["colour_shift_r", "colour_shift_g", "colour_shift_b"]].abs().max(axis=1)
    df["static_excess_px"] = df["static_motion_px"] - df["static_motion_exact_px"]
    return df


SUMMARY_COLUMNS = (
    "ratio_to_exact",
    "psnr_output",
    "psnr_unmagnified",
    "psnr_gain",
    "colour_shift_max",
    "static_excess_px",
)


def summarise(df: pd.DataFrame, bar: RealFrameBar, direction: str) -> pd.DataFrame:
    """Per size and alpha: n, and for each of SUMMARY_COLUMNS the median with its 95% interval
    (`<col>`, `<col>_low`, `<col>_high`); `checked` marks the bar's alphas; `passes` whether a checked
    row meets the bar."""
    checked = [float(a) for a in bar.alphas(direction)]
    rows = []
    for (size, alpha), g in df.groupby(["size", "alpha"], sort=True):
        row = {"size": int(size), "alpha": float(alpha), "n": len(g)}
        for col in SUMMARY_COLUMNS:
            values = g[col].dropna().to_numpy()
            if not len(values):
                row |= {col: float("nan"), f"{col}_low": float("nan"), f"{col}_high": float("nan")}
                continue
            est = stats.bootstrap(values, np.median)
            row |= {col: est.value, f"{col}_low": est.low, f"{col}_high": est.high}
        row["checked"] = any(abs(row["alpha"] - a) < 1e-6 for a in checked)
        row["beats_input"] = row["psnr_gain_low"] > 0
        row["passes"] = bool(
            abs(row["ratio_to_exact"] - 1) <= bar.ratio_tolerance
            and row["psnr_gain"] >= bar.psnr_gain_db
            and row["colour_shift_max"] <= bar.colour_shift
            and row["static_excess_px"] <= bar.static_excess_px
        )
        rows.append(row)
    return pd.DataFrame(rows)


def table(summary: pd.DataFrame) -> pd.DataFrame:
    """`summarise`'s rows for reading: each measure as "median [low, high]"."""
    out = summary[["size", "alpha", "n"]].copy()
    out["alpha"] = out["alpha"].map(lambda a: f"{a:.3g}")
    for col in SUMMARY_COLUMNS:
        out[col] = [
            f"{v:.2f} [{lo:.2f}, {hi:.2f}]"
            for v, lo, hi in zip(summary[col], summary[f"{col}_low"], summary[f"{col}_high"])
        ]
    out["bar checked"] = summary["checked"].map({True: "yes", False: ""})
    out["meets bar"] = [
        ("yes" if p else "NO") if c else "" for p, c in zip(summary["passes"], summary["checked"])
    ]
    return out


def verdict(summary: pd.DataFrame) -> dict:
    """{"beats_input", "meets_bar", "failing": [...]} over the checked rows of `summarise`."""
    checked = summary[summary["checked"]]
    if checked.empty:
        raise ValueError("real-frame verdict: no row at the bar's alphas (were they measured?)")
    label = [f"alpha {r.alpha:.3g} at {r.size} px" for r in checked.itertuples()]
    return {
        "beats_input": bool(checked["beats_input"].all()),
        "meets_bar": bool(checked["passes"].all()),
        "failing": [lab for lab, ok in zip(label, checked["passes"]) if not ok],
    }


def check(model, direction: str, size: int, crop=None, fields: int = 8, bar: RealFrameBar | None = None):
    """The whole check for one magnifier: every evaluation face, at `size` and twice it, the direction's
    ALPHAS and PEAK_PX. Returns (rows, summary, verdict)."""
    bar = bar or RealFrameBar()
    patches = {name: face_patch(name, crop) for name in EVALUATION_FACES}
    rows = measure(model, patches, [size, 2 * size], ALPHAS[direction], PEAK_PX[direction], fields)
    summary = summarise(rows, bar, direction)
    return rows, summary, verdict(summary) | {"bar": dataclasses.asdict(bar), "direction": direction}


def montage(model, patch: torch.Tensor, size: int, alpha: float, peak_px: float, seed: int = 0):
    """Input, exact, output and |output - exact| (and |input - exact| for scale), x4 differences."""
    import matplotlib.pyplot as plt

    from magplus_lib.magnifier.inference import magnify_sequence

    ex = known_motion.deformation_example(patch, size, [alpha], peak_px, seed)
    exact = ex["truth"][float(alpha)]
    out = magnify_sequence(model, torch.stack([ex["frame0"], ex["frame1"]]), alpha, tile=None)[1]
    panels = {
        "input frame": ex["frame1"],
        f"exact x{alpha:.3g}": exact,
        "ours": out,
        "|ours - exact| x4": ((out - exact).abs() * 4),
        "|input - exact| x4": ((ex["frame1"] - exact).abs() * 4),
    }
    fig, axes = plt.subplots(1, len(panels), figsize=(2.0 * len(panels), 2.3))
    for ax, (title, img) in zip(axes, panels.items()):
        ax.imshow(img.clamp(0, 1).permute(1, 2, 0).numpy())
        ax.set_title(title, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    return fig
