"""Alpha selection rule, the automatic calibration on stand-in backbones, pairing, cached generation."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from magplus_lib.evaluation.clip_cache import generate_cached, generated_path
from magplus_lib.evaluation.generation import (
    load_frame_folder,
    load_or_make_pairing,
    onset_sources,
    pair_sources,
    run_setting,
    score_clips,
    source_pool,
)
from magplus_lib.evaluation.mer import MERNet
from magplus_lib.evaluation.metrics import expression_targets, mmr, motion_magnitude, motion_ratio
from magplus_lib.evaluation.sweep import (
    SPURIOUS_SHARE,
    CachedPipeline,
    calibrate_alpha_demag,
    is_spurious,
    load_alpha_choice,
    parse_alpha,
    run_grid,
    save_alpha_choice,
    select_pair,
    static_driver,
)

torch.set_num_threads(1)


def shifted_clip(step_px: float, frames: int = 4, size: int = 96, seed: int = 0) -> torch.Tensor:
    """Smooth texture moved right by step_px * t pixels in frame t (exact sub-pixel resampling)."""
    import cv2

    rng = np.random.default_rng(seed)
    base = cv2.resize(
        rng.random((24, 24)).astype(np.float32), (2 * size, 2 * size), interpolation=cv2.INTER_CUBIC
    )
    out = []
    for t in range(frames):
        moved = cv2.warpAffine(
            base,
            np.float32([[1, 0, step_px * t], [0, 1, 0]]),
            (2 * size, 2 * size),
            flags=cv2.INTER_CUBIC,
            borderMode=cv2.BORDER_REFLECT,
        )
        out.append(np.repeat(moved[None, size // 2 : size // 2 + size, size // 2 : size // 2 + size], 3, 0))
    return torch.from_numpy(np.stack(out)).float().clamp(0, 1)


# ---- selection rule ----
GRID = pd.DataFrame(
    {
        "alpha_mag": [2, 2, 5, 5, 7],
        "alpha_demag": [1, 0.5, 1, 0.5, 0.2],
        "UAR": [0.50, 0.60, 0.60, 0.55, 0.60],
        "UF1": [0.40, 0.45, 0.50, 0.42, 0.30],
        "MMR": [0.7, 1.6, 0.9, 1.0, 1.3],
    }
)


def test_select_pair_best_uar_ties_by_log_mmr():
    # Three rows tie at UAR 0.60; their |log MMR| are 0.47, 0.105, 0.26 -> (5, 1).
    sel = select_pair(GRID)
    assert (sel["alpha_mag"], sel["alpha_demag"], sel["rule"]) == (5, 1, "uar_then_logmmr")
    # A tolerance wide enough to tie 0.55 with 0.60 lets the exact MMR = 1 row win.
    assert select_pair(GRID, tie_tolerance=0.06)["alpha_demag"] == 0.5
    assert select_pair(GRID, rule="logmmr_then_uar")["MMR"] == 1.0
    assert select_pair(GRID, rule="uf1_then_logmmr")["UF1"] == 0.50
    with pytest.raises(ValueError, match="known rules"):
        select_pair(GRID, rule="best_guess")


def test_select_pair_remaining_ties_prefer_mild_processing():
    grid = pd.DataFrame(
        {"alpha_mag": [5, 3, 3], "alpha_demag": [0.5, 0.25, 0.5], "UAR": [0.6] * 3, "MMR": [2.0] * 3}
    )
    sel = select_pair(grid)
    assert (sel["alpha_mag"], sel["alpha_demag"]) == (3, 0.5)


def test_parse_alpha_fractions():
    assert parse_alpha("1/3") == pytest.approx(1 / 3) and parse_alpha(5) == 5.0
    for bad in ("0", "-2", "x", "1/0"):
        with pytest.raises(ValueError):
            parse_alpha(bad)


# ---- calibration ----
REAL_STEPS = [0.5, 0.7, 0.6]


def _stand_in_pipeline(backbone_gain: float, demag_exponent: float = 1.0):
    """MagPlus multiplies motion by alpha_mag, the backbone by a known gain, DeMagPlus by alpha**exponent.

    The intermediate passed between stages is the motion amplitude; only the final clip is rendered and
    measured with Farneback, exactly like real generated clips.
    """
    real = [shifted_clip(s, seed=i) for i, s in enumerate(REAL_STEPS)]
    calls = []

    def drive(i, alpha_mag):
        calls.append((i, alpha_mag))
        return (i, REAL_STEPS[i] * alpha_mag * backbone_gain)

    def demag(x, alpha_demag):
        i, amp = x
        return (i, amp * alpha_demag**demag_exponent)

    def score(outputs):
        gen = [shifted_clip(amp, seed=i) for i, amp in outputs]
        targets = [expression_targets(0, 3)] * len(gen)
        return {"UAR": 0.5, "MMR": mmr(gen, real, [0] * len(gen), targets)}

    return CachedPipeline(len(real), drive, demag, score), calls


def test_gain_and_calibration_on_a_backbone_with_known_gain():
    # Backbone suppresses motion to half; MagPlus x4 -> gain 2 -> alpha_DeMagPlus 1/2 -> MMR 1.
    pipe, _ = _stand_in_pipeline(backbone_gain=0.5)
    gain = pipe.gain(4.0)
    assert gain == pytest.approx(2.0, rel=0.1)
    alpha, trace = calibrate_alpha_demag(lambda a: pipe(4.0, a)["MMR"], gain, iterations=0)
    assert alpha == pytest.approx(0.5, rel=0.1)
    assert trace[0]["MMR"] == pytest.approx(1.0, abs=0.1)


def test_calibration_corrects_an_imperfect_demagnifier():
    # DeMagPlus attenuates only as alpha**0.7: 1/gain alone leaves MMR ~ 1.23; the corrections fix it.
    pipe, _ = _stand_in_pipeline(backbone_gain=0.5, demag_exponent=0.7)
    gain = pipe.gain(4.0)
    alpha, trace = calibrate_alpha_demag(lambda a: pipe(4.0, a)["MMR"], gain, iterations=3)
    assert trace[0]["MMR"] > 1.15
    final = min(trace, key=lambda r: abs(math.log(r["MMR"])))
    assert final["alpha_demag"] == alpha
    assert abs(math.log(final["MMR"])) < 0.07
    assert alpha == pytest.approx(0.5 ** (1 / 0.7), rel=0.15)  # the exact answer for this stand-in


def test_calibration_cannot_amplify():
    alpha, trace = calibrate_alpha_demag(lambda a: 0.4 * a, gain=0.4, iterations=2)
    assert alpha == 1.0 and trace == [{"alpha_demag": 1.0, "MMR": 0.4}]
    with pytest.raises(ValueError, match="gain"):
        calibrate_alpha_demag(lambda a: 1.0, gain=0.0)


def test_grid_runs_magplus_backbone_once_per_alpha_mag_and_saves_choice(tmp_path):
    pipe, calls = _stand_in_pipeline(backbone_gain=1.0)
    grid = run_grid(pipe, [2, 4], [1, "1/2", "1/4"])
    assert len(grid) == 6 and len(calls) == 2 * len(REAL_STEPS)
    # Expected MMR = alpha_mag * alpha_demag for an exact stand-in.
    assert np.allclose(grid["MMR"], grid["alpha_mag"] * grid["alpha_demag"], rtol=0.12)
    sel = select_pair(grid)  # all UAR equal: the pair with MMR closest to 1 and mildest processing
    assert sel["alpha_mag"] * sel["alpha_demag"] == pytest.approx(1.0)
    path = tmp_path / "alpha" / "samm_fomm.json"
    save_alpha_choice(
        path,
        {
            "dataset": "samm",
            "backbone": "fomm",
            "selected": sel,
            "calibrated": {"alpha_mag": 4.0, "alpha_demag": 0.25},
        },
    )
    assert load_alpha_choice(path) == (sel["alpha_mag"], sel["alpha_demag"])
    assert load_alpha_choice(path, "calibrated") == (4.0, 0.25)
    with pytest.raises(FileNotFoundError, match="casme3_fomm.json"):
        load_alpha_choice(tmp_path / "alpha" / "casme3_fomm.json")


# ---- pairing ----
DRIVERS = pd.DataFrame(
    {"clip_id": [f"c{i}" for i in range(9)], "subject": ["s1"] * 3 + ["s2"] * 4 + ["s3"] * 2}
)


def test_pairing_uses_another_subject_and_is_seeded(tmp_path):
    p = pair_sources(DRIVERS, seed=0)
    assert len(p) == 9 and (p["driver_subject"] != p["source_subject"]).all()
    subj = dict(zip(DRIVERS["clip_id"], DRIVERS["subject"]))
    assert all(subj[s] == ss for s, ss in zip(p["source_clip_id"], p["source_subject"]))
    shuffled = pair_sources(DRIVERS.sample(frac=1.0, random_state=3), seed=0)
    pd.testing.assert_frame_equal(p, shuffled)
    assert any(not pair_sources(DRIVERS, seed=s).equals(p) for s in (1, 2, 3))
    path = tmp_path / "pairs.csv"
    made = load_or_make_pairing(path, DRIVERS, 0)
    path.write_text(path.read_text())  # unchanged file is reused as is
    pd.testing.assert_frame_equal(load_or_make_pairing(path, DRIVERS, 0), made)
    with pytest.raises(ValueError, match="two subjects"):
        pair_sources(DRIVERS[DRIVERS["subject"] == "s1"], seed=0)


def test_onset_sources_gives_each_driver_the_onset_of_another_subjects_clip(tmp_path, capsys):
    from types import SimpleNamespace as Clip

    # clip k of subject s has frames whose value encodes (k, frame); its onset is frame 2
    pool = [
        Clip(clip_id=f"{s}_{k}", subject=s, label3=0, onset_index=2) for s in ("a", "b", "c") for k in (0, 1)
    ]
    pool.append(Clip(clip_id="a_unlabelled", subject="a", label3=None, onset_index=0))
    drivers = [Clip(clip_id=c.clip_id, subject=c.subject) for c in pool[:4]]
    number = {c.clip_id: i for i, c in enumerate(pool)}

    def frames_of(clip):
        return torch.arange(5.0)[:, None] + 10 * number[clip.clip_id]

    path = tmp_path / "pairing.csv"
    sources, pairing = onset_sources(drivers, pool, frames_of, 0, path)
    assert path.is_file() and list(pairing["driver_clip_id"]) == sorted(d.clip_id for d in drivers)
    source_of = dict(zip(pairing["driver_clip_id"], pairing["source_clip_id"]))
    for d, frame in zip(drivers, sources):  # in the drivers' order, the source clip's onset frame
        src = source_of[d.clip_id]
        assert src.split("_")[0] != d.subject and src != "a_unlabelled"
        assert torch.equal(frame, torch.tensor([2.0 + 10 * number[src]]))
    again, _ = onset_sources(drivers, pool, frames_of, 0, path)
    assert all(torch.equal(x, y) for x, y in zip(sources, again))

    parts = {"train": pool[2:4], "val": pool[4:6], "test": pool[:2] + pool[6:]}  # test: subject a only
    assert source_pool(parts) == parts["train"] + parts["val"] + parts["test"]
    assert "only one test subject" in capsys.readouterr().out
    parts["test"] = pool[:4]
    assert source_pool(parts) == pool[:4]


# ---- generation ----
def test_generate_cached_reuses_until_an_input_changes(tmp_path):
    calls = []

    def make():
        calls.append(1)
        return torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(len(calls)))

    path = generated_path(tmp_path, "samm", "fomm", "magplus+demagplus", "006/1_2")
    assert path.parent.name == "magplus_demagplus" and path.name == "006_1_2.safetensors"
    f1, meta1, reused1 = generate_cached(path, {"alpha": 2.0}, make, {"onset_pos": 0, "apex_pos": 2})
    f2, meta2, reused2 = generate_cached(path, {"alpha": 2.0}, make)
    assert (reused1, reused2, len(calls)) == (False, True, 1)
    assert torch.equal(f1, f2) and meta2["apex_pos"] == 2
    assert torch.equal(f1, (f1 * 255).round() / 255)  # the stored uint8 frames are what is returned
    _, _, reused3 = generate_cached(path, {"alpha": 3.0}, make)
    assert not reused3 and len(calls) == 2


def test_run_setting_passes_the_right_modules():
    seen = []

    def transfer(driver, source, backbone, magplus=None, demagplus=None, alpha_mag=1, alpha_demag=1):
        seen.append((magplus, demagplus, alpha_mag, alpha_demag))
        return driver

    for s in ("backbone", "magplus", "demagplus", "magplus+demagplus"):
        run_setting(transfer, torch.zeros(1), None, "bb", s, "M", "D", 5.0, 1 / 3)
    assert seen == [
        (None, None, 1.0, 1.0),
        ("M", None, 5.0, 1.0),
        (None, "D", 1.0, 1 / 3),
        ("M", "D", 5.0, 1 / 3),
    ]
    with pytest.raises(ValueError, match="known settings"):
        run_setting(transfer, None, None, "bb", "both")


def test_score_clips_measures_motion_against_the_driver():
    real = [shifted_clip(0.6, seed=1), shifted_clip(0.6, seed=2)]
    gen = [shifted_clip(1.2, seed=1), shifted_clip(0.6, seed=2)]
    torch.manual_seed(0)
    model = MERNet(3, 16).eval()
    per_clip, summary = score_clips(
        model,
        gen,
        real,
        [0, 0],
        [3, 3],
        ["Negative", "Surprise"],
        ["Negative", "Positive", "Surprise"],
        input_size=32,
        clip_ids=["a", "b"],
    )
    assert per_clip["MMR"].tolist() == pytest.approx([2.0, 1.0], rel=0.12)
    assert summary["MMR"] == pytest.approx(1.5, rel=0.1) and summary["n"] == 2
    assert summary["Accuracy"] == per_clip["correct"].mean()


def test_load_frame_folder(tmp_path):
    import cv2

    for i in range(3):
        img = np.full((10, 12, 3), 40 * i, np.uint8)
        img[..., 2] = 200  # BGR on disk: red channel
        cv2.imwrite(str(tmp_path / f"img_{i:03d}.png"), img)
    frames = load_frame_folder(tmp_path)
    assert frames.shape == (3, 3, 10, 12)
    assert frames[0, 0, 0, 0] == pytest.approx(200 / 255) and frames[2, 2, 0, 0] == pytest.approx(80 / 255)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no image frames"):
        load_frame_folder(empty)


def test_expression_positions_keep_onset_and_apex():
    from magplus_lib.evaluation.generation import expression_positions

    assert expression_positions(10, 13, 20, None) == ([10, 11, 12, 13], 0, 3)
    pos, o, a = expression_positions(10, 17, 30, 4)
    assert pos == [10, 12, 15, 17] and pos[o] == 10 and pos[a] == 17
    pos, o, a = expression_positions(10, 17, 30, 4, through_offset=True)
    assert pos[0] == 10 and pos[-1] == 30 and pos[a] == 17 and len(pos) <= 5
    assert expression_positions(5, 5, 9, None) == ([5, 6], 0, 1)  # apex on the onset frame


def test_eval_clips_limit_spans_subjects():
    from types import SimpleNamespace

    from magplus_lib.evaluation.generation import eval_clips_from

    clips = [
        SimpleNamespace(
            clip_id=f"{s}_{k}", subject=s, label3="Negative", onset_index=0, apex_index=2, offset_index=3
        )
        for s in ("a", "b", "c")
        for k in range(3)
    ] + [SimpleNamespace(clip_id="x", subject="a", label3=None, onset_index=0, apex_index=2, offset_index=3)]
    frames = torch.arange(5.0).view(5, 1, 1, 1).expand(5, 3, 2, 2)
    out = eval_clips_from(clips, lambda c: frames, limit=4)
    assert [c.clip_id for c in out] == ["a_0", "a_1", "b_0", "c_0"]
    assert torch.equal(out[0].frames[:, 0, 0, 0], torch.tensor([0.0, 1.0, 2.0])) and out[0].apex_pos == 2
    assert len(eval_clips_from(clips, lambda c: frames)) == 9  # the unlabelled clip is left out


# ---- spurious motion: DeMagPlus must not be rewarded for adding motion ----
TARGETS = expression_targets(0, 3)


def _warp_right(frames: torch.Tensor, step_px: float) -> torch.Tensor:
    """Frame t moved right by step_px * t pixels: motion of its own, whatever the input does."""
    import cv2

    out = []
    for t, frame in enumerate(frames.numpy()):
        shift = np.float32([[1, 0, step_px * t], [0, 1, 0]])
        size = (frame.shape[2], frame.shape[1])
        out.append(
            np.stack(
                [
                    cv2.warpAffine(c, shift, size, flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
                    for c in frame
                ]
            )
        )
    return torch.from_numpy(np.stack(out)).clamp(0, 1)


def honest_demag(frames, alpha_demag):
    """Blends every frame toward frame 0: for this smooth texture it scales the motion by alpha_demag."""
    return frames[:1] + alpha_demag * (frames - frames[:1])


def adding_demag(frames, alpha_demag, step_px=0.4):
    """Built to add motion: at any alpha < 1 it drifts the clip by step_px per frame, even a static one."""
    return frames if alpha_demag == 1 else _warp_right(frames, step_px)


def _static_check_pipeline(backbone_gain: float, demag):
    """Stand-in backbone rendering MagPlus x alpha_mag x gain of each driver's motion, with the static
    checks wired in: a static driver animates into a static clip (the stand-in returns it as is)."""
    real = [shifted_clip(s, seed=i) for i, s in enumerate(REAL_STEPS)]
    static_calls = []

    def drive(i, alpha_mag):
        return shifted_clip(REAL_STEPS[i] * alpha_mag * backbone_gain, seed=i)

    def drive_static(i):
        static_calls.append(i)
        return static_driver(real[i], 0)

    def motion(outputs):
        return [motion_ratio(g, r, 0, TARGETS) for g, r in zip(outputs, real)]

    def score(outputs):
        return {"UAR": 0.5, "MMR": mmr(outputs, real, 0, TARGETS)}

    pipe = CachedPipeline(len(real), drive, demag, score, drive_static=drive_static, motion=motion)
    return pipe, real, static_calls


def test_static_driver_repeats_the_onset_frame():
    clip = shifted_clip(0.6, frames=5)
    still = static_driver(clip, 2)
    assert still.shape == clip.shape and all(torch.equal(f, clip[2]) for f in still)
    assert motion_magnitude(still, 0, TARGETS) < 0.01


def test_sweep_rejects_a_demagnifier_that_adds_motion_to_a_static_clip():
    # FOMM-like near-static backbone (MMR ~ 0.04): the adding DeMagPlus lifts the MMR to ~ 0.7, which
    # the plain rule would prefer as "closer to 1".
    pipe, _, static_calls = _static_check_pipeline(backbone_gain=0.01, demag=adding_demag)
    grid = run_grid(pipe, [3], [1, "1/3"])
    bad = grid[grid["alpha_demag"] < 1].iloc[0]
    assert bad["MMR_no_demag"] < 0.1 < 0.5 < bad["MMR"]
    assert bad["static_added"] > SPURIOUS_SHARE * bad["MMR"]
    assert grid["spurious"].tolist() == [False, True]
    assert select_pair(grid.drop(columns="spurious"))["alpha_demag"] < 1  # what the old rule chose
    sel = select_pair(grid)
    assert (sel["alpha_mag"], sel["alpha_demag"], sel["excluded_spurious"]) == (3, 1, 1)
    assert static_calls == [0, 1, 2]  # static backbone outputs made once per clip

    # An honest attenuator on a moving backbone (MMR 2 without DeMagPlus) adds nothing to a static clip,
    # is not flagged, and its cell (MMR ~ 1) is selected.
    pipe, _, _ = _static_check_pipeline(backbone_gain=1.0, demag=honest_demag)
    grid = run_grid(pipe, [2], [1, "1/2"])
    assert not grid["spurious"].any()
    assert grid["static_added"].abs().max() < 1e-9
    sel = select_pair(grid)
    assert (sel["alpha_demag"], sel["excluded_spurious"]) == (0.5, 0)
    assert sel["MMR"] == pytest.approx(1.0, abs=0.05)


def test_sweep_flags_an_mmr_near_one_made_mostly_of_added_motion():
    # DeMagPlus attenuates (MMR 2 -> ~1.3) but also drifts by 0.5 px per frame: about 0.85 of that MMR
    # is its own motion, more than SPURIOUS_SHARE of it, so the cell closest to 1 is not selectable.
    pipe, _, _ = _static_check_pipeline(
        backbone_gain=1.0, demag=lambda x, a: adding_demag(honest_demag(x, a), a, step_px=0.5)
    )
    grid = run_grid(pipe, [2], [1, "1/4"])
    row = grid[grid["alpha_demag"] < 1].iloc[0]
    assert row["MMR"] < row["MMR_no_demag"]  # the first criterion does not fire here
    assert row["static_added"] >= SPURIOUS_SHARE * row["MMR"] and row["spurious"]
    assert select_pair(grid.drop(columns="spurious"))["alpha_demag"] == 0.25
    assert select_pair(grid)["alpha_demag"] == 1


def test_static_added_matches_a_known_shift():
    # On a static clip the adding DeMagPlus produces a steady drift of 0.3 px per frame; the real
    # drivers drift REAL_STEPS px per frame over the same positions, so the added motion in MMR units
    # is 0.3 / step per clip (Farneback measures the shift; the static clip itself measures ~ 0).
    step = 0.3
    pipe, real, _ = _static_check_pipeline(
        backbone_gain=1.0, demag=lambda x, a: adding_demag(x, a, step_px=step)
    )
    added = pipe.added_static(1 / 3)
    assert added == pytest.approx(np.mean([step / r for r in REAL_STEPS]), rel=0.05)
    # The same number, recomputed by hand with motion_magnitude on each clip's onset and targets.
    by_hand = np.mean(
        [
            (
                motion_magnitude(_warp_right(static_driver(r, 0), step), 0, TARGETS)
                - motion_magnitude(static_driver(r, 0), 0, TARGETS)
            )
            / motion_magnitude(r, 0, TARGETS)
            for r in real
        ]
    )
    assert added == pytest.approx(by_hand, rel=1e-9)
    assert pipe.added_static(1.0) == pytest.approx(0.0, abs=1e-12)
    grid = run_grid(pipe, [2], [1, "1/3"])
    assert grid["static_added"].tolist() == pytest.approx([0.0, added])


def test_rows_without_demagplus_are_never_spurious():
    # Whatever the measurements, alpha_demag = 1 (DeMagPlus not run) flags nothing...
    assert not is_spurious(1.0, mmr=5.0, mmr_no_demag=0.1, static_added=10.0)
    # ...even for a stand-in that drifts at alpha 1 too (the real pipeline skips DeMagPlus there).
    pipe, _, _ = _static_check_pipeline(backbone_gain=0.01, demag=lambda x, a: _warp_right(x, 0.4))
    grid = run_grid(pipe, [3, 5], [1, "1/2"])
    ones = grid[grid["alpha_demag"] == 1]
    assert (ones["static_added"] > SPURIOUS_SHARE * ones["MMR"]).all() and not ones["spurious"].any()
    assert grid[grid["alpha_demag"] < 1]["spurious"].all()
    # The two criteria, on numbers: raising the motion, or a large static share, flags; neither does not.
    assert is_spurious(0.5, mmr=0.3, mmr_no_demag=0.02, static_added=0.0)
    assert is_spurious(0.5, mmr=1.0, mmr_no_demag=3.0, static_added=SPURIOUS_SHARE)
    assert not is_spurious(0.5, mmr=1.0, mmr_no_demag=3.0, static_added=0.9 * SPURIOUS_SHARE)


def test_select_pair_on_old_grids_and_with_flags():
    # A grid without the `spurious` column selects exactly as before and reports no exclusion.
    old = select_pair(GRID)
    assert (old["alpha_mag"], old["alpha_demag"]) == (5, 1) and "excluded_spurious" not in old
    assert set(old) == set(GRID.columns) | {"abs_log_mmr", "rule"}
    # Flagging the would-be choice moves the selection to the next best row.
    flagged = GRID.assign(spurious=[False, False, True, False, False])
    sel = select_pair(flagged)
    assert (sel["alpha_mag"], sel["alpha_demag"], sel["excluded_spurious"]) == (7, 0.2, 1)
    assert select_pair(GRID.assign(spurious=False)) == {**old, "spurious": False, "excluded_spurious": 0}
    with pytest.raises(ValueError, match="every grid row"):
        select_pair(GRID.assign(spurious=True))
    with pytest.raises(ValueError, match="both"):
        CachedPipeline(1, None, None, None, drive_static=lambda i: None)
