"""The `landmark` backbone (tracker -> landmark images -> warping generator) and SynthME's landmark tracks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from magplus_lib.backbones.base import BackboneError, checkpoint_path
from magplus_lib.backbones.landmark import (
    LandmarkAnimator,
    LandmarkConfig,
    LandmarkTracker,
    draw_landmarks,
    marker_flow,
)
from magplus_lib.backbones.latent import warp_blend
from magplus_lib.backbones.registry import build_backbone
from magplus_lib.backbones.training import sample_landmark_pairs, sample_pairs, step_generator, train_backbone
from magplus_lib.data import synthme

SIZE = 16
TINY = {"num_landmarks": 1, "width": 4, "num_res_blocks": 1, "scales": [1.0, 0.5]}
TRAIN = {"steps": 40, "batch_size": 8, "lr": 3e-3, "log_every": 1, "num_threads": 1}


def blob(cx: float, cy: float, colour) -> torch.Tensor:
    yy, xx = torch.meshgrid(
        torch.arange(SIZE, dtype=torch.float32), torch.arange(SIZE, dtype=torch.float32), indexing="ij"
    )
    g = torch.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 6.0)
    return torch.stack([0.1 + 0.8 * c * g for c in colour])


def blob_clips(n: int = 4, frames: int = 6):
    """Clips of a moving blob, and its centre as the one annotated landmark of every frame."""
    clips, tracks = [], []
    for i in range(n):
        colour = (0.5 + 0.1 * i, 0.7 - 0.1 * i, 0.4)
        centres = [(4.0 + 1.3 * t + 0.5 * i, 5.0 + 0.7 * t) for t in range(frames)]
        clips.append(torch.stack([blob(x, y, colour) for x, y in centres]))
        tracks.append(torch.tensor(centres, dtype=torch.float32)[:, None, :])
    return clips, tracks


# --------------------------------------------------------------------------------------- SynthME tracks


def _spec():
    from synthme_tiny import tiny_config

    cfg = tiny_config()
    rng = np.random.default_rng(3)
    jitter = np.cumsum(rng.normal(0, 0.3, (8, 2)), axis=0)
    return synthme.make_clip_spec(
        cfg, rng, "macro", "x", "001", 5, "happiness", "macro", 8, 20, jitter, False
    )


def test_landmark_tracks_follow_the_ground_truth_displacement():
    """A landmark at p in the onset frame is at p + D_t(p) in frame t (D: the clip's displacement)."""
    spec = _spec()
    tracks = synthme.landmark_tracks(spec)
    assert tracks.shape == (len(spec.frame_numbers), len(synthme.LANDMARK_NAMES), 2)
    d = synthme.displacement(spec)  # (T, 2, H, W), pixel-centre coordinates
    n = spec.render_size
    grid = (tracks[0].double() * (2.0 / (n - 1)) - 1.0).view(1, 1, -1, 2).expand(d.shape[0], -1, -1, -1)
    at = F.grid_sample(d.double(), grid, mode="bilinear", align_corners=True)[:, :, 0].permute(0, 2, 1)
    moved = tracks - tracks[0]
    assert float(moved.norm(dim=-1).max()) > 1.0  # the clip really moves its landmarks
    torch.testing.assert_close(moved.double(), at, atol=0.05, rtol=0)
    # resized frames: x' = (x + 0.5) * size / n - 0.5 (cv2's pixel-centre mapping)
    half = synthme.landmark_tracks(spec, n // 2)
    torch.testing.assert_close(half, (tracks + 0.5) * 0.5 - 0.5)
    some = spec.frame_numbers[2:5]
    torch.testing.assert_close(synthme.landmarks_for_frames(spec, some), tracks[2:5])
    with pytest.raises(synthme.DataError, match=r"clip x: frames \[999\] are outside"):
        synthme.landmarks_for_frames(spec, [999])


# ------------------------------------------------------------------------------------------ the model


def test_draw_landmarks_rounds_to_the_nearest_pixel():
    pts = torch.tensor([[[3.4, 5.6], [10.0, 1.0]]])
    img = draw_landmarks(pts, (12, 14), radius=1)
    assert img.shape == (1, 2, 12, 14)
    ys, xs = torch.nonzero(img[0, 0], as_tuple=True)
    assert sorted(set(xs.tolist())) == [2, 3, 4] and sorted(set(ys.tolist())) == [5, 6, 7]
    assert float(img[0, 1].sum()) == 9.0 and float(img[0, 1, 0:3, 9:12].sum()) == 9.0
    # a 0.2 px move that does not cross a rounding boundary draws the same image; one that does moves
    # the whole square by a pixel
    assert torch.equal(draw_landmarks(pts + torch.tensor([0.05, -0.05]), (12, 14)), img)
    shifted = draw_landmarks(pts + torch.tensor([0.2, 0.0]), (12, 14))
    assert torch.equal(shifted[0, 0, :, 3:], img[0, 0, :, 2:-1]) and not torch.equal(shifted, img)


def test_tracker_soft_argmax_maps_heatmap_cells_to_pixels():
    tracker = LandmarkTracker(width=4, num_landmarks=2)

    class Peaks(torch.nn.Module):
        def forward(self, feats):
            logits = torch.full((feats.shape[0], 2, 8, 8), -60.0)
            logits[:, 0, 2, 5] = 60.0  # row 2, column 5 of the 1/4-resolution heatmap
            logits[:, 1, 7, 0] = 60.0
            return logits

    tracker.head = Peaks()
    pts = tracker(torch.rand(3, 3, 32, 32))
    expected = torch.tensor([[(5 + 0.5) * 4 - 0.5, (2 + 0.5) * 4 - 0.5], [0.5 * 4 - 0.5, 7.5 * 4 - 0.5]])
    torch.testing.assert_close(pts, expected.expand(3, -1, -1))


def test_untrained_animator_warps_the_source_by_the_marker_flow_alone():
    model = LandmarkAnimator(LandmarkConfig(**TINY)).eval()
    clips, _ = blob_clips(1)
    src, drv = clips[0][0:1], clips[0]
    out = model.animate(src, drv)
    l_src = model.track(src)
    l_drv = l_src + (model.track(drv) - model.track(drv[:1]))
    prior = marker_flow(l_src.expand_as(l_drv), l_drv, (SIZE, SIZE), model.cfg.marker_flow_sigma * SIZE)
    warped = warp_blend(torch.zeros(drv.shape[0], 6, SIZE, SIZE), src.expand_as(drv), True, prior)["warped"]
    # zero predicted flow, a mask of sigmoid(4) on the source warped by the prior; the rest is the
    # colour head's 0.5
    m = torch.sigmoid(torch.tensor(4.0))
    torch.testing.assert_close(out, m * warped + (1 - m) * 0.5, atol=1e-5, rtol=0)
    # the first frame is the reference: no motion, the source itself
    torch.testing.assert_close(out[0], m * src[0] + (1 - m) * 0.5, atol=1e-5, rtol=0)


def test_marker_flow_moves_pixels_around_a_moved_marker_only():
    src = torch.tensor([[[10.2, 12.0], [25.0, 25.0]]])  # (1, K=2, 2), x then y
    drv = torch.tensor([[[13.4, 12.0], [25.0, 25.0]]])  # marker 0 moved right by 3 px (after rounding)
    flow = marker_flow(src, drv, (32, 32), sigma=2.0)  # (1, H, W, 2), normalised (align_corners)
    px = flow * (31 / 2)
    background = torch.exp(torch.tensor(-2.0))
    # at the driving marker its Gaussian is 1, marker 1's is negligible: the pull is -3 px in x
    torch.testing.assert_close(px[0, 12, 13], torch.tensor([-3.0 / (1 + background), 0.0]), atol=1e-4, rtol=0)
    assert px[0, 25, 25].abs().max() < 1e-6  # the still marker: no motion
    assert px[0, 0, 31].abs().max() < 1e-6  # far from every marker: no motion


# ------------------------------------------------------------------------------------------- training


def test_landmark_pairs_use_the_same_draws_as_sample_pairs():
    clips, tracks = blob_clips()
    src, drv = sample_pairs(clips, 5, step_generator(1, 2))
    s2, d2, ls, ld = sample_landmark_pairs(clips, tracks, 5, step_generator(1, 2))
    assert torch.equal(src, s2) and torch.equal(drv, d2)
    for k in range(5):  # the landmark of each drawn frame is that frame's blob centre
        for frame, lm in ((src[k], ls[k, 0]), (drv[k], ld[k, 0])):
            yy, xx = divmod(int(frame.mean(0).argmax()), SIZE)
            assert abs(xx - float(lm[0])) <= 0.5 + 1e-6 and abs(yy - float(lm[1])) <= 0.5 + 1e-6


def test_training_learns_the_tracker_resumes_exactly_and_builds(tmp_path):
    clips, tracks = blob_clips()
    full = train_backbone(
        "landmark", clips, TINY, TRAIN, SIZE, tmp_path / "a", seed=2, progress=False, landmarks=tracks
    )
    log = (tmp_path / "a" / "logs" / "backbone_landmark.csv").read_text().splitlines()
    col = log[0].split(",").index("tracker_l1_px")
    errors = [float(r.split(",")[col]) for r in log[1:]]
    assert np.mean(errors[-5:]) < 0.5 * np.mean(errors[:5]), errors  # the tracker learns
    # interrupted after 20 steps, then resumed: bit-identical weights
    half = {**TRAIN, "steps": 20}
    train_backbone(
        "landmark", clips, TINY, half, SIZE, tmp_path / "b", seed=2, progress=False, landmarks=tracks
    )
    resumed = train_backbone(
        "landmark", clips, TINY, TRAIN, SIZE, tmp_path / "b", seed=2, progress=False, landmarks=tracks
    )
    assert full["steps"] == resumed["steps"] == 40 and not resumed["reused"]
    a = load_file(str(checkpoint_path(tmp_path / "a" / "checkpoints", "landmark")))
    b = load_file(str(checkpoint_path(tmp_path / "b" / "checkpoints", "landmark")))
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    # other annotations are another training run, not a reuse of this checkpoint
    moved = [t + 1.0 for t in tracks]
    other = train_backbone(
        "landmark", clips, TINY, {**TRAIN, "steps": 1}, SIZE, tmp_path / "b", progress=False, landmarks=moved
    )
    assert not other["reused"] and other["steps"] == 1

    bb = build_backbone("landmark", {}, tmp_path / "a" / "checkpoints")
    assert bb.native_size == SIZE
    out = bb.animate(clips[0][0], clips[1])
    assert out.shape == clips[1].shape and torch.isfinite(out).all()


def test_landmark_training_input_errors(tmp_path):
    clips, tracks = blob_clips(2)
    args = ("landmark", clips, TINY, {**TRAIN, "steps": 1}, SIZE, tmp_path)
    with pytest.raises(ValueError, match="train landmark: needs landmarks"):
        train_backbone(*args, progress=False)
    with pytest.raises(ValueError, match="train latent: takes no landmarks"):
        train_backbone("latent", clips, {}, {"steps": 1}, SIZE, tmp_path, progress=False, landmarks=tracks)
    with pytest.raises(ValueError, match=r"landmarks of clip 1 have shape \(5, 1, 2\); expected \(6, K, 2\)"):
        train_backbone(*args, progress=False, landmarks=[tracks[0], tracks[1][:5]])
    with pytest.raises(ValueError, match="1 landmark tracks for 2 clips"):
        train_backbone(*args, progress=False, landmarks=tracks[:1])
    bad = [tracks[0], tracks[1].clone()]
    bad[1][2, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="landmarks of clip 1 are not all finite"):
        train_backbone(*args, progress=False, landmarks=bad)
    with pytest.raises(BackboneError, match="num_landmarks = 3 but the training landmarks have 1"):
        train_backbone(
            "landmark", clips, {**TINY, "num_landmarks": 3}, {"steps": 1}, SIZE, tmp_path, landmarks=tracks
        )
    with pytest.raises(BackboneError, match=r"backbone 'landmark': checkpoint .*backbone_landmark"):
        build_backbone("landmark", {}, tmp_path / "nowhere")
