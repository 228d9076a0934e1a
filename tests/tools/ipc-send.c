/*
 * ipc-send: a stand-in supervisor for scenario tests of the bridge's link.
 *
 *   ipc-send PROGRAM [ARGS...]
 *
 * Creates a SOCK_SEQPACKET socketpair, runs PROGRAM ARGS... -S FD (the
 * bridge) on one end, and drives the other from commands on stdin, one a
 * line:
 *
 *   gate [CIDR...]                  an IPC_GATE snapshot (none: the empty set)
 *   tunnels RESTARTS [NAME:UP:IKE:ESP:CHANGED...]   an IPC_TUNNELS snapshot
 *   raw HEX                         these bytes as one datagram (bad messages)
 *   close                           closes the link
 *
 * What it sees goes to stdout, one line each, flushed:
 *
 *   started pid=N
 *   sent gate generation=G n=N | sent tunnels n=N | sent raw bytes=N
 *   status n=N NAME:DEPTH:AGE_MS:DEAD...  (every IPC_STATUS from the bridge)
 *   outbox n=N NAME:QUEUED:AGE_MS:WAITING_GATE:CONNECTED:FAILED...
 *                                        (every IPC_OUTBOX from the bridge)
 *   bad datagram error=...               (a datagram that did not decode)
 *   link closed                          (the bridge closed its end)
 *   exited status=N | exited signal=N
 *
 * End of stdin closes the link too. It exits once the bridge has, with the
 * bridge's exit status (128 + N for a signal). The bridge is sent SIGTERM
 * if ipc-send dies first (PR_SET_PDEATHSIG). Exit 2 on usage errors.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ipc/ipc.h"

#define LINE_MAX_ 8192
#define WORDS_MAX (IPC_GATE_MAX + 2)

static union ipc_msg g_msg; /* large: off the stack */
static uint8_t g_buf[IPC_MSG_MAX];
static uint32_t g_generation;

static int parse_cidr(const char *s, struct ipc_cidr *c)
{
	char addr[64];
	const char *slash = strchr(s, '/');
	size_t len = slash ? (size_t)(slash - s) : strlen(s);
	int v6 = memchr(s, ':', len) != NULL;

	memset(c, 0, sizeof(*c));
	if (len >= sizeof(addr))
		return -1;
	memcpy(addr, s, len);
	addr[len] = '\0';
	c->family = v6 ? AF_INET6 : AF_INET;
	c->prefix = (uint8_t)(slash ? atoi(slash + 1) : v6 ? 128 : 32);
	return inet_pton(v6 ? AF_INET6 : AF_INET, addr, c->addr) == 1 ? 0 : -1;
}

static int send_msg(int fd, enum ipc_type type)
{
	size_t len;
	int err = ipc_encode(type, &g_msg, g_buf, sizeof(g_buf), &len);

	if (err < 0) {
		printf("encode failed error=%s\n", strerror(-err));
		return -1;
	}
	return send(fd, g_buf, len, MSG_NOSIGNAL) == (ssize_t)len ? 0 : -1;
}

static void cmd_gate(int fd, char **w, int n)
{
	memset(&g_msg.gate, 0, sizeof(g_msg.gate));
	g_msg.gate.generation = ++g_generation;
	for (int i = 0; i < n && i < IPC_GATE_MAX; i++) {
		if (parse_cidr(w[i], &g_msg.gate.cidr[i]) < 0) {
			printf("bad cidr %s\n", w[i]);
			return;
		}
		g_msg.gate.n++;
	}
	if (send_msg(fd, IPC_GATE) == 0)
		printf("sent gate generation=%u n=%u\n", g_msg.gate.generation, g_msg.gate.n);
}

static void cmd_tunnels(int fd, char **w, int n)
{
	memset(&g_msg.tunnels, 0, sizeof(g_msg.tunnels));
	g_msg.tunnels.bridge_restarts = n > 0 ? (uint32_t)strtoul(w[0], NULL, 10) : 0;
	for (int i = 1; i < n && i <= IPC_TUNNELS_MAX; i++) {
		struct ipc_tunnel *t = &g_msg.tunnels.t[g_msg.tunnels.n];
		unsigned up, ike, esp;
		long long changed;

		if (sscanf(w[i], "%64[^:]:%u:%u:%u:%lld", t->name, &up, &ike, &esp, &changed) !=
		    5) {
			printf("bad tunnel %s\n", w[i]);
			return;
		}
		t->up = (uint8_t)up;
		t->ike_dh = (uint16_t)ike;
		t->esp_dh = (uint16_t)esp;
		t->changed_unix = changed;
		g_msg.tunnels.n++;
	}
	if (send_msg(fd, IPC_TUNNELS) == 0)
		printf("sent tunnels n=%u\n", g_msg.tunnels.n);
}

static void cmd_raw(int fd, const char *hex)
{
	size_t n = 0;
	unsigned b;

	while (n < sizeof(g_buf) && sscanf(hex + 2 * n, "%2x", &b) == 1)
		g_buf[n++] = (uint8_t)b;
	if (send(fd, g_buf, n, MSG_NOSIGNAL) == (ssize_t)n)
		printf("sent raw bytes=%zu\n", n);
}

/* One stdin line. Returns 0, or -1 when the link is to be closed. */
static int command(int fd, char *line)
{
	char *w[WORDS_MAX], *save = NULL;
	int n = 0;

	for (char *t = strtok_r(line, " \t\r\n", &save); t && n < WORDS_MAX;
	     t = strtok_r(NULL, " \t\r\n", &save))
		w[n++] = t;
	if (n == 0)
		return 0;
	if (strcmp(w[0], "gate") == 0)
		cmd_gate(fd, w + 1, n - 1);
	else if (strcmp(w[0], "tunnels") == 0)
		cmd_tunnels(fd, w + 1, n - 1);
	else if (strcmp(w[0], "raw") == 0 && n == 2)
		cmd_raw(fd, w[1]);
	else if (strcmp(w[0], "close") == 0)
		return -1;
	else
		printf("unknown command %s\n", w[0]);
	return 0;
}

/* One datagram from the bridge. Returns 0, or -1 at end of file. */
static int from_bridge(int fd)
{
	enum ipc_type type;
	ssize_t n = recv(fd, g_buf, sizeof(g_buf), MSG_DONTWAIT);
	int err;

	if (n < 0)
		return errno == EAGAIN || errno == EINTR ? 0 : -1;
	if (n == 0)
		return -1;
	if ((err = ipc_decode(g_buf, (size_t)n, &type, &g_msg)) < 0 ||
	    (type != IPC_STATUS && type != IPC_OUTBOX)) {
		printf("bad datagram error=%s\n",
		       err < 0 ? strerror(-err) : "not a STATUS or an OUTBOX");
		return 0;
	}
	if (type == IPC_OUTBOX) {
		printf("outbox n=%u", g_msg.outbox.n);
		for (unsigned i = 0; i < g_msg.outbox.n; i++) {
			const struct ipc_destination *x = &g_msg.outbox.d[i];

			printf(" %s:%llu:%llu:%u:%u:%llu", x->name, (unsigned long long)x->queued,
			       (unsigned long long)x->oldest_age_ms, x->waiting_gate, x->connected,
			       (unsigned long long)x->failed);
		}
		printf("\n");
		return 0;
	}
	printf("status n=%u", g_msg.status.n);
	for (unsigned i = 0; i < g_msg.status.n; i++) {
		const struct ipc_integration *x = &g_msg.status.in[i];

		printf(" %s:%llu:%llu:%llu", x->name, (unsigned long long)x->depth,
		       (unsigned long long)x->oldest_age_ms, (unsigned long long)x->dead);
	}
	printf("\n");
	return 0;
}

static pid_t start(int fd, char **argv, int argc)
{
	char fdtext[16], **args = calloc((size_t)argc + 3, sizeof(*args));
	pid_t pid;

	if (!args)
		return -1;
	snprintf(fdtext, sizeof(fdtext), "%d", fd);
	memcpy(args, argv, (size_t)argc * sizeof(*args));
	args[argc] = "-S";
	args[argc + 1] = fdtext;
	if ((pid = fork()) == 0) {
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		fcntl(fd, F_SETFD, 0); /* the bridge's end, and only it, survives exec */
		execv(args[0], args);
		perror(args[0]);
		_exit(127);
	}
	free(args);
	return pid;
}

static int finish(pid_t pid)
{
	int st;

	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return 1;
	if (WIFSIGNALED(st)) {
		printf("exited signal=%d\n", WTERMSIG(st));
		return 128 + WTERMSIG(st);
	}
	printf("exited status=%d\n", WEXITSTATUS(st));
	return WEXITSTATUS(st);
}

/* Until stdin says close (or ends): commands out, statuses in. */
static void serve(int fd)
{
	char line[LINE_MAX_];
	struct pollfd p[2] = {{.fd = 0, .events = POLLIN}, {.fd = fd, .events = POLLIN}};

	/* Unbuffered: fgets then reads one line and leaves the next in the pipe,
	 * where poll sees it. Buffered, two lines written at once came in one
	 * read and the second waited in stdio until stdin closed. */
	setvbuf(stdin, NULL, _IONBF, 0);
	for (;;) {
		if (poll(p, 2, -1) < 0 && errno != EINTR)
			return;
		if (p[1].revents && from_bridge(fd) < 0) {
			printf("link closed\n");
			return;
		}
		if (p[0].revents && (!fgets(line, sizeof(line), stdin) || command(fd, line) < 0))
			return;
	}
}

int main(int argc, char **argv)
{
	int sv[2];
	pid_t pid;

	if (argc < 2) {
		fprintf(stderr, "usage: ipc-send PROGRAM [ARGS...]  (commands on stdin)\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		perror("socketpair");
		return 1;
	}
	if ((pid = start(sv[1], argv + 1, argc - 1)) < 0) {
		perror("fork");
		return 1;
	}
	close(sv[1]);
	printf("started pid=%d\n", (int)pid);
	serve(sv[0]);
	close(sv[0]);
	return finish(pid);
}
