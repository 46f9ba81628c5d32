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
# # 05 · Choosing alpha_MagPlus and alpha_DeMagPlus on validation subjects
#
# Per backbone: a grid of alpha_MagPlus x alpha_DeMagPlus, each pair scored on the validation drivers
# (MagPlus -> backbone -> DeMagPlus, sources from other non-test subjects) by the frozen evaluator
# (UAR) and by MMR; the pair chosen by `sweep.rule` is saved to `alpha/<dataset>_<backbone>.json` and
# used by generation. Beyond the paper (which names its manual sweep as a limitation), an automatic
# calibration sets alpha_DeMagPlus = 1 / gain of MagPlus -> backbone so that MMR = 1, and is compared
# with the sweep. Edit `sweep["alpha_mag"]` / `sweep["alpha_demag"]` below and rerun the last cells to
# explore interactively. Test subjects are never used here.

# %% tags=["parameters"]
profile = "ci"
results_dir = "results/ci"
seed = 0
device = "auto"
image_size = 32
dataset = "samm"
backbones_list = ["fomm", "latent", "flowwarp"]
data = {}
backbones = {}
evaluator = {}
sweep = {}
generation = {}

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from magplus_lib import generation as gen
from magplus_lib import mer, pipeline, reporting
from magplus_lib import sweep as sw
from magplus_lib.atomicio import atomic_path
from magplus_lib.backbones import build_backbone
from magplus_lib.clips import LABELS3
from magplus_lib.magnifier import load_magnifier
from magplus_lib.profiles import from_dict
from magplus_lib.runtime import pick_device, seed_everything

seed_everything(seed)
dev = pick_device(device)
res = Path(results_dir)
ecfg = from_dict(mer.MERConfig, evaluator, "evaluator")
scfg = from_dict(sw.SweepConfig, sweep, "sweep")
gcfg = from_dict(gen.GenerationConfig, generation, "generation")
classes = list(LABELS3)
ckpts = res / "checkpoints"
mer_model, _ = mer.load_mer(ckpts / f"mer_{dataset}.safetensors", dev)
magplus = load_magnifier(ckpts / f"magplus_{dataset}.safetensors", dev)
demagplus = load_magnifier(ckpts / f"demagplus_{dataset}.safetensors", dev)

# %% [markdown]
# ## Validation drivers and their fixed source identities

# %%
parts, frames_of = gen.dataset_parts(dataset, data, res, image_size)
val = gen.eval_clips_from(parts["val"], frames_of, gcfg.max_frames, scfg.max_val_clips, gcfg.through_offset)
candidates = [c for c in parts["train"] + parts["val"] if c.label3 is not None]
by_id = {str(c.clip_id): c for c in candidates}
pairing = gen.load_or_make_pairing(
    res / "metrics" / f"pairing_{dataset}_val.csv",
    gen.clip_table(val),
    seed,
    pd.DataFrame({"clip_id": list(by_id), "subject": [str(c.subject) for c in by_id.values()]}),
)
source_of = dict(zip(pairing["driver_clip_id"], pairing["source_clip_id"]))
sources = []
for c in val:
    src = by_id[source_of[c.clip_id]]
    sources.append(frames_of(src)[src.onset_index])
print(f"{len(val)} validation drivers from {len({c.subject for c in val})} subjects")


# %%
def make_pipeline(backbone):
    """Grid evaluator for one backbone: MagPlus -> backbone runs once per alpha_MagPlus."""

    def drive(i, alpha_mag):
        return pipeline.transfer(val[i].frames, sources[i], backbone, magplus, None, alpha_mag=alpha_mag)

    def demag(frames, alpha_demag):
        return pipeline.apply_magnifier(demagplus, frames, alpha_demag).clamp(0, 1)

    def score(outputs):
        _, summary = gen.score_clips(
            mer_model,
            outputs,
            [c.frames for c in val],
            [c.onset_pos for c in val],
            [c.apex_pos for c in val],
            [c.label for c in val],
            classes,
            ecfg.input_size,
            device=dev,
        )
        return summary

    return sw.CachedPipeline(len(val), drive, demag, score)


def sweep_backbone(name):
    backbone = build_backbone(name, backbones, ckpts, dev)
    pipe = make_pipeline(backbone)
    grid = sw.run_grid(pipe, scfg.alpha_mag, scfg.alpha_demag)
    selected = sw.select_pair(grid, scfg.rule, scfg.tie_tolerance)
    choice = {
        "dataset": dataset,
        "backbone": name,
        "rule": scfg.rule,
        "val_clips": len(val),
        "selected": selected,
        "grid": grid.to_dict("records"),
    }
    if scfg.calibrate:
        am = float(selected["alpha_mag"])
        gain = pipe.gain(am)
        alpha, trace = sw.calibrate_alpha_demag(
            lambda a: pipe(am, a)["MMR"], gain, iterations=scfg.calibration_iterations
        )
        choice["calibrated"] = {
            "alpha_mag": am,
            "alpha_demag": alpha,
            "gain": gain,
            "trace": trace,
            **pipe(am, alpha),
        }
    sw.save_alpha_choice(sw.alpha_path(res, dataset, name), choice)
    with atomic_path(res / "metrics" / f"sweep_{dataset}_{name}.csv") as tmp:
        grid.to_csv(tmp, index=False)
    return grid, choice


# %% [markdown]
# ## The sweeps (UAR and MMR heatmaps; the black square is the selected pair)

# %%
choices = {}
for name in backbones_list:
    grid, choice = sweep_backbone(name)
    choices[name] = choice
    reporting.figure_heatmaps(grid, f"{dataset} / {name}", choice["selected"])
    plt.show()

# %% [markdown]
# ## Sweep against the automatic calibration
# `gain` is the measured MMR of MagPlus -> backbone at the selected alpha_MagPlus; the calibrated
# alpha_DeMagPlus aims at MMR = 1 with no grid (clipped to DeMagPlus's range [1/16, 1]).

# %%
rows = []
for name, ch in choices.items():
    s = ch["selected"]
    row = {
        "backbone": name,
        "alpha_mag": s["alpha_mag"],
        "sweep alpha_demag": s["alpha_demag"],
        "sweep UAR": s["UAR"],
        "sweep MMR": s["MMR"],
    }
    if "calibrated" in ch:
        c = ch["calibrated"]
        row.update(
            {
                "gain": c["gain"],
                "calibrated alpha_demag": c["alpha_demag"],
                "calibrated UAR": c["UAR"],
                "calibrated MMR": c["MMR"],
            }
        )
    rows.append(row)
comparison = pd.DataFrame(rows)
with atomic_path(res / "metrics" / f"calibration_{dataset}.csv") as tmp:
    comparison.to_csv(tmp, index=False)
comparison.round(3)

# %% [markdown]
# ## Exploring interactively
# In JupyterLab, change the grid (or the rule) here and rerun this one cell: it re-sweeps one backbone
# (MagPlus -> backbone runs once per alpha_MagPlus) and rewrites its alpha file and sweep CSV.

# %%
explore = None  # e.g. explore = "fomm"
if explore is not None:
    scfg.alpha_mag, scfg.alpha_demag = [2, 3, 5, 7, 10], [1, "1/2", "1/3", "1/5", "1/7"]
    grid, choices[explore] = sweep_backbone(explore)
    reporting.figure_heatmaps(grid, f"{dataset} / {explore}", choices[explore]["selected"])
    plt.show()
