/*
 * libFuzzer target for the HL7 batch file splitter.
 *
 *   make BUILD=build fuzz-build
 *   build/fuzz/fuzz_batch -max_total_time=60 build/fuzz/fuzz_batch.corpus
 *
 * The input is the file. Checked: on success the callbacks count *count,
 * indexes run from 0, every message starts with "MSH", ends with CR and
 * holds no LF, NUL or MLLP framing byte; the messages joined again form a
 * file of bare messages that splits into the same messages. On failure no
 * callback ran, the result is -EBADMSG or -E2BIG, and the reason is a
 * terminated, non-empty line of printable ASCII. A callback stopping at a
 * message stops the split there with its value.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mllp-bridge/batch.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct seen {
	size_t calls, stop_at;
	uint8_t *joined; /* every message, one after the other */
	size_t len, cap;
};

static void check(int ok)
{
	if (!ok)
		abort();
}

static void check_msg(const uint8_t *msg, size_t len)
{
	check(len >= 4 && memcmp(msg, "MSH", 3) == 0 && msg[len - 1] == '\r');
	for (size_t i = 0; i < len; i++)
		check(msg[i] != '\n' && msg[i] != 0 && msg[i] != 0x0b && msg[i] != 0x1c);
}

static int keep(void *arg, size_t index, const uint8_t *msg, size_t len)
{
	struct seen *s = arg;

	check(index == s->calls);
	s->calls++;
	check_msg(msg, len);
	if (s->stop_at && s->calls == s->stop_at)
		return -ECANCELED;
	if (!s->joined)
		return 0;
	check(s->len + len <= s->cap);
	memcpy(s->joined + s->len, msg, len);
	s->len += len;
	return 0;
}

static void check_why(int rc, const char *why)
{
	size_t n = strnlen(why, BATCH_WHY_MAX);

	check(rc == -EBADMSG || rc == -E2BIG);
	check(n > 0 && n < BATCH_WHY_MAX);
	for (size_t i = 0; i < n; i++)
		check(why[i] >= 0x20 && why[i] < 0x7f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* Each segment grows by at most one CR: its line ending, or the
	 * file's last segment that had none. */
	struct seen s = {.cap = size + 1};
	char why[BATCH_WHY_MAX];
	size_t count = 0, again = 0;
	int rc;

	s.joined = malloc(s.cap);
	check(s.joined != NULL);
	rc = batch_split(data, size, keep, &s, &count, why, sizeof(why));
	if (rc != 0) {
		check(s.calls == 0 && count == 0);
		check_why(rc, why);
		(void)batch_is_batch(data, size);
		free(s.joined);
		return 0;
	}
	check(count == s.calls && count > 0 && count <= BATCH_MESSAGES_MAX && why[0] == '\0');

	/* The messages are a file of bare messages that splits the same. */
	struct seen t = {.cap = s.len};
	t.joined = malloc(t.cap ? t.cap : 1);
	check(t.joined != NULL);
	check(batch_split(s.joined, s.len, keep, &t, &again, why, sizeof(why)) == 0);
	check(again == count && t.len == s.len && memcmp(t.joined, s.joined, s.len) == 0);
	free(t.joined);
	free(s.joined);

	/* A callback's refusal stops it at that message. */
	struct seen u = {.stop_at = 1 + size % count};
	check(batch_split(data, size, keep, &u, &again, why, sizeof(why)) == -ECANCELED);
	check(u.calls == u.stop_at);
	return 0;
}
