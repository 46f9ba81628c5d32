"""make lab: every finished stage as a notebook carrying its run's parameters, runnable from anywhere."""

from __future__ import annotations

import json

import nbformat
import pytest

from magplus_lib.harness import lab
from magplus_lib.harness.profiles import REPO_ROOT, ProfileError


def _manifest(results, runs):
    results.mkdir(parents=True, exist_ok=True)
    (results / "manifest.json").write_text(json.dumps({"runs": runs}))


def _run(name, status="ok", alpha_grid=(2, 3)):
    params = {
        "profile": "ci",
        "results_dir": "results/ci",
        "dataset": "samm",
        "sweep": {"alphas": list(alpha_grid)},
    }
    return {"name": name, "notebook": "notebooks/05_alpha_sweep.py", "status": status, "parameters": params}


def test_last_run_of_each_stage_counts_and_a_failed_last_run_is_left_out(tmp_path):
    _manifest(
        tmp_path, [_run("a", alpha_grid=(2,)), _run("a", alpha_grid=(5,)), _run("b"), _run("b", "failed")]
    )
    runs = lab.finished_runs(tmp_path)
    assert list(runs) == ["a"] and runs["a"]["parameters"]["sweep"]["alphas"] == [5]


def test_copies_carry_the_runs_parameters_with_an_absolute_results_dir_and_edits_are_kept(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("MAGPLUS_RESULTS", str(tmp_path))
    _manifest(tmp_path / "ci", [_run("05_alpha_sweep-samm", alpha_grid=(2, 7))])
    written, kept = lab.prepare("ci")
    assert kept == [] and [p.name for p in written] == ["05_alpha_sweep-samm.ipynb"]
    nb = nbformat.read(written[0], as_version=4)
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1
    assert f'results_dir = "{(REPO_ROOT / "results" / "ci").resolve()}"' in injected[0].source
    assert '"alphas": [2, 7]' in injected[0].source
    assert nb.metadata.kernelspec.name == "magplus"
    assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code")  # nothing executed
    written[0].write_text(written[0].read_text().replace("[2, 7]", "[2, 9]"))  # the reader's edit
    again, kept = lab.prepare("ci")
    assert again == [] and kept == written and "[2, 9]" in written[0].read_text()


def test_no_finished_run_says_what_to_run(tmp_path, monkeypatch):
    monkeypatch.setenv("MAGPLUS_RESULTS", str(tmp_path))
    with pytest.raises(ProfileError, match=r"no finished run of profile 'ci'; run `make paper PROFILE=ci`"):
        lab.prepare("ci")
    _manifest(tmp_path / "ci", [_run("x")])
    (tmp_path / "ci" / "manifest.json").write_text("{broken")
    with pytest.raises(ProfileError, match="manifest.json: unreadable manifest"):
        lab.prepare("ci")


def _committed_default_runs():
    results = REPO_ROOT / "results" / "default"
    return sorted(lab.finished_runs(results).items()) if (results / "manifest.json").is_file() else []


@pytest.mark.parametrize("name,run", _committed_default_runs(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_committed_default_stage_opens_in_the_lab_with_todays_profile(name, run):
    """What `make lab` gives a student after `make paper`: each stage's copy runs its parameters cell, then
    the committed run's parameters, which are still the ones today's default profile gives that stage
    (a profile changed without rerunning `make paper` would leave the committed results stale)."""
    from magplus_lib.harness.runner import declared_parameters, parameters_cell_source, resolve_parameters

    notebook = REPO_ROOT / run["notebook"]
    assert notebook.is_file(), f"stage {name}: {notebook} is missing"
    recorded = run["parameters"]
    plain = resolve_parameters(notebook, "default")
    overrides = {k: v for k, v in recorded.items() if k not in plain}  # the make target's -p (dataset, ...)
    today = json.loads(json.dumps(resolve_parameters(notebook, "default", overrides), default=str))
    assert today == recorded, (
        f"stage {name}: results/default was made with other parameters; rerun make paper"
    )
    assert set(recorded) <= set(declared_parameters(notebook)), f"stage {name}: an undeclared parameter"
    namespace: dict = {}
    exec(parameters_cell_source(notebook), namespace)  # the notebook's own cell, then the injected one
    injected = lab.lab_parameters(run)
    exec("\n".join(f"{k} = {v!r}" for k, v in injected.items()), namespace)
    assert namespace["profile"] == "default"
    assert namespace["results_dir"] == str((REPO_ROOT / "results" / "default").resolve())
