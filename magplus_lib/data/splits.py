"""Subject-independent splits: train/val/test by subject plus leave-one-subject-out folds, seeded, as CSV."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from magplus_lib.data.clips import Clip, DataError
from magplus_lib.harness import atomicio

PARTS = ("train", "val", "test")


def make_subject_split(clips: list[Clip], fractions: dict | None = None, seed: int = 0):
    """DataFrame[subject, part, fold]: subjects shuffled by `seed` then cut by `fractions`.

    Every part with a positive fraction gets at least one subject; `fold` is the subject's LOSO fold
    (its rank in sorted order), so fold k tests on one subject and trains on the rest.
    """
    import pandas as pd

    fractions = dict(fractions or {"train": 0.6, "val": 0.2, "test": 0.2})
    unknown = sorted(set(fractions) - set(PARTS))
    if unknown:
        raise DataError(f"split fractions: unknown part(s) {unknown}; parts are {PARTS}")
    if any(v < 0 for v in fractions.values()) or sum(fractions.values()) <= 0:
        raise DataError(f"split fractions must be non-negative with a positive sum, got {fractions}")
    subjects = sorted({c.subject for c in clips})
    n = len(subjects)
    wanted = [p for p in PARTS if fractions.get(p, 0) > 0]
    if n < len(wanted):
        raise DataError(f"{n} subject(s) cannot fill the {len(wanted)} split parts {wanted}")
    total = sum(fractions.values())
    counts = {
        p: (max(1, int(round(n * fractions[p] / total))) if p in wanted else 0) for p in PARTS if p != "train"
    }
    counts["train"] = n - counts["val"] - counts["test"]
    while counts["train"] < (1 if "train" in wanted else 0):  # rounding took too many: shrink the largest
        big = max(("val", "test"), key=lambda p: counts[p])
        counts[big] -= 1
        counts["train"] += 1
    order = np.random.default_rng(seed).permutation(n)
    part_of, k = {}, 0
    for p in ("test", "val", "train"):
        for i in order[k : k + counts[p]]:
            part_of[subjects[i]] = p
        k += counts[p]
    return pd.DataFrame({"subject": subjects, "part": [part_of[s] for s in subjects], "fold": list(range(n))})


def save_split(df, path: str | Path) -> Path:
    with atomicio.atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)
    return Path(path)


def load_split(path: str | Path):
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: split file not found (run notebooks/00_data.py first)")
    df = pd.read_csv(path, dtype={"subject": str})
    missing = {"subject", "part", "fold"} - set(df.columns)
    if missing:
        raise DataError(f"{path}: missing column(s) {sorted(missing)}; has {list(df.columns)}")
    bad = sorted(set(df["part"]) - set(PARTS))
    if bad:
        raise DataError(f"{path}: unknown part(s) {bad}; parts are {PARTS}")
    if df["subject"].duplicated().any():
        raise DataError(
            f"{path}: subject(s) listed twice: {sorted(df.loc[df.subject.duplicated(), 'subject'])}"
        )
    return df


def select(
    clips: list[Clip], split, part: str | None = None, fold: int | None = None, exclude_fold: bool = False
) -> list[Clip]:
    """Clips of the subjects in `part`, or of LOSO `fold` (or every other fold with exclude_fold=True)."""
    if part is not None and part not in PARTS:
        raise DataError(f"unknown split part {part!r}; parts are {PARTS}")
    known = set(split["subject"].astype(str))
    stray = sorted({c.subject for c in clips} - known)
    if stray:
        raise DataError(f"subject(s) {stray[:5]} are not in the split; was it made from other clips?")
    if part is not None:
        keep = set(split.loc[split["part"] == part, "subject"].astype(str))
    elif fold is not None:
        in_fold = split["fold"] == fold
        keep = set(split.loc[~in_fold if exclude_fold else in_fold, "subject"].astype(str))
    else:
        raise DataError("select needs a part or a fold")
    return [c for c in clips if c.subject in keep]
