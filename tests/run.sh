#!/usr/bin/env bash
# Set up from scratch and run every test: venv, pinned requirements, the project itself
# (editable, so `convitx` and the embedded weights resolve as for a user), Debian's Chromium
# for the browser test, then pytest. Used by `.ci/run`.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt -r requirements-dev.txt
# The pins above are the dependencies; --no-build-isolation builds with the pinned setuptools
# instead of fetching one.
.venv/bin/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
# The SD watermark's reference embedder, for tests only; --no-deps keeps opencv-python (non-headless) out.
.venv/bin/pip install --quiet --disable-pip-version-check --no-deps invisible-watermark==0.2.0
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq chromium >/dev/null
  else
    sudo apt-get update -qq && sudo apt-get install -y -qq chromium >/dev/null
  fi
fi
# PASSIVE: torch threads sleep instead of spinning while other test processes (servers, torchrun) share the cores.
export HF_HUB_DISABLE_TELEMETRY=1 GRADIO_ANALYTICS_ENABLED=False OMP_WAIT_POLICY=PASSIVE
exec .venv/bin/python -m pytest "$@"
