/*
 * The supervisor ↔ bridge codec: round trips of every type at its limits,
 * every encode refusal, and every malformed datagram (each -EBADMSG reason
 * of ipc.h, built byte by byte so that the codec's own encoder cannot hide
 * a mistake), plus every cut of valid datagrams.
 */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "ipc/ipc.h"

#define NELEMS(a) (sizeof(a) / sizeof((a)[0]))

/* ---- messages for the round trips ---- */

static void cidr4(struct ipc_cidr *c, const char *addr, unsigned prefix)
{
	memset(c, 0, sizeof(*c));
	c->family = AF_INET;
	c->prefix = (uint8_t)prefix;
	ck_assert_int_eq(inet_pton(AF_INET, addr, c->addr), 1);
}

static void cidr6(struct ipc_cidr *c, const char *addr, unsigned prefix)
{
	memset(c, 0, sizeof(*c));
	c->family = AF_INET6;
	c->prefix = (uint8_t)prefix;
	ck_assert_int_eq(inet_pton(AF_INET6, addr, c->addr), 1);
}

/* A name of exactly len characters from the allowed set. */
static void long_name(char *out, size_t len, unsigned seed)
{
	static const char set[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";

	for (size_t i = 0; i < len; i++)
		out[i] = set[(i + seed) % (sizeof(set) - 1)];
	out[len] = '\0';
}

static void gate_empty(union ipc_msg *m, enum ipc_type *t)
{
	*t = IPC_GATE;
	m->gate.generation = 0;
}

static void gate_mixed(union ipc_msg *m, enum ipc_type *t)
{
	*t = IPC_GATE;
	m->gate.generation = 0xfedcba98u;
	m->gate.n = 5;
	cidr4(&m->gate.cidr[0], "203.0.113.64", 26);
	cidr4(&m->gate.cidr[1], "0.0.0.0", 0);
	cidr4(&m->gate.cidr[2], "203.0.113.70", 32);
	cidr6(&m->gate.cidr[3], "2001:db8::", 32);
	cidr6(&m->gate.cidr[4], "2001:db8::1", 128);
}

static void gate_full(union ipc_msg *m, enum ipc_type *t)
{
	*t = IPC_GATE;
	m->gate.generation = 7;
	m->gate.n = IPC_GATE_MAX;
	for (unsigned i = 0; i < IPC_GATE_MAX; i++) {
		char a[32];

		snprintf(a, sizeof(a), "10.%u.%u.0", i / 256, i % 256);
		cidr4(&m->gate.cidr[i], a, 24);
	}
}

static void tunnels_empty(union ipc_msg *m, enum ipc_type *t)
{
	*t = IPC_TUNNELS;
	m->tunnels.bridge_restarts = 3;
}

static void tunnels_full(union ipc_msg *m, enum ipc_type *t)
{
	*t = IPC_TUNNELS;
	m->tunnels.bridge_restarts = 0xffffffffu;
	m->tunnels.n = IPC_TUNNELS_MAX;
	for (unsigned i = 0; i < IPC_TUNNELS_MAX; i++) {
		struct ipc_tunnel *x = &m->tunnels.t[i];

		long_name(x->name, i % 2 ? IPC_NAME_MAX : 1 + i, i);
		x->up = (uint8_t)(i % 2);
		x->ike_dh = i % 2 ? 21 : 0;
		x->esp_dh = 14;
		x->changed_unix = i == 3 ? -1 : (int64_t)1790000000 + i;
	}
}

static void status_full(union ipc_msg *m, enum ipc_type *t)
{
	*t = IPC_STATUS;
	m->status.n = IPC_INTEGRATIONS_MAX;
	for (unsigned i = 0; i < IPC_INTEGRATIONS_MAX; i++) {
		struct ipc_integration *x = &m->status.in[i];

		long_name(x->name, IPC_NAME_MAX, i);
		x->depth = UINT64_MAX - i;
		x->oldest_age_ms = (uint64_t)i << 40;
		x->dead = i;
	}
}

static void status_one(union ipc_msg *m, enum ipc_type *t)
{
	*t = IPC_STATUS;
	m->status.n = 1;
	snprintf(m->status.in[0].name, sizeof(m->status.in[0].name), "lab");
	m->status.in[0].depth = 12;
	m->status.in[0].oldest_age_ms = 3400;
}

static void outbox_full(union ipc_msg *m, enum ipc_type *t)
{
	*t = IPC_OUTBOX;
	m->outbox.n = IPC_DESTINATIONS_MAX;
	for (unsigned i = 0; i < IPC_DESTINATIONS_MAX; i++) {
		struct ipc_destination *x = &m->outbox.d[i];

		long_name(x->name, i % 2 ? IPC_NAME_MAX : 1 + i % IPC_NAME_MAX, i);
		x->queued = UINT64_MAX - i;
		x->oldest_age_ms = (uint64_t)i << 33;
		x->waiting_gate = (uint8_t)(i % 2);
		x->connected = (uint8_t)(i % 3 == 0);
		x->failed = i;
	}
}

static void outbox_one(union ipc_msg *m, enum ipc_type *t)
{
	*t = IPC_OUTBOX;
	m->outbox.n = 1;
	snprintf(m->outbox.d[0].name, sizeof(m->outbox.d[0].name), "lis");
	m->outbox.d[0].queued = 3;
	m->outbox.d[0].waiting_gate = 1;
}

static void (*const round_trips[])(union ipc_msg *, enum ipc_type *) = {
    gate_empty, gate_mixed,  gate_full,	 tunnels_empty, tunnels_full,
    status_one, status_full, outbox_one, outbox_full,
};

static uint8_t g_buf[IPC_MSG_MAX + 16];
static union ipc_msg g_in, g_out;

START_TEST(test_round_trip)
{
	enum ipc_type type, got = 0;
	size_t len;

	memset(&g_in, 0, sizeof(g_in));
	memset(&g_out, 0xa5, sizeof(g_out)); /* decode must clear what it does not set */
	round_trips[_i](&g_in, &type);
	ck_assert_int_eq(ipc_encode(type, &g_in, g_buf, sizeof(g_buf), &len), 0);
	ck_assert_uint_ge(len, IPC_HEADER_SIZE);
	ck_assert_uint_le(len, IPC_MSG_MAX);
	ck_assert_uint_eq(g_buf[0], IPC_VERSION);
	ck_assert_uint_eq(g_buf[1], type);
	ck_assert_uint_eq((size_t)g_buf[2] << 8 | g_buf[3], len - IPC_HEADER_SIZE);
	ck_assert_int_eq(ipc_decode(g_buf, len, &got, &g_out), 0);
	ck_assert_int_eq(got, type);
	if (type == IPC_GATE)
		ck_assert_mem_eq(&g_out.gate, &g_in.gate, sizeof(g_in.gate));
	else if (type == IPC_TUNNELS)
		ck_assert_mem_eq(&g_out.tunnels, &g_in.tunnels, sizeof(g_in.tunnels));
	else
		ck_assert_mem_eq(&g_out.status, &g_in.status, sizeof(g_in.status));
	/* A buffer one byte short is refused, never overrun. */
	ck_assert_int_eq(ipc_encode(type, &g_in, g_buf, len - 1, &len), -EMSGSIZE);
}
END_TEST

/* Every cut of a valid datagram is refused; none is read past its end. */
START_TEST(test_cut)
{
	enum ipc_type type, got;
	size_t len;
	uint8_t *copy;

	memset(&g_in, 0, sizeof(g_in));
	round_trips[_i](&g_in, &type);
	ck_assert_int_eq(ipc_encode(type, &g_in, g_buf, sizeof(g_buf), &len), 0);
	for (size_t cut = 0; cut < len; cut++) {
		copy = malloc(cut ? cut : 1); /* exact size: ASan sees any overread */
		memcpy(copy, g_buf, cut);
		ck_assert_int_eq(ipc_decode(copy, cut, &got, &g_out), -EBADMSG);
		free(copy);
	}
}
END_TEST

/* ---- encode refusals ---- */

static void enc_gate_over(union ipc_msg *m, enum ipc_type *t)
{
	gate_full(m, t);
	m->gate.n = IPC_GATE_MAX + 1;
}

static void enc_gate_family(union ipc_msg *m, enum ipc_type *t)
{
	gate_mixed(m, t);
	m->gate.cidr[2].family = AF_UNIX;
}

static void enc_gate_prefix(union ipc_msg *m, enum ipc_type *t)
{
	gate_mixed(m, t);
	m->gate.cidr[0].prefix = 33;
}

static void enc_gate_host_bits(union ipc_msg *m, enum ipc_type *t)
{
	gate_mixed(m, t);
	cidr4(&m->gate.cidr[0], "203.0.113.65", 26);
}

static void enc_tunnels_over(union ipc_msg *m, enum ipc_type *t)
{
	tunnels_full(m, t);
	m->tunnels.n = IPC_TUNNELS_MAX + 1;
}

static void enc_tunnels_up(union ipc_msg *m, enum ipc_type *t)
{
	tunnels_full(m, t);
	m->tunnels.t[1].up = 2;
}

static void enc_tunnel_name_empty(union ipc_msg *m, enum ipc_type *t)
{
	tunnels_full(m, t);
	m->tunnels.t[5].name[0] = '\0';
}

static void enc_tunnel_name_long(union ipc_msg *m, enum ipc_type *t)
{
	tunnels_full(m, t);
	memset(m->tunnels.t[0].name, 'a', sizeof(m->tunnels.t[0].name)); /* no NUL at all */
}

static void enc_status_over(union ipc_msg *m, enum ipc_type *t)
{
	status_full(m, t);
	m->status.n = IPC_INTEGRATIONS_MAX + 1;
}

static void enc_status_name_char(union ipc_msg *m, enum ipc_type *t)
{
	status_one(m, t);
	m->status.in[0].name[1] = '.';
}

static void enc_unknown_type(union ipc_msg *m, enum ipc_type *t)
{
	status_one(m, t);
	*t = (enum ipc_type)9;
}

static void enc_outbox_over(union ipc_msg *m, enum ipc_type *t)
{
	outbox_one(m, t);
	m->outbox.n = IPC_DESTINATIONS_MAX + 1;
}

/* waiting_gate and connected are booleans on the wire too. */
static void enc_outbox_flag(union ipc_msg *m, enum ipc_type *t)
{
	outbox_one(m, t);
	m->outbox.d[0].connected = 2;
}

static void (*const bad_encodes[])(union ipc_msg *, enum ipc_type *) = {
    enc_gate_over,    enc_gate_family,	    enc_gate_prefix,	   enc_gate_host_bits,
    enc_tunnels_over, enc_tunnels_up,	    enc_tunnel_name_empty, enc_tunnel_name_long,
    enc_status_over,  enc_status_name_char, enc_outbox_over,	   enc_outbox_flag,
    enc_unknown_type,
};

START_TEST(test_encode_refused)
{
	enum ipc_type type;
	size_t len = 99;

	memset(&g_in, 0, sizeof(g_in));
	bad_encodes[_i](&g_in, &type);
	ck_assert_int_eq(ipc_encode(type, &g_in, g_buf, sizeof(g_buf), &len), -EINVAL);
	ck_assert_uint_eq(len, 0);
}
END_TEST

/* ---- malformed datagrams, byte by byte ---- */

struct raw {
	uint8_t b[IPC_MSG_MAX + 16];
	size_t n;
};

static void be(struct raw *r, uint64_t v, unsigned bytes)
{
	ck_assert_uint_le(bytes, 8);
	for (unsigned i = 0; i < bytes; i++)
		r->b[r->n++] = (uint8_t)(v >> (8 * (bytes - 1 - i)));
}

static void zeros(struct raw *r, size_t n)
{
	memset(r->b + r->n, 0, n);
	r->n += n;
}

static void bytes(struct raw *r, const void *p, size_t n)
{
	memcpy(r->b + r->n, p, n);
	r->n += n;
}

static void name(struct raw *r, const char *s)
{
	be(r, strlen(s), 1);
	bytes(r, s, strlen(s));
}

/* Header with a placeholder length, patched by fix_len(). */
static void head(struct raw *r, unsigned type)
{
	r->n = 0;
	be(r, IPC_VERSION, 1);
	be(r, type, 1);
	be(r, 0, 2);
}

static void fix_len(struct raw *r)
{
	r->b[2] = (uint8_t)((r->n - IPC_HEADER_SIZE) >> 8);
	r->b[3] = (uint8_t)(r->n - IPC_HEADER_SIZE);
}

static void wire_cidr(struct raw *r, unsigned family, unsigned prefix, const char *addr)
{
	uint8_t a[16] = {0};

	ck_assert_int_eq(inet_pton((int)family == AF_INET6 ? AF_INET6 : AF_INET, addr, a), 1);
	be(r, family, 1);
	be(r, prefix, 1);
	bytes(r, a, sizeof(a));
}

/* A valid one-CIDR gate; the cases break one thing each. */
static void ok_gate(struct raw *r)
{
	head(r, IPC_GATE);
	be(r, 1, 4);
	be(r, 1, 2);
	wire_cidr(r, AF_INET, 24, "203.0.113.0");
	fix_len(r);
}

static void ok_tunnels(struct raw *r)
{
	head(r, IPC_TUNNELS);
	be(r, 0, 4);
	be(r, 1, 2);
	name(r, "hospital-a");
	be(r, 1, 1);
	be(r, 21, 2);
	be(r, 21, 2);
	be(r, 1790000000, 8);
	fix_len(r);
}

static void ok_status(struct raw *r)
{
	head(r, IPC_STATUS);
	be(r, 1, 2);
	name(r, "lab");
	be(r, 1, 8);
	be(r, 2, 8);
	be(r, 3, 8);
	fix_len(r);
}

static void bad_version(struct raw *r)
{
	ok_gate(r);
	r->b[0] = IPC_VERSION + 1;
}

static void bad_version_zero(struct raw *r)
{
	ok_status(r);
	r->b[0] = 0;
}

static void bad_type_zero(struct raw *r)
{
	ok_gate(r);
	r->b[1] = 0;
}

static void bad_type_five(struct raw *r)
{
	ok_status(r);
	r->b[1] = 5;
}

static void len_says_more(struct raw *r)
{
	ok_gate(r);
	r->b[3]++;
}

static void len_says_less(struct raw *r)
{
	ok_tunnels(r);
	r->b[3]--;
}

static void header_only_gate(struct raw *r)
{
	head(r, IPC_GATE);
}

static void gate_trailing_byte(struct raw *r)
{
	ok_gate(r);
	be(r, 0, 1);
	fix_len(r); /* the length is right; the count says one CIDR */
}

static void gate_count_says_two(struct raw *r)
{
	ok_gate(r);
	r->b[IPC_HEADER_SIZE + 5] = 2;
}

static void gate_count_over(struct raw *r)
{
	head(r, IPC_GATE);
	be(r, 1, 4);
	be(r, IPC_GATE_MAX + 1, 2);
	for (unsigned i = 0; i <= IPC_GATE_MAX; i++)
		wire_cidr(r, AF_INET, 32, "203.0.113.1");
	fix_len(r);
}

static void tunnels_count_over(struct raw *r)
{
	head(r, IPC_TUNNELS);
	be(r, 0, 4);
	be(r, IPC_TUNNELS_MAX + 1, 2);
	for (unsigned i = 0; i <= IPC_TUNNELS_MAX; i++) {
		name(r, "t");
		zeros(r, 1 + 2 + 2 + 8);
	}
	fix_len(r);
}

static void status_count_over(struct raw *r)
{
	head(r, IPC_STATUS);
	be(r, IPC_INTEGRATIONS_MAX + 1, 2);
	for (unsigned i = 0; i <= IPC_INTEGRATIONS_MAX; i++) {
		name(r, "i");
		zeros(r, 24);
	}
	fix_len(r);
}

static void status_count_huge(struct raw *r)
{
	head(r, IPC_STATUS);
	be(r, 0xffff, 2);
	fix_len(r);
}

static void status_trailing_record(struct raw *r)
{
	ok_status(r);
	name(r, "extra");
	zeros(r, 24);
	fix_len(r);
}

/* A status whose one name is given as (length, bytes). */
static void status_named(struct raw *r, size_t len, const char *bytes_)
{
	head(r, IPC_STATUS);
	be(r, 1, 2);
	be(r, len, 1);
	bytes(r, bytes_, len);
	zeros(r, 24);
	fix_len(r);
}

static void name_empty(struct raw *r)
{
	status_named(r, 0, "");
}

static void name_long(struct raw *r)
{
	char n[IPC_NAME_MAX + 2];

	long_name(n, IPC_NAME_MAX + 1, 0);
	status_named(r, IPC_NAME_MAX + 1, n);
}

static void name_dot(struct raw *r)
{
	status_named(r, 3, "a.b");
}

static void name_space(struct raw *r)
{
	status_named(r, 3, "a b");
}

static void name_nul(struct raw *r)
{
	status_named(r, 3, "a\0b");
}

static void name_high(struct raw *r)
{
	status_named(r, 2, "a\xc3");
}

static void name_len_past_end(struct raw *r)
{
	head(r, IPC_STATUS);
	be(r, 1, 2);
	be(r, 60, 1);
	bytes(r, "lab", 3);
	zeros(r, 24);
	fix_len(r);
}

static void tunnel_name_slash(struct raw *r)
{
	ok_tunnels(r);
	r->b[IPC_HEADER_SIZE + 6 + 1 + 8] = '/'; /* "hospital/a" */
}

static void tunnel_up_two(struct raw *r)
{
	ok_tunnels(r);
	r->b[IPC_HEADER_SIZE + 6 + 1 + 10] = 2;
}

static void gate_one(struct raw *r, unsigned family, unsigned prefix, const char *addr)
{
	head(r, IPC_GATE);
	be(r, 1, 4);
	be(r, 1, 2);
	wire_cidr(r, family, prefix, addr);
	fix_len(r);
}

static void family_zero(struct raw *r)
{
	gate_one(r, 0, 0, "0.0.0.0");
}

static void family_unix(struct raw *r)
{
	gate_one(r, AF_UNIX, 8, "10.0.0.0");
}

static void prefix_v4_33(struct raw *r)
{
	gate_one(r, AF_INET, 33, "10.0.0.0");
}

static void prefix_v6_129(struct raw *r)
{
	gate_one(r, AF_INET6, 129, "2001:db8::");
}

static void prefix_255(struct raw *r)
{
	gate_one(r, AF_INET6, 255, "::");
}

static void host_bits_v4(struct raw *r)
{
	gate_one(r, AF_INET, 24, "10.0.0.1");
}

static void host_bits_v4_zero_prefix(struct raw *r)
{
	gate_one(r, AF_INET, 0, "128.0.0.0");
}

static void host_bits_v6(struct raw *r)
{
	gate_one(r, AF_INET6, 64, "2001:db8::1");
}

static void host_bits_v6_mid_byte(struct raw *r)
{
	gate_one(r, AF_INET6, 61, "2001:db8:0:4::");
}

static void v4_tail_not_zero(struct raw *r)
{
	gate_one(r, AF_INET, 32, "10.0.0.1");
	r->b[r->n - 1] = 1; /* the 16th address byte: no IPv4 meaning */
}

static const struct {
	const char *what;
	void (*build)(struct raw *);
	int want;
} bad_decodes[] = {
    {"wrong version", bad_version, -EBADMSG},
    {"version 0", bad_version_zero, -EBADMSG},
    {"type 0", bad_type_zero, -EBADMSG},
    {"type 4", bad_type_five, -EBADMSG},
    {"length says more than follows", len_says_more, -EBADMSG},
    {"length says less than follows", len_says_less, -EBADMSG},
    {"gate with no payload", header_only_gate, -EBADMSG},
    {"a byte after the records", gate_trailing_byte, -EBADMSG},
    {"count says more records than follow", gate_count_says_two, -EBADMSG},
    {"gate count over IPC_GATE_MAX", gate_count_over, -EBADMSG},
    {"tunnels count over IPC_TUNNELS_MAX", tunnels_count_over, -EBADMSG},
    {"status count over IPC_INTEGRATIONS_MAX", status_count_over, -EBADMSG},
    {"status count 65535, nothing behind it", status_count_huge, -EBADMSG},
    {"a record more than the count", status_trailing_record, -EBADMSG},
    {"empty name", name_empty, -EBADMSG},
    {"name of 65 bytes", name_long, -EBADMSG},
    {"name with a dot", name_dot, -EBADMSG},
    {"name with a space", name_space, -EBADMSG},
    {"name with a NUL", name_nul, -EBADMSG},
    {"name with a byte over 0x7f", name_high, -EBADMSG},
    {"name length past the end", name_len_past_end, -EBADMSG},
    {"tunnel name with a slash", tunnel_name_slash, -EBADMSG},
    {"tunnel up 2", tunnel_up_two, -EBADMSG},
    {"family 0", family_zero, -EBADMSG},
    {"family AF_UNIX", family_unix, -EBADMSG},
    {"IPv4 prefix 33", prefix_v4_33, -EBADMSG},
    {"IPv6 prefix 129", prefix_v6_129, -EBADMSG},
    {"IPv6 prefix 255", prefix_255, -EBADMSG},
    {"IPv4 host bits set", host_bits_v4, -EBADMSG},
    {"IPv4 /0 with an address", host_bits_v4_zero_prefix, -EBADMSG},
    {"IPv6 host bits set", host_bits_v6, -EBADMSG},
    {"IPv6 host bit inside the prefix's last byte", host_bits_v6_mid_byte, -EBADMSG},
    {"IPv4 with bytes past the fourth", v4_tail_not_zero, -EBADMSG},
};

static struct raw g_raw;

START_TEST(test_decode_refused)
{
	enum ipc_type type = (enum ipc_type)77;

	bad_decodes[_i].build(&g_raw);
	ck_assert_msg(ipc_decode(g_raw.b, g_raw.n, &type, &g_out) == bad_decodes[_i].want, "%s",
		      bad_decodes[_i].what);
	ck_assert_int_eq(type, 77); /* untouched on failure */
}
END_TEST

/* The valid bases of the table decode: each case breaks exactly one thing. */
static void (*const good_raws[])(struct raw *) = {ok_gate, ok_tunnels, ok_status};

START_TEST(test_decode_bases)
{
	enum ipc_type type;

	good_raws[_i](&g_raw);
	ck_assert_int_eq(ipc_decode(g_raw.b, g_raw.n, &type, &g_out), 0);
}
END_TEST

START_TEST(test_decode_too_long)
{
	enum ipc_type type;
	static uint8_t big[IPC_MSG_MAX + 1];

	ck_assert_int_eq(ipc_decode(big, sizeof(big), &type, &g_out), -EMSGSIZE);
}
END_TEST

/* Edge values decode: an IPv6 /61 network and a 64-byte name. */
START_TEST(test_decode_edges)
{
	enum ipc_type type;
	char n[IPC_NAME_MAX + 1];

	gate_one(&g_raw, AF_INET6, 61, "2001:db8:0:8::");
	ck_assert_int_eq(ipc_decode(g_raw.b, g_raw.n, &type, &g_out), 0);
	ck_assert_uint_eq(g_out.gate.cidr[0].prefix, 61);
	long_name(n, IPC_NAME_MAX, 3);
	status_named(&g_raw, IPC_NAME_MAX, n);
	ck_assert_int_eq(ipc_decode(g_raw.b, g_raw.n, &type, &g_out), 0);
	ck_assert_str_eq(g_out.status.in[0].name, n);
}
END_TEST

static Suite *ipc_suite(void)
{
	Suite *s = suite_create("ipc");
	TCase *tc = tcase_create("codec");

	tcase_add_loop_test(tc, test_round_trip, 0, (int)NELEMS(round_trips));
	tcase_add_loop_test(tc, test_cut, 0, (int)NELEMS(round_trips));
	tcase_add_loop_test(tc, test_encode_refused, 0, (int)NELEMS(bad_encodes));
	tcase_add_loop_test(tc, test_decode_refused, 0, (int)NELEMS(bad_decodes));
	tcase_add_loop_test(tc, test_decode_bases, 0, (int)NELEMS(good_raws));
	tcase_add_test(tc, test_decode_too_long);
	tcase_add_test(tc, test_decode_edges);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(ipc_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
