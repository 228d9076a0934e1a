#include "mllp-bridge/mllp_out.h"

#include <assert.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "mllp-bridge/commit.h"
#include "mllp-bridge/gate.h"
#include "mllp-bridge/hl7.h"
#include "mllp-bridge/lane.h"
#include "mllp-bridge/log.h"
#include "mllp-bridge/mllp.h"
#include "mllp-bridge/stats.h"

#define container_of(p, type, member) ((type *)(void *)((char *)(p)-offsetof(type, member)))

#define HASH_MIN 64 /* buckets of the id table at first; it doubles as rows arrive */

/* Where a destination's head stands. Between a retry and its timer the
 * head belongs to the lane (cur is NULL, phase IDLE). */
enum phase {
	PH_IDLE, /* no head handed to us */
	PH_GATE, /* the head waits for the gate */
	PH_SENT, /* the head is written; its answer is awaited */
};

struct mllp_out_watch {
	LIST_ENTRY(mllp_out_watch) link;
	mllp_out_watch_cb cb;
	void *arg;
};

LIST_HEAD(watch_list, mllp_out_watch);

struct out_msg {
	struct lane_item item;
	TAILQ_ENTRY(out_msg) all; /* the destination's messages, by id */
	struct out_msg *hnext;	  /* the id table's chain */
	struct out_dest *d;
	struct watch_list watches;
	int64_t id, queued_ms;
	int attempts;
	const char *ctl; /* the MSA-2 expected, NUL-terminated, in data[] */
	size_t ctl_len;
	size_t blen;	      /* the body's length, to recognise its spool row */
	size_t mem;	      /* bytes counted in o->mem_bodies: blen when copied, else 0 */
	const uint8_t *frame; /* data[] or loaded; NULL until a spool-held body is read */
	size_t flen;
	uint8_t *loaded; /* the frame built from the spool row, kept until freed */
	uint8_t data[];	 /* the frame when the body was copied, then the MSA-2 */
};

TAILQ_HEAD(msg_list, out_msg);

/* Why a lane set (lane.h) and not a plain FIFO: it already gives what a
 * destination needs and would otherwise be written twice: insertion by row
 * id (a replayed row goes back to its place, never ahead of the head), the
 * head kept across retries with its own retry timer, sends started from
 * the loop and never inside mllp_out_enqueue(), and an assert on a second
 * message in flight. One set per destination with a cap of 1: a head that
 * waits for the gate holds only its own destination. */
struct out_dest {
	struct mllp_out *o;
	const struct cfg_destination *cfg;
	struct lanes *lanes; /* one lane, cap 1 */
	struct msg_list all;
	struct out_msg *cur; /* the head handed to us by the lane */
	enum phase phase;
	struct bufferevent *bev;
	int connected;
	int connect_failures; /* in a row: the backoff of a message that never left */
	struct mllp_deframer *df;
	struct event *ack_tm, *idle_tm;
	struct mllp_out_stats st;
};

struct mllp_out {
	struct event_base *base;
	const struct cfg *cfg;
	struct spool *spool; /* read only: the bodies not copied */
	struct commit *commit;
	struct gate *gate;
	struct out_dest *dests;
	size_t ndest;
	struct out_msg **table; /* id → message */
	size_t nbuckets, nmsgs;
	size_t mem_bodies, mem_max; /* bytes of bodies copied, and their cap */
	int watching;		    /* registered with the gate */
};

/* --- the id table ---------------------------------------------------- */

static size_t bucket(size_t nbuckets, int64_t id)
{
	uint64_t h = (uint64_t)id * 0x9e3779b97f4a7c15ull;

	return (size_t)(h >> 32) & (nbuckets - 1);
}

static struct out_msg *msg_find(const struct mllp_out *o, int64_t id)
{
	struct out_msg *m = o->table[bucket(o->nbuckets, id)];

	while (m && m->id != id)
		m = m->hnext;
	return m;
}

static void table_grow(struct mllp_out *o)
{
	size_t nb = o->nbuckets * 2;
	struct out_msg **t = calloc(nb, sizeof(*t)), *m, *next;

	if (!t)
		return; /* longer chains, still correct */
	for (size_t i = 0; i < o->nbuckets; i++)
		for (m = o->table[i]; m; m = next) {
			next = m->hnext;
			m->hnext = t[bucket(nb, m->id)];
			t[bucket(nb, m->id)] = m;
		}
	free(o->table);
	o->table = t;
	o->nbuckets = nb;
}

static void table_add(struct mllp_out *o, struct out_msg *m)
{
	struct out_msg **b;

	if (o->nmsgs >= o->nbuckets * 2)
		table_grow(o);
	b = &o->table[bucket(o->nbuckets, m->id)];
	m->hnext = *b;
	*b = m;
	o->nmsgs++;
}

static void table_del(struct mllp_out *o, struct out_msg *m)
{
	struct out_msg **p = &o->table[bucket(o->nbuckets, m->id)];

	while (*p != m)
		p = &(*p)->hnext;
	*p = m->hnext;
	o->nmsgs--;
}

/* --- messages and their watchers ------------------------------------- */

static void notify(struct out_msg *m, enum mllp_out_result res, const void *ack, size_t len,
		   const char *err)
{
	struct mllp_out_watch *w;

	while ((w = LIST_FIRST(&m->watches))) {
		LIST_REMOVE(w, link);
		w->cb(w->arg, m->id, res, ack, len, err ? err : "");
		free(w);
	}
}

/* Frees a message that is in no list, with its body's accounting. */
static void msg_destroy(struct out_msg *m)
{
	m->d->o->mem_bodies -= m->mem;
	free(m->loaded);
	free(m);
}

static void msg_free(struct out_msg *m)
{
	struct out_dest *d = m->d;

	notify(m, MLLP_OUT_ABORTED, NULL, 0, "the bridge is shutting down");
	TAILQ_REMOVE(&d->all, m, all);
	d->st.queued--;
	table_del(d->o, m);
	msg_destroy(m);
}

/* The MSA-2 the receiver must answer with: the body's MSH-10, else the
 * row's stored one. Returns 0 with *ctl NULL when there is none. */
static int expected_control_id(const void *body, size_t len, const char *control_id,
			       const char **ctl, size_t *ctl_len)
{
	struct hl7_msh msh = {0};
	size_t clen = control_id ? strlen(control_id) : 0;

	*ctl = NULL;
	*ctl_len = 0;
	if (hl7_payload_kind(body, len) == PAYLOAD_HL7) {
		/* MSH-10 is read before MSH-9 and MSH-12: usable even when
		 * those fail (the API validated the message already). */
		int bad = hl7_parse_msh(body, len, &msh, NULL);

		(void)bad;
		if (msh.control_id.p && msh.control_id.len > 0 &&
		    msh.control_id.len <= HL7_FIELD_MAX) {
			if (clen && (clen != msh.control_id.len ||
				     memcmp(control_id, msh.control_id.p, clen) != 0))
				return -EINVAL;
			*ctl = msh.control_id.p;
			*ctl_len = msh.control_id.len;
			return 0;
		}
	}
	if (clen > SPOOL_TEXT_MAX)
		return -EINVAL;
	if (clen) {
		*ctl = control_id;
		*ctl_len = clen;
	}
	return 0;
}

/* The body is framed into data[] while the copies stay within the cap;
 * past it data[] holds the MSA-2 only and the frame is read from the spool
 * at the message's turn (load_frame()). */
static struct out_msg *msg_new(struct out_dest *d, int64_t id, const void *body, size_t len,
			       const char *ctl, size_t ctl_len, int attempts)
{
	struct mllp_out *o = d->o;
	int copy = len <= o->mem_max && o->mem_bodies <= o->mem_max - len;
	size_t flen = copy ? len + MLLP_OVERHEAD : 0;
	struct out_msg *m = calloc(1, sizeof(*m) + flen + ctl_len + 1);
	char *c;

	if (!m)
		return NULL;
	m->d = d;
	m->id = id;
	m->attempts = attempts > 0 ? attempts : 0;
	m->queued_ms = stats_wall_ms();
	LIST_INIT(&m->watches);
	m->blen = len;
	if (copy) {
		m->flen = mllp_encode(m->data, flen, body, len);
		assert(m->flen == flen);
		m->frame = m->data;
		m->mem = len;
		o->mem_bodies += len;
	}
	c = (char *)m->data + flen;
	if (ctl_len)
		memcpy(c, ctl, ctl_len);
	c[ctl_len] = '\0';
	m->ctl = c;
	m->ctl_len = ctl_len;
	return m;
}

/* In id order, so that a replayed row goes back where it belongs. */
static void list_insert(struct out_dest *d, struct out_msg *m)
{
	struct out_msg *at = TAILQ_LAST(&d->all, msg_list);

	while (at && at->id > m->id)
		at = TAILQ_PREV(at, msg_list, all);
	if (at)
		TAILQ_INSERT_AFTER(&d->all, at, m, all);
	else
		TAILQ_INSERT_HEAD(&d->all, m, all);
	d->st.queued++;
}

int mllp_out_enqueue(struct mllp_out *o, size_t dest, int64_t id, const void *body, size_t len,
		     const char *control_id, int attempts)
{
	struct out_dest *d;
	struct out_msg *m;
	const char *ctl;
	size_t ctl_len;
	int err;

	if (dest >= o->ndest || !o->dests[dest].lanes || (!body && len > 0))
		return -EINVAL; /* no lanes: an sftp destination, which has no sender */
	d = &o->dests[dest];
	if (len > d->cfg->max_frame || len > SPOOL_BODY_MAX)
		return -EMSGSIZE;
	if (msg_find(o, id))
		return -EEXIST;
	if ((err = expected_control_id(body ? body : "", len, control_id, &ctl, &ctl_len)) < 0)
		return err;
	if (!ctl && d->cfg->release != 2)
		return -EINVAL; /* an HL7 ACK could never be matched */
	if (!(m = msg_new(d, id, body ? body : "", len, ctl, ctl_len, attempts)))
		return -ENOMEM;
	if ((err = lanes_push(d->lanes, &m->item, d->cfg->name, NULL, id)) < 0) {
		msg_destroy(m);
		return err;
	}
	table_add(o, m);
	list_insert(d, m);
	return 0;
}

int mllp_out_watch(struct mllp_out *o, int64_t id, mllp_out_watch_cb cb, void *arg,
		   struct mllp_out_watch **handle)
{
	struct out_msg *m = msg_find(o, id);
	struct mllp_out_watch *w;

	*handle = NULL;
	if (!m)
		return -ENOENT;
	if (!(w = calloc(1, sizeof(*w))))
		return -ENOMEM;
	w->cb = cb;
	w->arg = arg;
	LIST_INSERT_HEAD(&m->watches, w, link);
	*handle = w;
	return 0;
}

void mllp_out_unwatch(struct mllp_out_watch *w)
{
	if (!w)
		return;
	LIST_REMOVE(w, link);
	free(w);
}

/* --- the connection -------------------------------------------------- */

static void set_timer(struct event *ev, uint64_t ms)
{
	struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (long)(ms % 1000) * 1000};

	evtimer_add(ev, &tv);
}

/* abort: RST instead of FIN, so that not one more byte leaves (the gate
 * dropped the peer, or the peer's state is unknown after a timeout). */
static void conn_close(struct out_dest *d, int abort)
{
	static const struct linger abort_now = {.l_onoff = 1, .l_linger = 0};
	evutil_socket_t fd;

	if (!d->bev)
		return;
	fd = bufferevent_getfd(d->bev);
	if (abort && fd >= 0)
		setsockopt(fd, SOL_SOCKET, SO_LINGER, &abort_now, sizeof(abort_now));
	bufferevent_free(d->bev);
	d->bev = NULL;
	if (d->connected)
		log_event(LOG_DEBUG, "mllp_out_disconnected", " destination=%s", d->cfg->name);
	d->connected = 0;
	evtimer_del(d->idle_tm);
	mllp_deframer_reset(d->df);
}

/* The connection is open and nothing is in flight. */
static void arm_idle(struct out_dest *d)
{
	if (d->bev)
		set_timer(d->idle_tm, d->cfg->idle_timeout_ms);
}

static void on_read(struct bufferevent *bev, void *arg);
static void on_conn_event(struct bufferevent *bev, short what, void *arg);

/* Callbacks are set only after the connect call: libevent reports a connect
 * that fails at once from inside bufferevent_socket_connect(). */
static int conn_open(struct out_dest *d)
{
	struct bufferevent *bev = bufferevent_socket_new(d->o->base, -1, BEV_OPT_CLOSE_ON_FREE);
	int err;

	if (!bev)
		return -ENOMEM;
	if (bufferevent_socket_connect(bev, (const struct sockaddr *)&d->cfg->addr,
				       (int)d->cfg->addr_len) < 0) {
		err = EVUTIL_SOCKET_ERROR();
		bufferevent_free(bev);
		return err > 0 ? -err : -ECONNREFUSED;
	}
	bufferevent_setcb(bev, on_read, NULL, on_conn_event, d);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
	mllp_deframer_reset(d->df);
	d->bev = bev;
	d->connected = 0;
	return 0;
}

/* --- outcomes -------------------------------------------------------- */

/* The head is finished: the next message may go, on the same connection. */
static void finish(struct out_dest *d, enum mllp_out_result res, const void *ack, size_t len,
		   const char *err)
{
	struct out_msg *m = d->cur;

	d->cur = NULL;
	d->phase = PH_IDLE;
	evtimer_del(d->ack_tm);
	notify(m, res, ack, len, err);
	lanes_done(d->lanes, &m->item);
	msg_free(m);
	arm_idle(d);
}

static void go_dead(struct out_dest *d, const char *err, const void *ack, size_t len)
{
	struct out_msg *m = d->cur;

	d->st.dead++;
	log_event(LOG_ERR, "mllp_out_dead", " destination=%s id=%lld attempts=%d error=\"%s\"",
		  d->cfg->name, (long long)m->id, m->attempts, err);
	/* The same answer the watchers get: what the receiver said to the last
	 * send is what an analyst needs to see in GET /v1/messages/{id}. */
	commit_mark_dead(d->o->commit, m->id, m->attempts, ack, len, err);
	finish(d, MLLP_OUT_DEAD, ack, len, err);
}

/* The head's send failed (m->attempts counts it already): the same message
 * again after the backoff, or dead when it had its attempts. ack is the
 * answer that caused it, if any (for the watchers of a dead message). */
static void retry_after(struct out_dest *d, const char *err, uint64_t delay);

static void retry_or_dead(struct out_dest *d, const char *err, const void *ack, size_t len)
{
	struct out_msg *m = d->cur;

	if (m->attempts >= (int)d->cfg->max_attempts) {
		go_dead(d, err, ack, len);
		return;
	}
	retry_after(d, err, cfg_retry_backoff_ms(&d->o->cfg->retry, m->attempts));
}

/* The head goes again after delay ms, the connection closed meanwhile. */
static void retry_after(struct out_dest *d, const char *err, uint64_t delay)
{
	struct out_msg *m = d->cur;

	d->st.retries++;
	log_event(LOG_WARN, "mllp_out_retry",
		  " destination=%s id=%lld attempts=%d delay_ms=%llu error=\"%s\"", d->cfg->name,
		  (long long)m->id, m->attempts, (unsigned long long)delay, err);
	commit_mark_retry(d->o->commit, m->id, m->attempts, stats_wall_ms() + (int64_t)delay, err);
	d->cur = NULL;
	d->phase = PH_IDLE;
	evtimer_del(d->ack_tm);
	lanes_retry(d->lanes, &m->item, delay);
	arm_idle(d);
}

/* A failure that leaves the connection in an unknown state: closed, and
 * the same message goes again on a new one. ack is the answer that caused
 * it (NULL, 0 when none), kept with the row should the message die of it. */
static void fail_answer(struct out_dest *d, uint64_t *counter, const char *err, const void *ack,
			size_t len)
{
	(*counter)++;
	conn_close(d, 1);
	d->cur->attempts++;
	retry_or_dead(d, err, ack, len);
}

static void fail(struct out_dest *d, uint64_t *counter, const char *err)
{
	fail_answer(d, counter, err, NULL, 0);
}

/* No connection was made (refused, unreachable, the connect hung): the
 * message never left, so it loses no attempt. It waits with the backoff of
 * the failures in a row: a receiver down for a maintenance window must not
 * kill the head of the line and let the next message go first. */
static void fail_unsent(struct out_dest *d, const char *err)
{
	d->st.transport_errors++;
	conn_close(d, 1);
	d->connect_failures++;
	retry_after(d, err, cfg_retry_backoff_ms(&d->o->cfg->retry, d->connect_failures));
}

static void acked(struct out_dest *d, const void *ack, size_t len)
{
	struct out_msg *m = d->cur;

	m->attempts++;
	d->st.acked++;
	log_event(LOG_DEBUG, "mllp_out_acked", " destination=%s id=%lld attempts=%d", d->cfg->name,
		  (long long)m->id, m->attempts);
	commit_mark_acked(d->o->commit, m->id, m->attempts, ack, len);
	finish(d, MLLP_OUT_ACKED, ack, len, NULL);
}

/* AE/AR (or CE/CR): the destination's policy decides. */
static void refused(struct out_dest *d, const char *code, enum cfg_on_reject policy,
		    const void *ack, size_t len)
{
	struct out_msg *m = d->cur;
	char err[MLLP_OUT_ERRTEXT_MAX];

	m->attempts++;
	snprintf(err, sizeof(err), "the receiver answered %s", code);
	if (policy == CFG_REJECT_RETRY) {
		retry_or_dead(d, err, ack, len);
		return;
	}
	d->st.rejected++;
	log_event(LOG_WARN, "mllp_out_rejected", " destination=%s id=%lld attempts=%d code=%s",
		  d->cfg->name, (long long)m->id, m->attempts, code);
	commit_mark_rejected(d->o->commit, m->id, m->attempts, ack, len, err);
	finish(d, MLLP_OUT_REJECTED, ack, len, err);
}

static int code_is(const struct hl7_str *s, const char *a, const char *b)
{
	return s->p && s->len == 2 && (memcmp(s->p, a, 2) == 0 || memcmp(s->p, b, 2) == 0);
}

static void log_mismatch(struct out_dest *d, const struct hl7_str *got)
{
	char want[LOG_PHI_FIELD_MAX], have[LOG_PHI_FIELD_MAX];

	if (!log_phi_enabled()) {
		log_event(LOG_WARN, "mllp_out_ack_mismatch", " destination=%s id=%lld",
			  d->cfg->name, (long long)d->cur->id);
		return;
	}
	log_event(LOG_WARN, "mllp_out_ack_mismatch", " destination=%s id=%lld msh10=%s msa2=%s",
		  d->cfg->name, (long long)d->cur->id,
		  log_safe(want, sizeof(want), d->cur->ctl, (unsigned)d->cur->ctl_len),
		  log_safe(have, sizeof(have), got->p ? got->p : "", (unsigned)got->len));
}

/* A release 1 answer to the head. */
static void on_hl7_ack(struct out_dest *d, const uint8_t *ack, size_t len)
{
	const struct cfg_destination *c = d->cfg;
	struct hl7_str code, ctl;

	if (hl7_parse_msa(ack, len, &code, &ctl) < 0) {
		log_event(LOG_WARN, "mllp_out_bad_ack", " destination=%s id=%lld", c->name,
			  (long long)d->cur->id);
		fail_answer(d, &d->st.ack_errors, "the answer is not an HL7 ACK (no MSA)", ack,
			    len);
	} else if (!ctl.p || ctl.len != d->cur->ctl_len ||
		   memcmp(ctl.p, d->cur->ctl, ctl.len) != 0) {
		log_mismatch(d, &ctl);
		fail_answer(d, &d->st.ack_errors, "the ACK's MSA-2 is not the message's MSH-10",
			    ack, len);
	} else if (code_is(&code, "AA", "CA")) {
		acked(d, ack, len);
	} else if (code_is(&code, "AE", "CE")) {
		refused(d, code.p[0] == 'A' ? "AE" : "CE", c->on_ae, ack, len);
	} else if (code_is(&code, "AR", "CR")) {
		refused(d, code.p[0] == 'A' ? "AR" : "CR", c->on_ar, ack, len);
	} else {
		log_event(LOG_WARN, "mllp_out_bad_ack", " destination=%s id=%lld", c->name,
			  (long long)d->cur->id);
		fail_answer(d, &d->st.ack_errors, "the ACK's MSA-1 is not AA, AE, AR, CA, CE or CR",
			    ack, len);
	}
}

/* An answer nobody asked for: the receiver and we disagree on where we
 * are, so the connection goes (a message in flight is sent again). */
static void stray(struct out_dest *d, const char *what)
{
	log_event(LOG_WARN, "mllp_out_unexpected", " destination=%s what=\"%s\"", d->cfg->name,
		  what);
	if (d->phase == PH_SENT)
		fail(d, &d->st.ack_errors, what);
	else
		conn_close(d, 1);
}

static void on_frame_event(struct out_dest *d, enum mllp_event ev, const struct mllp_frame *f)
{
	static const uint8_t r2_ack = MLLP_R2_ACK, r2_nak = MLLP_R2_NAK;
	int r2 = d->cfg->release == 2;

	if (ev == MLLP_OVERSIZE) {
		stray(d, "an answer longer than the ACK limit");
	} else if (ev == MLLP_FRAME && r2) {
		/* An application ACK after the commit block: not ours to judge. */
		log_event(LOG_DEBUG, "mllp_out_frame_ignored", " destination=%s", d->cfg->name);
	} else if (d->phase != PH_SENT) {
		stray(d, "an answer while no message is in flight");
	} else if (ev == MLLP_FRAME) {
		on_hl7_ack(d, f->data, f->len);
	} else if (!r2) {
		stray(d, "a release 2 commit block on a release 1 destination");
	} else if (ev == MLLP_COMMIT_ACK) {
		acked(d, &r2_ack, 1);
	} else {
		d->st.ack_errors++;
		d->cur->attempts++;
		retry_or_dead(d, "the receiver answered with a commit NAK", &r2_nak, 1);
	}
}

static void on_read(struct bufferevent *bev, void *arg)
{
	struct out_dest *d = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	uint8_t buf[MLLP_OUT_READ_CHUNK];
	struct mllp_frame f;
	enum mllp_event ev;
	int n;

	/* Drained after every chunk: at most one partial answer is held. */
	while (d->bev == bev && (n = evbuffer_remove(in, buf, sizeof(buf))) > 0) {
		if (mllp_deframer_feed(d->df, buf, (size_t)n) < 0) {
			stray(d, "out of memory for the answer");
			return;
		}
		while (d->bev == bev && (ev = mllp_deframer_next(d->df, &f)) != MLLP_NEED_MORE)
			on_frame_event(d, ev, &f);
	}
}

static void on_conn_event(struct bufferevent *bev, short what, void *arg)
{
	struct out_dest *d = arg;
	char err[MLLP_OUT_ERRTEXT_MAX];
	int e = EVUTIL_SOCKET_ERROR(), one = 1;

	if (what & BEV_EVENT_CONNECTED) {
		d->connected = 1;
		d->connect_failures = 0;
		d->st.connects++;
		setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		log_event(LOG_DEBUG, "mllp_out_connected", " destination=%s address=%s",
			  d->cfg->name, d->cfg->address_text);
		return;
	}
	if (!d->connected)
		snprintf(err, sizeof(err), "connect to %s failed: %s", d->cfg->address_text,
			 (what & BEV_EVENT_ERROR) && e ? strerror(e) : "closed");
	else if (what & BEV_EVENT_ERROR)
		snprintf(err, sizeof(err), "connection failed: %s", e ? strerror(e) : "error");
	else
		snprintf(err, sizeof(err), "the receiver closed the connection");
	if (d->phase == PH_SENT && !d->connected) {
		fail_unsent(d, err);
	} else if (d->phase == PH_SENT) {
		fail(d, &d->st.transport_errors, err);
	} else {
		log_event(LOG_INFO, "mllp_out_closed", " destination=%s reason=\"%s\"",
			  d->cfg->name, err);
		conn_close(d, 0);
	}
}

static void on_ack_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct out_dest *d = arg;

	(void)fd;
	(void)what;
	if (d->phase != PH_SENT)
		return;
	if (!d->connected) {
		/* The connect itself hangs (a SYN nobody answers): the same
		 * deadline, but a transport failure, not a silent receiver. */
		char err[MLLP_OUT_ERRTEXT_MAX];

		snprintf(err, sizeof(err), "connect to %s timed out", d->cfg->address_text);
		fail_unsent(d, err);
		return;
	}
	log_event(LOG_WARN, "mllp_out_ack_timeout", " destination=%s id=%lld ack_timeout_ms=%llu",
		  d->cfg->name, (long long)d->cur->id, (unsigned long long)d->cfg->ack_timeout_ms);
	fail(d, &d->st.ack_timeouts, "no ACK within ack_timeout");
}

static void on_idle(evutil_socket_t fd, short what, void *arg)
{
	struct out_dest *d = arg;

	(void)fd;
	(void)what;
	if (d->phase == PH_SENT || !d->bev)
		return;
	d->st.idle_closes++;
	log_event(LOG_INFO, "mllp_out_idle_close", " destination=%s", d->cfg->name);
	conn_close(d, 0);
}

/* --- sending --------------------------------------------------------- */

/* Sends the head, or parks it until the gate allows its destination. */
static void dest_try(struct out_dest *d)
{
	struct out_msg *m = d->cur;
	char err[MLLP_OUT_ERRTEXT_MAX];
	int e;

	if (!gate_allows(d->o->gate, (const struct sockaddr *)&d->cfg->addr)) {
		if (d->phase != PH_GATE) {
			d->st.gate_waits++;
			log_event(LOG_INFO, "mllp_out_gate_wait", " destination=%s id=%lld",
				  d->cfg->name, (long long)m->id);
		}
		d->phase = PH_GATE;
		conn_close(d, 1); /* the watcher closed it already; never rely on it */
		return;
	}
	d->phase = PH_SENT; /* from here every failure is an attempt */
	if (!d->bev && (e = conn_open(d)) < 0) {
		snprintf(err, sizeof(err), "connect to %s failed: %s", d->cfg->address_text,
			 strerror(-e));
		fail_unsent(d, err);
		return;
	}
	if (bufferevent_write(d->bev, m->frame, m->flen) < 0) {
		fail(d, &d->st.transport_errors, "out of memory");
		return;
	}
	d->st.sent++;
	evtimer_del(d->idle_tm);
	set_timer(d->ack_tm, d->cfg->ack_timeout_ms);
}

/* Whether spool row r (body read with it) is still the message queued as
 * m: the same destination, length and MSA-2 to expect. Row ids are never
 * reused (AUTOINCREMENT), so this guards a changed row, not a new one. */
static int row_is_msg(const struct out_msg *m, const struct spool_row *r, const void *body)
{
	const char *ctl;
	size_t ctl_len;

	if (r->channel != SPOOL_OUT || r->len != m->blen || !r->integration ||
	    strcmp(r->integration, m->d->cfg->name) != 0)
		return 0;
	if (expected_control_id(body, r->len, m->ctl_len ? m->ctl : NULL, &ctl, &ctl_len) < 0)
		return 0;
	return ctl_len == m->ctl_len && (ctl_len == 0 || memcmp(ctl, m->ctl, ctl_len) == 0);
}

/* Reads a body that was not copied and frames it as msg_new() would have.
 * The frame is kept until the message is freed rather than read again for
 * each send: the head stays the head until it is finished (lane.h), so
 * that is one frame per destination at most, and every resend (ack
 * timeout, AE retry, gate) carries the bytes of the first send. Returns 0,
 * -ENOENT (the row is gone), -EBADMSG (it is not this message any more;
 * spool_get() itself never says that), another spool_get() error, or
 * -ENOMEM. */
static int load_frame(struct out_msg *m)
{
	struct spool_row r = {0};
	void *body = NULL;
	size_t flen = m->blen + MLLP_OVERHEAD;
	int err = spool_get(m->d->o->spool, m->id, &r, &body);

	if (err == 0 && !row_is_msg(m, &r, body ? body : ""))
		err = -EBADMSG;
	if (err == 0 && !(m->loaded = malloc(flen)))
		err = -ENOMEM;
	if (err == 0) {
		m->flen = mllp_encode(m->loaded, flen, body ? body : "", m->blen);
		assert(m->flen == flen);
		m->frame = m->loaded;
	}
	spool_row_clear(&r);
	free(body);
	return err;
}

/* The head's body could not be read: it is never sent, and never replaced
 * by anything else. A row that is gone (an operator removed it) or is no
 * longer this message is skipped; a failed read goes dead, so that the row
 * shows it and `spool replay` can queue it again. Either way the next
 * message goes: the lane is not held by a body that cannot be had. */
static void head_unreadable(struct out_dest *d, int err)
{
	const char *why = err == -ENOENT ? "the row is gone" : "the row is not the message queued";
	char text[MLLP_OUT_ERRTEXT_MAX];

	if (err != -ENOENT && err != -EBADMSG) {
		snprintf(text, sizeof(text), "the body could not be read from the spool: %s",
			 strerror(-err));
		go_dead(d, text, NULL, 0);
		return;
	}
	log_event(LOG_WARN, "spool_row_missing", " destination=%s id=%lld error=\"%s\"",
		  d->cfg->name, (long long)d->cur->id, why);
	finish(d, MLLP_OUT_ABORTED, NULL, 0, why);
}

static void on_send(void *arg, struct lane_item *it)
{
	struct out_dest *d = arg;
	int err;

	assert(!d->cur && d->phase == PH_IDLE);
	d->cur = container_of(it, struct out_msg, item);
	if (!d->cur->frame && (err = load_frame(d->cur)) < 0) {
		head_unreadable(d, err);
		return;
	}
	dest_try(d);
}

/* From the gate's owner, never from inside our own callbacks. */
static void on_gate_change(void *arg, const struct gate *g)
{
	struct mllp_out *o = arg;

	for (size_t i = 0; i < o->ndest; i++) {
		struct out_dest *d = &o->dests[i];
		int allowed;

		if (!d->lanes) /* an sftp destination: no sender */
			continue;
		allowed = gate_allows(g, (const struct sockaddr *)&d->cfg->addr);

		if (!allowed && d->bev) {
			d->st.gate_closes++;
			log_event(LOG_WARN, "mllp_out_closed_tunnel_down",
				  " destination=%s in_flight=%d", d->cfg->name,
				  d->phase == PH_SENT);
			conn_close(d, 1);
			if (d->phase == PH_SENT) {
				/* Sent again once the tunnel is back: no attempt lost. */
				evtimer_del(d->ack_tm);
				d->phase = PH_GATE;
				d->st.gate_waits++;
			}
		} else if (allowed && d->phase == PH_GATE) {
			dest_try(d);
		}
	}
}

/* --- life cycle ------------------------------------------------------ */

static int dest_init(struct mllp_out *o, struct out_dest *d, const struct cfg_destination *c)
{
	int err;

	d->o = o;
	d->cfg = c;
	TAILQ_INIT(&d->all);
	if ((err = lanes_new(o->base, 1, on_send, d, &d->lanes)) < 0)
		return err;
	d->df = mllp_deframer_new(MLLP_OUT_ACK_MAX);
	d->ack_tm = evtimer_new(o->base, on_ack_timeout, d);
	d->idle_tm = evtimer_new(o->base, on_idle, d);
	return d->df && d->ack_tm && d->idle_tm ? 0 : -ENOMEM;
}

int mllp_out_new(struct event_base *base, const struct cfg *cfg, struct spool *spool,
		 struct commit *commit, struct gate *gate, struct mllp_out **out)
{
	struct mllp_out *o;
	int err = 0;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (!base || !cfg || !spool || !commit || !gate)
		return -EINVAL;
	if (!(o = calloc(1, sizeof(*o))))
		return -ENOMEM;
	*o = (struct mllp_out){.base = base,
			       .cfg = cfg,
			       .spool = spool,
			       .commit = commit,
			       .gate = gate,
			       .ndest = cfg->ndestinations,
			       .nbuckets = HASH_MIN,
			       .mem_max = MLLP_OUT_MEM_BODIES_MAX};
	o->table = calloc(o->nbuckets, sizeof(*o->table));
	o->dests = calloc(o->ndest ? o->ndest : 1, sizeof(*o->dests));
	if (!o->table || !o->dests)
		err = -ENOMEM;
	for (size_t i = 0; i < o->ndest && err == 0; i++) {
		/* An sftp destination (a push channel) gets no sender: its slot
		 * keeps the indexes of cfg->destinations (mllp_out_stats() gives
		 * zeros for it), and mllp_out_dest() does not name it, so that
		 * nothing is ever queued here for it. */
		if (cfg->destinations[i].sftp)
			o->dests[i] = (struct out_dest){.o = o, .cfg = &cfg->destinations[i]};
		else
			err = dest_init(o, &o->dests[i], &cfg->destinations[i]);
	}
	if (err == 0 && (err = gate_watch(gate, on_gate_change, o)) == 0)
		o->watching = 1;
	if (err < 0) {
		mllp_out_free(o);
		return err;
	}
	*out = o;
	return 0;
}

static void drop(void *arg, struct lane_item *it)
{
	(void)arg;
	msg_free(container_of(it, struct out_msg, item));
}

void mllp_out_free(struct mllp_out *o)
{
	if (!o)
		return;
	if (o->watching)
		gate_unwatch(o->gate, on_gate_change, o);
	for (size_t i = 0; o->dests && i < o->ndest; i++) {
		struct out_dest *d = &o->dests[i];

		conn_close(d, 0);
		d->cur = NULL;
		if (d->lanes)
			lanes_free(d->lanes, drop);
		if (d->ack_tm)
			event_free(d->ack_tm);
		if (d->idle_tm)
			event_free(d->idle_tm);
		mllp_deframer_free(d->df);
	}
	free(o->dests);
	free(o->table);
	free(o);
}

/* An sftp destination is not named here (-ENOENT): it has no sender. */
int mllp_out_dest(const struct mllp_out *o, const char *name)
{
	for (size_t i = 0; i < o->ndest; i++)
		if (!o->dests[i].cfg->sftp && strcmp(o->dests[i].cfg->name, name) == 0)
			return (int)i;
	return -ENOENT;
}

size_t mllp_out_mem_bodies(const struct mllp_out *o)
{
	return o->mem_bodies;
}

void mllp_out_test_set_mem_max(struct mllp_out *o, size_t bytes)
{
	o->mem_max = bytes;
}

void mllp_out_stats(const struct mllp_out *o, size_t dest, struct mllp_out_stats *st)
{
	const struct out_dest *d = &o->dests[dest];
	const struct out_msg *first = TAILQ_FIRST(&d->all);

	*st = d->st;
	st->in_flight = d->phase == PH_SENT;
	st->in_flight_id = st->in_flight && d->cur ? d->cur->id : 0;
	st->connected = d->bev && d->connected;
	st->waiting_gate = d->phase == PH_GATE;
	st->oldest_ms = first ? first->queued_ms : 0;
}
