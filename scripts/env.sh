# Source this file (`source scripts/env.sh`) to build with cargo by hand and to type `mer` as the README
# does: it points torch-sys at the project's virtual environment (created by scripts/bootstrap.sh) and puts
# target/debug (where demo.sh and test.sh build `mer`) and .venv/bin first on PATH.
_mer_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export VIRTUAL_ENV="$_mer_root/.venv"
export PATH="$_mer_root/target/debug:$_mer_root/.venv/bin:$PATH"
export LIBTORCH_USE_PYTORCH=1
export CARGO_TERM_PROGRESS_WHEN=never
# The `mer` binary and the worker's test binaries find libtorch through their rpath (build.rs). A
# workspace-wide `cargo test` also links libtorch into the coordinator's test binaries (cargo unifies the
# worker's features: the coordinator's tests use the worker agent, the CLI enables its engine), and those
# have no rpath to it: this is where they find it.
for _mer_torch_lib in "$_mer_root"/.venv/lib/python3*/site-packages/torch/lib; do
  if [ -d "$_mer_torch_lib" ]; then export LD_LIBRARY_PATH="$_mer_torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"; fi
done
unset _mer_root _mer_torch_lib
