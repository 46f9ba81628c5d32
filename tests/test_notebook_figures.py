import matplotlib
import numpy as np
import pytest
import torch

from magplus_lib.evaluation.notebook_figures import figure_generated, figure_two_stream, flow_to_rgb

matplotlib.use("Agg")


def test_flow_colours_follow_direction_and_speed():
    flow = torch.zeros(2, 2, 2)
    flow[0, 0, 0] = 2.0  # +x: red, full brightness (the largest speed)
    flow[1, 0, 1] = -1.0  # up (-y in image coordinates): hue 1/4 turn = chartreuse-green, half bright
    rgb = flow_to_rgb(flow)
    np.testing.assert_allclose(rgb[0, 0], [1.0, 0.0, 0.0], atol=1e-9)
    np.testing.assert_allclose(rgb[0, 1], [0.25, 0.5, 0.0], atol=1e-9)  # hsv(0.25, 1, 0.5)
    np.testing.assert_allclose(rgb[1], 0.0)  # no motion: black
    np.testing.assert_allclose(flow_to_rgb(flow, max_speed=4.0)[0, 0], [0.5, 0.0, 0.0], atol=1e-9)
    np.testing.assert_allclose(flow_to_rgb(torch.zeros(2, 3, 3)), 0.0)


def test_two_stream_figure_draws_one_row_per_clip_and_refuses_bad_input():
    ex = {
        "onset": torch.rand(3, 8, 8),
        "apex": torch.rand(3, 8, 8),
        "flow": torch.ones(2, 4, 4),
        "label": "Surprise",
    }
    fig = figure_two_stream([ex, ex])
    assert len(fig.axes) == 6
    assert fig.axes[0].get_ylabel() == "Surprise"
    assert "1.41 px" in fig._suptitle.get_text()
    with pytest.raises(ValueError, match="no examples"):
        figure_two_stream([])
    with pytest.raises(ValueError, match=r"\(2, H, W\)"):
        flow_to_rgb(torch.zeros(3, 4, 4))


def test_generated_figure_shows_every_setting_and_names_a_missing_one():
    img = torch.rand(3, 8, 8)
    row = {"source": img, "driver": img, "generated": {"backbone": img, "magplus": img}, "label": "Negative"}
    fig = figure_generated([row], ["backbone", "magplus"], "latent")
    assert [ax.get_title() for ax in fig.axes] == ["source", "driver (apex)", "backbone", "magplus"]
    np.testing.assert_allclose(fig.axes[2].images[0].get_array(), img.permute(1, 2, 0).numpy(), atol=1e-7)
    with pytest.raises(ValueError, match=r"row 0 has no frame for setting\(s\) \['demagplus'\]"):
        figure_generated([row], ["backbone", "demagplus"])


class _ShiftBy(torch.nn.Module):
    """A stand-in magnifier that moves I0 right by round(alpha) pixels: exact for a 1 px input shift."""

    def __init__(self):
        super().__init__()
        self.unused = torch.nn.Parameter(torch.zeros(1))

    def forward(self, img0, img1, alpha, mask=None):
        return torch.roll(img0, int(round(float(alpha))), -1)  # magnify_sequence passes one alpha


def test_a_magnified_training_pair_reports_the_alpha_achieved_and_is_drawn():
    from magplus_lib.evaluation.notebook_figures import figure_training_pairs
    from magplus_lib.magnifier.accuracy import magnify_pair

    g = torch.Generator().manual_seed(0)
    texture = torch.nn.functional.avg_pool2d(torch.rand(1, 3, 40, 40, generator=g), 5, 1, 2)[0]
    frame0, frame1 = texture, torch.roll(texture, 1, -1)  # a 1 px shift to the right
    rows = magnify_pair(_ShiftBy(), frame0, frame1, [1, 2, 3])
    assert [r["alpha"] for r in rows] == [1.0, 2.0, 3.0]
    assert torch.equal(rows[1]["output"], torch.roll(texture, 2, -1))
    for r in rows:  # Farneback reads the shift the stand-in made, in units of the input's motion
        assert abs(r["achieved"] - r["alpha"]) < 0.2 * r["alpha"], r
    fig = figure_training_pairs([{"frame0": frame0, "frame1": frame1, "outputs": rows, "label": "pair 0"}])
    assert [ax.get_title() for ax in fig.axes] == ["I0", "It", "G, alpha 1", "G, alpha 2", "G, alpha 3"]
    assert fig.axes[3].get_xlabel() == f"2 -> {rows[1]['achieved']:.2f}"
    other = {"frame0": frame0, "frame1": frame1, "outputs": rows[:2], "label": "pair 1"}
    with pytest.raises(ValueError, match="pair 1 was magnified by other alphas"):
        figure_training_pairs([{"frame0": frame0, "frame1": frame1, "outputs": rows}, other])
