#include "mllp-bridge/mllp_in.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "mllp-bridge/commit.h"
#include "mllp-bridge/dedup.h"
#include "mllp-bridge/gate.h"
#include "mllp-bridge/log.h"
#include "mllp-bridge/mllp.h"
#include "mllp-bridge/msgkey.h"

struct mllp_in;
struct conn;

/* One configured integration as the listeners see it. */
struct in_integ {
	struct mllp_in *m;
	size_t index; /* in cfg->integrations, the forwarder's numbering too */
	const struct cfg_integration *cfg;
	struct dedup *dedup; /* NULL unless `dedup:` is set */
	struct mllp_in_integ_stats st;
};

/* A response slot: frames on one connection are answered in arrival order. */
struct reply {
	TAILQ_ENTRY(reply) link; /* in conn->replies */
	struct conn *conn;	 /* NULL once the connection is gone */
	struct in_integ *integ;
	int ready;   /* ack/ack_len hold the answer (or no answer is due) */
	int release; /* MLLP release of the connection: 1 or 2 */
	double t_read;
	char *ack; /* the framed answer; NULL when none is due */
	size_t ack_len;
	char control_id[HL7_MSH_CONTROL_ID_MAX + 1]; /* MSH-10, "" if none */
	int has_msh;				     /* msh holds a header the answer can mirror */
	struct hl7_msh msh;			     /* its fields point into keep[] */
	char keep[HL7_MSH_KEEP_MAX];		     /* the header outlives the frame */
};

struct listener {
	struct mllp_in *m;
	struct evconnlistener *evl;
	struct sockaddr_storage addr;
	socklen_t addr_len;
	struct in_integ **integs; /* integrations that listen here */
	size_t ninteg;
	LIST_HEAD(, conn) conns;
	uint64_t accepted, incomplete;
	struct listener *next;
};

struct conn {
	struct mllp_in *m;
	struct listener *l;
	evutil_socket_t fd;
	struct event *rd, *wr, *tm;
	struct event *more; /* a zero timer: the backlog's turn in the next pass */
	struct mllp_deframer *df;
	struct evbuffer *out; /* only while a write would block */
	struct in_integ **cands;
	size_t ncands;
	const struct cfg_mllp *mllp; /* shared by every candidate (config rule) */
	TAILQ_HEAD(, reply) replies;
	size_t npending;
	uint64_t serial;    /* names the connection's lane in ack: upstream */
	double frame_start; /* 0 when not inside a frame */
	int eof, closing, in_process;
	int lingering;	    /* answers sent, FIN sent, input drained until close */
	int backlog;	    /* complete frames wait in the deframer for the next pass */
	struct source *src; /* counts this connection */
	LIST_ENTRY(conn) link;
	char peer[MLLP_IN_PEER_MAX]; /* address:port, for logs */
	char addr[MLLP_IN_PEER_MAX]; /* address, the sender */
	struct sockaddr_storage sa;  /* the peer, for the gate */
};

struct mllp_in {
	struct event_base *base;
	const struct cfg *cfg;
	struct commit *commit;
	struct gate *gate;
	struct mllp_in_hooks hooks;
	struct in_integ *integs;
	struct listener *listeners;
	struct mllp_in_stats st;
	uint64_t ack_seq, conn_serial;
	int64_t started_s;
	struct source *sources[MLLP_IN_SOURCE_BUCKETS]; /* connections per address */
	struct event *accept_resume;			/* accepting again after EMFILE */
};

/* Connections open from one source address. */
struct source {
	struct source *next;
	unsigned n;
	char addr[MLLP_IN_PEER_MAX];
};

static uint8_t read_buf[MLLP_IN_READ_CHUNK]; /* one loop, one thread: shared */

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
	struct mllp_in_integ_stats *st = &r->integ->st;

	if (r->release == 2)
		*(code == HL7_ACCEPT ? &st->r2_acks : &st->r2_naks) += 1;
	else
		st->acks[(enhanced ? MLLP_IN_CA : MLLP_IN_AA) + (int)code]++;
}

int mllp_in_ack_wanted(const struct hl7_msh *msh, enum hl7_ack_code code, int always)
{
	const struct hl7_str *at = &msh->accept_ack;

	if (always || !hl7_is_enhanced(msh) || at->len != 2)
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

/* Fills r with an HL7 answer (or the R2 block); field, when not 0, is the
 * MSH field the error is about (ERR's location). */
static void reply_set_ack_at(struct reply *r, enum hl7_ack_code code, enum hl7_err_code err,
			     char severity, const char *text, unsigned field)
{
	struct mllp_in *m = r->integ->m;
	const struct hl7_msh *mp = r->has_msh ? &r->msh : NULL;
	char ctl[40], buf[HL7_ACK_MAX];
	int n;

	if (r->release == 2) {
		uint8_t blk = code == HL7_ACCEPT ? MLLP_R2_ACK : MLLP_R2_NAK;

		count_ack(r, code, 0);
		reply_store(r, &blk, 1);
		return;
	}
	if (mp && !mllp_in_ack_wanted(mp, code, r->integ->cfg->accept_ack_always)) {
		r->ready = 1;
		return;
	}
	snprintf(ctl, sizeof(ctl), "%lld%06llu", (long long)m->started_s,
		 (unsigned long long)++m->ack_seq);
	n = hl7_build_ack(&(struct hl7_ack_req){.msh = mp,
						.code = code,
						.enhanced = mp && hl7_is_enhanced(mp),
						.ack_control_id = ctl,
						.timestamp = ack_timestamp(),
						.err_code = err,
						.err_severity = severity ? severity : 'E',
						.err_text = text,
						.err_segment = field ? "MSH" : NULL,
						.err_field = field},
			  buf, sizeof(buf));
	count_ack(r, code, mp && hl7_is_enhanced(mp));
	if (n < 0) {
		r->ready = 1; /* cannot happen with HL7_ACK_MAX; never block the queue */
		return;
	}
	reply_store(r, buf, (size_t)n);
}

static void reply_set_ack(struct reply *r, enum hl7_ack_code code, enum hl7_err_code err,
			  char severity, const char *text)
{
	reply_set_ack_at(r, code, err, severity, text, 0);
}

/* msh: the frame's header as parsed, or NULL. It is kept (bounded, see
 * hl7_msh_keep) when the answer can mirror it: parsed, or malformed with
 * usable separators; the answer is then right wherever MSH started (after
 * a BOM, white space, FHS/BHS) and however long the segment was. */
static struct reply *reply_new(struct conn *c, struct in_integ *in, const struct hl7_msh *msh,
			       int parsed)
{
	struct reply *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	if (msh && (parsed || msh->field_sep)) {
		hl7_msh_keep(msh, &r->msh, r->keep);
		r->has_msh = 1;
		if (r->msh.control_id.p)
			snprintf(r->control_id, sizeof(r->control_id), "%.*s",
				 (int)r->msh.control_id.len, r->msh.control_id.p);
	}
	r->conn = c;
	r->integ = in;
	r->release = c->mllp->release;
	r->t_read = stats_now();
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

static size_t conn_unsent(const struct conn *c)
{
	return c->out ? evbuffer_get_length(c->out) : 0;
}

/* Reading stops while the peer owes us too much: answers it has not read
 * (bytes), or frames not yet answered. So a peer's memory is bounded by
 * configuration, not by what it sends. */
static int conn_paused(const struct conn *c)
{
	return c->npending >= MLLP_IN_PENDING_MAX || conn_unsent(c) >= MLLP_IN_UNSENT_MAX;
}

/* A paused reader resumes from the loop once it is well below both bounds. */
static void conn_resume(struct conn *c)
{
	if (!c->eof && !c->closing && !c->in_process && !event_pending(c->rd, EV_READ, NULL) &&
	    c->npending < MLLP_IN_PENDING_MAX / 2 && conn_unsent(c) < MLLP_IN_UNSENT_MAX / 2)
		event_active(c->rd, EV_READ, 0);
}

/* The connection will send nothing more: its queued answers go. */
static void conn_drop_replies(struct conn *c)
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
	c->npending = 0;
}

/* Reads what the peer still sends, and throws it away. */
static void conn_discard(struct conn *c)
{
	ssize_t n;

	for (int i = 0; i < MLLP_IN_FRAMES_PER_PASS; i++) {
		n = recv(c->fd, read_buf, sizeof(read_buf), 0);
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
			return;
		if (n <= 0) { /* the peer closed too (or failed): done */
			conn_free(c);
			return;
		}
	}
}

/* Closing a socket with unread input makes the kernel send a RST, and a RST
 * discards whatever the peer has not read yet: the AR for an oversized
 * frame, the AE for an unknown sender, the very answers that say why. So
 * the bridge closes the way nginx's lingering close does: our side is shut
 * (the answers already written, then FIN), and the peer's input is read and
 * thrown away until it closes too, for at most MLLP_IN_LINGER_MS. Nothing
 * read now is processed, and it costs no memory. */
static void conn_linger(struct conn *c)
{
	static const struct timeval linger = {MLLP_IN_LINGER_MS / 1000,
					      (MLLP_IN_LINGER_MS % 1000) * 1000};

	c->lingering = 1;
	conn_drop_replies(c);
	event_del(c->wr);
	evtimer_del(c->more);
	if (shutdown(c->fd, SHUT_WR) < 0 || event_add(c->rd, NULL) < 0 ||
	    event_add(c->tm, &linger) < 0) {
		conn_free(c);
		return;
	}
	/* Whatever is already queued may be all there is: read it now. */
	event_active(c->rd, EV_READ, 0);
}

/* Closes when the peer is gone or we decided to, once nothing is owed.
 * Returns 1 when the caller must leave c alone: freed, or lingering. */
static int conn_maybe_close(struct conn *c)
{
	if (c->lingering)
		return 1;
	if (c->eof && c->npending == 0 && conn_drained(c)) {
		conn_free(c);
		return 1;
	}
	if (c->closing && conn_drained(c)) {
		conn_linger(c);
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
	conn_resume(c);
}

/* r's outcome is known: write every ready answer at the head of its
 * connection's queue. Frees r when its connection is gone. */
static void reply_complete(struct reply *r)
{
	struct conn *c = r->conn;
	double now;

	r->ready = 1;
	if (!c) {
		reply_free(r);
		return;
	}
	now = stats_now();
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
	conn_resume(c);
}

/* --- the outcome of a stored frame ------------------------------------ */

/* The upstream's answer, for a sender that waits for it (ack: upstream). */
static void on_answer(void *arg, const struct fwd_answer *a)
{
	struct reply *r = arg;
	struct hl7_str code, ctl;

	switch (a->outcome) {
	case FWD_DELIVERED:
		/* HL7 over HTTP: an answer to this very message is relayed as is. */
		if (r->release == 1 && a->len && hl7_parse_msa(a->body, a->len, &code, &ctl) == 0 &&
		    ctl.len == strlen(r->control_id) && memcmp(ctl.p, r->control_id, ctl.len) == 0)
			reply_store(r, a->body, a->len);
		else
			reply_set_ack(r, HL7_ACCEPT, HL7_ERR_OK, 0, NULL);
		break;
	case FWD_PENDING:
	case FWD_UNKNOWN:
		reply_set_ack(r, HL7_ACCEPT, HL7_ERR_OK, 'W', a->why);
		break;
	case FWD_REFUSED:
		reply_set_ack(r, HL7_ERROR, HL7_ERR_APPLICATION_INTERNAL, 'E', a->why);
		break;
	case FWD_ABORTED:
		break; /* shutting down: the connection closes unanswered */
	}
	reply_complete(r);
}

static void on_committed(void *arg, int err, int64_t id, const struct spool_new *sm)
{
	struct reply *r = arg;
	struct in_integ *in = r->integ;
	struct mllp_in *m = in->m;
	/* Nobody is left to hear the upstream's answer when the connection
	 * is gone: the commit answer is all there is. */
	int wait = in->cfg->ack == CFG_ACK_UPSTREAM && r->conn && err == 0;

	if (err < 0) {
		in->st.rejected_store++;
		reply_set_ack(r, HL7_REJECT, HL7_ERR_APPLICATION_INTERNAL, 'E',
			      err == -ENOSPC ? "message not stored: spool disk is full"
					     : "message not stored: spool error");
		reply_complete(r);
		return;
	}
	if (in->dedup && dedup_add(in->dedup, sm->idem_key, stats_wall_ms()) < 0)
		log_event(LOG_WARN, "dedup_full", " integration=%s", in->cfg->name);
	if (!wait) {
		reply_set_ack(r, HL7_ACCEPT, HL7_ERR_OK, 0, NULL);
		reply_complete(r); /* may free r */
	}
	if (m->hooks.committed(m->hooks.arg, in->index, id, sm, wait ? on_answer : NULL,
			       wait ? r : NULL) != 0 &&
	    wait) {
		/* Stored but not queued in memory: the next start picks it
		 * up, and the sender hears it is safe. */
		reply_set_ack(r, HL7_ACCEPT, HL7_ERR_OK, 'W', "stored; delivery will be retried");
		reply_complete(r);
	}
}

/* --- frames ---------------------------------------------------------- */

static int str_eq(const struct hl7_str *s, const char *want)
{
	return !want || (s->p && strlen(want) == s->len && memcmp(s->p, want, s->len) == 0);
}

int mllp_in_match(const struct cfg_integration *const *cands, size_t n, const struct hl7_msh *msh)
{
	int catch_all = -1;

	for (size_t i = 0; i < n; i++) {
		const struct cfg_integration *ci = cands[i];

		if (!ci->match_sending_facility && !ci->match_receiving_facility) {
			if (catch_all < 0)
				catch_all = (int)i;
		} else if (msh && str_eq(&msh->sending_facility, ci->match_sending_facility) &&
			   str_eq(&msh->receiving_facility, ci->match_receiving_facility)) {
			return (int)i;
		}
	}
	return catch_all;
}

static struct in_integ *match_integ(const struct conn *c, const struct hl7_msh *msh)
{
	const struct cfg_integration *cfgs[CFG_MAX_INTEGRATIONS];
	int i;

	for (size_t k = 0; k < c->ncands; k++)
		cfgs[k] = c->cands[k]->cfg;
	i = mllp_in_match(cfgs, c->ncands, msh);
	return i < 0 ? NULL : c->cands[i];
}

/* The frame's first line, for an operator debugging a sender. */
static size_t first_line(const uint8_t *data, size_t len)
{
	size_t n = 0;

	while (n < len && data[n] != '\r' && data[n] != '\n')
		n++;
	return n;
}

/* Refuses the frame (data, len) with an answer naming why, and field when
 * the reason is an MSH field. */
static void reject(struct reply *r, enum hl7_err_code code, unsigned field, const char *why,
		   const uint8_t *data, size_t len)
{
	const char *peer = r->conn ? r->conn->peer : "-", *addr = r->conn ? r->conn->addr : "-";
	char head[LOG_PHI_FIELD_MAX];

	/* The header names patients' facilities and the message: only with
	 * log_phi: true, for an operator who is debugging a sender. */
	if (log_phi_enabled() && len)
		log_event_peer(LOG_WARN, "frame_rejected", addr,
			       " integration=%s peer=%s reason=\"%s\" msh=\"%s\"",
			       r->integ->cfg->name, peer, why,
			       log_safe(head, sizeof(head), (const char *)data,
					(unsigned)first_line(data, len)));
	else
		log_event_peer(LOG_WARN, "frame_rejected", addr,
			       " integration=%s peer=%s reason=\"%s\"", r->integ->cfg->name, peer,
			       why);
	reply_set_ack_at(r, code == HL7_ERR_TABLE_VALUE ? HL7_ERROR : HL7_REJECT, code, 'E', why,
			 field);
	reply_complete(r);
}

static const char *content_type(enum payload_kind kind, const struct hl7_msh *msh,
				char buf[MLLP_IN_CTYPE_MAX])
{
	const char *cs;

	if (kind == PAYLOAD_X12)
		return "application/edi-x12";
	if (kind == PAYLOAD_XML)
		return "application/xml";
	cs = hl7_mime_charset(&msh->charset);
	if (!cs)
		return NULL;
	snprintf(buf, MLLP_IN_CTYPE_MAX, "x-application/hl7-v2+er7; charset=%s", cs);
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

/* Stages an accepted frame; r is answered once the commit says. */
static void stage(struct conn *c, struct reply *r, const char *ctype, const struct hl7_msh *msh,
		  const uint8_t *data, size_t len)
{
	const struct cfg_integration *ci = r->integ->cfg;
	char key[MSGKEY_IDEM_LEN + 1], lane[MSGKEY_LANE_MAX], lane2[MSGKEY_LANE_MAX];
	int err;

	msgkey_idem(ci->name, msh, data, len, key);
	if (r->integ->dedup && dedup_seen(r->integ->dedup, key, stats_wall_ms())) {
		/* The same bytes again within the window: a sender that timed
		 * out. It hears what it heard the first time. */
		r->integ->st.duplicates++;
		reply_set_ack(r, HL7_ACCEPT, HL7_ERR_OK, 0, NULL);
		reply_complete(r);
		return;
	}
	/* A sender waiting for the upstream sends its next message only after
	 * the answer: its connection is its lane, and no other waits on it. */
	if (ci->ack == CFG_ACK_UPSTREAM && ci->order != CFG_ORDER_INTEGRATION) {
		snprintf(lane, sizeof(lane), "c:%llu", (unsigned long long)c->serial);
		lane2[0] = '\0';
	} else {
		msgkey_lanes(ci->order, c->addr, msh, data, len, lane, lane2);
	}
	err = commit_stage(c->m->commit,
			   &(struct spool_new){.integration = ci->name,
					       .sender = c->addr,
					       .content_type = ctype,
					       .control_id = r->control_id,
					       .idem_key = key,
					       .lane = lane,
					       .lane2 = lane2,
					       .received_ms = stats_wall_ms(),
					       .body = data,
					       .len = len},
			   on_committed, r);
	if (err < 0) {
		r->integ->st.rejected_store++;
		reply_set_ack(r, HL7_REJECT, HL7_ERR_APPLICATION_INTERNAL, 'E',
			      err == -ENOMEM
				  ? "message not stored: out of memory"
				  : "message not stored: a field exceeds the spool's limits");
		reply_complete(r);
	}
}

static void handle_frame(struct conn *c, const uint8_t *data, size_t len)
{
	enum payload_kind kind = len ? hl7_payload_kind(data, len) : PAYLOAD_UNKNOWN;
	struct hl7_msh msh;
	struct in_integ *in;
	struct reply *r;
	const char *why = NULL, *ctype;
	char ctbuf[MLLP_IN_CTYPE_MAX], text[HL7_ERR_TEXT_MAX];
	int bad = kind == PAYLOAD_HL7 && hl7_parse_msh(data, len, &msh, &why) < 0;
	unsigned field = 0, limit = 0;

	/* A malformed header still names its facilities most of the time:
	 * its rejection is counted where the message was headed. */
	in = kind == PAYLOAD_UNKNOWN ? c->cands[0]
				     : match_integ(c, kind == PAYLOAD_HL7 ? &msh : NULL);
	r = reply_new(c, in ? in : c->cands[0], kind == PAYLOAD_HL7 ? &msh : NULL, !bad);
	if (!r) {
		c->closing = 1;
		return;
	}
	r->integ->st.frames++;
	r->integ->st.bytes += len;
	if (kind == PAYLOAD_HL7 && !bad && (field = hl7_msh_overlong(&msh, &limit)))
		snprintf(text, sizeof(text), "MSH-%u is longer than %u characters", field, limit);
	if (len == 0) {
		reject(r, HL7_ERR_SEGMENT_SEQUENCE, 0, "empty frame", data, len);
	} else if (kind == PAYLOAD_UNKNOWN) {
		int seg = looks_like_segment(data, len);

		reject(r, seg ? HL7_ERR_SEGMENT_SEQUENCE : HL7_ERR_UNSUPPORTED_MESSAGE, 0,
		       seg ? "no MSH segment: an HL7 v2 message must start with MSH"
			   : "payload is not HL7 v2 (MSH), X12 (ISA) or XML",
		       data, len);
	} else if (bad) {
		reject(r, HL7_ERR_REQUIRED_FIELD, 0, why, data, len);
	} else if (field) {
		/* Mirroring a cut field would be a wrong answer. */
		reject(r, HL7_ERR_DATA_TYPE, field, text, data, len);
	} else if (!in) {
		c->l->incomplete++;
		c->closing = 1;
		reject(r, HL7_ERR_TABLE_VALUE, 0,
		       "no integration on this port accepts this sender and MSH-4/MSH-6", data,
		       len);
	} else if (!(ctype = content_type(kind, &msh, ctbuf))) {
		reject(r, HL7_ERR_TABLE_VALUE, 18, "MSH-18 character set is not supported", data,
		       len);
	} else {
		stage(c, r, ctype, kind == PAYLOAD_HL7 ? &msh : NULL, data, len);
	}
}

static void oversize(struct conn *c)
{
	struct reply *r = reply_new(c, c->cands[0], NULL, 0);

	c->m->st.oversize++;
	c->closing = 1;
	mllp_deframer_reset(c->df);
	if (!r)
		return;
	log_event_peer(LOG_WARN, "frame_oversize", c->addr, " peer=%s max_frame=%zu", c->peer,
		       c->mllp->max_frame);
	reply_set_ack(r, HL7_REJECT, HL7_ERR_APPLICATION_INTERNAL, 'E',
		      "frame exceeds max_frame; connection closed");
	reply_complete(r);
}

/* Handles the complete frames already fed: at most MLLP_IN_FRAMES_PER_PASS
 * in one go, so that one peer's burst cannot hold the loop (the rest wait
 * for the next pass, behind the other connections), and none while the
 * peer owes us too much (conn_paused). */
static void conn_process(struct conn *c)
{
	struct mllp_frame f;
	enum mllp_event ev;
	int budget = MLLP_IN_FRAMES_PER_PASS;

	c->in_process = 1;
	c->backlog = 0;
	while (!c->closing && !conn_paused(c)) {
		if (budget-- == 0) {
			c->backlog = 1;
			break;
		}
		if ((ev = mllp_deframer_next(c->df, &f)) == MLLP_NEED_MORE)
			break;
		if (ev == MLLP_FRAME)
			handle_frame(c, f.data, f.len);
		else if (ev == MLLP_OVERSIZE)
			oversize(c);
		else
			log_event(LOG_DEBUG, "unexpected_commit_block", " peer=%s", c->peer);
	}
	c->m->st.junk_bytes += mllp_deframer_take_junk(c->df);
	c->m->st.abandoned_frames += mllp_deframer_take_abandoned(c->df);
	c->in_process = 0;
	if (c->closing || c->eof)
		return;
	if (conn_paused(c)) {
		c->backlog = 0; /* the frames stay fed; conn_resume() picks them up */
		event_del(c->rd);
	} else if (c->backlog) {
		/* A zero timer, not event_active(): an event activated from its
		 * own callback runs again before the loop polls the other
		 * sockets, and 16 flooders would starve everyone else. */
		static const struct timeval now = {0, 0};

		evtimer_add(c->more, &now);
	} else {
		event_add(c->rd, NULL);
	}
}

/* --- timers ---------------------------------------------------------- */

static void arm_timer(struct conn *c)
{
	double now = stats_now(), left;
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
	if (c->lingering) { /* the peer never closed: enough */
		conn_free(c);
		return;
	}
	/* While we stopped reading (too many unanswered frames), the frame
	 * cannot progress: that is our doing, not the peer's, so its clock
	 * starts again. */
	if (c->frame_start && conn_paused(c)) {
		c->frame_start = stats_now();
		arm_timer(c);
		return;
	}
	if (c->frame_start) {
		log_event_peer(LOG_WARN, "frame_timeout", c->addr, " peer=%s", c->peer);
		c->m->st.frame_timeouts++;
		mllp_deframer_reset(c->df);
		arm_timer(c);
		return;
	}
	if (c->npending) { /* still waiting on the upstream: not idle */
		arm_timer(c);
		return;
	}
	log_event_peer(LOG_INFO, "idle_timeout", c->addr, " peer=%s", c->peer);
	c->m->st.idle_timeouts++;
	conn_free(c);
}

/* --- input ----------------------------------------------------------- */

/* The peer closed (n == 0) or failed (n < 0). */
static void on_peer_gone(struct conn *c, ssize_t n)
{
	c->eof = 1;
	event_del(c->rd);
	if (c->npending == 0 && mllp_deframer_in_frame(c->df))
		log_event_peer(LOG_INFO, "conn_closed_mid_frame", c->addr, " peer=%s", c->peer);
	if (!conn_maybe_close(c) && n < 0)
		conn_free(c);
}

static void on_read(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	ssize_t n = 0;

	(void)what;
	if (c->lingering) {
		conn_discard(c);
		return;
	}
	/* Frames left from the last pass are handled before anything new is
	 * read, and nothing is read while paused: what one peer has fed stays
	 * bounded. */
	if (!c->backlog && !conn_paused(c)) {
		n = recv(fd, read_buf, sizeof(read_buf), 0);
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
			n = 0; /* woken to resume a paused reader: process what is fed */
		else if (n <= 0) {
			on_peer_gone(c, n);
			return;
		}
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

static void on_more(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;

	(void)fd;
	(void)what;
	on_read(c->fd, EV_READ, c);
}

/* --- accept ---------------------------------------------------------- */

static void peer_text(const struct sockaddr *sa, char *addr, char *peer)
{
	char host[INET6_ADDRSTRLEN] = "?";

	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const void *)sa;

		inet_ntop(AF_INET, &s4->sin_addr, host, sizeof(host));
		snprintf(peer, MLLP_IN_PEER_MAX, "%s:%u", host, ntohs(s4->sin_port));
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const void *)sa;

		inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host));
		snprintf(peer, MLLP_IN_PEER_MAX, "[%s]:%u", host, ntohs(s6->sin6_port));
	}
	snprintf(addr, MLLP_IN_PEER_MAX, "%s", host);
}

static size_t find_candidates(struct listener *l, const struct sockaddr *sa, struct in_integ **out)
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

/* --- limits ---------------------------------------------------------- */

static struct source **source_slot(struct mllp_in *m, const char *addr)
{
	unsigned h = 2166136261u;
	struct source **pp;

	for (const char *p = addr; *p; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	for (pp = &m->sources[h % MLLP_IN_SOURCE_BUCKETS]; *pp; pp = &(*pp)->next)
		if (strcmp((*pp)->addr, addr) == 0)
			break;
	return pp;
}

static unsigned source_count(struct mllp_in *m, const char *addr)
{
	struct source *src = *source_slot(m, addr);

	return src ? src->n : 0;
}

static struct source *source_take(struct mllp_in *m, const char *addr)
{
	struct source **pp = source_slot(m, addr);

	if (!*pp) {
		if (!(*pp = calloc(1, sizeof(**pp))))
			return NULL;
		snprintf((*pp)->addr, sizeof((*pp)->addr), "%s", addr);
	}
	(*pp)->n++;
	return *pp;
}

static void source_drop(struct mllp_in *m, struct source *src)
{
	struct source **pp = source_slot(m, src->addr);

	if (--src->n == 0) {
		*pp = src->next;
		free(src);
	}
}

/* Over a limit: the offender's connection is closed at once, the others
 * go on (nginx's limit_conn, haproxy's maxconn). */
static int over_limit(struct listener *l, const char *addr, const char *peer, evutil_socket_t fd)
{
	struct mllp_in *m = l->m;
	const char *why = NULL;

	if (m->st.conns_open >= m->cfg->max_connections) {
		why = "connections.max";
		m->st.refused_total++;
	} else if (source_count(m, addr) >= m->cfg->max_connections_per_source) {
		why = "connections.per_source";
		m->st.refused_per_source++;
	}
	if (!why)
		return 0;
	log_event_peer(LOG_WARN, "connection_refused", addr, " peer=%s limit=%s", peer, why);
	evutil_closesocket(fd);
	return 1;
}

/* Fail closed (invariant 3): a peer behind no installed CHILD_SA is closed
 * before a byte is read from it, before it is even matched. */
static int gate_refuses(struct mllp_in *m, const struct sockaddr *sa, const char *addr,
			const char *peer, evutil_socket_t fd)
{
	if (gate_allows(m->gate, sa))
		return 0;
	m->st.refused_gate++;
	log_event_peer(LOG_WARN, "connection_refused", addr,
		       " peer=%s limit=gate reason=\"no installed CHILD_SA covers the peer\"",
		       peer);
	evutil_closesocket(fd);
	return 1;
}

static void on_accept_resume(evutil_socket_t fd, short what, void *arg)
{
	struct mllp_in *m = arg;

	(void)fd;
	(void)what;
	for (struct listener *l = m->listeners; l; l = l->next)
		evconnlistener_enable(l->evl);
}

/* Out of descriptors (EMFILE, ENFILE): accepting again at once would spin,
 * so every listener rests for MLLP_IN_ACCEPT_PAUSE_MS; the connections
 * already open go on. */
static void on_accept_error(struct evconnlistener *evl, void *arg)
{
	struct listener *l = arg;
	struct mllp_in *m = l->m;
	static const struct timeval pause = {0, MLLP_IN_ACCEPT_PAUSE_MS * 1000};
	int err = EVUTIL_SOCKET_ERROR();

	(void)evl;
	if (err != EMFILE && err != ENFILE && err != ENOBUFS && err != ENOMEM)
		return;
	m->st.accept_pauses++;
	log_event_peer(LOG_WARN, "accept_paused", "-", " error=\"%s\" pause_ms=%d", strerror(err),
		       MLLP_IN_ACCEPT_PAUSE_MS);
	for (struct listener *x = m->listeners; x; x = x->next)
		evconnlistener_disable(x->evl);
	evtimer_add(m->accept_resume, &pause);
}

static struct conn *conn_new(struct listener *l, evutil_socket_t fd, struct in_integ **cands,
			     size_t n)
{
	struct mllp_in *m = l->m;
	struct conn *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->m = m;
	c->l = l;
	c->fd = fd;
	c->serial = ++m->conn_serial;
	TAILQ_INIT(&c->replies);
	c->mllp = &cands[0]->cfg->mllp;
	c->cands = malloc(n * sizeof(*cands));
	c->df = mllp_deframer_new(c->mllp->max_frame);
	c->rd = event_new(m->base, fd, EV_READ | EV_PERSIST, on_read, c);
	c->wr = event_new(m->base, fd, EV_WRITE | EV_PERSIST, on_write, c);
	c->tm = evtimer_new(m->base, on_timer, c);
	c->more = evtimer_new(m->base, on_more, c);
	if (!c->cands || !c->df || !c->rd || !c->wr || !c->tm || !c->more) {
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
	struct in_integ *cands[CFG_MAX_INTEGRATIONS];
	char addr[MLLP_IN_PEER_MAX], peer[MLLP_IN_PEER_MAX];
	struct source *src = NULL;
	struct conn *c;
	size_t n;
	int one = 1;

	(void)evl;
	peer_text(sa, addr, peer);
	if (gate_refuses(l->m, sa, addr, peer, fd))
		return;
	if ((n = find_candidates(l, sa, cands)) == 0) {
		l->incomplete++;
		log_event_peer(LOG_WARN, "incomplete_integration", addr,
			       " peer=%s reason=\"source not allowed\"", peer);
		evutil_closesocket(fd);
		return;
	}
	if (over_limit(l, addr, peer, fd))
		return;
	if (!(src = source_take(l->m, addr)) || !(c = conn_new(l, fd, cands, n))) {
		if (src)
			source_drop(l->m, src);
		evutil_closesocket(fd);
		return;
	}
	c->src = src;
	memcpy(&c->sa, sa, (size_t)salen < sizeof(c->sa) ? (size_t)salen : sizeof(c->sa));
	memcpy(c->addr, addr, sizeof(addr));
	memcpy(c->peer, peer, sizeof(peer));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	l->accepted++;
	l->m->st.conns_open++;
	log_event(LOG_DEBUG, "conn_open", " peer=%s", peer);
	event_add(c->rd, NULL);
	arm_timer(c);
}

static void conn_free(struct conn *c)
{
	conn_drop_replies(c);
	if (c->rd)
		event_free(c->rd);
	if (c->wr)
		event_free(c->wr);
	if (c->tm)
		event_free(c->tm);
	if (c->more)
		event_free(c->more);
	if (c->out)
		evbuffer_free(c->out);
	mllp_deframer_free(c->df);
	free(c->cands);
	if (c->fd >= 0) {
		LIST_REMOVE(c, link);
		evutil_closesocket(c->fd);
		c->m->st.conns_open--;
		log_event(LOG_DEBUG, "conn_close", " peer=%s", c->peer);
	}
	if (c->src)
		source_drop(c->m, c->src);
	free(c);
}

/* --- the gate changed ------------------------------------------------ */

/* The tunnel behind c's peer is gone: the connection is aborted (RST, the
 * kernel drops what it had not sent yet) rather than closed politely, so
 * that not one more byte of plain MLLP leaves for that peer. */
static void gate_drop(struct conn *c)
{
	static const struct linger abort_now = {.l_onoff = 1, .l_linger = 0};

	assert(!c->in_process);
	c->m->st.closed_gate++;
	log_event_peer(LOG_WARN, "conn_closed_tunnel_down", c->addr,
		       " peer=%s unanswered=%zu action=\"closed; nothing more is sent to it\"",
		       c->peer, c->npending);
	setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &abort_now, sizeof(abort_now));
	conn_free(c);
}

/* Runs from the gate's owner (the supervisor link), never from inside a
 * connection's own callbacks. */
static void on_gate_change(void *arg, const struct gate *g)
{
	struct mllp_in *m = arg;
	struct conn *c, *next;

	for (struct listener *l = m->listeners; l; l = l->next) {
		for (c = LIST_FIRST(&l->conns); c; c = next) {
			next = LIST_NEXT(c, link);
			if (!gate_allows(g, (const struct sockaddr *)&c->sa))
				gate_drop(c);
		}
	}
}

/* --- listeners ------------------------------------------------------- */

static struct listener *listener_for(struct mllp_in *m, const struct cfg_integration *ci)
{
	struct listener *l;

	for (l = m->listeners; l; l = l->next)
		if (l->addr_len == ci->listen_len &&
		    memcmp(&l->addr, &ci->listen, l->addr_len) == 0)
			return l;
	if (!(l = calloc(1, sizeof(*l))))
		return NULL;
	l->m = m;
	l->addr = ci->listen;
	l->addr_len = ci->listen_len;
	if (!(l->integs = calloc(m->cfg->nintegrations, sizeof(*l->integs)))) {
		free(l);
		return NULL;
	}
	l->next = m->listeners;
	m->listeners = l;
	return l;
}

static int listener_bind(struct listener *l)
{
	const char *text = l->integs[0]->cfg->listen_text;

	l->evl = evconnlistener_new_bind(
	    l->m->base, on_accept, l,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC, MLLP_IN_BACKLOG,
	    (struct sockaddr *)&l->addr, (int)l->addr_len);
	if (!l->evl) {
		int err = errno;

		log_event(LOG_ERR, "listen_failed", " listen=%s error=\"%s\"", text, strerror(err));
		return -(err ? err : EADDRNOTAVAIL);
	}
	evconnlistener_set_error_cb(l->evl, on_accept_error);
	log_event(LOG_INFO, "listening", " listen=%s integrations=%zu", text, l->ninteg);
	return 0;
}

static int listeners_start(struct mllp_in *m)
{
	struct listener *l;
	int err;

	for (size_t i = 0; i < m->cfg->nintegrations; i++) {
		/* A pull channel (sftp) has no listener: its files come from
		 * the file channels, not from here. */
		if (m->integs[i].cfg->sftp)
			continue;
		if (!(l = listener_for(m, m->integs[i].cfg)))
			return -ENOMEM;
		l->integs[l->ninteg++] = &m->integs[i];
	}
	for (l = m->listeners; l; l = l->next)
		if ((err = listener_bind(l)) < 0)
			return err;
	return 0;
}

int mllp_in_new(struct event_base *base, const struct cfg *cfg, struct commit *commit,
		struct gate *gate, const struct mllp_in_hooks *hooks, struct mllp_in **out)
{
	struct mllp_in *m = calloc(1, sizeof(*m));
	int err;

	*out = NULL;
	if (!m || !(m->integs = calloc(cfg->nintegrations, sizeof(*m->integs)))) {
		free(m);
		return -ENOMEM;
	}
	m->base = base;
	m->cfg = cfg;
	m->commit = commit;
	m->hooks = *hooks;
	if ((err = gate_watch(gate, on_gate_change, m)) < 0) {
		mllp_in_free(m);
		return err;
	}
	m->gate = gate; /* watched: mllp_in_free() lets go */
	m->started_s = stats_wall_ms() / 1000;
	if (!(m->accept_resume = evtimer_new(base, on_accept_resume, m))) {
		mllp_in_free(m);
		return -ENOMEM;
	}
	for (size_t i = 0; i < cfg->nintegrations; i++) {
		m->integs[i] = (struct in_integ){.m = m, .index = i, .cfg = &cfg->integrations[i]};
		if (cfg->integrations[i].dedup_ms &&
		    dedup_new(cfg->integrations[i].dedup_ms, &m->integs[i].dedup) < 0) {
			mllp_in_free(m);
			return -ENOMEM;
		}
	}
	if ((err = listeners_start(m)) < 0) {
		mllp_in_free(m);
		return err;
	}
	*out = m;
	return 0;
}

void mllp_in_free(struct mllp_in *m)
{
	struct listener *l;

	if (!m)
		return;
	while ((l = m->listeners)) {
		m->listeners = l->next;
		while (!LIST_EMPTY(&l->conns))
			conn_free(LIST_FIRST(&l->conns));
		if (l->evl)
			evconnlistener_free(l->evl);
		free(l->integs);
		free(l);
	}
	if (m->gate)
		gate_unwatch(m->gate, on_gate_change, m);
	for (size_t i = 0; m->integs && i < m->cfg->nintegrations; i++)
		dedup_free(m->integs[i].dedup);
	if (m->accept_resume)
		event_free(m->accept_resume);
	free(m->integs);
	free(m);
}

/* --- snapshots ------------------------------------------------------- */

void mllp_in_integ_stats(const struct mllp_in *m, size_t integ, struct mllp_in_integ_stats *st)
{
	*st = m->integs[integ].st;
}

void mllp_in_stats(const struct mllp_in *m, struct mllp_in_stats *st)
{
	*st = m->st;
}

size_t mllp_in_nlisteners(const struct mllp_in *m)
{
	size_t n = 0;

	for (const struct listener *l = m->listeners; l; l = l->next)
		n++;
	return n;
}

void mllp_in_listener_stats(const struct mllp_in *m, size_t i, struct mllp_in_listener_stats *st)
{
	const struct listener *l = m->listeners;

	while (i-- && l)
		l = l->next;
	*st = (struct mllp_in_listener_stats){0};
	if (l)
		*st = (struct mllp_in_listener_stats){.listen = l->integs[0]->cfg->listen_text,
						      .accepted = l->accepted,
						      .incomplete = l->incomplete};
}
