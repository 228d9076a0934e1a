/*
 * Inside the file channels: what the loop (files.c) and a channel's worker
 * thread (filejob.c) hand each other. Included only by files*.c and
 * filejob.c.
 *
 * A job is owned by whoever holds it: the loop fills the "in" part and
 * posts it; the worker fills the "out" part and writes the pointer to the
 * result pipe; the loop reads it back and frees it. Neither side touches a
 * job the other holds, so the only shared state is the post slot and the
 * socket kept for cancellation, both under the worker's mutex.
 */
#ifndef FILES_INT_H
#define FILES_INT_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "mllp-bridge/config.h"
#include "mllp-bridge/files.h"

/* What the worker needs of its channel; immutable once the thread runs. */
struct fj_chan {
	const struct cfg_sftp *cfg;
	const char *name; /* the integration or destination */
	char host[64];	  /* numeric address */
	unsigned port;
	char *key_next; /* "<key>.next" */
	const char *work_dir;
	size_t index; /* for temporary file names */
	int push;
	enum cfg_order order; /* pull: the integration's, for each message's lanes */
};

/* A remote file the loop wants moved: delivered (done/ or deleted) or dead
 * (error/ with a reason file). */
struct fj_disp {
	int64_t file_id;
	char *name;
	uint64_t size; /* as recorded: a file replaced since then is left alone */
	int64_t mtime;
	int error;    /* 0 done, 1 error/ */
	char *reason; /* error: the reason file's text */
	/* out */
	int result;   /* 0 settled, else a negative errno: tried again next session */
	int replaced; /* the remote file is no longer the one recorded: left in place */
};

/* A file already in the spool and not yet moved: not taken again. */
struct fj_skip {
	char *name;
	uint64_t size;
	int64_t mtime;
};

/* A downloaded file, fsync'd in tmp, and its messages (one when unsplit),
 * back to back in body. */
struct fj_file {
	char *name;
	uint64_t size;
	int64_t mtime;
	char sha[65];
	char *tmp;
	uint8_t *body;
	size_t len;
	size_t *off, *mlen; /* message i is body[off[i] .. off[i] + mlen[i]) */
	size_t nmsg;
	/* What the spool needs of message i, worked out here rather than on the
	 * loop (hashes and header parses of up to 100,000 messages): its
	 * Idempotency-Key, MSH-10 and lanes, NUL-terminated in strs at
	 * meta[4 * i + 0..3]. */
	char *strs;
	size_t *meta;
};

/* A file sent to error/ before the spool. */
struct fj_refused {
	char *name;
	char sha[65]; /* "" when it was not read */
	char reason[FILES_REASON_MAX];
	int moved; /* 0: the move failed too; it is tried again next session */
};

/* A row to write (push), in queue order. */
struct fj_put {
	int64_t id;
	char *name;
	void *body;
	size_t len;
	/* out */
	int result; /* 0 written, else a negative errno */
	int synced; /* fsync@openssh.com was used */
	char why[FILES_REASON_MAX];
};

struct fjob {
	void *owner; /* the loop's channel; the worker never reads it */
	/* in */
	struct fj_disp *disp;
	size_t ndisp;
	struct fj_skip *skip;
	size_t nskip;
	struct fj_put *put;
	size_t nput;
	/* out */
	int err;		    /* the session failed: connect, list, transport */
	char why[FILES_REASON_MAX]; /* ... and why (names no file content) */
	size_t key_index;	    /* 0 "<key>.next", 1 "<key>" */
	int next_key;		    /* "<key>.next" existed */
	struct fj_file *files;
	size_t nfiles;
	struct fj_refused *refused;
	size_t nrefused;
	size_t unstable; /* files that changed while read */
	int more;	 /* candidates left for the next job */
};

/* One channel's worker thread. */
struct fj_worker {
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct fjob *posted; /* waiting for the worker */
	int stop;
	int fd;	       /* the open session's socket, -1 when none */
	int result_fd; /* the write end of the loop's pipe */
	int started;
	const struct fj_chan *ch;
	/* the last listing, the worker's own: a file is taken once two
	 * listings in a row saw the same size and mtime */
	struct fj_skip *seen;
	size_t nseen;
	int made_done, made_error; /* this session made sure done_dir / error_dir exist */
};

/* Starts w's thread (w->ch and w->result_fd set). 0 or a negative errno. */
__attribute__((warn_unused_result)) int fj_start(struct fj_worker *w);
/* Hands job to the idle worker. */
void fj_post(struct fj_worker *w, struct fjob *job);
/* Stops the worker: cuts its session, joins the thread. A job it held is
 * still written to the pipe; the caller drains and frees it. */
void fj_stop(struct fj_worker *w);

void fj_job_free(struct fjob *j);

/* The Idempotency-Key of message index of n of a file: "f" and 40 hex
 * digits of SHA-256 over the file's SHA-256 (hex) and name, then "-index"
 * when the file was split (n > 1 or split on). Pure; out holds
 * SPOOL_KEY_MAX + 1. */
void fj_file_key(const char *sha_hex, const char *name, int split, size_t index, char *out);

#endif
