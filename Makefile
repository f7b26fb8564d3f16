# Two commands: `make lab` opens the course, `make test` runs every test.
# Both build .venv the first time and reuse it after; editing pyproject.toml
# reinstalls.

PYTHON ?= python3
VENV ?= .venv
PYTEST_ARGS ?=
# Port of `make app` (Voila's usual one).
APP_PORT ?= 8866

# Added only when running as root (containers, CI), where Jupyter refuses to start without it.
ALLOW_ROOT := $(shell [ "$$(id -u)" = 0 ] && echo --allow-root)

.PHONY: help lab test app notebooks venv clean

help:
	@echo "make lab  — open the course in JupyterLab"
	@echo "make test — run every test"
	@echo "make app  — serve the mail client (notebooks/06) as a web page with Voila, port APP_PORT=$(APP_PORT)"

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

# The mail-client notebook as a standalone page (the apps and the text, no code).
# MAILKIT_SERVER=host:port in the environment points every login form at a class server.
app: $(VENV)/.installed
	$(VENV)/bin/voila --no-browser --port=$(APP_PORT) --Voila.ip=127.0.0.1 notebooks/06-mail-client.ipynb

# After changing mailkit: re-run the course notebooks in place, so their saved
# outputs are again what a student first sees (then `make test` checks them).
notebooks: $(VENV)/.installed
	$(VENV)/bin/jupyter nbconvert --to notebook --execute --inplace \
		--ExecutePreprocessor.record_timing=False notebooks/*.ipynb

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build dist *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
	find . -name .ipynb_checkpoints -type d -prune -exec rm -rf {} +

# Notebook 08's capture: a login, a 100 KB mail (twice) and a refused connection on
# loopback, recorded live (root or CAP_NET_RAW; CI is root) into notebooks/captures/.
# After re-recording, run `make notebooks` so notebook 08's outputs match it.
.PHONY: capture
capture: $(VENV)/.installed
	$(VENV)/bin/python -m mailkit.capture record notebooks/captures/mailkit-exchange.pcap
