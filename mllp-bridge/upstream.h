/*
 * HTTPS client toward the cloud API: libcurl's multi_socket API driven by
 * the bridge's libevent loop. No threads.
 *
 * TLS policy (ARCHITECTURE.md, invariant 4): TLS 1.2 and 1.3 only, exactly
 * the seven AEAD suites, peer certificate and host name always verified.
 * Connections are kept alive and reused; HTTP/2 is used when the server
 * offers it over ALPN.
 */
#ifndef UPSTREAM_H
#define UPSTREAM_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct upstream;

#define UPSTREAM_TLS12_CIPHERS                                                                   \
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                             \
	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384"
#define UPSTREAM_TLS13_SUITES                                                                    \
	"TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"

#define UPSTREAM_RESPONSE_MAX (1u << 20) /* bodies past 1 MiB are cut (and flagged) */
#define UPSTREAM_TOKEN_MAX 4096          /* bearer token file size limit */

/* Where and how one integration posts. Built once at start-up. */
struct upstream_target {
	const char *url;
	const char *ca_file;
	const char *client_cert; /* NULL: no client certificate */
	const char *client_key;
	const char *bearer_token;/* NULL: no Authorization header */
	uint64_t timeout_ms;
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
};

struct upstream_response {
	int error;            /* 0: an HTTP response arrived; else a negative errno:
			         -ETIMEDOUT, -ECONNREFUSED, -EPROTO (TLS/handshake or
			         certificate failure), -EIO (anything else) */
	const char *errmsg;   /* curl's text when error != 0, else "" */
	long status;          /* HTTP status when error == 0 */
	const char *content_type; /* response Content-Type or NULL */
	const void *body;     /* response body (cut at UPSTREAM_RESPONSE_MAX) */
	size_t len;
	int64_t retry_after_ms;   /* from Retry-After (seconds or HTTP date), -1 if absent */
	int new_connection;   /* 1 when this request opened a new connection (a TLS handshake) */
	double total_s;       /* curl's total time for the transfer */
};

/* Called once per request, from the event loop. r is borrowed for the call. */
typedef void (*upstream_cb)(void *arg, const struct upstream_response *r);

/* Creates the client on base. Caller frees with upstream_free(). */
__attribute__((warn_unused_result)) int upstream_new(struct event_base *base,
						     struct upstream **out);

/* Frees the client; requests still running are dropped without callback. */
void upstream_free(struct upstream *u);

/* Starts a POST. Returns 0 (cb will be called exactly once, never from
 * within this call), or -ENOMEM/-EINVAL (cb will not be called). */
__attribute__((warn_unused_result)) int upstream_post(struct upstream *u,
						      const struct upstream_request *req,
						      upstream_cb cb, void *arg);

/* Counters for /metrics. */
struct upstream_stats {
	uint64_t requests;
	uint64_t connections; /* new connections, i.e. TLS handshakes */
	unsigned in_flight;
};
void upstream_get_stats(const struct upstream *u, struct upstream_stats *st);

/* Reads a bearer token file (trailing whitespace stripped, at most
 * UPSTREAM_TOKEN_MAX bytes). *token is malloc'd: caller frees. */
__attribute__((warn_unused_result)) int upstream_read_token(const char *path, char **token);

#endif
