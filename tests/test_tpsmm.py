"""The Thin-Plate Spline Motion Model: the spline itself, the configuration's checks, and its losses."""

from __future__ import annotations

import pytest
import torch

from magplus_lib.backbones.tpsmm import TPSMM, ThinPlateSpline, TPSMMConfig, tpsmm_losses


def small_config(**over) -> TPSMMConfig:
    base = {
        "num_tps": 2,
        "image_size": 16,
        "dense_motion": {"block_expansion": 4, "max_features": 8, "num_blocks": 2, "scale_factor": 0.5},
        "generator": {"block_expansion": 4, "max_features": 8, "num_down_blocks": 2},
        "loss": {"scales": [1.0, 0.5]},
    }
    return TPSMMConfig(**{**base, **over})


def test_spline_interpolates_its_points_and_reproduces_an_affine_map():
    g = torch.Generator().manual_seed(0)
    src = torch.rand(2, 3, 5, 2, generator=g) * 2 - 1
    a = torch.tensor([[1.1, 0.2], [-0.1, 0.9]])
    b = torch.tensor([0.05, -0.2])
    dst = src @ a + b
    spline = ThinPlateSpline(src, dst, regulariser=0.0)
    # at its own control points (each group's points, from every group's spline: take the diagonal)
    at_points = spline.warp(src.view(2, 15, 2)).view(2, 3, 3, 5, 2)
    for k in range(3):
        torch.testing.assert_close(at_points[:, k, k], dst[:, k], atol=1e-4, rtol=0)
    # an affine correspondence has zero bending: the spline is that affine map everywhere
    coords = torch.rand(2, 40, 2, generator=g) * 2 - 1
    expected = (coords @ a + b)[:, None].expand(2, 3, 40, 2)
    torch.testing.assert_close(spline.warp(coords), expected, atol=1e-4, rtol=0)
    assert spline.radial_weights.abs().max() < 1e-4


def test_spline_bends_through_a_moved_point_and_is_regularised_for_coincident_points():
    src = torch.tensor([[-0.5, -0.5], [0.5, -0.5], [-0.5, 0.5], [0.5, 0.5], [0.0, 0.0]])[None, None]
    dst = src.clone()
    dst[0, 0, 4] = torch.tensor([0.1, 0.0])  # the centre moves right, the corners stay
    spline = ThinPlateSpline(src, dst, regulariser=0.0)
    out = spline.warp(torch.tensor([[[0.0, 0.0], [0.5, 0.5], [0.05, 0.0]]]))[0, 0]
    torch.testing.assert_close(out[0], torch.tensor([0.1, 0.0]), atol=1e-5, rtol=0)
    torch.testing.assert_close(out[1], torch.tensor([0.5, 0.5]), atol=1e-5, rtol=0)
    assert 0.05 < out[2, 0] < 0.15  # near the moved point the map moves with it
    # five coincident points (an untrained detector) still give a finite, nearly identity-like map
    same = torch.zeros(1, 1, 5, 2)
    near = ThinPlateSpline(same, same).warp(torch.tensor([[[0.3, -0.2]]]))
    assert torch.isfinite(near).all()


def test_config_refuses_masks_the_dense_motion_cannot_give():
    with pytest.raises(ValueError, match="scale_factor = 0.3"):
        small_config(dense_motion={"scale_factor": 0.3})
    with pytest.raises(ValueError, match="coarsest level"):
        small_config(dense_motion={"scale_factor": 0.125}, generator={"num_down_blocks": 2})
    with pytest.raises(ValueError, match="too few levels"):
        small_config(dense_motion={"num_blocks": 1, "scale_factor": 0.5}, generator={"num_down_blocks": 3})


def test_occlusion_masks_match_every_generator_level_and_output_is_an_image():
    torch.manual_seed(0)
    model = TPSMM(small_config()).eval()
    x = torch.rand(2, 3, 16, 16)
    out = model(x, x.flip(-1))
    assert [m.shape[-1] for m in out["occlusion_map"]] == [4, 8, 16]
    assert out["warped_encoder_maps"] == []  # the warp loss's features are made in training only
    assert [f.shape[-1] for f in model.train()(x, x.flip(-1))["warped_encoder_maps"]] == [4, 8, 16]
    torch.testing.assert_close(out["contribution_maps"].sum(1), torch.ones(2, 8, 8))
    assert 0 <= out["prediction"].min() and out["prediction"].max() <= 1


def test_warp_loss_trains_the_deformation_not_the_encoder_or_the_masks():
    torch.manual_seed(0)
    cfg = small_config(loss={"scales": [1.0], "reconstruction": 0.0, "equivariance_value": 0.0, "warp": 1.0})
    model = TPSMM(cfg)
    x = torch.rand(3, 3, 16, 16)
    loss, parts = tpsmm_losses(model, x, x.roll(2, -1), torch.Generator().manual_seed(1), {})
    assert set(parts) == {"reconstruction", "warp"} and parts["warp"] > 0
    loss.backward()
    encoder = [model.generator.inpainting.first, *model.generator.inpainting.down_blocks]
    assert all(p.grad is None or p.grad.abs().max() == 0 for m in encoder for p in m.parameters())
    assert model.kp_detector.encoder.fc.weight.grad.abs().max() > 0
    assert model.generator.dense_motion_network.maps.weight.grad.abs().max() > 0
    masks = model.generator.dense_motion_network.occlusion
    assert all(p.grad is None or p.grad.abs().max() == 0 for p in masks.parameters())


def test_dense_motion_recovers_a_translation_of_every_keypoint():
    """Driving keypoints = source keypoints + d: every spline, so any blend of them, maps a driving pixel
    p to p - d in the source (up to the 0.01 regulariser of the fit, 0.02 at the corners)."""
    torch.manual_seed(0)
    cfg = small_config()
    model = TPSMM(cfg).eval()
    net = model.generator.dense_motion_network
    g = torch.Generator().manual_seed(2)
    # each group's 5 points spread over the face (corners and centre, jittered): a well-posed fit
    corners = torch.tensor([[-0.6, -0.6], [0.6, -0.6], [-0.6, 0.6], [0.6, 0.6], [0.0, 0.0]])
    spread = corners.repeat(cfg.num_tps, 1)[None] + 0.1 * torch.randn(2, 5 * cfg.num_tps, 2, generator=g)
    source = {"value": spread}
    shift = torch.tensor([0.1, -0.05])
    driving = {"value": source["value"] + shift}
    with torch.no_grad():
        out = net(torch.rand(2, 3, 16, 16), driving, source)
    grid = torch.stack(torch.meshgrid(torch.linspace(-1, 1, 8), torch.linspace(-1, 1, 8), indexing="xy"), -1)
    assert out["contribution_maps"].shape == (2, cfg.num_tps, 8, 8)  # the splines only, no identity
    torch.testing.assert_close(out["deformation"], (grid - shift).expand(2, 8, 8, 2), atol=0.03, rtol=0)
