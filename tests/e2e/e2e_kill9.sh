#!/bin/bash
# e2e_kill9.sh: issue 11, scenario 4 (invariants 1 and 2 through the real
# tunnel). "kill -9 of the bridge, then of charon on the edge, then of the
# supervisor, each under load: after recovery every acknowledged message
# was delivered."
#
# From a clean topology (e2e-lib.sh: hospital, edge, cloud), two loads run
# throughout:
#   inbound   mllp-load in the hospital from 203.0.113.65, one connection,
#             pipelined, --reconnect, one patient (the lab integration has
#             `order: patient`, so that is one lane), every commit-ACKed
#             control id written to $TMP/acked-in (--acked);
#   outbound  a poster in the cloud: one message after the other to the
#             edge's API for destination lis, each with its own
#             Idempotency-Key and sent again with that key until it gets a
#             2xx (as docs/api.md asks); "ID CODE TRIES MS" per message in
#             $TMP/posts.log.
# Then, each found by PID (the supervisor's status JSON, checked against its
# pid files and /proc/PID/comm inside the edge namespace; never by name):
#   1. kill -9 the bridge: the supervisor restarts it (backoff 1 s);
#   2. kill -9 the edge's charon: the supervisor restarts it, reloads and
#      initiates the tunnel (docs/appliance.md, "What it does", 1 and 3);
#   3. kill -9 the supervisor: its bridge sees the link close and stops; a
#      new supervisor (ap_start) adopts the running charon (charon.pid),
#      stops an orphan bridge (bridge.pid), starts a fresh bridge.
# After each: the new process is there, and both directions are served again
# within RESUME_MAX seconds (measured and printed). After the last one the
# loads stop, the spool drains, and:
#   - every inbound message mllp-load recorded as ACKed is at the cloud sink
#     (by MSH-10), a duplicate only with the same Idempotency-Key, and the
#     sink's arrivals keep send order (one lane; a resent message may come
#     again right after itself, nothing earlier after anything later);
#   - every outbound message answered 202/200 reached the LIS, in post order,
#     a repeat only of the same message (same MSH-10, byte-identical);
#   - the leak check of the captures (e2e_stop); the edge's ICMP port
#     unreachable while its charon is dead is e2e-lib's "gateways' ICMP".
#
# Run alone: BUILD=build bash tests/e2e/e2e_kill9.sh
cd "$(dirname "$0")/../.." || exit 1
. tests/e2e/e2e-lib.sh

RESUME_MAX=${RESUME_MAX:-10} # seconds from a kill until both directions move again
LOAD_RATE=100                # inbound messages a second (the tunnel carries far more)
STEADY=2                     # seconds of normal traffic between the phases

nlines() { grep -c . "$1" 2>/dev/null || echo 0; }

# The outbound client (runs in the background until $TMP/stop-posting).
poster() {
	local i=0 id code tries
	mkdir -p "$TMP/ob"
	while [ ! -e "$TMP/stop-posting" ]; do
		i=$((i + 1))
		id=$(printf 'OBK9-%04d' "$i")
		hl7_msg "$id" CLOUD >"$TMP/ob/$id.hl7"
		tries=0
		while :; do
			tries=$((tries + 1))
			code=$(ip netns exec "$NS_CLOUD" curl -s --max-time 5 --cacert "$CERTS_ABS/ca.pem" \
				-H "Authorization: Bearer $E2E_TOKEN" -H 'Content-Type: x-application/hl7-v2+er7' \
				-H "Idempotency-Key: k9-$id" --data-binary @"$TMP/ob/$id.hl7" \
				-o /dev/null -w '%{http_code}' "$E2E_API/v1/destinations/lis/messages")
			case $code in 202 | 200) break ;; esac
			[ -e "$TMP/stop-posting" ] && break
			sleep 0.2
		done
		echo "$id $code $tries $(now_ms)" >>"$TMP/posts.log"
		sleep 0.05
	done
}

# lis_count: arrivals of the poster's messages at the LIS (with repeats).
lis_count() { awk '$1 ~ /^[0-9]+$/ && index($4, "OBK9-") == 1' "$E2E_RECV_LOG" 2>/dev/null | grep -c .; }
acked_in() { nlines "$TMP/acked-in"; }
posted_ok() { awk '$2 == 202 || $2 == 200' "$TMP/posts.log" 2>/dev/null | grep -c .; }

# resumed NAME T_KILL: waits until both directions move again after a kill at
# T_KILL (ms): 5 more inbound ACKs than 0.5 s after the kill (mllp-load
# flushes its --acked file every 100 ms), and 2 more outbound arrivals at the
# LIS. Prints and records the times.
declare -A RESUME_IN=() RESUME_OUT=()
resumed() {
	local name=$1 tk=$2 in0 out0 end t
	sleep 0.5
	in0=$(acked_in) out0=$(lis_count)
	end=$((tk + RESUME_MAX * 1000))
	while [ "$(now_ms)" -lt "$end" ]; do
		t=$(now_ms)
		if [ -z "${RESUME_IN[$name]:-}" ] && [ "$(acked_in)" -ge $((in0 + 5)) ]; then
			RESUME_IN[$name]=$((t - tk))
		fi
		if [ -z "${RESUME_OUT[$name]:-}" ] && [ "$(lis_count)" -ge $((out0 + 2)) ]; then
			RESUME_OUT[$name]=$((t - tk))
		fi
		[ -n "${RESUME_IN[$name]:-}" ] && [ -n "${RESUME_OUT[$name]:-}" ] && break
		sleep 0.1
	done
	echo "# $name: inbound resumed after ${RESUME_IN[$name]:-never} ms, outbound after ${RESUME_OUT[$name]:-never} ms"
	e2e_expect "$name: inbound ACKs resume within $RESUME_MAX s (${RESUME_IN[$name]:-never} ms)" \
		test -n "${RESUME_IN[$name]:-}"
	e2e_expect "$name: outbound deliveries to the LIS resume within $RESUME_MAX s (${RESUME_OUT[$name]:-never} ms)" \
		test -n "${RESUME_OUT[$name]:-}"
}

T_START=$(now_ms)
e2e_setup 21
e2e_start
BRIDGE0=$(edge_pid mllp-bridge)
CHARON0=$(edge_pid charon)
SUP0=$(edge_pid appliance)
e2e_expect "start: bridge ($BRIDGE0), charon ($CHARON0) and supervisor ($SUP0) found by PID, the pid files agree" \
	test -n "$BRIDGE0" -a -n "$CHARON0" -a "$SUP0" = "$AP_PID" || exit 1

# --- the loads ------------------------------------------------------------------
: >"$TMP/acked-in"
: >"$TMP/posts.log"
ns_bg "$NS_HOSP" "$BIN_ABS/mllp-load" -t "$E2E_LAB" -c 1 -p 4 -r "$LOAD_RATE" -d 300 -s 600 \
	--bind-from 203.0.113.65 --reconnect --patients 1 --id-prefix K9 -T 3 \
	--acked "$TMP/acked-in" >"$TMP/load-in.out" 2>&1 </dev/null
LOAD_PID=$NS_BG_PID
poster &
POSTER_PID=$!
CH_BG_PIDS="$CH_BG_PIDS $POSTER_PID"
e2e_expect "load: inbound ACKs and outbound deliveries flow before the first kill" \
	wait_until 15 'test "$(acked_in)" -ge 100 -a "$(lis_count)" -ge 5' || exit 1
sleep "$STEADY"

# --- 1. the bridge -------------------------------------------------------------------
BRIDGE=$(edge_pid mllp-bridge)
echo "# kill -9 bridge $BRIDGE ($(acked_in) inbound ACKed, $(lis_count) outbound at the LIS)"
tk=$(now_ms)
kill -KILL "$BRIDGE"
e2e_expect "bridge: SIGKILLed ($BRIDGE) and gone" wait_until 5 "gone $BRIDGE"
e2e_expect "bridge: the supervisor starts a new one (status, pid file, /proc agree)" \
	wait_until 15 'B=$(edge_pid mllp-bridge 2>/dev/null) && test -n "$B" -a "$B" != "$BRIDGE"'
e2e_expect "bridge: status counts the restart" ap_wait 5 "s['bridge']['restarts'] >= 1 and s['bridge']['running']"
resumed bridge "$tk"
e2e_expect "bridge: charon ($CHARON0) and the supervisor were not touched" \
	test "$(edge_pid charon)" = "$CHARON0" -a "$(edge_pid appliance)" = "$SUP0"
sleep "$STEADY"

# --- 2. charon --------------------------------------------------------------------
CHARON=$(edge_pid charon)
BRIDGE=$(edge_pid mllp-bridge)
echo "# kill -9 charon $CHARON ($(acked_in) inbound ACKed, $(lis_count) outbound at the LIS)"
tk=$(now_ms)
kill -KILL "$CHARON"
e2e_expect "charon: SIGKILLed ($CHARON) and gone" wait_until 5 "gone $CHARON"
e2e_expect "charon: the supervisor starts a new one and the tunnel is up again (child INSTALLED)" \
	ap_wait 30 "s['charon']['connected'] and s['charon']['pid'] != $CHARON and tun('$E2E_TUNNEL')['up'] and
		child('$E2E_TUNNEL', '$E2E_CHILD')['state'] == 'INSTALLED'"
echo "# charon: the tunnel was back after $(($(now_ms) - tk)) ms"
CHARON1=$(edge_pid charon)
e2e_expect "charon: the new one ($CHARON1) is the only charon in the edge namespace" \
	test -n "$CHARON1" -a "$(pids_named "$NS_EDGE" charon | tr '\n' ' ')" = "$CHARON1 "
resumed charon "$tk"
sleep "$STEADY"

# --- 3. the supervisor -----------------------------------------------------------------
SUP=$(edge_pid appliance)
BRIDGE=$(edge_pid mllp-bridge)
CHARON=$(edge_pid charon)
e2e_expect "supervisor: found ($SUP, the one ap_start started: $AP_PID), with bridge $BRIDGE and charon $CHARON" \
	test -n "$SUP" -a "$SUP" = "$AP_PID" -a -n "$BRIDGE" -a -n "$CHARON" || exit 1
echo "# kill -9 supervisor $SUP ($(acked_in) inbound ACKed, $(lis_count) outbound at the LIS)"
tk=$(now_ms)
kill -KILL "$SUP"
wait "$SUP" 2>/dev/null
AP_PID=""
e2e_expect "supervisor: SIGKILLed and gone" wait_until 5 "gone $SUP"
e2e_expect "supervisor: charon ($CHARON) keeps running without it" eval "! gone $CHARON"
ap_start || exit 1
e2e_expect "supervisor: the new one ($AP_PID) adopts charon $CHARON, runs a new bridge, the tunnel is up" \
	ap_wait 30 "s['charon']['connected'] and s['charon']['pid'] == $CHARON and s['bridge']['running'] and
		s['bridge']['pid'] != $BRIDGE and tun('$E2E_TUNNEL')['up'] and
		child('$E2E_TUNNEL', '$E2E_CHILD')['state'] == 'INSTALLED'"
e2e_expect "supervisor: the log says charon_adopted" \
	awk '/^# --- .* appliance -c /{n = 0} /event=charon_adopted/{n++} END{exit !n}' "$AP_LOG"
e2e_expect "supervisor: the old bridge ($BRIDGE) is gone" wait_until 15 "gone $BRIDGE"
# docs/appliance.md: the orphan stops by itself when the link closes, or the
# new supervisor stops it by bridge.pid; say which happened
if [ "$(grep -c 'event=supervisor_link_lost' "$AP_LOG")" -ge 1 ]; then
	echo "# supervisor: the old bridge stopped by itself (supervisor_link_lost)"
else
	echo "# supervisor: the old bridge was stopped by the new supervisor (bridge.pid)"
fi
e2e_expect "supervisor: exactly one bridge and one charon in the edge namespace" \
	wait_until 10 'test "$(pids_named "$NS_EDGE" mllp-bridge | grep -c .)" = 1 -a \
		"$(pids_named "$NS_EDGE" charon | tr "\n" " ")" = "$CHARON "'
resumed supervisor "$tk"
sleep "$STEADY"

# --- drain and the ledger ------------------------------------------------------------
touch "$TMP/stop-posting"
kill -TERM "$LOAD_PID"
e2e_expect "drain: mllp-load stops on SIGTERM" wait_until 10 "gone $LOAD_PID"
wait "$LOAD_PID" 2>/dev/null
e2e_expect "drain: the poster finishes its last message" wait_until 30 "gone $POSTER_PID"
wait "$POSTER_PID" 2>/dev/null
echo "# mllp-load: $(tail -n 1 "$TMP/load-in.out")"
echo "# poster: $(nlines "$TMP/posts.log") messages, $(posted_ok) answered 2xx, $(awk '$3 > 1' "$TMP/posts.log" | grep -c .) needed more than one try"
n_in=$(sort -u "$TMP/acked-in" | grep -c .)
n_out=$(posted_ok)
e2e_expect "drain: a real load was carried ($n_in inbound ACKed, $n_out outbound accepted)" \
	test "$n_in" -ge 500 -a "$n_out" -ge 20
e2e_expect "drain: the spool empties both ways (lab depth 0, lis queue 0)" \
	ap_wait 60 "integ('lab')['depth'] == 0 and [d for d in s['destinations'] if d['name'] == 'lis'][0]['queued'] == 0"

# inbound: every ACKed message at the sink; duplicates with one key; order.
why=$(PYTHONPATH=tests/e2e python3 - "$E2E_SINK/requests.log" "$TMP/acked-in" <<'EOF'
import sys, lane_order
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
rows = [r for r in rows if r[2] == "/v1/hl7/lab" and r[10].startswith("K9-")]
acked = [l.strip() for l in open(sys.argv[2]) if l.strip()]
seq = lambda m: int(m.rsplit("-", 1)[1])
got = [r[10] for r in rows]
keys = {}
for r in rows:
    keys.setdefault(r[10], set()).add(r[3])
missing = [m for m in acked if m not in keys]
badkey = [m for m, k in keys.items() if len(k) != 1 or "" in k]
dups = len(got) - len(keys)
rewinds, back = lane_order.check(got, seq)
print("acked=%d at_sink=%d distinct=%d dups=%d rewinds=%d missing=%d badkey=%d back=%d" %
      (len(set(acked)), len(got), len(keys), dups, rewinds, len(missing), len(badkey), len(back)))
print("missing: %s" % " ".join(missing[:5]))
print("badkey: %s" % " ".join("%s=%s" % (m, sorted(keys[m])) for m in badkey[:3]))
print("back: %s" % " ".join("%s (%s)" % p for p in back[:3]))
EOF
)
echo "# inbound ledger: $(head -n 1 <<<"$why")"
e2e_expect "inbound: every message mllp-load saw ACKed is at the cloud ($(sed -n 2p <<<"$why"))" \
	grep -q ' missing=0 ' <<<"$why"
e2e_expect "inbound: a message at the cloud twice carries one Idempotency-Key ($(sed -n 3p <<<"$why"))" \
	grep -q ' badkey=0 ' <<<"$why"
e2e_expect "inbound: first arrivals at the cloud in send order, a resend only of what had arrived ($(sed -n 4p <<<"$why"))" \
	grep -q ' back=0$' <<<"$(head -n 1 <<<"$why")"
# Two of the kills end a bridge with requests in flight (the bridge, the
# supervisor's orphan); the lane rewinds at most once for each, and a third
# allows for one at the charon kill.
rw=$(sed -n '1s/.* rewinds=\([0-9]*\) .*/\1/p' <<<"$why")
e2e_expect "inbound: the lane was sent again from the spool at most 3 times (${rw:-?})" test "${rw:-99}" -le 3

# outbound: every 2xx at the LIS, in post order, repeats byte-identical
why=$(PYTHONPATH=tests/e2e python3 - "$E2E_RECV_LOG" "$TMP/posts.log" "$E2E_RECV_DIR" "$TMP/ob" <<'EOF'
import sys, lane_order
log, posts, rdir, odir = sys.argv[1:]
arr = [l.split() for l in open(log)]
arr = [(a[0], a[3]) for a in arr if a and a[0].isdigit() and a[3].startswith("OBK9-")]
ok = [p.split()[0] for p in open(posts) if p.split()[1] in ("200", "202")]
posted = [p.split()[0] for p in open(posts)]
got = [m for _, m in arr]
missing = [m for m in ok if m not in set(got)]
unknown = [m for m in got if m not in set(posted)]
seq = lambda m: int(m.split("-")[1])
rewinds, back = lane_order.check(got, seq)
differs = [m for s, m in arr if open("%s/%s.hl7" % (rdir, s), "rb").read() != open("%s/%s.hl7" % (odir, m), "rb").read()]
print("accepted=%d arrivals=%d distinct=%d dups=%d rewinds=%d missing=%d unknown=%d back=%d differs=%d" %
      (len(ok), len(got), len(set(got)), len(got) - len(set(got)), rewinds, len(missing), len(unknown), len(back), len(differs)))
print("missing: %s" % " ".join(missing[:5]))
print("back: %s" % " ".join("%s (%s)" % p for p in back[:3]))
print("differs: %s" % " ".join(differs[:3]))
EOF
)
echo "# outbound ledger: $(head -n 1 <<<"$why")"
e2e_expect "outbound: every message answered 202/200 reached the LIS ($(sed -n 2p <<<"$why"))" \
	grep -q ' missing=0 unknown=0 ' <<<"$why"
e2e_expect "outbound: first arrivals at the LIS in post order, a repeat only of what had arrived ($(sed -n 3p <<<"$why"))" \
	grep -q ' back=0 ' <<<"$why"
rw=$(sed -n '1s/.* rewinds=\([0-9]*\) .*/\1/p' <<<"$why")
e2e_expect "outbound: the destination was sent again from the spool at most 3 times (${rw:-?})" test "${rw:-99}" -le 3
e2e_expect "outbound: every arrival byte-identical to what was posted, repeats too ($(sed -n 4p <<<"$why"))" \
	grep -q ' differs=0$' <<<"$(head -n 1 <<<"$why")"

echo "# recovery (ms, inbound/outbound): bridge ${RESUME_IN[bridge]:-?}/${RESUME_OUT[bridge]:-?}," \
	"charon ${RESUME_IN[charon]:-?}/${RESUME_OUT[charon]:-?}," \
	"supervisor ${RESUME_IN[supervisor]:-?}/${RESUME_OUT[supervisor]:-?}"
phi=$(grep -acE 'K9-[0-9]+-[0-9]|OBK9-[0-9]|TEST\^PATIENT|LOAD\^PATIENT|P0\^\^\^' "$AP_LOG")
e2e_expect "the log holds no patient data (control ids, patient names and ids of either load: $phi lines)" \
	test "$phi" = 0
e2e_stop
echo "# wall time: $((($(now_ms) - T_START) / 1000)) s"
finish
