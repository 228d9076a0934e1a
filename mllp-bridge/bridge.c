#include "mllp-bridge/bridge.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "mllp-bridge/commit.h"
#include "mllp-bridge/files.h"
#include "mllp-bridge/forward.h"
#include "mllp-bridge/gate.h"
#include "mllp-bridge/log.h"
#include "mllp-bridge/metrics.h"
#include "mllp-bridge/mllp_in.h"
#include "mllp-bridge/mllp_out.h"
#include "mllp-bridge/outbound.h"
#include "mllp-bridge/spool.h"
#include "mllp-bridge/tunnel.h"
#include "mllp-bridge/upstream.h"

#define NSIGNALS 3

_Static_assert(CFG_MAX_INTEGRATIONS <= IPC_INTEGRATIONS_MAX, "every integration fits a STATUS");
_Static_assert(CFG_NAME_MAX <= IPC_NAME_MAX, "every integration name fits a STATUS");

struct bridge {
	struct event_base *base;
	const struct cfg *cfg;
	struct spool *spool;
	struct commit *commit;
	struct upstream *up;
	struct forward *fwd;
	struct mllp_in *in;
	struct metrics *metrics;
	struct gate *gate;
	struct tunnel *tun;	/* NULL without a supervisor */
	struct outbound *outb;	/* NULL without destinations and https */
	struct files *files;	/* NULL without SFTP channels */
	int supervisor_fd;	/* owned until tunnel_new() takes it */
	int64_t *dead_at_start; /* per integration: dead letters in the spool at start */
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

/* A file pulled over SFTP, likewise. */
static int on_file_committed(void *arg, size_t integ, int64_t id, const struct spool_new *m)
{
	struct bridge *b = arg;

	return forward_enqueue(b->fwd, integ, id, m, NULL, NULL);
}

/* A row posted for an SFTP destination goes to its pusher. */
static int on_push(void *arg, size_t dest, int64_t id)
{
	struct bridge *b = arg;

	return files_push(b->files, dest, id);
}

static int is_ready(void *arg)
{
	const struct bridge *b = arg;

	return b->ready && !b->stopping;
}

static void stop(struct bridge *b)
{
	b->stopping = 1;
	event_base_loopexit(b->base, NULL);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	(void)what;
	log_event(LOG_INFO, "shutdown", " signal=%d", (int)sig);
	stop(arg);
}

/* The supervisor is gone or misbehaved; the gate is already closed. It
 * (or its successor) starts a fresh bridge, which finds the spool as this
 * one leaves it: stop as on SIGTERM. */
static void on_link_lost(void *arg, const char *reason)
{
	log_event(LOG_INFO, "shutdown", " reason=\"supervisor link lost: %s\"", reason);
	stop(arg);
}

/* ---- what the supervisor hears (IPC_STATUS) ---- */

static void count_dead(void *arg, const struct spool_stat *st)
{
	struct bridge *b = arg;

	/* The forwarder's figures: a destination named like an integration
	 * must not add its dead letters to the integration's. */
	if (st->channel != SPOOL_IN)
		return;
	for (size_t i = 0; i < b->cfg->nintegrations; i++)
		if (strcmp(b->cfg->integrations[i].name, st->integration) == 0)
			b->dead_at_start[i] = st->dead;
}

/* forward counts the dead letters of this run; those of earlier runs are
 * counted once here, so that a restarted bridge still reports them. */
static int load_dead_counts(struct bridge *b)
{
	int err;

	if (!(b->dead_at_start = calloc(b->cfg->nintegrations + 1, sizeof(*b->dead_at_start))))
		return -ENOMEM;
	if ((err = spool_stats(b->spool, count_dead, b)) < 0)
		log_event(LOG_WARN, "spool_stats_failed", " detail=\"%s\"", spool_errmsg(b->spool));
	return 0; /* the counts are for the operator's view only: not fatal */
}

/* The same figures /metrics shows: forward's snapshot per integration. */
static void fill_status(void *arg, struct ipc_status *st)
{
	struct bridge *b = arg;
	int64_t now = stats_wall_ms(), dead;
	struct fwd_stats fs;

	for (size_t i = 0; i < b->cfg->nintegrations && i < IPC_INTEGRATIONS_MAX; i++) {
		struct ipc_integration *x = &st->in[st->n++];

		forward_stats(b->fwd, i, &fs);
		snprintf(x->name, sizeof(x->name), "%s", b->cfg->integrations[i].name);
		x->depth = fs.depth;
		x->oldest_age_ms =
		    fs.oldest_ms && now > fs.oldest_ms ? (uint64_t)(now - fs.oldest_ms) : 0;
		/* An operator's replay takes a dead letter back into the queue. */
		dead = b->dead_at_start[i] + (int64_t)fs.dead - (int64_t)fs.replayed;
		x->dead = dead > 0 ? (uint64_t)dead : 0;
	}
}

/* Each destination's queue, as /metrics shows it, for appliancectl status. */
static void fill_outbox(void *arg, struct ipc_outbox *ob)
{
	struct bridge *b = arg;
	const struct mllp_out *out = outbound_senders(b->outb);
	int64_t now = stats_wall_ms();
	struct mllp_out_stats s;

	for (size_t i = 0; out && i < b->cfg->ndestinations && i < IPC_DESTINATIONS_MAX; i++) {
		struct ipc_destination *x = &ob->d[ob->n++];

		mllp_out_stats(out, i, &s);
		snprintf(x->name, sizeof(x->name), "%s", b->cfg->destinations[i].name);
		x->queued = s.queued;
		x->oldest_age_ms =
		    s.oldest_ms && now > s.oldest_ms ? (uint64_t)(now - s.oldest_ms) : 0;
		x->waiting_gate = (uint8_t)(s.waiting_gate != 0);
		x->connected = (uint8_t)(s.connected != 0);
		x->failed = s.rejected + s.dead;
	}
}

/* ---- set-up ---- */

/* HTTPS never goes through a tunnel: no upstream connection to any
 * tunnel's remote traffic selectors, whatever its host name resolves to. */
static int forbid_tunnels(struct bridge *b)
{
	const struct cfg *c = b->cfg;
	int err;

	for (size_t t = 0; t < c->ntunnels; t++)
		for (size_t k = 0; k < c->tunnels[t].nchildren; k++)
			for (size_t i = 0; i < c->tunnels[t].children[k].nremote_ts; i++)
				if ((err = upstream_forbid(b->up,
							   &c->tunnels[t].children[k].remote_ts[i],
							   c->tunnels[t].name)) < 0)
					return err;
	return 0;
}

/* The supervisor link, or the one line that says why nothing will pass. */
static int link_supervisor(struct bridge *b)
{
	struct tunnel_hooks th = {
	    .status = fill_status, .outbox = fill_outbox, .lost = on_link_lost, .arg = b};
	int fd = b->supervisor_fd;

	if (fd < 0) {
		if (b->cfg->gate == CFG_GATE_CLOSED)
			log_event(LOG_WARN, "gate_closed_no_supervisor",
				  " action=\"no MLLP connection is accepted: nothing reports an "
				  "installed tunnel; set gate: open to run without tunnels\"");
		return 0;
	}
	b->supervisor_fd = -1; /* tunnel_new() owns it now, also on failure */
	return tunnel_new(b->base, fd, b->gate, &th, &b->tun);
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

/* Downloads wait beside the spool, on the same file system. */
static int start_files(struct bridge *b)
{
	struct files_hooks fh = {.committed = on_file_committed, .arg = b};
	char *dir;
	int err;

	if (asprintf(&dir, "%s.files", b->cfg->spool_path) < 0)
		return -ENOMEM;
	err = files_new(b->base, b->cfg, b->spool, b->commit, b->gate, dir, &fh, &b->files);
	free(dir);
	return err;
}

static int bridge_setup(struct bridge *b)
{
	struct mllp_in_hooks hooks = {.committed = on_committed, .arg = b};
	struct outbound_hooks oh = {.push = on_push, .arg = b};
	struct metrics_sources src;
	int err;

	if (!(b->base = event_base_new()))
		return -ENOMEM;
	if ((err = setup_signals(b)) < 0 ||
	    (err = gate_new(b->cfg->gate == CFG_GATE_OPEN, &b->gate)) < 0 ||
	    (err = open_spool(b)) < 0 || (err = load_dead_counts(b)) < 0 ||
	    (err = commit_new(b->base, b->spool, b->cfg->retention_ms, &b->commit)) < 0 ||
	    (err = upstream_new(b->base, &b->up)) < 0 || (err = forbid_tunnels(b)) < 0 ||
	    (err = forward_new(b->base, b->cfg, b->spool, b->commit, b->up, &b->fwd)) < 0 ||
	    (err = mllp_in_new(b->base, b->cfg, b->commit, b->gate, &hooks, &b->in)) < 0 ||
	    (err = start_files(b)) < 0 ||
	    (err = outbound_new(b->base, b->cfg, b->spool, b->commit, b->gate, &oh, &b->outb)) <
		0 ||
	    (err = link_supervisor(b)) < 0)
		return err;
	src = (struct metrics_sources){.in = b->in,
				       .fwd = b->fwd,
				       .commit = b->commit,
				       .up = b->up,
				       .gate = b->gate,
				       .tun = b->tun,
				       .out = outbound_senders(b->outb),
				       .https = outbound_listener(b->outb),
				       .files = b->files,
				       .ready = is_ready,
				       .arg = b};
	if ((err = metrics_new(b->base, b->cfg, &src, &b->metrics)) < 0)
		return err;
	b->ready = 1;
	return 0;
}

int bridge_new(const struct cfg *cfg, int supervisor_fd, struct bridge **out)
{
	struct bridge *b = calloc(1, sizeof(*b));
	int err;

	*out = NULL;
	if (!b) {
		if (supervisor_fd >= 0)
			close(supervisor_fd);
		return -ENOMEM;
	}
	b->cfg = cfg;
	b->supervisor_fd = supervisor_fd;
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

/* Outermost first: nothing may call back into a module already freed. The
 * link goes first (no gate change after it); no request completes once the
 * client is gone; waiting senders hear the forwarder and the commit let go
 * of them; then the connections close, and the gate they asked goes last. */
void bridge_free(struct bridge *b)
{
	if (!b)
		return;
	tunnel_free(b->tun);
	if (b->supervisor_fd >= 0)
		close(b->supervisor_fd);
	metrics_free(b->metrics);
	upstream_free(b->up);
	forward_free(b->fwd);
	outbound_free(b->outb);
	commit_free(b->commit);
	files_free(b->files); /* after the commit: its callbacks reach the channels */
	mllp_in_free(b->in);
	gate_free(b->gate);
	spool_close(b->spool);
	free(b->dead_at_start);
	for (int i = 0; i < NSIGNALS; i++)
		if (b->sig_ev[i])
			event_free(b->sig_ev[i]);
	if (b->base)
		event_base_free(b->base);
	free(b);
}
