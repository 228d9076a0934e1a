/*
 * The mllp-bridge child. One timer serves the three waits a state can have:
 * the backoff before a restart, the poll while a stale bridge goes away, and
 * the SIGKILL deadline of a stop. pid is non-zero exactly while a bridge we
 * forked has not been reaped.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "appliance/child.h"
#include "mllp-bridge/log.h"

#define CHILD_IPC_FD	     3	 /* the bridge's end of the socketpair, as -S says */
#define CHILD_GROUPS_MAX     256 /* supplementary groups of the bridge user */
#define CHILD_EVICT_POLL_MS  100
#define CHILD_EVICT_GRACE_MS 1000 /* after SIGKILL: start anyway (a bind failure restarts) */
#define CHILD_PIDFILE_MAX    32
#define CHILD_STAT_MAX	     512 /* enough of /proc/PID/stat for comm and state */
#define CHILD_COMM	     "mllp-bridge"

enum child_state {
	CS_IDLE,     /* never started, or stopped */
	CS_EVICTING, /* first start: waiting for a stale bridge to exit */
	CS_RUNNING,
	CS_BACKOFF, /* died; the timer restarts it */
	CS_STOPPING /* SIGTERM sent (or nothing ran); done() follows the reap */
};

struct bridge_child {
	struct event_base *base;
	char *path, *config, *user, *pidfile;
	int verbose;
	child_status_cb cb;
	void *arg;

	enum child_state state;
	pid_t pid;
	int fd; /* our end of the socketpair; -1 when none */
	struct event *ev_read;
	struct event *ev_timer;
	struct event *ev_resend;
	uint64_t started_ms;
	uint64_t backoff_ms;
	unsigned restarts;

	int evict_checked; /* the pidfile is looked at before the first start only */
	pid_t stale;
	uint64_t evict_deadline_ms;
	int stale_killed;

	void (*done)(void *arg);
	void *done_arg;

	/* Privileges the bridge runs with, resolved in the parent so that the
	 * forked child only makes async-signal-safe calls. */
	int drop;
	int warned_no_drop;
	uid_t uid;
	gid_t gid;
	gid_t groups[CHILD_GROUPS_MAX];
	int ngroups;

	/* The latest of each, resent first thing after every start. */
	int have_gate, have_tunnels, gate_pending, tunnels_pending;
	struct ipc_gate gate;
	struct ipc_tunnels tunnels;
	int have_status;
	struct ipc_status status;
	int have_outbox;
	struct ipc_outbox outbox;

	union ipc_msg scratch; /* encode/decode; too big for the stack */
	uint8_t buf[IPC_MSG_MAX];
};

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void timer_arm(struct bridge_child *c, uint64_t ms)
{
	struct timeval tv = {.tv_sec = (time_t)(ms / 1000),
			     .tv_usec = (suseconds_t)(ms % 1000) * 1000};

	evtimer_add(c->ev_timer, &tv);
}

/* ---- pidfile and the stale bridge of a killed supervisor ---- */

static void pidfile_write(const struct bridge_child *c)
{
	char tmp[4096];
	FILE *f;

	if (!c->pidfile)
		return;
	/* Written aside and renamed: a reader never sees a half-written PID. */
	if (snprintf(tmp, sizeof(tmp), "%s.tmp", c->pidfile) >= (int)sizeof(tmp))
		return;
	f = fopen(tmp, "we");
	if (!f || fprintf(f, "%d\n", (int)c->pid) < 0 || fclose(f) != 0 ||
	    rename(tmp, c->pidfile) != 0) {
		log_event(LOG_WARN, "bridge_pidfile_failed", " path=%s error=\"%s\"", c->pidfile,
			  strerror(errno));
		unlink(tmp);
	}
}

static void pidfile_remove(const struct bridge_child *c)
{
	if (c->pidfile && unlink(c->pidfile) != 0 && errno != ENOENT)
		log_event(LOG_WARN, "bridge_pidfile_failed", " path=%s error=\"%s\"", c->pidfile,
			  strerror(errno));
}

/* Is pid a live (not zombie) process called mllp-bridge? A zombie counts as
 * gone: it has closed its sockets, and it may be nobody's to reap here. */
static int proc_is_live_bridge(pid_t pid)
{
	char path[64], stat[CHILD_STAT_MAX];
	const char *open_paren, *close_paren;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, stat, sizeof(stat) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	stat[n] = '\0';
	/* "PID (COMM) S ...": comm may itself hold parentheses. */
	open_paren = strchr(stat, '(');
	close_paren = strrchr(stat, ')');
	if (!open_paren || !close_paren || close_paren[1] != ' ' || !close_paren[2])
		return 0;
	if ((size_t)(close_paren - open_paren - 1) != strlen(CHILD_COMM) ||
	    strncmp(open_paren + 1, CHILD_COMM, strlen(CHILD_COMM)) != 0)
		return 0;
	return close_paren[2] != 'Z' && close_paren[2] != 'X';
}

/* The PID in the pidfile if it names a live bridge that is not ours, else 0. */
static pid_t stale_bridge(const struct bridge_child *c)
{
	char text[CHILD_PIDFILE_MAX];
	ssize_t n;
	long pid;
	int fd;

	if (!c->pidfile)
		return 0;
	fd = open(c->pidfile, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, text, sizeof(text) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	text[n] = '\0';
	pid = strtol(text, NULL, 10);
	if (pid <= 1 || pid > INT32_MAX || pid == getpid())
		return 0;
	return proc_is_live_bridge((pid_t)pid) ? (pid_t)pid : 0;
}

static void evict_start(struct bridge_child *c, pid_t pid)
{
	log_event(LOG_WARN, "bridge_stale", " pid=%d action=SIGTERM", (int)pid);
	c->stale = pid;
	c->stale_killed = 0;
	c->evict_deadline_ms = now_ms() + CHILD_EVICT_MS;
	c->state = CS_EVICTING;
	kill(pid, SIGTERM);
	timer_arm(c, CHILD_EVICT_POLL_MS);
}

static int spawn(struct bridge_child *c);
static void schedule_restart(struct bridge_child *c, uint64_t uptime_ms);

/* Polled: the stale bridge gone (or beyond all patience), start ours. */
static void evict_poll(struct bridge_child *c)
{
	uint64_t now = now_ms();
	int gone = !proc_is_live_bridge(c->stale);

	if (!gone && now < c->evict_deadline_ms + CHILD_EVICT_GRACE_MS) {
		if (now >= c->evict_deadline_ms && !c->stale_killed) {
			log_event(LOG_WARN, "bridge_stale", " pid=%d action=SIGKILL",
				  (int)c->stale);
			kill(c->stale, SIGKILL);
			c->stale_killed = 1;
		}
		timer_arm(c, CHILD_EVICT_POLL_MS);
		return;
	}
	log_event(gone ? LOG_INFO : LOG_WARN, "bridge_stale_done", " pid=%d gone=%d", (int)c->stale,
		  gone);
	c->stale = 0;
	if (spawn(c) < 0)
		schedule_restart(c, 0);
}

/* ---- privileges ---- */

/* Resolves the user to drop to. Not root, or no user: runs as we are. */
static int resolve_user(struct bridge_child *c)
{
	struct passwd *pw;
	int n = CHILD_GROUPS_MAX;

	c->drop = 0;
	if (!c->user || geteuid() != 0) {
		if (!c->warned_no_drop)
			log_event(LOG_WARN, "bridge_no_privdrop", " user=%s euid=%d",
				  c->user ? c->user : "(none)", (int)geteuid());
		c->warned_no_drop = 1;
		return 0;
	}
	pw = getpwnam(c->user);
	if (!pw) {
		log_event(LOG_ERR, "bridge_user_unknown", " user=%s", c->user);
		return -ENOENT;
	}
	/* Naming root would silently undo the privilege separation; running
	 * as root has to be asked for by naming no user. */
	if (pw->pw_uid == 0) {
		log_event(LOG_ERR, "bridge_user_is_root", " user=%s", c->user);
		return -EPERM;
	}
	if (getgrouplist(pw->pw_name, pw->pw_gid, c->groups, &n) < 0) {
		log_event(LOG_ERR, "bridge_user_groups", " user=%s groups=%d max=%d", c->user, n,
			  CHILD_GROUPS_MAX);
		return -E2BIG;
	}
	c->ngroups = n;
	c->uid = pw->pw_uid;
	c->gid = pw->pw_gid;
	c->drop = 1;
	return 0;
}

__attribute__((noreturn)) static void child_fail(const char *what)
{
	dprintf(STDERR_FILENO, "appliance: bridge child: %s: %s\n", what, strerror(errno));
	_exit(127);
}

/* In the forked child: only what exec needs, then exec. */
__attribute__((noreturn)) static void exec_bridge(const struct bridge_child *c, int fd)
{
	char *argv[] = {c->path, "-c", c->config, "-S", "3", c->verbose ? "-v" : NULL, NULL};
	struct sigaction sa = {.sa_handler = SIG_DFL};
	sigset_t none;
	int sig;

	/* dup2 clears FD_CLOEXEC on the copy; an fd already at 3 needs it
	 * cleared by hand. */
	if (fd == CHILD_IPC_FD) {
		if (fcntl(fd, F_SETFD, 0) < 0)
			child_fail("fcntl");
	} else if (dup2(fd, CHILD_IPC_FD) < 0) {
		child_fail("dup2");
	}
	/* Whatever the supervisor holds without FD_CLOEXEC stays here: the
	 * bridge gets 0, 1, 2 and its link, nothing else. */
	close_range(CHILD_IPC_FD + 1, ~0U, 0);
	/* Our ignored signals and mask survive exec; the bridge expects
	 * defaults. Its own process group keeps a terminal's ^C for us: we
	 * decide when it stops, and it drains. */
	for (sig = 1; sig < NSIG; sig++)
		sigaction(sig, &sa, NULL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	setpgid(0, 0);
	if (c->drop) {
		if (setgroups((size_t)c->ngroups, c->groups) < 0)
			child_fail("setgroups");
		if (setgid(c->gid) < 0)
			child_fail("setgid");
		if (setuid(c->uid) < 0)
			child_fail("setuid");
		/* A drop that can be undone is no drop. */
		if (setuid(0) == 0)
			child_fail("privileges still held after setuid");
	}
	execv(c->path, argv);
	child_fail(c->path);
}

/* ---- the link ---- */

/* Encodes and sends one message. Returns 0, -EAGAIN (socket buffer full:
 * retry later), or another negative errno (logged; the message is dropped,
 * a restart resends it). */
static int send_msg(struct bridge_child *c, enum ipc_type type)
{
	size_t len;
	ssize_t n;
	int err = ipc_encode(type, &c->scratch, c->buf, sizeof(c->buf), &len);

	if (err < 0) {
		log_event(LOG_ERR, "bridge_ipc_encode", " type=%d error=\"%s\"", (int)type,
			  strerror(-err));
		return err;
	}
	n = send(c->fd, c->buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
	if (n >= 0)
		return 0;
	if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)
		return -EAGAIN;
	err = -errno;
	log_event(LOG_WARN, "bridge_ipc_send", " type=%d error=\"%s\"", (int)type, strerror(-err));
	return err;
}

/* Sends whatever is pending, the gate first: the gate is what keeps MLLP
 * inside the tunnel, the tunnel states are only for /metrics. */
static void flush(struct bridge_child *c)
{
	struct timeval tv = {0, CHILD_RESEND_MS * 1000};

	if (c->fd < 0)
		return;
	if (c->gate_pending) {
		c->scratch.gate = c->gate;
		if (send_msg(c, IPC_GATE) == -EAGAIN)
			goto retry;
		c->gate_pending = 0;
	}
	if (c->tunnels_pending) {
		c->scratch.tunnels = c->tunnels;
		c->scratch.tunnels.bridge_restarts = c->restarts;
		if (send_msg(c, IPC_TUNNELS) == -EAGAIN)
			goto retry;
		c->tunnels_pending = 0;
	}
	return;
retry:
	evtimer_add(c->ev_resend, &tv);
}

static void resend_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	flush(arg);
}

/* Stops listening to this bridge; the reaper decides what happens to it. */
static void read_stop(struct bridge_child *c)
{
	if (c->ev_read)
		event_free(c->ev_read);
	c->ev_read = NULL;
	c->have_status = 0;
	c->have_outbox = 0;
}

/* One datagram: 1 to read on, 0 when nothing is left or the link is done. */
static int read_one(struct bridge_child *c)
{
	struct iovec iov = {.iov_base = c->buf, .iov_len = sizeof(c->buf)};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	enum ipc_type type;
	ssize_t n = recvmsg(c->fd, &mh, MSG_DONTWAIT);
	int err;

	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return 0;
	if (n <= 0) {
		/* Expected while stopping; otherwise the reap follows. */
		log_event(c->state == CS_STOPPING ? LOG_DEBUG : LOG_WARN, "bridge_ipc_closed",
			  " pid=%d error=\"%s\"", (int)c->pid,
			  n == 0 ? "end of file" : strerror(errno));
		read_stop(c);
		return 0;
	}
	err = (mh.msg_flags & MSG_TRUNC) ? -EMSGSIZE
					 : ipc_decode(c->buf, (size_t)n, &type, &c->scratch);
	if (err == 0 && type != IPC_STATUS && type != IPC_OUTBOX)
		err = -EBADMSG;
	if (err < 0) {
		/* ipc.h: a peer that sent garbage is not trusted again. We
		 * keep sending it the gate; its status is not believed. */
		log_event(LOG_ERR, "bridge_ipc_bad", " pid=%d size=%zd error=\"%s\"", (int)c->pid,
			  n, strerror(-err));
		read_stop(c);
		return 0;
	}
	if (type == IPC_OUTBOX) {
		c->outbox = c->scratch.outbox;
		c->have_outbox = 1;
		return 1;
	}
	c->status = c->scratch.status;
	c->have_status = 1;
	if (c->cb)
		c->cb(c->arg, &c->status);
	return 1;
}

static void read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct bridge_child *c = arg;

	(void)fd;
	(void)what;
	while (c->ev_read && read_one(c))
		;
}

static void link_close(struct bridge_child *c)
{
	read_stop(c);
	if (c->ev_resend)
		evtimer_del(c->ev_resend);
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}

/* ---- starting, dying, stopping ---- */

/* Forks and execs the bridge; the latest gate and tunnels go out at once. */
static int spawn(struct bridge_child *c)
{
	int sv[2], err;
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return -errno;
	pid = fork();
	if (pid < 0) {
		err = -errno;
		close(sv[0]);
		close(sv[1]);
		log_event(LOG_ERR, "bridge_fork_failed", " error=\"%s\"", strerror(-err));
		return err;
	}
	if (pid == 0)
		exec_bridge(c, sv[1]);
	close(sv[1]);
	c->fd = sv[0];
	c->pid = pid;
	c->state = CS_RUNNING;
	c->started_ms = now_ms();
	c->have_status = 0;
	c->have_outbox = 0;
	if (fcntl(c->fd, F_SETFL, O_NONBLOCK) < 0)
		log_event(LOG_WARN, "bridge_ipc_nonblock", " error=\"%s\"", strerror(errno));
	c->ev_read = event_new(c->base, c->fd, EV_READ | EV_PERSIST, read_cb, c);
	if (!c->ev_read || event_add(c->ev_read, NULL) < 0)
		log_event(LOG_ERR, "bridge_ipc_event", " pid=%d", (int)pid);
	pidfile_write(c);
	log_event(LOG_INFO, "bridge_started", " pid=%d path=%s restarts=%u", (int)pid, c->path,
		  c->restarts);
	c->gate_pending = c->have_gate;
	c->tunnels_pending = c->have_tunnels;
	flush(c);
	return 0;
}

/* Backoff: 1 s doubling to 60 s, back to 1 s after a bridge that stayed up. */
static void schedule_restart(struct bridge_child *c, uint64_t uptime_ms)
{
	uint64_t delay;

	if (uptime_ms >= CHILD_STABLE_MS)
		c->backoff_ms = CHILD_BACKOFF_MIN_MS;
	delay = c->backoff_ms;
	c->backoff_ms = delay * 2 > CHILD_BACKOFF_MAX_MS ? CHILD_BACKOFF_MAX_MS : delay * 2;
	c->state = CS_BACKOFF;
	log_event(LOG_INFO, "bridge_restart_scheduled", " in_ms=%llu restarts=%u",
		  (unsigned long long)delay, c->restarts);
	timer_arm(c, delay);
}

static void stop_finish(struct bridge_child *c)
{
	void (*done)(void *) = c->done;

	c->state = CS_IDLE;
	evtimer_del(c->ev_timer);
	c->done = NULL;
	/* Last: done may free c. */
	if (done)
		done(c->done_arg);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct bridge_child *c = arg;

	(void)fd;
	(void)what;
	switch (c->state) {
	case CS_BACKOFF:
		if (spawn(c) < 0)
			schedule_restart(c, 0);
		break;
	case CS_EVICTING:
		evict_poll(c);
		break;
	case CS_STOPPING:
		if (!c->pid) {
			stop_finish(c);
			break;
		}
		/* The drain took too long; done() follows the reap. */
		log_event(LOG_WARN, "bridge_kill", " pid=%d", (int)c->pid);
		kill(c->pid, SIGKILL);
		break;
	case CS_IDLE:
	case CS_RUNNING:
		break;
	}
}

static void log_exit(const struct bridge_child *c, pid_t pid, int wstatus, uint64_t uptime_ms)
{
	const char *event = c->state == CS_STOPPING ? "bridge_stopped" : "bridge_exited";
	enum log_level lvl = c->state == CS_STOPPING ? LOG_INFO : LOG_WARN;

	if (WIFSIGNALED(wstatus)) {
		const char *name = sigabbrev_np(WTERMSIG(wstatus));

		log_event(lvl, event, " pid=%d signal=%s uptime_ms=%llu", (int)pid,
			  name ? name : "unknown", (unsigned long long)uptime_ms);
	} else {
		log_event(lvl, event, " pid=%d status=%d uptime_ms=%llu", (int)pid,
			  WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : -1,
			  (unsigned long long)uptime_ms);
	}
}

int child_new(struct event_base *base, const struct child_opts *o, child_status_cb cb, void *arg,
	      struct bridge_child **out)
{
	struct bridge_child *c;

	*out = NULL;
	if (!base || !o || !o->path || !o->config)
		return -EINVAL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->base = base;
	c->fd = -1;
	c->verbose = o->verbose;
	c->cb = cb;
	c->arg = arg;
	c->backoff_ms = CHILD_BACKOFF_MIN_MS;
	c->path = strdup(o->path);
	c->config = strdup(o->config);
	c->user = o->user ? strdup(o->user) : NULL;
	c->pidfile = o->pidfile ? strdup(o->pidfile) : NULL;
	c->ev_timer = evtimer_new(base, timer_cb, c);
	c->ev_resend = evtimer_new(base, resend_cb, c);
	if (!c->path || !c->config || (o->user && !c->user) || (o->pidfile && !c->pidfile) ||
	    !c->ev_timer || !c->ev_resend) {
		child_free(c);
		return -ENOMEM;
	}
	*out = c;
	return 0;
}

int child_start(struct bridge_child *c)
{
	pid_t stale;
	int err;

	/* A stop still waiting for its done() has to finish first. */
	if (c->pid || c->state != CS_IDLE)
		return -EALREADY;
	err = resolve_user(c);
	if (err < 0)
		return err;
	if (!c->evict_checked) {
		c->evict_checked = 1;
		stale = stale_bridge(c);
		if (stale) {
			evict_start(c, stale);
			return 0;
		}
	}
	return spawn(c);
}

int child_reaped(struct bridge_child *c, pid_t pid, int wstatus)
{
	uint64_t uptime;

	if (pid <= 0 || pid != c->pid)
		return 0;
	uptime = now_ms() - c->started_ms;
	log_exit(c, pid, wstatus, uptime);
	link_close(c);
	c->pid = 0;
	pidfile_remove(c);
	if (c->state == CS_STOPPING) {
		stop_finish(c);
	} else {
		c->restarts++;
		schedule_restart(c, uptime);
	}
	return 1;
}

void child_send_gate(struct bridge_child *c, const struct ipc_gate *g)
{
	c->gate = *g;
	c->have_gate = 1;
	c->gate_pending = 1;
	flush(c);
}

void child_send_tunnels(struct bridge_child *c, const struct ipc_tunnels *t)
{
	c->tunnels = *t;
	c->have_tunnels = 1;
	c->tunnels_pending = 1;
	flush(c);
}

void child_stop(struct bridge_child *c, int timeout_ms, void (*done)(void *arg), void *arg)
{
	c->done = done;
	c->done_arg = arg;
	if (c->state == CS_STOPPING)
		return;
	evtimer_del(c->ev_timer);
	c->state = CS_STOPPING;
	if (!c->pid) {
		timer_arm(c, 0);
		return;
	}
	log_event(LOG_INFO, "bridge_stopping", " pid=%d timeout_ms=%d", (int)c->pid, timeout_ms);
	kill(c->pid, SIGTERM);
	timer_arm(c, timeout_ms > 0 ? (uint64_t)timeout_ms : 0);
}

pid_t child_pid(const struct bridge_child *c)
{
	return c->pid;
}

unsigned child_restarts(const struct bridge_child *c)
{
	return c->restarts;
}

const struct ipc_outbox *child_outbox(const struct bridge_child *c)
{
	return c->have_outbox ? &c->outbox : NULL;
}

const struct ipc_status *child_status(const struct bridge_child *c)
{
	return c->have_status ? &c->status : NULL;
}

void child_free(struct bridge_child *c)
{
	if (!c)
		return;
	if (c->pid)
		kill(c->pid, SIGTERM);
	link_close(c);
	if (c->ev_timer)
		event_free(c->ev_timer);
	if (c->ev_resend)
		event_free(c->ev_resend);
	free(c->path);
	free(c->config);
	free(c->user);
	free(c->pidfile);
	free(c);
}
