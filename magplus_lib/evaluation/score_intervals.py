"""Intervals, paired differences and collapse marks for the paper's tables (UAR, UF1, accuracy, MMR).

Every setting of a table is scored on the same test clips, so one set of bootstrap resamples (whole
subjects drawn with replacement, `resample_weights`) serves every row: a row's interval and a paired
difference between two rows then come from the same draws. A resample is a vector of multiplicities
w (how often each clip was drawn); on it the pooled confusion matrix of evaluator seed s is
C_s = sum_i w_i * onehot(label_i, pred_i,s), from which

    UAR = 1/K sum_k C_kk / sum_j C_kj,   UF1 = 1/K sum_k 2 C_kk / (2 C_kk + FP_k + FN_k),
    Accuracy = tr C / sum C,              MMR = sum_i w_i MMR_i / sum_i w_i,

with every class of the list averaged (recall or F1 of an absent class is 0, as in
`metrics.recognition_scores`). Recognition scores are averaged over the evaluator seeds on each
resample, so the interval covers the test clips' sampling; the seeds' spread is reported beside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

RECOGNITION = ("UAR", "UF1", "Accuracy")
# A setting whose predictions put at least this share of all (clip, seed) predictions in one class is
# marked collapsed: its UAR says nothing about the clips (a constant classifier scores 1/K).
COLLAPSE_SHARE = 0.9
LEVEL = 0.95


def resample_weights(subjects: Sequence, n_boot: int = 2000, seed: int = 0) -> np.ndarray:
    """(n_boot, n) multiplicities of n clips when whole subjects are drawn with replacement."""
    groups = np.unique(np.asarray(subjects, dtype=str), return_inverse=True)[1]
    if groups.size == 0:
        raise ValueError("resample_weights: no clips")
    n_groups = int(groups.max()) + 1
    picks = np.random.default_rng(seed).integers(0, n_groups, (n_boot, n_groups))
    counts = np.stack([np.bincount(row, minlength=n_groups) for row in picks])  # draws of each subject
    return counts[:, groups].astype(np.float64)


def confusion_scores(conf: np.ndarray) -> dict[str, np.ndarray]:
    """UAR, UF1, Accuracy of confusion matrices (..., K, K) (rows: true class, columns: predicted)."""
    conf = np.asarray(conf, dtype=np.float64)
    tp = np.diagonal(conf, axis1=-2, axis2=-1)
    true_k, pred_k = conf.sum(-1), conf.sum(-2)
    recall = np.divide(tp, true_k, out=np.zeros_like(tp), where=true_k > 0)
    f1_den = true_k + pred_k  # 2TP + FP + FN
    f1 = np.divide(2 * tp, f1_den, out=np.zeros_like(tp), where=f1_den > 0)
    total = conf.sum((-2, -1))
    acc = np.divide(tp.sum(-1), total, out=np.zeros_like(total), where=total > 0)
    return {"UAR": recall.mean(-1), "UF1": f1.mean(-1), "Accuracy": acc}


@dataclass(frozen=True)
class Score:
    """A table cell: the point value, its percentile interval, the evaluator seeds' spread, n clips."""

    value: float
    low: float
    high: float
    n: int
    seed_sd: float = float("nan")

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


class ScoredClips:
    """The test clips of one dataset (ids, subjects, labels) and the bootstrap resamples shared by rows."""

    def __init__(self, clips: pd.DataFrame, classes: Sequence[str], n_boot: int = 2000, seed: int = 0):
        missing = [c for c in ("clip_id", "subject", "label") if c not in clips.columns]
        if missing:
            raise ValueError(f"ScoredClips: the clip table lacks columns {missing}")
        clips = clips.drop_duplicates("clip_id").sort_values("clip_id").reset_index(drop=True)
        unknown = sorted(set(clips["label"]) - set(classes))
        if unknown:
            raise ValueError(f"ScoredClips: labels {unknown} are not in the class list {list(classes)}")
        self.clips, self.classes = clips, list(classes)
        self.ids = list(clips["clip_id"].astype(str))
        self.label_idx = np.array([self.classes.index(v) for v in clips["label"]])
        self.weights = resample_weights(clips["subject"], n_boot, seed)
        self.subjects = int(clips["subject"].nunique())

    @property
    def n(self) -> int:
        return len(self.ids)

    def _align(self, per_clip: pd.DataFrame, column: str) -> pd.DataFrame:
        """per_clip's `column` as a (clip x evaluator seed) table in this object's clip order."""
        seeds = per_clip["evaluator_seed"] if "evaluator_seed" in per_clip.columns else 0
        wide = per_clip.assign(evaluator_seed=seeds, clip_id=per_clip["clip_id"].astype(str)).pivot(
            index="clip_id", columns="evaluator_seed", values=column
        )
        missing = sorted(set(self.ids) - set(wide.index))
        extra = sorted(set(wide.index) - set(self.ids))
        if missing or extra:
            raise ValueError(
                f"per-clip scores do not cover the test clips: {len(missing)} missing "
                f"(e.g. {missing[:3]}), {len(extra)} unknown (e.g. {extra[:3]})"
            )
        return wide.loc[self.ids]

    def _confusions(self, per_clip: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(resampled confusion matrices (seeds, n_boot, K, K), point ones (seeds, K, K))."""
        pred = self._align(per_clip, "pred")
        k = len(self.classes)
        boot, point = [], []
        for s in pred.columns:
            unknown = sorted(set(pred[s]) - set(self.classes))
            if unknown:
                raise ValueError(f"predictions {unknown} are not in the class list {self.classes}")
            cell = self.label_idx * k + np.array([self.classes.index(v) for v in pred[s]])
            onehot = np.eye(k * k)[cell]  # (n, K*K)
            boot.append((self.weights @ onehot).reshape(-1, k, k))
            point.append(onehot.sum(0).reshape(k, k))
        return np.stack(boot), np.stack(point)

    def _draws(self, per_clip: pd.DataFrame) -> dict[str, tuple[float, np.ndarray, float]]:
        """{metric: (point value, bootstrap draws, seed sd)}; recognition averaged over seeds."""
        boot, point = self._confusions(per_clip)
        out = {}
        b_scores, p_scores = confusion_scores(boot), confusion_scores(point)
        for m in RECOGNITION:
            per_seed = p_scores[m]
            sd = float(per_seed.std(ddof=1)) if per_seed.size > 1 else float("nan")
            out[m] = (float(per_seed.mean()), b_scores[m].mean(0), sd)
        if "MMR" in per_clip.columns:
            mmr = self._align(per_clip, "MMR").iloc[:, 0].to_numpy(dtype=np.float64)
            if np.isfinite(mmr).all():
                out["MMR"] = (float(mmr.mean()), self.weights @ mmr / self.weights.sum(1), float("nan"))
        return out

    def _score(self, point: float, draws: np.ndarray, sd: float) -> Score:
        tail = (1 - LEVEL) / 2
        low, high = np.quantile(draws, [tail, 1 - tail])
        return Score(point, float(low), float(high), self.n, sd)

    def scores(self, per_clip: pd.DataFrame) -> dict[str, Score]:
        """Each metric of one setting with its interval (MMR only where every clip has one)."""
        return {m: self._score(*v) for m, v in self._draws(per_clip).items()}

    def paired(self, per_clip: pd.DataFrame, reference: pd.DataFrame) -> dict[str, Score]:
        """Each metric's difference `per_clip` - `reference` on the same clips and resamples."""
        a, b = self._draws(per_clip), self._draws(reference)
        out = {}
        for m in a.keys() & b.keys():
            out[m] = self._score(a[m][0] - b[m][0], a[m][1] - b[m][1], float("nan"))
        return out

    def collapse(self, per_clip: pd.DataFrame) -> tuple[bool, str, float]:
        """(collapsed?, most predicted class, its share of all (clip, seed) predictions)."""
        pred = self._align(per_clip, "pred").to_numpy().ravel()
        values, counts = np.unique(pred, return_counts=True)
        top = int(counts.argmax())
        share = float(counts[top] / counts.sum())
        return share >= COLLAPSE_SHARE, str(values[top]), share

    def constant_predictions(self, label: str) -> pd.DataFrame:
        """Per-clip predictions of a classifier that always answers `label` (the majority-class row)."""
        if label not in self.classes:
            raise ValueError(f"majority class {label!r} is not in the class list {self.classes}")
        return pd.DataFrame({"clip_id": self.ids, "pred": label})

    def chance(self, draws: int = 2000, seed: int = 0) -> dict[str, Score]:
        """A uniform random guesser on these clips: its expected score and the 95% range of its scores."""
        k = len(self.classes)
        guesses = np.random.default_rng(seed).integers(0, k, (draws, self.n))
        conf = np.zeros((draws, k, k))
        np.add.at(conf, (np.arange(draws)[:, None], self.label_idx[None, :], guesses), 1.0)
        scores = confusion_scores(conf)
        return {m: self._score(float(scores[m].mean()), scores[m], float("nan")) for m in RECOGNITION}
