"""FOMM re-implementation: official state_dict layout, official-checkpoint loading, geometry, losses."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from magplus_lib.backbones import fomm
from magplus_lib.backbones.fomm import (
    FOMM,
    AntiAliasDownsample,
    CheckpointError,
    FOMMConfig,
    convex_hull_area,
    kp2gaussian,
    load_official_fomm,
    relative_keypoints,
    vox256_config,
)
from magplus_lib.backbones.fomm_losses import RandomTPS, fomm_losses

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "fomm_vox256_state_dict.txt"
if not REFERENCE.is_file():  # the reference folder lives beside the checkout
    REFERENCE = Path("/work/shared/reference/fomm_vox256_state_dict.txt")


def parse_reference(path: Path) -> dict[str, tuple[int, ...]]:
    """{'<top-level key>.<name>': shape} for every tensor line of the reference listing."""
    entries = {}
    for line in path.read_text().splitlines():
        m = re.fullmatch(r"(\S+) \(([0-9, ]*)\)", line.strip())
        if line.startswith("#") or not m:
            continue
        entries[m.group(1)] = tuple(int(x) for x in m.group(2).replace(" ", "").split(",") if x)
    return entries


def small_config(**kw) -> FOMMConfig:
    base = dict(
        num_kp=4,
        kp_detector=dict(block_expansion=8, max_features=32, num_blocks=2, scale_factor=0.5, pad=3),
        dense_motion=dict(block_expansion=8, max_features=32, num_blocks=2, scale_factor=0.5),
        generator=dict(block_expansion=8, max_features=32, num_down_blocks=1, num_bottleneck_blocks=1),
    )
    base.update(kw)
    return FOMMConfig(**base)


def test_vox256_state_dict_matches_official_listing():
    ref = parse_reference(REFERENCE)
    # The discriminator is a training-only part of the official file (adversarial loss), not of the model.
    ref = {k: v for k, v in ref.items() if k.split(".")[0] in ("generator", "kp_detector")}
    assert len(ref) == 271  # 75 kp_detector + 196 generator entries, as the listing's headers say
    with torch.device("meta"):
        model = FOMM(vox256_config())
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert sorted(own) == sorted(ref)
    wrong = {k: (own[k], ref[k]) for k in ref if own[k] != ref[k]}
    assert wrong == {}
    # The listing's headers give the learnable parameter counts of the two parts.
    assert sum(p.numel() for p in model.kp_detector.parameters()) == 14215368
    assert sum(p.numel() for p in model.generator.parameters()) == 45575391


def _official_blob(model: FOMM, prefix: str = "") -> dict:
    sd = model.state_dict()
    return {
        "generator": {
            prefix + k[len("generator.") :]: v for k, v in sd.items() if k.startswith("generator.")
        },
        "kp_detector": {
            prefix + k[len("kp_detector.") :]: v for k, v in sd.items() if k.startswith("kp_detector.")
        },
        "optimizer_generator": {"state": {}, "param_groups": [{"lr": 2e-4, "params": [0, 1]}]},
        "epoch": 99,
    }


def _randomise(model: FOMM, seed: int) -> FOMM:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_floating_point() and not name.endswith("down.weight"):
                t.copy_(torch.rand(t.shape, generator=g) * 0.2 + (1.0 if "running_var" in name else -0.1))
    return model.eval()


@pytest.mark.parametrize("prefix", ["", "module."])
def test_official_format_checkpoint_loads_and_runs_identically(tmp_path, prefix):
    cfg = small_config()
    torch.manual_seed(1)
    original = _randomise(FOMM(cfg), 3)
    path = tmp_path / "vox-cpk.pth.tar"
    torch.save(_official_blob(original, prefix), path)
    loaded = load_official_fomm(path, cfg)
    for k, v in original.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    g = torch.Generator().manual_seed(0)
    src, drv = torch.rand(1, 3, 32, 32, generator=g), torch.rand(3, 3, 32, 32, generator=g)
    torch.testing.assert_close(loaded.animate(src, drv), original.animate(src, drv))


def test_official_checkpoint_errors_name_the_file(tmp_path):
    cfg = small_config()
    missing = tmp_path / "nope.pth.tar"
    with pytest.raises(FileNotFoundError, match="nope.pth.tar"):
        load_official_fomm(missing, cfg)
    bad = tmp_path / "bad.pth.tar"
    torch.save({"state_dict": {}}, bad)
    with pytest.raises(CheckpointError, match=r"bad\.pth\.tar.*'generator' and 'kp_detector'"):
        load_official_fomm(bad, cfg)
    raft_like = tmp_path / "raft_large_C_T_V1-22a6c225.pth"  # a flat state dict of many tensors
    torch.save({f"update_block.layer{i}.weight": torch.zeros(1) for i in range(500)}, raft_like)
    with pytest.raises(CheckpointError, match=r"raft_large.*found 500 keys, e\.g\.") as info:
        load_official_fomm(raft_like, cfg)
    assert len(str(info.value)) < 600  # a few keys, not all of them
    other = tmp_path / "other.pth.tar"
    torch.save(_official_blob(FOMM(small_config(num_kp=5))), other)  # a different number of keypoints
    with pytest.raises(CheckpointError, match=r"other\.pth\.tar.*wrong shape.*dense_motion_network"):
        load_official_fomm(other, cfg)


def test_antialias_downsample_kernel_and_constant_image():
    down = AntiAliasDownsample(3, 0.25)
    assert tuple(down.weight.shape) == (3, 1, 13, 13)  # sigma 1.5 -> 2 * round(6) + 1 taps
    torch.testing.assert_close(down.weight.sum(dim=(1, 2, 3)), torch.ones(3))
    out = down(torch.full((1, 3, 64, 64), 0.7))
    assert out.shape == (1, 3, 16, 16)
    torch.testing.assert_close(out[..., 2:-2, 2:-2], torch.full((1, 3, 12, 12), 0.7))  # interior: exact mean


def test_convex_hull_area_hand_cases():
    square = [[0, 0], [2, 0], [2, 2], [0, 2], [1, 1], [0.5, 1.5]]
    assert convex_hull_area(square) == pytest.approx(4.0)
    assert convex_hull_area([[0, 0], [1, 0], [0, 1]]) == pytest.approx(0.5)
    assert convex_hull_area([[0, 0], [1, 1], [2, 2]]) == 0.0


def test_relative_keypoints_scale_and_jacobian_transfer():
    sq = torch.tensor([[[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]]])  # area 4
    init = sq * 0.5  # area 1 -> movement scale sqrt(4 / 1) = 2
    eye = torch.eye(2).expand(1, 4, 2, 2)
    rot = torch.tensor([[0.0, -1.0], [1.0, 0.0]]).expand(1, 4, 2, 2)
    kp_s = {"value": sq, "jacobian": rot}
    kp_0 = {"value": init, "jacobian": eye}
    kp_d = {
        "value": (init + torch.tensor([0.1, -0.05])).repeat(2, 1, 1),
        "jacobian": (2 * eye).repeat(2, 1, 1, 1),
    }
    out = relative_keypoints(kp_s, kp_d, kp_0, adapt_scale=True)
    torch.testing.assert_close(out["value"], (sq + torch.tensor([0.2, -0.1])).repeat(2, 1, 1))
    torch.testing.assert_close(out["jacobian"], (2 * rot).repeat(2, 1, 1, 1))
    no_scale = relative_keypoints(kp_s, kp_d, kp_0, adapt_scale=False)
    torch.testing.assert_close(no_scale["value"], (sq + torch.tensor([0.1, -0.05])).repeat(2, 1, 1))


def test_kp2gaussian_peaks_at_keypoint():
    kp = torch.tensor([[[0.5, -0.5]]])  # x = 0.5 -> column 12 of 17, y = -0.5 -> row 4
    heat = kp2gaussian(kp, (17, 17), 0.01)[0, 0]
    assert divmod(int(heat.argmax()), 17) == (4, 12)
    assert float(heat.max()) == pytest.approx(1.0)


def test_sparse_motion_is_the_keypoint_affine_map():
    net = fomm.DenseMotionNetwork(fomm.DenseMotionConfig(8, 16, 1, 1.0), 1, 3, True, True)
    kp_s = {"value": torch.tensor([[[0.2, 0.1]]]), "jacobian": torch.tensor([[[[2.0, 0.0], [0.0, 1.0]]]])}
    kp_d = {"value": torch.tensor([[[0.0, 0.0]]]), "jacobian": torch.eye(2)[None, None]}
    m = net.sparse_motions(5, 5, kp_d, kp_s)
    grid = fomm.make_coordinate_grid(5, 5)
    torch.testing.assert_close(m[0, 0], grid)  # background: identity
    expect = torch.stack([2 * grid[..., 0] + 0.2, grid[..., 1] + 0.1], dim=-1)
    torch.testing.assert_close(m[0, 1], expect)


def test_tps_jacobian_matches_finite_differences_and_identity_warp():
    g = torch.Generator().manual_seed(0)
    tps = RandomTPS(2, 0.05, 0.005, 5, generator=g)
    pts = torch.tensor([[[0.1, -0.3], [0.5, 0.4]], [[-0.6, 0.2], [0.0, 0.0]]], dtype=torch.float64)
    tps.theta, tps.control_params = tps.theta.double(), tps.control_params.double()
    tps.control_points = tps.control_points.double()
    jac = tps.jacobian(pts)
    eps = 1e-6
    for axis in range(2):
        d = torch.zeros_like(pts)
        d[..., axis] = eps
        fd = (tps.warp_coordinates(pts + d) - tps.warp_coordinates(pts - d)) / (2 * eps)
        torch.testing.assert_close(jac[..., :, axis], fd, atol=1e-6, rtol=1e-5)
    ident = RandomTPS(1, 0.0, 0.0, 5)
    frame = torch.rand(1, 3, 16, 16, generator=g)
    torch.testing.assert_close(ident.transform_frame(frame), frame, atol=1e-5, rtol=0)


@pytest.fixture()
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: one thread is fastest on a shared CPU
    yield
    torch.set_num_threads(before)


def test_training_step_reduces_reconstruction_loss(one_thread):
    torch.manual_seed(0)
    model = FOMM(small_config())
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")

    def blob(cx):
        img = torch.exp(-((xx - cx) ** 2 + (yy - 16) ** 2) / 30.0)
        return torch.stack([img, 0.5 * img, 1 - img])

    src = torch.stack([blob(12.0), blob(14.0)])
    drv = torch.stack([blob(15.0), blob(17.0)])
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    g = torch.Generator().manual_seed(0)
    first = None
    for _ in range(15):
        loss, parts = fomm_losses(model, src, drv, g)
        first = parts["reconstruction"] if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    _, parts = fomm_losses(model, src, drv, g)
    assert set(parts) == {"reconstruction", "equivariance_value", "equivariance_jacobian"}
    assert parts["reconstruction"] < 0.8 * first


def test_relative_animation_static_driver_and_reference_frame():
    torch.manual_seed(0)
    model = FOMM(small_config()).eval()
    g = torch.Generator().manual_seed(1)
    src = torch.rand(1, 3, 32, 32, generator=g)
    frame = torch.rand(1, 3, 32, 32, generator=g)
    moving = torch.cat([frame, torch.rand(2, 3, 32, 32, generator=g)])
    out = model.animate(src, moving, batch_size=2)
    # Driving frame 0 is the neutral reference: its keypoints map exactly onto the source's.
    kp_s = model.kp_detector(src)
    with torch.no_grad():
        expect0 = model.generator(src, kp_driving=kp_s, kp_source=kp_s)["prediction"]
    torch.testing.assert_close(out[:1], expect0, atol=1e-5, rtol=0)
    # A driver that never moves yields the same frame throughout.
    still = model.animate(src, frame.repeat(3, 1, 1, 1))
    torch.testing.assert_close(still, expect0.expand(3, -1, -1, -1), atol=1e-5, rtol=0)
    assert (out[1:] - expect0).abs().max() > 1e-4  # a moving one does not (small: untrained detector)


def test_tps_blend_keeps_the_deformed_source_where_the_occlusion_map_is_one():
    torch.manual_seed(0)
    cfg = small_config(
        generator=dict(
            block_expansion=8,
            max_features=32,
            num_down_blocks=1,
            num_bottleneck_blocks=1,
            blend_deformed_source=True,
        )
    )
    model = FOMM(cfg).eval()
    g = torch.Generator().manual_seed(2)
    src, drv = torch.rand(2, 3, 32, 32, generator=g).chunk(2)
    occlusion = model.generator.dense_motion_network.occlusion
    with torch.no_grad():
        occlusion.weight.zero_()
        occlusion.bias.fill_(30.0)  # occlusion map = 1: every pixel is visible in the source
        out = model(src, drv)
    torch.testing.assert_close(out["prediction"], out["deformed"], atol=1e-6, rtol=0)
    with torch.no_grad():
        occlusion.bias.fill_(-30.0)  # = 0: the decoded image alone, as FOMM's own output
        out = model(src, drv)
    plain = FOMM(small_config()).eval()
    plain.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(plain(src, drv)["prediction"], out["prediction"], atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="needs estimate_occlusion_map"):
        FOMM(small_config(generator=dict(blend_deformed_source=True, estimate_occlusion_map=False)))
