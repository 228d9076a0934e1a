/*
 * Inside the config library, in three layers (calls go down only):
 *   config.c         loading, the top level, integrations;
 *   config_tunnel.c  gate, charon, supervisor, tunnels, destinations, https,
 *                    and the rules that tie them and the integrations to
 *                    the tunnels;
 *   config_sftp.c    the `sftp:` sections of integrations (pull) and
 *                    destinations (push), and the rule across their folders;
 *   config_walk.c    the error list, the value parsers and the walker.
 * Included only by config*.c.
 */
#ifndef CONFIG_INT_H
#define CONFIG_INT_H

#include "mllp-bridge/config.h"

#include <stddef.h>
#include <stdint.h>
#include <yaml.h>

#define MS_SECOND 1000ull
#define MS_MINUTE (60 * MS_SECOND)
#define MS_HOUR	  (60 * MS_MINUTE)
#define MS_DAY	  (24 * MS_HOUR)

#define NKEYS(a) (sizeof(a) / sizeof *(a))

struct err_entry {
	int line;
	size_t seq;
	char *msg;
};

struct integ_build;
struct dest_build;

struct ctx {
	const char *name;
	const char *text; /* the YAML, to find the line of a reader error */
	size_t len;
	enum cfg_role role; /* whose credentials check the files named */
	yaml_document_t *doc;
	struct err_entry *e; /* CFG_MAX_ERRORS entries, allocated on first error */
	size_t n;
	int overflow; /* errors were dropped past CFG_MAX_ERRORS */
	int oom;
	/* for the rules across sections, checked once the whole file is walked */
	struct integ_build *integ; /* one per integration; build() frees it */
	size_t ninteg;
	struct dest_build *dests; /* one per destination; cfgi_tunnel_build_free() */
	size_t ndests;
	int gate_line;	       /* the `gate:` value, 0 when absent */
	int gate_bad;	       /* ... which said neither closed nor open */
	int tunnels_line;      /* the `tunnels:` value, 0 when absent */
	int tunnels_bad;       /* some tunnel's traffic selectors could not be read */
	int dests_line;	       /* the `destinations:` value, 0 when absent */
	int dests_bad;	       /* some destination has no valid name */
	int https_line;	       /* the `https:` mapping, 0 when absent */
	int https_listen_line; /* https.listen's value, 0 unless it parsed */
	int tokens_line;       /* https.tokens_file's value, 0 unless it opened */
};

typedef void (*key_fn)(struct ctx *x, const char *key, yaml_node_t *v, void *obj);

/* One known key of a mapping. fn NULL: the key is accepted and skipped. */
struct key_spec {
	const char *key;
	key_fn fn;
	int required;
};

/* Where an sftp section's parts were found, for the rules across sections. */
struct sftp_build {
	struct cfg_sftp *s; /* NULL: no sftp section was read */
	char *const *owner; /* the integration's or destination's name (NULL when bad) */
	size_t index;	    /* of the integration or destination */
	int push;	    /* a destination's: the pull-only keys are refused */
	int line;	    /* the `sftp:` key's */
	int server_line, server_ok;
	int dir_line, dir_ok;
};

/* Where an integration's parts were found, for rules that span keys. */
struct integ_build {
	struct cfg_integration *in;
	size_t index;
	int name_line, listen_line, cert_line, key_line, url_line;
	int name_ok, listen_ok, sources_ok, url_ok;
	yaml_node_t *sources;  /* the sequence, once read: item i is in->sources[i] */
	yaml_node_t *upstream; /* the mapping, once seen */
	uint64_t upstream_seen;
	struct sftp_build sftp; /* a pull channel's, when it has `sftp:` */
};

static inline int line_of(const yaml_node_t *n)
{
	return (int)n->start_mark.line + 1;
}

static inline const char *text_of(const yaml_node_t *n)
{
	return (const char *)n->data.scalar.value;
}

static inline yaml_node_t *node_at(struct ctx *x, int index)
{
	return yaml_document_get_node(x->doc, index);
}

static inline size_t seq_len(const yaml_node_t *n)
{
	return (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
}

static inline yaml_node_t *seq_item(struct ctx *x, const yaml_node_t *seq, size_t i)
{
	return node_at(x, seq->data.sequence.items.start[i]);
}

/* ---- config_walk.c: errors, values, the walker ---- */

/* Records "NAME:LINE: message"; sets x->oom instead when memory runs out. */
__attribute__((format(printf, 3, 4))) void cfgi_err(struct ctx *x, int line, const char *fmt, ...);
/* The same for a file the configuration names (a tokens file): "FILE:LINE:
 * message", sorted as if found at line `at` of the configuration. */
__attribute__((format(printf, 5, 6))) void cfgi_err_in(struct ctx *x, int at, const char *file,
						       int line, const char *fmt, ...);
/* Hands the collected messages to errs (may be NULL), sorted into file
 * order; frees them in x. Returns 0 or -ENOMEM. */
int cfgi_errors_finish(struct ctx *x, struct cfg_errors *errs);
/* Replaces control characters, which would garble a terminal or a log. */
void cfgi_sanitize(char *s);

/* Reads decimal digits at *sp, advancing it. Signs and empty input are -EINVAL. */
int cfgi_parse_digits(const char **sp, uint64_t *out);
/* Do the first `bits` bits of a and b agree? */
int cfgi_prefix_equal(const uint8_t *a, const uint8_t *b, unsigned bits);
/* Writes ms as a user writes it: "30s", "5m"; bytes likewise: "16MiB". */
void cfgi_fmt_duration(uint64_t ms, char *buf, size_t cap);
void cfgi_fmt_size(uint64_t v, char *buf, size_t cap);
/* An empty value, ~ or null, unquoted: YAML's null. */
int cfgi_is_null(const yaml_node_t *n);

/* Each want_* reports what is wrong with v at its line and returns NULL or
 * a negative errno; on success the value is stored (strings: strdup'ed into
 * *dst, the old one freed). */
const char *cfgi_want_scalar(struct ctx *x, const char *key, yaml_node_t *v, const char *what);
int cfgi_set_string(struct ctx *x, char **dst, const char *s);
int cfgi_want_string(struct ctx *x, const char *key, yaml_node_t *v, char **dst);
/* Also opens the file with the caller's credentials: a readable regular file. */
int cfgi_want_file(struct ctx *x, const char *key, yaml_node_t *v, char **dst);
/* Above zero and at most CFG_DURATION_MAX_MS. */
int cfgi_want_duration(struct ctx *x, const char *key, yaml_node_t *v, uint64_t *ms);
/* Returns the word's index in the NULL-terminated list, or -1. */
int cfgi_want_enum(struct ctx *x, const char *key, yaml_node_t *v, const char *const *words);
int cfgi_want_bool(struct ctx *x, const char *key, yaml_node_t *v, int *dst);
/* An integer from 1 to max. */
int cfgi_want_count(struct ctx *x, const char *key, yaml_node_t *v, unsigned max, unsigned *dst);
/* A size from lo to hi bytes. */
int cfgi_want_size(struct ctx *x, const char *key, yaml_node_t *v, uint64_t lo, uint64_t hi,
		   uint64_t *dst);
/* An mllp section's `release` (1 or 2) and `max_frame` (MLLP_MIN_FRAME_LIMIT
 * to MLLP_MAX_FRAME_LIMIT), for integrations and destinations alike. */
int cfgi_want_release(struct ctx *x, const char *key, yaml_node_t *v, int *dst);
int cfgi_want_max_frame(struct ctx *x, const char *key, yaml_node_t *v, size_t *dst);
/* Returns 1 for a mapping, else 0 after saying so. */
int cfgi_want_mapping(struct ctx *x, const char *key, yaml_node_t *v);
/* Returns 1 for a sequence of min..max entries, else 0 after saying so;
 * `what` names the entries in the message ("CIDRs"). */
int cfgi_want_sequence(struct ctx *x, const char *key, yaml_node_t *v, size_t min, size_t max,
		       const char *what);
int cfgi_want_cidr(struct ctx *x, const char *key, yaml_node_t *v, struct cfg_cidr *c);
/* A sequence of 1..max CIDRs into *out (caller frees) and *n, the ones that
 * parsed; returns 1 when all did. */
int cfgi_want_cidrs(struct ctx *x, const char *key, yaml_node_t *v, size_t max,
		    struct cfg_cidr **out, size_t *n);
/* 1..CFG_NAME_MAX characters of [A-Za-z0-9_-]. */
int cfgi_want_name(struct ctx *x, const char *key, yaml_node_t *v, char **dst);

/* The key node called key in map (the first one), or NULL. */
yaml_node_t *cfgi_find_key(struct ctx *x, yaml_node_t *map, const char *key);

/* Calls each known key's handler in file order, reports unknown and duplicate
 * keys. Returns a mask of the keys seen (bit i: specs[i]). */
uint64_t cfgi_walk_mapping(struct ctx *x, yaml_node_t *map, const struct key_spec *specs, size_t n,
			   const char *where, void *obj);
/* Reports required keys absent from map, at the line where map starts. */
void cfgi_need_keys(struct ctx *x, yaml_node_t *map, const struct key_spec *specs, size_t n,
		    uint64_t seen, const char *prefix);

/* ---- config_sftp.c: SFTP file channels ---- */

/* Reads an `sftp:` mapping into a new *out (replacing nothing: *out must be
 * NULL; freed with cfgi_free_sftp), checking everything inside it. b->push,
 * b->owner and b->index are set by the caller; the rest is filled here. */
void cfgi_want_sftp(struct ctx *x, const char *key, yaml_node_t *v, struct cfg_sftp **out,
		    struct sftp_build *b);
/* Two pull channels on one server folder, or a push channel writing where a
 * pull channel polls: b holds n sections (NULL entries skipped). */
void cfgi_check_sftp_dirs(struct ctx *x, const struct sftp_build *const *b, size_t n);
/* The server as "addr:port" or "[addr]:port", and the address alone. */
void cfgi_fmt_server(const struct cfg_sftp *s, char *buf, size_t cap, int with_port);
void cfgi_free_sftp(struct cfg_sftp *s);

/* ---- config_tunnel.c: the tunnel side ---- */

void cfgi_h_gate(struct ctx *x, const char *key, yaml_node_t *v, void *obj);
void cfgi_h_charon(struct ctx *x, const char *key, yaml_node_t *v, void *obj);
void cfgi_h_supervisor(struct ctx *x, const char *key, yaml_node_t *v, void *obj);
void cfgi_h_tunnels(struct ctx *x, const char *key, yaml_node_t *v, void *obj);
void cfgi_h_destinations(struct ctx *x, const char *key, yaml_node_t *v, void *obj);
void cfgi_h_https(struct ctx *x, const char *key, yaml_node_t *v, void *obj);

/* Fills the defaults of gate, charon and supervisor, before the walk. */
void cfgi_tunnel_defaults(struct ctx *x, struct cfg *c);
/* The rules across sections, after the walk: MLLP inside the tunnels, HTTPS
 * (the upstreams and the outbound API's listener) outside them, a closed
 * gate that has tunnels to open it, an https listener with destinations,
 * and its tokens file. */
void cfgi_check_tunnel_rules(struct ctx *x, const struct cfg *c);
/* Frees what the tunnel side kept in x for the rules across sections. */
void cfgi_tunnel_build_free(struct ctx *x);
/* Frees what cfgi_tunnel_defaults and the handlers above put in c. */
void cfgi_free_tunnel_side(struct cfg *c);

#endif
