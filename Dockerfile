# The service's image: a release binary on Debian slim, run as an unprivileged user.
# No protoc is needed (protox compiles the protos in build.rs) and no HEALTHCHECK is set: Cloud
# Run probes /readyz and /healthz itself (deploy/cloudrun-service.yaml).

# 1. Dependencies, in a layer of their own: only the manifests and the lockfile are copied, with
#    empty targets in place of the sources, so a change under src/ reuses this layer and
#    compiles only the service's own crate.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY tools/loadgen/Cargo.toml tools/loadgen/
COPY tools/connload/Cargo.toml tools/connload/
COPY tools/eventbench/Cargo.toml tools/eventbench/
# Every workspace member needs a target for cargo to load the workspace; the empty build
# script makes cargo compile the build dependencies here too.
RUN mkdir -p src tools/loadgen/src tools/connload/src tools/eventbench/src \
 && echo 'fn main() {}' > build.rs \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && for tool in loadgen connload eventbench; do echo 'fn main() {}' > "tools/$tool/src/main.rs"; done \
 && cargo build --release --locked -p ai-integration-service --bin ai-integration-service \
 && rm -rf build.rs src \
      target/release/ai-integration-service* \
      target/release/.fingerprint/ai-integration-service-* \
      target/release/build/ai-integration-service-* \
      target/release/deps/ai_integration_service-* \
      target/release/deps/libai_integration_service-*

# 2. The service itself (the fingerprints removed above make cargo rebuild it whatever the
#    copied files' times).
COPY build.rs ./
COPY proto proto
COPY migrations migrations
COPY src src
RUN cargo build --release --locked -p ai-integration-service --bin ai-integration-service

# 3. Run: only the binary and the CA roots (for the AI providers' HTTPS).
FROM debian:bookworm-slim
# ca-certificates tracks the distribution's roots: the current one is the one to have.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/ais ais \
 && mkdir -p /var/lib/ais/data \
 && chown -R 10001 /var/lib/ais
COPY --from=build /src/target/release/ai-integration-service /usr/local/bin/ai-integration-service
# Numeric, so the runtime need not resolve the name.
USER 10001
WORKDIR /var/lib/ais
ENV PORT=8080 DATA_DIR=/var/lib/ais/data
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/ai-integration-service"]
CMD ["serve"]
