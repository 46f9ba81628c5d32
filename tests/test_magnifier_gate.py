"""Issue 25's competence rule for the magnifiers: 02's real-frame verdicts decide which pipeline
settings the tables show."""

from __future__ import annotations

import json

import pandas as pd
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


def summary_csv(path, cells):
    """A real-frame summary as `real_frames.summarise` writes it: (alpha, size, checked, ratio, gain)."""
    rows = []
    for alpha, size, checked, ratio, gain in cells:
        rows.append(
            {
                "size": size,
                "alpha": alpha,
                "n": 16,
                "ratio_to_exact": ratio,
                "psnr_gain": gain,
                "psnr_gain_low": gain - 0.5,
                "psnr_gain_high": gain + 0.5,
                "colour_shift_max": 0.1 * size / 64,
                "static_excess_px": 0.0,
                "checked": checked,
                "beats_input": gain - 0.5 > 0,
                "passes": gain >= 4 and abs(ratio - 1) <= 0.1,
            }
        )
    pd.DataFrame(rows).to_csv(path, index=False)


def test_competence_table_reads_the_checked_cells_of_every_checkpoint(tmp_path):
    forward = [(2.0, 64, False, 0.5, -9.0), (3.0, 64, True, 1.02, 6.5), (5.0, 64, True, 0.97, 9.0)]
    forward += [(3.0, 128, True, 1.00, 7.3), (5.0, 128, True, 1.01, 9.9)]
    inverse = [(0.5, 64, False, 1.0, 1.0), (1 / 3, 64, True, 0.98, 12.5), (1 / 3, 128, True, 0.97, 13.8)]
    summary_csv(tmp_path / "realframe_pretrain_forward.csv", forward)
    summary_csv(tmp_path / "realframe_pretrain_inverse.csv", inverse)
    summary_csv(
        tmp_path / "realframe_magplus_samm.csv", [(3.0, 64, True, 1.3, 0.2), (5.0, 64, True, 1.0, 3.0)]
    )
    summary_csv(tmp_path / "realframe_demagplus_samm.csv", inverse)
    values, shown = magnifier_gate.competence_table(tmp_path, ["samm"])
    assert list(values["magnifier"]) == [
        "MagPlus pretrained",
        "MagPlus fine-tuned, SAMM",
        "DeMagPlus pretrained",
        "DeMagPlus fine-tuned, SAMM",
    ]
    first = values.iloc[0]  # the unchecked alpha-2 cell (gain -9) is not read
    assert first["psnr_gain_min"] == 6.5 and (first["ratio_min"], first["ratio_max"]) == (0.97, 1.02)
    assert first["cells"] == "3@64, 5@64, 3@128, 5@128" and first["colour_shift_max"] == pytest.approx(0.2)
    assert bool(first["meets_bar"]) and bool(first["beats_input"])
    tuned = shown.iloc[1]
    assert tuned["smallest PSNR gain (dB)"] == "+0.20 [-0.30, +0.70]"
    assert (tuned["meets bar"], tuned["beats input"]) == ("NO", "NO")
    assert shown.iloc[2]["cells (alpha@px)"] == "0.333@64, 0.333@128"
    (tmp_path / "realframe_demagplus_samm.csv").unlink()
    with pytest.raises(FileNotFoundError, match="realframe_demagplus_samm.csv is missing"):
        magnifier_gate.competence_table(tmp_path, ["samm"])
