"""Replay a cached stage's 24-step fingerprint on this machine and compare it with the entry's record.

    python benchmarks/replay_fingerprint.py 03_backbones [--profile default]

`make cache-rekey` replays the fingerprint only when a stage's key changed, and `make cache-attest` only
when no fingerprint of this CPU label exists; this says, without changing anything, whether this
machine retrains a stage to the recorded bits. Two machines with one CPU label (e.g. "AMD EPYC" with and
without AVX-512) can replay differently (docs/reproducibility.md). Nothing is written to results/ or
cache/: the replay runs in a scratch results folder.
"""

from __future__ import annotations

import argparse

from magplus_lib.harness import cache, cache_runs, provenance


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("stage", help="a cached stage, e.g. 03_backbones or 01_pretrain-forward")
    ap.add_argument("--profile", default="default")
    args = ap.parse_args()
    prov = cache.read_provenance(args.profile, args.stage)
    if prov is None:
        raise SystemExit(f"no cache entry {cache.entry_dir(args.profile, args.stage)}")
    inv = prov["invocation"]
    replay = cache_runs.fingerprinter(
        inv["notebook"],
        args.profile,
        inv.get("tag"),
        inv.get("overrides") or {},
        inv["stems"],
        inv.get("settings") or {},
    )()
    cpu = provenance.machine()["cpu"]
    recorded = cache.recorded_fingerprint(prov, cpu)
    print(f"recorded on {', '.join(cache.fingerprint_cpus(prov)) or 'no CPU'}; for {cpu}: {recorded}")
    print(f"replayed here: {replay}")
    print("the same bits" if replay == recorded else "DIFFERENT: this machine trains other bits")


if __name__ == "__main__":
    main()
