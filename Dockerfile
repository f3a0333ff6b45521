# syntax=docker/dockerfile:1
# The wxnotify image: one binary, run as a non-root user.
#   docker build -t wxnotify .
#   docker run --rm wxnotify --help
# Every subcommand runs from it: migrate, worker, serve, enqueue, dlq, sync-followers ...

# --- build -------------------------------------------------------------------------------
FROM rust:1.94-bookworm AS build
WORKDIR /src
# Dependencies first, so a source change does not rebuild them.
COPY Cargo.toml Cargo.lock build.rs ./
RUN mkdir src && echo 'fn main() {}' > src/main.rs && echo '' > src/lib.rs \
    && mkdir migrations \
    && cargo build --release --locked \
    && rm -rf src migrations
COPY src ./src
COPY migrations ./migrations
COPY schemas ./schemas
# Touch the sources so cargo rebuilds the crate itself over the placeholder.
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin wxnotify \
    && strip target/release/wxnotify

# --- runtime -----------------------------------------------------------------------------
# Debian slim: glibc for the binary, CA certificates for api.weixin.qq.com, bash for the
# health checks (/dev/tcp); nothing else.
FROM debian:bookworm-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin wxnotify
COPY --from=build /src/target/release/wxnotify /usr/local/bin/wxnotify
USER 10001:10001
# serve (WXNOTIFY_LISTEN) and a worker's metrics and health (--metrics-listen).
EXPOSE 8080 9101
ENV WXNOTIFY_LOG_FORMAT=json
ENTRYPOINT ["/usr/local/bin/wxnotify"]
CMD ["--help"]
