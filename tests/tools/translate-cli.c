/*
 * translate-cli: the outbound translator on one file, for the golden tests
 * and for analysts.
 *
 *   translate-cli [--latin1] [-c CONTROL_ID] [-n NOW] [-v VERSION] FILE
 *
 * Prints the HL7 v2 message (segments end with CR) on stdout and exits 0;
 * on a refusal prints "422 PATH: REASON" (or "413 ...") on stderr and exits
 * 1; 2 on usage or a file that cannot be read. MSH-3..6 are fixed test
 * values: MLLP-EDGE, CLOUD, EHR, HOSP.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mllp-bridge/translate.h"
#include "tests/tools/translate-file.h"

static int usage(void)
{
	fprintf(stderr,
		"usage: translate-cli [--latin1] [-c CONTROL_ID] [-n NOW] [-v VERSION] FILE\n");
	return 2;
}

int main(int argc, char **argv)
{
	struct xl_opts o = XL_TEST_OPTS;
	struct xl_error err;
	const char *file = NULL;
	char *json, *out;
	size_t len = 0, out_len;
	int i, rc;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--latin1") == 0)
			o.latin1 = 1;
		else if (strcmp(argv[i], "-c") == 0 && i + 1 < argc)
			o.control_id = argv[++i];
		else if (strcmp(argv[i], "-n") == 0 && i + 1 < argc)
			o.now = argv[++i];
		else if (strcmp(argv[i], "-v") == 0 && i + 1 < argc)
			o.version = argv[++i];
		else if (!file && argv[i][0] != '-')
			file = argv[i];
		else
			return usage();
	}
	if (!file)
		return usage();
	json = xl_read_file(file, &len);
	if (!json) {
		fprintf(stderr, "translate-cli: %s: %s\n", file, strerror(errno));
		return 2;
	}
	rc = translate_json(json, len, &o, &out, &out_len, &err);
	free(json);
	if (rc == -EINVAL || rc == -EMSGSIZE) {
		fprintf(stderr, "%d %s: %s\n", rc == -EINVAL ? 422 : 413, err.path, err.reason);
		return 1;
	}
	if (rc < 0) {
		fprintf(stderr, "translate-cli: %s\n", strerror(-rc));
		return 2;
	}
	fwrite(out, 1, out_len, stdout);
	free(out);
	return 0;
}
