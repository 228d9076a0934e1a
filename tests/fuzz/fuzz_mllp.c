/*
 * libFuzzer target for the MLLP deframer and encoder.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -I. \
 *         tests/fuzz/fuzz_mllp.c mllp-bridge/mllp.c -o build/fuzz/fuzz_mllp
 *   build/fuzz/fuzz_mllp -max_total_time=60 build/fuzz/corpus_mllp ../shared/samples/frames
 *
 * Input: byte 0 picks max_frame, byte 1 seeds the chunk sizes, the rest is the
 * stream. The stream is fed all at once and in chunks; both must give the
 * events of a byte-at-a-time reference model, the same junk and abandoned
 * counts, and (byte at a time) a buffer no larger than max_frame + a header.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mllp-bridge/mllp.h"

struct event {
	enum mllp_event ev;
	size_t off; /* payload bytes in the run's own copy */
	size_t len;
};

struct run {
	struct event *ev; /* room for one event per 2 input bytes, plus one */
	size_t n;
	uint8_t *data; /* payloads, back to back */
	size_t used;
	int stopped;
	uint64_t junk;
	uint64_t abandoned;
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void record(struct run *r, enum mllp_event ev, const uint8_t *p, size_t len)
{
	r->ev[r->n].ev = ev;
	r->ev[r->n].off = r->used;
	r->ev[r->n].len = len;
	r->n++;
	if (len)
		memcpy(r->data + r->used, p, len);
	r->used += len;
	if (ev == MLLP_OVERSIZE)
		r->stopped = 1;
}

/* The obvious byte-at-a-time deframer the real one must agree with. */
static void reference(const uint8_t *s, size_t len, size_t max_frame, struct run *r)
{
	uint8_t *cur = malloc(max_frame < len ? max_frame : len + 1); /* a payload fits both */
	size_t n = 0;
	int in = 0;

	if (!cur)
		abort();
	for (size_t i = 0; i < len && !r->stopped; i++) {
		uint8_t c = s[i];

		if (c == MLLP_SB) {
			r->abandoned += in;
			in = 1;
			n = 0;
		} else if (!in) {
			r->junk += !(c == 0 || c == '\n' || c == '\r');
		} else if (c == MLLP_EB) {
			enum mllp_event ev = MLLP_FRAME;

			if (n == 1 && cur[0] == MLLP_R2_ACK)
				ev = MLLP_COMMIT_ACK;
			else if (n == 1 && cur[0] == MLLP_R2_NAK)
				ev = MLLP_COMMIT_NAK;
			record(r, ev, cur, n);
			in = 0;
		} else if (n == max_frame) {
			record(r, MLLP_OVERSIZE, NULL, 0);
		} else {
			cur[n++] = c;
		}
	}
	free(cur);
}

static void drain(struct mllp_deframer *d, struct run *r)
{
	struct mllp_frame f;
	enum mllp_event ev;

	while (!r->stopped && (ev = mllp_deframer_next(d, &f)) != MLLP_NEED_MORE) {
		if (ev != MLLP_OVERSIZE && !f.data)
			abort();
		record(r, ev, f.data, ev == MLLP_OVERSIZE ? 0 : f.len);
	}
}

/* chunk 0: all at once; 1: byte by byte; else sizes drawn from seed. */
static void real(const uint8_t *s, size_t len, size_t max_frame, unsigned chunk, uint32_t seed,
		 struct run *r)
{
	struct mllp_deframer *d = mllp_deframer_new(max_frame);
	size_t off = 0, n, bound = max_frame + 16 > 16384 ? max_frame + 16 : 16384;

	if (!d)
		abort();
	while (off < len && !r->stopped) {
		if (chunk == 0) {
			n = len - off;
		} else if (chunk == 1) {
			n = 1;
		} else {
			seed = seed * 1103515245u + 12345u;
			n = 1 + (seed >> 16) % chunk;
			n = n < len - off ? n : len - off;
		}
		if (mllp_deframer_feed(d, s + off, n) != 0)
			abort();
		off += n;
		if (chunk == 1 && mllp_deframer_capacity(d) > bound)
			abort();
		drain(d, r);
	}
	r->junk = mllp_deframer_take_junk(d);
	r->abandoned = mllp_deframer_take_abandoned(d);
	if (r->stopped && r->n && r->ev[r->n - 1].ev == MLLP_OVERSIZE) {
		struct mllp_frame f;

		if (mllp_deframer_next(d, &f) != MLLP_OVERSIZE || !mllp_deframer_in_frame(d))
			abort();
		mllp_deframer_reset(d);
		if (mllp_deframer_in_frame(d) || mllp_deframer_next(d, &f) != MLLP_NEED_MORE)
			abort();
	}
	mllp_deframer_free(d);
}

static void same(const struct run *a, const struct run *b)
{
	if (a->n != b->n || a->junk != b->junk || a->abandoned != b->abandoned)
		abort();
	for (size_t i = 0; i < a->n; i++)
		if (a->ev[i].ev != b->ev[i].ev || a->ev[i].len != b->ev[i].len ||
		    memcmp(a->data + a->ev[i].off, b->data + b->ev[i].off, a->ev[i].len) != 0)
			abort();
}

static struct run *run_new(size_t len)
{
	struct run *r = calloc(1, sizeof(*r));

	if (!r)
		abort();
	r->ev = calloc(len / 2 + 2, sizeof(*r->ev));
	r->data = malloc(len + 1);
	if (!r->ev || !r->data)
		abort();
	return r;
}

static void run_free(struct run *r)
{
	free(r->ev);
	free(r->data);
	free(r);
}

/* Encoding any payload without SB/EB gives a stream that deframes to it. */
static void encode_round_trip(const uint8_t *s, size_t len)
{
	uint8_t *pl = malloc(len + 1), *fr = malloc(len + MLLP_OVERHEAD);
	struct mllp_deframer *d = mllp_deframer_new(MLLP_MAX_FRAME_LIMIT);
	struct mllp_frame f;
	size_t n = 0, m;

	if (!pl || !fr || !d)
		abort();
	for (size_t i = 0; i < len; i++)
		if (s[i] != MLLP_SB && s[i] != MLLP_EB)
			pl[n++] = s[i];
	if (mllp_encode(fr, n + MLLP_OVERHEAD - 1, pl, n) != 0)
		abort();
	m = mllp_encode(fr, n + MLLP_OVERHEAD, pl, n);
	if (m != n + MLLP_OVERHEAD || mllp_deframer_feed(d, fr, m) != 0)
		abort();
	if (mllp_deframer_next(d, &f) == MLLP_NEED_MORE || f.len != n ||
	    (n && memcmp(f.data, pl, n) != 0))
		abort();
	mllp_deframer_free(d);
	free(pl);
	free(fr);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const size_t maxes[] = {1, 2, 3, 16, 100, 1024, 65536, MLLP_MAX_FRAME_DEFAULT};
	const uint8_t *s = data + 2;
	size_t len, max_frame;
	struct run *ref, *all, *chunked;

	if (size < 2)
		return 0;
	len = size - 2;
	max_frame = maxes[data[0] % (sizeof(maxes) / sizeof(maxes[0]))];
	ref = run_new(len);
	all = run_new(len);
	chunked = run_new(len);
	reference(s, len, max_frame, ref);
	real(s, len, max_frame, 0, 0, all);
	real(s, len, max_frame, data[1] & 1 ? 1u : 2u + data[1], data[1], chunked);
	same(ref, all);
	same(ref, chunked);
	run_free(ref);
	run_free(all);
	run_free(chunked);
	encode_round_trip(s, len);
	return 0;
}
