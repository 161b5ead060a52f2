# Source this file (`source scripts/env.sh`) to build with cargo by hand and to type `mer` as the README
# does: it points torch-sys at the project's virtual environment (created by scripts/bootstrap.sh) and puts
# target/debug (where demo.sh and test.sh build `mer`) and .venv/bin first on PATH.
_mer_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export VIRTUAL_ENV="$_mer_root/.venv"
export PATH="$_mer_root/target/debug:$_mer_root/.venv/bin:$PATH"
export LIBTORCH_USE_PYTORCH=1
export CARGO_TERM_PROGRESS_WHEN=never
unset _mer_root
