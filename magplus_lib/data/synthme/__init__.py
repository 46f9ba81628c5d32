"""SynthME: a procedural, fully known micro/macro-expression corpus written in the real datasets' formats.

Why: SAMM and CAS(ME)^3 are licensed and never downloaded by this code, yet the default profile and every
test must go through the real loaders. SynthME renders synthetic subjects, moves their faces with FACS
action units modelled as smooth landmark-anchored displacement fields, and writes the clips exactly in
the SAMM layout (spreadsheet with preamble, grayscale frames, 200 fps) and the CAS(ME)^3 Part A layout
(label sheet, whole colour videos, 30 fps), quirks included. Its numbers are synthetic and are labelled so.

Geometry (all in pixels of the render size, flow convention of `magplus_lib.magnifier.flow`):
  A subject is a neutral image N, defined continuously by a supersampled, pre-filtered canvas.
  Frame t shows canonical point x at  q = x + j_t + s_t * U(x) + c_t * B(x),
  with j_t the head jitter, U the apex expression field (sum of AU fields), s_t its temporal profile,
  B the blink field and c_t its profile. Rendering inverts this map by fixed-point iteration and samples
  N at x, so frames are not blurred by repeated resampling. The ground truth of a clip is the
  displacement from its onset frame, D_t(p) = (j_t - j_o) + s_t U(p - j_o) + c_t B(p - j_o): pixel p of
  the onset frame is found at p + D_t(p) in frame t, i.e. D_t = F(I_onset, I_t) and
  `flow.warp(I_t, D_t) ~ I_onset`. `render_clip(spec, alpha)` renders the same clip with every
  displacement scaled by alpha (and the same photometric nuisances): the exact magnified clip.

Its modules, each building on the ones before it: config, identity, fields, render, sampling, writers,
generic_pairs, corpus, ground_truth; the names the rest of the study uses are imported here.
"""

from magplus_lib.data.clips import DataError
from magplus_lib.data.synthme.config import GROUND_TRUTH_JSON, GROUND_TRUTH_NPZ, STAMP, VOCAB, SynthMEConfig
from magplus_lib.data.synthme.corpus import config_hash, corpora, generate_corpus
from magplus_lib.data.synthme.fields import capped_scale, expression_field, field_strain
from magplus_lib.data.synthme.generic_pairs import (
    GenericFilter,
    ensure_generic_pairs,
    index_generic_videos,
    random_motion,
    write_generic,
)
from magplus_lib.data.synthme.ground_truth import (
    ClipTruth,
    corpus_is_grey,
    ground_truth_meta,
    load_ground_truth,
    load_macro_clips,
)
from magplus_lib.data.synthme.identity import LANDMARK_NAMES
from magplus_lib.data.synthme.render import (
    ClipSpec,
    displacement,
    landmark_tracks,
    landmarks_for_frames,
    render_clip,
)
from magplus_lib.data.synthme.sampling import make_clip_spec
from magplus_lib.data.synthme.writers import (
    HELDOUT_STREAM,
    TRAINING_STREAM,
    heldout_macro_specs,
    macro_specs,
    render_thinned,
    write_casme3,
    write_samm,
)

__all__ = [
    "ClipSpec",
    "ClipTruth",
    "DataError",
    "GROUND_TRUTH_JSON",
    "GROUND_TRUTH_NPZ",
    "GenericFilter",
    "HELDOUT_STREAM",
    "LANDMARK_NAMES",
    "STAMP",
    "SynthMEConfig",
    "TRAINING_STREAM",
    "VOCAB",
    "capped_scale",
    "config_hash",
    "corpora",
    "corpus_is_grey",
    "displacement",
    "ensure_generic_pairs",
    "expression_field",
    "field_strain",
    "generate_corpus",
    "ground_truth_meta",
    "heldout_macro_specs",
    "index_generic_videos",
    "landmark_tracks",
    "landmarks_for_frames",
    "load_ground_truth",
    "load_macro_clips",
    "macro_specs",
    "make_clip_spec",
    "random_motion",
    "render_clip",
    "render_thinned",
    "write_casme3",
    "write_generic",
    "write_samm",
]
