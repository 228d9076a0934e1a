/*
 * HL7 header parsing, payload classification, charsets, ACK building and
 * finding a segment's field.
 *
 * Tables over every shared sample (read from disk when there, else the
 * embedded copies in samples.h; a missing file fails the "samples" case)
 * plus hand-made edge cases. ACKs are compared byte for byte.
 */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "mllp-bridge/hl7.h"
#include "samples.h"

#define NELEMS(a) (sizeof(a) / sizeof((a)[0]))
#define TS	  "20261126083001+0000"

static int str_is(const struct hl7_str *s, const char *want)
{
	if (!want)
		return s->p == NULL;
	return s->p && s->len == strlen(want) && memcmp(s->p, want, s->len) == 0;
}

static const char *show(const struct hl7_str *s)
{
	static char buf[4][128];
	static int k;
	char *b = buf[k++ % 4];

	if (!s->p)
		return "(absent)";
	snprintf(b, sizeof(buf[0]), "\"%.*s\"", (int)(s->len < 100 ? s->len : 100), s->p);
	return b;
}

/* ---- embedded copies ---- */

/* The shared tree is this check's input: without it, it fails. */
START_TEST(test_embedded_samples_match_disk)
{
	char path[SAMPLE_PATH_MAX];
	struct blob disk;

	if (sample_read_file(embedded_samples[_i].name, &disk) != 0)
		ck_abort_msg("sample %s: cannot read it (set SAMPLES to the samples directory)",
			     sample_path(embedded_samples[_i].name, path));
	ck_assert_msg(disk.len == embedded_samples[_i].len &&
			  memcmp(disk.p, embedded_samples[_i].data, disk.len) == 0,
		      "embedded copy of %s differs from %s", embedded_samples[_i].name,
		      samples_dir());
	blob_free(&disk);
}
END_TEST

/* ---- payload kind ---- */

static const struct {
	struct msg m;
	enum payload_kind kind;
} kind_cases[] = {
    {SMP("adt_a01_v251.hl7"), PAYLOAD_HL7},
    {SMP("adt_a08_latin1.hl7"), PAYLOAD_HL7},
    {SMP("oru_r01_enhanced_ack.hl7"), PAYLOAD_HL7},
    {SMP("orm_o01_v23.hl7"), PAYLOAD_HL7},
    {SMP("vxu_v04_repeats_escapes.hl7"), PAYLOAD_HL7},
    {SMP("lf_segments.hl7"), PAYLOAD_HL7},
    {SMP("bad_encoding_chars.hl7"), PAYLOAD_HL7},
    {SMP("bad_no_control_id.hl7"), PAYLOAD_HL7},
    {SMP("bad_no_msh.hl7"), PAYLOAD_UNKNOWN},
    {SMP("x12_270.x12"), PAYLOAD_X12},
    {SMP("ccd_minimal.xml"), PAYLOAD_XML},
    {RAW("\xef\xbb\xbfMSH|^~\\&|"), PAYLOAD_HL7},
    {RAW(" \r\n\tMSH|"), PAYLOAD_HL7},
    {RAW("FHS|^~\\&|A"), PAYLOAD_HL7},
    {RAW("BHS|^~\\&|A"), PAYLOAD_HL7},
    {RAW("MSH"), PAYLOAD_HL7},
    {RAW("ISA*00*"), PAYLOAD_X12},
    {RAW("\r\nISA*00*"), PAYLOAD_X12},
    {RAW("\xef\xbb\xbf<?xml version=\"1.0\"?>"), PAYLOAD_XML},
    {RAW("  <ClinicalDocument/>"), PAYLOAD_XML},
    {RAW(""), PAYLOAD_UNKNOWN},
    {RAW("   "), PAYLOAD_UNKNOWN},
    {RAW("\xef\xbb\xbf"), PAYLOAD_UNKNOWN},
    {RAW("MS"), PAYLOAD_UNKNOWN},
    {RAW("msh|^~\\&|"), PAYLOAD_UNKNOWN},
    {RAW("{\"resourceType\":\"Bundle\"}"), PAYLOAD_UNKNOWN},
    {RAW("\0MSH|"), PAYLOAD_UNKNOWN},
};

START_TEST(test_payload_kind)
{
	struct blob b = msg_get(&kind_cases[_i].m);

	ck_assert_int_eq(hl7_payload_kind(b.p, b.len), kind_cases[_i].kind);
	blob_free(&b);
}
END_TEST

/* ---- MSH ---- */

enum { F_SAPP, F_SFAC, F_RAPP, F_RFAC, F_TYPE, F_CTL, F_PROC, F_VER, F_ACC, F_APP, F_CS, NF };

static const char *const field_names[NF] = {"MSH-3",  "MSH-4",	"MSH-5",  "MSH-6",
					    "MSH-9",  "MSH-10", "MSH-11", "MSH-12",
					    "MSH-15", "MSH-16", "MSH-18"};

struct parse_case {
	const char *name;
	struct msg m;
	const char *why; /* NULL: parses */
	char fs;
	const char *enc;   /* "" when zeroed */
	int fields;	   /* check f[], enhanced and mime */
	const char *f[NF]; /* NULL: absent */
	int enhanced;
	const char *mime; /* NULL: unknown */
};

#define OK_FIELDS(...) .fields = 1, .f = {__VA_ARGS__}
#define STD	       .fs = '|', .enc = "^~\\&"

static const struct parse_case parse_cases[] = {
    /* The shared samples. */
    {.name = "adt_a01_v251",
     .m = SMP("adt_a01_v251.hl7"),
     STD,
     OK_FIELDS("EPIC", "NORTHWIND", "REDOX", "CLOUD", "ADT^A01^ADT_A01", "NW000123", "P", "2.5.1",
	       NULL, NULL, NULL),
     .mime = "UTF-8"},
    {.name = "oru_r01_enhanced_ack",
     .m = SMP("oru_r01_enhanced_ack.hl7"),
     STD,
     OK_FIELDS("LIS", "NORTHWIND_LAB", "REDOX", "CLOUD", "ORU^R01^ORU_R01", "LAB55501", "P",
	       "2.5.1", "AL", "NE", NULL),
     .enhanced = 1,
     .mime = "UTF-8"},
    {.name = "adt_a08_latin1",
     .m = SMP("adt_a08_latin1.hl7"),
     STD,
     OK_FIELDS("PAS", "HOPITAL_NORD", "REDOX", "CLOUD", "ADT^A08", "HN42", "P", "2.5", "", "",
	       "8859/1"),
     .mime = "ISO-8859-1"},
    {.name = "orm_o01_v23",
     .m = SMP("orm_o01_v23.hl7"),
     STD,
     OK_FIELDS("CPOE", "NORTHWIND", "RIS", "NORTHWIND", "ORM^O01", "ORD0001", "P", "2.3", NULL,
	       NULL, NULL),
     .mime = "UTF-8"},
    {.name = "vxu_v04_repeats_escapes",
     .m = SMP("vxu_v04_repeats_escapes.hl7"),
     STD,
     OK_FIELDS("EHR", "CLINIC", "IIS", "STATE", "VXU^V04^VXU_V04", "VX9", "P", "2.5.1", NULL, NULL,
	       NULL),
     .mime = "UTF-8"},
    {.name = "lf_segments (LF ends segments: accepted)",
     .m = SMP("lf_segments.hl7"),
     STD,
     OK_FIELDS("EHR", "X", "Y", "Z", "ADT^A04", "LFSEP1", "P", "2.5.1", NULL, NULL, NULL),
     .mime = "UTF-8"},
    {.name = "bad_no_msh", .m = SMP("bad_no_msh.hl7"), .why = "no MSH segment", .enc = ""},
    {.name = "bad_encoding_chars (still mirrorable)",
     .m = SMP("bad_encoding_chars.hl7"),
     .why = "bad encoding characters in MSH-2",
     .fs = '|',
     .enc = "",
     OK_FIELDS("EHR", "X", "Y", "Z", "ADT^A01", "BADENC", "P", "2.5.1", NULL, NULL, NULL),
     .mime = "UTF-8"},
    {.name = "bad_no_control_id",
     .m = SMP("bad_no_control_id.hl7"),
     .why = "MSH-10 message control ID is empty",
     STD,
     OK_FIELDS("EHR", "X", "Y", "Z", "ADT^A01", "", "P", "2.5.1", NULL, NULL, NULL),
     .mime = "UTF-8"},
    {.name = "x12_270", .m = SMP("x12_270.x12"), .why = "no MSH segment", .enc = ""},
    {.name = "ccd_minimal", .m = SMP("ccd_minimal.xml"), .why = "no MSH segment", .enc = ""},

    /* MSH-1 */
    {.name = "empty", .m = RAW(""), .why = "no MSH segment", .enc = ""},
    {.name = "MSH alone", .m = RAW("MSH"), .why = "bad field separator in MSH-1", .enc = ""},
    {.name = "MSH then CR", .m = RAW("MSH\r"), .why = "bad field separator in MSH-1", .enc = ""},
    {.name = "MSH-1 letter",
     .m = RAW("MSHA^~\\&A"),
     .why = "bad field separator in MSH-1",
     .enc = ""},
    {.name = "MSH-1 digit",
     .m = RAW("MSH1^~\\&1"),
     .why = "bad field separator in MSH-1",
     .enc = ""},
    {.name = "MSH-1 space",
     .m = RAW("MSH ^~\\& "),
     .why = "bad field separator in MSH-1",
     .enc = ""},
    {.name = "MSH-1 NUL", .m = RAW("MSH\0^~\\&"), .why = "bad field separator in MSH-1", .enc = ""},

    /* MSH-2 */
    {.name = "MSH-2 empty",
     .m = RAW("MSH||A|B|C|D|T||ADT^A01|ID1|P|2.5.1"),
     .why = "bad encoding characters in MSH-2",
     .fs = '|',
     .enc = ""},
    {.name = "MSH-2 three chars",
     .m = RAW("MSH|^~\\|A|B|C|D|T||ADT^A01|ID1|P|2.5.1"),
     .why = "bad encoding characters in MSH-2",
     .fs = '|',
     .enc = ""},
    {.name = "MSH-2 six chars",
     .m = RAW("MSH|^~\\&#!|A|B|C|D|T||ADT^A01|ID1|P|2.5.1"),
     .why = "bad encoding characters in MSH-2",
     .fs = '|',
     .enc = ""},
    {.name = "MSH-2 repeated char",
     .m = RAW("MSH|^^\\&|A|B|C|D|T||ADT^A01|ID1|P|2.5.1"),
     .why = "bad encoding characters in MSH-2",
     .fs = '|',
     .enc = ""},
    {.name = "MSH-2 letter",
     .m = RAW("MSH|^~\\A|A|B|C|D|T||ADT^A01|ID1|P|2.5.1"),
     .why = "bad encoding characters in MSH-2",
     .fs = '|',
     .enc = ""},
    {.name = "MSH-2 digit",
     .m = RAW("MSH|^~\\1|A|B|C|D|T||ADT^A01|ID1|P|2.5.1"),
     .why = "bad encoding characters in MSH-2",
     .fs = '|',
     .enc = ""},
    {.name = "MSH-2 ends the segment early",
     .m = RAW("MSH|^~\r|A|B"),
     .why = "bad encoding characters in MSH-2",
     .fs = '|',
     .enc = ""},
    {.name = "MSH-2 with the 2.7 truncation character",
     .m = RAW("MSH|^~\\&#|A|B|C|D|T||ADT^A01|ID1|P|2.7"),
     .fs = '|',
     .enc = "^~\\&#",
     OK_FIELDS("A", "B", "C", "D", "ADT^A01", "ID1", "P", "2.7", NULL, NULL, NULL),
     .mime = "UTF-8"},
    {.name = "other separators",
     .m = RAW("MSH#!@$%#A#B#C#D#T##ADT!A01#ID1#T#2.4\r"),
     .fs = '#',
     .enc = "!@$%",
     OK_FIELDS("A", "B", "C", "D", "ADT!A01", "ID1", "T", "2.4", NULL, NULL, NULL),
     .mime = "UTF-8"},

    /* Segment boundaries and what may come before MSH. */
    {.name = "CRLF segments",
     .m = RAW("MSH|^~\\&|A|B|C|D|T||ADT^A01|ID1|P|2.5.1\r\nEVN|A01\r\n"),
     STD,
     OK_FIELDS("A", "B", "C", "D", "ADT^A01", "ID1", "P", "2.5.1", NULL, NULL, NULL),
     .mime = "UTF-8"},
    {.name = "BOM and whitespace before MSH",
     .m = RAW("\xef\xbb\xbf \r\nMSH|^~\\&|A|B|C|D|T||ADT^A01|ID1|P|2.5.1\r"),
     STD,
     OK_FIELDS("A", "B", "C", "D", "ADT^A01", "ID1", "P", "2.5.1", NULL, NULL, NULL),
     .mime = "UTF-8"},
    {.name = "batch headers before MSH",
     .m = RAW("FHS|^~\\&|F\rBHS|^~\\&|B\rMSH|^~\\&|A|B|C|D|T||ADT^A01|ID1|P|2.5.1\rBTS|1\r"),
     STD,
     OK_FIELDS("A", "B", "C", "D", "ADT^A01", "ID1", "P", "2.5.1", NULL, NULL, NULL),
     .mime = "UTF-8"},
    {.name = "MSH not first",
     .m = RAW("PID|1\rMSH|^~\\&|A|B|C|D|T||ADT^A01|ID1|P|2.5.1\r"),
     .why = "no MSH segment",
     .enc = ""},

    /* MSH-15, MSH-16, MSH-18 */
    {.name = "MSH-18 repeats, fields after it",
     .m = RAW("MSH|^~\\&|A|B|C|D|T||ADT^A01|ID1|P|2.5.1|||AL||USA|UNICODE UTF-8~8859/1|EN|X\r"),
     STD,
     OK_FIELDS("A", "B", "C", "D", "ADT^A01", "ID1", "P", "2.5.1", "AL", "", "UNICODE UTF-8"),
     .enhanced = 1,
     .mime = "UTF-8"},
    {.name = "MSH-18 unknown charset",
     .m = RAW("MSH|^~\\&|A|B|C|D|T||ADT^A01|ID1|P|2.5.1||||||KOI8-R\r"),
     STD,
     OK_FIELDS("A", "B", "C", "D", "ADT^A01", "ID1", "P", "2.5.1", "", "", "KOI8-R")},
    {.name = "only MSH-16 set: enhanced",
     .m = RAW("MSH|^~\\&|A|B|C|D|T||ADT^A01|ID1|P|2.5.1||||AL\r"),
     STD,
     OK_FIELDS("A", "B", "C", "D", "ADT^A01", "ID1", "P", "2.5.1", "", "AL", NULL),
     .enhanced = 1,
     .mime = "UTF-8"},

    /* Required fields, reported in this order: MSH-10, MSH-9, MSH-12. */
    {.name = "ends after MSH-2",
     .m = RAW("MSH|^~\\&"),
     .why = "MSH-10 message control ID is empty",
     STD,
     OK_FIELDS(NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
     .mime = "UTF-8"},
    {.name = "MSH-10 and MSH-9 empty: MSH-10 reported",
     .m = RAW("MSH|^~\\&|A|B|C|D|T||||P|2.5.1"),
     .why = "MSH-10 message control ID is empty",
     STD},
    {.name = "MSH-9 empty",
     .m = RAW("MSH|^~\\&|A|B|C|D|T|||ID1|P|2.5.1"),
     .why = "MSH-9 message type is empty",
     STD},
    {.name = "MSH-12 absent",
     .m = RAW("MSH|^~\\&|A|B|C|D|T||ADT^A01|ID1|P\rEVN|A01|2.5.1\r"),
     .why = "MSH-12 version ID is empty",
     STD,
     OK_FIELDS("A", "B", "C", "D", "ADT^A01", "ID1", "P", NULL, NULL, NULL, NULL),
     .mime = "UTF-8"},
    {.name = "MSH-12 empty",
     .m = RAW("MSH|^~\\&|A|B|C|D|T||ADT^A01|ID1|P|\r"),
     .why = "MSH-12 version ID is empty",
     STD},
};

START_TEST(test_parse_msh)
{
	const struct parse_case *c = &parse_cases[_i];
	struct blob b = msg_get(&c->m);
	const char *why = "unset";
	struct hl7_msh m;
	const struct hl7_str *got[NF];
	int rc;

	memset(&m, 0xa5, sizeof(m)); /* parse must set every member */
	rc = hl7_parse_msh(b.p, b.len, &m, &why);
	if (c->why) {
		ck_assert_msg(rc == -EBADMSG, "%s: rc %d, want -EBADMSG", c->name, rc);
		ck_assert_ptr_nonnull(why);
		ck_assert_msg(strcmp(why, c->why) == 0, "%s: why \"%s\", want \"%s\"", c->name, why,
			      c->why);
	} else {
		ck_assert_msg(rc == 0, "%s: rc %d (%s)", c->name, rc, why ? why : "");
		ck_assert_ptr_null(why);
	}
	ck_assert_int_eq(m.field_sep, c->fs);
	ck_assert_uint_eq(m.enc_len, strlen(c->enc));
	ck_assert_mem_eq(m.enc, c->enc, m.enc_len);
	if (!c->fields)
		goto out;
	got[F_SAPP] = &m.sending_app;
	got[F_SFAC] = &m.sending_facility;
	got[F_RAPP] = &m.receiving_app;
	got[F_RFAC] = &m.receiving_facility;
	got[F_TYPE] = &m.message_type;
	got[F_CTL] = &m.control_id;
	got[F_PROC] = &m.processing_id;
	got[F_VER] = &m.version;
	got[F_ACC] = &m.accept_ack;
	got[F_APP] = &m.app_ack;
	got[F_CS] = &m.charset;
	for (int f = 0; f < NF; f++)
		ck_assert_msg(str_is(got[f], c->f[f]), "%s: %s is %s, want %s%s%s", c->name,
			      field_names[f], show(got[f]), c->f[f] ? "\"" : "",
			      c->f[f] ? c->f[f] : "(absent)", c->f[f] ? "\"" : "");
	ck_assert_int_eq(hl7_is_enhanced(&m), c->enhanced);
	if (c->mime)
		ck_assert_str_eq(hl7_mime_charset(&m.charset), c->mime);
	else
		ck_assert_ptr_null(hl7_mime_charset(&m.charset));
out:
	blob_free(&b);
}
END_TEST

/* why may be NULL; the 512-byte control ID limit is inclusive. */
START_TEST(test_parse_msh_control_id_length)
{
	static char msg[2048];
	struct hl7_msh m;
	const char *why = NULL;

	for (size_t len = HL7_FIELD_MAX - 1; len <= HL7_FIELD_MAX + 1; len++) {
		int n = snprintf(msg, sizeof(msg), "MSH|^~\\&|A|B|C|D|T||ADT^A01|%0*d|P|2.5.1\r",
				 (int)len, 7);
		ck_assert_int_gt(n, 0);
		if (len <= HL7_FIELD_MAX) {
			ck_assert_int_eq(hl7_parse_msh(msg, (size_t)n, &m, NULL), 0);
			ck_assert_uint_eq(m.control_id.len, len);
		} else {
			ck_assert_int_eq(hl7_parse_msh(msg, (size_t)n, &m, &why), -EBADMSG);
			ck_assert_str_eq(why, "MSH-10 message control ID is too long");
			ck_assert_uint_eq(m.control_id.len, len); /* kept, for the ACK to cut */
		}
	}
	ck_assert_int_eq(hl7_is_enhanced(NULL), 0);
}
END_TEST

/* ---- charsets ---- */

static const struct {
	const char *in; /* NULL: MSH-18 absent */
	const char *mime;
} charset_cases[] = {
    {NULL, "UTF-8"},
    {"", "UTF-8"},
    {"ASCII", "US-ASCII"},
    {"8859/1", "ISO-8859-1"},
    {"8859/2", "ISO-8859-2"},
    {"8859/3", "ISO-8859-3"},
    {"8859/4", "ISO-8859-4"},
    {"8859/5", "ISO-8859-5"},
    {"8859/6", "ISO-8859-6"},
    {"8859/7", "ISO-8859-7"},
    {"8859/8", "ISO-8859-8"},
    {"8859/9", "ISO-8859-9"},
    {"8859/15", "ISO-8859-15"},
    {"UNICODE", "UTF-16"},
    {"UNICODE UTF-8", "UTF-8"},
    {"UNICODE UTF-16", "UTF-16"},
    {"UNICODE UTF-32", "UTF-32"},
    {"ISO IR87", "ISO-2022-JP"},
    {"ISO IR6", "US-ASCII"},
    {"ISO IR100", "ISO-8859-1"},
    {"GB 18030-2000", "GB18030"},
    {"KS X 1001", "EUC-KR"},
    {"CNS 11643-1992", "EUC-TW"},
    {"BIG-5", "Big5"},
    {"unicode utf-8", "UTF-8"}, /* case does not matter */
    {" 8859/1 ", "ISO-8859-1"}, /* nor padding */
    {"8859/10", NULL},
    {"8859/1X", NULL},
    {"8859/", NULL},
    {"ISO IR8", NULL},
    {"UTF-8", NULL}, /* a MIME name, not a table 0211 value */
    {"KOI8-R", NULL},
};

START_TEST(test_mime_charset)
{
	const char *in = charset_cases[_i].in;
	struct hl7_str s = {in, in ? strlen(in) : 0};
	const char *got = hl7_mime_charset(&s);

	if (charset_cases[_i].mime)
		ck_assert_msg(got && strcmp(got, charset_cases[_i].mime) == 0,
			      "\"%s\" gives %s, want %s", in ? in : "(absent)", got ? got : "NULL",
			      charset_cases[_i].mime);
	else
		ck_assert_msg(!got, "\"%s\" gives %s, want NULL", in, got);
	if (!in)
		ck_assert_str_eq(hl7_mime_charset(NULL), "UTF-8");
}
END_TEST

/* ---- ACK ---- */

struct ack_case {
	const char *name;
	struct msg m; /* parsed whatever the result; ignored with no_msh */
	int no_msh;   /* msh NULL */
	enum hl7_ack_code code;
	int enhanced; /* -1: hl7_is_enhanced() */
	enum hl7_err_code err_code;
	char severity;
	const char *err_text;
	const char *err_segment;
	unsigned err_field;
	const char *want;
};

static const struct ack_case ack_cases[] = {
    {.name = "original mode AA (adt_a01_v251)",
     .m = SMP("adt_a01_v251.hl7"),
     .code = HL7_ACCEPT,
     .enhanced = -1,
     .want = "MSH|^~\\&|REDOX|CLOUD|EPIC|NORTHWIND|" TS "||ACK^A01^ACK|ACK1|P|2.5.1\r"
	     "MSA|AA|NW000123\r"},
    {.name = "enhanced mode CA (oru_r01_enhanced_ack)",
     .m = SMP("oru_r01_enhanced_ack.hl7"),
     .code = HL7_ACCEPT,
     .enhanced = -1,
     .want = "MSH|^~\\&|REDOX|CLOUD|LIS|NORTHWIND_LAB|" TS "||ACK^R01^ACK|ACK1|P|2.5.1\r"
	     "MSA|CA|LAB55501\r"},
    {.name = "enhanced mode CE",
     .m = SMP("oru_r01_enhanced_ack.hl7"),
     .code = HL7_ERROR,
     .enhanced = -1,
     .err_code = HL7_ERR_APPLICATION_INTERNAL,
     .severity = 'E',
     .err_text = "spool unavailable",
     .want = "MSH|^~\\&|REDOX|CLOUD|LIS|NORTHWIND_LAB|" TS "||ACK^R01^ACK|ACK1|P|2.5.1\r"
	     "MSA|CE|LAB55501\r"
	     "ERR|||207^Application internal error^HL70357|E||||spool unavailable\r"},
    {.name = "AR with ERR, 2.5.1, location (bad_no_control_id)",
     .m = SMP("bad_no_control_id.hl7"),
     .code = HL7_REJECT,
     .enhanced = -1,
     .err_code = HL7_ERR_REQUIRED_FIELD,
     .severity = 'E',
     .err_text = "MSH-10 message control ID is empty",
     .err_segment = "MSH",
     .err_field = 10,
     .want = "MSH|^~\\&|Y|Z|EHR|X|" TS "||ACK^A01^ACK|ACK1|P|2.5.1\r"
	     "MSA|AR|\r"
	     "ERR||MSH^1^10|101^Required field missing^HL70357|E||||"
	     "MSH-10 message control ID is empty\r"},
    {.name = "AR with ERR, 2.5.1, no location, escaped text",
     .m = SMP("vxu_v04_repeats_escapes.hl7"),
     .code = HL7_REJECT,
     .err_code = HL7_ERR_UNSUPPORTED_MESSAGE,
     .severity = 'E',
     .err_text = "no integration for VXU^V04 | try ~again\\later & \r\nnow",
     .want = "MSH|^~\\&|IIS|STATE|EHR|CLINIC|" TS "||ACK^V04^ACK|ACK1|P|2.5.1\r"
	     "MSA|AR|VX9\r"
	     "ERR|||200^Unsupported message type^HL70357|E||||"
	     "no integration for VXU\\S\\V04 \\F\\ try \\R\\again\\E\\later \\T\\ now\r"},
    {.name = "AR with ERR, 2.3: ERR-1 and MSA-3 (orm_o01_v23)",
     .m = SMP("orm_o01_v23.hl7"),
     .code = HL7_REJECT,
     .enhanced = -1,
     .err_code = HL7_ERR_APPLICATION_INTERNAL,
     .severity = 'E',
     .err_text = "spool write failed | disk full",
     .want = "MSH|^~\\&|RIS|NORTHWIND|CPOE|NORTHWIND|" TS "||ACK^O01|ACK1|P|2.3\r"
	     "MSA|AR|ORD0001|spool write failed \\F\\ disk full\r"
	     "ERR|^^^207&spool write failed \\F\\ disk full\r"},
    {.name = "AE, 2.3, with location",
     .m = SMP("orm_o01_v23.hl7"),
     .code = HL7_ERROR,
     .enhanced = -1,
     .err_code = HL7_ERR_TABLE_VALUE,
     .severity = 'W',
     .err_text = "a&b",
     .err_segment = "MSH",
     .err_field = 11,
     .want = "MSH|^~\\&|RIS|NORTHWIND|CPOE|NORTHWIND|" TS "||ACK^O01|ACK1|P|2.3\r"
	     "MSA|AE|ORD0001|a\\T\\b\r"
	     "ERR|MSH^1^11^103&a\\T\\b\r"},
    /* MSG.3, the message structure, exists from 2.3.1 on. */
    {.name = "2.3.1: ACK^A01^ACK",
     .m = RAW("MSH|^~\\&|A|B|C|D|T||ADT^A01|ID1|P|2.3.1\r"),
     .code = HL7_ACCEPT,
     .want = "MSH|^~\\&|C|D|A|B|" TS "||ACK^A01^ACK|ACK1|P|2.3.1\r"
	     "MSA|AA|ID1\r"},
    {.name = "2.2: ACK^A01, two components",
     .m = RAW("MSH|^~\\&|A|B|C|D|T||ADT^A01|ID2|P|2.2\r"),
     .code = HL7_ACCEPT,
     .want = "MSH|^~\\&|C|D|A|B|" TS "||ACK^A01|ACK1|P|2.2\r"
	     "MSA|AA|ID2\r"},
    {.name = "2.3.0 is before 2.3.1: two components",
     .m = RAW("MSH|^~\\&|A|B|C|D|T||ORM^O01|ID3|P|2.3.0\r"),
     .code = HL7_ACCEPT,
     .want = "MSH|^~\\&|C|D|A|B|" TS "||ACK^O01|ACK1|P|2.3.0\r"
	     "MSA|AA|ID3\r"},
    {.name = "2.4 is before 2.5: ERR-1 form",
     .m = RAW("MSH|^~\\&|A|B|C|D|T||ADT^A01|ID4|P|2.4\r"),
     .code = HL7_REJECT,
     .err_code = HL7_ERR_UNSUPPORTED_MESSAGE,
     .severity = 'E',
     .err_text = "no route",
     .want = "MSH|^~\\&|C|D|A|B|" TS "||ACK^A01^ACK|ACK1|P|2.4\r"
	     "MSA|AR|ID4|no route\r"
	     "ERR|^^^200&no route\r"},
    {.name = "2.5 (adt_a08_latin1): ERR-3 form, MSH-18 mirrored",
     .m = SMP("adt_a08_latin1.hl7"),
     .code = HL7_ERROR,
     .enhanced = -1,
     .err_code = HL7_ERR_APPLICATION_INTERNAL,
     .severity = 'E',
     .err_text = "spool full",
     .want = "MSH|^~\\&|REDOX|CLOUD|PAS|HOPITAL_NORD|" TS "||ACK^A08^ACK|ACK1|P|2.5||||||8859/1\r"
	     "MSA|AE|HN42\r"
	     "ERR|||207^Application internal error^HL70357|E||||spool full\r"},
    {.name = "msh NULL",
     .no_msh = 1,
     .code = HL7_REJECT,
     .err_code = HL7_ERR_SEGMENT_SEQUENCE,
     .severity = 'E',
     .err_text = "no MSH segment",
     .want = "MSH|^~\\&|||||" TS "||ACK|ACK1|P|2.5.1\r"
	     "MSA|AR|\r"
	     "ERR|||100^Segment sequence error^HL70357|E||||no MSH segment\r"},
    {.name = "msh NULL, accept, no ERR",
     .no_msh = 1,
     .code = HL7_ACCEPT,
     .want = "MSH|^~\\&|||||" TS "||ACK|ACK1|P|2.5.1\rMSA|AA|\r"},
    {.name = "MSH-18 mirrored (adt_a08_latin1)",
     .m = SMP("adt_a08_latin1.hl7"),
     .code = HL7_ACCEPT,
     .enhanced = -1,
     .want = "MSH|^~\\&|REDOX|CLOUD|PAS|HOPITAL_NORD|" TS "||ACK^A08^ACK|ACK1|P|2.5||||||8859/1\r"
	     "MSA|AA|HN42\r"},
    {.name = "LF segments in, CR out (lf_segments)",
     .m = SMP("lf_segments.hl7"),
     .code = HL7_ACCEPT,
     .enhanced = -1,
     .want = "MSH|^~\\&|Y|Z|EHR|X|" TS "||ACK^A04^ACK|ACK1|P|2.5.1\rMSA|AA|LFSEP1\r"},
    {.name = "unusable MSH-2: default separators (bad_encoding_chars)",
     .m = SMP("bad_encoding_chars.hl7"),
     .code = HL7_REJECT,
     .err_code = HL7_ERR_DATA_TYPE,
     .severity = 0, /* defaults to E */
     .err_text = "bad encoding characters in MSH-2",
     .err_segment = "MSH",
     .err_field = 2,
     .want = "MSH|^~\\&|Y|Z|EHR|X|" TS "||ACK|ACK1|P|2.5.1\r"
	     "MSA|AR|BADENC\r"
	     "ERR||MSH^1^2|102^Data type error^HL70357|E||||bad encoding characters in MSH-2\r"},
    {.name = "sender's own separators",
     .m = RAW("MSH#!@$%#A#B#C#D#T##ADT!A01!ADT_A01#ID1#T#2.5.1\r"),
     .code = HL7_ERROR,
     .err_code = HL7_ERR_APPLICATION_INTERNAL,
     .severity = 'W',
     .err_text = "a#b!c@d$e%f\r\ng",
     .err_segment = "MSH",
     .err_field = 9,
     .want = "MSH#!@$%#C#D#A#B#" TS "##ACK!A01!ACK#ACK1#T#2.5.1\r"
	     "MSA#AE#ID1\r"
	     "ERR##MSH!1!9#207!Application internal error!HL70357#W####a$F$b$S$c$R$d$E$e$T$fg\r"},
    {.name = "2.7 truncation character kept and escaped",
     .m = RAW("MSH|^~\\&#|A|B|C|D|T||ADT^A01|ID7|P|2.7\r"),
     .code = HL7_REJECT,
     .err_code = HL7_ERR_APPLICATION_INTERNAL,
     .severity = 'E',
     .err_text = "x#y",
     .want = "MSH|^~\\&#|C|D|A|B|" TS "||ACK^A01^ACK|ACK1|P|2.7\r"
	     "MSA|AR|ID7\r"
	     "ERR|||207^Application internal error^HL70357|E||||x\\P\\y\r"},
    {.name = "no trigger, no version, no processing ID: defaults",
     .m = RAW("MSH|^~\\&|A|B|C|D|T||ADT|ID2\r"),
     .code = HL7_ACCEPT,
     .want = "MSH|^~\\&|C|D|A|B|" TS "||ACK|ACK1|P|2.5.1\rMSA|AA|ID2\r"},
    {.name = "components and escapes mirrored as sent",
     .m = RAW("MSH|^~\\&|APP^1.2.3^ISO|F\\T\\X|C||T||ORU^R01~X|ID3|P^T|2.4^USA\r"),
     .code = HL7_ACCEPT,
     .want = "MSH|^~\\&|C||APP^1.2.3^ISO|F\\T\\X|" TS "||ACK^R01^ACK|ACK1|P^T|2.4^USA\r"
	     "MSA|AA|ID3\r"},
};

static int build_case(const struct ack_case *c, struct blob *msg, struct hl7_msh *m, char *buf,
		      size_t cap)
{
	const char *why;
	struct hl7_ack_req req = {
	    .code = c->code,
	    .ack_control_id = "ACK1",
	    .timestamp = TS,
	    .err_code = c->err_code,
	    .err_severity = c->severity,
	    .err_text = c->err_text,
	    .err_segment = c->err_segment,
	    .err_field = c->err_field,
	};

	if (!c->no_msh) {
		*msg = msg_get(&c->m);
		(void)!hl7_parse_msh(msg->p, msg->len, m, &why);
		req.msh = m;
	}
	req.enhanced = c->enhanced < 0 ? hl7_is_enhanced(req.msh) : c->enhanced;
	return hl7_build_ack(&req, buf, cap);
}

START_TEST(test_build_ack)
{
	const struct ack_case *c = &ack_cases[_i];
	struct blob msg = {NULL, 0};
	struct hl7_msh m;
	char buf[HL7_ACK_MAX];
	int n = build_case(c, &msg, &m, buf, sizeof(buf));

	ck_assert_msg(n == (int)strlen(c->want) && memcmp(buf, c->want, (size_t)n) == 0,
		      "%s:\n got  %.*s\n want %s", c->name, n > 0 ? n : 0, buf, c->want);
	ck_assert_int_eq(buf[n], '\0');
	blob_free(&msg);
}
END_TEST

/* Every cap below the length gives -ENOSPC without writing past cap. */
START_TEST(test_build_ack_enospc)
{
	const struct ack_case *c = &ack_cases[_i];
	size_t want = strlen(c->want);
	struct blob msg = {NULL, 0};
	struct hl7_msh m;

	for (size_t cap = 0; cap <= want + 1; cap++) {
		char *buf = malloc(cap ? cap : 1); /* exact size: ASan sees overruns */
		int n;

		ck_assert_ptr_nonnull(buf);
		blob_free(&msg);
		n = build_case(c, &msg, &m, buf, cap);
		if (cap < want)
			ck_assert_msg(n == -ENOSPC, "%s: cap %zu gives %d", c->name, cap, n);
		else
			ck_assert_int_eq(n, (int)want);
		free(buf);
	}
	blob_free(&msg);
}
END_TEST

/* The ACK we build parses as an HL7 ACK: MSH swapped, MSA-2 our MSH-10. */
START_TEST(test_build_ack_round_trip)
{
	const struct ack_case *c = &ack_cases[_i];
	struct blob msg = {NULL, 0};
	struct hl7_msh m, am;
	struct hl7_str code, ctl;
	const char *why;
	char buf[HL7_ACK_MAX];
	int n = build_case(c, &msg, &m, buf, sizeof(buf));

	ck_assert_int_gt(n, 0);
	ck_assert_int_eq(hl7_payload_kind(buf, (size_t)n), PAYLOAD_HL7);
	ck_assert_msg(hl7_parse_msh(buf, (size_t)n, &am, &why) == 0, "%s: %s", c->name, why);
	ck_assert(str_is(&am.control_id, "ACK1"));
	ck_assert_int_eq(hl7_parse_msa(buf, (size_t)n, &code, &ctl), 0);
	ck_assert_uint_eq(code.len, 2);
	ck_assert_int_eq(code.p[0],
			 c->enhanced == 1 || (c->enhanced < 0 && hl7_is_enhanced(&m)) ? 'C' : 'A');
	ck_assert_int_eq(code.p[1], "AER"[c->code]);
	if (!c->no_msh && m.enc_len) {
		ck_assert_int_eq(am.field_sep, m.field_sep);
		ck_assert_mem_eq(am.enc, m.enc, m.enc_len);
		ck_assert(am.sending_app.len == m.receiving_app.len);
		ck_assert(am.receiving_facility.len == m.sending_facility.len);
		ck_assert(ctl.len == m.control_id.len &&
			  memcmp(ctl.p, m.control_id.p ? m.control_id.p : "", ctl.len) == 0);
	}
	blob_free(&msg);
}
END_TEST

static char *repeat(char ch, size_t n)
{
	char *p = malloc(n + 1);

	ck_assert_ptr_nonnull(p);
	memset(p, ch, n);
	p[n] = '\0';
	return p;
}

/* Long mirrored fields are cut at HL7_FIELD_MAX, never inside an escape. */
START_TEST(test_build_ack_cuts_fields)
{
	static char msg[4096], buf[HL7_ACK_MAX];
	char *a = repeat('a', 600), *b = repeat('b', HL7_FIELD_MAX - 2);
	struct hl7_msh m;
	const char *why;
	int len, n;

	/* MSH-3: 600 'a'; MSH-4: 510 'b' then "\T\" straddling the cut. */
	len = snprintf(msg, sizeof(msg), "MSH|^~\\&|%s|%s\\T\\x|C|D|T||ADT^A01|ID|P|2.5.1\r", a, b);
	ck_assert_int_eq(hl7_parse_msh(msg, (size_t)len, &m, &why), 0);
	n = hl7_build_ack(&(struct hl7_ack_req){.msh = &m, .ack_control_id = "K", .timestamp = TS},
			  buf, sizeof(buf));
	ck_assert_int_gt(n, 0);
	a[HL7_FIELD_MAX] = '\0';
	snprintf(msg, sizeof(msg), "MSH|^~\\&|C|D|%s|%s|" TS "||", a, b);
	ck_assert_msg(strncmp(buf, msg, strlen(msg)) == 0, "got %.*s", n, buf);
	free(a);
	free(b);
}
END_TEST

/* The largest ACK anyone can make us build fits in HL7_ACK_MAX. */
START_TEST(test_build_ack_worst_case_fits)
{
	static char msg[64 << 10], buf[HL7_ACK_MAX];
	char *f = repeat('f', 3000), *pipes = repeat('|', 3000);
	const char *versions[] = {"2.3", "2.5.1"};
	struct hl7_msh m;
	const char *why;

	for (int v = 0; v < 2; v++) {
		int n, len = snprintf(msg, sizeof(msg),
				      "MSH|^~\\&#|%s|%s|%s|%s|T||ADT^%s|%s|%s|%s%s||||||%s\r", f, f,
				      f, f, f, f, f, versions[v], f, f);
		ck_assert_int_lt(len, (int)sizeof(msg));
		ck_assert_int_eq(hl7_parse_msh(msg, (size_t)len, &m, &why), -EBADMSG);
		ck_assert_str_eq(why, "MSH-10 message control ID is too long");
		n = hl7_build_ack(&(struct hl7_ack_req){.msh = &m,
							.code = HL7_REJECT,
							.ack_control_id = pipes,
							.timestamp = pipes,
							.err_code = HL7_ERR_APPLICATION_INTERNAL,
							.err_text = pipes,
							.err_segment = pipes,
							.err_field = 4000000000u},
				  buf, sizeof(buf));
		ck_assert_int_gt(n, 0);
		ck_assert_int_le(n, HL7_ACK_MAX);
	}
	free(f);
	free(pipes);
}
END_TEST

START_TEST(test_build_ack_bad_request)
{
	char buf[64];
	struct hl7_ack_req req = {.code = (enum hl7_ack_code)7, .ack_control_id = "A"};

	ck_assert_int_eq(hl7_build_ack(&req, buf, sizeof(buf)), -EINVAL);
	ck_assert_int_eq(hl7_build_ack(NULL, buf, sizeof(buf)), -EINVAL);
}
END_TEST

/* ---- MSA ---- */

static const struct {
	const char *name;
	struct msg m;
	int rc;
	const char *code;
	const char *ctl; /* NULL: absent */
} msa_cases[] = {
    {"AA", RAW("MSH|^~\\&|A|B|C|D|T||ACK^A01^ACK|K1|P|2.5.1\rMSA|AA|NW000123\r"), 0, "AA",
     "NW000123"},
    {"AE with MSA-3 and ERR",
     RAW("MSH|^~\\&|A|B|C|D|T||ACK|K1|P|2.3\rMSA|AE|X1|bad\rERR|^^^207&bad\r"), 0, "AE", "X1"},
    {"ERR before MSA", RAW("MSH|^~\\&|A|B|C|D|T||ACK|K1|P|2.5.1\rERR|||207\rMSA|CR|X2\r"), 0, "CR",
     "X2"},
    {"LF segments", RAW("MSH|^~\\&|A\nMSA|CA|X3\n"), 0, "CA", "X3"},
    {"CRLF segments, no final", RAW("MSH|^~\\&|A\r\nMSA|AA|X4"), 0, "AA", "X4"},
    {"MSA-2 absent", RAW("MSH|^~\\&|A\rMSA|AA\r"), 0, "AA", NULL},
    {"MSA-2 empty", RAW("MSH|^~\\&|A\rMSA|AR|\r"), 0, "AR", ""},
    {"MSAX is not MSA", RAW("MSH|^~\\&|A\rMSAX|AA|1\rMSA|AE|2\r"), 0, "AE", "2"},
    {"other separator", RAW("MSH#!@$%#A\rMSA#AA#X5\r"), 0, "AA", "X5"},
    {"BOM first", RAW("\xef\xbb\xbfMSH|^~\\&|A\rMSA|AA|X6\r"), 0, "AA", "X6"},
    {"MSA-1 empty", RAW("MSH|^~\\&|A\rMSA||X7\r"), -EBADMSG, NULL, NULL},
    {"MSA alone", RAW("MSA|AA|X8\r"), -EBADMSG, NULL, NULL},
    {"no MSA", RAW("MSH|^~\\&|A\rPID|1\r"), -EBADMSG, NULL, NULL},
    {"MSA with wrong separator", RAW("MSH|^~\\&|A\rMSA#AA#X9\r"), -EBADMSG, NULL, NULL},
    {"not HL7", RAW("<xml/>"), -EBADMSG, NULL, NULL},
    {"empty", RAW(""), -EBADMSG, NULL, NULL},
    {"sample without MSA", SMP("adt_a01_v251.hl7"), -EBADMSG, NULL, NULL},
};

START_TEST(test_parse_msa)
{
	struct blob b = msg_get(&msa_cases[_i].m);
	struct hl7_str code, ctl;
	int rc = hl7_parse_msa(b.p, b.len, &code, &ctl);

	ck_assert_msg(rc == msa_cases[_i].rc, "%s: rc %d", msa_cases[_i].name, rc);
	if (rc == 0) {
		ck_assert_msg(str_is(&code, msa_cases[_i].code), "%s: MSA-1 %s", msa_cases[_i].name,
			      show(&code));
		ck_assert_msg(str_is(&ctl, msa_cases[_i].ctl), "%s: MSA-2 %s", msa_cases[_i].name,
			      show(&ctl));
	} else {
		ck_assert_ptr_null(code.p);
		ck_assert_ptr_null(ctl.p);
	}
	blob_free(&b);
}
END_TEST

/* ---- any segment's field ---- */

#define MSH_STD "MSH|^~\\&|A|B|C|D|T||ADT^A01|ID1|P|2.5.1"

static const struct {
	const char *name;
	struct msg m;
	char fs; /* the msh handed in holds only this separator */
	const char *seg;
	unsigned field;
	int rc;
	const char *want; /* NULL: absent */
} find_cases[] = {
    {"PID-3 with repetitions", SMP("adt_a01_v251.hl7"), '|', "PID", 3, 0,
     "100234^^^NORTHWIND^MR~999-00-1234^^^USSSA^SS"},
    {"PID-1", SMP("adt_a01_v251.hl7"), '|', "PID", 1, 0, "1"},
    {"PID-2 empty", SMP("adt_a01_v251.hl7"), '|', "PID", 2, 0, ""},
    {"PID-5", SMP("adt_a01_v251.hl7"), '|', "PID", 5, 0, "SAMPLE^ALEX^J"},
    {"PID-40 past the end", SMP("adt_a01_v251.hl7"), '|', "PID", 40, 0, NULL},
    {"MSH-1 is the separator", SMP("adt_a01_v251.hl7"), '|', "MSH", 1, 0, "|"},
    {"MSH-2", SMP("adt_a01_v251.hl7"), '|', "MSH", 2, 0, "^~\\&"},
    {"MSH-3", SMP("adt_a01_v251.hl7"), '|', "MSH", 3, 0, "EPIC"},
    {"MSH-10", SMP("adt_a01_v251.hl7"), '|', "MSH", 10, 0, "NW000123"},
    {"no MRG", SMP("adt_a01_v251.hl7"), '|', "MRG", 1, -ENOENT, NULL},
    {"LF segments", SMP("lf_segments.hl7"), '|', "PID", 3, 0, "7^^^X^MR"},
    {"LF segments, MSH-10", SMP("lf_segments.hl7"), '|', "MSH", 10, 0, "LFSEP1"},
    {"CRLF segments", RAW(MSH_STD "\r\nPID|1||X1\r\nPV1|1\r\n"), '|', "PID", 3, 0, "X1"},
    {"CRLF segments, segment after", RAW(MSH_STD "\r\nPID|1||X1\r\nPV1|1|I\r\n"), '|', "PV1", 2, 0,
     "I"},
    {"other separator", RAW("MSH#!@$%#A#B\rPID#1##9!!!AA@8\r"), '#', "PID", 3, 0, "9!!!AA@8"},
    {"other separator, '|' is data", RAW("MSH#!@$%#A#B\rPID#1|2#3\r"), '#', "PID", 1, 0, "1|2"},
    {"first segment wins", RAW(MSH_STD "\rPID|1||FIRST\rPID|2||SECOND\r"), '|', "PID", 3, 0,
     "FIRST"},
    {"PIDX is not PID", RAW(MSH_STD "\rPIDX|1||X\r"), '|', "PID", 3, -ENOENT, NULL},
    {"PIDX then PID", RAW(MSH_STD "\rPIDX|1||X\rPID|1||Y\r"), '|', "PID", 3, 0, "Y"},
    {"ID inside a field is not a segment", RAW(MSH_STD "\rNTE|1||see PID|x\r"), '|', "PID", 1,
     -ENOENT, NULL},
    {"segment without fields", RAW(MSH_STD "\rPID\rPV1|1\r"), '|', "PID", 1, 0, NULL},
    {"segment at the very end, no terminator", RAW(MSH_STD "\rPID|1||LAST"), '|', "PID", 3, 0,
     "LAST"},
    {"empty last field", RAW(MSH_STD "\rPID|1||\r"), '|', "PID", 3, 0, ""},
    {"blank lines between segments", RAW(MSH_STD "\r\r\n\nPID|1||B\r"), '|', "PID", 3, 0, "B"},
    {"BOM before MSH", RAW("\xef\xbb\xbf" MSH_STD "\r"), '|', "MSH", 3, 0, "A"},
    {"MSH alone", RAW("MSH"), '|', "MSH", 1, 0, NULL},
    {"Z-segment", RAW(MSH_STD "\rZPD|a|b\r"), '|', "ZPD", 2, 0, "b"},
    {"MRG-1", RAW(MSH_STD "\rPID|1||2\rMRG|1^^^NW~3\r"), '|', "MRG", 1, 0, "1^^^NW~3"},
    {"field 0", RAW(MSH_STD "\rPID|1\r"), '|', "PID", 0, -EINVAL, NULL},
    {"no field separator", RAW(MSH_STD "\rPID|1\r"), '\0', "PID", 1, -EINVAL, NULL},
    {"empty message", RAW(""), '|', "PID", 1, -ENOENT, NULL},
};

START_TEST(test_find_field)
{
	struct blob b = msg_get(&find_cases[_i].m);
	struct hl7_msh msh = {.field_sep = find_cases[_i].fs};
	struct hl7_str v = {"stale", 5};
	int rc = hl7_find_field(b.p, b.len, &msh, find_cases[_i].seg, find_cases[_i].field, &v);

	ck_assert_msg(rc == find_cases[_i].rc, "%s: rc %d", find_cases[_i].name, rc);
	ck_assert_msg(str_is(&v, rc == 0 ? find_cases[_i].want : NULL), "%s: %s",
		      find_cases[_i].name, show(&v));
	if (v.p)
		ck_assert(v.p >= b.p && v.p + v.len <= b.p + b.len); /* borrows the message */
	blob_free(&b);
}
END_TEST

START_TEST(test_find_field_null_args)
{
	static const char m[] = MSH_STD "\rPID|1\r";
	struct hl7_msh msh = {.field_sep = '|'};
	struct hl7_str v;

	ck_assert_int_eq(hl7_find_field(NULL, 0, &msh, "PID", 1, &v), -EINVAL);
	ck_assert_ptr_null(v.p);
	ck_assert_int_eq(hl7_find_field(m, sizeof(m) - 1, NULL, "PID", 1, &v), -EINVAL);
	ck_assert_int_eq(hl7_find_field(m, sizeof(m) - 1, &msh, NULL, 1, &v), -EINVAL);
}
END_TEST

/* ---- the header an answer keeps ---- */

/* A header whose field number `field` holds n copies of 'x'. */
static size_t long_field_msh(char *buf, size_t cap, unsigned field, size_t n)
{
	static const char *const base[19] = {NULL,	     NULL, NULL, "APP",	    "FAC",  "RAPP",
					     "RFAC",	     "T",  "",	 "ADT^A01", "CTL1", "P",
					     "2.5.1",	     "",   "",	 "AL",	    "NE",   "",
					     "UNICODE UTF-8"};
	size_t o = (size_t)snprintf(buf, cap, "MSH|^~\\&");

	for (unsigned f = 3; f <= 18; f++) {
		buf[o++] = '|';
		if (f == field) {
			memset(buf + o, 'x', n);
			o += n;
		} else {
			o += (size_t)snprintf(buf + o, cap - o, "%s", base[f]);
		}
	}
	buf[o++] = '\r';
	buf[o] = '\0';
	return o;
}

static const struct keep_case {
	unsigned field; /* the field made long */
	size_t len;
	unsigned want; /* what hl7_msh_overlong says */
} keep_cases[] = {
    {3, HL7_MSH_HD_MAX, 0},
    {3, HL7_MSH_HD_MAX + 1, 3},
    {6, HL7_MSH_HD_MAX + 1, 6},
    {9, HL7_MSH_TYPE_MAX + 1, 9},
    {10, HL7_MSH_CONTROL_ID_MAX, 0},
    {10, HL7_MSH_CONTROL_ID_MAX + 1, 10},
    {11, HL7_MSH_PROCESSING_MAX + 1, 11},
    {12, HL7_MSH_VERSION_MAX + 1, 12},
    {15, HL7_MSH_ACK_TYPE_MAX + 1, 15},
    {18, HL7_MSH_CHARSET_MAX + 1, 18},
    {8, 3000, 0}, /* MSH-8 is not mirrored: no limit */
};

/* The kept copy survives the message, holds every field within its limit
 * whole, and leaves out the one past it. */
START_TEST(test_msh_keep)
{
	const struct keep_case *c = &keep_cases[_i];
	static char msg[8192];
	struct hl7_msh msh, kept;
	char keep[HL7_MSH_KEEP_MAX];
	unsigned limit = 0;
	size_t len = long_field_msh(msg, sizeof(msg), c->field, c->len);

	ck_assert_int_eq(hl7_parse_msh(msg, len, &msh, NULL), 0);
	ck_assert_uint_eq(hl7_msh_overlong(&msh, &limit), c->want);
	hl7_msh_keep(&msh, &kept, keep);
	memset(msg, '#', len); /* the frame is gone */
	ck_assert_int_eq(kept.field_sep, '|');
	ck_assert_uint_eq(kept.version.len, c->field == 12 && c->want ? 0 : 5);
	if (!(c->field == 12 && c->want))
		ck_assert_int_eq(memcmp(kept.version.p, "2.5.1", 5), 0);
	if (c->field == 10)
		ck_assert_uint_eq(kept.control_id.len, c->want ? 0 : c->len);
	else
		ck_assert_int_eq(memcmp(kept.control_id.p, "CTL1", 4), 0);
	if (c->want)
		ck_assert_uint_eq(limit, c->len - 1);
}
END_TEST

static Suite *hl7_suite(void)
{
	Suite *s = suite_create("hl7");
	TCase *tc;

	tc = tcase_create("samples");
	tcase_add_loop_test(tc, test_embedded_samples_match_disk, 0, (int)NELEMS(embedded_samples));
	suite_add_tcase(s, tc);

	tc = tcase_create("parse");
	tcase_add_loop_test(tc, test_payload_kind, 0, (int)NELEMS(kind_cases));
	tcase_add_loop_test(tc, test_parse_msh, 0, (int)NELEMS(parse_cases));
	tcase_add_test(tc, test_parse_msh_control_id_length);
	tcase_add_loop_test(tc, test_mime_charset, 0, (int)NELEMS(charset_cases));
	tcase_add_loop_test(tc, test_parse_msa, 0, (int)NELEMS(msa_cases));
	tcase_add_loop_test(tc, test_find_field, 0, (int)NELEMS(find_cases));
	tcase_add_loop_test(tc, test_msh_keep, 0, (int)NELEMS(keep_cases));
	tcase_add_test(tc, test_find_field_null_args);
	suite_add_tcase(s, tc);

	tc = tcase_create("ack");
	tcase_add_loop_test(tc, test_build_ack, 0, (int)NELEMS(ack_cases));
	tcase_add_loop_test(tc, test_build_ack_enospc, 0, (int)NELEMS(ack_cases));
	tcase_add_loop_test(tc, test_build_ack_round_trip, 0, (int)NELEMS(ack_cases));
	tcase_add_test(tc, test_build_ack_cuts_fields);
	tcase_add_test(tc, test_build_ack_worst_case_fits);
	tcase_add_test(tc, test_build_ack_bad_request);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(hl7_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
