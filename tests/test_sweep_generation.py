"""Alpha selection rule, the automatic calibration on stand-in backbones, pairing, cached generation."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from magplus_lib.generation import (
    generate_cached,
    generated_path,
    load_frame_folder,
    load_or_make_pairing,
    pair_sources,
    run_setting,
    score_clips,
)
from magplus_lib.mer import MERNet
from magplus_lib.metrics import expression_targets, mmr
from magplus_lib.sweep import (
    CachedPipeline,
    calibrate_alpha_demag,
    load_alpha_choice,
    parse_alpha,
    run_grid,
    save_alpha_choice,
    select_pair,
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
    from magplus_lib.generation import expression_positions

    assert expression_positions(10, 13, 20, None) == ([10, 11, 12, 13], 0, 3)
    pos, o, a = expression_positions(10, 17, 30, 4)
    assert pos == [10, 12, 15, 17] and pos[o] == 10 and pos[a] == 17
    pos, o, a = expression_positions(10, 17, 30, 4, through_offset=True)
    assert pos[0] == 10 and pos[-1] == 30 and pos[a] == 17 and len(pos) <= 5
    assert expression_positions(5, 5, 9, None) == ([5, 6], 0, 1)  # apex on the onset frame


def test_eval_clips_limit_spans_subjects():
    from types import SimpleNamespace

    from magplus_lib.generation import eval_clips_from

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
