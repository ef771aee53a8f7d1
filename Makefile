# The two commands of the README. Each creates its own virtual environment and
# installs what it needs, so both work from a fresh clone.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# pip install, by uv where it can (several times faster; tools/install.py says how).
PIP := $(PY) tools/install.py

.PHONY: demo test test-fast lint bench docs clean

$(PY):
	$(PYTHON) -m venv $(VENV)

demo: $(PY)
	$(PIP) -e ".[examples]"
	$(PY) -m gradjax tour --out gradjax-tour
	@echo "open gradjax-tour/index.html"

lint: $(PY)
	$(PIP) -e ".[test]"
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# XLA's compiled programs are kept in .jax_cache, so a second run compiles only what changed.
PYTEST := JAX_COMPILATION_CACHE_DIR=$(CURDIR)/.jax_cache JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0 \
	JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES=0 $(VENV)/bin/pytest -n 2

# Everything: unit tests, doctests, the notebooks, the docs build, the wheel, multi-process runs.
test: lint
	$(PYTEST) --durations=15 --doctest-modules tests gradjax

# While changing code: the unit tests and doctests, without notebooks and other slow tests.
test-fast: $(PY)
	$(PIP) -e ".[test]"
	$(PYTEST) -m "not notebook and not slow" --doctest-modules tests gradjax

bench: $(PY)
	$(PIP) -e ".[bench]"
	# Without its dependencies: torchattacks' torchvision would replace the pinned CPU torch.
	$(PY) -m pip install --no-deps torchattacks
	$(PY) -m benchmarks

docs: $(PY)
	$(PIP) -e ".[docs]"
	$(VENV)/bin/sphinx-build -W --keep-going -b html docs docs/_build/html

clean:
	rm -rf $(VENV) .jax_cache gradjax-tour .pytest_cache .ruff_cache docs/_build docs/generated
