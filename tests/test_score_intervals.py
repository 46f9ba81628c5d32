"""Table intervals: resampled confusion matrices, clustered bootstrap, paired Δ, collapse marks, tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from magplus_lib.evaluation import paper_tables as pt
from magplus_lib.evaluation import stats
from magplus_lib.evaluation.metrics import recognition_scores
from magplus_lib.evaluation.reporting import load_paper_tables, write_table
from magplus_lib.evaluation.score_intervals import ScoredClips, confusion_scores, resample_weights

CLASSES = ["Negative", "Positive", "Surprise"]


def clips_table(labels, subjects):
    return pd.DataFrame(
        {"clip_id": [f"c{i:02d}" for i in range(len(labels))], "subject": subjects, "label": labels}
    )


def predictions(table, preds, seed=0, mmr=None):
    out = table.assign(pred=preds, evaluator_seed=seed)
    if mmr is not None:
        out["MMR"] = mmr
    return out


def test_confusion_scores_equal_the_metric_definitions():
    rng = np.random.default_rng(0)
    for _ in range(20):
        y = rng.integers(0, 3, 30)
        p = rng.integers(0, 3, 30) if _ % 2 else np.zeros(30, int)  # include a one-class predictor
        conf = np.zeros((3, 3))
        np.add.at(conf, (y, p), 1)
        ours = confusion_scores(conf)
        ref = recognition_scores(y.tolist(), p.tolist(), [0, 1, 2])
        for m in ("UAR", "UF1", "Accuracy"):
            assert ours[m] == pytest.approx(ref[m])


def test_resample_weights_draw_whole_subjects():
    w = resample_weights(["a", "a", "b", "c", "c", "c"], n_boot=50, seed=1)
    assert w.shape == (50, 6)
    assert (w[:, 0] == w[:, 1]).all() and (w[:, 3] == w[:, 5]).all()  # a subject's clips move together
    assert (w[:, [0, 2, 3]].sum(1) == 3).all()  # three subjects drawn each time


def test_accuracy_interval_matches_the_reference_clustered_bootstrap():
    # Pooled accuracy over resampled subjects is the mean of the resampled 0/1 outcomes: stats.bootstrap
    # with the same clusters, seed and draws is a reference implementation of the same distribution.
    labels = ["Negative"] * 6 + ["Positive"] * 4 + ["Surprise"] * 5
    subjects = list("aaabbbccddeeeff")
    preds = ["Negative", "Positive", "Negative", "Negative", "Surprise", "Negative", "Positive", "Negative"]
    preds += ["Positive", "Positive", "Surprise", "Negative", "Surprise", "Surprise", "Positive"]
    table = clips_table(labels, subjects)
    test = ScoredClips(table, CLASSES, n_boot=4000, seed=3)
    acc = test.scores(predictions(table, preds))["Accuracy"]
    correct = [float(a == b) for a, b in zip(labels, preds)]
    ref = stats.bootstrap(correct, np.mean, clusters=subjects, n_boot=4000, seed=3)
    assert acc.value == pytest.approx(ref.value) == pytest.approx(10 / 15)
    assert acc.n == 15 and test.subjects == 6
    assert (acc.low, acc.high) == pytest.approx((ref.low, ref.high), abs=0.04)


def test_two_subject_hand_case():
    # Subject a: one clip, right; subject b: one clip, wrong. Resampled accuracies 1, 0.5, 0.5, 0 with
    # probability 1/4 each -> the 95% interval is [0, 1] and the median 0.5.
    table = clips_table(["Negative", "Positive"], ["a", "b"])
    test = ScoredClips(table, CLASSES, n_boot=4000)
    acc = test.scores(predictions(table, ["Negative", "Negative"]))["Accuracy"]
    assert (acc.value, acc.low, acc.high) == (0.5, 0.0, 1.0)


def test_seed_average_spread_and_paired_difference():
    labels = ["Negative", "Positive", "Surprise"] * 4
    table = clips_table(labels, np.repeat(list("abcd"), 3))
    test = ScoredClips(table, CLASSES)
    right = pd.concat([predictions(table, labels, s, mmr=1.0) for s in (0, 1, 2)])
    wrong_once = [("Negative" if i == 1 else v) for i, v in enumerate(labels)]  # one Positive clip missed
    mixed = pd.concat([predictions(table, labels, 0, 1.5), predictions(table, wrong_once, 1, 1.5)])
    s = test.scores(mixed)
    one = recognition_scores(labels, wrong_once, CLASSES)["UAR"]
    assert s["UAR"].value == pytest.approx((1.0 + one) / 2)
    assert s["UAR"].seed_sd == pytest.approx(np.std([1.0, one], ddof=1))
    assert s["MMR"].value == pytest.approx(1.5) and s["MMR"].low == pytest.approx(1.5)
    same = test.paired(right, right)
    assert all((d.value, d.low, d.high) == (0, 0, 0) for d in same.values())
    better = test.paired(right.assign(MMR=2.0), right)
    assert better["MMR"].excludes_zero() and better["MMR"].value == pytest.approx(1.0)
    assert not better["UAR"].excludes_zero()


def test_collapse_mark_triggers_only_on_one_class_predictions():
    labels = ["Negative"] * 5 + ["Positive"] * 3 + ["Surprise"] * 2
    table = clips_table(labels, list("aabbccddee"))
    test = ScoredClips(table, CLASSES)
    assert test.collapse(predictions(table, ["Negative"] * 10)) == (True, "Negative", 1.0)
    nine = ["Negative"] * 9 + ["Surprise"]
    assert test.collapse(predictions(table, nine))[0]  # 90%: collapsed
    assert not test.collapse(predictions(table, labels))[0]  # 50% Negative: not
    eight = ["Negative"] * 8 + ["Surprise"] * 2
    assert not test.collapse(predictions(table, eight))[0]


def test_chance_row_and_majority_row():
    labels = ["Negative"] * 30 + ["Positive"] * 20 + ["Surprise"] * 10
    table = clips_table(labels, [f"s{i // 3}" for i in range(60)])
    test = ScoredClips(table, CLASSES)
    chance = test.chance(draws=4000)
    assert chance["UAR"].value == pytest.approx(1 / 3, abs=0.01)
    assert chance["Accuracy"].value == pytest.approx(1 / 3, abs=0.01)
    assert chance["UAR"].low < 1 / 3 < chance["UAR"].high
    majority = test.scores(test.constant_predictions("Negative"))
    assert majority["UAR"].value == pytest.approx(1 / 3) and majority["Accuracy"].value == pytest.approx(0.5)
    assert majority["UF1"].value == pytest.approx((2 * 30 / (60 + 30)) / 3)
    with pytest.raises(ValueError, match="not in the class list"):
        test.constant_predictions("Happy")


def test_per_clip_tables_must_cover_the_test_clips():
    table = clips_table(["Negative", "Positive", "Surprise"], list("abc"))
    test = ScoredClips(table, CLASSES)
    with pytest.raises(ValueError, match="1 missing"):
        test.scores(predictions(table.iloc[:2], ["Negative", "Positive"]))


# ---- the tables ----
def dataset_scores(collapse_fomm=True, demag_alpha=0.5):
    rng = np.random.default_rng(0)
    labels = list(rng.choice(CLASSES, 24, p=[0.5, 0.3, 0.2]))
    table = clips_table(labels, [f"s{i // 4}" for i in range(24)])
    rows = []
    for b, mmr in (("fomm", 0.05), ("flowwarp", 0.9)):
        for setting, gain in (
            ("backbone", 1),
            ("magplus", 3),
            ("demagplus", 0.5),
            ("magplus+demagplus", 1.2),
        ):
            for seed in (0, 1, 2):
                if b == "fomm" and collapse_fomm:
                    pred = ["Negative"] * 24
                else:
                    pred = [v if rng.random() < 0.7 else rng.choice(CLASSES) for v in labels]
                rows.append(
                    predictions(table, pred, seed, mmr * gain + rng.normal(0, 0.01, 24)).assign(
                        backbone=b, setting=setting, alpha_mag=5.0, alpha_demag=demag_alpha
                    )
                )
    generated = pd.concat(rows, ignore_index=True)
    original = pd.concat([predictions(table, labels, s) for s in (0, 1, 2)])
    return pt.DatasetScores("samm", generated, original, "Negative", CLASSES)


def test_table1_rows_intervals_deltas_and_marks(tmp_path):
    t1 = pt.recognition_table(dataset_scores(), ["fomm", "flowwarp"], load_paper_tables(), 1)
    methods = list(t1["Method"])
    assert methods[:7] == [
        "Chance (uniform guess)",
        "Majority class (Negative)",
        "Original (real clips)",
        "FOMM",
        "FOMM+MagPlus",
        "Δ FOMM+MagPlus − FOMM",
        "FlowWarp",
    ]
    rows = t1.set_index("Method")
    assert (
        rows.loc["Original (real clips)", "UAR"] == 1.0 and rows.loc["FOMM+MagPlus", "UAR (paper)"] == 0.600
    )
    assert rows.loc["FOMM", "Note"].startswith("collapsed: 100% Negative")
    assert "collapsed" not in rows.loc["FlowWarp", "Note"]
    assert rows.loc["FOMM+MagPlus", "Note"].startswith("α_M=5, α_D=0.5")
    assert rows.loc["Δ FOMM+MagPlus − FOMM", "MMR"] == pytest.approx(0.01, abs=0.01)
    assert rows.loc["FSRT", "UAR (paper)"] == 0.733 and np.isnan(rows.loc["FSRT", "UAR"])
    shown = pt.cells(t1).set_index("Method")
    assert shown.loc["FOMM", "UAR"] == "0.33 [0.33, 0.33]"
    assert shown.loc["Δ FOMM+MagPlus − FOMM", "MMR"].endswith("]*")  # 0.05 -> 0.06 on every clip
    assert shown.loc["Δ FOMM+MagPlus − FOMM", "UAR"] == "+0.00 [+0.00, +0.00]"
    assert shown.loc["FSRT", "UAR"] == "–" and shown.loc["FSRT", "UAR (paper)"] == "0.73"
    assert list(pt.cells(t1).columns[:4]) == ["Method", "n", "UAR", "UAR (paper)"]
    paths = write_table(t1, "table1", tmp_path, caption=pt.caption_rows(1), display=pt.cells(t1))
    back = pd.read_csv(paths["csv"])
    assert {"UAR low", "UAR high", "UAR seed sd", "n"} <= set(back.columns)
    assert "| FOMM | 24 | 0.33 [0.33, 0.33] |" in paths["md"].read_text()
    tex = paths["tex"].read_text()
    assert r"$\Delta$ FOMM+MagPlus $-$ FOMM" in tex and "Δ" not in tex


def test_table4_marks_an_unselected_demagplus_and_table3_merges_datasets():
    ds = dataset_scores(collapse_fomm=False, demag_alpha=1.0)
    paper = load_paper_tables()
    assert pt.ablation_backbones(ds, ["fomm", "flowwarp"]) == ["fomm", "flowwarp"]
    t4 = pt.ablation_table(ds, ["fomm"], paper).set_index("Method")
    assert "DeMagPlus not applied" in t4.loc["FOMM+DeMagPlus", "Note"]
    assert "α_D" not in t4.loc["FOMM+MagPlus", "Note"] and "α_M=5" in t4.loc["FOMM+MagPlus", "Note"]
    assert "Δ FOMM+MagPlus+DeMagPlus − FOMM" in t4.index
    other = pt.DatasetScores("casme3", ds.generated, ds.original, "Negative", CLASSES)
    t3 = pt.comparison_table([ds, other], ["fomm", "flowwarp"], [], paper)
    assert {"SAMM UAR", "CAS(ME)^3 UAR low", "SAMM n"} <= set(t3.columns)
    assert "FOMM+MagPlus" in set(t3["Method"]) and "TPS FP" in set(t3["Method"])
    assert pt.cells(t3).columns[1] == "SAMM n"


def test_score_clips_scores_every_evaluator_and_averages_their_pooled_scores():
    import torch

    from magplus_lib.evaluation.generation import score_clips, summarise
    from magplus_lib.evaluation.mer import MERNet

    torch.manual_seed(0)
    frames = [torch.rand(4, 3, 32, 32) for _ in range(6)]
    labels = ["Negative", "Positive", "Surprise", "Negative", "Positive", "Surprise"]
    models = {seed: MERNet(3, 8) for seed in (0, 7)}
    for s, m in models.items():
        torch.manual_seed(s)
        for p in m.parameters():
            p.data.normal_(0, 0.5)
    args = (frames, [None] * 6, [0] * 6, [3] * 6, labels, CLASSES, 32, [f"c{i}" for i in range(6)])
    per_clip, summary = score_clips(models, *args, subjects=list("aabbcc"))
    assert len(per_clip) == 12 and sorted(set(per_clip["evaluator_seed"])) == [0, 7]
    assert per_clip["subject"].tolist()[:6] == list("aabbcc")
    singles = [score_clips(m, *args)[1] for m in models.values()]
    assert summary["UAR"] == pytest.approx(np.mean([s["UAR"] for s in singles]))
    assert summary["Accuracy"] == pytest.approx(np.mean([s["Accuracy"] for s in singles]))
    assert summary["n"] == 6 and summary["seeds"] == 2
    again = summarise(per_clip, CLASSES)
    assert np.isnan(summary.pop("MMR")) and np.isnan(again.pop("MMR")) and summary == again


def test_findings_claim_only_intervals_that_exclude_zero():
    t1 = pt.recognition_table(dataset_scores(), ["fomm", "flowwarp"], load_paper_tables(), 1)
    text = pt.findings(t1, "Table 1 (SAMM)")
    claims = [line for line in text.splitlines() if line.startswith("- ") and ": MMR" in line]
    # MMR rises by 20% on every clip for both backbones (gain 1.2), so both differences are claimed
    assert len(claims) == 2 and all("+" in c.split("MMR")[1] for c in claims)
    assert "FOMM+MagPlus − FOMM: MMR +0.01" in text
    assert "- Collapsed (>= 90% of predictions in one class): FOMM, FOMM+MagPlus." in text
    assert text.startswith("**Table 1 (SAMM)** (n = 24 test clips")
