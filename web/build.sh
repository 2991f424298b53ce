#!/usr/bin/env bash
# Builds the browser package: wasm32-unknown-unknown, then wasm-bindgen
# (`--target web`, no bundler) into web/pkg/.
#
# With rustup:   rustup target add wasm32-unknown-unknown
#                cargo install wasm-bindgen-cli --version <wasm-bindgen in Cargo.lock>
# Without a rustup target (Debian's rustc-web, rust-web-src and lld), the
# standard library is built from source: see web/toolchain.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
source web/toolchain.sh
wasm_cargo build -p wgpu-lstm-web --profile wasm-release "$@"
wasm-bindgen --target web --out-dir web/pkg --no-typescript \
  "${CARGO_TARGET_DIR:-target}/wasm32-unknown-unknown/wasm-release/wgpu_lstm_web.wasm"
ls -l web/pkg
