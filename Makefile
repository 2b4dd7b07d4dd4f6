# `make test` and `make demo` set everything up themselves (a virtualenv in .venv) on a fresh clone.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
EXTRAS := dev,torch,faces
STAMP := $(VENV)/.installed

.PHONY: test demo setup system clean

setup: $(STAMP) system

# ffmpeg (H.264 for `fdx synth`) and jemalloc (CPU runs, see fdx/allocator.py): installed with apt when running as
# root, otherwise say how.
APT_PACKAGES := $(if $(shell command -v ffmpeg),,ffmpeg) $(if $(wildcard /usr/lib/*/libjemalloc.so.2),,libjemalloc2)

system:
	@[ -z "$(strip $(APT_PACKAGES))" ] || { if [ "$$(id -u)" = 0 ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES) >/dev/null; \
	  else echo "missing: $(APT_PACKAGES) (sudo apt-get install $(APT_PACKAGES))"; fi; }

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -U pip
	$(PY) -m pip install -q -e '.[$(EXTRAS)]'
	$(PY) -m fdx.models.cpu_kernels
	touch $@

# test and demo run under jemalloc where the `fdx` program would use it (fdx/allocator.py): ~13 % faster here.
# Most tests use one core, so two pytest-xdist workers (one file each at a time: module fixtures, such as the SLURM
# cluster, are set up once) take 796 s against 1249 s in one process on this 2-core machine.
TEST_WORKERS ?= 2
test: setup
	$(PY) -m fdx.allocator $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=10 tests

demo: setup
	$(PY) -m fdx.allocator $(PY) -m fdx.demo work

clean:
	rm -rf $(VENV) work
