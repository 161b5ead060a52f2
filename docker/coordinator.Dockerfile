# syntax=docker/dockerfile:1
# The mer coordinator image: scheduler, SQLite state, gRPC, /metrics, the Kubernetes launcher.
# A coordinator-only build (`--no-default-features`): no libtorch, no OpenCV, no CUDA.
#
#   docker build -f docker/coordinator.Dockerfile -t mer-coordinator:0.1.0 .
#
# (No Docker engine runs on the project's build machines: this file is kept correct by reading; see
# docs/kubernetes.md.)

ARG RUST_VERSION=1.95
FROM rust:${RUST_VERSION}-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends protobuf-compiler pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# SQLite is compiled in (rusqlite "bundled"); the `worker` feature (tch, OpenCV) stays off.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --no-default-features --bin mer \
 && install -D -m 0755 target/release/mer /out/mer

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates tini \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 mer \
 && useradd --system --uid 10001 --gid mer --home-dir /var/lib/mer --create-home mer
COPY --from=build /out/mer /usr/local/bin/mer
USER 10001:10001
WORKDIR /var/lib/mer
# 50051: gRPC (workers, clients); 9464: /metrics, /healthz, /readyz.
EXPOSE 50051 9464
ENTRYPOINT ["/usr/bin/tini", "--", "mer"]
CMD ["coordinator", "--listen", "0.0.0.0:50051", "--http-listen", "0.0.0.0:9464", "--state-dir", "/var/lib/mer"]
