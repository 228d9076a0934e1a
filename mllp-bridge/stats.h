/*
 * Counters and histograms shared by the modules' *_stats() snapshots and
 * rendered by metrics.c. Plain data: a module owns its own and hands out
 * const copies or pointers; nobody else writes them.
 */
#ifndef STATS_H
#define STATS_H

#include <stdint.h>

#define STATS_BUCKETS 14 /* finite bucket bounds of every latency histogram */

/* A Prometheus histogram with the fixed bounds of stats_bucket_bound(). */
struct histogram {
	uint64_t count[STATS_BUCKETS + 1]; /* the last one is +Inf */
	double sum;
};

void histogram_observe(struct histogram *h, double seconds);

/* Upper bound of bucket i (0 <= i < STATS_BUCKETS), in seconds. */
double stats_bucket_bound(int i);

/* Monotonic seconds, for durations. */
double stats_now(void);

/* Wall clock, milliseconds since the epoch, for what is stored. */
int64_t stats_wall_ms(void);

#endif
