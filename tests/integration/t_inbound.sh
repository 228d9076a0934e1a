#!/bin/bash
# Inbound path against a real HTTPS receiver: byte-exact delivery, headers,
# acknowledgements for every sample, framing cases, R2, matching by source
# and MSH-4, order per sender.
. tests/integration/lib.sh

MLLP=10960 R2=10961 UP=18441 OBS_PORT=19141
CONF=$TMP/bridge.yaml
echo "secret-token" >"$TMP/token"
cat >"$CONF" <<EOF
gate: open # no tunnels: the bridge alone
spool: $TMP/spool.db
observability: { listen: 127.0.0.1:$OBS_PORT }
integrations:
  - name: lab
    listen: 127.0.0.1:$MLLP
    sources: [127.0.0.1/32]
    match: { sending_facility: NORTHWIND_LAB }
    upstream: { url: "https://localhost:$UP/v1/lab", ca_file: $CERTS/ca.pem,
                bearer_token_file: $TMP/token }
  - name: adt
    listen: 127.0.0.1:$MLLP
    sources: [127.0.0.1/32]
    upstream: { url: "https://localhost:$UP/v1/adt", ca_file: $CERTS/ca.pem }
  - name: r2
    listen: 127.0.0.1:$R2
    sources: [127.0.0.0/8]
    mllp: { release: 2 }
    upstream: { url: "https://localhost:$UP/v1/r2", ca_file: $CERTS/ca.pem }
EOF

start_sink up $UP || exit 1
start_bridge "$CONF" $MLLP || exit 1
S=$SAMPLES

# --- every sample gets the right answer -------------------------------
out=$("$BIN/mllp-send" 127.0.0.1:$MLLP "$S/adt_a01_v251.hl7")
expect "ADT^A01 2.5.1 gets AA with MSA-2 = MSH-10" \
	grep -q 'MSA|AA|NW000123' <<<"$out"
expect "the ACK mirrors MSH (sending/receiving swapped, same version)" \
	grep -q '^MSH|^~\\&|REDOX|CLOUD|EPIC|NORTHWIND|.*|ACK^A01^ACK|.*|P|2.5.1' <<<"$out"

out=$("$BIN/mllp-send" 127.0.0.1:$MLLP "$S/oru_r01_enhanced_ack.hl7")
expect "enhanced mode (MSH-15 AL) gets CA" grep -q 'MSA|CA|LAB55501' <<<"$out"

out=$("$BIN/mllp-send" 127.0.0.1:$MLLP "$S/adt_a08_latin1.hl7" "$S/orm_o01_v23.hl7" \
	"$S/vxu_v04_repeats_escapes.hl7" "$S/lf_segments.hl7" "$S/x12_270.x12" "$S/ccd_minimal.xml")
expect "latin1, 2.3, escapes, LF segments, X12 and C-CDA are all accepted" \
	test "$(grep -c 'MSA|AA|' <<<"$out")" -eq 6

for bad in "bad_no_msh:no MSH segment" "bad_encoding_chars:bad encoding characters" \
	"bad_no_control_id:MSH-10"; do
	f=${bad%%:*} why=${bad#*:}
	out=$("$BIN/mllp-send" 127.0.0.1:$MLLP "$S/$f.hl7")
	expect "$f is rejected with AR and an ERR saying why" \
		bash -c "grep -q 'MSA|AR|' <<<'$out' && grep -q 'ERR|' <<<'$out' && grep -q '$why' <<<'$out'"
done

# --- delivered byte-exact, with the headers ---------------------------
expect "all 8 accepted messages reach the upstream" wait_until 10 'test "$(sink_count up)" -ge 8'
declare -A bodies=([NW000123]=adt_a01_v251.hl7 [LAB55501]=oru_r01_enhanced_ack.hl7)
for id in "${!bodies[@]}"; do
	seq=$(awk -F'\t' -v id="$id" '$11 == id {print $1; exit}' "$TMP/up/requests.log")
	expect "message $id arrives byte-exact" cmp -s "$TMP/up/bodies/$seq" "$S/${bodies[$id]}"
done
x12=$(awk -F'\t' '$7 == "application/edi-x12" {print $1; exit}' "$TMP/up/requests.log")
expect "X12 arrives byte-exact as application/edi-x12" cmp -s "$TMP/up/bodies/$x12" "$S/x12_270.x12"
xml=$(awk -F'\t' '$7 == "application/xml" {print $1; exit}' "$TMP/up/requests.log")
expect "C-CDA arrives byte-exact as application/xml" cmp -s "$TMP/up/bodies/$xml" "$S/ccd_minimal.xml"
expect "MSH-18 8859/1 is labelled charset=ISO-8859-1" \
	grep -q 'x-application/hl7-v2+er7; charset=ISO-8859-1' "$TMP/up/requests.log"
expect "HL7 without MSH-18 is labelled charset=UTF-8" \
	grep -q 'x-application/hl7-v2+er7; charset=UTF-8' "$TMP/up/requests.log"
lab=$(awk -F'\t' '$11 == "LAB55501"' "$TMP/up/requests.log")
expect "MSH-4 NORTHWIND_LAB went to integration lab, with its path and bearer token" \
	bash -c "cut -f3,6,9 <<<'$lab' | grep -qx '/v1/lab	lab	yes'"
adt=$(awk -F'\t' '$11 == "NW000123"' "$TMP/up/requests.log")
expect "other facilities went to integration adt" \
	bash -c "cut -f3,6,9 <<<'$adt' | grep -qx '/v1/adt	adt	no'"
expect "X-Forwarded-For is the MLLP peer" bash -c "cut -f5 <<<'$adt' | grep -qx 127.0.0.1"
expect "every request has a UUID Idempotency-Key, all different" bash -c \
	"test \$(cut -f4 '$TMP/up/requests.log' | grep -cE '^[0-9a-f-]{36}$') -eq \$(sink_count up) &&
	 test \$(cut -f4 '$TMP/up/requests.log' | sort -u | wc -l) -eq \$(sink_count up)" 
expect "every request carries a Date header" \
	test "$(cut -f8 "$TMP/up/requests.log" | grep -c GMT)" -eq "$(sink_count up)"
expect "nothing rejected was forwarded" test "$(sink_count up)" -eq 8

# --- framing ----------------------------------------------------------
out=$("$BIN/mllp-send" -r -t 1500 127.0.0.1:$MLLP "$S/frames/pipelined_three.mllp")
expect "three pipelined frames get three ACKs, in order" \
	test "$(grep -oE 'MSA\|[AC]A\|[^ |]*' <<<"$out" | cut -d'|' -f3 | tr '\n' ' ')" = \
	"$(tr '\r\n\013\034' '\n\n\n\n' <"$S/frames/pipelined_three.mllp" | awk -F'|' '/^MSH/ {printf "%s ", $10}')"
junk0=$(metric mllp_junk_bytes_total)
for f in junk_before_start missing_final_cr trailing_lf nul_between_frames; do
	out=$("$BIN/mllp-send" -r -t 1500 127.0.0.1:$MLLP "$S/frames/$f.mllp")
	n=$(grep -c $'\x0b' "$S/frames/$f.mllp")
	expect "$f: every frame acknowledged ($n)" test "$(grep -cE 'MSA\|[AC]A\|' <<<"$out")" -eq "$n"
done
expect "junk before the start block is counted" test "$(metric mllp_junk_bytes_total)" -gt "$junk0"

# --- release 2 --------------------------------------------------------
out=$("$BIN/mllp-send" 127.0.0.1:$R2 "$S/adt_a01_v251.hl7")
expect "release 2 answers with a commit ACK block" test "$out" = R2_ACK
out=$("$BIN/mllp-send" 127.0.0.1:$R2 "$S/bad_no_msh.hl7")
expect "release 2 answers a malformed message with a commit NAK block" test "$out" = R2_NAK

# --- matching -----------------------------------------------------------
out=$("$BIN/mllp-send" -b 127.0.0.9 -t 1000 127.0.0.1:$MLLP "$S/adt_a01_v251.hl7")
expect "a source outside every integration is closed without an answer" test -z "$out"
expect "... and counted as incomplete integration" \
	test "$(metric 'mllp_incomplete_integration_total')" -ge 1
expect "... and logged" grep -q 'event=incomplete_integration peer=127.0.0.9' "$TMP/bridge.log"
"$BIN/mllp-send" -t 500 127.0.0.1:$MLLP /dev/null >/dev/null 2>&1
expect "a heartbeat (connect, close) is not an error" \
	bash -c "! grep -E 'level=(warn|error).*peer=127.0.0.1:' '$TMP/bridge.log' | grep -v frame_rejected | grep -q ."

# --- order per sender ----------------------------------------------------
for i in $(seq -w 1 40); do hl7_msg "ORD$i" >"$TMP/m$i.hl7"; done
"$BIN/mllp-send" 127.0.0.1:$MLLP "$TMP"/m*.hl7 >/dev/null
expect "40 sequential messages delivered" wait_until 10 'test "$(cut -f11 "$TMP/up/requests.log" | grep -cx "ORD[0-9][0-9]")" -eq 40'
expect "... in the order they were received" \
	test "$(awk -F'\t' '$11 ~ /^ORD[0-9][0-9]$/ {print $11}' "$TMP/up/requests.log" | tr '\n' ' ')" = \
	"$(seq -w 1 40 | sed 's/^/ORD/' | tr '\n' ' ')"

# --- group commit -------------------------------------------------------
c0=$(metric mllp_spool_commits_total) r0=$(metric mllp_spool_commit_rows_total)
"$BIN/mllp-load" -t 127.0.0.1:$MLLP -c 16 -p 4 -n 4000 >"$TMP/load.out"
expect "16 pipelining connections: 4,000 messages acknowledged" grep -q 'acked=4000 nak=0' "$TMP/load.out"
commits=$(($(metric mllp_spool_commits_total) - c0)) rows=$(($(metric mllp_spool_commit_rows_total) - r0))
expect "group commit: many messages per fsync ($rows rows in $commits commits)" \
	test "$rows" -ge 4000 -a "$((rows / (commits > 0 ? commits : 1)))" -ge 4

# --- no patient data in logs --------------------------------------------
expect "the log holds no patient data (names, MRNs, control IDs)" \
	bash -c "! grep -qE 'SAMPLE|100234|NW000123|ORD01' '$TMP/bridge.log'"

# --- metrics -------------------------------------------------------------
expect "/metrics counts AA answers" test "$(metric 'mllp_acks_total{integration="adt",code="AA"}')" -ge 8
expect "/metrics counts delivered messages" wait_until 10 'test "$(metric mllp_delivered_total)" -ge 4050' 
expect "/healthz answers ok" bash -c "curl -sf http://127.0.0.1:$OBS_PORT/healthz | grep -qx ok"
expect "/readyz answers ready" bash -c "curl -sf http://127.0.0.1:$OBS_PORT/readyz | grep -qx ready"
finish
