#!/bin/bash
# Invariant 1: a spool on a tiny tmpfs fills up; from then on senders get
# NAKs (AR with the reason), never an ACK for a message that is not stored.
# Every message that was ACKed is in the spool.
. tests/integration/lib.sh

MLLP=10966 UP=18446 OBS_PORT=19146
CONF=$TMP/bridge.yaml
mkdir -p "$TMP/small"
mount -t tmpfs -o size=2m tmpfs "$TMP/small" || { fail "mount a 2 MiB tmpfs (needs root)"; finish; }
MOUNTS="$TMP/small"
cat >"$CONF" <<EOF
gate: open # no tunnels: the bridge alone
spool: $TMP/small/spool.db
observability: { listen: 127.0.0.1:$OBS_PORT }
integrations:
  - name: lab
    listen: 127.0.0.1:$MLLP
    sources: [127.0.0.1]
    upstream: { url: "https://localhost:$UP/v1", ca_file: $CERTS/ca.pem }
EOF
start_bridge "$CONF" $MLLP || exit 1

# 8 KiB messages, no upstream: 2 MiB fills after a few hundred.
pad=$(head -c 8000 /dev/zero | tr '\0' 'x')
for i in $(seq -w 1 400); do
	printf 'MSH|^~\\&|APP|LAB|REDOX|CLOUD|20261129120000||ADT^A01|FULL%s|P|2.5.1\rNTE|1||%s\r' \
		"$i" "$pad" >"$TMP/f$i.hl7"
done
"$BIN/mllp-send" 127.0.0.1:$MLLP "$TMP"/f*.hl7 >"$TMP/answers"
acked=$(grep -o 'MSA|AA|FULL[0-9]*' "$TMP/answers" | cut -d'|' -f3 | sort)
naks=$(grep -c 'MSA|AR|' "$TMP/answers")
expect "every message got an answer" test "$(wc -l <"$TMP/answers")" -eq 400
expect "some were stored and ACKed ($(wc -w <<<"$acked"))" test -n "$acked"
expect "the full disk gave NAKs ($naks)" test "$naks" -gt 0
expect "each NAK says the spool is full" \
	test "$(grep 'MSA|AR|' "$TMP/answers" | grep -c 'disk is full')" -eq "$naks"
expect "the store failures are counted" test "$(metric mllp_store_failures_total)" -eq "$naks"
stop_pid "$BRIDGE_PID"
stored=$(sqlite3 "$TMP/small/spool.db" "select control_id from messages" | sort)
expect "every ACKed message is in the spool" \
	test -z "$(comm -23 <(echo "$acked") <(echo "$stored"))"
expect "no NAKed message is in the spool" \
	test "$(echo "$stored" | grep -c FULL)" -eq "$(wc -w <<<"$acked")"
finish
