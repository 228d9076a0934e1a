/*
 * The bridge child against a fake bridge: this very binary, run as
 * `test_appliance_child -c MODE -S 3 [-v]` (main() sees "-c" and becomes the
 * fake). The fake checks what a bridge is promised (fd 3 is a SEQPACKET
 * socket, nothing else leaked past it), then answers every datagram with an
 * IPC_STATUS that reports what it has seen as integrations:
 *   pid      depth = its PID
 *   gate     depth = last generation, oldest_age_ms = gates seen, dead = 1 if the gate came first
 *   tunnels  depth = last bridge_restarts, oldest_age_ms = tunnel messages seen
 *   uid      depth = uid, oldest_age_ms = gid, dead = 1 with -v
 * The test plays the supervisor: one loop, a SIGCHLD event that reaps
 * everything and feeds child_reaped().
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "appliance/child.h"
#include "ipc/ipc.h"

#define STEP_MS	     10
#define START_MS     3000 /* a fake bridge answers well within this */
#define FAKE_FD_SCAN 256  /* fds the fake checks for leaks above 3 */

/* ---- the fake bridge (exec'd; no Check calls, exit codes say what failed) ---- */

enum fake_exit { FAKE_OK, FAKE_BAD_ARGS = 20, FAKE_NOT_SEQPACKET, FAKE_FD_LEAKED, FAKE_IPC };

static volatile sig_atomic_t fake_term;

static void fake_on_term(int sig)
{
	(void)sig;
	fake_term = 1;
}

struct fake {
	int fd;
	int verbose;
	uint32_t gate_gen, ngates, restarts, ntunnels;
	int gate_first; /* 1: the first message was the gate; 2: it was not */
};

static void fake_item(struct ipc_status *st, const char *name, uint64_t depth, uint64_t age,
		      uint64_t dead)
{
	struct ipc_integration *in = &st->in[st->n++];

	snprintf(in->name, sizeof(in->name), "%s", name);
	in->depth = depth;
	in->oldest_age_ms = age;
	in->dead = dead;
}

static int fake_send_status(const struct fake *f)
{
	static union ipc_msg m;
	static uint8_t buf[IPC_MSG_MAX];
	size_t len;

	memset(&m.status, 0, sizeof(m.status));
	fake_item(&m.status, "pid", (uint64_t)getpid(), 0, 0);
	fake_item(&m.status, "gate", f->gate_gen, f->ngates, f->gate_first == 1);
	fake_item(&m.status, "tunnels", f->restarts, f->ntunnels, 0);
	fake_item(&m.status, "uid", getuid(), getgid(), (uint64_t)f->verbose);
	if (ipc_encode(IPC_STATUS, &m, buf, sizeof(buf), &len) < 0)
		return -1;
	return send(f->fd, buf, len, MSG_NOSIGNAL) == (ssize_t)len ? 0 : -1;
}

/* One datagram in; 0 on EOF, -1 on garbage. */
static int fake_read(struct fake *f)
{
	static union ipc_msg m;
	static uint8_t buf[IPC_MSG_MAX];
	enum ipc_type type;
	ssize_t n = recv(f->fd, buf, sizeof(buf), 0);

	if (n <= 0)
		return n < 0 && errno == EINTR ? 1 : 0;
	if (ipc_decode(buf, (size_t)n, &type, &m) < 0)
		return -1;
	if (!f->gate_first)
		f->gate_first = type == IPC_GATE ? 1 : 2;
	if (type == IPC_GATE) {
		f->gate_gen = m.gate.generation;
		f->ngates++;
	} else if (type == IPC_TUNNELS) {
		f->restarts = m.tunnels.bridge_restarts;
		f->ntunnels++;
	}
	return fake_send_status(f) == 0 ? 1 : -1;
}

/* What the bridge is promised: -S 3, a SEQPACKET socket there, no other
 * fd inherited. */
static int fake_check_env(int argc, char **argv, const char **mode, struct fake *f)
{
	int opt, type = 0, sfd = -1, fd;
	socklen_t len = sizeof(type);

	while ((opt = getopt(argc, argv, "c:S:v")) != -1) {
		if (opt == 'c')
			*mode = optarg;
		else if (opt == 'S')
			sfd = atoi(optarg);
		else if (opt == 'v')
			f->verbose = 1;
		else
			return FAKE_BAD_ARGS;
	}
	if (sfd != 3 || optind != argc)
		return FAKE_BAD_ARGS;
	if (getsockopt(sfd, SOL_SOCKET, SO_TYPE, &type, &len) < 0 || type != SOCK_SEQPACKET)
		return FAKE_NOT_SEQPACKET;
	for (fd = 4; fd < FAKE_FD_SCAN; fd++)
		if (fcntl(fd, F_GETFD) != -1)
			return FAKE_FD_LEAKED;
	f->fd = sfd;
	return FAKE_OK;
}

/* Modes: "normal" exits 0 on SIGTERM; "ignore-term" needs SIGKILL; "slow"
 * reads nothing for 500 ms; "garbage" follows its first status with a
 * datagram that is not a message. */
static int fake_bridge(int argc, char **argv)
{
	struct sigaction sa = {.sa_handler = fake_on_term};
	struct fake f = {0};
	const char *mode = "normal";
	struct pollfd pfd;
	int rc = fake_check_env(argc, argv, &mode, &f);

	if (rc != FAKE_OK)
		return rc;
	if (!strcmp(mode, "ignore-term"))
		sa.sa_handler = SIG_IGN;
	sigaction(SIGTERM, &sa, NULL); /* no SA_RESTART: poll() returns */
	if (!strcmp(mode, "slow"))
		usleep(500000);
	if (fake_send_status(&f) < 0)
		return FAKE_IPC;
	if (!strcmp(mode, "garbage") && send(f.fd, "bad", 3, MSG_NOSIGNAL) != 3)
		return FAKE_IPC;
	pfd = (struct pollfd){.fd = f.fd, .events = POLLIN};
	while (!fake_term) {
		if (poll(&pfd, 1, 1000) <= 0)
			continue;
		rc = fake_read(&f);
		if (rc <= 0)
			return rc < 0 ? FAKE_IPC : FAKE_OK;
	}
	return FAKE_OK;
}

/* ---- the supervisor side ---- */

static char dir[64];
static char pidfile[128];
static char self[PATH_MAX];
static struct event_base *base;
static struct event *ev_chld;
static struct bridge_child *child;
static struct ipc_status last; /* the latest status */
static int nstatus;
static int nreaped, last_ws; /* the bridge's */
static pid_t other_pid;	     /* the last process reaped that was not the bridge */
static int other_ws;
static int ndone;

static void on_status(void *arg, const struct ipc_status *st)
{
	(void)arg;
	last = *st;
	nstatus++;
}

static void on_sigchld(evutil_socket_t fd, short what, void *arg)
{
	pid_t pid;
	int ws;

	(void)fd;
	(void)what;
	(void)arg;
	while ((pid = waitpid(-1, &ws, WNOHANG)) > 0) {
		if (child && child_reaped(child, pid, ws)) {
			nreaped++;
			last_ws = ws;
		} else {
			other_pid = pid;
			other_ws = ws;
		}
	}
}

static void on_done(void *arg)
{
	ck_assert_ptr_eq(arg, &ndone);
	ndone++;
}

static void setup(void)
{
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);

	ck_assert_int_gt(n, 0);
	self[n] = '\0';
	snprintf(dir, sizeof(dir), "/tmp/test_child.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(pidfile, sizeof(pidfile), "%s/bridge.pid", dir);
	base = event_base_new();
	ck_assert_ptr_nonnull(base);
	ev_chld = evsignal_new(base, SIGCHLD, on_sigchld, NULL);
	ck_assert_ptr_nonnull(ev_chld);
	ck_assert_int_eq(event_add(ev_chld, NULL), 0);
	child = NULL;
	memset(&last, 0, sizeof(last));
	nstatus = nreaped = ndone = 0;
	last_ws = other_ws = 0;
	other_pid = 0;
}

static void teardown(void)
{
	pid_t pid = child ? child_pid(child) : 0;
	char path[160];
	int ws;

	/* Stop by PID whatever a test left running. */
	if (pid && kill(pid, SIGKILL) == 0 && waitpid(pid, &ws, 0) == pid)
		child_reaped(child, pid, ws);
	child_free(child);
	child = NULL;
	event_free(ev_chld);
	event_base_free(base);
	snprintf(path, sizeof(path), "%s/mllp-bridge", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/fake", dir);
	unlink(path);
	unlink(pidfile);
	rmdir(dir);
}

static void new_child(const char *path, const char *mode, const char *user, int verbose)
{
	struct child_opts o = {
	    .path = path, .config = mode, .user = user, .pidfile = pidfile, .verbose = verbose};

	ck_assert_int_eq(child_new(base, &o, on_status, NULL, &child), 0);
}

/* Runs the loop until pred() holds, at most limit_ms. */
static int run_until(int (*pred)(void), long limit_ms)
{
	struct timeval step = {0, STEP_MS * 1000};
	long waited;

	for (waited = 0; !pred() && waited < limit_ms; waited += STEP_MS) {
		event_base_loopexit(base, &step);
		event_base_dispatch(base);
	}
	return pred();
}

static void run_for(long ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

	event_base_loopexit(base, &tv);
	event_base_dispatch(base);
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* A field the fake reported in the latest status; fails when absent. */
static const struct ipc_integration *st(const char *name)
{
	uint16_t i;

	for (i = 0; i < last.n; i++)
		if (!strcmp(last.in[i].name, name))
			return &last.in[i];
	ck_abort_msg("status has no '%s' (statuses seen: %d)", name, nstatus);
	return NULL;
}

static int child_status_seen(void)
{
	return child_status(child) != NULL;
}

static int status_received(void)
{
	return nstatus > 0;
}

static int done_seen(void)
{
	return ndone > 0;
}

static int bridge_reaped(void)
{
	return nreaped > 0;
}

static uint32_t want_gen;
static uint32_t want_restarts;

/* The running bridge reported the wanted gate generation and tunnels. */
static int seen_gate_and_tunnels(void)
{
	uint16_t i;
	int gate = 0, tunnels = 0, pid = 0;

	if (!child_pid(child) || !child_status(child))
		return 0;
	for (i = 0; i < last.n; i++) {
		const struct ipc_integration *in = &last.in[i];

		if (!strcmp(in->name, "pid"))
			pid = in->depth == (uint64_t)child_pid(child);
		if (!strcmp(in->name, "gate"))
			gate = in->oldest_age_ms > 0 && in->depth == want_gen;
		if (!strcmp(in->name, "tunnels"))
			tunnels = in->oldest_age_ms > 0 && in->depth == want_restarts;
	}
	return pid && gate && tunnels;
}

static void wait_gate_and_tunnels(long limit_ms)
{
	ck_assert_msg(run_until(seen_gate_and_tunnels, limit_ms),
		      "bridge did not report gate %u / restarts %u within %ld ms (pid %d, "
		      "statuses %d, bridge exits %d, last wstatus %#x)",
		      want_gen, want_restarts, limit_ms, (int)child_pid(child), nstatus, nreaped,
		      last_ws);
}

static void send_gate(uint32_t generation, uint16_t n)
{
	static struct ipc_gate g;
	uint16_t i;

	memset(&g, 0, sizeof(g));
	g.generation = generation;
	g.n = n;
	for (i = 0; i < n; i++) {
		g.cidr[i].family = AF_INET;
		g.cidr[i].prefix = 32;
		g.cidr[i].addr[0] = 203;
		g.cidr[i].addr[1] = 0;
		g.cidr[i].addr[2] = 113;
		g.cidr[i].addr[3] = (uint8_t)i;
	}
	child_send_gate(child, &g);
}

static void send_tunnels(void)
{
	static struct ipc_tunnels t;

	memset(&t, 0, sizeof(t));
	t.n = 1;
	snprintf(t.t[0].name, sizeof(t.t[0].name), "hospital-a");
	t.t[0].up = 1;
	t.t[0].ike_dh = 21;
	t.t[0].esp_dh = 21;
	t.t[0].changed_unix = 1700000000;
	/* Whatever the caller says is replaced with child_restarts(). */
	t.bridge_restarts = 999;
	child_send_tunnels(child, &t);
}

static pid_t pidfile_pid(void)
{
	char text[32] = "";
	FILE *f = fopen(pidfile, "r");

	if (!f)
		return 0;
	if (!fgets(text, sizeof(text), f))
		text[0] = '\0';
	fclose(f);
	return (pid_t)atoi(text);
}

/* ---- tests ---- */

START_TEST(test_start_gate_first)
{
	new_child(self, "normal", NULL, 1);
	/* Known before the start: delivered first thing, the gate first. */
	send_gate(7, 2);
	send_tunnels();
	ck_assert_int_eq(child_pid(child), 0);
	ck_assert_ptr_null(child_status(child));
	ck_assert_int_eq(child_start(child), 0);
	ck_assert_int_gt(child_pid(child), 0);
	ck_assert_int_eq(child_start(child), -EALREADY);
	want_gen = 7;
	want_restarts = 0;
	wait_gate_and_tunnels(START_MS);
	ck_assert_uint_eq(st("gate")->dead, 1);
	ck_assert_uint_eq(st("gate")->oldest_age_ms, 1);
	ck_assert_uint_eq(st("tunnels")->oldest_age_ms, 1);
	ck_assert_uint_eq(st("uid")->depth, getuid());
	ck_assert_uint_eq(st("uid")->dead, 1); /* -v passed */
	ck_assert_int_eq(pidfile_pid(), child_pid(child));

	/* Sent while it runs: now. */
	send_gate(8, 0);
	want_gen = 8;
	wait_gate_and_tunnels(START_MS);
	ck_assert_uint_eq(st("gate")->oldest_age_ms, 2);
	ck_assert_int_eq(nreaped, 0);
	ck_assert_uint_eq(child_restarts(child), 0);
}
END_TEST

/* Killed twice: restarted each time with the latest gate, the count in
 * IPC_TUNNELS, the second wait twice the first. */
START_TEST(test_restart_with_backoff)
{
	uint64_t killed, first_ms, second_ms;
	pid_t old;

	new_child(self, "normal", NULL, 0);
	send_gate(3, 1);
	send_tunnels();
	ck_assert_int_eq(child_start(child), 0);
	want_gen = 3;
	want_restarts = 0;
	wait_gate_and_tunnels(START_MS);

	old = child_pid(child);
	killed = now_ms();
	ck_assert_int_eq(kill(old, SIGKILL), 0);
	send_gate(4, 1); /* while it is down: the next one gets this */
	want_gen = 4;
	want_restarts = 1;
	wait_gate_and_tunnels(CHILD_BACKOFF_MIN_MS + START_MS);
	first_ms = now_ms() - killed;
	ck_assert_int_ne(child_pid(child), old);
	ck_assert_uint_eq(child_restarts(child), 1);
	ck_assert_int_eq(nreaped, 1);
	ck_assert(WIFSIGNALED(last_ws) && WTERMSIG(last_ws) == SIGKILL);
	ck_assert_int_eq(pidfile_pid(), child_pid(child));
	ck_assert_uint_ge(first_ms, CHILD_BACKOFF_MIN_MS);

	killed = now_ms();
	ck_assert_int_eq(kill(child_pid(child), SIGKILL), 0);
	want_restarts = 2;
	wait_gate_and_tunnels(2 * CHILD_BACKOFF_MIN_MS + START_MS);
	second_ms = now_ms() - killed;
	ck_assert_uint_eq(child_restarts(child), 2);
	ck_assert_uint_ge(second_ms, 2 * CHILD_BACKOFF_MIN_MS);
}
END_TEST

START_TEST(test_stop)
{
	pid_t pid;

	new_child(self, "normal", NULL, 0);
	ck_assert_int_eq(child_start(child), 0);
	pid = child_pid(child);
	ck_assert_int_gt(pid, 0);
	ck_assert_msg(run_until(child_status_seen, START_MS), "no status from the bridge");
	child_stop(child, 2000, on_done, &ndone);
	ck_assert_int_eq(ndone, 0);
	ck_assert_msg(run_until(done_seen, START_MS), "stop did not complete");
	ck_assert_int_eq(ndone, 1);
	ck_assert_int_eq(child_pid(child), 0);
	ck_assert_ptr_null(child_status(child));
	/* SIGTERM: the fake drains (nothing) and exits 0. */
	ck_assert(WIFEXITED(last_ws) && WEXITSTATUS(last_ws) == 0);
	ck_assert_int_eq(kill(pid, 0), -1);
	ck_assert_int_eq(access(pidfile, F_OK), -1);
	/* Not restarted. */
	run_for(CHILD_BACKOFF_MIN_MS + 300);
	ck_assert_int_eq(child_pid(child), 0);
	ck_assert_uint_eq(child_restarts(child), 0);
	ck_assert_int_eq(ndone, 1);
	/* And it can be started again. */
	ck_assert_int_eq(child_start(child), 0);
	ck_assert_int_gt(child_pid(child), 0);
}
END_TEST

START_TEST(test_stop_kills_after_timeout)
{
	uint64_t t0;

	new_child(self, "ignore-term", NULL, 0);
	ck_assert_int_eq(child_start(child), 0);
	ck_assert_msg(run_until(child_status_seen, START_MS), "no status from the bridge");
	t0 = now_ms();
	child_stop(child, 300, on_done, &ndone);
	ck_assert_msg(run_until(done_seen, START_MS), "stop did not complete");
	ck_assert_uint_ge(now_ms() - t0, 300);
	ck_assert(WIFSIGNALED(last_ws) && WTERMSIG(last_ws) == SIGKILL);
	ck_assert_uint_eq(child_restarts(child), 0);
}
END_TEST

/* Nothing running: done comes from the loop, not from inside child_stop. */
START_TEST(test_stop_when_idle)
{
	new_child(self, "normal", NULL, 0);
	child_stop(child, 1000, on_done, &ndone);
	ck_assert_int_eq(ndone, 0);
	ck_assert_msg(run_until(done_seen, START_MS), "stop did not complete");
	ck_assert_int_eq(ndone, 1);
}
END_TEST

/* A stop during the backoff cancels the restart. */
START_TEST(test_stop_during_backoff)
{
	new_child(self, "normal", NULL, 0);
	ck_assert_int_eq(child_start(child), 0);
	ck_assert_msg(run_until(child_status_seen, START_MS), "no status from the bridge");
	ck_assert_int_eq(kill(child_pid(child), SIGKILL), 0);
	ck_assert_msg(run_until(bridge_reaped, START_MS), "bridge not reaped");
	ck_assert_uint_eq(child_restarts(child), 1);
	ck_assert_int_eq(child_start(child), -EALREADY); /* a restart is pending */
	child_stop(child, 1000, on_done, &ndone);
	ck_assert_msg(run_until(done_seen, START_MS), "stop did not complete");
	run_for(CHILD_BACKOFF_MIN_MS + 300);
	ck_assert_int_eq(child_pid(child), 0);
}
END_TEST

/* The bridge of a supervisor that was killed (named mllp-bridge, in the
 * pidfile) is stopped before ours starts. */
START_TEST(test_stale_bridge_evicted)
{
	char link[160];
	int sv[2];
	pid_t stale;
	FILE *f;

	snprintf(link, sizeof(link), "%s/mllp-bridge", dir);
	ck_assert_int_eq(symlink(self, link), 0);
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv), 0);
	stale = fork();
	ck_assert_int_ge(stale, 0);
	if (stale == 0) {
		dup2(sv[1], 3);
		close_range(4, ~0U, 0);
		execl(link, link, "-c", "normal", "-S", "3", (char *)NULL);
		_exit(126);
	}
	close(sv[1]);
	/* Its first status proves it runs under the name the check looks for. */
	ck_assert_int_eq(poll(&(struct pollfd){.fd = sv[0], .events = POLLIN}, 1, START_MS), 1);
	f = fopen(pidfile, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f, "%d\n", (int)stale);
	fclose(f);

	new_child(self, "normal", NULL, 0);
	send_gate(1, 0);
	send_tunnels();
	ck_assert_int_eq(child_start(child), 0);
	want_gen = 1;
	want_restarts = 0;
	wait_gate_and_tunnels(START_MS);
	ck_assert_int_eq(other_pid, stale);
	ck_assert(WIFEXITED(other_ws) && WEXITSTATUS(other_ws) == 0); /* it got SIGTERM */
	ck_assert_int_ne(child_pid(child), stale);
	ck_assert_int_eq(pidfile_pid(), child_pid(child));
	close(sv[0]);
}
END_TEST

/* A pidfile naming a live process that is not a bridge: left alone. */
START_TEST(test_pidfile_other_process_left_alone)
{
	pid_t sleeper = fork();
	FILE *f;

	ck_assert_int_ge(sleeper, 0);
	if (sleeper == 0) {
		execl("/bin/sleep", "sleep", "30", (char *)NULL);
		_exit(126);
	}
	usleep(50000); /* past exec: its comm is "sleep" */
	f = fopen(pidfile, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f, "%d\n", (int)sleeper);
	fclose(f);
	new_child(self, "normal", NULL, 0);
	ck_assert_int_eq(child_start(child), 0);
	ck_assert_int_gt(child_pid(child), 0);
	ck_assert_msg(run_until(child_status_seen, START_MS), "no status from the bridge");
	ck_assert_int_eq(kill(sleeper, 0), 0);
	ck_assert_int_eq(other_pid, 0);
	kill(sleeper, SIGKILL);
	waitpid(sleeper, NULL, 0);
}
END_TEST

/* Root drops to the user; an unknown user or root by name is refused. */
START_TEST(test_user_drop)
{
	struct passwd *pw = getpwnam("nobody");
	char copy[160], cmd[PATH_MAX + 512];

	if (geteuid() != 0 || !pw) {
		fprintf(stderr, "test_user_drop: needs root and user nobody; skipped\n");
		return;
	}
	/* A copy nobody can execute, whatever the build directory's modes. */
	snprintf(copy, sizeof(copy), "%s/fake", dir);
	snprintf(cmd, sizeof(cmd), "cp '%s' '%s' && chmod 0755 '%s' '%s'", self, copy, copy, dir);
	ck_assert_int_eq(system(cmd), 0);
	new_child(copy, "normal", "nobody", 0);
	ck_assert_int_eq(child_start(child), 0);
	ck_assert_msg(run_until(child_status_seen, START_MS), "no status (last wstatus %#x)",
		      last_ws);
	ck_assert_uint_eq(st("uid")->depth, pw->pw_uid);
	ck_assert_uint_eq(st("uid")->oldest_age_ms, pw->pw_gid);
	child_free(child);
	child = NULL;

	new_child(copy, "normal", "no-such-user-here", 0);
	ck_assert_int_eq(child_start(child), -ENOENT);
	ck_assert_int_eq(child_pid(child), 0);
	child_free(child);
	child = NULL;
	new_child(copy, "normal", "root", 0);
	ck_assert_int_eq(child_start(child), -EPERM);
}
END_TEST

/* A bridge that sends garbage is not believed again, and not killed. */
START_TEST(test_garbage_from_bridge)
{
	new_child(self, "garbage", NULL, 0);
	ck_assert_int_eq(child_start(child), 0);
	/* The status and the garbage may come in one read: count, do not look. */
	ck_assert_msg(run_until(status_received, START_MS), "no status from the bridge");
	run_for(200);
	ck_assert_ptr_null(child_status(child));
	ck_assert_int_eq(nstatus, 1);
	send_gate(5, 0);
	run_for(200);
	ck_assert_int_eq(nstatus, 1); /* its answer is not read */
	ck_assert_int_gt(child_pid(child), 0);
	ck_assert_int_eq(nreaped, 0);
}
END_TEST

/* A bridge that does not read: sends find the socket full; the latest gate
 * still arrives, and the ones in between were coalesced. */
START_TEST(test_full_socket_resends_latest)
{
	uint32_t i;

	new_child(self, "slow", NULL, 0);
	send_tunnels();
	ck_assert_int_eq(child_start(child), 0);
	for (i = 1; i <= 200; i++)
		send_gate(i, IPC_GATE_MAX);
	want_gen = 200;
	want_restarts = 0;
	wait_gate_and_tunnels(START_MS);
	ck_assert_uint_lt(st("gate")->oldest_age_ms, 200);
}
END_TEST

START_TEST(test_bad_options)
{
	struct child_opts o = {.path = self};

	ck_assert_int_eq(child_new(base, &o, NULL, NULL, &child), -EINVAL);
	ck_assert_ptr_null(child);
}
END_TEST

static Suite *child_suite(void)
{
	Suite *s = suite_create("appliance_child");
	TCase *tc = tcase_create("child");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 20);
	tcase_add_test(tc, test_start_gate_first);
	tcase_add_test(tc, test_restart_with_backoff);
	tcase_add_test(tc, test_stop);
	tcase_add_test(tc, test_stop_kills_after_timeout);
	tcase_add_test(tc, test_stop_when_idle);
	tcase_add_test(tc, test_stop_during_backoff);
	tcase_add_test(tc, test_stale_bridge_evicted);
	tcase_add_test(tc, test_pidfile_other_process_left_alone);
	tcase_add_test(tc, test_user_drop);
	tcase_add_test(tc, test_garbage_from_bridge);
	tcase_add_test(tc, test_full_socket_resends_latest);
	tcase_add_test(tc, test_bad_options);
	suite_add_tcase(s, tc);
	return s;
}

int main(int argc, char **argv)
{
	SRunner *sr;
	int failed;

	if (argc > 1 && !strcmp(argv[1], "-c"))
		return fake_bridge(argc, argv);
	sr = srunner_create(child_suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
