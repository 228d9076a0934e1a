/*
 * File channels: folders on a hospital's SFTP server.
 *
 * Pull (an integration with `sftp:`): every interval the folder is listed;
 * a file whose size and mtime did not change since the last listing is
 * downloaded to a temporary file (fsync'd), split into HL7 messages when the
 * channel says so, and staged in the spool with a record of the file, all
 * in one transaction. Its rows then leave through the integration's lanes
 * like MLLP messages, in order, one at a time. Once every row is delivered
 * the remote file is moved to done/ (or deleted); when one goes dead, to
 * error/ with a reason file beside it. A file refused before the spool (too
 * large, a batch whose counts do not add up) goes to error/ at once.
 *
 * Push (a destination with `sftp:`): rows posted for the destination are
 * written to its folder in id order as "name.part", fsync'd where the
 * server offers it, then renamed.
 *
 * libssh's SFTP calls block, so each channel has one worker thread that
 * does only the network part (filejob.c). Which files to take, the spool,
 * the order and the retries stay on the loop, which hands a worker one job
 * at a time and reads the result from a pipe: neither the MLLP nor the
 * HTTPS path ever waits for a worker. A server is contacted only while the
 * gate allows its address (fail closed, as for MLLP).
 */
#ifndef FILES_H
#define FILES_H

#include <stddef.h>
#include <stdint.h>

#include "mllp-bridge/config.h"
#include "mllp-bridge/spool.h"

struct event_base;
struct commit;
struct gate;
struct files;

#define FILES_JOB_BYTES_MAX   (64u << 20) /* downloaded per job; the next job follows at once */
#define FILES_JOB_FILES_MAX   100	  /* files per job, likewise */
#define FILES_PUSH_BATCH_MAX  16	  /* rows written per push job */
#define FILES_RETRY_MIN_MS    1000	  /* first pause after a failed session ... */
#define FILES_REASON_MAX      300	  /* a reason file's text, and a session error's */
#define FILES_STAGING_WAIT_MS 50 /* a listing waits for the commit of the last one's files */

/* Results that go up: a committed row of integration integ, for its lanes.
 * m is borrowed for the call. Returns 0 or a negative errno (the row stays
 * in the spool for the next start). */
struct files_hooks {
	int (*committed)(void *arg, size_t integ, int64_t id, const struct spool_new *m);
	void *arg;
};

/* Starts one worker per channel of cfg (integrations and destinations with
 * sftp:). work_dir holds the downloads (created 0700; whatever a crash left
 * there is removed). Everything is borrowed for the module's life. *out is
 * NULL when cfg has no file channel. 0 or a negative errno. */
__attribute__((warn_unused_result)) int files_new(struct event_base *base, const struct cfg *cfg,
						  struct spool *spool, struct commit *commit,
						  struct gate *gate, const char *work_dir,
						  const struct files_hooks *hooks,
						  struct files **out);

/* A row committed for push destination dest (its index in
 * cfg->destinations) joins its queue. -ENOENT when dest is not a push
 * channel, -ENOMEM (it stays in the spool for the next start). */
__attribute__((warn_unused_result)) int files_push(struct files *f, size_t dest, int64_t id);

/* Stops the workers (a transfer under way is cut: shutdown() of its
 * socket) and joins them. NULL is fine. */
void files_free(struct files *f);

/* One channel's figures, for /metrics. */
struct files_stats {
	const char *name; /* the integration or destination */
	int push;	  /* 0 pull, 1 push */
	int up;		  /* the last session worked */
	int waiting_gate; /* the gate does not allow the server now */
	uint64_t sessions, session_errors, hostkey_mismatches;
	uint64_t files, rows, bytes; /* pull: spooled; push: written */
	uint64_t unstable;	     /* pull: changed while read: left for the next poll */
	uint64_t done, errors;	     /* pull: moved to done/ (or deleted), to error/ */
	uint64_t refused;	     /* pull: sent to error/ before the spool */
	uint64_t push_retries, push_dead;
	size_t key_index;  /* the key that authenticated last: 0 "<key>.next", 1 "<key>" */
	int next_key;	   /* 1 when "<key>.next" exists */
	size_t open_files; /* pull: spooled, waiting for delivery */
	size_t queued;	   /* push: rows waiting */
	int64_t last_ok_ms;
};

/* Channels in config order: pull channels first, then push ones. */
size_t files_count(const struct files *f);
void files_stats(const struct files *f, size_t i, struct files_stats *st);

#endif
