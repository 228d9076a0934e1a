/*
 * The control socket server. One connection is one request: read a line,
 * hand it up, write the reply, close. A request outlives its connection
 * (the client may go away) and even the server (control_free), because the
 * caller may still hold it for a slow answer; control_reply() is the one
 * place that frees it.
 */
#include <assert.h>
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "appliance/control.h"
#include "mllp-bridge/log.h"

#define CONTROL_BACKLOG	   16
#define CONTROL_GROUPS_MAX 1024 /* supplementary groups of a peer we look at */

enum req_state {
	RQ_READING, /* waiting for the line */
	RQ_PENDING, /* handed up; waiting for control_reply() */
	RQ_WRITING  /* reply queued; freed when written */
};

struct control_req {
	struct control *ctl;	 /* NULL once detached by control_free */
	struct bufferevent *bev; /* NULL once the client is gone */
	enum req_state state;
	LIST_ENTRY(control_req) link;
	int argc;
	char *argv[CONTROL_ARGS_MAX + 1];
	char line[CONTROL_LINE_MAX + 1];
};

struct control {
	struct event_base *base;
	struct evconnlistener *lis;
	char *path;
	int has_group;
	gid_t gid;
	control_cmd_cb cb;
	void *arg;
	unsigned nreqs;
	LIST_HEAD(, control_req) reqs;
};

/* ---- requests ---- */

static void req_close(struct control_req *r)
{
	if (r->bev)
		bufferevent_free(r->bev);
	r->bev = NULL;
}

static void req_free(struct control_req *r)
{
	req_close(r);
	if (r->ctl) {
		LIST_REMOVE(r, link);
		r->ctl->nreqs--;
	}
	free(r);
}

/* Splits the line on spaces. Returns NULL, or what is wrong for the ERR. */
static const char *req_parse(struct control_req *r, size_t len)
{
	char *save = NULL, *w;
	size_t i;

	for (i = 0; i < len; i++)
		if ((unsigned char)r->line[i] < 0x20 || r->line[i] == 0x7f)
			return "control characters in the request\n";
	r->line[len] = '\0';
	r->argc = 0;
	for (w = strtok_r(r->line, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
		if (r->argc == CONTROL_ARGS_MAX)
			return "too many words in the request\n";
		r->argv[r->argc++] = w;
	}
	r->argv[r->argc] = NULL;
	return r->argc ? NULL : "empty request\n";
}

static void req_write_cb(struct bufferevent *bev, void *arg)
{
	(void)bev;
	req_free(arg);
}

static void req_event_cb(struct bufferevent *bev, short events, void *arg)
{
	struct control_req *r = arg;

	(void)bev;
	if (events & BEV_EVENT_TIMEOUT)
		log_event(LOG_DEBUG, "control_timeout", " state=%d", (int)r->state);
	/* A client gone while its request is handed up: keep r for the
	 * caller's control_reply(). */
	if (r->state == RQ_PENDING)
		req_close(r);
	else
		req_free(r);
}

/* The line is complete, too long, or not there yet. */
static void req_read_cb(struct bufferevent *bev, void *arg)
{
	struct control_req *r = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	struct evbuffer_ptr eol = evbuffer_search_eol(in, NULL, NULL, EVBUFFER_EOL_LF);
	const char *bad;
	size_t len;

	if (eol.pos < 0 && evbuffer_get_length(in) < CONTROL_LINE_MAX)
		return;
	/* More would be ignored anyway; EOF from here on means nothing. */
	bufferevent_disable(bev, EV_READ);
	r->state = RQ_PENDING;
	if (eol.pos < 0 || (size_t)eol.pos + 1 > CONTROL_LINE_MAX) {
		control_reply(r, 0, "request line too long\n");
		return;
	}
	len = (size_t)eol.pos;
	evbuffer_remove(in, r->line, len + 1);
	if (len && r->line[len - 1] == '\r')
		len--;
	bad = req_parse(r, len);
	if (bad) {
		control_reply(r, 0, bad);
		return;
	}
	/* Last: the callback may reply at once, which frees r. */
	r->ctl->cb(r->ctl->arg, r, r->argc, r->argv);
}

void control_reply(struct control_req *r, int ok, const char *body)
{
	static const struct timeval write_tv = {CONTROL_WRITE_TIMEOUT_S, 0};
	struct evbuffer *out;
	size_t len = body ? strlen(body) : 0;

	assert(r->state == RQ_PENDING);
	if (!r->bev) {
		req_free(r);
		return;
	}
	out = bufferevent_get_output(r->bev);
	evbuffer_add(out, ok ? "OK\n" : "ERR\n", ok ? 3 : 4);
	if (len > CONTROL_BODY_MAX) {
		evbuffer_add(out, body, CONTROL_BODY_MAX);
		evbuffer_add_printf(out, "\n(cut at %u bytes)\n", CONTROL_BODY_MAX);
	} else if (len) {
		evbuffer_add(out, body, len);
	}
	r->state = RQ_WRITING;
	bufferevent_setcb(r->bev, NULL, req_write_cb, req_event_cb, r);
	bufferevent_set_timeouts(r->bev, NULL, &write_tv);
	bufferevent_enable(r->bev, EV_WRITE);
}

/* ---- peers ---- */

/* Supplementary groups of the peer: as the kernel saw them at connect()
 * (SO_PEERGROUPS), else as the group database says. */
static int peer_has_group(int fd, uid_t uid, gid_t gid)
{
	gid_t groups[CONTROL_GROUPS_MAX];
	socklen_t len = sizeof(groups);
	int n = CONTROL_GROUPS_MAX, i;
	struct passwd *pw;

	if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) == 0) {
		n = (int)(len / sizeof(gid_t));
	} else {
		pw = getpwuid(uid);
		if (!pw || getgrouplist(pw->pw_name, pw->pw_gid, groups, &n) < 0)
			return 0;
	}
	for (i = 0; i < n; i++)
		if (groups[i] == gid)
			return 1;
	return 0;
}

/* Root, ourselves (a supervisor run unprivileged), or the group. */
static int peer_allowed(const struct control *c, int fd, struct ucred *cred)
{
	socklen_t len = sizeof(*cred);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, cred, &len) < 0)
		return 0;
	if (cred->uid == 0 || cred->uid == geteuid())
		return 1;
	if (!c->has_group)
		return 0;
	return cred->gid == c->gid || peer_has_group(fd, cred->uid, c->gid);
}

static void accept_cb(struct evconnlistener *lis, evutil_socket_t fd, struct sockaddr *sa,
		      int salen, void *arg)
{
	static const struct timeval read_tv = {CONTROL_READ_TIMEOUT_S, 0};
	struct control *c = arg;
	struct ucred cred = {0};
	struct control_req *r;

	(void)lis;
	(void)sa;
	(void)salen;
	if (!peer_allowed(c, fd, &cred)) {
		log_event(LOG_WARN, "control_denied", " pid=%d uid=%d gid=%d", (int)cred.pid,
			  (int)cred.uid, (int)cred.gid);
		close(fd);
		return;
	}
	if (c->nreqs >= CONTROL_CONNS_MAX) {
		log_event(LOG_WARN, "control_busy", " pid=%d uid=%d", (int)cred.pid, (int)cred.uid);
		close(fd);
		return;
	}
	r = calloc(1, sizeof(*r));
	if (r)
		r->bev = bufferevent_socket_new(c->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (!r || !r->bev) {
		free(r);
		close(fd);
		return;
	}
	r->ctl = c;
	LIST_INSERT_HEAD(&c->reqs, r, link);
	c->nreqs++;
	/* Reading stops at one full line's worth: a longer one is refused. */
	bufferevent_setwatermark(r->bev, EV_READ, 0, CONTROL_LINE_MAX);
	bufferevent_setcb(r->bev, req_read_cb, NULL, req_event_cb, r);
	bufferevent_set_timeouts(r->bev, &read_tv, NULL);
	bufferevent_enable(r->bev, EV_READ);
}

static void accept_error_cb(struct evconnlistener *lis, void *arg)
{
	(void)lis;
	(void)arg;
	log_event(LOG_WARN, "control_accept_failed", " error=\"%s\"", strerror(errno));
}

/* ---- the socket file ---- */

/* mkdir -p of path's directory, 0755. */
static int make_parent(const char *path)
{
	char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char *p;

	snprintf(dir, sizeof(dir), "%s", path);
	p = strrchr(dir, '/');
	if (!p || p == dir)
		return 0;
	*p = '\0';
	for (p = dir + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(dir, 0755) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(dir, 0755) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

/* A socket left by a dead server goes; a live server's, or a file that is
 * not a socket, stays and makes us refuse. */
static int clear_stale(const struct sockaddr_un *sun)
{
	struct stat st;
	int fd, err;

	if (lstat(sun->sun_path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode))
		return -EEXIST;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	/* Non-blocking: a live server with a full backlog gives EAGAIN. */
	err = connect(fd, (const struct sockaddr *)sun, sizeof(*sun)) < 0 ? -errno : 0;
	close(fd);
	if (err == -ECONNREFUSED)
		return unlink(sun->sun_path) < 0 && errno != ENOENT ? -errno : 0;
	return err == 0 || err == -EAGAIN ? -EADDRINUSE : err;
}

/* Binds with no group or other access from the first moment, then opens
 * it to the group. */
static int bind_listen(const struct control *c, const struct sockaddr_un *sun, int *out)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	mode_t old;
	int err = 0;

	if (fd < 0)
		return -errno;
	old = umask(0177);
	if (bind(fd, (const struct sockaddr *)sun, sizeof(*sun)) < 0)
		err = -errno;
	umask(old);
	if (!err && c->has_group &&
	    (chown(sun->sun_path, (uid_t)-1, c->gid) < 0 || chmod(sun->sun_path, 0660) < 0))
		err = -errno;
	if (!err && listen(fd, CONTROL_BACKLOG) < 0)
		err = -errno;
	if (err) {
		close(fd);
		return err;
	}
	*out = fd;
	return 0;
}

static int resolve_group(struct control *c, const char *group)
{
	struct group *gr;

	if (!group)
		return 0;
	gr = getgrnam(group);
	if (!gr)
		return -ENOENT;
	c->gid = gr->gr_gid;
	c->has_group = 1;
	return 0;
}

/* The steps of control_new that may fail, each logged with its own name. */
static int setup(struct control *c, const char *group, const struct sockaddr_un *sun, int *fd)
{
	const char *step = "group";
	int err = resolve_group(c, group);

	if (!err) {
		step = "mkdir";
		err = make_parent(sun->sun_path);
	}
	if (!err) {
		step = "stale";
		err = clear_stale(sun);
	}
	if (!err) {
		step = "bind";
		err = bind_listen(c, sun, fd);
	}
	if (err)
		log_event(LOG_ERR, "control_failed", " path=%s step=%s group=%s error=\"%s\"",
			  sun->sun_path, step, group ? group : "(none)", strerror(-err));
	return err;
}

int control_new(struct event_base *base, const char *path, const char *group, control_cmd_cb cb,
		void *arg, struct control **out)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	struct control *c;
	int fd = -1, err;

	*out = NULL;
	if (!base || !path || !cb)
		return -EINVAL;
	if (strlen(path) >= sizeof(sun.sun_path))
		return -ENAMETOOLONG;
	memcpy(sun.sun_path, path, strlen(path));
	c = calloc(1, sizeof(*c));
	if (!c || !(c->path = strdup(path))) {
		free(c);
		return -ENOMEM;
	}
	c->base = base;
	c->cb = cb;
	c->arg = arg;
	LIST_INIT(&c->reqs);
	err = setup(c, group, &sun, &fd);
	if (err) {
		free(c->path);
		free(c);
		return err;
	}
	/* backlog 0: listen() was called already. */
	c->lis = evconnlistener_new(base, accept_cb, c,
				    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, fd);
	if (!c->lis) {
		close(fd);
		unlink(path);
		free(c->path);
		free(c);
		return -ENOMEM;
	}
	evconnlistener_set_error_cb(c->lis, accept_error_cb);
	*out = c;
	return 0;
}

/* A request handed up outlives the server: its client hears why now, and
 * control_reply() frees it later. */
static void req_detach(struct control_req *r)
{
	static const char msg[] = "ERR\nsupervisor stopping\n";

	LIST_REMOVE(r, link);
	r->ctl = NULL;
	if (r->state != RQ_PENDING) {
		req_free(r);
		return;
	}
	if (r->bev &&
	    send(bufferevent_getfd(r->bev), msg, sizeof(msg) - 1, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
		log_event(LOG_DEBUG, "control_stop_reply", " error=\"%s\"", strerror(errno));
	req_close(r);
}

void control_free(struct control *c)
{
	if (!c)
		return;
	while (!LIST_EMPTY(&c->reqs))
		req_detach(LIST_FIRST(&c->reqs));
	if (c->lis)
		evconnlistener_free(c->lis);
	unlink(c->path);
	free(c->path);
	free(c);
}
