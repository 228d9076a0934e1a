#!/bin/bash
# The test MLLP receiver (tests/tools/mllp-recv.c) the outbound scenarios
# rely on, checked against mllp-send on loopback: arrival order and
# connection numbers in its log, bodies saved, AE/AR/CR codes, a wrong MSA-2,
# a delayed ACK, no ACK (mllp-send times out, the connection stays open), a
# close without answer, half an ACK frame then close, release 2 commit
# ACK/NAK, connection reuse and idle closes, --max-conns, the answer and
# overlap lines that show two messages in flight at once, SIGTERM exit 0.
. tests/integration/lib.sh

R1=10982 R2=10983 R3=10984 R4=10985

# start_recv NAME PORT [ARGS...]: a receiver logging to $TMP/NAME.arrivals;
# its pid in RECV_PID.
start_recv() {
	local name=$1 port=$2
	shift 2
	"$BIN/mllp-recv" -l "127.0.0.1:$port" -o "$TMP/$name.arrivals" -v "$@" \
		>"$TMP/$name.out" 2>&1 &
	RECV_PID=$!
	PIDS="$PIDS $RECV_PID"
	wait_until 10 "grep -q 'listening on 127.0.0.1:$port' '$TMP/$name.out'" || {
		echo "# receiver $name did not start:"
		cat "$TMP/$name.out"
		return 1
	}
}

# stop_recv PID: SIGTERM, and the receiver's exit status.
stop_recv() {
	local rc
	kill -TERM "$1" 2>/dev/null
	wait "$1"
	rc=$?
	PIDS=$(echo "$PIDS" | tr ' ' '\n' | grep -vx "$1" | tr '\n' ' ')
	return $rc
}

# Fields of the arrival log's message lines: 1 seq 2 conn 3 peer 4 msh-10
# 5 bytes 6 unix_ms; field FIELD of the line whose MSH-10 is ID (last one).
arrivals() { grep -E '^[0-9]+ ' "$TMP/$1.arrivals" 2>/dev/null; }
field_of() { arrivals "$1" | awk -v id="$2" -v f="$3" '$4 == id {v = $f} END {print v}'; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }
send() { "$BIN/mllp-send" "$@"; }

for id in M1 M2 M3 M4 M5 M6 M7 M8 M10 M11 M12 M13 M14 R1 R2 R3 C1 C2 C3 F1 F2 F3 F4; do
	hl7_msg "$id" >"$TMP/$id.hl7"
done
printf 'NOT HL7 AT ALL\r' >"$TMP/junk.hl7"

# ---- one receiver, one rule per behaviour ----
mkdir -p "$TMP/bodies"
start_recv a $R1 -d "$TMP/bodies" --idle-log \
	--rule 4:ae --rule 5:ar --rule MSH10=M6:wrong-msa2 --rule 7:delay=600 \
	--rule MSH10=M8@1:noack --rule MSH10=M10:close --rule 11:close-mid \
	--rule 12:nak2 --rule 13:cr --rule MSH10=M14:wrong-msa2=NOT-M14 || exit 1
A=$RECV_PID

out=$(send -t 3000 127.0.0.1:$R1 "$TMP/M1.hl7" "$TMP/M2.hl7" "$TMP/M3.hl7")
expect "three files over one connection: three AA, each MSA-2 its MSH-10, in order" \
	test "$(grep -o 'MSA|[A-Z]*|M[0-9]*' <<<"$out" | tr '\n' ' ')" = \
	"MSA|AA|M1 MSA|AA|M2 MSA|AA|M3 "
expect "the log has them as seq 1 2 3, in arrival order" \
	test "$(arrivals a | awk '{print $1 ":" $4}' | tr '\n' ' ')" = "1:M1 2:M2 3:M3 "
expect "... all three on one connection (reuse), conn# 1" \
	test "$(arrivals a | awk '{print $2}' | sort -u | tr '\n' ' ')" = "1 "
expect "... the payload length is the file's size" \
	test "$(field_of a M2 5)" = "$(wc -c <"$TMP/M2.hl7")"
expect "... the peer is the sender's 127.0.0.1:port, as in the open line" \
	bash -c "grep -qx 'open 1 $(field_of a M1 3) [0-9]*' '$TMP/a.arrivals' &&
		grep -q '^127\.0\.0\.1:[0-9][0-9]*$' <<<'$(field_of a M1 3)'"
t=$(now_ms) t1=$(field_of a M1 6) t3=$(field_of a M3 6)
expect "... arrival times are unix ms, in order" \
	bash -c "[ $t1 -le $t3 ] && [ $((t - t1)) -ge 0 ] && [ $((t - t1)) -lt 60000 ]"
expect "-d saved each body byte for byte as <seq>.hl7" \
	bash -c "cmp -s '$TMP/bodies/1.hl7' '$TMP/M1.hl7' && cmp -s '$TMP/bodies/3.hl7' '$TMP/M3.hl7'"
expect "the connection's close is logged by-peer once mllp-send is done" \
	wait_until 5 "grep -qE '^close 1 [0-9]+ by-peer$' '$TMP/a.arrivals'"

out=$(send -t 3000 127.0.0.1:$R1 "$TMP/M4.hl7" "$TMP/M5.hl7")
expect "rule 4:ae: MSA-1 AE, MSA-2 M4, with an ERR segment" \
	bash -c "grep -q 'MSA|AE|M4 | ERR|' <<<'$out'"
expect "rule 5:ar: MSA-1 AR, MSA-2 M5" grep -q 'MSA|AR|M5 | ERR|' <<<"$out"
expect "a second mllp-send is a second connection, conn# 2" \
	test "$(field_of a M4 2) $(field_of a M5 2)" = "2 2"

out=$(send -t 3000 127.0.0.1:$R1 "$TMP/M6.hl7")
expect "MSH10=M6:wrong-msa2: AA for the message before (M5), not M6" \
	bash -c "grep -q 'MSA|AA|M5\$' <<<'$out' && ! grep -q 'MSA|AA|M6' <<<'$out'"

t0=$(now_ms)
out=$(send -t 3000 127.0.0.1:$R1 "$TMP/M7.hl7")
t1=$(now_ms)
expect "rule 7:delay=600: the AA arrives 600 ms or more after sending ($((t1 - t0)) ms)" \
	bash -c "grep -q 'MSA|AA|M7' <<<'$out' && [ $((t1 - t0)) -ge 600 ] && [ $((t1 - t0)) -lt 2500 ]"

t0=$(now_ms)
out=$(send -t 800 127.0.0.1:$R1 "$TMP/M8.hl7")
rc=$?
t1=$(now_ms)
expect "MSH10=M8@1:noack: no answer, mllp-send times out (rc $rc, $((t1 - t0)) ms)" \
	bash -c "[ $rc -eq 1 ] && [ -z '$out' ] && [ $((t1 - t0)) -ge 800 ]"
conn8=$(field_of a M8 2)
expect "... the receiver kept that connection: mllp-send closed it (by-peer)" \
	wait_until 5 "grep -qE '^close $conn8 [0-9]+ by-peer$' '$TMP/a.arrivals'"
out=$(send -t 3000 127.0.0.1:$R1 "$TMP/M8.hl7")
expect "... its second arrival (@1 matched only the first) gets AA" grep -q 'MSA|AA|M8' <<<"$out"
expect "... both arrivals are in the log, seq 8 and 9" \
	test "$(arrivals a | awk '$4 == "M8" {print $1}' | tr '\n' ' ')" = "8 9 "

t0=$(now_ms)
out=$(send -t 3000 127.0.0.1:$R1 "$TMP/M10.hl7")
rc=$?
t1=$(now_ms)
expect "MSH10=M10:close: closed without an answer, at once (rc $rc, $((t1 - t0)) ms)" \
	bash -c "[ $rc -eq 1 ] && [ -z '$out' ] && [ $((t1 - t0)) -lt 2000 ]"
expect "... seq 10, logged as closed by-us" \
	bash -c "[ '$(field_of a M10 1)' = 10 ] &&
		grep -qE '^close $(field_of a M10 2) [0-9]+ by-us\$' '$TMP/a.arrivals'"

# close-mid, read raw: SB and the start of the ACK, no end block, then EOF.
exec 3<>/dev/tcp/127.0.0.1/$R1
{
	printf '\013'
	cat "$TMP/M11.hl7"
	printf '\034\r'
} >&3
timeout 5 cat <&3 >"$TMP/mid.bin"
rc=$?
exec 3<&-
expect "rule 11:close-mid: the receiver closed after part of a frame (rc $rc)" \
	bash -c "[ $rc -eq 0 ] && [ \$(head -c 1 '$TMP/mid.bin' | od -An -tx1 | tr -d ' ') = 0b ] &&
		grep -q 'MSH|' '$TMP/mid.bin' && ! grep -q \$'\\x1c' '$TMP/mid.bin' &&
		[ \$(wc -c <'$TMP/mid.bin') -gt 20 ]"
expect "... it was seq 11" test "$(field_of a M11 1)" = 11

out=$(send -t 3000 127.0.0.1:$R1 "$TMP/M12.hl7")
expect "rule 12:nak2: a release-2 commit NAK block" test "$out" = "R2_NAK"

out=$(send -t 3000 127.0.0.1:$R1 "$TMP/M13.hl7" "$TMP/M14.hl7")
expect "rule 13:cr: MSA-1 CR (enhanced codes too)" grep -q 'MSA|CR|M13 | ERR|' <<<"$out"
expect "MSH10=M14:wrong-msa2=NOT-M14: MSA-2 is the value given" \
	grep -q 'MSA|AA|NOT-M14$' <<<"$out"

out=$(send -t 3000 127.0.0.1:$R1 "$TMP/junk.hl7")
last=$(arrivals a | tail -n 1)
expect "a payload without MSH: AR naming the reason, logged with MSH-10 '-'" \
	bash -c "grep -q 'MSA|AR| | ERR|' <<<'$out' && grep -q 'no MSH segment' <<<'$out' &&
		grep -qE '^15 [0-9]+ [^ ]+ - 15 [0-9]+\$' <<<'$last'"
expect "-v on stderr names the action per message, without the body" \
	bash -c "grep -q '#4 conn 2 M4: AE' '$TMP/a.out' && grep -q '#15 conn [0-9]* -: AR' '$TMP/a.out' &&
		! grep -q PATIENT '$TMP/a.out'"

stop_recv $A
expect "SIGTERM: exit 0" test $? -eq 0
expect "... the log holds 15 message lines, the last one flushed" \
	test "$(arrivals a | wc -l)" -eq 15

# ---- release 2, a default code, a global delay ----
start_recv r2 $R2 --release 2 --rule 2:noack || exit 1
out=$(send -t 800 127.0.0.1:$R2 "$TMP/R1.hl7" "$TMP/R2.hl7")
rc=$?
expect "--release 2: a commit ACK block for the first, none for rule 2:noack (rc $rc)" \
	bash -c "[ '$out' = R2_ACK ] && [ $rc -eq 1 ]"
stop_recv $RECV_PID
expect "SIGTERM with a connection just closed: exit 0" test $? -eq 0

start_recv codes $R2 --ack CE --delay 1000 --rule 2:aa --rule 2:delay=0 || exit 1
t0=$(now_ms)
out=$(send -t 3000 127.0.0.1:$R2 "$TMP/C1.hl7")
t1=$(now_ms)
expect "--ack CE --delay 1000: CE for every message, 1000 ms late ($((t1 - t0)) ms)" \
	bash -c "grep -q 'MSA|CE|C1 | ERR|' <<<'$out' && [ $((t1 - t0)) -ge 1000 ]"
t0=$(now_ms)
out=$(send -t 3000 127.0.0.1:$R2 "$TMP/C2.hl7")
t1=$(now_ms)
expect "... a rule overrides both for its message: AA at once ($((t1 - t0)) ms)" \
	bash -c "grep -q 'MSA|AA|C2' <<<'$out' && [ $((t1 - t0)) -lt 1000 ]"
stop_recv $RECV_PID
expect "SIGTERM: exit 0" test $? -eq 0

# ---- --max-conns and --idle-timeout ----
start_recv lim $R3 --idle-log --max-conns 1 --idle-timeout 1500 || exit 1
exec 4<>/dev/tcp/127.0.0.1/$R3
expect "a held connection is open 1" wait_until 5 "grep -q '^open 1 ' '$TMP/lim.arrivals'"
out=$(send -t 1000 127.0.0.1:$R3 "$TMP/R3.hl7")
rc=$?
expect "--max-conns 1: a second connection is closed unanswered (rc $rc) and logged refuse 2" \
	bash -c "[ $rc -eq 1 ] && [ -z '$out' ] &&
		grep -qE '^refuse 2 127\.0\.0\.1:[0-9]+ [0-9]+$' '$TMP/lim.arrivals'"
expect "--idle-timeout 1500: the silent connection is closed by-us" \
	wait_until 5 "grep -qE '^close 1 [0-9]+ by-us$' '$TMP/lim.arrivals'"
exec 4<&-
out=$(send -t 3000 127.0.0.1:$R3 "$TMP/R3.hl7")
expect "... then a new connection (conn# 3) is served" \
	bash -c "grep -q 'MSA|AA|R3' <<<'$out' && [ '$(field_of lim R3 2)' = 3 ]"
stop_recv $RECV_PID
expect "SIGTERM: exit 0" test $? -eq 0

# ---- --answer-log: answer times, and overlap when two are in flight ----
start_recv fl $R4 --idle-log --answer-log --rule 1:delay=800 --rule 3:noack || exit 1
send -t 3000 127.0.0.1:$R4 "$TMP/F1.hl7" >"$TMP/f1.txt" &
f1=$!
wait_until 5 "grep -q '^1 ' '$TMP/fl.arrivals'"
out=$(send -t 3000 127.0.0.1:$R4 "$TMP/F2.hl7")
wait $f1
expect "F2 on a second connection while F1's ACK is delayed: overlap 2 2 1" \
	bash -c "grep -q 'MSA|AA|F2' <<<'$out' && grep -q 'MSA|AA|F1' '$TMP/f1.txt' &&
		grep -qE '^overlap 2 2 1 [0-9]+\$' '$TMP/fl.arrivals'"
a1=$(field_of fl F1 6)
w1=$(awk '$1 == "answer" && $2 == 1 && $3 == 1 && $4 == "AA" {print $5}' "$TMP/fl.arrivals")
w2=$(awk '$1 == "answer" && $2 == 2 && $3 == 2 && $4 == "AA" {print $5}' "$TMP/fl.arrivals")
expect "answer lines: seq 2 answered first, seq 1 800 ms or more after it arrived ($((${w1:-0} - a1)) ms)" \
	bash -c "[ -n '$w1' ] && [ -n '$w2' ] && [ '$w2' -le '$w1' ] && [ $((${w1:-0} - a1)) -ge 800 ]"
out=$(send -t 500 127.0.0.1:$R4 "$TMP/F3.hl7")
expect "rule 3:noack: no answer, no answer line" \
	bash -c "[ -z '$out' ] && ! grep -q '^answer 3 ' '$TMP/fl.arrivals'"
expect "... its connection closed by the sender" \
	wait_until 5 "grep -qE '^close $(field_of fl F3 2) [0-9]+ by-peer$' '$TMP/fl.arrivals'"
out=$(send -t 3000 127.0.0.1:$R4 "$TMP/F4.hl7")
expect "... after which a message is in flight alone: AA, answer 4, no overlap line" \
	bash -c "grep -q 'MSA|AA|F4' <<<'$out' && grep -qE '^answer 4 [0-9]+ AA [0-9]+\$' '$TMP/fl.arrivals' &&
		[ \$(grep -c '^overlap ' '$TMP/fl.arrivals') -eq 1 ]"
stop_recv $RECV_PID
expect "SIGTERM: exit 0" test $? -eq 0

out=$("$BIN/mllp-recv" -l 127.0.0.1:$R3 -o "$TMP/bad.arrivals" --rule 3:explode 2>&1)
rc=$?
expect "an unknown rule action is a usage error (exit 2)" \
	bash -c "[ $rc -eq 2 ] && grep -q 'unknown rule action' <<<'$out'"
finish
