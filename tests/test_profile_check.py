"""`make check-profile` on the full profile: every unusable path the user supplies is listed at once,
each through the loader a stage would use, before any stage runs."""

from __future__ import annotations

import subprocess
import sys

import torch

from magplus_lib.harness.profile_check import problems, uses_paths
from magplus_lib.harness.profiles import REPO_ROOT


def _env(tmp_path) -> dict[str, str]:
    (tmp_path / "no-sheet").mkdir()
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "notes.txt").write_text("no video here")
    (tmp_path / "macro" / "alice" / "smile").mkdir(parents=True)  # one identity: no cross-identity transfer
    (tmp_path / "macro" / "alice" / "smile" / "1.png").write_bytes(b"")
    raft = tmp_path / "raft_large_C_T_V1-22a6c225.pth"
    torch.save({"fnet.conv1.weight": torch.zeros(1)}, raft)  # a state dict, of the wrong model
    whole = tmp_path / "whole.pth"
    torch.save({"generator": {}, "kp_detector": {}}, whole)
    truncated = tmp_path / "vox-cpk.pth.tar"
    truncated.write_bytes(whole.read_bytes()[:100])  # a download cut short
    return {
        "SAMM_ROOT": "no-sheet",  # relative: taken from the working directory
        "CASME3_ROOT": str(tmp_path / "missing"),
        "GENERIC_VIDEOS": str(tmp_path / "videos"),
        "MACRO_VIDEOS": str(tmp_path / "macro"),
        "RAFT_WEIGHTS": str(raft),
        "FOMM_CHECKPOINT": str(truncated),
        "FSRT_REPO": str(tmp_path / "fsrt"),
        "FSRT_CHECKPOINT": str(tmp_path / "fsrt.pth"),
        "METAPORTRAIT_REPO": str(tmp_path / "mp"),
        "METAPORTRAIT_CHECKPOINT": str(tmp_path / "mp.pth"),
        "METAPORTRAIT_LANDMARK_CMD": "echo {frames}",
        "EMOPORTRAITS_REPO": str(tmp_path / "emo"),
        "DEDICATED_CLIPS": str(tmp_path / "dedicated"),
    }


def test_every_unusable_path_of_the_full_profile_is_listed_at_once(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    env = _env(tmp_path)
    found = problems("full", env=env)
    text = "\n".join(found)
    assert len(found) == 10, text
    assert f"data.roots.samm: {tmp_path / 'no-sheet'}: no SAMM spreadsheet" in text
    assert f"data.roots.casme3: folder {tmp_path / 'missing'} does not exist" in text
    assert "data.generic_source:" in text and "holds no video" in text
    assert f"data.roots.macro_videos: macro videos: {tmp_path / 'macro'} holds one identity" in text
    assert "flow.raft_weights: RAFT weights" in text and "does not match the model" in text
    assert "backbones.fomm:" in text and "vox-cpk.pth.tar: cannot be read" in text
    for name, var in (("fsrt", "FSRT_REPO"), ("metaportrait", "METAPORTRAIT_REPO"), ("emoportraits", "")):
        assert f"backbones.{name}: {name}: repository folder" in text and var in text
    assert "generation.dedicated.clips_folder" in text
    assert max(len(line) for line in found) < 600  # each names its file briefly


def test_check_profile_command_stops_with_the_list_and_a_profile_without_paths_passes(tmp_path):
    env = {**_env(tmp_path), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-m", "magplus_lib", "check-profile", "full"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 2 and "10 problem(s)" in proc.stderr and "backbones.fsrt" in proc.stderr
    assert not uses_paths("default") and problems("default", env={}) == []
