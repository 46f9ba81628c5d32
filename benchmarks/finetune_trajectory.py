"""How does a fine-tune's magnification accuracy move while it trains? Fine-tune and measure every K steps.

    python benchmarks/finetune_trajectory.py --dataset casme3 --direction inverse --every 25 \
        --set inverse_freeze_batchnorm=false --out /tmp/trajectory

Not a test (one 250-step fine-tune with measurements every 25 steps takes about 2 min on one thread).
It repeats `02_finetune`'s fine-tuning from the profile's `finetune` section (with `--set key=value`
overrides of `train_config.StageConfig` fields, e.g. `inverse_freeze_batchnorm=false` or a range written
`forward_alpha=[1,8]`), starting from
`results/<profile>/checkpoints/{magplus,demagplus}_pretrain.safetensors` and reading that results
folder's data and splits (run `make paper` or the 00/01 notebooks first). Every `--every` steps it
measures, as `02_finetune` does, achieved / requested alpha (Farneback, median over the held-out clips)
and the PSNR against the exactly magnified frame: MagPlus on the test subjects' micro clips, DeMagPlus
on the macro clips (grey for SAMM); `--eval-split val` measures MagPlus on the validation subjects'
clips instead, so a setting can be chosen without reading the test clips; `--micro-min-mse 10`
fine-tunes only on the micro pairs FlowMag's MSE filter would keep (`pairs.changing_pairs`). Checkpoints
go to `--out`, never to the results folder. Prints one row per measurement and writes
`<out>/<dataset>_<direction>_seed<S>[_val].csv`.

With the same settings as the profile, the last row equals `02_finetune`'s measurement (the
measurements read the model without touching its training state or random streams).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
import torch

from magplus_lib.data import datasets as data_sets
from magplus_lib.data import pairs, splits, synthme
from magplus_lib.harness.profiles import from_dict, load_profile
from magplus_lib.harness.runtime import seed_everything
from magplus_lib.magnifier import train_config, training
from magplus_lib.magnifier.accuracy import held_out_examples, measure_examples
from magplus_lib.magnifier.flow import build_flow_estimator
from magplus_lib.magnifier.model import MagnifierConfig
from magplus_lib.magnifier.weights import load_magnifier


def parse_value(text: str):
    if text.startswith("["):  # a range such as forward_alpha=[1,8]
        return [parse_value(x.strip()) for x in text.strip("[]").split(",")]
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def summarise(step: int, acc: pd.DataFrame) -> dict:
    med = acc.groupby("alpha")[["achieved", "psnr_output"]].median()
    row = {"step": step}
    for a, r in med.iterrows():
        row[f"ratio@{a:.3g}"] = round(float(r["achieved"]) / a, 3)
    for a, r in med.iterrows():
        row[f"psnr@{a:.3g}"] = round(float(r["psnr_output"]), 2)
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profile", default="default")
    p.add_argument("--results", default=None, help="results folder (default results/<profile>)")
    p.add_argument("--dataset", default="casme3")
    p.add_argument("--direction", choices=["forward", "inverse"], default="inverse")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=None, help="default: the direction's finetune steps")
    p.add_argument("--every", type=int, default=25)
    p.add_argument("--set", action="append", default=[], help="finetune key=value override")
    p.add_argument(
        "--eval-split",
        choices=["test", "val"],
        default="test",
        help="MagPlus: measure on this split's micro clips (val: choose settings without reading test)",
    )
    p.add_argument(
        "--micro-min-mse",
        type=float,
        default=None,
        help="fine-tune only on micro pairs whose MSE (0-255) exceeds this (FlowMag's filter: 10)",
    )
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)

    prof = load_profile(args.profile)
    res = Path(args.results or f"results/{args.profile}")
    mcfg = from_dict(MagnifierConfig, prof["magnifier"], "magnifier")
    torch.set_num_threads(mcfg.threads or 1)
    seed_everything(args.seed)
    dcfg = from_dict(data_sets.DataConfig, prof["data"], "data")
    size = prof["image_size"]
    finetune = dict(prof["finetune"])
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set {item!r}: expected key=value")
        finetune[key] = parse_value(value)
    if args.steps is not None:  # the direction's own count: the inverse run reads inverse_steps when set
        finetune["inverse_steps" if args.direction == "inverse" else "steps"] = args.steps
    stage = train_config.stage_config(finetune, "finetune")
    tcfg = stage.train_config(args.direction, size, args.seed)

    root = dcfg.root(args.dataset, res)
    clips = data_sets.load_clips(args.dataset, root)
    split = splits.load_split(res / "splits" / f"{args.dataset}.csv")
    micro = pairs.MicroPairDataset(
        list(splits.select(clips, split, "train")), size, dcfg.cache_dir(res), dcfg.crop
    )
    if args.micro_min_mse is not None:
        n = len(micro)
        micro = pairs.changing_pairs(micro, args.micro_min_mse)
        print(f"{len(micro)} of {n} micro pairs differ by more than MSE {args.micro_min_mse:g}")
    share = stage.replay_share(args.direction)
    replay = pairs.GenericPairDataset(dcfg.pretrain_pairs_root(args.direction, res), size) if share else None
    train_set = pairs.finetune_pairs(micro, stage.max_pairs, replay, share)

    if args.direction == "forward":
        eval_root, alphas = root, mcfg.eval_alphas_mag
        eval_clips, grayscale = list(splits.select(clips, split, args.eval_split)), None
    else:
        eval_root, alphas = dcfg.root("macro", res), mcfg.eval_alphas_demag
        eval_clips = list(synthme.load_macro_clips(eval_root))
        grayscale = synthme.corpus_is_grey(root)
    examples = held_out_examples(
        synthme.load_ground_truth(eval_root),
        eval_clips,
        size,
        alphas,
        dcfg.crop,
        grayscale,
        mcfg.eval_clips,
        mcfg.eval_min_apex_px,
    )
    print(f"{len(train_set)} fine-tuning pairs, {len(examples)} held-out clips, {tcfg}")

    prefix = {"forward": "magplus", "inverse": "demagplus"}[args.direction]
    model = load_magnifier(res / "checkpoints" / f"{prefix}_pretrain.safetensors")
    rows = [summarise(0, measure_examples(model, examples, alphas))]
    print(rows[-1], flush=True)

    def on_step(step: int, _row: dict) -> None:
        if step % args.every == 0 or step == tcfg.steps:
            rows.append(summarise(step, measure_examples(model, examples, alphas)))
            print(rows[-1], flush=True)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = f"{args.dataset}_{args.direction}_seed{args.seed}" + ("_val" if args.eval_split == "val" else "")
    ckpt = out / f"{name}.safetensors"
    training.train_magnifier(
        model,
        train_set,
        build_flow_estimator(prof["flow"]),
        tcfg,
        ckpt,
        resume=False,
        progress=False,
        on_step=on_step,
    )
    table = pd.DataFrame(rows)
    table.to_csv(out / f"{name}.csv", index=False)
    print(table.to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
