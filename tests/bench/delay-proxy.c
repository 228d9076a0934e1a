/*
 * delay-proxy: a TCP proxy that adds a fixed one-way delay in each direction,
 * for WAN-like benchmarks on a kernel without netem.
 *
 *   delay-proxy --listen ADDR:PORT --to ADDR:PORT --delay-ms MS [--max-pending BYTES]
 *
 * Every chunk read from one side is stamped and queued; a timer per direction
 * writes it to the other side when it is due (read time + MS). Byte order per
 * connection is kept because each direction is one FIFO. A side is no longer
 * read once its direction holds more than --max-pending bytes (queued plus not
 * yet written), so a fast sender cannot grow the proxy without bound. An EOF
 * travels as a queued marker, so the half-close reaches the peer with the same
 * delay; a reset or error closes both sides at once (not delayed). The TCP
 * handshake is not delayed either: both ends complete it locally, and the
 * first payload bytes (TLS ClientHello) pay the delay.
 *
 * Prints "delay-proxy: listening on ..." on stderr when ready; SIGTERM or
 * SIGINT stops it and prints a summary line.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>

#define MAX_DELAY_MS	    60000u
#define PENDING_DEFAULT	    (1u << 20) /* per direction: about 100 MB/s at 10 ms */
#define PENDING_MIN	    4096u
#define PENDING_MAX	    (256u << 20)
#define NS_PER_MS	    1000000ull
#define NS_PER_S	    1000000000ull
#define LISTEN_BACKLOG	    4096
#define NOFILE_WANT	    65536u
#define LOG_LIMIT	    20u /* then connection errors are only counted */
#define READ_HIGH_WATERMARK 65536u

struct opts {
	struct sockaddr_storage listen, to;
	int listen_len, to_len;
	const char *listen_text, *to_text;
	uint64_t delay_ns;
	size_t max_pending;
};

/* A queued run of bytes; len 0 is the EOF marker. */
struct chunk {
	struct chunk *next;
	uint64_t due_ns;
	size_t len;
	unsigned char data[];
};

struct pair;

/* One direction: bytes read on side `from` and written to side `to`. */
struct dir {
	struct pair *pr;
	int from, to; /* 0 client, 1 upstream */
	struct chunk *head, *tail;
	size_t queued;	   /* bytes in the chunk queue */
	bool eof_queued;   /* the EOF marker is in the queue */
	bool eof_released; /* the marker was due: shut down `to` once written */
	bool shut;	   /* shutdown(to, SHUT_WR) done */
	bool reading_off;  /* `from` paused for the pending bound */
	struct event *timer;
};

struct proxy {
	const struct opts *o;
	struct event_base *base;
	uint64_t accepted, closed, errors, bytes[2];
	unsigned open, logged;
};

struct pair {
	struct proxy *px;
	struct bufferevent *bev[2];
	struct dir dir[2]; /* dir[s] carries what side s sends */
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

static void proxy_log(struct proxy *px, const char *what, int err)
{
	px->errors++;
	if (px->logged++ < LOG_LIMIT)
		fprintf(stderr, "delay-proxy: %s: %s\n", what, evutil_socket_error_to_string(err));
}

static void pair_free(struct pair *pr)
{
	for (int s = 0; s < 2; s++) {
		struct dir *d = &pr->dir[s];
		while (d->head) {
			struct chunk *c = d->head;
			d->head = c->next;
			free(c);
		}
		if (d->timer)
			event_free(d->timer);
		if (pr->bev[s])
			bufferevent_free(pr->bev[s]); /* BEV_OPT_CLOSE_ON_FREE */
	}
	pr->px->open--;
	pr->px->closed++;
	free(pr);
}

/* Bytes this direction holds: queued here plus not yet written to `to`. */
static size_t dir_pending(const struct dir *d)
{
	return d->queued + evbuffer_get_length(bufferevent_get_output(d->pr->bev[d->to]));
}

/* Done when both directions delivered their EOF and wrote everything. */
static bool pair_done(const struct pair *pr)
{
	return pr->dir[0].shut && pr->dir[1].shut;
}

static void dir_arm(struct dir *d, uint64_t now)
{
	uint64_t wait = d->head->due_ns > now ? d->head->due_ns - now : 0;
	struct timeval tv = {.tv_sec = (time_t)(wait / NS_PER_S),
			     .tv_usec = (suseconds_t)(wait % NS_PER_S / 1000)};

	if (!evtimer_pending(d->timer, NULL))
		evtimer_add(d->timer, &tv);
}

static void dir_enqueue(struct dir *d, struct chunk *c)
{
	if (d->tail)
		d->tail->next = c;
	else
		d->head = c;
	d->tail = c;
	d->queued += c->len;
	dir_arm(d, now_ns());
}

/* Resumes reading `from` once the direction fell to half the bound. */
static void dir_maybe_resume(struct dir *d)
{
	if (d->reading_off && !d->eof_queued && dir_pending(d) <= d->pr->px->o->max_pending / 2) {
		d->reading_off = false;
		bufferevent_enable(d->pr->bev[d->from], EV_READ);
	}
}

/* After the EOF marker was due and `to` has written everything: half-close.
 * Returns true when the pair was freed. */
static bool dir_maybe_shut(struct dir *d)
{
	struct pair *pr = d->pr;

	if (!d->eof_released || d->shut ||
	    evbuffer_get_length(bufferevent_get_output(pr->bev[d->to])) > 0)
		return false;
	shutdown(bufferevent_getfd(pr->bev[d->to]), SHUT_WR);
	d->shut = true;
	if (!pair_done(pr))
		return false;
	pair_free(pr);
	return true;
}

static void on_due(evutil_socket_t fd, short what, void *arg)
{
	struct dir *d = arg;
	struct pair *pr = d->pr;
	uint64_t now = now_ns();

	(void)fd;
	(void)what;
	while (d->head && d->head->due_ns <= now) {
		struct chunk *c = d->head;
		d->head = c->next;
		if (!d->head)
			d->tail = NULL;
		d->queued -= c->len;
		if (c->len == 0)
			d->eof_released = true;
		else if (bufferevent_write(pr->bev[d->to], c->data, c->len) < 0)
			proxy_log(pr->px, "write", ENOMEM);
		pr->px->bytes[d->from] += c->len;
		free(c);
	}
	if (d->head)
		dir_arm(d, now);
	if (dir_maybe_shut(d))
		return;
	dir_maybe_resume(d);
}

static void on_read(struct bufferevent *bev, void *arg)
{
	struct pair *pr = arg;
	int s = bev == pr->bev[0] ? 0 : 1;
	struct dir *d = &pr->dir[s];
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t len = evbuffer_get_length(in);
	struct chunk *c = malloc(sizeof(*c) + len);

	if (!c) {
		proxy_log(pr->px, "read", ENOMEM);
		pair_free(pr);
		return;
	}
	*c = (struct chunk){.due_ns = now_ns() + pr->px->o->delay_ns, .len = len};
	evbuffer_remove(in, c->data, len);
	dir_enqueue(d, c);
	if (dir_pending(d) > pr->px->o->max_pending) {
		d->reading_off = true;
		bufferevent_disable(bev, EV_READ);
	}
}

/* Output of side s drained: the direction toward s may shut down or resume. */
static void on_write(struct bufferevent *bev, void *arg)
{
	struct pair *pr = arg;
	int s = bev == pr->bev[0] ? 0 : 1;
	struct dir *d = &pr->dir[1 - s];

	if (dir_maybe_shut(d))
		return;
	dir_maybe_resume(d);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	struct pair *pr = arg;
	int s = bev == pr->bev[0] ? 0 : 1;
	struct dir *d = &pr->dir[s];

	if (what & BEV_EVENT_CONNECTED) {
		int one = 1;
		setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		return;
	}
	if ((what & BEV_EVENT_EOF) && !(what & BEV_EVENT_ERROR) && !d->eof_queued) {
		struct chunk *c = malloc(sizeof(*c));
		if (c) {
			*c = (struct chunk){.due_ns = now_ns() + pr->px->o->delay_ns};
			d->eof_queued = true;
			bufferevent_disable(bev, EV_READ);
			dir_enqueue(d, c);
			return;
		}
	}
	/* A reset, a refused connect or no memory: both sides go at once. */
	if (what & BEV_EVENT_ERROR)
		proxy_log(pr->px, s ? "upstream" : "client", EVUTIL_SOCKET_ERROR());
	pair_free(pr);
}

static struct pair *pair_new(struct proxy *px, evutil_socket_t cfd)
{
	struct pair *pr = calloc(1, sizeof(*pr));
	int one = 1;

	if (!pr)
		return NULL;
	pr->px = px;
	px->open++;
	px->accepted++;
	setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	pr->bev[0] = bufferevent_socket_new(px->base, cfd, BEV_OPT_CLOSE_ON_FREE);
	pr->bev[1] = bufferevent_socket_new(px->base, -1, BEV_OPT_CLOSE_ON_FREE);
	for (int s = 0; s < 2; s++) {
		pr->dir[s] = (struct dir){.pr = pr, .from = s, .to = 1 - s};
		pr->dir[s].timer = evtimer_new(px->base, on_due, &pr->dir[s]);
		if (!pr->bev[s] || !pr->dir[s].timer)
			goto fail;
		bufferevent_setcb(pr->bev[s], on_read, on_write, on_event, pr);
		bufferevent_setwatermark(pr->bev[s], EV_READ, 0, READ_HIGH_WATERMARK);
		bufferevent_enable(pr->bev[s], EV_READ | EV_WRITE);
	}
	if (bufferevent_socket_connect(pr->bev[1], (struct sockaddr *)&px->o->to, px->o->to_len) <
	    0)
		goto fail;
	return pr;
fail:
	if (!pr->bev[0])
		evutil_closesocket(cfd);
	pair_free(pr);
	return NULL;
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len,
		      void *arg)
{
	struct proxy *px = arg;

	(void)l;
	(void)sa;
	(void)len;
	if (!pair_new(px, fd))
		proxy_log(px, "accept", ENOMEM);
}

static void on_accept_error(struct evconnlistener *l, void *arg)
{
	(void)l;
	/* EMFILE and the like: counted; the listener goes on. */
	proxy_log(arg, "accept", EVUTIL_SOCKET_ERROR());
}

static void on_signal(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	event_base_loopbreak(arg);
}

/* Two descriptors per connection: take what the hard limit allows. */
static void raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= NOFILE_WANT)
		return;
	rl.rlim_cur = rl.rlim_max < NOFILE_WANT ? rl.rlim_max : NOFILE_WANT;
	setrlimit(RLIMIT_NOFILE, &rl);
}

static void usage(FILE *f)
{
	fprintf(f, "usage: delay-proxy --listen ADDR:PORT --to ADDR:PORT --delay-ms MS "
		   "[--max-pending BYTES]\n");
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

static int parse_args(int argc, char **argv, struct opts *o)
{
	static const struct option longs[] = {
	    {"listen", required_argument, NULL, 'l'},
	    {"to", required_argument, NULL, 't'},
	    {"delay-ms", required_argument, NULL, 'd'},
	    {"max-pending", required_argument, NULL, 'm'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	uint64_t v = 0;
	bool have_delay = false;
	int ch, err = 0;

	*o = (struct opts){.max_pending = PENDING_DEFAULT};
	while (!err && (ch = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
		switch (ch) {
		case 'l':
			o->listen_text = optarg;
			o->listen_len = sizeof(o->listen);
			err = evutil_parse_sockaddr_port(optarg, (struct sockaddr *)&o->listen,
							 &o->listen_len);
			break;
		case 't':
			o->to_text = optarg;
			o->to_len = sizeof(o->to);
			err = evutil_parse_sockaddr_port(optarg, (struct sockaddr *)&o->to,
							 &o->to_len);
			break;
		case 'd':
			err = parse_u64(optarg, 0, MAX_DELAY_MS, &v);
			o->delay_ns = v * NS_PER_MS;
			have_delay = true;
			break;
		case 'm':
			err = parse_u64(optarg, PENDING_MIN, PENDING_MAX, &v);
			o->max_pending = (size_t)v;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			err = -1;
		}
		if (err && ch != '?')
			fprintf(stderr, "delay-proxy: bad value '%s'\n", optarg);
	}
	if (err || optind != argc || !o->listen_text || !o->to_text || !have_delay) {
		usage(stderr);
		return -EINVAL;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct opts o;
	struct proxy px = {.o = &o};
	struct event_config *cfg;
	struct evconnlistener *l;
	struct event *sig[2];

	if (parse_args(argc, argv, &o) < 0)
		return 2;
	signal(SIGPIPE, SIG_IGN);
	raise_nofile();
	/* timerfd: release times to the microsecond, not epoll's millisecond. */
	cfg = event_config_new();
	if (cfg)
		event_config_set_flag(cfg, EVENT_BASE_FLAG_PRECISE_TIMER);
	px.base = cfg ? event_base_new_with_config(cfg) : NULL;
	if (cfg)
		event_config_free(cfg);
	if (!px.base)
		return 2;
	l = evconnlistener_new_bind(px.base, on_accept, &px,
				    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, LISTEN_BACKLOG,
				    (struct sockaddr *)&o.listen, o.listen_len);
	if (!l) {
		fprintf(stderr, "delay-proxy: listen on %s: %s\n", o.listen_text, strerror(errno));
		return 2;
	}
	evconnlistener_set_error_cb(l, on_accept_error);
	sig[0] = evsignal_new(px.base, SIGINT, on_signal, px.base);
	sig[1] = evsignal_new(px.base, SIGTERM, on_signal, px.base);
	if (!sig[0] || !sig[1] || evsignal_add(sig[0], NULL) < 0 || evsignal_add(sig[1], NULL) < 0)
		return 2;
	fprintf(stderr, "delay-proxy: listening on %s, to %s, %" PRIu64 " ms each way\n",
		o.listen_text, o.to_text, (uint64_t)(o.delay_ns / NS_PER_MS));
	event_base_dispatch(px.base);
	fprintf(stderr,
		"delay-proxy: connections=%" PRIu64 " open=%u errors=%" PRIu64 " bytes_up=%" PRIu64
		" bytes_down=%" PRIu64 "\n",
		px.accepted, px.open, px.errors, px.bytes[0], px.bytes[1]);
	evconnlistener_free(l);
	event_free(sig[0]);
	event_free(sig[1]);
	event_base_free(px.base);
	return 0;
}
