# chatstream: one image for chat nodes (`chatstream serve`) and AI service
# nodes (`chatstream ai-worker`). Multi-stage: the browser UI and the binary
# are built apart, and the runtime image holds only what runs.
#
#   docker build -t chatstream .
#
# Needs BuildKit (the default builder since Docker 23) for the cache mounts.
# scripts/check-deploy.sh builds the crate from exactly what the `binary`
# stage copies, so a source the build needs and no COPY brings fails CI.

FROM node:20-bookworm-slim AS frontend
WORKDIR /src/frontend
# The manifests alone first: `npm ci` reruns only when they change.
COPY frontend/package.json frontend/package-lock.json ./
RUN --mount=type=cache,target=/root/.npm \
    npm ci --no-audit --no-fund
COPY frontend/ ./
RUN npm run build

FROM rust:1-bookworm AS binary
WORKDIR /src
# Everything the crate's build reads: the manifests; the benches, since
# Cargo.toml declares them and cargo refuses a manifest whose targets are
# missing; src/, which also holds what the code embeds at compile time
# (redis.lua, fallback.html, the SQL migrations).
COPY Cargo.toml Cargo.lock ./
COPY benches ./benches
COPY src ./src
# Dependency caching: the registry and the target directory live in cache
# mounts that outlast the layer, so a change in src/ recompiles the crate
# and not its dependencies. The target directory is not part of the layer,
# hence the copy of the binary out of it in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --bin chatstream \
 && install -m 0755 target/release/chatstream /usr/local/bin/chatstream

FROM debian:bookworm-slim
# ca-certificates: TLS to model APIs, PostgreSQL and Redis. The node's user
# has a fixed number (10001) so that Kubernetes' runAsNonRoot can check it
# and volumes can be prepared for it; it owns DATA_DIR and nothing else.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 chatstream \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/chatstream \
      --no-create-home --shell /usr/sbin/nologin chatstream \
 && install -d -m 0700 -o 10001 -g 10001 /var/lib/chatstream
COPY --from=binary /usr/local/bin/chatstream /usr/local/bin/chatstream
COPY --from=frontend /src/frontend/dist /srv/chatstream/frontend
# DATA_DIR: a node without REDIS_URL keeps its SQLite history and generated
# secrets there; mount a volume on it to keep them across containers.
ENV BIND=0.0.0.0:8080 \
    STATIC_DIR=/srv/chatstream/frontend \
    DATA_DIR=/var/lib/chatstream
EXPOSE 8080
# By number: Kubernetes' runAsNonRoot refuses a user it cannot see is not 0.
USER 10001:10001
# The binary checks its own /healthz (the port of BIND), so the image needs
# no HTTP client. An `ai-worker` container listens elsewhere: turn the check
# off for it (compose: `healthcheck: {disable: true}`).
HEALTHCHECK --interval=5s --timeout=2s --retries=3 \
  CMD ["chatstream", "healthcheck"]
# SIGTERM hands replies over to the other nodes and closes sockets with 1012.
STOPSIGNAL SIGTERM
ENTRYPOINT ["chatstream"]
CMD ["serve"]
