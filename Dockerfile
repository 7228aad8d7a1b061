# chatstream: one image for chat nodes (`chatstream serve`) and AI service
# nodes (`chatstream ai-worker`). Multi-stage: the browser UI and the binary
# are built apart, and the runtime image holds only what runs.

FROM node:20-bookworm-slim AS frontend
WORKDIR /src/frontend
COPY frontend/package.json frontend/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY frontend/ ./
RUN npm run build

FROM rust:1-bookworm AS binary
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# Cargo.toml declares the benches: they must be there for it to load.
COPY benches ./benches
RUN cargo build --release --locked --bin chatstream

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /var/lib/chatstream && chown 65534:65534 /var/lib/chatstream
COPY --from=binary /src/target/release/chatstream /usr/local/bin/chatstream
COPY --from=frontend /src/frontend/dist /srv/chatstream/frontend
# DATA_DIR: a node without REDIS_URL keeps its SQLite history and generated
# secrets there; mount a volume on it to keep them across containers.
ENV BIND=0.0.0.0:8080 \
    STATIC_DIR=/srv/chatstream/frontend \
    DATA_DIR=/var/lib/chatstream
EXPOSE 8080
# nobody, by number, so that Kubernetes' runAsNonRoot can check it.
USER 65534:65534
HEALTHCHECK --interval=5s --timeout=2s --retries=3 \
  CMD curl -fsS http://127.0.0.1:8080/healthz >/dev/null || exit 1
# SIGTERM hands replies over to the other nodes and closes sockets with 1012.
STOPSIGNAL SIGTERM
ENTRYPOINT ["chatstream"]
CMD ["serve"]
