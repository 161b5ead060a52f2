#!/usr/bin/env bash
# THE test command (README, .ci/run): installs what is missing (scripts/bootstrap.sh), checks formatting,
# builds the workspace, proves the coordinator-only build needs no libtorch, runs clippy (warnings are
# errors) and every test.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# Each phase's start is printed with the seconds since the start, so a slow CI run shows where it spent them.
start=$SECONDS
phase() { echo "== [$((SECONDS - start)) s] $*"; }

phase "install what is missing (scripts/bootstrap.sh)"
bash scripts/bootstrap.sh
# shellcheck source=scripts/env.sh
source scripts/env.sh
jobs="${MER_TEST_JOBS:-2}"

phase "no import cycles between modules, and every import runs down its crate's layers"
python3 scripts/module_cycles.py

phase "the fold contract's Python helper and the example methods (docs/own-model.md)"
.venv/bin/python -m unittest python/test_mer_fold.py

phase "cargo fmt --check"
if command -v rustup >/dev/null && ! rustup component list --installed | grep -q '^rustfmt'; then rustup component add rustfmt; fi
cargo fmt --all -- --check

phase "coordinator-only build (no libtorch, no OpenCV)"
cargo build --locked -p mer --no-default-features --bin mer -j "$jobs"
if ldd target/debug/mer | grep -E 'libtorch|libopencv'; then
  echo "coordinator-only build links libtorch or OpenCV" >&2
  exit 1
fi

phase "the worker with libtorch and without OpenCV (feature torch alone) compiles"
cargo build --locked -p mer-worker --no-default-features --features torch --lib -j "$jobs"

phase "full build and tests"
cargo build --locked --workspace --all-targets -j "$jobs"
phase "clippy (warnings are errors)"
if command -v rustup >/dev/null && ! rustup component list --installed | grep -q '^clippy'; then rustup component add clippy; fi
cargo clippy --locked --workspace --all-targets -j "$jobs" -- -D warnings
phase "clippy with the cuda feature (the NCCL collective and the CUDA tests compile; nothing here runs them)"
# Only the worker crate has code behind the feature: checking it alone leaves the crates above it alone (a
# workspace-wide pass with the feature re-checked every one of them, minutes of CI time).
cargo clippy --locked -p mer-worker --all-targets -j "$jobs" --features cuda -- -D warnings
# As root (CI), the Slurm scenarios must run, not skip (tests/slurm.rs).
if [ "$(id -u)" -eq 0 ]; then export MER_REQUIRE_SLURM="${MER_REQUIRE_SLURM:-1}"; fi
phase "every test"
cargo test --locked --workspace -j "$jobs" -- --test-threads "${MER_TEST_THREADS:-2}"
phase "done"
