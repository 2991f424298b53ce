# Sourced by web/build.sh and web/test.sh: defines `wasm_cargo`, cargo for
# wasm32-unknown-unknown with whichever toolchain this machine has:
# - rustup's, when its wasm32-unknown-unknown target is installed;
# - else Debian's rustc-web (packages rustc-web cargo-web rust-web-src
#   rust-web-llvm lld-22), building the standard library from its source
#   (-Zbuild-std) and linking with LLVM's wasm-ld.
# WASM_TOOLCHAIN=rustup|debian picks one.

wasm_toolchain() {
  if [ -n "${WASM_TOOLCHAIN:-}" ]; then echo "$WASM_TOOLCHAIN"; return; fi
  local targets=""
  if command -v rustup >/dev/null 2>&1; then
    targets="$(rustup target list --installed 2>/dev/null || true)"
  fi
  if printf '%s\n' "$targets" | grep -qx wasm32-unknown-unknown; then
    echo rustup
  elif [ -x /usr/bin/rustc ] && [ -d "$(/usr/bin/rustc --print sysroot)/lib/rustlib/src/rust/library" ]; then
    echo debian
  else
    echo none
  fi
}

wasm_cargo() {
  # The target flags go right after the subcommand, before any `--` that
  # passes arguments to the test runner.
  local cmd="$1"
  shift
  case "$(wasm_toolchain)" in
    rustup)
      cargo "$cmd" --target wasm32-unknown-unknown "$@" ;;
    debian)
      local wasm_ld
      wasm_ld="$(command -v wasm-ld-22 || command -v wasm-ld || echo /usr/lib/llvm-22/bin/wasm-ld)"
      RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc RUSTC_BOOTSTRAP=1 \
        CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER="$wasm_ld" \
        /usr/bin/cargo "$cmd" --target wasm32-unknown-unknown -Zbuild-std=std,panic_abort "$@" ;;
    *)
      echo "no Rust toolchain for wasm32-unknown-unknown: run" >&2
      echo "  rustup target add wasm32-unknown-unknown" >&2
      echo "or install Debian's rustc-web cargo-web rust-web-src rust-web-llvm lld-22" >&2
      return 1 ;;
  esac
}
