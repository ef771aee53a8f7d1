# The two commands of the README. Each creates its own virtual environment and
# installs what it needs, so both work from a fresh clone.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --quiet --disable-pip-version-check

.PHONY: demo test lint bench docs clean

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

test: lint
	$(VENV)/bin/pytest -n 2 --durations=15 --doctest-modules tests gradjax

bench: $(PY)
	$(PIP) -e ".[bench]"
	# Without its dependencies: torchattacks' torchvision would replace the pinned CPU torch.
	$(PY) -m pip install --no-deps torchattacks
	$(PY) -m benchmarks

docs: $(PY)
	$(PIP) -e ".[docs]"
	$(VENV)/bin/sphinx-build -W --keep-going -b html docs docs/_build/html

clean:
	rm -rf $(VENV) gradjax-tour .pytest_cache .ruff_cache docs/_build docs/generated
