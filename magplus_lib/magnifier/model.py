"""The alpha-conditioned magnifier (MagPlus / DeMagPlus generator), its checkpoints and inference.

The network is FlowMag's generator (Pan, Geng and Owens, 2023) rebuilt from its description: a 5-level
U-Net with BatchNorm/ReLU double convolutions, bilinear upsampling and a sigmoid output, fed the two
frames and a 32-D sine embedding of alpha tiled over the image (38 input channels). Module names
follow FlowMag's so that its released checkpoint converts by renaming; only the order of the six image
channels differs (ours: R0 G0 B0 R1 G1 B1, FlowMag's: R0 R1 G0 G1 B0 B1), which the converter permutes.

`FlowPriorMagUNet` is the same U-Net with a warp output (`magnifier.output: flowprior`): a network of
this profile's size, trained on SynthME renders, cannot paint a real face's texture and colour (issue
25), so the frame is moved instead of painted, starting from classical Lagrangian magnification.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from magplus_lib.magnifier.flow import ClassicalFlow, FlowConfig, warp

EMBED_DIM = 32
OUTPUTS = ("image", "flowprior")


@dataclasses.dataclass
class MagnifierConfig:
    """Profile section `magnifier:`: the generator's width and how the notebooks evaluate it."""

    width: int = 16
    output: str = "image"  # image: FlowMag's sigmoid; flowprior: FlowPriorMagUNet's warp (issue 25)
    flowmag_checkpoint: str | None = None  # FlowMag's released .pth: converted as the forward initialisation
    batch_size: int = 8  # frames per inference batch
    eval_alphas_mag: list = dataclasses.field(default_factory=lambda: [2.0, 3.0, 5.0, 7.0])
    eval_alphas_demag: list = dataclasses.field(default_factory=lambda: [1 / 2, 1 / 3, 1 / 5])
    eval_clips: int | None = 6  # held-out synthetic clips measured per alpha (None: all of them)
    eval_min_apex_px: float = 0.4  # skip clips whose apex motion (working size) is below Farneback's floor
    figure_alphas: list = dataclasses.field(default_factory=lambda: [3.0, 5.0, 7.0])
    # torch CPU threads for the notebooks (None: torch's default). On a shared 2-core machine one thread
    # per process avoids OpenMP oversubscription, which made training steps ~10x slower in our runs.
    threads: int | None = None

    def __post_init__(self):
        if self.output not in OUTPUTS:
            raise ValueError(f"magnifier.output must be one of {', '.join(OUTPUTS)}, got '{self.output}'")
        if self.flowmag_checkpoint and self.output != "image":
            raise ValueError(
                "magnifier.flowmag_checkpoint is FlowMag's image-output generator: it needs magnifier.output "
                f"'image', not '{self.output}'"
            )


# FlowMag's embedding multiplies by 2 * 3.141592 (a truncated pi); the released weights were trained
# with it, so we keep the same constant (the difference to 2*pi is below 2e-4 rad at alpha = 16).
_TWO_PI_FLOWMAG = 2 * 3.141592
MAX_ALPHA_PER_PASS = 16.0


def alpha_wavelengths(dim: int = EMBED_DIM, device=None, dtype=torch.float32) -> torch.Tensor:
    """lambda_k = 2 ** linspace(-3, 7, dim): geometric from 0.125 to 128."""
    return torch.pow(2.0, torch.linspace(-3.0, 7.0, dim, dtype=torch.float64)).to(device=device, dtype=dtype)


def alpha_embedding(alpha: torch.Tensor, dim: int = EMBED_DIM) -> torch.Tensor:
    """(B,) alphas -> (B, dim) sine embedding sin(2 pi alpha / lambda_k) (no parameters)."""
    alpha = torch.as_tensor(alpha, dtype=torch.float32).reshape(-1)
    lam = alpha_wavelengths(dim, device=alpha.device, dtype=alpha.dtype)
    return torch.sin(_TWO_PI_FLOWMAG * alpha[:, None] / lam[None, :])


def alpha_planes(
    alpha: torch.Tensor, h: int, w: int, mask: torch.Tensor | None = None, dim: int = EMBED_DIM
) -> torch.Tensor:
    """(B, dim, H, W) tiled embedding; with a soft mask m (H, W) or (B, 1, H, W) in [0, 1], the
    embedding is pe(alpha) * m + pe(1) * (1 - m) as FlowMag does (alpha where m = 1, identity elsewhere)."""
    pe = alpha_embedding(alpha, dim)[:, :, None, None].expand(-1, -1, h, w)
    if mask is None:
        return pe
    m = torch.as_tensor(mask, dtype=pe.dtype, device=pe.device)
    if m.dim() == 2:
        m = m[None, None]
    elif m.dim() == 3:
        m = m[:, None]
    if m.shape[-2:] != (h, w):
        raise ValueError(f"mask of size {tuple(m.shape[-2:])} does not match frames of size {(h, w)}")
    identity = alpha_embedding(torch.ones_like(torch.as_tensor(alpha, dtype=torch.float32).reshape(-1)), dim)
    identity = identity.to(pe.device)[:, :, None, None]
    return pe * m + identity * (1 - m)


class DoubleConv(nn.Module):
    """(3x3 conv with bias -> BatchNorm -> ReLU) twice; `mid` channels after the first conv."""

    def __init__(self, cin: int, cout: int, mid: int | None = None):
        super().__init__()
        mid = mid or cout
        self.double_conv = nn.Sequential(
            nn.Conv2d(cin, mid, 3, padding=1),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, cout, 3, padding=1),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.double_conv(x)


class Down(nn.Module):
    """2x2 max-pool then a double conv."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.maxpool_conv = nn.Sequential(nn.MaxPool2d(2), DoubleConv(cin, cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool_conv(x)


class Up(nn.Module):
    """Bilinear x2 upsampling, pad to the skip's size, concatenate [skip, up], double conv (mid = in/2)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
        self.conv = DoubleConv(cin, cout, cin // 2)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(x)
        dy = skip.shape[-2] - x.shape[-2]
        dx = skip.shape[-1] - x.shape[-1]
        x = F.pad(x, [dx // 2, dx - dx // 2, dy // 2, dy - dy // 2])
        return self.conv(torch.cat([skip, x], dim=1))


class OutConv(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class MagUNet(nn.Module):
    """G(I0, It, alpha) -> magnified It, (B, 3, H, W) in [0, 1]; 17,287,683 parameters at width 64.

    Encoder widths w, 2w, 4w, 8w, 8w (the bottleneck is halved because upsampling is bilinear);
    decoder 4w, 2w, w, w, then a 1x1 conv to RGB and a sigmoid. Any H x W works.
    """

    levels = 5

    def __init__(self, width: int = 64, embed_dim: int = EMBED_DIM):
        super().__init__()
        if width < 2 or width % 2:
            raise ValueError(f"MagUNet width must be an even number >= 2, got {width}")
        self.width = int(width)
        self.embed_dim = int(embed_dim)
        n = self.levels
        self.down_layers = nn.ModuleList()
        for i in range(n):
            cout = width * 2**i
            if i == 0:
                self.down_layers.append(DoubleConv(6 + embed_dim, cout))
            else:
                self.down_layers.append(Down(cout // 2, cout // 2 if i == n - 1 else cout))
        self.up_layers = nn.ModuleList()
        for i in range(n):
            cin = width * 2 ** (n - 1 - i)
            if i == n - 1:
                self.up_layers.append(OutConv(cin, 3))
            elif i == n - 2:
                self.up_layers.append(Up(cin, cin // 2))
            else:
                self.up_layers.append(Up(cin, cin // 4))

    def generator_input(
        self, img0: torch.Tensor, img1: torch.Tensor, alpha, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The 38-channel input: I0 (RGB), It (RGB), then the tiled alpha embedding."""
        if img0.shape != img1.shape or img0.dim() != 4 or img0.shape[1] != 3:
            raise ValueError(
                f"MagUNet expects two (B, 3, H, W) batches of equal shape, got {tuple(img0.shape)} "
                f"and {tuple(img1.shape)}"
            )
        b, _, h, w = img0.shape
        alpha = torch.as_tensor(alpha, dtype=torch.float32, device=img0.device).reshape(-1)
        if alpha.numel() == 1:
            alpha = alpha.expand(b)
        if alpha.numel() != b:
            raise ValueError(f"alpha has {alpha.numel()} values for a batch of {b}")
        pe = alpha_planes(alpha, h, w, mask, self.embed_dim).to(img0.dtype)
        return torch.cat([img0, img1, pe], dim=1)

    def forward(self, img0: torch.Tensor, img1: torch.Tensor, alpha, mask: torch.Tensor | None = None):
        return self.forward_input(self.generator_input(img0, img1, alpha, mask))

    def forward_input(self, x: torch.Tensor) -> torch.Tensor:
        """The U-Net on an already assembled (B, 6 + embed_dim, H, W) input."""
        return torch.sigmoid(self.head(x))

    def head(self, x: torch.Tensor) -> torch.Tensor:
        """The last layer's output before any activation."""
        skips = []
        for layer in self.down_layers:
            x = layer(x)
            skips.append(x)
        x = skips.pop()
        for layer, skip in zip(self.up_layers[:-1], reversed(skips)):
            x = layer(x, skip)
        return self.up_layers[-1](x)


# The prior's frames are read at this many times their size: at 1x the profile's Lucas-Kanade reads
# a sub-pixel field as 1.19 times itself, so the untrained warp overshot by 10-16%; at 2x it reads
# within 4% (docs/lab-notes.md, "the flow prior read at twice the size").
PRIOR_SCALE = 2


class FlowPriorMagUNet(MagUNet):
    """G(I0, It, alpha) = W(It, -(alpha - 1)(u0 + du)) + c: It warped by the magnified extra motion.

    u0 is the I0 -> It flow of a frozen classical estimator (`prior`, the profile's Lucas-Kanade) read
    on the frames upsampled PRIOR_SCALE times and brought back to their grid; du (2 channels) and a
    colour correction c (3 channels) are the U-Net's last layer, zero at the start, so the untrained
    model is classical Lagrangian magnification (Liu et al. 2005) and training refines it. Where a soft
    mask m is given, the gain is (alpha - 1) m, as FlowMag's mask blends towards the identity. The
    estimator has no weights: the checkpoint holds the U-Net and records `prior` as metadata.
    """

    def __init__(self, prior: FlowConfig, width: int = 64, embed_dim: int = EMBED_DIM):
        super().__init__(width=width, embed_dim=embed_dim)
        self.prior = dataclasses.replace(prior)
        if self.prior.estimator != "classical":
            raise ValueError(
                f"FlowPriorMagUNet needs the classical estimator as its prior, got '{self.prior.estimator}'"
            )
        last = self.up_layers[-1]
        last.conv = nn.Conv2d(last.conv.in_channels, 5, kernel_size=1)
        nn.init.zeros_(last.conv.weight)
        nn.init.zeros_(last.conv.bias)
        self.estimator = ClassicalFlow(self.prior)  # no parameters or buffers: not in the state dict

    def prior_flow(self, img0: torch.Tensor, img1: torch.Tensor) -> torch.Tensor:
        """u0: the estimator's I0 -> It flow read at PRIOR_SCALE times the size, in the frames' pixels."""
        with torch.no_grad(), torch.autocast(device_type=img0.device.type, enabled=False):
            up = [
                F.interpolate(x.float(), scale_factor=PRIOR_SCALE, mode="bilinear", align_corners=False)
                for x in (img0, img1)
            ]
            return F.avg_pool2d(self.estimator(*up), PRIOR_SCALE) / PRIOR_SCALE

    def forward(self, img0: torch.Tensor, img1: torch.Tensor, alpha, mask: torch.Tensor | None = None):
        out = self.head(self.generator_input(img0, img1, alpha, mask))
        b = img1.shape[0]
        a = torch.as_tensor(alpha, dtype=torch.float32, device=img1.device).reshape(-1).expand(b)
        gain = (a - 1).view(b, 1, 1, 1).to(out.dtype)
        if mask is not None:
            m = torch.as_tensor(mask, dtype=out.dtype, device=out.device)
            gain = gain * m.reshape(-1, 1, *m.shape[-2:])
        motion = self.prior_flow(img0, img1).to(out.dtype) + out[:, :2]
        moved = warp(img1.to(out.dtype), -gain * motion, padding_mode="border")
        return (moved + out[:, 2:]).clamp(0, 1)


def build_magnifier(cfg: MagnifierConfig, flow: FlowConfig | dict | None = None) -> MagUNet:
    """A fresh generator of kind `cfg.output`; `flow` (the profile's estimator) is a flowprior's prior."""
    from magplus_lib.harness.profiles import from_dict

    if cfg.output == "image":
        return MagUNet(width=cfg.width)
    if cfg.output == "flowprior":
        if flow is None or isinstance(flow, dict):
            flow = from_dict(FlowConfig, flow or {}, where="flow")
        return FlowPriorMagUNet(flow, width=cfg.width)
    raise ValueError(f"unknown magnifier.output '{cfg.output}' (known: {', '.join(OUTPUTS)})")


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
