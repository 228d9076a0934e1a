#include "mllp-bridge/tunnel.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "mllp-bridge/gate.h"
#include "mllp-bridge/log.h"

_Static_assert(GATE_CIDRS_MAX >= IPC_GATE_MAX, "a gate snapshot must fit the gate");

#define TUNNEL_REASON_MAX 128

struct tunnel {
	struct event_base *base;
	int fd; /* -1 once the link is lost */
	struct gate *gate;
	struct tunnel_hooks hooks;
	struct event *rd, *tick;
	int status_encode_failed; /* said once in the log */
	struct tunnel_stats st;
	struct cfg_cidr cidrs[IPC_GATE_MAX]; /* one snapshot, converted */
	union ipc_msg msg;		     /* large: kept off the stack */
	uint8_t buf[IPC_MSG_MAX];
};

/* Fail closed first, then tell: by the time anyone hears of the loss, no
 * peer is allowed any more. */
static void lose(struct tunnel *t, const char *reason)
{
	if (t->fd < 0)
		return;
	event_del(t->rd);
	event_del(t->tick);
	close(t->fd);
	t->fd = -1;
	t->st.linked = 0;
	gate_close(t->gate);
	gate_set_linked(t->gate, 0);
	log_event(LOG_ERR, "supervisor_link_lost",
		  " reason=\"%s\" action=\"gate closed, stopping\"", reason);
	t->hooks.lost(t->hooks.arg, reason);
}

/* ---- supervisor → bridge ---- */

static void apply_gate(struct tunnel *t, const struct ipc_gate *g)
{
	struct gate_stats before, after;
	int err;

	for (size_t i = 0; i < g->n; i++) {
		t->cidrs[i] =
		    (struct cfg_cidr){.family = g->cidr[i].family, .prefix = g->cidr[i].prefix};
		memcpy(t->cidrs[i].addr, g->cidr[i].addr, sizeof(t->cidrs[i].addr));
	}
	gate_stats(t->gate, &before);
	err = gate_set(t->gate, t->cidrs, g->n);
	gate_stats(t->gate, &after);
	t->st.gates++;
	t->st.generation = g->generation;
	if (err < 0)
		log_event(LOG_ERR, "gate_set_failed", " generation=%u error=\"%s\"", g->generation,
			  strerror(-err));
	else if (after.changes != before.changes)
		log_event(LOG_INFO, "gate_changed", " generation=%u cidrs=%u", g->generation,
			  (unsigned)g->n);
}

/* One datagram of n bytes in t->buf. Returns 0, or -1 when the link was lost. */
static int handle(struct tunnel *t, size_t n)
{
	char why[TUNNEL_REASON_MAX];
	enum ipc_type type;
	int err = ipc_decode(t->buf, n, &type, &t->msg);

	if (err < 0) {
		snprintf(why, sizeof(why), "bad message (%zu bytes): %s", n, strerror(-err));
		lose(t, why);
		return -1;
	}
	switch (type) {
	case IPC_GATE:
		apply_gate(t, &t->msg.gate);
		return 0;
	case IPC_TUNNELS:
		t->st.tunnels = t->msg.tunnels;
		t->st.have_tunnels = 1;
		return 0;
	case IPC_STATUS:
	case IPC_OUTBOX:
		break;
	}
	lose(t, "bad message: STATUS and OUTBOX go from the bridge to the supervisor");
	return -1;
}

/* Reads at most TUNNEL_READS_PER_CB datagrams: a chatty supervisor cannot
 * hold the loop. The rest wait for the next wake-up (level-triggered). */
static void on_read(evutil_socket_t fd, short what, void *arg)
{
	struct tunnel *t = arg;
	char why[TUNNEL_REASON_MAX];

	(void)what;
	for (int i = 0; i < TUNNEL_READS_PER_CB; i++) {
		struct iovec iov = {.iov_base = t->buf, .iov_len = sizeof(t->buf)};
		struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
		ssize_t n = recvmsg(fd, &mh, MSG_DONTWAIT);

		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
			return;
		if (n < 0) {
			snprintf(why, sizeof(why), "receive failed: %s", strerror(errno));
			lose(t, why);
			return;
		}
		if (n == 0) { /* the protocol has no empty datagram: this is the end */
			lose(t, "end of file: the supervisor closed the link");
			return;
		}
		if (mh.msg_flags & MSG_TRUNC) {
			lose(t, "bad message: datagram longer than IPC_MSG_MAX");
			return;
		}
		if (handle(t, (size_t)n) < 0)
			return;
	}
}

/* ---- bridge → supervisor ---- */

/* Encodes t->msg as type and sends it; a full socket skips it (the next
 * one says the same, newer). Returns -1 when the link was lost. */
static int send_msg(struct tunnel *t, enum ipc_type type)
{
	char why[TUNNEL_REASON_MAX];
	size_t len;
	int err;

	if ((err = ipc_encode(type, &t->msg, t->buf, sizeof(t->buf), &len)) < 0) {
		if (!t->status_encode_failed++)
			log_event(LOG_ERR, "status_encode_failed", " type=%d error=\"%s\"",
				  (int)type, strerror(-err));
		return 0;
	}
	if (send(t->fd, t->buf, len, MSG_DONTWAIT | MSG_NOSIGNAL) == (ssize_t)len) {
		t->st.status_sent++;
	} else if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) {
		t->st.status_skipped++;
	} else {
		snprintf(why, sizeof(why), "send failed: %s", strerror(errno));
		lose(t, why);
		return -1;
	}
	return 0;
}

static void send_status(struct tunnel *t)
{
	memset(&t->msg.status, 0, sizeof(t->msg.status));
	t->hooks.status(t->hooks.arg, &t->msg.status);
	if (send_msg(t, IPC_STATUS) < 0 || !t->hooks.outbox)
		return;
	memset(&t->msg.outbox, 0, sizeof(t->msg.outbox));
	t->hooks.outbox(t->hooks.arg, &t->msg.outbox);
	if (t->msg.outbox.n)
		(void)send_msg(t, IPC_OUTBOX);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	send_status(arg);
}

/* ---- life cycle ---- */

static int check_fd(int fd)
{
	int type = 0;
	socklen_t len = sizeof(type);

	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0 || type != SOCK_SEQPACKET)
		return -EINVAL;
	if (evutil_make_socket_nonblocking(fd) < 0 || evutil_make_socket_closeonexec(fd) < 0)
		return -EINVAL;
	return 0;
}

int tunnel_new(struct event_base *base, int fd, struct gate *gate, const struct tunnel_hooks *hooks,
	       struct tunnel **out)
{
	static const struct timeval period = {TUNNEL_STATUS_MS / 1000,
					      (TUNNEL_STATUS_MS % 1000) * 1000};
	struct tunnel *t;
	int err;

	*out = NULL;
	if ((err = check_fd(fd)) < 0) {
		close(fd);
		return err;
	}
	if (!(t = calloc(1, sizeof(*t)))) {
		close(fd);
		return -ENOMEM;
	}
	t->base = base;
	t->fd = fd;
	t->gate = gate;
	t->hooks = *hooks;
	t->rd = event_new(base, fd, EV_READ | EV_PERSIST, on_read, t);
	t->tick = event_new(base, -1, EV_PERSIST, on_tick, t);
	if (!t->rd || !t->tick || event_add(t->rd, NULL) < 0 || event_add(t->tick, &period) < 0) {
		tunnel_free(t);
		return -ENOMEM;
	}
	t->st.linked = 1;
	gate_set_linked(gate, 1);
	log_event(LOG_INFO, "supervisor_link", " fd=%d", fd);
	send_status(t); /* the supervisor learns at once that the bridge is up */
	*out = t;
	return 0;
}

void tunnel_free(struct tunnel *t)
{
	if (!t)
		return;
	if (t->rd)
		event_free(t->rd);
	if (t->tick)
		event_free(t->tick);
	if (t->fd >= 0)
		close(t->fd);
	free(t);
}

void tunnel_stats(const struct tunnel *t, struct tunnel_stats *st)
{
	*st = t->st;
}
