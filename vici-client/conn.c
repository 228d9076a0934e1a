/*
 * vici connection: one non-blocking socket to charon, a FIFO of requests of
 * which only the head talks to charon, events dispatched as they come, and
 * deadlines and reconnects driven by the caller's loop. The bytes on the wire
 * come from codec.c; this file only moves them.
 */
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "vici-client/vici.h"
#include "vici-client/vici_int.h"

#define IN_CHUNK 4096 /* smallest input buffer; grows to one whole segment */
#define HOST_MAX 255
#define PORT_MAX 5
/* An EVENT_(UN)REGISTER segment: length, type, name length, name. */
#define CTL_MAX (VICI_LEN_SIZE + 2 + VICI_NAME_MAX)

enum conn_state {
	ST_IDLE,       /* never connected */
	ST_CONNECTING, /* connect() under way */
	ST_UP,
	ST_WAIT, /* lost; next attempt at retry_at */
};

enum req_kind {
	REQ_COMMAND,
	REQ_STREAM,
	REQ_SUBSCRIBE, /* internal: registers a subscription */
};

/* How far the head request got; queued requests stay PH_QUEUED. */
enum req_phase {
	PH_QUEUED,
	PH_REGISTER,
	PH_COMMAND,
	PH_UNREGISTER,
};

struct vici_req {
	struct vici_req *next;
	enum req_kind kind;
	enum req_phase phase;
	char event[VICI_NAME_MAX + 1];
	uint8_t *seg; /* the encoded CMD_REQUEST; handed to the output when sent */
	size_t seg_len;
	int64_t deadline;
	vici_reply_cb cb; /* NULL once called */
	vici_event_cb event_cb;
	void *arg;
	struct vici_tree **keep; /* vici_call(): takes the reply instead of freeing it */
};

struct vici_sub {
	struct vici_sub *next;
	char event[VICI_NAME_MAX + 1];
	vici_event_cb cb;
	void *arg;
};

struct vici_conn {
	int is_unix;
	struct sockaddr_un sun;
	char host[HOST_MAX + 1];
	char port[PORT_MAX + 1];

	int fd;
	enum conn_state state;
	int64_t retry_at;
	int64_t backoff_ms;
	vici_state_cb state_cb;
	void *state_arg;

	struct vici_req *head, **tail;
	size_t queued;
	struct vici_sub *subs;
	size_t nsubs;

	/* One packet at a time goes out: the head's current phase. */
	uint8_t *out; /* out_own, or ctl */
	uint8_t *out_own;
	size_t out_len, out_off;
	uint8_t ctl[CTL_MAX];

	uint8_t *in;
	size_t in_len, in_cap;
};

int64_t vici_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int name_ok(const char *name)
{
	return name && vici_name_ok((const uint8_t *)name, strlen(name));
}

/* ---- URI ---- */

static int parse_unix(struct vici_conn *c, const char *path)
{
	size_t len = strlen(path);

	if (path[0] != '/' || len >= sizeof(c->sun.sun_path))
		return -EINVAL;
	c->is_unix = 1;
	c->sun.sun_family = AF_UNIX;
	memcpy(c->sun.sun_path, path, len + 1);
	return 0;
}

/* "host:port" or "[v6]:port"; the port is 1..65535 in decimal. */
static int parse_tcp(struct vici_conn *c, const char *hp)
{
	const char *colon, *host = hp, *host_end;
	unsigned long port;
	char *end;

	if (hp[0] == '[') {
		host = hp + 1;
		host_end = strchr(host, ']');
		if (!host_end || host_end[1] != ':')
			return -EINVAL;
		colon = host_end + 1;
	} else {
		colon = strchr(hp, ':');
		if (!colon || strchr(colon + 1, ':'))
			return -EINVAL;
		host_end = colon;
	}
	if (host_end == host || (size_t)(host_end - host) > HOST_MAX)
		return -EINVAL;
	if (colon[1] < '0' || colon[1] > '9' || strlen(colon + 1) > PORT_MAX)
		return -EINVAL;
	errno = 0;
	port = strtoul(colon + 1, &end, 10);
	if (errno || *end || port == 0 || port > 65535)
		return -EINVAL;
	memcpy(c->host, host, (size_t)(host_end - host));
	c->host[host_end - host] = '\0';
	memcpy(c->port, colon + 1, strlen(colon + 1) + 1);
	return 0;
}

static int parse_uri(struct vici_conn *c, const char *uri)
{
	if (!strncmp(uri, "unix://", 7))
		return parse_unix(c, uri + 7);
	if (!strncmp(uri, "tcp://", 6))
		return parse_tcp(c, uri + 6);
	return -EINVAL;
}

int vici_conn_new(const char *uri, struct vici_conn **out)
{
	struct vici_conn *c;
	int rc;

	*out = NULL;
	if (!uri)
		return -EINVAL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	rc = parse_uri(c, uri);
	if (rc < 0) {
		free(c);
		return rc;
	}
	c->fd = -1;
	c->state = ST_IDLE;
	c->backoff_ms = VICI_BACKOFF_MIN_MS;
	c->tail = &c->head;
	*out = c;
	return 0;
}

/* ---- Queue ---- */

static void req_free(struct vici_req *r)
{
	free(r->seg);
	free(r);
}

static struct vici_req *queue_pop(struct vici_conn *c)
{
	struct vici_req *r = c->head;

	if (!r)
		return NULL;
	c->head = r->next;
	if (!c->head)
		c->tail = &c->head;
	c->queued--;
	r->next = NULL;
	return r;
}

static void queue_append(struct vici_conn *c, struct vici_req *r)
{
	r->next = NULL;
	*c->tail = r;
	c->tail = &r->next;
	c->queued++;
}

/* Calls the request's callback once; hands the reply over to vici_call(). */
static void req_report(struct vici_req *r, int err, struct vici_tree *reply)
{
	vici_reply_cb cb = r->cb;

	r->cb = NULL;
	if (cb)
		cb(r->arg, err, reply);
	if (r->keep && reply && !err)
		*r->keep = reply;
	else
		vici_tree_free(reply);
}

/* Reports err to every request of a detached list and frees it. */
static void reqs_fail(struct vici_req *list, int err)
{
	while (list) {
		struct vici_req *next = list->next;

		req_report(list, err, NULL);
		req_free(list);
		list = next;
	}
}

/* ---- Output ---- */

static void out_reset(struct vici_conn *c)
{
	free(c->out_own);
	c->out_own = NULL;
	c->out = NULL;
	c->out_len = c->out_off = 0;
}

/* EVENT_REGISTER/UNREGISTER are tiny: encoded in place, nothing to fail. */
static void out_ctl(struct vici_conn *c, enum vici_packet_type type, const char *event)
{
	size_t nlen = strlen(event);

	vici_put32(c->ctl, (uint32_t)(2 + nlen));
	c->ctl[VICI_LEN_SIZE] = (uint8_t)type;
	c->ctl[VICI_LEN_SIZE + 1] = (uint8_t)nlen;
	memcpy(c->ctl + VICI_LEN_SIZE + 2, event, nlen);
	c->out = c->ctl;
	c->out_len = VICI_LEN_SIZE + 2 + nlen;
	c->out_off = 0;
}

static void out_command(struct vici_conn *c, struct vici_req *r)
{
	c->out_own = r->seg;
	c->out = r->seg;
	c->out_len = r->seg_len;
	c->out_off = 0;
	r->seg = NULL;
}

/* Puts the head's packet for its next phase on the output. */
static void req_enter(struct vici_conn *c, struct vici_req *r, enum req_phase phase)
{
	r->phase = phase;
	if (phase == PH_COMMAND)
		out_command(c, r);
	else
		out_ctl(c, phase == PH_REGISTER ? VICI_EVENT_REGISTER : VICI_EVENT_UNREGISTER,
			r->event);
}

/* Starts the head request when the line is free. Safe to call any time. */
static void kick(struct vici_conn *c)
{
	struct vici_req *r = c->head;

	if (c->state != ST_UP || !r || r->phase != PH_QUEUED || c->out)
		return;
	req_enter(c, r, r->kind == REQ_COMMAND ? PH_COMMAND : PH_REGISTER);
}

/* Sends what the socket takes. Returns 0 or a negative errno (connection lost). */
static int flush(struct vici_conn *c)
{
	while (c->out && c->out_off < c->out_len) {
		ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
		c->out_off += (size_t)n;
	}
	if (c->out)
		out_reset(c);
	return 0;
}

/* ---- Losing and (re)gaining the connection ---- */

static void state_report(struct vici_conn *c, enum vici_state st, int err)
{
	if (c->state_cb)
		c->state_cb(c->state_arg, st, err);
}

/* Takes the internal registrations out of the queue: reconnecting redoes them. */
static void drop_subscribe_reqs(struct vici_conn *c)
{
	struct vici_req **pp = &c->head, *r;

	c->tail = &c->head;
	while ((r = *pp)) {
		if (r->kind == REQ_SUBSCRIBE) {
			*pp = r->next;
			c->queued--;
			req_free(r);
			continue;
		}
		c->tail = &r->next;
		pp = &r->next;
	}
}

/*
 * Closes the socket and schedules the next attempt: at once when
 * retry_now, else after the backoff, which doubles. Reports DOWN with why,
 * then fails queued requests with req_err unless keep_queued.
 */
static void conn_lost(struct vici_conn *c, int why, int req_err, int keep_queued, int retry_now)
{
	struct vici_req *failed = NULL;

	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	out_reset(c);
	free(c->in);
	c->in = NULL;
	c->in_len = c->in_cap = 0;
	c->state = ST_WAIT;
	c->retry_at = retry_now ? 0 : vici_now_ms() + c->backoff_ms;
	if (!retry_now)
		c->backoff_ms = c->backoff_ms * 2 > VICI_BACKOFF_MAX_MS ? VICI_BACKOFF_MAX_MS
									: c->backoff_ms * 2;
	drop_subscribe_reqs(c);
	if (!keep_queued) {
		failed = c->head;
		c->head = NULL;
		c->tail = &c->head;
		c->queued = 0;
	}
	state_report(c, VICI_STATE_DOWN, why);
	reqs_fail(failed, req_err);
}

/* The first subscription to the event s is for. */
static const struct vici_sub *sub_first(const struct vici_conn *c, const struct vici_sub *s)
{
	const struct vici_sub *f = c->subs;

	while (strcmp(f->event, s->event))
		f = f->next;
	return f;
}

/* Queues the registration of every subscription ahead of everything else. */
static void subs_register(struct vici_conn *c)
{
	struct vici_req *list = NULL, **lt = &list;
	size_t n = 0;

	for (struct vici_sub *s = c->subs; s; s = s->next) {
		struct vici_req *r;

		if (sub_first(c, s) != s)
			continue; /* one registration per event name */
		r = calloc(1, sizeof(*r));
		if (!r)
			break; /* the subscription stays silent until the next reconnect */
		r->kind = REQ_SUBSCRIBE;
		memcpy(r->event, s->event, sizeof(r->event));
		r->deadline = vici_now_ms() + VICI_REGISTER_TIMEOUT_MS;
		*lt = r;
		lt = &r->next;
		n++;
	}
	if (!list)
		return;
	*lt = c->head;
	if (!c->head)
		c->tail = lt;
	c->head = list;
	c->queued += n;
}

static void conn_up(struct vici_conn *c)
{
	c->state = ST_UP;
	c->backoff_ms = VICI_BACKOFF_MIN_MS;
	subs_register(c);
	state_report(c, VICI_STATE_UP, 0);
	kick(c);
}

static int open_tcp(struct vici_conn *c)
{
	struct addrinfo hints = {
	    .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
	struct addrinfo *ai;
	int rc;

	rc = getaddrinfo(c->host, c->port, &hints, &ai);
	if (rc)
		return rc == EAI_MEMORY ? -ENOMEM : -EHOSTUNREACH;
	c->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	rc = c->fd < 0 ? -errno : 0;
	if (!rc && connect(c->fd, ai->ai_addr, ai->ai_addrlen) < 0 && errno != EINPROGRESS)
		rc = -errno;
	freeaddrinfo(ai);
	return rc;
}

/* A unix connect completes or fails at once; EAGAIN (backlog full) is a failure. */
static int open_unix(struct vici_conn *c)
{
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		return -errno;
	if (connect(c->fd, (const struct sockaddr *)&c->sun, sizeof(c->sun)) < 0)
		return -errno;
	return 0;
}

/* One attempt; a failure is reported and the next attempt scheduled. */
static int conn_attempt(struct vici_conn *c)
{
	int rc;

	if (c->state == ST_UP)
		return -EISCONN;
	if (c->state == ST_CONNECTING)
		return -EALREADY;
	rc = c->is_unix ? open_unix(c) : open_tcp(c);
	if (rc < 0) {
		conn_lost(c, rc, rc, 0, 0);
		return rc;
	}
	/* Even a finished connect is reported UP from vici_conn_process(), so
	 * success runs no callback inside this call. */
	c->state = ST_CONNECTING;
	return 0;
}

int vici_conn_connect(struct vici_conn *c)
{
	return conn_attempt(c);
}

static void finish_connect(struct vici_conn *c)
{
	int err = 0;
	socklen_t len = sizeof(err);

	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	if (err)
		conn_lost(c, -err, -err, 0, 0);
	else
		conn_up(c);
}

/* ---- Input ---- */

static int on_event(struct vici_conn *c, const struct vici_packet *p)
{
	struct vici_tree *t;
	struct vici_req *r = c->head;
	int rc = vici_tree_parse(p->msg, p->msg_len, &t);

	if (rc < 0)
		return rc == -ENOMEM ? rc : -EBADMSG;
	for (struct vici_sub *s = c->subs; s; s = s->next)
		if (!strcmp(s->event, p->name))
			s->cb(s->arg, p->name, t);
	if (r && r->kind == REQ_STREAM && r->phase == PH_COMMAND && r->event_cb &&
	    !strcmp(r->event, p->name))
		r->event_cb(r->arg, p->name, t);
	vici_tree_free(t);
	return 0;
}

/* CMD_RESPONSE or CMD_UNKNOWN: belongs to the head, which must have sent a command. */
static int on_cmd_reply(struct vici_conn *c, const struct vici_packet *p)
{
	struct vici_req *r = c->head;
	struct vici_tree *t = NULL;
	int err = -ENOENT;

	if (!r || r->phase != PH_COMMAND || c->out)
		return -EBADMSG;
	if (p->type == VICI_CMD_RESPONSE) {
		err = vici_tree_parse(p->msg, p->msg_len, &t);
		if (err < 0)
			return err == -ENOMEM ? err : -EBADMSG;
	}
	if (r->kind == REQ_STREAM) {
		/* The caller is done with arg after its callback; the
		 * unregistration gets a deadline of its own. */
		r->deadline = vici_now_ms() + VICI_REGISTER_TIMEOUT_MS;
		req_enter(c, r, PH_UNREGISTER);
		req_report(r, err, t);
		return 0;
	}
	r = queue_pop(c);
	req_report(r, err, t);
	req_free(r);
	return 0;
}

/* EVENT_CONFIRM or EVENT_UNKNOWN: answers the head's (un)registration. */
static int on_event_reply(struct vici_conn *c, const struct vici_packet *p)
{
	struct vici_req *r = c->head;
	int ok = p->type == VICI_EVENT_CONFIRM;

	if (!r || (r->phase != PH_REGISTER && r->phase != PH_UNREGISTER) || c->out)
		return -EBADMSG;
	if (r->kind == REQ_STREAM && r->phase == PH_REGISTER && ok) {
		req_enter(c, r, PH_COMMAND);
		return 0;
	}
	/* An unknown subscription stays silent: retrying would not teach charon. */
	r = queue_pop(c);
	if (r->phase == PH_REGISTER && !ok)
		req_report(r, -ENOENT, NULL);
	req_free(r);
	return 0;
}

static int on_segment(struct vici_conn *c, const uint8_t *seg, size_t len)
{
	struct vici_packet p;
	int rc = vici_packet_decode(seg, len, &p);

	if (rc < 0)
		return rc;
	switch (p.type) {
	case VICI_EVENT:
		return on_event(c, &p);
	case VICI_CMD_RESPONSE:
	case VICI_CMD_UNKNOWN:
		return on_cmd_reply(c, &p);
	case VICI_EVENT_CONFIRM:
	case VICI_EVENT_UNKNOWN:
		return on_event_reply(c, &p);
	default:
		return -EBADMSG; /* charon never sends requests */
	}
}

/* Makes room for the segment being received; refuses an oversized one first. */
static int in_reserve(struct vici_conn *c)
{
	size_t want = IN_CHUNK;
	uint8_t *p;

	if (c->in_len >= VICI_LEN_SIZE) {
		uint32_t announced = vici_get32(c->in);

		if (announced > VICI_SEGMENT_MAX)
			return -EMSGSIZE;
		if (VICI_LEN_SIZE + (size_t)announced > want)
			want = VICI_LEN_SIZE + (size_t)announced;
	}
	if (c->in_cap >= want)
		return 0;
	p = realloc(c->in, want);
	if (!p)
		return -ENOMEM;
	c->in = p;
	c->in_cap = want;
	return 0;
}

/* Handles every whole segment in the buffer and keeps the partial rest. */
static int in_consume(struct vici_conn *c)
{
	size_t off = 0, seg;
	int rc;

	while ((rc = vici_segment_length(c->in + off, c->in_len - off, &seg)) > 0) {
		rc = on_segment(c, c->in + off, seg);
		if (rc < 0)
			return rc;
		off += seg;
	}
	if (rc < 0)
		return rc;
	memmove(c->in, c->in + off, c->in_len - off);
	c->in_len -= off;
	return 0;
}

/* Reads until the socket is drained. Returns 0 or why the connection is lost. */
static int read_input(struct vici_conn *c)
{
	for (;;) {
		ssize_t n;
		int rc = in_reserve(c);

		if (rc < 0)
			return rc;
		n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
		if (n == 0)
			return -ECONNRESET;
		c->in_len += (size_t)n;
		rc = in_consume(c);
		if (rc < 0)
			return rc;
	}
}

void vici_conn_process(struct vici_conn *c, int readable, int writable)
{
	int rc = 0;

	if (c->state == ST_CONNECTING) {
		if (writable || readable)
			finish_connect(c);
		if (c->state != ST_UP)
			return;
		writable = 1; /* try to send the first request right away */
	}
	if (c->state != ST_UP)
		return;
	if (writable)
		rc = flush(c);
	if (!rc && readable)
		rc = read_input(c);
	kick(c);
	/* A reply may have released the next request: try it now, the socket
	 * says EAGAIN if it is not writable. */
	if (!rc && c->out)
		rc = flush(c);
	if (rc < 0)
		conn_lost(c, rc, -ECONNRESET, 0, 0);
}

/* ---- Deadlines ---- */

int64_t vici_conn_next_deadline(const struct vici_conn *c, int64_t now_ms)
{
	int64_t next = -1;

	if (c->state == ST_WAIT)
		next = c->retry_at;
	for (const struct vici_req *r = c->head; r; r = r->next)
		if (next < 0 || r->deadline < next)
			next = r->deadline;
	if (next < 0)
		return -1;
	return next > now_ms ? next - now_ms : 0;
}

/* Fails the waiting requests whose deadline has passed, in queue order. */
static void expire_queued(struct vici_conn *c, int64_t now_ms)
{
	struct vici_req *expired = NULL, **et = &expired, **pp = &c->head, *r;

	c->tail = &c->head;
	while ((r = *pp)) {
		if (r->phase == PH_QUEUED && r->deadline <= now_ms) {
			*pp = r->next;
			c->queued--;
			r->next = NULL;
			*et = r;
			et = &r->next;
			continue;
		}
		c->tail = &r->next;
		pp = &r->next;
	}
	reqs_fail(expired, -ETIMEDOUT);
}

void vici_conn_tick(struct vici_conn *c, int64_t now_ms)
{
	struct vici_req *r = c->head;

	if (r && r->phase != PH_QUEUED && r->deadline <= now_ms) {
		/* charon may still answer; only a fresh connection is safe. */
		r = queue_pop(c);
		conn_lost(c, -ETIMEDOUT, -ECONNRESET, 1, 1);
		req_report(r, -ETIMEDOUT, NULL);
		req_free(r);
	}
	expire_queued(c, now_ms);
	if (c->state == ST_WAIT && c->retry_at <= now_ms)
		conn_attempt(c); /* a failure is reported and rescheduled */
}

/* ---- Requests ---- */

static int req_queue(struct vici_conn *c, struct vici_req *r, const char *cmd, const uint8_t *msg,
		     size_t len, int timeout_ms)
{
	int rc;

	if (!name_ok(cmd) || timeout_ms <= 0 || !r->cb || (len && !msg))
		return -EINVAL;
	if (len > VICI_MSG_MAX)
		return -EMSGSIZE;
	if (c->queued >= VICI_QUEUE_MAX)
		return -ENOBUFS;
	rc = vici_packet_encode(VICI_CMD_REQUEST, cmd, msg, len, &r->seg, &r->seg_len);
	if (rc < 0)
		return rc;
	r->deadline = vici_now_ms() + timeout_ms;
	queue_append(c, r);
	kick(c);
	return 0;
}

static int command_new(struct vici_conn *c, const char *cmd, const uint8_t *msg, size_t len,
		       int timeout_ms, vici_reply_cb cb, void *arg, struct vici_tree **keep)
{
	struct vici_req *r = calloc(1, sizeof(*r));
	int rc;

	if (!r)
		return -ENOMEM;
	r->kind = REQ_COMMAND;
	r->cb = cb;
	r->arg = arg;
	r->keep = keep;
	rc = req_queue(c, r, cmd, msg, len, timeout_ms);
	if (rc < 0)
		req_free(r);
	return rc;
}

int vici_conn_command(struct vici_conn *c, const char *cmd, const uint8_t *msg, size_t len,
		      int timeout_ms, vici_reply_cb cb, void *arg)
{
	return command_new(c, cmd, msg, len, timeout_ms, cb, arg, NULL);
}

int vici_conn_stream(struct vici_conn *c, const char *cmd, const char *event, const uint8_t *msg,
		     size_t len, int timeout_ms, vici_event_cb event_cb, vici_reply_cb cb,
		     void *arg)
{
	struct vici_req *r;
	int rc;

	if (!name_ok(event))
		return -EINVAL;
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->kind = REQ_STREAM;
	memcpy(r->event, event, strlen(event) + 1);
	r->event_cb = event_cb;
	r->cb = cb;
	r->arg = arg;
	rc = req_queue(c, r, cmd, msg, len, timeout_ms);
	if (rc < 0)
		req_free(r);
	return rc;
}

static int sub_registered(const struct vici_conn *c, const char *event)
{
	for (const struct vici_sub *s = c->subs; s; s = s->next)
		if (!strcmp(s->event, event))
			return 1;
	return 0;
}

int vici_conn_subscribe(struct vici_conn *c, const char *event, vici_event_cb cb, void *arg)
{
	struct vici_sub *s, **pp;
	struct vici_req *r = NULL;
	int known;

	if (!name_ok(event) || !cb)
		return -EINVAL;
	if (c->nsubs >= VICI_SUBS_MAX || c->queued >= VICI_QUEUE_MAX)
		return -ENOBUFS;
	known = sub_registered(c, event);
	s = calloc(1, sizeof(*s));
	if (!known && c->state == ST_UP)
		r = calloc(1, sizeof(*r));
	if (!s || (!known && c->state == ST_UP && !r)) {
		free(s);
		free(r);
		return -ENOMEM;
	}
	memcpy(s->event, event, strlen(event) + 1);
	s->cb = cb;
	s->arg = arg;
	for (pp = &c->subs; *pp; pp = &(*pp)->next)
		;
	*pp = s;
	c->nsubs++;
	if (r) {
		r->kind = REQ_SUBSCRIBE;
		memcpy(r->event, s->event, sizeof(r->event));
		r->deadline = vici_now_ms() + VICI_REGISTER_TIMEOUT_MS;
		queue_append(c, r);
		kick(c);
	}
	return 0;
}

void vici_conn_on_state(struct vici_conn *c, vici_state_cb cb, void *arg)
{
	c->state_cb = cb;
	c->state_arg = arg;
}

int vici_conn_fd(const struct vici_conn *c)
{
	return c->fd;
}

int vici_conn_want(const struct vici_conn *c)
{
	if (c->state == ST_CONNECTING)
		return VICI_WANT_WRITE;
	if (c->state != ST_UP)
		return 0;
	return VICI_WANT_READ | (c->out ? VICI_WANT_WRITE : 0);
}

void vici_conn_free(struct vici_conn *c)
{
	if (!c)
		return;
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->state = ST_IDLE;
	/* Callbacks may queue more while they are told: loop until none is left. */
	while (c->head) {
		struct vici_req *list = c->head;

		c->head = NULL;
		c->tail = &c->head;
		c->queued = 0;
		reqs_fail(list, -ECANCELED);
	}
	while (c->subs) {
		struct vici_sub *s = c->subs;

		c->subs = s->next;
		free(s);
	}
	out_reset(c);
	free(c->in);
	free(c);
}

/* ---- Blocking convenience ---- */

struct call_state {
	int done;
	int err;
};

static void call_done(void *arg, int err, const struct vici_tree *reply)
{
	struct call_state *st = arg;

	(void)reply;
	st->done = 1;
	st->err = err;
}

void vici_conn_wait(struct vici_conn *c, const int *done)
{
	while (!*done) {
		struct pollfd pfd = {.fd = vici_conn_fd(c), .events = 0};
		int want = vici_conn_want(c);
		int64_t t = vici_conn_next_deadline(c, vici_now_ms());
		int n;

		pfd.events = (short)((want & VICI_WANT_READ ? POLLIN : 0) |
				     (want & VICI_WANT_WRITE ? POLLOUT : 0));
		/* The request's own deadline bounds t: this loop ends. */
		n = poll(&pfd, pfd.fd >= 0 ? 1 : 0, t < 0 || t > INT_MAX ? INT_MAX : (int)t);
		if (n > 0)
			vici_conn_process(c, pfd.revents & (POLLIN | POLLHUP | POLLERR),
					  pfd.revents & (POLLOUT | POLLHUP | POLLERR));
		vici_conn_tick(c, vici_now_ms());
	}
}

int vici_call(struct vici_conn *c, const char *cmd, const uint8_t *msg, size_t len, int timeout_ms,
	      struct vici_tree **reply)
{
	struct call_state st = {0};
	int rc;

	*reply = NULL;
	if (c->state == ST_IDLE || c->state == ST_WAIT) {
		rc = vici_conn_connect(c);
		if (rc < 0)
			return rc;
	}
	rc = command_new(c, cmd, msg, len, timeout_ms, call_done, &st, reply);
	if (rc < 0)
		return rc;
	vici_conn_wait(c, &st.done);
	return st.err;
}

const char *vici_reply_error(const struct vici_tree *reply)
{
	const char *success, *msg;

	if (!reply)
		return NULL;
	success = vici_tree_get(reply, "success");
	if (!success || strcmp(success, "no"))
		return NULL;
	msg = vici_tree_get(reply, "errmsg");
	return msg ? msg : "";
}
