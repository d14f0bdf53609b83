# Two commands: `make run` serves semcache locally, `make test` runs every check and test.
# Everything else (uv, Python packages, Redis Stack, the embedder files) is fetched and verified on first use.

SHELL := /bin/bash
PORT ?= 8000
export PORT
export UV_PYTHON_DOWNLOADS ?= never
# Precompiled bytecode: imports (and so start-up) are much faster where PYTHONDONTWRITEBYTECODE is set.
export UV_COMPILE_BYTECODE ?= 1

# uv: the one on PATH, else a project-local copy installed from PyPI.
UV := $(shell command -v uv 2>/dev/null)
ifeq ($(UV),)
UV := $(CURDIR)/.local/uv/bin/uv
endif
# Lambda runs Python 3.12: prefer it (PATH or pyenv), else whatever python3 is (>= 3.11).
# (A pyenv shim may exist yet fail to run, so each candidate is tried.)
PY312 := $(shell for p in $$(command -v python3.12) $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.12*/bin/python3.12; do \
	"$$p" -c '' 2>/dev/null && { echo "$$p"; break; }; done)
export UV_PYTHON ?= $(if $(PY312),$(PY312),python3)

.PHONY: run test lint typecheck pytest sync models redis clean sam-validate sam-build sam-check build-x86_64 coldstart eval \
	train-verifier finetune eval-adapter eval-int8-gemm eval-distilled eval-ensemble8 eval-implied eval-cross fuzz bench bench-full

SAM := $(UV) tool run --from aws-sam-cli==1.170.0 sam
ARCH ?= arm64
BENCH_SIZES ?= 1000,10000
export SEMCACHE_UV := $(UV)

run: sync ## serve on 127.0.0.1:$(PORT) with Redis Stack and, without OPENAI_API_KEY, a local OpenAI stand-in
	$(UV) run --locked python local/run.py

test: sync lint typecheck pytest sam-check ## every check and test (starts its own Redis Stack and fake OpenAI)

lint: sync
	$(UV) run --locked ruff check .
	$(UV) run --locked ruff format --check .

typecheck: sync
	$(UV) run --locked mypy

pytest: sync
	$(UV) run --locked pytest

sync: $(UV)
	$(UV) sync --locked --all-extras --quiet

models: sync ## fetch and verify the embedder files into .local/models
	$(UV) run --locked python local/artifacts.py

redis: sync ## run the bundled Redis Stack in the foreground (port $$REDIS_PORT, default 6379)
	$(UV) run --locked python local/redis_stack.py serve

sam-validate: sync ## lint the SAM template
	$(SAM) validate --lint

sam-build: sync ## build the function and the embedder layer for Lambda (ARCH=arm64|x86_64), no Docker needed
	LAMBDA_ARCH=$(ARCH) $(SAM) build --build-in-source --parameter-overrides Architecture=$(ARCH)
	$(UV) run --locked python infra/check_build.py

# What CI checks: the template lints; the arm64 build (what we deploy) fits Lambda's size limit; an x86_64 build
# (what this machine runs) loads and answers through the real handler with nothing else on its path.
sam-check: sam-validate
	LAMBDA_ARCH=arm64 $(SAM) build --build-in-source --parameter-overrides Architecture=arm64
	$(UV) run --locked python infra/check_build.py
	$(MAKE) build-x86_64
	$(UV) run --locked python infra/check_build.py --build-dir .aws-sam/build-x86_64 --smoke --python $(UV_PYTHON)

build-x86_64: sync models
	LAMBDA_ARCH=x86_64 $(SAM) build --build-in-source --build-dir .aws-sam/build-x86_64 \
		--parameter-overrides Architecture=x86_64

bench: sync models ## benchmarks, quick profile (a few minutes): our path, the peers side by side, HTTP load
	$(UV) run --locked python bench/latency.py --sizes $(BENCH_SIZES)
	$(UV) run --locked --group bench python bench/peers.py
	$(UV) run --locked --group bench python bench/load.py --seconds 3 --max-clients 16
	$(UV) run --locked python bench/batching.py
	$(UV) run --locked python bench/knn.py --quick

bench-full: sync models ## the fuller profile: up to 100k entries, longer load levels
	$(UV) run --locked python bench/latency.py --sizes 1000,10000,100000 --iterations 400 --rounds 5
	$(UV) run --locked --group bench python bench/peers.py --iterations 600
	$(UV) run --locked --group bench python bench/load.py --seconds 10 --max-clients 64
	$(UV) run --locked python bench/knn.py
	$(UV) run --locked --group bench python bench/stages.py

eval: sync models ## measure the matcher on ../shared/data: writes docs/quality/eval.json and pr_curve.png
	$(UV) run --locked python eval/run_eval.py

train-verifier: sync models ## retrain src/semcache/core/verifier.npz from qqp/train (threshold chosen on qqp/dev)
	$(UV) run --locked python eval/train_verifier.py

fuzz: sync ## a longer schemathesis run over every route
	SEMCACHE_FUZZ_EXAMPLES=500 $(UV) run --locked pytest tests/unit/test_fuzz_api.py

TRAIN_PY := $(CURDIR)/.local/train-venv/bin/python
$(TRAIN_PY):
	python3 -m venv $(CURDIR)/.local/train-venv
	# torch 2.13.0 CPU: on this kind of machine pip takes it from a file on disk (no CUDA build download)
	$(TRAIN_PY) -m pip install --quiet torch==2.13.0 transformers safetensors onnx onnxruntime tokenizers numpy

# Retrain the verifier over the embedder in folder $(1) (verifier version $(2)), then measure both into docs/quality/$(3).
define measure-embedder
	SEMCACHE_EVAL_MODELS=$(1) SEMCACHE_VERIFIER_VERSION=$(2) \
		$(UV) run --locked python eval/train_verifier.py --out $(1)/verifier.npz
	SEMCACHE_EVAL_MODELS=$(1) $(UV) run --locked python eval/run_eval.py --verifier $(1)/verifier.npz \
		--out docs/quality/$(3)
endef

eval-distilled: sync models ## 8 networks distilled into one of 256, measured (not shipped): docs/quality/distilled/
	SEMCACHE_VERIFIER_VERSION=qqp-distilled-1 $(UV) run --locked python eval/train_verifier.py --members 8 \
		--distill 256 --out .local/eval/verifier-distilled.npz
	$(UV) run --locked python eval/run_eval.py --verifier .local/eval/verifier-distilled.npz --out docs/quality/distilled

eval-implied: sync models ## the verifier trained with the duplicates Quora implies, measured (not shipped): docs/quality/implied/
	SEMCACHE_VERIFIER_VERSION=qqp-ens4-implied-1 $(UV) run --locked python eval/train_verifier.py --implied 2 \
		--out .local/eval/verifier-implied.npz
	$(UV) run --locked python eval/run_eval.py --verifier .local/eval/verifier-implied.npz --out docs/quality/implied

eval-cross: sync models $(TRAIN_PY) ## a cross-encoder beside the verifier (about 45 minutes), measured (not shipped): docs/quality/cross/
	cd eval && $(TRAIN_PY) cross_encoder.py && $(TRAIN_PY) cross_encoder.py --export
	$(UV) run --locked python eval/cross_eval.py --out docs/quality/cross

eval-ensemble8: sync models ## a verifier of 8 networks, measured (not shipped): docs/quality/ensemble8/
	SEMCACHE_VERIFIER_VERSION=qqp-ens8-1 $(UV) run --locked python eval/train_verifier.py --members 8 \
		--out .local/eval/verifier-ens8.npz
	$(UV) run --locked python eval/run_eval.py --verifier .local/eval/verifier-ens8.npz --out docs/quality/ensemble8

ADAPTER := eval/adapters/qqp-lora16-1.npz
ADAPTED := .local/models-adapted
finetune: sync $(TRAIN_PY) ## train the embedder's adapter (about an hour on 2 cores), merge, check, measure it
	cd eval && $(TRAIN_PY) finetune.py --out ../$(ADAPTER)
	$(MAKE) eval-adapter

eval-adapter: sync ## the figures of the adapted embedder (docs/quality/adapter/), from $(ADAPTER)
	$(UV) run --locked python local/artifacts.py --dest $(ADAPTED) --adapter $(ADAPTER)
	test ! -x $(TRAIN_PY) || (cd eval && $(TRAIN_PY) check_adapter.py ../$(ADAPTER) ../$(ADAPTED)/model.onnx \
		--base ../$(ADAPTED)/base.onnx)
	$(call measure-embedder,$(ADAPTED),qqp-ens4-lora16-1,adapter)

INT8_GEMM ?= all
INT8_NAME := int8-gemm$(if $(filter attention,$(INT8_GEMM)),-attention,)
eval-int8-gemm: sync ## the embedder computing in int8 (INT8_GEMM=all|attention), measured: docs/quality/int8-gemm*/
	$(UV) run --locked python local/artifacts.py --dest .local/models-$(INT8_NAME) --int8-gemm $(INT8_GEMM)
	$(call measure-embedder,.local/models-$(INT8_NAME),qqp-ens4-$(INT8_NAME)-1,$(INT8_NAME))

coldstart: sync models ## benchmark: Lambda init (import the handler, build the service) in fresh processes
	$(UV) run --locked python bench/coldstart.py
	$(MAKE) build-x86_64  # always from the current code: a stale build would time old code
	$(UV) run --locked python bench/coldstart.py --build-dir .aws-sam/build-x86_64 --python $(UV_PYTHON) \
		--secrets none,sdk,extension

$(CURDIR)/.local/uv/bin/uv:
	python3 -m pip install --quiet --disable-pip-version-check --target $(CURDIR)/.local/uv uv

clean:
	rm -rf .venv .local .pytest_cache .mypy_cache .ruff_cache
