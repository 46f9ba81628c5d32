"""Backbones failing at run time after the gate (magplus_lib.evaluation.run_failures):
recorded per dataset, then
left out of every later stage with their reason in the captions."""

import json

import pytest

from magplus_lib.backbones.competence import Admission
from magplus_lib.evaluation import run_failures as rf


def test_record_read_and_reset(tmp_path):
    rf.reset(tmp_path, "samm")
    assert rf.read(tmp_path, ["samm", "casme3"]) == {}  # casme3's record is missing: nothing failed there
    rf.record(tmp_path, "samm", "fsrt", "05_alpha_sweep", "fsrt: CUDA out of memory")
    rf.record(tmp_path, "casme3", "fsrt", "06_generate", "exit status 1")
    rf.record(tmp_path, "samm", "emoportraits", "06_generate", "no output frames")
    got = rf.read(tmp_path, ["samm", "casme3"])
    assert got == {
        "fsrt": "05_alpha_sweep on samm: fsrt: CUDA out of memory; 06_generate on casme3: exit status 1",
        "emoportraits": "06_generate on samm: no output frames",
    }
    rf.reset(tmp_path, "samm")  # a new 05 run starts afresh for its dataset only
    assert rf.read(tmp_path, ["samm", "casme3"]) == {"fsrt": "06_generate on casme3: exit status 1"}


def test_a_corrupt_record_names_its_file(tmp_path):
    rf.failures_path(tmp_path, "samm").write_text("[1, 2")
    with pytest.raises(ValueError, match="backbones_failed_samm.json"):
        rf.read(tmp_path, ["samm"])
    rf.failures_path(tmp_path, "samm").write_text(json.dumps(["fsrt"]))
    with pytest.raises(ValueError, match="JSON object"):
        rf.read(tmp_path, ["samm"])


def test_failed_backbones_move_from_admitted_to_unavailable_and_the_note_says_why():
    gate = Admission(
        ["fomm", "fsrt", "metaportrait"], {"emoportraits": "transfer 0.5"}, True, {"x": "no CUDA"}
    )
    out = rf.without_failed(gate, {"fsrt": "06_generate on samm: exit status 1", "not_listed": "?"})
    assert out.admitted == ["fomm", "metaportrait"] and out.failed == gate.failed
    assert out.unavailable == {
        "x": "no CUDA",
        "fsrt": "failed at run time, 06_generate on samm: exit status 1",
    }
    assert "fsrt (failed at run time, 06_generate on samm: exit status 1)" in out.note()
    assert rf.without_failed(gate, {}) == gate
