#!/bin/bash
# Always the right answer, whatever comes before or inside the header: the
# answer is built from the parsed MSH fields, wherever MSH starts (after a
# UTF-8 BOM, white space, FHS/BHS batch headers), each field bounded by its
# own limit; a field past its limit is refused with an ERR naming it, never
# answered with a cut copy. Before, these got `MSA|AA|` with an empty
# MSA-2, or MSH-12 cut to "2.".
. tests/integration/lib.sh

MLLP=10957 UP=18457 OBS_PORT=19157
CONF=$TMP/bridge.yaml
lab_conf "$CONF" $MLLP $UP $OBS_PORT
start_sink up $UP || exit 1
start_bridge "$CONF" $MLLP || exit 1

# header ID [MSH-3] [MSH-8] [MSH-15^MSH-16] [VERSION]: an MSH segment.
header() {
	printf 'MSH|^~\\&|%s|NORTHWIND|REDOX|CLOUD|20261130120000|%s|ADT^A01^ADT_A01|%s|P|%s|||%s\r' \
		"${2:-EPIC}" "${3:-}" "$1" "${5:-2.5.1}" "${4:-|}"
}
body() { printf 'PID|1||%s^^^H^MR||TEST^PATIENT\r' "$1"; }
# answer FILE: the one answer the bridge gives to FILE.
answer() { "$BIN/mllp-send" -t 3000 127.0.0.1:$MLLP "$1"; }
long() { head -c "$1" /dev/zero | tr '\0' 'X'; }

{ printf '\357\273\277'; header BOM1; body BOM1; } >"$TMP/bom.hl7"
{ printf '\r\n  '; header WS1; body WS1; } >"$TMP/ws.hl7"
{ printf 'FHS|^~\\&|EPIC|NORTHWIND\rBHS|^~\\&|EPIC|NORTHWIND\r'; header FHS1; body FHS1; } >"$TMP/fhs.hl7"
{ header LONG3 "$(long 2100)"; body LONG3; } >"$TMP/long3.hl7"
{ header LONG8 EPIC "$(long 2100)"; body LONG8; } >"$TMP/long8.hl7"
{ printf '\357\273\277'; header ENH1 EPIC "" "AL|NE"; body ENH1; } >"$TMP/enh.hl7"
{ header LONG10; body X; } | sed "s/LONG10/$(long 250)/" >"$TMP/long10.hl7"

out=$(answer "$TMP/bom.hl7")
expect "after a UTF-8 BOM: AA with MSA-2 = MSH-10 and the header mirrored" \
	grep -q '^MSH|^~\\&|REDOX|CLOUD|EPIC|NORTHWIND|.*|ACK^A01^ACK|.*|P|2.5.1 | MSA|AA|BOM1' <<<"$out"
out=$(answer "$TMP/ws.hl7")
expect "after CR, LF and spaces: AA with MSA-2 = MSH-10" grep -q 'MSA|AA|WS1' <<<"$out"
out=$(answer "$TMP/fhs.hl7")
expect "after FHS/BHS batch headers: AA with MSA-2 = MSH-10" grep -q 'MSA|AA|FHS1' <<<"$out"
out=$(answer "$TMP/enh.hl7")
expect "after a BOM, MSH-15/16 still choose enhanced mode: CA" grep -q 'MSA|CA|ENH1' <<<"$out"
out=$(answer "$TMP/long3.hl7")
expect "MSH-3 of 2,100 bytes: AR with MSA-2 = MSH-10 and an ERR naming MSH-3" \
	bash -c "grep -q 'MSA|AR|LONG3' <<<'$out' && grep -q 'ERR||MSH^1^3|102^' <<<'$out' &&
		grep -q 'MSH-3 is longer than 227 characters' <<<'$out'"
expect "... and the answer mirrors no cut field" bash -c "! grep -q XXXX <<<'$out'"
out=$(answer "$TMP/long8.hl7")
expect "a 2,100-byte MSH-8 (not mirrored): AA, MSA-2 right, MSH-12 whole" \
	bash -c "grep -q 'MSA|AA|LONG8' <<<'$out' && grep -q '|P|2.5.1 |' <<<'$out'"
out=$(answer "$TMP/long10.hl7")
expect "MSH-10 of 250 bytes: AR naming MSH-10 (it cannot be mirrored whole)" \
	bash -c "grep -q 'MSA|AR|' <<<'$out' && grep -q 'ERR||MSH^1^10|' <<<'$out' &&
		! grep -q XXXX <<<'$out'"
out=$(answer "$SAMPLES/orm_o01_v23.hl7")
expect "a v2.3 message gets ACK^O01, two components" grep -q '||ACK^O01|.*|P|2.3 | MSA|AA|ORD0001' <<<"$out"
expect "the four accepted messages and the v2.3 one reached the upstream" \
	wait_until 10 'test "$(sink_count up)" -eq 6'

# MSH-15 NE: no accept acknowledgement, unless the integration says
# `accept_ack: always` for senders whose library waits for one anyway.
{ header NE1 EPIC "" "NE|AL"; body NE1; } >"$TMP/ne.hl7"
out=$("$BIN/mllp-send" -t 1000 127.0.0.1:$MLLP "$TMP/ne.hl7")
expect "MSH-15 NE is honoured: no answer" test -z "$out"
stop_pid "$BRIDGE_PID"
lab_conf "$CONF" $MLLP $UP $OBS_PORT "accept_ack: always"
start_bridge "$CONF" $MLLP || exit 1
{ header NE2 EPIC "" "NE|AL"; body NE2; } >"$TMP/ne2.hl7"
out=$("$BIN/mllp-send" -t 2000 127.0.0.1:$MLLP "$TMP/ne2.hl7")
expect "accept_ack: always answers it: CA" grep -q 'MSA|CA|NE2' <<<"$out"
finish
