/*
 * The operator's spool commands. Arguments are parsed and checked in full
 * before the database is opened, so a typo never touches the spool.
 */
#include "spool_cli.h"

#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "spool.h"

#define EXIT_OK	    0
#define EXIT_FAILED 1
#define EXIT_USAGE  2
#define FIELD_MAX   256 /* a listed field is cut (with "...") past this */

enum opt_bit {
	O_STATE = 1u << 0,
	O_INTEG = 1u << 1,
	O_LIMIT = 1u << 2,
	O_BODY = 1u << 3,
	O_ALL_DEAD = 1u << 4,
	O_BEFORE = 1u << 5,
	O_ALL_DELIVERED = 1u << 6,
	O_DEAD = 1u << 7,
	O_ID = 1u << 8, /* the positional ID */
	O_ACK = 1u << 9,
};

struct opts {
	unsigned seen;
	int state; /* -1: every state */
	const char *integration;
	int limit;
	int64_t id;
	int64_t duration_ms;
};

static const struct option_def {
	const char *name;
	unsigned bit;
	int takes_value;
} options[] = {
    {"--state", O_STATE, 1},
    {"--integration", O_INTEG, 1},
    {"--limit", O_LIMIT, 1},
    {"--body", O_BODY, 0},
    {"--ack", O_ACK, 0},
    {"--all-dead", O_ALL_DEAD, 0},
    {"--delivered-before", O_BEFORE, 1},
    {"--all-delivered", O_ALL_DELIVERED, 0},
    {"--dead", O_DEAD, 0},
};

static const char usage_text[] =
    "usage: spool list [--state queued|inflight|delivered|dead|rejected|all] "
    "[--integration NAME] [--limit N]\n"
    "       spool show ID [--body | --ack]\n"
    "       spool replay ID | spool replay --all-dead [--integration NAME]\n"
    "       spool purge --delivered-before DURATION | --all-delivered [--dead]\n"
    "       spool stats\n"
    "       spool files [--integration NAME] [--limit N]\n"
    "DURATION is a number and a unit: s, m, h or d (30m, 12h, 7d).\n";

static int usage(FILE *err, const char *why, const char *arg)
{
	if (why)
		fprintf(err, "spool: %s%s%s\n", why, arg ? ": " : "", arg ? arg : "");
	fputs(usage_text, err);
	return EXIT_USAGE;
}

/* Copies s into buf for a terminal: control and non-ASCII bytes become \xHH
 * (a message field must not drive the operator's terminal), cut with "...". */
static const char *safe(char *buf, size_t cap, const char *s)
{
	size_t o = 0;

	if (!s)
		return "-";
	for (; *s && o + 8 < cap; s++) {
		unsigned char c = (unsigned char)*s;

		if (c >= 0x20 && c < 0x7f && c != '\\')
			buf[o++] = (char)c;
		else
			o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", c);
	}
	if (*s)
		o += (size_t)snprintf(buf + o, cap - o, "...");
	buf[o] = '\0';
	return buf;
}

static const char *iso(char *buf, size_t cap, int64_t ms)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	if (ms <= 0 || !gmtime_r(&t, &tm) || !strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm))
		return "-";
	return buf;
}

static int parse_i64(const char *v, int64_t min, int64_t max, int64_t *out)
{
	char *end;
	long long n;

	errno = 0;
	n = strtoll(v, &end, 10);
	if (errno || end == v || *end || *v == '+' || *v == '-' || n < min || n > max)
		return -EINVAL;
	*out = n;
	return 0;
}

/* "7d", "12h", "30m", "90s" → milliseconds. */
static int parse_duration(const char *v, int64_t *ms)
{
	static const struct {
		char unit;
		int64_t ms;
	} units[] = {{'s', 1000}, {'m', 60000}, {'h', 3600000}, {'d', 86400000}};
	size_t len = strlen(v);
	char num[24];
	int64_t n;

	if (len < 2 || len > sizeof(num))
		return -EINVAL;
	memcpy(num, v, len - 1);
	num[len - 1] = '\0';
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (v[len - 1] != units[i].unit)
			continue;
		if (parse_i64(num, 0, SPOOL_CLI_DURATION_MAX_MS / units[i].ms, &n) < 0)
			return -EINVAL;
		*ms = n * units[i].ms;
		return 0;
	}
	return -EINVAL;
}

static int parse_state(const char *v, int *state)
{
	if (strcmp(v, "all") == 0) {
		*state = -1;
		return 0;
	}
	for (int i = SPOOL_QUEUED; i <= SPOOL_REJECTED; i++) {
		if (strcmp(v, spool_state_name(i)) == 0) {
			*state = i;
			return 0;
		}
	}
	return -EINVAL;
}

/* Stores an option's value; *why says what was wrong with it. */
static int set_value(struct opts *o, unsigned bit, const char *v, const char **why)
{
	int64_t n = 0;

	switch (bit) {
	case O_STATE:
		*why = "--state is one of queued, inflight, delivered, dead, rejected, all";
		return parse_state(v, &o->state);
	case O_INTEG:
		o->integration = v;
		return 0;
	case O_LIMIT:
		*why = "--limit needs a number from 1 to 1000000";
		if (parse_i64(v, 1, SPOOL_CLI_LIMIT_MAX, &n) < 0)
			return -EINVAL;
		o->limit = (int)n;
		return 0;
	case O_BEFORE:
		*why = "bad DURATION (like 7d, 12h, 30m)";
		return parse_duration(v, &o->duration_ms);
	default:
		return 0;
	}
}

static const struct option_def *find_option(const char *name)
{
	for (size_t i = 0; i < sizeof(options) / sizeof(options[0]); i++) {
		if (strcmp(options[i].name, name) == 0)
			return &options[i];
	}
	return NULL;
}

/* One argument (argv[*i]); advances *i past a value. */
static int parse_arg(unsigned allowed, int argc, char **argv, int *i, struct opts *o,
		     const char **why)
{
	const char *a = argv[*i];
	const struct option_def *d = a[0] == '-' ? find_option(a) : NULL;

	if (a[0] != '-') {
		*why = "unexpected argument";
		if (!(allowed & O_ID) || (o->seen & O_ID))
			return -EINVAL;
		*why = "ID is a positive number";
		o->seen |= O_ID;
		return parse_i64(a, 1, INT64_MAX, &o->id);
	}
	*why = "unknown option";
	if (!d || !(allowed & d->bit))
		return -EINVAL;
	*why = "option given twice";
	if (o->seen & d->bit)
		return -EINVAL;
	o->seen |= d->bit;
	if (!d->takes_value)
		return 0;
	*why = "option needs a value";
	if (*i + 1 >= argc)
		return -EINVAL;
	*i += 1;
	return set_value(o, d->bit, argv[*i], why);
}

static int fail(FILE *err, const char *what, struct spool *s)
{
	fprintf(err, "spool: %s: %s\n", what, spool_errmsg(s));
	return EXIT_FAILED;
}

struct list_ctx {
	FILE *out;
};

/* "in": from a hospital system to the upstream (integration); "out": from
 * the upstream to a hospital system (the integration column names the
 * destination). */
static const char *channel_name(enum spool_channel ch)
{
	return ch == SPOOL_IN ? "in" : ch == SPOOL_OUT ? "out" : "?";
}

/* The channel comes after the integration, so that a line still starts
 * with id, state and integration. */
static int list_row(void *arg, const struct spool_row *r)
{
	struct list_ctx *c = arg;
	char integ[FIELD_MAX], sender[FIELD_MAX], ctl[FIELD_MAX], when[32], e[FIELD_MAX];

	fprintf(c->out, "%-8" PRId64 " %-9s %-16s %-7s %-24s %-20s %8d %-20s %s\n", r->id,
		spool_state_name((int)r->state), safe(integ, sizeof(integ), r->integration),
		channel_name(r->channel), safe(sender, sizeof(sender), r->sender),
		iso(when, sizeof(when), r->received_ms), r->attempts,
		safe(ctl, sizeof(ctl), r->control_id), safe(e, sizeof(e), r->last_error));
	return 0;
}

static int cmd_list(struct spool *s, const struct opts *o, FILE *out, FILE *err)
{
	struct list_ctx c = {out};

	fprintf(out, "%-8s %-9s %-16s %-7s %-24s %-20s %8s %-20s %s\n", "ID", "STATE",
		"INTEGRATION", "CHANNEL", "SENDER", "RECEIVED", "ATTEMPTS", "CONTROL_ID",
		"LAST_ERROR");
	if (spool_list(s, o->state, o->integration, o->limit, list_row, &c) < 0)
		return fail(err, "list", s);
	return EXIT_OK;
}

static void show_meta(FILE *out, const struct spool_row *r)
{
	char b[SPOOL_ERROR_MAX * 4 + 8], t[32];

	fprintf(out, "id:              %" PRId64 "\n", r->id);
	fprintf(out, "state:           %s\n", spool_state_name((int)r->state));
	fprintf(out, "channel:         %s\n", channel_name(r->channel));
	fprintf(out, "integration:     %s\n", safe(b, sizeof(b), r->integration));
	fprintf(out, "sender:          %s\n", safe(b, sizeof(b), r->sender));
	fprintf(out, "content_type:    %s\n", safe(b, sizeof(b), r->content_type));
	fprintf(out, "control_id:      %s\n", safe(b, sizeof(b), r->control_id));
	fprintf(out, "idempotency_key: %s\n", safe(b, sizeof(b), r->idempotency_key));
	fprintf(out, "lane:            %s\n", safe(b, sizeof(b), r->lane));
	fprintf(out, "lane2:           %s\n", safe(b, sizeof(b), r->lane2));
	fprintf(out, "received:        %s\n", iso(t, sizeof(t), r->received_ms));
	fprintf(out, "attempts:        %d\n", r->attempts);
	fprintf(out, "next_attempt:    %s\n", iso(t, sizeof(t), r->next_attempt_ms));
	fprintf(out, "delivered:       %s\n", iso(t, sizeof(t), r->delivered_ms));
	fprintf(out, "last_error:      %s\n", safe(b, sizeof(b), r->last_error));
	fprintf(out, "body_bytes:      %zu\n", r->len);
	fprintf(out, "ack_bytes:       %zu\n", r->ack_len);
	if (r->file_name)
		fprintf(out, "file_name:       %s\n", safe(b, sizeof(b), r->file_name));
}

static int cmd_show(struct spool *s, const struct opts *o, FILE *out, FILE *err)
{
	struct spool_row r;
	void *body = NULL;
	int e = spool_get(s, o->id, &r, (o->seen & O_BODY) ? &body : NULL);

	if (e == -ENOENT) {
		fprintf(err, "spool: no message with id %" PRId64 "\n", o->id);
		return EXIT_FAILED;
	}
	if (e < 0)
		return fail(err, "show", s);
	if (body)
		fwrite(body, 1, r.len, out);
	else if (o->seen & O_ACK)
		fwrite(r.ack ? r.ack : "", 1, r.ack_len, out);
	else
		show_meta(out, &r);
	free(body);
	spool_row_clear(&r);
	return EXIT_OK;
}

/* Says why one row was not replayed. */
static int not_dead(struct spool *s, int64_t id, FILE *err)
{
	struct spool_row r;

	if (spool_get(s, id, &r, NULL) < 0)
		return fail(err, "replay", s);
	fprintf(err, "spool: message %" PRId64 " is %s, not dead: nothing replayed\n", id,
		spool_state_name((int)r.state));
	spool_row_clear(&r);
	return EXIT_FAILED;
}

static int cmd_replay(struct spool *s, const struct opts *o, FILE *out, FILE *err)
{
	int64_t id = (o->seen & O_ID) ? o->id : 0;
	int n = 0, e = spool_replay(s, id, o->integration, &n);

	if (e == -ENOENT) {
		fprintf(err, "spool: no message with id %" PRId64 "\n", id);
		return EXIT_FAILED;
	}
	if (e < 0)
		return fail(err, "replay", s);
	if (id > 0 && n == 0)
		return not_dead(s, id, err);
	fprintf(out, "replayed %d message(s); a running bridge queues them within seconds\n", n);
	return EXIT_OK;
}

static int cmd_purge(struct spool *s, const struct opts *o, FILE *out, FILE *err)
{
	struct timespec ts;
	int64_t before = INT64_MAX;
	int n = 0;

	if (o->seen & O_BEFORE) {
		clock_gettime(CLOCK_REALTIME, &ts);
		before = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 - o->duration_ms;
	}
	if (spool_purge(s, before, (o->seen & O_DEAD) != 0, &n) < 0) {
		fprintf(out, "purged %d message(s) before the failure\n", n);
		return fail(err, "purge", s);
	}
	fprintf(out, "purged %d message(s)\n", n);
	return EXIT_OK;
}

#define STATS_HEAD "%-16s %10s %10s %s\n"

struct stats_out {
	FILE *out;
	int out_head; /* the outbound section has begun */
};

/* Inbound rows come first, under the header cmd_stats() printed; outbound
 * destinations get a section of their own after a blank line, so that the
 * inbound lines read as before and a destination named like an
 * integration is never taken for it. */
static void stats_row(void *arg, const struct spool_stat *st)
{
	struct stats_out *so = arg;
	char integ[FIELD_MAX], when[32];

	if (st->channel == SPOOL_OUT && !so->out_head) {
		fprintf(so->out, "\n" STATS_HEAD, "DESTINATION", "QUEUED", "DEAD", "OLDEST_QUEUED");
		so->out_head = 1;
	}
	fprintf(so->out, "%-16s %10" PRId64 " %10" PRId64 " %s\n",
		safe(integ, sizeof(integ), st->integration), st->queued, st->dead,
		iso(when, sizeof(when), st->oldest_queued_ms));
}

static int cmd_stats(struct spool *s, const struct opts *o, FILE *out, FILE *err)
{
	struct stats_out so = {.out = out};

	(void)o;
	fprintf(out, STATS_HEAD, "INTEGRATION", "QUEUED", "DEAD", "OLDEST_QUEUED");
	if (spool_stats(s, stats_row, &so) < 0)
		return fail(err, "stats", s);
	return EXIT_OK;
}

#define FILES_HEAD "%-8s %-16s %-32s %12s %-8s %6s %-20s %-20s %s\n"

/* One file record: the name is cut like any listed field (`spool show` of
 * one of its rows prints it whole). */
static int files_row(void *arg, const struct spool_file *f)
{
	struct list_ctx *c = arg;
	char integ[FIELD_MAX], name[FIELD_MAX], why[FIELD_MAX], got[32], done[32];

	fprintf(c->out, "%-8" PRId64 " %-16s %-32s %12" PRIu64 " %-8s %6zu %-20s %-20s %s\n", f->id,
		safe(integ, sizeof(integ), f->route), safe(name, sizeof(name), f->name), f->size,
		spool_file_state_name((int)f->state), f->nrows,
		iso(got, sizeof(got), f->received_ms), iso(done, sizeof(done), f->disposed_ms),
		safe(why, sizeof(why), f->reason));
	return 0;
}

static int cmd_files(struct spool *s, const struct opts *o, FILE *out, FILE *err)
{
	struct list_ctx c = {out};

	fprintf(out, FILES_HEAD, "ID", "INTEGRATION", "NAME", "SIZE", "STATE", "ROWS", "RECEIVED",
		"DISPOSED", "REASON");
	if (spool_file_list(s, o->integration, o->limit, files_row, &c) < 0)
		return fail(err, "files", s);
	return EXIT_OK;
}

/* Combinations the option table alone cannot express. */
static const char *check_opts(const char *cmd, const struct opts *o)
{
	unsigned id = o->seen & O_ID, all = o->seen & O_ALL_DEAD;

	if (strcmp(cmd, "show") == 0 && !id)
		return "show needs an ID";
	if (strcmp(cmd, "show") == 0 && (o->seen & O_BODY) && (o->seen & O_ACK))
		return "show takes --body or --ack (not both)";
	if (strcmp(cmd, "replay") == 0 && !id == !all)
		return "replay needs an ID or --all-dead (not both)";
	if (strcmp(cmd, "replay") == 0 && (o->seen & O_INTEG) && !all)
		return "--integration goes with --all-dead";
	if (strcmp(cmd, "purge") == 0 && !(o->seen & O_BEFORE) == !(o->seen & O_ALL_DELIVERED))
		return "purge needs --delivered-before DURATION or --all-delivered (not both)";
	return NULL;
}

static const struct command {
	const char *name;
	unsigned allowed;
	int (*run)(struct spool *s, const struct opts *o, FILE *out, FILE *err);
} commands[] = {
    {"list", O_STATE | O_INTEG | O_LIMIT, cmd_list},
    {"show", O_ID | O_BODY | O_ACK, cmd_show},
    {"replay", O_ID | O_ALL_DEAD | O_INTEG, cmd_replay},
    {"purge", O_BEFORE | O_ALL_DELIVERED | O_DEAD, cmd_purge},
    {"stats", 0, cmd_stats},
    {"files", O_INTEG | O_LIMIT, cmd_files},
};

static const struct command *find_command(const char *name)
{
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	}
	return NULL;
}

static int run_command(const char *db_path, const struct command *c, const struct opts *o,
		       FILE *out, FILE *err)
{
	struct spool *s = NULL;
	struct stat st;
	int rc;

	/* Opening would create an empty spool: a wrong path must say so. */
	if (stat(db_path, &st) < 0) {
		fprintf(err, "spool: %s: %s\n", db_path, strerror(errno));
		return EXIT_FAILED;
	}
	if (spool_open(db_path, &s) < 0) {
		fprintf(err, "spool: cannot open %s: %s\n", db_path, spool_errmsg(s));
		spool_close(s);
		return EXIT_FAILED;
	}
	rc = c->run(s, o, out, err);
	spool_close(s);
	if (fflush(out) != 0) {
		fprintf(err, "spool: write: %s\n", strerror(errno));
		rc = EXIT_FAILED;
	}
	return rc;
}

int spool_cli(const char *db_path, int argc, char **argv, FILE *out, FILE *err)
{
	struct opts o = {.state = -1, .limit = SPOOL_CLI_LIMIT_DEFAULT};
	const struct command *c;
	const char *why = NULL;

	if (argc < 1)
		return usage(err, "no command", NULL);
	if (strcmp(argv[0], "help") == 0 || strcmp(argv[0], "--help") == 0) {
		fputs(usage_text, out);
		return EXIT_OK;
	}
	if (!(c = find_command(argv[0])))
		return usage(err, "unknown command", argv[0]);
	for (int i = 1; i < argc; i++) {
		if (parse_arg(c->allowed, argc, argv, &i, &o, &why) < 0)
			return usage(err, why, argv[i]);
	}
	if ((why = check_opts(c->name, &o)))
		return usage(err, why, NULL);
	return run_command(db_path, c, &o, out, err);
}
