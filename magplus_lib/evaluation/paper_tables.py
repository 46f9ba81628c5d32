"""The paper's Tables 1-4 from per-clip scores, every number with its n and 95% interval.

Rows are built from the per-clip tables of 04 (real clips) and 06 (generated clips): each score is
the mean over evaluator seeds of the pooled score, with a subject-clustered bootstrap interval
(`score_intervals.ScoredClips`); each "+MagPlus" row is followed by its paired difference to the
backbone-only row on the same clips ("Δ"), marked * only when that interval excludes zero. A chance
row (a uniform random guess: its expected score and the 95% range of its scores on these clips) and a
majority-class row (the training subjects' most frequent class for every clip) give the floor, and a
setting whose predictions fall into one class for >= 90% of clips is marked collapsed.

Two frames come out of each builder: `numbers` (CSV: full precision, one column per bound) and
`cells` (Markdown / LaTeX: "value [low, high]"), with the paper's reported number beside ours.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from magplus_lib.evaluation.reporting import DATASET_NAMES, PAPER_SUFFIX, display_name
from magplus_lib.evaluation.score_intervals import COLLAPSE_SHARE, RECOGNITION, Score, ScoredClips

METRICS = [*RECOGNITION, "MMR"]
# Row suffixes as the paper writes them: in Tables 1-3 "+MagPlus" is the full pipeline, Table 4 splits it.
SUFFIX_123 = {"backbone": "", "magplus+demagplus": "+MagPlus"}
SUFFIX_4 = {
    "backbone": "",
    "magplus": "+MagPlus",
    "demagplus": "+DeMagPlus",
    "magplus+demagplus": "+MagPlus+DeMagPlus",
}


def method_name(backbone: str, setting: str, table: int) -> str:
    suffix = SUFFIX_4 if table == 4 else SUFFIX_123
    if setting not in suffix:
        raise ValueError(f"setting '{setting}' has no row in table {table}")
    return display_name(backbone) + suffix[setting]


@dataclass
class DatasetScores:
    """One dataset's per-clip scores: generated clips (06), real test clips (04), training majority."""

    dataset: str
    generated: pd.DataFrame  # dataset, backbone, setting, alpha_mag, alpha_demag, clip_id, subject, ...
    original: pd.DataFrame  # the real test clips: clip_id, subject, evaluator_seed, label, pred
    majority_class: str
    classes: Sequence[str]

    def __post_init__(self):
        base = self.generated[self.generated["setting"] != "dedicated"]
        self.test = ScoredClips(base if not base.empty else self.generated, self.classes)
        self.real = ScoredClips(self.original, self.classes)

    def has(self, backbone: str, setting: str) -> bool:
        """Whether 06 scored this setting (a magnifier left out by `magnifier_gate` removes some)."""
        g = self.generated
        return bool(((g["backbone"] == backbone) & (g["setting"] == setting)).any())

    def setting(self, backbone: str, setting: str) -> pd.DataFrame:
        g = self.generated
        hit = g[(g["backbone"] == backbone) & (g["setting"] == setting)]
        if hit.empty:
            raise ValueError(
                f"no per-clip scores for dataset {self.dataset}, backbone {backbone}, setting {setting}"
            )
        return hit

    def alphas(self, backbone: str) -> tuple[float, float]:
        """The sweep's (alpha_M, alpha_D) for `backbone`, carried on each of its rows (06)."""
        row = self.setting(backbone, "backbone").iloc[0]
        return float(row["alpha_mag"]), float(row["alpha_demag"])


def _row(method: str, scores: dict[str, Score], n: int, note: str = "", delta: bool = False) -> dict:
    row = {"Method": method, "n": n}
    for m in METRICS:
        s = scores.get(m)
        row[m] = s.value if s else np.nan
        row[f"{m} low"] = s.low if s else np.nan
        row[f"{m} high"] = s.high if s else np.nan
        if m == "UAR":
            row["UAR seed sd"] = s.seed_sd if s else np.nan
    row["delta"] = delta
    row["Note"] = note
    return row


def _collapse_note(test: ScoredClips, per_clip: pd.DataFrame) -> str:
    collapsed, label, share = test.collapse(per_clip)
    return f"collapsed: {share:.0%} {label}" if collapsed else ""


def _floor_rows(ds: DatasetScores) -> list[dict]:
    test = ds.test
    majority = test.constant_predictions(ds.majority_class)
    return [
        _row("Chance (uniform guess)", test.chance(), test.n, "expected score; interval: 95% of guesses"),
        _row(
            f"Majority class ({ds.majority_class})",
            test.scores(majority),
            test.n,
            f"collapsed by construction: 100% {ds.majority_class}",
        ),
    ]


def _setting_rows(
    ds: DatasetScores, backbone: str, setting: str, table: int, reference: str | None
) -> list[dict]:
    per_clip = ds.setting(backbone, setting)
    name = method_name(backbone, setting, table)
    note = _collapse_note(ds.test, per_clip)
    rows = [_row(name, ds.test.scores(per_clip), ds.test.n, note)]
    if reference is not None:
        diff = ds.test.paired(per_clip, ds.setting(backbone, reference))
        rows.append(
            _row(f"Δ {name} − {method_name(backbone, reference, table)}", diff, ds.test.n, delta=True)
        )
    return rows


def _with_paper(ours: pd.DataFrame, paper: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """Our rows, then the paper's rows we do not run; '(paper)' columns beside each metric."""
    paper = paper.set_index("Method")
    extra = [m for m in paper.index if m not in set(ours["Method"])]
    out = pd.concat([ours, pd.DataFrame({"Method": extra, "delta": False, "Note": ""})], ignore_index=True)
    for m in metrics:
        out[m + PAPER_SUFFIX] = [
            paper[m].get(k, np.nan) if m in paper.columns else np.nan for k in out["Method"]
        ]
    return out


def _paper_rows(paper: pd.DataFrame, table: int, dataset: str) -> pd.DataFrame:
    sel = paper[(paper["table"] == table) & (paper["dataset"] == dataset)]
    return sel.rename(columns={"method": "Method"})[["Method", *METRICS]]


def recognition_table(
    ds: DatasetScores, backbones: Sequence[str], paper: pd.DataFrame, table: int
) -> pd.DataFrame:
    """Table 1 (SAMM) / 2 (CAS(ME)^3): floor rows, Original, each backbone, its +MagPlus row and Δ."""
    rows = _floor_rows(ds)
    rows.append(
        _row(
            "Original (real clips)",
            ds.real.scores(ds.original),
            ds.real.n,
            _collapse_note(ds.real, ds.original),
        )
    )
    for b in backbones:
        rows += _setting_rows(ds, b, "backbone", table, None)
        if not ds.has(b, "magplus+demagplus"):
            continue
        am, ad = ds.alphas(b)
        extra = _setting_rows(ds, b, "magplus+demagplus", table, "backbone")
        extra[0]["Note"] = "; ".join(filter(None, [f"α_M={am:g}, α_D={ad:g}", extra[0]["Note"]]))
        rows += extra
    return _with_paper(pd.DataFrame(rows), _paper_rows(paper, table, ds.dataset), METRICS)


def ablation_backbones(ds: DatasetScores, backbones: Sequence[str]) -> list[str]:
    """[the backbone that suppresses most (lowest MMR), the one that exaggerates most (highest MMR)]."""
    mmr = {b: float(ds.setting(b, "backbone").drop_duplicates("clip_id")["MMR"].mean()) for b in backbones}
    if not mmr:
        raise ValueError(f"no backbone-only scores for dataset {ds.dataset}")
    lo, hi = min(mmr, key=mmr.get), max(mmr, key=mmr.get)
    return [lo] if lo == hi else [lo, hi]


def ablation_table(ds: DatasetScores, backbones: Sequence[str], paper: pd.DataFrame) -> pd.DataFrame:
    """Table 4: per backbone B, MagPlus -> B, B -> DeMagPlus and the full pipeline, each with Δ to B."""
    rows = []
    for b in backbones:
        am, ad = ds.alphas(b)
        rows += _setting_rows(ds, b, "backbone", 4, None)
        for setting in ("magplus", "demagplus", "magplus+demagplus"):
            if not ds.has(b, setting):
                continue
            part = _setting_rows(ds, b, setting, 4, "backbone")
            uses_mag, uses_demag = "magplus" in setting.split("+"), "demagplus" in setting.split("+")
            alpha = ", ".join(
                filter(None, [f"α_M={am:g}" if uses_mag else "", f"α_D={ad:g}" if uses_demag else ""])
            )
            if uses_demag and ad == 1.0:
                alpha += " (sweep chose α_D = 1: DeMagPlus not applied)"
            part[0]["Note"] = "; ".join(filter(None, [alpha, part[0]["Note"]]))
            rows += part
    return _with_paper(pd.DataFrame(rows), _paper_rows(paper, 4, ds.dataset), METRICS)


def comparison_table(
    scores: Sequence[DatasetScores], backbones: Sequence[str], dedicated: Sequence[str], paper: pd.DataFrame
) -> pd.DataFrame:
    """Table 3: dedicated micro-expression generators against every pipeline, datasets side by side."""
    merged = None
    for ds in scores:
        rows = _floor_rows(ds)
        for name in dedicated:
            if not ds.generated[
                (ds.generated["backbone"] == name) & (ds.generated["setting"] == "dedicated")
            ].empty:
                per_clip = ds.setting(name, "dedicated")
                rows.append(
                    _row(
                        display_name(name),
                        ds.test.scores(per_clip),
                        ds.test.n,
                        _collapse_note(ds.test, per_clip),
                    )
                )
        for b in backbones:
            if ds.has(b, "magplus+demagplus"):
                rows += _setting_rows(ds, b, "magplus+demagplus", 3, None)
        part = _with_paper(pd.DataFrame(rows), _paper_rows(paper, 3, ds.dataset), RECOGNITION)
        part = part.drop(columns=[c for c in part.columns if c.startswith("MMR")])
        prefix = DATASET_NAMES.get(ds.dataset, ds.dataset)
        keep = {"Method", "delta"}
        part = part.rename(columns={c: f"{prefix} {c}" for c in part.columns if c not in keep})
        merged = (
            part if merged is None else merged.merge(part, on=["Method", "delta"], how="outer", sort=False)
        )
    return merged


# ---- formatting ----
def _num(v: float, signed: bool = False) -> str:
    return "–" if v is None or not np.isfinite(v) else (f"{v:+.2f}" if signed else f"{v:.2f}")


def cells(numbers: pd.DataFrame) -> pd.DataFrame:
    """The Markdown / LaTeX view: 'value [low, high]' per metric (Δ rows signed, * when the interval
    excludes 0), the paper's numbers and the notes; bounds and spreads stay in the CSV only."""
    out = pd.DataFrame({"Method": numbers["Method"]})
    n_cols = [c for c in numbers.columns if c == "n" or c.endswith(" n")]
    for c in n_cols:
        out[c] = [("–" if not np.isfinite(v) else str(int(v))) for v in numbers[c].astype(float)]
    for c in numbers.columns:
        if c.endswith(PAPER_SUFFIX):
            out[c] = [_num(v) if np.isfinite(v) else "–" for v in numbers[c].astype(float)]
            continue
        if f"{c} low" not in numbers.columns:
            continue
        text = []
        for _, r in numbers.iterrows():
            v, lo, hi = (float(r[c]), float(r[f"{c} low"]), float(r[f"{c} high"]))
            if not np.isfinite(v):
                text.append("–")
                continue
            signed = bool(r["delta"])
            mark = "*" if signed and (lo > 0 or hi < 0) else ""
            text.append(f"{_num(v, signed)} [{_num(lo, signed)}, {_num(hi, signed)}]{mark}")
        out[c] = text
    # the paper's column right after ours
    order = ["Method", *n_cols]
    for c in out.columns:
        if c in order or c.endswith(PAPER_SUFFIX):
            continue
        order.append(c)
        if c + PAPER_SUFFIX in out.columns:
            order.append(c + PAPER_SUFFIX)
    notes = [c for c in numbers.columns if c == "Note" or c.endswith(" Note")]
    for c in notes:
        out[c] = numbers[c].fillna("").astype(str)
    return out[order + notes]


def caption_rows(table: int, dedicated_note: str = "") -> str:
    """What each row's pipeline is, for the table's caption."""
    if table == 4:
        rows = (
            "X = the backbone animates a source face of another test subject with the real micro clip as "
            "driver; X+MagPlus = MagPlus (α_M) -> X only; X+DeMagPlus = X -> DeMagPlus (α_D) only; "
            "X+MagPlus+DeMagPlus = the full pipeline. α_M, α_D: the validation sweep's choice."
        )
    else:
        rows = (
            "X = the backbone animates a source face of another test subject with the real micro clip as "
            "driver; X+MagPlus = the full pipeline MagPlus (α_M) -> X -> DeMagPlus (α_D), α from the "
            "validation sweep; Original = the evaluator on the real test clips."
        )
    if table == 3 and dedicated_note:
        rows += " " + dedicated_note
    return (
        f"{rows} Each cell: mean over evaluator seeds, [95% interval, subject-clustered bootstrap], n test "
        f"clips; Δ = paired difference to X on the same clips, * = its interval excludes 0; collapsed = "
        f">= {COLLAPSE_SHARE:.0%} of predictions in one class."
    )


def findings(numbers: pd.DataFrame, title: str) -> str:
    """Markdown bullets of what a table supports: each paired difference whose interval excludes zero,
    the metrics where none does, and the collapsed rows (written beside the table, included in the
    README, so that no claim there is typed by hand)."""
    deltas = numbers[numbers["delta"].astype(bool)]
    lines = [f"**{title}** (n = {int(numbers['n'].max())} test clips; Δ: paired difference, 95% interval)"]
    quiet = []
    for m in METRICS:
        hits = deltas[(deltas[f"{m} low"] > 0) | (deltas[f"{m} high"] < 0)]
        if hits.empty:
            if deltas[m].notna().any():
                quiet.append(m)
            continue
        for _, r in hits.iterrows():
            lines.append(
                f"- {r['Method'][2:]}: {m} {r[m]:+.2f} [{r[f'{m} low']:+.2f}, {r[f'{m} high']:+.2f}]"
            )
    if quiet:
        lines.append(f"- No difference in {', '.join(quiet)}: every Δ interval includes 0.")
    collapsed = numbers.loc[
        numbers["Note"].fillna("").str.contains("collapsed:") & ~numbers["Method"].str.startswith("Majority"),
        "Method",
    ]
    if len(collapsed):
        lines.append(
            f"- Collapsed (>= {COLLAPSE_SHARE:.0%} of predictions in one class): {', '.join(collapsed)}."
        )
    return "\n".join(lines) + "\n"


def mmr_scores(
    per_clip: pd.DataFrame, dataset: str, backbones: Sequence[str], classes: Sequence[str]
) -> pd.DataFrame:
    """MMR per backbone and setting with its interval (the bars of `reporting.figure_mmr_bars`)."""
    test = ScoredClips(per_clip[per_clip["setting"] != "dedicated"], classes)
    rows = []
    for b in backbones:
        for s, g in per_clip[per_clip["backbone"] == b].groupby("setting", sort=False):
            mmr = test.scores(g)["MMR"]
            rows.append(
                # a percentile interval need not contain the point value (few subjects): bars need it to
                {"dataset": dataset, "backbone": b, "setting": s, "MMR": mmr.value}
                | {"MMR low": min(mmr.low, mmr.value), "MMR high": max(mmr.high, mmr.value), "n": mmr.n}
            )
    return pd.DataFrame(rows)
