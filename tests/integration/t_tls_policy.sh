#!/bin/bash
# Invariant 4: an upstream that offers only TLS 1.1, only CBC suites, a
# certificate from another CA or for another name gets no message; the
# messages stay spooled with the reason, and go out once the upstream is fixed.
. tests/integration/lib.sh

MLLP=10962 UP=18442 OBS_PORT=19142
CONF=$TMP/bridge.yaml
cat >"$CONF" <<EOF
gate: open # no tunnels: the bridge alone
spool: $TMP/spool.db
observability: { listen: 127.0.0.1:$OBS_PORT }
retry: { initial: 200ms, max: 400ms }
integrations:
  - name: lab
    listen: 127.0.0.1:$MLLP
    sources: [127.0.0.1]
    order: integration
    upstream: { url: "https://localhost:$UP/v1", ca_file: $CERTS/ca.pem, timeout: 2s }
EOF
start_bridge "$CONF" $MLLP || exit 1

# refused NAME SINK-ARGS...: the sink must never see the message.
refused() {
	name=$1
	shift
	start_sink "$name" $UP "$@" || return 1
	hl7_msg "TLS-$name" >"$TMP/$name.hl7"
	out=$("$BIN/mllp-send" 127.0.0.1:$MLLP "$TMP/$name.hl7")
	expect "$name: the sender still gets AA (the message is stored)" \
		grep -q "MSA|AA|TLS-$name" <<<"$out"
	sleep 1.5
	expect "$name: the upstream received nothing" test "$(sink_count "$name")" -eq 0
	expect "$name: the message stays queued, and the row says why" \
		bash -c "spool list --state queued | grep 'TLS-$name' | grep -qiE 'proto|ssl|tls|certif'"
	stop_pid "$SINK_PID"
}

refused tls11 --tls 1.1
refused cbc --tls 1.2 --cert "$CERTS/server-rsa.pem" --key "$CERTS/server-rsa.key" \
	--ciphers "ECDHE-RSA-AES128-SHA256:ECDHE-RSA-AES128-SHA:AES128-SHA256"
refused otherca --cert "$CERTS/other-server.pem" --key "$CERTS/other-server.key"
refused wrongname --cert "$CERTS/wrong.pem" --key "$CERTS/wrong.key"

# A compliant upstream gets all four, in order (order: integration).
start_sink good $UP --tls policy || exit 1
expect "a policy-compliant upstream receives every held message" \
	wait_until 15 'test "$(sink_count good)" -eq 4'
expect "... in the order they were received" \
	test "$(cut -f11 "$TMP/good/requests.log" | tr '\n' ' ')" = \
	"TLS-tls11 TLS-cbc TLS-otherca TLS-wrongname "
expect "... over TLS 1.2 or 1.3 with an AEAD suite" \
	grep -qE 'TLSv1\.[23].*(GCM|CHACHA20)' "$TMP/good/connections.log"
finish
