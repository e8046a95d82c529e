# meshca container image: one image for the CA (`ca serve`), agent, sidecar and proxy. The
# entrypoint is the meshca CLI, so `docker run IMAGE --version` and `docker run IMAGE ca serve`.
#
#   docker build --build-arg VERSION=0.1.0 -t meshca:0.1.0 .
#
# Distroless runtime (no shell, no npm; its node is /nodejs/bin/node):
#
#   docker build --build-arg BASE_IMAGE=gcr.io/distroless/nodejs20-debian12 \
#     --build-arg NODE_BIN=/nodejs/bin/node -t meshca:0.1.0-distroless .
#
# BUILD_IMAGE needs node, npm and a POSIX shell with coreutils (find, mkdir, chmod). BASE_IMAGE
# needs only a Node.js 20 binary at NODE_BIN: nothing else of it runs, not even a shell.
# Offline builds: --build-arg NPM_CONFIG_OFFLINE=true with a populated npm cache at /root/.npm
# (scripts/image-test.sh mounts one with --volume).

ARG BUILD_IMAGE=node:20
ARG BASE_IMAGE=node:20-slim

# --- build: all dependencies, compile src/ to dist/ -------------------------------------------
FROM ${BUILD_IMAGE} AS build
ARG NPM_CONFIG_OFFLINE=false
ENV NPM_CONFIG_UPDATE_NOTIFIER=false NPM_CONFIG_FUND=false NPM_CONFIG_AUDIT=false
WORKDIR /app
COPY package.json package-lock.json ./
# No install scripts: `prepare` builds, and src/ is not here yet (the build is the next layer).
# The only dev dependency with one is esbuild (for tsx), which tsc does not need.
RUN npm ci --ignore-scripts
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

# --- deps: production dependencies only --------------------------------------------------------
FROM ${BUILD_IMAGE} AS deps
ARG NPM_CONFIG_OFFLINE=false
ENV NPM_CONFIG_UPDATE_NOTIFIER=false NPM_CONFIG_FUND=false NPM_CONFIG_AUDIT=false
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: `prepare` would run the build (dev dependencies). The one production
# dependency with an install script, protobufjs, only checks its version scheme in postinstall.
# Type declarations and source maps of dependencies are never loaded at run time: dropped.
RUN npm ci --omit=dev --ignore-scripts \
 && find node_modules -type f \( -name '*.d.ts' -o -name '*.d.mts' -o -name '*.d.cts' -o -name '*.map' \) -delete
# The launcher: `meshca` on PATH and the ENTRYPOINT. Its shebang names node by absolute path,
# so it needs neither /usr/bin/env nor a shell (distroless has neither).
ARG NODE_BIN=/usr/local/bin/node
RUN mkdir -p /out/usr/local/bin /out/var/lib/meshca \
 && printf '#!%s\n%s\n' "$NODE_BIN" \
      "import('/app/bin/meshca.js').catch((err) => { console.error(err); process.exit(1); });" \
      > /out/usr/local/bin/meshca \
 && chmod 0755 /out/usr/local/bin/meshca

# --- runtime -------------------------------------------------------------------------------------
FROM ${BASE_IMAGE}
ARG VERSION=0.1.0
ARG REVISION=""
ARG SOURCE_URL=""
LABEL org.opencontainers.image.title="meshca" \
      org.opencontainers.image.description="SPIFFE certificate authority and mutual-TLS identity service for Kubernetes" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.version="${VERSION}"
# Listen on every address of the container (the CLI defaults to loopback), keep CA state in
# /var/lib/meshca: mount a volume there (emptyDir, Secret-backed, ...) when the root
# filesystem is read-only. Flags win over these.
ENV NODE_ENV=production \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    MESHCA_DATA_DIR=/var/lib/meshca \
    MESHCA_GRPC_LISTEN=0.0.0.0:15012 \
    MESHCA_HTTP_LISTEN=0.0.0.0:15014
WORKDIR /app
# Everything root-owned and read-only for the user the image runs as; only the data dir is its.
COPY package.json LICENSE README.md ./
COPY bin ./bin
COPY proto ./proto
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY --from=deps /out/usr/local/bin/meshca /usr/local/bin/meshca
COPY --from=deps --chown=65532:65532 /out/var/lib/meshca /var/lib/meshca
USER 65532:65532
# 15012: CA gRPC (Istio CreateCertificate); 15014: CA HTTPS (bundle, /readyz, /metrics).
EXPOSE 15012 15014
ENTRYPOINT ["/usr/local/bin/meshca"]
CMD ["--help"]
