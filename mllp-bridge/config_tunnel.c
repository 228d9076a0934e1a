/*
 * The tunnel side of appliance.yaml: gate, charon, supervisor, tunnels and
 * destinations, and the rules that tie the integrations to the tunnels
 * (plain MLLP only inside them, HTTPS never through them). The supervisor
 * acts on these sections; the bridge reads them too, so that both processes
 * judge the file the same way. Only the tunnel secrets are role-dependent:
 * the supervisor checks that it can read them, the bridge (which must not
 * be able to) leaves them alone.
 */
#include "mllp-bridge/config.h"
#include "mllp-bridge/config_int.h"
#include "mllp-bridge/mllp.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define DEFAULT_VICI	       "unix:///run/charon.vici"
#define DEFAULT_CHARON_BINARY  "/usr/lib/ipsec/charon"
#define DEFAULT_CONTROL_SOCKET "/run/appliance/control.sock"
#define DEFAULT_BRIDGE_USER    "mllp-bridge"
#define DEFAULT_HEARTBEAT_MS   (30 * MS_SECOND)
#define DEFAULT_DPD_DELAY_MS   (30 * MS_SECOND)
#define DEFAULT_ACK_TIMEOUT_MS (30 * MS_SECOND)
#define DEFAULT_DEST_IDLE_MS   (2 * MS_HOUR)
#define DEFAULT_MAX_ATTEMPTS   10
#define DEFAULT_MAX_BODY       (1u << 20)
#define MAX_BODY_MIN	       1024u		    /* https.max_body: no HL7 message is smaller */
#define MAX_BODY_LIMIT	       MLLP_MAX_FRAME_LIMIT /* the body becomes one MLLP frame */
#define TOKENS_FILE_MAX	       (1u << 20)	    /* https.tokens_file is refused above this */
#define TOKEN_MIN	       16		    /* characters in a bearer token */
#define TOKEN_MAX	       256
#define ECHO_MAX	       80 /* characters of a tokens file's value shown in a message */
#define IKE_VERSION	       2
#define DH_MODP2048	       14
#define DH_ECP521	       21
#define SUN_PATH_MAX	       (sizeof(((struct sockaddr_un *)0)->sun_path) - 1)
#define DNS_NAME_MAX	       253
#define DNS_LABEL_MAX	       63
#define ACCOUNT_NAME_MAX       32  /* user and group names, as useradd takes them */
#define NAMES_TEXT_MAX	       160 /* "'a', 'b'": children named in one message */
#define ALLOWED_GROUPS	       "only modp2048 (14) and ecp521 (21) are allowed"

/* ---------- DH groups ---------- */

struct dh_token {
	const char *name;
	int group;
};

/* strongSwan 5.9's DH keywords (proposal_keywords_static.txt; case matters
 * there too), with IANA's numbers and strongSwan's private-use ones. */
static const struct dh_token dh_tokens[] = {
    {"modp768", 1},	  {"modp1024", 2},	{"modp1536", 5},   {"modp2048", 14},
    {"modp3072", 15},	  {"modp4096", 16},	{"modp6144", 17},  {"modp8192", 18},
    {"ecp256", 19},	  {"ecp384", 20},	{"ecp521", 21},	   {"modp1024s160", 22},
    {"modp2048s224", 23}, {"modp2048s256", 24}, {"ecp192", 25},	   {"ecp224", 26},
    {"ecp224bp", 27},	  {"ecp256bp", 28},	{"ecp384bp", 29},  {"ecp512bp", 30},
    {"curve25519", 31},	  {"x25519", 31},	{"curve448", 32},  {"x448", 32},
    {"modpnull", 1024},	  {"ntru112", 1030},	{"ntru128", 1031}, {"ntru192", 1032},
    {"ntru256", 1033},	  {"newhope128", 1040},
};

int cfg_dh_group(const char *token)
{
	size_t i;

	for (i = 0; i < NKEYS(dh_tokens); i++)
		if (strcmp(token, dh_tokens[i].name) == 0)
			return dh_tokens[i].group;
	return 0;
}

/* A proposal is lowercase algorithm keywords joined by '-'. */
static int proposal_syntax_ok(const char *s)
{
	size_t len = strlen(s);

	return len > 0 && strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789_-") == len &&
	       s[0] != '-' && s[len - 1] != '-' && !strstr(s, "--");
}

/* Rule of invariant 5: every proposal names DH 14 or 21 and nothing else;
 * an ESP proposal without a group would make PFS optional. Returns 0 when
 * the proposal passes. */
static int check_proposal(struct ctx *x, const char *key, yaml_node_t *v, const char *s, int esp)
{
	char tok[CFG_VALUE_MAX + 1];
	const char *p = s;
	int allowed = 0;

	if (strcmp(s, "default") == 0) {
		cfgi_err(x, line_of(v), "%s: 'default' includes other DH groups: " ALLOWED_GROUPS,
			 key);
		return -EINVAL;
	}
	if (!proposal_syntax_ok(s)) {
		cfgi_err(x, line_of(v),
			 "%s: '%s' is not a strongSwan proposal (lowercase algorithm names "
			 "joined by '-')",
			 key, s);
		return -EINVAL;
	}
	while (*p) {
		size_t n = strcspn(p, "-");
		int group;

		memcpy(tok, p, n);
		tok[n] = '\0';
		p += n + (p[n] == '-');
		group = cfg_dh_group(tok);
		if (strcmp(tok, "modpnone") == 0) {
			cfgi_err(x, line_of(v),
				 "%s: '%s' uses modpnone (no DH group: PFS becomes optional): "
				 "" ALLOWED_GROUPS,
				 key, s);
			return -EINVAL;
		}
		if (group != 0 && group != DH_MODP2048 && group != DH_ECP521) {
			cfgi_err(x, line_of(v), "%s: '%s' uses %s (DH %d): " ALLOWED_GROUPS, key, s,
				 tok, group);
			return -EINVAL;
		}
		allowed += group != 0;
	}
	if (allowed == 0) {
		cfgi_err(x, line_of(v), "%s: '%s' names no DH group%s: add modp2048 or ecp521", key,
			 s, esp ? " (PFS)" : "");
		return -EINVAL;
	}
	return 0;
}

/* ---------- names and addresses ---------- */

static int dns_name_ok(const char *s)
{
	size_t len = strlen(s), i = 0;
	int digits_only = 0;

	if (len == 0 || len > DNS_NAME_MAX ||
	    strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.-") != len)
		return 0;
	while (i < len) {
		size_t n = strcspn(s + i, ".");

		if (n == 0 || n > DNS_LABEL_MAX || s[i] == '-' || s[i + n - 1] == '-')
			return 0;
		digits_only = strspn(s + i, "0123456789") >= n;
		i += n + 1;
	}
	/* "198.51.100.300" is a mistyped address, not a name to resolve */
	return s[len - 1] != '.' && !digits_only;
}

static int ip_literal_ok(const char *s)
{
	unsigned char buf[sizeof(struct in6_addr)];

	return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

/* The user and group names that useradd and groupadd accept. */
static int account_name_ok(const char *s)
{
	size_t len = strlen(s);

	return len > 0 && len <= ACCOUNT_NAME_MAX && s[0] != '-' &&
	       strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") ==
		   len;
}

static int want_path(struct ctx *x, const char *key, yaml_node_t *v, char **dst)
{
	const char *s = cfgi_want_scalar(x, key, v, "an absolute path");

	if (!s)
		return -EINVAL;
	if (s[0] != '/') {
		cfgi_err(x, line_of(v), "%s: expected an absolute path, got '%s'", key, s);
		return -EINVAL;
	}
	return cfgi_set_string(x, dst, s);
}

static int socket_path_ok(struct ctx *x, const char *key, yaml_node_t *v, const char *path)
{
	if (strlen(path) <= SUN_PATH_MAX)
		return 1;
	cfgi_err(x, line_of(v), "%s: the socket path is longer than %zu bytes", key,
		 (size_t)SUN_PATH_MAX);
	return 0;
}

/* "tcp://host:port", host an IPv4 address, [IPv6] or a DNS name. */
static int tcp_uri_ok(const char *s)
{
	char host[DNS_NAME_MAX + 1];
	const char *h = s + 6, *end, *p;
	uint64_t port;
	size_t n;

	if (*h == '[') {
		end = strchr(++h, ']');
		if (!end || end[1] != ':')
			return 0;
		p = end + 2;
	} else {
		end = strrchr(h, ':');
		if (!end)
			return 0;
		p = end + 1;
	}
	n = (size_t)(end - h);
	if (n == 0 || n >= sizeof host)
		return 0;
	memcpy(host, h, n);
	host[n] = '\0';
	if (cfgi_parse_digits(&p, &port) < 0 || *p != '\0' || port == 0 || port > 65535)
		return 0;
	if (s[6] == '[')
		return inet_pton(AF_INET6, host, &(struct in6_addr){0}) == 1;
	return inet_pton(AF_INET, host, &(struct in_addr){0}) == 1 || dns_name_ok(host);
}

/* ---------- gate ---------- */

void cfgi_h_gate(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	static const char *const words[] = {"closed", "open", NULL};
	struct cfg *c = obj;
	int i = cfgi_want_enum(x, key, v, words);

	x->gate_line = line_of(v);
	if (i < 0)
		x->gate_bad = 1;
	else
		c->gate = i == 0 ? CFG_GATE_CLOSED : CFG_GATE_OPEN;
}

/* ---------- charon ---------- */

static void h_vici(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct cfg_charon *ch = obj;
	const char *s = cfgi_want_scalar(x, key, v, "a vici URI");

	if (!s)
		return;
	if (strncmp(s, "unix://", 7) == 0 && s[7] == '/' && s[8] != '\0') {
		if (socket_path_ok(x, key, v, s + 7))
			(void)cfgi_set_string(x, &ch->vici, s);
		return;
	}
	if (strncmp(s, "tcp://", 6) == 0 && tcp_uri_ok(s)) {
		(void)cfgi_set_string(x, &ch->vici, s);
		return;
	}
	cfgi_err(x, line_of(v), "%s: expected unix:///ABSOLUTE/PATH or tcp://HOST:PORT, got '%s'",
		 key, s);
}

static void h_charon_start(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct cfg_charon *ch = obj;

	(void)cfgi_want_bool(x, key, v, &ch->start);
}

static void h_charon_path(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct cfg_charon *ch = obj;

	(void)want_path(x, key, v, strcmp(key, "binary") == 0 ? &ch->binary : &ch->strongswan_conf);
}

static const struct key_spec charon_keys[] = {
    {"vici", h_vici, 0},
    {"start", h_charon_start, 0},
    {"binary", h_charon_path, 0},
    {"strongswan_conf", h_charon_path, 0},
};

void cfgi_h_charon(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct cfg *c = obj;

	if (cfgi_want_mapping(x, key, v))
		cfgi_walk_mapping(x, v, charon_keys, NKEYS(charon_keys), "in charon", &c->charon);
}

/* ---------- supervisor ---------- */

static void h_control_socket(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct cfg_supervisor *s = obj;
	char *path = NULL;

	if (want_path(x, key, v, &path) == 0 && socket_path_ok(x, key, v, path)) {
		free(s->control_socket);
		s->control_socket = path;
		return;
	}
	free(path);
}

static void h_account(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct cfg_supervisor *s = obj;
	const char *name = cfgi_want_scalar(x, key, v, "a name");

	if (!name)
		return;
	if (!account_name_ok(name)) {
		cfgi_err(x, line_of(v),
			 "%s: '%s' is not 1-%d characters of A-Z a-z 0-9 . _ - (not starting "
			 "with -)",
			 key, name, ACCOUNT_NAME_MAX);
		return;
	}
	(void)cfgi_set_string(
	    x, strcmp(key, "bridge_user") == 0 ? &s->bridge_user : &s->control_group, name);
}

static void h_bridge_path(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct cfg_supervisor *s = obj;

	(void)want_path(x, key, v, &s->bridge_path);
}

static void h_heartbeat(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct cfg_supervisor *s = obj;

	(void)cfgi_want_duration(x, key, v, &s->heartbeat_ms);
}

static const struct key_spec supervisor_keys[] = {
    {"control_socket", h_control_socket, 0}, {"control_group", h_account, 0},
    {"bridge_user", h_account, 0},	     {"bridge_path", h_bridge_path, 0},
    {"heartbeat", h_heartbeat, 0},
};

void cfgi_h_supervisor(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct cfg *c = obj;

	if (cfgi_want_mapping(x, key, v))
		cfgi_walk_mapping(x, v, supervisor_keys, NKEYS(supervisor_keys), "in supervisor",
				  &c->supervisor);
}

/* ---------- tunnels ---------- */

struct child_build {
	struct cfg_child *ch;
	struct tunnel_build *tb;
	size_t index;
	int name_line, name_ok;
};

struct tunnel_build {
	struct cfg_tunnel *t;
	size_t index;
	int name_line, name_ok;
	int source_bad;
	yaml_node_t *auth; /* the mapping, once seen */
	uint64_t auth_seen;
	struct child_build *cb; /* nchildren of them */
};

static const char *tunnel_label(const struct tunnel_build *tb, char *buf, size_t cap)
{
	if (tb->name_ok)
		snprintf(buf, cap, "tunnel '%s'", tb->t->name);
	else
		snprintf(buf, cap, "tunnel #%zu", tb->index + 1);
	return buf;
}

static const char *child_label(const struct child_build *cb, char *buf, size_t cap)
{
	char tl[CFG_NAME_MAX + 16];

	tunnel_label(cb->tb, tl, sizeof tl);
	if (cb->name_ok)
		snprintf(buf, cap, "%s child '%s'", tl, cb->ch->name);
	else
		snprintf(buf, cap, "%s child #%zu", tl, cb->index + 1);
	return buf;
}

/* Reads a sequence of strings, each passing check (when given), into *out. */
static void want_strings(struct ctx *x, const char *key, yaml_node_t *v, size_t max,
			 const char *what,
			 int (*check)(struct ctx *, const char *, yaml_node_t *, const char *, int),
			 int arg, char ***out, size_t *n)
{
	size_t len, i;

	if (!cfgi_want_sequence(x, key, v, 1, max, what))
		return;
	len = seq_len(v);
	*out = calloc(len, sizeof **out);
	if (!*out) {
		x->oom = 1;
		return;
	}
	for (i = 0; i < len; i++) {
		yaml_node_t *item = seq_item(x, v, i);
		const char *s = cfgi_want_scalar(x, key, item, "a string");

		if (!s || (check && check(x, key, item, s, arg) < 0))
			continue;
		if (cfgi_set_string(x, &(*out)[*n], s) == 0)
			(*n)++;
	}
}

static int check_addr(struct ctx *x, const char *key, yaml_node_t *v, const char *s, int unused)
{
	(void)unused;
	if (ip_literal_ok(s) || dns_name_ok(s))
		return 0;
	cfgi_err(x, line_of(v), "%s: expected an IP address or a host name, got '%s'", key, s);
	return -EINVAL;
}

static void h_addrs(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct tunnel_build *tb = obj;
	int local = strcmp(key, "local_addrs") == 0;

	want_strings(x, key, v, CFG_MAX_ADDRS, "addresses", check_addr, 0,
		     local ? &tb->t->local_addrs : &tb->t->remote_addrs,
		     local ? &tb->t->nlocal_addrs : &tb->t->nremote_addrs);
}

static void h_tunnel_name(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct tunnel_build *tb = obj;

	tb->name_line = line_of(v);
	tb->name_ok = cfgi_want_name(x, key, v, &tb->t->name) == 0;
}

/* Plain YAML gives 2 as the scalar "2"; IKEv1 and anything else is refused. */
static void h_version(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	const char *s = cfgi_want_scalar(x, key, v, "2");

	(void)obj;
	if (s && strcmp(s, "2") != 0)
		cfgi_err(x, line_of(v), "%s: only IKEv2 is allowed: expected 2, got '%s'", key, s);
}

static void h_identity(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct tunnel_build *tb = obj;
	char **dst = strcmp(key, "local_id") == 0 ? &tb->t->local_id : &tb->t->remote_id;
	const char *s = cfgi_want_scalar(x, key, v, "an IKE identity");

	if (!s)
		return;
	if (!*s) {
		cfgi_err(x, line_of(v), "%s: must not be empty", key);
		return;
	}
	(void)cfgi_set_string(x, dst, s);
}

static void h_ike_proposals(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct tunnel_build *tb = obj;

	want_strings(x, key, v, CFG_MAX_PROPOSALS, "proposals", check_proposal, 0,
		     &tb->t->ike_proposals, &tb->t->nike_proposals);
}

static void h_dpd_delay(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct tunnel_build *tb = obj;

	(void)cfgi_want_duration(x, key, v, &tb->t->dpd_delay_ms);
}

/* Opens path once: a regular file whose secret (without one final line
 * break) is CFG_PSK_MIN to CFG_PSK_MAX bytes. */
static int check_psk(struct ctx *x, const char *key, yaml_node_t *v, const char *path)
{
	char buf[CFG_PSK_MAX + 3];
	struct stat st;
	size_t len = 0;
	ssize_t r;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);

	if (fd < 0) {
		cfgi_err(x, line_of(v), "%s: cannot read %s: %s", key, path, strerror(errno));
		return -EACCES;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		cfgi_err(x, line_of(v), "%s: %s is not a regular file", key, path);
		return -EINVAL;
	}
	while (len < sizeof buf && (r = read(fd, buf + len, sizeof buf - len)) != 0) {
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			cfgi_err(x, line_of(v), "%s: cannot read %s: %s", key, path,
				 strerror(errno));
			close(fd);
			return -EIO;
		}
		len += (size_t)r;
	}
	close(fd);
	if (len > 0 && buf[len - 1] == '\n')
		len -= len > 1 && buf[len - 2] == '\r' ? 2 : 1;
	if (len == 0)
		cfgi_err(x, line_of(v), "%s: %s is empty", key, path);
	else if (len < CFG_PSK_MIN)
		cfgi_err(x, line_of(v), "%s: the PSK in %s is %zu bytes: at least %d are required",
			 key, path, len, CFG_PSK_MIN);
	else if (len > CFG_PSK_MAX)
		cfgi_err(x, line_of(v), "%s: the PSK in %s is longer than %d bytes", key, path,
			 CFG_PSK_MAX);
	else
		return 0;
	return -EINVAL;
}

/* The supervisor reads these whole and sends them to charon: a file it
 * would refuse at load time is refused here first. */
static void check_auth_size(struct ctx *x, const char *key, yaml_node_t *v, const char *path)
{
	struct stat st;

	if (stat(path, &st) == 0 && st.st_size > CFG_AUTH_FILE_MAX)
		cfgi_err(x, line_of(v), "%s: %s is larger than %d bytes", key, path,
			 CFG_AUTH_FILE_MAX);
}

/* The bridge runs as a user that must not read the tunnel secrets: it takes
 * the names as written; the supervisor opens them. */
static void h_auth_file(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct cfg_tunnel *t = ((struct tunnel_build *)obj)->t;
	char **dst = strcmp(key, "psk_file") == 0 ? &t->psk_file
		     : strcmp(key, "cert") == 0	  ? &t->cert
		     : strcmp(key, "key") == 0	  ? &t->key
						  : &t->ca;
	const char *s;

	if (x->role != CFG_ROLE_SUPERVISOR) {
		(void)cfgi_want_string(x, key, v, dst);
		return;
	}
	if (dst != &t->psk_file) {
		if (cfgi_want_file(x, key, v, dst) == 0)
			check_auth_size(x, key, v, *dst);
		return;
	}
	s = cfgi_want_scalar(x, key, v, "a file name");
	if (s && check_psk(x, key, v, s) == 0)
		(void)cfgi_set_string(x, dst, s);
}

static const struct key_spec auth_keys[] = {
    {"psk_file", h_auth_file, 0},
    {"cert", h_auth_file, 0},
    {"key", h_auth_file, 0},
    {"ca", h_auth_file, 0},
};

static void h_auth(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct tunnel_build *tb = obj;

	if (!cfgi_want_mapping(x, key, v))
		return;
	tb->auth = v;
	tb->auth_seen = cfgi_walk_mapping(x, v, auth_keys, NKEYS(auth_keys), "in auth", tb);
}

/* Exactly one method: a PSK, or a certificate with its key and the CA that
 * verifies the peer. */
static void check_auth(struct ctx *x, const struct tunnel_build *tb)
{
	const uint64_t psk = 1u << 0, triple = (1u << 1) | (1u << 2) | (1u << 3);
	uint64_t seen = tb->auth_seen;
	int line = line_of(tb->auth);
	size_t i;

	if (!(seen & (psk | triple))) {
		cfgi_err(x, line, "auth: expected psk_file, or cert, key and ca");
		return;
	}
	if ((seen & psk) && (seen & triple)) {
		cfgi_err(x, line, "auth: either psk_file or cert, key and ca, not both");
		return;
	}
	if (seen & psk)
		return;
	for (i = 1; i < NKEYS(auth_keys); i++)
		if (!(seen & (1ull << i)))
			cfgi_err(x, line, "auth: missing '%s' (cert, key and ca go together)",
				 auth_keys[i].key);
}

/* children[] */

static void h_child_name(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct child_build *cb = obj;

	cb->name_line = line_of(v);
	cb->name_ok = cfgi_want_name(x, key, v, &cb->ch->name) == 0;
}

static void h_ts(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct child_build *cb = obj;
	int local = strcmp(key, "local_ts") == 0;

	if (!cfgi_want_cidrs(x, key, v, CFG_MAX_TS, local ? &cb->ch->local_ts : &cb->ch->remote_ts,
			     local ? &cb->ch->nlocal_ts : &cb->ch->nremote_ts))
		x->tunnels_bad = 1;
}

static void h_esp_proposals(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct child_build *cb = obj;

	want_strings(x, key, v, CFG_MAX_PROPOSALS, "proposals", check_proposal, 1,
		     &cb->ch->esp_proposals, &cb->ch->nesp_proposals);
}

/* key_spec.required in the tunnel and child tables: which keys a source
 * needs, and which belong in swanctl.conf for a source: swanctl tunnel. */
enum {
	KEY_OPTIONAL,
	KEY_REQUIRED,
	KEY_APPLIANCE_REQUIRED, /* source: appliance needs it; swanctl.conf owns it */
	KEY_APPLIANCE_OPTIONAL, /* swanctl.conf owns it */
};

/* The swanctl tables know the same keys, in the same order (the walker's
 * `seen` bits), and read none of those that swanctl.conf owns. */
static const struct key_spec child_keys[] = {
    {"name", h_child_name, KEY_REQUIRED},
    {"local_ts", h_ts, KEY_REQUIRED},
    {"remote_ts", h_ts, KEY_REQUIRED},
    {"esp_proposals", h_esp_proposals, KEY_APPLIANCE_REQUIRED},
};

static const struct key_spec child_keys_swanctl[] = {
    {"name", h_child_name, KEY_REQUIRED},
    {"local_ts", h_ts, KEY_REQUIRED},
    {"remote_ts", h_ts, KEY_REQUIRED},
    {"esp_proposals", NULL, KEY_APPLIANCE_REQUIRED},
};

#define CHILD_LOCAL_TS	(1u << 1)
#define CHILD_REMOTE_TS (1u << 2)

static void h_children(struct ctx *x, const char *key, yaml_node_t *v, void *obj);

static const struct key_spec tunnel_keys[] = {
    {"name", h_tunnel_name, KEY_REQUIRED},
    {"source", NULL, KEY_OPTIONAL}, /* read first: it decides the table */
    {"version", h_version, KEY_OPTIONAL},
    {"local_addrs", h_addrs, KEY_APPLIANCE_REQUIRED},
    {"remote_addrs", h_addrs, KEY_APPLIANCE_REQUIRED},
    {"local_id", h_identity, KEY_APPLIANCE_OPTIONAL},
    {"remote_id", h_identity, KEY_APPLIANCE_OPTIONAL},
    {"auth", h_auth, KEY_APPLIANCE_REQUIRED},
    {"ike_proposals", h_ike_proposals, KEY_APPLIANCE_REQUIRED},
    {"dpd_delay", h_dpd_delay, KEY_APPLIANCE_OPTIONAL},
    {"children", h_children, KEY_REQUIRED},
};

static const struct key_spec tunnel_keys_swanctl[] = {
    {"name", h_tunnel_name, KEY_REQUIRED},
    {"source", NULL, KEY_OPTIONAL},
    {"version", h_version, KEY_OPTIONAL},
    {"local_addrs", NULL, KEY_APPLIANCE_REQUIRED},
    {"remote_addrs", NULL, KEY_APPLIANCE_REQUIRED},
    {"local_id", NULL, KEY_APPLIANCE_OPTIONAL},
    {"remote_id", NULL, KEY_APPLIANCE_OPTIONAL},
    {"auth", NULL, KEY_APPLIANCE_REQUIRED},
    {"ike_proposals", NULL, KEY_APPLIANCE_REQUIRED},
    {"dpd_delay", NULL, KEY_APPLIANCE_OPTIONAL},
    {"children", h_children, KEY_REQUIRED},
};

#define TUNNEL_CHILDREN (1u << 10)

_Static_assert(NKEYS(tunnel_keys) == NKEYS(tunnel_keys_swanctl), "one key, one bit");
_Static_assert(NKEYS(child_keys) == NKEYS(child_keys_swanctl), "one key, one bit");
_Static_assert(NKEYS(tunnel_keys) == 11, "TUNNEL_CHILDREN is bit 10");

static int is_swanctl(const struct tunnel_build *tb)
{
	return tb->t->source == CFG_SOURCE_SWANCTL;
}

/* Missing keys (for the tunnel's source) and, for source: swanctl, the keys
 * that swanctl.conf owns, each at its own line. */
static void check_keys(struct ctx *x, yaml_node_t *map, const struct key_spec *specs, size_t n,
		       uint64_t seen, const struct tunnel_build *tb, const char *prefix)
{
	int appliance = !is_swanctl(tb) && !tb->source_bad;
	yaml_node_pair_t *pair;
	size_t i;

	for (i = 0; i < n; i++) {
		if (seen & (1ull << i))
			continue;
		if (specs[i].required == KEY_REQUIRED ||
		    (specs[i].required == KEY_APPLIANCE_REQUIRED && appliance))
			cfgi_err(x, line_of(map), "%s: missing '%s'", prefix, specs[i].key);
	}
	if (!is_swanctl(tb))
		return;
	for (pair = map->data.mapping.pairs.start; pair < map->data.mapping.pairs.top; pair++) {
		yaml_node_t *k = node_at(x, pair->key);

		for (i = 0; i < n && k->type == YAML_SCALAR_NODE; i++)
			if (specs[i].required >= KEY_APPLIANCE_REQUIRED &&
			    strcmp(text_of(k), specs[i].key) == 0)
				cfgi_err(x, line_of(k),
					 "%s: set in swanctl.conf for a source: swanctl tunnel",
					 specs[i].key);
	}
}

static void build_child(struct ctx *x, yaml_node_t *map, struct child_build *cb)
{
	const struct key_spec *specs = is_swanctl(cb->tb) ? child_keys_swanctl : child_keys;
	char prefix[2 * CFG_NAME_MAX + 32];
	uint64_t seen;

	seen = cfgi_walk_mapping(x, map, specs, NKEYS(child_keys), "in child", cb);
	check_keys(x, map, specs, NKEYS(child_keys), seen, cb->tb,
		   child_label(cb, prefix, sizeof prefix));
	if ((seen & (CHILD_LOCAL_TS | CHILD_REMOTE_TS)) != (CHILD_LOCAL_TS | CHILD_REMOTE_TS))
		x->tunnels_bad = 1; /* a child without selectors: no rule can use it */
}

static void h_children(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct tunnel_build *tb = obj;
	struct cfg_tunnel *t = tb->t;
	size_t n, i;

	if (!cfgi_want_sequence(x, key, v, 1, CFG_MAX_CHILDREN, "children")) {
		x->tunnels_bad = 1;
		return;
	}
	n = seq_len(v);
	t->children = calloc(n, sizeof *t->children);
	tb->cb = calloc(n, sizeof *tb->cb);
	if (!t->children || !tb->cb) {
		x->oom = 1;
		return;
	}
	t->nchildren = n;
	for (i = 0; i < n; i++) {
		yaml_node_t *item = seq_item(x, v, i);

		tb->cb[i] = (struct child_build){.ch = &t->children[i], .tb = tb, .index = i};
		t->children[i].line = line_of(item);
		if (item->type != YAML_MAPPING_NODE) {
			cfgi_err(x, line_of(item), "%s: each entry must be a mapping", key);
			x->tunnels_bad = 1;
		} else {
			build_child(x, item, &tb->cb[i]);
		}
	}
}

/* The source decides which keys a tunnel may have, wherever it is written. */
static void read_source(struct ctx *x, yaml_node_t *map, struct tunnel_build *tb)
{
	static const char *const words[] = {"appliance", "swanctl", NULL};
	yaml_node_pair_t *pair;
	int i;

	for (pair = map->data.mapping.pairs.start; pair < map->data.mapping.pairs.top; pair++) {
		yaml_node_t *k = node_at(x, pair->key);

		if (k->type != YAML_SCALAR_NODE || strcmp(text_of(k), "source") != 0)
			continue;
		i = cfgi_want_enum(x, "source", node_at(x, pair->value), words);
		if (i < 0)
			tb->source_bad = 1;
		else
			tb->t->source = i == 0 ? CFG_SOURCE_APPLIANCE : CFG_SOURCE_SWANCTL;
		return;
	}
}

static void build_tunnel(struct ctx *x, yaml_node_t *map, struct tunnel_build *tb)
{
	const struct key_spec *specs;
	char prefix[CFG_NAME_MAX + 16];
	uint64_t seen;

	read_source(x, map, tb);
	specs = is_swanctl(tb) ? tunnel_keys_swanctl : tunnel_keys;
	seen = cfgi_walk_mapping(x, map, specs, NKEYS(tunnel_keys), "in tunnel", tb);
	check_keys(x, map, specs, NKEYS(tunnel_keys), seen, tb,
		   tunnel_label(tb, prefix, sizeof prefix));
	if (!(seen & TUNNEL_CHILDREN))
		x->tunnels_bad = 1;
	if (tb->auth)
		check_auth(x, tb);
}

static void tunnel_defaults(struct cfg_tunnel *t)
{
	t->source = CFG_SOURCE_APPLIANCE;
	t->version = IKE_VERSION;
	t->dpd_delay_ms = DEFAULT_DPD_DELAY_MS;
}

static void check_tunnel_names(struct ctx *x, const struct tunnel_build *tb, size_t n)
{
	size_t i, j;

	for (j = 1; j < n; j++) {
		for (i = 0; i < j; i++) {
			if (!tb[i].name_ok || !tb[j].name_ok ||
			    strcmp(tb[i].t->name, tb[j].t->name))
				continue;
			cfgi_err(x, tb[j].name_line,
				 "duplicate tunnel name '%s' (first at line %d)", tb[j].t->name,
				 tb[i].name_line);
			break;
		}
	}
}

/* vici names a CHILD_SA config without its connection (initiate child=...),
 * so a child's name is unique across all tunnels. */
static int first_child_named(const struct tunnel_build *tb, size_t ti, size_t ci)
{
	const struct child_build *me = &tb[ti].cb[ci];
	size_t i, j;

	for (i = 0; i <= ti; i++) {
		for (j = 0; tb[i].cb && j < tb[i].t->nchildren && (i < ti || j < ci); j++) {
			const struct child_build *o = &tb[i].cb[j];

			if (o->name_ok && strcmp(o->ch->name, me->ch->name) == 0)
				return o->name_line;
		}
	}
	return 0;
}

static void check_child_names(struct ctx *x, const struct tunnel_build *tb, size_t n)
{
	size_t i, j;
	int first;

	for (i = 0; i < n; i++) {
		for (j = 0; tb[i].cb && j < tb[i].t->nchildren; j++) {
			const struct child_build *cb = &tb[i].cb[j];

			if (!cb->name_ok || !(first = first_child_named(tb, i, j)))
				continue;
			cfgi_err(x, cb->name_line,
				 "duplicate child name '%s' (first at line %d): child names are "
				 "unique across all tunnels",
				 cb->ch->name, first);
		}
	}
}

void cfgi_h_tunnels(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct cfg *c = obj;
	struct tunnel_build *tb;
	size_t n, i;

	x->tunnels_line = line_of(v);
	if (!cfgi_want_sequence(x, key, v, 1, CFG_MAX_TUNNELS, "tunnels")) {
		x->tunnels_bad = 1;
		return;
	}
	n = seq_len(v);
	c->tunnels = calloc(n, sizeof *c->tunnels);
	tb = calloc(n, sizeof *tb);
	if (!c->tunnels || !tb) {
		x->oom = 1;
		free(tb);
		return;
	}
	c->ntunnels = n;
	for (i = 0; i < n; i++) {
		yaml_node_t *item = seq_item(x, v, i);

		tb[i] = (struct tunnel_build){.t = &c->tunnels[i], .index = i};
		tunnel_defaults(tb[i].t);
		tb[i].t->line = line_of(item);
		if (item->type != YAML_MAPPING_NODE) {
			cfgi_err(x, line_of(item), "%s: each entry must be a mapping", key);
			x->tunnels_bad = 1;
		} else {
			build_tunnel(x, item, &tb[i]);
		}
	}
	check_tunnel_names(x, tb, n);
	check_child_names(x, tb, n);
	for (i = 0; i < n; i++)
		free(tb[i].cb);
	free(tb);
}

/* ---------- destinations ---------- */

struct dest_build {
	struct cfg_destination *d;
	size_t index;
	int name_line, addr_line;
	int name_ok, addr_ok;
	struct sftp_build sftp; /* a push channel's, when it has `sftp:` */
};

static int is_wildcard(const struct sockaddr_storage *ss)
{
	static const uint8_t zero[16];

	if (ss->ss_family == AF_INET)
		return ((const struct sockaddr_in *)ss)->sin_addr.s_addr == 0;
	return memcmp(&((const struct sockaddr_in6 *)ss)->sin6_addr, zero, 16) == 0;
}

static void h_dest_name(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct dest_build *db = obj;

	db->name_line = line_of(v);
	db->name_ok = cfgi_want_name(x, key, v, &db->d->name) == 0;
}

/* Any port: receivers are the hospital's, not ours. */
static void h_dest_address(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct dest_build *db = obj;
	const char *s = cfgi_want_scalar(x, key, v, "an address:port");

	db->addr_line = line_of(v);
	if (!s)
		return;
	if (cfg_parse_hostport(s, &db->d->addr, &db->d->addr_len) < 0) {
		cfgi_err(x, line_of(v), "%s: expected IPv4:port or [IPv6]:port, got '%s'", key, s);
		return;
	}
	if (is_wildcard(&db->d->addr)) {
		cfgi_err(x, line_of(v), "%s: %s is the unspecified address, not a receiver's", key,
			 s);
		return;
	}
	db->addr_ok = cfgi_set_string(x, &db->d->address_text, s) == 0;
}

static void h_dest_timeout(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct dest_build *db = obj;

	(void)cfgi_want_duration(x, key, v,
				 strcmp(key, "ack_timeout") == 0 ? &db->d->ack_timeout_ms
								 : &db->d->idle_timeout_ms);
}

static void h_dest_on_reject(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	static const char *const words[] = {"retry", "dead", NULL};
	struct dest_build *db = obj;
	int i = cfgi_want_enum(x, key, v, words);

	if (i >= 0)
		*(strcmp(key, "on_ae") == 0 ? &db->d->on_ae : &db->d->on_ar) =
		    i == 0 ? CFG_REJECT_RETRY : CFG_REJECT_DEAD;
}

static void h_dest_max_attempts(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct dest_build *db = obj;

	(void)cfgi_want_count(x, key, v, CFG_MAX_ATTEMPTS_LIMIT, &db->d->max_attempts);
}

static void h_dest_release(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct cfg_destination *d = obj;

	(void)cfgi_want_release(x, key, v, &d->release);
}

static void h_dest_max_frame(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct cfg_destination *d = obj;

	(void)cfgi_want_max_frame(x, key, v, &d->max_frame);
}

/* An integration's mllp section less its timeouts: a destination has its own. */
static const struct key_spec dest_mllp_keys[] = {
    {"release", h_dest_release, 0},
    {"max_frame", h_dest_max_frame, 0},
};

static void h_dest_mllp(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct dest_build *db = obj;

	if (cfgi_want_mapping(x, key, v))
		cfgi_walk_mapping(x, v, dest_mllp_keys, NKEYS(dest_mllp_keys), "in mllp", db->d);
}

/* ---- destinations[].hl7: MSH values and charset of translated JSON ---- */

static const char *const hl7_name_keys[] = {"sending_application", "sending_facility",
					    "receiving_application", "receiving_facility"};

/* The section being read, and the line of each name in it. */
struct hl7_build {
	struct cfg_hl7_out *h;
	int line[4]; /* of hl7_name_keys[i]; 0: not given */
};

static char *hl7_name_at(struct cfg_hl7_out *h, size_t i)
{
	char *const names[] = {h->sending_app, h->sending_fac, h->receiving_app, h->receiving_fac};

	return names[i];
}

/* An HD name goes into MSH-3..6 as one component: text without the HL7
 * delimiters, so that what the receiver reads is what was written here. */
static void h_hl7_name(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct hl7_build *hb = obj;
	const char *s = cfgi_want_scalar(x, key, v, "a name");
	size_t i = 0;

	while (strcmp(key, hl7_name_keys[i]) != 0)
		i++;
	if (!s)
		return;
	if (strlen(s) > CFG_HL7_HD_MAX) {
		cfgi_err(x, line_of(v), "%s: longer than %d bytes", key, CFG_HL7_HD_MAX);
		return;
	}
	for (const char *p = s; *p; p++) {
		if (strchr("|^~\\&", *p) || (unsigned char)*p < 0x20 || *p == 0x7f) {
			cfgi_err(x, line_of(v),
				 "%s: may not hold | ^ ~ \\ & or control characters (HL7 "
				 "delimiters); got '%s'",
				 key, s);
			return;
		}
	}
	snprintf(hl7_name_at(hb->h, i), CFG_HL7_HD_MAX + 1, "%s", s);
	hb->line[i] = line_of(v);
}

static void h_hl7_version(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	static const char *const words[] = {"2.3", "2.3.1", "2.4",   "2.5", "2.5.1",
					    "2.6", "2.7",   "2.7.1", "2.8", NULL};
	struct hl7_build *hb = obj;
	int i = cfgi_want_enum(x, key, v, words);

	if (i >= 0)
		snprintf(hb->h->version, sizeof hb->h->version, "%s", words[i]);
}

static void h_hl7_charset(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	static const char *const words[] = {"utf-8", "latin1", NULL};
	struct hl7_build *hb = obj;
	int i = cfgi_want_enum(x, key, v, words);

	if (i >= 0)
		hb->h->latin1 = i == 1;
}

static const struct key_spec dest_hl7_keys[] = {
    {"version", h_hl7_version, 0},	   {"sending_application", h_hl7_name, 0},
    {"sending_facility", h_hl7_name, 0},   {"receiving_application", h_hl7_name, 0},
    {"receiving_facility", h_hl7_name, 0}, {"charset", h_hl7_charset, 0},
};

/* 1 when UTF-8 text s holds a character above U+00FF: a lead byte from
 * 0xC4 on (0xC2 and 0xC3 lead U+0080..U+00FF, continuation bytes are below). */
static int beyond_latin1(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s >= 0xc4)
			return 1;
	return 0;
}

/* With charset latin1 the names go into MSH-3..6 as ISO 8859-1 too: one
 * that cannot would make every message for the destination a 422, blaming
 * the client's JSON for the configuration. Checked after the walk, since
 * charset may follow the names. */
static void h_dest_hl7(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct dest_build *db = obj;
	struct hl7_build hb = {.h = &db->d->hl7};

	if (!cfgi_want_mapping(x, key, v))
		return;
	cfgi_walk_mapping(x, v, dest_hl7_keys, NKEYS(dest_hl7_keys), "in hl7", &hb);
	for (size_t i = 0; hb.h->latin1 && i < NKEYS(hl7_name_keys); i++)
		if (beyond_latin1(hl7_name_at(hb.h, i)))
			cfgi_err(x, hb.line[i],
				 "%s: '%s' has a character that ISO 8859-1 cannot hold "
				 "(charset: latin1)",
				 hl7_name_keys[i], hl7_name_at(hb.h, i));
}

void cfg_hl7_out_defaults(struct cfg_hl7_out *h)
{
	*h = (struct cfg_hl7_out){.version = "2.5.1", .sending_app = "MLLP-EDGE"};
}

/* ---- sftp: a push channel instead of an MLLP receiver ---- */

#define EITHER_ADDRESS_OR_SFTP "either address (MLLP) or sftp (a push channel)"

/* max_file is the largest body the outbound API accepts for it. */
static void h_dest_sftp(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct dest_build *db = obj;

	cfgi_want_sftp(x, key, v, &db->d->sftp, &db->sftp);
	if (db->d->sftp)
		db->d->max_frame = (size_t)db->d->sftp->max_file;
}

static void h_dest_sftp_address(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct dest_build *db = obj;

	(void)key;
	cfgi_err(x, line_of(v), "destinations[%zu]: " EITHER_ADDRESS_OR_SFTP ", not both",
		 db->index);
}

static void h_dest_sftp_mllp_only(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	(void)obj;
	cfgi_err(x, line_of(v), "%s: not allowed for an sftp destination (MLLP only)", key);
}

/* Which table a destination is read with depends on `sftp:`, wherever it
 * is written; both know the same keys in the same order (one key, one bit). */
static const struct key_spec destination_keys[] = {
    {"name", h_dest_name, 1},
    {"address", h_dest_address, 0}, /* required unless sftp */
    {"ack_timeout", h_dest_timeout, 0},
    {"idle_timeout", h_dest_timeout, 0},
    {"on_ae", h_dest_on_reject, 0},
    {"on_ar", h_dest_on_reject, 0},
    {"max_attempts", h_dest_max_attempts, 0},
    {"mllp", h_dest_mllp, 0},
    {"hl7", h_dest_hl7, 0},
    {"sftp", NULL, 0}, /* never seen: the other table */
};

static const struct key_spec destination_keys_sftp[] = {
    {"name", h_dest_name, 1},
    {"address", h_dest_sftp_address, 0},
    {"ack_timeout", h_dest_sftp_mllp_only, 0},
    {"idle_timeout", h_dest_sftp_mllp_only, 0},
    {"on_ae", h_dest_sftp_mllp_only, 0},
    {"on_ar", h_dest_sftp_mllp_only, 0},
    {"max_attempts", h_dest_max_attempts, 0},
    {"mllp", h_dest_sftp_mllp_only, 0},
    {"hl7", h_dest_hl7, 0},
    {"sftp", h_dest_sftp, 1},
};

_Static_assert(NKEYS(destination_keys) == NKEYS(destination_keys_sftp), "one key, one bit");

#define DEST_ADDRESS (1u << 1)

static void destination_defaults(struct cfg_destination *d)
{
	d->ack_timeout_ms = DEFAULT_ACK_TIMEOUT_MS;
	d->idle_timeout_ms = DEFAULT_DEST_IDLE_MS;
	d->on_ae = CFG_REJECT_RETRY;
	d->on_ar = CFG_REJECT_DEAD;
	d->max_attempts = DEFAULT_MAX_ATTEMPTS;
	d->release = 1;
	d->max_frame = MLLP_MAX_FRAME_DEFAULT;
	cfg_hl7_out_defaults(&d->hl7);
}

static void build_destination(struct ctx *x, yaml_node_t *map, struct dest_build *db)
{
	char prefix[CFG_NAME_MAX + 24];
	yaml_node_t *sftp = cfgi_find_key(x, map, "sftp");
	const struct key_spec *specs = sftp ? destination_keys_sftp : destination_keys;
	uint64_t seen;

	db->sftp = (struct sftp_build){
	    .owner = &db->d->name, .index = db->index, .push = 1, .line = sftp ? line_of(sftp) : 0};
	seen = cfgi_walk_mapping(x, map, specs, NKEYS(destination_keys), "in destination", db);
	if (db->name_ok)
		snprintf(prefix, sizeof prefix, "destination '%s'", db->d->name);
	else
		snprintf(prefix, sizeof prefix, "destination #%zu", db->index + 1);
	cfgi_need_keys(x, map, specs, NKEYS(destination_keys), seen, prefix);
	if (!sftp && !(seen & DEST_ADDRESS))
		cfgi_err(x, line_of(map),
			 "destinations[%zu]: " EITHER_ADDRESS_OR_SFTP " is required", db->index);
}

static void check_dest_names(struct ctx *x, const struct dest_build *db, size_t n)
{
	size_t i, j;

	for (j = 1; j < n; j++) {
		for (i = 0; i < j; i++) {
			if (!db[i].name_ok || !db[j].name_ok ||
			    strcmp(db[i].d->name, db[j].d->name))
				continue;
			cfgi_err(x, db[j].name_line,
				 "duplicate destination name '%s' (first at line %d)",
				 db[j].d->name, db[i].name_line);
			break;
		}
	}
}

void cfgi_h_destinations(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct cfg *c = obj;
	struct dest_build *db;
	size_t n, i;

	x->dests_line = line_of(v);
	if (!cfgi_want_sequence(x, key, v, 1, CFG_MAX_DESTINATIONS, "destinations")) {
		x->dests_bad = 1;
		return;
	}
	n = seq_len(v);
	c->destinations = calloc(n, sizeof *c->destinations);
	db = calloc(n, sizeof *db);
	if (!c->destinations || !db) {
		x->oom = 1;
		free(db);
		return;
	}
	c->ndestinations = n;
	for (i = 0; i < n; i++) {
		yaml_node_t *item = seq_item(x, v, i);

		db[i] = (struct dest_build){.d = &c->destinations[i], .index = i};
		destination_defaults(db[i].d);
		c->destinations[i].line = line_of(item);
		if (item->type != YAML_MAPPING_NODE)
			cfgi_err(x, line_of(item), "%s: each entry must be a mapping", key);
		else
			build_destination(x, item, &db[i]);
		if (!db[i].name_ok)
			x->dests_bad = 1;
	}
	check_dest_names(x, db, n);
	/* kept for the rules across sections; cfgi_check_tunnel_rules frees it */
	x->dests = db;
	x->ndests = n;
}

/* ---------- https: the outbound API's listener ---------- */

static void h_https_listen(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct cfg_https *h = obj;
	const char *s = cfgi_want_scalar(x, key, v, "an address:port");

	if (!s)
		return;
	if (cfg_parse_hostport(s, &h->listen, &h->listen_len) < 0) {
		cfgi_err(x, line_of(v), "%s: expected IPv4:port or [IPv6]:port, got '%s'", key, s);
		return;
	}
	if (cfgi_set_string(x, &h->listen_text, s) == 0)
		x->https_listen_line = line_of(v);
}

/* The bridge opens all four itself, whichever role checks the file. */
static void h_https_file(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct cfg_https *h = obj;
	char **dst = strcmp(key, "cert") == 0	     ? &h->cert
		     : strcmp(key, "key") == 0	     ? &h->key
		     : strcmp(key, "client_ca") == 0 ? &h->client_ca
						     : &h->tokens_file;

	if (cfgi_want_file(x, key, v, dst) == 0 && dst == &h->tokens_file)
		x->tokens_line = line_of(v);
}

static void h_https_max_body(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct cfg_https *h = obj;
	uint64_t n;

	if (cfgi_want_size(x, key, v, MAX_BODY_MIN, MAX_BODY_LIMIT, &n) == 0)
		h->max_body = (size_t)n;
}

static const struct key_spec https_keys[] = {
    {"listen", h_https_listen, 1},    {"cert", h_https_file, 1},
    {"key", h_https_file, 1},	      {"client_ca", h_https_file, 0},
    {"tokens_file", h_https_file, 0}, {"max_body", h_https_max_body, 0},
};

#define HTTPS_CLIENT_CA	  (1u << 3)
#define HTTPS_TOKENS_FILE (1u << 4)

void cfgi_h_https(struct ctx *x, const char *key, yaml_node_t *v, void *obj)
{
	struct cfg *c = obj;
	uint64_t seen;

	if (!cfgi_want_mapping(x, key, v))
		return;
	x->https_line = line_of(v);
	c->https.line = line_of(v);
	seen = cfgi_walk_mapping(x, v, https_keys, NKEYS(https_keys), "in https", &c->https);
	cfgi_need_keys(x, v, https_keys, NKEYS(https_keys), seen, key);
	if (!(seen & (HTTPS_CLIENT_CA | HTTPS_TOKENS_FILE)))
		cfgi_err(x, line_of(v),
			 "%s: every request must be authenticated: set client_ca, tokens_file or "
			 "both",
			 key);
}

/* ---------- the tokens file ---------- */

struct token_seen {
	const char *tok;
	size_t len;
	int line;
};

struct tokens_check {
	struct ctx *x;
	const char *path;
	struct token_seen *seen; /* CFG_TOKENS_MAX of them */
	size_t n;		 /* valid tokens in seen */
	size_t lines;		 /* lines that are neither empty nor comments */
	int lineno;
	int full;
};

/* "TOKENSFILE:LINE: message", sorted at the tokens_file line of the config. */
#define TOK_ERR(t, ...)                                                                            \
	cfgi_err_in((t)->x, (t)->x->tokens_line, (t)->path, (t)->lineno, __VA_ARGS__)

static int is_blank(char ch)
{
	return ch == ' ' || ch == '\t';
}

static int echo_len(size_t len)
{
	return len > ECHO_MAX ? ECHO_MAX : (int)len;
}

static int dest_known(struct ctx *x, const char *name, size_t len)
{
	size_t i;

	for (i = 0; i < x->ndests; i++)
		if (x->dests[i].name_ok && strlen(x->dests[i].d->name) == len &&
		    memcmp(x->dests[i].d->name, name, len) == 0)
			return 1;
	return 0;
}

/* Is the entry at p (len bytes) also among the entries of list before it? */
static int listed_before(const char *list, const char *p, size_t len)
{
	const char *q = list;

	while (q < p) {
		const char *comma = memchr(q, ',', (size_t)(p - q));
		size_t n = (size_t)(comma - q); /* every entry before p ends with a comma */

		if (n == len && memcmp(q, p, len) == 0)
			return 1;
		q = comma + 1;
	}
	return 0;
}

/* DESTS: "*" or names of destinations, separated by commas. The names are
 * checked only when every destination has a valid one. */
static void check_dests_field(struct tokens_check *t, const char *d, size_t len)
{
	const char *p = d, *end = d + len;
	int names = t->x->dests_line && !t->x->dests_bad;

	if (len == 1 && d[0] == '*')
		return;
	while (p <= end) {
		const char *comma = memchr(p, ',', (size_t)(end - p));
		size_t n = (size_t)((comma ? comma : end) - p);

		if (n == 0 || (n == 1 && p[0] == '*')) {
			TOK_ERR(t,
				"expected * or destination names separated by commas, got '%.*s'",
				echo_len(len), d);
			return;
		}
		if (names && !dest_known(t->x, p, n))
			TOK_ERR(t, "unknown destination '%.*s'", echo_len(n), p);
		else if (listed_before(d, p, n))
			TOK_ERR(t, "destination '%.*s' is listed twice", echo_len(n), p);
		p += n + 1;
	}
}

/* Never shows the token itself: the messages end up in logs. */
static void check_token(struct tokens_check *t, const char *tok, size_t len)
{
	size_t i;

	for (i = 0; i < len && (unsigned char)tok[i] > 0x20 && (unsigned char)tok[i] < 0x7f; i++)
		;
	if (i < len) {
		TOK_ERR(t, "the token has a character that is not visible ASCII (0x21-0x7e)");
		return;
	}
	if (len < TOKEN_MIN || len > TOKEN_MAX) {
		TOK_ERR(t, "the token is %zu characters: %d to %d are required", len, TOKEN_MIN,
			TOKEN_MAX);
		return;
	}
	for (i = 0; i < t->n; i++) {
		if (t->seen[i].len == len && memcmp(t->seen[i].tok, tok, len) == 0) {
			TOK_ERR(t, "duplicate token (first at line %d)", t->seen[i].line);
			return;
		}
	}
	t->seen[t->n++] = (struct token_seen){.tok = tok, .len = len, .line = t->lineno};
}

/* One line: blanks, TOKEN, blanks, DESTS, blanks; or empty; or a comment. */
static void check_token_line(struct tokens_check *t, const char *p, size_t len)
{
	const char *end = p + len, *tok, *dests;
	size_t tlen, dlen;

	while (p < end && is_blank(*p))
		p++;
	if (p == end || *p == '#')
		return;
	if (++t->lines > CFG_TOKENS_MAX) {
		TOK_ERR(t, "more than %d tokens", CFG_TOKENS_MAX);
		t->full = 1;
		return;
	}
	for (tok = p; p < end && !is_blank(*p); p++)
		;
	tlen = (size_t)(p - tok);
	while (p < end && is_blank(*p))
		p++;
	for (dests = p; p < end && !is_blank(*p); p++)
		;
	dlen = (size_t)(p - dests);
	while (p < end && is_blank(*p))
		p++;
	if (dlen == 0 || p != end) {
		TOK_ERR(t, "expected a token, then * or destination names separated by commas");
		return;
	}
	check_token(t, tok, tlen);
	check_dests_field(t, dests, dlen);
}

static int read_tokens_file(struct ctx *x, const char *path, char **text, size_t *len)
{
	int rc = cfg_read_file(path, TOKENS_FILE_MAX, text, len);

	if (rc == -ENOMEM)
		x->oom = 1;
	else if (rc == -EFBIG)
		cfgi_err(x, x->tokens_line, "tokens_file: %s is larger than %u bytes", path,
			 TOKENS_FILE_MAX);
	else if (rc == -EINVAL)
		cfgi_err(x, x->tokens_line, "tokens_file: %s is not a regular file", path);
	else if (rc < 0)
		cfgi_err(x, x->tokens_line, "tokens_file: cannot read %s: %s", path, strerror(-rc));
	return rc;
}

/* The bridge reads the tokens itself at start; this only judges the file,
 * so that a bad line is found by -n, not by a refused request. */
static void check_tokens_file(struct ctx *x, const struct cfg *c)
{
	struct tokens_check t = {.x = x, .path = c->https.tokens_file};
	char *text = NULL;
	size_t len = 0, off = 0;

	if (!x->tokens_line || read_tokens_file(x, t.path, &text, &len) < 0)
		return;
	t.seen = calloc(CFG_TOKENS_MAX, sizeof *t.seen);
	if (!t.seen)
		x->oom = 1;
	while (t.seen && off < len && !t.full) {
		const char *line = text + off, *nl = memchr(line, '\n', len - off);
		size_t n = nl ? (size_t)(nl - line) : len - off;

		t.lineno++;
		check_token_line(&t, line, n > 0 && line[n - 1] == '\r' ? n - 1 : n);
		off += n + 1;
	}
	/* the bridge refuses such a file at start: mutual TLS alone is written
	 * without tokens_file */
	if (t.seen && t.lines == 0)
		cfgi_err(x, x->tokens_line,
			 "tokens_file: %s holds no tokens: add one, or remove tokens_file", t.path);
	explicit_bzero(text, len);
	free(text);
	free(t.seen);
}

/* ---------- rules across sections ---------- */

static int cidr_within(const struct cfg_cidr *inner, const struct cfg_cidr *outer)
{
	return inner->family == outer->family && inner->prefix >= outer->prefix &&
	       cfgi_prefix_equal(inner->addr, outer->addr, outer->prefix);
}

static int ts_contains(const struct cfg_cidr *ts, size_t n, const struct sockaddr *a)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (cfg_cidr_contains(&ts[i], a))
			return 1;
	return 0;
}

static int ts_holds_cidr(const struct cfg_cidr *ts, size_t n, const struct cfg_cidr *c)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (cidr_within(c, &ts[i]))
			return 1;
	return 0;
}

static const struct cfg_cidr *ts_holding(const struct cfg *c, const struct sockaddr *a, int local,
					 const struct cfg_child **child)
{
	size_t i, j, k;

	for (i = 0; i < c->ntunnels; i++) {
		for (j = 0; j < c->tunnels[i].nchildren; j++) {
			const struct cfg_child *ch = &c->tunnels[i].children[j];
			const struct cfg_cidr *ts = local ? ch->local_ts : ch->remote_ts;
			size_t n = local ? ch->nlocal_ts : ch->nremote_ts;

			for (k = 0; k < n; k++) {
				if (cfg_cidr_contains(&ts[k], a)) {
					*child = ch;
					return &ts[k];
				}
			}
		}
	}
	return NULL;
}

static const struct cfg_cidr *remote_ts_holding(const struct cfg *c, const struct sockaddr *a,
						const struct cfg_child **child)
{
	return ts_holding(c, a, 0, child);
}

static void fmt_cidr(const struct cfg_cidr *c, char *buf, size_t cap)
{
	char net[INET6_ADDRSTRLEN];

	inet_ntop(c->family, c->addr, net, sizeof net);
	snprintf(buf, cap, "%s/%u", net, c->prefix);
}

/* The address of a sockaddr, without the port; IPv4-mapped shown as IPv4. */
static void fmt_addr(const struct sockaddr_storage *ss, char *buf, size_t cap)
{
	const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;

	if (ss->ss_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, buf,
			  (socklen_t)cap);
	else if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr))
		inet_ntop(AF_INET, s6->sin6_addr.s6_addr + 12, buf, (socklen_t)cap);
	else
		inet_ntop(AF_INET6, &s6->sin6_addr, buf, (socklen_t)cap);
}

/* Appends "'name'" to a list of names, ", "-separated. */
static void add_name(char *buf, size_t cap, const char *name)
{
	size_t len = strlen(buf);

	snprintf(buf + len, cap - len, "%s'%s'", len ? ", " : "", name ? name : "?");
}

/* Each source must reach the listener through a child whose local_ts holds
 * the listen address: one child or several with the same local side. */
static void check_sources(struct ctx *x, const struct cfg *c, const struct integ_build *b,
			  const char *children, const char *addr, int nchildren)
{
	const struct cfg_integration *in = b->in;
	size_t s, i, j;

	for (s = 0; s < in->nsources; s++) {
		int held = 0;
		char src[INET6_ADDRSTRLEN + 8];

		for (i = 0; i < c->ntunnels && !held; i++) {
			for (j = 0; j < c->tunnels[i].nchildren && !held; j++) {
				const struct cfg_child *ch = &c->tunnels[i].children[j];

				held =
				    ts_contains(ch->local_ts, ch->nlocal_ts,
						(const struct sockaddr *)&in->listen) &&
				    ts_holds_cidr(ch->remote_ts, ch->nremote_ts, &in->sources[s]);
			}
		}
		if (held)
			continue;
		fmt_cidr(&in->sources[s], src, sizeof src);
		cfgi_err(x, line_of(seq_item(x, b->sources, s)),
			 "sources: %s is not inside the remote_ts of %s %s, whose local_ts %s "
			 "%s: plain MLLP must stay inside the tunnel",
			 src, nchildren > 1 ? "children" : "child", children,
			 nchildren > 1 ? "hold" : "holds", addr);
	}
}

/* Invariant 3: MLLP is accepted only on a tunnel-side address, from peers
 * the tunnel carries. */
static void check_listen(struct ctx *x, const struct cfg *c, const struct integ_build *b)
{
	const struct cfg_integration *in = b->in;
	char children[NAMES_TEXT_MAX] = "", addr[INET6_ADDRSTRLEN];
	int nchildren = 0;
	size_t i, j;

	if (!b->listen_ok)
		return;
	if (is_wildcard(&in->listen)) {
		cfgi_err(x, b->listen_line,
			 "listen: %s is every address: with tunnels, MLLP listens on an address "
			 "inside a child's local_ts",
			 in->listen_text);
		return;
	}
	for (i = 0; i < c->ntunnels; i++) {
		for (j = 0; j < c->tunnels[i].nchildren; j++) {
			const struct cfg_child *ch = &c->tunnels[i].children[j];

			if (!ts_contains(ch->local_ts, ch->nlocal_ts,
					 (const struct sockaddr *)&in->listen))
				continue;
			add_name(children, sizeof children, ch->name);
			nchildren++;
		}
	}
	if (nchildren == 0) {
		cfgi_err(x, b->listen_line,
			 "listen: %s is not inside the local_ts of any tunnel child: plain MLLP "
			 "must stay inside the tunnel",
			 in->listen_text);
		return;
	}
	fmt_addr(&in->listen, addr, sizeof addr);
	if (b->sources_ok)
		check_sources(x, c, b, children, addr, nchildren);
}

/* Host part of an https:// URL that h_url accepted, as an address: IPv4 in
 * any form curl reads (inet_aton: 203.0.113.70, 3405803846, ...) or [IPv6].
 * Returns 0 for a host name. */
static int url_address(const char *url, struct sockaddr_storage *ss)
{
	char host[INET6_ADDRSTRLEN + 1];
	const char *h = url + 8;
	size_t n;

	memset(ss, 0, sizeof *ss);
	if (*h == '[') {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;

		n = strcspn(++h, "]%");
		if (n >= sizeof host)
			return 0;
		memcpy(host, h, n);
		host[n] = '\0';
		s6->sin6_family = AF_INET6;
		return inet_pton(AF_INET6, host, &s6->sin6_addr) == 1;
	}
	n = strcspn(h, ":/?#");
	if (n >= sizeof host)
		return 0;
	memcpy(host, h, n);
	host[n] = '\0';
	ss->ss_family = AF_INET;
	return inet_aton(host, &((struct sockaddr_in *)ss)->sin_addr) == 1;
}

/* Invariant: no HTTPS over the VPN. Host names are checked by the bridge
 * when they resolve. */
static void check_upstream(struct ctx *x, const struct cfg *c, const struct integ_build *b)
{
	const struct cfg_child *ch = NULL;
	const struct cfg_cidr *ts;
	struct sockaddr_storage ss;
	char cidr[INET6_ADDRSTRLEN + 8], addr[INET6_ADDRSTRLEN];

	if (!b->url_ok || !url_address(b->in->upstream.url, &ss))
		return;
	ts = remote_ts_holding(c, (const struct sockaddr *)&ss, &ch);
	if (!ts)
		return;
	fmt_cidr(ts, cidr, sizeof cidr);
	fmt_addr(&ss, addr, sizeof addr);
	cfgi_err(x, b->url_line,
		 "url: %s is inside remote_ts %s of child '%s': HTTPS must not cross the VPN", addr,
		 cidr, ch->name ? ch->name : "?");
}

/* Plain MLLP toward a destination leaves only through a tunnel. */
static void check_destination(struct ctx *x, const struct cfg *c, const struct dest_build *db)
{
	const struct cfg_child *ch = NULL;

	if (!db->addr_ok || remote_ts_holding(c, (const struct sockaddr *)&db->d->addr, &ch))
		return;
	cfgi_err(x, db->addr_line,
		 "address: %s is not inside the remote_ts of any tunnel child: plain MLLP must "
		 "stay inside the tunnel",
		 db->d->address_text);
}

/* SFTP to the hospital, like plain MLLP, leaves only through a tunnel. */
static void check_sftp_server(struct ctx *x, const struct cfg *c, const struct sftp_build *b)
{
	const struct cfg_child *ch = NULL;
	char addr[INET6_ADDRSTRLEN];

	if (!b->s || !b->server_ok ||
	    remote_ts_holding(c, (const struct sockaddr *)&b->s->server, &ch))
		return;
	cfgi_fmt_server(b->s, addr, sizeof addr, 0);
	cfgi_err(x, b->server_line,
		 "server: %s is not inside the remote_ts of any tunnel child: SFTP to the "
		 "hospital travels only inside the tunnel",
		 addr);
}

/* Every sftp section, pulls (integrations) first, in file order. */
static void check_sftp(struct ctx *x, const struct cfg *c)
{
	const struct sftp_build **b;
	size_t i, n = 0;

	if (c->gate == CFG_GATE_CLOSED && !x->gate_bad && c->ntunnels > 0 && !x->tunnels_bad) {
		for (i = 0; i < x->ninteg; i++)
			check_sftp_server(x, c, &x->integ[i].sftp);
		for (i = 0; i < x->ndests; i++)
			check_sftp_server(x, c, &x->dests[i].sftp);
	}
	if (!(b = calloc(x->ninteg + x->ndests + 1, sizeof *b))) {
		x->oom = 1;
		return;
	}
	for (i = 0; i < x->ninteg; i++)
		b[n++] = &x->integ[i].sftp;
	for (i = 0; i < x->ndests; i++)
		b[n++] = &x->dests[i].sftp;
	cfgi_check_sftp_dirs(x, b, n);
	free(b);
}

/* The outbound API faces the cloud: never an address the tunnel reaches. */
static void check_https_listen(struct ctx *x, const struct cfg *c)
{
	const struct cfg_child *ch = NULL;
	const struct cfg_cidr *ts;
	char cidr[INET6_ADDRSTRLEN + 8];

	if (!x->https_listen_line || c->ntunnels == 0 || x->tunnels_bad)
		return;
	if (is_wildcard(&c->https.listen)) {
		cfgi_err(x, x->https_listen_line,
			 "listen: %s is every address, the tunnel's too: the outbound API must "
			 "not be reachable through the tunnel",
			 c->https.listen_text);
		return;
	}
	ts = ts_holding(c, (const struct sockaddr *)&c->https.listen, 1, &ch);
	if (!ts)
		return;
	fmt_cidr(ts, cidr, sizeof cidr);
	cfgi_err(x, x->https_listen_line,
		 "listen: %s is inside local_ts %s of child '%s': the outbound API must not be "
		 "reachable through the tunnel",
		 c->https.listen_text, cidr, ch->name ? ch->name : "?");
}

static void check_https(struct ctx *x, const struct cfg *c)
{
	if (!x->https_line)
		return;
	if (!x->dests_line)
		cfgi_err(x, x->https_line,
			 "https: no destinations are configured: no message could ever be posted; "
			 "add destinations:");
	check_https_listen(x, c);
	check_tokens_file(x, c);
}

void cfgi_check_tunnel_rules(struct ctx *x, const struct cfg *c)
{
	size_t i;

	check_https(x, c);

	if (c->gate == CFG_GATE_CLOSED && !x->gate_bad && !x->tunnels_line)
		cfgi_err(x, x->gate_line ? x->gate_line : 1,
			 "gate is closed and no tunnels are configured: no MLLP would ever be "
			 "accepted; add tunnels: or set gate: open");
	if (c->ntunnels > 0 && !x->tunnels_bad) {
		for (i = 0; i < x->ninteg; i++) {
			check_listen(x, c, &x->integ[i]);
			check_upstream(x, c, &x->integ[i]);
		}
		for (i = 0; i < x->ndests; i++)
			check_destination(x, c, &x->dests[i]);
	}
	check_sftp(x, c);
}

void cfgi_tunnel_build_free(struct ctx *x)
{
	free(x->dests);
	x->dests = NULL;
	x->ndests = 0;
}

/* ---------- defaults and freeing ---------- */

void cfgi_tunnel_defaults(struct ctx *x, struct cfg *c)
{
	c->gate = CFG_GATE_CLOSED;
	c->charon.start = 1;
	c->supervisor.heartbeat_ms = DEFAULT_HEARTBEAT_MS;
	c->https.max_body = DEFAULT_MAX_BODY;
	if (cfgi_set_string(x, &c->charon.vici, DEFAULT_VICI) < 0 ||
	    cfgi_set_string(x, &c->charon.binary, DEFAULT_CHARON_BINARY) < 0 ||
	    cfgi_set_string(x, &c->supervisor.control_socket, DEFAULT_CONTROL_SOCKET) < 0)
		return;
	(void)cfgi_set_string(x, &c->supervisor.bridge_user, DEFAULT_BRIDGE_USER);
}

static void free_strings(char ***v, size_t *n)
{
	size_t i;

	for (i = 0; i < *n; i++)
		free((*v)[i]);
	free(*v);
	*v = NULL;
	*n = 0;
}

static void free_tunnel(struct cfg_tunnel *t)
{
	size_t i;

	for (i = 0; i < t->nchildren; i++) {
		struct cfg_child *ch = &t->children[i];

		free(ch->name);
		free(ch->local_ts);
		free(ch->remote_ts);
		free_strings(&ch->esp_proposals, &ch->nesp_proposals);
	}
	free(t->children);
	free(t->name);
	free_strings(&t->local_addrs, &t->nlocal_addrs);
	free_strings(&t->remote_addrs, &t->nremote_addrs);
	free(t->local_id);
	free(t->remote_id);
	free(t->psk_file);
	free(t->cert);
	free(t->key);
	free(t->ca);
	free_strings(&t->ike_proposals, &t->nike_proposals);
}

void cfgi_free_tunnel_side(struct cfg *c)
{
	size_t i;

	for (i = 0; i < c->ntunnels; i++)
		free_tunnel(&c->tunnels[i]);
	free(c->tunnels);
	c->tunnels = NULL;
	c->ntunnels = 0;
	for (i = 0; i < c->ndestinations; i++) {
		free(c->destinations[i].name);
		free(c->destinations[i].address_text);
		cfgi_free_sftp(c->destinations[i].sftp);
	}
	free(c->destinations);
	c->destinations = NULL;
	c->ndestinations = 0;
	free(c->charon.vici);
	free(c->charon.binary);
	free(c->charon.strongswan_conf);
	free(c->supervisor.control_socket);
	free(c->supervisor.control_group);
	free(c->supervisor.bridge_user);
	free(c->supervisor.bridge_path);
	free(c->https.listen_text);
	free(c->https.cert);
	free(c->https.key);
	free(c->https.client_ca);
	free(c->https.tokens_file);
	c->https = (struct cfg_https){0};
}
