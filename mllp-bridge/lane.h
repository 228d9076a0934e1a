/*
 * Lanes: keyed FIFOs with at most one item in flight each, running in
 * parallel up to a shared in-flight cap. The forwarder keeps one set per
 * integration (a lane per order key); the outbound MLLP senders keep one per
 * destination. Order inside a lane holds across retries: the head stays the
 * head until lanes_done().
 *
 * An item may belong to two lanes (a patient merge waits for both
 * patients): it is sent only when it heads both, and it holds both while it
 * is in flight or waiting to retry.
 *
 * Items are embedded in the caller's own structure (container_of style);
 * the lane module owns the fields of struct lane_item while the item is
 * pushed, and never frees an item.
 *
 * The send callback never runs inside a lanes_*() call: work that becomes
 * possible is picked up from the event loop, in the same loop pass. So the
 * callback may call lanes_done()/lanes_retry()/lanes_push() freely (not
 * lanes_free()). Ready heads are sent in the order they became ready, so
 * lanes take turns at the cap.
 *
 * Lanes exist only while they hold items: memory follows the live lanes,
 * and a key is looked up in O(1) (hash table). Each lane carries its retry
 * timer, so lanes_retry() cannot fail.
 */
#ifndef LANE_H
#define LANE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

struct event_base;
struct lanes;
struct lane;

#define LANE_KEY_MAX 256 /* bytes of a key, NUL excluded */

/* Owned by the lane module between lanes_push() and lanes_done()/the drop
 * callback of lanes_free(). Zero it before the first push; lanes_done() and
 * lanes_free() hand it back zeroed, ready to be pushed again. Pushing an item
 * that is still pushed is a bug (assert). */
struct lane_item {
	TAILQ_ENTRY(lane_item) link[2];
	struct lane *lane[2];
	int64_t seq; /* position: items are kept in seq order in each lane */
	int nlanes;  /* 1 or 2 */
	int state;   /* internal: queued, in flight, waiting to retry */
};

/* Called to send `it`, which now heads its lane(s) and holds a slot of the
 * cap. The caller answers later with lanes_done() or lanes_retry(). */
typedef void (*lanes_send_cb)(void *arg, struct lane_item *it);

/* Called by lanes_free() for every item still pushed, with lanes_new()'s
 * arg; the item may be freed from here. */
typedef void (*lanes_drop_cb)(void *arg, struct lane_item *it);

struct lanes_stats {
	size_t lanes;	    /* lanes that hold at least one item */
	size_t queued;	    /* items pushed and not done, in flight included */
	unsigned in_flight; /* items handed to the send callback, not yet answered */
	size_t retrying;    /* heads waiting for their retry timer */
	uint64_t sent;	    /* send callbacks made (a retry counts again) */
};

/* A set of lanes on base with at most max_in_flight items in flight at once
 * (>= 1). Returns 0, -EINVAL (also for a NULL base, send or out) or -ENOMEM;
 * *out is set only on success. */
__attribute__((warn_unused_result)) int lanes_new(struct event_base *base, unsigned max_in_flight,
						  lanes_send_cb send, void *arg,
						  struct lanes **out);

/* Frees every lane; drop (if not NULL) is called once for each item still
 * pushed (a two-lane item once), in no particular order, queued, in flight
 * or waiting to retry alike. No send callback runs after this. Not from
 * inside the send callback (assert). l may be NULL. */
void lanes_free(struct lanes *l, lanes_drop_cb drop);

/* Appends it to lane key (and to lane key2 when key2 is neither NULL, "" nor
 * equal to key), in seq order: normally seq grows and the item goes last; an
 * item with a smaller seq than items already queued (a replayed dead letter)
 * goes before them, but never before a head that is in flight or waiting to
 * retry. Equal seqs keep push order. A two-lane item is placed so in each
 * lane. Returns 0, -EINVAL (key NULL or empty, or key or key2 longer than
 * LANE_KEY_MAX) or -ENOMEM; on error the item is not pushed. */
__attribute__((warn_unused_result)) int lanes_push(struct lanes *l, struct lane_item *it,
						   const char *key, const char *key2, int64_t seq);

/* The in-flight (or retry-waiting) item is finished: it leaves its lanes,
 * and the next item of each may be sent. A pending retry is cancelled. The
 * item is the caller's again. On any other item: a bug (assert). */
void lanes_done(struct lanes *l, struct lane_item *it);

/* The in-flight item stays at the head of its lanes and is sent again after
 * delay_ms (at most a day), when a slot of the cap is free; meanwhile its
 * lanes send nothing, and it holds no slot of the cap. On an item not in
 * flight: a bug (assert). */
void lanes_retry(struct lanes *l, struct lane_item *it, uint64_t delay_ms);

/* Changes the cap (>= 1, assert); raising it lets waiting lanes go (from
 * the loop, as always). Lowering it recalls nothing: new sends wait until
 * fewer than the new cap are in flight. */
void lanes_set_max_in_flight(struct lanes *l, unsigned max_in_flight);

/* A snapshot of the counters into *st; never fails. */
void lanes_stats(const struct lanes *l, struct lanes_stats *st);

#endif
