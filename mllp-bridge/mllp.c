/*
 * MLLP deframer: each received byte is looked at once, as it arrives.
 *
 * feed() splits frames with memchr (end block, then start block inside the
 * same span) and stores only payloads, each behind a length header, so next()
 * is O(1) and a stored byte is never scanned again, however the peer chunks:
 *
 *   buf: [rd ... complete records ...][fs: header | open frame payload][wr]
 *
 * A record is a size_t length (memcpy'd, unaligned) followed by the payload.
 * While a frame is open, fs is the offset of its header and its payload runs
 * to wr. The borrowed frame handed out by next() stays in place until the next
 * feed(), which may compact the buffer (only when the tail has no room).
 */
#include "mllp.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define HDR	    sizeof(size_t)
#define INITIAL_CAP (16u << 10) /* most HL7 messages fit: no growth */
#define SHRINK_CAP  (1u << 20)	/* give memory back after a large frame */

struct mllp_deframer {
	uint8_t *buf;
	size_t cap;
	size_t rd;	  /* first record not yet returned by next() */
	size_t wr;	  /* end of stored bytes */
	size_t fs;	  /* header offset of the open frame (in_frame only) */
	size_t max_frame; /* payload limit */
	size_t init_cap;  /* capacity to return to when idle */
	uint64_t junk;
	uint64_t abandoned;
	int in_frame;
	int oversize; /* sticky until reset */
};

struct mllp_deframer *mllp_deframer_new(size_t max_frame)
{
	struct mllp_deframer *d;

	if (max_frame == 0 || max_frame > MLLP_MAX_FRAME_LIMIT) {
		errno = EINVAL;
		return NULL;
	}
	d = calloc(1, sizeof(*d));
	if (!d)
		return NULL;
	d->max_frame = max_frame;
	d->init_cap = max_frame + HDR < INITIAL_CAP ? max_frame + HDR : INITIAL_CAP;
	d->buf = malloc(d->init_cap);
	if (!d->buf) {
		free(d);
		return NULL;
	}
	d->cap = d->init_cap;
	return d;
}

void mllp_deframer_free(struct mllp_deframer *d)
{
	if (!d)
		return;
	free(d->buf);
	d->buf = NULL;
	free(d);
}

/* Returns the buffer to its initial size; keeps the old one if realloc fails. */
static void shrink(struct mllp_deframer *d)
{
	uint8_t *p;

	if (d->cap <= d->init_cap)
		return;
	p = realloc(d->buf, d->init_cap);
	if (p) {
		d->buf = p;
		d->cap = d->init_cap;
	}
}

/* Makes room for n more bytes at wr: compacts first, grows only if that is not
 * enough. Growth is capped at what one open frame may need, so a single frame
 * never costs more than max_frame + HDR. */
static int reserve(struct mllp_deframer *d, size_t n)
{
	size_t need, bound, ncap;
	uint8_t *p;

	if (d->cap - d->wr >= n)
		return 0;
	if (d->rd > 0) {
		memmove(d->buf, d->buf + d->rd, d->wr - d->rd);
		d->wr -= d->rd;
		d->fs -= d->in_frame ? d->rd : 0;
		d->rd = 0;
		if (d->cap - d->wr >= n)
			return 0;
	}
	if (n > SIZE_MAX - d->wr)
		return -ENOMEM;
	need = d->wr + n;
	bound = d->max_frame + HDR;
	ncap = d->cap > SIZE_MAX / 2 ? SIZE_MAX : d->cap * 2;
	if (ncap < need)
		ncap = need;
	if (need <= bound && ncap > bound)
		ncap = bound;
	p = realloc(d->buf, ncap);
	if (!p)
		return -ENOMEM;
	d->buf = p;
	d->cap = ncap;
	return 0;
}

static int is_padding(uint8_t c)
{
	return c == 0x00 || c == 0x0a || c == MLLP_CR;
}

/* Outside a frame: counts junk up to the next start block, which it returns
 * (or end). A CR after an end block, LF or NUL padding are not junk. */
static const uint8_t *skip_outside(struct mllp_deframer *d, const uint8_t *p, const uint8_t *end)
{
	const uint8_t *sb = memchr(p, MLLP_SB, (size_t)(end - p));
	const uint8_t *lim = sb ? sb : end;

	for (; p < lim; p++)
		d->junk += !is_padding(*p);
	return lim;
}

static int open_frame(struct mllp_deframer *d)
{
	int err = reserve(d, HDR);

	if (err)
		return err;
	d->fs = d->wr;
	d->wr += HDR;
	d->in_frame = 1;
	return 0;
}

/* Inside a frame: stores payload up to the next end or start block. Returns
 * where to continue, or end once the frame went past max_frame. */
static const uint8_t *scan_frame(struct mllp_deframer *d, const uint8_t *p, const uint8_t *end,
				 int *err)
{
	const uint8_t *eb = memchr(p, MLLP_EB, (size_t)(end - p));
	const uint8_t *lim = eb ? eb : end;
	const uint8_t *sb = memchr(p, MLLP_SB, (size_t)(lim - p));
	size_t n, have;

	if (sb)
		lim = sb;
	n = (size_t)(lim - p);
	have = d->wr - d->fs - HDR;
	if (n > d->max_frame - have) {
		d->oversize = 1;
		d->wr = d->fs; /* the open frame is dropped; records before it stay */
		return end;
	}
	if (n > 0) {
		*err = reserve(d, n);
		if (*err)
			return end;
		memcpy(d->buf + d->wr, p, n);
		d->wr += n;
	}
	if (sb) {
		d->abandoned++;
		d->wr = d->fs + HDR; /* the new frame reuses the header slot */
		return sb + 1;
	}
	if (eb) {
		have = d->wr - d->fs - HDR;
		memcpy(d->buf + d->fs, &have, HDR);
		d->in_frame = 0;
		return eb + 1;
	}
	return end;
}

int mllp_deframer_feed(struct mllp_deframer *d, const void *buf, size_t len)
{
	const uint8_t *p = buf, *end;
	int err = 0;

	if (len == 0 || d->oversize)
		return 0;
	end = p + len;
	if (!d->in_frame && d->rd == d->wr) {
		d->rd = d->wr = 0;
		if (d->cap >= SHRINK_CAP)
			shrink(d);
	}
	while (p < end && !err && !d->oversize) {
		if (d->in_frame) {
			p = scan_frame(d, p, end, &err);
			continue;
		}
		p = skip_outside(d, p, end);
		if (p == end)
			break;
		err = open_frame(d);
		p++;
	}
	return err;
}

enum mllp_event mllp_deframer_next(struct mllp_deframer *d, struct mllp_frame *out)
{
	size_t done = d->in_frame ? d->fs : d->wr;
	size_t n;

	out->data = NULL;
	out->len = 0;
	if (d->rd >= done)
		return d->oversize ? MLLP_OVERSIZE : MLLP_NEED_MORE;
	memcpy(&n, d->buf + d->rd, HDR);
	out->data = d->buf + d->rd + HDR;
	out->len = n;
	d->rd += HDR + n;
	if (n == 1 && out->data[0] == MLLP_R2_ACK)
		return MLLP_COMMIT_ACK;
	if (n == 1 && out->data[0] == MLLP_R2_NAK)
		return MLLP_COMMIT_NAK;
	return MLLP_FRAME;
}

int mllp_deframer_in_frame(const struct mllp_deframer *d)
{
	return d->in_frame;
}

void mllp_deframer_reset(struct mllp_deframer *d)
{
	d->rd = d->wr = d->fs = 0;
	d->in_frame = 0;
	d->oversize = 0;
	shrink(d);
}

uint64_t mllp_deframer_take_junk(struct mllp_deframer *d)
{
	uint64_t n = d->junk;

	d->junk = 0;
	return n;
}

uint64_t mllp_deframer_take_abandoned(struct mllp_deframer *d)
{
	uint64_t n = d->abandoned;

	d->abandoned = 0;
	return n;
}

size_t mllp_deframer_capacity(const struct mllp_deframer *d)
{
	return d->cap;
}

size_t mllp_encode(uint8_t *dst, size_t cap, const void *payload, size_t len)
{
	if (len > SIZE_MAX - MLLP_OVERHEAD || cap < len + MLLP_OVERHEAD)
		return 0;
	dst[0] = MLLP_SB;
	if (len)
		memcpy(dst + 1, payload, len);
	dst[len + 1] = MLLP_EB;
	dst[len + 2] = MLLP_CR;
	return len + MLLP_OVERHEAD;
}
