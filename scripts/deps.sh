#!/bin/sh
# Installs the Debian 12 packages that building, testing and the demo need.
# Only packages that are missing are installed, so a second run is quick and offline.
set -eu

# libclang-rt-14-dev holds clang's libFuzzer and sanitizer runtimes; clang
# only recommends it, and recommends are not installed here. nodejs runs
# tests/bench/forwarder.js, the comparison line of `make bench`. tcpdump
# captures the outer link in the tunnel scenarios; nmap's ssl-enum-ciphers
# checks the outbound HTTPS listener's TLS policy from outside. libjansson-dev
# parses the JSON data models (translate.c); python3-hl7 is the independent
# HL7 parser of the translation round trip (tests/translate/roundtrip.py).
# prometheus brings promtool (t_monitoring checks and runs the alert rules);
# lintian checks the .deb (t_package); nftables and systemd's
# systemd-analyze, sysusers and tmpfiles check rootfs/ (t_rootfs).
# libssh-dev: the file channels' SFTP client (sftpc.c); openssh-* for t_sftpc.
PKGS="build-essential pkg-config
      lintian
      libevent-dev libcurl4-openssl-dev libsqlite3-dev libyaml-dev libssl-dev check
      sqlite3 openssl curl nginx-light iproute2 util-linux procps clang libclang-rt-14-dev
      strongswan-charon strongswan-swanctl libstrongswan-standard-plugins
      libcharon-extra-plugins netcat-openbsd nodejs tcpdump nmap
      prometheus
      nftables systemd
      libjansson-dev python3-hl7
      libssh-dev openssh-server openssh-client"

# `deps.sh NAME PKG...` does the same for another list, in NAME's name
# (scripts/image-deps.sh: the VM image's host tools, not make check's).
WHO=deps
if [ $# -gt 0 ]; then
	WHO=$1
	shift
	PKGS="$*"
fi

missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
		missing="$missing $p"
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
	echo "$WHO: missing packages:$missing (run as root, or install them)" >&2
	exit 1
fi
echo "$WHO: installing$missing"
export DEBIAN_FRONTEND=noninteractive
# strongswan-starter (pulled in by strongswan-charon) and nginx would start
# their services on install: the tests start their own, in namespaces, and
# nothing may run on the host's network. policy-rc.d forbids it meanwhile.
POLICY=/usr/sbin/policy-rc.d
if [ ! -e "$POLICY" ]; then
	printf '#!/bin/sh\nexit 101\n' >"$POLICY"
	chmod 755 "$POLICY"
	trap 'rm -f "$POLICY"' EXIT
fi
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
