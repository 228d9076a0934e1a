/*
 * https-sink: a test HTTPS receiver (libevent evhttp over OpenSSL
 * bufferevents) that answers as told and records what it received.
 *
 *   https-sink --listen 127.0.0.1:PORT --cert FILE --key FILE
 *              [--tls policy|1.1|1.2|1.3] [--ciphers TLS12-LIST]
 *              [--client-ca FILE] [--record DIR] [--status N] [--fail-first N]
 *              [--retry-after S] [--ack] [--delay-ms N] [--pid-file FILE]
 *              [--reply-bytes N]
 *
 * Prints "listening on ADDR" once ready; exits 0 on SIGTERM/SIGINT.
 *
 * --record DIR writes, per request, one line to DIR/requests.log:
 *   seq method path idempotency-key x-forwarded-for x-integration
 *   content-type date authorization(yes|no) body-length msh-10 status
 * (TAB-separated, "-" for an absent value), the exact body to DIR/bodies/SEQ
 * and every request header ("Name: value" lines) to DIR/headers/SEQ; and per
 * completed TLS handshake one line to DIR/connections.log:
 *   seq peer tls-version cipher
 *
 * The TLS policy here is written out from ARCHITECTURE.md on purpose, not
 * taken from upstream.h, so that tests of the client are not circular.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>
#include <event2/keyvalq_struct.h>
#include <event2/util.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#define SINK_TLS12_POLICY                                                                          \
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                               \
	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384"
#define SINK_TLS13_POLICY                                                                          \
	"TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
#define SINK_BODY_MAX	  (16 * 1024 * 1024) /* larger requests get 413 from evhttp */
#define SINK_FIELD_MAX	  512		     /* a recorded header value is cut here */
#define SINK_MSH10_MAX	  200
#define SINK_PATH_MAX	  4096
#define SINK_CIPHERS_MAX  1024
#define SINK_ACK_MAX	  (SINK_MSH10_MAX + 128)
#define SINK_DELAY_MAX_MS (600 * 1000)
#define SINK_REPLY_MAX	  (64 * 1024 * 1024) /* --reply-bytes limit */

enum tls_mode { TLS_POLICY, TLS_11, TLS_12, TLS_13 };

struct opts {
	char host[128];
	int port;
	const char *cert, *key, *ciphers, *client_ca, *record, *pid_file;
	enum tls_mode tls;
	int status, fail_first, retry_after, ack, delay_ms, reply_bytes;
};

struct pending {
	TAILQ_ENTRY(pending) entry;
	struct sink *s;
	struct evhttp_request *req;
	struct event *timer;
	int status;
	struct evbuffer *body;
	const char *ctype;
};

struct sink {
	struct opts o;
	struct event_base *base;
	struct evhttp *http;
	SSL_CTX *ctx;
	FILE *req_log, *conn_log;
	unsigned long req_seq, conn_seq;
	TAILQ_HEAD(, pending) pending;
};

static void usage(void)
{
	fprintf(stderr, "usage: https-sink --listen HOST:PORT --cert FILE --key FILE\n"
			"  [--tls policy|1.1|1.2|1.3] [--ciphers LIST] [--client-ca FILE]\n"
			"  [--record DIR] [--status N] [--fail-first N] [--retry-after S]\n"
			"  [--ack] [--delay-ms N] [--pid-file FILE] [--reply-bytes N]\n");
	exit(2);
}

static int parse_int(const char *s, int lo, int hi)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < lo || v > hi) {
		fprintf(stderr, "https-sink: bad number '%s' (%d..%d)\n", s, lo, hi);
		exit(2);
	}
	return (int)v;
}

/* "127.0.0.1:18001" or "[::1]:18001" */
static void parse_listen(struct opts *o, const char *arg)
{
	const char *colon = strrchr(arg, ':');
	size_t hlen;

	if (!colon || colon == arg)
		usage();
	hlen = (size_t)(colon - arg);
	if (arg[0] == '[' && hlen >= 2 && arg[hlen - 1] == ']') {
		arg++;
		hlen -= 2;
	}
	if (hlen >= sizeof(o->host))
		usage();
	memcpy(o->host, arg, hlen);
	o->host[hlen] = '\0';
	o->port = parse_int(colon + 1, 0, 65535);
}

static enum tls_mode parse_tls(const char *s)
{
	if (strcmp(s, "policy") == 0)
		return TLS_POLICY;
	if (strcmp(s, "1.1") == 0)
		return TLS_11;
	if (strcmp(s, "1.2") == 0)
		return TLS_12;
	if (strcmp(s, "1.3") == 0)
		return TLS_13;
	usage();
	return TLS_POLICY;
}

static void parse_args(struct opts *o, int argc, char **argv)
{
	static const struct option lo[] = {
	    {"listen", 1, NULL, 'l'},	  {"cert", 1, NULL, 'c'},
	    {"key", 1, NULL, 'k'},	  {"tls", 1, NULL, 't'},
	    {"ciphers", 1, NULL, 'C'},	  {"client-ca", 1, NULL, 'A'},
	    {"record", 1, NULL, 'r'},	  {"status", 1, NULL, 's'},
	    {"fail-first", 1, NULL, 'f'}, {"retry-after", 1, NULL, 'R'},
	    {"ack", 0, NULL, 'a'},	  {"delay-ms", 1, NULL, 'd'},
	    {"pid-file", 1, NULL, 'p'},	  {"reply-bytes", 1, NULL, 'B'},
	    {NULL, 0, NULL, 0},
	};
	int c;

	memset(o, 0, sizeof(*o));
	o->status = 200;
	o->retry_after = -1;
	o->port = -1;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 'l':
			parse_listen(o, optarg);
			break;
		case 'c':
			o->cert = optarg;
			break;
		case 'k':
			o->key = optarg;
			break;
		case 't':
			o->tls = parse_tls(optarg);
			break;
		case 'C':
			o->ciphers = optarg;
			break;
		case 'A':
			o->client_ca = optarg;
			break;
		case 'r':
			o->record = optarg;
			break;
		case 's':
			o->status = parse_int(optarg, 100, 599);
			break;
		case 'f':
			o->fail_first = parse_int(optarg, 0, 1000000);
			break;
		case 'R':
			o->retry_after = parse_int(optarg, 0, 86400);
			break;
		case 'a':
			o->ack = 1;
			break;
		case 'd':
			o->delay_ms = parse_int(optarg, 0, SINK_DELAY_MAX_MS);
			break;
		case 'p':
			o->pid_file = optarg;
			break;
		case 'B':
			o->reply_bytes = parse_int(optarg, 0, SINK_REPLY_MAX);
			break;
		default:
			usage();
		}
	}
	if (optind != argc || o->port < 0 || !o->cert || !o->key)
		usage();
}

/* ---- TLS ---- */

static void tls_fail(const char *what)
{
	fprintf(stderr, "https-sink: %s\n", what);
	ERR_print_errors_fp(stderr);
	exit(1);
}

static void peer_text(int fd, char *buf, size_t cap)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char host[64], port[16];

	snprintf(buf, cap, "-");
	if (fd < 0 || getpeername(fd, (struct sockaddr *)&ss, &sl) != 0)
		return;
	if (getnameinfo((struct sockaddr *)&ss, sl, host, sizeof(host), port, sizeof(port),
			NI_NUMERICHOST | NI_NUMERICSERV) == 0)
		snprintf(buf, cap, ss.ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s", host, port);
}

/* Records each completed handshake once (TLS 1.3 may report "done" again
 * after session tickets; the SSL's app data marks it as logged). */
static void on_tls_info(const SSL *ssl, int where, int ret)
{
	struct sink *s = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
	char peer[96];

	(void)ret;
	if (!(where & SSL_CB_HANDSHAKE_DONE) || SSL_get_app_data(ssl) || !s->conn_log)
		return;
	SSL_set_app_data((SSL *)ssl, s);
	peer_text(SSL_get_fd(ssl), peer, sizeof(peer));
	fprintf(s->conn_log, "%lu\t%s\t%s\t%s\n", ++s->conn_seq, peer, SSL_get_version(ssl),
		SSL_get_cipher_name(ssl));
	fflush(s->conn_log);
}

static void tls_versions(SSL_CTX *ctx, enum tls_mode m)
{
	static const int lo[] = {TLS1_2_VERSION, TLS1_1_VERSION, TLS1_2_VERSION, TLS1_3_VERSION};
	static const int hi[] = {TLS1_3_VERSION, TLS1_1_VERSION, TLS1_2_VERSION, TLS1_3_VERSION};

	if (!SSL_CTX_set_min_proto_version(ctx, lo[m]) ||
	    !SSL_CTX_set_max_proto_version(ctx, hi[m]))
		tls_fail("cannot set the TLS versions");
}

static void tls_ciphers(SSL_CTX *ctx, const struct opts *o)
{
	char list[SINK_CIPHERS_MAX];
	const char *base = o->ciphers ? o->ciphers : SINK_TLS12_POLICY;
	int n;

	/* OpenSSL 3 refuses TLS 1.1 (SHA-1 signatures) below security level 0 */
	if (o->tls == TLS_11)
		n = snprintf(list, sizeof(list), "%s:@SECLEVEL=0",
			     o->ciphers ? o->ciphers : "DEFAULT");
	else
		n = snprintf(list, sizeof(list), "%s", base);
	if (n < 0 || (size_t)n >= sizeof(list))
		tls_fail("cipher list too long");
	if (!SSL_CTX_set_cipher_list(ctx, list))
		tls_fail("bad cipher list");
	if (!SSL_CTX_set_ciphersuites(ctx, SINK_TLS13_POLICY))
		tls_fail("bad TLS 1.3 suites");
}

static SSL_CTX *tls_setup(struct sink *s)
{
	const struct opts *o = &s->o;
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

	if (!ctx)
		tls_fail("SSL_CTX_new");
	tls_versions(ctx, o->tls);
	tls_ciphers(ctx, o);
	if (SSL_CTX_use_certificate_chain_file(ctx, o->cert) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, o->key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1)
		tls_fail("cannot load the certificate or key");
	if (o->client_ca) {
		STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(o->client_ca);

		if (!names || SSL_CTX_load_verify_locations(ctx, o->client_ca, NULL) != 1)
			tls_fail("cannot load the client CA");
		SSL_CTX_set_client_CA_list(ctx, names);
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	}
	SSL_CTX_set_app_data(ctx, s);
	SSL_CTX_set_info_callback(ctx, on_tls_info);
	return ctx;
}

static struct bufferevent *make_bev(struct event_base *base, void *arg)
{
	struct sink *s = arg;
	struct bufferevent *bev;
	SSL *ssl = SSL_new(s->ctx);

	if (!ssl)
		return NULL;
	bev = bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING,
					     BEV_OPT_CLOSE_ON_FREE);
	if (bev)
		bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	return bev;
}

/* ---- recording ---- */

/* MSH-10 of an HL7 message, without hl7.c: fields split on MSH-1 up to the
 * segment end. Copies "-" when there is none. */
static void msh10(const unsigned char *b, size_t len, char *out, size_t cap)
{
	size_t i, start, field = 2;
	char sep;

	snprintf(out, cap, "-");
	if (len < 4 || memcmp(b, "MSH", 3) != 0)
		return;
	sep = (char)b[3];
	for (i = start = 4; i <= len; i++) {
		if (i < len && b[i] != (unsigned char)sep && b[i] != '\r' && b[i] != '\n')
			continue;
		if (field == 10) {
			if (i > start && i - start < cap)
				snprintf(out, cap, "%.*s", (int)(i - start),
					 (const char *)b + start);
			return;
		}
		if (i == len || b[i] != (unsigned char)sep)
			return;
		field++;
		start = i + 1;
	}
}

/* A header value made safe for one TAB-separated field. */
static const char *field(const char *v, char *buf, size_t cap)
{
	size_t i;

	if (!v || !*v)
		return "-";
	for (i = 0; v[i] && i + 1 < cap; i++)
		buf[i] = ((unsigned char)v[i] < 0x20 || v[i] == 0x7f) ? '?' : v[i];
	buf[i] = '\0';
	return buf;
}

static void write_file(const char *dir, const char *sub, unsigned long seq, const void *p,
		       size_t len)
{
	char path[SINK_PATH_MAX];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s/%lu", dir, sub, seq);
	f = fopen(path, "wb");
	if (!f || (len && fwrite(p, 1, len, f) != len) || fclose(f) != 0)
		fprintf(stderr, "https-sink: cannot write %s\n", path);
}

static void record_headers(struct sink *s, unsigned long seq, struct evkeyvalq *h)
{
	struct evbuffer *b = evbuffer_new();
	struct evkeyval *kv;

	if (!b)
		return;
	TAILQ_FOREACH(kv, h, next)
	evbuffer_add_printf(b, "%s: %s\n", kv->key, kv->value);
	write_file(s->o.record, "headers", seq, evbuffer_pullup(b, -1), evbuffer_get_length(b));
	evbuffer_free(b);
}

static const char *method_name(enum evhttp_cmd_type c)
{
	switch (c) {
	case EVHTTP_REQ_GET:
		return "GET";
	case EVHTTP_REQ_POST:
		return "POST";
	case EVHTTP_REQ_HEAD:
		return "HEAD";
	case EVHTTP_REQ_PUT:
		return "PUT";
	case EVHTTP_REQ_DELETE:
		return "DELETE";
	case EVHTTP_REQ_OPTIONS:
		return "OPTIONS";
	case EVHTTP_REQ_PATCH:
		return "PATCH";
	default:
		return "OTHER";
	}
}

static void record(struct sink *s, unsigned long seq, struct evhttp_request *req,
		   const unsigned char *body, size_t len, const char *id, int status)
{
	struct evkeyvalq *h = evhttp_request_get_input_headers(req);
	char f[7][SINK_FIELD_MAX];

	fprintf(s->req_log, "%lu\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%zu\t%s\t%d\n", seq,
		method_name(evhttp_request_get_command(req)),
		field(evhttp_request_get_uri(req), f[0], sizeof(f[0])),
		field(evhttp_find_header(h, "Idempotency-Key"), f[1], sizeof(f[1])),
		field(evhttp_find_header(h, "X-Forwarded-For"), f[2], sizeof(f[2])),
		field(evhttp_find_header(h, "X-Integration"), f[3], sizeof(f[3])),
		field(evhttp_find_header(h, "Content-Type"), f[4], sizeof(f[4])),
		field(evhttp_find_header(h, "Date"), f[5], sizeof(f[5])),
		evhttp_find_header(h, "Authorization") ? "yes" : "no", len,
		field(id, f[6], sizeof(f[6])), status);
	fflush(s->req_log);
	write_file(s->o.record, "bodies", seq, body, len);
	record_headers(s, seq, h);
}

/* ---- answering ---- */

static const char *reason(int status)
{
	switch (status) {
	case 200:
		return "OK";
	case 201:
		return "Created";
	case 202:
		return "Accepted";
	case 204:
		return "No Content";
	case 400:
		return "Bad Request";
	case 401:
		return "Unauthorized";
	case 403:
		return "Forbidden";
	case 404:
		return "Not Found";
	case 409:
		return "Conflict";
	case 429:
		return "Too Many Requests";
	case 500:
		return "Internal Server Error";
	case 502:
		return "Bad Gateway";
	case 503:
		return "Service Unavailable";
	default:
		return "Status";
	}
}

static void send_pending(struct pending *p)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(p->req);
	const struct opts *o = &p->s->o;
	char ra[16];

	evhttp_add_header(h, "Content-Type", p->ctype);
	if (o->retry_after >= 0 && (p->status == 503 || p->status == 429)) {
		snprintf(ra, sizeof(ra), "%d", o->retry_after);
		evhttp_add_header(h, "Retry-After", ra);
	}
	/* frees the request itself if the client is already gone */
	evhttp_send_reply(p->req, p->status, reason(p->status), p->body);
}

static void pending_free(struct pending *p)
{
	if (p->timer) {
		TAILQ_REMOVE(&p->s->pending, p, entry);
		event_free(p->timer);
	}
	evbuffer_free(p->body);
	free(p);
}

static void on_delay(evutil_socket_t fd, short what, void *arg)
{
	struct pending *p = arg;

	(void)fd;
	(void)what;
	send_pending(p);
	pending_free(p);
}

static void ack_body(struct evbuffer *b, unsigned long seq, const char *id)
{
	char ts[32];
	time_t now = time(NULL);
	struct tm tm;

	gmtime_r(&now, &tm);
	strftime(ts, sizeof(ts), "%Y%m%d%H%M%S", &tm);
	evbuffer_add_printf(b, "MSH|^~\\&|CLOUD|CLOUD|||%s||ACK|ACK%lu|P|2.5.1\rMSA|AA|%s\r", ts,
			    seq, strcmp(id, "-") ? id : "");
}

static int fill_body(struct evbuffer *b, size_t n)
{
	struct evbuffer_iovec v;

	if (evbuffer_reserve_space(b, (ev_ssize_t)n, &v, 1) < 1 || v.iov_len < n)
		return -1;
	memset(v.iov_base, 'x', n);
	v.iov_len = n;
	return evbuffer_commit_space(b, &v, 1);
}

static struct pending *answer_new(struct sink *s, struct evhttp_request *req, unsigned long seq,
				  const char *id)
{
	struct pending *p = calloc(1, sizeof(*p));

	if (!p || !(p->body = evbuffer_new())) {
		free(p);
		return NULL;
	}
	p->s = s;
	p->req = req;
	p->status = seq <= (unsigned long)s->o.fail_first ? 503 : s->o.status;
	if (s->o.ack && p->status == 200) {
		p->ctype = "x-application/hl7-v2+er7";
		ack_body(p->body, seq, id);
	} else if (s->o.reply_bytes && p->status == 200) {
		p->ctype = "application/octet-stream";
		if (fill_body(p->body, (size_t)s->o.reply_bytes) != 0) {
			evbuffer_free(p->body);
			free(p);
			return NULL;
		}
	} else {
		p->ctype = "text/plain";
		evbuffer_add_printf(p->body, "%d %s\n", p->status, reason(p->status));
	}
	return p;
}

static void on_request(struct evhttp_request *req, void *arg)
{
	struct sink *s = arg;
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(in);
	const unsigned char *body = len ? evbuffer_pullup(in, -1) : (const unsigned char *)"";
	unsigned long seq = ++s->req_seq;
	char id[SINK_MSH10_MAX];
	struct pending *p;
	struct timeval tv;

	msh10(body, len, id, sizeof(id));
	p = answer_new(s, req, seq, id);
	if (!p) {
		evhttp_send_error(req, 500, "out of memory");
		return;
	}
	if (s->req_log)
		record(s, seq, req, body, len, id, p->status);
	if (s->o.delay_ms > 0) {
		p->timer = evtimer_new(s->base, on_delay, p);
		tv.tv_sec = s->o.delay_ms / 1000;
		tv.tv_usec = (s->o.delay_ms % 1000) * 1000;
		if (p->timer && evtimer_add(p->timer, &tv) == 0) {
			TAILQ_INSERT_TAIL(&s->pending, p, entry);
			return;
		}
		if (p->timer)
			event_free(p->timer);
		p->timer = NULL;
	}
	send_pending(p);
	pending_free(p);
}

/* ---- set-up and main ---- */

static FILE *open_log(const char *dir, const char *name)
{
	char path[SINK_PATH_MAX];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "a");
	if (!f) {
		fprintf(stderr, "https-sink: %s: %s\n", path, strerror(errno));
		exit(1);
	}
	return f;
}

static void record_setup(struct sink *s)
{
	const char *subs[] = {"", "/bodies", "/headers"};
	char path[SINK_PATH_MAX];
	size_t i;

	if (!s->o.record)
		return;
	for (i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
		snprintf(path, sizeof(path), "%s%s", s->o.record, subs[i]);
		if (mkdir(path, 0755) != 0 && errno != EEXIST) {
			fprintf(stderr, "https-sink: mkdir %s: %s\n", path, strerror(errno));
			exit(1);
		}
	}
	s->req_log = open_log(s->o.record, "requests.log");
	s->conn_log = open_log(s->o.record, "connections.log");
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	(void)sig;
	(void)what;
	event_base_loopexit(arg, NULL);
}

static void write_pid(const char *path)
{
	FILE *f = fopen(path, "w");

	if (!f || fprintf(f, "%ld\n", (long)getpid()) < 0 || fclose(f) != 0) {
		fprintf(stderr, "https-sink: cannot write %s\n", path);
		exit(1);
	}
}

static void bind_http(struct sink *s)
{
	struct evhttp_bound_socket *b;

	s->http = evhttp_new(s->base);
	if (!s->http)
		exit(1);
	evhttp_set_bevcb(s->http, make_bev, s);
	evhttp_set_gencb(s->http, on_request, s);
	evhttp_set_max_body_size(s->http, SINK_BODY_MAX);
	b = evhttp_bind_socket_with_handle(s->http, s->o.host, (ev_uint16_t)s->o.port);
	if (!b) {
		fprintf(stderr, "https-sink: cannot listen on %s:%d: %s\n", s->o.host, s->o.port,
			strerror(errno));
		exit(1);
	}
	/* evhttp writes headers and body separately: without TCP_NODELAY
	 * (inherited by accepted sockets on Linux) Nagle and the client's
	 * delayed ACK add 40 ms to every answer. */
	setsockopt(evconnlistener_get_fd(evhttp_bound_socket_get_listener(b)), IPPROTO_TCP,
		   TCP_NODELAY, &(int){1}, sizeof(int));
	if (s->o.port == 0) { /* report the port the kernel picked */
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		char port[16];

		if (getsockname(evhttp_bound_socket_get_fd(b), (struct sockaddr *)&ss, &sl) == 0 &&
		    getnameinfo((struct sockaddr *)&ss, sl, NULL, 0, port, sizeof(port),
				NI_NUMERICSERV) == 0)
			s->o.port = atoi(port);
	}
}

/* Answers what is still delayed, so nothing leaks and clients hear back. */
static void shutdown_sink(struct sink *s)
{
	struct pending *p;

	while ((p = TAILQ_FIRST(&s->pending))) {
		send_pending(p);
		pending_free(p);
	}
	evhttp_free(s->http);
	SSL_CTX_free(s->ctx);
	if (s->req_log)
		fclose(s->req_log);
	if (s->conn_log)
		fclose(s->conn_log);
	event_base_free(s->base);
}

int main(int argc, char **argv)
{
	struct sink s;
	struct event *sigs[2];
	int i;

	memset(&s, 0, sizeof(s));
	TAILQ_INIT(&s.pending);
	parse_args(&s.o, argc, argv);
	signal(SIGPIPE, SIG_IGN);
	s.base = event_base_new();
	if (!s.base)
		return 1;
	s.ctx = tls_setup(&s);
	record_setup(&s);
	bind_http(&s);
	sigs[0] = evsignal_new(s.base, SIGTERM, on_signal, s.base);
	sigs[1] = evsignal_new(s.base, SIGINT, on_signal, s.base);
	for (i = 0; i < 2; i++)
		if (!sigs[i] || event_add(sigs[i], NULL) != 0)
			return 1;
	if (s.o.pid_file)
		write_pid(s.o.pid_file);
	printf(strchr(s.o.host, ':') ? "listening on [%s]:%d\n" : "listening on %s:%d\n", s.o.host,
	       s.o.port);
	fflush(stdout);
	event_base_dispatch(s.base);
	for (i = 0; i < 2; i++)
		event_free(sigs[i]);
	shutdown_sink(&s);
	return 0;
}
