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
# # 04 · The frozen MER evaluator (paper 5.1) and the "Original" row
#
# Trains the two-stream recogniser (apex RGB + onset-to-apex Farneback flow, ResNet-18 each, 256-D
# projections, gated concatenation, linear head, class-weighted cross-entropy with label smoothing) on
# the real clips of the training subjects, freezes it, and scores it on the real test clips: the
# "Original" row of Table 1. The same frozen models later score every generated clip. One evaluator
# is trained per seed of `evaluator.seeds` (same data, same recipe): every recognition score of the
# study is the mean over them, with their spread beside it. On the default profile "real" means
# SynthME: the numbers are about synthetic data.

# %% tags=["parameters"]
profile = "ci"
results_dir = "results/ci"
seed = 0
device = "auto"
image_size = 32
dataset = "samm"
data = {}
evaluator = {}
generation = {}

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import torch

from magplus_lib.data.clips import LABELS3
from magplus_lib.evaluation import generation as gen
from magplus_lib.evaluation import mer
from magplus_lib.evaluation.notebook_figures import figure_two_stream
from magplus_lib.evaluation.reporting import save_figure
from magplus_lib.harness.atomicio import atomic_path, write_json
from magplus_lib.harness.profiles import from_dict
from magplus_lib.harness.runtime import pick_device, seed_everything

seed_everything(seed)
dev = pick_device(device)
res = Path(results_dir)
cfg = from_dict(mer.MERConfig, evaluator, "evaluator")
gcfg = from_dict(gen.GenerationConfig, generation, "generation")
classes = list(LABELS3)
ckpts = res / "checkpoints"

# %% [markdown]
# ## Clips of the training and test subjects
# Each clip is cut to onset..apex (thinned to `generation.max_frames` exactly as for generation, so the
# evaluator sees real and generated clips the same way); the evaluator uses its onset and apex frames.

# %%
parts, frames_of = gen.dataset_parts(dataset, data, res, image_size)
clips = {
    p: gen.eval_clips_from(parts[p], frames_of, gcfg.max_frames, None, gcfg.through_offset)
    for p in ("train", "val", "test")
}
counts = pd.DataFrame(
    {p: pd.Series([c.label for c in cs]).value_counts() for p, cs in clips.items()}
).reindex(classes)
counts.fillna(0).astype(int)


# %%
def inputs(cs):
    pairs = [mer.mer_inputs(c.frames, c.onset_pos, c.apex_pos, cfg.input_size) for c in cs]
    return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])


x_train = inputs(clips["train"])
y_train = torch.tensor([classes.index(c.label) for c in clips["train"]])

# %% [markdown]
# ## What the evaluator reads: two streams per clip
# Stream 1 is the apex frame; stream 2 is the Farneback flow $u$ from onset to apex, given to the
# network as $(u_x, u_y, \lVert u \rVert)$. Below: the first training clip of each class (flow colour =
# direction, brightness = speed).

# %%
firsts = [next(c for c in clips["train"] if c.label == k) for k in classes]
examples = [
    {
        "onset": c.frames[c.onset_pos],
        "apex": c.frames[c.apex_pos],
        "flow": mer.mer_inputs(c.frames, c.onset_pos, c.apex_pos, cfg.input_size)[1][:2],
        "label": f"{c.label}\n{c.clip_id}",
    }
    for c in firsts
]
fig = figure_two_stream(examples)
save_figure(fig, f"evaluator_inputs_{dataset}", res / "figures")
plt.show()

# %% [markdown]
# ## Training, once per evaluator seed (a checkpoint is reused when its configuration, seed and
# training clips are unchanged)
#
# The majority class of the training clips is recorded too: the tables' "majority class" row is the
# classifier that answers it for every test clip.

# %%
models = {}
for s in cfg.seeds:
    log_path = res / "logs" / f"mer_{dataset}_seed{s}.csv"
    model, meta, reused = mer.fit_or_reuse(
        mer.evaluator_path(ckpts, dataset, s),
        cfg,
        *x_train,
        y_train,
        classes,
        seed=int(s),
        log_path=log_path,
        device=dev,
        meta={"dataset": dataset},
    )
    models[int(s)] = model
    print(("reused " if reused else "trained ") + str(mer.evaluator_path(ckpts, dataset, s)))
    history = pd.read_csv(log_path)
    ax = history.plot(x="epoch", y=["loss", "train_accuracy"], secondary_y="train_accuracy", figsize=(6, 3))
    ax.set_title(f"MER evaluator (seed {s}) on {dataset} (training subjects)")
    plt.show()
train_counts = pd.Series([c.label for c in clips["train"]]).value_counts().reindex(classes, fill_value=0)
write_json(
    res / "metrics" / f"evaluator_{dataset}.json",
    {
        "dataset": dataset,
        "seeds": [int(s) for s in cfg.seeds],
        "train_class_counts": {k: int(v) for k, v in train_counts.items()},
        "majority_class": str(train_counts.idxmax()),
    },
)

# %% [markdown]
# ## The "Original" row: the frozen evaluator on real clips of validation and test subjects
#
# With $TP_k, FP_k, FN_k$ counted for class $k$ over the $C = 3$ classes and $n_k$ clips of class $k$:
#
# $$\mathrm{UAR} = \frac{1}{C}\sum_k \frac{TP_k}{n_k}, \qquad
#   \mathrm{UF1} = \frac{1}{C}\sum_k \frac{2\,TP_k}{2\,TP_k + FP_k + FN_k}, \qquad
#   \mathrm{Accuracy} = \frac{\sum_k TP_k}{\sum_k n_k}.$$
#
# UAR and UF1 weigh each class alike, so a classifier that answers the majority class scores 1/3 UAR.

# %%
rows, per_clip_all = [], []
for part in ("val", "test"):
    cs = clips[part]
    per_clip, summary = gen.score_clips(
        models,
        [c.frames for c in cs],
        [None] * len(cs),
        [c.onset_pos for c in cs],
        [c.apex_pos for c in cs],
        [c.label for c in cs],
        classes,
        cfg.input_size,
        [c.clip_id for c in cs],
        [c.subject for c in cs],
        device=dev,
    )
    per_clip.insert(0, "part", part)
    per_clip_all.append(per_clip)
    rows.append({"dataset": dataset, "part": part, **summary})
original = pd.DataFrame(rows)
with atomic_path(res / "metrics" / f"original_{dataset}.csv") as tmp:
    original.to_csv(tmp, index=False)
with atomic_path(res / "metrics" / f"original_{dataset}_clips.csv") as tmp:
    pd.concat(per_clip_all).to_csv(tmp, index=False)
original

# %%
test_clips = per_clip_all[-1]  # every evaluator seed's predictions, pooled
pd.crosstab(test_clips["label"], test_clips["pred"]).reindex(index=classes, columns=classes, fill_value=0)
