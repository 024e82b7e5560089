# golf — the two commands a newcomer needs:
#   make demo    install what is missing, train + export + score the embedded demo on CPU
#   make test    install what is missing, run the test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# The CPU build on a machine without GPUs; on a CUDA machine: make install TORCH="torch==2.13.*"
TORCH  ?= torch==2.13.0
PYTEST_ARGS ?=

.PHONY: install demo test test-slow test-all test-slurm bench lint clean

# lrzip: the per-group container's ZPAQ codec (quant=pr1855); installed with apt where we are root, else
# named (its tests skip without it)
install: $(VENV)/.installed
	@command -v lrzip >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  apt-get install -y -q lrzip >/dev/null; } || echo "note: no lrzip binary (quant=pr1855 needs it): apt-get install lrzip"

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

demo: install
	$(PY) -m golf.train experiment=demo

test: install
	$(PY) -m pytest -q -m "not slow and not slurm and not gpu" $(PYTEST_ARGS)

test-slow: install
	$(PY) -m pytest -q -m "slow and not slurm and not gpu" $(PYTEST_ARGS)

test-all: install
	$(PY) -m pytest -q -m "not slurm" $(PYTEST_ARGS)

# Starts a local single-node Slurm cluster (root, Debian slurm-wlm), runs the Slurm tests, stops it.
test-slurm: install
	bash launch/ci-slurm.sh $(PY)

bench: install
	@for f in bench/bench_*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

lint: install
	$(PY) -m ruff check golf hydra_plugins tests bench launch

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
