# stockd, stockd-gateway, stockctl and stockbench in one small image.
#   docker build -t stockd:0.1.0 .
# Build stage: the same CMake build as `make build`, on Debian bookworm packages.
FROM debian:bookworm-slim AS build
# lets `make image` remove this stage once the runtime image is built
LABEL stockd.stage=build
# cowsql/raft 0.22 (replication) is in bookworm-backports, of the archive the base uses
COPY deploy/image/add-backports.sh /usr/local/sbin/
RUN sh /usr/local/sbin/add-backports.sh
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      build-essential cmake pkg-config libgrpc-dev libprotobuf-c-dev protobuf-c-compiler \
      libprotobuf-dev grpc-proto libmicrohttpd-dev librocksdb-dev libjansson-dev libssl-dev \
      libuv1-dev zlib1g-dev \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      -t bookworm-backports libraft-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY CMakeLists.txt ./
COPY proto proto
COPY common common
COPY daemon daemon
COPY gateway gateway
COPY client client
RUN cmake -S . -B /build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSTOCKD_WERROR=ON -DSTOCKD_TESTS=OFF \
 && cmake --build /build -j "$(nproc)" --target stockd stockd-gateway stockctl stockbench \
 && install -m 0755 /build/stockd /build/stockd-gateway /build/stockctl /build/stockbench \
      /usr/local/bin/

# Runtime stage: only the shared libraries the binaries link, and the binaries.
FROM debian:bookworm-slim
# cowsql/raft 0.22 (replication) is in bookworm-backports, of the archive the base uses
COPY deploy/image/add-backports.sh /usr/local/sbin/
RUN sh /usr/local/sbin/add-backports.sh
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libgrpc29 libprotobuf-c1 librocksdb7.8 libmicrohttpd12 libjansson4 libssl3 ca-certificates \
      libuv1 zlib1g \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      -t bookworm-backports libraft0 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 stockd \
 && useradd --system --uid 10001 --gid stockd --home-dir /var/lib/stockd --shell /usr/sbin/nologin stockd \
 && install -d -o stockd -g stockd -m 0750 /var/lib/stockd
COPY --from=build /usr/local/bin/stockd /usr/local/bin/stockd-gateway /usr/local/bin/stockctl \
     /usr/local/bin/stockbench /usr/local/bin/
USER 10001:10001
WORKDIR /var/lib/stockd
EXPOSE 50051 8080 9090
# exec form: no shell is involved at run time
ENTRYPOINT ["/usr/local/bin/stockd"]
# Loopback only by default: off loopback stockd needs TLS (--tls-cert, --tls-key) and an
# --auth-policy, or refuses to start; the Kubernetes manifests (deploy/) pass all of them.
CMD ["--data-dir=/var/lib/stockd/data"]
