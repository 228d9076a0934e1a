/*
 * Derived Idempotency-Keys and lane keys (msgkey.h).
 *
 * Expected hashes in the tables were computed apart from this code (Python
 * hashlib over the encoding msgkey.h describes), so a change of derivation
 * shows up here: it would give every resend after an upgrade a new key.
 */
#include <check.h>
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "mllp-bridge/msgkey.h"
#include "samples.h"

#define NELEMS(a) (sizeof(a) / sizeof((a)[0]))

/* The parsed header, or NULL for a payload without a usable one. */
static const struct hl7_msh *parse(const struct blob *b, struct hl7_msh *msh)
{
	return hl7_parse_msh(b->p, b->len, msh, NULL) == 0 ? msh : NULL;
}

static void idem_of(const char *integration, const struct blob *b, char key[MSGKEY_IDEM_LEN + 1])
{
	struct hl7_msh msh;

	msgkey_idem(integration, parse(b, &msh), b->p, b->len, key);
}

/* 8-4-4-4-12 lowercase hex, version 8, RFC 4122 variant. */
static int is_uuid_v8(const char *k)
{
	if (strlen(k) != MSGKEY_IDEM_LEN)
		return 0;
	for (size_t i = 0; i < MSGKEY_IDEM_LEN; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (k[i] != '-')
				return 0;
		} else if (!isdigit((unsigned char)k[i]) && !(k[i] >= 'a' && k[i] <= 'f')) {
			return 0;
		}
	}
	return k[14] == '8' && strchr("89ab", k[19]) != NULL;
}

/* ---- Idempotency-Key ---- */

static const struct {
	const char *name;
	const char *integration;
	struct msg m;
	const char *key; /* NULL: only the format is checked */
} idem_cases[] = {
    {"HL7, known answer", "lab",
     RAW("MSH|^~\\&|APP|FAC|R|RF|20261126||ADT^A01|CTL1|P|2.5.1\rPID|1||42\r"),
     "f1befc8a-8475-86ef-a7e0-092eb0f14598"},
    {"no MSH, known answer", "lab", RAW("ISA*00*"), "8c66bbbe-f4aa-8277-b67c-2d79cbae7ba9"},
    {"adt_a01 sample", "adt", SMP("adt_a01_v251.hl7"), NULL},
    {"adt_a08 latin1 sample", "adt", SMP("adt_a08_latin1.hl7"), NULL},
    {"lf_segments sample", "adt", SMP("lf_segments.hl7"), NULL},
    {"x12 sample (no MSH)", "x12", SMP("x12_270.x12"), NULL},
    {"ccd sample (no MSH)", "ccd", SMP("ccd_minimal.xml"), NULL},
    {"empty payload", "lab", RAW(""), NULL},
    {"empty integration", "", RAW("MSH|^~\\&|A|B|C|D|T||ADT^A01|X|P|2.5\r"), NULL},
};

START_TEST(test_idem_format)
{
	struct blob b = msg_get(&idem_cases[_i].m);
	char k1[MSGKEY_IDEM_LEN + 1], k2[MSGKEY_IDEM_LEN + 1];
	struct blob copy = {malloc(b.len + 1), b.len};

	ck_assert_ptr_nonnull(copy.p);
	memcpy(copy.p, b.p, b.len);
	idem_of(idem_cases[_i].integration, &b, k1);
	idem_of(idem_cases[_i].integration, &copy, k2);
	ck_assert_msg(is_uuid_v8(k1), "%s: \"%s\" is not a version 8 UUID", idem_cases[_i].name,
		      k1);
	/* Same bytes from another buffer: the same key. */
	ck_assert_str_eq(k1, k2);
	if (idem_cases[_i].key)
		ck_assert_str_eq(k1, idem_cases[_i].key);
	blob_free(&b);
	blob_free(&copy);
}
END_TEST

/* Every single-byte change of the message gives another key, whether the
 * change breaks its header or not. */
START_TEST(test_idem_every_byte_counts)
{
	struct blob b = msg_get(&idem_cases[_i].m);
	char orig[MSGKEY_IDEM_LEN + 1], k[MSGKEY_IDEM_LEN + 1];
	size_t n = b.len;

	idem_of(idem_cases[_i].integration, &b, orig);
	for (size_t i = 0; i < b.len; i++) {
		b.p[i] ^= 0x01;
		idem_of(idem_cases[_i].integration, &b, k);
		ck_assert_msg(strcmp(k, orig) != 0, "%s: byte %zu changed, same key",
			      idem_cases[_i].name, i);
		b.p[i] ^= 0x01;
	}
	/* One byte more (the blob's NUL), one byte less. */
	b.len = n + 1;
	idem_of(idem_cases[_i].integration, &b, k);
	ck_assert_str_ne(k, orig);
	if (n > 0) {
		b.len = n - 1;
		idem_of(idem_cases[_i].integration, &b, k);
		ck_assert_str_ne(k, orig);
	}
	b.len = n;
	blob_free(&b);
}
END_TEST

START_TEST(test_idem_integration_counts)
{
	struct blob b = msg_get(&idem_cases[_i].m);
	char k1[MSGKEY_IDEM_LEN + 1], k2[MSGKEY_IDEM_LEN + 1];

	idem_of("lab", &b, k1);
	idem_of("lab2", &b, k2);
	ck_assert_str_ne(k1, k2);
	idem_of(NULL, &b, k2);
	idem_of("", &b, k1);
	ck_assert_str_eq(k1, k2); /* NULL counts as "" */
	blob_free(&b);
}
END_TEST

static struct hl7_str S(const char *s) {
	return (struct hl7_str){s, strlen(s)};
}

/* Length prefixes: moving a byte from one field to the next, or from the
 * integration into MSH-3, changes the key although the bytes hashed in a
 * row would be the same. The body stays the same on purpose. */
START_TEST(test_idem_fields_unambiguous)
{
	static const char body[] = "same body";
	static const struct {
		const char *integ, *app, *fac, *ctl;
	} splits[] = {
	    {"i", "ab", "c", "1"}, {"i", "a", "bc", "1"}, {"i", "abc", "", "1"},
	    {"i", "", "abc", "1"}, {"ia", "b", "c", "1"}, {"i", "ab", "c1", ""},
	    {"i", "ab", "", "c1"},
	};
	char keys[NELEMS(splits)][MSGKEY_IDEM_LEN + 1];
	char none[MSGKEY_IDEM_LEN + 1];

	for (size_t i = 0; i < NELEMS(splits); i++) {
		struct hl7_msh m = {.field_sep = '|'};

		m.sending_app = S(splits[i].app);
		m.sending_facility = S(splits[i].fac);
		m.control_id = S(splits[i].ctl);
		msgkey_idem(splits[i].integ, &m, body, sizeof(body) - 1, keys[i]);
		ck_assert(is_uuid_v8(keys[i]));
		for (size_t j = 0; j < i; j++)
			ck_assert_msg(strcmp(keys[i], keys[j]) != 0,
				      "splits %zu and %zu share a key", j, i);
	}
	/* An absent field is an empty one. */
	{
		struct hl7_msh absent = {.field_sep = '|'}, empty = {.field_sep = '|'};
		char k1[MSGKEY_IDEM_LEN + 1], k2[MSGKEY_IDEM_LEN + 1];

		empty.sending_app = empty.sending_facility = empty.control_id = S("");
		msgkey_idem("i", &absent, body, sizeof(body) - 1, k1);
		msgkey_idem("i", &empty, body, sizeof(body) - 1, k2);
		ck_assert_str_eq(k1, k2);
		/* With no header at all: another key. */
		msgkey_idem("i", NULL, body, sizeof(body) - 1, none);
		ck_assert_str_ne(none, k1);
	}
}
END_TEST

/* Only MSH-3, MSH-4 and MSH-10 of the header go in apart from the body:
 * another MSH-7 in the struct (the body is the same) changes nothing. */
START_TEST(test_idem_other_fields_ignored)
{
	static const char body[] = "MSH|^~\\&|A|B|C|D|T||ADT^A01|X|P|2.5\r";
	struct hl7_msh m;
	char k1[MSGKEY_IDEM_LEN + 1], k2[MSGKEY_IDEM_LEN + 1];

	ck_assert_int_eq(hl7_parse_msh(body, sizeof(body) - 1, &m, NULL), 0);
	msgkey_idem("i", &m, body, sizeof(body) - 1, k1);
	m.receiving_app = S("OTHER");
	m.version = S("2.3");
	msgkey_idem("i", &m, body, sizeof(body) - 1, k2);
	ck_assert_str_eq(k1, k2);
}
END_TEST

/* ---- lanes ---- */

#define SENDER			"10.1.2.3:5000"
#define ADT_MSH(app, fac, type) "MSH|^~\\&|" app "|" fac "|R|RF|20261126||" type "|C1|P|2.5.1\r"
#define A10			"AAAAAAAAAA"
#define LONG_APP		A10 A10 A10 A10 A10 A10 A10 A10 A10 A10 A10 A10 /* 120 bytes */

struct lane_case {
	const char *name;
	struct msg m;
	const char *sender;
	const char *s_lane; /* under CFG_ORDER_SENDER */
	const char *f_lane; /* CFG_ORDER_FEED */
	const char *p_lane; /* CFG_ORDER_PATIENT */
	const char *p_lane2;
	const char *phi; /* must appear in no key; NULL: none */
};

static const struct lane_case lane_cases[] = {
    {.name = "adt_a01: PID-3 repeats, components 1 and 4 of the first",
     .m = SMP("adt_a01_v251.hl7"),
     .sender = SENDER,
     .s_lane = "s:" SENDER,
     .f_lane = "f:EPIC^NORTHWIND",
     .p_lane = "p:EPIC^NORTHWIND:0c97acd6075f19f9", /* "100234^NORTHWIND" */
     .p_lane2 = "",
     .phi = "100234"},
    {.name = "no PID: the feed's lane",
     .m = RAW(ADT_MSH("LAB", "NW", "ADT^A01") "EVN|A01\r"),
     .sender = SENDER,
     .s_lane = "s:" SENDER,
     .f_lane = "f:LAB^NW",
     .p_lane = "f:LAB^NW",
     .p_lane2 = ""},
    {.name = "A40 merge: both patients",
     .m = RAW(ADT_MSH("PAS", "NW", "ADT^A40") "EVN|A40\rPID|1||200^^^NW^MR\r"
					      "MRG|100^^^NW^MR~9^^^X\r"),
     .sender = SENDER,
     .s_lane = "s:" SENDER,
     .f_lane = "f:PAS^NW",
     .p_lane = "p:PAS^NW:3f101f40d63ea892",  /* "200^NW" */
     .p_lane2 = "p:PAS^NW:4468c00dd5422c48", /* "100^NW" */
     .phi = "200^"},
    {.name = "MRG-1 is PID-3: one lane",
     .m = RAW(ADT_MSH("PAS", "NW", "ADT^A40") "PID|1||100^^^NW^MR\rMRG|100^^^NW^PI\r"),
     .sender = SENDER,
     .s_lane = "s:" SENDER,
     .f_lane = "f:PAS^NW",
     .p_lane = "p:PAS^NW:4468c00dd5422c48",
     .p_lane2 = ""},
    {.name = "MRG without PID: feed and prior patient",
     .m = RAW(ADT_MSH("PAS", "NW", "ADT^A40") "MRG|100^^^NW\r"),
     .sender = SENDER,
     .s_lane = "s:" SENDER,
     .f_lane = "f:PAS^NW",
     .p_lane = "f:PAS^NW",
     .p_lane2 = "p:PAS^NW:4468c00dd5422c48"},
    {.name = "MRG-1 without ID: no second lane",
     .m = RAW(ADT_MSH("PAS", "NW", "ADT^A40") "PID|1||200^^^NW\rMRG|^^^NW\r"),
     .sender = SENDER,
     .s_lane = "s:" SENDER,
     .f_lane = "f:PAS^NW",
     .p_lane = "p:PAS^NW:3f101f40d63ea892",
     .p_lane2 = ""},
    {.name = "first PID-3 repetition without ID: no patient",
     .m = RAW(ADT_MSH("PAS", "NW", "ADT^A08") "PID|1||^^^NW~123^^^NW\r"),
     .sender = SENDER,
     .s_lane = "s:" SENDER,
     .f_lane = "f:PAS^NW",
     .p_lane = "f:PAS^NW",
     .p_lane2 = ""},
    {.name = "PID-3 ID without authority",
     .m = RAW(ADT_MSH("PAS", "NW", "ADT^A08") "PID|1||42\r"),
     .sender = SENDER,
     .s_lane = "s:" SENDER,
     .f_lane = "f:PAS^NW",
     .p_lane = "p:PAS^NW:5cd131e3eb88f2d8", /* "42^" */
     .p_lane2 = ""},
    {.name = "LF-terminated segments",
     .m = SMP("lf_segments.hl7"),
     .sender = SENDER,
     .s_lane = "s:" SENDER,
     .f_lane = "f:EHR^X",
     .p_lane = "p:EHR^X:ee41eb24d71d52bf", /* "7^X" */
     .p_lane2 = ""},
    {.name = "CRLF-terminated segments",
     .m = RAW("MSH|^~\\&|EHR|X|Y|Z|20261126||ADT^A04|C|P|2.5.1\r\nPID|1||7^^^X^MR\r\n"),
     .sender = SENDER,
     .s_lane = "s:" SENDER,
     .f_lane = "f:EHR^X",
     .p_lane = "p:EHR^X:ee41eb24d71d52bf",
     .p_lane2 = ""},
    {.name = "custom separators: '#' fields, '!' components, '@' repetitions",
     .m = RAW("MSH#!@\\$#APP#FAC#R#RF#20261126##ADT!A01#C1#P#2.5.1\r"
	      "PID#1##555!!!AUTH!MR@666!!!OTHER\r"),
     .sender = SENDER,
     .s_lane = "s:" SENDER,
     .f_lane = "f:APP^FAC",
     .p_lane = "p:APP^FAC:57b288c0b809c061", /* "555^AUTH" */
     .p_lane2 = "",
     .phi = "555"},
    {.name = "long MSH-3: hashed feed",
     .m = RAW(ADT_MSH(LONG_APP, "FAC", "ADT^A08") "PID|1||42\r"),
     .sender = SENDER,
     .s_lane = "s:" SENDER,
     .f_lane = "f:h9c48442a3c2c7a63",
     .p_lane = "p:h9c48442a3c2c7a63:5cd131e3eb88f2d8",
     .p_lane2 = ""},
    {.name = "':' in MSH-3: hashed feed",
     .m = RAW(ADT_MSH("A:B", "FAC", "ADT^A08") "EVN|A08\r"),
     .sender = SENDER,
     .s_lane = "s:" SENDER,
     .f_lane = "f:he6070e8cef738858",
     .p_lane = "f:he6070e8cef738858",
     .p_lane2 = ""},
    {.name = "no MSH (X12): the sender's lane",
     .m = SMP("x12_270.x12"),
     .sender = "[fd00::1]:5000",
     .s_lane = "s:[fd00::1]:5000",
     .f_lane = "s:[fd00::1]:5000",
     .p_lane = "s:[fd00::1]:5000",
     .p_lane2 = ""},
    {.name = "no MSH, NULL sender",
     .m = RAW("<ClinicalDocument/>"),
     .sender = NULL,
     .s_lane = "s:",
     .f_lane = "s:",
     .p_lane = "s:",
     .p_lane2 = ""},
};

/* A key as lanes_push() takes it: non-empty, printable, short enough. */
static void check_key_shape(const char *name, const char *order, const char *k, int may_be_empty)
{
	size_t n = strnlen(k, MSGKEY_LANE_MAX);

	ck_assert_msg(n < MSGKEY_LANE_MAX, "%s/%s: key not terminated", name, order);
	ck_assert_msg(n > 0 || may_be_empty, "%s/%s: empty key", name, order);
	for (size_t i = 0; i < n; i++)
		ck_assert_msg(k[i] >= 0x20 && k[i] < 0x7f, "%s/%s: byte %zu not printable", name,
			      order, i);
}

START_TEST(test_lanes_every_order)
{
	static const char *const order_names[] = {"sender", "integration", "feed", "patient"};
	const struct lane_case *c = &lane_cases[_i];
	const enum cfg_order orders[] = {CFG_ORDER_SENDER, CFG_ORDER_INTEGRATION, CFG_ORDER_FEED,
					 CFG_ORDER_PATIENT};
	const char *want[] = {c->s_lane, "i", c->f_lane, c->p_lane};
	struct blob b = msg_get(&c->m);
	struct hl7_msh msh;
	const struct hl7_msh *mp = parse(&b, &msh);
	char lane[MSGKEY_LANE_MAX], lane2[MSGKEY_LANE_MAX];

	for (size_t o = 0; o < NELEMS(orders); o++) {
		memset(lane, 'x', sizeof(lane));
		memset(lane2, 'x', sizeof(lane2));
		msgkey_lanes(orders[o], c->sender, mp, b.p, b.len, lane, lane2);
		check_key_shape(c->name, order_names[o], lane, 0);
		check_key_shape(c->name, order_names[o], lane2, 1);
		ck_assert_msg(strcmp(lane, want[o]) == 0, "%s/%s: lane \"%s\", want \"%s\"",
			      c->name, order_names[o], lane, want[o]);
		ck_assert_msg(strcmp(lane2, orders[o] == CFG_ORDER_PATIENT ? c->p_lane2 : "") == 0,
			      "%s/%s: lane2 \"%s\"", c->name, order_names[o], lane2);
		if (c->phi) {
			ck_assert_msg(!strstr(lane, c->phi) && !strstr(lane2, c->phi),
				      "%s/%s: patient data in a key", c->name, order_names[o]);
		}
	}
	blob_free(&b);
}
END_TEST

static const struct {
	const char *name;
	const char *sender;
	const char *lane;
} sender_cases[] = {
    {"IPv4", "192.0.2.7:41000", "s:192.0.2.7:41000"},
    {"IPv6 keeps its colons", "[2001:db8::7]:41000", "s:[2001:db8::7]:41000"},
    {"empty", "", "s:"},
    {"not printable: hashed", "a\tb", "s:h"},
    {"long: hashed", LONG_APP, "s:h"},
};

/* A sender that cannot stand as text becomes "s:h" and 16 hex digits. */
START_TEST(test_lanes_sender_text)
{
	char lane[MSGKEY_LANE_MAX], lane2[MSGKEY_LANE_MAX];
	const char *want = sender_cases[_i].lane;

	msgkey_lanes(CFG_ORDER_SENDER, sender_cases[_i].sender, NULL, NULL, 0, lane, lane2);
	ck_assert_str_eq(lane2, "");
	if (strcmp(want, "s:h") != 0) {
		ck_assert_str_eq(lane, want);
		return;
	}
	ck_assert_msg(strlen(lane) == 3 + 16 && strncmp(lane, "s:h", 3) == 0, "%s: \"%s\"",
		      sender_cases[_i].name, lane);
	ck_assert_uint_eq(strspn(lane + 3, "0123456789abcdef"), 16);
}
END_TEST

/* Two patients of one feed go to two lanes; one patient of two feeds too. */
START_TEST(test_lanes_patients_apart)
{
	static const char m1[] = ADT_MSH("PAS", "NW", "ADT^A08") "PID|1||1^^^NW\r";
	static const char m2[] = ADT_MSH("PAS", "NW", "ADT^A08") "PID|1||2^^^NW\r";
	static const char m3[] = ADT_MSH("PAS", "SOUTH", "ADT^A08") "PID|1||1^^^NW\r";
	static const char m4[] = ADT_MSH("PAS", "NW", "ADT^A08") "PID|1||1^^^OTHER\r";
	const char *msgs[] = {m1, m2, m3, m4};
	char lanes[NELEMS(msgs)][MSGKEY_LANE_MAX], lane2[MSGKEY_LANE_MAX];

	for (size_t i = 0; i < NELEMS(msgs); i++) {
		struct blob b = {(char *)msgs[i], strlen(msgs[i])};
		struct hl7_msh msh;

		msgkey_lanes(CFG_ORDER_PATIENT, SENDER, parse(&b, &msh), b.p, b.len, lanes[i],
			     lane2);
		for (size_t j = 0; j < i; j++)
			ck_assert_str_ne(lanes[i], lanes[j]);
	}
}
END_TEST

static Suite *msgkey_suite(void)
{
	Suite *s = suite_create("msgkey");
	TCase *tc;

	tc = tcase_create("idem");
	tcase_add_loop_test(tc, test_idem_format, 0, (int)NELEMS(idem_cases));
	tcase_add_loop_test(tc, test_idem_every_byte_counts, 0, (int)NELEMS(idem_cases));
	tcase_add_loop_test(tc, test_idem_integration_counts, 0, (int)NELEMS(idem_cases));
	tcase_add_test(tc, test_idem_fields_unambiguous);
	tcase_add_test(tc, test_idem_other_fields_ignored);
	suite_add_tcase(s, tc);

	tc = tcase_create("lanes");
	tcase_add_loop_test(tc, test_lanes_every_order, 0, (int)NELEMS(lane_cases));
	tcase_add_loop_test(tc, test_lanes_sender_text, 0, (int)NELEMS(sender_cases));
	tcase_add_test(tc, test_lanes_patients_apart);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(msgkey_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
