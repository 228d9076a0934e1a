/*
 * The SFTP client's pure helpers (sftpc.h): pins, fingerprints, key files,
 * key generation. The network half is tested against a real sshd in
 * tests/integration/t_sftpc.sh.
 *
 * The fixed keys and fingerprints below were made and printed by OpenSSH's
 * ssh-keygen (-lf), apart from this code; the key files of the key_info
 * and keygen cases are made, and checked, by ssh-keygen in a temporary
 * directory at run time.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mllp-bridge/sftpc.h"

#define NELEMS(a) (sizeof(a) / sizeof((a)[0]))

#define ED_B64 "AAAAC3NzaC1lZDI1NTE5AAAAIG4uuYxjOMYBLU+5Kkwu+ibxrqUDS5n06xX4X8cv4RRZ"
#define ED_FPR "SHA256:MuuR35EAOzYpdlL+A8b1YjD5+X8CNIOG9BCtawKs2mA"
#define RSA_B64                                                                                    \
	"AAAAB3NzaC1yc2EAAAADAQABAAABgQDGOvLgys6Z9r+3j4wLU/"                                       \
	"cVzePmtRwTxGBYddgY5LnKRFC8G58mu637LYMgbroo"                                               \
	"DJWZCETqNqq2ClVzpncZ5oBm22juwzeGLkw+RCkfXB/"                                              \
	"58oVMIC3HKKNe2FLsj04zJI2S9k27FnOGJHYqRlKdSHpj2XcQ"                                        \
	"FtD6TlVE3c+PDUHkGB1IHns8/"                                                                \
	"oWb8dm75qJsb00l3H0ToiaB4WX44slfrgGY6PGLklJiwJFjZ0eXZnVh32YLxmXfafDy"                      \
	"4BNk3bIISBn9M6CI9NPNg2iTofEBIb9/"                                                         \
	"O9hHOp+ve6ZwWqVVhIgjod26LypY7ruT1uBW2zaJJqwyYjyUJQBv8yHR+9x5"                             \
	"m9SRa1nLM+CnGN9Yn4zufZD9jOk0JvYm4vdNYerDMnnM/GnWSn0bUyiJ7wFhA9wQrrRGy7cjV/"               \
	"SHNqczdbspUs3toWT0"                                                                       \
	"PiucoZDk/jII0aabPG8s4jvmnh/jAK0rsPxToSPWuOi9hS9m99+xaxh01Y3+4LapB52ulC5kQmU/XZwH0Hc="
#define RSA_FPR "SHA256:FZJSGfAIABv++L1TBmKHCv3gRzWyUkXreXgJsaKFV5M"
#define P256_B64                                                                                   \
	"AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBN5ZZA8Dbm0BS07fEEfL8SbaSeWJZhSmw6cU" \
	"xMv4"                                                                                     \
	"BAh//GoKyo8DNvC3Cg9v3UZhJfN5WpMWUTniTen02KXpAdY="
/* P256_B64 with its last character before '=' one more: the two bits past
 * the last byte are no longer zero. */
#define P256_BITS                                                                                  \
	"AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBN5ZZA8Dbm0BS07fEEfL8SbaSeWJZhSmw6cU" \
	"xMv4"                                                                                     \
	"BAh//GoKyo8DNvC3Cg9v3UZhJfN5WpMWUTniTen02KXpAdZ="
#define P256_FPR "SHA256:K4IPkZKTxT0vylkPUKH7g5QizloXoJsHaIQkFp2fyZU"
#define P521_B64                                                                                   \
	"AAAAE2VjZHNhLXNoYTItbmlzdHA1MjEAAAAIbmlzdHA1MjEAAACFBAGF+e/Bnt6krNVMfLI5cMF5ggPos7Y4+4/"  \
	"3tqhR"                                                                                    \
	"pjT5hS3wpvN+"                                                                             \
	"dtRb6nWtBcrrOgSWSkVwKrIV2jEqF4UegqHFtwDad85uCYs99fuMVTZ9tmiY4q3pFBoxQ1sL1NsSsIDj"         \
	"FayvFs/DllP1gJS+6UCTKisHG2OHXEvjcZ0NkAlDoEUENw=="
#define P521_FPR "SHA256:ZcQe6bxdXKWHbxVLTwL/Mon6unsT3EJLrOLUxyzQwd4"

/* An RSA 1024 host key: below SFTPC_HOST_RSA_MIN_BITS. */
#define RSA1024_B64                                                                                \
	"AAAAB3NzaC1yc2EAAAADAQABAAAAgQDMUPPlrlrmnU/YdGqsl60LV0B7nBJfLDO19utwUvSIseZpdnc/"         \
	"QJscNR697HYh"                                                                             \
	"tNXjRiDqmWZd1fugum1RRcCU6HRVxTF0hrtvLd7jP/o0KVQdvKhLOKVNMsrcGupXdZWrDoNCgHaiK3am/"        \
	"EJyvC9Z6ON8"                                                                              \
	"zuphzN542/q8XD9XPw=="

/* ---- sftpc_pin_check and sftpc_pin_fpr ---- */

static char overlong[SFTPC_PIN_MAX + 16];

static const struct {
	const char *name;
	const char *line; /* NULL: overlong[] */
	int rc;
	const char *why; /* a part of the reason; NULL for good pins */
	const char *fpr; /* good pins: as ssh-keygen -lf prints it */
} pins[] = {
    {"ed25519", "ssh-ed25519 " ED_B64, 0, NULL, ED_FPR},
    {"ed25519 with a comment", "ssh-ed25519 " ED_B64 " host-a@site", 0, NULL, ED_FPR},
    {"ed25519, tabs and CRLF", "\tssh-ed25519\t" ED_B64 "\r\n", 0, NULL, ED_FPR},
    {"rsa 3072", "ssh-rsa " RSA_B64 " fixture", 0, NULL, RSA_FPR},
    {"ecdsa p256", "ecdsa-sha2-nistp256 " P256_B64, 0, NULL, P256_FPR},
    {"ecdsa p521", "ecdsa-sha2-nistp521 " P521_B64, 0, NULL, P521_FPR},
    {"empty", "", -EINVAL, "empty", NULL},
    {"blanks only", "   ", -EINVAL, "type base64", NULL},
    {"type only", "ssh-ed25519", -EINVAL, "type base64", NULL},
    {"unknown type", "ssh-dss " ED_B64, -EINVAL, "unknown key type", NULL},
    {"rsa-sha2-512 is an algorithm, not a key type", "rsa-sha2-512 " RSA_B64, -EINVAL,
     "unknown key type", NULL},
    {"bad base64 character", "ssh-ed25519 AAAAC3Nza!1lZDI1NTE5", -EINVAL, "bad base64", NULL},
    {"base64 of a wrong length", "ssh-ed25519 AAAAC", -EINVAL, "bad base64", NULL},
    {"base64 with non-zero trailing bits", "ecdsa-sha2-nistp256 " P256_BITS, -EINVAL, "bad base64",
     NULL},
    {"type/blob mismatch: ssh-rsa line, ed25519 blob", "ssh-rsa " ED_B64, -EINVAL,
     "not of type ssh-rsa", NULL},
    {"type/blob mismatch: p256 line, p521 blob", "ecdsa-sha2-nistp256 " P521_B64, -EINVAL,
     "not of type", NULL},
    {"truncated blob", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG4uuYxjOMYBLU+5Kkwu+ibxrqUDS5n0",
     -EINVAL, "malformed", NULL},
    {"blob with trailing bytes", "ssh-ed25519 " ED_B64 "AAAA", -EINVAL, "malformed", NULL},
    {"RSA 1024 host key", "ssh-rsa " RSA1024_B64, -EINVAL, "1024 bits", NULL},
    {"overlong", NULL, -EINVAL, "longer than", NULL},
};

START_TEST(test_pin)
{
	const char *line = pins[_i].line ? pins[_i].line : overlong;
	char why[SFTPC_ERR_MAX] = "x", fpr[SFTPC_FPR_MAX] = "";
	int rc = sftpc_pin_check(line, why, sizeof(why));

	ck_assert_msg(rc == pins[_i].rc, "%s: rc %d, want %d (%s)", pins[_i].name, rc, pins[_i].rc,
		      why);
	if (pins[_i].why) {
		ck_assert_msg(strstr(why, pins[_i].why), "%s: why \"%s\" lacks \"%s\"",
			      pins[_i].name, why, pins[_i].why);
		/* The reason never repeats the key material. */
		ck_assert_msg(!strstr(why, "AAAA"), "%s: why \"%s\" quotes the key", pins[_i].name,
			      why);
		ck_assert_int_eq(sftpc_pin_fpr(line, fpr, sizeof(fpr)), -EINVAL);
		return;
	}
	ck_assert_str_eq(why, "");
	ck_assert_int_eq(sftpc_pin_fpr(line, fpr, sizeof(fpr)), 0);
	ck_assert_msg(strcmp(fpr, pins[_i].fpr) == 0, "%s: fpr %s, ssh-keygen says %s",
		      pins[_i].name, fpr, pins[_i].fpr);
}
END_TEST

START_TEST(test_pin_null_why)
{
	ck_assert_int_eq(sftpc_pin_check("ssh-ed25519 " ED_B64, NULL, 0), 0);
	ck_assert_int_eq(sftpc_pin_check("nonsense", NULL, 0), -EINVAL);
	ck_assert_int_eq(sftpc_pin_check(NULL, NULL, 0), -EINVAL);
}
END_TEST

/* ---- Key files, made by ssh-keygen ---- */

static char dir[] = "/tmp/test_sftpc.XXXXXX";

/* Runs a shell command; the suite fails when a fixture cannot be made. */
static void sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void sh(const char *fmt, ...)
{
	char cmd[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	if (system(cmd) != 0) {
		fprintf(stderr, "fixture command failed: %s\n", cmd);
		abort();
	}
}

/* The first line of a command's output, without its newline. */
static void out1(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void out1(char *buf, size_t len, const char *fmt, ...)
{
	char cmd[1024];
	va_list ap;
	FILE *f;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	f = popen(cmd, "r");
	ck_assert_ptr_nonnull(f);
	buf[0] = '\0';
	ck_assert_msg(fgets(buf, (int)len, f) != NULL, "no output from: %s", cmd);
	buf[strcspn(buf, "\n")] = '\0';
	ck_assert_int_eq(pclose(f), 0);
}

static const struct {
	const char *file;
	const char *keygen; /* ssh-keygen arguments; NULL: see setup */
	int rc;
	const char *why;
} keys[] = {
    {"ed25519", "-t ed25519", 0, NULL},
    {"rsa3072", "-t rsa -b 3072", 0, NULL},
    {"rsa3072pem", "-t rsa -b 3072 -m PEM", 0, NULL},
    {"ecdsa256", "-t ecdsa -b 256", 0, NULL},
    {"rsa2048", "-t rsa -b 2048", -ENOKEY, "2048 bits"},
    {"dsa", "-t dsa", -ENOKEY, "key"},
    {"ed25519enc", "-t ed25519 -N secret", -ENOKEY, "encrypted"},
    {"rsa3072enc", "-t rsa -b 3072 -N secret", -ENOKEY, "encrypted"},
    {"rsa3072pemenc", "-t rsa -b 3072 -m PEM -N secret", -ENOKEY, "encrypted"},
    {"garbage", NULL, -ENOKEY, "not a private key"},
    {"missing", NULL, -ENOENT, "No such file"},
};

static void keys_setup(void)
{
	char path[256];

	if (!mkdtemp(dir))
		abort();
	for (size_t i = 0; i < NELEMS(keys); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, keys[i].file);
		if (keys[i].keygen && !strstr(keys[i].keygen, "-N "))
			sh("ssh-keygen -q -N '' -C '' %s -f %s", keys[i].keygen, path);
		else if (keys[i].keygen)
			sh("ssh-keygen -q -C '' %s -f %s", keys[i].keygen, path);
	}
	sh("echo 'not a key' >%s/garbage", dir);
}

static void keys_teardown(void)
{
	sh("rm -rf -- '%s'", dir);
}

START_TEST(test_key_info)
{
	char path[256], pub[8192], fpr[SFTPC_FPR_MAX] = "", why[SFTPC_ERR_MAX] = "";
	char want[8192];
	int rc;

	snprintf(path, sizeof(path), "%s/%s", dir, keys[_i].file);
	rc = sftpc_key_info(path, pub, sizeof(pub), fpr, why, sizeof(why));
	ck_assert_msg(rc == keys[_i].rc, "%s: rc %d, want %d (%s)", keys[_i].file, rc, keys[_i].rc,
		      why);
	if (rc != 0) {
		ck_assert_msg(strstr(why, keys[_i].why), "%s: why \"%s\" lacks \"%s\"",
			      keys[_i].file, why, keys[_i].why);
		ck_assert_msg(strstr(why, path), "%s: why \"%s\" does not name the file",
			      keys[_i].file, why);
		return;
	}
	out1(want, sizeof(want), "cut -d' ' -f1,2 %s.pub", path);
	ck_assert_str_eq(pub, want);
	out1(want, sizeof(want), "ssh-keygen -lf %s.pub | cut -d' ' -f2", path);
	ck_assert_str_eq(fpr, want);
	/* The public line is a pin line too, with the same fingerprint. */
	ck_assert_int_eq(sftpc_pin_fpr(pub, want, sizeof(want)), 0);
	ck_assert_str_eq(want, fpr);
}
END_TEST

/* ---- sftpc_keygen ---- */

static const struct {
	const char *type;
	unsigned bits;
	int rc;
} gens[] = {
    {"ed25519", 0, 0},	    {"rsa", 3072, 0},	     {"rsa", 2048, -EINVAL},
    {"dsa", 1024, -EINVAL}, {"ecdsa", 256, -EINVAL},
};

START_TEST(test_keygen)
{
	char path[256], copy[300], pub[8192], fpr[SFTPC_FPR_MAX], want[8192], before[8192];
	struct stat st;
	mode_t old = umask(077); /* the mode must not depend on the umask */
	int rc;

	snprintf(path, sizeof(path), "%s/gen-%s-%u", dir, gens[_i].type, gens[_i].bits);
	rc = sftpc_keygen(path, gens[_i].type, gens[_i].bits, pub, sizeof(pub), fpr);
	umask(old);
	ck_assert_msg(rc == gens[_i].rc, "%s %u: rc %d, want %d", gens[_i].type, gens[_i].bits, rc,
		      gens[_i].rc);
	if (rc != 0) {
		ck_assert_int_eq(access(path, F_OK), -1);
		return;
	}
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_msg((st.st_mode & 07777) == 0640, "mode %o", (unsigned)(st.st_mode & 07777));
	/* ssh-keygen reads it (it wants 0600 for that) and agrees on both. */
	snprintf(copy, sizeof(copy), "%s.0600", path);
	sh("cp %s %s && chmod 0600 %s", path, copy, copy);
	out1(want, sizeof(want), "ssh-keygen -y -f %s | cut -d' ' -f1,2", copy);
	ck_assert_str_eq(pub, want);
	out1(want, sizeof(want), "ssh-keygen -lf %s | cut -d' ' -f2", copy);
	ck_assert_str_eq(fpr, want);
	out1(want, sizeof(want), "head -n 1 %s", path);
	ck_assert_str_eq(want, "-----BEGIN OPENSSH PRIVATE KEY-----");
	/* Exclusive: a second call leaves the first key alone. */
	out1(before, sizeof(before), "sha256sum %s", path);
	ck_assert_int_eq(sftpc_keygen(path, gens[_i].type, gens[_i].bits, pub, sizeof(pub), fpr),
			 -EEXIST);
	out1(want, sizeof(want), "sha256sum %s", path);
	ck_assert_str_eq(want, before);
}
END_TEST

START_TEST(test_keygen_no_dir)
{
	char path[256], pub[512], fpr[SFTPC_FPR_MAX];

	snprintf(path, sizeof(path), "%s/no/such/dir/key", dir);
	ck_assert_int_eq(sftpc_keygen(path, "ed25519", 0, pub, sizeof(pub), fpr), -ENOENT);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("sftpc");
	TCase *tc = tcase_create("pins");

	memcpy(overlong, "ssh-ed25519 ", 12);
	memset(overlong + 12, 'A', sizeof(overlong) - 13);
	tcase_add_loop_test(tc, test_pin, 0, NELEMS(pins));
	tcase_add_test(tc, test_pin_null_why);
	suite_add_tcase(s, tc);
	tc = tcase_create("keys");
	tcase_set_timeout(tc, 60);
	tcase_add_unchecked_fixture(tc, keys_setup, keys_teardown);
	tcase_add_loop_test(tc, test_key_info, 0, NELEMS(keys));
	tcase_add_loop_test(tc, test_keygen, 0, NELEMS(gens));
	tcase_add_test(tc, test_keygen_no_dir);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
