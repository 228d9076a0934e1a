/*
 * Observability endpoint: /metrics (Prometheus text format 0.0.4),
 * /healthz (the loop answers) and /readyz (listeners bound, spool open).
 * Plain HTTP on the configured address: bind it to loopback or a
 * management network only.
 */
#include "mllp-bridge/bridge.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/http.h>

#include "mllp-bridge/log.h"
#include "mllp-bridge/spool.h"

static const double bucket_bounds[BRIDGE_LAT_BUCKETS] = {
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
};

void histogram_observe(struct histogram *h, double seconds)
{
	int i;

	for (i = 0; i < BRIDGE_LAT_BUCKETS && seconds > bucket_bounds[i]; i++)
		;
	h->count[i]++;
	h->sum += seconds;
}

static void put_help(struct evbuffer *o, const char *name, const char *type, const char *help)
{
	evbuffer_add_printf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* labels: "" or e.g. integration="lab" (already quoted). */
static void put_histogram(struct evbuffer *o, const char *name, const char *labels,
			  const struct histogram *h)
{
	const char *sep = labels[0] ? "," : "";
	uint64_t cum = 0;
	int i;

	for (i = 0; i <= BRIDGE_LAT_BUCKETS; i++) {
		char le[16] = "+Inf";

		cum += h->count[i];
		if (i < BRIDGE_LAT_BUCKETS)
			snprintf(le, sizeof(le), "%g", bucket_bounds[i]);
		evbuffer_add_printf(o, "%s_bucket{%s%sle=\"%s\"} %llu\n", name, labels, sep, le,
				    (unsigned long long)cum);
	}
	if (labels[0])
		evbuffer_add_printf(o, "%s_sum{%s} %.6f\n%s_count{%s} %llu\n", name, labels, h->sum,
				    name, labels, (unsigned long long)cum);
	else
		evbuffer_add_printf(o, "%s_sum %.6f\n%s_count %llu\n", name, h->sum, name,
				    (unsigned long long)cum);
}

static void put_integ_histograms(struct evbuffer *o, const struct bridge *b, const char *name,
				 const char *help, size_t offset)
{
	char labels[CFG_NAME_MAX + 16];
	size_t i;

	put_help(o, name, "histogram", help);
	for (i = 0; i < b->ninteg; i++) {
		snprintf(labels, sizeof(labels), "integration=\"%s\"", b->integs[i].cfg->name);
		put_histogram(o, name, labels,
			      (const struct histogram *)((const char *)&b->integs[i].st + offset));
	}
}

/* A per-integration counter family: one line per integration. */
#define PER_INTEG(o, b, metric, type, help, expr)                                                  \
	do {                                                                                       \
		size_t i_;                                                                         \
		put_help(o, metric, type, help);                                                   \
		for (i_ = 0; i_ < (b)->ninteg; i_++) {                                             \
			const struct integ *in = &(b)->integs[i_];                                 \
			evbuffer_add_printf(o, "%s{integration=\"%s\"} %llu\n", metric,            \
					    in->cfg->name, (unsigned long long)(expr));            \
		}                                                                                  \
	} while (0)

static void put_ack_codes(struct evbuffer *o, const struct bridge *b)
{
	static const char *const codes[6] = {"AA", "AE", "AR", "CA", "CE", "CR"};
	size_t i;
	int k;

	put_help(o, "mllp_acks_total", "counter", "Answers sent, by HL7 acknowledgment code.");
	for (i = 0; i < b->ninteg; i++) {
		const struct integ *in = &b->integs[i];

		for (k = 0; k < 6; k++)
			evbuffer_add_printf(
			    o, "mllp_acks_total{integration=\"%s\",code=\"%s\"} %llu\n",
			    in->cfg->name, codes[k], (unsigned long long)in->st.acks[k]);
		evbuffer_add_printf(o, "mllp_acks_total{integration=\"%s\",code=\"R2_ACK\"} %llu\n",
				    in->cfg->name, (unsigned long long)in->st.r2_acks);
		evbuffer_add_printf(o, "mllp_acks_total{integration=\"%s\",code=\"R2_NAK\"} %llu\n",
				    in->cfg->name, (unsigned long long)in->st.r2_naks);
	}
}

static void put_upstream_classes(struct evbuffer *o, const struct bridge *b)
{
	static const char *const cls[6] = {"error", "1xx", "2xx", "3xx", "4xx", "5xx"};
	size_t i;
	int k;

	put_help(o, "mllp_upstream_responses_total", "counter",
		 "Upstream outcomes: HTTP status class, or error for no HTTP answer.");
	for (i = 0; i < b->ninteg; i++)
		for (k = 0; k < 6; k++)
			evbuffer_add_printf(
			    o,
			    "mllp_upstream_responses_total{integration=\"%s\",class=\"%s\"} %llu\n",
			    b->integs[i].cfg->name, cls[k],
			    (unsigned long long)b->integs[i].st.upstream_class[k]);
}

static void put_spool(struct evbuffer *o, const struct bridge *b)
{
	int64_t now = bridge_wall_ms();

	PER_INTEG(o, b, "mllp_spool_depth", "gauge",
		  "Messages stored and not yet delivered (queued or in flight).", in->depth);
	put_help(o, "mllp_spool_oldest_age_seconds", "gauge",
		 "Age of the oldest undelivered message; 0 when none.");
	for (size_t i = 0; i < b->ninteg; i++) {
		int64_t old = forwarder_oldest_ms(&b->integs[i]);

		evbuffer_add_printf(o, "mllp_spool_oldest_age_seconds{integration=\"%s\"} %.3f\n",
				    b->integs[i].cfg->name, old ? (double)(now - old) / 1000 : 0.0);
	}
	PER_INTEG(o, b, "mllp_upstream_in_flight", "gauge", "Requests in flight upstream.",
		  in->in_flight);
}

static void put_integrations(struct evbuffer *o, const struct bridge *b)
{
	PER_INTEG(o, b, "mllp_frames_total", "counter", "MLLP frames received.", in->st.frames);
	PER_INTEG(o, b, "mllp_bytes_total", "counter", "Payload bytes received.", in->st.bytes);
	put_ack_codes(o, b);
	PER_INTEG(o, b, "mllp_store_failures_total", "counter",
		  "Frames answered with a NAK because the spool could not store them.",
		  in->st.rejected_store);
	put_spool(o, b);
	put_upstream_classes(o, b);
	PER_INTEG(o, b, "mllp_upstream_retries_total", "counter", "Upstream attempts retried.",
		  in->st.retries);
	PER_INTEG(o, b, "mllp_delivered_total", "counter", "Messages the upstream accepted.",
		  in->st.delivered);
	PER_INTEG(o, b, "mllp_dead_letters_total", "counter",
		  "Messages moved to dead letter by a permanent upstream refusal.", in->st.dead);
	put_integ_histograms(o, b, "mllp_ack_latency_seconds", "Frame read to answer written.",
			     offsetof(struct integ_stats, ack_latency));
	put_integ_histograms(o, b, "mllp_upstream_latency_seconds", "One upstream POST.",
			     offsetof(struct integ_stats, upstream_latency));
}

static void put_listeners(struct evbuffer *o, const struct bridge *b)
{
	const struct listener *l;

	put_help(o, "mllp_connections_total", "counter", "MLLP connections accepted.");
	for (l = b->listeners; l; l = l->next)
		evbuffer_add_printf(o, "mllp_connections_total{listen=\"%s\"} %llu\n",
				    l->integs[0]->cfg->listen_text,
				    (unsigned long long)l->accepted);
	put_help(o, "mllp_incomplete_integration_total", "counter",
		 "Peers or messages that matched no integration (closed at once).");
	for (l = b->listeners; l; l = l->next)
		evbuffer_add_printf(o, "mllp_incomplete_integration_total{listen=\"%s\"} %llu\n",
				    l->integs[0]->cfg->listen_text,
				    (unsigned long long)l->incomplete);
}

static void put_global(struct evbuffer *o, const char *name, const char *type, const char *help,
		       uint64_t v)
{
	put_help(o, name, type, help);
	evbuffer_add_printf(o, "%s %llu\n", name, (unsigned long long)v);
}

static void put_bridge(struct evbuffer *o, const struct bridge *b)
{
	struct upstream_stats us;

	upstream_get_stats(b->up, &us);
	put_global(o, "mllp_connections_open", "gauge", "MLLP connections open.", b->conns_open);
	put_global(o, "mllp_junk_bytes_total", "counter",
		   "Bytes discarded outside frames (before a start block).", b->junk_bytes);
	put_global(o, "mllp_abandoned_frames_total", "counter",
		   "Partial frames dropped because a new start block arrived.",
		   b->abandoned_frames);
	put_global(o, "mllp_frame_timeouts_total", "counter",
		   "Partial frames discarded at frame_timeout.", b->frame_timeouts);
	put_global(o, "mllp_idle_timeouts_total", "counter", "Connections closed at idle_timeout.",
		   b->idle_timeouts);
	put_global(o, "mllp_oversize_frames_total", "counter",
		   "Frames refused for exceeding max_frame.", b->oversize);
	put_global(o, "mllp_spool_commits_total", "counter", "Group commits (one fsync each).",
		   b->commits);
	put_global(o, "mllp_spool_commit_rows_total", "counter",
		   "Messages made durable by those commits.", b->commit_rows);
	put_help(o, "mllp_spool_commit_seconds", "histogram",
		 "Duration of one group commit, fsync included: the disk's latency.");
	put_histogram(o, "mllp_spool_commit_seconds", "", &b->commit_time);
	put_global(o, "mllp_spool_commit_failures_total", "counter",
		   "Commits that failed; every message in them was NAKed.", b->commit_failures);
	put_global(o, "mllp_upstream_requests_total", "counter", "Upstream POSTs started.",
		   us.requests);
	put_global(o, "mllp_upstream_connections_total", "counter",
		   "New upstream connections, i.e. TLS handshakes.", us.connections);
}

static void on_metrics(struct evhttp_request *req, void *arg)
{
	struct bridge *b = arg;
	struct evbuffer *o = evbuffer_new();

	if (!o) {
		evhttp_send_error(req, 500, "out of memory");
		return;
	}
	put_integrations(o, b);
	put_listeners(o, b);
	put_bridge(o, b);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
			  "text/plain; version=0.0.4; charset=utf-8");
	evhttp_send_reply(req, 200, "OK", o);
	evbuffer_free(o);
}

static void send_text(struct evhttp_request *req, int code, const char *reason, const char *text)
{
	struct evbuffer *o = evbuffer_new();

	if (o)
		evbuffer_add_printf(o, "%s\n", text);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "text/plain");
	evhttp_send_reply(req, code, reason, o);
	if (o)
		evbuffer_free(o);
}

static void on_healthz(struct evhttp_request *req, void *arg)
{
	(void)arg;
	send_text(req, 200, "OK", "ok");
}

static void on_readyz(struct evhttp_request *req, void *arg)
{
	struct bridge *b = arg;

	if (b->ready && !b->stopping)
		send_text(req, 200, "OK", "ready");
	else
		send_text(req, 503, "Service Unavailable", "not ready");
}

static void on_other(struct evhttp_request *req, void *arg)
{
	(void)arg;
	send_text(req, 404, "Not Found", "not found: try /metrics, /healthz or /readyz");
}

int metrics_start(struct bridge *b)
{
	const struct sockaddr *sa = (const struct sockaddr *)&b->cfg->observability_addr;
	evutil_socket_t fd;

	if (!b->cfg->observability_listen)
		return 0;
	b->http = evhttp_new(b->base);
	if (!b->http)
		return -ENOMEM;
	evhttp_set_allowed_methods(b->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
	evhttp_set_cb(b->http, "/metrics", on_metrics, b);
	evhttp_set_cb(b->http, "/healthz", on_healthz, b);
	evhttp_set_cb(b->http, "/readyz", on_readyz, b);
	evhttp_set_gencb(b->http, on_other, b);
	fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 || evutil_make_listen_socket_reuseable(fd) < 0 ||
	    bind(fd, sa, b->cfg->observability_len) < 0 || listen(fd, 64) < 0 ||
	    !evhttp_accept_socket_with_handle(b->http, fd)) {
		int err = errno;

		if (fd >= 0)
			close(fd);
		log_event(LOG_ERR, "observability_listen_failed", " listen=%s error=\"%s\"",
			  b->cfg->observability_listen, strerror(err));
		return -(err ? err : EADDRNOTAVAIL);
	}
	log_event(LOG_INFO, "observability", " listen=%s", b->cfg->observability_listen);
	return 0;
}

void metrics_free(struct bridge *b)
{
	if (b->http)
		evhttp_free(b->http);
	b->http = NULL;
}
