/*
 * HL7 v2 header parsing, payload classification and ACK building.
 *
 * The MSH segment (and MSA, for ACKs we receive) is looked at without
 * scanning the rest, so its cost does not grow with the message;
 * hl7_find_field() walks the segments, for the callers that need one more
 * field. Nothing here allocates.
 */
#include "hl7.h"

#include <errno.h>
#include <stddef.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#define DEFAULT_SEPS	      "|^~\\&"
#define DEFAULT_VERSION	      "2.5.1"
#define DEFAULT_PROCESSING_ID "P"
#define ERR_TEXT_BUDGET	      (3 * HL7_ERR_TEXT_MAX) /* escaped: up to 3 bytes a char */
#define SEGMENT_ID_BUDGET     16		     /* err_segment, escaped */

/* ---- scanning helpers ---- */

static int is_seg_end(char c)
{
	return c == '\r' || c == '\n';
}

/* A usable delimiter: printable ASCII, neither letter, digit nor space. */
static int is_delim(char c)
{
	unsigned char u = (unsigned char)c;

	if (u < 0x21 || u > 0x7e)
		return 0;
	return !((u >= '0' && u <= '9') || (u >= 'A' && u <= 'Z') || (u >= 'a' && u <= 'z'));
}

/* Skips a UTF-8 byte order mark, then whitespace. */
static const char *skip_lead(const char *p, const char *end)
{
	if (end - p >= 3 && memcmp(p, "\xef\xbb\xbf", 3) == 0)
		p += 3;
	while (p < end &&
	       (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n' || *p == '\v' || *p == '\f'))
		p++;
	return p;
}

static int starts_with(const char *p, const char *end, const char *s)
{
	size_t n = strlen(s);

	return (size_t)(end - p) >= n && memcmp(p, s, n) == 0;
}

static const char *seg_end(const char *p, const char *end)
{
	while (p < end && !is_seg_end(*p))
		p++;
	return p;
}

/* From the end of one segment to the start of the next (CR, LF or CRLF, and
 * tolerating blank lines). */
static const char *next_seg(const char *p, const char *end)
{
	p = seg_end(p, end);
	while (p < end && is_seg_end(*p))
		p++;
	return p;
}

static const char *field_end(const char *p, const char *end, char fs)
{
	while (p < end && *p != fs && !is_seg_end(*p))
		p++;
	return p;
}

/* ---- classification ---- */

enum payload_kind hl7_payload_kind(const void *buf, size_t len)
{
	const char *end = (const char *)buf + len;
	const char *p = skip_lead(buf, end);

	if (starts_with(p, end, "MSH") || starts_with(p, end, "FHS") || starts_with(p, end, "BHS"))
		return PAYLOAD_HL7;
	if (starts_with(p, end, "ISA"))
		return PAYLOAD_X12;
	if (p < end && *p == '<')
		return PAYLOAD_XML;
	return PAYLOAD_UNKNOWN;
}

/* ---- MSH ---- */

/* MSH-2: 4 characters, or 5 with the 2.7 truncation character; all distinct
 * delimiters, none equal to the field separator. */
static int valid_enc(const char *p, size_t n, char fs)
{
	size_t i, j;

	if (n != 4 && n != 5)
		return 0;
	for (i = 0; i < n; i++) {
		if (!is_delim(p[i]) || p[i] == fs)
			return 0;
		for (j = 0; j < i; j++)
			if (p[i] == p[j])
				return 0;
	}
	return 1;
}

static void store_field(struct hl7_msh *m, unsigned n, const char *p, size_t len)
{
	struct hl7_str v = {p, len};
	const char *rep;

	switch (n) {
	case 3:
		m->sending_app = v;
		break;
	case 4:
		m->sending_facility = v;
		break;
	case 5:
		m->receiving_app = v;
		break;
	case 6:
		m->receiving_facility = v;
		break;
	case 9:
		m->message_type = v;
		break;
	case 10:
		m->control_id = v;
		break;
	case 11:
		m->processing_id = v;
		break;
	case 12:
		m->version = v;
		break;
	case 15:
		m->accept_ack = v;
		break;
	case 16:
		m->app_ack = v;
		break;
	case 18:
		rep = m->enc_len ? memchr(p, m->enc[1], len) : NULL;
		if (rep)
			v.len = (size_t)(rep - p);
		m->charset = v;
		break;
	default:
		break;
	}
}

static int empty(const struct hl7_str *s)
{
	return !s->p || s->len == 0;
}

static int bad(const char **why, const char *reason)
{
	if (why)
		*why = reason;
	return -EBADMSG;
}

/* Skips FHS/BHS batch header segments in front of the first MSH. */
static const char *skip_batch_headers(const char *p, const char *end)
{
	while (starts_with(p, end, "FHS") || starts_with(p, end, "BHS"))
		p = next_seg(p, end);
	return p;
}

int hl7_parse_msh(const void *msg, size_t len, struct hl7_msh *out, const char **why)
{
	const char *end = (const char *)msg + len;
	const char *p = skip_batch_headers(skip_lead(msg, end), end);
	const char *e, *reason = NULL;
	unsigned n;
	char fs;

	memset(out, 0, sizeof(*out));
	if (why)
		*why = NULL;
	if (!starts_with(p, end, "MSH"))
		return bad(why, "no MSH segment");
	if (end - p < 4 || !is_delim(p[3]))
		return bad(why, "bad field separator in MSH-1");
	fs = p[3];
	out->field_sep = fs;
	p += 4;
	e = field_end(p, end, fs);
	if (valid_enc(p, (size_t)(e - p), fs)) {
		memcpy(out->enc, p, (size_t)(e - p));
		out->enc_len = (size_t)(e - p);
	} else {
		reason = "bad encoding characters in MSH-2";
	}
	/* Keep going after a bad MSH-2: the ACK still wants MSH-10. */
	for (n = 3; n <= 18 && e < end && *e == fs; n++) {
		p = e + 1;
		e = field_end(p, end, fs);
		store_field(out, n, p, (size_t)(e - p));
	}
	if (!reason && empty(&out->control_id))
		reason = "MSH-10 message control ID is empty";
	if (!reason && out->control_id.len > HL7_FIELD_MAX)
		reason = "MSH-10 message control ID is too long";
	if (!reason && empty(&out->message_type))
		reason = "MSH-9 message type is empty";
	if (!reason && empty(&out->version))
		reason = "MSH-12 version ID is empty";
	return reason ? bad(why, reason) : 0;
}

/* The mirrored fields, their numbers and limits, in one table for both
 * functions below. */
#define KEPT(f, n, max)                                                                            \
	{                                                                                          \
		offsetof(struct hl7_msh, f), n, max                                                \
	}
static const struct {
	size_t offset;
	unsigned field, max;
} kept[] = {
    KEPT(sending_app, 3, HL7_MSH_HD_MAX),
    KEPT(sending_facility, 4, HL7_MSH_HD_MAX),
    KEPT(receiving_app, 5, HL7_MSH_HD_MAX),
    KEPT(receiving_facility, 6, HL7_MSH_HD_MAX),
    KEPT(message_type, 9, HL7_MSH_TYPE_MAX),
    KEPT(control_id, 10, HL7_MSH_CONTROL_ID_MAX),
    KEPT(processing_id, 11, HL7_MSH_PROCESSING_MAX),
    KEPT(version, 12, HL7_MSH_VERSION_MAX),
    KEPT(accept_ack, 15, HL7_MSH_ACK_TYPE_MAX),
    KEPT(app_ack, 16, HL7_MSH_ACK_TYPE_MAX),
    KEPT(charset, 18, HL7_MSH_CHARSET_MAX),
};
#undef KEPT

static const struct hl7_str *kept_in(const struct hl7_msh *m, size_t i)
{
	return (const struct hl7_str *)(const void *)((const char *)m + kept[i].offset);
}

static struct hl7_str *kept_out(struct hl7_msh *m, size_t i)
{
	return (struct hl7_str *)(void *)((char *)m + kept[i].offset);
}

unsigned hl7_msh_overlong(const struct hl7_msh *msh, unsigned *limit)
{
	for (size_t i = 0; i < sizeof(kept) / sizeof(kept[0]); i++) {
		if (kept_in(msh, i)->len > kept[i].max) {
			*limit = kept[i].max;
			return kept[i].field;
		}
	}
	return 0;
}

void hl7_msh_keep(const struct hl7_msh *src, struct hl7_msh *dst, char buf[HL7_MSH_KEEP_MAX])
{
	size_t at = 0;

	*dst = *src;
	for (size_t i = 0; i < sizeof(kept) / sizeof(kept[0]); i++) {
		const struct hl7_str *from = kept_in(src, i);
		struct hl7_str *to = kept_out(dst, i);

		if (!from->p || from->len > kept[i].max) {
			*to = (struct hl7_str){NULL, 0};
			continue;
		}
		memcpy(buf + at, from->p, from->len);
		*to = (struct hl7_str){buf + at, from->len};
		at += kept[i].max; /* each field has its own room: no overflow */
	}
}

int hl7_is_enhanced(const struct hl7_msh *msh)
{
	return msh && (!empty(&msh->accept_ack) || !empty(&msh->app_ack));
}

/* ---- charsets (HL7 table 0211) ---- */

static const struct {
	const char *hl7;
	const char *mime;
} charsets[] = {
    {"ASCII", "US-ASCII"},	  {"8859/1", "ISO-8859-1"},
    {"8859/2", "ISO-8859-2"},	  {"8859/3", "ISO-8859-3"},
    {"8859/4", "ISO-8859-4"},	  {"8859/5", "ISO-8859-5"},
    {"8859/6", "ISO-8859-6"},	  {"8859/7", "ISO-8859-7"},
    {"8859/8", "ISO-8859-8"},	  {"8859/9", "ISO-8859-9"},
    {"8859/15", "ISO-8859-15"},	  {"UNICODE", "UTF-16"},
    {"UNICODE UTF-8", "UTF-8"},	  {"UNICODE UTF-16", "UTF-16"},
    {"UNICODE UTF-32", "UTF-32"}, {"ISO IR6", "US-ASCII"},
    {"ISO IR87", "ISO-2022-JP"},  {"ISO IR100", "ISO-8859-1"},
    {"GB 18030-2000", "GB18030"}, {"KS X 1001", "EUC-KR"},
    {"CNS 11643-1992", "EUC-TW"}, {"BIG-5", "Big5"},
};

const char *hl7_mime_charset(const struct hl7_str *msh18)
{
	const char *p;
	size_t i, n;

	if (!msh18 || !msh18->p)
		return "UTF-8";
	p = msh18->p;
	n = msh18->len;
	for (; n > 0 && *p == ' '; n--)
		p++;
	while (n > 0 && p[n - 1] == ' ')
		n--;
	if (n == 0)
		return "UTF-8";
	for (i = 0; i < sizeof(charsets) / sizeof(charsets[0]); i++)
		if (strlen(charsets[i].hl7) == n && strncasecmp(charsets[i].hl7, p, n) == 0)
			return charsets[i].mime;
	return NULL;
}

/* ---- ACK ---- */

/* Output with a sticky error: call sites stay flat, the first failure wins. */
struct out {
	char *buf;
	size_t cap;
	size_t len;
	int err;
};

static void put(struct out *o, const char *s, size_t n)
{
	if (o->err)
		return;
	if (n > o->cap - o->len) {
		o->err = -ENOSPC;
		return;
	}
	memcpy(o->buf + o->len, s, n);
	o->len += n;
}

static void put_c(struct out *o, char c)
{
	put(o, &c, 1);
}

static void put_s(struct out *o, const char *s)
{
	put(o, s, strlen(s));
}

struct ack {
	char fs;
	char enc[5];
	size_t enc_len;
	int raw;  /* mirrored fields can be copied as sent (same separators) */
	int v25;  /* version >= 2.5: ERR-2/3/4/8 form */
	int msg3; /* version >= 2.3.1: MSH-9 has its third component, the structure */
};

static char escape_letter(const struct ack *a, char c)
{
	if (c == a->fs)
		return 'F';
	if (c == a->enc[0])
		return 'S';
	if (c == a->enc[1])
		return 'R';
	if (c == a->enc[2])
		return 'E';
	if (c == a->enc[3])
		return 'T';
	if (a->enc_len == 5 && c == a->enc[4])
		return 'P';
	return 0;
}

/* Writes text escaped with the ACK's delimiters, CR/LF stripped, at most
 * budget bytes and never half an escape sequence. */
static void put_text(struct out *o, const struct ack *a, const char *s, size_t n, size_t budget)
{
	size_t i, used = 0;
	char x;

	for (i = 0; i < n; i++) {
		if (is_seg_end(s[i]))
			continue;
		x = escape_letter(a, s[i]);
		if (used + (x ? 3 : 1) > budget)
			break;
		if (x) {
			char seq[3] = {a->enc[2], x, a->enc[2]};

			put(o, seq, 3);
			used += 3;
		} else {
			put_c(o, s[i]);
			used++;
		}
	}
}

static void put_text_z(struct out *o, const struct ack *a, const char *s, size_t budget)
{
	if (s)
		put_text(o, a, s, strlen(s), budget);
}

/* A field as the sender wrote it, cut at HL7_FIELD_MAX; a cut that would
 * leave an escape sequence open backs up to before it. */
static void put_raw(struct out *o, const struct ack *a, struct hl7_str v)
{
	size_t n = v.len;

	if (!v.p)
		return;
	if (n > HL7_FIELD_MAX) {
		size_t escapes = 0;

		n = HL7_FIELD_MAX;
		for (size_t i = 0; i < n; i++)
			escapes += v.p[i] == a->enc[2];
		if (escapes % 2)
			while (n > 0 && v.p[--n] != a->enc[2])
				;
	}
	put(o, v.p, n);
}

static void mirror(struct out *o, const struct ack *a, struct hl7_str v)
{
	if (a->raw)
		put_raw(o, a, v);
	else if (v.p)
		put_text(o, a, v.p, v.len, HL7_FIELD_MAX);
}

/* MSH-12 is at least want (major, minor, patch), read from its leading
 * digits and dots; what cannot be read counts as recent. */
static int version_at_least(struct hl7_str v, const unsigned want[3])
{
	const char *p = v.p, *e;
	unsigned have[3] = {0, 0, 0};

	if (!p || v.len == 0 || *p < '0' || *p > '9')
		return 1;
	e = p + v.len;
	for (int i = 0; i < 3 && p < e; i++) {
		for (; p < e && *p >= '0' && *p <= '9' && have[i] < 1000; p++)
			have[i] = have[i] * 10 + (unsigned)(*p - '0');
		if (p == e || *p != '.')
			break;
		p++;
	}
	for (int i = 0; i < 3; i++)
		if (have[i] != want[i])
			return have[i] > want[i];
	return 1;
}

/* MSH-9.2 of the first repetition, when the separators are known. */
static struct hl7_str trigger_event(const struct ack *a, const struct hl7_msh *m)
{
	struct hl7_str t = {NULL, 0};
	const char *p = m->message_type.p, *e, *q;

	if (!a->raw || !p)
		return t;
	e = p + m->message_type.len;
	while (p < e && *p != a->enc[0] && *p != a->enc[1])
		p++;
	if (p == e || *p != a->enc[0])
		return t;
	for (q = ++p; q < e && *q != a->enc[0] && *q != a->enc[1];)
		q++;
	t.p = p;
	t.len = (size_t)(q - p);
	return t;
}

static void ack_delims(struct ack *a, const struct hl7_msh *m)
{
	static const unsigned v25[3] = {2, 5, 0}, v231[3] = {2, 3, 1};
	struct hl7_str v = m ? m->version : (struct hl7_str){NULL, 0};

	a->raw = m && m->field_sep && m->enc_len >= 4;
	if (a->raw) {
		a->fs = m->field_sep;
		memcpy(a->enc, m->enc, sizeof(a->enc));
		a->enc_len = m->enc_len;
	} else {
		a->fs = DEFAULT_SEPS[0];
		memcpy(a->enc, &DEFAULT_SEPS[1], 4);
		a->enc[4] = 0;
		a->enc_len = 4;
	}
	a->v25 = version_at_least(v, v25);
	a->msg3 = version_at_least(v, v231);
}

static void put_field_or(struct out *o, const struct ack *a, struct hl7_str v, const char *dflt)
{
	if (empty(&v))
		put_s(o, dflt);
	else
		mirror(o, a, v);
}

static void write_msh(struct out *o, const struct ack *a, const struct hl7_ack_req *req)
{
	static const struct hl7_msh none;
	const struct hl7_msh *m = req->msh ? req->msh : &none;
	struct hl7_str trig = trigger_event(a, m);

	put_s(o, "MSH");
	put_c(o, a->fs);
	put(o, a->enc, a->enc_len);
	put_c(o, a->fs);
	mirror(o, a, m->receiving_app); /* MSH-3 */
	put_c(o, a->fs);
	mirror(o, a, m->receiving_facility); /* MSH-4 */
	put_c(o, a->fs);
	mirror(o, a, m->sending_app); /* MSH-5 */
	put_c(o, a->fs);
	mirror(o, a, m->sending_facility); /* MSH-6 */
	put_c(o, a->fs);
	put_text_z(o, a, req->timestamp, HL7_FIELD_MAX); /* MSH-7 */
	put_c(o, a->fs);
	put_c(o, a->fs); /* MSH-8 empty */
	put_s(o, "ACK");
	if (!empty(&trig)) {
		put_c(o, a->enc[0]);
		put_raw(o, a, trig);
		if (a->msg3) {
			put_c(o, a->enc[0]);
			put_s(o, "ACK");
		}
	}
	put_c(o, a->fs);
	put_text_z(o, a, req->ack_control_id, HL7_FIELD_MAX); /* MSH-10 */
	put_c(o, a->fs);
	put_field_or(o, a, m->processing_id, DEFAULT_PROCESSING_ID); /* MSH-11 */
	put_c(o, a->fs);
	put_field_or(o, a, m->version, DEFAULT_VERSION); /* MSH-12 */
	if (!empty(&m->charset)) {
		for (int i = 13; i <= 18; i++)
			put_c(o, a->fs);
		mirror(o, a, m->charset);
	}
	put_c(o, '\r');
}

static const char *err_code_text(int code)
{
	switch (code) {
	case 0:
		return "Message accepted";
	case 100:
		return "Segment sequence error";
	case 101:
		return "Required field missing";
	case 102:
		return "Data type error";
	case 103:
		return "Table value not found";
	case 200:
		return "Unsupported message type";
	case 201:
		return "Unsupported event code";
	case 202:
		return "Unsupported processing id";
	case 203:
		return "Unsupported version id";
	case 204:
		return "Unknown key identifier";
	case 205:
		return "Duplicate key identifier";
	case 206:
		return "Application record locked";
	case 207:
		return "Application internal error";
	default:
		return "";
	}
}

/* Segment ID ^ sequence ^ field position (ERR-2 in 2.5+, ERR-1.1-3 before). */
static void put_location(struct out *o, const struct ack *a, const struct hl7_ack_req *req,
			 int always)
{
	if (!req->err_segment) {
		if (always) {
			put_c(o, a->enc[0]);
			put_c(o, a->enc[0]);
		}
		return;
	}
	put_text_z(o, a, req->err_segment, SEGMENT_ID_BUDGET);
	put_c(o, a->enc[0]);
	put_c(o, '1');
	put_c(o, a->enc[0]);
	if (req->err_field) {
		char num[16];

		snprintf(num, sizeof(num), "%u", req->err_field);
		put_s(o, num);
	}
}

static void write_err(struct out *o, const struct ack *a, const struct hl7_ack_req *req)
{
	char code[16];
	char sev = req->err_severity;

	if (sev != 'E' && sev != 'W' && sev != 'I' && sev != 'F')
		sev = 'E';
	snprintf(code, sizeof(code), "%d", (int)req->err_code);
	put_s(o, "ERR");
	put_c(o, a->fs);
	if (a->v25) {
		put_c(o, a->fs); /* ERR-1 empty */
		put_location(o, a, req, 0);
		put_c(o, a->fs);
		put_s(o, code);
		put_c(o, a->enc[0]);
		put_s(o, err_code_text((int)req->err_code));
		put_c(o, a->enc[0]);
		put_s(o, "HL70357");
		put_c(o, a->fs);
		put_c(o, sev);
		put(o, (const char[]){a->fs, a->fs, a->fs, a->fs}, 4); /* ERR-5..7 empty */
	} else {
		put_location(o, a, req, 1);
		put_c(o, a->enc[0]);
		put_s(o, code);
		put_c(o, a->enc[3]);
	}
	put_text_z(o, a, req->err_text, ERR_TEXT_BUDGET);
	put_c(o, '\r');
}

int hl7_build_ack(const struct hl7_ack_req *req, char *buf, size_t cap)
{
	static const char letters[] = {'A', 'E', 'R'};
	struct out o = {buf, cap > INT_MAX ? INT_MAX : cap, 0, 0};
	struct ack a;

	if (!req || !buf || (unsigned)req->code > HL7_REJECT)
		return -EINVAL;
	ack_delims(&a, req->msh);
	write_msh(&o, &a, req);
	put_s(&o, "MSA");
	put_c(&o, a.fs);
	put_c(&o, req->enhanced ? 'C' : 'A');
	put_c(&o, letters[req->code]);
	put_c(&o, a.fs);
	if (req->msh)
		mirror(&o, &a, req->msh->control_id);
	if (req->err_text && !a.v25) {
		put_c(&o, a.fs);
		put_text_z(&o, &a, req->err_text, ERR_TEXT_BUDGET); /* MSA-3 */
	}
	put_c(&o, '\r');
	if (req->err_text)
		write_err(&o, &a, req);
	if (o.err)
		return o.err;
	if (o.len < cap)
		buf[o.len] = '\0';
	return (int)o.len;
}

/* ---- MSA ---- */

int hl7_parse_msa(const void *msg, size_t len, struct hl7_str *code, struct hl7_str *control_id)
{
	const char *end = (const char *)msg + len;
	const char *p = skip_lead(msg, end), *e;
	char fs;

	code->p = control_id->p = NULL;
	code->len = control_id->len = 0;
	if (!starts_with(p, end, "MSH") || end - p < 4 || !is_delim(p[3]))
		return -EBADMSG;
	fs = p[3];
	for (p = next_seg(p, end); p < end; p = next_seg(p, end)) {
		if (end - p < 4 || memcmp(p, "MSA", 3) != 0 || p[3] != fs)
			continue;
		p += 4;
		e = field_end(p, end, fs);
		if (e == p)
			return -EBADMSG;
		code->p = p;
		code->len = (size_t)(e - p);
		if (e < end && *e == fs) {
			p = e + 1;
			e = field_end(p, end, fs);
			control_id->p = p;
			control_id->len = (size_t)(e - p);
		}
		return 0;
	}
	return -EBADMSG;
}

/* ---- any segment's field ---- */

/* The first segment named seg, or NULL. The ID must be followed by the
 * field separator or the segment's end: "PIDX|" is not a PID. */
static const char *find_segment(const char *p, const char *end, const char seg[3], char fs)
{
	for (; p < end; p = next_seg(p, end)) {
		if (end - p < 3 || memcmp(p, seg, 3) != 0)
			continue;
		if (end - p == 3 || p[3] == fs || is_seg_end(p[3]))
			return p;
	}
	return NULL;
}

int hl7_find_field(const void *msg, size_t len, const struct hl7_msh *msh, const char seg[3],
		   unsigned field, struct hl7_str *out)
{
	const char *end, *p, *e;
	unsigned n;

	out->p = NULL;
	out->len = 0;
	if (!msg || !msh || !seg || !msh->field_sep || field == 0)
		return -EINVAL;
	end = (const char *)msg + len;
	p = find_segment(skip_lead(msg, end), end, seg, msh->field_sep);
	if (!p)
		return -ENOENT;
	if (memcmp(seg, "MSH", 3) == 0) {
		/* MSH-1 is the separator after the ID, so MSH-n is the
		 * (n-1)th field split after it. */
		if (field == 1) {
			if (end - p > 3 && p[3] == msh->field_sep) {
				out->p = p + 3;
				out->len = 1;
			}
			return 0;
		}
		field--;
	}
	for (e = p + 3, n = 1; e < end && *e == msh->field_sep; n++) {
		p = e + 1;
		e = field_end(p, end, msh->field_sep);
		if (n == field) {
			out->p = p;
			out->len = (size_t)(e - p);
			break;
		}
	}
	return 0;
}
