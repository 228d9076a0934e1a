/*
 * One vici connection driven by the supervisor's libevent loop: watches the
 * connection's fd for what it wants and ticks it at its deadlines.
 */
#ifndef APPLIANCE_VLOOP_H
#define APPLIANCE_VLOOP_H

#include <event2/event.h>

#include "vici-client/vici.h"

struct vloop;

/* Creates the connection to uri and starts connecting (it retries by itself).
 * Returns 0 and *out, -EINVAL for a bad URI, -ENOMEM. */
__attribute__((warn_unused_result)) int vloop_new(struct event_base *base, const char *uri,
						  struct vloop **out);

/* The connection, for commands and subscriptions. After queuing anything
 * outside a vici callback, call vloop_kick(): the fd's interest changed. */
struct vici_conn *vloop_conn(struct vloop *v);

/* Re-reads the connection's fd, interest and deadline on the next loop pass. */
void vloop_kick(struct vloop *v);

/* Fails every request with -ECANCELED and closes. NULL is fine. */
void vloop_free(struct vloop *v);

#endif
