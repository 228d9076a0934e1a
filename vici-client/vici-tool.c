/*
 * vici: a command-line client for charon's vici socket.
 *
 *   vici [-s URI] [--json | --raw] [--timeout MS] COMMAND [options]
 *
 * One connection, one request at a time, driven by one poll loop (run_loop);
 * monitor keeps the loop running until SIGINT/SIGTERM. Files given to
 * load-conn/load-shared are parsed before connecting (vici-tool-yaml.c), so a
 * bad file is reported as FILE:LINE: message whether or not charon is up.
 * What is printed, and how, is in vici-tool-print.c.
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

#include "vici-client/vici-tool.h"

#define DEFAULT_URI	   "unix:///var/run/charon.vici"
#define DEFAULT_TIMEOUT_MS 10000 /* client deadline of a plain command */
#define CONTROL_TIMEOUT_MS 60000 /* initiate/terminate without a charon timeout */
#define CONTROL_MARGIN_MS  5000	 /* client deadline beyond charon's own timeout */

/* Command options; a command lists the ones it accepts. */
enum opt_id {
	OPT_CHILD,
	OPT_IKE,
	OPT_TIMEOUT,
	OPT_ID,
	OPT_SECRET,
	OPT_TYPE,
	OPT_LOG,
	OPT_COUNT,
};

static const char *const opt_names[OPT_COUNT] = {
    [OPT_CHILD] = "--child", [OPT_IKE] = "--ike",	[OPT_TIMEOUT] = "--timeout",
    [OPT_ID] = "--id",	     [OPT_SECRET] = "--secret", [OPT_TYPE] = "--type",
    [OPT_LOG] = "--log",
};

#define OPT(id) (1u << (id))
/* Options without an argument: set to "yes" when given. */
#define OPT_FLAGS OPT(OPT_LOG)

struct args {
	const char *opt[OPT_COUNT];
	const char *pos; /* the one positional argument, if the command takes it */
};

struct tool {
	struct vici_conn *conn;
	const char *uri;
	int json;
	int raw;	/* list-sas: the message tree, not the summary */
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
		tool_print_tree(r->reply, t->json);
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
	const struct tool *t = arg;

	(void)event;
	tool_print_tree(msg, t->json);
}

/* list-sas without --json or --raw: the summary swanctl users know. */
static void print_sa(void *arg, const char *event, const struct vici_tree *msg)
{
	const struct tool *t = arg;

	(void)event;
	if (t->json || t->raw)
		tool_print_tree(msg, t->json);
	else
		tool_print_sa_summary(msg);
}

/* list-sas and list-conns: print each streamed event; the reply is empty. */
static int list_command(struct tool *t, const char *cmd, const char *event, const char *ike,
			vici_event_cb print)
{
	struct request r = {.tool = t, .cmd = cmd, .on_event = print, .event_arg = t};
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
	return list_command(t, "list-sas", "list-sa", a->opt[OPT_IKE], print_sa);
}

static int cmd_list_conns(struct tool *t, const struct args *a)
{
	return list_command(t, "list-conns", "list-conn", a->opt[OPT_IKE], print_event);
}

static int cmd_load_conn(struct tool *t, const struct args *a)
{
	struct vici_builder *b;
	int rc = tool_yaml_message(a->pos, 1, &b);

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

/*
 * "--secret -": the secret from standard input, one line, so that it does not
 * show in the process list. Returns its length, or -1 after saying why.
 */
static ssize_t read_secret(char *buf, size_t size)
{
	size_t n;

	if (!fgets(buf, (int)size, stdin)) {
		fprintf(stderr, "vici: load-shared: no secret on standard input\n");
		return -1;
	}
	n = strcspn(buf, "\r\n");
	if (n == size - 1 && !feof(stdin)) {
		fprintf(stderr, "vici: load-shared: the secret is longer than %zu bytes\n",
			size - 2);
		return -1;
	}
	buf[n] = '\0';
	if (n == 0) {
		fprintf(stderr, "vici: load-shared: the secret on standard input is empty\n");
		return -1;
	}
	return (ssize_t)n;
}

/* A secret from options: --secret S or -, --id ID (one owner), --type. */
static int load_shared_opts(struct tool *t, const struct args *a)
{
	static char secret[VICI_VALUE_MAX + 2]; /* a line, its '\n' and NUL */
	const char *data = a->opt[OPT_SECRET];
	struct vici_builder *b;

	if (!strcmp(data, "-")) {
		if (read_secret(secret, sizeof(secret)) < 0)
			return EXIT_FAILED;
		data = secret;
	}
	b = vici_builder_new();
	vici_builder_key_str(b, "type", a->opt[OPT_TYPE] ? a->opt[OPT_TYPE] : "IKE");
	vici_builder_key_str(b, "data", data);
	vici_builder_list_start(b, "owners");
	if (a->opt[OPT_ID])
		vici_builder_list_item_str(b, a->opt[OPT_ID]);
	vici_builder_list_end(b);
	explicit_bzero(secret, sizeof(secret)); /* the builder holds its own copy */
	return simple_command(t, "load-shared", b);
}

static int cmd_load_shared(struct tool *t, const struct args *a)
{
	struct vici_builder *b;
	int rc;

	if (a->pos) {
		if (a->opt[OPT_ID] || a->opt[OPT_SECRET] || a->opt[OPT_TYPE])
			return usage_error("load-shared: a FILE or --id/--secret/--type, not both");
		rc = tool_yaml_message(a->pos, 0, &b);
		if (rc != EXIT_OK)
			return rc;
		return simple_command(t, "load-shared", b);
	}
	if (!a->opt[OPT_SECRET])
		return usage_error("load-shared: needs a FILE or --secret");
	return load_shared_opts(t, a);
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
		tool_print_lines(stderr, r.log);
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

/* "log" too with --log: charon's whole log, as swanctl --log shows it. */
static const char *const monitor_events[] = {
    "ike-updown", "child-updown", "ike-rekey", "child-rekey", "log",
};

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
	(void)sig;
	stop_flag = 1;
}

static void on_monitor_event(void *arg, const char *event, const struct vici_tree *msg)
{
	const struct tool *t = arg;

	tool_print_event(event, msg, t->json);
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
		if (!strcmp(monitor_events[i], "log") && !a->opt[OPT_LOG])
			continue;
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
     "load-shared FILE.yaml | --secret S|- [--id ID] [--type IKE|EAP|XAUTH]"},
    {"initiate", OPT(OPT_CHILD) | OPT(OPT_IKE) | OPT(OPT_TIMEOUT), 0, cmd_initiate,
     "initiate --child NAME [--ike NAME] [--timeout MS]"},
    {"terminate", OPT(OPT_CHILD) | OPT(OPT_IKE) | OPT(OPT_TIMEOUT), 0, cmd_terminate,
     "terminate --ike NAME | --child NAME [--timeout MS]"},
    {"rekey", OPT(OPT_CHILD) | OPT(OPT_IKE), 0, cmd_rekey, "rekey --ike NAME | --child NAME"},
    {"monitor", OPT(OPT_LOG), 0, cmd_monitor, "monitor [--log]"},
};

#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

static void usage(FILE *out)
{
	fprintf(out,
		"usage: vici [-s unix:///PATH | tcp://HOST:PORT] [--json | --raw] [--timeout MS] "
		"COMMAND [options]\n"
		"  default socket %s, default timeout %d ms\n"
		"  --json: replies and events as JSON; --raw: list-sas as the message tree\n"
		"commands:\n",
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
		if (id < OPT_COUNT && (cmd->opts & OPT(id) & OPT_FLAGS)) {
			a->opt[id] = "yes";
		} else if (id < OPT_COUNT && (cmd->opts & OPT(id))) {
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
		} else if (!strcmp(o, "--raw")) {
			t->raw = 1;
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
