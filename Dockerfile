# syntax=docker/dockerfile:1
# The fabricsync image the Helm chart (helm/fabricsync) runs:
#   docker build -t fabricsync:0.1.0 .
# Build stage: the release binary. protoc is not needed: server/build.rs uses the vendored one
# (protoc-bin-vendored). The embedded migrations (migrations/) and CRDs (core/crds/) are
# compiled into the binary.
ARG RUST_VERSION=1.95
FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY proto proto
COPY migrations migrations
COPY core core
COPY server server
# Cache mounts keep the registry and target directory between builds (BuildKit).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p fabricsync \
 && cp target/release/fabricsync /usr/local/bin/fabricsync

# Runtime stage. The binary links only glibc and libgcc (TLS is rustls, Git is gix), but
# bookworm-slim rather than distroless: git over ssh:// runs the `ssh` client through /bin/sh
# (gix's core.sshCommand), so it needs openssh-client and a shell; writes to Git push with the
# git command (gix cannot push; bookworm's git is 2.39, new enough for http.curloptResolve).
# No PostgreSQL either: in Kubernetes DATABASE_URL points at an external one.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates openssh-client git \
 && rm -rf /var/lib/apt/lists/*
# A named user for uid 10001: ssh refuses to run for a uid without a passwd entry. The chart's
# securityContext (runAsUser/runAsGroup/fsGroup 10001) matches.
RUN groupadd --system --gid 10001 fabricsync \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/fabricsync --no-create-home \
      --shell /usr/sbin/nologin fabricsync \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/fabricsync
COPY --from=build /usr/local/bin/fabricsync /usr/local/bin/fabricsync
USER 10001:10001
WORKDIR /var/lib/fabricsync
# In a container the server must listen on all interfaces; the data directory holds only git
# mirrors when DATABASE_URL is set (a cache: an emptyDir in the chart).
ENV FABRICSYNC_LISTEN=0.0.0.0:50051 \
    FABRICSYNC_DATA_DIR=/var/lib/fabricsync \
    FABRICSYNC_LOG_FORMAT=json
EXPOSE 50051
ENTRYPOINT ["/usr/local/bin/fabricsync"]
CMD ["serve"]
