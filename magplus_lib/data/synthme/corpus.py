"""The whole SynthME corpus of a profile: every dataset, macro and generic folder, regenerated only
when the configuration changes (its stamp).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
import time
from pathlib import Path

import torch

from magplus_lib.data.synthme.config import STAMP, VOCAB, SynthMEConfig
from magplus_lib.data.synthme.generic_pairs import GenericFilter, write_generic
from magplus_lib.data.synthme.writers import write_casme3, write_samm
from magplus_lib.harness import atomicio

log = logging.getLogger(__name__)


def config_hash(cfg: SynthMEConfig, generic_filter: GenericFilter | None = None) -> str:
    ident = [dataclasses.asdict(cfg), dataclasses.asdict(generic_filter) if generic_filter else None]
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


CORPORA = {"samm": "SAMM", "casme3": "CASME3", "macro": "macro", "generic": "generic"}


def corpora(cfg: SynthMEConfig | dict) -> dict[str, str]:
    """{corpus: folder} that `generate_corpus` writes for this config: CORPORA, plus generic_inverse/
    when the config asks for the inverse stage's own pairs."""
    extra = cfg.get("generic_inverse_motion_px") if isinstance(cfg, dict) else cfg.generic_inverse_motion_px
    return {**CORPORA, "generic_inverse": "generic_inverse"} if extra else dict(CORPORA)


def generate_corpus(
    cfg: SynthMEConfig | dict,
    out_root: str | Path,
    force: bool = False,
    generic_filter: GenericFilter | None = None,
) -> dict:
    """Write SAMM/, CASME3/, macro/ and generic/ (and generic_inverse/ when configured) under out_root;
    skipped when the stamp matches the config.

    Each corpus is written into a temporary folder and renamed into place, so an interrupted run never
    leaves a corpus that looks complete. Returns {corpus: {"clips" or "pairs", "seconds"}} and the stamp.
    """

    if isinstance(cfg, dict):
        from magplus_lib.harness.profiles import from_dict

        cfg = from_dict(SynthMEConfig, cfg, "synthme")
    out_root = Path(out_root)
    stamp_path = out_root / STAMP
    h = config_hash(cfg, generic_filter)
    if not force and stamp_path.is_file():
        stamp = json.loads(stamp_path.read_text())
        if stamp.get("config_hash") == h and all((out_root / d).is_dir() for d in corpora(cfg).values()):
            log.info("SynthME corpus in %s is up to date (config %s)", out_root, h)
            return stamp
    out_root.mkdir(parents=True, exist_ok=True)
    n_micro = sum(int(v) for v in cfg.micro_clips_per_subject.values())
    n_casme = sum(int(v) for k, v in cfg.micro_clips_per_subject.items() if k in VOCAB["casme3"])
    n_macro = sum(int(v) for k, v in cfg.macro_clips_per_subject.items() if k in VOCAB["casme3"])
    samm_total = cfg.samm_subjects * n_micro
    if cfg.samm_emotion_counts is not None:
        samm_total = sum(int(v) for v in cfg.samm_emotion_counts.values())
    casme_total = cfg.casme3_subjects * n_casme
    if cfg.casme3_emotion_counts is not None:
        casme_total = sum(int(v) for k, v in cfg.casme3_emotion_counts.items() if k in VOCAB["casme3"])
    total = samm_total + casme_total + cfg.macro_subjects * n_macro
    report = {}
    threads = torch.get_num_threads()
    # Small per-frame tensor work: one thread is several times faster than two on a shared machine.
    torch.set_num_threads(1)
    try:
        _generate_all(cfg, out_root, generic_filter, report, total)
    finally:
        torch.set_num_threads(threads)
    stamp = {"config_hash": h, "config": dataclasses.asdict(cfg), "corpora": report}
    atomicio.write_json(stamp_path, stamp)
    return stamp


def _generate_all(cfg, out_root, generic_filter, report, total) -> None:
    from tqdm.auto import tqdm

    folders = corpora(cfg)
    n_pair_sets = sum(key.startswith("generic") for key in folders)
    with tqdm(total=total + cfg.generic_pairs * n_pair_sets, desc="SynthME") as bar:
        for key, folder in folders.items():
            t0 = time.perf_counter()
            tmp = out_root / f".{folder}.partial"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            if key == "samm":
                n = {"clips": len(write_samm(cfg, tmp, bar))}
            elif key == "generic":
                n = {"pairs": write_generic(cfg, tmp, generic_filter, bar)}
            elif key == "generic_inverse":
                motion = cfg.generic_inverse_motion_px
                n = {"pairs": write_generic(cfg, tmp, generic_filter, bar, motion_px=motion, stream=5)}
            else:
                n = {"clips": len(write_casme3(cfg, tmp, key, bar))}
            final = out_root / folder
            shutil.rmtree(final, ignore_errors=True)
            tmp.rename(final)
            report[key] = {**n, "seconds": round(time.perf_counter() - t0, 2)}
