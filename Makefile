# `make test` and `make demo` set everything up themselves (a virtualenv in .venv) on a fresh clone.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
EXTRAS := dev,torch,faces
STAMP := $(VENV)/.installed

.PHONY: test demo setup system clean

setup: $(STAMP) system

# ffmpeg (H.264 for `fdx synth`): installed with apt when running as root, otherwise say how.
system:
	@command -v ffmpeg >/dev/null || { if [ "$$(id -u)" = 0 ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg >/dev/null; \
	  else echo "ffmpeg is missing: install it (sudo apt-get install ffmpeg) for fdx synth"; fi; }

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -U pip
	$(PY) -m pip install -q -e '.[$(EXTRAS)]'
	touch $@

test: setup
	$(PY) -m pytest -q --durations=10 tests

demo: setup
	$(PY) -m fdx.demo work

clean:
	rm -rf $(VENV) work
