# Build: a release binary (no protoc needed: protox compiles the protos in build.rs).
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY proto proto
COPY migrations migrations
COPY src src
# The load tools are members of the workspace: cargo reads their manifests, builds none of them.
COPY tools tools
RUN cargo build --release --locked -p ai-integration-service --bin ai-integration-service

# Run: a small image with only the binary, as an unprivileged user.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/ais ais \
 && mkdir -p /var/lib/ais/data && chown -R ais /var/lib/ais
COPY --from=build /src/target/release/ai-integration-service /usr/local/bin/ai-integration-service
USER ais
WORKDIR /var/lib/ais
ENV PORT=8080 DATA_DIR=/var/lib/ais/data
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/ai-integration-service"]
CMD ["serve"]
