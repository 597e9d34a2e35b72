# The two commands of the README: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Debian packages the tests use: promtool (prometheus), systemd-analyze (systemd), umockdev and
# its GObject introspection data, what PyGObject needs to build, and zbarimg (zbar-tools) to
# read the poster's QR codes from Chromium's pictures; nginx with its RTMP module is the
# platform the restream tests publish to.
TEST_DEBS := prometheus systemd umockdev gir1.2-umockdev-1.0 libgirepository1.0-dev \
	libcairo2-dev pkg-config chromium iproute2 util-linux faketime zbar-tools \
	libnginx-mod-rtmp nginx

.PHONY: run test debs lint typecheck pytest bench-restream bench-idle bench-upload bench-encode bench-live \
	bench-first-frame bench-hls-crowd bench-edge-crowd bench-audio bench-uplinks bench-clips clean

$(BIN)/edged: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.test-installed: $(BIN)/edged | debs
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

debs:
	scripts/install-debs $(TEST_DEBS)

run: $(BIN)/edged
	$(BIN)/edged run

test: debs $(VENV)/.test-installed
	$(MAKE) lint typecheck pytest

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck:
	$(BIN)/mypy

pytest:
	$(BIN)/python -m pytest

bench-idle: $(BIN)/edged
	$(BIN)/python bench/idle.py

bench-upload: $(VENV)/.test-installed
	$(BIN)/python bench/upload.py

bench-encode: $(VENV)/.test-installed
	scripts/install-debs ffmpeg
	$(BIN)/python bench/encode.py

bench-live: $(VENV)/.test-installed
	$(BIN)/python bench/live_first_frame.py

bench-first-frame: $(VENV)/.test-installed
	scripts/install-debs nginx
	$(BIN)/python bench/first_frame.py

bench-hls-crowd: $(VENV)/.test-installed
	$(BIN)/python bench/hls_crowd.py

# 1,000 HLS players through nginx (configs/nginx/edged-edge.conf) in front of one edged.
bench-edge-crowd: $(VENV)/.test-installed
	scripts/install-debs nginx
	$(BIN)/python bench/edge_crowd.py

bench-audio: $(VENV)/.test-installed
	scripts/install-debs ffmpeg
	$(BIN)/python bench/audio.py

# Two veth uplinks in network namespaces (tc tbf, 4 and 8 Mbit/s): needs root.
bench-uplinks: $(VENV)/.test-installed
	$(BIN)/python bench/uplinks.py

# CPU per restream destination against none in the same run, and seconds from the RTMP
# server's return to frames flowing again (nginx with its RTMP module on loopback).
bench-restream: $(VENV)/.test-installed
	$(BIN)/python bench/restream.py

# A 30 s 1080p30 cut to vertical fill beside the ffmpeg CLI, an original by copy, and the frames
# a live 720p30 stream drops while a daemon's job runs.
bench-clips: $(VENV)/.test-installed
	scripts/install-debs ffmpeg
	$(BIN)/python bench/clips.py

clean:
	rm -rf $(VENV) build dist .mypy_cache .pytest_cache .ruff_cache
