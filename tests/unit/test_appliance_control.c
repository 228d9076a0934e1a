/*
 * The control socket on a real AF_UNIX socket in a mkdtemp directory, served
 * by a libevent loop in the test process. The client side is a non-blocking
 * socket on the same loop (connect() to a listening unix socket completes
 * before accept()), or the real appliancectl binary run as a child.
 * A peer that is not allowed is not tested: faking SO_PEERCRED needs a
 * second user, and the test runs as one.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>

#include "appliance/control.h"

#define LOOP_LIMIT_S   3	  /* the longest a loop waits for a reply */
#define REPLY_CAP      (3u << 20) /* more than the 1 MiB body and its header */
#define ASYNC_DELAY_US 50000

enum mode {
	MODE_ECHO, /* reply at once: the words joined with '|' */
	MODE_HOLD, /* keep the request in held; the test replies */
	MODE_BIG   /* reply with big_len bytes of 'b' */
};

static char dir[64];
static char sock_path[96]; /* fits sun_path */
static struct event_base *base;
static struct control *ctl;
static enum mode mode;
static struct control_req *held;
static int calls;
static size_t big_len;

static void on_cmd(void *arg, struct control_req *req, int argc, char **argv)
{
	char body[CONTROL_LINE_MAX + 8] = "";
	char *big;
	int i;

	(void)arg;
	calls++;
	ck_assert_ptr_null(argv[argc]);
	if (mode == MODE_HOLD) {
		held = req;
		return;
	}
	if (mode == MODE_BIG) {
		big = malloc(big_len + 1);
		ck_assert_ptr_nonnull(big);
		memset(big, 'b', big_len);
		big[big_len] = '\0';
		control_reply(req, 1, big);
		free(big);
		return;
	}
	for (i = 0; i < argc; i++) {
		strcat(body, i ? "|" : "");
		strcat(body, argv[i]);
	}
	strcat(body, "\n");
	control_reply(req, 1, body);
}

static void setup(void)
{
	signal(SIGPIPE, SIG_IGN);
	snprintf(dir, sizeof(dir), "/tmp/test_control.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	/* One level that does not exist: control_new creates it. */
	snprintf(sock_path, sizeof(sock_path), "%s/run/control.sock", dir);
	base = event_base_new();
	ck_assert_ptr_nonnull(base);
	mode = MODE_ECHO;
	held = NULL;
	calls = 0;
	ck_assert_int_eq(control_new(base, sock_path, NULL, on_cmd, NULL, &ctl), 0);
}

static void teardown(void)
{
	char run[160];

	control_free(ctl);
	ctl = NULL;
	event_base_free(base);
	snprintf(run, sizeof(run), "%s/run", dir);
	rmdir(run);
	rmdir(dir);
}

/* ---- a client on the loop ---- */

struct client {
	int fd;
	struct event *ev;
	char *buf;
	size_t len;
	int closed;
};

static void client_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct client *cl = arg;
	ssize_t n;

	(void)what;
	n = recv(fd, cl->buf + cl->len, REPLY_CAP - cl->len, 0);
	if (n > 0) {
		cl->len += (size_t)n;
		return;
	}
	if (n < 0 && errno == EAGAIN)
		return;
	cl->closed = 1;
	event_del(cl->ev);
	event_base_loopbreak(base);
}

/* Connects and sends len bytes of req; the reply collects on the loop. */
static void client_open(struct client *cl, const char *req, size_t len)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};

	memset(cl, 0, sizeof(*cl));
	cl->buf = calloc(1, REPLY_CAP + 1);
	ck_assert_ptr_nonnull(cl->buf);
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", sock_path);
	cl->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
	ck_assert_int_ge(cl->fd, 0);
	ck_assert_int_eq(connect(cl->fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	if (len)
		ck_assert_int_eq(send(cl->fd, req, len, 0), (ssize_t)len);
	cl->ev = event_new(base, cl->fd, EV_READ | EV_PERSIST, client_read_cb, cl);
	ck_assert_ptr_nonnull(cl->ev);
	event_add(cl->ev, NULL);
}

static void client_close(struct client *cl)
{
	if (cl->ev)
		event_free(cl->ev);
	if (cl->fd >= 0)
		close(cl->fd);
	free(cl->buf);
	cl->ev = NULL;
	cl->fd = -1;
	cl->buf = NULL;
}

/* Runs the loop until the server closed the client, at most LOOP_LIMIT_S. */
static void client_wait(struct client *cl)
{
	struct timeval limit = {LOOP_LIMIT_S, 0};

	event_base_loopexit(base, &limit);
	event_base_dispatch(base);
	ck_assert_msg(cl->closed, "no complete reply within %d s", LOOP_LIMIT_S);
	cl->buf[cl->len] = '\0';
}

/* Runs the loop for us microseconds. */
static void loop_for(long us)
{
	struct timeval tv = {us / 1000000, us % 1000000};

	event_base_loopexit(base, &tv);
	event_base_dispatch(base);
}

static void roundtrip(const char *req, size_t len, const char *want)
{
	struct client cl;

	client_open(&cl, req, len);
	client_wait(&cl);
	ck_assert_str_eq(cl.buf, want);
	client_close(&cl);
}

/* ---- requests: a table ---- */

struct req_case {
	const char *name;
	const char *text; /* the request; NULL: fill_len bytes of 'x' ... */
	size_t text_len;  /* 0: strlen(text) */
	size_t fill_len;
	const char *fill_tail; /* ... then this */
	const char *want;      /* NULL: "OK\n" + fill_len 'x' + "\n" */
};

static const struct req_case req_cases[] = {
    {.name = "one word", .text = "status\n", .want = "OK\nstatus\n"},
    {.name = "two words", .text = "status --json\n", .want = "OK\nstatus|--json\n"},
    {.name = "extra spaces",
     .text = "  rekey-check   hospital-a  \n",
     .want = "OK\nrekey-check|hospital-a\n"},
    {.name = "CRLF", .text = "reload\r\n", .want = "OK\nreload\n"},
    {.name = "empty line", .text = "\n", .want = "ERR\nempty request\n"},
    {.name = "only spaces", .text = "   \n", .want = "ERR\nempty request\n"},
    {.name = "16 words",
     .text = "1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n",
     .want = "OK\n1|2|3|4|5|6|7|8|9|10|11|12|13|14|15|16\n"},
    {.name = "17 words",
     .text = "1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17\n",
     .want = "ERR\ntoo many words in the request\n"},
    {.name = "tab", .text = "status\t--json\n", .want = "ERR\ncontrol characters in the request\n"},
    {.name = "NUL",
     .text = "sta\0tus\n",
     .text_len = 8,
     .want = "ERR\ncontrol characters in the request\n"},
    {.name = "1024 bytes with the newline", .fill_len = CONTROL_LINE_MAX - 1, .fill_tail = "\n"},
    {.name = "1025 bytes with the newline",
     .fill_len = CONTROL_LINE_MAX,
     .fill_tail = "\n",
     .want = "ERR\nrequest line too long\n"},
    {.name = "4000 bytes, no newline",
     .fill_len = 4000,
     .fill_tail = "",
     .want = "ERR\nrequest line too long\n"},
};

START_TEST(test_request)
{
	const struct req_case *t = &req_cases[_i];
	char *req, *want;
	size_t len;

	if (t->text) {
		len = t->text_len ? t->text_len : strlen(t->text);
		roundtrip(t->text, len, t->want);
		return;
	}
	len = t->fill_len + strlen(t->fill_tail);
	req = malloc(len + 1);
	want = malloc(t->fill_len + 8);
	ck_assert_ptr_nonnull(req);
	ck_assert_ptr_nonnull(want);
	memset(req, 'x', t->fill_len);
	strcpy(req + t->fill_len, t->fill_tail);
	sprintf(want, "OK\n%.*s\n", (int)t->fill_len, req);
	roundtrip(req, len, t->want ? t->want : want);
	free(req);
	free(want);
}
END_TEST

/* ---- replies later, clients that go, servers that stop ---- */

static void reply_later_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	ck_assert_ptr_nonnull(held);
	control_reply(held, 0, "later\n");
	held = NULL;
}

START_TEST(test_async_reply)
{
	struct timeval later = {0, ASYNC_DELAY_US};
	struct client cl;

	mode = MODE_HOLD;
	event_base_once(base, -1, EV_TIMEOUT, reply_later_cb, NULL, &later);
	client_open(&cl, "status\n", 7);
	client_wait(&cl);
	ck_assert_int_eq(calls, 1);
	ck_assert_ptr_null(held);
	ck_assert_str_eq(cl.buf, "ERR\nlater\n");
	client_close(&cl);
}
END_TEST

START_TEST(test_client_gone_before_reply)
{
	struct client cl;

	mode = MODE_HOLD;
	client_open(&cl, "status\n", 7);
	loop_for(ASYNC_DELAY_US);
	ck_assert_ptr_nonnull(held);
	client_close(&cl);
	loop_for(ASYNC_DELAY_US);
	/* The request outlived its client: replying just frees it (ASan). */
	control_reply(held, 1, "nobody reads this\n");
	held = NULL;
	loop_for(ASYNC_DELAY_US);
	/* And the server still serves. */
	mode = MODE_ECHO;
	roundtrip("reload\n", 7, "OK\nreload\n");
}
END_TEST

START_TEST(test_free_with_pending)
{
	struct client cl;

	mode = MODE_HOLD;
	client_open(&cl, "rekey-check a\n", 14);
	loop_for(ASYNC_DELAY_US);
	ck_assert_ptr_nonnull(held);
	control_free(ctl);
	ctl = NULL;
	/* The socket file is gone with the server. */
	ck_assert_int_eq(access(sock_path, F_OK), -1);
	client_wait(&cl);
	ck_assert_str_eq(cl.buf, "ERR\nsupervisor stopping\n");
	client_close(&cl);
	/* The caller's reply comes after the server is gone: just freed. */
	control_reply(held, 1, "too late\n");
	held = NULL;
}
END_TEST

START_TEST(test_big_body)
{
	struct client cl;
	size_t i;

	mode = MODE_BIG;
	big_len = CONTROL_BODY_MAX;
	client_open(&cl, "status --json\n", 14);
	client_wait(&cl);
	ck_assert_uint_eq(cl.len, 3 + CONTROL_BODY_MAX);
	ck_assert(memcmp(cl.buf, "OK\n", 3) == 0);
	for (i = 3; i < cl.len; i++)
		ck_assert_int_eq(cl.buf[i], 'b');
	client_close(&cl);

	/* Beyond the limit: cut, and says so. */
	big_len = CONTROL_BODY_MAX + 10;
	client_open(&cl, "status\n", 7);
	client_wait(&cl);
	ck_assert_uint_gt(cl.len, 3 + CONTROL_BODY_MAX);
	ck_assert_ptr_nonnull(strstr(cl.buf + 3 + CONTROL_BODY_MAX, "(cut at 1048576 bytes)"));
	client_close(&cl);
}
END_TEST

START_TEST(test_silent_client_times_out)
{
	struct timeval limit = {CONTROL_READ_TIMEOUT_S + 2, 0};
	struct client cl;

	client_open(&cl, "stat", 4);
	event_base_loopexit(base, &limit);
	event_base_dispatch(base);
	ck_assert_msg(cl.closed, "a client that never ends its line is closed after %d s",
		      CONTROL_READ_TIMEOUT_S);
	ck_assert_uint_eq(cl.len, 0);
	ck_assert_int_eq(calls, 0);
	client_close(&cl);
}
END_TEST

/* ---- the socket file ---- */

START_TEST(test_second_server_refused)
{
	struct control *other = NULL;

	ck_assert_int_eq(control_new(base, sock_path, NULL, on_cmd, NULL, &other), -EADDRINUSE);
	ck_assert_ptr_null(other);
	/* The first one still serves. */
	roundtrip("status\n", 7, "OK\nstatus\n");
}
END_TEST

START_TEST(test_stale_socket_replaced)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	int fd;

	control_free(ctl);
	ctl = NULL;
	/* A socket file with nobody listening: what a killed server leaves. */
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", sock_path);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	close(fd);
	ck_assert_int_eq(access(sock_path, F_OK), 0);
	ck_assert_int_eq(control_new(base, sock_path, NULL, on_cmd, NULL, &ctl), 0);
	roundtrip("status\n", 7, "OK\nstatus\n");
}
END_TEST

START_TEST(test_not_a_socket_refused)
{
	char file[160];
	struct control *other = NULL;
	int fd;

	snprintf(file, sizeof(file), "%s/file", dir);
	fd = open(file, O_CREAT | O_WRONLY, 0600);
	ck_assert_int_ge(fd, 0);
	close(fd);
	ck_assert_int_eq(control_new(base, file, NULL, on_cmd, NULL, &other), -EEXIST);
	ck_assert_int_eq(access(file, F_OK), 0);
	unlink(file);
}
END_TEST

START_TEST(test_modes)
{
	char path[160];
	struct control *other = NULL;
	struct stat st;

	ck_assert_int_eq(stat(sock_path, &st), 0);
	ck_assert_int_eq(st.st_mode & 0777, 0600);
	snprintf(path, sizeof(path), "%s/group.sock", dir);
	/* "root" exists everywhere; gid 0. */
	ck_assert_int_eq(control_new(base, path, "root", on_cmd, NULL, &other), 0);
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_int_eq(st.st_mode & 0777, 0660);
	ck_assert_int_eq(st.st_gid, 0);
	control_free(other);
	ck_assert_int_eq(control_new(base, path, "no-such-group-here", on_cmd, NULL, &other),
			 -ENOENT);
	ck_assert_ptr_null(other);
	ck_assert_int_eq(access(path, F_OK), -1);
}
END_TEST

/* ---- appliancectl, the real binary ---- */

struct ctl_run {
	pid_t pid;
	int done;
	int rc;
	char out[4096];
	char err[4096];
};

static void read_all(int fd, char *buf, size_t cap)
{
	size_t len = 0;
	ssize_t n;

	while (len + 1 < cap && (n = read(fd, buf + len, cap - 1 - len)) > 0)
		len += (size_t)n;
	buf[len] = '\0';
	close(fd);
}

static void reap_cb(evutil_socket_t fd, short what, void *arg)
{
	struct ctl_run *r = arg;
	int ws;

	(void)fd;
	(void)what;
	if (waitpid(r->pid, &ws, WNOHANG) != r->pid)
		return;
	r->done = 1;
	r->rc = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
	event_base_loopbreak(base);
}

/* Runs appliancectl with args while the loop serves; its exit code and
 * output in *r. */
static void run_ctl(struct ctl_run *r, char *const args[])
{
	struct timeval poll_tv = {0, 10000}, limit = {LOOP_LIMIT_S, 0};
	char self[PATH_MAX], bin[PATH_MAX + 32];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	int out[2], err[2];
	struct event *ev;
	pid_t pid;

	ck_assert_int_gt(n, 0);
	self[n] = '\0';
	/* build/tests/test_x -> build/bin/appliancectl */
	snprintf(bin, sizeof(bin), "%s/../bin/appliancectl", dirname(self));
	ck_assert_msg(access(bin, X_OK) == 0, "%s not built", bin);
	ck_assert_int_eq(pipe(out), 0);
	ck_assert_int_eq(pipe(err), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		dup2(out[1], 1);
		dup2(err[1], 2);
		execv(bin, args);
		_exit(126);
	}
	close(out[1]);
	close(err[1]);
	r->pid = pid;
	r->done = 0;
	ev = event_new(base, -1, EV_PERSIST, reap_cb, r);
	event_add(ev, &poll_tv);
	event_base_loopexit(base, &limit);
	event_base_dispatch(base);
	event_free(ev);
	ck_assert_msg(r->done, "appliancectl did not finish within %d s", LOOP_LIMIT_S);
	read_all(out[0], r->out, sizeof(r->out));
	read_all(err[0], r->err, sizeof(r->err));
}

START_TEST(test_appliancectl)
{
	char bad_path[160];
	struct ctl_run r;

	snprintf(bad_path, sizeof(bad_path), "%s/none.sock", dir);
	run_ctl(&r, (char *const[]){"appliancectl", "-s", sock_path, "status", "--json", NULL});
	ck_assert_int_eq(r.rc, 0);
	ck_assert_str_eq(r.out, "status|--json\n");
	ck_assert_str_eq(r.err, "");

	run_ctl(&r, (char *const[]){"appliancectl",
				    "-s",
				    sock_path,
				    "a",
				    "b",
				    "c",
				    "d",
				    "e",
				    "f",
				    "g",
				    "h",
				    "i",
				    "j",
				    "k",
				    "l",
				    "m",
				    "n",
				    "o",
				    "p",
				    NULL});
	ck_assert_int_eq(r.rc, 0);

	mode = MODE_HOLD;
	event_base_once(base, -1, EV_TIMEOUT, reply_later_cb, NULL,
			&(struct timeval){0, ASYNC_DELAY_US});
	run_ctl(&r, (char *const[]){"appliancectl", "-s", sock_path, "rekey-check", "x", NULL});
	ck_assert_int_eq(r.rc, 1);
	ck_assert_str_eq(r.out, "");
	ck_assert_str_eq(r.err, "later\n");

	run_ctl(&r, (char *const[]){"appliancectl", "-s", bad_path, "status", NULL});
	ck_assert_int_eq(r.rc, 3);
	ck_assert_ptr_nonnull(strstr(r.err, "cannot connect"));
	ck_assert_ptr_nonnull(strstr(r.err, bad_path));

	run_ctl(&r, (char *const[]){"appliancectl", "-h", NULL});
	ck_assert_int_eq(r.rc, 0);
	ck_assert_ptr_nonnull(strstr(r.out, "status [--json]"));
	ck_assert_ptr_nonnull(strstr(r.out, "rekey-check TUNNEL"));
	ck_assert_ptr_nonnull(strstr(r.out, "reload"));

	run_ctl(&r, (char *const[]){"appliancectl", "-s", sock_path, NULL});
	ck_assert_int_eq(r.rc, 2);
	run_ctl(&r, (char *const[]){"appliancectl", "-s", sock_path, "a b", NULL});
	ck_assert_int_eq(r.rc, 2);
	run_ctl(&r, (char *const[]){"appliancectl", "-x", NULL});
	ck_assert_int_eq(r.rc, 2);
}
END_TEST

/* The environment names the socket when -s does not. */
START_TEST(test_appliancectl_env)
{
	struct ctl_run r;

	ck_assert_int_eq(setenv("APPLIANCE_CONTROL", sock_path, 1), 0);
	run_ctl(&r, (char *const[]){"appliancectl", "reload", NULL});
	ck_assert_int_eq(r.rc, 0);
	ck_assert_str_eq(r.out, "reload\n");
}
END_TEST

static Suite *control_suite(void)
{
	Suite *s = suite_create("appliance_control");
	TCase *tc = tcase_create("control");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, CONTROL_READ_TIMEOUT_S + 5);
	tcase_add_loop_test(tc, test_request, 0, (int)(sizeof(req_cases) / sizeof(req_cases[0])));
	tcase_add_test(tc, test_async_reply);
	tcase_add_test(tc, test_client_gone_before_reply);
	tcase_add_test(tc, test_free_with_pending);
	tcase_add_test(tc, test_big_body);
	tcase_add_test(tc, test_silent_client_times_out);
	tcase_add_test(tc, test_second_server_refused);
	tcase_add_test(tc, test_stale_socket_replaced);
	tcase_add_test(tc, test_not_a_socket_refused);
	tcase_add_test(tc, test_modes);
	tcase_add_test(tc, test_appliancectl);
	tcase_add_test(tc, test_appliancectl_env);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(control_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
