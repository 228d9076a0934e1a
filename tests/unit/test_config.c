/*
 * The bridge's configuration: every field of a valid file, one exact message
 * (with its line) per bad value, all errors at once, YAML syntax errors, and
 * the address helpers.
 */
#include "mllp-bridge/config.h"
#include "mllp-bridge/mllp.h"

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define EXAMPLE_CONFIG "rootfs/etc/appliance/appliance.yaml"

/* A readable file that stands in for every CA, token, cert and key; made in main(). */
static char ca_path[] = "/tmp/test_config_ca_XXXXXX";

/* Replaces each "@CA@" in text by ca_path. Caller frees. */
static char *subst(const char *text)
{
	size_t n = 0, len;
	const char *p;
	char *out, *o;

	for (p = text; (p = strstr(p, "@CA@")); p += 4)
		n++;
	len = strlen(text) + n * strlen(ca_path) + 1;
	out = malloc(len);
	ck_assert_ptr_nonnull(out);
	for (o = out, p = text; *p;) {
		if (strncmp(p, "@CA@", 4) == 0) {
			o = stpcpy(o, ca_path);
			p += 4;
		} else {
			*o++ = *p++;
		}
	}
	*o = '\0';
	return out;
}

/* Loads text as "t.yaml"; returns the rc and fills out/errs. */
static int load(const char *text, struct cfg **out, struct cfg_errors *errs)
{
	char *t = subst(text);
	int rc = cfg_load_string("t.yaml", t, out, errs);

	free(t);
	return rc;
}

static void dump(const struct cfg_errors *e)
{
	size_t i;

	for (i = 0; i < e->n; i++)
		fprintf(stderr, "  got: %s\n", e->msg[i]);
}

static void addr_is(const struct sockaddr_storage *ss, int family, const char *host, unsigned port)
{
	char buf[INET6_ADDRSTRLEN];

	ck_assert_int_eq(ss->ss_family, family);
	if (family == AF_INET) {
		const struct sockaddr_in *s = (const struct sockaddr_in *)ss;

		inet_ntop(AF_INET, &s->sin_addr, buf, sizeof buf);
		ck_assert_uint_eq(ntohs(s->sin_port), port);
	} else {
		const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)ss;

		inet_ntop(AF_INET6, &s->sin6_addr, buf, sizeof buf);
		ck_assert_uint_eq(ntohs(s->sin6_port), port);
	}
	ck_assert_str_eq(buf, host);
}

static void cidr_is(const struct cfg_cidr *c, int family, const char *net, unsigned prefix)
{
	char buf[INET6_ADDRSTRLEN];

	ck_assert_int_eq(c->family, family);
	inet_ntop(family, c->addr, buf, sizeof buf);
	ck_assert_str_eq(buf, net);
	ck_assert_uint_eq(c->prefix, prefix);
}

/* ---------- a valid file, every field ---------- */

static const char full_yaml[] =
    "spool:\n"
    "  path: /var/lib/appliance/spool.db\n"
    "  retention: 3d\n"
    "observability: { listen: \"[::1]:9100\" }\n"
    "log_phi: true\n"
    "retry: { initial: 500ms, max: 2m }\n"
    "tunnels: { hq: { remote: 198.51.100.1 } }\n"
    "charon: [1, 2]\n"
    "supervisor: x\n"
    "outbound: {}\n"
    "destinations: [{ name: a }]\n"
    "https_listener: { listen: 0.0.0.0:8443 }\n"
    "integrations:\n"
    "  - name: lab\n"
    "    listen: 203.0.113.1:9960\n"
    "    sources: [203.0.113.64/26, \"2001:db8::/32\", 198.51.100.7]\n"
    "    match: { sending_facility: LAB, receiving_facility: HOSP }\n"
    "    ack: upstream\n"
    "    order: integration\n"
    "    max_in_flight: 8\n"
    "    dedup: 10m\n"
    "    mllp: { release: 2, max_frame: 1MiB, frame_timeout: 45s, idle_timeout: 1h }\n"
    "    upstream:\n"
    "      url: https://api.example.test/v1/hl7/lab\n"
    "      ca_file: @CA@\n"
    "      bearer_token_file: @CA@\n"
    "      client_cert: @CA@\n"
    "      client_key: @CA@\n"
    "      timeout: 20s\n"
    "      http: 1.1\n"
    "  - name: adt_2\n"
    "    listen: \"[2001:db8::1]:11794\"\n"
    "    sources: [\"::ffff:203.0.113.0/120\"]\n"
    "    order: sender\n"
    "    max_in_flight: 256\n"
    "    upstream:\n"
    "      url: https://api.example.test/v1/hl7/adt\n"
    "      ca_file: @CA@\n";

START_TEST(valid_full_config)
{
	struct cfg_errors errs;
	struct cfg *c;
	const struct cfg_integration *a, *b;
	int rc = load(full_yaml, &c, &errs);

	if (rc != 0)
		dump(&errs);
	ck_assert_int_eq(rc, 0);
	ck_assert_uint_eq(errs.n, 0);
	ck_assert_str_eq(c->path, "t.yaml");
	ck_assert_str_eq(c->spool_path, "/var/lib/appliance/spool.db");
	ck_assert_uint_eq(c->retention_ms, 3ull * 24 * 3600 * 1000);
	ck_assert_str_eq(c->observability_listen, "[::1]:9100");
	addr_is(&c->observability_addr, AF_INET6, "::1", 9100);
	ck_assert_uint_eq(c->observability_len, sizeof(struct sockaddr_in6));
	ck_assert_int_eq(c->log_phi, 1);
	ck_assert_uint_eq(c->retry.initial_ms, 500);
	ck_assert_uint_eq(c->retry.max_ms, 120000);
	ck_assert_uint_eq(c->nintegrations, 2);

	a = &c->integrations[0];
	ck_assert_str_eq(a->name, "lab");
	ck_assert_int_eq(a->line, 14);
	addr_is(&a->listen, AF_INET, "203.0.113.1", 9960);
	ck_assert_uint_eq(a->listen_len, sizeof(struct sockaddr_in));
	ck_assert_str_eq(a->listen_text, "203.0.113.1:9960");
	ck_assert_uint_eq(a->nsources, 3);
	cidr_is(&a->sources[0], AF_INET, "203.0.113.64", 26);
	cidr_is(&a->sources[1], AF_INET6, "2001:db8::", 32);
	cidr_is(&a->sources[2], AF_INET, "198.51.100.7", 32);
	ck_assert_str_eq(a->match_sending_facility, "LAB");
	ck_assert_str_eq(a->match_receiving_facility, "HOSP");
	ck_assert_int_eq(a->ack, CFG_ACK_UPSTREAM);
	ck_assert_int_eq(a->order, CFG_ORDER_INTEGRATION);
	ck_assert_uint_eq(a->max_in_flight, 1); /* forced by order: integration */
	ck_assert_uint_eq(a->dedup_ms, 600000);
	ck_assert_int_eq(a->mllp.release, 2);
	ck_assert_uint_eq(a->mllp.max_frame, 1u << 20);
	ck_assert_uint_eq(a->mllp.frame_timeout_ms, 45000);
	ck_assert_uint_eq(a->mllp.idle_timeout_ms, 3600000);
	ck_assert_str_eq(a->upstream.url, "https://api.example.test/v1/hl7/lab");
	ck_assert_str_eq(a->upstream.ca_file, ca_path);
	ck_assert_str_eq(a->upstream.bearer_token_file, ca_path);
	ck_assert_str_eq(a->upstream.client_cert, ca_path);
	ck_assert_str_eq(a->upstream.client_key, ca_path);
	ck_assert_uint_eq(a->upstream.timeout_ms, 20000);
	ck_assert_int_eq(a->upstream.http, CFG_HTTP_1_1);

	b = &c->integrations[1];
	ck_assert_str_eq(b->name, "adt_2");
	ck_assert_int_eq(b->line, 31);
	addr_is(&b->listen, AF_INET6, "2001:db8::1", 11794);
	ck_assert_uint_eq(b->nsources, 1);
	cidr_is(&b->sources[0], AF_INET, "203.0.113.0", 24); /* mapped CIDR became IPv4 */
	ck_assert_ptr_null(b->match_sending_facility);
	ck_assert_ptr_null(b->match_receiving_facility);
	ck_assert_int_eq(b->ack, CFG_ACK_COMMIT);
	ck_assert_int_eq(b->order, CFG_ORDER_SENDER);
	ck_assert_uint_eq(b->max_in_flight, 256);
	ck_assert_uint_eq(b->dedup_ms, 0);
	ck_assert_int_eq(b->mllp.release, 1);
	ck_assert_uint_eq(b->mllp.max_frame, MLLP_MAX_FRAME_DEFAULT);
	ck_assert_uint_eq(b->mllp.frame_timeout_ms, 30000);
	ck_assert_uint_eq(b->mllp.idle_timeout_ms, 2ull * 3600 * 1000);
	ck_assert_ptr_null(b->upstream.bearer_token_file);
	ck_assert_ptr_null(b->upstream.client_cert);
	ck_assert_ptr_null(b->upstream.client_key);
	ck_assert_uint_eq(b->upstream.timeout_ms, 10000);
	ck_assert_int_eq(b->upstream.http, CFG_HTTP_2);
	cfg_free(c);
}
END_TEST

static const char minimal_yaml[] = "spool: /s.db\n"
				   "integrations:\n"
				   "  - name: lab\n"
				   "    listen: 203.0.113.1:9960\n"
				   "    sources: [203.0.113.64/26]\n"
				   "    upstream: { url: \"https://h.test\", ca_file: @CA@ }\n";

START_TEST(valid_minimal_defaults)
{
	struct cfg_errors errs;
	struct cfg *c;
	const struct cfg_integration *a;

	ck_assert_int_eq(load(minimal_yaml, &c, &errs), 0);
	ck_assert_str_eq(c->spool_path, "/s.db");
	ck_assert_uint_eq(c->retention_ms, 7ull * 24 * 3600 * 1000);
	ck_assert_ptr_null(c->observability_listen);
	ck_assert_uint_eq(c->observability_len, 0);
	ck_assert_int_eq(c->log_phi, 0);
	ck_assert_uint_eq(c->retry.initial_ms, 1000);
	ck_assert_uint_eq(c->retry.max_ms, 300000);
	ck_assert_uint_eq(c->max_connections, 4096);
	ck_assert_uint_eq(c->max_connections_per_source, 256);
	a = &c->integrations[0];
	ck_assert_int_eq(a->ack, CFG_ACK_COMMIT);
	ck_assert_int_eq(a->order, CFG_ORDER_FEED);
	ck_assert_uint_eq(a->max_in_flight, 128);
	ck_assert_uint_eq(a->dedup_ms, 0);
	ck_assert_int_eq(a->mllp.release, 1);
	ck_assert_uint_eq(a->mllp.max_frame, 16u << 20);
	ck_assert_uint_eq(a->mllp.frame_timeout_ms, 30000);
	ck_assert_uint_eq(a->mllp.idle_timeout_ms, 7200000);
	ck_assert_uint_eq(a->upstream.timeout_ms, 10000);
	ck_assert_int_eq(a->upstream.http, CFG_HTTP_2);
	cfg_free(c);
}
END_TEST

/* ---------- one bad value, one exact message ---------- */

#define TOP		      "spool: /s.db\nintegrations:\n" /* lines 1-2 */
#define LAB_NAME	      "  - name: lab\n"		      /* line 3 */
#define LAB_LISTEN	      "    listen: 203.0.113.1:9960\n"
#define LAB_SOURCES	      "    sources: [203.0.113.64/26]\n"
#define LAB		      LAB_NAME LAB_LISTEN LAB_SOURCES /* lines 3-5 */
#define UP		      "    upstream:\n      url: https://h.test/x\n      ca_file: @CA@\n" /* lines 6-8 */
#define LAB2(listen, sources) "  - name: lab2\n    listen: " listen "\n    sources: " sources "\n"

struct bad_case {
	const char *yaml;
	const char *want;
};

static const struct bad_case bad_cases[] = {
    /* connection limits, at the top (line 1) */
    {"connections: { max: 0 }\n" TOP LAB UP,
     "t.yaml:1: max: expected an integer from 1 to 1000000, got '0'"},
    {"connections: { per_source: 1000001 }\n" TOP LAB UP,
     "t.yaml:1: per_source: expected an integer from 1 to 1000000, got '1000001'"},
    {"connections: { per_peer: 5 }\n" TOP LAB UP,
     "t.yaml:1: unknown key 'per_peer' in connections"},
    {"connections: 5\n" TOP LAB UP, "t.yaml:1: connections: expected a mapping"},
    /* integration fields, each on line 9 */
    {TOP LAB UP "    ack: x\n", "t.yaml:9: ack: expected 'commit' or 'upstream', got 'x'"},
    {TOP LAB UP "    accept_ack: never\n",
     "t.yaml:9: accept_ack: expected 'msh15' or 'always', got 'never'"},
    {TOP LAB UP "    ack:\n", "t.yaml:9: ack: expected 'commit' or 'upstream'"},
    {TOP LAB UP "    order: fifo\n",
     "t.yaml:9: order: expected 'integration', 'sender', 'feed' or 'patient', got 'fifo'"},
    {TOP LAB UP "    order: Patient\n",
     "t.yaml:9: order: expected 'integration', 'sender', 'feed' or 'patient', got 'Patient'"},
    {TOP LAB UP "    order:\n",
     "t.yaml:9: order: expected 'integration', 'sender', 'feed' or 'patient'"},
    {TOP LAB UP "    order: [feed]\n",
     "t.yaml:9: order: expected 'integration', 'sender', 'feed' or 'patient'"},
    {TOP LAB UP "    max_in_flight: 0\n",
     "t.yaml:9: max_in_flight: expected an integer from 1 to 1024, got '0'"},
    {TOP LAB UP "    max_in_flight: 1025\n",
     "t.yaml:9: max_in_flight: expected an integer from 1 to 1024, got '1025'"},
    {TOP LAB UP "    max_in_flight: -1\n",
     "t.yaml:9: max_in_flight: expected an integer from 1 to 1024, got '-1'"},
    {TOP LAB UP "    max_in_flight: 1e3\n",
     "t.yaml:9: max_in_flight: expected an integer from 1 to 1024, got '1e3'"},
    {TOP LAB UP "    max_in_flight: 99999999999999999999\n",
     "t.yaml:9: max_in_flight: expected an integer from 1 to 1024, got '99999999999999999999'"},
    {TOP LAB UP "    max_in_flight:\n", "t.yaml:9: max_in_flight: expected an integer"},
    {TOP LAB UP "    dedup: 25h\n", "t.yaml:9: dedup: 25h is longer than 24h"},
    {TOP LAB UP "    dedup: 2d\n", "t.yaml:9: dedup: 2d is longer than 24h"},
    {TOP LAB UP "    dedup: 86400001ms\n", "t.yaml:9: dedup: 86400001ms is longer than 24h"},
    {TOP LAB UP "    dedup: 3651d\n", "t.yaml:9: dedup: 3651d is longer than 24h"},
    {TOP LAB UP "    dedup: 99999999999999999999s\n",
     "t.yaml:9: dedup: 99999999999999999999s is longer than 24h"},
    {TOP LAB UP "    dedup: 10\n",
     "t.yaml:9: dedup: expected a duration such as 30s, 10m or 1h, or 0 for off, got '10'"},
    {TOP LAB UP "    dedup: off\n",
     "t.yaml:9: dedup: expected a duration such as 30s, 10m or 1h, or 0 for off, got 'off'"},
    {TOP LAB UP "    dedup: -1m\n",
     "t.yaml:9: dedup: expected a duration such as 30s, 10m or 1h, or 0 for off, got '-1m'"},
    {TOP LAB UP "    dedup: 1.5h\n",
     "t.yaml:9: dedup: expected a duration such as 30s, 10m or 1h, or 0 for off, got '1.5h'"},
    {TOP LAB UP "    dedup: 00\n",
     "t.yaml:9: dedup: expected a duration such as 30s, 10m or 1h, or 0 for off, got '00'"},
    {TOP LAB UP "    dedup:\n", "t.yaml:9: dedup: expected a duration"},
    {TOP LAB UP "    dedup: { window: 10m }\n", "t.yaml:9: dedup: expected a duration"},
    {TOP LAB UP "    dedup: 10m\n    dedup: 5m\n",
     "t.yaml:10: duplicate key 'dedup' in integration"},
    {TOP LAB UP "    foo: 1\n", "t.yaml:9: unknown key 'foo' in integration"},
    {TOP LAB UP "    ack: commit\n    ack: upstream\n",
     "t.yaml:10: duplicate key 'ack' in integration"},
    {TOP LAB UP "    [a]: 1\n", "t.yaml:9: keys must be plain words in integration"},
    {TOP LAB UP "    mllp: 1\n", "t.yaml:9: mllp: expected a mapping"},
    {TOP LAB UP "    mllp: { bogus: 1 }\n", "t.yaml:9: unknown key 'bogus' in mllp"},
    {TOP LAB UP "    mllp: { release: 3 }\n", "t.yaml:9: release: expected 1 or 2, got '3'"},
    {TOP LAB UP "    mllp: { max_frame: 512 }\n", "t.yaml:9: max_frame: 512 is outside 1KiB-64MiB"},
    {TOP LAB UP "    mllp: { max_frame: 65MiB }\n",
     "t.yaml:9: max_frame: 65MiB is outside 1KiB-64MiB"},
    {TOP LAB UP "    mllp: { max_frame: 16MB }\n",
     "t.yaml:9: max_frame: expected a size such as 16MiB, 512KiB or 65536, got '16MB'"},
    {TOP LAB UP "    mllp: { max_frame: 99999999999999999999 }\n",
     "t.yaml:9: max_frame: 99999999999999999999 is outside 1KiB-64MiB"},
    {TOP LAB UP "    mllp: { frame_timeout: 0s }\n",
     "t.yaml:9: frame_timeout: must be longer than 0"},
    {TOP LAB UP "    mllp: { frame_timeout: 30 }\n",
     "t.yaml:9: frame_timeout: expected a duration such as 500ms, 30s, 5m, 2h or 7d, got '30'"},
    {TOP LAB UP "    mllp: { frame_timeout: -1s }\n",
     "t.yaml:9: frame_timeout: expected a duration such as 500ms, 30s, 5m, 2h or 7d, got '-1s'"},
    {TOP LAB UP "    mllp:\n      idle_timeout: 99999999999999999999d\n",
     "t.yaml:10: idle_timeout: 99999999999999999999d is longer than 3650d"},
    {TOP LAB UP "    mllp: { idle_timeout: 3651d }\n",
     "t.yaml:9: idle_timeout: 3651d is longer than 3650d"},
    {TOP LAB UP "    match: { sending_facility: \"A|B\" }\n",
     "t.yaml:9: sending_facility: must be 1-227 characters without '|' or control characters"},
    {TOP LAB UP "    match: { receiving_facility: \"\" }\n",
     "t.yaml:9: receiving_facility: must be 1-227 characters without '|' or control characters"},
    {TOP LAB UP "    match: { msh4: X }\n", "t.yaml:9: unknown key 'msh4' in match"},
    {TOP LAB UP "    match: LAB\n", "t.yaml:9: match: expected a mapping"},
    /* name, listen, sources */
    {TOP "  - name: 'lab one'\n" LAB_LISTEN LAB_SOURCES UP,
     "t.yaml:3: name: 'lab one' is not 1-64 characters of A-Z a-z 0-9 _ -"},
    {TOP
     "  - name: "
     "a12345678901234567890123456789012345678901234567890123456789012345\n" LAB_LISTEN LAB_SOURCES
	 UP,
     "t.yaml:3: name: 'a12345678901234567890123456789012345678901234567890123456789012345' "
     "is not 1-64 characters of A-Z a-z 0-9 _ -"},
    {TOP "  - name: [lab]\n" LAB_LISTEN LAB_SOURCES UP, "t.yaml:3: name: expected a string"},
    {TOP LAB_NAME "    listen: 203.0.113.1:80\n" LAB_SOURCES UP,
     "t.yaml:4: listen: port 80 is outside 9960-11794"},
    {TOP LAB_NAME "    listen: 203.0.113.1:11795\n" LAB_SOURCES UP,
     "t.yaml:4: listen: port 11795 is outside 9960-11794"},
    {TOP LAB_NAME "    listen: lab.test:9960\n" LAB_SOURCES UP,
     "t.yaml:4: listen: expected IPv4:port or [IPv6]:port, got 'lab.test:9960'"},
    {TOP LAB_NAME "    listen: 203.0.113.1\n" LAB_SOURCES UP,
     "t.yaml:4: listen: expected IPv4:port or [IPv6]:port, got '203.0.113.1'"},
    {TOP LAB_NAME "    listen: 2001:db8::1:9960\n" LAB_SOURCES UP,
     "t.yaml:4: listen: expected IPv4:port or [IPv6]:port, got '2001:db8::1:9960'"},
    {TOP LAB_NAME LAB_LISTEN "    sources: 203.0.113.64/26\n" UP,
     "t.yaml:5: sources: expected a sequence"},
    {TOP LAB_NAME LAB_LISTEN "    sources: []\n" UP,
     "t.yaml:5: sources: expected 1 to 64 CIDRs, got 0"},
    {TOP LAB_NAME LAB_LISTEN "    sources: [203.0.113.0/33]\n" UP,
     "t.yaml:5: sources: bad CIDR '203.0.113.0/33'"},
    {TOP LAB_NAME LAB_LISTEN "    sources:\n      - 10.0.0.0/8\n      - lab.test\n" UP,
     "t.yaml:7: sources: bad CIDR 'lab.test'"},
    {TOP LAB_NAME LAB_LISTEN "    sources: [203.0.113.65/26]\n" UP,
     "t.yaml:5: sources: 203.0.113.65/26 has host bits set (the network is 203.0.113.64/26)"},
    /* upstream */
    {TOP LAB "    upstream:\n      url: http://h.test/x\n      ca_file: @CA@\n",
     "t.yaml:7: url: expected an https:// URL, got 'http://h.test/x'"},
    {TOP LAB "    upstream:\n      url: https:///x\n      ca_file: @CA@\n",
     "t.yaml:7: url: no host in 'https:///x'"},
    {TOP LAB "    upstream:\n      url: https://:443/x\n      ca_file: @CA@\n",
     "t.yaml:7: url: no host in 'https://:443/x'"},
    {TOP LAB "    upstream:\n      url: https://u:pw@h.test/x\n      ca_file: @CA@\n",
     "t.yaml:7: url: credentials in the URL are not allowed"},
    {TOP LAB "    upstream:\n      url: https://h.test/x\n      ca_file: /nonexistent/ca.pem\n",
     "t.yaml:8: ca_file: cannot read /nonexistent/ca.pem: No such file or directory"},
    {TOP LAB "    upstream:\n      url: https://h.test/x\n      ca_file: /tmp\n",
     "t.yaml:8: ca_file: /tmp is not a regular file"},
    {TOP LAB UP "      bearer_token_file: /nonexistent/t\n",
     "t.yaml:9: bearer_token_file: cannot read /nonexistent/t: No such file or directory"},
    {TOP LAB UP "      client_cert: @CA@\n",
     "t.yaml:9: client_cert: client_key is missing (mTLS needs both)"},
    {TOP LAB UP "      client_key: @CA@\n",
     "t.yaml:9: client_key: client_cert is missing (mTLS needs both)"},
    {TOP LAB UP "      timeout: 0ms\n", "t.yaml:9: timeout: must be longer than 0"},
    {TOP LAB UP "      retries: 3\n", "t.yaml:9: unknown key 'retries' in upstream"},
    {TOP LAB UP "      http: 2.0\n", "t.yaml:9: http: expected 2 or 1.1, got '2.0'"},
    {TOP LAB UP "      http: 1.0\n", "t.yaml:9: http: expected 2 or 1.1, got '1.0'"},
    {TOP LAB UP "      http: 1\n", "t.yaml:9: http: expected 2 or 1.1, got '1'"},
    {TOP LAB UP "      http: 3\n", "t.yaml:9: http: expected 2 or 1.1, got '3'"},
    {TOP LAB UP "      http: h2\n", "t.yaml:9: http: expected 2 or 1.1, got 'h2'"},
    {TOP LAB UP "      http: \"1.1 \"\n", "t.yaml:9: http: expected 2 or 1.1, got '1.1 '"},
    {TOP LAB UP "      http:\n", "t.yaml:9: http: expected 2 or 1.1"},
    {TOP LAB UP "      http: [2]\n", "t.yaml:9: http: expected 2 or 1.1"},
    {TOP LAB UP "    http: 2\n", "t.yaml:9: unknown key 'http' in integration"},
    {TOP LAB UP "      dedup: 10m\n", "t.yaml:9: unknown key 'dedup' in upstream"},
    {TOP LAB "    upstream: https://h.test\n", "t.yaml:6: upstream: expected a mapping"},
    /* missing keys: the line of the mapping that lacks them */
    {TOP LAB "    upstream:\n      url: https://h.test/x\n",
     "t.yaml:7: integration 'lab': upstream: missing 'ca_file'"},
    {TOP LAB, "t.yaml:3: integration 'lab': missing 'upstream'"},
    {TOP "  - listen: 203.0.113.1:9960\n" LAB_SOURCES UP,
     "t.yaml:3: integration #1: missing 'name'"},
    {TOP LAB_NAME LAB_SOURCES UP, "t.yaml:3: integration 'lab': missing 'listen'"},
    {TOP LAB_NAME LAB_LISTEN UP, "t.yaml:3: integration 'lab': missing 'sources'"},
    {"integrations:\n" LAB UP, "t.yaml:1: missing 'spool'"},
    {"spool: /s.db\n", "t.yaml:1: missing 'integrations'"},
    /* top level */
    {"foo: 1\n" TOP LAB UP, "t.yaml:1: unknown key 'foo' at the top level"},
    {TOP LAB UP "spool: /t.db\n", "t.yaml:9: duplicate key 'spool' at the top level"},
    {"spool: /s.db\nintegrations: []\n",
     "t.yaml:2: integrations: expected 1 to 256 integrations, got 0"},
    {"spool: /s.db\nintegrations: lab\n", "t.yaml:2: integrations: expected a sequence"},
    {TOP "  - lab\n", "t.yaml:3: integrations: each entry must be a mapping"},
    {"spool: [a]\nintegrations:\n" LAB UP, "t.yaml:1: spool: expected a path or a mapping"},
    {"spool:\nintegrations:\n" LAB UP, "t.yaml:1: spool: expected a path or a mapping"},
    {"spool: { retention: 7d }\nintegrations:\n" LAB UP, "t.yaml:1: spool: missing 'path'"},
    {"spool: { path: /s.db, retention: 0d }\nintegrations:\n" LAB UP,
     "t.yaml:1: retention: must be longer than 0"},
    {"spool: { path: /s.db, keep: 7d }\nintegrations:\n" LAB UP,
     "t.yaml:1: unknown key 'keep' in spool"},
    {TOP LAB UP "log_phi: maybe\n", "t.yaml:9: log_phi: expected true or false, got 'maybe'"},
    {TOP LAB UP "retry:\n  initial: 10s\n  max: 5s\n",
     "t.yaml:11: retry: max 5s is shorter than initial 10s"},
    {TOP LAB UP "retry:\n  initial: 10m\n", "t.yaml:10: retry: max 5m is shorter than initial 10m"},
    {TOP LAB UP "retry: { jitter: 1s }\n", "t.yaml:9: unknown key 'jitter' in retry"},
    {TOP LAB UP "observability: { listen: localhost:9100 }\n",
     "t.yaml:9: listen: expected IPv4:port or [IPv6]:port, got 'localhost:9100'"},
    {TOP LAB UP "observability: {}\n", "t.yaml:9: observability: missing 'listen'"},
    {"- spool\n", "t.yaml:1: expected a mapping of settings at the top level"},
    {"", "t.yaml:1: the configuration is empty"},
    {"# only a comment\n", "t.yaml:1: the configuration is empty"},
    {TOP LAB UP "---\nspool: /t.db\n", "t.yaml:9: only one YAML document is allowed"},
    /* across integrations; the line is the second one's */
    {TOP LAB UP "  - name: lab\n    listen: 203.0.113.1:9961\n    sources: [10.0.0.0/8]\n" UP,
     "t.yaml:9: duplicate integration name 'lab' (first at line 3)"},
    {TOP LAB UP LAB2("203.0.113.1:9960", "[203.0.113.96/27]") UP,
     "t.yaml:10: integrations 'lab' and 'lab2' share 203.0.113.1:9960 and overlapping sources "
     "but have the same match: a peer cannot be told apart"},
    {TOP LAB UP "    match: { sending_facility: LAB }\n" LAB2("203.0.113.1:9960", "[0.0.0.0/0]") UP
     "    match: { sending_facility: LAB }\n",
     "t.yaml:11: integrations 'lab' and 'lab2' share 203.0.113.1:9960 and overlapping sources "
     "but have the same match: a peer cannot be told apart"},
    {TOP LAB UP LAB2("203.0.113.1:9960", "[10.0.0.0/8]") UP "    mllp: { release: 2 }\n",
     "t.yaml:10: integrations 'lab' and 'lab2' share 203.0.113.1:9960 but differ in mllp "
     "settings"},
    {TOP LAB UP LAB2("203.0.113.1:9960", "[10.0.0.0/8]") UP "    mllp: { idle_timeout: 1h }\n",
     "t.yaml:10: integrations 'lab' and 'lab2' share 203.0.113.1:9960 but differ in mllp "
     "settings"},
};

START_TEST(bad_value)
{
	const struct bad_case *t = &bad_cases[_i];
	struct cfg_errors errs;
	struct cfg *c = (struct cfg *)1;
	int rc = load(t->yaml, &c, &errs);

	if (errs.n != 1 || strcmp(errs.msg[0], t->want) != 0) {
		fprintf(stderr, "case %d: want: %s\n", _i, t->want);
		dump(&errs);
	}
	ck_assert_int_eq(rc, -EINVAL);
	ck_assert_ptr_null(c);
	ck_assert_uint_eq(errs.n, 1);
	ck_assert_str_eq(errs.msg[0], t->want);
	cfg_errors_free(&errs);
	ck_assert_ptr_null(errs.msg);
}
END_TEST

/* Near misses of the rules above that must load. */
static const char *const good_cases[] = {
    /* shared listener told apart by source, by match, or by one side's match */
    TOP LAB UP LAB2("203.0.113.1:9960", "[203.0.113.128/26]") UP,
    TOP LAB UP
    "    match: { sending_facility: LAB }\n" LAB2("203.0.113.1:9960", "[203.0.113.64/26]") UP
    "    match: { sending_facility: RAD }\n",
    TOP LAB UP
    "    match: { sending_facility: LAB }\n" LAB2("203.0.113.1:9960", "[203.0.113.64/26]") UP,
    /* same sources on another port, IPv4 vs IPv6 sources on one port */
    TOP LAB UP LAB2("203.0.113.1:9961", "[203.0.113.64/26]") UP "    mllp: { release: 2 }\n",
    TOP LAB UP LAB2("203.0.113.1:9960", "[\"2001:db8::/32\"]") UP,
    /* boundaries */
    TOP LAB_NAME "    listen: \"[::]:11794\"\n" LAB_SOURCES UP "    max_in_flight: 1\n"
		 "    mllp: { max_frame: 1024, frame_timeout: 1ms, idle_timeout: 3650d }\n",
    TOP LAB UP "    mllp: { max_frame: 64MiB }\nlog_phi: false\n",
    TOP LAB UP "    match: {}\nretry: { initial: 5m, max: 5m }\n",
    TOP LAB UP "    mllp: { release: \"2\" }\n",
    "spool: { path: /s.db }\nintegrations:\n" LAB UP,
    "%YAML 1.1\n---\n" TOP LAB UP "...\n",
    /* anchors and aliases are plain YAML, even from a skipped section */
    "spool: /s.db\nsupervisor: { up: &up { url: \"https://h.test\", ca_file: @CA@ } }\n"
    "integrations:\n" LAB "    upstream: *up\n",
};

START_TEST(good_value)
{
	struct cfg_errors errs;
	struct cfg *c;
	int rc = load(good_cases[_i], &c, &errs);

	if (rc != 0) {
		fprintf(stderr, "case %d\n", _i);
		dump(&errs);
	}
	ck_assert_int_eq(rc, 0);
	ck_assert_uint_eq(errs.n, 0);
	ck_assert_ptr_nonnull(c);
	cfg_free(c);
}
END_TEST

/* ---------- ordering, dedup, HTTP version: defaults and every value ---------- */

struct knob_case {
	const char *yaml;
	enum cfg_order order;
	unsigned max_in_flight;
	uint64_t dedup_ms;
	enum cfg_http http;
};

static const struct knob_case knob_cases[] = {
    /* defaults */
    {TOP LAB UP, CFG_ORDER_FEED, 128, 0, CFG_HTTP_2},
    /* order; integration forces one in flight, whatever is written and where */
    {TOP LAB UP "    order: integration\n", CFG_ORDER_INTEGRATION, 1, 0, CFG_HTTP_2},
    {TOP LAB UP "    order: integration\n    max_in_flight: 1024\n", CFG_ORDER_INTEGRATION, 1, 0,
     CFG_HTTP_2},
    {TOP LAB UP "    max_in_flight: 64\n    order: integration\n", CFG_ORDER_INTEGRATION, 1, 0,
     CFG_HTTP_2},
    {TOP LAB UP "    order: sender\n", CFG_ORDER_SENDER, 128, 0, CFG_HTTP_2},
    {TOP LAB UP "    order: feed\n", CFG_ORDER_FEED, 128, 0, CFG_HTTP_2},
    {TOP LAB UP "    order: patient\n", CFG_ORDER_PATIENT, 128, 0, CFG_HTTP_2},
    {TOP LAB UP "    order: \"patient\"\n", CFG_ORDER_PATIENT, 128, 0, CFG_HTTP_2},
    /* max_in_flight bounds */
    {TOP LAB UP "    max_in_flight: 1\n", CFG_ORDER_FEED, 1, 0, CFG_HTTP_2},
    {TOP LAB UP "    order: patient\n    max_in_flight: 1024\n", CFG_ORDER_PATIENT, 1024, 0,
     CFG_HTTP_2},
    {TOP LAB UP "    order: sender\n    max_in_flight: 256\n", CFG_ORDER_SENDER, 256, 0,
     CFG_HTTP_2},
    /* dedup: 0 with or without a unit is off; 24h is the most */
    {TOP LAB UP "    dedup: 10m\n", CFG_ORDER_FEED, 128, 600000, CFG_HTTP_2},
    {TOP LAB UP "    dedup: 500ms\n", CFG_ORDER_FEED, 128, 500, CFG_HTTP_2},
    {TOP LAB UP "    dedup: 0\n", CFG_ORDER_FEED, 128, 0, CFG_HTTP_2},
    {TOP LAB UP "    dedup: 0s\n", CFG_ORDER_FEED, 128, 0, CFG_HTTP_2},
    {TOP LAB UP "    dedup: 24h\n", CFG_ORDER_FEED, 128, 86400000, CFG_HTTP_2},
    {TOP LAB UP "    dedup: 1d\n", CFG_ORDER_FEED, 128, 86400000, CFG_HTTP_2},
    {TOP LAB UP "    dedup: 1440m\n", CFG_ORDER_FEED, 128, 86400000, CFG_HTTP_2},
    /* upstream.http, plain or quoted */
    {TOP LAB UP "      http: 2\n", CFG_ORDER_FEED, 128, 0, CFG_HTTP_2},
    {TOP LAB UP "      http: 1.1\n", CFG_ORDER_FEED, 128, 0, CFG_HTTP_1_1},
    {TOP LAB UP "      http: \"2\"\n", CFG_ORDER_FEED, 128, 0, CFG_HTTP_2},
    {TOP LAB UP "      http: '1.1'\n", CFG_ORDER_FEED, 128, 0, CFG_HTTP_1_1},
    /* all together, in flow style */
    {TOP LAB "    upstream: { url: \"https://h.test\", ca_file: @CA@, http: 1.1 }\n"
	     "    order: patient\n    max_in_flight: 512\n    dedup: 2h\n",
     CFG_ORDER_PATIENT, 512, 7200000, CFG_HTTP_1_1},
};

START_TEST(knob_value)
{
	const struct knob_case *t = &knob_cases[_i];
	const struct cfg_integration *a;
	struct cfg_errors errs;
	struct cfg *c;
	int rc = load(t->yaml, &c, &errs);

	if (rc != 0) {
		fprintf(stderr, "case %d\n", _i);
		dump(&errs);
	}
	ck_assert_int_eq(rc, 0);
	ck_assert_uint_eq(c->nintegrations, 1);
	a = &c->integrations[0];
	ck_assert_int_eq(a->order, t->order);
	ck_assert_uint_eq(a->max_in_flight, t->max_in_flight);
	ck_assert_uint_eq(a->dedup_ms, t->dedup_ms);
	ck_assert_int_eq(a->upstream.http, t->http);
	cfg_free(c);
}
END_TEST

/* ---------- many errors at once ---------- */

static const char many_yaml[] =
    "spool: /s.db\n"						 /* 1 */
    "log_phi: yes\n"						 /* 2 */
    "integrations:\n"						 /* 3 */
    "  - name: lab\n"						 /* 4 */
    "    listen: 203.0.113.1:80\n"				 /* 5 */
    "    sources: [203.0.113.64/26, 10.0.0.1/8]\n"		 /* 6 */
    "    ack: maybe\n"						 /* 7 */
    "    upstream:\n"						 /* 8 */
    "      url: http://h.test\n"				 /* 9 */
    "      ca_file: /nonexistent/ca\n"				 /* 10 */
    "  - name: lab\n"						 /* 11 */
    "    listen: 203.0.113.1:9960\n"				 /* 12 */
    "    sources: [10.0.0.0/8]\n"				 /* 13 */
    "    mllp: { release: 3 }\n"				 /* 14 */
    "  - listen: 203.0.113.1:9960\n"				 /* 15 */
    "    sources: [10.0.0.0/16]\n"				 /* 16 */
    "    upstream: { url: \"https://h.test\", ca_file: @CA@ }\n" /* 17 */
    "    dedup: 2d\n"						 /* 18 */
    "bogus: 1\n";						 /* 19 */

static const char *const many_want[] = {
    "t.yaml:2: log_phi: expected true or false, got 'yes'",
    "t.yaml:5: listen: port 80 is outside 9960-11794",
    "t.yaml:6: sources: 10.0.0.1/8 has host bits set (the network is 10.0.0.0/8)",
    "t.yaml:7: ack: expected 'commit' or 'upstream', got 'maybe'",
    "t.yaml:9: url: expected an https:// URL, got 'http://h.test'",
    "t.yaml:10: ca_file: cannot read /nonexistent/ca: No such file or directory",
    "t.yaml:11: integration 'lab': missing 'upstream'",
    "t.yaml:11: duplicate integration name 'lab' (first at line 4)",
    "t.yaml:14: release: expected 1 or 2, got '3'",
    "t.yaml:15: integration #3: missing 'name'",
    ("t.yaml:15: integrations 'lab' and #3 share 203.0.113.1:9960 and overlapping sources but "
     "have the same match: a peer cannot be told apart"),
    "t.yaml:18: dedup: 2d is longer than 24h",
    "t.yaml:19: unknown key 'bogus' at the top level",
};

START_TEST(many_errors_in_file_order)
{
	size_t n = sizeof many_want / sizeof *many_want, i;
	struct cfg_errors errs;
	struct cfg *c;

	ck_assert_int_eq(load(many_yaml, &c, &errs), -EINVAL);
	if (errs.n != n)
		dump(&errs);
	ck_assert_uint_eq(errs.n, n);
	for (i = 0; i < n; i++)
		ck_assert_str_eq(errs.msg[i], many_want[i]);
	cfg_errors_free(&errs);
}
END_TEST

START_TEST(errors_stop_at_limit)
{
	size_t keys = CFG_MAX_ERRORS + 50, i;
	char *yaml = malloc(keys * 16 + 64), *p = yaml;
	struct cfg_errors errs;
	struct cfg *c;

	ck_assert_ptr_nonnull(yaml);
	p += sprintf(p, "%s", TOP LAB UP);
	for (i = 0; i < keys; i++)
		p += sprintf(p, "k%zu: 1\n", i);
	ck_assert_int_eq(load(yaml, &c, &errs), -EINVAL);
	free(yaml);
	ck_assert_uint_eq(errs.n, CFG_MAX_ERRORS + 1);
	ck_assert_str_eq(errs.msg[0], "t.yaml:9: unknown key 'k0' at the top level");
	ck_assert_str_eq(errs.msg[CFG_MAX_ERRORS - 1],
			 "t.yaml:108: unknown key 'k99' at the top level");
	ck_assert_str_eq(errs.msg[CFG_MAX_ERRORS], "t.yaml: stopped after 100 errors");
	cfg_errors_free(&errs);
}
END_TEST

/* Control characters from a quoted value must not reach a terminal. */
START_TEST(messages_are_sanitized)
{
	struct cfg_errors errs;
	struct cfg *c;

	ck_assert_int_eq(load(TOP LAB UP "    ack: \"a\\nb\\e[31m\"\n", &c, &errs), -EINVAL);
	ck_assert_uint_eq(errs.n, 1);
	ck_assert_str_eq(errs.msg[0],
			 "t.yaml:9: ack: expected 'commit' or 'upstream', got 'a?b?[31m'");
	cfg_errors_free(&errs);
}
END_TEST

/* ---------- YAML syntax ---------- */

struct syntax_case {
	const char *yaml;
	const char *want;
};

static const struct syntax_case syntax_cases[] = {
    {"spool: /s.db\nintegrations: [a, b\nlog_phi: true\n",
     "t.yaml:3: YAML syntax error: did not find expected ',' or ']' (while parsing a flow "
     "sequence at line 2)"},
    {"spool: /s.db\n\tlog_phi: true\n",
     "t.yaml:2: YAML syntax error: found a tab character that violates indentation (while "
     "scanning a plain scalar at line 1)"},
    {"spool: /s.db\nintegrations:\n  - name: lab\n   listen: x\n",
     "t.yaml:4: YAML syntax error: did not find expected '-' indicator (while parsing a block "
     "collection at line 3)"},
    {"spool: /s.db\nlog_phi: \"unterminated\n",
     "t.yaml:3: YAML syntax error: found unexpected end of stream (while scanning a quoted "
     "scalar at line 2)"},
    {"spool: /s.db\nx: *nowhere\n", "t.yaml:2: YAML syntax error: found undefined alias"},
    {"spool: /s.db\nlog_phi: \xff\n",
     "t.yaml:2: bad character in the file: invalid leading UTF-8 octet"},
    {TOP LAB UP "---\n[\n", "t.yaml:11: YAML syntax error: did not find expected node content "
			    "(while parsing a flow node at line 11)"},
};

START_TEST(syntax_error_has_line)
{
	const struct syntax_case *t = &syntax_cases[_i];
	struct cfg_errors errs;
	struct cfg *c;

	ck_assert_int_eq(load(t->yaml, &c, &errs), -EINVAL);
	ck_assert_ptr_null(c);
	if (errs.n != 1 || strcmp(errs.msg[0], t->want) != 0)
		dump(&errs);
	ck_assert_uint_eq(errs.n, 1);
	ck_assert_str_eq(errs.msg[0], t->want);
	cfg_errors_free(&errs);
}
END_TEST

/* ---------- files ---------- */

static char *write_temp(const char *text, size_t len)
{
	char *path = strdup("/tmp/test_config_XXXXXX");
	int fd;

	ck_assert_ptr_nonnull(path);
	fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, text, len), (ssize_t)len);
	close(fd);
	return path;
}

START_TEST(load_file_ok)
{
	char *yaml = subst(minimal_yaml);
	char *path = write_temp(yaml, strlen(yaml));
	struct cfg_errors errs;
	struct cfg *c;

	ck_assert_int_eq(cfg_load(path, &c, &errs), 0);
	ck_assert_str_eq(c->path, path);
	ck_assert_str_eq(c->integrations[0].name, "lab");
	cfg_free(c);
	unlink(path);
	free(path);
	free(yaml);
}
END_TEST

START_TEST(load_file_errors_carry_path)
{
	char *path = write_temp("spool: /s.db\nfoo: 1\n", 20);
	struct cfg_errors errs;
	struct cfg *c;
	char want[128];

	ck_assert_int_eq(cfg_load(path, &c, &errs), -EINVAL);
	ck_assert_uint_eq(errs.n, 2);
	snprintf(want, sizeof want, "%s:1: missing 'integrations'", path);
	ck_assert_str_eq(errs.msg[0], want);
	snprintf(want, sizeof want, "%s:2: unknown key 'foo' at the top level", path);
	ck_assert_str_eq(errs.msg[1], want);
	cfg_errors_free(&errs);
	unlink(path);
	free(path);
}
END_TEST

START_TEST(load_file_unreadable)
{
	struct cfg_errors errs;
	struct cfg *c;
	char *big = write_temp("", 0);
	char want[128];

	ck_assert_int_eq(cfg_load("/nonexistent/appliance.yaml", &c, &errs), -ENOENT);
	ck_assert_ptr_null(c);
	ck_assert_uint_eq(errs.n, 1);
	ck_assert_str_eq(errs.msg[0],
			 "/nonexistent/appliance.yaml: cannot read: No such file or directory");
	cfg_errors_free(&errs);

	ck_assert_int_eq(cfg_load("/tmp", &c, &errs), -EINVAL);
	ck_assert_str_eq(errs.msg[0], "/tmp: not a regular file");
	cfg_errors_free(&errs);

	/* refused from its size alone, before anything is read */
	ck_assert_int_eq(truncate(big, CFG_MAX_FILE_SIZE + 1), 0);
	ck_assert_int_eq(cfg_load(big, &c, &errs), -EFBIG);
	snprintf(want, sizeof want, "%s: larger than 1048576 bytes", big);
	ck_assert_str_eq(errs.msg[0], want);
	cfg_errors_free(&errs);
	unlink(big);
	free(big);

	/* errs may be NULL */
	ck_assert_int_eq(cfg_load("/nonexistent/appliance.yaml", &c, NULL), -ENOENT);
}
END_TEST

/* The shipped example may fail only on files that exist on a real appliance. */
START_TEST(example_config_is_valid)
{
	struct cfg_errors errs;
	struct cfg *c;
	int rc = cfg_load(EXAMPLE_CONFIG, &c, &errs);
	size_t i;

	ck_assert_msg(rc == 0 || rc == -EINVAL, "cannot load %s (run from the source tree)",
		      EXAMPLE_CONFIG);
	for (i = 0; i < errs.n; i++)
		ck_assert_msg(strstr(errs.msg[i], ": cannot read /etc/appliance/") != NULL,
			      "unexpected: %s", errs.msg[i]);
	cfg_errors_free(&errs);
	cfg_free(c);
}
END_TEST

/* ---------- address helpers ---------- */

struct contains_case {
	const char *cidr;
	const char *peer;
	int want;
};

static const struct contains_case contains_cases[] = {
    {"203.0.113.64/26", "203.0.113.64", 1},
    {"203.0.113.64/26", "203.0.113.127", 1},
    {"203.0.113.64/26", "203.0.113.128", 0},
    {"203.0.113.64/26", "203.0.113.63", 0},
    {"203.0.113.64/26", "::ffff:203.0.113.70", 1}, /* mapped peer is IPv4 */
    {"203.0.113.64/26", "::ffff:203.0.113.10", 0},
    {"203.0.113.64/26", "2001:db8::1", 0},
    {"203.0.113.5", "203.0.113.5", 1}, /* bare address: /32 */
    {"203.0.113.5/32", "203.0.113.6", 0},
    {"203.0.113.5/32", "::ffff:203.0.113.5", 1},
    {"0.0.0.0/0", "198.51.100.1", 1},
    {"0.0.0.0/0", "::ffff:198.51.100.1", 1},
    {"0.0.0.0/0", "2001:db8::1", 0},
    {"::/0", "2001:db8::1", 1},
    {"::/0", "::ffff:198.51.100.1", 0}, /* treated as IPv4 */
    {"::/0", "198.51.100.1", 0},
    {"2001:db8::/32", "2001:db8:ffff::1", 1},
    {"2001:db8::/32", "2001:db9::", 0},
    {"2001:db8::/33", "2001:db8:7fff::1", 1},
    {"2001:db8::/33", "2001:db8:8000::1", 0},
    {"2001:db8::1", "2001:db8::1", 1}, /* bare address: /128 */
    {"2001:db8::1/128", "2001:db8::2", 0},
    {"::ffff:203.0.113.0/120", "203.0.113.9", 1},
    {"::ffff:203.0.113.0/120", "::ffff:203.0.113.9", 1},
};

static void make_peer(const char *s, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof *ss);
	if (strchr(s, ':')) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;

		s6->sin6_family = AF_INET6;
		ck_assert_int_eq(inet_pton(AF_INET6, s, &s6->sin6_addr), 1);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)ss;

		s4->sin_family = AF_INET;
		ck_assert_int_eq(inet_pton(AF_INET, s, &s4->sin_addr), 1);
	}
}

START_TEST(cidr_contains)
{
	const struct contains_case *t = &contains_cases[_i];
	struct sockaddr_storage peer;
	struct cfg_cidr c;

	ck_assert_int_eq(cfg_parse_cidr(t->cidr, &c), 0);
	make_peer(t->peer, &peer);
	ck_assert_msg(cfg_cidr_contains(&c, (struct sockaddr *)&peer) == t->want,
		      "%s in %s: want %d", t->peer, t->cidr, t->want);
}
END_TEST

struct cidr_case {
	const char *text;
	int rc;
	int family;
	const char *net;
	unsigned prefix;
};

static const struct cidr_case cidr_cases[] = {
    {"10.0.0.0/8", 0, AF_INET, "10.0.0.0", 8},
    {"10.1.2.3", 0, AF_INET, "10.1.2.3", 32},
    {"0.0.0.0/0", 0, AF_INET, "0.0.0.0", 0},
    {"10.1.2.3/8", -EDOM, AF_INET, "10.0.0.0", 8},
    {"2001:db8::/32", 0, AF_INET6, "2001:db8::", 32},
    {"2001:db8::1/64", -EDOM, AF_INET6, "2001:db8::", 64},
    {"::ffff:10.0.0.0/104", 0, AF_INET, "10.0.0.0", 8},
    {"::ffff:0:0/96", 0, AF_INET, "0.0.0.0", 0},
    {"10.0.0.0/33", -EINVAL, 0, NULL, 0},
    {"2001:db8::/129", -EINVAL, 0, NULL, 0},
    {"10.0.0.0/", -EINVAL, 0, NULL, 0},
    {"/8", -EINVAL, 0, NULL, 0},
    {"10.0.0.0/-1", -EINVAL, 0, NULL, 0},
    {"10.0.0.0/+8", -EINVAL, 0, NULL, 0},
    {"10.0.0.0/8x", -EINVAL, 0, NULL, 0},
    {"10.0.0/8", -EINVAL, 0, NULL, 0},
    {"lab.test/8", -EINVAL, 0, NULL, 0},
    {"", -EINVAL, 0, NULL, 0},
};

START_TEST(cidr_parse)
{
	const struct cidr_case *t = &cidr_cases[_i];
	struct cfg_cidr c;

	ck_assert_int_eq(cfg_parse_cidr(t->text, &c), t->rc);
	if (t->net)
		cidr_is(&c, t->family, t->net, t->prefix);
}
END_TEST

struct hostport_case {
	const char *text;
	int rc;
	int family;
	const char *host;
	unsigned port;
};

static const struct hostport_case hostport_cases[] = {
    {"203.0.113.1:9960", 0, AF_INET, "203.0.113.1", 9960},
    {"0.0.0.0:1", 0, AF_INET, "0.0.0.0", 1},
    {"127.0.0.1:65535", 0, AF_INET, "127.0.0.1", 65535},
    {"[::1]:9960", 0, AF_INET6, "::1", 9960},
    {"[2001:db8::1]:11794", 0, AF_INET6, "2001:db8::1", 11794},
    {"[::ffff:203.0.113.1]:10000", 0, AF_INET6, "::ffff:203.0.113.1", 10000},
    {"203.0.113.1", -EINVAL, 0, NULL, 0},
    {"203.0.113.1:", -EINVAL, 0, NULL, 0},
    {"203.0.113.1:0", -EINVAL, 0, NULL, 0},
    {"203.0.113.1:65536", -EINVAL, 0, NULL, 0},
    {"203.0.113.1:-1", -EINVAL, 0, NULL, 0},
    {"203.0.113.1:99x", -EINVAL, 0, NULL, 0},
    {":9960", -EINVAL, 0, NULL, 0},
    {"[::1]", -EINVAL, 0, NULL, 0},
    {"[::1]:", -EINVAL, 0, NULL, 0},
    {"[::1]9960", -EINVAL, 0, NULL, 0},
    {"::1:9960", -EINVAL, 0, NULL, 0},
    {"[203.0.113.1]:9960", -EINVAL, 0, NULL, 0},
    {"lab.test:9960", -EINVAL, 0, NULL, 0},
    {"", -EINVAL, 0, NULL, 0},
};

START_TEST(hostport_parse)
{
	const struct hostport_case *t = &hostport_cases[_i];
	struct sockaddr_storage ss;
	socklen_t len = 0;

	ck_assert_int_eq(cfg_parse_hostport(t->text, &ss, &len), t->rc);
	if (t->rc != 0)
		return;
	addr_is(&ss, t->family, t->host, t->port);
	ck_assert_uint_eq(len, t->family == AF_INET ? sizeof(struct sockaddr_in)
						    : sizeof(struct sockaddr_in6));
}
END_TEST

struct number_case {
	const char *text;
	int rc;
	uint64_t want;
};

static const struct number_case duration_cases[] = {
    {"500ms", 0, 500},
    {"30s", 0, 30000},
    {"5m", 0, 300000},
    {"2h", 0, 7200000},
    {"7d", 0, 604800000},
    {"0s", 0, 0},
    {"3650d", 0, CFG_DURATION_MAX_MS},
    {"3651d", -ERANGE, 0},
    {"99999999999999999999s", -ERANGE, 0},
    {"30", -EINVAL, 0},
    {"-1s", -EINVAL, 0},
    {"+1s", -EINVAL, 0},
    {"1.5s", -EINVAL, 0},
    {"1 s", -EINVAL, 0},
    {"1S", -EINVAL, 0},
    {"1sec", -EINVAL, 0},
    {"s", -EINVAL, 0},
    {"", -EINVAL, 0},
};

START_TEST(duration_parse)
{
	const struct number_case *t = &duration_cases[_i];
	uint64_t v = 12345;

	ck_assert_int_eq(cfg_parse_duration(t->text, &v), t->rc);
	ck_assert_uint_eq(v, t->rc == 0 ? t->want : 12345);
}
END_TEST

static const struct number_case size_cases[] = {
    {"65536", 0, 65536},
    {"1024B", 0, 1024},
    {"1KiB", 0, 1024},
    {"16MiB", 0, 16u << 20},
    {"2GiB", 0, 2ull << 30},
    {"0", 0, 0},
    {"18446744073709551615", 0, UINT64_MAX},
    {"18446744073709551616", -ERANGE, 0},
    {"17179869184GiB", -ERANGE, 0},
    {"1KB", -EINVAL, 0},
    {"1kib", -EINVAL, 0},
    {"1 MiB", -EINVAL, 0},
    {"-1", -EINVAL, 0},
    {"MiB", -EINVAL, 0},
    {"", -EINVAL, 0},
};

START_TEST(size_parse)
{
	const struct number_case *t = &size_cases[_i];
	uint64_t v = 12345;

	ck_assert_int_eq(cfg_parse_size(t->text, &v), t->rc);
	ck_assert_uint_eq(v, t->rc == 0 ? t->want : 12345);
}
END_TEST

#define N(a) ((int)(sizeof(a) / sizeof *(a)))

static Suite *config_suite(void)
{
	Suite *s = suite_create("config");
	TCase *tc = tcase_create("load");

	tcase_add_test(tc, valid_full_config);
	tcase_add_test(tc, valid_minimal_defaults);
	tcase_add_loop_test(tc, bad_value, 0, N(bad_cases));
	tcase_add_loop_test(tc, good_value, 0, N(good_cases));
	tcase_add_loop_test(tc, knob_value, 0, N(knob_cases));
	tcase_add_test(tc, many_errors_in_file_order);
	tcase_add_test(tc, errors_stop_at_limit);
	tcase_add_test(tc, messages_are_sanitized);
	tcase_add_loop_test(tc, syntax_error_has_line, 0, N(syntax_cases));
	tcase_add_test(tc, load_file_ok);
	tcase_add_test(tc, load_file_errors_carry_path);
	tcase_add_test(tc, load_file_unreadable);
	tcase_add_test(tc, example_config_is_valid);
	suite_add_tcase(s, tc);

	tc = tcase_create("parsers");
	tcase_add_loop_test(tc, cidr_contains, 0, N(contains_cases));
	tcase_add_loop_test(tc, cidr_parse, 0, N(cidr_cases));
	tcase_add_loop_test(tc, hostport_parse, 0, N(hostport_cases));
	tcase_add_loop_test(tc, duration_parse, 0, N(duration_cases));
	tcase_add_loop_test(tc, size_parse, 0, N(size_cases));
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(config_suite());
	int fd = mkstemp(ca_path), failed;

	if (fd < 0 || write(fd, "-----BEGIN CERTIFICATE-----\n", 28) != 28) {
		perror(ca_path);
		return EXIT_FAILURE;
	}
	close(fd);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	unlink(ca_path);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
