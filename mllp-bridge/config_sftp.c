/*
 * The `sftp:` sections of appliance.yaml (issue 14): a hospital SFTP folder
 * that an integration polls (a pull channel) or that a destination writes
 * files to (a push channel). One key table for both; a destination's refuses
 * the pull-only keys. The client key and the pinned host keys are judged by
 * sftpc's pure helpers, so that the file channels cannot later refuse what
 * the configuration accepted. Remote folders are stored normalised (no "//",
 * no "." component, no final "/") so that two spellings of one folder compare
 * equal in the rules across sections.
 */
#include "mllp-bridge/config.h"
#include "mllp-bridge/config_int.h"
#include "mllp-bridge/sftpc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define SFTP_PORT_DEFAULT "22"
#define SERVER_TEXT_MAX	  (INET6_ADDRSTRLEN + 16) /* "[v6]:65535" and some */
#define DEFAULT_GLOB	  "*"
#define DEFAULT_DONE_DIR  "done"
#define DEFAULT_ERROR_DIR "error"
#define CTYPE_HL7	  "application/hl7-v2"
#define CTYPE_OCTETS	  "application/octet-stream"
#define CONTENT_TYPE_TCHARS                                                                        \
	"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
#define PULL_ONLY_TEXT "only for a pull channel (an integration's sftp), not a destination's"

/* The section being read, and the lines that later rules point at. */
struct sftp_walk {
	struct cfg_sftp *s;
	struct sftp_build *b;
	int done_line, error_line; /* 0: not given */
	int content_type_set;
};

/* ---------- values ---------- */

static int has_control(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return 1;
	return 0;
}

/* Numeric address with an optional port: "a.b.c.d", "a.b.c.d:p", "v6",
 * "[v6]" or "[v6]:p"; the port defaults to 22. */
static int parse_server(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
	char buf[SERVER_TEXT_MAX];
	unsigned char a[sizeof(struct in6_addr)];
	size_t n = strlen(s);

	if (n + sizeof ":" SFTP_PORT_DEFAULT > sizeof buf)
		return -EINVAL;
	if (inet_pton(AF_INET, s, a) == 1)
		snprintf(buf, sizeof buf, "%s:" SFTP_PORT_DEFAULT, s);
	else if (inet_pton(AF_INET6, s, a) == 1)
		snprintf(buf, sizeof buf, "[%s]:" SFTP_PORT_DEFAULT, s);
	else if (n > 2 && s[0] == '[' && s[n - 1] == ']')
		snprintf(buf, sizeof buf, "%s:" SFTP_PORT_DEFAULT, s);
	else
		snprintf(buf, sizeof buf, "%s", s);
	return cfg_parse_hostport(buf, ss, len);
}

/* "lis-sftp.hospital.org" or "lis:2222": a letter outside brackets, at most
 * one ':' (IPv6 has hex letters, but more colons). */
static int looks_like_name(const char *s)
{
	const char *colon = strchr(s, ':');

	if (s[0] == '[' || (colon && strchr(colon + 1, ':')))
		return 0;
	for (; *s && *s != ':'; s++)
		if ((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z'))
			return 1;
	return 0;
}

static int is_unspecified(const struct sockaddr_storage *ss)
{
	static const uint8_t zero[16];

	if (ss->ss_family == AF_INET)
		return ((const struct sockaddr_in *)ss)->sin_addr.s_addr == 0;
	return memcmp(&((const struct sockaddr_in6 *)ss)->sin6_addr, zero, 16) == 0;
}

void cfgi_fmt_server(const struct cfg_sftp *s, char *buf, size_t cap, int with_port)
{
	char host[INET6_ADDRSTRLEN] = "?";
	unsigned port;

	if (s->server.ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)&s->server;

		inet_ntop(AF_INET, &sin->sin_addr, host, sizeof host);
		port = ntohs(sin->sin_port);
		if (with_port)
			snprintf(buf, cap, "%s:%u", host, port);
		else
			snprintf(buf, cap, "%s", host);
		return;
	}
	inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)&s->server)->sin6_addr, host,
		  sizeof host);
	port = ntohs(((const struct sockaddr_in6 *)&s->server)->sin6_port);
	if (with_port)
		snprintf(buf, cap, "[%s]:%u", host, port);
	else
		snprintf(buf, cap, "%s", host);
}

/* Normalises the absolute path in into out (room for strlen(in) + 1):
 * "//" and "." components dropped, no final "/" but for the root itself.
 * Returns -EINVAL when a component is "..". */
static int path_normalise(const char *in, char *out)
{
	char *o = out;

	while (*in) {
		size_t n;

		while (*in == '/')
			in++;
		n = strcspn(in, "/");
		if (n == 0 || (n == 1 && in[0] == '.')) {
			in += n;
			continue;
		}
		if (n == 2 && in[0] == '.' && in[1] == '.')
			return -EINVAL;
		*o++ = '/';
		memcpy(o, in, n);
		o += n;
		in += n;
	}
	if (o == out)
		*o++ = '/';
	*o = '\0';
	return 0;
}

/* A remote folder: s absolute, or (base given) relative to base. Checked:
 * control characters, "..", and the length once joined. Returns 0 and *out
 * (malloc'd, normalised). */
static int want_remote_dir(struct ctx *x, const char *key, int line, const char *s,
			   const char *base, char **out)
{
	char *joined = NULL, *norm;
	int rc;

	if (has_control(s)) {
		cfgi_err(x, line, "%s: has a control character", key);
		return -EINVAL;
	}
	if (s[0] != '/' && !base) {
		cfgi_err(x, line, "%s: expected an absolute path, got '%s'", key, s);
		return -EINVAL;
	}
	if (s[0] != '/' ? asprintf(&joined, "%s/%s", base, s) < 0 : !(joined = strdup(s))) {
		x->oom = 1;
		return -ENOMEM;
	}
	norm = malloc(strlen(joined) + 2);
	if (!norm) {
		free(joined);
		x->oom = 1;
		return -ENOMEM;
	}
	rc = path_normalise(joined, norm);
	if (rc < 0)
		cfgi_err(x, line, "%s: '..' is not allowed, got '%s'", key, s);
	else if (strlen(norm) > SFTPC_PATH_MAX)
		cfgi_err(x, line, "%s: longer than %d bytes%s", key, SFTPC_PATH_MAX,
			 s[0] != '/' ? " once under dir" : "");
	free(joined);
	if (rc < 0 || strlen(norm) > SFTPC_PATH_MAX) {
		free(norm);
		return -EINVAL;
	}
	free(*out);
	*out = norm;
	return 0;
}

/* RFC 9110: type "/" subtype *( OWS ";" OWS name "=" ( token / quoted-string ) ),
 * every name and value a token but for the quoted string. */
static size_t token_len(const char *s)
{
	return strspn(s, CONTENT_TYPE_TCHARS);
}

static int content_type_ok(const char *s)
{
	size_t n = token_len(s);

	if (n == 0 || s[n] != '/' || (n = token_len(s += n + 1)) == 0)
		return 0;
	for (s += n; *s;) {
		s += strspn(s, " \t");
		if (*s++ != ';')
			return 0;
		s += strspn(s, " \t");
		if ((n = token_len(s)) == 0 || s[n] != '=')
			return 0;
		s += n + 1;
		if (*s == '"') {
			n = strcspn(s + 1, "\"\\");
			if (s[1 + n] != '"')
				return 0;
			s += n + 2;
		} else if ((n = token_len(s)) == 0) {
			return 0;
		} else {
			s += n;
		}
		if (*s && *s != ' ' && *s != '\t' && *s != ';')
			return 0;
	}
	return 1;
}

/* ---------- handlers ---------- */

static void h_server(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct sftp_walk *w = obj;
	const char *s = cfgi_want_scalar(x, key, v, "an address");

	w->b->server_line = line_of(v);
	if (!s)
		return;
	if (parse_server(s, &w->s->server, &w->s->server_len) < 0) {
		if (looks_like_name(s))
			cfgi_err(x, line_of(v),
				 "%s: use a numeric address; names would be resolved outside the "
				 "tunnel",
				 key);
		else
			cfgi_err(x, line_of(v),
				 "%s: expected IPv4, IPv4:port, IPv6 or [IPv6]:port, got '%s'", key,
				 s);
		return;
	}
	if (is_unspecified(&w->s->server)) {
		cfgi_err(x, line_of(v), "%s: %s is the unspecified address, not a server's", key,
			 s);
		return;
	}
	w->b->server_ok = cfgi_set_string(x, &w->s->server_text, s) == 0;
}

/* Visible ASCII, without what would read as part of an address (user@host,
 * sftp://user:password@host) or a path. */
static void h_user(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct sftp_walk *w = obj;
	const char *s = cfgi_want_scalar(x, key, v, "a user name");
	size_t len = s ? strlen(s) : 0, i;

	if (!s)
		return;
	for (i = 0; i < len && s[i] > 0x20 && s[i] < 0x7f && !strchr(":@/", s[i]); i++)
		;
	if (len == 0 || len > CFG_SFTP_USER_MAX || i != len) {
		cfgi_err(x, line_of(v),
			 "%s: expected 1-%d visible ASCII characters without ':', '@' or '/', got "
			 "'%s'",
			 key, CFG_SFTP_USER_MAX, s);
		return;
	}
	(void)cfgi_set_string(x, &w->s->user, s);
}

/* sftpc's policy, on a file the caller's credentials opened already. */
static void check_key_policy(struct ctx *x, const char *what, int line, const char *path)
{
	char why[SFTPC_ERR_MAX] = "";
	int rc = sftpc_key_info(path, NULL, 0, NULL, why, sizeof why);

	if (rc == -ENOMEM)
		x->oom = 1;
	else if (rc < 0)
		cfgi_err(x, line, "%s: %s", what, why[0] ? why : strerror(-rc));
}

/* "<key>.next" is the key being rolled in: tried first, so it is held to
 * the same rules whenever it is there. */
static void check_next_key(struct ctx *x, int line, const char *key)
{
	struct stat st = {0};
	char *next = NULL;

	if (asprintf(&next, "%s.next", key) < 0) {
		x->oom = 1;
		return;
	}
	if (stat(next, &st) < 0 ? errno != ENOENT : S_ISREG(st.st_mode))
		check_key_policy(x, "key (.next)", line, next); /* says why it cannot be read */
	else if (st.st_mode)
		cfgi_err(x, line, "key (.next): %s is not a regular file", next);
	free(next);
}

static void h_key(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct sftp_walk *w = obj;

	if (cfgi_want_file(x, key, v, &w->s->key) < 0)
		return;
	check_key_policy(x, key, line_of(v), w->s->key);
	check_next_key(x, line_of(v), w->s->key);
}

/* Type and key blob: the comment does not make another pin. */
static int same_pin(const char *a, const char *b)
{
	size_t na, nb;

	a += strspn(a, " \t");
	b += strspn(b, " \t");
	na = strcspn(a, " \t");
	nb = strcspn(b, " \t");
	if (na != nb || memcmp(a, b, na) != 0)
		return 0;
	a += na + strspn(a + na, " \t");
	b += nb + strspn(b + nb, " \t");
	na = strcspn(a, " \t");
	nb = strcspn(b, " \t");
	return na == nb && memcmp(a, b, na) == 0;
}

static void h_host_keys(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct cfg_sftp *s = ((struct sftp_walk *)obj)->s;
	char why[SFTPC_ERR_MAX];
	int lines[SFTPC_HOSTKEYS_MAX];
	size_t n, i, j;

	if (!cfgi_want_sequence(x, key, v, 1, SFTPC_HOSTKEYS_MAX, "pinned keys"))
		return;
	n = seq_len(v);
	if (!(s->host_keys = calloc(n, sizeof *s->host_keys))) {
		x->oom = 1;
		return;
	}
	for (i = 0; i < n; i++) {
		yaml_node_t *item = seq_item(x, v, i);
		const char *pin = cfgi_want_scalar(x, key, item, "a pinned key 'type base64'");

		if (!pin)
			continue;
		why[0] = '\0';
		if (sftpc_pin_check(pin, why, sizeof why) < 0) {
			cfgi_err(x, line_of(item), "%s: %s", key, why[0] ? why : "not a pin");
			continue;
		}
		for (j = 0; j < s->nhost_keys && !same_pin(s->host_keys[j], pin); j++)
			;
		if (j < s->nhost_keys) {
			cfgi_err(x, line_of(item), "%s: the same key as line %d", key, lines[j]);
			continue;
		}
		if (cfgi_set_string(x, &s->host_keys[s->nhost_keys], pin) == 0)
			lines[s->nhost_keys++] = line_of(item);
	}
}

static void h_dir(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct sftp_walk *w = obj;
	const char *s = cfgi_want_scalar(x, key, v, "an absolute path");

	w->b->dir_line = line_of(v);
	if (s)
		w->b->dir_ok = want_remote_dir(x, key, line_of(v), s, NULL, &w->s->dir) == 0;
}

/* Kept as written until the walk is over: a relative one is under dir,
 * which may come later in the mapping. */
static void h_side_dir(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct sftp_walk *w = obj;
	int done = strcmp(key, "done_dir") == 0;
	const char *s = cfgi_want_scalar(x, key, v, "a path");

	if (s && cfgi_set_string(x, done ? &w->s->done_dir : &w->s->error_dir, s) == 0)
		*(done ? &w->done_line : &w->error_line) = line_of(v);
}

static void h_glob(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct sftp_walk *w = obj;
	const char *s = cfgi_want_scalar(x, key, v, "a file name pattern");

	if (!s)
		return;
	if (!*s || strlen(s) > CFG_SFTP_GLOB_MAX || strchr(s, '/') || has_control(s)) {
		cfgi_err(x, line_of(v),
			 "%s: expected 1-%d characters without '/' or control characters, got '%s'",
			 key, CFG_SFTP_GLOB_MAX, s);
		return;
	}
	(void)cfgi_set_string(x, &w->s->glob, s);
}

/* A duration from lo to hi, both shown as a user writes them. */
static void want_period(struct ctx *x, const char *key, yaml_node_t *v, uint64_t lo, uint64_t hi,
			uint64_t *dst)
{
	char lo_text[32], hi_text[32];
	uint64_t ms;

	if (cfgi_want_duration(x, key, v, &ms) < 0)
		return;
	if (ms >= lo && ms <= hi) {
		*dst = ms;
		return;
	}
	cfgi_fmt_duration(lo, lo_text, sizeof lo_text);
	cfgi_fmt_duration(hi, hi_text, sizeof hi_text);
	cfgi_err(x, line_of(v), "%s: %s is outside %s-%s", key, text_of(v), lo_text, hi_text);
}

static void h_interval(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct sftp_walk *w = obj;

	want_period(x, key, v, CFG_SFTP_INTERVAL_MIN_MS, CFG_SFTP_INTERVAL_MAX_MS,
		    &w->s->interval_ms);
}

static void h_timeout(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct sftp_walk *w = obj;

	want_period(x, key, v, CFG_SFTP_TIMEOUT_MIN_MS, CFG_SFTP_TIMEOUT_MAX_MS, &w->s->timeout_ms);
}

static void h_after(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	static const char *const words[] = {"move", "delete", NULL};
	struct sftp_walk *w = obj;
	int i = cfgi_want_enum(x, key, v, words);

	if (i >= 0)
		w->s->after = i == 0 ? CFG_SFTP_MOVE : CFG_SFTP_DELETE;
}

static void h_split(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	static const char *const words[] = {"none", "hl7-batch", NULL};
	struct sftp_walk *w = obj;
	int i = cfgi_want_enum(x, key, v, words);

	if (i >= 0)
		w->s->split = i == 0 ? CFG_SPLIT_NONE : CFG_SPLIT_HL7_BATCH;
}

static void h_content_type(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct sftp_walk *w = obj;
	const char *s = cfgi_want_scalar(x, key, v, "a media type");

	if (!s)
		return;
	if (strlen(s) > CFG_CONTENT_TYPE_MAX) {
		cfgi_err(x, line_of(v), "%s: longer than %d bytes", key, CFG_CONTENT_TYPE_MAX);
		return;
	}
	if (has_control(s) || !content_type_ok(s)) {
		cfgi_err(x, line_of(v),
			 "%s: expected type/subtype with optional '; name=value' parameters, got "
			 "'%s'",
			 key, s);
		return;
	}
	w->content_type_set = cfgi_set_string(x, &w->s->content_type, s) == 0;
}

static void h_max_file(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct sftp_walk *w = obj;

	(void)cfgi_want_size(x, key, v, 1, CFG_SFTP_MAX_FILE_LIMIT, &w->s->max_file);
}

static void h_pull_only(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	(void)obj;
	cfgi_err(x, line_of(v), "%s: " PULL_ONLY_TEXT, key);
}

/* The push table knows the same keys in the same order (one key, one bit). */
static const struct key_spec pull_keys[] = {
    {"server", h_server, 1},	   {"user", h_user, 1},	      {"key", h_key, 1},
    {"host_keys", h_host_keys, 1}, {"dir", h_dir, 1},	      {"glob", h_glob, 0},
    {"interval", h_interval, 0},   {"after", h_after, 0},     {"done_dir", h_side_dir, 0},
    {"error_dir", h_side_dir, 0},  {"split", h_split, 0},     {"content_type", h_content_type, 0},
    {"max_file", h_max_file, 0},   {"timeout", h_timeout, 0},
};

static const struct key_spec push_keys[] = {
    {"server", h_server, 1},	   {"user", h_user, 1},	      {"key", h_key, 1},
    {"host_keys", h_host_keys, 1}, {"dir", h_dir, 1},	      {"glob", h_pull_only, 0},
    {"interval", h_pull_only, 0},  {"after", h_pull_only, 0}, {"done_dir", h_pull_only, 0},
    {"error_dir", h_pull_only, 0}, {"split", h_pull_only, 0}, {"content_type", h_pull_only, 0},
    {"max_file", h_max_file, 0},   {"timeout", h_timeout, 0},
};

_Static_assert(NKEYS(pull_keys) == NKEYS(push_keys), "one key, one bit");

/* ---------- after the walk ---------- */

/* done_dir and error_dir: defaults, relative values under dir, and three
 * distinct folders, so that no file is taken twice or lost in a move. */
static void finish_side_dirs(struct ctx *x, struct sftp_walk *w)
{
	struct cfg_sftp *s = w->s;
	char *raw;

	if (s->after == CFG_SFTP_DELETE && w->done_line) {
		cfgi_err(x, w->done_line, "done_dir: has no use with after: delete");
		w->done_line = 0;
	}
	if (!w->b->dir_ok)
		return; /* a relative value has nothing to lie under */
	if (s->after == CFG_SFTP_DELETE) {
		free(s->done_dir);
		s->done_dir = NULL;
	} else {
		raw = s->done_dir;
		s->done_dir = NULL;
		(void)want_remote_dir(x, "done_dir", w->done_line ? w->done_line : w->b->dir_line,
				      raw ? raw : DEFAULT_DONE_DIR, s->dir, &s->done_dir);
		free(raw);
	}
	raw = s->error_dir;
	s->error_dir = NULL;
	(void)want_remote_dir(x, "error_dir", w->error_line ? w->error_line : w->b->dir_line,
			      raw ? raw : DEFAULT_ERROR_DIR, s->dir, &s->error_dir);
	free(raw);
	if (s->done_dir && strcmp(s->done_dir, s->dir) == 0)
		cfgi_err(x, w->done_line ? w->done_line : w->b->dir_line,
			 "done_dir: %s is the same folder as dir", s->done_dir);
	if (s->error_dir && strcmp(s->error_dir, s->dir) == 0)
		cfgi_err(x, w->error_line ? w->error_line : w->b->dir_line,
			 "error_dir: %s is the same folder as dir", s->error_dir);
	else if (s->error_dir && s->done_dir && strcmp(s->error_dir, s->done_dir) == 0)
		cfgi_err(x, w->error_line ? w->error_line : w->done_line,
			 "error_dir: %s is the same folder as done_dir", s->error_dir);
}

static void finish_pull(struct ctx *x, struct sftp_walk *w)
{
	struct cfg_sftp *s = w->s;

	if (!s->glob)
		(void)cfgi_set_string(x, &s->glob, DEFAULT_GLOB);
	if (!w->content_type_set)
		(void)cfgi_set_string(x, &s->content_type,
				      s->split == CFG_SPLIT_HL7_BATCH ? CTYPE_HL7 : CTYPE_OCTETS);
	finish_side_dirs(x, w);
}

void cfgi_want_sftp(struct ctx *x, const char *key, yaml_node_t *v, struct cfg_sftp **out,
		    struct sftp_build *b)
{
	const struct key_spec *specs = b->push ? push_keys : pull_keys;
	struct sftp_walk w = {.b = b};
	uint64_t seen;

	if (!cfgi_want_mapping(x, key, v))
		return;
	if (!(w.s = *out = calloc(1, sizeof **out))) {
		x->oom = 1;
		return;
	}
	b->s = w.s;
	w.s->line = b->line;
	w.s->max_file = CFG_SFTP_MAX_FILE_DEFAULT;
	w.s->timeout_ms = CFG_SFTP_TIMEOUT_DEFAULT_MS;
	if (!b->push) {
		w.s->interval_ms = CFG_SFTP_INTERVAL_DEFAULT_MS;
		w.s->after = CFG_SFTP_MOVE;
		w.s->split = CFG_SPLIT_NONE;
	}
	seen = cfgi_walk_mapping(x, v, specs, NKEYS(pull_keys), "in sftp", &w);
	cfgi_need_keys(x, v, specs, NKEYS(pull_keys), seen, key);
	if (!b->push)
		finish_pull(x, &w);
}

/* ---------- rules across sections ---------- */

static int same_server(const struct cfg_sftp *a, const struct cfg_sftp *b)
{
	return a->server_len == b->server_len && memcmp(&a->server, &b->server, a->server_len) == 0;
}

static void owner_label(const struct sftp_build *b, char *buf, size_t cap)
{
	const char *kind = b->push ? "destination" : "integration";

	if (b->owner && *b->owner)
		snprintf(buf, cap, "%s '%s'", kind, *b->owner);
	else
		snprintf(buf, cap, "%s #%zu", kind, b->index + 1);
}

/* One folder, two owners: p comes first in the file, or is the pull side. */
static void check_pair(struct ctx *x, const struct sftp_build *pull, const struct sftp_build *q)
{
	char server[SERVER_TEXT_MAX], who[CFG_NAME_MAX + 32];

	cfgi_fmt_server(q->s, server, sizeof server, 1);
	owner_label(pull, who, sizeof who);
	if (q->push)
		cfgi_err(x, q->dir_line,
			 "dir: %s on %s is polled by %s (line %d): the edge would pull its own "
			 "files back",
			 q->s->dir, server, who, pull->dir_line);
	else
		cfgi_err(x, q->dir_line,
			 "dir: %s on %s is already polled by %s (line %d): two pull channels "
			 "would take each other's files",
			 q->s->dir, server, who, pull->dir_line);
}

static int usable(const struct sftp_build *b)
{
	return b && b->s && b->server_ok && b->dir_ok;
}

void cfgi_check_sftp_dirs(struct ctx *x, const struct sftp_build *const *b, size_t n)
{
	size_t i, j;

	for (j = 0; j < n; j++) {
		if (!usable(b[j]))
			continue;
		for (i = 0; i < n; i++) {
			if (i == j || !usable(b[i]) || b[i]->push || (!b[j]->push && i > j))
				continue;
			if (!same_server(b[i]->s, b[j]->s) || strcmp(b[i]->s->dir, b[j]->s->dir))
				continue;
			check_pair(x, b[i], b[j]);
			break;
		}
	}
}

void cfgi_free_sftp(struct cfg_sftp *s)
{
	size_t i;

	if (!s)
		return;
	free(s->server_text);
	free(s->user);
	free(s->key);
	for (i = 0; i < s->nhost_keys; i++)
		free(s->host_keys[i]);
	free(s->host_keys);
	free(s->dir);
	free(s->glob);
	free(s->done_dir);
	free(s->error_dir);
	free(s->content_type);
	free(s);
}
