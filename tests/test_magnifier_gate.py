"""Issue 25's competence rule for the magnifiers: 02's real-frame verdicts decide which pipeline
settings the tables show."""

from __future__ import annotations

import json

import pytest
from test_score_intervals import dataset_scores

from magplus_lib.evaluation import magnifier_gate
from magplus_lib.evaluation import paper_tables as pt
from magplus_lib.evaluation.reporting import load_paper_tables


def write_verdicts(metrics, dataset, magplus=True, demagplus=True):
    for prefix, beats in (("magplus", magplus), ("demagplus", demagplus)):
        failing = [] if beats else ["alpha 3 at 64 px", "alpha 5 at 128 px"]
        (metrics / f"realframe_{prefix}_{dataset}.json").write_text(
            json.dumps({"beats_input": beats, "meets_bar": beats, "failing": failing})
        )


def test_passing_magnifiers_keep_every_setting(tmp_path):
    write_verdicts(tmp_path, "samm")
    gate = magnifier_gate.admitted(tmp_path, "samm")
    ds = dataset_scores()
    assert gate.note() == "" and gate.apply(ds.generated).equals(ds.generated)


def test_a_failed_magplus_leaves_its_settings_out_of_every_table(tmp_path):
    write_verdicts(tmp_path, "samm", magplus=False)
    gate = magnifier_gate.admitted(tmp_path, "samm")
    assert set(gate.failed) == {"magplus"}
    assert gate.note() == (
        "Not better than returning the input on real photographs, so its rows are left out: MagPlus "
        "fine-tuned on samm (below the real-frame bar at alpha 3 at 64 px, alpha 5 at 128 px)."
    )
    full = dataset_scores()
    kept = gate.apply(full.generated)
    assert set(kept["setting"]) == {"backbone", "demagplus"}
    assert len(kept) == len(full.generated) // 2  # two of the four settings, every clip and seed
    ds = pt.DatasetScores("samm", kept, full.original, "Negative", full.classes)
    paper = load_paper_tables()
    t1 = pt.recognition_table(ds, ["fomm", "flowwarp"], paper, 1)
    ours = list(t1.loc[t1["n"].notna(), "Method"])  # the paper's rows stay, without our numbers
    assert "FOMM" in ours and "FlowWarp" in ours
    assert not any(m.startswith(("FOMM+", "Δ FOMM+", "FlowWarp+", "Δ FlowWarp+")) for m in ours)
    assert t1.set_index("Method").loc["FOMM+MagPlus", "UAR (paper)"] == 0.600
    t4 = pt.ablation_table(ds, ["fomm"], paper).set_index("Method")
    assert "FOMM+DeMagPlus" in t4.index and "Δ FOMM+DeMagPlus − FOMM" in t4.index
    assert "α_D=0.5" in t4.loc["FOMM+DeMagPlus", "Note"]
    assert not {"Δ FOMM+MagPlus − FOMM", "Δ FOMM+MagPlus+DeMagPlus − FOMM"} & set(t4.index)
    t3 = pt.comparison_table([ds], ["fomm", "flowwarp"], [], paper)
    ours = set(t3.loc[t3["SAMM n"].notna(), "Method"])
    assert "FOMM+MagPlus" not in ours and "Majority class (Negative)" in ours


def test_a_reporting_gate_keeps_and_flags(tmp_path):
    write_verdicts(tmp_path, "casme3", demagplus=False)
    gate = magnifier_gate.admitted(tmp_path, "casme3", enforced=False)
    ds = dataset_scores()
    assert gate.apply(ds.generated).equals(ds.generated)
    assert "kept only because this profile's gate reports: DeMagPlus fine-tuned on casme3" in gate.note()


def test_missing_or_corrupt_verdicts_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"realframe_magplus_samm.json is missing: run notebooks/02"):
        magnifier_gate.admitted(tmp_path, "samm")
    write_verdicts(tmp_path, "samm")
    (tmp_path / "realframe_demagplus_samm.json").write_text("{not json")
    with pytest.raises(ValueError, match="realframe_demagplus_samm.json is not a real-frame verdict"):
        magnifier_gate.admitted(tmp_path, "samm")
    (tmp_path / "realframe_demagplus_samm.json").write_text(json.dumps({"beats_input": "yes", "failing": []}))
    with pytest.raises(ValueError, match="beats_input must be true or false"):
        magnifier_gate.admitted(tmp_path, "samm")
