# hookline's image: `docker build -t hookline .` (or `podman build --format
# docker`, which keeps the HEALTHCHECK), then
#   docker run -d -p 127.0.0.1:3000:3000 -v hookline-data:/data \
#     -e HOOKLINE_PROVIDERS_TOML="$(cat config/providers.example.toml)" hookline
# See deploy/README.md ("The image").
#
# Two stages: the release build of the `hookline` binary (rustls only: no
# OpenSSL anywhere in the workspace), and a small runtime that holds the
# binary, the CA bundle and an empty /data, run as an unprivileged user
# (10001) with no shell needed: the HEALTHCHECK is `hookline healthcheck`.
#
# The base images are arguments, so a machine without Docker Hub builds the
# same file on images of its own (.ci/image makes them from Debian's
# packages). BINARY=prebuilt takes a binary built outside (for Debian 12's
# glibc) from the build context named hookline-prebuilt instead of
# compiling it here; .ci/image uses it to skip a second release build.
ARG RUST_IMAGE=docker.io/library/rust:1.95-slim-bookworm
ARG RUNTIME_IMAGE=docker.io/library/debian:bookworm-slim
ARG BINARY=build

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
# The registry and target caches make a rebuild after a code change take
# a minute rather than several; the binary leaves the cache through /out.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p hookline \
 && install -D -m 0755 target/release/hookline /out/hookline \
 && install -D -m 0644 /etc/ssl/certs/ca-certificates.crt /out/ca-certificates.crt \
 && install -d -m 0700 /out/data

# What the build stage makes, from outside: a directory with `hookline`,
# `ca-certificates.crt` and an empty `data/`.
FROM scratch AS prebuilt
COPY --from=hookline-prebuilt / /out/

FROM ${BINARY} AS binary

FROM ${RUNTIME_IMAGE} AS runtime
COPY --from=binary /out/hookline /usr/local/bin/hookline
COPY --from=binary /out/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
# The volume's mount point, owned by the user: a new named volume takes
# its owner from it.
COPY --from=binary --chown=10001:10001 /out/data /data
USER 10001:10001
WORKDIR /data
# The store, its key file (hookline.db.secrets-key) and its blobs
# (hookline.db-blobs/) all live in /data: back up the volume whole, or
# with `hookline backup` while it runs.
VOLUME /data
ENV HOOKLINE_LISTEN=0.0.0.0:3000 \
    HOOKLINE_STORE=sqlite:///data/hookline.db \
    HOOKLINE_LOG_FORMAT=json \
    HOME=/data
EXPOSE 3000
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/hookline", "healthcheck"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/hookline"]
CMD ["serve"]
