# Two commands: `make lab` opens the course, `make test` runs every test.
# Both build .venv the first time and reuse it after; editing pyproject.toml
# reinstalls.

PYTHON ?= python3
VENV ?= .venv
PYTEST_ARGS ?=

# Added only when running as root (containers, CI), where Jupyter refuses to start without it.
ALLOW_ROOT := $(shell [ "$$(id -u)" = 0 ] && echo --allow-root)

.PHONY: help lab test venv clean

help:
	@echo "make lab  — open the course in JupyterLab"
	@echo "make test — run every test"

venv: $(VENV)/.installed

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# The stamp is touched only after pip succeeds, so a failed install is retried.
$(VENV)/.installed: pyproject.toml | $(VENV)/bin/python
	$(VENV)/bin/python -m pip install -q -e '.[dev]'
	touch $@

test: $(VENV)/.installed
	$(VENV)/bin/python -m pytest tests notebooks labs --nbval --nbval-current-env \
		--nbval-sanitize-with tests/nbval-sanitize.cfg $(PYTEST_ARGS)

lab: $(VENV)/.installed
	$(VENV)/bin/jupyter lab $(ALLOW_ROOT) --notebook-dir=notebooks notebooks/00-quickstart.ipynb

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build dist *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
	find . -name .ipynb_checkpoints -type d -prune -exec rm -rf {} +
