"""Tables and figures of the paper (section 5), with the paper's reported numbers beside ours.

Tables are written as CSV (full precision), Markdown and LaTeX (rounded), figures as PNG and PDF, all
atomically and without timestamps in their metadata so that a rerun on the same machine with the same
seed rewrites identical files. The paper's numbers come from `reference/paper_tables.csv`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from magplus_lib.harness.atomicio import atomic_path, write_text

REPO_ROOT = Path(__file__).resolve().parents[2]
PAPER_TABLES = REPO_ROOT / "reference" / "paper_tables.csv"
METRICS = ["UAR", "UF1", "Accuracy", "MMR"]
PAPER_SUFFIX = " (paper)"
DATASET_NAMES = {"samm": "SAMM", "casme3": "CAS(ME)^3", "casme2": "CASME II"}
BACKBONE_NAMES = {
    "fomm": "FOMM",
    "fsrt": "FSRT",
    "metaportrait": "MetaPortrait",
    "emoportraits": "EmoPortraits",
    "latent": "Latent",
    "emolatent": "EmoLatent",
    "landmark": "Landmark",
    "flowwarp": "FlowWarp",
    "fomm_me": "FOMM-ME (FOMM fine-tuned on ME)",
    "latent_me": "Latent-ME (fine-tuned on ME)",
    "fpb_fomm": "FPB FOMM",
    "tps_fp": "TPS FP",
}


def display_name(backbone: str) -> str:
    return BACKBONE_NAMES.get(backbone, backbone)


def load_paper_tables(path: str | Path = PAPER_TABLES) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"paper reference table {path} does not exist")
    df = pd.read_csv(path, comment="#")
    missing = [c for c in ["table", "dataset", "method", *METRICS] if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: lacks columns {missing}")
    return df


# ---- writers ----
def _numeric(col: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)


def _fmt(value, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float | np.floating):
        return f"{value:.{digits}f}"
    return str(value)


def _tex_escape(text: str) -> str:
    text = str(text).replace("\\", r"\textbackslash{}")
    for ch in "&%$#_{}":
        text = text.replace(ch, "\\" + ch)
    # CAS(ME)^3 reads as a superscript; any other caret is printed literally.
    text = text.replace("^3", "\x00").replace("^", r"\textasciicircum{}").replace("\x00", "$^3$")
    # Greek letters and signs of the tables' notes and Δ rows, for a plain pdflatex build
    for uni, tex in (("Δ", r"$\Delta$"), ("α", r"$\alpha$"), ("−", "$-$"), ("≥", r"$\geq$")):
        text = text.replace(uni, tex)
    return text.replace("–", "--")


def to_markdown(df: pd.DataFrame, digits: int = 3, caption: str | None = None) -> str:
    cols = list(df.columns)
    lines = [f"{caption}\n"] if caption else []
    lines.append("| " + " | ".join(cols) + " |")
    lines.append("|" + "|".join("---:" if _numeric(df[c]) else "---" for c in cols) + "|")
    for _, row in df.iterrows():
        lines.append("| " + " | ".join(_fmt(row[c], digits) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def to_latex(df: pd.DataFrame, digits: int = 3, caption: str | None = None, label: str | None = None) -> str:
    cols = list(df.columns)
    spec = "".join("r" if _numeric(df[c]) else "l" for c in cols)
    lines = [r"\begin{table}[t]", r"\centering", r"\small", rf"\begin{{tabular}}{{{spec}}}", r"\toprule"]
    lines.append(" & ".join(_tex_escape(c) for c in cols) + r" \\")
    lines.append(r"\midrule")
    for _, row in df.iterrows():
        lines.append(" & ".join(_tex_escape(_fmt(row[c], digits)) for c in cols) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    if caption:
        lines.append(rf"\caption{{{_tex_escape(caption)}}}")
    if label:
        lines.append(rf"\label{{{label}}}")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def write_table(
    df: pd.DataFrame,
    stem: str,
    out_dir: str | Path,
    caption: str | None = None,
    digits: int = 3,
    display: pd.DataFrame | None = None,
) -> dict[str, Path]:
    """`<out_dir>/<stem>.csv` (values rounded to 6 decimals), `.md` and `.tex` (rounded to `digits`),
    the latter two from `display` (e.g. cells written as 'value [low, high]') when it is given."""
    out_dir = Path(out_dir)
    if df.empty:
        raise ValueError(f"write_table: table '{stem}' has no rows")
    csv_df = df.copy()
    for c in csv_df.columns:
        if _numeric(csv_df[c]):
            csv_df[c] = csv_df[c].astype(float).round(6)
    paths = {ext: out_dir / f"{stem}.{ext}" for ext in ("csv", "md", "tex")}
    write_text(paths["csv"], csv_df.to_csv(index=False, lineterminator="\n"))
    shown = df if display is None else display
    write_text(paths["md"], to_markdown(shown, digits, caption))
    write_text(paths["tex"], to_latex(shown, digits, caption, label=f"tab:{stem}"))
    return paths


def save_figure(fig, stem: str, out_dir: str | Path, dpi: int = 150) -> dict[str, Path]:
    """`<out_dir>/<stem>.png` and `.pdf`, written atomically with no timestamp metadata."""
    out_dir = Path(out_dir)
    paths = {ext: out_dir / f"{stem}.{ext}" for ext in ("png", "pdf")}
    with atomic_path(paths["png"]) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", metadata={"Software": None})
    with atomic_path(paths["pdf"]) as tmp:
        fig.savefig(
            tmp,
            bbox_inches="tight",
            metadata={"CreationDate": None, "ModDate": None, "Producer": None, "Creator": None},
        )
    return paths


# ---- figures ----
def motion_box(frames, onset_pos: int, apex_pos: int, frac: float = 0.3) -> tuple[int, int, int, int]:
    """(x0, y0, w, h) of the square window (side frac * width) with the most onset->apex Farneback motion."""
    import cv2

    from magplus_lib.magnifier.flow import farneback_flow

    flow = farneback_flow(frames[onset_pos], frames[apex_pos])
    mag = np.sqrt((flow**2).sum(-1))
    h, w = mag.shape
    k = max(3, int(round(frac * w)))
    k = min(k, h, w)
    score = cv2.boxFilter(mag, -1, (k, k), normalize=True, borderType=cv2.BORDER_CONSTANT)
    half = k // 2
    valid = score[half : h - (k - half) + 1, half : w - (k - half) + 1]
    y, x = np.unravel_index(int(np.argmax(valid)), valid.shape)
    return int(x), int(y), k, k


def _show(ax, img, box=None, title=None):
    import matplotlib.patches as patches

    arr = img.detach().cpu().float().clamp(0, 1).permute(1, 2, 0).numpy() if hasattr(img, "detach") else img
    ax.imshow(arr, interpolation="nearest")
    if box is not None:
        x, y, w, h = box
        ax.add_patch(patches.Rectangle((x - 0.5, y - 0.5), w, h, fill=False, edgecolor="red", linewidth=1.5))
    if title:
        ax.set_title(title, fontsize=8)
    ax.axis("off")


def figure_examples(examples: Sequence[dict], title: str | None = None):
    """Figure 1 / 4: rows of (source, MagPlus driver, generated micro-expression); box marks the motion.

    Each example: {"source", "driver", "generated"} images (3, H, W) and optional "box", "label".
    """
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(examples), 3, figsize=(6, 2.1 * len(examples)), squeeze=False)
    for i, ex in enumerate(examples):
        heads = ("source", "MagPlus driver", "generated") if i == 0 else (None, None, None)
        _show(axes[i, 0], ex["source"], None, heads[0])
        _show(axes[i, 1], ex["driver"], ex.get("box"), heads[1])
        _show(axes[i, 2], ex["generated"], ex.get("box"), heads[2])
        if ex.get("label"):
            _row_label(axes[i, 0], ex["label"])
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def figure_loss_curves(history: pd.DataFrame, title: str, columns=("loss", "loss_mag", "loss_color")):
    """A magnifier's training log: each loss term per step (faint) and its running mean over 1/20 of
    the run."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(columns), figsize=(11, 3))
    for ax, col in zip(axes, columns):
        if len(history):
            ax.plot(history["step"], history[col], lw=0.6, alpha=0.4)
            ax.plot(history["step"], history[col].rolling(max(1, len(history) // 20), min_periods=1).mean())
        ax.set_title(col)
        ax.set_xlabel("step")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def _row_label(ax, text: str) -> None:
    """A small vertical label left of a figure row."""
    ax.text(-0.05, 0.5, text, transform=ax.transAxes, rotation=90, ha="right", va="center", fontsize=7)


def figure_alpha(rows: Sequence[dict], title: str | None = None):
    """Figure 3: per clip, the apex frame magnified at each alpha.

    Each row: {"frames": {alpha: image (3, H, W)}, "box": optional motion box, "label": optional text,
    "exact": optional (alpha, image), the exactly magnified frame, shown last}.
    """
    import matplotlib.pyplot as plt

    alphas = list(rows[0]["frames"])
    exact = rows[0].get("exact")
    cols = len(alphas) + (exact is not None)
    fig, axes = plt.subplots(len(rows), cols, figsize=(2 * cols, 2.1 * len(rows)), squeeze=False)
    for i, row in enumerate(rows):
        for j, a in enumerate(alphas):
            head = (f"alpha = {a:g}" if a != 1 else "input apex") if i == 0 else None
            _show(axes[i, j], row["frames"][a], row.get("box"), head)
        if exact is not None:
            a, img = row["exact"]
            _show(axes[i, -1], img, row.get("box"), f"exact alpha = {a:g}" if i == 0 else None)
        if row.get("label"):
            _row_label(axes[i, 0], row["label"])
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def _alpha_label(a: float) -> str:
    return f"1/{1 / a:.3g}" if a < 1 else f"{a:g}"


def figure_heatmaps(grid: pd.DataFrame, title: str = "", selected: dict | None = None):
    """UAR and MMR over the alpha grid (rows alpha_MagPlus, columns alpha_DeMagPlus); MMR on a log scale;
    cells flagged spurious by the sweep are hatched, the selected one is framed."""
    import matplotlib.pyplot as plt
    import seaborn as sns
    from matplotlib.colors import TwoSlopeNorm

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, metric in zip(axes, ["UAR", "MMR"]):
        table = (
            grid.pivot(index="alpha_mag", columns="alpha_demag", values=metric)
            .sort_index()
            .sort_index(axis=1)
        )
        labels = dict(
            xticklabels=[_alpha_label(a) for a in table.columns],
            yticklabels=[_alpha_label(a) for a in table.index],
        )
        if metric == "MMR":
            vals = np.log2(table.clip(lower=1e-3))
            lim = max(float(np.abs(vals.values).max()), 1e-3)
            sns.heatmap(
                vals,
                annot=table.values,
                fmt=".2f",
                cmap="RdBu_r",
                norm=TwoSlopeNorm(0, -lim, lim),
                ax=ax,
                cbar_kws={"label": "log2 MMR (0 = real motion)"},
                **labels,
            )
        else:
            sns.heatmap(table, annot=True, fmt=".2f", cmap="viridis", vmin=0, vmax=1, ax=ax, **labels)
        ax.set_xlabel("alpha_DeMagPlus")
        ax.set_ylabel("alpha_MagPlus")
        ax.set_title(f"{metric} {title}", fontsize=9)
        if "spurious" in grid.columns:  # cells the sweep may not choose: DeMagPlus made their motion
            flags = grid.pivot(index="alpha_mag", columns="alpha_demag", values="spurious")
            for r, am in enumerate(table.index):
                for c, ad in enumerate(table.columns):
                    if bool(flags.loc[am, ad]):
                        ax.add_patch(
                            plt.Rectangle((c, r), 1, 1, fill=False, hatch="//", edgecolor="grey", lw=0)
                        )
        if selected is not None:
            r = list(table.index).index(selected["alpha_mag"])
            c = list(table.columns).index(selected["alpha_demag"])
            ax.add_patch(plt.Rectangle((c, r), 1, 1, fill=False, edgecolor="black", lw=2))
    fig.tight_layout()
    return fig


def figure_mmr_bars(scores: pd.DataFrame, settings: Sequence[str] = ("backbone", "magplus+demagplus")):
    """MMR per backbone and setting with its 95% interval (columns MMR, MMR low, MMR high, n), one panel
    per dataset, log scale with the ideal MMR = 1 marked."""
    import matplotlib.pyplot as plt

    data = scores[scores["setting"].isin(settings)]
    datasets = list(dict.fromkeys(data["dataset"]))
    backbones = list(dict.fromkeys(data["backbone"]))
    width = max(4.5, 0.9 * len(backbones) + 1.0)  # room for every backbone's bars and label
    fig, axes = plt.subplots(1, len(datasets), figsize=(width * len(datasets) + 1.6, 3.4), squeeze=False)
    colours = plt.get_cmap("tab10")
    bar = 0.8 / max(len(settings), 1)
    for ax, d in zip(axes[0], datasets):
        part = data[data["dataset"] == d].set_index(["backbone", "setting"])
        for j, s in enumerate(settings):
            rows = [(i, part.loc[(b, s)]) for i, b in enumerate(backbones) if (b, s) in part.index]
            x = np.array([i for i, _ in rows]) + (j - (len(settings) - 1) / 2) * bar
            mid = np.array([r["MMR"] for _, r in rows], dtype=float)
            err = np.array([[m - r["MMR low"], r["MMR high"] - m] for m, (_, r) in zip(mid, rows)]).T
            ax.bar(x, mid, bar, yerr=err.reshape(2, -1), capsize=2, color=colours(j), label=s)
        n = int(part["n"].max()) if len(part) else 0
        ax.set_xticks(range(len(backbones)), [display_name(b) for b in backbones], rotation=25, fontsize=8)
        ax.set_yscale("log")
        ax.axhline(1.0, color="black", lw=1, ls="--")
        ax.set_title(f"{DATASET_NAMES.get(d, d)} (n={n} test clips; bars: 95% interval)", fontsize=9)
        ax.set_ylabel("MMR")
    axes[0, -1].legend(
        loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, title="setting", title_fontsize=8
    )
    fig.tight_layout()
    return fig


def figure_score_intervals(table: pd.DataFrame, metric: str = "UAR", title: str = ""):
    """One panel per dataset of a written table (07's CSV): each row's `metric` with its 95% interval,
    the chance row's interval shaded, the paper's value (when the table carries it) as a cross.

    Columns read: Method, [<dataset> ]<metric>, ... low, ... high, ... (paper), delta. Difference rows
    (delta) are left out: they are on another scale and the table marks them."""
    import matplotlib.pyplot as plt

    rows = table[~table["delta"].astype(bool)] if "delta" in table else table
    prefixes = [c[: -len(metric)] for c in rows.columns if c.endswith(metric) and f"{c} low" in rows.columns]
    if rows.empty or not prefixes:
        raise ValueError(f"figure_score_intervals: no rows or no '{metric}' with 'low'/'high' columns")
    methods = list(rows["Method"])
    fig, axes = plt.subplots(
        1, len(prefixes), figsize=(4.2 * len(prefixes) + 1.5, 0.32 * len(methods) + 1.2), squeeze=False
    )
    y = np.arange(len(methods))[::-1]
    for ax, prefix in zip(axes[0], prefixes):
        col = f"{prefix}{metric}"
        mid = rows[col].to_numpy(float)
        low, high = rows[f"{col} low"].to_numpy(float), rows[f"{col} high"].to_numpy(float)
        chance = rows["Method"].str.startswith("Chance")
        if chance.any():
            ax.axvspan(low[chance.to_numpy()][0], high[chance.to_numpy()][0], color="0.9", zorder=0)
        ax.errorbar(mid, y, xerr=[mid - low, high - mid], fmt="o", color="C0", capsize=2, label="ours")
        if f"{col} (paper)" in rows:
            ax.plot(rows[f"{col} (paper)"].to_numpy(float), y, "x", color="C3", label="paper")
        n = rows[f"{prefix}n"].max() if f"{prefix}n" in rows else float("nan")
        ax.set_title(f"{prefix.strip() or metric} (n = {n:.0f} clips)", fontsize=9)
        ax.set_xlabel(f"{metric} (95% interval; grey: chance)")
        ax.set_xlim(0, 1)
        ax.set_yticks(y, methods if ax is axes[0, 0] else [""] * len(methods), fontsize=8)
    axes[0, -1].legend(loc="lower right", fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
