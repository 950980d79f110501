# The commands the README names. Everything installs into ./.venv from this repo's files.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check

.PHONY: demo quickstart test install install-demo lint bench check-image image-locks clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip "setuptools<82" wheel

# Main job dependencies only (video extra).
$(VENV)/.demo-installed: $(VENV)/bin/python setup.py
	$(PIP) install -q -e ".[video]"
	touch $@

# Everything: all extras, test tools and local AWS stand-ins.
$(VENV)/.all-installed: $(VENV)/bin/python setup.py
	$(PIP) install -q -e ".[all]"
	touch $@ $(VENV)/.demo-installed

install-demo: $(VENV)/.demo-installed
install: $(VENV)/.all-installed

# The main job: a generated 720p sample video, histogrammed on local processes.
demo: install-demo
	mkdir -p out
	$(VENV)/bin/lambdaflow sample-video out/sample.mp4 --seconds 10 --width 1280 --height 720
	$(VENV)/bin/lambdaflow histogram out/sample.mp4 --backend processes --out out/hist.npy --plot out/hist.png

quickstart: install-demo
	$(PY) examples/quickstart.py

bench: install
	$(PY) benchmarks/task_overhead.py --compare
	$(PY) benchmarks/lambda_fanout.py
	$(PY) benchmarks/video_histogram.py --end-to-end --repeat 3
	$(PY) benchmarks/video_histogram.py --end-to-end --repeat 3 --seconds 40 --sizes 720p
	$(PY) benchmarks/video_inference.py

check-image: install
	$(PY) worker_image/check_image.py

# Regenerate the worker image variants' hashed lock files (uv; see worker_image/make_locks.py).
image-locks: install
	$(PIP) install -q uv
	$(PY) worker_image/make_locks.py --uv $(VENV)/bin/uv

test: install
	LAMBDAFLOW_REQUIRE_MXNET=1 $(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check lambdaflow tests benchmarks examples worker_image

clean:
	rm -rf $(VENV) build *.egg-info lambdaflow/*.so
