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
#define N(a)	       ((int)(sizeof(a) / sizeof *(a)))

/* A readable file that stands in for every CA, token, cert and key; made in main(). */
static char ca_path[] = "/tmp/test_config_ca_XXXXXX";
/* A directory with the tunnel secrets of the cases below (see make_secrets). */
static char dir_path[] = "/tmp/test_config_dir_XXXXXX";
/* Pins of the SSH keys made there (make_ssh_keys): "type base64", no comment. */
static char pin_ed[1024];  /* @PIN1@: ed.key's public key */
static char pin_rsa[2048]; /* @PIN2@: rsa3072.key's */

/* Replaces each "@CA@" in text by ca_path, each "@DIR@" by dir_path and
 * "@PIN1@", "@PIN2@" by the pins. Caller frees. */
static char *subst(const char *text)
{
	static const struct {
		const char *token;
		const char *value;
	} subs[] = {
	    {"@CA@", ca_path}, {"@DIR@", dir_path}, {"@PIN1@", pin_ed}, {"@PIN2@", pin_rsa}};
	size_t len = strlen(text) + 1, i;
	const char *p;
	char *out, *o;

	for (i = 0; i < sizeof subs / sizeof *subs; i++)
		for (p = text; (p = strstr(p, subs[i].token)); p += strlen(subs[i].token))
			len += strlen(subs[i].value);
	out = malloc(len);
	ck_assert_ptr_nonnull(out);
	for (o = out, p = text; *p;) {
		for (i = 0; i < sizeof subs / sizeof *subs; i++)
			if (strncmp(p, subs[i].token, strlen(subs[i].token)) == 0)
				break;
		if (i < sizeof subs / sizeof *subs) {
			o = stpcpy(o, subs[i].value);
			p += strlen(subs[i].token);
		} else {
			*o++ = *p++;
		}
	}
	*o = '\0';
	return out;
}

/* Loads text as "t.yaml" in a role; returns the rc and fills out/errs. */
static int load_as(const char *text, enum cfg_role role, struct cfg **out, struct cfg_errors *errs)
{
	char *t = subst(text);
	int rc = cfg_load_string_as("t.yaml", t, role, out, errs);

	free(t);
	return rc;
}

/* The bridge's view, as cfg_load_string() gives it. */
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
    "gate: open\n"
    "charon: { vici: \"tcp://127.0.0.1:4502\", start: false }\n"
    "supervisor: { heartbeat: 10s }\n"
    "https: { listen: 0.0.0.0:8443, cert: @CA@, key: @CA@, client_ca: @CA@, tokens_file: "
    "@DIR@/good.tokens, max_body: 2MiB }\n"
    "destinations:\n"
    "  - { name: a, address: 198.51.100.9:1, ack_timeout: 5s, idle_timeout: 10m, on_ae: dead, "
    "on_ar: retry, max_attempts: 1000, mllp: { release: 2, max_frame: 1KiB } }\n"
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
	const struct cfg_destination *d;
	const struct cfg_https *h;
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

	ck_assert_uint_eq(c->ndestinations, 1);
	d = &c->destinations[0];
	ck_assert_str_eq(d->name, "a");
	ck_assert_int_eq(d->line, 12);
	addr_is(&d->addr, AF_INET, "198.51.100.9", 1);
	ck_assert_str_eq(d->address_text, "198.51.100.9:1");
	ck_assert_uint_eq(d->ack_timeout_ms, 5000);
	ck_assert_uint_eq(d->idle_timeout_ms, 600000);
	ck_assert_int_eq(d->on_ae, CFG_REJECT_DEAD);
	ck_assert_int_eq(d->on_ar, CFG_REJECT_RETRY);
	ck_assert_uint_eq(d->max_attempts, 1000);
	ck_assert_int_eq(d->release, 2);
	ck_assert_uint_eq(d->max_frame, 1024);

	h = &c->https;
	ck_assert_str_eq(h->listen_text, "0.0.0.0:8443");
	addr_is(&h->listen, AF_INET, "0.0.0.0", 8443);
	ck_assert_uint_eq(h->listen_len, sizeof(struct sockaddr_in));
	ck_assert_str_eq(h->cert, ca_path);
	ck_assert_str_eq(h->key, ca_path);
	ck_assert_str_eq(h->client_ca, ca_path);
	ck_assert_ptr_nonnull(strstr(h->tokens_file, "/good.tokens"));
	ck_assert_uint_eq(h->max_body, 2u << 20);
	ck_assert_int_eq(h->line, 10);
	cfg_free(c);
}
END_TEST

static const char minimal_yaml[] = "gate: open\n"
				   "spool: /s.db\n"
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

#define OPEN		      "gate: open\n" /* no tunnels: the bridge alone */
#define TOP		      OPEN "spool: /s.db\nintegrations:\n" /* lines 1-3 */
#define LAB_NAME	      "  - name: lab\n"			   /* line 4 */
#define LAB_LISTEN	      "    listen: 203.0.113.1:9960\n"
#define LAB_SOURCES	      "    sources: [203.0.113.64/26]\n"
#define LAB		      LAB_NAME LAB_LISTEN LAB_SOURCES /* lines 4-6 */
#define UP		      "    upstream:\n      url: https://h.test/x\n      ca_file: @CA@\n" /* lines 7-9 */
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
    {TOP LAB UP "    ack: x\n", "t.yaml:10: ack: expected 'commit' or 'upstream', got 'x'"},
    {TOP LAB UP "    accept_ack: never\n",
     "t.yaml:10: accept_ack: expected 'msh15' or 'always', got 'never'"},
    {TOP LAB UP "    ack:\n", "t.yaml:10: ack: expected 'commit' or 'upstream'"},
    {TOP LAB UP "    order: fifo\n",
     "t.yaml:10: order: expected 'integration', 'sender', 'feed' or 'patient', got 'fifo'"},
    {TOP LAB UP "    order: Patient\n",
     "t.yaml:10: order: expected 'integration', 'sender', 'feed' or 'patient', got 'Patient'"},
    {TOP LAB UP "    order:\n",
     "t.yaml:10: order: expected 'integration', 'sender', 'feed' or 'patient'"},
    {TOP LAB UP "    order: [feed]\n",
     "t.yaml:10: order: expected 'integration', 'sender', 'feed' or 'patient'"},
    {TOP LAB UP "    max_in_flight: 0\n",
     "t.yaml:10: max_in_flight: expected an integer from 1 to 1024, got '0'"},
    {TOP LAB UP "    max_in_flight: 1025\n",
     "t.yaml:10: max_in_flight: expected an integer from 1 to 1024, got '1025'"},
    {TOP LAB UP "    max_in_flight: -1\n",
     "t.yaml:10: max_in_flight: expected an integer from 1 to 1024, got '-1'"},
    {TOP LAB UP "    max_in_flight: 1e3\n",
     "t.yaml:10: max_in_flight: expected an integer from 1 to 1024, got '1e3'"},
    {TOP LAB UP "    max_in_flight: 99999999999999999999\n",
     "t.yaml:10: max_in_flight: expected an integer from 1 to 1024, got '99999999999999999999'"},
    {TOP LAB UP "    max_in_flight:\n", "t.yaml:10: max_in_flight: expected an integer"},
    {TOP LAB UP "    dedup: 25h\n", "t.yaml:10: dedup: 25h is longer than 24h"},
    {TOP LAB UP "    dedup: 2d\n", "t.yaml:10: dedup: 2d is longer than 24h"},
    {TOP LAB UP "    dedup: 86400001ms\n", "t.yaml:10: dedup: 86400001ms is longer than 24h"},
    {TOP LAB UP "    dedup: 3651d\n", "t.yaml:10: dedup: 3651d is longer than 24h"},
    {TOP LAB UP "    dedup: 99999999999999999999s\n",
     "t.yaml:10: dedup: 99999999999999999999s is longer than 24h"},
    {TOP LAB UP "    dedup: 10\n",
     "t.yaml:10: dedup: expected a duration such as 30s, 10m or 1h, or 0 for off, got '10'"},
    {TOP LAB UP "    dedup: off\n",
     "t.yaml:10: dedup: expected a duration such as 30s, 10m or 1h, or 0 for off, got 'off'"},
    {TOP LAB UP "    dedup: -1m\n",
     "t.yaml:10: dedup: expected a duration such as 30s, 10m or 1h, or 0 for off, got '-1m'"},
    {TOP LAB UP "    dedup: 1.5h\n",
     "t.yaml:10: dedup: expected a duration such as 30s, 10m or 1h, or 0 for off, got '1.5h'"},
    {TOP LAB UP "    dedup: 00\n",
     "t.yaml:10: dedup: expected a duration such as 30s, 10m or 1h, or 0 for off, got '00'"},
    {TOP LAB UP "    dedup:\n", "t.yaml:10: dedup: expected a duration"},
    {TOP LAB UP "    dedup: { window: 10m }\n", "t.yaml:10: dedup: expected a duration"},
    {TOP LAB UP "    dedup: 10m\n    dedup: 5m\n",
     "t.yaml:11: duplicate key 'dedup' in integration"},
    {TOP LAB UP "    foo: 1\n", "t.yaml:10: unknown key 'foo' in integration"},
    {TOP LAB UP "    ack: commit\n    ack: upstream\n",
     "t.yaml:11: duplicate key 'ack' in integration"},
    {TOP LAB UP "    [a]: 1\n", "t.yaml:10: keys must be plain words in integration"},
    {TOP LAB UP "    mllp: 1\n", "t.yaml:10: mllp: expected a mapping"},
    {TOP LAB UP "    mllp: { bogus: 1 }\n", "t.yaml:10: unknown key 'bogus' in mllp"},
    {TOP LAB UP "    mllp: { release: 3 }\n", "t.yaml:10: release: expected 1 or 2, got '3'"},
    {TOP LAB UP "    mllp: { max_frame: 512 }\n",
     "t.yaml:10: max_frame: 512 is outside 1KiB-64MiB"},
    {TOP LAB UP "    mllp: { max_frame: 65MiB }\n",
     "t.yaml:10: max_frame: 65MiB is outside 1KiB-64MiB"},
    {TOP LAB UP "    mllp: { max_frame: 16MB }\n",
     "t.yaml:10: max_frame: expected a size such as 16MiB, 512KiB or 65536, got '16MB'"},
    {TOP LAB UP "    mllp: { max_frame: 99999999999999999999 }\n",
     "t.yaml:10: max_frame: 99999999999999999999 is outside 1KiB-64MiB"},
    {TOP LAB UP "    mllp: { frame_timeout: 0s }\n",
     "t.yaml:10: frame_timeout: must be longer than 0"},
    {TOP LAB UP "    mllp: { frame_timeout: 30 }\n",
     "t.yaml:10: frame_timeout: expected a duration such as 500ms, 30s, 5m, 2h or 7d, got '30'"},
    {TOP LAB UP "    mllp: { frame_timeout: -1s }\n",
     "t.yaml:10: frame_timeout: expected a duration such as 500ms, 30s, 5m, 2h or 7d, got '-1s'"},
    {TOP LAB UP "    mllp:\n      idle_timeout: 99999999999999999999d\n",
     "t.yaml:11: idle_timeout: 99999999999999999999d is longer than 3650d"},
    {TOP LAB UP "    mllp: { idle_timeout: 3651d }\n",
     "t.yaml:10: idle_timeout: 3651d is longer than 3650d"},
    {TOP LAB UP "    match: { sending_facility: \"A|B\" }\n",
     "t.yaml:10: sending_facility: must be 1-227 characters without '|' or control characters"},
    {TOP LAB UP "    match: { receiving_facility: \"\" }\n",
     "t.yaml:10: receiving_facility: must be 1-227 characters without '|' or control characters"},
    {TOP LAB UP "    match: { msh4: X }\n", "t.yaml:10: unknown key 'msh4' in match"},
    {TOP LAB UP "    match: LAB\n", "t.yaml:10: match: expected a mapping"},
    /* name, listen, sources */
    {TOP "  - name: 'lab one'\n" LAB_LISTEN LAB_SOURCES UP,
     "t.yaml:4: name: 'lab one' is not 1-64 characters of A-Z a-z 0-9 _ -"},
    {TOP
     "  - name: "
     "a12345678901234567890123456789012345678901234567890123456789012345\n" LAB_LISTEN LAB_SOURCES
	 UP,
     "t.yaml:4: name: 'a12345678901234567890123456789012345678901234567890123456789012345' "
     "is not 1-64 characters of A-Z a-z 0-9 _ -"},
    {TOP "  - name: [lab]\n" LAB_LISTEN LAB_SOURCES UP, "t.yaml:4: name: expected a string"},
    {TOP LAB_NAME "    listen: 203.0.113.1:80\n" LAB_SOURCES UP,
     "t.yaml:5: listen: port 80 is outside 9960-11794"},
    {TOP LAB_NAME "    listen: 203.0.113.1:11795\n" LAB_SOURCES UP,
     "t.yaml:5: listen: port 11795 is outside 9960-11794"},
    {TOP LAB_NAME "    listen: lab.test:9960\n" LAB_SOURCES UP,
     "t.yaml:5: listen: expected IPv4:port or [IPv6]:port, got 'lab.test:9960'"},
    {TOP LAB_NAME "    listen: 203.0.113.1\n" LAB_SOURCES UP,
     "t.yaml:5: listen: expected IPv4:port or [IPv6]:port, got '203.0.113.1'"},
    {TOP LAB_NAME "    listen: 2001:db8::1:9960\n" LAB_SOURCES UP,
     "t.yaml:5: listen: expected IPv4:port or [IPv6]:port, got '2001:db8::1:9960'"},
    {TOP LAB_NAME LAB_LISTEN "    sources: 203.0.113.64/26\n" UP,
     "t.yaml:6: sources: expected a sequence"},
    {TOP LAB_NAME LAB_LISTEN "    sources: []\n" UP,
     "t.yaml:6: sources: expected 1 to 64 CIDRs, got 0"},
    {TOP LAB_NAME LAB_LISTEN "    sources: [203.0.113.0/33]\n" UP,
     "t.yaml:6: sources: bad CIDR '203.0.113.0/33'"},
    {TOP LAB_NAME LAB_LISTEN "    sources:\n      - 10.0.0.0/8\n      - lab.test\n" UP,
     "t.yaml:8: sources: bad CIDR 'lab.test'"},
    {TOP LAB_NAME LAB_LISTEN "    sources: [203.0.113.65/26]\n" UP,
     "t.yaml:6: sources: 203.0.113.65/26 has host bits set (the network is 203.0.113.64/26)"},
    /* upstream */
    {TOP LAB "    upstream:\n      url: http://h.test/x\n      ca_file: @CA@\n",
     "t.yaml:8: url: expected an https:// URL, got 'http://h.test/x'"},
    {TOP LAB "    upstream:\n      url: https:///x\n      ca_file: @CA@\n",
     "t.yaml:8: url: no host in 'https:///x'"},
    {TOP LAB "    upstream:\n      url: https://:443/x\n      ca_file: @CA@\n",
     "t.yaml:8: url: no host in 'https://:443/x'"},
    {TOP LAB "    upstream:\n      url: https://u:pw@h.test/x\n      ca_file: @CA@\n",
     "t.yaml:8: url: credentials in the URL are not allowed"},
    {TOP LAB "    upstream:\n      url: https://h.test/x\n      ca_file: /nonexistent/ca.pem\n",
     "t.yaml:9: ca_file: cannot read /nonexistent/ca.pem: No such file or directory"},
    {TOP LAB "    upstream:\n      url: https://h.test/x\n      ca_file: /tmp\n",
     "t.yaml:9: ca_file: /tmp is not a regular file"},
    {TOP LAB UP "      bearer_token_file: /nonexistent/t\n",
     "t.yaml:10: bearer_token_file: cannot read /nonexistent/t: No such file or directory"},
    {TOP LAB UP "      client_cert: @CA@\n",
     "t.yaml:10: client_cert: client_key is missing (mTLS needs both)"},
    {TOP LAB UP "      client_key: @CA@\n",
     "t.yaml:10: client_key: client_cert is missing (mTLS needs both)"},
    {TOP LAB UP "      timeout: 0ms\n", "t.yaml:10: timeout: must be longer than 0"},
    {TOP LAB UP "      retries: 3\n", "t.yaml:10: unknown key 'retries' in upstream"},
    {TOP LAB UP "      http: 2.0\n", "t.yaml:10: http: expected 2 or 1.1, got '2.0'"},
    {TOP LAB UP "      http: 1.0\n", "t.yaml:10: http: expected 2 or 1.1, got '1.0'"},
    {TOP LAB UP "      http: 1\n", "t.yaml:10: http: expected 2 or 1.1, got '1'"},
    {TOP LAB UP "      http: 3\n", "t.yaml:10: http: expected 2 or 1.1, got '3'"},
    {TOP LAB UP "      http: h2\n", "t.yaml:10: http: expected 2 or 1.1, got 'h2'"},
    {TOP LAB UP "      http: \"1.1 \"\n", "t.yaml:10: http: expected 2 or 1.1, got '1.1 '"},
    {TOP LAB UP "      http:\n", "t.yaml:10: http: expected 2 or 1.1"},
    {TOP LAB UP "      http: [2]\n", "t.yaml:10: http: expected 2 or 1.1"},
    {TOP LAB UP "    http: 2\n", "t.yaml:10: unknown key 'http' in integration"},
    {TOP LAB UP "      dedup: 10m\n", "t.yaml:10: unknown key 'dedup' in upstream"},
    {TOP LAB "    upstream: https://h.test\n", "t.yaml:7: upstream: expected a mapping"},
    /* missing keys: the line of the mapping that lacks them */
    {TOP LAB "    upstream:\n      url: https://h.test/x\n",
     "t.yaml:8: integration 'lab': upstream: missing 'ca_file'"},
    {TOP LAB, "t.yaml:4: integration 'lab': missing 'upstream'"},
    {TOP "  - listen: 203.0.113.1:9960\n" LAB_SOURCES UP,
     "t.yaml:4: integration #1: missing 'name'"},
    {TOP LAB_NAME LAB_SOURCES UP,
     "t.yaml:4: integrations[0]: either listen (MLLP) or sftp (a pull channel) is required"},
    {TOP LAB_NAME LAB_LISTEN UP, "t.yaml:4: integration 'lab': missing 'sources'"},
    {"integrations:\n" LAB UP OPEN, "t.yaml:1: missing 'spool'"},
    {"spool: /s.db\n" OPEN, "t.yaml:1: missing 'integrations'"},
    /* top level */
    {"foo: 1\n" TOP LAB UP, "t.yaml:1: unknown key 'foo' at the top level"},
    {TOP LAB UP "spool: /t.db\n", "t.yaml:10: duplicate key 'spool' at the top level"},
    {"spool: /s.db\nintegrations: []\n" OPEN,
     "t.yaml:2: integrations: expected 1 to 256 integrations, got 0"},
    {"spool: /s.db\nintegrations: lab\n" OPEN, "t.yaml:2: integrations: expected a sequence"},
    {TOP "  - lab\n", "t.yaml:4: integrations: each entry must be a mapping"},
    {"spool: [a]\nintegrations:\n" LAB UP OPEN, "t.yaml:1: spool: expected a path or a mapping"},
    {"spool:\nintegrations:\n" LAB UP OPEN, "t.yaml:1: spool: expected a path or a mapping"},
    {"spool: { retention: 7d }\nintegrations:\n" LAB UP OPEN, "t.yaml:1: spool: missing 'path'"},
    {"spool: { path: /s.db, retention: 0d }\nintegrations:\n" LAB UP OPEN,
     "t.yaml:1: retention: must be longer than 0"},
    {"spool: { path: /s.db, keep: 7d }\nintegrations:\n" LAB UP OPEN,
     "t.yaml:1: unknown key 'keep' in spool"},
    {TOP LAB UP "log_phi: maybe\n", "t.yaml:10: log_phi: expected true or false, got 'maybe'"},
    {TOP LAB UP "retry:\n  initial: 10s\n  max: 5s\n",
     "t.yaml:12: retry: max 5s is shorter than initial 10s"},
    {TOP LAB UP "retry:\n  initial: 10m\n", "t.yaml:11: retry: max 5m is shorter than initial 10m"},
    {TOP LAB UP "retry: { jitter: 1s }\n", "t.yaml:10: unknown key 'jitter' in retry"},
    {TOP LAB UP "observability: { listen: localhost:9100 }\n",
     "t.yaml:10: listen: expected IPv4:port or [IPv6]:port, got 'localhost:9100'"},
    {TOP LAB UP "observability: {}\n", "t.yaml:10: observability: missing 'listen'"},
    {"- spool\n", "t.yaml:1: expected a mapping of settings at the top level"},
    {"", "t.yaml:1: the configuration is empty"},
    {"# only a comment\n", "t.yaml:1: the configuration is empty"},
    {TOP LAB UP "---\nspool: /t.db\n", "t.yaml:10: only one YAML document is allowed"},
    /* across integrations; the line is the second one's */
    {TOP LAB UP "  - name: lab\n    listen: 203.0.113.1:9961\n    sources: [10.0.0.0/8]\n" UP,
     "t.yaml:10: duplicate integration name 'lab' (first at line 4)"},
    {TOP LAB UP LAB2("203.0.113.1:9960", "[203.0.113.96/27]") UP,
     "t.yaml:11: integrations 'lab' and 'lab2' share 203.0.113.1:9960 and overlapping sources "
     "but have the same match: a peer cannot be told apart"},
    {TOP LAB UP "    match: { sending_facility: LAB }\n" LAB2("203.0.113.1:9960", "[0.0.0.0/0]") UP
     "    match: { sending_facility: LAB }\n",
     "t.yaml:12: integrations 'lab' and 'lab2' share 203.0.113.1:9960 and overlapping sources "
     "but have the same match: a peer cannot be told apart"},
    {TOP LAB UP LAB2("203.0.113.1:9960", "[10.0.0.0/8]") UP "    mllp: { release: 2 }\n",
     "t.yaml:11: integrations 'lab' and 'lab2' share 203.0.113.1:9960 but differ in mllp "
     "settings"},
    {TOP LAB UP LAB2("203.0.113.1:9960", "[10.0.0.0/8]") UP "    mllp: { idle_timeout: 1h }\n",
     "t.yaml:11: integrations 'lab' and 'lab2' share 203.0.113.1:9960 but differ in mllp "
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
    "spool: { path: /s.db }\nintegrations:\n" LAB UP OPEN,
    "%YAML 1.1\n---\n" TOP LAB UP "...\n",
    /* anchors and aliases are plain YAML */
    TOP LAB "    upstream: &up { url: \"https://h.test\", ca_file: @CA@ }\n" LAB2(
	"203.0.113.1:9961", "[10.0.0.0/8]") "    upstream: *up\n",
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
    "bogus: 1\n"						 /* 19 */
    OPEN;							 /* 20 */

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
	ck_assert_str_eq(errs.msg[0], "t.yaml:10: unknown key 'k0' at the top level");
	ck_assert_str_eq(errs.msg[CFG_MAX_ERRORS - 1],
			 "t.yaml:109: unknown key 'k99' at the top level");
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
			 "t.yaml:10: ack: expected 'commit' or 'upstream', got 'a?b?[31m'");
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
    {TOP LAB UP "---\n[\n", "t.yaml:12: YAML syntax error: did not find expected node content "
			    "(while parsing a flow node at line 12)"},
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
	char *path = write_temp("spool: /s.db\nfoo: 1\ngate: open\n", 31);
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

/* The shipped example may fail only on files that exist on a real appliance,
 * read by either process. */
START_TEST(example_config_is_valid)
{
	static const enum cfg_role roles[] = {CFG_ROLE_BRIDGE, CFG_ROLE_SUPERVISOR};
	struct cfg_errors errs;
	struct cfg *c;
	size_t i, r;

	for (r = 0; r < sizeof roles / sizeof *roles; r++) {
		int rc = cfg_load_as(EXAMPLE_CONFIG, roles[r], &c, &errs);

		ck_assert_msg(rc == 0 || rc == -EINVAL, "cannot load %s (run from the source tree)",
			      EXAMPLE_CONFIG);
		for (i = 0; i < errs.n; i++)
			ck_assert_msg(strstr(errs.msg[i], ": cannot read /etc/appliance/") != NULL,
				      "unexpected: %s", errs.msg[i]);
		cfg_errors_free(&errs);
		cfg_free(c);
	}
}
END_TEST

/* ---------- the tunnel side ---------- */

/* A source: appliance tunnel with one child, then an integration inside it. */
#define T_HEAD	 "spool: /s.db\ntunnels:\n" /* lines 1-2 */
#define T_NAME	 "  - name: hospital-a\n"   /* 3 */
#define T_LOCAL	 "    local_addrs: [198.51.100.1]\n"
#define T_REMOTE "    remote_addrs: [198.51.100.2]\n"
#define T_ADDRS	 T_LOCAL T_REMOTE			    /* 4-5 */
#define T_PSK	 "    auth: { psk_file: @DIR@/good.psk }\n" /* 6 */
#define T_IKE                                                                                      \
	"    ike_proposals: [aes256gcm16-prfsha384-ecp521, aes256-sha256-modp2048]\n" /* 7         \
										       */
#define T_CHILDREN "    children:\n"						      /* 8 */
#define C_NAME	   "      - name: mllp\n"					      /* 9 */
#define C_TS	   "        local_ts: [203.0.113.0/26]\n        remote_ts: [203.0.113.64/26]\n"
#define C_ESP	   "        esp_proposals: [aes256gcm16-ecp521, aes256gcm16-modp2048]\n" /* 12 */
#define TUN	   T_HEAD T_NAME T_ADDRS T_PSK T_IKE T_CHILDREN C_NAME C_TS C_ESP	 /* 1-12 */
#define TUN_IKE(p)                                                                                 \
	T_HEAD T_NAME T_ADDRS T_PSK "    ike_proposals: [" p "]\n" T_CHILDREN C_NAME C_TS C_ESP
#define TUN_ESP(p)                                                                                 \
	T_HEAD T_NAME T_ADDRS T_PSK T_IKE T_CHILDREN C_NAME C_TS "        esp_proposals: [" p "]"  \
								 "\n"
#define TUN_AUTH(a) T_HEAD T_NAME T_ADDRS "    auth: " a "\n" T_IKE T_CHILDREN C_NAME C_TS C_ESP
#define TUN_TS(l, r)                                                                               \
	T_HEAD T_NAME T_ADDRS T_PSK T_IKE T_CHILDREN C_NAME "        local_ts: " l                 \
							    "\n        remote_ts: " r "\n" C_ESP
/* after TUN: a second child (13-16), on the same local side or another one */
#define CHILD2(name, local, remote)                                                                \
	"      - name: " name "\n        local_ts: [" local "]\n        remote_ts: [" remote       \
	"]\n        esp_proposals: [aes256gcm16-ecp521]\n"
/* the same tunnel, source: swanctl (lines 1-8) */
#define SW T_HEAD T_NAME "    source: swanctl\n" T_CHILDREN C_NAME C_TS
/* an integration: after TUN lines 13-17 (listen 15, sources 16, url 17) */
#define INTEG(listen, sources, url)                                                                \
	"integrations:\n  - name: lab\n    listen: " listen "\n    sources: " sources              \
	"\n    upstream: { url: \"" url "\", ca_file: @CA@ }\n"
#define LAB_IN INTEG("203.0.113.1:9960", "[203.0.113.64/26]", "https://h.test/x")

#define X2(s)  s s
#define X4(s)  X2(s) X2(s)
#define X8(s)  X4(s) X4(s)
#define X16(s) X8(s) X8(s)
#define X32(s) X16(s) X16(s)

/* after TUN LAB_IN: a destination inside the tunnel (18-19) with more keys */
#define DEST(k) "destinations:\n  - { name: lis, address: 203.0.113.65:2575" k " }\n"
#define DESTS	DEST("")
/* then the outbound API's listener: https: 20, listen 21, cert 22, key 23, more from 24 */
#define HTTPS_AT(listen, more) "https:\n  listen: " listen "\n  cert: @CA@\n  key: @CA@\n" more
#define HTTPS_CA(listen)       HTTPS_AT(listen, "  client_ca: @CA@\n")
#define HTTPS_TOK(file)	       HTTPS_AT("198.51.100.1:8443", "  tokens_file: @DIR@/" file "\n")
#define OUT		       TUN LAB_IN DESTS /* 1-19 */

/* destinations[].hl7 */
#define HL7_VERSIONS "'2.3', '2.3.1', '2.4', '2.5', '2.5.1', '2.6', '2.7', '2.7.1' or '2.8'"
#define HL7_DELIMS   "may not hold | ^ ~ \\ & or control characters (HL7 delimiters)"

#define SUP CFG_ROLE_SUPERVISOR
#define BRI CFG_ROLE_BRIDGE

struct tunnel_case {
	enum cfg_role role;
	const char *yaml;
	const char *want; /* after @CA@ and @DIR@ are replaced */
};

static const struct tunnel_case tunnel_bad_cases[] = {
    /* 1. IKEv2 only */
    {SUP, TUN "    version: 1\n" LAB_IN,
     "t.yaml:13: version: only IKEv2 is allowed: expected 2, got '1'"},
    {BRI, TUN "    version: ikev2\n" LAB_IN,
     "t.yaml:13: version: only IKEv2 is allowed: expected 2, got 'ikev2'"},
    /* 2. DH 14 or 21 in every proposal, and a group in every ESP proposal (PFS) */
    {SUP, TUN_IKE("aes256-sha256-modp1024") LAB_IN,
     "t.yaml:7: ike_proposals: 'aes256-sha256-modp1024' uses modp1024 (DH 2): only modp2048 "
     "(14) and ecp521 (21) are allowed"},
    {SUP, TUN_IKE("aes256-sha256-modp2048-ecp256") LAB_IN,
     "t.yaml:7: ike_proposals: 'aes256-sha256-modp2048-ecp256' uses ecp256 (DH 19): only "
     "modp2048 (14) and ecp521 (21) are allowed"},
    {BRI, TUN_IKE("aes256gcm16-prfsha384-ecp521, aes128-sha1-modp1536") LAB_IN,
     "t.yaml:7: ike_proposals: 'aes128-sha1-modp1536' uses modp1536 (DH 5): only modp2048 (14) "
     "and ecp521 (21) are allowed"},
    {SUP, TUN_IKE("aes256-sha256") LAB_IN,
     "t.yaml:7: ike_proposals: 'aes256-sha256' names no DH group: add modp2048 or ecp521"},
    {SUP, TUN_IKE("aes256-sha256-modp2084") LAB_IN, /* a typo is no group */
     "t.yaml:7: ike_proposals: 'aes256-sha256-modp2084' names no DH group: add modp2048 or "
     "ecp521"},
    {SUP, TUN_IKE("default") LAB_IN,
     "t.yaml:7: ike_proposals: 'default' includes other DH groups: only modp2048 (14) and "
     "ecp521 (21) are allowed"},
    {SUP, TUN_IKE("aes256-sha256-MODP2048") LAB_IN,
     "t.yaml:7: ike_proposals: 'aes256-sha256-MODP2048' is not a strongSwan proposal "
     "(lowercase algorithm names joined by '-')"},
    {SUP, TUN_IKE("aes256--modp2048") LAB_IN,
     "t.yaml:7: ike_proposals: 'aes256--modp2048' is not a strongSwan proposal (lowercase "
     "algorithm names joined by '-')"},
    {SUP, TUN_IKE("") LAB_IN, "t.yaml:7: ike_proposals: expected 1 to 16 proposals, got 0"},
    {SUP, TUN_IKE(X16("aes256-sha256-modp2048, ") "aes256-sha256-modp2048") LAB_IN,
     "t.yaml:7: ike_proposals: expected 1 to 16 proposals, got 17"},
    {SUP, TUN_ESP("aes256gcm16") LAB_IN,
     "t.yaml:12: esp_proposals: 'aes256gcm16' names no DH group (PFS): add modp2048 or ecp521"},
    {SUP, TUN_ESP("aes256gcm16-x25519") LAB_IN,
     "t.yaml:12: esp_proposals: 'aes256gcm16-x25519' uses x25519 (DH 31): only modp2048 (14) "
     "and ecp521 (21) are allowed"},
    {SUP, TUN_ESP("aes256gcm16-modp2048-modpnone") LAB_IN,
     "t.yaml:12: esp_proposals: 'aes256gcm16-modp2048-modpnone' uses modpnone (no DH group: PFS "
     "becomes optional): only modp2048 (14) and ecp521 (21) are allowed"},
    {SUP, TUN_ESP("default") LAB_IN,
     "t.yaml:12: esp_proposals: 'default' includes other DH groups: only modp2048 (14) and "
     "ecp521 (21) are allowed"},
    /* 3. what each source needs, and what swanctl.conf owns */
    {SUP, T_HEAD T_NAME T_LOCAL T_PSK T_IKE T_CHILDREN C_NAME C_TS C_ESP LAB_IN,
     "t.yaml:3: tunnel 'hospital-a': missing 'remote_addrs'"},
    {SUP, T_HEAD T_NAME T_REMOTE T_PSK T_IKE T_CHILDREN C_NAME C_TS C_ESP LAB_IN,
     "t.yaml:3: tunnel 'hospital-a': missing 'local_addrs'"},
    {SUP, T_HEAD T_NAME T_ADDRS T_IKE T_CHILDREN C_NAME C_TS C_ESP LAB_IN,
     "t.yaml:3: tunnel 'hospital-a': missing 'auth'"},
    {BRI, T_HEAD T_NAME T_ADDRS T_PSK T_CHILDREN C_NAME C_TS C_ESP LAB_IN,
     "t.yaml:3: tunnel 'hospital-a': missing 'ike_proposals'"},
    {SUP, T_HEAD T_NAME T_ADDRS T_PSK T_IKE T_CHILDREN C_NAME C_TS LAB_IN,
     "t.yaml:9: tunnel 'hospital-a' child 'mllp': missing 'esp_proposals'"},
    {SUP, T_HEAD T_NAME T_ADDRS T_PSK T_IKE LAB_IN,
     "t.yaml:3: tunnel 'hospital-a': missing 'children'"},
    {SUP,
     T_HEAD
     "  - local_addrs: [198.51.100.1]\n" T_REMOTE T_PSK T_IKE T_CHILDREN C_NAME C_TS C_ESP LAB_IN,
     "t.yaml:3: tunnel #1: missing 'name'"},
    {SUP, SW "    auth: { psk_file: @DIR@/none.psk }\n" LAB_IN,
     "t.yaml:9: auth: set in swanctl.conf for a source: swanctl tunnel"},
    {SUP, SW "    ike_proposals: [aes256-sha256-modp1024]\n" LAB_IN,
     "t.yaml:9: ike_proposals: set in swanctl.conf for a source: swanctl tunnel"},
    {BRI, SW "    local_addrs: [198.51.100.1]\n" LAB_IN,
     "t.yaml:9: local_addrs: set in swanctl.conf for a source: swanctl tunnel"},
    {SUP, SW "    remote_addrs: [198.51.100.2]\n" LAB_IN,
     "t.yaml:9: remote_addrs: set in swanctl.conf for a source: swanctl tunnel"},
    {SUP, SW "    local_id: edge.example\n" LAB_IN,
     "t.yaml:9: local_id: set in swanctl.conf for a source: swanctl tunnel"},
    {SUP, SW "    remote_id: hospital-a.example\n" LAB_IN,
     "t.yaml:9: remote_id: set in swanctl.conf for a source: swanctl tunnel"},
    {SUP, SW "    dpd_delay: 30s\n" LAB_IN,
     "t.yaml:9: dpd_delay: set in swanctl.conf for a source: swanctl tunnel"},
    {SUP, SW "        esp_proposals: [aes256gcm16-ecp521]\n" LAB_IN,
     "t.yaml:9: esp_proposals: set in swanctl.conf for a source: swanctl tunnel"},
    {SUP,
     T_HEAD T_NAME "    source: swanctl\n" T_CHILDREN C_NAME
		   "        local_ts: [203.0.113.0/26]\n" LAB_IN,
     "t.yaml:6: tunnel 'hospital-a' child 'mllp': missing 'remote_ts'"},
    {SUP,
     T_HEAD T_NAME "    source: swanctl\n" T_CHILDREN C_NAME
		   "        remote_ts: [203.0.113.64/26]\n" LAB_IN,
     "t.yaml:6: tunnel 'hospital-a' child 'mllp': missing 'local_ts'"},
    {SUP, T_HEAD T_NAME "    source: swanctl\n" LAB_IN,
     "t.yaml:3: tunnel 'hospital-a': missing 'children'"},
    {SUP, T_HEAD T_NAME "    source: swanctll\n" T_CHILDREN C_NAME C_TS LAB_IN,
     "t.yaml:4: source: expected 'appliance' or 'swanctl', got 'swanctll'"},
    /* 4. auth: one method; the secrets are read in the supervisor's role only */
    {SUP, TUN_AUTH("{}") LAB_IN, "t.yaml:6: auth: expected psk_file, or cert, key and ca"},
    {BRI, TUN_AUTH("{}") LAB_IN, "t.yaml:6: auth: expected psk_file, or cert, key and ca"},
    {BRI, TUN_AUTH("@DIR@/good.psk") LAB_IN, "t.yaml:6: auth: expected a mapping"},
    {SUP, TUN_AUTH("{ psk_file: @DIR@/good.psk, cert: @DIR@/cert.pem }") LAB_IN,
     "t.yaml:6: auth: either psk_file or cert, key and ca, not both"},
    {BRI, TUN_AUTH("{ cert: @DIR@/cert.pem, key: @DIR@/key.pem }") LAB_IN,
     "t.yaml:6: auth: missing 'ca' (cert, key and ca go together)"},
    {SUP, TUN_AUTH("{ psk_file: @DIR@/good.psk, secret: x }") LAB_IN,
     "t.yaml:6: unknown key 'secret' in auth"},
    {SUP, TUN_AUTH("{ psk_file: @DIR@/none.psk }") LAB_IN,
     "t.yaml:6: psk_file: cannot read @DIR@/none.psk: No such file or directory"},
    {SUP, TUN_AUTH("{ psk_file: @DIR@/short.psk }") LAB_IN,
     "t.yaml:6: psk_file: the PSK in @DIR@/short.psk is 15 bytes: at least 16 are required"},
    {SUP, TUN_AUTH("{ psk_file: @DIR@/empty.psk }") LAB_IN,
     "t.yaml:6: psk_file: @DIR@/empty.psk is empty"},
    {SUP, TUN_AUTH("{ psk_file: @DIR@/newline.psk }") LAB_IN,
     "t.yaml:6: psk_file: @DIR@/newline.psk is empty"},
    {SUP, TUN_AUTH("{ psk_file: @DIR@/long.psk }") LAB_IN,
     "t.yaml:6: psk_file: the PSK in @DIR@/long.psk is longer than 1024 bytes"},
    {SUP, TUN_AUTH("{ psk_file: @DIR@ }") LAB_IN,
     "t.yaml:6: psk_file: @DIR@ is not a regular file"},
    {SUP, TUN_AUTH("{ cert: @DIR@/cert.pem, key: @DIR@/none.key, ca: @DIR@/ca.pem }") LAB_IN,
     "t.yaml:6: key: cannot read @DIR@/none.key: No such file or directory"},
    /* 5. MLLP listens inside a child's local_ts, for sources inside its remote_ts */
    {SUP, TUN INTEG("198.51.100.1:9960", "[203.0.113.64/26]", "https://h.test/x"),
     "t.yaml:15: listen: 198.51.100.1:9960 is not inside the local_ts of any tunnel child: "
     "plain MLLP must stay inside the tunnel"},
    {BRI, TUN INTEG("0.0.0.0:9960", "[203.0.113.64/26]", "https://h.test/x"),
     "t.yaml:15: listen: 0.0.0.0:9960 is every address: with tunnels, MLLP listens on an "
     "address inside a child's local_ts"},
    {BRI, TUN INTEG("\"[::]:9960\"", "[203.0.113.64/26]", "https://h.test/x"),
     "t.yaml:15: listen: [::]:9960 is every address: with tunnels, MLLP listens on an address "
     "inside a child's local_ts"},
    {SUP, TUN INTEG("203.0.113.1:9960", "[203.0.113.0/25]", "https://h.test/x"),
     "t.yaml:16: sources: 203.0.113.0/25 is not inside the remote_ts of child 'mllp', whose "
     "local_ts holds 203.0.113.1: plain MLLP must stay inside the tunnel"},
    {SUP,
     TUN INTEG("203.0.113.1:9960", "\n      - 203.0.113.64/27\n      - 198.51.100.7",
	       "https://h.test/x"),
     "t.yaml:18: sources: 198.51.100.7/32 is not inside the remote_ts of child 'mllp', whose "
     "local_ts holds 203.0.113.1: plain MLLP must stay inside the tunnel"},
    /* a source that another child carries, on another local side */
    {SUP,
     TUN CHILD2("lab2", "203.0.113.128/26", "203.0.113.192/26")
	 INTEG("203.0.113.1:9960", "[203.0.113.192/26]", "https://h.test/x"),
     "t.yaml:20: sources: 203.0.113.192/26 is not inside the remote_ts of child 'mllp', whose "
     "local_ts holds 203.0.113.1: plain MLLP must stay inside the tunnel"},
    {SUP,
     TUN CHILD2("lab2", "203.0.113.0/26", "203.0.113.192/26")
	 INTEG("203.0.113.1:9960", "[10.0.0.0/8]", "https://h.test/x"),
     "t.yaml:20: sources: 10.0.0.0/8 is not inside the remote_ts of children 'mllp', 'lab2', "
     "whose local_ts hold 203.0.113.1: plain MLLP must stay inside the tunnel"},
    /* 6. no HTTPS through the tunnel */
    {SUP, TUN INTEG("203.0.113.1:9960", "[203.0.113.64/26]", "https://203.0.113.70/x"),
     "t.yaml:17: url: 203.0.113.70 is inside remote_ts 203.0.113.64/26 of child 'mllp': HTTPS "
     "must not cross the VPN"},
    {BRI, TUN INTEG("203.0.113.1:9960", "[203.0.113.64/26]", "https://3405803846:8443/x"),
     "t.yaml:17: url: 203.0.113.70 is inside remote_ts 203.0.113.64/26 of child 'mllp': HTTPS "
     "must not cross the VPN"},
    {SUP,
     TUN_TS("[203.0.113.0/26]", "[203.0.113.64/26, \"2001:db8:64::/48\"]")
	 INTEG("203.0.113.1:9960", "[203.0.113.64/26]", "https://[2001:db8:64::5]:443/x"),
     "t.yaml:17: url: 2001:db8:64::5 is inside remote_ts 2001:db8:64::/48 of child 'mllp': "
     "HTTPS must not cross the VPN"},
    /* ... and no plain MLLP outside it */
    {SUP, TUN LAB_IN "destinations:\n  - { name: lis, address: 198.51.100.9:2575 }\n",
     "t.yaml:19: address: 198.51.100.9:2575 is not inside the remote_ts of any tunnel child: "
     "plain MLLP must stay inside the tunnel"},
    /* 7. a closed gate needs tunnels */
    {BRI, "spool: /s.db\n" LAB_IN,
     "t.yaml:1: gate is closed and no tunnels are configured: no MLLP would ever be accepted; "
     "add tunnels: or set gate: open"},
    {SUP, "spool: /s.db\n" LAB_IN "gate: closed\n",
     "t.yaml:7: gate is closed and no tunnels are configured: no MLLP would ever be accepted; "
     "add tunnels: or set gate: open"},
    {BRI, "spool: /s.db\n" LAB_IN "gate: shut\n",
     "t.yaml:7: gate: expected 'closed' or 'open', got 'shut'"},
    /* 8. names, limits, values */
    {SUP,
     TUN "  - name: hospital-a\n    source: swanctl\n    children:\n      - name: mllp2\n"
	 "        local_ts: [203.0.113.0/26]\n        remote_ts: [203.0.113.64/26]\n" LAB_IN,
     "t.yaml:13: duplicate tunnel name 'hospital-a' (first at line 3)"},
    {SUP,
     TUN "  - name: hospital-b\n    source: swanctl\n    children:\n      - name: mllp\n"
	 "        local_ts: [203.0.113.0/26]\n        remote_ts: [203.0.113.64/26]\n" LAB_IN,
     "t.yaml:16: duplicate child name 'mllp' (first at line 9): child names are unique across "
     "all tunnels"},
    {SUP, TUN CHILD2("mllp", "203.0.113.0/26", "203.0.113.64/26") LAB_IN,
     "t.yaml:13: duplicate child name 'mllp' (first at line 9): child names are unique across "
     "all tunnels"},
    {SUP, T_HEAD "  - name: hospital a\n" T_ADDRS T_PSK T_IKE T_CHILDREN C_NAME C_TS C_ESP LAB_IN,
     "t.yaml:3: name: 'hospital a' is not 1-64 characters of A-Z a-z 0-9 _ -"},
    {SUP, T_HEAD T_NAME T_ADDRS T_PSK T_IKE T_CHILDREN "      - name: mllp.1\n" C_TS C_ESP LAB_IN,
     "t.yaml:9: name: 'mllp.1' is not 1-64 characters of A-Z a-z 0-9 _ -"},
    {SUP, "spool: /s.db\ntunnels: []\n" LAB_IN,
     "t.yaml:2: tunnels: expected 1 to 32 tunnels, got 0"},
    {SUP, "spool: /s.db\ntunnels: [" X32("{}, ") "{}]\n" LAB_IN,
     "t.yaml:2: tunnels: expected 1 to 32 tunnels, got 33"},
    {SUP, "spool: /s.db\ntunnels: hospital-a\n" LAB_IN, "t.yaml:2: tunnels: expected a sequence"},
    {SUP, "spool: /s.db\ntunnels: [hospital-a]\n" LAB_IN,
     "t.yaml:2: tunnels: each entry must be a mapping"},
    {SUP, T_HEAD T_NAME T_ADDRS T_PSK T_IKE "    children: [" X8("{}, ") "{}]\n" LAB_IN,
     "t.yaml:8: children: expected 1 to 8 children, got 9"},
    {SUP, T_HEAD T_NAME T_ADDRS T_PSK T_IKE "    children: [mllp]\n" LAB_IN,
     "t.yaml:8: children: each entry must be a mapping"},
    {SUP, TUN_TS("[" X16("203.0.113.0/26, ") "203.0.113.0/26]", "[203.0.113.64/26]") LAB_IN,
     "t.yaml:10: local_ts: expected 1 to 16 CIDRs, got 17"},
    {SUP, TUN_TS("[203.0.113.0/33]", "[203.0.113.64/26]") LAB_IN,
     "t.yaml:10: local_ts: bad CIDR '203.0.113.0/33'"},
    {SUP, TUN_TS("[203.0.113.0/26]", "[203.0.113.65/26]") LAB_IN,
     "t.yaml:11: remote_ts: 203.0.113.65/26 has host bits set (the network is 203.0.113.64/26)"},
    {SUP, TUN_TS("[203.0.113.0/26]", "203.0.113.64/26") LAB_IN,
     "t.yaml:11: remote_ts: expected a sequence"},
    {SUP, TUN "        mode: tunnel\n" LAB_IN, "t.yaml:13: unknown key 'mode' in child"},
    {SUP, TUN "    mobike: no\n" LAB_IN, "t.yaml:13: unknown key 'mobike' in tunnel"},
    {SUP, TUN "    dpd_delay: 0s\n" LAB_IN, "t.yaml:13: dpd_delay: must be longer than 0"},
    {SUP, TUN "    local_id: \"\"\n" LAB_IN, "t.yaml:13: local_id: must not be empty"},
    {SUP,
     T_HEAD T_NAME
     "    local_addrs: [198.51.100.300]\n" T_REMOTE T_PSK T_IKE T_CHILDREN C_NAME C_TS C_ESP LAB_IN,
     "t.yaml:4: local_addrs: expected an IP address or a host name, got '198.51.100.300'"},
    {SUP,
     T_HEAD T_NAME T_LOCAL
     "    remote_addrs: [198.51.100.0/24]\n" T_PSK T_IKE T_CHILDREN C_NAME C_TS C_ESP LAB_IN,
     "t.yaml:5: remote_addrs: expected an IP address or a host name, got '198.51.100.0/24'"},
    {SUP,
     T_HEAD T_NAME T_LOCAL
     "    remote_addrs: [\"%any\"]\n" T_PSK T_IKE T_CHILDREN C_NAME C_TS C_ESP LAB_IN,
     "t.yaml:5: remote_addrs: expected an IP address or a host name, got '%any'"},
    {SUP,
     T_HEAD T_NAME T_LOCAL "    remote_addrs: [" X8(
	 "198.51.100.2, ") "198.51.100.2]\n" T_PSK T_IKE T_CHILDREN C_NAME C_TS C_ESP LAB_IN,
     "t.yaml:5: remote_addrs: expected 1 to 8 addresses, got 9"},
    {SUP, TUN LAB_IN "destinations: [" X32(X8("{}, ")) "{}]\n",
     "t.yaml:18: destinations: expected 1 to 256 destinations, got 257"},
    {SUP, TUN LAB_IN "destinations:\n  - { name: lis, address: 203.0.113.65 }\n",
     "t.yaml:19: address: expected IPv4:port or [IPv6]:port, got '203.0.113.65'"},
    {SUP, TUN LAB_IN "destinations:\n  - { name: lis }\n",
     "t.yaml:19: destinations[0]: either address (MLLP) or sftp (a push channel) is required"},
    {SUP, TUN LAB_IN "destinations:\n  - { name: lis, address: 203.0.113.65:2575, ack: x }\n",
     "t.yaml:19: unknown key 'ack' in destination"},
    {SUP,
     TUN LAB_IN "destinations:\n  - { name: lis, address: 203.0.113.65:2575 }\n"
		"  - { name: lis, address: 203.0.113.66:2575 }\n",
     "t.yaml:20: duplicate destination name 'lis' (first at line 19)"},
    /* charon and supervisor */
    {SUP, TUN LAB_IN "charon: { vici: unix://run/charon.vici }\n",
     "t.yaml:18: vici: expected unix:///ABSOLUTE/PATH or tcp://HOST:PORT, got "
     "'unix://run/charon.vici'"},
    {SUP, TUN LAB_IN "charon: { vici: \"tcp://127.0.0.1\" }\n",
     "t.yaml:18: vici: expected unix:///ABSOLUTE/PATH or tcp://HOST:PORT, got "
     "'tcp://127.0.0.1'"},
    {SUP, TUN LAB_IN "charon: { start: yes }\n",
     "t.yaml:18: start: expected true or false, got 'yes'"},
    {SUP, TUN LAB_IN "charon: { binary: charon }\n",
     "t.yaml:18: binary: expected an absolute path, got 'charon'"},
    {SUP, TUN LAB_IN "charon: { plugins: [vici] }\n", "t.yaml:18: unknown key 'plugins' in charon"},
    {SUP, TUN LAB_IN "charon: unix:///run/charon.vici\n", "t.yaml:18: charon: expected a mapping"},
    {SUP, TUN LAB_IN "supervisor: { bridge_user: \"mllp bridge\" }\n",
     "t.yaml:18: bridge_user: 'mllp bridge' is not 1-32 characters of A-Z a-z 0-9 . _ - (not "
     "starting with -)"},
    {SUP, TUN LAB_IN "supervisor: { control_group: -wheel }\n",
     "t.yaml:18: control_group: '-wheel' is not 1-32 characters of A-Z a-z 0-9 . _ - (not "
     "starting with -)"},
    {SUP, TUN LAB_IN "supervisor: { heartbeat: 0s }\n",
     "t.yaml:18: heartbeat: must be longer than 0"},
    {SUP, TUN LAB_IN "supervisor: { control_socket: /" X32("abcd") "/s }\n",
     "t.yaml:18: control_socket: the socket path is longer than 107 bytes"},
    {SUP, TUN LAB_IN "supervisor: { bridge_path: mllp-bridge }\n",
     "t.yaml:18: bridge_path: expected an absolute path, got 'mllp-bridge'"},
    {SUP, TUN LAB_IN "supervisor: { user: root }\n", "t.yaml:18: unknown key 'user' in supervisor"},
    /* 9. a destination's sending settings */
    {SUP, TUN LAB_IN DEST(", ack_timeout: 0s"), "t.yaml:19: ack_timeout: must be longer than 0"},
    {BRI, TUN LAB_IN DEST(", ack_timeout: 30"),
     "t.yaml:19: ack_timeout: expected a duration such as 500ms, 30s, 5m, 2h or 7d, got '30'"},
    {SUP, TUN LAB_IN DEST(", idle_timeout: 3651d"),
     "t.yaml:19: idle_timeout: 3651d is longer than 3650d"},
    {SUP, TUN LAB_IN DEST(", idle_timeout: ~"), "t.yaml:19: idle_timeout: expected a duration"},
    {SUP, TUN LAB_IN DEST(", on_ae: drop"),
     "t.yaml:19: on_ae: expected 'retry' or 'dead', got 'drop'"},
    {BRI, TUN LAB_IN DEST(", on_ar: Dead"),
     "t.yaml:19: on_ar: expected 'retry' or 'dead', got 'Dead'"},
    {SUP, TUN LAB_IN DEST(", on_ar: ~"), "t.yaml:19: on_ar: expected 'retry' or 'dead'"},
    {SUP, TUN LAB_IN DEST(", max_attempts: 0"),
     "t.yaml:19: max_attempts: expected an integer from 1 to 1000, got '0'"},
    {SUP, TUN LAB_IN DEST(", max_attempts: 1001"),
     "t.yaml:19: max_attempts: expected an integer from 1 to 1000, got '1001'"},
    {SUP, TUN LAB_IN DEST(", max_attempts: -1"),
     "t.yaml:19: max_attempts: expected an integer from 1 to 1000, got '-1'"},
    {SUP, TUN LAB_IN DEST(", max_attempts: ten"),
     "t.yaml:19: max_attempts: expected an integer from 1 to 1000, got 'ten'"},
    {SUP, TUN LAB_IN DEST(", mllp: 2"), "t.yaml:19: mllp: expected a mapping"},
    {SUP, TUN LAB_IN DEST(", mllp: { release: 3 }"),
     "t.yaml:19: release: expected 1 or 2, got '3'"},
    {SUP, TUN LAB_IN DEST(", mllp: { release: ~ }"), "t.yaml:19: release: expected 1 or 2"},
    {SUP, TUN LAB_IN DEST(", mllp: { max_frame: 1023 }"),
     "t.yaml:19: max_frame: 1023 is outside 1KiB-64MiB"},
    {BRI, TUN LAB_IN DEST(", mllp: { max_frame: 65MiB }"),
     "t.yaml:19: max_frame: 65MiB is outside 1KiB-64MiB"},
    {SUP, TUN LAB_IN DEST(", mllp: { max_frame: 16MB }"),
     "t.yaml:19: max_frame: expected a size such as 16MiB, 512KiB or 65536, got '16MB'"},
    {SUP, TUN LAB_IN DEST(", mllp: { frame_timeout: 30s }"),
     "t.yaml:19: unknown key 'frame_timeout' in mllp"},
    {SUP, TUN LAB_IN DEST(", mllp: { idle_timeout: 1h }"),
     "t.yaml:19: unknown key 'idle_timeout' in mllp"},
    /* 10. destinations[].hl7: how JSON becomes HL7 v2 for it */
    {SUP, TUN LAB_IN DEST(", hl7: 2.5.1"), "t.yaml:19: hl7: expected a mapping"},
    {BRI, TUN LAB_IN DEST(", hl7: [version]"), "t.yaml:19: hl7: expected a mapping"},
    {SUP, TUN LAB_IN DEST(", hl7: { version: 2.9 }"),
     "t.yaml:19: version: expected " HL7_VERSIONS ", got '2.9'"},
    {SUP, TUN LAB_IN DEST(", hl7: { version: 2.50 }"),
     "t.yaml:19: version: expected " HL7_VERSIONS ", got '2.50'"},
    {BRI, TUN LAB_IN DEST(", hl7: { version: v2.5.1 }"),
     "t.yaml:19: version: expected " HL7_VERSIONS ", got 'v2.5.1'"},
    {SUP, TUN LAB_IN DEST(", hl7: { version: ~ }"), "t.yaml:19: version: expected " HL7_VERSIONS},
    {SUP, TUN LAB_IN DEST(", hl7: { charset: utf8 }"),
     "t.yaml:19: charset: expected 'utf-8' or 'latin1', got 'utf8'"},
    {BRI, TUN LAB_IN DEST(", hl7: { charset: iso-8859-1 }"),
     "t.yaml:19: charset: expected 'utf-8' or 'latin1', got 'iso-8859-1'"},
    {SUP, TUN LAB_IN DEST(", hl7: { encoding: utf-8 }"),
     "t.yaml:19: unknown key 'encoding' in hl7"},
    {SUP, TUN LAB_IN DEST(", hl7: { msh_12: 2.5.1 }"), "t.yaml:19: unknown key 'msh_12' in hl7"},
    {SUP, TUN LAB_IN DEST(", hl7: { sending_application: \"EDGE|OUT\" }"),
     "t.yaml:19: sending_application: " HL7_DELIMS "; got 'EDGE|OUT'"},
    {SUP, TUN LAB_IN DEST(", hl7: { sending_facility: \"A^B\" }"),
     "t.yaml:19: sending_facility: " HL7_DELIMS "; got 'A^B'"},
    {BRI, TUN LAB_IN DEST(", hl7: { receiving_application: \"A~B\" }"),
     "t.yaml:19: receiving_application: " HL7_DELIMS "; got 'A~B'"},
    {SUP, TUN LAB_IN DEST(", hl7: { receiving_facility: \"A\\\\B\" }"),
     "t.yaml:19: receiving_facility: " HL7_DELIMS "; got 'A\\B'"},
    {SUP, TUN LAB_IN DEST(", hl7: { receiving_facility: \"A&B\" }"),
     "t.yaml:19: receiving_facility: " HL7_DELIMS "; got 'A&B'"},
    /* a control character (VT): the message shows it as ? */
    {SUP, TUN LAB_IN DEST(", hl7: { sending_application: \"A\\x0bB\" }"),
     "t.yaml:19: sending_application: " HL7_DELIMS "; got 'A?B'"},
    {SUP, TUN LAB_IN DEST(", hl7: { sending_application: " X32("abcde") X16("a") "abcde }"),
     "t.yaml:19: sending_application: longer than 180 bytes"},
    {BRI, TUN LAB_IN DEST(", hl7: { receiving_facility: " X32("abcde") X16("a") "abcde }"),
     "t.yaml:19: receiving_facility: longer than 180 bytes"},
    {SUP, TUN LAB_IN DEST(", hl7: { sending_facility: [A] }"),
     "t.yaml:19: sending_facility: expected a name"},
    /* latin1: the names are written in ISO 8859-1 too (at the name's line) */
    {SUP,
     TUN LAB_IN DEST(", hl7: { receiving_facility: \"\u0141\u00f3d\u017a\", charset: latin1 }"),
     "t.yaml:19: receiving_facility: '\xc5\x81\xc3\xb3"
     "d\xc5\xba' has a character that ISO 8859-1 "
     "cannot hold (charset: latin1)"},
    {BRI,
     TUN LAB_IN "destinations:\n  - name: lis\n    address: 203.0.113.65:2575\n    hl7:\n"
		"      charset: latin1\n      sending_application: \"\u20acDGE\"\n",
     "t.yaml:23: sending_application: '\xe2\x82\xac"
     "DGE' has a character that ISO 8859-1 "
     "cannot hold (charset: latin1)"},
    /* block style: the line of the bad value */
    {SUP,
     TUN LAB_IN "destinations:\n  - name: lis\n    address: 203.0.113.65:2575\n    hl7:\n"
		"      version: 2.3.1\n      charset: ascii\n",
     "t.yaml:23: charset: expected 'utf-8' or 'latin1', got 'ascii'"},
    {SUP, TUN LAB_IN "destinations:\n  - { name: lis, address: 203.0.113.65:0 }\n",
     "t.yaml:19: address: expected IPv4:port or [IPv6]:port, got '203.0.113.65:0'"},
    {SUP, TUN LAB_IN "destinations:\n  - { name: lis, address: 203.0.113.65:65536 }\n",
     "t.yaml:19: address: expected IPv4:port or [IPv6]:port, got '203.0.113.65:65536'"},
    {SUP, TUN LAB_IN "destinations:\n  - { name: lis, address: 0.0.0.0:2575 }\n",
     "t.yaml:19: address: 0.0.0.0:2575 is the unspecified address, not a receiver's"},
    {BRI,
     "gate: open\nspool: /s.db\n" LAB_IN
     "destinations:\n  - { name: lis, address: \"[::]:2575\" }\n",
     "t.yaml:9: address: [::]:2575 is the unspecified address, not a receiver's"},
    /* without tunnels only with gate: open (the gate rule says so) */
    {BRI, "spool: /s.db\n" LAB_IN "destinations:\n  - { name: lis, address: 198.51.100.9:2575 }\n",
     "t.yaml:1: gate is closed and no tunnels are configured: no MLLP would ever be accepted; "
     "add tunnels: or set gate: open"},
    /* 10. https: the outbound API */
    {BRI, OUT HTTPS_AT("198.51.100.1:8443", ""),
     "t.yaml:21: https: every request must be authenticated: set client_ca, tokens_file or "
     "both"},
    {SUP, OUT "https:\n  cert: @CA@\n  key: @CA@\n  client_ca: @CA@\n",
     "t.yaml:21: https: missing 'listen'"},
    {SUP, OUT "https:\n  listen: 198.51.100.1:8443\n  key: @CA@\n  client_ca: @CA@\n",
     "t.yaml:21: https: missing 'cert'"},
    {SUP, OUT "https:\n  listen: 198.51.100.1:8443\n  cert: @CA@\n  client_ca: @CA@\n",
     "t.yaml:21: https: missing 'key'"},
    {SUP, OUT "https: 198.51.100.1:8443\n", "t.yaml:20: https: expected a mapping"},
    {SUP, OUT HTTPS_CA("198.51.100.1:8443") "  port: 8443\n",
     "t.yaml:25: unknown key 'port' in https"},
    {SUP, OUT HTTPS_CA("localhost:8443"),
     "t.yaml:21: listen: expected IPv4:port or [IPv6]:port, got 'localhost:8443'"},
    {SUP, OUT HTTPS_CA("198.51.100.1"),
     "t.yaml:21: listen: expected IPv4:port or [IPv6]:port, got '198.51.100.1'"},
    /* the bridge opens cert, key, client_ca and tokens_file itself: checked in both roles */
    {BRI,
     OUT "https:\n  listen: 198.51.100.1:8443\n  cert: /nonexistent/https.pem\n"
	 "  key: @CA@\n  client_ca: @CA@\n",
     "t.yaml:22: cert: cannot read /nonexistent/https.pem: No such file or directory"},
    {SUP,
     OUT "https:\n  listen: 198.51.100.1:8443\n  cert: @CA@\n  key: @DIR@\n"
	 "  client_ca: @CA@\n",
     "t.yaml:23: key: @DIR@ is not a regular file"},
    {BRI, OUT HTTPS_AT("198.51.100.1:8443", "  client_ca: /nonexistent/ca\n"),
     "t.yaml:24: client_ca: cannot read /nonexistent/ca: No such file or directory"},
    {BRI, OUT HTTPS_TOK("none.tokens"),
     "t.yaml:24: tokens_file: cannot read @DIR@/none.tokens: No such file or directory"},
    {SUP, OUT HTTPS_CA("198.51.100.1:8443") "  max_body: 1023\n",
     "t.yaml:25: max_body: 1023 is outside 1KiB-64MiB"},
    {SUP, OUT HTTPS_CA("198.51.100.1:8443") "  max_body: 65MiB\n",
     "t.yaml:25: max_body: 65MiB is outside 1KiB-64MiB"},
    {SUP, OUT HTTPS_CA("198.51.100.1:8443") "  max_body: 1MB\n",
     "t.yaml:25: max_body: expected a size such as 16MiB, 512KiB or 65536, got '1MB'"},
    /* https needs somewhere to send */
    {SUP,
     TUN LAB_IN "https:\n  listen: 198.51.100.1:8443\n  cert: @CA@\n  key: @CA@\n"
		"  client_ca: @CA@\n",
     "t.yaml:19: https: no destinations are configured: no message could ever be posted; add "
     "destinations:"},
    /* the outbound API faces the cloud, never the tunnel */
    {SUP, OUT HTTPS_CA("203.0.113.1:8443"),
     "t.yaml:21: listen: 203.0.113.1:8443 is inside local_ts 203.0.113.0/26 of child 'mllp': "
     "the outbound API must not be reachable through the tunnel"},
    {BRI, OUT HTTPS_CA("\"[::ffff:203.0.113.62]:443\""),
     "t.yaml:21: listen: [::ffff:203.0.113.62]:443 is inside local_ts 203.0.113.0/26 of child "
     "'mllp': the outbound API must not be reachable through the tunnel"},
    {SUP, OUT HTTPS_CA("0.0.0.0:8443"),
     "t.yaml:21: listen: 0.0.0.0:8443 is every address, the tunnel's too: the outbound API "
     "must not be reachable through the tunnel"},
    {SUP, OUT HTTPS_CA("\"[::]:8443\""),
     "t.yaml:21: listen: [::]:8443 is every address, the tunnel's too: the outbound API must "
     "not be reachable through the tunnel"},
    /* 11. the tokens file: its own lines */
    {SUP, OUT HTTPS_TOK("short.tokens"),
     "@DIR@/short.tokens:1: the token is 15 characters: 16 to 256 are required"},
    {BRI, OUT HTTPS_TOK("long.tokens"),
     "@DIR@/long.tokens:2: the token is 257 characters: 16 to 256 are required"},
    {SUP, OUT HTTPS_TOK("ctrl.tokens"),
     "@DIR@/ctrl.tokens:1: the token has a character that is not visible ASCII (0x21-0x7e)"},
    {SUP, OUT HTTPS_TOK("utf8.tokens"),
     "@DIR@/utf8.tokens:1: the token has a character that is not visible ASCII (0x21-0x7e)"},
    {SUP, OUT HTTPS_TOK("unknown.tokens"), "@DIR@/unknown.tokens:1: unknown destination 'ris'"},
    {SUP, OUT HTTPS_TOK("twice.tokens"), "@DIR@/twice.tokens:1: destination 'lis' is listed twice"},
    {SUP, OUT HTTPS_TOK("comma.tokens"),
     "@DIR@/comma.tokens:1: expected * or destination names separated by commas, got 'lis,'"},
    {SUP, OUT HTTPS_TOK("star.tokens"),
     "@DIR@/star.tokens:1: expected * or destination names separated by commas, got '*,lis'"},
    {SUP, OUT HTTPS_TOK("alone.tokens"),
     "@DIR@/alone.tokens:2: expected a token, then * or destination names separated by commas"},
    {SUP, OUT HTTPS_TOK("three.tokens"),
     "@DIR@/three.tokens:1: expected a token, then * or destination names separated by commas"},
    {BRI, OUT HTTPS_TOK("dup.tokens"), "@DIR@/dup.tokens:5: duplicate token (first at line 2)"},
    {SUP, OUT HTTPS_TOK("many.tokens"), "@DIR@/many.tokens:1026: more than 1024 tokens"},
    {SUP, OUT HTTPS_TOK("comments.tokens"),
     "t.yaml:24: tokens_file: @DIR@/comments.tokens holds no tokens: add one, or remove "
     "tokens_file"},
    {BRI, OUT HTTPS_TOK("comments.tokens") "  client_ca: @CA@\n",
     "t.yaml:24: tokens_file: @DIR@/comments.tokens holds no tokens: add one, or remove "
     "tokens_file"},
};

START_TEST(tunnel_bad_value)
{
	const struct tunnel_case *t = &tunnel_bad_cases[_i];
	char *want = subst(t->want);
	struct cfg_errors errs;
	struct cfg *c = (struct cfg *)1;
	int rc = load_as(t->yaml, t->role, &c, &errs);

	if (errs.n != 1 || strcmp(errs.msg[0], want) != 0) {
		fprintf(stderr, "case %d: want: %s\n", _i, want);
		dump(&errs);
	}
	ck_assert_int_eq(rc, -EINVAL);
	ck_assert_ptr_null(c);
	ck_assert_uint_eq(errs.n, 1);
	ck_assert_str_eq(errs.msg[0], want);
	cfg_errors_free(&errs);
	free(want);
}
END_TEST

/* Near misses that must load, in the role given. */
static const struct tunnel_case tunnel_good_cases[] = {
    {SUP, TUN LAB_IN, NULL},
    {BRI, TUN LAB_IN, NULL},
    {SUP, SW LAB_IN, NULL},
    {SUP, SW "    version: 2\n" LAB_IN, NULL},
    {SUP, TUN_AUTH("{ cert: @DIR@/cert.pem, key: @DIR@/key.pem, ca: @DIR@/ca.pem }") LAB_IN, NULL},
    /* the bridge never opens the tunnel secrets */
    {BRI, TUN_AUTH("{ psk_file: @DIR@/none.psk }") LAB_IN, NULL},
    {BRI, TUN_AUTH("{ psk_file: @DIR@/short.psk }") LAB_IN, NULL},
    {BRI, TUN_AUTH("{ psk_file: @DIR@/empty.psk }") LAB_IN, NULL},
    {BRI,
     TUN_AUTH("{ cert: /nonexistent/c.pem, key: /nonexistent/k.pem, ca: /nonexistent/ca }") LAB_IN,
     NULL},
    /* PSK bounds: 16 bytes and a CRLF; 1024 bytes and no line break */
    {SUP, TUN_AUTH("{ psk_file: @DIR@/exact.psk }") LAB_IN, NULL},
    {SUP, TUN_AUTH("{ psk_file: @DIR@/max.psk }") LAB_IN, NULL},
    /* proposals: both groups in one, every accepted spelling */
    {SUP, TUN_IKE("aes256-sha384-modp2048-ecp521") LAB_IN, NULL},
    {SUP, TUN_ESP("aes256gcm16-esn-ecp521, aes128-sha256-modp2048-noesn") LAB_IN, NULL},
    {SUP, TUN_IKE(X16("aes256-sha256-modp2048, ")) LAB_IN, NULL},
    /* addresses: IPv6 and host names; identities of any shape */
    {SUP,
     T_HEAD T_NAME "    local_addrs: [\"2001:db8::1\"]\n    remote_addrs: [peer.example.org, "
		   "198.51.100.2]\n" T_PSK T_IKE T_CHILDREN C_NAME C_TS C_ESP
		   "    local_id: \"C=CH, O=Edge, CN=edge.example\"\n" LAB_IN,
     NULL},
    /* sources split over two children with the same local side */
    {SUP,
     TUN CHILD2("mllp2", "203.0.113.0/26", "203.0.113.192/26")
	 INTEG("203.0.113.1:9960", "[203.0.113.64/27, 203.0.113.192/26]", "https://h.test/x"),
     NULL},
    /* an IPv4-mapped listener; sources narrower than the selector */
    {SUP, TUN INTEG("\"[::ffff:203.0.113.1]:9960\"", "[203.0.113.80/28]", "https://h.test/x"),
     NULL},
    /* HTTPS to an address outside every remote_ts, or to a host name */
    {SUP, TUN INTEG("203.0.113.1:9960", "[203.0.113.64/26]", "https://198.51.100.80/x"), NULL},
    {SUP, TUN INTEG("203.0.113.1:9960", "[203.0.113.64/26]", "https://203-0-113-70.test/x"), NULL},
    /* the gate: closed with tunnels, open with or without them */
    {SUP, TUN LAB_IN "gate: closed\n", NULL},
    {BRI, TUN LAB_IN "gate: open\n", NULL},
    {BRI, "gate: open\nspool: /s.db\n" LAB_IN, NULL},
    /* destinations inside a tunnel, charon over TCP, every supervisor key */
    {SUP,
     TUN LAB_IN "destinations:\n  - { name: lis, address: 203.0.113.65:2575 }\n"
		"charon: { vici: \"tcp://[::1]:4502\", start: false }\n"
		"supervisor: { control_group: appliance, bridge_user: _mllp, heartbeat: 5s }\n",
     NULL},
    {BRI, "gate: open\nspool: /s.db\n" LAB_IN "charon: { vici: \"tcp://charon.example:4502\" }\n",
     NULL},
    /* destinations: every port; boundaries of each key */
    {SUP, TUN LAB_IN "destinations:\n  - { name: lis, address: 203.0.113.65:1 }\n", NULL},
    {SUP, TUN LAB_IN "destinations:\n  - { name: lis, address: 203.0.113.65:65535 }\n", NULL},
    {SUP,
     TUN LAB_IN DEST(", ack_timeout: 1ms, idle_timeout: 3650d, max_attempts: 1, on_ae: retry, "
		     "on_ar: dead, mllp: { release: \"1\", max_frame: 64MiB }"),
     NULL},
    {SUP, TUN LAB_IN DEST(", max_attempts: 1000, mllp: {}"), NULL},
    /* hl7: every version, empty, 180 characters, any other printable text */
    {SUP, TUN LAB_IN DEST(", hl7: {}"), NULL},
    {SUP, TUN LAB_IN DEST(", hl7: { version: \"2.3\" }"), NULL},
    {SUP, TUN LAB_IN DEST(", hl7: { version: 2.3.1 }"), NULL},
    {SUP, TUN LAB_IN DEST(", hl7: { version: 2.4 }"), NULL},
    {BRI, TUN LAB_IN DEST(", hl7: { version: 2.5 }"), NULL},
    {SUP, TUN LAB_IN DEST(", hl7: { version: 2.5.1 }"), NULL},
    {SUP, TUN LAB_IN DEST(", hl7: { version: 2.6 }"), NULL},
    {SUP, TUN LAB_IN DEST(", hl7: { version: 2.7 }"), NULL},
    {SUP, TUN LAB_IN DEST(", hl7: { version: 2.7.1 }"), NULL},
    {BRI, TUN LAB_IN DEST(", hl7: { version: 2.8, charset: latin1 }"), NULL},
    {SUP, TUN LAB_IN DEST(", hl7: { charset: utf-8, sending_application: \"\" }"), NULL},
    {SUP, TUN LAB_IN DEST(", hl7: { receiving_facility: \"\u0141\u00f3d\u017a\" }"), NULL},
    {SUP, TUN LAB_IN DEST(", hl7: { receiving_facility: \"Z\u00fcrich \u00ff\", charset: latin1 }"),
     NULL},
    {SUP, TUN LAB_IN DEST(", hl7: { sending_application: " X32("abcde") X16("a") "abcd }"), NULL},
    {SUP,
     TUN LAB_IN DEST(", hl7: { sending_facility: \"St. Mary's #2 (Nord-Ost)\", "
		     "receiving_application: \"Zo\u00eb\" }"),
     NULL},
    /* without tunnels, with gate: open; destinations without https */
    {BRI,
     "gate: open\nspool: /s.db\n" LAB_IN
     "destinations:\n  - { name: lis, address: 198.51.100.9:2575 }\n",
     NULL},
    {SUP, OUT, NULL},
    /* https: mTLS, tokens or both; on the cloud side; any address without tunnels */
    {BRI, OUT HTTPS_CA("198.51.100.1:8443"), NULL},
    {SUP, OUT HTTPS_CA("\"[2001:db8::1]:443\"") "  max_body: 64MiB\n", NULL},
    {SUP, OUT HTTPS_CA("203.0.113.64:8443") "  max_body: 1KiB\n", NULL},
    {SUP, OUT HTTPS_TOK("good.tokens"), NULL},
    {BRI, OUT HTTPS_TOK("named.tokens") "  client_ca: @CA@\n", NULL},
    {SUP, OUT HTTPS_TOK("max.tokens"), NULL},
    {BRI,
     "gate: open\nspool: /s.db\n" LAB_IN
     "destinations:\n  - { name: lis, address: 198.51.100.9:2575 }\n"
     "https: { listen: 0.0.0.0:8443, cert: @CA@, key: @CA@, tokens_file: @DIR@/good.tokens }\n",
     NULL},
};

START_TEST(tunnel_good_value)
{
	const struct tunnel_case *t = &tunnel_good_cases[_i];
	struct cfg_errors errs;
	struct cfg *c;
	int rc = load_as(t->yaml, t->role, &c, &errs);

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

static const char tunnel_yaml[] =
    "gate: closed\n"								  /* 1 */
    "charon:\n"									  /* 2 */
    "  vici: unix:///run/test/charon.vici\n"					  /* 3 */
    "  start: false\n"								  /* 4 */
    "  binary: /usr/libexec/ipsec/charon\n"					  /* 5 */
    "  strongswan_conf: /etc/appliance/strongswan.conf\n"			  /* 6 */
    "supervisor:\n"								  /* 7 */
    "  control_socket: /run/test/control.sock\n"				  /* 8 */
    "  control_group: appliance\n"						  /* 9 */
    "  bridge_user: bridge\n"							  /* 10 */
    "  bridge_path: /usr/sbin/mllp-bridge\n"					  /* 11 */
    "  heartbeat: 10s\n"							  /* 12 */
    "destinations:\n"								  /* 13 */
    "  - { name: lis, address: 203.0.113.65:2575 }\n"				  /* 14 */
    "  - name: ris\n"								  /* 15 */
    "    address: \"[2001:db8:64::9]:2576\"\n"					  /* 16 */
    "tunnels:\n"								  /* 17 */
    "  - name: hospital-a\n"							  /* 18 */
    "    source: appliance\n"							  /* 19 */
    "    version: 2\n"								  /* 20 */
    "    local_addrs: [198.51.100.1]\n"						  /* 21 */
    "    remote_addrs: [198.51.100.2, peer.example]\n"				  /* 22 */
    "    local_id: edge.example\n"						  /* 23 */
    "    remote_id: hospital-a.example\n"					  /* 24 */
    "    auth: { psk_file: @DIR@/good.psk }\n"					  /* 25 */
    "    ike_proposals: [aes256gcm16-prfsha384-ecp521, aes256-sha256-modp2048]\n" /* 26 */
    "    dpd_delay: 10s\n"							  /* 27 */
    "    children:\n"								  /* 28 */
    "      - name: mllp\n"							  /* 29 */
    "        local_ts: [203.0.113.0/26]\n"					  /* 30 */
    "        remote_ts: [203.0.113.64/26, \"2001:db8:64::/48\"]\n"		  /* 31 */
    "        esp_proposals: [aes256gcm16-ecp521, aes256gcm16-modp2048]\n"	  /* 32 */
    "  - name: hospital-b\n"							  /* 33 */
    "    source: swanctl\n"							  /* 34 */
    "    children:\n"								  /* 35 */
    "      - name: mllp-b\n"							  /* 36 */
    "        local_ts: [203.0.113.128/26]\n"					  /* 37 */
    "        remote_ts: [203.0.113.192/26]\n"					  /* 38 */
    "spool: /s.db\n"								  /* 39 */
    "integrations:\n"								  /* 40 */
    "  - name: lab\n"								  /* 41 */
    "    listen: 203.0.113.1:9960\n"						  /* 42 */
    "    sources: [203.0.113.64/26]\n"						  /* 43 */
    "    upstream: { url: \"https://h.test/x\", ca_file: @CA@ }\n"		  /* 44 */
    "  - name: lab-b\n"								  /* 45 */
    "    listen: 203.0.113.129:9961\n"						  /* 46 */
    "    sources: [203.0.113.200]\n"						  /* 47 */
    "    upstream: { url: \"https://198.51.100.80/x\", ca_file: @CA@ }\n";	  /* 48 */

static void psk_path_is(const char *got, const char *file)
{
	char want[256];

	snprintf(want, sizeof want, "%s/%s", dir_path, file);
	ck_assert_str_eq(got, want);
}

START_TEST(valid_tunnel_config)
{
	struct cfg_errors errs;
	struct cfg *c;
	const struct cfg_tunnel *a, *b;
	const struct cfg_child *ch;
	int rc = load_as(tunnel_yaml, CFG_ROLE_SUPERVISOR, &c, &errs);

	if (rc != 0)
		dump(&errs);
	ck_assert_int_eq(rc, 0);
	ck_assert_int_eq(c->gate, CFG_GATE_CLOSED);
	ck_assert_str_eq(c->charon.vici, "unix:///run/test/charon.vici");
	ck_assert_int_eq(c->charon.start, 0);
	ck_assert_str_eq(c->charon.binary, "/usr/libexec/ipsec/charon");
	ck_assert_str_eq(c->charon.strongswan_conf, "/etc/appliance/strongswan.conf");
	ck_assert_str_eq(c->supervisor.control_socket, "/run/test/control.sock");
	ck_assert_str_eq(c->supervisor.control_group, "appliance");
	ck_assert_str_eq(c->supervisor.bridge_user, "bridge");
	ck_assert_str_eq(c->supervisor.bridge_path, "/usr/sbin/mllp-bridge");
	ck_assert_uint_eq(c->supervisor.heartbeat_ms, 10000);

	ck_assert_uint_eq(c->ndestinations, 2);
	ck_assert_str_eq(c->destinations[0].name, "lis");
	addr_is(&c->destinations[0].addr, AF_INET, "203.0.113.65", 2575);
	ck_assert_uint_eq(c->destinations[0].addr_len, sizeof(struct sockaddr_in));
	ck_assert_str_eq(c->destinations[0].address_text, "203.0.113.65:2575");
	ck_assert_int_eq(c->destinations[0].line, 14);
	ck_assert_str_eq(c->destinations[1].name, "ris");
	addr_is(&c->destinations[1].addr, AF_INET6, "2001:db8:64::9", 2576);
	ck_assert_int_eq(c->destinations[1].line, 15);

	ck_assert_uint_eq(c->ntunnels, 2);
	a = &c->tunnels[0];
	ck_assert_str_eq(a->name, "hospital-a");
	ck_assert_int_eq(a->line, 18);
	ck_assert_int_eq(a->source, CFG_SOURCE_APPLIANCE);
	ck_assert_int_eq(a->version, 2);
	ck_assert_uint_eq(a->nlocal_addrs, 1);
	ck_assert_str_eq(a->local_addrs[0], "198.51.100.1");
	ck_assert_uint_eq(a->nremote_addrs, 2);
	ck_assert_str_eq(a->remote_addrs[0], "198.51.100.2");
	ck_assert_str_eq(a->remote_addrs[1], "peer.example");
	ck_assert_str_eq(a->local_id, "edge.example");
	ck_assert_str_eq(a->remote_id, "hospital-a.example");
	psk_path_is(a->psk_file, "good.psk");
	ck_assert_ptr_null(a->cert);
	ck_assert_ptr_null(a->key);
	ck_assert_ptr_null(a->ca);
	ck_assert_uint_eq(a->nike_proposals, 2);
	ck_assert_str_eq(a->ike_proposals[0], "aes256gcm16-prfsha384-ecp521");
	ck_assert_str_eq(a->ike_proposals[1], "aes256-sha256-modp2048");
	ck_assert_uint_eq(a->dpd_delay_ms, 10000);
	ck_assert_uint_eq(a->nchildren, 1);
	ch = &a->children[0];
	ck_assert_str_eq(ch->name, "mllp");
	ck_assert_int_eq(ch->line, 29);
	ck_assert_uint_eq(ch->nlocal_ts, 1);
	cidr_is(&ch->local_ts[0], AF_INET, "203.0.113.0", 26);
	ck_assert_uint_eq(ch->nremote_ts, 2);
	cidr_is(&ch->remote_ts[0], AF_INET, "203.0.113.64", 26);
	cidr_is(&ch->remote_ts[1], AF_INET6, "2001:db8:64::", 48);
	ck_assert_uint_eq(ch->nesp_proposals, 2);
	ck_assert_str_eq(ch->esp_proposals[0], "aes256gcm16-ecp521");
	ck_assert_str_eq(ch->esp_proposals[1], "aes256gcm16-modp2048");

	b = &c->tunnels[1];
	ck_assert_str_eq(b->name, "hospital-b");
	ck_assert_int_eq(b->source, CFG_SOURCE_SWANCTL);
	ck_assert_int_eq(b->version, 2);
	ck_assert_ptr_null(b->local_addrs);
	ck_assert_ptr_null(b->remote_addrs);
	ck_assert_ptr_null(b->psk_file);
	ck_assert_ptr_null(b->ike_proposals);
	ck_assert_uint_eq(b->nchildren, 1);
	ck_assert_str_eq(b->children[0].name, "mllp-b");
	ck_assert_ptr_null(b->children[0].esp_proposals);
	ck_assert_uint_eq(b->children[0].nesp_proposals, 0);
	cfg_free(c);
}
END_TEST

/* A tokens file's errors, each at its own line, sit where tokens_file is
 * in the configuration's order; the tokens themselves are never shown. */
START_TEST(tokens_errors_in_file_order)
{
	static const char *const want[] = {
	    "t.yaml:19: on_ae: expected 'retry' or 'dead', got 'never'",
	    "@DIR@/bad.tokens:2: the token is 4 characters: 16 to 256 are required",
	    "@DIR@/bad.tokens:2: unknown destination 'ris'",
	    "@DIR@/bad.tokens:4: duplicate token (first at line 1)",
	    "@DIR@/bad.tokens:5: expected a token, then * or destination names separated by commas",
	    "t.yaml:25: unknown key 'tokens' in https",
	};
	struct cfg_errors errs;
	struct cfg *c;
	size_t i;

	ck_assert_int_eq(load_as(TUN LAB_IN DEST(", on_ae: never")
				     HTTPS_TOK("bad.tokens") "  tokens: x\n",
				 CFG_ROLE_BRIDGE, &c, &errs),
			 -EINVAL);
	if (errs.n != (size_t)N(want))
		dump(&errs);
	ck_assert_uint_eq(errs.n, (size_t)N(want));
	for (i = 0; i < errs.n; i++) {
		char *w = subst(want[i]);

		ck_assert_str_eq(errs.msg[i], w);
		ck_assert_ptr_null(strstr(errs.msg[i], "s3cr")); /* no token in any message */
		free(w);
	}
	cfg_errors_free(&errs);
}
END_TEST

/* Without the sections: the gate closed, charon started, the default paths. */
START_TEST(tunnel_side_defaults)
{
	struct cfg_errors errs;
	struct cfg *c;

	ck_assert_int_eq(load_as(TUN LAB_IN, CFG_ROLE_SUPERVISOR, &c, &errs), 0);
	ck_assert_int_eq(c->gate, CFG_GATE_CLOSED);
	ck_assert_str_eq(c->charon.vici, "unix:///run/charon.vici");
	ck_assert_int_eq(c->charon.start, 1);
	ck_assert_str_eq(c->charon.binary, "/usr/lib/ipsec/charon");
	ck_assert_ptr_null(c->charon.strongswan_conf);
	ck_assert_str_eq(c->supervisor.control_socket, "/run/appliance/control.sock");
	ck_assert_ptr_null(c->supervisor.control_group);
	ck_assert_str_eq(c->supervisor.bridge_user, "mllp-bridge");
	ck_assert_ptr_null(c->supervisor.bridge_path);
	ck_assert_uint_eq(c->supervisor.heartbeat_ms, 30000);
	ck_assert_uint_eq(c->ndestinations, 0);
	ck_assert_ptr_null(c->destinations);
	ck_assert_ptr_null(c->https.listen_text);
	ck_assert_uint_eq(c->https.listen_len, 0);
	ck_assert_uint_eq(c->https.max_body, 1u << 20);
	ck_assert_uint_eq(c->ntunnels, 1);
	ck_assert_int_eq(c->tunnels[0].source, CFG_SOURCE_APPLIANCE);
	ck_assert_int_eq(c->tunnels[0].version, 2);
	ck_assert_uint_eq(c->tunnels[0].dpd_delay_ms, 30000);
	ck_assert_ptr_null(c->tunnels[0].local_id);
	ck_assert_ptr_null(c->tunnels[0].remote_id);
	cfg_free(c);

	ck_assert_int_eq(load(minimal_yaml, &c, &errs), 0);
	ck_assert_int_eq(c->gate, CFG_GATE_OPEN);
	ck_assert_uint_eq(c->ntunnels, 0);
	ck_assert_ptr_null(c->tunnels);
	ck_assert_str_eq(c->charon.vici, "unix:///run/charon.vici");
	ck_assert_str_eq(c->supervisor.bridge_user, "mllp-bridge");
	cfg_free(c);

	/* a destination with only its name and address; https with mTLS only */
	ck_assert_int_eq(load_as(OUT HTTPS_CA("198.51.100.1:8443"), CFG_ROLE_BRIDGE, &c, &errs), 0);
	ck_assert_uint_eq(c->ndestinations, 1);
	ck_assert_uint_eq(c->destinations[0].ack_timeout_ms, 30000);
	ck_assert_uint_eq(c->destinations[0].idle_timeout_ms, 7200000);
	ck_assert_int_eq(c->destinations[0].on_ae, CFG_REJECT_RETRY);
	ck_assert_int_eq(c->destinations[0].on_ar, CFG_REJECT_DEAD);
	ck_assert_uint_eq(c->destinations[0].max_attempts, 10);
	ck_assert_int_eq(c->destinations[0].release, 1);
	ck_assert_uint_eq(c->destinations[0].max_frame, MLLP_MAX_FRAME_DEFAULT);
	ck_assert_str_eq(c->https.listen_text, "198.51.100.1:8443");
	addr_is(&c->https.listen, AF_INET, "198.51.100.1", 8443);
	ck_assert_str_eq(c->https.client_ca, ca_path);
	ck_assert_ptr_null(c->https.tokens_file);
	ck_assert_uint_eq(c->https.max_body, 1u << 20);
	ck_assert_int_eq(c->https.line, 21);
	cfg_free(c);
}
END_TEST

/* destinations[].hl7: the defaults without the section or with keys left
 * out, and each key as given. */
START_TEST(destination_hl7)
{
	static const char yaml[] = TUN LAB_IN
	    "destinations:\n"								 /* 18 */
	    "  - { name: lis, address: 203.0.113.65:2575 }\n"				 /* 19 */
	    "  - name: ris\n"								 /* 20 */
	    "    address: 203.0.113.66:2575\n"						 /* 21 */
	    "    hl7:\n"								 /* 22 */
	    "      version: 2.3.1\n"							 /* 23 */
	    "      sending_application: EDGE-OUT\n"					 /* 24 */
	    "      sending_facility: CLOUD A\n"						 /* 25 */
	    "      receiving_application: ADT-IN\n"					 /* 26 */
	    "      receiving_facility: \"WARD 7\"\n"					 /* 27 */
	    "      charset: latin1\n"							 /* 28 */
	    "  - { name: pacs, address: 203.0.113.67:2575, hl7: { charset: utf-8 } }\n"; /* 29 */
	struct cfg_errors errs;
	struct cfg_hl7_out d;
	struct cfg *c;
	int rc = load_as(yaml, CFG_ROLE_SUPERVISOR, &c, &errs);

	if (rc != 0)
		dump(&errs);
	ck_assert_int_eq(rc, 0);
	ck_assert_uint_eq(c->ndestinations, 3);
	for (size_t i = 0; i < 3; i += 2) { /* no section; a section with charset only */
		const struct cfg_hl7_out *h = &c->destinations[i].hl7;

		ck_assert_str_eq(h->version, "2.5.1");
		ck_assert_str_eq(h->sending_app, "MLLP-EDGE");
		ck_assert_str_eq(h->sending_fac, "");
		ck_assert_str_eq(h->receiving_app, "");
		ck_assert_str_eq(h->receiving_fac, "");
		ck_assert_int_eq(h->latin1, 0);
	}
	ck_assert_str_eq(c->destinations[1].hl7.version, "2.3.1");
	ck_assert_str_eq(c->destinations[1].hl7.sending_app, "EDGE-OUT");
	ck_assert_str_eq(c->destinations[1].hl7.sending_fac, "CLOUD A");
	ck_assert_str_eq(c->destinations[1].hl7.receiving_app, "ADT-IN");
	ck_assert_str_eq(c->destinations[1].hl7.receiving_fac, "WARD 7");
	ck_assert_int_eq(c->destinations[1].hl7.latin1, 1);
	cfg_free(c);

	/* what a translation that names no destination uses */
	memset(&d, 'x', sizeof d);
	cfg_hl7_out_defaults(&d);
	ck_assert_str_eq(d.version, "2.5.1");
	ck_assert_str_eq(d.sending_app, "MLLP-EDGE");
	ck_assert_str_eq(d.sending_fac, "");
	ck_assert_str_eq(d.receiving_app, "");
	ck_assert_str_eq(d.receiving_fac, "");
	ck_assert_int_eq(d.latin1, 0);
}
END_TEST

/* One file, two readers: the bridge takes the secret's name, the supervisor
 * opens it; everything else they judge alike. */
START_TEST(role_decides_secret_checks)
{
	static const char yaml[] = TUN_AUTH("{ psk_file: @DIR@/none.psk }") LAB_IN;
	char *path = subst(yaml), *want = subst("t.yaml:6: psk_file: cannot read "
						"@DIR@/none.psk: No such file or directory");
	char *file = write_temp(path, strlen(path));
	struct cfg_errors errs;
	struct cfg *c;

	ck_assert_int_eq(cfg_load(file, &c, &errs), 0);
	ck_assert_uint_eq(errs.n, 0);
	psk_path_is(c->tunnels[0].psk_file, "none.psk");
	cfg_free(c);
	ck_assert_int_eq(cfg_load_as(file, CFG_ROLE_BRIDGE, &c, &errs), 0);
	cfg_free(c);

	ck_assert_int_eq(cfg_load_as(file, CFG_ROLE_SUPERVISOR, &c, &errs), -EINVAL);
	ck_assert_ptr_null(c);
	ck_assert_uint_eq(errs.n, 1);
	ck_assert_ptr_nonnull(strstr(errs.msg[0], want + strlen("t.yaml")));
	cfg_errors_free(&errs);

	ck_assert_int_eq(load_as(yaml, CFG_ROLE_SUPERVISOR, &c, &errs), -EINVAL);
	ck_assert_str_eq(errs.msg[0], want);
	cfg_errors_free(&errs);
	unlink(file);
	free(file);
	free(path);
	free(want);
}
END_TEST

/* Unreadable by permissions, not only absent. Root reads every file, so a
 * root run looks as nobody, who cannot enter the 0700 directory. */
START_TEST(psk_unreadable_for_supervisor_only)
{
	char psk[512], want[640], yaml[2048];
	uid_t euid = geteuid();
	struct cfg_errors errs;
	struct cfg *c;
	int fd;

	snprintf(psk, sizeof psk, "%s/locked.psk", dir_path);
	fd = open(psk, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0000);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, "0123456789abcdef0123\n", 21), 21);
	close(fd);
	if (euid == 0)
		ck_assert_int_eq(seteuid(65534), 0);
	ck_assert_int_eq(euidaccess(psk, R_OK), -1); /* the premise */
	snprintf(yaml, sizeof yaml, "%s", TUN_AUTH("{ psk_file: @DIR@/locked.psk }") LAB_IN);
	ck_assert_int_eq(load_as(yaml, CFG_ROLE_BRIDGE, &c, &errs), 0);
	cfg_free(c);
	ck_assert_int_eq(load_as(yaml, CFG_ROLE_SUPERVISOR, &c, &errs), -EINVAL);
	snprintf(want, sizeof want, "t.yaml:6: psk_file: cannot read %s: Permission denied", psk);
	ck_assert_uint_eq(errs.n, 1);
	ck_assert_str_eq(errs.msg[0], want);
	cfg_errors_free(&errs);
	if (euid == 0)
		ck_assert_int_eq(seteuid(0), 0);
	unlink(psk);
}
END_TEST

struct dh_case {
	const char *token;
	int group;
};

static const struct dh_case dh_cases[] = {
    {"modp768", 1},	  {"modp1024", 2},	{"modp1536", 5},
    {"modp2048", 14},	  {"modp3072", 15},	{"modp4096", 16},
    {"modp6144", 17},	  {"modp8192", 18},	{"modp1024s160", 22},
    {"modp2048s224", 23}, {"modp2048s256", 24}, {"ecp192", 25},
    {"ecp224", 26},	  {"ecp256", 19},	{"ecp384", 20},
    {"ecp521", 21},	  {"ecp224bp", 27},	{"ecp256bp", 28},
    {"ecp384bp", 29},	  {"ecp512bp", 30},	{"curve25519", 31},
    {"x25519", 31},	  {"curve448", 32},	{"x448", 32},
    {"aes256", 0},	  {"sha256", 0},	{"prfsha384", 0},
    {"aes256gcm16", 0},	  {"esn", 0},		{"MODP2048", 0},
    {"modp2048 ", 0},	  {"modpnone", 0},	{"", 0},
};

START_TEST(dh_group)
{
	const struct dh_case *t = &dh_cases[_i];

	ck_assert_msg(cfg_dh_group(t->token) == t->group, "'%s': want %d, got %d", t->token,
		      t->group, cfg_dh_group(t->token));
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

/* ---------- SFTP file channels (issue 14) ---------- */

/* An sftp integration: lines 1-3 TOP, name 4, sftp 5, server 6, user 7,
 * key 8, host_keys 9 (entries 10 and 11), dir 12, more sftp keys from 13,
 * then upstream (13 when there are none). */
#define SF_NAME "  - name: files\n"
#define SF_PINS "      host_keys:\n        - @PIN1@ lis current\n        - @PIN2@ lis next\n"
#define SF_UP	"    upstream: { url: \"https://h.test/x\", ca_file: @CA@ }\n"
#define SFX(server, user, key, dir, more)                                                          \
	TOP SF_NAME "    sftp:\n      server: " server "\n      user: " user "\n      key: " key   \
		    "\n" SF_PINS "      dir: " dir "\n" more SF_UP
#define SFTP_IN(more) SFX("203.0.113.10:22", "edge", "@DIR@/ed.key", "/outbox", more)
#define SF_PINNED(pins)                                                                            \
	TOP SF_NAME                                                                                \
	    "    sftp:\n      server: 203.0.113.10\n      user: edge\n      key: @DIR@/ed.key\n"   \
	    "      host_keys:" pins "\n      dir: /outbox\n" SF_UP
/* one line: an sftp mapping in flow style */
#define SF_FLOW(server, dir)                                                                       \
	"{ server: \"" server                                                                      \
	"\", user: edge, key: @DIR@/ed.key, host_keys: [\"@PIN1@\"], dir: " dir " }"
/* after TOP LAB UP (1-9): a push destination, destinations 10, name 11,
 * sftp 12, server 13 .. dir 17, more sftp keys from 18, then more
 * destination keys */
#define PUSH(more, dkeys)                                                                          \
	TOP LAB UP "destinations:\n  - name: lis-files\n    sftp:\n      server: 203.0.113.10\n"   \
		   "      user: edge\n      key: @DIR@/ed.key\n      host_keys: [\"@PIN1@\"]\n"    \
		   "      dir: /inbox\n" more dkeys
#define SFTP_MLLP_ONLY	   "not allowed for an sftp integration (MLLP only)"
#define SFTP_DEST_MLLP	   "not allowed for an sftp destination (MLLP only)"
#define SFTP_PULL_ONLY	   "only for a pull channel (an integration's sftp), not a destination's"
#define SFTP_SERVER_SYNTAX "server: expected IPv4, IPv4:port, IPv6 or [IPv6]:port, got "
#define SFTP_USER_SYNTAX                                                                           \
	"user: expected 1-64 visible ASCII characters without ':', '@' or '/', got "
#define SFTP_CTYPE_SYNTAX                                                                          \
	"content_type: expected type/subtype with optional '; name=value' parameters, got "

static const struct tunnel_case sftp_bad_cases[] = {
    /* an integration is MLLP or SFTP */
    {BRI, SFTP_IN("") "    listen: 203.0.113.1:9960\n",
     "t.yaml:14: integrations[0]: either listen (MLLP) or sftp (a pull channel), not both"},
    {SUP, TOP LAB UP "  - name: two\n" UP,
     "t.yaml:10: integrations[1]: either listen (MLLP) or sftp (a pull channel) is required"},
    {BRI, SFTP_IN("") "    sources: [203.0.113.64/26]\n", "t.yaml:14: sources: " SFTP_MLLP_ONLY},
    {BRI, SFTP_IN("") "    match: { sending_facility: LAB }\n",
     "t.yaml:14: match: " SFTP_MLLP_ONLY},
    {BRI, SFTP_IN("") "    mllp: { release: 2 }\n", "t.yaml:14: mllp: " SFTP_MLLP_ONLY},
    {BRI, SFTP_IN("") "    accept_ack: always\n", "t.yaml:14: accept_ack: " SFTP_MLLP_ONLY},
    {BRI, SFTP_IN("") "    dedup: 10m\n", "t.yaml:14: dedup: " SFTP_MLLP_ONLY},
    {BRI, SFTP_IN("") "    ack: upstream\n",
     "t.yaml:14: ack: only commit is allowed for an sftp integration (a file is taken once it "
     "is stored)"},
    {BRI, SFTP_IN("") "    order: fifo\n", /* a bad word is told as for any integration */
     "t.yaml:14: order: expected 'integration', 'sender', 'feed' or 'patient', got 'fifo'"},
    {BRI, TOP SF_NAME "    sftp: " SF_FLOW("203.0.113.10", "/outbox") "\n",
     "t.yaml:4: integration 'files': missing 'upstream'"},
    {BRI, TOP SF_NAME "    sftp: yes\n" SF_UP, "t.yaml:5: sftp: expected a mapping"},
    /* required keys, at the line where the mapping starts */
    {SUP,
     TOP SF_NAME "    sftp:\n      user: edge\n      key: @DIR@/ed.key\n" SF_PINS
		 "      dir: /outbox\n" SF_UP,
     "t.yaml:6: sftp: missing 'server'"},
    {BRI,
     TOP SF_NAME "    sftp: { server: 203.0.113.10, dir: /x, key: @DIR@/ed.key, user: e }\n" SF_UP,
     "t.yaml:5: sftp: missing 'host_keys'"},
    {BRI,
     TOP SF_NAME "    sftp: { server: 203.0.113.10, host_keys: [\"@PIN1@\"], key: @DIR@/ed.key, "
		 "user: e }\n" SF_UP,
     "t.yaml:5: sftp: missing 'dir'"},
    {BRI, SFTP_IN("      port: 22\n"), "t.yaml:13: unknown key 'port' in sftp"},
    /* server: a numeric address, inside the tunnel */
    {BRI, SFX("lis-sftp.hospital.test", "edge", "@DIR@/ed.key", "/outbox", ""),
     "t.yaml:6: server: use a numeric address; names would be resolved outside the tunnel"},
    {BRI, SFX("lis:2222", "edge", "@DIR@/ed.key", "/outbox", ""),
     "t.yaml:6: server: use a numeric address; names would be resolved outside the tunnel"},
    {BRI, SFX("203.0.113.300", "edge", "@DIR@/ed.key", "/outbox", ""),
     "t.yaml:6: " SFTP_SERVER_SYNTAX "'203.0.113.300'"},
    {BRI, SFX("203.0.113.10:0", "edge", "@DIR@/ed.key", "/outbox", ""),
     "t.yaml:6: " SFTP_SERVER_SYNTAX "'203.0.113.10:0'"},
    {BRI, SFX("\"[2001:db8::1\"", "edge", "@DIR@/ed.key", "/outbox", ""),
     "t.yaml:6: " SFTP_SERVER_SYNTAX "'[2001:db8::1'"},
    {BRI, SFX("0.0.0.0", "edge", "@DIR@/ed.key", "/outbox", ""),
     "t.yaml:6: server: 0.0.0.0 is the unspecified address, not a server's"},
    {SUP,
     TUN "integrations:\n  - name: files\n    sftp: " SF_FLOW("198.51.100.50", "/o") "\n" SF_UP,
     "t.yaml:15: server: 198.51.100.50 is not inside the remote_ts of any tunnel child: SFTP to "
     "the hospital travels only inside the tunnel"},
    {BRI,
     TUN LAB_IN
     "destinations:\n  - name: lis-files\n    sftp: " SF_FLOW("[2001:db8::9]:22", "/i") "\n",
     "t.yaml:20: server: 2001:db8::9 is not inside the remote_ts of any tunnel child: SFTP to the "
     "hospital travels only inside the tunnel"},
    /* user */
    {BRI, SFX("203.0.113.10", "a@b", "@DIR@/ed.key", "/outbox", ""),
     "t.yaml:7: " SFTP_USER_SYNTAX "'a@b'"},
    {BRI, SFX("203.0.113.10", "\"a b\"", "@DIR@/ed.key", "/outbox", ""),
     "t.yaml:7: " SFTP_USER_SYNTAX "'a b'"},
    {BRI, SFX("203.0.113.10", X32("ab") "c", "@DIR@/ed.key", "/outbox", ""),
     "t.yaml:7: " SFTP_USER_SYNTAX "'" X32("ab") "c'"},
    /* key: readable, a regular file (policy cases: sftp_key_cases) */
    {BRI, SFX("203.0.113.10", "edge", "@DIR@/none.key", "/outbox", ""),
     "t.yaml:8: key: cannot read @DIR@/none.key: No such file or directory"},
    {SUP, SFX("203.0.113.10", "edge", "@DIR@", "/outbox", ""),
     "t.yaml:8: key: @DIR@ is not a regular file"},
    {BRI, SFX("203.0.113.10", "edge", "@DIR@/dirnext.key", "/outbox", ""),
     "t.yaml:8: key (.next): @DIR@/dirnext.key.next is not a regular file"},
    /* host_keys */
    {BRI, SF_PINNED(" []"), "t.yaml:9: host_keys: expected 1 to 8 pinned keys, got 0"},
    {BRI, SF_PINNED(" @PIN1@"), "t.yaml:9: host_keys: expected a sequence"},
    {BRI, SF_PINNED(" [" X8("\"@PIN1@\", ") "\"@PIN2@\"]"),
     "t.yaml:9: host_keys: expected 1 to 8 pinned keys, got 9"},
    {BRI, SF_PINNED("\n        - @PIN1@ lis current\n        - @PIN1@ lis again"),
     "t.yaml:11: host_keys: the same key as line 10"},
    /* dir, done_dir, error_dir */
    {BRI, SFX("203.0.113.10", "edge", "@DIR@/ed.key", "outbox", ""),
     "t.yaml:12: dir: expected an absolute path, got 'outbox'"},
    {BRI, SFX("203.0.113.10", "edge", "@DIR@/ed.key", "/a/../outbox", ""),
     "t.yaml:12: dir: '..' is not allowed, got '/a/../outbox'"},
    {BRI, SFX("203.0.113.10", "edge", "@DIR@/ed.key", "\"/out\\tbox\"", ""),
     "t.yaml:12: dir: has a control character"},
    {BRI, SFX("203.0.113.10", "edge", "@DIR@/ed.key", "/" X32(X32("d")), ""),
     "t.yaml:12: dir: longer than 1024 bytes"},
    {BRI,
     SFX("203.0.113.10", "edge", "@DIR@/ed.key", "/" X32(X16("d")),
	 "      done_dir: " X32(X16("d")) "\n"),
     "t.yaml:13: done_dir: longer than 1024 bytes once under dir"},
    {BRI, SFTP_IN("      done_dir: /outbox/\n"),
     "t.yaml:13: done_dir: /outbox is the same folder as dir"},
    {BRI, SFTP_IN("      done_dir: .\n"), "t.yaml:13: done_dir: /outbox is the same folder as dir"},
    {BRI, SFTP_IN("      error_dir: //outbox/./\n"),
     "t.yaml:13: error_dir: /outbox is the same folder as dir"},
    {BRI, SFTP_IN("      done_dir: x\n      error_dir: /outbox/x\n"),
     "t.yaml:14: error_dir: /outbox/x is the same folder as done_dir"},
    {BRI, SFTP_IN("      done_dir: error\n"),
     "t.yaml:13: error_dir: /outbox/error is the same folder as done_dir"},
    {BRI, SFTP_IN("      done_dir: ../done\n"),
     "t.yaml:13: done_dir: '..' is not allowed, got '../done'"},
    {BRI, SFTP_IN("      after: delete\n      done_dir: /done\n"),
     "t.yaml:14: done_dir: has no use with after: delete"},
    /* glob, interval, timeout, after, split, content_type, max_file */
    {BRI, SFTP_IN("      glob: \"in/*.hl7\"\n"),
     "t.yaml:13: glob: expected 1-255 characters without '/' or control characters, got "
     "'in/*.hl7'"},
    {BRI, SFTP_IN("      glob: \"\"\n"),
     "t.yaml:13: glob: expected 1-255 characters without '/' or control characters, got ''"},
    {BRI, SFTP_IN("      interval: 500ms\n"), "t.yaml:13: interval: 500ms is outside 1s-1d"},
    {BRI, SFTP_IN("      interval: 25h\n"), "t.yaml:13: interval: 25h is outside 1s-1d"},
    {BRI, SFTP_IN("      interval: 0s\n"), "t.yaml:13: interval: must be longer than 0"},
    {BRI, SFTP_IN("      interval: soon\n"),
     "t.yaml:13: interval: expected a duration such as 500ms, 30s, 5m, 2h or 7d, got 'soon'"},
    {BRI, SFTP_IN("      timeout: 11m\n"), "t.yaml:13: timeout: 11m is outside 1s-10m"},
    {BRI, SFTP_IN("      timeout: 999ms\n"), "t.yaml:13: timeout: 999ms is outside 1s-10m"},
    {BRI, SFTP_IN("      after: keep\n"),
     "t.yaml:13: after: expected 'move' or 'delete', got 'keep'"},
    {BRI, SFTP_IN("      split: batch\n"),
     "t.yaml:13: split: expected 'none' or 'hl7-batch', got 'batch'"},
    {BRI, SFTP_IN("      content_type: text\n"), "t.yaml:13: " SFTP_CTYPE_SYNTAX "'text'"},
    {BRI, SFTP_IN("      content_type: \"text/plain; charset\"\n"),
     "t.yaml:13: " SFTP_CTYPE_SYNTAX "'text/plain; charset'"},
    {BRI, SFTP_IN("      content_type: \"text/pl ain\"\n"),
     "t.yaml:13: " SFTP_CTYPE_SYNTAX "'text/pl ain'"},
    {BRI, SFTP_IN("      content_type: text/" X32(X8("p")) "\n"),
     "t.yaml:13: content_type: longer than 255 bytes"},
    {BRI, SFTP_IN("      max_file: 0\n"), "t.yaml:13: max_file: 0 is outside 1B-64MiB"},
    {BRI, SFTP_IN("      max_file: 65MiB\n"), "t.yaml:13: max_file: 65MiB is outside 1B-64MiB"},
    {BRI, SFTP_IN("      max_file: big\n"),
     "t.yaml:13: max_file: expected a size such as 16MiB, 512KiB or 65536, got 'big'"},
    /* two pull channels on one folder; a push into a polled folder */
    {BRI,
     SFTP_IN("") "  - name: files2\n    sftp: " SF_FLOW("203.0.113.10", "/outbox//") "\n" SF_UP,
     "t.yaml:15: dir: /outbox on 203.0.113.10:22 is already polled by integration 'files' (line "
     "12): two pull channels would take each other's files"},
    {SUP,
     SFTP_IN("") "destinations:\n  - name: back\n    sftp: " SF_FLOW("203.0.113.10:22",
								     "/outbox") "\n",
     "t.yaml:16: dir: /outbox on 203.0.113.10:22 is polled by integration 'files' (line 12): the "
     "edge would pull its own files back"},
    /* a push destination: address or sftp, MLLP-only and pull-only keys */
    {BRI, PUSH("", "    address: 203.0.113.65:2575\n"),
     "t.yaml:18: destinations[0]: either address (MLLP) or sftp (a push channel), not both"},
    {BRI, PUSH("", "    ack_timeout: 5s\n"), "t.yaml:18: ack_timeout: " SFTP_DEST_MLLP},
    {BRI, PUSH("", "    idle_timeout: 5m\n"), "t.yaml:18: idle_timeout: " SFTP_DEST_MLLP},
    {BRI, PUSH("", "    on_ae: dead\n"), "t.yaml:18: on_ae: " SFTP_DEST_MLLP},
    {BRI, PUSH("", "    on_ar: retry\n"), "t.yaml:18: on_ar: " SFTP_DEST_MLLP},
    {BRI, PUSH("", "    mllp: { max_frame: 1MiB }\n"), "t.yaml:18: mllp: " SFTP_DEST_MLLP},
    {BRI, PUSH("      glob: x\n", ""), "t.yaml:18: glob: " SFTP_PULL_ONLY},
    {BRI, PUSH("      interval: 1m\n", ""), "t.yaml:18: interval: " SFTP_PULL_ONLY},
    {BRI, PUSH("      after: delete\n", ""), "t.yaml:18: after: " SFTP_PULL_ONLY},
    {BRI, PUSH("      done_dir: done\n", ""), "t.yaml:18: done_dir: " SFTP_PULL_ONLY},
    {BRI, PUSH("      error_dir: error\n", ""), "t.yaml:18: error_dir: " SFTP_PULL_ONLY},
    {BRI, PUSH("      split: none\n", ""), "t.yaml:18: split: " SFTP_PULL_ONLY},
    {BRI, PUSH("      content_type: text/plain\n", ""), "t.yaml:18: content_type: " SFTP_PULL_ONLY},
    {BRI, PUSH("      max_file: 65MiB\n", ""), "t.yaml:18: max_file: 65MiB is outside 1B-64MiB"},
    {BRI, PUSH("", "    max_attempts: 0\n"),
     "t.yaml:18: max_attempts: expected an integer from 1 to 1000, got '0'"},
};

START_TEST(sftp_bad_value)
{
	const struct tunnel_case *t = &sftp_bad_cases[_i];
	char *want = subst(t->want);
	struct cfg_errors errs;
	struct cfg *c = (struct cfg *)1;
	int rc = load_as(t->yaml, t->role, &c, &errs);

	if (errs.n != 1 || strcmp(errs.msg[0], want) != 0) {
		fprintf(stderr, "sftp case %d: want: %s\n", _i, want);
		dump(&errs);
	}
	ck_assert_int_eq(rc, -EINVAL);
	ck_assert_ptr_null(c);
	ck_assert_uint_eq(errs.n, 1);
	ck_assert_str_eq(errs.msg[0], want);
	cfg_errors_free(&errs);
	free(want);
}
END_TEST

/* sftpc's reasons are its own: the message is "KEY: " + the reason, and the
 * reason names what is wrong. */
struct sftp_key_case {
	const char *yaml;
	const char *prefix; /* after @DIR@ is replaced */
	const char *part;   /* in the reason; NULL: any reason */
};

static const struct sftp_key_case sftp_key_cases[] = {
    {SFX("203.0.113.10", "edge", "@DIR@/rsa2048.key", "/outbox", ""),
     "t.yaml:8: key: ", "2048 bits"},
    {SFX("203.0.113.10", "edge", "@DIR@/locked.key", "/outbox", ""),
     "t.yaml:8: key: ", "encrypted"},
    {SFX("203.0.113.10", "edge", "@CA@", "/outbox", ""), "t.yaml:8: key: ", NULL},
    {SFX("203.0.113.10", "edge", "@DIR@/rolled.key", "/outbox", ""),
     "t.yaml:8: key (.next): ", "2048 bits"},
    {SF_PINNED("\n        - ssh-dss AAAAB3NzaC1kc3MAAACBAP lis"),
     "t.yaml:10: host_keys: ", "ssh-dss"},
    {SF_PINNED("\n        - ssh-ed25519 !!!notbase64 lis"), "t.yaml:10: host_keys: ", NULL},
    {SF_PINNED("\n        - @PIN1@\n        - ssh-ed25519"), "t.yaml:11: host_keys: ", NULL},
};

START_TEST(sftp_key_value)
{
	const struct sftp_key_case *t = &sftp_key_cases[_i];
	char *prefix = subst(t->prefix);
	struct cfg_errors errs;
	struct cfg *c = (struct cfg *)1;
	int rc = load_as(t->yaml, _i % 2 ? SUP : BRI, &c, &errs);

	if (errs.n != 1 || strncmp(errs.msg[0], prefix, strlen(prefix)) != 0) {
		fprintf(stderr, "sftp key case %d: want: %s...%s\n", _i, prefix,
			t->part ? t->part : "");
		dump(&errs);
	}
	ck_assert_int_eq(rc, -EINVAL);
	ck_assert_ptr_null(c);
	ck_assert_uint_eq(errs.n, 1);
	ck_assert_int_eq(strncmp(errs.msg[0], prefix, strlen(prefix)), 0);
	ck_assert_uint_gt(strlen(errs.msg[0]), strlen(prefix)); /* a reason is given */
	if (t->part)
		ck_assert_ptr_nonnull(strstr(errs.msg[0] + strlen(prefix), t->part));
	cfg_errors_free(&errs);
	free(prefix);
}
END_TEST

/* Near misses that must load, in the role given. */
static const struct tunnel_case sftp_good_cases[] = {
    {BRI, SFTP_IN(""), NULL},
    {SUP, SFTP_IN(""), NULL},
    {BRI, SFX("203.0.113.10", "edge", "@DIR@/ed.key", "/outbox", ""), NULL},
    {BRI, SFX("\"[2001:db8::1]:2222\"", "edge", "@DIR@/ed.key", "/outbox", ""), NULL},
    {BRI, SFX("\"2001:db8::1\"", "edge", "@DIR@/ed.key", "/outbox", ""), NULL},
    {BRI, SFX("\"[2001:db8::1]\"", "edge", "@DIR@/ed.key", "/outbox", ""), NULL},
    {BRI, SFX("203.0.113.10", "edge.user-1_x", "@DIR@/rsa3072.key", "/", ""), NULL},
    {SUP, SFX("203.0.113.10", "edge", "@DIR@/rollok.key", "/outbox", ""), NULL}, /* good .next */
    {BRI, SFTP_IN("") "    ack: commit\n    order: integration\n    max_in_flight: 1\n", NULL},
    {BRI, SFTP_IN("      after: delete\n      error_dir: /failed\n"), NULL},
    {BRI, SFTP_IN("      content_type: \"text/plain; charset=utf-8\"\n"), NULL},
    {BRI, SFTP_IN("      content_type: \"application/hl7-v2;charset=\\\"8859/1\\\" ; x=y\"\n"),
     NULL},
    {BRI, SFTP_IN("      max_file: 64MiB\n      interval: 24h\n      timeout: 10m\n"), NULL},
    {BRI, SFTP_IN("      glob: \"*.[hH][lL]7\"\n      interval: 1s\n      timeout: 1s\n"), NULL},
    {BRI, SF_PINNED(" [\"@PIN1@\", \"@PIN2@\"]"), NULL},
    /* the same folder on another port or server, or another folder: no clash */
    {BRI, SFTP_IN("") "  - name: f2\n    sftp: " SF_FLOW("203.0.113.10:2222", "/outbox") "\n" SF_UP,
     NULL},
    {BRI, SFTP_IN("") "  - name: f2\n    sftp: " SF_FLOW("203.0.113.11", "/outbox") "\n" SF_UP,
     NULL},
    {BRI, SFTP_IN("") "  - name: f2\n    sftp: " SF_FLOW("203.0.113.10", "/outbox/b") "\n" SF_UP,
     NULL},
    {BRI,
     SFTP_IN("") "destinations:\n  - name: d\n    sftp: " SF_FLOW("203.0.113.10", "/inbox") "\n",
     NULL},
    /* two push destinations may write one folder: files do not clash by name */
    {BRI, PUSH("", "") "  - name: d2\n    sftp: " SF_FLOW("203.0.113.10", "/inbox") "\n", NULL},
    {SUP,
     PUSH("      max_file: 1\n      timeout: 2m\n",
	  "    max_attempts: 3\n    hl7: { version: \"2.3\" }\n"),
     NULL},
    /* inside the tunnel, or gate open: no tunnel check */
    {SUP, TUN "integrations:\n  - name: files\n    sftp: " SF_FLOW("203.0.113.70", "/o") "\n" SF_UP,
     NULL},
    {BRI,
     "gate: open\n" TUN
     "integrations:\n  - name: files\n    sftp: " SF_FLOW("198.51.100.50", "/o") "\n" SF_UP,
     NULL},
    {SUP,
     TUN LAB_IN "destinations:\n  - name: lis-files\n    sftp: " SF_FLOW("203.0.113.65", "/i") "\n",
     NULL},
};

START_TEST(sftp_good_value)
{
	const struct tunnel_case *t = &sftp_good_cases[_i];
	struct cfg_errors errs;
	struct cfg *c;
	int rc = load_as(t->yaml, t->role, &c, &errs);

	if (rc != 0) {
		fprintf(stderr, "sftp good case %d\n", _i);
		dump(&errs);
	}
	ck_assert_int_eq(rc, 0);
	ck_assert_uint_eq(errs.n, 0);
	ck_assert_ptr_nonnull(c);
	cfg_free(c);
}
END_TEST

static void dir_path_is(const char *got, const char *file)
{
	char want[256];

	snprintf(want, sizeof want, "%s/%s", dir_path, file);
	ck_assert_str_eq(got, want);
}

/* Every field of a pull channel with every key, and the defaults. */
START_TEST(sftp_pull_fields)
{
	static const char yaml[] =
	    SFX("203.0.113.10:2222", "edge", "@DIR@/ed.key", "/outbox/",
		"      glob: \"*.hl7\"\n      interval: 5m\n      after: move\n      done_dir: "
		"done/\n"
		"      error_dir: /var/err\n      split: hl7-batch\n      content_type: "
		"text/plain\n"
		"      max_file: 2MiB\n      timeout: 45s\n") "  - name: files2\n    "
							      "sftp: " SF_FLOW("203.0.113.11",
									       "/") "\n" SF_UP
										    "  - name: "
										    "batches\n    "
										    "sftp:"
										    " { server: "
										    "203.0.113.12, "
										    "user: e, key: "
										    "@DIR@/ed.key, "
										    "host_keys: "
										    "[\"@PIN1@\"],"
										    " dir: /b, "
										    "split: "
										    "hl7-batch, "
										    "after: delete "
										    "}\n" SF_UP;
	struct cfg_errors errs;
	struct cfg *c;
	const struct cfg_sftp *s;
	int rc = load(yaml, &c, &errs);

	if (rc != 0)
		dump(&errs);
	ck_assert_int_eq(rc, 0);
	ck_assert_uint_eq(c->nintegrations, 3);
	s = c->integrations[0].sftp;
	ck_assert_ptr_nonnull(s);
	ck_assert_ptr_null(c->integrations[0].listen_text);
	ck_assert_uint_eq(c->integrations[0].nsources, 0);
	/* order and max_in_flight as for an MLLP integration: the messages of
	 * a batch file queue in their feed's lane */
	ck_assert_int_eq(c->integrations[0].order, CFG_ORDER_FEED);
	ck_assert_uint_eq(c->integrations[0].max_in_flight, 128);
	ck_assert_int_eq(c->integrations[0].ack, CFG_ACK_COMMIT);
	ck_assert_str_eq(c->integrations[0].upstream.url, "https://h.test/x");
	ck_assert_str_eq(s->server_text, "203.0.113.10:2222");
	addr_is(&s->server, AF_INET, "203.0.113.10", 2222);
	ck_assert_uint_eq(s->server_len, sizeof(struct sockaddr_in));
	ck_assert_str_eq(s->user, "edge");
	dir_path_is(s->key, "ed.key");
	ck_assert_uint_eq(s->nhost_keys, 2);
	ck_assert_ptr_nonnull(strstr(s->host_keys[0], " lis current"));
	ck_assert_int_eq(strncmp(s->host_keys[0], pin_ed, strlen(pin_ed)), 0);
	ck_assert_int_eq(strncmp(s->host_keys[1], pin_rsa, strlen(pin_rsa)), 0);
	ck_assert_str_eq(s->dir, "/outbox");
	ck_assert_str_eq(s->glob, "*.hl7");
	ck_assert_uint_eq(s->interval_ms, 5 * 60 * 1000);
	ck_assert_int_eq(s->after, CFG_SFTP_MOVE);
	ck_assert_str_eq(s->done_dir, "/outbox/done");
	ck_assert_str_eq(s->error_dir, "/var/err");
	ck_assert_int_eq(s->split, CFG_SPLIT_HL7_BATCH);
	ck_assert_str_eq(s->content_type, "text/plain");
	ck_assert_uint_eq(s->max_file, 2u << 20);
	ck_assert_uint_eq(s->timeout_ms, 45000);
	ck_assert_int_eq(s->line, 5);
	/* the defaults */
	s = c->integrations[1].sftp;
	ck_assert_ptr_nonnull(s);
	addr_is(&s->server, AF_INET, "203.0.113.11", 22);
	ck_assert_str_eq(s->dir, "/");
	ck_assert_str_eq(s->glob, "*");
	ck_assert_uint_eq(s->interval_ms, CFG_SFTP_INTERVAL_DEFAULT_MS);
	ck_assert_int_eq(s->after, CFG_SFTP_MOVE);
	ck_assert_str_eq(s->done_dir, "/done");
	ck_assert_str_eq(s->error_dir, "/error");
	ck_assert_int_eq(s->split, CFG_SPLIT_NONE);
	ck_assert_str_eq(s->content_type, "application/octet-stream");
	ck_assert_uint_eq(s->max_file, CFG_SFTP_MAX_FILE_DEFAULT);
	ck_assert_uint_eq(s->timeout_ms, CFG_SFTP_TIMEOUT_DEFAULT_MS);
	ck_assert_uint_eq(s->nhost_keys, 1);
	ck_assert_str_eq(s->host_keys[0], pin_ed);
	ck_assert_int_eq(s->line, 24);
	/* split hl7-batch: HL7 by default; after delete: no done_dir */
	s = c->integrations[2].sftp;
	ck_assert_ptr_nonnull(s);
	ck_assert_str_eq(s->content_type, "application/hl7-v2");
	ck_assert_int_eq(s->after, CFG_SFTP_DELETE);
	ck_assert_ptr_null(s->done_dir);
	ck_assert_str_eq(s->error_dir, "/b/error");
	cfg_errors_free(&errs);
	cfg_free(c);
}
END_TEST

/* A push channel: its folder, max_file as the destination's max_frame, the
 * destination keys it keeps, no pull fields; next to an MLLP destination. */
START_TEST(sftp_push_fields)
{
	static const char yaml[] = PUSH(
	    "      max_file: 3MiB\n",
	    "    max_attempts: 4\n    hl7: { sending_facility: EDGE "
	    "}\n") "  - name: plain\n    sftp: " SF_FLOW("[2001:db8::7]",
							 "/in/./x") "\n"
								    "  - { name: mllp, address: "
								    "198.51.100.9:2575 }\n";
	struct cfg_errors errs;
	struct cfg *c;
	const struct cfg_destination *d;
	int rc = load_as(yaml, SUP, &c, &errs);

	if (rc != 0)
		dump(&errs);
	ck_assert_int_eq(rc, 0);
	ck_assert_uint_eq(c->ndestinations, 3);
	d = &c->destinations[0];
	ck_assert_ptr_nonnull(d->sftp);
	ck_assert_ptr_null(d->address_text);
	ck_assert_uint_eq(d->max_frame, 3u << 20);
	ck_assert_uint_eq(d->max_attempts, 4);
	ck_assert_str_eq(d->hl7.sending_fac, "EDGE");
	ck_assert_str_eq(d->sftp->server_text, "203.0.113.10");
	addr_is(&d->sftp->server, AF_INET, "203.0.113.10", 22);
	ck_assert_str_eq(d->sftp->dir, "/inbox");
	ck_assert_uint_eq(d->sftp->max_file, 3u << 20);
	ck_assert_uint_eq(d->sftp->timeout_ms, CFG_SFTP_TIMEOUT_DEFAULT_MS);
	ck_assert_ptr_null(d->sftp->glob);
	ck_assert_ptr_null(d->sftp->done_dir);
	ck_assert_ptr_null(d->sftp->error_dir);
	ck_assert_ptr_null(d->sftp->content_type);
	ck_assert_uint_eq(d->sftp->interval_ms, 0);
	ck_assert_int_eq(d->sftp->line, 12);
	d = &c->destinations[1];
	ck_assert_ptr_nonnull(d->sftp);
	addr_is(&d->sftp->server, AF_INET6, "2001:db8::7", 22);
	ck_assert_str_eq(d->sftp->dir, "/in/x");
	ck_assert_uint_eq(d->max_frame, CFG_SFTP_MAX_FILE_DEFAULT);
	d = &c->destinations[2];
	ck_assert_ptr_null(d->sftp);
	ck_assert_str_eq(d->address_text, "198.51.100.9:2575");
	cfg_errors_free(&errs);
	cfg_free(c);
}
END_TEST

/* Every error of every section at once, in file order. */
START_TEST(sftp_errors_in_file_order)
{
	static const char yaml[] = SFX(
	    "lis.test", "a:b", "@DIR@/none.key", "rel",
	    "      glob: \"a/b\"\n      after: delete\n"
	    "      done_dir: d\n") "    listen: 203.0.113.1:9960\n"
				   "destinations:\n  - name: d\n    sftp: { server: 203.0.113.10, "
				   "user: e, key: "
				   "@DIR@/ed.key, host_keys: [\"@PIN1@\"], dir: /i, split: none }\n"
				   "    on_ae: dead\n";
	static const char *const want[] = {
	    "t.yaml:6: server: use a numeric address; names would be resolved outside the tunnel",
	    "t.yaml:7: " SFTP_USER_SYNTAX "'a:b'",
	    "t.yaml:8: key: cannot read @DIR@/none.key: No such file or directory",
	    "t.yaml:12: dir: expected an absolute path, got 'rel'",
	    "t.yaml:13: glob: expected 1-255 characters without '/' or control characters, got "
	    "'a/b'",
	    "t.yaml:15: done_dir: has no use with after: delete",
	    "t.yaml:17: integrations[0]: either listen (MLLP) or sftp (a pull channel), not both",
	    "t.yaml:20: split: " SFTP_PULL_ONLY,
	    "t.yaml:21: on_ae: " SFTP_DEST_MLLP,
	};
	struct cfg_errors errs;
	struct cfg *c;
	size_t i;

	ck_assert_int_eq(load(yaml, &c, &errs), -EINVAL);
	if (errs.n != N(want))
		dump(&errs);
	ck_assert_uint_eq(errs.n, N(want));
	for (i = 0; i < errs.n; i++) {
		char *w = subst(want[i]);

		ck_assert_str_eq(errs.msg[i], w);
		free(w);
	}
	cfg_errors_free(&errs);
}
END_TEST

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

	tc = tcase_create("tunnels");
	tcase_add_loop_test(tc, tunnel_bad_value, 0, N(tunnel_bad_cases));
	tcase_add_loop_test(tc, tunnel_good_value, 0, N(tunnel_good_cases));
	tcase_add_test(tc, valid_tunnel_config);
	tcase_add_test(tc, tokens_errors_in_file_order);
	tcase_add_test(tc, tunnel_side_defaults);
	tcase_add_test(tc, destination_hl7);
	tcase_add_test(tc, role_decides_secret_checks);
	tcase_add_test(tc, psk_unreadable_for_supervisor_only);
	tcase_add_loop_test(tc, dh_group, 0, N(dh_cases));
	suite_add_tcase(s, tc);

	tc = tcase_create("sftp");
	tcase_add_loop_test(tc, sftp_bad_value, 0, N(sftp_bad_cases));
	tcase_add_loop_test(tc, sftp_key_value, 0, N(sftp_key_cases));
	tcase_add_loop_test(tc, sftp_good_value, 0, N(sftp_good_cases));
	tcase_add_test(tc, sftp_pull_fields);
	tcase_add_test(tc, sftp_push_fields);
	tcase_add_test(tc, sftp_errors_in_file_order);
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

#define TOKEN16 "0123456789abcdef"

struct secret {
	const char *name;
	const char *text; /* NULL: a PSK_MAX-byte secret */
};

/* The files the tunnel cases name under dir_path; none.* stay absent. */
static const struct secret secrets[] = {
    {"good.psk", "a-secret-of-32-bytes-for-tests!!\n"},
    {"exact.psk", "0123456789abcdef\r\n"},
    {"short.psk", "0123456789abcde\n"},
    {"empty.psk", ""},
    {"newline.psk", "\n"},
    {"max.psk", NULL},
    {"long.psk", "+"}, /* PSK_MAX bytes and this */
    {"cert.pem", "-----BEGIN CERTIFICATE-----\n"},
    {"key.pem", "-----BEGIN PRIVATE KEY-----\n"},
    {"ca.pem", "-----BEGIN CERTIFICATE-----\n"},
    /* tokens files (TOKENS: a 16-character token) */
    {"good.tokens", "# the integration engine\n\n" TOKEN16 " *\r\n  \t\n\t# indented comment\n"
		    "0123456789abcdef0123456789abcdef\t*  \n" TOKEN16 "x *"},
    {"named.tokens", TOKEN16 " lis\n" X16(X16("k")) " lis\n"},
    {"short.tokens", "0123456789abcde lis\n"},
    {"long.tokens", TOKEN16 " *\n" X16(X16("k")) "k lis\n"},
    {"ctrl.tokens", "0123456789abcdef\x01 lis\n"},
    {"utf8.tokens", "0123456789abcd\xc3\xa9 lis\n"},
    {"unknown.tokens", TOKEN16 " lis,ris\n"},
    {"twice.tokens", TOKEN16 " lis,lis\n"},
    {"comma.tokens", TOKEN16 " lis,\n"},
    {"star.tokens", TOKEN16 " *,lis\n"},
    {"alone.tokens", "# the token alone\n" TOKEN16 "\n"},
    {"three.tokens", TOKEN16 " lis extra\n"},
    {"dup.tokens", "# first\n" TOKEN16 " *\n\n# again\n" TOKEN16 " lis\n"},
    {"comments.tokens", "# all revoked\n\n"},
    {"max.tokens", NULL},  /* CFG_TOKENS_MAX tokens */
    {"many.tokens", NULL}, /* a comment and one more */
    {"bad.tokens", "s3cret-token-0123 lis\ns3cr ris\n\ns3cret-token-0123 *\nalone\n"},
};

/* max.tokens: CFG_TOKENS_MAX tokens; many.tokens: a comment, then one more. */
static int write_tokens(const char *name, int fd)
{
	int many = strcmp(name, "many.tokens") == 0, i;

	if (many && dprintf(fd, "# too many\n") < 0)
		return -1;
	for (i = 0; i < CFG_TOKENS_MAX + many; i++)
		if (dprintf(fd, "token-%010d lis\n", i) < 0)
			return -1;
	return 0;
}

static int write_secret(const struct secret *s, int fd)
{
	char big[CFG_PSK_MAX];
	size_t len = s->text ? strlen(s->text) : 0;

	if (!s->text && strstr(s->name, ".tokens"))
		return write_tokens(s->name, fd);
	memset(big, 'k', sizeof big);
	if ((!s->text || strcmp(s->name, "long.psk") == 0) &&
	    write(fd, big, sizeof big) != (ssize_t)sizeof big)
		return -1;
	return s->text && write(fd, s->text, len) != (ssize_t)len ? -1 : 0;
}

static int make_secrets(void)
{
	char path[256];
	size_t i;

	if (!mkdtemp(dir_path))
		return -1;
	for (i = 0; i < sizeof secrets / sizeof *secrets; i++) {
		int fd, rc;

		snprintf(path, sizeof path, "%s/%s", dir_path, secrets[i].name);
		fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd < 0)
			return -1;
		rc = write_secret(&secrets[i], fd);
		close(fd);
		if (rc < 0)
			return -1;
	}
	return 0;
}

static void remove_secrets(void)
{
	char path[256];
	size_t i;

	for (i = 0; i < sizeof secrets / sizeof *secrets; i++) {
		snprintf(path, sizeof path, "%s/%s", dir_path, secrets[i].name);
		unlink(path);
	}
	rmdir(dir_path);
}

/* The SSH keys of the sftp cases, made by ssh-keygen (a missing ssh-keygen
 * fails the suite): good ones, an RSA key too small, an encrypted one, and
 * keys with a "<key>.next" that is too small, good, or a directory. */
static const char *const ssh_files[] = {
    "ed.key",	       "ed.key.pub",	  "rsa3072.key",    "rsa3072.key.pub", "rsa2048.key",
    "rsa2048.key.pub", "locked.key",	  "locked.key.pub", "rolled.key",      "rolled.key.next",
    "rollok.key",      "rollok.key.next", "dirnext.key",
};

static int read_pin(const char *file, char *pin, size_t cap)
{
	char path[256];
	FILE *f;
	int ok;

	snprintf(path, sizeof path, "%s/%s", dir_path, file);
	if (!(f = fopen(path, "r")))
		return -1;
	ok = fgets(pin, (int)cap, f) != NULL;
	fclose(f);
	if (!ok || !strchr(pin, ' '))
		return -1;
	*strchr(strchr(pin, ' ') + 1, ' ') = '\0'; /* drop the comment */
	return 0;
}

static int make_ssh_keys(void)
{
	char cmd[2048];

	snprintf(cmd, sizeof cmd,
		 "cd %s && ssh-keygen -q -N '' -t ed25519 -C t -f ed.key && "
		 "ssh-keygen -q -N '' -t rsa -b 3072 -C t -f rsa3072.key && "
		 "ssh-keygen -q -N '' -t rsa -b 2048 -C t -f rsa2048.key && "
		 "ssh-keygen -q -N 'pass phrase' -t ed25519 -C t -f locked.key && "
		 "cp ed.key rolled.key && cp rsa2048.key rolled.key.next && "
		 "cp ed.key rollok.key && cp rsa3072.key rollok.key.next && "
		 "cp ed.key dirnext.key && mkdir dirnext.key.next",
		 dir_path);
	if (system(cmd) != 0)
		return -1;
	return read_pin("ed.key.pub", pin_ed, sizeof pin_ed) < 0 ||
		       read_pin("rsa3072.key.pub", pin_rsa, sizeof pin_rsa) < 0
		   ? -1
		   : 0;
}

static void remove_ssh_keys(void)
{
	char path[256];
	size_t i;

	for (i = 0; i < sizeof ssh_files / sizeof *ssh_files; i++) {
		snprintf(path, sizeof path, "%s/%s", dir_path, ssh_files[i]);
		unlink(path);
	}
	snprintf(path, sizeof path, "%s/dirnext.key.next", dir_path);
	rmdir(path);
}

int main(void)
{
	SRunner *sr = srunner_create(config_suite());
	int fd = mkstemp(ca_path), failed;

	/* world-readable: a case runs as nobody (psk_unreadable_for_supervisor_only) */
	if (fd < 0 || fchmod(fd, 0644) < 0 ||
	    write(fd, "-----BEGIN CERTIFICATE-----\n", 28) != 28) {
		perror(ca_path);
		return EXIT_FAILURE;
	}
	close(fd);
	if (make_secrets() < 0) {
		perror(dir_path);
		return EXIT_FAILURE;
	}
	if (make_ssh_keys() < 0) {
		fprintf(stderr, "%s: cannot make the SSH keys of the sftp cases (ssh-keygen)\n",
			dir_path);
		remove_ssh_keys();
		remove_secrets();
		return EXIT_FAILURE;
	}
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	unlink(ca_path);
	remove_ssh_keys();
	remove_secrets();
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
