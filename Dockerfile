# syntax=docker/dockerfile:1
#
# One image for every role: the Helm chart runs `sentinel score`, `sentinel archive`,
# `sentinel drift` and `sentinel train` from it. Built on Debian 12 with the same
# packages as scripts/setup, run on Debian 12 slim with only the shared libraries
# the binary links. tests/deploy/check_dockerfile.sh compares the runtime stage's
# install line with what `ldd` resolves, so a library added to the build without
# its runtime package is caught without a Docker engine.
#
#   docker build -t sentinel:dev .
#   docker run --rm --read-only --tmpfs /tmp sentinel:dev version

ARG DEBIAN_IMAGE=debian:12
ARG DEBIAN_SLIM_IMAGE=debian:12-slim

# ---------------------------------------------------------------------------
FROM ${DEBIAN_IMAGE} AS build

# The product's -dev packages, as scripts/setup lists them (no test tools).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      build-essential cmake ninja-build pkg-config \
      librdkafka-dev libavro-dev libxgboost-dev libhiredis-dev libcurl4-openssl-dev \
      libjansson-dev libmicrohttpd-dev libssl-dev libsnappy-dev zlib1g-dev \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY . .
RUN cmake -S . -B build -G Ninja -DSN_TESTS=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo \
 && cmake --build build \
 && ./build/sentinel version \
 && install -D -m 0755 -s build/sentinel /out/usr/local/bin/sentinel \
 && install -D -m 0644 -t /out/usr/share/sentinel/schemas schemas/ids schemas/*.avsc

# ---------------------------------------------------------------------------
FROM ${DEBIAN_SLIM_IMAGE} AS runtime

# Runtime libraries only (Debian 12 names). libc6, libgcc-s1 and libstdc++6 are in
# slim already; libdmlc0, libgomp1, libsasl2-2, liblz4-1, libzstd1 ... come in as
# dependencies of the packages below. ca-certificates: TLS to MSK, ElastiCache, S3.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      ca-certificates librdkafka1 libavro23 libxgboost0 libhiredis0.14 libcurl4 libjansson4 libmicrohttpd12 libssl3 \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb

# A numeric, non-root user (Kubernetes runAsNonRoot checks the number). The only
# writable places are the mounts the chart provides: /tmp and /var/lib/sentinel
# (emptyDir volumes), so the root filesystem can be mounted read-only.
RUN groupadd --system --gid 10001 sentinel \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/sentinel \
      --no-create-home --shell /usr/sbin/nologin sentinel \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/sentinel \
 && install -d -m 0755 /etc/sentinel

# The binary and the Avro schemas (schema.dir, set by the chart: the default,
# ./schemas, would be under WORKDIR, an empty volume in the pods).
COPY --from=build /out/ /

# Fails the image build when a linked library is missing from the install line.
RUN ! ldd /usr/local/bin/sentinel | grep 'not found' && /usr/local/bin/sentinel version

ENV HOME=/var/lib/sentinel TMPDIR=/tmp
WORKDIR /var/lib/sentinel
USER 10001:10001
# Metrics and health (/metrics, /healthz, /readyz): config key metrics.port.
EXPOSE 9464
# The scorer and the archiver finish the batch in hand, flush and commit on SIGTERM.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/sentinel"]
CMD ["--help"]
