# `make test` and `make demo` set everything up themselves (a virtualenv in .venv) on a fresh clone.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
EXTRAS := dev,torch,faces
STAMP := $(VENV)/.installed

.PHONY: test demo setup clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -U pip
	$(PY) -m pip install -q -e '.[$(EXTRAS)]'
	touch $@

test: $(STAMP)
	$(PY) -m pytest -q --durations=10 tests

demo: $(STAMP)
	$(PY) -m fdx.demo work/demo

clean:
	rm -rf $(VENV) work
