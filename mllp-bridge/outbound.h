/*
 * The composition root's outbound half: joins the HTTPS listener (https_in)
 * to the spool (commit) and the MLLP senders (mllp_out).
 *
 *   https_in ──submit──▶ commit (fsync) ──▶ 202, and mllp_out_enqueue()
 *                                               (or the push hook: SFTP)
 *   https_in ──lookup──▶ spool_get()      https_in ──wait──▶ mllp_out_watch()
 *
 * It owns no data path of its own: it is bridge.c's wiring for the second
 * direction, kept apart so that each file reads as one flow. At start the
 * outbound rows still pending in the spool are queued again, in id order.
 */
#ifndef OUTBOUND_H
#define OUTBOUND_H

#include "mllp-bridge/config.h"

struct event_base;
struct spool;
struct commit;
struct gate;
struct outbound;
struct mllp_out;
struct https_in;

/* Rows for a destination with `sftp:` are not sent over MLLP: they go up
 * to push(arg, dest, id) (dest: the index in cfg->destinations), committed
 * ones and, at start and after an operator's replay, pending ones, in id
 * order. Returns 0 or a negative errno (the row stays in the spool). */
struct outbound_hooks {
	int (*push)(void *arg, size_t dest, int64_t id);
	void *arg;
};

/* Starts the senders (when destinations exist) and the listener (when
 * https: is set); requeues pending outbound rows. Everything is borrowed
 * for the module's life (hooks is copied). *out is NULL when neither is
 * configured. Returns 0 or a negative errno from the parts. */
__attribute__((warn_unused_result)) int outbound_new(struct event_base *base, const struct cfg *cfg,
						     struct spool *spool, struct commit *commit,
						     struct gate *gate,
						     const struct outbound_hooks *hooks,
						     struct outbound **out);

/* The senders and the listener, for /metrics (NULL when none). */
const struct mllp_out *outbound_senders(const struct outbound *o);
const struct https_in *outbound_listener(const struct outbound *o);

/* Stops the listener, then the senders. NULL is fine. */
void outbound_free(struct outbound *o);

#endif
