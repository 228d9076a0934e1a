/*
 * The MLLP senders against a real receiver: a loopback listener inside the
 * test (on the same event loop) that records every frame with the
 * connection it came on, answers each one as a script says (AA, AE, AR, a
 * wrong MSA-2, nothing, a close), and flags any message that arrives while
 * the one before it is still unanswered. Rows live in a real spool in a
 * temporary directory, written through the group commit; the gate is open
 * or closed as each test needs. Timeouts are short so that each test runs
 * in well under a few seconds.
 */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <ftw.h>
#include <netinet/in.h>
#include <sqlite3.h>
#include <stdio.h>
#include <sys/socket.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "mllp-bridge/commit.h"
#include "mllp-bridge/gate.h"
#include "mllp-bridge/hl7.h"
#include "mllp-bridge/log.h"
#include "mllp-bridge/mllp.h"
#include "mllp-bridge/mllp_out.h"
#include "mllp-bridge/spool.h"

#define N_OF(a)	    (sizeof(a) / sizeof((a)[0]))
#define MAX_FRAMES  64
#define MAX_CONNS   16
#define MAX_ACTIONS 16
#define CTL_MAX	    32
#define BODY_MAX    256 /* the bodies message() writes fit */

/* ---- the receiver --------------------------------------------------- */

enum action {
	ACT_AA = 0, /* the default once the script ends */
	ACT_AE,
	ACT_AR,
	ACT_WRONG,    /* AA with another MSA-2 */
	ACT_NONE,     /* no answer at all */
	ACT_CLOSE,    /* close the connection without answering */
	ACT_LATE,     /* AA after RECV_DELAY_MS */
	ACT_NAK,      /* release 2 commit NAK */
	ACT_AA_CLOSE, /* AA, then close the connection */
	ACT_AA_TWICE, /* AA twice: the second answers nothing */
};

#define RECV_DELAY_MS 40

struct rconn {
	struct bufferevent *bev;
	struct mllp_deframer *df;
	struct event *late;
	char late_ctl[CTL_MAX];
	int closed; /* by the sender (EOF) */
};

static struct recv {
	struct evconnlistener *lis;
	struct sockaddr_in addr;
	struct rconn conns[MAX_CONNS];
	int nconns;
	struct {
		char ctl[CTL_MAX];
		int conn;
		char body[BODY_MAX]; /* the frame's content, byte for byte */
		size_t len;
	} frames[MAX_FRAMES];
	int nframes;
	enum action script[MAX_ACTIONS];
	int nscript;
	char outstanding[CTL_MAX]; /* a message sent and not finally answered */
	int violations;		   /* a new message while another was outstanding */
	int eofs;
	int r2; /* answer AA as a release 2 commit ACK block */
} R;

static struct event_base *g_base;
static struct event *g_tick;
static char g_dir[64];
static struct spool *g_spool;
static struct commit *g_commit;
static struct gate *g_gate;
static struct mllp_out *g_out;
static struct cfg g_cfg;
static struct cfg_destination g_dest;

/* The answer to frame number nframe (from 1): each differs by its MSH-10,
 * so that a test can tell which answer was kept. */
static int ack_text(char *buf, size_t cap, int nframe, const char *code, const char *ctl)
{
	return snprintf(buf, cap,
			"MSH|^~\\&|LIS|HOSP|EDGE|CLOUD|20260101000000||ACK^A01^ACK|R%d|P|2.5.1\r"
			"MSA|%s|%s\r",
			nframe, code, ctl);
}

static void send_ack(struct rconn *c, const char *code, const char *ctl)
{
	char ack[256];
	uint8_t frame[sizeof(ack) + MLLP_OVERHEAD];
	int n = ack_text(ack, sizeof(ack), R.nframes, code, ctl);
	size_t len = mllp_encode(frame, sizeof(frame), ack, (size_t)n);

	ck_assert_uint_gt(len, 0);
	/* Straight to the socket: a close right after must not lose it. */
	ck_assert_int_eq(send(bufferevent_getfd(c->bev), frame, len, 0), (ssize_t)len);
}

static void on_late(evutil_socket_t fd, short what, void *arg)
{
	struct rconn *c = arg;

	(void)fd;
	(void)what;
	R.outstanding[0] = '\0';
	send_ack(c, "AA", c->late_ctl);
}

static void rconn_close(struct rconn *c)
{
	if (!c->bev)
		return;
	bufferevent_free(c->bev);
	c->bev = NULL;
	event_del(c->late);
}

static void on_frame(struct rconn *c, const uint8_t *data, size_t len)
{
	static const uint8_t r2_ack[] = {MLLP_SB, MLLP_R2_ACK, MLLP_EB, MLLP_CR};
	static const uint8_t r2_nak[] = {MLLP_SB, MLLP_R2_NAK, MLLP_EB, MLLP_CR};
	struct hl7_msh msh;
	enum action a;
	char ctl[CTL_MAX];

	ck_assert_int_eq(hl7_parse_msh(data, len, &msh, NULL), 0);
	snprintf(ctl, sizeof(ctl), "%.*s", (int)msh.control_id.len, msh.control_id.p);
	/* The same message again is a resend; another one is a violation. */
	if (R.outstanding[0] && strcmp(R.outstanding, ctl) != 0)
		R.violations++;
	ck_assert_int_lt(R.nframes, MAX_FRAMES);
	a = R.nframes < R.nscript ? R.script[R.nframes] : ACT_AA;
	strcpy(R.frames[R.nframes].ctl, ctl);
	R.frames[R.nframes].conn = (int)(c - R.conns);
	ck_assert_uint_le(len, BODY_MAX);
	memcpy(R.frames[R.nframes].body, data, len);
	R.frames[R.nframes].len = len;
	R.nframes++;
	strcpy(R.outstanding, ctl);
	switch (a) {
	case ACT_AA:
		R.outstanding[0] = '\0';
		if (R.r2)
			bufferevent_write(c->bev, r2_ack, sizeof(r2_ack));
		else
			send_ack(c, "AA", ctl);
		break;
	case ACT_NAK:
		bufferevent_write(c->bev, r2_nak, sizeof(r2_nak));
		break;
	case ACT_AE:
		send_ack(c, "AE", ctl);
		break;
	case ACT_AR:
		R.outstanding[0] = '\0';
		send_ack(c, "AR", ctl);
		break;
	case ACT_WRONG:
		send_ack(c, "AA", "NOT-THIS-ONE");
		break;
	case ACT_NONE:
		break;
	case ACT_CLOSE:
		rconn_close(c);
		break;
	case ACT_AA_CLOSE:
		R.outstanding[0] = '\0';
		send_ack(c, "AA", ctl);
		rconn_close(c);
		break;
	case ACT_AA_TWICE:
		R.outstanding[0] = '\0';
		send_ack(c, "AA", ctl);
		send_ack(c, "AA", ctl);
		break;
	case ACT_LATE: {
		struct timeval tv = {0, RECV_DELAY_MS * 1000};

		strcpy(c->late_ctl, ctl);
		evtimer_add(c->late, &tv);
		break;
	}
	}
}

static void on_rread(struct bufferevent *bev, void *arg)
{
	struct rconn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	uint8_t buf[4096];
	struct mllp_frame f;
	int n;

	while (c->bev && (n = evbuffer_remove(in, buf, sizeof(buf))) > 0) {
		ck_assert_int_eq(mllp_deframer_feed(c->df, buf, (size_t)n), 0);
		while (c->bev && mllp_deframer_next(c->df, &f) == MLLP_FRAME)
			on_frame(c, f.data, f.len);
	}
}

static void on_revent(struct bufferevent *bev, short what, void *arg)
{
	struct rconn *c = arg;

	(void)bev;
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
		R.eofs++;
		c->closed = 1;
		rconn_close(c);
	}
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len,
		      void *arg)
{
	struct rconn *c = &R.conns[R.nconns++];

	(void)l;
	(void)sa;
	(void)len;
	(void)arg;
	ck_assert_int_le(R.nconns, MAX_CONNS);
	ck_assert_ptr_nonnull(c->df = mllp_deframer_new(1 << 20));
	ck_assert_ptr_nonnull(c->late = evtimer_new(g_base, on_late, c));
	c->bev = bufferevent_socket_new(g_base, fd, BEV_OPT_CLOSE_ON_FREE);
	ck_assert_ptr_nonnull(c->bev);
	bufferevent_setcb(c->bev, on_rread, NULL, on_revent, c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

static void recv_start(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(R.addr);

	R.lis = evconnlistener_new_bind(g_base, on_accept, NULL,
					LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 16,
					(struct sockaddr *)&sa, sizeof(sa));
	ck_assert_ptr_nonnull(R.lis);
	ck_assert_int_eq(
	    getsockname(evconnlistener_get_fd(R.lis), (struct sockaddr *)&R.addr, &len), 0);
}

static void recv_stop(void)
{
	for (int i = 0; i < R.nconns; i++) {
		rconn_close(&R.conns[i]);
		event_free(R.conns[i].late);
		mllp_deframer_free(R.conns[i].df);
	}
	if (R.lis)
		evconnlistener_free(R.lis);
}

static void script(int n, const enum action *a)
{
	ck_assert_int_le(n, MAX_ACTIONS);
	memcpy(R.script, a, (size_t)n * sizeof(*a));
	R.nscript = n;
}

/* ---- watchers ------------------------------------------------------- */

static struct {
	int calls;
	int64_t id;
	enum mllp_out_result result;
	char ack[256];
	char error[MLLP_OUT_ERRTEXT_MAX];
} W;

static void on_watch(void *arg, int64_t id, enum mllp_out_result result, const void *ack,
		     size_t len, const char *error)
{
	(void)arg;
	W.calls++;
	W.id = id;
	W.result = result;
	snprintf(W.ack, sizeof(W.ack), "%.*s", (int)len, ack ? (const char *)ack : "");
	snprintf(W.error, sizeof(W.error), "%s", error);
}

/* ---- fixture -------------------------------------------------------- */

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	(void)st;
	(void)flag;
	(void)f;
	return remove(p);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
}

/* A loop that never blocks for long, whatever the test waits for. */
static void base_setup(void)
{
	static const struct timeval tick = {0, 10 * 1000};
	char db[96];

	memset(&R, 0, sizeof(R));
	memset(&W, 0, sizeof(W));
	log_init(LOG_ERR, 0);
	strcpy(g_dir, "/tmp/mllp-out-test-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(g_dir));
	snprintf(db, sizeof(db), "%s/spool.db", g_dir);
	ck_assert_ptr_nonnull(g_base = event_base_new());
	ck_assert_ptr_nonnull(g_tick = event_new(g_base, -1, EV_PERSIST, on_tick, NULL));
	ck_assert_int_eq(event_add(g_tick, &tick), 0);
	ck_assert_int_eq(spool_open(db, &g_spool), 0);
	ck_assert_int_eq(commit_new(g_base, g_spool, 7 * 86400000ull, &g_commit), 0);
	recv_start();
	g_dest = (struct cfg_destination){.name = "lis",
					  .address_text = "127.0.0.1",
					  .ack_timeout_ms = 300,
					  .idle_timeout_ms = 10000,
					  .on_ae = CFG_REJECT_RETRY,
					  .on_ar = CFG_REJECT_DEAD,
					  .max_attempts = 5,
					  .release = 1,
					  .max_frame = 1 << 20};
	memcpy(&g_dest.addr, &R.addr, sizeof(R.addr));
	g_dest.addr_len = sizeof(R.addr);
	g_cfg = (struct cfg){.retry = {.initial_ms = 50, .max_ms = 200},
			     .destinations = &g_dest,
			     .ndestinations = 1};
}

static void setup_open(void)
{
	base_setup();
	ck_assert_int_eq(gate_new(1, &g_gate), 0);
}

static void setup_closed(void)
{
	base_setup();
	ck_assert_int_eq(gate_new(0, &g_gate), 0);
}

/* Each test tunes g_dest first, then starts the senders. */
static void start(void)
{
	ck_assert_int_eq(mllp_out_new(g_base, &g_cfg, g_spool, g_commit, g_gate, &g_out), 0);
}

static void teardown(void)
{
	mllp_out_free(g_out);
	g_out = NULL;
	recv_stop();
	commit_drain(g_commit);
	commit_free(g_commit);
	spool_close(g_spool);
	gate_free(g_gate);
	event_free(g_tick);
	event_base_free(g_base);
	nftw(g_dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

/* ---- helpers -------------------------------------------------------- */

static void run_ms(int ms)
{
	double end = stats_now() + ms / 1000.0;

	while (stats_now() < end)
		event_base_loop(g_base, EVLOOP_ONCE);
}

/* Runs the loop until *v >= want, at most ms; returns whether it got there. */
static int run_until(const int *v, int want, int ms)
{
	double end = stats_now() + ms / 1000.0;

	while (*v < want && stats_now() < end)
		event_base_loop(g_base, EVLOOP_ONCE);
	return *v >= want;
}

static int g_committed;

static void on_committed(void *arg, int err, int64_t id, const struct spool_new *m)
{
	(void)m;
	ck_assert_int_eq(err, 0);
	*(int64_t *)arg = id;
	g_committed++;
}

static void message(char *buf, size_t cap, int n)
{
	snprintf(buf, cap,
		 "MSH|^~\\&|CLOUD|EDGE|LIS|HOSP|20260101000000||ADT^A01^ADT_A01|MSG%03d|P|2.5.1\r"
		 "PID|1||%d^^^HOSP^MR||DOE^JANE\r",
		 n, 1000 + n);
}

/* Stores message n as an outbound row, then queues it for "lis". */
static int64_t post(int n)
{
	char body[256], ctl[16];
	int64_t id = 0;
	int want = g_committed + 1;

	message(body, sizeof(body), n);
	snprintf(ctl, sizeof(ctl), "MSG%03d", n);
	ck_assert_int_eq(
	    commit_stage(g_commit,
			 &(struct spool_new){.integration = "lis",
					     .sender = "api-client",
					     .content_type = "x-application/hl7-v2+er7",
					     .control_id = ctl,
					     .idem_key = ctl,
					     .lane = "lis",
					     .lane2 = "",
					     .received_ms = stats_wall_ms(),
					     .body = body,
					     .len = strlen(body),
					     .channel = SPOOL_OUT},
			 on_committed, &id),
	    0);
	ck_assert(run_until(&g_committed, want, 2000));
	ck_assert_int_eq(mllp_out_enqueue(g_out, 0, id, body, strlen(body), ctl, 0), 0);
	return id;
}

static int row_state(int64_t id, struct spool_row *r)
{
	commit_drain(g_commit);
	ck_assert_int_eq(spool_get(g_spool, id, r, NULL), 0);
	return (int)r->state;
}

static struct mllp_out_stats stats(void)
{
	struct mllp_out_stats st;

	mllp_out_stats(g_out, 0, &st);
	return st;
}

/* Finished messages as an int the loop can wait on. */
static int g_done;

static void wait_done(int n, int ms)
{
	struct mllp_out_stats st;
	double end = stats_now() + ms / 1000.0;

	do {
		event_base_loop(g_base, EVLOOP_ONCE);
		st = stats();
		g_done = (int)(st.acked + st.rejected + st.dead);
	} while (g_done < n && stats_now() < end);
	ck_assert_int_eq(g_done, n);
}

static void wait_disconnected(int ms)
{
	double end = stats_now() + ms / 1000.0;

	while (stats().connected && stats_now() < end)
		event_base_loop(g_base, EVLOOP_ONCE);
	ck_assert_int_eq(stats().connected, 0);
}

static void assert_frames(const char *const *want, int n)
{
	ck_assert_int_eq(R.nframes, n);
	for (int i = 0; i < n; i++)
		ck_assert_str_eq(R.frames[i].ctl, want[i]);
}

/* Frame i carried message n, byte for byte. */
static void assert_frame_is(int i, int n)
{
	char body[BODY_MAX];

	message(body, sizeof(body), n);
	ck_assert_uint_eq(R.frames[i].len, strlen(body));
	ck_assert_msg(memcmp(R.frames[i].body, body, R.frames[i].len) == 0,
		      "frame %d is not message %d byte for byte", i, n);
}

/* An operator's change to a row behind the bridge's back, on a connection
 * of its own as `sqlite3 spool.db` would make it. body NULL deletes the
 * row; otherwise it becomes the row's body. */
static void change_row(int64_t id, const char *body)
{
	char db[96];
	sqlite3 *h;
	sqlite3_stmt *st;
	const char *sql = body ? "UPDATE messages SET body = ?2 WHERE id = ?1"
			       : "DELETE FROM messages WHERE id = ?1";

	commit_drain(g_commit);
	snprintf(db, sizeof(db), "%s/spool.db", g_dir);
	ck_assert_int_eq(sqlite3_open(db, &h), SQLITE_OK);
	sqlite3_busy_timeout(h, 2000);
	ck_assert_int_eq(sqlite3_prepare_v2(h, sql, -1, &st, NULL), SQLITE_OK);
	sqlite3_bind_int64(st, 1, id);
	if (body)
		sqlite3_bind_blob(st, 2, body, (int)strlen(body), SQLITE_TRANSIENT);
	ck_assert_int_eq(sqlite3_step(st), SQLITE_DONE);
	ck_assert_int_eq(sqlite3_changes(h), 1);
	sqlite3_finalize(st);
	sqlite3_close(h);
}

/* ---- tests ---------------------------------------------------------- */

/* Five messages, each ACKed late: the receiver never sees the next one
 * before its ACK of the one before, and all come on one connection. */
START_TEST(test_in_order_one_in_flight)
{
	static const enum action late[] = {ACT_LATE, ACT_LATE, ACT_LATE, ACT_LATE, ACT_LATE};
	static const char *const want[] = {"MSG001", "MSG002", "MSG003", "MSG004", "MSG005"};
	struct mllp_out_watch *h;
	struct spool_row r = {0};
	int64_t ids[5];

	script(5, late);
	start();
	for (int i = 0; i < 5; i++)
		ids[i] = post(i + 1);
	ck_assert_int_eq(mllp_out_watch(g_out, ids[2], on_watch, NULL, &h), 0);
	ck_assert_uint_eq(stats().queued, 5);
	wait_done(5, 3000);
	assert_frames(want, 5);
	ck_assert_int_eq(R.violations, 0);
	ck_assert_int_eq(R.nconns, 1); /* one socket for all five */
	for (int i = 0; i < 5; i++)
		ck_assert_int_eq(R.frames[i].conn, 0);
	ck_assert_int_eq(W.calls, 1);
	ck_assert_int_eq(W.id, ids[2]);
	ck_assert_int_eq(W.result, MLLP_OUT_ACKED);
	ck_assert_ptr_nonnull(strstr(W.ack, "MSA|AA|MSG003"));
	for (int i = 0; i < 5; i++) {
		ck_assert_int_eq(row_state(ids[i], &r), SPOOL_DELIVERED);
		ck_assert_ptr_nonnull(r.ack);
		ck_assert_int_eq(r.ack_len, strlen(r.ack));
		ck_assert_ptr_nonnull(strstr(r.ack, want[i]));
		spool_row_clear(&r);
	}
	ck_assert_uint_eq(stats().sent, 5);
	ck_assert_uint_eq(stats().connects, 1);
	ck_assert_uint_eq(stats().queued, 0);
	ck_assert_int_eq(stats().connected, 1); /* kept open for the next one */
	ck_assert_int_eq(mllp_out_watch(g_out, ids[2], on_watch, NULL, &h), -ENOENT);
}
END_TEST

/* The socket is closed after idle_timeout without traffic, and a new one
 * is opened for the next message. */
START_TEST(test_idle_close)
{
	int64_t id;
	struct spool_row r = {0};

	g_dest.idle_timeout_ms = 150;
	start();
	post(1);
	wait_done(1, 2000);
	ck_assert_int_eq(stats().connected, 1);
	ck_assert_int_eq(R.eofs, 0);
	ck_assert(run_until(&R.eofs, 1, 1000));
	ck_assert_int_eq(stats().connected, 0);
	ck_assert_uint_eq(stats().idle_closes, 1);
	id = post(2);
	wait_done(2, 2000);
	ck_assert_int_eq(R.nconns, 2);
	ck_assert_int_eq(R.frames[1].conn, 1);
	ck_assert_int_eq(row_state(id, &r), SPOOL_DELIVERED);
	spool_row_clear(&r);
}
END_TEST

/* An ACK for another message is an error: the connection is closed and the
 * same message goes again, before the next one. */
START_TEST(test_wrong_msa2_resent)
{
	static const enum action acts[] = {ACT_WRONG, ACT_AA, ACT_AA};
	static const char *const want[] = {"MSG001", "MSG001", "MSG002"};
	struct spool_row r = {0};
	int64_t id;

	script(3, acts);
	start();
	id = post(1);
	post(2);
	wait_done(2, 3000);
	assert_frames(want, 3);
	ck_assert_int_eq(R.violations, 0);
	ck_assert_int_eq(R.nconns, 2);
	ck_assert_int_eq(R.frames[1].conn, 1);
	ck_assert_uint_eq(stats().ack_errors, 1);
	ck_assert_uint_eq(stats().retries, 1);
	ck_assert_uint_eq(stats().acked, 2);
	ck_assert_int_eq(row_state(id, &r), SPOOL_DELIVERED);
	ck_assert_int_eq(r.attempts, 2); /* the failed send and the answered one */
	spool_row_clear(&r);
}
END_TEST

/* on_ae: retry: the message is sent again on the same connection. */
START_TEST(test_ae_retry_then_aa)
{
	static const enum action acts[] = {ACT_AE, ACT_AA};
	static const char *const want[] = {"MSG001", "MSG001", "MSG002"};
	struct spool_row r = {0};
	int64_t id;

	script(2, acts);
	start();
	id = post(1);
	post(2);
	wait_done(2, 3000);
	assert_frames(want, 3);
	ck_assert_int_eq(R.violations, 0);
	ck_assert_int_eq(R.nconns, 1);
	ck_assert_uint_eq(stats().retries, 1);
	ck_assert_int_eq(row_state(id, &r), SPOOL_DELIVERED);
	ck_assert_int_eq(r.attempts, 2); /* the failed send and the answered one */
	ck_assert_ptr_nonnull(strstr(r.ack, "MSA|AA|MSG001"));
	spool_row_clear(&r);
}
END_TEST

/* on_ar: dead: the row is rejected with the receiver's ACK kept, the
 * watcher hears it, and the next message goes. */
START_TEST(test_ar_rejected)
{
	static const enum action acts[] = {ACT_AR, ACT_AA};
	static const char *const want[] = {"MSG001", "MSG002"};
	struct mllp_out_watch *h;
	struct spool_row r = {0};
	int64_t id, id2;

	script(2, acts);
	start();
	id = post(1);
	id2 = post(2);
	ck_assert_int_eq(mllp_out_watch(g_out, id, on_watch, NULL, &h), 0);
	wait_done(2, 3000);
	assert_frames(want, 2);
	ck_assert_uint_eq(stats().rejected, 1);
	ck_assert_uint_eq(stats().retries, 0);
	ck_assert_int_eq(W.calls, 1);
	ck_assert_int_eq(W.result, MLLP_OUT_REJECTED);
	ck_assert_ptr_nonnull(strstr(W.ack, "MSA|AR|MSG001"));
	ck_assert_ptr_nonnull(strstr(W.error, "AR"));
	ck_assert_int_eq(row_state(id, &r), SPOOL_REJECTED);
	ck_assert_ptr_nonnull(r.ack);
	ck_assert_ptr_nonnull(strstr(r.ack, "MSA|AR|MSG001"));
	ck_assert_int_eq(r.attempts, 1);
	spool_row_clear(&r);
	ck_assert_int_eq(row_state(id2, &r), SPOOL_DELIVERED);
	spool_row_clear(&r);
}
END_TEST

/* No ACK within ack_timeout: the connection is closed and the same message
 * is sent on a new one; the next message only after its ACK. */
START_TEST(test_ack_timeout_resends_same)
{
	static const enum action acts[] = {ACT_NONE, ACT_AA, ACT_AA};
	static const char *const want[] = {"MSG001", "MSG001", "MSG002"};
	struct spool_row r = {0};
	int64_t id;

	g_dest.ack_timeout_ms = 150;
	script(3, acts);
	start();
	id = post(1);
	post(2);
	wait_done(2, 3000);
	assert_frames(want, 3);
	ck_assert_int_eq(R.violations, 0);
	ck_assert_int_eq(R.nconns, 2);
	ck_assert_int_eq(R.frames[0].conn, 0);
	ck_assert_int_eq(R.frames[1].conn, 1);
	ck_assert_int_eq(R.frames[2].conn, 1);
	ck_assert_int_eq(R.conns[0].closed, 1);
	ck_assert_uint_eq(stats().ack_timeouts, 1);
	ck_assert_int_eq(row_state(id, &r), SPOOL_DELIVERED);
	ck_assert_int_eq(r.attempts, 2); /* the failed send and the answered one */
	spool_row_clear(&r);
}
END_TEST

/* A receiver that closes mid-message: transport failures until
 * max_attempts, then dead; the next message goes after it. */
START_TEST(test_close_until_dead)
{
	static const enum action acts[] = {ACT_CLOSE, ACT_CLOSE, ACT_AA};
	static const char *const want[] = {"MSG001", "MSG001", "MSG002"};
	struct mllp_out_watch *h;
	struct spool_row r = {0};
	int64_t id;

	g_dest.max_attempts = 2;
	script(3, acts);
	start();
	id = post(1);
	post(2);
	ck_assert_int_eq(mllp_out_watch(g_out, id, on_watch, NULL, &h), 0);
	wait_done(2, 3000);
	assert_frames(want, 3);
	ck_assert_uint_eq(stats().transport_errors, 2);
	ck_assert_uint_eq(stats().dead, 1);
	ck_assert_int_eq(W.result, MLLP_OUT_DEAD);
	ck_assert_int_eq(row_state(id, &r), SPOOL_DEAD);
	ck_assert_int_eq(r.attempts, 2);
	ck_assert_ptr_nonnull(r.last_error);
	ck_assert_ptr_null(r.ack); /* the last send got no answer */
	spool_row_clear(&r);
}
END_TEST

/* A receiver that answers every send with another message's MSA-2 until
 * max_attempts: the dead row keeps the answer to the last send, byte for
 * byte (the one the watcher hears too), for GET /v1/messages/{id}. */
START_TEST(test_wrong_msa2_until_dead)
{
	static const enum action acts[] = {ACT_WRONG, ACT_WRONG, ACT_AA};
	static const char *const want[] = {"MSG001", "MSG001", "MSG002"};
	struct mllp_out_watch *h;
	struct spool_row r = {0};
	char last[256];
	int n = ack_text(last, sizeof(last), 2, "AA", "NOT-THIS-ONE");
	int64_t id;

	g_dest.max_attempts = 2;
	script(3, acts);
	start();
	id = post(1);
	post(2);
	ck_assert_int_eq(mllp_out_watch(g_out, id, on_watch, NULL, &h), 0);
	wait_done(2, 3000);
	assert_frames(want, 3);
	ck_assert_uint_eq(stats().ack_errors, 2);
	ck_assert_uint_eq(stats().dead, 1);
	ck_assert_int_eq(W.result, MLLP_OUT_DEAD);
	ck_assert_str_eq(W.ack, last);
	ck_assert_int_eq(row_state(id, &r), SPOOL_DEAD);
	ck_assert_int_eq(r.attempts, 2);
	ck_assert_str_eq(r.last_error, "the ACK's MSA-2 is not the message's MSH-10");
	ck_assert_ptr_nonnull(r.ack);
	ck_assert_uint_eq(r.ack_len, (size_t)n);
	ck_assert_mem_eq(r.ack, last, (size_t)n);
	spool_row_clear(&r);
}
END_TEST

/* Nobody listens: every connect fails, counted and backed off, but the
 * message never left, so it loses no attempt and never goes dead: a
 * receiver down for maintenance must not let the next message go first. */
START_TEST(test_connect_refused)
{
	int zero = 0;
	int64_t id;
	struct spool_row r = {0};

	g_dest.max_attempts = 3;
	start();
	evconnlistener_free(R.lis); /* the port is closed now */
	R.lis = NULL;
	id = post(1);
	run_until(&zero, 1, 1500); /* the backoff: 50, 100, 200, 200... ms */
	ck_assert_uint_ge(stats().transport_errors, 5);
	ck_assert_uint_eq(stats().dead, 0);
	ck_assert_uint_eq(stats().connects, 0);
	ck_assert_uint_eq(stats().queued, 1);
	ck_assert_int_eq(row_state(id, &r), SPOOL_QUEUED);
	ck_assert_int_eq(r.attempts, 0);
	ck_assert_ptr_nonnull(strstr(r.last_error, "connect"));
	spool_row_clear(&r);
}
END_TEST

static void gate_to(const char *cidr)
{
	struct cfg_cidr c;

	memset(&c, 0, sizeof(c));
	ck_assert_int_eq(cfg_parse_cidr(cidr, &c), 0);
	ck_assert_int_eq(gate_set(g_gate, &c, 1), 0);
}

/* Gate closed: nothing connects, the head waits; the gate opens for the
 * destination: both messages go, in order. */
START_TEST(test_gate_closed_then_open)
{
	static const char *const want[] = {"MSG001", "MSG002"};

	start();
	post(1);
	post(2);
	gate_to("203.0.113.0/24"); /* a set that does not hold the receiver */
	run_ms(300);
	ck_assert_int_eq(R.nconns, 0);
	ck_assert_int_eq(R.nframes, 0);
	ck_assert_int_eq(stats().waiting_gate, 1);
	ck_assert_uint_ge(stats().gate_waits, 1);
	ck_assert_uint_eq(stats().queued, 2);
	ck_assert_int_gt(stats().oldest_ms, 0);
	gate_to("127.0.0.0/8");
	wait_done(2, 2000);
	assert_frames(want, 2);
	ck_assert_int_eq(R.nconns, 1);
	ck_assert_int_eq(stats().waiting_gate, 0);
}
END_TEST

/* The gate drops the destination while a message waits for its ACK: the
 * connection is aborted and the message is sent again when the gate
 * allows it, without counting an attempt. */
START_TEST(test_gate_drop_mid_message)
{
	static const enum action acts[] = {ACT_NONE, ACT_AA};
	static const char *const want[] = {"MSG001", "MSG001"};
	struct spool_row r = {0};
	int64_t id;

	g_dest.ack_timeout_ms = 5000;
	script(2, acts);
	gate_to("127.0.0.1/32");
	start();
	id = post(1);
	ck_assert(run_until(&R.nframes, 1, 2000));
	gate_close(g_gate);
	ck_assert(run_until(&R.eofs, 1, 1000));
	ck_assert_int_eq(stats().connected, 0);
	ck_assert_int_eq(stats().waiting_gate, 1);
	ck_assert_uint_eq(stats().gate_closes, 1);
	run_ms(100);
	ck_assert_int_eq(R.nframes, 1);
	gate_to("127.0.0.1/32");
	wait_done(1, 2000);
	assert_frames(want, 2);
	ck_assert_int_eq(row_state(id, &r), SPOOL_DELIVERED);
	ck_assert_int_eq(r.attempts, 1); /* the resend after the gate's drop is not counted */
	ck_assert_uint_eq(stats().retries, 0);
	spool_row_clear(&r);
}
END_TEST

/* A receiver that closes after its ACK is no failure: the next message
 * opens a new connection. A second answer to one message (nothing in
 * flight) closes the connection; the next message opens another. */
START_TEST(test_peer_close_and_stray_answer)
{
	static const enum action acts[] = {ACT_AA_CLOSE, ACT_AA_TWICE, ACT_AA};
	static const char *const want[] = {"MSG001", "MSG002", "MSG003"};

	script(3, acts);
	start();
	post(1);
	wait_done(1, 2000);
	wait_disconnected(1000); /* the receiver's close */
	post(2);
	wait_done(2, 2000);
	wait_disconnected(1000); /* ours, after the stray second ACK */
	ck_assert(run_until(&R.eofs, 1, 1000));
	ck_assert_uint_eq(stats().ack_errors, 0);
	post(3);
	wait_done(3, 2000);
	assert_frames(want, 3);
	ck_assert_int_eq(R.nconns, 3);
	ck_assert_uint_eq(stats().retries, 0);
	ck_assert_uint_eq(stats().transport_errors, 0);
}
END_TEST

/* A watch cancelled is never called; one still open at free hears
 * ABORTED, and its row stays queued in the spool. */
START_TEST(test_unwatch_and_abort)
{
	static const enum action acts[] = {ACT_NONE};
	struct mllp_out_watch *h1, *h2;
	struct spool_row r = {0};
	int64_t id;

	g_dest.ack_timeout_ms = 5000;
	script(1, acts);
	start();
	id = post(1);
	ck_assert_int_eq(mllp_out_watch(g_out, id, on_watch, NULL, &h1), 0);
	ck_assert_int_eq(mllp_out_watch(g_out, id, on_watch, NULL, &h2), 0);
	ck_assert(run_until(&R.nframes, 1, 2000));
	ck_assert_uint_eq(stats().in_flight, 1);
	mllp_out_unwatch(h1);
	mllp_out_free(g_out);
	g_out = NULL;
	ck_assert_int_eq(W.calls, 1);
	ck_assert_int_eq(W.result, MLLP_OUT_ABORTED);
	ck_assert_int_eq(row_state(id, &r), SPOOL_QUEUED);
	spool_row_clear(&r);
}
END_TEST

/* What enqueue refuses, and the destination lookup. */
START_TEST(test_enqueue_refusals)
{
	char body[256];

	start();
	message(body, sizeof(body), 7);
	ck_assert_int_eq(mllp_out_dest(g_out, "lis"), 0);
	ck_assert_int_eq(mllp_out_dest(g_out, "nope"), -ENOENT);
	ck_assert_int_eq(mllp_out_enqueue(g_out, 1, 1, body, strlen(body), NULL, 0), -EINVAL);
	ck_assert_int_eq(mllp_out_enqueue(g_out, 0, 1, body, strlen(body), "MSG008", 0), -EINVAL);
	ck_assert_int_eq(mllp_out_enqueue(g_out, 0, 1, "not hl7", 7, NULL, 0), -EINVAL);
	g_dest.max_frame = 16;
	ck_assert_int_eq(mllp_out_enqueue(g_out, 0, 1, body, strlen(body), NULL, 0), -EMSGSIZE);
	g_dest.max_frame = 1 << 20;
	ck_assert_int_eq(mllp_out_enqueue(g_out, 0, 1, body, strlen(body), "MSG007", 0), 0);
	ck_assert_int_eq(mllp_out_enqueue(g_out, 0, 1, body, strlen(body), NULL, 0), -EEXIST);
	/* Not HL7, but the row says what MSA-2 to expect. */
	ck_assert_int_eq(mllp_out_enqueue(g_out, 0, 2, "not hl7", 7, "X-2", 0), 0);
	ck_assert_uint_eq(stats().queued, 2);
}
END_TEST

/* Release 2: the commit ACK block is the answer, a NAK means send again. */
START_TEST(test_release2)
{
	static const enum action acts[] = {ACT_NAK, ACT_AA, ACT_AA};
	static const char *const want[] = {"MSG001", "MSG001", "MSG002"};
	struct spool_row r = {0};
	int64_t id;

	g_dest.release = 2;
	R.r2 = 1;
	script(3, acts);
	start();
	id = post(1);
	post(2);
	wait_done(2, 3000);
	assert_frames(want, 3);
	ck_assert_int_eq(R.nconns, 1);
	ck_assert_uint_eq(stats().ack_errors, 1);
	ck_assert_int_eq(row_state(id, &r), SPOOL_DELIVERED);
	ck_assert_int_eq(r.ack_len, 1);
	ck_assert_int_eq(r.ack[0], MLLP_R2_ACK);
	ck_assert_int_eq(r.attempts, 2); /* the NAKed send and the ACKed one */
	spool_row_clear(&r);
}
END_TEST

/* Messages 1..n posted behind a closed gate with room in memory for
 * `fit` bodies: the others are kept as ids and read from the spool. */
static void post_capped(int64_t *ids, int n, int fit)
{
	char body[BODY_MAX];
	size_t len;

	message(body, sizeof(body), 1);
	len = strlen(body); /* every message() body has this length */
	start();
	mllp_out_test_set_mem_max(g_out, (size_t)fit * len + len / 2);
	for (int i = 0; i < n; i++)
		ids[i] = post(i + 1);
	ck_assert_uint_eq(stats().queued, (size_t)n);
	ck_assert_int_eq(R.nframes, 0);
	ck_assert_uint_eq(mllp_out_mem_bodies(g_out), (size_t)fit * len);
}

/* Past the cap of bodies in memory: memory stays under it, and every
 * message still goes, in order, byte for byte, a spool-held one resent
 * after an ACK timeout included. A spool-held row deleted before its turn
 * is skipped: its watcher hears ABORTED, the next message goes, and
 * nothing is sent in its place. */
START_TEST(test_mem_cap_spool_bodies)
{
	/* Frame 3 is message 4, the first read from the spool: no answer. */
	static const enum action acts[] = {ACT_AA, ACT_AA, ACT_AA, ACT_NONE};
	static const int want[] = {1, 2, 3, 4, 4, 6, 7, 8};
	struct mllp_out_watch *h;
	struct spool_row r = {0};
	int64_t ids[8];

	g_dest.ack_timeout_ms = 150;
	script(4, acts);
	post_capped(ids, 8, 3);
	change_row(ids[4], NULL); /* message 5, held as an id only */
	ck_assert_int_eq(mllp_out_watch(g_out, ids[4], on_watch, NULL, &h), 0);
	gate_to("127.0.0.0/8");
	wait_done(7, 5000);
	run_ms(200); /* time for anything sent in message 5's place to show */
	ck_assert_int_eq(R.nframes, (int)N_OF(want));
	for (int i = 0; i < (int)N_OF(want); i++)
		assert_frame_is(i, want[i]);
	ck_assert_int_eq(R.violations, 0);
	ck_assert_uint_eq(stats().ack_timeouts, 1);
	ck_assert_int_eq(W.calls, 1);
	ck_assert_int_eq(W.result, MLLP_OUT_ABORTED);
	ck_assert_str_eq(W.error, "the row is gone");
	ck_assert_uint_eq(stats().queued, 0);
	ck_assert_uint_eq(mllp_out_mem_bodies(g_out), 0);
	ck_assert_int_eq(row_state(ids[3], &r), SPOOL_DELIVERED);
	ck_assert_int_eq(r.attempts, 2); /* the unanswered send and its resend */
	spool_row_clear(&r);
}
END_TEST

/* A spool-held row whose body no longer carries the MSH-10 it was queued
 * with is never sent: the ACK could not be matched to what was accepted. */
START_TEST(test_mem_cap_row_changed)
{
	static const int want[] = {1, 3};
	char other[BODY_MAX];
	struct mllp_out_watch *h;
	int64_t ids[3];

	post_capped(ids, 3, 1);
	message(other, sizeof(other), 99); /* the same length, MSH-10 MSG099 */
	change_row(ids[1], other);
	ck_assert_int_eq(mllp_out_watch(g_out, ids[1], on_watch, NULL, &h), 0);
	gate_to("127.0.0.0/8");
	wait_done(2, 3000);
	run_ms(200);
	ck_assert_int_eq(R.nframes, (int)N_OF(want));
	for (int i = 0; i < (int)N_OF(want); i++)
		assert_frame_is(i, want[i]);
	ck_assert_int_eq(W.result, MLLP_OUT_ABORTED);
	ck_assert_str_eq(W.error, "the row is not the message queued");
	ck_assert_uint_eq(mllp_out_mem_bodies(g_out), 0);
}
END_TEST

static const struct {
	uint64_t initial, max;
	int attempts;
	uint64_t want;
} backoff_cases[] = {
    {1000, 300000, 1, 1000},   {1000, 300000, 2, 2000},	   {1000, 300000, 3, 4000},
    {1000, 300000, 9, 256000}, {1000, 300000, 10, 300000}, {1000, 300000, 1000, 300000},
    {1000, 500, 1, 500},       {50, 200, 4, 200},
};

START_TEST(test_backoff)
{
	struct cfg_retry rc = {backoff_cases[_i].initial, backoff_cases[_i].max};

	ck_assert_uint_eq(cfg_retry_backoff_ms(&rc, backoff_cases[_i].attempts),
			  backoff_cases[_i].want);
}
END_TEST

static Suite *out_suite(void)
{
	Suite *su = suite_create("mllp_out");
	TCase *tc = tcase_create("open gate");

	tcase_add_checked_fixture(tc, setup_open, teardown);
	tcase_set_timeout(tc, 10);
	tcase_add_test(tc, test_in_order_one_in_flight);
	tcase_add_test(tc, test_idle_close);
	tcase_add_test(tc, test_wrong_msa2_resent);
	tcase_add_test(tc, test_ae_retry_then_aa);
	tcase_add_test(tc, test_ar_rejected);
	tcase_add_test(tc, test_ack_timeout_resends_same);
	tcase_add_test(tc, test_close_until_dead);
	tcase_add_test(tc, test_wrong_msa2_until_dead);
	tcase_add_test(tc, test_connect_refused);
	tcase_add_test(tc, test_enqueue_refusals);
	tcase_add_test(tc, test_release2);
	tcase_add_test(tc, test_peer_close_and_stray_answer);
	tcase_add_test(tc, test_unwatch_and_abort);
	suite_add_tcase(su, tc);
	tc = tcase_create("closed gate");
	tcase_add_checked_fixture(tc, setup_closed, teardown);
	tcase_set_timeout(tc, 10);
	tcase_add_test(tc, test_gate_closed_then_open);
	tcase_add_test(tc, test_gate_drop_mid_message);
	tcase_add_test(tc, test_mem_cap_spool_bodies);
	tcase_add_test(tc, test_mem_cap_row_changed);
	suite_add_tcase(su, tc);
	tc = tcase_create("backoff");
	tcase_add_loop_test(tc, test_backoff, 0, N_OF(backoff_cases));
	suite_add_tcase(su, tc);
	return su;
}

int main(void)
{
	SRunner *sr = srunner_create(out_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
