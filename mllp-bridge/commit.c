#include "mllp-bridge/commit.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <event2/event.h>

#include "mllp-bridge/log.h"

/* A staged message: the spool_new view points into data[]. */
struct rec {
	TAILQ_ENTRY(rec) link;
	commit_cb cb;
	void *arg;
	int err;
	int64_t id;
	size_t size;
	struct spool_new m;
	char data[];
};

TAILQ_HEAD(rec_list, rec);

struct commit {
	struct event_base *base;
	struct spool *spool;
	struct event *ev;    /* the group commit, once per loop pass */
	struct event *flush; /* state changes with no message to ride on */
	struct event *purge;
	struct rec_list staged;	 /* appended to the open batch */
	struct rec_list settled; /* outcome known, callback not yet run */
	size_t nstaged, staged_bytes;
	int scheduled;
	uint64_t retention_ms;
	struct commit_stats st;
};

static void schedule(struct commit *c)
{
	if (!c->scheduled) {
		c->scheduled = 1;
		event_active(c->ev, 0, 0);
	}
}

/* Every staged message now has its outcome. */
static void settle(struct commit *c, int err)
{
	struct rec *r;

	if (err < 0) {
		log_event(LOG_ERR, "spool_commit_failed", " rows=%zu error=%s detail=\"%s\"",
			  c->nstaged, strerror(-err), spool_errmsg(c->spool));
		c->st.failures++;
	}
	while ((r = TAILQ_FIRST(&c->staged))) {
		TAILQ_REMOVE(&c->staged, r, link);
		r->err = err;
		TAILQ_INSERT_TAIL(&c->settled, r, link);
	}
	c->nstaged = 0;
	c->staged_bytes = 0;
}

static void do_commit(struct commit *c)
{
	size_t rows = c->nstaged;
	double t0;
	int err;

	if (!rows && spool_pending(c->spool) == 0)
		return;
	t0 = stats_now();
	err = spool_commit(c->spool);
	histogram_observe(&c->st.time, stats_now() - t0);
	if (err == 0 && rows) {
		c->st.commits++;
		c->st.rows += rows;
	}
	settle(c, err);
}

static void run_settled(struct commit *c)
{
	struct rec *r;

	while ((r = TAILQ_FIRST(&c->settled))) {
		TAILQ_REMOVE(&c->settled, r, link);
		r->cb(r->arg, r->err, r->err ? 0 : r->id, &r->m);
		free(r);
	}
}

static void on_commit(evutil_socket_t fd, short what, void *arg)
{
	struct commit *c = arg;

	(void)fd;
	(void)what;
	c->scheduled = 0;
	evtimer_del(c->flush);
	do_commit(c);
	run_settled(c);
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	schedule(arg);
}

static void schedule_flush(struct commit *c)
{
	static const struct timeval delay = {0, COMMIT_FLUSH_MS * 1000};

	if (!c->scheduled && !evtimer_pending(c->flush, NULL))
		evtimer_add(c->flush, &delay);
}

/* --- staging --------------------------------------------------------- */

static char *put(char **p, const char *s)
{
	size_t n = strlen(s) + 1;
	char *at = memcpy(*p, s, n);

	*p += n;
	return at;
}

#define OPT(s) ((s) ? (s) : "")

/* file_name: the copy's file name, or NULL (none). */
static struct rec *rec_new(const struct spool_new *m, const char *file_name)
{
	const char *strs[8] = {m->integration, m->sender,    m->content_type, m->control_id,
			       m->idem_key,    OPT(m->lane), OPT(m->lane2),   OPT(file_name)};
	size_t size = sizeof(struct rec) + m->len, i;
	struct rec *r;
	char *p;

	for (i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
		if (!strs[i])
			return NULL; /* the spool would refuse it: checked by the caller */
		size += strlen(strs[i]) + 1;
	}
	if (!(r = malloc(size)))
		return NULL;
	r->size = size;
	p = r->data;
	r->m = (struct spool_new){
	    .received_ms = m->received_ms, .len = m->len, .body = p, .channel = m->channel};
	if (m->len)
		memcpy(p, m->body, m->len);
	p += m->len;
	r->m.integration = put(&p, strs[0]);
	r->m.sender = put(&p, strs[1]);
	r->m.content_type = put(&p, strs[2]);
	r->m.control_id = put(&p, strs[3]);
	r->m.idem_key = put(&p, strs[4]);
	r->m.lane = put(&p, strs[5]);
	r->m.lane2 = put(&p, strs[6]);
	r->m.file_name = file_name ? put(&p, strs[7]) : NULL;
	return r;
}

int commit_stage(struct commit *c, const struct spool_new *m, commit_cb cb, void *arg)
{
	struct rec *r;
	int err;

	if (!m->integration || !m->sender || !m->content_type || !m->control_id || !m->idem_key)
		return -EINVAL;
	if (!(r = rec_new(m, m->file_name)))
		return -ENOMEM;
	r->cb = cb;
	r->arg = arg;
	err = spool_append(c->spool, &r->m, &r->id);
	if (err == -EINVAL || err == -EMSGSIZE) {
		free(r); /* refused on its own merits; the batch is untouched */
		return err;
	}
	TAILQ_INSERT_TAIL(&c->staged, r, link);
	c->nstaged++;
	c->staged_bytes += r->size;
	if (err < 0)
		settle(c, err); /* spool_append rolled the whole batch back */
	else if (c->nstaged >= COMMIT_BATCH_MAX || c->staged_bytes >= COMMIT_MEM_MAX)
		do_commit(c); /* now, bounded; the callbacks still wait for the loop */
	schedule(c);
	return 0;
}

/* Every message of a file, and the record, as the spool will judge them. */
static int check_file(const struct spool_new *m, size_t n, const struct spool_file *f)
{
	int err;

	if ((err = spool_file_check(f, n)) < 0) /* n first: before anything is allocated */
		return err;
	if (!m)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		if ((err = spool_check_new(&m[i])) < 0)
			return err;
		if (!m[i].integration || !f->route || strcmp(m[i].integration, f->route) != 0)
			return -EINVAL; /* the record would not take the row */
	}
	return 0;
}

/* The copies of a file's messages, in order: all or none. */
static struct rec **file_recs(const struct spool_new *m, size_t n, const struct spool_file *f,
			      commit_cb cb, void *arg)
{
	struct rec **recs = calloc(n, sizeof(*recs));

	for (size_t i = 0; recs && i < n; i++) {
		const char *name = m[i].file_name && *m[i].file_name ? m[i].file_name : f->name;

		if (!(recs[i] = rec_new(&m[i], name))) {
			while (i > 0)
				free(recs[--i]);
			free(recs);
			return NULL;
		}
		recs[i]->cb = cb;
		recs[i]->arg = arg;
	}
	return recs;
}

/* Appends the copies; on a spool failure every copy of the file (appended
 * or not) shares the fate of the batch. Returns 0 or that failure. */
static int file_append(struct commit *c, struct rec **recs, size_t n, int64_t *ids)
{
	int err = 0;
	size_t i;

	for (i = 0; i < n && !err; i++) {
		err = spool_append(c->spool, &recs[i]->m, &recs[i]->id);
		assert(err != -EINVAL && err != -EMSGSIZE); /* checked by check_file() */
		ids[i] = recs[i]->id;
		TAILQ_INSERT_TAIL(&c->staged, recs[i], link);
		c->nstaged++;
		c->staged_bytes += recs[i]->size;
	}
	for (; i < n; i++) { /* never appended: told with the others */
		TAILQ_INSERT_TAIL(&c->staged, recs[i], link);
		c->nstaged++;
	}
	return err;
}

int commit_stage_file(struct commit *c, const struct spool_new *m, size_t n,
		      const struct spool_file *f, commit_cb cb, void *arg, int64_t *file_id)
{
	struct rec **recs;
	int64_t *ids;
	int err;

	if ((err = check_file(m, n, f)) < 0)
		return err;
	recs = file_recs(m, n, f, cb, arg);
	ids = malloc(n * sizeof(*ids));
	if (!recs || !ids) {
		for (size_t i = 0; recs && i < n; i++)
			free(recs[i]);
		free(recs);
		free(ids);
		return -ENOMEM;
	}
	*file_id = 0;
	err = file_append(c, recs, n, ids);
	if (!err && (err = spool_file_add(c->spool, f, ids, n, file_id)) < 0) {
		/* The spool rolled the batch back and keeps the loss for its
		 * next commit; everyone staged hears it now, so take it. */
		int told = spool_commit(c->spool);

		assert(told == err);
		(void)told;
	}
	free(recs);
	free(ids);
	if (err < 0)
		settle(c, err);
	else if (c->nstaged >= COMMIT_BATCH_MAX || c->staged_bytes >= COMMIT_MEM_MAX)
		do_commit(c); /* after the file, never inside it */
	schedule(c);
	return 0;
}

void commit_drain(struct commit *c)
{
	c->scheduled = 0;
	do_commit(c);
	run_settled(c);
}

/* --- state changes ---------------------------------------------------- */

static void mark_result(struct commit *c, int err, int64_t id, const char *what)
{
	if (err == 0) {
		schedule_flush(c);
	} else if (err == -ENOENT) {
		/* Removed from outside (an operator's purge): nothing to
		 * update, and nothing else is affected. */
		log_event(LOG_WARN, "spool_row_missing", " id=%lld change=%s", (long long)id, what);
	} else if (err == -EINVAL || err == -EMSGSIZE) {
		/* Refused before the spool touched anything: the batch stands. */
		log_event(LOG_ERR, "spool_change_refused", " id=%lld change=%s detail=\"%s\"",
			  (long long)id, what, spool_errmsg(c->spool));
	} else {
		settle(c, err); /* the batch was rolled back: its stagers hear it */
		schedule(c);
	}
}

void commit_mark_delivered(struct commit *c, int64_t id)
{
	mark_result(c, spool_mark_delivered(c->spool, id, stats_wall_ms()), id, "delivered");
}

void commit_mark_retry(struct commit *c, int64_t id, int attempts, int64_t next_attempt_ms,
		       const char *error)
{
	mark_result(c, spool_mark_retry(c->spool, id, attempts, next_attempt_ms, error), id,
		    "retry");
}

/* The state matters more than the text: an ACK the spool will not keep
 * (over SPOOL_ACK_MAX) is dropped and the state recorded without it, so
 * that the message is not sent again after a restart. */
static void ack_kept(int64_t id, const void **ack, size_t *len)
{
	if (*len <= SPOOL_ACK_MAX && (*ack || *len == 0))
		return;
	log_event(LOG_WARN, "ack_not_kept", " id=%lld bytes=%zu max=%d", (long long)id, *len,
		  SPOOL_ACK_MAX);
	*ack = NULL;
	*len = 0;
}

void commit_mark_acked(struct commit *c, int64_t id, int attempts, const void *ack, size_t len)
{
	ack_kept(id, &ack, &len);
	mark_result(c, spool_mark_acked(c->spool, id, attempts, stats_wall_ms(), ack, len), id,
		    "acked");
}

void commit_mark_rejected(struct commit *c, int64_t id, int attempts, const void *ack, size_t len,
			  const char *error)
{
	ack_kept(id, &ack, &len);
	mark_result(c, spool_mark_rejected(c->spool, id, attempts, ack, len, error), id,
		    "rejected");
}

void commit_mark_dead(struct commit *c, int64_t id, int attempts, const void *ack, size_t len,
		      const char *error)
{
	ack_kept(id, &ack, &len);
	mark_result(c, spool_mark_dead(c->spool, id, attempts, ack, len, error), id, "dead");
}

void commit_file_dispose(struct commit *c, int64_t file_id, enum spool_file_state st,
			 const char *reason)
{
	mark_result(c, spool_file_dispose(c->spool, file_id, st, reason, stats_wall_ms()), file_id,
		    st == SPOOL_FILE_DONE ? "file done" : "file error");
}

/* --- retention ------------------------------------------------------- */

static void on_purge(evutil_socket_t fd, short what, void *arg)
{
	struct commit *c = arg;
	int n = 0;

	(void)fd;
	(void)what;
	if (spool_pending(c->spool) > 0)
		return; /* never mix a purge into an open batch; try next time */
	if (spool_purge(c->spool, stats_wall_ms() - (int64_t)c->retention_ms, 0, &n) < 0)
		log_event(LOG_WARN, "purge_failed", " detail=\"%s\"", spool_errmsg(c->spool));
	else if (n > 0)
		log_event(LOG_INFO, "purged", " rows=%d", n);
}

/* Often enough that no row outlives its retention by much more than a
 * quarter of it, and at most once a second. */
static int start_purge(struct commit *c)
{
	uint64_t ms = c->retention_ms / 4;
	struct timeval tv;

	if (ms > COMMIT_PURGE_MAX_MS)
		ms = COMMIT_PURGE_MAX_MS;
	if (ms < COMMIT_PURGE_MIN_MS)
		ms = COMMIT_PURGE_MIN_MS;
	tv.tv_sec = (time_t)(ms / 1000);
	tv.tv_usec = (suseconds_t)(ms % 1000) * 1000;
	c->purge = event_new(c->base, -1, EV_PERSIST, on_purge, c);
	return c->purge && event_add(c->purge, &tv) == 0 ? 0 : -ENOMEM;
}

/* --- life cycle ------------------------------------------------------ */

int commit_new(struct event_base *base, struct spool *spool, uint64_t retention_ms,
	       struct commit **out)
{
	struct commit *c = calloc(1, sizeof(*c));

	*out = NULL;
	if (!c)
		return -ENOMEM;
	c->base = base;
	c->spool = spool;
	c->retention_ms = retention_ms;
	TAILQ_INIT(&c->staged);
	TAILQ_INIT(&c->settled);
	c->ev = event_new(base, -1, 0, on_commit, c);
	c->flush = evtimer_new(base, on_flush, c);
	if (!c->ev || !c->flush || start_purge(c) < 0) {
		commit_free(c);
		return -ENOMEM;
	}
	*out = c;
	return 0;
}

void commit_free(struct commit *c)
{
	if (!c)
		return;
	/* Never acknowledged: the staged rows are rolled back when the spool
	 * closes, and committed ones are loaded again at the next start. */
	c->nstaged = 0;
	TAILQ_CONCAT(&c->settled, &c->staged, link);
	for (struct rec *r = TAILQ_FIRST(&c->settled); r; r = TAILQ_NEXT(r, link))
		r->err = -ECANCELED;
	run_settled(c);
	if (c->ev)
		event_free(c->ev);
	if (c->flush)
		event_free(c->flush);
	if (c->purge)
		event_free(c->purge);
	free(c);
}

void commit_stats(const struct commit *c, struct commit_stats *st)
{
	*st = c->st;
}
