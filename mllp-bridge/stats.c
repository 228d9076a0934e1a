#include "mllp-bridge/stats.h"

#include <time.h>

static const double bounds[STATS_BUCKETS] = {
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
};

void histogram_observe(struct histogram *h, double seconds)
{
	int i;

	for (i = 0; i < STATS_BUCKETS && seconds > bounds[i]; i++)
		;
	h->count[i]++;
	h->sum += seconds;
}

double stats_bucket_bound(int i)
{
	return bounds[i];
}

double stats_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int64_t stats_wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
