# Sourced (not run) by the scripts that run experiments with `mer` (demo.sh, realistic_evidence.sh,
# ablation_keyframe_fill.sh): moves to the repository root, installs what is missing, sets up the
# environment, builds `mer` and names the binary in $mer.
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/bootstrap.sh
# shellcheck source=scripts/env.sh
source scripts/env.sh
cargo build --locked --bin mer
# shellcheck disable=SC2034 # used by the sourcing script
mer=target/debug/mer
