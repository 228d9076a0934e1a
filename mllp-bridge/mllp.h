/*
 * MLLP framing (HL7 v2 Minimal Lower Layer Protocol, release 1 and 2).
 *
 * A pure codec: it works on bytes handed to it and never touches a socket,
 * so unit tests and fuzzers link it alone.
 *
 * Frame: 0x0B <payload> 0x1C 0x0D.  Tolerated in the field and accepted here:
 *   - bytes before a start block: discarded and counted as junk;
 *   - padding between frames (0x00, 0x0A, 0x0D): discarded silently;
 *   - an end block without its CR: the frame ends at 0x1C;
 *   - a start block inside a frame: the partial frame is dropped (counted
 *     in `abandoned`) and a new frame starts.
 * Release 2 commit blocks are frames whose payload is the single byte 0x06
 * (commit ACK) or 0x15 (commit NAK).
 */
#ifndef MLLP_H
#define MLLP_H

#include <stddef.h>
#include <stdint.h>

#define MLLP_SB	    0x0b
#define MLLP_EB	    0x1c
#define MLLP_CR	    0x0d
#define MLLP_R2_ACK 0x06
#define MLLP_R2_NAK 0x15

/* Limits, checked before any allocation. */
#define MLLP_MAX_FRAME_DEFAULT (16u << 20) /* 16 MiB, the config default */
#define MLLP_MAX_FRAME_LIMIT   (64u << 20) /* no config may go above this */
#define MLLP_MIN_FRAME_LIMIT   1024u	   /* nor below this */
#define MLLP_OVERHEAD	       3u	   /* SB + EB + CR */

enum mllp_event {
	MLLP_NEED_MORE = 0, /* feed more bytes */
	MLLP_FRAME,	    /* a complete payload in out->data/out->len */
	MLLP_COMMIT_ACK,    /* release 2 commit ACK block */
	MLLP_COMMIT_NAK,    /* release 2 commit NAK block */
	MLLP_OVERSIZE,	    /* the current frame passed max_frame: NAK and close */
};

struct mllp_frame {
	const uint8_t *data; /* borrowed until the next feed/next/reset/free */
	size_t len;
};

struct mllp_deframer;

/* Returns a deframer that refuses payloads longer than max_frame bytes, or
 * NULL with errno ENOMEM when out of memory, or EINVAL when max_frame is 0 or
 * above MLLP_MAX_FRAME_LIMIT (values below MLLP_MIN_FRAME_LIMIT are accepted
 * here, for tests and fuzzing; the config refuses them).
 * Caller frees with mllp_deframer_free(). */
struct mllp_deframer *mllp_deframer_new(size_t max_frame);
void mllp_deframer_free(struct mllp_deframer *d);

/* Appends received bytes. Returns 0, or -ENOMEM (then reset or free the
 * deframer: part of buf may be lost). Bytes past max_frame inside one frame
 * are not stored (mllp_deframer_next() reports MLLP_OVERSIZE once the frames
 * before it are taken), and nothing more is stored until mllp_deframer_reset(),
 * so memory stays bounded by max_frame whatever the peer sends. Frames are
 * split as they arrive: one call may complete several, each kept until next()
 * returns it; a caller that drains next() after every feed holds at most one
 * partial frame (max_frame + a few bytes). */
__attribute__((warn_unused_result)) int mllp_deframer_feed(struct mllp_deframer *d, const void *buf,
							   size_t len);

/* Extracts the next event from what was fed. Call until it returns
 * MLLP_NEED_MORE. After MLLP_OVERSIZE the deframer keeps answering
 * MLLP_OVERSIZE until mllp_deframer_reset(). */
enum mllp_event mllp_deframer_next(struct mllp_deframer *d, struct mllp_frame *out);

/* True while a frame has started and not ended (for frame_timeout); stays
 * true after MLLP_OVERSIZE until mllp_deframer_reset(). */
int mllp_deframer_in_frame(const struct mllp_deframer *d);

/* Drops everything buffered, partial frame included (frame_timeout, oversize),
 * and gives a grown buffer back. The junk and abandoned counters are kept. */
void mllp_deframer_reset(struct mllp_deframer *d);

/* Bytes discarded outside frames (not padding) since the last call; resets. */
uint64_t mllp_deframer_take_junk(struct mllp_deframer *d);
/* Partial frames dropped because a new start block arrived; resets. */
uint64_t mllp_deframer_take_abandoned(struct mllp_deframer *d);

/* Bytes of buffer currently allocated (for metrics and tests). */
size_t mllp_deframer_capacity(const struct mllp_deframer *d);

/* Writes SB payload EB CR into dst. Returns the frame length, or 0 when
 * cap < len + MLLP_OVERHEAD. */
size_t mllp_encode(uint8_t *dst, size_t cap, const void *payload, size_t len);

#endif
