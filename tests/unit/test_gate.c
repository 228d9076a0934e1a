/*
 * The gate: which peers may speak plain MLLP. A table of (set, peer,
 * verdict) in both modes, IPv4-mapped peers and CIDRs, and the watchers:
 * told of every change once, never of a resent identical set.
 */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "mllp-bridge/gate.h"

#define NELEMS(a) (sizeof(a) / sizeof((a)[0]))
#define SET_MAX	  4

static struct sockaddr_storage peer(const char *addr)
{
	struct sockaddr_storage ss;

	memset(&ss, 0, sizeof(ss));
	if (strchr(addr, ':')) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(4242);
		ck_assert_int_eq(inet_pton(AF_INET6, addr, &s6->sin6_addr), 1);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

		s4->sin_family = AF_INET;
		s4->sin_port = htons(4242);
		ck_assert_int_eq(inet_pton(AF_INET, addr, &s4->sin_addr), 1);
	}
	return ss;
}

/* Parses up to SET_MAX CIDRs (NULL-terminated) with the config's parser. */
static size_t cidrs(const char *const *text, struct cfg_cidr *out)
{
	size_t n = 0;

	for (; n < SET_MAX && text[n]; n++) {
		memset(&out[n], 0, sizeof(out[n]));
		ck_assert_int_eq(cfg_parse_cidr(text[n], &out[n]), 0);
	}
	return n;
}

static const struct {
	int open;
	const char *set[SET_MAX + 1];
	const char *peer;
	int allowed;
} cases[] = {
    {0, {NULL}, "203.0.113.70", 0},
    {0, {NULL}, "::1", 0},
    {0, {"203.0.113.64/26", NULL}, "203.0.113.70", 1},
    {0, {"203.0.113.64/26", NULL}, "203.0.113.64", 1},
    {0, {"203.0.113.64/26", NULL}, "203.0.113.127", 1},
    {0, {"203.0.113.64/26", NULL}, "203.0.113.128", 0},
    {0, {"203.0.113.64/26", NULL}, "203.0.113.63", 0},
    {0, {"203.0.113.64/26", NULL}, "::ffff:203.0.113.70", 1},
    {0, {"203.0.113.64/26", NULL}, "::ffff:203.0.113.10", 0},
    {0, {"203.0.113.64/26", NULL}, "2001:db8::cb00:7146", 0},
    {0, {"203.0.113.64/26", "198.51.100.7/32", NULL}, "198.51.100.7", 1},
    {0, {"203.0.113.64/26", "198.51.100.7/32", NULL}, "198.51.100.8", 0},
    {0, {"2001:db8:1::/48", NULL}, "2001:db8:1:2::5", 1},
    {0, {"2001:db8:1::/48", NULL}, "2001:db8:2::5", 0},
    {0, {"2001:db8:1::/48", NULL}, "203.0.113.70", 0},
    {0, {"0.0.0.0/0", NULL}, "203.0.113.70", 1},
    {0, {"0.0.0.0/0", NULL}, "2001:db8::1", 0},
    {0, {"::/0", NULL}, "2001:db8::1", 1},
    {0, {"127.0.0.0/8", NULL}, "127.0.0.1", 1},
    {1, {NULL}, "203.0.113.70", 1},
    {1, {NULL}, "2001:db8::1", 1},
    {1, {"203.0.113.64/26", NULL}, "198.51.100.1", 1},
};

START_TEST(test_allows)
{
	struct cfg_cidr set[SET_MAX];
	struct sockaddr_storage p = peer(cases[_i].peer);
	size_t n = cidrs(cases[_i].set, set);
	struct gate *g;

	ck_assert_int_eq(gate_new(cases[_i].open, &g), 0);
	ck_assert_int_eq(gate_set(g, set, n), 0);
	ck_assert_msg(gate_allows(g, (struct sockaddr *)&p) == cases[_i].allowed, "case %d: %s", _i,
		      cases[_i].peer);
	gate_free(g);
}
END_TEST

/* A closed gate allows nobody before the first set. */
START_TEST(test_closed_at_start)
{
	struct sockaddr_storage p = peer("127.0.0.1");
	struct gate_stats st;
	struct gate *g;

	ck_assert_int_eq(gate_new(0, &g), 0);
	ck_assert_int_eq(gate_allows(g, (struct sockaddr *)&p), 0);
	gate_stats(g, &st);
	ck_assert_int_eq(st.open, 0);
	ck_assert_int_eq(st.linked, 0);
	ck_assert_uint_eq(st.ncidrs, 0);
	ck_assert_uint_eq(st.changes, 0);
	gate_free(g);
}
END_TEST

struct seen {
	int calls;
	const struct gate *g;
	int allowed; /* what the watcher saw for the probe peer */
	struct sockaddr_storage probe;
};

static void on_change(void *arg, const struct gate *g)
{
	struct seen *s = arg;

	s->calls++;
	s->g = g;
	s->allowed = gate_allows(g, (struct sockaddr *)&s->probe);
}

START_TEST(test_watchers)
{
	static const char *const a[] = {"203.0.113.64/26", NULL}, *const b[] = {"198.51.100.0/24",
										NULL};
	struct cfg_cidr sa[SET_MAX], sb[SET_MAX];
	size_t na = cidrs(a, sa), nb = cidrs(b, sb);
	struct seen one = {.probe = peer("203.0.113.70")}, two = {.probe = peer("203.0.113.70")};
	struct gate_stats st;
	struct gate *g;

	ck_assert_int_eq(gate_new(0, &g), 0);
	ck_assert_int_eq(gate_watch(g, on_change, &one), 0);
	ck_assert_int_eq(gate_watch(g, on_change, &two), 0);
	ck_assert_int_eq(gate_set(g, sa, na), 0);
	ck_assert_int_eq(one.calls, 1);
	ck_assert_int_eq(two.calls, 1);
	ck_assert_ptr_eq(one.g, g);
	ck_assert_int_eq(one.allowed, 1); /* the watcher sees the new set */
	/* The same snapshot resent: nothing changed, nobody is told. */
	ck_assert_int_eq(gate_set(g, sa, na), 0);
	ck_assert_int_eq(one.calls, 1);
	ck_assert_int_eq(gate_set(g, sb, nb), 0);
	ck_assert_int_eq(one.calls, 2);
	ck_assert_int_eq(one.allowed, 0);
	gate_unwatch(g, on_change, &one);
	ck_assert_int_eq(gate_set(g, NULL, 0), 0);
	ck_assert_int_eq(one.calls, 2);
	ck_assert_int_eq(two.calls, 3);
	gate_close(g); /* already empty */
	ck_assert_int_eq(two.calls, 3);
	ck_assert_int_eq(gate_set(g, sa, na), 0);
	gate_close(g);
	ck_assert_int_eq(two.calls, 5);
	gate_stats(g, &st);
	ck_assert_uint_eq(st.changes, 5);
	ck_assert_uint_eq(st.ncidrs, 0);
	gate_free(g);
}
END_TEST

START_TEST(test_watchers_full)
{
	struct seen s[GATE_WATCHERS_MAX + 1];
	struct gate *g;

	ck_assert_int_eq(gate_new(0, &g), 0);
	for (int i = 0; i < GATE_WATCHERS_MAX; i++)
		ck_assert_int_eq(gate_watch(g, on_change, &s[i]), 0);
	ck_assert_int_eq(gate_watch(g, on_change, &s[GATE_WATCHERS_MAX]), -ENOSPC);
	gate_free(g);
}
END_TEST

/* A bad set changes nothing: the gate keeps what it had. */
START_TEST(test_set_refused)
{
	static const char *const a[] = {"203.0.113.64/26", NULL};
	struct cfg_cidr sa[SET_MAX], bad[1] = {{.family = AF_INET, .prefix = 33}};
	struct cfg_cidr *many = calloc(GATE_CIDRS_MAX + 1, sizeof(*many));
	struct sockaddr_storage p = peer("203.0.113.70");
	struct seen s = {.probe = p};
	size_t na = cidrs(a, sa);
	struct gate *g;

	ck_assert_ptr_nonnull(many);
	ck_assert_int_eq(gate_new(0, &g), 0);
	ck_assert_int_eq(gate_set(g, sa, na), 0);
	ck_assert_int_eq(gate_watch(g, on_change, &s), 0);
	ck_assert_int_eq(gate_set(g, bad, 1), -EINVAL);
	bad[0] = (struct cfg_cidr){.family = AF_UNIX};
	ck_assert_int_eq(gate_set(g, bad, 1), -EINVAL);
	for (size_t i = 0; i <= GATE_CIDRS_MAX; i++)
		many[i] = sa[0];
	ck_assert_int_eq(gate_set(g, many, GATE_CIDRS_MAX + 1), -EINVAL);
	ck_assert_int_eq(gate_set(g, many, GATE_CIDRS_MAX), 0); /* the limit itself is fine */
	ck_assert_int_eq(s.calls, 1);
	ck_assert_int_eq(gate_allows(g, (struct sockaddr *)&p), 1);
	free(many);
	gate_free(g);
}
END_TEST

/* An IPv4-mapped IPv6 CIDR (as a supervisor may send it) means IPv4. */
START_TEST(test_mapped_cidr)
{
	struct cfg_cidr c = {.family = AF_INET6, .prefix = 96 + 26}, got;
	struct sockaddr_storage p4 = peer("203.0.113.70"), p6 = peer("::ffff:203.0.113.70");
	struct gate *g;

	ck_assert_int_eq(inet_pton(AF_INET6, "::ffff:203.0.113.64", c.addr), 1);
	ck_assert_int_eq(gate_new(0, &g), 0);
	ck_assert_int_eq(gate_set(g, &c, 1), 0);
	ck_assert_int_eq(gate_allows(g, (struct sockaddr *)&p4), 1);
	ck_assert_int_eq(gate_allows(g, (struct sockaddr *)&p6), 1);
	gate_cidr(g, 0, &got);
	ck_assert_int_eq(got.family, AF_INET);
	ck_assert_uint_eq(got.prefix, 26);
	ck_assert_uint_eq(got.addr[0], 203);
	ck_assert_uint_eq(got.addr[3], 64);
	ck_assert_uint_eq(got.addr[4], 0);
	gate_free(g);
}
END_TEST

START_TEST(test_linked)
{
	struct gate_stats st;
	struct gate *g;

	ck_assert_int_eq(gate_new(1, &g), 0);
	gate_set_linked(g, 1);
	gate_stats(g, &st);
	ck_assert_int_eq(st.open, 1);
	ck_assert_int_eq(st.linked, 1);
	gate_set_linked(g, 0);
	gate_stats(g, &st);
	ck_assert_int_eq(st.linked, 0);
	gate_free(g);
}
END_TEST

static Suite *gate_suite(void)
{
	Suite *s = suite_create("gate");
	TCase *tc = tcase_create("gate");

	tcase_add_loop_test(tc, test_allows, 0, (int)NELEMS(cases));
	tcase_add_test(tc, test_closed_at_start);
	tcase_add_test(tc, test_watchers);
	tcase_add_test(tc, test_watchers_full);
	tcase_add_test(tc, test_set_refused);
	tcase_add_test(tc, test_mapped_cidr);
	tcase_add_test(tc, test_linked);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(gate_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
