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
	ck_assert_msg(n >= 10, "only %d golden files in %s", n, dir);
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
	tcase_add_loop_test(tc, test_strict, 0, NELEMS(strict_cases));
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
