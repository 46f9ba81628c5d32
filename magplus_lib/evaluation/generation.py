"""Generation of the evaluated clips: source pairing, cached generation, and scoring of generated clips.

For every test driver clip, backbone and setting, a source identity is taken from a *different* test
subject (a fixed, seeded pairing saved as CSV, so every backbone and setting animates the same
source). The generated clip is written to ``<results_dir>/generated/<dataset>/<backbone>/<setting>/``
as uint8 frames in safetensors plus a JSON side file holding the onset/apex positions inherited from
the driver and the cache key. A clip is regenerated only when its key (driver and source pixels,
checkpoint file contents, alphas, setting) changes. Returned frames are always the stored uint8
frames, so a cached run and a fresh run score identical inputs.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from magplus_lib.evaluation.clip_cache import cache_key, fingerprint_file, fingerprint_tensor
from magplus_lib.evaluation.metrics import expression_targets, motion_ratio, recognition_scores
from magplus_lib.harness.atomicio import atomic_path, write_json
from magplus_lib.harness.checkpoints import save_safetensors
from magplus_lib.harness.train_loop import run_steps

# The four settings of the paper's Table 4, in its row order: (uses MagPlus, uses DeMagPlus).
SETTINGS: dict[str, tuple[bool, bool]] = {
    "backbone": (False, False),
    "magplus": (True, False),
    "demagplus": (False, True),
    "magplus+demagplus": (True, True),
}
PAIRING_COLUMNS = ["driver_clip_id", "driver_subject", "source_clip_id", "source_subject", "seed"]


# ---- pairing ----
def pair_sources(drivers: pd.DataFrame, seed: int, candidates: pd.DataFrame | None = None) -> pd.DataFrame:
    """One source clip per driver, from a different subject, chosen with a seeded generator.

    `drivers` has columns clip_id and subject. Sources are drawn from `candidates` (same columns;
    default: the drivers themselves, i.e. test sources for test drivers). The choice does not depend
    on the row order of either table.
    """
    candidates = drivers if candidates is None else candidates
    for name, df in (("drivers", drivers), ("candidates", candidates)):
        for col in ("clip_id", "subject"):
            if col not in df.columns:
                raise ValueError(f"pair_sources: {name} table lacks column '{col}' (has {list(df.columns)})")
        dup = sorted(df["clip_id"][df["clip_id"].duplicated()])
        if dup:
            raise ValueError(f"pair_sources: duplicate clip ids in {name}: {dup}")
    table = drivers[["clip_id", "subject"]].astype(str).sort_values("clip_id").reset_index(drop=True)
    pool = candidates[["clip_id", "subject"]].astype(str)
    subjects = sorted(pool["subject"].unique())
    by_subject = {s: sorted(pool.loc[pool["subject"] == s, "clip_id"]) for s in subjects}
    rng = np.random.default_rng(seed)
    rows = []
    for clip_id, subject in zip(table["clip_id"], table["subject"]):
        others = [s for s in subjects if s != subject]
        if not others:
            raise ValueError(f"pair_sources: need source clips from at least two subjects, got {subjects}")
        src_subject = others[int(rng.integers(len(others)))]
        src_clips = by_subject[src_subject]
        rows.append((clip_id, subject, src_clips[int(rng.integers(len(src_clips)))], src_subject, seed))
    return pd.DataFrame(rows, columns=PAIRING_COLUMNS)


def load_pairing(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pairing file {path} does not exist")
    df = pd.read_csv(path, dtype=str)
    missing = [c for c in PAIRING_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: pairing file lacks columns {missing}")
    df["seed"] = df["seed"].astype(int)
    return df


def load_or_make_pairing(
    path: str | Path, drivers: pd.DataFrame, seed: int, candidates: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Reuse the saved pairing when it covers exactly these drivers with this seed; else make and save."""
    path = Path(path)
    if path.is_file():
        saved = load_pairing(path)
        same = (
            set(saved["driver_clip_id"]) == set(drivers["clip_id"].astype(str))
            and (saved["seed"] == seed).all()
        )
        if candidates is not None:
            same = same and set(saved["source_clip_id"]) <= set(candidates["clip_id"].astype(str))
        if same:
            return saved
    pairing = pair_sources(drivers, seed, candidates)
    with atomic_path(path) as tmp:
        pairing.to_csv(tmp, index=False)
    return pairing


def source_pool(parts: dict) -> list:
    """Where test drivers' sources come from: the test split, unless it has labelled clips of fewer than
    two subjects (tiny profiles), then every split."""
    if len({c.subject for c in parts["test"] if c.label3 is not None}) >= 2:
        return parts["test"]
    print("only one test subject: sources are drawn from validation and training subjects")
    return parts["train"] + parts["val"] + parts["test"]


def onset_sources(
    drivers: Sequence[EvalClip], pool: Sequence, frames_of: Callable, seed: int, path: str | Path
) -> tuple[list[torch.Tensor], pd.DataFrame]:
    """The source frame of each driver: the onset frame of a clip of another subject, drawn from the
    labelled clips of `pool` by `pair_sources` with `seed` (the pairing is saved to, and reused from,
    `path`). The one pairing rule of the study: the backbones' MMR (03), the sweep (05) and the
    generated test clips (06) all pair this way. Returns (frames in the drivers' order, pairing)."""
    by_id = {str(c.clip_id): c for c in pool if c.label3 is not None}
    candidates = pd.DataFrame({"clip_id": list(by_id), "subject": [str(c.subject) for c in by_id.values()]})
    pairing = load_or_make_pairing(path, clip_table(drivers), seed, candidates)
    source_of = dict(zip(pairing["driver_clip_id"], pairing["source_clip_id"]))
    sources = []
    for d in drivers:
        src = by_id[source_of[str(d.clip_id)]]
        sources.append(frames_of(src)[src.onset_index])
    return sources, pairing


def run_setting(
    transfer: Callable,
    driver: torch.Tensor,
    source: torch.Tensor,
    backbone,
    setting: str,
    magplus=None,
    demagplus=None,
    alpha_mag: float = 1.0,
    alpha_demag: float = 1.0,
) -> torch.Tensor:
    """Call `transfer` (pipeline.transfer's signature) with the modules a Table 4 setting uses."""
    if setting not in SETTINGS:
        raise ValueError(f"unknown setting '{setting}'; known settings: {list(SETTINGS)}")
    use_mag, use_demag = SETTINGS[setting]
    if use_mag and magplus is None or use_demag and demagplus is None:
        raise ValueError(f"setting '{setting}' needs a {'MagPlus' if use_mag else 'DeMagPlus'} model")
    return transfer(
        driver,
        source,
        backbone,
        magplus=magplus if use_mag else None,
        demagplus=demagplus if use_demag else None,
        alpha_mag=alpha_mag if use_mag else 1.0,
        alpha_demag=alpha_demag if use_demag else 1.0,
    )


def generation_inputs(
    driver: str,
    source: str,
    backbone: str,
    backbone_file: str | Path | None,
    backbone_cfg: dict | None,
    setting: str,
    env: dict,
    magplus: str | Path | None,
    alpha_mag: float,
    demagplus: str | Path | None,
    alpha_demag: float,
) -> dict:
    """What a generated clip depends on, hashed into its cache key (`generate_cached`): the driver's and
    the source's frames (`fingerprint_tensor`), the backbone (name, weights file, settings), the setting,
    the environment (`env_fingerprint`) and, only where the setting applies them, MagPlus / DeMagPlus
    (weights file and alpha)."""
    use_mag, use_demag = SETTINGS.get(setting, (False, False))
    return {
        "driver": driver,
        "source": source,
        "backbone": backbone,
        "backbone_file": fingerprint_file(backbone_file),
        "backbone_cfg": backbone_cfg,
        "setting": setting,
        "env": env,
        "magplus": fingerprint_file(magplus) if use_mag else None,
        "alpha_mag": alpha_mag if use_mag else None,
        "demagplus": fingerprint_file(demagplus) if use_demag else None,
        "alpha_demag": alpha_demag if use_demag else None,
    }


# ---- external clips ----
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


def load_frame_folder(folder: str | Path, size: int | None = None) -> torch.Tensor:
    """Frames of a folder (sorted by name) as float (T, 3, H, W); e.g. clips from a dedicated generator."""
    import cv2

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"clip folder {folder} does not exist")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"clip folder {folder} holds no image frames ({', '.join(IMAGE_SUFFIXES)})")
    frames = []
    for f in files:
        img = cv2.imread(str(f), cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError(f"{f}: unreadable image frame")
        if frames and img.shape != frames[0].shape and size is None:
            raise ValueError(
                f"{f}: frame size {img.shape[:2]} differs from the first frame's {frames[0].shape[:2]}"
            )
        if size is not None:
            img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
        frames.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
    arr = np.stack(frames).astype(np.float32) / 255.0
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()


# ---- scoring ----
def score_clips(
    evaluators,
    generated: Sequence[torch.Tensor],
    real: Sequence[torch.Tensor],
    onset_pos: Sequence[int],
    apex_pos: Sequence[int],
    labels: Sequence[str],
    classes: Sequence[str],
    input_size: int,
    clip_ids: Sequence[str] | None = None,
    subjects: Sequence[str] | None = None,
    device="cpu",
) -> tuple[pd.DataFrame, dict]:
    """Per-clip predictions and motion ratios, and the pooled summary {UAR, UF1, Accuracy, MMR, n}.

    `evaluators` is one frozen evaluator or {evaluator seed: evaluator}; the per-clip table has one row
    per clip and seed (column `evaluator_seed`), and the summary's recognition scores are the mean over
    seeds of the pooled scores. Each generated clip is fed to the evaluators exactly as real clips are
    (apex RGB + onset->apex flow at the driver's inherited positions); its MMR compares it with its real
    driver over frames onset+1 .. apex against the onset frame (see metrics.motion_magnitude).
    """
    from magplus_lib.evaluation.mer import mer_inputs, predict

    models = evaluators if isinstance(evaluators, dict) else {0: evaluators}
    n = len(generated)
    if not n == len(real) == len(onset_pos) == len(apex_pos) == len(labels):
        raise ValueError("score_clips: generated, real, onset, apex and labels differ in length")
    if n == 0:
        raise ValueError("score_clips: no clips to score")
    rgb, flow, ratios = [], [], []
    for g, r, o, a in zip(generated, real, onset_pos, apex_pos):
        x_rgb, x_flow = mer_inputs(g, o, a, input_size)
        rgb.append(x_rgb)
        flow.append(x_flow)
        ratios.append(np.nan if r is None else motion_ratio(g, r, o, expression_targets(o, a)))
    rgb, flow = torch.stack(rgb), torch.stack(flow)
    tables = []
    for seed, model in models.items():
        pred, probs = predict(model, rgb, flow, device=device)
        pred_names = [classes[i] for i in pred]
        per_seed = pd.DataFrame(
            {
                "clip_id": list(clip_ids) if clip_ids is not None else [str(i) for i in range(n)],
                "subject": list(subjects) if subjects is not None else ["?"] * n,
                "evaluator_seed": seed,
                "label": list(labels),
                "pred": pred_names,
                "correct": [p == t for p, t in zip(pred_names, labels)],
                "MMR": ratios,
            }
        )
        for j, c in enumerate(classes):
            per_seed[f"p_{c}"] = probs[:, j]
        tables.append(per_seed)
    per_clip = pd.concat(tables, ignore_index=True)
    return per_clip, summarise(per_clip, classes)


def summarise(per_clip: pd.DataFrame, classes: Sequence[str]) -> dict:
    """Pooled scores of a per-clip table (columns label, pred, MMR; optionally evaluator_seed):
    recognition scores pooled over clips per evaluator seed, then averaged over seeds."""
    seeds = (
        per_clip["evaluator_seed"] if "evaluator_seed" in per_clip.columns else pd.Series(0, per_clip.index)
    )
    per_seed = [recognition_scores(g["label"], g["pred"], classes) for _, g in per_clip.groupby(seeds)]
    scores = {m: float(np.mean([s[m] for s in per_seed])) for m in ("UAR", "UF1", "Accuracy")}
    first = per_clip[seeds == seeds.iloc[0]]
    mmr_values = first["MMR"].astype(float)
    scores["MMR"] = float(mmr_values.mean()) if mmr_values.notna().any() else float("nan")
    scores["n"] = int(len(first))
    scores["seeds"] = len(per_seed)
    return scores


def env_fingerprint() -> dict:
    """Library versions that change generated pixels (part of every cache key)."""
    import cv2

    return {"torch": torch.__version__, "cv2": cv2.__version__}


# ---- evaluation clips ----
@dataclass
class EvalClip:
    """A labelled clip ready for generation and scoring: frames cut to the expression, positions into them."""

    clip_id: str
    subject: str
    label: str
    frames: torch.Tensor  # (T, 3, S, S) in [0, 1]
    onset_pos: int
    apex_pos: int
    positions: list[int]  # positions in the original clip's frame list that `frames` holds


def expression_positions(
    onset: int, apex: int, offset: int, max_frames: int | None, through_offset: bool = False
) -> tuple[list[int], int, int]:
    """Frame positions onset..apex (or onset..offset), thinned evenly to at most `max_frames`.

    Onset and apex are always kept. Returns (positions, onset's index in them (0), apex's index in
    them). Every metric of the study reads only onset..apex (the evaluator's apex frame and
    onset->apex flow, MMR over onset+1..apex), so by default generation stops at the apex.
    """
    apex = min(max(apex, onset), offset)
    last = offset if through_offset else apex
    positions = list(range(onset, max(last, onset + 1) + 1))
    if max_frames is not None and len(positions) > max_frames:
        if max_frames < 2:
            raise ValueError(f"max_frames must be at least 2, got {max_frames}")
        picked = set(np.linspace(onset, positions[-1], max_frames).round().astype(int).tolist()) | {
            onset,
            apex,
        }
        positions = sorted(picked)
    apex_in = positions.index(apex) if apex != onset else 1  # an apex on the onset frame: use the next frame
    return positions, 0, apex_in


def eval_clips_from(
    clips: Sequence,
    frames_of: Callable,
    max_frames: int | None = None,
    limit: int | None = None,
    through_offset: bool = False,
) -> list[EvalClip]:
    """EvalClips of every clip with a 3-class label, sorted by subject then clip id.

    With `limit`, clips are taken round-robin over subjects (each subject's first clip, then each
    one's second, ...), so a small cap still spans subjects.

    `frames_of(clip)` returns the clip's full frame tensor (e.g. faces.cropped_frames at image size).
    """
    chosen = sorted(
        (c for c in clips if c.label3 is not None), key=lambda c: (str(c.subject), str(c.clip_id))
    )
    if limit is not None:  # round-robin over subjects, so a cap does not keep a single subject
        rank: dict[str, int] = {}
        order = []
        for c in chosen:
            rank[str(c.subject)] = rank.get(str(c.subject), -1) + 1
            order.append((rank[str(c.subject)], str(c.subject), str(c.clip_id), c))
        chosen = [t[-1] for t in sorted(order, key=lambda t: t[:3])][:limit]
        chosen.sort(key=lambda c: (str(c.subject), str(c.clip_id)))
    out = []
    for c in chosen:
        on, ap, off = c.onset_index, c.apex_index, c.offset_index
        positions, o, a = expression_positions(on, ap, off, max_frames, through_offset)
        frames = frames_of(c)
        if positions[-1] >= frames.shape[0]:
            raise ValueError(
                f"clip {c.clip_id}: position {positions[-1]} beyond its {frames.shape[0]} frames"
            )
        out.append(EvalClip(str(c.clip_id), str(c.subject), c.label3, frames[positions], o, a, positions))
    return out


def clip_table(clips: Sequence[EvalClip]) -> pd.DataFrame:
    return pd.DataFrame({"clip_id": [c.clip_id for c in clips], "subject": [c.subject for c in clips]})


def settings_for(
    driver: torch.Tensor,
    source: torch.Tensor,
    backbone,
    magplus,
    demagplus,
    alpha_mag: float,
    alpha_demag: float,
    transfer: Callable,
    demagnify: Callable,
) -> dict[str, Callable[[], torch.Tensor]]:
    """Lazy makers of the four Table 4 settings that share work: the backbone-only output feeds
    Backbone -> DeMagPlus and the MagPlus -> backbone output feeds the full pipeline (exactly what
    `pipeline.transfer` computes for those settings, without running the backbone twice)."""
    memo: dict[str, torch.Tensor] = {}

    def backbone_only():
        if "backbone" not in memo:
            memo["backbone"] = run_setting(transfer, driver, source, backbone, "backbone")
        return memo["backbone"]

    def magplus_only():
        if "magplus" not in memo:
            memo["magplus"] = run_setting(
                transfer, driver, source, backbone, "magplus", magplus, None, alpha_mag
            )
        return memo["magplus"]

    return {
        "backbone": backbone_only,
        "magplus": magplus_only,
        "demagplus": lambda: demagnify(demagplus, backbone_only(), alpha_demag).clamp(0, 1),
        "magplus+demagplus": lambda: demagnify(demagplus, magplus_only(), alpha_demag).clamp(0, 1),
    }


# ---- configuration ----
@dataclass
class GenerationConfig:
    """Profile section `generation:`."""

    settings: list = field(default_factory=lambda: list(SETTINGS))
    alpha_source: str = "sweep"  # "sweep" (the grid's selected pair) or "calibrated" (see sweep.py)
    max_frames: int | None = None  # thin the clip to this many frames (onset and apex kept)
    through_offset: bool = False  # generate onset..offset instead of onset..apex (metrics read onset..apex)
    max_test_clips: int | None = None  # cap on test drivers (time budget); None = all
    dedicated: dict = field(default_factory=dict)  # DedicatedConfig settings; {} = the defaults
    figure_examples: int = 4  # clips shown in Figure 1/4


# ---- dedicated baseline ----
@dataclass
class DedicatedConfig:
    """The Table 3 stand-in for dedicated micro-expression generators (profile `generation.dedicated`)."""

    backbone: str = "fomm"  # embedded backbone fine-tuned end to end on micro clips
    steps: int = 100  # few steps, same recipe (losses, optimiser) as its macro training
    batch_size: int = 4
    lr: float = 1e-4
    clips_folder: str | None = (
        None  # full profile: <folder>/<method>/<dataset>/<clip_id>/*.png from real methods
    )
    methods: list = field(default_factory=list)  # method folder names under clips_folder


def finetune_dedicated(
    name: str,
    init_checkpoint: str | Path,
    clips: list[torch.Tensor],
    cfg: DedicatedConfig,
    out_path: str | Path,
    seed: int = 0,
    device="cpu",
) -> dict:
    """Fine-tune a macro-trained embedded backbone end to end on micro clips (Table 3 baseline).

    Uses the backbone trainer's own model factory, pair sampler and losses (backbone_training), starting
    from `init_checkpoint`; the result goes to `out_path` (+ side JSON), reused when its key matches.
    """

    from magplus_lib.backbones import training as bt
    from magplus_lib.backbones.base import load_safetensors_into, read_checkpoint_meta

    init_checkpoint, out_path = Path(init_checkpoint), Path(out_path)
    if not init_checkpoint.is_file():
        raise FileNotFoundError(
            f"dedicated baseline: macro checkpoint {init_checkpoint} does not exist (run 03_backbones)"
        )
    if not clips:
        raise ValueError("dedicated baseline: no micro-expression training clips")
    meta = read_checkpoint_meta(init_checkpoint)
    key = cache_key(
        {
            "init": fingerprint_file(init_checkpoint),
            "clips": [fingerprint_tensor(c) for c in clips],
            "cfg": dataclasses.asdict(cfg),
            "seed": seed,
            "env": env_fingerprint(),
        }
    )
    side = out_path.with_suffix(".json")
    if out_path.is_file() and side.is_file() and json.loads(side.read_text()).get("key") == key:
        return json.loads(side.read_text())
    torch.manual_seed(seed)
    model, loss_fn, _ = bt.model_factory(name, meta["model_config"])
    load_safetensors_into(model, init_checkpoint)
    model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(0.5, 0.999))
    cache: dict = {}

    def one_step(step: int) -> dict:
        g = bt.step_generator(seed, step)
        src, drv = bt.sample_pairs(clips, cfg.batch_size, g)
        loss, _ = loss_fn(model, src.to(device), drv.to(device), g, cache)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": float(loss.detach())}

    losses = [
        row["loss"] for row in run_steps(0, cfg.steps, one_step, desc=f"fine-tune {name} on micro clips")
    ]
    save_safetensors(out_path, model.state_dict())
    out_meta = {
        **meta,
        "key": key,
        "init_checkpoint": str(init_checkpoint),
        "finetune_steps": cfg.steps,
        "finetune_first_loss": losses[0] if losses else None,
        "finetune_last_loss": losses[-1] if losses else None,
    }
    write_json(side, out_meta)
    return out_meta


def load_dedicated(name: str, path: str | Path, device="cpu"):
    """The fine-tuned dedicated baseline as a Backbone (same adapter as the macro-trained one)."""
    from magplus_lib.backbones import training as bt
    from magplus_lib.backbones.base import ModuleBackbone, load_safetensors_into, read_checkpoint_meta

    path = Path(path)
    meta = read_checkpoint_meta(path)
    model, _, _ = bt.model_factory(name, meta["model_config"])
    load_safetensors_into(model, path)
    return ModuleBackbone(f"{name}_me", model.eval(), meta["native_size"], device)


# ---- data access (the data stage's loaders, in one place) ----
def dataset_parts(dataset: str, data: dict, results_dir: str | Path, image_size: int):
    """({part: [Clip]} for train / val / test, frames_of(clip) -> cropped (T, 3, S, S) frames).

    Reads the clips with `datasets.load_clips`, the subject split saved by the data stage at
    `<results_dir>/splits/<dataset>.csv`, and frames through the face-crop cache.
    """
    from magplus_lib.data import datasets, faces, splits
    from magplus_lib.harness.profiles import from_dict

    cfg = from_dict(datasets.DataConfig, data, "data")
    clips = datasets.load_clips(dataset, cfg.root(dataset, results_dir))
    split_path = Path(results_dir) / "splits" / f"{dataset}.csv"
    split = splits.load_split(split_path)
    parts = {part: list(splits.select(clips, split, part)) for part in ("train", "val", "test")}
    for part, items in parts.items():
        if not any(c.label3 is not None for c in items):
            raise ValueError(f"{split_path}: the '{part}' subjects of {dataset} have no labelled clip")
    cache_dir = cfg.cache_dir(results_dir)

    def frames_of(clip):
        return faces.cropped_frames(clip, image_size, cache_dir, cfg.crop)

    return parts, frames_of
