# Two commands: `make lab` opens the course, `make test` runs every test.
# Both build .venv the first time and reuse it after; editing pyproject.toml
# reinstalls.

PYTHON ?= python3
VENV ?= .venv
PYTEST_ARGS ?=
# `make test` runs four workers (pytest-xdist): most tests wait on sockets,
# timers and kernels, not on the CPU (a 2-core run used a third of its cores),
# so four share two cores well (318 s against 514 s with two, same suite).
# TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= 4
# One file (a notebook, a test module) per work unit: a notebook's cells run in
# order in one kernel, a module's fixtures are built once.  tests/conftest.py
# puts the costly files first; --durations=10 lists the slowest ten at the end.
XDIST = -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder
# Port of `make app` (Voila's usual one).
APP_PORT ?= 8866
# Extra options for `make lab`, e.g. LAB_ARGS='--port 8899 --no-browser'
# or LAB_ARGS='--IdentityProvider.token=SECRET' (see README).
LAB_ARGS ?=

# Added only when running as root (containers, CI), where Jupyter refuses to start without it.
ALLOW_ROOT := $(shell [ "$$(id -u)" = 0 ] && echo --allow-root)

.PHONY: help lab test test-fast app notebooks venv clean

help:
	@echo "make lab  — open the course in JupyterLab, at its home page (index.ipynb)"
	@echo "            LAB_ARGS='--port 8899 --no-browser' passes options to jupyter lab"
	@echo "make test — run every test (the one that must pass)"
	@echo "make test-fast — tests/ without the browser and slow tests (no notebooks): the edit-run loop"
	@echo "make app  — serve the mail client (notebooks/06) as a web page with Voila, port APP_PORT=$(APP_PORT)"

venv: $(VENV)/.installed

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# The stamp is touched only after pip succeeds, so a failed install is retried.
$(VENV)/.installed: pyproject.toml | $(VENV)/bin/python
	@echo "Installing mailkit and the course's packages into $(VENV) (the first time takes about 2 minutes)..."
	$(VENV)/bin/python -m pip install --progress-bar on -e '.[dev]'
	touch $@

# It says when each part (tests/, browser tests, notebooks/ and labs/ under
# nbval) starts and ends, and at the end how long each took.
test: $(VENV)/.installed
	$(VENV)/bin/python -m pytest tests notebooks labs --nbval --nbval-current-env \
		--nbval-sanitize-with tests/nbval-sanitize.cfg $(XDIST) --durations=10 $(PYTEST_ARGS)

# For the edit-run loop: tests/ without the browser tests and the tests marked
# slow (grading whole labs, the fuzzer, the real password hash, commands and
# checks that wait out a budget), and without the notebooks (nbval).
# Not a substitute: `make test` is the command that must pass.
test-fast: $(VENV)/.installed
	$(VENV)/bin/python -m pytest tests -m "not browser and not slow" $(XDIST) --durations=10 $(PYTEST_ARGS)

# The whole repository is visible (notebooks/, assignments/, docs/); JupyterLab
# opens the course's home page, index.ipynb, which links to all of it.  The
# labs' student versions are written to assignments/ the first time (labs/
# holds the solutions).  Markdown files open rendered (jupyter/overrides.json).
LAB_ENV = PATH="$(abspath $(VENV))/bin:$$PATH" MAILKIT_VENV_BIN="$(abspath $(VENV))/bin"
LAB_TERMINAL = --ServerApp.terminado_settings="shell_command=$(CURDIR)/jupyter/course-shell"
# Its terminals (File > New > Terminal) run jupyter/course-shell: the user's
# shell with .venv/bin first on PATH, so the home page's
# `python -m mailkit.labs check ...` runs there as shown.
lab: $(VENV)/.installed assignments
	@mkdir -p $(VENV)/share/jupyter/lab/settings
	@cp jupyter/overrides.json $(VENV)/share/jupyter/lab/settings/overrides.json
	$(LAB_ENV) $(VENV)/bin/jupyter lab $(ALLOW_ROOT) --notebook-dir=. $(LAB_TERMINAL) $(LAB_ARGS) index.ipynb

# Student versions of the labs (no solutions, no hidden checks); in a student
# repository, which has assignments/ and no labs/, there is nothing to do.
assignments: | $(VENV)/.installed
	@if [ -d labs ]; then \
		echo "Writing the labs' student versions to assignments/ ..."; \
		$(VENV)/bin/python -m mailkit.labs release labs --out assignments --no-check; \
	fi

# The mail-client notebook as a standalone page (the apps and the text, no code).
# MAILKIT_SERVER=host:port in the environment points every login form at a class server.
# voila.json (read from this folder) leaves out the cells tagged notebook-only
# and shuts down the kernel (and practice server) of a tab closed for 2 minutes.
app: $(VENV)/.installed
	@echo "The mail client as a web page: http://127.0.0.1:$(APP_PORT)/ (Ctrl-C stops it)"
	$(VENV)/bin/voila --no-browser --port=$(APP_PORT) --Voila.ip=127.0.0.1 notebooks/06-mail-client.ipynb

# After changing mailkit: re-run the course notebooks in place, so their saved
# outputs are again what a student first sees (then `make test` checks them).
# Then write them as JupyterLab saves them (mailkit/course/tidy.py), so that a
# student who opens and saves one changes no byte that git tracks.
notebooks: $(VENV)/.installed
	$(VENV)/bin/jupyter nbconvert --to notebook --execute --inplace \
		--ExecutePreprocessor.record_timing=False notebooks/*.ipynb
	$(VENV)/bin/python -m mailkit.course.tidy notebooks/*.ipynb index.ipynb

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
