#!/bin/bash
# SFTP file channels and kill -9 (issue 14, invariant 2 of ARCHITECTURE.md):
# a pull killed mid-download (the link slowed with tc), a pull killed after
# the spool but before the move, a push killed mid-write, pulls killed at
# random points round after round, and a dead letter's move to error/ cut
# before its reason file. Nothing is lost, a file is stored once, and a
# message sent twice carries the same Idempotency-Key. About 55 s.
. tests/integration/lib.sh
. tests/integration/sshd-lib.sh

# Ports (loopback): 18720 sink of `big`, 18721 sink of `lab`, 18722 sink of
# `rnd`, 18723 HTTPS, 18724 /metrics, 18726 the refusing sink of `bounce`.
# sshd: $SSHD_NET.2:22 in the namespace (198.51.100.2 unless SSHD_NET says).
UP_BIG=18720 UP_LAB=18721 UP_RND=18722 HTTPS=18723 OBS_PORT=18724 UP_BAD=18726
NS=sftpx$$
SRV=$SSHD_NET.2
CONF=$TMP/bridge.yaml
WORK=$TMP/spool.db.files
TOKEN=sftp-crash-test-token-0123456789
BIG=$((10 << 20))
export CONF OBS_PORT

if ip -br addr | grep -q "${SSHD_NET//./\\.}\\.1/"; then
	echo "not ok - $SSHD_NET.1 is in use on this host (another scenario is running)"
	exit 1
fi
T0=$(date +%s%N)
export T0 # for lap (lib.sh)
sshd_setup || exit 1
sshd_netns "$NS" || exit 1
sshd_start "$NS" "$SRV" 22 || exit 1
for d in big big/done rnd rnd/done bounce bounce/error; do
	mkdir -m 0755 "$SSHD_ROOT/$d" && chown "$SSHD_USER:$SSHD_GROUP" "$SSHD_ROOT/$d"
done
mkdir -p "$TMP/keys"
ssh-keygen -q -t ed25519 -N '' -C crash -f "$TMP/keys/c.key" || exit 1
sshd_authorize "$TMP/keys/c.key.pub"
printf '%s *\n' "$TOKEN" >"$TMP/tokens"
chmod 600 "$TMP/tokens"
start_sink big "$UP_BIG" || exit 1
start_sink lab "$UP_LAB" || exit 1
LAB_SINK=$SINK_PID
# rnd's sink answers 25 ms late (it records first): a kill during those
# 25 ms leaves a message the upstream has and the spool still owes.
start_sink rnd "$UP_RND" --delay-ms 25 || exit 1
start_sink bad "$UP_BAD" --status 422 || exit 1

# sftp_block DIR [MORE...]: one channel's sftp: mapping.
sftp_block() {
	local dir=$1
	shift
	printf '    sftp:\n      server: %s:22\n      user: %s\n      key: %s\n' "$SRV" \
		"$SSHD_USER" "$TMP/keys/c.key"
	printf '      host_keys:\n'
	sshd_pin | sed 's/^/        - /'
	printf '      dir: %s\n      timeout: 10s\n' "$dir"
	for kv in "$@"; do printf '      %s\n' "$kv"; done
}

upstream() { printf '    upstream: { url: "https://localhost:%s/v1", ca_file: %s, timeout: 5s }\n' "$1" "$CERTS/ca.pem"; }

{
	printf 'gate: open\nspool: %s\n' "$TMP/spool.db"
	printf 'observability: { listen: 127.0.0.1:%s }\n' "$OBS_PORT"
	printf 'retry: { initial: 100ms, max: 400ms }\nintegrations:\n'
	printf '  - name: big\n'
	sftp_block /big 'interval: 1s' 'max_file: 32MiB'
	upstream "$UP_BIG"
	printf '  - name: lab\n'
	sftp_block /inbox 'glob: "*.hl7"' 'interval: 1s' 'split: hl7-batch'
	upstream "$UP_LAB"
	printf '  - name: rnd\n'
	sftp_block /rnd 'glob: "*.hl7"' 'interval: 1s' 'split: hl7-batch'
	upstream "$UP_RND"
	printf '  - name: bounce\n'
	sftp_block /bounce 'interval: 1s'
	upstream "$UP_BAD"
	printf 'destinations:\n  - name: lis-files\n'
	sftp_block /outbox 'max_file: 32MiB'
	printf 'https:\n  listen: 127.0.0.1:%s\n  cert: %s\n  key: %s\n  tokens_file: %s\n' \
		"$HTTPS" "$CERTS/server.pem" "$CERTS/server.key" "$TMP/tokens"
	printf '  max_body: 32MiB\n'
} >"$CONF"

"$BIN/mllp-bridge" -c "$CONF" -n >"$TMP/check.out" 2>&1
expect "the configuration (four pull channels, one push channel) is valid" test $? -eq 0
cat "$TMP/check.out"

# start: lib.sh's start_obridge (mllp-bridge -c $CONF, up once $HTTPS answers)
start() { start_obridge; }
# crash: kill -9 the bridge, reaped, out of PIDS. True when it was alive.
crash() {
	local alive=1
	kill -0 "$BRIDGE_PID" 2>/dev/null || alive=0
	kill -9 "$BRIDGE_PID" 2>/dev/null
	wait "$BRIDGE_PID" 2>/dev/null
	PIDS=$(echo "$PIDS" | tr ' ' '\n' | grep -vx "$BRIDGE_PID" | tr '\n' ' ')
	[ "$alive" = 1 ]
}
# tmp_size: bytes of the largest download under way (0 when none)
tmp_size() { stat -c %s "$WORK"/*.tmp 2>/dev/null | sort -n | tail -n 1 | grep . || echo 0; }
sessions() { metric "mllp_sftp_sessions_total\\{channel=\"$1\",direction=\"pull\",outcome=\"ok\""; }
files_of() { "$BIN/mllp-bridge" -c "$CONF" spool files --integration "$1" | tail -n +2; }
rows_of() { sqlite3 "file:$TMP/spool.db?mode=ro" "SELECT count(*) FROM messages WHERE integration = '$1';"; }

# ---- 1. pull, kill -9 mid-download ----------------------------------------

# server -> bridge is the namespace's egress: 20 Mbit/s, a 10 MiB file
# takes about 4 s.
ip netns exec "$NS" tc qdisc add dev eth0 root tbf rate 20mbit burst 32kbit latency 400ms ||
	exit 1
head -c "$BIG" /dev/urandom >"$TMP/big.bin"
start
sshd_put big big.bin <"$TMP/big.bin"
expect "case 1: the download starts (a .tmp under spool.db.files grows past 1 MiB)" \
	wait_until 20 '[ "$(tmp_size)" -gt 1048576 ]'
lap "case 1: download under way"
s1=$(tmp_size)
sleep 0.5
expect "case 1: it is still growing ($s1 bytes, then $(tmp_size)), short of 10 MiB" \
	test "$(tmp_size)" -gt "$s1" -a "$(tmp_size)" -lt "$BIG"
old_tmp=$(find "$WORK" -name '*.tmp' | head -n 1)
expect "case 1: the bridge was alive when killed (kill -9)" crash
expect "case 1: the partial download stays behind after the crash" test -f "$old_tmp"
expect "case 1: nothing reached the upstream" test "$(sink_count big)" -eq 0
start
expect "case 1: the restarted bridge removed the crash's .tmp" test ! -e "$old_tmp"
expect "case 1: the file reaches the upstream after the restart" \
	wait_until 40 '[ "$(sink_count big)" -ge 1 ]'
lap "case 1: delivered"
# (the sink logs a request before its 10 MiB body is on disk: wait for it)
expect "case 1: byte for byte (10 MiB)" wait_until 10 'cmp -s "$TMP/big.bin" "$TMP/big/bodies/1"'
expect "case 1: moved to big/done" \
	wait_until 10 '[ -f "$SSHD_ROOT/big/done/big.bin" ] && [ ! -e "$SSHD_ROOT/big/big.bin" ]'
sleep 1.5
expect "case 1: delivered exactly once (one request, one Idempotency-Key)" \
	test "$(sink_count big)/$(sink_field big 4 | sort -u | wc -l)" = 1/1
expect "case 1: one file record in the spool, done" \
	test "$(files_of big | wc -l)/$(files_of big | grep -c ' done ')" = 1/1
expect "case 1: no download is left in spool.db.files" bash -c "! ls '$WORK' | grep -q ."
ip netns exec "$NS" tc qdisc del dev eth0 root

# ---- 2. pull, kill -9 after the spool, before the move --------------------

stop_pid "$LAB_SINK"
hl7_batch L-1 L-2 L-3 | sshd_put inbox lab-0001.hl7
expect "case 2: the batch is stored (spool files: spooled, 3 rows)" \
	wait_until 20 'files_of lab | grep lab-0001.hl7 | grep -q " spooled "'
expect "case 2: the bridge was alive when killed" crash
expect "case 2: the file is still in inbox (not moved before delivery)" \
	test -f "$SSHD_ROOT/inbox/lab-0001.hl7"
start
expect "case 2: /metrics answers after the restart" wait_until 10 'sessions lab >/dev/null'
s0=$(sessions lab)
expect "case 2: the restarted bridge lists inbox again (3 sessions after the restart)" \
	wait_until 20 "[ \"\$(sessions lab)\" -ge $((s0 + 3)) ]"
expect "case 2: the file is not taken again: one record" test "$(files_of lab | wc -l)" -eq 1
expect "case 2: and 3 rows for lab in the spool" test "$(rows_of lab)" -eq 3
expect "case 2: still in inbox while the upstream is down" test -f "$SSHD_ROOT/inbox/lab-0001.hl7"
# The sink comes back on the same port (recording into lab2): the bridge's
# retries find it, no restart needed.
start_sink lab2 "$UP_LAB" || exit 1
expect "case 2: the upstream gets the three messages" wait_until 20 '[ "$(sink_count lab2)" -ge 3 ]'
expect "case 2: in order (L-1 L-2 L-3)" \
	test "$(sink_field lab2 11 | tr '\n' ' ')" = "L-1 L-2 L-3 "
expect "case 2: with three distinct keys" test "$(sink_field lab2 4 | sort -u | wc -l)" -eq 3
expect "case 2: then the file moves to inbox/done" \
	wait_until 10 '[ -f "$SSHD_ROOT/inbox/done/lab-0001.hl7" ] && [ ! -e "$SSHD_ROOT/inbox/lab-0001.hl7" ]'
sleep 1
expect "case 2: each message once" test "$(sink_count lab2)" -eq 3
lap "case 2 done"

# ---- 3. push, kill -9 mid-write ----------------------------------------------

# bridge -> server is our side's egress.
tc qdisc add dev "v-$NS" root tbf rate 20mbit burst 32kbit latency 400ms || exit 1
{
	printf 'MSH|^~\\&|CLOUD|ACME|LIS|HOSP|20261201||ORU^R01|BIG-1|P|2.5.1\r'
	head -c $((BIG * 3 / 4)) /dev/urandom | base64 -w 76 | sed 's/^/OBX|1|ED|PDF||/' | tr '\n' '\r'
} >"$TMP/push.hl7"
code=$(curl -s --max-time 60 --cacert "$CERTS/ca.pem" -H "Authorization: Bearer $TOKEN" \
	-H 'Content-Type: x-application/hl7-v2+er7' -H 'X-File-Name: big.hl7' \
	--data-binary "@$TMP/push.hl7" -o "$TMP/last.body" -w '%{http_code}' \
	"https://127.0.0.1:$HTTPS/v1/destinations/lis-files/messages")
expect "case 3: a $(stat -c %s "$TMP/push.hl7")-byte POST for the sftp destination is accepted (202)" \
	test "$code" = 202
part=$SSHD_ROOT/outbox/big.hl7.part
expect "case 3: outbox/big.hl7.part appears and passes 1 MiB" \
	wait_until 20 '[ "$(stat -c %s "$part" 2>/dev/null || echo 0)" -gt 1048576 ]'
p1=$(stat -c %s "$part")
sleep 0.5
expect "case 3: it is still growing ($p1 bytes, then $(stat -c %s "$part"))" \
	test "$(stat -c %s "$part")" -gt "$p1"
expect "case 3: the bridge was alive when killed" crash
sleep 0.5
expect "case 3: no outbox/big.hl7 after the crash (a reader never sees half a file)" \
	test ! -e "$SSHD_ROOT/outbox/big.hl7"
expect "case 3: the half-written big.hl7.part stays behind, short of the body" \
	test "$(stat -c %s "$part" 2>/dev/null || echo 0)" -lt "$(stat -c %s "$TMP/push.hl7")" -a -f "$part"
start
expect "case 3: after the restart big.hl7 is written, byte-exact" \
	wait_until 40 'cmp -s "$TMP/push.hl7" "$SSHD_ROOT/outbox/big.hl7"'
expect "case 3: no .part is left" bash -c "! ls '$SSHD_ROOT/outbox' | grep -q '\\.part\$'"
tc qdisc del dev "v-$NS" root
lap "case 3 done"

# ---- 4. pull, kill -9 at random points, round after round -------------------

# Each round puts two batch files (20 and 10 messages, so that a kill can
# land while they are being delivered) and kills the bridge 0.3-3 s later:
# before their listing, mid-download, between the spool and delivery,
# mid-delivery, or around the move (files are taken at the second listing
# after a start, 1 s apart).
ROUNDS=${ROUNDS:-6}
ids() { for i in $(seq 1 "$2"); do printf '%s%02d\n' "$1" "$i"; done; }
for r in $(seq 1 "$ROUNDS"); do
	# shellcheck disable=SC2046 # one id per word
	hl7_batch $(ids "R$r-A" 20) | sshd_put rnd "r$r-a.hl7"
	# shellcheck disable=SC2046
	hl7_batch $(ids "R$r-B" 10) | sshd_put rnd "r$r-b.hl7"
	ms=$((300 + RANDOM % 2701))
	sleep "$((ms / 1000)).$(printf '%03d' $((ms % 1000)))"
	crash || fail "case 4: round $r: the bridge had died before its kill"
	echo "# round $r: killed after $ms ms; rnd requests so far $(sink_count rnd)," \
		"files done $(find "$SSHD_ROOT/rnd/done" -type f | wc -l)"
	start
done
expect "case 4: every file of the $ROUNDS rounds ends in rnd/done" \
	wait_until 40 '[ "$(find "$SSHD_ROOT/rnd/done" -type f | wc -l)" -eq $((2 * ROUNDS)) ]'
lap "case 4: all files done"
NMSG=$((30 * ROUNDS))
want=$(for r in $(seq 1 "$ROUNDS"); do ids "R$r-A" 20; ids "R$r-B" 10; done | sort)
expect "case 4: every message reached the upstream at least once ($NMSG messages, $(sink_count rnd) requests)" \
	test "$(sink_field rnd 11 | sort -u)" = "$want"
# every Idempotency-Key names one message: all its copies have one body
bad=0
while read -r key; do
	n=$(awk -F'\t' -v k="$key" '$4 == k {print $1}' "$TMP/rnd/requests.log" |
		while read -r seq; do sha256sum <"$TMP/rnd/bodies/$seq"; done | sort -u | wc -l)
	[ "$n" -eq 1 ] || bad=$((bad + 1))
done < <(sink_field rnd 4 | sort -u)
expect "case 4: every duplicate carries the key of its first copy (one body per key)" test "$bad" -eq 0
expect "case 4: one key per message (keys $(sink_field rnd 4 | sort -u | wc -l))" \
	test "$(sink_field rnd 4 | sort -u | wc -l)" -eq "$NMSG"
expect "case 4: within each file, first deliveries in order" bash -c '
	for f in $(cut -f 11 "$TMP/rnd/requests.log" | sed "s/[0-9]*$//" | sort -u); do
		got=$(cut -f 11 "$TMP/rnd/requests.log" | grep "^$f" | awk "!s[\$0]++" | tr "\n" " ")
		[ "$got" = "$(printf "%s " $(cut -f 11 "$TMP/rnd/requests.log" | grep "^$f" | sort -u))" ] || exit 1
	done'
expect "case 4: spool files has exactly one record per file ($(files_of rnd | wc -l))" \
	test "$(files_of rnd | awk '{print $3}' | sort | uniq -c | awk '$1 != 1' | wc -l)/$(files_of rnd | wc -l)" = "0/$((2 * ROUNDS))"
echo "# case 4: $(sink_count rnd) requests for $NMSG messages," \
	"$(sink_field rnd 4 | sort | uniq -d | wc -l) keys sent more than once"

# ---- 5. pull, a dead letter's move to error/ cut before its reason file ----

# A file the upstream refuses goes to error/ with a reason file. Here the
# reason file cannot be written at first (a root-owned folder holds its
# name), the bridge is killed meanwhile, and the obstacle then goes: the
# file must end in error/ *with* its reason, as after a kill -9 between the
# two steps. (Before the fix the rename came first: the file sat in error/
# and the reason was never written.)
mkdir -p "$SSHD_ROOT/bounce/error/reject.txt.reason/keep"
m0=$(grep -c 'sftp_move_failed' "$TMP/bridge.log")
printf 'not a document the upstream wants\n' | sshd_put bounce reject.txt
expect "case 5: the upstream refuses the file (422, once)" wait_until 20 '[ "$(sink_count bad)" -eq 1 ]'
expect "case 5: its move to error/ fails while the reason file cannot be written" \
	wait_until 20 '[ "$(grep -c sftp_move_failed "$TMP/bridge.log")" -gt '"$m0"' ]'
expect "case 5: the file stays in bounce/ meanwhile (the move is tried again)" \
	test -f "$SSHD_ROOT/bounce/reject.txt" -a ! -e "$SSHD_ROOT/bounce/error/reject.txt"
expect "case 5: the bridge was alive when killed" crash
rm -rf "$SSHD_ROOT/bounce/error/reject.txt.reason"
start
expect "case 5: after the restart the file reaches bounce/error" \
	wait_until 20 '[ -f "$SSHD_ROOT/bounce/error/reject.txt" ] && [ ! -e "$SSHD_ROOT/bounce/reject.txt" ]'
expect "case 5: with its reason file, quoting the upstream's 422" \
	wait_until 5 'grep -q 422 "$SSHD_ROOT/bounce/error/reject.txt.reason"'
expect "case 5: spool files says error, one record" \
	wait_until 5 '[ "$(files_of bounce | grep -c " error ")/$(files_of bounce | wc -l)" = 1/1 ]'
expect "case 5: the upstream saw it once" test "$(sink_count bad)" -eq 1

stop_pid "$BRIDGE_PID"
lap "end"
expect "the bridge's log has no crash of its own (kill -9 aside)" \
	bash -c "! grep -qE 'assert|Assertion|segfault' '$TMP/bridge.log'"
finish
