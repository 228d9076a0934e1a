/*
 * What translate-cli and translate-bench share: the test destination's
 * options (MSH-3..6 MLLP-EDGE, CLOUD, EHR, HOSP; version 2.5.1) and reading
 * a JSON file. Header-only: each tool is one source file.
 */
#ifndef TRANSLATE_FILE_H
#define TRANSLATE_FILE_H

#include <stdio.h>
#include <stdlib.h>

#include "mllp-bridge/translate.h"

#define XL_TEST_OPTS                                                                               \
	{                                                                                          \
		.version = "2.5.1", .sending_app = "MLLP-EDGE", .sending_facility = "CLOUD",       \
		.receiving_app = "EHR", .receiving_facility = "HOSP", .control_id = "XL-0001",     \
		.now = "20261130120000+0000"                                                       \
	}

/* Reads at most XL_JSON_MAX + 1 bytes: one more than allowed is enough for
 * the translator to refuse the size. Returns the bytes (caller frees), or
 * NULL with errno set. */
static inline char *xl_read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf;

	if (!f)
		return NULL;
	buf = malloc(XL_JSON_MAX + 1);
	if (buf)
		*len = fread(buf, 1, XL_JSON_MAX + 1, f);
	if (buf && ferror(f)) {
		free(buf);
		buf = NULL;
	}
	fclose(f);
	return buf;
}

#endif
