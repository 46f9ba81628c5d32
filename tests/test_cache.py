"""The restore-or-retrain cache (magplus_lib/harness/cache.py) on small fabricated stages: keys, restore with
sha256 verification, stale entries, from-scratch runs, re-keying by fingerprint."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from magplus_lib.harness import cache, provenance
from magplus_lib.harness.runner import resolve_parameters


@pytest.fixture
def env(tmp_path, monkeypatch):
    """A cache root, a results folder with one trained stage's files, and that stage's key parts."""
    monkeypatch.setenv("MAGPLUS_CACHE", str(tmp_path / "cache"))
    results = tmp_path / "results" / "p"
    (results / "checkpoints").mkdir(parents=True)
    (results / "logs").mkdir()
    save_file({"w": torch.arange(6.0).reshape(2, 3)}, str(results / "checkpoints" / "net.safetensors"))
    (results / "checkpoints" / "net.json").write_text('{"step": 3}\n')
    (results / "logs" / "net.csv").write_text("step,loss\n1,0.5\n")
    (results / "checkpoints" / "net.optim.safetensors").write_bytes(b"optimizer state: never cached")
    notebook = tmp_path / "nb.py"
    notebook.write_text("# notebook\n")
    module = tmp_path / "mod.py"
    module.write_text("X = 1\n")
    params = {"train": {"lr": 0.1, "steps": 5}, "results_dir": "x"}
    parts = cache.key_parts(notebook, params, [module], {}, {})
    return results, parts, notebook, module


def _invocation(stems=("net",)):
    return {"notebook": "nb.py", "tag": None, "overrides": {}, "after": [], "stems": list(stems)}


def _cache_stage(results, parts, fingerprint="f" * 64):
    files = [r for r in cache.stage_files(["net"], results) if (results / r).is_file()]
    trained = {"commit": "abc", "seconds": 12.0}
    fp = {"sha256": fingerprint}
    return cache.write_entry("p", "stage", results, files, parts, _invocation(), trained, fp)


def test_key_depends_on_each_part_and_names_the_change(env):
    results, parts, notebook, module = env
    assert "results_dir" not in parts["params"]  # a location is not a setting
    other = json.loads(json.dumps(parts))
    other["params"]["train"]["lr"] = 0.2
    assert cache.key_of(other) != cache.key_of(parts)
    assert cache.describe_change(parts, other) == ["params: train.lr"]
    module.write_text("X = 2\n")
    edited = cache.key_parts(notebook, {"train": {"lr": 0.1, "steps": 5}}, [module], {}, {})
    assert cache.describe_change(parts, edited) == [f"code: {cache.os.path.relpath(module, cache.REPO_ROOT)}"]
    elsewhere = {"train": {"lr": 0.1, "steps": 5}, "results_dir": "y"}
    moved = cache.key_parts(notebook, elsewhere, [module], {}, {})
    assert cache.key_of(moved) == cache.key_of(edited)
    upstream = cache.key_parts(notebook, {"train": {"lr": 0.1, "steps": 5}}, [module], {"up": "k2"}, {})
    assert cache.describe_change(edited, upstream) == ["upstream: up"]


def test_entry_holds_weights_side_file_and_log_but_no_optimizer_state(env):
    results, parts, *_ = env
    entry = _cache_stage(results, parts)
    prov = json.loads((entry / "provenance.json").read_text())
    assert sorted(prov["files"]) == ["checkpoints/net.json", "checkpoints/net.safetensors", "logs/net.csv"]
    assert prov["key"] == cache.key_of(parts) and prov["trained"]["seconds"] == 12.0
    assert not list(entry.rglob("*.optim.safetensors"))
    assert not list(entry.parent.glob(".stage.*"))  # the temporary folder was renamed, not left behind


def test_restore_copies_verified_files_and_refuses_a_flipped_byte(env, tmp_path):
    results, parts, *_ = env
    entry = _cache_stage(results, parts)
    fresh = tmp_path / "fresh" / "p"
    sc = cache.prepare("p", "stage", fresh, "restore", parts, _invocation())
    assert sc.status == "restored" and "trained at abc in 12 s" in sc.message
    for rel in ("checkpoints/net.safetensors", "checkpoints/net.json", "logs/net.csv"):
        assert (fresh / rel).read_bytes() == (results / rel).read_bytes()
    assert json.loads(cache.state_path(fresh, "stage").read_text())["origin"] == "restored"

    blob = entry / "checkpoints" / "net.safetensors"
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0x01
    blob.write_bytes(bytes(data))
    other = tmp_path / "other" / "p"
    with pytest.raises(cache.CacheError, match=r"net\.safetensors does not match its recorded sha256"):
        cache.prepare("p", "stage", other, "restore", parts, _invocation())
    assert not (other / "checkpoints" / "net.safetensors").exists()  # never loaded, never copied
    blob.write_bytes(bytes(data[:-10]))
    with pytest.raises(cache.CacheError, match="truncated"):
        cache.prepare("p", "stage", other, "restore", parts, _invocation())


def test_stale_entry_says_what_changed_and_leaves_training_to_the_stage(env, tmp_path):
    results, parts, *_ = env
    _cache_stage(results, parts)
    changed = json.loads(json.dumps(parts))
    changed["params"]["train"]["lr"] = 0.3
    fresh = tmp_path / "fresh" / "p"
    sc = cache.prepare("p", "stage", fresh, "restore", changed, _invocation())
    assert sc.status == "executed"
    assert "params: train.lr" in sc.message and "12 s" in sc.message
    assert not (fresh / "checkpoints").exists()


def test_outputs_of_another_key_are_removed_before_the_stage_runs(env):
    results, parts, *_ = env
    sc = cache.prepare("p", "stage", results, "off", parts, _invocation())
    cache.finish(sc, 1.0, "cmd", None)  # results/ now records these files under this key
    assert (results / "checkpoints" / "net.safetensors").is_file()
    same = cache.prepare("p", "stage", results, "off", parts, _invocation())
    assert same.status == "executed" and (results / "checkpoints" / "net.safetensors").is_file()
    changed = json.loads(json.dumps(parts))
    changed["params"]["train"]["steps"] = 9
    cache.prepare("p", "stage", results, "off", changed, _invocation())
    for name in ("net.safetensors", "net.json", "net.optim.safetensors"):
        assert not (results / "checkpoints" / name).exists(), name


def test_from_scratch_removes_what_a_restore_put_there(env, tmp_path):
    results, parts, *_ = env
    _cache_stage(results, parts)
    fresh = tmp_path / "fresh" / "p"
    sc = cache.prepare("p", "stage", fresh, "restore", parts, _invocation())
    cache.finish(sc, 0.5, "cmd", None)
    assert (fresh / "checkpoints" / "net.safetensors").is_file()
    sc = cache.prepare("p", "stage", fresh, "scratch", parts, _invocation())
    assert sc.status == "executed" and not (fresh / "checkpoints" / "net.safetensors").exists()


def test_cache_written_after_a_plain_run_keeps_that_run_as_provenance(env):
    results, parts, *_ = env
    sc = cache.prepare("p", "stage", results, "restore", parts, _invocation())  # no entry: trains
    cache.finish(sc, 300.0, "make paper", None)
    sc = cache.prepare("p", "stage", results, "write", parts, _invocation())
    assert (results / "checkpoints" / "net.safetensors").is_file()  # trained here: reused, not removed
    cache.finish(sc, 4.0, "make cache", lambda trained=False: "d" * 64)
    trained = cache.read_provenance("p", "stage")["trained"]
    assert trained["seconds"] == 300.0 and trained["command"] == "make paper"
    sc = cache.prepare("p", "stage", results, "scratch", parts, _invocation())
    assert not (results / "checkpoints" / "net.safetensors").exists()  # from scratch: trained again


def test_rekey_only_when_the_fingerprint_reproduces_and_no_run_length_changed(env, tmp_path):
    results, parts, notebook, module = env
    _cache_stage(results, parts, fingerprint="a" * 64)
    module.write_text("X = 1  # a comment: same numbers\n")
    code_edit = cache.key_parts(notebook, {"train": {"lr": 0.1, "steps": 5}}, [module], {}, {})

    fresh = tmp_path / "fresh" / "p"
    sc = cache.prepare("p", "stage", fresh, "rekey", code_edit, _invocation(), lambda: "b" * 64)
    assert sc.status == "executed" and "fingerprint differs" in sc.message
    assert cache.read_provenance("p", "stage")["key"] == cache.key_of(parts)

    sc = cache.prepare("p", "stage", fresh, "rekey", code_edit, _invocation(), lambda: "a" * 64)
    assert sc.status == "rekeyed" and (fresh / "checkpoints" / "net.safetensors").is_file()
    prov = cache.read_provenance("p", "stage")
    assert prov["key"] == cache.key_of(code_edit)
    assert prov["rekeyed"][-1]["old_key"] == cache.key_of(parts)
    assert prov["rekeyed"][-1]["changed"][0].startswith("code: ")

    # A changed setting is judged by the replay: an evaluation setting leaves the first steps alone...
    eval_edit = json.loads(json.dumps(code_edit))
    eval_edit["params"]["eval"] = {"clips": 8}
    sc = cache.prepare(
        "p", "stage", tmp_path / "third" / "p", "rekey", eval_edit, _invocation(), lambda: "a" * 64
    )
    assert sc.status == "rekeyed"
    assert cache.read_provenance("p", "stage")["rekeyed"][-1]["changed"] == ["params: eval"]
    # ... a training setting changes them (the replay differs and the stage retrains) ...
    lr_edit = json.loads(json.dumps(eval_edit))
    lr_edit["params"]["train"]["lr"] = 0.5
    sc = cache.prepare(
        "p", "stage", tmp_path / "fourth" / "p", "rekey", lr_edit, _invocation(), lambda: "c" * 64
    )
    assert sc.status == "executed" and "fingerprint differs" in sc.message

    # ... and a run length is invisible to a 24-step replay, so it always retrains.
    steps_edit = json.loads(json.dumps(eval_edit))
    steps_edit["params"]["train"]["steps"] = 50

    def never():
        raise AssertionError("a run-length change must retrain, not replay")

    sc = cache.prepare("p", "stage", tmp_path / "fifth" / "p", "rekey", steps_edit, _invocation(), never)
    assert sc.status == "executed" and "run length changed (train.steps)" in sc.message


def test_changed_settings_lists_leaf_paths():
    old = {"train": {"lr": 0.1, "steps": 5}, "eval": {"n": 1}}
    new = {"train": {"lr": 0.1, "steps": 6}, "eval": {"n": 1, "m": 2}, "extra": 3}
    assert cache.changed_settings(old, new) == ["eval.m", "extra", "train.steps"]
    assert cache.run_length_changed(old, new) == ["train.steps"]


def test_write_mode_caches_what_the_stage_trained(env, tmp_path):
    results, parts, *_ = env
    sc = cache.prepare("p", "stage", results, "write", parts, _invocation())
    assert not (results / "checkpoints" / "net.safetensors").exists()  # unknown origin: train for real
    save_file({"w": torch.ones(2)}, str(results / "checkpoints" / "net.safetensors"))
    (results / "checkpoints" / "net.json").write_text("{}\n")
    cache.finish(sc, 42.0, "make cache", lambda trained=False: "c" * 64)
    prov = cache.read_provenance("p", "stage")
    assert prov["trained"]["seconds"] == 42.0 and prov["trained"]["command"] == "make cache"
    assert prov["fingerprint"]["sha256"] == "c" * 64 and prov["invocation"]["stems"] == ["net"]
    assert sorted(prov["files"]) == ["checkpoints/net.json", "checkpoints/net.safetensors"]


def test_glob_stems_expand_to_the_checkpoints_present(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    for name in ("backbone_a", "backbone_b", "backbone_a.optim", "other"):
        (tmp_path / "checkpoints" / f"{name}.safetensors").write_bytes(b"")
    assert cache.expand_stems(["backbone_*", "x"], tmp_path) == ["backbone_a", "backbone_b", "x"]


def test_capped_steps_caps_every_run_length_and_nothing_else():
    params = {"pretrain": {"steps": 18000, "inverse_steps": 10, "lr": 1e-3}, "b": [{"steps": 700}], "seed": 3}
    assert cache.capped_steps(params, 24) == {
        "pretrain": {"steps": 24, "inverse_steps": 10, "lr": 1e-3},
        "b": [{"steps": 24}],
        "seed": 3,
    }


def test_weights_digest_reads_tensors_not_header_bytes(tmp_path):
    for d in "abc":
        (tmp_path / d).mkdir()
    a, b, c = (tmp_path / d / "net.safetensors" for d in "abc")  # the same checkpoint name
    save_file({"x": torch.ones(3), "y": torch.zeros(2)}, str(a), metadata={"k1": "1", "k2": "2"})
    save_file({"y": torch.zeros(2), "x": torch.ones(3)}, str(b), metadata={"k2": "2", "k1": "1", "k3": "3"})
    save_file({"x": torch.ones(3), "y": torch.tensor([0.0, 1e-7])}, str(c))
    assert cache.weights_digest([a]) == cache.weights_digest([b])
    assert cache.weights_digest([a]) != cache.weights_digest([c])


def test_dotted_override_changes_one_setting_of_a_section(tmp_path):
    nb = tmp_path / "nb.py"
    nb.write_text(
        '# %% tags=["parameters"]\nprofile = "ci"\nresults_dir = "r"\npretrain = {}\nseed = 0\n# %%\nx = 1\n'
    )
    base = resolve_parameters(nb, "ci")["pretrain"]
    params = resolve_parameters(nb, "ci", {"pretrain.steps": 2})
    assert params["pretrain"] == {**base, "steps": 2}
    with pytest.raises(Exception, match="unknown parameter 'nope'"):
        resolve_parameters(nb, "ci", {"nope.steps": 2})
    with pytest.raises(Exception, match="seed is not a section"):
        resolve_parameters(nb, "ci", {"seed.x": 2})
    # make's SET changes the profile: a notebook that does not read the section is unaffected
    assert resolve_parameters(nb, "ci", settings={"pretrain.steps": 3})["pretrain"] == {**base, "steps": 3}
    assert resolve_parameters(nb, "ci", settings={"backbones.train.fomm.steps": 3}) == resolve_parameters(
        nb, "ci"
    )
    with pytest.raises(Exception, match="unknown parameter 'nope' in nope.steps \\(profile ci has"):
        resolve_parameters(nb, "ci", settings={"nope.steps": 2})


def test_unknown_mode_is_refused(env):
    results, parts, *_ = env
    with pytest.raises(ValueError, match="cache mode"):
        cache.prepare("p", "stage", results, "sometimes", parts, _invocation())


def test_extend_restores_a_stale_entry_only_when_just_its_settings_changed(env, tmp_path):
    results, parts, notebook, module = env
    _cache_stage(results, parts)
    longer = json.loads(json.dumps(parts))
    longer["params"]["train"]["phase"] = {"steps": 7}
    fresh = tmp_path / "fresh" / "p"
    sc = cache.prepare("p", "stage", fresh, "extend", longer, _invocation())
    # the old entry's files are there for the trainers to reuse or continue
    assert sc.status == "executed" and "extending stage" in sc.message and "train.phase" in sc.message
    assert (fresh / "checkpoints" / "net.safetensors").is_file()
    save_file({"w": torch.full((2, 3), 7.0)}, str(fresh / "checkpoints" / "net.safetensors"))  # continued
    cache.finish(sc, 5.0, "make cache-extend", lambda trained=False: "e" * 64)
    prov = cache.read_provenance("p", "stage")
    assert prov["key"] == cache.key_of(longer) and prov["trained"]["seconds"] == 5.0
    assert prov["trained"]["extends"]["key"] == cache.key_of(parts)
    assert prov["trained"]["extends"]["trained"]["seconds"] == 12.0  # the first part of its training
    # code changed too: the trainers' checks cover settings, not code, so nothing is extended
    module.write_text("X = 2\n")
    other = cache.key_parts(
        notebook, {"train": {"lr": 0.1, "steps": 5, "phase": {"steps": 9}}}, [module], {}, {}
    )
    with pytest.raises(cache.CacheError, match=r"cannot extend stage: its code changed.*cache-rekey"):
        cache.prepare("p", "stage", tmp_path / "other" / "p", "extend", other, _invocation())


def test_a_fingerprint_compares_only_on_the_cpu_model_that_replayed_it(env, tmp_path, monkeypatch):
    """An entry trained on CPU A cannot be re-keyed on CPU B until B attests it under the entry's key."""
    results, parts, notebook, module = env
    monkeypatch.setattr(provenance, "machine", lambda: {"cpu": "CPU A", "cores": 2, "platform": "x"})
    sc = cache.prepare("p", "stage", results, "write", parts, _invocation())
    save_file({"w": torch.ones(2)}, str(results / "checkpoints" / "net.safetensors"))  # "trained"
    cache.finish(sc, 1.0, "make cache", lambda trained=False: "a" * 64)
    assert cache.read_provenance("p", "stage")["fingerprint"]["cpu"] == "CPU A"
    module.write_text("X = 1  # a comment: same numbers\n")
    code_edit = cache.key_parts(notebook, {"train": {"lr": 0.1, "steps": 5}}, [module], {}, {})

    def never():
        raise AssertionError("no replay: there is nothing to compare it with on this CPU")

    monkeypatch.setattr(provenance, "machine", lambda: {"cpu": "CPU B", "cores": 2, "platform": "x"})
    sc = cache.prepare("p", "stage", tmp_path / "b1" / "p", "rekey", code_edit, _invocation(), never)
    assert (
        sc.status == "executed" and "no fingerprint of it was replayed on this CPU model (CPU B" in sc.message
    )
    assert "fingerprints from CPU A" in sc.message and "make cache-attest" in sc.message

    # Attesting needs the entry's own key: under the edited code it is refused, naming the commit to use.
    refused = (
        r"cannot attest stage: this checkout's key differs from the entry's \(code: .*check out the commit"
    )
    with pytest.raises(cache.CacheError, match=refused):
        cache.prepare("p", "stage", tmp_path / "b2" / "p", "attest", code_edit, _invocation(), never)
    module.write_text("X = 1\n")
    sc = cache.prepare("p", "stage", tmp_path / "b3" / "p", "attest", parts, _invocation(), lambda: "b" * 64)
    assert sc.status == "restored" and "attested its fingerprint on CPU B: bbbbbbbb" in sc.message
    prov = cache.read_provenance("p", "stage")
    assert [(a["cpu"], a["sha256"]) for a in prov["attested"]] == [("CPU B", "b" * 64)]
    assert prov["key"] == cache.key_of(parts) and prov["fingerprint"]["sha256"] == "a" * 64
    sc = cache.prepare("p", "stage", tmp_path / "b4" / "p", "attest", parts, _invocation(), never)
    assert "already has a fingerprint replayed on CPU B" in sc.message  # attesting twice replays nothing

    # Now B's replay under the edited code is compared with B's own record, not A's.
    module.write_text("X = 1  # a comment: same numbers\n")
    sc = cache.prepare(
        "p", "stage", tmp_path / "b5" / "p", "rekey", code_edit, _invocation(), lambda: "a" * 64
    )
    assert sc.status == "executed" and "fingerprint differs" in sc.message
    sc = cache.prepare(
        "p", "stage", tmp_path / "b6" / "p", "rekey", code_edit, _invocation(), lambda: "b" * 64
    )
    assert sc.status == "rekeyed" and cache.read_provenance("p", "stage")["key"] == cache.key_of(code_edit)
    # ... and A still compares with its own fingerprint after B's re-key.
    monkeypatch.setattr(provenance, "machine", lambda: {"cpu": "CPU A", "cores": 2, "platform": "x"})
    assert cache.recorded_fingerprint(cache.read_provenance("p", "stage"), "CPU A") == "a" * 64
