/*
 * The control socket: AF_UNIX stream, one request line per connection, one
 * reply, then the server closes.
 *
 *   request = word *(" " word) "\n"      at most CONTROL_LINE_MAX bytes with
 *                                        the newline, CONTROL_ARGS_MAX words
 *   reply   = ("OK" / "ERR") "\n" body   body up to CONTROL_BODY_MAX bytes;
 *                                        the end of the body is the close
 *
 * Access: the socket file is 0660 with the configured group (0600 without
 * one), and each peer is checked again with SO_PEERCRED: root, the
 * supervisor's own uid, or a member of the group.
 *
 * The process must ignore SIGPIPE: libevent writes replies with writev(),
 * and a client may close before reading.
 */
#ifndef APPLIANCE_CONTROL_H
#define APPLIANCE_CONTROL_H

#define CONTROL_LINE_MAX	1024	   /* request bytes, the '\n' included */
#define CONTROL_ARGS_MAX	16	   /* words in a request */
#define CONTROL_BODY_MAX	(1u << 20) /* reply body */
#define CONTROL_READ_TIMEOUT_S	5	   /* a client has this long to send its line */
#define CONTROL_WRITE_TIMEOUT_S 30	   /* ... and to read the reply */
#define CONTROL_CONNS_MAX	64	   /* connections at once; more are closed at accept */

struct event_base;
struct control;
struct control_req;

/*
 * One request. argv (argc words, argv[argc] == NULL) is borrowed until
 * control_reply(req). The callback answers now or later, exactly once.
 */
typedef void (*control_cmd_cb)(void *arg, struct control_req *req, int argc, char **argv);

/*
 * Listens on path. Creates the parent directory (0755) when missing. An
 * existing socket is replaced only when nobody answers on it (ECONNREFUSED).
 * group NULL: mode 0600; else 0660 and that group.
 * Returns 0 and *out (free with control_free), or -EADDRINUSE when another
 * server answers at path, -EEXIST when path is something other than a socket,
 * -ENOENT for an unknown group, -ENAMETOOLONG, -ENOMEM, or the errno of the
 * failing mkdir/socket/bind/chown/chmod/listen (each logged).
 */
__attribute__((warn_unused_result)) int control_new(struct event_base *base, const char *path,
						    const char *group, control_cmd_cb cb, void *arg,
						    struct control **out);

/*
 * Answers req with "OK\n" (ok != 0) or "ERR\n", then body (may be NULL; cut
 * at CONTROL_BODY_MAX with a note), and closes the connection once written.
 * Frees req: call it exactly once per request, now or from a later loop
 * pass. A client that went away, or a server freed meanwhile, makes this
 * just free req.
 */
void control_reply(struct control_req *req, int ok, const char *body);

/*
 * Closes the socket and unlinks its path, and closes every connection.
 * Requests whose callback already ran stay valid: their clients get
 * "ERR\nsupervisor stopping\n" now (best effort) and a later control_reply()
 * only frees them. No callback runs. NULL is a no-op.
 */
void control_free(struct control *c);

#endif
