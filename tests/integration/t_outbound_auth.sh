#!/bin/bash
# Outbound API: every refusal (401, 403, 404, 413, 415, 422, 400) stores
# nothing and sends nothing; mutual TLS with client_ca (our CA's client
# certificate accepted, another CA's refused at the handshake); the
# listener's TLS policy seen from outside with nmap's ssl-enum-ciphers:
# exactly the seven AEAD suites (EC and RSA server keys).
. tests/integration/lib.sh

# Ports (loopback): 10995 the unused inbound listener, 18492 HTTPS,
# 18493 /metrics, receivers 10997 (lab) and 10998 (ris).
MLLP=10995 HTTPS=18492 OBS_PORT=18493 P_LAB=10997 P_RIS=10998
CONF=$TMP/bridge.yaml
T_LAB=lab-only-token-0123456789abcdef
T_RIS=ris-only-token-0123456789abcdef
T_ALL=every-destination-token-0123456789
cat >"$TMP/tokens" <<EOF
# test tokens
$T_LAB lab
$T_RIS ris
$T_ALL *
EOF
chmod 600 "$TMP/tokens"
# write_conf CERT KEY: the bridge's configuration with that server key
write_conf() {
	{
		outbound_conf_head 18499
		cat <<-EOF
			destinations:
			  - { name: lab, address: 127.0.0.1:$P_LAB, ack_timeout: 5s }
			  - { name: ris, address: 127.0.0.1:$P_RIS, ack_timeout: 5s }
			https:
			  listen: 127.0.0.1:$HTTPS
			  cert: $1
			  key: $2
			  client_ca: $CERTS/ca.pem
			  tokens_file: $TMP/tokens
			  max_body: 1KiB
		EOF
	} >"$CONF"
}
write_conf "$CERTS/server.pem" "$CERTS/server.key"

out_msg() {
	printf 'MSH|^~\\&|CLOUD|ACME|LIS|HOSP|20261130120000||ORM^O01^ORM_O01|%s|P|2.5.1\rPID|1||%s^^^HOSP^MR||DOE^JANE\r' \
		"$1" "$1"
}
# req DEST FILE [CURL ARGS...]: POSTs FILE, prints the status (000: no HTTP
# answer); body in $TMP/last.body, headers in $TMP/last.hdr
req() {
	local dest=$1 file=$2
	shift 2
	: >"$TMP/last.body"
	curl -s --max-time 10 --cacert "$CERTS/ca.pem" --data-binary "@$file" \
		-D "$TMP/last.hdr" -o "$TMP/last.body" -w '%{http_code}' "$@" \
		"https://127.0.0.1:$HTTPS/v1/destinations/$dest/messages"
}
HL7='Content-Type: x-application/hl7-v2+er7'
outbound_rows() { sqlite3 "$TMP/spool.db" 'SELECT count(*) FROM messages WHERE channel=1'; }

start_recv lab $P_LAB || exit 1
start_recv ris $P_RIS || exit 1
start_obridge
T0=$(date +%s%N)

# ---- 5. refusals ------------------------------------------------------------
out_msg A01 >"$TMP/good.hl7"
# expect_status NAME WANT REASON-REGEX DEST FILE [CURL ARGS...]
expect_status() {
	local what=$1 want=$2 why=$3 got body
	shift 3
	got=$(req "$@")
	body=$(head -c 200 "$TMP/last.body" | tr -d '\r\n')
	if [ "$got" = "$want" ] && grep -qiE -- "$why" <<<"$body"; then
		ok "$what → $want ($body)"
	else
		fail "$what → $want" "got $got: $body"
	fi
}
expect_status "s5: no credential" 401 'token' lab "$TMP/good.hl7" -H "$HL7"
expect_status "s5: ... and says WWW-Authenticate: Bearer" 401 '' lab "$TMP/good.hl7" -H "$HL7"
expect "s5: ... WWW-Authenticate: Bearer header" grep -qi '^www-authenticate: Bearer' "$TMP/last.hdr"
expect_status "s5: an unknown token" 401 'invalid' lab "$TMP/good.hl7" -H "$HL7" \
	-H 'Authorization: Bearer not-a-configured-token-000000'
expect_status "s5: Authorization: Basic" 401 '' lab "$TMP/good.hl7" -H "$HL7" -u user:password
expect_status "s5: the ris token on lab" 403 'ris|lab|may not' lab "$TMP/good.hl7" -H "$HL7" \
	-H "Authorization: Bearer $T_RIS"
expect_status "s5: the ris token on an unknown destination" 403 '' nope "$TMP/good.hl7" -H "$HL7" \
	-H "Authorization: Bearer $T_RIS"
expect_status "s5: the * token on an unknown destination" 404 'nope' nope "$TMP/good.hl7" -H "$HL7" \
	-H "Authorization: Bearer $T_ALL"
expect_status "s5: Content-Type text/plain" 415 'Content-Type' lab "$TMP/good.hl7" \
	-H 'Content-Type: text/plain' -H "Authorization: Bearer $T_LAB"
expect_status "s5: no Content-Type" 415 'Content-Type' lab "$TMP/good.hl7" \
	-H 'Content-Type:' -H "Authorization: Bearer $T_LAB"
{ out_msg A02; head -c 2000 /dev/zero | tr '\0' 'x'; printf '\r'; } >"$TMP/big.hl7"
expect_status "s5: a 2 KB body over max_body 1KiB" 413 '' lab "$TMP/big.hl7" \
	-H "$HL7" -H "Authorization: Bearer $T_LAB"
expect_status "s5: a 2 KB chunked body over max_body 1KiB" 413 '' lab "$TMP/big.hl7" \
	-H "$HL7" -H "Authorization: Bearer $T_LAB" -H 'Transfer-Encoding: chunked'
printf 'PID|1||123^^^HOSP^MR||DOE^JANE\r' >"$TMP/nomsh.hl7"
expect_status "s5: no MSH" 422 'MSH' lab "$TMP/nomsh.hl7" -H "$HL7" -H "Authorization: Bearer $T_LAB"
printf 'MSH|^~\\&|CLOUD|ACME|LIS|HOSP|20261130120000||ORM^O01||P|2.5.1\rPID|1\r' >"$TMP/noctl.hl7"
expect_status "s5: an empty MSH-10" 422 'MSH-10' lab "$TMP/noctl.hl7" -H "$HL7" \
	-H "Authorization: Bearer $T_LAB"
expect_status "s5: an X12 body labelled HL7" 422 'MSH' lab "$SAMPLES/x12_270.x12" -H "$HL7" \
	-H "Authorization: Bearer $T_LAB"
expect_status "s5: HL7 labelled X12" 422 'ISA' lab "$TMP/good.hl7" \
	-H 'Content-Type: application/edi-x12' -H "Authorization: Bearer $T_LAB"
expect_status "s5: an Idempotency-Key of 65 characters" 400 'Idempotency-Key' lab "$TMP/good.hl7" \
	-H "$HL7" -H "Authorization: Bearer $T_LAB" -H "Idempotency-Key: $(printf 'k%.0s' $(seq 65))"
sleep 0.5
rows=$(outbound_rows)
expect "s5: after every refusal the spool holds no outbound row (got ${rows:-nothing})" test "$rows" = 0
expect "s5: ... and the receivers got nothing" test "$(nmsg lab)" -eq 0 -a "$(nmsg ris)" -eq 0
expect "s5: refusals are logged with the peer and the status" \
	test "$(grep -c 'event=https_refused peer=127.0.0.1:[0-9]* status=4' "$TMP/bridge.log")" -ge 10
expect "s5: the log holds no token and no message content" \
	bash -c "! grep -qE '$T_LAB|$T_RIS|not-a-configured|A01|DOE|PID' '$TMP/bridge.log'"
lap "refusals done"

# ---- 5. mutual TLS -------------------------------------------------------------
# a client certificate from another CA (mkcerts has that CA but no client of it)
certs_abs=$(cd "$CERTS" && pwd)
(
	set -e
	cd "$TMP"
	openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out oc.key
	openssl req -new -key oc.key -subj '/O=mllp-edge test/CN=other-client' -out oc.csr
	printf 'basicConstraints=critical,CA:FALSE\nextendedKeyUsage=clientAuth\n' >oc.ext
	openssl x509 -req -in oc.csr -CA "$certs_abs/other-ca.pem" -CAkey "$certs_abs/other-ca.key" \
		-CAserial oc.srl -CAcreateserial -days 2 -sha256 -extfile oc.ext -out oc.pem
) >"$TMP/openssl.out" 2>&1 || echo "# could not make the other CA's client certificate"
out_msg M01 >"$TMP/m01.hl7"
out_msg M02 >"$TMP/m02.hl7"
got=$(req lab "$TMP/m01.hl7" -H "$HL7" --cert "$CERTS/client.pem" --key "$CERTS/client.key")
expect "s5: mTLS: a client certificate from client_ca, no token → 202 (got $got)" test "$got" = 202
expect "s5: ... and the message reaches the receiver" \
	wait_until 5 'awk "\$4 == \"M01\"" "$TMP/lab.rlog" | grep -q .'
got=$(req lab "$TMP/m02.hl7" -H "$HL7" --cert "$TMP/oc.pem" --key "$TMP/oc.key")
expect "s5: mTLS: another CA's client certificate is refused at the handshake (got $got)" \
	test "$got" = 000 -a -s "$TMP/oc.pem"
got=$(req lab "$TMP/m02.hl7" -H "$HL7" --cert "$TMP/oc.pem" --key "$TMP/oc.key" \
	-H "Authorization: Bearer $T_LAB")
expect "s5: ... even with a valid token (got $got)" test "$got" = 000 -a -s "$TMP/oc.pem"
got=$(req lab "$TMP/m02.hl7" -H "$HL7" --cert "$CERTS/server.pem" --key "$CERTS/server.key")
expect "s5: a certificate of our CA without clientAuth is refused (got $got)" test "$got" != 202
expect_status "s5: a good certificate with an invalid token" 401 '' lab "$TMP/m02.hl7" -H "$HL7" \
	--cert "$CERTS/client.pem" --key "$CERTS/client.key" -H 'Authorization: Bearer not-a-configured-token-000000'
expect_status "s5: a good certificate with the ris token, on lab" 403 '' lab "$TMP/m02.hl7" -H "$HL7" \
	--cert "$CERTS/client.pem" --key "$CERTS/client.key" -H "Authorization: Bearer $T_RIS"
sleep 0.5
expect "s5: of the mTLS attempts only M01 was stored and sent" \
	test "$(outbound_rows)" = 1 -a "$(nmsg lab)" -eq 1 -a "$(nmsg ris)" -eq 0
lap "mTLS done"

# ---- 8. TLS policy seen from outside ------------------------------------------
# ciphers VERSION-LINE: "TLSv1.x SUITE" per suite nmap found
nmap_suites() {
	nmap -Pn -n --script ssl-enum-ciphers -p "$HTTPS" 127.0.0.1 >"$TMP/nmap-$1.out" 2>&1
	awk '/^\|   [A-Za-z0-9.]+: *$/ {v = $2; sub(":", "", v)}
	     /^\|       TLS_/ {print v, $2}' "$TMP/nmap-$1.out" | sort
}
EC_WANT="TLSv1.2 TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
TLSv1.2 TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
TLSv1.3 TLS_AKE_WITH_AES_128_GCM_SHA256
TLSv1.3 TLS_AKE_WITH_AES_256_GCM_SHA384
TLSv1.3 TLS_AKE_WITH_CHACHA20_POLY1305_SHA256"
RSA_WANT="TLSv1.2 TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
TLSv1.2 TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
TLSv1.3 TLS_AKE_WITH_AES_128_GCM_SHA256
TLSv1.3 TLS_AKE_WITH_AES_256_GCM_SHA384
TLSv1.3 TLS_AKE_WITH_CHACHA20_POLY1305_SHA256"
if ! command -v nmap >/dev/null; then
	fail "s8: TLS policy of the listener: nmap missing (Debian package nmap; scripts/deps.sh)"
else
	ec=$(nmap_suites ec)
	expect "s8: EC server key: nmap sees exactly TLS 1.2 ECDHE-ECDSA-AES128/256-GCM and the three TLS 1.3 suites ($(echo $ec | tr ' ' ','))" \
		test "$ec" = "$EC_WANT"
	stop_pid "$BRIDGE_PID"
	write_conf "$CERTS/server-rsa.pem" "$CERTS/server-rsa.key"
	start_obridge
	rsa=$(nmap_suites rsa)
	expect "s8: RSA server key: nmap sees exactly TLS 1.2 ECDHE-RSA-AES128/256-GCM and the three TLS 1.3 suites ($(echo $rsa | tr ' ' ','))" \
		test "$rsa" = "$RSA_WANT"
	n=$(printf '%s\n%s\n' "$ec" "$rsa" | awk '{print $2}' | sort -u | wc -l)
	expect "s8: seven suites in all ($n)" test "$n" -eq 7
	expect "s8: no SSLv3, TLS 1.0 or 1.1 offered" \
		bash -c "! grep -qE '(SSLv3|TLSv1\.0|TLSv1\.1):' '$TMP/nmap-ec.out' '$TMP/nmap-rsa.out'"
fi
lap "TLS policy done"
expect "the bridge is still running" kill -0 "$BRIDGE_PID"
finish
