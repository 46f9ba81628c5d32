"""magplus_lib: the thin library behind the MagPlus reproducibility study.

One concern per module:
  profiles   - profile YAML -> parameters, environment-variable paths, config dataclasses
  runner     - jupytext notebook -> papermill execution -> results/<profile>/executed, manifest
  atomicio   - write-to-temp-then-rename helpers used by every writer
  checkpoints - loading weights with an error naming what does not fit
  runtime    - seeds, devices, bf16 autocast on CUDA
  synthme, clips, samm, casme3, casme2, faces, splits, pairs, macro_videos - data
  flow, magnifier, training, known_motion - the magnifier, its flow estimators, its accuracy check
  backbones, fomm, latent, external, pipeline - frozen face-animation backbones
  metrics, mer, generation, sweep, reporting - evaluation and the paper's artefacts
Heavy modules (torch) are never imported here, so `python -m magplus_lib` starts fast.
"""

__version__ = "0.1.0"
