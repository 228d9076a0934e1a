/*
 * upstream.c against real https-sink processes on 127.0.0.1:18000-18999.
 *
 * Each test runs in its own Check fork with its own event_base. Sinks are
 * stopped by PID in the fixture teardown; if a test dies on a failed
 * assertion (Check _exit()s the fork), PR_SET_PDEATHSIG stops them instead.
 *
 * Environment: HTTPS_SINK (default: ../bin/https-sink from this program's
 * directory, else build/bin/https-sink), MKCERTS (default
 * tests/tools/mkcerts.sh). Uses /usr/sbin/nginx for the HTTP/2 case.
 */
#include <check.h>
#include <curl/curl.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mllp-bridge/commit.h"
#include "mllp-bridge/forward.h"
#include "mllp-bridge/spool.h"
#include "mllp-bridge/upstream.h"

#define PORT_BASE	 18000
#define PORT_SPAN	 1000
#define SINK_START_TRIES 20
#define SINK_READY_MS	 5000
#define SINK_STOP_MS	 3000
#define SINKS_MAX	 4
#define RUN_MS		 10000 /* no test waits longer for its callbacks */
#define DIR_LEN		 128   /* our temporary directories */
#define PATH_LEN	 512   /* any file below them */
#define LINE_LEN	 2048
#define FIELDS_MAX	 16

static char g_tmp[DIR_LEN]; /* per run: certs/ and one directory per sink */
static char g_certs[DIR_LEN + 16];
static const char *g_sink_bin;

struct sink {
	pid_t pid;
	int port;
	char dir[DIR_LEN + 16];
};

static struct sink g_sinks[SINKS_MAX];
static int g_nsinks;
static struct event_base *g_base;
static struct upstream *g_u;
static int g_in_post; /* set around upstream_post(): callbacks must not see it */

/* ---- helpers: files ---- */

static void cert(char *out, const char *name)
{
	snprintf(out, PATH_LEN, "%s/%s", g_certs, name);
}

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	long n;

	ck_assert_msg(f != NULL, "cannot open %s", path);
	ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	rewind(f);
	buf = malloc((size_t)n + 1);
	ck_assert_ptr_nonnull(buf);
	ck_assert_uint_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	*len = (size_t)n;
	return buf;
}

static int count_lines(const struct sink *k, const char *name)
{
	char path[PATH_LEN + 32], *buf, *p;
	size_t len;
	int n = 0;

	snprintf(path, sizeof(path), "%s/%s", k->dir, name);
	buf = slurp(path, &len);
	for (p = buf; (p = strchr(p, '\n')); p++)
		n++;
	free(buf);
	return n;
}

/* Line `seq` (1-based) of a log, split on TABs into f[]. Returns field count. */
static int log_fields(const struct sink *k, const char *name, int seq, char *line,
		      char *f[FIELDS_MAX])
{
	char path[PATH_LEN + 32], *buf, *p, *end;
	size_t len;
	int i, n = 0;

	snprintf(path, sizeof(path), "%s/%s", k->dir, name);
	buf = slurp(path, &len);
	for (p = buf, i = 1; i < seq && p; i++)
		p = (p = strchr(p, '\n')) ? p + 1 : NULL;
	ck_assert_msg(p && *p, "%s has no line %d", name, seq);
	end = strchr(p, '\n');
	ck_assert_ptr_nonnull(end);
	ck_assert_int_lt(end - p, LINE_LEN);
	memcpy(line, p, (size_t)(end - p));
	line[end - p] = '\0';
	free(buf);
	for (p = line; p && n < FIELDS_MAX; n++) {
		f[n] = p;
		if ((p = strchr(p, '\t')))
			*p++ = '\0';
	}
	return n;
}

static char *sink_file(const struct sink *k, const char *sub, int seq, size_t *len)
{
	char path[PATH_LEN + 64];

	snprintf(path, sizeof(path), "%s/%s/%d", k->dir, sub, seq);
	return slurp(path, len);
}

/* ---- helpers: sink processes ---- */

static void exec_sink(const struct sink *k, int out_fd, const char *certname,
		      const char *const *extra, pid_t parent)
{
	char listen[64], crt[PATH_LEN], key[PATH_LEN], errlog[PATH_LEN + 16];
	const char *argv[32];
	int n = 0, fd;

	/* dies with the test fork, however that ends */
	if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0 || getppid() != parent)
		_exit(127);
	snprintf(listen, sizeof(listen), "127.0.0.1:%d", k->port);
	snprintf(crt, sizeof(crt), "%s/%s.pem", g_certs, certname);
	snprintf(key, sizeof(key), "%s/%s.key", g_certs, certname);
	snprintf(errlog, sizeof(errlog), "%s/stderr.log", k->dir);
	fd = open(errlog, O_WRONLY | O_CREAT | O_APPEND, 0644);
	if (dup2(out_fd, STDOUT_FILENO) < 0 || fd < 0 || dup2(fd, STDERR_FILENO) < 0)
		_exit(127);
	argv[n++] = g_sink_bin;
	argv[n++] = "--listen";
	argv[n++] = listen;
	argv[n++] = "--cert";
	argv[n++] = crt;
	argv[n++] = "--key";
	argv[n++] = key;
	argv[n++] = "--record";
	argv[n++] = k->dir;
	while (extra && *extra && n < 31)
		argv[n++] = *extra++;
	argv[n] = NULL;
	execv(g_sink_bin, (char *const *)argv);
	_exit(127);
}

/* Waits for "listening on", or for the sink to give up (port taken). */
static int wait_ready(int fd)
{
	char buf[256];
	size_t len = 0;
	ssize_t n;
	struct pollfd p = {.fd = fd, .events = POLLIN};

	while (len < sizeof(buf) - 1 && poll(&p, 1, SINK_READY_MS) == 1) {
		n = read(fd, buf + len, sizeof(buf) - 1 - len);
		if (n <= 0)
			break;
		len += (size_t)n;
		buf[len] = '\0';
		if (strstr(buf, "listening on ") && strchr(buf, '\n'))
			return 0;
	}
	return -1;
}

static int sink_stop(struct sink *k)
{
	int status = -1, i;

	if (k->pid <= 0)
		return -1;
	kill(k->pid, SIGTERM);
	for (i = 0; i < SINK_STOP_MS / 10; i++) {
		if (waitpid(k->pid, &status, WNOHANG) == k->pid)
			break;
		usleep(10000);
	}
	if (i == SINK_STOP_MS / 10) {
		kill(k->pid, SIGKILL);
		waitpid(k->pid, &status, 0);
		status = -1;
	}
	k->pid = 0;
	return status;
}

static void stop_all_sinks(void)
{
	int i;

	for (i = 0; i < g_nsinks; i++)
		sink_stop(&g_sinks[i]);
	g_nsinks = 0;
}

/* Starts a sink serving certs/<certname>.pem with extra options (NULL-ended). */
static struct sink *sink_start(const char *certname, const char *const *extra)
{
	struct sink *k;
	int fds[2], t, status;
	pid_t parent = getpid();

	ck_assert_int_lt(g_nsinks, SINKS_MAX);
	k = &g_sinks[g_nsinks++];
	memset(k, 0, sizeof(*k));
	snprintf(k->dir, sizeof(k->dir), "%s/sink.XXXXXX", g_tmp);
	ck_assert_ptr_nonnull(mkdtemp(k->dir));
	for (t = 0; t < SINK_START_TRIES; t++) {
		k->port =
		    PORT_BASE + (int)((unsigned)(parent * 31 + t * 97 + g_nsinks * 7) % PORT_SPAN);
		ck_assert_int_eq(pipe(fds), 0);
		k->pid = fork();
		ck_assert_int_ge(k->pid, 0);
		if (k->pid == 0)
			exec_sink(k, fds[1], certname, extra, parent);
		close(fds[1]);
		status = wait_ready(fds[0]);
		close(fds[0]);
		if (status == 0)
			return k;
		sink_stop(k);
	}
	ck_abort_msg("https-sink did not start (see %s/stderr.log)", k->dir);
	return NULL;
}

/* ---- helpers: nginx, the HTTP/2 server we do not have in the sink ---- */

#define NGINX_BIN "/usr/sbin/nginx"

/* What the nginx location does with a request. */
enum nginx_mode {
	NGINX_PROXIED, /* reads the body (proxied to an inner server), answers "ok\n" */
	NGINX_EARLY,   /* `return 200 "early\n"`: answers before reading the body */
	NGINX_CLOSE,   /* proxied, and closes the connection after each response */
};

static void write_nginx_conf(const struct sink *k, enum nginx_mode mode)
{
	char path[PATH_LEN], loc[PATH_LEN];
	FILE *f;

	snprintf(loc, sizeof(loc), "%sproxy_pass http://unix:%s/inner.sock:/;",
		 mode == NGINX_CLOSE ? "keepalive_timeout 0; " : "", k->dir);
	if (mode == NGINX_EARLY)
		snprintf(loc, sizeof(loc), "return 200 \"early\\n\";");
	snprintf(path, sizeof(path), "%s/nginx.conf", k->dir);
	ck_assert_ptr_nonnull(f = fopen(path, "w"));
	fprintf(f,
		"daemon off; master_process off; worker_processes 1;\n"
		"pid %s/nginx.pid; error_log %s/error.log;\n"
		"events { worker_connections 64; }\n"
		"http {\n"
		" client_body_temp_path %s; proxy_temp_path %s; fastcgi_temp_path %s;\n"
		" uwsgi_temp_path %s; scgi_temp_path %s;\n"
		" log_format c '$connection $connection_requests $server_protocol $ssl_protocol '\n"
		" '$ssl_session_reused';\n"
		" access_log %s/access.log c;\n"
		" server {\n"
		"  listen 127.0.0.1:%d ssl http2;\n"
		"  ssl_certificate %s/server.pem; ssl_certificate_key %s/server.key;\n"
		"  ssl_protocols TLSv1.2 TLSv1.3;\n"
		/* proxied, so nginx reads each body before answering: a bare
		 * "return" answers early and resets the stream, which curl 7.88
		 * may report as a stream error */
		"  location / { %s }\n"
		" }\n"
		" server {\n"
		"  listen unix:%s/inner.sock; access_log off;\n"
		"  location / { return 200 \"ok\\n\"; }\n"
		" }\n"
		"}\n",
		k->dir, k->dir, k->dir, k->dir, k->dir, k->dir, k->dir, k->dir, k->port, g_certs,
		g_certs, loc, k->dir);
	ck_assert_int_eq(fclose(f), 0);
}

/* nginx writes its pid file once it listens; an exit means the port was taken. */
static int nginx_ready(const struct sink *k)
{
	char path[PATH_LEN];
	int i, st;

	snprintf(path, sizeof(path), "%s/nginx.pid", k->dir);
	for (i = 0; i < SINK_READY_MS / 10; i++) {
		if (waitpid(k->pid, &st, WNOHANG) == k->pid)
			return -1;
		if (access(path, R_OK) == 0)
			return 0;
		usleep(10000);
	}
	return -1;
}

static struct sink *nginx_start(enum nginx_mode mode)
{
	char conf[PATH_LEN];
	struct sink *k;
	pid_t parent = getpid();
	int t;

	/* make check installs nginx: without it these tests cannot see their
	 * input, and say so by failing. */
	ck_assert_msg(access(NGINX_BIN, X_OK) == 0, "%s is missing (apt-get install nginx-light)",
		      NGINX_BIN);
	ck_assert_int_lt(g_nsinks, SINKS_MAX);
	k = &g_sinks[g_nsinks++];
	memset(k, 0, sizeof(*k));
	snprintf(k->dir, sizeof(k->dir), "%s/nginx.XXXXXX", g_tmp);
	ck_assert_ptr_nonnull(mkdtemp(k->dir));
	snprintf(conf, sizeof(conf), "%s/nginx.conf", k->dir);
	for (t = 0; t < SINK_START_TRIES; t++) {
		k->port = PORT_BASE + (int)((unsigned)(parent * 17 + t * 89 + 500) % PORT_SPAN);
		write_nginx_conf(k, mode);
		k->pid = fork();
		ck_assert_int_ge(k->pid, 0);
		if (k->pid == 0) {
			if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0 || getppid() != parent)
				_exit(127);
			execl(NGINX_BIN, NGINX_BIN, "-q", "-e", "/dev/null", "-p", k->dir, "-c",
			      conf, (char *)NULL);
			_exit(127);
		}
		if (nginx_ready(k) == 0)
			return k;
		sink_stop(k);
	}
	ck_abort_msg("nginx did not start (see %s/error.log)", k->dir);
	return NULL;
}

/* ---- helpers: the client side ---- */

struct res {
	int called;
	int error;
	long status;
	int64_t retry_after_ms;
	int new_connection;
	int truncated;
	char ctype[128];
	char errmsg[CURL_ERROR_SIZE];
	char *body;
	size_t len;
	int *count; /* shared completion counter */
};

static void on_done(void *arg, const struct upstream_response *r)
{
	struct res *x = arg;

	ck_assert_msg(!g_in_post, "callback ran inside upstream_post");
	ck_assert_ptr_nonnull(r->body);
	ck_assert_ptr_nonnull(r->errmsg);
	x->called++;
	x->error = r->error;
	x->status = r->status;
	x->retry_after_ms = r->retry_after_ms;
	x->new_connection = r->new_connection;
	x->truncated = r->truncated;
	snprintf(x->ctype, sizeof(x->ctype), "%s", r->content_type ? r->content_type : "");
	snprintf(x->errmsg, sizeof(x->errmsg), "%s", r->errmsg);
	free(x->body);
	x->body = malloc(r->len + 1);
	ck_assert_ptr_nonnull(x->body);
	memcpy(x->body, r->body, r->len + 1); /* + the promised NUL */
	x->len = r->len;
	if (x->count)
		(*x->count)++;
}

static int post(const struct upstream_request *rq, struct res *x, int *count)
{
	int err;

	x->count = count;
	g_in_post = 1;
	err = upstream_post(g_u, rq, on_done, x);
	g_in_post = 0;
	return err;
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	*(int *)arg = 1;
}

/* Runs the loop until *count reaches want or ms pass. */
static void run_until(int *count, int want, int ms)
{
	int expired = 0;
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	struct event *t = evtimer_new(g_base, on_deadline, &expired);

	ck_assert_ptr_nonnull(t);
	evtimer_add(t, &tv);
	while (*count < want && !expired)
		event_base_loop(g_base, EVLOOP_ONCE);
	event_free(t);
}

static void post_and_wait(const struct upstream_request *rq, struct res *x)
{
	int count = 0;

	ck_assert_int_eq(post(rq, x, &count), 0);
	run_until(&count, 1, RUN_MS);
	ck_assert_int_eq(x->called, 1);
}

struct client {
	char url[128], ca[PATH_LEN];
	struct upstream_target t;
	struct upstream_request rq;
};

static const char g_msg[] = "MSH|^~\\&|LAB|HOSP|EDGE|CLOUD|20260101120000||ORU^R01|CTRL-0001|P|"
			    "2.5.1\rPID|1||12345^^^HOSP||DOE^JANE\rOBX|1|ST|X||\x01\x00\xff\r";

static void client_init(struct client *c, const char *host, int port)
{
	memset(c, 0, sizeof(*c));
	snprintf(c->url, sizeof(c->url), "https://%s:%d/messages?i=lab", host, port);
	cert(c->ca, "ca.pem");
	c->t.url = c->url;
	c->t.ca_file = c->ca;
	c->t.timeout_ms = 5000;
	c->rq.target = &c->t;
	c->rq.body = g_msg;
	c->rq.len = sizeof(g_msg) - 1;
	c->rq.content_type = "x-application/hl7-v2+er7";
	c->rq.idempotency_key = "lab-000042";
	c->rq.forwarded_for = "203.0.113.70";
	c->rq.integration = "lab";
}

/* ---- fixtures ---- */

static void setup(void)
{
	g_nsinks = 0;
	g_base = event_base_new();
	ck_assert_ptr_nonnull(g_base);
	ck_assert_int_eq(upstream_new(g_base, &g_u), 0);
}

static void teardown(void)
{
	int i, st;

	/* every sink must exit 0 on SIGTERM: under ASan that also means no leak */
	for (i = 0; i < g_nsinks; i++) {
		if (g_sinks[i].pid <= 0)
			continue;
		st = sink_stop(&g_sinks[i]);
		ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "sink %d: status %#x (%s)", i,
			      st, g_sinks[i].dir);
	}
	g_nsinks = 0;
	upstream_free(g_u);
	g_u = NULL;
	event_base_free(g_base);
	g_base = NULL;
}

/* ---- tests ---- */

static int header_has(const char *headers, const char *line)
{
	size_t n = strlen(line);
	const char *p;

	for (p = headers; p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
		if (strncasecmp(p, line, n) == 0 && (p[n] == '\n' || p[n] == '\0'))
			return 1;
	return 0;
}

static void assert_date_now(const char *date)
{
	time_t t = curl_getdate(date, NULL), now = time(NULL);
	char wd[4], mon[4], tz[4];
	int d, y, h, mi, s;

	/* IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT", nothing else */
	ck_assert_int_eq(strlen(date), 29);
	ck_assert_int_eq(sscanf(date, "%3[A-Za-z], %2d %3[A-Za-z] %4d %2d:%2d:%2d %3s", wd, &d, mon,
				&y, &h, &mi, &s, tz),
			 8);
	ck_assert_msg(date[3] == ',' && strcmp(date + 26, "GMT") == 0, "bad Date %s", date);
	ck_assert_int_ne(t, -1);
	ck_assert_msg(t >= now - 10 && t <= now + 1, "Date %s is not now", date);
}

START_TEST(test_post_exact)
{
	struct sink *k = sink_start("server", NULL);
	struct client c;
	struct res x = {0};
	char line[LINE_LEN], *f[FIELDS_MAX], len[32], *body, *hdrs;
	size_t n;

	client_init(&c, "127.0.0.1", k->port);
	c.t.bearer_token = "sekret-token.1";
	post_and_wait(&c.rq, &x);
	ck_assert_msg(x.error == 0, "error %d: %s", x.error, x.errmsg);
	ck_assert_int_eq(x.status, 200);
	ck_assert_int_eq(x.new_connection, 1);
	ck_assert_str_eq(x.ctype, "text/plain");
	ck_assert_str_eq(x.body, "200 OK\n");
	ck_assert_int_eq(x.retry_after_ms, -1);

	ck_assert_int_eq(count_lines(k, "requests.log"), 1);
	ck_assert_int_eq(log_fields(k, "requests.log", 1, line, f), 12);
	snprintf(len, sizeof(len), "%zu", sizeof(g_msg) - 1);
	ck_assert_str_eq(f[0], "1");
	ck_assert_str_eq(f[1], "POST");
	ck_assert_str_eq(f[2], "/messages?i=lab");
	ck_assert_str_eq(f[3], "lab-000042");
	ck_assert_str_eq(f[4], "203.0.113.70");
	ck_assert_str_eq(f[5], "lab");
	ck_assert_str_eq(f[6], "x-application/hl7-v2+er7");
	assert_date_now(f[7]);
	ck_assert_str_eq(f[8], "yes");
	ck_assert_str_eq(f[9], len);
	ck_assert_str_eq(f[10], "CTRL-0001");
	ck_assert_str_eq(f[11], "200");

	body = sink_file(k, "bodies", 1, &n);
	ck_assert_uint_eq(n, sizeof(g_msg) - 1);
	ck_assert_int_eq(memcmp(body, g_msg, n), 0);
	free(body);

	hdrs = sink_file(k, "headers", 1, &n);
	ck_assert_msg(header_has(hdrs, "User-Agent: mllp-edge/0.1"), "%s", hdrs);
	ck_assert_msg(header_has(hdrs, "Authorization: Bearer sekret-token.1"), "%s", hdrs);
	ck_assert_msg(strstr(hdrs, "Content-Length: ") != NULL, "%s", hdrs);
	ck_assert_msg(strcasestr(hdrs, "Expect:") == NULL, "%s", hdrs);
	ck_assert_msg(strcasestr(hdrs, "Transfer-Encoding") == NULL, "%s", hdrs);
	free(hdrs);
	free(x.body);

	/* the TLS connection the sink saw follows the policy */
	ck_assert_int_eq(log_fields(k, "connections.log", 1, line, f), 4);
	ck_assert_str_eq(f[2], "TLSv1.3");
	ck_assert_ptr_nonnull(strstr(UPSTREAM_TLS13_SUITES, f[3]));
}
END_TEST

/* Past 1 MiB curl would add "Expect: 100-continue" unless told not to. */
START_TEST(test_post_large_no_expect)
{
	enum { BIG = 3 * 512 * 1024 };
	struct sink *k = sink_start("server", NULL);
	struct client c;
	struct res x = {0};
	char *big = malloc(BIG), *body, *hdrs;
	size_t i, n;

	ck_assert_ptr_nonnull(big);
	for (i = 0; i < BIG; i++)
		big[i] = (char)(i * 7 + i / 251);
	memcpy(big, g_msg, sizeof(g_msg) - 1);
	client_init(&c, "127.0.0.1", k->port);
	c.rq.body = big;
	c.rq.len = BIG;
	post_and_wait(&c.rq, &x);
	ck_assert_msg(x.error == 0 && x.status == 200, "%d %ld %s", x.error, x.status, x.errmsg);
	body = sink_file(k, "bodies", 1, &n);
	ck_assert_uint_eq(n, BIG);
	ck_assert_int_eq(memcmp(body, big, BIG), 0);
	hdrs = sink_file(k, "headers", 1, &n);
	ck_assert_msg(strcasestr(hdrs, "Expect:") == NULL, "%s", hdrs);
	free(hdrs);
	free(body);
	free(big);
	free(x.body);
}
END_TEST

struct size_case {
	const char *bytes;
	size_t len;
	int truncated;
};

static const struct size_case size_cases[] = {
    {"1", 1, 0},
    {"1048576", UPSTREAM_RESPONSE_MAX, 0},
    {"1049000", UPSTREAM_RESPONSE_MAX, 1},
    {"5000000", UPSTREAM_RESPONSE_MAX, 1},
};

START_TEST(test_response_limit)
{
	const struct size_case *tc = &size_cases[_i];
	const char *args[] = {"--reply-bytes", tc->bytes, NULL};
	struct sink *k = sink_start("server", args);
	struct client c;
	struct res x = {0};

	client_init(&c, "127.0.0.1", k->port);
	post_and_wait(&c.rq, &x);
	ck_assert_msg(x.error == 0, "%s", x.errmsg);
	ck_assert_int_eq(x.status, 200);
	ck_assert_uint_eq(x.len, tc->len);
	ck_assert_int_eq(x.truncated, tc->truncated);
	ck_assert_int_eq(x.body[x.len - 1], 'x');
	ck_assert_int_eq(x.body[x.len], '\0');
	free(x.body);
}
END_TEST

START_TEST(test_no_bearer_no_optional_headers)
{
	struct sink *k = sink_start("server", NULL);
	struct client c;
	struct res x = {0};
	char line[LINE_LEN], *f[FIELDS_MAX], *hdrs;
	size_t n;

	client_init(&c, "127.0.0.1", k->port);
	c.rq.idempotency_key = NULL;
	c.rq.forwarded_for = NULL;
	c.rq.integration = NULL;
	c.rq.content_type = NULL;
	post_and_wait(&c.rq, &x);
	ck_assert_int_eq(x.error, 0);
	ck_assert_int_eq(log_fields(k, "requests.log", 1, line, f), 12);
	ck_assert_str_eq(f[3], "-");
	ck_assert_str_eq(f[4], "-");
	ck_assert_str_eq(f[5], "-");
	ck_assert_str_eq(f[6], "application/octet-stream");
	ck_assert_str_eq(f[8], "no");
	hdrs = sink_file(k, "headers", 1, &n);
	ck_assert_msg(strcasestr(hdrs, "Authorization") == NULL, "%s", hdrs);
	free(hdrs);
	free(x.body);
}
END_TEST

static const struct fname_case {
	const char *name; /* request.file_name */
	const char *want; /* the header line, or NULL: no X-File-Name */
} fname_cases[] = {
    {"ADT_20261201.hl7", "X-File-Name: ADT_20261201.hl7"},
    {"ADT 2026 12.hl7", "X-File-Name: ADT%202026%2012.hl7"},
    {"100%.hl7", "X-File-Name: 100%25.hl7"},
    {"a\r\nX-Evil: 1.hl7", "X-File-Name: a%0D%0AX-Evil:%201.hl7"},
    {"Befund_M\xc3\xbcller_\xe2\x82\xac.hl7", "X-File-Name: Befund_M%C3%BCller_%E2%82%AC.hl7"},
    {" lead and trail ", "X-File-Name: %20lead%20and%20trail%20"},
    {"tab\there~!*'();:@&=+$,?#[]\"", "X-File-Name: tab%09here~!*'();:@&=+$,?#[]\""},
    {"", NULL},
    {NULL, NULL},
};

/* The name of the file a message came from, percent-encoded so that
 * neither a header nor a byte of its UTF-8 is lost or injected. */
START_TEST(test_file_name_header)
{
	const struct fname_case *fc = &fname_cases[_i];
	struct sink *k = sink_start("server", NULL);
	struct client c;
	struct res x = {0};
	char *hdrs;
	size_t n;

	client_init(&c, "127.0.0.1", k->port);
	c.rq.file_name = fc->name;
	post_and_wait(&c.rq, &x);
	ck_assert_msg(x.error == 0 && x.status == 200, "%d %ld %s", x.error, x.status, x.errmsg);
	ck_assert_int_eq(count_lines(k, "requests.log"), 1); /* exactly one request arrived */
	hdrs = sink_file(k, "headers", 1, &n);
	ck_assert_msg(header_has(hdrs, "X-Integration: lab"), "%s", hdrs); /* the sink saw them */
	if (fc->want) {
		ck_assert_msg(header_has(hdrs, fc->want), "want %s in %s", fc->want, hdrs);
		ck_assert_msg(strstr(hdrs, fc->want), "case changed: %s", hdrs);
	} else {
		ck_assert_msg(strcasestr(hdrs, "X-File-Name") == NULL, "%s", hdrs);
	}
	ck_assert_msg(strcasestr(hdrs, "\nX-Evil") == NULL, "%s", hdrs); /* no header injected */
	free(hdrs);
	free(x.body);
}
END_TEST

/* A name that encodes past UPSTREAM_HEADER_LINE_MAX is refused, before
 * anything is sent. */
START_TEST(test_file_name_too_long)
{
	enum { N = UPSTREAM_HEADER_LINE_MAX / 3 + 1 };
	static char name[N + 1];
	struct client c;
	struct res x = {0};
	int count = 0;

	memset(name, ' ', N);
	client_init(&c, "127.0.0.1", PORT_BASE);
	c.rq.file_name = name;
	ck_assert_int_eq(post(&c.rq, &x, &count), -EINVAL);
	run_until(&count, 1, 200);
	ck_assert_int_eq(count, 0);
	ck_assert_int_eq(x.called, 0);
}
END_TEST

/* ---- forward.c: the file name reaches the upstream ---- */

#define FWD_FILE "ADT 2026 \xc3\xa9t\xc3\xa9.hl7"
#define FWD_HDR	 "X-File-Name: ADT%202026%20%C3%A9t%C3%A9.hl7"
#define FWD_SHA	 "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

/* One integration "lab" posting to the sink, over HTTP/1.1 (no nginx). */
struct fwd_env {
	struct client c;
	struct cfg cfg;
	struct cfg_integration integ;
	char db[PATH_LEN];
	struct spool *spool;
	struct commit *commit;
	struct forward *fwd;
	int staged, staged_err;
};

static void fwd_env_init(struct fwd_env *e, const struct sink *k)
{
	memset(e, 0, sizeof(*e));
	client_init(&e->c, "127.0.0.1", k->port);
	snprintf(e->db, sizeof(e->db), "%s/spool.db", k->dir);
	e->integ.name = "lab";
	e->integ.max_in_flight = 4;
	e->integ.upstream = (struct cfg_upstream){
	    .url = e->c.url, .ca_file = e->c.ca, .timeout_ms = 5000, .http = CFG_HTTP_1_1};
	e->cfg.retry = (struct cfg_retry){.initial_ms = 1000, .max_ms = 60000};
	e->cfg.integrations = &e->integ;
	e->cfg.nintegrations = 1;
}

/* The spool and the commit, and (forward) the forwarder: it loads what the
 * spool holds at once. */
static void fwd_env_open(struct fwd_env *e, int forward)
{
	ck_assert_int_eq(spool_open(e->db, &e->spool), 0);
	ck_assert_int_eq(commit_new(g_base, e->spool, 86400000ull, &e->commit), 0);
	if (forward)
		ck_assert_int_eq(forward_new(g_base, &e->cfg, e->spool, e->commit, g_u, &e->fwd),
				 0);
}

static void fwd_env_close(struct fwd_env *e)
{
	upstream_free(g_u); /* first: no request completes afterwards */
	g_u = NULL;
	forward_free(e->fwd);
	commit_drain(e->commit);
	commit_free(e->commit);
	spool_close(e->spool);
}

/* Committed: handed to the forwarder from memory, as bridge.c does. */
static void fwd_staged(void *arg, int err, int64_t id, const struct spool_new *m)
{
	struct fwd_env *e = arg;

	e->staged++;
	if (err) {
		e->staged_err = err;
		return;
	}
	if (e->fwd)
		ck_assert_int_eq(forward_enqueue(e->fwd, 0, id, m, NULL, NULL), 0);
}

static void fwd_stage_file(struct fwd_env *e, int64_t *fid)
{
	static const char *const bodies[] = {"MSH|^~\\&|A|B|||||ADT^A01|F1|P|2.5\r",
					     "MSH|^~\\&|A|B|||||ADT^A01|F2|P|2.5\r"};
	struct spool_new m[2];
	struct spool_file f = {
	    .route = "lab", .name = FWD_FILE, .size = 64, .sha256 = FWD_SHA, .received_ms = 1};

	for (int i = 0; i < 2; i++)
		m[i] = (struct spool_new){.integration = "lab",
					  .sender = "sftp:203.0.113.80",
					  .content_type = "x-application/hl7-v2+er7",
					  .control_id = i ? "F2" : "F1",
					  .idem_key = i ? "lab-file-2" : "lab-file-1",
					  .lane = "f:A",
					  .received_ms = 1,
					  .body = bodies[i],
					  .len = strlen(bodies[i]),
					  .file_name = FWD_FILE};
	ck_assert_int_eq(commit_stage_file(e->commit, m, 2, &f, fwd_staged, e, fid), 0);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
}

/* Runs the loop until the file's rows are all delivered (the forwarder's
 * marks are read from the same handle, staged or committed). */
static void fwd_wait_delivered(struct fwd_env *e, int64_t fid, size_t n)
{
	struct timeval tick = {0, 10000};
	struct event *t = event_new(g_base, -1, EV_PERSIST, on_tick, NULL);
	struct spool_file_progress p = {0};

	ck_assert_ptr_nonnull(t);
	evtimer_add(t, &tick);
	for (int i = 0; i < RUN_MS / 10 && p.delivered < n; i++) {
		event_base_loop(g_base, EVLOOP_ONCE);
		ck_assert_int_eq(spool_file_progress(e->spool, fid, &p), 0);
	}
	event_free(t);
	ck_assert_uint_eq(p.delivered, n);
	ck_assert_uint_eq(p.queued + p.dead, 0);
}

static void fwd_check_sink(const struct sink *k, int n)
{
	ck_assert_int_eq(count_lines(k, "requests.log"), n);
	for (int i = 1; i <= n; i++) {
		size_t len;
		char *hdrs = sink_file(k, "headers", i, &len);

		ck_assert_msg(header_has(hdrs, FWD_HDR), "request %d: %s", i, hdrs);
		ck_assert_msg(header_has(hdrs, "X-Forwarded-For: sftp:203.0.113.80"), "%s", hdrs);
		free(hdrs);
	}
}

/* From memory: the body copy the commit callback hands over keeps the name. */
START_TEST(test_forward_file_name_memory)
{
	struct sink *k = sink_start("server", NULL);
	struct fwd_env e;
	int64_t fid = 0;

	fwd_env_init(&e, k);
	fwd_env_open(&e, 1);
	fwd_stage_file(&e, &fid);
	fwd_wait_delivered(&e, fid, 2);
	ck_assert_int_eq(e.staged, 2);
	ck_assert_int_eq(e.staged_err, 0);
	fwd_check_sink(k, 2);
	fwd_env_close(&e);
}
END_TEST

/* From the spool: rows committed by one life are sent by the next, with
 * the name read from the row. */
START_TEST(test_forward_file_name_spool)
{
	struct sink *k = sink_start("server", NULL);
	struct fwd_env e;
	int64_t fid = 0;

	fwd_env_init(&e, k);
	fwd_env_open(&e, 0); /* no forwarder: committed only */
	fwd_stage_file(&e, &fid);
	commit_drain(e.commit);
	ck_assert_int_eq(e.staged, 2);
	ck_assert_int_eq(e.staged_err, 0);
	commit_free(e.commit);
	spool_close(e.spool);
	ck_assert_int_eq(count_lines(k, "requests.log"), 0); /* nothing sent yet */

	fwd_env_open(&e, 1); /* the restart */
	fwd_wait_delivered(&e, fid, 2);
	fwd_check_sink(k, 2);
	fwd_env_close(&e);
}
END_TEST

static void sequential(struct client *c, int n, int want_new_first)
{
	struct res x = {0};
	int i;

	for (i = 0; i < n; i++) {
		x.called = 0;
		post_and_wait(&c->rq, &x);
		ck_assert_msg(x.error == 0, "request %d: %s", i, x.errmsg);
		ck_assert_int_eq(x.status, 200);
		ck_assert_int_eq(x.new_connection, i == 0 && want_new_first);
	}
	free(x.body);
}

START_TEST(test_keepalive)
{
	struct sink *k = sink_start("server", NULL);
	enum { CONCURRENT = 50 };
	struct res xs[CONCURRENT];
	struct upstream_stats st;
	struct client c;
	int i, count = 0, fresh = 0;

	client_init(&c, "127.0.0.1", k->port);
	sequential(&c, 10, 1);
	upstream_get_stats(g_u, &st);
	ck_assert_uint_eq(st.connections, 1);
	ck_assert_int_eq(count_lines(k, "connections.log"), 1);

	memset(xs, 0, sizeof(xs));
	for (i = 0; i < CONCURRENT; i++)
		ck_assert_int_eq(post(&c.rq, &xs[i], &count), 0);
	upstream_get_stats(g_u, &st);
	ck_assert_uint_eq(st.in_flight, CONCURRENT);
	run_until(&count, CONCURRENT, RUN_MS);
	ck_assert_int_eq(count, CONCURRENT);
	for (i = 0; i < CONCURRENT; i++) {
		ck_assert_int_eq(xs[i].called, 1);
		ck_assert_int_eq(xs[i].error, 0);
		ck_assert_int_eq(xs[i].status, 200);
		fresh += xs[i].new_connection;
		free(xs[i].body);
	}
	/* HTTP/1.1: parallel requests need parallel connections, but never more
	 * than the per-host cap, so each one carries several requests */
	upstream_get_stats(g_u, &st);
	ck_assert_uint_eq(st.connections, 1 + (unsigned)fresh);
	ck_assert_uint_le(st.connections, UPSTREAM_MAX_HOST_CONNS);
	ck_assert_int_eq(count_lines(k, "connections.log"), (int)st.connections);

	/* the pool survives the burst: no new handshake afterwards */
	sequential(&c, 10, 0);
	upstream_get_stats(g_u, &st);
	ck_assert_uint_eq(st.requests, 70);
	ck_assert_uint_eq(st.in_flight, 0);
	ck_assert_int_eq(count_lines(k, "requests.log"), 70);
	ck_assert_int_eq(count_lines(k, "connections.log"), (int)st.connections);
}
END_TEST

struct tls_case {
	const char *name;
	const char *cert;
	const char *host;
	const char *args[6];
	int error;
	const char *version; /* negotiated, when error == 0 */
};

static const struct tls_case tls_cases[] = {
    {"policy, EC cert", "server", "127.0.0.1", {NULL}, 0, "TLSv1.3"},
    {"policy, DNS name", "server", "localhost", {NULL}, 0, "TLSv1.3"},
    {"TLS 1.3 only", "server", "127.0.0.1", {"--tls", "1.3"}, 0, "TLSv1.3"},
    {"TLS 1.2 only, EC", "server", "127.0.0.1", {"--tls", "1.2"}, 0, "TLSv1.2"},
    {"TLS 1.2 only, RSA", "server-rsa", "127.0.0.1", {"--tls", "1.2"}, 0, "TLSv1.2"},
    {"TLS 1.1", "server-rsa", "127.0.0.1", {"--tls", "1.1"}, -EPROTO, NULL},
    {"TLS 1.2, CBC only",
     "server-rsa",
     "127.0.0.1",
     {"--tls", "1.2", "--ciphers", "ECDHE-RSA-AES128-SHA256:ECDHE-RSA-AES128-SHA"},
     -EPROTO,
     NULL},
    {"TLS 1.2, no ECDHE",
     "server-rsa",
     "127.0.0.1",
     {"--tls", "1.2", "--ciphers", "AES128-GCM-SHA256:AES256-GCM-SHA384"},
     -EPROTO,
     NULL},
    {"TLS 1.2, AEAD outside the list",
     "server-rsa",
     "127.0.0.1",
     {"--tls", "1.2", "--ciphers", "ECDHE-RSA-CHACHA20-POLY1305"},
     -EPROTO,
     NULL},
    {"server cert from another CA", "other-server", "127.0.0.1", {NULL}, -EPROTO, NULL},
    {"cert name does not match", "wrong", "localhost", {NULL}, -EPROTO, NULL},
};

START_TEST(test_tls_policy)
{
	const struct tls_case *tc = &tls_cases[_i];
	struct sink *k = sink_start(tc->cert, tc->args);
	struct client c;
	struct res x = {0};
	char line[LINE_LEN], *f[FIELDS_MAX];

	client_init(&c, tc->host, k->port);
	post_and_wait(&c.rq, &x);
	ck_assert_msg(x.error == tc->error, "%s: error %d, want %d (%s)", tc->name, x.error,
		      tc->error, x.errmsg);
	if (tc->error) {
		ck_assert_msg(x.errmsg[0] != '\0', "%s: no error text", tc->name);
		/* the handshake itself may complete (host names are checked
		 * after it), but not one byte of a request may follow */
		ck_assert_int_eq(count_lines(k, "requests.log"), 0);
	} else {
		ck_assert_int_eq(x.status, 200);
		ck_assert_int_eq(count_lines(k, "requests.log"), 1);
		ck_assert_int_eq(log_fields(k, "connections.log", 1, line, f), 4);
		ck_assert_str_eq(f[2], tc->version);
		ck_assert_msg(
		    strstr(tc->version[6] == '3' ? UPSTREAM_TLS13_SUITES : UPSTREAM_TLS12_CIPHERS,
			   f[3]) != NULL,
		    "%s: cipher %s outside the policy", tc->name, f[3]);
	}
	free(x.body);
}
END_TEST

START_TEST(test_mtls)
{
	char ca[PATH_LEN], crt[PATH_LEN], key[PATH_LEN];
	const char *args[] = {"--client-ca", ca, NULL};
	struct sink *k;
	struct client c;
	struct res x = {0};

	cert(ca, "ca.pem");
	cert(crt, "client.pem");
	cert(key, "client.key");
	k = sink_start("server", args);
	client_init(&c, "127.0.0.1", k->port);
	post_and_wait(&c.rq, &x);
	/* TLS 1.3 refuses a missing client certificate after the handshake:
	 * curl sees the alert (-EPROTO) or, if the close wins, a reset (-EIO) */
	ck_assert_msg(x.error == -EPROTO || x.error == -EIO, "without a client certificate: %d %s",
		      x.error, x.errmsg);
	ck_assert_int_eq(count_lines(k, "requests.log"), 0);

	c.t.client_cert = crt;
	c.t.client_key = key;
	x.called = 0;
	post_and_wait(&c.rq, &x);
	ck_assert_msg(x.error == 0, "error %d: %s", x.error, x.errmsg);
	ck_assert_int_eq(x.status, 200);
	ck_assert_int_eq(count_lines(k, "requests.log"), 1);
	free(x.body);
}
END_TEST

/* A bound socket that never listens: connecting to it is refused. */
static int closed_port(int *port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int fd = socket(AF_INET, SOCK_STREAM, 0), i;

	ck_assert_int_ge(fd, 0);
	for (i = 0; i < PORT_SPAN; i++) {
		*port = PORT_BASE + (int)((unsigned)(getpid() + i * 13) % PORT_SPAN);
		sa.sin_port = htons((uint16_t)*port);
		if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
			return fd;
	}
	ck_abort_msg("no free port");
	return -1;
}

/* HTTP/2: concurrent requests from a cold start share one connection
 * (CURLPIPE_MULTIPLEX, and PIPEWAIT so they wait for it instead of racing). */
START_TEST(test_http2_multiplex)
{
	enum { CONCURRENT = 50 };
	struct res xs[CONCURRENT];
	struct upstream_stats st;
	struct sink *k;
	struct client c;
	char path[PATH_LEN], *log, *p, first[32];
	size_t n;
	int i, count = 0, lines = 0;

	k = nginx_start(NGINX_PROXIED);
	client_init(&c, "127.0.0.1", k->port);
	memset(xs, 0, sizeof(xs));
	for (i = 0; i < CONCURRENT; i++)
		ck_assert_int_eq(post(&c.rq, &xs[i], &count), 0);
	run_until(&count, CONCURRENT, RUN_MS);
	ck_assert_int_eq(count, CONCURRENT);
	for (i = 0; i < CONCURRENT; i++) {
		ck_assert_msg(xs[i].error == 0, "%d: %s", i, xs[i].errmsg);
		ck_assert_int_eq(xs[i].status, 200);
		ck_assert_str_eq(xs[i].body, "ok\n");
		free(xs[i].body);
	}
	upstream_get_stats(g_u, &st);
	ck_assert_uint_eq(st.connections, 1);

	snprintf(path, sizeof(path), "%s/access.log", k->dir);
	log = slurp(path, &n);
	ck_assert_int_eq(sscanf(log, "%31s", first), 1);
	for (p = log; *p; p = strchr(p, '\n') + 1, lines++) {
		ck_assert_msg(strncmp(p, first, strlen(first)) == 0 && p[strlen(first)] == ' ',
			      "two connections:\n%s", log);
		ck_assert_msg(strstr(p, " HTTP/2.0 TLSv1.3") ==
				  strchr(p, ' ') + strcspn(strchr(p, ' ') + 1, " ") + 1,
			      "not HTTP/2 over TLS 1.3:\n%s", log);
	}
	ck_assert_int_eq(lines, CONCURRENT);
	free(log);
}
END_TEST

/* nginx logs a request after answering it: waits up to a second for n lines. */
static void nginx_wait_log(const struct sink *k, int n)
{
	int i;

	for (i = 0; i < 100 && count_lines(k, "access.log") < n; i++)
		usleep(10000);
	ck_assert_int_eq(count_lines(k, "access.log"), n);
}

/* Counts access.log lines of k holding word (space-separated). */
static int nginx_count(const struct sink *k, const char *word)
{
	char path[PATH_LEN], *log, *p, *tok, *save;
	size_t n;
	int hits = 0;

	snprintf(path, sizeof(path), "%s/access.log", k->dir);
	log = slurp(path, &n);
	for (p = strtok_r(log, "\n", &save); p; p = strtok_r(NULL, "\n", &save)) {
		char *save2, *line = p;

		while ((tok = strtok_r(line, " ", &save2))) {
			line = NULL;
			if (strcmp(tok, word) == 0) {
				hits++;
				break;
			}
		}
	}
	free(log);
	return hits;
}

/* The target's HTTP version reaches curl: nginx offers h2 over ALPN. */
START_TEST(test_http_version)
{
	enum { REQS = 3 };
	static const enum upstream_http versions[] = {UPSTREAM_HTTP_2, UPSTREAM_HTTP_1_1};
	static const char *const want[] = {"HTTP/2.0", "HTTP/1.1"};
	struct sink *k;
	struct client c;

	k = nginx_start(NGINX_PROXIED);
	client_init(&c, "127.0.0.1", k->port);
	c.t.http = versions[_i];
	sequential(&c, REQS, 1);
	nginx_wait_log(k, REQS);
	ck_assert_int_eq(nginx_count(k, want[_i]), REQS);
}
END_TEST

/* A server closing after each response: every request is a handshake, and
 * all but the first resume the TLS session the handle kept. */
START_TEST(test_resumed)
{
	enum { REQS = 5 };
	struct upstream_stats st;
	struct res x = {0};
	struct sink *k;
	struct client c;
	int i;

	k = nginx_start(NGINX_CLOSE);
	client_init(&c, "127.0.0.1", k->port);
	c.t.http = UPSTREAM_HTTP_1_1;
	for (i = 0; i < REQS; i++) {
		x.called = 0;
		post_and_wait(&c.rq, &x);
		ck_assert_msg(x.error == 0 && x.status == 200, "%d: %s", i, x.errmsg);
		ck_assert_int_eq(x.new_connection, 1);
	}
	free(x.body);
	upstream_get_stats(g_u, &st);
	ck_assert_uint_eq(st.connections, REQS);
	ck_assert_uint_eq(st.resumed, REQS - 1);
	nginx_wait_log(k, REQS);
	ck_assert_int_eq(nginx_count(k, "r"), REQS - 1);
}
END_TEST

/* `return 200` over HTTP/2: nginx answers before reading the body, then
 * resets the upload with RST_STREAM(NO_ERROR). The answer is the answer;
 * the only errors allowed are the ones libcurl 7.88 lost, each counted.
 * Whether curl is still sending when the reset comes is timing: here it
 * often is not (and then curl needs no help); t_upstream_nginx.sh (a)
 * drives the bridge into it on nearly every message. */
START_TEST(test_early_answer)
{
	enum { REQS = 40, BODY = 2000 }; /* larger bodies race the answer less */
	struct res xs[REQS];
	struct upstream_stats st;
	struct sink *k;
	struct client c;
	char *big = malloc(BODY);
	int i, count = 0, errors = 0;

	ck_assert_ptr_nonnull(big);
	memset(big, 'x', BODY);
	k = nginx_start(NGINX_EARLY);
	client_init(&c, "127.0.0.1", k->port);
	c.rq.body = big;
	c.rq.len = BODY;
	memset(xs, 0, sizeof(xs));
	/* 8 in flight, topped up as answers come: a burst would go out
	 * whole before the first answer and meet no reset */
	for (i = 0; i < REQS; i++) {
		ck_assert_int_eq(post(&c.rq, &xs[i], &count), 0);
		if (i >= 8)
			run_until(&count, i - 7, RUN_MS);
	}
	run_until(&count, REQS, RUN_MS);
	ck_assert_int_eq(count, REQS);
	for (i = 0; i < REQS; i++) {
		if (xs[i].error) {
			ck_assert_msg(xs[i].error == -EIO &&
					  strstr(xs[i].errmsg, "lost the answer"),
				      "%d: %d %s", i, xs[i].error, xs[i].errmsg);
			errors++;
		} else {
			ck_assert_int_eq(xs[i].status, 200);
			ck_assert_str_eq(xs[i].body, "early\n");
		}
		free(xs[i].body);
	}
	free(big);
	upstream_get_stats(g_u, &st);
	ck_assert_uint_eq(st.early_lost, (uint64_t)errors);
	ck_assert_uint_le(st.early_answers, REQS - errors);
	ck_assert_int_le(errors, REQS / 4);
	nginx_wait_log(k, REQS);
}
END_TEST

START_TEST(test_refused)
{
	struct client c;
	struct res x = {0};
	int port, fd = closed_port(&port);

	client_init(&c, "127.0.0.1", port);
	post_and_wait(&c.rq, &x);
	close(fd);
	ck_assert_msg(x.error == -ECONNREFUSED, "error %d: %s", x.error, x.errmsg);
	ck_assert_int_eq(x.status, 0);
	free(x.body);
}
END_TEST

/* A host name that resolves into a tunnel's remote_ts is never connected
 * to: the configuration can only refuse IP literals. */
START_TEST(test_in_tunnel)
{
	struct sink *k = sink_start("server", NULL);
	struct cfg_cidr lo = {0}, other = {0}, bad = {.family = AF_UNIX};
	struct upstream_stats st;
	struct client c;
	struct res x = {0}, y = {0};

	ck_assert_int_eq(cfg_parse_cidr("127.0.0.0/8", &lo), 0);
	ck_assert_int_eq(upstream_forbid(g_u, &bad, "x"), -EINVAL);
	ck_assert_int_eq(upstream_forbid(g_u, &lo, "hospital-a"), 0);
	client_init(&c, "localhost", k->port);
	post_and_wait(&c.rq, &x);
	ck_assert_msg(x.error == -EACCES, "error %d: %s", x.error, x.errmsg);
	ck_assert_int_eq(x.status, 0);
	ck_assert_msg(strstr(x.errmsg, "127.0.0.1 is inside tunnel hospital-a's remote_ts "
				       "127.0.0.0/8") != NULL,
		      "%s", x.errmsg);
	ck_assert_int_eq(count_lines(k, "requests.log"), 0);
	ck_assert_int_eq(count_lines(k, "connections.log"), 0);
	upstream_get_stats(g_u, &st);
	ck_assert_uint_ge(st.in_tunnel, 1);
	free(x.body);

	/* A range elsewhere stops nothing. */
	upstream_free(g_u);
	ck_assert_int_eq(upstream_new(g_base, &g_u), 0);
	ck_assert_int_eq(cfg_parse_cidr("203.0.113.64/26", &other), 0);
	ck_assert_int_eq(upstream_forbid(g_u, &other, "hospital-a"), 0);
	post_and_wait(&c.rq, &y);
	ck_assert_msg(y.error == 0 && y.status == 200, "error %d: %s", y.error, y.errmsg);
	ck_assert_int_eq(count_lines(k, "requests.log"), 1);
	upstream_get_stats(g_u, &st);
	ck_assert_uint_eq(st.in_tunnel, 0);
	free(y.body);
}
END_TEST

START_TEST(test_timeout)
{
	const char *args[] = {"--delay-ms", "3000", NULL};
	struct sink *k = sink_start("server", args);
	struct client c;
	struct res x = {0};
	struct timespec a, b;
	long ms;

	client_init(&c, "127.0.0.1", k->port);
	c.t.timeout_ms = 300;
	clock_gettime(CLOCK_MONOTONIC, &a);
	post_and_wait(&c.rq, &x);
	clock_gettime(CLOCK_MONOTONIC, &b);
	ms = (b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000;
	ck_assert_msg(x.error == -ETIMEDOUT, "error %d: %s", x.error, x.errmsg);
	ck_assert_int_ge(ms, 250);
	ck_assert_int_lt(ms, 2500);
	free(x.body);
}
END_TEST

START_TEST(test_retry_after)
{
	const char *args[] = {"--status", "503", "--retry-after", "7", NULL};
	struct sink *k = sink_start("server", args);
	struct client c;
	struct res x = {0};
	char line[LINE_LEN], *f[FIELDS_MAX];

	client_init(&c, "127.0.0.1", k->port);
	post_and_wait(&c.rq, &x);
	ck_assert_int_eq(x.error, 0);
	ck_assert_int_eq(x.status, 503);
	ck_assert_int_eq(x.retry_after_ms, 7000);
	ck_assert_int_eq(log_fields(k, "requests.log", 1, line, f), 12);
	ck_assert_str_eq(f[11], "503");
	free(x.body);
}
END_TEST

START_TEST(test_fail_first)
{
	const char *args[] = {"--fail-first", "1", "--retry-after", "2", NULL};
	struct sink *k = sink_start("server", args);
	struct client c;
	struct res x = {0};

	client_init(&c, "127.0.0.1", k->port);
	post_and_wait(&c.rq, &x);
	ck_assert_int_eq(x.status, 503);
	ck_assert_int_eq(x.retry_after_ms, 2000);
	x.called = 0;
	post_and_wait(&c.rq, &x);
	ck_assert_int_eq(x.status, 200);
	ck_assert_int_eq(x.retry_after_ms, -1); /* not carried over from the 503 */
	ck_assert_int_eq(x.new_connection, 0);
	free(x.body);
}
END_TEST

START_TEST(test_ack_relayed)
{
	const char *args[] = {"--ack", NULL};
	struct sink *k = sink_start("server", args);
	struct client c;
	struct res x = {0};
	const char *tail = "|ACK|ACK1|P|2.5.1\rMSA|AA|CTRL-0001\r";

	client_init(&c, "127.0.0.1", k->port);
	post_and_wait(&c.rq, &x);
	ck_assert_int_eq(x.error, 0);
	ck_assert_int_eq(x.status, 200);
	ck_assert_str_eq(x.ctype, "x-application/hl7-v2+er7");
	ck_assert_int_eq(x.truncated, 0);
	ck_assert_uint_eq(x.len, strlen(x.body));
	ck_assert_msg(strncmp(x.body, "MSH|^~\\&|CLOUD|CLOUD|||", 23) == 0, "%s", x.body);
	ck_assert_msg(x.len > strlen(tail) && strcmp(x.body + x.len - strlen(tail), tail) == 0,
		      "%s", x.body);
	free(x.body);
}
END_TEST

START_TEST(test_invalid_requests)
{
	static char big[UPSTREAM_HEADER_LINE_MAX + 1];
	struct client c;
	struct res x = {0};
	int count = 0;

	memset(big, 'a', sizeof(big) - 1);
	client_init(&c, "127.0.0.1", PORT_BASE);
	c.t.url = "http://127.0.0.1:18000/messages";
	ck_assert_int_eq(post(&c.rq, &x, &count), -EINVAL);
	client_init(&c, "127.0.0.1", PORT_BASE);
	c.t.ca_file = NULL;
	ck_assert_int_eq(post(&c.rq, &x, &count), -EINVAL);
	client_init(&c, "127.0.0.1", PORT_BASE);
	c.rq.idempotency_key = "k\r\nX-Injected: 1";
	ck_assert_int_eq(post(&c.rq, &x, &count), -EINVAL);
	client_init(&c, "127.0.0.1", PORT_BASE);
	c.t.bearer_token = big;
	ck_assert_int_eq(post(&c.rq, &x, &count), -EINVAL);
	client_init(&c, "127.0.0.1", PORT_BASE);
	c.rq.body = NULL;
	ck_assert_int_eq(post(&c.rq, &x, &count), -EINVAL);
	ck_assert_int_eq(upstream_post(g_u, &c.rq, NULL, NULL), -EINVAL);
	run_until(&count, 1, 200);
	ck_assert_int_eq(count, 0);
	ck_assert_int_eq(x.called, 0);
}
END_TEST

START_TEST(test_free_with_requests_in_flight)
{
	const char *args[] = {"--delay-ms", "1000", NULL};
	struct sink *k = sink_start("server", args);
	struct client c;
	struct res x[3] = {{0}};
	int i, count = 0;

	client_init(&c, "127.0.0.1", k->port);
	for (i = 0; i < 3; i++)
		ck_assert_int_eq(post(&c.rq, &x[i], &count), 0);
	run_until(&count, 1, 300);
	ck_assert_int_eq(count_lines(k, "requests.log"), 3); /* they were on the wire */
	upstream_free(g_u);
	g_u = NULL;
	run_until(&count, 1, 1500);
	ck_assert_int_eq(count, 0);
}
END_TEST

static void free_in_callback(void *arg, const struct upstream_response *r)
{
	on_done(arg, r);
	upstream_free(g_u);
	g_u = NULL;
}

START_TEST(test_free_in_callback)
{
	struct sink *k = sink_start("server", NULL);
	struct client c;
	struct res x[4] = {{0}};
	int i, count = 0;

	client_init(&c, "127.0.0.1", k->port);
	for (i = 0; i < 4; i++) {
		x[i].count = &count;
		ck_assert_int_eq(upstream_post(g_u, &c.rq, free_in_callback, &x[i]), 0);
	}
	run_until(&count, 4, 2000);
	ck_assert_int_eq(count, 1);
	for (i = 0; i < 4; i++)
		free(x[i].body);
}
END_TEST

struct ra_case {
	const char *v;
	int64_t now;
	int err;
	int64_t ms;
};

static const struct ra_case ra_cases[] = {
    {"7", 0, 0, 7000},
    {"0", 0, 0, 0},
    {"120", 0, 0, 120000},
    {"99999999999999999999", 0, 0, UPSTREAM_RETRY_AFTER_MAX_MS},
    {"Sun, 06 Nov 1994 08:49:37 GMT", 784111777 - 30, 0, 30000},
    {"Sunday, 06-Nov-94 08:49:37 GMT", 784111777 - 2, 0, 2000}, /* RFC 850 form */
    {"Sun Nov  6 08:49:37 1994", 784111777 - 1, 0, 1000},	/* asctime form */
    {"Sun, 06 Nov 1994 08:49:37 GMT", 784111777 + 60, 0, 0},	/* past: now */
    {"Sun, 06 Nov 1994 08:49:37 GMT", 0, 0, UPSTREAM_RETRY_AFTER_MAX_MS},
    {"", 0, -EINVAL, 0},
    {"soon", 0, -EINVAL, 0},
};

START_TEST(test_parse_retry_after)
{
	const struct ra_case *tc = &ra_cases[_i];
	int64_t ms = -42;

	ck_assert_int_eq(upstream_parse_retry_after(tc->v, tc->now, &ms), tc->err);
	if (!tc->err)
		ck_assert_msg(ms == tc->ms, "'%s': %lld, want %lld", tc->v, (long long)ms,
			      (long long)tc->ms);
}
END_TEST

/* What curl left of failed transfers, and what they are. */
struct early_case {
	const char *name;
	struct upstream_answer a;
	enum upstream_early want;
};

#define H2S CURLE_HTTP2_STREAM
static const struct early_case early_cases[] = {
    {"nginx return 200: empty body", {H2S, 0, 1, 200, 1, 0, 0}, UPSTREAM_EARLY_COMPLETE},
    {"body complete", {H2S, 0, 1, 200, 1, 6, 6}, UPSTREAM_EARLY_COMPLETE},
    {"a 503 is reported as the 503", {H2S, 0, 1, 503, 1, 4, 4}, UPSTREAM_EARLY_COMPLETE},
    {"body short of Content-Length", {H2S, 0, 1, 200, 1, 6, 5}, UPSTREAM_EARLY_NONE},
    {"body past Content-Length", {H2S, 0, 1, 200, 1, 6, 7}, UPSTREAM_EARLY_NONE},
    {"no Content-Length", {H2S, 0, 1, 200, 1, -1, 3}, UPSTREAM_EARLY_NONE},
    {"conflicting Content-Length", {H2S, 0, 1, 200, 1, -2, 0}, UPSTREAM_EARLY_NONE},
    {"headers not finished", {H2S, 0, 1, 200, 0, 0, 0}, UPSTREAM_EARLY_NONE},
    {"only a 1xx", {H2S, 0, 1, 100, 0, -1, 0}, UPSTREAM_EARLY_NONE},
    {"reset with an error code", {H2S, 1, 1, 200, 1, 0, 0}, UPSTREAM_EARLY_NONE},
    {"not HTTP/2", {H2S, 0, 0, 200, 1, 0, 0}, UPSTREAM_EARLY_NONE},
    {"another error", {CURLE_RECV_ERROR, 0, 1, 200, 1, 0, 0}, UPSTREAM_EARLY_NONE},
    {"partial file", {CURLE_PARTIAL_FILE, 0, 1, 200, 1, 6, 3}, UPSTREAM_EARLY_NONE},
    {"answer lost by curl", {H2S, 0, 0, 0, 0, -1, 0}, UPSTREAM_EARLY_LOST},
    {"no answer, curl said why", {H2S, 1, 0, 0, 0, -1, 0}, UPSTREAM_EARLY_NONE},
};

START_TEST(test_answered_early)
{
	const struct early_case *tc = &early_cases[_i];

	ck_assert_msg(upstream_answered_early(&tc->a) == tc->want, "%s: %d, want %d", tc->name,
		      upstream_answered_early(&tc->a), tc->want);
}
END_TEST

struct token_case {
	const char *content; /* NULL: no file; "/": a directory */
	size_t len;	     /* of content; 0 with a long fill below */
	size_t fill;	     /* write this many 'x' instead */
	int err;
	const char *want;
};

static const struct token_case token_cases[] = {
    {"abc.def-123", 11, 0, 0, "abc.def-123"},
    {"abc \t\r\n\n", 8, 0, 0, "abc"},
    {"", 0, 0, -EINVAL, NULL},
    {" \n", 2, 0, -EINVAL, NULL},
    {"a\nb\n", 4, 0, -EINVAL, NULL},
    {"a\0b", 3, 0, -EINVAL, NULL},
    {NULL, 0, UPSTREAM_TOKEN_MAX, 0, NULL},
    {NULL, 0, UPSTREAM_TOKEN_MAX + 1, -EMSGSIZE, NULL},
    {NULL, 0, 0, -ENOENT, NULL},
    {"/", 0, 0, -EINVAL, NULL},
};

START_TEST(test_read_token)
{
	const struct token_case *tc = &token_cases[_i];
	char path[PATH_LEN + 32], *tok = (char *)"unset";
	FILE *f;
	size_t i;

	snprintf(path, sizeof(path), "%s/token.%d.%d", g_tmp, (int)getpid(), _i);
	if (tc->content && strcmp(tc->content, "/") == 0) {
		ck_assert_int_eq(mkdir(path, 0700), 0);
	} else if (tc->content || tc->fill) {
		ck_assert_ptr_nonnull(f = fopen(path, "wb"));
		if (tc->content)
			ck_assert_uint_eq(fwrite(tc->content, 1, tc->len, f), tc->len);
		for (i = 0; i < tc->fill; i++)
			fputc('x', f);
		fclose(f);
	}
	ck_assert_int_eq(upstream_read_token(path, &tok), tc->err);
	if (tc->err) {
		ck_assert_ptr_null(tok);
	} else if (tc->want) {
		ck_assert_str_eq(tok, tc->want);
	} else {
		ck_assert_uint_eq(strlen(tok), tc->fill);
	}
	free(tok);
}
END_TEST

/* ---- main ---- */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void make_certs(void)
{
	const char *mk = getenv("MKCERTS") ? getenv("MKCERTS") : "tests/tools/mkcerts.sh";
	char cmd[2 * PATH_LEN];

	snprintf(g_tmp, sizeof(g_tmp), "/tmp/test_upstream.XXXXXX");
	if (!mkdtemp(g_tmp)) {
		perror("mkdtemp");
		exit(EXIT_FAILURE);
	}
	snprintf(g_certs, sizeof(g_certs), "%s/certs", g_tmp);
	snprintf(cmd, sizeof(cmd), "sh '%s' '%s'", mk, g_certs);
	if (system(cmd) != 0) {
		fprintf(stderr, "test_upstream: %s failed\n", cmd);
		exit(EXIT_FAILURE);
	}
}

static Suite *upstream_suite(void)
{
	Suite *s = suite_create("upstream");
	TCase *net = tcase_create("https");
	TCase *pure = tcase_create("parsing");

	tcase_add_checked_fixture(net, setup, teardown);
	tcase_set_timeout(net, 30);
	tcase_add_test(net, test_post_exact);
	tcase_add_test(net, test_post_large_no_expect);
	tcase_add_loop_test(net, test_response_limit, 0,
			    sizeof(size_cases) / sizeof(size_cases[0]));
	tcase_add_test(net, test_no_bearer_no_optional_headers);
	tcase_add_loop_test(net, test_file_name_header, 0,
			    sizeof(fname_cases) / sizeof(fname_cases[0]));
	tcase_add_test(net, test_file_name_too_long);
	tcase_add_test(net, test_forward_file_name_memory);
	tcase_add_test(net, test_forward_file_name_spool);
	tcase_add_test(net, test_keepalive);
	tcase_add_loop_test(net, test_tls_policy, 0, sizeof(tls_cases) / sizeof(tls_cases[0]));
	tcase_add_test(net, test_mtls);
	tcase_add_test(net, test_http2_multiplex);
	tcase_add_loop_test(net, test_http_version, 0, 2);
	tcase_add_test(net, test_resumed);
	tcase_add_test(net, test_early_answer);
	tcase_add_test(net, test_refused);
	tcase_add_test(net, test_in_tunnel);
	tcase_add_test(net, test_timeout);
	tcase_add_test(net, test_retry_after);
	tcase_add_test(net, test_fail_first);
	tcase_add_test(net, test_ack_relayed);
	tcase_add_test(net, test_invalid_requests);
	tcase_add_test(net, test_free_with_requests_in_flight);
	tcase_add_test(net, test_free_in_callback);
	tcase_add_loop_test(pure, test_parse_retry_after, 0,
			    sizeof(ra_cases) / sizeof(ra_cases[0]));
	tcase_add_loop_test(pure, test_read_token, 0, sizeof(token_cases) / sizeof(token_cases[0]));
	tcase_add_loop_test(pure, test_answered_early, 0,
			    sizeof(early_cases) / sizeof(early_cases[0]));
	suite_add_tcase(s, net);
	suite_add_tcase(s, pure);
	return s;
}

/* HTTPS_SINK, else BUILD/bin/https-sink next to our BUILD/tests/, so an
 * ASan build (BUILD=build/asan) tests with its own sink. */
static const char *find_sink(const char *argv0)
{
	static char path[PATH_LEN];
	const char *slash = strrchr(argv0, '/');

	if (getenv("HTTPS_SINK"))
		return getenv("HTTPS_SINK");
	if (slash && slash - argv0 < DIR_LEN) {
		snprintf(path, sizeof(path), "%.*s/../bin/https-sink", (int)(slash - argv0), argv0);
		if (access(path, X_OK) == 0)
			return path;
	}
	return "build/bin/https-sink";
}

int main(int argc, char **argv)
{
	SRunner *sr;
	int failed;

	(void)argc;
	g_sink_bin = find_sink(argv[0]);
	if (access(g_sink_bin, X_OK) != 0) {
		fprintf(stderr, "test_upstream: %s not found (set HTTPS_SINK)\n", g_sink_bin);
		return EXIT_FAILURE;
	}
	signal(SIGPIPE, SIG_IGN);
	make_certs();
	atexit(stop_all_sinks); /* runs in a fork that exit()s normally */
	sr = srunner_create(upstream_suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	if (failed)
		fprintf(stderr, "test_upstream: sink logs kept in %s\n", g_tmp);
	else
		nftw(g_tmp, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
