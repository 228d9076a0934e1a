/*
 * sftpc-cli: the SFTP client module (mllp-bridge/sftpc.h) from the shell,
 * for t_sftpc and for operators checking a file channel's server.
 *
 *   sftpc-cli -h HOST -p PORT -u USER -k KEY [-k KEY2 ...] -H PINFILE
 *             [-t TIMEOUT_MS] [-m MAX] [-w WAIT_MS] [-X CANCEL_MS] [-r N] [-a PATH]
 *             CMD ARGS
 *   sftpc-cli keyinfo KEYFILE | keygen PATH ed25519|rsa [BITS] | pinfpr "PIN LINE"
 *
 * CMD: ls DIR ("name<TAB>size<TAB>mtime<TAB>regular" per entry), get REMOTE
 * LOCAL ("SHA256HEX<TAB>LENGTH", at most MAX bytes), put LOCAL REMOTE
 * ("synced=0|1"), mv FROM TO, rm PATH, mkdir DIR, stat PATH
 * ("size<TAB>mtime<TAB>regular"). PINFILE holds one pin per line (blank
 * lines and # comments skipped). After connecting, "key=INDEX
 * fpr=SHA256:..." goes to stderr. -w: sleep WAIT_MS between connecting and
 * the command (a test stops the server meanwhile). -X: another thread shuts
 * the socket down CANCEL_MS after the connection is up (the files.c
 * cancellation), to show that the command then fails instead of hanging.
 * -r N: connect, run and close N times, then print "fds=COUNT" (open file
 * descriptors) to stderr, to show that a connection leaves none behind.
 * -a PATH: after the command, whatever its result, stat PATH on the same
 * connection and print "after=0 SIZE" or "after=ERRNONAME" to stderr, to
 * show whether a failed command left the connection usable.
 *
 * Exit 0 on success; 1 with "ERRNONAME: text" on stderr on a failure; 2 on
 * usage.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "mllp-bridge/sftpc.h"

#define LINE_MAX_CLI (SFTPC_PIN_MAX + 2)
#define PUT_MAX	     (256u << 20) /* a local file sent with put */

struct opts {
	struct sftpc_params p;
	const char *keys[SFTPC_KEYS_MAX];
	char *pins[SFTPC_HOSTKEYS_MAX];
	uint64_t max;
	long cancel_ms;
	long wait_ms;
	long repeat;
	const char *after; /* -a: stat this on the same connection afterwards */
};

static int usage(void)
{
	fprintf(stderr, "usage: sftpc-cli -h HOST -p PORT -u USER -k KEY [-k KEY] -H PINFILE "
			"[-t MS] [-m MAX] [-w MS] [-X MS] [-r N] [-a PATH]\n"
			"       ls|get|put|mv|rm|mkdir|stat ARGS\n"
			"       sftpc-cli keyinfo KEY | keygen PATH ed25519|rsa [BITS] | "
			"pinfpr PINLINE\n");
	return 2;
}

static int fail(int rc, const char *text)
{
	const char *name = strerrorname_np(-rc);

	fprintf(stderr, "%s: %s\n", name ? name : "ERROR", text && *text ? text : strerror(-rc));
	return 1;
}

static int read_pins(const char *file, struct opts *o)
{
	FILE *f = fopen(file, "r");
	char *line = malloc(LINE_MAX_CLI);

	if (!f || !line) {
		fprintf(stderr, "%s: %s\n", file, strerror(errno));
		free(line);
		if (f)
			fclose(f);
		return -1;
	}
	while (fgets(line, LINE_MAX_CLI, f)) {
		line[strcspn(line, "\r\n")] = '\0';
		if (line[0] == '\0' || line[0] == '#')
			continue;
		if (o->p.nhost_keys == SFTPC_HOSTKEYS_MAX ||
		    !(o->pins[o->p.nhost_keys] = strdup(line)))
			break;
		o->p.nhost_keys++;
	}
	fclose(f);
	free(line);
	o->p.host_keys = (const char *const *)o->pins;
	return 0;
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
	int c;

	o->max = UINT64_MAX;
	o->p.timeout_ms = 10000;
	o->p.keys = o->keys;
	while ((c = getopt(argc, argv, "+h:p:u:k:H:t:m:w:X:r:a:")) != -1) {
		switch (c) {
		case 'h':
			o->p.host = optarg;
			break;
		case 'p':
			o->p.port = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case 'u':
			o->p.user = optarg;
			break;
		case 'k':
			if (o->p.nkeys == SFTPC_KEYS_MAX)
				return -1;
			o->keys[o->p.nkeys++] = optarg;
			break;
		case 'H':
			if (read_pins(optarg, o) != 0)
				return -1;
			break;
		case 't':
			o->p.timeout_ms = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case 'm':
			o->max = strtoull(optarg, NULL, 10);
			break;
		case 'a':
			o->after = optarg;
			break;
		case 'r':
			o->repeat = strtol(optarg, NULL, 10);
			break;
		case 'w':
			o->wait_ms = strtol(optarg, NULL, 10);
			break;
		case 'X':
			o->cancel_ms = strtol(optarg, NULL, 10);
			break;
		default:
			return -1;
		}
	}
	return 0;
}

/* ---- Commands without a connection ---- */

static int cmd_local(int argc, char **argv)
{
	char pub[8192], fpr[SFTPC_FPR_MAX], why[SFTPC_ERR_MAX] = "";
	int rc;

	if (strcmp(argv[0], "keyinfo") == 0 && argc == 2) {
		rc = sftpc_key_info(argv[1], pub, sizeof(pub), fpr, why, sizeof(why));
	} else if (strcmp(argv[0], "keygen") == 0 && (argc == 3 || argc == 4)) {
		rc = sftpc_keygen(argv[1], argv[2], argc == 4 ? (unsigned)atoi(argv[3]) : 4096, pub,
				  sizeof(pub), fpr);
	} else if (strcmp(argv[0], "pinfpr") == 0 && argc == 2) {
		rc = sftpc_pin_check(argv[1], why, sizeof(why));
		if (rc == 0)
			rc = sftpc_pin_fpr(argv[1], fpr, sizeof(fpr));
		if (rc == 0)
			printf("%s\n", fpr);
		return rc ? fail(rc, why) : 0;
	} else {
		return usage();
	}
	if (rc != 0)
		return fail(rc, why);
	printf("%s\n%s\n", pub, fpr);
	return 0;
}

/* ---- Commands on a connection ---- */

static int cmd_ls(struct sftpc *c, const char *dir)
{
	struct sftpc_entry *e = NULL;
	size_t n = 0;
	int rc = sftpc_list(c, dir, &e, &n);

	if (rc != 0)
		return fail(rc, sftpc_error(c));
	for (size_t i = 0; i < n; i++)
		printf("%s\t%" PRIu64 "\t%" PRId64 "\t%d\n", e[i].name, e[i].size, e[i].mtime,
		       e[i].regular);
	sftpc_entries_free(e, n);
	return 0;
}

static int cmd_get(struct sftpc *c, const char *remote, const char *local, uint64_t max)
{
	uint8_t md[32];
	uint64_t len = 0;
	int fd = open(local, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600), rc;

	if (fd < 0)
		return fail(-errno, local);
	rc = sftpc_get(c, remote, fd, max, md, &len);
	close(fd);
	if (rc != 0)
		return fail(rc, sftpc_error(c));
	for (int i = 0; i < 32; i++)
		printf("%02x", md[i]);
	printf("\t%" PRIu64 "\n", len);
	return 0;
}

static int cmd_put(struct sftpc *c, const char *local, const char *remote)
{
	struct stat st;
	char *buf = NULL;
	int fd = open(local, O_RDONLY | O_CLOEXEC), rc, synced = 0;

	if (fd < 0 || fstat(fd, &st) != 0 || (uint64_t)st.st_size > PUT_MAX) {
		rc = fd < 0 ? -errno : -EFBIG;
		if (fd >= 0)
			close(fd);
		return fail(rc, local);
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf || read(fd, buf, (size_t)st.st_size) != (ssize_t)st.st_size) {
		close(fd);
		free(buf);
		return fail(-EIO, local);
	}
	close(fd);
	rc = sftpc_put(c, remote, buf, (size_t)st.st_size, &synced);
	free(buf);
	if (rc != 0)
		return fail(rc, sftpc_error(c));
	printf("synced=%d\n", synced);
	return 0;
}

static int cmd_stat(struct sftpc *c, const char *path)
{
	struct sftpc_entry e;
	int rc = sftpc_stat(c, path, &e);

	if (rc != 0)
		return fail(rc, sftpc_error(c));
	printf("%" PRIu64 "\t%" PRId64 "\t%d\n", e.size, e.mtime, e.regular);
	return 0;
}

static int run_cmd(struct sftpc *c, int argc, char **argv, const struct opts *o)
{
	const char *cmd = argv[0];
	int rc;

	if (strcmp(cmd, "ls") == 0 && argc == 2)
		return cmd_ls(c, argv[1]);
	if (strcmp(cmd, "get") == 0 && argc == 3)
		return cmd_get(c, argv[1], argv[2], o->max);
	if (strcmp(cmd, "put") == 0 && argc == 3)
		return cmd_put(c, argv[1], argv[2]);
	if (strcmp(cmd, "stat") == 0 && argc == 2)
		return cmd_stat(c, argv[1]);
	if (strcmp(cmd, "mv") == 0 && argc == 3)
		rc = sftpc_rename(c, argv[1], argv[2]);
	else if (strcmp(cmd, "rm") == 0 && argc == 2)
		rc = sftpc_remove(c, argv[1]);
	else if (strcmp(cmd, "mkdir") == 0 && argc == 2)
		rc = sftpc_mkdir(c, argv[1]);
	else
		return usage();
	return rc ? fail(rc, sftpc_error(c)) : 0;
}

/* The canceller: what files.c's supervisor thread does on shutdown. */
struct cancel {
	int fd;
	long ms;
};

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static void *canceller(void *arg)
{
	const struct cancel *k = arg;

	sleep_ms(k->ms);
	shutdown(k->fd, SHUT_RDWR);
	return NULL;
}

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	if (!d)
		return -1;
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

/* -a: a stat on the connection the command used. */
static void after_stat(struct sftpc *c, const char *path)
{
	struct sftpc_entry e;
	int rc = sftpc_stat(c, path, &e);
	const char *name = strerrorname_np(-rc);

	if (rc == 0)
		fprintf(stderr, "after=0 %" PRIu64 "\n", e.size);
	else
		fprintf(stderr, "after=%s\n", name ? name : "ERROR");
}

/* Connects and runs one command; the connection is closed again. */
static int remote(int argc, char **argv, struct opts *o)
{
	struct sftpc *c = NULL;
	char err[SFTPC_ERR_MAX];
	struct cancel k;
	pthread_t th;
	int rc = sftpc_connect(&o->p, &c, err, sizeof(err));

	if (rc != 0)
		return fail(rc, err);
	fprintf(stderr, "key=%zu fpr=%s\n", sftpc_key_index(c), sftpc_server_fpr(c));
	k = (struct cancel){sftpc_fd(c), o->cancel_ms};
	if (o->cancel_ms > 0 && pthread_create(&th, NULL, canceller, &k) != 0)
		o->cancel_ms = 0;
	if (o->wait_ms > 0)
		sleep_ms(o->wait_ms);
	rc = run_cmd(c, argc, argv, o);
	if (o->after)
		after_stat(c, o->after);
	if (o->cancel_ms > 0)
		pthread_join(th, NULL);
	sftpc_close(c);
	return rc;
}

int main(int argc, char **argv)
{
	static const char *local[] = {"keyinfo", "keygen", "pinfpr"};
	struct opts o = {0};
	int rc;

	signal(SIGPIPE, SIG_IGN); /* a cancelled socket must fail a write, not kill us */
	for (size_t i = 0; argc > 1 && i < sizeof(local) / sizeof(local[0]); i++)
		if (strcmp(argv[1], local[i]) == 0)
			return cmd_local(argc - 1, argv + 1);
	if (parse_opts(argc, argv, &o) != 0 || optind >= argc)
		rc = usage();
	else
		rc = remote(argc - optind, argv + optind, &o);
	for (long i = 1; rc == 0 && i < o.repeat; i++)
		rc = remote(argc - optind, argv + optind, &o);
	if (o.repeat > 0)
		fprintf(stderr, "fds=%d\n", count_fds());
	for (size_t i = 0; i < o.p.nhost_keys; i++)
		free(o.pins[i]);
	return rc;
}
