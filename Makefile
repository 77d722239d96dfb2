# streamrec: the same commands for a person, pre-commit and CI. `make help` lists them.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export OPENBLAS_NUM_THREADS := 1
SUDO   := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

.DEFAULT_GOAL := help
.PHONY: help install demo up test test-unit test-tools lint docs bench bench-tools clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first: the local CPU build, before anything can pull a CUDA one.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## create .venv with streamrec and its dev tools (quick when done)

demo: install ## replay MovieLens through Kafka, Faust and Redis; print recommendations
	$(BIN)/streamrec demo

up: install ## run streamrec until Ctrl-C (embedded Kafka and Valkey unless URLs are set)
	$(BIN)/streamrec up

lint: install ## ruff and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

docs: install ## regenerate docs/configuration.md from the settings' descriptions
	$(BIN)/python -m streamrec.config_doc

test: lint test-tools ## lint, then every test (integration ones start embedded Tansu and Valkey)
	$(BIN)/pytest

test-unit: install ## only the tests that need no broker or Valkey
	$(BIN)/pytest -m "not integration"

# What the tests need from the OS: Chromium, for the dashboard's browser test (Playwright drives
# Debian's build: Playwright's own download needs a host this machine cannot reach). Without it
# that one test is skipped, and says why.
test-tools: ## install Chromium with apt if it is missing
	@command -v chromium >/dev/null || $(SUDO) apt-get install -y -q chromium >/dev/null 2>&1 || \
	  { $(SUDO) apt-get update -q >/dev/null 2>&1 && $(SUDO) apt-get install -y -q chromium >/dev/null 2>&1; } || \
	  echo "could not install chromium: the dashboard's browser test will be skipped"

# What the benchmarks need from the OS: wrk (the serve benchmark's load generator) and
# Fashion-MNIST (the image model's data, Debian's dataset-fashion-mnist, MIT licence).
FASHION_MNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
bench-tools: ## install wrk and Fashion-MNIST with apt if they are missing
	@if ! command -v wrk >/dev/null || [ ! -f $(FASHION_MNIST) ]; then \
	  $(SUDO) apt-get install -y -q wrk dataset-fashion-mnist >/dev/null || \
	  { $(SUDO) apt-get update -q >/dev/null && $(SUDO) apt-get install -y -q wrk dataset-fashion-mnist >/dev/null; }; \
	fi

bench: install bench-tools ## benchmarks: JSON in bench-results/ and a table on stdout
	$(BIN)/streamrec bench all --out bench-results

clean: ## remove the environment and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache bench-results
