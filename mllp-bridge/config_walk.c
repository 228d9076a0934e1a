/*
 * The config library's lower layer: the error list, the pure value parsers
 * (durations, sizes, CIDRs, addresses) and the mapping walker with its
 * typed value helpers. config.c and config_tunnel.c build on it; it calls
 * neither.
 */
#include "mllp-bridge/config.h"
#include "mllp-bridge/config_int.h"
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
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

/* ---------- errors ---------- */

/* Control characters from quoted YAML values would garble a terminal or log. */
void cfgi_sanitize(char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			*s = '?';
}

/* Records "FILE:LINE: body", sorted at line `at` of the configuration. */
static void verr(struct ctx *x, int at, const char *file, int line, const char *fmt, va_list ap)
{
	char *body = NULL, *full = NULL;

	if (x->oom)
		return;
	if (x->n >= CFG_MAX_ERRORS) {
		x->overflow = 1;
		return;
	}
	if (!x->e && !(x->e = calloc(CFG_MAX_ERRORS, sizeof *x->e)))
		goto oom;
	if (vasprintf(&body, fmt, ap) < 0)
		body = NULL;
	if (!body || asprintf(&full, "%s:%d: %s", file, line, body) < 0)
		goto oom;
	free(body);
	cfgi_sanitize(full);
	x->e[x->n] = (struct err_entry){.line = at, .seq = x->n, .msg = full};
	x->n++;
	return;
oom:
	free(body);
	x->oom = 1;
}

void cfgi_err(struct ctx *x, int line, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	verr(x, line, x->name, line, fmt, ap);
	va_end(ap);
}

void cfgi_err_in(struct ctx *x, int at, const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	verr(x, at, file, line, fmt, ap);
	va_end(ap);
}

static int err_cmp(const void *a, const void *b)
{
	const struct err_entry *p = a, *q = b;

	if (p->line != q->line)
		return p->line < q->line ? -1 : 1;
	return p->seq < q->seq ? -1 : p->seq > q->seq;
}

/* Hands the collected messages to errs, sorted into file order. */
int cfgi_errors_finish(struct ctx *x, struct cfg_errors *errs)
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
int cfgi_parse_digits(const char **sp, uint64_t *out)
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
	int rc = cfgi_parse_digits(&s, &v);

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

uint64_t cfg_retry_backoff_ms(const struct cfg_retry *rc, int attempts)
{
	uint64_t ms = rc->initial_ms;

	for (int i = 1; i < attempts && ms < rc->max_ms; i++)
		ms *= 2;
	return ms < rc->max_ms ? ms : rc->max_ms;
}

int cfg_parse_size(const char *s, uint64_t *bytes)
{
	return parse_with_unit(s, size_units, sizeof size_units / sizeof *size_units, UINT64_MAX,
			       bytes);
}

/* Shows a byte count in the largest unit that divides it, as a user writes it. */
void cfgi_fmt_size(uint64_t v, char *buf, size_t cap)
{
	size_t i = sizeof size_units / sizeof *size_units;

	while (--i > 1)
		if (v && v % size_units[i].mult == 0)
			break;
	snprintf(buf, cap, "%llu%s", (unsigned long long)(v / size_units[i].mult),
		 size_units[i].name);
}

void cfgi_fmt_duration(uint64_t ms, char *buf, size_t cap)
{
	size_t i = sizeof duration_units / sizeof *duration_units;

	while (--i > 0)
		if (ms && ms % duration_units[i].mult == 0)
			break;
	snprintf(buf, cap, "%llu%s", (unsigned long long)(ms / duration_units[i].mult),
		 duration_units[i].name);
}

int cfgi_prefix_equal(const uint8_t *a, const uint8_t *b, unsigned bits)
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

		if (cfgi_parse_digits(&p, &prefix) < 0 || *p != '\0' || prefix > max)
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
	return family == c->family && cfgi_prefix_equal(a, c->addr, c->prefix);
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
	if (cfgi_parse_digits(&p, &port) < 0 || *p != '\0' || port == 0 || port > 65535)
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

/* ---------- files ---------- */

int cfg_read_file(const char *path, size_t max, char **text, size_t *len)
{
	struct stat st;
	size_t got = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK), rc = 0;

	*text = NULL;
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0)
		rc = -errno;
	else if (!S_ISREG(st.st_mode))
		rc = -EINVAL;
	else if ((uint64_t)st.st_size > max)
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

/* ---------- node helpers ---------- */

/* An empty value, ~ or null, unquoted: YAML's null, not the string "null". */
int cfgi_is_null(const yaml_node_t *n)
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
const char *cfgi_want_scalar(struct ctx *x, const char *key, yaml_node_t *v, const char *what)
{
	if (v->type != YAML_SCALAR_NODE || cfgi_is_null(v)) {
		cfgi_err(x, line_of(v), "%s: expected %s", key, what);
		return NULL;
	}
	if (v->data.scalar.length > CFG_VALUE_MAX) {
		cfgi_err(x, line_of(v), "%s: longer than %d bytes", key, CFG_VALUE_MAX);
		return NULL;
	}
	if (memchr(v->data.scalar.value, '\0', v->data.scalar.length)) {
		cfgi_err(x, line_of(v), "%s: contains a NUL byte", key);
		return NULL;
	}
	return text_of(v);
}

int cfgi_set_string(struct ctx *x, char **dst, const char *s)
{
	free(*dst);
	*dst = strdup(s);
	if (!*dst)
		x->oom = 1;
	return *dst ? 0 : -ENOMEM;
}

int cfgi_want_string(struct ctx *x, const char *key, yaml_node_t *v, char **dst)
{
	const char *s = cfgi_want_scalar(x, key, v, "a string");

	return s ? cfgi_set_string(x, dst, s) : -EINVAL;
}

/* Checks with the caller's credentials that path opens for reading as a file. */
int cfgi_want_file(struct ctx *x, const char *key, yaml_node_t *v, char **dst)
{
	const char *s = cfgi_want_scalar(x, key, v, "a file name");
	struct stat st;
	int fd, rc;

	if (!s)
		return -EINVAL;
	fd = open(s, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	if (fd < 0) {
		cfgi_err(x, line_of(v), "%s: cannot read %s: %s", key, s, strerror(errno));
		return -errno;
	}
	rc = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) ? 0 : -EINVAL;
	close(fd);
	if (rc < 0) {
		cfgi_err(x, line_of(v), "%s: %s is not a regular file", key, s);
		return rc;
	}
	return cfgi_set_string(x, dst, s);
}

/* Durations here are all delays or periods: zero would mean spin or never. */
int cfgi_want_duration(struct ctx *x, const char *key, yaml_node_t *v, uint64_t *ms)
{
	const char *s = cfgi_want_scalar(x, key, v, "a duration");
	uint64_t val;
	int rc;

	if (!s)
		return -EINVAL;
	rc = cfg_parse_duration(s, &val);
	if (rc == -ERANGE) {
		char max[32];

		cfgi_fmt_duration(CFG_DURATION_MAX_MS, max, sizeof max);
		cfgi_err(x, line_of(v), "%s: %s is longer than %s", key, s, max);
	} else if (rc < 0) {
		cfgi_err(x, line_of(v),
			 "%s: expected a duration such as 500ms, 30s, 5m, 2h or 7d, got '%s'", key,
			 s);
	} else if (val == 0) {
		cfgi_err(x, line_of(v), "%s: must be longer than 0", key);
		rc = -EINVAL;
	} else {
		*ms = val;
	}
	return rc;
}

int cfgi_want_count(struct ctx *x, const char *key, yaml_node_t *v, unsigned max, unsigned *dst)
{
	const char *s = cfgi_want_scalar(x, key, v, "an integer"), *p = s;
	uint64_t n;

	if (!s)
		return -EINVAL;
	if (cfgi_parse_digits(&p, &n) < 0 || *p != '\0' || n < 1 || n > max) {
		cfgi_err(x, line_of(v), "%s: expected an integer from 1 to %u, got '%s'", key, max,
			 s);
		return -EINVAL;
	}
	*dst = (unsigned)n;
	return 0;
}

int cfgi_want_size(struct ctx *x, const char *key, yaml_node_t *v, uint64_t lo, uint64_t hi,
		   uint64_t *dst)
{
	const char *s = cfgi_want_scalar(x, key, v, "a size");
	uint64_t n;
	int rc;

	if (!s)
		return -EINVAL;
	rc = cfg_parse_size(s, &n);
	if (rc == -EINVAL) {
		cfgi_err(x, line_of(v),
			 "%s: expected a size such as 16MiB, 512KiB or 65536, got '%s'", key, s);
		return rc;
	}
	if (rc < 0 || n < lo || n > hi) {
		char lo_text[32], hi_text[32];

		cfgi_fmt_size(lo, lo_text, sizeof lo_text);
		cfgi_fmt_size(hi, hi_text, sizeof hi_text);
		cfgi_err(x, line_of(v), "%s: %s is outside %s-%s", key, s, lo_text, hi_text);
		return -ERANGE;
	}
	*dst = n;
	return 0;
}

/* Integrations and destinations alike: 1 (HL7 ACKs) or 2 (commit blocks). */
int cfgi_want_release(struct ctx *x, const char *key, yaml_node_t *v, int *dst)
{
	const char *s = cfgi_want_scalar(x, key, v, "1 or 2");

	if (!s)
		return -EINVAL;
	if (strcmp(s, "1") != 0 && strcmp(s, "2") != 0) {
		cfgi_err(x, line_of(v), "%s: expected 1 or 2, got '%s'", key, s);
		return -EINVAL;
	}
	*dst = s[0] - '0';
	return 0;
}

int cfgi_want_max_frame(struct ctx *x, const char *key, yaml_node_t *v, size_t *dst)
{
	uint64_t n;
	int rc = cfgi_want_size(x, key, v, MLLP_MIN_FRAME_LIMIT, MLLP_MAX_FRAME_LIMIT, &n);

	if (rc == 0)
		*dst = (size_t)n;
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
int cfgi_want_enum(struct ctx *x, const char *key, yaml_node_t *v, const char *const *words)
{
	char list[ENUM_TEXT_MAX];
	const char *s = NULL;
	int i;

	fmt_words(words, list, sizeof list);
	if (v->type != YAML_SCALAR_NODE || cfgi_is_null(v)) {
		cfgi_err(x, line_of(v), "%s: expected %s", key, list);
		return -1;
	}
	s = text_of(v);
	for (i = 0; words[i]; i++)
		if (strcmp(s, words[i]) == 0)
			return i;
	cfgi_err(x, line_of(v), "%s: expected %s, got '%s'", key, list, s);
	return -1;
}

/* ---------- mapping walker ---------- */

yaml_node_t *cfgi_find_key(struct ctx *x, yaml_node_t *map, const char *key)
{
	yaml_node_pair_t *pair;

	for (pair = map->data.mapping.pairs.start; pair < map->data.mapping.pairs.top; pair++) {
		yaml_node_t *k = node_at(x, pair->key);

		if (k->type == YAML_SCALAR_NODE && strcmp(text_of(k), key) == 0)
			return k;
	}
	return NULL;
}

/* Calls each known key's handler in file order, reports unknown and duplicate
 * keys. Returns a mask of the keys seen (bit i: specs[i]). */
uint64_t cfgi_walk_mapping(struct ctx *x, yaml_node_t *map, const struct key_spec *specs, size_t n,
			   const char *where, void *obj)
{
	yaml_node_pair_t *pair;
	uint64_t seen = 0;
	size_t i;

	for (pair = map->data.mapping.pairs.start; pair < map->data.mapping.pairs.top; pair++) {
		yaml_node_t *k = node_at(x, pair->key), *v = node_at(x, pair->value);

		if (k->type != YAML_SCALAR_NODE) {
			cfgi_err(x, line_of(k), "keys must be plain words %s", where);
			continue;
		}
		for (i = 0; i < n && strcmp(text_of(k), specs[i].key) != 0; i++)
			;
		if (i == n) {
			cfgi_err(x, line_of(k), "unknown key '%s' %s", text_of(k), where);
		} else if (seen & (1ull << i)) {
			cfgi_err(x, line_of(k), "duplicate key '%s' %s", specs[i].key, where);
		} else {
			seen |= 1ull << i;
			if (specs[i].fn)
				specs[i].fn(x, specs[i].key, v, obj);
		}
	}
	return seen;
}

/* Reports required keys absent from map, at the line where map starts. */
void cfgi_need_keys(struct ctx *x, yaml_node_t *map, const struct key_spec *specs, size_t n,
		    uint64_t seen, const char *prefix)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (!specs[i].required || (seen & (1ull << i)))
			continue;
		if (prefix)
			cfgi_err(x, line_of(map), "%s: missing '%s'", prefix, specs[i].key);
		else
			cfgi_err(x, line_of(map), "missing '%s'", specs[i].key);
	}
}

int cfgi_want_mapping(struct ctx *x, const char *key, yaml_node_t *v)
{
	if (v->type == YAML_MAPPING_NODE)
		return 1;
	cfgi_err(x, line_of(v), "%s: expected a mapping", key);
	return 0;
}

int cfgi_want_sequence(struct ctx *x, const char *key, yaml_node_t *v, size_t min, size_t max,
		       const char *what)
{
	size_t n;

	if (v->type != YAML_SEQUENCE_NODE) {
		cfgi_err(x, line_of(v), "%s: expected a sequence", key);
		return 0;
	}
	n = seq_len(v);
	if (n < min || n > max) {
		cfgi_err(x, line_of(v), "%s: expected %zu to %zu %s, got %zu", key, min, max, what,
			 n);
		return 0;
	}
	return 1;
}

int cfgi_want_bool(struct ctx *x, const char *key, yaml_node_t *v, int *dst)
{
	const char *s = cfgi_want_scalar(x, key, v, "true or false");

	if (!s)
		return -EINVAL;
	if (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "TRUE")) {
		*dst = 1;
	} else if (!strcmp(s, "false") || !strcmp(s, "False") || !strcmp(s, "FALSE")) {
		*dst = 0;
	} else {
		cfgi_err(x, line_of(v), "%s: expected true or false, got '%s'", key, s);
		return -EINVAL;
	}
	return 0;
}

/* Names appear in metrics, logs, spool rows and vici messages. */
int cfgi_want_name(struct ctx *x, const char *key, yaml_node_t *v, char **dst)
{
	const char *s = cfgi_want_scalar(x, key, v, "a string");
	size_t len = s ? strlen(s) : 0;

	if (!s)
		return -EINVAL;
	if (len == 0 || len > CFG_NAME_MAX ||
	    strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-") != len) {
		cfgi_err(x, line_of(v), "%s: '%s' is not 1-%d characters of A-Z a-z 0-9 _ -", key,
			 s, CFG_NAME_MAX);
		return -EINVAL;
	}
	return cfgi_set_string(x, dst, s);
}

int cfgi_want_cidr(struct ctx *x, const char *key, yaml_node_t *v, struct cfg_cidr *c)
{
	const char *s = cfgi_want_scalar(x, key, v, "a CIDR");
	int rc;

	if (!s)
		return -EINVAL;
	rc = cfg_parse_cidr(s, c);
	if (rc == -EDOM) {
		char net[INET6_ADDRSTRLEN];

		inet_ntop(c->family, c->addr, net, sizeof net);
		cfgi_err(x, line_of(v), "%s: %s has host bits set (the network is %s/%u)", key, s,
			 net, c->prefix);
	} else if (rc < 0) {
		cfgi_err(x, line_of(v), "%s: bad CIDR '%s'", key, s);
	}
	return rc;
}

int cfgi_want_cidrs(struct ctx *x, const char *key, yaml_node_t *v, size_t max,
		    struct cfg_cidr **out, size_t *n)
{
	size_t len, i;
	int ok = 1;

	if (!cfgi_want_sequence(x, key, v, 1, max, "CIDRs"))
		return 0;
	len = seq_len(v);
	*out = calloc(len, sizeof **out);
	if (!*out) {
		x->oom = 1;
		return 0;
	}
	for (i = 0; i < len; i++) {
		if (cfgi_want_cidr(x, key, seq_item(x, v, i), &(*out)[*n]) == 0)
			(*n)++;
		else
			ok = 0;
	}
	return ok;
}
