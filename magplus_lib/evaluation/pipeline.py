"""The magnify -> generate -> restore pipeline (paper Fig. 2) and the four settings of its Table 4.

``transfer(driver, source, backbone, magplus=None, demagplus=None, alpha_mag=1, alpha_demag=1)``:

=============================  ===========  ===========
setting                        magplus      demagplus
=============================  ===========  ===========
Backbone only                  None         None
MagPlus -> backbone            model        None
Backbone -> DeMagPlus          None         model
MagPlus -> backbone -> DeMag   model        model
=============================  ===========  ===========

MagPlus magnifies the driver's motion against driver frame 0; DeMagPlus attenuates the generated
sequence's motion against *its* first frame (the backbone renders driver frame 0 as the neutral source
pose). Both are applied with ``magplus_lib.magnifier.inference.magnify_sequence(model, frames, alpha,
reference=0)``, imported lazily; ``apply_magnifier`` also accepts any callable with that signature.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from magplus_lib.backbones.base import check_inputs


def apply_magnifier(model, frames: torch.Tensor, alpha: float) -> torch.Tensor:
    """Run a magnifier on `frames` against frame 0; `model` is a MagUNet or a callable
    ``f(frames, alpha, reference=0)``. alpha == 1 returns the frames unchanged without running it."""
    if float(alpha) == 1.0:
        return frames
    if isinstance(model, torch.nn.Module):
        from magplus_lib.magnifier.inference import magnify_sequence

        return magnify_sequence(model, frames, float(alpha), reference=0)
    if callable(model):
        return model(frames, float(alpha), reference=0)
    raise TypeError(f"magnifier must be a torch module or a callable, got {type(model).__name__}")


def transfer(
    driver: torch.Tensor,
    source: torch.Tensor,
    backbone,
    magplus=None,
    demagplus=None,
    alpha_mag: float = 1.0,
    alpha_demag: float = 1.0,
) -> torch.Tensor:
    """Animate `source` (3, H, W) with `driver` (T, 3, H, W); returns (T, 3, H, W) in [0, 1].

    `backbone` is a `Backbone` (or anything with ``animate(source, driving)``); `magplus` /
    `demagplus` are magnifiers (None = skipped). A setting that names a magnifier but gives alpha = 1
    is legal and equals skipping it.
    """
    check_inputs(source, driver, "transfer")
    if alpha_mag <= 0 or alpha_demag <= 0:
        raise ValueError(
            f"transfer: alphas must be positive, got alpha_mag={alpha_mag}, alpha_demag={alpha_demag}"
        )
    driving = driver
    if magplus is not None:
        driving = apply_magnifier(magplus, driver, alpha_mag).to(driver.dtype).clamp(0, 1)
    animate: Callable = backbone.animate if hasattr(backbone, "animate") else backbone
    generated = animate(source, driving)
    if demagplus is not None:
        generated = apply_magnifier(demagplus, generated, alpha_demag).to(generated.dtype).clamp(0, 1)
    return generated
