# The commands the README names. Everything installs into ./.venv from this repo's files.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check

.PHONY: demo test install install-demo lint bench clean

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

demo: install-demo
	$(PY) examples/quickstart.py

test: install
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check lambdaflow tests benchmarks examples

clean:
	rm -rf $(VENV) build *.egg-info lambdaflow/*.so
