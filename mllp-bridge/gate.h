/*
 * The gate: which peers sit behind an installed CHILD_SA (invariant 3,
 * fail closed). Plain MLLP is accepted from, and later sent to, a peer only
 * while the gate allows it.
 *
 * Closed (the default, `gate: closed`): a peer is allowed when it lies
 * inside one of the current CIDRs, the remote traffic selectors of the
 * installed CHILD_SAs. The set starts empty, so nothing is allowed until
 * someone (the supervisor link) says which SAs are up. Open (`gate: open`,
 * a bridge run without tunnels): every peer is allowed; the set is still
 * kept for the metrics.
 *
 * Core module: it knows no edge. Whoever learns the SAs calls gate_set();
 * whoever holds connections registers with gate_watch() and re-asks
 * gate_allows() for each of them when called.
 */
#ifndef GATE_H
#define GATE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "mllp-bridge/config.h"

struct gate;

#define GATE_CIDRS_MAX	  256 /* CIDRs in one set: the supervisor's IPC_GATE_MAX */
#define GATE_WATCHERS_MAX 8

/* Called from gate_set() after the set changed; g is the gate, borrowed for
 * the call. A watcher must not call gate_set() or gate_watch() from here. */
typedef void (*gate_watch_cb)(void *arg, const struct gate *g);

/* open: non-zero for `gate: open`. *out is freed with gate_free().
 * Returns 0 or -ENOMEM. */
__attribute__((warn_unused_result)) int gate_new(int open, struct gate **out);
void gate_free(struct gate *g);

/* 1 when plain MLLP may be exchanged with peer (an AF_INET or AF_INET6
 * address; IPv4-mapped IPv6 counts as IPv4), else 0. */
int gate_allows(const struct gate *g, const struct sockaddr *peer);

/* Replaces the set with a copy of cidrs[0..n) (n 0 closes the gate for
 * everyone in closed mode) and, when the set is not the same as before,
 * calls every watcher. Returns 0, -EINVAL (n > GATE_CIDRS_MAX, a family
 * other than AF_INET/AF_INET6 or a prefix that does not fit it: the set is
 * then left as it was), or -ENOMEM (the set is then empty, and the watchers
 * are called: fail closed). */
__attribute__((warn_unused_result)) int gate_set(struct gate *g, const struct cfg_cidr *cidrs,
						 size_t n);

/* gate_set() with the empty set, which cannot fail: in closed mode nobody
 * passes any more (the watchers hear it when the set was not empty). */
void gate_close(struct gate *g);

/* Marks whether a supervisor link feeds the gate (for the metrics only). */
void gate_set_linked(struct gate *g, int linked);

/* Registers cb(arg) for every change; borrowed until gate_unwatch() or
 * gate_free(). Returns 0 or -ENOSPC past GATE_WATCHERS_MAX. */
__attribute__((warn_unused_result)) int gate_watch(struct gate *g, gate_watch_cb cb, void *arg);
void gate_unwatch(struct gate *g, gate_watch_cb cb, void *arg);

struct gate_stats {
	int open;	  /* gate: open */
	int linked;	  /* a supervisor link feeds the set */
	size_t ncidrs;	  /* CIDRs in the current set */
	uint64_t changes; /* times the set changed */
};

void gate_stats(const struct gate *g, struct gate_stats *st);

/* The i-th CIDR of the current set (i < ncidrs), for logs and tests. */
void gate_cidr(const struct gate *g, size_t i, struct cfg_cidr *out);

#endif
