#include "mllp-bridge/outbound.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <event2/event.h>

#include "mllp-bridge/commit.h"
#include "mllp-bridge/https_in.h"
#include "mllp-bridge/log.h"
#include "mllp-bridge/mllp_out.h"
#include "mllp-bridge/spool.h"

/* A second request with a key still being committed: answered with the
 * first one's id once it is durable. */
struct repeat {
	https_in_done_cb cb;
	void *arg;
	struct repeat *next;
};

/* One submit between commit_stage() and its commit. */
struct staging {
	struct outbound *o; /* NULL once outbound_free() ran: answer, queue nothing */
	struct staging *next;
	char dest[CFG_NAME_MAX + 1];
	char key[SPOOL_KEY_MAX + 1];
	https_in_done_cb cb;
	void *arg;
	struct repeat *repeats;
};

struct outbound {
	struct event_base *base;
	const struct cfg *cfg;
	struct spool *spool;
	struct commit *commit;
	struct mllp_out *out;
	struct https_in *in;
	struct staging *staged;
	struct spool_row view;	     /* the row behind the last lookup */
	struct https_in_hooks hooks; /* borrowed by https_in for its life */
	struct outbound_hooks up;    /* rows for SFTP destinations */
	struct event *replay_ev;     /* polls for rows an operator replayed */
};

#define OUTBOUND_REPLAY_POLL_MS 1000 /* operator replays are picked up this fast */

static int64_t wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---------- submit ---------- */

/* A message posted without an Idempotency-Key still needs one for the
 * spool: a random one, so that no two such messages are ever merged. */
static int random_key(char *buf, size_t cap)
{
	uint8_t r[16];

	if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r)
		return -EIO;
	snprintf(buf, cap, "out-");
	for (size_t i = 0; i < sizeof r; i++)
		snprintf(buf + 4 + 2 * i, cap - 4 - 2 * i, "%02x", r[i]);
	return 0;
}

static struct staging *find_staged(struct outbound *o, const char *dest, const char *key)
{
	for (struct staging *st = o->staged; st; st = st->next)
		if (!strcmp(st->dest, dest) && !strcmp(st->key, key))
			return st;
	return NULL;
}

static void unlink_staged(struct outbound *o, struct staging *st)
{
	for (struct staging **p = &o->staged; *p; p = &(*p)->next)
		if (*p == st) {
			*p = st->next;
			return;
		}
}

/* The index of an SFTP destination, or -ENOENT (an MLLP one, or none). */
static int push_dest(const struct outbound *o, const char *name)
{
	for (size_t i = 0; i < o->cfg->ndestinations; i++)
		if (strcmp(o->cfg->destinations[i].name, name) == 0)
			return o->cfg->destinations[i].sftp ? (int)i : -ENOENT;
	return -ENOENT;
}

static int queue_row(struct outbound *o, int64_t id, const char *dest_name, const void *body,
		     size_t len, const char *control_id, int attempts)
{
	int dest = push_dest(o, dest_name);

	if (dest >= 0)
		return o->up.push ? o->up.push(o->up.arg, (size_t)dest, id) : -ENOENT;
	dest = o->out ? mllp_out_dest(o->out, dest_name) : -ENOENT;
	return dest < 0
		   ? dest
		   : mllp_out_enqueue(o->out, (size_t)dest, id, body, len, control_id, attempts);
}

static void queue_committed(struct outbound *o, int64_t id, const struct spool_new *m)
{
	int err = queue_row(o, id, m->integration, m->body, m->len, m->control_id, 0);

	/* Stored and answered 202: it stays in the spool and is queued again
	 * at the next start even if the sender refused it now. */
	if (err < 0)
		log_event(LOG_ERR, "outbound_enqueue_failed",
			  " destination=%s id=%lld error=\"%s\"", m->integration, (long long)id,
			  strerror(-err));
}

static void on_staged(void *arg, int err, int64_t id, const struct spool_new *m)
{
	struct staging *st = arg;
	struct repeat *r, *next;

	if (st->o) {
		unlink_staged(st->o, st);
		if (err == 0)
			queue_committed(st->o, id, m);
	}
	st->cb(st->arg, err, id, 0);
	for (r = st->repeats; r; r = next) {
		next = r->next;
		r->cb(r->arg, err, id, 1);
		free(r);
	}
	free(st);
}

/* An answer that is known at once still goes out from the loop (https_in's
 * contract: never inside submit()). */
struct later {
	https_in_done_cb cb;
	void *arg;
	int64_t id;
};

static void later_fire(evutil_socket_t fd, short what, void *arg)
{
	struct later *l = arg;

	(void)fd;
	(void)what;
	l->cb(l->arg, 0, l->id, 1);
	free(l);
}

static int answer_later(struct outbound *o, https_in_done_cb cb, void *arg, int64_t id)
{
	struct later *l = malloc(sizeof *l);
	struct timeval now = {0, 0};

	if (!l)
		return -ENOMEM;
	*l = (struct later){.cb = cb, .arg = arg, .id = id};
	if (event_base_once(o->base, -1, EV_TIMEOUT, later_fire, l, &now) < 0) {
		free(l);
		return -ENOMEM;
	}
	return 0;
}

static int add_repeat(struct staging *st, https_in_done_cb cb, void *arg)
{
	struct repeat *r = malloc(sizeof *r);

	if (!r)
		return -ENOMEM;
	*r = (struct repeat){.cb = cb, .arg = arg, .next = st->repeats};
	st->repeats = r;
	return 0;
}

static int stage(struct outbound *o, const struct spool_new *m, https_in_done_cb cb, void *arg)
{
	struct staging *st = calloc(1, sizeof *st);
	int err;

	if (!st)
		return -ENOMEM;
	*st = (struct staging){.o = o, .cb = cb, .arg = arg, .next = o->staged};
	snprintf(st->dest, sizeof st->dest, "%s", m->integration);
	snprintf(st->key, sizeof st->key, "%s", m->idem_key);
	if ((err = commit_stage(o->commit, m, on_staged, st)) < 0) {
		free(st);
		return err;
	}
	o->staged = st;
	return 0;
}

static int ob_submit(void *arg, const struct https_in_msg *hm, https_in_done_cb cb, void *cb_arg)
{
	struct outbound *o = arg;
	const char *dest = hm->dest, *idem_key = hm->idem_key;
	char key[SPOOL_KEY_MAX + 1];
	struct spool_new m;
	struct staging *st;
	int64_t id;
	int err;

	if (idem_key) {
		/* The same key twice: the first message's id, stored once. */
		if ((st = find_staged(o, dest, idem_key)))
			return add_repeat(st, cb, cb_arg);
		if (spool_find_key(o->spool, SPOOL_OUT, dest, idem_key, &id) == 0)
			return answer_later(o, cb, cb_arg, id);
		snprintf(key, sizeof key, "%s", idem_key);
	} else if ((err = random_key(key, sizeof key)) < 0) {
		return err;
	}
	m = (struct spool_new){.integration = dest,
			       .sender = hm->client ? hm->client : "",
			       .content_type = hm->content_type,
			       .control_id = hm->control_id ? hm->control_id : "",
			       .idem_key = key,
			       .lane = dest,
			       .lane2 = "",
			       .received_ms = wall_ms(),
			       .body = hm->body,
			       .len = hm->len,
			       .file_name = hm->file_name,
			       .channel = SPOOL_OUT};
	return stage(o, &m, cb, cb_arg);
}

/* ---------- lookup ---------- */

static const char *state_text(enum spool_state s)
{
	switch (s) {
	case SPOOL_QUEUED:
		return "queued";
	case SPOOL_INFLIGHT:
		return "sending";
	case SPOOL_DELIVERED:
		return "acked";
	case SPOOL_REJECTED:
		return "rejected";
	case SPOOL_DEAD:
		return "dead";
	}
	return "queued";
}

/* Sent and waiting for its ACK: the sender knows, the spool does not (a
 * write per send would cost a commit's share for nothing durable). */
static int sending(const struct outbound *o, const struct spool_row *r)
{
	int dest = o->out ? mllp_out_dest(o->out, r->integration) : -ENOENT;
	struct mllp_out_stats st;

	if (dest < 0 || r->state != SPOOL_QUEUED)
		return 0;
	mllp_out_stats(o->out, (size_t)dest, &st);
	return st.in_flight_id == r->id;
}

static int ob_lookup(void *arg, int64_t id, struct https_in_view *v)
{
	struct outbound *o = arg;
	struct spool_row *r = &o->view;
	int err;

	spool_row_clear(r);
	if ((err = spool_get(o->spool, id, r, NULL)) < 0)
		return err;
	if (r->channel != SPOOL_OUT) {
		spool_row_clear(r);
		return -ENOENT;
	}
	*v = (struct https_in_view){.destination = r->integration,
				    .state = sending(o, r) ? "sending" : state_text(r->state),
				    .attempts = (unsigned)r->attempts,
				    .last_error = r->last_error,
				    .ack = r->ack,
				    .ack_len = r->ack_len,
				    .received_ms = r->received_ms};
	return 0;
}

/* ---------- wait (Prefer: wait=N) ---------- */

struct wait {
	struct outbound *o;
	int64_t id;
	https_in_wait_cb cb;
	void *arg;
	struct mllp_out_watch *watch;
	struct event *timer;
	uint64_t timeout_ms;
	int check_spool; /* the sender did not know it: look at the row first */
};

static void wait_free(struct wait *w)
{
	mllp_out_unwatch(w->watch);
	if (w->timer)
		event_free(w->timer);
	free(w);
}

static void on_watched(void *arg, int64_t id, enum mllp_out_result result, const void *ack,
		       size_t len, const char *error)
{
	struct wait *w = arg;

	(void)id;
	(void)error;
	w->watch = NULL; /* over: its handle is gone */
	if (result == MLLP_OUT_ACKED || result == MLLP_OUT_REJECTED)
		w->cb(w->arg, 0, ack, len);
	else
		w->cb(w->arg, result == MLLP_OUT_DEAD ? -EPIPE : -ECANCELED, NULL, 0);
	wait_free(w);
}

/* Finished before the wait began: the answer is in the spool. Returns 1
 * when the wait was answered. */
static int answer_from_spool(struct wait *w)
{
	struct spool_row r = {0};
	int done = 0;

	if (spool_get(w->o->spool, w->id, &r, NULL) < 0)
		return 0;
	if ((r.state == SPOOL_DELIVERED || r.state == SPOOL_REJECTED) && r.ack) {
		w->cb(w->arg, 0, r.ack, r.ack_len);
		done = 1;
	} else if (r.state == SPOOL_DEAD) {
		w->cb(w->arg, -EPIPE, NULL, 0);
		done = 1;
	}
	spool_row_clear(&r);
	return done;
}

static void on_wait_timer(evutil_socket_t fd, short what, void *arg)
{
	struct wait *w = arg;
	struct timeval tv;

	(void)fd;
	(void)what;
	if (w->check_spool) {
		w->check_spool = 0;
		if (answer_from_spool(w)) {
			wait_free(w);
			return;
		}
		tv = (struct timeval){.tv_sec = (time_t)(w->timeout_ms / 1000),
				      .tv_usec = (suseconds_t)(w->timeout_ms % 1000) * 1000};
		evtimer_add(w->timer, &tv);
		return;
	}
	w->cb(w->arg, -ETIMEDOUT, NULL, 0);
	wait_free(w);
}

static int ob_wait(void *arg, int64_t id, uint64_t timeout_ms, https_in_wait_cb cb, void *cb_arg,
		   void **handle)
{
	struct outbound *o = arg;
	struct wait *w = calloc(1, sizeof *w);
	struct timeval tv = {.tv_sec = (time_t)(timeout_ms / 1000),
			     .tv_usec = (suseconds_t)(timeout_ms % 1000) * 1000};
	int err;

	if (!w)
		return -ENOMEM;
	*w = (struct wait){.o = o, .id = id, .cb = cb, .arg = cb_arg, .timeout_ms = timeout_ms};
	if (!(w->timer = evtimer_new(o->base, on_wait_timer, w))) {
		free(w);
		return -ENOMEM;
	}
	err = o->out ? mllp_out_watch(o->out, id, on_watched, w, &w->watch) : -ENOENT;
	if (err == -ENOENT) {
		/* Already answered, or not queued here: the row says which,
		 * at the next loop pass (never inside wait()). */
		w->check_spool = 1;
		tv = (struct timeval){0, 0};
	} else if (err < 0) {
		wait_free(w);
		return err;
	}
	evtimer_add(w->timer, &tv);
	*handle = w;
	return 0;
}

static void ob_cancel(void *arg, void *handle)
{
	(void)arg;
	wait_free(handle);
}

/* ---------- start-up ---------- */

struct ids {
	int64_t *v;
	size_t n, cap;
};

static int collect(void *arg, const struct spool_row *r)
{
	struct ids *ids = arg;

	if (ids->n == ids->cap) {
		size_t cap = ids->cap ? ids->cap * 2 : 64;
		int64_t *v = realloc(ids->v, cap * sizeof *v);

		if (!v)
			return -ENOMEM;
		ids->v = v;
		ids->cap = cap;
	}
	ids->v[ids->n++] = r->id;
	return 0;
}

static void requeue_one(struct outbound *o, int64_t id)
{
	struct spool_row r = {0};
	void *body = NULL;
	int err = spool_get(o->spool, id, &r, NULL);

	/* A file for an SFTP destination (up to 64 MiB) is read by its pusher
	 * when its turn comes, not here. */
	if (err == 0 && push_dest(o, r.integration) < 0) {
		spool_row_clear(&r);
		err = spool_get(o->spool, id, &r, &body);
	}
	if (err == 0)
		err = queue_row(o, id, r.integration, body, r.len, r.control_id, r.attempts);
	if (err < 0)
		log_event(LOG_ERR, "outbound_requeue_failed",
			  " destination=%s id=%lld error=\"%s\"",
			  r.integration ? r.integration : "?", (long long)id, strerror(-err));
	spool_row_clear(&r);
	free(body);
}

static int ignore_row(void *arg, const struct spool_row *r)
{
	(void)arg;
	(void)r;
	return 0;
}

/* Rows accepted before a restart go back to their senders, in id order
 * (the ids first: a read inside the listing would share its statement).
 * Replays made while the bridge was down are among them: their flags are
 * cleared so that the poll does not queue them twice. */
static int requeue_pending(struct outbound *o)
{
	struct ids ids = {0};
	int err = spool_load_pending_channel(o->spool, SPOOL_OUT, collect, &ids);

	if (err == 0)
		err = spool_take_replayed_channel(o->spool, SPOOL_OUT, ignore_row, NULL);
	for (size_t i = 0; err == 0 && i < ids.n; i++)
		requeue_one(o, ids.v[i]);
	if (err == 0 && ids.n)
		log_event(LOG_INFO, "outbound_loaded", " pending=%zu", ids.n);
	free(ids.v);
	return err;
}

/* `mllp-bridge spool replay` on an outbound dead or rejected row: the row
 * is queued again, and its sender takes it back in its place by id. */
static void on_replay_poll(evutil_socket_t fd, short what, void *arg)
{
	struct outbound *o = arg;
	struct ids ids = {0};

	(void)fd;
	(void)what;
	if (spool_take_replayed_channel(o->spool, SPOOL_OUT, collect, &ids) < 0)
		log_event(LOG_WARN, "replay_poll_failed", " channel=out detail=\"%s\"",
			  spool_errmsg(o->spool));
	for (size_t i = 0; i < ids.n; i++) {
		log_event(LOG_INFO, "outbound_replayed", " id=%lld", (long long)ids.v[i]);
		requeue_one(o, ids.v[i]);
	}
	free(ids.v);
}

static int start_replay_poll(struct outbound *o)
{
	static const struct timeval poll = {OUTBOUND_REPLAY_POLL_MS / 1000,
					    (OUTBOUND_REPLAY_POLL_MS % 1000) * 1000};

	o->replay_ev = event_new(o->base, -1, EV_PERSIST, on_replay_poll, o);
	return o->replay_ev && event_add(o->replay_ev, &poll) == 0 ? 0 : -ENOMEM;
}

int outbound_new(struct event_base *base, const struct cfg *cfg, struct spool *spool,
		 struct commit *commit, struct gate *gate, const struct outbound_hooks *hooks,
		 struct outbound **out)
{
	struct outbound *o;
	int err = 0;

	*out = NULL;
	if (!cfg->ndestinations && !cfg->https.listen_text)
		return 0;
	if (!(o = calloc(1, sizeof *o)))
		return -ENOMEM;
	*o = (struct outbound){
	    .base = base, .cfg = cfg, .spool = spool, .commit = commit, .up = *hooks};
	o->hooks = (struct https_in_hooks){.arg = o,
					   .submit = ob_submit,
					   .lookup = ob_lookup,
					   .wait = ob_wait,
					   .cancel = ob_cancel};
	if (cfg->ndestinations &&
	    (err = mllp_out_new(base, cfg, spool, commit, gate, &o->out)) == 0 &&
	    (err = requeue_pending(o)) == 0)
		err = start_replay_poll(o);
	if (err == 0)
		err = https_in_new(base, cfg, &o->hooks, &o->in);
	if (err < 0) {
		outbound_free(o);
		return err;
	}
	*out = o;
	return 0;
}

const struct mllp_out *outbound_senders(const struct outbound *o)
{
	return o ? o->out : NULL;
}

const struct https_in *outbound_listener(const struct outbound *o)
{
	return o ? o->in : NULL;
}

void outbound_free(struct outbound *o)
{
	if (!o)
		return;
	if (o->replay_ev)
		event_free(o->replay_ev);
	https_in_free(o->in);
	mllp_out_free(o->out);
	/* Commits still pending answer their requests without us. */
	for (struct staging *st = o->staged; st; st = st->next)
		st->o = NULL;
	spool_row_clear(&o->view);
	free(o);
}
