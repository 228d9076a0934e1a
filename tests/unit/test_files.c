/*
 * The file channels' pure parts (files_int.h): the Idempotency-Key of a
 * pulled file or of one message of it.
 *
 * The expected keys were computed apart from this code, with sha256sum over
 * the encoding files_int.h describes:
 *   printf '%s\0%s' "$SHA_HEX" "$NAME" | sha256sum | cut -c1-40
 * A change of derivation shows up here: after an upgrade every file taken
 * again would reach the upstream under a new key, as a new document.
 */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "mllp-bridge/files_int.h"
#include "mllp-bridge/spool.h"

#define NELEMS(a) (sizeof(a) / sizeof((a)[0]))

static const struct {
	const char *sha, *name, *key40;
} vectors[] = {
    {"90fa6c98ed26ccf18de79d1df2c353b5051d380e6b82cd4819a3139ac6ce1b35", "batch-0001.hl7",
     "bdc9beef57857cfca3e903033fb4deb4c1afc400"},
    {"7ee4c6f3a3c36fda40bc65873995ba819345df1d0bc75173587fca7cfaa028e9", "ccd-1.xml",
     "2382deac71d08251356c6939a1ff7e939f986876"},
    {"3a815dcd9273e1fd5ecf9e8c696a14fa384ed1e6de4304ee572aedee441d65a7",
     "ADT r\xc3\xa9sum\xc3\xa9.hl7", "9247abe2d14f3d888e8082b961d2b96352762dc7"},
};

/* An unsplit file: "f" and the 40 hex digits, nothing else. */
START_TEST(whole_file_key)
{
	char key[SPOOL_KEY_MAX + 1], want[64];

	fj_file_key(vectors[_i].sha, vectors[_i].name, 0, 7, key);
	snprintf(want, sizeof want, "f%s", vectors[_i].key40);
	ck_assert_str_eq(key, want);
}
END_TEST

/* A split file: "-index" after it, from 0, for every message. */
START_TEST(split_file_keys)
{
	static const size_t idx[] = {0, 1, 99999};
	char key[SPOOL_KEY_MAX + 1], want[80];

	for (size_t k = 0; k < NELEMS(idx); k++) {
		fj_file_key(vectors[_i].sha, vectors[_i].name, 1, idx[k], key);
		snprintf(want, sizeof want, "f%s-%zu", vectors[_i].key40, idx[k]);
		ck_assert_str_eq(key, want);
		ck_assert_uint_le(strlen(key), SPOOL_KEY_MAX);
	}
}
END_TEST

/* Name and content both count: the same bytes under another name, or
 * another content under the same name, is another document. */
START_TEST(name_and_content_count)
{
	char a[SPOOL_KEY_MAX + 1], b[SPOOL_KEY_MAX + 1], c[SPOOL_KEY_MAX + 1];

	fj_file_key(vectors[0].sha, "a.hl7", 0, 0, a);
	fj_file_key(vectors[0].sha, "b.hl7", 0, 0, b);
	fj_file_key(vectors[1].sha, "a.hl7", 0, 0, c);
	ck_assert_str_ne(a, b);
	ck_assert_str_ne(a, c);
	/* The separator keeps "ab" + "c" apart from "a" + "bc". */
	fj_file_key("ab", "c", 0, 0, a);
	fj_file_key("a", "bc", 0, 0, b);
	ck_assert_str_ne(a, b);
}
END_TEST

/* The largest index the splitter hands out still fits a spool key. */
START_TEST(longest_key_fits)
{
	char key[SPOOL_KEY_MAX + 1];

	fj_file_key(vectors[0].sha, vectors[0].name, 1, (size_t)-1, key);
	ck_assert_uint_le(strlen(key), SPOOL_KEY_MAX);
	ck_assert_uint_gt(strlen(key), 41);
}
END_TEST

static Suite *files_suite(void)
{
	Suite *s = suite_create("files");
	TCase *tc = tcase_create("keys");

	tcase_add_loop_test(tc, whole_file_key, 0, NELEMS(vectors));
	tcase_add_loop_test(tc, split_file_keys, 0, NELEMS(vectors));
	tcase_add_test(tc, name_and_content_count);
	tcase_add_test(tc, longest_key_fits);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(files_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
