# Everything a fresh machine needs, in two commands: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch first and pinned: an unpinned torch would pull multi-GB CUDA wheels.
TORCH := torch==2.13.0

.PHONY: setup test demo perf bench train clean system

setup: system $(VENV)/.installed

# espeak-ng, flite and festival (with its English voices) speak the synthetic users;
# Chromium runs the browser client's test; HAProxy fronts replicas in deploy/.
# Installed here when we can (root with apt).
APT := espeak-ng chromium flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts haproxy
system:
	@{ for c in espeak-ng chromium flite festival haproxy; do command -v $$c || exit 1; done; \
	   test -d /usr/share/festival/voices/us/cmu_us_slt_arctic_hts; } >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && apt-get install -y -qq $(APT); \
	  else echo "microturn needs: sudo apt-get install $(APT)" >&2; exit 1; fi; }

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
