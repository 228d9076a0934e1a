/*
 * A file channel's worker thread: one SFTP session per job. It talks to the
 * server and the local disk only; the spool, the log and the loop's state
 * belong to files.c (files_int.h says who owns what).
 */
#include "mllp-bridge/files_int.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "mllp-bridge/batch.h"
#include "mllp-bridge/hl7.h"
#include "mllp-bridge/msgkey.h"
#include "mllp-bridge/sftpc.h"
#include "mllp-bridge/spool.h"

/* ---- small helpers ---------------------------------------------------- */

static void hexify(const uint8_t *d, size_t n, char *out)
{
	static const char hex[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = hex[d[i] >> 4];
		out[2 * i + 1] = hex[d[i] & 15];
	}
	out[2 * n] = '\0';
}

void fj_file_key(const char *sha_hex, const char *name, int split, size_t index, char *out)
{
	uint8_t d[32];
	unsigned n = 0;
	char hex[41];
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();

	out[0] = '\0';
	if (!ctx)
		return; /* "" is refused by the spool: the file is tried again */
	if (EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
	    EVP_DigestUpdate(ctx, sha_hex, strlen(sha_hex)) == 1 &&
	    EVP_DigestUpdate(ctx, "", 1) == 1 && EVP_DigestUpdate(ctx, name, strlen(name)) == 1 &&
	    EVP_DigestFinal_ex(ctx, d, &n) == 1) {
		hexify(d, 20, hex);
		if (split)
			snprintf(out, SPOOL_KEY_MAX + 1, "f%s-%zu", hex, index);
		else
			snprintf(out, SPOOL_KEY_MAX + 1, "f%s", hex);
	}
	EVP_MD_CTX_free(ctx);
}

static char *path_join(const char *dir, const char *name)
{
	size_t n = strlen(dir);
	char *p;

	if (asprintf(&p, "%s%s%s", dir, n && dir[n - 1] == '/' ? "" : "/", name) < 0)
		return NULL;
	return p;
}

/* A session's error for the log. File names may carry a patient's
 * identifier, and sftpc's own texts name the paths they failed on, so a
 * file's errors say only what failed and the errno; a folder (from the
 * configuration) is named with sftpc's detail. */
static void set_why(char *why, const char *what, int err, const char *folder, const char *detail)
{
	if (folder)
		snprintf(why, FILES_REASON_MAX, "%s %s: %s%s%s", what, folder, strerror(-err),
			 detail && *detail ? ": " : "", detail ? detail : "");
	else
		snprintf(why, FILES_REASON_MAX, "%s: %s", what, strerror(-err));
}

/* Names a writer is still working on, whatever the glob says: dot files
 * and the usual "write, then rename" suffixes. */
static int in_progress_name(const char *n)
{
	static const char *const suffixes[] = {".part", ".tmp", ".filepart", ".partial"};
	size_t len = strlen(n);

	if (n[0] == '.')
		return 1;
	for (size_t i = 0; i < sizeof suffixes / sizeof *suffixes; i++) {
		size_t k = strlen(suffixes[i]);
		if (len > k && strcmp(n + len - k, suffixes[i]) == 0)
			return 1;
	}
	return 0;
}

/* ---- the session -------------------------------------------------------- */

static void publish_fd(struct fj_worker *w, int fd)
{
	pthread_mutex_lock(&w->mu);
	w->fd = fd;
	pthread_mutex_unlock(&w->mu);
}

static int stopping(struct fj_worker *w)
{
	int s;

	pthread_mutex_lock(&w->mu);
	s = w->stop;
	pthread_mutex_unlock(&w->mu);
	return s;
}

/* Connects with "<key>.next" first when it exists, then "<key>": while a
 * rotation is under way the server may know either. */
static int session_open(struct fj_worker *w, struct fjob *j, struct sftpc **out)
{
	const struct fj_chan *ch = w->ch;
	const char *keys[2];
	size_t nkeys = 0, first;
	struct sftpc_params p;
	int err;

	j->next_key = access(ch->key_next, F_OK) == 0;
	if (j->next_key)
		keys[nkeys++] = ch->key_next;
	keys[nkeys++] = ch->cfg->key;
	first = j->next_key ? 0 : 1;
	p = (struct sftpc_params){.host = ch->host,
				  .port = ch->port,
				  .user = ch->cfg->user,
				  .keys = keys,
				  .nkeys = nkeys,
				  .host_keys = (const char *const *)ch->cfg->host_keys,
				  .nhost_keys = ch->cfg->nhost_keys,
				  .timeout_ms = (unsigned)ch->cfg->timeout_ms};
	err = sftpc_connect(&p, out, j->why, sizeof j->why);
	if (err < 0)
		return err;
	j->key_index = first + sftpc_key_index(*out);
	w->made_done = w->made_error = 0; /* a new session has made no folder yet */
	publish_fd(w, sftpc_fd(*out));
	return 0;
}

static void session_close(struct fj_worker *w, struct sftpc *c)
{
	publish_fd(w, -1);
	sftpc_close(c);
}

/* ---- dispositions ------------------------------------------------------- */

static int put_text(struct sftpc *c, const char *path, const char *text)
{
	int synced;

	return sftpc_put(c, path, text, strlen(text), &synced);
}

/* Moves dir/name into to_dir, replacing a file of that name there (a name
 * the hospital reuses). With reason, "<name>.reason" is written beside it
 * first: once the file has left dir, nothing tries the move again (the
 * next session finds it gone and settles the record), so a reason written
 * after the rename was lost for good when the write failed or the bridge
 * was killed in between. Written before, a failure leaves the file in dir
 * and the whole move is tried again (the reason file replaces itself). */
static int move_to(struct sftpc *c, const struct fj_chan *ch, const char *name, const char *to_dir,
		   int *made, const char *reason)
{
	char *from = path_join(ch->cfg->dir, name), *to = path_join(to_dir, name), *rpath = NULL;
	int err = -ENOMEM;

	if (!from || !to)
		goto out;
	/* one mkdir per session and folder: at 20 ms each round trip counts */
	if (!*made && (err = sftpc_mkdir(c, to_dir)) < 0)
		goto out;
	*made = 1;
	if (reason) {
		if (asprintf(&rpath, "%s.reason", to) < 0) {
			rpath = NULL;
			err = -ENOMEM;
			goto out;
		}
		if ((err = put_text(c, rpath, reason)) < 0)
			goto out;
	}
	err = sftpc_rename(c, from, to);
out:
	free(from);
	free(to);
	free(rpath);
	return err;
}

static void dispose(struct sftpc *c, struct fj_worker *w, struct fj_disp *d)
{
	const struct fj_chan *ch = w->ch;
	struct sftpc_entry e = {0};
	char *path = path_join(ch->cfg->dir, d->name);
	int err;

	if (!path) {
		d->result = -ENOMEM;
		return;
	}
	err = sftpc_stat(c, path, &e);
	if (err == -ENOENT) {
		d->result = 0; /* moved already: our own move, before a crash, or the hospital's */
	} else if (err < 0) {
		d->result = err;
	} else if (e.size != d->size || e.mtime != d->mtime) {
		d->replaced = 1; /* a new file of the same name: it is taken as such */
		d->result = 0;
	} else if (d->error) {
		d->result = move_to(c, ch, d->name, ch->cfg->error_dir, &w->made_error, d->reason);
	} else if (ch->cfg->after == CFG_SFTP_DELETE) {
		d->result = sftpc_remove(c, path);
	} else {
		d->result = move_to(c, ch, d->name, ch->cfg->done_dir, &w->made_done, NULL);
	}
	free(path);
}

/* ---- choosing files ----------------------------------------------------- */

static int same_as(const struct fj_skip *set, size_t n, const struct sftpc_entry *e)
{
	for (size_t i = 0; i < n; i++)
		if (set[i].size == e->size && set[i].mtime == e->mtime &&
		    strcmp(set[i].name, e->name) == 0)
			return 1;
	return 0;
}

static void seen_free(struct fj_skip *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(s[i].name);
	free(s);
}

/* Keeps this listing for the next one. Entries are moved out of e. */
static void remember(struct fj_worker *w, struct sftpc_entry *e, size_t n)
{
	struct fj_skip *s = calloc(n ? n : 1, sizeof *s);

	if (!s)
		return; /* the next listing takes nothing new: retried after it */
	for (size_t i = 0; i < n; i++) {
		s[i] = (struct fj_skip){.name = e[i].name, .size = e[i].size, .mtime = e[i].mtime};
		e[i].name = NULL;
	}
	seen_free(w->seen, w->nseen);
	w->seen = s;
	w->nseen = n;
}

static int by_arrival(const void *a, const void *b)
{
	const struct sftpc_entry *x = a, *y = b;

	if (x->mtime != y->mtime)
		return x->mtime < y->mtime ? -1 : 1;
	return strcmp(x->name, y->name);
}

/* Files to take, oldest first: regular, matching the glob, not being
 * written, unchanged since the last listing, not in the spool already.
 * Returns how many of e[] were moved to its front. */
static size_t choose(struct fj_worker *w, const struct fjob *j, struct sftpc_entry *e, size_t n)
{
	const struct cfg_sftp *cfg = w->ch->cfg;
	size_t k = 0;

	for (size_t i = 0; i < n; i++) {
		if (!e[i].regular || in_progress_name(e[i].name) ||
		    fnmatch(cfg->glob, e[i].name, FNM_PERIOD) != 0 ||
		    !same_as(w->seen, w->nseen, &e[i]) || same_as(j->skip, j->nskip, &e[i]))
			continue;
		struct sftpc_entry t = e[k];
		e[k++] = e[i];
		e[i] = t;
	}
	if (k > 1) /* an empty listing is a NULL array: qsort() may not see it */
		qsort(e, k, sizeof *e, by_arrival);
	return k;
}

/* ---- downloading -------------------------------------------------------- */

static void refuse(struct sftpc *c, struct fj_worker *w, struct fjob *j, const char *name,
		   const char *sha, const char *reason)
{
	struct fj_refused *r = &j->refused[j->nrefused];
	char text[FILES_REASON_MAX + 200];

	if (!(r->name = strdup(name)))
		return;
	j->nrefused++;
	snprintf(r->sha, sizeof r->sha, "%s", sha);
	snprintf(r->reason, sizeof r->reason, "%s", reason);
	snprintf(text, sizeof text, "channel: %s\nfile: %s\nsha256: %s\nreason: %s\n", w->ch->name,
		 name, *sha ? sha : "-", reason);
	r->moved = move_to(c, w->ch, name, w->ch->cfg->error_dir, &w->made_error, text) == 0;
}

struct split_out {
	struct fj_file *f;
	size_t cap, used, slots;
};

/* One message of a split file: appended to f->body, its place in off/mlen
 * (grown by doubling; batch_split() hands out at most BATCH_MESSAGES_MAX). */
static int on_message(void *arg, size_t index, const uint8_t *msg, size_t len)
{
	struct split_out *o = arg;
	struct fj_file *f = o->f;

	(void)index;
	if (o->used + len > o->cap)
		return -EMSGSIZE; /* cannot happen: normalizing never grows a file */
	if (f->nmsg == o->slots) {
		size_t n = o->slots ? 2 * o->slots : 64;
		size_t *off = realloc(f->off, n * sizeof *off), *mlen;

		if (!off)
			return -ENOMEM;
		f->off = off;
		if (!(mlen = realloc(f->mlen, n * sizeof *mlen)))
			return -ENOMEM;
		f->mlen = mlen;
		o->slots = n;
	}
	memcpy(f->body + o->used, msg, len);
	f->off[f->nmsg] = o->used;
	f->mlen[f->nmsg++] = len;
	o->used += len;
	return 0;
}

/* The strings the spool needs of each message, packed. */
struct strs {
	char *p;
	size_t len, cap;
};

static int strs_add(struct strs *t, const char *v, size_t n, size_t *at)
{
	if (t->len + n + 1 > t->cap) {
		size_t cap = t->cap ? 2 * t->cap : 4096;
		char *p;

		while (cap < t->len + n + 1)
			cap *= 2;
		if (!(p = realloc(t->p, cap)))
			return -ENOMEM;
		t->p = p;
		t->cap = cap;
	}
	memcpy(t->p + t->len, v, n);
	t->p[t->len + n] = '\0';
	*at = t->len;
	t->len += n + 1;
	return 0;
}

/* Message i's key, MSH-10 and lanes, as an MLLP message of the same
 * integration would get them; an unsplit file is opaque (no MSH) and
 * queues in the server's lane. */
static int describe(const struct fj_chan *ch, struct fj_file *f, size_t i, struct strs *t,
		    char *why)
{
	const uint8_t *body = f->body + f->off[i];
	int split = ch->cfg->split != CFG_SPLIT_NONE;
	char key[SPOOL_KEY_MAX + 1], lane[MSGKEY_LANE_MAX], lane2[MSGKEY_LANE_MAX];
	struct hl7_msh msh;
	const char *bad = NULL, *cid = "";
	size_t cid_len = 0, *m = &f->meta[4 * i];
	int err;

	if (split) {
		if (hl7_parse_msh(body, f->mlen[i], &msh, &bad) < 0) {
			snprintf(why, FILES_REASON_MAX, "message %zu: %s", i + 1,
				 bad ? bad : "no usable MSH");
			return -EBADMSG;
		}
		if (msh.control_id.len <= HL7_MSH_CONTROL_ID_MAX) {
			cid = msh.control_id.p;
			cid_len = msh.control_id.len;
		}
	}
	fj_file_key(f->sha, f->name, split, i, key);
	msgkey_lanes(ch->order, ch->host, split ? &msh : NULL, body, f->mlen[i], lane, lane2);
	if ((err = strs_add(t, key, strlen(key), &m[0])) < 0 ||
	    (err = strs_add(t, cid, cid_len, &m[1])) < 0 ||
	    (err = strs_add(t, lane, strlen(lane), &m[2])) < 0 ||
	    (err = strs_add(t, lane2, strlen(lane2), &m[3])) < 0)
		return err;
	return 0;
}

/* Every message of a split file needs the MSH an MLLP message needs: the
 * whole file is refused otherwise, so that it is never stored in part. */
static int describe_all(const struct fj_chan *ch, struct fj_file *f, char *why)
{
	struct strs t = {0};
	int err = 0;

	if (!(f->meta = calloc(4 * (f->nmsg ? f->nmsg : 1), sizeof *f->meta)))
		return -ENOMEM;
	for (size_t i = 0; err == 0 && i < f->nmsg; i++)
		err = describe(ch, f, i, &t, why);
	f->strs = t.p;
	return err;
}

/* Splits raw (the file, taken over) into f's messages, or keeps it whole.
 * 0, or -EBADMSG/-E2BIG with why, or -ENOMEM. */
static int to_messages(const struct fj_chan *ch, struct fj_file *f, uint8_t *raw, size_t len,
		       char *why)
{
	struct split_out o = {.f = f, .cap = len};
	int err;

	if (ch->cfg->split == CFG_SPLIT_NONE) {
		f->body = raw; /* the whole file is one row */
		f->len = len;
		if (!(f->off = calloc(1, sizeof *f->off)) ||
		    !(f->mlen = calloc(1, sizeof *f->mlen)))
			return -ENOMEM;
		f->mlen[0] = len;
		f->nmsg = 1;
		return describe_all(ch, f, why);
	}
	if (!(f->body = malloc(len ? len : 1))) {
		free(raw);
		return -ENOMEM;
	}
	err = batch_split(raw, len, on_message, &o, NULL, why, FILES_REASON_MAX);
	f->len = o.used;
	free(raw);
	return err ? err : describe_all(ch, f, why);
}

static int read_back(int fd, size_t len, uint8_t **out)
{
	uint8_t *b = malloc(len ? len : 1);
	size_t got = 0;
	ssize_t r;

	if (!b)
		return -ENOMEM;
	while (got < len) {
		r = pread(fd, b + got, len - got, (off_t)got);
		if (r <= 0) {
			free(b);
			return r < 0 ? -errno : -EIO;
		}
		got += (size_t)r;
	}
	*out = b;
	return 0;
}

static char *tmp_name(const struct fj_chan *ch)
{
	static unsigned seq; /* one worker per channel: the channel index keeps names apart */
	char *p;
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	if (asprintf(&p, "%s/c%zu-%lld-%u.tmp", ch->work_dir, ch->index, (long long)ts.tv_sec,
		     __atomic_add_fetch(&seq, 1, __ATOMIC_RELAXED)) < 0)
		return NULL;
	return p;
}

/* Downloads e into a temporary file and makes it durable. 0, 1 (it
 * changed meanwhile: left for the next poll), or a negative errno; -EFBIG
 * and -ENOENT concern this file only. */
static int download(struct sftpc *c, struct fj_worker *w, const struct sftpc_entry *e,
		    struct fj_file *f, int *fd)
{
	const struct fj_chan *ch = w->ch;
	char *path = path_join(ch->cfg->dir, e->name);
	struct sftpc_entry after = {0};
	uint8_t sha[32];
	uint64_t len = 0;
	int err = -ENOMEM;

	if (!path || !(f->tmp = tmp_name(ch)))
		goto out;
	if ((*fd = open(f->tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) < 0) {
		err = -errno;
		goto out;
	}
	if ((err = sftpc_get(c, path, *fd, ch->cfg->max_file, sha, &len)) < 0)
		goto out;
	if (fsync(*fd) < 0) {
		err = -errno;
		goto out;
	}
	hexify(sha, sizeof sha, f->sha);
	err = sftpc_stat(c, path, &after);
	if (err == 0 && (after.size != e->size || after.mtime != e->mtime || len != e->size))
		err = 1;
out:
	free(path);
	return err;
}

static void file_clear(struct fj_file *f)
{
	if (f->tmp)
		unlink(f->tmp);
	free(f->tmp);
	free(f->name);
	free(f->body);
	free(f->off);
	free(f->mlen);
	free(f->strs);
	free(f->meta);
	memset(f, 0, sizeof *f);
}

/* One file: downloaded, checked, split. Returns 0 (taken, refused or left
 * for later) or the session error that ends the job. */
static int take(struct sftpc *c, struct fj_worker *w, struct fjob *j, const struct sftpc_entry *e)
{
	struct fj_file *f = &j->files[j->nfiles];
	char why[FILES_REASON_MAX] = "";
	uint8_t *raw = NULL;
	int fd = -1, err = download(c, w, e, f, &fd);

	if (err == 1 || err == -ENOENT) {
		j->unstable += err == 1; /* still being written, or gone: the next poll sees */
		err = 0;
	} else if (err == -EFBIG) {
		snprintf(why, sizeof why, "larger than max_file (%llu bytes)",
			 (unsigned long long)w->ch->cfg->max_file);
		refuse(c, w, j, e->name, "", why);
		err = 0;
	} else if (err == 0 && (err = read_back(fd, (size_t)e->size, &raw)) == 0) {
		f->name = strdup(e->name);
		f->size = e->size;
		f->mtime = e->mtime;
		err = f->name ? to_messages(w->ch, f, raw, (size_t)e->size, why) : -ENOMEM;
		if (err == -EBADMSG || err == -E2BIG) {
			refuse(c, w, j, e->name, f->sha, why);
			err = 0;
		} else if (err == 0) {
			j->nfiles++;
			f = NULL;
		}
	}
	if (fd >= 0)
		close(fd);
	if (f)
		file_clear(f);
	if (err < 0)
		set_why(j->why, "download of a file", err, NULL, NULL);
	return err;
}

/* ---- the jobs ----------------------------------------------------------- */

static int list_and_take(struct sftpc *c, struct fj_worker *w, struct fjob *j)
{
	struct sftpc_entry *e = NULL;
	size_t n = 0, k, i;
	uint64_t bytes = 0;
	int err = sftpc_list(c, w->ch->cfg->dir, &e, &n);

	if (err < 0) {
		set_why(j->why, "list", err, w->ch->cfg->dir, sftpc_error(c));
		return err;
	}
	k = choose(w, j, e, n);
	j->files = calloc(FILES_JOB_FILES_MAX, sizeof *j->files);
	j->refused = calloc(FILES_JOB_FILES_MAX, sizeof *j->refused);
	if (!j->files || !j->refused)
		err = -ENOMEM;
	for (i = 0; err == 0 && i < k && !stopping(w); i++) {
		if (i == FILES_JOB_FILES_MAX || bytes >= FILES_JOB_BYTES_MAX) {
			j->more = 1;
			break;
		}
		bytes += e[i].size;
		err = take(c, w, j, &e[i]);
	}
	remember(w, e, n);
	sftpc_entries_free(e, n);
	return err;
}

static void run_pull(struct sftpc *c, struct fj_worker *w, struct fjob *j)
{
	for (size_t i = 0; i < j->ndisp && !stopping(w); i++)
		dispose(c, w, &j->disp[i]);
	j->err = list_and_take(c, w, j);
}

static void run_push(struct sftpc *c, struct fj_worker *w, struct fjob *j)
{
	for (size_t i = 0; i < j->nput && !stopping(w); i++) {
		struct fj_put *p = &j->put[i];
		char *path = path_join(w->ch->cfg->dir, p->name);

		p->result = path ? sftpc_put(c, path, p->body, p->len, &p->synced) : -ENOMEM;
		if (p->result < 0) {
			set_why(p->why, "write", p->result, NULL, NULL);
			free(path);
			return; /* in order: nothing after a failed write */
		}
		free(path);
	}
}

static void run(struct fj_worker *w, struct fjob *j)
{
	struct sftpc *c = NULL;

	j->err = session_open(w, j, &c);
	if (j->err == 0) {
		if (w->ch->push)
			run_push(c, w, j);
		else
			run_pull(c, w, j);
		session_close(w, c);
	}
}

static void *worker_main(void *arg)
{
	struct fj_worker *w = arg;
	struct fjob *j;

	for (;;) {
		pthread_mutex_lock(&w->mu);
		while (!w->posted && !w->stop)
			pthread_cond_wait(&w->cv, &w->mu);
		j = w->posted;
		w->posted = NULL;
		pthread_mutex_unlock(&w->mu);
		if (!j)
			break;
		run(w, j);
		/* A pointer is far below PIPE_BUF: the write is atomic, and the
		 * loop drains the pipe before it joins this thread. */
		while (write(w->result_fd, &j, sizeof j) < 0 && errno == EINTR)
			;
	}
	return NULL;
}

int fj_start(struct fj_worker *w)
{
	int err;

	w->fd = -1;
	if ((err = pthread_mutex_init(&w->mu, NULL)) != 0)
		return -err;
	if ((err = pthread_cond_init(&w->cv, NULL)) != 0) {
		pthread_mutex_destroy(&w->mu);
		return -err;
	}
	if ((err = pthread_create(&w->thread, NULL, worker_main, w)) != 0) {
		pthread_cond_destroy(&w->cv);
		pthread_mutex_destroy(&w->mu);
		return -err;
	}
	w->started = 1;
	return 0;
}

void fj_post(struct fj_worker *w, struct fjob *job)
{
	pthread_mutex_lock(&w->mu);
	assert(!w->posted); /* the loop posts only to an idle worker */
	w->posted = job;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

void fj_stop(struct fj_worker *w)
{
	if (!w->started)
		return;
	pthread_mutex_lock(&w->mu);
	w->stop = 1;
	if (w->fd >= 0)
		shutdown(w->fd, SHUT_RDWR); /* a blocked SFTP call fails at once */
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
	pthread_join(w->thread, NULL);
	pthread_cond_destroy(&w->cv);
	pthread_mutex_destroy(&w->mu);
	seen_free(w->seen, w->nseen);
	w->seen = NULL;
	w->started = 0;
}

void fj_job_free(struct fjob *j)
{
	if (!j)
		return;
	for (size_t i = 0; i < j->ndisp; i++) {
		free(j->disp[i].name);
		free(j->disp[i].reason);
	}
	for (size_t i = 0; i < j->nskip; i++)
		free(j->skip[i].name);
	for (size_t i = 0; i < j->nput; i++) {
		free(j->put[i].name);
		free(j->put[i].body);
	}
	for (size_t i = 0; i < j->nfiles; i++)
		file_clear(&j->files[i]);
	for (size_t i = 0; i < j->nrefused; i++)
		free(j->refused[i].name);
	free(j->disp);
	free(j->skip);
	free(j->put);
	free(j->files);
	free(j->refused);
	free(j);
}
