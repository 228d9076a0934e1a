/*
 * libFuzzer target for the JSON → HL7 v2 translator (issue 12).
 *
 *   make build/fuzz/fuzz_translate     (seeded with the golden inputs in tests/translate)
 *   build/fuzz/fuzz_translate -max_total_time=60 build/fuzz/fuzz_translate.corpus
 *
 * The input is the JSON document; with an odd last byte the destination
 * wants ISO 8859/1. Checked: the answer is either a refusal with a path and
 * a reason (-EINVAL), -EMSGSIZE for a document past XL_JSON_MAX, or an HL7
 * message whose segments each end with CR, start with a three-character
 * name (and a field separator, unless that is all), and hold no LF, NUL or
 * MLLP framing byte
 * (0x0B, 0x1C): whatever the JSON held, no value can break the message or
 * its frame.
 */
#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mllp-bridge/translate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok)
{
	if (!ok)
		abort();
}

/* A name of three, then fields; a segment whose fields are all empty may
 * be its name alone (HL7 lets trailing empty fields go). */
static void check_segment(const char *s, size_t len)
{
	check(len >= 3);
	for (int i = 0; i < 3; i++)
		check(isupper((unsigned char)s[i]) || isdigit((unsigned char)s[i]));
	check(len == 3 || s[3] == '|');
	for (size_t i = 0; i < len; i++)
		check(s[i] != '\n' && s[i] != '\0' && s[i] != 0x0b && s[i] != 0x1c);
}

static void check_message(const char *m, size_t len)
{
	const char *end = m + len, *p = m, *cr;

	check(len > 4 && memcmp(m, "MSH|", 4) == 0 && m[len - 1] == '\r');
	while (p < end) {
		cr = memchr(p, '\r', (size_t)(end - p));
		check(cr != NULL);
		check_segment(p, (size_t)(cr - p));
		p = cr + 1;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct xl_opts o = {.version = "2.5.1",
			    .sending_app = "CLOUD",
			    .sending_facility = "ACME",
			    .receiving_app = "LIS",
			    .receiving_facility = "HOSP",
			    .latin1 = size && (data[size - 1] & 1),
			    .control_id = "FUZZ1",
			    .now = "20261130120000"};
	struct xl_error err;
	char *out = NULL;
	size_t len = 0;
	int rc = translate_json(data, size, &o, &out, &len, &err);

	if (rc == 0) {
		check(out != NULL);
		check_message(out, len);
	} else {
		check(out == NULL);
		check(rc == -EINVAL || rc == -EMSGSIZE || rc == -ENOMEM);
		if (rc == -EINVAL)
			check(memchr(err.path, '\0', sizeof(err.path)) && err.reason[0] &&
			      memchr(err.reason, '\0', sizeof(err.reason)));
	}
	free(out);
	return 0;
}
