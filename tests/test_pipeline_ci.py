"""End to end: `make paper PROFILE=ci` runs every notebook through the runner, and a rerun does nothing.

This is what keeps the notebooks from rotting: each one executes on the tiny `ci` profile with the
same runner, Makefile and library that `make paper` uses on the default profile.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from magplus_lib.profiles import REPO_ROOT

CACHED = [
    "01_pretrain-forward",
    "01_pretrain-inverse",
    "02_finetune-samm-forward",
    "02_finetune-samm-inverse",
    "02_finetune-casme3-forward",
    "02_finetune-casme3-inverse",
    "03_backbones",
]


def _make(env, *args):
    proc = subprocess.run(["make", *args], cwd=REPO_ROOT, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, (
        f"make {' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    )
    return proc


def _runs(out):
    return json.loads((out / "manifest.json").read_text())["runs"]


@pytest.fixture(scope="module")
def ci_run(tmp_path_factory):
    """`make cache PROFILE=ci` into an empty results folder and an empty cache: every stage trains
    from scratch and the training stages write their cache entries (with fingerprints)."""
    results = tmp_path_factory.mktemp("results")
    cache_root = tmp_path_factory.mktemp("cache")
    env = {**os.environ, "MAGPLUS_RESULTS": str(results), "MAGPLUS_CACHE": str(cache_root)}
    _make(env, "cache", "PROFILE=ci")
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


@pytest.mark.slow
def test_cache_entries_hold_provenance(ci_run):
    _, env = ci_run
    for stage in CACHED:
        prov = json.loads((Path(env["MAGPLUS_CACHE"]) / "ci" / stage / "provenance.json").read_text())
        assert prov["trained"]["seconds"] > 0 and prov["trained"]["machine"]["cores"] >= 1
        assert prov["fingerprint"]["sha256"] and prov["files"]
        assert set(prov["parts"]) == {"params", "code", "versions", "upstream"}
        assert not any(f.endswith(".optim.safetensors") for f in prov["files"])


@pytest.mark.slow
def test_restored_run_equals_the_from_scratch_run_and_a_changed_setting_retrains_its_entry(ci_run, tmp_path):
    scratch_out, env = ci_run
    env = {**env, "MAGPLUS_RESULTS": str(tmp_path)}
    _make(env, "paper", "PROFILE=ci")
    out = tmp_path / "ci"
    status = {r["name"]: r["cache"]["status"] for r in _runs(out)}
    assert all(status[s] == "restored" for s in CACHED), status
    assert status["00_data"] == "executed"
    tables = sorted(p.name for p in (scratch_out / "tables").iterdir())
    assert tables and all(
        (out / "tables" / t).read_bytes() == (scratch_out / "tables" / t).read_bytes() for t in tables
    )
    metrics = sorted(p.name for p in (scratch_out / "metrics").iterdir())
    for m in metrics:
        assert (out / "metrics" / m).read_bytes() == (scratch_out / "metrics" / m).read_bytes(), m

    # One backbone training setting changed: that entry retrains, naming the setting; entries
    # upstream or beside it are not even rerun, and only stages downstream of it run again.
    before = len(_runs(out))
    _make(env, "paper", "PROFILE=ci", "SET=backbones.train.landmark.steps=5")
    later = _runs(out)[before:]
    names = [r["name"] for r in later]
    assert names[0] == "03_backbones" and not set(names) & (set(CACHED) - {"03_backbones"})
    assert later[0]["cache"]["status"] == "executed"
    assert later[0]["cache"]["changed"] == ["params: backbones.train.landmark.steps"]
    assert later[0]["parameters"]["backbones"]["train"]["landmark"]["steps"] == 5
    assert {"05_alpha_sweep-samm", "06_generate-casme3", "07_tables-table1", "08_figures"} <= set(names)
    assert not {"04_evaluator-samm", "04_evaluator-casme3"} & set(names)
