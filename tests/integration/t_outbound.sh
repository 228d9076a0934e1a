#!/bin/bash
# Outbound path, bridge alone (gate: open): HTTPS POST → spool → MLLP sender,
# against mllp-recv. One message in flight per destination, FIFO kept across
# noack/wrong MSA-2/close-mid retries, AE/AR policies, idle close and a new
# connection after it, Prefer: wait and Idempotency-Key.
. tests/integration/lib.sh

# Ports (loopback): 10993 the unused inbound listener, 18490 HTTPS,
# 18491 /metrics, receivers: 10994 (lab), 18496 (rej), 18497 (idle), 18498 (sync).
MLLP=10993 HTTPS=18490 OBS_PORT=18491
P_LAB=10994 P_REJ=18496 P_IDLE=18497 P_SYNC=18498
CONF=$TMP/bridge.yaml
TOKEN=outbound-test-token-0123456789
printf '%s *\n' "$TOKEN" >"$TMP/tokens"
chmod 600 "$TMP/tokens"
{
	outbound_conf_head 18499
	cat <<EOF
destinations:
  - { name: lab, address: 127.0.0.1:$P_LAB, ack_timeout: 1s, max_attempts: 10 }
  - { name: rej, address: 127.0.0.1:$P_REJ, ack_timeout: 5s, on_ae: retry, on_ar: dead }
  - { name: idle, address: 127.0.0.1:$P_IDLE, ack_timeout: 5s, idle_timeout: 1s }
  - { name: sync, address: 127.0.0.1:$P_SYNC, ack_timeout: 10s }
https:
  listen: 127.0.0.1:$HTTPS
  cert: $CERTS/server.pem
  key: $CERTS/server.key
  tokens_file: $TMP/tokens
EOF
} >"$CONF"

# ---- helpers (outbound) -------------------------------------------------

# start_recv, arrivals, nmsg, lap: lib.sh.
# an HL7 message for the cloud side
out_msg() {
	printf 'MSH|^~\\&|CLOUD|ACME|LIS|HOSP|20261130120000||ORM^O01^ORM_O01|%s|P|2.5.1\rPID|1||%s^^^HOSP^MR||DOE^JANE\rORC|NW|%s\r' \
		"$1" "$1" "$1"
}
# post DEST FILE [CURL ARGS...]: prints "STATUS LOCATION"; the body goes to
# $TMP/last.body, the headers to $TMP/last.hdr.
post() {
	local dest=$1 file=$2
	shift 2
	curl -s --max-time 30 --cacert "$CERTS/ca.pem" -H "Authorization: Bearer $TOKEN" \
		-H 'Content-Type: x-application/hl7-v2+er7' --data-binary "@$file" \
		-D "$TMP/last.hdr" -o "$TMP/last.body" -w '%{http_code} %header{location}\n' "$@" \
		"https://127.0.0.1:$HTTPS/v1/destinations/$dest/messages"
}
# get ID: the JSON of GET /v1/messages/ID
get() {
	curl -s --max-time 10 --cacert "$CERTS/ca.pem" -H "Authorization: Bearer $TOKEN" \
		"https://127.0.0.1:$HTTPS/v1/messages/$1"
}
jfield() { grep -o "\"$1\":\(\"[^\"]*\"\|[0-9a-z]*\)" | head -n 1 | cut -d: -f2- | tr -d '"'; }
state_of() { get "$1" | jfield state; }
attempts_of() { get "$1" | jfield attempts; }
# post_many DEST NAME [-p] ID...: posts one message per MSH-10 ID to DEST in
# one curl run, queued mode: one request after the other on one connection,
# or with -p all at once (up to 20 connections); writes
# "ID STATUS LOCATION SECONDS" lines to $TMP/NAME.posted, in completion order.
post_many() {
	local dest=$1 name=$2 id
	shift 2
	: >"$TMP/$name.cfg"
	if [ "$1" = -p ]; then
		printf 'parallel\nparallel-max = 20\nsilent\n' >"$TMP/$name.cfg"
		shift
	fi
	for id in "$@"; do
		out_msg "$id" >"$TMP/msg-$id.hl7"
		[ "$id" = "$1" ] || echo next >>"$TMP/$name.cfg"
		cat >>"$TMP/$name.cfg" <<-EOF
			url = "https://127.0.0.1:$HTTPS/v1/destinations/$dest/messages"
			cacert = "$CERTS/ca.pem"
			header = "Authorization: Bearer $TOKEN"
			header = "Content-Type: x-application/hl7-v2+er7"
			data-binary = "@$TMP/msg-$id.hl7"
			output = "$TMP/$name.body.$id"
			write-out = "%{filename_effective} %{http_code} %header{location} %{time_total}\\n"
			silent
			max-time = 30
		EOF
	done
	curl -K "$TMP/$name.cfg" 2>"$TMP/$name.err" | sed "s|^$TMP/$name.body.||" >"$TMP/$name.posted"
}
# the MSH-10s of a post_many run in the order the bridge stored them (by id)
stored_order() { sed 's|/v1/messages/||' "$TMP/$1.posted" | sort -n -k3 | awk '{print $1}'; }
# the id the post of MSH-10 M got (from its Location), or "none"
id_of() {
	local i
	i=$(awk -v m="$2" '$1 == m && $3 ~ /^\/v1\/messages\/[0-9]+$/ {sub(".*/", "", $3); print $3}' \
		"$TMP/$1.posted" 2>/dev/null)
	echo "${i:-none}"
}
# one_in_flight NAME MIN: the receiver NAME got at least MIN messages, no
# message arrived while an earlier one was unanswered, and every arrival
# after the first came after the answer to (or the close following) the
# previous arrival
one_in_flight() {
	[ "$(nmsg "$1")" -ge "$2" ] || { echo "# $1: only $(nmsg "$1") messages"; return 1; }
	awk '$1 == "overlap" {bad = 1}
	     $1 ~ /^[0-9]+$/ { if (n && last_ans < 0) bad = 1; if (n && $6 < last_ans) bad = 1;
			       n++; last_ans = -1 }
	     $1 == "answer" && ($4 ~ /^(AA|CA|AE|AR|CE|CR)$/) {last_ans = $5}
	     $1 == "close" {last_ans = $3}
	     END {exit bad}' "$TMP/$1.rlog"
}

start_recv lab $P_LAB --delay 50 \
	--rule MSH10=R03@1:noack --rule MSH10=R05@1:wrong-msa2 --rule MSH10=R07@1:close-mid || exit 1
start_recv rej $P_REJ --rule MSH10=E01@1:ae --rule MSH10=E02:ar || exit 1
start_recv idle $P_IDLE || exit 1
start_recv sync $P_SYNC --rule MSH10=S02:delay=2500 || exit 1
start_obridge
T0=$(date +%s%N)

# ---- 1. order, one in flight, one connection -----------------------------
ids=$(seq -f 'O%02g' 1 20)
# shellcheck disable=SC2086
post_many lab s1 -p $ids
posted_at=$(nmsg lab)
expect "s1: 20 posts at once all answered 202 with a Location" \
	test "$(grep -cE '^O[0-9]+ 202 /v1/messages/[0-9]+ ' "$TMP/s1.posted")" -eq 20
expect "s1: the receiver got 20 messages" wait_until 15 'test "$(nmsg lab)" -ge 20'
order=$(stored_order s1 | tr '\n' ' ')
expect "s1: ... in the order the bridge accepted them ($order)" \
	test "$(arrivals lab | head -n 20 | tr '\n' ' ')" = "$order"
expect "s1: ... on one connection" \
	test "$(awk '$1 ~ /^[0-9]+$/ {print $2}' "$TMP/lab.rlog" | sort -u | tr '\n' ' ')" = "1 " -a \
	"$(grep -c '^open ' "$TMP/lab.rlog")" -eq 1
expect "s1: never two in flight (no overlap; each arrival after the previous answer)" one_in_flight lab 20
expect "s1: the messages queued up (the posts ended before the last arrival: $posted_at of 20 had arrived)" \
	test "$posted_at" -lt 20
s1_get_ok() {
	local id m j
	for m in $ids; do
		id=$(id_of s1 "$m")
		j=$(get "$id")
		grep -q '"state":"acked"' <<<"$j" && grep -q "MSA|AA|$m\\\\r" <<<"$j" || {
			echo "# $m (id $id): $j"
			return 1
		}
	done
}
expect "s1: GET shows each acked, with its own ACK (MSA|AA|MSH-10)" wait_until 5 s1_get_ok
expect "s1: GET attempts is 1 for a message sent once" test "$(attempts_of "$(id_of s1 O01)")" = 1
j=$(get "$(id_of s1 O01)")
expect "s1: GET has destination, last_error null, received" \
	bash -c "grep -q '\"destination\":\"lab\"' <<<'$j' && grep -q '\"last_error\":null' <<<'$j' &&
		grep -qE '\"received\":\"20[0-9]{2}-[0-9]{2}-[0-9]{2}T' <<<'$j'"
expect "s1: the receiver got the bytes as posted" cmp -s "$TMP/lab.d/1.hl7" "$TMP/msg-O01.hl7"
lap "scenario 1 done"

# ---- 2. retries keep order ----------------------------------------------
base=$(nmsg lab)
ids2=$(seq -f 'R%02g' 1 10)
# shellcheck disable=SC2086
post_many lab s2 $ids2
expect "s2: 10 posts answered 202" test "$(grep -c ' 202 /v1/messages/' "$TMP/s2.posted")" -eq 10
med=$(awk '{print $4}' "$TMP/s2.posted" | sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}')
echo "# s2: 202 latency on a kept-alive connection, median of 10: $med s"
expect "s2: a 202 on a kept-alive connection takes under 20 ms (median $med s)" \
	awk -v m="$med" 'BEGIN {exit !(m != "" && m < 0.020)}'
want="R01 R02 R03 R03 R04 R05 R05 R06 R07 R07 R08 R09 R10 "
expect "s2: the receiver got 13 arrivals (3, 5, 7 twice)" wait_until 20 "test \$(nmsg lab) -ge $((base + 13))"
got=$(arrivals lab | tail -n +$((base + 1)) | tr '\n' ' ')
expect "s2: arrivals in order, 3/5/7 resent before anything after them ($got)" test "$got" = "$want"
same_bytes() {
	local f s ok=0
	for f in $(awk -v b="$base" '$1 ~ /^[0-9]+$/ && $1 > b && $4 ~ /^R0[357]$/ {print $1 ":" $4}' "$TMP/lab.rlog"); do
		s=${f%%:*}
		cmp -s "$TMP/lab.d/$s.hl7" "$TMP/msg-${f#*:}.hl7" || ok=1
	done
	return $ok
}
expect "s2: every resend is byte-identical to the post (same MSH-10)" same_bytes
expect "s2: nothing after N arrived before N's ACK (no overlap)" one_in_flight lab 33
s2_acked() {
	local m
	for m in $ids2; do [ "$(state_of "$(id_of s2 "$m")")" = acked ] || return 1; done
}
expect "s2: every message ends acked" wait_until 10 s2_acked
for m in R03 R05 R07; do
	a=$(attempts_of "$(id_of s2 "$m")")
	expect "s2: $m's GET shows attempts 2 (sent twice; got $a)" test "$a" = 2
done
j=$(get "$(id_of s2 R03)")
expect "s2: R03's ACK is its own (MSA|AA|R03)" grep -q 'MSA|AA|R03\\r' <<<"$j"
expect "s2: the log says ack timeout, mismatch and retry" \
	bash -c "grep -q 'event=mllp_out_ack_timeout destination=lab' '$TMP/bridge.log' &&
		 grep -q 'event=mllp_out_ack_mismatch destination=lab' '$TMP/bridge.log' &&
		 test \$(grep -c 'event=mllp_out_retry destination=lab' '$TMP/bridge.log') -ge 3"
expect "s2: no control ID or patient data in the log" bash -c "! grep -qE 'R0[0-9]|DOE' '$TMP/bridge.log'"
lap "scenario 2 done"

# ---- 3. AE retry, AR dead -------------------------------------------------
post_many rej s3 E01 E02 E03
expect "s3: 3 posts answered 202" test "$(grep -c ' 202 /v1/messages/' "$TMP/s3.posted")" -eq 3
expect "s3: arrivals E01 (AE) E01 (AA) E02 (AR) E03" \
	wait_until 10 'test "$(arrivals rej | tr "\n" " ")" = "E01 E01 E02 E03 "'
expect "s3: E03 was sent after E02's AR answer" one_in_flight rej 4
expect "s3: the AE retry went on the same connection" \
	test "$(awk '$1 ~ /^[0-9]+$/ && $4 == "E01" {print $2}' "$TMP/rej.rlog" | sort -u | wc -l)" -eq 1
wait_until 5 "test \"\$(state_of $(id_of s3 E03))\" = acked"
j1=$(get "$(id_of s3 E01)") j2=$(get "$(id_of s3 E02)") j3=$(get "$(id_of s3 E03)")
expect "s3: E01 (AE, on_ae retry) ends acked with the AA" \
	bash -c "grep -q '\"state\":\"acked\"' <<<'$j1' && grep -q 'MSA|AA|E01' <<<'$j1'"
expect "s3: E01 attempts 2" test "$(jfield attempts <<<"$j1")" = 2
expect "s3: E02 (AR, on_ar dead) is rejected, the AR ACK kept" \
	bash -c "grep -q '\"state\":\"rejected\"' <<<'$j2' && grep -q 'MSA|AR|E02' <<<'$j2'"
expect "s3: E02 was sent once" test "$(arrivals rej | grep -c E02)" -eq 1
expect "s3: E03 acked" grep -q '"state":"acked"' <<<"$j3"
expect "s3: the log says rejected" grep -q 'event=mllp_out_rejected destination=rej' "$TMP/bridge.log"
lap "scenario 3 done"

# ---- 4. idle timeout ---------------------------------------------------------
out_msg I01 >"$TMP/i1.hl7"
out_msg I02 >"$TMP/i2.hl7"
r=$(post idle "$TMP/i1.hl7")
expect "s4: I01 answered 202" test "${r%% *}" = 202
expect "s4: I01 arrives" wait_until 5 'test "$(nmsg idle)" -ge 1'
expect "s4: the bridge closes the idle connection" wait_until 4 'grep -q "^close 1 " "$TMP/idle.rlog"'
t_ans=$(awk '$1 == "answer" && $2 == 1 {print $5}' "$TMP/idle.rlog")
t_close=$(awk '$1 == "close" && $2 == 1 {print $3}' "$TMP/idle.rlog")
how=$(awk '$1 == "close" && $2 == 1 {print $4}' "$TMP/idle.rlog")
dt=$(( ${t_close:-0} - ${t_ans:-0} ))
echo "# idle close ${dt} ms after the ACK ($how)"
expect "s4: closed by the bridge (by-peer for the receiver) about 1 s after the ACK ($dt ms)" \
	test "$how" = by-peer -a "$dt" -ge 900 -a "$dt" -le 1600
expect "s4: the log says mllp_out_idle_close" grep -q 'event=mllp_out_idle_close destination=idle' "$TMP/bridge.log"
r=$(post idle "$TMP/i2.hl7")
expect "s4: I02 arrives on a new connection" \
	wait_until 5 "awk '\$1 ~ /^[0-9]+\$/ && \$4 == \"I02\" && \$2 == 2' '$TMP/idle.rlog' | grep -q ."
expect "s4: two opens in all" test "$(grep -c '^open ' "$TMP/idle.rlog")" -eq 2
lap "scenario 4 done"

# ---- 6. sync mode, idempotency -------------------------------------------
out_msg S01 >"$TMP/s01.hl7"
out_msg S02 >"$TMP/s02.hl7"
out_msg S03 >"$TMP/s03.hl7"
out_msg S04 >"$TMP/s04.hl7"
t=$(date +%s%N)
r=$(post sync "$TMP/s01.hl7" -H 'Prefer: wait=5')
ms=$(( ($(date +%s%N) - t) / 1000000 ))
expect "s6: Prefer: wait=5 → 200 with a Location ($ms ms)" bash -c "grep -qE '^200 /v1/messages/[0-9]+$' <<<'$r'"
expect "s6: ... the body is the ACK (MSA|AA|S01)" grep -q $'^MSA|AA|S01\r*$' <(tr '\r' '\n' <"$TMP/last.body")
expect "s6: ... as x-application/hl7-v2+er7" grep -qi '^content-type: x-application/hl7-v2+er7' "$TMP/last.hdr"
t=$(date +%s%N)
r=$(post sync "$TMP/s02.hl7" -H 'Prefer: wait=1')
ms=$(( ($(date +%s%N) - t) / 1000000 ))
expect "s6: receiver slower than the wait: 202 after about 1 s ($r, $ms ms)" \
	bash -c "grep -qE '^202 /v1/messages/[0-9]+$' <<<'$r' && test $ms -ge 900 -a $ms -le 2000"
b=$(cat "$TMP/last.body")
expect "s6: ... the 202 body says the state, sending ($b)" grep -q '"state":"sending"' <<<"$b"
id2=${r##*/}
st=$(state_of "$id2")
expect "s6: ... GET while the receiver holds its ACK says sending (got $st)" test "$st" = sending
expect "s6: ... a later GET shows it acked with its ACK" \
	wait_until 5 "get $id2 | grep -q '\"state\":\"acked\".*MSA|AA|S02'"
r1=$(post sync "$TMP/s03.hl7" -H 'Idempotency-Key: order-2026-000123')
r2=$(post sync "$TMP/s04.hl7" -H 'Idempotency-Key: order-2026-000123')
expect "s6: Idempotency-Key: first 202, the repeat 200 with the same id ($r1 / $r2)" \
	test "${r1%% *}" = 202 -a "${r2%% *}" = 200 -a "${r1#* }" = "${r2#* }"
expect "s6: ... the repeat's body names the first id" grep -q "\"id\":${r1##*/}," "$TMP/last.body"
wait_until 5 "get ${r1##*/} | grep -q '\"state\":\"acked\"'"
sleep 0.3
expect "s6: the receiver saw the keyed message once, and the repeat's body never" \
	test "$(arrivals sync | grep -c S03)" -eq 1 -a "$(arrivals sync | grep -c S04)" -eq 0
r3=$(post sync "$TMP/s03.hl7" -H 'Idempotency-Key: order-2026-000123' -H 'Prefer: wait=5')
expect "s6: a repeat with Prefer: wait gets the first message's ACK (200)" \
	bash -c "test '${r3%% *}' = 200 && tr '\r' '\n' <'$TMP/last.body' | grep -q '^MSA|AA|S03'"
expect "s6: one outbound row per accepted message in the spool" \
	test "$(sqlite3 "$TMP/spool.db" 'SELECT count(*) FROM messages WHERE channel=1')" -eq 38
lap "scenario 6 done"
expect "the bridge is still running" kill -0 "$BRIDGE_PID"
finish
