# mllp-edge for a VPN host that already runs charon (container mode).
#
# Today the image carries the MLLP bridge; the supervisor that attaches to the
# host's charon over vici joins it when it is built. Run it with the host's
# network (the tunnel-side address must be visible) and a volume for the spool:
#
#   docker build -t mllp-edge .
#   docker run --network host -v /etc/appliance:/etc/appliance:ro \
#       -v mllp-spool:/var/lib/appliance mllp-edge
FROM debian:12-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends \
        build-essential pkg-config libevent-dev libcurl4-openssl-dev \
        libsqlite3-dev libyaml-dev libssl-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Makefile ./
COPY mllp-bridge mllp-bridge
RUN make build/bin/mllp-bridge

FROM debian:12-slim
RUN apt-get update && apt-get install -y --no-install-recommends \
        libevent-2.1-7 libevent-openssl-2.1-7 libcurl4 libsqlite3-0 libyaml-0-2 \
        libssl3 ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /var/lib/appliance --shell /usr/sbin/nologin mllp-bridge \
    && install -d -o mllp-bridge -g mllp-bridge -m 0700 /var/lib/appliance
COPY --from=build /src/build/bin/mllp-bridge /usr/local/bin/mllp-bridge
COPY rootfs/etc/appliance/appliance.yaml /usr/share/doc/mllp-edge/appliance.yaml.example
USER mllp-bridge
VOLUME /var/lib/appliance
HEALTHCHECK CMD ["/usr/local/bin/mllp-bridge", "-n", "-c", "/etc/appliance/appliance.yaml"]
ENTRYPOINT ["/usr/local/bin/mllp-bridge", "-c", "/etc/appliance/appliance.yaml"]
