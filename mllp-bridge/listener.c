/*
 * MLLP listeners and connections: accept, match the peer to an integration,
 * deframe, validate, stage into the spool, and answer every frame in the
 * order it arrived.
 */
#include "mllp-bridge/bridge.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "mllp-bridge/log.h"
#include "mllp-bridge/mllp.h"
#include "mllp-bridge/msgkey.h"
#include "mllp-bridge/spool.h"

#define READ_CHUNK	 65536 /* one read() into the shared buffer */
#define LISTEN_BACKLOG	 1024
#define CONTENT_TYPE_MAX 96

struct conn {
	struct bridge *b;
	struct listener *l;
	evutil_socket_t fd;
	struct event *rd, *wr, *tm;
	struct mllp_deframer *df;
	struct evbuffer *out; /* only while a write would block */
	struct integ **cands; /* integrations whose sources hold the peer */
	size_t ncands;
	const struct cfg_mllp *mllp; /* shared by every candidate (config rule) */
	TAILQ_HEAD(, reply) replies;
	size_t npending;
	double frame_start;	    /* 0 when not inside a frame */
	int eof;		    /* peer closed its side */
	int closing;		    /* close once the answers are written */
	int in_process;		    /* conn_process() is on the stack */
	LIST_ENTRY(conn) link;	    /* in listener->conns */
	char peer[BRIDGE_PEER_MAX]; /* address:port, for logs */
	char addr[BRIDGE_PEER_MAX]; /* address, the sender key */
};

static uint8_t read_buf[READ_CHUNK]; /* one loop, one thread: shared */

static void conn_process(struct conn *c);
static void conn_free(struct conn *c);

/* --- answers --------------------------------------------------------- */

static const char *ack_timestamp(void)
{
	static char buf[32];
	static time_t cached;
	time_t now = time(NULL);
	struct tm tm;

	if (now != cached) {
		gmtime_r(&now, &tm);
		strftime(buf, sizeof(buf), "%Y%m%d%H%M%S+0000", &tm);
		cached = now;
	}
	return buf;
}

static void count_ack(struct reply *r, enum hl7_ack_code code, int enhanced)
{
	struct integ_stats *st = &r->integ->st;

	if (r->release == 2) {
		if (code == HL7_ACCEPT)
			st->r2_acks++;
		else
			st->r2_naks++;
	} else {
		st->acks[code + (enhanced ? 3 : 0)]++;
	}
}

/* Enhanced mode honours MSH-15: NE never, ER only on error, SU only on success. */
static int ack_wanted(const struct hl7_msh *msh, enum hl7_ack_code code)
{
	const struct hl7_str *at = &msh->accept_ack;

	if (!hl7_is_enhanced(msh) || at->len != 2)
		return 1;
	if (memcmp(at->p, "NE", 2) == 0)
		return 0;
	if (memcmp(at->p, "ER", 2) == 0)
		return code != HL7_ACCEPT;
	if (memcmp(at->p, "SU", 2) == 0)
		return code == HL7_ACCEPT;
	return 1;
}

static void reply_store(struct reply *r, const void *payload, size_t len)
{
	size_t cap = len + MLLP_OVERHEAD;

	free(r->ack);
	r->ack = malloc(cap);
	r->ack_len = r->ack ? mllp_encode((uint8_t *)r->ack, cap, payload, len) : 0;
	r->ready = 1;
}

void reply_set_ack(struct reply *r, enum hl7_ack_code code, enum hl7_err_code err, char severity,
		   const char *text)
{
	struct hl7_msh msh, *mp = NULL;
	const char *why;
	char ctl[40], buf[HL7_ACK_MAX];
	int n;

	if (r->release == 2) {
		uint8_t blk = code == HL7_ACCEPT ? MLLP_R2_ACK : MLLP_R2_NAK;

		count_ack(r, code, 0);
		reply_store(r, &blk, 1);
		return;
	}
	memset(&msh, 0, sizeof(msh));
	if (r->msh_len && hl7_parse_msh(r->msh, r->msh_len, &msh, &why) == 0)
		mp = &msh;
	else if (r->msh_len && msh.field_sep)
		mp = &msh; /* malformed but mirrorable: no control ID, say */
	if (mp && !ack_wanted(mp, code)) {
		r->ready = 1;
		return;
	}
	snprintf(ctl, sizeof(ctl), "%lld%06llu", (long long)r->integ->b->started_s,
		 (unsigned long long)++r->integ->b->ack_seq);
	n = hl7_build_ack(&(struct hl7_ack_req){.msh = mp,
						.code = code,
						.enhanced = mp && hl7_is_enhanced(mp),
						.ack_control_id = ctl,
						.timestamp = ack_timestamp(),
						.err_code = err,
						.err_severity = severity ? severity : 'E',
						.err_text = text},
			  buf, sizeof(buf));
	count_ack(r, code, mp && hl7_is_enhanced(mp));
	if (n < 0) {
		r->ready = 1; /* cannot happen with HL7_ACK_MAX; never block the queue */
		return;
	}
	reply_store(r, buf, (size_t)n);
}

void reply_set_raw(struct reply *r, const void *hl7, size_t len)
{
	reply_store(r, hl7, len);
}

static struct reply *reply_new(struct conn *c, struct integ *in, const uint8_t *frame, size_t len)
{
	const uint8_t *end = memchr(frame, '\r', len);
	size_t msh_len = 0;
	struct reply *r;

	if (len >= 4 && memcmp(frame, "MSH", 3) == 0) {
		const uint8_t *lf = memchr(frame, '\n', end ? (size_t)(end - frame) : len);

		msh_len = lf ? (size_t)(lf - frame) : end ? (size_t)(end - frame) : len;
		if (msh_len > BRIDGE_MSH_COPY_MAX)
			msh_len = BRIDGE_MSH_COPY_MAX;
	}
	r = calloc(1, sizeof(*r) + msh_len + 1);
	if (!r)
		return NULL;
	memcpy(r->msh, frame, msh_len);
	r->msh_len = msh_len;
	r->conn = c;
	r->integ = in;
	r->release = c->mllp->release;
	r->t_read = bridge_now();
	r->received_ms = bridge_wall_ms();
	memcpy(r->sender, c->addr, sizeof(r->sender));
	TAILQ_INSERT_TAIL(&c->replies, r, link);
	c->npending++;
	return r;
}

static void reply_free(struct reply *r)
{
	free(r->ack);
	free(r);
}

/* --- output ---------------------------------------------------------- */

static void conn_write(struct conn *c, const char *data, size_t len)
{
	ssize_t n = 0;

	if (!c->out || evbuffer_get_length(c->out) == 0) {
		n = send(c->fd, data, len, MSG_NOSIGNAL);
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
			c->closing = 1;
			return;
		}
		if (n < 0)
			n = 0;
		if ((size_t)n == len)
			return;
	}
	if (!c->out && !(c->out = evbuffer_new())) {
		c->closing = 1;
		return;
	}
	evbuffer_add(c->out, data + n, len - (size_t)n);
	event_add(c->wr, NULL);
}

static int conn_drained(const struct conn *c)
{
	return !c->out || evbuffer_get_length(c->out) == 0;
}

/* Closes when the peer is gone or we decided to, once nothing is owed. */
static int conn_maybe_close(struct conn *c)
{
	if ((c->closing && conn_drained(c)) || (c->eof && c->npending == 0 && conn_drained(c))) {
		conn_free(c);
		return 1;
	}
	return 0;
}

static void on_write(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;

	(void)what;
	if (evbuffer_write(c->out, fd) < 0 && errno != EAGAIN) {
		conn_free(c);
		return;
	}
	if (conn_drained(c)) {
		event_del(c->wr);
		if (conn_maybe_close(c))
			return;
	}
}

void reply_complete(struct reply *r)
{
	struct conn *c = r->conn;
	double now;

	r->ready = 1;
	if (!c) {
		reply_free(r);
		return;
	}
	now = bridge_now();
	while ((r = TAILQ_FIRST(&c->replies)) && r->ready) {
		TAILQ_REMOVE(&c->replies, r, link);
		c->npending--;
		if (r->ack && r->ack_len)
			conn_write(c, r->ack, r->ack_len);
		histogram_observe(&r->integ->st.ack_latency, now - r->t_read);
		reply_free(r);
	}
	/* Inside conn_process() the connection must stay put: it closes or
	 * resumes itself when the loop there ends. */
	if (c->in_process || conn_maybe_close(c))
		return;
	/* A reader paused on too many unanswered frames resumes from the loop. */
	if (!c->eof && !c->closing && !event_pending(c->rd, EV_READ, NULL) &&
	    c->npending < BRIDGE_CONN_PENDING_MAX / 2)
		event_active(c->rd, EV_READ, 0);
}

/* --- frames ---------------------------------------------------------- */

static int str_eq(const struct hl7_str *s, const char *want)
{
	return !want || (s->p && strlen(want) == s->len && memcmp(s->p, want, s->len) == 0);
}

/* The candidate whose MSH-4/MSH-6 rule fits; an integration with a rule
 * wins over a catch-all one, whatever their order in the file. Without an
 * MSH (X12, XML) only a catch-all integration can take the payload. */
static struct integ *match_integ(const struct conn *c, const struct hl7_msh *msh)
{
	struct integ *catch_all = NULL;
	size_t i;

	for (i = 0; i < c->ncands; i++) {
		const struct cfg_integration *ci = c->cands[i]->cfg;

		if (!ci->match_sending_facility && !ci->match_receiving_facility) {
			if (!catch_all)
				catch_all = c->cands[i];
		} else if (msh && str_eq(&msh->sending_facility, ci->match_sending_facility) &&
			   str_eq(&msh->receiving_facility, ci->match_receiving_facility)) {
			return c->cands[i];
		}
	}
	return catch_all;
}

static void reject(struct reply *r, enum hl7_err_code code, const char *why)
{
	char peer[BRIDGE_PEER_MAX], msh[LOG_PHI_FIELD_MAX];

	snprintf(peer, sizeof(peer), "%s", r->conn ? r->conn->peer : "-");
	/* The header names patients' facilities and the message: only with
	 * log_phi: true, for an operator who is debugging a sender. */
	if (log_phi_enabled() && r->msh_len)
		log_event(LOG_WARN, "frame_rejected",
			  " integration=%s peer=%s reason=\"%s\" msh=\"%s\"", r->integ->cfg->name,
			  peer, why, log_safe(msh, sizeof(msh), r->msh, (unsigned)r->msh_len));
	else
		log_event(LOG_WARN, "frame_rejected", " integration=%s peer=%s reason=\"%s\"",
			  r->integ->cfg->name, peer, why);
	reply_set_ack(r, code == HL7_ERR_TABLE_VALUE ? HL7_ERROR : HL7_REJECT, code, 'E', why);
	reply_complete(r);
}

static const char *content_type(enum payload_kind kind, const struct hl7_msh *msh,
				char buf[CONTENT_TYPE_MAX])
{
	const char *cs;

	if (kind == PAYLOAD_X12)
		return "application/edi-x12";
	if (kind == PAYLOAD_XML)
		return "application/xml";
	cs = hl7_mime_charset(&msh->charset);
	if (!cs)
		return NULL;
	snprintf(buf, CONTENT_TYPE_MAX, "x-application/hl7-v2+er7; charset=%s", cs);
	return buf;
}

/* "PID|..." and the like: HL7 segments, but no header in front. */
static int looks_like_segment(const uint8_t *p, size_t len)
{
	size_t i;

	if (len < 4 || p[3] != '|')
		return 0;
	for (i = 0; i < 3; i++)
		if (!((p[i] >= 'A' && p[i] <= 'Z') || (p[i] >= '0' && p[i] <= '9')))
			return 0;
	return 1;
}

static void handle_frame(struct conn *c, const uint8_t *data, size_t len)
{
	enum payload_kind kind = len ? hl7_payload_kind(data, len) : PAYLOAD_UNKNOWN;
	struct hl7_msh msh;
	struct integ *in;
	struct reply *r;
	const char *why = NULL, *ctype;
	char ctl[HL7_FIELD_MAX + 1] = "", ctbuf[CONTENT_TYPE_MAX];
	int bad = kind == PAYLOAD_HL7 && hl7_parse_msh(data, len, &msh, &why) < 0;

	/* A malformed header still names its facilities most of the time:
	 * its rejection is counted where the message was headed. */
	in = kind == PAYLOAD_UNKNOWN ? c->cands[0]
				     : match_integ(c, kind == PAYLOAD_HL7 ? &msh : NULL);
	if (bad && !in)
		in = c->cands[0];
	r = reply_new(c, in ? in : c->cands[0], data, len);
	if (!r) {
		c->closing = 1;
		return;
	}
	r->integ->st.frames++;
	r->integ->st.bytes += len;
	if (len == 0) {
		reject(r, HL7_ERR_SEGMENT_SEQUENCE, "empty frame");
	} else if (kind == PAYLOAD_UNKNOWN) {
		reject(r,
		       looks_like_segment(data, len) ? HL7_ERR_SEGMENT_SEQUENCE
						     : HL7_ERR_UNSUPPORTED_MESSAGE,
		       looks_like_segment(data, len)
			   ? "no MSH segment: an HL7 v2 message must start with MSH"
			   : "payload is not HL7 v2 (MSH), X12 (ISA) or XML");
	} else if (bad) {
		reject(r, HL7_ERR_REQUIRED_FIELD, why);
	} else if (!in) {
		c->l->incomplete++;
		c->closing = 1;
		reject(r, HL7_ERR_TABLE_VALUE,
		       "no integration on this port accepts this sender and MSH-4/MSH-6");
	} else if (!(ctype = content_type(kind, &msh, ctbuf))) {
		reject(r, HL7_ERR_TABLE_VALUE, "MSH-18 character set is not supported");
	} else {
		char key[MSGKEY_IDEM_LEN + 1];

		if (kind == PAYLOAD_HL7)
			snprintf(ctl, sizeof(ctl), "%.*s", (int)msh.control_id.len,
				 msh.control_id.p);
		/* Derived: a resend of the same bytes carries the same key. */
		msgkey_idem(in->cfg->name, kind == PAYLOAD_HL7 ? &msh : NULL, data, len, key);
		bridge_stage(c->b, r,
			     &(struct spool_new){.integration = in->cfg->name,
						 .sender = c->addr,
						 .content_type = ctype,
						 .control_id = ctl,
						 .idem_key = key,
						 .lane = "",
						 .lane2 = "",
						 .received_ms = r->received_ms,
						 .body = data,
						 .len = len});
	}
}

static void oversize(struct conn *c)
{
	struct reply *r = reply_new(c, c->cands[0], (const uint8_t *)"", 0);

	c->b->oversize++;
	c->closing = 1;
	mllp_deframer_reset(c->df);
	if (!r)
		return;
	log_event(LOG_WARN, "frame_oversize", " peer=%s max_frame=%zu", c->peer,
		  c->mllp->max_frame);
	reply_set_ack(r, HL7_REJECT, HL7_ERR_APPLICATION_INTERNAL, 'E',
		      "frame exceeds max_frame; connection closed");
	reply_complete(r);
}

/* Handles every complete frame already fed, unless too many answers are owed. */
static void conn_process(struct conn *c)
{
	struct mllp_frame f;
	enum mllp_event ev;

	c->in_process = 1;
	while (!c->closing && c->npending < BRIDGE_CONN_PENDING_MAX &&
	       (ev = mllp_deframer_next(c->df, &f)) != MLLP_NEED_MORE) {
		if (ev == MLLP_FRAME)
			handle_frame(c, f.data, f.len);
		else if (ev == MLLP_OVERSIZE)
			oversize(c);
		else
			log_event(LOG_DEBUG, "unexpected_commit_block", " peer=%s", c->peer);
	}
	c->b->junk_bytes += mllp_deframer_take_junk(c->df);
	c->b->abandoned_frames += mllp_deframer_take_abandoned(c->df);
	c->in_process = 0;
	if (c->npending >= BRIDGE_CONN_PENDING_MAX)
		event_del(c->rd); /* resumed by reply_complete */
	else if (!c->eof && !c->closing)
		event_add(c->rd, NULL);
}

/* --- timers ---------------------------------------------------------- */

static void arm_timer(struct conn *c)
{
	double now = bridge_now(), left;
	struct timeval tv;

	if (mllp_deframer_in_frame(c->df)) {
		if (c->frame_start == 0)
			c->frame_start = now;
		left = c->frame_start + (double)c->mllp->frame_timeout_ms / 1000 - now;
	} else {
		c->frame_start = 0;
		left = (double)c->mllp->idle_timeout_ms / 1000;
	}
	if (left < 0)
		left = 0;
	tv.tv_sec = (time_t)left;
	tv.tv_usec = (long)((left - (double)tv.tv_sec) * 1e6);
	event_add(c->tm, &tv);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;

	(void)fd;
	(void)what;
	/* While we stopped reading (too many unanswered frames), the frame
	 * cannot progress, and frames behind it wait to be handled: that is
	 * our doing, not the peer's, so the clock does not run out on it. */
	if (c->frame_start && c->npending >= BRIDGE_CONN_PENDING_MAX) {
		c->frame_start = bridge_now(); /* the clock restarts */
		arm_timer(c);
		return;
	}
	if (c->frame_start) {
		log_event(LOG_WARN, "frame_timeout", " peer=%s", c->peer);
		c->b->frame_timeouts++;
		mllp_deframer_reset(c->df);
		arm_timer(c);
		return;
	}
	if (c->npending) { /* still waiting on the upstream: not idle */
		arm_timer(c);
		return;
	}
	log_event(LOG_INFO, "idle_timeout", " peer=%s", c->peer);
	c->b->idle_timeouts++;
	conn_free(c);
}

/* --- input ----------------------------------------------------------- */

static void on_read(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	ssize_t n;

	(void)what;
	n = recv(fd, read_buf, sizeof(read_buf), 0);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		n = 0; /* woken to resume a paused reader: process what is fed */
	else if (n <= 0) {
		c->eof = 1;
		event_del(c->rd);
		if (c->npending == 0 && mllp_deframer_in_frame(c->df))
			log_event(LOG_INFO, "conn_closed_mid_frame", " peer=%s", c->peer);
		if (!conn_maybe_close(c) && n < 0)
			conn_free(c);
		return;
	}
	if (n > 0 && mllp_deframer_feed(c->df, read_buf, (size_t)n) < 0) {
		c->closing = 1;
		conn_maybe_close(c);
		return;
	}
	conn_process(c);
	if (!conn_maybe_close(c))
		arm_timer(c);
}

/* --- accept ---------------------------------------------------------- */

static void peer_text(const struct sockaddr *sa, char *addr, char *peer)
{
	char host[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;

	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const void *)sa;

		inet_ntop(AF_INET, &s4->sin_addr, host, sizeof(host));
		port = ntohs(s4->sin_port);
		snprintf(peer, BRIDGE_PEER_MAX, "%s:%u", host, port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const void *)sa;

		inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host));
		port = ntohs(s6->sin6_port);
		snprintf(peer, BRIDGE_PEER_MAX, "[%s]:%u", host, port);
	}
	snprintf(addr, BRIDGE_PEER_MAX, "%s", host);
}

static size_t find_candidates(struct listener *l, const struct sockaddr *sa, struct integ **out)
{
	size_t i, j, n = 0;

	for (i = 0; i < l->ninteg; i++) {
		const struct cfg_integration *ci = l->integs[i]->cfg;

		for (j = 0; j < ci->nsources; j++) {
			if (cfg_cidr_contains(&ci->sources[j], sa)) {
				out[n++] = l->integs[i];
				break;
			}
		}
	}
	return n;
}

static struct conn *conn_new(struct listener *l, evutil_socket_t fd, struct integ **cands, size_t n)
{
	struct conn *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->b = l->b;
	c->l = l;
	c->fd = fd;
	TAILQ_INIT(&c->replies);
	c->mllp = &cands[0]->cfg->mllp;
	c->cands = malloc(n * sizeof(*cands));
	c->df = mllp_deframer_new(c->mllp->max_frame);
	c->rd = event_new(l->b->base, fd, EV_READ | EV_PERSIST, on_read, c);
	c->wr = event_new(l->b->base, fd, EV_WRITE | EV_PERSIST, on_write, c);
	c->tm = evtimer_new(l->b->base, on_timer, c);
	if (!c->cands || !c->df || !c->rd || !c->wr || !c->tm) {
		c->fd = -1; /* the caller closes it */
		conn_free(c);
		return NULL;
	}
	memcpy(c->cands, cands, n * sizeof(*cands));
	c->ncands = n;
	LIST_INSERT_HEAD(&l->conns, c, link);
	return c;
}

static void on_accept(struct evconnlistener *evl, evutil_socket_t fd, struct sockaddr *sa,
		      int salen, void *arg)
{
	struct listener *l = arg;
	struct integ *cands[CFG_MAX_INTEGRATIONS];
	char addr[BRIDGE_PEER_MAX], peer[BRIDGE_PEER_MAX];
	size_t n = find_candidates(l, sa, cands);
	struct conn *c;
	int one = 1;

	(void)evl;
	(void)salen;
	peer_text(sa, addr, peer);
	if (n == 0) {
		l->incomplete++;
		log_event(LOG_WARN, "incomplete_integration",
			  " peer=%s reason=\"source not allowed\"", peer);
		evutil_closesocket(fd);
		return;
	}
	c = conn_new(l, fd, cands, n);
	if (!c) {
		evutil_closesocket(fd);
		return;
	}
	memcpy(c->addr, addr, sizeof(addr));
	memcpy(c->peer, peer, sizeof(peer));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	l->accepted++;
	l->b->conns_open++;
	log_event(LOG_DEBUG, "conn_open", " peer=%s", peer);
	event_add(c->rd, NULL);
	arm_timer(c);
}

static void conn_free(struct conn *c)
{
	struct reply *r;

	while ((r = TAILQ_FIRST(&c->replies))) {
		TAILQ_REMOVE(&c->replies, r, link);
		/* A reply still waiting for the commit or the upstream is
		 * owned by that path now; it frees it when done. */
		if (r->ready)
			reply_free(r);
		else
			r->conn = NULL;
	}
	if (c->rd)
		event_free(c->rd);
	if (c->wr)
		event_free(c->wr);
	if (c->tm)
		event_free(c->tm);
	if (c->out)
		evbuffer_free(c->out);
	mllp_deframer_free(c->df);
	free(c->cands);
	if (c->fd >= 0) {
		LIST_REMOVE(c, link);
		evutil_closesocket(c->fd);
		c->b->conns_open--;
		log_event(LOG_DEBUG, "conn_close", " peer=%s", c->peer);
	}
	free(c);
}

/* --- listeners ------------------------------------------------------- */

static struct listener *listener_for(struct bridge *b, const struct cfg_integration *ci)
{
	struct listener *l;

	for (l = b->listeners; l; l = l->next)
		if (l->addr_len == ci->listen_len &&
		    memcmp(&l->addr, &ci->listen, l->addr_len) == 0)
			return l;
	l = calloc(1, sizeof(*l));
	if (!l)
		return NULL;
	l->b = b;
	l->addr = ci->listen;
	l->addr_len = ci->listen_len;
	l->integs = calloc(b->ninteg, sizeof(*l->integs));
	if (!l->integs) {
		free(l);
		return NULL;
	}
	l->next = b->listeners;
	b->listeners = l;
	return l;
}

static int listener_bind(struct listener *l, const char *text)
{
	l->evl = evconnlistener_new_bind(
	    l->b->base, on_accept, l,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC, LISTEN_BACKLOG,
	    (struct sockaddr *)&l->addr, (int)l->addr_len);
	if (!l->evl) {
		int err = errno;

		log_event(LOG_ERR, "listen_failed", " listen=%s error=\"%s\"", text, strerror(err));
		return -(err ? err : EADDRNOTAVAIL);
	}
	log_event(LOG_INFO, "listening", " listen=%s integrations=%zu", text, l->ninteg);
	return 0;
}

int listeners_start(struct bridge *b)
{
	struct listener *l;
	size_t i;
	int err;

	for (i = 0; i < b->ninteg; i++) {
		l = listener_for(b, b->integs[i].cfg);
		if (!l)
			return -ENOMEM;
		l->integs[l->ninteg++] = &b->integs[i];
	}
	for (l = b->listeners; l; l = l->next)
		if ((err = listener_bind(l, l->integs[0]->cfg->listen_text)) < 0)
			return err;
	return 0;
}

void listeners_free(struct bridge *b)
{
	struct listener *l;

	while ((l = b->listeners)) {
		b->listeners = l->next;
		while (!LIST_EMPTY(&l->conns))
			conn_free(LIST_FIRST(&l->conns));
		if (l->evl)
			evconnlistener_free(l->evl);
		free(l->integs);
		free(l);
	}
}
