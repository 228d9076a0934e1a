/*
 * appliancectl: the operator's client of the supervisor's control socket.
 *
 *   appliancectl [-s SOCKET] COMMAND [ARGS...]
 *
 * Sends the words as one line, prints the reply's body (to stdout after OK,
 * to stderr after ERR). Exit: 0 OK, 1 ERR or no usable answer, 2 usage,
 * 3 cannot connect. Links nothing of ours; control.h gives only the limits.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "appliance/control.h"

#define DEFAULT_SOCKET	 "/run/appliance/control.sock"
#define SOCKET_ENV	 "APPLIANCE_CONTROL"
#define REPLY_TIMEOUT_MS 30000 /* rekey-check waits for a rekey, ~15 s */
#define STATUS_LINE_MAX	 8     /* "ERR\n" and room to spare */
#define CHUNK		 65536

enum { EXIT_OK, EXIT_ERR, EXIT_USAGE, EXIT_CONNECT };

static void usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: appliancectl [-s SOCKET] COMMAND [ARGS...]\n"
	    "commands:\n"
	    "  status [--json]        tunnels, SAs and their DH groups, last failure,\n"
	    "                         the bridge, integrations and their spools\n"
	    "  rekey-check TUNNEL     force a CHILD_SA rekey: does the peer accept the PFS group?\n"
	    "  reload                 re-read appliance.yaml (as SIGHUP)\n"
	    "  sftp keys              each SFTP channel's key, and the next one during a rotation\n"
	    "  sftp rotate-key CHANNEL [ed25519|rsa]\n"
	    "                         create <key>.next and print its public line for the\n"
	    "                         server; both keys are tried until the old one is retired\n"
	    "  sftp retire-key CHANNEL  <key>.next becomes the key in use\n"
	    "options:\n"
	    "  -s SOCKET  control socket (default $" SOCKET_ENV ", else " DEFAULT_SOCKET ")\n"
	    "  -h         this help\n"
	    "exit: 0 OK, 1 error, 2 usage, 3 cannot connect\n");
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Joins the words with single spaces. Returns NULL (after saying why) when
 * the server would split them differently or refuse the line. */
static const char *build_line(int argc, char **argv, char *line, size_t cap)
{
	size_t len = 0, i, wlen;
	int k;

	if (argc > CONTROL_ARGS_MAX) {
		fprintf(stderr, "appliancectl: at most %d words\n", CONTROL_ARGS_MAX);
		return NULL;
	}
	for (k = 0; k < argc; k++) {
		wlen = strlen(argv[k]);
		for (i = 0; i < wlen; i++) {
			if ((unsigned char)argv[k][i] <= ' ' || argv[k][i] == 0x7f) {
				fprintf(stderr,
					"appliancectl: spaces or control characters in '%s'\n",
					argv[k]);
				return NULL;
			}
		}
		if (wlen == 0 || len + wlen + 2 > cap) {
			fprintf(stderr, "appliancectl: %s\n",
				wlen ? "request longer than the server accepts" : "empty word");
			return NULL;
		}
		if (k)
			line[len++] = ' ';
		memcpy(line + len, argv[k], wlen);
		len += wlen;
	}
	line[len++] = '\n';
	line[len] = '\0';
	return line;
}

static int connect_to(const char *path)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	int fd;

	if (strlen(path) >= sizeof(sun.sun_path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(sun.sun_path, path, strlen(path));
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		int err = errno;

		close(fd);
		errno = err;
		return -1;
	}
	return fd;
}

/* Waits for fd until the deadline. 1 ready, 0 timed out, -1 error. */
static int wait_fd(int fd, short events, int64_t deadline)
{
	struct pollfd pfd = {.fd = fd, .events = events};
	int64_t left;
	int n;

	for (;;) {
		left = deadline - now_ms();
		if (left <= 0)
			return 0;
		n = poll(&pfd, 1, (int)left);
		if (n >= 0 || errno != EINTR)
			return n > 0 ? 1 : n;
	}
}

static int send_all(int fd, const char *buf, size_t len, int64_t deadline)
{
	ssize_t n;

	while (len) {
		if (wait_fd(fd, POLLOUT, deadline) <= 0)
			return -1;
		n = send(fd, buf, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Consumes the status line from buf. Returns the bytes used and sets *out
 * to the body's stream once the line is complete; -1 for anything but
 * "OK" or "ERR". */
static ssize_t status_feed(char *status, size_t *slen, const char *buf, ssize_t n, FILE **out)
{
	ssize_t i;

	for (i = 0; i < n; i++) {
		if (buf[i] == '\n') {
			status[*slen] = '\0';
			*out = !strcmp(status, "OK")	? stdout
			       : !strcmp(status, "ERR") ? stderr
							: NULL;
			return *out ? i + 1 : -1;
		}
		if (*slen == STATUS_LINE_MAX)
			return -1;
		status[(*slen)++] = buf[i];
	}
	return n;
}

/* Reads until the server closes: the status line picks the stream, the
 * rest is copied through. Returns the exit code. */
static int read_reply(int fd, const char *path, int64_t deadline)
{
	char buf[CHUNK], status[STATUS_LINE_MAX + 1];
	const char *why = "no valid answer from the supervisor";
	size_t slen = 0;
	FILE *out = NULL;
	ssize_t n, used = 0;
	int r;

	for (;;) {
		r = wait_fd(fd, POLLIN, deadline);
		if (r <= 0) {
			why = r == 0 ? "no answer within 30 s" : strerror(errno);
			goto fail;
		}
		n = recv(fd, buf, sizeof(buf), 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			why = strerror(errno);
			goto fail;
		}
		if (n == 0)
			break;
		used = out ? 0 : status_feed(status, &slen, buf, n, &out);
		if (used < 0)
			goto fail;
		if (out && used < n)
			fwrite(buf + used, 1, (size_t)(n - used), out);
	}
	if (!out)
		goto fail;
	if (fflush(out) != 0)
		return EXIT_ERR;
	return out == stdout ? EXIT_OK : EXIT_ERR;
fail:
	if (out)
		fflush(out);
	fprintf(stderr, "appliancectl: %s: %s\n", path, why);
	return EXIT_ERR;
}

int main(int argc, char **argv)
{
	const char *path = getenv(SOCKET_ENV);
	char line[CONTROL_LINE_MAX + 1];
	int64_t deadline;
	int opt, fd, rc;

	if (!path || !*path)
		path = DEFAULT_SOCKET;
	while ((opt = getopt(argc, argv, "+s:h")) != -1) {
		switch (opt) {
		case 's':
			path = optarg;
			break;
		case 'h':
			usage(stdout);
			return EXIT_OK;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (!build_line(argc - optind, argv + optind, line, sizeof(line)))
		return EXIT_USAGE;
	signal(SIGPIPE, SIG_IGN);
	fd = connect_to(path);
	if (fd < 0) {
		fprintf(stderr,
			"appliancectl: cannot connect to %s: %s (is the appliance running?)\n",
			path, strerror(errno));
		return EXIT_CONNECT;
	}
	deadline = now_ms() + REPLY_TIMEOUT_MS;
	if (send_all(fd, line, strlen(line), deadline) < 0) {
		fprintf(stderr, "appliancectl: %s: sending the request: %s\n", path,
			errno ? strerror(errno) : "timed out");
		close(fd);
		return EXIT_ERR;
	}
	rc = read_reply(fd, path, deadline);
	close(fd);
	return rc;
}
