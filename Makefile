# The README's commands. Each target creates .venv on first use and installs the project into it;
# a fresh machine needs only Python 3.11+ and make.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.postbus-installed
# checkov pins packaging below what pytest needs, so it lives in its own environment.
TOOLS  := .tools/checkov
CHECKOV := $(TOOLS)/bin/checkov

.PHONY: demo test check bench emulators venv tools clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Postbus needs Python 3.11 or newer (found %d.%d); set PYTHON=python3.11" % sys.version_info[:2])'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade "pip>=25.1"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e . --group dev
	@touch $(STAMP)

tools: $(CHECKOV)

$(CHECKOV):
	@test -x $(TOOLS)/bin/python || $(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check --upgrade "pip>=25.1"
	$(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check "checkov>=3.3.30"

demo: venv
	$(BIN)/postbus demo $(DEMO_ARGS)

check: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: check tools
	$(BIN)/pytest $(PYTEST_ARGS)

bench: venv
	@for b in bench/*.py; do echo "== $$b" >&2; $(BIN)/python $$b || exit 1; done

# Both emulators in one process; their POSTBUS_* settings go into $(ENV_FILE) (other lines kept).
# More options: EMULATOR_ARGS="--quota azure-default" (see postbus emulator up --help).
ENV_FILE ?= .env
emulators: venv
	@$(BIN)/postbus emulator up --env-file $(ENV_FILE) $(EMULATOR_ARGS)

clean:
	rm -rf $(VENV) .tools .mypy_cache .ruff_cache .pytest_cache .hypothesis
