#!/bin/bash
# SFTP file channels against a real OpenSSH sshd (internal-sftp, chroot,
# key-only) in a network namespace: pull with an RSA 3072 key (HL7 batch
# split) and an Ed25519 key (C-CDA, after: delete), a file refused before
# the spool and one refused by the upstream (both to error/ with a reason),
# a file still being written, the host key pin set (the announced next key
# is taken, an unknown one refused), a client key rotation without a failed
# session, and push (name.part, then rename) with a server that goes away.
. tests/integration/lib.sh
. tests/integration/sshd-lib.sh

# Ports (loopback): 18710 upstream sink, 18711 refusing sink, 18712 HTTPS,
# 18713 /metrics. sshd: $SSHD_NET.2:22 in the namespace (198.51.100.2).
UP=18710 UP_BAD=18711 HTTPS=18712 OBS_PORT=18713
NS=sftp$$
SRV=$SSHD_NET.2
CONF=$TMP/bridge.yaml
TOKEN=sftp-files-test-token-0123456789
export CONF OBS_PORT

sshd_setup || exit 1
sshd_netns "$NS" || exit 1
sshd_start "$NS" "$SRV" 22 || exit 1
for d in docs bounce; do
	mkdir -m 0755 "$SSHD_ROOT/$d" && chown "$SSHD_USER:$SSHD_GROUP" "$SSHD_ROOT/$d"
done
mkdir -p "$TMP/keys"
ssh-keygen -q -t rsa -b 3072 -N '' -C lab -f "$TMP/keys/lab.key" &&
	ssh-keygen -q -t ed25519 -N '' -C docs -f "$TMP/keys/docs.key" &&
	ssh-keygen -q -t ed25519 -N '' -C push -f "$TMP/keys/push.key" &&
	ssh-keygen -q -t rsa -b 4096 -N '' -C push-rsa -f "$TMP/keys/push-rsa.key" || exit 1
for k in lab docs push push-rsa; do sshd_authorize "$TMP/keys/$k.key.pub"; done
# "Accepted publickey for nobody from ... ssh2: RSA SHA256:..." names the key
fpr() { ssh-keygen -lf "$TMP/keys/$1.key.pub" | cut -d' ' -f2 | sed 's/+/[+]/g'; }
printf '%s *\n' "$TOKEN" >"$TMP/tokens"
chmod 600 "$TMP/tokens"
start_sink up "$UP" || exit 1
start_sink bad "$UP_BAD" --status 422 || exit 1

# The pins: the host keys sshd serves, and the next one it will serve.
pins() {
	{
		sshd_pin
		sshd_next_pin
	} | sed 's/^/        - /'
}

# sftp_block KEY DIR [MORE...]: one channel's sftp: mapping.
sftp_block() {
	local key=$1 dir=$2
	shift 2
	printf '    sftp:\n      server: %s:22\n      user: %s\n      key: %s\n' "$SRV" \
		"$SSHD_USER" "$TMP/keys/$key.key"
	printf '      host_keys:\n'
	pins
	printf '      dir: %s\n      timeout: 10s\n' "$dir"
	for kv in "$@"; do printf '      %s\n' "$kv"; done
}

upstream() { printf '    upstream: { url: "https://localhost:%s/v1", ca_file: %s, timeout: 5s }\n' "$1" "$CERTS/ca.pem"; }

# write_conf [closed]: three pull channels and a push channel; gate open
# (the bridge alone), or closed behind a tunnel whose remote_ts holds the
# server (the supervisor's stand-in, ipc-send, then says when it is up).
write_conf() {
	{
		if [ "${1:-}" = closed ]; then
			printf 'tunnels:\n  - name: hosp\n    source: swanctl\n    children:\n'
			printf '      - { name: hosp-sftp, local_ts: [%s.1/32], remote_ts: [%s.0/24] }\n' "$SSHD_NET" "$SSHD_NET"
		else
			printf 'gate: open\n'
		fi
		printf 'spool: %s\n' "$TMP/spool.db"
		printf 'observability: { listen: 127.0.0.1:%s }\n' "$OBS_PORT"
		printf 'retry: { initial: 100ms, max: 400ms }\nintegrations:\n'
		printf '  - name: lab\n'
		sftp_block lab /inbox 'glob: "*.hl7"' 'interval: 1s' 'split: hl7-batch'
		upstream "$UP"
		printf '  - name: docs\n'
		sftp_block docs /docs 'glob: "*.xml"' 'interval: 1s' 'after: delete' \
			'content_type: application/xml'
		upstream "$UP"
		printf '  - name: bounce\n'
		sftp_block docs /bounce 'interval: 1s'
		upstream "$UP_BAD"
		printf 'destinations:\n  - name: lis-files\n'
		sftp_block push /outbox
		printf '    max_attempts: 5\n'
		printf '  - name: lis-rsa\n'
		sftp_block push-rsa /outbox
		printf 'https:\n  listen: 127.0.0.1:%s\n  cert: %s\n  key: %s\n  tokens_file: %s\n' \
			"$HTTPS" "$CERTS/server.pem" "$CERTS/server.key" "$TMP/tokens"
	} >"$CONF"
}
write_conf

"$BIN/mllp-bridge" -c "$CONF" -n >"$TMP/check.out" 2>&1
expect "the configuration with three pull channels and a push channel is valid" \
	test $? -eq 0
cat "$TMP/check.out"

# start: lib.sh's start_obridge (mllp-bridge -c $CONF, up once $HTTPS answers)
start() { start_obridge; }

# headers of the sink's request SEQ, and one of them
sink_header() { grep -i "^$3:" "$TMP/$1/headers/$2" | head -n 1 | cut -d' ' -f2- | tr -d '\r'; }
seq_of_key() { awk -F'\t' -v k="$2" '$4 == k {print $1; exit}' "$TMP/$1/requests.log"; }
qlen() { metric 'mllp_sftp_queued\{channel="lis-files"' 2>/dev/null; }
mismatches() { metric 'mllp_sftp_sessions_total\{channel="docs",direction="pull",outcome="hostkey_mismatch"' 2>/dev/null; }

# ---- pull: an HL7 batch (RSA 3072 key) ------------------------------------

T0=$(date +%s%N)
start
hl7_batch B-1 B-2 B-3 | sshd_put inbox batch-0001.hl7
printf 'MSH|^~\\&|LAB|HOSP|EDGE|CLOUD|20261201||ADT^A01|W-1|P|2.5.1\r' >"$TMP/w.part"
install -o "$SSHD_USER" -m 0644 "$TMP/w.part" "$SSHD_ROOT/inbox/writing.hl7.part"
expect "the three messages of the batch reach the upstream" wait_until 20 '[ "$(sink_count up)" -ge 3 ]'
lap "batch delivered"
expect "in the batch's order, one request per message (MSH-10 B-1 B-2 B-3)" \
	test "$(sink_field up 11 | head -n 3 | tr '\n' ' ')" = "B-1 B-2 B-3 "
first=$(sink_field up 4 | head -n 1)
expect "the Idempotency-Key is derived from the file (f + 40 hex, -index): $first" \
	grep -qE '^f[0-9a-f]{40}-0$' <<<"$first"
expect "the three keys share the file's prefix and count up" \
	test "$(sink_field up 4 | head -n 3 | sed 's/-[0-9]*$//' | sort -u | wc -l)" -eq 1
expect "X-File-Name names the batch file" \
	test "$(sink_header up 1 X-File-Name)" = "batch-0001.hl7"
expect "Content-Type is the channel's (application/hl7-v2)" \
	test "$(sink_field up 7 | head -n 1)" = "application/hl7-v2"
expect "X-Integration is the channel's name" test "$(sink_field up 6 | head -n 1)" = lab
printf 'MSH|^~\\&|LAB|HOSP|EDGE|CLOUD|20261201080000||ORU^R01^ORU_R01|B-2|P|2.5.1\rPID|1||MRN-B-2^^^HOSP^MR||PATIENT^B-2\rOBX|1|NM|GLU||3|mg/dL\r' >"$TMP/b2.hl7"
expect "each request body is one message, segments ended by CR (B-2 byte-exact)" \
	cmp -s "$TMP/b2.hl7" "$TMP/up/bodies/2"
expect "once delivered, the file moves to inbox/done" \
	wait_until 10 '[ -f "$SSHD_ROOT/inbox/done/batch-0001.hl7" ] && [ ! -e "$SSHD_ROOT/inbox/batch-0001.hl7" ]'
expect "spool files says done" wait_until 5 \
	'"$BIN/mllp-bridge" -c "$CONF" spool files | grep batch-0001.hl7 | grep -q done'
expect "a .part file is never taken" test -f "$SSHD_ROOT/inbox/writing.hl7.part"
expect "mllp_sftp_files_total{outcome=stored} counts the file" \
	test "$(metric 'mllp_sftp_files_total\{channel="lab",direction="pull",outcome="stored"')" -eq 1
expect "mllp_sftp_messages_total counts its three messages" \
	test "$(metric 'mllp_sftp_messages_total\{channel="lab"')" -eq 3
expect "the RSA 3072 key authenticated (sshd: Accepted publickey ... RSA <its fingerprint>)" \
	test "$(sshd_log_count "Accepted publickey for nobody .* RSA $(fpr lab)")" -ge 1
expect "no patient data (PATIENT^B, MRN-) in the bridge's log" \
	bash -c "! grep -qE 'PATIENT\\^B|MRN-B' '$TMP/bridge.log'"

# ---- pull: C-CDA with an Ed25519 key, after: delete ----------------------

n0=$(sink_count up)
sshd_put docs ccd-1.xml <"$SAMPLES/ccd_minimal.xml"
expect "the C-CDA document reaches the upstream whole" wait_until 20 '[ "$(sink_count up)" -gt '"$n0"' ]'
seq=$((n0 + 1))
expect "byte for byte" cmp -s "$SAMPLES/ccd_minimal.xml" "$TMP/up/bodies/$seq"
expect "as application/xml, X-File-Name ccd-1.xml" \
	test "$(sink_header up "$seq" Content-Type)/$(sink_header up "$seq" X-File-Name)" = \
	"application/xml/ccd-1.xml"
expect "an unsplit file's key has no index" grep -qE '^f[0-9a-f]{40}$' <<<"$(sink_field up 4 | sed -n "${seq}p")"
expect "after: delete removes it from the server" wait_until 10 '[ ! -e "$SSHD_ROOT/docs/ccd-1.xml" ]'
expect "the Ed25519 key authenticated" \
	test "$(sshd_log_count "Accepted publickey for nobody .* ED25519 $(fpr docs)")" -ge 1

# ---- refusals: before the spool, and by the upstream ----------------------

n0=$(sink_count up)
hl7_batch C-1 C-2 | sed 's/BTS|2/BTS|3/' | sshd_put inbox bad-count.hl7
expect "a batch whose BTS-1 count is wrong goes to inbox/error" \
	wait_until 20 '[ -f "$SSHD_ROOT/inbox/error/bad-count.hl7" ]'
expect "with a reason file naming BTS-1" grep -q 'BTS-1' "$SSHD_ROOT/inbox/error/bad-count.hl7.reason"
expect "and none of its messages was sent" test "$(sink_count up)" -eq "$n0"
expect "mllp_sftp_files_total{outcome=refused} counts it" \
	test "$(metric 'mllp_sftp_files_total\{channel="lab",direction="pull",outcome="refused"')" -eq 1

printf 'not a document the upstream wants\n' | sshd_put bounce reject-me.txt
expect "a file the upstream refuses (422) goes to bounce/error after its dead letter" \
	wait_until 30 '[ -f "$SSHD_ROOT/bounce/error/reject-me.txt" ]'
expect "its reason file quotes the upstream's answer" \
	grep -q '422' "$SSHD_ROOT/bounce/error/reject-me.txt.reason"
expect "the bad sink saw it once (a 4xx is not retried)" test "$(sink_count bad)" -eq 1

# ---- a file still being written --------------------------------------------

n0=$(sink_count up)
: >"$TMP/grow.xml"
install -o "$SSHD_USER" -m 0644 "$TMP/grow.xml" "$SSHD_ROOT/docs/growing.xml"
for i in $(seq 1 12); do
	printf '<line n="%s"/>\n' "$i" >>"$SSHD_ROOT/docs/growing.xml"
	sleep 0.4
done
expect "a file that grows at every listing is not taken while it grows" \
	test "$(sink_count up)" -eq "$n0"
expect "once it stops growing it is taken, complete" wait_until 20 '[ "$(sink_count up)" -gt '"$n0"' ]'
expect "with all 12 lines" test "$(grep -c '<line' "$TMP/up/bodies/$((n0 + 1))")" -eq 12

# ---- client key rotation: <key>.next is tried first, no session fails ----

errors() { metric 'mllp_sftp_sessions_total\{channel="lab",direction="pull",outcome="error"'; }
flows() { # flows NAME ID: a one-message batch NAME reaches the upstream
	local n0
	n0=$(sink_count up)
	hl7_batch "$2" | sshd_put inbox "$1"
	wait_until 20 '[ "$(sink_count up)" -gt '"$n0"' ]' && [ "$(sink_field up 11 | tail -n 1)" = "$2" ]
}
e0=$(errors)
ssh-keygen -q -t ed25519 -N '' -C lab-next -f "$TMP/keys/lab.key.next" || exit 1
expect "with <key>.next unknown to the server, files still flow (the old key is tried second)" \
	flows rot-1.hl7 R-1
expect "mllp_sftp_next_key_present is 1, mllp_sftp_next_key_in_use 0" \
	test "$(metric 'mllp_sftp_next_key_present\{channel="lab"')/$(metric 'mllp_sftp_next_key_in_use\{channel="lab"')" = 1/0
grep -v ' lab$' "$SSHD_DIR/etc/authorized_keys" >"$TMP/ak" && cat "$TMP/keys/lab.key.next.pub" >>"$TMP/ak"
cat "$TMP/ak" >"$SSHD_DIR/etc/authorized_keys"
expect "once the server has only the new key, files still flow" flows rot-2.hl7 R-2
expect "and mllp_sftp_next_key_in_use says the new key works" \
	test "$(metric 'mllp_sftp_next_key_in_use\{channel="lab"')" -eq 1
mv "$TMP/keys/lab.key.next" "$TMP/keys/lab.key" && mv "$TMP/keys/lab.key.next.pub" "$TMP/keys/lab.key.pub"
expect "after the retirement (<key>.next renamed over <key>) files still flow" flows rot-3.hl7 R-3
expect "no session failed during the whole rotation" test "$(errors)" -eq "$e0"

# ---- push: upstream → edge → the hospital's folder --------------------------

post() { # post FILE [CURL ARGS...]: prints the status; the body in $TMP/last.body
	local file=$1
	shift
	curl -s --max-time 30 --cacert "$CERTS/ca.pem" -H "Authorization: Bearer $TOKEN" \
		-H 'Content-Type: x-application/hl7-v2+er7' --data-binary "@$file" \
		-o "$TMP/last.body" -w '%{http_code}\n' "$@" \
		"https://127.0.0.1:$HTTPS/v1/destinations/lis-files/messages"
}
printf 'MSH|^~\\&|CLOUD|ACME|LIS|HOSP|20261201||ORM^O01|P-1|P|2.5.1\rPID|1||P1^^^HOSP^MR\r' >"$TMP/p1.hl7"
expect "a POST with X-File-Name is accepted (202)" \
	test "$(post "$TMP/p1.hl7" -H 'X-File-Name: result%201.hl7')" = 202
expect "the file appears in outbox under that (decoded) name, byte-exact" \
	wait_until 15 'cmp -s "$TMP/p1.hl7" "$SSHD_ROOT/outbox/result 1.hl7"'
expect "no .part file is left behind" bash -c "! ls '$SSHD_ROOT/outbox' | grep -q '\.part$'"
expect "written by the push key's owner through sftp (fsync@openssh.com used)" \
	grep -q 'sftp_file_written.*synced=1' "$TMP/bridge.log"
expect "the push used its Ed25519 key" \
	test "$(sshd_log_count "Accepted publickey for nobody .* ED25519 $(fpr push)")" -ge 1
post_to() { # post_to DEST FILE NAME: the status of a POST with X-File-Name
	curl -s --max-time 30 --cacert "$CERTS/ca.pem" -H "Authorization: Bearer $TOKEN" \
		-H 'Content-Type: x-application/hl7-v2+er7' --data-binary "@$2" -H "X-File-Name: $3" \
		-o "$TMP/last.body" -w '%{http_code}\n' "https://127.0.0.1:$HTTPS/v1/destinations/$1/messages"
}
expect "a push destination with an RSA 4096 key takes a file too (202)" \
	test "$(post_to lis-rsa "$TMP/p1.hl7" rsa-1.hl7)" = 202
expect "... and writes it, byte-exact" wait_until 15 'cmp -s "$TMP/p1.hl7" "$SSHD_ROOT/outbox/rsa-1.hl7"'
expect "signing in with the RSA key (rsa-sha2: sshd names the key's fingerprint)" \
	test "$(sshd_log_count "Accepted publickey for nobody .* RSA $(fpr push-rsa)")" -ge 1
expect "X-File-Name with a folder is refused (400)" \
	test "$(post "$TMP/p1.hl7" -H 'X-File-Name: ../escape.hl7')" = 400
expect "... and says why" grep -q "X-File-Name" "$TMP/last.body"
expect "without X-File-Name the file is named <destination>-<id>.hl7" \
	test "$(post "$TMP/p1.hl7")" = 202
expect "... and is written" wait_until 15 'ls "$SSHD_ROOT/outbox" | grep -qE "^lis-files-[0-9]+\.hl7$"'
sshd_stop
expect "with the server down a POST is still accepted (202)" \
	test "$(post "$TMP/p1.hl7" -H 'X-File-Name: while-down.hl7')" = 202
expect "mllp_sftp_queued shows it waiting" \
	wait_until 10 '[ "$(qlen)" = 1 ]'
sshd_start "$NS" "$SRV" 22 || exit 1
expect "once the server is back the file is written" \
	wait_until 20 '[ -f "$SSHD_ROOT/outbox/while-down.hl7" ]'
expect "and the queue is empty" wait_until 5 '[ "$(qlen)" = 0 ]'

# ---- fail closed: with gate: closed a server is contacted only while a
# CHILD_SA covering it is installed (ipc-send stands in for the supervisor)

stop_pid "$BRIDGE_PID"
write_conf closed
expect "the closed-gate configuration (server inside the tunnel's remote_ts) is valid" \
	"$BIN/mllp-bridge" -c "$CONF" -n
rm -f "$TMP/ctl" && mkfifo "$TMP/ctl"
"$BIN/ipc-send" "$BIN/mllp-bridge" -c "$CONF" <"$TMP/ctl" >"$TMP/ipc.out" 2>>"$TMP/bridge.log" &
LINK_PID=$!
PIDS="$PIDS $LINK_PID"
exec 3>"$TMP/ctl"
wait_until 10 "port_open 127.0.0.1 $HTTPS" || {
	echo "not ok - the linked bridge did not start"
	exit 1
}
waiting() { metric 'mllp_sftp_waiting_gate\{channel="lab"' 2>/dev/null; }
sessions() { sshd_log_count 'Accepted publickey'; }
s0=$(sessions)
n0=$(sink_count up)
hl7_batch G-1 | sshd_put inbox gated.hl7
expect "no SA yet: mllp_sftp_waiting_gate is 1" wait_until 10 '[ "$(waiting)" = 1 ]'
sleep 3
expect "and the server was never contacted (no session in sshd's log)" test "$(sessions)" -eq "$s0"
expect "nothing was taken" test "$(sink_count up)" -eq "$n0"
echo "gate $SSHD_NET.0/24" >&3
expect "once the SA covering the server is reported, the file is taken and delivered" \
	wait_until 20 '[ "$(sink_count up)" -gt '"$n0"' ] && [ "$(sink_field up 11 | tail -n 1)" = G-1 ]'
expect "mllp_sftp_waiting_gate is 0" test "$(waiting)" = 0
echo "gate" >&3
expect "when the SA goes, the channel waits again" wait_until 10 '[ "$(waiting)" = 1 ]'
sleep 1.5 # a session under way when the gate closed finishes
s0=$(sessions)
n0=$(sink_count up)
hl7_batch G-2 | sshd_put inbox gated-2.hl7
sleep 3
expect "and contacts the server no more" test "$(sessions)" -eq "$s0"
expect "a file put meanwhile stays on the server" test -f "$SSHD_ROOT/inbox/gated-2.hl7"
echo "gate $SSHD_NET.0/24" >&3
expect "it is taken once the SA is back" \
	wait_until 20 '[ "$(sink_field up 11 | tail -n 1)" = G-2 ]'
(echo close >&3) 2>/dev/null
exec 3>&-
wait "$LINK_PID"
PIDS=$(echo "$PIDS" | tr ' ' '\n' | grep -vx "$LINK_PID" | tr '\n' ' ')
write_conf
start

# ---- host keys: the announced next key, then an unknown one ---------------

sshd_rotate_hostkey || exit 1
n0=$(sink_count up)
sshd_put docs after-rotation.xml <"$SAMPLES/ccd_minimal.xml"
expect "after the server switched to the announced next host key, files still flow" \
	wait_until 20 '[ "$(sink_count up)" -gt '"$n0"' ]'
expect "without a host key mismatch" test "$(mismatches)" -eq 0
sshd_rotate_hostkey || exit 1 # a key nobody pinned
pk0=$(sshd_log_count 'publickey')
n0=$(sink_count up)
sshd_put docs unpinned.xml <"$SAMPLES/ccd_minimal.xml"
expect "an unknown host key is refused: mllp_sftp_sessions_total{outcome=hostkey_mismatch} > 0" \
	wait_until 10 '[ "$(mismatches)" -gt 0 ]'
expect "and logged as sftp_hostkey_mismatch with the offered fingerprint" \
	grep -qE 'sftp_hostkey_mismatch.*SHA256:' "$TMP/bridge.log"
sleep 2
expect "nothing was taken from that server" test "$(sink_count up)" -eq "$n0"
expect "the file is still there" test -f "$SSHD_ROOT/docs/unpinned.xml"
expect "no key was offered to it (sshd logged no publickey attempt since)" \
	test "$(sshd_log_count 'publickey')" -eq "$pk0"
