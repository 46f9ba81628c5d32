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

from magplus_lib.atomicio import atomic_path, write_text

REPO_ROOT = Path(__file__).resolve().parent.parent
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


def method_name(backbone: str, setting: str, table: int) -> str:
    """Row name as the paper writes it: in Tables 1-3 "X+MagPlus" is the full pipeline; Table 4 splits it."""
    name = display_name(backbone)
    if table == 4:
        suffix = {
            "backbone": "",
            "magplus": "+MagPlus",
            "demagplus": "+DeMagPlus",
            "magplus+demagplus": "+MagPlus+DeMagPlus",
        }
    else:
        suffix = {"backbone": "", "magplus+demagplus": "+MagPlus"}
    if setting not in suffix:
        raise ValueError(f"setting '{setting}' has no row in table {table}")
    return name + suffix[setting]


def load_paper_tables(path: str | Path = PAPER_TABLES) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"paper reference table {path} does not exist")
    df = pd.read_csv(path, comment="#")
    missing = [c for c in ["table", "dataset", "method", *METRICS] if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: lacks columns {missing}")
    return df


def side_by_side(ours: pd.DataFrame, paper: pd.DataFrame, metrics: Sequence[str] = METRICS) -> pd.DataFrame:
    """Rows = our methods (in order) then paper-only methods; columns Method, m, m (paper) for each metric."""
    ours = ours.set_index("Method") if "Method" in ours.columns else ours
    paper = paper.set_index("Method") if "Method" in paper.columns else paper
    order = list(ours.index) + [m for m in paper.index if m not in set(ours.index)]
    out = pd.DataFrame({"Method": order})
    for m in metrics:
        out[m] = [ours[m].get(k, np.nan) if m in ours.columns else np.nan for k in order]
        out[m + PAPER_SUFFIX] = [paper[m].get(k, np.nan) if m in paper.columns else np.nan for k in order]
    return out


def _paper_rows(paper: pd.DataFrame, table: int, dataset: str) -> pd.DataFrame:
    sel = paper[(paper["table"] == table) & (paper["dataset"] == dataset)]
    return sel.rename(columns={"method": "Method"})[["Method", *METRICS]]


def recognition_table(
    summary: pd.DataFrame,
    dataset: str,
    backbones: Sequence[str],
    paper: pd.DataFrame,
    table: int,
    original: dict | None = None,
) -> pd.DataFrame:
    """Table 1 (SAMM) / 2 (CAS(ME)^3): Original, then each backbone and backbone + MagPlus (full pipeline).

    `summary` holds one row per (dataset, backbone, setting) with the metric columns.
    """
    rows = []
    if original is not None:
        rows.append({"Method": "Original", **{m: original.get(m, np.nan) for m in METRICS}})
    for b in backbones:
        for setting in ("backbone", "magplus+demagplus"):
            hit = summary[
                (summary["dataset"] == dataset) & (summary["backbone"] == b) & (summary["setting"] == setting)
            ]
            if hit.empty:
                raise ValueError(f"no metrics for dataset {dataset}, backbone {b}, setting {setting}")
            rows.append({"Method": method_name(b, setting, table), **{m: hit.iloc[0][m] for m in METRICS}})
    return side_by_side(pd.DataFrame(rows), _paper_rows(paper, table, dataset))


def comparison_table(
    summary: pd.DataFrame,
    datasets: Sequence[str],
    backbones: Sequence[str],
    dedicated: Sequence[str],
    paper: pd.DataFrame,
) -> pd.DataFrame:
    """Table 3: dedicated micro-expression generators (setting "dedicated") against every pipeline."""
    metrics = ["UAR", "UF1", "Accuracy"]
    merged = None
    for d in datasets:
        rows = []
        for name in dedicated:
            hit = summary[
                (summary["dataset"] == d)
                & (summary["backbone"] == name)
                & (summary["setting"] == "dedicated")
            ]
            if not hit.empty:
                rows.append({"Method": display_name(name), **{m: hit.iloc[0][m] for m in metrics}})
        for b in backbones:
            hit = summary[
                (summary["dataset"] == d)
                & (summary["backbone"] == b)
                & (summary["setting"] == "magplus+demagplus")
            ]
            if not hit.empty:
                rows.append(
                    {"Method": method_name(b, "magplus+demagplus", 3), **{m: hit.iloc[0][m] for m in metrics}}
                )
        part = side_by_side(
            pd.DataFrame(rows, columns=["Method", *metrics]), _paper_rows(paper, 3, d), metrics
        )
        prefix = DATASET_NAMES.get(d, d)
        part = part.rename(columns={c: f"{prefix} {c}" for c in part.columns if c != "Method"})
        merged = part if merged is None else merged.merge(part, on="Method", how="outer", sort=False)
    # Row order: dedicated generators (ours, then the paper's), then the pipelines (ours, then the paper's).
    ours = [display_name(n) for n in dedicated] + [method_name(b, "magplus+demagplus", 3) for b in backbones]
    paper_order = list(dict.fromkeys(paper.loc[paper["table"] == 3, "method"]))

    def rank(m: str) -> tuple:
        pos = ours.index(m) if m in ours else len(ours) + (paper_order.index(m) if m in paper_order else 0)
        return ("+MagPlus" in m, pos)

    return merged.set_index("Method").loc[sorted(merged["Method"], key=rank)].reset_index()


def ablation_backbones(summary: pd.DataFrame, dataset: str, backbones: Sequence[str]) -> list[str]:
    """[the backbone that suppresses most (lowest MMR), the one that exaggerates most (highest MMR)]."""
    own = summary[
        (summary["dataset"] == dataset)
        & (summary["setting"] == "backbone")
        & summary["backbone"].isin(backbones)
    ]
    if own.empty:
        raise ValueError(f"no backbone-only metrics for dataset {dataset}")
    own = own.sort_values("MMR")
    lo, hi = own.iloc[0]["backbone"], own.iloc[-1]["backbone"]
    return [lo] if lo == hi else [lo, hi]


def ablation_table(
    summary: pd.DataFrame, dataset: str, backbones: Sequence[str], paper: pd.DataFrame
) -> pd.DataFrame:
    """Table 4: for each backbone, backbone / +MagPlus / +DeMagPlus / +MagPlus+DeMagPlus."""
    rows = []
    for b in backbones:
        for setting in ("backbone", "magplus", "demagplus", "magplus+demagplus"):
            hit = summary[
                (summary["dataset"] == dataset) & (summary["backbone"] == b) & (summary["setting"] == setting)
            ]
            if hit.empty:
                raise ValueError(f"no metrics for dataset {dataset}, backbone {b}, setting {setting}")
            rows.append({"Method": method_name(b, setting, 4), **{m: hit.iloc[0][m] for m in METRICS}})
    return side_by_side(pd.DataFrame(rows), _paper_rows(paper, 4, dataset))


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
    df: pd.DataFrame, stem: str, out_dir: str | Path, caption: str | None = None, digits: int = 3
) -> dict[str, Path]:
    """`<out_dir>/<stem>.csv` (values rounded to 6 decimals), `.md` and `.tex` (rounded to `digits`)."""
    out_dir = Path(out_dir)
    if df.empty:
        raise ValueError(f"write_table: table '{stem}' has no rows")
    csv_df = df.copy()
    for c in csv_df.columns:
        if _numeric(csv_df[c]):
            csv_df[c] = csv_df[c].astype(float).round(6)
    paths = {ext: out_dir / f"{stem}.{ext}" for ext in ("csv", "md", "tex")}
    write_text(paths["csv"], csv_df.to_csv(index=False, lineterminator="\n"))
    write_text(paths["md"], to_markdown(df, digits, caption))
    write_text(paths["tex"], to_latex(df, digits, caption, label=f"tab:{stem}"))
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

    from magplus_lib.flow import farneback_flow

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


def _row_label(ax, text: str) -> None:
    """A small vertical label left of a figure row."""
    ax.text(-0.05, 0.5, text, transform=ax.transAxes, rotation=90, ha="right", va="center", fontsize=7)


def figure_alpha(rows: Sequence[dict], title: str | None = None):
    """Figure 3: per clip, the apex frame magnified at each alpha.

    Each row: {"frames": {alpha: image (3, H, W)}, "box": optional motion box, "label": optional text}.
    """
    import matplotlib.pyplot as plt

    alphas = list(rows[0]["frames"])
    fig, axes = plt.subplots(
        len(rows), len(alphas), figsize=(2 * len(alphas), 2.1 * len(rows)), squeeze=False
    )
    for i, row in enumerate(rows):
        for j, a in enumerate(alphas):
            head = (f"alpha = {a:g}" if a != 1 else "input apex") if i == 0 else None
            _show(axes[i, j], row["frames"][a], row.get("box"), head)
        if row.get("label"):
            _row_label(axes[i, 0], row["label"])
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def _alpha_label(a: float) -> str:
    return f"1/{1 / a:.3g}" if a < 1 else f"{a:g}"


def figure_heatmaps(grid: pd.DataFrame, title: str = "", selected: dict | None = None):
    """UAR and MMR over the alpha grid (rows alpha_MagPlus, columns alpha_DeMagPlus); MMR on a log scale."""
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
        if selected is not None:
            r = list(table.index).index(selected["alpha_mag"])
            c = list(table.columns).index(selected["alpha_demag"])
            ax.add_patch(plt.Rectangle((c, r), 1, 1, fill=False, edgecolor="black", lw=2))
    fig.tight_layout()
    return fig


def figure_mmr_bars(summary: pd.DataFrame, settings: Sequence[str] = ("backbone", "magplus+demagplus")):
    """MMR per backbone and setting, one panel per dataset, log scale with the ideal MMR = 1 marked."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    data = summary[summary["setting"].isin(settings)].copy()
    data["backbone"] = data["backbone"].map(display_name)
    datasets = list(dict.fromkeys(data["dataset"]))
    n_backbones = max(data["backbone"].nunique(), 1)
    width = max(4.5, 0.9 * n_backbones + 1.0)  # room for every backbone's bars and label
    fig, axes = plt.subplots(1, len(datasets), figsize=(width * len(datasets) + 1.6, 3.4), squeeze=False)
    for k, (ax, d) in enumerate(zip(axes[0], datasets)):
        sns.barplot(
            data=data[data["dataset"] == d],
            x="backbone",
            y="MMR",
            hue="setting",
            hue_order=list(settings),
            ax=ax,
            legend=k == len(datasets) - 1,
        )
        ax.set_yscale("log")
        ax.axhline(1.0, color="black", lw=1, ls="--")
        ax.set_title(DATASET_NAMES.get(d, d), fontsize=9)
        ax.set_xlabel("")
        ax.tick_params(axis="x", labelrotation=25, labelsize=8)
    if axes[0, -1].get_legend() is not None:  # outside the bars, right of the last panel
        sns.move_legend(axes[0, -1], "upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, title_fontsize=8)
    fig.tight_layout()
    return fig
