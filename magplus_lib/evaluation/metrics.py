"""Evaluation metrics: MEGC recognition scores and the Motion Magnification Ratio (paper 5.1).

Recognition (MEGC 2019 protocol, reference/datasets.md): predictions are *pooled* over all test
samples before scoring, never averaged per subject.

* UAR = mean over classes of recall, UF1 = mean over classes of F1 = 2TP / (2TP + FP + FN),
  Accuracy = correct / N.
* The class list is passed explicitly and every class in it is averaged, so a class that is absent
  (never predicted, or even absent from the ground truth of a small test split) still counts, with
  recall 0 and F1 0 (scikit-learn's ``zero_division=0``). Scores are therefore comparable between
  runs whose test splits happen to miss a class.

Motion magnitude and MMR: see `motion_magnitude` and `mmr`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from sklearn.metrics import accuracy_score, f1_score, recall_score

from magplus_lib.magnifier.flow import farneback_flow

MMR_SIZE = 64  # the paper computes MMR on Farneback flow at 64 x 64


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR (dB) of two tensors in [0, 1] over all their elements (inf when they are equal)."""
    mse = float(((a.float() - b.float()) ** 2).mean())
    return math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse)


def recognition_scores(y_true: Sequence, y_pred: Sequence, classes: Sequence) -> dict[str, float]:
    """{"UAR", "UF1", "Accuracy"} over pooled predictions, averaging over every class in `classes`.

    Labels may be class names or indices, as long as both sequences use the values in `classes`.
    A label outside `classes`, mismatched lengths or an empty input raise ValueError.
    """
    y_true, y_pred, classes = list(y_true), list(y_pred), list(classes)
    if len(y_true) != len(y_pred):
        raise ValueError(f"recognition_scores: {len(y_true)} true labels but {len(y_pred)} predictions")
    if not y_true:
        raise ValueError("recognition_scores: no samples to score")
    if not classes or len(set(classes)) != len(classes):
        raise ValueError(f"recognition_scores: the class list must be non-empty and unique, got {classes}")
    known = set(classes)
    unknown = sorted({str(v) for v in y_true + y_pred if v not in known})
    if unknown:
        raise ValueError(f"recognition_scores: labels {unknown} are not in the class list {classes}")
    kw = dict(labels=classes, average="macro", zero_division=0)
    return {
        "UAR": float(recall_score(y_true, y_pred, **kw)),
        "UF1": float(f1_score(y_true, y_pred, **kw)),
        "Accuracy": float(accuracy_score(y_true, y_pred)),
    }


def _as_frames(frames) -> np.ndarray | torch.Tensor:
    if isinstance(frames, torch.Tensor | np.ndarray) and frames.ndim == 4:
        return frames
    raise ValueError(f"expected frames of shape (T, 3, H, W), got {getattr(frames, 'shape', type(frames))}")


def motion_magnitude(
    frames, reference: int = 0, targets: Sequence[int] | None = None, size: int = MMR_SIZE
) -> float:
    """Mean Farneback flow magnitude (pixels at `size` x `size`) of a clip against its reference frame.

    Precisely: both frames are converted to grey, resized to `size` x `size` (INTER_AREA), and
    ``magplus_lib.magnifier.flow.farneback_flow(frames[reference], frames[t])`` is computed for every target
    position t; the magnitude ``sqrt(u^2 + v^2)`` is averaged over all pixels and then over the targets.
    `frames` is (T, 3, H, W) in [0, 1]; positions index the tensor (not spreadsheet frame numbers).
    `targets` defaults to every position after `reference`. The study calls this with
    reference = onset position and targets = onset+1 .. apex (see `expression_targets`), i.e. the
    rising phase of the expression, where micro motion builds to its apex.
    """
    frames = _as_frames(frames)
    n = frames.shape[0]
    if targets is None:
        targets = range(reference + 1, n)
    targets = list(targets)
    if not 0 <= reference < n or not targets or any(not 0 <= t < n for t in targets):
        raise ValueError(
            f"motion_magnitude: reference {reference} / targets {targets} outside a clip of {n} frames"
        )
    mags = []
    for t in targets:
        flow = farneback_flow(frames[reference], frames[t], size=size)
        mags.append(float(np.sqrt((flow.astype(np.float64) ** 2).sum(-1)).mean()))
    return float(np.mean(mags))


def expression_targets(onset_pos: int, apex_pos: int) -> list[int]:
    """Target positions onset+1 .. apex (inclusive) used for MMR and the evaluator's flow.

    An apex annotated on the onset frame (a real-data quirk) falls back to the single next frame.
    """
    if onset_pos < 0:
        raise ValueError(f"onset position {onset_pos} is negative")
    return list(range(onset_pos + 1, max(apex_pos, onset_pos + 1) + 1))


def motion_ratio(generated, real, reference: int = 0, targets=None, size: int = MMR_SIZE, eps: float = 1e-6):
    """One sample's MMR: motion_magnitude(generated) / motion_magnitude(real) on the same positions.

    The generated clip is time-aligned with its real driver (it inherits the driver's onset and apex),
    so the same reference and target positions are compared in both.
    """
    if generated.shape[0] != real.shape[0]:
        raise ValueError(
            f"motion_ratio: generated clip has {generated.shape[0]} frames, driver {real.shape[0]}"
        )
    m_gen = motion_magnitude(generated, reference, targets, size)
    m_real = motion_magnitude(real, reference, targets, size)
    return m_gen / max(m_real, eps)


def mmr(generated, real, reference: int = 0, targets=None, size: int = MMR_SIZE) -> float:
    """Motion Magnification Ratio (paper 5.1): generated over real mean Farneback magnitude at 64 x 64.

    `generated` and `real` are either one clip each ((T, 3, H, W)) or equal-length sequences of clips
    (sample i = generated clip i and the real driver clip it was generated from). The ratio is taken
    per sample (`motion_ratio`) and then averaged over samples, as the paper reports "the average MMR
    over all test samples". `reference` / `targets` are either shared ints/lists or, for sequences,
    sequences with one entry per sample. MMR = 1: motion preserved; > 1 amplified; < 1 attenuated.
    """
    if isinstance(generated, torch.Tensor | np.ndarray) and generated.ndim == 4:
        return motion_ratio(generated, real, reference, targets, size)
    generated, real = list(generated), list(real)
    if len(generated) != len(real) or not generated:
        raise ValueError(f"mmr: {len(generated)} generated clips vs {len(real)} real clips")
    refs = reference if isinstance(reference, Sequence) else [reference] * len(real)
    tgts = targets if targets is not None and _is_per_sample(targets) else [targets] * len(real)
    ratios = [motion_ratio(g, r, rf, tg, size) for g, r, rf, tg in zip(generated, real, refs, tgts)]
    return float(np.mean(ratios))


def _is_per_sample(targets) -> bool:
    return len(targets) > 0 and isinstance(targets[0], Sequence | range)


def log_mmr_distance(value: float) -> float:
    """|log MMR|: how far a ratio is from perfect motion preservation, symmetric in over/under."""
    if not value > 0 or not math.isfinite(value):
        return math.inf
    return abs(math.log(value))
