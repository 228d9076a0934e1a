/*
 * HTTPS client toward the cloud API: one CURLM driven by libevent through
 * the multi_socket API. curl tells us which sockets and which timeout it
 * wants (on_socket/on_curl_timer); libevent tells curl when they fire
 * (on_event/on_timer_event); finished transfers are collected afterwards.
 *
 * Completion callbacks only ever run from those event callbacks, never from
 * upstream_post(): upstream_post() only adds the handle, and adding a handle
 * merely asks (through on_curl_timer) for a zero timeout, so the transfer
 * starts, and can finish, only once the loop runs again.
 */
#include "mllp-bridge/upstream.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <curl/curl.h>
#include <event2/event.h>
#include <openssl/ssl.h>

#include "mllp-bridge/log.h"

#define UPSTREAM_USER_AGENT	      "mllp-edge/0.1"
#define UPSTREAM_DEFAULT_CTYPE	      "application/octet-stream"
#define UPSTREAM_BODY_INITIAL	      4096
#define UPSTREAM_RETRY_AFTER_TEXT_MAX 64 /* longer Retry-After values are ignored */
#define UPSTREAM_DIGITS_MAX	      18 /* a longer Content-Length is not believed */
/* libcurl's message when it stops retrying unprocessed requests (lib/transfer.c) */
#define UPSTREAM_CURL_GAVE_UP "Connection died, tried "
#define UPSTREAM_LOST_TEXT                                                                         \
	"the server answered before reading the whole request and reset the HTTP/2 stream; "       \
	"libcurl lost the answer"

struct xfer {
	TAILQ_ENTRY(xfer) entry; /* in u->active or u->idle */
	struct upstream *u;
	CURL *easy;
	struct curl_slist *headers;
	upstream_cb cb;
	void *arg;
	char *body; /* cap + 1 bytes, NUL-terminated */
	size_t len, cap;
	int truncated;
	int nomem;
	char ctype[UPSTREAM_CTYPE_MAX];
	int64_t retry_after_ms;
	/* what the early-answer check needs: see upstream_answered_early() */
	long hdr_status;	/* status of the response whose headers are read */
	int headers_done;	/* its header block ended, and it is final */
	int64_t content_length; /* -1: none */
	uint64_t received;	/* body bytes, counting those cut */
	int resumed;		/* the connection's TLS handshake resumed a session */
	unsigned resends;	/* times we added the request again (UPSTREAM_RESENDS_MAX) */
	int forbidden;		/* an address was refused (upstream_forbid): why says which */
	char why[UPSTREAM_WHY_MAX];
	char errbuf[CURL_ERROR_SIZE];
};

/* One range no connection may reach, and whose it is. */
struct forbidden {
	struct cfg_cidr cidr;
	const char *label;
};

/* One per socket curl watches; attached to curl with curl_multi_assign(). */
struct usock {
	LIST_ENTRY(usock) entry;
	struct upstream *u;
	struct event *ev;
	curl_socket_t fd;
};

struct upstream {
	struct event_base *base;
	CURLM *multi;
	struct event *timer;
	TAILQ_HEAD(, xfer) active;
	TAILQ_HEAD(, xfer) idle;
	unsigned nidle;
	LIST_HEAD(, usock) socks;
	struct upstream_stats stats;
	struct forbidden *forbidden; /* upstream_forbid() */
	size_t nforbidden;
	int dispatching; /* inside collect_done(): freeing must wait */
	int dying;
};

static void collect_done(struct upstream *u);

/* ---- curl <-> libevent glue ---- */

static void on_event(evutil_socket_t fd, short what, void *arg)
{
	struct usock *s = arg;
	struct upstream *u = s->u; /* s may be freed by the call below */
	int action = 0, running;

	if (what & EV_READ)
		action |= CURL_CSELECT_IN;
	if (what & EV_WRITE)
		action |= CURL_CSELECT_OUT;
	(void)curl_multi_socket_action(u->multi, fd, action, &running);
	collect_done(u);
}

static void usock_free(struct usock *s)
{
	LIST_REMOVE(s, entry);
	if (s->ev)
		event_free(s->ev);
	free(s);
}

static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	struct upstream *u = userp;
	struct usock *s = socketp;
	short flags = EV_PERSIST;

	(void)easy;
	if (what == CURL_POLL_REMOVE) {
		if (s)
			usock_free(s); /* curl drops its reference to s itself */
		return 0;
	}
	if (what & CURL_POLL_IN)
		flags |= EV_READ;
	if (what & CURL_POLL_OUT)
		flags |= EV_WRITE;
	if (!s) {
		s = calloc(1, sizeof(*s));
		if (!s)
			return -1;
		s->u = u;
		s->fd = fd;
		LIST_INSERT_HEAD(&u->socks, s, entry);
		(void)curl_multi_assign(u->multi, fd, s);
	} else if (s->ev) {
		event_free(s->ev);
		s->ev = NULL;
	}
	s->ev = event_new(u->base, fd, flags, on_event, s);
	if (!s->ev || event_add(s->ev, NULL) != 0)
		return -1;
	return 0;
}

static void on_timer_event(evutil_socket_t fd, short what, void *arg)
{
	struct upstream *u = arg;
	int running;

	(void)fd;
	(void)what;
	(void)curl_multi_socket_action(u->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	collect_done(u);
}

static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
	struct upstream *u = userp;
	struct timeval tv;

	(void)multi;
	if (timeout_ms < 0)
		return event_del(u->timer) == 0 ? 0 : -1;
	tv.tv_sec = timeout_ms / 1000;
	tv.tv_usec = (timeout_ms % 1000) * 1000;
	return evtimer_add(u->timer, &tv) == 0 ? 0 : -1;
}

/* ---- transfer objects ---- */

static void xfer_destroy(struct xfer *x)
{
	curl_slist_free_all(x->headers);
	curl_easy_cleanup(x->easy);
	free(x->body);
	free(x);
}

static struct xfer *xfer_get(struct upstream *u)
{
	struct xfer *x = TAILQ_FIRST(&u->idle);

	if (x) {
		TAILQ_REMOVE(&u->idle, x, entry);
		u->nidle--;
		return x;
	}
	x = calloc(1, sizeof(*x));
	if (!x)
		return NULL;
	x->u = u;
	x->easy = curl_easy_init();
	if (!x->easy) {
		free(x);
		return NULL;
	}
	return x;
}

/* Forgets what a failed attempt left, before the transfer runs again. */
static void xfer_rewind(struct xfer *x)
{
	x->len = x->received = 0;
	x->truncated = x->nomem = x->headers_done = x->resumed = 0;
	x->ctype[0] = x->errbuf[0] = '\0';
	x->retry_after_ms = -1;
	x->hdr_status = 0;
	x->content_length = -1;
	x->forbidden = 0;
	x->why[0] = '\0';
}

/* Back to the idle list, forgetting every borrowed pointer; connections
 * stay in the multi's pool, so reuse does not depend on the easy handle.
 * The handle keeps its TLS session cache (curl_easy_reset leaves it), and
 * the most recently used handle is taken first, so a new connection offers
 * the ticket of a recent one. One cache per handle on purpose, not a
 * CURLSH shared by all: curl keeps one session per host, and parallel
 * handshakes offering the same TLS 1.3 ticket mostly fail to resume
 * (nginx 1.22 / OpenSSL 3.0, keepalive_timeout 0, 16 in parallel: about
 * half resumed with a share, 96 % with a cache per handle; TLS 1.2 resumes
 * either way). */
static void xfer_put(struct upstream *u, struct xfer *x)
{
	curl_easy_reset(x->easy);
	curl_slist_free_all(x->headers);
	x->headers = NULL;
	free(x->body);
	x->body = NULL;
	x->len = x->cap = 0;
	x->cb = NULL;
	x->arg = NULL;
	if (u->nidle >= UPSTREAM_IDLE_HANDLES) {
		xfer_destroy(x);
		return;
	}
	TAILQ_INSERT_HEAD(&u->idle, x, entry);
	u->nidle++;
}

/* ---- addresses no connection may reach ---- */

static void cidr_text(const struct cfg_cidr *c, char *buf, size_t cap)
{
	char a[INET6_ADDRSTRLEN] = "?";

	inet_ntop(c->family, c->addr, a, sizeof(a));
	snprintf(buf, cap, "%s/%u", a, c->prefix);
}

static void addr_text(const struct sockaddr *sa, char *buf, size_t cap)
{
	struct sockaddr_storage ss;

	memcpy(&ss, sa,
	       sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
					 : sizeof(struct sockaddr_in));
	snprintf(buf, cap, "?");
	if (ss.ss_family == AF_INET)
		inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, buf, (socklen_t)cap);
	else if (ss.ss_family == AF_INET6)
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, buf, (socklen_t)cap);
}

static const struct forbidden *forbidden_for(const struct upstream *u, const struct sockaddr *sa)
{
	if (sa->sa_family != AF_INET && sa->sa_family != AF_INET6)
		return NULL;
	for (size_t i = 0; i < u->nforbidden; i++)
		if (cfg_cidr_contains(&u->forbidden[i].cidr, sa))
			return &u->forbidden[i];
	return NULL;
}

/* curl asks us for the socket of every address it tries: the one place
 * that sees what a host name resolved to before a byte leaves. A refused
 * address fails only this attempt; curl goes on with the next address,
 * and the request fails (and is retried later) when none is left. */
static curl_socket_t on_open_socket(void *arg, curlsocktype purpose, struct curl_sockaddr *a)
{
	struct xfer *x = arg;
	const struct forbidden *f = forbidden_for(x->u, &a->addr);
	char addr[INET6_ADDRSTRLEN], net[INET6_ADDRSTRLEN + 8];

	(void)purpose;
	if (!f)
		return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
	x->u->stats.in_tunnel++;
	x->forbidden = 1;
	addr_text(&a->addr, addr, sizeof(addr));
	cidr_text(&f->cidr, net, sizeof(net));
	snprintf(x->why, sizeof(x->why),
		 "upstream address %s is inside tunnel %s's remote_ts %s: "
		 "HTTPS never goes through a tunnel",
		 addr, f->label, net);
	log_event_peer(LOG_ERR, "upstream_in_tunnel", addr,
		       " address=%s tunnel=%s remote_ts=%s action=\"connection refused\"", addr,
		       f->label, net);
	return CURL_SOCKET_BAD;
}

int upstream_forbid(struct upstream *u, const struct cfg_cidr *cidr, const char *label)
{
	struct forbidden *more;

	if ((cidr->family != AF_INET || cidr->prefix > 32) &&
	    (cidr->family != AF_INET6 || cidr->prefix > 128))
		return -EINVAL;
	if (u->nforbidden == UPSTREAM_FORBIDDEN_MAX)
		return -ENOSPC;
	if (!(more = realloc(u->forbidden, (u->nforbidden + 1) * sizeof(*more))))
		return -ENOMEM;
	u->forbidden = more;
	u->forbidden[u->nforbidden++] = (struct forbidden){.cidr = *cidr, .label = label};
	return 0;
}

/* ---- response capture ---- */

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
	struct xfer *x = arg;
	size_t len = size * n, take = len, need, cap;
	char *p;

	x->received += len;
	if (take > UPSTREAM_RESPONSE_MAX - x->len) {
		take = UPSTREAM_RESPONSE_MAX - x->len;
		x->truncated = 1;
	}
	need = x->len + take;
	if (need > x->cap) {
		cap = x->cap ? x->cap : UPSTREAM_BODY_INITIAL;
		while (cap < need)
			cap *= 2;
		if (cap > UPSTREAM_RESPONSE_MAX)
			cap = UPSTREAM_RESPONSE_MAX;
		p = realloc(x->body, cap + 1);
		if (!p) {
			x->nomem = 1;
			return 0; /* aborts the transfer with CURLE_WRITE_ERROR */
		}
		x->body = p;
		x->cap = cap;
	}
	if (take) {
		memcpy(x->body + x->len, data, take);
		x->len += take;
		x->body[x->len] = '\0';
	}
	return len; /* the cut part is consumed too, so the transfer completes */
}

/* If line is "name: value", points *v at the value without surrounding
 * blanks and line ending. */
static int header_value(const char *line, size_t len, const char *name, const char **v,
			size_t *vlen)
{
	size_t nlen = strlen(name), i, end;

	if (len <= nlen || line[nlen] != ':' || strncasecmp(line, name, nlen) != 0)
		return 0;
	for (i = nlen + 1; i < len && (line[i] == ' ' || line[i] == '\t'); i++)
		;
	for (end = len; end > i && strchr(" \t\r\n", line[end - 1]); end--)
		;
	*v = line + i;
	*vlen = end - i;
	return 1;
}

/* Whether the connection's handshake resumed a TLS session. Asked while a
 * response arrives, because curl hands out the SSL object only while the
 * connection is open, and one that closes after its response is gone by
 * the time the transfer is reported done. */
static void note_resumption(struct xfer *x)
{
	struct curl_tlssessioninfo *ti = NULL;

	if (curl_easy_getinfo(x->easy, CURLINFO_TLS_SSL_PTR, &ti) == CURLE_OK && ti &&
	    ti->backend == CURLSSLBACKEND_OPENSSL && ti->internals)
		x->resumed = SSL_session_reused((SSL *)ti->internals) == 1;
}

/* "HTTP/2 200" or "HTTP/1.1 200 OK": a new response starts (the final one
 * after any 1xx), so the previous one's headers are forgotten. */
static void on_status_line(struct xfer *x, const char *line, size_t len)
{
	size_t i = 5;
	long code = 0;

	x->ctype[0] = '\0';
	x->retry_after_ms = -1;
	x->content_length = -1;
	x->headers_done = 0;
	while (i < len && line[i] != ' ')
		i++;
	while (i < len && line[i] == ' ')
		i++;
	for (; i < len && code < 1000 && line[i] >= '0' && line[i] <= '9'; i++)
		code = code * 10 + (line[i] - '0');
	x->hdr_status = code;
	note_resumption(x);
}

/* Content-Length as a number; -2 (never complete) when it is not one, or
 * when a second header disagrees with the first. */
static void on_content_length(struct xfer *x, const char *v, size_t vlen)
{
	int64_t n = 0;
	size_t i;

	if (x->content_length == -2)
		return;
	for (i = 0; i < vlen && vlen <= UPSTREAM_DIGITS_MAX; i++) {
		if (v[i] < '0' || v[i] > '9')
			break;
		n = n * 10 + (v[i] - '0');
	}
	if (vlen == 0 || i < vlen || (x->content_length >= 0 && x->content_length != n))
		n = -2;
	x->content_length = n;
}

static size_t on_header(char *line, size_t size, size_t n, void *arg)
{
	struct xfer *x = arg;
	size_t len = size * n, vlen;
	const char *v;
	char tmp[UPSTREAM_RETRY_AFTER_TEXT_MAX];
	int64_t ms;

	if (len >= 5 && memcmp(line, "HTTP/", 5) == 0) {
		on_status_line(x, line, len);
	} else if (len >= 1 && len <= 2 && (line[0] == '\r' || line[0] == '\n')) {
		/* the blank line ends a header block; trailers come after it */
		x->headers_done = x->hdr_status >= 200;
	} else if (x->headers_done) {
		return len; /* a trailer changes nothing we report */
	} else if (header_value(line, len, "Content-Length", &v, &vlen)) {
		on_content_length(x, v, vlen);
	} else if (header_value(line, len, "Content-Type", &v, &vlen)) {
		if (vlen < sizeof(x->ctype)) {
			memcpy(x->ctype, v, vlen);
			x->ctype[vlen] = '\0';
		}
	} else if (header_value(line, len, "Retry-After", &v, &vlen)) {
		if (vlen < sizeof(tmp)) {
			memcpy(tmp, v, vlen);
			tmp[vlen] = '\0';
			if (upstream_parse_retry_after(tmp, (int64_t)time(NULL), &ms) == 0)
				x->retry_after_ms = ms;
		}
	}
	return len;
}

int upstream_parse_retry_after(const char *v, int64_t now, int64_t *ms)
{
	const int64_t max_s = UPSTREAM_RETRY_AFTER_MAX_MS / 1000;
	int64_t s = 0;
	const char *p;
	time_t t;

	if (!v || !*v)
		return -EINVAL;
	if (strspn(v, "0123456789") == strlen(v)) {
		for (p = v; *p && s <= max_s; p++)
			s = s * 10 + (*p - '0');
	} else {
		t = curl_getdate(v, NULL);
		if (t == (time_t)-1)
			return -EINVAL;
		s = (int64_t)t - now;
	}
	if (s < 0)
		s = 0;
	if (s > max_s)
		s = max_s;
	*ms = s * 1000;
	return 0;
}

/* ---- request setup ---- */

/* Header list builder with a sticky error, reported once by the caller. */
struct hdrs {
	struct curl_slist *list;
	int err;
};

static int header_safe(const char *v)
{
	const unsigned char *p;

	for (p = (const unsigned char *)v; *p; p++)
		if ((*p < 0x20 && *p != '\t') || *p == 0x7f)
			return 0;
	return 1;
}

static void hdr_add(struct hdrs *h, const char *name, const char *prefix, const char *value)
{
	char line[UPSTREAM_HEADER_LINE_MAX];
	struct curl_slist *n;
	int r;

	if (h->err || !value)
		return;
	if (!header_safe(value)) {
		h->err = -EINVAL;
		return;
	}
	r = snprintf(line, sizeof(line), "%s: %s%s", name, prefix, value);
	if (r < 0 || (size_t)r >= sizeof(line)) {
		h->err = -EINVAL;
		return;
	}
	n = curl_slist_append(h->list, line);
	if (!n) {
		h->err = -ENOMEM;
		return;
	}
	h->list = n;
}

/* A header whose value is percent-encoded: a remote file's name may hold
 * any byte but '/' and NUL, and UTF-8 must arrive exact. Space is encoded
 * too, since a receiver trims it at either end of a field value. */
static void hdr_add_pct(struct hdrs *h, const char *name, const char *value)
{
	static const char hex[] = "0123456789ABCDEF";
	char enc[UPSTREAM_HEADER_LINE_MAX];
	size_t o = 0;

	if (h->err || !value || !*value)
		return;
	for (const unsigned char *p = (const unsigned char *)value; *p; p++) {
		int plain = *p >= 0x21 && *p <= 0x7e && *p != '%';

		if (o + (plain ? 1 : 3) >= sizeof(enc)) {
			h->err = -EINVAL;
			return;
		}
		if (plain) {
			enc[o++] = (char)*p;
		} else {
			enc[o++] = '%';
			enc[o++] = hex[*p >> 4];
			enc[o++] = hex[*p & 15];
		}
	}
	enc[o] = '\0';
	hdr_add(h, name, "", enc);
}

/* IMF-fixdate (RFC 9110 5.6.7) by hand: strftime's names follow the locale. */
static void imf_fixdate(char *buf, size_t cap, time_t t)
{
	static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
	static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
					   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
	struct tm tm;

	gmtime_r(&t, &tm);
	snprintf(buf, cap, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday % 7], tm.tm_mday,
		 months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

static int build_headers(const struct upstream_request *req, struct curl_slist **out)
{
	struct hdrs h = {NULL, 0};
	char date[64];

	imf_fixdate(date, sizeof(date), time(NULL));
	hdr_add(&h, "Content-Type", "",
		req->content_type ? req->content_type : UPSTREAM_DEFAULT_CTYPE);
	hdr_add(&h, "Date", "", date);
	hdr_add(&h, "Idempotency-Key", "", req->idempotency_key);
	hdr_add(&h, "X-Forwarded-For", "", req->forwarded_for);
	hdr_add(&h, "X-Integration", "", req->integration);
	hdr_add_pct(&h, "X-File-Name", req->file_name);
	hdr_add(&h, "Authorization", "Bearer ", req->target->bearer_token);
	hdr_add(&h, "User-Agent", "", UPSTREAM_USER_AGENT);
	/* "Expect:" with no value removes curl's 100-continue round trip */
	if (!h.err && !(*out = curl_slist_append(h.list, "Expect:")))
		h.err = -ENOMEM;
	if (h.err) {
		curl_slist_free_all(h.list);
		return h.err;
	}
	return 0;
}

/* The TLS policy of ARCHITECTURE.md, invariant 4, on one easy handle. */
static CURLcode set_tls(CURL *e, const struct upstream_target *t)
{
	CURLcode rc = CURLE_OK;

#define SET(opt, val)                                                                              \
	do {                                                                                       \
		if (rc == CURLE_OK)                                                                \
			rc = curl_easy_setopt(e, opt, val);                                        \
	} while (0)
	SET(CURLOPT_SSLVERSION, (long)(CURL_SSLVERSION_TLSv1_2 | CURL_SSLVERSION_MAX_TLSv1_3));
	SET(CURLOPT_SSL_CIPHER_LIST, UPSTREAM_TLS12_CIPHERS);
	SET(CURLOPT_TLS13_CIPHERS, UPSTREAM_TLS13_SUITES);
	SET(CURLOPT_SSL_VERIFYPEER, 1L);
	SET(CURLOPT_SSL_VERIFYHOST, 2L);
	SET(CURLOPT_CAINFO, t->ca_file);
	SET(CURLOPT_CAPATH, (char *)NULL);
	if (t->client_cert) {
		SET(CURLOPT_SSLCERT, t->client_cert);
		SET(CURLOPT_SSLKEY, t->client_key);
	}
	return rc;
#undef SET
}

static CURLcode set_options(struct xfer *x, const struct upstream_request *req)
{
	const struct upstream_target *t = req->target;
	int h2 = t->http != UPSTREAM_HTTP_1_1;
	uint64_t ms = t->timeout_ms ? t->timeout_ms : UPSTREAM_TIMEOUT_DEFAULT_MS;
	CURL *e = x->easy;
	CURLcode rc = set_tls(e, t);

#define SET(opt, val)                                                                              \
	do {                                                                                       \
		if (rc == CURLE_OK)                                                                \
			rc = curl_easy_setopt(e, opt, val);                                        \
	} while (0)
	SET(CURLOPT_URL, t->url);
	SET(CURLOPT_PROTOCOLS_STR, "https");
	SET(CURLOPT_REDIR_PROTOCOLS_STR, "https");
	SET(CURLOPT_FOLLOWLOCATION, 0L);
	SET(CURLOPT_PROXY, ""); /* never an environment proxy */
	SET(CURLOPT_HTTP_VERSION, h2 ? (long)CURL_HTTP_VERSION_2TLS : (long)CURL_HTTP_VERSION_1_1);
	/* HTTP/2: wait for a connection being set up rather than open one per
	 * request, so a cold start multiplexes. Pointless for HTTP/1.1, where
	 * it would even serialise the handshakes toward a server that closes
	 * after each response (curl forgets a host's HTTP version with its last
	 * connection and waits again each time). */
	SET(CURLOPT_PIPEWAIT, h2 ? 1L : 0L);
	SET(CURLOPT_TCP_KEEPALIVE, 1L);
	SET(CURLOPT_NOSIGNAL, 1L);
	SET(CURLOPT_TIMEOUT_MS, (long)(ms > LONG_MAX ? LONG_MAX : ms));
	SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->len);
	SET(CURLOPT_POSTFIELDS, req->len ? req->body : "");
	SET(CURLOPT_HTTPHEADER, x->headers);
	SET(CURLOPT_WRITEFUNCTION, on_body);
	SET(CURLOPT_WRITEDATA, x);
	SET(CURLOPT_HEADERFUNCTION, on_header);
	SET(CURLOPT_HEADERDATA, x);
	SET(CURLOPT_ERRORBUFFER, x->errbuf);
	SET(CURLOPT_PRIVATE, x);
	SET(CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
	SET(CURLOPT_OPENSOCKETDATA, x);
	return rc;
#undef SET
}

static int request_valid(const struct upstream_request *req)
{
	const struct upstream_target *t = req ? req->target : NULL;

	return t && t->url && t->ca_file && strncasecmp(t->url, "https://", 8) == 0 &&
	       (req->body || !req->len) && (!t->client_key || t->client_cert);
}

int upstream_post(struct upstream *u, const struct upstream_request *req, upstream_cb cb, void *arg)
{
	struct xfer *x;
	CURLcode rc;
	int err;

	if (!u || u->dying || !cb || !request_valid(req))
		return -EINVAL;
	x = xfer_get(u);
	if (!x)
		return -ENOMEM;
	xfer_rewind(x);
	x->resends = 0;
	err = build_headers(req, &x->headers);
	if (err)
		goto fail;
	rc = set_options(x, req);
	if (rc != CURLE_OK) {
		err = rc == CURLE_OUT_OF_MEMORY ? -ENOMEM : -EINVAL;
		goto fail;
	}
	if (curl_multi_add_handle(u->multi, x->easy) != CURLM_OK) {
		err = -ENOMEM;
		goto fail;
	}
	x->cb = cb;
	x->arg = arg;
	TAILQ_INSERT_TAIL(&u->active, x, entry);
	u->stats.requests++;
	u->stats.in_flight++;
	return 0;
fail:
	xfer_put(u, x);
	return err;
}

/* ---- completion ---- */

static int map_error(CURLcode rc)
{
	switch (rc) {
	case CURLE_OK:
		return 0;
	case CURLE_OPERATION_TIMEDOUT:
		return -ETIMEDOUT;
	case CURLE_COULDNT_CONNECT:
		return -ECONNREFUSED;
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CIPHER:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CLIENTCERT:
	case CURLE_SSL_ENGINE_NOTFOUND:
	case CURLE_SSL_ENGINE_SETFAILED:
	case CURLE_SSL_ENGINE_INITFAILED:
	case CURLE_SSL_CRL_BADFILE:
	case CURLE_SSL_ISSUER_ERROR:
	case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
	case CURLE_SSL_INVALIDCERTSTATUS:
	case CURLE_SSL_SHUTDOWN_FAILED:
	case CURLE_USE_SSL_FAILED:
		return -EPROTO;
	default:
		return -EIO;
	}
}

enum upstream_early upstream_answered_early(const struct upstream_answer *a)
{
	if (a->curl_code != CURLE_HTTP2_STREAM || a->curl_detail)
		return UPSTREAM_EARLY_NONE;
	if (a->status == 0)
		return UPSTREAM_EARLY_LOST;
	if (a->http2 && a->status >= 200 && a->headers_done && a->content_length >= 0 &&
	    a->received == (uint64_t)a->content_length)
		return UPSTREAM_EARLY_COMPLETE;
	return UPSTREAM_EARLY_NONE;
}

/* curl 7.88 reports a complete answer followed by RST_STREAM(NO_ERROR) as
 * CURLE_HTTP2_STREAM, from the send path ("stream N closed", an info line,
 * no failf()), after its receive path accepted the close as clean: no
 * error code and a final HEADERS frame (lib/http2.c,
 * http2_handle_stream_close). Every other CURLE_HTTP2_STREAM comes with a
 * message in the error buffer, which newer curl versions may also fill with
 * the bare strerror text. */
static enum upstream_early early_answer(struct xfer *x, CURLcode rc)
{
	struct upstream_answer a = {.curl_code = rc};
	long version = 0;

	if (rc != CURLE_HTTP2_STREAM)
		return UPSTREAM_EARLY_NONE;
	(void)curl_easy_getinfo(x->easy, CURLINFO_HTTP_VERSION, &version);
	(void)curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &a.status);
	a.curl_detail = x->errbuf[0] && strcmp(x->errbuf, curl_easy_strerror(rc)) != 0;
	a.http2 = version == CURL_HTTP_VERSION_2_0;
	a.headers_done = x->headers_done && x->hdr_status == a.status;
	a.content_length = x->content_length;
	a.received = x->received;
	return upstream_answered_early(&a);
}

static void fill_response(struct xfer *x, CURLcode rc, struct upstream_response *r)
{
	long connects = 0, version = 0;

	memset(r, 0, sizeof(*r));
	r->error = map_error(rc);
	/* A TLS 1.3 server that refuses our client certificate says so with an
	 * alert after the handshake, which curl reports as a read error; only
	 * OpenSSL's own reason text ("SSL routines") tells it from a reset. */
	if ((rc == CURLE_RECV_ERROR || rc == CURLE_SEND_ERROR) && strstr(x->errbuf, "SSL routines"))
		r->error = -EPROTO;
	/* An address was refused for lying in a tunnel: that is the news,
	 * not what the other addresses (if any) answered. */
	if (r->error && x->forbidden)
		r->error = -EACCES;
	if (r->error == -EACCES)
		r->errmsg = x->why;
	else if (r->error)
		r->errmsg = x->nomem	   ? "out of memory for the response body"
			    : x->errbuf[0] ? x->errbuf
					   : curl_easy_strerror(rc);
	else
		r->errmsg = "";
	(void)curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &r->status);
	(void)curl_easy_getinfo(x->easy, CURLINFO_NUM_CONNECTS, &connects);
	(void)curl_easy_getinfo(x->easy, CURLINFO_TOTAL_TIME, &r->total_s);
	(void)curl_easy_getinfo(x->easy, CURLINFO_HTTP_VERSION, &version);
	r->new_connection = connects > 0;
	r->http2 = version == CURL_HTTP_VERSION_2_0;
	r->content_type = x->ctype[0] ? x->ctype : NULL;
	r->body = x->body ? x->body : "";
	r->len = x->len;
	r->truncated = x->truncated;
	r->retry_after_ms = x->retry_after_ms;
}

/* Runs a request again when curl gave up retrying it (see
 * UPSTREAM_RESENDS_MAX): curl only retries when the server cannot have
 * processed it, and no byte of a response arrived. Returns 1 when re-added. */
static int resend_unprocessed(struct upstream *u, struct xfer *x, CURLcode rc)
{
	long hbytes = -1;

	if (rc != CURLE_SEND_ERROR || x->resends >= UPSTREAM_RESENDS_MAX ||
	    strncmp(x->errbuf, UPSTREAM_CURL_GAVE_UP, strlen(UPSTREAM_CURL_GAVE_UP)) != 0)
		return 0;
	(void)curl_easy_getinfo(x->easy, CURLINFO_HEADER_SIZE, &hbytes);
	if (hbytes != 0 || x->hdr_status != 0)
		return 0;
	(void)curl_multi_remove_handle(u->multi, x->easy);
	xfer_rewind(x);
	if (curl_multi_add_handle(u->multi, x->easy) != CURLM_OK)
		return 0; /* not in the multi any more: finish() reports the failure */
	x->resends++;
	u->stats.resends++;
	return 1;
}

static void finish(struct upstream *u, struct xfer *x, CURLcode rc)
{
	struct upstream_response r;
	enum upstream_early early = early_answer(x, rc);

	if (resend_unprocessed(u, x, rc))
		return;
	if (early == UPSTREAM_EARLY_COMPLETE) {
		u->stats.early_answers++;
		rc = CURLE_OK;
		x->errbuf[0] = '\0';
	} else if (early == UPSTREAM_EARLY_LOST) {
		u->stats.early_lost++;
		snprintf(x->errbuf, sizeof(x->errbuf), "%s", UPSTREAM_LOST_TEXT);
	}
	fill_response(x, rc, &r);
	r.early = early != UPSTREAM_EARLY_NONE;
	if (r.new_connection) {
		u->stats.connections++;
		u->stats.resumed += (uint64_t)x->resumed;
	}
	(void)curl_multi_remove_handle(u->multi, x->easy);
	TAILQ_REMOVE(&u->active, x, entry);
	u->stats.in_flight--;
	x->cb(x->arg, &r);
	xfer_put(u, x);
}

static void destroy(struct upstream *u);

static void collect_done(struct upstream *u)
{
	char *priv;
	CURLMsg *m;
	CURLcode rc;
	int left;

	u->dispatching++;
	while (!u->dying && (m = curl_multi_info_read(u->multi, &left))) {
		if (m->msg != CURLMSG_DONE)
			continue;
		/* m dies with curl_multi_remove_handle(): copy what we need first */
		rc = m->data.result;
		priv = NULL;
		(void)curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &priv);
		if (priv)
			finish(u, (struct xfer *)priv, rc);
	}
	u->dispatching--;
	if (u->dying && !u->dispatching)
		destroy(u);
}

/* ---- life cycle ---- */

/* curl_global_init is not thread-safe; the bridge calls us from one thread.
 * There is no matching cleanup: the library stays initialised for the
 * process's life. */
static int global_init(void)
{
	static int done, result;
	const curl_version_info_data *vi;

	if (done)
		return result;
	done = 1;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		return result = -ENOMEM;
	vi = curl_version_info(CURLVERSION_NOW);
	/* CURLOPT_TLS13_CIPHERS and our cipher strings need the OpenSSL backend */
	if (!(vi->features & CURL_VERSION_SSL) || !vi->ssl_version ||
	    strncmp(vi->ssl_version, "OpenSSL/", 8) != 0)
		return result = -ENOTSUP;
	return result = 0;
}

static void destroy(struct upstream *u)
{
	struct xfer *x;

	while ((x = TAILQ_FIRST(&u->active))) {
		TAILQ_REMOVE(&u->active, x, entry);
		(void)curl_multi_remove_handle(u->multi, x->easy);
		xfer_destroy(x);
	}
	while ((x = TAILQ_FIRST(&u->idle))) {
		TAILQ_REMOVE(&u->idle, x, entry);
		xfer_destroy(x);
	}
	if (u->multi)
		(void)curl_multi_cleanup(u->multi);
	/* curl_multi_cleanup closes pooled connections without telling us */
	while (!LIST_EMPTY(&u->socks))
		usock_free(LIST_FIRST(&u->socks));
	if (u->timer)
		event_free(u->timer);
	free(u->forbidden);
	free(u);
}

static int multi_setup(struct upstream *u)
{
	CURLM *m = u->multi;
	CURLMcode rc = CURLM_OK;

#define MSET(opt, val)                                                                             \
	do {                                                                                       \
		if (rc == CURLM_OK)                                                                \
			rc = curl_multi_setopt(m, opt, val);                                       \
	} while (0)
	MSET(CURLMOPT_SOCKETFUNCTION, on_socket);
	MSET(CURLMOPT_SOCKETDATA, u);
	MSET(CURLMOPT_TIMERFUNCTION, on_curl_timer);
	MSET(CURLMOPT_TIMERDATA, u);
	MSET(CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
	MSET(CURLMOPT_MAX_HOST_CONNECTIONS, (long)UPSTREAM_MAX_HOST_CONNS);
	MSET(CURLMOPT_MAXCONNECTS, (long)UPSTREAM_POOL_CONNS);
	return rc == CURLM_OK ? 0 : -ENOMEM;
#undef MSET
}

int upstream_new(struct event_base *base, struct upstream **out)
{
	struct upstream *u;
	int err;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (!base)
		return -EINVAL;
	err = global_init();
	if (err)
		return err;
	u = calloc(1, sizeof(*u));
	if (!u)
		return -ENOMEM;
	u->base = base;
	TAILQ_INIT(&u->active);
	TAILQ_INIT(&u->idle);
	LIST_INIT(&u->socks);
	u->timer = evtimer_new(base, on_timer_event, u);
	u->multi = curl_multi_init();
	if (!u->timer || !u->multi || multi_setup(u) != 0) {
		destroy(u);
		return -ENOMEM;
	}
	*out = u;
	return 0;
}

void upstream_free(struct upstream *u)
{
	if (!u)
		return;
	u->dying = 1;
	if (!u->dispatching)
		destroy(u);
}

void upstream_get_stats(const struct upstream *u, struct upstream_stats *st)
{
	*st = u->stats;
}

/* ---- bearer token ---- */

static int read_all(int fd, char *buf, size_t cap, size_t *len)
{
	ssize_t n;

	*len = 0;
	while (*len < cap) {
		n = read(fd, buf + *len, cap - *len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		*len += (size_t)n;
	}
	return 0;
}

int upstream_read_token(const char *path, char **token)
{
	char buf[UPSTREAM_TOKEN_MAX + 1]; /* one byte more tells a long file from a full one */
	struct stat st;
	size_t len = 0;
	int fd, err;

	*token = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) != 0)
		err = -errno;
	else if (!S_ISREG(st.st_mode))
		err = -EINVAL;
	else if (st.st_size > UPSTREAM_TOKEN_MAX)
		err = -EMSGSIZE;
	else
		err = read_all(fd, buf, sizeof(buf), &len);
	close(fd);
	if (err)
		return err;
	if (len > UPSTREAM_TOKEN_MAX)
		return -EMSGSIZE; /* the file grew while we read it */
	while (len && strchr(" \t\r\n", buf[len - 1]))
		len--;
	buf[len] = '\0';
	if (len == 0 || strlen(buf) != len || !header_safe(buf))
		return -EINVAL;
	*token = strdup(buf);
	return *token ? 0 : -ENOMEM;
}
