"""End to end: `make paper PROFILE=ci` runs every notebook through the runner, and a rerun does nothing.

This is what keeps the notebooks from rotting: each one executes on the tiny `ci` profile with the
same runner, Makefile and library that `make paper` uses on the default profile.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import CACHED, make, manifest_runs

from magplus_lib.harness import cache, runner
from magplus_lib.harness.profiles import REPO_ROOT
from magplus_lib.harness.runner import resolve_parameters

SWEEP_AFTER = ["02_finetune-samm-forward", "02_finetune-samm-inverse", "03_backbones", "04_evaluator-samm"]


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


@pytest.mark.cache
@pytest.mark.slow
def test_restored_run_equals_the_from_scratch_run_and_a_changed_setting_retrains_its_entry(ci_run, tmp_path):
    # Table 4 (SAMM) needs every kind of cached stage: pretraining, fine-tunes, backbones.
    scratch_out, env = ci_run
    env = {**env, "MAGPLUS_RESULTS": str(tmp_path)}
    make(env, "table4", "PROFILE=ci")
    out = tmp_path / "ci"
    status = {r["name"]: r["cache"]["status"] for r in manifest_runs(out)}
    cached_here = [s for s in CACHED if "casme3" not in s]
    assert all(status[s] == "restored" for s in cached_here), status
    assert status["00_data"] == "executed"
    for folder in ("tables", "metrics"):
        produced = sorted(p.name for p in (out / folder).iterdir())
        assert "table4.csv" in produced or folder == "metrics"
        for name in produced:
            assert (out / folder / name).read_bytes() == (scratch_out / folder / name).read_bytes(), name

    # One backbone training setting changed: that entry retrains, naming the setting; entries
    # upstream or beside it are not rerun, and exactly the stages downstream of it are due again.
    setting = "SET=backbones.train.landmark.steps=5"
    before = len(manifest_runs(out))
    make(env, "backbones", "PROFILE=ci", setting)
    (retrained,) = manifest_runs(out)[before:]
    assert retrained["name"] == "03_backbones" and retrained["cache"]["status"] == "executed"
    assert retrained["cache"]["changed"] == ["params: backbones.train.landmark.steps"]
    assert retrained["parameters"]["backbones"]["train"]["landmark"]["steps"] == 5
    # Downstream keys follow (make reruns those stages); a stage beside it keeps its key.
    changed = {"backbones.train.landmark.steps": 5}
    for name, notebook, after, same in [
        ("05_alpha_sweep-samm", "05_alpha_sweep", SWEEP_AFTER, False),
        ("04_evaluator-samm", "04_evaluator", ["00_data"], True),
    ]:
        params = resolve_parameters(f"notebooks/{notebook}.py", "ci", {"dataset": "samm"}, settings=changed)
        key = cache.key_of(runner.stage_key_parts(REPO_ROOT / f"notebooks/{notebook}.py", params, out, after))
        assert (key == cache.read_state(out, name)["key"]) == same, name


@pytest.mark.cache
@pytest.mark.slow
def test_verify_cache_retrains_an_entry_bit_for_bit_and_catches_a_different_one(ci_run, tmp_path):
    _, env = ci_run
    proc = make(env, "verify-cache", "PROFILE=ci", "VERIFY_STAGE=02_finetune-samm-inverse")
    assert "verified 02_finetune-samm-inverse" in proc.stdout
    # The same entry with another stage's weights in place of its own: the retrained tensors differ.
    cache_copy = tmp_path / "cache"
    shutil.copytree(Path(env["MAGPLUS_CACHE"]), cache_copy)
    entry = cache_copy / "ci" / "02_finetune-samm-inverse"
    prov = json.loads((entry / "provenance.json").read_text())
    weights = "checkpoints/demagplus_samm.safetensors"
    shutil.copyfile(
        cache_copy / "ci" / "02_finetune-casme3-inverse" / "checkpoints" / "demagplus_casme3.safetensors",
        entry / weights,
    )
    prov["files"][weights] = {
        "sha256": cache.file_sha256(entry / weights),
        "bytes": (entry / weights).stat().st_size,
    }
    (entry / "provenance.json").write_text(json.dumps(prov))
    proc = subprocess.run(
        ["make", "verify-cache", "PROFILE=ci", "VERIFY_STAGE=02_finetune-samm-inverse"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        env={**env, "MAGPLUS_CACHE": str(cache_copy)},
    )
    assert proc.returncode != 0 and f"{weights} differs from the cached tensors" in proc.stderr


@pytest.mark.slow
def test_lab_copy_runs_from_another_working_directory_and_recomputes_the_same_table(
    ci_run, tmp_path, monkeypatch
):
    import papermill as pm

    from magplus_lib.harness import lab

    out, env = ci_run
    monkeypatch.setenv("MAGPLUS_RESULTS", env["MAGPLUS_RESULTS"])
    written, _ = lab.prepare("ci")
    copy = out / "lab" / "07_tables-table1.ipynb"
    assert copy in written
    before = (out / "tables" / "table1.csv").read_bytes()
    (out / "tables" / "table1.csv").unlink()
    pm.execute_notebook(str(copy), str(tmp_path / "ran.ipynb"), kernel_name="magplus", cwd=str(tmp_path))
    assert (out / "tables" / "table1.csv").read_bytes() == before
