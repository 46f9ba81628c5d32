"""Pretraining pairs with real texture (magplus_lib.data.texture_pairs):
deterministic, moved, held-out faces."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from magplus_lib.data import texture_pairs
from magplus_lib.data.clips import DataError
from magplus_lib.data.texture_pairs import TEXTURE_IMAGES, TexturePairDataset
from magplus_lib.magnifier.real_frames import EVALUATION_FACES


def test_pairs_are_fixed_by_seed_and_index_and_differ_between_seeds():
    a, b = TexturePairDataset(32, 6, seed=1), TexturePairDataset(32, 6, seed=1)
    for i in (0, 5):
        (x0, x1), (y0, y1) = a[i], b[i]
        assert torch.equal(x0, y0) and torch.equal(x1, y1)
        assert x0.shape == (3, 32, 32) and 0 <= float(x0.min()) and float(x0.max()) <= 1
    assert not torch.equal(a[0][0], TexturePairDataset(32, 6, seed=2)[0][0])
    with pytest.raises(IndexError):
        a[6]


def test_the_second_frame_is_the_first_moved_by_the_requested_amount():
    still = TexturePairDataset(32, 4, motion_px=(1e-6, 1e-6))
    moved = TexturePairDataset(32, 4, motion_px=(2.0, 2.0))
    for i in range(4):
        f0, f1 = still[i]
        assert float((f1 - f0).abs().mean()) < 2e-3  # at most SynthME's 0.03 px drift
        g0, g1 = moved[i]
        assert torch.equal(f0, g0)  # same crop (the motion is drawn after it)
        assert float((g1 - g0).abs().mean()) > 5 * float((f1 - f0).abs().mean())


def test_evaluation_faces_are_never_training_images():
    held_out = {file for _, file in EVALUATION_FACES.values()}
    assert not held_out & set(TEXTURE_IMAGES)
    assert all((texture_pairs.image_folder() / name).is_file() for name in TEXTURE_IMAGES)


def test_missing_scikit_image_is_a_clear_error(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "skimage" else real(name, *a)
    )
    with pytest.raises(DataError, match="scikit-image"):
        texture_pairs.image_folder()


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="count"):
        TexturePairDataset(32, 0)
    with pytest.raises(ValueError, match="motion_px"):
        TexturePairDataset(32, 3, motion_px=(2.0, 1.0))


def test_pairs_are_kept_as_8_bit_frames_and_read_back_identically():
    ds = TexturePairDataset(32, 3, seed=4)
    first = ds[1]
    assert torch.equal((first[1] * 255).round() / 255, first[1])  # 8-bit levels, as video stores them
    assert all(torch.equal(a, b) for a, b in zip(first, ds[1]))  # the kept copy
    assert all(torch.equal(a, b) for a, b in zip(first, TexturePairDataset(32, 3, seed=4)[1]))  # recomputed


def test_images_subset_is_honoured_and_unknown_names_refused():
    ds = TexturePairDataset(32, 2, seed=0, images=("coffee.png",))
    assert len(ds.images) == 1 and ds.images[0].shape[:2] == (400, 600)  # coffee.png's own size
    with pytest.raises(ValueError, match="nope.png"):
        TexturePairDataset(32, 2, images=("nope.png",))
    with pytest.raises(ValueError, match="non-empty"):
        TexturePairDataset(32, 2, images=())
