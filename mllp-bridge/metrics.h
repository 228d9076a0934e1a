/*
 * Observability endpoint: /metrics (Prometheus text format 0.0.4),
 * /healthz (the loop answers) and /readyz (listeners bound, spool open, not
 * stopping). Plain HTTP on the configured address: bind it to loopback or a
 * management network only.
 *
 * It renders the modules' *_stats() snapshots and reads nobody's fields.
 * The appliance_* families (tunnels as the supervisor reports them) appear
 * only when the bridge has a supervisor link.
 */
#ifndef METRICS_H
#define METRICS_H

struct event_base;
struct cfg;
struct mllp_in;
struct forward;
struct commit;
struct upstream;
struct gate;
struct tunnel;
struct mllp_out;
struct https_in;
struct metrics;

/* What /metrics reads; borrowed for the endpoint's life. */
struct metrics_sources {
	const struct mllp_in *in;
	const struct forward *fwd;
	const struct commit *commit;
	const struct upstream *up;
	const struct gate *gate;
	const struct tunnel *tun;     /* NULL: no supervisor link */
	const struct mllp_out *out;   /* NULL: no destinations */
	const struct https_in *https; /* NULL: no https listener */
	const struct files *files;    /* NULL: no SFTP channel */
	int (*ready)(void *arg);      /* /readyz: non-zero when ready */
	void *arg;
};

/* Starts the endpoint on cfg->observability_addr; *out is NULL (and 0 is
 * returned) when the configuration has none. Negative errno, logged, when
 * the address cannot be bound. */
__attribute__((warn_unused_result)) int metrics_new(struct event_base *base, const struct cfg *cfg,
						    const struct metrics_sources *src,
						    struct metrics **out);
void metrics_free(struct metrics *m);

#endif
