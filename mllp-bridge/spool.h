/*
 * The durable spool: every accepted message is a row in an SQLite database
 * (WAL mode, synchronous=FULL) until the upstream said 2xx, and for the
 * retention period after that.
 *
 * Group commit: spool_append() stages rows in an open transaction and
 * spool_commit() makes all of them durable with one fsync. A message may be
 * acknowledged only after the spool_commit() that covers it returned 0.
 * While a batch is open this handle holds the database's write lock (other
 * writers, e.g. the operator CLI, wait up to 5 s): commit promptly.
 *
 * Row ids grow with arrival and are never reused, so "ORDER BY id" is
 * arrival order.
 * All functions return 0 or a negative errno (-ENOSPC when the disk is full,
 * -EBUSY when another process held the lock too long, -EIO for other SQLite
 * failures, -ENOENT for an unknown id); a text for the log is available from
 * spool_errmsg(). A handle is used by one thread.
 */
#ifndef SPOOL_H
#define SPOOL_H

#include <stddef.h>
#include <stdint.h>

#define SPOOL_ERROR_MAX	  512	      /* last_error texts are cut to this many bytes */
#define SPOOL_TEXT_MAX	  1024	      /* longest integration/sender/content_type/control_id */
#define SPOOL_BODY_MAX	  (64u << 20) /* = MLLP_MAX_FRAME_LIMIT; larger bodies are refused */
#define SPOOL_ERRMSG_MAX  512	      /* spool_errmsg() text */
#define SPOOL_PURGE_CHUNK 1000	      /* rows deleted per transaction by spool_purge() */
#define SPOOL_KEY_MAX	  64	      /* an Idempotency-Key: 1..64 visible ASCII characters */
/* The WAL is copied into the database every this many pages (1 MiB), inside
 * the commit that crosses the mark. Small checkpoints keep the WAL short
 * and rewritten in place, so its fsync stays cheap; measured at 5,000 msg/s
 * (docs/performance.md): p99 ACK 1.66-1.89 ms at 250 pages, 2.01-2.15 ms at
 * SQLite's default of 1000, p50 0.94 ms at 100. */
#define SPOOL_WAL_CHECKPOINT_PAGES 250
#define SPOOL_LANE_MAX		   256 /* a lane key: 0..256 bytes of text */
#define SPOOL_FILE_NAME_MAX	   255 /* a file name: no '/', no control characters, 1..255 bytes */
#define SPOOL_FILE_ROWS_MAX	   100000 /* rows (messages) of one file record */
#define SPOOL_SHA256_HEX	   64	  /* a file's SHA-256: this many lowercase hex digits */

enum spool_state {
	SPOOL_QUEUED = 0,
	SPOOL_INFLIGHT = 1,  /* a request is out; back to queued at start-up */
	SPOOL_DELIVERED = 2, /* upstream said 2xx; outbound: the receiver's AA/CA */
	SPOOL_DEAD = 3,	     /* permanent failure; an operator may replay it */
	SPOOL_REJECTED = 4,  /* outbound: the receiver answered AE/AR and the policy is dead */
};

/* Which way a row travels. Inbound rows go to the forwarder (integration =
 * the integration's name); outbound rows to the MLLP senders (integration =
 * the destination's name). */
enum spool_channel { SPOOL_IN = 0, SPOOL_OUT = 1 };

#define SPOOL_ACK_MAX 65536 /* bytes of an outbound ACK kept with its row */

struct spool;

/* A message to store. Strings and body are borrowed for the call. */
struct spool_new {
	const char *integration;
	const char *sender;	  /* the MLLP peer address, text */
	const char *content_type; /* as it will be sent upstream */
	const char *control_id;	  /* MSH-10 or "" */
	const char *idem_key;	  /* the Idempotency-Key, chosen by the caller */
	const char *lane;	  /* the lane (ordered FIFO) the message belongs to */
	const char *lane2;	  /* a second lane it must also wait for (merges), or "" */
	int64_t received_ms;	  /* wall clock, ms since the epoch */
	const void *body;
	size_t len;
	enum spool_channel channel; /* SPOOL_IN (0) unless set */
	const char *file_name;	    /* the remote file the message came from (file channels), or
				       NULL ("" counts as NULL); checked like spool_file.name */
};

/* One row without its body. Strings are owned by the row: free with
 * spool_row_clear(). Rows handed to a spool_row_cb are borrowed for the
 * call instead (never clear those). */
struct spool_row {
	int64_t id;
	char *integration;
	char *sender;
	char *content_type;
	char *control_id;
	char *idempotency_key; /* chosen by the appender, stable forever */
	char *lane;	       /* "" for rows stored before lanes existed */
	char *lane2;	       /* "" when none */
	int64_t received_ms;
	enum spool_state state;
	int attempts;
	int64_t next_attempt_ms;
	int64_t delivered_ms; /* 0 unless delivered */
	char *last_error;     /* NULL when none */
	size_t len;	      /* body length */
	enum spool_channel channel;
	char *ack; /* outbound: the receiver's last answer (HL7 ACK or R2 block), NULL when none */
	size_t ack_len;
	char *file_name; /* the remote file it came from; NULL when none */
};

void spool_row_clear(struct spool_row *r);

/* Short name of a state ("queued", "inflight", "delivered", "dead"), or "?". */
const char *spool_state_name(int state);

/* Opens (creating when needed, mode 0600) the database at path, applies the
 * schema and the pragmas. A spool of an older schema version is migrated in
 * place, its rows kept (rows from before lanes get lane ""). Refuses with
 * -EPROTO a file that is not a spool or has a newer schema than this program
 * knows.
 * Like sqlite3_open(), *out is set even on failure (unless -ENOMEM), so that
 * spool_errmsg(*out) can say why: the caller always closes with
 * spool_close(), which accepts NULL. */
__attribute__((warn_unused_result)) int spool_open(const char *path, struct spool **out);
void spool_close(struct spool *s);

/* The last error text of this handle (for logs; never NULL, also for a NULL
 * handle). */
const char *spool_errmsg(const struct spool *s);

/* Stages a new queued row; *id is returned. The row keeps m->idem_key as
 * its Idempotency-Key (the caller derives it: see msgkey.h) and m->lane,
 * m->lane2 (NULL counts as ""). Arguments are checked first: -EINVAL (a NULL
 * string other than a lane or the file name, an idem_key that is empty or
 * holds anything but visible ASCII 0x21-0x7e, a file name with '/' or a
 * control character or that is "." or "..", or a NULL body with len > 0)
 * and -EMSGSIZE (a string past SPOOL_TEXT_MAX, an idem_key past
 * SPOOL_KEY_MAX, a lane past SPOOL_LANE_MAX, a file name past
 * SPOOL_FILE_NAME_MAX, a body past SPOOL_BODY_MAX) refuse only this message and
 * leave the batch alone. On any other failure the whole open batch is
 * rolled back: every row staged since the last commit is gone, and the
 * caller must NAK all of them. */
__attribute__((warn_unused_result)) int spool_append(struct spool *s, const struct spool_new *m,
						     int64_t *id);

/* The argument checks of spool_append(), without touching the database: 0,
 * -EINVAL or -EMSGSIZE (the same answers spool_append gives). For
 * commit_stage_file(), which must refuse a whole file before it appends any
 * of it. */
__attribute__((warn_unused_result)) int spool_check_new(const struct spool_new *m);

/* Commits the open batch (if any) with one fsync. On failure the batch is
 * rolled back: nothing staged since the last commit is stored. This includes
 * a batch already lost to a failed spool_mark_*(), spool_purge(), ...: the
 * failure is kept and reported here once (a sticky error), so rows appended
 * since the last commit are never acknowledged by mistake. */
__attribute__((warn_unused_result)) int spool_commit(struct spool *s);

/* Number of changes (new rows and state changes) staged and not yet
 * committed. Non-zero means a batch is open and spool_commit() is due. */
size_t spool_pending(const struct spool *s);

/* State changes made by the forwarder. They join the open batch, opening one
 * when needed (they are durable at the next spool_commit); losing one in a
 * crash or a failed batch only means a message is delivered again with the
 * same idempotency key. -ENOENT (no such row) leaves the batch alone; any
 * other failure rolls the whole batch back (see spool_commit). error may be
 * NULL; it is cut to SPOOL_ERROR_MAX bytes. */
__attribute__((warn_unused_result)) int spool_mark_inflight(struct spool *s, int64_t id);
__attribute__((warn_unused_result)) int spool_mark_delivered(struct spool *s, int64_t id,
							     int64_t now_ms);
__attribute__((warn_unused_result)) int spool_mark_retry(struct spool *s, int64_t id, int attempts,
							 int64_t next_attempt_ms,
							 const char *error);

/* Calls cb for each queued or in-flight row in id order (in-flight rows are
 * reported as queued: their request died with the last process). Stops and
 * returns cb's value when it is non-zero. cb must not write to the spool. */
typedef int (*spool_row_cb)(void *arg, const struct spool_row *r);
/* Inbound rows only (the forwarder's). */
__attribute__((warn_unused_result)) int spool_load_pending(struct spool *s, spool_row_cb cb,
							   void *arg);
/* The same for one channel. */
__attribute__((warn_unused_result)) int
spool_load_pending_channel(struct spool *s, enum spool_channel channel, spool_row_cb cb, void *arg);

/* Outbound: the id of the row of channel/route that carries Idempotency-Key
 * key, whatever its state (a repeated POST returns the first message), or
 * -ENOENT. Rows still in the open batch count. */
__attribute__((warn_unused_result)) int spool_find_key(struct spool *s, enum spool_channel channel,
						       const char *route, const char *key,
						       int64_t *id);

/* Outbound results, in the open batch like spool_mark_*() above. ack (len
 * bytes, at most SPOOL_ACK_MAX, may be NULL) is the receiver's answer, kept
 * with the row for GET /v1/messages/{id}; attempts counts every send, the
 * one answered included. acked: SPOOL_DELIVERED at now_ms;
 * rejected: SPOOL_REJECTED (AE/AR under a dead policy) with error. An ack
 * that is refused (-EINVAL, -EMSGSIZE) leaves the row and the batch alone. */
__attribute__((warn_unused_result)) int spool_mark_acked(struct spool *s, int64_t id, int attempts,
							 int64_t now_ms, const void *ack,
							 size_t len);
__attribute__((warn_unused_result)) int spool_mark_rejected(struct spool *s, int64_t id,
							    int attempts, const void *ack,
							    size_t len, const char *error);
/* Dead (max_attempts reached), either channel, with the last answer the
 * receiver gave (ack, len: as above; NULL, 0 when there was none, and
 * always for inbound rows). The row's earlier ack, if any, is replaced. */
__attribute__((warn_unused_result)) int spool_mark_dead(struct spool *s, int64_t id, int attempts,
							const void *ack, size_t len,
							const char *error);

/* Fetches one row with its body. *body is malloc'd: caller frees. body may
 * be NULL to fetch the metadata only. On failure r is left cleared. */
__attribute__((warn_unused_result)) int spool_get(struct spool *s, int64_t id, struct spool_row *r,
						  void **body);

/* Operator: rows in `state` (or every state when state < 0) for integration
 * (or all when NULL), newest first, at most limit (no limit when limit <= 0).
 * cb as for spool_load_pending(). */
__attribute__((warn_unused_result)) int spool_list(struct spool *s, int state,
						   const char *integration, int limit,
						   spool_row_cb cb, void *arg);

/* Operator: dead rows back to queued with attempts 0 and a "replayed" flag
 * the running bridge picks up with spool_take_replayed(). id > 0 replays one
 * row (-ENOENT if there is no such row; *count 0 if it is not dead); id == 0
 * replays every dead row of integration (all when NULL).
 * *count gets the number of rows replayed. Committed at once (or joins the
 * open batch when one is open, like the functions below). */
__attribute__((warn_unused_result)) int spool_replay(struct spool *s, int64_t id,
						     const char *integration, int *count);

/* Bridge: rows an operator replayed since the last call (clears the flag of
 * each row cb returned 0 for; a non-zero value stops and is returned, and
 * that row is offered again next time). Committed at once, outside any
 * batch; when a batch is open the flags are cleared inside it, so a failed
 * commit offers the rows again. A replayed row is also reported by
 * spool_load_pending() after a restart: calling this first at start-up (and
 * ignoring the rows) avoids queueing it twice. */
__attribute__((warn_unused_result)) int spool_take_replayed(struct spool *s, spool_row_cb cb,
							    void *arg);
/* The same for one channel (spool_take_replayed() is SPOOL_IN's): the MLLP
 * senders poll SPOOL_OUT. -EINVAL for another channel. */
__attribute__((warn_unused_result)) int spool_take_replayed_channel(struct spool *s,
								    enum spool_channel channel,
								    spool_row_cb cb, void *arg);

/* Deletes delivered rows delivered before before_ms (and, when include_dead,
 * dead rows received before before_ms), and every file record disposed
 * (DONE or ERROR) before before_ms with its list of rows, whatever
 * include_dead says; a SPOOLED record is never purged. *count gets the
 * number of rows (messages) deleted; file records are not counted.
 * Committed at once, SPOOL_PURGE_CHUNK rows (or file records, or entries of
 * their row lists) per transaction so that the write lock is never held
 * long. */
__attribute__((warn_unused_result)) int spool_purge(struct spool *s, int64_t before_ms,
						    int include_dead, int *count);

/* Counts per channel and integration (inbound) or destination (outbound),
 * for `spool stats` and the bridge's dead letters at start. Only those with
 * queued, in-flight, dead or rejected rows are reported, inbound first,
 * each channel in name order: the others are 0. A destination may have an
 * integration's name: look at channel. */
struct spool_stat {
	enum spool_channel channel;
	const char *integration;  /* borrowed for the callback */
	int64_t queued;		  /* queued + in-flight */
	int64_t dead;		  /* dead + rejected (outbound only): what waits for a replay */
	int64_t oldest_queued_ms; /* received_ms of the oldest queued row, 0 if none */
};
typedef void (*spool_stat_cb)(void *arg, const struct spool_stat *st);
__attribute__((warn_unused_result)) int spool_stats(struct spool *s, spool_stat_cb cb, void *arg);

/* ---- file channels (issue 14) ----------------------------------------
 *
 * A file pulled from a remote (SFTP) folder becomes several rows; its
 * record says which rows, and what was done with the remote file once they
 * were all delivered (or one went dead). The record and its rows are staged
 * in the same batch, so that a crash keeps both or neither: a file whose
 * record survived is never pulled twice, and one whose record was lost was
 * never acknowledged (left in place) and is pulled again. */

enum spool_file_state {
	SPOOL_FILE_SPOOLED = 0, /* its rows are in the spool; the remote file is still in place */
	SPOOL_FILE_DONE =
	    1, /* every row delivered; the remote file was moved to done/ or deleted */
	SPOOL_FILE_ERROR = 2, /* a row went dead; the remote file was moved to error/ */
};

/* A file pulled from an SFTP folder, and what became of it. Strings borrowed. */
struct spool_file {
	int64_t id;
	const char *route;  /* the integration: 1..SPOOL_TEXT_MAX bytes */
	const char *name;   /* the remote name, no folder: 1..SPOOL_FILE_NAME_MAX bytes, no '/',
			       no control character (< 0x20, 0x7f), not "." or ".." */
	uint64_t size;	    /* at most INT64_MAX */
	int64_t mtime;	    /* the remote mtime, seconds */
	const char *sha256; /* SPOOL_SHA256_HEX lowercase hex digits */
	int64_t received_ms;
	enum spool_file_state state;
	const char *reason;  /* ERROR: why, else NULL */
	int64_t disposed_ms; /* 0 while SPOOLED */
	size_t nrows;
};

/* "spooled", "done", "error", or "?". */
const char *spool_file_state_name(int state);

/* The argument checks of spool_file_add() on the record (f->route, name,
 * sha256, size) and its number of rows (1 <= n <= SPOOL_FILE_ROWS_MAX),
 * without touching the database: 0, -EINVAL or -EMSGSIZE (n or a string
 * too large). For commit_stage_file(), which checks a file before its rows
 * have ids. */
__attribute__((warn_unused_result)) int spool_file_check(const struct spool_file *f, size_t n);

/* Stages the record of a file and its rows (ids of rows already appended in
 * this batch or committed earlier, each a row of f->route, each once), in
 * the open batch like spool_mark_*(): durable at the next spool_commit,
 * rolled back with it. The record starts SPOOLED with nrows = n: f->id,
 * state, reason, disposed_ms and nrows are ignored. *id gets the record's
 * id (ids are never reused). The checks of spool_file_check() come first,
 * and rows must not be NULL: -EINVAL, -EMSGSIZE leave the batch alone. Any later failure rolls the
 * whole batch back (reported again by the next spool_commit/spool_append,
 * as for spool_mark_*()), among them -ENOENT (a row that does not exist or
 * belongs to another route) and -EEXIST (a row id given twice). */
__attribute__((warn_unused_result)) int spool_file_add(struct spool *s, const struct spool_file *f,
						       const int64_t *rows, size_t n, int64_t *id);

/* Records of route still SPOOLED, in id order (f borrowed for the call; cb
 * returning non-zero stops and is returned). Reads committed and staged
 * data. cb must not write to the spool. */
typedef int (*spool_file_cb)(void *arg, const struct spool_file *f);
__attribute__((warn_unused_result)) int spool_file_pending(struct spool *s, const char *route,
							   spool_file_cb cb, void *arg);

/* Where the rows of a file stand. Rows purged meanwhile count as delivered
 * (purge removes only delivered rows, or dead ones at an operator's
 * request). reason: last_error of the first dead row (by id; cut to
 * SPOOL_ERROR_MAX), "" when none. Reads committed and staged data. -ENOENT
 * when there is no such record. */
struct spool_file_progress {
	size_t queued;	  /* queued or in flight */
	size_t delivered; /* delivered, or gone */
	size_t dead;	  /* dead or rejected */
	char reason[SPOOL_ERROR_MAX + 1];
};
__attribute__((warn_unused_result)) int spool_file_progress(struct spool *s, int64_t file_id,
							    struct spool_file_progress *p);

/* Records the remote disposition, in the open batch like spool_mark_*():
 * st is SPOOL_FILE_DONE or SPOOL_FILE_ERROR (else -EINVAL, batch alone);
 * reason (ERROR only, may be NULL; ignored for DONE) is cut to
 * SPOOL_ERROR_MAX bytes; disposed_ms = now_ms. A record already disposed is
 * overwritten (a disposition done again after a crash). -ENOENT (no such
 * record) leaves the batch alone; other failures roll it back. */
__attribute__((warn_unused_result)) int spool_file_dispose(struct spool *s, int64_t file_id,
							   enum spool_file_state st,
							   const char *reason, int64_t now_ms);

/* Operator: every record of route (all when NULL), newest first, at most
 * limit (no limit when limit <= 0). cb as for spool_file_pending(). */
__attribute__((warn_unused_result)) int spool_file_list(struct spool *s, const char *route,
							int limit, spool_file_cb cb, void *arg);

/* For tests only: caps the database at `pages` pages (PRAGMA max_page_count)
 * to simulate a full disk; pages <= 0 lifts the cap. */
__attribute__((warn_unused_result)) int spool_test_set_max_pages(struct spool *s, int pages);

#endif
