#!/bin/bash
# Outbound path, kill -9: a client posts 200 messages one after the other
# (retrying with the same Idempotency-Key until it gets an answer, as the
# API asks) while the receiver delays its ACKs; the bridge is killed with
# SIGKILL mid-way and restarted. Every accepted message reaches the
# receiver, first arrivals in post order, duplicates only byte-identical
# (same MSH-10), one row per message, all acked in the end.
. tests/integration/lib.sh

# Ports (loopback): 10999 the unused inbound listener, 18494 HTTPS,
# 18495 /metrics, 18499 the receiver.
MLLP=10999 HTTPS=18494 OBS_PORT=18495 P_LAB=18499 N=${N:-200}
CONF=$TMP/bridge.yaml
TOKEN=outbound-crash-token-0123456789
printf '%s lab\n' "$TOKEN" >"$TMP/tokens"
chmod 600 "$TMP/tokens"
{
	outbound_conf_head 18498
	cat <<EOF
destinations:
  - { name: lab, address: 127.0.0.1:$P_LAB, ack_timeout: 5s }
https:
  listen: 127.0.0.1:$HTTPS
  cert: $CERTS/server.pem
  key: $CERTS/server.key
  tokens_file: $TMP/tokens
EOF
} >"$CONF"

mkdir -p "$TMP/msgs"
start_recv recv $P_LAB --delay 30 || exit 1
for i in $(seq -f '%03g' 1 "$N"); do
	printf 'MSH|^~\\&|CLOUD|ACME|LIS|HOSP|20261130120000||ORM^O01^ORM_O01|K%s|P|2.5.1\rPID|1||%s^^^HOSP^MR||DOE^JANE\rORC|NW|K%s\r' \
		"$i" "$i" "$i" >"$TMP/msgs/K$i"
done

# The client: one message after the other; a message without a 2xx answer
# (the bridge is down) is sent again with its Idempotency-Key. Logs
# "MSH-10 STATUS LOCATION TRIES".
poster() {
	local i code tries
	for i in $(seq -f '%03g' 1 "$N"); do
		tries=0
		while :; do
			tries=$((tries + 1))
			code=$(curl -s --max-time 10 --cacert "$CERTS/ca.pem" \
				-H "Authorization: Bearer $TOKEN" -H 'Content-Type: x-application/hl7-v2+er7' \
				-H "Idempotency-Key: crash-K$i" --data-binary "@$TMP/msgs/K$i" -o /dev/null \
				-w '%{http_code} %header{location}' \
				"https://127.0.0.1:$HTTPS/v1/destinations/lab/messages")
			case "$code" in 202* | 200*) break ;; esac
			[ "$tries" -ge 300 ] && break
			sleep 0.05
		done
		echo "K$i $code $tries"
	done
}

start_obridge
T0=$(date +%s%N)
poster >"$TMP/posted" 2>&1 &
POSTER=$!
PIDS="$PIDS $POSTER"
expect "the receiver is getting messages before the kill" wait_until 30 'test "$(nmsg recv)" -ge 60'
before=$(nmsg recv) posted_before=$(wc -l <"$TMP/posted")
kill -9 "$BRIDGE_PID"
wait "$BRIDGE_PID" 2>/dev/null
PIDS=$(echo "$PIDS" | tr ' ' '\n' | grep -vx "$BRIDGE_PID" | tr '\n' ' ')
lap "killed with $before arrivals, $posted_before posts answered"
expect "the kill came mid-way: posts and sends both unfinished ($posted_before posted, $before arrived of $N)" \
	test "$posted_before" -lt "$N" -a "$before" -lt "$N"
sleep 0.5
start_obridge
wait "$POSTER"
lap "poster done"
acc=$(grep -cE '^K[0-9]+ (202|200) /v1/messages/[0-9]+ ' "$TMP/posted")
expect "every one of the $N messages got a 202 (or a 200 for a repeated key) in the end ($acc)" \
	test "$acc" -eq "$N"
expect "some posts were retried while the bridge was down" \
	awk '$NF > 1 {f = 1} END {exit !f}' "$TMP/posted"
expect "the bridge was started twice" test "$(grep -c 'event=started' "$TMP/bridge.log")" -eq 2
expect "every accepted message reaches the receiver" \
	wait_until 30 'test "$(arrivals recv | sort -u | comm -13 - <(awk "{print \$1}" "$TMP/posted" | sort) | wc -l)" -eq 0'
lap "drained"
missing=$(arrivals recv | sort -u | comm -13 - <(awk '{print $1}' "$TMP/posted" | sort) | wc -l)
echo "# missing at the receiver: $missing; arrivals $(nmsg recv) for $N messages"
first=$(arrivals recv | awk '!seen[$1]++' | tr '\n' ' ')
expect "first arrivals are in post order" test "$first" = "$(awk '{print $1}' "$TMP/posted" | tr '\n' ' ')"
same_bytes() {
	local seq id bad=0
	while read -r seq id; do
		cmp -s "$TMP/recv.d/$seq.hl7" "$TMP/msgs/$id" || { echo "# arrival $seq ($id) differs"; bad=1; }
	done < <(awk '$1 ~ /^[0-9]+$/ {print $1, $4}' "$TMP/recv.rlog")
	return $bad
}
dups=$(arrivals recv | sort | uniq -d | tr '\n' ' ')
echo "# duplicates: ${dups:-none}"
expect "every arrival (duplicates included: ${dups:-none}) is byte-identical to its post" same_bytes
expect "never two messages in flight (the receiver saw no overlap)" \
	bash -c "! grep -q '^overlap ' '$TMP/recv.rlog'"
expect "one outbound row per message (no key enqueued twice)" \
	test "$(sqlite3 "$TMP/spool.db" 'SELECT count(*) FROM messages WHERE channel=1')" -eq "$N"
all_acked() {
	local id j bad=0
	for id in $(awk '{sub(".*/", "", $3); print $3}' "$TMP/posted"); do
		echo "url = \"https://127.0.0.1:$HTTPS/v1/messages/$id\""
		echo "output = \"$TMP/get.$id\""
	done >"$TMP/get.cfg"
	curl -s -Z --parallel-max 16 --cacert "$CERTS/ca.pem" -H "Authorization: Bearer $TOKEN" \
		-K "$TMP/get.cfg" 2>/dev/null
	for id in $(awk '{sub(".*/", "", $3); print $3}' "$TMP/posted"); do
		grep -q '"state":"acked"' "$TMP/get.$id" 2>/dev/null || bad=1
	done
	return $bad
}
expect "GET shows every message acked" wait_until 15 all_acked
lap "checked"
expect "the bridge is still running" kill -0 "$BRIDGE_PID"
finish
