/*
 * vici: a command-line client for charon's vici socket.
 *
 *   vici [-s URI] [--json] [--timeout MS] COMMAND [options]
 *
 * One connection, one request at a time, driven by one poll loop (run_loop);
 * monitor keeps the loop running until SIGINT/SIGTERM. Files given to
 * load-conn/load-shared are parsed before connecting, so a bad file is
 * reported as FILE:LINE: message whether or not charon is up.
 *
 * Exit codes: 0 success, 1 the command failed, 2 usage, 3 charon unreachable.
 */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "vici-client/vici.h"

#define DEFAULT_URI	   "unix:///var/run/charon.vici"
#define DEFAULT_TIMEOUT_MS 10000 /* client deadline of a plain command */
#define CONTROL_TIMEOUT_MS 60000 /* initiate/terminate without a charon timeout */
#define CONTROL_MARGIN_MS  5000	 /* client deadline beyond charon's own timeout */

enum exit_code {
	EXIT_OK = 0,
	EXIT_FAILED = 1,
	EXIT_USAGE = 2,
	EXIT_UNREACHABLE = 3,
};

/* Command options; a command lists the ones it accepts. */
enum opt_id {
	OPT_CHILD,
	OPT_IKE,
	OPT_TIMEOUT,
	OPT_ID,
	OPT_SECRET,
	OPT_TYPE,
	OPT_COUNT,
};

static const char *const opt_names[OPT_COUNT] = {
    [OPT_CHILD] = "--child", [OPT_IKE] = "--ike",	[OPT_TIMEOUT] = "--timeout",
    [OPT_ID] = "--id",	     [OPT_SECRET] = "--secret", [OPT_TYPE] = "--type",
};

#define OPT(id) (1u << (id))

struct args {
	const char *opt[OPT_COUNT];
	const char *pos; /* the one positional argument, if the command takes it */
};

struct tool {
	struct vici_conn *conn;
	const char *uri;
	int json;
	int timeout_ms; /* -1: the command's default */
	int ever_up;
	int state_seen; /* any UP or DOWN report yet */
	int lost;	/* down since the last UP */
	int down_err;
	volatile sig_atomic_t *stop; /* monitor: set by SIGINT/SIGTERM */
};

struct command {
	const char *name;
	unsigned opts;
	int has_pos; /* 0 none, 1 required, 2 optional */
	int (*run)(struct tool *t, const struct args *a);
	const char *synopsis;
};

static void usage(FILE *out);

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int usage_error(const char *fmt, ...)
{
	va_list ap;

	fputs("vici: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	usage(stderr);
	return EXIT_USAGE;
}

/* ---- Output ---- */

/* Values are charon's strings but may hold anything: keep the terminal sane. */
static void put_text(FILE *out, const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (ch < 0x20 || ch == 0x7f)
			fprintf(out, "\\x%02x", ch);
		else
			fputc(ch, out);
	}
}

static void put_value(FILE *out, const struct vici_node *n)
{
	size_t len;
	const char *v = vici_node_value(n, &len);

	put_text(out, v, len);
}

static void put_list(FILE *out, const struct vici_node *n, const char *sep)
{
	fputc('[', out);
	for (size_t i = 0; i < vici_node_item_count(n); i++) {
		size_t len;
		const char *item = vici_node_item(n, i, &len);

		if (i)
			fputs(sep, out);
		put_text(out, item, len);
	}
	fputc(']', out);
}

/* The indented form: `name = value`, `name {` ... `}`, `name = [a, b]`. */
static void print_section(FILE *out, const struct vici_node *sec, int depth)
{
	for (const struct vici_node *n = vici_node_first(sec); n; n = vici_node_next(n)) {
		fprintf(out, "%*s%s", depth * 2, "", vici_node_name(n));
		switch (vici_node_kind(n)) {
		case VICI_NODE_SECTION:
			fputs(" {\n", out);
			print_section(out, n, depth + 1);
			fprintf(out, "%*s}\n", depth * 2, "");
			break;
		case VICI_NODE_VALUE:
			fputs(" = ", out);
			put_value(out, n);
			fputc('\n', out);
			break;
		case VICI_NODE_LIST:
			fputs(" = ", out);
			put_list(out, n, ", ");
			fputc('\n', out);
			break;
		}
	}
}

/* The one-line form of monitor: `k=v sect={k=v} list=[a,b]`. */
static void print_section_line(FILE *out, const struct vici_node *sec)
{
	for (const struct vici_node *n = vici_node_first(sec); n; n = vici_node_next(n)) {
		fprintf(out, " %s=", vici_node_name(n));
		switch (vici_node_kind(n)) {
		case VICI_NODE_SECTION:
			fputc('{', out);
			print_section_line(out, n);
			fputs(" }", out);
			break;
		case VICI_NODE_VALUE:
			put_value(out, n);
			break;
		case VICI_NODE_LIST:
			put_list(out, n, ",");
			break;
		}
	}
}

static void print_tree(const struct tool *t, const struct vici_tree *tree)
{
	if (t->json) {
		if (vici_tree_to_json(tree, stdout) < 0)
			fprintf(stderr, "vici: cannot write output\n");
	} else {
		print_section(stdout, vici_tree_root(tree), 0);
	}
	fflush(stdout);
}

/* ---- The loop ---- */

static void on_monitor_ready(void *arg, int err, const struct vici_tree *reply);

static void on_state(void *arg, enum vici_state state, int err)
{
	struct tool *t = arg;

	t->state_seen = 1;
	/* Only monitor outlives a lost connection: it says so once, and again
	 * when it is back, not at every retry. */
	if (state == VICI_STATE_UP) {
		/* The library queues the event registrations ahead of anything
		 * else: the reply to this version request means they are done. */
		if (t->stop && vici_conn_command(t->conn, "version", NULL, 0, DEFAULT_TIMEOUT_MS,
						 on_monitor_ready, t) < 0)
			fprintf(stderr, "vici: monitor: cannot queue a request\n");
		t->ever_up = 1;
		return;
	}
	t->down_err = err;
	if (t->stop && t->ever_up && !t->lost)
		fprintf(stderr, "vici: connection to %s lost (%s), reconnecting\n", t->uri,
			strerror(-err));
	t->lost = 1;
}

/* Runs until *done, or a stop signal when t->stop is set. Signals are blocked
 * outside ppoll() so that one arriving between the check and the wait still
 * ends the wait. */
static void run_loop(struct tool *t, const int *done, const sigset_t *wait_mask)
{
	while (!*done && !(t->stop && *t->stop)) {
		struct pollfd pfd = {.fd = vici_conn_fd(t->conn)};
		int want = vici_conn_want(t->conn);
		int64_t ms = vici_conn_next_deadline(t->conn, vici_now_ms());
		struct timespec ts, *tsp = NULL;
		int n;

		pfd.events = (short)((want & VICI_WANT_READ ? POLLIN : 0) |
				     (want & VICI_WANT_WRITE ? POLLOUT : 0));
		if (ms >= 0) {
			ts.tv_sec = (time_t)(ms / 1000);
			ts.tv_nsec = (long)(ms % 1000) * 1000000;
			tsp = &ts;
		}
		n = ppoll(&pfd, pfd.fd >= 0 ? 1 : 0, tsp, wait_mask);
		if (n > 0)
			vici_conn_process(t->conn, pfd.revents & (POLLIN | POLLHUP | POLLERR),
					  pfd.revents & (POLLOUT | POLLHUP | POLLERR));
		vici_conn_tick(t->conn, vici_now_ms());
	}
}

static int connect_daemon(struct tool *t)
{
	int rc = vici_conn_new(t->uri, &t->conn);

	if (rc < 0) {
		/* main() checked the URI: only memory can fail here. */
		fprintf(stderr, "vici: %s: %s\n", t->uri, strerror(-rc));
		return EXIT_FAILED;
	}
	vici_conn_on_state(t->conn, on_state, t);
	rc = vici_conn_connect(t->conn);
	if (rc < 0) {
		fprintf(stderr, "vici: cannot connect to charon at %s: %s\n", t->uri,
			strerror(-rc));
		return EXIT_UNREACHABLE;
	}
	return EXIT_OK;
}

/* Maps a request's transport error to a message and an exit code. */
static int report_transport(const struct tool *t, const char *cmd, int err)
{
	if (!t->ever_up) {
		fprintf(stderr, "vici: cannot connect to charon at %s: %s\n", t->uri,
			strerror(-err));
		return EXIT_UNREACHABLE;
	}
	switch (err) {
	case -ENOENT:
		fprintf(stderr, "vici: charon does not know the command or event of '%s'\n", cmd);
		return EXIT_FAILED;
	case -ETIMEDOUT:
		fprintf(stderr, "vici: %s: no reply from charon at %s in time\n", cmd, t->uri);
		return EXIT_UNREACHABLE;
	case -ECONNRESET:
		fprintf(stderr, "vici: %s: connection to charon at %s lost\n", cmd, t->uri);
		return EXIT_UNREACHABLE;
	default:
		fprintf(stderr, "vici: %s: %s\n", cmd, strerror(-err));
		return EXIT_FAILED;
	}
}

/* One request's outcome, filled by on_reply(). */
struct request {
	struct tool *tool;
	const char *cmd;
	vici_event_cb on_event; /* streamed commands */
	void *event_arg;
	int control; /* a control command: keep charon's log of it */
	int done;
	int err;
	struct vici_tree *reply; /* a copy: the callback's tree is borrowed */
	char *log;		 /* control: a copy of the log, or NULL */
};

static void on_reply(void *arg, int err, const struct vici_tree *reply)
{
	struct request *r = arg;
	uint8_t *msg = NULL;
	size_t len = 0;

	r->done = 1;
	r->err = err;
	if (err || !reply)
		return;
	/* Keep it past the callback: re-encode and parse into our own tree. */
	r->err = vici_tree_encode(reply, &msg, &len);
	if (!r->err)
		r->err = vici_tree_parse(msg, len, &r->reply);
	free(msg);
}

static void on_control_reply(void *arg, int err, const struct vici_tree *reply, const char *log)
{
	struct request *r = arg;

	r->log = strdup(log); /* out of memory: the report lacks the log */
	on_reply(r, err, reply);
}

/* Events of a streamed command go to the request's handler. */
static void on_stream_event(void *arg, const char *event, const struct vici_tree *msg)
{
	struct request *r = arg;

	if (r->on_event)
		r->on_event(r->event_arg, event, msg);
}

/*
 * Sends cmd (streaming event, if not NULL) and waits for the reply. Returns
 * EXIT_OK with r->reply set (caller frees), or the exit code after reporting
 * why on stderr. A reply with success=no is EXIT_OK here: callers decide.
 */
static int request(struct tool *t, struct request *r, const char *event, struct vici_builder *b,
		   int default_timeout_ms)
{
	uint8_t *msg = NULL;
	size_t len = 0;
	int timeout = t->timeout_ms >= 0 ? t->timeout_ms : default_timeout_ms;
	int rc = vici_builder_finish(b, &msg, &len);

	vici_builder_free(b);
	if (rc < 0) {
		fprintf(stderr, "vici: %s: cannot build the request: %s\n", r->cmd, strerror(-rc));
		return EXIT_FAILED;
	}
	if (r->control)
		rc = vici_conn_control(t->conn, r->cmd, msg, len, timeout, on_control_reply, r);
	else if (event)
		rc = vici_conn_stream(t->conn, r->cmd, event, msg, len, timeout, on_stream_event,
				      on_reply, r);
	else
		rc = vici_conn_command(t->conn, r->cmd, msg, len, timeout, on_reply, r);
	free(msg);
	if (rc < 0) {
		fprintf(stderr, "vici: %s: %s\n", r->cmd, strerror(-rc));
		return EXIT_FAILED;
	}
	run_loop(t, &r->done, NULL);
	if (r->err)
		return report_transport(t, r->cmd, r->err);
	return EXIT_OK;
}

/* The common end of a command whose reply may say success=no. */
static int finish_reply(const struct tool *t, struct request *r, int print)
{
	const char *errmsg = vici_reply_error(r->reply);
	int rc = EXIT_OK;

	if (errmsg) {
		fprintf(stderr, "vici: %s failed: %s\n", r->cmd, *errmsg ? errmsg : "(no reason)");
		rc = EXIT_FAILED;
	}
	if (print && (!errmsg || t->json))
		print_tree(t, r->reply);
	vici_tree_free(r->reply);
	r->reply = NULL;
	return rc;
}

/* Connects and runs one plain command, printing its reply. */
static int simple_command(struct tool *t, const char *cmd, struct vici_builder *b)
{
	struct request r = {.tool = t, .cmd = cmd};
	int rc = connect_daemon(t);

	if (rc != EXIT_OK) {
		vici_builder_free(b);
		return rc;
	}
	rc = request(t, &r, NULL, b, DEFAULT_TIMEOUT_MS);
	if (rc != EXIT_OK)
		return rc;
	return finish_reply(t, &r, 1);
}

/* ---- YAML → vici message ---- */

/*
 * Converts a YAML document generically: mapping → section, scalar → key/value,
 * sequence of scalars → list. Reports every error it can as FILE:LINE: message
 * and skips the offending node; a syntax error ends the parse.
 */
struct yaml_conv {
	const char *file;
	yaml_parser_t parser;
	struct vici_builder *b;
	int errors;
	int syntax; /* libyaml gave up, or the stream ended: no more events */
};

static void conv_error(struct yaml_conv *c, size_t line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void conv_error(struct yaml_conv *c, size_t line, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s:%zu: ", c->file, line);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	c->errors++;
}

/* The next event, or 0 after reporting a syntax error. */
static int conv_next(struct yaml_conv *c, yaml_event_t *ev)
{
	if (c->syntax)
		return 0;
	if (!yaml_parser_parse(&c->parser, ev)) {
		conv_error(c, c->parser.problem_mark.line + 1, "%s%s%s",
			   c->parser.context ? c->parser.context : "",
			   c->parser.context ? ": " : "",
			   c->parser.problem ? c->parser.problem : "YAML syntax error");
		c->syntax = 1;
		return 0;
	}
	if (ev->type == YAML_STREAM_END_EVENT || ev->type == YAML_NO_EVENT)
		c->syntax = 1;
	return 1;
}

static size_t ev_line(const yaml_event_t *ev)
{
	return ev->start_mark.line + 1;
}

/* Skips the rest of a node whose start event was ev. */
static void conv_skip(struct yaml_conv *c, const yaml_event_t *start)
{
	int depth =
	    start->type == YAML_MAPPING_START_EVENT || start->type == YAML_SEQUENCE_START_EVENT;
	yaml_event_t ev;

	while (depth > 0 && conv_next(c, &ev)) {
		if (ev.type == YAML_MAPPING_START_EVENT || ev.type == YAML_SEQUENCE_START_EVENT)
			depth++;
		else if (ev.type == YAML_MAPPING_END_EVENT || ev.type == YAML_SEQUENCE_END_EVENT)
			depth--;
		yaml_event_delete(&ev);
	}
}

static int scalar_ok(struct yaml_conv *c, const yaml_event_t *ev, const char *what)
{
	if (ev->data.scalar.length > VICI_VALUE_MAX) {
		conv_error(c, ev_line(ev), "%s longer than %d bytes", what, VICI_VALUE_MAX);
		return 0;
	}
	return 1;
}

static void conv_list(struct yaml_conv *c, const char *name)
{
	yaml_event_t ev;

	vici_builder_list_start(c->b, name);
	while (conv_next(c, &ev)) {
		if (ev.type == YAML_SEQUENCE_END_EVENT) {
			yaml_event_delete(&ev);
			break;
		}
		if (ev.type != YAML_SCALAR_EVENT) {
			conv_error(c, ev_line(&ev), "%s: list items must be scalars", name);
			conv_skip(c, &ev);
		} else if (scalar_ok(c, &ev, "list item")) {
			vici_builder_list_item(c->b, ev.data.scalar.value, ev.data.scalar.length);
		}
		yaml_event_delete(&ev);
	}
	vici_builder_list_end(c->b);
}

static void conv_mapping(struct yaml_conv *c, unsigned depth);

/* One value of a mapping, named name, starting with ev. */
static void conv_value(struct yaml_conv *c, const char *name, const yaml_event_t *ev,
		       unsigned depth)
{
	switch (ev->type) {
	case YAML_SCALAR_EVENT:
		if (scalar_ok(c, ev, "value"))
			vici_builder_key_value(c->b, name, ev->data.scalar.value,
					       ev->data.scalar.length);
		break;
	case YAML_SEQUENCE_START_EVENT:
		conv_list(c, name);
		break;
	case YAML_MAPPING_START_EVENT:
		if (depth >= VICI_DEPTH_MAX) {
			conv_error(c, ev_line(ev), "sections nested deeper than %d",
				   VICI_DEPTH_MAX);
			conv_skip(c, ev);
			break;
		}
		vici_builder_section_start(c->b, name);
		conv_mapping(c, depth + 1);
		vici_builder_section_end(c->b);
		break;
	default:
		conv_error(c, ev_line(ev), "%s: aliases are not supported", name);
		break;
	}
}

/*
 * One key and its value, the key's event already read. sections_only: the
 * value must be a mapping (connections at load-conn's top level).
 */
static void conv_pair(struct yaml_conv *c, const yaml_event_t *key, unsigned depth,
		      int sections_only)
{
	const char *name = (const char *)key->data.scalar.value;
	yaml_event_t val;

	if (key->type != YAML_SCALAR_EVENT) {
		conv_error(c, ev_line(key), "keys must be scalars");
		conv_skip(c, key);
		name = NULL;
	} else if (key->data.scalar.length == 0 || key->data.scalar.length > VICI_NAME_MAX ||
		   memchr(name, 0, key->data.scalar.length)) {
		conv_error(c, ev_line(key), "a key must have 1 to %d bytes, no NUL", VICI_NAME_MAX);
		name = NULL;
	}
	if (!conv_next(c, &val))
		return;
	if (name && sections_only && val.type != YAML_MAPPING_START_EVENT) {
		conv_error(c, ev_line(&val), "%s: a connection must be a mapping", name);
		name = NULL;
	}
	if (name)
		conv_value(c, name, &val, depth);
	else
		conv_skip(c, &val);
	yaml_event_delete(&val);
}

/* The pairs of a mapping whose start was consumed, up to its end. */
static void conv_pairs(struct yaml_conv *c, unsigned depth, int sections_only)
{
	yaml_event_t key;

	while (conv_next(c, &key)) {
		int end = key.type == YAML_MAPPING_END_EVENT;

		if (!end)
			conv_pair(c, &key, depth, sections_only);
		yaml_event_delete(&key);
		if (end)
			return;
	}
}

static void conv_mapping(struct yaml_conv *c, unsigned depth)
{
	conv_pairs(c, depth, 0);
}

/* Expects an event of type want; reports what instead. */
static int conv_expect(struct yaml_conv *c, yaml_event_type_t want, const char *what)
{
	yaml_event_t ev;
	int ok;

	if (!conv_next(c, &ev))
		return 0;
	ok = ev.type == want;
	if (!ok)
		conv_error(c, ev_line(&ev), "%s", what);
	yaml_event_delete(&ev);
	return ok;
}

/* The top level: one mapping, of sections only for load-conn. */
static void conv_document(struct yaml_conv *c, int sections_only)
{
	if (!conv_expect(c, YAML_STREAM_START_EVENT, "not a YAML stream") ||
	    !conv_expect(c, YAML_DOCUMENT_START_EVENT, "empty file") ||
	    !conv_expect(c, YAML_MAPPING_START_EVENT, "the top level must be a mapping"))
		return;
	conv_pairs(c, 0, sections_only);
	if (conv_expect(c, YAML_DOCUMENT_END_EVENT, "trailing content"))
		(void)conv_expect(c, YAML_STREAM_END_EVENT, "one document only, please");
}

/*
 * Parses file into a new builder (*out, caller frees). Returns EXIT_OK, or
 * EXIT_FAILED after reporting every error found.
 */
static int yaml_to_builder(const char *file, int sections_only, struct vici_builder **out)
{
	struct yaml_conv c = {.file = file};
	FILE *f = fopen(file, "rb");

	*out = NULL;
	if (!f) {
		fprintf(stderr, "%s: %s\n", file, strerror(errno));
		return EXIT_FAILED;
	}
	if (!yaml_parser_initialize(&c.parser)) {
		fclose(f);
		fprintf(stderr, "%s: %s\n", file, strerror(ENOMEM));
		return EXIT_FAILED;
	}
	yaml_parser_set_input_file(&c.parser, f);
	c.b = vici_builder_new();
	conv_document(&c, sections_only);
	yaml_parser_delete(&c.parser);
	fclose(f);
	if (c.errors) {
		vici_builder_free(c.b);
		return EXIT_FAILED;
	}
	*out = c.b;
	return EXIT_OK;
}

/* ---- Commands ---- */

static int cmd_plain(struct tool *t, const char *cmd)
{
	return simple_command(t, cmd, vici_builder_new());
}

static int cmd_version(struct tool *t, const struct args *a)
{
	(void)a;
	return cmd_plain(t, "version");
}

static int cmd_stats(struct tool *t, const struct args *a)
{
	(void)a;
	return cmd_plain(t, "stats");
}

static int cmd_get_conns(struct tool *t, const struct args *a)
{
	(void)a;
	return cmd_plain(t, "get-conns");
}

static void print_event(void *arg, const char *event, const struct vici_tree *msg)
{
	(void)event;
	print_tree(arg, msg);
}

/* list-sas and list-conns: print each streamed event; the reply is empty. */
static int list_command(struct tool *t, const char *cmd, const char *event, const char *ike)
{
	struct request r = {.tool = t, .cmd = cmd, .on_event = print_event, .event_arg = t};
	struct vici_builder *b = vici_builder_new();
	int rc;

	if (ike)
		vici_builder_key_str(b, "ike", ike);
	rc = connect_daemon(t);
	if (rc != EXIT_OK) {
		vici_builder_free(b);
		return rc;
	}
	rc = request(t, &r, event, b, DEFAULT_TIMEOUT_MS);
	if (rc != EXIT_OK)
		return rc;
	return finish_reply(t, &r, 0);
}

static int cmd_list_sas(struct tool *t, const struct args *a)
{
	return list_command(t, "list-sas", "list-sa", a->opt[OPT_IKE]);
}

static int cmd_list_conns(struct tool *t, const struct args *a)
{
	return list_command(t, "list-conns", "list-conn", a->opt[OPT_IKE]);
}

static int cmd_load_conn(struct tool *t, const struct args *a)
{
	struct vici_builder *b;
	int rc = yaml_to_builder(a->pos, 1, &b);

	if (rc != EXIT_OK)
		return rc;
	return simple_command(t, "load-conn", b);
}

static int cmd_unload_conn(struct tool *t, const struct args *a)
{
	struct vici_builder *b = vici_builder_new();

	vici_builder_key_str(b, "name", a->pos);
	return simple_command(t, "unload-conn", b);
}

static int cmd_load_shared(struct tool *t, const struct args *a)
{
	struct vici_builder *b;
	int rc;

	if (a->pos) {
		if (a->opt[OPT_ID] || a->opt[OPT_SECRET] || a->opt[OPT_TYPE])
			return usage_error("load-shared: a FILE or --id/--secret/--type, not both");
		rc = yaml_to_builder(a->pos, 0, &b);
		if (rc != EXIT_OK)
			return rc;
		return simple_command(t, "load-shared", b);
	}
	if (!a->opt[OPT_SECRET])
		return usage_error("load-shared: needs a FILE or --secret");
	b = vici_builder_new();
	vici_builder_key_str(b, "type", a->opt[OPT_TYPE] ? a->opt[OPT_TYPE] : "IKE");
	vici_builder_key_str(b, "data", a->opt[OPT_SECRET]);
	vici_builder_list_start(b, "owners");
	if (a->opt[OPT_ID])
		vici_builder_list_item_str(b, a->opt[OPT_ID]);
	vici_builder_list_end(b);
	return simple_command(t, "load-shared", b);
}

/* Prints log with an indent, escaped like any other output. */
static void print_log(const char *log)
{
	while (*log) {
		const char *nl = strchr(log, '\n');
		size_t n = nl ? (size_t)(nl - log) : strlen(log);

		fputs("  ", stderr);
		put_text(stderr, log, n);
		fputc('\n', stderr);
		log += nl ? n + 1 : n;
	}
}

/*
 * initiate/terminate: on failure, the reason charon's log gives (the peer's
 * notify, e.g. NO_PROPOSAL_CHOSEN) and the log itself explain more than
 * errmsg.
 */
static int control_command(struct tool *t, const char *cmd, struct vici_builder *b, int deadline_ms)
{
	struct request r = {.tool = t, .cmd = cmd, .control = 1};
	char reason[64];
	int rc = connect_daemon(t);

	if (rc != EXIT_OK) {
		vici_builder_free(b);
		return rc;
	}
	rc = request(t, &r, NULL, b, deadline_ms);
	if (rc == EXIT_OK)
		rc = finish_reply(t, &r, 1);
	if (rc != EXIT_OK && r.log && *r.log) {
		if (vici_control_reason(r.log, reason, sizeof(reason)))
			fprintf(stderr, "reason: %s\n", reason);
		fprintf(stderr, "charon's log of the attempt:\n");
		print_log(r.log);
	}
	free(r.log);
	return rc;
}

static int parse_int(const char *s, long min, long max, long *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

/*
 * initiate/terminate: --timeout MS goes to charon (-1: don't wait, 0: wait
 * for ever); the client's own deadline leaves charon time to answer after
 * its timeout. Consumes b.
 */
static int timed_control(struct tool *t, const char *cmd, const struct args *a,
			 struct vici_builder *b)
{
	int deadline = CONTROL_TIMEOUT_MS;
	long charon_ms = 0;

	if (a->opt[OPT_TIMEOUT] &&
	    parse_int(a->opt[OPT_TIMEOUT], -1, INT_MAX - CONTROL_MARGIN_MS, &charon_ms) < 0) {
		vici_builder_free(b);
		return usage_error("%s: --timeout takes milliseconds, -1 or more", cmd);
	}
	if (charon_ms > 0)
		deadline = (int)charon_ms + CONTROL_MARGIN_MS;
	if (a->opt[OPT_TIMEOUT])
		vici_builder_key_str(b, "timeout", a->opt[OPT_TIMEOUT]);
	return control_command(t, cmd, b, deadline);
}

static int cmd_initiate(struct tool *t, const struct args *a)
{
	struct vici_builder *b;

	if (!a->opt[OPT_CHILD])
		return usage_error("initiate: --child is required");
	b = vici_builder_new();
	vici_builder_key_str(b, "child", a->opt[OPT_CHILD]);
	if (a->opt[OPT_IKE])
		vici_builder_key_str(b, "ike", a->opt[OPT_IKE]);
	return timed_control(t, "initiate", a, b);
}

/* terminate and rekey name exactly one SA: --ike or --child. */
static struct vici_builder *sa_selector(const char *cmd, const struct args *a, int *rc)
{
	struct vici_builder *b;

	if (!a->opt[OPT_IKE] == !a->opt[OPT_CHILD]) {
		*rc = usage_error("%s: give either --ike or --child", cmd);
		return NULL;
	}
	b = vici_builder_new();
	if (a->opt[OPT_IKE])
		vici_builder_key_str(b, "ike", a->opt[OPT_IKE]);
	else
		vici_builder_key_str(b, "child", a->opt[OPT_CHILD]);
	return b;
}

static int cmd_terminate(struct tool *t, const struct args *a)
{
	int rc = EXIT_OK;
	struct vici_builder *b = sa_selector("terminate", a, &rc);

	if (!b)
		return rc;
	return timed_control(t, "terminate", a, b);
}

static int cmd_rekey(struct tool *t, const struct args *a)
{
	int rc = EXIT_OK;
	struct vici_builder *b = sa_selector("rekey", a, &rc);

	if (!b)
		return rc;
	return simple_command(t, "rekey", b);
}

/* ---- monitor ---- */

static const char *const monitor_events[] = {
    "ike-updown", "child-updown", "ike-rekey", "child-rekey", "log",
};

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
	(void)sig;
	stop_flag = 1;
}

/* One line per event; in JSON {"event":NAME,"data":{...}}. Our own
 * subscription names need no escaping. */
static void on_monitor_event(void *arg, const char *event, const struct vici_tree *msg)
{
	const struct tool *t = arg;
	char *buf = NULL;
	size_t len = 0;
	FILE *mem;

	if (t->json) {
		printf("{\"event\":\"%s\",\"data\":", event);
		/* vici_tree_to_json() ends its line: the closing brace goes after. */
		mem = open_memstream(&buf, &len);

		if (!mem || vici_tree_to_json(msg, mem) < 0 || fclose(mem) != 0) {
			fprintf(stderr, "vici: cannot format an event\n");
			free(buf);
			printf("null}\n");
			fflush(stdout);
			return;
		}
		if (len && buf[len - 1] == '\n')
			len--;
		printf("%.*s}\n", (int)len, buf);
		free(buf);
	} else {
		fputs(event, stdout);
		print_section_line(stdout, vici_tree_root(msg));
		fputc('\n', stdout);
	}
	fflush(stdout);
}

/* Tells the user (and scripts waiting for it) that events now flow. */
static void on_monitor_ready(void *arg, int err, const struct vici_tree *reply)
{
	struct tool *t = arg;
	const char *version = reply ? vici_tree_get(reply, "version") : NULL;

	if (err < 0)
		return; /* the connection went down again: on_state says so */
	if (t->lost)
		fprintf(stderr, "vici: reconnected to %s, events registered again\n", t->uri);
	else
		fprintf(stderr, "vici: monitoring charon %s at %s\n", version ? version : "?",
			t->uri);
	t->lost = 0;
}

static int cmd_monitor(struct tool *t, const struct args *a)
{
	struct sigaction sa = {.sa_handler = on_signal};
	sigset_t block, orig;
	int rc, never = 0;

	(void)a;
	sigemptyset(&block);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGTERM);
	sigprocmask(SIG_BLOCK, &block, &orig);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	t->stop = &stop_flag;
	rc = connect_daemon(t);
	if (rc != EXIT_OK)
		return rc;
	for (size_t i = 0; i < sizeof(monitor_events) / sizeof(monitor_events[0]); i++) {
		rc = vici_conn_subscribe(t->conn, monitor_events[i], on_monitor_event, t);
		if (rc < 0) {
			fprintf(stderr, "vici: monitor: %s\n", strerror(-rc));
			return EXIT_FAILED;
		}
	}
	/* Until the first connection is up, being down means unreachable. */
	run_loop(t, &t->state_seen, &orig);
	if (!t->ever_up && !stop_flag) {
		fprintf(stderr, "vici: cannot connect to charon at %s: %s\n", t->uri,
			strerror(-t->down_err));
		return EXIT_UNREACHABLE;
	}
	run_loop(t, &never, &orig);
	return EXIT_OK;
}

/* ---- main ---- */

static const struct command commands[] = {
    {"version", 0, 0, cmd_version, "version"},
    {"stats", 0, 0, cmd_stats, "stats"},
    {"list-sas", OPT(OPT_IKE), 0, cmd_list_sas, "list-sas [--ike NAME]"},
    {"list-conns", OPT(OPT_IKE), 0, cmd_list_conns, "list-conns [--ike NAME]"},
    {"get-conns", 0, 0, cmd_get_conns, "get-conns"},
    {"load-conn", 0, 1, cmd_load_conn, "load-conn FILE.yaml"},
    {"unload-conn", 0, 1, cmd_unload_conn, "unload-conn NAME"},
    {"load-shared", OPT(OPT_ID) | OPT(OPT_SECRET) | OPT(OPT_TYPE), 2, cmd_load_shared,
     "load-shared FILE.yaml | --secret S [--id ID] [--type IKE|EAP|XAUTH]"},
    {"initiate", OPT(OPT_CHILD) | OPT(OPT_IKE) | OPT(OPT_TIMEOUT), 0, cmd_initiate,
     "initiate --child NAME [--ike NAME] [--timeout MS]"},
    {"terminate", OPT(OPT_CHILD) | OPT(OPT_IKE) | OPT(OPT_TIMEOUT), 0, cmd_terminate,
     "terminate --ike NAME | --child NAME [--timeout MS]"},
    {"rekey", OPT(OPT_CHILD) | OPT(OPT_IKE), 0, cmd_rekey, "rekey --ike NAME | --child NAME"},
    {"monitor", 0, 0, cmd_monitor, "monitor"},
};

#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

static void usage(FILE *out)
{
	fprintf(out,
		"usage: vici [-s unix:///PATH | tcp://HOST:PORT] [--json] [--timeout MS] "
		"COMMAND [options]\n"
		"  default socket %s, default timeout %d ms\ncommands:\n",
		DEFAULT_URI, DEFAULT_TIMEOUT_MS);
	for (size_t i = 0; i < N_COMMANDS; i++)
		fprintf(out, "  %s\n", commands[i].synopsis);
	fprintf(out, "exit: 0 ok, 1 command failed, 2 usage, 3 charon unreachable\n");
}

static const struct command *find_command(const char *name)
{
	for (size_t i = 0; i < N_COMMANDS; i++)
		if (!strcmp(commands[i].name, name))
			return &commands[i];
	return NULL;
}

/* The command's own options and positional argument. */
static int parse_command_args(const struct command *cmd, int argc, char **argv, struct args *a)
{
	for (int i = 0; i < argc; i++) {
		int id;

		for (id = 0; id < OPT_COUNT; id++)
			if (!strcmp(argv[i], opt_names[id]))
				break;
		if (id < OPT_COUNT && (cmd->opts & OPT(id))) {
			if (i + 1 >= argc)
				return usage_error("%s: %s needs an argument", cmd->name, argv[i]);
			a->opt[id] = argv[++i];
		} else if (argv[i][0] == '-' && argv[i][1]) {
			return usage_error("%s: unknown option %s", cmd->name, argv[i]);
		} else if (cmd->has_pos && !a->pos) {
			a->pos = argv[i];
		} else {
			return usage_error("%s: unexpected argument '%s'", cmd->name, argv[i]);
		}
	}
	if (cmd->has_pos == 1 && !a->pos)
		return usage_error("%s: missing argument", cmd->name);
	return EXIT_OK;
}

/* Global options up to the command name; returns its index in argv. */
static int parse_global(int argc, char **argv, struct tool *t, int *idx)
{
	int i;

	for (i = 1; i < argc && argv[i][0] == '-'; i++) {
		const char *o = argv[i];
		long ms;

		if (!strcmp(o, "-h") || !strcmp(o, "--help")) {
			usage(stdout);
			exit(EXIT_OK);
		} else if (!strcmp(o, "--json")) {
			t->json = 1;
		} else if (!strcmp(o, "-s") || !strcmp(o, "--socket")) {
			if (++i >= argc)
				return usage_error("%s needs an argument", o);
			t->uri = argv[i];
		} else if (!strcmp(o, "--timeout")) {
			if (++i >= argc)
				return usage_error("%s needs an argument", o);
			if (parse_int(argv[i], 1, INT_MAX, &ms) < 0)
				return usage_error("--timeout takes milliseconds, 1 or more");
			t->timeout_ms = (int)ms;
		} else {
			return usage_error("unknown option %s", o);
		}
	}
	if (i >= argc)
		return usage_error("missing command");
	*idx = i;
	return EXIT_OK;
}

int main(int argc, char **argv)
{
	struct tool t = {.uri = DEFAULT_URI, .timeout_ms = -1};
	struct args a = {0};
	const struct command *cmd;
	struct vici_conn *probe = NULL;
	int idx = 0, rc;

	rc = parse_global(argc, argv, &t, &idx);
	if (rc != EXIT_OK)
		return rc;
	cmd = find_command(argv[idx]);
	if (!cmd)
		return usage_error("unknown command '%s'", argv[idx]);
	rc = parse_command_args(cmd, argc - idx - 1, argv + idx + 1, &a);
	if (rc != EXIT_OK)
		return rc;
	/* A malformed URI is a usage error, found before any file is read. */
	if (vici_conn_new(t.uri, &probe) == -EINVAL)
		return usage_error("bad socket URI '%s'", t.uri);
	vici_conn_free(probe);
	rc = cmd->run(&t, &a);
	vici_conn_free(t.conn);
	return rc;
}
