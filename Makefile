# The two commands: `make run` (the whole system on the embedded stack) and `make test`;
# `make lint` (ruff, then mypy; configured in pyproject.toml) runs before the tests in CI.
# Dependencies come from the hashed lock files in requirements/; `make lock` regenerates them
# after a change to pyproject.toml (README "Dependencies").
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
LOCKS := requirements/runtime.txt requirements/dev.txt
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml $(LOCKS) | cksum | cut -d' ' -f1)
# Hashes for every file of each pinned release; pip, setuptools pinned too; no machine's index in the file.
LOCK_FLAGS := --quiet --generate-hashes --strip-extras --allow-unsafe --no-emit-index-url --no-emit-find-links

.PHONY: run test lint bench soak install lock lock-upgrade clean

$(STAMP): pyproject.toml $(LOCKS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements/dev.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@$(BIN)/python -m pip check || { echo "requirements/ is behind pyproject.toml: run 'make lock'" >&2; exit 1; }
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

# The runtime lock (the image) and the dev lock (runtime + embedded + dev extras: make install).
install: $(STAMP)

# Keeps every pin that still fits pyproject.toml and adds what is new; runtime.txt is
# resolved within dev.txt, so both agree on every shared package.
lock:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet 'pip-tools>=7.4'
	$(BIN)/pip-compile $(LOCK_FLAGS) $(UPGRADE) --extra dev --extra embedded -o requirements/dev.txt pyproject.toml
	$(BIN)/pip-compile $(LOCK_FLAGS) $(UPGRADE) -c requirements/dev.txt -o requirements/runtime.txt pyproject.toml

# Every package to its newest release that pyproject.toml allows.
lock-upgrade:
	$(MAKE) lock UPGRADE=--upgrade

run: $(STAMP)
	$(BIN)/rekisteri up

test: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider

# Zero findings from both (issue 17); the rule sets and their reasons are in pyproject.toml.
lint: $(STAMP)
	$(BIN)/python -m ruff check --no-cache .
	$(BIN)/python -m mypy

bench: $(STAMP)
	$(BIN)/python -m bench

# The chaos soak: mixed traffic under `rekisteri up` while components are SIGKILLed
# (bench/soak.py); `make soak MINUTES=30`.
MINUTES ?= 10
soak: $(STAMP)
	$(BIN)/python -m bench.soak --minutes $(MINUTES)

clean:
	rm -rf $(VENV) .rekisteri
