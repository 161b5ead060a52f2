#!/usr/bin/env bash
# The one prepared GPU check (docs/engine.md "GPU check"): on a machine with an NVIDIA GPU and the pinned
# torch (2.11.0), everything of `mer` that needs CUDA, at once, with one summary at the end. Under 8
# minutes on one GPU; each step has its own time limit, and a failed step does not stop the others.
#
#   scripts/gpu_check.sh                      # builds the CUDA-enabled mer and test binary (needs cargo)
#   MER_BIN=path/to/mer MER_CUDA_TESTS=path/to/cuda-test-binary scripts/gpu_check.sh   # takes them
#   MER_GPU_CHECK_CPU=1 scripts/gpu_check.sh  # the same steps on the CPU: checks this script's plumbing
#                                             # on a machine without a GPU (what the test suite does)
#
# Builds for taking elsewhere: `cargo build --release --features cuda --bin mer` and
# `cargo test --release --features cuda -p mer-worker --test cuda --no-run` (the second prints the test
# binary's path). Both link libtorch dynamically; here they find it through the torch that python3 shows.
#
# Steps: (1) the CUDA tests (worker/tests/cuda.rs: device discovery, memory readings, fold determinism in
# both paths, the NCCL all-reduce over every local GPU, a two-GPU data-parallel fold when there are two);
# (2) `mer bench train --device cuda` on the paper-size model, fp32 and fast path: samples/s, peak GPU
# memory, TFLOPS and their share of the GPU's bf16 peak, and the cuDNN version libtorch loaded (warning
# below 9.15); (3) `mer bench allreduce` with NCCL over every local GPU; (4) a short local experiment on
# CUDA (`mer synth --preset tiny`, `mer prep`, `mer run examples/tiny.toml --device cuda`), data-parallel
# over every GPU when there are two or more.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
cpu="${MER_GPU_CHECK_CPU:-0}"
dev="cuda"
[ "$cpu" = 1 ] && dev="cpu"
work="$(mktemp -d "${TMPDIR:-/tmp}/mer-gpu-check.XXXXXX")"
t_start=$(date +%s)
declare -a summary=()
failed=0
note() { summary+=("$1"); echo "== $1"; }

# --- the torch to link against, and NCCL under the name cudarc loads -----------------------------------
py=python3
[ -x .venv/bin/python ] && py=.venv/bin/python
torch_dir="$("$py" -c 'import torch,os;print(os.path.dirname(torch.__file__))' 2>/dev/null || true)"
if [ -z "$torch_dir" ]; then
  echo "gpu_check: no torch importable by $py (install torch==2.11.0, or run scripts/bootstrap.sh)" >&2
  exit 2
fi
site="$(dirname "$torch_dir")"
export LIBTORCH_USE_PYTORCH=1
export LD_LIBRARY_PATH="$torch_dir/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
nccl_so="$(ls "$site"/nvidia/nccl/lib/libnccl.so.* 2>/dev/null | head -1 || true)"
if [ -n "$nccl_so" ]; then
  mkdir -p "$work/nccl"
  ln -sf "$nccl_so" "$work/nccl/libnccl.so"
  export LD_LIBRARY_PATH="$work/nccl:$LD_LIBRARY_PATH"
fi
torch_version="$("$py" -c 'import torch;print(torch.__version__, "cuda", torch.version.cuda)' 2>/dev/null)"
note "torch: $torch_version ($torch_dir); NCCL: ${nccl_so:-not found in the wheel}"

# --- the GPUs --------------------------------------------------------------------------------------------
gpus=0
gpu_name="none"
if [ "$cpu" != 1 ]; then
  if ! command -v nvidia-smi >/dev/null; then
    echo "gpu_check: nvidia-smi not found: no NVIDIA driver here (MER_GPU_CHECK_CPU=1 runs the CPU plumbing check)" >&2
    exit 2
  fi
  gpus="$(nvidia-smi -L | grep -c '^GPU ')"
  gpu_name="$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)"
fi
# Dense bf16 peak TFLOPS of common data-centre GPUs (vendor data sheets), for the share of peak.
peak=""
case "$gpu_name" in
  *H100*|*H200*|*H800*|*GH200*) peak=989 ;;
  *B200*) peak=2250 ;;
  *A100*|*A800*) peak=312 ;;
  *L40S*) peak=362 ;;
  *L4*) peak=121 ;;
  *A10*) peak=125 ;;
esac
note "GPUs: $gpus x $gpu_name (bf16 peak ${peak:-unknown} TFLOPS)"
replicas=$(( gpus > 1 ? gpus : 1 ))
[ "$cpu" = 1 ] && replicas=2

# --- the binaries ----------------------------------------------------------------------------------------
mer="${MER_BIN:-}"
tests="${MER_CUDA_TESTS:-}"
features="--features cuda"
[ "$cpu" = 1 ] && features=""
if [ -z "$mer" ] || { [ -z "$tests" ] && [ "$cpu" != 1 ]; }; then
  if ! command -v cargo >/dev/null; then
    echo "gpu_check: no cargo here: set MER_BIN and MER_CUDA_TESTS to binaries built with --features cuda" >&2
    exit 2
  fi
  echo "== building ($features)"
  # shellcheck disable=SC2086
  cargo build --release $features --bin mer || { echo "gpu_check: build failed" >&2; exit 2; }
  mer="${mer:-$root/target/release/mer}"
  if [ "$cpu" != 1 ] && [ -z "$tests" ]; then
    tests="$(cargo test --release --features cuda -p mer-worker --test cuda --no-run --message-format=json 2>/dev/null \
      | "$py" -c 'import json,sys
for l in sys.stdin:
    try: m=json.loads(l)
    except ValueError: continue
    if m.get("reason")=="compiler-artifact" and m.get("target",{}).get("name")=="cuda" and m.get("executable"): print(m["executable"])' | tail -1)"
  fi
fi

# Time limits per step: on a GPU they add up to 8 minutes (150 + 90 + 60 + 180 s, the build not counted),
# so the check finishes in under 8 minutes or says which step ran over; the CPU plumbing check is slower.
limit() { # gpu-seconds cpu-seconds
  if [ "$cpu" = 1 ]; then echo "$2"; else echo "$1"; fi
}

step() { # name, limit seconds, command...
  local name="$1" limit="$2"; shift 2
  local t0; t0=$(date +%s)
  echo "== $name"
  timeout "$limit" "$@" > "$work/$name.log" 2>&1
  local rc=$? secs=$(( $(date +%s) - t0 ))
  cat "$work/$name.log"
  if [ $rc -eq 0 ]; then
    note "PASS $name (${secs} s)"
  else
    failed=1
    [ $rc -eq 124 ] && note "FAIL $name: over its ${limit} s limit" || note "FAIL $name (rc $rc, ${secs} s; log $work/$name.log)"
  fi
  return $rc
}

# (1) the CUDA tests
if [ "$cpu" = 1 ]; then
  note "SKIP cuda-tests (CPU plumbing check)"
elif [ -n "$tests" ] && [ -x "$tests" ]; then
  step cuda-tests "$(limit 150 150)" "$tests" --test-threads 1 --nocapture
else
  failed=1; note "FAIL cuda-tests: no test binary (set MER_CUDA_TESTS)"
fi

# (2) paper-size training throughput
bench_args=(bench train --device "$dev" --batch 16 --steps 20 --warmup 5)
[ -n "$peak" ] && bench_args+=(--peak-tflops "$peak")
[ "$cpu" = 1 ] && bench_args=(bench train --device cpu --batch 2 --steps 2 --warmup 1 --threads 2)
if step bench-train "$(limit 90 240)" "$mer" "${bench_args[@]}"; then
  while IFS= read -r l; do note "  $l"; done < <(grep -E 'samples/s|cuDNN|WARNING' "$work/bench-train.log")
fi

# (3) the gradient all-reduce over every local GPU
ar_dev="cuda:0"
[ "$cpu" = 1 ] && ar_dev="cpu"
if step allreduce "$(limit 60 120)" "$mer" bench allreduce --device "$ar_dev" --replicas "$replicas" --mib 64 --iters 20; then
  note "  $(tail -1 "$work/allreduce.log")"
fi

# (4) a short local experiment on CUDA (data-parallel over every GPU when there are several)
exp() {
  set -e
  "$mer" synth --preset tiny --out "$work/synth" --seed 1 > "$work/synth.txt"
  local prep
  prep="$(grep -o 'mer prep .*' "$work/synth.txt" | head -1 | sed -e 's/^mer prep //' -e 's/ --out [^ ]*//')"
  # shellcheck disable=SC2086
  eval "\"$mer\" prep $prep --out \"$work/tiny.safetensors\""
  sed -e "s#^dataset = .*#dataset = \"$work/tiny.safetensors\"#" \
      -e "s#^device = .*#device = \"$dev\"#" examples/tiny.toml > "$work/tiny.toml"
  if [ "$replicas" -gt 1 ]; then
    sed -i -e "s#^\[train\]#[train]\ndevices_per_task = $replicas#" "$work/tiny.toml"
  fi
  "$mer" run "$work/tiny.toml" --workers 1 --device "$dev" --run-dir "$work/run" --quiet
}
export -f exp
export mer work dev replicas
if step experiment "$(limit 180 300)" bash -c exp; then
  note "  pooled (part, n, UF1, UAR, ...): $(grep -m1 -F '**all**' "$work/experiment.log" || echo 'see the log')"
  note "  devices per fold: $(grep -o '"device":"[^"]*"' "$work/run/folds.jsonl" | sort | uniq -c | tr -s ' ' | tr '\n' ';')"
fi

echo
echo "================ mer GPU check: summary ($(( $(date +%s) - t_start )) s) ================"
printf '%s\n' "${summary[@]}"
[ $failed -eq 0 ] && echo "ALL PASSED" || echo "SOME STEPS FAILED (logs in $work)"
exit $failed
