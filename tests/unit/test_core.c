/*
 * The bridge's core and its pure decisions: the group commit driven by a
 * real event loop over a real SQLite spool in a temporary directory; the
 * retry backoff, integration matching and the choice to answer at all, as
 * tables.
 */
#include <check.h>
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <sqlite3.h>

#include "mllp-bridge/commit.h"
#include "mllp-bridge/forward.h"
#include "mllp-bridge/mllp_in.h"
#include "mllp-bridge/spool.h"

#define N_OF(a)	   (sizeof(a) / sizeof((a)[0]))
#define LOOP_LIMIT 50 /* loop passes before a test gives up waiting */
#define MAX_OUT	   64

static char g_dir[64];
static char g_db[96];
static struct event_base *g_base;
static struct spool *g_spool;
static struct commit *g_commit;

/* What the callbacks heard, in order. */
static struct outcome {
	int err;
	int64_t id;
	char body[32];
	enum spool_channel channel;
} g_out[MAX_OUT];
static int g_nout;

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	(void)st;
	(void)flag;
	(void)f;
	return remove(p);
}

static void setup(void)
{
	strcpy(g_dir, "/tmp/core-test-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(g_dir));
	snprintf(g_db, sizeof(g_db), "%s/spool.db", g_dir);
	ck_assert_ptr_nonnull(g_base = event_base_new());
	ck_assert_int_eq(spool_open(g_db, &g_spool), 0);
	ck_assert_int_eq(commit_new(g_base, g_spool, 7 * 86400000ull, &g_commit), 0);
	g_nout = 0;
}

static void teardown(void)
{
	commit_free(g_commit);
	spool_close(g_spool);
	event_base_free(g_base);
	nftw(g_dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

static void on_outcome(void *arg, int err, int64_t id, const struct spool_new *m)
{
	struct outcome *o = &g_out[g_nout++];

	(void)arg;
	ck_assert_int_lt(g_nout, MAX_OUT);
	o->err = err;
	o->id = id;
	snprintf(o->body, sizeof(o->body), "%.*s", (int)m->len, (const char *)m->body);
	o->channel = m->channel;
}

static int stage(const char *body, const char *lane)
{
	return commit_stage(g_commit,
			    &(struct spool_new){.integration = "lab",
						.sender = "203.0.113.70",
						.content_type = "application/hl7-v2",
						.control_id = "C1",
						.idem_key = "key-1",
						.lane = lane,
						.lane2 = "",
						.received_ms = 1,
						.body = body,
						.len = strlen(body)},
			    on_outcome, NULL);
}

/* An outbound message for destination "lis". */
static int stage_out(const char *body, const char *key)
{
	return commit_stage(g_commit,
			    &(struct spool_new){.integration = "lis",
						.sender = "cloud",
						.content_type = "x-application/hl7-v2+er7",
						.control_id = "O1",
						.idem_key = key,
						.received_ms = 1,
						.body = body,
						.len = strlen(body),
						.channel = SPOOL_OUT},
			    on_outcome, NULL);
}

/* Runs the loop until n outcomes were heard, or fails. */
static void run_until(int n)
{
	for (int i = 0; i < LOOP_LIMIT && g_nout < n; i++)
		event_base_loop(g_base, EVLOOP_NONBLOCK);
	ck_assert_int_eq(g_nout, n);
}

START_TEST(test_one_commit_per_pass)
{
	struct commit_stats st;
	char body[16];

	for (int i = 0; i < 10; i++) {
		snprintf(body, sizeof(body), "m%d", i);
		ck_assert_int_eq(stage(body, "f:A"), 0);
	}
	ck_assert_int_eq(g_nout, 0); /* never from inside commit_stage() */
	run_until(10);
	commit_stats(g_commit, &st);
	ck_assert_uint_eq(st.commits, 1);
	ck_assert_uint_eq(st.rows, 10);
	for (int i = 0; i < 10; i++) {
		snprintf(body, sizeof(body), "m%d", i);
		ck_assert_int_eq(g_out[i].err, 0);
		ck_assert_str_eq(g_out[i].body, body);
		ck_assert(i == 0 || g_out[i].id > g_out[i - 1].id);
	}
}
END_TEST

/* A row removed from outside while its request was in flight: marking it
 * must not cost the messages staged meanwhile their commit. */
START_TEST(test_missing_row_spares_batch)
{
	struct spool_row row;

	ck_assert_int_eq(stage("before", "f:A"), 0);
	commit_mark_delivered(g_commit, 999999);
	commit_mark_retry(g_commit, 999998, 1, 0, "HTTP 503");
	commit_mark_dead(g_commit, 999997, 1, NULL, 0, "HTTP 400");
	commit_mark_acked(g_commit, 999996, 1, "MSA|AA", 6);
	commit_mark_rejected(g_commit, 999995, 1, "MSA|AR", 6, "AR");
	ck_assert_int_eq(stage("after", "f:A"), 0);
	run_until(2);
	ck_assert_int_eq(g_out[0].err, 0);
	ck_assert_int_eq(g_out[1].err, 0);
	ck_assert_int_eq(spool_get(g_spool, g_out[1].id, &row, NULL), 0);
	ck_assert_str_eq(row.lane, "f:A");
	spool_row_clear(&row);
}
END_TEST

/* ---- outbound rows --------------------------------------------------- */

/* The staged copy keeps the channel: the row is the senders', not the
 * forwarder's. */
START_TEST(test_stage_keeps_channel)
{
	struct spool_row row;

	ck_assert_int_eq(stage_out("MSH|out", "idem-1"), 0);
	ck_assert_int_eq(stage("MSH|in", "f:A"), 0);
	run_until(2);
	ck_assert_int_eq(g_out[0].err, 0);
	ck_assert_int_eq(g_out[0].channel, SPOOL_OUT);
	ck_assert_int_eq(g_out[1].channel, SPOOL_IN);
	ck_assert_int_eq(spool_get(g_spool, g_out[0].id, &row, NULL), 0);
	ck_assert_int_eq(row.channel, SPOOL_OUT);
	ck_assert_str_eq(row.integration, "lis");
	spool_row_clear(&row);
	ck_assert_int_eq(spool_get(g_spool, g_out[1].id, &row, NULL), 0);
	ck_assert_int_eq(row.channel, SPOOL_IN);
	spool_row_clear(&row);
}
END_TEST

static char g_big_ack[SPOOL_ACK_MAX + 1];

static const struct outmark_case {
	int rejected;
	const char *ack; /* NULL; "big": SPOOL_ACK_MAX + 1 bytes */
	size_t len;
	enum spool_state state;
	size_t kept; /* bytes of ACK kept */
} outmark_cases[] = {
    {0, "MSA|AA|O1\0x", 11, SPOOL_DELIVERED, 11},
    {0, NULL, 0, SPOOL_DELIVERED, 0},
    {1, "MSA|AR|O1\0x", 11, SPOOL_REJECTED, 11},
    /* An ACK the spool will not keep: the state is recorded without it. */
    {0, "big", SPOOL_ACK_MAX + 1, SPOOL_DELIVERED, 0},
    {1, "big", SPOOL_ACK_MAX + 1, SPOOL_REJECTED, 0},
    {0, NULL, 5, SPOOL_DELIVERED, 0},
};

/* The outbound results ride on the flush timer when nothing is staged, and
 * are durable then (another connection sees them). */
START_TEST(test_outbound_marks)
{
	const struct outmark_case *c = &outmark_cases[_i];
	const char *ack = c->ack && strcmp(c->ack, "big") == 0 ? g_big_ack : c->ack;
	struct spool *other;
	struct spool_row row;
	char ack_copy[16];

	ck_assert_int_eq(stage_out("MSH|out", "idem-1"), 0);
	run_until(1);
	ck_assert_int_eq(g_out[0].err, 0);
	if (ack && ack != g_big_ack) { /* "copied": the caller's buffer may go at once */
		memcpy(ack_copy, ack, c->len);
		ack = ack_copy;
	}
	if (c->rejected)
		commit_mark_rejected(g_commit, g_out[0].id, 3, ack, c->len, "AR: no such patient");
	else
		commit_mark_acked(g_commit, g_out[0].id, 1, ack, c->len);
	if (ack == ack_copy)
		memset(ack_copy, 'Z', sizeof(ack_copy));
	ck_assert_uint_eq(spool_pending(g_spool), 1);
	for (int i = 0; i < LOOP_LIMIT && spool_pending(g_spool) > 0; i++)
		event_base_loop(g_base, EVLOOP_ONCE); /* waits for the flush timer */
	ck_assert_uint_eq(spool_pending(g_spool), 0);

	ck_assert_int_eq(spool_open(g_db, &other), 0);
	ck_assert_int_eq(spool_get(other, g_out[0].id, &row, NULL), 0);
	ck_assert_int_eq(row.state, c->state);
	ck_assert_uint_eq(row.ack_len, c->kept);
	if (c->kept)
		ck_assert_mem_eq(row.ack, c->ack, c->kept);
	else
		ck_assert_ptr_null(row.ack);
	if (c->rejected) {
		ck_assert_int_eq(row.attempts, 3);
		ck_assert_str_eq(row.last_error, "AR: no such patient");
	} else {
		ck_assert_int_gt(row.delivered_ms, 0);
	}
	spool_row_clear(&row);
	spool_close(other);
}
END_TEST

/* A mark between two stagings joins their batch: one commit for all. */
START_TEST(test_marks_ride_on_commit)
{
	struct commit_stats st;
	struct spool_row row;
	int64_t first;

	ck_assert_int_eq(stage_out("first", "idem-1"), 0);
	run_until(1);
	first = g_out[0].id;
	ck_assert_int_eq(stage_out("second", "idem-2"), 0);
	commit_mark_acked(g_commit, first, 1, "MSA|AA|O1", 9);
	ck_assert_int_eq(stage_out("third", "idem-3"), 0);
	run_until(3);
	ck_assert_int_eq(g_out[1].err, 0);
	ck_assert_int_eq(g_out[2].err, 0);
	ck_assert_uint_eq(spool_pending(g_spool), 0);
	commit_stats(g_commit, &st);
	ck_assert_uint_eq(st.commits, 2);
	ck_assert_int_eq(spool_get(g_spool, first, &row, NULL), 0);
	ck_assert_int_eq(row.state, SPOOL_DELIVERED);
	ck_assert_uint_eq(row.ack_len, 9);
	spool_row_clear(&row);
}
END_TEST

START_TEST(test_refusal_is_alone)
{
	char lane[SPOOL_LANE_MAX + 2];

	memset(lane, 'x', sizeof(lane) - 1);
	lane[sizeof(lane) - 1] = '\0';
	ck_assert_int_eq(stage("ok", "f:A"), 0);
	ck_assert_int_eq(stage("too long a lane", lane), -EMSGSIZE);
	run_until(1);
	ck_assert_int_eq(g_out[0].err, 0);
	ck_assert_str_eq(g_out[0].body, "ok");
}
END_TEST

/* A full disk refuses the whole batch, and every stager hears it. */
START_TEST(test_full_disk_refuses_batch)
{
	char big[4000];

	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	ck_assert_int_eq(spool_test_set_max_pages(g_spool, 1), 0);
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(stage(big, "f:A"), 0);
	run_until(4);
	for (int i = 0; i < 4; i++)
		ck_assert_int_lt(g_out[i].err, 0);
}
END_TEST

START_TEST(test_free_cancels_staged)
{
	ck_assert_int_eq(stage("never acked", "f:A"), 0);
	commit_free(g_commit);
	g_commit = NULL;
	ck_assert_int_eq(g_nout, 1);
	ck_assert_int_eq(g_out[0].err, -ECANCELED);
}
END_TEST

/* ---- files: many messages, one unit ----------------------------------- */

#define FILE_MSGS (2 * COMMIT_BATCH_MAX - 48) /* 2,000: past one size-triggered commit */
#define SHA	  "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

/* What the callbacks of a file heard. */
static struct file_outcome {
	int calls, errs, first_err;
	int64_t ids[FILE_MSGS + 8];
	int bad_copy; /* a copy without the file's name or body */
} g_fo;

static char g_bodies[FILE_MSGS + 8][24];
static struct spool_new g_msgs[FILE_MSGS + 8];

static void on_file_msg(void *arg, int err, int64_t id, const struct spool_new *m)
{
	(void)arg;
	ck_assert_int_lt(g_fo.calls, FILE_MSGS + 8);
	if (err && !g_fo.errs++)
		g_fo.first_err = err;
	if (!m->file_name || strcmp(m->file_name, "ADT 2026-12-01.hl7") != 0 ||
	    m->len != strlen(g_bodies[g_fo.calls]) ||
	    memcmp(m->body, g_bodies[g_fo.calls], m->len) != 0)
		g_fo.bad_copy++;
	g_fo.ids[g_fo.calls++] = id;
}

/* n messages of "lab"; the first names its file, the others leave it to
 * the record (commit_stage_file() fills it in). */
static const struct spool_new *file_msgs(int n)
{
	memset(&g_fo, 0, sizeof(g_fo));
	for (int i = 0; i < n; i++) {
		snprintf(g_bodies[i], sizeof(g_bodies[i]), "MSH|file|%d", i);
		g_msgs[i] = (struct spool_new){.integration = "lab",
					       .sender = "sftp://203.0.113.80/in",
					       .content_type = "application/hl7-v2",
					       .control_id = "F1",
					       .idem_key = "file-key",
					       .lane = "f:LAB",
					       .received_ms = 1,
					       .body = g_bodies[i],
					       .len = strlen(g_bodies[i]),
					       .file_name = i == 0 ? "ADT 2026-12-01.hl7" : NULL};
	}
	return g_msgs;
}

static const struct spool_file g_file = {.route = "lab",
					 .name = "ADT 2026-12-01.hl7",
					 .size = 123456,
					 .mtime = 1764547200,
					 .sha256 = SHA,
					 .received_ms = 2};

static void run_until_files(int n)
{
	for (int i = 0; i < LOOP_LIMIT && g_fo.calls < n; i++)
		event_base_loop(g_base, EVLOOP_NONBLOCK);
	ck_assert_int_eq(g_fo.calls, n);
}

static int count_file_rows(void *arg, const struct spool_file *f)
{
	*(size_t *)arg = f->nrows;
	return 0;
}

/* 2,000 messages (more than COMMIT_BATCH_MAX) in one transaction, with a
 * message staged before them; each callback once, in order, with its id. */
START_TEST(test_stage_file_one_txn)
{
	struct commit_stats st;
	struct spool_file_progress p;
	struct spool_row row;
	int64_t fid = -1;
	size_t nrows = 0;

	ck_assert_int_eq(stage("before", "f:A"), 0);
	ck_assert_int_eq(commit_stage_file(g_commit, file_msgs(FILE_MSGS), FILE_MSGS, &g_file,
					   on_file_msg, NULL, &fid),
			 0);
	ck_assert_int_eq(g_fo.calls, 0); /* never from inside the call */
	ck_assert_int_eq(fid, 1);
	run_until_files(FILE_MSGS);
	run_until(1);
	commit_stats(g_commit, &st);
	ck_assert_uint_eq(st.commits, 1);
	ck_assert_uint_eq(st.rows, FILE_MSGS + 1);
	ck_assert_int_eq(g_fo.errs, 0);
	ck_assert_int_eq(g_fo.bad_copy, 0);
	for (int i = 0; i < FILE_MSGS; i++)
		ck_assert_int_eq(g_fo.ids[i], g_out[0].id + 1 + i);
	ck_assert_int_eq(spool_file_progress(g_spool, fid, &p), 0);
	ck_assert_uint_eq(p.queued, FILE_MSGS);
	ck_assert_int_eq(spool_file_pending(g_spool, "lab", count_file_rows, &nrows), 0);
	ck_assert_uint_eq(nrows, FILE_MSGS);
	ck_assert_int_eq(spool_get(g_spool, g_fo.ids[FILE_MSGS - 1], &row, NULL), 0);
	ck_assert_str_eq(row.file_name, "ADT 2026-12-01.hl7"); /* filled in from the record */
	spool_row_clear(&row);
	ck_assert_int_eq(spool_get(g_spool, g_out[0].id, &row, NULL), 0);
	ck_assert_ptr_null(row.file_name);
	spool_row_clear(&row);
}
END_TEST

/* A forced failure loses the whole file and the message staged with it:
 * all or none, every callback hears it, and the next message commits. */
static const struct file_fail_case {
	const char *how;
	const char *sql; /* run on the spool first, through another connection */
	int max_pages;	 /* > 0: cap the spool at this many pages (it has more) */
} file_fail_cases[] = {
    {"disk full", NULL, 1},
    {"record refused by the database",
     "CREATE TRIGGER boom BEFORE INSERT ON files BEGIN SELECT RAISE(ABORT, 'boom'); END", 0},
};

START_TEST(test_stage_file_fails)
{
	const struct file_fail_case *c = &file_fail_cases[_i];
	struct spool_row row;
	int64_t fid = -1;

	if (c->sql) {
		sqlite3 *db;

		ck_assert_int_eq(sqlite3_open(g_db, &db), SQLITE_OK);
		ck_assert_int_eq(sqlite3_exec(db, c->sql, NULL, NULL, NULL), SQLITE_OK);
		sqlite3_close(db);
	}
	if (c->max_pages)
		ck_assert_int_eq(spool_test_set_max_pages(g_spool, c->max_pages), 0);
	ck_assert_int_eq(stage("before", "f:A"), 0);
	ck_assert_int_eq(commit_stage_file(g_commit, file_msgs(FILE_MSGS), FILE_MSGS, &g_file,
					   on_file_msg, NULL, &fid),
			 0);
	run_until_files(FILE_MSGS);
	run_until(1);
	ck_assert_int_lt(g_out[0].err, 0);
	ck_assert_int_eq(g_fo.errs, FILE_MSGS);
	ck_assert_int_eq(g_fo.first_err, g_out[0].err);
	ck_assert_int_eq(g_fo.bad_copy, 0);
	ck_assert_uint_eq(spool_pending(g_spool), 0);

	ck_assert_int_eq(spool_test_set_max_pages(g_spool, 0), 0);
	ck_assert_int_eq(stage("after", "f:A"), 0);
	run_until(2);
	ck_assert_int_eq(g_out[1].err, 0); /* the loss was told once, not again */
	ck_assert_int_eq(spool_get(g_spool, g_out[1].id, &row, NULL), 0);
	spool_row_clear(&row);
	ck_assert_int_eq(spool_file_progress(g_spool, 1, &(struct spool_file_progress){0}),
			 -ENOENT);
	ck_assert_int_eq(spool_get(g_spool, g_out[1].id - 1, &row, NULL), -ENOENT);
}
END_TEST

/* One refused message, or a bad record, refuses the file: nothing staged,
 * no callback, and the batch it would have joined is untouched. */
static const struct file_refuse_case {
	const char *how;
	int at;	  /* the message spoiled, or -1 */
	int what; /* 0 key, 1 file name, 2 integration, 3 sha, 4 n = 0, 5 n too large */
	int err;
} file_refuse_cases[] = {
    {"empty key in message 1500", 1500, 0, -EINVAL},
    {"bad file name in message 3", 3, 1, -EINVAL},
    {"message of another integration", 1999, 2, -EINVAL},
    {"record's sha256 not hex", -1, 3, -EINVAL},
    {"no messages", -1, 4, -EINVAL},
    {"more than SPOOL_FILE_ROWS_MAX", -1, 5, -EMSGSIZE},
};

START_TEST(test_stage_file_refused)
{
	const struct file_refuse_case *c = &file_refuse_cases[_i];
	struct spool_new *m = (struct spool_new *)file_msgs(FILE_MSGS);
	struct spool_file f = g_file;
	struct commit_stats st;
	size_t n = FILE_MSGS;
	int64_t fid = -1;

	switch (c->what) {
	case 0:
		m[c->at].idem_key = "";
		break;
	case 1:
		m[c->at].file_name = "../etc/passwd";
		break;
	case 2:
		m[c->at].integration = "adt";
		break;
	case 3:
		f.sha256 = "not a digest";
		break;
	case 4:
		n = 0;
		break;
	default:
		n = SPOOL_FILE_ROWS_MAX + 1; /* refused before anything is read or allocated */
		break;
	}
	ck_assert_int_eq(stage("before", "f:A"), 0);
	ck_assert_int_eq(commit_stage_file(g_commit, m, n, &f, on_file_msg, NULL, &fid), c->err);
	ck_assert_uint_eq(spool_pending(g_spool), 1);
	run_until(1);
	ck_assert_int_eq(g_out[0].err, 0);
	for (int i = 0; i < 5; i++)
		event_base_loop(g_base, EVLOOP_NONBLOCK);
	ck_assert_int_eq(g_fo.calls, 0);
	commit_stats(g_commit, &st);
	ck_assert_uint_eq(st.rows, 1);
}
END_TEST

static int file_state(void *arg, const struct spool_file *f)
{
	snprintf(arg, 64, "%s %s", spool_file_state_name((int)f->state),
		 f->reason ? f->reason : "-");
	return 0;
}

/* The disposition rides on the flush timer like a mark, and a record that
 * is gone only logs. */
START_TEST(test_file_dispose_rides)
{
	struct spool_file_progress p;
	struct spool *other;
	char disposed[64] = "";
	size_t nrows = 99;
	int64_t fid = -1;

	ck_assert_int_eq(
	    commit_stage_file(g_commit, file_msgs(3), 3, &g_file, on_file_msg, NULL, &fid), 0);
	run_until_files(3);
	ck_assert_int_eq(g_fo.errs, 0);
	commit_file_dispose(g_commit, fid + 7, SPOOL_FILE_DONE, NULL); /* gone: logged */
	commit_file_dispose(g_commit, fid, SPOOL_FILE_ERROR, "row 2: HTTP 400");
	ck_assert_uint_eq(spool_pending(g_spool), 1);
	for (int i = 0; i < LOOP_LIMIT && spool_pending(g_spool) > 0; i++)
		event_base_loop(g_base, EVLOOP_ONCE);
	ck_assert_uint_eq(spool_pending(g_spool), 0);
	ck_assert_int_eq(spool_open(g_db, &other), 0);
	ck_assert_int_eq(spool_file_pending(other, "lab", count_file_rows, &nrows), 0);
	ck_assert_uint_eq(nrows, 99); /* no open record left */
	ck_assert_int_eq(spool_file_list(other, "lab", 0, file_state, disposed), 0);
	ck_assert_str_eq(disposed, "error row 2: HTTP 400");
	ck_assert_int_eq(spool_file_progress(other, fid, &p), 0);
	ck_assert_uint_eq(p.queued, 3);
	spool_close(other);
}
END_TEST

static const struct backoff_case {
	int attempts;
	int64_t retry_after;
	uint32_t rnd;
	int64_t want;
} backoff_cases[] = {
    /* initial 1 s, max 60 s; equal jitter: d/2 + rnd % (d/2 + 1) */
    {1, -1, 0, 500},	{1, -1, 500, 1000},
    {1, -1, 501, 500},	{2, -1, 0, 1000},
    {3, -1, 0, 2000},	{7, -1, 0, 30000},
    {8, -1, 0, 30000},	/* capped at max */
    {40, -1, 0, 30000}, /* no overflow */
    {2, 5000, 0, 5000}, /* Retry-After wins */
    {2, 0, 0, 0},	{2, 7200000, 0, FWD_RETRY_AFTER_MAX_MS},
};

START_TEST(test_backoff)
{
	const struct backoff_case *c = &backoff_cases[_i];
	struct cfg_retry rc = {.initial_ms = 1000, .max_ms = 60000};

	ck_assert_int_eq(forward_backoff_ms(&rc, c->attempts, c->retry_after, c->rnd), c->want);
}
END_TEST

/* ---- which integration takes a message ----------------------------------- */

static const struct match_case {
	const char *facility[3]; /* MSH-4 rule of each candidate; "*" none */
	const char *msh4;	 /* NULL: no MSH */
	int want;
} match_cases[] = {
    {{"*", NULL, NULL}, "LAB", 0},
    {{"*", "LAB", NULL}, "LAB", 1}, /* a rule beats a catch-all before it */
    {{"RAD", "LAB", NULL}, "LAB", 1},
    {{"RAD", "LAB", NULL}, "ICU", -1},
    {{"RAD", "*", NULL}, "ICU", 1},
    {{"RAD", "*", NULL}, NULL, 1}, /* X12: only the catch-all */
    {{"RAD", "LAB", NULL}, NULL, -1},
    {{"*", "*", NULL}, "ICU", 0}, /* the first catch-all */
};

START_TEST(test_match)
{
	const struct match_case *c = &match_cases[_i];
	struct cfg_integration ci[3];
	const struct cfg_integration *cands[3];
	struct hl7_msh msh = {0};
	size_t n = 0;

	memset(ci, 0, sizeof(ci));
	for (; n < 3 && c->facility[n]; n++) {
		if (strcmp(c->facility[n], "*") != 0)
			ci[n].match_sending_facility = (char *)c->facility[n];
		cands[n] = &ci[n];
	}
	if (c->msh4)
		msh.sending_facility = (struct hl7_str){c->msh4, strlen(c->msh4)};
	ck_assert_int_eq(mllp_in_match(cands, n, c->msh4 ? &msh : NULL), c->want);
}
END_TEST

/* ---- whether an answer is sent at all ------------------------------------- */

static const struct wanted_case {
	const char *msh15, *msh16;
	enum hl7_ack_code code;
	int want;
	int always;
} wanted_cases[] = {
    {"NE", "AL", HL7_ACCEPT, 1, 1}, /* accept_ack: always */
    {"ER", "AL", HL7_ACCEPT, 1, 1}, {"SU", "AL", HL7_REJECT, 1, 1},
    {NULL, NULL, HL7_ACCEPT, 1, 0}, /* original mode: always */
    {NULL, NULL, HL7_REJECT, 1, 0}, {"AL", "NE", HL7_ACCEPT, 1, 0},
    {"NE", "AL", HL7_ACCEPT, 0, 0}, {"NE", "AL", HL7_REJECT, 0, 0},
    {"ER", "AL", HL7_ACCEPT, 0, 0}, {"ER", "AL", HL7_ERROR, 1, 0},
    {"SU", "AL", HL7_ACCEPT, 1, 0}, {"SU", "AL", HL7_REJECT, 0, 0},
    {"XX", "AL", HL7_ACCEPT, 1, 0}, /* unknown: answer */
};

START_TEST(test_ack_wanted)
{
	const struct wanted_case *c = &wanted_cases[_i];
	struct hl7_msh msh = {0};

	if (c->msh15)
		msh.accept_ack = (struct hl7_str){c->msh15, strlen(c->msh15)};
	if (c->msh16)
		msh.app_ack = (struct hl7_str){c->msh16, strlen(c->msh16)};
	ck_assert_int_eq(mllp_in_ack_wanted(&msh, c->code, c->always), c->want);
}
END_TEST

static Suite *core_suite(void)
{
	Suite *su = suite_create("core");
	TCase *tc = tcase_create("commit");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_one_commit_per_pass);
	tcase_add_test(tc, test_missing_row_spares_batch);
	tcase_add_test(tc, test_refusal_is_alone);
	tcase_add_test(tc, test_full_disk_refuses_batch);
	tcase_add_test(tc, test_free_cancels_staged);
	tcase_add_test(tc, test_stage_keeps_channel);
	tcase_add_loop_test(tc, test_outbound_marks, 0, N_OF(outmark_cases));
	tcase_add_test(tc, test_marks_ride_on_commit);
	suite_add_tcase(su, tc);
	tc = tcase_create("files");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_stage_file_one_txn);
	tcase_add_loop_test(tc, test_stage_file_fails, 0, N_OF(file_fail_cases));
	tcase_add_loop_test(tc, test_stage_file_refused, 0, N_OF(file_refuse_cases));
	tcase_add_test(tc, test_file_dispose_rides);
	suite_add_tcase(su, tc);
	tc = tcase_create("decisions");
	tcase_add_loop_test(tc, test_backoff, 0, N_OF(backoff_cases));
	tcase_add_loop_test(tc, test_match, 0, N_OF(match_cases));
	tcase_add_loop_test(tc, test_ack_wanted, 0, N_OF(wanted_cases));
	suite_add_tcase(su, tc);
	return su;
}

int main(void)
{
	SRunner *sr = srunner_create(core_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
