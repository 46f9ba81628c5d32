"""Recognition scores against a hand-computed confusion matrix, and MMR on clips with known motion."""

import math

import numpy as np
import pytest
import torch

from magplus_lib.evaluation.metrics import (
    expression_targets,
    mmr,
    motion_magnitude,
    motion_ratio,
    recognition_scores,
)

CLASSES = ("Negative", "Positive", "Surprise")


def test_recognition_scores_hand_computed():
    # Confusion (rows true, cols pred) over N, P, S:
    #   N: 3 N, 1 P, 0 S   TP 3, FP 1 (a true S), FN 1   recall 3/4   F1 = 2TP/(2TP+FP+FN) = 6/8
    #   P: 0 N, 2 P, 0 S   TP 2, FP 2 (one N, one S), FN 0  recall 1   F1 = 4/6
    #   S: 1 N, 1 P, 0 S   TP 0, never predicted, FN 2      recall 0   F1 = 0
    y_true = ["Negative"] * 4 + ["Positive"] * 2 + ["Surprise"] * 2
    y_pred = ["Negative", "Negative", "Negative", "Positive", "Positive", "Positive", "Negative", "Positive"]
    s = recognition_scores(y_true, y_pred, CLASSES)
    assert s["UAR"] == pytest.approx((3 / 4 + 1 + 0) / 3)
    assert s["UF1"] == pytest.approx((6 / 8 + 4 / 6 + 0) / 3)
    assert s["Accuracy"] == pytest.approx(5 / 8)


def test_absent_class_still_counts():
    # No Surprise sample at all in this split: it still enters the averages with recall 0 and F1 0,
    # so a perfect classifier on the two present classes scores 2/3, not 1.
    y = ["Negative", "Positive", "Negative"]
    s = recognition_scores(y, y, CLASSES)
    assert s["UAR"] == pytest.approx(2 / 3)
    assert s["UF1"] == pytest.approx(2 / 3)
    assert s["Accuracy"] == 1.0


def test_recognition_scores_rejects_bad_input():
    with pytest.raises(ValueError, match="not in the class list"):
        recognition_scores(["Negative"], ["Happy"], CLASSES)
    with pytest.raises(ValueError, match="predictions"):
        recognition_scores(["Negative"], [], CLASSES)
    with pytest.raises(ValueError, match="no samples"):
        recognition_scores([], [], CLASSES)


def _texture(size=96, seed=0):
    rng = np.random.default_rng(seed)
    noise = rng.random((size // 8, size // 8)).astype(np.float32)
    import cv2

    return cv2.resize(noise, (size, size), interpolation=cv2.INTER_CUBIC).clip(0, 1)


def translated_clip(step_px: float, frames: int = 5, size: int = 96, seed: int = 0) -> torch.Tensor:
    """A smooth texture translated right by step_px * t (pixels at `size`) in frame t, by exact resampling."""
    import cv2

    base = _texture(size * 2, seed)  # large canvas; crop the centre so no border enters the view
    out = []
    for t in range(frames):
        m = np.float32([[1, 0, step_px * t], [0, 1, 0]])
        moved = cv2.warpAffine(
            base, m, (size * 2, size * 2), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT
        )
        crop = moved[size // 2 : size // 2 + size, size // 2 : size // 2 + size]
        out.append(np.repeat(crop[None], 3, 0))
    return torch.from_numpy(np.stack(out)).float()


def test_motion_magnitude_recovers_known_translation():
    # A 1.5 px/frame shift at 96 px is 1.0 px/frame at the 64 px MMR resolution: frames 1..4 move by
    # 1, 2, 3, 4 px from frame 0, mean 2.5 px.
    clip = translated_clip(1.5)
    assert motion_magnitude(clip, 0, [1, 2, 3, 4]) == pytest.approx(2.5, rel=0.1)
    assert motion_magnitude(clip, 0, [2]) == pytest.approx(2.0, rel=0.1)
    static = translated_clip(0.0)
    assert motion_magnitude(static) < 0.02


def test_mmr_of_doubled_motion_is_two():
    real, doubled, halved = (
        translated_clip(0.6, seed=1),
        translated_clip(1.2, seed=1),
        translated_clip(0.3, seed=1),
    )
    targets = expression_targets(0, 3)
    assert targets == [1, 2, 3]
    assert motion_ratio(doubled, real, 0, targets) == pytest.approx(2.0, rel=0.12)
    assert mmr(real, real, 0, targets) == pytest.approx(1.0)
    # Over samples: the per-sample ratios (about 2 and 0.5) are averaged, not the magnitudes.
    pooled = mmr([doubled, halved], [real, real], [0, 0], [targets, targets])
    assert pooled == pytest.approx((2.0 + 0.5) / 2, rel=0.12)


def test_mmr_rejects_misaligned_clips():
    with pytest.raises(ValueError, match="frames"):
        motion_ratio(translated_clip(1.0, frames=4), translated_clip(1.0, frames=5))
    with pytest.raises(ValueError, match="outside"):
        motion_magnitude(translated_clip(1.0, frames=3), 0, [5])
    assert math.isinf(__import__("magplus_lib.evaluation.metrics", fromlist=["x"]).log_mmr_distance(0.0))
