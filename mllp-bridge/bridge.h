/*
 * The bridge runtime: one libevent loop that owns the MLLP listeners, the
 * group-commit batch, the upstream forwarder and the observability endpoint.
 *
 * Message life, inbound:
 *   frame read → validated → spool_append (staged) → commit event (one fsync
 *   for every frame read in this loop pass) → ACK written (ack: commit) and
 *   the message handed to the forwarder → POST upstream → delivered.
 *
 * The commit event is activated by the first frame staged in a loop pass
 * and runs after every socket event of that pass: that is what groups many
 * messages into one fsync without adding a timer's latency.
 */
#ifndef BRIDGE_H
#define BRIDGE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include "mllp-bridge/config.h"
#include "mllp-bridge/hl7.h"
#include "mllp-bridge/upstream.h"

struct event_base;
struct event;
struct evconnlistener;
struct evhttp;
struct spool;
struct bridge;
struct conn;
struct fwd_msg;
struct spool_new;

#define BRIDGE_PEER_MAX		64    /* "[v6addr]:port" text */
#define BRIDGE_BATCH_MAX	1024  /* staged rows that force a commit now */
#define BRIDGE_CONN_PENDING_MAX 256   /* unanswered frames before a reader pauses */
#define BRIDGE_REPLAY_POLL_MS	1000  /* how often operator replays are picked up */
#define BRIDGE_PURGE_POLL_MS	60000 /* the retention purge runs at least this often */
#define BRIDGE_MSH_COPY_MAX	2048  /* MSH kept for a late ACK (ack: upstream) */
#define BRIDGE_LAT_BUCKETS	14
#define BRIDGE_MEM_BODIES_MAX	(64u << 20) /* bodies handed to the forwarder in memory */

/* A committed message as the forwarder needs it, handed over in memory so
 * that it is not read back from the spool. Past BRIDGE_MEM_BODIES_MAX in
 * total, messages are not copied and the forwarder reads the spool. */
struct fwd_body {
	size_t len;  /* body bytes */
	size_t size; /* the whole allocation, for the cap */
	char idem_key[37];
	const char *content_type; /* these point into data[] */
	const char *control_id;
	const char *sender;
	char data[]; /* body, then the three strings */
};

/* A Prometheus histogram with fixed bucket bounds (seconds). */
struct histogram {
	uint64_t count[BRIDGE_LAT_BUCKETS + 1];
	double sum;
};
void histogram_observe(struct histogram *h, double seconds);

/* Counters per integration, read by /metrics. */
struct integ_stats {
	uint64_t frames;
	uint64_t bytes;
	uint64_t acks[6]; /* AA AE AR CA CE CR */
	uint64_t r2_acks, r2_naks;
	uint64_t rejected_store;    /* NAK because the spool failed */
	uint64_t upstream_class[6]; /* 0: transport error, 1..5: status class */
	uint64_t retries;
	uint64_t dead;
	uint64_t delivered;
	struct histogram ack_latency;	   /* frame read → ACK written */
	struct histogram upstream_latency; /* one POST */
};

/* One sender's FIFO: messages from one peer address (or the whole
 * integration with order: integration). */
struct fwd_sender {
	char key[BRIDGE_PEER_MAX];
	TAILQ_HEAD(, fwd_msg) q;
	size_t depth;
	int busy; /* its head is in flight or waiting to retry */
	struct event *retry_ev;
	struct integ *integ;
	TAILQ_ENTRY(fwd_sender) ready_link;
	int on_ready;
	struct fwd_sender *hash_next;
};

#define FWD_HASH_SIZE 256

/* The runtime of one configured integration. */
struct integ {
	const struct cfg_integration *cfg;
	struct bridge *b;
	struct upstream_target target;
	char *bearer_token;
	struct integ_stats st;
	/* forwarder */
	struct fwd_sender *senders[FWD_HASH_SIZE];
	TAILQ_HEAD(, fwd_sender) ready;
	unsigned in_flight;
	size_t depth;
};

/* A response slot: frames on one connection are answered in the order they
 * arrived, whatever order their outcomes are known in. */
struct reply {
	TAILQ_ENTRY(reply) link;  /* in conn->replies */
	TAILQ_ENTRY(reply) batch; /* in bridge->staged while uncommitted */
	struct conn *conn;	  /* NULL once the connection is gone */
	struct integ *integ;
	int ready;   /* ack/ack_len hold the answer */
	int release; /* MLLP release of the connection: 1 or 2 */
	int64_t spool_id;
	int64_t received_ms;
	double t_read;		      /* monotonic seconds when the frame was read */
	char sender[BRIDGE_PEER_MAX]; /* peer address without port */
	struct fwd_body *fb;	      /* set while staged, passed to the forwarder */
	char *ack;		      /* the framed answer; NULL when none is due */
	size_t ack_len;
	size_t msh_len; /* 0 when the payload had no usable MSH */
	char msh[];	/* copy of the MSH segment, for ACKs built later */
};

struct listener {
	struct bridge *b;
	struct evconnlistener *evl;
	struct sockaddr_storage addr;
	socklen_t addr_len;
	struct integ **integs; /* integrations that listen here */
	size_t ninteg;
	LIST_HEAD(, conn) conns;
	uint64_t incomplete; /* peers that matched no integration */
	uint64_t accepted;
	struct listener *next;
};

struct bridge {
	struct event_base *base;
	const struct cfg *cfg;
	struct spool *spool;
	struct upstream *up;
	struct integ *integs;
	size_t ninteg;
	struct listener *listeners;
	TAILQ_HEAD(, reply) staged; /* appended, awaiting the commit */
	size_t nstaged;
	struct event *commit_ev;
	struct event *flush_ev;
	int commit_scheduled;
	struct event *replay_ev;
	struct event *purge_ev;
	struct event *sig_ev[3];
	struct evhttp *http;
	uint64_t ack_seq;  /* for ACK control ids */
	size_t mem_bodies; /* bytes held in fwd_body copies */
	int64_t started_s;
	uint64_t conns_open;
	uint64_t junk_bytes;
	uint64_t abandoned_frames;
	uint64_t frame_timeouts;
	uint64_t idle_timeouts;
	uint64_t oversize;
	uint64_t commits;
	uint64_t commit_rows;
	uint64_t commit_failures;
	struct histogram commit_time;
	int ready; /* listeners bound and spool open */
	int stopping;
};

/* bridge.c */
__attribute__((warn_unused_result)) int bridge_new(const struct cfg *cfg, struct bridge **out);
/* Stages a validated frame into the open batch; r is answered after the
 * commit. On a spool failure every frame of the batch, r included, is
 * answered with a NAK at once. */
void bridge_stage(struct bridge *b, struct reply *r, const struct spool_new *m);
int bridge_run(struct bridge *b);
void bridge_free(struct bridge *b);
void bridge_schedule_commit(struct bridge *b);
/* The runtime of the integration with this name, or NULL. */
struct integ *bridge_integ(struct bridge *b, const char *name);
/* State changes are staged: commit them soon, with whatever else comes. */
void bridge_schedule_flush(struct bridge *b);
/* Frees a fwd_body (NULL is fine) and gives its bytes back to the cap. */
void fwd_body_free(struct bridge *b, struct fwd_body *fb);
/* The spool failed inside the open batch (it rolled back): every staged
 * frame is answered with a NAK. */
void bridge_batch_failed(struct bridge *b, int err);
double bridge_now(void); /* monotonic seconds */
int64_t bridge_wall_ms(void);

/* listener.c */
__attribute__((warn_unused_result)) int listeners_start(struct bridge *b);
void listeners_free(struct bridge *b);
/* A reply's outcome is known: write every ready reply at the head of its
 * connection's queue. Frees replies whose connection is gone. */
void reply_complete(struct reply *r);
/* Fill r with an HL7 or R2 answer. */
void reply_set_ack(struct reply *r, enum hl7_ack_code code, enum hl7_err_code err, char severity,
		   const char *text);
/* Fill r with a relayed HL7 answer (already a complete HL7 message). */
void reply_set_raw(struct reply *r, const void *hl7, size_t len);

/* forwarder.c */
__attribute__((warn_unused_result)) int forwarder_start(struct bridge *b);
void forwarder_free(struct bridge *b);
/* Queue a committed message. waiter, if not NULL, gets the upstream's answer
 * (ack: upstream) and is completed by the forwarder. */
__attribute__((warn_unused_result)) int forwarder_enqueue(struct integ *in, int64_t id,
							  const char *sender, int64_t received_ms,
							  struct reply *waiter);
/* The same, with the message's content in memory; takes ownership of fb
 * (also on failure). */
__attribute__((warn_unused_result)) int forwarder_enqueue_body(struct integ *in, int64_t id,
							       int64_t received_ms,
							       struct reply *waiter,
							       struct fwd_body *fb);

/* received_ms of the oldest message waiting in the integration; 0 if none. */
int64_t forwarder_oldest_ms(const struct integ *in);

/* metrics.c */
__attribute__((warn_unused_result)) int metrics_start(struct bridge *b);
void metrics_free(struct bridge *b);

#endif
