"""SynthME: ground truth reproduces the frames, alpha re-rendering is exact, micro and macro differ."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from synthme_tiny import tiny_config, tiny_corpus

from magplus_lib.data import synthme
from magplus_lib.data.clips import load_frames
from magplus_lib.data.datasets import load_clips
from magplus_lib.magnifier.flow import farneback_flow, warp


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return tiny_corpus(tmp_path_factory)


@pytest.fixture(autouse=True)
def one_thread():
    # many small tensor ops: one thread is much faster than two on the shared 2-core machine
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _interior(x: torch.Tensor, m: int = 6) -> torch.Tensor:
    return x[..., m:-m, m:-m]


def test_generation_is_stamped_and_skipped_when_unchanged(corpus):
    root, cfg = corpus
    stamp = json.loads((root / synthme.STAMP).read_text())
    assert stamp["config_hash"] == synthme.config_hash(cfg)
    assert stamp["corpora"]["samm"]["clips"] == 2 * 4 and stamp["corpora"]["casme3"]["clips"] == 2 * 4
    before = (root / "SAMM" / synthme.GROUND_TRUTH_JSON).stat().st_mtime_ns
    synthme.generate_corpus(cfg, root)  # same config: nothing is rewritten
    assert (root / "SAMM" / synthme.GROUND_TRUTH_JSON).stat().st_mtime_ns == before


def test_rendering_is_deterministic_for_a_seed():
    cfg = tiny_config()
    specs = []
    for _ in range(2):
        rng = np.random.default_rng(7)
        specs.append(
            synthme.make_clip_spec(
                cfg, rng, "samm", "x", "006", 11, "surprise", "macro", 6, 10, np.zeros((6, 2)), False
            )
        )
    assert specs[0] == specs[1]
    assert torch.equal(synthme.render_clip(specs[0]), synthme.render_clip(specs[1]))


@pytest.mark.parametrize("corpus_dir", ["SAMM", "CASME3", "macro"])
def test_ground_truth_warp_reproduces_onset_frame(corpus, corpus_dir):
    """warp(I_apex, D_apex) ~ I_onset on the moving region (|D| > amplitude / 2).

    Stated tolerance: mean abs error below 0.02 (intensities in [0, 1]); the true D beats 0.7 D and
    1.3 D (within 5%, bilinear resampling blurs sub-pixel shifts); it removes at least 20% of the
    unwarped difference on micro clips and 70% on macro clips.
    """
    root, _ = corpus
    truth = synthme.load_ground_truth(root / corpus_dir)
    for ct in truth.values():
        frames = ct.render()
        d = ct.displacement()
        a = ct.spec.frame_numbers.index(ct.spec.apex)
        moving = d[a].norm(dim=0) > 0.5 * ct.spec.amplitude_px
        err = {}
        for k in (0.0, 0.7, 1.0, 1.3):
            back = warp(frames[a : a + 1], k * d[a : a + 1])[0]
            err[k] = (back - frames[0]).abs().mean(0)[moving].mean().item()
        assert err[1.0] < 0.02, (ct.spec.clip_id, err)
        assert err[1.0] <= 1.05 * min(err[0.7], err[1.3]), (ct.spec.clip_id, err)
        assert err[1.0] < (0.3 if ct.spec.kind == "macro" else 0.8) * err[0.0], (ct.spec.clip_id, err)
        # the stored apex field is the same displacement (float16 storage)
        assert np.allclose(ct.apex_field, d[a].numpy(), atol=0.01)


def test_written_frames_match_render_and_alpha_scales_motion(corpus):
    root, _ = corpus
    truth = synthme.load_ground_truth(root / "CASME3")
    clips = {c.clip_id: c for c in load_clips("casme3", root / "CASME3")}
    ct = max(truth.values(), key=lambda t: t.spec.amplitude_px)
    disk = load_frames(clips[ct.spec.clip_id])
    rendered = ct.render()
    # JPEG quality 95 with 4:2:0 chroma subsampling at 64 px; a one-frame shift would be far larger
    assert (disk - rendered).abs().mean().item() < 0.02
    assert (disk[1:] - rendered[:-1]).abs().mean().item() > (disk - rendered).abs().mean().item()
    alpha = 4.0
    mag = ct.render(alpha)
    assert torch.allclose(mag[0], rendered[0], atol=1e-5)  # the onset frame is the reference
    d = ct.displacement(alpha)
    assert torch.allclose(d, alpha * ct.displacement(), atol=1e-5)
    a = ct.spec.frame_numbers.index(ct.spec.apex)
    moving = d[a].norm(dim=0) > 0.5 * d[a].norm(dim=0).max()
    unwarped = (mag[a] - rendered[0]).abs().mean(0)[moving].mean().item()
    back = warp(mag[a : a + 1], d[a : a + 1])[0]
    warped = (back - rendered[0]).abs().mean(0)[moving].mean().item()
    assert warped < 0.3 * unwarped and warped < 0.02, (warped, unwarped)
    # magnifying really moves more: the alpha clip differs from the onset more than the original
    assert unwarped > 2 * (rendered[a] - rendered[0]).abs().mean(0)[moving].mean().item()


def _apex_flow_p99(clip, truth):
    frames = load_frames(clip)
    a = truth.spec.frame_numbers.index(truth.spec.apex)
    flow = farneback_flow(frames[0], frames[a])
    return float(np.percentile(np.linalg.norm(flow, axis=-1)[6:-6, 6:-6], 99))


def test_farneback_sees_subpixel_micro_and_multipixel_macro(corpus):
    root, cfg = corpus
    micro = []
    for name, folder in (("samm", "SAMM"), ("casme3", "CASME3")):
        truth = synthme.load_ground_truth(root / folder)
        for c in load_clips(name, root / folder):
            micro.append(_apex_flow_p99(c, truth[c.clip_id]))
    truth = synthme.load_ground_truth(root / "macro")
    macro = [_apex_flow_p99(c, truth[c.clip_id]) for c in synthme.load_macro_clips(root / "macro")]
    # 99th-percentile Farneback magnitude onset -> apex: sub-pixel on every micro clip, pixels on macro
    # clips (Farneback's window smooths small features, so it reads below the true peak).
    assert max(micro) < 1.0, micro
    assert np.mean(macro) > 1.5 and min(macro) > 1.5 * max(micro), (macro, micro)
    assert np.mean(macro) > 4 * np.mean(micro)
    gt_macro = [t.spec.amplitude_px for t in truth.values()]
    assert min(gt_macro) >= 2.5 and max(gt_macro) <= cfg.macro_amplitude_px[1] + 1e-6


def test_quirks_are_written_and_recorded(corpus):
    root, _ = corpus
    meta = synthme.ground_truth_meta(root / "CASME3")
    kinds = {k for v in meta["quirks"].values() for k in v}
    assert {"bad_apex", "uppercase_letter"} <= kinds
    assert set(meta["landmarks"]) and "mouth_l" in next(iter(meta["landmarks"].values()))
    assert not synthme.ground_truth_meta(root / "macro")["quirks"]  # the macro training corpus is clean
    assert not synthme.load_macro_clips(root / "macro").issues


def test_generic_pairs_pass_the_flow_filter(corpus):
    import pandas as pd

    root, cfg = corpus
    df = pd.read_csv(root / "generic" / "pairs.csv")
    assert len(df) == cfg.generic_pairs
    f = synthme.GenericFilter()
    assert (df["mse"] > f.mse_min).all() and (df["flow_p80"] <= f.p80_max).all()


def test_unknown_emotion_in_config_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="unknown emotion"):
        synthme.generate_corpus(tiny_config(micro_clips_per_subject={"joy": 1}), tmp_path)


def test_prepare_indexes_existing_corpora_and_writes_disjoint_splits(corpus, tmp_path):
    from magplus_lib.data import datasets
    from magplus_lib.data.splits import load_split

    root, _ = corpus
    data = {
        "roots": {"samm": str(root / "SAMM"), "casme3": str(root / "CASME3")},
        "crop": {"detector": "center"},
        "split": {"train": 0.5, "test": 0.5},
    }
    out = datasets.prepare(data, None, ["samm", "casme3"], tmp_path, seed=1, image_size=16)
    assert out["stamp"] is None and out["crop_stats"].get("center", 0) >= 16
    for name in ("samm", "casme3"):
        split = load_split(tmp_path / "splits" / f"{name}.csv")
        parts = split.groupby("part")["subject"].apply(set)
        assert set(parts.index) == {"train", "test"} and not parts["train"] & parts["test"]
        assert set(split["subject"]) == {c.subject for c in out["clips"][name]}
    assert len(list((tmp_path / "data" / "crops" / "samm").glob("*.npy"))) == len(out["clips"]["samm"])
    with pytest.raises(ValueError, match="SynthME writes"):
        datasets.prepare(data, {"samm_subjects": 1}, ["samm"], tmp_path, seed=1, image_size=16)


def test_inverse_stage_pairs_move_more_and_leave_the_forward_pairs_alone(tmp_path):
    import pandas as pd

    cfg = tiny_config(generic_inverse_motion_px=[4.0, 8.0])
    assert synthme.corpora(cfg)["generic_inverse"] == "generic_inverse"
    assert "generic_inverse" not in synthme.corpora(tiny_config())
    # the forward pairs do not depend on whether an inverse set is configured
    synthme.write_generic(cfg, tmp_path / "with")
    synthme.write_generic(tiny_config(), tmp_path / "without")
    assert (tmp_path / "with" / "pairs.csv").read_bytes() == (tmp_path / "without" / "pairs.csv").read_bytes()
    first = "pairs/000000_1.jpg"
    assert (tmp_path / "with" / first).read_bytes() == (tmp_path / "without" / first).read_bytes()
    n = synthme.write_generic(cfg, tmp_path / "inv", motion_px=cfg.generic_inverse_motion_px, stream=5)
    fwd = pd.read_csv(tmp_path / "with" / "pairs.csv")
    inv = pd.read_csv(tmp_path / "inv" / "pairs.csv")
    assert n == len(inv) == cfg.generic_pairs
    # its own textures, and measurably larger motion (Farneback's 99.9th percentile, not just the request)
    assert (tmp_path / "inv" / first).read_bytes() != (tmp_path / "with" / first).read_bytes()
    assert inv["flow_p999"].median() > 1.5 * fwd["flow_p999"].median()


def test_apex_example_renders_a_colour_clip_in_grey_on_request(corpus):
    from magplus_lib.magnifier.accuracy import synthme_apex_example

    root, _ = corpus
    clip = next(iter(synthme.load_macro_clips(root / "macro")))
    truth = synthme.load_ground_truth(root / "macro")[clip.clip_id]
    colour = synthme_apex_example(truth, clip, 32, [0.5])
    grey = synthme_apex_example(truth, clip, 32, [0.5], grayscale=True)
    assert not torch.equal(colour["frame1"][0], colour["frame1"][1])  # macro clips are in colour
    assert synthme.corpus_is_grey(root / "SAMM") and not synthme.corpus_is_grey(root / "macro")
    for f in (grey["frame0"], grey["frame1"], grey["truth"][0.5]):
        assert torch.equal(f[0], f[1]) and torch.equal(f[1], f[2])
    # the same scene: grey is the colour frame's luma (up to sensor noise)
    luma = (colour["frame1"] * torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)).sum(0)
    assert float((grey["frame1"][0] - luma).abs().mean()) < 0.02
    assert torch.equal(grey["displacement"], colour["displacement"])


def test_held_out_examples_are_selected_and_measured_per_clip_and_alpha(corpus):
    import numpy as np

    from magplus_lib.magnifier.accuracy import held_out_examples, measure_examples

    root, _ = corpus
    clips = list(synthme.load_macro_clips(root / "macro"))
    truths = synthme.load_ground_truth(root / "macro")
    every = held_out_examples(truths, clips, 32, [0.5, 0.2])
    assert len(every) >= 2 and [c.clip_id for c, _ in every] == [
        c.clip_id for c in clips if c.clip_id in truths
    ]
    assert [c.clip_id for c, _ in held_out_examples(truths, clips, 32, [0.5], limit=1)] == [
        every[0][0].clip_id
    ]
    assert held_out_examples({}, clips, 32, [0.5]) == []  # no ground truth: nothing to measure
    apex = [ex["apex_px"] for _, ex in every]
    kept = held_out_examples(truths, clips, 32, [0.5], min_apex_px=max(apex))
    assert [c.clip_id for c, _ in kept] == [c.clip_id for c, ex in every if ex["apex_px"] >= max(apex)]

    class Unmagnified(torch.nn.Module):  # returns its input: achieved 1 at any alpha
        def __init__(self):
            super().__init__()
            self.p = torch.nn.Parameter(torch.zeros(1))

        def forward(self, ref, frames, alpha, mask=None):
            return frames

    df = measure_examples(Unmagnified(), every[:2], [0.5, 0.2])
    assert list(df["clip"]) == [every[0][0].clip_id] * 2 + [every[1][0].clip_id] * 2
    assert list(df["alpha"]) == [0.5, 0.2, 0.5, 0.2] and list(df["apex_px"])[::2] == apex[:2]
    assert np.allclose(df["achieved"], 1.0)
    assert (df["psnr_output"] == df["psnr_unmagnified"]).all()
    # the exactly attenuated frame differs from the apex frame: finite PSNR, lower at 1/5 than at 1/2
    assert (df["psnr_output"][1::2].to_numpy() < df["psnr_output"][::2].to_numpy()).all()


def test_inverse_stages_read_their_own_pairs_only_when_the_profile_has_them(tmp_path):
    from magplus_lib.data.datasets import DataConfig

    shared = DataConfig(roots={"generic": "data/generic"})
    own = DataConfig(roots={"generic": "data/generic", "generic_inverse": "data/generic_inverse"})
    assert shared.inverse_pairs_root(tmp_path) == tmp_path / "data" / "generic"
    assert own.inverse_pairs_root(tmp_path) == tmp_path / "data" / "generic_inverse"
    # what each direction pretrains on, and its fine-tune replays
    assert own.pretrain_pairs_root("forward", tmp_path) == tmp_path / "data" / "generic"
    assert own.pretrain_pairs_root("inverse", tmp_path) == tmp_path / "data" / "generic_inverse"
    assert shared.pretrain_pairs_root("inverse", tmp_path) == tmp_path / "data" / "generic"
    with pytest.raises(ValueError, match="sideways"):
        own.pretrain_pairs_root("sideways", tmp_path)


def test_corpus_wide_emotion_counts_give_the_real_sets_class_balance(tmp_path):
    from collections import Counter

    samm_counts = {"anger": 3, "other": 2, "happiness": 2, "surprise": 1, "contempt": 1}
    casme_counts = {"disgust": 3, "surprise": 2, "other": 1, "happiness": 1}
    cfg = tiny_config(
        samm_subjects=3,
        casme3_subjects=3,
        samm_emotion_counts=samm_counts,
        casme3_emotion_counts=casme_counts,
        render_size=32,
        quirk_rate=0.0,
    )
    samm = synthme.write_samm(cfg, tmp_path / "samm")
    casme = synthme.write_casme3(cfg, tmp_path / "casme3")
    assert Counter(sp.emotion for sp in samm) == Counter(samm_counts)
    assert Counter(sp.emotion for sp in casme) == Counter(casme_counts)
    assert len({sp.subject for sp in samm}) == 3 and len({sp.subject for sp in casme}) == 3  # none empty
    # the loaders' 3-class view: anger + contempt -> Negative, other excluded
    clips = load_clips("samm", tmp_path / "samm")
    assert Counter(c.label3 for c in clips) == Counter({"Negative": 4, "Positive": 2, "Surprise": 1, None: 2})
    # the per-subject draws of an unchanged config are untouched by the new option
    plain = synthme.write_samm(tiny_config(render_size=32, quirk_rate=0.0), tmp_path / "plain")
    again = synthme.write_samm(
        tiny_config(render_size=32, quirk_rate=0.0, casme3_emotion_counts=casme_counts), tmp_path / "again"
    )
    assert [(sp.clip_id, sp.emotion, sp.onset) for sp in plain] == [
        (sp.clip_id, sp.emotion, sp.onset) for sp in again
    ]
    with pytest.raises(ValueError, match="cannot fill 4 subjects"):
        synthme.write_samm(tiny_config(samm_subjects=4, samm_emotion_counts={"anger": 3}), tmp_path / "few")
