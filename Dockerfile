# mllp-edge in a container on a VPN host that already runs strongSwan.
#
# The host's charon owns IKE, ESP and the tunnels (its /etc/swanctl/). In
# the container the supervisor (`appliance`) attaches to that charon over
# the vici socket mounted from the host (`charon: {start: false}`, tunnels
# with `source: swanctl`), audits the SAs' DH groups, and runs mllp-bridge,
# whose MLLP gate it opens only for peers behind an installed CHILD_SA.
# packaging/container/appliance.yaml is the example configuration.
#
# This file has never been built: the machines this project is developed
# and tested on have no Docker engine. tests/tools/dockerfile-check.py
# checks its structure (make check, t_package).
#
#   docker build -t mllp-edge .
#   docker run -d --name mllp-edge --network host --stop-timeout 45 \
#       --cap-drop ALL --cap-add SETUID --cap-add SETGID --cap-add KILL \
#       -v /run/charon.vici:/run/charon.vici \
#       -v /etc/appliance:/etc/appliance:ro \
#       -v mllp-spool:/var/lib/appliance \
#       mllp-edge
#   docker exec mllp-edge appliancectl status
#
# --network host: the MLLP listeners bind the host's tunnel-side address
# and the upstream is reached the way the host reaches it. --stop-timeout:
# on SIGTERM the bridge drains (up to 30 s), more than docker's default 10.
# /etc/appliance on the host must be readable by uid/gid 990 (the image's
# mllp-bridge user), e.g. chgrp -R 990 /etc/appliance && chmod 0750 /etc/appliance.

# ---- build: compilers and -dev packages, never shipped ----
FROM debian:12 AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        build-essential pkg-config libevent-dev libcurl4-openssl-dev \
        libsqlite3-dev libyaml-dev libssl-dev libjansson-dev libssh-dev check \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Makefile README.md VERSION ./
COPY appliance appliance
COPY ipc ipc
COPY mllp-bridge mllp-bridge
COPY vici-client vici-client
COPY tests tests
COPY rootfs rootfs
COPY docs docs
COPY packaging packaging
# The programs and their unit tests, then the same .deb a Debian host
# installs (dpkg-shlibdeps computes its Depends here).
RUN make -j"$(nproc)" && make deb

# ---- runtime: the package and its runtime libraries only ----
FROM debian:12-slim AS runtime
COPY --from=build /src/build/mllp-edge_*.deb /tmp/
# A fixed uid/gid for mllp-bridge, made before the package (whose postinst
# keeps an existing user), so that volumes and files mounted from the host
# can be given to it. --no-install-recommends: no charon, the host has one.
# curl is the HEALTHCHECK's client (libcurl4 is a dependency anyway).
RUN groupadd --system --gid 990 mllp-bridge \
    && useradd --system --uid 990 --gid 990 --home-dir /var/lib/appliance \
        --no-create-home --shell /usr/sbin/nologin mllp-bridge \
    && apt-get update \
    && apt-get install -y --no-install-recommends /tmp/mllp-edge_*.deb curl \
    && rm -rf /var/lib/apt/lists/* /tmp/mllp-edge_*.deb
COPY packaging/container/appliance.yaml /etc/appliance/appliance.yaml
VOLUME /var/lib/appliance
# MLLP (the example's integration; with --network host EXPOSE only
# documents it). /metrics and /healthz stay on loopback.
EXPOSE 9960
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["curl", "-fsS", "--max-time", "4", "-o", "/dev/null", "http://127.0.0.1:9100/healthz"]
# Root, on purpose, with almost no capabilities (run with --cap-drop ALL
# --cap-add SETUID --cap-add SETGID --cap-add KILL): the supervisor needs
# root to connect to the host's vici socket (root's, mode 0770), and
# SETUID/SETGID to drop mllp-bridge to its own user before exec
# (appliance/child.c), KILL to signal it afterwards. The bridge, which
# faces the hospital and the cloud, runs as mllp-bridge. As a non-root
# USER the supervisor could not drop the bridge: both would run as one
# user (bridge_no_privdrop), and the bridge could then drive charon.
USER root
ENTRYPOINT ["/usr/sbin/appliance"]
CMD ["-c", "/etc/appliance/appliance.yaml"]
