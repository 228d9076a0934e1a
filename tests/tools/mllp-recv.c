/*
 * mllp-recv: a test MLLP receiver (the hospital side of an outbound channel)
 * that records arrival order and answers as told, on one libevent loop.
 *
 *   mllp-recv -l ADDR:PORT -o LOG [-d DIR] [--ack CODE] [--delay MS]
 *             [--rule SEL:ACTION]... [--release 2] [--idle-log] [--answer-log]
 *             [--idle-timeout MS] [--max-conns N] [--max-frame BYTES] [-v]
 *
 * Accepts any number of connections, deframes messages (mllp.h) and, per
 * message, appends one line to LOG, flushed at once:
 *   <seq> <conn#> <peer> <MSH-10> <bytes> <unix_ms>
 * seq counts messages over the process life (from 1), conn# numbers the
 * accepted connections (from 1), peer is ADDR:PORT of the sender, MSH-10 is
 * "-" when the message has none (non-printable bytes shown as '?'), bytes is
 * the payload length, unix_ms the arrival time. Nothing else of the message
 * is printed; -d DIR saves each payload as DIR/<seq>.hl7.
 *
 * Each message is answered with an HL7 ACK built by hl7_build_ack(): MSH
 * mirrored, MSA-1 the code, MSA-2 the message's MSH-10, an ERR segment with
 * AE/AR/CE/CR. A message without a usable MSH gets AR (CR with a C* code)
 * and an ERR with the reason, whatever the rules say.
 *   -l ADDR:PORT       listen there (127.0.0.1:PORT, [::1]:PORT)
 *   -o LOG             the arrival log (appended)
 *   -d DIR             save each payload as DIR/<seq>.hl7
 *   --ack CODE         MSA-1 for every message: AA (default), AE, AR, CA, CE, CR
 *   --delay MS         every answer (or rule action) is carried out MS late
 *   --rule SEL:ACTION  for the messages SEL selects (repeatable; rules apply in
 *                      order, a later one overrides an earlier one's part):
 *       SEL:  N        the N-th message (seq, 1-based)
 *             N-M      messages N to M
 *             MSH10=V  every message whose MSH-10 is V
 *             MSH10=V@K  only the K-th arrival of V (1-based: K=1 is the
 *                      first send, K=2 its first retry, ...)
 *       ACTION: aa ae ar ca ce cr  that MSA-1 code
 *             noack       never answer it, keep the connection open
 *             delay=MS    answer (or act) MS after it arrived
 *             wrong-msa2  MSA-2 is the MSH-10 of the message received before
 *                         it, or WRONG-<MSH-10> when that is the same or none
 *             wrong-msa2=V  MSA-2 is V
 *             close       close the connection (FIN) without answering
 *             reset       close with a TCP RST (SO_LINGER 0) without answering
 *             close-mid   write the first half of the ACK frame, then close
 *             ack2        answer with a release-2 commit ACK block
 *             nak2        answer with a release-2 commit NAK block
 *             answer      undo noack/close/reset/close-mid/ack2/nak2
 *   --release 2        answer with commit ACK blocks (SB 0x06 EB CR) instead of
 *                      HL7 ACKs; codes and wrong-msa2 then have no effect
 *   --idle-log         also log "open <conn#> <peer> <unix_ms>" per accepted
 *                      connection and "close <conn#> <unix_ms> by-peer|by-us"
 *                      per closed one (socket reuse, idle closes)
 *   --answer-log       also log "answer <seq> <conn#> <what> <unix_ms>" when
 *                      the answer to message seq is written or its action
 *                      carried out (what: AA..CR, ack2, nak2, close, reset,
 *                      close-mid; a noack message has none), and
 *                      "overlap <seq> <conn#> <n> <unix_ms>" when message seq
 *                      arrives while n earlier ones, on any connection, are
 *                      unanswered (delayed, or noack on a connection still
 *                      open): a sender that keeps one message in flight to
 *                      this receiver never causes one
 *   --idle-timeout MS  close (by-us) a connection that sent nothing for MS
 *   --max-conns N      with N connections open, a new one is accepted and
 *                      closed at once, logged "refuse <conn#> <peer> <unix_ms>"
 *   --max-frame BYTES  a longer payload closes the connection (default 16 MiB)
 *   -v                 one line per message on stderr: what was done
 * Prints "listening on ADDR:PORT" on stdout when ready. SIGTERM/SIGINT: the
 * log is flushed and closed, exit 0. Exit 2 on usage errors, 1 on others.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "mllp-bridge/config.h"
#include "mllp-bridge/hl7.h"
#include "mllp-bridge/mllp.h"

#define RECV_RULES_MAX	64
#define RECV_DELAY_MAX	(3600 * 1000) /* one hour, in ms */
#define RECV_CONNS_MAX	100000
#define RECV_ID_MAX	HL7_MSH_CONTROL_ID_MAX
#define RECV_PEER_MAX	(INET6_ADDRSTRLEN + 8)
#define RECV_READ_CHUNK 65536
#define RECV_FRAME_MAX	(HL7_ACK_MAX + MLLP_OVERHEAD)
#define RECV_WRONG_MAX	(RECV_ID_MAX + 8)
#define RECV_ERR_TEXT	"refused by mllp-recv as the test asked"

enum disposition { ANSWER, NOACK, CLOSE, RESET, CLOSE_MID, ACK2, NAK2 };

/* What to do with one message: each part -1/NULL when a rule leaves it. */
struct plan {
	int what;	  /* enum disposition, or -1 */
	int code;	  /* index into codes[], or -1 */
	int delay_ms;	  /* or -1 */
	int wrong_msa2;	  /* 1: wrong MSA-2, or -1 */
	const char *msa2; /* the wrong MSA-2 to use, or NULL for the default */
};

struct rule {
	unsigned long lo, hi; /* seq range, when msh10 is NULL */
	char *arg;	      /* a copy of the argument; owns msh10 */
	const char *msh10;    /* in arg */
	unsigned long nth;    /* with msh10: the K-th arrival only; 0: every */
	unsigned long hits;   /* arrivals of msh10 so far */
	struct plan act;
};

struct opts {
	struct sockaddr_storage addr;
	socklen_t addr_len;
	const char *log, *dir;
	int release2, idle_log, answer_log, verbose;
	int idle_ms;
	unsigned long max_conns;
	size_t max_frame;
	struct plan dflt;
	struct rule rules[RECV_RULES_MAX];
	size_t nrules;
};

struct recv;
struct conn;

/* An answer or action carried out later (delay). */
struct pending {
	LIST_ENTRY(pending) entry;
	struct conn *c;
	struct event *timer;
	enum disposition what;
	unsigned long seq;
	const char *name; /* static: what the answer line says */
	size_t len;
	uint8_t frame[RECV_FRAME_MAX];
};

struct conn {
	LIST_ENTRY(conn) entry;
	struct recv *r;
	unsigned long id;
	char peer[RECV_PEER_MAX];
	struct bufferevent *bev;
	struct mllp_deframer *d;
	LIST_HEAD(, pending) pending;
	unsigned long unanswered; /* delayed or noack messages */
	int closing;		  /* no more reading; freed once the output is written */
	enum disposition finish;  /* CLOSE/RESET/CLOSE_MID decided in the read loop */
};

struct recv {
	struct opts *o;
	struct event_base *base;
	FILE *log;
	unsigned long seq, conns, open;
	unsigned long unanswered;      /* over every connection */
	char last_id[RECV_ID_MAX + 1]; /* MSH-10 of the previous message */
	LIST_HEAD(, conn) all;
};

static const char *const codes[] = {"AA", "AE", "AR", "CA", "CE", "CR"};

static void usage(void)
{
	fputs("usage: mllp-recv -l ADDR:PORT -o LOG [-d DIR] [--ack AA|AE|AR|CA|CE|CR]\n"
	      "  [--delay MS] [--rule SEL:ACTION]... [--release 2] [--idle-log] [--answer-log]\n"
	      "  [--idle-timeout MS] [--max-conns N] [--max-frame BYTES] [-v]\n"
	      "SEL: N | N-M | MSH10=VALUE | MSH10=VALUE@K\n"
	      "ACTION: aa|ae|ar|ca|ce|cr | noack | delay=MS | wrong-msa2[=VALUE] |\n"
	      "  close | reset | close-mid | ack2 | nak2 | answer\n"
	      "LOG lines: <seq> <conn#> <peer> <MSH-10> <bytes> <unix_ms>; with --idle-log\n"
	      "  also open <conn#> <peer> <ms> and close <conn#> <ms> by-peer|by-us; with\n"
	      "  --answer-log also answer <seq> <conn#> <what> <ms> and overlap <seq> <conn#> <n> "
	      "<ms>\n",
	      stderr);
	exit(2);
}

static void die(const char *what, const char *arg)
{
	fprintf(stderr, "mllp-recv: %s: '%s'\n", what, arg);
	exit(2);
}

/* A decimal in lo..hi; end, when not NULL, gets the first byte after it. */
static unsigned long parse_num(const char *s, unsigned long lo, unsigned long hi, const char **end)
{
	char *e;
	unsigned long v;

	errno = 0;
	if (*s < '0' || *s > '9')
		die("not a number", s);
	v = strtoul(s, &e, 10);
	if (errno || v < lo || v > hi || (!end && *e))
		die("number out of range or malformed", s);
	if (end)
		*end = e;
	return v;
}

static int parse_code(const char *s)
{
	size_t i;

	for (i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
		if (strcasecmp(s, codes[i]) == 0)
			return (int)i;
	return -1;
}

static void plan_clear(struct plan *p)
{
	p->what = p->code = p->delay_ms = p->wrong_msa2 = -1;
	p->msa2 = NULL;
}

static void parse_action(struct plan *p, const char *a)
{
	static const struct {
		const char *name;
		enum disposition what;
	} disp[] = {
	    {"noack", NOACK}, {"close", CLOSE}, {"reset", RESET},   {"close-mid", CLOSE_MID},
	    {"ack2", ACK2},   {"nak2", NAK2},	{"answer", ANSWER},
	};
	size_t i;

	plan_clear(p);
	if ((p->code = parse_code(a)) >= 0)
		return;
	for (i = 0; i < sizeof(disp) / sizeof(disp[0]); i++) {
		if (strcmp(a, disp[i].name) == 0) {
			p->what = (int)disp[i].what;
			return;
		}
	}
	if (strncmp(a, "delay=", 6) == 0) {
		p->delay_ms = (int)parse_num(a + 6, 0, RECV_DELAY_MAX, NULL);
	} else if (strcmp(a, "wrong-msa2") == 0) {
		p->wrong_msa2 = 1;
	} else if (strncmp(a, "wrong-msa2=", 11) == 0) {
		p->wrong_msa2 = 1;
		p->msa2 = a + 11;
		if (strlen(p->msa2) > RECV_ID_MAX)
			die("wrong-msa2 value too long", a);
	} else {
		die("unknown rule action", a);
	}
}

/* SEL:ACTION; the action starts after the last ':' (MSH-10 may hold one).
 * The rule keeps a copy of the argument, for the process life. */
static void parse_rule(struct opts *o, const char *orig)
{
	char *arg = strdup(orig), *colon;
	struct rule *r;
	const char *e;

	if (!arg)
		die("out of memory", orig);
	if (o->nrules >= RECV_RULES_MAX)
		die("too many rules", orig);
	colon = strrchr(arg, ':');
	if (!colon || colon == arg)
		die("a rule is SEL:ACTION", orig);
	r = &o->rules[o->nrules++];
	memset(r, 0, sizeof(*r));
	r->arg = arg;
	*colon = '\0';
	parse_action(&r->act, colon + 1);
	if (strncmp(arg, "MSH10=", 6) == 0) {
		char *at = strrchr(arg + 6, '@');

		if (at) {
			*at = '\0';
			r->nth = parse_num(at + 1, 1, ULONG_MAX, NULL);
		}
		r->msh10 = arg + 6;
		if (!*r->msh10 || strlen(r->msh10) > RECV_ID_MAX)
			die("empty or overlong MSH-10 in rule", orig);
		return;
	}
	r->lo = r->hi = parse_num(arg, 1, ULONG_MAX, &e);
	if (*e == '-')
		r->hi = parse_num(e + 1, r->lo, ULONG_MAX, NULL);
	else if (*e)
		die("bad rule selector", orig);
}

static void parse_args(struct opts *o, int argc, char **argv)
{
	static const struct option lo[] = {
	    {"ack", 1, NULL, 'a'},	  {"delay", 1, NULL, 'D'},
	    {"rule", 1, NULL, 'r'},	  {"release", 1, NULL, 'R'},
	    {"idle-log", 0, NULL, 'I'},	  {"max-conns", 1, NULL, 'm'},
	    {"answer-log", 0, NULL, 'A'}, {"idle-timeout", 1, NULL, 'T'},
	    {"max-frame", 1, NULL, 'F'},  {"help", 0, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *listen = NULL;
	int c;

	memset(o, 0, sizeof(*o));
	plan_clear(&o->dflt);
	o->dflt.what = ANSWER;
	o->dflt.code = 0;
	o->dflt.delay_ms = 0;
	o->dflt.wrong_msa2 = 0;
	o->max_frame = MLLP_MAX_FRAME_DEFAULT;
	while ((c = getopt_long(argc, argv, "l:o:d:vh", lo, NULL)) != -1) {
		switch (c) {
		case 'l':
			listen = optarg;
			break;
		case 'o':
			o->log = optarg;
			break;
		case 'd':
			o->dir = optarg;
			break;
		case 'v':
			o->verbose = 1;
			break;
		case 'a':
			if ((o->dflt.code = parse_code(optarg)) < 0)
				die("unknown ACK code", optarg);
			break;
		case 'D':
			o->dflt.delay_ms = (int)parse_num(optarg, 0, RECV_DELAY_MAX, NULL);
			break;
		case 'r':
			parse_rule(o, optarg);
			break;
		case 'R':
			if (strcmp(optarg, "2") != 0 && strcmp(optarg, "1") != 0)
				die("release is 1 or 2", optarg);
			o->release2 = optarg[0] == '2';
			break;
		case 'I':
			o->idle_log = 1;
			break;
		case 'A':
			o->answer_log = 1;
			break;
		case 'T':
			o->idle_ms = (int)parse_num(optarg, 1, RECV_DELAY_MAX, NULL);
			break;
		case 'm':
			o->max_conns = parse_num(optarg, 1, RECV_CONNS_MAX, NULL);
			break;
		case 'F':
			o->max_frame = parse_num(optarg, 1, MLLP_MAX_FRAME_LIMIT, NULL);
			break;
		default:
			usage();
		}
	}
	if (optind != argc || !listen || !o->log)
		usage();
	o->addr_len = sizeof(o->addr);
	if (cfg_parse_hostport(listen, &o->addr, &o->addr_len) < 0)
		die("bad listen address (ADDR:PORT)", listen);
}

static unsigned long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (unsigned long long)ts.tv_sec * 1000 + (unsigned long long)ts.tv_nsec / 1000000;
}

static void addr_str(const struct sockaddr *sa, char out[RECV_PEER_MAX])
{
	char host[INET6_ADDRSTRLEN] = "?";

	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;

		inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host));
		snprintf(out, RECV_PEER_MAX, "[%s]:%u", host, ntohs(s6->sin6_port));
	} else {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;

		inet_ntop(AF_INET, &s4->sin_addr, host, sizeof(host));
		snprintf(out, RECV_PEER_MAX, "%s:%u", host, ntohs(s4->sin_port));
	}
}

/* Every log line is flushed at once: a test reads the log while we run. */
__attribute__((format(printf, 2, 3))) static void log_line(struct recv *r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfprintf(r->log, fmt, ap);
	va_end(ap);
	fflush(r->log);
}

/* ---- connections ---- */

static void pending_free(struct pending *p)
{
	LIST_REMOVE(p, entry);
	event_free(p->timer);
	free(p);
}

static void conn_free(struct conn *c, const char *by)
{
	struct recv *r = c->r;

	while (!LIST_EMPTY(&c->pending))
		pending_free(LIST_FIRST(&c->pending));
	LIST_REMOVE(c, entry);
	r->open--;
	r->unanswered -= c->unanswered;
	if (r->o->idle_log)
		log_line(r, "close %lu %llu %s\n", c->id, now_ms(), by);
	bufferevent_free(c->bev);
	mllp_deframer_free(c->d);
	free(c);
}

/* Closes the connection by us once what is queued is written. RESET sends
 * an RST instead of a FIN. May free c. */
static void conn_close(struct conn *c, enum disposition how)
{
	c->closing = 1;
	bufferevent_disable(c->bev, EV_READ);
	if (how == RESET) {
		struct linger l = {.l_onoff = 1, .l_linger = 0};

		setsockopt(bufferevent_getfd(c->bev), SOL_SOCKET, SO_LINGER, &l, sizeof(l));
		conn_free(c, "by-us");
		return;
	}
	if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
		conn_free(c, "by-us");
}

/* Writes the frame, or half of it and closes; CLOSE/RESET close. May free c. */
static void conn_act(struct conn *c, enum disposition what, const uint8_t *frame, size_t len)
{
	switch (what) {
	case ANSWER:
	case ACK2:
	case NAK2:
		bufferevent_write(c->bev, frame, len);
		break;
	case CLOSE_MID:
		bufferevent_write(c->bev, frame, len / 2);
		conn_close(c, CLOSE);
		break;
	case CLOSE:
	case RESET:
		conn_close(c, what);
		break;
	case NOACK:
		break;
	}
}

static void log_answer(struct conn *c, unsigned long seq, const char *name)
{
	if (c->r->o->answer_log)
		log_line(c->r, "answer %lu %lu %s %llu\n", seq, c->id, name, now_ms());
}

static void on_pending(evutil_socket_t fd, short ev, void *arg)
{
	struct pending *p = arg;
	struct conn *c = p->c;
	enum disposition what = p->what;
	uint8_t frame[RECV_FRAME_MAX];
	size_t len = p->len;

	(void)fd;
	(void)ev;
	memcpy(frame, p->frame, len);
	c->unanswered--;
	c->r->unanswered--;
	if (!c->closing)
		log_answer(c, p->seq, p->name);
	pending_free(p);
	if (!c->closing)
		conn_act(c, what, frame, len);
}

/* ---- one message ---- */

/* The plan for message seq with MSH-10 id (NULL when none): the defaults,
 * then every matching rule in order. */
static struct plan plan_for(struct recv *r, unsigned long seq, const char *id)
{
	struct plan p = r->o->dflt;
	size_t i;

	for (i = 0; i < r->o->nrules; i++) {
		struct rule *ru = &r->o->rules[i];
		const struct plan *a = &ru->act;

		if (ru->msh10) {
			if (!id || strcmp(id, ru->msh10) != 0)
				continue;
			if (ru->nth && ++ru->hits != ru->nth)
				continue;
		} else if (seq < ru->lo || seq > ru->hi) {
			continue;
		}
		if (a->what >= 0)
			p.what = a->what;
		if (a->code >= 0)
			p.code = a->code;
		if (a->delay_ms >= 0)
			p.delay_ms = a->delay_ms;
		if (a->wrong_msa2 >= 0) {
			p.wrong_msa2 = a->wrong_msa2;
			p.msa2 = a->msa2;
		}
	}
	if (r->o->release2 && p.what == ANSWER)
		p.what = ACK2;
	return p;
}

/* MSH-10 as a printable word for the log and the rules; "" when absent. */
static void control_id(const struct hl7_msh *msh, int parsed, char out[RECV_ID_MAX + 1])
{
	size_t i, n = 0;

	if (parsed && msh->control_id.p && msh->control_id.len <= RECV_ID_MAX) {
		n = msh->control_id.len;
		for (i = 0; i < n; i++) {
			char ch = msh->control_id.p[i];

			out[i] = ch > ' ' && ch < 0x7f ? ch : '?';
		}
	}
	out[n] = '\0';
}

static void hl7_time(char out[32])
{
	time_t t = time(NULL);
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(out, 32, "%Y%m%d%H%M%S+0000", &tm);
}

/* Builds the framed answer for p into frame; returns its length, 0 if none. */
static size_t build_answer(struct recv *r, const struct plan *p, struct hl7_msh *msh, int parsed,
			   const char *why, unsigned long seq, const char *id, uint8_t *frame)
{
	char ack[HL7_ACK_MAX], ack_id[32], ts[32], wrong[RECV_WRONG_MAX];
	struct hl7_ack_req req = {0};
	struct hl7_msh m = *msh;
	uint8_t blk;
	int n;

	if (p->what == ACK2 || p->what == NAK2) {
		blk = p->what == ACK2 ? MLLP_R2_ACK : MLLP_R2_NAK;
		return mllp_encode(frame, RECV_FRAME_MAX, &blk, 1);
	}
	if (p->what != ANSWER && p->what != CLOSE_MID)
		return 0;
	snprintf(ack_id, sizeof(ack_id), "RECV%lu", seq);
	hl7_time(ts);
	if (p->wrong_msa2 > 0) {
		if (p->msa2)
			snprintf(wrong, sizeof(wrong), "%s", p->msa2);
		else if (r->last_id[0] && strcmp(r->last_id, id) != 0)
			snprintf(wrong, sizeof(wrong), "%s", r->last_id);
		else
			snprintf(wrong, sizeof(wrong), "WRONG-%s", id);
		m.control_id.p = wrong;
		m.control_id.len = strlen(wrong);
	}
	req.msh = m.field_sep ? &m : NULL;
	req.code = (enum hl7_ack_code)(p->code % 3);
	req.enhanced = p->code >= 3;
	req.ack_control_id = ack_id;
	req.timestamp = ts;
	if (!parsed) {
		req.err_code = HL7_ERR_REQUIRED_FIELD;
		req.err_severity = 'E';
		req.err_text = why ? why : "no MSH segment";
	} else if (req.code != HL7_ACCEPT) {
		req.err_code = HL7_ERR_APPLICATION_INTERNAL;
		req.err_severity = 'E';
		req.err_text = RECV_ERR_TEXT;
	}
	n = hl7_build_ack(&req, ack, sizeof(ack));
	if (n < 0) {
		fprintf(stderr, "mllp-recv: cannot build an ACK for #%lu: %s\n", seq, strerror(-n));
		return 0;
	}
	return mllp_encode(frame, RECV_FRAME_MAX, ack, (size_t)n);
}

static void save_body(struct recv *r, unsigned long seq, const struct mllp_frame *f)
{
	char path[PATH_MAX];
	FILE *out;

	snprintf(path, sizeof(path), "%s/%lu.hl7", r->o->dir, seq);
	out = fopen(path, "wb");
	if (!out || fwrite(f->data, 1, f->len, out) != f->len)
		fprintf(stderr, "mllp-recv: cannot write %s: %s\n", path, strerror(errno));
	if (out && fclose(out) != 0)
		fprintf(stderr, "mllp-recv: cannot write %s: %s\n", path, strerror(errno));
}

static const char *plan_name(const struct plan *p)
{
	static const char *const names[] = {"answer",	 "noack", "close", "reset",
					    "close-mid", "ack2",  "nak2"};

	return p->what == ANSWER ? codes[p->code] : names[p->what];
}

/* Defers the action by p->delay_ms, or carries it out now (a close is left
 * to the read loop through c->finish, so c stays valid there). */
static void schedule(struct conn *c, unsigned long seq, const struct plan *p, const uint8_t *frame,
		     size_t len)
{
	struct pending *pd;
	struct timeval tv;

	if (p->what == NOACK || p->delay_ms > 0) {
		c->unanswered++;
		c->r->unanswered++;
	}
	if (p->what == NOACK)
		return;
	if (p->delay_ms <= 0) {
		log_answer(c, seq, plan_name(p));
		if (p->what == CLOSE || p->what == RESET || p->what == CLOSE_MID) {
			if (p->what == CLOSE_MID)
				bufferevent_write(c->bev, frame, len / 2);
			c->finish = p->what == RESET ? RESET : CLOSE;
		} else {
			conn_act(c, (enum disposition)p->what, frame, len);
		}
		return;
	}
	pd = calloc(1, sizeof(*pd));
	if (!pd || !(pd->timer = evtimer_new(c->r->base, on_pending, pd))) {
		fprintf(stderr, "mllp-recv: out of memory\n");
		exit(1);
	}
	pd->c = c;
	pd->what = (enum disposition)p->what;
	pd->seq = seq;
	pd->name = plan_name(p);
	pd->len = len;
	memcpy(pd->frame, frame, len);
	LIST_INSERT_HEAD(&c->pending, pd, entry);
	tv.tv_sec = p->delay_ms / 1000;
	tv.tv_usec = (p->delay_ms % 1000) * 1000;
	/* From now, not from the loop's cached time: never early by the time
	 * this read took. */
	event_base_update_cache_time(c->r->base);
	evtimer_add(pd->timer, &tv);
}

static void on_message(struct conn *c, const struct mllp_frame *f)
{
	struct recv *r = c->r;
	unsigned long seq = ++r->seq;
	char id[RECV_ID_MAX + 1];
	uint8_t frame[RECV_FRAME_MAX];
	const char *why = NULL;
	struct hl7_msh msh;
	struct plan p;
	size_t len;
	int parsed;

	memset(&msh, 0, sizeof(msh));
	parsed = hl7_parse_msh(f->data, f->len, &msh, &why) == 0;
	control_id(&msh, parsed, id);
	log_line(r, "%lu %lu %s %s %zu %llu\n", seq, c->id, c->peer, id[0] ? id : "-", f->len,
		 now_ms());
	if (r->o->answer_log && r->unanswered)
		log_line(r, "overlap %lu %lu %lu %llu\n", seq, c->id, r->unanswered, now_ms());
	if (r->o->dir)
		save_body(r, seq, f);
	p = plan_for(r, seq, parsed ? id : NULL);
	if (!parsed)
		p.code = p.code >= 3 ? 5 : 2; /* CR / AR, whatever the rules say */
	len = build_answer(r, &p, &msh, parsed, why, seq, id, frame);
	snprintf(r->last_id, sizeof(r->last_id), "%s", id);
	if (r->o->verbose)
		fprintf(stderr, "mllp-recv: #%lu conn %lu %s: %s%s delay %d ms\n", seq, c->id,
			id[0] ? id : "-", plan_name(&p), p.wrong_msa2 > 0 ? " wrong-msa2" : "",
			p.delay_ms);
	schedule(c, seq, &p, frame, len);
}

static void on_read(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	uint8_t buf[RECV_READ_CHUNK];
	struct mllp_frame f;
	enum mllp_event ev;
	int n;

	while (!c->closing && !c->finish && (n = evbuffer_remove(in, buf, sizeof(buf))) > 0) {
		if (mllp_deframer_feed(c->d, buf, (size_t)n) < 0) {
			fprintf(stderr, "mllp-recv: conn %lu: out of memory\n", c->id);
			c->finish = CLOSE;
			break;
		}
		while (!c->finish && (ev = mllp_deframer_next(c->d, &f)) != MLLP_NEED_MORE) {
			if (ev == MLLP_FRAME) {
				on_message(c, &f);
			} else if (ev == MLLP_OVERSIZE) {
				fprintf(stderr, "mllp-recv: conn %lu: frame over %zu bytes\n",
					c->id, c->r->o->max_frame);
				c->finish = CLOSE;
			} else if (c->r->o->verbose) {
				fprintf(stderr, "mllp-recv: conn %lu: commit %s block ignored\n",
					c->id, ev == MLLP_COMMIT_ACK ? "ACK" : "NAK");
			}
		}
	}
	if (c->closing)
		evbuffer_drain(in, evbuffer_get_length(in));
	else if (c->finish)
		conn_close(c, c->finish);
}

static void on_write(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;

	(void)bev;
	if (c->closing)
		conn_free(c, "by-us");
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	struct conn *c = arg;

	(void)bev;
	if (what & BEV_EVENT_TIMEOUT)
		conn_free(c, "by-us");
	else if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		conn_free(c, c->closing ? "by-us" : "by-peer");
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
		      void *arg)
{
	struct recv *r = arg;
	struct conn *c;

	(void)l;
	(void)salen;
	if (r->o->max_conns && r->open >= r->o->max_conns) {
		char peer[RECV_PEER_MAX];

		addr_str(sa, peer);
		log_line(r, "refuse %lu %s %llu\n", ++r->conns, peer, now_ms());
		evutil_closesocket(fd);
		return;
	}
	c = calloc(1, sizeof(*c));
	if (!c || !(c->d = mllp_deframer_new(r->o->max_frame)) ||
	    !(c->bev = bufferevent_socket_new(r->base, fd, BEV_OPT_CLOSE_ON_FREE))) {
		fprintf(stderr, "mllp-recv: out of memory\n");
		exit(1);
	}
	c->r = r;
	c->id = ++r->conns;
	c->finish = ANSWER;
	addr_str(sa, c->peer);
	LIST_INIT(&c->pending);
	LIST_INSERT_HEAD(&r->all, c, entry);
	r->open++;
	if (r->o->idle_log)
		log_line(r, "open %lu %s %llu\n", c->id, c->peer, now_ms());
	bufferevent_setcb(c->bev, on_read, on_write, on_event, c);
	if (r->o->idle_ms) {
		struct timeval tv = {r->o->idle_ms / 1000, (r->o->idle_ms % 1000) * 1000};

		bufferevent_set_timeouts(c->bev, &tv, NULL);
	}
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

static void on_signal(evutil_socket_t sig, short ev, void *arg)
{
	(void)sig;
	(void)ev;
	event_base_loopbreak(arg);
}

/* Binds the listener; name gets the address it is bound to. */
static struct evconnlistener *listen_on(struct recv *r, char name[RECV_PEER_MAX])
{
	struct evconnlistener *l;
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	l = evconnlistener_new_bind(r->base, on_accept, r,
				    LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_FREE |
					LEV_OPT_CLOSE_ON_EXEC,
				    128, (struct sockaddr *)&r->o->addr, (int)r->o->addr_len);
	if (!l)
		return NULL;
	if (getsockname(evconnlistener_get_fd(l), (struct sockaddr *)&ss, &len) == 0)
		addr_str((struct sockaddr *)&ss, name);
	else
		addr_str((struct sockaddr *)&r->o->addr, name);
	return l;
}

/* Runs the loop until SIGTERM/SIGINT, then closes every connection.
 * Returns 0, or 1 when the loop could not be set up. */
static int serve(struct recv *r)
{
	struct evconnlistener *l = NULL;
	struct event *sigs[2] = {NULL, NULL};
	struct event_config *cfg;
	char name[RECV_PEER_MAX];
	int i, rc = 1;

	/* A delay is never shorter than asked: the default coarse clock may
	 * fire a few ms early by the wall clock the log uses. */
	cfg = event_config_new();
	if (cfg && event_config_set_flag(cfg, EVENT_BASE_FLAG_PRECISE_TIMER) == 0)
		r->base = event_base_new_with_config(cfg);
	if (cfg)
		event_config_free(cfg);
	if (!r->base)
		return 1;
	sigs[0] = evsignal_new(r->base, SIGTERM, on_signal, r->base);
	sigs[1] = evsignal_new(r->base, SIGINT, on_signal, r->base);
	if (!sigs[0] || !sigs[1] || evsignal_add(sigs[0], NULL) < 0 ||
	    evsignal_add(sigs[1], NULL) < 0) {
		fprintf(stderr, "mllp-recv: cannot catch signals\n");
	} else if (!(l = listen_on(r, name))) {
		fprintf(stderr, "mllp-recv: cannot listen: %s\n", strerror(errno));
	} else {
		/* Only now: a test may send SIGTERM as soon as it reads this. */
		printf("listening on %s\n", name);
		fflush(stdout);
		rc = event_base_dispatch(r->base) < 0;
		evconnlistener_free(l);
	}
	while (!LIST_EMPTY(&r->all)) {
		struct conn *c = LIST_FIRST(&r->all);

		c->closing = 1;
		conn_free(c, "by-us");
	}
	for (i = 0; i < 2; i++)
		if (sigs[i])
			event_free(sigs[i]);
	event_base_free(r->base);
	r->base = NULL;
	return rc;
}

int main(int argc, char **argv)
{
	static struct opts o; /* the rule table is large */
	struct recv r = {0};
	size_t i;
	int rc;

	parse_args(&o, argc, argv);
	r.o = &o;
	LIST_INIT(&r.all);
	signal(SIGPIPE, SIG_IGN);
	r.log = fopen(o.log, "a");
	if (!r.log) {
		fprintf(stderr, "mllp-recv: cannot open %s: %s\n", o.log, strerror(errno));
		rc = 1;
	} else {
		rc = serve(&r);
		if (fclose(r.log) != 0)
			rc = 1;
	}
	for (i = 0; i < o.nrules; i++)
		free(o.rules[i].arg);
	return rc;
}
