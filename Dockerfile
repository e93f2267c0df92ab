# syntax=docker/dockerfile:1
#
# taskd: three stages, so the runtime image holds the compiled server and its production
# dependencies only (no compiler, no dev tools, no sources).
#   docker build -t taskd .
# Node's minor version matches the `node` devDependency that local runs and CI use; bump both
# together (and pin the digest, `node:…@sha256:…`, in a release pipeline).
ARG NODE_IMAGE=node:24.21.0-trixie-slim

# --- 1. all dependencies, exactly as locked -------------------------------------------------
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund

# --- 2. compile (nest build → dist/src/main.js, dist/migrations) ----------------------------
FROM deps AS build
COPY tsconfig.json tsconfig.build.json nest-cli.json ./
COPY migrations ./migrations
COPY src ./src
RUN npm run build

# --- 3. production dependencies only ----------------------------------------------------------
# A fresh install rather than pruning stage 1: `--omit=dev` also leaves out the `node`
# devDependency (the runtime uses the image's own Node) and the build tools.
FROM ${NODE_IMAGE} AS prod-deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

# --- 4. runtime ---------------------------------------------------------------------------------
FROM ${NODE_IMAGE} AS runtime
# tini as PID 1: the app handles SIGTERM/SIGINT itself, but only once it has installed its
# handlers after start-up; a PID 1 without a handler ignores SIGTERM, so a pod stopped while
# starting would wait out its whole grace period. tini forwards signals to Node and reaps
# zombies. (`docker run --init` would do the same, but only when the caller remembers it.)
RUN apt-get update \
  && apt-get install -y --no-install-recommends tini \
  && rm -rf /var/lib/apt/lists/*

# MALLOC_ARENA_MAX: glibc otherwise gives each thread that allocates (libuv's pool running
# argon2id's 19 MiB per hash, V8's compiler and GC threads) its own arena, and keeps what each
# arena once held: two arenas cut peak RSS by 20–60 MB at no measurable CPU cost
# (docs/performance.md, "Memory"). `npm run start:prod` sets the same.
ENV NODE_ENV=production \
    PORT=3000 \
    HOST=0.0.0.0 \
    BUFFER_PATH=/var/lib/taskd/buffer \
    MALLOC_ARENA_MAX=2

WORKDIR /app
COPY --from=prod-deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./

# The buffer directory is the only place the process writes; created before VOLUME so that a
# fresh volume inherits its owner. The code stays root-owned and read-only to the app.
RUN mkdir -p /var/lib/taskd/buffer && chown -R 1000:1000 /var/lib/taskd
VOLUME ["/var/lib/taskd/buffer"]

# The image's `node` user, by number: Kubernetes' runAsNonRoot can only verify a numeric user.
USER 1000:1000
EXPOSE 3000
STOPSIGNAL SIGTERM

# For Docker and Compose (Kubernetes uses its own probes). Slim images have no curl: Node's
# fetch does it. Assumes HOST listens on loopback too (0.0.0.0 or ::).
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 3000) + '/health/live', { signal: AbortSignal.timeout(2000) }).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]

# Exec form throughout, so no shell sits between tini and Node.
ENTRYPOINT ["/usr/bin/tini", "--"]
# V8 flags (docs/performance.md, "Memory"): 16 MiB semi-spaces, so a request's objects die
# young instead of being promoted mid-request; no allocation-site pretenuring, which under load
# sends whole allocation sites straight to the old generation, where they pile up as garbage
# until a full collection (13–17% of a list request's CPU, and the old generation's growth);
# the old generation may grow to twice its live size before a full collection, where V8 would
# let it reach four times on a machine with gigabytes (peak RSS under the bench's load
# 382–437 → 304–334 MB, throughput unchanged within the noise).
CMD ["node", "--max-semi-space-size=16", "--no-allocation-site-pretenuring", "--heap-growing-percent=100", "dist/src/main.js"]
