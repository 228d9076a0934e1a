/*
 * mllp-load: MLLP load generator, echo server and idle-connection holder.
 *
 *   mllp-load -t HOST:PORT [-c CONNS] [-n TOTAL] [-d SECS] [-s SIZE] [-p DEPTH]
 *             [-r RATE] [--bind-from ADDR | --source ADDR] [--acked FILE] [--reconnect]
 *             [--enhanced] [--id-prefix P] [--facility F] [-T ACK_TIMEOUT]
 *             [--feeds N] [--patients M]
 *   mllp-load --echo ADDR:PORT [--r2]
 *   mllp-load --idle N -t HOST:PORT [-d SECS]
 *
 * Self-contained on purpose: its own MLLP framing and MSA parsing, so it
 * measures the bridge rather than code shared with it. One thread and one
 * libevent loop; it shares the machine with the server under test, so the
 * hot path does no allocation and batches writes per connection.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <event2/event.h>

#define SB     0x0b
#define EB     0x1c
#define CR     0x0d
#define R2_ACK 0x06
#define R2_NAK 0x15

/* Limits of the command line, each checked while parsing it. */
#define MAX_CONNS      100000u
#define MAX_PIPELINE   4096u
#define MAX_MSG_SIZE   (16u << 20) /* -s; also the largest frame --echo accepts */
#define MAX_RATE       10000000u
#define MAX_PREFIX_LEN 32u
#define MAX_FIELD_LEN  64u /* --facility */
#define MAX_FEEDS      100000u
#define MAX_PATIENTS   100000000u

/* Buffers and protocol limits. */
#define READ_CHUNK     65536u	  /* one read() asks for this much */
#define MAX_ACK_FRAME  65536u	  /* an ACK bigger than this is a broken peer */
#define MSG_SLACK      512u	  /* header room above SIZE: MSH/EVN/PID/PV1 */
#define CTRL_ID_MAX    80u	  /* "<prefix>-<conn>-" plus a 20-digit sequence */
#define ECHO_FIELD_MAX 199u	  /* a mirrored MSH field is cut there */
#define ECHO_ACK_MAX   2048u	  /* covers every mirrored field at its cut */
#define ECHO_WBUF_HIGH (1u << 20) /* stop reading a client that reads no ACKs */
#define ACCEPT_BATCH   64u
#define NTE_OVERHEAD   8u  /* "NTE|1||" and the segment's CR */
#define TS_LEN	       16u /* YYYYMMDDHHMMSS and NUL */
#define MSH_FIELDS     17u /* MSH-1 .. MSH-16 are indexed directly */

/* Timing. */
#define BACKOFF_MIN_MS	      50u
#define BACKOFF_MAX_MS	      200u
#define ACKED_FLUSH_MS	      100u
#define WATCHDOG_MS	      250u
#define ACK_TIMEOUT_DEFAULT_S 15.0
#define DEFAULT_TOTAL	      1000u
#define TICK_MIN_US	      100u /* pacing timer granularity for -r */
#define TICK_MAX_US	      10000u
#define IDLE_MAX_CONNECTING   64u /* in-flight handshakes, below any accept backlog */
#define NOFILE_SLACK	      64u
#define LOG_LIMIT	      20u /* then errors are only counted */

/* Latency histogram: log-linear over nanoseconds, 64 sub-buckets per power
 * of two (under 1.6 % error), up to 2^46 ns. */
#define HIST_SUB_BITS  6u
#define HIST_SUB       (1u << HIST_SUB_BITS)
#define HIST_MAX_SHIFT 40u
#define HIST_BUCKETS   ((HIST_MAX_SHIFT + 1u) * HIST_SUB)

#define NS_PER_S  1000000000ull
#define NS_PER_MS 1000000ull

struct opts {
	const char *target, *echo, *acked_path, *prefix, *facility;
	unsigned conns, pipeline, idle;
	unsigned feeds, patients; /* 0: one feed (MSH-3/4 fixed), PID-3 = sequence */
	uint64_t total, rate;
	double duration, ack_timeout;
	bool have_duration, have_bind, bind_one, reconnect, enhanced, r2;
	struct in_addr bind_from;
	size_t size;
};

struct slice {
	const uint8_t *p;
	size_t len;
};

struct buf {
	uint8_t *p;
	size_t off, len, cap;
};

struct addr {
	struct sockaddr_storage ss;
	socklen_t len;
};

struct slot {
	uint64_t seq, t_ns;
	bool done;
};

struct load;

struct conn {
	struct load *ld;
	unsigned idx;
	int fd;
	bool connecting, up, dead;
	struct event *ev_r, *ev_w, *ev_retry;
	uint64_t next_seq;
	struct slot *ring; /* FIFO of frames sent, `pipeline` slots */
	unsigned head, n, live;
	struct buf in, out;
	char idpfx[CTRL_ID_MAX];
};

struct stats {
	uint64_t sent, acked, nak, unacked, errors, lat_n, max_ns;
	uint64_t hist[HIST_BUCKETS];
};

struct load {
	const struct opts *o;
	struct event_base *base;
	struct addr dst;
	struct conn *conns;
	struct stats st;
	uint64_t t_start, t_last_ack, outstanding, tick_ns;
	unsigned alive, rr, logged;
	bool stopping, finished;
	FILE *acked;
	struct event *ev_tick, *ev_dog, *ev_flush, *ev_stop;
	char ts[TS_LEN];
	time_t ts_sec;
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

static struct timeval tv_of_ns(uint64_t ns)
{
	struct timeval tv = {.tv_sec = (time_t)(ns / NS_PER_S),
			     .tv_usec = (suseconds_t)(ns % NS_PER_S / 1000)};
	return tv;
}

/* HL7 DTM in local time, refreshed at most once a second. */
static void ts_refresh(char ts[TS_LEN], time_t *cached)
{
	time_t now = time(NULL);
	struct tm tm;

	if (now == *cached)
		return;
	*cached = now;
	localtime_r(&now, &tm);
	strftime(ts, TS_LEN, "%Y%m%d%H%M%S", &tm);
}

static uint32_t rand_next(void)
{
	static uint32_t x;

	if (x == 0)
		x = (uint32_t)getpid() ^ (uint32_t)now_ns() ^ 0x9e3779b9u;
	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	return x;
}

/* ---- buffers and framing ------------------------------------------------ */

/* Makes room for `extra` bytes at the end, never holding more than `limit`. */
static int buf_reserve(struct buf *b, size_t extra, size_t limit)
{
	if (b->off == b->len)
		b->off = b->len = 0;
	if (b->cap - b->len >= extra)
		return 0;
	if (b->off > 0) {
		memmove(b->p, b->p + b->off, b->len - b->off);
		b->len -= b->off;
		b->off = 0;
		if (b->cap - b->len >= extra)
			return 0;
	}
	if (extra > limit || b->len > limit - extra)
		return -EMSGSIZE;
	size_t cap = b->cap ? b->cap : READ_CHUNK;
	while (cap < b->len + extra)
		cap *= 2;
	uint8_t *p = realloc(b->p, cap);
	if (!p)
		return -ENOMEM;
	b->p = p;
	b->cap = cap;
	return 0;
}

static void buf_free(struct buf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

/* Takes the next complete frame out of b. Returns 1 with *out set (borrowed
 * from b until its next change), 0 when more bytes are needed, -EMSGSIZE when
 * an unfinished frame already exceeds max. Bytes outside frames (the CR after
 * the end block, junk) are skipped. */
static int frame_next(struct buf *b, struct slice *out, size_t max)
{
	uint8_t *p = b->p + b->off, *end = b->p + b->len;
	uint8_t *sb = memchr(p, SB, (size_t)(end - p));

	if (!sb) {
		b->off = b->len;
		return 0;
	}
	uint8_t *eb = memchr(sb + 1, EB, (size_t)(end - sb - 1));
	if (!eb) {
		b->off = (size_t)(sb - b->p);
		return (size_t)(end - sb) > max + 1 ? -EMSGSIZE : 0;
	}
	out->p = sb + 1;
	out->len = (size_t)(eb - sb - 1);
	b->off = (size_t)(eb + 1 - b->p);
	return 1;
}

/* Writes what b holds. Returns 1 when some is left (wait for EV_WRITE), 0
 * when all went out, or a negative errno. */
static int buf_flush(struct buf *b, int fd)
{
	while (b->off < b->len) {
		ssize_t n = send(fd, b->p + b->off, b->len - b->off, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 1;
		if (n < 0)
			return -errno;
		b->off += (size_t)n;
	}
	b->off = b->len = 0;
	return 0;
}

/* Reads once into b. Returns bytes read, 0 at EOF, -EAGAIN, or -errno. */
static ssize_t buf_read(struct buf *b, int fd, size_t limit)
{
	int err = buf_reserve(b, READ_CHUNK, limit);

	if (err)
		return err;
	ssize_t n = read(fd, b->p + b->len, b->cap - b->len);
	if (n < 0)
		return errno == EINTR || errno == EWOULDBLOCK ? -EAGAIN : -errno;
	b->len += (size_t)n;
	return n;
}

/* ---- HL7 ----------------------------------------------------------------- */

/* Splits the MSH segment: f[k] is MSH-k for 3 <= k < MSH_FIELDS, f[2] the
 * encoding characters. Returns the field separator, or -EBADMSG. */
static int msh_split(const uint8_t *m, size_t len, struct slice f[MSH_FIELDS])
{
	for (unsigned k = 0; k < MSH_FIELDS; k++)
		f[k] = (struct slice){(const uint8_t *)"", 0};
	if (len < 8 || memcmp(m, "MSH", 3) != 0)
		return -EBADMSG;
	uint8_t fs = m[3];
	unsigned k = 2;
	f[k].p = m + 4;
	for (size_t i = 4; i < len && m[i] != '\r' && m[i] != '\n'; i++) {
		if (m[i] != fs)
			continue;
		f[k].len = (size_t)(m + i - f[k].p);
		if (++k == MSH_FIELDS)
			return fs;
		f[k].p = m + i + 1;
	}
	for (size_t i = 0; i < len - (size_t)(f[k].p - m); i++) {
		uint8_t ch = f[k].p[i];
		if (ch == '\r' || ch == '\n' || ch == fs)
			break;
		f[k].len = i + 1;
	}
	return fs;
}

/* Finds MSA-1 (code) and MSA-2 (control ID). Returns 0 or -EBADMSG. */
static int msa_parse(const uint8_t *m, size_t len, struct slice *code, struct slice *ctrl)
{
	uint8_t fs = len > 3 && memcmp(m, "MSH", 3) == 0 ? m[3] : '|';
	size_t i = 0;

	for (;;) {
		if (len - i > 4 && memcmp(m + i, "MSA", 3) == 0 && m[i + 3] == fs)
			break;
		while (i < len && m[i] != '\r' && m[i] != '\n')
			i++;
		while (i < len && (m[i] == '\r' || m[i] == '\n'))
			i++;
		if (i >= len)
			return -EBADMSG;
	}
	struct slice *out[2] = {code, ctrl};
	i += 4;
	for (unsigned k = 0; k < 2; k++) {
		out[k]->p = m + i;
		while (i < len && m[i] != fs && m[i] != '\r' && m[i] != '\n')
			i++;
		out[k]->len = (size_t)(m + i - out[k]->p);
		if (i < len && m[i] == fs)
			i++;
		else if (k == 0)
			return -EBADMSG;
	}
	return 0;
}

static bool slice_is(const struct slice *s, const char *lit)
{
	return s->len == strlen(lit) && memcmp(s->p, lit, s->len) == 0;
}

/* ---- process setup ------------------------------------------------------- */

/* HOST:PORT, [V6]:PORT or *:PORT (passive). */
static int resolve(const char *hostport, bool passive, struct addr *out)
{
	char host[256];
	const char *colon = strrchr(hostport, ':');
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV}, *res;

	if (!colon || (size_t)(colon - hostport) >= sizeof(host)) {
		fprintf(stderr, "mllp-load: '%s' is not HOST:PORT\n", hostport);
		return -EINVAL;
	}
	memcpy(host, hostport, (size_t)(colon - hostport));
	host[colon - hostport] = '\0';
	char *h = host;
	if (h[0] == '[' && h[strlen(h) - 1] == ']') {
		h[strlen(h) - 1] = '\0';
		h++;
	}
	hints.ai_flags |= passive ? AI_PASSIVE : 0;
	int rc = getaddrinfo(strcmp(h, "*") && *h ? h : NULL, colon + 1, &hints, &res);
	if (rc != 0) {
		fprintf(stderr, "mllp-load: %s: %s\n", hostport, gai_strerror(rc));
		return -EINVAL;
	}
	memcpy(&out->ss, res->ai_addr, res->ai_addrlen);
	out->len = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

/* One descriptor per connection plus slack; raises the hard limit when
 * allowed. A server (need 0) just takes whatever the hard limit offers. */
static int raise_nofile(unsigned need)
{
	struct rlimit rl;
	rlim_t want = (rlim_t)need + NOFILE_SLACK;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return 0;
	if (need == 0)
		want = rl.rlim_max;
	if (rl.rlim_cur >= want)
		return 0;
	if (rl.rlim_max < want) {
		struct rlimit hard = {want, want};
		if (setrlimit(RLIMIT_NOFILE, &hard) == 0)
			return 0;
		want = rl.rlim_max;
	}
	rl.rlim_cur = want;
	if ((setrlimit(RLIMIT_NOFILE, &rl) == 0 && want >= (rlim_t)need + NOFILE_SLACK) ||
	    need == 0)
		return 0;
	fprintf(stderr, "mllp-load: cannot raise the open-files limit to %u (hard limit %llu)\n",
		need + NOFILE_SLACK, (unsigned long long)rl.rlim_max);
	return -EMFILE;
}

/* Precise timers (timerfd) only for -r pacing: they cost a syscall per loop. */
static struct event_base *base_new(bool precise)
{
	struct event_config *cfg = event_config_new();
	struct event_base *base = NULL;

	if (!cfg)
		return NULL;
	if (precise)
		event_config_set_flag(cfg, EVENT_BASE_FLAG_PRECISE_TIMER);
	event_config_set_flag(cfg, EVENT_BASE_FLAG_NOLOCK);
	base = event_base_new_with_config(cfg);
	event_config_free(cfg);
	return base;
}

static void on_signal(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	event_base_loopbreak(arg);
}

static int signals_add(struct event_base *base, struct event *sig[2])
{
	sig[0] = evsignal_new(base, SIGINT, on_signal, base);
	sig[1] = evsignal_new(base, SIGTERM, on_signal, base);
	if (!sig[0] || !sig[1] || evsignal_add(sig[0], NULL) < 0 || evsignal_add(sig[1], NULL) < 0)
		return -ENOMEM;
	return 0;
}

static void signals_free(struct event *sig[2])
{
	for (int i = 0; i < 2; i++)
		if (sig[i])
			event_free(sig[i]);
}

/* ---- load: logging and statistics ---------------------------------------- */

__attribute__((format(printf, 3, 4))) static void load_error(struct load *ld, const struct conn *c,
							     const char *fmt, ...)
{
	va_list ap;

	ld->st.errors++;
	if (ld->logged++ >= LOG_LIMIT)
		return;
	fprintf(stderr, "mllp-load: conn %u: ", c ? c->idx : 0);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	if (ld->logged == LOG_LIMIT)
		fprintf(stderr, "mllp-load: further errors are only counted\n");
}

static unsigned hist_index(uint64_t v)
{
	const uint64_t top = (1ull << (HIST_SUB_BITS + HIST_MAX_SHIFT)) - 1;

	if (v > top)
		v = top;
	if (v < HIST_SUB)
		return (unsigned)v;
	unsigned shift = 63u - (unsigned)__builtin_clzll(v) - HIST_SUB_BITS;
	return (shift + 1) * HIST_SUB + (unsigned)((v >> shift) & (HIST_SUB - 1));
}

/* The middle of bucket i, in nanoseconds. */
static uint64_t hist_value(unsigned i)
{
	if (i < HIST_SUB)
		return i;
	unsigned shift = i / HIST_SUB - 1;
	uint64_t low = (uint64_t)(HIST_SUB + i % HIST_SUB) << shift;
	return low + ((1ull << shift) >> 1);
}

static void hist_add(struct stats *st, uint64_t ns)
{
	st->hist[hist_index(ns)]++;
	st->lat_n++;
	if (ns > st->max_ns)
		st->max_ns = ns;
}

static double hist_quantile_ms(const struct stats *st, double q)
{
	if (st->lat_n == 0)
		return 0;
	uint64_t rank = (uint64_t)ceil(q * (double)st->lat_n), seen = 0;
	if (rank == 0)
		rank = 1;
	for (unsigned i = 0; i < HIST_BUCKETS; i++) {
		seen += st->hist[i];
		if (seen >= rank) {
			uint64_t v = hist_value(i);
			return (double)(v < st->max_ns ? v : st->max_ns) / NS_PER_MS;
		}
	}
	return (double)st->max_ns / NS_PER_MS;
}

static void load_summary(const struct load *ld, uint64_t t_end)
{
	const struct stats *st = &ld->st;
	double secs = (double)(t_end - ld->t_start) / NS_PER_S;

	printf("sent=%" PRIu64 " acked=%" PRIu64 " nak=%" PRIu64 " unacked=%" PRIu64
	       " errors=%" PRIu64 " secs=%.2f rate=%.0f msg/s p50=%.2fms p99=%.2fms max=%.2fms\n",
	       st->sent, st->acked, st->nak, st->unacked, st->errors, secs,
	       secs > 0 ? (double)st->acked / secs : 0.0, hist_quantile_ms(st, 0.50),
	       hist_quantile_ms(st, 0.99), (double)st->max_ns / NS_PER_MS);
	fflush(stdout);
}

/* ---- load: connections --------------------------------------------------- */

/* Source address for connection idx: --bind-from plus idx, one per sender,
 * or --source for all of them (one interface engine, many connections). */
static int bind_source(int fd, const struct opts *o, unsigned idx)
{
	uint32_t base = ntohl(o->bind_from.s_addr);
	struct sockaddr_in sin = {.sin_family = AF_INET};
	int one = 1;

	if (o->bind_one)
		idx = 0;

	/* Stay inside 127/8 when starting there; never wrap the address space. */
	if ((uint64_t)base + idx > UINT32_MAX || (base >> 24 == 127 && (base + idx) >> 24 != 127))
		return -EADDRNOTAVAIL;
	sin.sin_addr.s_addr = htonl(base + idx);
	/* Let connect() pick the port, so ports are per destination, not global. */
	setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0)
		return -errno;
	return 0;
}

/* Starts a non-blocking connect; completion shows as writability. */
static int tcp_connect(const struct addr *dst, const struct opts *o, unsigned idx, int *out)
{
	int fd = socket(dst->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1, err = 0;

	if (fd < 0)
		return -errno;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (o->have_bind)
		err = dst->ss.ss_family == AF_INET ? bind_source(fd, o, idx) : -EAFNOSUPPORT;
	if (!err && connect(fd, (const struct sockaddr *)&dst->ss, dst->len) < 0 &&
	    errno != EINPROGRESS)
		err = -errno;
	if (err) {
		close(fd);
		return err;
	}
	*out = fd;
	return 0;
}

static int connect_result(int fd)
{
	int soerr = 0;
	socklen_t len = sizeof(soerr);

	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
		return -errno;
	return -soerr;
}

static void load_check_done(struct load *ld)
{
	if (ld->finished)
		return;
	if ((ld->stopping && ld->outstanding == 0) || ld->alive == 0) {
		ld->finished = true;
		event_base_loopbreak(ld->base);
	}
}

static void conn_close_fd(struct conn *c)
{
	if (c->ev_r)
		event_free(c->ev_r);
	if (c->ev_w)
		event_free(c->ev_w);
	c->ev_r = c->ev_w = NULL;
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}

/* Closes the socket; what was in flight is lost-unacked. With --reconnect a
 * new connection follows after a short backoff, else the slot is dead. */
static void conn_drop(struct conn *c, bool is_error, const char *why, int err)
{
	struct load *ld = c->ld;

	if (is_error || !ld->o->reconnect)
		load_error(ld, c, "%s%s%s", why, err ? ": " : "", err ? strerror(-err) : "");
	ld->st.unacked += c->live;
	ld->outstanding -= c->live;
	c->head = c->n = c->live = 0;
	conn_close_fd(c);
	c->up = c->connecting = false;
	c->in.off = c->in.len = c->out.off = c->out.len = 0;
	if (ld->o->reconnect && !ld->stopping) {
		uint32_t ms = BACKOFF_MIN_MS + rand_next() % (BACKOFF_MAX_MS - BACKOFF_MIN_MS + 1);
		struct timeval tv = {.tv_sec = 0, .tv_usec = (suseconds_t)ms * 1000};
		evtimer_add(c->ev_retry, &tv);
	} else {
		c->dead = true;
		ld->alive--;
	}
	load_check_done(ld);
}

/* Who message i (0-based, in sending order over all connections) comes
 * from: feed i % N sets MSH-3 and MSH-4 (MLLPLOAD<k>, <facility><k>), and
 * patient (i / N) % M of that feed sets PID-3 (P<j>^^^<MSH-4>^MR). Without
 * --feeds, MSH-3/4 are MLLPLOAD and the facility; without --patients, PID-3
 * is the connection's sequence number, as it always was. The names point
 * into the buffers or into o. */
struct origin {
	const char *app, *fac;
	char app_buf[32], fac_buf[MAX_FIELD_LEN + 24], pid[32];
};

static void message_origin(const struct opts *o, uint64_t i, uint64_t seq, struct origin *org)
{
	uint64_t per_feed = o->feeds ? i / o->feeds : i;

	org->app = "MLLPLOAD";
	org->fac = o->facility;
	if (o->feeds) {
		snprintf(org->app_buf, sizeof(org->app_buf), "MLLPLOAD%" PRIu64, i % o->feeds);
		snprintf(org->fac_buf, sizeof(org->fac_buf), "%s%" PRIu64, o->facility,
			 i % o->feeds);
		org->app = org->app_buf;
		org->fac = org->fac_buf;
	}
	if (o->patients)
		snprintf(org->pid, sizeof(org->pid), "P%" PRIu64, per_feed % o->patients);
	else
		snprintf(org->pid, sizeof(org->pid), "%" PRIu64, seq);
}

/* Appends one framed ADT^A01 of exactly SIZE payload bytes (or the bare
 * header when SIZE is smaller); i is the message's index over the run.
 * Returns the frame length or -EMSGSIZE. */
static int build_message(const struct load *ld, const struct conn *c, uint64_t i, uint64_t seq,
			 uint8_t *dst, size_t cap)
{
	const struct opts *o = ld->o;
	struct origin from;
	size_t len = 1;
	int n;

	message_origin(o, i, seq, &from);
	dst[0] = SB;
	n = snprintf(
	    (char *)dst + 1, cap - 1,
	    "MSH|^~\\&|%s|%s|BRIDGE|CLOUD|%s||ADT^A01^ADT_A01|%s%" PRIu64
	    "|P|2.5.1%s\rEVN|A01|%s\rPID|1||%s^^^%s^MR||LOAD^PATIENT||19800101|U\rPV1|1|I\r",
	    from.app, from.fac, ld->ts, c->idpfx, seq, o->enhanced ? "|||AL|NE" : "", ld->ts,
	    from.pid, from.fac);
	if (n < 0 || (size_t)n + MSG_SLACK > cap)
		return -EMSGSIZE;
	len += (size_t)n;
	if (o->size >= (size_t)n + NTE_OVERHEAD) {
		size_t pad = o->size - (size_t)n - NTE_OVERHEAD;
		memcpy(dst + len, "NTE|1||", NTE_OVERHEAD - 1);
		len += NTE_OVERHEAD - 1;
		memset(dst + len, 'x', pad);
		len += pad;
		dst[len++] = CR;
	}
	dst[len++] = EB;
	dst[len++] = CR;
	return (int)len;
}

static bool load_may_issue(const struct load *ld)
{
	return !ld->stopping && (ld->o->total == 0 || ld->st.sent < ld->o->total);
}

static int conn_send_one(struct conn *c, uint64_t now)
{
	struct load *ld = c->ld;
	int err = buf_reserve(&c->out, ld->o->size + MSG_SLACK, SIZE_MAX);

	if (err)
		return err;
	int len = build_message(ld, c, ld->st.sent, c->next_seq, c->out.p + c->out.len,
				c->out.cap - c->out.len);
	if (len < 0)
		return len;
	c->out.len += (size_t)len;
	struct slot *s = &c->ring[(c->head + c->n) % ld->o->pipeline];
	*s = (struct slot){.seq = c->next_seq++, .t_ns = now};
	c->n++;
	c->live++;
	ld->outstanding++;
	ld->st.sent++;
	if (ld->o->total && ld->st.sent >= ld->o->total)
		ld->stopping = true;
	return 0;
}

static int conn_flush(struct conn *c)
{
	int rc = buf_flush(&c->out, c->fd);

	if (rc > 0 && event_add(c->ev_w, NULL) < 0)
		return -ENOMEM;
	return rc < 0 ? rc : 0;
}

/* Tops the pipeline up and writes; unpaced mode only. */
static int conn_fill(struct conn *c)
{
	struct load *ld = c->ld;
	uint64_t now = now_ns();

	ts_refresh(ld->ts, &ld->ts_sec);
	while (c->n < ld->o->pipeline && load_may_issue(ld)) {
		int err = conn_send_one(c, now);
		if (err)
			return err;
	}
	return conn_flush(c);
}

static void conn_complete(struct conn *c, unsigned pos, bool positive, uint64_t now)
{
	struct load *ld = c->ld;
	unsigned depth = ld->o->pipeline;
	struct slot *s = &c->ring[pos];

	hist_add(&ld->st, now - s->t_ns);
	if (positive) {
		ld->st.acked++;
		if (ld->acked)
			fprintf(ld->acked, "%s%" PRIu64 "\n", c->idpfx, s->seq);
	} else {
		ld->st.nak++;
	}
	s->done = true;
	c->live--;
	ld->outstanding--;
	ld->t_last_ack = now;
	while (c->n > 0 && c->ring[c->head].done) {
		c->head = (c->head + 1) % depth;
		c->n--;
	}
}

/* Ring position of the live frame whose MSH-10 is ctrl, or -ENOENT. */
static int conn_find(const struct conn *c, const struct slice *ctrl)
{
	size_t plen = strlen(c->idpfx);
	uint64_t seq = 0;

	if (ctrl->len <= plen || ctrl->len > plen + 20 || memcmp(ctrl->p, c->idpfx, plen) != 0)
		return -ENOENT;
	for (size_t i = plen; i < ctrl->len; i++) {
		if (ctrl->p[i] < '0' || ctrl->p[i] > '9')
			return -ENOENT;
		seq = seq * 10 + (uint64_t)(ctrl->p[i] - '0');
	}
	for (unsigned k = 0; k < c->n; k++) {
		unsigned pos = (c->head + k) % c->ld->o->pipeline;
		if (!c->ring[pos].done && c->ring[pos].seq == seq)
			return (int)pos;
	}
	return -ENOENT;
}

/* Matches one answer: R2 commit blocks FIFO, HL7 ACKs by MSA-2. */
static void conn_on_answer(struct conn *c, const struct slice *f, uint64_t now)
{
	struct load *ld = c->ld;
	struct slice code, ctrl;

	if (f->len == 1 && (f->p[0] == R2_ACK || f->p[0] == R2_NAK)) {
		if (c->live == 0)
			load_error(ld, c, "commit block with nothing outstanding");
		else
			conn_complete(c, c->head, f->p[0] == R2_ACK, now);
		return;
	}
	if (msa_parse(f->p, f->len, &code, &ctrl) < 0) {
		load_error(ld, c, "answer without MSA segment (%zu bytes)", f->len);
		return;
	}
	int pos = conn_find(c, &ctrl);
	if (pos < 0) {
		load_error(ld, c, "ACK for unknown control ID '%.*s'", (int)ctrl.len, ctrl.p);
		return;
	}
	bool positive = slice_is(&code, "AA") || slice_is(&code, "CA");
	if (!positive && !slice_is(&code, "AE") && !slice_is(&code, "AR") &&
	    !slice_is(&code, "CE") && !slice_is(&code, "CR"))
		load_error(ld, c, "unknown MSA-1 '%.*s', counted as NAK", (int)code.len, code.p);
	else if (!positive && ld->logged < LOG_LIMIT)
		fprintf(stderr, "mllp-load: conn %u: %.*s for %.*s\n", c->idx, (int)code.len,
			code.p, (int)ctrl.len, ctrl.p);
	conn_complete(c, (unsigned)pos, positive, now);
}

static void conn_on_readable(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	struct load *ld = c->ld;
	struct slice f;
	int rc;

	(void)fd;
	(void)what;
	ssize_t n = buf_read(&c->in, c->fd, MAX_ACK_FRAME + READ_CHUNK);
	if (n == -EAGAIN)
		return;
	if (n <= 0) {
		conn_drop(c, false, n == 0 ? "closed by the server" : "read", (int)n);
		return;
	}
	uint64_t now = now_ns();
	while ((rc = frame_next(&c->in, &f, MAX_ACK_FRAME)) > 0)
		conn_on_answer(c, &f, now);
	if (rc < 0) {
		conn_drop(c, true, "oversized answer", rc);
		return;
	}
	rc = ld->o->rate ? 0 : conn_fill(c);
	if (rc < 0) {
		conn_drop(c, false, "write", rc);
		return;
	}
	load_check_done(ld);
}

static void conn_on_writable(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	int err;

	(void)fd;
	(void)what;
	if (!c->connecting) {
		err = conn_flush(c);
		if (err)
			conn_drop(c, false, "write", err);
		return;
	}
	err = connect_result(c->fd);
	if (err) {
		conn_drop(c, false, "connect", err);
		return;
	}
	c->connecting = false;
	c->up = true;
	err = event_add(c->ev_r, NULL) < 0 ? -ENOMEM : 0;
	if (!err && !c->ld->o->rate)
		err = conn_fill(c);
	if (err)
		conn_drop(c, false, "write", err);
	else
		load_check_done(c->ld);
}

/* Opens (or reopens) the connection. Control IDs keep counting up, so a
 * reconnected sender never reuses one. */
static void conn_open(struct conn *c)
{
	struct load *ld = c->ld;
	int err = tcp_connect(&ld->dst, ld->o, c->idx, &c->fd);

	if (err) {
		conn_drop(c, false, "connect", err);
		return;
	}
	c->connecting = true;
	c->ev_r = event_new(ld->base, c->fd, EV_READ | EV_PERSIST, conn_on_readable, c);
	c->ev_w = event_new(ld->base, c->fd, EV_WRITE, conn_on_writable, c);
	if (!c->ev_r || !c->ev_w || event_add(c->ev_w, NULL) < 0)
		conn_drop(c, true, "event", -ENOMEM);
}

static void conn_on_retry(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;

	(void)fd;
	(void)what;
	if (!c->ld->stopping)
		conn_open(c);
}

/* ---- load: timers -------------------------------------------------------- */

/* -r pacing: the budget follows elapsed time; frames go out round robin,
 * one per connection per pass, so no sender bursts. */
static void load_on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct load *ld = arg;
	uint64_t now = now_ns();
	uint64_t allowed =
	    (uint64_t)((double)(now - ld->t_start) * (double)ld->o->rate / NS_PER_S) + 1;
	bool progress = true;

	(void)fd;
	(void)what;
	ts_refresh(ld->ts, &ld->ts_sec);
	while (progress && ld->st.sent < allowed && load_may_issue(ld)) {
		progress = false;
		for (unsigned k = 0;
		     k < ld->o->conns && ld->st.sent < allowed && load_may_issue(ld); k++) {
			struct conn *c = &ld->conns[ld->rr];
			ld->rr = (ld->rr + 1) % ld->o->conns;
			if (!c->up || c->n >= ld->o->pipeline)
				continue;
			int err = conn_send_one(c, now);
			if (!err)
				err = conn_flush(c);
			if (err)
				conn_drop(c, false, "write", err);
			else
				progress = true;
		}
	}
	load_check_done(ld);
}

/* Frames unanswered for longer than -T: the server is stuck, not slow. */
static void load_on_watchdog(evutil_socket_t fd, short what, void *arg)
{
	struct load *ld = arg;
	uint64_t now = now_ns(), limit = (uint64_t)(ld->o->ack_timeout * NS_PER_S);

	(void)fd;
	(void)what;
	for (unsigned i = 0; i < ld->o->conns; i++) {
		struct conn *c = &ld->conns[i];
		if (c->up && c->live > 0 && now - c->ring[c->head].t_ns > limit)
			conn_drop(c, true, "no ACK within the timeout", 0);
	}
}

static void load_on_flush(evutil_socket_t fd, short what, void *arg)
{
	struct load *ld = arg;

	(void)fd;
	(void)what;
	fflush(ld->acked);
}

static void load_on_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct load *ld = arg;

	(void)fd;
	(void)what;
	ld->stopping = true;
	load_check_done(ld);
}

/* ---- load: setup and run ------------------------------------------------- */

static struct event *timer_start(struct event_base *base, uint64_t every_ns, bool persist,
				 event_callback_fn cb, void *arg)
{
	struct event *ev = event_new(base, -1, persist ? EV_PERSIST : 0, cb, arg);
	struct timeval tv = tv_of_ns(every_ns);

	if (ev && event_add(ev, &tv) < 0) {
		event_free(ev);
		ev = NULL;
	}
	return ev;
}

static int load_init_conns(struct load *ld)
{
	const struct opts *o = ld->o;

	ld->conns = calloc(o->conns, sizeof(*ld->conns));
	if (!ld->conns)
		return -ENOMEM;
	for (unsigned i = 0; i < o->conns; i++) {
		struct conn *c = &ld->conns[i];
		c->ld = ld;
		c->idx = i;
		c->fd = -1;
		snprintf(c->idpfx, sizeof(c->idpfx), "%s-%u-", o->prefix, i);
		c->ring = calloc(o->pipeline, sizeof(*c->ring));
		c->ev_retry = evtimer_new(ld->base, conn_on_retry, c);
		if (!c->ring || !c->ev_retry)
			return -ENOMEM;
	}
	ld->alive = o->conns;
	return 0;
}

static int load_init_timers(struct load *ld)
{
	const struct opts *o = ld->o;

	ld->ev_dog = timer_start(ld->base, WATCHDOG_MS * NS_PER_MS, true, load_on_watchdog, ld);
	if (!ld->ev_dog)
		return -ENOMEM;
	if (o->rate) {
		uint64_t tick = NS_PER_S / o->rate;
		tick = tick < TICK_MIN_US * 1000ull ? TICK_MIN_US * 1000ull : tick;
		tick = tick > TICK_MAX_US * 1000ull ? TICK_MAX_US * 1000ull : tick;
		ld->ev_tick = timer_start(ld->base, tick, true, load_on_tick, ld);
		if (!ld->ev_tick)
			return -ENOMEM;
	}
	if (ld->acked) {
		ld->ev_flush =
		    timer_start(ld->base, ACKED_FLUSH_MS * NS_PER_MS, true, load_on_flush, ld);
		if (!ld->ev_flush)
			return -ENOMEM;
	}
	if (o->have_duration) {
		ld->ev_stop = timer_start(ld->base, (uint64_t)(o->duration * NS_PER_S), false,
					  load_on_deadline, ld);
		if (!ld->ev_stop)
			return -ENOMEM;
	}
	return 0;
}

static void load_free(struct load *ld)
{
	for (unsigned i = 0; ld->conns && i < ld->o->conns; i++) {
		struct conn *c = &ld->conns[i];
		conn_close_fd(c);
		if (c->ev_retry)
			event_free(c->ev_retry);
		buf_free(&c->in);
		buf_free(&c->out);
		free(c->ring);
	}
	free(ld->conns);
	ld->conns = NULL;
	struct event *evs[] = {ld->ev_tick, ld->ev_dog, ld->ev_flush, ld->ev_stop};
	for (size_t i = 0; i < sizeof(evs) / sizeof(evs[0]); i++)
		if (evs[i])
			event_free(evs[i]);
	if (ld->acked)
		fclose(ld->acked);
	ld->acked = NULL;
}

static int load_run(const struct opts *o)
{
	struct load ld = {.o = o};
	struct event *sig[2] = {NULL, NULL};
	int err = resolve(o->target, false, &ld.dst);

	if (!err)
		err = raise_nofile(o->conns);
	if (err)
		return 2;
	ld.base = base_new(o->rate != 0);
	if (o->acked_path) {
		ld.acked = fopen(o->acked_path, "a");
		if (!ld.acked) {
			fprintf(stderr, "mllp-load: %s: %s\n", o->acked_path, strerror(errno));
			return 2;
		}
	}
	if (!ld.base || load_init_conns(&ld) || load_init_timers(&ld) ||
	    signals_add(ld.base, sig)) {
		fprintf(stderr, "mllp-load: out of memory\n");
		return 2;
	}
	ld.t_start = now_ns();
	ts_refresh(ld.ts, &ld.ts_sec);
	for (unsigned i = 0; i < o->conns; i++)
		conn_open(&ld.conns[i]);
	if (!ld.finished)
		event_base_dispatch(ld.base);
	uint64_t t_end =
	    ld.t_last_ack > ld.t_start && ld.outstanding == 0 ? ld.t_last_ack : now_ns();
	ld.st.unacked += ld.outstanding;
	load_summary(&ld, t_end);
	/* Nothing sent at all is a failure too: the target never became usable. */
	bool failed = ld.st.errors || ld.st.nak || ld.st.sent == 0 ||
		      (ld.st.unacked && !o->reconnect && ld.finished);
	signals_free(sig);
	load_free(&ld);
	event_base_free(ld.base);
	return failed ? 1 : 0;
}

/* ---- echo server --------------------------------------------------------- */

struct echo {
	struct event_base *base;
	int lfd;
	bool r2;
	struct event *ev_accept;
	struct econn *list;
	uint64_t conns, frames, seq;
	char ts[TS_LEN];
	time_t ts_sec;
};

struct econn {
	struct echo *e;
	struct econn *prev, *next;
	int fd;
	bool paused;
	struct event *ev_r, *ev_w;
	struct buf in, out;
};

static void econn_close(struct econn *ec)
{
	if (ec->prev)
		ec->prev->next = ec->next;
	else
		ec->e->list = ec->next;
	if (ec->next)
		ec->next->prev = ec->prev;
	event_free(ec->ev_r);
	event_free(ec->ev_w);
	close(ec->fd);
	buf_free(&ec->in);
	buf_free(&ec->out);
	free(ec);
}

static size_t cut(size_t len)
{
	return len > ECHO_FIELD_MAX ? ECHO_FIELD_MAX : len;
}

/* The trigger event, second component of MSH-9 ("A01" of "ADT^A01^ADT_A01"). */
static struct slice msh9_trigger(const struct slice f[MSH_FIELDS])
{
	struct slice t = {(const uint8_t *)"", 0};
	uint8_t cs = f[2].len > 0 ? f[2].p[0] : '^';
	const uint8_t *p = f[9].len ? memchr(f[9].p, cs, f[9].len) : NULL;

	if (p) {
		t.p = p + 1;
		t.len = (size_t)(f[9].p + f[9].len - t.p);
		const uint8_t *q = memchr(t.p, cs, t.len);
		if (q)
			t.len = (size_t)(q - t.p);
	}
	return t;
}

/* The minimal ACK: MSH with sender and receiver swapped, MSA mirroring MSH-10;
 * CA instead of AA when the message asks for enhanced mode (MSH-15). */
static int echo_ack(struct echo *e, const struct slice *msg, struct buf *out)
{
	struct slice f[MSH_FIELDS];
	int fs = msh_split(msg->p, msg->len, f), n;
	int err = buf_reserve(out, ECHO_ACK_MAX, SIZE_MAX);

	if (err)
		return err;
	char *dst = (char *)out->p + out->len;
	if (fs < 0) {
		n = snprintf(dst, ECHO_ACK_MAX,
			     "%cMSH|^~\\&|ECHO||||%s||ACK|E%" PRIu64 "|P|2.5.1\rMSA|AR|\r%c%c", SB,
			     e->ts, ++e->seq, EB, CR);
	} else {
		struct slice t = msh9_trigger(f);
		const char *code = f[15].len ? "CA" : "AA";
#define F(k) (int)cut(f[k].len), (const char *)f[k].p
		n = snprintf(dst, ECHO_ACK_MAX,
			     "%cMSH%c%.*s%c%.*s%c%.*s%c%.*s%c%.*s%c%s%c%cACK^%.*s^ACK%cE%" PRIu64
			     "%c%.*s%c%.*s\rMSA%c%s%c%.*s\r%c%c",
			     SB, fs, F(2), fs, F(5), fs, F(6), fs, F(3), fs, F(4), fs, e->ts, fs,
			     fs, (int)cut(t.len), (const char *)t.p, fs, ++e->seq, fs, F(11), fs,
			     F(12), fs, code, fs, F(10), EB, CR);
#undef F
	}
	if (n < 0 || n >= (int)ECHO_ACK_MAX)
		return -EMSGSIZE;
	out->len += (size_t)n;
	return 0;
}

static int echo_answer(struct echo *e, const struct slice *msg, struct buf *out)
{
	static const uint8_t commit[] = {SB, R2_ACK, EB, CR};
	int err;

	e->frames++;
	if (!e->r2)
		return echo_ack(e, msg, out);
	err = buf_reserve(out, sizeof(commit), SIZE_MAX);
	if (!err) {
		memcpy(out->p + out->len, commit, sizeof(commit));
		out->len += sizeof(commit);
	}
	return err;
}

static int econn_flush(struct econn *ec)
{
	int rc = buf_flush(&ec->out, ec->fd);

	if (rc < 0)
		return rc;
	if (rc > 0 && event_add(ec->ev_w, NULL) < 0)
		return -ENOMEM;
	bool high = ec->out.len - ec->out.off > ECHO_WBUF_HIGH;
	if (high != ec->paused) {
		ec->paused = high;
		if ((high ? event_del(ec->ev_r) : event_add(ec->ev_r, NULL)) < 0)
			return -ENOMEM;
	}
	return 0;
}

static void econn_on_readable(evutil_socket_t fd, short what, void *arg)
{
	struct econn *ec = arg;
	struct slice f;
	int rc;

	(void)fd;
	(void)what;
	ssize_t n = buf_read(&ec->in, ec->fd, MAX_MSG_SIZE + READ_CHUNK);
	if (n == -EAGAIN)
		return;
	if (n <= 0) {
		econn_close(ec);
		return;
	}
	ts_refresh(ec->e->ts, &ec->e->ts_sec);
	while ((rc = frame_next(&ec->in, &f, MAX_MSG_SIZE)) > 0) {
		rc = echo_answer(ec->e, &f, &ec->out);
		if (rc < 0)
			break;
	}
	if (rc < 0 || econn_flush(ec) < 0)
		econn_close(ec);
}

static void econn_on_writable(evutil_socket_t fd, short what, void *arg)
{
	struct econn *ec = arg;

	(void)fd;
	(void)what;
	if (econn_flush(ec) < 0)
		econn_close(ec);
}

static int echo_adopt(struct echo *e, int fd)
{
	struct econn *ec = calloc(1, sizeof(*ec));
	int one = 1;

	if (!ec) {
		close(fd);
		return -ENOMEM;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	ec->e = e;
	ec->fd = fd;
	ec->ev_r = event_new(e->base, fd, EV_READ | EV_PERSIST, econn_on_readable, ec);
	ec->ev_w = event_new(e->base, fd, EV_WRITE, econn_on_writable, ec);
	ec->next = e->list;
	if (e->list)
		e->list->prev = ec;
	e->list = ec;
	if (!ec->ev_r || !ec->ev_w || event_add(ec->ev_r, NULL) < 0) {
		econn_close(ec);
		return -ENOMEM;
	}
	e->conns++;
	return 0;
}

static void echo_on_accept(evutil_socket_t fd, short what, void *arg)
{
	struct echo *e = arg;

	(void)what;
	for (unsigned i = 0; i < ACCEPT_BATCH; i++) {
		int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (cfd < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				fprintf(stderr, "mllp-load: accept: %s\n", strerror(errno));
			return;
		}
		if (echo_adopt(e, cfd) < 0)
			fprintf(stderr, "mllp-load: out of memory for a connection\n");
	}
}

static int listen_on(const struct addr *a)
{
	int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;

	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (const struct sockaddr *)&a->ss, a->len) < 0 || listen(fd, SOMAXCONN) < 0) {
		int err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

static int echo_run(const struct opts *o)
{
	struct echo e = {.r2 = o->r2};
	struct event *sig[2] = {NULL, NULL};
	struct addr a;

	if (resolve(o->echo, true, &a) < 0)
		return 2;
	raise_nofile(0);
	e.lfd = listen_on(&a);
	if (e.lfd < 0) {
		fprintf(stderr, "mllp-load: listen on %s: %s\n", o->echo, strerror(-e.lfd));
		return 2;
	}
	e.base = base_new(false);
	e.ev_accept =
	    e.base ? event_new(e.base, e.lfd, EV_READ | EV_PERSIST, echo_on_accept, &e) : NULL;
	if (!e.ev_accept || event_add(e.ev_accept, NULL) < 0 || signals_add(e.base, sig) < 0) {
		fprintf(stderr, "mllp-load: out of memory\n");
		return 2;
	}
	fprintf(stderr, "mllp-load: echo on %s (%s)\n", o->echo, o->r2 ? "R2 commit" : "HL7 ACK");
	event_base_dispatch(e.base);
	while (e.list)
		econn_close(e.list);
	printf("echo conns=%" PRIu64 " frames=%" PRIu64 "\n", e.conns, e.frames);
	signals_free(sig);
	event_free(e.ev_accept);
	close(e.lfd);
	event_base_free(e.base);
	return 0;
}

/* ---- idle connections ---------------------------------------------------- */

struct idle {
	const struct opts *o;
	struct event_base *base;
	struct addr dst;
	struct iconn *c;
	unsigned next, connecting, open, failed, closed;
	struct event *ev_hold;
};

struct iconn {
	struct idle *im;
	int fd;
	struct event *ev;
};

static void iconn_close(struct iconn *ic)
{
	if (ic->ev)
		event_free(ic->ev);
	ic->ev = NULL;
	close(ic->fd);
	ic->fd = -1;
}

static void idle_on_readable(evutil_socket_t fd, short what, void *arg)
{
	struct iconn *ic = arg;
	uint8_t sink[256];

	(void)what;
	ssize_t n = read(fd, sink, sizeof(sink));
	if (n > 0 || (n < 0 && (errno == EAGAIN || errno == EINTR)))
		return;
	ic->im->open--;
	ic->im->closed++;
	iconn_close(ic);
}

static void idle_launch(struct idle *im);

static void idle_on_connected(evutil_socket_t fd, short what, void *arg)
{
	struct iconn *ic = arg;
	struct idle *im = ic->im;
	int err = connect_result((int)fd);

	(void)what;
	im->connecting--;
	event_free(ic->ev);
	ic->ev = err ? NULL : event_new(im->base, fd, EV_READ | EV_PERSIST, idle_on_readable, ic);
	if (!err && (!ic->ev || event_add(ic->ev, NULL) < 0))
		err = -ENOMEM;
	if (err) {
		if (im->failed++ < LOG_LIMIT)
			fprintf(stderr, "mllp-load: idle connect: %s\n", strerror(-err));
		iconn_close(ic);
	} else {
		im->open++;
	}
	idle_launch(im);
}

static void idle_on_hold_end(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	event_base_loopbreak(arg);
}

/* Keeps IDLE_MAX_CONNECTING handshakes in flight; prints `open=` once all
 * were tried, then holds for -d seconds (or until a signal). */
static void idle_launch(struct idle *im)
{
	while (im->connecting < IDLE_MAX_CONNECTING && im->next < im->o->idle) {
		struct iconn *ic = &im->c[im->next];
		ic->im = im;
		int err = tcp_connect(&im->dst, im->o, im->next++, &ic->fd);
		if (!err) {
			ic->ev = event_new(im->base, ic->fd, EV_WRITE, idle_on_connected, ic);
			err = !ic->ev || event_add(ic->ev, NULL) < 0 ? -ENOMEM : 0;
		}
		if (err) {
			if (im->failed++ < LOG_LIMIT)
				fprintf(stderr, "mllp-load: idle connect: %s\n", strerror(-err));
			if (ic->fd >= 0)
				iconn_close(ic);
			continue;
		}
		im->connecting++;
	}
	if (im->connecting > 0 || im->next < im->o->idle || im->ev_hold)
		return;
	printf("open=%u failed=%u\n", im->open, im->failed);
	fflush(stdout);
	if (im->o->have_duration)
		im->ev_hold = timer_start(im->base, (uint64_t)(im->o->duration * NS_PER_S), false,
					  idle_on_hold_end, im->base);
}

static int idle_run(const struct opts *o)
{
	struct idle im = {.o = o};
	struct event *sig[2] = {NULL, NULL};

	if (resolve(o->target, false, &im.dst) < 0 || raise_nofile(o->idle) < 0)
		return 2;
	im.base = base_new(false);
	im.c = calloc(o->idle, sizeof(*im.c));
	if (!im.base || !im.c || signals_add(im.base, sig) < 0) {
		fprintf(stderr, "mllp-load: out of memory\n");
		return 2;
	}
	for (unsigned i = 0; i < o->idle; i++)
		im.c[i].fd = -1;
	idle_launch(&im);
	event_base_dispatch(im.base);
	printf("idle open=%u failed=%u closed=%u\n", im.open, im.failed, im.closed);
	fflush(stdout);
	for (unsigned i = 0; i < o->idle; i++)
		if (im.c[i].fd >= 0)
			iconn_close(&im.c[i]);
	free(im.c);
	if (im.ev_hold)
		event_free(im.ev_hold);
	signals_free(sig);
	event_base_free(im.base);
	return im.failed || im.closed || im.open < o->idle ? 1 : 0;
}

/* ---- command line -------------------------------------------------------- */

static void usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: mllp-load -t HOST:PORT [-c CONNS] [-n TOTAL] [-d SECS] [-s SIZE] [-p DEPTH]\n"
	    "                 [-r MSG_PER_S] [--bind-from ADDR | --source ADDR] [--acked FILE]\n"
	    "                 [--reconnect]\n"
	    "                 [--enhanced] [--id-prefix P] [--facility F] [-T ACK_TIMEOUT_S]\n"
	    "                 [--feeds N] [--patients M]\n"
	    "       mllp-load --echo ADDR:PORT [--r2]\n"
	    "       mllp-load --idle N -t HOST:PORT [-d SECS]\n");
}

static int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	char *end;

	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s || *end || s[0] == '-' || v < min || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

static int parse_secs(const char *s, double *out)
{
	char *end;
	double v = strtod(s, &end);

	if (end == s || *end || !(v >= 0) || v > 1e7)
		return -EINVAL;
	*out = v;
	return 0;
}

enum {
	OPT_BIND = 256,
	OPT_SOURCE,
	OPT_ACKED,
	OPT_RECONNECT,
	OPT_ENHANCED,
	OPT_PREFIX,
	OPT_FACILITY,
	OPT_ECHO,
	OPT_R2,
	OPT_IDLE,
	OPT_FEEDS,
	OPT_PATIENTS,
};

static const struct option long_opts[] = {
    {"target", required_argument, NULL, 't'},
    {"conns", required_argument, NULL, 'c'},
    {"count", required_argument, NULL, 'n'},
    {"duration", required_argument, NULL, 'd'},
    {"size", required_argument, NULL, 's'},
    {"pipeline", required_argument, NULL, 'p'},
    {"rate", required_argument, NULL, 'r'},
    {"ack-timeout", required_argument, NULL, 'T'},
    {"bind-from", required_argument, NULL, OPT_BIND},
    {"source", required_argument, NULL, OPT_SOURCE},
    {"acked", required_argument, NULL, OPT_ACKED},
    {"reconnect", no_argument, NULL, OPT_RECONNECT},
    {"enhanced", no_argument, NULL, OPT_ENHANCED},
    {"id-prefix", required_argument, NULL, OPT_PREFIX},
    {"facility", required_argument, NULL, OPT_FACILITY},
    {"echo", required_argument, NULL, OPT_ECHO},
    {"r2", no_argument, NULL, OPT_R2},
    {"idle", required_argument, NULL, OPT_IDLE},
    {"feeds", required_argument, NULL, OPT_FEEDS},
    {"patients", required_argument, NULL, OPT_PATIENTS},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* A control ID or facility goes into HL7 fields verbatim: no delimiters. */
static bool hl7_safe(const char *s, size_t max)
{
	size_t len = strlen(s);

	return len > 0 && len <= max && strpbrk(s, "|^~\\&\r\n") == NULL;
}

static int parse_one(struct opts *o, int ch, const char *arg)
{
	uint64_t v = 0;
	int err = 0;

	switch (ch) {
	case 't':
		o->target = arg;
		break;
	case 'c':
		err = parse_u64(arg, 1, MAX_CONNS, &v);
		o->conns = (unsigned)v;
		break;
	case 'n':
		err = parse_u64(arg, 1, UINT64_MAX / 2, &o->total);
		break;
	case 'd':
		err = parse_secs(arg, &o->duration);
		o->have_duration = true;
		break;
	case 's':
		err = parse_u64(arg, 1, MAX_MSG_SIZE, &v);
		o->size = (size_t)v;
		break;
	case 'p':
		err = parse_u64(arg, 1, MAX_PIPELINE, &v);
		o->pipeline = (unsigned)v;
		break;
	case 'r':
		err = parse_u64(arg, 1, MAX_RATE, &o->rate);
		break;
	case 'T':
		err = parse_secs(arg, &o->ack_timeout);
		break;
	case OPT_BIND:
	case OPT_SOURCE:
		err = inet_pton(AF_INET, arg, &o->bind_from) == 1 ? 0 : -EINVAL;
		o->have_bind = true;
		o->bind_one = ch == OPT_SOURCE;
		break;
	case OPT_ACKED:
		o->acked_path = arg;
		break;
	case OPT_RECONNECT:
		o->reconnect = true;
		break;
	case OPT_ENHANCED:
		o->enhanced = true;
		break;
	case OPT_PREFIX:
		o->prefix = arg;
		err = hl7_safe(arg, MAX_PREFIX_LEN) ? 0 : -EINVAL;
		break;
	case OPT_FACILITY:
		o->facility = arg;
		err = hl7_safe(arg, MAX_FIELD_LEN) ? 0 : -EINVAL;
		break;
	case OPT_ECHO:
		o->echo = arg;
		break;
	case OPT_R2:
		o->r2 = true;
		break;
	case OPT_IDLE:
		err = parse_u64(arg, 1, MAX_CONNS, &v);
		o->idle = (unsigned)v;
		break;
	case OPT_FEEDS:
		err = parse_u64(arg, 1, MAX_FEEDS, &v);
		o->feeds = (unsigned)v;
		break;
	case OPT_PATIENTS:
		err = parse_u64(arg, 1, MAX_PATIENTS, &v);
		o->patients = (unsigned)v;
		break;
	default:
		err = -EINVAL;
		break;
	}
	return err;
}

/* The default prefix changes every second so that two runs never share a
 * control ID (a spool may deduplicate on it). */
static int parse_args(int argc, char **argv, struct opts *o, char *prefix, size_t prefix_len)
{
	int ch;

	*o = (struct opts){.conns = 1,
			   .pipeline = 1,
			   .size = 1024,
			   .facility = "LOAD",
			   .ack_timeout = ACK_TIMEOUT_DEFAULT_S};
	snprintf(prefix, prefix_len, "L%06x", (unsigned)(time(NULL) & 0xffffff));
	o->prefix = prefix;
	while ((ch = getopt_long(argc, argv, "t:c:n:d:s:p:r:T:h", long_opts, NULL)) != -1) {
		if (ch == 'h') {
			usage(stdout);
			exit(0);
		}
		if (parse_one(o, ch, optarg) < 0) {
			if (ch != '?')
				fprintf(stderr, "mllp-load: bad value '%s'\n", optarg);
			return -EINVAL;
		}
	}
	if (optind != argc || (!o->echo && !o->target) || (o->echo && (o->target || o->idle))) {
		usage(stderr);
		return -EINVAL;
	}
	if (!o->total && !o->have_duration && !o->idle)
		o->total = DEFAULT_TOTAL;
	return 0;
}

int main(int argc, char **argv)
{
	struct opts o;
	char prefix[MAX_PREFIX_LEN + 1];

	if (parse_args(argc, argv, &o, prefix, sizeof(prefix)) < 0)
		return 2;
	signal(SIGPIPE, SIG_IGN);
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (o.echo)
		return echo_run(&o);
	if (o.idle)
		return idle_run(&o);
	return load_run(&o);
}
