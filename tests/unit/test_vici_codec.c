/*
 * The vici wire codec: the README example byte for byte, round trips of every
 * packet and element type, every limit and malformation with its errno, every
 * cut of a valid message and segment, the builder's sticky error, and JSON.
 * Run under ASan with CK_FORK=no to catch leaks on the error paths.
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vici-client/vici.h"

#define NELEMS(a) (sizeof(a) / sizeof((a)[0]))
/* A byte-string literal and its length, without the literal's NUL. */
#define BYTES(s) (const uint8_t *)(s), (sizeof(s) - 1)

/* strongSwan vici README, "Encoding example". */
static const uint8_t readme_msg[] = {
    3,	 4,   'k', 'e', 'y', '1', 0,   6,   'v', 'a', 'l', 'u', 'e', '1', 1,   8,
    's', 'e', 'c', 't', 'i', 'o', 'n', '1', 1,	 11,  's', 'u', 'b', '-', 's', 'e',
    'c', 't', 'i', 'o', 'n', 3,	  4,   'k', 'e', 'y', '2', 0,	6,   'v', 'a', 'l',
    'u', 'e', '2', 2,	4,   5,	  'l', 'i', 's', 't', '1', 5,	0,   5,	  'i', 't',
    'e', 'm', '1', 5,	0,   5,	  'i', 't', 'e', 'm', '2', 6,	2,
};
/* Cuts of readme_msg that leave a complete, balanced message. */
static const size_t readme_clean_cuts[] = {0, 14, sizeof(readme_msg)};

static const char readme_json[] =
    "{\"key1\":\"value1\",\"section1\":{\"sub-section\":{\"key2\":\"value2\"},"
    "\"list1\":[\"item1\",\"item2\"]}}\n";

static void build_readme(struct vici_builder *b)
{
	vici_builder_key_str(b, "key1", "value1");
	vici_builder_section_start(b, "section1");
	vici_builder_section_start(b, "sub-section");
	vici_builder_key_str(b, "key2", "value2");
	vici_builder_section_end(b);
	vici_builder_list_start(b, "list1");
	vici_builder_list_item_str(b, "item1");
	vici_builder_list_item(b, "item2", 5);
	vici_builder_list_end(b);
	vici_builder_section_end(b);
}

/* Runs the parser to its end; checks the result sticks. Returns it. */
static int walk(const uint8_t *msg, size_t len, unsigned *elements)
{
	struct vici_parser p;
	struct vici_element e;
	int rc;

	*elements = 0;
	vici_parser_init(&p, msg, len);
	while ((rc = vici_parser_next(&p, &e)) > 0)
		(*elements)++;
	ck_assert_int_eq(vici_parser_next(&p, &e), rc);
	return rc;
}

START_TEST(test_readme_built_byte_exact)
{
	struct vici_builder *b = vici_builder_new();
	uint8_t *msg;
	size_t len;

	build_readme(b);
	ck_assert_int_eq(vici_builder_finish(b, &msg, &len), 0);
	ck_assert_uint_eq(len, sizeof(readme_msg));
	ck_assert_mem_eq(msg, readme_msg, len);
	free(msg);
	vici_builder_free(b);
}
END_TEST

static const struct {
	const char *path;
	const char *value; /* NULL: not a key/value */
} lookups[] = {
    {"key1", "value1"},
    {"section1.sub-section.key2", "value2"},
    {"section1.sub-section.key3", NULL},
    {"section1.sub-section", NULL},
    {"section1.list1", NULL},
    {"section1", NULL},
    {"key1.value1", NULL},
    {"section1..sub-section.key2", NULL},
    {"section1.sub-section.key2.", NULL},
    {".key1", NULL},
    {"", NULL},
    {"KEY1", NULL},
    {"key", NULL},
    {"key12", NULL},
};

START_TEST(test_readme_lookup)
{
	struct vici_tree *t;
	const char *v;

	ck_assert_int_eq(vici_tree_parse(readme_msg, sizeof(readme_msg), &t), 0);
	v = vici_tree_get(t, lookups[_i].path);
	if (lookups[_i].value)
		ck_assert_str_eq(v, lookups[_i].value);
	else
		ck_assert_ptr_null(v);
	vici_tree_free(t);
}
END_TEST

START_TEST(test_readme_iterate)
{
	struct vici_tree *t;
	const struct vici_node *n, *s;
	size_t len;

	ck_assert_int_eq(vici_tree_parse(readme_msg, sizeof(readme_msg), &t), 0);
	ck_assert_ptr_eq(vici_tree_find(t, ""), vici_tree_root(t));
	n = vici_node_first(vici_tree_root(t));
	ck_assert_str_eq(vici_node_name(n), "key1");
	ck_assert_int_eq(vici_node_kind(n), VICI_NODE_VALUE);
	ck_assert_str_eq(vici_node_value(n, &len), "value1");
	ck_assert_uint_eq(len, 6);
	ck_assert_ptr_null(vici_node_first(n));
	s = vici_node_next(n);
	ck_assert_str_eq(vici_node_name(s), "section1");
	ck_assert_int_eq(vici_node_kind(s), VICI_NODE_SECTION);
	ck_assert_ptr_null(vici_node_value(s, NULL));
	ck_assert_ptr_null(vici_node_next(s));
	n = vici_node_first(s);
	ck_assert_str_eq(vici_node_name(n), "sub-section");
	n = vici_node_next(n);
	ck_assert_ptr_eq(n, vici_tree_find(t, "section1.list1"));
	ck_assert_int_eq(vici_node_kind(n), VICI_NODE_LIST);
	ck_assert_uint_eq(vici_node_item_count(n), 2);
	ck_assert_str_eq(vici_node_item(n, 0, &len), "item1");
	ck_assert_str_eq(vici_node_item(n, 1, NULL), "item2");
	ck_assert_ptr_null(vici_node_item(n, 2, NULL));
	ck_assert_ptr_null(vici_node_next(n));
	ck_assert_uint_eq(vici_node_item_count(s), 0);
	/* Lookups from a section, as from the root. */
	ck_assert_str_eq(vici_node_get(s, "sub-section.key2"), "value2");
	ck_assert_ptr_eq(vici_node_find(s, "list1"), n);
	ck_assert_ptr_eq(vici_node_find(s, ""), s);
	ck_assert_ptr_null(vici_node_get(s, "key1"));
	ck_assert_ptr_null(vici_node_find(n, ""));
	ck_assert_ptr_null(vici_node_find(NULL, "key1"));
	ck_assert_ptr_null(vici_node_get(vici_tree_root(t), "section1.sub-section"));
	vici_tree_free(t);
}
END_TEST

START_TEST(test_readme_element_sequence)
{
	static const struct {
		int type;
		const char *name;
		const char *value;
	} want[] = {
	    {VICI_KEY_VALUE, "key1", "value1"},
	    {VICI_SECTION_START, "section1", NULL},
	    {VICI_SECTION_START, "sub-section", NULL},
	    {VICI_KEY_VALUE, "key2", "value2"},
	    {VICI_SECTION_END, "", NULL},
	    {VICI_LIST_START, "list1", NULL},
	    {VICI_LIST_ITEM, "", "item1"},
	    {VICI_LIST_ITEM, "", "item2"},
	    {VICI_LIST_END, "", NULL},
	    {VICI_SECTION_END, "", NULL},
	};
	struct vici_parser p;
	struct vici_element e;

	vici_parser_init(&p, readme_msg, sizeof(readme_msg));
	for (size_t i = 0; i < NELEMS(want); i++) {
		ck_assert_int_eq(vici_parser_next(&p, &e), want[i].type);
		ck_assert_int_eq(e.type, want[i].type);
		ck_assert_str_eq(e.name, want[i].name);
		if (want[i].value) {
			ck_assert_uint_eq(e.value_len, strlen(want[i].value));
			ck_assert_mem_eq(e.value, want[i].value, e.value_len);
		} else {
			ck_assert_ptr_null(e.value);
		}
	}
	ck_assert_int_eq(vici_parser_next(&p, &e), 0);
	ck_assert_int_eq(vici_parser_next(&p, &e), 0);
}
END_TEST

/* Messages for tree round trips and JSON; all valid. */
static const struct {
	const uint8_t *msg;
	size_t len;
	const char *json;
} messages[] = {
    {readme_msg, sizeof(readme_msg), readme_json},
    {BYTES(""), "{}\n"},
    {BYTES("\x04\x01l\x06"), "{\"l\":[]}\n"},
    {BYTES("\x01\x01s\x02"), "{\"s\":{}}\n"},
    {BYTES("\x03\x01k\x00\x00"), "{\"k\":\"\"}\n"},
    /* escapes: quote, backslash, newline, tab, CR, 0x01, NUL, DEL */
    {BYTES("\x03\x01k\x00\x0a\"\\\n\t\r\x01\x00\x7f"
	   "ab"),
     "{\"k\":\"\\\"\\\\\\n\\t\\r\\u0001\\u0000\x7f"
     "ab\"}\n"},
    /* UTF-8 passes: e-acute, euro sign, U+1F600, U+10FFFF */
    {BYTES("\x03\x01u\x00\x0d\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf"),
     "{\"u\":\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf\"}\n"},
    /* not UTF-8: stray 0xff, overlong C0 80, surrogate ED A0 80, F4 90 (> U+10FFFF),
     * truncated E2 82 at the end */
    {BYTES("\x03\x01x\x00\x0c\xff\xc0\x80\xed\xa0\x80\xf4\x90\x80\x80\xe2\x82"),
     "{\"x\":\"\\u00ff\\u00c0\\u0080\\u00ed\\u00a0\\u0080\\u00f4\\u0090\\u0080"
     "\\u0080\\u00e2\\u0082\"}\n"},
    /* names are escaped too; list items in order; duplicate keys kept */
    {BYTES("\x04\x03\"a\xe9\x05\x00\x01x\x05\x00\x00\x06\x03\x01k\x00\x01"
	   "1\x03\x01k\x00\x01"
	   "2"),
     "{\"\\\"a\\u00e9\":[\"x\",\"\"],\"k\":\"1\",\"k\":\"2\"}\n"},
};

START_TEST(test_tree_round_trip)
{
	struct vici_tree *t;
	uint8_t *out;
	size_t len;

	ck_assert_int_eq(vici_tree_parse(messages[_i].msg, messages[_i].len, &t), 0);
	ck_assert_int_eq(vici_tree_encode(t, &out, &len), 0);
	ck_assert_uint_eq(len, messages[_i].len);
	if (len)
		ck_assert_mem_eq(out, messages[_i].msg, len);
	free(out);
	vici_tree_free(t);
}
END_TEST

START_TEST(test_json)
{
	struct vici_tree *t;
	char *buf = NULL;
	size_t size = 0;
	FILE *f = open_memstream(&buf, &size);

	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(vici_tree_parse(messages[_i].msg, messages[_i].len, &t), 0);
	ck_assert_int_eq(vici_tree_to_json(t, f), 0);
	fclose(f);
	ck_assert_str_eq(buf, messages[_i].json);
	free(buf);
	vici_tree_free(t);
}
END_TEST

START_TEST(test_json_write_error)
{
	struct vici_tree *t;
	FILE *f = fopen("/dev/full", "w");

	ck_assert_ptr_nonnull(f);
	setvbuf(f, NULL, _IONBF, 0);
	ck_assert_int_eq(vici_tree_parse(readme_msg, sizeof(readme_msg), &t), 0);
	ck_assert_int_eq(vici_tree_to_json(t, f), -EIO);
	fclose(f);
	vici_tree_free(t);
}
END_TEST

/* Every packet type, byte exact, decoded back and re-encoded. */
static const struct {
	enum vici_packet_type type;
	const char *name;
	const uint8_t *msg;
	size_t msg_len;
	const uint8_t *wire;
	size_t wire_len;
} packets[] = {
    {VICI_CMD_REQUEST, "version", NULL, 0, BYTES("\0\0\0\x09\x00\x07version")},
    {VICI_CMD_REQUEST, "x", BYTES("\x03\x01k\x00\x01v"),
     BYTES("\0\0\0\x09\x00\x01x\x03\x01k\x00\x01v")},
    {VICI_CMD_RESPONSE, NULL, BYTES("\x03\x01k\x00\x01v"),
     BYTES("\0\0\0\x07\x01\x03\x01k\x00\x01v")},
    {VICI_CMD_RESPONSE, NULL, NULL, 0, BYTES("\0\0\0\x01\x01")},
    {VICI_CMD_UNKNOWN, NULL, NULL, 0, BYTES("\0\0\0\x01\x02")},
    {VICI_EVENT_REGISTER, "list-sa", NULL, 0, BYTES("\0\0\0\x09\x03\x07list-sa")},
    {VICI_EVENT_UNREGISTER, "list-sa", NULL, 0, BYTES("\0\0\0\x09\x04\x07list-sa")},
    {VICI_EVENT_CONFIRM, NULL, NULL, 0, BYTES("\0\0\0\x01\x05")},
    {VICI_EVENT_UNKNOWN, NULL, NULL, 0, BYTES("\0\0\0\x01\x06")},
    {VICI_EVENT, "ike-updown", BYTES("\x01\x01s\x02"),
     BYTES("\0\0\0\x10\x07\x0aike-updown\x01\x01s\x02")},
};

START_TEST(test_packet_round_trip)
{
	struct vici_packet pk;
	uint8_t *out, *again;
	size_t len, again_len, seg_len = 0;

	ck_assert_int_eq(vici_packet_encode(packets[_i].type, packets[_i].name, packets[_i].msg,
					    packets[_i].msg_len, &out, &len),
			 0);
	ck_assert_uint_eq(len, packets[_i].wire_len);
	ck_assert_mem_eq(out, packets[_i].wire, len);
	ck_assert_int_eq(vici_segment_length(out, len, &seg_len), 1);
	ck_assert_uint_eq(seg_len, len);
	ck_assert_int_eq(vici_packet_decode(out, len, &pk), 0);
	ck_assert_int_eq(pk.type, packets[_i].type);
	ck_assert_str_eq(pk.name, packets[_i].name ? packets[_i].name : "");
	ck_assert_uint_eq(pk.msg_len, packets[_i].msg_len);
	if (pk.msg_len)
		ck_assert_mem_eq(pk.msg, packets[_i].msg, pk.msg_len);
	ck_assert_int_eq(vici_packet_encode(pk.type, pk.name[0] ? pk.name : NULL, pk.msg,
					    pk.msg_len, &again, &again_len),
			 0);
	ck_assert_uint_eq(again_len, len);
	ck_assert_mem_eq(again, out, len);
	free(again);
	free(out);
}
END_TEST

/* Two segments back to back in a stream buffer: the first is found alone. */
START_TEST(test_segment_in_stream)
{
	static const uint8_t stream[] = "\0\0\0\x01\x05\0\0\0\x01\x02";
	size_t seg_len = 0;

	ck_assert_int_eq(vici_segment_length(stream, sizeof(stream) - 1, &seg_len), 1);
	ck_assert_uint_eq(seg_len, 5);
	ck_assert_int_eq(vici_segment_length(stream + 5, sizeof(stream) - 1 - 5, &seg_len), 1);
	ck_assert_uint_eq(seg_len, 5);
}
END_TEST

/* Every prefix of the README message: clean only at element boundaries at depth 0. */
START_TEST(test_message_cut)
{
	size_t cut = (size_t)_i;
	int want = -EBADMSG;
	struct vici_tree *t = NULL;
	unsigned n;

	for (size_t i = 0; i < NELEMS(readme_clean_cuts); i++)
		if (readme_clean_cuts[i] == cut)
			want = 0;
	ck_assert_int_eq(walk(readme_msg, cut, &n), want);
	ck_assert_int_eq(vici_tree_parse(readme_msg, cut, &t), want);
	if (want == 0)
		ck_assert_ptr_nonnull(t);
	else
		ck_assert_ptr_null(t);
	vici_tree_free(t);
}
END_TEST

/* Every prefix of a segment: the stream needs more, and decode refuses it. */
START_TEST(test_segment_cut)
{
	struct vici_packet pk;
	uint8_t *seg;
	size_t len, seg_len = 12345;

	ck_assert_int_eq(
	    vici_packet_encode(VICI_EVENT, "list-sa", readme_msg, sizeof(readme_msg), &seg, &len),
	    0);
	if ((size_t)_i < len) {
		ck_assert_int_eq(vici_segment_length(seg, (size_t)_i, &seg_len), 0);
		ck_assert_uint_eq(seg_len, 12345);
		ck_assert_int_eq(vici_packet_decode(seg, (size_t)_i, &pk), -EBADMSG);
	}
	free(seg);
}
END_TEST

static const struct {
	const char *what;
	const uint8_t *msg;
	size_t len;
} bad_messages[] = {
    {"truncated name", BYTES("\x01\x05sec")},
    {"missing name length", BYTES("\x03")},
    {"truncated value length", BYTES("\x03\x01k\x00")},
    {"truncated value", BYTES("\x03\x01k\x00\x05v")},
    {"truncated list item", BYTES("\x04\x01l\x05\x00\x02x")},
    {"zero-length section name", BYTES("\x01\x00\x02")},
    {"zero-length key name", BYTES("\x03\x00\x00\x00")},
    {"zero-length list name", BYTES("\x04\x00\x06")},
    {"NUL in name", BYTES("\x03\x02k\x00\x00\x00")},
    {"section end without start", BYTES("\x02")},
    {"extra section end", BYTES("\x01\x01s\x02\x02")},
    {"list item outside a list", BYTES("\x05\x00\x00")},
    {"list end outside a list", BYTES("\x06")},
    {"nested list", BYTES("\x04\x01l\x04\x01m\x06\x06")},
    {"section in list", BYTES("\x04\x01l\x01\x01s\x02\x06")},
    {"section end in list", BYTES("\x01\x01s\x04\x01l\x02")},
    {"key in list", BYTES("\x04\x01l\x03\x01k\x00\x00\x06")},
    {"element type 0", BYTES("\x00")},
    {"element type 7", BYTES("\x07\x01x")},
    {"element type 255", BYTES("\x03\x01k\x00\x00\xff")},
    {"section left open", BYTES("\x01\x01s")},
    {"list left open", BYTES("\x04\x01l\x05\x00\x00")},
};

START_TEST(test_bad_message)
{
	struct vici_tree *t = (struct vici_tree *)1;
	unsigned n;

	ck_assert_msg(walk(bad_messages[_i].msg, bad_messages[_i].len, &n) == -EBADMSG, "%s",
		      bad_messages[_i].what);
	ck_assert_int_eq(vici_tree_parse(bad_messages[_i].msg, bad_messages[_i].len, &t), -EBADMSG);
	ck_assert_ptr_null(t);
}
END_TEST

/* depth sections nested, each holding one key, closed. Caller frees. */
static uint8_t *nested(unsigned depth, size_t *len)
{
	uint8_t *m = malloc(depth * 9 + 1), *p = m;

	ck_assert_ptr_nonnull(m);
	for (unsigned i = 0; i < depth; i++) {
		memcpy(p, "\x01\x01s\x03\x01k\x00\x00", 8);
		p += 8;
	}
	memset(p, 2, depth);
	*len = (size_t)(p - m) + depth;
	return m;
}

static const struct {
	unsigned depth;
	int rc;
} depths[] = {{1, 0}, {VICI_DEPTH_MAX, 0}, {VICI_DEPTH_MAX + 1, -EBADMSG}, {200, -EBADMSG}};

START_TEST(test_parse_depth)
{
	size_t len;
	uint8_t *m = nested(depths[_i].depth, &len);
	struct vici_tree *t = NULL;
	unsigned n;
	char path[4 * (VICI_DEPTH_MAX + 1)] = "";

	ck_assert_int_eq(walk(m, len, &n), depths[_i].rc);
	ck_assert_int_eq(vici_tree_parse(m, len, &t), depths[_i].rc);
	if (t) {
		for (unsigned i = 0; i < depths[_i].depth; i++)
			strcat(path, "s.");
		strcat(path, "k");
		ck_assert_str_eq(vici_tree_get(t, path), "");
	}
	vici_tree_free(t);
	free(m);
}
END_TEST

static const struct {
	const char *what;
	const uint8_t *seg;
	size_t len;
	int rc;
} bad_segments[] = {
    {"empty buffer", BYTES(""), -EBADMSG},
    {"short prefix", BYTES("\0\0\0"), -EBADMSG},
    {"empty packet", BYTES("\0\0\0\0"), -EBADMSG},
    {"prefix longer than data", BYTES("\0\0\0\x02\x05"), -EBADMSG},
    {"prefix shorter than data", BYTES("\0\0\0\x01\x05\x05"), -EBADMSG},
    {"announced beyond limit", BYTES("\0\x08\0\x01\x05"), -EMSGSIZE},
    {"announced 4 GiB", BYTES("\xff\xff\xff\xff\x05"), -EMSGSIZE},
    {"packet type 8", BYTES("\0\0\0\x01\x08"), -EBADMSG},
    {"packet type 255", BYTES("\0\0\0\x01\xff"), -EBADMSG},
    {"request without name length", BYTES("\0\0\0\x01\x00"), -EBADMSG},
    {"request with empty name", BYTES("\0\0\0\x02\x00\x00"), -EBADMSG},
    {"truncated request name", BYTES("\0\0\0\x05\x00\x07ver"), -EBADMSG},
    {"truncated event name", BYTES("\0\0\0\x03\x07\x05x"), -EBADMSG},
    {"truncated register name", BYTES("\0\0\0\x03\x03\x02x"), -EBADMSG},
    {"NUL in name", BYTES("\0\0\0\x04\x03\x02x\0"), -EBADMSG},
    {"trailing bytes after register name", BYTES("\0\0\0\x04\x03\x01x\x01"), -EBADMSG},
    {"trailing bytes after unregister name", BYTES("\0\0\0\x04\x04\x01x\x01"), -EBADMSG},
    {"name on CMD_UNKNOWN", BYTES("\0\0\0\x03\x02\x01x"), -EBADMSG},
    {"name on EVENT_CONFIRM", BYTES("\0\0\0\x03\x05\x01x"), -EBADMSG},
    {"name on EVENT_UNKNOWN", BYTES("\0\0\0\x03\x06\x01x"), -EBADMSG},
};

START_TEST(test_bad_segment)
{
	struct vici_packet pk;

	ck_assert_msg(vici_packet_decode(bad_segments[_i].seg, bad_segments[_i].len, &pk) ==
			  bad_segments[_i].rc,
		      "%s", bad_segments[_i].what);
}
END_TEST

static const struct {
	const char *what;
	const uint8_t *buf;
	size_t len;
	int rc;
	size_t seg_len;
} stream_heads[] = {
    {"nothing yet", BYTES(""), 0, 0},
    {"partial prefix", BYTES("\0\0"), 0, 0},
    {"limit exactly, data pending", BYTES("\0\x08\0\0"), 0, 0},
    {"limit + 1", BYTES("\0\x08\0\x01"), -EMSGSIZE, 0},
    {"4 GiB", BYTES("\xff\xff\xff\xff"), -EMSGSIZE, 0},
    {"empty segment", BYTES("\0\0\0\0"), 1, 4},
    {"data pending", BYTES("\0\0\0\x02\x01"), 0, 0},
};

START_TEST(test_segment_length)
{
	size_t seg_len = 0;

	ck_assert_msg(vici_segment_length(stream_heads[_i].buf, stream_heads[_i].len, &seg_len) ==
			  stream_heads[_i].rc,
		      "%s", stream_heads[_i].what);
	ck_assert_uint_eq(seg_len, stream_heads[_i].seg_len);
}
END_TEST

static char name255[VICI_NAME_MAX + 1];
static char name256[VICI_NAME_MAX + 2];
static uint8_t big[VICI_SEGMENT_MAX + 1];

static const struct {
	const char *what;
	int type;
	const char *name;
	const uint8_t *msg;
	size_t msg_len;
	int rc;
} bad_encodes[] = {
    {"type 8", 8, NULL, NULL, 0, -EINVAL},
    {"type -1", -1, NULL, NULL, 0, -EINVAL},
    {"request without name", VICI_CMD_REQUEST, NULL, NULL, 0, -EINVAL},
    {"request with empty name", VICI_CMD_REQUEST, "", NULL, 0, -EINVAL},
    {"event name of 256", VICI_EVENT, name256, NULL, 0, -EINVAL},
    {"register without name", VICI_EVENT_REGISTER, NULL, NULL, 0, -EINVAL},
    {"name on response", VICI_CMD_RESPONSE, "x", NULL, 0, -EINVAL},
    {"name on confirm", VICI_EVENT_CONFIRM, "x", NULL, 0, -EINVAL},
    {"message on register", VICI_EVENT_REGISTER, "x", big, 1, -EINVAL},
    {"message on unknown", VICI_CMD_UNKNOWN, NULL, big, 1, -EINVAL},
    {"length without message", VICI_CMD_RESPONSE, NULL, NULL, 1, -EINVAL},
    {"response one byte over", VICI_CMD_RESPONSE, NULL, big, VICI_SEGMENT_MAX, -EMSGSIZE},
    {"request over with name", VICI_CMD_REQUEST, name255, big, VICI_SEGMENT_MAX - 257 + 1,
     -EMSGSIZE},
    {"response at the limit", VICI_CMD_RESPONSE, NULL, big, VICI_SEGMENT_MAX - 1, 0},
    {"request at the limit", VICI_CMD_REQUEST, name255, big, VICI_SEGMENT_MAX - 257, 0},
    {"event name of 255", VICI_EVENT, name255, NULL, 0, 0},
};

START_TEST(test_packet_encode_limits)
{
	uint8_t *out = (uint8_t *)1;
	size_t len = 1;
	struct vici_packet pk;

	ck_assert_msg(vici_packet_encode((enum vici_packet_type)bad_encodes[_i].type,
					 bad_encodes[_i].name, bad_encodes[_i].msg,
					 bad_encodes[_i].msg_len, &out, &len) == bad_encodes[_i].rc,
		      "%s", bad_encodes[_i].what);
	if (bad_encodes[_i].rc == 0) {
		ck_assert_int_eq(vici_packet_decode(out, len, &pk), 0);
		ck_assert_uint_eq(pk.msg_len, bad_encodes[_i].msg_len);
	} else {
		ck_assert_ptr_null(out);
		ck_assert_uint_eq(len, 0);
	}
	free(out);
}
END_TEST

/* Builder scripts for the error table. */
static void b_ok(struct vici_builder *b)
{
	vici_builder_key_str(b, name255, "");
	vici_builder_key_value(b, "max", big, VICI_VALUE_MAX);
	vici_builder_list_start(b, "l");
	vici_builder_list_item(b, big, VICI_VALUE_MAX);
	vici_builder_list_item(b, NULL, 0);
	vici_builder_list_end(b);
}
static void b_empty_name(struct vici_builder *b)
{
	vici_builder_section_start(b, "");
}
static void b_null_name(struct vici_builder *b)
{
	vici_builder_key_value(b, NULL, "v", 1);
}
static void b_long_name(struct vici_builder *b)
{
	vici_builder_key_str(b, name256, "v");
}
static void b_long_list_name(struct vici_builder *b)
{
	vici_builder_list_start(b, name256);
	vici_builder_list_end(b);
}
static void b_long_value(struct vici_builder *b)
{
	vici_builder_key_value(b, "k", big, VICI_VALUE_MAX + 1);
}
static void b_long_item(struct vici_builder *b)
{
	vici_builder_list_start(b, "l");
	vici_builder_list_item(b, big, VICI_VALUE_MAX + 1);
	vici_builder_list_end(b);
}
static void b_null_value(struct vici_builder *b)
{
	vici_builder_key_value(b, "k", NULL, 3);
}
static void b_null_str(struct vici_builder *b)
{
	vici_builder_key_str(b, "k", NULL);
}
static void b_too_big(struct vici_builder *b)
{
	for (int i = 0; i < 8; i++)
		vici_builder_key_value(b, "k", big, VICI_VALUE_MAX);
}
static void b_big_fits(struct vici_builder *b)
{
	for (int i = 0; i < 7; i++)
		vici_builder_key_value(b, "k", big, VICI_VALUE_MAX);
}
static void b_end_without_start(struct vici_builder *b)
{
	vici_builder_key_str(b, "k", "v");
	vici_builder_section_end(b);
}
static void b_section_open(struct vici_builder *b)
{
	vici_builder_section_start(b, "s");
}
static void b_list_open(struct vici_builder *b)
{
	vici_builder_list_start(b, "l");
	vici_builder_list_item_str(b, "x");
}
static void b_item_outside(struct vici_builder *b)
{
	vici_builder_list_item_str(b, "x");
}
static void b_list_end_outside(struct vici_builder *b)
{
	vici_builder_list_end(b);
}
static void b_nested_list(struct vici_builder *b)
{
	vici_builder_list_start(b, "l");
	vici_builder_list_start(b, "m");
	vici_builder_list_end(b);
	vici_builder_list_end(b);
}
static void b_section_in_list(struct vici_builder *b)
{
	vici_builder_list_start(b, "l");
	vici_builder_section_start(b, "s");
	vici_builder_section_end(b);
	vici_builder_list_end(b);
}
static void b_key_in_list(struct vici_builder *b)
{
	vici_builder_list_start(b, "l");
	vici_builder_key_str(b, "k", "v");
	vici_builder_list_end(b);
}
static void b_depth(struct vici_builder *b, unsigned depth)
{
	for (unsigned i = 0; i < depth; i++)
		vici_builder_section_start(b, "s");
	for (unsigned i = 0; i < depth; i++)
		vici_builder_section_end(b);
}
static void b_depth_max(struct vici_builder *b)
{
	b_depth(b, VICI_DEPTH_MAX);
}
static void b_depth_over(struct vici_builder *b)
{
	b_depth(b, VICI_DEPTH_MAX + 1);
}
/* Sticky: the first error wins, later ones and later valid calls change nothing. */
static void b_first_error_wins(struct vici_builder *b)
{
	vici_builder_key_str(b, name256, "v");
	vici_builder_key_value(b, "k", big, VICI_VALUE_MAX + 1);
	vici_builder_section_end(b);
	vici_builder_key_str(b, "k", "v");
}
static void b_first_error_wins2(struct vici_builder *b)
{
	vici_builder_key_value(b, "k", big, VICI_VALUE_MAX + 1);
	vici_builder_key_str(b, name256, "v");
	vici_builder_section_start(b, "s");
}

/* A section inside a list fails there, not later at the oversized item. */
static void b_section_in_list_first(struct vici_builder *b)
{
	vici_builder_list_start(b, "l");
	vici_builder_section_start(b, "s");
	vici_builder_list_item(b, big, VICI_VALUE_MAX + 1);
}
static void b_null_str_after_error(struct vici_builder *b)
{
	vici_builder_key_value(b, "k", big, VICI_VALUE_MAX + 1);
	vici_builder_key_str(b, "k", NULL);
	vici_builder_list_item_str(b, NULL);
}

static const struct {
	const char *what;
	void (*script)(struct vici_builder *b);
	int rc;
} builder_cases[] = {
    {"limits exactly", b_ok, 0},
    {"7 max values fit", b_big_fits, 0},
    {"depth max", b_depth_max, 0},
    {"empty name", b_empty_name, -EINVAL},
    {"NULL name", b_null_name, -EINVAL},
    {"256-byte key name", b_long_name, -EINVAL},
    {"256-byte list name", b_long_list_name, -EINVAL},
    {"65536-byte value", b_long_value, -EMSGSIZE},
    {"65536-byte item", b_long_item, -EMSGSIZE},
    {"NULL value with length", b_null_value, -EINVAL},
    {"NULL string", b_null_str, -EINVAL},
    {"message over the segment limit", b_too_big, -EMSGSIZE},
    {"section end without start", b_end_without_start, -EINVAL},
    {"section left open", b_section_open, -EINVAL},
    {"list left open", b_list_open, -EINVAL},
    {"list item outside a list", b_item_outside, -EINVAL},
    {"list end outside a list", b_list_end_outside, -EINVAL},
    {"nested list", b_nested_list, -EINVAL},
    {"section in list", b_section_in_list, -EINVAL},
    {"key in list", b_key_in_list, -EINVAL},
    {"depth over the limit", b_depth_over, -EINVAL},
    {"first error wins (EINVAL)", b_first_error_wins, -EINVAL},
    {"first error wins (EMSGSIZE)", b_first_error_wins2, -EMSGSIZE},
    {"section in list fails at once", b_section_in_list_first, -EINVAL},
    {"NULL strings after an error", b_null_str_after_error, -EMSGSIZE},
};

START_TEST(test_builder_errors)
{
	struct vici_builder *b = vici_builder_new();
	uint8_t *msg = (uint8_t *)1;
	size_t len = 1;
	struct vici_tree *t;
	int rc;

	ck_assert_ptr_nonnull(b);
	builder_cases[_i].script(b);
	rc = vici_builder_finish(b, &msg, &len);
	ck_assert_msg(rc == builder_cases[_i].rc, "%s: %d", builder_cases[_i].what, rc);
	if (rc == 0) {
		/* what the builder accepts, the parser accepts */
		ck_assert_ptr_nonnull(msg);
		ck_assert_int_eq(vici_tree_parse(msg, len, &t), 0);
		vici_tree_free(t);
	} else {
		ck_assert_ptr_null(msg);
		ck_assert_uint_eq(len, 0);
	}
	/* spent: a second finish reports an error, never a second message */
	free(msg);
	msg = (uint8_t *)1;
	ck_assert_int_eq(vici_builder_finish(b, &msg, &len), rc ? rc : -EINVAL);
	ck_assert_ptr_null(msg);
	vici_builder_free(b);
}
END_TEST

START_TEST(test_builder_null)
{
	uint8_t *msg = (uint8_t *)1;
	size_t len = 1;

	build_readme(NULL);
	ck_assert_int_eq(vici_builder_finish(NULL, &msg, &len), -ENOMEM);
	ck_assert_ptr_null(msg);
	vici_builder_free(NULL);
	vici_tree_free(NULL);
}
END_TEST

START_TEST(test_builder_empty)
{
	struct vici_builder *b = vici_builder_new();
	uint8_t *msg = NULL;
	size_t len = 1;

	ck_assert_int_eq(vici_builder_finish(b, &msg, &len), 0);
	ck_assert_ptr_nonnull(msg);
	ck_assert_uint_eq(len, 0);
	free(msg);
	vici_builder_free(b);
}
END_TEST

static Suite *vici_suite(void)
{
	Suite *s = suite_create("vici codec");
	TCase *tc = tcase_create("readme");

	tcase_add_test(tc, test_readme_built_byte_exact);
	tcase_add_loop_test(tc, test_readme_lookup, 0, (int)NELEMS(lookups));
	tcase_add_test(tc, test_readme_iterate);
	tcase_add_test(tc, test_readme_element_sequence);
	suite_add_tcase(s, tc);

	tc = tcase_create("round trip");
	tcase_add_loop_test(tc, test_tree_round_trip, 0, (int)NELEMS(messages));
	tcase_add_loop_test(tc, test_json, 0, (int)NELEMS(messages));
	tcase_add_test(tc, test_json_write_error);
	tcase_add_loop_test(tc, test_packet_round_trip, 0, (int)NELEMS(packets));
	tcase_add_test(tc, test_segment_in_stream);
	suite_add_tcase(s, tc);

	tc = tcase_create("malformed");
	tcase_add_loop_test(tc, test_message_cut, 0, (int)sizeof(readme_msg) + 1);
	tcase_add_loop_test(tc, test_segment_cut, 0, 4 + 1 + 1 + 7 + (int)sizeof(readme_msg));
	tcase_add_loop_test(tc, test_bad_message, 0, (int)NELEMS(bad_messages));
	tcase_add_loop_test(tc, test_parse_depth, 0, (int)NELEMS(depths));
	tcase_add_loop_test(tc, test_bad_segment, 0, (int)NELEMS(bad_segments));
	tcase_add_loop_test(tc, test_segment_length, 0, (int)NELEMS(stream_heads));
	suite_add_tcase(s, tc);

	tc = tcase_create("limits");
	tcase_add_loop_test(tc, test_packet_encode_limits, 0, (int)NELEMS(bad_encodes));
	tcase_add_loop_test(tc, test_builder_errors, 0, (int)NELEMS(builder_cases));
	tcase_add_test(tc, test_builder_null);
	tcase_add_test(tc, test_builder_empty);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr;
	int failed;

	memset(name255, 'n', VICI_NAME_MAX);
	memset(name256, 'n', VICI_NAME_MAX + 1);
	memset(big, 'v', sizeof(big));
	sr = srunner_create(vici_suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
