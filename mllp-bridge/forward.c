#include "mllp-bridge/forward.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <event2/event.h>

#include "mllp-bridge/commit.h"
#include "mllp-bridge/lane.h"
#include "mllp-bridge/log.h"
#include "mllp-bridge/upstream.h"

#define container_of(p, type, member) ((type *)(void *)((char *)(p)-offsetof(type, member)))

/* The message's content in memory: body, then the strings the request needs. */
struct fwd_body {
	size_t len, size;
	const char *idem_key, *content_type, *sender; /* point into data[] */
	const char *file_name;			      /* into data[], or NULL: none */
	char data[];
};

struct fwd_msg {
	struct lane_item item;
	TAILQ_ENTRY(fwd_msg) all; /* in arrival order, for the oldest age */
	struct fwd_integ *in;
	int64_t id, received_ms;
	int attempts;
	fwd_answer_cb cb; /* ack: upstream: the sender waiting for our answer */
	void *cb_arg;
	struct event *deadline; /* answers the sender if the upstream is too slow */
	struct fwd_body *fb;	/* NULL: read the spool row when sending */
	struct spool_row row;	/* loaded while in flight when fb is NULL */
	void *row_body;
};

struct fwd_integ {
	struct forward *f;
	const struct cfg_integration *cfg;
	struct upstream_target target;
	char *bearer_token;
	struct lanes *lanes;
	TAILQ_HEAD(fwd_msg_list, fwd_msg) all;
	unsigned window, window_new; /* answers, and those on a new connection */
	int http1_fitted;	     /* max_in_flight cut to the HTTP/1.1 connections */
	struct fwd_stats st;
};

struct forward {
	struct event_base *base;
	const struct cfg *cfg;
	struct spool *spool;
	struct commit *commit;
	struct upstream *up;
	struct fwd_integ *integs;
	size_t ninteg;
	size_t mem_bodies; /* bytes held in fwd_body copies */
	struct event *replay_ev;
};

/* --- the content in memory ------------------------------------------- */

static struct fwd_body *body_new(struct forward *f, const struct spool_new *m)
{
	size_t lk = strlen(m->idem_key) + 1, lc = strlen(m->content_type) + 1;
	size_t ls = strlen(m->sender) + 1;
	size_t lf = m->file_name && *m->file_name ? strlen(m->file_name) + 1 : 0;
	size_t size = sizeof(struct fwd_body) + m->len + lk + lc + ls + lf;
	struct fwd_body *fb;
	char *p;

	if (f->mem_bodies + size > FWD_MEM_BODIES_MAX || !(fb = malloc(size)))
		return NULL;
	fb->len = m->len;
	fb->size = size;
	p = fb->data;
	if (m->len)
		memcpy(p, m->body, m->len);
	p += m->len;
	fb->idem_key = memcpy(p, m->idem_key, lk);
	fb->content_type = memcpy(p + lk, m->content_type, lc);
	fb->sender = memcpy(p + lk + lc, m->sender, ls);
	fb->file_name = lf ? memcpy(p + lk + lc + ls, m->file_name, lf) : NULL;
	f->mem_bodies += size;
	return fb;
}

static void body_free(struct forward *f, struct fwd_body *fb)
{
	if (fb) {
		f->mem_bodies -= fb->size;
		free(fb);
	}
}

static void msg_release_row(struct fwd_msg *m)
{
	spool_row_clear(&m->row);
	free(m->row_body);
	m->row_body = NULL;
}

/* --- the waiting sender ---------------------------------------------- */

static void answer(struct fwd_msg *m, enum fwd_outcome o, const char *why, const void *body,
		   size_t len)
{
	fwd_answer_cb cb = m->cb;

	m->cb = NULL;
	if (m->deadline) {
		event_free(m->deadline);
		m->deadline = NULL;
	}
	if (cb)
		cb(m->cb_arg, &(struct fwd_answer){o, why ? why : "", body ? body : "", len});
}

#define STORED_WILL_RETRY "stored; the upstream did not accept it yet; delivery will be retried"

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	answer(arg, FWD_PENDING, STORED_WILL_RETRY, NULL, 0);
}

static int arm_deadline(struct forward *f, struct fwd_msg *m, uint64_t ms)
{
	struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (long)(ms % 1000) * 1000};

	m->deadline = evtimer_new(f->base, on_deadline, m);
	return m->deadline && evtimer_add(m->deadline, &tv) == 0 ? 0 : -ENOMEM;
}

/* --- queueing -------------------------------------------------------- */

static void msg_free(struct fwd_msg *m)
{
	struct fwd_integ *in = m->in;

	TAILQ_REMOVE(&in->all, m, all);
	in->st.depth--;
	answer(m, FWD_ABORTED, NULL, NULL, 0); /* no-op unless still waiting */
	msg_release_row(m);
	body_free(in->f, m->fb);
	free(m);
}

/* Rows stored before lanes existed queue by their sender, as they did then. */
static int push(struct fwd_integ *in, struct fwd_msg *m, const char *lane, const char *lane2,
		const char *sender)
{
	char key[LANE_KEY_MAX + 1];

	if (!lane || !*lane) {
		snprintf(key, sizeof(key), "s:%s", sender);
		lane = key;
	}
	return lanes_push(in->lanes, &m->item, lane, lane2, m->id);
}

static int queue(struct fwd_integ *in, struct fwd_msg *m, const char *lane, const char *lane2,
		 const char *sender)
{
	struct fwd_msg *at;
	int err = push(in, m, lane, lane2, sender);

	if (err < 0)
		return err;
	/* Arrival order, so that the first is the oldest; a replay goes back
	 * where its id puts it. */
	at = TAILQ_LAST(&in->all, fwd_msg_list);
	while (at && at->id > m->id)
		at = TAILQ_PREV(at, fwd_msg_list, all);
	if (at)
		TAILQ_INSERT_AFTER(&in->all, at, m, all);
	else
		TAILQ_INSERT_HEAD(&in->all, m, all);
	in->st.depth++;
	return 0;
}

int forward_enqueue(struct forward *f, size_t integ, int64_t id, const struct spool_new *m,
		    fwd_answer_cb cb, void *arg)
{
	struct fwd_integ *in = &f->integs[integ];
	struct fwd_msg *fm = calloc(1, sizeof(*fm));
	int err;

	if (!fm)
		return -ENOMEM;
	fm->in = in;
	fm->id = id;
	fm->received_ms = m->received_ms;
	fm->fb = body_new(f, m);
	if (cb && arm_deadline(f, fm, in->cfg->upstream.timeout_ms) < 0) {
		err = -ENOMEM;
	} else {
		fm->cb = cb;
		fm->cb_arg = arg;
		err = queue(in, fm, m->lane, m->lane2, m->sender);
	}
	if (err < 0) {
		if (fm->deadline)
			event_free(fm->deadline);
		body_free(f, fm->fb);
		free(fm);
	}
	return err;
}

/* --- outcomes -------------------------------------------------------- */

int64_t forward_backoff_ms(const struct cfg_retry *rc, int attempts, int64_t retry_after_ms,
			   uint32_t rnd)
{
	uint64_t d = rc->initial_ms;
	int i;

	if (retry_after_ms >= 0)
		return retry_after_ms < FWD_RETRY_AFTER_MAX_MS ? retry_after_ms
							       : FWD_RETRY_AFTER_MAX_MS;
	for (i = 1; i < attempts && d < rc->max_ms; i++)
		d *= 2;
	if (d > rc->max_ms)
		d = rc->max_ms;
	return (int64_t)(d / 2 + rnd % (d / 2 + 1));
}

/* The head is done with (delivered or dead): the next one may go. */
static void finish(struct fwd_msg *m)
{
	lanes_done(m->in->lanes, &m->item);
	msg_free(m);
}

static void retry_later(struct fwd_msg *m, const char *err, int64_t retry_after_ms)
{
	struct fwd_integ *in = m->in;
	struct forward *f = in->f;
	int64_t delay =
	    forward_backoff_ms(&f->cfg->retry, m->attempts, retry_after_ms, (uint32_t)random());

	in->st.retries++;
	log_event(LOG_WARN, "upstream_retry",
		  " integration=%s id=%lld attempts=%d delay_ms=%lld error=\"%s\"", in->cfg->name,
		  (long long)m->id, m->attempts, (long long)delay, err);
	commit_mark_retry(f->commit, m->id, m->attempts, stats_wall_ms() + delay, err);
	answer(m, FWD_PENDING, STORED_WILL_RETRY, NULL, 0);
	msg_release_row(m);
	lanes_retry(in->lanes, &m->item, (uint64_t)delay);
}

static void go_dead(struct fwd_msg *m, const char *err)
{
	struct fwd_integ *in = m->in;
	char why[FWD_ERRTEXT_MAX + 40];

	in->st.dead++;
	log_event(LOG_ERR, "dead_letter", " integration=%s id=%lld attempts=%d error=\"%s\"",
		  in->cfg->name, (long long)m->id, m->attempts, err);
	commit_mark_dead(in->f->commit, m->id, m->attempts, NULL, 0, err);
	snprintf(why, sizeof(why), "upstream refused the message: %s", err);
	answer(m, FWD_REFUSED, why, NULL, 0);
	finish(m);
}

static void delivered(struct fwd_msg *m, const struct upstream_response *r)
{
	m->in->st.delivered++;
	commit_mark_delivered(m->in->f->commit, m->id);
	answer(m, FWD_DELIVERED, NULL, r->body, r->len);
	finish(m);
}

static unsigned status_class(const struct upstream_response *r)
{
	return !r->error && r->status >= 100 && r->status < 600 ? (unsigned)(r->status / 100) : 0;
}

/* Over HTTP/1.1 a request in flight needs a connection of its own, and the
 * client opens at most UPSTREAM_MAX_HOST_CONNS: more requests would wait
 * inside it with their timeout running. So the lanes hand it no more. */
static void fit_http1(struct fwd_integ *in)
{
	unsigned cap = in->cfg->max_in_flight < UPSTREAM_MAX_HOST_CONNS ? in->cfg->max_in_flight
									: UPSTREAM_MAX_HOST_CONNS;

	if (in->http1_fitted)
		return;
	in->http1_fitted = 1;
	lanes_set_max_in_flight(in->lanes, cap);
	log_event(LOG_INFO, "upstream_http1", " integration=%s max_in_flight=%u", in->cfg->name,
		  cap);
}

/* Two upstream behaviours that HTTP/2 serves badly with libcurl 7.88; at
 * the first sign of either, this integration speaks HTTP/1.1 for as long as
 * the bridge runs (the log says why, /metrics shows it):
 *   - an answer sent before the body was read (RFC 9113 8.1 allows it):
 *     libcurl loses some of those, and each lost one is sent again;
 *   - a connection closed after every response: the streams multiplexed
 *     onto it die with it and wait for a retry, where HTTP/1.1 would have
 *     used parallel connections with resumed TLS sessions. */
static void avoid_http2(struct fwd_integ *in, const char *why)
{
	if (in->target.http != UPSTREAM_HTTP_2)
		return;
	in->target.http = UPSTREAM_HTTP_1_1;
	in->st.http2_avoided = 1;
	fit_http1(in);
	log_event(LOG_WARN, "upstream_http2_avoided",
		  " integration=%s reason=\"%s\" action=\"HTTP/1.1 from now on\"", in->cfg->name,
		  why);
}

/* Most answers of a window on a connection of their own: the upstream
 * closes after each response. Only answers count: an upstream that is down
 * says nothing about how it keeps its connections. */
static void watch_connections(struct fwd_integ *in, const struct upstream_response *r)
{
	if (r->error)
		return;
	in->window++;
	in->window_new += r->new_connection;
	if (in->window < FWD_CONN_WINDOW)
		return;
	if (in->window_new * 2 > in->window)
		avoid_http2(in, "the upstream closes its connection after each response");
	in->window = in->window_new = 0;
}

static void on_response(void *arg, const struct upstream_response *r)
{
	struct fwd_msg *m = arg;
	char err[FWD_ERRTEXT_MAX];

	m->attempts++;
	if (!r->error && !r->http2)
		fit_http1(m->in);
	if (r->early)
		avoid_http2(m->in, "the upstream answers before reading the body, and libcurl "
				   "loses some such answers over HTTP/2");
	else if (m->in->target.http == UPSTREAM_HTTP_2)
		watch_connections(m->in, r);
	histogram_observe(&m->in->st.upstream_latency, r->total_s);
	m->in->st.upstream_class[status_class(r)]++;
	if (r->error) {
		snprintf(err, sizeof(err), "%s: %s", strerror(-r->error), r->errmsg);
		retry_later(m, err, -1);
	} else if (r->status >= 200 && r->status < 300) {
		delivered(m, r);
	} else if (r->status == 408 || r->status == 429 || r->status >= 500) {
		snprintf(err, sizeof(err), "HTTP %ld", r->status);
		retry_later(m, err, r->status < 500 ? r->retry_after_ms : -1);
	} else {
		snprintf(err, sizeof(err), "HTTP %ld", r->status);
		go_dead(m, err);
	}
}

/* --- sending --------------------------------------------------------- */

/* The request for m, from memory or from the spool row. */
static int load_request(struct fwd_msg *m, struct upstream_request *req)
{
	struct fwd_integ *in = m->in;
	int err;

	*req = (struct upstream_request){.target = &in->target, .integration = in->cfg->name};
	if (m->fb) {
		req->body = m->fb->data;
		req->len = m->fb->len;
		req->content_type = m->fb->content_type;
		req->idempotency_key = m->fb->idem_key;
		req->forwarded_for = m->fb->sender;
		req->file_name = m->fb->file_name;
		return 0;
	}
	if ((err = spool_get(in->f->spool, m->id, &m->row, &m->row_body)) < 0)
		return err;
	req->body = m->row_body;
	req->len = m->row.len;
	req->content_type = m->row.content_type;
	req->idempotency_key = m->row.idempotency_key;
	req->forwarded_for = m->row.sender;
	req->file_name = m->row.file_name;
	return 0;
}

static void on_send(void *arg, struct lane_item *it)
{
	struct fwd_msg *m = container_of(it, struct fwd_msg, item);
	struct upstream_request req;
	int err = load_request(m, &req);

	(void)arg;
	if (err < 0) {
		/* Purged or removed by an operator: nothing left to send. */
		log_event(LOG_WARN, "spool_row_missing", " integration=%s id=%lld error=%s",
			  m->in->cfg->name, (long long)m->id, strerror(-err));
		answer(m, FWD_UNKNOWN, "stored; delivery state unknown", NULL, 0);
		finish(m);
		return;
	}
	err = upstream_post(m->in->f->up, &req, on_response, m);
	if (err == -EINVAL) {
		/* The client refuses this request outright (a header value it
		 * will not send): retrying cannot help. */
		go_dead(m, "the HTTP client refused the request (invalid URL or header value)");
	} else if (err < 0) {
		msg_release_row(m);
		lanes_retry(m->in->lanes, &m->item, FWD_NOMEM_RETRY_MS);
	}
}

/* --- rows from the spool: start-up and replays ------------------------ */

static struct fwd_integ *integ_named(struct forward *f, const char *name)
{
	for (size_t i = 0; i < f->ninteg; i++)
		if (strcmp(f->integs[i].cfg->name, name) == 0)
			return &f->integs[i];
	return NULL;
}

/* A stored row, queued in its lane by id; its body is read when it is sent. */
static int queue_row(struct fwd_integ *in, const struct spool_row *r)
{
	struct fwd_msg *m = calloc(1, sizeof(*m));
	int err;

	if (!m)
		return -ENOMEM;
	m->in = in;
	m->id = r->id;
	m->received_ms = r->received_ms;
	m->attempts = r->attempts;
	if ((err = queue(in, m, r->lane, r->lane2, r->sender)) < 0)
		free(m);
	return err;
}

static int load_row(void *arg, const struct spool_row *r)
{
	struct fwd_integ *in = integ_named(arg, r->integration);

	/* An integration no longer configured: its rows wait in the spool. */
	return in ? queue_row(in, r) : 0;
}

static int replayed_row(void *arg, const struct spool_row *r)
{
	struct fwd_integ *in = integ_named(arg, r->integration);

	if (!in) {
		log_event(LOG_WARN, "replay_unknown_integration", " id=%lld integration=%s",
			  (long long)r->id, r->integration);
		return 0;
	}
	in->st.replayed++;
	return queue_row(in, r) < 0;
}

static void on_replay_poll(evutil_socket_t fd, short what, void *arg)
{
	struct forward *f = arg;

	(void)fd;
	(void)what;
	if (spool_take_replayed(f->spool, replayed_row, f) < 0)
		log_event(LOG_WARN, "replay_poll_failed", " detail=\"%s\"", spool_errmsg(f->spool));
}

static int ignore_row(void *arg, const struct spool_row *r)
{
	(void)arg;
	(void)r;
	return 0;
}

static int load_pending(struct forward *f)
{
	static const struct timeval poll = {FWD_REPLAY_POLL_MS / 1000,
					    (FWD_REPLAY_POLL_MS % 1000) * 1000};
	size_t total = 0;
	int err = spool_load_pending(f->spool, load_row, f);

	/* Replays made while we were down are in the pending load already:
	 * clear their flags so that the poll does not queue them twice. */
	if (err == 0)
		err = spool_take_replayed(f->spool, ignore_row, NULL);
	if (err < 0)
		return err;
	for (size_t i = 0; i < f->ninteg; i++)
		total += f->integs[i].st.depth;
	log_event(LOG_INFO, "spool_loaded", " pending=%zu", total);
	f->replay_ev = event_new(f->base, -1, EV_PERSIST, on_replay_poll, f);
	return f->replay_ev && event_add(f->replay_ev, &poll) == 0 ? 0 : -ENOMEM;
}

/* --- life cycle ------------------------------------------------------ */

static int integ_init(struct forward *f, struct fwd_integ *in, const struct cfg_integration *ci)
{
	const struct cfg_upstream *u = &ci->upstream;
	int err;

	in->f = f;
	in->cfg = ci;
	TAILQ_INIT(&in->all);
	if (u->bearer_token_file &&
	    (err = upstream_read_token(u->bearer_token_file, &in->bearer_token)) < 0) {
		log_event(LOG_ERR, "token_unreadable", " integration=%s error=%s", ci->name,
			  strerror(-err));
		return err;
	}
	in->target = (struct upstream_target){
	    .url = u->url,
	    .ca_file = u->ca_file,
	    .client_cert = u->client_cert,
	    .client_key = u->client_key,
	    .bearer_token = in->bearer_token,
	    .timeout_ms = u->timeout_ms,
	    .http = u->http == CFG_HTTP_1_1 ? UPSTREAM_HTTP_1_1 : UPSTREAM_HTTP_2,
	};
	if ((err = lanes_new(f->base, ci->max_in_flight, on_send, in, &in->lanes)) == 0 &&
	    u->http == CFG_HTTP_1_1)
		fit_http1(in);
	return err;
}

int forward_new(struct event_base *base, const struct cfg *cfg, struct spool *spool,
		struct commit *commit, struct upstream *up, struct forward **out)
{
	struct forward *f = calloc(1, sizeof(*f));
	struct fwd_integ *integs = calloc(cfg->nintegrations, sizeof(*integs));
	int err = 0;

	*out = NULL;
	if (!f || !integs) {
		free(f);
		free(integs);
		return -ENOMEM;
	}
	*f = (struct forward){.base = base,
			      .cfg = cfg,
			      .spool = spool,
			      .commit = commit,
			      .up = up,
			      .integs = integs,
			      .ninteg = cfg->nintegrations};
	for (size_t i = 0; i < f->ninteg && err == 0; i++)
		err = integ_init(f, &f->integs[i], &cfg->integrations[i]);
	if (err == 0)
		err = load_pending(f);
	if (err < 0) {
		forward_free(f);
		return err;
	}
	*out = f;
	return 0;
}

static void drop(void *arg, struct lane_item *it)
{
	(void)arg;
	msg_free(container_of(it, struct fwd_msg, item));
}

void forward_free(struct forward *f)
{
	if (!f)
		return;
	for (size_t i = 0; i < f->ninteg; i++) {
		if (f->integs[i].lanes)
			lanes_free(f->integs[i].lanes, drop);
		free(f->integs[i].bearer_token);
	}
	if (f->replay_ev)
		event_free(f->replay_ev);
	free(f->integs);
	free(f);
}

void forward_stats(const struct forward *f, size_t integ, struct fwd_stats *st)
{
	const struct fwd_integ *in = &f->integs[integ];
	const struct fwd_msg *first = TAILQ_FIRST(&in->all);
	struct lanes_stats ls;

	*st = in->st;
	lanes_stats(in->lanes, &ls);
	st->in_flight = ls.in_flight;
	st->lanes = ls.lanes;
	st->oldest_ms = first ? first->received_ms : 0;
}
