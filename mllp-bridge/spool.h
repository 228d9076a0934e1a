/*
 * The durable spool: every accepted message is a row in an SQLite database
 * (WAL mode, synchronous=FULL) until the upstream said 2xx, and for the
 * retention period after that.
 *
 * Group commit: spool_append() stages rows in an open transaction and
 * spool_commit() makes all of them durable with one fsync. A message may be
 * acknowledged only after the spool_commit() that covers it returned 0.
 *
 * Row ids grow with arrival, so "ORDER BY id" is arrival order.
 * All functions return 0 or a negative errno (-ENOSPC when the disk is full,
 * -EIO for other SQLite failures, -ENOENT for an unknown id); a text for the
 * log is available from spool_errmsg().
 */
#ifndef SPOOL_H
#define SPOOL_H

#include <stddef.h>
#include <stdint.h>

#define SPOOL_ERROR_MAX 512 /* last_error texts are cut to this */

enum spool_state {
	SPOOL_QUEUED = 0,
	SPOOL_INFLIGHT = 1,  /* a request is out; back to queued at start-up */
	SPOOL_DELIVERED = 2, /* upstream said 2xx */
	SPOOL_DEAD = 3,      /* permanent failure; an operator may replay it */
};

struct spool;

/* A message to store. Strings and body are borrowed for the call. */
struct spool_new {
	const char *integration;
	const char *sender;       /* the MLLP peer address, text */
	const char *content_type; /* as it will be sent upstream */
	const char *control_id;   /* MSH-10 or "" */
	int64_t received_ms;      /* wall clock, ms since the epoch */
	const void *body;
	size_t len;
};

/* One row without its body. Strings are owned by the row: free with
 * spool_row_clear(). */
struct spool_row {
	int64_t id;
	char *integration;
	char *sender;
	char *content_type;
	char *control_id;
	char *idempotency_key;  /* a UUID chosen at insert, stable forever */
	int64_t received_ms;
	enum spool_state state;
	int attempts;
	int64_t next_attempt_ms;
	int64_t delivered_ms;   /* 0 unless delivered */
	char *last_error;       /* NULL when none */
	size_t len;             /* body length */
};

void spool_row_clear(struct spool_row *r);

/* Opens (creating when needed) the database at path, applies the schema and
 * the pragmas. Caller closes with spool_close(). */
__attribute__((warn_unused_result)) int spool_open(const char *path, struct spool **out);
void spool_close(struct spool *s);

/* The last SQLite error text of this handle (for logs; never NULL). */
const char *spool_errmsg(const struct spool *s);

/* Stages a new queued row; *id and the new idempotency key (37 bytes incl.
 * NUL, may be NULL) are returned. On failure the whole open batch is rolled
 * back: every row staged since the last commit is gone, and the caller must
 * NAK all of them. */
__attribute__((warn_unused_result)) int spool_append(struct spool *s, const struct spool_new *m,
						     int64_t *id, char idem_key[37]);

/* Commits the open batch (if any) with one fsync. On failure the batch is
 * rolled back: nothing staged since the last commit is stored. */
__attribute__((warn_unused_result)) int spool_commit(struct spool *s);

/* Number of rows staged and not yet committed. */
size_t spool_pending(const struct spool *s);

/* State changes made by the forwarder. They join the open batch (they are
 * durable at the next spool_commit); losing one in a crash only means a
 * message is delivered again with the same idempotency key. */
__attribute__((warn_unused_result)) int spool_mark_inflight(struct spool *s, int64_t id);
__attribute__((warn_unused_result)) int spool_mark_delivered(struct spool *s, int64_t id,
							     int64_t now_ms);
__attribute__((warn_unused_result)) int spool_mark_retry(struct spool *s, int64_t id, int attempts,
							 int64_t next_attempt_ms, const char *error);
__attribute__((warn_unused_result)) int spool_mark_dead(struct spool *s, int64_t id, int attempts,
							const char *error);

/* Calls cb for each queued or in-flight row in id order (in-flight rows are
 * reported as queued: their request died with the last process). Stops and
 * returns cb's value when it is non-zero. */
typedef int (*spool_row_cb)(void *arg, const struct spool_row *r);
__attribute__((warn_unused_result)) int spool_load_pending(struct spool *s, spool_row_cb cb,
							   void *arg);

/* Fetches one row with its body. *body is malloc'd: caller frees. */
__attribute__((warn_unused_result)) int spool_get(struct spool *s, int64_t id, struct spool_row *r,
						  void **body);

/* Operator: rows in `state` (or every state when state < 0) for integration
 * (or all when NULL), newest first, at most limit. */
__attribute__((warn_unused_result)) int spool_list(struct spool *s, int state,
						   const char *integration, int limit,
						   spool_row_cb cb, void *arg);

/* Operator: dead rows back to queued with attempts 0 and a "replayed" flag
 * the running bridge picks up with spool_take_replayed(). id > 0 replays one
 * row; id == 0 replays every dead row of integration (all when NULL).
 * *count gets the number of rows replayed. */
__attribute__((warn_unused_result)) int spool_replay(struct spool *s, int64_t id,
						     const char *integration, int *count);

/* Bridge: rows an operator replayed since the last call (clears the flag).
 * Committed at once, outside any batch. */
__attribute__((warn_unused_result)) int spool_take_replayed(struct spool *s, spool_row_cb cb,
							    void *arg);

/* Deletes delivered rows delivered before before_ms (dead rows too when
 * include_dead). *count gets the number deleted. Committed at once. */
__attribute__((warn_unused_result)) int spool_purge(struct spool *s, int64_t before_ms,
						    int include_dead, int *count);

/* Per-integration counts for /metrics. */
struct spool_stat {
	const char *integration; /* borrowed for the callback */
	int64_t queued;          /* queued + in-flight */
	int64_t dead;
	int64_t oldest_queued_ms;/* received_ms of the oldest queued row, 0 if none */
};
typedef void (*spool_stat_cb)(void *arg, const struct spool_stat *st);
__attribute__((warn_unused_result)) int spool_stats(struct spool *s, spool_stat_cb cb, void *arg);

#endif
