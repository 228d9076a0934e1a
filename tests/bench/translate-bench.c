/*
 * translate-bench: how many JSON → HL7 v2 translations one core makes, for
 * `make bench` (tests/bench/translate.sh).
 *
 *   translate-bench FILE [SECONDS]
 *
 * Translates the same document in a loop for SECONDS (default 3) and
 * prints "translations/s N", "us/translation X" and the input and output
 * sizes. Exits 1 when the document is refused or cannot be read: a
 * benchmark of refusals measures nothing.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mllp-bridge/translate.h"
#include "tests/tools/translate-file.h"

#define CHECK_EVERY 64 /* translations between two looks at the clock */

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	struct xl_opts o = XL_TEST_OPTS;
	double secs = argc > 2 ? atof(argv[2]) : 3.0, t0, t = 0;
	struct xl_error err;
	size_t len = 0, out_len = 0;
	long n = 0;
	char *json, *out;

	if (argc < 2 || argc > 3 || secs <= 0) {
		fprintf(stderr, "usage: translate-bench FILE [SECONDS]\n");
		return 2;
	}
	json = xl_read_file(argv[1], &len);
	if (!json) {
		fprintf(stderr, "translate-bench: %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	t0 = now_s();
	do {
		for (int i = 0; i < CHECK_EVERY; i++, n++) {
			int rc = translate_json(json, len, &o, &out, &out_len, &err);

			if (rc < 0) {
				fprintf(stderr, "translate-bench: %s: %s: %s (%s)\n", argv[1],
					err.path, err.reason, strerror(-rc));
				return 1;
			}
			free(out);
		}
		t = now_s() - t0;
	} while (t < secs);
	printf("translations/s %.0f\nus/translation %.2f\njson_bytes %zu\nhl7_bytes %zu\n",
	       (double)n / t, t * 1e6 / (double)n, len, out_len);
	free(json);
	return 0;
}
