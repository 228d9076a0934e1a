/*
 * The durable spool and the operator's spool commands, on real SQLite files
 * in a temporary directory.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mllp-bridge/spool.h"
#include "mllp-bridge/spool_cli.h"

#define T0	1764424800000LL			       /* 2025-11-29T14:00:00Z */
#define KEY	"5d0c7a2e-4b1f-8a3c-9d2e-0123456789ab" /* the tests' default key */
#define DAY_MS	86400000LL
#define MAX_IDS 4096
#define SHA_A	"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define SHA_B	"fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"

static char g_root[64];
static char g_db[128];

/* ---- fixtures and helpers ---------------------------------------------- */

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	(void)st;
	(void)flag;
	(void)f;
	return remove(p);
}

/* Unchecked (parent process): one root per test case, removed even when a
 * test failed halfway. */
static void root_setup(void)
{
	strcpy(g_root, "/tmp/spool-test-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(g_root));
}

static void root_teardown(void)
{
	nftw(g_root, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

/* Checked (each test): a fresh directory and database path. */
static void db_setup(void)
{
	char dir[96];

	snprintf(dir, sizeof(dir), "%s/t-XXXXXX", g_root);
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(g_db, sizeof(g_db), "%s/spool.db", dir);
}

static struct spool *open_ok(void)
{
	struct spool *s = NULL;
	int err = spool_open(g_db, &s);

	ck_assert_msg(err == 0, "spool_open: %d %s", err, spool_errmsg(s));
	return s;
}

static int64_t append(struct spool *s, const char *integ, const char *body, int64_t received)
{
	struct spool_new m = {.integration = integ,
			      .sender = "203.0.113.70:4242",
			      .content_type = "application/hl7-v2",
			      .control_id = "MSG00001",
			      .idem_key = KEY,
			      .lane = "f:LAB^H",
			      .received_ms = received,
			      .body = body,
			      .len = strlen(body)};
	int64_t id = 0;
	int err = spool_append(s, &m, &id);

	ck_assert_msg(err == 0, "append: %d %s", err, spool_errmsg(s));
	return id;
}

/* A small row of integration "lab" for the failure and crash tests. */
#define SMALL_ROW(when, b, n)                                                                      \
	((struct spool_new){.integration = "lab",                                                  \
			    .sender = "s",                                                         \
			    .content_type = "t",                                                   \
			    .control_id = "c",                                                     \
			    .idem_key = KEY,                                                       \
			    .received_ms = (when),                                                 \
			    .body = (b),                                                           \
			    .len = (n)})

static void commit_ok(struct spool *s)
{
	int err = spool_commit(s);

	ck_assert_msg(err == 0, "commit: %d %s", err, spool_errmsg(s));
}

/* One integer from the database through a connection of its own. */
static int64_t sql_int(const char *sql)
{
	sqlite3 *db;
	sqlite3_stmt *st;
	int64_t v = -1;

	ck_assert_int_eq(sqlite3_open_v2(g_db, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	ck_assert_msg(sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK, "%s: %s", sql,
		      sqlite3_errmsg(db));
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return v;
}

static void sql_exec(const char *sql)
{
	sqlite3 *db;

	ck_assert_int_eq(sqlite3_open(g_db, &db), SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	ck_assert_msg(sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK, "%s: %s", sql,
		      sqlite3_errmsg(db));
	sqlite3_close(db);
}

static int64_t row_count(void)
{
	return sql_int("SELECT count(*) FROM messages");
}

struct ids {
	int64_t id[MAX_IDS];
	int state[MAX_IDS];
	int n;
	int stop_at; /* return 7 when this many were seen (0: never) */
};

static int collect(void *arg, const struct spool_row *r)
{
	struct ids *c = arg;

	ck_assert_int_lt(c->n, MAX_IDS);
	c->id[c->n] = r->id;
	c->state[c->n] = (int)r->state;
	c->n++;
	return c->stop_at && c->n == c->stop_at ? 7 : 0;
}

/* ---- opening ------------------------------------------------------------ */

START_TEST(test_open_schema)
{
	struct spool *s = open_ok();
	struct stat st;

	spool_close(s);
	s = open_ok(); /* a second open finds the schema in place */
	spool_close(s);
	ck_assert_int_eq(sql_int("SELECT journal_mode = 'wal' FROM pragma_journal_mode"), 1);
	ck_assert_int_eq(sql_int("PRAGMA user_version"), 4);
	ck_assert_int_eq(sql_int("SELECT count(*) FROM pragma_table_info('messages')"), 19);
	/* New spools keep the small columns, and the ACK, before the body. */
	for (const char *const *c =
		 (const char *const[]){"lane2", "channel", "ack", "file_name", NULL};
	     *c; c++) {
		char sql[256];

		snprintf(
		    sql, sizeof(sql),
		    "SELECT (SELECT cid FROM pragma_table_info('messages') WHERE name = '%s') < "
		    "(SELECT cid FROM pragma_table_info('messages') WHERE name = 'body')",
		    *c);
		ck_assert_msg(sql_int(sql) == 1, "%s is not before the body", *c);
	}
	ck_assert_int_eq(sql_int("SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND "
				 "name IN ('messages_state', 'messages_integration', "
				 "'messages_delivered', 'messages_replayed', 'messages_key')"),
			 5);
	/* No new index on messages: an MLLP append pays for nothing of files. */
	ck_assert_int_eq(sql_int("SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND "
				 "tbl_name = 'messages'"),
			 5);
	ck_assert_int_eq(sql_int("SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND "
				 "name IN ('files_open', 'files_disposed')"),
			 2);
	ck_assert_int_eq(sql_int("SELECT count(*) FROM pragma_table_list WHERE name = 'file_rows' "
				 "AND wr = 1"),
			 1); /* WITHOUT ROWID */
	ck_assert_int_eq(stat(g_db, &st), 0);
	ck_assert_int_eq(st.st_mode & 0777, 0600);
}
END_TEST

static const struct refuse_case {
	const char *sql;     /* run on a fresh spool, or NULL: the file is not SQLite */
	const char *errtext; /* expected in spool_errmsg() */
} refuse_cases[] = {
    {"PRAGMA user_version = 99", "newer than this mllp-bridge knows"},
    {"PRAGMA user_version = 5", "version 5 is newer"},
    {"PRAGMA application_id = 42", "not a spool database"},
    {NULL, "not a database"},
};

START_TEST(test_open_refuses)
{
	const struct refuse_case *c = &refuse_cases[_i];
	struct spool *s = NULL;
	int err;

	if (c->sql) {
		spool_close(open_ok());
		sql_exec(c->sql);
	} else {
		FILE *f = fopen(g_db, "w");

		ck_assert_ptr_nonnull(f);
		for (int i = 0; i < 64; i++)
			fputs("this is a text file, not a database\n", f);
		fclose(f);
	}
	err = spool_open(g_db, &s);
	ck_assert_int_eq(err, -EPROTO);
	ck_assert_msg(strstr(spool_errmsg(s), c->errtext), "errmsg: %s", spool_errmsg(s));
	spool_close(s);
}
END_TEST

/* A spool written by the first release: its schema (user_version 1) as
 * that release created it, with rows in it. */
static const char v1_spool_sql[] =
    "PRAGMA journal_mode = WAL;"
    "CREATE TABLE messages ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " integration TEXT NOT NULL,"
    " sender TEXT NOT NULL,"
    " content_type TEXT NOT NULL,"
    " control_id TEXT NOT NULL,"
    " idem_key TEXT NOT NULL,"
    " received_ms INTEGER NOT NULL,"
    " state INTEGER NOT NULL,"
    " attempts INTEGER NOT NULL DEFAULT 0,"
    " next_attempt_ms INTEGER NOT NULL DEFAULT 0,"
    " delivered_ms INTEGER NOT NULL DEFAULT 0,"
    " last_error TEXT,"
    " replayed INTEGER NOT NULL DEFAULT 0,"
    " body BLOB NOT NULL);"
    "CREATE INDEX messages_state ON messages (state, id);"
    "CREATE INDEX messages_integration ON messages (integration, state);"
    "CREATE INDEX messages_delivered ON messages (delivered_ms);"
    "CREATE INDEX messages_replayed ON messages (id) WHERE replayed = 1;"
    "PRAGMA application_id = 1296845904;" /* 0x4d4c4c50, "MLLP" */
    "PRAGMA user_version = 1;"
    "INSERT INTO messages (integration, sender, content_type, control_id, idem_key, "
    " received_ms, state, attempts, next_attempt_ms, last_error, body) VALUES "
    " ('lab', '203.0.113.70:4242', 'application/hl7-v2', 'OLD1', "
    "  '11111111-2222-4333-8444-555555555555', 1764424800000, 0, 2, 1764424805000, "
    "  'HTTP 503', X'4d53487c5e7e5c26'),"
    " ('lab', '203.0.113.70:4242', 'application/hl7-v2', 'OLD2', "
    "  '66666666-7777-4888-9999-aaaaaaaaaaaa', 1764424800001, 2, 1, 0, NULL, X'00');";

/* An appliance upgraded with messages in its spool keeps them: the old
 * schema is migrated in place, old rows get lane "", and appends work. */
START_TEST(test_migrate_v1)
{
	struct spool *s;
	struct spool_row r;
	struct ids c = {0};
	void *body = NULL;
	int64_t id;

	sql_exec(v1_spool_sql);
	s = open_ok();
	ck_assert_int_eq(sql_int("PRAGMA user_version"), 4);
	ck_assert_int_eq(sql_int("PRAGMA application_id"), 0x4d4c4c50);
	ck_assert_int_eq(sql_int("SELECT count(*) FROM pragma_table_info('messages')"), 19);
	ck_assert_int_eq(row_count(), 2);

	ck_assert_int_eq(spool_get(s, 1, &r, &body), 0);
	ck_assert_str_eq(r.control_id, "OLD1");
	ck_assert_str_eq(r.idempotency_key, "11111111-2222-4333-8444-555555555555");
	ck_assert_str_eq(r.lane, "");
	ck_assert_str_eq(r.lane2, "");
	ck_assert_int_eq(r.channel, SPOOL_IN);
	ck_assert_ptr_null(r.ack);
	ck_assert_int_eq(r.attempts, 2);
	ck_assert_int_eq(r.next_attempt_ms, T0 + 5000);
	ck_assert_str_eq(r.last_error, "HTTP 503");
	ck_assert_uint_eq(r.len, 8);
	ck_assert_mem_eq(body, "MSH|^~\\&", 8);
	free(body);
	spool_row_clear(&r);
	ck_assert_int_eq(spool_load_pending(s, collect, &c), 0);
	ck_assert_int_eq(c.n, 1);
	ck_assert_int_eq(c.id[0], 1);

	/* New rows carry their lanes; ids go on after the old ones. */
	id = append(s, "lab", "new", T0 + 10);
	ck_assert_int_eq(id, 3);
	commit_ok(s);
	ck_assert_int_eq(spool_get(s, id, &r, NULL), 0);
	ck_assert_str_eq(r.lane, "f:LAB^H");
	ck_assert_str_eq(r.lane2, "");
	ck_assert_str_eq(r.idempotency_key, KEY);
	spool_row_clear(&r);
	spool_close(s);

	/* Opened again: already current, nothing lost. */
	s = open_ok();
	ck_assert_int_eq(sql_int("PRAGMA user_version"), 4);
	ck_assert_int_eq(row_count(), 3);
	ck_assert_int_eq(sql_int("SELECT count(*) FROM sqlite_schema WHERE type = 'index'"), 7);
	spool_close(s);
}
END_TEST

/* A spool written by the release with lanes (user_version 2), as it
 * created it: lanes before the body, no channel, no ack. Row 1 queued,
 * 2 delivered, 3 dead. */
static const char v2_spool_sql[] =
    "PRAGMA journal_mode = WAL;"
    "CREATE TABLE messages ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " integration TEXT NOT NULL,"
    " sender TEXT NOT NULL,"
    " content_type TEXT NOT NULL,"
    " control_id TEXT NOT NULL,"
    " idem_key TEXT NOT NULL,"
    " lane TEXT NOT NULL DEFAULT '',"
    " lane2 TEXT NOT NULL DEFAULT '',"
    " received_ms INTEGER NOT NULL,"
    " state INTEGER NOT NULL,"
    " attempts INTEGER NOT NULL DEFAULT 0,"
    " next_attempt_ms INTEGER NOT NULL DEFAULT 0,"
    " delivered_ms INTEGER NOT NULL DEFAULT 0,"
    " last_error TEXT,"
    " replayed INTEGER NOT NULL DEFAULT 0,"
    " body BLOB NOT NULL);"
    "CREATE INDEX messages_state ON messages (state, id);"
    "CREATE INDEX messages_integration ON messages (integration, state);"
    "CREATE INDEX messages_delivered ON messages (delivered_ms);"
    "CREATE INDEX messages_replayed ON messages (id) WHERE replayed = 1;"
    "PRAGMA application_id = 1296845904;"
    "PRAGMA user_version = 2;"
    "INSERT INTO messages (integration, sender, content_type, control_id, idem_key, lane, "
    " lane2, received_ms, state, attempts, delivered_ms, last_error, body) VALUES "
    " ('lab', '203.0.113.70:4242', 'application/hl7-v2', 'V2A', '" KEY "', 'f:LAB^H', '', "
    "  1764424800000, 0, 1, 0, 'HTTP 503', X'4d5348'),"
    " ('lab', '203.0.113.70:4242', 'application/hl7-v2', 'V2B', 'k-2', 'f:LAB^H', '', "
    "  1764424800001, 2, 0, 1764424800002, NULL, X'4d5348'),"
    " ('adt', '203.0.113.71:4242', 'application/hl7-v2', 'V2C', 'k-3', 'i', 'p:x', "
    "  1764424800002, 3, 5, 0, 'HTTP 400', X'4d5348');";

static int64_t find(struct spool *s, enum spool_channel ch, const char *route, const char *key)
{
	int64_t id = -1;
	int err = spool_find_key(s, ch, route, key, &id);

	ck_assert_msg(err == 0 || err == -ENOENT, "find_key: %d %s", err, spool_errmsg(s));
	return err ? 0 : id;
}

/* 2 → 3: every old row is inbound, has no ACK, and is where it was; the
 * spool takes outbound rows at once. */
START_TEST(test_migrate_v2)
{
	struct spool *s;
	struct spool_row r;
	struct ids in = {0}, out = {0};
	struct spool_new m = SMALL_ROW(T0, "MSH|out", 7);
	int64_t id;

	sql_exec(v2_spool_sql);
	s = open_ok();
	ck_assert_int_eq(sql_int("PRAGMA user_version"), 4);
	ck_assert_int_eq(sql_int("SELECT count(*) FROM pragma_table_info('messages')"), 19);
	ck_assert_int_eq(sql_int("SELECT count(*) FROM sqlite_schema WHERE type = 'index'"), 7);
	ck_assert_int_eq(sql_int("SELECT count(*) FROM messages WHERE channel = 0 AND ack IS NULL"),
			 3);
	for (int64_t i = 1; i <= 3; i++) {
		ck_assert_int_eq(spool_get(s, i, &r, NULL), 0);
		ck_assert_int_eq(r.channel, SPOOL_IN);
		ck_assert_ptr_null(r.ack);
		ck_assert_uint_eq(r.ack_len, 0);
		ck_assert_int_eq(r.state, i == 1   ? SPOOL_QUEUED
					  : i == 2 ? SPOOL_DELIVERED
						   : SPOOL_DEAD);
		ck_assert_str_eq(r.lane, i == 3 ? "i" : "f:LAB^H");
		spool_row_clear(&r);
	}
	ck_assert_int_eq(spool_load_pending(s, collect, &in), 0);
	ck_assert_int_eq(in.n, 1);
	ck_assert_int_eq(in.id[0], 1);
	ck_assert_int_eq(find(s, SPOOL_IN, "lab", KEY), 1);
	ck_assert_int_eq(find(s, SPOOL_OUT, "lab", KEY), 0);

	m.channel = SPOOL_OUT;
	m.integration = "lis";
	ck_assert_int_eq(spool_append(s, &m, &id), 0);
	ck_assert_int_eq(id, 4);
	commit_ok(s);
	ck_assert_int_eq(spool_load_pending_channel(s, SPOOL_OUT, collect, &out), 0);
	ck_assert_int_eq(out.n, 1);
	ck_assert_int_eq(out.id[0], 4);
	ck_assert_int_eq(find(s, SPOOL_OUT, "lis", KEY), 4);
	spool_close(s);

	s = open_ok(); /* already current */
	ck_assert_int_eq(sql_int("PRAGMA user_version"), 4);
	ck_assert_int_eq(row_count(), 4);
	spool_close(s);
}
END_TEST

/* A spool written by the release with outbound rows (user_version 3), as
 * it created it: channel and ack before the body, no file_name, no file
 * tables. Rows: 1 queued, 2 in flight, 3 delivered, 4 dead (inbound);
 * 5 rejected, 6 acked (outbound, with their ACKs). */
static const char v3_spool_sql[] =
    "PRAGMA journal_mode = WAL;"
    "CREATE TABLE messages ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " integration TEXT NOT NULL,"
    " sender TEXT NOT NULL,"
    " content_type TEXT NOT NULL,"
    " control_id TEXT NOT NULL,"
    " idem_key TEXT NOT NULL,"
    " lane TEXT NOT NULL DEFAULT '',"
    " lane2 TEXT NOT NULL DEFAULT '',"
    " channel INTEGER NOT NULL DEFAULT 0,"
    " received_ms INTEGER NOT NULL,"
    " state INTEGER NOT NULL,"
    " attempts INTEGER NOT NULL DEFAULT 0,"
    " next_attempt_ms INTEGER NOT NULL DEFAULT 0,"
    " delivered_ms INTEGER NOT NULL DEFAULT 0,"
    " last_error TEXT,"
    " replayed INTEGER NOT NULL DEFAULT 0,"
    " ack BLOB,"
    " body BLOB NOT NULL);"
    "CREATE INDEX messages_state ON messages (state, id);"
    "CREATE INDEX messages_integration ON messages (integration, state);"
    "CREATE INDEX messages_delivered ON messages (delivered_ms);"
    "CREATE INDEX messages_replayed ON messages (id) WHERE replayed = 1;"
    "CREATE INDEX messages_key ON messages (channel, integration, idem_key) "
    "WHERE channel <> 0;"
    "PRAGMA application_id = 1296845904;"
    "PRAGMA user_version = 3;"
    "INSERT INTO messages (integration, sender, content_type, control_id, idem_key, lane, "
    " lane2, channel, received_ms, state, attempts, delivered_ms, last_error, ack, body) VALUES "
    " ('lab', 's', 't', 'V3A', '" KEY "', 'f:A', '', 0, 1764424800000, 0, 1, 0, 'HTTP 503', "
    "  NULL, X'4d5348'),"
    " ('lab', 's', 't', 'V3B', 'k-2', 'f:A', '', 0, 1764424800001, 1, 0, 0, NULL, NULL, "
    "  X'4d5348'),"
    " ('lab', 's', 't', 'V3C', 'k-3', 'f:A', '', 0, 1764424800002, 2, 1, 1764424800003, NULL, "
    "  NULL, X'4d5348'),"
    " ('adt', 's', 't', 'V3D', 'k-4', 'i', '', 0, 1764424800003, 3, 5, 0, 'HTTP 400', NULL, "
    "  X'4d5348'),"
    " ('lis', 'c', 't', 'V3E', 'k-5', 'd', '', 1, 1764424800004, 4, 1, 0, 'AR', "
    "  X'4d53417c4152', X'4d5348'),"
    " ('lis', 'c', 't', 'V3F', 'k-6', 'd', '', 1, 1764424800005, 2, 1, 1764424800006, NULL, "
    "  X'4d53417c4141', X'4d5348');";

/* 3 → 4: every row kept where it was, none from a file, no file records;
 * a file can be recorded at once. */
START_TEST(test_migrate_v3)
{
	static const enum spool_state states[] = {SPOOL_QUEUED, SPOOL_INFLIGHT, SPOOL_DELIVERED,
						  SPOOL_DEAD,	SPOOL_REJECTED, SPOOL_DELIVERED};
	struct spool *s;
	struct spool_row r;
	struct ids in = {0};
	int64_t rows[1], fid = 0;

	sql_exec(v3_spool_sql);
	s = open_ok();
	ck_assert_int_eq(sql_int("PRAGMA user_version"), 4);
	ck_assert_int_eq(sql_int("SELECT count(*) FROM pragma_table_info('messages')"), 19);
	ck_assert_int_eq(sql_int("SELECT count(*) FROM sqlite_schema WHERE type = 'index'"), 7);
	ck_assert_int_eq(row_count(), 6);
	ck_assert_int_eq(sql_int("SELECT count(*) FROM messages WHERE file_name IS NULL"), 6);
	ck_assert_int_eq(sql_int("SELECT count(*) FROM files"), 0);
	ck_assert_int_eq(sql_int("SELECT count(*) FROM file_rows"), 0);
	for (int64_t i = 1; i <= 6; i++) {
		ck_assert_int_eq(spool_get(s, i, &r, NULL), 0);
		ck_assert_int_eq(r.state, states[i - 1]);
		ck_assert_int_eq(r.channel, i >= 5 ? SPOOL_OUT : SPOOL_IN);
		ck_assert_ptr_null(r.file_name);
		ck_assert_uint_eq(r.ack_len, i >= 5 ? 6 : 0);
		spool_row_clear(&r);
	}
	ck_assert_int_eq(spool_load_pending(s, collect, &in), 0);
	ck_assert_int_eq(in.n, 2); /* the queued and the in-flight row */
	ck_assert_int_eq(find(s, SPOOL_OUT, "lis", "k-6"), 6);

	rows[0] = 1;
	ck_assert_int_eq(
	    spool_file_add(s,
			   &(struct spool_file){
			       .route = "lab", .name = "a.hl7", .sha256 = SHA_A, .received_ms = T0},
			   rows, 1, &fid),
	    0);
	commit_ok(s);
	ck_assert_int_eq(fid, 1);
	spool_close(s);

	s = open_ok(); /* already current */
	ck_assert_int_eq(sql_int("PRAGMA user_version"), 4);
	ck_assert_int_eq(row_count(), 6);
	ck_assert_int_eq(sql_int("SELECT count(*) FROM file_rows"), 1);
	spool_close(s);
}
END_TEST

/* ---- append, commit, get ------------------------------------------------ */

START_TEST(test_roundtrip)
{
	static const uint8_t bin[] = {'M', 'S', 'H', '|', 0, 0x0d, 0xff, 0x0b, 'x'};
	struct spool_new m = {.integration = "lab",
			      .sender = "[2001:db8::7]:9999",
			      .content_type = "x-application/hl7-v2+er7; charset=UTF-8",
			      .control_id = "CTL-9",
			      .idem_key = "8f14e45f-ceea-867a-9a2b-1c0d2e3f4a5b",
			      .lane = "p:EPIC^NW:0c97acd6075f19f9",
			      .lane2 = "p:EPIC^NW:4468c00dd5422c48",
			      .received_ms = T0 + 5,
			      .body = bin,
			      .len = sizeof(bin)};
	/* Lanes NULL count as ""; any visible ASCII up to SPOOL_KEY_MAX is a key. */
	struct spool_new empty = {.integration = "adt",
				  .sender = "203.0.113.9:1",
				  .content_type = "text/plain",
				  .control_id = "",
				  .idem_key = "k~2!",
				  .received_ms = T0 + 6};
	int64_t id1, id2, id3;
	struct spool_row r;
	void *body = NULL;
	struct spool *s = open_ok();

	ck_assert_int_eq(spool_append(s, &m, &id1), 0);
	ck_assert_int_eq(spool_append(s, &empty, &id2), 0);
	ck_assert_int_gt(id2, id1);
	/* A byte-identical resend carries the same key: stored all the same. */
	ck_assert_int_eq(spool_append(s, &m, &id3), 0);
	ck_assert_int_gt(id3, id2);
	commit_ok(s);
	spool_close(s);

	s = open_ok();
	ck_assert_int_eq(spool_get(s, id1, &r, &body), 0);
	ck_assert_str_eq(r.integration, "lab");
	ck_assert_str_eq(r.sender, "[2001:db8::7]:9999");
	ck_assert_str_eq(r.content_type, m.content_type);
	ck_assert_str_eq(r.control_id, "CTL-9");
	ck_assert_str_eq(r.idempotency_key, m.idem_key);
	ck_assert_str_eq(r.lane, m.lane);
	ck_assert_str_eq(r.lane2, m.lane2);
	ck_assert_int_eq(r.received_ms, T0 + 5);
	ck_assert_int_eq(r.state, SPOOL_QUEUED);
	ck_assert_int_eq(r.attempts, 0);
	ck_assert_int_eq(r.delivered_ms, 0);
	ck_assert_ptr_null(r.last_error);
	ck_assert_uint_eq(r.len, sizeof(bin));
	ck_assert_mem_eq(body, bin, sizeof(bin));
	free(body);
	spool_row_clear(&r);

	ck_assert_int_eq(spool_get(s, id2, &r, NULL), 0); /* metadata only */
	ck_assert_uint_eq(r.len, 0);
	ck_assert_str_eq(r.control_id, "");
	ck_assert_str_eq(r.idempotency_key, "k~2!");
	ck_assert_str_eq(r.lane, "");
	ck_assert_str_eq(r.lane2, "");
	spool_row_clear(&r);
	ck_assert_int_eq(spool_get(s, id3, &r, NULL), 0);
	ck_assert_str_eq(r.idempotency_key, m.idem_key);
	spool_row_clear(&r);

	ck_assert_int_eq(spool_get(s, 999, &r, &body), -ENOENT);
	ck_assert_ptr_null(r.integration);
	ck_assert_ptr_null(body);
	spool_close(s);
}
END_TEST

START_TEST(test_uncommitted_is_lost)
{
	struct spool *s = open_ok();
	struct ids c = {0};

	append(s, "lab", "one", T0);
	append(s, "lab", "two", T0);
	commit_ok(s);
	for (int i = 0; i < 3; i++)
		append(s, "lab", "staged", T0);
	ck_assert_uint_eq(spool_pending(s), 3);
	spool_close(s); /* no commit: like a crash before the fsync */

	s = open_ok();
	ck_assert_int_eq(spool_load_pending(s, collect, &c), 0);
	ck_assert_int_eq(c.n, 2);
	ck_assert_int_eq(row_count(), 2);
	spool_close(s);
}
END_TEST

START_TEST(test_pending_and_unknown_ids)
{
	struct spool *s = open_ok(), *other = open_ok();
	int64_t a;

	ck_assert_uint_eq(spool_pending(s), 0);
	a = append(s, "lab", "a", T0);
	commit_ok(s);
	ck_assert_uint_eq(spool_pending(s), 0);

	/* A failed mark on an unknown id must not leave a batch (and the
	 * write lock) behind: another handle can write at once. */
	ck_assert_int_eq(spool_mark_inflight(s, 4242), -ENOENT);
	ck_assert_int_eq(spool_mark_delivered(s, 4242, T0), -ENOENT);
	ck_assert_int_eq(spool_mark_retry(s, 4242, 1, T0, "x"), -ENOENT);
	ck_assert_int_eq(spool_mark_dead(s, 4242, 1, NULL, 0, "x"), -ENOENT);
	ck_assert_int_eq(spool_mark_acked(s, 4242, 1, T0, "MSA|AA", 6), -ENOENT);
	ck_assert_int_eq(spool_mark_rejected(s, 4242, 1, "MSA|AR", 6, "AR"), -ENOENT);
	ck_assert_uint_eq(spool_pending(s), 0);
	append(other, "lab", "b", T0);
	commit_ok(other);

	/* State changes count as pending: a batch of marks alone must be
	 * committed too. */
	ck_assert_int_eq(spool_mark_inflight(s, a), 0);
	ck_assert_uint_eq(spool_pending(s), 1);
	append(s, "lab", "c", T0);
	ck_assert_uint_eq(spool_pending(s), 2);
	ck_assert_int_eq(spool_mark_inflight(s, 4242), -ENOENT);
	ck_assert_int_eq(spool_mark_acked(s, 4242, 1, T0, NULL, 0), -ENOENT);
	ck_assert_int_eq(spool_mark_rejected(s, 4242, 1, NULL, 0, NULL), -ENOENT);
	ck_assert_uint_eq(spool_pending(s), 2); /* the batch survived */
	commit_ok(s);
	ck_assert_uint_eq(spool_pending(s), 0);
	ck_assert_int_eq(row_count(), 3);
	ck_assert_int_eq(sql_int("SELECT state FROM messages WHERE id = 1"), SPOOL_INFLIGHT);
	spool_close(other);
	spool_close(s);
}
END_TEST

START_TEST(test_ids_not_reused)
{
	struct spool *s = open_ok();
	int n = 0;

	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(append(s, "lab", "x", T0), i + 1);
	commit_ok(s);
	for (int i = 1; i <= 3; i++)
		ck_assert_int_eq(spool_mark_delivered(s, i, T0), 0);
	commit_ok(s);
	ck_assert_int_eq(spool_purge(s, INT64_MAX, 0, &n), 0);
	ck_assert_int_eq(n, 3);
	ck_assert_int_eq(row_count(), 0);
	spool_close(s);
	s = open_ok();
	ck_assert_int_eq(append(s, "lab", "y", T0), 4);
	commit_ok(s);
	spool_close(s);
}
END_TEST

/* A field of an append check: a string, or "#n" for n bytes of 'L'. */
#define LONG_TEXT "#1025" /* SPOOL_TEXT_MAX + 1 */
#define KEY_64	  "#64"	  /* SPOOL_KEY_MAX */
#define KEY_65	  "#65"
#define LANE_256  "#256" /* SPOOL_LANE_MAX */
#define LANE_257  "#257"

static const struct append_check {
	const char *name;
	const char *integ, *sender, *ctl, *key, *lane, *lane2;
	const char *body;
	size_t len;
	int err;     /* 0: accepted */
	int channel; /* spool_new.channel */
} append_checks[] = {
    {"integration NULL", NULL, "s", "c", KEY, "", "", "b", 1, -EINVAL, SPOOL_IN},
    {"sender NULL", "lab", NULL, "c", KEY, "", "", "b", 1, -EINVAL, SPOOL_IN},
    {"control_id NULL", "lab", "s", NULL, KEY, "", "", "b", 1, -EINVAL, SPOOL_IN},
    {"body NULL", "lab", "s", "c", KEY, "", "", NULL, 5, -EINVAL, SPOOL_IN},
    {"body too long", "lab", "s", "c", KEY, "", "", "b", SPOOL_BODY_MAX + 1ull, -EMSGSIZE,
     SPOOL_IN},
    {"control_id too long", "lab", "s", LONG_TEXT, KEY, "", "", "b", 1, -EMSGSIZE, SPOOL_IN},
    {"key NULL", "lab", "s", "c", NULL, "", "", "b", 1, -EINVAL, SPOOL_IN},
    {"key empty", "lab", "s", "c", "", "", "", "b", 1, -EINVAL, SPOOL_IN},
    {"key with a space", "lab", "s", "c", "a b", "", "", "b", 1, -EINVAL, SPOOL_IN},
    {"key ending in a space", "lab", "s", "c", "ab ", "", "", "b", 1, -EINVAL, SPOOL_IN},
    {"key with a tab", "lab", "s", "c", "a\tb", "", "", "b", 1, -EINVAL, SPOOL_IN},
    {"key with DEL", "lab", "s", "c", "a\x7f", "", "", "b", 1, -EINVAL, SPOOL_IN},
    {"key not ASCII", "lab", "s", "c", "cl\xc3\xa9", "", "", "b", 1, -EINVAL, SPOOL_IN},
    {"key of SPOOL_KEY_MAX", "lab", "s", "c", KEY_64, "", "", "b", 1, 0, SPOOL_IN},
    {"key too long", "lab", "s", "c", KEY_65, "", "", "b", 1, -EMSGSIZE, SPOOL_IN},
    {"lanes NULL", "lab", "s", "c", KEY, NULL, NULL, "b", 1, 0, SPOOL_IN},
    {"lane of SPOOL_LANE_MAX", "lab", "s", "c", KEY, LANE_256, LANE_256, "b", 1, 0, SPOOL_IN},
    {"lane too long", "lab", "s", "c", KEY, LANE_257, "", "b", 1, -EMSGSIZE, SPOOL_IN},
    {"lane2 too long", "lab", "s", "c", KEY, "i", LANE_257, "b", 1, -EMSGSIZE, SPOOL_IN},
    {"outbound", "lis", "s", "c", KEY, "", "", "b", 1, 0, SPOOL_OUT},
    {"no such channel", "lis", "s", "c", KEY, "", "", "b", 1, -EINVAL, 2},
    {"negative channel", "lis", "s", "c", KEY, "", "", "b", 1, -EINVAL, -1},
};

/* "#n" → n bytes of 'L' in buf (SPOOL_TEXT_MAX + 2 bytes); else v itself. */
static const char *expand(const char *v, char *buf)
{
	size_t n;

	if (!v || v[0] != '#')
		return v;
	n = strtoul(v + 1, NULL, 10);
	ck_assert_uint_le(n, SPOOL_TEXT_MAX + 1);
	memset(buf, 'L', n);
	buf[n] = '\0';
	return buf;
}

/* A refused argument refuses that message only: the batch stays. An
 * accepted one at a limit is stored as given. */
START_TEST(test_append_checks)
{
	const struct append_check *c = &append_checks[_i];
	char *bufs[4];
	struct spool *s = open_ok();
	struct spool_row r;
	struct spool_new m;
	int64_t id = 0;
	int err;

	for (size_t i = 0; i < 4; i++)
		ck_assert_ptr_nonnull(bufs[i] = malloc(SPOOL_TEXT_MAX + 2));
	m = (struct spool_new){.integration = c->integ,
			       .sender = c->sender,
			       .content_type = "t",
			       .control_id = expand(c->ctl, bufs[0]),
			       .idem_key = expand(c->key, bufs[1]),
			       .lane = expand(c->lane, bufs[2]),
			       .lane2 = expand(c->lane2, bufs[3]),
			       .body = c->body,
			       .len = c->len,
			       .channel = (enum spool_channel)c->channel};
	append(s, "lab", "kept", T0);
	ck_assert_int_eq(spool_check_new(&m), c->err); /* the same answer, no database */
	err = spool_append(s, &m, &id);
	ck_assert_msg(err == c->err, "%s: %d (%s)", c->name, err, spool_errmsg(s));
	ck_assert_uint_eq(spool_pending(s), c->err ? 1 : 2);
	commit_ok(s);
	ck_assert_int_eq(row_count(), c->err ? 1 : 2);
	if (!c->err) {
		ck_assert_int_eq(spool_get(s, id, &r, NULL), 0);
		ck_assert_str_eq(r.idempotency_key, m.idem_key);
		ck_assert_str_eq(r.lane, m.lane ? m.lane : "");
		ck_assert_str_eq(r.lane2, m.lane2 ? m.lane2 : "");
		ck_assert_int_eq(r.channel, c->channel);
		ck_assert_ptr_null(r.file_name);
		spool_row_clear(&r);
	}
	spool_close(s);
	for (size_t i = 0; i < 4; i++)
		free(bufs[i]);
}
END_TEST

static const struct fname_check {
	const char *fname; /* "#n": n bytes */
	int err;
	const char *want; /* stored (accepted only); NULL: none */
} fname_checks[] = {
    {"ADT 100%.hl7", 0, "ADT 100%.hl7"},
    {"b\xc3\xa9"
     "b\xc3\xa9.hl7",
     0,
     "b\xc3\xa9"
     "b\xc3\xa9.hl7"},
    {"", 0, NULL},
    {NULL, 0, NULL},
    {"#255", 0, "#255"}, /* SPOOL_FILE_NAME_MAX */
    {"#256", -EMSGSIZE, NULL},
    {"in/a.hl7", -EINVAL, NULL},
    {"a\nb", -EINVAL, NULL},
    {"a\tb", -EINVAL, NULL},
    {"a\x7f", -EINVAL, NULL},
    {"..", -EINVAL, NULL},
    {".", -EINVAL, NULL},
};

/* A row's file name: kept exactly, or refused like any bad field (the
 * batch stays); spool_check_new() answers the same without a database. */
START_TEST(test_append_file_name)
{
	const struct fname_check *c = &fname_checks[_i];
	char *name = malloc(SPOOL_TEXT_MAX + 2), *want = malloc(SPOOL_TEXT_MAX + 2);
	struct spool *s = open_ok();
	struct spool_new m = SMALL_ROW(T0, "MSH|", 4);
	struct spool_row r;
	int64_t id = 0;

	ck_assert(name && want);
	m.file_name = expand(c->fname, name);
	append(s, "lab", "kept", T0);
	ck_assert_int_eq(spool_check_new(&m), c->err);
	ck_assert_int_eq(spool_append(s, &m, &id), c->err);
	commit_ok(s);
	ck_assert_int_eq(row_count(), c->err ? 1 : 2);
	if (!c->err) {
		ck_assert_int_eq(spool_get(s, id, &r, NULL), 0);
		if (c->want)
			ck_assert_str_eq(r.file_name, expand(c->want, want));
		else
			ck_assert_ptr_null(r.file_name);
		spool_row_clear(&r);
	}
	spool_close(s);
	free(name);
	free(want);
}
END_TEST

/* ---- state changes ------------------------------------------------------ */

enum mark_op { MARK_INFLIGHT, MARK_DELIVERED, MARK_RETRY, MARK_DEAD };

static const struct mark_case {
	enum mark_op op;
	int attempts;
	int64_t when;
	const char *error;
	/* expected */
	enum spool_state state;
	int64_t next_attempt_ms, delivered_ms;
} mark_cases[] = {
    {MARK_INFLIGHT, 0, 0, NULL, SPOOL_INFLIGHT, 0, 0},
    {MARK_DELIVERED, 0, T0 + 77, NULL, SPOOL_DELIVERED, 0, T0 + 77},
    {MARK_RETRY, 3, T0 + 5000, "HTTP 503 Service Unavailable", SPOOL_QUEUED, T0 + 5000, 0},
    {MARK_RETRY, 1, T0 + 1000, NULL, SPOOL_QUEUED, T0 + 1000, 0},
    {MARK_DEAD, 7, 0, "HTTP 400: missing PID segment", SPOOL_DEAD, 0, 0},
};

START_TEST(test_marks)
{
	const struct mark_case *c = &mark_cases[_i];
	struct spool *s = open_ok();
	struct spool_row r;
	int64_t id = append(s, "lab", "body", T0);
	int err = 0;

	commit_ok(s);
	switch (c->op) {
	case MARK_INFLIGHT:
		err = spool_mark_inflight(s, id);
		break;
	case MARK_DELIVERED:
		err = spool_mark_delivered(s, id, c->when);
		break;
	case MARK_RETRY:
		err = spool_mark_retry(s, id, c->attempts, c->when, c->error);
		break;
	case MARK_DEAD:
		err = spool_mark_dead(s, id, c->attempts, NULL, 0, c->error);
		break;
	}
	ck_assert_int_eq(err, 0);
	commit_ok(s);
	spool_close(s);

	s = open_ok(); /* durable, not only in this handle */
	ck_assert_int_eq(spool_get(s, id, &r, NULL), 0);
	ck_assert_int_eq(r.state, c->state);
	ck_assert_int_eq(r.attempts, c->attempts);
	ck_assert_int_eq(r.next_attempt_ms, c->next_attempt_ms);
	ck_assert_int_eq(r.delivered_ms, c->delivered_ms);
	if (c->error)
		ck_assert_str_eq(r.last_error, c->error);
	else
		ck_assert_ptr_null(r.last_error);
	spool_row_clear(&r);
	spool_close(s);
}
END_TEST

static const struct cut_case {
	const char *unit; /* repeated to make a long error */
	size_t stored;	  /* expected stored length */
} cut_cases[] = {
    {"a", SPOOL_ERROR_MAX},
    {"\xc3\xa9", SPOOL_ERROR_MAX},	       /* é: 2 bytes, 512 is a boundary */
    {"\xe2\x82\xac", SPOOL_ERROR_MAX / 3 * 3}, /* €: 3 bytes, never cut inside */
};

START_TEST(test_error_is_cut)
{
	const struct cut_case *c = &cut_cases[_i];
	char error[4 * SPOOL_ERROR_MAX] = "";
	struct spool *s = open_ok();
	struct spool_row r;
	int64_t id = append(s, "lab", "x", T0);

	while (strlen(error) + strlen(c->unit) < sizeof(error))
		strcat(error, c->unit);
	ck_assert_int_eq(spool_mark_dead(s, id, 1, NULL, 0, error), 0);
	commit_ok(s);
	ck_assert_int_eq(spool_get(s, id, &r, NULL), 0);
	ck_assert_uint_eq(strlen(r.last_error), c->stored);
	ck_assert_int_eq(strncmp(r.last_error, error, c->stored), 0);
	spool_row_clear(&r);
	spool_close(s);
}
END_TEST

/* ---- reading ------------------------------------------------------------ */

START_TEST(test_load_pending)
{
	struct spool *s = open_ok();
	struct ids c = {0}, stop = {.stop_at = 2};
	int64_t a = append(s, "lab", "a", T0), b = append(s, "adt", "b", T0),
		d = append(s, "lab", "d", T0), e = append(s, "lab", "e", T0),
		f = append(s, "adt", "f", T0);

	commit_ok(s);
	ck_assert_int_eq(spool_mark_inflight(s, b), 0);
	ck_assert_int_eq(spool_mark_delivered(s, d, T0), 0);
	ck_assert_int_eq(spool_mark_dead(s, e, 5, NULL, 0, "gone"), 0);
	commit_ok(s);

	ck_assert_int_eq(spool_load_pending(s, collect, &c), 0);
	ck_assert_int_eq(c.n, 3);
	ck_assert_int_eq(c.id[0], a);
	ck_assert_int_eq(c.id[1], b);
	ck_assert_int_eq(c.id[2], f);
	for (int i = 0; i < c.n; i++)
		ck_assert_int_eq(c.state[i], SPOOL_QUEUED); /* in-flight died with its process */

	ck_assert_int_eq(spool_load_pending(s, collect, &stop), 7);
	ck_assert_int_eq(stop.n, 2);
	spool_close(s);
}
END_TEST

/* Rows 1..6: lab queued, lab delivered, lab dead, adt queued, adt dead, adt inflight. */
static struct spool *six_rows(void)
{
	struct spool *s = open_ok();

	append(s, "lab", "1", T0);
	append(s, "lab", "2", T0);
	append(s, "lab", "3", T0);
	append(s, "adt", "4", T0);
	append(s, "adt", "5", T0);
	append(s, "adt", "6", T0);
	commit_ok(s);
	ck_assert_int_eq(spool_mark_delivered(s, 2, T0 + 1), 0);
	ck_assert_int_eq(spool_mark_dead(s, 3, 4, NULL, 0, "HTTP 422"), 0);
	ck_assert_int_eq(spool_mark_dead(s, 5, 4, NULL, 0, "HTTP 422"), 0);
	ck_assert_int_eq(spool_mark_inflight(s, 6), 0);
	commit_ok(s);
	return s;
}

static const struct list_case {
	int state;
	const char *integration;
	int limit;
	int64_t ids[7]; /* expected, newest first, 0-terminated */
} list_cases[] = {
    {-1, NULL, 0, {6, 5, 4, 3, 2, 1}},
    {-1, NULL, 2, {6, 5}},
    {SPOOL_DEAD, NULL, 0, {5, 3}},
    {SPOOL_DEAD, "lab", 0, {3}},
    {-1, "adt", 0, {6, 5, 4}},
    {SPOOL_QUEUED, NULL, 0, {4, 1}},
    {SPOOL_INFLIGHT, NULL, 0, {6}},
    {SPOOL_DELIVERED, "adt", 0, {0}},
    {-1, "nosuch", 0, {0}},
};

START_TEST(test_list)
{
	const struct list_case *c = &list_cases[_i];
	struct spool *s = six_rows();
	struct ids got = {0};
	int n = 0;

	ck_assert_int_eq(spool_list(s, c->state, c->integration, c->limit, collect, &got), 0);
	while (c->ids[n])
		n++;
	ck_assert_int_eq(got.n, n);
	for (int i = 0; i < n; i++)
		ck_assert_int_eq(got.id[i], c->ids[i]);
	spool_close(s);
}
END_TEST

static void stats_line(void *arg, const struct spool_stat *st)
{
	fprintf(arg, "%s %s %lld %lld %lld\n", st->channel == SPOOL_IN ? "in" : "out",
		st->integration, (long long)st->queued, (long long)st->dead,
		(long long)st->oldest_queued_ms);
}

START_TEST(test_stats)
{
	struct spool *s = open_ok();
	char text[512] = "";
	FILE *f = fmemopen(text, sizeof(text), "w");

	append(s, "lab", "q", T0 + 100);
	append(s, "lab", "i", T0 + 50);
	append(s, "lab", "x", T0 + 10);
	append(s, "adt", "x", T0);
	append(s, "misc", "x", T0);
	commit_ok(s);
	ck_assert_int_eq(spool_mark_inflight(s, 2), 0);
	ck_assert_int_eq(spool_mark_dead(s, 3, 1, NULL, 0, "e"), 0);
	ck_assert_int_eq(spool_mark_dead(s, 4, 1, NULL, 0, "e"), 0);
	ck_assert_int_eq(spool_mark_delivered(s, 5, T0), 0);
	commit_ok(s);
	ck_assert_int_eq(spool_stats(s, stats_line, f), 0);
	fclose(f);
	ck_assert_str_eq(text, "in adt 0 1 0\nin lab 2 1 1764424800050\n");
	spool_close(s);
}
END_TEST

/* ---- outbound rows -------------------------------------------------------- */

static int64_t append_ch(struct spool *s, enum spool_channel ch, const char *route, const char *key)
{
	struct spool_new m = SMALL_ROW(T0, "MSH|", 4);
	int64_t id = 0;
	int err;

	m.channel = ch;
	m.integration = route;
	m.idem_key = key;
	err = spool_append(s, &m, &id);
	ck_assert_msg(err == 0, "append: %d %s", err, spool_errmsg(s));
	return id;
}

/* Both channels in one spool, a destination named like an integration:
 *   1 in  lab KEY queued      5 out lis KEY acked
 *   2 out lab KEY queued      6 in  lab KEY dead
 *   3 in  lab KEY inflight    7 out lis KEY rejected
 *   4 out lis k-4 inflight    8 out lis k-4 queued (a second row with that key) */
static struct spool *mixed_rows(void)
{
	struct spool *s = open_ok();
	static const struct {
		enum spool_channel ch;
		const char *route, *key;
	} rows[] = {{SPOOL_IN, "lab", KEY},    {SPOOL_OUT, "lab", KEY},	 {SPOOL_IN, "lab", KEY},
		    {SPOOL_OUT, "lis", "k-4"}, {SPOOL_OUT, "lis", KEY},	 {SPOOL_IN, "lab", KEY},
		    {SPOOL_OUT, "lis", KEY},   {SPOOL_OUT, "lis", "k-4"}};

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
		ck_assert_int_eq(append_ch(s, rows[i].ch, rows[i].route, rows[i].key),
				 (int64_t)i + 1);
	commit_ok(s);
	ck_assert_int_eq(spool_mark_inflight(s, 3), 0);
	ck_assert_int_eq(spool_mark_inflight(s, 4), 0);
	ck_assert_int_eq(spool_mark_acked(s, 5, 2, T0 + 1, "MSA|AA|C5", 9), 0);
	ck_assert_int_eq(spool_mark_dead(s, 6, 3, NULL, 0, "HTTP 400"), 0);
	ck_assert_int_eq(spool_mark_rejected(s, 7, 1, "MSA|AR|C7", 9, "AR: unknown facility"), 0);
	commit_ok(s);
	return s;
}

static const struct pending_case {
	int channel;
	int err;
	int64_t ids[4]; /* expected, 0-terminated */
} pending_cases[] = {
    {SPOOL_IN, 0, {1, 3}},
    {SPOOL_OUT, 0, {2, 4, 8}},
    {2, -EINVAL, {0}},
    {-1, -EINVAL, {0}},
};

/* The forwarder never sees an outbound row, nor the senders an inbound one. */
START_TEST(test_pending_channel)
{
	const struct pending_case *c = &pending_cases[_i];
	struct spool *s = mixed_rows();
	struct ids got = {0}, in = {0};
	int n = 0;

	ck_assert_int_eq(
	    spool_load_pending_channel(s, (enum spool_channel)c->channel, collect, &got), c->err);
	while (c->ids[n])
		n++;
	ck_assert_int_eq(got.n, n);
	for (int i = 0; i < n; i++) {
		ck_assert_int_eq(got.id[i], c->ids[i]);
		ck_assert_int_eq(got.state[i], SPOOL_QUEUED);
	}
	/* spool_load_pending() is the inbound channel's. */
	ck_assert_int_eq(spool_load_pending(s, collect, &in), 0);
	ck_assert_int_eq(in.n, 2);
	ck_assert_int_eq(in.id[1], 3);
	spool_close(s);
}
END_TEST

static const struct find_case {
	int channel;
	const char *route, *key;
	int err;
	int64_t id;
} find_cases[] = {
    {SPOOL_OUT, "lab", KEY, 0, 2},
    {SPOOL_IN, "lab", KEY, 0, 1},    /* the first of the inbound rows with the key */
    {SPOOL_OUT, "lis", "k-4", 0, 4}, /* the first message, not the repeat */
    {SPOOL_OUT, "lis", KEY, 0, 5},   /* whatever its state */
    {SPOOL_OUT, "nosuch", KEY, -ENOENT, 0},
    {SPOOL_OUT, "lab", "k-4", -ENOENT, 0}, /* a key belongs to one route */
    {SPOOL_IN, "lis", "k-4", -ENOENT, 0},  /* ... and one channel */
    {SPOOL_OUT, "lis", "", -EINVAL, 0},
    {SPOOL_OUT, "lis", "a b", -EINVAL, 0},
    {SPOOL_OUT, "lis", KEY_65, -EMSGSIZE, 0},
    {SPOOL_OUT, NULL, KEY, -EINVAL, 0},
    {SPOOL_OUT, LONG_TEXT, KEY, -EMSGSIZE, 0},
    {2, "lis", KEY, -EINVAL, 0},
};

START_TEST(test_find_key)
{
	const struct find_case *c = &find_cases[_i];
	struct spool *s = mixed_rows();
	char *route = malloc(SPOOL_TEXT_MAX + 2), *key = malloc(SPOOL_TEXT_MAX + 2);
	int64_t id = -1;

	ck_assert(route && key);
	ck_assert_int_eq(spool_find_key(s, (enum spool_channel)c->channel, expand(c->route, route),
					expand(c->key, key), &id),
			 c->err);
	if (c->err == 0)
		ck_assert_int_eq(id, c->id);
	ck_assert_uint_eq(spool_pending(s), 0); /* a read: no batch */
	free(route);
	free(key);
	spool_close(s);
}
END_TEST

/* A repeated POST may arrive before the first one's commit: the staged
 * row answers it. A batch that never commits takes its rows along. */
START_TEST(test_find_key_in_batch)
{
	struct spool *s = open_ok(), *op = open_ok();
	int64_t id = append_ch(s, SPOOL_OUT, "lis", "idem-1"), again = 0;

	ck_assert_uint_eq(spool_pending(s), 1);
	ck_assert_int_eq(find(s, SPOOL_OUT, "lis", "idem-1"), id);
	ck_assert_uint_eq(spool_pending(s), 1);
	ck_assert_int_eq(find(op, SPOOL_OUT, "lis", "idem-1"), 0); /* not durable yet */
	commit_ok(s);
	ck_assert_int_eq(find(s, SPOOL_OUT, "lis", "idem-1"), id);
	ck_assert_int_eq(find(op, SPOOL_OUT, "lis", "idem-1"), id);

	again = append_ch(s, SPOOL_OUT, "lis", "idem-2");
	ck_assert_int_eq(find(s, SPOOL_OUT, "lis", "idem-2"), again);
	spool_close(s); /* never committed */
	s = open_ok();
	ck_assert_int_eq(find(s, SPOOL_OUT, "lis", "idem-2"), 0);
	ck_assert_int_eq(find(s, SPOOL_OUT, "lis", "idem-1"), id);
	spool_close(op);
	spool_close(s);
}
END_TEST

/* An ACK field of a case: a string, or "#n" for n bytes (a NUL every 64). */
static char g_ack[SPOOL_ACK_MAX + 2];

static const char *ack_bytes(const char *v, size_t *len)
{
	if (!v || v[0] != '#')
		return v;
	*len = strtoul(v + 1, NULL, 10);
	ck_assert_uint_le(*len, sizeof(g_ack));
	for (size_t i = 0; i < *len; i++)
		g_ack[i] = i % 64 == 63 ? '\0' : (char)('A' + i % 26);
	return g_ack;
}

enum out_op { OUT_ACKED, OUT_REJECTED, OUT_DEAD };

static const struct outmark_case {
	const char *name;
	enum out_op op;
	const char *ack; /* "#n": n generated bytes */
	size_t len;
	const char *error;
	int err;
	/* expected */
	enum spool_state state;
	int has_ack;
} outmark_cases[] = {
    {"AA with a NUL", OUT_ACKED, "MSH|^~\\&|LIS\rMSA|AA|C1\0tail\r", 27, NULL, 0, SPOOL_DELIVERED,
     1},
    {"AA, no ack", OUT_ACKED, NULL, 0, NULL, 0, SPOOL_DELIVERED, 0},
    {"AA, empty ack", OUT_ACKED, "", 0, NULL, 0, SPOOL_DELIVERED, 0},
    {"AA of SPOOL_ACK_MAX", OUT_ACKED, "#65536", 0, NULL, 0, SPOOL_DELIVERED, 1},
    {"AA too long", OUT_ACKED, "#65537", 0, NULL, -EMSGSIZE, SPOOL_QUEUED, 0},
    {"AA NULL with a length", OUT_ACKED, NULL, 5, NULL, -EINVAL, SPOOL_QUEUED, 0},
    {"AR", OUT_REJECTED, "MSA|AR|C1\rERR|||207\r", 20, "AR: application error", 0, SPOOL_REJECTED,
     1},
    {"AE, no ack", OUT_REJECTED, NULL, 0, NULL, 0, SPOOL_REJECTED, 0},
    {"AR of SPOOL_ACK_MAX", OUT_REJECTED, "#65536", 0, "AR", 0, SPOOL_REJECTED, 1},
    {"AR too long", OUT_REJECTED, "#65537", 0, "AR", -EMSGSIZE, SPOOL_QUEUED, 0},
    /* Dead after max_attempts: the last answer is what the analyst needs. */
    {"dead, wrong MSA-2", OUT_DEAD, "MSA|AA|NOT-C1\r", 14, "MSA-2 mismatch", 0, SPOOL_DEAD, 1},
    {"dead, no answer", OUT_DEAD, NULL, 0, "no ACK within ack_timeout", 0, SPOOL_DEAD, 0},
    {"dead of SPOOL_ACK_MAX", OUT_DEAD, "#65536", 0, "AE", 0, SPOOL_DEAD, 1},
    {"dead too long", OUT_DEAD, "#65537", 0, "AE", -EMSGSIZE, SPOOL_QUEUED, 0},
    {"dead NULL with a length", OUT_DEAD, NULL, 5, "AE", -EINVAL, SPOOL_QUEUED, 0},
};

struct seen_ack {
	size_t len;
	int same;
	const void *want;
};

static int check_ack(void *arg, const struct spool_row *r)
{
	struct seen_ack *a = arg;

	a->len = r->ack_len;
	a->same = r->ack && memcmp(r->ack, a->want, r->ack_len) == 0;
	return 0;
}

static int out_mark(struct spool *s, const struct outmark_case *c, int64_t id, const char *ack,
		    size_t len)
{
	switch (c->op) {
	case OUT_ACKED:
		return spool_mark_acked(s, id, 3, T0 + 9, ack, len);
	case OUT_REJECTED:
		return spool_mark_rejected(s, id, 4, ack, len, c->error);
	case OUT_DEAD:
		return spool_mark_dead(s, id, 5, ack, len, c->error);
	}
	ck_abort_msg("%s: no such op", c->name);
	return 0;
}

static int out_attempts(enum spool_state state)
{
	return state == SPOOL_DEAD	  ? 5
	       : state == SPOOL_REJECTED  ? 4
	       : state == SPOOL_DELIVERED ? 3
					  : 0;
}

/* The receiver's answer is kept byte for byte (NULs too); a refused mark
 * touches nothing, not even the batch it was given in. */
START_TEST(test_outbound_marks)
{
	const struct outmark_case *c = &outmark_cases[_i];
	struct spool *s = open_ok();
	int64_t id = append_ch(s, SPOOL_OUT, "lis", "k-1");
	size_t len = c->len;
	const char *ack = ack_bytes(c->ack, &len);
	struct seen_ack seen = {.want = ack};
	struct spool_row r;
	int err;

	commit_ok(s);
	append_ch(s, SPOOL_OUT, "lis", "kept");
	err = out_mark(s, c, id, ack, len);
	ck_assert_msg(err == c->err, "%s: %d (%s)", c->name, err, spool_errmsg(s));
	ck_assert_uint_eq(spool_pending(s), c->err ? 1 : 2);
	commit_ok(s);
	ck_assert_int_eq(row_count(), 2);
	spool_close(s);

	s = open_ok();
	ck_assert_int_eq(spool_get(s, id, &r, NULL), 0);
	ck_assert_int_eq(r.channel, SPOOL_OUT);
	ck_assert_int_eq(r.state, c->state);
	ck_assert_int_eq(r.delivered_ms, c->state == SPOOL_DELIVERED ? T0 + 9 : 0);
	ck_assert_int_eq(r.attempts, out_attempts(c->state));
	if (c->error && !c->err)
		ck_assert_str_eq(r.last_error, c->error);
	else
		ck_assert_ptr_null(r.last_error);
	if (c->has_ack) {
		ck_assert_ptr_nonnull(r.ack);
		ck_assert_uint_eq(r.ack_len, len);
		ck_assert_mem_eq(r.ack, ack, len);
		ck_assert_int_eq(r.ack[len], '\0'); /* a copy is terminated too */
	} else {
		ck_assert_ptr_null(r.ack);
		ck_assert_uint_eq(r.ack_len, 0);
	}
	spool_row_clear(&r);
	ck_assert_ptr_null(r.ack);
	/* The rows a listing lends carry it as well. */
	ck_assert_int_eq(spool_list(s, (int)c->state, "lis", 1, check_ack, &seen), 0);
	if (c->has_ack) {
		ck_assert_uint_eq(seen.len, len);
		ck_assert(seen.same);
	}
	spool_close(s);
}
END_TEST

/* A rejected row replayed that then dies of timeouts shows no answer: the
 * old AR next to the new error would tell the analyst the wrong story. */
START_TEST(test_dead_replaces_ack)
{
	struct spool *s = mixed_rows();
	struct spool_row r;
	int n = 0;

	ck_assert_int_eq(spool_replay(s, 7, NULL, &n), 0);
	ck_assert_int_eq(n, 1);
	ck_assert_int_eq(spool_mark_dead(s, 7, 2, NULL, 0, "no ACK within ack_timeout"), 0);
	commit_ok(s);
	ck_assert_int_eq(spool_get(s, 7, &r, NULL), 0);
	ck_assert_int_eq(r.state, SPOOL_DEAD);
	ck_assert_str_eq(r.last_error, "no ACK within ack_timeout");
	ck_assert_ptr_null(r.ack);
	spool_row_clear(&r);
	spool_close(s);
}
END_TEST

START_TEST(test_rejected_state)
{
	struct spool *s = mixed_rows();
	struct ids got = {0}, taken = {0}, out = {0};
	struct spool_row r;
	int n = 0;

	ck_assert_str_eq(spool_state_name(SPOOL_REJECTED), "rejected");
	ck_assert_str_eq(spool_state_name(SPOOL_REJECTED + 1), "?");
	ck_assert_int_eq(spool_list(s, SPOOL_REJECTED, NULL, 0, collect, &got), 0);
	ck_assert_int_eq(got.n, 1);
	ck_assert_int_eq(got.id[0], 7);

	/* Replayed like a dead row; its answer stays for the record. */
	ck_assert_int_eq(spool_replay(s, 7, NULL, &n), 0);
	ck_assert_int_eq(n, 1);
	ck_assert_int_eq(spool_get(s, 7, &r, NULL), 0);
	ck_assert_int_eq(r.state, SPOOL_QUEUED);
	ck_assert_int_eq(r.attempts, 0);
	ck_assert_uint_eq(r.ack_len, 9);
	ck_assert_str_eq(r.last_error, "AR: unknown facility");
	spool_row_clear(&r);
	/* The forwarder's poll takes inbound replays only; the outbound row
	 * keeps its flag and is pending for the senders. */
	ck_assert_int_eq(spool_replay(s, 6, NULL, &n), 0);
	ck_assert_int_eq(spool_take_replayed(s, collect, &taken), 0);
	ck_assert_int_eq(taken.n, 1);
	ck_assert_int_eq(taken.id[0], 6);
	ck_assert_int_eq(sql_int("SELECT replayed FROM messages WHERE id = 7"), 1);
	ck_assert_int_eq(spool_load_pending_channel(s, SPOOL_OUT, collect, &out), 0);
	ck_assert_int_eq(out.n, 4);
	ck_assert_int_eq(out.id[2], 7); /* in id order: 2, 4, 7, 8 */
	/* ... which the senders' poll takes, once. */
	memset(&taken, 0, sizeof(taken));
	ck_assert_int_eq(spool_take_replayed_channel(s, SPOOL_OUT, collect, &taken), 0);
	ck_assert_int_eq(taken.n, 1);
	ck_assert_int_eq(taken.id[0], 7);
	memset(&taken, 0, sizeof(taken));
	ck_assert_int_eq(spool_take_replayed_channel(s, SPOOL_OUT, collect, &taken), 0);
	ck_assert_int_eq(taken.n, 0);
	ck_assert_int_eq(spool_take_replayed_channel(s, 2, collect, &taken), -EINVAL);
	/* Acked after its replay: the AR's error is history, not state. */
	ck_assert_int_eq(spool_mark_acked(s, 7, 1, T0 + 5, "MSA|AA|C7", 9), 0);
	commit_ok(s);
	ck_assert_int_eq(spool_get(s, 7, &r, NULL), 0);
	ck_assert_int_eq(r.state, SPOOL_DELIVERED);
	ck_assert_ptr_null(r.last_error);
	spool_row_clear(&r);
	spool_close(s);
}
END_TEST

/* Per-integration counts are the inbound channel's: a destination named
 * like an integration does not change them. */
/* Each channel on its own lines, the destination "lab" apart from the
 * integration "lab" (inbound first); an outbound rejected row counts as
 * dead, an acked one not at all; each destination has its own oldest. */
START_TEST(test_stats_channels)
{
	struct spool *s = mixed_rows();
	struct spool_new m = SMALL_ROW(T0 + 500, "MSH|", 4);
	char text[256] = "";
	FILE *f = fmemopen(text, sizeof(text), "w");
	int64_t id;

	m.channel = SPOOL_OUT;
	m.integration = "zz";
	ck_assert_int_eq(spool_append(s, &m, &id), 0);
	commit_ok(s);
	ck_assert_int_eq(spool_stats(s, stats_line, f), 0);
	fclose(f);
	ck_assert_str_eq(text, "in lab 2 1 1764424800000\n"
			       "out lab 1 0 1764424800000\n"
			       "out lis 2 1 1764424800000\n"
			       "out zz 1 0 1764424800500\n");
	spool_close(s);
}
END_TEST

/* Retention: acked rows go like delivered ones; rejected rows like dead
 * ones, only with include_dead. */
START_TEST(test_purge_outbound)
{
	struct spool *s = open_ok();
	int64_t old = T0 - 10 * DAY_MS, cut = T0 - 7 * DAY_MS;
	struct spool_new m = SMALL_ROW(old, "MSH|", 4);
	int64_t id[4];
	int n = -1;

	m.channel = SPOOL_OUT;
	for (int i = 0; i < 4; i++) {
		m.received_ms = i % 2 ? T0 : old;
		ck_assert_int_eq(spool_append(s, &m, &id[i]), 0);
	}
	commit_ok(s);
	ck_assert_int_eq(spool_mark_acked(s, id[0], 1, old, "AA", 2), 0);
	ck_assert_int_eq(spool_mark_acked(s, id[1], 1, T0, "AA", 2), 0);
	ck_assert_int_eq(spool_mark_rejected(s, id[2], 1, "AR", 2, "AR"), 0);
	ck_assert_int_eq(spool_mark_rejected(s, id[3], 1, "AR", 2, "AR"), 0);
	commit_ok(s);
	ck_assert_int_eq(spool_purge(s, cut, 0, &n), 0);
	ck_assert_int_eq(n, 1);
	ck_assert_int_eq(sql_int("SELECT count(*) FROM messages WHERE state = 4"), 2);
	ck_assert_int_eq(spool_purge(s, cut, 1, &n), 0);
	ck_assert_int_eq(n, 1); /* the rejected row received before the cut */
	ck_assert_int_eq(row_count(), 2);
	ck_assert_int_eq(sql_int("SELECT count(*) FROM messages WHERE id IN (2, 4)"), 2);
	spool_close(s);
}
END_TEST

/* ---- replay and purge --------------------------------------------------- */

START_TEST(test_replay)
{
	struct spool *bridge = six_rows(), *op = open_ok();
	struct ids taken = {0}, again = {0}, held = {.stop_at = 1};
	struct spool_row r;
	int n = -1;

	/* The operator (another connection) replays row 3; the bridge sees it once. */
	ck_assert_int_eq(spool_replay(op, 3, NULL, &n), 0);
	ck_assert_int_eq(n, 1);
	ck_assert_int_eq(spool_get(op, 3, &r, NULL), 0);
	ck_assert_int_eq(r.state, SPOOL_QUEUED);
	ck_assert_int_eq(r.attempts, 0);
	ck_assert_str_eq(r.last_error, "HTTP 422"); /* history kept for the operator */
	spool_row_clear(&r);
	ck_assert_int_eq(spool_take_replayed(bridge, collect, &taken), 0);
	ck_assert_int_eq(taken.n, 1);
	ck_assert_int_eq(taken.id[0], 3);
	ck_assert_int_eq(spool_take_replayed(bridge, collect, &again), 0);
	ck_assert_int_eq(again.n, 0);

	/* Not dead, unknown. */
	ck_assert_int_eq(spool_replay(op, 2, NULL, &n), 0);
	ck_assert_int_eq(n, 0);
	ck_assert_int_eq(sql_int("SELECT state FROM messages WHERE id = 2"), SPOOL_DELIVERED);
	ck_assert_int_eq(spool_replay(op, 999, NULL, &n), -ENOENT);

	/* All dead of one integration; a callback that refuses keeps the flag. */
	ck_assert_int_eq(spool_replay(op, 0, "lab", &n), 0);
	ck_assert_int_eq(n, 0); /* lab's dead row was replayed already */
	ck_assert_int_eq(spool_replay(op, 0, "adt", &n), 0);
	ck_assert_int_eq(n, 1);
	ck_assert_int_eq(spool_take_replayed(bridge, collect, &held), 7);
	ck_assert_int_eq(spool_take_replayed(bridge, collect, &again), 0);
	ck_assert_int_eq(again.n, 1);
	ck_assert_int_eq(again.id[0], 5);
	ck_assert_int_eq(spool_replay(op, 0, NULL, &n), 0);
	ck_assert_int_eq(n, 0);

	/* Rows 3 and 4 replayed together; cb takes 3 and refuses 4: only 4 stays flagged. */
	ck_assert_int_eq(spool_mark_dead(bridge, 3, 1, NULL, 0, "again"), 0);
	ck_assert_int_eq(spool_mark_dead(bridge, 4, 1, NULL, 0, "again"), 0);
	commit_ok(bridge);
	ck_assert_int_eq(spool_replay(op, 0, NULL, &n), 0);
	ck_assert_int_eq(n, 2);
	memset(&held, 0, sizeof(held));
	held.stop_at = 2;
	memset(&again, 0, sizeof(again));
	ck_assert_int_eq(spool_take_replayed(bridge, collect, &held), 7);
	ck_assert_int_eq(held.id[0], 3);
	ck_assert_int_eq(spool_take_replayed(bridge, collect, &again), 0);
	ck_assert_int_eq(again.n, 1);
	ck_assert_int_eq(again.id[0], 4);
	spool_close(op);
	spool_close(bridge);
}
END_TEST

START_TEST(test_purge)
{
	struct spool *s = open_ok();
	int64_t now = T0, old = T0 - 10 * DAY_MS, cut = T0 - 7 * DAY_MS;
	int n = -1;

	for (int i = 0; i < 6; i++)
		append(s, "lab", "x", i == 4 ? old : now);
	commit_ok(s);
	ck_assert_int_eq(spool_mark_delivered(s, 1, old), 0);
	ck_assert_int_eq(spool_mark_delivered(s, 2, old + 1), 0);
	ck_assert_int_eq(spool_mark_delivered(s, 3, now - 3600000), 0);
	ck_assert_int_eq(spool_mark_dead(s, 5, 9, NULL, 0, "old dead"), 0);
	ck_assert_int_eq(spool_mark_dead(s, 6, 9, NULL, 0, "new dead"), 0);
	commit_ok(s);

	ck_assert_int_eq(spool_purge(s, cut, 0, &n), 0);
	ck_assert_int_eq(n, 2);
	ck_assert_int_eq(sql_int("SELECT count(*) FROM messages WHERE id IN (1, 2)"), 0);
	ck_assert_int_eq(spool_purge(s, cut, 1, &n), 0);
	ck_assert_int_eq(n, 1); /* the dead row received before the cut */
	ck_assert_int_eq(sql_int("SELECT count(*) FROM messages WHERE id = 5"), 0);
	ck_assert_int_eq(row_count(), 3); /* delivered 1h ago, queued, new dead */
	spool_close(s);
}
END_TEST

START_TEST(test_purge_chunks)
{
	enum { N = 2 * SPOOL_PURGE_CHUNK + 17 };
	struct spool *s = open_ok();
	int n = 0;

	for (int i = 0; i < N; i++)
		append(s, "lab", "x", T0);
	commit_ok(s);
	for (int i = 1; i <= N; i++)
		ck_assert_int_eq(spool_mark_delivered(s, i, T0), 0);
	append(s, "lab", "stays", T0);
	commit_ok(s);
	ck_assert_int_eq(spool_purge(s, T0 + 1, 1, &n), 0);
	ck_assert_int_eq(n, N);
	ck_assert_int_eq(row_count(), 1);
	spool_close(s);
}
END_TEST

/* ---- file records ------------------------------------------------------- */

#define FILE_REC(rt, nm, sha)                                                                      \
	((struct spool_file){.route = (rt),                                                        \
			     .name = (nm),                                                         \
			     .size = 4242,                                                         \
			     .mtime = 1764424000,                                                  \
			     .sha256 = (sha),                                                      \
			     .received_ms = T0,                                                    \
			     .state = SPOOL_FILE_DONE, /* ignored: a new record is SPOOLED */      \
			     .reason = "ignored",                                                  \
			     .disposed_ms = 99})

/* Appends n rows of route with file_name name into ids[]. */
static void file_rows(struct spool *s, const char *route, const char *name, int64_t *ids, int n)
{
	for (int i = 0; i < n; i++) {
		struct spool_new m = SMALL_ROW(T0, "MSH|f", 5);
		int err;

		m.integration = route;
		m.file_name = name;
		err = spool_append(s, &m, &ids[i]);
		ck_assert_msg(err == 0, "append: %d %s", err, spool_errmsg(s));
	}
}

static int64_t file_add_ok(struct spool *s, const char *route, const char *name,
			   const int64_t *rows, size_t n)
{
	struct spool_file f = FILE_REC(route, name, SHA_A);
	int64_t id = 0;
	int err = spool_file_add(s, &f, rows, n, &id);

	ck_assert_msg(err == 0, "file add: %d %s", err, spool_errmsg(s));
	return id;
}

struct files {
	int64_t id[16];
	char name[16][64];
	int state[16];
	char reason[16][64];
	size_t nrows[16];
	int n;
};

static int collect_file(void *arg, const struct spool_file *f)
{
	struct files *c = arg;

	ck_assert_int_lt(c->n, 16);
	c->id[c->n] = f->id;
	snprintf(c->name[c->n], sizeof(c->name[0]), "%s", f->name);
	c->state[c->n] = (int)f->state;
	snprintf(c->reason[c->n], sizeof(c->reason[0]), "%s", f->reason ? f->reason : "-");
	c->nrows[c->n] = f->nrows;
	c->n++;
	return 0;
}

/* The record and its rows become durable with the batch: another
 * connection sees none of them before the commit, all of them after. */
START_TEST(test_file_add_commit)
{
	struct spool *s = open_ok(), *op = open_ok();
	struct files got = {0};
	int64_t rows[3], fid;

	file_rows(s, "lab", "a.hl7", rows, 3);
	fid = file_add_ok(s, "lab", "a.hl7", rows, 3);
	ck_assert_int_eq(fid, 1);
	ck_assert_uint_eq(spool_pending(s), 4);
	ck_assert_int_eq(spool_file_pending(s, "lab", collect_file, &got), 0); /* staged: seen */
	ck_assert_int_eq(got.n, 1);
	memset(&got, 0, sizeof(got));
	ck_assert_int_eq(spool_file_list(op, NULL, 0, collect_file, &got), 0);
	ck_assert_int_eq(got.n, 0);
	ck_assert_int_eq(row_count(), 0);
	commit_ok(s);

	ck_assert_int_eq(spool_file_list(op, NULL, 0, collect_file, &got), 0);
	ck_assert_int_eq(got.n, 1);
	ck_assert_int_eq(got.id[0], fid);
	ck_assert_str_eq(got.name[0], "a.hl7");
	ck_assert_int_eq(got.state[0], SPOOL_FILE_SPOOLED);
	ck_assert_str_eq(got.reason[0], "-");
	ck_assert_uint_eq(got.nrows[0], 3);
	ck_assert_int_eq(row_count(), 3);
	ck_assert_int_eq(sql_int("SELECT count(*) FROM file_rows WHERE file_id = 1"), 3);
	ck_assert_int_eq(sql_int("SELECT count(*) FROM messages WHERE file_name = 'a.hl7'"), 3);
	ck_assert_int_eq(sql_int("SELECT size + mtime + disposed_ms FROM files"),
			 4242 + 1764424000);
	ck_assert_int_eq(sql_int("SELECT sha256 = '" SHA_A "' FROM files"), 1);
	/* A later record of rows committed earlier (a restart's re-check). */
	ck_assert_int_eq(file_add_ok(s, "lab", "b.hl7", rows + 1, 1), 2);
	commit_ok(s);
	spool_close(op);
	spool_close(s);
}
END_TEST

/* A batch that fails takes the record and its rows together: here the
 * record is staged, then the disk fills up under the next appends. */
START_TEST(test_file_rolled_back)
{
	static char big[32 * 1024];
	struct spool *s = open_ok();
	int64_t rows[3], id;
	int err = 0;

	append(s, "lab", "committed before", T0);
	commit_ok(s);
	memset(big, 'F', sizeof(big));
	ck_assert_int_eq(spool_test_set_max_pages(s, (int)sql_int("PRAGMA page_count") + 16), 0);
	file_rows(s, "lab", "x.hl7", rows, 3);
	(void)file_add_ok(s, "lab", "x.hl7", rows, 3);
	for (int i = 0; i < 64 && !err; i++) {
		struct spool_new m = SMALL_ROW(T0, big, sizeof(big));

		err = spool_append(s, &m, &id);
	}
	if (!err)
		err = spool_commit(s);
	ck_assert_int_eq(err, -ENOSPC);
	ck_assert_uint_eq(spool_pending(s), 0);
	ck_assert_int_eq(spool_test_set_max_pages(s, 0), 0);
	commit_ok(s);
	spool_close(s);
	ck_assert_int_eq(row_count(), 1);
	ck_assert_int_eq(sql_int("SELECT count(*) FROM files"), 0);
	ck_assert_int_eq(sql_int("SELECT count(*) FROM file_rows"), 0);
}
END_TEST

static const struct file_check {
	const char *name;
	const char *route, *fname, *sha;
	size_t n;  /* rows passed (of the 2 appended; 0: none) */
	int nullr; /* rows == NULL */
	int err;
} file_checks[] = {
    {"route NULL", NULL, "a", SHA_A, 2, 0, -EINVAL},
    {"route empty", "", "a", SHA_A, 2, 0, -EINVAL},
    {"route too long", "#1025", "a", SHA_A, 2, 0, -EMSGSIZE},
    {"name NULL", "lab", NULL, SHA_A, 2, 0, -EINVAL},
    {"name empty", "lab", "", SHA_A, 2, 0, -EINVAL},
    {"name with /", "lab", "in/a.hl7", SHA_A, 2, 0, -EINVAL},
    {"name /", "lab", "/", SHA_A, 2, 0, -EINVAL},
    {"name .", "lab", ".", SHA_A, 2, 0, -EINVAL},
    {"name with CR", "lab", "a\rb", SHA_A, 2, 0, -EINVAL},
    {"name with ESC", "lab", "a\x1b[31m", SHA_A, 2, 0, -EINVAL},
    {"name with DEL", "lab", "a\x7f", SHA_A, 2, 0, -EINVAL},
    {"name too long", "lab", "#256", SHA_A, 2, 0, -EMSGSIZE},
    {"name of 255", "lab", "#255", SHA_A, 2, 0, 0},
    {"name UTF-8 and spaces", "lab", "Befund M\xc3\xbcller 1.hl7", SHA_A, 2, 0, 0},
    {"sha NULL", "lab", "a", NULL, 2, 0, -EINVAL},
    {"sha short", "lab", "a", "0123456789abcdef", 2, 0, -EINVAL},
    {"sha long", "lab", "a", SHA_A "0", 2, 0, -EINVAL},
    {"sha upper case", "lab", "a",
     "0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef", 2, 0, -EINVAL},
    {"sha not hex", "lab", "a", "g123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
     2, 0, -EINVAL},
    {"no rows", "lab", "a", SHA_A, 0, 0, -EINVAL},
    {"rows NULL", "lab", "a", SHA_A, 2, 1, -EINVAL},
    {"too many rows", "lab", "a", SHA_A, SPOOL_FILE_ROWS_MAX + 1, 0, -EMSGSIZE},
};

/* A refused record leaves the batch alone: the rows appended before it
 * are still there to commit. */
START_TEST(test_file_checks)
{
	const struct file_check *c = &file_checks[_i];
	char *route = malloc(SPOOL_TEXT_MAX + 2), *name = malloc(SPOOL_TEXT_MAX + 2);
	struct spool *s = open_ok();
	struct spool_file f;
	int64_t rows[2], id = 0;
	int err;

	ck_assert(route && name);
	file_rows(s, "lab", NULL, rows, 2);
	f = FILE_REC(expand(c->route, route), expand(c->fname, name), c->sha);
	if (c->route && strcmp(c->route, "#1025") == 0)
		route[0] = 'l'; /* still too long */
	if (!c->nullr)
		ck_assert_int_eq(spool_file_check(&f, c->n), c->err);
	err = spool_file_add(s, &f, c->nullr ? NULL : rows, c->n, &id);
	ck_assert_msg(err == c->err, "%s: %d (%s)", c->name, err, spool_errmsg(s));
	ck_assert_uint_eq(spool_pending(s), c->err ? 2 : 3);
	commit_ok(s);
	ck_assert_int_eq(row_count(), 2);
	ck_assert_int_eq(sql_int("SELECT count(*) FROM files"), c->err ? 0 : 1);
	spool_close(s);
	free(route);
	free(name);
}
END_TEST

static const struct file_bad_row {
	const char *name;
	int64_t rows[3];
	int err;
} file_bad_rows[] = {
    {"no such row", {1, 99, 2}, -ENOENT},
    {"row of another route", {1, 3, 2}, -ENOENT},
    {"row given twice", {1, 2, 1}, -EEXIST},
};

/* A row list that does not hold takes the batch with it (no partial list
 * is ever committed), and the loss is told once more by the next commit. */
START_TEST(test_file_bad_rows)
{
	const struct file_bad_row *c = &file_bad_rows[_i];
	struct spool *s = open_ok();
	struct spool_file f = FILE_REC("lab", "a.hl7", SHA_A);
	int64_t rows[2], other, id;

	file_rows(s, "lab", NULL, rows, 2);
	other = append(s, "adt", "x", T0);
	ck_assert_int_eq(other, 3);
	ck_assert_int_eq(spool_file_add(s, &f, c->rows, 3, &id), c->err);
	ck_assert_uint_eq(spool_pending(s), 0);
	ck_assert_int_eq(spool_commit(s), c->err);
	ck_assert_int_eq(spool_commit(s), 0);
	spool_close(s);
	ck_assert_int_eq(row_count(), 0);
	ck_assert_int_eq(sql_int("SELECT count(*) FROM files"), 0);
	ck_assert_int_eq(sql_int("SELECT count(*) FROM file_rows"), 0);
}
END_TEST

/* Open records of one route in id order; disposed ones and other routes'
 * are not among them. */
START_TEST(test_file_pending)
{
	struct spool *s = open_ok();
	struct files got = {0};
	int64_t lab[4], adt[1];
	static const char *const names[] = {"1.hl7", "2.hl7", "3.hl7", "4.hl7"};

	file_rows(s, "lab", NULL, lab, 4);
	file_rows(s, "adt", NULL, adt, 1);
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(file_add_ok(s, "lab", names[i], &lab[i], 1), i + 1);
	ck_assert_int_eq(file_add_ok(s, "adt", "2.hl7", adt, 1), 5);
	commit_ok(s);
	ck_assert_int_eq(spool_file_dispose(s, 2, SPOOL_FILE_DONE, NULL, T0 + 5), 0);
	ck_assert_int_eq(spool_file_dispose(s, 4, SPOOL_FILE_ERROR, "HTTP 400", T0 + 5), 0);
	ck_assert_int_eq(spool_file_pending(s, "lab", collect_file, &got),
			 0); /* staged dispositions */
	ck_assert_int_eq(got.n, 2);
	ck_assert_int_eq(got.id[0], 1);
	ck_assert_int_eq(got.id[1], 3);
	ck_assert_str_eq(got.name[1], "3.hl7");
	commit_ok(s);
	memset(&got, 0, sizeof(got));
	ck_assert_int_eq(spool_file_pending(s, "adt", collect_file, &got), 0);
	ck_assert_int_eq(got.n, 1);
	ck_assert_str_eq(got.name[0], "2.hl7");
	memset(&got, 0, sizeof(got));
	ck_assert_int_eq(spool_file_pending(s, "nosuch", collect_file, &got), 0);
	ck_assert_int_eq(got.n, 0);
	ck_assert_int_eq(spool_file_pending(s, NULL, collect_file, &got), -EINVAL);
	/* Newest first for the operator, all routes or one. */
	memset(&got, 0, sizeof(got));
	ck_assert_int_eq(spool_file_list(s, NULL, 0, collect_file, &got), 0);
	ck_assert_int_eq(got.n, 5);
	ck_assert_int_eq(got.id[0], 5);
	ck_assert_int_eq(got.state[1], SPOOL_FILE_ERROR);
	ck_assert_str_eq(got.reason[1], "HTTP 400");
	ck_assert_int_eq(got.state[3], SPOOL_FILE_DONE);
	ck_assert_str_eq(got.reason[3], "-");
	memset(&got, 0, sizeof(got));
	ck_assert_int_eq(spool_file_list(s, "lab", 2, collect_file, &got), 0);
	ck_assert_int_eq(got.n, 2);
	ck_assert_int_eq(got.id[0], 4);
	ck_assert_int_eq(got.id[1], 3);
	spool_close(s);
}
END_TEST

static int stop_at_first(void *arg, const struct spool_file *f)
{
	(void)arg;
	(void)f;
	return 5;
}

/* Where the rows stand: a purged row counts as delivered; the reason is
 * the first dead row's error. */
START_TEST(test_file_progress)
{
	struct spool *s = open_ok();
	struct spool_file_progress p;
	int64_t rows[6], fid;
	int n = 0;

	file_rows(s, "lab", "p.hl7", rows, 6);
	fid = file_add_ok(s, "lab", "p.hl7", rows, 6);
	ck_assert_int_eq(spool_file_progress(s, fid, &p), 0); /* staged */
	ck_assert_uint_eq(p.queued, 6);
	commit_ok(s);
	ck_assert_int_eq(spool_mark_inflight(s, rows[1]), 0);
	ck_assert_int_eq(spool_mark_delivered(s, rows[2], T0 - 10 * DAY_MS), 0);
	ck_assert_int_eq(spool_mark_delivered(s, rows[3], T0), 0);
	ck_assert_int_eq(spool_mark_dead(s, rows[5], 3, NULL, 0, "HTTP 422 second"), 0);
	ck_assert_int_eq(spool_mark_rejected(s, rows[4], 3, NULL, 0, "HTTP 400 first"), 0);
	commit_ok(s);
	ck_assert_int_eq(spool_purge(s, T0 - DAY_MS, 0, &n), 0);
	ck_assert_int_eq(n, 1); /* rows[2] is gone */

	ck_assert_int_eq(spool_file_progress(s, fid, &p), 0);
	ck_assert_uint_eq(p.queued, 2);
	ck_assert_uint_eq(p.delivered, 2);
	ck_assert_uint_eq(p.dead, 2);
	ck_assert_str_eq(p.reason, "HTTP 400 first");
	ck_assert_int_eq(spool_file_progress(s, fid + 1, &p), -ENOENT);
	ck_assert_int_eq(spool_file_pending(s, "lab", stop_at_first, NULL), 5);
	spool_close(s);
}
END_TEST

/* The reason is cut like last_error is; an empty reason when none died. */
START_TEST(test_file_progress_reason)
{
	struct spool *s = open_ok();
	struct spool_file_progress p;
	char long_error[SPOOL_ERROR_MAX + 100];
	int64_t rows[2], fid;

	memset(long_error, 'E', sizeof(long_error) - 1);
	long_error[sizeof(long_error) - 1] = '\0';
	file_rows(s, "lab", "r.hl7", rows, 2);
	fid = file_add_ok(s, "lab", "r.hl7", rows, 2);
	commit_ok(s);
	ck_assert_int_eq(spool_mark_delivered(s, rows[0], T0), 0);
	commit_ok(s);
	ck_assert_int_eq(spool_file_progress(s, fid, &p), 0);
	ck_assert_str_eq(p.reason, "");
	ck_assert_uint_eq(p.delivered, 1);
	ck_assert_int_eq(spool_mark_dead(s, rows[1], 3, NULL, 0, long_error), 0);
	commit_ok(s);
	ck_assert_int_eq(spool_file_progress(s, fid, &p), 0);
	ck_assert_uint_eq(strlen(p.reason), SPOOL_ERROR_MAX);
	spool_close(s);
}
END_TEST

/* The disposition rides on the batch; a wrong one leaves it alone. */
START_TEST(test_file_dispose)
{
	struct spool *s = open_ok();
	struct files got = {0};
	int64_t rows[1], fid;

	file_rows(s, "lab", "d.hl7", rows, 1);
	fid = file_add_ok(s, "lab", "d.hl7", rows, 1);
	commit_ok(s);
	ck_assert_int_eq(spool_file_dispose(s, fid + 1, SPOOL_FILE_DONE, NULL, T0), -ENOENT);
	ck_assert_int_eq(spool_file_dispose(s, fid, SPOOL_FILE_SPOOLED, NULL, T0), -EINVAL);
	ck_assert_int_eq(spool_file_dispose(s, fid, 7, NULL, T0), -EINVAL);
	ck_assert_uint_eq(spool_pending(s), 0);
	ck_assert_int_eq(spool_file_dispose(s, fid, SPOOL_FILE_DONE, "not kept", T0 + 1), 0);
	ck_assert_uint_eq(spool_pending(s), 1);
	spool_close(s); /* never committed */
	ck_assert_int_eq(sql_int("SELECT state FROM files"), SPOOL_FILE_SPOOLED);

	s = open_ok();
	ck_assert_int_eq(spool_file_dispose(s, fid, SPOOL_FILE_ERROR, "row 1: HTTP 400", T0 + 2),
			 0);
	commit_ok(s);
	ck_assert_int_eq(spool_file_list(s, NULL, 0, collect_file, &got), 0);
	ck_assert_int_eq(got.state[0], SPOOL_FILE_ERROR);
	ck_assert_str_eq(got.reason[0], "row 1: HTTP 400");
	ck_assert_int_eq(sql_int("SELECT disposed_ms FROM files"), T0 + 2);
	/* Done again after a crash: overwritten, the reason with it. */
	ck_assert_int_eq(spool_file_dispose(s, fid, SPOOL_FILE_DONE, "dropped", T0 + 3), 0);
	commit_ok(s);
	ck_assert_int_eq(sql_int("SELECT reason IS NULL AND state = 1 FROM files"), 1);
	ck_assert_str_eq(spool_file_state_name(SPOOL_FILE_ERROR), "error");
	ck_assert_str_eq(spool_file_state_name(3), "?");
	spool_close(s);
}
END_TEST

/* The purge removes records disposed before the cut with their lists,
 * and keeps open ones however old, and ones disposed since. */
START_TEST(test_file_purge)
{
	struct spool *s = open_ok();
	int64_t rows[4], cut = T0 - 7 * DAY_MS;
	int n = -1;

	file_rows(s, "lab", "p.hl7", rows, 4);
	for (int i = 0; i < 4; i++)
		(void)file_add_ok(s, "lab", "p.hl7", &rows[i], 1); /* ids 1..4 */
	commit_ok(s);
	ck_assert_int_eq(spool_file_dispose(s, 1, SPOOL_FILE_DONE, NULL, cut - 1), 0);
	ck_assert_int_eq(spool_file_dispose(s, 2, SPOOL_FILE_ERROR, "x", cut - 1), 0);
	ck_assert_int_eq(spool_file_dispose(s, 3, SPOOL_FILE_DONE, NULL, cut + 1), 0);
	commit_ok(s);
	ck_assert_int_eq(spool_purge(s, cut, 0, &n), 0);
	ck_assert_int_eq(n, 0); /* no message was purged: file records are not counted */
	ck_assert_int_eq(sql_int("SELECT count(*) FROM files"), 2);
	ck_assert_int_eq(sql_int("SELECT sum(id) FROM files"), 3 + 4);
	ck_assert_int_eq(sql_int("SELECT count(*) FROM file_rows"), 2);
	ck_assert_int_eq(sql_int("SELECT sum(file_id) FROM file_rows"), 3 + 4);
	ck_assert_int_eq(row_count(), 4); /* their rows are the messages' purge's business */
	/* Once old enough, the later one goes too; the open one stays. */
	ck_assert_int_eq(spool_purge(s, T0, 0, &n), 0);
	ck_assert_int_eq(sql_int("SELECT group_concat(id) FROM files"), 4);
	ck_assert_int_eq(sql_int("SELECT count(*) FROM file_rows"), 1);
	spool_close(s);
}
END_TEST

/* ---- failures ----------------------------------------------------------- */

START_TEST(test_disk_full)
{
	static char big[64 * 1024 + 1];
	struct spool *s = open_ok();
	int64_t pages, id;
	int err = 0, staged = 0;

	memset(big, 'B', sizeof(big) - 1);
	for (int i = 0; i < 5; i++)
		append(s, "lab", "committed before", T0);
	commit_ok(s);
	pages = sql_int("PRAGMA page_count");
	ck_assert_int_eq(spool_test_set_max_pages(s, (int)pages + 40), 0);
	for (int i = 0; i < 100 && !err; i++) {
		struct spool_new m = SMALL_ROW(T0, big, sizeof(big) - 1);

		err = spool_append(s, &m, &id);
		staged += err == 0;
	}
	if (!err)
		err = spool_commit(s);
	ck_assert_int_eq(err, -ENOSPC);
	ck_assert_int_gt(staged, 0); /* a real batch was lost, not an empty one */
	ck_assert_uint_eq(spool_pending(s), 0);
	ck_assert_ptr_nonnull(strstr(spool_errmsg(s), "full"));
	ck_assert_int_eq(spool_commit(s), 0); /* nothing left to report */

	/* The handle works again once there is room. */
	ck_assert_int_eq(spool_test_set_max_pages(s, 0), 0);
	append(s, "lab", "after", T0);
	commit_ok(s);
	spool_close(s);

	s = open_ok();
	ck_assert_int_eq(row_count(), 6);
	ck_assert_int_eq(sql_int("SELECT count(*) FROM messages WHERE length(body) > 1000"), 0);
	ck_assert_int_eq(
	    sql_int("SELECT count(*) FROM messages WHERE CAST(body AS TEXT) = 'committed before'"),
	    5);
	spool_close(s);
}
END_TEST

/* A state change that fails takes the batch with it; the rows appended in
 * that batch must never be acknowledged, so the loss is reported once by
 * the next spool_commit() or spool_append(). */
enum sticky_next { NEXT_COMMIT, NEXT_APPEND, NEXT_NONE_STAGED };

START_TEST(test_sticky_batch_loss)
{
	enum sticky_next next = (enum sticky_next)_i;
	struct spool *s = open_ok();
	int64_t a = append(s, "lab", "a", T0);

	commit_ok(s);
	/* Make one specific UPDATE fail inside the batch. */
	sql_exec("CREATE TRIGGER boom BEFORE UPDATE OF last_error ON messages "
		 "WHEN NEW.last_error = 'boom' BEGIN SELECT RAISE(ABORT, 'boom'); END");
	if (next != NEXT_NONE_STAGED)
		append(s, "lab", "b staged", T0);
	ck_assert_int_eq(spool_mark_retry(s, a, 1, T0, "boom"), -EIO);
	ck_assert_uint_eq(spool_pending(s), 0);
	switch (next) {
	case NEXT_COMMIT:
		ck_assert_int_eq(spool_commit(s), -EIO);
		break;
	case NEXT_APPEND: {
		struct spool_new m = SMALL_ROW(T0, "c", 1);
		int64_t id;

		ck_assert_int_eq(spool_append(s, &m, &id), -EIO);
		break;
	}
	case NEXT_NONE_STAGED:
		break;
	}
	ck_assert_int_eq(spool_commit(s), 0); /* reported once */
	append(s, "lab", "d", T0);
	commit_ok(s);
	spool_close(s);
	ck_assert_int_eq(row_count(), 2);
	ck_assert_int_eq(
	    sql_int("SELECT count(*) FROM messages WHERE CAST(body AS TEXT) = 'b staged'"), 0);
}
END_TEST

/* ---- crashes ------------------------------------------------------------ */

static const struct crash_case {
	int batch;
	int sigkill; /* 0: _exit() without closing; 1: SIGKILL */
} crash_cases[] = {{1, 0}, {16, 0}, {1, 1}, {16, 1}};

static void crash_child(const struct crash_case *c, int n)
{
	struct spool *s = NULL;
	int64_t id;
	char body[64];

	if (spool_open(g_db, &s) < 0)
		_exit(10);
	for (int i = 0; i < n + 5; i++) {
		struct spool_new m = SMALL_ROW(T0 + i, body, 0);

		m.len = (size_t)snprintf(body, sizeof(body), "message %d", i);
		if (spool_append(s, &m, &id) < 0)
			_exit(11);
		/* The last 5 rows stay staged, never committed. */
		if (i < n && ((i + 1) % c->batch == 0 || i + 1 == n) && spool_commit(s) < 0)
			_exit(12);
	}
	if (c->sigkill)
		raise(SIGKILL);
	_exit(0);
}

START_TEST(test_crash_keeps_committed)
{
	const struct crash_case *c = &crash_cases[_i];
	enum { N = 40 };
	struct ids got = {0};
	struct spool *s;
	int status;
	pid_t pid = fork();

	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		crash_child(c, N);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	if (c->sigkill)
		ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	else
		ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);

	s = open_ok();
	ck_assert_int_eq(spool_load_pending(s, collect, &got), 0);
	ck_assert_int_eq(got.n, N);
	for (int i = 0; i < N; i++)
		ck_assert_int_eq(got.id[i], i + 1);
	ck_assert_int_eq(
	    sql_int("SELECT count(*) FROM messages WHERE CAST(body AS TEXT) = 'message 39'"), 1);
	ck_assert_int_eq(
	    sql_int("SELECT count(*) FROM messages WHERE CAST(body AS TEXT) = 'message 40'"), 0);
	spool_close(s);
}
END_TEST

/* kill -9 at an arbitrary moment: every row whose commit returned (what a
 * bridge would have ACKed) is there, in order, and nothing else but at most
 * the one batch whose commit was under way. */
START_TEST(test_sigkill_midstream)
{
	enum { BATCH = 8, ENOUGH = 300 };
	static int64_t acked[MAX_IDS];
	struct ids got = {0};
	int fds[2], nacked = 0;
	struct spool *s;
	pid_t pid;

	ck_assert_int_eq(pipe(fds), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		int64_t ids[BATCH];

		close(fds[0]);
		if (spool_open(g_db, &s) < 0)
			_exit(10);
		for (;;) {
			for (int i = 0; i < BATCH; i++) {
				struct spool_new m = SMALL_ROW(T0, "payload", 7);

				if (spool_append(s, &m, &ids[i]) < 0)
					_exit(11);
			}
			if (spool_commit(s) < 0 || write(fds[1], ids, sizeof(ids)) < 0)
				_exit(12);
		}
	}
	close(fds[1]);
	for (;;) {
		ssize_t r = read(fds[0], &acked[nacked], sizeof(acked[0]));

		if (r <= 0)
			break;
		ck_assert_int_eq(r, sizeof(acked[0]));
		if (++nacked == ENOUGH)
			kill(pid, SIGKILL);
		ck_assert_int_lt(nacked, MAX_IDS);
	}
	waitpid(pid, NULL, 0);
	close(fds[0]);

	s = open_ok();
	ck_assert_int_eq(spool_load_pending(s, collect, &got), 0);
	ck_assert_int_ge(got.n, nacked);
	ck_assert_int_le(got.n, nacked + BATCH);
	for (int i = 0; i < got.n; i++)
		ck_assert_int_eq(got.id[i], i + 1);
	for (int i = 0; i < nacked; i++)
		ck_assert_int_eq(acked[i], i + 1);
	spool_close(s);
}
END_TEST

/* Purge and replay on a handle with an open batch join that batch: they
 * count as pending and are undone with it. */
START_TEST(test_joins_open_batch)
{
	struct spool *s = open_ok();
	int n = 0;

	append(s, "lab", "a", T0);
	append(s, "lab", "b", T0);
	commit_ok(s);
	ck_assert_int_eq(spool_mark_delivered(s, 1, T0), 0);
	ck_assert_int_eq(spool_mark_dead(s, 2, 1, NULL, 0, "x"), 0);
	commit_ok(s);

	append(s, "lab", "staged", T0);
	ck_assert_int_eq(spool_purge(s, INT64_MAX, 0, &n), 0);
	ck_assert_int_eq(n, 1);
	ck_assert_int_eq(spool_replay(s, 2, NULL, &n), 0);
	ck_assert_int_eq(n, 1);
	ck_assert_uint_eq(spool_pending(s), 3);
	spool_close(s); /* never committed */
	ck_assert_int_eq(row_count(), 2);
	ck_assert_int_eq(sql_int("SELECT state FROM messages WHERE id = 2"), SPOOL_DEAD);
}
END_TEST

/* While the bridge holds a batch open, the operator can still read. */
START_TEST(test_reader_during_batch)
{
	struct spool *bridge = open_ok(), *op;
	struct ids got = {0};

	append(bridge, "lab", "committed", T0);
	commit_ok(bridge);
	append(bridge, "lab", "staged", T0);
	op = open_ok();
	ck_assert_int_eq(spool_list(op, -1, NULL, 0, collect, &got), 0);
	ck_assert_int_eq(got.n, 1);
	commit_ok(bridge);
	spool_close(op);
	spool_close(bridge);
}
END_TEST

/* ---- the operator's commands ------------------------------------------- */

struct cli_result {
	int rc;
	char out[65536];
	size_t out_len;
	char err[8192];
};

static void read_all(FILE *f, char *buf, size_t cap, size_t *len)
{
	size_t n;

	rewind(f);
	n = fread(buf, 1, cap - 1, f);
	buf[n] = '\0';
	if (len)
		*len = n;
	fclose(f);
}

static void run_cli(struct cli_result *r, const char *db, const char **argv)
{
	FILE *out = tmpfile(), *err = tmpfile();
	int argc = 0;

	ck_assert(out && err);
	while (argv[argc])
		argc++;
	r->rc = spool_cli(db, argc, (char **)argv, out, err);
	read_all(out, r->out, sizeof(r->out), &r->out_len);
	read_all(err, r->err, sizeof(r->err), NULL);
}

#define CLI(r, ...) run_cli((r), g_db, (const char *[]){__VA_ARGS__, NULL})

static int count_lines(const char *s)
{
	int n = 0;

	for (; *s; s++)
		n += *s == '\n';
	return n;
}

static const struct usage_case {
	const char *argv[6];
	const char *err;
} usage_cases[] = {
    {{NULL}, "no command"},
    {{"frobnicate"}, "unknown command: frobnicate"},
    {{"list", "--state", "sleeping"}, "--state is one of"},
    {{"list", "--limit", "0"}, "--limit needs a number"},
    {{"list", "--limit", "12abc"}, "--limit needs a number"},
    {{"list", "--limit"}, "option needs a value"},
    {{"list", "--body"}, "unknown option: --body"},
    {{"list", "--state", "dead", "--state", "queued"}, "given twice"},
    {{"show"}, "show needs an ID"},
    {{"show", "abc"}, "ID is a positive number"},
    {{"show", "-3"}, "unknown option"},
    {{"show", "1", "2"}, "unexpected argument: 2"},
    {{"show", "1", "--body", "--ack"}, "--body or --ack (not both)"},
    {{"list", "--state", "acked"}, "--state is one of"},
    {{"replay"}, "replay needs an ID or --all-dead"},
    {{"replay", "3", "--all-dead"}, "not both"},
    {{"replay", "3", "--integration", "lab"}, "--integration goes with --all-dead"},
    {{"purge"}, "purge needs --delivered-before"},
    {{"purge", "--dead"}, "purge needs --delivered-before"},
    {{"purge", "--delivered-before", "7x"}, "bad DURATION (like 7d, 12h, 30m): 7x"},
    {{"purge", "--delivered-before", "d"}, "bad DURATION"},
    {{"purge", "--delivered-before", "99999999d"}, "bad DURATION"},
    {{"purge", "--delivered-before", "7d", "--all-delivered"}, "not both"},
    {{"stats", "extra"}, "unexpected argument"},
    {{"files", "--state", "dead"}, "unknown option: --state"},
    {{"files", "3"}, "unexpected argument: 3"},
    {{"files", "--limit", "0"}, "--limit needs a number"},
};

START_TEST(test_cli_usage)
{
	const struct usage_case *c = &usage_cases[_i];
	struct cli_result *r = calloc(1, sizeof(*r));
	int argc = 0;
	FILE *out = tmpfile(), *err = tmpfile();

	while (c->argv[argc])
		argc++;
	r->rc = spool_cli(g_db, argc, (char **)c->argv, out, err);
	read_all(out, r->out, sizeof(r->out), NULL);
	read_all(err, r->err, sizeof(r->err), NULL);
	ck_assert_int_eq(r->rc, 2);
	ck_assert_msg(strstr(r->err, c->err), "stderr: %s", r->err);
	ck_assert_ptr_nonnull(strstr(r->err, "usage: spool list"));
	ck_assert_int_eq(access(g_db, F_OK), -1); /* nothing was opened or created */
	free(r);
}
END_TEST

START_TEST(test_cli_missing_db)
{
	struct cli_result *r = calloc(1, sizeof(*r));

	CLI(r, "list");
	ck_assert_int_eq(r->rc, 1);
	ck_assert_ptr_nonnull(strstr(r->err, "No such file"));
	ck_assert_int_eq(access(g_db, F_OK), -1);
	free(r);
}
END_TEST

START_TEST(test_cli_list)
{
	struct cli_result *r = calloc(1, sizeof(*r));
	struct spool *s = six_rows();

	ck_assert_int_eq(spool_mark_retry(s, 1, 2, T0, "TLS \x1b[31mfailed\n"), 0);
	commit_ok(s);
	spool_close(s);

	CLI(r, "list");
	ck_assert_int_eq(r->rc, 0);
	ck_assert_ptr_nonnull(strstr(r->out, "ID "));
	ck_assert_ptr_nonnull(strstr(r->out, "LAST_ERROR"));
	ck_assert_int_eq(count_lines(r->out), 7);
	ck_assert_ptr_nonnull(strstr(r->out, "2025-11-29T14:00:00Z"));
	ck_assert_ptr_nonnull(strstr(r->out, "203.0.113.70:4242"));
	ck_assert_ptr_nonnull(strstr(r->out, "MSG00001"));
	ck_assert_ptr_nonnull(strstr(r->out, "TLS \\x1b[31mfailed\\x0a"));
	ck_assert_ptr_null(strchr(r->out, '\x1b')); /* no raw escape reaches the terminal */

	CLI(r, "list", "--state", "dead");
	ck_assert_int_eq(r->rc, 0);
	ck_assert_int_eq(count_lines(r->out), 3);
	ck_assert_ptr_nonnull(strstr(r->out, "\n5        dead      adt"));
	ck_assert_ptr_nonnull(strstr(r->out, "\n3        dead      lab"));
	ck_assert_ptr_nonnull(strstr(r->out, "HTTP 422"));

	CLI(r, "list", "--integration", "adt", "--state", "inflight");
	ck_assert_int_eq(count_lines(r->out), 2);
	ck_assert_ptr_nonnull(strstr(r->out, "\n6        inflight  adt"));

	CLI(r, "list", "--limit", "1");
	ck_assert_int_eq(count_lines(r->out), 2);
	ck_assert_ptr_nonnull(strstr(r->out, "\n6 "));
	free(r);
}
END_TEST

/* Outbound rows are listed with the inbound ones; the channel column
 * tells them apart. */
START_TEST(test_cli_list_channels)
{
	struct cli_result *r = calloc(1, sizeof(*r));

	spool_close(mixed_rows());
	CLI(r, "list");
	ck_assert_int_eq(r->rc, 0);
	ck_assert_int_eq(count_lines(r->out), 9);
	ck_assert_ptr_nonnull(strstr(r->out, "ID       STATE     INTEGRATION      CHANNEL SENDER"));
	ck_assert_ptr_nonnull(strstr(r->out, "\n2        queued    lab              out     s "));
	ck_assert_ptr_nonnull(strstr(r->out, "\n1        queued    lab              in      s "));

	CLI(r, "list", "--state", "rejected");
	ck_assert_int_eq(r->rc, 0);
	ck_assert_int_eq(count_lines(r->out), 2);
	ck_assert_ptr_nonnull(strstr(r->out, "\n7        rejected  lis              out "));
	ck_assert_ptr_nonnull(strstr(r->out, "AR: unknown facility"));

	CLI(r, "show", "7");
	ck_assert_int_eq(r->rc, 0);
	ck_assert_ptr_nonnull(strstr(r->out, "state:           rejected\n"));
	ck_assert_ptr_nonnull(strstr(r->out, "channel:         out\n"));
	ck_assert_ptr_nonnull(strstr(r->out, "ack_bytes:       9\n"));
	ck_assert_ptr_null(strstr(r->out, "MSA|")); /* the ACK only on request */
	CLI(r, "show", "7", "--ack");
	ck_assert_int_eq(r->rc, 0);
	ck_assert_uint_eq(r->out_len, 9);
	ck_assert_mem_eq(r->out, "MSA|AR|C7", 9);
	CLI(r, "show", "1", "--ack"); /* none: nothing printed */
	ck_assert_int_eq(r->rc, 0);
	ck_assert_uint_eq(r->out_len, 0);
	CLI(r, "show", "1");
	ck_assert_ptr_nonnull(strstr(r->out, "channel:         in\n"));
	ck_assert_ptr_nonnull(strstr(r->out, "ack_bytes:       0\n"));
	free(r);
}
END_TEST

START_TEST(test_cli_show)
{
	static const char body[] =
	    "MSH|^~\\&|LAB|H|||20251129||ORU^R01|C7|P|2.5\rPID|||SECRET^PATIENT\r";
	struct cli_result *r = calloc(1, sizeof(*r));
	struct spool *s = open_ok();
	char want[64];
	int64_t id;
	struct spool_new m = {.integration = "lab",
			      .sender = "203.0.113.70:4242",
			      .content_type = "application/hl7-v2",
			      .control_id = "C7",
			      .idem_key = KEY,
			      .lane = "p:LAB^H:5cd131e3eb88f2d8",
			      .lane2 = "p:LAB^H:3f101f40d63ea892",
			      .received_ms = T0,
			      .body = body,
			      .len = sizeof(body)}; /* the trailing NUL too: raw bytes */

	ck_assert_int_eq(spool_append(s, &m, &id), 0);
	commit_ok(s);
	spool_close(s);

	CLI(r, "show", "1");
	ck_assert_int_eq(r->rc, 0);
	ck_assert_ptr_nonnull(strstr(r->out, "idempotency_key: " KEY "\n"));
	ck_assert_ptr_nonnull(strstr(r->out, "lane:            p:LAB^H:5cd131e3eb88f2d8\n"));
	ck_assert_ptr_nonnull(strstr(r->out, "lane2:           p:LAB^H:3f101f40d63ea892\n"));
	ck_assert_ptr_nonnull(strstr(r->out, "state:           queued\n"));
	ck_assert_ptr_nonnull(strstr(r->out, "received:        2025-11-29T14:00:00Z\n"));
	snprintf(want, sizeof(want), "body_bytes:      %zu\n", sizeof(body));
	ck_assert_ptr_nonnull(strstr(r->out, want));
	ck_assert_ptr_null(strstr(r->out, "SECRET")); /* no patient data without --body */

	CLI(r, "show", "1", "--body");
	ck_assert_int_eq(r->rc, 0);
	ck_assert_uint_eq(r->out_len, sizeof(body));
	ck_assert_mem_eq(r->out, body, sizeof(body));

	CLI(r, "show", "999");
	ck_assert_int_eq(r->rc, 1);
	ck_assert_ptr_nonnull(strstr(r->err, "no message with id 999"));
	free(r);
}
END_TEST

START_TEST(test_cli_replay)
{
	struct cli_result *r = calloc(1, sizeof(*r));
	struct spool *s = six_rows();
	struct ids taken = {0};

	CLI(r, "replay", "3");
	ck_assert_int_eq(r->rc, 0);
	ck_assert_ptr_nonnull(strstr(r->out, "replayed 1 message(s)"));
	ck_assert_int_eq(sql_int("SELECT state FROM messages WHERE id = 3"), SPOOL_QUEUED);
	ck_assert_int_eq(spool_take_replayed(s, collect, &taken), 0); /* the bridge sees it */
	ck_assert_int_eq(taken.n, 1);
	ck_assert_int_eq(taken.id[0], 3);

	CLI(r, "replay", "3");
	ck_assert_int_eq(r->rc, 1);
	ck_assert_ptr_nonnull(strstr(r->err, "message 3 is queued, not dead"));

	CLI(r, "replay", "999");
	ck_assert_int_eq(r->rc, 1);
	ck_assert_ptr_nonnull(strstr(r->err, "no message with id 999"));

	CLI(r, "replay", "--all-dead", "--integration", "lab");
	ck_assert_int_eq(r->rc, 0);
	ck_assert_ptr_nonnull(strstr(r->out, "replayed 0 message(s)"));
	CLI(r, "replay", "--all-dead");
	ck_assert_int_eq(r->rc, 0);
	ck_assert_ptr_nonnull(strstr(r->out, "replayed 1 message(s)"));
	ck_assert_int_eq(sql_int("SELECT count(*) FROM messages WHERE state = 3"), 0);
	spool_close(s);
	free(r);
}
END_TEST

START_TEST(test_cli_purge)
{
	struct cli_result *r = calloc(1, sizeof(*r));
	struct timespec ts;
	struct spool *s = open_ok();
	int64_t now;

	clock_gettime(CLOCK_REALTIME, &ts);
	now = (int64_t)ts.tv_sec * 1000;
	append(s, "lab", "old delivered", now - 10 * DAY_MS);
	append(s, "lab", "new delivered", now);
	append(s, "lab", "old dead", now - 10 * DAY_MS);
	append(s, "lab", "queued", now - 30 * DAY_MS);
	commit_ok(s);
	ck_assert_int_eq(spool_mark_delivered(s, 1, now - 8 * DAY_MS), 0);
	ck_assert_int_eq(spool_mark_delivered(s, 2, now - 3600000), 0);
	ck_assert_int_eq(spool_mark_dead(s, 3, 3, NULL, 0, "x"), 0);
	commit_ok(s);
	spool_close(s);

	CLI(r, "purge", "--delivered-before", "7d");
	ck_assert_int_eq(r->rc, 0);
	ck_assert_str_eq(r->out, "purged 1 message(s)\n");
	ck_assert_int_eq(sql_int("SELECT count(*) FROM messages WHERE id = 1"), 0);

	CLI(r, "purge", "--delivered-before", "30m");
	ck_assert_str_eq(r->out, "purged 1 message(s)\n");

	CLI(r, "purge", "--all-delivered", "--dead");
	ck_assert_int_eq(r->rc, 0);
	ck_assert_str_eq(r->out, "purged 1 message(s)\n");
	ck_assert_int_eq(row_count(), 1); /* queued rows are never purged */
	free(r);
}
END_TEST

START_TEST(test_cli_stats)
{
	struct cli_result *r = calloc(1, sizeof(*r));
	struct spool *s = six_rows();
	char want[256];

	spool_close(s);
	CLI(r, "stats");
	ck_assert_int_eq(r->rc, 0);
	snprintf(want, sizeof(want), "%-16s %10s %10s %s\n%-16s %10d %10d %s\n%-16s %10d %10d %s\n",
		 "INTEGRATION", "QUEUED", "DEAD", "OLDEST_QUEUED", "adt", 2, 1,
		 "2025-11-29T14:00:00Z", "lab", 1, 1, "2025-11-29T14:00:00Z");
	ck_assert_str_eq(r->out, want);
	free(r);
}
END_TEST

/* Outbound destinations in a section of their own after the inbound lines
 * (which read as before), "lab" once as each. */
START_TEST(test_cli_stats_channels)
{
	struct cli_result *r = calloc(1, sizeof(*r));
	struct spool *s = mixed_rows();
	char want[512];
	const char *t = "2025-11-29T14:00:00Z";

	spool_close(s);
	CLI(r, "stats");
	ck_assert_int_eq(r->rc, 0);
	snprintf(want, sizeof(want),
		 "%-16s %10s %10s %s\n%-16s %10d %10d %s\n\n"
		 "%-16s %10s %10s %s\n%-16s %10d %10d %s\n%-16s %10d %10d %s\n",
		 "INTEGRATION", "QUEUED", "DEAD", "OLDEST_QUEUED", "lab", 2, 1, t, "DESTINATION",
		 "QUEUED", "DEAD", "OLDEST_QUEUED", "lab", 1, 0, t, "lis", 2, 1, t);
	ck_assert_str_eq(r->out, want);
	free(r);
}
END_TEST

/* Records of three files: 1 lab done, 2 adt spooled (a name with a
 * backslash and UTF-8, printed as \xHH like any field), 3 lab error. */
static void three_files(void)
{
	struct spool *s = open_ok();
	int64_t rows[3];

	file_rows(s, "lab", "ADT 1.hl7", &rows[0], 1);
	file_rows(s, "adt", "x\\y \xc3\xa9.hl7", &rows[1], 1);
	file_rows(s, "lab", "ORU 3.hl7", &rows[2], 1);
	ck_assert_int_eq(file_add_ok(s, "lab", "ADT 1.hl7", &rows[0], 1), 1);
	{
		struct spool_file f = FILE_REC("adt", "x\\y \xc3\xa9.hl7", SHA_B);
		int64_t id;

		ck_assert_int_eq(spool_file_add(s, &f, &rows[1], 1, &id), 0);
	}
	ck_assert_int_eq(file_add_ok(s, "lab", "ORU 3.hl7", &rows[2], 1), 3);
	commit_ok(s);
	ck_assert_int_eq(spool_file_dispose(s, 1, SPOOL_FILE_DONE, NULL, T0 + 60000), 0);
	ck_assert_int_eq(spool_file_dispose(s, 3, SPOOL_FILE_ERROR, "row 3: HTTP 400", T0 + 1000),
			 0);
	commit_ok(s);
	spool_close(s);
}

START_TEST(test_cli_files)
{
	struct cli_result *r = calloc(1, sizeof(*r));
	char want[512];

	three_files();
	CLI(r, "files");
	ck_assert_int_eq(r->rc, 0);
	ck_assert_int_eq(count_lines(r->out), 4);
	snprintf(want, sizeof(want), "%-8s %-16s %-32s %12s %-8s %6s %-20s %-20s %s\n", "ID",
		 "INTEGRATION", "NAME", "SIZE", "STATE", "ROWS", "RECEIVED", "DISPOSED", "REASON");
	ck_assert_msg(strncmp(r->out, want, strlen(want)) == 0, "%s", r->out);
	snprintf(want, sizeof(want), "\n%-8d %-16s %-32s %12d %-8s %6d %-20s %-20s %s\n", 3, "lab",
		 "ORU 3.hl7", 4242, "error", 1, "2025-11-29T14:00:00Z", "2025-11-29T14:00:01Z",
		 "row 3: HTTP 400");
	ck_assert_msg(strstr(r->out, want), "%s", r->out);
	snprintf(want, sizeof(want), "\n%-8d %-16s %-32s %12d %-8s %6d %-20s %-20s %s\n", 2, "adt",
		 "x\\x5cy \\xc3\\xa9.hl7", 4242, "spooled", 1, "2025-11-29T14:00:00Z", "-", "-");
	ck_assert_msg(strstr(r->out, want), "%s", r->out);
	ck_assert_ptr_null(strchr(r->out, '\xc3')); /* bytes as \xHH, as for every field */
	ck_assert_ptr_nonnull(strstr(r->out, " done     "));
	ck_assert(strstr(r->out, "\n3 ") < strstr(r->out, "\n1 ")); /* newest first */

	CLI(r, "files", "--integration", "lab");
	ck_assert_int_eq(r->rc, 0);
	ck_assert_int_eq(count_lines(r->out), 3);
	ck_assert_ptr_null(strstr(r->out, "adt"));
	CLI(r, "files", "--integration", "lab", "--limit", "1");
	ck_assert_int_eq(count_lines(r->out), 2);
	ck_assert_ptr_nonnull(strstr(r->out, "\n3 "));
	CLI(r, "files", "--integration", "nosuch");
	ck_assert_int_eq(r->rc, 0);
	ck_assert_int_eq(count_lines(r->out), 1);

	/* A row of a file shows its name; other rows show no such line. */
	CLI(r, "show", "1");
	ck_assert_int_eq(r->rc, 0);
	ck_assert_ptr_nonnull(strstr(r->out, "file_name:       ADT 1.hl7\n"));
	CLI(r, "show", "2");
	ck_assert_ptr_nonnull(strstr(r->out, "file_name:       x\\x5cy \\xc3\\xa9.hl7\n"));
	free(r);
}
END_TEST

START_TEST(test_cli_show_no_file)
{
	struct cli_result *r = calloc(1, sizeof(*r));
	struct spool *s = open_ok();

	append(s, "lab", "MSH|", T0);
	commit_ok(s);
	spool_close(s);
	CLI(r, "show", "1");
	ck_assert_int_eq(r->rc, 0);
	ck_assert_ptr_nonnull(strstr(r->out, "ack_bytes:"));
	ck_assert_ptr_null(strstr(r->out, "file_name"));
	CLI(r, "files"); /* none: the header alone */
	ck_assert_int_eq(r->rc, 0);
	ck_assert_int_eq(count_lines(r->out), 1);
	free(r);
}
END_TEST

/* ---- suite -------------------------------------------------------------- */

#define N_OF(a) ((int)(sizeof(a) / sizeof((a)[0])))

static TCase *tcase(const char *name)
{
	TCase *tc = tcase_create(name);

	tcase_add_unchecked_fixture(tc, root_setup, root_teardown);
	tcase_add_checked_fixture(tc, db_setup, NULL);
	tcase_set_timeout(tc, 60);
	return tc;
}

static Suite *spool_suite(void)
{
	Suite *su = suite_create("spool");
	TCase *tc = tcase("store");

	tcase_add_test(tc, test_open_schema);
	tcase_add_loop_test(tc, test_open_refuses, 0, N_OF(refuse_cases));
	tcase_add_test(tc, test_migrate_v1);
	tcase_add_test(tc, test_migrate_v2);
	tcase_add_test(tc, test_migrate_v3);
	tcase_add_test(tc, test_roundtrip);
	tcase_add_test(tc, test_uncommitted_is_lost);
	tcase_add_test(tc, test_pending_and_unknown_ids);
	tcase_add_test(tc, test_ids_not_reused);
	tcase_add_loop_test(tc, test_append_checks, 0, N_OF(append_checks));
	tcase_add_loop_test(tc, test_append_file_name, 0, N_OF(fname_checks));
	tcase_add_loop_test(tc, test_marks, 0, N_OF(mark_cases));
	tcase_add_loop_test(tc, test_error_is_cut, 0, N_OF(cut_cases));
	tcase_add_test(tc, test_load_pending);
	tcase_add_loop_test(tc, test_list, 0, N_OF(list_cases));
	tcase_add_test(tc, test_stats);
	tcase_add_test(tc, test_replay);
	tcase_add_test(tc, test_purge);
	tcase_add_test(tc, test_purge_chunks);
	tcase_add_test(tc, test_joins_open_batch);
	tcase_add_test(tc, test_reader_during_batch);
	tcase_add_loop_test(tc, test_pending_channel, 0, N_OF(pending_cases));
	tcase_add_loop_test(tc, test_find_key, 0, N_OF(find_cases));
	tcase_add_test(tc, test_find_key_in_batch);
	tcase_add_loop_test(tc, test_outbound_marks, 0, N_OF(outmark_cases));
	tcase_add_test(tc, test_rejected_state);
	tcase_add_test(tc, test_dead_replaces_ack);
	tcase_add_test(tc, test_stats_channels);
	tcase_add_test(tc, test_purge_outbound);
	suite_add_tcase(su, tc);

	tc = tcase("files");
	tcase_add_test(tc, test_file_add_commit);
	tcase_add_test(tc, test_file_rolled_back);
	tcase_add_loop_test(tc, test_file_checks, 0, N_OF(file_checks));
	tcase_add_loop_test(tc, test_file_bad_rows, 0, N_OF(file_bad_rows));
	tcase_add_test(tc, test_file_pending);
	tcase_add_test(tc, test_file_progress);
	tcase_add_test(tc, test_file_progress_reason);
	tcase_add_test(tc, test_file_dispose);
	tcase_add_test(tc, test_file_purge);
	suite_add_tcase(su, tc);

	tc = tcase("failures");
	tcase_add_test(tc, test_disk_full);
	tcase_add_loop_test(tc, test_sticky_batch_loss, 0, 3);
	tcase_add_loop_test(tc, test_crash_keeps_committed, 0, N_OF(crash_cases));
	tcase_add_test(tc, test_sigkill_midstream);
	suite_add_tcase(su, tc);

	tc = tcase("cli");
	tcase_add_loop_test(tc, test_cli_usage, 0, N_OF(usage_cases));
	tcase_add_test(tc, test_cli_missing_db);
	tcase_add_test(tc, test_cli_list);
	tcase_add_test(tc, test_cli_list_channels);
	tcase_add_test(tc, test_cli_show);
	tcase_add_test(tc, test_cli_replay);
	tcase_add_test(tc, test_cli_purge);
	tcase_add_test(tc, test_cli_stats);
	tcase_add_test(tc, test_cli_stats_channels);
	tcase_add_test(tc, test_cli_files);
	tcase_add_test(tc, test_cli_show_no_file);
	suite_add_tcase(su, tc);
	return su;
}

int main(void)
{
	SRunner *sr = srunner_create(spool_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
