"""Subject-independent splits and the frame-pair datasets."""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from magplus_lib.data.clips import Clip, DataError
from magplus_lib.data.pairs import ClipDataset, GenericPairDataset, MicroPairDataset
from magplus_lib.data.splits import PARTS, load_split, make_subject_split, save_split, select


def _clips(n_subjects=10, per_subject=3):
    return [
        Clip("samm", f"{s:03d}", f"{s:03d}_1_{k}", [], 0, 0, 0, "anger", None, "4", "Negative", 200.0)
        for s in range(n_subjects)
        for k in range(per_subject)
    ]


def test_no_subject_in_two_parts_and_folds_are_loso(tmp_path):
    clips = _clips(11)
    split = make_subject_split(clips, {"train": 0.6, "val": 0.2, "test": 0.2}, seed=5)
    assert sorted(split["subject"]) == sorted({c.subject for c in clips})
    parts = {p: set(split.loc[split.part == p, "subject"]) for p in PARTS}
    for p in PARTS:
        for q in PARTS:
            if p != q:
                assert not parts[p] & parts[q]
    assert [len(parts[p]) for p in PARTS] == [7, 2, 2]
    assert sorted(split["fold"]) == list(range(11))
    chosen = select(clips, split, "test")
    assert {c.subject for c in chosen} == parts["test"] and len(chosen) == 2 * 3
    fold0 = split.loc[split.fold == 0, "subject"].item()
    assert {c.subject for c in select(clips, split, fold=0)} == {fold0}
    assert fold0 not in {c.subject for c in select(clips, split, fold=0, exclude_fold=True)}
    # seeded: same seed same split, another seed another split; CSV round trip keeps '006'-style ids
    assert split.equals(make_subject_split(clips, None, seed=5))
    assert not split["part"].equals(make_subject_split(clips, None, seed=6)["part"])
    path = save_split(split, tmp_path / "splits" / "samm.csv")
    back = load_split(path)
    assert back["subject"].tolist() == split["subject"].tolist() and back["subject"].iloc[0] == "000"


def test_split_errors(tmp_path):
    clips = _clips(2)
    with pytest.raises(DataError, match="cannot fill"):
        make_subject_split(clips, {"train": 0.6, "val": 0.2, "test": 0.2}, 0)
    with pytest.raises(DataError, match="unknown part"):
        make_subject_split(_clips(5), {"train": 0.5, "holdout": 0.5}, 0)
    split = make_subject_split(_clips(5), {"train": 0.8, "test": 0.2}, 0)
    assert set(split["part"]) == {"train", "test"}
    with pytest.raises(DataError, match="unknown split part"):
        select(clips, split, "dev")
    with pytest.raises(DataError, match="not in the split"):
        select(_clips(7), split, "train")
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"subject": ["1", "1"], "part": ["train", "test"], "fold": [0, 1]}).to_csv(bad, index=False)
    with pytest.raises(DataError, match="listed twice"):
        load_split(bad)


def _png_clip(tmp_path, name, n=5, onset_pos=1, offset_pos=4):
    folder = tmp_path / name
    folder.mkdir()
    paths = []
    for k in range(n):
        img = np.full((12, 12, 3), 20 * k + 10, np.uint8)
        img[0, 0] = 255  # keeps Haar from ever firing on a flat frame; irrelevant under 'center'
        p = folder / f"{name}_{100 + k}.png"
        cv2.imwrite(str(p), img)
        paths.append(p)
    return Clip(
        "samm",
        name,
        name,
        paths,
        100 + onset_pos,
        100 + onset_pos + 1,
        100 + offset_pos,
        "happiness",
        None,
        "12",
        "Positive",
        200.0,
    )


def test_micro_pairs_are_onset_to_t(tmp_path):
    clips = [_png_clip(tmp_path, "a"), _png_clip(tmp_path, "b", n=3, onset_pos=0, offset_pos=2)]
    crop = {"detector": "center", "fallback_fraction": 1.0}
    ds = MicroPairDataset(clips, 12, tmp_path / "cache", crop)
    assert len(ds) == 3 + 2  # t in onset+1..offset for each clip
    values = [(round(float(i0[0, 5, 5]) * 255), round(float(it[0, 5, 5]) * 255)) for i0, it in ds]
    assert values == [(30, 50), (30, 70), (30, 90), (10, 30), (10, 50)]
    i0, it = ds[0]
    assert i0.dtype == torch.float32 and i0.shape == (3, 12, 12)
    assert len(MicroPairDataset(clips, 12, None, crop, include_onset=True)) == 4 + 3
    assert len(MicroPairDataset(clips, 12, None, crop, max_pairs_per_clip=1)) == 2
    assert isinstance(ds.cache.get(0), np.memmap)  # npy crops are memory-mapped, not held in memory
    jpg = MicroPairDataset(clips, 12, tmp_path / "jpgcache", {**crop, "cache_format": "jpg"})
    again = MicroPairDataset(clips, 12, tmp_path / "jpgcache", {**crop, "cache_format": "jpg"})
    for (_, a1), (_, b1), (_, c1) in zip(ds, jpg, again):
        assert (a1 - b1).abs().mean() < 3 / 255 and torch.equal(b1, c1)  # flat frames survive JPEG
    assert len(list((tmp_path / "jpgcache" / "samm").glob("a_12_*/*.jpg"))) == 5
    frames, idx = ClipDataset(clips, 6, tmp_path / "cache", crop)[1]
    assert frames.shape == (3, 3, 6, 6) and idx == 1
    with pytest.raises(DataError, match="no clips"):
        MicroPairDataset([], 12, None)


def test_generic_pairs(tmp_path):
    (tmp_path / "pairs").mkdir()
    for k in range(2):
        cv2.imwrite(str(tmp_path / "pairs" / f"{k}.png"), np.full((16, 16, 3), 40 * k, np.uint8))
    pd.DataFrame({"frame0": ["pairs/0.png"], "frame1": ["pairs/1.png"]}).to_csv(
        tmp_path / "pairs.csv", index=False
    )
    ds = GenericPairDataset(tmp_path, 8)
    a, b = ds[0]
    assert (
        len(ds) == 1
        and a.shape == (3, 8, 8)
        and float(a.max()) == 0
        and abs(float(b.mean()) - 40 / 255) < 1e-6
    )
    with pytest.raises(DataError, match="pairs.csv"):
        GenericPairDataset(tmp_path / "none", 8)


def test_generic_pairs_from_frame_folders_pass_flowmag_filter(tmp_path):
    from magplus_lib.data.synthme import GenericFilter, index_generic_videos

    rng = np.random.default_rng(0)
    base = cv2.GaussianBlur(rng.uniform(0, 255, (80, 80, 3)).astype(np.float32), (0, 0), 2)
    src = tmp_path / "videos" / "clip1"
    src.mkdir(parents=True)
    for k in range(4):  # a blob-free texture whose right half drifts 1 px per frame
        img = base.copy()
        img[:, 40:] = np.roll(base, k, axis=1)[:, 40:]
        cv2.imwrite(str(src / f"{k:03d}.png"), np.clip((img - 128) * 4 + 128, 0, 255).astype(np.uint8))
    still = tmp_path / "videos" / "still"
    still.mkdir()
    for k in range(3):
        cv2.imwrite(str(still / f"{k}.png"), np.full((80, 80, 3), 90, np.uint8))
    filt = GenericFilter(filter_size=64, out_size=64, max_gap=1, pairs_per_video=3)
    n = index_generic_videos(tmp_path / "videos", tmp_path / "generic", filt, n_pairs=10, seed=0)
    df = pd.read_csv(tmp_path / "generic" / "pairs.csv")
    assert n == len(df) >= 1 and all("clip1" in s for s in df["source"])  # the still video fails mse > 10
    assert (df["flow_p0001"] <= 0.1).all() and (df["mse"] > 10).all()
    a, b = GenericPairDataset(tmp_path / "generic", 32)[0]
    assert a.shape == (3, 32, 32) and (a - b).abs().mean() > 0.01
    with pytest.raises(DataError, match="does not exist"):
        index_generic_videos(tmp_path / "nowhere", tmp_path / "g2", filt, 1)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no videos"):
        index_generic_videos(tmp_path / "empty", tmp_path / "g2", filt, 1)


def test_finetune_pairs_caps_evenly_then_replays():
    from torch.utils.data import TensorDataset

    from magplus_lib.data.pairs import finetune_pairs

    micro = TensorDataset(torch.arange(10.0)[:, None], torch.arange(10.0)[:, None])
    replay = TensorDataset(-torch.arange(1.0, 101.0)[:, None], torch.zeros(100, 1))
    assert finetune_pairs(micro, None) is micro and finetune_pairs(micro, 10) is micro
    capped = finetune_pairs(micro, 4)  # evenly spaced: every part of the clip list keeps pairs
    assert [float(capped[k][0]) for k in range(len(capped))] == [0.0, 3.0, 6.0, 9.0]
    mixed = finetune_pairs(micro, 4, replay, 0.5)
    assert len(mixed) == 8 and [float(mixed[k][0]) for k in (0, 3, 4, 7)] == [0.0, 9.0, -1.0, -100.0]
    assert finetune_pairs(micro, None, replay, 0.0) is micro


def test_with_replay_mixes_in_the_requested_share():
    from torch.utils.data import TensorDataset

    from magplus_lib.data.pairs import with_replay

    micro = TensorDataset(torch.zeros(10, 1), torch.zeros(10, 1))
    replay = TensorDataset(torch.arange(100.0)[:, None], torch.arange(100.0)[:, None])
    assert with_replay(micro, replay, 0.0) is micro
    mixed = with_replay(micro, replay, 0.5)
    assert len(mixed) == 20 and float(mixed[9][0]) == 0.0
    # evenly spaced over the replay set, first and last included
    assert [float(mixed[k][0]) for k in (10, 11, 19)] == [0.0, 11.0, 99.0]
    assert len(with_replay(micro, replay, 0.75)) == 40  # 30 replayed: 3 for every micro pair
    assert len(with_replay(micro, TensorDataset(torch.ones(5, 1), torch.ones(5, 1)), 0.9)) == 15  # capped
    with pytest.raises(ValueError, match="replay share"):
        with_replay(micro, replay, 1.0)


def test_changing_pairs_keeps_pairs_above_flowmags_mse():
    from torch.utils.data import TensorDataset

    from magplus_lib.data.clips import DataError
    from magplus_lib.data.pairs import changing_pairs

    img0 = torch.full((5, 3, 4, 4), 0.5)
    img1 = img0.clone()
    # pair k differs everywhere by k/255: MSE k^2 on the 0-255 scale (0, 1, 4, 9, 16)
    for k in range(5):
        img1[k] += k / 255.0
    pairs = TensorDataset(img0, img1)
    kept = changing_pairs(pairs, 6.0)  # MSE 9 and 16 kept, in order
    assert kept.indices == [3, 4]
    assert torch.equal(kept[0][1], img1[3])
    assert len(changing_pairs(pairs, 0.5)) == 4  # the identical pair goes
    with pytest.raises(DataError, match="no pair differs by more than MSE 20"):
        changing_pairs(pairs, 20.0)


def test_generic_pairs_are_rebuilt_when_their_source_or_settings_change_and_a_shortfall_warns(
    tmp_path, caplog
):
    from magplus_lib.data.synthme import GenericFilter, ensure_generic_pairs

    rng = np.random.default_rng(1)
    base = cv2.GaussianBlur(rng.uniform(0, 255, (80, 80, 3)).astype(np.float32), (0, 0), 2)
    videos = tmp_path / "videos"
    videos.mkdir()

    def write_video(name: str) -> None:  # an .avi written with OpenCV, as a user's would be
        out = cv2.VideoWriter(str(videos / name), cv2.VideoWriter_fourcc(*"MJPG"), 10, (80, 80))
        for k in range(6):
            img = base.copy()
            img[:, 40:] = np.roll(base, k, axis=1)[:, 40:]
            out.write(np.clip((img - 128) * 4 + 128, 0, 255).astype(np.uint8))
        out.release()

    write_video("a.avi")
    filt = GenericFilter(filter_size=64, out_size=64, max_gap=1, pairs_per_video=2)
    out = tmp_path / "generic"
    with caplog.at_level("WARNING"):
        assert ensure_generic_pairs(videos, out, filt, n_pairs=50, seed=0)
    kept = len(pd.read_csv(out / "pairs.csv"))
    assert 1 <= kept <= 2 and f"only {kept} of the 50 requested generic pairs" in caplog.text
    assert not ensure_generic_pairs(videos, out, filt, n_pairs=50, seed=0)  # same source and settings
    assert ensure_generic_pairs(videos, out, filt, n_pairs=1, seed=0)  # the count changed
    assert len(pd.read_csv(out / "pairs.csv")) == 1 and len(list((out / "pairs").iterdir())) == 2
    write_video("b.avi")  # the folder changed
    assert ensure_generic_pairs(videos, out, filt, n_pairs=1, seed=0)
