"""Executed notebooks become small Markdown pages: what a reader needs stays, run noise goes."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from magplus_lib.harness.notebook_export import MAX_WIDTH, ExportError, export_all, export_notebook


def _png(width: int, height: int) -> str:
    """Left half red, right half blue."""
    arr = np.zeros((height, width, 3), np.uint8)
    arr[:, : width // 2, 0] = 255
    arr[:, width // 2 :, 2] = 255
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _notebook(outputs=None) -> dict:
    code_outputs = outputs or [
        {"output_type": "stream", "name": "stdout", "text": ["UAR 0.412\n"]},
        {"output_type": "stream", "name": "stderr", "text": ["train: 100%|#####| 4/4 [00:01<00:00]\n"]},
        {"output_type": "display_data", "data": {"image/png": _png(1600, 400), "text/plain": ["<Figure>"]}},
    ]
    return {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {"papermill": {"start_time": "2026-12-06T20:00:00"}},
        "cells": [
            {"cell_type": "markdown", "metadata": {}, "source": ["# 04 · The evaluator\n", "$UAR$"]},
            {
                "cell_type": "code",
                "metadata": {"tags": ["parameters"]},
                "source": 'profile = "ci"',
                "outputs": [],
                "execution_count": 1,
            },
            {
                "cell_type": "code",
                "metadata": {"tags": ["injected-parameters"]},
                "source": 'profile = "default"',
                "outputs": [],
                "execution_count": 2,
            },
            {
                "cell_type": "code",
                "metadata": {"execution": {"iopub.execute_input": "2026-12-06"}},
                "source": "print(score)",
                "outputs": code_outputs,
                "execution_count": 3,
            },
        ],
    }


def _write(path, nb):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(nb))
    return path


def test_page_keeps_text_tables_and_a_small_figure_and_drops_run_noise(tmp_path):
    nb = _write(tmp_path / "executed" / "04_evaluator-samm.ipynb", _notebook())
    page = export_notebook(nb, tmp_path / "notebooks").read_text()
    assert "# 04 · The evaluator" in page and "$UAR$" in page
    assert "UAR 0.412" in page  # stdout kept
    assert "100%" not in page and "2026-12-06" not in page  # progress bars and timestamps dropped
    assert page.index("the notebook's defaults") < page.index('profile = "ci"')
    assert page.index("parameters of this run") < page.index('profile = "default"')
    assert "![figure 1](img/04_evaluator-samm-01.png)" in page and "<Figure>" not in page
    img = Image.open(tmp_path / "notebooks" / "img" / "04_evaluator-samm-01.png")
    assert img.mode == "P" and img.size == (MAX_WIDTH, MAX_WIDTH // 4)
    rgb = np.asarray(img.convert("RGB"))
    assert tuple(rgb[50, 10]) == (255, 0, 0) and tuple(rgb[50, MAX_WIDTH - 10]) == (0, 0, 255)


def test_export_is_deterministic(tmp_path):
    nb = _write(tmp_path / "executed" / "08_figures.ipynb", _notebook())
    first = (
        export_notebook(nb, tmp_path / "a").read_bytes(),
        (tmp_path / "a/img/08_figures-01.png").read_bytes(),
    )
    second = (
        export_notebook(nb, tmp_path / "b").read_bytes(),
        (tmp_path / "b/img/08_figures-01.png").read_bytes(),
    )
    assert first == second


def test_html_table_kept_without_its_style_block(tmp_path):
    html = "<style scoped>.x {color: red}</style><table><tr><td>0.333</td></tr></table>"
    out = [{"output_type": "execute_result", "data": {"text/html": [html], "text/plain": ["  0.333"]}}]
    page = export_notebook(
        _write(tmp_path / "executed" / "07_t.ipynb", _notebook(out)), tmp_path / "n"
    ).read_text()
    assert "<table><tr><td>0.333</td></tr></table>" in page and "<style" not in page


def test_failed_notebook_is_refused_naming_it_and_the_cell(tmp_path):
    out = [{"output_type": "error", "ename": "DataError", "evalue": "SAMM.xlsx: no column 'Subject'"}]
    nb = _write(tmp_path / "executed" / "00_data.ipynb", _notebook(out))
    with pytest.raises(ExportError, match=r"00_data: cell 3: an DataError was raised: SAMM.xlsx"):
        export_notebook(nb, tmp_path / "notebooks")
    assert not (tmp_path / "notebooks" / "00_data.md").exists()


def test_corrupt_notebook_named(tmp_path):
    bad = tmp_path / "executed" / "01_pretrain.ipynb"
    bad.parent.mkdir(parents=True)
    bad.write_text("{not json")
    with pytest.raises(ExportError, match="01_pretrain.ipynb: not a readable notebook"):
        export_notebook(bad, tmp_path / "notebooks")


def test_export_all_removes_pages_and_figures_of_notebooks_gone_and_needs_a_run(tmp_path):
    with pytest.raises(ExportError, match="no executed notebooks"):
        export_all(tmp_path)
    _write(tmp_path / "executed" / "05_alpha_sweep-samm.ipynb", _notebook())
    gone = _write(tmp_path / "executed" / "05_alpha_sweep-old.ipynb", _notebook())
    _write(tmp_path / "executed" / "06_generate.FAILED.ipynb", _notebook())
    assert sorted(p.name for p in export_all(tmp_path)) == ["05_alpha_sweep-old.md", "05_alpha_sweep-samm.md"]
    gone.unlink()
    export_all(tmp_path)
    pages = tmp_path / "notebooks"
    assert sorted(p.name for p in pages.glob("*.md")) == ["05_alpha_sweep-samm.md"]
    assert sorted(p.name for p in (pages / "img").iterdir()) == ["05_alpha_sweep-samm-01.png"]
