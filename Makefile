# Two commands for a fresh clone: `make demo` and `make test`. Each sets up what it needs first;
# stamps under .venv/ make a second run skip everything already done.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMPS := $(VENV)/.stamps
SOL_SOURCES := $(shell find contracts/src -name '*.sol')

.PHONY: setup demo test lint contracts clean

demo: setup
	$(VENV)/bin/swarm demo

test: setup lint
	$(PY) -m pytest

lint: setup $(VENV)/typecheck/swarmchain
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# mypy reads the packages through links named as they are imported (see pyproject.toml).
$(VENV)/typecheck/swarmchain:
	mkdir -p $@
	for package in node storage incentives; do ln -sfn ../../../$$package $@/$$package; done

setup: $(STAMPS)/python $(STAMPS)/anvil $(STAMPS)/solc $(STAMPS)/contracts $(STAMPS)/ipfs-peer

$(STAMPS)/python: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	mkdir -p $(STAMPS) && touch $@

$(STAMPS)/anvil: anvil/package.json anvil/package-lock.json
	@command -v npm >/dev/null || { echo "npm is missing: install Node.js and npm (apt-get install nodejs npm)"; exit 1; }
	npm ci --prefix anvil --no-audit --no-fund --loglevel=error
	mkdir -p $(STAMPS) && touch $@

$(STAMPS)/solc: contracts/package.json contracts/package-lock.json
	@command -v npm >/dev/null || { echo "npm is missing: install Node.js and npm (apt-get install nodejs npm)"; exit 1; }
	npm ci --prefix contracts --no-audit --no-fund --loglevel=error
	mkdir -p $(STAMPS) && touch $@

# js-ipfs, the real IPFS peer the storage tests and benchmark start (see node/devtools/ipfs_peer.py).
$(STAMPS)/ipfs-peer: tests/ipfs-peer/package.json tests/ipfs-peer/package-lock.json
	@command -v npm >/dev/null || { echo "npm is missing: install Node.js and npm (apt-get install nodejs npm)"; exit 1; }
	npm ci --prefix tests/ipfs-peer --no-audit --no-fund --loglevel=error
	mkdir -p $(STAMPS) && touch $@

$(STAMPS)/contracts: $(SOL_SOURCES) $(STAMPS)/python $(STAMPS)/solc
	$(PY) -m swarmchain.node.chain.solidity
	touch $@

contracts: $(STAMPS)/python $(STAMPS)/solc
	$(PY) -m swarmchain.node.chain.solidity

clean:
	rm -rf $(VENV) anvil/node_modules contracts/node_modules tests/ipfs-peer/node_modules .pytest_cache .mypy_cache .ruff_cache
