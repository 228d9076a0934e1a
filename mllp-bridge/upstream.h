/*
 * HTTPS client toward the cloud API: libcurl's multi_socket API driven by
 * the bridge's libevent loop. No threads.
 *
 * TLS policy (ARCHITECTURE.md, invariant 4): TLS 1.2 and 1.3 only, exactly
 * the seven AEAD suites, peer certificate and host name always verified.
 * Connections are kept alive and reused; HTTP/2 is used when the server
 * offers it over ALPN (unless a target asks for HTTP/1.1). A new connection
 * resumes a TLS session its easy handle kept from an earlier one.
 */
#ifndef UPSTREAM_H
#define UPSTREAM_H

#include <stddef.h>
#include <stdint.h>

#include "mllp-bridge/config.h"

struct event_base;
struct upstream;

#define UPSTREAM_TLS12_CIPHERS                                                                     \
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                               \
	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384"
#define UPSTREAM_TLS13_SUITES                                                                      \
	"TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"

#define UPSTREAM_RESPONSE_MAX	    (1u << 20) /* bodies past 1 MiB are cut (and flagged) */
#define UPSTREAM_TOKEN_MAX	    4096       /* bearer token file size limit */
#define UPSTREAM_HEADER_LINE_MAX    8192       /* one request header line we build */
#define UPSTREAM_CTYPE_MAX	    256	       /* a longer response Content-Type is dropped */
#define UPSTREAM_TIMEOUT_DEFAULT_MS 30000      /* used when a target's timeout_ms is 0 */
#define UPSTREAM_RETRY_AFTER_MAX_MS (24 * 3600 * 1000LL) /* Retry-After is clamped to this */
/* Parallel connections per host:port; further requests queue inside curl.
 * HTTP/2 multiplexes everything on one connection (a second one only past
 * the server's concurrent-stream limit), so the cap matters for HTTP/1.1,
 * where each request in flight holds a connection of its own. The bridge
 * runs up to max_in_flight (default 128) requests per integration; 32
 * connections already hide a 50 ms upstream round trip at 600 msg/s, and
 * stay far below what a server or its rate limiter treats as a flood from
 * one client (each one costs the server a TLS handshake). */
#define UPSTREAM_MAX_HOST_CONNS 32
/* Finished easy handles kept for reuse. Each keeps the TLS session of its
 * last connection, so there are enough for every connection the per-host
 * cap allows. */
#define UPSTREAM_IDLE_HANDLES UPSTREAM_MAX_HOST_CONNS
/* Idle connections curl keeps open, over all hosts (its default follows the
 * number of transfers, and closes HTTP/1.1 connections after a burst). */
#define UPSTREAM_POOL_CONNS (2 * UPSTREAM_MAX_HOST_CONNS)
/* libcurl retries a request the server never processed (an HTTP/2 stream
 * refused or past a GOAWAY's last stream, a reused connection found closed)
 * at most 5 times, then fails it. Under load toward a server that ends its
 * connections often, curl keeps choosing connections that are about to go,
 * so we give it this many more rounds before the caller sees the error. */
#define UPSTREAM_RESENDS_MAX 3
/* Address ranges a connection may never reach (upstream_forbid): every
 * tunnel's remote_ts, CFG_MAX_TUNNELS x CFG_MAX_CHILDREN x CFG_MAX_TS. */
#define UPSTREAM_FORBIDDEN_MAX (CFG_MAX_TUNNELS * CFG_MAX_CHILDREN * CFG_MAX_TS)
#define UPSTREAM_WHY_MAX       256 /* the text of a refused address */

/* The HTTP version a target speaks. */
enum upstream_http {
	UPSTREAM_HTTP_2 = 0, /* HTTP/2 when ALPN offers it, else HTTP/1.1 (the default) */
	UPSTREAM_HTTP_1_1,   /* HTTP/1.1 only */
};

/* Where and how one integration posts. Built once at start-up. */
struct upstream_target {
	const char *url;
	const char *ca_file;
	const char *client_cert; /* NULL: no client certificate */
	const char *client_key;
	const char *bearer_token; /* NULL: no Authorization header */
	uint64_t timeout_ms;
	enum upstream_http http;
};

/* One POST. Everything is borrowed until the completion callback returns. */
struct upstream_request {
	const struct upstream_target *target;
	const void *body;
	size_t len;
	const char *content_type;
	const char *idempotency_key; /* Idempotency-Key header */
	const char *forwarded_for;   /* X-Forwarded-For: the MLLP peer address */
	const char *integration;     /* X-Integration header */
	const char *file_name;	     /* X-File-Name header (file channels), percent-encoded:
					every byte outside 0x21..0x7e (space, CR, LF, UTF-8
					bytes...) and '%' itself become %XX (upper-case hex);
					NULL or "" sends no header */
};

struct upstream_response {
	int error;		  /* 0: an HTTP response arrived; else a negative errno:
				     -ETIMEDOUT, -ECONNREFUSED, -EPROTO (TLS/handshake or
				     certificate failure), -EIO (anything else; also a
				     TLS 1.3 server refusing our client certificate when
				     its close arrives before its alert is read),
				     -EACCES (every address tried was forbidden, see
				     upstream_forbid(), or failed after one was) */
	const char *errmsg;	  /* curl's text when error != 0, else "" */
	long status;		  /* HTTP status when error == 0 */
	const char *content_type; /* response Content-Type or NULL */
	const void *body;	  /* response body (cut at UPSTREAM_RESPONSE_MAX), never
				     NULL, NUL-terminated after len bytes */
	size_t len;
	int truncated;		/* 1 when the body was cut at UPSTREAM_RESPONSE_MAX */
	int64_t retry_after_ms; /* from Retry-After (seconds or HTTP date), -1 if absent */
	int new_connection;	/* 1 when this request opened a new connection (a TLS handshake) */
	int http2;		/* 1 when the answer came over HTTP/2, 0 over HTTP/1.x */
	int early;		/* 1 when the server answered over HTTP/2 before reading the
				   body (complete or lost: upstream_answered_early) */
	double total_s;		/* curl's total time for the transfer */
};

/* Called once per request, from the event loop. r is borrowed for the call. */
typedef void (*upstream_cb)(void *arg, const struct upstream_response *r);

/* Creates the client on base. Caller frees with upstream_free().
 * -ENOTSUP when libcurl is not built on OpenSSL (the cipher policy could not
 * be enforced), -ENOMEM. */
__attribute__((warn_unused_result)) int upstream_new(struct event_base *base,
						     struct upstream **out);

/* Frees the client; requests still running are dropped without callback.
 * May be called from a completion callback (the free is then finished when
 * the callback returns; no further callback runs). */
void upstream_free(struct upstream *u);

/* Starts a POST. Returns 0 (cb will be called exactly once, never from
 * within this call), or -ENOMEM/-EINVAL (cb will not be called).
 * -EINVAL: missing url/ca_file, a URL that is not https://, or a header value
 * with control characters (CR/LF would inject headers) or longer than
 * UPSTREAM_HEADER_LINE_MAX (the file name: once encoded; it never has
 * control characters left). A NULL content_type is sent as
 * application/octet-stream; other NULL header fields are left out.
 * No proxy is used, whatever the environment says. cb may call
 * upstream_post() and upstream_free(). */
__attribute__((warn_unused_result)) int
upstream_post(struct upstream *u, const struct upstream_request *req, upstream_cb cb, void *arg);

/* Refuses, from now on, every connection to an address inside cidr (a
 * copy is kept): HTTPS must never travel through a tunnel, and a host name
 * can resolve into one whatever the configuration checked. The check runs
 * on each address curl resolved, before its socket exists; a request whose
 * connection could not be made after a refusal fails with -EACCES and a
 * text naming the address, label and cidr. label (e.g. the tunnel's name)
 * is borrowed for the client's life. Returns 0, -EINVAL (not an AF_INET or
 * AF_INET6 CIDR) or -ENOSPC past UPSTREAM_FORBIDDEN_MAX. */
__attribute__((warn_unused_result)) int
upstream_forbid(struct upstream *u, const struct cfg_cidr *cidr, const char *label);

/* Counters for /metrics. */
struct upstream_stats {
	uint64_t requests;
	uint64_t connections;	/* new connections, i.e. TLS handshakes */
	uint64_t resumed;	/* of those, handshakes that resumed a TLS session */
	uint64_t early_answers; /* complete answers the server sent before it read the
				   whole body, then reset the stream (upstream_answered_early) */
	uint64_t early_lost;	/* such answers libcurl lost: reported as errors (-EIO) */
	uint64_t resends;	/* requests sent again after libcurl gave up retrying
				   ones the server never processed (UPSTREAM_RESENDS_MAX) */
	uint64_t in_tunnel;	/* connections refused: the address was forbidden */
	unsigned in_flight;
};
void upstream_get_stats(const struct upstream *u, struct upstream_stats *st);

/* Reads a bearer token file (trailing whitespace stripped, at most
 * UPSTREAM_TOKEN_MAX bytes). *token is malloc'd: caller frees. */
__attribute__((warn_unused_result)) int upstream_read_token(const char *path, char **token);

/* Parses a Retry-After value (delta-seconds or an HTTP date, relative to
 * now) into milliseconds, clamped to [0, UPSTREAM_RETRY_AFTER_MAX_MS].
 * Returns 0, or -EINVAL when v is neither. */
__attribute__((warn_unused_result)) int upstream_parse_retry_after(const char *v, int64_t now,
								   int64_t *ms);

/* What curl left of a transfer it failed, for upstream_answered_early(). */
struct upstream_answer {
	int curl_code;		/* the CURLcode */
	int curl_detail;	/* 1 when curl wrote its own message for the failure (a
				   reset with an error code, missing headers, ...) */
	int http2;		/* the transfer ran over HTTP/2 */
	long status;		/* the final status, 0 if none arrived */
	int headers_done;	/* the final header block ended */
	int64_t content_length; /* of the final response, -1 when it had none */
	uint64_t received;	/* body bytes that arrived, before any cut */
};

enum upstream_early {
	UPSTREAM_EARLY_NONE = 0, /* not an early answer: the failure stands */
	UPSTREAM_EARLY_COMPLETE, /* a complete response: report it as the answer */
	UPSTREAM_EARLY_LOST,	 /* the server answered, libcurl lost the answer: the
				    failure stands, and a resend is a duplicate */
};

/* Classifies a failed transfer. An HTTP/2 server may answer before it has
 * read the request body and then stop the upload with RST_STREAM(NO_ERROR)
 * (RFC 9113, 8.1); nginx's `return 200` does. libcurl before 8.3 reports
 * that as CURLE_HTTP2_STREAM when it next tries to send body data, without
 * a message of its own. The response is COMPLETE only when its status and
 * all its headers arrived and the body is exactly as long as its
 * Content-Length says: a response without one, or any other error, is never
 * taken as complete. LOST: no status arrived at all; libcurl 7.88 drops the
 * headers when the reset is read together with them. */
enum upstream_early upstream_answered_early(const struct upstream_answer *a);

#endif
