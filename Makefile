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

# uv resolves the image's lock file for the image's platform, whatever the host is.
LOCK_VENV ?= .tools/lock
UV := $(LOCK_VENV)/bin/uv

.PHONY: demo test check bench emulators venv tools azurite lock bicep-lint clean screenshots

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

# requirements.lock: what the worker image installs, every file checked by hash. Regenerate it after changing the
# dependencies in pyproject.toml; it resolves against PyPI for CPython 3.11 on manylinux x86_64 (the image's
# platform). Pins already in the file are kept; `make lock LOCK_ARGS=--upgrade` moves everything to the newest.
lock: $(UV)
	$(UV) pip compile pyproject.toml --extra fast --quiet --generate-hashes --python-version 3.11 \
		--python-platform x86_64-manylinux_2_28 --custom-compile-command "make lock" \
		--output-file requirements.lock $(LOCK_ARGS)

$(UV):
	@test -x $(LOCK_VENV)/bin/python || $(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install --quiet --disable-pip-version-check "uv>=0.13"

# The Bicep compiler's own checks: every module resolves, and bicepconfig.json's lint rules hold. Needs the Azure CLI
# (it fetches the Bicep CLI) and network, so CI runs it; `make test` is the offline gate.
bicep-lint:
	@command -v az >/dev/null || { echo "make bicep-lint needs the Azure CLI (az); make test runs the offline checks" >&2; exit 2; }
	az bicep install
	az bicep build --file infra/main.bicep --stdout > /dev/null
	@for f in infra/main.bicep infra/modules/*.bicep; do echo "lint $$f"; az bicep lint --file "$$f" || exit 1; done

demo: venv
	$(BIN)/postbus demo $(DEMO_ARGS)

check: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The suite spends most of its time waiting on the Azure SDKs' paced handshakes, not on the CPU:
# four test processes (one Azurite, one infra parse; see tests/conftest.py) cut it to under half
# on 2 cores. PYTEST_ARGS="-n 0" runs it in one process; every test passes either way.
PYTEST_ARGS ?= -n 4 --dist loadgroup

test: check tools azurite
	$(BIN)/pytest $(PYTEST_ARGS)

# The console screenshots in docs/images/ (the README shows them); needs Debian's chromium.
screenshots: venv
	$(BIN)/python scripts/screenshots.py

bench: venv
	@for b in bench/*.py; do echo "== $$b" >&2; $(BIN)/python $$b || exit 1; done

# Both emulators in one process; their POSTBUS_* settings go into $(ENV_FILE) (other lines kept).
# More options: EMULATOR_ARGS="--quota azure-default" (see postbus emulator up --help).
ENV_FILE ?= .env
emulators: venv
	@$(BIN)/postbus emulator up --env-file $(ENV_FILE) $(EMULATOR_ARGS)

clean:
	rm -rf $(VENV) .tools .mypy_cache .ruff_cache .pytest_cache .hypothesis
