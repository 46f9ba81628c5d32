"""The backbones' training data: rendered macro identities and colour jitter on pairs."""

import numpy as np
import pytest
import torch

from magplus_lib.backbones.base import BackboneError
from magplus_lib.backbones.training import train_backbone
from magplus_lib.backbones.training_data import (
    ColourJitter,
    MacroTrainingSet,
    TrainingSetConfig,
    _luma,
    _rotate_hue,
    thinned_positions,
    twin_spec,
)
from magplus_lib.data import synthme

SYNTH = synthme.SynthMEConfig(render_size=32, supersample=1)
TINY_LATENT = {"latent_dim": 4, "width": 4}


def _frames(seed: int, b: int = 3) -> torch.Tensor:
    return torch.rand(b, 3, 8, 8, generator=torch.Generator().manual_seed(seed))


def test_inactive_jitter_changes_nothing_and_draws_nothing():
    g = torch.Generator().manual_seed(0)
    x, y = _frames(1), _frames(2)
    out = ColourJitter()([x, y], g)
    assert out[0] is x and out[1] is y
    assert torch.equal(torch.rand(1, generator=g), torch.rand(1, generator=torch.Generator().manual_seed(0)))


def test_jitter_changes_every_frame_of_a_pair_alike():
    jitter = ColourJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.1)
    x = _frames(3) * 0.5 + 0.25  # inside (0, 1): no clipping, so the change is the same affine map
    a, b = jitter([x, x.clone()], torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    assert (a - x).abs().mean() > 0.01  # it did change the colours
    # same draw -> same result; another draw -> another result
    a2, _ = jitter([x, x], torch.Generator().manual_seed(5))
    a3, _ = jitter([x, x], torch.Generator().manual_seed(6))
    assert torch.equal(a, a2) and not torch.equal(a, a3)


def test_grey_probability_one_gives_grey_frames_with_the_luma_of_the_input():
    x = _frames(4)
    (grey,) = ColourJitter(grey_probability=1.0)([x], torch.Generator().manual_seed(0))
    assert torch.equal(grey[:, 0], grey[:, 1]) and torch.equal(grey[:, 1], grey[:, 2])
    torch.testing.assert_close(grey[:, :1], _luma(x))


def test_hue_rotation_keeps_luma_and_a_zero_turn_is_the_identity():
    x = _frames(5)
    zero = torch.zeros(3, 1, 1)
    torch.testing.assert_close(_rotate_hue(x, zero), x, atol=1e-5, rtol=0)
    turned = _rotate_hue(x, torch.full((3, 1, 1), 0.7))
    torch.testing.assert_close(_luma(turned), _luma(x), atol=1e-5, rtol=0)
    # a grey pixel has no chroma: any rotation leaves it alone
    grey = torch.full((1, 3, 2, 2), 0.4)
    torch.testing.assert_close(_rotate_hue(grey, torch.full((1, 1, 1), 1.3)), grey, atol=1e-5, rtol=0)


def test_training_set_has_its_own_identities_and_renders_lazily():
    cfg = TrainingSetConfig(subjects=3, clips_per_subject=2, grey_fraction=1.0, max_frames=4)
    tset = MacroTrainingSet(SYNTH, cfg, 16, progress=False)
    held_out = {s.subject for s in synthme.heldout_macro_specs(SYNTH, 3, 1)}
    assert tset.subjects == 3 and tset.grey_subjects == 3 and not held_out & {s.subject for s in tset.specs}
    assert "_rendered" not in tset.__dict__  # nothing rendered yet
    clips = tset.clips
    assert len(clips) == 6
    for c, spec in zip(clips, tset.specs):  # max_frames evenly spaced, plus the apex if it fell between
        assert c.shape == (len(thinned_positions(spec, 4)), 3, 16, 16) and 4 <= c.shape[0] <= 5
    c = clips[0]
    assert torch.equal(c[:, 0], c[:, 1])  # grey renders
    # frame 0 is the onset: the rendered frames are those of the thinned positions
    spec = tset.specs[0]
    frames, apex = synthme.render_thinned(spec, 16, 4)
    torch.testing.assert_close(c, frames)
    assert tset.labels == [tset.emotions.index(s.emotion) for s in tset.specs]
    lm = tset.landmarks[0]
    assert lm.shape == (clips[0].shape[0], len(synthme.LANDMARK_NAMES), 2)
    positions = thinned_positions(spec, 4)
    torch.testing.assert_close(lm, synthme.landmark_tracks(spec, 16)[positions])


def test_training_on_a_set_resumes_and_reuses_without_rendering(tmp_path):
    cfg = TrainingSetConfig(subjects=2, clips_per_subject=1, max_frames=3)
    train = {"steps": 3, "batch_size": 2, "lr": 1e-3, "save_every": 1, "augment": {"brightness": 0.2}}
    a = train_backbone(
        "latent",
        MacroTrainingSet(SYNTH, cfg, 16, progress=False),
        TINY_LATENT,
        train,
        16,
        tmp_path,
        progress=False,
    )
    assert a["steps"] == 3 and not a["reused"]
    fresh = MacroTrainingSet(SYNTH, cfg, 16, progress=False)
    again = train_backbone("latent", fresh, TINY_LATENT, train, 16, tmp_path, progress=False)
    assert again["reused"] and "_rendered" not in fresh.__dict__
    other = MacroTrainingSet(
        SYNTH, TrainingSetConfig(subjects=3, clips_per_subject=1, max_frames=3), 16, False
    )
    assert not train_backbone("latent", other, TINY_LATENT, train, 16, tmp_path, progress=False)["reused"]
    with pytest.raises(BackboneError, match="rendered at 16 px"):
        train_backbone("latent", fresh, TINY_LATENT, train, 32, tmp_path / "b", progress=False)
    with pytest.raises(ValueError, match="unknown"):
        train_backbone(
            "latent",
            fresh,
            TINY_LATENT,
            {**train, "augment": {"blur": 1}},
            16,
            tmp_path / "c",
            progress=False,
        )


def test_a_corpus_setting_the_macro_identities_do_not_read_keeps_a_trained_backbone(tmp_path, capsys):
    # Regression: the set was identified by the whole SynthME config, so resizing the SAMM corpus made
    # the committed backbones look trained on other data and `make paper` retrained them for an hour.
    cfg = TrainingSetConfig(subjects=2, clips_per_subject=1, max_frames=3)
    train = {"steps": 2, "batch_size": 2, "lr": 1e-3}
    base = MacroTrainingSet(SYNTH, cfg, 16, progress=False)
    resized = MacroTrainingSet(
        synthme.SynthMEConfig(render_size=32, supersample=1, samm_subjects=SYNTH.samm_subjects + 5),
        cfg,
        16,
        progress=False,
    )
    louder = MacroTrainingSet(
        synthme.SynthMEConfig(render_size=32, supersample=1, macro_amplitude_px=(20.0, 30.0)), cfg, 16, False
    )
    assert resized.description == base.description
    assert louder.description != base.description
    train_backbone("latent", base, TINY_LATENT, train, 16, tmp_path, progress=False)
    assert train_backbone("latent", resized, TINY_LATENT, train, 16, tmp_path, progress=False)["reused"]
    capsys.readouterr()
    assert not train_backbone("latent", louder, TINY_LATENT, train, 16, tmp_path, progress=False)["reused"]
    said = capsys.readouterr().out
    assert "not reusing" in said and "its training_set differ" in said


def test_a_twin_is_the_same_expression_on_the_other_face():
    tset = MacroTrainingSet(SYNTH, TrainingSetConfig(subjects=3, clips_per_subject=1), 16, progress=False)
    a, b = tset.specs[0], tset.specs[1]
    twin = twin_spec(a, b, SYNTH)
    assert (twin.subject, twin.identity_seed, twin.grayscale) == (b.subject, b.identity_seed, b.grayscale)
    assert (twin.aus, twin.frame_numbers, twin.apex) == (a.aus, a.frame_numbers, a.apex)
    # the other face's field for those action units, at the same peak displacement (under the strain cap)
    field = synthme.expression_field([tuple(u) for u in a.aus], b.identity_seed, a.render_size)
    peak = float(np.sqrt(((field * twin.field_scale) ** 2).sum(0)).max())
    assert twin.amplitude_px == pytest.approx(peak)
    assert twin.amplitude_px <= a.amplitude_px + 1e-6
    if synthme.field_strain(field * a.amplitude_px / np.sqrt((field**2).sum(0)).max()) <= SYNTH.max_strain:
        assert twin.amplitude_px == pytest.approx(a.amplitude_px)


def test_cross_identity_pairs_pair_two_identities_at_one_moment_of_one_expression():
    cfg = TrainingSetConfig(subjects=3, clips_per_subject=1, grey_fraction=0.0, max_frames=4)
    tset = MacroTrainingSet(SYNTH, cfg, 16, progress=False)
    pairs = tset.cross_identity_pairs(3)
    assert pairs.shape == (3, 4, 3, 16, 16) and pairs.dtype == torch.uint8
    assert torch.equal(pairs, tset.cross_identity_pairs(3))  # its own seed stream: the same draw
    # each pair: A's onset and frame t; B's onset and frame t (B another identity, so another face)
    onsets = {s.subject: tset._render_uint8(s, [0])[0].float() for s in tset.specs}

    def nearest(frame):
        return min(onsets, key=lambda k: float((onsets[k] - frame.float()).abs().mean()))

    for p in pairs:
        a = [k for k, v in onsets.items() if torch.equal(v, p[0].float())]
        assert len(a) == 1 and nearest(p[2]) != a[0]  # the twin's onset is another identity's face
        assert not torch.equal(p[0], p[1])  # frame t is a moment of the expression, not the onset
    one = MacroTrainingSet(SYNTH, TrainingSetConfig(subjects=1, clips_per_subject=1), 16, progress=False)
    with pytest.raises(ValueError, match="two identities"):
        one.cross_identity_pairs(1)


TINY_FOMM = {
    "num_kp": 3,
    "kp_detector": {"block_expansion": 4, "max_features": 8, "num_blocks": 2, "scale_factor": 1.0, "pad": 3},
    "dense_motion": {"block_expansion": 4, "max_features": 8, "num_blocks": 2, "scale_factor": 1.0},
    "generator": {"block_expansion": 4, "max_features": 8, "num_down_blocks": 1, "num_bottleneck_blocks": 1},
    "loss": {"scales": [1.0, 0.5]},
}


def _weights(folder):
    from safetensors.torch import load_file

    return load_file(str(folder / "checkpoints" / "backbone_fomm.safetensors"))


def test_the_cross_identity_phase_continues_a_finished_run_exactly(tmp_path, capsys):
    cfg = TrainingSetConfig(subjects=2, clips_per_subject=1, max_frames=3)
    base = {"steps": 2, "batch_size": 2, "lr": 1e-3, "save_every": 1, "log_every": 1, "num_threads": 1}
    phase = {"steps": 2, "pairs": 4, "weight": 10.0, "lr": 1e-3}
    train = {**base, "cross_identity": phase}

    def run(folder, settings):
        tset = MacroTrainingSet(SYNTH, cfg, 16, progress=False)
        return train_backbone("fomm", tset, TINY_FOMM, settings, 16, tmp_path / folder, progress=False)

    whole = run("a", train)
    assert whole["steps"] == 4 and not whole["reused"]
    log = (tmp_path / "a" / "logs" / "backbone_fomm.csv").read_text().splitlines()
    assert "cross_identity" in log[0]
    assert [r.split(",")[0] for r in log[1:]] == ["1", "2", "3", "4"]
    # a finished run without the phase (e.g. a cached checkpoint), then the phase added: it continues
    without = run("b", base)
    assert without["steps"] == 2
    before = _weights(tmp_path / "b")
    added = run("b", train)
    assert added["steps"] == 4 and not added["reused"]
    for k, v in _weights(tmp_path / "a").items():
        torch.testing.assert_close(_weights(tmp_path / "b")[k], v, rtol=0, atol=0, msg=k)
    assert any(not torch.equal(before[k], v) for k, v in _weights(tmp_path / "a").items())
    # interrupted inside the phase and resumed: the phase's optimizer state is restored
    run("c", {**train, "cross_identity": {**phase, "steps": 1}})
    run("c", train)
    for k, v in _weights(tmp_path / "a").items():
        torch.testing.assert_close(_weights(tmp_path / "c")[k], v, rtol=0, atol=0, msg=k)
    assert run("c", train)["reused"]
    # past the phase's start its settings made the weights: another weight trains again from step 0
    capsys.readouterr()
    again = run("c", {**train, "cross_identity": {**phase, "weight": 1.0}})
    assert not again["reused"] and "not reusing" in capsys.readouterr().out
    with pytest.raises(BackboneError, match="needs fomm"):
        tset = MacroTrainingSet(SYNTH, cfg, 16, progress=False)
        train_backbone("latent", tset, TINY_LATENT, {**base, "cross_identity": phase}, 16, tmp_path / "d")
