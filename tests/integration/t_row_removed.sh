#!/bin/bash
# Rows removed from the spool by hand while their POSTs are in flight: the
# answers to those POSTs find no row to mark, and that must cost nothing
# else. (Before the commit module owned spool errors, each such mark failed
# the open batch: 1,563 committed messages were answered AR and resent
# under new keys.)
. tests/integration/lib.sh

MLLP=10969 UP=18449 OBS_PORT=19149 MLLP_FAST=10958 UP_FAST=18458
CONF=$TMP/bridge.yaml
cat >"$CONF" <<EOF
gate: open # no tunnels: the bridge alone
spool: $TMP/spool.db
observability: { listen: 127.0.0.1:$OBS_PORT }
integrations:
  - name: lab
    listen: 127.0.0.1:$MLLP
    sources: [127.0.0.0/8]
    order: patient
    upstream: { url: "https://localhost:$UP/v1", ca_file: $CERTS/ca.pem, timeout: 5s }
  - name: fast
    listen: 127.0.0.1:$MLLP_FAST
    sources: [127.0.0.0/8]
    upstream: { url: "https://localhost:$UP_FAST/v1", ca_file: $CERTS/ca.pem, timeout: 5s }
EOF
start_bridge "$CONF" $MLLP || exit 1
# Every answer comes 1 s after its request: time to remove the rows.
start_sink up $UP --delay-ms 1000 || exit 1
# Another integration, another upstream that answers at once: its messages
# share the group commits with the first one's marks.
start_sink fast $UP_FAST || exit 1

# Fewer than the 32 connections an HTTP/1.1 upstream gets: all in flight at once.
for i in $(seq -w 1 30); do hl7_msg "GONE$i" >"$TMP/gone$i.hl7"; done
"$BIN/mllp-send" 127.0.0.1:$MLLP "$TMP"/gone*.hl7 >"$TMP/gone.out"
expect "30 messages acknowledged" test "$(grep -c 'MSA|AA|GONE' "$TMP/gone.out")" -eq 30
expect "their 30 requests are in flight" wait_until 5 'test "$(sink_count up)" -eq 30'
removed=$(sqlite3 -cmd '.timeout 5000' "$TMP/spool.db" \
	"DELETE FROM messages WHERE control_id LIKE 'GONE%'; SELECT changes();")
expect "the operator removed their 30 rows ($removed)" test "$removed" = 30

# Messages keep coming, in many batches, while the 30 answers arrive and
# find no rows.
"$BIN/mllp-load" -t 127.0.0.1:$MLLP_FAST -c 16 -n 4000 -r 4000 -s 512 --id-prefix KEPT \
	--feeds 2 --patients 50 >"$TMP/kept.out" 2>&1
cat "$TMP/kept.out" | sed 's/^/# /'
expect "every message sent meanwhile was acknowledged, none refused" \
	grep -q "sent=4000 acked=4000 nak=0 unacked=0 errors=0" "$TMP/kept.out"
expect "the answers to the removed rows came while messages were being stored" \
	test "$(grep -c 'event=spool_row_missing id=[0-9]* change=delivered' "$TMP/bridge.log")" -eq 30
expect "no commit failed" test "$(metric mllp_spool_commit_failures_total)" -eq 0
expect "everything sent meanwhile is delivered" \
	wait_until 30 'test "$(metric mllp_delivered_total)" -eq 4030'
finish
