#include "appliance/vloop.h"

#include <errno.h>
#include <stdlib.h>

struct vloop {
	struct event_base *base;
	struct vici_conn *conn;
	struct event *io; /* on the current fd; NULL while there is none */
	int io_fd;
	short io_what;
	struct event *timer; /* the connection's next deadline, or a kick */
};

static void vloop_update(struct vloop *v);

static void on_io(evutil_socket_t fd, short what, void *arg)
{
	struct vloop *v = arg;

	(void)fd;
	vici_conn_process(v->conn, (what & EV_READ) != 0, (what & EV_WRITE) != 0);
	vloop_update(v);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct vloop *v = arg;

	(void)fd;
	(void)what;
	vici_conn_tick(v->conn, vici_now_ms());
	vloop_update(v);
}

/* The fd changes on every reconnect and the interest with every request:
 * the event is rebuilt only when either differs. */
static void update_io(struct vloop *v)
{
	int fd = vici_conn_fd(v->conn), want = vici_conn_want(v->conn);
	short what = (short)((want & VICI_WANT_READ ? EV_READ : 0) |
			     (want & VICI_WANT_WRITE ? EV_WRITE : 0));

	if (v->io && v->io_fd == fd && v->io_what == what)
		return;
	if (v->io) {
		event_free(v->io);
		v->io = NULL;
	}
	v->io_fd = fd;
	v->io_what = what;
	if (fd < 0 || !what)
		return;
	v->io = event_new(v->base, fd, (short)(what | EV_PERSIST), on_io, v);
	if (v->io)
		event_add(v->io, NULL);
}

static void vloop_update(struct vloop *v)
{
	int64_t due = vici_conn_next_deadline(v->conn, vici_now_ms());

	update_io(v);
	if (due < 0) {
		evtimer_del(v->timer);
	} else {
		struct timeval tv = {.tv_sec = due / 1000, .tv_usec = (due % 1000) * 1000};

		evtimer_add(v->timer, &tv);
	}
}

int vloop_new(struct event_base *base, const char *uri, struct vloop **out)
{
	struct vloop *v = calloc(1, sizeof *v);
	int err;

	*out = NULL;
	if (!v)
		return -ENOMEM;
	v->base = base;
	v->io_fd = -1;
	err = vici_conn_new(uri, &v->conn);
	if (err == 0 && !(v->timer = evtimer_new(base, on_timer, v)))
		err = -ENOMEM;
	if (err < 0) {
		vloop_free(v);
		return err;
	}
	/* A first attempt that fails is reported DOWN and retried by the
	 * connection itself: the result needs no handling here. */
	err = vici_conn_connect(v->conn);
	vloop_update(v);
	*out = v;
	return 0;
}

struct vici_conn *vloop_conn(struct vloop *v)
{
	return v->conn;
}

void vloop_kick(struct vloop *v)
{
	struct timeval now = {0, 0};

	evtimer_add(v->timer, &now);
}

void vloop_free(struct vloop *v)
{
	if (!v)
		return;
	if (v->io)
		event_free(v->io);
	if (v->timer)
		event_free(v->timer);
	vici_conn_free(v->conn);
	free(v);
}
