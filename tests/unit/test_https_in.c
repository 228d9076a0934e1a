/*
 * https_in.c on 127.0.0.1 (an ephemeral port) against libcurl easy handles.
 *
 * Each test runs in its own Check fork: the listener and its loop run in a
 * thread of that fork, the test's curl requests in the main thread. The
 * hooks are fakes that keep messages in an array, under a mutex (they run
 * on the loop's thread, the assertions on the main one). Every request the
 * listener answers was seen by the hooks before its answer was sent, so the
 * counters are final once curl returns.
 *
 * Certificates: tests/tools/mkcerts.sh (MKCERTS overrides the path), plus a
 * client certificate from its unrelated CA made here with openssl.
 */
#include <check.h>
#include <curl/curl.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "mllp-bridge/https_in.h"
#include "mllp-bridge/log.h"
#include "mllp-bridge/translate.h"

#define NELEMS(a)    (sizeof(a) / sizeof((a)[0]))
#define DIR_LEN	     128
#define PATH_LEN     512
#define BODY_MAX     8192
#define MSGS_MAX     16
#define MAX_BODY     4096 /* https.max_body */
#define RIS_FRAME    512  /* destination ris's max_frame: below max_body */
#define ACK_DELAY_MS 100

#define TOK_LAB "tok-lab-0123456789abcdef"
#define TOK_ALL "tok-all-0123456789abcdef"
#define TOK_RIS "tok-ris-0123456789abcdef"

#define HL7_OK                                                                                     \
	"MSH|^~\\&|CLOUD|ACME|LIS|HOSP|20261130120000||ORM^O01|CTRL-1|P|2.5.1\r"                   \
	"PID|1||12345^^^HOSP^MR||DOE^JANE\r"
#define HL7_NO_MSH10 "MSH|^~\\&|CLOUD|ACME|LIS|HOSP|20261130120000||ORM^O01||P|2.5.1\r"
#define HL7_ACK                                                                                    \
	"MSH|^~\\&|LIS|HOSP|CLOUD|ACME|20261130120001||ACK^O01^ACK|A1|P|2.5.1\rMSA|AA|CTRL-1\r"
/* a PatientAdmin document (issue 12); DOE and 12345 must never reach the log */
#define JSON_DOC(demographics)                                                                     \
	"{\"Meta\":{\"DataModel\":\"PatientAdmin\",\"EventType\":\"NewPatient\"},"                 \
	"\"Patient\":{\"Identifiers\":[{\"ID\":\"12345\",\"IDType\":\"MR\"}],"                     \
	"\"Demographics\":{" demographics "}}}"
#define JSON_OK	       JSON_DOC("\"FirstName\":\"JANE\",\"LastName\":\"DOE\"")
#define CTYPE_JSON     "application/json"
#define RIS_SENDER     "EDGE-RIS" /* ris: hl7 version 2.3, latin1, this MSH-3 */
#define CONTROL_ID_LEN 20
#define JSON_MIN       "{\"Meta\":{\"DataModel\":\"PatientAdmin\",\"EventType\":\"NewPatient\"}}"
#define TINY_FRAME     100 /* destination tiny: JSON_MIN fits, its HL7 (MSH EVN PID PV1) does not */

static char g_tmp[DIR_LEN];
static const char *g_server = "server"; /* the listener's certificate: server or server-rsa */
static char g_certs[DIR_LEN + 16];

/* ---- fake hooks ---- */

struct fake_msg {
	int64_t id;
	char dest[CFG_NAME_MAX + 1];
	char key[HTTPS_IN_KEY_MAX + 1];
	char control_id[256];
	char client[128];
	char ctype[64];
	char file_name[HTTPS_IN_FILE_NAME_MAX + 1];
	char body[BODY_MAX]; /* the first BODY_MAX - 1 bytes, NUL-terminated */
	size_t len;
};

static struct {
	pthread_mutex_t mu;
	int submits; /* submit() calls */
	struct fake_msg msgs[MSGS_MAX];
	int nmsgs; /* messages stored */
	int waits, cancels;
	int ack_ready; /* wait(): answer with HL7_ACK after ACK_DELAY_MS */
	int hold;      /* submit(): keep done_cb in held/held_arg, call nothing */
	https_in_done_cb held;
	void *held_arg;
} F = {.mu = PTHREAD_MUTEX_INITIALIZER};

struct later {
	struct event *ev;
	https_in_done_cb done;
	https_in_wait_cb wcb;
	void *arg;
	int64_t id;
	int existed;
	int timeout;
};

static struct event_base *g_base;
static struct https_in *g_h;
static struct cfg g_cfg;
static struct cfg_destination g_dests[4];
static struct cfg_sftp
    g_sftp; /* destination files: a push channel (only its presence counts here) */
static pthread_t g_thread;
static int g_stop[2] = {-1, -1};
static struct event *g_stop_ev;
static int g_port;

static void on_later(evutil_socket_t fd, short what, void *arg)
{
	struct later *l = arg;

	(void)fd;
	(void)what;
	if (l->done)
		l->done(l->arg, 0, l->id, l->existed);
	else if (l->timeout)
		l->wcb(l->arg, -ETIMEDOUT, NULL, 0);
	else
		l->wcb(l->arg, 0, HL7_ACK, strlen(HL7_ACK));
	event_free(l->ev);
	free(l);
}

static struct later *later(uint64_t ms)
{
	struct later *l = calloc(1, sizeof(*l));
	struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};

	ck_assert_ptr_nonnull(l);
	l->ev = evtimer_new(g_base, on_later, l);
	ck_assert_ptr_nonnull(l->ev);
	ck_assert_int_eq(evtimer_add(l->ev, &tv), 0);
	return l;
}

static int fake_submit(void *arg, const struct https_in_msg *hm, https_in_done_cb done,
		       void *done_arg)
{
	const char *dest = hm->dest, *key = hm->idem_key;
	struct fake_msg *m = NULL;
	struct later *l;
	int existed = 0;

	(void)arg;
	ck_assert_ptr_nonnull(hm->content_type);
	pthread_mutex_lock(&F.mu);
	F.submits++;
	for (int i = 0; key && i < F.nmsgs; i++)
		if (strcmp(F.msgs[i].dest, dest) == 0 && strcmp(F.msgs[i].key, key) == 0)
			m = &F.msgs[i], existed = 1;
	if (!m) {
		ck_assert_int_lt(F.nmsgs, MSGS_MAX);
		m = &F.msgs[F.nmsgs++];
		m->id = 100 + F.nmsgs;
		snprintf(m->dest, sizeof(m->dest), "%s", dest);
		snprintf(m->key, sizeof(m->key), "%s", key ? key : "");
		snprintf(m->control_id, sizeof(m->control_id), "%s",
			 hm->control_id ? hm->control_id : "");
		snprintf(m->client, sizeof(m->client), "%s", hm->client);
		snprintf(m->ctype, sizeof(m->ctype), "%s", hm->content_type);
		snprintf(m->file_name, sizeof(m->file_name), "%s",
			 hm->file_name ? hm->file_name : "");
		snprintf(m->body, sizeof(m->body), "%.*s", (int)hm->len, (const char *)hm->body);
		m->len = hm->len;
	}
	if (F.hold) {
		F.held = done;
		F.held_arg = done_arg;
		pthread_mutex_unlock(&F.mu);
		return 0;
	}
	pthread_mutex_unlock(&F.mu);
	l = later(0);
	l->done = done;
	l->arg = done_arg;
	l->id = m->id;
	l->existed = existed;
	return 0;
}

static int fake_lookup(void *arg, int64_t id, struct https_in_view *v)
{
	(void)arg;
	for (int i = 0; i < F.nmsgs; i++)
		if (F.msgs[i].id == id) {
			v->destination = F.msgs[i].dest;
			v->state = F.ack_ready ? "acked" : "queued";
			v->attempts = F.ack_ready ? 1 : 0;
			v->last_error = NULL;
			v->ack = F.ack_ready ? HL7_ACK : NULL;
			v->ack_len = F.ack_ready ? strlen(HL7_ACK) : 0;
			v->received_ms = 1764504000123LL; /* 2025-11-30T12:00:00.123Z */
			return 0;
		}
	return -ENOENT;
}

static int fake_wait(void *arg, int64_t id, uint64_t timeout_ms, https_in_wait_cb cb, void *cb_arg,
		     void **handle)
{
	struct later *l = later(F.ack_ready ? ACK_DELAY_MS : timeout_ms);

	(void)arg;
	(void)id;
	pthread_mutex_lock(&F.mu);
	F.waits++;
	pthread_mutex_unlock(&F.mu);
	l->wcb = cb;
	l->arg = cb_arg;
	l->timeout = !F.ack_ready;
	*handle = l;
	return 0;
}

static void fake_cancel(void *arg, void *handle)
{
	struct later *l = handle;

	(void)arg;
	F.cancels++;
	event_free(l->ev);
	free(l);
}

static const struct https_in_hooks hooks = {
    .submit = fake_submit, .lookup = fake_lookup, .wait = fake_wait, .cancel = fake_cancel};

static int submits(void)
{
	int n;

	pthread_mutex_lock(&F.mu);
	n = F.submits;
	pthread_mutex_unlock(&F.mu);
	return n;
}

/* ---- the listener in a thread ---- */

static void cert(char *out, const char *name)
{
	snprintf(out, PATH_LEN, "%s/%s", g_certs, name);
}

static char *dup_cert(const char *name)
{
	char p[PATH_LEN];

	cert(p, name);
	return strdup(p);
}

static void on_stop(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	event_base_loopbreak(arg);
}

static void *loop_main(void *arg)
{
	(void)arg;
	event_base_dispatch(g_base);
	return NULL;
}

static void write_tokens(const char *path)
{
	FILE *f;
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	ck_assert_int_ge(fd, 0);
	ck_assert_ptr_nonnull(f = fdopen(fd, "w"));
	fprintf(f, "# test tokens\n\n" TOK_LAB " lab\n  " TOK_ALL " *\r\n" TOK_RIS " ris,lab\n");
	ck_assert_int_eq(fclose(f), 0);
}

enum auth_mode { AUTH_TOKENS, AUTH_MTLS, AUTH_BOTH };

/* g_cfg for a mode: destinations lab, ris and tiny, the listener on 127.0.0.1:0. */
static void make_cfg(enum auth_mode mode)
{
	static char tokens[PATH_LEN];
	struct cfg_https *hs = &g_cfg.https;
	char path[64];

	memset(&g_cfg, 0, sizeof(g_cfg));
	memset(g_dests, 0, sizeof(g_dests));
	g_dests[0].name = "lab";
	g_dests[0].max_frame = 1u << 20;
	cfg_hl7_out_defaults(&g_dests[0].hl7);
	g_dests[1].name = "ris";
	g_dests[1].max_frame = RIS_FRAME;
	cfg_hl7_out_defaults(&g_dests[1].hl7);
	snprintf(g_dests[1].hl7.version, sizeof(g_dests[1].hl7.version), "2.3");
	snprintf(g_dests[1].hl7.sending_app, sizeof(g_dests[1].hl7.sending_app), RIS_SENDER);
	g_dests[1].hl7.latin1 = 1;
	g_dests[2].name = "tiny";
	g_dests[2].max_frame = TINY_FRAME;
	cfg_hl7_out_defaults(&g_dests[2].hl7);
	g_dests[3].name = "files";
	g_dests[3].max_frame = 1u << 20;
	g_dests[3].sftp = &g_sftp;
	cfg_hl7_out_defaults(&g_dests[3].hl7);
	g_cfg.destinations = g_dests;
	g_cfg.ndestinations = NELEMS(g_dests);
	hs->listen_text = "127.0.0.1:0";
	{ /* cfg_parse_hostport() refuses port 0 */
		struct sockaddr_in *sin = (struct sockaddr_in *)&hs->listen;

		sin->sin_family = AF_INET;
		sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		hs->listen_len = sizeof(*sin);
	}
	snprintf(path, sizeof(path), "%s.pem", g_server);
	hs->cert = dup_cert(path);
	snprintf(path, sizeof(path), "%s.key", g_server);
	hs->key = dup_cert(path);
	hs->max_body = MAX_BODY;
	if (mode != AUTH_TOKENS)
		hs->client_ca = dup_cert("ca.pem");
	if (mode != AUTH_MTLS) {
		snprintf(tokens, sizeof(tokens), "%s/tokens", g_tmp);
		write_tokens(tokens);
		hs->tokens_file = tokens;
	}
}

static void start(enum auth_mode mode)
{
	make_cfg(mode);
	g_base = event_base_new();
	ck_assert_ptr_nonnull(g_base);
	ck_assert_int_eq(https_in_new(g_base, &g_cfg, &hooks, &g_h), 0);
	ck_assert_ptr_nonnull(g_h);
	g_port = https_in_port(g_h);
	ck_assert_int_gt(g_port, 0);
	ck_assert_int_eq(pipe2(g_stop, O_CLOEXEC), 0);
	g_stop_ev = event_new(g_base, g_stop[0], EV_READ, on_stop, g_base);
	ck_assert_ptr_nonnull(g_stop_ev);
	ck_assert_int_eq(event_add(g_stop_ev, NULL), 0);
	ck_assert_int_eq(pthread_create(&g_thread, NULL, loop_main, NULL), 0);
}

static void stop(void)
{
	ck_assert_int_eq(write(g_stop[1], "x", 1), 1);
	ck_assert_int_eq(pthread_join(g_thread, NULL), 0);
	https_in_free(g_h);
	g_h = NULL;
	event_free(g_stop_ev);
	close(g_stop[0]);
	close(g_stop[1]);
	event_base_free(g_base); /* timers still pending (a cancelled test's) are freed with it */
	g_base = NULL;
}

/* ---- the client ---- */

struct resp {
	CURLcode rc;
	long code;
	char body[BODY_MAX];
	size_t len;
	char location[256];
	char ctype[128];
	char err[CURL_ERROR_SIZE];
};

struct req {
	const char *method; /* NULL: POST when body, else GET */
	const char *path;
	const char *ctype;
	const char *body;
	size_t len; /* 0: strlen(body) */
	const char *token;
	const char *extra[4]; /* more header lines */
	const char *client;   /* client certificate base name, e.g. "client" */
	long sslversion;      /* 0: TLS 1.2..1.3 */
	const char *ciphers, *tls13;
	long timeout_ms; /* 0: 20 s */
};

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
	struct resp *r = arg;
	size_t len = size * n, room = sizeof(r->body) - 1 - r->len;

	if (len > room)
		len = room;
	memcpy(r->body + r->len, p, len);
	r->len += len;
	r->body[r->len] = '\0';
	return size * n;
}

static void header_value(char *out, size_t cap, const char *line, size_t len, const char *name)
{
	size_t n = strlen(name);

	if (len > n && strncasecmp(line, name, n) == 0) {
		const char *v = line + n;

		len -= n;
		while (len && *v == ' ')
			v++, len--;
		while (len && (v[len - 1] == '\r' || v[len - 1] == '\n'))
			len--;
		snprintf(out, cap, "%.*s", (int)len, v);
	}
}

static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
	struct resp *r = arg;

	header_value(r->location, sizeof(r->location), p, size * n, "Location:");
	header_value(r->ctype, sizeof(r->ctype), p, size * n, "Content-Type:");
	return size * n;
}

static void perform(const struct req *q, struct resp *r)
{
	CURL *e = curl_easy_init();
	struct curl_slist *hs = NULL;
	char url[PATH_LEN], line[512], path[PATH_LEN];

	ck_assert_ptr_nonnull(e);
	memset(r, 0, sizeof(*r));
	snprintf(url, sizeof(url), "https://127.0.0.1:%d%s", g_port, q->path);
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->err);
	cert(path, "ca.pem");
	curl_easy_setopt(e, CURLOPT_CAINFO, path);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, q->timeout_ms ? q->timeout_ms : 20000L);
	curl_easy_setopt(e, CURLOPT_SSLVERSION,
			 q->sslversion
			     ? q->sslversion
			     : (long)(CURL_SSLVERSION_TLSv1_2 | CURL_SSLVERSION_MAX_TLSv1_3));
	if (q->ciphers)
		curl_easy_setopt(e, CURLOPT_SSL_CIPHER_LIST, q->ciphers);
	if (q->tls13)
		curl_easy_setopt(e, CURLOPT_TLS13_CIPHERS, q->tls13);
	if (q->client) {
		snprintf(line, sizeof(line), "%s/%s.pem", g_certs, q->client);
		curl_easy_setopt(e, CURLOPT_SSLCERT, line);
		snprintf(line, sizeof(line), "%s/%s.key", g_certs, q->client);
		curl_easy_setopt(e, CURLOPT_SSLKEY, line);
	}
	if (q->body) {
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, q->body);
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE,
				 (long)(q->len ? q->len : strlen(q->body)));
	}
	if (q->method)
		curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, q->method);
	if (q->ctype) {
		snprintf(line, sizeof(line), "Content-Type: %s", q->ctype);
		hs = curl_slist_append(hs, line);
	}
	if (q->token) {
		snprintf(line, sizeof(line), "Authorization: Bearer %s", q->token);
		hs = curl_slist_append(hs, line);
	}
	hs = curl_slist_append(hs, "Expect:");
	for (size_t i = 0; i < NELEMS(q->extra) && q->extra[i]; i++)
		hs = curl_slist_append(hs, q->extra[i]);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, hs);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
	r->rc = curl_easy_perform(e);
	curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &r->code);
	curl_slist_free_all(hs);
	curl_easy_cleanup(e);
}

static void post_hl7(const char *token, const char *dest, const char *key, struct resp *r)
{
	char path[128], keyh[128];
	struct req q = {.ctype = "x-application/hl7-v2+er7", .body = HL7_OK, .token = token};

	snprintf(path, sizeof(path), "/v1/destinations/%s/messages", dest);
	q.path = path;
	if (key) {
		snprintf(keyh, sizeof(keyh), "Idempotency-Key: %s", key);
		q.extra[0] = keyh;
	}
	perform(&q, r);
}

/* ---- the log ---- */

static char g_log[PATH_LEN];

/* stderr (the log) into a file of this fork's own. */
static void capture_log(void)
{
	int fd;

	snprintf(g_log, sizeof(g_log), "%s/log.%d", g_tmp, (int)getpid());
	fd = open(g_log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	ck_assert_int_ge(fd, 0);
	fflush(stderr);
	ck_assert_int_eq(dup2(fd, STDERR_FILENO), STDERR_FILENO);
	close(fd);
}

static char *read_log(void)
{
	static char buf[65536];
	FILE *f;
	size_t n;

	fflush(stderr);
	ck_assert_ptr_nonnull(f = fopen(g_log, "r"));
	n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

/* ---- tests ---- */

START_TEST(test_post_and_get)
{
	struct resp r;
	char path[256];

	start(AUTH_TOKENS);
	post_hl7(TOK_LAB, "lab", NULL, &r);
	ck_assert_int_eq(r.rc, CURLE_OK);
	ck_assert_int_eq(r.code, 202);
	ck_assert_str_eq(r.location, "/v1/messages/101");
	ck_assert_str_eq(r.ctype, "application/json");
	ck_assert_str_eq(r.body, "{\"id\":101,\"state\":\"queued\"}\n");
	ck_assert_int_eq(submits(), 1);
	ck_assert_str_eq(F.msgs[0].dest, "lab");
	ck_assert_str_eq(F.msgs[0].control_id, "CTRL-1");
	ck_assert_str_eq(F.msgs[0].client, "token:line3");
	ck_assert_uint_eq(F.msgs[0].len, strlen(HL7_OK));

	F.ack_ready = 1;
	snprintf(path, sizeof(path), "%s", r.location);
	perform(&(struct req){.path = path, .token = TOK_LAB}, &r);
	ck_assert_int_eq(r.code, 200);
	ck_assert_str_eq(r.ctype, "application/json");
	ck_assert_str_eq(r.body,
			 "{\"id\":101,\"destination\":\"lab\",\"state\":\"acked\","
			 "\"attempts\":1,\"last_error\":null,\"ack\":\"MSH|^~\\\\&|LIS|HOSP|"
			 "CLOUD|ACME|20261130120001||ACK^O01^ACK|A1|P|2.5.1\\rMSA|AA|CTRL-1"
			 "\\r\",\"received\":\"2025-11-30T12:00:00.123Z\"}\n");
	/* unknown id, malformed ids */
	perform(&(struct req){.path = "/v1/messages/999", .token = TOK_LAB}, &r);
	ck_assert_int_eq(r.code, 404);
	perform(&(struct req){.path = "/v1/messages/0101", .token = TOK_LAB}, &r);
	ck_assert_int_eq(r.code, 404);
	perform(&(struct req){.path = "/v1/messages/99999999999999999999", .token = TOK_LAB}, &r);
	ck_assert_int_eq(r.code, 404);
	/* a token of another destination may not read it */
	perform(&(struct req){.path = "/v1/messages/101", .token = TOK_RIS}, &r);
	ck_assert_int_eq(r.code, 200); /* TOK_RIS has ris,lab */
	stop();
}
END_TEST

START_TEST(test_get_other_destination)
{
	struct resp r;

	start(AUTH_TOKENS);
	post_hl7(TOK_ALL, "ris", NULL, &r);
	ck_assert_int_eq(r.code, 202);
	ck_assert_str_eq(r.location, "/v1/messages/101");
	perform(&(struct req){.path = "/v1/messages/101", .token = TOK_LAB}, &r);
	ck_assert_int_eq(r.code, 403);
	ck_assert_str_eq(r.ctype, "text/plain; charset=utf-8");
	ck_assert_ptr_nonnull(strstr(r.body, "may not read"));
	perform(&(struct req){.path = "/v1/messages/101"}, &r);
	ck_assert_int_eq(r.code, 401);
	stop();
}
END_TEST

/* Refused requests: each answered with its status and a text/plain reason,
 * and none reaches submit. */
struct refusal {
	const char *what;
	struct req q;
	long code;
	const char *text; /* in the body; NULL: not checked (libevent's own page) */
};

static char big[MAX_BODY + 100];
static char ris_big[RIS_FRAME + 100];
static char huge[2u << 20]; /* read and dropped by the listener, never kept */

static const struct refusal refusals[] = {
    {"no token",
     {.path = "/v1/destinations/lab/messages", .ctype = "x-application/hl7-v2+er7", .body = HL7_OK},
     401,
     "bearer token is required"},
    {"wrong token",
     {.path = "/v1/destinations/lab/messages",
      .ctype = "x-application/hl7-v2+er7",
      .body = HL7_OK,
      .token = "tok-lab-0123456789abcdeX"},
     401,
     "invalid bearer token"},
    {"not bearer",
     {.path = "/v1/destinations/lab/messages",
      .ctype = "x-application/hl7-v2+er7",
      .body = HL7_OK,
      .extra = {"Authorization: Basic dXNlcjpwYXNz"}},
     401,
     "not a Bearer token"},
    {"token for another destination",
     {.path = "/v1/destinations/ris/messages",
      .ctype = "x-application/hl7-v2+er7",
      .body = HL7_OK,
      .token = TOK_LAB},
     403,
     "may not send to destination ris"},
    {"limited token, unknown destination",
     {.path = "/v1/destinations/nope/messages",
      .ctype = "x-application/hl7-v2+er7",
      .body = HL7_OK,
      .token = TOK_LAB},
     403,
     "may not send"},
    {"unknown destination",
     {.path = "/v1/destinations/nope/messages",
      .ctype = "x-application/hl7-v2+er7",
      .body = HL7_OK,
      .token = TOK_ALL},
     404,
     "no such destination: nope"},
    {"wrong content type",
     {.path = "/v1/destinations/lab/messages",
      .ctype = "text/plain",
      .body = HL7_OK,
      .token = TOK_ALL},
     415,
     "Content-Type must be"},
    {"no content type",
     {.path = "/v1/destinations/lab/messages",
      .body = HL7_OK,
      .token = TOK_ALL,
      .extra = {"Content-Type:"}},
     415,
     "Content-Type must be"},
    {"Content-Length over max_body",
     {.path = "/v1/destinations/lab/messages",
      .ctype = "x-application/hl7-v2+er7",
      .body = big,
      .token = TOK_ALL},
     413,
     NULL},
    {"2 MiB over max_body, no Expect",
     {.path = "/v1/destinations/lab/messages",
      .ctype = "x-application/hl7-v2+er7",
      .body = huge,
      .len = sizeof(huge),
      .token = TOK_ALL},
     413,
     NULL},
    {"chunked body over max_body",
     {.path = "/v1/destinations/lab/messages",
      .ctype = "x-application/hl7-v2+er7",
      .body = big,
      .token = TOK_ALL,
      .extra = {"Transfer-Encoding: chunked"}},
     413,
     NULL},
    {"over the destination's max_frame",
     {.path = "/v1/destinations/ris/messages",
      .ctype = "x-application/hl7-v2+er7",
      .body = ris_big,
      .token = TOK_ALL},
     413,
     "over the limit of 512"},
    {"no MSH",
     {.path = "/v1/destinations/lab/messages",
      .ctype = "application/hl7-v2",
      .body = "PID|1||12345\r",
      .token = TOK_ALL},
     422,
     "no MSH segment"},
    {"no MSH-10",
     {.path = "/v1/destinations/lab/messages",
      .ctype = "x-application/hl7-v2+er7; charset=utf-8",
      .body = HL7_NO_MSH10,
      .token = TOK_ALL},
     422,
     "MSH-10"},
    {"empty body",
     {.path = "/v1/destinations/lab/messages",
      .ctype = "x-application/hl7-v2+er7",
      .body = "",
      .token = TOK_ALL},
     422,
     "no MSH segment"},
    {"X12 that is not X12",
     {.path = "/v1/destinations/lab/messages",
      .ctype = "application/edi-x12",
      .body = HL7_OK,
      .token = TOK_ALL},
     422,
     "not X12"},
    {"XML that is not XML",
     {.path = "/v1/destinations/lab/messages",
      .ctype = "text/xml",
      .body = HL7_OK,
      .token = TOK_ALL},
     422,
     "not XML"},
    {"bad Idempotency-Key",
     {.path = "/v1/destinations/lab/messages",
      .ctype = "x-application/hl7-v2+er7",
      .body = HL7_OK,
      .token = TOK_ALL,
      .extra = {"Idempotency-Key: has space"}},
     400,
     "Idempotency-Key"},
    {"GET on the messages route",
     {.path = "/v1/destinations/lab/messages", .token = TOK_ALL},
     405,
     "only POST"},
    {"unknown path", {.path = "/v2/whatever", .token = TOK_ALL}, 404, "not found"},
    /* JSON (issue 12): refused before anything is stored, 422 "$.PATH: reason" */
    {"JSON: an impossible date",
     {.path = "/v1/destinations/lab/messages",
      .ctype = CTYPE_JSON,
      .body = JSON_DOC("\"LastName\":\"DOE\",\"DOB\":\"2026-02-30\""),
      .token = TOK_ALL},
     422,
     "$.Patient.Demographics.DOB: impossible day of month\n"},
    {"JSON: VT in a name",
     {.path = "/v1/destinations/lab/messages",
      .ctype = "application/json; charset=utf-8",
      .body = JSON_DOC("\"LastName\":\"DOE\\u000b\""),
      .token = TOK_ALL},
     422,
     "$.Patient.Demographics.LastName: control character U+000B"},
    {"JSON: not an object",
     {.path = "/v1/destinations/lab/messages", .ctype = CTYPE_JSON, .body = "[]", .token = TOK_ALL},
     422,
     "$: expected a JSON object\n"},
    {"JSON: empty",
     {.path = "/v1/destinations/lab/messages", .ctype = CTYPE_JSON, .body = "", .token = TOK_ALL},
     422,
     "$: invalid JSON at line 1 column 0: '[' or '{' expected near end of file\n"},
    {"JSON: a character outside Latin-1 for a latin1 destination",
     {.path = "/v1/destinations/ris/messages",
      .ctype = CTYPE_JSON,
      .body = JSON_DOC("\"LastName\":\"DO\\u0141\""),
      .token = TOK_ALL},
     422,
     "$.Patient.Demographics.LastName: character U+0141 cannot be represented in ISO 8859/1"},
    {"JSON translated over the destination's max_frame",
     {.path = "/v1/destinations/tiny/messages",
      .ctype = CTYPE_JSON,
      .body = JSON_MIN,
      .token = TOK_ALL},
     413,
     "the translated message of "},
    {"translate: another query parameter",
     {.path = "/v1/translate?dest=lab", .ctype = CTYPE_JSON, .body = JSON_OK, .token = TOK_ALL},
     400,
     "the only query parameter is destination=NAME"},
    {"translate: two query parameters",
     {.path = "/v1/translate?destination=lab&x=1",
      .ctype = CTYPE_JSON,
      .body = JSON_OK,
      .token = TOK_ALL},
     400,
     "the only query parameter is destination=NAME"},
    {"translate: a destination the token may not use",
     {.path = "/v1/translate?destination=ris",
      .ctype = CTYPE_JSON,
      .body = JSON_OK,
      .token = TOK_LAB},
     403,
     "may not send to destination ris"},
    {"translate: no such destination",
     {.path = "/v1/translate?destination=nope",
      .ctype = CTYPE_JSON,
      .body = JSON_OK,
      .token = TOK_ALL},
     404,
     "no such destination: nope"},
    {"translate: HL7 is not JSON",
     {.path = "/v1/translate",
      .ctype = "x-application/hl7-v2+er7",
      .body = HL7_OK,
      .token = TOK_ALL},
     415,
     "Content-Type must be application/json"},
    {"translate: a refused document",
     {.path = "/v1/translate",
      .ctype = CTYPE_JSON,
      .body = JSON_DOC("\"LastName\":\"DOE\",\"DOB\":\"2026-02-30\""),
      .token = TOK_ALL},
     422,
     "$.Patient.Demographics.DOB: impossible day of month\n"},
    {"translate: no token",
     {.path = "/v1/translate", .ctype = CTYPE_JSON, .body = JSON_OK},
     401,
     "bearer token is required"},
    {"translate: GET", {.path = "/v1/translate", .token = TOK_ALL}, 405, "only POST"},
};

START_TEST(test_refused)
{
	const struct refusal *t = &refusals[_i];
	struct resp r;

	memset(big, 'x', sizeof(big) - 1);
	memcpy(big, HL7_OK, strlen(HL7_OK));
	memset(huge, 'x', sizeof(huge));
	memset(ris_big, 'x', sizeof(ris_big) - 1);
	memcpy(ris_big, HL7_OK, strlen(HL7_OK));
	capture_log();
	start(AUTH_TOKENS);
	/* alive first: a good request is accepted */
	post_hl7(TOK_ALL, "lab", NULL, &r);
	ck_assert_int_eq(r.code, 202);
	ck_assert_int_eq(submits(), 1);

	perform(&t->q, &r);
	ck_assert_msg(r.rc == CURLE_OK, "%s: curl: %s", t->what, curl_easy_strerror(r.rc));
	ck_assert_msg(r.code == t->code, "%s: %ld, expected %ld (%s)", t->what, r.code, t->code,
		      r.body);
	if (t->text) {
		ck_assert_msg(strstr(r.body, t->text), "%s: body \"%s\"", t->what, r.body);
		ck_assert_str_eq(r.ctype, "text/plain; charset=utf-8");
	}
	ck_assert_msg(submits() == 1, "%s: submitted", t->what);
	stop();
	if (t->text) { /* logged with the peer and the reason, never the content */
		const char *log = read_log();

		ck_assert_msg(strstr(log, "event=https_refused peer=127.0.0.1:"), "%s: %s", t->what,
			      log);
		ck_assert_ptr_null(strstr(log, "DOE"));
		ck_assert_ptr_null(strstr(log, "12345"));
		ck_assert_ptr_null(strstr(log, "CTRL-1"));
		ck_assert_ptr_null(strstr(log, "tok-"));
	}
}
END_TEST

/* Refusals are logged at most LOG_RATE_BURST at once per address, not per
 * connection: a client cannot fill the disk with them. */
START_TEST(test_refusals_rate_limited)
{
	const char *log, *p;
	struct resp r;
	int lines = 0;

	capture_log();
	start(AUTH_TOKENS);
	for (int i = 0; i < 2 * LOG_RATE_BURST; i++) {
		perform(&(struct req){.path = "/v1/messages/1"}, &r);
		ck_assert_int_eq(r.code, 401); /* every one is answered */
	}
	stop();
	log = read_log();
	for (p = log; (p = strstr(p, "event=https_refused")); p++)
		lines++;
	ck_assert_int_ge(lines, 1);
	ck_assert_int_le(lines, LOG_RATE_BURST + 1);
}
END_TEST

/* Out of descriptors: accept() fails with EMFILE; the listener rests
 * HTTPS_IN_ACCEPT_PAUSE_MS between tries (a few log lines, no spinning)
 * and serves again once descriptors are free. */
START_TEST(test_accept_out_of_fds)
{
	static int fds[65536];
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	struct rlimit old, low;
	const char *log, *p;
	struct resp r;
	int n = 0, s, lines = 0;

	capture_log();
	start(AUTH_TOKENS);
	sin.sin_port = htons((uint16_t)g_port);
	ck_assert_int_ge(s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), 0);
	ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &old), 0);
	low = old;
	low.rlim_cur = (rlim_t)s + 16;
	ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &low), 0);
	while (n < (int)NELEMS(fds) && (fds[n] = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0)
		n++;
	ck_assert_int_eq(errno, EMFILE);
	ck_assert_int_eq(connect(s, (struct sockaddr *)&sin, sizeof(sin)), 0); /* the backlog */
	usleep(350 * 1000);
	while (n > 0)
		close(fds[--n]);
	ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &old), 0);
	usleep(2 * HTTPS_IN_ACCEPT_PAUSE_MS * 1000);
	post_hl7(TOK_ALL, "lab", NULL, &r);
	ck_assert_int_eq(r.code, 202);
	close(s);
	stop();
	log = read_log();
	for (p = log; (p = strstr(p, "event=https_accept_paused")); p++)
		lines++;
	ck_assert_msg(lines >= 1 && lines <= 6, "%d pauses: %s", lines, log);
}
END_TEST

/* ---- JSON (issue 12) ---- */

static void post_json(const char *path, const char *body, struct resp *r)
{
	struct req q = {.path = path, .ctype = CTYPE_JSON, .body = body, .token = TOK_ALL};

	perform(&q, r);
}

/* MSH-n (n >= 2) of the message msg starts with: after the (n-1)-th '|',
 * since MSH-1 is the first '|' itself; "" when MSH has fewer fields. */
static void msh_field(const char *msg, int n, char *out, size_t cap)
{
	const char *p = msg;

	for (int i = 1; i < n && p; i++)
		if ((p = strchr(p, '|')))
			p++;
	if (!p || n < 2 || p > msg + strcspn(msg, "\r")) {
		snprintf(out, cap, "%s", "");
		return;
	}
	snprintf(out, cap, "%.*s", (int)strcspn(p, "|\r"), p);
}

static int is_control_id(const char *s)
{
	if (strlen(s) != CONTROL_ID_LEN)
		return 0;
	for (; *s; s++)
		if (!strchr("0123456789ABCDEF", *s))
			return 0;
	return 1;
}

/* What translate_json gives for json with h's values, the control ID and
 * MSH-7 of msg (the listener chose them): the body must be exactly this. */
static void assert_translation(const char *msg, size_t len, const char *json,
			       const struct cfg_hl7_out *h)
{
	char cid[64], now[64], *want = NULL;
	size_t want_len = 0;
	struct xl_error e;
	struct xl_opts o = {.version = h->version,
			    .sending_app = h->sending_app,
			    .sending_facility = h->sending_fac,
			    .receiving_app = h->receiving_app,
			    .receiving_facility = h->receiving_fac,
			    .latin1 = h->latin1,
			    .control_id = cid,
			    .now = now};

	msh_field(msg, 10, cid, sizeof(cid));
	msh_field(msg, 7, now, sizeof(now));
	ck_assert_msg(is_control_id(cid), "MSH-10 '%s' is not 20 hex digits", cid);
	ck_assert_int_eq(translate_json(json, strlen(json), &o, &want, &want_len, &e), 0);
	ck_assert_uint_eq(len, want_len);
	ck_assert_msg(memcmp(msg, want, len) == 0, "got %.*s\nwant %s", (int)len, msg, want);
	free(want);
}

static void assert_stats(uint64_t translated, uint64_t untranslated)
{
	struct https_in_stats st;

	https_in_stats(g_h, &st);
	ck_assert_uint_eq(st.translated, translated);
	ck_assert_uint_eq(st.untranslated, untranslated);
}

/* A JSON post reaches submit as HL7 v2: its content type, a control ID of
 * 20 hex digits that is the body's MSH-10, the destination's MSH values. */
START_TEST(test_json_post)
{
	char msh3[64], msh12[16], msh18[32];
	struct resp r;

	start(AUTH_TOKENS);
	post_json("/v1/destinations/lab/messages", JSON_OK, &r);
	ck_assert_int_eq(r.rc, CURLE_OK);
	ck_assert_msg(r.code == 202, "%ld %s", r.code, r.body);
	ck_assert_str_eq(r.location, "/v1/messages/101");
	ck_assert_int_eq(submits(), 1);
	ck_assert_str_eq(F.msgs[0].ctype, "x-application/hl7-v2+er7");
	ck_assert_msg(is_control_id(F.msgs[0].control_id), "control_id '%s'", F.msgs[0].control_id);
	ck_assert_uint_eq(F.msgs[0].len, strlen(F.msgs[0].body));
	assert_translation(F.msgs[0].body, F.msgs[0].len, JSON_OK, &g_dests[0].hl7);
	msh_field(F.msgs[0].body, 10, msh3, sizeof(msh3));
	ck_assert_str_eq(msh3, F.msgs[0].control_id);
	msh_field(F.msgs[0].body, 3, msh3, sizeof(msh3));
	ck_assert_str_eq(msh3, "MLLP-EDGE");
	ck_assert_ptr_nonnull(strstr(F.msgs[0].body, "\rPID|1||12345^^^MR||DOE^JANE"));

	/* ris: its own MSH-3, version and charset; another control ID */
	post_json("/v1/destinations/ris/messages", JSON_DOC("\"LastName\":\"M\u00fcller\""), &r);
	ck_assert_msg(r.code == 202, "%ld %s", r.code, r.body);
	ck_assert_int_eq(submits(), 2);
	assert_translation(F.msgs[1].body, F.msgs[1].len, JSON_DOC("\"LastName\":\"M\u00fcller\""),
			   &g_dests[1].hl7);
	msh_field(F.msgs[1].body, 3, msh3, sizeof(msh3));
	msh_field(F.msgs[1].body, 12, msh12, sizeof(msh12));
	msh_field(F.msgs[1].body, 18, msh18, sizeof(msh18));
	ck_assert_str_eq(msh3, RIS_SENDER);
	ck_assert_str_eq(msh12, "2.3");
	ck_assert_str_eq(msh18, "8859/1");
	ck_assert_ptr_nonnull(strstr(F.msgs[1].body, "|M\xfcller\r"));
	ck_assert_str_ne(F.msgs[1].control_id, F.msgs[0].control_id);
	assert_stats(2, 0);
	stop();
}
END_TEST

/* A JSON body is held to max_frame once translated, not as posted: the
 * HL7 is what the receiver gets. */
START_TEST(test_json_frame)
{
	char json[2048];
	struct resp r;
	int n = snprintf(json, sizeof(json), "%s%*s", JSON_OK, RIS_FRAME * 2, "");

	ck_assert_int_lt(n, (int)sizeof(json));
	start(AUTH_TOKENS);
	post_json("/v1/destinations/ris/messages", json, &r); /* 1,2xx bytes of JSON */
	ck_assert_msg(r.code == 202, "%ld %s", r.code, r.body);
	ck_assert_int_eq(submits(), 1);
	ck_assert_uint_le(F.msgs[0].len, RIS_FRAME);
	post_json("/v1/destinations/tiny/messages", JSON_OK, &r);
	ck_assert_int_eq(r.code, 413);
	ck_assert_ptr_nonnull(strstr(r.body, "the translated message of "));
	ck_assert_int_eq(submits(), 1);
	stop();
}
END_TEST

/* POST /v1/translate answers the HL7 and never calls submit. */
START_TEST(test_translate_route)
{
	char msh3[64];
	struct resp r;

	start(AUTH_TOKENS);
	post_json("/v1/translate", JSON_OK, &r);
	ck_assert_int_eq(r.rc, CURLE_OK);
	ck_assert_msg(r.code == 200, "%ld %s", r.code, r.body);
	ck_assert_str_eq(r.ctype, "x-application/hl7-v2+er7; charset=utf-8");
	ck_assert_str_eq(r.location, "");
	assert_translation(r.body, r.len, JSON_OK, &g_dests[0].hl7);

	post_json("/v1/translate?destination=ris", JSON_OK, &r);
	ck_assert_msg(r.code == 200, "%ld %s", r.code, r.body);
	ck_assert_str_eq(r.ctype, "x-application/hl7-v2+er7; charset=iso-8859-1");
	assert_translation(r.body, r.len, JSON_OK, &g_dests[1].hl7);
	msh_field(r.body, 3, msh3, sizeof(msh3));
	ck_assert_str_eq(msh3, RIS_SENDER);

	/* a token limited to lab may translate for lab */
	{
		struct req q = {.path = "/v1/translate?destination=lab",
				.ctype = CTYPE_JSON,
				.body = JSON_OK,
				.token = TOK_LAB};

		perform(&q, &r);
		ck_assert_msg(r.code == 200, "%ld %s", r.code, r.body);
	}
	ck_assert_int_eq(submits(), 0);
	assert_stats(3, 0);
	stop();
}
END_TEST

/* translated and untranslated count JSON bodies on both routes, and only
 * those the translator judged: not HL7 posts, not a 415 or 403. */
START_TEST(test_json_stats)
{
	struct resp r;
	struct https_in_stats st;

	start(AUTH_TOKENS);
	assert_stats(0, 0);
	post_hl7(TOK_ALL, "lab", NULL, &r);
	ck_assert_int_eq(r.code, 202);
	assert_stats(0, 0);
	post_json("/v1/destinations/lab/messages", JSON_OK, &r);
	ck_assert_int_eq(r.code, 202);
	assert_stats(1, 0);
	post_json("/v1/destinations/lab/messages", "{\"Meta\":", &r);
	ck_assert_int_eq(r.code, 422);
	assert_stats(1, 1);
	post_json("/v1/translate", JSON_OK, &r);
	ck_assert_int_eq(r.code, 200);
	assert_stats(2, 1);
	post_json("/v1/translate", "[1]", &r);
	ck_assert_int_eq(r.code, 422);
	assert_stats(2, 2);
	post_json("/v1/translate?destination=nope", JSON_OK, &r);
	ck_assert_int_eq(r.code, 404);
	assert_stats(2, 2);
	https_in_stats(g_h, &st);
	ck_assert_uint_eq(st.refused, 3); /* 422, 422, 404 */
	ck_assert_int_eq(submits(), 2);
	stop();
}
END_TEST

START_TEST(test_idempotency_key)
{
	struct resp r1, r2, r3;

	start(AUTH_TOKENS);
	post_hl7(TOK_ALL, "lab", "order-42", &r1);
	ck_assert_int_eq(r1.code, 202);
	post_hl7(TOK_ALL, "lab", "order-42", &r2);
	ck_assert_int_eq(r2.code, 200);
	ck_assert_str_eq(r2.location, r1.location);
	ck_assert_str_eq(r2.body, r1.body);
	/* the same key for another destination is another message */
	post_hl7(TOK_ALL, "ris", "order-42", &r3);
	ck_assert_int_eq(r3.code, 202);
	ck_assert_str_ne(r3.location, r1.location);
	/* the hook is asked each time (it knows the keys) and stored two */
	ck_assert_int_eq(submits(), 3);
	ck_assert_int_eq(F.nmsgs, 2);
	ck_assert_str_eq(F.msgs[0].key, "order-42");
	stop();
}
END_TEST

START_TEST(test_prefer_wait)
{
	struct resp r;
	struct req q = {.path = "/v1/destinations/lab/messages",
			.ctype = "x-application/hl7-v2+er7",
			.body = HL7_OK,
			.token = TOK_ALL,
			.extra = {"Prefer: respond-async, wait=5"}};
	struct timespec t0, t1;

	start(AUTH_TOKENS);
	F.ack_ready = 1;
	perform(&q, &r);
	ck_assert_int_eq(r.code, 200);
	ck_assert_str_eq(r.ctype, "x-application/hl7-v2+er7");
	ck_assert_str_eq(r.body, HL7_ACK);
	ck_assert_str_eq(r.location, "/v1/messages/101");
	ck_assert_int_eq(F.waits, 1);

	/* no ACK within N s: 202 as queued, after about N s */
	F.ack_ready = 0;
	q.extra[0] = "Prefer: wait=1";
	clock_gettime(CLOCK_MONOTONIC, &t0);
	perform(&q, &r);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ck_assert_int_eq(r.code, 202);
	ck_assert_str_eq(r.location, "/v1/messages/102");
	ck_assert_str_eq(r.body, "{\"id\":102,\"state\":\"queued\"}\n");
	ck_assert_int_ge(t1.tv_sec - t0.tv_sec, 0);
	ck_assert_int_ge((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000, 900);
	ck_assert_int_eq(F.waits, 2);
	stop();
}
END_TEST

/* X-File-Name names the file an SFTP destination gets: decoded, checked,
 * handed to submit; refused for MLLP destinations and for anything but a
 * plain name, with nothing submitted. */
START_TEST(test_file_name)
{
	static const char *const bad[] = {
	    "../escape.hl7", ".hidden", "a/b.hl7", "a%2Fb.hl7", "a%5Cb", "a%0Ab", "a%0Db",
	    "%ZZ",	     "a%4",	"%FF.hl7", "%C3",	"%00x",	 "",
	};
	struct req q = {.path = "/v1/destinations/files/messages",
			.ctype = "x-application/hl7-v2+er7",
			.body = HL7_OK,
			.token = TOK_ALL};
	char hdr[400], longname[300];
	struct resp r;
	struct timespec t0, t1;

	start(AUTH_TOKENS);
	q.extra[0] = "X-File-Name: result%201%C3%A9.hl7";
	perform(&q, &r);
	ck_assert_int_eq(r.code, 202);
	ck_assert_int_eq(F.nmsgs, 1);
	ck_assert_str_eq(F.msgs[0].file_name, "result 1\xc3\xa9.hl7");
	q.extra[0] = NULL;
	perform(&q, &r);
	ck_assert_int_eq(r.code, 202);
	ck_assert_str_eq(F.msgs[1].file_name, "");
	for (size_t i = 0; i < NELEMS(bad); i++) {
		/* curl sends a header with an empty value only as "Name;" */
		snprintf(hdr, sizeof hdr, *bad[i] ? "X-File-Name: %s" : "X-File-Name;", bad[i]);
		q.extra[0] = hdr;
		perform(&q, &r);
		ck_assert_msg(r.code == 400, "%s: %ld", bad[i], r.code);
		ck_assert_msg(strstr(r.body, "X-File-Name: "), "%s: %s", bad[i], r.body);
	}
	memset(longname, 'a', 256);
	longname[256] = '\0';
	snprintf(hdr, sizeof hdr, "X-File-Name: %s", longname);
	perform(&q, &r);
	ck_assert_int_eq(r.code, 400);
	ck_assert_ptr_nonnull(strstr(r.body, "255 bytes"));
	longname[255] = '\0';
	snprintf(hdr, sizeof hdr, "X-File-Name: %s", longname);
	perform(&q, &r);
	ck_assert_int_eq(r.code, 202);
	/* an MLLP destination has no files */
	q.path = "/v1/destinations/lab/messages";
	q.extra[0] = "X-File-Name: x.hl7";
	perform(&q, &r);
	ck_assert_int_eq(r.code, 400);
	ck_assert_str_eq(r.body, "X-File-Name applies to SFTP destinations only\n");
	ck_assert_int_eq(submits(), 3);
	/* no ACK to wait for: Prefer: wait is ignored, the 202 comes at once */
	q.path = "/v1/destinations/files/messages";
	q.extra[0] = "Prefer: wait=5";
	clock_gettime(CLOCK_MONOTONIC, &t0);
	perform(&q, &r);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ck_assert_int_eq(r.code, 202);
	ck_assert_int_eq(F.waits, 0);
	ck_assert_int_lt((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000,
			 2000);
	stop();
}
END_TEST

/* https_in_free() with a request waiting for submit and one waiting for
 * its ACK: the wait is cancelled, the submit's done_cb may still come (the
 * commit module calls it with -ECANCELED at its own free). */
START_TEST(test_free_pending)
{
	struct req q = {.path = "/v1/destinations/lab/messages",
			.ctype = "x-application/hl7-v2+er7",
			.body = HL7_OK,
			.token = TOK_ALL,
			.timeout_ms = 500,
			.extra = {"Prefer: wait=30"}};
	struct resp r;

	start(AUTH_TOKENS);
	perform(&q, &r); /* stored, waiting 30 s for the ACK */
	ck_assert_int_eq(r.rc, CURLE_OPERATION_TIMEDOUT);
	ck_assert_int_eq(F.waits, 1);
	pthread_mutex_lock(&F.mu);
	F.hold = 1;
	pthread_mutex_unlock(&F.mu);
	perform(&q, &r); /* submitted, never committed */
	ck_assert_int_eq(r.rc, CURLE_OPERATION_TIMEDOUT);
	ck_assert_int_eq(submits(), 2);
	ck_assert_ptr_nonnull(F.held);
	stop();
	ck_assert_int_eq(F.cancels, 1);
	F.held(F.held_arg, -ECANCELED, 0, 0);
}
END_TEST

START_TEST(test_repeat_with_wait)
{
	struct resp r;
	struct req q = {.path = "/v1/destinations/lab/messages",
			.ctype = "x-application/hl7-v2+er7",
			.body = HL7_OK,
			.token = TOK_ALL,
			.extra = {"Idempotency-Key: k1", "Prefer: wait=5"}};

	start(AUTH_TOKENS);
	post_hl7(TOK_ALL, "lab", "k1", &r);
	ck_assert_int_eq(r.code, 202);
	F.ack_ready = 1;
	perform(&q, &r);
	ck_assert_int_eq(r.code, 200);
	ck_assert_str_eq(r.body, HL7_ACK);
	ck_assert_str_eq(r.location, "/v1/messages/101");
	ck_assert_int_eq(F.nmsgs, 1);
	stop();
}
END_TEST

/* Client certificates. what: the curl outcome expected, "tls" for a refused
 * handshake (either curl error: TLS 1.3 reports the server's alert at the
 * first read) or an HTTP status. */
struct mtls_case {
	enum auth_mode mode;
	const char *client; /* NULL: no certificate */
	const char *token;
	long code;	  /* 0: the handshake is refused */
	const char *dest; /* NULL: lab */
};

static const struct mtls_case mtls_cases[] = {
    {AUTH_MTLS, "client", NULL, 202, NULL},
    {AUTH_MTLS, NULL, NULL, 0, NULL},		/* no certificate: no handshake */
    {AUTH_MTLS, "other-client", NULL, 0, NULL}, /* another CA */
    {AUTH_MTLS, "server", NULL, 0, NULL},	/* our CA, but not a client certificate */
    {AUTH_BOTH, "client", NULL, 202, NULL},
    {AUTH_BOTH, NULL, NULL, 401, NULL},
    {AUTH_BOTH, NULL, TOK_LAB, 202, NULL},
    {AUTH_BOTH, "other-client", TOK_LAB, 0, NULL}, /* a certificate presented must verify */
    {AUTH_BOTH, "client", "tok-wrong-0123456789abcdef", 401, NULL},
    {AUTH_BOTH, "client", NULL, 202, "ris"},	/* a certificate may use every destination */
    {AUTH_BOTH, "client", TOK_LAB, 403, "ris"}, /* a token's limits apply with a certificate */
};

START_TEST(test_mtls)
{
	const struct mtls_case *t = &mtls_cases[_i];
	struct resp r;
	char path[64];
	struct req q = {.path = path,
			.ctype = "x-application/hl7-v2+er7",
			.body = HL7_OK,
			.token = t->token,
			.client = t->client};

	snprintf(path, sizeof(path), "/v1/destinations/%s/messages", t->dest ? t->dest : "lab");
	start(t->mode);
	perform(&q, &r);
	if (t->code) {
		ck_assert_msg(r.rc == CURLE_OK, "case %d: %s", _i, curl_easy_strerror(r.rc));
		ck_assert_int_eq(r.code, t->code);
		ck_assert_int_eq(submits(), t->code == 202);
		if (t->code == 202 && t->client && !t->token)
			ck_assert_str_eq(F.msgs[0].client, "cert:mllp-edge-test-client");
	} else {
		ck_assert_msg(r.rc == CURLE_SSL_CONNECT_ERROR || r.rc == CURLE_RECV_ERROR ||
				  r.rc == CURLE_SEND_ERROR,
			      "case %d: %s (HTTP %ld)", _i, curl_easy_strerror(r.rc), r.code);
		ck_assert_int_eq(r.code, 0);
		ck_assert_int_eq(submits(), 0);
		/* the listener still serves a good client */
		q.client = "client";
		q.token = NULL;
		perform(&q, &r);
		ck_assert_int_eq(r.code, 202);
		ck_assert_int_eq(submits(), 1);
	}
	stop();
}
END_TEST

/* The TLS policy seen from a client that offers one thing at a time. The
 * client allows everything OpenSSL has (@SECLEVEL=0), so a refusal is the
 * listener's. */
struct tls_case {
	long version;
	const char *ciphers, *tls13;
	int ok;
	const char *server; /* NULL: the EC P-256 certificate */
};

#define V12 (long)(CURL_SSLVERSION_TLSv1_2 | CURL_SSLVERSION_MAX_TLSv1_2)
#define V13 (long)(CURL_SSLVERSION_TLSv1_3 | CURL_SSLVERSION_MAX_TLSv1_3)
static const struct tls_case tls_cases[] = {
    {(long)(CURL_SSLVERSION_TLSv1_1 | CURL_SSLVERSION_MAX_TLSv1_1), "DEFAULT:@SECLEVEL=0", NULL, 0,
     NULL},
    {(long)(CURL_SSLVERSION_TLSv1_0 | CURL_SSLVERSION_MAX_TLSv1_0), "DEFAULT:@SECLEVEL=0", NULL, 0,
     NULL},
    {V12, "ECDHE-ECDSA-AES128-SHA256:@SECLEVEL=0", NULL, 0, NULL}, /* CBC */
    {V12, "ECDHE-ECDSA-AES256-SHA:@SECLEVEL=0", NULL, 0, NULL},	   /* CBC */
    {V12, "ECDHE-ECDSA-CHACHA20-POLY1305", NULL, 0, NULL}, /* AEAD, but not one of the seven */
    {V12, "ECDHE-ECDSA-AES128-CCM:@SECLEVEL=0", NULL, 0, NULL},
    {V12, "ECDHE-ECDSA-AES128-GCM-SHA256", NULL, 1, NULL},
    {V12, "ECDHE-ECDSA-AES256-GCM-SHA384", NULL, 1, NULL},
    {V13, NULL, "TLS_AES_128_CCM_SHA256", 0, NULL},
    {V13, NULL, "TLS_AES_128_GCM_SHA256", 1, NULL},
    {V13, NULL, "TLS_AES_256_GCM_SHA384", 1, NULL},
    {V13, NULL, "TLS_CHACHA20_POLY1305_SHA256", 1, NULL},
    /* an RSA server key: the ECDHE-RSA pair, and nothing without ECDHE */
    {V12, "ECDHE-RSA-AES128-GCM-SHA256", NULL, 1, "server-rsa"},
    {V12, "ECDHE-RSA-AES256-GCM-SHA384", NULL, 1, "server-rsa"},
    {V12, "AES128-GCM-SHA256:AES256-GCM-SHA384", NULL, 0, "server-rsa"},
    {V12, "DHE-RSA-AES128-GCM-SHA256:@SECLEVEL=0", NULL, 0, "server-rsa"},
    {V12, "ECDHE-RSA-AES128-SHA:ECDHE-RSA-CHACHA20-POLY1305:@SECLEVEL=0", NULL, 0, "server-rsa"},
    {V13, NULL, "TLS_AES_256_GCM_SHA384", 1, "server-rsa"},
};

START_TEST(test_tls_policy)
{
	const struct tls_case *t = &tls_cases[_i];
	struct resp r;

	if (t->server)
		g_server = t->server;
	start(AUTH_TOKENS);
	perform(&(struct req){.path = "/v1/messages/1",
			      .token = TOK_ALL,
			      .sslversion = t->version,
			      .ciphers = t->ciphers,
			      .tls13 = t->tls13},
		&r);
	if (t->ok) {
		ck_assert_msg(r.rc == CURLE_OK, "case %d: %s", _i, curl_easy_strerror(r.rc));
		ck_assert_int_eq(r.code, 404);
	} else {
		ck_assert_msg(r.rc == CURLE_SSL_CONNECT_ERROR, "case %d: %s", _i,
			      curl_easy_strerror(r.rc));
		/* "tlsv1 alert protocol version", "sslv3 alert handshake failure":
		 * the listener's alert, not a client that refused to try */
		ck_assert_msg(strstr(r.err, " alert "), "case %d: %s", _i, r.err);
	}
	stop();
}
END_TEST

/* tokens_file problems stop the listener from starting. */
static const char *const bad_tokens[] = {
    "short lab\n",	  TOK_LAB "\n",	     TOK_LAB " lab, ris\n",
    TOK_LAB " nosuch\n",  TOK_LAB " lab,\n", TOK_LAB " lab\n" TOK_LAB " ris\n",
    "# only a comment\n",
};

START_TEST(test_bad_tokens_file)
{
	char path[PATH_LEN];
	FILE *f;
	struct https_in *h = NULL;

	make_cfg(AUTH_TOKENS);
	ck_assert_ptr_nonnull(g_base = event_base_new());
	snprintf(path, sizeof(path), "%s/bad-tokens-%d", g_tmp, _i);
	ck_assert_ptr_nonnull(f = fopen(path, "w"));
	fputs(bad_tokens[_i], f);
	ck_assert_int_eq(fclose(f), 0);
	g_cfg.https.tokens_file = path;
	ck_assert_int_eq(https_in_new(g_base, &g_cfg, &hooks, &h), -EINVAL);
	ck_assert_ptr_null(h);
	g_cfg.https.tokens_file = NULL;
	g_cfg.https.client_ca = NULL;
	ck_assert_int_eq(https_in_new(g_base, &g_cfg, &hooks, &h), -EINVAL); /* no credential */
	ck_assert_ptr_null(h);
	event_base_free(g_base);
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
	char cmd[4 * PATH_LEN];

	snprintf(g_tmp, sizeof(g_tmp), "/tmp/test_https_in.XXXXXX");
	if (!mkdtemp(g_tmp)) {
		perror("mkdtemp");
		exit(EXIT_FAILURE);
	}
	snprintf(g_certs, sizeof(g_certs), "%s/certs", g_tmp);
	snprintf(cmd, sizeof(cmd), "sh '%s' '%s'", mk, g_certs);
	if (system(cmd) != 0) {
		fprintf(stderr, "test_https_in: %s failed\n", cmd);
		exit(EXIT_FAILURE);
	}
	/* a client certificate from the unrelated CA */
	snprintf(cmd, sizeof(cmd),
		 "cd '%s' && printf 'basicConstraints=critical,CA:FALSE\\n"
		 "extendedKeyUsage=clientAuth\\n' >oc.ext && "
		 "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 "
		 "-out other-client.key 2>/dev/null && "
		 "openssl req -new -key other-client.key -subj '/CN=mllp-edge-test-client' "
		 "-out oc.csr && "
		 "openssl x509 -req -in oc.csr -CA other-ca.pem -CAkey other-ca.key "
		 "-CAcreateserial -days 30 -sha256 -extfile oc.ext -out other-client.pem "
		 "2>/dev/null",
		 g_certs);
	if (system(cmd) != 0) {
		fprintf(stderr, "test_https_in: making other-client.pem failed\n");
		exit(EXIT_FAILURE);
	}
}

static Suite *https_in_suite(void)
{
	Suite *s = suite_create("https_in");
	TCase *t = tcase_create("listener");

	tcase_set_timeout(t, 30);
	tcase_add_test(t, test_post_and_get);
	tcase_add_test(t, test_file_name);
	tcase_add_test(t, test_get_other_destination);
	tcase_add_loop_test(t, test_refused, 0, NELEMS(refusals));
	tcase_add_test(t, test_refusals_rate_limited);
	tcase_add_test(t, test_accept_out_of_fds);
	tcase_add_test(t, test_json_post);
	tcase_add_test(t, test_json_frame);
	tcase_add_test(t, test_translate_route);
	tcase_add_test(t, test_json_stats);
	tcase_add_test(t, test_idempotency_key);
	tcase_add_test(t, test_prefer_wait);
	tcase_add_test(t, test_repeat_with_wait);
	tcase_add_test(t, test_free_pending);
	tcase_add_loop_test(t, test_mtls, 0, NELEMS(mtls_cases));
	tcase_add_loop_test(t, test_tls_policy, 0, NELEMS(tls_cases));
	tcase_add_loop_test(t, test_bad_tokens_file, 0, NELEMS(bad_tokens));
	suite_add_tcase(s, t);
	return s;
}

int main(void)
{
	SRunner *sr;
	int failed;

	signal(SIGPIPE, SIG_IGN);
	log_init(LOG_DEBUG, 0);
	make_certs();
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		return EXIT_FAILURE;
	sr = srunner_create(https_in_suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	curl_global_cleanup();
	if (failed)
		fprintf(stderr, "test_https_in: certificates kept in %s\n", g_tmp);
	else
		nftw(g_tmp, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
