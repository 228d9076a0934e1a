/*
 * The outbound API: an HTTPS listener (libevent's evhttp over OpenSSL
 * bufferevents) where the cloud posts messages for named MLLP destinations.
 * See docs/api.md for the wire contract.
 *
 * An edge: it knows no spool and no sender. The composition root hands it
 * hooks (below); it calls them only after every check of a request passed,
 * so nothing partial is ever submitted.
 *
 * TLS policy (ARCHITECTURE.md, invariant 4): TLS 1.2 and 1.3 only, the seven
 * AEAD suites of upstream.h (UPSTREAM_TLS12_CIPHERS, UPSTREAM_TLS13_SUITES),
 * nothing else.
 *
 * Authentication (https: client_ca, tokens_file; at least one is required):
 * - client_ca only: every request must come over a connection whose client
 *   certificate verifies against client_ca (refused at the handshake
 *   otherwise); such a client may use every destination.
 * - tokens_file only: every request needs `Authorization: Bearer TOKEN`, a
 *   token of the file; it may use the destinations its line names.
 * - both: a verified certificate OR a valid token. A certificate that is
 *   presented must verify (the handshake fails otherwise); a connection
 *   without one is accepted at the TLS level and its requests need a token.
 *   A token that is presented must be valid even with a certificate (a wrong
 *   credential is never ignored), and then its destination list applies.
 */
#ifndef HTTPS_IN_H
#define HTTPS_IN_H

#include <stddef.h>
#include <stdint.h>

#include "mllp-bridge/config.h"

struct event_base;
struct https_in;

#define HTTPS_IN_KEY_MAX       64  /* Idempotency-Key: 1..64 visible ASCII characters */
#define HTTPS_IN_WAIT_MAX_S    60  /* Prefer: wait=N is clamped to this */
#define HTTPS_IN_FILE_NAME_MAX 255 /* X-File-Name, decoded: an SFTP destination's file name */
#define HTTPS_IN_TOKEN_MIN     16  /* a bearer token: 16..256 visible ASCII characters */
#define HTTPS_IN_TOKEN_MAX     256
#define HTTPS_IN_TOKENS_FILE_MAX                                                                   \
	(1u << 20)		       /* tokens_file is refused above 1 MiB, before reading       \
					*/
#define HTTPS_IN_HEADERS_MAX	 16384 /* request line + headers */
#define HTTPS_IN_TIMEOUT_S	 30    /* evhttp read/write timeout of a connection */
#define HTTPS_IN_BACKLOG	 128
#define HTTPS_IN_ACCEPT_PAUSE_MS 100 /* out of descriptors: accepting rests this long */
#define HTTPS_IN_ERROR_MAX	 256 /* a last_error shown by GET is cut here */

/* The state of an outbound message as GET /v1/messages/{id} shows it. */
struct https_in_view {
	const char *destination; /* its destination's name */
	const char *state;	 /* "queued", "sending", "acked", "rejected" or "dead" */
	unsigned attempts;	 /* sends so far */
	const char *last_error;	 /* NULL: none */
	const void *ack;	 /* the receiver's last answer (HL7 ACK or R2 block); NULL: none */
	size_t ack_len;
	int64_t received_ms; /* when it was accepted, Unix milliseconds */
};

/* submit's answer: err 0 and id when the message is durable; existed 1 when
 * idem_key was already known for this destination (id is then the first
 * message's, and nothing new was stored). err < 0: not stored (-ENOSPC disk
 * full, -ECANCELED shutting down, another errno: storage failure). */
typedef void (*https_in_done_cb)(void *done_arg, int err, int64_t id, int existed);

/* wait's answer: err 0 with the receiver's answer (borrowed for the call);
 * -ETIMEDOUT when none came within the timeout; another negative errno when
 * the message ended without one (dead). Called once, never inside wait(). */
typedef void (*https_in_wait_cb)(void *cb_arg, int err, const void *ack, size_t len);

/* A message accepted for a destination. */
struct https_in_msg {
	const char *dest;   /* a configured destination's name */
	const char *client; /* who sent it (token index or certificate subject), for logs */
	const void *body;
	size_t len;
	const char *content_type; /* the media type without parameters */
	const char *control_id;	  /* MSH-10 for HL7, NULL otherwise */
	const char *idem_key;	  /* NULL or 1..64 visible ASCII */
	const char *file_name;	  /* SFTP destinations: X-File-Name, decoded; NULL when absent */
};

struct https_in_hooks {
	void *arg; /* first argument of every hook */
	/* Stages the message durably and calls done_cb once, from the loop,
	 * never inside submit(), also after https_in_free() (the module keeps
	 * the request's context until then). m and everything it points to is
	 * borrowed for the call only: copy what is kept. A key staged but not
	 * yet committed must be recognised too (two requests with one key in
	 * the same loop pass). Returns 0, or a negative errno without calling
	 * done_cb (refused at once). */
	int (*submit)(void *arg, const struct https_in_msg *m, https_in_done_cb done_cb,
		      void *done_arg);
	/* Fills *view for an outbound message. Returns 0, or -ENOENT (unknown,
	 * or not an outbound message). The view's pointers stay valid until
	 * release(arg, view) (when release is not NULL) or the next lookup. */
	int (*lookup)(void *arg, int64_t id, struct https_in_view *view);
	void (*release)(void *arg, struct https_in_view *view); /* may be NULL */
	/* Waits up to timeout_ms for message id's answer; cb once (see
	 * https_in_wait_cb), from the loop; an answer that already arrived
	 * calls it at the next loop pass. *handle identifies the wait for
	 * cancel(), after which cb is never called. Returns 0, or a negative
	 * errno without calling cb. */
	int (*wait)(void *arg, int64_t id, uint64_t timeout_ms, https_in_wait_cb cb, void *cb_arg,
		    void **handle);
	void (*cancel)(void *arg, void *handle);
};

struct https_in_stats {
	uint64_t requests;	  /* requests answered, every status */
	uint64_t accepted;	  /* new messages submitted and committed */
	uint64_t repeated;	  /* Idempotency-Key repeats answered with the first id */
	uint64_t sync_acks;	  /* Prefer: wait answered with the ACK */
	uint64_t sync_timeouts;	  /* Prefer: wait answered 202 after the wait */
	uint64_t unauthenticated; /* 401 */
	uint64_t forbidden;	  /* 403 */
	uint64_t refused;	  /* other 4xx */
	uint64_t failed;	  /* 5xx */
	uint64_t translated;	  /* JSON bodies turned into HL7 v2 (both routes) */
	uint64_t untranslated;	  /* JSON bodies refused by the translator (413, 422) */
};

/* Listens on cfg->https.listen (nothing when listen_text is NULL: *out
 * NULL, returns 0). cfg and hooks are borrowed for the module's life; hooks
 * must all be set (release may be NULL). Reads cert, key, client_ca and
 * tokens_file now; a problem is logged (file:line for tokens_file) and
 * returned: -EINVAL (bad file, neither client_ca nor tokens_file), -ENOENT
 * / -EACCES (unreadable), -EADDRINUSE..., -ENOMEM. */
__attribute__((warn_unused_result)) int https_in_new(struct event_base *base, const struct cfg *cfg,
						     const struct https_in_hooks *hooks,
						     struct https_in **out);

/* Stops listening and closes every connection; requests waiting for a hook
 * are not answered. Waits are cancelled; submits still owe their done_cb
 * (see above). NULL is a no-op. */
void https_in_free(struct https_in *h);

/* The bound port (useful with port 0), or 0. */
int https_in_port(const struct https_in *h);

void https_in_stats(const struct https_in *h, struct https_in_stats *st);

#endif
