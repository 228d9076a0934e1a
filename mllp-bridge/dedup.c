#include "mllp-bridge/dedup.h"

#include <errno.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>

#define DEDUP_HASH_BITS 16 /* initial buckets: 65,536; doubles with the entries */
#define DEDUP_DIGEST	16 /* bytes of SHA-256 kept per key: no realistic collision */

struct entry {
	uint8_t digest[DEDUP_DIGEST];
	int64_t added_ms;
	struct entry *hnext; /* bucket chain */
	struct entry *fnext; /* arrival order, oldest first */
};

struct dedup {
	uint64_t window_ms;
	struct entry **buckets;
	size_t nbuckets, n;
	struct entry *oldest, *newest;
};

static void digest(const char *key, uint8_t out[DEDUP_DIGEST])
{
	uint8_t full[SHA256_DIGEST_LENGTH];

	SHA256((const unsigned char *)key, strlen(key), full);
	memcpy(out, full, DEDUP_DIGEST);
}

static size_t bucket(const struct dedup *d, const uint8_t *dg)
{
	uint64_t h;

	memcpy(&h, dg, sizeof(h)); /* already uniformly distributed */
	return (size_t)(h & (d->nbuckets - 1));
}

int dedup_new(uint64_t window_ms, struct dedup **out)
{
	struct dedup *d = calloc(1, sizeof(*d));

	*out = NULL;
	if (!d || !window_ms)
		goto fail;
	d->window_ms = window_ms;
	d->nbuckets = (size_t)1 << DEDUP_HASH_BITS;
	if (!(d->buckets = calloc(d->nbuckets, sizeof(*d->buckets))))
		goto fail;
	*out = d;
	return 0;
fail:
	free(d);
	return window_ms ? -ENOMEM : -EINVAL;
}

void dedup_free(struct dedup *d)
{
	struct entry *e, *next;

	if (!d)
		return;
	for (e = d->oldest; e; e = next) {
		next = e->fnext;
		free(e);
	}
	free(d->buckets);
	free(d);
}

static void unlink_oldest(struct dedup *d)
{
	struct entry *e = d->oldest, **pp = &d->buckets[bucket(d, e->digest)];

	while (*pp != e)
		pp = &(*pp)->hnext;
	*pp = e->hnext;
	d->oldest = e->fnext;
	if (!d->oldest)
		d->newest = NULL;
	d->n--;
	free(e);
}

static void expire(struct dedup *d, int64_t now_ms)
{
	while (d->oldest &&
	       (now_ms - d->oldest->added_ms >= (int64_t)d->window_ms || d->n >= DEDUP_MAX_ENTRIES))
		unlink_oldest(d);
}

int dedup_seen(struct dedup *d, const char *key, int64_t now_ms)
{
	uint8_t dg[DEDUP_DIGEST];

	expire(d, now_ms);
	digest(key, dg);
	for (const struct entry *e = d->buckets[bucket(d, dg)]; e; e = e->hnext)
		if (memcmp(e->digest, dg, DEDUP_DIGEST) == 0)
			return 1;
	return 0;
}

/* Twice the buckets when the chains grow past one entry on average. */
static void grow(struct dedup *d)
{
	size_t n = d->nbuckets * 2;
	struct entry **b = calloc(n, sizeof(*b)), *e;

	if (!b)
		return; /* longer chains, still correct */
	free(d->buckets);
	d->buckets = b;
	d->nbuckets = n;
	for (e = d->oldest; e; e = e->fnext) {
		size_t i = bucket(d, e->digest);

		e->hnext = b[i];
		b[i] = e;
	}
}

int dedup_add(struct dedup *d, const char *key, int64_t now_ms)
{
	struct entry *e = malloc(sizeof(*e));
	size_t i;

	if (!e)
		return -ENOMEM;
	expire(d, now_ms);
	if (d->n >= d->nbuckets)
		grow(d);
	digest(key, e->digest);
	e->added_ms = now_ms;
	e->fnext = NULL;
	i = bucket(d, e->digest);
	e->hnext = d->buckets[i];
	d->buckets[i] = e;
	if (d->newest)
		d->newest->fnext = e;
	else
		d->oldest = e;
	d->newest = e;
	d->n++;
	return 0;
}
