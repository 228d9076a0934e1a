/*
 * Group commit: every message staged during one loop pass is made durable
 * by one spool transaction (one fsync), then each stager hears its outcome.
 * The commit event is activated by the first message staged in a pass and
 * runs after the other events of that pass, which is what groups many
 * messages into one fsync without adding a timer's latency.
 *
 * This is the only module that interprets spool errors: a refusal of one
 * message, a batch rolled back (every stager hears it), and a state change
 * on a row that is gone (logged, nothing else) are told apart here.
 *
 * Delivery state changes (delivered, retry, dead) need no fsync of their
 * own: losing one in a crash only means a message is sent again with the
 * same Idempotency-Key. They ride on the next commit, or on a short flush
 * timer when no message arrives. The retention purge runs here too, between
 * batches.
 */
#ifndef COMMIT_H
#define COMMIT_H

#include <stddef.h>
#include <stdint.h>

#include "mllp-bridge/spool.h"
#include "mllp-bridge/stats.h"

struct event_base;
struct commit;

#define COMMIT_BATCH_MAX    1024	/* staged rows that force a commit at once */
#define COMMIT_MEM_MAX	    (64u << 20) /* staged bytes that force a commit at once */
#define COMMIT_FLUSH_MS	    100		/* state changes wait at most this for a commit */
#define COMMIT_PURGE_MAX_MS 60000	/* the retention purge runs at least this often */
#define COMMIT_PURGE_MIN_MS 1000	/* ... and at most this often */

/* The outcome of one staged message, called once from the event loop.
 * err 0: durable as spool row id; m is the staged copy, borrowed for the
 * call. err < 0: not stored (-ENOSPC: disk full; -ECANCELED: the bridge is
 * shutting down; another errno: spool failure): the sender gets a NAK. */
typedef void (*commit_cb)(void *arg, int err, int64_t id, const struct spool_new *m);

struct commit_stats {
	uint64_t commits;      /* transactions that held at least one new row */
	uint64_t rows;	       /* rows made durable by them */
	uint64_t failures;     /* batches lost; every row in them was refused */
	struct histogram time; /* one commit, fsync included */
};

/* retention_ms: delivered rows older than this are purged. */
__attribute__((warn_unused_result)) int commit_new(struct event_base *base, struct spool *spool,
						   uint64_t retention_ms, struct commit **out);

/* Staged messages not yet committed are rolled back and their callbacks
 * run with -ECANCELED: call commit_drain() first to keep them. */
void commit_free(struct commit *c);

/* Stages a copy of m; cb runs once, from the loop, never inside this call.
 * Returns 0, or refuses this message alone without calling cb: -EINVAL or
 * -EMSGSIZE (a field past the spool's limits), -ENOMEM. */
__attribute__((warn_unused_result)) int commit_stage(struct commit *c, const struct spool_new *m,
						     commit_cb cb, void *arg);

/* Stages the n messages of one file and the file's record as one unit:
 * every message and the record are checked first (one refused message
 * refuses the whole file: -EINVAL/-EMSGSIZE, nothing staged, no callback;
 * so does a message of another integration than f->route, -EINVAL), then
 * all are appended and the record added, with no size-triggered commit
 * between them, so a crash keeps all or none. A batch over COMMIT_BATCH_MAX
 * or COMMIT_MEM_MAX is committed once the whole file is in it. cb runs once
 * per message, in order, as for commit_stage() (all with the same outcome;
 * the m copies are borrowed for the call). A message without a file_name
 * gets f->name. f->id, state, reason, disposed_ms and nrows are ignored;
 * *file_id gets the record's id (valid once the callbacks report 0). A
 * spool failure while the file is staged rolls the whole batch back: every
 * stager of it hears the error. -ENOMEM (nothing staged). n may be up to
 * SPOOL_FILE_ROWS_MAX. */
__attribute__((warn_unused_result)) int commit_stage_file(struct commit *c,
							  const struct spool_new *m, size_t n,
							  const struct spool_file *f, commit_cb cb,
							  void *arg, int64_t *file_id);

/* Commits whatever is staged and runs the callbacks now (shutdown). */
void commit_drain(struct commit *c);

/* State changes of a committed row; see above. */
void commit_mark_delivered(struct commit *c, int64_t id);
void commit_mark_retry(struct commit *c, int64_t id, int attempts, int64_t next_attempt_ms,
		       const char *error);
/* Results with the receiver's answer (spool_mark_acked/_rejected/_dead); ack
 * is copied, NULL, 0 when there is none (dead: always for inbound rows). An
 * ack over SPOOL_ACK_MAX is dropped with a log; the state is recorded. */
void commit_mark_acked(struct commit *c, int64_t id, int attempts, const void *ack, size_t len);
void commit_mark_rejected(struct commit *c, int64_t id, int attempts, const void *ack, size_t len,
			  const char *error);
void commit_mark_dead(struct commit *c, int64_t id, int attempts, const void *ack, size_t len,
		      const char *error);

/* The remote disposition of a file record (spool_file_dispose() at now),
 * riding on the next commit like the marks above: losing it in a crash
 * means the file is found SPOOLED again and disposed again. reason is
 * copied (ERROR only; may be NULL). A record that is gone is logged. */
void commit_file_dispose(struct commit *c, int64_t file_id, enum spool_file_state st,
			 const char *reason);

void commit_stats(const struct commit *c, struct commit_stats *st);

#endif
