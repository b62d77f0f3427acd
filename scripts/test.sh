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
# The Python tests run a copy: job-templates/tests build the Containerfile's steps in
# that same target directory, whose first step removes the binary, while the other
# pytest worker runs the role's tests with it.
mkdir -p target/python-tests
cp "$static_dir/x86_64-unknown-linux-gnu/release/turnbench" target/python-tests/turnbench
export TURNBENCH_BIN="$PWD/target/python-tests/turnbench"

step "ansible-core and kubernetes.core for the role's version matrix"
# The role's whole suite runs under the test venv's ansible-core (the newest for this
# Python) and kubernetes.core 6 (the `ansible` package's); its layout and contract tests
# run again under the oldest ansible-core AgnosticD's execution environments run, and
# under kubernetes.core 5. Each combination's venv and collection are cached in target/
# (a stamp holds what was installed), so a re-run installs nothing.
matrix_dir=target/ansible-matrix
# kubernetes.core 5.4.1 comes from the `ansible` release that carries it, and with it
# ansible.posix (the tests' JSON stdout callback), as execution environments have both.
kc5=ansible==11.13.0
kc5_dir="$matrix_dir/kubernetes.core-5"
if [ "$(cat "$kc5_dir/stamp" 2>/dev/null)" != "$kc5 kubernetes.core ansible.posix" ]; then
  rm -rf "$kc5_dir" && mkdir -p "$kc5_dir/download"
  "$venv/bin/python" -m pip download -q --disable-pip-version-check --no-deps -d "$kc5_dir/download" "$kc5"
  "$venv/bin/python" - "$kc5_dir" <<'PY'
import glob, sys, zipfile
out = sys.argv[1]
wheel = zipfile.ZipFile(glob.glob(out + "/download/ansible-*.whl")[0])
wanted = ("ansible_collections/kubernetes/core/", "ansible_collections/ansible/posix/")
wheel.extractall(out, [n for n in wheel.namelist() if n.startswith(wanted)])
PY
  rm -rf "$kc5_dir/download" && echo "$kc5 kubernetes.core ansible.posix" > "$kc5_dir/stamp"
fi
core215=(ansible-core==2.15.13 kubernetes==33.1.0 PyYAML==6.0.2)
core215_venv="$matrix_dir/ansible-core-2.15"
if [ "$(cat "$core215_venv/stamp" 2>/dev/null)" != "${core215[*]}" ]; then
  rm -rf "$core215_venv" && python3 -m venv "$core215_venv"
  "$core215_venv/bin/python" -m pip install -q --disable-pip-version-check "${core215[@]}"
  echo "${core215[*]}" > "$core215_venv/stamp"
fi

step "pytest (container, manifests, role)"
set +e
"$venv/bin/python" -m pytest -q -p no:cacheprovider -n 2 --durations=10 tests/python */tests
rc=$?
set -e
# pytest's 5 means "no tests collected": that must fail loudly, not pass.

# The subset: the collection installed and run in each layout, and the log contract's
# channels and failure path (the rest of the suite exercises the same tasks).
contract=ansible-role/tests/test_role_contract.py
matrix_tests=(ansible-role/tests/test_role_layouts.py
              "$contract::test_a_finished_run_reaches_agnosticd_user_info_unchanged"
              "$contract::test_agnosticd_s_channel_is_what_babylon_reads"
              "$contract::test_outside_agnosticd_the_report_is_user_info_and_user_data_lines"
              "$contract::test_a_log_without_the_block_is_reported_with_the_reason_and_the_last_lines"
              "$contract::test_text_from_the_endpoint_is_never_evaluated_as_a_template")
for combination in "ansible-core 2.15.13 + kubernetes.core 5.4.1:$core215_venv/bin" \
                   "ansible-core $("$venv/bin/python" -c 'import ansible.release as r; print(r.__version__)') + kubernetes.core 5.4.1:$venv/bin"; do
  step "role layout and contract tests under ${combination%%:*}"
  set +e
  ANSIBLE_TEST_BIN="$PWD/${combination#*:}" ANSIBLE_TEST_COLLECTIONS="$PWD/$kc5_dir" \
    "$venv/bin/python" -m pytest -q -p no:cacheprovider -n 2 "${matrix_tests[@]}"
  matrix_rc=$?
  set -e
  [ "$rc" -ne 0 ] || rc=$matrix_rc
done
step "done (exit $rc)"
exit $rc
