#!/bin/bash
# tests/bench/profile.sh: one bench-like run of the bridge for looking inside
# it: nginx (the bench's nginx.conf.in, or a variant), the bridge, and
# mllp-load from one source address with 8 feeds x 200 patients. Prints the
# load's summary, a few /metrics lines and each process's CPU seconds; with
# PERF=1 also records a profile (perf record) of the bridge.
#
#   sh tests/bench/profile.sh                              # full speed, 5 s
#   LOAD="-r 5000 -d 10" sh tests/bench/profile.sh         # latency at a fixed rate
#   BLACKHOLE=1 sh tests/bench/profile.sh                  # acknowledging alone: the
#                                                          # upstream accepts TCP, never answers
#   VARIANT=close HTTP=2 sh tests/bench/profile.sh         # nginx variant, HTTP version
#   PERF=1 PERFARGS="--call-graph dwarf" sh tests/bench/profile.sh; perf report -i DIR/perf.data
#
# Environment: BUILD (build), ORDER (patient), ACK (commit), HTTP (2),
# VARIANT (plain|early|goaway|close, as in run.sh), LOAD (mllp-load
# arguments, default "-d 5"), BLACKHOLE, PERF, PERFARGS, KEEP=1 keeps DIR.
# Loopback only; ports 10960 (MLLP), 18460 (nginx), 18461 (black hole),
# 19160 (metrics). Every process started here is stopped by PID.
set -u
BUILD=${BUILD:-build}
B=$BUILD/bin
here=$(dirname "$0")
DIR=$(mktemp -d "${TMPDIR:-/tmp}/mllp-profile.XXXXXX") || exit 1
pids=""

cleanup() {
	for p in $pids; do kill "$p" 2>/dev/null; done
	for p in $pids; do wait "$p" 2>/dev/null; done
	if [ "${KEEP:-0}" = 1 ] || [ -n "${PERF:-}" ]; then
		echo "profile: files in $DIR"
	else
		rm -rf "$DIR"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

variant() {
	case ${VARIANT:-plain} in
	plain) echo '' ;;
	early) echo '/#READ$/d; s/#EARLY //' ;;
	goaway) echo '/#RAISED$/d' ;;
	close) echo 's/#CLOSE //' ;;
	*) echo "profile: unknown VARIANT" >&2 && exit 2 ;;
	esac
}

cpu() { awk '{printf "%.2f", ($14 + $15) / 100}' "/proc/$1/stat" 2>/dev/null; }

sh tests/tools/mkcerts.sh "$DIR" >/dev/null 2>&1 || exit 1
mkdir -p "$DIR/www"
sed -e "s#@DIR@#$DIR#g" -e "s#@PORT@#18460#g" -e "s#@LOG@#$DIR/access.log#g" \
	-e "$(variant)" "$here/nginx.conf.in" >"$DIR/nginx.conf"
nginx -c "$DIR/nginx.conf" -p "$DIR/" >"$DIR/nginx.out" 2>&1 &
NGINX=$!
pids="$pids $NGINX"
UP=18460
if [ -n "${BLACKHOLE:-}" ]; then
	# Accepts and holds every connection: the TLS handshake never ends.
	python3 -c 'import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 18461)); s.listen(4096); held = []
while True: held.append(s.accept()[0])' &
	pids="$pids $!"
	UP=18461
fi
cat >"$DIR/bridge.yaml" <<EOF
gate: open # no tunnels: the bridge alone
spool: $DIR/spool.db
observability: { listen: 127.0.0.1:19160 }
integrations:
  - name: bench
    listen: 127.0.0.1:10960
    sources: [127.0.0.0/8]
    ack: ${ACK:-commit}
    order: ${ORDER:-patient}
    upstream: { url: https://localhost:$UP/v1/hl7, ca_file: $DIR/ca.pem, timeout: 10s, http: ${HTTP:-2} }
EOF
"$B/mllp-bridge" -c "$DIR/bridge.yaml" 2>"$DIR/bridge.log" &
BRIDGE=$!
pids="$pids $BRIDGE"
sleep 1
if [ -n "${PERF:-}" ]; then
	perf record ${PERFARGS:--g} -o "$DIR/perf.data" -p "$BRIDGE" 2>/dev/null &
	PERF_PID=$!
fi
# shellcheck disable=SC2086
"$B/mllp-load" -t 127.0.0.1:10960 -c 32 -s 1024 --feeds 8 --patients 200 ${LOAD:--d 5}
sleep 0.5
curl -s http://127.0.0.1:19160/metrics | grep -E '^mllp_(delivered_total|upstream_requests_total|spool_commits_total|spool_commit_rows_total|spool_commit_seconds_sum|upstream_connections_total|upstream_tls_resumed_total|upstream_http2_avoided)'
echo "cpu_seconds bridge=$(cpu "$BRIDGE") nginx=$(for p in $NGINX $(pgrep -P "$NGINX"); do cpu "$p"; echo -n " "; done)"
if [ -n "${PERF:-}" ]; then
	kill -INT "$PERF_PID"
	wait "$PERF_PID"
fi
