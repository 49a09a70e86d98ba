# memfit's container image: `memfit serve` on Debian 12, as a non-root user,
# listening on 0.0.0.0:8080, its budget 80 % of the container's memory limit
# (the cgroup), its model cache on a volume. docs/deploy.md says how to run it
# (Docker, RunPod, Render, Kubernetes, KServe) and what memory to expect.
#
#   docker build -t memfit .
#   docker run --rm -p 8080:8080 --memory 512m -v memfit-cache:/var/cache/memfit memfit
#
# BASE is the Debian 12 image both stages start from; tests/integration/
# container.sh passes one it made with debootstrap, since no registry is
# reachable there.
ARG BASE=debian:bookworm-slim

# ---- build: the -dev packages and CMake's default Release build (-O3; the
# SIMD kernels are chosen at run time, so the binary runs on any x86-64) ----
FROM ${BASE} AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        cmake make gcc libc6-dev pkg-config \
        libcurl4-openssl-dev libssl-dev libmicrohttpd-dev libjansson-dev libyaml-dev \
        libpcre2-dev libjpeg62-turbo-dev libpng-dev libzip-dev zlib1g-dev libgrpc-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY CMakeLists.txt LICENSE NOTICE ./
COPY include include
COPY src src
COPY cli cli
COPY scripts scripts
RUN cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DMEMFIT_TESTS=OFF \
 && cmake --build build -j"$(nproc)" \
 && DESTDIR=/out cmake --install build --prefix /usr/local

# ---- runtime: the libraries memfit links (jansson, yaml, pcre2, jpeg, png,
# zlib) and those it loads with dlopen when first needed (curl, libcrypto,
# microhttpd, libzip, and libgrpc29 for `serve --grpc-port`: ~15 MB, kept
# because the image is the ModelMesh ServingRuntime of deploy/kserve); curl
# for the HEALTHCHECK (memfit has no HTTP client command, and Debian's curl
# adds only its binary to libcurl4) ----
FROM ${BASE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        libjansson4 libyaml-0-2 libpcre2-8-0 libjpeg62-turbo libpng16-16 zlib1g \
        libcurl4 libssl3 libmicrohttpd12 libzip4 libgrpc29 ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 10001 --user-group --no-create-home --home-dir /var/lib/memfit \
        --shell /usr/sbin/nologin memfit \
 && mkdir -p /etc/memfit /var/cache/memfit /var/lib/memfit \
 && chown memfit:memfit /var/cache/memfit /var/lib/memfit
COPY --from=build /out/usr/local/bin/memfit /usr/local/bin/memfit
COPY --from=build /out/usr/local/share/doc/memfit /usr/local/share/doc/memfit

# The manifest is read from ./memfit.yaml (and a .env beside it): mount one
# at /etc/memfit/memfit.yaml, or pass --manifest. With neither, models named
# as arguments are served (`docker run IMAGE serve s3://bucket/dino.gguf`).
WORKDIR /etc/memfit
# MEMFIT_HOST: the traffic comes from outside the container. The port is
# serve's default 8080, or PORT where the platform sets it (Render, Cloud
# Run), or MEMFIT_PORT. No MEMFIT_MAX_MEMORY_MB: the budget is 80 % of the
# cgroup limit the runtime sets (--memory, resources.limits.memory).
ENV MEMFIT_HOST=0.0.0.0 \
    MEMFIT_CACHE_DIR=/var/cache/memfit \
    MEMFIT_LOG_FORMAT=json \
    HOME=/var/lib/memfit
VOLUME ["/var/cache/memfit"]
EXPOSE 8080
# Numeric, so that Kubernetes' runAsNonRoot can check it.
USER 10001:10001
# serve stops accepting connections on SIGTERM and gives the requests in
# progress --grace (10 s) to finish; give the container at least that.
# Behind a load balancer that follows /ready but sends no preStop hook
# (Render, Knative), set MEMFIT_DRAIN_DELAY (e.g. 5s): /ready turns 503 at
# once and requests are still served that long before the graceful stop.
# Plain `docker run` has no such balancer: the default stays 0.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD curl -fsS -o /dev/null "http://127.0.0.1:${MEMFIT_PORT:-${PORT:-8080}}/health" || exit 1
ENTRYPOINT ["/usr/local/bin/memfit"]
CMD ["serve"]
