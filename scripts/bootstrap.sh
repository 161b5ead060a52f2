#!/usr/bin/env bash
# Installs everything the build and the test suite need on a fresh Debian 12 machine.
# Idempotent: a second run only checks and returns in seconds.
#   - Debian packages: OpenCV (dev headers + Haar cascades), clang/libclang for the opencv crate's
#     binding generator, protoc for the gRPC code generation, SQLite, pkg-config, and `prometheus`
#     for `promtool check metrics` (the /metrics test), fonts-dejavu-core (text in the report's plotters PNGs)
#     and chromium (the headless-browser dashboard test, coordinator/tests/dashboard_e2e.rs), and
#     slurm-wlm + munge (tests/slurm.rs runs the Slurm launcher against a real one-node Slurm that it
#     starts itself; the packages' own services are not used and not started here).
#   - .venv/ (project-local): torch==2.11.0 (tch 0.24.0 links against exactly it) and the Python test tools:
#     scikit-image (worker/tests/lbptop_reference.rs checks the LBP-TOP features against it),
#     kubernetes-validate (manifest schemas) and helm-python-sdk (Helm v4's Go engine as a C library,
#     `helm_python`), used by tests/helm_chart.rs to render and validate charts/mer.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

APT_PKGS=(libopencv-dev opencv-data clang libclang-dev protobuf-compiler pkg-config libsqlite3-dev openssl prometheus fonts-dejavu-core chromium slurm-wlm munge)
PY_PKGS=("torch==2.11.0" "numpy" "scikit-learn" "safetensors" "openpyxl" "scikit-image" "kubernetes-validate==1.37.0" "helm-python-sdk==0.2.2")

missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "bootstrap: installing Debian packages: ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

stamp=".venv/.mer-bootstrap-$(printf '%s\n' "${PY_PKGS[@]}" | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "bootstrap: creating .venv with ${PY_PKGS[*]}" >&2
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q "${PY_PKGS[@]}"
  touch "$stamp"
fi
