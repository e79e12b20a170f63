# The README's commands. Each target creates .venv on first use and installs the project into it;
# a fresh machine needs only Python 3.11+ and make.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.postbus-installed
# checkov pins packaging below what pytest needs, so it lives in its own environment.
TOOLS  := .tools/checkov
CHECKOV := $(TOOLS)/bin/checkov
# Azurite (Microsoft's Storage emulator) for the delivery-record Table tests, pinned by the
# lock file in tests/azurite and installed with npm into the tools area.
AZURITE_DIR := .tools/azurite
AZURITE := $(AZURITE_DIR)/.installed

.PHONY: demo test check bench emulators venv tools azurite clean

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

azurite: $(AZURITE)

$(AZURITE): tests/azurite/package.json tests/azurite/package-lock.json
	@command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || { echo "make test needs Node.js 20+ and npm (for Azurite); install them first, e.g. apt-get install nodejs npm" >&2; exit 1; }
	@node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' || { echo "make test needs Node.js 20+ for Azurite; found $$(node --version)" >&2; exit 1; }
	@mkdir -p $(AZURITE_DIR)
	cp tests/azurite/package.json tests/azurite/package-lock.json $(AZURITE_DIR)/
	cd $(AZURITE_DIR) && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	@touch $@

demo: venv
	$(BIN)/postbus demo $(DEMO_ARGS)

check: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: check tools azurite
	$(BIN)/pytest $(PYTEST_ARGS)

bench: venv
	@for b in bench/*.py; do echo "== $$b" >&2; $(BIN)/python $$b || exit 1; done

emulators: venv
	@trap 'kill 0' INT TERM; \
	$(BIN)/postbus emulator servicebus & \
	$(BIN)/postbus emulator email & \
	wait

clean:
	rm -rf $(VENV) .tools .mypy_cache .ruff_cache .pytest_cache .hypothesis
