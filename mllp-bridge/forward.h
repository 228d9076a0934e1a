/*
 * The forwarder: committed messages → the upstream, over HTTPS.
 *
 * Order: every integration keeps a set of lanes (lane.h), one per order key
 * chosen when the message was accepted (msgkey.h); a lane has one request in
 * flight and its head stays its head across retries, so a message never
 * leaves before the one ahead of it was accepted. Lanes proceed in parallel
 * up to the integration's max_in_flight.
 *
 * Outcomes: 2xx delivered; 408/429 retried after Retry-After; 5xx and
 * transport errors retried with exponential backoff and jitter; any other
 * status is permanent and the message goes to dead letter, which an
 * operator can replay (back into its lane, in arrival order).
 *
 * State changes go through commit.h; the spool is read here only for bodies
 * not kept in memory, rows pending at start-up and operator replays.
 */
#ifndef FORWARD_H
#define FORWARD_H

#include <stddef.h>
#include <stdint.h>

#include "mllp-bridge/config.h"
#include "mllp-bridge/spool.h"
#include "mllp-bridge/stats.h"

struct event_base;
struct commit;
struct upstream;
struct forward;

#define FWD_MEM_BODIES_MAX     (64u << 20)     /* bodies kept in memory; past it, read the spool */
#define FWD_RETRY_AFTER_MAX_MS (3600 * 1000LL) /* a Retry-After is honoured up to 1 h */
#define FWD_ERRTEXT_MAX	       200	       /* an outcome's text for the spool and the log */
#define FWD_REPLAY_POLL_MS     1000	       /* how often operator replays are picked up */
#define FWD_NOMEM_RETRY_MS     100	       /* a request that could not even be built */
#define FWD_CONN_WINDOW	       64 /* answers over which HTTP/2 connection churn is judged */
#define FWD_STATUS_CLASSES     6  /* transport error, then 1xx..5xx */

/* What became of a message whose sender waits for the upstream (ack: upstream). */
enum fwd_outcome {
	FWD_DELIVERED, /* the upstream said 2xx; body/len hold its answer */
	FWD_PENDING,   /* stored, not accepted yet (error, timeout): will be retried */
	FWD_REFUSED,   /* the upstream refused it for good: dead letter */
	FWD_UNKNOWN,   /* the row vanished from the spool (an operator removed it) */
	FWD_ABORTED,   /* the bridge is shutting down */
};

struct fwd_answer {
	enum fwd_outcome outcome;
	const char *why;  /* a text for PENDING and REFUSED, else "" */
	const void *body; /* DELIVERED: the response body, borrowed for the call */
	size_t len;
};

/* Called once per waiting message, from the event loop. */
typedef void (*fwd_answer_cb)(void *arg, const struct fwd_answer *a);

struct fwd_stats {
	uint64_t upstream_class[FWD_STATUS_CLASSES]; /* 0: transport error, 1..5: HTTP class */
	uint64_t retries, dead, delivered, replayed;
	struct histogram upstream_latency; /* one POST */
	size_t depth;			   /* messages queued or in flight */
	unsigned in_flight;
	size_t lanes;	   /* lanes holding messages */
	int http2_avoided; /* 1 once the upstream's behaviour switched it to HTTP/1.1 */
	int64_t oldest_ms; /* received_ms of the oldest waiting message; 0 if none */
};

/* Reads each integration's bearer token, loads the rows pending in the
 * spool into their lanes (in arrival order) and starts sending. The
 * objects are borrowed for the forwarder's life. */
__attribute__((warn_unused_result)) int forward_new(struct event_base *base, const struct cfg *cfg,
						    struct spool *spool, struct commit *commit,
						    struct upstream *up, struct forward **out);

/* Waiting senders hear FWD_ABORTED. Free the upstream client first, so that
 * no request completes afterwards. */
void forward_free(struct forward *f);

/* Queues committed row id of integration number integ (its index in
 * cfg->integrations); m is borrowed for the call. cb (may be NULL) hears the
 * upstream's answer, or PENDING once the upstream timeout passed. Returns 0
 * or -ENOMEM (the row stays in the spool for the next start; cb is not
 * called). */
__attribute__((warn_unused_result)) int forward_enqueue(struct forward *f, size_t integ, int64_t id,
							const struct spool_new *m, fwd_answer_cb cb,
							void *arg);

void forward_stats(const struct forward *f, size_t integ, struct fwd_stats *st);

/* The pause before attempt number `attempts` + 1: Retry-After when the
 * upstream gave one (clamped to FWD_RETRY_AFTER_MAX_MS), else exponential
 * from retry.initial to retry.max with equal jitter (half fixed, half
 * from rnd), so senders spread out after a shared outage. Pure. */
int64_t forward_backoff_ms(const struct cfg_retry *rc, int attempts, int64_t retry_after_ms,
			   uint32_t rnd);

#endif
