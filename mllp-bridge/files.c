/*
 * File channels, the loop's side: when to start a session, what it should
 * do, and what its results mean for the spool (files.h). The network part
 * runs on each channel's worker thread (filejob.c).
 */
#include "mllp-bridge/files.h"

#include <arpa/inet.h>
#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>

#include "mllp-bridge/commit.h"
#include "mllp-bridge/files_int.h"
#include "mllp-bridge/gate.h"
#include "mllp-bridge/hl7.h"
#include "mllp-bridge/log.h"
#include "mllp-bridge/stats.h"

/* A file in the spool whose remote copy still waits to be moved. */
struct open_file {
	int64_t id;
	char *name;
	uint64_t size;
	int64_t mtime;
};

struct fchan {
	struct files *f;
	struct fj_chan p; /* what the worker reads */
	struct fj_worker w;
	const struct cfg_sftp *cfg;
	size_t cfg_index; /* in cfg->integrations (pull) or cfg->destinations (push) */
	struct event *timer;
	struct fjob *busy; /* the job the worker holds */
	struct open_file *open;
	size_t nopen, capopen;
	int64_t *queue; /* push: row ids, FIFO */
	size_t qhead, qlen, qcap;
	int attempts;	 /* push: failed writes of the head */
	unsigned fails;	 /* sessions failed in a row */
	int64_t wake_ms; /* push: the head's next attempt */
	size_t staging;	 /* pull: files staged whose commit has not answered yet */
	char last_why[FILES_REASON_MAX];
	struct files_stats st;
};

struct files {
	struct event_base *base;
	const struct cfg *cfg;
	struct spool *spool;
	struct commit *commit;
	struct gate *gate;
	struct files_hooks hooks;
	char *work_dir;
	int pipe[2];
	struct event *pipe_ev;
	struct fchan *ch;
	size_t nch;
	int watching;
};

/* A file being staged: its rows' callbacks count down to the last. */
struct staged {
	struct fchan *c;
	int64_t file_id;
	struct open_file of;
	size_t left;
	int err;
};

static const char *dir_word(const struct fchan *c)
{
	return c->p.push ? "push" : "pull";
}

static void arm(struct fchan *c, uint64_t ms)
{
	struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};

	evtimer_add(c->timer, &tv);
}

/* ---- pull: open files ------------------------------------------------- */

static int open_add(struct fchan *c, const struct open_file *of)
{
	if (c->nopen == c->capopen) {
		size_t cap = c->capopen ? 2 * c->capopen : 16;
		struct open_file *v = realloc(c->open, cap * sizeof *v);

		if (!v)
			return -ENOMEM;
		c->open = v;
		c->capopen = cap;
	}
	c->open[c->nopen] = *of;
	if (!(c->open[c->nopen].name = strdup(of->name)))
		return -ENOMEM;
	c->nopen++;
	return 0;
}

static void open_remove(struct fchan *c, int64_t id)
{
	for (size_t i = 0; i < c->nopen; i++)
		if (c->open[i].id == id) {
			free(c->open[i].name);
			memmove(&c->open[i], &c->open[i + 1], (c->nopen - i - 1) * sizeof *c->open);
			c->nopen--;
			return;
		}
}

static int load_open(void *arg, const struct spool_file *sf)
{
	struct fchan *c = arg;
	struct open_file of = {
	    .id = sf->id, .name = (char *)sf->name, .size = sf->size, .mtime = sf->mtime};

	return open_add(c, &of);
}

/* ---- pull: a job -------------------------------------------------------- */

/* Which open files are settled: every row delivered, or one dead. */
static int add_dispositions(struct fchan *c, struct fjob *j)
{
	struct spool_file_progress pr;

	if (c->nopen && !(j->disp = calloc(c->nopen, sizeof *j->disp)))
		return -ENOMEM;
	for (size_t i = 0; i < c->nopen; i++) {
		struct fj_disp *d = &j->disp[j->ndisp];

		if (spool_file_progress(c->f->spool, c->open[i].id, &pr) < 0 || pr.queued)
			continue;
		*d = (struct fj_disp){.file_id = c->open[i].id,
				      .size = c->open[i].size,
				      .mtime = c->open[i].mtime,
				      .error = pr.dead > 0};
		if (!(d->name = strdup(c->open[i].name)))
			return -ENOMEM;
		j->ndisp++;
		if (d->error &&
		    asprintf(&d->reason,
			     "channel: %s\nfile: %s\nreason: %zu of %zu messages refused by the "
			     "upstream: %s\n",
			     c->p.name, d->name, pr.dead, pr.dead + pr.delivered, pr.reason) < 0) {
			d->reason = NULL;
			return -ENOMEM;
		}
	}
	return 0;
}

static int add_skips(struct fchan *c, struct fjob *j)
{
	if (c->nopen && !(j->skip = calloc(c->nopen, sizeof *j->skip)))
		return -ENOMEM;
	for (size_t i = 0; i < c->nopen; i++) {
		j->skip[i] = (struct fj_skip){.size = c->open[i].size, .mtime = c->open[i].mtime};
		if (!(j->skip[i].name = strdup(c->open[i].name)))
			return -ENOMEM;
		j->nskip++;
	}
	return 0;
}

static struct fjob *pull_job(struct fchan *c)
{
	struct fjob *j = calloc(1, sizeof *j);

	if (!j)
		return NULL;
	j->owner = c;
	if (add_dispositions(c, j) < 0 || add_skips(c, j) < 0) {
		fj_job_free(j);
		return NULL;
	}
	return j;
}

/* ---- push: a job -------------------------------------------------------- */

static int64_t queue_at(const struct fchan *c, size_t i)
{
	return c->queue[(c->qhead + i) % c->qcap];
}

static void queue_pop(struct fchan *c)
{
	c->qhead = (c->qhead + 1) % c->qcap;
	c->qlen--;
	c->attempts = 0;
}

static int queue_push(struct fchan *c, int64_t id)
{
	if (c->qlen == c->qcap) {
		size_t cap = c->qcap ? 2 * c->qcap : 64;
		int64_t *v = malloc(cap * sizeof *v);

		if (!v)
			return -ENOMEM;
		for (size_t i = 0; i < c->qlen; i++)
			v[i] = queue_at(c, i);
		free(c->queue);
		c->queue = v;
		c->qcap = cap;
		c->qhead = 0;
	}
	c->queue[(c->qhead + c->qlen++) % c->qcap] = id;
	return 0;
}

/* Row id, still waiting, with its name: "<name>" as posted, else
 * "<destination>-<id>.hl7". -EALREADY when it was settled meanwhile (an
 * operator), -ENOENT when it is gone. */
static int add_put(struct fchan *c, struct fjob *j, int64_t id)
{
	struct fj_put *p = &j->put[j->nput];
	struct spool_row r = {0};
	void *body = NULL;
	int err = spool_get(c->f->spool, id, &r, &body);

	if (err == 0 && r.state != SPOOL_QUEUED && r.state != SPOOL_INFLIGHT)
		err = -EALREADY;
	if (err == 0) {
		if (r.file_name && *r.file_name)
			p->name = strdup(r.file_name);
		else if (asprintf(&p->name, "%s-%lld.hl7", c->p.name, (long long)id) < 0)
			p->name = NULL;
		err = p->name ? 0 : -ENOMEM;
	}
	if (err == 0) {
		p->id = id;
		p->body = body;
		p->len = r.len;
		body = NULL;
		j->nput++;
	}
	free(body);
	spool_row_clear(&r);
	return err;
}

/* The queue's first rows, in order; they stay queued until the worker
 * says they were written. */
static struct fjob *push_job(struct fchan *c)
{
	struct fjob *j = calloc(1, sizeof *j);
	size_t i = 0;
	int err;

	if (!j || !(j->put = calloc(FILES_PUSH_BATCH_MAX, sizeof *j->put))) {
		free(j);
		return NULL;
	}
	j->owner = c;
	while (i < c->qlen && j->nput < FILES_PUSH_BATCH_MAX) {
		if ((err = add_put(c, j, queue_at(c, i))) == 0)
			i++;
		else if (err == -ENOMEM || i > 0)
			break; /* a settled row behind the head waits to become the head */
		else
			queue_pop(c); /* the head was settled meanwhile */
	}
	if (!j->nput) {
		fj_job_free(j);
		return NULL;
	}
	return j;
}

/* ---- starting a session ------------------------------------------------- */

/* A pull channel always has a listing to do; a push channel has work
 * when a row waits and its pause is over. A timer that fires a little
 * before the pause ends (libevent's clock is not the wall clock) is armed
 * again for the rest, or the queue would wait for the next POST. */
static int has_work(struct fchan *c, int64_t now)
{
	if (!c->p.push)
		return 1;
	if (!c->qlen)
		return 0;
	if (now < c->wake_ms) {
		arm(c, (uint64_t)(c->wake_ms - now));
		return 0;
	}
	return 1;
}

static void kick(struct fchan *c)
{
	int64_t now = stats_wall_ms();
	struct fjob *j;

	if (c->busy || !has_work(c, now))
		return;
	if (c->staging) {
		/* Not yet in the open list: a listing now would take them again. */
		arm(c, FILES_STAGING_WAIT_MS);
		return;
	}
	c->st.waiting_gate = !gate_allows(c->f->gate, (const struct sockaddr *)&c->cfg->server);
	if (c->st.waiting_gate) {
		/* the gate watch kicks us when a tunnel comes up */
		if (!c->p.push)
			arm(c, c->cfg->interval_ms);
		return;
	}
	j = c->p.push ? push_job(c) : pull_job(c);
	if (!j) {
		if (c->p.push && !c->qlen)
			return;
		arm(c, FILES_RETRY_MIN_MS); /* out of memory: try again soon */
		return;
	}
	c->busy = j;
	fj_post(&c->w, j);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	kick(arg);
}

static void on_gate(void *arg, const struct gate *g)
{
	struct files *f = arg;

	(void)g;
	for (size_t i = 0; i < f->nch; i++)
		if (f->ch[i].st.waiting_gate)
			kick(&f->ch[i]);
}

/* ---- results: the session ----------------------------------------------- */

static void session_result(struct fchan *c, const struct fjob *j)
{
	c->st.sessions++;
	c->st.next_key = j->next_key;
	if (j->err == 0) {
		if (!c->st.up || c->fails)
			log_event(LOG_INFO, "sftp_session_ok", " channel=%s direction=%s key=%s",
				  c->p.name, dir_word(c), j->key_index == 0 ? "next" : "current");
		c->st.up = 1;
		c->st.key_index = j->key_index;
		c->st.last_ok_ms = stats_wall_ms();
		c->fails = 0;
		c->last_why[0] = '\0';
		return;
	}
	c->st.up = 0;
	c->st.session_errors++;
	c->fails++;
	if (j->err == -EKEYREJECTED) {
		/* Never learned, never accepted: every attempt says so. */
		c->st.hostkey_mismatches++;
		log_event(LOG_ERR, "sftp_hostkey_mismatch",
			  " channel=%s server=%s action=\"refused; pin the server's new key in "
			  "host_keys if it was rotated\" detail=\"%s\"",
			  c->p.name, c->cfg->server_text, j->why);
	} else if (strcmp(c->last_why, j->why) != 0) {
		log_event(LOG_WARN, "sftp_session_failed",
			  " channel=%s direction=%s server=%s error=%s detail=\"%s\"", c->p.name,
			  dir_word(c), c->cfg->server_text, strerror(-j->err), j->why);
	}
	snprintf(c->last_why, sizeof c->last_why, "%s", j->why);
}

/* The log names files by their record id and hash: a file name may carry
 * a patient's identifier, so it is logged only under log_phi. */
static const char *phi_name(const char *name)
{
	return log_phi_enabled() ? name : "-";
}

static void dispositions_result(struct fchan *c, const struct fjob *j)
{
	for (size_t i = 0; i < j->ndisp; i++) {
		const struct fj_disp *d = &j->disp[i];
		enum spool_file_state st = d->error ? SPOOL_FILE_ERROR : SPOOL_FILE_DONE;

		if (d->result < 0) {
			log_event(LOG_WARN, "sftp_move_failed",
				  " channel=%s file=%lld error=%s name=\"%s\"", c->p.name,
				  (long long)d->file_id, strerror(-d->result), phi_name(d->name));
			continue;
		}
		commit_file_dispose(c->f->commit, d->file_id, st,
				    d->replaced ? "replaced on the server; left in place"
				    : d->error	? "moved to error_dir"
						: NULL);
		open_remove(c, d->file_id);
		if (d->error)
			c->st.errors++;
		else
			c->st.done++;
		log_event(d->error ? LOG_WARN : LOG_INFO,
			  d->error ? "sftp_file_error" : "sftp_file_done",
			  " channel=%s file=%lld%s name=\"%s\"", c->p.name, (long long)d->file_id,
			  d->replaced ? " replaced=1" : "", phi_name(d->name));
	}
}

static void refused_result(struct fchan *c, const struct fjob *j)
{
	for (size_t i = 0; i < j->nrefused; i++) {
		const struct fj_refused *r = &j->refused[i];

		c->st.refused += r->moved;
		log_event(LOG_WARN, "sftp_file_refused",
			  " channel=%s sha256=%.12s moved=%d reason=\"%s\" name=\"%s\"", c->p.name,
			  *r->sha ? r->sha : "-", r->moved, r->reason, phi_name(r->name));
	}
}

/* ---- results: staging files --------------------------------------------- */

static void on_row(void *arg, int err, int64_t id, const struct spool_new *m)
{
	struct staged *s = arg;
	struct fchan *c = s->c;

	if (err < 0 && !s->err)
		s->err = err;
	if (err == 0 && c->f->hooks.committed(c->f->hooks.arg, c->cfg_index, id, m) < 0)
		log_event(LOG_ERR, "forward_enqueue_failed", " integration=%s id=%lld", c->p.name,
			  (long long)id);
	if (--s->left)
		return;
	c->staging--;
	if (s->err == 0) {
		s->of.id = s->file_id;
		if (open_add(c, &s->of) < 0)
			log_event(LOG_ERR, "sftp_file_untracked",
				  " channel=%s file=%lld action=\"moved after the next restart\"",
				  c->p.name, (long long)s->file_id);
		log_event(LOG_INFO, "sftp_file_spooled", " channel=%s file=%lld name=\"%s\"",
			  c->p.name, (long long)s->file_id, phi_name(s->of.name));
	} else if (s->err != -ECANCELED) {
		log_event(LOG_ERR, "sftp_file_not_stored",
			  " channel=%s error=%s action=\"taken again at the next poll\"", c->p.name,
			  strerror(-s->err));
	}
	free(s->of.name);
	free(s);
}

/* The rows of a file, pointing into it (the worker worked out each
 * message's key, MSH-10 and lanes). */
static struct spool_new *rows_of(const struct fchan *c, const struct fj_file *ff)
{
	struct spool_new *m = calloc(ff->nmsg, sizeof *m);
	int64_t now = stats_wall_ms();

	for (size_t i = 0; m && i < ff->nmsg; i++) {
		const size_t *at = &ff->meta[4 * i];

		m[i] = (struct spool_new){.integration = c->p.name,
					  .sender = c->p.host,
					  .content_type = c->cfg->content_type,
					  .control_id = ff->strs + at[1],
					  .idem_key = ff->strs + at[0],
					  .lane = ff->strs + at[2],
					  .lane2 = ff->strs + at[3],
					  .received_ms = now,
					  .body = ff->body + ff->off[i],
					  .len = ff->mlen[i],
					  .file_name = ff->name,
					  .channel = SPOOL_IN};
	}
	return m;
}

static void stage_file(struct fchan *c, const struct fj_file *ff)
{
	struct spool_new *m = NULL;
	struct staged *s = calloc(1, sizeof *s);
	struct spool_file sf = {.route = c->p.name,
				.name = ff->name,
				.size = ff->size,
				.mtime = ff->mtime,
				.sha256 = ff->sha,
				.received_ms = stats_wall_ms(),
				.state = SPOOL_FILE_SPOOLED,
				.nrows = ff->nmsg};
	int err = -ENOMEM;

	if (s && (s->of.name = strdup(ff->name)) && (m = rows_of(c, ff))) {
		*s = (struct staged){
		    .c = c,
		    .of = {.name = s->of.name, .size = ff->size, .mtime = ff->mtime},
		    .left = ff->nmsg};
		err = commit_stage_file(c->f->commit, m, ff->nmsg, &sf, on_row, s, &s->file_id);
	}
	free(m);
	if (err == 0) {
		c->staging++;
		c->st.files++;
		c->st.rows += ff->nmsg;
		c->st.bytes += ff->size;
		return;
	}
	log_event(LOG_ERR, "sftp_file_not_stored",
		  " channel=%s sha256=%.12s error=%s action=\"taken again at the next poll\"",
		  c->p.name, ff->sha, strerror(-err));
	if (s)
		free(s->of.name);
	free(s);
}

static void pull_result(struct fchan *c, struct fjob *j)
{
	session_result(c, j);
	dispositions_result(c, j);
	refused_result(c, j);
	c->st.unstable += j->unstable;
	for (size_t i = 0; i < j->nfiles; i++)
		stage_file(c, &j->files[i]);
	arm(c, j->err == 0 && j->more ? 0 : c->cfg->interval_ms);
}

/* ---- results: push ------------------------------------------------------ */

/* A session that failed: 1 s, doubling, up to retry.max. */
static int64_t session_backoff_ms(const struct fchan *c)
{
	const struct cfg_retry r = {.initial_ms = FILES_RETRY_MIN_MS,
				    .max_ms = c->f->cfg->retry.max_ms};

	return (int64_t)cfg_retry_backoff_ms(&r, (int)c->fails);
}

static void push_failed(struct fchan *c, const struct fj_put *p)
{
	const struct cfg_destination *d = &c->f->cfg->destinations[c->cfg_index];

	c->attempts++;
	if ((unsigned)c->attempts >= d->max_attempts) {
		commit_mark_dead(c->f->commit, p->id, c->attempts, NULL, 0, p->why);
		c->st.push_dead++;
		log_event(LOG_ERR, "sftp_push_dead",
			  " channel=%s id=%lld attempts=%d detail=\"%s\"", c->p.name,
			  (long long)p->id, c->attempts, p->why);
		queue_pop(c);
		return;
	}
	c->wake_ms =
	    stats_wall_ms() + (int64_t)cfg_retry_backoff_ms(&c->f->cfg->retry, c->attempts);
	commit_mark_retry(c->f->commit, p->id, c->attempts, c->wake_ms, p->why);
	c->st.push_retries++;
	log_event(LOG_WARN, "sftp_push_retry", " channel=%s id=%lld attempts=%d detail=\"%s\"",
		  c->p.name, (long long)p->id, c->attempts, p->why);
}

static void push_result(struct fchan *c, struct fjob *j)
{
	session_result(c, j);
	for (size_t i = 0; j->err == 0 && i < j->nput; i++) {
		const struct fj_put *p = &j->put[i];

		if (p->result < 0) {
			push_failed(c, p);
			break;
		}
		commit_mark_acked(c->f->commit, p->id, c->attempts + 1, NULL, 0);
		c->st.files++;
		c->st.bytes += p->len;
		log_event(LOG_INFO, "sftp_file_written",
			  " channel=%s id=%lld synced=%d name=\"%s\"", c->p.name, (long long)p->id,
			  p->synced, phi_name(p->name));
		queue_pop(c);
	}
	if (j->err) /* the server is unreachable: no attempt is counted */
		c->wake_ms = stats_wall_ms() + session_backoff_ms(c);
	if (c->qlen)
		arm(c, c->wake_ms > stats_wall_ms() ? (uint64_t)(c->wake_ms - stats_wall_ms()) : 0);
}

static void on_results(evutil_socket_t fd, short what, void *arg)
{
	struct fjob *j;

	(void)what;
	(void)arg;
	while (read(fd, &j, sizeof j) == (ssize_t)sizeof j) {
		struct fchan *c = j->owner;

		assert(c->busy == j); /* one job per channel, back from its own worker */
		c->busy = NULL;
		if (c->p.push)
			push_result(c, j);
		else
			pull_result(c, j);
		fj_job_free(j);
	}
}

/* ---- set-up ------------------------------------------------------------- */

/* Downloads a crash left behind are of no use: the remote files are still
 * in place and are taken again. */
static int prepare_work_dir(const char *dir)
{
	struct dirent *e;
	struct stat sb;
	DIR *d;

	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return -errno;
	if (stat(dir, &sb) < 0 || !S_ISDIR(sb.st_mode))
		return -ENOTDIR;
	if (!(d = opendir(dir)))
		return -errno;
	while ((e = readdir(d))) {
		size_t n = strlen(e->d_name);

		if (n > 4 && strcmp(e->d_name + n - 4, ".tmp") == 0)
			unlinkat(dirfd(d), e->d_name, 0);
	}
	closedir(d);
	return 0;
}

static void chan_params(struct files *f, struct fchan *c, const char *name,
			const struct cfg_sftp *s, int push)
{
	c->f = f;
	c->cfg = s;
	c->p = (struct fj_chan){.cfg = s,
				.name = name,
				.work_dir = f->work_dir,
				.index = (size_t)(c - f->ch),
				.push = push};
	if (s->server.ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&s->server;
		inet_ntop(AF_INET6, &a->sin6_addr, c->p.host, sizeof c->p.host);
		c->p.port = ntohs(a->sin6_port);
	} else {
		const struct sockaddr_in *a = (const struct sockaddr_in *)&s->server;
		inet_ntop(AF_INET, &a->sin_addr, c->p.host, sizeof c->p.host);
		c->p.port = ntohs(a->sin_port);
	}
	c->st.name = name;
	c->st.push = push;
	c->st.key_index = 1;
}

static int chan_start(struct files *f, struct fchan *c)
{
	int err;

	if (asprintf(&c->p.key_next, "%s.next", c->cfg->key) < 0) {
		c->p.key_next = NULL;
		return -ENOMEM;
	}
	if (!(c->timer = evtimer_new(f->base, on_timer, c)))
		return -ENOMEM;
	if (!c->p.push && (err = spool_file_pending(f->spool, c->p.name, load_open, c)) < 0) {
		log_event(LOG_ERR, "spool_read_failed", " channel=%s detail=\"%s\"", c->p.name,
			  spool_errmsg(f->spool));
		return err;
	}
	c->w.ch = &c->p;
	c->w.result_fd = f->pipe[1];
	if ((err = fj_start(&c->w)) < 0)
		return err;
	if (!c->p.push)
		arm(c, 0); /* the first listing now: files are taken at the second */
	return 0;
}

static size_t count_channels(const struct cfg *cfg)
{
	size_t n = 0;

	for (size_t i = 0; i < cfg->nintegrations; i++)
		n += cfg->integrations[i].sftp != NULL;
	for (size_t i = 0; i < cfg->ndestinations; i++)
		n += cfg->destinations[i].sftp != NULL;
	return n;
}

static void add_channels(struct files *f)
{
	const struct cfg *cfg = f->cfg;

	for (size_t i = 0; i < cfg->nintegrations; i++)
		if (cfg->integrations[i].sftp) {
			struct fchan *c = &f->ch[f->nch++];
			chan_params(f, c, cfg->integrations[i].name, cfg->integrations[i].sftp, 0);
			c->cfg_index = i;
			c->p.order = cfg->integrations[i].order;
		}
	for (size_t i = 0; i < cfg->ndestinations; i++)
		if (cfg->destinations[i].sftp) {
			struct fchan *c = &f->ch[f->nch++];
			chan_params(f, c, cfg->destinations[i].name, cfg->destinations[i].sftp, 1);
			c->cfg_index = i;
		}
}

static int files_setup(struct files *f)
{
	int err;

	if ((err = prepare_work_dir(f->work_dir)) < 0) {
		log_event(LOG_ERR, "sftp_work_dir_failed", " path=%s error=%s", f->work_dir,
			  strerror(-err));
		return err;
	}
	if (pipe2(f->pipe, O_CLOEXEC | O_NONBLOCK) < 0)
		return -errno;
	if (!(f->pipe_ev = event_new(f->base, f->pipe[0], EV_READ | EV_PERSIST, on_results, f)) ||
	    event_add(f->pipe_ev, NULL) < 0)
		return -ENOMEM;
	if ((err = gate_watch(f->gate, on_gate, f)) < 0)
		return err;
	f->watching = 1;
	add_channels(f);
	for (size_t i = 0; i < f->nch; i++)
		if ((err = chan_start(f, &f->ch[i])) < 0)
			return err;
	return 0;
}

int files_new(struct event_base *base, const struct cfg *cfg, struct spool *spool,
	      struct commit *commit, struct gate *gate, const char *work_dir,
	      const struct files_hooks *hooks, struct files **out)
{
	size_t n = count_channels(cfg);
	struct files *f;
	int err;

	*out = NULL;
	if (!n)
		return 0;
	if (!(f = calloc(1, sizeof *f)) || !(f->ch = calloc(n, sizeof *f->ch)) ||
	    !(f->work_dir = strdup(work_dir))) {
		if (f)
			free(f->ch);
		free(f);
		return -ENOMEM;
	}
	*f = (struct files){.base = base,
			    .cfg = cfg,
			    .spool = spool,
			    .commit = commit,
			    .gate = gate,
			    .hooks = *hooks,
			    .work_dir = f->work_dir,
			    .ch = f->ch,
			    .pipe = {-1, -1}};
	if ((err = files_setup(f)) < 0) {
		files_free(f);
		return err;
	}
	*out = f;
	return 0;
}

int files_push(struct files *f, size_t dest, int64_t id)
{
	for (size_t i = 0; f && i < f->nch; i++) {
		struct fchan *c = &f->ch[i];

		if (c->p.push && c->cfg_index == dest) {
			int err = queue_push(c, id);

			if (err == 0)
				kick(c);
			return err;
		}
	}
	return -ENOENT;
}

/* The workers first: a job they still hold comes back through the pipe
 * and is freed here, its downloads removed. */
void files_free(struct files *f)
{
	struct fjob *j;

	if (!f)
		return;
	for (size_t i = 0; i < f->nch; i++)
		fj_stop(&f->ch[i].w);
	while (f->pipe[0] >= 0 && read(f->pipe[0], &j, sizeof j) == (ssize_t)sizeof j)
		fj_job_free(j);
	if (f->watching)
		gate_unwatch(f->gate, on_gate, f);
	for (size_t i = 0; i < f->nch; i++) {
		struct fchan *c = &f->ch[i];

		if (c->timer)
			event_free(c->timer);
		for (size_t k = 0; k < c->nopen; k++)
			free(c->open[k].name);
		free(c->open);
		free(c->queue);
		free(c->p.key_next);
	}
	if (f->pipe_ev)
		event_free(f->pipe_ev);
	for (int i = 0; i < 2; i++)
		if (f->pipe[i] >= 0)
			close(f->pipe[i]);
	free(f->ch);
	free(f->work_dir);
	free(f);
}

size_t files_count(const struct files *f)
{
	return f ? f->nch : 0;
}

void files_stats(const struct files *f, size_t i, struct files_stats *st)
{
	const struct fchan *c = &f->ch[i];

	*st = c->st;
	st->open_files = c->nopen; /* the gauges are the lists' lengths */
	st->queued = c->qlen;
}
