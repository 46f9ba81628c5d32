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
# # 06 · Generating the test clips and scoring them
#
# For every test driver, backbone and setting of the paper's Table 4 (backbone only, MagPlus ->
# backbone, backbone -> DeMagPlus, MagPlus -> backbone -> DeMagPlus), the driver's micro-expression is
# transferred onto a fixed source identity from another test subject, with the alphas chosen on
# validation subjects (05). Generated clips inherit the driver's onset and apex and are cached under
# `generated/`; the frozen evaluator (04) and MMR score them. Table 3's dedicated baseline is generated
# here too: on the default profile the embedded FOMM fine-tuned end to end on micro-expression training
# clips; on `full`, clips produced by the real dedicated methods, read from a folder.

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
generation = {}

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from tqdm.auto import tqdm

from magplus_lib.backbones import competence
from magplus_lib.backbones.base import BackboneError, checkpoint_path
from magplus_lib.backbones.registry import build_backbone
from magplus_lib.data.clips import LABELS3
from magplus_lib.evaluation import clip_cache, mer, pipeline, reporting, run_failures
from magplus_lib.evaluation import generation as gen
from magplus_lib.evaluation import paper_tables as pt
from magplus_lib.evaluation import sweep as sw
from magplus_lib.evaluation.notebook_figures import figure_generated
from magplus_lib.harness.atomicio import atomic_path
from magplus_lib.harness.profiles import from_dict
from magplus_lib.harness.runtime import pick_device, seed_everything
from magplus_lib.magnifier.weights import load_magnifier

seed_everything(seed)
dev = pick_device(device)
res = Path(results_dir)
# Only backbones that passed 03's competence checks (macro reenactment on held-out identities) are
# studied; the others are named, with the checks they failed, and left out of every table.
gate = competence.admitted(res / "metrics" / competence.VERDICTS_FILE, backbones_list)
gate = run_failures.without_failed(gate, run_failures.read(res / "metrics", [dataset]))  # failed in 05
print("studied:", gate.admitted or "none", "|", gate.note() or "every listed backbone is competent")
ecfg = from_dict(mer.MERConfig, evaluator, "evaluator")
gcfg = from_dict(gen.GenerationConfig, generation, "generation")
dcfg = from_dict(gen.DedicatedConfig, gcfg.dedicated, "generation.dedicated")
classes = list(LABELS3)
ckpts = res / "checkpoints"
evaluators = mer.load_evaluators(ckpts, dataset, ecfg.seeds, dev)
mag_path, demag_path = ckpts / f"magplus_{dataset}.safetensors", ckpts / f"demagplus_{dataset}.safetensors"
magplus, demagplus = load_magnifier(mag_path, dev), load_magnifier(demag_path, dev)

# %% [markdown]
# ## Test drivers and the fixed, seeded source pairing (saved as CSV)

# %%
parts, frames_of = gen.dataset_parts(dataset, data, res, image_size)
test = gen.eval_clips_from(
    parts["test"], frames_of, gcfg.max_frames, gcfg.max_test_clips, gcfg.through_offset
)
# Sources: onset frames of other test subjects' clips (a split with a single test subject, as in tiny
# profiles, falls back to every split).
source_frames, pairing = gen.onset_sources(
    test, gen.source_pool(parts), frames_of, seed, res / "metrics" / f"pairing_{dataset}_test.csv"
)
sources = {c.clip_id: f for c, f in zip(test, source_frames)}
source_of = dict(zip(pairing["driver_clip_id"], pairing["source_clip_id"]))
print(f"{len(test)} test drivers from {len({c.subject for c in test})} subjects")
pairing.head()


# %%
def score(name, setting, generated, alphas=(None, None)):
    per_clip, summary = gen.score_clips(
        evaluators,
        generated,
        [c.frames for c in test],
        [c.onset_pos for c in test],
        [c.apex_pos for c in test],
        [c.label for c in test],
        classes,
        ecfg.input_size,
        [c.clip_id for c in test],
        [c.subject for c in test],
        device=dev,
    )
    meta = {
        "dataset": dataset,
        "backbone": name,
        "setting": setting,
        "alpha_mag": alphas[0],
        "alpha_demag": alphas[1],
    }
    for k, v in reversed(meta.items()):
        per_clip.insert(0, k, v)
    return per_clip, {**meta, **summary}


env = gen.env_fingerprint()
driver_keys = {c.clip_id: clip_cache.fingerprint_tensor(c.frames) for c in test}
source_keys = {k: clip_cache.fingerprint_tensor(v) for k, v in sources.items()}


def generate_all(name, backbone, backbone_file, settings, alpha_mag=1.0, alpha_demag=1.0):
    """{setting: [generated clip per test driver]}, each clip cached under generated/."""
    out = {s: [] for s in settings}
    for c in tqdm(test, desc=f"generate {dataset}/{name}"):
        makers = gen.settings_for(
            c.frames,
            sources[c.clip_id],
            backbone,
            magplus,
            demagplus,
            alpha_mag,
            alpha_demag,
            pipeline.transfer,
            pipeline.apply_magnifier,
        )
        if settings == ["dedicated"]:
            makers = {"dedicated": makers["backbone"]}
        for s in settings:
            key = gen.generation_inputs(
                driver_keys[c.clip_id],
                source_keys[c.clip_id],
                name,
                backbone_file,
                backbones.get(name) if isinstance(backbones, dict) else None,
                s,
                env,
                mag_path,
                alpha_mag,
                demag_path,
                alpha_demag,
            )
            meta = {
                "driver": c.clip_id,
                "source": source_of[c.clip_id],
                "label": c.label,
                "onset_pos": c.onset_pos,
                "apex_pos": c.apex_pos,
                "driver_positions": c.positions,
            }
            frames, _, _ = clip_cache.generate_cached(
                clip_cache.generated_path(res, dataset, name, s, c.clip_id), key, makers[s], meta
            )
            out[s].append(frames)
    return out


# %% [markdown]
# ## Backbones x settings

# %%
clip_rows, summary_rows, shown = [], [], {}
for name in gate.admitted:
    alpha_mag, alpha_demag = sw.load_alpha_choice(sw.alpha_path(res, dataset, name), gcfg.alpha_source)
    try:
        backbone = build_backbone(name, backbones, ckpts, dev)
        bfile = checkpoint_path(ckpts, name)
        generated = generate_all(
            name, backbone, bfile if bfile.is_file() else None, list(gcfg.settings), alpha_mag, alpha_demag
        )
    except BackboneError as exc:  # its rows only are lost; 07 and 08 name it in every caption
        run_failures.record(res / "metrics", dataset, name, "06_generate", str(exc))
        print(f"WARNING: {name} is left out: {exc}")
        continue
    shown = shown or {"name": name, "generated": generated, "alphas": (alpha_mag, alpha_demag)}
    for s, clips_s in generated.items():
        per_clip, summary = score(name, s, clips_s, (alpha_mag, alpha_demag))
        clip_rows.append(per_clip)
        summary_rows.append(summary)

gate = run_failures.without_failed(gate, run_failures.read(res / "metrics", [dataset]))  # and in 06

# %% [markdown]
# ## What was generated: the first studied backbone, three test drivers
# Each row: the source face (another test subject's onset frame), the driver's apex, and the generated
# apex in every setting (α_M, α_D from the validation sweep).

# %%
if shown:
    rows = [
        {
            "source": sources[c.clip_id],
            "driver": c.frames[c.apex_pos],
            "generated": {s: clips_s[i][c.apex_pos] for s, clips_s in shown["generated"].items()},
            "label": f"{c.label}\n{c.clip_id}",
        }
        for i, c in enumerate(test[:3])
    ]
    a_m, a_d = shown["alphas"]
    fig = figure_generated(
        rows, list(shown["generated"]), f"{dataset} / {shown['name']} (α_M={a_m}, α_D={a_d:.3g})"
    )
    reporting.save_figure(fig, f"generated_{dataset}", res / "figures")
    plt.show()

# %% [markdown]
# ## Table 3's dedicated micro-expression generator

# %%
if dcfg.clips_folder:  # full profile: clips from the real dedicated methods, frame for frame with the drivers
    for method in dcfg.methods:
        clips_m = [
            gen.load_frame_folder(Path(dcfg.clips_folder) / method / dataset / c.clip_id, image_size)[
                c.positions
            ]
            for c in test
        ]
        per_clip, summary = score(method, "dedicated", clips_m)
        clip_rows.append(per_clip)
        summary_rows.append(summary)
else:  # default: the embedded backbone fine-tuned end to end on micro clips of the training subjects
    train_clips = [
        c.frames
        for c in gen.eval_clips_from(parts["train"], frames_of, gcfg.max_frames, None, gcfg.through_offset)
    ]
    ded_path = ckpts / f"dedicated_{dcfg.backbone}_{dataset}.safetensors"
    ded_meta = gen.finetune_dedicated(
        dcfg.backbone,
        checkpoint_path(ckpts, dcfg.backbone),
        train_clips,
        dcfg,
        ded_path,
        seed=seed,
        device=dev,
    )
    print(
        "dedicated baseline:",
        {k: ded_meta.get(k) for k in ("finetune_steps", "finetune_first_loss", "finetune_last_loss")},
    )
    name = f"{dcfg.backbone}_me"
    dedicated = gen.load_dedicated(dcfg.backbone, ded_path, dev)
    per_clip, summary = score(
        name, "dedicated", generate_all(name, dedicated, ded_path, ["dedicated"])["dedicated"]
    )
    clip_rows.append(per_clip)
    summary_rows.append(summary)

# %%
per_clip_all = pd.concat(clip_rows, ignore_index=True)
summary = pd.DataFrame(summary_rows)
with atomic_path(res / "metrics" / f"generated_{dataset}_clips.csv") as tmp:
    per_clip_all.to_csv(tmp, index=False)
with atomic_path(res / "metrics" / f"generated_{dataset}.csv") as tmp:
    summary.to_csv(tmp, index=False)
summary.round(3)

# %%
reporting.figure_mmr_bars(
    pt.mmr_scores(per_clip_all, dataset, gate.admitted, classes), settings=list(gcfg.settings)
)
plt.show()
