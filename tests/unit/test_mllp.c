/*
 * MLLP deframer and encoder.
 *
 * Every stream in the table is fed four ways (all at once, one byte at a time,
 * 7-byte chunks, pseudo-random chunks) and must give the same events, junk and
 * abandoned counts. Streams with a file in samples/frames/ are read from disk
 * when it is there (see samples.h), else composed from their pieces; a
 * missing file fails test_sample_files_match_table.
 */
#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mllp-bridge/mllp.h"
#include "samples.h"

#define HDR_SLACK 16 /* what the deframer may keep beside one payload */

/* A piece of a stream or of an expected payload: a sample file's bytes, raw
 * bytes, or `fill` bytes of 'x'. A zeroed piece ends a list. */
struct piece {
	const char *sample;
	const char *raw;
	size_t len;
	size_t fill;
};

/* Pieces, not samples.h's messages: the same names, one field more. */
#undef RAW
#undef SMP
#define RAW(s)                                                                                     \
	{                                                                                          \
		NULL, s, sizeof(s) - 1, 0                                                          \
	}
#define SMP(n)                                                                                     \
	{                                                                                          \
		n, NULL, 0, 0                                                                      \
	}
#define FILL(k)                                                                                    \
	{                                                                                          \
		NULL, NULL, 0, k                                                                   \
	}
#define FRAME(n) RAW("\013"), SMP(n), RAW("\034\r")

#define ADT "adt_a01_v251.hl7"
#define ORU "oru_r01_enhanced_ack.hl7"
#define VXU "vxu_v04_repeats_escapes.hl7"

struct want {
	enum mllp_event ev; /* MLLP_NEED_MORE ends the list */
	struct piece payload;
};

struct stream_case {
	const char *name;
	const char *file; /* under samples/, or NULL */
	size_t max_frame; /* 0: MLLP_MAX_FRAME_DEFAULT */
	struct piece in[12];
	struct want out[6];
	uint64_t junk;
	uint64_t abandoned;
	int in_frame; /* expected at the end */
};

static const struct stream_case cases[] = {
    {.name = "one", .file = "frames/one.mllp", .in = {FRAME(ADT)}, .out = {{MLLP_FRAME, SMP(ADT)}}},
    {.name = "pipelined three",
     .file = "frames/pipelined_three.mllp",
     .in = {FRAME(ADT), FRAME(ORU), FRAME(VXU)},
     .out = {{MLLP_FRAME, SMP(ADT)}, {MLLP_FRAME, SMP(ORU)}, {MLLP_FRAME, SMP(VXU)}}},
    {.name = "junk before start",
     .file = "frames/junk_before_start.mllp",
     .in = {RAW("\r\n\0GET / HTTP/1.0\r\n"), FRAME(ADT)},
     .out = {{MLLP_FRAME, SMP(ADT)}},
     .junk = 14}, /* "GET / HTTP/1.0"; the CR, LF and NUL around it are padding */
    {.name = "padding between frames",
     .in = {RAW("\0\n\r"), FRAME(ADT), RAW("\0\0\n\r\n"), FRAME(ORU), RAW("\n")},
     .out = {{MLLP_FRAME, SMP(ADT)}, {MLLP_FRAME, SMP(ORU)}}},
    {.name = "missing final CR",
     .file = "frames/missing_final_cr.mllp",
     .in = {RAW("\013"), SMP(ADT), RAW("\034")},
     .out = {{MLLP_FRAME, SMP(ADT)}}},
    {.name = "missing CR, late CR swallowed, next frame",
     .in = {RAW("\013"), SMP(ADT), RAW("\034"), RAW("\r"), FRAME(ORU)},
     .out = {{MLLP_FRAME, SMP(ADT)}, {MLLP_FRAME, SMP(ORU)}}},
    {.name = "trailing LF",
     .file = "frames/trailing_lf.mllp",
     .in = {FRAME(ADT), RAW("\n"), FRAME(ORU), RAW("\n")},
     .out = {{MLLP_FRAME, SMP(ADT)}, {MLLP_FRAME, SMP(ORU)}}},
    {.name = "NUL between frames",
     .file = "frames/nul_between_frames.mllp",
     .in = {FRAME(ADT), RAW("\0\0"), FRAME(ORU)},
     .out = {{MLLP_FRAME, SMP(ADT)}, {MLLP_FRAME, SMP(ORU)}}},
    {.name = "truncated",
     .file = "frames/truncated.mllp",
     .in = {RAW("\013MSH|^~\\&|EPIC|NORTHWIND|REDOX|CLOUD|2026")},
     .in_frame = 1},
    {.name = "start block inside a frame",
     .in = {RAW("\013MSH|^~\\&|PARTIAL"), FRAME(ADT)},
     .out = {{MLLP_FRAME, SMP(ADT)}},
     .abandoned = 1},
    {.name = "two start blocks",
     .in = {RAW("\013\013abc\034\r")},
     .out = {{MLLP_FRAME, RAW("abc")}},
     .abandoned = 1},
    {.name = "exactly max_frame",
     .max_frame = 1024,
     .in = {RAW("\013"), FILL(1024), RAW("\034\r"), FRAME(VXU)},
     .out = {{MLLP_FRAME, FILL(1024)}, {MLLP_FRAME, SMP(VXU)}}},
    {.name = "max_frame + 1",
     .max_frame = 1024,
     .in = {RAW("\013"), FILL(1025), RAW("\034\r"), FRAME(VXU)},
     .out = {{MLLP_OVERSIZE, {0}}},
     .in_frame = 1},
    {.name = "frame, then oversize",
     .max_frame = 1024,
     .in = {FRAME(VXU), RAW("\013"), FILL(5000), RAW("\034\r")},
     .out = {{MLLP_FRAME, SMP(VXU)}, {MLLP_OVERSIZE, {0}}},
     .in_frame = 1},
    {.name = "oversize before a start block",
     .max_frame = 1024,
     .in = {RAW("\013"), FILL(1025), FRAME(VXU)},
     .out = {{MLLP_OVERSIZE, {0}}},
     .in_frame = 1},
    {.name = "R2 commit ACK",
     .file = "frames/r2_commit_ack.mllp",
     .in = {RAW("\013\006\034\r")},
     .out = {{MLLP_COMMIT_ACK, RAW("\006")}}},
    {.name = "R2 commit NAK",
     .file = "frames/r2_commit_nak.mllp",
     .in = {RAW("\013\025\034\r")},
     .out = {{MLLP_COMMIT_NAK, RAW("\025")}}},
    {.name = "ACK byte with more payload is a frame",
     .in = {RAW("\013\006\006\034\r")},
     .out = {{MLLP_FRAME, RAW("\006\006")}}},
    {.name = "empty frame (the caller rejects it)",
     .in = {RAW("\013\034\r")},
     .out = {{MLLP_FRAME, {NULL, "", 0, 0}}}},
    {.name = "stray end block and junk between frames",
     .in = {FRAME(ADT), RAW("xy\034\r"), FRAME(VXU)},
     .out = {{MLLP_FRAME, SMP(ADT)}, {MLLP_FRAME, SMP(VXU)}},
     .junk = 3},
    {.name = "padding only", .in = {RAW("\r\n\0\r\n")}},
    {.name = "junk only", .in = {RAW("hello\r\n")}, .junk = 5},
};

#define NCASES	  (sizeof(cases) / sizeof(cases[0]))
#define TRUNCATED 8 /* index of the "truncated" case */

enum mode { ALL_AT_ONCE, BYTE_BY_BYTE, CHUNKS_OF_7, RANDOM_CHUNKS, NMODES };

/* ---- building streams ---- */

static void append(struct blob *b, const void *p, size_t n)
{
	char *q = realloc(b->p, b->len + n + 1);

	ck_assert_ptr_nonnull(q);
	b->p = q;
	memcpy(b->p + b->len, p, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void append_piece(struct blob *b, const struct piece *pc)
{
	if (pc->sample) {
		struct blob s = sample_get(pc->sample);

		append(b, s.p, s.len);
		blob_free(&s);
	} else if (pc->raw) {
		append(b, pc->raw, pc->len);
	} else {
		for (size_t i = 0; i < pc->fill; i++)
			append(b, "x", 1);
	}
}

static int piece_end(const struct piece *pc)
{
	return !pc->sample && !pc->raw && !pc->fill;
}

static struct blob compose(const struct piece *pcs, size_t max)
{
	struct blob b = {NULL, 0};

	append(&b, "", 0);
	for (size_t i = 0; i < max && !piece_end(&pcs[i]); i++)
		append_piece(&b, &pcs[i]);
	return b;
}

static struct blob case_stream(const struct stream_case *c)
{
	struct blob b;

	if (c->file && sample_read_file(c->file, &b) == 0)
		return b;
	return compose(c->in, sizeof(c->in) / sizeof(c->in[0]));
}

/* ---- running the deframer ---- */

struct event {
	enum mllp_event ev;
	struct blob data;
};

struct run {
	struct event ev[16];
	size_t n;
	int stopped; /* OVERSIZE seen: a real caller closes */
	size_t max_cap;
	uint64_t junk;
	uint64_t abandoned;
};

static void drain(struct mllp_deframer *d, struct run *r)
{
	struct mllp_frame f;
	enum mllp_event ev;

	while ((ev = mllp_deframer_next(d, &f)) != MLLP_NEED_MORE) {
		ck_assert_uint_lt(r->n, sizeof(r->ev) / sizeof(r->ev[0]));
		r->ev[r->n].ev = ev;
		r->ev[r->n].data = (struct blob){NULL, 0};
		if (ev != MLLP_OVERSIZE) {
			ck_assert_ptr_nonnull(f.data);
			append(&r->ev[r->n].data, f.data, f.len);
		}
		r->n++;
		if (ev == MLLP_OVERSIZE) {
			r->stopped = 1;
			return;
		}
	}
	ck_assert_ptr_null(f.data);
	ck_assert_uint_eq(f.len, 0);
}

static size_t next_chunk(enum mode m, uint32_t *seed, size_t left)
{
	size_t n;

	switch (m) {
	case ALL_AT_ONCE:
		return left;
	case BYTE_BY_BYTE:
		return 1;
	case CHUNKS_OF_7:
		n = 7;
		break;
	default:
		*seed = *seed * 1103515245u + 12345u;
		n = 1 + (*seed >> 16) % 300;
		break;
	}
	return n < left ? n : left;
}

static struct mllp_deframer *feed_stream(const struct blob *s, size_t max_frame, enum mode m,
					 struct run *r)
{
	struct mllp_deframer *d = mllp_deframer_new(max_frame);
	uint32_t seed = 42;
	size_t off = 0, n, cap;

	ck_assert_ptr_nonnull(d);
	memset(r, 0, sizeof(*r));
	while (off < s->len && !r->stopped) {
		n = next_chunk(m, &seed, s->len - off);
		ck_assert_int_eq(mllp_deframer_feed(d, s->p + off, n), 0);
		off += n;
		cap = mllp_deframer_capacity(d);
		r->max_cap = cap > r->max_cap ? cap : r->max_cap;
		drain(d, r);
	}
	r->junk = mllp_deframer_take_junk(d);
	r->abandoned = mllp_deframer_take_abandoned(d);
	return d;
}

static void free_run(struct run *r)
{
	for (size_t i = 0; i < r->n; i++)
		blob_free(&r->ev[i].data);
}

static const char *const mode_names[] = {"all at once", "byte by byte", "7-byte chunks",
					 "random chunks"};

START_TEST(test_stream_table)
{
	const struct stream_case *c = &cases[_i / NMODES];
	enum mode m = (enum mode)(_i % NMODES);
	size_t max_frame = c->max_frame ? c->max_frame : MLLP_MAX_FRAME_DEFAULT;
	struct blob s = case_stream(c);
	struct run r;
	struct mllp_deframer *d = feed_stream(&s, max_frame, m, &r);
	size_t nwant = 0;

	for (; c->out[nwant].ev != MLLP_NEED_MORE; nwant++) {
		const struct want *w = &c->out[nwant];

		ck_assert_msg(nwant < r.n, "%s (%s): event %zu missing", c->name, mode_names[m],
			      nwant);
		ck_assert_msg(r.ev[nwant].ev == w->ev, "%s (%s): event %zu is %d, want %d", c->name,
			      mode_names[m], nwant, r.ev[nwant].ev, w->ev);
		if (w->ev != MLLP_OVERSIZE) {
			struct blob p = compose(&w->payload, 1);

			ck_assert_msg(r.ev[nwant].data.len == p.len &&
					  memcmp(r.ev[nwant].data.p, p.p, p.len) == 0,
				      "%s (%s): payload %zu differs (%zu bytes, want %zu)", c->name,
				      mode_names[m], nwant, r.ev[nwant].data.len, p.len);
			blob_free(&p);
		}
	}
	ck_assert_msg(r.n == nwant, "%s (%s): %zu events, want %zu", c->name, mode_names[m], r.n,
		      nwant);
	ck_assert_msg(r.junk == c->junk, "%s (%s): junk %llu, want %llu", c->name, mode_names[m],
		      (unsigned long long)r.junk, (unsigned long long)c->junk);
	ck_assert_uint_eq(r.abandoned, c->abandoned);
	ck_assert_int_eq(mllp_deframer_in_frame(d), c->in_frame);
	if (m == BYTE_BY_BYTE && max_frame < 16384)
		ck_assert_uint_le(r.max_cap, max_frame + HDR_SLACK);
	/* Once OVERSIZE, always OVERSIZE, whatever arrives. */
	if (r.stopped) {
		struct mllp_frame f;

		ck_assert_int_eq(mllp_deframer_feed(d, "\013ok\034\r", 5), 0);
		ck_assert_int_eq(mllp_deframer_next(d, &f), MLLP_OVERSIZE);
		ck_assert_int_eq(mllp_deframer_next(d, &f), MLLP_OVERSIZE);
	}
	mllp_deframer_free(d);
	free_run(&r);
	blob_free(&s);
}
END_TEST

/* The table's compositions are the files in samples/frames/, byte for
 * byte. A case that names a file needs it: without it, this fails. */
START_TEST(test_sample_files_match_table)
{
	const struct stream_case *c = &cases[_i];
	char path[SAMPLE_PATH_MAX];
	struct blob disk, mine;

	if (!c->file)
		return; /* composed only: no file to compare with */
	if (sample_read_file(c->file, &disk) != 0)
		ck_abort_msg("%s: cannot read %s (set SAMPLES to the samples directory)", c->name,
			     sample_path(c->file, path));
	mine = compose(c->in, sizeof(c->in) / sizeof(c->in[0]));
	ck_assert_msg(disk.len == mine.len && memcmp(disk.p, mine.p, disk.len) == 0,
		      "%s: %s differs from the table's pieces", c->name, c->file);
	blob_free(&disk);
	blob_free(&mine);
}
END_TEST

static enum mllp_event feed_next(struct mllp_deframer *d, const void *p, size_t n,
				 struct mllp_frame *f)
{
	ck_assert_int_eq(mllp_deframer_feed(d, p, n), 0);
	return mllp_deframer_next(d, f);
}

START_TEST(test_late_cr_is_padding)
{
	struct mllp_deframer *d = mllp_deframer_new(1024);
	struct mllp_frame f;

	ck_assert_int_eq(feed_next(d, "\013abc\034", 5, &f), MLLP_FRAME);
	ck_assert_mem_eq(f.data, "abc", 3);
	ck_assert_int_eq(mllp_deframer_in_frame(d), 0);
	ck_assert_int_eq(feed_next(d, "\r", 1, &f), MLLP_NEED_MORE);
	ck_assert_uint_eq(mllp_deframer_take_junk(d), 0);
	ck_assert_int_eq(feed_next(d, "\013def\034\r", 6, &f), MLLP_FRAME);
	ck_assert_mem_eq(f.data, "def", 3);
	mllp_deframer_free(d);
}
END_TEST

START_TEST(test_truncated_then_reset)
{
	struct mllp_deframer *d = mllp_deframer_new(1024);
	struct blob s = case_stream(&cases[TRUNCATED]);
	struct mllp_frame f;

	ck_assert_str_eq(cases[TRUNCATED].name, "truncated");
	ck_assert_int_eq(feed_next(d, "zz", 2, &f), MLLP_NEED_MORE);
	ck_assert_int_eq(feed_next(d, s.p, s.len, &f), MLLP_NEED_MORE);
	ck_assert_int_eq(mllp_deframer_in_frame(d), 1);
	mllp_deframer_reset(d); /* the frame timeout fired */
	ck_assert_int_eq(mllp_deframer_in_frame(d), 0);
	ck_assert_int_eq(mllp_deframer_next(d, &f), MLLP_NEED_MORE);
	/* The rest of the dropped frame arrives late: junk up to the end block. */
	ck_assert_int_eq(feed_next(d, "0500|\034\r", 7, &f), MLLP_NEED_MORE);
	ck_assert_int_eq(feed_next(d, "\013next\034\r", 7, &f), MLLP_FRAME);
	ck_assert_uint_eq(f.len, 4);
	ck_assert_mem_eq(f.data, "next", 4);
	ck_assert_uint_eq(mllp_deframer_take_junk(d), 2 + 6); /* counters survive reset */
	ck_assert_uint_eq(mllp_deframer_take_junk(d), 0);
	mllp_deframer_free(d);
	blob_free(&s);
}
END_TEST

START_TEST(test_oversize_reset_recovers)
{
	struct mllp_deframer *d = mllp_deframer_new(1024);
	static char big[4096];
	struct mllp_frame f;

	memset(big, 'y', sizeof(big));
	ck_assert_int_eq(feed_next(d, "\013", 1, &f), MLLP_NEED_MORE);
	ck_assert_int_eq(feed_next(d, big, sizeof(big), &f), MLLP_OVERSIZE);
	ck_assert_uint_le(mllp_deframer_capacity(d), 1024 + HDR_SLACK);
	ck_assert_int_eq(mllp_deframer_in_frame(d), 1);
	mllp_deframer_reset(d);
	ck_assert_int_eq(mllp_deframer_in_frame(d), 0);
	ck_assert_int_eq(feed_next(d, "\013ok\034\r", 5, &f), MLLP_FRAME);
	ck_assert_uint_eq(f.len, 2);
	mllp_deframer_free(d);
}
END_TEST

/* A peer streaming far more than max_frame in one frame costs max_frame. */
START_TEST(test_oversize_memory_bounded)
{
	size_t max = 1u << 20, big = 10 * max;
	struct mllp_deframer *d = mllp_deframer_new(max);
	char *p = malloc(big);
	struct mllp_frame f;

	ck_assert_ptr_nonnull(p);
	memset(p, 'z', big);
	p[0] = MLLP_SB;
	ck_assert_int_eq(feed_next(d, p, big, &f), MLLP_OVERSIZE);
	ck_assert_uint_le(mllp_deframer_capacity(d), max + HDR_SLACK);
	for (int i = 0; i < 4; i++) /* keeps coming: still nothing stored */
		ck_assert_int_eq(feed_next(d, p + 1, big - 1, &f), MLLP_OVERSIZE);
	ck_assert_uint_le(mllp_deframer_capacity(d), max + HDR_SLACK);
	mllp_deframer_reset(d);
	ck_assert_uint_le(mllp_deframer_capacity(d), 16384);
	mllp_deframer_free(d);
	free(p);
}
END_TEST

/* A large frame of exactly max_frame in small reads: the buffer grows to
 * max_frame + a header, not to the next power of two; the frame comes back
 * intact, and the buffer is given back once it has been taken. */
START_TEST(test_large_frame_in_chunks)
{
	size_t max = 3u << 20, len = max;
	struct mllp_deframer *d = mllp_deframer_new(max);
	uint8_t *p = malloc(len + 3);
	struct mllp_frame f;
	size_t off;

	ck_assert_ptr_nonnull(p);
	p[0] = MLLP_SB;
	for (size_t i = 0; i < len; i++)
		p[1 + i] = (uint8_t)(0x20 + i % 90);
	p[len + 1] = MLLP_EB;
	p[len + 2] = MLLP_CR;
	for (off = 0; off + 4096 < len + 3; off += 4096) {
		ck_assert_int_eq(feed_next(d, p + off, 4096, &f), MLLP_NEED_MORE);
		ck_assert_uint_le(mllp_deframer_capacity(d), max + HDR_SLACK);
	}
	ck_assert_int_eq(feed_next(d, p + off, len + 3 - off, &f), MLLP_FRAME);
	ck_assert_uint_eq(f.len, len);
	ck_assert_int_eq(memcmp(f.data, p + 1, len), 0);
	ck_assert_int_eq(mllp_deframer_next(d, &f), MLLP_NEED_MORE);
	ck_assert_int_eq(feed_next(d, "\013a\034\r", 4, &f), MLLP_FRAME);
	ck_assert_uint_le(mllp_deframer_capacity(d), 16384);
	mllp_deframer_free(d);
	free(p);
}
END_TEST

/* Frames returned by successive next() calls stay valid until the next feed. */
START_TEST(test_frames_borrowed_until_feed)
{
	struct mllp_deframer *d = mllp_deframer_new(1024);
	struct mllp_frame a, b;

	ck_assert_int_eq(mllp_deframer_feed(d, "\013one\034\r\013two\034\r", 12), 0);
	ck_assert_int_eq(mllp_deframer_next(d, &a), MLLP_FRAME);
	ck_assert_int_eq(mllp_deframer_next(d, &b), MLLP_FRAME);
	ck_assert_mem_eq(a.data, "one", 3);
	ck_assert_mem_eq(b.data, "two", 3);
	mllp_deframer_free(d);
}
END_TEST

START_TEST(test_new_limits)
{
	struct mllp_deframer *d;

	errno = 0;
	ck_assert_ptr_null(mllp_deframer_new(0));
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_ptr_null(mllp_deframer_new(MLLP_MAX_FRAME_LIMIT + 1));
	d = mllp_deframer_new(MLLP_MAX_FRAME_LIMIT);
	ck_assert_ptr_nonnull(d);
	ck_assert_uint_le(mllp_deframer_capacity(d), 16384); /* nothing reserved up front */
	mllp_deframer_free(d);
	mllp_deframer_free(NULL);
}
END_TEST

static const struct {
	const char *payload;
	size_t len;
	size_t cap;
	size_t want; /* 0: does not fit */
} encode_cases[] = {
    {"abc", 3, 6, 6}, {"abc", 3, 5, 0},	 {"abc", 3, 100, 6},   {"", 0, 3, 3},
    {"", 0, 2, 0},    {"\006", 1, 4, 4}, {"MSH|x\r", 6, 9, 9}, {"MSH|x\r", 6, 0, 0},
};

START_TEST(test_encode)
{
	const char *pl = encode_cases[_i].payload;
	size_t len = encode_cases[_i].len, cap = encode_cases[_i].cap;
	uint8_t *dst = malloc(cap ? cap : 1); /* exact size: ASan catches overruns */
	struct mllp_deframer *d = mllp_deframer_new(1024);
	struct mllp_frame f;
	size_t n;

	n = mllp_encode(dst, cap, pl, len);
	ck_assert_uint_eq(n, encode_cases[_i].want);
	if (n) {
		ck_assert_uint_eq(dst[0], MLLP_SB);
		ck_assert_mem_eq(dst + 1, pl, len);
		ck_assert_uint_eq(dst[len + 1], MLLP_EB);
		ck_assert_uint_eq(dst[len + 2], MLLP_CR);
		/* round trip */
		ck_assert_int_eq(mllp_deframer_feed(d, dst, n), 0);
		ck_assert_int_ne(mllp_deframer_next(d, &f), MLLP_NEED_MORE);
		ck_assert_uint_eq(f.len, len);
		ck_assert_mem_eq(f.data, pl, len);
	}
	mllp_deframer_free(d);
	free(dst);
}
END_TEST

static Suite *mllp_suite(void)
{
	Suite *s = suite_create("mllp");
	TCase *tc = tcase_create("deframer");

	tcase_set_timeout(tc, 60);
	tcase_add_loop_test(tc, test_stream_table, 0, (int)(NCASES * NMODES));
	tcase_add_loop_test(tc, test_sample_files_match_table, 0, (int)NCASES);
	tcase_add_test(tc, test_late_cr_is_padding);
	tcase_add_test(tc, test_truncated_then_reset);
	tcase_add_test(tc, test_oversize_reset_recovers);
	tcase_add_test(tc, test_oversize_memory_bounded);
	tcase_add_test(tc, test_large_frame_in_chunks);
	tcase_add_test(tc, test_frames_borrowed_until_feed);
	tcase_add_test(tc, test_new_limits);
	suite_add_tcase(s, tc);
	tc = tcase_create("encode");
	tcase_add_loop_test(tc, test_encode, 0,
			    (int)(sizeof(encode_cases) / sizeof(encode_cases[0])));
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(mllp_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
