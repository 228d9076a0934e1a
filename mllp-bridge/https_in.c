/*
 * The outbound API's HTTPS listener. See https_in.h and docs/api.md.
 *
 * libevent's evhttp reads a request whole (body bounded by max_body) before
 * it calls us; the checks then run in the order of docs/api.md, and only a
 * request that passed all of them reaches hooks->submit. A request waiting
 * for a hook (submit, wait) keeps its evhttp_request: evhttp stops reading
 * the connection while a request is with the user, so nothing frees it
 * before we answer, except evhttp_free() (https_in_free forgets them first).
 */
#include "mllp-bridge/https_in.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "mllp-bridge/hl7.h"
#include "mllp-bridge/log.h"
#include "mllp-bridge/translate.h"
#include "mllp-bridge/upstream.h" /* the TLS policy's cipher strings */

#define HASH_LEN       32 /* SHA-256 */
#define CLIENT_MAX     128
#define REASON_MAX     320
#define SESSION_CTX    "mllp-edge https_in"
#define MSG_PREFIX     "/v1/messages/"
#define DEST_PREFIX    "/v1/destinations/"
#define DEST_SUFFIX    "/messages"
#define TRANSLATE_PATH "/v1/translate"
#define ID_DIGITS_MAX  19
#define CTYPE_HL7_ER7  "x-application/hl7-v2+er7"
#define CTYPE_JSON     "application/json"
#define CONTROL_ID_LEN 20 /* MSH-10 of a translated message: ST(20) up to 2.5.1 */
#define JSON_SMALL_MAX 128

struct token {
	unsigned char hash[HASH_LEN]; /* SHA-256 of the token: compared, never the token */
	int all;		      /* "*" */
	unsigned char *dests;	      /* per cfg destination index: allowed */
	int line;
};

/* Who sent a request, once authenticated. */
struct who {
	const struct token *tok; /* NULL: a verified certificate alone */
	char label[CLIENT_MAX];
};

enum pend_state { PEND_SUBMIT, PEND_WAIT };

/* A request waiting for a hook. */
struct pending {
	LIST_ENTRY(pending) entry;
	struct https_in *h; /* NULL once https_in_free() ran (orphan: done_cb frees it) */
	struct evhttp_request *req;
	enum pend_state state;
	int64_t id;
	unsigned wait_s; /* Prefer: wait=N; 0: none */
	void *wait_handle;
	char peer[LOG_PEER_MAX];
	char dest[CFG_NAME_MAX + 1];
	char client[CLIENT_MAX];
};

struct https_in {
	struct event_base *base;
	const struct cfg *cfg;
	struct https_in_hooks hooks;
	SSL_CTX *ssl;
	struct evhttp *http;
	int port;
	struct token *tokens;
	size_t ntokens;
	LIST_HEAD(, pending) pending;
	struct https_in_stats st;
	struct evconnlistener *listener; /* evhttp's */
	struct event *resume;		 /* accepting again after a pause */
	LIST_ENTRY(https_in) live;
};

/* Listeners of this process, for the accept error callback, whose argument
 * is evhttp's: the listener is all it has. One loop, no threads. */
static LIST_HEAD(, https_in) g_live = LIST_HEAD_INITIALIZER(g_live);

static const char *const ctypes[] = {CTYPE_HL7_ER7,	"application/hl7-v2", "application/edi-x12",
				     "application/xml", "text/xml",	      CTYPE_JSON};

/* ---- answers ---- */

static const char *phrase(int code)
{
	switch (code) {
	case 200:
		return "OK";
	case 202:
		return "Accepted";
	case 400:
		return "Bad Request";
	case 401:
		return "Unauthorized";
	case 403:
		return "Forbidden";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 413:
		return "Payload Too Large";
	case 415:
		return "Unsupported Media Type";
	case 421:
		return "Misdirected Request";
	case 422:
		return "Unprocessable Content";
	case 502:
		return "Bad Gateway";
	case 503:
		return "Service Unavailable";
	default:
		return "Internal Server Error";
	}
}

static void count(struct https_in *h, int code)
{
	h->st.requests++;
	if (code == 401)
		h->st.unauthenticated++;
	else if (code == 403)
		h->st.forbidden++;
	else if (code >= 400 && code < 500)
		h->st.refused++;
	else if (code >= 500)
		h->st.failed++;
}

static void send_body(struct https_in *h, struct evhttp_request *req, int code, const char *ctype,
		      const void *body, size_t len)
{
	struct evbuffer *o = evbuffer_new();

	count(h, code);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", ctype);
	if (o && len)
		evbuffer_add(o, body, len);
	evhttp_send_reply(req, code, phrase(code), o);
	if (o)
		evbuffer_free(o);
}

static void add_location(struct evhttp_request *req, int64_t id)
{
	char loc[sizeof(MSG_PREFIX) + ID_DIGITS_MAX + 1];

	snprintf(loc, sizeof(loc), MSG_PREFIX "%" PRId64, id);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Location", loc);
}

/* The address of "a.b.c.d:port" or "[v6]:port": the log's rate limit is
 * per address, not per connection. */
static const char *peer_addr(const char *peer, char out[LOG_PEER_MAX])
{
	const char *colon = strrchr(peer, ':');
	size_t skip = peer[0] == '[';
	size_t len = colon ? (size_t)(colon - peer) : strlen(peer);

	if (skip && len > 1 && peer[len - 1] == ']')
		len--;
	snprintf(out, LOG_PEER_MAX, "%.*s", (int)(len - skip), peer + skip);
	return out;
}

/* Every refusal: a text/plain reason, and a log line with the peer and the
 * reason, never the body. */
static void refuse(struct https_in *h, struct evhttp_request *req, const char *peer, int code,
		   const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void refuse(struct https_in *h, struct evhttp_request *req, const char *peer, int code,
		   const char *fmt, ...)
{
	char text[REASON_MAX], safe[REASON_MAX + 64], addr[LOG_PEER_MAX];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(text, sizeof(text) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	if ((size_t)n > sizeof(text) - 2)
		n = (int)sizeof(text) - 2;
	log_event_peer(code >= 500 ? LOG_ERR : LOG_WARN, "https_refused", peer_addr(peer, addr),
		       " peer=%s status=%d reason=%s", peer, code,
		       log_safe(safe, sizeof(safe), text, (unsigned)n));
	if (code == 401 && h->ntokens)
		evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate",
				  "Bearer realm=\"mllp-edge\"");
	text[n++] = '\n';
	send_body(h, req, code, "text/plain; charset=utf-8", text, (size_t)n);
}

/* {"id":N,"state":"S"} */
static void send_state(struct https_in *h, struct evhttp_request *req, int code, int64_t id,
		       const char *state)
{
	char json[JSON_SMALL_MAX];
	int n = snprintf(json, sizeof(json), "{\"id\":%" PRId64 ",\"state\":\"%s\"}\n", id, state);

	add_location(req, id);
	send_body(h, req, code, "application/json", json, (size_t)n);
}

/* The current state's name, "queued" when the lookup fails. */
static void send_current(struct https_in *h, struct evhttp_request *req, int code, int64_t id)
{
	struct https_in_view v;
	char state[16] = "queued";

	memset(&v, 0, sizeof(v));
	if (h->hooks.lookup(h->hooks.arg, id, &v) == 0) {
		if (v.state && strlen(v.state) < sizeof(state))
			strcpy(state, v.state);
		if (h->hooks.release)
			h->hooks.release(h->hooks.arg, &v);
	}
	send_state(h, req, code, id, state);
}

/* Why a message ended: its last error as GET shows it ("no ACK within
 * ack_timeout", ...), or the errno's text when the row says none. */
static void last_error(struct https_in *h, int64_t id, int err, char *buf, size_t cap)
{
	struct https_in_view v;

	memset(&v, 0, sizeof(v));
	snprintf(buf, cap, "%s", strerror(-err));
	if (h->hooks.lookup(h->hooks.arg, id, &v) != 0)
		return;
	if (v.last_error && *v.last_error)
		snprintf(buf, cap, "%s", v.last_error);
	if (h->hooks.release)
		h->hooks.release(h->hooks.arg, &v);
}

/* ---- JSON ---- */

/* Length of the valid UTF-8 sequence at p (1..4), or 0. */
static size_t utf8_len(const unsigned char *p, size_t left)
{
	size_t n;
	unsigned c = p[0];
	uint32_t cp;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		n = 2, cp = c & 0x1f;
	else if (c >= 0xe0 && c <= 0xef)
		n = 3, cp = c & 0x0f;
	else if (c >= 0xf0 && c <= 0xf4)
		n = 4, cp = c & 0x07;
	else
		return 0;
	if (left < n)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[i] & 0x3f);
	}
	if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
	    (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
		return 0;
	return n;
}

/* A JSON string; bytes that are not UTF-8 become U+FFFD. */
static void json_str(struct evbuffer *o, const void *s, size_t len)
{
	const unsigned char *p = s;

	evbuffer_add(o, "\"", 1);
	for (size_t i = 0; i < len;) {
		size_t n = utf8_len(p + i, len - i);

		if (n == 0) {
			evbuffer_add(o, "\\ufffd", 6);
			i++;
		} else if (p[i] == '"' || p[i] == '\\') {
			evbuffer_add_printf(o, "\\%c", p[i]);
			i++;
		} else if (p[i] < 0x20 || p[i] == 0x7f) {
			static const char esc[] = {['\r'] = 'r', ['\n'] = 'n', ['\t'] = 't'};

			if (p[i] < sizeof(esc) && esc[p[i]])
				evbuffer_add_printf(o, "\\%c", esc[p[i]]);
			else
				evbuffer_add_printf(o, "\\u%04x", p[i]);
			i++;
		} else {
			evbuffer_add(o, p + i, n);
			i += n;
		}
	}
	evbuffer_add(o, "\"", 1);
}

static void iso_time(char *buf, size_t cap, int64_t ms)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	gmtime_r(&t, &tm);
	snprintf(buf, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
		 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}

static void send_view(struct https_in *h, struct evhttp_request *req, int64_t id,
		      const struct https_in_view *v)
{
	struct evbuffer *o = evbuffer_new();
	char when[96];

	if (!o) {
		send_body(h, req, 500, "text/plain", "out of memory\n", 14);
		return;
	}
	iso_time(when, sizeof(when), v->received_ms);
	evbuffer_add_printf(o, "{\"id\":%" PRId64 ",\"destination\":", id);
	json_str(o, v->destination, strlen(v->destination));
	evbuffer_add_printf(o, ",\"state\":");
	json_str(o, v->state, strlen(v->state));
	evbuffer_add_printf(o, ",\"attempts\":%u,\"last_error\":", v->attempts);
	if (v->last_error)
		json_str(o, v->last_error, strnlen(v->last_error, HTTPS_IN_ERROR_MAX));
	else
		evbuffer_add(o, "null", 4);
	evbuffer_add_printf(o, ",\"ack\":");
	if (v->ack)
		json_str(o, v->ack, v->ack_len);
	else
		evbuffer_add(o, "null", 4);
	evbuffer_add_printf(o, ",\"received\":\"%s\"}\n", when);
	count(h, 200);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
			  "application/json");
	evhttp_send_reply(req, 200, "OK", o);
	evbuffer_free(o);
}

/* ---- authentication ---- */

static void sha256(const void *p, size_t len, unsigned char out[HASH_LEN])
{
	unsigned int n = HASH_LEN;

	if (EVP_Digest(p, len, out, &n, EVP_sha256(), NULL) != 1)
		memset(out, 0, HASH_LEN); /* matches no token: every stored hash is real */
}

/* Every token is compared, whatever matched, so the time taken tells
 * nothing about which token or how much of it was right. */
static const struct token *find_token(const struct https_in *h, const char *tok, size_t len)
{
	unsigned char hash[HASH_LEN];
	const struct token *found = NULL;

	sha256(tok, len, hash);
	for (size_t i = 0; i < h->ntokens; i++)
		if (CRYPTO_memcmp(hash, h->tokens[i].hash, HASH_LEN) == 0)
			found = &h->tokens[i];
	OPENSSL_cleanse(hash, sizeof(hash));
	return found;
}

static int visible(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (s[i] < 0x21 || s[i] > 0x7e)
			return 0;
	return 1;
}

static SSL *req_ssl(struct evhttp_request *req)
{
	struct evhttp_connection *c = evhttp_request_get_connection(req);

	return c ? bufferevent_openssl_get_ssl(evhttp_connection_get_bufferevent(c)) : NULL;
}

/* A verified client certificate's subject CN into label; 0 if none. */
static int cert_client(const struct https_in *h, SSL *ssl, char *label, size_t cap)
{
	X509 *x;
	char cn[CLIENT_MAX - 8] = "?";

	if (!h->cfg->https.client_ca || !(x = SSL_get1_peer_certificate(ssl)))
		return 0;
	if (SSL_get_verify_result(ssl) != X509_V_OK) {
		X509_free(x);
		return 0;
	}
	X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof(cn));
	X509_free(x);
	snprintf(label, cap, "cert:%s", cn);
	return 1;
}

/* 0 and *w, or the status (401) with why. */
static int authenticate(const struct https_in *h, struct evhttp_request *req, struct who *w,
			const char **why)
{
	const char *auth =
	    evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
	int has_cert = cert_client(h, req_ssl(req), w->label, sizeof(w->label));

	w->tok = NULL;
	if (auth && h->ntokens) {
		const char *t;
		size_t len;

		if (strncasecmp(auth, "Bearer ", 7) != 0) {
			*why = "the Authorization header is not a Bearer token";
			return 401;
		}
		t = auth + 7 + strspn(auth + 7, " ");
		len = strlen(t);
		while (len && t[len - 1] == ' ')
			len--;
		if (len < HTTPS_IN_TOKEN_MIN || len > HTTPS_IN_TOKEN_MAX || !visible(t, len) ||
		    !(w->tok = find_token(h, t, len))) {
			*why = "invalid bearer token";
			return 401;
		}
		snprintf(w->label, sizeof(w->label), "token:line%d", w->tok->line);
		return 0;
	}
	if (has_cert)
		return 0;
	*why = h->ntokens
		   ? (h->cfg->https.client_ca ? "a client certificate or a bearer token is required"
					      : "a bearer token is required")
		   : "a client certificate is required";
	return 401;
}

static int dest_index(const struct https_in *h, const char *name, size_t len)
{
	for (size_t i = 0; i < h->cfg->ndestinations; i++) {
		const char *d = h->cfg->destinations[i].name;

		if (strlen(d) == len && memcmp(d, name, len) == 0)
			return (int)i;
	}
	return -1;
}

static int may_use(const struct who *w, int dest)
{
	return !w->tok || w->tok->all || (dest >= 0 && w->tok->dests[dest]);
}

/* ---- request parsing ---- */

/* The media type without parameters, lower case, if it is one we take. */
static const char *media_type(struct evhttp_request *req)
{
	const char *ct = evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Type");
	size_t len;

	if (!ct)
		return NULL;
	ct += strspn(ct, " \t");
	len = strcspn(ct, "; \t");
	for (size_t i = 0; i < sizeof(ctypes) / sizeof(ctypes[0]); i++)
		if (strlen(ctypes[i]) == len && strncasecmp(ct, ctypes[i], len) == 0)
			return ctypes[i];
	return NULL;
}

/* Prefer: wait=N (RFC 7240), among other preferences; 0 when absent or
 * malformed, clamped to HTTPS_IN_WAIT_MAX_S. */
static unsigned prefer_wait(struct evhttp_request *req)
{
	const struct evkeyvalq *hs = evhttp_request_get_input_headers(req);
	const struct evkeyval *kv;

	TAILQ_FOREACH(kv, hs, next)
	{
		const char *p = kv->value;

		if (strcasecmp(kv->key, "Prefer") != 0)
			continue;
		while (*p) {
			p += strspn(p, " \t,");
			if (strncasecmp(p, "wait", 4) == 0) {
				const char *q = p + 4 + strspn(p + 4, " \t");
				unsigned long n = 0;
				size_t digits = 0;

				if (*q == '=') {
					q += 1 + strspn(q + 1, " \t\"");
					while (digits < 9 && isdigit((unsigned char)q[digits]))
						n = n * 10 + (unsigned long)(q[digits++] - '0');
					if (digits)
						return n > HTTPS_IN_WAIT_MAX_S ? HTTPS_IN_WAIT_MAX_S
									       : (unsigned)n;
				}
			}
			p += strcspn(p, ",");
		}
	}
	return 0;
}

/* The body checked for its media type: 0, or 422 with why. control_id gets
 * MSH-10 (NUL-terminated) for HL7, "" otherwise. */
static int check_payload(const char *ctype, const unsigned char *body, size_t len,
			 char control_id[HL7_MSH_CONTROL_ID_MAX + 1], const char **why)
{
	enum payload_kind kind = hl7_payload_kind(body, len);
	struct hl7_msh msh;

	control_id[0] = '\0';
	if (strcmp(ctype, "application/edi-x12") == 0) {
		*why = "not X12: the body does not start with an ISA segment";
		return kind == PAYLOAD_X12 ? 0 : 422;
	}
	if (strstr(ctype, "xml")) {
		*why = "not XML: the body does not start with '<'";
		return kind == PAYLOAD_XML ? 0 : 422;
	}
	if (hl7_parse_msh(body, len, &msh, why) < 0)
		return 422;
	if (msh.control_id.len > HL7_MSH_CONTROL_ID_MAX) {
		*why = "MSH-10 message control ID is longer than 199 characters";
		return 422;
	}
	memcpy(control_id, msh.control_id.p, msh.control_id.len);
	control_id[msh.control_id.len] = '\0';
	return 0;
}

static void peer_text(struct evhttp_request *req, char *buf, size_t cap)
{
	struct evhttp_connection *c = evhttp_request_get_connection(req);
	char *addr = NULL;
	ev_uint16_t port = 0;

	if (c)
		evhttp_connection_get_peer(c, &addr, &port);
	if (!addr)
		snprintf(buf, cap, "?");
	else if (strchr(addr, ':'))
		snprintf(buf, cap, "[%s]:%u", addr, port);
	else
		snprintf(buf, cap, "%s:%u", addr, port);
}

/* ---- hooks' answers ---- */

static void pending_free(struct pending *p)
{
	if (p->h)
		LIST_REMOVE(p, entry);
	free(p);
}

static void on_wait(void *arg, int err, const void *ack, size_t len)
{
	struct pending *p = arg;
	struct https_in *h = p->h;

	/* once, and never after cancel() (https_in_free cancels every wait) */
	assert(h && p->state == PEND_WAIT);
	if (err == 0) {
		h->st.sync_acks++;
		add_location(p->req, p->id);
		send_body(h, p->req, 200,
			  hl7_payload_kind(ack, len) == PAYLOAD_HL7 ? CTYPE_HL7_ER7
								    : "application/octet-stream",
			  ack, len);
	} else if (err == -ETIMEDOUT) {
		h->st.sync_timeouts++;
		send_current(h, p->req, 202, p->id);
	} else {
		char why[HTTPS_IN_ERROR_MAX];

		add_location(p->req, p->id);
		last_error(h, p->id, err, why, sizeof(why));
		refuse(h, p->req, p->peer, 502, "message %" PRId64 " ended without an answer: %s",
		       p->id, why);
	}
	pending_free(p);
}

static void start_wait(struct pending *p)
{
	struct https_in *h = p->h;

	p->state = PEND_WAIT;
	if (h->hooks.wait(h->hooks.arg, p->id, (uint64_t)p->wait_s * 1000, on_wait, p,
			  &p->wait_handle) < 0) {
		h->st.sync_timeouts++;
		send_current(h, p->req, 202, p->id);
		pending_free(p);
	}
}

static void on_submitted(void *arg, int err, int64_t id, int existed)
{
	struct pending *p = arg;
	struct https_in *h = p->h;
	char label[CLIENT_MAX + 32];

	assert(p->state == PEND_SUBMIT); /* done_cb runs once */
	if (!h) {			 /* https_in_free() ran meanwhile */
		free(p);
		return;
	}
	if (err < 0) {
		refuse(h, p->req, p->peer, 503, "the message was not stored (%s); send it again",
		       strerror(-err));
		pending_free(p);
		return;
	}
	p->id = id;
	log_event(LOG_INFO, existed ? "https_repeat" : "https_accepted",
		  " peer=%s client=%s destination=%s id=%" PRId64, p->peer,
		  log_safe(label, sizeof(label), p->client, (unsigned)strlen(p->client)), p->dest,
		  id);
	if (existed)
		h->st.repeated++;
	else
		h->st.accepted++;
	if (p->wait_s) {
		start_wait(p);
		return;
	}
	if (existed)
		send_current(h, p->req, 200, id);
	else
		send_state(h, p->req, 202, id, "queued");
	pending_free(p);
}

/* ---- JSON → HL7 v2 ---- */

/* MSH-10 for a translated message: 20 random hex digits. The spool id is
 * not known before the message is stored, and a counter would repeat
 * across restarts; 80 random bits do not. */
static int new_control_id(char out[CONTROL_ID_LEN + 1])
{
	unsigned char r[CONTROL_ID_LEN / 2];

	if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r))
		return -1;
	for (size_t i = 0; i < sizeof(r); i++)
		snprintf(out + 2 * i, 3, "%02X", r[i]);
	return 0;
}

/* A JSON body into HL7 v2 with a destination's MSH values and charset.
 * 0 with *out (malloc'd) and control_id; or the request is answered (413,
 * 422 with the JSON path and the reason, 503) and -1. */
static int translate_body(struct https_in *h, struct evhttp_request *req, const char *peer,
			  const struct cfg_hl7_out *c, const void *body, size_t len,
			  char control_id[HL7_MSH_CONTROL_ID_MAX + 1], char **out, size_t *out_len)
{
	char now[32];
	time_t t = time(NULL);
	struct tm tm;
	struct xl_error e;
	struct xl_opts o = {.version = c->version,
			    .sending_app = c->sending_app,
			    .sending_facility = c->sending_fac,
			    .receiving_app = c->receiving_app,
			    .receiving_facility = c->receiving_fac,
			    .latin1 = c->latin1,
			    .control_id = control_id,
			    .now = now};
	int err;

	if (new_control_id(control_id) < 0) {
		refuse(h, req, peer, 503, "no random bytes for a message control ID");
		return -1;
	}
	strftime(now, sizeof(now), "%Y%m%d%H%M%S+0000", gmtime_r(&t, &tm));
	/* An empty body has no buffer (evbuffer_pullup gives NULL): jansson
	 * would call that "wrong arguments", not JSON that is missing. */
	err = translate_json(len ? body : "", len, &o, out, out_len, &e);
	if (err == 0) {
		h->st.translated++;
		return 0;
	}
	if (err == -ENOMEM) {
		refuse(h, req, peer, 503, "out of memory");
		return -1;
	}
	h->st.untranslated++;
	if (err == -EMSGSIZE)
		refuse(h, req, peer, 413, "JSON body of %zu bytes is over the limit of %d", len,
		       XL_JSON_MAX);
	else
		refuse(h, req, peer, 422, "%s: %s", e.path, e.reason);
	return -1;
}

/* ---- routes ---- */

/* Hands a checked message to the submit hook; the answer comes from
 * on_submitted. Every pointer is borrowed for the call. */
static void submit(struct https_in *h, struct evhttp_request *req, const char *peer,
		   const struct who *w, struct https_in_msg *m)
{
	struct pending *p = calloc(1, sizeof(*p));

	if (!p) {
		refuse(h, req, peer, 503, "out of memory");
		return;
	}
	p->h = h;
	p->req = req;
	p->state = PEND_SUBMIT;
	/* A file written over SFTP has no ACK to wait for: answered at once. */
	p->wait_s = h->cfg->destinations[dest_index(h, m->dest, strlen(m->dest))].sftp
			? 0
			: prefer_wait(req);
	snprintf(p->peer, sizeof(p->peer), "%s", peer);
	snprintf(p->client, sizeof(p->client), "%s", w->label);
	snprintf(p->dest, sizeof(p->dest), "%s", m->dest);
	LIST_INSERT_HEAD(&h->pending, p, entry);
	m->client = w->label;
	if (h->hooks.submit(h->hooks.arg, m, on_submitted, p) < 0) {
		refuse(h, req, peer, 503, "the message could not be queued; send it again");
		pending_free(p);
	}
}

/* The body as it will be stored: HL7 v2, X12 or XML checked as it came, or
 * JSON translated for destination d. 0 with *body, *len, *ctype (and *hl7
 * to free, for JSON), or the request is answered and -1. */
static int prepare_body(struct https_in *h, struct evhttp_request *req, const char *peer, int d,
			const unsigned char **body, size_t *len, const char **ctype,
			char control_id[HL7_MSH_CONTROL_ID_MAX + 1], char **hl7)
{
	const struct cfg_destination *dst = &h->cfg->destinations[d];
	const char *why = NULL;

	*hl7 = NULL;
	if (strcmp(*ctype, CTYPE_JSON) != 0) {
		if (!check_payload(*ctype, *body, *len, control_id, &why))
			return 0;
		refuse(h, req, peer, 422, "%s", why);
		return -1;
	}
	if (translate_body(h, req, peer, &dst->hl7, *body, *len, control_id, hl7, len) < 0)
		return -1;
	if (*len > dst->max_frame) {
		refuse(h, req, peer, 413,
		       "the translated message of %zu bytes is over the destination's max_frame "
		       "of %zu",
		       *len, dst->max_frame);
		free(*hl7);
		return -1;
	}
	*body = (const unsigned char *)*hl7;
	*ctype = CTYPE_HL7_ER7;
	return 0;
}

static int hexval(int c)
{
	return c >= '0' && c <= '9'   ? c - '0'
	       : c >= 'a' && c <= 'f' ? c - 'a' + 10
	       : c >= 'A' && c <= 'F' ? c - 'A' + 10
				      : -1;
}

/* Percent-decodes v into out (HTTPS_IN_FILE_NAME_MAX + 1). NULL, or why not. */
static const char *decode_name(const char *v, char *out)
{
	size_t n = 0;

	for (; *v; v++) {
		int c = (unsigned char)*v, hi, lo;

		if (c == '%') {
			if ((hi = hexval(v[1])) < 0 || (lo = hexval(v[2])) < 0)
				return "'%' must be followed by two hex digits";
			c = hi * 16 + lo;
			v += 2;
		}
		if (n == HTTPS_IN_FILE_NAME_MAX)
			return "longer than 255 bytes once decoded";
		out[n++] = (char)c;
	}
	out[n] = '\0';
	return NULL;
}

/* Well-formed UTF-8: no overlong forms, no surrogates, nothing past U+10FFFF. */
static int utf8_valid(const char *str, size_t len)
{
	const unsigned char *s = (const unsigned char *)str, *end = s + len;

	while (s < end) {
		unsigned c = *s++, n = c < 0x80		       ? 0
				       : c >= 0xc2 && c < 0xe0 ? 1
				       : (c & 0xf0) == 0xe0    ? 2
				       : c >= 0xf0 && c < 0xf5 ? 3
							       : 9;
		if (n == 9 || (size_t)(end - s) < n)
			return 0;
		if ((c == 0xe0 && s[0] < 0xa0) || (c == 0xed && s[0] > 0x9f) ||
		    (c == 0xf0 && s[0] < 0x90) || (c == 0xf4 && s[0] > 0x8f))
			return 0;
		for (unsigned k = 0; k < n; k++)
			if ((*s++ & 0xc0) != 0x80)
				return 0;
	}
	return 1;
}

/* What a file name on the hospital's server may be: one plain name, no
 * folder, nothing hidden, printable. */
static const char *check_name(const char *s)
{
	if (!*s)
		return "is empty";
	if (s[0] == '.')
		return "must not start with '.'";
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if (*p == '/' || *p == '\\' || *p < 0x20 || *p == 0x7f)
			return "must not hold '/', '\\' or control characters";
	if (!utf8_valid(s, strlen(s)))
		return "is not UTF-8 once decoded";
	return NULL;
}

/* X-File-Name (percent-encoded UTF-8) names the file an SFTP destination
 * gets; other destinations refuse it rather than drop it silently. 0 with
 * out ("" when absent), or the request is answered and -1. */
static int file_name_header(struct https_in *h, struct evhttp_request *req, const char *peer, int d,
			    char *out)
{
	const char *v = evhttp_find_header(evhttp_request_get_input_headers(req), "X-File-Name");
	const char *why;

	out[0] = '\0';
	if (!v)
		return 0;
	if (!h->cfg->destinations[d].sftp) {
		refuse(h, req, peer, 400, "X-File-Name applies to SFTP destinations only");
		return -1;
	}
	if ((why = decode_name(v, out)) || (why = check_name(out))) {
		refuse(h, req, peer, 400, "X-File-Name: %s", why);
		out[0] = '\0';
		return -1;
	}
	return 0;
}

static void post_message(struct https_in *h, struct evhttp_request *req, const char *peer,
			 const struct who *w, const char *name, size_t name_len)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(in);
	const char *ctype = media_type(req);
	const char *key =
	    evhttp_find_header(evhttp_request_get_input_headers(req), "Idempotency-Key");
	char control_id[HL7_MSH_CONTROL_ID_MAX + 1], file_name[HTTPS_IN_FILE_NAME_MAX + 1];
	const unsigned char *body;
	struct https_in_msg m;
	char *hl7;
	size_t limit;
	int d = dest_index(h, name, name_len);

	if (!may_use(w, d)) {
		refuse(h, req, peer, 403, "this credential may not send to destination %.*s",
		       (int)(name_len > CFG_NAME_MAX ? CFG_NAME_MAX : name_len), name);
		return;
	}
	if (d < 0) {
		refuse(h, req, peer, 404, "no such destination: %.*s",
		       (int)(name_len > CFG_NAME_MAX ? CFG_NAME_MAX : name_len), name);
		return;
	}
	if (!ctype) {
		refuse(h, req, peer, 415,
		       "Content-Type must be x-application/hl7-v2+er7, application/hl7-v2, "
		       "application/edi-x12, application/xml, text/xml or application/json");
		return;
	}
	/* JSON is held to max_frame once translated: it is the HL7 that is sent. */
	limit = strcmp(ctype, CTYPE_JSON) == 0 ||
			h->cfg->https.max_body < h->cfg->destinations[d].max_frame
		    ? h->cfg->https.max_body
		    : h->cfg->destinations[d].max_frame;
	if (len > limit) {
		refuse(h, req, peer, 413, "body of %zu bytes is over the limit of %zu", len, limit);
		return;
	}
	if (key && (!*key || strlen(key) > HTTPS_IN_KEY_MAX || !visible(key, strlen(key)))) {
		refuse(h, req, peer, 400,
		       "Idempotency-Key must be 1 to 64 visible ASCII characters");
		return;
	}
	body = evbuffer_pullup(in, -1);
	if (len && !body) {
		refuse(h, req, peer, 503, "out of memory");
		return;
	}
	if (file_name_header(h, req, peer, d, file_name) < 0 ||
	    prepare_body(h, req, peer, d, &body, &len, &ctype, control_id, &hl7) < 0)
		return;
	m = (struct https_in_msg){.dest = h->cfg->destinations[d].name,
				  .body = body,
				  .len = len,
				  .content_type = ctype,
				  .control_id = control_id[0] ? control_id : NULL,
				  .idem_key = key,
				  .file_name = file_name[0] ? file_name : NULL};
	submit(h, req, peer, w, &m);
	free(hl7);
}

/* POST /v1/translate[?destination=NAME]: the HL7 v2 for a JSON body, with
 * that destination's MSH values and charset (the defaults without one).
 * Nothing is stored or sent: for analysts testing their JSON. */
static void post_translate(struct https_in *h, struct evhttp_request *req, const char *peer,
			   const struct who *w)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	const char *q = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
	const char *name = NULL, *ctype;
	struct evkeyvalq args;
	struct cfg_hl7_out defaults;
	const struct cfg_hl7_out *c = &defaults;
	char control_id[HL7_MSH_CONTROL_ID_MAX + 1];
	size_t len = evbuffer_get_length(in), out_len;
	const unsigned char *body;
	char *out;
	int d = -1;

	TAILQ_INIT(&args);
	cfg_hl7_out_defaults(&defaults);
	if (q && (evhttp_parse_query_str(q, &args) < 0 || !TAILQ_FIRST(&args) ||
		  TAILQ_NEXT(TAILQ_FIRST(&args), next) ||
		  strcmp(TAILQ_FIRST(&args)->key, "destination") != 0)) {
		refuse(h, req, peer, 400, "the only query parameter is destination=NAME");
		goto out;
	}
	if (q) {
		name = TAILQ_FIRST(&args)->value;
		d = dest_index(h, name, strlen(name));
		if (!may_use(w, d)) {
			refuse(h, req, peer, 403,
			       "this credential may not send to destination %.*s", CFG_NAME_MAX,
			       name);
			goto out;
		}
		if (d < 0) {
			refuse(h, req, peer, 404, "no such destination: %.*s", CFG_NAME_MAX, name);
			goto out;
		}
		c = &h->cfg->destinations[d].hl7;
	}
	ctype = media_type(req);
	if (!ctype || strcmp(ctype, CTYPE_JSON) != 0) {
		refuse(h, req, peer, 415, "Content-Type must be application/json");
		goto out;
	}
	body = evbuffer_pullup(in, -1);
	if (len && !body) {
		refuse(h, req, peer, 503, "out of memory");
		goto out;
	}
	if (translate_body(h, req, peer, c, body, len, control_id, &out, &out_len) == 0) {
		send_body(h, req, 200,
			  c->latin1 ? CTYPE_HL7_ER7 "; charset=iso-8859-1"
				    : CTYPE_HL7_ER7 "; charset=utf-8",
			  out, out_len);
		free(out);
	}
out:
	evhttp_clear_headers(&args);
}

/* 0 and *id for a decimal id 1..INT64_MAX without sign or leading zero. */
static int parse_id(const char *s, int64_t *id)
{
	uint64_t v = 0;
	size_t n = strlen(s);

	if (n == 0 || n > ID_DIGITS_MAX || s[0] == '0')
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		if (!isdigit((unsigned char)s[i]))
			return -EINVAL;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	if (v > INT64_MAX)
		return -EINVAL;
	*id = (int64_t)v;
	return 0;
}

static void get_message(struct https_in *h, struct evhttp_request *req, const char *peer,
			const struct who *w, const char *idtext)
{
	struct https_in_view v;
	int64_t id;

	memset(&v, 0, sizeof(v));
	if (parse_id(idtext, &id) < 0 || h->hooks.lookup(h->hooks.arg, id, &v) < 0) {
		refuse(h, req, peer, 404, "no such message");
		return;
	}
	if (!v.destination || !v.state) {
		refuse(h, req, peer, 500, "message %" PRId64 " has no state", id);
	} else if (!may_use(w, dest_index(h, v.destination, strlen(v.destination)))) {
		refuse(h, req, peer, 403, "this credential may not read messages of destination %s",
		       v.destination);
	} else {
		send_view(h, req, id, &v);
	}
	if (h->hooks.release)
		h->hooks.release(h->hooks.arg, &v);
}

static void on_request(struct evhttp_request *req, void *arg)
{
	struct https_in *h = arg;
	const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	char peer[LOG_PEER_MAX];
	const char *why = NULL;
	struct who w;
	int code;

	peer_text(req, peer, sizeof(peer));
	if (!req_ssl(req)) { /* evhttp falls back to plain TCP when bevcb fails */
		evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
		refuse(h, req, peer, 421, "TLS is required");
		return;
	}
	if (!path)
		path = "";
	if ((code = authenticate(h, req, &w, &why))) {
		refuse(h, req, peer, code, "%s", why);
		return;
	}
	if (strncmp(path, DEST_PREFIX, strlen(DEST_PREFIX)) == 0) {
		const char *name = path + strlen(DEST_PREFIX);
		const char *slash = strchr(name, '/');

		if (slash && slash > name && strcmp(slash, DEST_SUFFIX) == 0) {
			if (cmd == EVHTTP_REQ_POST) {
				post_message(h, req, peer, &w, name, (size_t)(slash - name));
			} else {
				evhttp_add_header(evhttp_request_get_output_headers(req), "Allow",
						  "POST");
				refuse(h, req, peer, 405, "only POST is allowed here");
			}
			return;
		}
	} else if (strcmp(path, TRANSLATE_PATH) == 0) {
		if (cmd == EVHTTP_REQ_POST) {
			post_translate(h, req, peer, &w);
		} else {
			evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "POST");
			refuse(h, req, peer, 405, "only POST is allowed here");
		}
		return;
	} else if (strncmp(path, MSG_PREFIX, strlen(MSG_PREFIX)) == 0) {
		if (cmd == EVHTTP_REQ_GET || cmd == EVHTTP_REQ_HEAD) {
			get_message(h, req, peer, &w, path + strlen(MSG_PREFIX));
		} else {
			evhttp_add_header(evhttp_request_get_output_headers(req), "Allow",
					  "GET, HEAD");
			refuse(h, req, peer, 405, "only GET is allowed here");
		}
		return;
	}
	refuse(h, req, peer, 404,
	       "not found: POST /v1/destinations/{name}/messages, GET /v1/messages/{id} or POST "
	       "/v1/translate");
}

/* ---- tokens_file ---- */

/* One line "TOKEN DESTS" into t. 0, or -EINVAL with *why. */
static int parse_token_line(const struct cfg *cfg, char *line, struct token *t, const char **why)
{
	char *tok = line + strspn(line, " \t"), *dests, *end;
	size_t len = strcspn(tok, " \t");

	dests = tok + len;
	if (!*dests) {
		*why = "expected TOKEN and DESTINATIONS (* or a comma-separated list)";
		return -EINVAL;
	}
	*dests++ = '\0';
	dests += strspn(dests, " \t");
	end = dests + strcspn(dests, " \t");
	if (*(end + strspn(end, " \t"))) {
		*why = "destinations are one comma-separated list without spaces";
		return -EINVAL;
	}
	*end = '\0';
	if (len < HTTPS_IN_TOKEN_MIN || len > HTTPS_IN_TOKEN_MAX || !visible(tok, len)) {
		*why = "a token is 16 to 256 visible ASCII characters";
		return -EINVAL;
	}
	sha256(tok, len, t->hash);
	OPENSSL_cleanse(tok, len);
	if (strcmp(dests, "*") == 0) {
		t->all = 1;
		return 0;
	}
	if (!(t->dests = calloc(cfg->ndestinations ? cfg->ndestinations : 1, 1))) {
		*why = "out of memory";
		return -ENOMEM;
	}
	for (char *d = dests, *next; d; d = next) {
		size_t n = strcspn(d, ",");
		int i = -1;

		next = d[n] ? d + n + 1 : NULL; /* "lab," ends with an empty name */
		for (size_t k = 0; k < cfg->ndestinations; k++)
			if (strlen(cfg->destinations[k].name) == n &&
			    memcmp(cfg->destinations[k].name, d, n) == 0)
				i = (int)k;
		if (i < 0) {
			*why = n ? "unknown destination" : "empty destination name";
			return -EINVAL;
		}
		t->dests[i] = 1;
	}
	return 0;
}

static int add_token_line(struct https_in *h, const char *file, int lineno, char *line)
{
	struct token t = {.line = lineno};
	const char *why = NULL;
	int err;

	if ((err = parse_token_line(h->cfg, line, &t, &why)) < 0) {
		log_event(LOG_ERR, "https_tokens_invalid", " file=%s:%d reason=\"%s\"", file,
			  lineno, why);
		free(t.dests);
		return err;
	}
	for (size_t i = 0; i < h->ntokens; i++)
		if (CRYPTO_memcmp(h->tokens[i].hash, t.hash, HASH_LEN) == 0) {
			log_event(LOG_ERR, "https_tokens_invalid",
				  " file=%s:%d reason=\"the same token as line %d\"", file, lineno,
				  h->tokens[i].line);
			free(t.dests);
			return -EINVAL;
		}
	if (h->ntokens >= CFG_TOKENS_MAX) {
		log_event(LOG_ERR, "https_tokens_invalid", " file=%s:%d reason=\"over %d tokens\"",
			  file, lineno, CFG_TOKENS_MAX);
		free(t.dests);
		return -EINVAL;
	}
	h->tokens[h->ntokens++] = t;
	return 0;
}

static int load_tokens(struct https_in *h, const char *file)
{
	FILE *f = fopen(file, "re");
	struct stat st;
	char *buf = NULL;
	int err = 0, lineno = 0;

	if (!f || fstat(fileno(f), &st) < 0) {
		err = -errno;
		log_event(LOG_ERR, "https_tokens_invalid", " file=%s error=\"%s\"", file,
			  strerror(errno));
		if (f)
			fclose(f);
		return err;
	}
	if ((uint64_t)st.st_size > HTTPS_IN_TOKENS_FILE_MAX) {
		log_event(LOG_ERR, "https_tokens_invalid", " file=%s reason=\"over %u bytes\"",
			  file, HTTPS_IN_TOKENS_FILE_MAX);
		fclose(f);
		return -EINVAL;
	}
	if (st.st_mode & S_IROTH)
		log_event(LOG_WARN, "https_tokens_readable", " file=%s", file);
	if (!(h->tokens = calloc(CFG_TOKENS_MAX, sizeof(*h->tokens))) ||
	    !(buf = malloc(HTTPS_IN_TOKENS_FILE_MAX + 1))) {
		fclose(f);
		return -ENOMEM;
	}
	while (!err && fgets(buf, HTTPS_IN_TOKENS_FILE_MAX + 1, f)) {
		char *s = buf + strspn(buf, " \t");

		lineno++;
		s[strcspn(s, "\r\n")] = '\0';
		if (*s && *s != '#')
			err = add_token_line(h, file, lineno, s);
	}
	OPENSSL_cleanse(buf, HTTPS_IN_TOKENS_FILE_MAX + 1);
	free(buf);
	fclose(f);
	if (!err && h->ntokens == 0) {
		log_event(LOG_ERR, "https_tokens_invalid", " file=%s reason=\"no token\"", file);
		err = -EINVAL;
	}
	return err;
}

/* ---- TLS and the listener ---- */

static void log_ssl_error(const char *what, const char *file)
{
	char text[256] = "";
	unsigned long e = ERR_get_error();

	if (e)
		ERR_error_string_n(e, text, sizeof(text));
	ERR_clear_error();
	log_event(LOG_ERR, "https_tls_setup_failed", " what=%s file=%s error=\"%s\"", what,
		  file ? file : "-", text);
}

static int make_ssl_ctx(struct https_in *h)
{
	const struct cfg_https *c = &h->cfg->https;
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	int mode = SSL_VERIFY_PEER;

	if (!(h->ssl = ctx))
		return -ENOMEM;
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
				     SSL_OP_NO_COMPRESSION);
	if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
	    !SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) ||
	    !SSL_CTX_set_cipher_list(ctx, UPSTREAM_TLS12_CIPHERS) ||
	    !SSL_CTX_set_ciphersuites(ctx, UPSTREAM_TLS13_SUITES)) {
		log_ssl_error("cipher_policy", NULL);
		return -EINVAL;
	}
	if (SSL_CTX_use_certificate_chain_file(ctx, c->cert) != 1) {
		log_ssl_error("cert", c->cert);
		return -EINVAL;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, c->key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		log_ssl_error("key", c->key);
		return -EINVAL;
	}
	SSL_CTX_set_session_id_context(ctx, (const unsigned char *)SESSION_CTX,
				       sizeof(SESSION_CTX) - 1);
	if (!c->client_ca)
		return 0;
	STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(c->client_ca);
	if (!names || SSL_CTX_load_verify_locations(ctx, c->client_ca, NULL) != 1) {
		sk_X509_NAME_pop_free(names, X509_NAME_free);
		log_ssl_error("client_ca", c->client_ca);
		return -EINVAL;
	}
	SSL_CTX_set_client_CA_list(ctx, names);
	/* A client certificate must be one made for clients. */
	SSL_CTX_set_purpose(ctx, X509_PURPOSE_SSL_CLIENT);
	/* Without tokens the certificate is the only credential: no
	 * certificate, no handshake. With tokens it is optional, but one that
	 * is presented must verify (SSL_VERIFY_PEER fails the handshake). */
	if (!c->tokens_file)
		mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
	SSL_CTX_set_verify(ctx, mode, NULL);
	return 0;
}

/* Called by evhttp for each accepted connection. Returning NULL would make
 * evhttp speak plain HTTP on it: on_request refuses those (421). */
static struct bufferevent *on_new_conn(struct event_base *base, void *arg)
{
	struct https_in *h = arg;
	SSL *ssl = SSL_new(h->ssl);
	struct bufferevent *bev;

	if (!ssl)
		return NULL;
	bev = bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING,
					     BEV_OPT_CLOSE_ON_FREE);
	if (bev)
		bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	return bev; /* on failure libevent freed ssl */
}

static void on_resume(evutil_socket_t fd, short what, void *arg)
{
	struct https_in *h = arg;

	(void)fd;
	(void)what;
	evconnlistener_enable(h->listener);
}

/* Out of descriptors (EMFILE, ENFILE, ENOBUFS): the listening socket stays
 * readable, and accepting again at once would spin; it rests for
 * HTTPS_IN_ACCEPT_PAUSE_MS. */
static void on_accept_error(struct evconnlistener *lev, void *arg)
{
	static const struct timeval pause = {0, HTTPS_IN_ACCEPT_PAUSE_MS * 1000};
	struct https_in *h;
	int err = errno;

	(void)arg;
	LIST_FOREACH(h, &g_live, live)
	if (h->listener == lev)
		break;
	if (!h)
		return;
	log_event(LOG_WARN, "https_accept_paused", " error=\"%s\" pause_ms=%d", strerror(err),
		  HTTPS_IN_ACCEPT_PAUSE_MS);
	evconnlistener_disable(lev);
	if (evtimer_add(h->resume, &pause) < 0)
		evconnlistener_enable(lev); /* better to spin than to go deaf */
}

static int bind_listener(struct https_in *h)
{
	struct evhttp_bound_socket *bs = NULL;
	const struct cfg_https *c = &h->cfg->https;
	const struct sockaddr *sa = (const struct sockaddr *)&c->listen;
	struct sockaddr_storage bound;
	socklen_t blen = sizeof(bound);
	evutil_socket_t fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	int one = 1;

	/* TCP_NODELAY is inherited by the accepted sockets (Linux): an answer
	 * leaves as two TLS records, headers then body, and Nagle would hold
	 * the second one for the client's delayed ACK (40 ms a request). */
	if (fd < 0 || evutil_make_listen_socket_reuseable(fd) < 0 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0 ||
	    bind(fd, sa, c->listen_len) < 0 || listen(fd, HTTPS_IN_BACKLOG) < 0 ||
	    getsockname(fd, (struct sockaddr *)&bound, &blen) < 0 ||
	    !(bs = evhttp_accept_socket_with_handle(h->http, fd))) {
		int err = errno;

		if (fd >= 0)
			close(fd);
		log_event(LOG_ERR, "https_listen_failed", " listen=%s error=\"%s\"", c->listen_text,
			  strerror(err));
		return -(err ? err : EADDRNOTAVAIL);
	}
	h->listener = evhttp_bound_socket_get_listener(bs);
	evconnlistener_set_error_cb(h->listener, on_accept_error);
	h->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
						    : ((struct sockaddr_in *)&bound)->sin_port);
	return 0;
}

static int check_args(const struct cfg *cfg, const struct https_in_hooks *hk)
{
	if (!hk || !hk->submit || !hk->lookup || !hk->wait || !hk->cancel)
		return -EINVAL;
	if (!cfg->https.cert || !cfg->https.key || !cfg->https.max_body) {
		log_event(LOG_ERR, "https_config_invalid",
			  " reason=\"cert, key and max_body are "
			  "required\"");
		return -EINVAL;
	}
	if (!cfg->https.client_ca && !cfg->https.tokens_file) {
		log_event(LOG_ERR, "https_config_invalid",
			  " reason=\"neither client_ca nor tokens_file: nobody could "
			  "authenticate\"");
		return -EINVAL;
	}
	return 0;
}

int https_in_new(struct event_base *base, const struct cfg *cfg, const struct https_in_hooks *hooks,
		 struct https_in **out)
{
	struct https_in *h;
	int err;

	*out = NULL;
	if (!cfg->https.listen_text)
		return 0;
	if ((err = check_args(cfg, hooks)) < 0)
		return err;
	if (!(h = calloc(1, sizeof(*h))))
		return -ENOMEM;
	h->base = base;
	h->cfg = cfg;
	h->hooks = *hooks;
	LIST_INIT(&h->pending);
	LIST_INSERT_HEAD(&g_live, h, live);
	if ((err = make_ssl_ctx(h)) < 0 ||
	    (cfg->https.tokens_file && (err = load_tokens(h, cfg->https.tokens_file)) < 0))
		goto fail;
	if (!(h->http = evhttp_new(base)) || !(h->resume = evtimer_new(base, on_resume, h))) {
		err = -ENOMEM;
		goto fail;
	}
	evhttp_set_bevcb(h->http, on_new_conn, h);
	evhttp_set_allowed_methods(h->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST);
	/* Content-Length over max_body: refused (413) before the body is read. */
	evhttp_set_max_body_size(h->http, (ev_ssize_t)cfg->https.max_body);
	evhttp_set_max_headers_size(h->http, HTTPS_IN_HEADERS_MAX);
	evhttp_set_timeout(h->http, HTTPS_IN_TIMEOUT_S);
	/* ... and the client reads that answer: the rest of its body is read
	 * and dropped rather than reset. */
	evhttp_set_flags(h->http, EVHTTP_SERVER_LINGERING_CLOSE);
	evhttp_set_gencb(h->http, on_request, h);
	if ((err = bind_listener(h)) < 0)
		goto fail;
	log_event(LOG_INFO, "https_listen", " listen=%s mtls=%s tokens=%zu", cfg->https.listen_text,
		  cfg->https.client_ca ? "yes" : "no", h->ntokens);
	*out = h;
	return 0;
fail:
	https_in_free(h);
	return err;
}

void https_in_free(struct https_in *h)
{
	struct pending *p;

	if (!h)
		return;
	while ((p = LIST_FIRST(&h->pending))) {
		LIST_REMOVE(p, entry);
		p->h = NULL;
		p->req = NULL; /* evhttp_free() frees it */
		if (p->state == PEND_WAIT) {
			h->hooks.cancel(h->hooks.arg, p->wait_handle);
			free(p);
		} /* else: on_submitted frees it */
	}
	LIST_REMOVE(h, live);
	if (h->resume)
		event_free(h->resume);
	if (h->http)
		evhttp_free(h->http);
	if (h->ssl)
		SSL_CTX_free(h->ssl);
	for (size_t i = 0; i < h->ntokens; i++)
		free(h->tokens[i].dests);
	if (h->tokens)
		OPENSSL_cleanse(h->tokens, CFG_TOKENS_MAX * sizeof(*h->tokens));
	free(h->tokens);
	free(h);
}

int https_in_port(const struct https_in *h)
{
	return h ? h->port : 0;
}

void https_in_stats(const struct https_in *h, struct https_in_stats *st)
{
	memset(st, 0, sizeof(*st));
	if (h)
		*st = h->st;
}
