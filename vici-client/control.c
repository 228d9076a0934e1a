/*
 * Control commands (initiate, terminate, ...) with charon's log of the
 * attempt: a streamed command on control-log whose lines are kept, so that
 * a failure can say why and not only "failed".
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vici-client/vici_int.h"

struct control {
	vici_control_cb cb;
	void *arg;
	char *log; /* '\n'-ended lines, NUL-terminated; NULL until the first */
	size_t len;
	size_t cap;
};

/* Drops whole lines from the front until need more bytes fit. */
static void log_make_room(struct control *ct, size_t need)
{
	size_t drop = 0;

	while (ct->len - drop + need > VICI_CONTROL_LOG_MAX && drop < ct->len) {
		char *nl = memchr(ct->log + drop, '\n', ct->len - drop);

		drop = nl ? (size_t)(nl - ct->log) + 1 : ct->len;
	}
	if (drop) {
		memmove(ct->log, ct->log + drop, ct->len - drop + 1);
		ct->len -= drop;
	}
}

/* Appends line (len bytes, no '\n') and a '\n'; a line lost to ENOMEM is
 * not worth failing the command for. */
static void log_append(struct control *ct, const char *line, size_t len)
{
	size_t cap = ct->cap ? ct->cap : 256;
	char *p;

	log_make_room(ct, len + 1);
	if (ct->len + len + 2 > ct->cap) {
		while (cap < ct->len + len + 2)
			cap *= 2;
		p = realloc(ct->log, cap);
		if (!p)
			return;
		ct->log = p;
		ct->cap = cap;
	}
	memcpy(ct->log + ct->len, line, len);
	ct->len += len;
	ct->log[ct->len++] = '\n';
	ct->log[ct->len] = '\0';
}

/* One event as "[GROUP] IKE_NAME: message"; longer lines are cut. */
static void on_log(void *arg, const char *event, const struct vici_tree *msg)
{
	struct control *ct = arg;
	const char *group = vici_tree_get(msg, "group");
	const char *name = vici_tree_get(msg, "ikesa-name");
	const char *text = vici_tree_get(msg, "msg");
	char line[VICI_CONTROL_LINE_MAX];
	int n;

	(void)event;
	n = snprintf(line, sizeof(line), "[%s] %s%s%s", group ? group : "?", name ? name : "",
		     name ? ": " : "", text ? text : "");
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(line))
		n = (int)sizeof(line) - 1;
	/* A line break inside a value would split the line. */
	for (int i = 0; i < n; i++)
		if (line[i] == '\n' || line[i] == '\r')
			line[i] = ' ';
	log_append(ct, line, (size_t)n);
}

static void on_done(void *arg, int err, const struct vici_tree *reply)
{
	struct control *ct = arg;

	ct->cb(ct->arg, err, reply, ct->log ? ct->log : "");
	free(ct->log);
	free(ct);
}

int vici_conn_control(struct vici_conn *c, const char *cmd, const uint8_t *msg, size_t len,
		      int timeout_ms, vici_control_cb cb, void *arg)
{
	struct control *ct;
	int rc;

	if (!cb)
		return -EINVAL;
	ct = calloc(1, sizeof(*ct));
	if (!ct)
		return -ENOMEM;
	ct->cb = cb;
	ct->arg = arg;
	rc = vici_conn_stream(c, cmd, "control-log", msg, len, timeout_ms, on_log, on_done, ct);
	if (rc < 0)
		free(ct);
	return rc;
}

static int notify_char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

/* The length of the notify name (upper-case letters, digits, '_') at s. */
static size_t notify_len(const char *s, size_t max)
{
	size_t n = 0;

	while (n < max && notify_char(s[n]))
		n++;
	return n;
}

/* Whether [p, end) starts with prefix. */
static int starts(const char *p, const char *end, const char *prefix)
{
	size_t n = strlen(prefix);

	return (size_t)(end - p) >= n && !memcmp(p, prefix, n);
}

/* Notifies this end sends when it refuses the peer, as charon abbreviates
 * them in "generating ... [ N(AUTH_FAILED) ]", and their full names. */
static const struct {
	const char *tag, *reason;
} sent_notifies[] = {
    {"N(AUTH_FAILED)", "AUTHENTICATION_FAILED"},
    {"N(NO_PROP)", "NO_PROPOSAL_CHOSEN"},
    {"N(TS_UNACCEPT)", "TS_UNACCEPTABLE"},
};

/* "generating ... [ N(AUTH_FAILED) ]": this end refused the peer (its
 * certificate does not chain to the configured CA, say). */
static const char *sent_reason(const char *line, size_t n, size_t *len)
{
	static const char generating[] = "generating ";

	if (!memmem(line, n, generating, sizeof(generating) - 1))
		return NULL;
	for (size_t i = 0; i < sizeof(sent_notifies) / sizeof(sent_notifies[0]); i++) {
		if (memmem(line, n, sent_notifies[i].tag, strlen(sent_notifies[i].tag))) {
			*len = strlen(sent_notifies[i].reason);
			return sent_notifies[i].reason;
		}
	}
	return NULL;
}

/*
 * charon 5.x says "received NAME notify error" for a failed exchange and
 * "received NAME notify, no CHILD_SA built" when only the CHILD_SA failed;
 * "giving up after N retransmits" when the peer never answered; and
 * "generating ... [ N(AUTH_FAILED) ]" when this end refused the peer.
 * Returns the reason in line[0..n) (or a static name) and its length, or NULL.
 */
static const char *reason_in(const char *line, size_t n, size_t *len)
{
	static const char received[] = "received ", giving_up[] = "giving up after ";
	const char *p = memmem(line, n, received, sizeof(received) - 1);

	if (p) {
		const char *end = line + n;
		size_t k;

		p += sizeof(received) - 1;
		k = notify_len(p, (size_t)(end - p));
		if (k && (starts(p + k, end, " notify error") || starts(p + k, end, " notify, "))) {
			*len = k;
			return p;
		}
	}
	if (memmem(line, n, giving_up, sizeof(giving_up) - 1)) {
		*len = strlen(VICI_REASON_NO_ANSWER);
		return VICI_REASON_NO_ANSWER;
	}
	return sent_reason(line, n, len);
}

size_t vici_control_reason(const char *log, char *buf, size_t size)
{
	const char *best = NULL;
	size_t best_len = 0;

	if (size)
		buf[0] = '\0';
	for (const char *line = log; line && *line;) {
		const char *nl = strchr(line, '\n');
		size_t n = nl ? (size_t)(nl - line) : strlen(line), len;
		const char *r = reason_in(line, n, &len);

		if (r) {
			best = r;
			best_len = len;
		}
		line = nl ? nl + 1 : NULL;
	}
	if (!best || best_len >= size)
		return 0;
	memcpy(buf, best, best_len);
	buf[best_len] = '\0';
	return best_len;
}
