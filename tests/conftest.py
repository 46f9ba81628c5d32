"""Shared test fixtures."""

import json
import os
import subprocess

import pytest
import torch

from magplus_lib.harness.profiles import REPO_ROOT


@pytest.fixture
def one_torch_thread():
    """Many tiny torch ops: one thread avoids OpenMP oversubscription on a busy 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


CACHED = [
    "01_pretrain-forward",
    "01_pretrain-inverse",
    "02_finetune-samm-forward",
    "02_finetune-samm-inverse",
    "02_finetune-casme3-forward",
    "02_finetune-casme3-inverse",
    "03_backbones",
]


def make(env, *args):
    proc = subprocess.run(["make", *args], cwd=REPO_ROOT, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, (
        f"make {' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    )
    return proc


def manifest_runs(out):
    return json.loads((out / "manifest.json").read_text())["runs"]


@pytest.fixture(scope="session")
def ci_run(tmp_path_factory):
    """`make cache PROFILE=ci` into an empty results folder and an empty cache: every stage trains
    from scratch and the training stages write their cache entries (with fingerprints)."""
    results = tmp_path_factory.mktemp("results")
    cache_root = tmp_path_factory.mktemp("cache")
    env = {**os.environ, "MAGPLUS_RESULTS": str(results), "MAGPLUS_CACHE": str(cache_root)}
    make(env, "cache", "PROFILE=ci")
    return results / "ci", env
