"""Backbone competence checks: held-out identities, and the verdict on backbones built to pass or fail."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from magplus_lib.backbones import competence
from magplus_lib.backbones.training import SourceCopy
from magplus_lib.data import synthme

CFG = competence.CompetenceConfig(subjects=3, clips_per_subject=1, max_frames=6)


@pytest.fixture(scope="module")
def clips():
    synth = synthme.SynthMEConfig()
    return {grey: competence.render_heldout(synth, CFG, 32, grey) for grey in (False, True)}


class Oracle:
    """Returns the driver itself plus faint noise: perfect motion, no identity transfer; optionally tinted."""

    def __init__(self, tint: float = 0.0):
        self.tint = tint

    def animate(self, source, driving):
        noise = 0.002 * torch.randn(driving.shape, generator=torch.Generator().manual_seed(0))
        out = driving + noise
        out[:, 1] += self.tint  # green cast, as the broken FOMM painted on grey faces
        return out.clamp(0, 1)


def test_heldout_identities_are_in_no_corpus_and_reproducible():
    synth = synthme.SynthMEConfig()
    specs = synthme.heldout_macro_specs(synth, 4, 2)
    corpus_seeds = {
        int(np.random.default_rng([synth.seed, stream, k]).integers(2**31))
        for stream in (11, 22, 33, synthme.TRAINING_STREAM)
        for k in range(40)
    }
    assert not {s.identity_seed for s in specs} & corpus_seeds
    assert len({s.subject for s in specs}) == 4 and len(specs) == 8
    again = synthme.heldout_macro_specs(synth, 4, 2)
    assert [dataclasses.asdict(a) for a in again] == [dataclasses.asdict(b) for b in specs]


def test_training_sets_grow_without_changing_their_first_subjects():
    synth = synthme.SynthMEConfig()
    small = synthme.macro_specs(synth, 3, 2, synthme.TRAINING_STREAM, grey_fraction=0.5)
    large = synthme.macro_specs(synth, 40, 2, synthme.TRAINING_STREAM, grey_fraction=0.5)
    assert [dataclasses.asdict(a) for a in small] == [dataclasses.asdict(b) for b in large[:6]]
    grey_subjects = {s.subject for s in large if s.grayscale}
    assert 10 <= len(grey_subjects) <= 30  # about half of 40
    heldout = {s.identity_seed for s in synthme.heldout_macro_specs(synth, 40, 1)}
    assert not heldout & {s.identity_seed for s in large}
    with pytest.raises(ValueError, match="grey_fraction"):
        synthme.macro_specs(synth, 1, 1, 44, grey_fraction=1.5)


def test_render_heldout_thins_keeps_apex_and_greys(clips):
    for c in clips[False] + clips[True]:
        assert c.frames.shape[1:] == (3, 32, 32) and 2 <= c.frames.shape[0] <= 7
        assert 0 < c.apex < c.frames.shape[0]
    assert all(competence.greyness(c.frames) < 1e-6 for c in clips[True])
    assert all(competence.greyness(c.frames) > 0.05 for c in clips[False])
    # the same clips in both: grey is the colour clip's luma (up to noise)
    assert [c.clip_id for c in clips[True]] == [c.clip_id for c in clips[False]]


def test_copying_the_source_fails_reconstruction_and_transfer(clips):
    rows = {g: competence.per_clip(SourceCopy(), clips[g]) for g in (False, True)}
    assert np.allclose(rows[False]["recon_psnr"], rows[False]["copy_psnr"])  # it is the baseline
    assert (rows[False]["transfer_mmr"] < 0.05).all()  # nothing moves
    s = competence.summarise("copy", rows[False], rows[True], CFG)
    assert s["recon_gain_colour_db"].value == pytest.approx(0.0, abs=1e-9)
    assert set(s["failing"]) == {
        "recon_gain_colour_db",
        "recon_gain_grey_db",
        "transfer_colour",
        "transfer_grey",
    }


def test_an_oracle_passes_and_a_tinted_oracle_fails_only_on_grey(clips):
    good = competence.summarise(
        "oracle", competence.per_clip(Oracle(), clips[False]), competence.per_clip(Oracle(), clips[True]), CFG
    )
    assert good["competent"], good
    assert 0.9 < good["transfer_colour"].value < 1.1 and good["recon_gain_colour_db"].value > 10
    tinted = competence.summarise(
        "tinted",
        competence.per_clip(Oracle(0.1), clips[False]),
        competence.per_clip(Oracle(0.1), clips[True]),
        CFG,
    )
    assert "grey_output" in tinted["failing"] and tinted["grey_output"].value == pytest.approx(0.1, abs=0.01)
    table = competence.competence_table([good, tinted])
    assert list(table["competent"]) == ["yes", "no: " + ", ".join(tinted["failing"])]
    assert table.loc[0, "n clips (subjects)"] == "3 (3)"


def test_transfer_needs_two_identities(clips):
    with pytest.raises(ValueError, match="at least two subjects"):
        competence.per_clip(Oracle(), clips[False][:1])


def test_the_gate_admits_competent_backbones_only_and_says_why_the_others_fail(clips, tmp_path):
    summaries = [
        competence.summarise(name, *(competence.per_clip(b, clips[g]) for g in (False, True)), CFG)
        for name, b in (("copy", SourceCopy()), ("oracle", Oracle()), ("tinted", Oracle(0.1)))
    ]
    path = tmp_path / competence.VERDICTS_FILE
    competence.write_verdicts(path, summaries, CFG)
    gate = competence.admitted(path, ["tinted", "oracle", "copy"])
    assert gate.admitted == ["oracle"]
    assert list(gate.failed) == ["tinted", "copy"]
    grey = summaries[2]["grey_output"].value
    assert f"grey_output {grey:.2f} > 0.02" in gate.failed["tinted"]
    assert "transfer_colour 0.00 outside [0.8, 1.25]" in gate.failed["copy"]
    assert "recon_gain_colour_db 0.00 < 3 dB" in gate.failed["copy"]
    assert gate.note().startswith("Not competent at macro reenactment, so left out: tinted (")
    assert competence.admitted(path, ["oracle"]).note() == ""
    # A profile whose gate only reports keeps every backbone, and flags the failures.
    competence.write_verdicts(path, summaries, dataclasses.replace(CFG, gate="report"))
    report = competence.admitted(path, ["tinted", "oracle", "copy"])
    assert report.admitted == ["tinted", "oracle", "copy"] and report.failed == gate.failed
    assert report.note().startswith("NOT competent at macro reenactment, kept only because")
    with pytest.raises(ValueError, match="'enforce' or 'report'"):
        dataclasses.replace(CFG, gate="off")


def test_the_gate_refuses_an_unmeasured_backbone_and_a_missing_or_foreign_file(tmp_path):
    path = tmp_path / competence.VERDICTS_FILE
    with pytest.raises(FileNotFoundError, match="03_backbones"):
        competence.admitted(path, ["fomm"])
    path.write_text('{"rows": []}')
    with pytest.raises(ValueError, match="not a competence verdicts file"):
        competence.admitted(path, ["fomm"])
    competence.write_verdicts(path, [], CFG)
    with pytest.raises(ValueError, match=r"no competence verdict for \['fomm'\]"):
        competence.admitted(path, ["fomm"])


def test_a_backbone_that_could_not_be_built_is_left_out_with_its_reason_even_when_the_gate_reports(
    clips, tmp_path
):
    summaries = [
        competence.summarise("oracle", *(competence.per_clip(Oracle(), clips[g]) for g in (0, 1)), CFG)
    ]
    why = "fsrt: repository folder /nowhere does not exist (set FSRT_REPO)"
    path = tmp_path / competence.VERDICTS_FILE
    for gate_mode in ("enforce", "report"):
        competence.write_verdicts(path, summaries, dataclasses.replace(CFG, gate=gate_mode), {"fsrt": why})
        gate = competence.admitted(path, ["fsrt", "oracle"])
        assert gate.admitted == ["oracle"] and gate.unavailable == {"fsrt": why} and not gate.failed
        assert gate.note() == f"Could not be run, so left out: fsrt ({why})."


def test_build_available_builds_what_it_can_and_names_what_it_cannot(tmp_path):
    from magplus_lib.backbones.registry import build_available

    cfg = {"fsrt": {"repo": str(tmp_path / "no-checkout"), "checkpoint": str(tmp_path / "w.pth")}}
    built, unavailable = build_available(["flowwarp", "fsrt", "nonsense"], cfg, tmp_path)
    assert list(built) == ["flowwarp"] and built["flowwarp"].animate is not None
    assert "no-checkout does not exist (set FSRT_REPO)" in unavailable["fsrt"]
    assert "unknown backbone 'nonsense'" in unavailable["nonsense"]
