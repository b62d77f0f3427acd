#!/usr/bin/env bash
# Every test of turnbench: Rust (format, lints, unit and integration tests) and the
# Python-driven checks of the container, manifests and Ansible role. Installs what the
# Python side needs into a virtualenv under target/, so a fresh machine with the Rust
# toolchain and Python 3 is enough.
set -euo pipefail
cd "$(dirname "$0")/.."

started=$SECONDS
step() { printf '\n==> [%4ds] %s\n' "$((SECONDS - started))" "$*"; }

step "Python test environment"
venv=target/test-venv
if [ ! -x "$venv/bin/python" ]; then
  mkdir -p target
  python3 -m venv "$venv" 2>/dev/null || {
    # Debian's python3 without the venv module: install it, then retry.
    if command -v apt-get >/dev/null 2>&1; then
      apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
    fi
    python3 -m venv "$venv"
  }
fi
reqs=(scripts/requirements-test.txt)
for f in */tests/requirements.txt; do [ -f "$f" ] && reqs+=("$f"); done
"$venv/bin/python" -m pip install -q --disable-pip-version-check $(printf -- '-r %s ' "${reqs[@]}")

step "Chromium for the browser test of the HTML report"
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
  else
    echo "chromium and chromium-driver are needed: install them (Debian: apt-get install chromium chromium-driver)" >&2
    exit 1
  fi
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --all-targets --quiet -- -D warnings

step "cargo test"
cargo test --quiet

step "release binary for the Python-driven tests: static, built as the Containerfile builds it"
# Same RUSTFLAGS, target triple and target dir as job-templates/tests' build of the
# Containerfile's steps, so the dependencies compile once for both (a few minutes on
# CI's two cores). The flags are read from the Containerfile, their one home.
rustflags=$(sed -n 's/^ENV RUSTFLAGS="\(.*\)" \\$/\1/p' Containerfile | sed 's/\\"/"/g')
[ -n "$rustflags" ] || { echo "RUSTFLAGS not found in the Containerfile" >&2; exit 1; }
static_dir="$PWD/target/container-build/target"
RUSTFLAGS="$rustflags" CARGO_TARGET_DIR="$static_dir" \
  cargo build --release --locked --quiet --target x86_64-unknown-linux-gnu
export TURNBENCH_BIN="$static_dir/x86_64-unknown-linux-gnu/release/turnbench"

step "pytest (container, manifests, role)"
set +e
"$venv/bin/python" -m pytest -q -p no:cacheprovider tests/python */tests
rc=$?
set -e
# pytest's 5 means "no tests collected": that must fail loudly, not pass.
step "done (exit $rc)"
exit $rc
