/*
 * A window of recently accepted Idempotency-Keys, so that a sender that
 * timed out and sent the same bytes again is answered from the original
 * instead of storing the message twice (`dedup: 10m`).
 *
 * Kept in memory, bounded by DEDUP_MAX_ENTRIES (the oldest key goes first
 * when full): after a restart a resend is stored again, and then the
 * upstream can still tell by its Idempotency-Key, which is the same.
 */
#ifndef DEDUP_H
#define DEDUP_H

#include <stdint.h>

#define DEDUP_MAX_ENTRIES 1000000 /* about 48 MB at most */

struct dedup;

/* window_ms > 0. Returns 0 or -ENOMEM. */
__attribute__((warn_unused_result)) int dedup_new(uint64_t window_ms, struct dedup **out);
void dedup_free(struct dedup *d);

/* Was key added less than the window before now_ms? */
int dedup_seen(struct dedup *d, const char *key, int64_t now_ms);

/* Remembers key from now_ms on (now_ms never decreases between calls).
 * Returns 0 or -ENOMEM (then the key is simply not remembered). */
__attribute__((warn_unused_result)) int dedup_add(struct dedup *d, const char *key, int64_t now_ms);

#endif
