# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python (magplus)
#     language: python
#     name: magplus
# ---

# %% [markdown]
# # 01 · Pretraining MagPlus (forward) and DeMagPlus (inverse) on generic frame pairs (paper 4)
#
# FlowMag's self-supervised objective (paper Eqs. 1-3): the generator G = G(I0, It, alpha) must produce a
# frame whose flow from I0, measured by a frozen estimator F, is alpha times the input's flow, and whose
# pixels, warped back to I0 (W(x, f): x warped by the flow f), match the input's:
#
# $$L_{mag} = \big\| \alpha\, F(I_0, I_t) - F(I_0, G) \big\|_1, \qquad
#   L_{color} = \big\| W(I_t, F(I_0, I_t)) - W(G, F(I_0, G)) \big\|_1, \qquad
#   L = 1.0\, L_{mag} + 10.0\, L_{color}.$$
#
# `direction=forward` trains from scratch (or from FlowMag's converted checkpoint) with alpha
# log2-uniform in [1, 16]; `direction=inverse` starts from the forward weights with alpha in [1/16, 1].
# On the default profile the pairs are SynthME's generic pairs and the flow estimator is the
# differentiable classical one; numbers are about synthetic data.
#
# Two profile settings change what the generator is and what it learns from (issue 25):
# `magnifier.output: flowprior` moves the frame instead of painting it,
# $G = W\big(I_t, -(\alpha - 1)(u_0 + \Delta u)\big) + c$, with $u_0$ the classical estimator's
# $I_0 \to I_t$ flow read at twice the size and $\Delta u$, $c$ the network's output (zero at the start:
# classical Lagrangian magnification); `pretrain.exact_target` adds photograph pairs whose field $d$ is
# known, so the exactly magnified frame $I^{\alpha}(x) = I_0(x - \alpha d(x))$ is known too, and the loss
# $L + w\,\| G(I_0, I_1, \alpha) - I^{\alpha} \|_1$.

# %% tags=["parameters"]
profile = "ci"
results_dir = "results/ci"
seed = 0
device = "auto"
image_size = 32
datasets = ["samm", "casme3"]
data = {}
flow = {}
magnifier = {}
pretrain = {"steps": 4, "batch_size": 2, "checkpoint_every": 2}
direction = "forward"

# %%
import dataclasses
import time
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import torch
from torch.utils.data import Subset

from magplus_lib.data import datasets as data_sets
from magplus_lib.data import pairs
from magplus_lib.data.texture_pairs import ExactTexturePairs
from magplus_lib.evaluation.reporting import figure_loss_curves, save_figure
from magplus_lib.harness.atomicio import write_text
from magplus_lib.harness.profiles import from_dict
from magplus_lib.harness.runtime import pick_device, seed_everything
from magplus_lib.magnifier import train_config, training
from magplus_lib.magnifier.flow import build_flow_estimator
from magplus_lib.magnifier.model import MagnifierConfig, build_magnifier, count_parameters
from magplus_lib.magnifier.weights import load_flowmag_checkpoint, load_magnifier

seed_everything(seed)
dev = pick_device(device)
res = Path(results_dir)
mcfg, stage, tcfg, dcfg = train_config.notebook_configs(
    magnifier, pretrain, "pretrain", data, direction, image_size, seed
)
name = {"forward": "magplus_pretrain", "inverse": "demagplus_pretrain"}[direction]
ckpt = res / "checkpoints" / f"{name}.safetensors"
log_csv = res / "logs" / f"{name}.csv"
print(f"{direction}: alpha in [{tcfg.alpha_min:g}, {tcfg.alpha_max:g}]; {tcfg.steps} steps")

# %% [markdown]
# ## Training pairs and the frozen flow estimator

# %%
# DeMagPlus attenuates the large motion MagPlus and the backbones produce; when the profile has a pair
# set for that (SynthME's generic_inverse/), the inverse stage trains on it, else on the shared pairs.
pair_root = dcfg.pretrain_pairs_root(direction, res)
generic = pairs.GenericPairDataset(pair_root, image_size)
train_set = generic if stage.max_pairs is None else Subset(generic, range(min(stage.max_pairs, len(generic))))
flow_net = build_flow_estimator(flow)
print(f"{len(train_set)} pairs from {pair_root}; flow estimator: {type(flow_net).__name__}")
exact = stage.exact(direction)
exact_pairs = None
if exact is not None:  # rendered on first use: no disk
    exact_pairs = ExactTexturePairs(
        image_size, exact.pairs, exact.motion_px[direction], (tcfg.alpha_min, tcfg.alpha_max)
    )
    print(
        f"+ {exact.pairs} photograph pairs with their exact target (weight {exact.weight:g}, peak motion "
        f"{exact.motion_px[direction]} px)"
    )

# %% [markdown]
# ## Initialisation
# Forward: a fresh U-Net, or FlowMag's released generator when `magnifier.flowmag_checkpoint` is set.
# Inverse: the forward pretrained weights (paper 4, "initialized from the forward pretrained weights").

# %%
if direction == "forward":
    if mcfg.flowmag_checkpoint:
        model = load_flowmag_checkpoint(mcfg.flowmag_checkpoint)
        print(f"initialised from FlowMag's checkpoint {mcfg.flowmag_checkpoint}")
    else:
        torch.manual_seed(seed)
        model = build_magnifier(mcfg, flow)
else:
    forward_ckpt = res / "checkpoints" / "magplus_pretrain.safetensors"
    if not training.checkpoint_complete(forward_ckpt):
        raise FileNotFoundError(f"{forward_ckpt}: run the forward pretraining first (direction=forward)")
    model = load_magnifier(forward_ckpt)
print(f"{type(model).__name__} width {model.width}: {count_parameters(model):,} parameters")
# The inverse run (or one from FlowMag's weights) records its starting weights, so a changed forward
# pretraining retrains it; a fresh U-Net is fixed by the seed and width, which the checkpoint holds.
init_id = training.state_digest(model) if direction == "inverse" or mcfg.flowmag_checkpoint else None

# %% [markdown]
# ## Training (resumes from the last checkpoint if interrupted)

# %%
t0 = time.perf_counter()
meta = {
    "direction": direction,
    "stage": "pretrain",
    "profile": profile,
    "flow": flow,
    "image_size": image_size,
    **({"exact_target": dataclasses.asdict(exact)} if exact is not None else {}),
}
history = training.train_magnifier(
    model,
    train_set,
    flow_net,
    tcfg,
    ckpt,
    log_csv,
    device=dev,
    meta=meta,
    init_id=init_id,
    exact_pairs=exact_pairs,
)
print(f"{ckpt} ready ({time.perf_counter() - t0:.1f} s in this run)")

# %%
history = pd.read_csv(log_csv) if log_csv.is_file() else history
fig = figure_loss_curves(
    history, f"Pretraining {('MagPlus' if direction == 'forward' else 'DeMagPlus')} ({profile})"
)
save_figure(fig, f"pretrain_{direction}_loss", res / "figures")

# %% [markdown]
# ## What the trained model does to a training pair
# Three stored pairs (before augmentation), each magnified by two alphas of the training range; under
# each output, the alpha requested -> the alpha achieved, read by Farneback flow over the pair's
# motion region (1 = the input's motion). The next section measures this on held-out clips.

# %%
from magplus_lib.evaluation.notebook_figures import figure_training_pairs
from magplus_lib.magnifier.accuracy import magnify_pair

trained = load_magnifier(ckpt)
shown_alphas = [2.0, 8.0] if direction == "forward" else [0.5, 0.125]
shown = []
for i in sorted({0, len(train_set) // 2, len(train_set) - 1}):
    frame0, frame1 = train_set[i]
    outputs = magnify_pair(trained, frame0, frame1, shown_alphas)
    shown.append({"frame0": frame0, "frame1": frame1, "outputs": outputs, "label": f"pair {i}"})
fig = figure_training_pairs(shown, f"{direction}: training pairs, requested -> achieved alpha")
save_figure(fig, f"pretrain_{direction}_pairs", res / "figures")

# %% [markdown]
# ## Magnification accuracy of the pretrained model on held-out clips
# Measured with Farneback flow (independent of the training estimator). MagPlus: the test subjects'
# clips of the first dataset; DeMagPlus: the macro clips (SynthME's macro corpus; on real data, which
# has none, the test clips). With SynthME's ground truth the exactly magnified frame is rendered;
# real data carries no ground-truth motion, so its clips' onset face crops are moved by a known
# smooth field d instead, I1(x) = I0(x - d(x)), whose exact magnification is I0(x - alpha d(x))
# (`known_motion`). The fine-tuning notebook repeats this after fine-tuning.

# %%
from magplus_lib.data import splits, synthme
from magplus_lib.data.clips import DataError
from magplus_lib.magnifier import known_motion, real_frames
from magplus_lib.magnifier.accuracy import held_out_examples, measure_examples

model = load_magnifier(ckpt)
alphas = mcfg.eval_alphas_mag if direction == "forward" else mcfg.eval_alphas_demag
ds_name = datasets[0]
ds_root = dcfg.root(ds_name, res)
test_clips = list(
    splits.select(
        data_sets.load_clips(ds_name, ds_root), splits.load_split(res / "splits" / f"{ds_name}.csv"), "test"
    )
)
if direction == "forward":
    eval_root, clips = ds_root, test_clips
elif dcfg.roots.get("macro"):
    eval_root = dcfg.root("macro", res)
    clips = list(synthme.load_macro_clips(eval_root))
else:
    print(f"WARNING: no macro corpus (data.roots.macro): DeMagPlus is measured on {ds_name}'s test clips")
    eval_root, clips = ds_root, test_clips
try:
    truths = synthme.load_ground_truth(eval_root)
except DataError as exc:  # real data has no ground truth; any other error must surface
    print(f"WARNING: no synthetic ground truth ({exc}): a known field moves the clips' real onset frames")
    truths = None
if truths is not None:
    examples = held_out_examples(
        truths, clips, image_size, alphas, dcfg.crop, limit=mcfg.eval_clips, min_apex_px=mcfg.eval_min_apex_px
    )
else:
    examples = known_motion.real_frame_examples(
        clips, image_size, alphas, dcfg.crop, mcfg.eval_clips, real_frames.PEAK_PX[direction]
    )
if not examples:
    raise DataError(f"no held-out clip of {eval_root} to measure the {direction} magnifier's accuracy on")
acc = measure_examples(model, examples, alphas)
summary = acc.groupby("alpha")[["achieved", "achieved_gt", "psnr_output", "psnr_unmagnified"]].median()
summary["ratio"] = summary["achieved"] / summary.index
print(f"{len(examples)} clips")
print(summary.round(3))
fig, ax = plt.subplots(figsize=(4, 4))
ax.loglog(acc["alpha"], acc["achieved"], "o", alpha=0.3, label="clips")
ax.loglog(summary.index, summary["achieved"], "s-", label="median")
lim = [min(alphas) / 1.5, max(alphas) * 1.5]
ax.loglog(lim, lim, "k--", lw=1, label="ideal")
ax.set_xlabel("requested alpha")
ax.set_ylabel("achieved (Farneback)")
ax.set_title(f"pretrained {direction}")
ax.legend()
save_figure(fig, f"pretrain_{direction}_accuracy", res / "figures")

# %% [markdown]
# ## The same check on real photographs (issue 25)
# Two real face photographs the project never trains on (matplotlib's Grace Hopper, scikit-image's
# astronaut), each moved by 8 known smooth fields and magnified by each alpha, at the working size and
# twice it. Per size and alpha: the motion achieved over the motion read the same way on the exactly
# magnified frame (1 = exact), the PSNR gain over returning the input unchanged (the trivial
# baseline), the colour shift and the motion added where nothing moves; medians with bootstrap 95%
# intervals (n = faces x fields). The bar (`real_frames.RealFrameBar`) was fixed before measuring.

# %%
rows, rf_summary, rf_verdict = real_frames.check(model, direction, image_size, dcfg.crop)
write_text(res / "metrics" / f"realframe_pretrain_{direction}.csv", rf_summary.to_csv(index=False))
print(real_frames.table(rf_summary).to_string(index=False))
print(
    f"beats the input: {rf_verdict['beats_input']}; meets the bar: {rf_verdict['meets_bar']}"
    + (f" (fails at {', '.join(rf_verdict['failing'])})" if rf_verdict["failing"] else "")
)
rf_alpha = real_frames.RealFrameBar().alphas(direction)[-1]
fig = real_frames.montage(
    model,
    real_frames.face_patch("grace_hopper", dcfg.crop),
    image_size,
    rf_alpha,
    real_frames.PEAK_PX[direction],
)
save_figure(fig, f"realframe_pretrain_{direction}", res / "figures")
