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
# # 00 · Data: SynthME (or the real SAMM / CAS(ME)^3), subject splits, face crops
#
# On the `ci` and `default` profiles this notebook renders **SynthME**, a synthetic micro/macro-expression
# corpus written in the exact on-disk formats of SAMM and CAS(ME)^3 Part A (spreadsheets and their quirks
# included), so that everything downstream runs through the real loaders. Every SynthME number and
# picture is about synthetic data. On `full` it indexes the user's licensed copies instead (and samples
# generic pretraining pairs from their videos). It then writes subject-independent splits to
# `results/<profile>/splits/<dataset>.csv` and fills the face-crop cache at the pipeline's size.

# %% tags=["parameters"]
profile = "ci"
results_dir = "results/ci"
seed = 0
image_size = 32
datasets = ["samm", "casme3"]
data = {
    "roots": {"samm": "data/SAMM", "casme3": "data/CASME3", "macro": "data/macro", "generic": "data/generic"},
    "crop": {"detector": "haar"},
    "generic_filter": {"filter_size": None},
}
synthme = {
    "render_size": 48,
    "samm_subjects": 3,
    "casme3_subjects": 3,
    "macro_subjects": 1,
    "generic_pairs": 10,
    "generic_size": 48,
    "samm_duration_s": [0.04, 0.06],
    "casme3_duration_s": [0.2, 0.3],
    "micro_clips_per_subject": {"happiness": 1, "surprise": 1, "anger": 1, "other": 1},
    "macro_clips_per_subject": {"happiness": 1, "surprise": 1},
}

# %%
import logging
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from magplus_lib.data import datasets as data_sets
from magplus_lib.data import faces
from magplus_lib.data import synthme as sm
from magplus_lib.data.clips import LABELS3, load_frames, summary
from magplus_lib.evaluation.reporting import save_figure
from magplus_lib.magnifier.flow import farneback_flow

logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
res = Path(results_dir)
fig_dir = res / "figures"
torch.manual_seed(seed)

# %% [markdown]
# ## Build or index the corpora, write the splits, fill the crop cache

# %%
t0 = time.perf_counter()
stage = data_sets.prepare(data, synthme, datasets, res, seed, image_size)
stage_seconds = time.perf_counter() - t0
dcfg = stage["config"]
print(f"data stage: {stage_seconds:.1f} s  { ({k: round(v, 1) for k, v in stage['seconds'].items()}) }")
if stage["stamp"]:
    print("SynthME corpora:", stage["stamp"]["corpora"])
    for folder in sm.corpora(stage["stamp"]["config"]).values():
        print(f"  {folder:8s} {data_sets.folder_bytes(res / 'data' / folder) / 2**20:7.1f} MiB")
print("face boxes:", stage["crop_stats"], "(fallback = Haar found no face, centre box used)")

# %% [markdown]
# ## What the loaders read: samples, subjects and classes (3-class protocol), and the quirks they met

# %%
clips = stage["clips"]
table = summary([c for name in datasets for c in clips[name]])
if not stage["stamp"]:
    ref = pd.DataFrame(data_sets.REFERENCE_COUNTS).T
    print("reference counts on the real data:\n", ref)
print(table.to_string(index=False))
for name in datasets:
    for kind, msgs in clips[name].issues.items():
        print(f"{name}: {len(msgs)} x {kind}")

# %% [markdown]
# ## Subject-independent splits: classes and subjects per part

# %%
rows = []
for name in datasets:
    part_of = dict(zip(stage["splits"][name]["subject"], stage["splits"][name]["part"]))
    for c in clips[name]:
        rows.append(
            {
                "dataset": name,
                "part": part_of[c.subject],
                "subject": c.subject,
                "label3": c.label3 or "excluded",
            }
        )
counts = pd.DataFrame(rows)
per_part = counts.pivot_table(
    index=["dataset", "part"], columns="label3", values="subject", aggfunc="count", fill_value=0
)
per_part["subjects"] = counts.groupby(["dataset", "part"])["subject"].nunique()
print(per_part)
for name in datasets:
    sp = stage["splits"][name]
    parts = [set(sp.loc[sp.part == p, "subject"]) for p in ("train", "val", "test")]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2]), "subject in two parts"

# %% [markdown]
# ## Subjects (onset frames, face-cropped as the pipeline sees them)

# %%
cache = dcfg.cache_dir(res)
fig, axes = plt.subplots(len(datasets), 8, figsize=(12, 1.7 * len(datasets)), squeeze=False)
for r, name in enumerate(datasets):
    firsts = {}
    for c in clips[name]:
        firsts.setdefault(c.subject, c)
    for k, ax in enumerate(axes[r]):
        ax.axis("off")
        if k < len(firsts):
            c = list(firsts.values())[k]
            ax.imshow(faces.cropped_frames(c, image_size, cache, dcfg.crop)[c.onset_index].permute(1, 2, 0))
            ax.set_title(f"{name} {c.subject}", fontsize=7)
fig.suptitle("SynthME subjects (synthetic)" if stage["stamp"] else "subjects")
save_figure(fig, "data_subjects", fig_dir)
plt.show()

# %% [markdown]
# ## Apex frames per class with their motion fields
# Ground-truth displacement onset -> apex for SynthME (Farneback for real data), magnitude in colour and
# direction as arrows, at the render size (SynthME) or the crop size (real data).


# %%
def show_field(ax, field, step):
    mag = np.linalg.norm(field, axis=-1)
    im = ax.imshow(mag, cmap="magma")
    h, w = mag.shape
    ys, xs = np.mgrid[step // 2 : h : step, step // 2 : w : step]
    ax.quiver(
        xs,
        ys,
        field[ys, xs, 0],
        -field[ys, xs, 1],
        color="cyan",
        scale_units="xy",
        scale=max(mag.max(), 1e-6) / step,
        width=0.01,
    )
    ax.axis("off")
    return im


for name in datasets:
    root = dcfg.root(name, res)
    truth = sm.load_ground_truth(root) if stage["stamp"] else None
    classes = list(LABELS3) + [None]
    fig, axes = plt.subplots(3, len(classes), figsize=(3 * len(classes), 8.4), squeeze=False)
    for k, lab in enumerate(classes):
        pick = [c for c in clips[name] if c.label3 == lab]
        for ax in axes[:, k]:
            ax.axis("off")
        if not pick:
            continue
        c = pick[0]
        if truth is not None:
            t = truth[c.clip_id]
            a = t.spec.frame_numbers.index(t.spec.apex)
            frames = load_frames(c)
            field = t.displacement()[a].permute(1, 2, 0).numpy()
        else:
            frames = faces.cropped_frames(c, image_size, cache, dcfg.crop)
            a = c.apex_index
            field = farneback_flow(frames[c.onset_index], frames[a])
        axes[0, k].imshow(frames[0].permute(1, 2, 0))
        axes[0, k].set_title(f"{lab or 'excluded'}: {c.emotion}\n{c.clip_id} onset", fontsize=8)
        axes[1, k].imshow(frames[a].permute(1, 2, 0))
        axes[1, k].set_title(f"apex (AU {c.action_units})", fontsize=8)
        im = show_field(axes[2, k], field, max(4, field.shape[0] // 12))
        axes[2, k].set_title(f"|motion| max {np.linalg.norm(field, axis=-1).max():.2f} px", fontsize=8)
        fig.colorbar(im, ax=axes[2, k], fraction=0.046)
    fig.suptitle(f"{name}: apex frames per 3-class label" + (" (SynthME, synthetic)" if truth else ""))
    save_figure(fig, f"data_apex_{name}", fig_dir)
    plt.show()

# %% [markdown]
# ## Motion magnitude: micro vs macro
# Farneback flow onset -> apex measured on the face crops at the pipeline size (99th percentile of
# |flow| per clip), and for SynthME the ground-truth peak displacement at the render size.

# %%
groups = {name: list(clips[name]) for name in datasets}
if stage["stamp"] and "macro" in dcfg.roots:
    groups["macro (SynthME)"] = sm.load_macro_clips(dcfg.root("macro", res))
rows = []
for group, cs in groups.items():
    for c in cs:
        fr = faces.cropped_frames(c, image_size, cache, dcfg.crop)
        flow = farneback_flow(fr[c.onset_index], fr[c.apex_index])
        row = {
            "group": group,
            "clip_id": c.clip_id,
            "farneback_p99_px": float(np.percentile(np.linalg.norm(flow, axis=-1), 99)),
        }
        rows.append(row)
motion = pd.DataFrame(rows)
if stage["stamp"]:
    amp = {}
    for key, folder in (("samm", "SAMM"), ("casme3", "CASME3"), ("macro (SynthME)", "macro")):
        if key in groups:
            amp.update(
                {
                    (key, cid): t.spec.amplitude_px
                    for cid, t in sm.load_ground_truth(res / "data" / folder).items()
                }
            )
    motion["gt_peak_px_render"] = [amp.get((g, cid), np.nan) for g, cid in zip(motion.group, motion.clip_id)]
print(motion.groupby("group").describe().T.round(3))
cols = [c for c in ("farneback_p99_px", "gt_peak_px_render") if c in motion]
fig, axes = plt.subplots(1, len(cols), figsize=(5.5 * len(cols), 3.5), squeeze=False)
for ax, col in zip(axes[0], cols):
    for group, sub in motion.groupby("group"):
        ax.hist(sub[col], bins=20, alpha=0.6, label=group)
    ax.set_xlabel(col.replace("_", " "))
    ax.set_ylabel("clips")
    ax.legend(fontsize=8)
axes[0, 0].set_title(f"Farneback onset->apex at {image_size} px")
if len(cols) > 1:
    axes[0, 1].set_title("SynthME ground truth (render size)")
save_figure(fig, "data_motion", fig_dir)
plt.show()
