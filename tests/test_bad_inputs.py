"""Bad input, table-driven: each case runs a command (magnify, params, check-profile, a loader, make) on
files fabricated here and asserts its exit code, its one-line message and that no input file changed.

A case is (id, command, argv, expected exit code, regex the message must match). `{w}` in an argument
is the folder of fabricated inputs, `{o}` a fresh folder for that case's outputs.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import cv2
import numpy as np
import openpyxl
import pytest
import torch
from safetensors.torch import save_file

from magplus_lib import __main__ as cli
from magplus_lib.data.clips import DataError, list_frames
from magplus_lib.data.samm import load_samm
from magplus_lib.harness.profiles import REPO_ROOT
from magplus_lib.magnifier import cli as magnify_cli
from magplus_lib.magnifier.model import MagUNet
from magplus_lib.magnifier.weights import save_magnifier

H, W = 20, 24
CUDA = torch.cuda.is_available()


def _png(path: Path, seed: int, size=(H, W)) -> None:
    rng = np.random.default_rng(seed)
    cv2.imwrite(str(path), rng.integers(0, 256, (*size, 3), dtype=np.uint8))


def _video(path: Path, frames: int) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (W, H))
    rng = np.random.default_rng(0)
    for _ in range(frames):
        writer.write(rng.integers(0, 256, (H, W, 3), dtype=np.uint8))
    writer.release()


def _samm(root: Path, columns: list[str]) -> None:
    """A one-clip SAMM tree: frames in root/SAMM/006/006_1_2, the spreadsheet in root/SAMM."""
    clip = root / "SAMM" / "006" / "006_1_2"
    clip.mkdir(parents=True)
    for n in range(10, 14):
        _png(clip / f"006_{n:05d}.jpg", n)
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "FACS_Movement_Only"
    ws.append(columns)
    ws.append(["006", "006_1_2", 10, 11, 13, "AU12", "Happiness", 1])
    wb.save(root / "SAMM" / "SAMM_Micro_FACS_Codes_v2.xlsx")


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    w = tmp_path_factory.mktemp("inputs")
    torch.manual_seed(0)
    side = {"training": {"config": {"alpha_min": 1.0, "alpha_max": 16.0}}}
    save_magnifier(MagUNet(width=4), w / "magplus.safetensors", {"direction": "forward", **side})
    save_file({"down_layers.0.double_conv.0.weight": torch.zeros(4, 9, 3, 3)}, str(w / "wrong.safetensors"))
    good = (w / "magplus.safetensors").read_bytes()
    (w / "truncated.safetensors").write_bytes(good[: len(good) // 2])
    (w / "text.safetensors").write_text("not a checkpoint\n")
    torch.save({"weights": torch.zeros(2)}, w / "other.pth")
    (w / "ckpt_folder").mkdir()
    (w / "clip").mkdir()
    for i in range(4):
        _png(w / "clip" / f"{i:03d}.png", i)
    (w / "empty").mkdir()
    (w / "corrupt").mkdir()
    _png(w / "corrupt" / "000.png", 0)
    (w / "corrupt" / "001.png").write_bytes(b"broken")
    (w / "mixed").mkdir()
    _png(w / "mixed" / "000.png", 0)
    _png(w / "mixed" / "001.png", 1, size=(H + 2, W))
    _video(w / "clip.avi", 10)
    data = (w / "clip.avi").read_bytes()
    (w / "truncated.avi").write_bytes(data[: len(data) // 2])
    (w / "text.avi").write_text("not a video\n")
    np.save(w / "mask_wrong.npy", np.ones((H + 1, W), np.float32))
    (w / "a_file").write_text("x\n")
    (w / "full").mkdir()
    (w / "full" / "keep.txt").write_text("keep\n")
    _video(w / "existing.mp4", 2)
    (w / "profiles").mkdir()
    (w / "profiles" / "ci.yaml").write_text("seed: 0\n")  # a user profile taking a shipped name
    (w / "profiles" / "named.yaml").write_text("name: default\nseed: 0\n")
    (w / "profiles" / "bad.yaml").write_text("seed: [0\n")
    _samm(w / "samm_ok", ["Subject", "Filename", "Onset Frame", "Apex Frame", "Offset Frame",
                          "Action Units", "Estimated Emotion", "Objective Classes"])  # fmt: skip
    _samm(w / "samm_cols", ["Subject", "Filename", "Onset", "Apex Frame", "Offset Frame", "Emotion"])
    return w


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


MAG = ["--checkpoint", "{w}/magplus.safetensors", "--alpha", "3", "--device", "cpu"]
IO = ["--input", "{w}/clip", "--output", "{o}/out"]

CASES = [
    # ---- magnify: the output location
    ("out-is-input-folder", "magnify", [*MAG, "--input", "{w}/clip", "--output", "{w}/clip"], 2,
     r"is or lies inside the input"),
    ("out-inside-input", "magnify", [*MAG, "--input", "{w}/clip", "--output", "{w}/clip/sub"], 2,
     r"is or lies inside the input"),
    ("out-is-input-video", "magnify", [*MAG, "--input", "{w}/clip.avi", "--output", "{w}/clip.avi"], 2,
     r"is or lies inside the input"),
    ("out-contains-input", "magnify", [*MAG, "--input", "{w}/clip", "--output", "{w}", "--overwrite"], 2,
     r"contains the input"),
    ("out-non-empty-folder", "magnify", [*MAG, "--input", "{w}/clip", "--output", "{w}/full"], 2,
     r"exists \(a non-empty folder\); pass --overwrite"),
    ("out-existing-video", "magnify", [*MAG, "--input", "{w}/clip", "--output", "{w}/existing.mp4"], 2,
     r"exists \(a file\); pass --overwrite"),
    ("out-unknown-container", "magnify", [*MAG, "--input", "{w}/clip", "--output", "{o}/o.xyz"], 2,
     r"unknown container '\.xyz'"),
    ("out-image-name", "magnify", [*MAG, "--input", "{w}/clip", "--output", "{o}/o.png"], 2,
     r"an image file name"),
    ("out-is-a-file", "magnify", [*MAG, "--input", "{w}/clip", "--output", "{w}/a_file"], 2,
     r"exists and is not a folder"),
    ("out-under-a-file", "magnify", [*MAG, "--input", "{w}/clip", "--output", "{w}/a_file/out"], 2,
     r"a_file is a file, not a folder"),
    ("out-folder-for-video", "magnify", [*MAG, "--input", "{w}/clip", "--output", "{w}/full.mp4x"], 2,
     r"unknown container"),
    # ---- magnify: arguments
    ("batch-negative", "magnify", [*MAG, *IO, "--batch-size", "-1"], 2, r"--batch-size must be at least 1"),
    ("batch-zero", "magnify", [*MAG, *IO, "--batch-size", "0"], 2, r"--batch-size must be at least 1"),
    ("tile-small", "magnify", [*MAG, *IO, "--tile", "10"], 2, r"--tile must be 0"),
    ("tile-negative", "magnify", [*MAG, *IO, "--tile", "-5"], 2, r"--tile must be 0"),
    ("device-unknown", "magnify", [*MAG, *IO, "--device", "tpu"], 2, r"--device 'tpu': expected"),
    ("alpha-zero", "magnify", [*MAG, *IO, "--alpha", "0"], 2, r"--alpha must be a positive number"),
    ("alpha-negative", "magnify", [*MAG, *IO, "--alpha", "-2"], 2, r"--alpha must be a positive number"),
    ("alpha-nan", "magnify", [*MAG, *IO, "--alpha", "nan"], 2, r"--alpha must be a positive number"),
    ("alpha-text", "magnify", [*MAG, *IO, "--alpha", "abc"], 2, r"invalid float value: 'abc'"),
    ("reference-outside", "magnify", [*MAG, *IO, "--reference", "9"], 2, r"reference frame 9 is outside"),
    # ---- magnify: the checkpoint
    ("ckpt-missing", "magnify", [*IO, "--alpha", "2", "--checkpoint", "{w}/nope.safetensors"], 2,
     r"nope\.safetensors: file not found"),
    ("ckpt-folder", "magnify", [*IO, "--alpha", "2", "--checkpoint", "{w}/ckpt_folder"], 2,
     r"ckpt_folder is a folder, not a checkpoint file"),
    ("ckpt-pth", "magnify", [*IO, "--alpha", "2", "--checkpoint", "{w}/other.pth"], 2,
     r"other\.pth is a PyTorch pickle \(\.pth\) but not FlowMag's"),
    ("ckpt-text", "magnify", [*IO, "--alpha", "2", "--checkpoint", "{w}/text.safetensors"], 2,
     r"text\.safetensors is not a MagPlus/DeMagPlus safetensors checkpoint"),
    ("ckpt-truncated", "magnify", [*IO, "--alpha", "2", "--checkpoint", "{w}/truncated.safetensors"], 2,
     r"truncated\.safetensors is not a MagPlus/DeMagPlus safetensors checkpoint"),
    ("ckpt-wrong-shape", "magnify", [*IO, "--alpha", "2", "--checkpoint", "{w}/wrong.safetensors"], 2,
     r"wrong\.safetensors: does not match the model"),
    # ---- magnify: the input
    ("input-missing", "magnify", [*MAG, "--input", "{w}/nope", "--output", "{o}/out"], 2,
     r"--input .*nope: not found"),
    ("input-empty", "magnify", [*MAG, "--input", "{w}/empty", "--output", "{o}/out"], 2,
     r"holds no image frames"),
    ("input-corrupt-frame", "magnify", [*MAG, "--input", "{w}/corrupt", "--output", "{o}/out"], 2,
     r"cannot read frame .*001\.png"),
    ("input-mixed-sizes", "magnify", [*MAG, "--input", "{w}/mixed", "--output", "{o}/out"], 2,
     r"001\.png is 24x22 .* same size"),
    ("input-not-a-video", "magnify", [*MAG, "--input", "{w}/text.avi", "--output", "{o}/out"], 2,
     r"cannot open video .*text\.avi"),
    ("mask-missing", "magnify", [*MAG, *IO, "--mask", "{w}/nope.npy"], 2, r"--mask .*nope\.npy: not found"),
    ("mask-wrong-size", "magnify", [*MAG, *IO, "--mask", "{w}/mask_wrong.npy"], 2,
     r"mask .*mask_wrong\.npy is 24x21, frames are 24x20"),
    # ---- magnify: runs, with a warning
    ("input-truncated-video", "magnify", [*MAG, "--input", "{w}/truncated.avi", "--output", "{o}/out"], 0,
     r"warning: video .*truncated\.avi announces 10 frames but only \d+ could be read"),
    ("alpha-outside-training", "magnify", [*MAG, *IO, "--alpha", "1000"], 0,
     r"warning: alpha 1000 is outside the range 1-16"),
    ("attenuate-with-magplus", "magnify", [*MAG, *IO, "--alpha", "0.5"], 0,
     r"warning: magplus\.safetensors is a MagPlus \(forward\) checkpoint"),
    # ---- params / run-notebook / check-profile
    ("p-whole-section-typo", "params", ["-p", "pretrain={steps: two}"], 2,
     r"pretrain\.steps='two': expected int"),
    ("p-seed-text", "params", ["-p", "seed=abc"], 2, r"seed='abc': expected int, like the profile's 0"),
    ("p-bad-yaml", "params", ["-p", "pretrain={steps: [2}"], 2, r"the value is not valid YAML"),
    ("p-unknown", "params", ["-p", "sede=1"], 2, r"unknown parameter 'sede'"),
    ("p-unknown-key", "params", ["-p", "pretrain.stepz=1"], 2, r"unknown setting 'stepz' in pretrain"),
    ("p-not-a-section", "params", ["-p", "seed.x=1"], 2, r"seed is not a section"),
    ("p-no-equals", "params", ["-p", "seed"], 2, r"not of the form name=value"),
    ("set-type", "check-profile", ["--set", "backbones.train.fomm.steps=2.5"], 2,
     r"backbones\.train\.fomm\.steps=2\.5: expected int"),
    ("set-two-bad", "check-profile", ["--set", "pretrain.lr=fast", "--set", "seed=x"], 2,
     r"pretrain\.lr='fast': expected float(.|\n)*seed='x'"),
    ("profile-unknown", "profile", ["nope"], 2, r"unknown profile 'nope'"),
    ("profile-shipped-name", "profile", ["{w}/profiles/ci.yaml"], 2, r"its name 'ci' is a shipped profile's"),
    ("profile-named-shipped", "profile", ["{w}/profiles/named.yaml"], 2,
     r"its name 'default' is a shipped profile's"),
    ("profile-bad-yaml", "profile", ["{w}/profiles/bad.yaml"], 2, r"bad\.yaml: not valid YAML"),
    ("alpha-tiny", "magnify", [*MAG, *IO, "--alpha", "1e-9"], 0,
     r"warning: alpha 1e-09 is outside the range 1-16"),
    ("device-cuda-absent", "magnify", [*MAG, *IO, "--device", "cuda"], 0 if CUDA else 2,
     r"wrote" if CUDA else r"--device cuda: .*no CUDA device"),
    # ---- run-notebook: refused before the notebook starts
    ("run-bad-value", "run-notebook", ["-p", "seed=abc"], 2, r"seed='abc': expected int"),
    ("run-unknown-notebook", "run-notebook-nb", ["notebooks/99_nope.py"], 2,
     r"notebook notebooks/99_nope\.py does not exist"),
    # ---- make: refused before any stage starts
    ("make-bad-set", "make", ["PROFILE=ci", "SET=pretrain.steps=two"], 2,
     r"pretrain\.steps='two': expected int"),
    ("make-unknown-profile", "make", ["PROFILE=nope"], 2, r"unknown profile 'nope'"),
    ("make-shipped-name", "make", ["PROFILE={w}/profiles/ci.yaml"], 2,
     r"its name 'ci' is a shipped profile's"),
    ("make-bad-yaml", "make", ["PROFILE={w}/profiles/bad.yaml"], 2, r"bad\.yaml: not valid YAML"),
    # ---- loaders
    ("samm-missing-root", "samm", ["{w}/no_samm"], 2, r"no_samm: SAMM root folder does not exist"),
    ("samm-columns", "samm", ["{w}/samm_cols"], 2,
     r"SAMM_Micro_FACS_Codes_v2\.xlsx.*(Action Units|action units)"),
]  # fmt: skip


def _run(command: str, argv: list[str], capsys, out: Path) -> tuple[int, str]:
    try:
        if command == "magnify":
            code = magnify_cli.main(argv)
        elif command == "params":
            nb = "notebooks/01_pretrain.py"
            code = cli.main(["params", nb, "--profile", "ci", "--out", argv[-1], *argv[:-1]])
        elif command == "check-profile":
            code = cli.main(["check-profile", "ci", *argv])
        elif command == "profile":
            code = cli.main(["check-profile", *argv])
        elif command in ("run-notebook", "run-notebook-nb"):
            nb = argv[0] if command == "run-notebook-nb" else "notebooks/00_data.py"
            rest = argv[1:] if command == "run-notebook-nb" else argv
            code = cli.main(["run-notebook", nb, "--profile", "ci", *rest])
        elif command == "make":
            proc = subprocess.run(
                ["make", "--no-print-directory", "paper", *argv], cwd=REPO_ROOT, capture_output=True,
                text=True, env={**os.environ, "MAGPLUS_RESULTS": str(out / "results")},
            )  # fmt: skip
            code = 2 if proc.returncode else 0  # make exits 2 when a recipe fails
            print(proc.stdout + proc.stderr)
        elif command == "samm":
            try:
                load_samm(argv[0])
                code = 0
            except DataError as exc:
                print(f"error: {exc}", file=sys.stderr)
                code = 2
        else:
            raise AssertionError(command)
    except SystemExit as exc:  # argparse
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input(case, world, tmp_path, capsys):
    _id, command, argv, code, pattern = case
    argv = [a.replace("{w}", str(world)).replace("{o}", str(tmp_path)) for a in argv]
    if command == "params":
        argv = [*argv, str(tmp_path / "params.json")]
    before = _digests(world)
    got, text = _run(command, argv, capsys, tmp_path)
    assert got == code, text
    assert re.search(pattern, text), text
    if code:
        assert "Traceback" not in text
        lines = [ln for ln in text.splitlines() if "error" in ln]
        assert lines, text
        if command == "magnify" and "usage:" not in text:
            assert len(lines) == 1 and lines[0].startswith("error: "), text  # one line, no traceback
        assert not (tmp_path / "out").exists() and not (tmp_path / "params.json").exists()
        assert not list(tmp_path.glob("results/*/executed"))  # no stage started
    assert _digests(world) == before  # no input file was touched


def test_there_are_at_least_forty_cases():
    assert len(CASES) >= 40


# ---------------------------------------------------------------- behaviour the table cannot show


def _magnify(world: Path, out: str, *extra: str) -> int:
    return magnify_cli.main([*(a.replace("{w}", str(world)) for a in MAG), "--input", str(world / "clip"),
                             "--output", out, *extra])  # fmt: skip


def test_overwrite_replaces_the_output_whole(world, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "00099.png").write_bytes(b"stale frame of a longer clip")
    assert _magnify(world, str(out), "--overwrite") == 0
    assert sorted(p.name for p in out.iterdir()) == [f"{i:05d}.png" for i in range(4)]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folder left
    video = tmp_path / "o.avi"
    assert _magnify(world, str(video)) == 0
    frames, _ = magnify_cli.read_frames(video)  # a real AVI, not a folder named o.avi
    assert video.is_file() and frames.shape == (4, 3, H, W)
    mode = out.stat().st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o777 & ~umask


def test_an_empty_output_folder_is_used(world, tmp_path):
    (tmp_path / "out").mkdir()
    assert _magnify(world, str(tmp_path / "out")) == 0
    assert len(list((tmp_path / "out").iterdir())) == 4


def test_samm_spreadsheet_found_beside_the_frames(world):
    clips = load_samm(world / "samm_ok")  # spreadsheet in root/SAMM, as the full profile's help says
    assert [c.clip_id for c in clips] == ["006_1_2"] and clips[0].label3 == "Positive"


def test_duplicate_frame_numbers_warn_and_pick_one_deterministically(tmp_path):
    for name in ("img5.jpg", "img05.jpg", "img6.jpg"):
        _png(tmp_path / name, 0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frames = list_frames(tmp_path)
    assert sorted(frames) == [5, 6] and frames[5].name == "img05.jpg"  # first in sorted order
    assert any("frame 5 is present twice (img05.jpg, img5.jpg)" in str(w.message) for w in caught)


def test_make_refuses_a_bad_set_before_any_stage(tmp_path):
    env = {**os.environ, "MAGPLUS_RESULTS": str(tmp_path)}
    proc = subprocess.run(
        ["make", "--no-print-directory", "paper", "PROFILE=ci", "SET=pretrain.steps=two"],
        cwd=REPO_ROOT, capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "pretrain.steps='two': expected int" in proc.stderr
    assert "run-notebook" not in proc.stdout and not (tmp_path / "ci" / "executed").exists()
    proc = subprocess.run(
        ["make", "--no-print-directory", "paper", "PROFILE=nope"], cwd=REPO_ROOT, capture_output=True,
        text=True, env=env,
    )  # fmt: skip
    assert proc.returncode == 2 and "unknown profile 'nope'" in proc.stderr


def test_params_merge_a_section_key_by_key(tmp_path):
    out = tmp_path / "p.json"
    assert cli.main(["params", "notebooks/01_pretrain.py", "--profile", "ci", "--out", str(out)]) == 0
    base = json.loads(out.read_text())["pretrain"]
    args = ["params", "notebooks/01_pretrain.py", "--profile", "ci", "--out", str(out)]
    assert cli.main([*args, "-p", "pretrain={steps: 2}"]) == 0
    assert json.loads(out.read_text())["pretrain"] == {**base, "steps": 2}  # batch size etc. kept
