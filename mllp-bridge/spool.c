/*
 * The durable spool on SQLite. See spool.h for the contracts.
 *
 * One connection per handle, statements prepared once and cached. A batch
 * is an SQLite transaction begun lazily with BEGIN IMMEDIATE (so the write
 * lock is taken up front and COMMIT cannot fail with SQLITE_BUSY halfway);
 * synchronous=FULL in WAL mode makes every COMMIT fsync the WAL, which is
 * what makes an ACK after spool_commit() honest.
 */
#include "spool.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define SCHEMA_VERSION	4	   /* 1: first release; 2: lane, lane2; 3: channel, ack; 4: files */
#define APPLICATION_ID	0x4d4c4c50 /* "MLLP": tells a spool from another SQLite file */
#define BUSY_TIMEOUT_MS 5000
#define UNCAPPED_PAGES	1073741823 /* SQLite's default max_page_count */
#define NELEMS(a)	(sizeof(a) / sizeof((a)[0]))
#define STR_(x)		#x
#define STR(x)		STR_(x)

enum stmt_id {
	ST_BEGIN,
	ST_COMMIT,
	ST_ROLLBACK,
	ST_INSERT,
	ST_INFLIGHT,
	ST_DELIVERED,
	ST_RETRY,
	ST_DEAD,
	ST_ACKED,
	ST_REJECTED,
	ST_PENDING,
	ST_FIND_KEY,
	ST_FIND_KEY_IN,
	ST_GET,
	ST_GET_BODY,
	ST_STATE,
	ST_LIST_ALL,
	ST_LIST_STATE,
	ST_LIST_INTEG,
	ST_LIST_BOTH,
	ST_REPLAY_ONE,
	ST_REPLAY_ALL,
	ST_REPLAY_INTEG,
	ST_HAS_REPLAYED,
	ST_REPLAYED,
	ST_CLEAR_REPLAYED,
	ST_PURGE_DELIVERED,
	ST_PURGE_DEAD,
	ST_STATS,
	ST_FILE_ADD,
	ST_FILE_ROW,
	ST_FILE_PENDING,
	ST_FILE_EXISTS,
	ST_FILE_COUNTS,
	ST_FILE_REASON,
	ST_FILE_DISPOSE,
	ST_FILE_LIST_ALL,
	ST_FILE_LIST_ROUTE,
	ST_HAS_OLD_FILES,
	ST_PURGE_FILE_ROWS,
	ST_PURGE_FILES,
	ST_COUNT
};

/* Column order read by row_view(); the body comes last in the result. */
#define ROW_COLS                                                                                   \
	"id, integration, sender, content_type, control_id, idem_key, received_ms, state, "        \
	"attempts, next_attempt_ms, delivered_ms, last_error, lane, lane2, length(body), "         \
	"channel, ack, file_name"
#define COL_BODY 18

/* Column order read by file_view(). */
#define FILE_COLS                                                                                  \
	"id, route, name, size, mtime, sha256, received_ms, state, reason, disposed_ms, nrows"

static const char *const stmt_sql[ST_COUNT] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_INSERT] = "INSERT INTO messages (integration, sender, content_type, control_id, "
		  "idem_key, lane, lane2, received_ms, state, body, channel, file_name) "
		  "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 0, ?9, ?10, ?11)",
    [ST_INFLIGHT] = "UPDATE messages SET state = 1 WHERE id = ?1",
    [ST_DELIVERED] = "UPDATE messages SET state = 2, delivered_ms = ?2, next_attempt_ms = 0 "
		     "WHERE id = ?1",
    [ST_RETRY] = "UPDATE messages SET state = 0, attempts = ?2, next_attempt_ms = ?3, "
		 "last_error = ?4 WHERE id = ?1",
    /* ack is always written: a replayed row that dies again must not show
     * the answer of its earlier life next to this life's error. */
    [ST_DEAD] = "UPDATE messages SET state = 3, attempts = ?2, next_attempt_ms = 0, "
		"last_error = ?3, ack = ?4 WHERE id = ?1",
    /* An answered message has no error left: last_error was the last
     * failed send's, and it succeeded since. */
    [ST_ACKED] = "UPDATE messages SET state = 2, delivered_ms = ?2, next_attempt_ms = 0, "
		 "ack = ?3, attempts = ?4, last_error = NULL WHERE id = ?1",
    [ST_REJECTED] = "UPDATE messages SET state = 4, attempts = ?2, next_attempt_ms = 0, "
		    "last_error = ?3, ack = ?4 WHERE id = ?1",
    /* messages_state finds the few pending rows; the channel is read from
     * each of them, which the load reads anyway. */
    [ST_PENDING] = "SELECT " ROW_COLS " FROM messages WHERE state IN (0, 1) AND channel = ?1 "
		   "ORDER BY id",
    /* "channel <> 0" lets SQLite use the partial index messages_key. */
    [ST_FIND_KEY] = "SELECT id FROM messages WHERE channel <> 0 AND channel = ?1 AND "
		    "integration = ?2 AND idem_key = ?3 ORDER BY id LIMIT 1",
    [ST_FIND_KEY_IN] = "SELECT id FROM messages WHERE channel = 0 AND integration = ?2 AND "
		       "idem_key = ?3 ORDER BY id LIMIT 1",
    [ST_GET] = "SELECT " ROW_COLS " FROM messages WHERE id = ?1",
    [ST_GET_BODY] = "SELECT " ROW_COLS ", body FROM messages WHERE id = ?1",
    [ST_STATE] = "SELECT state FROM messages WHERE id = ?1",
    [ST_LIST_ALL] = "SELECT " ROW_COLS " FROM messages ORDER BY id DESC LIMIT ?3",
    [ST_LIST_STATE] = "SELECT " ROW_COLS " FROM messages WHERE state = ?1 "
		      "ORDER BY id DESC LIMIT ?3",
    [ST_LIST_INTEG] = "SELECT " ROW_COLS " FROM messages WHERE integration = ?2 "
		      "ORDER BY id DESC LIMIT ?3",
    [ST_LIST_BOTH] = "SELECT " ROW_COLS " FROM messages WHERE integration = ?2 AND state = ?1 "
		     "ORDER BY id DESC LIMIT ?3",
    /* A rejected row is a dead letter too (the receiver refused it). */
    [ST_REPLAY_ONE] = "UPDATE messages SET state = 0, attempts = 0, next_attempt_ms = 0, "
		      "replayed = 1 WHERE id = ?1 AND state IN (3, 4)",
    [ST_REPLAY_ALL] = "UPDATE messages SET state = 0, attempts = 0, next_attempt_ms = 0, "
		      "replayed = 1 WHERE state IN (3, 4)",
    [ST_REPLAY_INTEG] = "UPDATE messages SET state = 0, attempts = 0, next_attempt_ms = 0, "
			"replayed = 1 WHERE state IN (3, 4) AND integration = ?1",
    /* spool_take_replayed() is the forwarder's: inbound rows only. */
    [ST_HAS_REPLAYED] = "SELECT EXISTS (SELECT 1 FROM messages WHERE replayed = 1 AND "
			"channel = ?1)",
    [ST_REPLAYED] = "SELECT " ROW_COLS " FROM messages WHERE replayed = 1 AND channel = ?1 "
		    "ORDER BY id",
    [ST_CLEAR_REPLAYED] = "UPDATE messages SET replayed = 0 WHERE replayed = 1 AND "
			  "channel = ?2 AND id <= ?1",
    /* INDEXED BY: without it SQLite picks messages_state (state = 2) and
     * reads every delivered row in retention to test delivered_ms, a loop
     * stall that grows with retention (measured: 7 ms at 12,000 rows, every
     * second). With it, the purge reads only what it deletes, and a schema
     * that lost the index fails to prepare instead of getting slow. */
    [ST_PURGE_DELIVERED] = "DELETE FROM messages WHERE id IN (SELECT id FROM messages "
			   "INDEXED BY messages_delivered "
			   "WHERE delivered_ms < ?1 AND state = 2 LIMIT ?2)",
    [ST_PURGE_DEAD] = "DELETE FROM messages WHERE id IN (SELECT id FROM messages "
		      "WHERE state IN (3, 4) AND received_ms < ?1 LIMIT ?2)",
    /* Both channels, grouped by channel too: a destination may have an
     * integration's name. A rejected row (outbound only) is a dead letter
     * like a dead one. messages_state finds the few rows not delivered,
     * never the many delivered ones in retention; the grouping sorts only
     * those. INDEXED BY: after an operator's ANALYZE, SQLite
     * guesses each state at a fifth of the table, four states at most of
     * it, and scans every row (seen with sqlite3 3.40). */
    [ST_STATS] = "SELECT channel, integration, sum(state IN (0, 1)), sum(state IN (3, 4)), "
		 "min(CASE WHEN state IN (0, 1) THEN received_ms END) FROM messages "
		 "INDEXED BY messages_state "
		 "WHERE state IN (0, 1, 3, 4) GROUP BY channel, integration "
		 "ORDER BY channel, integration",
    [ST_FILE_ADD] = "INSERT INTO files (route, name, size, mtime, sha256, received_ms, nrows) "
		    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    /* Only a row that exists and is the route's joins the list: a wrong id
     * inserts nothing, which spool_file_add() reports. */
    [ST_FILE_ROW] = "INSERT INTO file_rows (file_id, row_id) SELECT ?1, id FROM messages "
		    "WHERE id = ?2 AND integration = ?3",
    [ST_FILE_PENDING] = "SELECT " FILE_COLS " FROM files INDEXED BY files_open "
			"WHERE route = ?1 AND state = 0 ORDER BY id",
    [ST_FILE_EXISTS] = "SELECT 1 FROM files WHERE id = ?1",
    /* A row purged meanwhile has no messages row left: delivered. */
    [ST_FILE_COUNTS] = "SELECT coalesce(sum(m.state IN (0, 1)), 0), "
		       "coalesce(sum(m.id IS NULL OR m.state = 2), 0), "
		       "coalesce(sum(m.state IN (3, 4)), 0) "
		       "FROM file_rows f LEFT JOIN messages m ON m.id = f.row_id "
		       "WHERE f.file_id = ?1",
    [ST_FILE_REASON] = "SELECT m.last_error FROM file_rows f JOIN messages m ON m.id = f.row_id "
		       "WHERE f.file_id = ?1 AND m.state IN (3, 4) ORDER BY f.row_id LIMIT 1",
    [ST_FILE_DISPOSE] = "UPDATE files SET state = ?2, reason = ?3, disposed_ms = ?4 "
			"WHERE id = ?1",
    [ST_FILE_LIST_ALL] = "SELECT " FILE_COLS " FROM files ORDER BY id DESC LIMIT ?2",
    [ST_FILE_LIST_ROUTE] = "SELECT " FILE_COLS " FROM files WHERE route = ?1 "
			   "ORDER BY id DESC LIMIT ?2",
    /* The purge asks first, without the write lock: usually there is
     * nothing to do. */
    [ST_HAS_OLD_FILES] = "SELECT EXISTS (SELECT 1 FROM files INDEXED BY files_disposed "
			 "WHERE state <> 0 AND disposed_ms < ?1)",
    /* The lists go first, so that a record is never left without the list
     * it stands for while it exists. */
    [ST_PURGE_FILE_ROWS] = "DELETE FROM file_rows WHERE (file_id, row_id) IN "
			   "(SELECT r.file_id, r.row_id FROM files f INDEXED BY files_disposed "
			   "JOIN file_rows r ON r.file_id = f.id "
			   "WHERE f.state <> 0 AND f.disposed_ms < ?1 LIMIT ?2)",
    [ST_PURGE_FILES] = "DELETE FROM files WHERE id IN (SELECT f.id FROM files f "
		       "INDEXED BY files_disposed WHERE f.state <> 0 AND f.disposed_ms < ?1 "
		       "AND NOT EXISTS (SELECT 1 FROM file_rows r WHERE r.file_id = f.id) "
		       "LIMIT ?2)",
};

/* spool_find_key(): outbound rows only, so that an inbound append (the
 * busy path) does not pay for an index it never uses. */
#define KEY_INDEX_SQL                                                                              \
	"CREATE INDEX messages_key ON messages (channel, integration, idem_key) "                  \
	"WHERE channel <> 0;"

/* File records (schema 4). Apart from messages, so that an MLLP append
 * pays for no index of theirs: its only cost is a NULL file_name. The
 * partial indexes stay small: open files (the SFTP poller's question at
 * each pass) and disposed ones (the purge's, every second). */
#define FILES_SQL                                                                                  \
	"CREATE TABLE files ("                                                                     \
	" id INTEGER PRIMARY KEY AUTOINCREMENT,"                                                   \
	" route TEXT NOT NULL,"                                                                    \
	" name TEXT NOT NULL,"                                                                     \
	" size INTEGER NOT NULL,"                                                                  \
	" mtime INTEGER NOT NULL,"                                                                 \
	" sha256 TEXT NOT NULL,"                                                                   \
	" received_ms INTEGER NOT NULL,"                                                           \
	" state INTEGER NOT NULL DEFAULT 0,"                                                       \
	" reason TEXT,"                                                                            \
	" disposed_ms INTEGER NOT NULL DEFAULT 0,"                                                 \
	" nrows INTEGER NOT NULL);"                                                                \
	"CREATE TABLE file_rows (file_id INTEGER NOT NULL, row_id INTEGER NOT NULL,"               \
	" PRIMARY KEY (file_id, row_id)) WITHOUT ROWID;"                                           \
	"CREATE INDEX files_open ON files (route, id) WHERE state = 0;"                            \
	"CREATE INDEX files_disposed ON files (disposed_ms) WHERE state <> 0;"

/* A new spool gets the current schema at once. The small columns come
 * before the body: SQLite stores a row's columns in this order, and one
 * read after a large body walks its overflow pages. */
static const char schema_sql[] =
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
    " file_name TEXT,"
    " body BLOB NOT NULL);"
    "CREATE INDEX messages_state ON messages (state, id);"
    "CREATE INDEX messages_integration ON messages (integration, state);"
    "CREATE INDEX messages_delivered ON messages (delivered_ms);"
    /* Tiny: lets the bridge poll for replays every second without a scan. */
    "CREATE INDEX messages_replayed ON messages (id) WHERE replayed = 1;" KEY_INDEX_SQL FILES_SQL;

/* An older spool is brought up to date in place, one step per version, in
 * the schema transaction: an appliance upgraded with messages waiting keeps
 * them. migrations[v - 1] takes version v to v + 1.
 * 1 → 2: lanes. ADD COLUMN puts them after the body (unlike a new spool);
 * old rows read the default without touching their body, and rebuilding the
 * table would copy every body once more under the write lock.
 * 2 → 3: outbound rows. Every existing row is inbound (channel 0, the
 * default, never written into old rows); the new index is empty.
 * 3 → 4: file channels. Every existing row came from no file (file_name
 * NULL, nothing written into old rows); the file tables start empty. */
static const char *const migrations[] = {
    "ALTER TABLE messages ADD COLUMN lane TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE messages ADD COLUMN lane2 TEXT NOT NULL DEFAULT '';",
    "ALTER TABLE messages ADD COLUMN channel INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE messages ADD COLUMN ack BLOB;" KEY_INDEX_SQL,
    "ALTER TABLE messages ADD COLUMN file_name TEXT;" FILES_SQL,
};
_Static_assert(NELEMS(migrations) == SCHEMA_VERSION - 1, "one migration per schema version");

struct spool {
	sqlite3 *db;
	sqlite3_stmt *st[ST_COUNT];
	size_t pending; /* changes staged in the open batch */
	size_t rows;	/* of which new rows */
	int lost;	/* sticky: a batch with new rows was rolled back behind the caller's back */
	char err[SPOOL_ERRMSG_MAX];
};

static const char *const state_names[] = {"queued", "inflight", "delivered", "dead", "rejected"};
_Static_assert(NELEMS(state_names) == SPOOL_REJECTED + 1, "a name for every state");

const char *spool_state_name(int state)
{
	if (state < 0 || state > SPOOL_REJECTED)
		return "?";
	return state_names[state];
}

const char *spool_errmsg(const struct spool *s)
{
	if (!s)
		return "out of memory";
	return s->err[0] ? s->err : "no error";
}

size_t spool_pending(const struct spool *s)
{
	return s->pending;
}

static int map_rc(const struct spool *s, int rc)
{
	switch (rc & 0xff) {
	case SQLITE_FULL:
		return -ENOSPC;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return -EBUSY;
	case SQLITE_NOMEM:
		return -ENOMEM;
	case SQLITE_TOOBIG:
		return -EMSGSIZE;
	case SQLITE_NOTADB:
		return -EPROTO;
	case SQLITE_IOERR:
		/* A failed fsync or mmap for lack of space is still a full disk. */
		return sqlite3_system_errno(s->db) == ENOSPC ? -ENOSPC : -EIO;
	default:
		return -EIO;
	}
}

/* Records the SQLite error text of the call that just failed. */
static int fail(struct spool *s, int rc, const char *what)
{
	snprintf(s->err, sizeof(s->err), "%s: %s", what, sqlite3_errmsg(s->db));
	return map_rc(s, rc);
}

static int stmt(struct spool *s, enum stmt_id id, sqlite3_stmt **out)
{
	*out = NULL;
	if (!s->st[id]) {
		int rc = sqlite3_prepare_v3(s->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT,
					    &s->st[id], NULL);
		if (rc != SQLITE_OK)
			return fail(s, rc, "prepare");
	}
	*out = s->st[id];
	return 0;
}

/* Steps a statement that returns no rows, then resets it. */
static int step_done(struct spool *s, sqlite3_stmt *st, const char *what)
{
	int rc = sqlite3_step(st);
	int err = 0;

	if (rc != SQLITE_DONE)
		err = fail(s, rc, what);
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return err;
}

static int run(struct spool *s, enum stmt_id id, const char *what)
{
	sqlite3_stmt *st;
	int err = stmt(s, id, &st);

	return err ? err : step_done(s, st, what);
}

static int in_txn(const struct spool *s)
{
	return !sqlite3_get_autocommit(s->db);
}

/*
 * A failure inside a batch: roll it back so the handle is usable again. When
 * new rows were in it and the caller of this function is not the one who
 * appended them, the loss is kept for spool_commit()/spool_append() to report.
 */
static int batch_abort(struct spool *s, int err)
{
	if (in_txn(s))
		(void)run(s, ST_ROLLBACK, "rollback");
	if (s->rows > 0 && !s->lost)
		s->lost = err;
	s->pending = 0;
	s->rows = 0;
	return err;
}

/* The batch may have vanished under us: SQLite rolls a whole transaction
 * back by itself on some errors, e.g. of a read made inside the batch. */
static void batch_check(struct spool *s)
{
	if (s->pending > 0 && !in_txn(s)) {
		snprintf(s->err, sizeof(s->err), "batch rolled back by SQLite after an error");
		(void)batch_abort(s, -EIO);
	}
}

/* The loss to report to the caller of spool_append()/spool_commit(), or 0. */
static int batch_lost(struct spool *s)
{
	int err;

	batch_check(s);
	if ((err = s->lost) != 0) {
		(void)batch_abort(s, err);
		s->lost = 0;
	}
	return err;
}

static int batch_open(struct spool *s)
{
	batch_check(s);
	return in_txn(s) ? 0 : run(s, ST_BEGIN, "begin");
}

/* Runs one bound UPDATE as part of the batch. */
static int staged_update(struct spool *s, sqlite3_stmt *st, int64_t id, const char *what)
{
	int began, err;

	batch_check(s);
	began = !in_txn(s);
	err = batch_open(s);

	if (err) {
		sqlite3_reset(st);
		sqlite3_clear_bindings(st);
		return batch_abort(s, err);
	}
	if ((err = step_done(s, st, what)) < 0)
		return batch_abort(s, err);
	if (sqlite3_changes(s->db) == 0) {
		if (began)
			(void)run(s, ST_ROLLBACK, "rollback"); /* nothing staged: drop the lock */
		snprintf(s->err, sizeof(s->err), "%s: no row %lld", what, (long long)id);
		return -ENOENT;
	}
	s->pending++;
	return 0;
}

/* An operation that commits at once: its own transaction, or joins the
 * open batch. *own says which, for txn_end(). Fails only when own. */
static int txn_begin(struct spool *s, int *own)
{
	batch_check(s);
	*own = !in_txn(s);
	return *own ? run(s, ST_BEGIN, "begin") : 0;
}

static int txn_end(struct spool *s, int own, int err, int changed)
{
	if (!own) {
		if (err)
			return batch_abort(s, err);
		s->pending += changed > 0;
		return 0;
	}
	if (!err && (err = run(s, ST_COMMIT, "commit")) == 0)
		return 0;
	if (in_txn(s))
		(void)run(s, ST_ROLLBACK, "rollback");
	return err;
}

static int exec_sql(struct spool *s, const char *sql, const char *what)
{
	char *msg = NULL;
	int rc = sqlite3_exec(s->db, sql, NULL, NULL, &msg);

	if (rc == SQLITE_OK)
		return 0;
	snprintf(s->err, sizeof(s->err), "%s: %s", what, msg ? msg : sqlite3_errstr(rc));
	sqlite3_free(msg);
	return map_rc(s, rc);
}

/* Runs a PRAGMA that answers one value; *text (may be NULL) gets it. */
static int pragma(struct spool *s, const char *sql, char *text, size_t cap, int64_t *num)
{
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
	int err = 0;

	if (rc != SQLITE_OK)
		return fail(s, rc, sql);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		if (text)
			snprintf(text, cap, "%s", (const char *)sqlite3_column_text(st, 0));
		if (num)
			*num = sqlite3_column_int64(st, 0);
	} else if (rc != SQLITE_DONE) {
		err = fail(s, rc, sql);
	}
	sqlite3_finalize(st);
	return err;
}

static int apply_pragmas(struct spool *s)
{
	char mode[16] = "";
	int err;

	sqlite3_extended_result_codes(s->db, 1);
	sqlite3_busy_timeout(s->db, BUSY_TIMEOUT_MS);
	if ((err = pragma(s, "PRAGMA journal_mode = WAL", mode, sizeof(mode), NULL)) < 0)
		return err;
	if (strcasecmp(mode, "wal") != 0) {
		snprintf(s->err, sizeof(s->err),
			 "journal_mode is \"%s\", not wal (a file system without shared memory?)",
			 mode);
		return -EIO;
	}
	/* synchronous=FULL: every COMMIT fsyncs the WAL, or an ACK would lie.
	 * wal_autocheckpoint: see SPOOL_WAL_CHECKPOINT_PAGES.
	 * secure_delete=FAST: purged patient data is zeroed where it costs no I/O. */
	return exec_sql(s,
			"PRAGMA synchronous = FULL;"
			"PRAGMA foreign_keys = OFF;"
			"PRAGMA cache_size = -8192;"
			"PRAGMA wal_autocheckpoint = " STR(
			    SPOOL_WAL_CHECKPOINT_PAGES) ";"
							"PRAGMA journal_size_limit = 67108864;"
							"PRAGMA secure_delete = FAST;",
			"pragmas");
}

static int check_version(struct spool *s, int64_t *version)
{
	int64_t app = 0;
	int err;

	if ((err = pragma(s, "PRAGMA application_id", NULL, 0, &app)) < 0 ||
	    (err = pragma(s, "PRAGMA user_version", NULL, 0, version)) < 0)
		return err;
	if (app != 0 && app != APPLICATION_ID) {
		snprintf(s->err, sizeof(s->err),
			 "not a spool database (application_id %#llx is another program's)",
			 (unsigned long long)app);
		return -EPROTO;
	}
	if (*version > SCHEMA_VERSION) {
		snprintf(s->err, sizeof(s->err),
			 "spool schema version %lld is newer than this mllp-bridge knows (%d): "
			 "run the matching or a newer release",
			 (long long)*version, SCHEMA_VERSION);
		return -EPROTO;
	}
	return 0;
}

/* Creates the schema (version 0: a new file) or migrates it from version,
 * then records SCHEMA_VERSION. Runs inside the schema transaction. */
static int upgrade_schema(struct spool *s, int64_t version)
{
	char sql[128];
	int err = 0;

	if (version == 0)
		err = exec_sql(s, schema_sql, "schema");
	else
		for (size_t i = (size_t)version - 1; i < NELEMS(migrations) && !err; i++)
			err = exec_sql(s, migrations[i], "schema migration");
	if (err)
		return err;
	snprintf(sql, sizeof(sql), "PRAGMA application_id = %d; PRAGMA user_version = %d;",
		 APPLICATION_ID, SCHEMA_VERSION);
	return exec_sql(s, sql, "schema version");
}

static int apply_schema(struct spool *s)
{
	int64_t version = 0;
	int err;

	if ((err = check_version(s, &version)) < 0 || version == SCHEMA_VERSION)
		return err;
	/* Check again under the write lock, since the bridge and the operator
	 * CLI may both get here first: only one of them creates or migrates. */
	if ((err = exec_sql(s, "BEGIN IMMEDIATE", "begin")) < 0)
		return err;
	if ((err = check_version(s, &version)) == 0 && version < SCHEMA_VERSION)
		err = upgrade_schema(s, version);
	if (!err)
		return exec_sql(s, "COMMIT", "commit schema");
	(void)exec_sql(s, "ROLLBACK", "rollback");
	return err;
}

/* Creates the file ourselves so that it (and, following it, the -wal and
 * -shm files SQLite creates) is not readable by others: it is patient data. */
static int create_private(struct spool *s, const char *path)
{
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);

	if (fd < 0) {
		snprintf(s->err, sizeof(s->err), "%s: %s", path, strerror(errno));
		return -errno;
	}
	close(fd);
	return 0;
}

int spool_open(const char *path, struct spool **out)
{
	struct spool *s = calloc(1, sizeof(*s));
	int rc, err;

	*out = s;
	if (!s)
		return -ENOMEM;
	if ((err = create_private(s, path)) < 0)
		return err;
	rc = sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		snprintf(s->err, sizeof(s->err), "%s: %s", path,
			 s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
		return rc == SQLITE_NOMEM ? -ENOMEM : -EIO;
	}
	if ((err = apply_pragmas(s)) < 0 || (err = apply_schema(s)) < 0)
		return err;
	for (int i = ST_BEGIN; i <= ST_ROLLBACK; i++) {
		sqlite3_stmt *st;

		/* Prepared up front: a rollback must not fail for want of memory. */
		if ((err = stmt(s, (enum stmt_id)i, &st)) < 0)
			return err;
	}
	return 0;
}

void spool_close(struct spool *s)
{
	if (!s)
		return;
	if (s->db && in_txn(s))
		(void)run(s, ST_ROLLBACK, "rollback");
	for (int i = 0; i < ST_COUNT; i++)
		sqlite3_finalize(s->st[i]);
	sqlite3_close_v2(s->db);
	free(s);
}

/* The argument checks write their text into err (SPOOL_ERRMSG_MAX bytes):
 * the handle's, or a scratch buffer for spool_check_new(). */
#define SAY(err, ...) snprintf((err), SPOOL_ERRMSG_MAX, __VA_ARGS__)

static int check_text(char *err, const char *v, const char *name)
{
	if (!v) {
		SAY(err, "append: %s is NULL", name);
		return -EINVAL;
	}
	if (strnlen(v, SPOOL_TEXT_MAX + 1) > SPOOL_TEXT_MAX) {
		SAY(err, "append: %s longer than %d bytes", name, SPOOL_TEXT_MAX);
		return -EMSGSIZE;
	}
	return 0;
}

/* The key goes out as an HTTP header value: visible ASCII only, since a
 * space at either end would not survive the trip. */
static int check_key(char *err, const char *k, const char *what)
{
	size_t n = k ? strnlen(k, SPOOL_KEY_MAX + 1) : 0;
	int visible = n > 0;

	if (n > SPOOL_KEY_MAX) {
		SAY(err, "%s: idem_key longer than %d bytes", what, SPOOL_KEY_MAX);
		return -EMSGSIZE;
	}
	for (size_t i = 0; i < n && visible; i++)
		visible = (unsigned char)k[i] >= 0x21 && (unsigned char)k[i] <= 0x7e;
	if (!visible) {
		SAY(err, "%s: idem_key is %s", what, k ? "empty or not printable ASCII" : "NULL");
		return -EINVAL;
	}
	return 0;
}

/* A lane may be NULL (no lane: ""). */
static int check_lane(char *err, const char *v, const char *name)
{
	if (v && strnlen(v, SPOOL_LANE_MAX + 1) > SPOOL_LANE_MAX) {
		SAY(err, "append: %s longer than %d bytes", name, SPOOL_LANE_MAX);
		return -EMSGSIZE;
	}
	return 0;
}

/* A remote file's name without its folder: it names a file in done/ or
 * error/ later, so no '/', no "." or "..", and no control character (it
 * goes into logs and, percent-encoded, into a header). UTF-8 is kept as it
 * is. */
static int check_file_name(char *err, const char *v, const char *what)
{
	size_t n = v ? strnlen(v, SPOOL_FILE_NAME_MAX + 1) : 0;

	if (n > SPOOL_FILE_NAME_MAX) {
		SAY(err, "%s: file name longer than %d bytes", what, SPOOL_FILE_NAME_MAX);
		return -EMSGSIZE;
	}
	if (n == 0 || strcmp(v, ".") == 0 || strcmp(v, "..") == 0) {
		SAY(err, "%s: file name is %s", what, v ? "empty, \".\" or \"..\"" : "NULL");
		return -EINVAL;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)v[i];

		if (c == '/' || c < 0x20 || c == 0x7f) {
			SAY(err, "%s: file name holds %s", what,
			    c == '/' ? "a '/'" : "a control character");
			return -EINVAL;
		}
	}
	return 0;
}

static int check_new(char *err, const struct spool_new *m)
{
	int e;

	if ((e = check_text(err, m->integration, "integration")) < 0 ||
	    (e = check_text(err, m->sender, "sender")) < 0 ||
	    (e = check_text(err, m->content_type, "content_type")) < 0 ||
	    (e = check_text(err, m->control_id, "control_id")) < 0 ||
	    (e = check_key(err, m->idem_key, "append")) < 0 ||
	    (e = check_lane(err, m->lane, "lane")) < 0 ||
	    (e = check_lane(err, m->lane2, "lane2")) < 0)
		return e;
	if (m->file_name && *m->file_name && (e = check_file_name(err, m->file_name, "append")) < 0)
		return e;
	if (!m->body && m->len > 0) {
		SAY(err, "append: NULL body");
		return -EINVAL;
	}
	if (m->channel != SPOOL_IN && m->channel != SPOOL_OUT) {
		SAY(err, "append: no channel %d", (int)m->channel);
		return -EINVAL;
	}
	if (m->len > SPOOL_BODY_MAX) {
		SAY(err, "append: body of %zu bytes is over %u", m->len, SPOOL_BODY_MAX);
		return -EMSGSIZE;
	}
	return 0;
}

int spool_check_new(const struct spool_new *m)
{
	char scratch[SPOOL_ERRMSG_MAX];

	return check_new(scratch, m);
}

static int insert(struct spool *s, const struct spool_new *m)
{
	sqlite3_stmt *st;
	int err = stmt(s, ST_INSERT, &st);

	if (err)
		return err;
	sqlite3_bind_text(st, 1, m->integration, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, m->sender, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, m->content_type, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, m->control_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, m->idem_key, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 6, m->lane ? m->lane : "", -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 7, m->lane2 ? m->lane2 : "", -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 8, m->received_ms);
	/* A zero-length blob, never NULL: the column is NOT NULL. */
	sqlite3_bind_blob64(st, 9, m->len ? m->body : "", m->len, SQLITE_STATIC);
	sqlite3_bind_int(st, 10, (int)m->channel);
	/* Unbound (NULL) for every MLLP and HTTPS row: nothing else to pay. */
	if (m->file_name && *m->file_name)
		sqlite3_bind_text(st, 11, m->file_name, -1, SQLITE_STATIC);
	return step_done(s, st, "insert");
}

int spool_append(struct spool *s, const struct spool_new *m, int64_t *id)
{
	int err;

	if ((err = check_new(s->err, m)) < 0)
		return err;
	if ((err = batch_lost(s)) < 0)
		return err;
	if ((err = batch_open(s)) == 0)
		err = insert(s, m);
	if (err) {
		(void)batch_abort(s, err);
		s->lost = 0; /* told to this caller right now */
		return err;
	}
	s->pending++;
	s->rows++;
	*id = sqlite3_last_insert_rowid(s->db);
	return 0;
}

int spool_commit(struct spool *s)
{
	int err;

	if ((err = batch_lost(s)) < 0)
		return err;
	if (!in_txn(s)) {
		s->pending = 0;
		s->rows = 0;
		return 0;
	}
	if ((err = run(s, ST_COMMIT, "commit")) < 0) {
		(void)batch_abort(s, err);
		s->lost = 0;
		return err;
	}
	s->pending = 0;
	s->rows = 0;
	return 0;
}

int spool_mark_inflight(struct spool *s, int64_t id)
{
	sqlite3_stmt *st;
	int err = stmt(s, ST_INFLIGHT, &st);

	if (err)
		return batch_abort(s, err);
	sqlite3_bind_int64(st, 1, id);
	return staged_update(s, st, id, "mark inflight");
}

int spool_mark_delivered(struct spool *s, int64_t id, int64_t now_ms)
{
	sqlite3_stmt *st;
	int err = stmt(s, ST_DELIVERED, &st);

	if (err)
		return batch_abort(s, err);
	sqlite3_bind_int64(st, 1, id);
	sqlite3_bind_int64(st, 2, now_ms);
	return staged_update(s, st, id, "mark delivered");
}

/* Binds an error text cut to SPOOL_ERROR_MAX bytes, never inside a UTF-8
 * sequence, or NULL. */
static void bind_error(sqlite3_stmt *st, int col, const char *error)
{
	size_t n;

	if (!error) {
		sqlite3_bind_null(st, col);
		return;
	}
	n = strnlen(error, SPOOL_ERROR_MAX + 1);
	if (n > SPOOL_ERROR_MAX) {
		n = SPOOL_ERROR_MAX;
		while (n > 0 && ((unsigned char)error[n] & 0xc0) == 0x80)
			n--;
	}
	sqlite3_bind_text(st, col, error, (int)n, SQLITE_STATIC);
}

int spool_mark_retry(struct spool *s, int64_t id, int attempts, int64_t next_attempt_ms,
		     const char *error)
{
	sqlite3_stmt *st;
	int err = stmt(s, ST_RETRY, &st);

	if (err)
		return batch_abort(s, err);
	sqlite3_bind_int64(st, 1, id);
	sqlite3_bind_int(st, 2, attempts);
	sqlite3_bind_int64(st, 3, next_attempt_ms);
	bind_error(st, 4, error);
	return staged_update(s, st, id, "mark retry");
}

/* An ACK is checked before anything is touched, like an append. */
static int check_ack(struct spool *s, const void *ack, size_t len, const char *what)
{
	if (len > SPOOL_ACK_MAX) {
		snprintf(s->err, sizeof(s->err), "%s: ack of %zu bytes is over %d", what, len,
			 SPOOL_ACK_MAX);
		return -EMSGSIZE;
	}
	if (!ack && len > 0) {
		snprintf(s->err, sizeof(s->err), "%s: NULL ack", what);
		return -EINVAL;
	}
	return 0;
}

/* Binds an ACK as a blob; an empty one is no ACK (NULL). */
static void bind_ack(sqlite3_stmt *st, int col, const void *ack, size_t len)
{
	if (len == 0)
		sqlite3_bind_null(st, col);
	else
		sqlite3_bind_blob64(st, col, ack, len, SQLITE_STATIC);
}

int spool_mark_acked(struct spool *s, int64_t id, int attempts, int64_t now_ms, const void *ack,
		     size_t len)
{
	sqlite3_stmt *st;
	int err;

	if ((err = check_ack(s, ack, len, "mark acked")) < 0)
		return err;
	if ((err = stmt(s, ST_ACKED, &st)) < 0)
		return batch_abort(s, err);
	sqlite3_bind_int64(st, 1, id);
	sqlite3_bind_int64(st, 2, now_ms);
	bind_ack(st, 3, ack, len);
	sqlite3_bind_int(st, 4, attempts);
	return staged_update(s, st, id, "mark acked");
}

int spool_mark_rejected(struct spool *s, int64_t id, int attempts, const void *ack, size_t len,
			const char *error)
{
	sqlite3_stmt *st;
	int err;

	if ((err = check_ack(s, ack, len, "mark rejected")) < 0)
		return err;
	if ((err = stmt(s, ST_REJECTED, &st)) < 0)
		return batch_abort(s, err);
	sqlite3_bind_int64(st, 1, id);
	sqlite3_bind_int(st, 2, attempts);
	bind_error(st, 3, error);
	bind_ack(st, 4, ack, len);
	return staged_update(s, st, id, "mark rejected");
}

int spool_mark_dead(struct spool *s, int64_t id, int attempts, const void *ack, size_t len,
		    const char *error)
{
	sqlite3_stmt *st;
	int err;

	if ((err = check_ack(s, ack, len, "mark dead")) < 0)
		return err;
	if ((err = stmt(s, ST_DEAD, &st)) < 0)
		return batch_abort(s, err);
	sqlite3_bind_int64(st, 1, id);
	sqlite3_bind_int(st, 2, attempts);
	bind_error(st, 3, error);
	bind_ack(st, 4, ack, len);
	return staged_update(s, st, id, "mark dead");
}

static char *col_text(sqlite3_stmt *st, int col)
{
	const unsigned char *t = sqlite3_column_text(st, col);

	return t ? (char *)t : (char *)"";
}

/* A row whose strings point into the statement: valid until the next step. */
static void row_view(sqlite3_stmt *st, struct spool_row *r)
{
	r->id = sqlite3_column_int64(st, 0);
	r->integration = col_text(st, 1);
	r->sender = col_text(st, 2);
	r->content_type = col_text(st, 3);
	r->control_id = col_text(st, 4);
	r->idempotency_key = col_text(st, 5);
	r->received_ms = sqlite3_column_int64(st, 6);
	r->state = (enum spool_state)sqlite3_column_int(st, 7);
	r->attempts = sqlite3_column_int(st, 8);
	r->next_attempt_ms = sqlite3_column_int64(st, 9);
	r->delivered_ms = sqlite3_column_int64(st, 10);
	r->last_error = sqlite3_column_type(st, 11) == SQLITE_NULL ? NULL : col_text(st, 11);
	r->lane = col_text(st, 12);
	r->lane2 = col_text(st, 13);
	r->len = (size_t)sqlite3_column_int64(st, 14);
	r->channel = (enum spool_channel)sqlite3_column_int(st, 15);
	/* As text: SQLite adds a NUL after the bytes, which an ACK may hold too. */
	r->ack =
	    sqlite3_column_type(st, 16) == SQLITE_NULL ? NULL : (char *)sqlite3_column_text(st, 16);
	r->ack_len = r->ack ? (size_t)sqlite3_column_bytes(st, 16) : 0;
	r->file_name = sqlite3_column_type(st, 17) == SQLITE_NULL ? NULL : col_text(st, 17);
}

/* Steps a bound query, handing each row to cb until it returns non-zero
 * (*cb_ret gets that value). *last gets the id of the last row cb accepted
 * (may be NULL). Returns 0 or the read failure. */
static int each_row(struct spool *s, sqlite3_stmt *st, int pending_as_queued, spool_row_cb cb,
		    void *arg, int *cb_ret, int64_t *last)
{
	struct spool_row r;
	int rc, err = 0;

	*cb_ret = 0;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		row_view(st, &r);
		if (pending_as_queued && r.state == SPOOL_INFLIGHT)
			r.state = SPOOL_QUEUED;
		if ((*cb_ret = cb(arg, &r)) != 0)
			break;
		if (last)
			*last = r.id;
	}
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		err = fail(s, rc, "read");
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return err;
}

static int check_channel(struct spool *s, enum spool_channel channel, const char *what)
{
	if (channel == SPOOL_IN || channel == SPOOL_OUT)
		return 0;
	snprintf(s->err, sizeof(s->err), "%s: no channel %d", what, (int)channel);
	return -EINVAL;
}

int spool_load_pending_channel(struct spool *s, enum spool_channel channel, spool_row_cb cb,
			       void *arg)
{
	sqlite3_stmt *st;
	int ret, err;

	if ((err = check_channel(s, channel, "load pending")) < 0 ||
	    (err = stmt(s, ST_PENDING, &st)) < 0)
		return err;
	sqlite3_bind_int(st, 1, (int)channel);
	err = each_row(s, st, 1, cb, arg, &ret, NULL);
	return err ? err : ret;
}

int spool_load_pending(struct spool *s, spool_row_cb cb, void *arg)
{
	return spool_load_pending_channel(s, SPOOL_IN, cb, arg);
}

int spool_find_key(struct spool *s, enum spool_channel channel, const char *route, const char *key,
		   int64_t *id)
{
	sqlite3_stmt *st;
	int rc, err;

	if ((err = check_channel(s, channel, "find key")) < 0 ||
	    (err = check_key(s->err, key, "find key")) < 0)
		return err;
	if (!route || strnlen(route, SPOOL_TEXT_MAX + 1) > SPOOL_TEXT_MAX) {
		snprintf(s->err, sizeof(s->err), "find key: route is %s",
			 route ? "too long" : "NULL");
		return route ? -EMSGSIZE : -EINVAL;
	}
	if ((err = stmt(s, channel == SPOOL_IN ? ST_FIND_KEY_IN : ST_FIND_KEY, &st)) < 0)
		return err;
	sqlite3_bind_int(st, 1, (int)channel);
	sqlite3_bind_text(st, 2, route, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, key, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*id = sqlite3_column_int64(st, 0);
	} else if (rc == SQLITE_DONE) {
		snprintf(s->err, sizeof(s->err), "find key: none for %s", route);
		err = -ENOENT;
	} else {
		err = fail(s, rc, "find key");
	}
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return err;
}

void spool_row_clear(struct spool_row *r)
{
	free(r->integration);
	free(r->sender);
	free(r->content_type);
	free(r->control_id);
	free(r->idempotency_key);
	free(r->lane);
	free(r->lane2);
	free(r->last_error);
	free(r->ack);
	free(r->file_name);
	memset(r, 0, sizeof(*r));
}

static int row_copy(const struct spool_row *v, struct spool_row *r)
{
	*r = *v;
	r->integration = strdup(v->integration);
	r->sender = strdup(v->sender);
	r->content_type = strdup(v->content_type);
	r->control_id = strdup(v->control_id);
	r->idempotency_key = strdup(v->idempotency_key);
	r->lane = strdup(v->lane);
	r->lane2 = strdup(v->lane2);
	r->last_error = v->last_error ? strdup(v->last_error) : NULL;
	r->file_name = v->file_name ? strdup(v->file_name) : NULL;
	/* NUL-terminated too, for a caller that logs it as text. */
	r->ack = v->ack ? malloc(v->ack_len + 1) : NULL;
	if (r->ack) {
		memcpy(r->ack, v->ack, v->ack_len);
		r->ack[v->ack_len] = '\0';
	}
	if (!r->integration || !r->sender || !r->content_type || !r->control_id ||
	    !r->idempotency_key || !r->lane || !r->lane2 || (v->last_error && !r->last_error) ||
	    (v->ack && !r->ack) || (v->file_name && !r->file_name)) {
		spool_row_clear(r);
		return -ENOMEM;
	}
	return 0;
}

static int body_copy(struct spool *s, sqlite3_stmt *st, size_t len, void **body)
{
	const void *p = sqlite3_column_blob(st, COL_BODY);

	if (len > SPOOL_BODY_MAX) {
		snprintf(s->err, sizeof(s->err), "get: body of %zu bytes is over %u", len,
			 SPOOL_BODY_MAX);
		return -EMSGSIZE;
	}
	if (!p && len > 0)
		return fail(s, sqlite3_errcode(s->db), "read body");
	*body = malloc(len ? len : 1);
	if (!*body)
		return -ENOMEM;
	if (len)
		memcpy(*body, p, len);
	return 0;
}

static int get_row(struct spool *s, sqlite3_stmt *st, int64_t id, struct spool_row *r, void **body)
{
	struct spool_row v;
	int rc = sqlite3_step(st);
	int err;

	if (rc == SQLITE_DONE) {
		snprintf(s->err, sizeof(s->err), "get: no row %lld", (long long)id);
		return -ENOENT;
	}
	if (rc != SQLITE_ROW)
		return fail(s, rc, "get");
	row_view(st, &v);
	if ((err = row_copy(&v, r)) < 0)
		return err;
	if (body && (err = body_copy(s, st, r->len, body)) < 0)
		spool_row_clear(r);
	return err;
}

int spool_get(struct spool *s, int64_t id, struct spool_row *r, void **body)
{
	sqlite3_stmt *st;
	int err;

	memset(r, 0, sizeof(*r));
	if (body)
		*body = NULL;
	if ((err = stmt(s, body ? ST_GET_BODY : ST_GET, &st)) < 0)
		return err;
	sqlite3_bind_int64(st, 1, id);
	err = get_row(s, st, id, r, body);
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return err;
}

int spool_list(struct spool *s, int state, const char *integration, int limit, spool_row_cb cb,
	       void *arg)
{
	static const enum stmt_id pick[2][2] = {{ST_LIST_ALL, ST_LIST_INTEG},
						{ST_LIST_STATE, ST_LIST_BOTH}};
	sqlite3_stmt *st;
	int ret, err = stmt(s, pick[state >= 0][integration != NULL], &st);

	if (err)
		return err;
	/* Unused parameters of the chosen statement are simply not bound. */
	if (state >= 0)
		sqlite3_bind_int(st, 1, state);
	if (integration)
		sqlite3_bind_text(st, 2, integration, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, limit > 0 ? limit : -1);
	err = each_row(s, st, 0, cb, arg, &ret, NULL);
	return err ? err : ret;
}

/* The state of one row, or -ENOENT. */
static int row_state(struct spool *s, int64_t id, int *state)
{
	sqlite3_stmt *st;
	int rc, err = stmt(s, ST_STATE, &st);

	if (err)
		return err;
	sqlite3_bind_int64(st, 1, id);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*state = sqlite3_column_int(st, 0);
	else if (rc == SQLITE_DONE)
		err = -ENOENT;
	else
		err = fail(s, rc, "read state");
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if (err == -ENOENT)
		snprintf(s->err, sizeof(s->err), "replay: no row %lld", (long long)id);
	return err;
}

static int replay_rows(struct spool *s, int64_t id, const char *integration, int *count)
{
	enum stmt_id which = id > 0 ? ST_REPLAY_ONE : integration ? ST_REPLAY_INTEG : ST_REPLAY_ALL;
	sqlite3_stmt *st;
	int err = stmt(s, which, &st);

	if (err)
		return err;
	if (id > 0)
		sqlite3_bind_int64(st, 1, id);
	else if (integration)
		sqlite3_bind_text(st, 1, integration, -1, SQLITE_STATIC);
	if ((err = step_done(s, st, "replay")) == 0)
		*count = sqlite3_changes(s->db);
	return err;
}

int spool_replay(struct spool *s, int64_t id, const char *integration, int *count)
{
	int own, state = 0, err;

	*count = 0;
	if (id < 0)
		return -EINVAL;
	if ((err = txn_begin(s, &own)) < 0)
		return err;
	if (id > 0)
		err = row_state(s, id, &state);
	if (err == -ENOENT) {
		(void)txn_end(s, own, 0, 0);
		return err;
	}
	if (!err)
		err = replay_rows(s, id, integration, count);
	return txn_end(s, own, err, *count);
}

static int has_replayed(struct spool *s, enum spool_channel channel, int *yes)
{
	sqlite3_stmt *st;
	int rc, err = stmt(s, ST_HAS_REPLAYED, &st);

	if (err)
		return err;
	sqlite3_bind_int(st, 1, (int)channel);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*yes = sqlite3_column_int(st, 0);
	else
		err = fail(s, rc, "poll replayed");
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return err;
}

static int take_replayed(struct spool *s, enum spool_channel channel, spool_row_cb cb, void *arg)
{
	sqlite3_stmt *st, *clr;
	int64_t last = 0;
	int yes = 0, own, ret, err;

	/* The usual answer is "none": find it without the write lock. */
	if ((err = has_replayed(s, channel, &yes)) < 0 || !yes)
		return err;
	if ((err = stmt(s, ST_REPLAYED, &st)) < 0 || (err = stmt(s, ST_CLEAR_REPLAYED, &clr)) < 0)
		return err;
	if ((err = txn_begin(s, &own)) < 0)
		return err;
	sqlite3_bind_int(st, 1, (int)channel);
	if ((err = each_row(s, st, 0, cb, arg, &ret, &last)) < 0)
		return txn_end(s, own, err, 0);
	if (last > 0) {
		sqlite3_bind_int64(clr, 1, last);
		sqlite3_bind_int(clr, 2, (int)channel);
		err = step_done(s, clr, "clear replayed");
	}
	err = txn_end(s, own, err, last > 0);
	return err ? err : ret;
}

int spool_take_replayed(struct spool *s, spool_row_cb cb, void *arg)
{
	return take_replayed(s, SPOOL_IN, cb, arg);
}

int spool_take_replayed_channel(struct spool *s, enum spool_channel channel, spool_row_cb cb,
				void *arg)
{
	if (channel != SPOOL_IN && channel != SPOOL_OUT)
		return -EINVAL;
	return take_replayed(s, channel, cb, arg);
}

static int purge_chunk(struct spool *s, enum stmt_id which, int64_t before_ms, int *n)
{
	sqlite3_stmt *st;
	int own, err;

	*n = 0;
	if ((err = stmt(s, which, &st)) < 0)
		return err;
	if ((err = txn_begin(s, &own)) < 0)
		return err;
	sqlite3_bind_int64(st, 1, before_ms);
	sqlite3_bind_int(st, 2, SPOOL_PURGE_CHUNK);
	if ((err = step_done(s, st, "purge")) == 0)
		*n = sqlite3_changes(s->db);
	return txn_end(s, own, err, *n);
}

static int has_old_files(struct spool *s, int64_t before_ms, int *yes)
{
	sqlite3_stmt *st;
	int rc, err = stmt(s, ST_HAS_OLD_FILES, &st);

	if (err)
		return err;
	sqlite3_bind_int64(st, 1, before_ms);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*yes = sqlite3_column_int(st, 0);
	else
		err = fail(s, rc, "purge files");
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return err;
}

/* File records disposed before before_ms: their row lists, then them. */
static int purge_files(struct spool *s, int64_t before_ms)
{
	static const enum stmt_id which[] = {ST_PURGE_FILE_ROWS, ST_PURGE_FILES};
	int yes = 0, n, err;

	if ((err = has_old_files(s, before_ms, &yes)) < 0 || !yes)
		return err;
	for (size_t i = 0; i < 2; i++) {
		do {
			if ((err = purge_chunk(s, which[i], before_ms, &n)) < 0)
				return err;
		} while (n == SPOOL_PURGE_CHUNK);
	}
	return 0;
}

int spool_purge(struct spool *s, int64_t before_ms, int include_dead, int *count)
{
	static const enum stmt_id which[] = {ST_PURGE_DELIVERED, ST_PURGE_DEAD};
	int n, err;

	*count = 0;
	for (size_t i = 0; i < (include_dead ? 2u : 1u); i++) {
		do {
			if ((err = purge_chunk(s, which[i], before_ms, &n)) < 0)
				return err;
			*count += n;
		} while (n == SPOOL_PURGE_CHUNK);
	}
	return purge_files(s, before_ms);
}

int spool_stats(struct spool *s, spool_stat_cb cb, void *arg)
{
	struct spool_stat stat;
	sqlite3_stmt *st;
	int rc, err = stmt(s, ST_STATS, &st);

	if (err)
		return err;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		stat.channel = (enum spool_channel)sqlite3_column_int(st, 0);
		stat.integration = col_text(st, 1);
		stat.queued = sqlite3_column_int64(st, 2);
		stat.dead = sqlite3_column_int64(st, 3);
		stat.oldest_queued_ms = sqlite3_column_int64(st, 4); /* NULL reads as 0 */
		cb(arg, &stat);
	}
	if (rc != SQLITE_DONE)
		err = fail(s, rc, "stats");
	sqlite3_reset(st);
	return err;
}

/* ---- file records ------------------------------------------------------ */

static const char *const file_state_names[] = {"spooled", "done", "error"};
_Static_assert(NELEMS(file_state_names) == SPOOL_FILE_ERROR + 1, "a name for every file state");

const char *spool_file_state_name(int state)
{
	if (state < 0 || state > SPOOL_FILE_ERROR)
		return "?";
	return file_state_names[state];
}

static int check_sha256(char *err, const char *v)
{
	size_t n = v ? strnlen(v, SPOOL_SHA256_HEX + 1) : 0;
	int ok = n == SPOOL_SHA256_HEX;

	for (size_t i = 0; i < n && ok; i++)
		ok = (v[i] >= '0' && v[i] <= '9') || (v[i] >= 'a' && v[i] <= 'f');
	if (!ok) {
		SAY(err, "file: sha256 is not %d lowercase hex digits", SPOOL_SHA256_HEX);
		return -EINVAL;
	}
	return 0;
}

static int check_file(char *err, const struct spool_file *f, size_t n)
{
	int e;

	if (!f->route || !*f->route) {
		SAY(err, "file: route is %s", f->route ? "empty" : "NULL");
		return -EINVAL;
	}
	if ((e = check_text(err, f->route, "route")) < 0 ||
	    (e = check_file_name(err, f->name, "file")) < 0 ||
	    (e = check_sha256(err, f->sha256)) < 0)
		return e;
	if (f->size > INT64_MAX) {
		SAY(err, "file: size %llu is too large", (unsigned long long)f->size);
		return -EMSGSIZE;
	}
	if (n == 0) {
		SAY(err, "file: no rows");
		return -EINVAL;
	}
	if (n > SPOOL_FILE_ROWS_MAX) {
		SAY(err, "file: %zu rows is over %d", n, SPOOL_FILE_ROWS_MAX);
		return -EMSGSIZE;
	}
	return 0;
}

int spool_file_check(const struct spool_file *f, size_t n)
{
	char scratch[SPOOL_ERRMSG_MAX];

	return check_file(scratch, f, n);
}

static int file_insert(struct spool *s, const struct spool_file *f, size_t n)
{
	sqlite3_stmt *st;
	int err = stmt(s, ST_FILE_ADD, &st);

	if (err)
		return err;
	sqlite3_bind_text(st, 1, f->route, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, f->name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, (int64_t)f->size);
	sqlite3_bind_int64(st, 4, f->mtime);
	sqlite3_bind_text(st, 5, f->sha256, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 6, f->received_ms);
	sqlite3_bind_int64(st, 7, (int64_t)n);
	return step_done(s, st, "add file");
}

/* The list of the record's rows; each must be a row of the route. */
static int file_rows_insert(struct spool *s, int64_t file_id, const char *route,
			    const int64_t *rows, size_t n)
{
	sqlite3_stmt *st;
	int rc, err = stmt(s, ST_FILE_ROW, &st);

	for (size_t i = 0; i < n && !err; i++) {
		sqlite3_bind_int64(st, 1, file_id);
		sqlite3_bind_int64(st, 2, rows[i]);
		sqlite3_bind_text(st, 3, route, -1, SQLITE_STATIC);
		rc = sqlite3_step(st);
		if ((rc & 0xff) == SQLITE_CONSTRAINT) {
			SAY(s->err, "add file: row %lld given twice", (long long)rows[i]);
			err = -EEXIST;
		} else if (rc != SQLITE_DONE) {
			err = fail(s, rc, "add file rows");
		} else if (sqlite3_changes(s->db) == 0) {
			SAY(s->err, "add file: no row %lld of %s", (long long)rows[i], route);
			err = -ENOENT;
		}
		sqlite3_reset(st);
		sqlite3_clear_bindings(st);
	}
	return err;
}

int spool_file_add(struct spool *s, const struct spool_file *f, const int64_t *rows, size_t n,
		   int64_t *id)
{
	int err;

	if ((err = check_file(s->err, f, n)) < 0)
		return err;
	if (!rows) {
		SAY(s->err, "add file: rows is NULL");
		return -EINVAL;
	}
	if ((err = batch_open(s)) < 0 || (err = file_insert(s, f, n)) < 0)
		return batch_abort(s, err);
	*id = sqlite3_last_insert_rowid(s->db);
	/* A partial list must never be committed: any failure takes the batch. */
	if ((err = file_rows_insert(s, *id, f->route, rows, n)) < 0)
		return batch_abort(s, err);
	s->pending++;
	return 0;
}

/* A record whose strings point into the statement: valid until the next step. */
static void file_view(sqlite3_stmt *st, struct spool_file *f)
{
	f->id = sqlite3_column_int64(st, 0);
	f->route = col_text(st, 1);
	f->name = col_text(st, 2);
	f->size = (uint64_t)sqlite3_column_int64(st, 3);
	f->mtime = sqlite3_column_int64(st, 4);
	f->sha256 = col_text(st, 5);
	f->received_ms = sqlite3_column_int64(st, 6);
	f->state = (enum spool_file_state)sqlite3_column_int(st, 7);
	f->reason = sqlite3_column_type(st, 8) == SQLITE_NULL ? NULL : col_text(st, 8);
	f->disposed_ms = sqlite3_column_int64(st, 9);
	f->nrows = (size_t)sqlite3_column_int64(st, 10);
}

/* Steps a bound query of records, handing each to cb until it returns
 * non-zero (returned then). */
static int each_file(struct spool *s, sqlite3_stmt *st, spool_file_cb cb, void *arg)
{
	struct spool_file f;
	int rc, ret = 0, err = 0;

	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		file_view(st, &f);
		if ((ret = cb(arg, &f)) != 0)
			break;
	}
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		err = fail(s, rc, "read files");
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	batch_check(s);
	return err ? err : ret;
}

int spool_file_pending(struct spool *s, const char *route, spool_file_cb cb, void *arg)
{
	sqlite3_stmt *st;
	int err;

	if (!route) {
		SAY(s->err, "file pending: route is NULL");
		return -EINVAL;
	}
	if ((err = stmt(s, ST_FILE_PENDING, &st)) < 0)
		return err;
	sqlite3_bind_text(st, 1, route, -1, SQLITE_STATIC);
	return each_file(s, st, cb, arg);
}

int spool_file_list(struct spool *s, const char *route, int limit, spool_file_cb cb, void *arg)
{
	sqlite3_stmt *st;
	int err = stmt(s, route ? ST_FILE_LIST_ROUTE : ST_FILE_LIST_ALL, &st);

	if (err)
		return err;
	if (route)
		sqlite3_bind_text(st, 1, route, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, limit > 0 ? limit : -1);
	return each_file(s, st, cb, arg);
}

/* Steps a query with one result row; *found says whether there was one.
 * The caller reads the columns, then calls query_end(). */
static int query_one(struct spool *s, sqlite3_stmt *st, int *found, const char *what)
{
	int rc = sqlite3_step(st);

	*found = rc == SQLITE_ROW;
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : fail(s, rc, what);
}

static void query_end(struct spool *s, sqlite3_stmt *st)
{
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	batch_check(s);
}

static int file_exists(struct spool *s, int64_t file_id)
{
	sqlite3_stmt *st;
	int found = 0, err = stmt(s, ST_FILE_EXISTS, &st);

	if (err)
		return err;
	sqlite3_bind_int64(st, 1, file_id);
	err = query_one(s, st, &found, "file progress");
	query_end(s, st);
	if (!err && !found) {
		SAY(s->err, "file: no record %lld", (long long)file_id);
		err = -ENOENT;
	}
	return err;
}

static int file_counts(struct spool *s, int64_t file_id, struct spool_file_progress *p)
{
	sqlite3_stmt *st;
	int found = 0, err = stmt(s, ST_FILE_COUNTS, &st);

	if (err)
		return err;
	sqlite3_bind_int64(st, 1, file_id);
	if ((err = query_one(s, st, &found, "file progress")) == 0 && found) {
		p->queued = (size_t)sqlite3_column_int64(st, 0);
		p->delivered = (size_t)sqlite3_column_int64(st, 1);
		p->dead = (size_t)sqlite3_column_int64(st, 2);
	}
	query_end(s, st);
	return err;
}

/* The first dead row's last_error, cut like bind_error() cuts it. */
static int file_reason(struct spool *s, int64_t file_id, struct spool_file_progress *p)
{
	sqlite3_stmt *st;
	int found = 0, err = stmt(s, ST_FILE_REASON, &st);

	if (err)
		return err;
	sqlite3_bind_int64(st, 1, file_id);
	if ((err = query_one(s, st, &found, "file progress")) == 0 && found) {
		const char *t = (const char *)sqlite3_column_text(st, 0);
		size_t n = t ? strnlen(t, SPOOL_ERROR_MAX + 1) : 0;

		if (n > SPOOL_ERROR_MAX) {
			n = SPOOL_ERROR_MAX;
			while (n > 0 && ((unsigned char)t[n] & 0xc0) == 0x80)
				n--;
		}
		if (n)
			memcpy(p->reason, t, n);
		p->reason[n] = '\0';
	}
	query_end(s, st);
	return err;
}

int spool_file_progress(struct spool *s, int64_t file_id, struct spool_file_progress *p)
{
	int err;

	memset(p, 0, sizeof(*p));
	if ((err = file_exists(s, file_id)) < 0 || (err = file_counts(s, file_id, p)) < 0)
		return err;
	return p->dead ? file_reason(s, file_id, p) : 0;
}

int spool_file_dispose(struct spool *s, int64_t file_id, enum spool_file_state state,
		       const char *reason, int64_t now_ms)
{
	sqlite3_stmt *st;
	int err;

	if (state != SPOOL_FILE_DONE && state != SPOOL_FILE_ERROR) {
		SAY(s->err, "dispose file: state %d is not done or error", (int)state);
		return -EINVAL;
	}
	if ((err = stmt(s, ST_FILE_DISPOSE, &st)) < 0)
		return batch_abort(s, err);
	sqlite3_bind_int64(st, 1, file_id);
	sqlite3_bind_int(st, 2, (int)state);
	bind_error(st, 3, state == SPOOL_FILE_ERROR ? reason : NULL);
	sqlite3_bind_int64(st, 4, now_ms);
	err = staged_update(s, st, file_id, "dispose file");
	if (err == -ENOENT)
		SAY(s->err, "dispose file: no record %lld", (long long)file_id);
	return err;
}

int spool_test_set_max_pages(struct spool *s, int pages)
{
	char sql[64];

	snprintf(sql, sizeof(sql), "PRAGMA max_page_count = %d",
		 pages > 0 ? pages : UNCAPPED_PAGES);
	return pragma(s, sql, NULL, 0, NULL);
}
