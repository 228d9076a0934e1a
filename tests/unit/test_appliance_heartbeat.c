/*
 * The TCP heartbeat against listeners on 127.0.0.1 ephemeral ports, with a
 * hand-built struct cfg and a small heartbeat_ms, on a libevent loop.
 */
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "appliance/heartbeat.h"
#include "mllp-bridge/config.h"

#define PERIOD_MS    50
#define LOOP_LIMIT_S 2
#define DESTS_MAX    4

static struct event_base *base;
static struct cfg cfg;
static struct cfg_destination dests[DESTS_MAX];
static int allow[DESTS_MAX]; /* what allowed() answers, per destination */
static int asked[DESTS_MAX]; /* how often it was asked */
static int unknown_asks;

static void setup(void)
{
	base = event_base_new();
	ck_assert_ptr_nonnull(base);
	memset(&cfg, 0, sizeof(cfg));
	memset(dests, 0, sizeof(dests));
	memset(asked, 0, sizeof(asked));
	unknown_asks = 0;
	cfg.supervisor.heartbeat_ms = PERIOD_MS;
	cfg.destinations = dests;
}

static void teardown(void)
{
	event_base_free(base);
}

/* A TCP socket bound to 127.0.0.1:0; listening when backlog >= 0. *port
 * gets the port (network order). */
static int tcp_socket(int backlog, in_port_t *port)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	if (backlog >= 0)
		ck_assert_int_eq(listen(fd, backlog), 0);
	*port = sin.sin_port;
	return fd;
}

static void add_dest(const char *name, in_port_t port, int allowed)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)&dests[cfg.ndestinations].addr;

	ck_assert_uint_lt(cfg.ndestinations, DESTS_MAX);
	sin->sin_family = AF_INET;
	sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin->sin_port = port;
	dests[cfg.ndestinations].addr_len = sizeof(*sin);
	dests[cfg.ndestinations].name = (char *)name;
	allow[cfg.ndestinations] = allowed;
	cfg.ndestinations++;
}

/* Knows the destinations by port: proves it is handed the right address. */
static int allowed_cb(void *arg, const struct sockaddr *addr)
{
	const struct sockaddr_in *sin = (const struct sockaddr_in *)addr;
	size_t i;

	ck_assert_ptr_eq(arg, &cfg);
	for (i = 0; i < cfg.ndestinations; i++) {
		if (((struct sockaddr_in *)&dests[i].addr)->sin_port == sin->sin_port) {
			asked[i]++;
			return allow[i];
		}
	}
	unknown_asks++;
	return 0;
}

/* Runs the loop until every destination has left HB_UNKNOWN and was asked
 * at least min_rounds times, or limit_ms passed. */
static void run_until(const struct heartbeat *h, int min_rounds, long limit_ms)
{
	struct timeval step = {0, 10000};
	long waited;
	size_t i;
	int done = 0;

	for (waited = 0; !done && waited < limit_ms; waited += 10) {
		event_base_loopexit(base, &step);
		event_base_dispatch(base);
		done = 1;
		for (i = 0; i < cfg.ndestinations; i++)
			if (heartbeat_result(h, i)->state == HB_UNKNOWN || asked[i] < min_rounds)
				done = 0;
	}
	ck_assert_msg(done, "no result for every destination within %ld ms", limit_ms);
}

START_TEST(test_ok_failed_skipped)
{
	in_port_t open_port, closed_port, hidden_port;
	int lis = tcp_socket(16, &open_port);
	int closed = tcp_socket(-1, &closed_port); /* bound, never listening */
	int hidden = tcp_socket(16, &hidden_port);
	const struct hb_result *r;
	struct heartbeat *h;
	int conn;

	add_dest("open", open_port, 1);
	add_dest("closed", closed_port, 1);
	add_dest("outside-tunnel", hidden_port, 0);
	ck_assert_int_eq(heartbeat_new(base, &cfg, allowed_cb, &cfg, &h), 0);
	/* Nothing before the loop runs: the first round is on the loop. */
	ck_assert_int_eq(asked[0], 0);
	ck_assert_int_eq(heartbeat_result(h, 0)->state, HB_UNKNOWN);
	run_until(h, 1, LOOP_LIMIT_S * 1000);

	r = heartbeat_result(h, 0);
	ck_assert_int_eq(r->state, HB_OK);
	ck_assert_int_eq(r->err, 0);
	ck_assert_int_gt(r->at_unix, 0);
	ck_assert_uint_lt(r->rtt_us, 1000000);
	/* The listener is alive and was reached ... */
	conn = accept(lis, NULL, NULL);
	ck_assert_int_ge(conn, 0);
	close(conn);

	r = heartbeat_result(h, 1);
	ck_assert_int_eq(r->state, HB_FAILED);
	ck_assert_int_eq(r->err, ECONNREFUSED);
	ck_assert_uint_eq(r->rtt_us, 0);

	/* ... while the one outside the tunnel was asked about, and never got
	 * a SYN. */
	r = heartbeat_result(h, 2);
	ck_assert_int_eq(r->state, HB_SKIPPED);
	ck_assert_int_eq(r->err, 0);
	ck_assert_int_gt(r->at_unix, 0);
	ck_assert_int_ge(asked[2], 1);
	ck_assert_int_eq(accept(hidden, NULL, NULL), -1);
	ck_assert_int_eq(errno, EAGAIN);

	ck_assert_ptr_null(heartbeat_result(h, 3));
	ck_assert_int_eq(unknown_asks, 0);
	heartbeat_free(h);
	close(lis);
	close(closed);
	close(hidden);
}
END_TEST

/* Every period again, and the gate's answer is followed both ways. */
START_TEST(test_rounds_follow_the_gate)
{
	in_port_t port;
	int lis = tcp_socket(64, &port);
	struct heartbeat *h;
	int conn, accepted = 0;

	add_dest("lab", port, 1);
	ck_assert_int_eq(heartbeat_new(base, &cfg, allowed_cb, &cfg, &h), 0);
	run_until(h, 3, LOOP_LIMIT_S * 1000);
	ck_assert_int_eq(heartbeat_result(h, 0)->state, HB_OK);
	while ((conn = accept(lis, NULL, NULL)) >= 0) {
		accepted++;
		close(conn);
	}
	ck_assert_int_ge(accepted, 3);

	allow[0] = 0;
	asked[0] = 0;
	run_until(h, 2, LOOP_LIMIT_S * 1000);
	ck_assert_int_eq(heartbeat_result(h, 0)->state, HB_SKIPPED);
	/* At most the probe that was in flight when the gate closed. */
	accepted = 0;
	while ((conn = accept(lis, NULL, NULL)) >= 0) {
		accepted++;
		close(conn);
	}
	ck_assert_int_le(accepted, 1);

	allow[0] = 1;
	asked[0] = 0;
	run_until(h, 2, LOOP_LIMIT_S * 1000);
	ck_assert_int_eq(heartbeat_result(h, 0)->state, HB_OK);
	heartbeat_free(h);
	close(lis);
}
END_TEST

/* A listener whose accept queue is full drops SYNs: the probe hangs in
 * connect() until HB_CONNECT_TIMEOUT_MS. */
START_TEST(test_connect_timeout)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int fillers[3], i, lis;
	const struct hb_result *r;
	struct heartbeat *h;
	in_port_t port;

	lis = tcp_socket(0, &port);
	sin.sin_port = port;
	for (i = 0; i < 3; i++) {
		fillers[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
		ck_assert_int_ge(fillers[i], 0);
		connect(fillers[i], (struct sockaddr *)&sin, sizeof(sin));
		usleep(20000);
	}
	add_dest("full", port, 1);
	ck_assert_int_eq(heartbeat_new(base, &cfg, allowed_cb, &cfg, &h), 0);
	run_until(h, 1, HB_CONNECT_TIMEOUT_MS + 2000);
	r = heartbeat_result(h, 0);
	ck_assert_int_eq(r->state, HB_FAILED);
	ck_assert_int_eq(r->err, ETIMEDOUT);
	/* The ~100 rounds while it hung started nothing: the slot was busy
	 * (one more round may have begun right after the timeout). */
	ck_assert_int_ge(asked[0], 1);
	ck_assert_int_le(asked[0], 2);
	heartbeat_free(h);
	for (i = 0; i < 3; i++)
		close(fillers[i]);
	close(lis);
}
END_TEST

START_TEST(test_bad_arguments)
{
	struct heartbeat *h = (struct heartbeat *)&cfg;

	cfg.supervisor.heartbeat_ms = 0;
	ck_assert_int_eq(heartbeat_new(base, &cfg, allowed_cb, &cfg, &h), -EINVAL);
	ck_assert_ptr_null(h);
	cfg.supervisor.heartbeat_ms = PERIOD_MS;
	ck_assert_int_eq(heartbeat_new(base, &cfg, NULL, &cfg, &h), -EINVAL);
	ck_assert_ptr_null(h);
	/* No destinations: valid, nothing to report. */
	ck_assert_int_eq(heartbeat_new(base, &cfg, allowed_cb, &cfg, &h), 0);
	ck_assert_ptr_null(heartbeat_result(h, 0));
	heartbeat_free(h);
	heartbeat_free(NULL);
}
END_TEST

static Suite *heartbeat_suite(void)
{
	Suite *s = suite_create("appliance_heartbeat");
	TCase *tc = tcase_create("heartbeat");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, HB_CONNECT_TIMEOUT_MS / 1000 + 5);
	tcase_add_test(tc, test_ok_failed_skipped);
	tcase_add_test(tc, test_rounds_follow_the_gate);
	tcase_add_test(tc, test_connect_timeout);
	tcase_add_test(tc, test_bad_arguments);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(heartbeat_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
