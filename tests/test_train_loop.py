"""The shared training-loop skeleton and its optimizer-state file."""

import pytest
import torch
from safetensors.torch import load_file

from magplus_lib.backbones.training import train_backbone
from magplus_lib.harness.train_loop import (
    OptimizerStateMissing,
    load_optimizer,
    optimizer_path,
    run_steps,
    save_optimizer,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _problem(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(16, 3, generator=g), torch.randn(16, 1, generator=g)
    model = torch.nn.Linear(3, 1)
    torch.nn.init.zeros_(model.weight)
    torch.nn.init.zeros_(model.bias)
    return model, x, y


def _adam_steps(model, opt, x, y, n):
    for _ in range(n):
        loss = ((model(x) - y) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_saved_optimizer_continues_exactly_like_the_uninterrupted_one(tmp_path):
    whole, x, y = _problem()
    opt = torch.optim.Adam(whole.parameters(), lr=0.05)
    _adam_steps(whole, opt, x, y, 6)

    half, _, _ = _problem()
    opt = torch.optim.Adam(half.parameters(), lr=0.05)
    _adam_steps(half, opt, x, y, 3)
    path = optimizer_path(tmp_path / "run.safetensors")
    assert path.name == "run.optim.safetensors"
    save_optimizer(opt, path, step=3)
    assert set(load_file(str(path))) == {
        f"state.{i}.{k}" for i in (0, 1) for k in ("step", "exp_avg", "exp_avg_sq")
    }

    resumed = torch.nn.Linear(3, 1)
    resumed.load_state_dict(half.state_dict())
    opt2 = torch.optim.Adam(resumed.parameters(), lr=0.3)  # the file's groups (lr 0.05) win
    load_optimizer(opt2, path, step=3)
    assert opt2.param_groups[0]["lr"] == 0.05
    _adam_steps(resumed, opt2, x, y, 3)
    assert torch.equal(resumed.weight, whole.weight) and torch.equal(resumed.bias, whole.bias)


def test_missing_or_mismatched_optimizer_state_is_named(tmp_path):
    model, x, y = _problem()
    opt = torch.optim.Adam(model.parameters())
    with pytest.raises(OptimizerStateMissing, match="nothere.optim.safetensors is not there"):
        load_optimizer(opt, optimizer_path(tmp_path / "nothere.safetensors"), 1)
    _adam_steps(model, opt, x, y, 1)
    path = tmp_path / "a.optim.safetensors"
    save_optimizer(opt, path, step=1)
    with pytest.raises(ValueError, match="optimizer of step 1, its checkpoint is at step 2"):
        load_optimizer(opt, path, 2)


def test_run_steps_checkpoints_where_asked_and_calls_back_after_each_step():
    saved, seen = [], []
    rows = run_steps(
        2,
        7,
        lambda step: {"step": step + 1, "loss": 1.0 / (step + 1)},
        desc="t",
        progress=False,
        checkpoint=saved.append,
        checkpoint_at=lambda s: s % 2 == 0 or s == 7,
        on_step=lambda s, row: seen.append((s, row["step"])),
    )
    assert [r["step"] for r in rows] == [3, 4, 5, 6, 7]
    assert saved == [4, 6, 7]
    assert seen == [(3, 3), (4, 4), (5, 5), (6, 6), (7, 7)]
    assert run_steps(5, 5, lambda s: {}, desc="t", progress=False) == []


def test_a_backbone_run_restored_without_its_optimizer_trains_again_from_step_zero(tmp_path, capsys):
    g = torch.Generator().manual_seed(0)
    clips = [torch.rand(3, 3, 16, 16, generator=g) for _ in range(3)]
    tiny = {"latent_dim": 4, "width": 4}
    train = {"steps": 4, "batch_size": 2, "lr": 1e-3, "save_every": 2, "num_threads": 1}
    whole = train_backbone("latent", clips, tiny, train, 16, tmp_path / "whole", progress=False)
    ckpt = tmp_path / "cut" / "checkpoints" / "backbone_latent.safetensors"
    # a run cut at step 2 (what a cache entry would hold: weights and side file, no optimizer)
    train_backbone("latent", clips, tiny, {**train, "steps": 2}, 16, tmp_path / "cut", progress=False)
    optimizer_path(ckpt).unlink()
    capsys.readouterr()
    again = train_backbone("latent", clips, tiny, train, 16, tmp_path / "cut", progress=False)
    assert (
        "stopped at step 2 of 4 and its optimizer state is not there; training from step 0"
        in capsys.readouterr().out
    )
    assert again["steps"] == 4 and not again["reused"]
    a = load_file(str(tmp_path / "whole" / "checkpoints" / "backbone_latent.safetensors"))
    b = load_file(str(ckpt))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert whole["steps"] == 4
