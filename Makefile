# The commands the README names. Every environment is a virtual environment inside this
# checkout, installed only from this repository's files:
#
#   environment    directory              installed from                   runs
#   default-py311  .venv                  requirements/default-py311.txt   demo, suite, ruff, mypy
#   default-py313  .venvs/default-py313   requirements/default-py313.txt   suite
#   mxnet-py311    .venvs/mxnet-py311     requirements/mxnet-py311.txt     the tests marked mxnet
#
# The locks are exact, hashed pins generated from setup.py by uv (`make lock`); pip and
# setuptools come from requirements/bootstrap.txt first, so nothing unhashed is installed
# or used for a build. `make test-latest` runs the same checks on the newest releases
# setup.py allows (no lock), `make test-lowest` on the oldest (uv lowest-direct).
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DELETE_ON_ERROR:

PIP = python -m pip --disable-pip-version-check -q
DEFAULT_EXTRAS := video,aws,faces,dev
MXNET_EXTRAS := mxnet,video,aws,dev
# uv is pinned so that `make lock` resolves the same way everywhere.
UV_VERSION := 0.13.9
LOCK_PLATFORM := x86_64-manylinux_2_28

# pythonX.Y from PATH if it runs, else pyenv's newest X.Y (a pyenv shim runs only the
# selected versions unless PYENV_VERSION names one). Override with make PY311=/path/python3.11.
python_of = $(or $(shell for v in "" $(1); do PYENV_VERSION=$$v python$(1) -c 'import sys; print(sys.executable)' 2>/dev/null && break; done; true),$(error Python $(1) not found: install it (pyenv install $(1)) or pass PY$(subst .,,$(1))=/path/to/python$(1)))
PY311 ?= $(call python_of,3.11)
PY313 ?= $(call python_of,3.13)

# The suites. mxnet-marked tests skip (with the reason) where MXNet is missing and must
# run where it is installed; --require-mxnet makes a skip there an error.
# The first default suite runs every test; the others skip the once_per_ci ones (their
# subject does not depend on the Python running the suite: see pytest.ini), saying where
# they ran. `pytest tests` alone runs everything.
PYTEST := -m pytest -q -p no:cacheprovider --durations=30
SUITE_default := $(PYTEST)
SUITE_again := $(PYTEST) --skip-once-per-ci="make test's first suite (.venv)"
SUITE_mxnet := $(PYTEST) -m mxnet --require-mxnet

.PHONY: demo quickstart test test-latest test-lowest install install-demo lint types \
	lock bench check-image image-locks clean

# --- environments -------------------------------------------------------------------

# $(call locked_env,DIR,PYTHON,LOCK): a fresh venv with exactly LOCK, then lambdaflow.
# --no-compile: pip would byte-compile every module of every package (moto's and
# botocore's thousands), 2/3 of an install's CPU; Python compiles what is imported, once,
# into the venv's __pycache__ (51 -> 19 CPU-s for default-py311, docs/BENCHMARKS.md).
define locked_env
	rm -rf $(1)
	$(2) -m venv $(1)
	$(1)/bin/$(PIP) install --require-hashes --no-deps -r requirements/bootstrap.txt
	$(1)/bin/$(PIP) install --require-hashes --no-build-isolation --no-compile -r $(3)
	$(1)/bin/$(PIP) install --no-deps --no-build-isolation -e .
	$(1)/bin/$(PIP) check
	touch $(1)/.installed
endef

# $(call latest_env,DIR,PYTHON,EXTRAS): a fresh venv with the newest allowed releases.
define latest_env
	rm -rf $(1)
	$(2) -m venv $(1)
	$(1)/bin/$(PIP) install --upgrade pip
	$(1)/bin/$(PIP) install --upgrade --upgrade-strategy eager --no-compile -e ".[$(3)]"
	$(1)/bin/$(PIP) check
	touch $(1)/.installed
endef

.venv/.installed: requirements/bootstrap.txt requirements/default-py311.txt setup.py
	$(call locked_env,.venv,$(PY311),requirements/default-py311.txt)
.venvs/default-py313/.installed: requirements/bootstrap.txt requirements/default-py313.txt setup.py
	$(call locked_env,.venvs/default-py313,$(PY313),requirements/default-py313.txt)
.venvs/mxnet-py311/.installed: requirements/bootstrap.txt requirements/mxnet-py311.txt setup.py
	$(call locked_env,.venvs/mxnet-py311,$(PY311),requirements/mxnet-py311.txt)

.venvs/latest-default-py311/.installed: setup.py
	$(call latest_env,.venvs/latest-default-py311,$(PY311),$(DEFAULT_EXTRAS))
.venvs/latest-default-py313/.installed: setup.py
	$(call latest_env,.venvs/latest-default-py313,$(PY313),$(DEFAULT_EXTRAS))
.venvs/latest-mxnet-py311/.installed: setup.py
	$(call latest_env,.venvs/latest-mxnet-py311,$(PY311),$(MXNET_EXTRAS))

install install-demo: .venv/.installed

# --- the README's commands ------------------------------------------------------------

# The main job: a generated 720p sample video, histogrammed on local processes.
demo: install
	mkdir -p out
	.venv/bin/lambdaflow sample-video out/sample.mp4 --seconds 10 --width 1280 --height 720
	.venv/bin/lambdaflow histogram out/sample.mp4 --backend processes --out out/hist.npy --plot out/hist.png

quickstart: install
	.venv/bin/python examples/quickstart.py

# The three environments (installed side by side: mostly downloads), lint and types, then
# the three suites one after the other. SUITE_JOBS=2 runs the two default suites side by
# side, then MXNet: .ci/run took 692 s instead of ~1,200 s, but one of three such runs
# failed (a local-aws shutdown took over 60 s under the doubled load), so it is not the
# default; SUITE_JOBS=3 runs all three at once (the emulator's 3 s-timeout tests then
# timed out on a loaded 2-core machine). docs/BENCHMARKS.md "CI wall time".
LOCKED_ENVS := .venv/.installed .venvs/default-py313/.installed .venvs/mxnet-py311/.installed
LATEST_ENVS := .venvs/latest-default-py311/.installed .venvs/latest-default-py313/.installed \
	.venvs/latest-mxnet-py311/.installed
PARALLEL := $(MAKE) --no-print-directory -j3 --output-sync=target
SUITE_JOBS ?= 1
SUITES := $(MAKE) --no-print-directory -j$(SUITE_JOBS) --output-sync=target

# Each step prints its wall time (`make test: ... N s`), so a CI log says where it goes.
STEP = TIMEFORMAT="make test: $(1) %0R s"; time
test:
	$(call STEP,environments) $(PARALLEL) $(LOCKED_ENVS)
	$(call STEP,lint and types) $(MAKE) --no-print-directory lint types
	$(call STEP,suites) $(SUITES) suite/.venv/default suite/.venvs/default-py313/again \
		suite/.venvs/mxnet-py311/mxnet

test-latest:
	$(PARALLEL) $(LATEST_ENVS)
	$(MAKE) --no-print-directory lint types ENV=.venvs/latest-default-py311
	$(SUITES) suite/.venvs/latest-default-py311/default \
		suite/.venvs/latest-default-py313/again suite/.venvs/latest-mxnet-py311/mxnet

# suite/DIR/KIND: run SUITE_KIND in the environment DIR, with its own download cache for
# the classroom test photos (two suites writing one cache read half-written PNGs).
suite/%:
	$(call STEP,suite $*) LAMBDAFLOW_TESTDATA_CACHE=$(CURDIR)/$(*D)/testdata-cache \
		$(*D)/bin/python $(SUITE_$(*F))

ENV ?= .venv
lint: $(if $(filter .venv,$(ENV)),.venv/.installed)
	$(ENV)/bin/ruff check lambdaflow tests benchmarks examples worker_image

types: $(if $(filter .venv,$(ENV)),.venv/.installed)
	$(ENV)/bin/mypy

# The oldest releases setup.py allows, on the oldest Python: cloudpickle, numpy, boto3 ...
# (setuptools 66 still needs wheel to build; it is not part of the lock).
test-lowest: requirements/bootstrap.txt
	rm -rf .venvs/lowest-py311
	$(PY311) -m venv .venvs/lowest-py311
	.venvs/lowest-py311/bin/$(PIP) install --require-hashes --no-deps -r requirements/bootstrap.txt
	$(MAKE) --no-print-directory .venvs/uv/bin/uv
	.venvs/uv/bin/uv pip compile setup.py $(addprefix --extra ,$(subst $(comma), ,$(DEFAULT_EXTRAS))) \
		--resolution lowest-direct --python-version 3.11 --python-platform $(LOCK_PLATFORM) \
		--quiet -o .venvs/lowest-py311/lowest.txt
	.venvs/lowest-py311/bin/$(PIP) install wheel -r .venvs/lowest-py311/lowest.txt
	.venvs/lowest-py311/bin/$(PIP) install --no-deps --no-build-isolation -e .
	.venvs/lowest-py311/bin/$(PIP) check
	.venvs/lowest-py311/bin/python $(PYTEST)

# --- locks ----------------------------------------------------------------------------

comma := ,
.venvs/uv/bin/uv:
	$(PY311) -m venv .venvs/uv
	.venvs/uv/bin/$(PIP) install uv==$(UV_VERSION)

# $(call compile,PYTHON_VERSION,EXTRAS,OUT)
compile = .venvs/uv/bin/uv pip compile setup.py $(addprefix --extra ,$(subst $(comma), ,$(2))) \
	--constraint requirements/bootstrap.txt --generate-hashes --python-version $(1) \
	--python-platform $(LOCK_PLATFORM) --custom-compile-command "make lock" --quiet -o $(3)

# Regenerates every lock from setup.py with today's releases (commit the result).
lock: .venvs/uv/bin/uv
	.venvs/uv/bin/uv pip compile requirements/bootstrap.in --generate-hashes --python-version 3.11 \
		--python-platform $(LOCK_PLATFORM) --custom-compile-command "make lock" --quiet \
		-o requirements/bootstrap.txt
	$(call compile,3.11,$(DEFAULT_EXTRAS),requirements/default-py311.txt)
	$(call compile,3.13,$(DEFAULT_EXTRAS),requirements/default-py313.txt)
	$(call compile,3.11,$(MXNET_EXTRAS),requirements/mxnet-py311.txt)

# --- the rest -------------------------------------------------------------------------

bench: install .venvs/mxnet-py311/.installed
	.venv/bin/python benchmarks/wakeup_floor.py
	.venv/bin/python benchmarks/task_overhead.py --compare
	.venv/bin/python benchmarks/nested_tasks.py --n 20 --backends threads,processes
	.venv/bin/python benchmarks/gc_scan.py
	.venv/bin/python benchmarks/integrity.py
	.venv/bin/python benchmarks/lambda_fanout.py
	.venv/bin/python benchmarks/video_histogram.py --repeat 5 --sizes 480p,720p,720p-10bit --paired 40
	.venv/bin/python benchmarks/video_histogram.py --end-to-end --repeat 3
	.venv/bin/python benchmarks/video_cold_job.py
	.venv/bin/python benchmarks/video_histogram.py --end-to-end --repeat 3 --seconds 40 --sizes 720p
	.venvs/mxnet-py311/bin/python benchmarks/video_inference.py

check-image: install
	.venv/bin/python worker_image/check_image.py

# Regenerate the worker image variants' hashed lock files (uv; see worker_image/make_locks.py).
image-locks: install .venvs/uv/bin/uv
	.venv/bin/python worker_image/make_locks.py --uv .venvs/uv/bin/uv

clean:
	rm -rf .venv .venvs build *.egg-info lambdaflow/*.so
