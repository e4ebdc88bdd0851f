#!/usr/bin/env bash
# Set up a virtual environment in .venv with tsav-deploy and its test tools.
#
# torch comes first and is pinned only when none is installed: on the project's CPU machines
# `torch==2.13.0` is the wheel already on disk (any other spelling pulls GBs of CUDA packages).
# Set TSAV_TORCH to install another build, e.g. TSAV_TORCH="torch --index-url <your CUDA index>".
set -euo pipefail
cd "$(dirname "$0")/.."
# Headless Chromium for the report tests (Debian's package; those tests skip without it): installed
# only where apt-get exists and we are root, and a failure only costs those tests.
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1 ||
    echo "setup: chromium could not be installed; the report tests will skip" >&2
fi
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
. .venv/bin/activate
python -c "import torch" 2>/dev/null || python -m pip install -q ${TSAV_TORCH:-torch==2.13.0}
log=$(mktemp)
if ! python -m pip install -q -e ".[dev]" >"$log" 2>&1; then cat "$log"; exit 1; fi
rm -f "$log"
# The clip tests' reference runs the authors' pipeline with OpenCV 4.12 (their generation: BT.601 in
# VideoCapture, the 4.x bicubic warp) in a process of its own; the project itself needs no 4.x.
[ -d .venv/opencv4/cv2 ] || python -m pip install -q --no-deps --target .venv/opencv4 "opencv-python-headless==4.12.0.88"
python -c "import tsav_deploy, torch; print(f'tsav-deploy {tsav_deploy.__version__} with torch {torch.__version__} in .venv')"
