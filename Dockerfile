# sealpost container image (docs/service.md, "Container image").
#
#   docker build -t sealpost .
#   docker run -d --name sealpost -p 25:2525 -p 127.0.0.1:9925:9925 \
#       -v sealpost-data:/var/lib/sealpost \
#       -v /etc/sealpost/sealpost.toml:/etc/sealpost/sealpost.toml:ro \
#       --stop-timeout 30 sealpost
#
# The base images are build arguments so that a build without a registry
# can use local ones (dist/container/test-image.sh does); the defaults are
# the official images.
ARG RUST_IMAGE=docker.io/library/rust:1-bookworm
ARG RUNTIME_IMAGE=docker.io/library/debian:bookworm-slim

# Build stage: the release binary, from the locked dependency versions,
# stripped. The release profile's line tables would be stripped with the
# symbols, so they are not made (a shorter build, the same code). The
# binary is copied out of target/, so target/ may be a cache mount or a
# volume that does not end up in the image.
FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
RUN CARGO_PROFILE_RELEASE_DEBUG=false CARGO_PROFILE_RELEASE_STRIP=symbols \
        cargo build --release --locked --bin sealpost \
    && cp target/release/sealpost /usr/local/bin/sealpost \
    && /usr/local/bin/sealpost --config dist/container/sealpost.toml config check

# Runtime stage: Debian slim, the binary, a non-root user, a volume.
FROM ${RUNTIME_IMAGE}
RUN useradd --system --uid 10025 --user-group --home-dir /var/lib/sealpost \
        --no-create-home --shell /usr/sbin/nologin sealpost \
    && install -d -o sealpost -g sealpost -m 0750 /var/lib/sealpost \
    && install -d -m 0755 /etc/sealpost
COPY --from=build /usr/local/bin/sealpost /usr/bin/sealpost
COPY dist/container/sealpost.toml /etc/sealpost/sealpost.toml
USER sealpost:sealpost
WORKDIR /var/lib/sealpost
VOLUME ["/var/lib/sealpost"]
EXPOSE 2525 9925
# Ready: listeners open, queue writable, delivery engine ticking, disk
# reserve kept (GET /healthz/ready on the metrics listener). bash's
# /dev/tcp needs no HTTP client in the image.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9925 && printf 'GET /healthz/ready HTTP/1.0\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]
# SIGTERM starts the graceful stop (about 12 s at most): give it 30 s.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/sealpost", "--config", "/etc/sealpost/sealpost.toml"]
CMD ["serve"]
