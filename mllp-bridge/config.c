/*
 * appliance.yaml, for the bridge and the supervisor alike: libyaml's document
 * API builds a node tree, then each section is walked against a table of
 * known keys, filling a struct cfg and collecting every error with the line
 * of the offending node. Cross-integration rules (unique names, shared
 * listeners) run after the integrations, the rules that tie them to the
 * tunnels (config_tunnel.c) after the whole file; the errors are sorted by
 * line at the end so they read in file order.
 */
#include "mllp-bridge/config.h"
#include "mllp-bridge/config_int.h"
#include "mllp-bridge/mllp.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#define DEFAULT_RETENTION_MS	    (7 * MS_DAY)
#define DEFAULT_RETRY_INITIAL_MS    (1 * MS_SECOND)
#define DEFAULT_RETRY_MAX_MS	    (5 * MS_MINUTE)
#define DEFAULT_FRAME_TIMEOUT_MS    (30 * MS_SECOND)
#define DEFAULT_IDLE_TIMEOUT_MS	    (2 * MS_HOUR)
#define DEFAULT_UPSTREAM_TIMEOUT_MS (10 * MS_SECOND)
#define DEFAULT_MAX_IN_FLIGHT	    128
#define EITHER_LISTEN_OR_SFTP	    "either listen (MLLP) or sftp (a pull channel)"

/* ---------- integration sections ---------- */

static unsigned port_of(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)ss)->sin_port);
	return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
}

static void h_name(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct integ_build *b = obj;

	b->name_line = line_of(v);
	b->name_ok = cfgi_want_name(x, key, v, &b->in->name) == 0;
}

static void h_listen(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct integ_build *b = obj;
	const char *s = cfgi_want_scalar(x, key, v, "an address:port");
	unsigned port;

	b->listen_line = line_of(v);
	if (!s)
		return;
	if (cfg_parse_hostport(s, &b->in->listen, &b->in->listen_len) < 0) {
		cfgi_err(x, line_of(v), "%s: expected IPv4:port or [IPv6]:port, got '%s'", key, s);
		return;
	}
	port = port_of(&b->in->listen);
	if (port < CFG_PORT_MIN || port > CFG_PORT_MAX) {
		cfgi_err(x, line_of(v), "%s: port %u is outside %d-%d", key, port, CFG_PORT_MIN,
			 CFG_PORT_MAX);
		return;
	}
	b->listen_ok = cfgi_set_string(x, &b->in->listen_text, s) == 0;
}

static void h_sources(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct integ_build *b = obj;

	b->sources_ok =
	    cfgi_want_cidrs(x, key, v, CFG_MAX_SOURCES, &b->in->sources, &b->in->nsources);
	if (b->sources_ok)
		b->sources = v;
}

static void h_facility(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct cfg_integration *in = obj;
	const char *s = cfgi_want_scalar(x, key, v, "a string");
	char **dst = strcmp(key, "sending_facility") == 0 ? &in->match_sending_facility
							  : &in->match_receiving_facility;
	size_t len = s ? strlen(s) : 0;
	size_t i;

	if (!s)
		return;
	for (i = 0; i < len && (unsigned char)s[i] >= 0x20 && s[i] != 0x7f && s[i] != '|'; i++)
		;
	if (len == 0 || len > CFG_FACILITY_MAX || i != len) {
		cfgi_err(x, line_of(v),
			 "%s: must be 1-%d characters without '|' or control characters", key,
			 CFG_FACILITY_MAX);
		return;
	}
	(void)cfgi_set_string(x, dst, s);
}

static const struct key_spec match_keys[] = {
    {"sending_facility", h_facility, 0},
    {"receiving_facility", h_facility, 0},
};

static void h_match(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct integ_build *b = obj;

	if (cfgi_want_mapping(x, key, v))
		cfgi_walk_mapping(x, v, match_keys, NKEYS(match_keys), "in match", b->in);
}

static void h_ack(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	static const char *const words[] = {"commit", "upstream", NULL};
	struct integ_build *b = obj;
	int i = cfgi_want_enum(x, key, v, words);

	if (i >= 0)
		b->in->ack = i == 0 ? CFG_ACK_COMMIT : CFG_ACK_UPSTREAM;
}

static void h_accept_ack(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	static const char *const words[] = {"msh15", "always", NULL};
	struct integ_build *b = obj;
	int i = cfgi_want_enum(x, key, v, words);

	if (i >= 0)
		b->in->accept_ack_always = i == 1;
}

static void h_order(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	static const char *const words[] = {"integration", "sender", "feed", "patient", NULL};
	static const enum cfg_order orders[] = {CFG_ORDER_INTEGRATION, CFG_ORDER_SENDER,
						CFG_ORDER_FEED, CFG_ORDER_PATIENT};
	struct integ_build *b = obj;
	int i = cfgi_want_enum(x, key, v, words);

	if (i >= 0)
		b->in->order = orders[i];
}

static void h_max_in_flight(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct integ_build *b = obj;

	(void)cfgi_want_count(x, key, v, CFG_MAX_IN_FLIGHT_LIMIT, &b->in->max_in_flight);
}

_Static_assert(CFG_DEDUP_MAX_MS % MS_HOUR == 0, "the dedup limit is shown in hours");

/* A zero window turns dedup off, so 0 is accepted, with or without a unit. */
static void h_dedup(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct integ_build *b = obj;
	const char *s = cfgi_want_scalar(x, key, v, "a duration");
	uint64_t ms = 0;
	int rc;

	if (!s)
		return;
	rc = strcmp(s, "0") == 0 ? 0 : cfg_parse_duration(s, &ms);
	if (rc == -EINVAL) {
		cfgi_err(x, line_of(v),
			 "%s: expected a duration such as 30s, 10m or 1h, or 0 for off, got '%s'",
			 key, s);
		return;
	}
	if (rc < 0 || ms > CFG_DEDUP_MAX_MS) {
		cfgi_err(x, line_of(v), "%s: %s is longer than %lluh", key, s,
			 (unsigned long long)(CFG_DEDUP_MAX_MS / MS_HOUR));
		return;
	}
	b->in->dedup_ms = ms;
}

static void h_release(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct cfg_mllp *m = obj;

	(void)cfgi_want_release(x, key, v, &m->release);
}

static void h_max_frame(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct cfg_mllp *m = obj;

	(void)cfgi_want_max_frame(x, key, v, &m->max_frame);
}

static void h_mllp_timeout(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct cfg_mllp *m = obj;

	(void)cfgi_want_duration(x, key, v,
				 strcmp(key, "frame_timeout") == 0 ? &m->frame_timeout_ms
								   : &m->idle_timeout_ms);
}

static const struct key_spec mllp_keys[] = {
    {"release", h_release, 0},
    {"max_frame", h_max_frame, 0},
    {"frame_timeout", h_mllp_timeout, 0},
    {"idle_timeout", h_mllp_timeout, 0},
};

static void h_mllp(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct integ_build *b = obj;

	if (cfgi_want_mapping(x, key, v))
		cfgi_walk_mapping(x, v, mllp_keys, NKEYS(mllp_keys), "in mllp", &b->in->mllp);
}

/* Credentials in a URL would end up in logs; bearer_token_file exists for them. */
static void h_url(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct integ_build *b = obj;
	const char *s = cfgi_want_scalar(x, key, v, "an https:// URL"), *auth;
	size_t alen;

	if (!s)
		return;
	if (strncasecmp(s, "https://", 8) != 0) {
		cfgi_err(x, line_of(v), "%s: expected an https:// URL, got '%s'", key, s);
		return;
	}
	if (strpbrk(s, " \t\r\n")) {
		cfgi_err(x, line_of(v), "%s: contains white space", key);
		return;
	}
	auth = s + 8;
	alen = strcspn(auth, "/?#");
	if (memchr(auth, '@', alen)) {
		cfgi_err(x, line_of(v), "%s: credentials in the URL are not allowed", key);
		return;
	}
	if (alen == 0 || auth[0] == ':') {
		cfgi_err(x, line_of(v), "%s: no host in '%s'", key, s);
		return;
	}
	b->url_line = line_of(v);
	b->url_ok = cfgi_set_string(x, &b->in->upstream.url, s) == 0;
}

static void h_upstream_file(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct integ_build *b = obj;
	struct cfg_upstream *u = &b->in->upstream;
	char **dst = &u->ca_file;

	if (strcmp(key, "bearer_token_file") == 0) {
		dst = &u->bearer_token_file;
	} else if (strcmp(key, "client_cert") == 0) {
		dst = &u->client_cert;
		b->cert_line = line_of(v);
	} else if (strcmp(key, "client_key") == 0) {
		dst = &u->client_key;
		b->key_line = line_of(v);
	}
	(void)cfgi_want_file(x, key, v, dst);
}

static void h_upstream_timeout(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct integ_build *b = obj;

	(void)cfgi_want_duration(x, key, v, &b->in->upstream.timeout_ms);
}

/* Plain YAML gives 2 and 1.1 as the scalars "2" and "1.1"; nothing else
 * (2.0, 1, h2) is accepted, so that a typo is not read as a version. */
static void h_http(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct integ_build *b = obj;
	const char *s = cfgi_want_scalar(x, key, v, "2 or 1.1");

	if (!s)
		return;
	if (strcmp(s, "2") == 0)
		b->in->upstream.http = CFG_HTTP_2;
	else if (strcmp(s, "1.1") == 0)
		b->in->upstream.http = CFG_HTTP_1_1;
	else
		cfgi_err(x, line_of(v), "%s: expected 2 or 1.1, got '%s'", key, s);
}

static const struct key_spec upstream_keys[] = {
    {"url", h_url, 1},
    {"ca_file", h_upstream_file, 1},
    {"bearer_token_file", h_upstream_file, 0},
    {"client_cert", h_upstream_file, 0},
    {"client_key", h_upstream_file, 0},
    {"timeout", h_upstream_timeout, 0},
    {"http", h_http, 0},
};

static void h_upstream(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct integ_build *b = obj;

	if (!cfgi_want_mapping(x, key, v))
		return;
	b->upstream = v;
	b->upstream_seen =
	    cfgi_walk_mapping(x, v, upstream_keys, NKEYS(upstream_keys), "in upstream", b);
}

/* ---- sftp: a pull channel instead of an MLLP listener ---- */

static void h_sftp(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct integ_build *b = obj;

	cfgi_want_sftp(x, key, v, &b->in->sftp, &b->sftp);
}

static void h_sftp_listen(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct integ_build *b = obj;

	(void)key;
	cfgi_err(x, line_of(v), "integrations[%zu]: " EITHER_LISTEN_OR_SFTP ", not both", b->index);
}

static void h_sftp_mllp_only(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	(void)obj;
	cfgi_err(x, line_of(v), "%s: not allowed for an sftp integration (MLLP only)", key);
}

/* A file is taken from the folder once it is stored: that is ack: commit. */
static void h_sftp_ack(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	static const char *const words[] = {"commit", "upstream", NULL};
	int i = cfgi_want_enum(x, key, v, words);

	(void)obj;
	if (i > 0)
		cfgi_err(x, line_of(v),
			 "%s: only commit is allowed for an sftp integration (a file is taken "
			 "once it is stored)",
			 key);
}

/* Which table an integration is read with depends on `sftp:`, wherever it
 * is written; both know the same keys in the same order (one key, one bit). */
static const struct key_spec integration_keys[] = {
    {"name", h_name, 1},	 {"listen", h_listen, 0}, /* required unless sftp */
    {"sources", h_sources, 0},	 {"match", h_match, 0},
    {"ack", h_ack, 0},		 {"accept_ack", h_accept_ack, 0},
    {"order", h_order, 0},	 {"max_in_flight", h_max_in_flight, 0},
    {"dedup", h_dedup, 0},	 {"mllp", h_mllp, 0},
    {"upstream", h_upstream, 1}, {"sftp", NULL, 0}, /* never seen: the other table */
};

static const struct key_spec integration_keys_sftp[] = {
    {"name", h_name, 1},
    {"listen", h_sftp_listen, 0},
    {"sources", h_sftp_mllp_only, 0},
    {"match", h_sftp_mllp_only, 0},
    {"ack", h_sftp_ack, 0},
    {"accept_ack", h_sftp_mllp_only, 0},
    {"order", h_order, 0}, /* as for MLLP: lanes per message of a batch */
    {"max_in_flight", h_max_in_flight, 0},
    {"dedup", h_sftp_mllp_only, 0},
    {"mllp", h_sftp_mllp_only, 0},
    {"upstream", h_upstream, 1},
    {"sftp", h_sftp, 1},
};

_Static_assert(NKEYS(integration_keys) == NKEYS(integration_keys_sftp), "one key, one bit");

#define INTEG_LISTEN  (1u << 1)
#define INTEG_SOURCES (1u << 2)

static void integration_defaults(struct cfg_integration *in)
{
	in->ack = CFG_ACK_COMMIT;
	in->order = CFG_ORDER_FEED;
	in->max_in_flight = DEFAULT_MAX_IN_FLIGHT;
	in->dedup_ms = 0;
	in->mllp.release = 1;
	in->mllp.max_frame = MLLP_MAX_FRAME_DEFAULT;
	in->mllp.frame_timeout_ms = DEFAULT_FRAME_TIMEOUT_MS;
	in->mllp.idle_timeout_ms = DEFAULT_IDLE_TIMEOUT_MS;
	in->upstream.timeout_ms = DEFAULT_UPSTREAM_TIMEOUT_MS;
	in->upstream.http = CFG_HTTP_2;
}

static const char *label(const struct integ_build *b, char *buf, size_t cap)
{
	if (b->name_ok)
		snprintf(buf, cap, "'%s'", b->in->name);
	else
		snprintf(buf, cap, "#%zu", b->index + 1);
	return buf;
}

static void build_integration(struct ctx *x, yaml_node_t *map, struct integ_build *b)
{
	char name[CFG_NAME_MAX + 3], prefix[CFG_NAME_MAX + 32];
	yaml_node_t *sftp = cfgi_find_key(x, map, "sftp");
	const struct key_spec *specs = sftp ? integration_keys_sftp : integration_keys;
	uint64_t seen;

	b->sftp = (struct sftp_build){
	    .owner = &b->in->name, .index = b->index, .line = sftp ? line_of(sftp) : 0};
	seen = cfgi_walk_mapping(x, map, specs, NKEYS(integration_keys), "in integration", b);
	snprintf(prefix, sizeof prefix, "integration %s", label(b, name, sizeof name));
	cfgi_need_keys(x, map, specs, NKEYS(integration_keys), seen, prefix);
	if (!sftp && !(seen & INTEG_LISTEN))
		cfgi_err(x, line_of(map),
			 "integrations[%zu]: " EITHER_LISTEN_OR_SFTP " is required", b->index);
	else if (!sftp && !(seen & INTEG_SOURCES))
		cfgi_err(x, line_of(map), "%s: missing 'sources'", prefix);
	if (b->upstream) {
		strncat(prefix, ": upstream", sizeof prefix - strlen(prefix) - 1);
		cfgi_need_keys(x, b->upstream, upstream_keys, NKEYS(upstream_keys),
			       b->upstream_seen, prefix);
	}
	if (b->cert_line && !b->key_line)
		cfgi_err(x, b->cert_line, "client_cert: client_key is missing (mTLS needs both)");
	if (b->key_line && !b->cert_line)
		cfgi_err(x, b->key_line, "client_key: client_cert is missing (mTLS needs both)");
	/* One message at a time per integration is what strict order means. */
	if (b->in->order == CFG_ORDER_INTEGRATION)
		b->in->max_in_flight = 1;
}

/* ---------- rules across integrations ---------- */

static void check_names(struct ctx *x, const struct integ_build *b, size_t n)
{
	size_t i, j;

	for (j = 1; j < n; j++) {
		for (i = 0; i < j; i++) {
			if (!b[i].name_ok || !b[j].name_ok || strcmp(b[i].in->name, b[j].in->name))
				continue;
			cfgi_err(x, b[j].name_line,
				 "duplicate integration name '%s' (first at line %d)",
				 b[j].in->name, b[i].name_line);
			break;
		}
	}
}

static int same_listen(const struct cfg_integration *a, const struct cfg_integration *b)
{
	return a->listen_len == b->listen_len && memcmp(&a->listen, &b->listen, a->listen_len) == 0;
}

static int cidrs_overlap(const struct cfg_cidr *a, const struct cfg_cidr *b)
{
	return a->family == b->family &&
	       cfgi_prefix_equal(a->addr, b->addr, a->prefix < b->prefix ? a->prefix : b->prefix);
}

static int sources_overlap(const struct cfg_integration *a, const struct cfg_integration *b)
{
	size_t i, j;

	for (i = 0; i < a->nsources; i++)
		for (j = 0; j < b->nsources; j++)
			if (cidrs_overlap(&a->sources[i], &b->sources[j]))
				return 1;
	return 0;
}

static int same_str(const char *a, const char *b)
{
	return a == b || (a && b && strcmp(a, b) == 0);
}

static int same_match(const struct cfg_integration *a, const struct cfg_integration *b)
{
	return same_str(a->match_sending_facility, b->match_sending_facility) &&
	       same_str(a->match_receiving_facility, b->match_receiving_facility);
}

static int same_mllp(const struct cfg_mllp *a, const struct cfg_mllp *b)
{
	return a->release == b->release && a->max_frame == b->max_frame &&
	       a->frame_timeout_ms == b->frame_timeout_ms &&
	       a->idle_timeout_ms == b->idle_timeout_ms;
}

/* A shared listener frames bytes before MSH is read, and must route each
 * message to exactly one integration by peer address and MSH-4/MSH-6. */
static void check_shared(struct ctx *x, const struct integ_build *p, const struct integ_build *q)
{
	const struct cfg_integration *a = p->in, *b = q->in;
	char na[CFG_NAME_MAX + 3], nb[CFG_NAME_MAX + 3];

	label(p, na, sizeof na);
	label(q, nb, sizeof nb);
	if (p->sources_ok && q->sources_ok && sources_overlap(a, b) && same_match(a, b))
		cfgi_err(
		    x, q->listen_line,
		    "integrations %s and %s share %s and overlapping sources but have the same "
		    "match: a peer cannot be told apart",
		    na, nb, a->listen_text);
	if (!same_mllp(&a->mllp, &b->mllp))
		cfgi_err(x, q->listen_line,
			 "integrations %s and %s share %s but differ in mllp settings", na, nb,
			 a->listen_text);
}

static void check_listeners(struct ctx *x, const struct integ_build *b, size_t n)
{
	size_t i, j;

	for (j = 1; j < n; j++)
		for (i = 0; i < j; i++)
			if (b[i].listen_ok && b[j].listen_ok && same_listen(b[i].in, b[j].in))
				check_shared(x, &b[i], &b[j]);
}

static void h_integrations(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct cfg *c = obj;
	struct integ_build *b;
	size_t n, i;

	if (!cfgi_want_sequence(x, key, v, 1, CFG_MAX_INTEGRATIONS, "integrations"))
		return;
	n = seq_len(v);
	c->integrations = calloc(n, sizeof *c->integrations);
	b = calloc(n, sizeof *b);
	if (!c->integrations || !b) {
		x->oom = 1;
		free(b);
		return;
	}
	c->nintegrations = n;
	for (i = 0; i < n; i++) {
		yaml_node_t *item = seq_item(x, v, i);

		b[i] = (struct integ_build){.in = &c->integrations[i], .index = i};
		integration_defaults(b[i].in);
		b[i].in->line = line_of(item);
		if (item->type != YAML_MAPPING_NODE)
			cfgi_err(x, line_of(item), "%s: each entry must be a mapping", key);
		else
			build_integration(x, item, &b[i]);
	}
	check_names(x, b, n);
	check_listeners(x, b, n);
	/* kept for the rules that tie integrations to tunnels; build() frees it */
	x->integ = b;
	x->ninteg = n;
}

/* ---------- top level ---------- */

static void h_retention(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct cfg *c = obj;

	(void)cfgi_want_duration(x, key, v, &c->retention_ms);
}

static void h_spool_path(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct cfg *c = obj;

	(void)cfgi_want_string(x, key, v, &c->spool_path);
}

static const struct key_spec spool_keys[] = {
    {"path", h_spool_path, 1},
    {"retention", h_retention, 0},
};

static void h_spool(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct cfg *c = obj;
	uint64_t seen;

	if (v->type == YAML_SCALAR_NODE && !cfgi_is_null(v)) {
		(void)cfgi_want_string(x, key, v, &c->spool_path);
		return;
	}
	if (v->type != YAML_MAPPING_NODE) {
		cfgi_err(x, line_of(v), "%s: expected a path or a mapping", key);
		return;
	}
	seen = cfgi_walk_mapping(x, v, spool_keys, NKEYS(spool_keys), "in spool", c);
	cfgi_need_keys(x, v, spool_keys, NKEYS(spool_keys), seen, key);
}

static void h_obs_listen(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct cfg *c = obj;
	const char *s = cfgi_want_scalar(x, key, v, "an address:port");

	if (!s)
		return;
	if (cfg_parse_hostport(s, &c->observability_addr, &c->observability_len) < 0) {
		cfgi_err(x, line_of(v), "%s: expected IPv4:port or [IPv6]:port, got '%s'", key, s);
		return;
	}
	(void)cfgi_set_string(x, &c->observability_listen, s);
}

static const struct key_spec observability_keys[] = {
    {"listen", h_obs_listen, 1},
};

static void h_observability(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	uint64_t seen;

	if (!cfgi_want_mapping(x, key, v))
		return;
	seen = cfgi_walk_mapping(x, v, observability_keys, NKEYS(observability_keys),
				 "in observability", obj);
	cfgi_need_keys(x, v, observability_keys, NKEYS(observability_keys), seen, key);
}

static void h_connections_count(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct cfg *c = obj;

	(void)cfgi_want_count(x, key, v, CFG_CONNECTIONS_LIMIT,
			      strcmp(key, "max") == 0 ? &c->max_connections
						      : &c->max_connections_per_source);
}

static const struct key_spec connections_keys[] = {
    {"max", h_connections_count, 0},
    {"per_source", h_connections_count, 0},
};

static void h_connections(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	if (cfgi_want_mapping(x, key, v))
		cfgi_walk_mapping(x, v, connections_keys, NKEYS(connections_keys), "in connections",
				  obj);
}

static void h_log_phi(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct cfg *c = obj;

	(void)cfgi_want_bool(x, key, v, &c->log_phi);
}

struct retry_build {
	struct cfg_retry *r;
	int initial_line, max_line, bad;
};

static void h_retry_value(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct retry_build *rb = obj;
	int initial = strcmp(key, "initial") == 0;

	*(initial ? &rb->initial_line : &rb->max_line) = line_of(v);
	if (cfgi_want_duration(x, key, v, initial ? &rb->r->initial_ms : &rb->r->max_ms) < 0)
		rb->bad = 1;
}

static const struct key_spec retry_keys[] = {
    {"initial", h_retry_value, 0},
    {"max", h_retry_value, 0},
};

static void h_retry(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct cfg *c = obj;
	struct retry_build rb = {.r = &c->retry};
	char lo[32], hi[32];

	if (!cfgi_want_mapping(x, key, v))
		return;
	cfgi_walk_mapping(x, v, retry_keys, NKEYS(retry_keys), "in retry", &rb);
	if (rb.bad || c->retry.max_ms >= c->retry.initial_ms)
		return;
	cfgi_fmt_duration(c->retry.initial_ms, lo, sizeof lo);
	cfgi_fmt_duration(c->retry.max_ms, hi, sizeof hi);
	cfgi_err(x,
		 rb.max_line	   ? rb.max_line
		 : rb.initial_line ? rb.initial_line
				   : line_of(v),
		 "retry: max %s is shorter than initial %s", hi, lo);
}

/* Both processes read every section the bridge or the supervisor uses, so
 * that they cannot disagree about the file. */
static const struct key_spec top_keys[] = {
    {"spool", h_spool, 1},
    {"observability", h_observability, 0},
    {"log_phi", h_log_phi, 0},
    {"retry", h_retry, 0},
    {"connections", h_connections, 0},
    {"integrations", h_integrations, 1},
    {"gate", cfgi_h_gate, 0},
    {"tunnels", cfgi_h_tunnels, 0},
    {"charon", cfgi_h_charon, 0},
    {"supervisor", cfgi_h_supervisor, 0},
    {"destinations", cfgi_h_destinations, 0},
    {"https", cfgi_h_https, 0},
};

static void build(struct ctx *x, yaml_node_t *root, struct cfg *c)
{
	uint64_t seen;

	c->retention_ms = DEFAULT_RETENTION_MS;
	c->max_connections = CFG_CONNECTIONS_DEFAULT;
	c->max_connections_per_source = CFG_CONNECTIONS_PER_SOURCE_DEFAULT;
	c->retry.initial_ms = DEFAULT_RETRY_INITIAL_MS;
	c->retry.max_ms = DEFAULT_RETRY_MAX_MS;
	cfgi_tunnel_defaults(x, c);
	if (root->type != YAML_MAPPING_NODE) {
		cfgi_err(x, line_of(root), "expected a mapping of settings at the top level");
		return;
	}
	seen = cfgi_walk_mapping(x, root, top_keys, NKEYS(top_keys), "at the top level", c);
	cfgi_need_keys(x, root, top_keys, NKEYS(top_keys), seen, NULL);
	cfgi_check_tunnel_rules(x, c);
	cfgi_tunnel_build_free(x);
	free(x->integ);
	x->integ = NULL;
	x->ninteg = 0;
}

/* ---------- loading ---------- */

static void syntax_error(struct ctx *x, const yaml_parser_t *p)
{
	const char *problem = p->problem ? p->problem : "unknown error";
	int line = (int)p->problem_mark.line + 1;
	size_t i;

	if (p->error == YAML_MEMORY_ERROR) {
		x->oom = 1;
	} else if (p->error == YAML_READER_ERROR) {
		/* The reader reports a byte offset, not a mark. */
		for (i = 0, line = 1; i < p->problem_offset && i < x->len; i++)
			line += x->text[i] == '\n';
		cfgi_err(x, line, "bad character in the file: %s", problem);
	} else if (p->context) {
		cfgi_err(x, line, "YAML syntax error: %s (%s at line %d)", problem, p->context,
			 (int)p->context_mark.line + 1);
	} else {
		cfgi_err(x, line, "YAML syntax error: %s", problem);
	}
}

/* Loads the one document the file must hold. Returns 0 with *doc to delete. */
static int load_document(struct ctx *x, yaml_parser_t *p, yaml_document_t *doc)
{
	yaml_document_t extra;

	if (!yaml_parser_load(p, doc)) {
		syntax_error(x, p);
		return -EINVAL;
	}
	if (!yaml_document_get_root_node(doc)) {
		cfgi_err(x, 1, "the configuration is empty");
		yaml_document_delete(doc);
		return -EINVAL;
	}
	if (!yaml_parser_load(p, &extra)) {
		syntax_error(x, p);
		return 0;
	}
	if (yaml_document_get_root_node(&extra))
		cfgi_err(x, (int)extra.start_mark.line + 1, "only one YAML document is allowed");
	yaml_document_delete(&extra);
	return 0;
}

static int load_text(const char *name, const char *text, size_t len, enum cfg_role role,
		     struct cfg **out, struct cfg_errors *errs)
{
	struct ctx x = {.name = name, .text = text, .len = len, .role = role};
	yaml_parser_t parser;
	yaml_document_t doc;
	struct cfg *c = calloc(1, sizeof *c);
	int rc;

	*out = NULL;
	if (errs)
		*errs = (struct cfg_errors){0};
	if (!c || !(c->path = strdup(name)) || !yaml_parser_initialize(&parser)) {
		cfg_free(c);
		return -ENOMEM;
	}
	yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
	if (load_document(&x, &parser, &doc) == 0) {
		x.doc = &doc;
		build(&x, yaml_document_get_root_node(&doc), c);
		yaml_document_delete(&doc);
	}
	yaml_parser_delete(&parser);
	rc = x.oom ? -ENOMEM : x.n ? -EINVAL : 0;
	if (cfgi_errors_finish(&x, errs) < 0)
		rc = -ENOMEM;
	if (rc < 0)
		cfg_free(c);
	else
		*out = c;
	return rc;
}

int cfg_load_string_as(const char *name, const char *text, enum cfg_role role, struct cfg **out,
		       struct cfg_errors *errs)
{
	return load_text(name, text, strlen(text), role, out, errs);
}

int cfg_load_string(const char *name, const char *text, struct cfg **out, struct cfg_errors *errs)
{
	return cfg_load_string_as(name, text, CFG_ROLE_BRIDGE, out, errs);
}

static void file_error(const char *path, int rc, struct cfg_errors *errs)
{
	char *msg = NULL;
	int n;

	if (!errs)
		return;
	if (rc == -EFBIG)
		n = asprintf(&msg, "%s: larger than %u bytes", path, CFG_MAX_FILE_SIZE);
	else if (rc == -EINVAL)
		n = asprintf(&msg, "%s: not a regular file", path);
	else
		n = asprintf(&msg, "%s: cannot read: %s", path, strerror(-rc));
	if (n < 0 || !(errs->msg = calloc(1, sizeof *errs->msg))) {
		free(n < 0 ? NULL : msg);
		return;
	}
	cfgi_sanitize(msg);
	errs->msg[0] = msg;
	errs->n = 1;
}

int cfg_load_as(const char *path, enum cfg_role role, struct cfg **out, struct cfg_errors *errs)
{
	char *text = NULL;
	size_t len = 0;
	int rc;

	*out = NULL;
	if (errs)
		*errs = (struct cfg_errors){0};
	/* refused from its size alone, before anything is allocated */
	rc = cfg_read_file(path, CFG_MAX_FILE_SIZE, &text, &len);
	if (rc < 0) {
		file_error(path, rc, errs);
		return rc;
	}
	rc = load_text(path, text, len, role, out, errs);
	free(text);
	return rc;
}

int cfg_load(const char *path, struct cfg **out, struct cfg_errors *errs)
{
	return cfg_load_as(path, CFG_ROLE_BRIDGE, out, errs);
}

static void free_integration(struct cfg_integration *in)
{
	free(in->name);
	cfgi_free_sftp(in->sftp);
	free(in->listen_text);
	free(in->sources);
	free(in->match_sending_facility);
	free(in->match_receiving_facility);
	free(in->upstream.url);
	free(in->upstream.ca_file);
	free(in->upstream.bearer_token_file);
	free(in->upstream.client_cert);
	free(in->upstream.client_key);
}

void cfg_free(struct cfg *c)
{
	size_t i;

	if (!c)
		return;
	for (i = 0; i < c->nintegrations; i++)
		free_integration(&c->integrations[i]);
	free(c->integrations);
	cfgi_free_tunnel_side(c);
	free(c->path);
	free(c->spool_path);
	free(c->observability_listen);
	free(c);
}
