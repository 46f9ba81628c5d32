"""Pretraining pairs with real texture: photographs moved by a known smooth sub-pixel field.

SynthME's renders carry no natural texture or colour, so a magnifier pretrained on them alone blurs and
recolours a real face (issue 25). FlowMag pretrains on real video for this reason; offline, the real
photographs that install with the project's dependencies stand in: the natural images inside
scikit-image's wheel (`skimage/data`, read as files; scikit-image itself is not imported). matplotlib's
sample images (among them `grace_hopper.jpg`, a face) and skimage's one face (`astronaut.png`) are
reserved for evaluation and never used here.

Pair i is drawn from its own seeded generator (`seed`, i): an image, a square crop of random side and
place, a horizontal flip, then `known_motion.deformation_example` with a peak motion log-uniform in
`motion_px` (SynthME's generic-motion family, warped at the crop's resolution, at most twice the working
size, then resized). A pair is computed on first use and kept as 8-bit frames (as video stores them; a
pretraining run sees each pair about 30 times), so the set needs no disk and a resumed run reads the
same values as an uninterrupted one. `ExactTexturePairs` adds a factor alpha per pair and the exactly
magnified frame, the target of the magnifier's exact-target term (`pretrain.exact_target`).
"""

from __future__ import annotations

import importlib.util
import math
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from magplus_lib.data.clips import DataError

# Natural photographs and micrographs of skimage/data (synthetic charts, logos, binary masks and the
# 25 px LFW thumbnails are left out: no texture at the working size). astronaut.png, the one face, is
# held out with matplotlib's grace_hopper.jpg for the real-frame check (`known_motion.EVALUATION_FACES`).
TEXTURE_IMAGES = (
    "brick.png",
    "camera.png",
    "cell.png",
    "chelsea.png",
    "clock_motion.png",
    "coffee.png",
    "coins.png",
    "grass.png",
    "gravel.png",
    "hubble_deep_field.jpg",
    "ihc.png",
    "moon.png",
    "motorcycle_left.png",
    "motorcycle_right.png",
    "page.png",
    "retina.jpg",
    "rocket.jpg",
    "text.png",
)


# Held out of every training pair set: recipes on real texture are chosen on these first
# (benchmarks/pretrain_real_texture.py --dev), before the evaluation faces are read.
DEV_IMAGES = ("chelsea.png", "coffee.png")
TRAINING_IMAGES = tuple(name for name in TEXTURE_IMAGES if name not in DEV_IMAGES)


def image_folder() -> Path:
    """skimage/data of the installed scikit-image wheel."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            "texture pairs need scikit-image's bundled images: pip install scikit-image (make setup)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data"


@lru_cache(maxsize=1)
def load_images(names: tuple[str, ...] = TEXTURE_IMAGES) -> tuple[np.ndarray, ...]:
    """The photographs as (H, W, 3) uint8 RGB (grey ones repeated to three channels)."""
    import cv2

    folder = image_folder()
    out = []
    for name in names:
        path = folder / name
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            raise DataError(f"{path}: missing or unreadable texture image")
        out.append(np.ascontiguousarray(img[..., ::-1]))
    return tuple(out)


class TexturePairDataset(Dataset):
    """`count` pairs (I0, I1) float32 (3, size, size) in [0, 1]: a photograph crop and the same crop moved
    by a smooth field of peak log-uniform in `motion_px` (working pixels), crops of `images`."""

    def __init__(
        self, size: int, count: int, motion_px=(0.5, 4.0), seed: int = 0, images: tuple = TEXTURE_IMAGES
    ):
        if count < 1:
            raise ValueError(f"TexturePairDataset: count must be >= 1, got {count}")
        lo, hi = (float(v) for v in motion_px)
        if not 0 < lo <= hi:
            raise ValueError(f"TexturePairDataset: motion_px must be 0 < lo <= hi, got {motion_px}")
        self.size, self.count, self.motion_px, self.seed = int(size), int(count), (lo, hi), int(seed)
        unknown = sorted(set(images) - set(TEXTURE_IMAGES))
        if unknown or not images:
            raise ValueError(
                "TexturePairDataset: images must be a non-empty subset of TEXTURE_IMAGES, "
                f"got {unknown or images}"
            )
        self.images = load_images(tuple(images))
        self._kept: dict[int, tuple] = {}

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= i < self.count:
            raise IndexError(i)
        if i not in self._kept:
            self._kept[i] = tuple((f * 255).round().to(torch.uint8) for f in self._make(i))
        return tuple(f.float() / 255 for f in self._kept[i])

    def _patch(self, i: int) -> tuple[torch.Tensor, float, int]:
        """Item i's crop (3, S, S) in [0, 1], its peak motion (working px) and its field's seed."""
        import cv2

        rng = np.random.default_rng([self.seed, i])
        img = self.images[int(rng.integers(len(self.images)))]
        h, w = img.shape[:2]
        # crop side: from the working size (full detail) up to the whole short side (more context)
        low = min(self.size, h, w)
        side = int(round(math.exp(rng.uniform(math.log(low), math.log(min(h, w))))))
        y0, x0 = int(rng.integers(h - side + 1)), int(rng.integers(w - side + 1))
        crop = img[y0 : y0 + side, x0 : x0 + side]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        if side > 2 * self.size:  # warping at twice the working size keeps interpolation blur sub-pixel
            crop = cv2.resize(crop, (2 * self.size, 2 * self.size), interpolation=cv2.INTER_AREA)
        patch = torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1).float() / 255
        lo, hi = self.motion_px
        peak = math.exp(rng.uniform(math.log(lo), math.log(hi)))
        return patch, peak, int(rng.integers(2**31))

    def _make(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        from magplus_lib.magnifier.known_motion import deformation_example

        patch, peak, field_seed = self._patch(i)
        ex = deformation_example(patch, self.size, [], peak, field_seed)
        return ex["frame0"], ex["frame1"]


class ExactTexturePairs(TexturePairDataset):
    """Photograph pairs with a magnification factor each and the exactly magnified frame:
    (I0, I1, alpha, truth), alpha log2-uniform in `alpha_range` as the training loop draws it, truth =
    the crop moved by alpha times the pair's field (`known_motion.deformation_example`)."""

    def __init__(self, size, count, motion_px, alpha_range, seed: int = 2, images: tuple = TRAINING_IMAGES):
        super().__init__(size, count, motion_px, seed, images)
        lo, hi = (float(a) for a in alpha_range)
        if not 0 < lo <= hi:
            raise ValueError(f"ExactTexturePairs: alpha_range must be 0 < lo <= hi, got {alpha_range}")
        self.alpha_range = (lo, hi)

    def __getitem__(self, i: int):
        if not 0 <= i < self.count:
            raise IndexError(i)
        if i not in self._kept:
            from magplus_lib.magnifier.known_motion import deformation_example

            rng = np.random.default_rng([self.seed, i, 1])
            alpha = 2 ** rng.uniform(*(math.log2(a) for a in self.alpha_range))
            patch, peak, field_seed = self._patch(i)
            ex = deformation_example(patch, self.size, [alpha], peak, field_seed)
            frames = (ex["frame0"], ex["frame1"], ex["truth"][float(alpha)])
            self._kept[i] = (alpha, tuple((f * 255).round().to(torch.uint8) for f in frames))
        alpha, frames = self._kept[i]
        return (*(f.float() / 255 for f in frames[:2]), alpha, frames[2].float() / 255)
