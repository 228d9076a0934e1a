/*
 * vici wire codec: strongSwan's Versatile IKE Control Interface, on buffers only.
 *
 * Layers (strongSwan src/libcharon/plugins/vici/README.md):
 *   segment = 32-bit big-endian length + that many bytes (at most VICI_SEGMENT_MAX)
 *   packet  = 1-byte type [+ 1-byte name length + name] [+ message]
 *   message = elements: type byte [+ 1-byte name length + name] [+ 16-bit BE length + value]
 *
 * Nothing here does I/O except vici_tree_to_json(), which writes to a FILE the
 * caller owns. Every fallible function returns 0 (or a documented positive
 * value) or a negative errno: -EBADMSG for bytes that break the protocol,
 * -EMSGSIZE for a limit, -EINVAL for a caller mistake, -ENOMEM.
 */
#ifndef VICI_H
#define VICI_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define VICI_WUR __attribute__((warn_unused_result))

/* Limits: the only place they are defined. */
#define VICI_LEN_SIZE	 4	      /* segment length prefix */
#define VICI_SEGMENT_MAX (512 * 1024) /* bytes after the prefix */
#define VICI_NAME_MAX	 255	      /* packet and element names */
#define VICI_VALUE_MAX	 65535	      /* one value or list item */
#define VICI_DEPTH_MAX	 64	      /* nested sections */
/* A built message fits in a packet of any type, whatever its name. */
#define VICI_MSG_MAX (VICI_SEGMENT_MAX - 2 - VICI_NAME_MAX)

enum vici_packet_type {
	VICI_CMD_REQUEST = 0,	   /* name + message */
	VICI_CMD_RESPONSE = 1,	   /* message */
	VICI_CMD_UNKNOWN = 2,	   /* nothing */
	VICI_EVENT_REGISTER = 3,   /* name */
	VICI_EVENT_UNREGISTER = 4, /* name */
	VICI_EVENT_CONFIRM = 5,	   /* nothing */
	VICI_EVENT_UNKNOWN = 6,	   /* nothing */
	VICI_EVENT = 7,		   /* name + message */
};
#define VICI_PACKET_TYPE_MAX VICI_EVENT

enum vici_element_type {
	VICI_SECTION_START = 1, /* name */
	VICI_SECTION_END = 2,
	VICI_KEY_VALUE = 3,  /* name + value */
	VICI_LIST_START = 4, /* name */
	VICI_LIST_ITEM = 5,  /* value */
	VICI_LIST_END = 6,
};

/* ---- Builder: composes one message; the first error sticks. ---- */

struct vici_builder;

/* Returns an empty builder, or NULL when out of memory. Every builder call
 * accepts NULL and then vici_builder_finish() reports -ENOMEM, so call sites
 * need no check of their own. Free with vici_builder_free(). */
struct vici_builder *vici_builder_new(void);

/*
 * The adders never fail visibly: the first error is recorded and later calls
 * do nothing. Names are C strings of 1..VICI_NAME_MAX bytes (else -EINVAL);
 * values are borrowed for the call only, up to VICI_VALUE_MAX bytes (else
 * -EMSGSIZE; NULL is allowed when len is 0). Structure errors are -EINVAL:
 * section_end without an open section, list_item/list_end outside a list, a
 * section, key or list inside a list, sections nested beyond VICI_DEPTH_MAX.
 * A message growing beyond VICI_MSG_MAX records -EMSGSIZE before allocating.
 */
void vici_builder_section_start(struct vici_builder *b, const char *name);
void vici_builder_section_end(struct vici_builder *b);
void vici_builder_key_value(struct vici_builder *b, const char *name, const void *value,
			    size_t len);
void vici_builder_key_str(struct vici_builder *b, const char *name, const char *value);
void vici_builder_list_start(struct vici_builder *b, const char *name);
void vici_builder_list_item(struct vici_builder *b, const void *value, size_t len);
void vici_builder_list_item_str(struct vici_builder *b, const char *value);
void vici_builder_list_end(struct vici_builder *b);

/*
 * Ends the message: returns 0 and hands over *msg (caller frees; non-NULL even
 * for an empty message) and *len, or the first recorded error, or -EINVAL when
 * a section or list is still open (then *msg is NULL and *len 0). The builder
 * is spent either way: later calls record -EINVAL. Still free it.
 */
VICI_WUR int vici_builder_finish(struct vici_builder *b, uint8_t **msg, size_t *len);

/* Frees the builder and any unfinished message. NULL is fine. */
void vici_builder_free(struct vici_builder *b);

/* ---- Packets and segments ---- */

struct vici_packet {
	enum vici_packet_type type;
	char name[VICI_NAME_MAX + 1]; /* "" for unnamed types */
	const uint8_t *msg;	      /* borrowed from the segment; NULL when the type has none */
	size_t msg_len;
};

/*
 * Encodes a whole segment, length prefix included, into *out (caller frees)
 * and *out_len. name must be 1..VICI_NAME_MAX bytes for named types and NULL
 * for the others; msg (borrowed) may be non-empty only for types that carry a
 * message. Returns 0, -EINVAL for those mistakes or an unknown type, -EMSGSIZE
 * when the segment would exceed VICI_SEGMENT_MAX, -ENOMEM.
 */
VICI_WUR int vici_packet_encode(enum vici_packet_type type, const char *name, const uint8_t *msg,
				size_t msg_len, uint8_t **out, size_t *out_len);

/*
 * Looks at the start of a stream buffer: returns 1 with *seg_len = bytes of
 * the whole first segment (prefix included) when all of it is there, 0 when
 * more bytes are needed, -EMSGSIZE when the announced length exceeds
 * VICI_SEGMENT_MAX (the stream cannot be resynchronised: drop it).
 */
VICI_WUR int vici_segment_length(const uint8_t *buf, size_t len, size_t *seg_len);

/*
 * Decodes one segment (prefix included, exactly len bytes) into *out, whose
 * msg points into seg (borrowed for as long as seg lives). Returns 0,
 * -EMSGSIZE for an announced length beyond VICI_SEGMENT_MAX, or -EBADMSG: a
 * prefix that disagrees with len, an empty packet, an unknown type, an empty,
 * truncated or NUL-containing name, or trailing bytes on a type that carries
 * no message. The message itself is not checked here: parse it.
 */
VICI_WUR int vici_packet_decode(const uint8_t *seg, size_t len, struct vici_packet *out);

/* ---- Pull parser over one message ---- */

/* On the caller's stack; the fields are private to parser.c. */
struct vici_parser {
	const uint8_t *msg;
	size_t len;
	size_t pos;
	unsigned depth;
	int in_list;
	int err;
};

struct vici_element {
	enum vici_element_type type;
	char name[VICI_NAME_MAX + 1]; /* copied; "" for unnamed types */
	const uint8_t *value;	      /* borrowed from the message; NULL for valueless types */
	size_t value_len;
};

/* Starts parsing msg, which stays borrowed for the parser's lifetime. */
void vici_parser_init(struct vici_parser *p, const uint8_t *msg, size_t len);

/*
 * Reads the next element into *e. Returns its type (> 0), 0 at the clean end
 * of the message, or -EBADMSG: truncated element, unknown element type, empty
 * or NUL-containing name, section end without start, a list item or list end
 * outside a list, a list, key or section inside a list, sections nested beyond
 * VICI_DEPTH_MAX, or a section or list still open at the end. Once it has
 * returned 0 or an error it keeps returning the same.
 */
VICI_WUR int vici_parser_next(struct vici_parser *p, struct vici_element *e);

/* ---- Tree: a whole message in memory ---- */

struct vici_tree;
struct vici_node;

enum vici_node_kind {
	VICI_NODE_SECTION,
	VICI_NODE_VALUE,
	VICI_NODE_LIST,
};

/*
 * Parses msg (borrowed for the call) into *out (free with vici_tree_free()).
 * Returns 0, any vici_parser_next() error, or -ENOMEM; on error *out is NULL
 * and nothing is left allocated. Elements keep their order; duplicate keys are
 * kept too (lookups find the first).
 */
VICI_WUR int vici_tree_parse(const uint8_t *msg, size_t len, struct vici_tree **out);

/* Frees the tree and everything borrowed from it. NULL is fine. */
void vici_tree_free(struct vici_tree *t);

/*
 * Finds a node by a dot-separated path through sections ("child-sas.net.state");
 * "" is the root section. Returns NULL when any step is missing or not a
 * section. Names containing '.' cannot be reached this way: iterate instead.
 * The node is borrowed until vici_tree_free().
 */
const struct vici_node *vici_tree_find(const struct vici_tree *t, const char *path);

/* vici_tree_find() narrowed to key/values: the NUL-terminated value (binary
 * values may hold NULs: use vici_node_value() for the length), or NULL. */
const char *vici_tree_get(const struct vici_tree *t, const char *path);

/* vici_tree_find() and vici_tree_get() from section (NULL is fine), e.g.
 * "child-sas" under each IKE_SA of a list-sa event. */
const struct vici_node *vici_node_find(const struct vici_node *section, const char *path);
const char *vici_node_get(const struct vici_node *section, const char *path);

/* The root section; its name is "". */
const struct vici_node *vici_tree_root(const struct vici_tree *t);

/* A section's first child, or NULL (also for non-sections). */
const struct vici_node *vici_node_first(const struct vici_node *section);
/* The next sibling in message order, or NULL. */
const struct vici_node *vici_node_next(const struct vici_node *n);
const char *vici_node_name(const struct vici_node *n);
enum vici_node_kind vici_node_kind(const struct vici_node *n);
/* A key/value's value, NUL-terminated, and its length in *len (may be NULL);
 * NULL for sections and lists. */
const char *vici_node_value(const struct vici_node *n, size_t *len);
/* Number of items of a list; 0 for other kinds. */
size_t vici_node_item_count(const struct vici_node *n);
/* Item i of a list, NUL-terminated, length in *len (may be NULL); NULL when out of range. */
const char *vici_node_item(const struct vici_node *n, size_t i, size_t *len);

/*
 * Writes the tree as one line of JSON and a newline: sections are objects,
 * values strings, lists arrays of strings. Valid UTF-8 passes through;
 * control characters, '"', '\\' and bytes that are not UTF-8 are escaped (the
 * latter as \u00XX). Returns 0 or -EIO when the stream reports an error.
 */
VICI_WUR int vici_tree_to_json(const struct vici_tree *t, FILE *out);

/* Encodes the tree back into a message (caller frees *msg); byte-identical to
 * the parsed one. Returns 0 or a vici_builder_finish() error. */
VICI_WUR int vici_tree_encode(const struct vici_tree *t, uint8_t **msg, size_t *len);

/* ---- Connection: one socket to charon, driven by the caller's event loop ---- */

/*
 * Model: the connection never blocks (except vici_call(), vici_conn_wait()
 * and the name lookup of a tcp:// host: use a numeric address in a daemon).
 * A loop watches
 * vici_conn_fd() for vici_conn_want(), calls vici_conn_process() when the fd
 * is ready and vici_conn_tick() at the time vici_conn_next_deadline() asks
 * for; it re-reads fd and want after every call, since both change. Times are
 * vici_now_ms() (CLOCK_MONOTONIC, milliseconds).
 *
 * Requests run one at a time, in order: a command, a streamed command or the
 * (re-)registration of a subscription. Every request has a deadline counted
 * from when it was queued. Callbacks run only from vici_conn_process(),
 * vici_conn_tick(), vici_call(), vici_conn_free() and a vici_conn_connect()
 * whose attempt fails at once. They may queue requests and subscribe, but
 * must not process, tick, call, connect or free.
 *
 * Losing an established connection reports VICI_STATE_DOWN with the reason,
 * then fails the active and queued requests with -ECONNRESET; a failed
 * connect attempt reports DOWN and fails them with its errno. Either way the
 * connection retries by itself from vici_conn_tick() after 100 ms, doubling
 * to 5 s, until one attempt succeeds, and then registers every subscription
 * again. Events may repeat around a reconnect: handlers must be idempotent.
 *
 * A request whose deadline passes while it waits for charon gets -ETIMEDOUT;
 * a late reply could not be told apart from the next one, so the connection
 * is then dropped (DOWN with -ETIMEDOUT) and reopened at once, and requests
 * queued behind it are kept and sent on the fresh connection.
 */

#define VICI_QUEUE_MAX		 1024 /* requests waiting or active */
#define VICI_SUBS_MAX		 64   /* subscriptions */
#define VICI_REGISTER_TIMEOUT_MS 5000 /* internal (un)registrations */
#define VICI_BACKOFF_MIN_MS	 100
#define VICI_BACKOFF_MAX_MS	 5000

struct vici_conn;

enum vici_want {
	VICI_WANT_READ = 1,
	VICI_WANT_WRITE = 2,
};

enum vici_state {
	VICI_STATE_UP,
	VICI_STATE_DOWN,
};

/* A command's outcome: err is 0 with the reply (borrowed until the callback
 * returns; a reply saying success=no is still err 0, see vici_reply_error()),
 * or -ENOENT (charon does not know the command or event), -ETIMEDOUT,
 * -ECONNRESET, a connect errno, -ECANCELED (vici_conn_free()) with NULL. */
typedef void (*vici_reply_cb)(void *arg, int err, const struct vici_tree *reply);
/* An event; msg is borrowed until the callback returns. */
typedef void (*vici_event_cb)(void *arg, const char *event, const struct vici_tree *msg);
/* VICI_STATE_UP with err 0, or VICI_STATE_DOWN with the negative errno why. */
typedef void (*vici_state_cb)(void *arg, enum vici_state state, int err);

/* Milliseconds of CLOCK_MONOTONIC: the clock of every now_ms below. */
int64_t vici_now_ms(void);

/*
 * Creates an unconnected connection to "unix:///absolute/path" or
 * "tcp://host:port" (host may be "[v6addr]"). Returns 0 and *out (free with
 * vici_conn_free()), -EINVAL for any other URI, -ENOMEM.
 */
VICI_WUR int vici_conn_new(const char *uri, struct vici_conn **out);

/* Closes the socket and fails every request with -ECANCELED. NULL is fine.
 * Not from a callback. */
void vici_conn_free(struct vici_conn *c);

/*
 * Starts a non-blocking connect and turns on reconnecting. Returns 0 when
 * under way (VICI_STATE_UP follows from vici_conn_process()), -EALREADY or
 * -EISCONN, or the attempt's errno, in which case it was reported DOWN and
 * the next attempt is scheduled.
 */
VICI_WUR int vici_conn_connect(struct vici_conn *c);

/* The socket to watch, or -1 while there is none. */
int vici_conn_fd(const struct vici_conn *c);
/* VICI_WANT_* bits for vici_conn_fd(); 0 while there is no socket. */
int vici_conn_want(const struct vici_conn *c);

/* Does the I/O the ready flags allow and runs the callbacks it causes.
 * Errors are reported through the callbacks. */
void vici_conn_process(struct vici_conn *c, int readable, int writable);

/* Milliseconds from now_ms until vici_conn_tick() is due (0 if overdue), or
 * -1 when nothing is pending: usable as a poll() timeout. */
int64_t vici_conn_next_deadline(const struct vici_conn *c, int64_t now_ms);

/* Fails requests whose deadline has passed and reconnects when due. */
void vici_conn_tick(struct vici_conn *c, int64_t now_ms);

/* Sets the connection-state callback (NULL to clear). */
void vici_conn_on_state(struct vici_conn *c, vici_state_cb cb, void *arg);

/*
 * Queues command cmd with message msg (borrowed for the call; NULL when len is
 * 0; build it with vici_builder) and a deadline timeout_ms from now. cb (not
 * NULL) gets the outcome exactly once; arg is borrowed until then. Returns 0,
 * -EINVAL (name, timeout, cb), -EMSGSIZE (len beyond VICI_MSG_MAX), -ENOBUFS
 * (VICI_QUEUE_MAX), -ENOMEM; then cb is never called.
 */
VICI_WUR int vici_conn_command(struct vici_conn *c, const char *cmd, const uint8_t *msg, size_t len,
			       int timeout_ms, vici_reply_cb cb, void *arg);

/*
 * A streamed command (initiate/terminate with control-log, list-sas with
 * list-sa...): registers event, runs cmd, unregisters. Events named event go
 * to event_cb (may be NULL) until the reply, which goes to cb as with
 * vici_conn_command(); the unregistration that follows reports nothing, and
 * arg is not used after cb. Don't stream an event that is also subscribed:
 * the unregistration would end the subscription on charon's side.
 */
VICI_WUR int vici_conn_stream(struct vici_conn *c, const char *cmd, const char *event,
			      const uint8_t *msg, size_t len, int timeout_ms,
			      vici_event_cb event_cb, vici_reply_cb cb, void *arg);

/*
 * Delivers every event named event to cb for the connection's lifetime,
 * registering with charon now (if up) and after every reconnect; arg is
 * borrowed until vici_conn_free(). An event charon does not know is never
 * delivered. Returns 0, -EINVAL, -ENOBUFS (VICI_SUBS_MAX) or -ENOMEM.
 */
VICI_WUR int vici_conn_subscribe(struct vici_conn *c, const char *event, vici_event_cb cb,
				 void *arg);

/*
 * Blocking command for simple tools: connects if needed, then polls the fd
 * until the outcome. Returns 0 with *reply (caller frees; check
 * vici_reply_error()) or the error vici_reply_cb would get, with *reply NULL.
 * Not from a callback, nor with another loop driving the same connection.
 */
VICI_WUR int vici_call(struct vici_conn *c, const char *cmd, const uint8_t *msg, size_t len,
		       int timeout_ms, struct vici_tree **reply);

/*
 * Blocking, for simple tools: drives the connection with poll() until *done
 * is non-zero. A callback of a queued request must set it (or give up on
 * it): that request's deadline bounds the wait. Not from a callback, nor
 * with another loop driving the same connection.
 */
void vici_conn_wait(struct vici_conn *c, const int *done);

/* charon's failure text when the reply says success=no ("" when it gave
 * none), or NULL when it does not; borrowed from the tree. */
const char *vici_reply_error(const struct vici_tree *reply);

/* ---- Control commands: why an initiate failed ---- */

#define VICI_CONTROL_LOG_MAX  (64 * 1024) /* log bytes kept; the oldest lines go first */
#define VICI_CONTROL_LINE_MAX 1024	  /* bytes of one line; longer ones are cut */
/* vici_control_reason() when charon gave up retransmitting. */
#define VICI_REASON_NO_ANSWER "NO_ANSWER_FROM_PEER"

/*
 * The outcome of vici_conn_control(): err and reply as for vici_reply_cb,
 * and log, charon's control-log lines of the attempt, each
 * "[GROUP] IKE_NAME: message\n" ("" when none). Both borrowed until return.
 */
typedef void (*vici_control_cb)(void *arg, int err, const struct vici_tree *reply, const char *log);

/*
 * Runs cmd (initiate, terminate) as a stream on control-log, keeping the
 * log lines for cb (not NULL), which is called exactly once; arg is borrowed
 * until then. Returns as vici_conn_stream().
 */
VICI_WUR int vici_conn_control(struct vici_conn *c, const char *cmd, const uint8_t *msg, size_t len,
			       int timeout_ms, vici_control_cb cb, void *arg);

/*
 * The reason a control log gives for a failure: the last notify error the
 * peer sent ("NO_PROPOSAL_CHOSEN", "AUTHENTICATION_FAILED",
 * "TS_UNACCEPTABLE"...), or the one this end sent refusing the peer (an
 * AUTH_FAILED for a certificate that does not chain to the CA, ...), or
 * VICI_REASON_NO_ANSWER, copied into buf. Returns
 * its length, or 0 with buf "" when the log names none (or size is too small).
 */
size_t vici_control_reason(const char *log, char *buf, size_t size);

#endif /* VICI_H */
