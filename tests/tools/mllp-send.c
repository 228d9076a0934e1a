/*
 * mllp-send: a small MLLP client for scenario tests.
 *
 *   mllp-send [-b SRCADDR] [-t TIMEOUT_MS] [-r] HOST:PORT FILE...
 *
 * Sends each FILE framed (SB payload EB CR) and prints each answer on its
 * own line, CR shown as '\r' would be unreadable, so segments are joined
 * with " | ". With -r each FILE is sent as raw bytes (already framed, junk
 * and all) and every answer that arrives before the timeout is printed.
 * R2 commit blocks print as "R2_ACK" / "R2_NAK". The timeout also bounds the
 * connect. Exit 0 when every frame got an answer, 1 when one did not
 * (timeout or closed) or the connect failed, 2 on usage.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mllp-bridge/config.h"
#include "mllp-bridge/mllp.h"

#define FILE_MAX (64u << 20)

static void *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	long n;

	if (!f)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && (size_t)n <= FILE_MAX &&
	    fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)n + 1)) &&
	    fread(buf, 1, (size_t)n, f) == (size_t)n) {
		*len = (size_t)n;
	} else {
		free(buf);
		buf = NULL;
	}
	fclose(f);
	return buf;
}

static int send_all(int fd, const void *p, size_t len)
{
	const char *c = p;

	while (len) {
		ssize_t n = write(fd, c, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		c += n;
		len -= (size_t)n;
	}
	return 0;
}

static void print_answer(const struct mllp_frame *f, enum mllp_event ev)
{
	size_t i;

	if (ev == MLLP_COMMIT_ACK || ev == MLLP_COMMIT_NAK) {
		puts(ev == MLLP_COMMIT_ACK ? "R2_ACK" : "R2_NAK");
		return;
	}
	for (i = 0; i < f->len; i++) {
		if (f->data[i] == '\r')
			fputs(i + 1 < f->len ? " | " : "", stdout);
		else
			putchar(f->data[i]);
	}
	putchar('\n');
}

/* Reads answers until `want` arrived (or any number with want < 0) or the
 * timeout passed. Returns how many arrived. */
static int read_answers(int fd, struct mllp_deframer *d, int want, int timeout_ms)
{
	char buf[65536];
	int got = 0;

	while (want < 0 || got < want) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		struct mllp_frame f;
		enum mllp_event ev;
		ssize_t n;

		if (poll(&p, 1, timeout_ms) <= 0)
			break;
		n = read(fd, buf, sizeof(buf));
		if (n <= 0)
			break;
		if (mllp_deframer_feed(d, buf, (size_t)n) < 0)
			break;
		while ((ev = mllp_deframer_next(d, &f)) != MLLP_NEED_MORE && ev != MLLP_OVERSIZE) {
			print_answer(&f, ev);
			got++;
		}
		fflush(stdout);
	}
	return got;
}

/* connect() bounded by timeout_ms: a peer that drops SYNs (a closed gate, a
 * firewall) fails the send in that time, not after the kernel's two minutes. */
static int connect_within(int fd, const struct sockaddr *sa, socklen_t len, int timeout_ms)
{
	int flags = fcntl(fd, F_GETFL), err = 0;
	socklen_t elen = sizeof(err);
	struct pollfd p = {.fd = fd, .events = POLLOUT};

	if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
		return -1;
	if (connect(fd, sa, len) < 0) {
		if (errno != EINPROGRESS)
			return -1;
		if (poll(&p, 1, timeout_ms) != 1) {
			errno = ETIMEDOUT;
			return -1;
		}
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0 || err) {
			errno = err ? err : errno;
			return -1;
		}
	}
	return fcntl(fd, F_SETFL, flags);
}

static int connect_to(const char *target, const char *bind_addr, int timeout_ms)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int fd;

	if (cfg_parse_hostport(target, &ss, &len) < 0)
		return -1;
	fd = socket(ss.ss_family, SOCK_STREAM, 0);
	if (fd < 0)
		return -1;
	if (bind_addr) {
		struct sockaddr_in src = {.sin_family = AF_INET};

		if (inet_pton(AF_INET, bind_addr, &src.sin_addr) != 1 ||
		    bind(fd, (struct sockaddr *)&src, sizeof(src)) < 0) {
			close(fd);
			return -1;
		}
	}
	if (connect_within(fd, (struct sockaddr *)&ss, len, timeout_ms) < 0) {
		int e = errno;

		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

int main(int argc, char **argv)
{
	const char *bind_addr = NULL;
	int timeout_ms = 5000, raw = 0, opt, fd, i, rc = 0;
	struct mllp_deframer *d;

	while ((opt = getopt(argc, argv, "b:t:r")) != -1) {
		if (opt == 'b')
			bind_addr = optarg;
		else if (opt == 't')
			timeout_ms = atoi(optarg);
		else if (opt == 'r')
			raw = 1;
		else
			return 2;
	}
	if (argc - optind < 2) {
		fprintf(stderr, "usage: mllp-send [-b SRC] [-t MS] [-r] HOST:PORT FILE...\n");
		return 2;
	}
	fd = connect_to(argv[optind], bind_addr, timeout_ms);
	if (fd < 0) {
		fprintf(stderr, "mllp-send: cannot connect to %s: %s\n", argv[optind],
			strerror(errno));
		return 1;
	}
	d = mllp_deframer_new(MLLP_MAX_FRAME_LIMIT);
	for (i = optind + 1; d && i < argc && rc == 0; i++) {
		size_t len = 0, cap;
		char *body = slurp(argv[i], &len), *frame;

		if (!body) {
			fprintf(stderr, "mllp-send: cannot read %s\n", argv[i]);
			rc = 1;
			break;
		}
		cap = len + MLLP_OVERHEAD;
		frame = raw ? body : malloc(cap);
		if (!frame ||
		    send_all(fd, frame, raw ? len : mllp_encode((uint8_t *)frame, cap, body, len)) <
			0)
			rc = 1;
		else if (!raw && read_answers(fd, d, 1, timeout_ms) != 1)
			rc = 1;
		if (frame != body)
			free(frame);
		free(body);
	}
	if (raw && rc == 0)
		read_answers(fd, d, -1, timeout_ms);
	mllp_deframer_free(d);
	close(fd);
	return rc;
}
