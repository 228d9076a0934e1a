/*
 * TCP heartbeat to each configured MLLP destination: connect, then close at
 * once (no payload), every supervisor.heartbeat_ms. A probe is made only
 * while the CHILD_SA covering the destination is installed, so that no SYN
 * ever leaves in clear; otherwise the result is HB_SKIPPED.
 */
#ifndef APPLIANCE_HEARTBEAT_H
#define APPLIANCE_HEARTBEAT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define HB_CONNECT_TIMEOUT_MS 5000 /* a probe still connecting then is HB_FAILED, ETIMEDOUT */

struct event_base;
struct cfg;
struct heartbeat;

enum hb_state {
	HB_UNKNOWN, /* not probed yet */
	HB_OK,	    /* the last probe connected */
	HB_FAILED,  /* the last probe did not: see err */
	HB_SKIPPED  /* the last round found no installed CHILD_SA covering it */
};

struct hb_result {
	enum hb_state state;
	int err;	 /* HB_FAILED: the positive errno (ETIMEDOUT, ECONNREFUSED, ...); else 0 */
	uint64_t rtt_us; /* HB_OK: how long connect() took; else 0 */
	int64_t at_unix; /* when the result was recorded; 0 while HB_UNKNOWN */
};

/* 1: the CHILD_SA covering addr (a destination's address and port) is
 * installed, so a probe may go. Called right before every probe. */
typedef int (*hb_allowed_cb)(void *arg, const struct sockaddr *addr);

/*
 * Starts probing cfg->destinations: a first round on the next loop pass,
 * then one every cfg->supervisor.heartbeat_ms. A destination whose previous
 * probe is still connecting is left out of a round. cfg is read during the
 * call only (the destinations are copied). Returns 0 and *out (free with
 * heartbeat_free), -EINVAL for heartbeat_ms 0 or no allowed callback,
 * -ENOMEM.
 */
__attribute__((warn_unused_result)) int heartbeat_new(struct event_base *base,
						      const struct cfg *cfg, hb_allowed_cb allowed,
						      void *arg, struct heartbeat **out);

/* The latest result of destination dest (its index in cfg->destinations);
 * NULL when dest is out of range. Valid until heartbeat_free(). */
const struct hb_result *heartbeat_result(const struct heartbeat *h, size_t dest);

/* Stops probing; probes in flight are closed. NULL is a no-op. */
void heartbeat_free(struct heartbeat *h);

#endif
