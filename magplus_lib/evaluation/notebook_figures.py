"""Pictures of what a notebook computed, for the reader stepping through it: training pairs and their
magnified outputs (01), the evaluator's two input streams (04) and generated frames beside their driver
(06).

The evaluator (`mer`) sees one clip as two images: the apex frame, and the Farneback flow from onset to
apex with its magnitude. Flow is shown the usual way: hue = direction, brightness = speed, scaled by
the largest speed in the figure so that clips can be compared.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def _hwc(img) -> np.ndarray:
    return torch.as_tensor(img).float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()


def _image_grid(rows: list[list[np.ndarray]], heads: list[str], labels: list[str], title: str):
    """A figure of images (H, W, 3), one list per row, column titles on the first row, row labels."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(rows), len(heads), figsize=(2 * len(heads), 2.1 * len(rows)), squeeze=False)
    for i, images in enumerate(rows):
        for j, (img, head) in enumerate(zip(images, heads, strict=True)):
            axes[i, j].imshow(img, interpolation="nearest")
            axes[i, j].set_title(head if i == 0 else "", fontsize=8)
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
        axes[i, 0].set_ylabel(labels[i], fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def flow_to_rgb(flow, max_speed: float | None = None) -> np.ndarray:
    """(H, W, 3) float in [0, 1] from a flow (2, H, W) in pixels: hue = direction (0 = +x, red; a
    quarter turn per 90 degrees counter-clockwise in image coordinates), value = speed / `max_speed`
    (default: this flow's largest speed), full saturation. A zero flow is black."""
    import matplotlib.colors as mcolors

    f = torch.as_tensor(flow, dtype=torch.float64).cpu().numpy()
    if f.ndim != 3 or f.shape[0] != 2:
        raise ValueError(f"flow_to_rgb: expected a flow (2, H, W), got shape {tuple(f.shape)}")
    speed = np.hypot(f[0], f[1])
    top = float(speed.max()) if max_speed is None else float(max_speed)
    angle = np.mod(np.arctan2(-f[1], f[0]), 2 * np.pi)  # image y points down: -y is "up"
    hsv = np.stack(
        [angle / (2 * np.pi), np.ones_like(speed), np.clip(speed / top, 0, 1) if top > 0 else speed * 0],
        axis=-1,
    )
    return mcolors.hsv_to_rgb(hsv)


def figure_two_stream(examples: Sequence[dict], title: str | None = None):
    """Rows of (onset, apex, flow onset -> apex): the evaluator's two streams for a few clips.

    Each example: {"onset", "apex"} images (3, H, W) in [0, 1], "flow" (2, S, S) pixels at the
    evaluator's input size, "label"."""
    if not examples:
        raise ValueError("figure_two_stream: no examples")
    top = max(float(torch.as_tensor(ex["flow"]).norm(dim=0).max()) for ex in examples)
    return _image_grid(
        [[_hwc(ex["onset"]), _hwc(ex["apex"]), flow_to_rgb(ex["flow"], top)] for ex in examples],
        ["onset", "apex (stream 1)", "flow (stream 2)"],
        [ex.get("label", "") for ex in examples],
        title or f"what the evaluator reads (flow brightness: speed, full = {top:.2f} px)",
    )


def figure_generated(rows: Sequence[dict], settings: Sequence[str], title: str | None = None):
    """Rows of (source, driver apex, the generated apex of each setting): what 06 produced.

    Each row: {"source", "driver"} images (3, H, W) in [0, 1], {setting: image} under "generated",
    and "label"."""
    if not rows or not settings:
        raise ValueError("figure_generated: needs at least one row and one setting")
    for i, row in enumerate(rows):
        missing = [s for s in settings if s not in row["generated"]]
        if missing:
            raise ValueError(f"figure_generated: row {i} has no frame for setting(s) {missing}")
    return _image_grid(
        [
            [_hwc(im) for im in (r["source"], r["driver"], *(r["generated"][s] for s in settings))]
            for r in rows
        ],
        ["source", "driver (apex)", *settings],
        [r.get("label", "") for r in rows],
        title or "",
    )


def figure_training_pairs(examples: Sequence[dict], title: str | None = None):
    """Rows of (I0, It, G(I0, It, alpha) for each alpha), each output labelled with the alpha requested
    and the alpha achieved (Farneback, `accuracy.magnify_pair`).

    Each example: {"frame0", "frame1"} images (3, H, W) in [0, 1], "outputs": [{"alpha", "output",
    "achieved"}] (the same alphas in every row), and "label"."""
    if not examples or not examples[0]["outputs"]:
        raise ValueError("figure_training_pairs: needs at least one pair and one alpha")
    alphas = [o["alpha"] for o in examples[0]["outputs"]]
    for i, ex in enumerate(examples):
        if [o["alpha"] for o in ex["outputs"]] != alphas:
            raise ValueError(f"figure_training_pairs: pair {i} was magnified by other alphas than pair 0")
    fig = _image_grid(
        [
            [_hwc(ex["frame0"]), _hwc(ex["frame1"]), *(_hwc(o["output"]) for o in ex["outputs"])]
            for ex in examples
        ],
        ["I0", "It", *(f"G, alpha {a:g}" for a in alphas)],
        [ex.get("label", "") for ex in examples],
        title or "training pairs and the magnifier's output (requested -> achieved alpha)",
    )
    axes = np.array(fig.axes).reshape(len(examples), 2 + len(alphas))
    for i, ex in enumerate(examples):
        for j, o in enumerate(ex["outputs"]):
            axes[i, 2 + j].set_xlabel(f"{o['alpha']:g} -> {o['achieved']:.2f}", fontsize=8)
    fig.tight_layout()
    return fig
