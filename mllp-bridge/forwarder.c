/*
 * The forwarder drains the spool upstream.
 *
 * Order: each sender (integration + peer address, or the whole integration
 * with `order: integration`) is a FIFO with at most one request in flight,
 * so a message never leaves before the one ahead of it was accepted, also
 * across retries. Senders proceed in parallel up to max_in_flight requests
 * per integration.
 *
 * Outcomes: 2xx delivered; 408/429 retried after Retry-After; 5xx and
 * transport errors retried with exponential backoff and jitter; any other
 * status is permanent and the message goes to dead letter.
 */
#include "mllp-bridge/bridge.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "mllp-bridge/log.h"
#include "mllp-bridge/spool.h"

#define RETRY_AFTER_MAX_MS (3600 * 1000) /* a Retry-After is honoured up to 1 h */
#define ERRTEXT_MAX	   200

struct fwd_msg {
	TAILQ_ENTRY(fwd_msg) link;
	struct fwd_sender *s;
	int64_t id;
	int64_t received_ms;
	int attempts;
	struct reply *waiter;	/* ack: upstream: the frame waiting for our answer */
	struct event *deadline; /* answers the waiter if the upstream is too slow */
	struct fwd_body *fb;	/* the content in memory, or NULL: read the spool */
	struct spool_row row;	/* loaded while in flight when fb is NULL */
	void *body;
};

static void dispatch(struct integ *in);
static void on_deadline(evutil_socket_t fd, short what, void *arg);
static struct reply *take_waiter(struct fwd_msg *m);

static unsigned hash_key(const char *k)
{
	unsigned h = 2166136261u;

	while (*k)
		h = (h ^ (unsigned char)*k++) * 16777619u;
	return h % FWD_HASH_SIZE;
}

static void on_retry_timer(evutil_socket_t fd, short what, void *arg);

static struct fwd_sender *sender_get(struct integ *in, const char *key)
{
	unsigned h = hash_key(key);
	struct fwd_sender *s;

	for (s = in->senders[h]; s; s = s->hash_next)
		if (strcmp(s->key, key) == 0)
			return s;
	s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->retry_ev = evtimer_new(in->b->base, on_retry_timer, s);
	if (!s->retry_ev) {
		free(s);
		return NULL;
	}
	snprintf(s->key, sizeof(s->key), "%s", key);
	TAILQ_INIT(&s->q);
	s->integ = in;
	s->hash_next = in->senders[h];
	in->senders[h] = s;
	return s;
}

static void make_ready(struct fwd_sender *s)
{
	if (!s->busy && !s->on_ready && !TAILQ_EMPTY(&s->q)) {
		TAILQ_INSERT_TAIL(&s->integ->ready, s, ready_link);
		s->on_ready = 1;
	}
}

/* Appends a message to its sender's FIFO without sending anything yet. */
static int queue_msg(struct integ *in, int64_t id, const char *sender, int64_t received_ms,
		     int attempts, struct reply *waiter, struct fwd_body *fb)
{
	const char *key = in->cfg->order == CFG_ORDER_INTEGRATION ? "" : sender;
	struct fwd_sender *s = sender_get(in, key);
	struct fwd_msg *m;

	if (!s || !(m = calloc(1, sizeof(*m)))) {
		fwd_body_free(in->b, fb);
		return -ENOMEM;
	}
	m->s = s;
	m->id = id;
	m->received_ms = received_ms;
	m->attempts = attempts;
	m->fb = fb;
	if (waiter) {
		uint64_t ms = in->cfg->upstream.timeout_ms;
		struct timeval tv = {.tv_sec = (time_t)(ms / 1000),
				     .tv_usec = (long)(ms % 1000) * 1000};

		m->deadline = evtimer_new(in->b->base, on_deadline, m);
		if (!m->deadline || evtimer_add(m->deadline, &tv) < 0) {
			if (m->deadline)
				event_free(m->deadline);
			fwd_body_free(in->b, fb);
			free(m);
			return -ENOMEM;
		}
		m->waiter = waiter;
	}
	TAILQ_INSERT_TAIL(&s->q, m, link);
	s->depth++;
	in->depth++;
	make_ready(s);
	return 0;
}

static int enqueue(struct integ *in, int64_t id, const char *sender, int64_t received_ms,
		   struct reply *waiter, struct fwd_body *fb)
{
	int err = queue_msg(in, id, sender, received_ms, 0, waiter, fb);

	if (err == 0)
		dispatch(in);
	return err;
}

int forwarder_enqueue(struct integ *in, int64_t id, const char *sender, int64_t received_ms,
		      struct reply *waiter)
{
	return enqueue(in, id, sender, received_ms, waiter, NULL);
}

int forwarder_enqueue_body(struct integ *in, int64_t id, int64_t received_ms, struct reply *waiter,
			   struct fwd_body *fb)
{
	return enqueue(in, id, fb->sender, received_ms, waiter, fb);
}

/* State changes ride on the next group commit. */
static void spool_result(struct integ *in, int err)
{
	if (err < 0)
		bridge_batch_failed(in->b, err);
	else
		bridge_schedule_flush(in->b);
}

static void msg_release(struct fwd_msg *m)
{
	spool_row_clear(&m->row);
	free(m->body);
	m->body = NULL;
}

/* The head of s is done with (delivered or dead): the next one may go. */
static void sender_advance(struct fwd_sender *s, struct fwd_msg *m)
{
	TAILQ_REMOVE(&s->q, m, link);
	s->depth--;
	s->integ->depth--;
	msg_release(m);
	take_waiter(m);
	fwd_body_free(s->integ->b, m->fb);
	free(m);
	s->busy = 0;
	make_ready(s);
}

/* --- the answer to an `ack: upstream` sender ------------------------- */

/* Detaches the waiting frame, if any, so it is answered exactly once. */
static struct reply *take_waiter(struct fwd_msg *m)
{
	struct reply *w = m->waiter;

	m->waiter = NULL;
	if (m->deadline) {
		event_free(m->deadline);
		m->deadline = NULL;
	}
	return w;
}

static void answer_waiter(struct fwd_msg *m, const struct upstream_response *r)
{
	struct reply *w = take_waiter(m);
	struct hl7_str code, ctl;
	const char *want = m->fb ? m->fb->control_id : m->row.control_id ? m->row.control_id : "";

	if (!w)
		return;
	if (w->release == 1 && r->len && hl7_parse_msa(r->body, r->len, &code, &ctl) == 0 &&
	    ctl.len == strlen(want) && memcmp(ctl.p, want, ctl.len) == 0) {
		reply_set_raw(w, r->body, r->len); /* HL7 over HTTP: relay as is */
	} else {
		reply_set_ack(w, HL7_ACCEPT, HL7_ERR_OK, 0, NULL);
	}
	reply_complete(w);
}

static void tell_waiter(struct fwd_msg *m, enum hl7_ack_code code, char severity, const char *why)
{
	struct reply *w = take_waiter(m);

	if (!w)
		return;
	reply_set_ack(w, code, code == HL7_ACCEPT ? HL7_ERR_OK : HL7_ERR_APPLICATION_INTERNAL,
		      severity, why);
	reply_complete(w);
}

/* --- outcomes -------------------------------------------------------- */

static int64_t backoff_ms(const struct integ *in, int attempts, int64_t retry_after_ms)
{
	const struct cfg_retry *rc = &in->b->cfg->retry;
	uint64_t d = rc->initial_ms;
	int i;

	if (retry_after_ms >= 0)
		return retry_after_ms < RETRY_AFTER_MAX_MS ? retry_after_ms : RETRY_AFTER_MAX_MS;
	for (i = 1; i < attempts && d < rc->max_ms; i++)
		d *= 2;
	if (d > rc->max_ms)
		d = rc->max_ms;
	/* Equal jitter: half fixed, half random, so senders spread out
	 * after a shared outage but never retry at once. */
	return (int64_t)(d / 2 + (uint64_t)random() % (d / 2 + 1));
}

#define STORED_WILL_RETRY "stored; the upstream did not accept it yet; delivery will be retried"

/* The upstream did not answer within its timeout (the message may still be
 * queued behind others): the sender hears that it is safe. */
static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	tell_waiter(arg, HL7_ACCEPT, 'W', STORED_WILL_RETRY);
}

static void retry_later(struct fwd_msg *m, const char *err, int64_t retry_after_ms)
{
	struct integ *in = m->s->integ;
	int64_t delay = backoff_ms(in, m->attempts, retry_after_ms);
	struct timeval tv = {.tv_sec = delay / 1000, .tv_usec = (delay % 1000) * 1000};

	in->st.retries++;
	log_event(LOG_WARN, "upstream_retry",
		  " integration=%s id=%lld attempts=%d delay_ms=%lld error=\"%s\"", in->cfg->name,
		  (long long)m->id, m->attempts, (long long)delay, err);
	spool_result(
	    in, spool_mark_retry(in->b->spool, m->id, m->attempts, bridge_wall_ms() + delay, err));
	tell_waiter(m, HL7_ACCEPT, 'W', STORED_WILL_RETRY);
	msg_release(m);
	evtimer_add(m->s->retry_ev, &tv); /* the sender stays busy until then */
}

static void go_dead(struct fwd_msg *m, const char *err)
{
	struct integ *in = m->s->integ;
	char why[ERRTEXT_MAX + 40];

	in->st.dead++;
	log_event(LOG_ERR, "dead_letter", " integration=%s id=%lld attempts=%d error=\"%s\"",
		  in->cfg->name, (long long)m->id, m->attempts, err);
	spool_result(in, spool_mark_dead(in->b->spool, m->id, m->attempts, err));
	snprintf(why, sizeof(why), "upstream refused the message: %s", err);
	tell_waiter(m, HL7_ERROR, 'E', why);
	sender_advance(m->s, m);
}

static void delivered(struct fwd_msg *m, const struct upstream_response *r)
{
	struct integ *in = m->s->integ;

	in->st.delivered++;
	spool_result(in, spool_mark_delivered(in->b->spool, m->id, bridge_wall_ms()));
	answer_waiter(m, r);
	sender_advance(m->s, m);
}

static void on_response(void *arg, const struct upstream_response *r)
{
	struct fwd_msg *m = arg;
	struct integ *in = m->s->integ;
	char err[ERRTEXT_MAX];

	in->in_flight--;
	m->attempts++;
	histogram_observe(&in->st.upstream_latency, r->total_s);
	in->st.upstream_class[r->error					       ? 0
			      : (r->status / 100 >= 1 && r->status / 100 <= 5) ? r->status / 100
									       : 0]++;
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
	dispatch(in);
}

/* --- sending --------------------------------------------------------- */

/* The request for m, from memory or from the spool row. */
static int load_request(struct integ *in, struct fwd_msg *m, struct upstream_request *req)
{
	int err;

	*req = (struct upstream_request){.target = &in->target, .integration = in->cfg->name};
	if (m->fb) {
		req->body = m->fb->data;
		req->len = m->fb->len;
		req->content_type = m->fb->content_type;
		req->idempotency_key = m->fb->idem_key;
		req->forwarded_for = m->fb->sender;
		return 0;
	}
	if ((err = spool_get(in->b->spool, m->id, &m->row, &m->body)) < 0)
		return err;
	req->body = m->body;
	req->len = m->row.len;
	req->content_type = m->row.content_type;
	req->idempotency_key = m->row.idempotency_key;
	req->forwarded_for = m->row.sender;
	return 0;
}

static int send_head(struct integ *in, struct fwd_sender *s)
{
	struct fwd_msg *m = TAILQ_FIRST(&s->q);
	struct upstream_request req;
	int err = load_request(in, m, &req);

	if (err < 0) {
		/* Purged or removed by an operator: nothing left to send. */
		log_event(LOG_WARN, "spool_row_missing", " integration=%s id=%lld error=%s",
			  in->cfg->name, (long long)m->id, strerror(-err));
		tell_waiter(m, HL7_ACCEPT, 'W', "stored; delivery state unknown");
		sender_advance(s, m);
		return err;
	}
	err = upstream_post(in->b->up, &req, on_response, m);
	if (err == -EINVAL) {
		/* The client refuses this request outright (a header value it
		 * will not send): retrying cannot help, so it is a dead letter
		 * rather than a sender blocked forever. */
		go_dead(m, "the HTTP client refused the request (invalid URL or header value)");
		return err;
	}
	if (err < 0) {
		msg_release(m);
		return err;
	}
	s->busy = 1;
	in->in_flight++;
	return 0;
}

static void dispatch(struct integ *in)
{
	struct fwd_sender *s;

	while (in->in_flight < in->cfg->max_in_flight && (s = TAILQ_FIRST(&in->ready))) {
		TAILQ_REMOVE(&in->ready, s, ready_link);
		s->on_ready = 0;
		if (send_head(in, s) == -ENOMEM) {
			make_ready(s);
			break; /* try again at the next completion */
		}
	}
}

static void on_retry_timer(evutil_socket_t fd, short what, void *arg)
{
	struct fwd_sender *s = arg;

	(void)fd;
	(void)what;
	s->busy = 0;
	make_ready(s);
	dispatch(s->integ);
}

int64_t forwarder_oldest_ms(const struct integ *in)
{
	int64_t oldest = 0;
	unsigned h;

	for (h = 0; h < FWD_HASH_SIZE; h++) {
		const struct fwd_sender *s;

		for (s = in->senders[h]; s; s = s->hash_next) {
			const struct fwd_msg *m = TAILQ_FIRST(&s->q);

			if (m && m->received_ms && (!oldest || m->received_ms < oldest))
				oldest = m->received_ms;
		}
	}
	return oldest;
}

/* --- start-up and shutdown ------------------------------------------- */

/* Start-up: queued in id order; sending starts once all are loaded. */
static int load_row(void *arg, const struct spool_row *r)
{
	struct integ *in = bridge_integ(arg, r->integration);

	if (!in)
		return 0; /* an integration no longer configured: its rows wait */
	return queue_msg(in, r->id, r->sender, r->received_ms, r->attempts, NULL, NULL);
}

static int ignore_row(void *arg, const struct spool_row *r)
{
	(void)arg;
	(void)r;
	return 0;
}

int forwarder_start(struct bridge *b)
{
	size_t i, total = 0;
	int err = spool_load_pending(b->spool, load_row, b);

	/* Replays made while we were down are already in the pending load:
	 * clear their flags so the replay poll does not queue them twice. */
	if (err == 0)
		err = spool_take_replayed(b->spool, ignore_row, NULL);
	if (err < 0)
		return err;
	for (i = 0; i < b->ninteg; i++) {
		total += b->integs[i].depth;
		dispatch(&b->integs[i]);
	}
	log_event(LOG_INFO, "spool_loaded", " pending=%zu", total);
	return 0;
}

void forwarder_free(struct bridge *b)
{
	size_t i;
	unsigned h;

	for (i = 0; b->integs && i < b->ninteg; i++) {
		struct integ *in = &b->integs[i];

		for (h = 0; h < FWD_HASH_SIZE; h++) {
			struct fwd_sender *s;

			while ((s = in->senders[h])) {
				struct fwd_msg *m;

				in->senders[h] = s->hash_next;
				while ((m = TAILQ_FIRST(&s->q))) {
					struct reply *w = take_waiter(m);

					TAILQ_REMOVE(&s->q, m, link);
					if (w)
						reply_complete(w);
					msg_release(m);
					fwd_body_free(b, m->fb);
					free(m);
				}
				event_free(s->retry_ev);
				free(s);
			}
		}
	}
}
