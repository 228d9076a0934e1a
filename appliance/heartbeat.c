/*
 * The TCP heartbeat. Each destination has one probe slot: a non-blocking
 * connect() watched for writability with a timeout, closed as soon as it
 * resolves. Results change state in place; only changes are logged, so a
 * destination that stays down costs one line, not one every round.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "appliance/heartbeat.h"
#include "mllp-bridge/config.h"
#include "mllp-bridge/log.h"

#define HB_ADDR_TEXT_MAX (INET6_ADDRSTRLEN + 8) /* "[v6]:port" */

struct probe {
	struct heartbeat *h;
	char *name;
	char addr_text[HB_ADDR_TEXT_MAX];
	struct sockaddr_storage addr;
	socklen_t addr_len;
	int off; /* an sftp destination: no MLLP receiver to probe (stays unknown) */
	int fd;	 /* -1 when no probe is in flight */
	struct event *ev;
	uint64_t start_us;
	struct hb_result res;
};

struct heartbeat {
	struct event_base *base;
	struct event *tick;
	uint64_t period_ms;
	hb_allowed_cb allowed;
	void *arg;
	size_t n;
	struct probe p[];
};

static uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static const char *state_name(enum hb_state s)
{
	static const char *const names[] = {"unknown", "ok", "failed", "skipped"};

	return names[s];
}

static void addr_format(struct probe *p)
{
	char host[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;

	if (p->addr.ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)&p->addr;

		inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
		port = ntohs(sin->sin_port);
		snprintf(p->addr_text, sizeof(p->addr_text), "%s:%u", host, port);
	} else {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&p->addr;

		inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
		port = ntohs(sin6->sin6_port);
		snprintf(p->addr_text, sizeof(p->addr_text), "[%s]:%u", host, port);
	}
}

/* Records a result; a change of state is logged. */
static void record(struct probe *p, enum hb_state state, int err)
{
	enum hb_state prev = p->res.state;

	p->res.state = state;
	p->res.err = state == HB_FAILED ? err : 0;
	p->res.rtt_us = state == HB_OK ? now_us() - p->start_us : 0;
	p->res.at_unix = (int64_t)time(NULL);
	if (state == prev)
		return;
	if (state == HB_FAILED)
		log_event(LOG_WARN, "heartbeat",
			  " destination=%s addr=%s state=failed error=\"%s\"", p->name,
			  p->addr_text, strerror(err));
	else
		log_event(LOG_INFO, "heartbeat", " destination=%s addr=%s state=%s", p->name,
			  p->addr_text, state_name(state));
}

static void probe_close(struct probe *p)
{
	if (p->ev)
		event_free(p->ev);
	p->ev = NULL;
	if (p->fd >= 0)
		close(p->fd);
	p->fd = -1;
}

static void probe_done_cb(evutil_socket_t fd, short what, void *arg)
{
	struct probe *p = arg;
	socklen_t len = sizeof(int);
	int err = 0;

	if (what & EV_TIMEOUT)
		err = ETIMEDOUT;
	else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	probe_close(p);
	record(p, err ? HB_FAILED : HB_OK, err);
}

/* One connect(); loopback may answer at once, either way. */
static void probe_start(struct probe *p)
{
	struct timeval tv = {HB_CONNECT_TIMEOUT_MS / 1000, (HB_CONNECT_TIMEOUT_MS % 1000) * 1000};
	int err = 0;

	p->start_us = now_us();
	p->fd = socket(p->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (p->fd < 0) {
		record(p, HB_FAILED, errno);
		return;
	}
	if (connect(p->fd, (const struct sockaddr *)&p->addr, p->addr_len) < 0)
		err = errno;
	if (err == EINPROGRESS) {
		p->ev = event_new(p->h->base, p->fd, EV_WRITE, probe_done_cb, p);
		if (p->ev && event_add(p->ev, &tv) == 0)
			return;
		err = ENOMEM;
	}
	probe_close(p);
	record(p, err ? HB_FAILED : HB_OK, err);
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct heartbeat *h = arg;
	struct timeval tv = {(time_t)(h->period_ms / 1000),
			     (suseconds_t)(h->period_ms % 1000) * 1000};
	size_t i;

	(void)fd;
	(void)what;
	for (i = 0; i < h->n; i++) {
		struct probe *p = &h->p[i];

		if (p->off || p->fd >= 0)
			continue;
		/* Asked right before the SYN: outside the tunnel it would
		 * leave in clear. */
		if (h->allowed(h->arg, (const struct sockaddr *)&p->addr))
			probe_start(p);
		else
			record(p, HB_SKIPPED, 0);
	}
	evtimer_add(h->tick, &tv);
}

int heartbeat_new(struct event_base *base, const struct cfg *cfg, hb_allowed_cb allowed, void *arg,
		  struct heartbeat **out)
{
	static const struct timeval now = {0, 0};
	struct heartbeat *h;
	size_t i;

	*out = NULL;
	if (!base || !cfg || !allowed || !cfg->supervisor.heartbeat_ms)
		return -EINVAL;
	h = calloc(1, sizeof(*h) + cfg->ndestinations * sizeof(h->p[0]));
	if (!h)
		return -ENOMEM;
	h->base = base;
	h->period_ms = cfg->supervisor.heartbeat_ms;
	h->allowed = allowed;
	h->arg = arg;
	for (i = 0; i < cfg->ndestinations; i++, h->n++) {
		const struct cfg_destination *d = &cfg->destinations[i];
		struct probe *p = &h->p[i];

		p->h = h;
		p->fd = -1;
		p->off = d->sftp != NULL;
		p->addr = d->addr;
		p->addr_len = d->addr_len;
		p->name = strdup(d->name ? d->name : "");
		if (!p->name)
			break;
		if (!p->off)
			addr_format(p);
	}
	h->tick = evtimer_new(base, tick_cb, h);
	if (h->n < cfg->ndestinations || !h->tick || evtimer_add(h->tick, &now) < 0) {
		heartbeat_free(h);
		return -ENOMEM;
	}
	*out = h;
	return 0;
}

const struct hb_result *heartbeat_result(const struct heartbeat *h, size_t dest)
{
	return dest < h->n ? &h->p[dest].res : NULL;
}

void heartbeat_free(struct heartbeat *h)
{
	size_t i;

	if (!h)
		return;
	for (i = 0; i < h->n; i++) {
		probe_close(&h->p[i]);
		free(h->p[i].name);
	}
	if (h->tick)
		event_free(h->tick);
	free(h);
}
