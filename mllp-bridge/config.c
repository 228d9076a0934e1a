/*
 * appliance.yaml for the bridge: libyaml's document API builds a node tree,
 * then each section is walked against a table of known keys, filling a
 * struct cfg and collecting every error with the line of the offending node.
 * Cross-integration rules (unique names, shared listeners) run last; the
 * errors are sorted by line at the end so they read in file order.
 */
#include "mllp-bridge/config.h"
#include "mllp-bridge/mllp.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#define MS_SECOND 1000ull
#define MS_MINUTE (60 * MS_SECOND)
#define MS_HOUR	  (60 * MS_MINUTE)
#define MS_DAY	  (24 * MS_HOUR)

#define DEFAULT_RETENTION_MS	    (7 * MS_DAY)
#define DEFAULT_RETRY_INITIAL_MS    (1 * MS_SECOND)
#define DEFAULT_RETRY_MAX_MS	    (5 * MS_MINUTE)
#define DEFAULT_FRAME_TIMEOUT_MS    (30 * MS_SECOND)
#define DEFAULT_IDLE_TIMEOUT_MS	    (2 * MS_HOUR)
#define DEFAULT_UPSTREAM_TIMEOUT_MS (10 * MS_SECOND)
#define DEFAULT_MAX_IN_FLIGHT	    128

struct err_entry {
	int line;
	size_t seq;
	char *msg;
};

struct ctx {
	const char *name;
	const char *text; /* the YAML, to find the line of a reader error */
	size_t len;
	yaml_document_t *doc;
	struct err_entry *e; /* CFG_MAX_ERRORS entries, allocated on first error */
	size_t n;
	int overflow; /* errors were dropped past CFG_MAX_ERRORS */
	int oom;
};

typedef void (*key_fn)(struct ctx *x, const char *key, yaml_node_t *v, void *obj);

/* One known key of a mapping. fn NULL: the key is accepted and skipped. */
struct key_spec {
	const char *key;
	key_fn fn;
	int required;
};

/* ---------- errors ---------- */

/* Control characters from quoted YAML values would garble a terminal or log. */
static void sanitize(char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			*s = '?';
}

__attribute__((format(printf, 3, 4))) static void err(struct ctx *x, int line, const char *fmt, ...)
{
	char *body = NULL, *full = NULL;
	va_list ap;

	if (x->oom)
		return;
	if (x->n >= CFG_MAX_ERRORS) {
		x->overflow = 1;
		return;
	}
	if (!x->e && !(x->e = calloc(CFG_MAX_ERRORS, sizeof *x->e)))
		goto oom;
	va_start(ap, fmt);
	if (vasprintf(&body, fmt, ap) < 0)
		body = NULL;
	va_end(ap);
	if (!body || asprintf(&full, "%s:%d: %s", x->name, line, body) < 0)
		goto oom;
	free(body);
	sanitize(full);
	x->e[x->n] = (struct err_entry){.line = line, .seq = x->n, .msg = full};
	x->n++;
	return;
oom:
	free(body);
	x->oom = 1;
}

static int err_cmp(const void *a, const void *b)
{
	const struct err_entry *p = a, *q = b;

	if (p->line != q->line)
		return p->line < q->line ? -1 : 1;
	return p->seq < q->seq ? -1 : p->seq > q->seq;
}

/* Hands the collected messages to errs, sorted into file order. */
static int errors_finish(struct ctx *x, struct cfg_errors *errs)
{
	size_t n = x->n + (x->overflow ? 1 : 0), i;

	if (x->n == 0 || !errs)
		goto drop;
	qsort(x->e, x->n, sizeof *x->e, err_cmp);
	errs->msg = calloc(n, sizeof *errs->msg);
	if (!errs->msg)
		goto oom;
	for (i = 0; i < x->n; i++) {
		errs->msg[i] = x->e[i].msg;
		x->e[i].msg = NULL;
	}
	errs->n = x->n;
	if (x->overflow) {
		if (asprintf(&errs->msg[x->n], "%s: stopped after %d errors", x->name,
			     CFG_MAX_ERRORS) < 0)
			goto oom;
		errs->n++;
	}
	free(x->e);
	x->e = NULL;
	return 0;
oom:
	cfg_errors_free(errs);
drop:
	for (i = 0; i < x->n; i++)
		free(x->e[i].msg);
	free(x->e);
	x->e = NULL;
	return x->n && errs ? -ENOMEM : 0;
}

void cfg_errors_free(struct cfg_errors *e)
{
	size_t i;

	if (!e)
		return;
	for (i = 0; i < e->n; i++)
		free(e->msg[i]);
	free(e->msg);
	e->msg = NULL;
	e->n = 0;
}

/* ---------- pure value parsers ---------- */

/* Reads decimal digits at *sp, advancing it. Signs and empty input are -EINVAL. */
static int parse_digits(const char **sp, uint64_t *out)
{
	const char *s = *sp;
	uint64_t v = 0;

	if (!isdigit((unsigned char)*s))
		return -EINVAL;
	for (; isdigit((unsigned char)*s); s++) {
		unsigned d = (unsigned)(*s - '0');

		if (v > (UINT64_MAX - d) / 10)
			return -ERANGE;
		v = v * 10 + d;
	}
	*sp = s;
	*out = v;
	return 0;
}

struct unit {
	const char *name;
	uint64_t mult;
};

static const struct unit duration_units[] = {
    {"ms", 1}, {"s", MS_SECOND}, {"m", MS_MINUTE}, {"h", MS_HOUR}, {"d", MS_DAY},
};

static const struct unit size_units[] = {
    {"", 1}, {"B", 1}, {"KiB", 1ull << 10}, {"MiB", 1ull << 20}, {"GiB", 1ull << 30},
};

static int parse_with_unit(const char *s, const struct unit *u, size_t nu, uint64_t max,
			   uint64_t *out)
{
	uint64_t v;
	size_t i;
	int rc = parse_digits(&s, &v);

	if (rc < 0)
		return rc;
	for (i = 0; i < nu; i++) {
		if (strcmp(s, u[i].name) != 0)
			continue;
		if (v > max / u[i].mult)
			return -ERANGE;
		*out = v * u[i].mult;
		return 0;
	}
	return -EINVAL;
}

int cfg_parse_duration(const char *s, uint64_t *ms)
{
	return parse_with_unit(s, duration_units, sizeof duration_units / sizeof *duration_units,
			       CFG_DURATION_MAX_MS, ms);
}

int cfg_parse_size(const char *s, uint64_t *bytes)
{
	return parse_with_unit(s, size_units, sizeof size_units / sizeof *size_units, UINT64_MAX,
			       bytes);
}

/* Shows a byte count in the largest unit that divides it, as a user writes it. */
static void fmt_size(uint64_t v, char *buf, size_t cap)
{
	size_t i = sizeof size_units / sizeof *size_units;

	while (--i > 1)
		if (v && v % size_units[i].mult == 0)
			break;
	snprintf(buf, cap, "%llu%s", (unsigned long long)(v / size_units[i].mult),
		 size_units[i].name);
}

static void fmt_duration(uint64_t ms, char *buf, size_t cap)
{
	size_t i = sizeof duration_units / sizeof *duration_units;

	while (--i > 0)
		if (ms && ms % duration_units[i].mult == 0)
			break;
	snprintf(buf, cap, "%llu%s", (unsigned long long)(ms / duration_units[i].mult),
		 duration_units[i].name);
}

static int prefix_equal(const uint8_t *a, const uint8_t *b, unsigned bits)
{
	unsigned full = bits / 8, rest = bits % 8;
	uint8_t mask = (uint8_t)(0xff << (8 - rest));

	if (memcmp(a, b, full) != 0)
		return 0;
	return rest == 0 || ((a[full] ^ b[full]) & mask) == 0;
}

/* Clears host bits; returns whether any was set. */
static int mask_host_bits(struct cfg_cidr *c)
{
	unsigned bits = c->family == AF_INET ? 32 : 128, i;
	int had = 0;

	for (i = c->prefix; i < bits; i++) {
		uint8_t bit = (uint8_t)(0x80 >> (i % 8));

		had |= (c->addr[i / 8] & bit) != 0;
		c->addr[i / 8] &= (uint8_t)~bit;
	}
	return had;
}

static const uint8_t v4mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

/* Peers on a dual-stack socket arrive as ::ffff:a.b.c.d: keep one spelling. */
static void unmap_cidr(struct cfg_cidr *c)
{
	if (c->family != AF_INET6 || c->prefix < 96 || memcmp(c->addr, v4mapped_prefix, 12) != 0)
		return;
	memmove(c->addr, c->addr + 12, 4);
	memset(c->addr + 4, 0, 12);
	c->family = AF_INET;
	c->prefix -= 96;
}

int cfg_parse_cidr(const char *s, struct cfg_cidr *c)
{
	char host[INET6_ADDRSTRLEN];
	const char *slash = strchr(s, '/');
	size_t hlen = slash ? (size_t)(slash - s) : strlen(s);
	unsigned max;
	uint64_t prefix;

	memset(c, 0, sizeof *c);
	if (hlen == 0 || hlen >= sizeof host)
		return -EINVAL;
	memcpy(host, s, hlen);
	host[hlen] = '\0';
	if (inet_pton(AF_INET, host, c->addr) == 1)
		c->family = AF_INET, max = 32;
	else if (inet_pton(AF_INET6, host, c->addr) == 1)
		c->family = AF_INET6, max = 128;
	else
		return -EINVAL;
	prefix = max;
	if (slash) {
		const char *p = slash + 1;

		if (parse_digits(&p, &prefix) < 0 || *p != '\0' || prefix > max)
			return -EINVAL;
	}
	c->prefix = (unsigned)prefix;
	unmap_cidr(c);
	return mask_host_bits(c) ? -EDOM : 0;
}

int cfg_cidr_contains(const struct cfg_cidr *c, const struct sockaddr *addr)
{
	uint8_t a[16];
	int family;

	if (addr->sa_family == AF_INET) {
		struct sockaddr_in sin;

		memcpy(&sin, addr, sizeof sin);
		memcpy(a, &sin.sin_addr, 4);
		family = AF_INET;
	} else if (addr->sa_family == AF_INET6) {
		struct sockaddr_in6 sin6;

		memcpy(&sin6, addr, sizeof sin6);
		family = IN6_IS_ADDR_V4MAPPED(&sin6.sin6_addr) ? AF_INET : AF_INET6;
		memcpy(a, sin6.sin6_addr.s6_addr + (family == AF_INET ? 12 : 0),
		       family == AF_INET ? 4 : 16);
	} else {
		return 0;
	}
	return family == c->family && prefix_equal(a, c->addr, c->prefix);
}

int cfg_parse_hostport(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
	char host[INET6_ADDRSTRLEN];
	const char *h = s, *p, *end;
	int v6 = *s == '[';
	uint64_t port;
	size_t hlen;

	if (v6) {
		h = s + 1;
		end = strchr(h, ']');
		if (!end || end[1] != ':')
			return -EINVAL;
		p = end + 2;
	} else {
		end = strrchr(s, ':');
		if (!end)
			return -EINVAL;
		p = end + 1;
	}
	hlen = (size_t)(end - h);
	if (hlen == 0 || hlen >= sizeof host)
		return -EINVAL;
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	if (parse_digits(&p, &port) < 0 || *p != '\0' || port == 0 || port > 65535)
		return -EINVAL;
	memset(ss, 0, sizeof *ss);
	if (v6) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

		if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
			return -EINVAL;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		*len = sizeof *sin6;
	} else {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;

		if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
			return -EINVAL;
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port);
		*len = sizeof *sin;
	}
	return 0;
}

static unsigned port_of(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)ss)->sin_port);
	return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
}

/* ---------- node helpers ---------- */

static int line_of(const yaml_node_t *n)
{
	return (int)n->start_mark.line + 1;
}

static const char *text_of(const yaml_node_t *n)
{
	return (const char *)n->data.scalar.value;
}

static yaml_node_t *node_at(struct ctx *x, int index)
{
	return yaml_document_get_node(x->doc, index);
}

static size_t seq_len(const yaml_node_t *n)
{
	return (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
}

/* An empty value, ~ or null, unquoted: YAML's null, not the string "null". */
static int is_null(const yaml_node_t *n)
{
	static const char *const nulls[] = {"", "~", "null", "Null", "NULL"};
	size_t i;

	if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return 0;
	for (i = 0; i < sizeof nulls / sizeof *nulls; i++)
		if (strcmp(text_of(n), nulls[i]) == 0)
			return 1;
	return 0;
}

/* Returns the value's text, or NULL after saying why it cannot be used. */
static const char *want_scalar(struct ctx *x, const char *key, yaml_node_t *v, const char *what)
{
	if (v->type != YAML_SCALAR_NODE || is_null(v)) {
		err(x, line_of(v), "%s: expected %s", key, what);
		return NULL;
	}
	if (v->data.scalar.length > CFG_VALUE_MAX) {
		err(x, line_of(v), "%s: longer than %d bytes", key, CFG_VALUE_MAX);
		return NULL;
	}
	if (memchr(v->data.scalar.value, '\0', v->data.scalar.length)) {
		err(x, line_of(v), "%s: contains a NUL byte", key);
		return NULL;
	}
	return text_of(v);
}

static int set_string(struct ctx *x, char **dst, const char *s)
{
	free(*dst);
	*dst = strdup(s);
	if (!*dst)
		x->oom = 1;
	return *dst ? 0 : -ENOMEM;
}

static int want_string(struct ctx *x, const char *key, yaml_node_t *v, char **dst)
{
	const char *s = want_scalar(x, key, v, "a string");

	return s ? set_string(x, dst, s) : -EINVAL;
}

/* Checks with the caller's credentials that path opens for reading as a file. */
static int want_file(struct ctx *x, const char *key, yaml_node_t *v, char **dst)
{
	const char *s = want_scalar(x, key, v, "a file name");
	struct stat st;
	int fd, rc;

	if (!s)
		return -EINVAL;
	fd = open(s, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	if (fd < 0) {
		err(x, line_of(v), "%s: cannot read %s: %s", key, s, strerror(errno));
		return -errno;
	}
	rc = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) ? 0 : -EINVAL;
	close(fd);
	if (rc < 0) {
		err(x, line_of(v), "%s: %s is not a regular file", key, s);
		return rc;
	}
	return set_string(x, dst, s);
}

/* Durations here are all delays or periods: zero would mean spin or never. */
static int want_duration(struct ctx *x, const char *key, yaml_node_t *v, uint64_t *ms)
{
	const char *s = want_scalar(x, key, v, "a duration");
	uint64_t val;
	int rc;

	if (!s)
		return -EINVAL;
	rc = cfg_parse_duration(s, &val);
	if (rc == -ERANGE) {
		char max[32];

		fmt_duration(CFG_DURATION_MAX_MS, max, sizeof max);
		err(x, line_of(v), "%s: %s is longer than %s", key, s, max);
	} else if (rc < 0) {
		err(x, line_of(v),
		    "%s: expected a duration such as 500ms, 30s, 5m, 2h or 7d, got '%s'", key, s);
	} else if (val == 0) {
		err(x, line_of(v), "%s: must be longer than 0", key);
		rc = -EINVAL;
	} else {
		*ms = val;
	}
	return rc;
}

#define ENUM_TEXT_MAX 128 /* "'a', 'b' or 'c'": room for every list used here */

/* Writes "'a', 'b' or 'c'" for a NULL-terminated list of (short) words. */
static void fmt_words(const char *const *words, char *buf, size_t cap)
{
	size_t len = 0;
	int i;

	buf[0] = '\0';
	for (i = 0; words[i] && len < cap; i++) {
		const char *sep = i == 0 ? "" : words[i + 1] ? ", " : " or ";
		int n = snprintf(buf + len, cap - len, "%s'%s'", sep, words[i]);

		if (n < 0)
			break;
		len += (size_t)n;
	}
}

/* Looks up a word in a NULL-terminated list; returns its index or -1. */
static int want_enum(struct ctx *x, const char *key, yaml_node_t *v, const char *const *words)
{
	char list[ENUM_TEXT_MAX];
	const char *s = NULL;
	int i;

	fmt_words(words, list, sizeof list);
	if (v->type != YAML_SCALAR_NODE || is_null(v)) {
		err(x, line_of(v), "%s: expected %s", key, list);
		return -1;
	}
	s = text_of(v);
	for (i = 0; words[i]; i++)
		if (strcmp(s, words[i]) == 0)
			return i;
	err(x, line_of(v), "%s: expected %s, got '%s'", key, list, s);
	return -1;
}

/* ---------- mapping walker ---------- */

/* Calls each known key's handler in file order, reports unknown and duplicate
 * keys. Returns a mask of the keys seen (bit i: specs[i]). */
static uint64_t walk_mapping(struct ctx *x, yaml_node_t *map, const struct key_spec *specs,
			     size_t n, const char *where, void *obj)
{
	yaml_node_pair_t *pair;
	uint64_t seen = 0;
	size_t i;

	for (pair = map->data.mapping.pairs.start; pair < map->data.mapping.pairs.top; pair++) {
		yaml_node_t *k = node_at(x, pair->key), *v = node_at(x, pair->value);

		if (k->type != YAML_SCALAR_NODE) {
			err(x, line_of(k), "keys must be plain words %s", where);
			continue;
		}
		for (i = 0; i < n && strcmp(text_of(k), specs[i].key) != 0; i++)
			;
		if (i == n) {
			err(x, line_of(k), "unknown key '%s' %s", text_of(k), where);
		} else if (seen & (1ull << i)) {
			err(x, line_of(k), "duplicate key '%s' %s", specs[i].key, where);
		} else {
			seen |= 1ull << i;
			if (specs[i].fn)
				specs[i].fn(x, specs[i].key, v, obj);
		}
	}
	return seen;
}

/* Reports required keys absent from map, at the line where map starts. */
static void need_keys(struct ctx *x, yaml_node_t *map, const struct key_spec *specs, size_t n,
		      uint64_t seen, const char *prefix)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (!specs[i].required || (seen & (1ull << i)))
			continue;
		if (prefix)
			err(x, line_of(map), "%s: missing '%s'", prefix, specs[i].key);
		else
			err(x, line_of(map), "missing '%s'", specs[i].key);
	}
}

static int want_mapping(struct ctx *x, const char *key, yaml_node_t *v)
{
	if (v->type == YAML_MAPPING_NODE)
		return 1;
	err(x, line_of(v), "%s: expected a mapping", key);
	return 0;
}

#define NKEYS(a) (sizeof(a) / sizeof *(a))

/* ---------- integration sections ---------- */

/* Where an integration's parts were found, for rules that span keys. */
struct integ_build {
	struct cfg_integration *in;
	size_t index;
	int name_line, listen_line, cert_line, key_line;
	int name_ok, listen_ok, sources_ok;
	yaml_node_t *upstream; /* the mapping, once seen */
	uint64_t upstream_seen;
};

static void h_name(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct integ_build *b = obj;
	const char *s = want_scalar(x, key, v, "a string");
	size_t len = s ? strlen(s) : 0;

	b->name_line = line_of(v);
	if (!s)
		return;
	if (len == 0 || len > CFG_NAME_MAX ||
	    strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-") != len) {
		err(x, line_of(v), "%s: '%s' is not 1-%d characters of A-Z a-z 0-9 _ -", key, s,
		    CFG_NAME_MAX);
		return;
	}
	b->name_ok = set_string(x, &b->in->name, s) == 0;
}

static void h_listen(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct integ_build *b = obj;
	const char *s = want_scalar(x, key, v, "an address:port");
	unsigned port;

	b->listen_line = line_of(v);
	if (!s)
		return;
	if (cfg_parse_hostport(s, &b->in->listen, &b->in->listen_len) < 0) {
		err(x, line_of(v), "%s: expected IPv4:port or [IPv6]:port, got '%s'", key, s);
		return;
	}
	port = port_of(&b->in->listen);
	if (port < CFG_PORT_MIN || port > CFG_PORT_MAX) {
		err(x, line_of(v), "%s: port %u is outside %d-%d", key, port, CFG_PORT_MIN,
		    CFG_PORT_MAX);
		return;
	}
	b->listen_ok = set_string(x, &b->in->listen_text, s) == 0;
}

static int want_cidr(struct ctx *x, const char *key, yaml_node_t *v, struct cfg_cidr *c)
{
	const char *s = want_scalar(x, key, v, "a CIDR");
	int rc;

	if (!s)
		return -EINVAL;
	rc = cfg_parse_cidr(s, c);
	if (rc == -EDOM) {
		char net[INET6_ADDRSTRLEN];

		inet_ntop(c->family, c->addr, net, sizeof net);
		err(x, line_of(v), "%s: %s has host bits set (the network is %s/%u)", key, s, net,
		    c->prefix);
	} else if (rc < 0) {
		err(x, line_of(v), "%s: bad CIDR '%s'", key, s);
	}
	return rc;
}

static void h_sources(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct integ_build *b = obj;
	struct cfg_integration *in = b->in;
	size_t n, i;
	int ok = 1;

	if (v->type != YAML_SEQUENCE_NODE) {
		err(x, line_of(v), "%s: expected a sequence", key);
		return;
	}
	n = seq_len(v);
	if (n == 0 || n > CFG_MAX_SOURCES) {
		err(x, line_of(v), "%s: expected 1 to %d CIDRs, got %zu", key, CFG_MAX_SOURCES, n);
		return;
	}
	in->sources = calloc(n, sizeof *in->sources);
	if (!in->sources) {
		x->oom = 1;
		return;
	}
	for (i = 0; i < n; i++) {
		yaml_node_t *item = node_at(x, v->data.sequence.items.start[i]);

		if (want_cidr(x, key, item, &in->sources[in->nsources]) == 0)
			in->nsources++;
		else
			ok = 0;
	}
	b->sources_ok = ok;
}

static void h_facility(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct cfg_integration *in = obj;
	const char *s = want_scalar(x, key, v, "a string");
	char **dst = strcmp(key, "sending_facility") == 0 ? &in->match_sending_facility
							  : &in->match_receiving_facility;
	size_t len = s ? strlen(s) : 0;
	size_t i;

	if (!s)
		return;
	for (i = 0; i < len && (unsigned char)s[i] >= 0x20 && s[i] != 0x7f && s[i] != '|'; i++)
		;
	if (len == 0 || len > CFG_FACILITY_MAX || i != len) {
		err(x, line_of(v), "%s: must be 1-%d characters without '|' or control characters",
		    key, CFG_FACILITY_MAX);
		return;
	}
	(void)set_string(x, dst, s);
}

static const struct key_spec match_keys[] = {
    {"sending_facility", h_facility, 0},
    {"receiving_facility", h_facility, 0},
};

static void h_match(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct integ_build *b = obj;

	if (want_mapping(x, key, v))
		walk_mapping(x, v, match_keys, NKEYS(match_keys), "in match", b->in);
}

static void h_ack(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	static const char *const words[] = {"commit", "upstream", NULL};
	struct integ_build *b = obj;
	int i = want_enum(x, key, v, words);

	if (i >= 0)
		b->in->ack = i == 0 ? CFG_ACK_COMMIT : CFG_ACK_UPSTREAM;
}

static void h_accept_ack(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	static const char *const words[] = {"msh15", "always", NULL};
	struct integ_build *b = obj;
	int i = want_enum(x, key, v, words);

	if (i >= 0)
		b->in->accept_ack_always = i == 1;
}

static void h_order(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	static const char *const words[] = {"integration", "sender", "feed", "patient", NULL};
	static const enum cfg_order orders[] = {CFG_ORDER_INTEGRATION, CFG_ORDER_SENDER,
						CFG_ORDER_FEED, CFG_ORDER_PATIENT};
	struct integ_build *b = obj;
	int i = want_enum(x, key, v, words);

	if (i >= 0)
		b->in->order = orders[i];
}

static void h_max_in_flight(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct integ_build *b = obj;
	const char *s = want_scalar(x, key, v, "an integer"), *p = s;
	uint64_t n;

	if (!s)
		return;
	if (parse_digits(&p, &n) < 0 || *p != '\0' || n < 1 || n > CFG_MAX_IN_FLIGHT_LIMIT) {
		err(x, line_of(v), "%s: expected an integer from 1 to %d, got '%s'", key,
		    CFG_MAX_IN_FLIGHT_LIMIT, s);
		return;
	}
	b->in->max_in_flight = (unsigned)n;
}

_Static_assert(CFG_DEDUP_MAX_MS % MS_HOUR == 0, "the dedup limit is shown in hours");

/* A zero window turns dedup off, so 0 is accepted, with or without a unit. */
static void h_dedup(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct integ_build *b = obj;
	const char *s = want_scalar(x, key, v, "a duration");
	uint64_t ms = 0;
	int rc;

	if (!s)
		return;
	rc = strcmp(s, "0") == 0 ? 0 : cfg_parse_duration(s, &ms);
	if (rc == -EINVAL) {
		err(x, line_of(v),
		    "%s: expected a duration such as 30s, 10m or 1h, or 0 for off, got '%s'", key,
		    s);
		return;
	}
	if (rc < 0 || ms > CFG_DEDUP_MAX_MS) {
		err(x, line_of(v), "%s: %s is longer than %lluh", key, s,
		    (unsigned long long)(CFG_DEDUP_MAX_MS / MS_HOUR));
		return;
	}
	b->in->dedup_ms = ms;
}

static void h_release(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct cfg_mllp *m = obj;
	const char *s = want_scalar(x, key, v, "1 or 2");

	if (!s)
		return;
	if (strcmp(s, "1") != 0 && strcmp(s, "2") != 0) {
		err(x, line_of(v), "%s: expected 1 or 2, got '%s'", key, s);
		return;
	}
	m->release = s[0] - '0';
}

static void h_max_frame(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct cfg_mllp *m = obj;
	const char *s = want_scalar(x, key, v, "a size");
	uint64_t n;
	int rc;

	if (!s)
		return;
	rc = cfg_parse_size(s, &n);
	if (rc == -EINVAL) {
		err(x, line_of(v), "%s: expected a size such as 16MiB, 512KiB or 65536, got '%s'",
		    key, s);
		return;
	}
	if (rc < 0 || n < MLLP_MIN_FRAME_LIMIT || n > MLLP_MAX_FRAME_LIMIT) {
		char lo[32], hi[32];

		fmt_size(MLLP_MIN_FRAME_LIMIT, lo, sizeof lo);
		fmt_size(MLLP_MAX_FRAME_LIMIT, hi, sizeof hi);
		err(x, line_of(v), "%s: %s is outside %s-%s", key, s, lo, hi);
		return;
	}
	m->max_frame = (size_t)n;
}

static void h_mllp_timeout(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct cfg_mllp *m = obj;

	(void)want_duration(x, key, v,
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

	if (want_mapping(x, key, v))
		walk_mapping(x, v, mllp_keys, NKEYS(mllp_keys), "in mllp", &b->in->mllp);
}

/* Credentials in a URL would end up in logs; bearer_token_file exists for them. */
static void h_url(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct integ_build *b = obj;
	const char *s = want_scalar(x, key, v, "an https:// URL"), *auth;
	size_t alen;

	if (!s)
		return;
	if (strncasecmp(s, "https://", 8) != 0) {
		err(x, line_of(v), "%s: expected an https:// URL, got '%s'", key, s);
		return;
	}
	if (strpbrk(s, " \t\r\n")) {
		err(x, line_of(v), "%s: contains white space", key);
		return;
	}
	auth = s + 8;
	alen = strcspn(auth, "/?#");
	if (memchr(auth, '@', alen)) {
		err(x, line_of(v), "%s: credentials in the URL are not allowed", key);
		return;
	}
	if (alen == 0 || auth[0] == ':') {
		err(x, line_of(v), "%s: no host in '%s'", key, s);
		return;
	}
	(void)set_string(x, &b->in->upstream.url, s);
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
	(void)want_file(x, key, v, dst);
}

static void h_upstream_timeout(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct integ_build *b = obj;

	(void)want_duration(x, key, v, &b->in->upstream.timeout_ms);
}

/* Plain YAML gives 2 and 1.1 as the scalars "2" and "1.1"; nothing else
 * (2.0, 1, h2) is accepted, so that a typo is not read as a version. */
static void h_http(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct integ_build *b = obj;
	const char *s = want_scalar(x, key, v, "2 or 1.1");

	if (!s)
		return;
	if (strcmp(s, "2") == 0)
		b->in->upstream.http = CFG_HTTP_2;
	else if (strcmp(s, "1.1") == 0)
		b->in->upstream.http = CFG_HTTP_1_1;
	else
		err(x, line_of(v), "%s: expected 2 or 1.1, got '%s'", key, s);
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

	if (!want_mapping(x, key, v))
		return;
	b->upstream = v;
	b->upstream_seen =
	    walk_mapping(x, v, upstream_keys, NKEYS(upstream_keys), "in upstream", b);
}

static const struct key_spec integration_keys[] = {
    {"name", h_name, 1},	 {"listen", h_listen, 1},
    {"sources", h_sources, 1},	 {"match", h_match, 0},
    {"ack", h_ack, 0},		 {"accept_ack", h_accept_ack, 0},
    {"order", h_order, 0},	 {"max_in_flight", h_max_in_flight, 0},
    {"dedup", h_dedup, 0},	 {"mllp", h_mllp, 0},
    {"upstream", h_upstream, 1},
};

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
	uint64_t seen;

	seen = walk_mapping(x, map, integration_keys, NKEYS(integration_keys), "in integration", b);
	snprintf(prefix, sizeof prefix, "integration %s", label(b, name, sizeof name));
	need_keys(x, map, integration_keys, NKEYS(integration_keys), seen, prefix);
	if (b->upstream) {
		strncat(prefix, ": upstream", sizeof prefix - strlen(prefix) - 1);
		need_keys(x, b->upstream, upstream_keys, NKEYS(upstream_keys), b->upstream_seen,
			  prefix);
	}
	if (b->cert_line && !b->key_line)
		err(x, b->cert_line, "client_cert: client_key is missing (mTLS needs both)");
	if (b->key_line && !b->cert_line)
		err(x, b->key_line, "client_key: client_cert is missing (mTLS needs both)");
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
			err(x, b[j].name_line, "duplicate integration name '%s' (first at line %d)",
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
	       prefix_equal(a->addr, b->addr, a->prefix < b->prefix ? a->prefix : b->prefix);
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
		err(x, q->listen_line,
		    "integrations %s and %s share %s and overlapping sources but have the same "
		    "match: a peer cannot be told apart",
		    na, nb, a->listen_text);
	if (!same_mllp(&a->mllp, &b->mllp))
		err(x, q->listen_line,
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

	if (v->type != YAML_SEQUENCE_NODE) {
		err(x, line_of(v), "%s: expected a sequence", key);
		return;
	}
	n = seq_len(v);
	if (n == 0 || n > CFG_MAX_INTEGRATIONS) {
		err(x, line_of(v), "%s: expected 1 to %d integrations, got %zu", key,
		    CFG_MAX_INTEGRATIONS, n);
		return;
	}
	c->integrations = calloc(n, sizeof *c->integrations);
	b = calloc(n, sizeof *b);
	if (!c->integrations || !b) {
		x->oom = 1;
		free(b);
		return;
	}
	c->nintegrations = n;
	for (i = 0; i < n; i++) {
		yaml_node_t *item = node_at(x, v->data.sequence.items.start[i]);

		b[i] = (struct integ_build){.in = &c->integrations[i], .index = i};
		integration_defaults(b[i].in);
		b[i].in->line = line_of(item);
		if (item->type != YAML_MAPPING_NODE)
			err(x, line_of(item), "%s: each entry must be a mapping", key);
		else
			build_integration(x, item, &b[i]);
	}
	check_names(x, b, n);
	check_listeners(x, b, n);
	free(b);
}

/* ---------- top level ---------- */

static void h_retention(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct cfg *c = obj;

	(void)want_duration(x, key, v, &c->retention_ms);
}

static void h_spool_path(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct cfg *c = obj;

	(void)want_string(x, key, v, &c->spool_path);
}

static const struct key_spec spool_keys[] = {
    {"path", h_spool_path, 1},
    {"retention", h_retention, 0},
};

static void h_spool(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct cfg *c = obj;
	uint64_t seen;

	if (v->type == YAML_SCALAR_NODE && !is_null(v)) {
		(void)want_string(x, key, v, &c->spool_path);
		return;
	}
	if (v->type != YAML_MAPPING_NODE) {
		err(x, line_of(v), "%s: expected a path or a mapping", key);
		return;
	}
	seen = walk_mapping(x, v, spool_keys, NKEYS(spool_keys), "in spool", c);
	need_keys(x, v, spool_keys, NKEYS(spool_keys), seen, key);
}

static void h_obs_listen(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct cfg *c = obj;
	const char *s = want_scalar(x, key, v, "an address:port");

	if (!s)
		return;
	if (cfg_parse_hostport(s, &c->observability_addr, &c->observability_len) < 0) {
		err(x, line_of(v), "%s: expected IPv4:port or [IPv6]:port, got '%s'", key, s);
		return;
	}
	(void)set_string(x, &c->observability_listen, s);
}

static const struct key_spec observability_keys[] = {
    {"listen", h_obs_listen, 1},
};

static void h_observability(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	uint64_t seen;

	if (!want_mapping(x, key, v))
		return;
	seen = walk_mapping(x, v, observability_keys, NKEYS(observability_keys), "in observability",
			    obj);
	need_keys(x, v, observability_keys, NKEYS(observability_keys), seen, key);
}

static void h_connections_count(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct cfg *c = obj;
	const char *s = want_scalar(x, key, v, "an integer"), *p = s;
	uint64_t n;

	if (!s)
		return;
	if (parse_digits(&p, &n) < 0 || *p != '\0' || n < 1 || n > CFG_CONNECTIONS_LIMIT) {
		err(x, line_of(v), "%s: expected an integer from 1 to %d, got '%s'", key,
		    CFG_CONNECTIONS_LIMIT, s);
		return;
	}
	*(strcmp(key, "max") == 0 ? &c->max_connections : &c->max_connections_per_source) =
	    (unsigned)n;
}

static const struct key_spec connections_keys[] = {
    {"max", h_connections_count, 0},
    {"per_source", h_connections_count, 0},
};

static void h_connections(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	if (want_mapping(x, key, v))
		walk_mapping(x, v, connections_keys, NKEYS(connections_keys), "in connections",
			     obj);
}

static void h_log_phi(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct cfg *c = obj;
	const char *s = want_scalar(x, key, v, "true or false");

	if (!s)
		return;
	if (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "TRUE"))
		c->log_phi = 1;
	else if (!strcmp(s, "false") || !strcmp(s, "False") || !strcmp(s, "FALSE"))
		c->log_phi = 0;
	else
		err(x, line_of(v), "%s: expected true or false, got '%s'", key, s);
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
	if (want_duration(x, key, v, initial ? &rb->r->initial_ms : &rb->r->max_ms) < 0)
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

	if (!want_mapping(x, key, v))
		return;
	walk_mapping(x, v, retry_keys, NKEYS(retry_keys), "in retry", &rb);
	if (rb.bad || c->retry.max_ms >= c->retry.initial_ms)
		return;
	fmt_duration(c->retry.initial_ms, lo, sizeof lo);
	fmt_duration(c->retry.max_ms, hi, sizeof hi);
	err(x,
	    rb.max_line	      ? rb.max_line
	    : rb.initial_line ? rb.initial_line
			      : line_of(v),
	    "retry: max %s is shorter than initial %s", hi, lo);
}

/* The supervisor reads these sections of the same file; the bridge skips them. */
static const struct key_spec top_keys[] = {
    {"spool", h_spool, 1},
    {"observability", h_observability, 0},
    {"log_phi", h_log_phi, 0},
    {"retry", h_retry, 0},
    {"connections", h_connections, 0},
    {"integrations", h_integrations, 1},
    {"tunnels", NULL, 0},
    {"charon", NULL, 0},
    {"supervisor", NULL, 0},
    {"outbound", NULL, 0},
    {"destinations", NULL, 0},
    {"https_listener", NULL, 0},
};

static void build(struct ctx *x, yaml_node_t *root, struct cfg *c)
{
	uint64_t seen;

	c->retention_ms = DEFAULT_RETENTION_MS;
	c->max_connections = CFG_CONNECTIONS_DEFAULT;
	c->max_connections_per_source = CFG_CONNECTIONS_PER_SOURCE_DEFAULT;
	c->retry.initial_ms = DEFAULT_RETRY_INITIAL_MS;
	c->retry.max_ms = DEFAULT_RETRY_MAX_MS;
	if (root->type != YAML_MAPPING_NODE) {
		err(x, line_of(root), "expected a mapping of settings at the top level");
		return;
	}
	seen = walk_mapping(x, root, top_keys, NKEYS(top_keys), "at the top level", c);
	need_keys(x, root, top_keys, NKEYS(top_keys), seen, NULL);
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
		err(x, line, "bad character in the file: %s", problem);
	} else if (p->context) {
		err(x, line, "YAML syntax error: %s (%s at line %d)", problem, p->context,
		    (int)p->context_mark.line + 1);
	} else {
		err(x, line, "YAML syntax error: %s", problem);
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
		err(x, 1, "the configuration is empty");
		yaml_document_delete(doc);
		return -EINVAL;
	}
	if (!yaml_parser_load(p, &extra)) {
		syntax_error(x, p);
		return 0;
	}
	if (yaml_document_get_root_node(&extra))
		err(x, (int)extra.start_mark.line + 1, "only one YAML document is allowed");
	yaml_document_delete(&extra);
	return 0;
}

static int load_text(const char *name, const char *text, size_t len, struct cfg **out,
		     struct cfg_errors *errs)
{
	struct ctx x = {.name = name, .text = text, .len = len};
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
	if (errors_finish(&x, errs) < 0)
		rc = -ENOMEM;
	if (rc < 0)
		cfg_free(c);
	else
		*out = c;
	return rc;
}

int cfg_load_string(const char *name, const char *text, struct cfg **out, struct cfg_errors *errs)
{
	return load_text(name, text, strlen(text), out, errs);
}

/* Reads the whole file, refusing it above CFG_MAX_FILE_SIZE before allocating. */
static int read_file(const char *path, char **text, size_t *len)
{
	struct stat st;
	size_t got = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK), rc = 0;

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0)
		rc = -errno;
	else if (!S_ISREG(st.st_mode))
		rc = -EINVAL;
	else if ((uint64_t)st.st_size > CFG_MAX_FILE_SIZE)
		rc = -EFBIG;
	else if (!(*text = malloc((size_t)st.st_size + 1)))
		rc = -ENOMEM;
	while (rc == 0 && got < (size_t)st.st_size) {
		ssize_t r = read(fd, *text + got, (size_t)st.st_size - got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			rc = -errno;
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	close(fd);
	if (rc < 0 && *text) {
		free(*text);
		*text = NULL;
	} else if (rc == 0) {
		(*text)[got] = '\0';
		*len = got;
	}
	return rc;
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
	sanitize(msg);
	errs->msg[0] = msg;
	errs->n = 1;
}

int cfg_load(const char *path, struct cfg **out, struct cfg_errors *errs)
{
	char *text = NULL;
	size_t len = 0;
	int rc;

	*out = NULL;
	if (errs)
		*errs = (struct cfg_errors){0};
	rc = read_file(path, &text, &len);
	if (rc < 0) {
		file_error(path, rc, errs);
		return rc;
	}
	rc = load_text(path, text, len, out, errs);
	free(text);
	return rc;
}

static void free_integration(struct cfg_integration *in)
{
	free(in->name);
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
	free(c->path);
	free(c->spool_path);
	free(c->observability_listen);
	free(c);
}
