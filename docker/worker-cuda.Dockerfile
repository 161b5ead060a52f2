# syntax=docker/dockerfile:1
# The mer CUDA worker image: the full `mer` build (libtorch through tch 0.24.0, OpenCV) linked against
# the PyPI torch 2.11.0 wheel (CUDA 13.0 build, its CUDA/cuDNN/NCCL libraries come with it) installed
# in a venv at /opt/venv. The binary's rpath points at /opt/venv/.../torch/lib (build.rs), and the venv
# sits at the same path in both stages, so nothing else (no LD_LIBRARY_PATH) is needed at run time.
# The GPU driver comes from the node (NVIDIA container toolkit / device plugin).
#
#   docker build -f docker/worker-cuda.Dockerfile -t mer-worker-cuda:0.1.0-cu130 .
#
# (No Docker engine runs on the project's build machines: this file is kept correct by reading; see
# docs/kubernetes.md.)

ARG CUDA_BASE=nvidia/cuda:13.0.1-runtime-ubuntu24.04
ARG RUST_VERSION=1.95.0
ARG TORCH_VERSION=2.11.0

FROM ${CUDA_BASE} AS build
ARG RUST_VERSION
ARG TORCH_VERSION
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      ca-certificates curl build-essential pkg-config clang libclang-dev \
      libopencv-dev protobuf-compiler python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
# Rust toolchain.
ENV RUSTUP_HOME=/opt/rustup CARGO_HOME=/opt/cargo PATH=/opt/cargo/bin:$PATH
RUN curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --default-toolchain ${RUST_VERSION}
# torch 2.11.0 in the venv that the binary will use at run time (same path in the runtime stage).
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir "torch==${TORCH_VERSION}"
ENV VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH LIBTORCH_USE_PYTORCH=1
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/opt/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin mer \
 && install -D -m 0755 target/release/mer /out/mer \
 && readelf -d /out/mer | grep -q "/opt/venv/lib/python3.*/site-packages/torch/lib"

FROM ${CUDA_BASE}
ENV DEBIAN_FRONTEND=noninteractive
# OpenCV 4.6 runtime libraries (the same release the build linked), the Haar cascades, and the Python
# runtime the venv refers to.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      ca-certificates tini python3 opencv-data \
      libopencv-core406t64 libopencv-imgproc406t64 libopencv-video406t64 \
      libopencv-objdetect406t64 libopencv-imgcodecs406t64 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 mer \
 && useradd --system --uid 10001 --gid mer --home-dir /var/cache/mer --create-home mer
COPY --from=build /opt/venv /opt/venv
COPY --from=build /out/mer /usr/local/bin/mer
# Fail the image build if a shared library is missing.
RUN ldd /usr/local/bin/mer | (! grep "not found")
USER 10001:10001
WORKDIR /var/cache/mer
# The launcher runs: mer worker --slots N --device cuda:0 ... --name $(MER_WORKER_NAME) --cache-dir /var/cache/mer
# with MER_COORDINATOR and MER_TOKEN in the environment.
ENTRYPOINT ["/usr/bin/tini", "--", "mer"]
CMD ["worker"]
