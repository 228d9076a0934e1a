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

static int rotate(const struct cfg_sftp *s, const char *type, const char *bridge_user,
		  struct text *t)
{
	char pub[PUB_MAX], fpr[SFTPC_FPR_MAX];
	char *next = next_path(s->key);
	int err;

	if (!next)
		return 0;
	if (!type)
		type = current_type(s->key);
	err = sftpc_keygen(next, type, strcmp(type, "rsa") ? 0 : SFTPKEYS_RSA_BITS, pub, sizeof pub,
			   fpr);
	if (err == -EEXIST)
		say(t, "%s exists: a rotation is under way; retire-key finishes it\n", next);
	else if (err < 0)
		say(t, "cannot create %s: %s\n", next, strerror(-err));
	else if (hand_to_bridge(next, bridge_user, t) == 0)
		say(t,
		    "new key %s %s\n"
		    "add this line to the user's authorized_keys on the server; the edge tries\n"
		    "it first from now on, and the old key while the server does not know it:\n"
		    "%s\n",
		    fpr, next, pub);
	if (err == 0)
		log_event(LOG_INFO, "sftp_key_rotated", " path=%s fingerprint=%s", next, fpr);
	free(next);
	return err == 0;
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

int sftpkeys_command(const struct cfg *cfg, const char *bridge_user, int argc, char **argv,
		     char *out, size_t cap)
{
	struct text t = {.p = out, .cap = cap};
	const struct cfg_sftp *s = argc >= 3 ? channel(cfg, argv[2]) : NULL;

	out[0] = '\0';
	if (argc == 2 && !strcmp(argv[1], "keys"))
		return list_keys(cfg, &t);
	if (argc >= 3 && !s) {
		say(&t, "no SFTP channel named %s\n", argv[2]);
		return 0;
	}
	if ((argc == 3 || argc == 4) && !strcmp(argv[1], "rotate-key")) {
		const char *type = argc == 4 ? argv[3] : NULL;

		if (type && strcmp(type, "ed25519") && strcmp(type, "rsa")) {
			say(&t, "key type must be ed25519 or rsa\n");
			return 0;
		}
		return rotate(s, type, bridge_user, &t);
	}
	if (argc == 3 && !strcmp(argv[1], "retire-key"))
		return retire(s, &t);
	say(&t, "usage: sftp keys | sftp rotate-key CHANNEL [ed25519|rsa] | "
		"sftp retire-key CHANNEL\n");
	return 0;
}
