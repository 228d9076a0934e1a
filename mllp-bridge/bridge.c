#include "mllp-bridge/bridge.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "mllp-bridge/log.h"
#include "mllp-bridge/spool.h"

/* Group commit without a timer: the first frame staged in a loop pass
 * activates the commit event, which libevent appends behind every socket
 * event that the same poll already made active. So the commit runs once
 * those are handled, covering all the frames they read. (A separate, lower
 * priority would not do: libevent 2.1 serves only the highest non-empty
 * priority per pass, and busy upstream sockets could starve the commit.) */
/* Delivery marks need no fsync of their own: losing one only means a
 * message is sent again with the same Idempotency-Key. They ride on the next
 * commit, or on this timer when no message arrives. */
#define FLUSH_DELAY_MS 100

double bridge_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int64_t bridge_wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void bridge_schedule_commit(struct bridge *b)
{
	if (!b->commit_scheduled) {
		b->commit_scheduled = 1;
		event_active(b->commit_ev, 0, 0);
	}
}

/* The batch is gone: every staged frame gets a NAK, never an ACK. */
void bridge_batch_failed(struct bridge *b, int err)
{
	struct reply *r;

	log_event(LOG_ERR, "spool_commit_failed", " rows=%zu error=%s detail=\"%s\"", b->nstaged,
		  strerror(-err), spool_errmsg(b->spool));
	b->commit_failures++;
	while ((r = TAILQ_FIRST(&b->staged))) {
		TAILQ_REMOVE(&b->staged, r, batch);
		fwd_body_free(b, r->fb);
		r->fb = NULL;
		r->integ->st.rejected_store++;
		reply_set_ack(r, HL7_REJECT, HL7_ERR_APPLICATION_INTERNAL, 'E',
			      err == -ENOSPC ? "message not stored: spool disk is full"
					     : "message not stored: spool error");
		reply_complete(r);
	}
	b->nstaged = 0;
}

/* The batch is durable: ACK (ack: commit) and hand every row to the forwarder. */
static void ack_staged(struct bridge *b)
{
	struct reply *r;

	b->commits++;
	b->commit_rows += b->nstaged;
	while ((r = TAILQ_FIRST(&b->staged))) {
		struct integ *in = r->integ;
		/* Nobody is left to hear the upstream's answer when the
		 * connection is gone: the commit answer is all there is. */
		struct reply *waiter = in->cfg->ack == CFG_ACK_UPSTREAM && r->conn ? r : NULL;
		int64_t id = r->spool_id, received = r->received_ms;
		struct fwd_body *fb = r->fb;
		char sender[BRIDGE_PEER_MAX];
		int err;

		TAILQ_REMOVE(&b->staged, r, batch);
		r->fb = NULL;
		memcpy(sender, r->sender, sizeof(sender));
		if (!waiter) {
			reply_set_ack(r, HL7_ACCEPT, HL7_ERR_OK, 0, NULL);
			reply_complete(r); /* may free r */
		}
		err = fb ? forwarder_enqueue_body(in, id, received, waiter, fb)
			 : forwarder_enqueue(in, id, sender, received, waiter);
		if (err < 0 && waiter) {
			/* Stored but not queued in memory: the next start
			 * picks it up, and the sender hears it is safe. */
			reply_set_ack(waiter, HL7_ACCEPT, HL7_ERR_OK, 0, NULL);
			reply_complete(waiter);
		}
	}
	b->nstaged = 0;
}

static void on_commit(evutil_socket_t fd, short what, void *arg)
{
	struct bridge *b = arg;
	double t0;
	int err;

	(void)fd;
	(void)what;
	b->commit_scheduled = 0;
	evtimer_del(b->flush_ev);
	if (!b->nstaged && spool_pending(b->spool) == 0)
		return; /* an earlier commit in this pass took everything */
	t0 = bridge_now();
	err = spool_commit(b->spool);
	histogram_observe(&b->commit_time, bridge_now() - t0);
	if (err < 0)
		bridge_batch_failed(b, err);
	else
		ack_staged(b);
}

void fwd_body_free(struct bridge *b, struct fwd_body *fb)
{
	if (!fb)
		return;
	b->mem_bodies -= fb->size;
	free(fb);
}

/* The forwarder's copy of a staged message, or NULL past the memory cap (or
 * for a key longer than fwd_body holds): the forwarder then reads the spool. */
static struct fwd_body *fwd_body_new(struct bridge *b, const struct spool_new *m)
{
	size_t lc = strlen(m->content_type) + 1, li = strlen(m->control_id) + 1;
	size_t ls = strlen(m->sender) + 1;
	size_t size = sizeof(struct fwd_body) + m->len + lc + li + ls;
	struct fwd_body *fb;
	char *p;

	if (strlen(m->idem_key) >= sizeof(fb->idem_key) ||
	    b->mem_bodies + size > BRIDGE_MEM_BODIES_MAX || !(fb = malloc(size)))
		return NULL;
	fb->len = m->len;
	fb->size = size;
	memcpy(fb->idem_key, m->idem_key, strlen(m->idem_key) + 1);
	p = fb->data;
	memcpy(p, m->body, m->len);
	p += m->len;
	fb->content_type = memcpy(p, m->content_type, lc);
	p += lc;
	fb->control_id = memcpy(p, m->control_id, li);
	p += li;
	fb->sender = memcpy(p, m->sender, ls);
	b->mem_bodies += size;
	return fb;
}

void bridge_stage(struct bridge *b, struct reply *r, const struct spool_new *m)
{
	int err = spool_append(b->spool, m, &r->spool_id);

	if (err == -EINVAL || err == -EMSGSIZE) {
		/* Refused on its own merits; the batch is untouched. */
		r->integ->st.rejected_store++;
		reply_set_ack(r, HL7_REJECT, HL7_ERR_APPLICATION_INTERNAL, 'E',
			      "message not stored: a field exceeds the spool's limits");
		reply_complete(r);
		return;
	}
	if (err == 0)
		r->fb = fwd_body_new(b, m);
	TAILQ_INSERT_TAIL(&b->staged, r, batch);
	b->nstaged++;
	if (err < 0) {
		/* spool_append rolled the whole batch back. */
		bridge_batch_failed(b, err);
		return;
	}
	if (b->nstaged >= BRIDGE_BATCH_MAX)
		on_commit(-1, 0, b);
	else
		bridge_schedule_commit(b);
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	bridge_schedule_commit(arg);
}

void bridge_schedule_flush(struct bridge *b)
{
	static const struct timeval delay = {0, FLUSH_DELAY_MS * 1000};

	if (!b->commit_scheduled && !evtimer_pending(b->flush_ev, NULL))
		evtimer_add(b->flush_ev, &delay);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct bridge *b = arg;

	(void)what;
	log_event(LOG_INFO, "shutdown", " signal=%d", (int)sig);
	b->stopping = 1;
	event_base_loopexit(b->base, NULL);
}

struct integ *bridge_integ(struct bridge *b, const char *name)
{
	size_t i;

	for (i = 0; i < b->ninteg; i++)
		if (strcmp(b->integs[i].cfg->name, name) == 0)
			return &b->integs[i];
	return NULL;
}

static int replayed_row(void *arg, const struct spool_row *r)
{
	struct bridge *b = arg;
	struct integ *in = bridge_integ(b, r->integration);

	if (in)
		return forwarder_enqueue(in, r->id, r->sender, r->received_ms, NULL) < 0;
	log_event(LOG_WARN, "replay_unknown_integration", " id=%lld integration=%s",
		  (long long)r->id, r->integration);
	return 0;
}

static void on_replay_poll(evutil_socket_t fd, short what, void *arg)
{
	struct bridge *b = arg;

	(void)fd;
	(void)what;
	if (spool_take_replayed(b->spool, replayed_row, b) < 0)
		log_event(LOG_WARN, "replay_poll_failed", " detail=\"%s\"", spool_errmsg(b->spool));
}

static void on_purge(evutil_socket_t fd, short what, void *arg)
{
	struct bridge *b = arg;
	int n = 0;

	(void)fd;
	(void)what;
	if (spool_pending(b->spool) > 0)
		return; /* never mix a purge into an open batch; try next time */
	if (spool_purge(b->spool, bridge_wall_ms() - (int64_t)b->cfg->retention_ms, 0, &n) < 0)
		log_event(LOG_WARN, "purge_failed", " detail=\"%s\"", spool_errmsg(b->spool));
	else if (n > 0)
		log_event(LOG_INFO, "purged", " rows=%d", n);
}

static struct event *add_timer(struct bridge *b, uint64_t ms, event_callback_fn cb)
{
	struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (long)(ms % 1000) * 1000};
	struct event *ev = event_new(b->base, -1, EV_PERSIST, cb, b);

	if (ev && event_add(ev, &tv) < 0) {
		event_free(ev);
		ev = NULL;
	}
	return ev;
}

static int setup_events(struct bridge *b)
{
	static const int sigs[3] = {SIGINT, SIGTERM, SIGHUP};
	uint64_t purge_ms;
	int i;

	b->commit_ev = event_new(b->base, -1, 0, on_commit, b);
	b->flush_ev = evtimer_new(b->base, on_flush, b);
	if (!b->commit_ev || !b->flush_ev)
		return -ENOMEM;
	for (i = 0; i < 3; i++) {
		b->sig_ev[i] = evsignal_new(b->base, sigs[i], on_signal, b);
		if (!b->sig_ev[i] || event_add(b->sig_ev[i], NULL) < 0)
			return -ENOMEM;
	}
	b->replay_ev = add_timer(b, BRIDGE_REPLAY_POLL_MS, on_replay_poll);
	/* Often enough that no row outlives its retention by much more than
	 * a quarter of it, and at most once a second. */
	purge_ms = b->cfg->retention_ms / 4;
	if (purge_ms > BRIDGE_PURGE_POLL_MS)
		purge_ms = BRIDGE_PURGE_POLL_MS;
	if (purge_ms < 1000)
		purge_ms = 1000;
	b->purge_ev = add_timer(b, purge_ms, on_purge);
	return b->replay_ev && b->purge_ev ? 0 : -ENOMEM;
}

static int setup_integrations(struct bridge *b)
{
	size_t i;
	int err;

	b->ninteg = b->cfg->nintegrations;
	b->integs = calloc(b->ninteg, sizeof(*b->integs));
	if (!b->integs)
		return -ENOMEM;
	for (i = 0; i < b->ninteg; i++) {
		struct integ *in = &b->integs[i];
		const struct cfg_upstream *u = &b->cfg->integrations[i].upstream;

		in->cfg = &b->cfg->integrations[i];
		in->b = b;
		TAILQ_INIT(&in->ready);
		if (u->bearer_token_file) {
			err = upstream_read_token(u->bearer_token_file, &in->bearer_token);
			if (err < 0) {
				log_event(LOG_ERR, "token_unreadable", " integration=%s error=%s",
					  in->cfg->name, strerror(-err));
				return err;
			}
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
	}
	return 0;
}

static int bridge_setup(struct bridge *b)
{
	int err;

	b->base = event_base_new();
	if (!b->base)
		return -ENOMEM;
	if ((err = setup_integrations(b)) < 0)
		return err;
	if ((err = spool_open(b->cfg->spool_path, &b->spool)) < 0) {
		log_event(LOG_ERR, "spool_open_failed", " path=%s error=\"%s\" detail=\"%s\"",
			  b->cfg->spool_path, strerror(-err),
			  b->spool ? spool_errmsg(b->spool) : "");
		return err;
	}
	if ((err = upstream_new(b->base, &b->up)) < 0)
		return err;
	if ((err = setup_events(b)) < 0)
		return err;
	if ((err = forwarder_start(b)) < 0)
		return err;
	if ((err = metrics_start(b)) < 0)
		return err;
	if ((err = listeners_start(b)) < 0)
		return err;
	b->ready = 1;
	return 0;
}

int bridge_new(const struct cfg *cfg, struct bridge **out)
{
	struct bridge *b = calloc(1, sizeof(*b));
	int err;

	*out = NULL;
	if (!b)
		return -ENOMEM;
	b->cfg = cfg;
	b->started_s = bridge_wall_ms() / 1000;
	TAILQ_INIT(&b->staged);
	err = bridge_setup(b);
	if (err < 0) {
		bridge_free(b);
		return err;
	}
	*out = b;
	return 0;
}

int bridge_run(struct bridge *b)
{
	log_event(LOG_INFO, "started", " integrations=%zu spool=%s", b->ninteg, b->cfg->spool_path);
	if (event_base_dispatch(b->base) < 0)
		return -EIO;
	/* Whatever was read but not yet committed is committed (and ACKed)
	 * now rather than dropped: the peers are still connected. */
	if (b->nstaged || spool_pending(b->spool))
		on_commit(-1, 0, b);
	return 0;
}

void bridge_free(struct bridge *b)
{
	size_t i;

	if (!b)
		return;
	/* Connections first (their waiting replies pass to the forwarder),
	 * then the client (no callback runs after this), then the queues. */
	listeners_free(b);
	metrics_free(b);
	upstream_free(b->up);
	b->up = NULL;
	forwarder_free(b);
	if (b->commit_ev)
		event_free(b->commit_ev);
	if (b->flush_ev)
		event_free(b->flush_ev);
	for (i = 0; i < 3; i++)
		if (b->sig_ev[i])
			event_free(b->sig_ev[i]);
	if (b->replay_ev)
		event_free(b->replay_ev);
	if (b->purge_ev)
		event_free(b->purge_ev);
	spool_close(b->spool);
	for (i = 0; i < b->ninteg; i++)
		free(b->integs[i].bearer_token);
	free(b->integs);
	if (b->base)
		event_base_free(b->base);
	free(b);
}
