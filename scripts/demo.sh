#!/bin/bash
# make demo: the bridge between a hospital sender and a local HTTPS "cloud".
#
# Starts a test HTTPS receiver (TLS policy of the appliance, test CA),
# starts mllp-bridge in front of it, sends the sample messages over MLLP,
# and shows what the sender heard, what the cloud received, and /metrics.
# Everything runs on loopback and is stopped on exit.
set -u
BUILD=${BUILD:-build}
BIN=$BUILD/bin
SAMPLES=../shared/samples
[ -d "$SAMPLES" ] || SAMPLES=samples
DEMO=$(mktemp -d /tmp/mllp-demo.XXXXXX)
CERTS=$BUILD/test-certs
MLLP=9960 UP=18400 OBS=19100
PIDS=""

cleanup() {
	for p in $PIDS; do kill "$p" 2>/dev/null; done
	for p in $PIDS; do wait "$p" 2>/dev/null; done
	rm -rf "$DEMO"
}
trap cleanup EXIT INT TERM

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
wait_for() { for _ in $(seq 50); do "$@" 2>/dev/null && return 0; sleep 0.1; done; return 1; }

sh tests/tools/mkcerts.sh "$CERTS" || exit 1
cat >"$DEMO/appliance.yaml" <<EOF
gate: open # no tunnels: the bridge alone
spool: $DEMO/spool.db
observability: { listen: 127.0.0.1:$OBS }
integrations:
  - name: lab
    listen: 127.0.0.1:$MLLP
    sources: [127.0.0.0/8]
    match: { sending_facility: NORTHWIND_LAB }
    upstream: { url: "https://localhost:$UP/v1/hl7/lab", ca_file: $CERTS/ca.pem }
  - name: adt
    listen: 127.0.0.1:$MLLP
    sources: [127.0.0.0/8]
    upstream: { url: "https://localhost:$UP/v1/hl7/adt", ca_file: $CERTS/ca.pem }
EOF

say "Checking the configuration (mllp-bridge -n)"
"$BIN/mllp-bridge" -n -c "$DEMO/appliance.yaml" || exit 1

say "Starting the cloud side: an HTTPS receiver with the appliance's TLS policy"
mkdir -p "$DEMO/cloud"
"$BIN/https-sink" --listen 127.0.0.1:$UP --cert "$CERTS/server.pem" --key "$CERTS/server.key" \
	--tls policy --record "$DEMO/cloud" >"$DEMO/sink.out" 2>&1 &
PIDS="$PIDS $!"
wait_for grep -q listening "$DEMO/sink.out" || { cat "$DEMO/sink.out"; exit 1; }

say "Starting mllp-bridge (MLLP on 127.0.0.1:$MLLP, metrics on :$OBS)"
"$BIN/mllp-bridge" -c "$DEMO/appliance.yaml" 2>"$DEMO/bridge.log" &
PIDS="$PIDS $!"
wait_for bash -c "exec 3<>/dev/tcp/127.0.0.1/$MLLP" || { cat "$DEMO/bridge.log"; exit 1; }

for f in adt_a01_v251.hl7 oru_r01_enhanced_ack.hl7 adt_a08_latin1.hl7 x12_270.x12 \
	ccd_minimal.xml bad_no_control_id.hl7; do
	say "Hospital sends $f; it hears:"
	"$BIN/mllp-send" 127.0.0.1:$MLLP "$SAMPLES/$f" | sed 's/ | /\n   /g; s/^/   /'
done

say "Sending 2,000 messages over 8 connections (mllp-load)"
"$BIN/mllp-load" -t 127.0.0.1:$MLLP -c 8 -n 2000 -p 4 --bind-from 127.0.0.2

for _ in $(seq 100); do
	[ "$(wc -l <"$DEMO/cloud/requests.log" 2>/dev/null)" -ge 2005 ] && break
	sleep 0.1
done
say "The cloud received $(wc -l <"$DEMO/cloud/requests.log") requests; the first five:"
printf '   %-4s %-9s %-10s %-38s %s\n' seq path msh-10 idempotency-key content-type
head -n 5 "$DEMO/cloud/requests.log" |
	awk -F'\t' '{printf "   %-4s %-9s %-10s %-38s %s\n", $1, substr($3, 9), $11, $4, $7}'
say "TLS connections the bridge opened to the cloud:"
sed 's/^/   /' "$DEMO/cloud/connections.log"

say "A few lines of /metrics"
curl -s http://127.0.0.1:$OBS/metrics |
	grep -E '^mllp_(acks_total\{.*code="(AA|CA|AR)"|delivered_total|spool_depth|spool_commits_total|spool_commit_rows_total|upstream_connections_total|upstream_requests_total)' |
	sed 's/^/   /'

say "The bridge's log (no patient data in it)"
head -n 12 "$DEMO/bridge.log" | sed 's/^/   /'
echo
echo "Demo finished; everything it started has been stopped."
