"""Tables in three formats with the paper's numbers beside ours; figures; the transcribed reference."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
import torch

from magplus_lib.evaluation.reporting import (
    figure_heatmaps,
    figure_mmr_bars,
    figure_score_intervals,
    load_paper_tables,
    motion_box,
    save_figure,
    write_table,
)

SETTINGS = ["backbone", "magplus", "demagplus", "magplus+demagplus"]


def _summary():
    rows = []
    for d in ("samm", "casme3"):
        for i, b in enumerate(["fomm", "latent"]):
            for j, s in enumerate(SETTINGS):
                rows.append(
                    {
                        "dataset": d,
                        "backbone": b,
                        "setting": s,
                        "UAR": 0.3 + 0.1 * i + 0.01 * j,
                        "UF1": 0.2 + 0.01 * j,
                        "Accuracy": 0.4,
                        "MMR": [0.5, 3.0][i] * (1 + j),
                    }
                )
        rows.append(
            {
                "dataset": d,
                "backbone": "fomm_me",
                "setting": "dedicated",
                "UAR": 0.333,
                "UF1": 0.1,
                "Accuracy": 0.25,
                "MMR": 0.8,
            }
        )
    return pd.DataFrame(rows)


def test_paper_reference_matches_the_paper_text():
    paper = load_paper_tables()
    assert set(paper["table"]) == {1, 2, 3, 4}
    assert len(paper[paper["table"] == 1]) == 9 and len(paper[paper["table"] == 2]) == 8
    assert len(paper[paper["table"] == 3]) == 12 and len(paper[paper["table"] == 4]) == 8
    row = paper[(paper["table"] == 1) & (paper["method"] == "FOMM+MagPlus")].iloc[0]
    assert (row["UAR"], row["UF1"], row["Accuracy"], row["MMR"]) == (0.600, 0.528, 0.481, 1.117)
    meta = paper[(paper["table"] == 2) & (paper["method"] == "MetaPortrait")].iloc[0]
    assert meta["MMR"] == pytest.approx(18.0147)
    # Tables 1, 3 and 4 repeat the same full-pipeline rows; the transcription must agree with itself.
    t1 = paper[(paper["table"] == 1)].set_index("method")
    t3 = paper[(paper["table"] == 3) & (paper["dataset"] == "samm")].set_index("method")
    for m in ("FOMM+MagPlus", "MetaPortrait+MagPlus"):
        assert (
            t1.loc[m, ["UAR", "UF1", "Accuracy"]].tolist() == t3.loc[m, ["UAR", "UF1", "Accuracy"]].tolist()
        )
    t4 = paper[paper["table"] == 4].set_index("method")
    assert t4.loc["EmoPortraits+MagPlus+DeMagPlus", "MMR"] == t1.loc["EmoPortraits+MagPlus", "MMR"]


def test_write_table_rejects_empty(tmp_path):
    with pytest.raises(ValueError, match="no rows"):
        write_table(pd.DataFrame({"Method": []}), "t", tmp_path)


def test_figures_written_identically_twice(tmp_path):
    grid = pd.DataFrame(
        [
            {"alpha_mag": am, "alpha_demag": ad, "UAR": 0.3 + 0.01 * am, "MMR": am * ad}
            for am in (2, 5)
            for ad in (1, 0.5, 1 / 3)
        ]
    )
    fig = figure_heatmaps(grid, "samm / fomm", selected={"alpha_mag": 5, "alpha_demag": 0.5})
    paths = save_figure(fig, "sweep", tmp_path / "a")
    again = save_figure(fig, "sweep", tmp_path / "b")
    for ext in ("png", "pdf"):
        assert paths[ext].stat().st_size > 1000
        assert paths[ext].read_bytes() == again[ext].read_bytes()
    bars = _summary().assign(n=12)
    bars = bars.assign(**{"MMR low": bars["MMR"] * 0.8, "MMR high": bars["MMR"] * 1.3})
    fig = figure_mmr_bars(bars)
    heights = sorted(round(p.get_height(), 6) for p in fig.axes[0].patches)
    assert heights == sorted([0.5, 2.0, 3.0, 12.0])  # SAMM: fomm / latent, backbone and full pipeline
    save_figure(fig, "mmr", tmp_path)
    assert (tmp_path / "mmr.pdf").is_file()


def test_motion_box_finds_the_moving_region():
    rng = np.random.default_rng(0)
    import cv2

    tex = cv2.resize(rng.random((16, 16)).astype(np.float32), (64, 64), interpolation=cv2.INTER_CUBIC).clip(
        0, 1
    )
    moved = tex.copy()
    patch = cv2.warpAffine(tex, np.float32([[1, 0, 2], [0, 1, 0]]), (64, 64), flags=cv2.INTER_CUBIC)
    moved[40:56, 8:24] = patch[40:56, 8:24]  # only a patch in the lower left moves
    frames = torch.from_numpy(np.stack([tex, moved])[:, None].repeat(3, 1))
    x, y, w, h = motion_box(frames, 0, 1, frac=0.25)
    assert w == h == 16
    assert abs((x + w / 2) - 16) <= 6 and abs((y + h / 2) - 48) <= 6


def test_score_interval_figure_draws_each_row_with_its_interval_per_dataset():
    table = pd.DataFrame(
        {
            "Method": ["Chance (uniform guess)", "Latent", "Δ Latent+MagPlus", "Latent+MagPlus"],
            "SAMM n": [60, 60, 60, 60],
            "SAMM UAR": [0.33, 0.49, 0.1, 0.6],
            "SAMM UAR low": [0.17, 0.35, -0.1, 0.5],
            "SAMM UAR high": [0.53, 0.76, 0.3, 0.7],
            "SAMM UAR (paper)": [None, 0.5, None, 0.7],
            "CAS n": [277] * 4,
            "CAS UAR": [0.33, 0.4, 0.0, 0.45],
            "CAS UAR low": [0.25, 0.3, -0.1, 0.35],
            "CAS UAR high": [0.42, 0.5, 0.1, 0.55],
            "delta": [False, False, True, False],
        }
    )
    fig = figure_score_intervals(table, "UAR", "Table 3")
    samm, cas = fig.axes[:2]
    assert samm.get_title() == "SAMM (n = 60 clips)" and cas.get_title() == "CAS (n = 277 clips)"
    assert [t.get_text() for t in samm.get_yticklabels()] == [
        "Chance (uniform guess)",
        "Latent",
        "Latent+MagPlus",
    ]
    points = samm.lines[0].get_xdata()  # the delta row is left out
    np.testing.assert_allclose(points, [0.33, 0.49, 0.6])
    bars = samm.collections[-1].get_segments()  # the interval of each row, at its height
    np.testing.assert_allclose([(s[0][0], s[1][0]) for s in bars], [(0.17, 0.53), (0.35, 0.76), (0.5, 0.7)])
    band = samm.patches[0].get_extents().transformed(samm.transData.inverted())  # chance band
    np.testing.assert_allclose([band.x0, band.x1], [0.17, 0.53], atol=1e-6)
    with pytest.raises(ValueError, match="no rows or no 'UF1'"):
        figure_score_intervals(table, "UF1")
