#!/usr/bin/env bash
# The browser tests, in headless Chromium on its WebGPU adapter:
#  1. web/tests/browser.rs (wasm-bindgen-test): the PyTorch fixtures'
#     forward passes and gradients, and the optimizer fixtures;
#  2. web/e2e/run.mjs (Playwright): the demo page's three demos end to end,
#     with a screenshot in target/web/demo.png.
#
# Needs a wasm32 toolchain (see web/toolchain.sh), Chromium and ChromeDriver
# (/usr/bin/chromium, /usr/bin/chromedriver: Debian's chromium and
# chromium-driver), Node.js with npm, and wasm-bindgen-cli at the version of
# wasm-bindgen in Cargo.lock (installed here when missing). Where these are
# missing the tests are skipped with a message, unless CI or
# WGPU_LSTM_REQUIRE_GPU is set: then they fail.
set -euo pipefail
cd "$(dirname "$0")/.."
source web/toolchain.sh

required() {
  for v in "${CI:-}" "${WGPU_LSTM_REQUIRE_GPU:-}"; do
    case "$v" in ""|0|false) ;; *) return 0 ;; esac
  done
  return 1
}
missing() {
  if required; then
    echo "browser tests: $1 (required: CI or WGPU_LSTM_REQUIRE_GPU is set)" >&2
    exit 1
  fi
  echo "browser tests skipped: $1" >&2
  exit 0
}

[ "$(wasm_toolchain)" != none ] || missing "no Rust toolchain for wasm32-unknown-unknown (rustup target add wasm32-unknown-unknown)"
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
export CHROMEDRIVER="${CHROMEDRIVER:-/usr/bin/chromedriver}"
[ -x "$CHROMIUM" ] || missing "no Chromium at $CHROMIUM (apt-get install chromium)"
[ -x "$CHROMEDRIVER" ] || missing "no ChromeDriver at $CHROMEDRIVER (apt-get install chromium-driver)"
command -v npm >/dev/null || missing "no Node.js/npm"

# wasm-bindgen's command-line tool must match the library's version exactly.
want="$(sed -n '/^name = "wasm-bindgen"$/{n;s/^version = "\(.*\)"/\1/p;}' Cargo.lock)"
if [ -z "$want" ]; then
  echo "browser tests: no wasm-bindgen in Cargo.lock" >&2
  exit 1
fi
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
have() { wasm-bindgen --version 2>/dev/null | cut -d' ' -f2; }
if [ "$(have)" != "$want" ]; then
  echo "installing wasm-bindgen-cli $want"
  # Not --locked: one of its locked dependencies is not on every registry mirror.
  cargo install wasm-bindgen-cli --version "$want"
  if [ "$(have)" != "$want" ]; then
    echo "browser tests: wasm-bindgen $want was installed but \`wasm-bindgen --version\` says \"$(have)\"" >&2
    exit 1
  fi
fi

start=$SECONDS
web/build.sh
echo "browser package built in $((SECONDS - start)) s"

# wasm-bindgen-test-runner reads web/webdriver.json from the package's folder:
# headless Chromium with WebGPU enabled (no adapter without
# --enable-unsafe-webgpu), as root without its sandbox.
start=$SECONDS
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner
export WASM_BINDGEN_TEST_TIMEOUT="${WASM_BINDGEN_TEST_TIMEOUT:-1200}"
# --nocapture: the tests log the largest errors they measured.
(cd web && wasm_cargo test -p wgpu-lstm-web --profile wasm-release -- --nocapture)
echo "wasm-bindgen tests ran in $((SECONDS - start)) s"

start=$SECONDS
if [ ! -d web/e2e/node_modules/playwright-core ]; then
  (cd web/e2e && npm ci --no-audit --no-fund)
fi
CHROMIUM="$CHROMIUM" node web/e2e/run.mjs
echo "demo page tests ran in $((SECONDS - start)) s"
