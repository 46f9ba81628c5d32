# MagPlus study. `make paper` runs the whole study on a profile (default: the embedded CPU study);
# `make test` runs lint + the test suite. Both set the environment up first (.venv, once).
#
#   make paper [PROFILE=default|ci|full]   every stage below, then tables and figures
#   make data | pretrain | finetune | backbones | evaluator | sweep | generate
#   make table1 .. table4 | figures        one artefact and only what it depends on
#   make lab                               JupyterLab on the notebooks (the magplus kernel)
#   make readme                            refresh README.md's and docs/findings.md's blocks from results/
#   make smoke-full                        the full profile's code path at tiny sizes on stand-ins (CI)
#
# Each stage target is the executed notebook results/<PROFILE>/executed/<name>.ipynb. It depends on
# the notebook, on its resolved parameters (results/<PROFILE>/params/<name>.json, rewritten only when
# the profile values it uses change), on the library modules it imports (params/<name>.d) and on the
# upstream stages, so a second `make paper` does nothing and a parameter change reruns only what uses it.
#
# Training stages restore their checkpoints from cache/<PROFILE>/ when the entry's key (parameters,
# code, versions, upstream keys) matches, and train when it does not (magplus_lib/harness/cache.py):
#   make paper FROM_SCRATCH=1   ignore the cache: retrain every stage
#   make cache                  restore what matches, retrain the rest and write their cache entries
#   make cache-rekey            after a behaviour-neutral code change: replay each stale entry's first
#                               steps, re-key it if its weights reproduce bit for bit, else retrain it
#   make cache-attest           on a new CPU model, before changing code: replay each matching entry's
#                               first steps here and record them as its fingerprint for this CPU model
#   make cache-extend           after adding a training phase to a cached model's settings: restore the
#                               stale entry and let each trainer continue or reuse what it allows
#   make verify-cache           retrain the cheapest entry (or VERIFY_STAGE) and compare it bit for bit

PROFILE ?= default
DATASETS ?= samm casme3
PYTHON_SYS ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SETUP := $(VENV)/.magplus-setup
# Absolute, so that targets named by a sub-make (which inherits MAGPLUS_RESULTS) and by the .d files
# (written by the library, which anchors results at the repository root) are the same names.
RESULTS := $(abspath $(or $(MAGPLUS_RESULTS),results))
# A profile given as a YAML path files its results under its `name:` field (else the file's stem),
# as magplus_lib.harness.profiles.profile_name does.
PROFILE_NAME := $(if $(filter %.yaml %.yml,$(PROFILE)),$(or $(shell sed -n 's/^name: *["'"'"']\{0,1\}\([A-Za-z0-9_-]*\).*/\1/p' $(PROFILE) 2>/dev/null | head -n 1),$(basename $(notdir $(PROFILE)))),$(PROFILE))
R := $(RESULTS)/$(PROFILE_NAME)
EX := $(R)/executed
PR := $(R)/params
RUN := $(PY) -m magplus_lib run-notebook
export MAGPLUS_RESULTS := $(RESULTS)
# Independent stages (backbones beside the magnifier, per-dataset stages) run side by side; training
# stages use one torch thread each (profile), so the two jobs fill the two cores without changing numbers.
JOBS ?= 2
FROM_SCRATCH ?=
CACHE_MODE ?= $(if $(FROM_SCRATCH),scratch,restore)
VERIFY_STAGE ?=
CACHE_DIR := $(or $(MAGPLUS_CACHE),cache)
# Settings changed for this run without editing the profile, e.g. SET='pretrain.steps=2 image_size=32'
# (recorded with every stage's parameters in the manifest).
SET ?=
SETARGS := $(foreach s,$(SET),--set '$(s)')

.DELETE_ON_ERROR:
.SUFFIXES:
.PHONY: all setup lock test test-cache lint paper data pretrain finetune backbones evaluator sweep generate \
        table1 table2 table3 table4 tables figures lab check-profile clean-profile FORCE stages \
        cache cache-rekey cache-extend cache-attest verify-cache readme smoke-full

all: paper

# ---------------------------------------------------------------- set-up (once per pyproject change)
# requirements.lock pins every package (transitive ones too) to the versions the committed results were
# computed with; `make lock` rewrites it from the current .venv after a deliberate upgrade.
$(SETUP): pyproject.toml requirements.lock
	$(PYTHON_SYS) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet -c requirements.lock -e ".[dev]"
	$(PY) -m ipykernel install --sys-prefix --name magplus --display-name "Python (magplus)"
	touch $@

setup: $(SETUP)

lock:
	( echo "# Exact versions of every package .venv holds (linux x86_64, Python 3.11); make setup installs"; \
	  echo "# with these as constraints and make test fails when .venv drifts. Regenerate: make lock"; \
	  $(VENV)/bin/pip freeze --exclude-editable --disable-pip-version-check ) > requirements.lock.tmp
	mv requirements.lock.tmp requirements.lock

# ---------------------------------------------------------------- tests
lint: $(SETUP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

# pytest exits 5 when it collected no test; make treats any non-zero exit as failure.
# make test: unit tests and the whole pipeline on PROFILE=ci (about 5 min); make test-cache: the costlier
# end-to-end checks of make's reruns and of restore, re-key and verify-cache (CI runs both).
test: lint
	$(PY) -m pytest -q -m "not cache"

test-cache: | $(SETUP)
	$(PY) -m pytest -q -m cache

# ---------------------------------------------------------------- profile check
# The full profile needs user-supplied paths: stop at once, listing every missing one; SET's values are
# type-checked here, before any stage starts.
check-profile: $(SETUP)
	@$(PY) -m magplus_lib check-profile $(PROFILE) $(SETARGS)

# ---------------------------------------------------------------- stages
# $(call stage,NAME,NOTEBOOK,RUN-ARGS,UPSTREAM-NAMES[,CACHED-CHECKPOINT-STEMS]) defines the rule for
# $(EX)/NAME.ipynb. A stage with checkpoint stems is a cache entry; from scratch every stage reruns, and
# make cache / cache-rekey rerun the cached ones (a matching entry is restored in seconds).
define stage
$(EX)/$(1).ipynb: notebooks/$(2).py $(PR)/$(1).json $(foreach u,$(4),$(EX)/$(u).ipynb) \
    $(if $(FROM_SCRATCH),FORCE,$(if $(and $(5),$(filter write rekey extend attest,$(CACHE_MODE))),FORCE)) | $(SETUP)
	$(RUN) notebooks/$(2).py --profile $(PROFILE) $(3) $(SETARGS) --after '$(4)' --cache '$(5)' --cache-mode $(CACHE_MODE)
$(PR)/$(1).json: FORCE | $(SETUP) check-profile
	@$(PY) -m magplus_lib params notebooks/$(2).py --profile $(PROFILE) $(3) $(SETARGS) --out $$@
STAGES += $(if $(wildcard notebooks/$(2).py),$(1))
endef
FORCE:

exists = $(filter $(STAGES),$(1))
ex = $(foreach s,$(call exists,$(1)),$(EX)/$(s).ipynb)

$(eval $(call stage,00_data,00_data,,))
$(eval $(call stage,01_pretrain-forward,01_pretrain,--tag forward -p direction=forward,$(call exists,00_data),magplus_pretrain))
$(eval $(call stage,01_pretrain-inverse,01_pretrain,--tag inverse -p direction=inverse,$(call exists,01_pretrain-forward),demagplus_pretrain))
$(foreach d,$(DATASETS),\
  $(eval $(call stage,02_finetune-$(d)-forward,02_finetune,--tag $(d)-forward -p dataset=$(d) -p direction=forward,$(call exists,01_pretrain-forward),magplus_$(d)))\
  $(eval $(call stage,02_finetune-$(d)-inverse,02_finetune,--tag $(d)-inverse -p dataset=$(d) -p direction=inverse,$(call exists,01_pretrain-inverse),demagplus_$(d))))
# backbone_*: whichever backbones the profile trains (none on the full profile: official or external).
$(eval $(call stage,03_backbones,03_backbones,,$(call exists,00_data),backbone_*))
$(foreach d,$(DATASETS),\
  $(eval $(call stage,04_evaluator-$(d),04_evaluator,--tag $(d) -p dataset=$(d),$(call exists,00_data)))\
  $(eval $(call stage,05_alpha_sweep-$(d),05_alpha_sweep,--tag $(d) -p dataset=$(d),$(call exists,02_finetune-$(d)-forward 02_finetune-$(d)-inverse 03_backbones 04_evaluator-$(d))))\
  $(eval $(call stage,06_generate-$(d),06_generate,--tag $(d) -p dataset=$(d),$(call exists,05_alpha_sweep-$(d)))))
# Tables 1 and 4 use SAMM, table 2 CAS(ME)^3, table 3 both (paper section 5).
GEN_samm := $(call exists,06_generate-samm)
GEN_casme3 := $(call exists,06_generate-casme3)
$(eval $(call stage,07_tables-table1,07_tables,--tag table1 -p 'tables=[1]',$(GEN_samm)))
$(eval $(call stage,07_tables-table2,07_tables,--tag table2 -p 'tables=[2]',$(GEN_casme3)))
$(eval $(call stage,07_tables-table3,07_tables,--tag table3 -p 'tables=[3]',$(GEN_samm) $(GEN_casme3)))
$(eval $(call stage,07_tables-table4,07_tables,--tag table4 -p 'tables=[4]',$(GEN_samm)))
$(eval $(call stage,08_figures,08_figures,,$(foreach d,$(DATASETS),$(call exists,06_generate-$(d)))))

-include $(wildcard $(PR)/*.d)
# A library file that a .d of an earlier run names but that no longer exists (moved or removed) makes
# the stages depending on it out of date instead of stopping make.
magplus_lib/%.py: ;

data: $(call ex,00_data)
pretrain: $(call ex,01_pretrain-forward 01_pretrain-inverse)
finetune: $(call ex,$(foreach d,$(DATASETS),02_finetune-$(d)-forward 02_finetune-$(d)-inverse))
backbones: $(call ex,03_backbones)
evaluator: $(call ex,$(foreach d,$(DATASETS),04_evaluator-$(d)))
sweep: $(call ex,$(foreach d,$(DATASETS),05_alpha_sweep-$(d)))
generate: $(call ex,$(foreach d,$(DATASETS),06_generate-$(d)))
table1: $(call ex,07_tables-table1)
table2: $(call ex,07_tables-table2)
table3: $(call ex,07_tables-table3)
table4: $(call ex,07_tables-table4)
tables: table1 table2 table3 table4
figures: $(call ex,08_figures)

# Every stage whose notebook exists, in dependency order, JOBS at a time.
paper: | $(SETUP)
	@$(MAKE) --no-print-directory -j$(JOBS) stages
	@$(PY) -m magplus_lib export-notebooks $(R)
	@echo "study '$(PROFILE)' is up to date: tables in $(R)/tables, figures in $(R)/figures"

stages: $(foreach s,$(STAGES),$(EX)/$(s).ipynb)

cache: | $(SETUP)
	@$(MAKE) --no-print-directory paper CACHE_MODE=write

cache-rekey: | $(SETUP)
	@$(MAKE) --no-print-directory paper CACHE_MODE=rekey

cache-extend: | $(SETUP)
	@$(MAKE) --no-print-directory paper CACHE_MODE=extend

# Only the training stages: an attestation changes no output, so the stages after them need not rerun.
cache-attest: | $(SETUP)
	@$(MAKE) --no-print-directory pretrain finetune backbones CACHE_MODE=attest

# Needs the corpora and the pretraining checkpoints (restored), then retrains the entry in a scratch copy.
readme: | $(SETUP)
	$(PY) -m magplus_lib readme

verify-cache: | $(SETUP)
	@$(MAKE) --no-print-directory -j$(JOBS) $(call ex,00_data $(if $(wildcard $(CACHE_DIR)/$(PROFILE)/01_pretrain-*),01_pretrain-forward 01_pretrain-inverse))
	$(PY) -m magplus_lib verify-cache $(VERIFY_STAGE) --profile $(PROFILE)

# ---------------------------------------------------------------- the full profile, proven on CPU
# The full profile's code path, unchanged, at tiny counts and sizes (profile smoke-full extends full),
# on stand-ins in the official file formats that tests/full_standins.py fabricates (random weights;
# SAMM / CAS(ME)^3 trees written by SynthME; OpenCV videos; fake checkouts of the external models).
# Fails if any stage fails or is missing from the run. Called by .ci/run.
SMOKE_IN := $(RESULTS)/smoke-full-inputs
# What the full profile's own checks write on real-format data, which has no ground truth: each must
# exist (the magnifiers' accuracy on real onset frames moved by a known field, the real-frame check).
SMOKE_CHECKS := $(foreach d,$(DATASETS),metrics/magnifier_magplus_$(d).csv metrics/magnifier_demagplus_$(d).csv) \
    metrics/realframe_pretrain_forward.csv metrics/realframe_pretrain_inverse.csv \
    figures/pretrain_forward_accuracy.png figures/pretrain_inverse_accuracy.png
smoke-full: | $(SETUP)
	rm -rf $(SMOKE_IN) $(RESULTS)/smoke-full
	mkdir -p $(SMOKE_IN)
	$(PY) tests/full_standins.py $(SMOKE_IN) > $(SMOKE_IN)/env.sh
	. $(SMOKE_IN)/env.sh && $(MAKE) --no-print-directory check-profile paper PROFILE=smoke-full
	$(PY) -m magplus_lib check-run smoke-full $(STAGES) --expect $(SMOKE_CHECKS)

# ---------------------------------------------------------------- interactive
# Each finished stage of PROFILE as a notebook with its run's parameters (results/<P>/lab/), then JupyterLab.
lab: $(SETUP)
	$(PY) -m magplus_lib lab-notebooks $(PROFILE)
	$(VENV)/bin/jupyter lab --notebook-dir=. $(R)/lab

clean-profile:
	rm -rf $(R)/executed $(R)/params $(R)/keys $(R)/manifest.json
