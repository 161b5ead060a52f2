#!/usr/bin/env bash
# THE test command (README, .ci/run): installs what is missing (scripts/bootstrap.sh), checks formatting,
# builds the workspace, proves the coordinator-only build needs no libtorch, runs clippy (warnings are
# errors) and every test.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/bootstrap.sh
# shellcheck source=scripts/env.sh
source scripts/env.sh
jobs="${MER_TEST_JOBS:-2}"

echo "== no import cycles between modules"
python3 scripts/module_cycles.py

echo "== the fold contract's Python helper and the example methods (docs/own-model.md)"
.venv/bin/python -m unittest python/test_mer_fold.py

echo "== cargo fmt --check"
if command -v rustup >/dev/null && ! rustup component list --installed | grep -q '^rustfmt'; then rustup component add rustfmt; fi
cargo fmt --all -- --check

echo "== coordinator-only build (no libtorch, no OpenCV)"
cargo build --locked -p mer --no-default-features --bin mer -j "$jobs"
if ldd target/debug/mer | grep -E 'libtorch|libopencv'; then
  echo "coordinator-only build links libtorch or OpenCV" >&2
  exit 1
fi

echo "== full build and tests"
cargo build --locked --workspace --all-targets -j "$jobs"
echo "== clippy (warnings are errors)"
if command -v rustup >/dev/null && ! rustup component list --installed | grep -q '^clippy'; then rustup component add clippy; fi
cargo clippy --locked --workspace --all-targets -j "$jobs" -- -D warnings
echo "== clippy with the cuda feature (the NCCL collective and the CUDA tests compile; nothing here runs them)"
# Only the worker crate has code behind the feature: checking it alone leaves the crates above it alone (a
# workspace-wide pass with the feature re-checked every one of them, minutes of CI time).
cargo clippy --locked -p mer-worker --all-targets -j "$jobs" --features cuda -- -D warnings
# As root (CI), the Slurm scenarios must run, not skip (tests/slurm.rs).
if [ "$(id -u)" -eq 0 ]; then export MER_REQUIRE_SLURM="${MER_REQUIRE_SLURM:-1}"; fi
cargo test --locked --workspace -j "$jobs" -- --test-threads "${MER_TEST_THREADS:-2}"
