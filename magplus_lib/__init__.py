"""magplus_lib: the thin library behind the MagPlus reproducibility study.

Its packages follow the study's architecture (ARCHITECTURE.md draws them):
  harness     - profiles and settings, the notebook runner, the restore-or-retrain cache, atomic writes
  data        - clips and the SAMM / CAS(ME)^3 / CASME II loaders, face crops, splits, training pairs,
                SynthME (the synthetic corpus in the real datasets' formats)
  magnifier   - MagPlus / DeMagPlus: the U-Net, flow estimators, training, inference, accuracy checks
  backbones   - frozen face-animation backbones, their training and their competence check
  evaluation  - metrics and intervals, the micro-expression evaluator, sweep, generation, tables, figures
Heavy modules (torch) are never imported here, so `python -m magplus_lib` starts fast.
"""

__version__ = "0.1.0"
