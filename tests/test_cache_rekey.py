"""`make cache-rekey` on real code: after a behaviour-neutral edit of the training code a cached stage is
re-keyed once its first steps replay to the same weights; after an edit that changes training (a loss
weight hard-coded differently) the replay differs and the stage retrains. The ci profile's forward
pretraining runs in a copy of the repository whose code the test edits, on a copy of the results and
cache that the ci pipeline test's `make cache` wrote (its `ci_run` fixture, shared through conftest)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from magplus_lib.harness.profiles import REPO_ROOT

FORWARD = [
    "notebooks/01_pretrain.py",
    "--profile",
    "ci",
    "--tag",
    "forward",
    "-p",
    "direction=forward",
    "--after",
    "00_data",
    "--cache",
    "magplus_pretrain",
]


@pytest.mark.cache
@pytest.mark.slow
def test_rekey_accepts_a_neutral_edit_and_retrains_after_a_behaviour_change(ci_run, tmp_path):
    # A copy of the ci pipeline's results and cache (from `make cache PROFILE=ci`), and of the code.
    done, env = ci_run
    repo, results, cache_root = tmp_path / "repo", tmp_path / "results", tmp_path / "cache"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("magplus_lib", "notebooks"):
        shutil.copytree(REPO_ROOT / folder, repo / folder, ignore=ignore)
    shutil.copytree(done, results / "ci", symlinks=True)
    shutil.copytree(Path(env["MAGPLUS_CACHE"]), cache_root)
    env = {
        **env,
        "PYTHONPATH": str(repo),  # the copy's magplus_lib, in this process and in the kernels it starts
        "MAGPLUS_RESULTS": str(results),
        "MAGPLUS_CACHE": str(cache_root),
    }

    def rekey():
        proc = subprocess.run(
            [sys.executable, "-m", "magplus_lib", "run-notebook", *FORWARD, "--cache-mode", "rekey"],
            cwd=repo,
            env=env,
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        runs = json.loads((results / "ci" / "manifest.json").read_text())["runs"]
        entry = cache_root / "ci" / "01_pretrain-forward" / "provenance.json"
        return runs[-1]["cache"], json.loads(entry.read_text())

    first = json.loads((cache_root / "ci" / "01_pretrain-forward" / "provenance.json").read_text())
    training = repo / "magplus_lib" / "magnifier" / "training.py"
    source = training.read_text()
    training.write_text(source + "\n# A comment: the key changes, the numbers do not.\n")
    rekeyed, second = rekey()
    assert rekeyed["status"] == "rekeyed", rekeyed
    assert second["key"] != first["key"] and second["files"] == first["files"]
    assert second["rekeyed"][-1]["changed"] == ["code: magplus_lib/magnifier/training.py"]
    assert second["trained"] == first["trained"]

    training.write_text(source)
    stage_config = repo / "magplus_lib" / "magnifier" / "train_config.py"
    config_source = stage_config.read_text()
    stage_default = "    w_color: float = 10.0\n    checkpoint_every: int = 50\n    max_pairs"
    assert config_source.count(stage_default) == 1
    stage_config.write_text(config_source.replace(stage_default, stage_default.replace("10.0", "12.0")))
    retrained, third = rekey()
    assert retrained["status"] == "executed"
    assert any("fingerprint differs" in line for line in retrained["changed"])
    assert third["key"] not in (first["key"], second["key"]) and third["rekeyed"] == []
    weights = "checkpoints/magplus_pretrain.safetensors"
    assert third["files"][weights]["sha256"] != first["files"][weights]["sha256"]
    assert third["fingerprint"]["sha256"] != first["fingerprint"]["sha256"]


def test_a_replay_leaves_the_kernels_environment_as_it_found_it(tmp_path, monkeypatch):
    # Regression: a replay's kernels set IPYTHONDIR under the scratch root, which outlived the replay
    # (the next stage's kernel then warned that the deleted folder was not writable).
    from magplus_lib.harness.cache_runs import _results_root

    monkeypatch.setenv("MAGPLUS_RESULTS", str(tmp_path / "main"))
    monkeypatch.delenv("IPYTHONDIR", raising=False)
    with _results_root(tmp_path / "scratch"):
        assert os.environ["MAGPLUS_RESULTS"] == str(tmp_path / "scratch")
        os.environ["IPYTHONDIR"] = str(tmp_path / "scratch" / ".cache" / "ipython")
    assert os.environ["MAGPLUS_RESULTS"] == str(tmp_path / "main") and "IPYTHONDIR" not in os.environ
