/*
 * JSON data models → HL7 v2. See translate.h for the contract and
 * docs/translation.md for the tables and the rules.
 *
 * Everything a message holds comes from two tables per data model: the
 * events (Meta.EventType → MSH-9 and the segments to write) and the rows
 * (segment, field, component, JSON path, converter, limit). The code below
 * knows no field by name: a new model is a new pair of tables.
 */
#include <assert.h>
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "translate.h"

#define XL_VALUE_MAX 1024 /* one escaped component; every row's limit is below */
#define XL_SEGS_MAX  6

/* Values that come from the caller or from the event, not from the JSON. */
enum xl_ctx {
	CTX_NONE,
	CTX_SEND_APP,
	CTX_SEND_FAC,
	CTX_RECV_APP,
	CTX_RECV_FAC,
	CTX_NOW,
	CTX_TYPE,
	CTX_TRIGGER,
	CTX_STRUCT,
	CTX_CONTROL,
	CTX_VERSION,
	CTX_CHARSET,
	CTX_ONE,  /* "1": set IDs of segments that occur once */
	CTX_NA,	  /* "N": PV1-2 "not applicable" when the JSON has no class */
	CTX_PROD, /* "P": MSH-11 when Meta.Test is absent */
	CTX_N
};

enum xl_conv {
	CV_TEXT, /* string (or integer) → escaped text */
	CV_DATE, /* YYYY[-MM[-DD]] → YYYY[MM[DD]] */
	CV_DTM,	 /* ISO 8601 date-time → HL7 DTM, precision and offset kept */
	CV_MAP,	 /* string or boolean → code through a map */
	CV_CTX,	 /* no JSON: the context value dflt */
};

struct xl_map {
	const char *from, *to;
};

struct xl_row {
	const char *seg;
	unsigned char field, comp;
	const char *each; /* array whose elements are the field's repetitions, or NULL */
	const char *path; /* from the root, or from the element when each is set */
	enum xl_conv conv;
	const struct xl_map *map;
	enum xl_ctx dflt; /* the value when the JSON gives none */
	unsigned short max;
};

struct xl_event {
	const char *event;     /* Meta.EventType */
	const char *sel_path;  /* optional selector: a JSON path ... */
	const char *sel_value; /* ... and the value it must hold (NULL: must be absent) */
	const char *type, *trigger, *structure;
	const char *segs[XL_SEGS_MAX];
	const char *required; /* a JSON path that must hold a value (an array: an element) */
};

struct xl_model {
	const char *name; /* Meta.DataModel */
	const struct xl_event *events;
	size_t nevents;
	const struct xl_row *rows; /* sorted by segment group, field, component */
	size_t nrows;
};

#define NELEMS(a) (sizeof(a) / sizeof((a)[0]))

/* ---- PatientAdmin ---- */

static const struct xl_map sex_map[] = {
    {"Male", "M"}, {"Female", "F"}, {"Other", "O"}, {"Unknown", "U"}, {NULL, NULL}};
/* HL7 table 0004. */
static const struct xl_map class_map[] = {
    {"Inpatient", "I"}, {"Outpatient", "O"}, {"Emergency", "E"}, {"Preadmit", "P"},
    {"Recurring", "R"}, {"Obstetrics", "B"}, {NULL, NULL}};
static const struct xl_map test_map[] = {{"true", "T"}, {"false", "P"}, {NULL, NULL}};

#define IDS "Patient.Identifiers"
#define DEM "Patient.Demographics."
#define VIS "Visit."

static const struct xl_row pa_rows[] = {
    {"MSH", 3, 1, NULL, NULL, CV_CTX, NULL, CTX_SEND_APP, 227},
    {"MSH", 4, 1, NULL, NULL, CV_CTX, NULL, CTX_SEND_FAC, 227},
    {"MSH", 5, 1, NULL, NULL, CV_CTX, NULL, CTX_RECV_APP, 227},
    {"MSH", 6, 1, NULL, NULL, CV_CTX, NULL, CTX_RECV_FAC, 227},
    {"MSH", 7, 1, NULL, "Meta.EventDateTime", CV_DTM, NULL, CTX_NOW, 40},
    {"MSH", 9, 1, NULL, NULL, CV_CTX, NULL, CTX_TYPE, 3},
    {"MSH", 9, 2, NULL, NULL, CV_CTX, NULL, CTX_TRIGGER, 3},
    {"MSH", 9, 3, NULL, NULL, CV_CTX, NULL, CTX_STRUCT, 7},
    {"MSH", 10, 1, NULL, NULL, CV_CTX, NULL, CTX_CONTROL, 199},
    {"MSH", 11, 1, NULL, "Meta.Test", CV_MAP, test_map, CTX_PROD, 1},
    {"MSH", 12, 1, NULL, NULL, CV_CTX, NULL, CTX_VERSION, 60},
    {"MSH", 18, 1, NULL, NULL, CV_CTX, NULL, CTX_CHARSET, 16},
    {"EVN", 1, 1, NULL, NULL, CV_CTX, NULL, CTX_TRIGGER, 3},
    {"EVN", 2, 1, NULL, "Meta.EventDateTime", CV_DTM, NULL, CTX_NOW, 40},
    {"PID", 1, 1, NULL, NULL, CV_CTX, NULL, CTX_ONE, 4},
    {"PID", 3, 1, IDS, "ID", CV_TEXT, NULL, CTX_NONE, 50},
    {"PID", 3, 4, IDS, "IDType", CV_TEXT, NULL, CTX_NONE, 50},
    {"PID", 5, 1, NULL, DEM "LastName", CV_TEXT, NULL, CTX_NONE, 80},
    {"PID", 5, 2, NULL, DEM "FirstName", CV_TEXT, NULL, CTX_NONE, 50},
    {"PID", 5, 3, NULL, DEM "MiddleName", CV_TEXT, NULL, CTX_NONE, 50},
    {"PID", 7, 1, NULL, DEM "DOB", CV_DATE, NULL, CTX_NONE, 8},
    {"PID", 8, 1, NULL, DEM "Sex", CV_MAP, sex_map, CTX_NONE, 1},
    {"PID", 11, 1, NULL, DEM "Address.StreetAddress", CV_TEXT, NULL, CTX_NONE, 120},
    {"PID", 11, 3, NULL, DEM "Address.City", CV_TEXT, NULL, CTX_NONE, 50},
    {"PID", 11, 4, NULL, DEM "Address.State", CV_TEXT, NULL, CTX_NONE, 50},
    {"PID", 11, 5, NULL, DEM "Address.ZIP", CV_TEXT, NULL, CTX_NONE, 12},
    {"PID", 11, 6, NULL, DEM "Address.Country", CV_TEXT, NULL, CTX_NONE, 3},
    {"PID", 11, 9, NULL, DEM "Address.County", CV_TEXT, NULL, CTX_NONE, 20},
    {"PID", 13, 1, NULL, DEM "PhoneNumber.Home", CV_TEXT, NULL, CTX_NONE, 40},
    {"PID", 14, 1, NULL, DEM "PhoneNumber.Office", CV_TEXT, NULL, CTX_NONE, 40},
    {"PID", 19, 1, NULL, DEM "SSN", CV_TEXT, NULL, CTX_NONE, 16},
    {"PV1", 1, 1, NULL, NULL, CV_CTX, NULL, CTX_ONE, 4},
    {"PV1", 2, 1, NULL, VIS "PatientClass", CV_MAP, class_map, CTX_NA, 1},
    {"PV1", 3, 1, NULL, VIS "Location.Department", CV_TEXT, NULL, CTX_NONE, 20},
    {"PV1", 3, 2, NULL, VIS "Location.Room", CV_TEXT, NULL, CTX_NONE, 20},
    {"PV1", 3, 3, NULL, VIS "Location.Bed", CV_TEXT, NULL, CTX_NONE, 20},
    {"PV1", 3, 4, NULL, VIS "Location.Facility", CV_TEXT, NULL, CTX_NONE, 20},
    {"PV1", 7, 1, NULL, VIS "AttendingProvider.ID", CV_TEXT, NULL, CTX_NONE, 20},
    {"PV1", 7, 2, NULL, VIS "AttendingProvider.LastName", CV_TEXT, NULL, CTX_NONE, 50},
    {"PV1", 7, 3, NULL, VIS "AttendingProvider.FirstName", CV_TEXT, NULL, CTX_NONE, 50},
    {"PV1", 19, 1, NULL, VIS "VisitNumber", CV_TEXT, NULL, CTX_NONE, 20},
    {"PV1", 44, 1, NULL, VIS "VisitDateTime", CV_DTM, NULL, CTX_NONE, 40},
    {"PV1", 45, 1, NULL, VIS "DischargeDateTime", CV_DTM, NULL, CTX_NONE, 40},
    {"MRG", 1, 1, "PriorPatient.Identifiers", "ID", CV_TEXT, NULL, CTX_NONE, 50},
    {"MRG", 1, 4, "PriorPatient.Identifiers", "IDType", CV_TEXT, NULL, CTX_NONE, 50},
};

#define ADT_VISIT "MSH", "EVN", "PID", "PV1"
/* First match wins: selector rows come before the event's default row. */
static const struct xl_event pa_events[] = {
    {"Arrival", VIS "PatientClass", "Inpatient", "ADT", "A01", "ADT_A01", {ADT_VISIT}, NULL},
    {"Arrival", NULL, NULL, "ADT", "A04", "ADT_A01", {ADT_VISIT}, NULL},
    {"Registration", NULL, NULL, "ADT", "A04", "ADT_A01", {ADT_VISIT}, NULL},
    {"PreAdmit", NULL, NULL, "ADT", "A05", "ADT_A05", {ADT_VISIT}, NULL},
    {"Transfer", NULL, NULL, "ADT", "A02", "ADT_A02", {ADT_VISIT}, NULL},
    {"Discharge", NULL, NULL, "ADT", "A03", "ADT_A03", {ADT_VISIT}, NULL},
    {"Cancel", "Meta.CancelledEvent", NULL, "ADT", "A11", "ADT_A09", {ADT_VISIT}, NULL},
    {"Cancel", "Meta.CancelledEvent", "Arrival", "ADT", "A11", "ADT_A09", {ADT_VISIT}, NULL},
    {"Cancel", "Meta.CancelledEvent", "Registration", "ADT", "A11", "ADT_A09", {ADT_VISIT}, NULL},
    {"Cancel", "Meta.CancelledEvent", "Transfer", "ADT", "A12", "ADT_A12", {ADT_VISIT}, NULL},
    {"Cancel", "Meta.CancelledEvent", "Discharge", "ADT", "A13", "ADT_A01", {ADT_VISIT}, NULL},
    {"Cancel", "Meta.CancelledEvent", "PreAdmit", "ADT", "A38", "ADT_A38", {ADT_VISIT}, NULL},
    {"NewPatient", NULL, NULL, "ADT", "A28", "ADT_A05", {ADT_VISIT}, NULL},
    {"PatientUpdate", NULL, NULL, "ADT", "A31", "ADT_A05", {ADT_VISIT}, NULL},
    {"VisitUpdate", NULL, NULL, "ADT", "A08", "ADT_A01", {ADT_VISIT}, NULL},
    /* A merge that names no prior patient would be an empty MRG-1: refused. */
    {"PatientMerge",
     NULL,
     NULL,
     "ADT",
     "A40",
     "ADT_A39",
     {"MSH", "EVN", "PID", "MRG"},
     "PriorPatient.Identifiers"},
};

static const struct xl_model models[] = {
    {"PatientAdmin", pa_events, NELEMS(pa_events), pa_rows, NELEMS(pa_rows)},
};

/* ---- one translation ---- */

struct xl {
	json_t *root;
	int latin1;
	const char *ctx[CTX_N];
	struct xl_error *err;
	char *p; /* the message being built */
	size_t len, cap;
	int rc;			      /* sticky: the first failure */
	unsigned cur_f, cur_r, cur_c; /* last position written in the segment */
	char val[XL_VALUE_MAX];	      /* the value being escaped */
	char prefix[sizeof(((struct xl_error *)0)->path)]; /* "$." or "$.Patient.Identifiers[2]." */
};

__attribute__((format(printf, 3, 4))) static int fail(struct xl *x, const char *path,
						      const char *fmt, ...)
{
	va_list ap;

	size_t plen = strlen(x->prefix);

	if (x->rc)
		return x->rc;
	/* Without a key, the path names the element or the root: no dot. */
	if (!path && plen > 1 && x->prefix[plen - 1] == '.')
		plen--;
	snprintf(x->err->path, sizeof(x->err->path), "%.*s%s", (int)plen, x->prefix,
		 path ? path : "");
	va_start(ap, fmt);
	vsnprintf(x->err->reason, sizeof(x->err->reason), fmt, ap);
	va_end(ap);
	x->rc = -EINVAL;
	return x->rc;
}

static void put(struct xl *x, const void *s, size_t n)
{
	if (x->rc)
		return;
	if (n > x->cap - x->len) {
		size_t cap = x->cap ? x->cap : 1024;
		char *p;

		while (n > cap - x->len)
			cap *= 2;
		p = realloc(x->p, cap + 1); /* + 1: the NUL after the message */
		if (!p) {
			x->rc = -ENOMEM;
			return;
		}
		x->p = p;
		x->cap = cap;
	}
	memcpy(x->p + x->len, s, n);
	x->len += n;
}

static void put_n(struct xl *x, char c, unsigned n)
{
	while (n--)
		put(x, &c, 1);
}

/* Walks a dotted path of object keys from base. A missing key or a null
 * anywhere gives *out NULL: an empty field. Something other than an object
 * on the way is the sender's mistake, so it is refused. */
static int lookup(struct xl *x, json_t *base, const char *path, json_t **out)
{
	const char *s = path;

	*out = base;
	while (*out && !json_is_null(*out) && *s) {
		const char *dot = strchr(s, '.');
		size_t n = dot ? (size_t)(dot - s) : strlen(s);

		if (!json_is_object(*out))
			return fail(x, path, "expected an object at \"%.*s\"", (int)(s - path - 1),
				    path);
		*out = json_object_getn(*out, s, n);
		s += n + (dot != NULL);
	}
	if (*out && json_is_null(*out))
		*out = NULL;
	return 0;
}

/* ---- escaping, charset, truncation ---- */

/* Decodes one UTF-8 sequence (the caller's strings are not checked by
 * jansson). Returns its length, 0 when invalid. */
static size_t utf8_decode(const unsigned char *s, size_t n, unsigned *cp)
{
	size_t k, i;

	if (s[0] < 0x80) {
		*cp = s[0];
		return 1;
	}
	k = s[0] >= 0xf0 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc0 ? 2 : 0;
	if (k == 0 || s[0] > 0xf4 || k > n)
		return 0;
	*cp = s[0] & (0x3f >> (k - 1));
	for (i = 1; i < k; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		*cp = (*cp << 6) | (s[i] & 0x3f);
	}
	if (*cp < (k == 2   ? 0x80u
		   : k == 3 ? 0x800u
			    : 0x10000u) ||
	    *cp > 0x10ffff || (*cp >= 0xd800 && *cp <= 0xdfff))
		return 0;
	return k;
}

/* The output unit for one character: an escape sequence, one Latin-1 byte,
 * or the UTF-8 bytes as given. Returns its length, or a refusal. */
static int unit_for(struct xl *x, const char *path, const unsigned char *s, size_t k, unsigned cp,
		    char unit[8])
{
	static const char delim[] = "|^~\\&", code[] = "FSRET";
	const char *d = cp < 0x80 && cp ? strchr(delim, (int)cp) : NULL;

	if (d)
		return snprintf(unit, 8, "\\%c\\", code[d - delim]);
	if (cp == 0x0b || cp == 0x1c)
		return fail(x, path, "control character U+%04X (MLLP framing) is not allowed", cp);
	if ((cp < 0x20 && cp != '\t') || cp == 0x7f)
		return snprintf(unit, 8, "\\X%02X\\", cp);
	if (x->latin1 && cp > 0xff)
		return fail(x, path, "character U+%04X cannot be represented in ISO 8859/1", cp);
	if (x->latin1) {
		unit[0] = (char)cp;
		return 1;
	}
	memcpy(unit, s, k);
	return (int)k;
}

/* Escapes s into x->val, cut at max bytes between whole units. Every
 * character is checked, also those past the cut: a refusal does not depend
 * on the field's length. Returns the length written, or a refusal. */
static int escape(struct xl *x, const char *path, const char *s, size_t n, unsigned max)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0, len = 0;
	int full = 0;

	assert(max <= sizeof(x->val));
	while (i < n) {
		char unit[8];
		unsigned cp;
		size_t k = utf8_decode(u + i, n - i, &cp);
		int ul;

		if (k == 0)
			return fail(x, path, "invalid UTF-8");
		ul = unit_for(x, path, u + i, k, cp, unit);
		if (ul < 0)
			return ul;
		if (!full && len + (size_t)ul <= max) {
			memcpy(x->val + len, unit, (size_t)ul);
			len += (size_t)ul;
		} else {
			full = 1;
		}
		i += k;
	}
	return (int)len;
}

/* ---- dates ---- */

static int digits(const char **s, const char *end, int n, int *v)
{
	*v = 0;
	if (end - *s < n)
		return 0;
	for (int i = 0; i < n; i++, (*s)++) {
		if (**s < '0' || **s > '9')
			return 0;
		*v = *v * 10 + (**s - '0');
	}
	return 1;
}

static int days_in(int y, int m)
{
	static const int dm[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;

	return dm[m - 1] + (m == 2 && leap);
}

/* YYYY[-MM[-DD]] into out; *s is left after it. Returns 0 or a reason. */
static const char *parse_date(const char **s, const char *end, char *out, size_t *olen)
{
	int y, m, d;

	if (!digits(s, end, 4, &y))
		return "expected a date YYYY[-MM[-DD]]";
	*olen = (size_t)sprintf(out, "%04d", y);
	if (*s == end || **s != '-')
		return NULL;
	(*s)++;
	if (!digits(s, end, 2, &m) || m < 1 || m > 12)
		return "impossible month";
	*olen += (size_t)sprintf(out + *olen, "%02d", m);
	if (*s == end || **s != '-')
		return NULL;
	(*s)++;
	if (!digits(s, end, 2, &d) || d < 1 || d > days_in(y, m))
		return "impossible day of month";
	*olen += (size_t)sprintf(out + *olen, "%02d", d);
	return NULL;
}

/* Thh:mm[:ss[.f{1,4}]] into out. */
static const char *parse_time(const char **s, const char *end, char *out, size_t *olen)
{
	int h, mi, sec;

	if (!digits(s, end, 2, &h) || h > 23)
		return "impossible hour";
	if (*s == end || **s != ':' || (++*s, !digits(s, end, 2, &mi)) || mi > 59)
		return "impossible minute";
	*olen += (size_t)sprintf(out + *olen, "%02d%02d", h, mi);
	if (*s == end || **s != ':')
		return NULL;
	(*s)++;
	if (!digits(s, end, 2, &sec) || sec > 59)
		return "impossible second";
	*olen += (size_t)sprintf(out + *olen, "%02d", sec);
	if (*s == end || **s != '.')
		return NULL;
	out[(*olen)++] = *(*s)++;
	for (int n = 0; *s < end && **s >= '0' && **s <= '9'; n++) {
		if (n == 4)
			return "more than 4 fraction digits (HL7 DTM holds 4)";
		out[(*olen)++] = *(*s)++;
	}
	if (out[*olen - 1] == '.')
		return "expected fraction digits after '.'";
	return NULL;
}

/* Z or ±hh:mm into ±hhmm. */
static const char *parse_offset(const char **s, const char *end, char *out, size_t *olen)
{
	int h, m;
	char sign;

	if (*s == end)
		return NULL;
	if (**s == 'Z' && *s + 1 == end) {
		(*s)++;
		*olen += (size_t)sprintf(out + *olen, "+0000");
		return NULL;
	}
	sign = **s;
	if (sign != '+' && sign != '-')
		return "expected Z or an offset +hh:mm";
	(*s)++;
	if (!digits(s, end, 2, &h) || h > 14 || *s == end || *(*s)++ != ':' ||
	    !digits(s, end, 2, &m) || m > 59)
		return "impossible time zone offset";
	*olen += (size_t)sprintf(out + *olen, "%c%02d%02d", sign, h, m);
	return NULL;
}

/* ISO 8601 → HL7 DT or DTM; out holds at least 32 bytes. */
static const char *convert_date(const char *s, size_t n, int with_time, char *out, size_t *olen)
{
	const char *end = s + n, *why;

	*olen = 0;
	why = parse_date(&s, end, out, olen);
	if (!why && with_time && s < end && *s == 'T' && *olen == 8) {
		s++;
		why = parse_time(&s, end, out, olen);
		if (!why)
			why = parse_offset(&s, end, out, olen);
	}
	if (!why && s != end)
		why =
		    with_time ? "expected an ISO 8601 date-time" : "expected a date YYYY[-MM[-DD]]";
	return why;
}

/* ---- values ---- */

static int map_code(struct xl *x, const struct xl_row *r, json_t *v, const char **code)
{
	const char *s = json_is_true(v)	   ? "true"
			: json_is_false(v) ? "false"
					   : json_string_value(v);

	if (!s)
		return fail(x, r->path, "expected a string");
	for (const struct xl_map *m = r->map; m->from; m++) {
		if (strcasecmp(m->from, s) == 0) {
			*code = m->to;
			return 0;
		}
	}
	return fail(x, r->path, "not a known code for this field");
}

/* The unescaped text of one row's value (NULL for none) into s and n. */
static int source_text(struct xl *x, const struct xl_row *r, json_t *base, char tmp[32],
		       const char **s, size_t *n)
{
	json_t *v = NULL;
	const char *why;

	if (r->path && lookup(x, base, r->path, &v) < 0)
		return x->rc;
	if (!v) {
		*s = x->ctx[r->dflt];
		*n = *s ? strlen(*s) : 0;
		return 0;
	}
	if (r->conv == CV_MAP) {
		if (map_code(x, r, v, s) < 0)
			return x->rc;
		*n = strlen(*s);
		return 0;
	}
	if (json_is_integer(v) && r->conv == CV_TEXT) {
		*n = (size_t)snprintf(tmp, 32, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		*s = tmp;
		return 0;
	}
	if (!json_is_string(v))
		return fail(x, r->path, "expected a string");
	*s = json_string_value(v);
	*n = json_string_length(v);
	if (r->conv == CV_TEXT)
		return 0;
	why = convert_date(*s, *n, r->conv == CV_DTM, tmp, n);
	*s = tmp;
	return why ? fail(x, r->path, "%s", why) : 0;
}

/* Writes a non-empty value at (field, rep, comp) with the separators that
 * lead there from the last value written: empty trailing components,
 * repetitions and fields are never written. */
static void place(struct xl *x, unsigned f, unsigned rep, unsigned c, size_t n)
{
	if (f > x->cur_f) {
		put_n(x, '|', f - x->cur_f);
		put_n(x, '~', rep);
		put_n(x, '^', c - 1);
	} else if (rep > x->cur_r) {
		put_n(x, '~', rep - x->cur_r);
		put_n(x, '^', c - 1);
	} else {
		assert(c > x->cur_c);
		put_n(x, '^', c - x->cur_c);
	}
	put(x, x->val, n);
	x->cur_f = f;
	x->cur_r = rep;
	x->cur_c = c;
}

/* The components of one repetition: rows[0..n) share segment and field. */
static void write_rep(struct xl *x, const struct xl_row *rows, size_t n, json_t *base, unsigned rep)
{
	for (size_t i = 0; i < n && !x->rc; i++) {
		char tmp[32];
		const char *s = NULL;
		size_t len = 0;
		int el;

		if (source_text(x, &rows[i], base, tmp, &s, &len) < 0 || !s)
			continue;
		el = escape(x, rows[i].path, s, len, rows[i].max);
		if (el > 0)
			place(x, rows[i].field, rep, rows[i].comp, (size_t)el);
	}
}

/* A field whose repetitions are the elements of an array. */
static void write_each(struct xl *x, const struct xl_row *rows, size_t n)
{
	size_t plen = strlen(x->prefix);
	json_t *arr, *el;
	size_t i;

	if (lookup(x, x->root, rows[0].each, &arr) < 0 || !arr)
		return;
	if (!json_is_array(arr)) {
		fail(x, rows[0].each, "expected an array");
		return;
	}
	if (json_array_size(arr) > XL_REP_MAX) {
		fail(x, rows[0].each, "more than %d elements", XL_REP_MAX);
		return;
	}
	json_array_foreach(arr, i, el)
	{
		snprintf(x->prefix + plen, sizeof(x->prefix) - plen, "%s[%zu].", rows[0].each, i);
		if (!json_is_object(el) && !json_is_null(el))
			fail(x, NULL, "expected an object");
		else
			write_rep(x, rows, n, el, (unsigned)i);
		x->prefix[plen] = '\0';
		if (x->rc)
			return;
	}
}

static void write_segment(struct xl *x, const struct xl_model *m, const char *seg)
{
	size_t i = 0, j;

	put(x, seg, 3);
	x->cur_f = 0;
	x->cur_r = 0;
	x->cur_c = 1;
	if (strcmp(seg, "MSH") == 0) {
		put(x, "|^~\\&", 5); /* MSH-1 and MSH-2 */
		x->cur_f = 2;
	}
	while (i < m->nrows && !x->rc) {
		for (j = i; j < m->nrows && m->rows[j].field == m->rows[i].field &&
			    strcmp(m->rows[j].seg, m->rows[i].seg) == 0;
		     j++)
			;
		if (strcmp(m->rows[i].seg, seg) == 0) {
			if (m->rows[i].each)
				write_each(x, m->rows + i, j - i);
			else
				write_rep(x, m->rows + i, j - i, x->root, 0);
		}
		i = j;
	}
	put(x, "\r", 1);
}

/* ---- model and event ---- */

static int string_at(struct xl *x, const char *path, const char **s)
{
	json_t *v;

	if (lookup(x, x->root, path, &v) < 0)
		return x->rc;
	if (v && !json_is_string(v))
		return fail(x, path, "expected a string");
	*s = v ? json_string_value(v) : NULL;
	return 0;
}

static int event_matches(struct xl *x, const struct xl_event *e, const char *event, int *match)
{
	const char *sel;

	*match = 0;
	if (strcmp(e->event, event) != 0)
		return 0;
	if (!e->sel_path) {
		*match = 1;
		return 0;
	}
	if (string_at(x, e->sel_path, &sel) < 0)
		return x->rc;
	*match = e->sel_value ? sel && strcasecmp(sel, e->sel_value) == 0 : !sel;
	return 0;
}

static int pick_event(struct xl *x, const struct xl_model **mp, const struct xl_event **ep)
{
	const char *model, *event;
	size_t i;
	int match, seen = 0;

	if (string_at(x, "Meta.DataModel", &model) < 0 ||
	    string_at(x, "Meta.EventType", &event) < 0)
		return x->rc;
	for (i = 0; i < NELEMS(models) && (!model || strcmp(models[i].name, model)); i++)
		;
	if (i == NELEMS(models))
		return fail(x, "Meta.DataModel", "%s data model (supported: PatientAdmin)",
			    model ? "unsupported" : "missing");
	*mp = &models[i];
	if (!event)
		return fail(x, "Meta.EventType", "missing event type");
	for (i = 0; i < (*mp)->nevents; i++) {
		const struct xl_event *e = &(*mp)->events[i];

		seen |= strcmp(e->event, event) == 0;
		if (event_matches(x, e, event, &match) < 0)
			return x->rc;
		if (match) {
			*ep = e;
			return 0;
		}
	}
	if (seen)
		return fail(x, "Meta.CancelledEvent", "not an event that Cancel can cancel");
	return fail(x, "Meta.EventType", "unsupported event type for %s", (*mp)->name);
}

/* ---- parsing ---- */

/* Deepest nesting of objects and arrays, counted on the bytes before
 * jansson sees them: its own limit (2048) is far above any data model,
 * and its message would not say ours. */
static unsigned json_depth(const char *s, size_t n)
{
	unsigned d = 0, max = 0;
	int in_str = 0;

	for (size_t i = 0; i < n; i++) {
		if (in_str) {
			if (s[i] == '\\')
				i++;
			else if (s[i] == '"')
				in_str = 0;
		} else if (s[i] == '"') {
			in_str = 1;
		} else if (s[i] == '{' || s[i] == '[') {
			max = ++d > max ? d : max;
		} else if ((s[i] == '}' || s[i] == ']') && d) {
			d--;
		}
	}
	return max;
}

static int parse(struct xl *x, const char *json, size_t len)
{
	json_error_t je;

	if (json_depth(json, len) > XL_JSON_DEPTH_MAX)
		return fail(x, NULL, "JSON nested deeper than %d levels", XL_JSON_DEPTH_MAX);
	/* Duplicate keys refused by the flag; invalid UTF-8 and \u0000 are
	 * refused by jansson unless JSON_ALLOW_NUL is given. */
	x->root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
	if (!x->root) {
		if (json_error_code(&je) == json_error_out_of_memory)
			return x->rc = -ENOMEM;
		return fail(x, NULL, "invalid JSON at line %d column %d: %s", je.line, je.column,
			    je.text);
	}
	if (!json_is_object(x->root))
		return fail(x, NULL, "expected a JSON object");
	return 0;
}

static int set_context(struct xl *x, const struct xl_opts *o)
{
	if (!o->version || !*o->version || !o->control_id || !*o->control_id || !o->now ||
	    !*o->now) {
		snprintf(x->prefix, sizeof(x->prefix), "(opts)");
		return fail(x, NULL, "version, control_id and now are required");
	}
	x->latin1 = o->latin1;
	x->ctx[CTX_SEND_APP] = o->sending_app;
	x->ctx[CTX_SEND_FAC] = o->sending_facility;
	x->ctx[CTX_RECV_APP] = o->receiving_app;
	x->ctx[CTX_RECV_FAC] = o->receiving_facility;
	x->ctx[CTX_NOW] = o->now;
	x->ctx[CTX_CONTROL] = o->control_id;
	x->ctx[CTX_VERSION] = o->version;
	x->ctx[CTX_CHARSET] = o->latin1 ? "8859/1" : "UNICODE UTF-8";
	x->ctx[CTX_ONE] = "1";
	x->ctx[CTX_NA] = "N";
	x->ctx[CTX_PROD] = "P";
	return 0;
}

/* The event's required value is there: a non-null value, or an array with
 * at least one element. */
static int check_required(struct xl *x, const struct xl_event *e)
{
	json_t *v;

	if (!e->required || lookup(x, x->root, e->required, &v) < 0)
		return x->rc;
	if (!v || (json_is_array(v) && json_array_size(v) == 0))
		return fail(x, e->required, "required for %s %s", e->type, e->trigger);
	return 0;
}

int translate_json(const void *json, size_t len, const struct xl_opts *o, char **out,
		   size_t *len_out, struct xl_error *err)
{
	struct xl x = {.err = err, .prefix = "$."};
	const struct xl_model *m = NULL;
	const struct xl_event *e = NULL;

	*out = NULL;
	*len_out = 0;
	memset(err, 0, sizeof(*err));
	if (len > XL_JSON_MAX) {
		snprintf(err->reason, sizeof(err->reason), "JSON larger than %d bytes",
			 XL_JSON_MAX);
		return -EMSGSIZE;
	}
	if (set_context(&x, o) == 0 && parse(&x, json, len) == 0 && pick_event(&x, &m, &e) == 0 &&
	    check_required(&x, e) == 0) {
		x.ctx[CTX_TYPE] = e->type;
		x.ctx[CTX_TRIGGER] = e->trigger;
		x.ctx[CTX_STRUCT] = e->structure;
		for (size_t i = 0; i < XL_SEGS_MAX && e->segs[i]; i++)
			write_segment(&x, m, e->segs[i]);
	}
	json_decref(x.root);
	if (x.rc) {
		free(x.p);
		return x.rc;
	}
	x.p[x.len] = '\0';
	*out = x.p;
	*len_out = x.len;
	return 0;
}
