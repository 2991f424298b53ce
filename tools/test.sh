#!/usr/bin/env bash
# The test command: the native tests (reference, CPU engine and GPU against
# PyTorch's fixtures, finite differences, files, command-line tools), then
# the browser tests (web/test.sh: WebGPU in headless Chromium, and the demo
# page end to end).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --release
web/test.sh
