# syntax=docker/dockerfile:1
# The wxnotify image: the service's one binary, run as a non-root user.
#   docker build -t wxnotify .
#   docker run --rm wxnotify --help
# Every subcommand runs from it: migrate, worker, serve, enqueue, dlq, sync-followers ...
# The sandbox (the fake WeChat, the demo, the benchmarks) is a development image of its own:
#   docker build --target sandbox -t wxnotify-sandbox .

# --- build -------------------------------------------------------------------------------
FROM rust:1.94-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
COPY src ./src
COPY migrations ./migrations
COPY schemas ./schemas
# The registry and the target folder are build caches: a source change rebuilds only the
# crates it touches. Only the service's package is built: the sandbox is not in it.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --package wxnotify --bin wxnotify \
    && install -D -s target/release/wxnotify /out/wxnotify

# --- the sandbox, for development (docker compose --profile mock) --------------------------
FROM build AS sandbox-build
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --package wxnotify-sandbox --bin wxnotify-sandbox \
    && install -D -s target/release/wxnotify-sandbox /out/wxnotify-sandbox

# Debian slim: glibc for the binaries, CA certificates for api.weixin.qq.com; nothing else (the
# health check is the binary's own `wxnotify health`: the image has no curl).
FROM debian:bookworm-slim AS base
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin wxnotify

FROM base AS sandbox
COPY --from=sandbox-build /out/wxnotify-sandbox /usr/local/bin/wxnotify-sandbox
USER 10001:10001
EXPOSE 9000
ENTRYPOINT ["/usr/local/bin/wxnotify-sandbox"]
CMD ["--help"]

# --- runtime: the service (the default target, last) ---------------------------------------
FROM base AS runtime
COPY --from=build /out/wxnotify /usr/local/bin/wxnotify
USER 10001:10001
# serve (WXNOTIFY_LISTEN) and a worker's metrics and health (--metrics-listen).
EXPOSE 8080 9101
ENV WXNOTIFY_LOG_FORMAT=json
# Liveness: the process works (200 even while RabbitMQ or Postgres is away). `serve` on its
# default port; for a worker set WXNOTIFY_HEALTH_URL=http://127.0.0.1:9101/livez (its
# --metrics-listen), or override the check as docker-compose.yml does.
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD ["/usr/local/bin/wxnotify", "health", "--timeout-secs", "3"]
ENTRYPOINT ["/usr/local/bin/wxnotify"]
CMD ["--help"]
