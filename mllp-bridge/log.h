/*
 * Logging: one line per event on stderr, key=value, e.g.
 *   ts=2026-11-29T14:00:00.123Z level=info event=conn_open integration=lab peer=203.0.113.70:4242
 *
 * Message content (anything from inside an HL7/X12/XML payload) is patient
 * data: it may be logged only through log_phi_enabled() checks, which are
 * off unless the operator set `log_phi: true`.
 */
#ifndef LOG_H
#define LOG_H

enum log_level { LOG_ERR, LOG_WARN, LOG_INFO, LOG_DEBUG };

#define LOG_PHI_FIELD_MAX 512  /* message content quoted in a log line is cut here */
#define LOG_RATE_BURST	  10   /* lines per (event, peer) at once ... */
#define LOG_RATE_PER_S	  1.0  /* ... then this many a second */
#define LOG_RATE_SLOTS	  1024 /* (event, peer) pairs tracked at once */
#define LOG_PEER_MAX	  64   /* a peer's address text */

void log_init(enum log_level min_level, int phi);
/* Adds "proc=name" to every line: the supervisor and its bridge share one
 * stderr. Off (no field) until called. */
void log_set_program(const char *name);
int log_phi_enabled(void);

/* fmt is the rest of the line after "event=<event>", usually " key=%s ...". */
void log_event(enum log_level lvl, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The same, for an event a remote peer can cause at will: at most
 * LOG_RATE_BURST lines at once and LOG_RATE_PER_S a second per (event,
 * peer), so that no sender can flood the disk that holds the spool; the
 * lines dropped are counted in one `log_suppressed kind=... suppressed=N`
 * line when the next one gets through. event must be a string literal (its
 * address is part of the key); peer is the sender's address. Counters in
 * /metrics still count every event. */
void log_event_peer(enum log_level lvl, const char *event, const char *peer, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Copies s into buf (size cap) as a log-safe value: printable ASCII only,
 * spaces and quotes escaped, cut with "..." when long. Returns buf. */
const char *log_safe(char *buf, unsigned cap, const char *s, unsigned len);

#endif
