/*
 * `appliancectl sftp ...` in the supervisor (sftpkeys.h): key listing,
 * rotation and retirement on real key files in a temporary directory,
 * with a hand-built struct cfg (one pull channel, one push channel).
 * The current keys are made by ssh-keygen, not by the code under test.
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sys/wait.h>

#include <event2/event.h>

#include "appliance/sftpkeys.h"
#include "mllp-bridge/config.h"
#include "mllp-bridge/sftpc.h"

#define OUT_MAX 8192

static char dir[64], lab_key[128], lis_key[128], next[160], out[OUT_MAX];
static struct cfg cfg;
static struct cfg_integration integ;
static struct cfg_destination dest;
static struct cfg_sftp pull, push;

static void keygen(const char *type, const char *path)
{
	char cmd[512];

	snprintf(cmd, sizeof cmd, "ssh-keygen -q -N '' -t %s -f %s >/dev/null 2>&1", type, path);
	ck_assert_msg(system(cmd) == 0, "ssh-keygen could not make %s", path);
}

static void setup(void)
{
	snprintf(dir, sizeof dir, "/tmp/test-sftpkeys.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(lab_key, sizeof lab_key, "%s/lab.key", dir);
	snprintf(lis_key, sizeof lis_key, "%s/lis.key", dir);
	snprintf(next, sizeof next, "%s.next", lab_key);
	keygen("ed25519", lab_key);
	keygen("rsa -b 3072", lis_key);
	pull = (struct cfg_sftp){.server_text = "198.51.100.2", .user = "edge", .key = lab_key};
	push = (struct cfg_sftp){.server_text = "198.51.100.3:2222", .user = "lis", .key = lis_key};
	integ = (struct cfg_integration){.name = "lab", .sftp = &pull};
	dest = (struct cfg_destination){.name = "lis-files", .sftp = &push};
	cfg = (struct cfg){
	    .integrations = &integ, .nintegrations = 1, .destinations = &dest, .ndestinations = 1};
}

static void teardown(void)
{
	char cmd[128];

	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	ck_assert_int_eq(system(cmd), 0);
}

static int answers, answer_ok, ticks;

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	ticks++;
}

static void on_done(void *arg, int ok, const char *text)
{
	(void)arg;
	answers++;
	answer_ok = ok;
	snprintf(out, sizeof out, "%s", text);
}

/* Runs "sftp WORDS..." on a loop until its one answer came, and returns
 * its success flag; the text is in out. The key generator is reaped here,
 * as the supervisor's SIGCHLD handler does. */
static int run(const char *w1, const char *w2, const char *w3)
{
	char *argv[5] = {"sftp", (char *)w1, (char *)w2, (char *)w3, NULL};
	int argc = 1 + (w1 != NULL) + (w2 != NULL) + (w3 != NULL);
	struct event_base *base = event_base_new();
	struct timeval tick = {0, 20000};
	struct event *t;

	ck_assert_ptr_nonnull(base);
	t = event_new(base, -1, EV_PERSIST, on_tick, NULL);
	ck_assert_int_eq(event_add(t, &tick), 0);
	answers = ticks = 0;
	sftpkeys_command(base, &cfg, "nobody", argc, argv, on_done, NULL);
	while (answers == 0)
		ck_assert_int_ge(event_base_loop(base, EVLOOP_ONCE), 0);
	event_free(t);
	event_base_free(base);
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
	ck_assert_int_eq(answers, 1);
	return answer_ok;
}

static void fingerprint(const char *path, char fpr[SFTPC_FPR_MAX])
{
	char pub[SFTPC_PIN_MAX], why[256];

	ck_assert_int_eq(sftpc_key_info(path, pub, sizeof pub, fpr, why, sizeof why), 0);
}

START_TEST(keys_lists_every_channel)
{
	char fpr[SFTPC_FPR_MAX];

	ck_assert_int_eq(run("keys", NULL, NULL), 1);
	ck_assert_ptr_nonnull(strstr(out, "lab (pull, edge@198.51.100.2):"));
	ck_assert_ptr_nonnull(strstr(out, "lis-files (push, lis@198.51.100.3:2222):"));
	fingerprint(lab_key, fpr);
	ck_assert_msg(strstr(out, fpr), "the current key's fingerprint is listed: %s", out);
	ck_assert_ptr_nonnull(strstr(out, "ssh-rsa"));
	ck_assert_ptr_null(strstr(out, "next"));
}
END_TEST

START_TEST(rotate_then_retire)
{
	char old[SFTPC_FPR_MAX], fresh[SFTPC_FPR_MAX], now[SFTPC_FPR_MAX];
	struct stat sb;

	fingerprint(lab_key, old);
	ck_assert_int_eq(run("rotate-key", "lab", NULL), 1);
	ck_assert_int_eq(stat(next, &sb), 0);
	ck_assert_uint_eq(sb.st_mode & 0777, geteuid() == 0 ? 0640 : sb.st_mode & 0777);
	ck_assert_uint_eq(sb.st_mode & 0007, 0);
	fingerprint(next, fresh);
	ck_assert_str_ne(old, fresh);
	/* the line for authorized_keys, and the same type as the current key */
	ck_assert_msg(strstr(out, "\nssh-ed25519 AAAA"), "public line printed: %s", out);
	ck_assert_ptr_nonnull(strstr(out, fresh));
	ck_assert_int_eq(run("keys", NULL, NULL), 1);
	ck_assert_ptr_nonnull(strstr(out, "next"));
	ck_assert_ptr_nonnull(strstr(out, fresh));
	/* a second rotation does not overwrite the first one's key */
	ck_assert_int_eq(run("rotate-key", "lab", NULL), 0);
	ck_assert_ptr_nonnull(strstr(out, "a rotation is under way"));
	fingerprint(next, now);
	ck_assert_str_eq(now, fresh);
	ck_assert_int_eq(run("retire-key", "lab", NULL), 1);
	fingerprint(lab_key, now);
	ck_assert_str_eq(now, fresh);
	ck_assert_int_eq(access(next, F_OK), -1);
	ck_assert_ptr_nonnull(strstr(out, old));
	ck_assert_int_eq(run("retire-key", "lab", NULL), 0);
	ck_assert_ptr_nonnull(strstr(out, "nothing to retire"));
}
END_TEST

/* An RSA channel rotates to RSA (4096 bits), unless told otherwise. */
START_TEST(rotate_keeps_the_type)
{
	char path[200];

	ck_assert_int_eq(run("rotate-key", "lis-files", NULL), 1);
	ck_assert_msg(strstr(out, "\nssh-rsa AAAA"), "an RSA key: %s", out);
	/* the seconds of RSA generation ran in the child: the loop kept ticking */
	ck_assert_int_ge(ticks, 10);
	/* 4096 bits: the public line's base64 is about 716 characters (3072: 544) */
	ck_assert_uint_gt(strlen(strstr(out, "\nssh-rsa ")), 700);
	snprintf(path, sizeof path, "%s.next", lis_key);
	ck_assert_int_eq(unlink(path), 0);
	ck_assert_int_eq(run("rotate-key", "lis-files", "ed25519"), 1);
	ck_assert_ptr_nonnull(strstr(out, "\nssh-ed25519 AAAA"));
}
END_TEST

START_TEST(refusals)
{
	ck_assert_int_eq(run("rotate-key", "nope", NULL), 0);
	ck_assert_ptr_nonnull(strstr(out, "no SFTP channel named nope"));
	ck_assert_int_eq(run("rotate-key", "lab", "dsa"), 0);
	ck_assert_ptr_nonnull(strstr(out, "ed25519 or rsa"));
	ck_assert_int_eq(access(next, F_OK), -1);
	ck_assert_int_eq(run("frobnicate", NULL, NULL), 0);
	ck_assert_ptr_nonnull(strstr(out, "usage: sftp keys"));
	ck_assert_int_eq(run(NULL, NULL, NULL), 0);
}
END_TEST

static Suite *sftpkeys_suite(void)
{
	Suite *s = suite_create("appliance_sftpkeys");
	TCase *tc = tcase_create("keys");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30); /* RSA 4096 generation */
	tcase_add_test(tc, keys_lists_every_channel);
	tcase_add_test(tc, rotate_then_retire);
	tcase_add_test(tc, rotate_keeps_the_type);
	tcase_add_test(tc, refusals);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(sftpkeys_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
