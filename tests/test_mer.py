"""The two-stream MER evaluator: inputs, class weights, learning, determinism, checkpoints."""

import json

import numpy as np
import pytest
import torch
import torchvision

from magplus_lib.evaluation.mer import (
    MERConfig,
    MERNet,
    build_mer,
    class_weights,
    load_imagenet_weights,
    load_mer,
    mer_inputs,
    predict,
    save_mer,
    train_mer,
)

torch.set_num_threads(1)
SIZE = 32


def _clip(dx: float, dy: float, seed: int) -> torch.Tensor:
    """Two frames: a smooth random texture, then the same texture shifted by (dx, dy) pixels."""
    import cv2

    rng = np.random.default_rng(seed)
    base = cv2.resize(rng.random((8, 8)).astype(np.float32), (96, 96), interpolation=cv2.INTER_CUBIC).clip(
        0, 1
    )
    moved = cv2.warpAffine(
        base,
        np.float32([[1, 0, dx], [0, 1, dy]]),
        (96, 96),
        flags=cv2.INTER_CUBIC,
        borderMode=cv2.BORDER_REFLECT,
    )
    frames = np.stack([base, moved])[:, None].repeat(3, 1)
    return torch.from_numpy(frames[:, :, 16:80, 16:80].copy()).float()


def _dataset(n_per_class=4):
    # Class = motion direction: 0 right, 1 left, 2 down (2 px at 64 px = 1 px at the 32 px input).
    moves = [(2.0, 0.0), (-2.0, 0.0), (0.0, 2.0)]
    rgb, flow, y = [], [], []
    for c, (dx, dy) in enumerate(moves):
        for k in range(n_per_class):
            r, f = mer_inputs(_clip(dx, dy, seed=10 * c + k), 0, 1, SIZE)
            rgb.append(r)
            flow.append(f)
            y.append(c)
    return torch.stack(rgb), torch.stack(flow), torch.tensor(y)


def test_mer_inputs_flow_measures_the_shift():
    rgb, flow = mer_inputs(_clip(4.0, 0.0, seed=3), 0, 1, SIZE)  # 4 px at 64 px = 2 px at 32 px
    assert rgb.shape == (3, SIZE, SIZE) and 0 <= float(rgb.min()) and float(rgb.max()) <= 1
    centre = flow[:, 8:24, 8:24]
    assert float(centre[0].abs().mean()) == pytest.approx(2.0, rel=0.2)
    assert float(centre[1].abs().mean()) < 0.3
    assert torch.allclose(flow[2], flow[:2].norm(dim=0))


def test_class_weights_are_inverse_frequency_and_reject_empty_classes():
    w = class_weights(torch.tensor([0, 0, 0, 1]), 2)
    assert torch.allclose(w, torch.tensor([4 / (2 * 3), 4 / (2 * 1)]))
    with pytest.raises(ValueError, match="Surprise"):
        class_weights(torch.tensor([0, 1, 1]), 3, ["Negative", "Positive", "Surprise"])


def test_gated_fusion_gates_each_embedding_element():
    model = MERNet(num_classes=3, embed_dim=8).eval()
    rgb, flow = torch.rand(2, 3, SIZE, SIZE), torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        z = model.embed(rgb, flow)
        e = torch.cat(
            [
                model.rgb_proj(model.rgb_trunk((rgb - model.rgb_mean) / model.rgb_std)),
                model.flow_proj(model.flow_trunk(flow)),
            ],
            1,
        )
        assert torch.allclose(z, torch.sigmoid(model.gate(e)) * e, atol=1e-6)
        assert torch.allclose(model(rgb, flow), model.head(z), atol=1e-6)


def test_training_learns_motion_direction_and_is_deterministic(tmp_path):
    rgb, flow, y = _dataset()
    cfg = MERConfig(input_size=SIZE, embed_dim=32, epochs=12, batch_size=6, lr=2e-3)
    torch.manual_seed(0)
    model_a = build_mer(cfg)
    hist = train_mer(model_a, rgb, flow, y, cfg, seed=1, log_path=tmp_path / "log.csv")
    assert hist[-1]["loss"] < 0.6 * hist[0]["loss"]
    pred, probs = predict(model_a, rgb, flow)
    assert (pred == y.numpy()).mean() >= 0.9
    assert np.allclose(probs.sum(1), 1, atol=1e-5)
    assert (tmp_path / "log.csv").read_text().startswith("epoch,loss,train_accuracy")
    torch.manual_seed(0)
    model_b = build_mer(cfg)
    train_mer(model_b, rgb, flow, y, cfg, seed=1)
    for (k, a), b in zip(model_a.state_dict().items(), model_b.state_dict().values()):
        assert torch.equal(a, b), k

    # Round trip through safetensors + JSON side file gives the same predictions, frozen.
    path = tmp_path / "mer_x.safetensors"
    save_mer(model_a, path, cfg, {"classes": ["a", "b", "c"]})
    loaded, side = load_mer(path)
    assert side["classes"] == ["a", "b", "c"] and side["embed_dim"] == 32
    pred2, probs2 = predict(loaded, rgb, flow)
    assert np.array_equal(pred, pred2) and np.allclose(probs, probs2, atol=1e-6)
    assert not any(p.requires_grad for p in loaded.parameters())


def test_load_mer_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="mer_missing"):
        load_mer(tmp_path / "mer_missing.safetensors")
    path = tmp_path / "mer_bad.safetensors"
    save_mer(MERNet(3, 16), path, MERConfig(embed_dim=16))
    side = json.loads(path.with_suffix(".json").read_text())
    side["embed_dim"] = 32  # claims another shape than the stored weights
    path.with_suffix(".json").write_text(json.dumps(side))
    with pytest.raises(ValueError, match="mer_bad"):
        load_mer(path)


def test_imagenet_weights_loaded_into_both_trunks(tmp_path):
    ref = torchvision.models.resnet18(weights=None)
    torch.save(ref.state_dict(), tmp_path / "resnet18.pth")
    model = MERNet(3, 16)
    load_imagenet_weights(model, tmp_path / "resnet18.pth")
    assert torch.equal(model.rgb_trunk.conv1.weight, ref.conv1.weight)
    assert torch.equal(model.flow_trunk.layer4[1].bn2.running_var, ref.layer4[1].bn2.running_var)
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "wrong.pth")
    with pytest.raises(ValueError, match="wrong.pth"):
        load_imagenet_weights(model, tmp_path / "wrong.pth")
    with pytest.raises(FileNotFoundError, match="absent.pth"):
        load_imagenet_weights(model, tmp_path / "absent.pth")
