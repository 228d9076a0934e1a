/*
 * MLLP listeners and connections: accept, match the peer to an integration,
 * deframe, validate, stage into the group commit, and answer every frame in
 * the order it arrived, whatever order the outcomes are known in.
 *
 * A committed message leaves through the `committed` hook, which the
 * composition root wires to the forwarder: with `ack: upstream` the hook
 * gets a callback through which the upstream's answer comes back, and the
 * sender's answer waits for it; with `ack: commit` the sender hears AA (or
 * the R2 commit block) as soon as the commit returned.
 */
#ifndef MLLP_IN_H
#define MLLP_IN_H

#include <stddef.h>
#include <stdint.h>

#include "mllp-bridge/config.h"
#include "mllp-bridge/forward.h" /* the answer format of the committed hook */
#include "mllp-bridge/hl7.h"
#include "mllp-bridge/stats.h"

struct event_base;
struct commit;
struct gate;
struct mllp_in;

#define MLLP_IN_PEER_MAX	64	    /* "[v6addr]:port" text */
#define MLLP_IN_PENDING_MAX	256	    /* unanswered frames before a reader pauses */
#define MLLP_IN_UNSENT_MAX	(64u << 10) /* answer bytes the peer has not read, ditto */
#define MLLP_IN_FRAMES_PER_PASS 16	    /* frames one connection gets per loop pass */
#define MLLP_IN_READ_CHUNK	65536	    /* one read() */
#define MLLP_IN_SOURCE_BUCKETS	1024	    /* hash buckets of the per-address connection counts */
#define MLLP_IN_ACCEPT_PAUSE_MS 100	    /* listeners rest this long when out of descriptors */
#define MLLP_IN_LINGER_MS	5000	    /* a closing connection's input is drained this long */
#define MLLP_IN_BACKLOG		1024
#define MLLP_IN_CTYPE_MAX	96 /* the Content-Type sent upstream */

/* How committed messages leave. cb/cb_arg are NULL unless the sender waits
 * for the upstream (ack: upstream); then cb must be called exactly once.
 * A non-zero return means the message could not be queued now (it stays in
 * the spool for the next start) and cb will not be called. */
struct mllp_in_hooks {
	int (*committed)(void *arg, size_t integ, int64_t id, const struct spool_new *m,
			 fwd_answer_cb cb, void *cb_arg);
	void *arg;
};

/* Answers by code: AA AE AR (original mode), CA CE CR (enhanced mode). */
enum mllp_in_ack_kind {
	MLLP_IN_AA,
	MLLP_IN_AE,
	MLLP_IN_AR,
	MLLP_IN_CA,
	MLLP_IN_CE,
	MLLP_IN_CR,
	MLLP_IN_ACK_KINDS
};

struct mllp_in_integ_stats {
	uint64_t frames, bytes;
	uint64_t acks[MLLP_IN_ACK_KINDS];
	uint64_t r2_acks, r2_naks;
	uint64_t rejected_store;      /* NAK because the spool failed */
	uint64_t duplicates;	      /* resends answered from the dedup window, not stored */
	struct histogram ack_latency; /* frame read → answer written */
};

struct mllp_in_stats {
	uint64_t conns_open, junk_bytes, abandoned_frames, frame_timeouts, idle_timeouts, oversize;
	uint64_t refused_total;	     /* connections closed at once: connections.max */
	uint64_t refused_per_source; /* ... connections.per_source */
	uint64_t refused_gate;	     /* ... the gate: no installed CHILD_SA covers the peer */
	uint64_t closed_gate;	     /* open connections closed because the gate dropped them */
	uint64_t accept_pauses;	     /* out of descriptors: accepting paused */
};

struct mllp_in_listener_stats {
	const char *listen; /* as configured; borrowed */
	uint64_t accepted;
	uint64_t incomplete; /* peers or messages that matched no integration */
};

/* Binds every configured listener and watches the gate. cfg, commit, gate
 * and hooks are borrowed for the module's life. Returns 0 or a negative
 * errno (logged). */
__attribute__((warn_unused_result)) int mllp_in_new(struct event_base *base, const struct cfg *cfg,
						    struct commit *commit, struct gate *gate,
						    const struct mllp_in_hooks *hooks,
						    struct mllp_in **out);

/* Closes every connection. Free the commit and forward modules first: no
 * answer may be owed when this runs. */
void mllp_in_free(struct mllp_in *m);

void mllp_in_integ_stats(const struct mllp_in *m, size_t integ, struct mllp_in_integ_stats *st);
void mllp_in_stats(const struct mllp_in *m, struct mllp_in_stats *st);
size_t mllp_in_nlisteners(const struct mllp_in *m);
void mllp_in_listener_stats(const struct mllp_in *m, size_t i, struct mllp_in_listener_stats *st);

/* --- pure decisions, public for the unit tests ------------------------ */

/* The candidate whose MSH-4/MSH-6 rule fits; a candidate with a rule wins
 * over a catch-all one, whatever their order. Without an MSH (X12, XML)
 * only a catch-all candidate can take the payload. Returns its index, or -1. */
int mllp_in_match(const struct cfg_integration *const *cands, size_t n, const struct hl7_msh *msh);

/* Whether an answer with this code is sent at all: enhanced mode honours
 * MSH-15 (NE never, ER only on error, SU only on success) unless always is
 * set (`accept_ack: always`, for senders whose MLLP library waits for an
 * answer anyway); original mode always answers. */
int mllp_in_ack_wanted(const struct hl7_msh *msh, enum hl7_ack_code code, int always);

#endif
