/*
 * MLLP senders: committed outbound rows → the hospital's MLLP receivers,
 * one sender per configured destination (cfg->destinations[i]).
 *
 * Order: each destination keeps its messages in one lane (lane.h, one lane
 * set per destination with a cap of 1): FIFO by row id, one message in
 * flight, and the head stays the head across retries, so the next message
 * leaves only after the receiver ACKed the one before it.
 *
 * Connection: opened (non-blocking) when a message is due, kept open and
 * reused for the next one, closed after the destination's idle_timeout
 * without traffic or when the peer closes it. Messages are framed with
 * mllp.h; the answer is read with the deframer: release 1 an HL7 ACK whose
 * MSA-2 must equal the message's MSH-10 (a mismatch is an error, never a
 * success), release 2 a commit ACK/NAK block.
 *
 * Outcomes, through commit.h:
 *   AA/CA (or an R2 commit ACK)   acked, the ACK kept with the row;
 *   AE/CE, AR/CR                  the destination's on_ae/on_ar: retry, or
 *                                 rejected with the ACK kept;
 *   no ACK within ack_timeout, a wrong MSA-2, an unreadable answer, an R2
 *   NAK, a failed connect, a close mid-message: the connection is closed and
 *   the same message is sent again on a new one after a backoff (retry.initial,
 *   doubling up to retry.max); never the next one first;
 *   attempts reaching max_attempts: dead, with the answer to the last send
 *   kept (a wrong MSA-2, an AE, an R2 NAK byte), if it got one.
 *
 * The gate: a message is sent only while gate_allows() the destination's
 * address; otherwise the head waits (stats: waiting_gate) and the sender
 * is woken by gate_watch(). When the gate drops a destination, its
 * connection is aborted (RST, nothing more leaves); a message that was in
 * flight is sent again once the gate allows it (the receiver may see it
 * twice, with the same MSH-10). That resend does not count as an attempt:
 * a tunnel that flaps must not kill messages.
 *
 * Logs carry the destination's name and the row id, never message content
 * (control IDs only with log_phi).
 */
#ifndef MLLP_OUT_H
#define MLLP_OUT_H

#include <stddef.h>
#include <stdint.h>

#include "mllp-bridge/config.h"
#include "mllp-bridge/spool.h"

struct event_base;
struct commit;
struct gate;
struct mllp_out;
struct mllp_out_watch;

#define MLLP_OUT_ACK_MAX	SPOOL_ACK_MAX /* an answer longer than this is refused */
#define MLLP_OUT_ERRTEXT_MAX	200	      /* an outcome's text for the spool and the log */
#define MLLP_OUT_READ_CHUNK	16384 /* bytes moved from the socket to the deframer at once */
#define MLLP_OUT_MEM_BODIES_MAX (64u << 20) /* queued bodies copied in memory, all destinations */

/* What became of a watched message. */
enum mllp_out_result {
	MLLP_OUT_ACKED,	   /* AA/CA or R2 commit ACK; ack holds it */
	MLLP_OUT_REJECTED, /* AE/AR under a dead policy; ack holds it, row is rejected */
	MLLP_OUT_DEAD,	   /* max_attempts reached (ack is the answer to the last send,
			      kept with the row too, NULL when it got none), or the body
			      could not be read from the spool */
	MLLP_OUT_ABORTED,  /* mllp_out_free(): the row stays queued in the spool; or the
			      row was gone (or no longer this message) at its turn */
};

/* Called once per watch, from the event loop. ack (ack_len bytes, may be
 * NULL) and error ("" when none) are borrowed for the call. The watch is
 * over when this runs: its handle is freed, do not unwatch it. */
typedef void (*mllp_out_watch_cb)(void *arg, int64_t id, enum mllp_out_result result,
				  const void *ack, size_t ack_len, const char *error);

/* A snapshot of one destination's sender. */
struct mllp_out_stats {
	size_t queued;	      /* messages waiting, the one in flight included */
	unsigned in_flight;   /* 0 or 1: sent, its answer awaited */
	int64_t in_flight_id; /* that message's row id, or 0 */
	int connected;	      /* 1 while a connection is established */
	int waiting_gate;     /* 1 while the head waits for the gate */
	uint64_t sent;	      /* frames written (a resend counts again) */
	uint64_t acked;
	uint64_t rejected;	   /* AE/AR under a dead policy */
	uint64_t dead;		   /* max_attempts reached */
	uint64_t retries;	   /* resends scheduled after a failure or an AE/AR */
	uint64_t ack_timeouts;	   /* no answer within ack_timeout */
	uint64_t ack_errors;	   /* wrong MSA-2, unreadable or oversized answers, R2 NAKs */
	uint64_t transport_errors; /* failed connects, closes mid-message */
	uint64_t gate_waits;	   /* times a head found the gate closed */
	uint64_t gate_closes;	   /* connections aborted because the gate dropped the peer */
	uint64_t connects;	   /* connections established */
	uint64_t idle_closes;	   /* connections closed after idle_timeout */
	int64_t oldest_ms;	   /* wall clock when the oldest waiting message was queued
				      here; 0 if none */
};

/* One sender per cfg->destinations[i]; cfg, spool, commit and gate are
 * borrowed for the senders' life (the gate is watched until mllp_out_free();
 * the spool is only read, with spool_get(), for the bodies not kept in
 * memory). Nothing connects before a message is queued. Returns 0, -EINVAL
 * (a NULL argument) or -ENOMEM (-ENOSPC: no gate watcher slot left); *out is
 * set on success only. */
__attribute__((warn_unused_result)) int mllp_out_new(struct event_base *base, const struct cfg *cfg,
						     struct spool *spool, struct commit *commit,
						     struct gate *gate, struct mllp_out **out);

/* Closes every connection; watchers hear MLLP_OUT_ABORTED. Not from inside
 * a watch callback. o may be NULL. */
void mllp_out_free(struct mllp_out *o);

/* The index of the destination called name, or -ENOENT. */
__attribute__((warn_unused_result)) int mllp_out_dest(const struct mllp_out *o, const char *name);

/* Queues committed outbound row id for destination index dest, behind the
 * rows already queued there (by id: a replayed row goes back to its place,
 * never before the one in flight). body (len bytes) is borrowed for the
 * call: copied while the bodies held by all senders stay within
 * MLLP_OUT_MEM_BODIES_MAX; past it only the id and the MSA-2 to expect are
 * kept, and the body is read from the spool when the message is sent. A row
 * then gone (or no longer this message) is skipped (MLLP_OUT_ABORTED, event
 * spool_row_missing), one that cannot be read goes dead: either way it is
 * not sent and the next message goes. The ACK must carry the body's MSH-10
 * (read with hl7.h); control_id (may be NULL or "") is the row's stored
 * MSH-10, used for a body without a readable MSH, and must agree with the
 * body when both are present (a body read from the spool is checked again).
 * attempts: sends already made (the row's count after a restart). Nothing is
 * sent from inside this call. Returns 0, or refuses without queueing: -EINVAL (dest out of range,
 * a NULL body with len > 0, control_id disagreeing with MSH-10, no control
 * ID at all for a release 1 destination), -EEXIST (id is queued already),
 * -EMSGSIZE (len past the destination's max_frame), -ENOMEM. */
__attribute__((warn_unused_result)) int mllp_out_enqueue(struct mllp_out *o, size_t dest,
							 int64_t id, const void *body, size_t len,
							 const char *control_id, int attempts);

/* Calls cb once when queued row id is acked, rejected or dead (or the
 * senders are freed). Several watches per row are allowed. *handle is valid
 * until cb runs or mllp_out_unwatch(). Returns 0, -ENOENT (id is not
 * queued here: it is finished already or was never queued; read the
 * spool) or -ENOMEM. */
__attribute__((warn_unused_result)) int mllp_out_watch(struct mllp_out *o, int64_t id,
						       mllp_out_watch_cb cb, void *arg,
						       struct mllp_out_watch **handle);

/* Cancels a watch whose callback has not run (a sync HTTP client that went
 * away); cb is not called. handle may be NULL. */
void mllp_out_unwatch(struct mllp_out_watch *handle);

/* Bytes of queued bodies held in memory by all senders (at most
 * MLLP_OUT_MEM_BODIES_MAX). Not counted: the body of a head read from the
 * spool for its sends, at most one per destination. */
size_t mllp_out_mem_bodies(const struct mllp_out *o);

/* For tests only: the cap of mllp_out_mem_bodies() for the bodies queued
 * from now on, instead of MLLP_OUT_MEM_BODIES_MAX. */
void mllp_out_test_set_mem_max(struct mllp_out *o, size_t bytes);

/* A snapshot of destination index dest (< cfg->ndestinations). */
void mllp_out_stats(const struct mllp_out *o, size_t dest, struct mllp_out_stats *st);

#endif
