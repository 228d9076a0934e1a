#!/bin/bash
# Invariant 2: kill -9 the bridge at random moments under load, restart it,
# and every message that was acknowledged still reaches the upstream
# (duplicates allowed, with the same Idempotency-Key).
. tests/integration/lib.sh

MLLP=10965 UP=18445 OBS_PORT=19145 KILLS=${KILLS:-5}
CONF=$TMP/bridge.yaml
cat >"$CONF" <<EOF
gate: open # no tunnels: the bridge alone
spool: $TMP/spool.db
observability: { listen: 127.0.0.1:$OBS_PORT }
retry: { initial: 100ms, max: 1s }
integrations:
  - name: lab
    listen: 127.0.0.1:$MLLP
    sources: [127.0.0.0/8]
    upstream: { url: "https://localhost:$UP/v1", ca_file: $CERTS/ca.pem, timeout: 5s }
EOF
start_sink up $UP || exit 1
start_bridge "$CONF" $MLLP || exit 1

"$BIN/mllp-load" -t 127.0.0.1:$MLLP -c 8 -p 4 -r 1500 -d $((KILLS * 2 + 4)) -s 512 --bind-from 127.0.0.2 \
	--reconnect --acked "$TMP/acked" --id-prefix C >"$TMP/load.out" 2>&1 &
LOAD=$!
PIDS="$PIDS $LOAD"
for k in $(seq 1 "$KILLS"); do
	sleep "$(awk -v r=$RANDOM 'BEGIN {printf "%.2f", 0.8 + (r % 1200) / 1000}')"
	kill -9 "$BRIDGE_PID"
	wait "$BRIDGE_PID" 2>/dev/null
	PIDS=$(echo "$PIDS" | tr ' ' '\n' | grep -vx "$BRIDGE_PID" | tr '\n' ' ')
	start_bridge "$CONF" $MLLP || exit 1
done
wait "$LOAD"
acked=$(sort -u "$TMP/acked" | wc -l)
expect "the load generator had messages acknowledged ($acked)" test "$acked" -ge 100
expect "the bridge was killed $KILLS times" test "$(grep -c 'event=started' "$TMP/bridge.log")" -eq $((KILLS + 1))
expect "the spool drains" wait_until 60 'test "$(metric mllp_spool_depth)" -eq 0'
cut -f11 "$TMP/up/requests.log" | sort -u >"$TMP/received"
missing=$(sort -u "$TMP/acked" | comm -23 - "$TMP/received" | wc -l)
expect "every acknowledged message reached the upstream (missing: $missing of $acked)" test "$missing" -eq 0
dups_same_key() {
	awk -F'\t' '{print $11 "\t" $4}' "$TMP/up/requests.log" | sort -u |
		cut -f1 | uniq -d | grep -q . && return 1
	return 0
}
expect "duplicates, if any, carry the same Idempotency-Key" dups_same_key
per_sender_order() {
	# Within one sender, first deliveries follow the sequence numbers.
	awk -F'\t' '!seen[$11]++ {print $11}' "$TMP/up/requests.log" |
		awk -F- '{ if (($2 in last) && $3 + 0 < last[$2]) bad = 1; last[$2] = $3 + 0 } END {exit bad}'
}
expect "first deliveries are in order per connection" per_sender_order
finish
