/*
 * libFuzzer target for the vici codec.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -I. \
 *         tests/fuzz/fuzz_vici.c vici-client/{builder,codec,conn,control,parser,tree}.c \
 *         -o build/fuzz/fuzz_vici
 *   build/fuzz/fuzz_vici -max_total_time=60 build/fuzz/corpus_vici
 *
 * The input is both a stream head (segment -> packet -> message) and a bare
 * message. Invariants: a decoded packet re-encodes to the same segment; the
 * pull parser and the tree agree on the verdict; an accepted message
 * re-encodes byte for byte, both through the tree and element by element
 * through the builder; top-level names are found by path; JSON is one line.
 * The input is also read as a control log for vici_control_reason().
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vici-client/vici.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond))                                                                       \
			abort();                                                                   \
	} while (0)

/* Feeds every element to a builder; returns the parser's verdict. */
static int rebuild(const uint8_t *msg, size_t len, uint8_t **out, size_t *out_len)
{
	struct vici_builder *b = vici_builder_new();
	struct vici_parser p;
	struct vici_element e;
	int rc, frc;

	vici_parser_init(&p, msg, len);
	while ((rc = vici_parser_next(&p, &e)) > 0) {
		switch (e.type) {
		case VICI_SECTION_START:
			vici_builder_section_start(b, e.name);
			break;
		case VICI_SECTION_END:
			vici_builder_section_end(b);
			break;
		case VICI_KEY_VALUE:
			vici_builder_key_value(b, e.name, e.value, e.value_len);
			break;
		case VICI_LIST_START:
			vici_builder_list_start(b, e.name);
			break;
		case VICI_LIST_ITEM:
			vici_builder_list_item(b, e.value, e.value_len);
			break;
		case VICI_LIST_END:
			vici_builder_list_end(b);
			break;
		}
	}
	CHECK(rc == 0 || rc == -EBADMSG);
	frc = vici_builder_finish(b, out, out_len);
	vici_builder_free(b);
	/* whatever the parser accepted, the builder accepts (no ENOMEM under the fuzzer) */
	CHECK(rc != 0 || frc == 0);
	if (rc != 0) {
		free(*out);
		*out = NULL;
	}
	return rc;
}

static void check_json(const struct vici_tree *t)
{
	char *buf = NULL;
	size_t size = 0;
	FILE *f = open_memstream(&buf, &size);

	CHECK(f);
	CHECK(vici_tree_to_json(t, f) == 0);
	CHECK(fclose(f) == 0);
	CHECK(size >= 3 && buf[0] == '{' && buf[size - 2] == '}' && buf[size - 1] == '\n');
	CHECK(memchr(buf, '\n', size) == buf + size - 1);
	free(buf);
}

static void check_paths(const struct vici_tree *t)
{
	const struct vici_node *n, *found;

	for (n = vici_node_first(vici_tree_root(t)); n; n = vici_node_next(n)) {
		if (strchr(vici_node_name(n), '.'))
			continue;
		found = vici_tree_find(t, vici_node_name(n));
		CHECK(found && strcmp(vici_node_name(found), vici_node_name(n)) == 0);
	}
}

static void check_message(const uint8_t *msg, size_t len)
{
	struct vici_tree *t;
	uint8_t *out = NULL, *again = NULL;
	size_t out_len = 0, again_len = 0;
	int prc = rebuild(msg, len, &out, &out_len);
	int trc = vici_tree_parse(msg, len, &t);

	CHECK(prc == trc);
	if (trc < 0) {
		CHECK(t == NULL);
		return;
	}
	CHECK(out_len == len && (len == 0 || memcmp(out, msg, len) == 0));
	CHECK(vici_tree_encode(t, &again, &again_len) == 0);
	CHECK(again_len == len && (len == 0 || memcmp(again, msg, len) == 0));
	check_json(t);
	check_paths(t);
	free(again);
	free(out);
	vici_tree_free(t);
}

static void check_segment(const uint8_t *seg, size_t len)
{
	struct vici_packet pk;
	uint8_t *out;
	size_t out_len;
	int rc = vici_packet_decode(seg, len, &pk);

	CHECK(rc == 0 || rc == -EBADMSG || rc == -EMSGSIZE);
	if (rc < 0)
		return;
	CHECK(vici_packet_encode(pk.type, pk.name[0] ? pk.name : NULL, pk.msg, pk.msg_len, &out,
				 &out_len) == 0);
	CHECK(out_len == len && memcmp(out, seg, len) == 0);
	free(out);
	if (pk.msg)
		check_message(pk.msg, pk.msg_len);
}

/* The full names of the notifies charon abbreviates when this end sends
 * them ("generating ... [ N(AUTH_FAILED) ]"), with their abbreviation. */
static const char *const sent[][2] = {
    {"AUTHENTICATION_FAILED", "N(AUTH_FAILED)"},
    {"NO_PROPOSAL_CHOSEN", "N(NO_PROP)"},
    {"TS_UNACCEPTABLE", "N(TS_UNACCEPT)"},
};

/* Whether reason came from a notify this end sent, as the log shows it. */
static int sent_in(const char *log, const char *reason)
{
	for (size_t i = 0; i < sizeof(sent) / sizeof(sent[0]); i++)
		if (!strcmp(reason, sent[i][0]) && strstr(log, sent[i][1]) &&
		    strstr(log, "generating "))
			return 1;
	return 0;
}

/* The input as a control log: a reason is a notify name found in it, the
 * full name of a notify this end sent, or the no-answer marker. */
static void check_reason(const uint8_t *data, size_t size)
{
	char *log = malloc(size + 1), buf[64];
	size_t n;

	CHECK(log);
	memcpy(log, data, size);
	log[size] = '\0';
	n = vici_control_reason(log, buf, sizeof(buf));
	CHECK(n < sizeof(buf) && strlen(buf) == n);
	if (n && strcmp(buf, VICI_REASON_NO_ANSWER) != 0)
		CHECK((strstr(log, buf) || sent_in(log, buf)) &&
		      strspn(buf, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") == n);
	free(log);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t seg_len = 0;
	int rc = vici_segment_length(data, size, &seg_len);

	CHECK(rc == 0 || rc == 1 || rc == -EMSGSIZE);
	if (rc == 1) {
		CHECK(seg_len >= 4 && seg_len <= size);
		check_segment(data, seg_len);
	}
	check_segment(data, size);
	check_message(data, size);
	check_reason(data, size);
	return 0;
}
