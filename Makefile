# Everything a fresh machine needs, in two commands: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch first and pinned: an unpinned torch would pull multi-GB CUDA wheels.
TORCH := torch==2.13.0

.PHONY: setup test demo perf bench train clean system

setup: system $(VENV)/.installed

# espeak-ng speaks the synthetic users; Chromium runs the browser client's test.
# Installed here when we can (root with apt).
system:
	@{ command -v espeak-ng && command -v chromium; } >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && apt-get install -y -qq espeak-ng chromium; \
	  else echo "microturn needs espeak-ng and chromium: sudo apt-get install espeak-ng chromium" >&2; exit 1; fi; }

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

test: setup
	$(BIN)/python -m pytest -q

# The main job: a scripted 90 s conversation through the shipped default model
# (demo_out/demo.wav, demo_timeline.png, demo_timeline.html).
demo: setup
	$(BIN)/microturn demo --out demo_out

perf: setup
	$(BIN)/microturn perf --json perf.json

bench: setup
	$(BIN)/microturn bench --json bench.json --plots bench_out/plots

# Reproduce the default model (resumes from runs/default if interrupted).
train: setup
	$(BIN)/microturn train --config configs/default.toml

clean:
	rm -rf $(VENV) demo_out perf.json bench.json bench_out runs .cache
