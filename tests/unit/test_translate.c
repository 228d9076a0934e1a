/*
 * The outbound translator (JSON data models → HL7 v2): escaping, dates,
 * truncation at UTF-8 and escape boundaries, Latin-1, strict JSON, null and
 * missing keys, the event table, and the golden files of tests/translate
 * (JSON in, exact HL7 out; a missing directory fails the golden case).
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mllp-bridge/translate.h"

#define NELEMS(a) (sizeof(a) / sizeof((a)[0]))
#define NOW	  "20261130120000+0000"
#define DOC_MAX	  8192

static const struct xl_opts opts_utf8 = {.version = "2.5.1",
					 .sending_app = "MLLP-EDGE",
					 .sending_facility = "CLOUD",
					 .receiving_app = "EHR",
					 .receiving_facility = "HOSP",
					 .control_id = "XL-0001",
					 .now = NOW};

/* One document from pieces: the event, extra Meta members, the
 * Demographics members, and members after Patient (Visit, PriorPatient). */
struct piece {
	const char *event, *meta, *dem, *rest;
};

static void build(char *buf, const struct piece *p)
{
	int n = snprintf(buf, DOC_MAX,
			 "{\"Meta\":{\"DataModel\":\"PatientAdmin\",\"EventType\":\"%s\"%s},"
			 "\"Patient\":{\"Identifiers\":[{\"ID\":\"1\",\"IDType\":\"MR\"}],"
			 "\"Demographics\":{%s}}%s}",
			 p->event ? p->event : "NewPatient", p->meta ? p->meta : "",
			 p->dem ? p->dem : "\"FirstName\":\"Al\"", p->rest ? p->rest : "");

	ck_assert_int_lt(n, DOC_MAX);
}

static int run(const char *json, size_t len, int latin1, char **out, struct xl_error *err)
{
	struct xl_opts o = opts_utf8;
	size_t out_len;

	o.latin1 = latin1;
	return translate_json(json, len, &o, out, &out_len, err);
}

/* Field n of the first segment seg in msg ("" when absent), raw. */
static const char *field_of(const char *msg, const char *seg, unsigned n)
{
	static char buf[1024];
	const char *p = msg, *end;

	while (p && strncmp(p, seg, 3) != 0)
		p = (p = strchr(p, '\r')) ? p + 1 : NULL;
	ck_assert_msg(p != NULL, "no %s segment", seg);
	for (unsigned i = strcmp(seg, "MSH") == 0 ? 1 : 0; i < n; i++) {
		p += strcspn(p, "|\r");
		if (*p != '|')
			return "";
		p++;
	}
	end = p + strcspn(p, "|\r");
	snprintf(buf, sizeof(buf), "%.*s", (int)(end - p), p);
	return buf;
}

/* ---- a table of documents: a field's value, or a refusal ---- */

struct field_case {
	struct piece doc;
	int latin1;
	const char *seg;
	unsigned field;
	const char *want;		   /* the field, when translated */
	const char *err_path, *err_reason; /* the refusal (reason: a substring) */
};

static void check_case(const struct field_case *c)
{
	char json[DOC_MAX], *out = NULL;
	struct xl_error err;
	int rc;

	build(json, &c->doc);
	rc = run(json, strlen(json), c->latin1, &out, &err);
	if (c->err_path) {
		ck_assert_msg(rc == -EINVAL, "%s: rc %d, want -EINVAL", json, rc);
		ck_assert_ptr_null(out);
		ck_assert_str_eq(err.path, c->err_path);
		ck_assert_msg(strstr(err.reason, c->err_reason), "%s: reason \"%s\", want \"%s\"",
			      json, err.reason, c->err_reason);
		return;
	}
	ck_assert_msg(rc == 0, "%s: rc %d (%s: %s)", json, rc, err.path, err.reason);
	ck_assert_str_eq(field_of(out, c->seg, c->field), c->want);
	ck_assert_msg(strchr(out, '\n') == NULL && strchr(out, '\x0b') == NULL &&
			  strchr(out, '\x1c') == NULL,
		      "raw LF, VT or FS in %s", json);
	free(out);
}

#define DEM_LAST(v)                                                                                \
	{                                                                                          \
		NULL, NULL, "\"FirstName\":\"Al\",\"LastName\":" v, NULL                           \
	}
#define PID5(v, want)                                                                              \
	{                                                                                          \
		DEM_LAST(v), 0, "PID", 5, want, NULL, NULL                                         \
	}
#define LASTNAME "$.Patient.Demographics.LastName"

/* Escaping in one pass with the message's delimiters, \E\ first; null,
 * missing and "" all give an empty field. */
static const struct field_case escape_cases[] = {
    PID5("\"Doe\"", "Doe^Al"),
    PID5("\"A|B\"", "A\\F\\B^Al"),
    PID5("\"^~\\\\&\"", "\\S\\\\R\\\\E\\\\T\\^Al"),
    PID5("\"\\\\F\\\\\"", "\\E\\F\\E\\^Al"), /* an escape in the data stays data */
    PID5("\"a\\r\\nb\"", "a\\X0D\\\\X0A\\b^Al"),
    PID5("\"a\\tb\"", "a\tb^Al"),
    PID5("\"bel\\u0007\"", "bel\\X07\\^Al"),
    PID5("\"O'Brien\"", "O'Brien^Al"),
    PID5("42", "42^Al"),
    PID5("null", "^Al"),
    PID5("\"\"", "^Al"),
    {{NULL, NULL, "\"FirstName\":\"Al\"", NULL}, 0, "PID", 5, "^Al", NULL, NULL},
    {{NULL, NULL, "\"LastName\":null", NULL}, 0, "PID", 5, "", NULL, NULL},
    {{NULL, NULL, "\"LastName\":\"Doe\",\"MiddleName\":\"Q\"", NULL},
     0,
     "PID",
     5,
     "Doe^^Q",
     NULL,
     NULL},
    {{NULL, NULL, "\"Address\":null", NULL}, 0, "PID", 11, "", NULL, NULL},
    {{NULL, NULL, "\"Address\":{\"ZIP\":\"62701\"}", NULL}, 0, "PID", 11, "^^^^62701", NULL, NULL},
    {DEM_LAST("\"vt\\u000b\""), 0, NULL, 0, NULL, LASTNAME, "U+000B"},
    {DEM_LAST("\"fs\\u001c\""), 0, NULL, 0, NULL, LASTNAME, "U+001C"},
    {DEM_LAST("{}"), 0, NULL, 0, NULL, LASTNAME, "expected a string"},
    {DEM_LAST("true"), 0, NULL, 0, NULL, LASTNAME, "expected a string"},
    {DEM_LAST("1.5"), 0, NULL, 0, NULL, LASTNAME, "expected a string"},
};

START_TEST(test_escape)
{
	check_case(&escape_cases[_i]);
}
END_TEST

#define DOB(v, want)                                                                               \
	{                                                                                          \
		{NULL, NULL, "\"DOB\":" v, NULL}, 0, "PID", 7, want, NULL, NULL                    \
	}
#define DOB_BAD(v, why)                                                                            \
	{                                                                                          \
		{NULL, NULL, "\"DOB\":" v, NULL}, 0, NULL, 0, NULL, "$.Patient.Demographics.DOB",  \
		    why                                                                            \
	}
#define EVT(v, want)                                                                               \
	{                                                                                          \
		{NULL, ",\"EventDateTime\":" v, NULL, NULL}, 0, "EVN", 2, want, NULL, NULL         \
	}
#define EVT_BAD(v, why)                                                                            \
	{                                                                                          \
		{NULL, ",\"EventDateTime\":" v, NULL, NULL}, 0, NULL, 0, NULL,                     \
		    "$.Meta.EventDateTime", why                                                    \
	}

/* Dates keep their precision and offset; impossible ones are refused. */
static const struct field_case date_cases[] = {
    DOB("\"1980-02-14\"", "19800214"),
    DOB("\"1980-02\"", "198002"),
    DOB("\"1980\"", "1980"),
    DOB("\"2024-02-29\"", "20240229"),
    DOB("\"2000-02-29\"", "20000229"),
    DOB("null", ""),
    DOB_BAD("\"2026-02-30\"", "impossible day"),
    DOB_BAD("\"2025-02-29\"", "impossible day"),
    DOB_BAD("\"1900-02-29\"", "impossible day"),
    DOB_BAD("\"2026-04-31\"", "impossible day"),
    DOB_BAD("\"2026-13-01\"", "impossible month"),
    DOB_BAD("\"2026-00-10\"", "impossible month"),
    DOB_BAD("\"26-11-30\"", "expected a date"),
    DOB_BAD("\"2026/11/30\"", "expected a date"),
    DOB_BAD("\"2026-11-30T10:00\"", "expected a date"),
    DOB_BAD("19800214", "expected a string"),
    EVT("\"2026-11-30T12:34:56.789-05:00\"", "20261130123456.789-0500"),
    EVT("\"2026-11-30T12:34:56Z\"", "20261130123456+0000"),
    EVT("\"2026-11-30T12:34:56.1234+14:00\"", "20261130123456.1234+1400"),
    EVT("\"2026-11-30T12:34\"", "202611301234"),
    EVT("\"2026-11-30T00:00:00+05:30\"", "20261130000000+0530"),
    EVT("\"2026-11-30\"", "20261130"),
    EVT("null", NOW),
    EVT_BAD("\"2026-11-30T25:00:00Z\"", "impossible hour"),
    EVT_BAD("\"2026-11-30T12:60\"", "impossible minute"),
    EVT_BAD("\"2026-11-30T12:34:61\"", "impossible second"),
    EVT_BAD("\"2026-11-30T12:34:56.12345Z\"", "fraction"),
    EVT_BAD("\"2026-11-30T12:34:56.Z\"", "fraction"),
    EVT_BAD("\"2026-11-30T12:34:56+15:00\"", "offset"),
    EVT_BAD("\"2026-11-30T12:34:56+0500\"", "offset"),
    EVT_BAD("\"2026-11-30T12:34:56X\"", "expected Z or an offset"),
    EVT_BAD("\"2026-11-30T12\"", "impossible minute"),
    EVT_BAD("\"2026-02-30T12:00Z\"", "impossible day"),
};

START_TEST(test_dates)
{
	check_case(&date_cases[_i]);
}
END_TEST

/* Latin-1 output: mapped when the character has a Latin-1 form, else
 * refused with the path and the character. */
static const struct field_case charset_cases[] = {
    {DEM_LAST("\"Zo\\u00eb\""), 1, "PID", 5, "Zo\xeb^Al", NULL, NULL},
    {DEM_LAST("\"Zo\xc3\xab\""), 1, "PID", 5, "Zo\xeb^Al", NULL, NULL},
    {DEM_LAST("\"Zo\xc3\xab\""), 0, "PID", 5, "Zo\xc3\xab^Al", NULL, NULL},
    {DEM_LAST("\"\\u0141ukasz\""), 0, "PID", 5, "\xc5\x81ukasz^Al", NULL, NULL},
    {DEM_LAST("\"\\u0141ukasz\""), 1, NULL, 0, NULL, LASTNAME, "U+0141 cannot be represented"},
    {DEM_LAST("\"\xe2\x82\xac\""), 1, NULL, 0, NULL, LASTNAME, "U+20AC"},
    {DEM_LAST("\"\\ud83d\\ude00\""), 1, NULL, 0, NULL, LASTNAME, "U+1F600"},
    {{NULL, NULL, NULL, NULL}, 1, "MSH", 18, "8859/1", NULL, NULL},
    {{NULL, NULL, NULL, NULL}, 0, "MSH", 18, "UNICODE UTF-8", NULL, NULL},
};

START_TEST(test_charset)
{
	check_case(&charset_cases[_i]);
}
END_TEST

/* Truncation at PID-5.1's limit (80 bytes after escaping): the cut never
 * falls inside a UTF-8 sequence or an escape sequence, and what lies past
 * the cut is still checked. */
static const struct {
	unsigned pad; /* this many 'a' first */
	const char *tail, *want_tail;
	int latin1;
	const char *refused; /* a reason, when refused */
} cut_cases[] = {
    {80, "", "", 0, NULL},
    {80, "b", "", 0, NULL},
    {78, "\xc3\xa9", "\xc3\xa9", 0, NULL},
    {79, "\xc3\xa9", "", 0, NULL},
    {79, "\xc3\xa9", "\xe9", 1, NULL},
    {77, "\xe2\x82\xac", "\xe2\x82\xac", 0, NULL},
    {78, "\xe2\x82\xac", "", 0, NULL},
    {77, "\xf0\x9f\x98\x80", "", 0, NULL},
    {76, "\xf0\x9f\x98\x80", "\xf0\x9f\x98\x80", 0, NULL},
    {77, "|", "\\F\\", 0, NULL},
    {78, "|", "", 0, NULL},
    {79, "|x", "", 0, NULL},
    {75, "\\r", "\\X0D\\", 0, NULL},
    {76, "\\r", "", 0, NULL},
    {80, "\\u000b", NULL, 0, "U+000B"},
    {80, "\\u0141", NULL, 1, "U+0141"},
};

START_TEST(test_truncation)
{
	char json[DOC_MAX], dem[512], pad[128], want[256], *out = NULL;
	struct xl_error err;
	int rc;

	memset(pad, 'a', cut_cases[_i].pad);
	pad[cut_cases[_i].pad] = '\0';
	snprintf(dem, sizeof(dem), "\"LastName\":\"%s%s\"", pad, cut_cases[_i].tail);
	build(json, &(struct piece){NULL, NULL, dem, NULL});
	rc = run(json, strlen(json), cut_cases[_i].latin1, &out, &err);
	if (cut_cases[_i].refused) {
		ck_assert_int_eq(rc, -EINVAL);
		ck_assert_str_eq(err.path, LASTNAME);
		ck_assert_ptr_nonnull(strstr(err.reason, cut_cases[_i].refused));
		return;
	}
	ck_assert_msg(rc == 0, "rc %d: %s", rc, err.reason);
	snprintf(want, sizeof(want), "%s%s", pad, cut_cases[_i].want_tail);
	ck_assert_str_eq(field_of(out, "PID", 5), want);
	free(out);
}
END_TEST

#define EV(ev, meta, rest, want)                                                                   \
	{                                                                                          \
		{ev, meta, NULL, rest}, 0, "MSH", 9, want, NULL, NULL                              \
	}
#define VISIT(cls)    ",\"Visit\":{\"PatientClass\":\"" cls "\"}"
#define CANCELS(what) ",\"CancelledEvent\":\"" what "\""
#define PRIOR	      ",\"PriorPatient\":{\"Identifiers\":[{\"ID\":\"9\"}]}"

/* The event table, its selectors and its refusals; structure errors. */
static const struct field_case event_cases[] = {
    EV("Arrival", NULL, VISIT("Inpatient"), "ADT^A01^ADT_A01"),
    EV("Arrival", NULL, VISIT("Outpatient"), "ADT^A04^ADT_A01"),
    EV("Arrival", NULL, VISIT("Emergency"), "ADT^A04^ADT_A01"),
    EV("Arrival", NULL, NULL, "ADT^A04^ADT_A01"),
    EV("Registration", NULL, NULL, "ADT^A04^ADT_A01"),
    EV("PreAdmit", NULL, NULL, "ADT^A05^ADT_A05"),
    EV("Transfer", NULL, NULL, "ADT^A02^ADT_A02"),
    EV("Discharge", NULL, NULL, "ADT^A03^ADT_A03"),
    EV("Cancel", NULL, NULL, "ADT^A11^ADT_A09"),
    EV("Cancel", CANCELS("Arrival"), NULL, "ADT^A11^ADT_A09"),
    EV("Cancel", CANCELS("Transfer"), NULL, "ADT^A12^ADT_A12"),
    EV("Cancel", CANCELS("Discharge"), NULL, "ADT^A13^ADT_A01"),
    EV("Cancel", CANCELS("PreAdmit"), NULL, "ADT^A38^ADT_A38"),
    EV("NewPatient", NULL, NULL, "ADT^A28^ADT_A05"),
    EV("PatientUpdate", NULL, NULL, "ADT^A31^ADT_A05"),
    EV("VisitUpdate", NULL, NULL, "ADT^A08^ADT_A01"),
    EV("PatientMerge", NULL, PRIOR, "ADT^A40^ADT_A39"),
    {{"PatientMerge", NULL, NULL, NULL},
     0,
     NULL,
     0,
     NULL,
     "$.PriorPatient.Identifiers",
     "required for ADT A40"},
    {{"PatientMerge", NULL, NULL, ",\"PriorPatient\":{\"Identifiers\":[]}"},
     0,
     NULL,
     0,
     NULL,
     "$.PriorPatient.Identifiers",
     "required for ADT A40"},
    {{NULL, ",\"Test\":true", NULL, NULL}, 0, "MSH", 11, "T", NULL, NULL},
    {{NULL, ",\"Test\":false", NULL, NULL}, 0, "MSH", 11, "P", NULL, NULL},
    {{NULL, NULL, NULL, NULL}, 0, "MSH", 11, "P", NULL, NULL},
    {{NULL, NULL, NULL, NULL}, 0, "PV1", 2, "N", NULL, NULL},
    {{"Arrival", NULL, NULL, VISIT("Inpatient")}, 0, "PV1", 2, "I", NULL, NULL},
    {{"Cancel", CANCELS("Foo"), NULL, NULL}, 0, NULL, 0, NULL, "$.Meta.CancelledEvent", "Cancel"},
    {{"Merge", NULL, NULL, NULL}, 0, NULL, 0, NULL, "$.Meta.EventType", "unsupported event"},
    {{"Arrival", NULL, NULL, VISIT("Martian")},
     0,
     NULL,
     0,
     NULL,
     "$.Visit.PatientClass",
     "not a known code"},
    {{NULL, NULL, "\"Sex\":\"X\"", NULL},
     0,
     NULL,
     0,
     NULL,
     "$.Patient.Demographics.Sex",
     "not a known code"},
    {{NULL, NULL, "\"Sex\":\"female\"", NULL}, 0, "PID", 8, "F", NULL, NULL},
    {{NULL, NULL, NULL, ",\"PriorPatient\":{\"Identifiers\":7}"},
     0,
     "PID",
     3,
     "1^^^MR",
     NULL,
     NULL},
    {{"PatientMerge", NULL, NULL, ",\"PriorPatient\":{\"Identifiers\":7}"},
     0,
     NULL,
     0,
     NULL,
     "$.PriorPatient.Identifiers",
     "expected an array"},
    {{"PatientMerge", NULL, NULL, ",\"PriorPatient\":{\"Identifiers\":[{\"ID\":\"9\"},3]}"},
     0,
     NULL,
     0,
     NULL,
     "$.PriorPatient.Identifiers[1]",
     "expected an object"},
    {{"PatientMerge", NULL, NULL,
      ",\"PriorPatient\":{\"Identifiers\":[{\"ID\":\"9\"},{\"ID\":[]}]}"},
     0,
     NULL,
     0,
     NULL,
     "$.PriorPatient.Identifiers[1].ID",
     "expected a string"},
    {{"PatientMerge", NULL, NULL,
      ",\"PriorPatient\":{\"Identifiers\":[null,{\"ID\":\"9\",\"IDType\":\"MR\"}]}"},
     0,
     "MRG",
     1,
     "~9^^^MR",
     NULL,
     NULL},
    {{NULL, NULL, NULL, ",\"Visit\":\"x\""},
     0,
     NULL,
     0,
     NULL,
     "$.Visit.PatientClass",
     "expected an object at \"Visit\""},
};

START_TEST(test_events)
{
	check_case(&event_cases[_i]);
}
END_TEST

/* ---- Results, Order, Scheduling: groups, set IDs, codes ---- */

/* Field n of the nth (0-based) segment seg in msg ("" when absent), raw. */
static const char *field_nth(const char *msg, const char *seg, unsigned nth, unsigned n)
{
	const char *p = msg;

	for (;;) {
		ck_assert_msg(p && *p, "no %s segment #%u", seg, nth);
		if (strncmp(p, seg, 3) == 0 && nth-- == 0)
			break;
		p = (p = strchr(p, '\r')) ? p + 1 : NULL;
	}
	return field_of(p, seg, n);
}

/* The segment names of msg, space-separated. */
static const char *segments_of(const char *msg)
{
	static char buf[1024];
	size_t n = 0;

	for (const char *p = msg; *p && n + 4 < sizeof(buf); p = strchr(p, '\r') + 1)
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s%.3s", n ? " " : "", p);
	return buf;
}

struct group_case {
	const char *json;
	const char *segs;		   /* the segment names, when set */
	const char *seg;		   /* and/or one field: */
	unsigned nth, field;		   /* of the nth seg (0-based) */
	const char *want;		   /* its value */
	const char *err_path, *err_reason; /* or the refusal */
};

#define RESULTS(orders)                                                                            \
	"{\"Meta\":{\"DataModel\":\"Results\",\"EventType\":\"New\"},\"Patient\":{},"              \
	"\"Orders\":" orders "}"
#define RESULT(members) RESULTS("[{\"ID\":\"A\",\"Results\":[{" members "}]}]")
#define ORDER(ev, order)                                                                           \
	"{\"Meta\":{\"DataModel\":\"Order\",\"EventType\":\"" ev "\"},\"Patient\":{},"             \
	"\"Order\":" order "}"
#define SCHED(ev, rest) "{\"Meta\":{\"DataModel\":\"Scheduling\",\"EventType\":\"" ev "\"}" rest "}"
#define VISIT_ONLY	",\"Visit\":{\"VisitNumber\":\"APT1\"}"
#define TWO_ORDERS                                                                                 \
	RESULTS("[{\"ID\":\"A\",\"Notes\":[\"n1\",\"n2\"],\"Results\":[{\"Value\":\"1\"},"         \
		"{\"Value\":\"2\",\"Notes\":[\"r1\"]}]},"                                          \
		"{\"ID\":\"B\",\"Results\":[{\"Value\":\"3\",\"Notes\":[\"x\",\"y|z\"]}]}]")
#define SEGS(json, segs)                                                                           \
	{                                                                                          \
		json, segs, NULL, 0, 0, NULL, NULL, NULL                                           \
	}
#define FIELD(json, seg, nth, f, want)                                                             \
	{                                                                                          \
		json, NULL, seg, nth, f, want, NULL, NULL                                          \
	}
#define REFUSED(json, path, why)                                                                   \
	{                                                                                          \
		json, NULL, NULL, 0, 0, NULL, path, why                                            \
	}

/* Nesting, set IDs that restart per group, string elements, absent, null
 * and empty groups, objects as one element, and refusal paths. */
static const struct group_case group_cases[] = {
    SEGS(TWO_ORDERS, "MSH PID ORC OBR NTE NTE OBX OBX NTE ORC OBR OBX NTE NTE"),
    FIELD(TWO_ORDERS, "OBR", 0, 1, "1"),
    FIELD(TWO_ORDERS, "OBR", 1, 1, "2"),
    FIELD(TWO_ORDERS, "OBX", 1, 1, "2"),
    FIELD(TWO_ORDERS, "OBX", 2, 1, "1"), /* restarts per order */
    FIELD(TWO_ORDERS, "OBX", 2, 5, "3"),
    FIELD(TWO_ORDERS, "NTE", 1, 1, "2"),
    FIELD(TWO_ORDERS, "NTE", 2, 1, "1"), /* restarts per note list */
    FIELD(TWO_ORDERS, "NTE", 2, 3, "r1"),
    FIELD(TWO_ORDERS, "NTE", 4, 3, "y\\F\\z"),
    FIELD(TWO_ORDERS, "PID", 0, 1, "1"),
    FIELD(TWO_ORDERS, "ORC", 1, 1, "RE"),
    FIELD(TWO_ORDERS, "ORC", 1, 2, "B"),
    SEGS(RESULTS("[{\"ID\":\"A\"}]"), "MSH PID ORC OBR"),
    SEGS(RESULTS("[{\"ID\":\"A\",\"Results\":null,\"Notes\":[]}]"), "MSH PID ORC OBR"),
    SEGS(RESULTS("[{\"ID\":\"A\",\"Results\":[]}]"), "MSH PID ORC OBR"),
    SEGS(RESULTS("{\"ID\":\"A\",\"Results\":{\"Value\":\"1\"}}"), "MSH PID ORC OBR OBX"),
    FIELD(RESULTS("{\"ID\":\"A\",\"Results\":{\"Value\":\"1\"}}"), "OBX", 0, 1, "1"),
    SEGS(RESULTS("[null]"), "MSH PID ORC OBR"),
    FIELD(RESULTS("[null]"), "OBR", 0, 1, "1"),
    FIELD(RESULTS("[{\"Notes\":[null,\"b\"]}]"), "NTE", 0, 3, ""),
    FIELD(RESULTS("[{\"Notes\":[null,\"b\"]}]"), "NTE", 1, 1, "2"),
    FIELD(RESULTS("[{\"Notes\":[7]}]"), "NTE", 0, 3, "7"),
    SEGS("{\"Meta\":{\"DataModel\":\"Results\",\"EventType\":\"New\"},\"Visit\":{},"
	 "\"Orders\":[{}]}",
	 "MSH PID PV1 ORC OBR"),
    FIELD("{\"Meta\":{\"DataModel\":\"Results\",\"EventType\":\"New\"},\"Visit\":{},"
	  "\"Orders\":[{}]}",
	  "PV1", 0, 2, "N"),
    REFUSED(RESULTS("[{},{\"Results\":[{},{},{},{\"ValueType\":\"Bogus\"}]}]"),
	    "$.Orders[1].Results[3].ValueType", "not a known code"),
    REFUSED(RESULTS("[{\"Results\":[{\"Notes\":[\"a\",{}]}]}]"), "$.Orders[0].Results[0].Notes[1]",
	    "expected a string"),
    REFUSED(RESULTS("[{\"Results\":[\"x\"]}]"), "$.Orders[0].Results[0]", "expected an object"),
    REFUSED(RESULTS("[{\"Results\":7}]"), "$.Orders[0].Results", "expected an object"),
    REFUSED(RESULTS("[{\"ID\":\"12345678901234567890123\"}]"), "$.Orders[0].ID",
	    "longer than 22 bytes"),
    FIELD(RESULTS("[{\"ID\":\"1234567890123456789012\"}]"), "ORC", 0, 2, "1234567890123456789012"),
    REFUSED(RESULTS("[{\"Provider\":[]}]"), "$.Orders[0].Provider.NPI",
	    "expected an object at \"Provider\""),
    REFUSED(RESULTS("[]"), "$.Orders", "required for ORU R01"),
    REFUSED(RESULTS("null"), "$.Orders", "required for ORU R01"),
    REFUSED("{\"Meta\":{\"DataModel\":\"Results\",\"EventType\":\"New\"}}", "$.Orders",
	    "required for ORU R01"),
    REFUSED("{\"Meta\":{\"DataModel\":\"Results\",\"EventType\":\"Update\"}}", "$.Meta.EventType",
	    "unsupported event type for Results"),
    /* Order: one object, its notes and diagnoses. */
    SEGS(ORDER("New", "{\"ID\":\"O1\",\"Notes\":[\"a\"],\"Diagnoses\":[{\"Code\":\"E11\"},"
		      "{\"Code\":\"D50\",\"Type\":\"Final\"}]}"),
	 "MSH PID ORC OBR NTE DG1 DG1"),
    FIELD(ORDER("New",
		"{\"Diagnoses\":[{},{\"Code\":\"D50\",\"Name\":\"Anemia\",\"Type\":\"Final\"}]}"),
	  "DG1", 1, 0, "DG1|2||D50^Anemia|||F"),
    FIELD(ORDER("New", "{\"ID\":\"O1\"}"), "OBR", 0, 1, "1"),
    FIELD(ORDER("New", "{\"Priority\":\"Stat\"}"), "OBR", 0, 27, "^^^^^S"),
    REFUSED(ORDER("New", "null"), "$.Order", "required for ORM O01"),
    REFUSED(ORDER("New", "\"x\""), "$.Order", "expected an object"),
    REFUSED(ORDER("New", "{\"Diagnoses\":[{\"Type\":\"Maybe\"}]}"), "$.Order.Diagnoses[0].Type",
	    "not a known code"),
    /* Scheduling: optional PATIENT group and resources. */
    SEGS(SCHED("New", VISIT_ONLY), "MSH SCH RGS"),
    SEGS(SCHED("New", ",\"Patient\":{},\"Visit\":{\"Instructions\":[\"a\",\"b\"],"
		      "\"Location\":{\"Department\":\"D\"},\"AttendingProvider\":{\"ID\":\"9\"}}"),
	 "MSH SCH NTE NTE PID PV1 RGS AIL AIP"),
    FIELD(SCHED("New", ",\"Visit\":{\"Location\":{\"Department\":\"D\",\"Facility\":\"F\"}}"),
	  "AIL", 0, 3, "D^^^F"),
    FIELD(SCHED("New", ",\"Visit\":{\"Duration\":30}"), "SCH", 0, 10, "min"),
    FIELD(SCHED("New", VISIT_ONLY), "SCH", 0, 10, ""),
    FIELD(SCHED("Cancel", ",\"Visit\":{\"VisitDateTime\":\"2026-12-07T09:30:00Z\"}"), "SCH", 0, 11,
	  "^^^20261207093000+0000"),
    REFUSED(SCHED("New", ""), "$.Visit", "required for SIU S12"),
    REFUSED(SCHED("New", ",\"Visit\":{\"Duration\":1.5}"), "$.Visit.Duration", "expected a string"),
};

static void check_group(const struct group_case *c)
{
	struct xl_error err;
	char *out = NULL;
	int rc = run(c->json, strlen(c->json), 0, &out, &err);

	if (c->err_path) {
		ck_assert_msg(rc == -EINVAL, "%s: rc %d, want -EINVAL", c->json, rc);
		ck_assert_ptr_null(out);
		ck_assert_str_eq(err.path, c->err_path);
		ck_assert_msg(strstr(err.reason, c->err_reason), "%s: reason \"%s\", want \"%s\"",
			      c->json, err.reason, c->err_reason);
		return;
	}
	ck_assert_msg(rc == 0, "%s: rc %d (%s: %s)", c->json, rc, err.path, err.reason);
	if (c->segs)
		ck_assert_str_eq(segments_of(out), c->segs);
	if (c->seg && c->field == 0) { /* the whole segment */
		const char *p = out;

		for (unsigned k = 0; (p = strstr(p, c->seg)) && k < c->nth; k++)
			p += 3;
		ck_assert_ptr_nonnull(p);
		ck_assert_int_eq(strcspn(p, "\r"), strlen(c->want));
		ck_assert_int_eq(strncmp(p, c->want, strlen(c->want)), 0);
	} else if (c->seg) {
		ck_assert_str_eq(field_nth(out, c->seg, c->nth, c->field), c->want);
	}
	free(out);
}

START_TEST(test_groups)
{
	check_group(&group_cases[_i]);
}
END_TEST

/* Every new event's MSH-9 and its code (ORC-1, SCH-25). */
static const struct group_case new_event_cases[] = {
    FIELD(RESULT("\"Value\":\"1\""), "MSH", 0, 9, "ORU^R01^ORU_R01"),
    FIELD(ORDER("New", "{}"), "MSH", 0, 9, "ORM^O01^ORM_O01"),
    FIELD(ORDER("New", "{}"), "ORC", 0, 1, "NW"),
    FIELD(ORDER("Update", "{}"), "MSH", 0, 9, "ORM^O01^ORM_O01"),
    FIELD(ORDER("Update", "{}"), "ORC", 0, 1, "XO"),
    FIELD(ORDER("Cancel", "{}"), "MSH", 0, 9, "ORM^O01^ORM_O01"),
    FIELD(ORDER("Cancel", "{}"), "ORC", 0, 1, "CA"),
    FIELD(SCHED("New", VISIT_ONLY), "MSH", 0, 9, "SIU^S12^SIU_S12"),
    FIELD(SCHED("New", VISIT_ONLY), "SCH", 0, 25, "Booked"),
    FIELD(SCHED("Reschedule", VISIT_ONLY), "MSH", 0, 9, "SIU^S13^SIU_S12"),
    FIELD(SCHED("Reschedule", VISIT_ONLY), "SCH", 0, 25, "Booked"),
    FIELD(SCHED("Modification", VISIT_ONLY), "MSH", 0, 9, "SIU^S14^SIU_S12"),
    FIELD(SCHED("Modification", VISIT_ONLY), "SCH", 0, 25, "Booked"),
    FIELD(SCHED("Cancel", VISIT_ONLY), "MSH", 0, 9, "SIU^S15^SIU_S12"),
    FIELD(SCHED("Cancel", VISIT_ONLY), "SCH", 0, 25, "Cancelled"),
    FIELD(SCHED("NoShow", VISIT_ONLY), "MSH", 0, 9, "SIU^S26^SIU_S12"),
    FIELD(SCHED("NoShow", VISIT_ONLY), "SCH", 0, 25, "Noshow"),
    FIELD(SCHED("NoShow", VISIT_ONLY), "SCH", 0, 6, "^NoShow"),
    REFUSED(SCHED("Booked", VISIT_ONLY), "$.Meta.EventType", "unsupported event type"),
};

START_TEST(test_new_events)
{
	check_group(&new_event_cases[_i]);
}
END_TEST

#define OBX_CODE(key, val, f, want) FIELD(RESULT("\"" key "\":\"" val "\""), "OBX", 0, f, want)
#define OBR_CODE(key, val, f, want) FIELD(RESULTS("[{\"" key "\":\"" val "\"}]"), "OBR", 0, f, want)
#define BAD_CODE(json, path)	    REFUSED(json, path, "not a known code for this field")

/* Each mapped code, case-insensitively, and an unknown one refused at its
 * path; OBX-7 from ReferenceRange. */
static const struct group_case code_cases[] = {
    OBX_CODE("ValueType", "Numeric", 2, "NM"),
    OBX_CODE("ValueType", "String", 2, "ST"),
    OBX_CODE("ValueType", "Date", 2, "DT"),
    OBX_CODE("ValueType", "Time", 2, "TM"),
    OBX_CODE("ValueType", "DateTime", 2, "TS"),
    OBX_CODE("ValueType", "Coded Entry", 2, "CE"),
    OBX_CODE("ValueType", "Encapsulated Data", 2, "ED"),
    OBX_CODE("ValueType", "Formatted Text", 2, "FT"),
    OBX_CODE("ValueType", "Structured Numeric", 2, "SN"),
    OBX_CODE("ValueType", "Reference Pointer", 2, "RP"),
    OBX_CODE("ValueType", "Money", 2, "MO"),
    OBX_CODE("ValueType", "Price", 2, "CP"),
    OBX_CODE("ValueType", "Address", 2, "XAD"),
    OBX_CODE("ValueType", "Name", 2, "XPN"),
    OBX_CODE("ValueType", "Phone Number", 2, "XTN"),
    OBX_CODE("ValueType", "ID And Name", 2, "XCN"),
    OBX_CODE("ValueType", "numeric", 2, "NM"),
    BAD_CODE(RESULT("\"ValueType\":\"ID\""), "$.Orders[0].Results[0].ValueType"),
    OBX_CODE("AbnormalFlag", "Normal", 8, "N"),
    OBX_CODE("AbnormalFlag", "Abnormal", 8, "A"),
    OBX_CODE("AbnormalFlag", "Very Abnormal", 8, "AA"),
    OBX_CODE("AbnormalFlag", "Critically Abnormal", 8, "AA"),
    OBX_CODE("AbnormalFlag", "Low", 8, "L"),
    OBX_CODE("AbnormalFlag", "High", 8, "H"),
    OBX_CODE("AbnormalFlag", "Very Low", 8, "LL"),
    OBX_CODE("AbnormalFlag", "Very High", 8, "HH"),
    OBX_CODE("AbnormalFlag", "Critically Low", 8, "LL"),
    OBX_CODE("AbnormalFlag", "Critically High", 8, "HH"),
    OBX_CODE("AbnormalFlag", "Intermediate", 8, "I"),
    OBX_CODE("AbnormalFlag", "Resistant", 8, "R"),
    OBX_CODE("AbnormalFlag", "Susceptible", 8, "S"),
    OBX_CODE("AbnormalFlag", "Moderately Susceptible", 8, "MS"),
    OBX_CODE("AbnormalFlag", "Very Susceptible", 8, "VS"),
    BAD_CODE(RESULT("\"AbnormalFlag\":\"Inconclusive\""), "$.Orders[0].Results[0].AbnormalFlag"),
    OBX_CODE("Status", "Final", 11, "F"),
    OBX_CODE("Status", "Preliminary", 11, "P"),
    OBX_CODE("Status", "Corrected", 11, "C"),
    OBX_CODE("Status", "Canceled", 11, "X"),
    OBX_CODE("Status", "Deleted", 11, "D"),
    OBX_CODE("Status", "Incomplete", 11, "I"),
    OBX_CODE("Status", "Unavailable", 11, "X"),
    BAD_CODE(RESULT("\"Status\":\"None Specified\""), "$.Orders[0].Results[0].Status"),
    OBR_CODE("ResultsStatus", "Final", 25, "F"),
    OBR_CODE("ResultsStatus", "Preliminary", 25, "P"),
    OBR_CODE("ResultsStatus", "Corrected", 25, "C"),
    OBR_CODE("ResultsStatus", "Canceled", 25, "X"),
    OBR_CODE("ResultsStatus", "In Process", 25, "I"),
    BAD_CODE(RESULTS("[{},{\"ResultsStatus\":\"Done\"}]"), "$.Orders[1].ResultsStatus"),
    FIELD(ORDER("New", "{\"Priority\":\"Stat\"}"), "OBR", 0, 27, "^^^^^S"),
    FIELD(ORDER("New", "{\"Priority\":\"ASAP\"}"), "OBR", 0, 27, "^^^^^A"),
    FIELD(ORDER("New", "{\"Priority\":\"Routine\"}"), "OBR", 0, 27, "^^^^^R"),
    FIELD(ORDER("New", "{\"Priority\":\"Preoperative\"}"), "OBR", 0, 27, "^^^^^P"),
    FIELD(ORDER("New", "{\"Priority\":\"Timing Critical\"}"), "OBR", 0, 27, "^^^^^T"),
    FIELD(ORDER("New", "{\"Priority\":\"Callback\"}"), "OBR", 0, 27, "^^^^^C"),
    BAD_CODE(ORDER("New", "{\"Priority\":\"Soon\"}"), "$.Order.Priority"),
    FIELD(ORDER("New", "{\"Diagnoses\":[{\"Type\":\"Admitting\"}]}"), "DG1", 0, 6, "A"),
    FIELD(ORDER("New", "{\"Diagnoses\":[{\"Type\":\"Working\"}]}"), "DG1", 0, 6, "W"),
    FIELD(ORDER("New", "{\"Diagnoses\":[{\"Type\":\"Final\"}]}"), "DG1", 0, 6, "F"),
    FIELD(RESULT("\"ReferenceRange\":{\"Low\":3.5,\"High\":5.1}"), "OBX", 0, 7, "3.5-5.1"),
    FIELD(RESULT("\"ReferenceRange\":{\"Low\":0.1,\"High\":100}"), "OBX", 0, 7, "0.1-100"),
    FIELD(RESULT("\"ReferenceRange\":{\"Low\":60}"), "OBX", 0, 7, ">60"),
    FIELD(RESULT("\"ReferenceRange\":{\"Low\":null,\"High\":\"200\"}"), "OBX", 0, 7, "<200"),
    FIELD(RESULT("\"ReferenceRange\":{\"Low\":1,\"High\":2,\"Text\":\"1-2 a|b\"}"), "OBX", 0, 7,
	  "1-2 a\\F\\b"),
    FIELD(RESULT("\"ReferenceRange\":{}"), "OBX", 0, 7, ""),
    FIELD(RESULT("\"ReferenceRange\":null"), "OBX", 0, 7, ""),
    REFUSED(RESULT("\"ReferenceRange\":\"1-2\""), "$.Orders[0].Results[0].ReferenceRange",
	    "expected an object"),
    REFUSED(RESULT("\"ReferenceRange\":{\"Low\":[]}"), "$.Orders[0].Results[0].ReferenceRange",
	    "expected a number at \"Low\""),
    REFUSED(RESULT("\"ReferenceRange\":{\"Text\":5}"), "$.Orders[0].Results[0].ReferenceRange",
	    "expected a string at \"Text\""),
    REFUSED(RESULT("\"Value\":7.2"), "$.Orders[0].Results[0].Value", "expected a string"),
    REFUSED(RESULT("\"CompletionDateTime\":\"2026-02-30T10:00Z\""),
	    "$.Orders[0].Results[0].CompletionDateTime", "impossible day"),
};

START_TEST(test_codes)
{
	check_group(&code_cases[_i]);
}
END_TEST

/* XL_GROUP_MAX elements pass, one more is refused at the array's path. */
START_TEST(test_group_cap)
{
	size_t max = XL_JSON_MAX;
	char *json = malloc(max), *out = NULL;
	unsigned count = XL_GROUP_MAX + (unsigned)_i;
	struct xl_error err;
	size_t n;
	int rc;

	ck_assert_ptr_nonnull(json);
	n = (size_t)snprintf(json, max,
			     "{\"Meta\":{\"DataModel\":\"Results\",\"EventType\":"
			     "\"New\"},\"Orders\":[{},{\"Results\":[");
	for (unsigned i = 0; i < count; i++)
		n += (size_t)snprintf(json + n, max - n, "%s{\"Value\":\"%u\"}", i ? "," : "", i);
	n += (size_t)snprintf(json + n, max - n, "]}]}");
	rc = run(json, n, 0, &out, &err);
	if (_i == 0) {
		ck_assert_msg(rc == 0, "%s: %s", err.path, err.reason);
		ck_assert_str_eq(field_nth(out, "OBX", XL_GROUP_MAX - 1, 1), "100");
		free(out);
	} else {
		ck_assert_int_eq(rc, -EINVAL);
		ck_assert_str_eq(err.path, "$.Orders[1].Results");
		ck_assert_ptr_nonnull(strstr(err.reason, "more than 100 elements"));
	}
	free(json);
}
END_TEST

/* A document under XL_JSON_MAX whose escaping would pass XL_OUT_MAX is
 * refused: 33 notes of 21,845 '|' become 33 NTE-3 of 65,535 bytes. */
START_TEST(test_output_cap)
{
	size_t max = XL_JSON_MAX;
	char *json = malloc(max), *out = NULL;
	unsigned notes = 30 + 3 * (unsigned)_i; /* 30: under the cap */
	struct xl_error err;
	size_t n;
	int rc;

	ck_assert_ptr_nonnull(json);
	n = (size_t)snprintf(json, max,
			     "{\"Meta\":{\"DataModel\":\"Results\",\"EventType\":"
			     "\"New\"},\"Orders\":[{\"Notes\":[");
	for (unsigned i = 0; i < notes; i++) {
		n += (size_t)snprintf(json + n, max - n, "%s\"", i ? "," : "");
		memset(json + n, '|', 21845);
		n += 21845;
		json[n++] = '"';
	}
	n += (size_t)snprintf(json + n, max - n, "]}]}");
	ck_assert_uint_lt(n, XL_JSON_MAX);
	rc = run(json, n, 0, &out, &err);
	if (_i == 0) {
		ck_assert_msg(rc == 0, "%s: %s", err.path, err.reason);
		ck_assert_uint_gt(strlen(out), (size_t)notes * 65535);
		free(out);
	} else {
		ck_assert_int_eq(rc, -EINVAL);
		ck_assert_ptr_null(out);
		ck_assert_str_eq(err.path, "$");
		ck_assert_ptr_nonnull(strstr(err.reason, "longer than"));
	}
	free(json);
}
END_TEST

/* A note past NTE-3's limit is refused, not cut. */
START_TEST(test_whole)
{
	size_t len = XL_JSON_MAX;
	char *json = malloc(len), *out = NULL;
	unsigned pad = 65536 + (unsigned)_i;
	struct xl_error err;
	size_t n;
	int rc;

	ck_assert_ptr_nonnull(json);
	n = (size_t)snprintf(json, len,
			     "{\"Meta\":{\"DataModel\":\"Results\",\"EventType\":"
			     "\"New\"},\"Orders\":[{\"Notes\":[\"");
	memset(json + n, 'a', pad);
	n += pad;
	n += (size_t)snprintf(json + n, len - n, "\"]}]}");
	rc = run(json, n, 0, &out, &err);
	if (_i == 0) {
		ck_assert_msg(rc == 0, "%s: %s", err.path, err.reason);
		free(out);
	} else {
		ck_assert_int_eq(rc, -EINVAL);
		ck_assert_str_eq(err.path, "$.Orders[0].Notes[0]");
		ck_assert_ptr_nonnull(strstr(err.reason, "longer than 65536 bytes"));
	}
	free(json);
}
END_TEST

/* ---- strict JSON and limits ---- */

static const struct {
	const char *json;
	size_t len; /* 0: strlen */
	const char *err_path, *reason;
} strict_cases[] = {
    {"{\"Meta\":{\"DataModel\":\"PatientAdmin\",\"DataModel\":\"PatientAdmin\"}}", 0, "$",
     "duplicate"},
    {"{\"Meta\":{\"DataModel\":\"Patient\xff\"}}", 0, "$", "invalid JSON"},
    {"{\"Meta\":{\"DataModel\":\"\xc3\x28\"}}", 0, "$", "invalid JSON"},
    {"{\"Meta\":{\"DataModel\":\"Pa\\u0000\"}}", 0, "$", "\\u0000"},
    {"{\"Meta\":{\"DataModel\":\"PatientAdmin\"}} x", 0, "$", "invalid JSON"},
    {"{\"Meta\":", 0, "$", "invalid JSON"},
    {"[]", 0, "$", "expected a JSON object"},
    {"\"x\"", 0, "$", "invalid JSON"},
    {"{\"Meta\":{\"DataModel\":\"PatientAdmin\"}}\0", 38, "$", "invalid JSON"},
    {"{}", 0, "$.Meta.DataModel", "missing data model"},
    {"{\"Meta\":{\"DataModel\":\"Media\"}}", 0, "$.Meta.DataModel", "unsupported data model"},
    {"{\"Meta\":{\"DataModel\":\"PatientAdmin\"}}", 0, "$.Meta.EventType", "missing event"},
    {"{\"Meta\":[]}", 0, "$.Meta.DataModel", "expected an object at \"Meta\""},
    {"{\"Meta\":{\"DataModel\":7}}", 0, "$.Meta.DataModel", "expected a string"},
};

START_TEST(test_strict)
{
	const char *j = strict_cases[_i].json;
	size_t len = strict_cases[_i].len ? strict_cases[_i].len : strlen(j);
	struct xl_error err;
	char *out = NULL;
	int rc = run(j, len, 0, &out, &err);

	ck_assert_msg(rc == -EINVAL, "case %d: rc %d", _i, rc);
	ck_assert_ptr_null(out);
	ck_assert_str_eq(err.path, strict_cases[_i].err_path);
	ck_assert_msg(strstr(err.reason, strict_cases[_i].reason), "case %d: reason \"%s\"", _i,
		      err.reason);
}
END_TEST

/* jansson's own message quotes the input near the error; a refusal's
 * reason is logged, so it must not (translate.h: no patient data). */
static const char *const leaky_json[] = {
    "{\"Patient\":{\"Demographics\":{\"LastName\" \"Hostilname\"}}}",
    "{\"Patient\":{\"Demographics\":{\"LastName\":\"Hostil\xffname\"}}}",
    "{\"Patient\":{\"Demographics\":{\"LastName\":\"Hostil\x1cname\"}}}",
    "{\"Patient\":{\"Demographics\":{\"LastName\":\"Hostil\\u0000name\"}}}",
    "{\"Patient\":{\"Demographics\":{\"LastName\":\"Hostilname\"}}} Hostilname",
    "{\"Patient\":{\"Demographics\":{\"LastName\":Hostilname}}}",
    "{\"Hostilname\":1,\"Hostilname\":2}",
};

START_TEST(test_reason_holds_no_input)
{
	struct xl_error err;
	char *out = NULL;
	int rc = run(leaky_json[_i], strlen(leaky_json[_i]), 0, &out, &err);

	ck_assert_int_eq(rc, -EINVAL);
	ck_assert_msg(strstr(err.reason, "invalid JSON"), "case %d: \"%s\"", _i, err.reason);
	ck_assert_msg(!strstr(err.reason, "Hostil") && !strstr(err.path, "Hostil"),
		      "case %d: \"%s: %s\"", _i, err.path, err.reason);
}
END_TEST

/* Nesting beyond XL_JSON_DEPTH_MAX is refused before parsing; brackets
 * inside strings do not count. */
START_TEST(test_depth)
{
	static char json[4096];
	int depth = XL_JSON_DEPTH_MAX - 1 + _i; /* + 1 for the root object */
	struct xl_error err;
	char *out = NULL;
	size_t n = 0;
	int rc;

	n += (size_t)sprintf(json + n, "{\"Meta\":{\"DataModel\":\"PatientAdmin\","
				       "\"EventType\":\"NewPatient\",\"S\":\"[[[[{{{{\"},\"X\":");
	for (int i = 0; i < depth; i++)
		json[n++] = '[';
	for (int i = 0; i < depth; i++)
		json[n++] = ']';
	n += (size_t)sprintf(json + n, "}");
	rc = run(json, n, 0, &out, &err);
	if (_i == 0) {
		ck_assert_msg(rc == 0, "depth %d refused: %s", depth + 1, err.reason);
		free(out);
		return;
	}
	ck_assert_int_eq(rc, -EINVAL);
	ck_assert_str_eq(err.path, "$");
	ck_assert_ptr_nonnull(strstr(err.reason, "nested deeper than"));
}
END_TEST

/* Past XL_JSON_MAX nothing is parsed: -EMSGSIZE even for garbage. */
START_TEST(test_size)
{
	size_t len = XL_JSON_MAX + (size_t)_i;
	char *json = malloc(len), *out = NULL;
	struct xl_error err;
	int rc;

	ck_assert_ptr_nonnull(json);
	memset(json, ' ', len);
	json[0] = '{';
	memcpy(json + len - 1, "}", 1);
	rc = run(json, len, 0, &out, &err);
	if (_i == 0) {
		ck_assert_int_eq(rc, -EINVAL); /* parsed: {} has no Meta */
		ck_assert_str_eq(err.path, "$.Meta.DataModel");
	} else {
		ck_assert_int_eq(rc, -EMSGSIZE);
		ck_assert_ptr_nonnull(strstr(err.reason, "larger than"));
	}
	ck_assert_ptr_null(out);
	free(json);
}
END_TEST

/* A 10 MiB string is refused by size, not translated and cut. */
START_TEST(test_huge_string)
{
	size_t len = 10 * 1024 * 1024;
	char *json = malloc(len), *out = NULL;
	struct xl_error err;

	ck_assert_ptr_nonnull(json);
	memset(json, 'a', len);
	memcpy(json, "{\"x\":\"", 6);
	memcpy(json + len - 2, "\"}", 2);
	ck_assert_int_eq(run(json, len, 0, &out, &err), -EMSGSIZE);
	free(json);
}
END_TEST

START_TEST(test_opts)
{
	static const char doc[] =
	    "{\"Meta\":{\"DataModel\":\"PatientAdmin\",\"EventType\":\"NewPatient\"}}";
	struct xl_opts o = opts_utf8;
	struct xl_error err;
	size_t len;
	char *out = NULL;

	o.control_id = "";
	ck_assert_int_eq(translate_json("{}", 2, &o, &out, &len, &err), -EINVAL);
	ck_assert_str_eq(err.path, "(opts)");
	o = opts_utf8;
	o.sending_app = "A|B";
	o.receiving_facility = NULL;
	ck_assert_int_eq(translate_json(doc, strlen(doc), &o, &out, &len, &err), 0);
	ck_assert_str_eq(field_of(out, "MSH", 3), "A\\F\\B");
	ck_assert_str_eq(field_of(out, "MSH", 6), "");
	ck_assert_str_eq(field_of(out, "MSH", 10), "XL-0001");
	ck_assert_uint_eq(len, strlen(out));
	ck_assert_int_eq(out[len - 1], '\r');
	free(out);
}
END_TEST

/* ---- golden files ---- */

static const char *golden_dir(void)
{
	const char *d = getenv("TRANSLATE_DIR");

	return d && *d ? d : "tests/translate";
}

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = malloc(XL_JSON_MAX + 1);

	ck_assert_msg(f != NULL, "cannot open %s", path);
	ck_assert_ptr_nonnull(buf);
	*len = fread(buf, 1, XL_JSON_MAX, f);
	buf[*len] = '\0';
	fclose(f);
	return buf;
}

static void golden_one(const char *dir, const char *name)
{
	char path[512], *json, *want, *out = NULL;
	size_t jlen, wlen, olen;
	struct xl_error err;
	struct xl_opts o = opts_utf8;
	int rc;

	o.latin1 = strstr(name, "latin1") != NULL;
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	json = slurp(path, &jlen);
	snprintf(path + strlen(path) - 5, 6, ".hl7");
	want = slurp(path, &wlen);
	rc = translate_json(json, jlen, &o, &out, &olen, &err);
	ck_assert_msg(rc == 0, "%s: rc %d (%s: %s)", name, rc, err.path, err.reason);
	ck_assert_msg(olen == wlen && memcmp(out, want, olen) == 0, "%s: differs from %s", name,
		      path);
	free(out);
	free(json);
	free(want);
}

START_TEST(test_golden)
{
	const char *dir = golden_dir();
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	ck_assert_msg(d != NULL, "cannot open %s (set TRANSLATE_DIR)", dir);
	while ((e = readdir(d)) != NULL) {
		size_t l = strlen(e->d_name);

		if (l > 5 && strcmp(e->d_name + l - 5, ".json") == 0) {
			golden_one(dir, e->d_name);
			n++;
		}
	}
	closedir(d);
	ck_assert_msg(n >= 23, "only %d golden files in %s", n, dir);
}
END_TEST

static Suite *translate_suite(void)
{
	Suite *s = suite_create("translate");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 30);
	tcase_add_loop_test(tc, test_escape, 0, NELEMS(escape_cases));
	tcase_add_loop_test(tc, test_dates, 0, NELEMS(date_cases));
	tcase_add_loop_test(tc, test_charset, 0, NELEMS(charset_cases));
	tcase_add_loop_test(tc, test_truncation, 0, NELEMS(cut_cases));
	tcase_add_loop_test(tc, test_events, 0, NELEMS(event_cases));
	tcase_add_loop_test(tc, test_groups, 0, NELEMS(group_cases));
	tcase_add_loop_test(tc, test_new_events, 0, NELEMS(new_event_cases));
	tcase_add_loop_test(tc, test_codes, 0, NELEMS(code_cases));
	tcase_add_loop_test(tc, test_group_cap, 0, 2);
	tcase_add_loop_test(tc, test_output_cap, 0, 2);
	tcase_add_loop_test(tc, test_whole, 0, 2);
	tcase_add_loop_test(tc, test_strict, 0, NELEMS(strict_cases));
	tcase_add_loop_test(tc, test_reason_holds_no_input, 0, NELEMS(leaky_json));
	tcase_add_loop_test(tc, test_depth, 0, 2);
	tcase_add_loop_test(tc, test_size, 0, 2);
	tcase_add_test(tc, test_huge_string);
	tcase_add_test(tc, test_opts);
	tcase_add_test(tc, test_golden);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(translate_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
