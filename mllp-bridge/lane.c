/*
 * Lanes: keyed FIFOs, one item in flight each, an in-flight cap (lane.h).
 *
 * Lanes live in a chained hash table (FNV-1a, power-of-two buckets, grown at
 * load factor 1 and shrunk below 1/4) and are freed as soon as they hold no
 * item, so memory follows the live lanes, not the keys ever seen.
 *
 * An item links into each of its lanes through link[i], where lane[i] is
 * that lane, so one list may chain its items through link[0] for some and
 * link[1] for others (a two-lane item is second in some lane). The q_*()
 * helpers below pick the right entry per item; only TAILQ_FIRST, TAILQ_LAST
 * and TAILQ_PREV are used directly, as they never dereference a field of a
 * neighbour.
 *
 * Only a head can be in flight or waiting to retry (inserts never go before
 * such a head), so an item may be sent exactly when it is queued and heads
 * all its lanes. Such items wait in the ready FIFO, represented by their
 * first lane; an entry is checked again when it leaves the FIFO, so a head
 * displaced by a replayed item needs no unlinking. Sends happen only from
 * the dispatch event, never inside a lanes_*() call.
 */
#include <assert.h>
#include <errno.h>
#include <event2/event.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "mllp-bridge/lane.h"

#define LANE_BUCKETS_MIN  16u			   /* power of two */
#define LANE_DELAY_MAX_MS (24ull * 60 * 60 * 1000) /* lanes_retry() caps its delay at a day */

/* ITEM_DUE: a head whose retry time came, waiting for its dispatch. It
 * may go like a queued item but, having been sent, is never passed. */
enum { ITEM_IDLE = 0, ITEM_QUEUED, ITEM_IN_FLIGHT, ITEM_RETRYING, ITEM_DUE };

TAILQ_HEAD(lane_q, lane_item);

struct lane {
	struct lane *hnext; /* hash chain */
	uint64_t hash;
	struct lanes *set;
	struct lane_q items; /* seq order; the head may be in flight */
	TAILQ_ENTRY(lane) ready;
	bool in_ready;
	struct event *timer; /* retries the head when this is its lane[0] */
	size_t keylen;
	char key[];
};

struct lanes {
	struct event_base *base;
	struct event *dispatch;
	lanes_send_cb send;
	void *arg;
	unsigned max_in_flight;
	bool dispatching; /* inside dispatch_cb: it loops until done, no re-arm */
	struct lane **buckets;
	size_t nbuckets;
	size_t nlanes;
	TAILQ_HEAD(, lane) ready;
	size_t queued;
	unsigned in_flight;
	size_t retrying;
	uint64_t sent;
};

/* ---- an item's position in one of its lanes ---- */

static int q_slot(const struct lane_item *it, const struct lane *ln)
{
	assert(it->lane[0] == ln || (it->nlanes == 2 && it->lane[1] == ln));
	return it->lane[0] == ln ? 0 : 1;
}

static struct lane_item *q_next(const struct lane_item *it, const struct lane *ln)
{
	return it->link[q_slot(it, ln)].tqe_next;
}

static struct lane_item *q_prev(const struct lane_item *it, const struct lane *ln)
{
	return TAILQ_PREV(it, lane_q, link[q_slot(it, ln)]);
}

/* Links it after pos, or first when pos is NULL. */
static void q_insert_after(struct lane *ln, struct lane_item *pos, struct lane_item *it)
{
	int s = q_slot(it, ln);
	struct lane_item **nextp =
	    pos ? &pos->link[q_slot(pos, ln)].tqe_next : &ln->items.tqh_first;
	struct lane_item *next = *nextp;

	it->link[s].tqe_next = next;
	it->link[s].tqe_prev = nextp;
	if (next)
		next->link[q_slot(next, ln)].tqe_prev = &it->link[s].tqe_next;
	else
		ln->items.tqh_last = &it->link[s].tqe_next;
	*nextp = it;
}

static void q_remove(struct lane *ln, struct lane_item *it)
{
	int s = q_slot(it, ln);
	struct lane_item *next = it->link[s].tqe_next;

	if (next)
		next->link[q_slot(next, ln)].tqe_prev = it->link[s].tqe_prev;
	else
		ln->items.tqh_last = it->link[s].tqe_prev;
	*it->link[s].tqe_prev = next;
}

/* Seq order, stable for equal seqs. Scans from the tail: a growing seq costs
 * one comparison. A head that was sent (in flight, retrying, due) is never
 * passed. */
static void q_insert_ordered(struct lane *ln, struct lane_item *it)
{
	struct lane_item *pos = TAILQ_LAST(&ln->items, lane_q);

	while (pos && pos->seq > it->seq && pos->state == ITEM_QUEUED)
		pos = q_prev(pos, ln);
	q_insert_after(ln, pos, it);
}

/* ---- the hash table ---- */

static uint64_t key_hash(const char *key, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)key[i];
		h *= 0x100000001b3ull;
	}
	return h ^ (h >> 32); /* the bucket index uses the low bits */
}

/* Failure keeps the old table: lookups get slower, never wrong. */
static void table_resize(struct lanes *l, size_t nbuckets)
{
	struct lane **b = calloc(nbuckets, sizeof(*b));

	if (!b)
		return;
	for (size_t i = 0; i < l->nbuckets; i++) {
		struct lane *ln, *next;

		for (ln = l->buckets[i]; ln; ln = next) {
			next = ln->hnext;
			ln->hnext = b[ln->hash & (nbuckets - 1)];
			b[ln->hash & (nbuckets - 1)] = ln;
		}
	}
	free(l->buckets);
	l->buckets = b;
	l->nbuckets = nbuckets;
}

static struct lane *lane_find(const struct lanes *l, const char *key, size_t len, uint64_t h)
{
	struct lane *ln = l->buckets[h & (l->nbuckets - 1)];

	for (; ln; ln = ln->hnext)
		if (ln->hash == h && ln->keylen == len && memcmp(ln->key, key, len) == 0)
			return ln;
	return NULL;
}

/* ---- readiness and dispatch ---- */

static bool item_eligible(const struct lane_item *it)
{
	if (it->state != ITEM_QUEUED && it->state != ITEM_DUE)
		return false;
	for (int i = 0; i < it->nlanes; i++)
		if (TAILQ_FIRST(&it->lane[i]->items) != it)
			return false;
	return true;
}

/* Queues the head of ln for sending if it may go. A lane already in the
 * FIFO keeps its place: its entry is checked when it comes out. */
static void lane_kick(struct lanes *l, struct lane *ln)
{
	struct lane_item *it = TAILQ_FIRST(&ln->items);

	if (!it || !item_eligible(it) || it->lane[0]->in_ready)
		return;
	TAILQ_INSERT_TAIL(&l->ready, it->lane[0], ready);
	it->lane[0]->in_ready = true;
}

/* Schedules a dispatch in this loop pass when something may be sent. */
static void lanes_arm(struct lanes *l)
{
	if (!l->dispatching && l->in_flight < l->max_in_flight && !TAILQ_EMPTY(&l->ready))
		event_active(l->dispatch, EV_TIMEOUT, 0);
}

/* Sends ready heads in readiness order until the cap. The send callback
 * may answer at once; the loop sees its effects on the next turn. */
static void dispatch_cb(evutil_socket_t fd, short what, void *arg)
{
	struct lanes *l = arg;

	(void)fd;
	(void)what;
	l->dispatching = true;
	while (l->in_flight < l->max_in_flight && !TAILQ_EMPTY(&l->ready)) {
		struct lane *ln = TAILQ_FIRST(&l->ready);
		struct lane_item *it = TAILQ_FIRST(&ln->items);

		TAILQ_REMOVE(&l->ready, ln, ready);
		ln->in_ready = false;
		assert(it != NULL); /* empty lanes are freed, and leave the FIFO then */
		if (!item_eligible(it))
			continue; /* displaced or already sent: a later kick requeues */
		it->state = ITEM_IN_FLIGHT;
		l->in_flight++;
		l->sent++;
		l->send(l->arg, it);
	}
	l->dispatching = false;
}

/* The retry timer of ln: its head, of which ln is lane[0], may go again. */
static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct lane *ln = arg;
	struct lanes *l = ln->set;
	struct lane_item *it = TAILQ_FIRST(&ln->items);

	(void)fd;
	(void)what;
	assert(it && it->state == ITEM_RETRYING && it->lane[0] == ln);
	it->state = ITEM_DUE;
	l->retrying--;
	lane_kick(l, ln);
	lanes_arm(l);
}

/* ---- lane life ---- */

/* The timer comes with the lane so that lanes_retry() cannot fail. */
static struct lane *lane_create(struct lanes *l, const char *key, size_t len, uint64_t h)
{
	struct lane *ln = calloc(1, sizeof(*ln) + len + 1);

	if (!ln)
		return NULL;
	ln->timer = evtimer_new(l->base, retry_cb, ln);
	if (!ln->timer) {
		free(ln);
		return NULL;
	}
	ln->hash = h;
	ln->set = l;
	TAILQ_INIT(&ln->items);
	ln->keylen = len;
	memcpy(ln->key, key, len);
	ln->hnext = l->buckets[h & (l->nbuckets - 1)];
	l->buckets[h & (l->nbuckets - 1)] = ln;
	if (++l->nlanes > l->nbuckets)
		table_resize(l, l->nbuckets * 2);
	return ln;
}

/* Frees an empty lane. */
static void lane_destroy(struct lanes *l, struct lane *ln)
{
	struct lane **pp = &l->buckets[ln->hash & (l->nbuckets - 1)];

	assert(TAILQ_EMPTY(&ln->items));
	while (*pp != ln)
		pp = &(*pp)->hnext;
	*pp = ln->hnext;
	if (ln->in_ready)
		TAILQ_REMOVE(&l->ready, ln, ready);
	event_free(ln->timer);
	free(ln);
	if (--l->nlanes < l->nbuckets / 4 && l->nbuckets > LANE_BUCKETS_MIN)
		table_resize(l, l->nbuckets / 2);
}

/* The lane of key, created empty if needed; NULL when out of memory. */
static struct lane *lane_get(struct lanes *l, const char *key, size_t len)
{
	uint64_t h = key_hash(key, len);
	struct lane *ln = lane_find(l, key, len, h);

	return ln ? ln : lane_create(l, key, len, h);
}

/* ---- the API ---- */

int lanes_new(struct event_base *base, unsigned max_in_flight, lanes_send_cb send, void *arg,
	      struct lanes **out)
{
	struct lanes *l;

	if (!base || !send || !out || max_in_flight < 1)
		return -EINVAL;
	l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->buckets = calloc(LANE_BUCKETS_MIN, sizeof(*l->buckets));
	l->dispatch = event_new(base, -1, 0, dispatch_cb, l);
	if (!l->buckets || !l->dispatch) {
		if (l->dispatch)
			event_free(l->dispatch);
		free(l->buckets);
		free(l);
		return -ENOMEM;
	}
	l->base = base;
	l->send = send;
	l->arg = arg;
	l->max_in_flight = max_in_flight;
	l->nbuckets = LANE_BUCKETS_MIN;
	TAILQ_INIT(&l->ready);
	*out = l;
	return 0;
}

/* Drops the items of ln. A two-lane item is first unlinked from its other
 * lane, so no list ever leads to an item the drop callback has freed. */
static void lane_drop_items(struct lanes *l, struct lane *ln, lanes_drop_cb drop)
{
	struct lane_item *it, *next;

	for (it = TAILQ_FIRST(&ln->items); it; it = next) {
		next = q_next(it, ln);
		if (it->nlanes == 2)
			q_remove(it->lane[0] == ln ? it->lane[1] : it->lane[0], it);
		memset(it, 0, sizeof(*it));
		if (drop)
			drop(l->arg, it);
	}
	TAILQ_INIT(&ln->items);
}

void lanes_free(struct lanes *l, lanes_drop_cb drop)
{
	if (!l)
		return;
	assert(!l->dispatching); /* not from the send callback */
	for (size_t i = 0; i < l->nbuckets; i++) {
		struct lane *ln;

		while ((ln = l->buckets[i]) != NULL) {
			lane_drop_items(l, ln, drop);
			l->buckets[i] = ln->hnext;
			event_free(ln->timer);
			free(ln);
		}
	}
	event_free(l->dispatch);
	free(l->buckets);
	free(l);
}

/* Length of a usable key in *len, or false. */
static bool key_ok(const char *key, size_t *len)
{
	if (!key)
		return false;
	*len = strnlen(key, LANE_KEY_MAX + 1);
	return *len >= 1 && *len <= LANE_KEY_MAX;
}

int lanes_push(struct lanes *l, struct lane_item *it, const char *key, const char *key2,
	       int64_t seq)
{
	size_t len, len2 = 0;
	struct lane *a, *b = NULL;

	assert(it->state == ITEM_IDLE); /* pushed twice, or not zeroed */
	if (!key_ok(key, &len))
		return -EINVAL;
	if (key2 && (*key2 == '\0' || strcmp(key2, key) == 0))
		key2 = NULL;
	if (key2 && !key_ok(key2, &len2))
		return -EINVAL;
	a = lane_get(l, key, len);
	if (!a)
		return -ENOMEM;
	if (key2 && !(b = lane_get(l, key2, len2))) {
		if (TAILQ_EMPTY(&a->items))
			lane_destroy(l, a);
		return -ENOMEM;
	}
	it->lane[0] = a;
	it->lane[1] = b;
	it->nlanes = b ? 2 : 1;
	it->seq = seq;
	it->state = ITEM_QUEUED;
	q_insert_ordered(a, it);
	if (b)
		q_insert_ordered(b, it);
	l->queued++;
	lane_kick(l, a);
	if (b)
		lane_kick(l, b);
	lanes_arm(l);
	return 0;
}

void lanes_done(struct lanes *l, struct lane_item *it)
{
	struct lane *ln[2] = {it->lane[0], it->lane[1]};
	int n = it->nlanes;

	assert(it->state == ITEM_IN_FLIGHT || it->state == ITEM_RETRYING);
	if (it->state == ITEM_RETRYING) {
		evtimer_del(ln[0]->timer);
		l->retrying--;
	} else {
		l->in_flight--;
	}
	for (int i = 0; i < n; i++) {
		assert(TAILQ_FIRST(&ln[i]->items) == it);
		q_remove(ln[i], it);
	}
	memset(it, 0, sizeof(*it));
	l->queued--;
	for (int i = 0; i < n; i++) {
		if (TAILQ_EMPTY(&ln[i]->items))
			lane_destroy(l, ln[i]);
		else
			lane_kick(l, ln[i]);
	}
	lanes_arm(l);
}

void lanes_retry(struct lanes *l, struct lane_item *it, uint64_t delay_ms)
{
	struct timeval tv;

	assert(it->state == ITEM_IN_FLIGHT);
	if (delay_ms > LANE_DELAY_MAX_MS)
		delay_ms = LANE_DELAY_MAX_MS;
	tv.tv_sec = (time_t)(delay_ms / 1000);
	tv.tv_usec = (suseconds_t)(delay_ms % 1000 * 1000);
	l->in_flight--;
	it->state = ITEM_RETRYING;
	l->retrying++;
	if (evtimer_add(it->lane[0]->timer, &tv) < 0) {
		/* Only a broken base fails here: resend now rather than stall the lane. */
		it->state = ITEM_DUE;
		l->retrying--;
		lane_kick(l, it->lane[0]);
	}
	lanes_arm(l);
}

void lanes_set_max_in_flight(struct lanes *l, unsigned max_in_flight)
{
	assert(max_in_flight >= 1);
	l->max_in_flight = max_in_flight ? max_in_flight : 1;
	lanes_arm(l);
}

void lanes_stats(const struct lanes *l, struct lanes_stats *st)
{
	st->lanes = l->nlanes;
	st->queued = l->queued;
	st->in_flight = l->in_flight;
	st->retrying = l->retrying;
	st->sent = l->sent;
}
