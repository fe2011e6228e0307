# Hebbian Mirror: `make serve` to run the server, `make test` to run the whole test suite.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Tests read real weights and data from ../shared (see README).
SHARED ?= $(abspath ../shared)

# The product's weights cache, as the product itself finds it (HEBBIAN_MIRROR_WEIGHTS, else the default).
WEIGHTS_CACHE ?= $(or $(HEBBIAN_MIRROR_WEIGHTS),$(HOME)/.cache/hebbian-mirror/weights)

.PHONY: weights install install-dev serve up ui browser stream-tools deploy-tools e2e-tools test test-fast test-models test-e2e \
	lint format models predict bench bench-serving clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Stamp files re-run the install when pyproject.toml changes. pip shows its progress: the first install
# downloads PyTorch (several GB with its CUDA libraries; see the README for a CPU-only install).
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	@echo "Installing Hebbian Mirror and its dependencies into $(VENV) (the first time takes minutes)..."
	$(BIN)/python -m pip install -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	@echo "Installing Hebbian Mirror with its test tools into $(VENV) (the first time takes minutes)..."
	$(BIN)/python -m pip install -e '.[dev]'
	touch $@ $(VENV)/.installed

# With the team's ../shared beside the checkout, link its weights into the weights cache (links, no copies;
# files already there are kept), so every entry point (make, .venv/bin/hebbian-mirror, the UI) finds them
# offline. Elsewhere the product downloads what it needs from the official URLs on first use.
weights:
	@if [ -d "$(SHARED)/weights" ]; then \
	  mkdir -p "$(WEIGHTS_CACHE)" && for f in "$(SHARED)"/weights/*; do \
	    [ -e "$(WEIGHTS_CACHE)/$${f##*/}" ] || ln -s "$$f" "$(WEIGHTS_CACHE)/"; done; \
	  echo "weights cache $(WEIGHTS_CACHE): linked to $(SHARED)/weights"; fi

install: $(VENV)/.installed weights

install-dev: $(VENV)/.installed-dev weights

# Serve the default model on 127.0.0.1:8000 (fetching its weights first if missing). Extra flags: ARGS="--port 9000",
# ARGS="--host 0.0.0.0 --api-key KEY" to serve the network.
serve: install
	$(BIN)/hebbian-mirror serve $(ARGS)

# The whole local stack: API on :8000, UI on :8501, MLflow on :5000; Ctrl-C stops all three.
# Extra flags: ARGS="--model yolov4-tiny --port 9000".
up: install
	$(BIN)/hebbian-mirror stack $(ARGS)

# The web UI in front of a running server (make serve in another terminal). Extra flags: ARGS="--api URL".
ui: install
	$(BIN)/hebbian-mirror ui $(ARGS)

# The browser test drives Debian's Chromium (Playwright's own browser download cannot work offline).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo -n)
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "Installing Chromium for the browser test (apt-get install chromium chromium-driver)..."; \
	  ( $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq \
	      chromium chromium-driver ) >/dev/null 2>&1 || { \
	    echo "error: the UI browser test needs Chromium and could not install it. Install the Debian packages" \
	         "'chromium' and 'chromium-driver' (as root: apt-get install chromium chromium-driver), then run" \
	         "make test again." >&2; exit 1; }; }

# The stream tests drive real peers from Debian: ffmpeg (publishing, MJPEG server), an RTSP server and mosquitto.
STREAM_TOOLS := ffmpeg:ffmpeg mosquitto:mosquitto rtsp-server-perl:rtsp-server-perl
stream-tools:
	@missing=""; for pair in $(STREAM_TOOLS); do cmd=$${pair%%:*}; pkg=$${pair##*:}; \
	  command -v $$cmd >/dev/null 2>&1 || [ -x /usr/sbin/$$cmd ] || missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ]; then \
	  echo "Installing$$missing for the stream tests (apt-get install$$missing)..."; \
	  ( $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing ) \
	    >/dev/null 2>&1 || { echo "error: the stream tests need the Debian packages$$missing and could not" \
	    "install them. Install them (as root: apt-get install$$missing), then run make test again." >&2; exit 1; }; fi

# The deploy test validates the compose files with Debian's docker-compose (no Docker engine is needed or started).
deploy-tools:
	@command -v docker-compose >/dev/null 2>&1 || { \
	  echo "Installing docker-compose for the deploy test (apt-get install --no-install-recommends docker-compose)..."; \
	  ( $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq \
	      --no-install-recommends docker-compose ) >/dev/null 2>&1 || { \
	    echo "error: the deploy test needs Debian's docker-compose and could not install it (as root: apt-get" \
	         "install docker-compose), then run make test again." >&2; exit 1; }; }

# What only the e2e tier needs from Debian: the browser, the stream peers, docker-compose.
e2e-tools: browser stream-tools deploy-tools

# The whole suite, every tier (what CI runs): tests/unit, tests/models (real weights and data from ../shared,
# in-process), tests/e2e (processes, browser, Ray, DDP, MQTT, RTSP, the README's and docs' command blocks).
test: install-dev e2e-tools
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest

# The unit tier alone (under a minute, no ../shared needed): the loop while you work.
test-fast: install-dev
	$(BIN)/python -m pytest tests/unit -q

test-models: install-dev
	$(BIN)/python -m pytest tests/models

test-e2e: install-dev e2e-tools
	$(BIN)/python -m pytest tests/e2e

lint: install-dev
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: install-dev
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

models: install
	$(BIN)/hebbian-mirror models

# Fetch the default model if missing, then detect objects in Darknet's dog photo.
predict: install
	$(BIN)/hebbian-mirror predict $(SHARED)/data/photos/darknet-samples/dog.jpg --out runs/predict

bench: install-dev
	$(BIN)/python benchmarks/darknet_vs_opencv.py

bench-serving: install-dev
	$(BIN)/pip install -e '.[dev,bench]'
	$(BIN)/python benchmarks/serving.py --profile

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
