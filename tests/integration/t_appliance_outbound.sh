#!/bin/bash
# Outbound through a real tunnel (issue 10, "Scenario through a real
# tunnel"). The supervisor runs in the edge namespace with its charon; the
# hospital's charon accepts DH 21 only; mllp-recv (the hospital's LIS) listens
# on 203.0.113.65:2575 and answers every message 100 ms late. The cloud posts
# 30 messages (MSH-10 OB01..OB30, in order) to the outbound API, which listens
# on 127.0.0.1 inside the edge namespace (outside every local_ts); the
# destination lis (203.0.113.65:2575, ack_timeout 2s) lies in the tunnel's
# remote_ts.
#
#   up      OB01..OB15 posted (202 + Location each); once 10 have arrived
#   cut     the hospital unloads its connection and terminates the IKE_SA.
#           For 3 s nothing arrives, /metrics shows the sender waiting for
#           the gate (mllp_out_waiting_gate 1, gate waits counted,
#           mllp_out_queued = 30 - acked > 0), appliancectl status says the
#           same, and OB16..OB30 posted meanwhile still get 202.
#   back    the hospital loads its connection again; the tunnel comes back
#           and the queue drains: the receiver has all 30 MSH-10s, first
#           arrivals in post order (the one in flight at the cut may come a
#           second time, right after its first arrival), every GET says
#           acked with the receiver's AA.
#   wire    tcpdump -Q out on the outer link of both namespaces for the whole
#           run: IKE and ESP-in-UDP (and ARP) only, not one TCP segment, no
#           cleartext HL7.
#
# Topology and helpers: appliance-lib.sh. The namespaces carry this
# scenario's own suffix, ports are private to them, files are in mktemp
# directories: it can run beside the other t_appliance_* scenarios.
# Observed here (2 cores, kernel-libipsec): 13-14 s in all (also with both
# cores kept busy): the supervisor's initiate backoff (1, 2, 4 s) brings the
# tunnel back ~4 s after the hospital reloads, ~7.5 s after the cut; the 20
# waiting messages drain in ~1.7 s (100 ms ACK delay each).
CH_SUFFIX=${CH_SUFFIX:-aob-$$}
. "$(dirname "$0")/appliance-lib.sh"

T0=$(date +%s%3N)
ap_setup tcpdump curl "$BIN_ABS/mllp-recv"
# ap_setup's heartbeat listener (nc, its last ns_bg) holds 203.0.113.65:2575,
# where the LIS listens here: stop it by its PID.
# (ip netns exec may not have exec'd it yet)
if wait_until 5 'test "$(cat "/proc/$NS_BG_PID/comm" 2>/dev/null)" = nc'; then
	ch_kill_pid "$NS_BG_PID"
else
	fail "setup: the heartbeat nc (PID $NS_BG_PID) is not where appliance-lib.sh left it"
	exit 1
fi

T=hospital-o
DH21_IKE=aes256gcm16-prfsha384-ecp521 DH21_ESP=aes256gcm16-ecp521
PEER_SPEC="$T:$DH21_IKE:$DH21_ESP"
N=30 FIRST=15 CUT_AFTER=10
API_PORT=9443
API=https://127.0.0.1:$API_PORT
TOKEN=aob-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
RECV_LOG=$TMP/recv.log
LIS=203.0.113.65:$AP_HEARTBEAT_PORT

# --- configuration: the lib's file, plus ack_timeout and the API ------------------
printf '# outbound API token for this scenario\n%s lis\n' "$TOKEN" >"$AP_DIR/outbound.tokens"
chown nobody "$AP_DIR/outbound.tokens"
chmod 600 "$AP_DIR/outbound.tokens"
ap_conf "$AP_CONF" "$(ap_tunnel "$T" appliance "$DH21_IKE" "$DH21_ESP")"
sed -i "s|^    address: $LIS\$|&\n    ack_timeout: 2s|" "$AP_CONF"
cat >>"$AP_CONF" <<EOF
https:
  listen: 127.0.0.1:$API_PORT
  cert: $CERTS_ABS/server.pem
  key: $CERTS_ABS/server.key
  tokens_file: $AP_DIR/outbound.tokens
EOF
expect "config: destination lis $LIS with ack_timeout 2s" \
	grep -qx '    ack_timeout: 2s' "$AP_CONF"
run_check "config: appliance -n accepts it (API on 127.0.0.1, lis inside remote_ts)" 0 \
	'configuration is valid' "$APPLIANCE" -n -c "$AP_CONF"

# --- helpers ----------------------------------------------------------------------------
id_of() { printf 'OB%02d\n' "$1"; }
ms() { date +%s%3N; }
# The receiver's message lines: <seq> <conn#> <peer> <MSH-10> <bytes> <unix_ms>.
msgs() { awk '$1 ~ /^[0-9]+$/' "$RECV_LOG" 2>/dev/null; }
arrivals() { msgs | grep -c .; }
distinct() { msgs | awk '!seen[$4]++ { n++ } END { print n + 0 }'; }
# api CURL_ARGS...: curl against the API from inside the edge namespace.
api() {
	ip netns exec "$NS_GW" curl -s --max-time 10 --cacert "$CERTS_ABS/ca.pem" \
		-H "Authorization: Bearer $TOKEN" "$@"
}
# post I: POST message I; one line "I CODE ID UNIX_MS" in $TMP/posts.txt;
# true on 202 with a Location.
post() {
	local id code loc
	id=$(id_of "$1")
	hl7_msg "$id" CLOUD >"$TMP/msg-$id.hl7"
	code=$(api -H 'Content-Type: x-application/hl7-v2+er7' \
		--data-binary @"$TMP/msg-$id.hl7" -D "$TMP/post-$id.hdr" -o "$TMP/post-$id.body" \
		-w '%{http_code}' "$API/v1/destinations/lis/messages")
	loc=$(tr -d '\r' <"$TMP/post-$id.hdr" 2>/dev/null |
		awk 'tolower($1) == "location:" { print $2 }')
	echo "$1 $code ${loc##*/} $(ms)" >>"$TMP/posts.txt"
	[ "$code" = 202 ] && [[ $loc =~ ^/v1/messages/[0-9]+$ ]]
}
# post_range A B: posts A..B in order; prints the numbers that did not get 202.
post_range() {
	local i bad=""
	for i in $(seq "$1" "$2"); do
		post "$i" || bad="$bad $(id_of "$i")"
	done
	echo "$bad"
}
met() { ap_metric "$1{destination=\"lis\"}"; }
# no_arrival_after MS: the receiver logged no message after unix time MS.
arrived_after() { msgs | awk -v t="$1" '$6 > t' | grep -c .; }

# --- the hospital: its LIS, its charon; the captures; the supervisor ---------------------
ANSWER_LOG=""
"$BIN_ABS/mllp-recv" -h 2>&1 | grep -q -- --answer-log && ANSWER_LOG=--answer-log
ns_bg "$NS_PEER" "$BIN_ABS/mllp-recv" -l "$LIS" -o "$RECV_LOG" --delay 100 --idle-log \
	$ANSWER_LOG >"$TMP/recv.out" 2>&1 </dev/null
wait_until 10 'grep -q listening "$TMP/recv.out"' ||
	{ fail "mllp-recv on $LIS in $NS_PEER did not start" "$(head -c 300 "$TMP/recv.out")"; exit 1; }
capture_start gw "$NS_GW" || exit 1
capture_start peer "$NS_PEER" || exit 1
ap_peer_load "$PEER_SPEC" || fail "the hospital's swanctl --load-all" "$(tail -n 3 "$TMP/swanctl.log")"
ap_start || exit 1
expect "up: the tunnel is up with DH 21 (IKE ECP_521, child INSTALLED)" \
	ap_wait 30 "tun('$T')['up'] and tun('$T')['ike']['dh_group'] == 21 and
		child('$T', '$T-net')['state'] == 'INSTALLED'"
expect "up: the outbound API answers in the edge namespace (unknown message: 404)" \
	wait_until 10 'test "$(api -o /dev/null -w "%{http_code}" "$API/v1/messages/999999")" = 404'
expect "up: /metrics: gate holds one CIDR, lis not waiting for it" \
	wait_until 5 'test "$(ap_metric mllp_gate_cidrs)" = 1 -a "$(met mllp_out_waiting_gate)" = 0'
T_UP=$(ms)

# --- up: the first posts -----------------------------------------------------------------
bad=$(post_range 1 "$FIRST")
expect "up: OB01..$(id_of "$FIRST") posted: 202 + Location each${bad:+ (not:$bad)}" test -z "$bad"
expect "up: $CUT_AFTER of them arrive at the LIS" wait_until 15 'test "$(distinct)" -ge $CUT_AFTER'
waits0=$(met mllp_out_gate_waits_total)

# --- cut: the hospital unloads its connection and ends the IKE_SA ------------------------------
T_CUT=$(ms)
n_cut=$(distinct)
ap_peer_load || fail "the hospital's swanctl --load-all (nothing)" "$(tail -n 3 "$TMP/swanctl.log")"
ch_swanctl peer --terminate --ike "$T" --timeout 5 >>"$TMP/swanctl.log" 2>&1
T_TERM=$(ms)
n_term=$(arrivals)
expect "cut: the supervisor reports the tunnel down" ap_wait 10 "not tun('$T')['up']"
expect "cut: /metrics: the gate holds no CIDR" wait_until 5 'test "$(ap_metric mllp_gate_cidrs)" = 0'
T_DOWN=$(ms)
echo "# cut after $n_cut distinct arrivals; terminate took $((T_TERM - T_CUT)) ms; status and /metrics showed it down $((T_DOWN - T_TERM)) ms later (polled)"

# --- down: the rest is posted; nothing leaves -----------------------------------------------
bad=$(post_range $((FIRST + 1)) "$N")
T_POSTED=$(ms)
expect "down: $(id_of $((FIRST + 1)))..$(id_of "$N") posted during the outage: 202 + Location each${bad:+ (not:$bad)}" \
	test -z "$bad"
expect "down: /metrics mllp_out_waiting_gate{destination=\"lis\"} 1" \
	wait_until 5 'test "$(met mllp_out_waiting_gate)" = 1'
waits1=$(met mllp_out_gate_waits_total)
expect "down: /metrics mllp_out_gate_waits_total{destination=\"lis\"} grew ($waits0 -> $waits1)" \
	awk -v a="$waits0" -v b="$waits1" 'BEGIN { exit !(a ~ /^[0-9]+$/ && b ~ /^[0-9]+$/ && b > a) }'
queued=$(met mllp_out_queued) acked=$(met mllp_out_acked_total)
expect "down: /metrics mllp_out_queued{destination=\"lis\"} $queued > 0 and = $N - acked ($acked)" \
	eval 'test "$queued" -gt 0 && test "$queued" -eq $((N - acked))'
expect "down: appliancectl status: destination lis waiting_gate, queued > 0, connected false" \
	ap_wait 5 "[d for d in s['destinations'] if d['name'] == 'lis' and d['waiting_gate']
		and d['queued'] > 0 and not d['connected']]"
echo "# status destinations: $(ap_q "s['destinations']")"
# the outage lasts 3 s from the terminate on
while [ "$(ms)" -lt $((T_TERM + 3000)) ]; do sleep 0.1; done
after=$(arrived_after "$T_TERM")
T_RELOAD=$(ms)
expect "down: no message arrived at the LIS for $(((T_RELOAD - T_TERM) / 1000)).$(((T_RELOAD - T_TERM) % 1000 / 100)) s after the terminate ($after arrivals, $n_term -> $(arrivals) lines)" \
	test "$after" -eq 0 -a "$(arrivals)" -eq "$n_term"
expect "down: the tunnel is still down after 3 s" ap_true "not tun('$T')['up']"
# The connection stays open between messages, so the cut finds one to close
# (a message in flight then is parked without a mllp_out_gate_wait line).
expect "down: the bridge logged mllp_out_closed_tunnel_down for lis" \
	grep -q "event=mllp_out_closed_tunnel_down destination=lis" "$AP_LOG"
echo "# bridge: $(grep -o 'event=mllp_out_closed_tunnel_down destination=lis in_flight=[01]' "$AP_LOG" |
	head -n 1), mllp_out_gate_wait lines: $(grep -c 'event=mllp_out_gate_wait destination=lis' "$AP_LOG")"

# --- back -------------------------------------------------------------------------------------
ap_peer_load "$PEER_SPEC" || fail "the hospital's swanctl --load-all" "$(tail -n 3 "$TMP/swanctl.log")"
expect "back: the supervisor brings the tunnel back (DH 21)" \
	ap_wait 40 "tun('$T')['up'] and tun('$T')['ike']['dh_group'] == 21 and
		child('$T', '$T-net')['state'] == 'INSTALLED'"
T_BACK=$(ms)
echo "# the tunnel was back $((T_BACK - T_RELOAD)) ms after the hospital reloaded (down $((T_BACK - T_TERM)) ms in all)"
expect "back: all $N MSH-10s arrive at the LIS" wait_until 30 'test "$(distinct)" -eq $N'
T_DRAINED=$(ms)
msgs >"$TMP/arrivals.txt"
first=$(awk '!seen[$4]++ { print $4 }' "$TMP/arrivals.txt" | tr '\n' ' ')
want=$(for i in $(seq "$N"); do id_of "$i"; done | tr '\n' ' ')
expect "back: first arrivals in post order (got: $first)" test "$first" = "$want"
dups=$(awk 'seen[$4]++ { print $4 }' "$TMP/arrivals.txt" | tr '\n' ' ')
last_before=$(awk -v t="$T_TERM" '$6 <= t { x = $4 } END { print x }' "$TMP/arrivals.txt")
echo "# arrivals: $(wc -l <"$TMP/arrivals.txt") lines, duplicates: ${dups:-none}; last before the cut: $last_before"
expect "back: a repeated MSH-10 is only the one in flight at the cut (${dups:-none}; in flight: $last_before)" \
	eval 'test -z "$dups" || test "$dups" = "$last_before "'
# Each arrival is the previous one again or the next one: never a skip,
# never an earlier one.
seqok=$(awk '{ i = substr($4, 3) + 0; if (NR > 1 && i != p && i != p + 1) bad = bad " " $4; p = i }
	END { print bad }' "$TMP/arrivals.txt")
expect "back: every arrival is the previous message again or the next one${seqok:+ (not:$seqok)}" \
	test -z "$seqok"
expect "back: a duplicate is byte-for-byte the same size" \
	test "$(awk '{ if (($4 in b) && b[$4] != $5) x++; b[$4] = $5 } END { print x + 0 }' "$TMP/arrivals.txt")" -eq 0
if [ -n "$ANSWER_LOG" ]; then
	ov=$(grep -c '^overlap ' "$RECV_LOG")
	expect "back: never two messages in flight to the LIS (mllp-recv overlap lines: $ov)" test "$ov" -eq 0
fi

# GET every message: one curl, one URL per message, one JSON object a line.
get_all() {
	local urls=() i
	while read -r _ _ i _; do urls+=("$API/v1/messages/$i"); done <"$TMP/posts.txt"
	api -w '\n' "${urls[@]}" >"$TMP/get.json"
	python3 - "$TMP/get.json" "$TMP/posts.txt" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
posts = [l.split() for l in open(sys.argv[2])]
bad = []
for (n, code, mid, _), r in zip(posts, rows):
    cid = "OB%02d" % int(n)
    if not (r.get("id") == int(mid) and r.get("destination") == "lis"
            and r.get("state") == "acked" and ("MSA|AA|" + cid) in (r.get("ack") or "")):
        bad.append("%s:%s" % (cid, r.get("state")))
if len(rows) != len(posts):
    bad.append("%d answers for %d posts" % (len(rows), len(posts)))
print(" ".join(bad))
sys.exit(1 if bad else 0)
EOF
}
expect "back: GET /v1/messages/{id}: all $N acked, each with the LIS's MSA|AA|<its MSH-10>" \
	wait_until 10 'get_all >"$TMP/get.bad"'
grep -q . "$TMP/get.bad" && echo "# GET: not acked: $(cat "$TMP/get.bad")"
echo "# note: GET attempts per message (attempts: count): $(python3 -c '
import json, sys, collections
c = collections.Counter(json.loads(l).get("attempts") for l in open(sys.argv[1]) if l.strip())
print(", ".join("%s: %d" % (k, v) for k, v in sorted(c.items(), key=str)))' "$TMP/get.json")"
expect "back: /metrics lis: queued 0, waiting_gate 0, acked $N, dead 0, rejected 0" \
	wait_until 5 'test "$(met mllp_out_queued)" = 0 -a "$(met mllp_out_waiting_gate)" = 0 -a \
		"$(met mllp_out_acked_total)" = $N -a "$(met mllp_out_dead_total)" = 0 -a \
		"$(met mllp_out_rejected_total)" = 0'
conns=$(awk '{ print $2 }' "$TMP/arrivals.txt" | sort -un | tr '\n' ' ')
echo "# messages came over mllp-recv connection(s) $conns(of $(grep -c '^open ' "$RECV_LOG") it accepted)"
echo "# connects $(met mllp_out_connects_total), sent $(met mllp_out_sent_total), retries $(met mllp_out_retries_total), transport errors $(met mllp_out_transport_errors_total), ack timeouts $(met mllp_out_ack_timeouts_total)"
ap_stop "outbound"

# --- the wire ----------------------------------------------------------------------------------
capture_stop gw
capture_stop peer
for c in gw peer; do
	f=$TMP/$c.pcap
	expect "$c capture: $f exists and tcpdump reported its count" \
		eval "test -s '$f' && grep -qE '^[0-9]+ packets? captured' '$TMP/$c.tcpdump'"
	capture_text "$c" >"$TMP/$c.txt"
	ike=$(grep -cE '\.500 > [0-9.]+\.500: isakmp|NONESP-encap: isakmp' "$TMP/$c.txt")
	esp=$(grep -c 'UDP-encap: ESP' "$TMP/$c.txt")
	tcp=$(tcpdump -r "$f" -nn tcp 2>/dev/null | grep -c .)
	other=$(capture_others "$c")
	hl7=$(grep -acF 'MSH|^~' "$f")
	all=$(grep -c . "$TMP/$c.txt")
	echo "# $c capture: $all packets: IKE $ike, ESP-in-UDP $esp, TCP $tcp, other than IKE/ESP/ARP $other"
	expect "$c capture: tcpdump saw the IKE exchanges, both tunnel set-ups ($ike packets)" test "$ike" -ge 8
	expect "$c capture: tcpdump saw ESP-in-UDP, at least one packet per message ($esp packets)" \
		test "$esp" -ge "$N"
	expect "$c capture: not one TCP segment ($tcp)" test "$tcp" -eq 0
	expect "$c capture: nothing but IKE, ESP-in-UDP and ARP ($other others)" test "$other" -eq 0
	expect "$c capture: no cleartext HL7 (MSH|^~ in the file: $hl7)" test "$hl7" -eq 0
done
T_END=$(ms)
echo "# timing: setup+up $(((T_UP - T0) / 1000)) s; first $FIRST posts + $CUT_AFTER arrivals $((T_CUT - T_UP)) ms; outage $((T_BACK - T_TERM)) ms (posts $((T_POSTED - T_DOWN)) ms); drain $((T_DRAINED - T_BACK)) ms; total $(((T_END - T0) / 1000)) s"
finish
