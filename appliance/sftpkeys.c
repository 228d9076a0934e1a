#include "appliance/sftpkeys.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <libgen.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>

#include "mllp-bridge/log.h"
#include "mllp-bridge/sftpc.h"

#define PUB_MAX (SFTPC_PIN_MAX + 1)

/* Appends to a bounded text (the control reply). */
struct text {
	char *p;
	size_t cap, len;
};

static void say(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void say(struct text *t, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (t->len >= t->cap)
		return;
	va_start(ap, fmt);
	n = vsnprintf(t->p + t->len, t->cap - t->len, fmt, ap);
	va_end(ap);
	if (n > 0)
		t->len += (size_t)n < t->cap - t->len ? (size_t)n : t->cap - t->len - 1;
}

/* The `sftp:` of a channel by name: pull integrations, then push
 * destinations. */
static const struct cfg_sftp *channel(const struct cfg *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->nintegrations; i++)
		if (cfg->integrations[i].sftp && !strcmp(cfg->integrations[i].name, name))
			return cfg->integrations[i].sftp;
	for (size_t i = 0; i < cfg->ndestinations; i++)
		if (cfg->destinations[i].sftp && !strcmp(cfg->destinations[i].name, name))
			return cfg->destinations[i].sftp;
	return NULL;
}

static char *next_path(const char *key)
{
	char *p;

	return asprintf(&p, "%s.next", key) < 0 ? NULL : p;
}

/* One key file's line: its type and fingerprint, or why it is unusable. */
static void describe(struct text *t, const char *label, const char *path)
{
	char pub[PUB_MAX], fpr[SFTPC_FPR_MAX], why[256] = "";
	int err = sftpc_key_info(path, pub, sizeof pub, fpr, why, sizeof why);

	if (err == -ENOENT && !strcmp(label, "next"))
		return;
	if (err < 0) {
		say(t, "  %-7s %s: %s\n", label, path, *why ? why : strerror(-err));
		return;
	}
	*strchrnul(pub, ' ') = '\0';
	say(t, "  %-7s %s %s %s\n", label, pub, fpr, path);
}

static void list_one(struct text *t, const char *name, const char *dir, const struct cfg_sftp *s)
{
	char *next = next_path(s->key);

	say(t, "%s (%s, %s@%s):\n", name, dir, s->user, s->server_text);
	describe(t, "current", s->key);
	if (next)
		describe(t, "next", next);
	free(next);
}

static int list_keys(const struct cfg *cfg, struct text *t)
{
	size_t n = 0;

	for (size_t i = 0; i < cfg->nintegrations; i++)
		if (cfg->integrations[i].sftp && ++n)
			list_one(t, cfg->integrations[i].name, "pull", cfg->integrations[i].sftp);
	for (size_t i = 0; i < cfg->ndestinations; i++)
		if (cfg->destinations[i].sftp && ++n)
			list_one(t, cfg->destinations[i].name, "push", cfg->destinations[i].sftp);
	if (!n)
		say(t, "no SFTP channel is configured\n");
	return 1;
}

/* Readable by the bridge's group, by nobody else. Not being root (a test
 * run) leaves the file the caller's. */
static int hand_to_bridge(const char *path, const char *bridge_user, struct text *t)
{
	struct passwd *pw = bridge_user ? getpwnam(bridge_user) : NULL;

	if (geteuid() != 0)
		return 0;
	if (!pw) {
		say(t, "no such user %s: %s stays root's only\n", bridge_user ? bridge_user : "-",
		    path);
		return -ENOENT;
	}
	if (chown(path, 0, pw->pw_gid) < 0 || chmod(path, 0640) < 0) {
		say(t, "%s: %s\n", path, strerror(errno));
		return -errno;
	}
	return 0;
}

static const char *current_type(const char *key)
{
	char pub[PUB_MAX], why[256];

	if (sftpc_key_info(key, pub, sizeof pub, NULL, why, sizeof why) == 0 &&
	    !strncmp(pub, "ssh-rsa ", 8))
		return "rsa";
	return "ed25519";
}

/* In the child: makes <key>.next and writes the answer (its first byte '1'
 * or '0') to fd. */
static void make_next(const char *key, const char *type, const char *bridge_user, int fd)
{
	char pub[PUB_MAX], fpr[SFTPC_FPR_MAX], text[SFTPKEYS_TEXT_MAX];
	struct text t = {.p = text + 1, .cap = sizeof text - 1};
	char *next = next_path(key);
	int err = next ? sftpc_keygen(next, type, strcmp(type, "rsa") ? 0 : SFTPKEYS_RSA_BITS, pub,
				      sizeof pub, fpr)
		       : -ENOMEM;

	if (err == -EEXIST)
		say(&t, "%s exists: a rotation is under way; retire-key finishes it\n", next);
	else if (err < 0)
		say(&t, "cannot create %s: %s\n", next ? next : key, strerror(-err));
	else if ((err = hand_to_bridge(next, bridge_user, &t)) == 0)
		say(&t,
		    "new key %s %s\n"
		    "add this line to the user's authorized_keys on the server; the edge tries\n"
		    "it first from now on, and the old key while the server does not know it:\n"
		    "%s\n",
		    fpr, next, pub);
	text[0] = err == 0 ? '1' : '0';
	for (size_t off = 0, n = t.len + 1; off < n;) {
		ssize_t w = write(fd, text + off, n - off);
		if (w <= 0)
			break;
		off += (size_t)w;
	}
	free(next);
}

/* A rotation under way: the child's answer, read from the pipe. */
struct rotation {
	struct event *ev;
	int fd;
	char buf[SFTPKEYS_TEXT_MAX];
	size_t len;
	sftpkeys_done_cb done;
	void *arg;
	char path[CFG_VALUE_MAX + 8];
};

static void on_child_text(evutil_socket_t fd, short what, void *arg)
{
	struct rotation *r = arg;
	ssize_t n = read(fd, r->buf + r->len, sizeof r->buf - 1 - r->len);
	int ok;

	(void)what;
	if (n > 0 && r->len + (size_t)n < sizeof r->buf - 1) {
		r->len += (size_t)n;
		return;
	}
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	r->buf[r->len] = '\0';
	ok = r->len > 0 && r->buf[0] == '1';
	if (ok)
		log_event(LOG_INFO, "sftp_key_rotated", " path=%s", r->path);
	r->done(r->arg, ok, r->len ? r->buf + 1 : "the key generator died without an answer\n");
	event_free(r->ev);
	close(r->fd);
	free(r);
}

static void rotate(struct event_base *base, const struct cfg_sftp *s, const char *type,
		   const char *bridge_user, sftpkeys_done_cb done, void *arg)
{
	struct rotation *r = calloc(1, sizeof *r);
	int p[2] = {-1, -1};
	pid_t pid;

	if (!type)
		type = current_type(s->key);
	if (!r || pipe2(p, O_CLOEXEC) < 0 || (pid = fork()) < 0) {
		done(arg, 0, "cannot start the key generator\n");
		if (p[0] >= 0) {
			close(p[0]);
			close(p[1]);
		}
		free(r);
		return;
	}
	if (pid == 0) {
		close(p[0]);
		make_next(s->key, type, bridge_user, p[1]);
		_exit(0);
	}
	close(p[1]);
	*r = (struct rotation){.fd = p[0], .done = done, .arg = arg};
	snprintf(r->path, sizeof r->path, "%s.next", s->key);
	if (!(r->ev = event_new(base, p[0], EV_READ | EV_PERSIST, on_child_text, r)) ||
	    event_add(r->ev, NULL) < 0) {
		/* the child finishes its key alone; the operator sees it in `keys` */
		done(arg, 0, "cannot wait for the key generator\n");
		if (r->ev)
			event_free(r->ev);
		close(p[0]);
		free(r);
	}
}

static int retire(const struct cfg_sftp *s, struct text *t)
{
	char old[SFTPC_FPR_MAX] = "?", fpr[SFTPC_FPR_MAX], pub[PUB_MAX], why[256] = "";
	char *next = next_path(s->key), *dir;
	int ok = 0, fd;

	if (!next || !(dir = strdup(s->key))) {
		free(next);
		return 0;
	}
	if (sftpc_key_info(next, pub, sizeof pub, fpr, why, sizeof why) < 0) {
		say(t, "%s: %s: nothing to retire\n", next, *why ? why : "no next key");
	} else {
		if (sftpc_key_info(s->key, pub, sizeof pub, old, why, sizeof why) < 0)
			snprintf(old, sizeof old, "?"); /* the old key was unusable anyway */
		if (rename(next, s->key) < 0) {
			say(t, "rename %s: %s\n", next, strerror(errno));
		} else {
			/* the rename is the rotation: make it survive a power cut */
			if ((fd = open(dirname(dir), O_RDONLY | O_DIRECTORY)) >= 0) {
				(void)fsync(fd);
				close(fd);
			}
			say(t,
			    "retired %s; %s is now the key in use\n"
			    "remove the old public key from the server's authorized_keys\n",
			    old, fpr);
			log_event(LOG_INFO, "sftp_key_retired", " path=%s old=%s new=%s", s->key,
				  old, fpr);
			ok = 1;
		}
	}
	free(dir);
	free(next);
	return ok;
}

void sftpkeys_command(struct event_base *base, const struct cfg *cfg, const char *bridge_user,
		      int argc, char **argv, sftpkeys_done_cb done, void *arg)
{
	char out[SFTPKEYS_TEXT_MAX];
	struct text t = {.p = out, .cap = sizeof out};
	const struct cfg_sftp *s = argc >= 3 ? channel(cfg, argv[2]) : NULL;
	const char *type = argc == 4 ? argv[3] : NULL;
	int ok = 0;

	out[0] = '\0';
	if (argc == 2 && !strcmp(argv[1], "keys")) {
		ok = list_keys(cfg, &t);
	} else if (argc >= 3 && !s) {
		say(&t, "no SFTP channel named %s\n", argv[2]);
	} else if ((argc == 3 || argc == 4) && !strcmp(argv[1], "rotate-key")) {
		if (!type || !strcmp(type, "ed25519") || !strcmp(type, "rsa")) {
			rotate(base, s, type, bridge_user, done, arg);
			return;
		}
		say(&t, "key type must be ed25519 or rsa\n");
	} else if (argc == 3 && !strcmp(argv[1], "retire-key")) {
		ok = retire(s, &t);
	} else {
		say(&t, "usage: sftp keys | sftp rotate-key CHANNEL [ed25519|rsa] | "
			"sftp retire-key CHANNEL\n");
	}
	done(arg, ok, out);
}
