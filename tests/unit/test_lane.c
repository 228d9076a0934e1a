/*
 * lane.c on a real event loop.
 *
 * Each test runs in its own Check fork with its own event_base. The send
 * callback only records (or, in some modes, answers at once); tests answer
 * through wrappers that also check that no send happened inside the lanes_*()
 * call. The loop runs one pass at a time (EVLOOP_NONBLOCK) where the lane
 * module promises same-pass dispatch, and EVLOOP_ONCE under a watchdog timer
 * where a retry timer must fire, so a bug fails instead of hanging.
 */
#include <check.h>
#include <errno.h>
#include <event2/event.h>
#include <limits.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mllp-bridge/lane.h"

#define N(a)	     ((int)(sizeof(a) / sizeof((a)[0])))
#define MSGS_MAX     64	    /* ids 1..MSGS_MAX-1 in the small tests */
#define KEY_BUF	     32	    /* a test key with a number in it */
#define LOG_MAX	     256    /* send order kept for the first sends */
#define LOOP_MAX     10000  /* loop turns any wait may take */
#define WAIT_MS	     2000   /* watchdog of any wait for a send */
#define MANY_KEYS    100000 /* distinct lanes in the big test */
#define MANY_CAP     1000
#define MANY_PUSH_MS 3000 /* pushing 2 * MANY_KEYS items; a linear lookup takes minutes */

#define MSG_OF(p) ((struct msg *)((char *)(p)-offsetof(struct msg, it)))

struct msg {
	int id;
	struct lane_item it; /* not first: the module must not assume it is */
	int sends;
	int in_flight; /* sent and not yet answered by the test */
	int sent_at;   /* 1-based rank of its latest send */
};

enum send_mode {
	HOLD,	      /* record only; the test answers */
	DONE_AT_ONCE, /* lanes_done() from inside the callback */
	CHAIN,	      /* lanes_done(), then push the next id on the same key */
};

static struct event_base *g_base;
static struct lanes *g_l;
static struct msg *g_m[MSGS_MAX]; /* by id; NULL once freed by a drop callback */
static int g_cb_arg;		  /* its address is the callbacks' arg */
static enum send_mode g_mode;
static int g_chain_last; /* CHAIN stops after this id */
static int g_nsent;
static int g_log[LOG_MAX]; /* ids in send order */
static int g_in_api;	   /* set around the tests' lanes_*() calls */
static int g_in_send;
static int g_bad_context; /* sends made inside a lanes_*() call or a send */
static int g_drops[MSGS_MAX];

static char g_key256[LANE_KEY_MAX + 1];
static char g_key257[LANE_KEY_MAX + 2];

/* ---- harness ---- */

static void on_send(void *arg, struct lane_item *it)
{
	struct msg *m = MSG_OF(it);

	ck_assert_ptr_eq(arg, &g_cb_arg);
	if (g_in_api || g_in_send)
		g_bad_context++;
	g_in_send = 1;
	m->sends++;
	m->in_flight = 1;
	if (g_nsent < LOG_MAX)
		g_log[g_nsent] = m->id;
	m->sent_at = ++g_nsent;
	if (g_mode != HOLD) {
		m->in_flight = 0;
		lanes_done(g_l, it);
	}
	if (g_mode == CHAIN && m->id < g_chain_last)
		ck_assert_int_eq(lanes_push(g_l, &g_m[m->id + 1]->it, "chain", NULL, m->id + 1), 0);
	g_in_send = 0;
}

static void on_drop(void *arg, struct lane_item *it)
{
	struct msg *m = MSG_OF(it);

	ck_assert_ptr_eq(arg, &g_cb_arg);
	ck_assert(m->id > 0 && m->id < MSGS_MAX);
	g_drops[m->id]++;
	g_m[m->id] = NULL;
	free(m); /* ASan sees any later touch by the module */
}

static void start(unsigned cap)
{
	g_base = event_base_new();
	ck_assert_ptr_nonnull(g_base);
	ck_assert_int_eq(lanes_new(g_base, cap, on_send, &g_cb_arg, &g_l), 0);
	for (int i = 0; i < MSGS_MAX; i++) {
		g_m[i] = calloc(1, sizeof(*g_m[i]));
		ck_assert_ptr_nonnull(g_m[i]);
		g_m[i]->id = i;
	}
}

static void setup(void)
{
	g_mode = HOLD;
	g_nsent = 0;
	g_bad_context = 0;
	memset(g_drops, 0, sizeof(g_drops));
}

static void teardown(void)
{
	lanes_free(g_l, NULL);
	g_l = NULL;
	for (int i = 0; i < MSGS_MAX; i++) {
		free(g_m[i]);
		g_m[i] = NULL;
	}
	if (g_base)
		event_base_free(g_base);
	g_base = NULL;
	ck_assert_int_eq(g_bad_context, 0);
}

/* A lanes_*() call made by a test: it must never send by itself. */
#define API(call)                                                                                  \
	do {                                                                                       \
		int n_ = g_nsent;                                                                  \
		g_in_api = 1;                                                                      \
		call;                                                                              \
		g_in_api = 0;                                                                      \
		ck_assert_msg(g_nsent == n_, "%s sent from inside the call", #call);               \
	} while (0)

static void push(int id, const char *key, const char *key2, int64_t seq)
{
	int rc = 0;

	API(rc = lanes_push(g_l, &g_m[id]->it, key, key2, seq));
	ck_assert_msg(rc == 0, "push %d: %d", id, rc);
}

static void done(int id)
{
	ck_assert_msg(g_m[id]->in_flight, "%d answered but not in flight", id);
	g_m[id]->in_flight = 0;
	API(lanes_done(g_l, &g_m[id]->it));
}

static void retry(int id, uint64_t ms)
{
	ck_assert_msg(g_m[id]->in_flight, "%d retried but not in flight", id);
	g_m[id]->in_flight = 0;
	API(lanes_retry(g_l, &g_m[id]->it, ms));
}

static struct lanes_stats stats(void)
{
	struct lanes_stats st;

	memset(&st, 0xa5, sizeof(st)); /* a field left unset shows */
	lanes_stats(g_l, &st);
	return st;
}

/* One loop pass, without waiting: the module dispatches all it can in the
 * pass where the work became possible. */
static void pump(void)
{
	ck_assert_int_ne(event_base_loop(g_base, EVLOOP_ONCE | EVLOOP_NONBLOCK), -1);
}

static void on_watchdog(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	*(int *)arg = 1;
}

/* Runs the loop until n sends in all or ms have passed; true if n. */
static int run_until(int n, int ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	int fired = 0;
	struct event *wd = evtimer_new(g_base, on_watchdog, &fired);

	ck_assert_ptr_nonnull(wd);
	ck_assert_int_eq(evtimer_add(wd, &tv), 0);
	for (int i = 0; i < LOOP_MAX && !fired && g_nsent < n; i++)
		ck_assert_int_ne(event_base_loop(g_base, EVLOOP_ONCE), -1);
	event_free(wd);
	return g_nsent >= n;
}

static void idle_for(int ms)
{
	ck_assert(!run_until(INT_MAX, ms));
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int count_in_flight(void)
{
	int n = 0;

	for (int i = 1; i < MSGS_MAX; i++)
		n += g_m[i] && g_m[i]->in_flight;
	return n;
}

static int oldest_in_flight(void)
{
	int best = 0;

	for (int i = 1; i < MSGS_MAX; i++)
		if (g_m[i] && g_m[i]->in_flight && (!best || g_m[i]->sent_at < g_m[best]->sent_at))
			best = i;
	return best;
}

/* Answers sends oldest first until nothing is queued, waiting for retry
 * timers when nothing is in flight. */
static void drain(void)
{
	for (int turn = 0; turn < LOOP_MAX; turn++) {
		struct lanes_stats st;
		int id;

		pump();
		if ((id = oldest_in_flight())) {
			done(id);
			continue;
		}
		st = stats();
		if (st.queued == 0)
			return;
		ck_assert_msg(st.retrying > 0, "stalled: %zu queued, none in flight or retrying",
			      st.queued);
		ck_assert_msg(run_until(g_nsent + 1, WAIT_MS), "retry never sent");
	}
	ck_abort_msg("drain: not empty after %d turns", LOOP_MAX);
}

static void assert_empty(uint64_t sent)
{
	struct lanes_stats st = stats();

	ck_assert_uint_eq(st.lanes, 0);
	ck_assert_uint_eq(st.queued, 0);
	ck_assert_uint_eq(st.in_flight, 0);
	ck_assert_uint_eq(st.retrying, 0);
	ck_assert_uint_eq(st.sent, sent);
	ck_assert_int_eq(g_nsent, (int)sent);
}

/* ---- send order ---- */

struct push_spec {
	int id; /* 0 ends a list */
	const char *key, *key2;
	int64_t seq;
};

struct order_case {
	const char *name;
	unsigned cap;
	struct push_spec pre[6];  /* pushed, then one loop pass */
	int retry_first;	  /* then the oldest in flight retries at once; 2: and one more
				   * loop pass, in which its retry comes due */
	struct push_spec post[8]; /* then pushed */
	int sends[12];		  /* ids in send order when drained oldest first; 0 ends */
};

static const struct order_case order_cases[] = {
    {"a lane is a FIFO",
     4,
     {{0}},
     0,
     {{1, "a", NULL, 1}, {2, "a", NULL, 2}, {3, "a", NULL, 3}, {4, "a", NULL, 4}},
     {1, 2, 3, 4}},
    {"lanes take turns in readiness order",
     1,
     {{0}},
     0,
     {{1, "a", NULL, 1},
      {2, "a", NULL, 2},
      {3, "b", NULL, 3},
      {4, "b", NULL, 4},
      {5, "c", NULL, 5},
      {6, "c", NULL, 6}},
     {1, 3, 5, 2, 4, 6}},
    {"a smaller seq is queued first",
     1,
     {{0}},
     0,
     {{1, "a", NULL, 20}, {2, "a", NULL, 30}, {3, "a", NULL, 10}},
     {3, 1, 2}},
    {"seqs out of order are sorted",
     1,
     {{0}},
     0,
     {{1, "a", NULL, 30}, {2, "a", NULL, 10}, {3, "a", NULL, 20}},
     {2, 3, 1}},
    {"equal seqs keep push order",
     1,
     {{0}},
     0,
     {{1, "a", NULL, 5}, {2, "a", NULL, 5}, {3, "a", NULL, 5}},
     {1, 2, 3}},
    {"a replay waits for the in-flight head",
     1,
     {{1, "a", NULL, 10}, {2, "a", NULL, 20}},
     0,
     {{3, "a", NULL, 5}},
     {1, 3, 2}},
    {"a replay waits for a retrying head",
     1,
     {{1, "a", NULL, 10}, {2, "a", NULL, 20}},
     1,
     {{3, "a", NULL, 5}},
     {1, 1, 3, 2}},
    /* The retry came due while another lane held the only slot: the head
     * waits to be sent again, and it was sent before: still not passed. */
    {"a replay waits for a head whose retry is due",
     1,
     {{1, "a", NULL, 10}, {2, "a", NULL, 20}, {9, "b", NULL, 1}},
     2,
     {{3, "a", NULL, 5}},
     {1, 9, 1, 3, 2}},
    {"a replay behind a lone in-flight head",
     1,
     {{1, "a", NULL, 10}},
     0,
     {{2, "a", NULL, 5}},
     {1, 2}},
    {"a replay goes between queued items",
     1,
     {{1, "a", NULL, 10}, {2, "a", NULL, 20}, {3, "a", NULL, 30}},
     0,
     {{4, "a", NULL, 25}},
     {1, 2, 4, 3}},
    {"a two-lane item waits for its second head",
     4,
     {{1, "b", NULL, 1}},
     0,
     {{2, "a", "b", 2}, {3, "a", NULL, 3}, {4, "c", NULL, 4}},
     {1, 4, 2, 3}},
    {"a two-lane item is ordered in both lanes",
     4,
     {{0}},
     0,
     {{1, "a", NULL, 10}, {2, "b", NULL, 10}, {3, "a", "b", 5}},
     {3, 1, 2}},
    {"key2 equal to key is one lane", 4, {{0}}, 0, {{1, "a", "a", 1}, {2, "a", NULL, 2}}, {1, 2}},
    {"an empty key2 is one lane", 1, {{0}}, 0, {{1, "a", "", 1}, {2, "b", NULL, 2}}, {1, 2}},
};

static void push_list(const struct push_spec *p, int max)
{
	for (int i = 0; i < max && p[i].id; i++)
		push(p[i].id, p[i].key, p[i].key2, p[i].seq);
}

START_TEST(send_order)
{
	const struct order_case *c = &order_cases[_i];
	int n = 0;

	start(c->cap);
	push_list(c->pre, N(c->pre));
	pump();
	if (c->retry_first) {
		ck_assert_msg(oldest_in_flight(), "%s: nothing in flight to retry", c->name);
		retry(oldest_in_flight(), 0);
		if (c->retry_first == 2)
			pump();
	}
	push_list(c->post, N(c->post));
	drain();
	while (n < N(c->sends) && c->sends[n])
		n++;
	ck_assert_msg(g_nsent == n, "%s: %d sends, want %d", c->name, g_nsent, n);
	for (int i = 0; i < n; i++)
		ck_assert_msg(g_log[i] == c->sends[i], "%s: send %d is %d, want %d", c->name, i,
			      g_log[i], c->sends[i]);
	assert_empty((uint64_t)n);
}
END_TEST

/* ---- the cap ---- */

static const struct {
	int lanes, per_lane;
	unsigned cap;
} cap_cases[] = {{5, 2, 3}, {3, 2, 5}, {1, 3, 4}, {10, 1, 1}, {8, 2, 8}, {6, 3, 6}};

START_TEST(parallel_up_to_cap)
{
	int lanes = cap_cases[_i].lanes, per = cap_cases[_i].per_lane;
	int want = lanes < (int)cap_cases[_i].cap ? lanes : (int)cap_cases[_i].cap;
	char key[KEY_BUF];
	int lane_busy[MSGS_MAX] = {0};

	ck_assert_int_lt(lanes * per, MSGS_MAX);
	start(cap_cases[_i].cap);
	for (int k = 0; k < per; k++)
		for (int j = 0; j < lanes; j++) {
			snprintf(key, sizeof(key), "lane-%d", j);
			push(1 + k * lanes + j, key, NULL, 1 + k * lanes + j);
		}
	ck_assert_uint_eq(stats().lanes, (size_t)lanes);
	ck_assert_int_eq(g_nsent, 0);
	pump();
	pump(); /* a second pass sends nothing more */
	ck_assert_int_eq(g_nsent, want);
	ck_assert_uint_eq(stats().in_flight, (unsigned)want);
	ck_assert_int_eq(count_in_flight(), want);
	for (int i = 0; i < g_nsent; i++) {
		int lane = (g_log[i] - 1) % lanes;

		ck_assert_msg(!lane_busy[lane], "two in flight in lane %d", lane);
		lane_busy[lane] = 1;
	}
	drain();
	for (int i = 1; i <= lanes * per; i++)
		ck_assert_int_eq(g_m[i]->sends, 1);
	assert_empty((uint64_t)(lanes * per));
}
END_TEST

START_TEST(cap_change)
{
	start(1);
	for (int i = 1; i <= 5; i++) {
		char key[KEY_BUF];

		snprintf(key, sizeof(key), "k%d", i);
		push(i, key, NULL, i);
	}
	pump();
	ck_assert_int_eq(g_nsent, 1);
	API(lanes_set_max_in_flight(g_l, 3));
	pump();
	ck_assert_int_eq(g_nsent, 3);
	ck_assert_uint_eq(stats().in_flight, 3);

	/* Lowered below what is in flight: nothing new until under the cap. */
	API(lanes_set_max_in_flight(g_l, 1));
	done(1);
	pump();
	done(2);
	pump();
	ck_assert_int_eq(g_nsent, 3);
	ck_assert_uint_eq(stats().in_flight, 1);
	done(3);
	pump();
	ck_assert_int_eq(g_nsent, 4);
	ck_assert_uint_eq(stats().in_flight, 1);
	drain();
	assert_empty(5);
}
END_TEST

/* ---- retries ---- */

static const struct {
	uint64_t delay_ms;
	int check_blocked; /* long enough to see the lane wait */
} retry_cases[] = {{0, 0}, {5, 0}, {50, 1}};

START_TEST(retry_keeps_order_and_frees_the_slot)
{
	uint64_t delay = retry_cases[_i].delay_ms;
	int64_t t0;

	start(1);
	push(1, "a", NULL, 1);
	push(2, "a", NULL, 2);
	push(3, "b", NULL, 3);
	pump();
	ck_assert_int_eq(g_nsent, 1);
	ck_assert_int_eq(g_log[0], 1);

	t0 = now_ms();
	retry(1, delay);
	ck_assert_uint_eq(stats().in_flight, 0);
	ck_assert_uint_eq(stats().retrying, 1);
	ck_assert_uint_eq(stats().queued, 3);
	pump(); /* the freed slot goes to lane b, not to 2 behind the retrying head */
	ck_assert_int_ge(g_nsent, 2);
	ck_assert_int_eq(g_log[1], 3);
	done(3);
	if (retry_cases[_i].check_blocked) {
		pump();
		ck_assert_int_eq(g_nsent, 2);
		ck_assert_uint_eq(stats().retrying, 1);
	}
	ck_assert_msg(run_until(3, WAIT_MS), "no resend after %llu ms", (unsigned long long)delay);
	/* One millisecond of slack: libevent times the retry from its loop's
	 * cached clock, which may be a little older than the moment t0 was
	 * read here (seen under ASan: 49 ms for 50). */
	ck_assert_int_ge(now_ms() - t0 + 1, (int64_t)delay);
	ck_assert_int_eq(g_log[2], 1);
	ck_assert_int_eq(g_m[1]->sends, 2);
	ck_assert_int_eq(g_m[2]->sends, 0);
	ck_assert_uint_eq(stats().retrying, 0);
	ck_assert_uint_eq(stats().sent, 3);
	drain();
	ck_assert_int_eq(g_log[3], 2);
	assert_empty(4);
}
END_TEST

/* lanes_done() on a retrying item: no resend, and its lanes move on. */
static const struct {
	const char *key2;
} cancel_cases[] = {{NULL}, {"b"}};

START_TEST(done_cancels_retry)
{
	start(4);
	push(1, "a", cancel_cases[_i].key2, 1);
	push(2, "a", NULL, 2);
	push(3, "b", NULL, 3);
	pump();
	ck_assert_int_eq(g_m[1]->sends, 1);
	retry(1, 20);
	ck_assert_uint_eq(stats().retrying, 1);
	g_m[1]->in_flight = 1; /* the test answers the retrying item */
	done(1);
	ck_assert_uint_eq(stats().retrying, 0);
	pump();
	ck_assert_int_eq(g_m[2]->sends, 1);
	ck_assert_int_eq(g_m[3]->sends, 1);
	idle_for(60);
	ck_assert_int_eq(g_m[1]->sends, 1);
	drain();
	assert_empty(3);
}
END_TEST

/* ---- two lanes ---- */

START_TEST(two_lane_item_blocks_both)
{
	start(8);
	push(1, "p1", NULL, 10);
	push(2, "p2", NULL, 11);
	pump();
	ck_assert_int_eq(g_nsent, 2);
	push(3, "p1", "p2", 12); /* the merge */
	pump();
	done(1);
	pump();
	ck_assert_int_eq(g_m[3]->sends, 0); /* heads p1, not p2 */
	done(2);
	pump();
	ck_assert_int_eq(g_m[3]->sends, 1);

	push(4, "p1", NULL, 13);
	push(5, "p2", NULL, 14);
	pump();
	ck_assert_int_eq(g_nsent, 3); /* both lanes held by the merge */
	ck_assert_uint_eq(stats().lanes, 2);
	ck_assert_uint_eq(stats().queued, 3);

	retry(3, 30);
	pump();
	ck_assert_int_eq(g_nsent, 3); /* still held while it waits */
	ck_assert_uint_eq(stats().retrying, 1);
	ck_assert(run_until(4, WAIT_MS));
	ck_assert_int_eq(g_log[3], 3);

	done(3);
	pump();
	ck_assert_int_eq(g_m[4]->sends, 1);
	ck_assert_int_eq(g_m[5]->sends, 1);
	drain();
	assert_empty(6);
}
END_TEST

/* ---- sends come from the loop only ---- */

START_TEST(no_send_inside_calls)
{
	start(4);
	push(1, "a", NULL, 1);
	ck_assert_int_eq(g_nsent, 0);
	ck_assert_uint_eq(stats().sent, 0);
	pump();
	ck_assert_int_eq(g_nsent, 1); /* the callback is alive */

	/* The callback answers and pushes from inside itself: every item of
	 * the chain goes in the same pass, never from a nested call. */
	g_mode = CHAIN;
	g_chain_last = 20;
	push(2, "chain", NULL, 2);
	ck_assert_int_eq(g_nsent, 1);
	pump();
	ck_assert_int_eq(g_nsent, 20);
	for (int i = 2; i <= 20; i++)
		ck_assert_int_eq(g_m[i]->sends, 1);
	ck_assert_int_eq(g_bad_context, 0);
	g_mode = HOLD;
	done(1);
	assert_empty(20);
}
END_TEST

START_TEST(lanes_freed_when_empty)
{
	start(8);
	push(1, "a", NULL, 1);
	push(2, "a", NULL, 2);
	push(3, "b", NULL, 3);
	push(4, "c", "d", 4);
	ck_assert_uint_eq(stats().lanes, 4);
	pump();
	ck_assert_int_eq(g_nsent, 3);
	done(3);
	ck_assert_uint_eq(stats().lanes, 3);
	done(4);
	ck_assert_uint_eq(stats().lanes, 1);
	done(1);
	ck_assert_uint_eq(stats().lanes, 1); /* 2 still queued */
	pump();
	done(2);
	assert_empty(4);

	push(5, "a", NULL, 5); /* a key comes back as a fresh lane */
	ck_assert_uint_eq(stats().lanes, 1);
	pump();
	ck_assert_int_eq(g_m[5]->sends, 1);
	done(5);
	assert_empty(5);
}
END_TEST

/* ---- scale ---- */

static struct msg *g_many;

static void many_key(char *buf, size_t len, int i)
{
	snprintf(buf, len, "p:feed^fac:%08x", (unsigned)i * 2654435761u);
}

START_TEST(many_keys)
{
	char key[KEY_BUF];
	int64_t t0;
	struct lanes_stats st;

	start(MANY_CAP);
	g_many = calloc(2 * MANY_KEYS, sizeof(*g_many));
	ck_assert_ptr_nonnull(g_many);
	t0 = now_ms();
	for (int i = 0; i < 2 * MANY_KEYS; i++) {
		g_many[i].id = i;
		many_key(key, sizeof(key), i % MANY_KEYS);
		ck_assert_int_eq(lanes_push(g_l, &g_many[i].it, key, NULL, i), 0);
	}
	ck_assert_int_lt(now_ms() - t0, MANY_PUSH_MS);
	st = stats();
	ck_assert_uint_eq(st.lanes, MANY_KEYS);
	ck_assert_uint_eq(st.queued, 2 * MANY_KEYS);
	ck_assert_int_eq(g_nsent, 0);

	pump();
	ck_assert_int_eq(g_nsent, MANY_CAP);
	ck_assert_uint_eq(stats().in_flight, MANY_CAP);

	/* Answer those; from then on the callback answers at once and the
	 * rest drains in one pass. */
	g_mode = DONE_AT_ONCE;
	for (int i = 0; i < 2 * MANY_KEYS; i++)
		if (g_many[i].in_flight) {
			g_many[i].in_flight = 0;
			lanes_done(g_l, &g_many[i].it);
		}
	pump();
	for (int i = 0; i < MANY_KEYS; i++) {
		ck_assert_int_eq(g_many[i].sends, 1);
		ck_assert_int_eq(g_many[i + MANY_KEYS].sends, 1);
		ck_assert_int_lt(g_many[i].sent_at, g_many[i + MANY_KEYS].sent_at);
	}
	assert_empty(2 * MANY_KEYS);
	free(g_many);
	g_many = NULL;
}
END_TEST

/* ---- lanes_free ---- */

static const struct free_case {
	const char *name;
	struct push_spec push[10];
	int pump;     /* one pass: heads go in flight */
	int retry_id; /* then this one waits to retry */
	int done_id;  /* and this one is answered before the free */
} free_cases[] = {
    {"queued only",
     {{1, "a", NULL, 1}, {2, "a", NULL, 2}, {3, "b", NULL, 3}, {4, "c", NULL, 4}},
     0,
     0,
     0},
    {"heads in flight",
     {{1, "a", NULL, 1}, {2, "a", NULL, 2}, {3, "b", NULL, 3}, {4, "b", NULL, 4}},
     1,
     0,
     0},
    {"a head waiting to retry", {{1, "a", NULL, 1}, {2, "a", NULL, 2}, {3, "b", NULL, 3}}, 1, 1, 0},
    {"two-lane items",
     {{1, "a", "b", 1},
      {2, "b", "c", 2},
      {3, "c", "a", 3},
      {4, "a", NULL, 4},
      {5, "d", "a", 5},
      {6, "b", NULL, 6},
      {7, "e", "f", 7}},
     1,
     7,
     0},
    {"an answered item is not dropped",
     {{1, "a", NULL, 1}, {2, "a", NULL, 2}, {3, "b", "a", 3}},
     1,
     0,
     1},
};

START_TEST(free_drops_each_once)
{
	const struct free_case *c = &free_cases[_i];
	int n = 0, sent;

	start(8);
	for (; n < N(c->push) && c->push[n].id; n++)
		push(c->push[n].id, c->push[n].key, c->push[n].key2, c->push[n].seq);
	if (c->pump)
		pump();
	if (c->retry_id)
		retry(c->retry_id, 20);
	if (c->done_id)
		done(c->done_id);
	ck_assert_uint_eq(stats().queued, (size_t)(n - (c->done_id != 0)));
	sent = g_nsent;
	lanes_free(g_l, on_drop);
	g_l = NULL;
	for (int i = 1; i <= n; i++)
		ck_assert_msg(g_drops[i] == (i == c->done_id ? 0 : 1), "%s: %d dropped %d times",
			      c->name, i, g_drops[i]);
	idle_for(40); /* past the retry timer */
	ck_assert_int_eq(g_nsent, sent);
}
END_TEST

/* ---- arguments ---- */

enum key_kind { K_NULL, K_EMPTY, K_A, K_B, K_256, K_257 };

static const char *key_of(enum key_kind k)
{
	static const char *fixed[] = {NULL, "", "a", "b"};

	return k == K_256 ? g_key256 : k == K_257 ? g_key257 : fixed[k];
}

static const struct {
	enum key_kind key, key2;
	int rc;
	size_t lanes;
} key_cases[] = {
    {K_NULL, K_NULL, -EINVAL, 0},
    {K_EMPTY, K_NULL, -EINVAL, 0},
    {K_257, K_NULL, -EINVAL, 0},
    {K_EMPTY, K_A, -EINVAL, 0},
    {K_A, K_257, -EINVAL, 0},
    {K_257, K_A, -EINVAL, 0},
    {K_A, K_NULL, 0, 1},
    {K_256, K_NULL, 0, 1},
    {K_A, K_256, 0, 2},
    {K_A, K_EMPTY, 0, 1},
    {K_A, K_A, 0, 1},
    {K_A, K_B, 0, 2},
};

START_TEST(key_validation)
{
	int rc = 1;

	start(1);
	API(rc = lanes_push(g_l, &g_m[1]->it, key_of(key_cases[_i].key), key_of(key_cases[_i].key2),
			    1));
	ck_assert_int_eq(rc, key_cases[_i].rc);
	ck_assert_uint_eq(stats().lanes, key_cases[_i].lanes);
	ck_assert_uint_eq(stats().queued, rc == 0);
	if (rc != 0)
		push(1, "ok", NULL, 1); /* a refused item is not pushed */
	pump();
	ck_assert_int_eq(g_m[1]->sends, 1);
	done(1);
	assert_empty(1);
}
END_TEST

START_TEST(new_rejects_bad_arguments)
{
	struct event_base *base = event_base_new();
	struct lanes *l = (struct lanes *)&g_cb_arg; /* untouched on error */

	ck_assert_ptr_nonnull(base);
	ck_assert_int_eq(lanes_new(base, 0, on_send, NULL, &l), -EINVAL);
	ck_assert_int_eq(lanes_new(NULL, 1, on_send, NULL, &l), -EINVAL);
	ck_assert_int_eq(lanes_new(base, 1, NULL, NULL, &l), -EINVAL);
	ck_assert_ptr_eq(l, (struct lanes *)&g_cb_arg);
	ck_assert_int_eq(lanes_new(base, 1, on_send, NULL, &l), 0);
	lanes_free(l, NULL);
	event_base_free(base);
}
END_TEST

/* ---- contracts a caller can break abort (assert) ---- */

#ifndef NDEBUG
START_TEST(push_twice_aborts)
{
	int rc;

	start(1);
	push(1, "a", NULL, 1);
	rc = lanes_push(g_l, &g_m[1]->it, "b", NULL, 2);
	ck_abort_msg("second push returned %d", rc);
}
END_TEST

START_TEST(done_on_queued_aborts)
{
	start(1);
	push(1, "a", NULL, 1);
	lanes_done(g_l, &g_m[1]->it);
	ck_abort_msg("lanes_done on a queued item returned");
}
END_TEST

START_TEST(retry_on_retrying_aborts)
{
	start(1);
	push(1, "a", NULL, 1);
	pump();
	retry(1, 1000);
	lanes_retry(g_l, &g_m[1]->it, 1000);
	ck_abort_msg("lanes_retry on a retrying item returned");
}
END_TEST
#endif

static Suite *lane_suite(void)
{
	Suite *s = suite_create("lane");
	TCase *tc = tcase_create("lanes");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_loop_test(tc, send_order, 0, N(order_cases));
	tcase_add_loop_test(tc, parallel_up_to_cap, 0, N(cap_cases));
	tcase_add_test(tc, cap_change);
	tcase_add_loop_test(tc, retry_keeps_order_and_frees_the_slot, 0, N(retry_cases));
	tcase_add_loop_test(tc, done_cancels_retry, 0, N(cancel_cases));
	tcase_add_test(tc, two_lane_item_blocks_both);
	tcase_add_test(tc, no_send_inside_calls);
	tcase_add_test(tc, lanes_freed_when_empty);
	tcase_add_loop_test(tc, free_drops_each_once, 0, N(free_cases));
	tcase_add_loop_test(tc, key_validation, 0, N(key_cases));
	tcase_add_test(tc, new_rejects_bad_arguments);
	suite_add_tcase(s, tc);

	tc = tcase_create("scale");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, many_keys);
	suite_add_tcase(s, tc);

#ifndef NDEBUG
	tc = tcase_create("contracts");
	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_add_test_raise_signal(tc, push_twice_aborts, SIGABRT);
	tcase_add_test_raise_signal(tc, done_on_queued_aborts, SIGABRT);
	tcase_add_test_raise_signal(tc, retry_on_retrying_aborts, SIGABRT);
	suite_add_tcase(s, tc);
#endif
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(lane_suite());
	int failed;

	memset(g_key256, 'k', LANE_KEY_MAX);
	memset(g_key257, 'k', LANE_KEY_MAX + 1);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
