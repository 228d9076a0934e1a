/*
 * HL7 v2 batch file splitter (issue 14): see batch.h for the contract.
 *
 * Two passes over the same state machine. The first checks the whole file
 * and measures its largest message without copying anything; only a file
 * that passed it is walked a second time, copying each message into one
 * reused buffer and handing it to the callback. A file is therefore split
 * completely or refused before any callback ran.
 */
#include "batch.h"

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SEG_ID_LEN	 3    /* "MSH", "PID", "ZPD" */
#define HEADER_MIN_LEN	 8    /* "MSH|^~\&": id, field separator, 4 encoding characters */
#define ENC_MIN		 4    /* MSH-2 / BHS-2 / FHS-2: component, repetition, escape, */
#define ENC_MAX		 5    /* subcomponent, and 2.7's truncation character */
#define COUNT_DIGITS_MAX 10   /* HL7's length of BTS-1 and FTS-1 */
#define EOF_BYTE	 0x1a /* DOS end-of-file mark some exporters append */
#define NUL_BYTE	 0x00
#define MLLP_START_BYTE	 0x0b /* MLLP's frame bytes: forwarding would cut the */
#define MLLP_END_BYTE	 0x1c /* message there, so they are refused up front */

static const uint8_t utf8_bom[] = {0xef, 0xbb, 0xbf};

enum seg_kind { SEG_FHS, SEG_FTS, SEG_BHS, SEG_BTS, SEG_MSH, SEG_OTHER };

static const char *const kind_names[] = {"FHS", "FTS", "BHS", "BTS", "MSH"};

struct line {
	const uint8_t *p;
	size_t len;
	size_t no; /* from 1, blank lines included, as an editor counts them */
};

struct split {
	const uint8_t *p, *end; /* what is left of the file */
	size_t lineno;
	size_t segments; /* segments seen so far, this one included */
	int batched;	 /* the first segment was FHS or BHS */
	size_t fhs_line; /* 0: no FHS */
	size_t bhs_line; /* 0: no batch open */
	int fts_seen;
	uint8_t file_fs, batch_fs, msg_fs;
	size_t batch_msgs, batches, msgs;
	int in_msg;
	size_t msg_len, max_len; /* normalized: every segment ends in one CR */
	char *why;		 /* the caller's, may be NULL */
	size_t whylen;
	/* Second pass only (out != NULL). */
	uint8_t *out;
	batch_msg_cb cb;
	void *arg;
	int cb_rc;
};

/* The reason texts are built here only, from line numbers, counts and the
 * fixed segment kinds. The only value taken from the file is a BTS-1 or
 * FTS-1 count, and only after it parsed as plain decimal. */
__attribute__((format(printf, 4, 5))) static int bad(struct split *s, size_t line, int rc,
						     const char *fmt, ...)
{
	va_list ap;
	int n = 0;

	if (!s->why || s->whylen == 0)
		return rc;
	if (line)
		n = snprintf(s->why, s->whylen, "line %zu: ", line);
	if (n >= 0 && (size_t)n < s->whylen) {
		va_start(ap, fmt);
		vsnprintf(s->why + n, s->whylen - (size_t)n, fmt, ap);
		va_end(ap);
	}
	return rc;
}

static const char *plural(unsigned long long n, const char *suffix)
{
	return n == 1 ? "" : suffix;
}

/* ---- lines ---- */

/* Bytes that must not reach the MLLP side; named by value, never shown. */
static int forbidden(struct split *s, size_t line, uint8_t c)
{
	switch (c) {
	case NUL_BYTE:
		return bad(s, line, -EBADMSG, "NUL byte in the file");
	case MLLP_START_BYTE:
	case MLLP_END_BYTE:
		return bad(s, line, -EBADMSG, "MLLP framing byte 0x%02X in the file", c);
	case EOF_BYTE:
		return bad(s, line, -EBADMSG, "end-of-file byte 0x1A before the end of the file");
	default:
		return 0;
	}
}

/* The next line, ended by CR, LF or CRLF (or the end of the file).
 * Returns 1 with a line, 0 at the end, -EBADMSG on a forbidden byte. */
static int next_line(struct split *s, struct line *l)
{
	const uint8_t *q = s->p;
	int rc;

	if (s->p >= s->end)
		return 0;
	l->no = ++s->lineno;
	for (; q < s->end && *q != '\r' && *q != '\n'; q++)
		if ((rc = forbidden(s, l->no, *q)) != 0)
			return rc;
	l->p = s->p;
	l->len = (size_t)(q - s->p);
	if (q < s->end && *q == '\r' && q + 1 < s->end && q[1] == '\n')
		q++;
	s->p = q < s->end ? q + 1 : q;
	return 1;
}

/* Blank and whitespace-only lines separate messages in many exports. */
static int is_blank(const struct line *l)
{
	for (size_t i = 0; i < l->len; i++)
		if (l->p[i] != ' ' && l->p[i] != '\t')
			return 0;
	return 1;
}

/* ---- segments ---- */

/* HL7's delimiter rule (as hl7.c): printable ASCII, no letter, digit, space. */
static int is_delim(uint8_t c)
{
	if (c < 0x21 || c > 0x7e)
		return 0;
	return !((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'));
}

static int id_char(uint8_t c)
{
	return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static enum seg_kind kind_of(const struct line *l)
{
	for (int k = SEG_FHS; k < SEG_OTHER; k++)
		if (memcmp(l->p, kind_names[k], SEG_ID_LEN) == 0)
			return (enum seg_kind)k;
	return SEG_OTHER;
}

/* Is the segment id followed by the field separator or the line's end? */
static int sep_ok(const struct line *l, uint8_t fs)
{
	return l->len == SEG_ID_LEN || l->p[SEG_ID_LEN] == fs;
}

/* Field 2 of a header: 4 or 5 distinct delimiters, none the field
 * separator, then the separator or the line's end (hl7.c's MSH-2 rule). */
static int enc_ok(const struct line *l, uint8_t fs)
{
	const uint8_t *enc = l->p + SEG_ID_LEN + 1;
	size_t room = l->len - SEG_ID_LEN - 1, n = 0;

	while (n < room && n <= ENC_MAX && enc[n] != fs)
		n++;
	if (n < ENC_MIN || n > ENC_MAX)
		return 0;
	for (size_t i = 0; i < n; i++) {
		if (!is_delim(enc[i]))
			return 0;
		for (size_t j = 0; j < i; j++)
			if (enc[i] == enc[j])
				return 0;
	}
	return 1;
}

/* FHS, BHS and MSH carry their separators: field 1 is the 4th byte, field 2
 * the encoding characters. A bad one would make every later field a guess. */
static int header_ok(struct split *s, const struct line *l, enum seg_kind k, uint8_t *fs)
{
	const char *name = kind_names[k];

	if (l->len < HEADER_MIN_LEN)
		return bad(s, l->no, -EBADMSG, "%s is shorter than %d bytes", name, HEADER_MIN_LEN);
	*fs = l->p[SEG_ID_LEN];
	if (!is_delim(*fs))
		return bad(s, l->no, -EBADMSG, "%s-1 is not a field separator", name);
	if (!enc_ok(l, *fs))
		return bad(s, l->no, -EBADMSG, "%s-2 is not %d or %d distinct encoding characters",
			   name, ENC_MIN, ENC_MAX);
	return 0;
}

/* BTS-1 and FTS-1: empty (*v = -1, not checked) or plain decimal. */
static int count_field(struct split *s, const struct line *l, uint8_t fs, long long *v)
{
	const char *name = kind_names[kind_of(l)];
	size_t i = SEG_ID_LEN + 1, digits = 0;

	*v = -1;
	if (l->len <= SEG_ID_LEN + 1 || l->p[i] == fs)
		return 0;
	*v = 0;
	for (; i < l->len && l->p[i] != fs; i++, digits++) {
		if (l->p[i] < '0' || l->p[i] > '9' || digits == COUNT_DIGITS_MAX)
			return bad(s, l->no, -EBADMSG, "%s-1 is not a number", name);
		*v = *v * 10 + (l->p[i] - '0');
	}
	return 0;
}

/* ---- messages ---- */

/* Appends one segment, ended by CR as MLLP carries it. The first pass only
 * measures, so that the second one needs a single buffer. */
static void msg_add(struct split *s, const struct line *l)
{
	if (s->out) {
		memcpy(s->out + s->msg_len, l->p, l->len);
		s->out[s->msg_len + l->len] = '\r';
	}
	s->msg_len += l->len + 1;
}

/* Closes the open message, if any: hands it out in the second pass. */
static int msg_end(struct split *s)
{
	if (!s->in_msg)
		return 0;
	s->in_msg = 0;
	if (s->msg_len > s->max_len)
		s->max_len = s->msg_len;
	if (s->out && (s->cb_rc = s->cb(s->arg, s->msgs - 1, s->out, s->msg_len)) != 0)
		return s->cb_rc;
	return 0;
}

/* ---- the structure, one handler per segment kind ---- */

static int on_fhs(struct split *s, const struct line *l)
{
	if (s->segments > 1)
		return bad(s, l->no, -EBADMSG, "FHS is not the first segment");
	s->fhs_line = l->no;
	return header_ok(s, l, SEG_FHS, &s->file_fs);
}

static int on_fts(struct split *s, const struct line *l)
{
	long long want;
	int rc;

	if (!s->fhs_line)
		return bad(s, l->no, -EBADMSG, "FTS without FHS");
	if (s->bhs_line)
		return bad(s, l->no, -EBADMSG, "FTS inside the batch of line %zu (BTS missing)",
			   s->bhs_line);
	if (!sep_ok(l, s->file_fs))
		return bad(s, l->no, -EBADMSG, "FTS is not followed by FHS's field separator");
	if ((rc = count_field(s, l, s->file_fs, &want)) != 0)
		return rc;
	if (want >= 0 && (unsigned long long)want != s->batches)
		return bad(s, l->no, -EBADMSG, "FTS-1 says %lld batch%s, the file holds %zu", want,
			   plural((unsigned long long)want, "es"), s->batches);
	s->fts_seen = 1;
	return 0;
}

static int on_bhs(struct split *s, const struct line *l)
{
	if (s->bhs_line)
		return bad(s, l->no, -EBADMSG, "BHS inside the batch of line %zu (BTS missing)",
			   s->bhs_line);
	if (!s->batched)
		return bad(s, l->no, -EBADMSG, "BHS after messages outside a batch");
	s->bhs_line = l->no;
	s->batch_msgs = 0;
	return header_ok(s, l, SEG_BHS, &s->batch_fs);
}

/* An empty batch is legal HL7 (periodic submissions with nothing to send):
 * it passes when BTS-1 is empty or 0. */
static int on_bts(struct split *s, const struct line *l)
{
	long long want;
	int rc;

	if (!s->bhs_line)
		return bad(s, l->no, -EBADMSG, "BTS without BHS");
	if ((rc = msg_end(s)) != 0)
		return rc;
	if (!sep_ok(l, s->batch_fs))
		return bad(s, l->no, -EBADMSG, "BTS is not followed by BHS's field separator");
	if ((rc = count_field(s, l, s->batch_fs, &want)) != 0)
		return rc;
	if (want >= 0 && (unsigned long long)want != s->batch_msgs)
		return bad(s, l->no, -EBADMSG, "BTS-1 says %lld message%s, the batch holds %zu",
			   want, plural((unsigned long long)want, "s"), s->batch_msgs);
	s->bhs_line = 0;
	s->batches++;
	return 0;
}

static int on_msh(struct split *s, const struct line *l)
{
	int rc;

	if (s->batched && !s->bhs_line)
		return bad(s, l->no, -EBADMSG, "MSH outside a batch");
	if ((rc = header_ok(s, l, SEG_MSH, &s->msg_fs)) != 0)
		return rc;
	if ((rc = msg_end(s)) != 0)
		return rc;
	if (s->msgs == BATCH_MESSAGES_MAX)
		return bad(s, 0, -E2BIG, "more than %d messages in the file", BATCH_MESSAGES_MAX);
	s->msgs++;
	s->batch_msgs++;
	s->in_msg = 1;
	s->msg_len = 0;
	msg_add(s, l);
	return 0;
}

/* Any other segment belongs to the open message. Its id is not named in
 * the reason: only the five kinds above are known not to be content. */
static int on_other(struct split *s, const struct line *l)
{
	if (!s->in_msg)
		return bad(s, l->no, -EBADMSG,
			   s->bhs_line ? "segment before the first MSH of the batch"
				       : "segment outside a message");
	if (!sep_ok(l, s->msg_fs))
		return bad(s, l->no, -EBADMSG,
			   "segment id is not followed by MSH's field separator");
	msg_add(s, l);
	return 0;
}

static int segment(struct split *s, const struct line *l)
{
	enum seg_kind k;

	for (size_t i = 0; i < SEG_ID_LEN; i++)
		if (i >= l->len || !id_char(l->p[i]))
			return bad(s, l->no, -EBADMSG,
				   "not a segment (no id of 3 capital letters or digits)");
	k = kind_of(l);
	if (s->fts_seen)
		return bad(s, l->no, -EBADMSG, "segment after FTS (FTS must be last)");
	if (++s->segments == 1) {
		if (k != SEG_FHS && k != SEG_BHS && k != SEG_MSH)
			return bad(s, l->no, -EBADMSG, "the first segment is not FHS, BHS or MSH");
		s->batched = k != SEG_MSH;
	}
	switch (k) {
	case SEG_FHS:
		return on_fhs(s, l);
	case SEG_FTS:
		return on_fts(s, l);
	case SEG_BHS:
		return on_bhs(s, l);
	case SEG_BTS:
		return on_bts(s, l);
	case SEG_MSH:
		return on_msh(s, l);
	default:
		return on_other(s, l);
	}
}

/* The end of the file closes the last message; open headers are errors. */
static int finish(struct split *s)
{
	int rc = msg_end(s);

	if (rc)
		return rc;
	if (s->bhs_line)
		return bad(s, s->bhs_line, -EBADMSG, "BHS has no BTS");
	if (s->fhs_line && !s->fts_seen)
		return bad(s, s->fhs_line, -EBADMSG, "FHS has no FTS");
	if (s->msgs == 0)
		return bad(s, 0, -EBADMSG, "the file holds no messages");
	return 0;
}

static int scan(struct split *s)
{
	struct line l;
	int rc;

	while ((rc = next_line(s, &l)) > 0) {
		if (is_blank(&l))
			continue;
		if ((rc = segment(s, &l)) != 0)
			return rc;
	}
	return rc < 0 ? rc : finish(s);
}

/* ---- the file ---- */

/* A leading UTF-8 BOM, and a trailing run of 0x1A with line ends around
 * it, are not part of any segment. */
static void trim(const uint8_t **p, const uint8_t **end)
{
	if ((size_t)(*end - *p) >= sizeof(utf8_bom) && memcmp(*p, utf8_bom, sizeof(utf8_bom)) == 0)
		*p += sizeof(utf8_bom);
	while (*end > *p && ((*end)[-1] == EOF_BYTE || (*end)[-1] == '\r' || (*end)[-1] == '\n'))
		(*end)--;
}

int batch_split(const uint8_t *buf, size_t len, batch_msg_cb cb, void *arg, size_t *count,
		char *why, size_t whylen)
{
	static const uint8_t empty[1];
	const uint8_t *start = buf ? buf : empty, *end = start + (buf ? len : 0);
	struct split s = {.why = why, .whylen = whylen};
	size_t msgs, max_len;
	int rc;

	assert(cb != NULL && (buf != NULL || len == 0));
	if (why && whylen)
		why[0] = '\0';
	if (count)
		*count = 0;
	trim(&start, &end);
	s.p = start;
	s.end = end;
	if ((rc = scan(&s)) != 0)
		return rc;
	msgs = s.msgs;
	max_len = s.max_len;

	s = (struct split){
	    .p = start, .end = end, .cb = cb, .arg = arg, .why = why, .whylen = whylen};
	if ((s.out = malloc(max_len)) == NULL)
		return bad(&s, 0, -ENOMEM, "no memory for a message of %zu bytes", max_len);
	rc = scan(&s);
	/* The file passed the first pass: only the callback can stop this one. */
	assert(rc == s.cb_rc && (rc != 0 || s.msgs == msgs));
	free(s.out);
	s.out = NULL;
	if (rc == 0 && count)
		*count = msgs;
	return rc;
}

int batch_is_batch(const uint8_t *buf, size_t len)
{
	const uint8_t *p = buf, *end;

	if (!buf)
		return 0;
	end = buf + len;
	if (len >= sizeof(utf8_bom) && memcmp(p, utf8_bom, sizeof(utf8_bom)) == 0)
		p += sizeof(utf8_bom);
	while (p < end && (*p == '\r' || *p == '\n' || *p == ' ' || *p == '\t'))
		p++;
	if (end - p <= SEG_ID_LEN || !is_delim(p[SEG_ID_LEN]))
		return 0;
	return memcmp(p, "FHS", SEG_ID_LEN) == 0 || memcmp(p, "BHS", SEG_ID_LEN) == 0;
}
