"""The `emolatent` backbone: `latent` + an expression-category objective on its code (labels per clip)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from magplus_lib.backbones.base import BackboneError, checkpoint_path
from magplus_lib.backbones.latent import EmoLatentConfig
from magplus_lib.backbones.registry import build_backbone
from magplus_lib.backbones.training import model_factory, sample_pairs, step_generator, train_backbone

SIZE = 16
TINY = {"latent_dim": 4, "width": 4, "num_res_blocks": 1, "scales": [1.0, 0.5]}
TRAIN = {"steps": 30, "batch_size": 8, "lr": 1e-3, "log_every": 1, "num_threads": 1}


def blob(cx: float, cy: float, colour) -> torch.Tensor:
    yy, xx = torch.meshgrid(
        torch.arange(SIZE, dtype=torch.float32), torch.arange(SIZE, dtype=torch.float32), indexing="ij"
    )
    g = torch.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 10.0)
    return torch.stack([0.1 + 0.8 * c * g for c in colour])


def two_label_clips(per_label: int = 3, frames: int = 6):
    """Clips starting neutral (frame 0); label 0 moves the blob right, label 1 moves it down."""
    clips, labels = [], []
    for i in range(per_label):
        colour = (0.5 + 0.1 * i, 0.7 - 0.1 * i, 0.4)
        for label in (0, 1):
            steps = [1.2 * t for t in range(frames)]
            clips.append(
                torch.stack(
                    [blob(8 + (s if label == 0 else 0), 8 + (s if label == 1 else 0), colour) for s in steps]
                )
            )
            labels.append(label)
    return clips, labels


def expression_ce(model, clips, labels, reference: str) -> float:
    """Mean cross-entropy of the classifier over every (frame t >= 1, reference) pair of every clip.

    reference "neutral": code E(frame t) - E(frame 0); "source": both orders of every pair of frames."""
    codes, targets = [], []
    with torch.no_grad():
        for clip, label in zip(clips, labels):
            e = model.encode(clip)
            if reference == "neutral":
                z = e[1:] - e[:1]
            else:
                z = (e[:, None] - e[None]).reshape(-1, e.shape[1])
            codes.append(z)
            targets += [label] * z.shape[0]
        logits = model.expression_classifier(F.normalize(torch.cat(codes), dim=1, eps=1e-6))
        return float(F.cross_entropy(logits, torch.tensor(targets)))


def load_trained(tmp_path, cfg):
    path = checkpoint_path(tmp_path / "checkpoints", "emolatent")
    model, _, _ = model_factory("emolatent", {**cfg, "num_classes": 2})
    model.load_state_dict(load_file(str(path)))
    return model.eval()


def test_training_reduces_the_classification_loss(tmp_path, one_torch_thread):
    clips, labels = two_label_clips()
    cfg = {**TINY, "expression_weight": 0.1}
    torch.manual_seed(0)  # the initialisation train_backbone uses for seed=0
    initial, _, _ = model_factory("emolatent", cfg, num_classes=2)
    before = expression_ce(initial.eval(), clips, labels, "neutral")
    summary = train_backbone(
        "emolatent", clips, cfg, TRAIN, SIZE, tmp_path, seed=0, progress=False, labels=labels
    )
    after = expression_ce(load_trained(tmp_path, cfg), clips, labels, "neutral")
    assert summary["steps"] == 30
    assert after < before and after < 0.8 * math.log(2)  # learned beyond the label frequencies
    log = (tmp_path / "logs" / "backbone_emolatent.csv").read_text().splitlines()
    assert log[0] == "step,loss,reconstruction,flow_pyramid,expression_ce,expression_accuracy"
    # the checkpoint keeps the classifier and the number of classes taken from the labels
    side = checkpoint_path(tmp_path / "checkpoints", "emolatent").with_suffix(".json").read_text()
    assert '"num_classes": 2' in side and '"labels": [' in side
    assert "expression_classifier.weight" in load_file(
        str(checkpoint_path(tmp_path / "checkpoints", "emolatent"))
    )
    # a finished checkpoint is reused only for the same labels
    again = train_backbone(
        "emolatent", clips, cfg, TRAIN, SIZE, tmp_path, seed=0, progress=False, labels=labels
    )
    assert again["reused"]
    swapped = [1 - v for v in labels]
    short = {**TRAIN, "steps": 1}
    retrained = train_backbone(
        "emolatent", clips, cfg, short, SIZE, tmp_path, seed=0, progress=False, labels=swapped
    )
    assert not retrained["reused"]
    # built from its checkpoint it animates like any backbone (the classifier is not used)
    bb = build_backbone("emolatent", {}, tmp_path / "checkpoints")
    out = bb.animate(clips[0][0], clips[1])
    assert bb.native_size == SIZE and out.shape == clips[1].shape and torch.isfinite(out).all()


def test_source_relative_code_cannot_beat_the_label_frequencies(tmp_path, one_torch_thread):
    """Why expression_reference defaults to "neutral": E(driving) - E(source) flips sign with the pair
    order, so over a pair set closed under swapping (balanced labels) a linear classifier's mean
    cross-entropy is at least log(classes) whatever the weights (Jensen), trained or not."""
    clips, labels = two_label_clips()
    cfg = {**TINY, "expression_reference": "source"}
    train_backbone("emolatent", clips, cfg, TRAIN, SIZE, tmp_path, seed=0, progress=False, labels=labels)
    assert expression_ce(load_trained(tmp_path, cfg), clips, labels, "source") >= math.log(2) - 1e-6
    with pytest.raises(ValueError, match="expression_reference must be 'neutral' or 'source'"):
        EmoLatentConfig(expression_reference="driver")


def test_labels_none_keeps_latent_training_identical(tmp_path, one_torch_thread):
    clips, _ = two_label_clips(per_label=2)
    train = {**TRAIN, "steps": 3, "batch_size": 4}
    train_backbone("latent", clips, TINY, train, SIZE, tmp_path / "a", seed=4, progress=False)
    train_backbone("latent", clips, TINY, train, SIZE, tmp_path / "b", seed=4, progress=False, labels=None)
    a = load_file(str(checkpoint_path(tmp_path / "a" / "checkpoints", "latent")))
    b = load_file(str(checkpoint_path(tmp_path / "b" / "checkpoints", "latent")))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    # sampling: the same draws with or without labels; labels and neutral frames follow the clips drawn
    src, drv = sample_pairs(clips, 6, step_generator(4, 1))
    src2, drv2, lab, neutral = sample_pairs(clips, 6, step_generator(4, 1), list(range(len(clips))))
    assert torch.equal(src, src2) and torch.equal(drv, drv2)
    for k in range(6):
        assert torch.equal(neutral[k], clips[int(lab[k])][0])
        assert any(torch.equal(src[k], f) for f in clips[int(lab[k])])


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(
        BackboneError, match=r"backbone 'emolatent'.*backbone_emolatent\.safetensors is missing"
    ):
        build_backbone("emolatent", {}, tmp_path)


def test_label_errors(tmp_path):
    clips, labels = two_label_clips(per_label=1)
    args = (clips, TINY, {"steps": 1, "batch_size": 2}, SIZE, tmp_path)
    with pytest.raises(ValueError, match=r"train emolatent: 3 labels for 2 clips"):
        train_backbone("emolatent", *args, progress=False, labels=[0, 1, 1])
    with pytest.raises(ValueError, match=r"3 labels for 2 clips"):
        sample_pairs(clips, 2, step_generator(0, 0), [0, 1, 1])
    with pytest.raises(ValueError, match="emolatent: needs labels"):
        train_backbone("emolatent", *args, progress=False)
    with pytest.raises(ValueError, match="latent: takes no labels"):
        train_backbone("latent", *args, progress=False, labels=labels)
    with pytest.raises(ValueError, match=r"label 1 is 'fear'"):
        train_backbone("emolatent", *args, progress=False, labels=[0, "fear"])
    with pytest.raises(BackboneError, match="num_classes = 2 but the labels have 3"):
        model_factory("emolatent", {**TINY, "num_classes": 2}, num_classes=3)
    assert not (tmp_path / "checkpoints").exists()


def test_expression_loss_reads_the_codes_direction_not_its_length():
    # The code's length scales the motion basis (the motion's intensity): the category objective must not
    # be able to lower its loss by lengthening the code.
    from magplus_lib.backbones.latent import emolatent_losses

    clips, labels = two_label_clips()
    torch.manual_seed(0)
    model, _, _ = model_factory("emolatent", TINY, num_classes=2)
    src, drv, lab, neutral = sample_pairs(clips, 6, step_generator(0, 0), labels)
    _, before = emolatent_losses(model, src, drv, labels=lab, neutral=neutral)
    z_before = model.encode(drv) - model.encode(neutral)
    head = model.expression_encoder.head
    with torch.no_grad():  # every code E(x) - E(neutral) becomes 3 times longer, same direction
        head.weight.mul_(3.0)
        head.bias.mul_(3.0)
    _, after = emolatent_losses(model, src, drv, labels=lab, neutral=neutral)
    assert after["expression_ce"] == pytest.approx(before["expression_ce"], rel=1e-5)
    torch.testing.assert_close(model.encode(drv) - model.encode(neutral), 3 * z_before, rtol=1e-5, atol=1e-6)
