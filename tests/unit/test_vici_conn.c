/*
 * The vici connection against a fake charon: each test forks a server that
 * speaks the wire format (with the codec under test) on a unix socket in a
 * mkdtemp directory and plays one scenario; it exits non-zero on the first
 * packet it did not expect, and the test reaps it by PID and checks that.
 * The client side runs a small poll() loop over fd/want/process/tick.
 */
#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "vici-client/vici.h"

#define SERVERS_MAX   4
#define SERVER_ALARM  10   /* seconds a fake server may live */
#define LOOP_LIMIT_MS 5000 /* the longest any client loop waits */

static char sockdir[64];
static char sockpath[128];
static char uri[160];
static pid_t servers[SERVERS_MAX];
static int nservers;

/* ---- Fake server (child side: no Check calls, _exit on failure) ---- */

#define SRV_CHECK(x)                                                                               \
	do {                                                                                       \
		if (!(x))                                                                          \
			srv_fail(__LINE__, #x);                                                    \
	} while (0)

__attribute__((noreturn)) static void srv_fail(int line, const char *what)
{
	fprintf(stderr, "fake server: line %d: %s\n", line, what);
	_exit(2);
}

static void srv_write(int fd, const uint8_t *buf, size_t len)
{
	while (len) {
		ssize_t n = write(fd, buf, len);

		SRV_CHECK(n > 0);
		buf += n;
		len -= (size_t)n;
	}
}

static void srv_send(int fd, enum vici_packet_type type, const char *name, const uint8_t *msg,
		     size_t len)
{
	uint8_t *seg;
	size_t seg_len;

	SRV_CHECK(vici_packet_encode(type, name, msg, len, &seg, &seg_len) == 0);
	srv_write(fd, seg, seg_len);
	free(seg);
}

/* Sends a packet whose message is k=v (and k2=v2 when k2 is not NULL). */
static void srv_send_kv(int fd, enum vici_packet_type type, const char *name, const char *k,
			const char *v, const char *k2, const char *v2)
{
	struct vici_builder *b = vici_builder_new();
	uint8_t *msg;
	size_t len;

	vici_builder_key_str(b, k, v);
	if (k2)
		vici_builder_key_str(b, k2, v2);
	SRV_CHECK(vici_builder_finish(b, &msg, &len) == 0);
	vici_builder_free(b);
	srv_send(fd, type, name, msg, len);
	free(msg);
}

static int srv_read_all(int fd, uint8_t *buf, size_t len)
{
	while (len) {
		ssize_t n = read(fd, buf, len);

		if (n <= 0)
			return -1;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Reads one packet of the expected type and name; returns its message parsed. */
static struct vici_tree *srv_expect(int fd, enum vici_packet_type type, const char *name)
{
	uint8_t hdr[VICI_LEN_SIZE], *seg;
	size_t len;
	struct vici_packet p;
	struct vici_tree *t = NULL;

	SRV_CHECK(srv_read_all(fd, hdr, sizeof(hdr)) == 0);
	len = (size_t)hdr[0] << 24 | (size_t)hdr[1] << 16 | (size_t)hdr[2] << 8 | hdr[3];
	SRV_CHECK(len <= VICI_SEGMENT_MAX);
	seg = malloc(VICI_LEN_SIZE + len);
	SRV_CHECK(seg != NULL);
	memcpy(seg, hdr, sizeof(hdr));
	SRV_CHECK(srv_read_all(fd, seg + VICI_LEN_SIZE, len) == 0);
	SRV_CHECK(vici_packet_decode(seg, VICI_LEN_SIZE + len, &p) == 0);
	SRV_CHECK(p.type == type);
	SRV_CHECK(!strcmp(p.name, name ? name : ""));
	if (p.msg)
		SRV_CHECK(vici_tree_parse(p.msg, p.msg_len, &t) == 0);
	free(seg);
	return t;
}

static void srv_expect_only(int fd, enum vici_packet_type type, const char *name)
{
	vici_tree_free(srv_expect(fd, type, name));
}

/* Waits for the client to hang up, and insists it sends nothing more. */
static void srv_expect_eof(int fd)
{
	uint8_t b;

	SRV_CHECK(read(fd, &b, 1) == 0);
	close(fd);
}

static int srv_accept(int lfd)
{
	int fd = accept(lfd, NULL, NULL);

	SRV_CHECK(fd >= 0);
	return fd;
}

typedef void (*scenario_fn)(int lfd);

static int listen_on_path(void)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	int lfd = socket(AF_UNIX, SOCK_STREAM, 0);

	ck_assert_int_ge(lfd, 0);
	unlink(sockpath);
	memcpy(sun.sun_path, sockpath, strlen(sockpath) + 1);
	ck_assert_int_eq(bind(lfd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	ck_assert_int_eq(listen(lfd, 4), 0);
	return lfd;
}

/* Listens in the parent (no race with the client), plays the scenario in a child. */
static pid_t server_start(scenario_fn scenario)
{
	int lfd = listen_on_path();
	pid_t pid;

	ck_assert_int_lt(nservers, SERVERS_MAX);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		alarm(SERVER_ALARM);
		scenario(lfd);
		_exit(0);
	}
	close(lfd);
	servers[nservers++] = pid;
	return pid;
}

/* Reaps the server by PID and checks that it saw exactly its scenario. */
static void server_reap(pid_t pid)
{
	int status;

	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	for (int i = 0; i < nservers; i++)
		if (servers[i] == pid)
			servers[i] = 0;
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "fake server status %d",
		      status);
}

/* Once per test case, in the runner's process: survives a failed test. */
static void dir_setup(void)
{
	strcpy(sockdir, "/tmp/vici-conn-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(sockdir));
	snprintf(sockpath, sizeof(sockpath), "%s/charon.vici", sockdir);
	snprintf(uri, sizeof(uri), "unix://%s", sockpath);
}

static void dir_teardown(void)
{
	unlink(sockpath);
	rmdir(sockdir);
}

static void setup(void)
{
	nservers = 0;
}

/* Servers of a test that failed die with its process (PR_SET_PDEATHSIG). */
static void teardown(void)
{
	for (int i = 0; i < nservers; i++) {
		if (servers[i] > 0) {
			kill(servers[i], SIGKILL);
			waitpid(servers[i], NULL, 0);
		}
		servers[i] = 0;
	}
	unlink(sockpath);
}

/* ---- Client side ---- */

#define SEEN_MAX 16

struct rec {
	int replies;
	int err[SEEN_MAX];
	char value[SEEN_MAX][64]; /* reply's "v", or "" */
	char errmsg[SEEN_MAX][64];
	int events;
	char event_value[SEEN_MAX][64];
	int ups, downs;
	int down_err[SEEN_MAX];
	char order[64]; /* 'E' per event, 'R' per reply, 'U'/'D' per state */
};

static void rec_order(struct rec *r, char what)
{
	size_t n = strlen(r->order);

	if (n + 1 < sizeof(r->order))
		r->order[n] = what;
}

static void on_reply(void *arg, int err, const struct vici_tree *reply)
{
	struct rec *r = arg;
	const char *v = reply ? vici_tree_get(reply, "v") : NULL;
	const char *e = reply ? vici_reply_error(reply) : NULL;

	ck_assert_int_lt(r->replies, SEEN_MAX);
	ck_assert(err ? reply == NULL : reply != NULL);
	r->err[r->replies] = err;
	snprintf(r->value[r->replies], sizeof(r->value[0]), "%s", v ? v : "");
	snprintf(r->errmsg[r->replies], sizeof(r->errmsg[0]), "%s", e ? e : "(null)");
	r->replies++;
	rec_order(r, 'R');
}

static void on_event(void *arg, const char *event, const struct vici_tree *msg)
{
	struct rec *r = arg;
	const char *v = vici_tree_get(msg, "v");

	ck_assert_int_lt(r->events, SEEN_MAX);
	snprintf(r->event_value[r->events], sizeof(r->event_value[0]), "%s:%s", event, v ? v : "");
	r->events++;
	rec_order(r, 'E');
}

static void on_state(void *arg, enum vici_state st, int err)
{
	struct rec *r = arg;

	if (st == VICI_STATE_UP) {
		ck_assert_int_eq(err, 0);
		r->ups++;
		rec_order(r, 'U');
		return;
	}
	ck_assert_int_lt(err, 0);
	if (r->downs < SEEN_MAX)
		r->down_err[r->downs] = err;
	r->downs++;
	rec_order(r, 'D');
}

/* Runs the loop until *counter reaches target; fails after LOOP_LIMIT_MS. */
static void run_until(struct vici_conn *c, const int *counter, int target)
{
	int64_t end = vici_now_ms() + LOOP_LIMIT_MS;

	while (*counter < target) {
		int64_t now = vici_now_ms(), t = vici_conn_next_deadline(c, now);
		int want = vici_conn_want(c);
		struct pollfd pfd = {.fd = vici_conn_fd(c),
				     .events = (short)((want & VICI_WANT_READ ? POLLIN : 0) |
						       (want & VICI_WANT_WRITE ? POLLOUT : 0))};
		int n;

		ck_assert_msg(now < end, "loop limit: %d of %d", *counter, target);
		if (t < 0 || t > 50)
			t = 50;
		n = poll(&pfd, pfd.fd >= 0 ? 1 : 0, (int)t);
		ck_assert_int_ge(n, 0);
		if (n > 0)
			vici_conn_process(c, pfd.revents & (POLLIN | POLLHUP | POLLERR),
					  pfd.revents & (POLLOUT | POLLHUP | POLLERR));
		vici_conn_tick(c, vici_now_ms());
	}
}

static struct vici_conn *client(struct rec *r)
{
	struct vici_conn *c;

	ck_assert_int_eq(vici_conn_new(uri, &c), 0);
	vici_conn_on_state(c, on_state, r);
	ck_assert_int_eq(vici_conn_connect(c), 0);
	return c;
}

static void command(struct vici_conn *c, const char *cmd, int timeout_ms, struct rec *r)
{
	ck_assert_int_eq(vici_conn_command(c, cmd, NULL, 0, timeout_ms, on_reply, r), 0);
}

/* ---- URIs ---- */

static const struct {
	const char *uri;
	int rc;
} uris[] = {
    {"unix:///var/run/charon.vici", 0}, {"tcp://127.0.0.1:4502", 0},
    {"tcp://localhost:4502", 0},	{"tcp://[::1]:4502", 0},
    {"unix://relative", -EINVAL},	{"unix://", -EINVAL},
    {"tcp://127.0.0.1", -EINVAL},	{"tcp://:4502", -EINVAL},
    {"tcp://host:0", -EINVAL},		{"tcp://host:65536", -EINVAL},
    {"tcp://host:45x", -EINVAL},	{"tcp://host:+45", -EINVAL},
    {"tcp://::1:4502", -EINVAL},	{"tcp://[::1:4502", -EINVAL},
    {"http://host:80", -EINVAL},	{"", -EINVAL},
};

START_TEST(test_uri)
{
	struct vici_conn *c = (void *)1;

	ck_assert_int_eq(vici_conn_new(uris[_i].uri, &c), uris[_i].rc);
	ck_assert(uris[_i].rc ? c == NULL : c != NULL);
	vici_conn_free(c);
}
END_TEST

START_TEST(test_bad_requests)
{
	struct vici_conn *c;
	struct rec r = {0};
	static uint8_t big[VICI_MSG_MAX + 1];

	ck_assert_int_eq(vici_conn_new("unix:///nonexistent/charon.vici", &c), 0);
	ck_assert_int_eq(vici_conn_command(c, "", NULL, 0, 100, on_reply, &r), -EINVAL);
	ck_assert_int_eq(vici_conn_command(c, "x", NULL, 0, 0, on_reply, &r), -EINVAL);
	ck_assert_int_eq(vici_conn_command(c, "x", NULL, 0, 100, NULL, &r), -EINVAL);
	ck_assert_int_eq(vici_conn_command(c, "x", big, sizeof(big), 100, on_reply, &r), -EMSGSIZE);
	ck_assert_int_eq(vici_conn_stream(c, "x", "", NULL, 0, 100, on_event, on_reply, &r),
			 -EINVAL);
	ck_assert_int_eq(vici_conn_subscribe(c, "e", NULL, &r), -EINVAL);
	ck_assert_int_eq(vici_conn_fd(c), -1);
	ck_assert_int_eq(vici_conn_want(c), 0);
	ck_assert_int_eq(vici_conn_next_deadline(c, vici_now_ms()), -1);
	/* Nothing listens: the attempt fails at once and the queue with it. */
	vici_conn_on_state(c, on_state, &r);
	command(c, "x", 1000, &r);
	ck_assert_int_eq(vici_conn_connect(c), -ENOENT);
	ck_assert_int_eq(r.downs, 1);
	ck_assert_int_eq(r.down_err[0], -ENOENT);
	ck_assert_int_eq(r.replies, 1);
	ck_assert_int_eq(r.err[0], -ENOENT);
	/* The retry is scheduled after the first backoff step. */
	ck_assert_int_gt(vici_conn_next_deadline(c, vici_now_ms()), 0);
	ck_assert_int_le(vici_conn_next_deadline(c, vici_now_ms()), VICI_BACKOFF_MIN_MS);
	vici_conn_free(c);
}
END_TEST

/* ---- Command and response ---- */

static void scenario_command(int lfd)
{
	int fd = srv_accept(lfd);
	struct vici_tree *t;

	t = srv_expect(fd, VICI_CMD_REQUEST, "version");
	SRV_CHECK(t && !vici_tree_get(t, "v"));
	vici_tree_free(t);
	srv_send_kv(fd, VICI_CMD_RESPONSE, NULL, "v", "5.9.13", NULL, NULL);
	t = srv_expect(fd, VICI_CMD_REQUEST, "load-conn");
	SRV_CHECK(t && !strcmp(vici_tree_get(t, "v"), "arg"));
	vici_tree_free(t);
	srv_send_kv(fd, VICI_CMD_RESPONSE, NULL, "success", "no", "errmsg", "boom");
	srv_expect_only(fd, VICI_CMD_REQUEST, "stats");
	srv_send_kv(fd, VICI_CMD_RESPONSE, NULL, "v", "up", "success", "yes");
	srv_expect_eof(fd);
}

START_TEST(test_command)
{
	struct rec r = {0};
	pid_t pid = server_start(scenario_command);
	struct vici_conn *c = client(&r);
	struct vici_builder *b = vici_builder_new();
	struct vici_tree *reply;
	uint8_t *msg;
	size_t len;

	vici_builder_key_str(b, "v", "arg");
	ck_assert_int_eq(vici_builder_finish(b, &msg, &len), 0);
	vici_builder_free(b);
	/* Both queued at once: the second waits for the first reply. */
	command(c, "version", 2000, &r);
	ck_assert_int_eq(vici_conn_command(c, "load-conn", msg, len, 2000, on_reply, &r), 0);
	free(msg);
	run_until(c, &r.replies, 2);
	ck_assert_str_eq(r.order, "URR");
	ck_assert_int_eq(r.err[0], 0);
	ck_assert_str_eq(r.value[0], "5.9.13");
	ck_assert_str_eq(r.errmsg[0], "(null)");
	ck_assert_int_eq(r.err[1], 0);
	ck_assert_str_eq(r.errmsg[1], "boom");
	/* The blocking call on the same connection. */
	ck_assert_int_eq(vici_call(c, "stats", NULL, 0, 2000, &reply), 0);
	ck_assert_str_eq(vici_tree_get(reply, "v"), "up");
	ck_assert_ptr_null(vici_reply_error(reply));
	vici_tree_free(reply);
	vici_conn_free(c);
	server_reap(pid);
}
END_TEST

/* vici_call() on a fresh connection, and on one nobody listens to. */
static void scenario_call(int lfd)
{
	int fd = srv_accept(lfd);

	srv_expect_only(fd, VICI_CMD_REQUEST, "version");
	srv_send_kv(fd, VICI_CMD_RESPONSE, NULL, "v", "1", NULL, NULL);
	srv_expect_eof(fd);
}

START_TEST(test_call)
{
	pid_t pid = server_start(scenario_call);
	struct vici_conn *c;
	struct vici_tree *reply = (void *)1;

	ck_assert_int_eq(vici_conn_new(uri, &c), 0);
	ck_assert_int_eq(vici_call(c, "version", NULL, 0, 2000, &reply), 0);
	ck_assert_str_eq(vici_tree_get(reply, "v"), "1");
	vici_tree_free(reply);
	vici_conn_free(c);
	server_reap(pid);
	unlink(sockpath);
	ck_assert_int_eq(vici_conn_new(uri, &c), 0);
	ck_assert_int_eq(vici_call(c, "version", NULL, 0, 2000, &reply), -ENOENT);
	ck_assert_ptr_null(reply);
	vici_conn_free(c);
}
END_TEST

/* ---- Events interleaved with replies ---- */

static void scenario_interleaved(int lfd)
{
	int fd = srv_accept(lfd);

	srv_expect_only(fd, VICI_EVENT_REGISTER, "ike-updown");
	srv_send(fd, VICI_EVENT_CONFIRM, NULL, NULL, 0);
	srv_expect_only(fd, VICI_CMD_REQUEST, "list-conns");
	srv_send_kv(fd, VICI_EVENT, "ike-updown", "v", "first", NULL, NULL);
	srv_send_kv(fd, VICI_EVENT, "not-subscribed", "v", "x", NULL, NULL);
	srv_send_kv(fd, VICI_CMD_RESPONSE, NULL, "v", "reply", NULL, NULL);
	srv_send_kv(fd, VICI_EVENT, "ike-updown", "v", "second", NULL, NULL);
	srv_expect_eof(fd);
}

START_TEST(test_event_interleaved)
{
	struct rec r = {0};
	pid_t pid = server_start(scenario_interleaved);
	struct vici_conn *c = client(&r);

	/* Subscribed before UP: registered first thing on connect. */
	ck_assert_int_eq(vici_conn_subscribe(c, "ike-updown", on_event, &r), 0);
	command(c, "list-conns", 2000, &r);
	run_until(c, &r.events, 2);
	ck_assert_str_eq(r.order, "UERE");
	ck_assert_int_eq(r.err[0], 0);
	ck_assert_str_eq(r.value[0], "reply");
	ck_assert_str_eq(r.event_value[0], "ike-updown:first");
	ck_assert_str_eq(r.event_value[1], "ike-updown:second");
	vici_conn_free(c);
	server_reap(pid);
}
END_TEST

/* ---- A reply that never comes ---- */

static void scenario_stall(int lfd)
{
	int fd = srv_accept(lfd);

	srv_expect_only(fd, VICI_CMD_REQUEST, "stall");
	srv_expect_eof(fd); /* the client gives up on this connection */
	fd = srv_accept(lfd);
	srv_expect_only(fd, VICI_CMD_REQUEST, "next");
	srv_send_kv(fd, VICI_CMD_RESPONSE, NULL, "v", "fresh", NULL, NULL);
	srv_expect_eof(fd);
}

START_TEST(test_timeout)
{
	struct rec r = {0};
	pid_t pid = server_start(scenario_stall);
	struct vici_conn *c = client(&r);
	int64_t start = vici_now_ms();

	command(c, "stall", 200, &r);
	command(c, "next", 3000, &r);
	run_until(c, &r.replies, 1);
	ck_assert_int_eq(r.err[0], -ETIMEDOUT);
	ck_assert_int_ge(vici_now_ms() - start, 200);
	/* The queued command goes out on a fresh connection. */
	run_until(c, &r.replies, 2);
	ck_assert_int_eq(r.err[1], 0);
	ck_assert_str_eq(r.value[1], "fresh");
	ck_assert_str_eq(r.order, "UDRUR");
	ck_assert_int_eq(r.down_err[0], -ETIMEDOUT);
	vici_conn_free(c);
	server_reap(pid);
}
END_TEST

/* A queued command can expire behind a slow one without touching the line. */
static void scenario_slow(int lfd)
{
	int fd = srv_accept(lfd);

	srv_expect_only(fd, VICI_CMD_REQUEST, "slow");
	usleep(300 * 1000);
	srv_send_kv(fd, VICI_CMD_RESPONSE, NULL, "v", "late-but-ok", NULL, NULL);
	srv_expect_eof(fd);
}

START_TEST(test_timeout_queued)
{
	struct rec r = {0};
	pid_t pid = server_start(scenario_slow);
	struct vici_conn *c = client(&r);

	command(c, "slow", 2000, &r);
	command(c, "impatient", 100, &r);
	run_until(c, &r.replies, 2);
	ck_assert_int_eq(r.err[0], -ETIMEDOUT);
	ck_assert_int_eq(r.err[1], 0);
	ck_assert_str_eq(r.value[1], "late-but-ok");
	ck_assert_int_eq(r.downs, 0);
	vici_conn_free(c);
	server_reap(pid);
}
END_TEST

/* ---- Unknown command ---- */

static void scenario_unknown(int lfd)
{
	int fd = srv_accept(lfd);

	srv_expect_only(fd, VICI_CMD_REQUEST, "no-such-cmd");
	srv_send(fd, VICI_CMD_UNKNOWN, NULL, NULL, 0);
	srv_expect_only(fd, VICI_CMD_REQUEST, "version");
	srv_send_kv(fd, VICI_CMD_RESPONSE, NULL, "v", "same", NULL, NULL);
	srv_expect_eof(fd);
}

START_TEST(test_unknown)
{
	struct rec r = {0};
	pid_t pid = server_start(scenario_unknown);
	struct vici_conn *c = client(&r);

	command(c, "no-such-cmd", 2000, &r);
	command(c, "version", 2000, &r);
	run_until(c, &r.replies, 2);
	ck_assert_int_eq(r.err[0], -ENOENT);
	ck_assert_int_eq(r.err[1], 0);
	ck_assert_str_eq(r.value[1], "same");
	ck_assert_int_eq(r.downs, 0);
	vici_conn_free(c);
	server_reap(pid);
}
END_TEST

/* ---- Broken streams: the connection is dropped and reported ---- */

static void scenario_dies(int lfd)
{
	int fd = srv_accept(lfd);
	static const uint8_t partial[] = {0, 0, 0, 100, VICI_CMD_RESPONSE, 3, 1, 'v', 0, 5};

	srv_expect_only(fd, VICI_CMD_REQUEST, "version");
	srv_write(fd, partial, sizeof(partial));
	usleep(50 * 1000); /* let the client see the partial segment on its own */
	close(fd);
}

static void scenario_oversized(int lfd)
{
	int fd = srv_accept(lfd);
	uint8_t hdr[] = {0, 0, 0, 0, VICI_CMD_RESPONSE};
	uint32_t len = VICI_SEGMENT_MAX + 1;

	hdr[0] = (uint8_t)(len >> 24);
	hdr[1] = (uint8_t)(len >> 16);
	hdr[2] = (uint8_t)(len >> 8);
	hdr[3] = (uint8_t)len;
	srv_expect_only(fd, VICI_CMD_REQUEST, "version");
	srv_write(fd, hdr, sizeof(hdr));
	srv_expect_eof(fd); /* the client hangs up, not us */
}

static void scenario_garbage(int lfd)
{
	int fd = srv_accept(lfd);

	srv_expect_only(fd, VICI_CMD_REQUEST, "version");
	srv_send(fd, VICI_EVENT_CONFIRM, NULL, NULL, 0); /* nothing was registered */
	srv_expect_eof(fd);
}

static const struct {
	scenario_fn scenario;
	int why;
} broken[] = {
    {scenario_dies, -ECONNRESET},
    {scenario_oversized, -EMSGSIZE},
    {scenario_garbage, -EBADMSG},
};

START_TEST(test_broken)
{
	struct rec r = {0};
	pid_t pid = server_start(broken[_i].scenario);
	struct vici_conn *c = client(&r);
	int64_t now;

	command(c, "version", 2000, &r);
	command(c, "queued", 2000, &r);
	run_until(c, &r.replies, 2);
	ck_assert_str_eq(r.order, "UDRR");
	ck_assert_int_eq(r.down_err[0], broken[_i].why);
	ck_assert_int_eq(r.err[0], -ECONNRESET);
	ck_assert_int_eq(r.err[1], -ECONNRESET);
	ck_assert_int_eq(vici_conn_fd(c), -1);
	now = vici_now_ms();
	ck_assert_int_le(vici_conn_next_deadline(c, now), VICI_BACKOFF_MIN_MS);
	vici_conn_free(c);
	server_reap(pid);
}
END_TEST

/* ---- Reconnect: a new server on the same path sees the subscription again ---- */

static void scenario_first_life(int lfd)
{
	int fd = srv_accept(lfd);

	srv_expect_only(fd, VICI_EVENT_REGISTER, "ike-updown");
	srv_send(fd, VICI_EVENT_CONFIRM, NULL, NULL, 0);
	close(fd);
}

static void scenario_second_life(int lfd)
{
	int fd = srv_accept(lfd);

	srv_expect_only(fd, VICI_EVENT_REGISTER, "ike-updown");
	srv_send(fd, VICI_EVENT_CONFIRM, NULL, NULL, 0);
	srv_send_kv(fd, VICI_EVENT, "ike-updown", "v", "after-restart", NULL, NULL);
	srv_expect_eof(fd);
}

START_TEST(test_reconnect)
{
	struct rec r = {0};
	pid_t first = server_start(scenario_first_life), second;
	struct vici_conn *c = client(&r);
	int64_t down_at;

	ck_assert_int_eq(vici_conn_subscribe(c, "ike-updown", on_event, &r), 0);
	run_until(c, &r.downs, 1);
	down_at = vici_now_ms();
	server_reap(first);
	ck_assert_int_eq(r.down_err[0], -ECONNRESET);
	/* The first retry comes after 100 ms and meets a dead socket; wait for
	 * the backoff to double a few times before the restart. */
	run_until(c, &r.downs, 3);
	ck_assert_int_ge(vici_now_ms() - down_at, VICI_BACKOFF_MIN_MS * 3 - 50);
	ck_assert_int_eq(r.down_err[1], -ECONNREFUSED);
	ck_assert_int_eq(r.ups, 1);
	second = server_start(scenario_second_life);
	run_until(c, &r.events, 1);
	ck_assert_int_eq(r.ups, 2);
	ck_assert_str_eq(r.event_value[0], "ike-updown:after-restart");
	vici_conn_free(c);
	server_reap(second);
}
END_TEST

/* ---- Streamed command ---- */

static void scenario_stream(int lfd)
{
	int fd = srv_accept(lfd);

	srv_expect_only(fd, VICI_EVENT_REGISTER, "control-log");
	srv_send(fd, VICI_EVENT_CONFIRM, NULL, NULL, 0);
	srv_expect_only(fd, VICI_CMD_REQUEST, "initiate");
	srv_send_kv(fd, VICI_EVENT, "control-log", "v", "1", NULL, NULL);
	srv_send_kv(fd, VICI_EVENT, "other", "v", "x", NULL, NULL);
	srv_send_kv(fd, VICI_EVENT, "control-log", "v", "2", NULL, NULL);
	srv_send_kv(fd, VICI_EVENT, "control-log", "v", "3", NULL, NULL);
	srv_send_kv(fd, VICI_CMD_RESPONSE, NULL, "success", "yes", NULL, NULL);
	/* Late log lines must not reach the finished stream. */
	srv_send_kv(fd, VICI_EVENT, "control-log", "v", "late", NULL, NULL);
	srv_expect_only(fd, VICI_EVENT_UNREGISTER, "control-log");
	srv_send(fd, VICI_EVENT_CONFIRM, NULL, NULL, 0);
	/* The next command waits for the unregistration to finish. */
	srv_expect_only(fd, VICI_CMD_REQUEST, "after");
	srv_send_kv(fd, VICI_CMD_RESPONSE, NULL, "v", "ok", NULL, NULL);
	/* A stream on an event charon does not know. */
	srv_expect_only(fd, VICI_EVENT_REGISTER, "bogus-log");
	srv_send(fd, VICI_EVENT_UNKNOWN, NULL, NULL, 0);
	srv_expect_eof(fd);
}

START_TEST(test_stream)
{
	struct rec r = {0};
	pid_t pid = server_start(scenario_stream);
	struct vici_conn *c = client(&r);

	ck_assert_int_eq(
	    vici_conn_stream(c, "initiate", "control-log", NULL, 0, 2000, on_event, on_reply, &r),
	    0);
	command(c, "after", 2000, &r);
	ck_assert_int_eq(
	    vici_conn_stream(c, "initiate", "bogus-log", NULL, 0, 2000, on_event, on_reply, &r), 0);
	run_until(c, &r.replies, 3);
	ck_assert_str_eq(r.order, "UEEERRR");
	ck_assert_str_eq(r.event_value[0], "control-log:1");
	ck_assert_str_eq(r.event_value[1], "control-log:2");
	ck_assert_str_eq(r.event_value[2], "control-log:3");
	ck_assert_int_eq(r.err[0], 0);
	ck_assert_str_eq(r.errmsg[0], "(null)");
	ck_assert_str_eq(r.value[1], "ok");
	ck_assert_int_eq(r.err[2], -ENOENT);
	vici_conn_free(c);
	server_reap(pid);
}
END_TEST

/* ---- Control commands: charon's log of the attempt ---- */

/* A control-log event; name may be NULL (no ikesa-name). */
static void srv_send_log(int fd, const char *group, const char *name, const char *text)
{
	struct vici_builder *b = vici_builder_new();
	uint8_t *msg;
	size_t len;

	vici_builder_key_str(b, "group", group);
	vici_builder_key_str(b, "level", "1");
	if (name)
		vici_builder_key_str(b, "ikesa-name", name);
	vici_builder_key_str(b, "msg", text);
	SRV_CHECK(vici_builder_finish(b, &msg, &len) == 0);
	vici_builder_free(b);
	srv_send(fd, VICI_EVENT, "control-log", msg, len);
	free(msg);
}

#define LONG_LINES 100 /* of ~1.5 KiB: more than VICI_CONTROL_LOG_MAX */

/* Registers control-log and expects cmd; the caller sends the log. */
static int srv_control_start(int lfd, const char *cmd)
{
	int fd = srv_accept(lfd);

	srv_expect_only(fd, VICI_EVENT_REGISTER, "control-log");
	srv_send(fd, VICI_EVENT_CONFIRM, NULL, NULL, 0);
	srv_expect_only(fd, VICI_CMD_REQUEST, cmd);
	return fd;
}

static void srv_control_end(int fd)
{
	srv_send_kv(fd, VICI_CMD_RESPONSE, NULL, "success", "no", "errmsg",
		    "establishing CHILD_SA 'net' failed");
	srv_expect_only(fd, VICI_EVENT_UNREGISTER, "control-log");
	srv_send(fd, VICI_EVENT_CONFIRM, NULL, NULL, 0);
	srv_expect_only(fd, VICI_CMD_REQUEST, "after");
	srv_send_kv(fd, VICI_CMD_RESPONSE, NULL, "v", "ok", NULL, NULL);
	srv_expect_eof(fd);
}

static void scenario_control(int lfd)
{
	int fd = srv_control_start(lfd, "initiate");

	srv_send_log(fd, "IKE", "dh14", "initiating IKE_SA dh14[3] to 198.51.100.2");
	srv_send_kv(fd, VICI_EVENT, "ike-updown", "v", "interleaved", NULL, NULL);
	srv_send_log(fd, "CFG", NULL, "two\nlines");
	srv_send_log(fd, "IKE", "dh14", "received NO_PROPOSAL_CHOSEN notify error");
	srv_control_end(fd);
}

/* Long lines, more than the log keeps. */
static void scenario_control_long(int lfd)
{
	int fd = srv_control_start(lfd, "initiate");
	char text[1500];

	for (int i = 0; i < LONG_LINES; i++) {
		int n = snprintf(text, sizeof(text), "line %03d ", i);

		memset(text + n, 'x', sizeof(text) - 1 - (size_t)n);
		text[sizeof(text) - 1] = '\0';
		srv_send_log(fd, "IKE", "c", text);
	}
	srv_control_end(fd);
}

struct control_rec {
	int calls;
	int err;
	char errmsg[64];
	char *log;
};

static void on_control(void *arg, int err, const struct vici_tree *reply, const char *log)
{
	struct control_rec *r = arg;
	const char *e = reply ? vici_reply_error(reply) : NULL;

	r->calls++;
	r->err = err;
	snprintf(r->errmsg, sizeof(r->errmsg), "%s", e ? e : "(null)");
	r->log = strdup(log);
	ck_assert_ptr_nonnull(r->log);
}

/* Runs one control command against scenario; the caller frees r->log. */
static void control_run(scenario_fn scenario, struct control_rec *r)
{
	struct rec st = {0};
	pid_t pid = server_start(scenario);
	struct vici_conn *c = client(&st);

	ck_assert_int_eq(vici_conn_control(c, "initiate", NULL, 0, 2000, on_control, r), 0);
	/* The next command goes out after the unregistration. */
	command(c, "after", 2000, &st);
	run_until(c, &st.replies, 1);
	ck_assert_str_eq(st.value[0], "ok");
	vici_conn_free(c);
	server_reap(pid);
	ck_assert_int_eq(r->calls, 1);
}

START_TEST(test_control)
{
	struct control_rec r = {0};
	char reason[32];

	control_run(scenario_control, &r);
	ck_assert_int_eq(r.err, 0);
	ck_assert_str_eq(r.errmsg, "establishing CHILD_SA 'net' failed");
	/* Other events stay out; a line break inside a value does not split. */
	ck_assert_str_eq(r.log, "[IKE] dh14: initiating IKE_SA dh14[3] to 198.51.100.2\n"
				"[CFG] two lines\n"
				"[IKE] dh14: received NO_PROPOSAL_CHOSEN notify error\n");
	ck_assert_uint_eq(vici_control_reason(r.log, reason, sizeof(reason)), 18);
	ck_assert_str_eq(reason, "NO_PROPOSAL_CHOSEN");
	free(r.log);
}
END_TEST

/* The log keeps the newest whole lines within VICI_CONTROL_LOG_MAX. */
START_TEST(test_control_log_bounded)
{
	struct control_rec r = {0};
	size_t len, lines = 0;
	char first[32];

	control_run(scenario_control_long, &r);
	len = strlen(r.log);
	ck_assert_uint_le(len, VICI_CONTROL_LOG_MAX);
	ck_assert_uint_gt(len, VICI_CONTROL_LOG_MAX - VICI_CONTROL_LINE_MAX);
	for (const char *p = r.log; (p = strchr(p, '\n')); p++)
		lines++;
	/* Every line cut to VICI_CONTROL_LINE_MAX - 1 bytes plus its '\n'. */
	ck_assert_uint_eq(len, lines * VICI_CONTROL_LINE_MAX);
	snprintf(first, sizeof(first), "[IKE] c: line %03zu", (size_t)LONG_LINES - lines);
	ck_assert_int_eq(strncmp(r.log, first, strlen(first)), 0);
	ck_assert(strstr(r.log, "line 099") != NULL);
	free(r.log);
}
END_TEST

static const struct {
	const char *log;
	size_t size;
	const char *reason; /* "" for none */
} reasons[] = {
    {"", 64, ""},
    {"[IKE] a: received NO_PROPOSAL_CHOSEN notify error\n", 64, "NO_PROPOSAL_CHOSEN"},
    /* The last reason wins: the CHILD_SA failed after the IKE_SA. */
    {"[IKE] a: received AUTHENTICATION_FAILED notify error\n"
     "[IKE] a: received TS_UNACCEPTABLE notify, no CHILD_SA built\n",
     64, "TS_UNACCEPTABLE"},
    {"[IKE] a: sending retransmit 2 of request message ID 0, seq 1\n"
     "[IKE] a: giving up after 2 retransmits\n",
     64, VICI_REASON_NO_ANSWER},
    {"[NET] a: received packet: from 198.51.100.2[500] to 198.51.100.1[500]\n", 64, ""},
    {"[IKE] a: received notify error\n", 64, ""},
    {"[IKE] a: received NO_PROPOSAL_CHOSEN notify", 64, ""},
    {"[IKE] a: received NO_PROPOSAL_CHOSEN notify error", 64, "NO_PROPOSAL_CHOSEN"},
    /* A name cut by a line break is no name. */
    {"[IKE] a: received NO_PROP\nOSAL_CHOSEN notify error\n", 64, ""},
    {"[IKE] a: received NO_PROPOSAL_CHOSEN notify error\n", 18, ""},
    {"[IKE] a: received NO_PROPOSAL_CHOSEN notify error\n", 19, "NO_PROPOSAL_CHOSEN"},
    /* This end refused the peer's certificate: only its own notify says so. */
    {"[CFG] a: no issuer certificate found for \"CN=h\"\n"
     "[ENC] a: generating INFORMATIONAL request 2 [ N(AUTH_FAILED) ]\n",
     64, "AUTHENTICATION_FAILED"},
    {"[ENC] a: generating CREATE_CHILD_SA response 3 [ N(NO_PROP) ]\n", 64, "NO_PROPOSAL_CHOSEN"},
    {"[ENC] a: generating IKE_AUTH response 1 [ IDr AUTH N(TS_UNACCEPT) ]\n", 64,
     "TS_UNACCEPTABLE"},
    {"[ENC] a: generating IKE_SA_INIT request 0 [ SA KE No N(NATD_S_IP) ]\n", 64, ""},
    {"[ENC] a: parsed IKE_AUTH response 1 [ N(AUTH_FAILED) ]\n", 64, ""},
};

START_TEST(test_control_reason)
{
	char buf[64];

	memset(buf, '#', sizeof(buf));
	ck_assert_uint_eq(vici_control_reason(reasons[_i].log, buf, reasons[_i].size),
			  strlen(reasons[_i].reason));
	ck_assert_str_eq(buf, reasons[_i].reason);
	ck_assert_uint_eq(vici_control_reason("x", buf, 0), 0);
}
END_TEST

/* Freeing with requests queued tells each of them. */
START_TEST(test_free_cancels)
{
	struct vici_conn *c;
	struct rec r = {0};

	ck_assert_int_eq(vici_conn_new(uri, &c), 0);
	command(c, "a", 1000, &r);
	command(c, "b", 1000, &r);
	vici_conn_free(c);
	ck_assert_int_eq(r.replies, 2);
	ck_assert_int_eq(r.err[0], -ECANCELED);
	ck_assert_int_eq(r.err[1], -ECANCELED);
}
END_TEST

static Suite *conn_suite(void)
{
	Suite *s = suite_create("vici_conn");
	TCase *tc = tcase_create("conn");

	tcase_add_unchecked_fixture(tc, dir_setup, dir_teardown);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_loop_test(tc, test_uri, 0, sizeof(uris) / sizeof(uris[0]));
	tcase_add_test(tc, test_bad_requests);
	tcase_add_test(tc, test_command);
	tcase_add_test(tc, test_call);
	tcase_add_test(tc, test_event_interleaved);
	tcase_add_test(tc, test_timeout);
	tcase_add_test(tc, test_timeout_queued);
	tcase_add_test(tc, test_unknown);
	tcase_add_loop_test(tc, test_broken, 0, sizeof(broken) / sizeof(broken[0]));
	tcase_add_test(tc, test_reconnect);
	tcase_add_test(tc, test_stream);
	tcase_add_test(tc, test_free_cancels);
	tcase_add_test(tc, test_control);
	tcase_add_test(tc, test_control_log_bounded);
	tcase_add_loop_test(tc, test_control_reason, 0,
			    (int)(sizeof(reasons) / sizeof(reasons[0])));
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(conn_suite());
	int failed;

	/* A fake server that dies must not kill the test with SIGPIPE. */
	signal(SIGPIPE, SIG_IGN);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
