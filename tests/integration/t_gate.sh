#!/bin/bash
# Fail closed, the bridge's side (invariant 3), on loopback only. The tunnel
# `lo` says 127.0.0.0/8 is the hospital: plain MLLP from there passes only
# while the supervisor reports an installed CHILD_SA covering the peer, and
# HTTPS never goes there. The supervisor here is tests/tools/ipc-send, which
# runs the bridge on a socketpair and sends what stdin tells it to.
#   1. gate: closed, no supervisor: every connection refused, said once at
#      start and counted; nothing stored.
#   2. gate: open, no supervisor: served as before.
#   3. with the link: refused before any GATE, served after one, an open
#      connection aborted when a GATE drops its peer; /metrics shows the
#      tunnels; STATUS reaches the supervisor; the upstream, a host name
#      that resolves into the tunnel, is never connected to; closing the
#      link stops the bridge cleanly and every ACKed message is in the spool.
#   4. a bad datagram loses the link; the next bridge finds the spool intact.
. tests/integration/lib.sh

MLLP=10980 MLLP_OPEN=10981 UP=18480 OBS_PORT=19180
CONF=$TMP/bridge.yaml

# gate_conf FILE: one integration behind the tunnel `lo`; gate left at its
# default (closed); the upstream is `localhost`, a name (the configuration
# refuses only address literals inside a remote_ts).
gate_conf() {
	cat >"$1" <<EOF
spool: $TMP/spool.db
observability: { listen: 127.0.0.1:$OBS_PORT }
tunnels:
  - name: lo
    source: swanctl
    children:
      - name: lo-mllp
        local_ts: [127.0.0.0/8]
        remote_ts: [127.0.0.0/8]
integrations:
  - name: lab
    listen: 127.0.0.1:$MLLP
    sources: [127.0.0.0/8]
    upstream: { url: "https://localhost:$UP/v1", ca_file: $CERTS/ca.pem, timeout: 5s }
EOF
}

send() { "$BIN/mllp-send" -t 2000 127.0.0.1:$1 "$2"; }
rows() { sqlite3 -cmd '.timeout 5000' "$TMP/spool.db" "select count(*) from messages"; }
stored() { sqlite3 -cmd '.timeout 5000' "$TMP/spool.db" "select control_id from messages" | sort; }
logged() { grep -c "event=$1" "$TMP/bridge.log"; }
page() { curl -sf --max-time 5 "http://127.0.0.1:$OBS_PORT/metrics"; }
# Rows whose last error names the tunnel the upstream resolved into.
WHY="Permission denied: upstream address 127.0.0.1 is inside tunnel lo''s remote_ts 127.0.0.0/8"
tunnel_errors() {
	sqlite3 -cmd '.timeout 5000' "$TMP/spool.db" \
		"select count(*) from messages where last_error like '$WHY%'" 2>/dev/null
}

hl7_msg CLOSED1 >"$TMP/closed1.hl7"
hl7_msg OPEN1 >"$TMP/open1.hl7"
hl7_msg LINK0 >"$TMP/link0.hl7"
hl7_msg LINK1 >"$TMP/link1.hl7"
hl7_msg AFTER1 >"$TMP/after1.hl7"
start_sink up $UP || exit 1

# ---- 1. gate: closed, no supervisor -------------------------------------

gate_conf "$CONF"
expect "gate closed with a tunnel and no gate key: a valid configuration" \
	"$BIN/mllp-bridge" -n -c "$CONF"
start_bridge "$CONF" $MLLP || exit 1
before=$(metric 'mllp_connections_refused_total\{limit="gate"\}')
out=$(send $MLLP "$TMP/closed1.hl7")
rc=$?
expect "closed, no supervisor: the sender gets no answer" test "$rc" -ne 0 -a -z "$out"
expect "closed, no supervisor: the refusal is counted (limit=gate)" \
	test "$(metric 'mllp_connections_refused_total\{limit="gate"\}')" -gt "$before"
expect "closed, no supervisor: the refusal is logged with the peer" \
	grep -q 'event=connection_refused peer=127.0.0.1:[0-9]* limit=gate' "$TMP/bridge.log"
expect "closed, no supervisor: said once at start, with the way out" \
	test "$(grep -c 'event=gate_closed_no_supervisor.*set gate: open' "$TMP/bridge.log")" -eq 1
expect "closed, no supervisor: mllp_gate_open 0, no CIDR, no link" \
	test "$(metric mllp_gate_open)" -eq 0 -a "$(metric mllp_gate_cidrs)" -eq 0 \
	-a "$(metric mllp_supervisor_link_up)" -eq 0
m=$(page)
expect "closed, no supervisor: no appliance_* metrics without a link" \
	test -n "$m" -a "$(grep -c '^appliance_' <<<"$m")" -eq 0
expect "closed, no supervisor: nothing stored" test "$(rows)" -eq 0
stop_pid "$BRIDGE_PID"

# ---- 2. gate: open, no supervisor ---------------------------------------

lab_conf "$TMP/open.yaml" $MLLP_OPEN $UP $OBS_PORT
CONF=$TMP/open.yaml
rm -f "$TMP"/spool.db*
: >"$TMP/bridge.log"
start_bridge "$CONF" $MLLP_OPEN || exit 1
expect "open, no supervisor: served (AA)" grep -q 'MSA|AA|OPEN1' <<<"$(send $MLLP_OPEN "$TMP/open1.hl7")"
expect "open, no supervisor: mllp_gate_open 1, nothing refused by the gate" \
	test "$(metric mllp_gate_open)" -eq 1 \
	-a "$(metric 'mllp_connections_refused_total\{limit="gate"\}')" -eq 0
expect "open, no supervisor: no gate_closed_no_supervisor line" \
	test "$(logged gate_closed_no_supervisor)" -eq 0
wait_until 10 '[ "$(sink_count up)" -ge 1 ]'
expect "open, no supervisor: delivered upstream" test "$(sink_count up)" -eq 1
stop_pid "$BRIDGE_PID"
rm -f "$TMP"/spool.db*

# ---- 3. with the supervisor link ----------------------------------------

# start_linked: ipc-send runs the bridge with -S; commands go to fd 3.
start_linked() {
	rm -f "$TMP/ctl"
	mkfifo "$TMP/ctl"
	"$BIN/ipc-send" "$BIN/mllp-bridge" -c "$CONF" <"$TMP/ctl" >"$TMP/ipc.out" \
		2>>"$TMP/bridge.log" &
	LINK_PID=$!
	PIDS="$PIDS $LINK_PID"
	exec 3>"$TMP/ctl"
	wait_until 10 'grep -q "event=started" "$TMP/bridge.log"' || {
		echo "# linked bridge did not start:"
		tail -n 20 "$TMP/bridge.log"
		return 1
	}
}
# stop_linked: closes the link (stdin's end), waits for ipc-send; $link_rc.
stop_linked() {
	(echo close >&3) 2>/dev/null # a subshell: ipc-send may be gone (SIGPIPE)
	exec 3>&-
	wait "$LINK_PID"
	link_rc=$?
	PIDS=$(echo "$PIDS" | tr ' ' '\n' | grep -vx "$LINK_PID" | tr '\n' ' ')
}

gate_conf "$CONF"
: >"$TMP/bridge.log"
start_linked || exit 1
expect "linked: the bridge says it has a supervisor" \
	grep -q 'event=supervisor_link fd=' "$TMP/bridge.log"
expect "linked: no gate_closed_no_supervisor line" test "$(logged gate_closed_no_supervisor)" -eq 0
expect "linked, before any GATE: refused" test -z "$(send $MLLP "$TMP/link0.hl7")"
expect "linked: mllp_supervisor_link_up 1" test "$(metric mllp_supervisor_link_up)" -eq 1
wait_until 5 'grep -q "^status n=1 lab:0:0:0" "$TMP/ipc.out"'
expect "linked: STATUS reaches the supervisor at once" grep -q '^status n=1 lab:0:0:0' "$TMP/ipc.out"

echo "gate 203.0.113.64/26 127.0.0.1/32" >&3
wait_until 5 'grep -q "event=gate_changed generation=1 cidrs=2" "$TMP/bridge.log"'
expect "GATE applied and logged" grep -q 'event=gate_changed generation=1 cidrs=2' "$TMP/bridge.log"
expect "GATE: mllp_gate_cidrs 2" test "$(metric mllp_gate_cidrs)" -eq 2
expect "a peer inside the GATE is served (AA)" \
	grep -q 'MSA|AA|LINK1' <<<"$(send $MLLP "$TMP/link1.hl7")"

echo "tunnels 3 lo:1:21:14:1790000000 other:0:0:0:1790000100" >&3
wait_until 5 'curl -sf "http://127.0.0.1:$OBS_PORT/metrics" | grep -q "^appliance_tunnel_up"'
expect "TUNNELS: appliance_tunnel_up per tunnel" \
	test "$(metric 'appliance_tunnel_up\{tunnel="lo"\}')" -eq 1 \
	-a "$(metric 'appliance_tunnel_up\{tunnel="other"\}')" -eq 0
expect "TUNNELS: appliance_sa_dh_group for IKE and CHILD" \
	test "$(metric 'appliance_sa_dh_group\{tunnel="lo",sa="ike"\}')" -eq 21 \
	-a "$(metric 'appliance_sa_dh_group\{tunnel="lo",sa="child"\}')" -eq 14
expect "TUNNELS: appliance_tunnel_last_change_seconds" \
	test "$(metric 'appliance_tunnel_last_change_seconds\{tunnel="other"\}')" -eq 1790000100
expect "TUNNELS: appliance_bridge_restarts_total" \
	test "$(metric appliance_bridge_restarts_total)" -eq 3

# An open connection with an answered message, then the GATE drops its peer.
exec 4<>/dev/tcp/127.0.0.1/$MLLP
printf '\013%s\034\r' "$(hl7_msg HELD1)" >&4
IFS= read -r -t 3 -d $'\034' -u 4 ack
expect "held connection: answered (AA)" grep -q 'MSA|AA|HELD1' <<<"$ack"
expect "held connection: open" test "$(metric mllp_connections_open)" -eq 1
echo "gate 203.0.113.64/26" >&3
wait_until 5 '[ "$(metric "mllp_connections_closed_total")" -ge 1 ]'
expect "GATE without the peer: its open connection closed, counted (tunnel_down)" \
	test "$(metric 'mllp_connections_closed_total\{reason="tunnel_down"\}')" -eq 1 \
	-a "$(metric mllp_connections_open)" -eq 0
expect "GATE without the peer: logged with the peer" \
	grep -q 'event=conn_closed_tunnel_down peer=127.0.0.1:' "$TMP/bridge.log"
IFS= read -r -t 3 -u 4 rest
rc=$?
expect "GATE without the peer: the sender sees its connection end (not a timeout)" \
	test "$rc" -gt 0 -a "$rc" -lt 128
exec 4<&-
expect "GATE without the peer: a new connection is refused" \
	test -z "$(send $MLLP "$TMP/after1.hl7")"

# HTTPS never into the tunnel: localhost resolves into lo's remote_ts.
wait_until 10 '[ "$(metric mllp_upstream_in_tunnel_total)" -ge 1 ]'
expect "upstream inside the tunnel: refused, counted" \
	test "$(metric mllp_upstream_in_tunnel_total)" -ge 1
expect "upstream inside the tunnel: logged" \
	grep -q 'event=upstream_in_tunnel address=127.0.0.1 tunnel=lo remote_ts=127.0.0.0/8' \
	"$TMP/bridge.log"
expect "upstream inside the tunnel: the sink saw nothing" test "$(sink_count up)" -eq 1
wait_until 5 '[ "$(tunnel_errors)" -ge 1 ]'
expect "upstream inside the tunnel: a clear last error, retried later" \
	test "$(tunnel_errors)" -ge 1
wait_until 5 'grep -q "^status n=1 lab:2:[1-9][0-9]*:0" "$TMP/ipc.out"'
expect "STATUS: depth 2 and the oldest message's age reach the supervisor" \
	grep -q '^status n=1 lab:2:[1-9][0-9]*:0' "$TMP/ipc.out"

stop_linked
expect "link closed: ipc-send and the bridge exit 0" test "$link_rc" -eq 0
expect "link closed: the bridge exited cleanly" grep -q '^exited status=0' "$TMP/ipc.out"
expect "link closed: supervisor_link_lost with the reason, then stopped" \
	grep -q 'event=supervisor_link_lost reason="end of file' "$TMP/bridge.log"
expect "link closed: stopped" grep -q 'event=stopped' "$TMP/bridge.log"
expect "nothing ACKed is lost: LINK1 and HELD1 in the spool, nothing else" \
	test "$(stored | tr '\n' ' ')" = "HELD1 LINK1 "

# ---- 4. a bad datagram ----------------------------------------------------

: >"$TMP/bridge.log"
start_linked || exit 1
expect "the next bridge finds both messages pending" \
	grep -q 'event=spool_loaded pending=2' "$TMP/bridge.log"
echo "raw 02010000" >&3 # version 2
wait_until 5 'grep -q "^exited" "$TMP/ipc.out"'
expect "bad datagram: the link is lost with the reason" \
	grep -q 'event=supervisor_link_lost reason="bad message (4 bytes)' "$TMP/bridge.log"
expect "bad datagram: the bridge stops cleanly" grep -q '^exited status=0' "$TMP/ipc.out"
stop_linked
expect "bad datagram: nothing lost" test "$(stored | tr '\n' ' ')" = "HELD1 LINK1 "

finish
