#include "mllp-bridge/bridge.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "mllp-bridge/commit.h"
#include "mllp-bridge/forward.h"
#include "mllp-bridge/log.h"
#include "mllp-bridge/metrics.h"
#include "mllp-bridge/mllp_in.h"
#include "mllp-bridge/spool.h"
#include "mllp-bridge/upstream.h"

#define NSIGNALS 3

struct bridge {
	struct event_base *base;
	const struct cfg *cfg;
	struct spool *spool;
	struct commit *commit;
	struct upstream *up;
	struct forward *fwd;
	struct mllp_in *in;
	struct metrics *metrics;
	struct event *sig_ev[NSIGNALS];
	int ready, stopping;
};

/* The committed hook: an accepted message goes to its integration's lanes. */
static int on_committed(void *arg, size_t integ, int64_t id, const struct spool_new *m,
			fwd_answer_cb cb, void *cb_arg)
{
	struct bridge *b = arg;

	return forward_enqueue(b->fwd, integ, id, m, cb, cb_arg);
}

static int is_ready(void *arg)
{
	const struct bridge *b = arg;

	return b->ready && !b->stopping;
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct bridge *b = arg;

	(void)what;
	log_event(LOG_INFO, "shutdown", " signal=%d", (int)sig);
	b->stopping = 1;
	event_base_loopexit(b->base, NULL);
}

static int setup_signals(struct bridge *b)
{
	static const int sigs[NSIGNALS] = {SIGINT, SIGTERM, SIGHUP};

	for (int i = 0; i < NSIGNALS; i++) {
		b->sig_ev[i] = evsignal_new(b->base, sigs[i], on_signal, b);
		if (!b->sig_ev[i] || event_add(b->sig_ev[i], NULL) < 0)
			return -ENOMEM;
	}
	return 0;
}

static int open_spool(struct bridge *b)
{
	int err = spool_open(b->cfg->spool_path, &b->spool);

	if (err < 0)
		log_event(LOG_ERR, "spool_open_failed", " path=%s error=\"%s\" detail=\"%s\"",
			  b->cfg->spool_path, strerror(-err),
			  b->spool ? spool_errmsg(b->spool) : "");
	return err;
}

static int bridge_setup(struct bridge *b)
{
	struct mllp_in_hooks hooks = {.committed = on_committed, .arg = b};
	struct metrics_sources src;
	int err;

	if (!(b->base = event_base_new()))
		return -ENOMEM;
	if ((err = setup_signals(b)) < 0 || (err = open_spool(b)) < 0 ||
	    (err = commit_new(b->base, b->spool, b->cfg->retention_ms, &b->commit)) < 0 ||
	    (err = upstream_new(b->base, &b->up)) < 0 ||
	    (err = forward_new(b->base, b->cfg, b->spool, b->commit, b->up, &b->fwd)) < 0 ||
	    (err = mllp_in_new(b->base, b->cfg, b->commit, &hooks, &b->in)) < 0)
		return err;
	src = (struct metrics_sources){.in = b->in,
				       .fwd = b->fwd,
				       .commit = b->commit,
				       .up = b->up,
				       .ready = is_ready,
				       .arg = b};
	if ((err = metrics_new(b->base, b->cfg, &src, &b->metrics)) < 0)
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
	if ((err = bridge_setup(b)) < 0) {
		bridge_free(b);
		return err;
	}
	*out = b;
	return 0;
}

int bridge_run(struct bridge *b)
{
	log_event(LOG_INFO, "started", " integrations=%zu spool=%s", b->cfg->nintegrations,
		  b->cfg->spool_path);
	if (event_base_dispatch(b->base) < 0)
		return -EIO;
	/* Whatever was read but not yet committed is committed (and ACKed)
	 * now rather than dropped: the peers are still connected. */
	commit_drain(b->commit);
	return 0;
}

/* Outermost first: nothing may call back into a module already freed. No
 * request completes once the client is gone; waiting senders hear the
 * forwarder and the commit let go of them; then the connections close. */
void bridge_free(struct bridge *b)
{
	if (!b)
		return;
	metrics_free(b->metrics);
	upstream_free(b->up);
	forward_free(b->fwd);
	commit_free(b->commit);
	mllp_in_free(b->in);
	spool_close(b->spool);
	for (int i = 0; i < NSIGNALS; i++)
		if (b->sig_ev[i])
			event_free(b->sig_ev[i]);
	if (b->base)
		event_base_free(b->base);
	free(b);
}
