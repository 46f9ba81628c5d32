"""The study harness: profiles, the papermill runner, the manifest and the Makefile's stage graph."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from magplus_lib.harness import atomicio, cache, provenance, runner, settings
from magplus_lib.harness.profiles import (
    REPO_ROOT,
    MissingPathsError,
    ProfileError,
    from_dict,
    load_profile,
    missing_variables,
    profile_name,
    results_dir,
)

NOTEBOOK = """# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python (magplus)
#     language: python
#     name: magplus
# ---

# %% [markdown]
# # A test notebook

# %% tags=["parameters"]
profile = "ci"
results_dir = "results/ci"
seed = 0
image_size = 32
fail = False

# %%
import os
from pathlib import Path

Path(results_dir, "out").mkdir(parents=True, exist_ok=True)
Path(results_dir, "out", "cwd.txt").write_text(os.getcwd())
Path(results_dir, "out", "params.json").write_text(repr((profile, seed, image_size)))

# %%
if fail:
    raise ValueError("deliberate failure in cell three")
"""


@pytest.fixture
def notebook(tmp_path):
    path = tmp_path / "nb_test.py"
    path.write_text(NOTEBOOK)
    return path


@pytest.fixture
def results(tmp_path, monkeypatch):
    root = tmp_path / "results"
    monkeypatch.setenv("MAGPLUS_RESULTS", str(root))
    return root


def _names(reqs: list[str]) -> dict[str, str]:
    out = {}
    for r in reqs:
        name = re.split(r"[<>=!~ \[]", r.strip(), maxsplit=1)[0].lower()
        out[name] = r.replace(" ", "")
    return out


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    wanted = _names(project["dependencies"] + project["optional-dependencies"]["dev"])
    env = yaml.safe_load((REPO_ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert "-e ." in pip_section, "environment.yml must install the package itself"
    got = _names([p for p in pip_section if p != "-e ."])
    assert got == wanted  # same names and the same version constraints


def test_profiles_share_their_parameter_names():
    # A notebook declares one set of names; every profile must give values for the same keys.
    keys = {name: set(load_profile(name, env={}).keys()) for name in ("ci", "default")}
    full = set(yaml.safe_load((REPO_ROOT / "notebooks/profiles/full.yaml").read_text())) - {"env_help"}
    assert keys["ci"] == keys["default"]
    assert keys["ci"] - {"profile"} == full


def test_missing_paths_are_listed_together(tmp_path):
    prof = tmp_path / "p.yaml"
    prof.write_text(
        "seed: 0\ndata: {samm: '${SAMM_X}', casme3: '${CASME_X}/part_A'}\nweights: '${W_X}'\n"
        "env_help: {SAMM_X: 'the SAMM folder', CASME_X: 'the CAS(ME)^3 folder'}\n"
    )
    env = {"W_X": "/w.pth"}
    assert set(missing_variables(prof, env)) == {"SAMM_X", "CASME_X"}
    with pytest.raises(MissingPathsError) as err:
        load_profile(prof, env=env)
    msg = str(err.value)
    assert "SAMM_X" in msg and "the SAMM folder" in msg and "CASME_X" in msg and "the CAS(ME)^3 folder" in msg
    loaded = load_profile(prof, env={"SAMM_X": "/s", "CASME_X": "/c", "W_X": "/w.pth"})
    assert loaded["data"] == {"samm": "/s", "casme3": "/c/part_A"} and loaded["weights"] == "/w.pth"
    assert "env_help" not in loaded


def test_full_profile_check_lists_every_variable():
    full = yaml.safe_load((REPO_ROOT / "notebooks/profiles/full.yaml").read_text())
    missing = missing_variables("full", env={})
    # Every variable the profile uses is reported, and each has a description in env_help.
    assert missing and set(missing) <= set(full["env_help"])
    proc = subprocess.run(
        [sys.executable, "-m", "magplus_lib", "check-profile", "full"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k not in missing},
    )
    assert proc.returncode == 2
    for var in missing:
        assert var in proc.stderr


def test_unknown_profile_and_unknown_setting_are_errors():
    with pytest.raises(ProfileError, match="unknown profile 'nope'"):
        load_profile("nope")

    @dataclass
    class Cfg:
        width: int = 16
        steps: int = 10

    assert from_dict(Cfg, {"width": 32}) == Cfg(32, 10)
    with pytest.raises(ProfileError, match=r"unknown setting\(s\) \['widht'\]"):
        from_dict(Cfg, {"widht": 32}, where="magnifier")


def test_declared_parameters_and_overrides(notebook, results):
    assert runner.declared_parameters(notebook) == {
        "profile": "ci",
        "results_dir": "results/ci",
        "seed": 0,
        "image_size": 32,
        "fail": False,
    }
    params = runner.resolve_parameters(notebook, "ci", {"seed": 7})
    ci = load_profile("ci")
    assert params == {
        "profile": "ci",
        "results_dir": str(results / "ci"),
        "seed": 7,
        "image_size": ci["image_size"],
    }
    with pytest.raises(ProfileError, match="unknown parameter 'sede'"):
        runner.resolve_parameters(notebook, "ci", {"sede": 7})
    assert settings.parse_assignment("tables=[1, 3]") == ("tables", [1, 3])
    assert settings.parse_assignment("dataset=samm") == ("dataset", "samm")
    assert settings.parse_assignment("pretrain.lr=1e-3") == ("pretrain.lr", 0.001)


def test_run_writes_notebook_and_manifest_per_profile(notebook, results):
    out = runner.run_notebook(notebook, "ci", tag="a", overrides={"seed": 3}, progress=False)
    assert out == results / "ci" / "executed" / "nb_test-a.ipynb" and out.is_file()
    # The kernel ran in the repository root with the injected values.
    assert Path(results / "ci" / "out" / "cwd.txt").read_text() == str(REPO_ROOT)
    ci_size = load_profile("ci")["image_size"]
    assert Path(results / "ci" / "out" / "params.json").read_text() == repr(("ci", 3, ci_size))
    runner.run_notebook(notebook, "default", progress=False)
    default_size = load_profile("default")["image_size"]
    assert Path(results / "default" / "out" / "params.json").read_text() == repr(("default", 0, default_size))
    # One profile's results never touch another's.
    assert Path(results / "ci" / "out" / "params.json").read_text() == repr(("ci", 3, ci_size))
    entry = json.loads((results / "ci" / "manifest.json").read_text())["runs"][-1]
    assert entry["status"] == "ok" and entry["parameters"]["seed"] == 3
    assert entry["versions"]["torch"] and entry["git_commit"]
    assert set(entry["outputs"]) == {"out/cwd.txt", "out/params.json"}
    assert entry["start"] <= entry["end"]


def test_manifest_commit_is_dirty_for_code_changes_not_for_rewritten_artefacts(tmp_path):
    def git(*args):
        return subprocess.run(
            ["git", *args], cwd=tmp_path, check=True, capture_output=True, text=True
        ).stdout.strip()

    git("init", "-q")
    (tmp_path / "results" / "default").mkdir(parents=True)
    (tmp_path / "results" / "default" / "manifest.json").write_text("{}\n")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "init")
    sha = git("rev-parse", "HEAD")
    assert provenance.git_commit(tmp_path) == sha
    # A stage rewrites a committed artefact: the code that ran is still exactly HEAD's.
    (tmp_path / "results" / "default" / "manifest.json").write_text('{"runs": []}\n')
    (tmp_path / "untracked.py").write_text("y = 2\n")
    assert provenance.git_commit(tmp_path) == sha
    (tmp_path / "code.py").write_text("x = 2\n")
    assert provenance.git_commit(tmp_path) == sha + "-dirty"
    assert provenance.git_commit(tmp_path / "missing") == "unknown"


def test_failing_cell_names_cell_and_error_and_leaves_no_finished_file(notebook, results):
    good = runner.run_notebook(notebook, "ci", progress=False)
    assert good.is_file()
    with pytest.raises(runner.NotebookFailed) as err:
        runner.run_notebook(notebook, "ci", overrides={"fail": True}, progress=False)
    msg = str(err.value)
    assert "nb_test.py" in msg and "cell" in msg and "ValueError: deliberate failure in cell three" in msg
    assert not good.exists(), "a stale finished notebook must not survive a failed rerun"
    assert good.with_suffix(".FAILED.ipynb").is_file()
    runs = json.loads((results / "ci" / "manifest.json").read_text())["runs"]
    assert [r["status"] for r in runs] == ["ok", "failed"]
    # The command line exits non-zero and prints the same message.
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "magplus_lib",
            "run-notebook",
            str(notebook),
            "--profile",
            "ci",
            "-p",
            "fail=true",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1 and "ValueError: deliberate failure in cell three" in proc.stderr


def test_atomic_path_keeps_old_file_on_error(tmp_path):
    target = tmp_path / "table.csv"
    atomicio.write_text(target, "old")
    with pytest.raises(RuntimeError), atomicio.atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash while writing")
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's private 0600


def _make(cwd: Path, *args: str) -> str:
    proc = subprocess.run(["make", *args], cwd=cwd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def _fake_repo(tmp_path: Path, data_nb: str = NOTEBOOK) -> Path:
    """The Makefile, library and profiles with two small notebooks as 00_data and 03_backbones."""
    repo = tmp_path / "repo"
    (repo / "notebooks" / "profiles").mkdir(parents=True)
    shutil.copy2(REPO_ROOT / "Makefile", repo)
    # copy2 keeps the mtime: the set-up stamp stays newer
    for name in ("pyproject.toml", "requirements.lock"):
        shutil.copy2(REPO_ROOT / name, repo)
    shutil.copytree(REPO_ROOT / "magplus_lib", repo / "magplus_lib")
    for p in (REPO_ROOT / "notebooks" / "profiles").glob("*.yaml"):
        shutil.copy2(p, repo / "notebooks" / "profiles")
    os.symlink(REPO_ROOT / ".venv", repo / ".venv")
    backbone_nb = NOTEBOOK.replace("import os\n", "import os\nimport magplus_lib.harness.atomicio\n")
    (repo / "notebooks" / "00_data.py").write_text(data_nb)
    (repo / "notebooks" / "03_backbones.py").write_text(backbone_nb)
    return repo


@pytest.mark.cache
def test_makefile_reruns_only_what_changed(tmp_path):
    """A finished run does nothing; a parameter or library change reruns only the stages using it."""
    repo = _fake_repo(tmp_path)
    env_args = ["PROFILE=ci", f"MAGPLUS_RESULTS={tmp_path / 'res'}"]

    first = _make(repo, "paper", *env_args)
    assert first.count("run-notebook") == 2
    assert "run-notebook" not in _make(repo, "paper", *env_args)

    prof = repo / "notebooks" / "profiles" / "ci.yaml"
    prof.write_text(prof.read_text().replace("sweep: ", "sweep_unused_by_these: 1\nsweep: ", 1))
    assert "run-notebook" not in _make(repo, "paper", *env_args)  # a key neither notebook declares

    os.utime(repo / "magplus_lib" / "harness" / "atomicio.py")  # only 03_backbones imports it
    out = _make(repo, "paper", *env_args)
    assert "03_backbones.py" in out and "00_data.py" not in out

    prof.write_text(re.sub(r"^seed: 0", "seed: 5", prof.read_text(), flags=re.M))
    assert _make(repo, "paper", *env_args).count("run-notebook") == 2

    # A .d written before a module moved names a file that no longer exists: that stage reruns, make
    # does not stop ("No rule to make target").
    dep = tmp_path / "res" / "ci" / "params" / "03_backbones.d"
    dep.write_text(dep.read_text().rstrip("\n") + " magplus_lib/moved_away.py\n")
    out = _make(repo, "paper", *env_args)
    assert "03_backbones.py" in out and "00_data.py" not in out


def test_progress_bars_do_not_flood_executed_notebooks(tmp_path, results):
    nb = tmp_path / "nb_tqdm.py"
    nb.write_text(
        NOTEBOOK.replace(
            'if fail:\n    raise ValueError("deliberate failure in cell three")',
            "import time\n\nfrom tqdm.auto import tqdm\n\nfor _ in tqdm(range(3000)):\n    time.sleep(0.001)",
        )
    )
    out = runner.run_notebook(nb, "ci", progress=False)
    text = out.read_text()
    assert "3000/3000" in text  # the final state of the bar is kept ...
    assert text.count("/3000") < 20  # ... but not thousands of intermediate ticks


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_installed_packages_match_the_lock_file():
    """make setup installs with requirements.lock as constraints; a drifted .venv fails here."""
    locked = {}
    for line in (REPO_ROOT / "requirements.lock").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            locked[_canonical(name)] = version.strip()
    assert {"torch", "numpy", "pandas", "papermill", "safetensors"} <= set(locked)
    installed = {
        _canonical(d.metadata["Name"]): d.version
        for d in importlib.metadata.distributions()
        if _canonical(d.metadata["Name"]) not in {"magplus", "pip", "setuptools", "wheel"}
    }
    drift = {
        name: (locked.get(name, "not locked"), installed.get(name, "not installed"))
        for name in set(locked) | set(installed)
        if locked.get(name) != installed.get(name)
    }
    assert not drift, f"installed packages differ from requirements.lock (locked, installed): {drift}"


def test_two_runs_of_one_stage_on_one_results_folder_run_it_once(notebook, results, tmp_path):
    """A second run waits for the stage's lock, naming the holder, and skips what the holder just ran."""
    slow = notebook.read_text().replace(
        "# %%\nif fail:",
        "# %%\nimport time\ntime.sleep(4)\nwith open(Path(results_dir, 'count'), 'a') as f:\n"
        "    f.write('ran\\n')\n\n# %%\nif fail:",
    )
    notebook.write_text(slow)
    cmd = [sys.executable, "-m", "magplus_lib", "run-notebook", str(notebook), "--profile", "ci"]
    env = {k: v for k, v in os.environ.items() if k not in ("MPLCONFIGDIR", "IPYTHONDIR")}
    env["MAGPLUS_RESULTS"] = str(results)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    first = subprocess.Popen(cmd, cwd=elsewhere, env=env, **pipes)
    lock = results / "ci" / ".locks" / "nb_test.lock"
    deadline = time.monotonic() + 120  # a loaded machine can take many seconds to start python
    while not (lock.is_file() and lock.read_text().startswith("pid")):  # until the first run holds it
        assert time.monotonic() < deadline and first.poll() is None, "the first run never took the lock"
        time.sleep(0.05)
    second = subprocess.run(cmd, cwd=elsewhere, env=env, capture_output=True, text=True)
    out1, err1 = first.communicate()
    assert first.returncode == 0 and second.returncode == 0, err1 + second.stderr
    assert (results / "ci" / "count").read_text() == "ran\n"  # executed once
    assert f"being run by pid {first.pid}" in second.stderr
    assert "not rerunning" in second.stdout
    runs = json.loads((results / "ci" / "manifest.json").read_text())["runs"]
    assert len(runs) == 1
    # Started from another folder, the results still land under $MAGPLUS_RESULTS / the repository.
    assert not list(elsewhere.iterdir()) and runs[0]["outputs"]
    # matplotlib's and IPython's caches went under results/.cache, not into the home folder.
    assert (results / ".cache" / "ipython").is_dir() and (results / ".cache" / "matplotlib").is_dir()


def test_results_are_anchored_at_the_repository_root(monkeypatch, tmp_path):
    monkeypatch.delenv("MAGPLUS_RESULTS", raising=False)
    monkeypatch.chdir(tmp_path)
    assert results_dir("ci") == REPO_ROOT / "results" / "ci"
    params = runner.resolve_parameters(REPO_ROOT / "notebooks" / "00_data.py", "ci")
    assert params["results_dir"] == "results/ci"  # relative to the kernels' working directory
    mine = tmp_path / "mine.yaml"
    mine.write_text("name: my-study\nseed: 1\n")
    assert profile_name(mine) == "my-study" and load_profile(mine)["profile"] == "my-study"
    proc = subprocess.run(
        ["make", "-n", "data", f"PROFILE={mine}"], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert f"--out {REPO_ROOT}/results/my-study/params/00_data.json" in proc.stdout


def test_checkpoints_are_byte_identical_across_processes(tmp_path):
    """safetensors orders its metadata by a per-process hash; our writer sorts the header."""
    code = (
        "import sys, torch\nfrom magplus_lib.magnifier.model import MagUNet\n"
        "from magplus_lib.magnifier.weights import save_magnifier\n"
        "torch.manual_seed(0)\nsave_magnifier(MagUNet(width=4), sys.argv[1], {'direction': 'forward'})\n"
    )
    digests = set()
    for i, seed in enumerate(("1", "2", "3", "4")):
        out = tmp_path / f"m{i}.safetensors"
        env = {**os.environ, "PYTHONHASHSEED": seed}
        subprocess.run([sys.executable, "-c", code, str(out)], check=True, env=env)
        digests.add(cache.file_sha256(out))
        assert out.stat().st_mode & 0o777 != 0o600
    assert len(digests) == 1


def test_a_dead_runs_temp_files_are_removed(tmp_path):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    pid = int(dead.stdout)  # a process that has exited
    stale = tmp_path / "tables" / f".table1.csv.tmp{pid}.abcd1234.csv"
    live = tmp_path / "tables" / f".table2.csv.tmp{os.getpid()}.abcd1234.csv"
    stale.parent.mkdir()
    stale.write_text("half")
    live.write_text("being written")
    assert atomicio.remove_stale_temps(tmp_path) == [stale]
    assert not stale.exists() and live.exists()


@pytest.mark.cache
def test_two_make_papers_at_once_run_each_stage_once(tmp_path):
    counting = NOTEBOOK.replace(
        "# %%\nif fail:",
        "# %%\nimport time\ntime.sleep(2)\nwith open(Path(results_dir, 'count'), 'a') as f:\n"
        "    f.write('ran\\n')\n\n# %%\nif fail:",
    )
    repo = _fake_repo(tmp_path, counting)
    cmd = ["make", "--no-print-directory", "paper", "PROFILE=ci", f"MAGPLUS_RESULTS={tmp_path / 'res'}"]
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    runs = [subprocess.Popen(cmd, cwd=repo, **pipes) for _ in range(2)]
    outs = [p.communicate() for p in runs]
    assert [p.returncode for p in runs] == [0, 0], outs
    assert (tmp_path / "res" / "ci" / "count").read_text() == "ran\n"  # 00_data once, by one of them
    manifest = json.loads((tmp_path / "res" / "ci" / "manifest.json").read_text())["runs"]
    assert sorted(r["name"] for r in manifest) == ["00_data", "03_backbones"]


def test_a_sub_make_names_the_same_targets_without_magplus_results():
    """verify-cache asks a sub-make for stage files by name: both makes must spell them alike (an
    absolute results path), also when MAGPLUS_RESULTS is unset (fresh clones)."""
    env = {k: v for k, v in os.environ.items() if k != "MAGPLUS_RESULTS"}
    proc = subprocess.run(
        ["make", "-n", "--no-print-directory", "verify-cache", "PROFILE=ci"],
        cwd=REPO_ROOT, capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "No rule to make target" not in proc.stderr
    assert f"--out {REPO_ROOT}/results/ci/params/00_data.json" in proc.stdout


def test_unlisted_backbones_and_datasets_need_no_paths_and_user_paths_are_taken_from_where_typed(
    tmp_path, monkeypatch
):
    from magplus_lib.backbones.base import BackboneError
    from magplus_lib.backbones.registry import build_backbone

    prof = tmp_path / "p.yaml"
    prof.write_text(
        "seed: 0\ndatasets: [samm]\nbackbones_list: [fomm]\n"
        "data: {roots: {samm: '${S_X}', casme3: '${C_X}', generic: data/generic}}\n"
        "backbones: {eval: {}, fomm: {checkpoint: '${F_X}'},\n"
        "            fsrt: {repo: '${FS_X}', checkpoint: '${FS_X}/w'}}\n"
    )
    assert set(missing_variables(prof, {})) == {"S_X", "F_X"}  # not C_X (casme3), FS_X (fsrt)
    monkeypatch.chdir(tmp_path)
    loaded = load_profile(prof, env={"S_X": "../data/SAMM", "F_X": "/w/vox-cpk.pth.tar"})
    # a relative path the user gave is resolved where they typed it, not under results/<profile>
    assert loaded["data"]["roots"]["samm"] == str(tmp_path.parent / "data" / "SAMM")
    assert loaded["data"]["roots"]["generic"] == "data/generic"  # the profile's own folders stay relative
    assert loaded["backbones"]["fsrt"] == {"repo": "${FS_X}", "checkpoint": "${FS_X}/w"}
    with pytest.raises(BackboneError, match="backbone 'fsrt' needs FS_X set"):
        build_backbone("fsrt", loaded["backbones"])
    full = missing_variables("full", {})
    assert {"FSRT_REPO", "SAMM_ROOT", "FOMM_CHECKPOINT"} <= set(full)  # listed there, so required


def test_a_profile_extends_another_with_only_its_own_settings_changed(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text(
        "name: base\nseed: 0\nimage_size: 512\ndatasets: [samm]\npretrain: {steps: 50000, lr: 0.0003}\n"
        "data: {roots: {samm: '${S_X}'}}\nenv_help: {S_X: 'the SAMM folder'}\n"
    )
    child = tmp_path / "small.yaml"
    child.write_text("extends: base.yaml\nimage_size: 64\npretrain: {steps: 2}\n")
    loaded = load_profile(child, env={"S_X": "/s"})
    assert loaded["profile"] == "small" and loaded["image_size"] == 64 and loaded["seed"] == 0
    assert loaded["pretrain"] == {"steps": 2, "lr": 0.0003}  # merged key by key
    assert set(missing_variables(child, {})) == {"S_X"}  # the parent's paths are still required
    loop = tmp_path / "loop.yaml"
    loop.write_text("extends: loop.yaml\n")
    with pytest.raises(ProfileError, match="loops back"):
        load_profile(loop, env={})
    smoke = load_profile("smoke-full", env=dict.fromkeys(missing_variables("smoke-full", {}), "/x"))
    full = load_profile("full", env=dict.fromkeys(missing_variables("full", {}), "/x"))
    assert smoke["profile"] == "smoke-full" and smoke["backbones_list"] == full["backbones_list"]
    assert smoke["flow"] == full["flow"] and smoke["magnifier"]["width"] == full["magnifier"]["width"]


def test_check_run_fails_on_a_missing_or_unfinished_stage_and_shows_the_warnings(tmp_path, monkeypatch):
    from magplus_lib.harness.runner import check_run

    monkeypatch.setenv("MAGPLUS_RESULTS", str(tmp_path))
    out = tmp_path / "smoke-full"
    (out / "executed").mkdir(parents=True)
    cell = {
        "cell_type": "code",
        "outputs": [{"text": "ok\nWARNING: no macro corpus: measured on test clips\n"}],
    }
    (out / "executed" / "00_data.ipynb").write_text(json.dumps({"cells": [cell]}))
    (out / "executed" / "01_pretrain-forward.ipynb").write_text(json.dumps({"cells": []}))
    runs = [{"name": "00_data", "status": "ok"}, {"name": "01_pretrain-forward", "status": "failed"}]
    (out / "manifest.json").write_text(json.dumps({"runs": runs}))
    lines = check_run("smoke-full", ["00_data", "01_pretrain-forward", "03_backbones"])
    assert lines == [
        f"01_pretrain-forward: the manifest {out / 'manifest.json'} records no finished run",
        f"03_backbones: no executed notebook {out / 'executed' / '03_backbones.ipynb'}",
        "warning: 00_data: WARNING: no macro corpus: measured on test clips",
    ]
    assert check_run("smoke-full", ["00_data"]) == [lines[-1]]
    # what a stage's check writes can be required too: a check skipped without a word is caught
    (out / "metrics").mkdir()
    (out / "metrics" / "magnifier_magplus_samm.csv").write_text("alpha\n")
    assert check_run("smoke-full", ["00_data"], ["metrics/magnifier_*_samm.csv"]) == [lines[-1]]
    missing = check_run("smoke-full", ["00_data"], ["metrics/magnifier_*_casme3.csv"])
    assert (
        missing[0]
        == f"{out / 'metrics/magnifier_*_casme3.csv'}: not written (a check that should have run did not)"
    )
