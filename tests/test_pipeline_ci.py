"""End to end: `make paper PROFILE=ci` runs every notebook through the runner, and a rerun does nothing.

This is what keeps the notebooks from rotting: each one executes on the tiny `ci` profile with the
same runner, Makefile and library that `make paper` uses on the default profile.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from magplus_lib.profiles import REPO_ROOT


@pytest.fixture(scope="module")
def ci_run(tmp_path_factory):
    results = tmp_path_factory.mktemp("results")
    env = {**os.environ, "MAGPLUS_RESULTS": str(results)}
    proc = subprocess.run(
        ["make", "paper", "PROFILE=ci"], cwd=REPO_ROOT, capture_output=True, text=True, env=env
    )
    assert proc.returncode == 0, (
        f"make paper PROFILE=ci failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    )
    return results / "ci", env


@pytest.mark.slow
def test_every_notebook_executes_on_ci(ci_run):
    out, _ = ci_run
    notebooks = sorted(p.stem for p in (REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
    assert notebooks, "no notebooks found"
    executed = sorted(p.name for p in (out / "executed").glob("*.ipynb"))
    for stem in notebooks:
        assert any(name == f"{stem}.ipynb" or name.startswith(f"{stem}-") for name in executed), stem
    assert not list((out / "executed").glob("*.FAILED.ipynb"))
    runs = json.loads((out / "manifest.json").read_text())["runs"]
    assert len(runs) == len(executed) and all(r["status"] == "ok" for r in runs)


@pytest.mark.slow
def test_second_make_paper_does_no_work(ci_run):
    out, env = ci_run
    before = {p: p.stat().st_mtime for p in (out / "executed").glob("*.ipynb")}
    proc = subprocess.run(
        ["make", "paper", "PROFILE=ci"], cwd=REPO_ROOT, capture_output=True, text=True, env=env
    )
    assert proc.returncode == 0, proc.stderr
    assert "run-notebook" not in proc.stdout
    assert {p: p.stat().st_mtime for p in (out / "executed").glob("*.ipynb")} == before
