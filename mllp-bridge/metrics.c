#include "mllp-bridge/metrics.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>

#include "mllp-bridge/commit.h"
#include "mllp-bridge/config.h"
#include "mllp-bridge/files.h"
#include "mllp-bridge/forward.h"
#include "mllp-bridge/gate.h"
#include "mllp-bridge/https_in.h"
#include "mllp-bridge/log.h"
#include "mllp-bridge/mllp_in.h"
#include "mllp-bridge/mllp_out.h"
#include "mllp-bridge/tunnel.h"
#include "mllp-bridge/upstream.h"

#define METRICS_BACKLOG		64
#define METRICS_ACCEPT_PAUSE_MS 100 /* the endpoint rests this long when out of descriptors */

struct metrics {
	const struct cfg *cfg;
	struct metrics_sources src;
	struct evhttp *http;
};

/* One integration's snapshots, taken once per scrape. */
struct snap {
	const char *name;
	struct mllp_in_integ_stats in;
	struct fwd_stats fwd;
};

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

	for (int i = 0; i <= STATS_BUCKETS; i++) {
		char le[16] = "+Inf";

		cum += h->count[i];
		if (i < STATS_BUCKETS)
			snprintf(le, sizeof(le), "%g", stats_bucket_bound(i));
		evbuffer_add_printf(o, "%s_bucket{%s%sle=\"%s\"} %llu\n", name, labels, sep, le,
				    (unsigned long long)cum);
	}
	evbuffer_add_printf(o, "%s_sum%s%s%s %.6f\n%s_count%s%s%s %llu\n", name,
			    labels[0] ? "{" : "", labels, labels[0] ? "}" : "", h->sum, name,
			    labels[0] ? "{" : "", labels, labels[0] ? "}" : "",
			    (unsigned long long)cum);
}

static void put_integ_histograms(struct evbuffer *o, const struct snap *s, size_t n,
				 const char *name, const char *help, size_t offset)
{
	char labels[CFG_NAME_MAX + 16];

	put_help(o, name, "histogram", help);
	for (size_t i = 0; i < n; i++) {
		snprintf(labels, sizeof(labels), "integration=\"%s\"", s[i].name);
		put_histogram(o, name, labels,
			      (const struct histogram *)((const char *)&s[i] + offset));
	}
}

/* A per-integration family: one line per integration. */
#define PER_INTEG(o, s, n, metric, type, help, fmt, expr)                                          \
	do {                                                                                       \
		put_help(o, metric, type, help);                                                   \
		for (size_t i_ = 0; i_ < (n); i_++) {                                              \
			const struct snap *x = &(s)[i_];                                           \
			evbuffer_add_printf(o, "%s{integration=\"%s\"} " fmt "\n", metric,         \
					    x->name, (expr));                                      \
		}                                                                                  \
	} while (0)
#define PER_INTEG_U(o, s, n, metric, type, help, expr)                                             \
	PER_INTEG(o, s, n, metric, type, help, "%llu", (unsigned long long)(expr))

static void put_ack_codes(struct evbuffer *o, const struct snap *s, size_t n)
{
	static const char *const codes[MLLP_IN_ACK_KINDS] = {"AA", "AE", "AR", "CA", "CE", "CR"};

	put_help(o, "mllp_acks_total", "counter", "Answers sent, by HL7 acknowledgment code.");
	for (size_t i = 0; i < n; i++) {
		for (int k = 0; k < MLLP_IN_ACK_KINDS; k++)
			evbuffer_add_printf(
			    o, "mllp_acks_total{integration=\"%s\",code=\"%s\"} %llu\n", s[i].name,
			    codes[k], (unsigned long long)s[i].in.acks[k]);
		evbuffer_add_printf(o, "mllp_acks_total{integration=\"%s\",code=\"R2_ACK\"} %llu\n",
				    s[i].name, (unsigned long long)s[i].in.r2_acks);
		evbuffer_add_printf(o, "mllp_acks_total{integration=\"%s\",code=\"R2_NAK\"} %llu\n",
				    s[i].name, (unsigned long long)s[i].in.r2_naks);
	}
}

static void put_upstream_classes(struct evbuffer *o, const struct snap *s, size_t n)
{
	static const char *const cls[FWD_STATUS_CLASSES] = {"error", "1xx", "2xx",
							    "3xx",   "4xx", "5xx"};

	put_help(o, "mllp_upstream_responses_total", "counter",
		 "Upstream outcomes: HTTP status class, or error for no HTTP answer.");
	for (size_t i = 0; i < n; i++)
		for (int k = 0; k < FWD_STATUS_CLASSES; k++)
			evbuffer_add_printf(
			    o,
			    "mllp_upstream_responses_total{integration=\"%s\",class=\"%s\"} %llu\n",
			    s[i].name, cls[k], (unsigned long long)s[i].fwd.upstream_class[k]);
}

static void put_integrations(struct evbuffer *o, const struct snap *s, size_t n)
{
	int64_t now = stats_wall_ms();

	PER_INTEG_U(o, s, n, "mllp_frames_total", "counter", "MLLP frames received.", x->in.frames);
	PER_INTEG_U(o, s, n, "mllp_bytes_total", "counter", "Payload bytes received.", x->in.bytes);
	put_ack_codes(o, s, n);
	PER_INTEG_U(o, s, n, "mllp_store_failures_total", "counter",
		    "Frames answered with a NAK because the spool could not store them.",
		    x->in.rejected_store);
	PER_INTEG_U(o, s, n, "mllp_duplicates_total", "counter",
		    "Resends answered from the dedup window and not stored again.",
		    x->in.duplicates);
	PER_INTEG_U(o, s, n, "mllp_spool_depth", "gauge",
		    "Messages stored and not yet delivered (queued or in flight).", x->fwd.depth);
	PER_INTEG(o, s, n, "mllp_spool_oldest_age_seconds", "gauge",
		  "Age of the oldest undelivered message; 0 when none.", "%.3f",
		  x->fwd.oldest_ms ? (double)(now - x->fwd.oldest_ms) / 1000 : 0.0);
	PER_INTEG_U(o, s, n, "mllp_upstream_in_flight", "gauge", "Requests in flight upstream.",
		    x->fwd.in_flight);
	PER_INTEG_U(o, s, n, "mllp_lanes", "gauge",
		    "Lanes (ordered FIFOs, one request in flight each) holding messages.",
		    x->fwd.lanes);
	put_upstream_classes(o, s, n);
	PER_INTEG_U(o, s, n, "mllp_upstream_retries_total", "counter", "Upstream attempts retried.",
		    x->fwd.retries);
	PER_INTEG_U(o, s, n, "mllp_delivered_total", "counter", "Messages the upstream accepted.",
		    x->fwd.delivered);
	PER_INTEG_U(o, s, n, "mllp_dead_letters_total", "counter",
		    "Messages moved to dead letter by a permanent upstream refusal.", x->fwd.dead);
	PER_INTEG_U(o, s, n, "mllp_upstream_http2_avoided", "gauge",
		    "1 once an early answer made this integration speak HTTP/1.1 upstream.",
		    x->fwd.http2_avoided);
	PER_INTEG_U(o, s, n, "mllp_replayed_total", "counter",
		    "Dead letters an operator replayed, queued again.", x->fwd.replayed);
	put_integ_histograms(o, s, n, "mllp_ack_latency_seconds", "Frame read to answer written.",
			     offsetof(struct snap, in.ack_latency));
	put_integ_histograms(o, s, n, "mllp_upstream_latency_seconds", "One upstream POST.",
			     offsetof(struct snap, fwd.upstream_latency));
}

static void put_listeners(struct evbuffer *o, const struct mllp_in *in)
{
	size_t n = mllp_in_nlisteners(in);
	struct mllp_in_listener_stats ls;

	put_help(o, "mllp_connections_total", "counter", "MLLP connections accepted.");
	for (size_t i = 0; i < n; i++) {
		mllp_in_listener_stats(in, i, &ls);
		evbuffer_add_printf(o, "mllp_connections_total{listen=\"%s\"} %llu\n", ls.listen,
				    (unsigned long long)ls.accepted);
	}
	put_help(o, "mllp_incomplete_integration_total", "counter",
		 "Peers or messages that matched no integration (closed at once).");
	for (size_t i = 0; i < n; i++) {
		mllp_in_listener_stats(in, i, &ls);
		evbuffer_add_printf(o, "mllp_incomplete_integration_total{listen=\"%s\"} %llu\n",
				    ls.listen, (unsigned long long)ls.incomplete);
	}
}

static void put_global(struct evbuffer *o, const char *name, const char *type, const char *help,
		       uint64_t v)
{
	put_help(o, name, type, help);
	evbuffer_add_printf(o, "%s %llu\n", name, (unsigned long long)v);
}

static void put_bridge(struct evbuffer *o, const struct metrics_sources *src)
{
	struct mllp_in_stats ms;
	struct commit_stats cs;
	struct upstream_stats us;

	mllp_in_stats(src->in, &ms);
	commit_stats(src->commit, &cs);
	upstream_get_stats(src->up, &us);
	put_global(o, "mllp_connections_open", "gauge", "MLLP connections open.", ms.conns_open);
	put_global(o, "mllp_junk_bytes_total", "counter",
		   "Bytes discarded outside frames (before a start block).", ms.junk_bytes);
	put_global(o, "mllp_abandoned_frames_total", "counter",
		   "Partial frames dropped because a new start block arrived.",
		   ms.abandoned_frames);
	put_global(o, "mllp_frame_timeouts_total", "counter",
		   "Partial frames discarded at frame_timeout.", ms.frame_timeouts);
	put_global(o, "mllp_idle_timeouts_total", "counter", "Connections closed at idle_timeout.",
		   ms.idle_timeouts);
	put_global(o, "mllp_oversize_frames_total", "counter",
		   "Frames refused for exceeding max_frame.", ms.oversize);
	put_help(o, "mllp_connections_refused_total", "counter",
		 "Connections closed at once: connections.max, per_source, or the gate "
		 "(no installed CHILD_SA covers the peer).");
	evbuffer_add_printf(o, "mllp_connections_refused_total{limit=\"max\"} %llu\n",
			    (unsigned long long)ms.refused_total);
	evbuffer_add_printf(o, "mllp_connections_refused_total{limit=\"per_source\"} %llu\n",
			    (unsigned long long)ms.refused_per_source);
	evbuffer_add_printf(o, "mllp_connections_refused_total{limit=\"gate\"} %llu\n",
			    (unsigned long long)ms.refused_gate);
	put_help(o, "mllp_connections_closed_total", "counter",
		 "Open connections closed by the bridge because the tunnel behind the peer went "
		 "down.");
	evbuffer_add_printf(o, "mllp_connections_closed_total{reason=\"tunnel_down\"} %llu\n",
			    (unsigned long long)ms.closed_gate);
	put_global(o, "mllp_accept_pauses_total", "counter",
		   "Times accepting paused because the process was out of descriptors.",
		   ms.accept_pauses);
	put_global(o, "mllp_spool_commits_total", "counter", "Group commits (one fsync each).",
		   cs.commits);
	put_global(o, "mllp_spool_commit_rows_total", "counter",
		   "Messages made durable by those commits.", cs.rows);
	put_help(o, "mllp_spool_commit_seconds", "histogram",
		 "Duration of one group commit, fsync included: the disk's latency.");
	put_histogram(o, "mllp_spool_commit_seconds", "", &cs.time);
	put_global(o, "mllp_spool_commit_failures_total", "counter",
		   "Commits that failed; every message in them was NAKed.", cs.failures);
	put_global(o, "mllp_upstream_requests_total", "counter", "Upstream POSTs started.",
		   us.requests);
	put_global(o, "mllp_upstream_connections_total", "counter",
		   "New upstream connections, i.e. TLS handshakes.", us.connections);
	put_global(o, "mllp_upstream_tls_resumed_total", "counter",
		   "Of those handshakes, the ones that resumed a TLS session.", us.resumed);
	put_global(o, "mllp_upstream_early_answers_total", "counter",
		   "Complete answers sent before the request body was read (RFC 9113 8.1).",
		   us.early_answers);
	put_global(o, "mllp_upstream_early_lost_total", "counter",
		   "Early answers libcurl lost; those requests were retried.", us.early_lost);
	put_global(o, "mllp_upstream_resends_total", "counter",
		   "Requests sent again after the connection died unanswered (GOAWAY).",
		   us.resends);
	put_global(o, "mllp_upstream_in_tunnel_total", "counter",
		   "Upstream connections refused: the address lies inside a tunnel's remote_ts.",
		   us.in_tunnel);
}

static void put_gate(struct evbuffer *o, const struct gate *g)
{
	struct gate_stats gs;

	gate_stats(g, &gs);
	put_global(o, "mllp_gate_open", "gauge",
		   "1 with gate: open (every peer passes); 0: only peers behind an installed "
		   "CHILD_SA.",
		   (uint64_t)gs.open);
	put_global(o, "mllp_gate_cidrs", "gauge",
		   "Remote traffic selectors of the installed CHILD_SAs the gate allows now.",
		   gs.ncidrs);
	put_global(o, "mllp_gate_changes_total", "counter",
		   "Times the set of allowed traffic selectors changed.", gs.changes);
	put_global(o, "mllp_supervisor_link_up", "gauge",
		   "1 while the supervisor link is up; 0 without a supervisor.",
		   (uint64_t)gs.linked);
}

/* The tunnels as the supervisor last reported them: only with a link. */
static void put_appliance(struct evbuffer *o, const struct tunnel *tun)
{
	struct tunnel_stats ts;
	const struct ipc_tunnels *t = &ts.tunnels;

	tunnel_stats(tun, &ts);
	put_help(o, "appliance_tunnel_up", "gauge",
		 "1 when the tunnel's IKE_SA is established and every CHILD_SA installed.");
	for (size_t i = 0; i < t->n; i++)
		evbuffer_add_printf(o, "appliance_tunnel_up{tunnel=\"%s\"} %u\n", t->t[i].name,
				    (unsigned)t->t[i].up);
	put_help(o, "appliance_sa_dh_group", "gauge",
		 "Negotiated DH group: of the IKE_SA (sa=ike) and the newest CHILD_SA's PFS "
		 "(sa=child); 0 when none.");
	for (size_t i = 0; i < t->n; i++)
		evbuffer_add_printf(o,
				    "appliance_sa_dh_group{tunnel=\"%s\",sa=\"ike\"} %u\n"
				    "appliance_sa_dh_group{tunnel=\"%s\",sa=\"child\"} %u\n",
				    t->t[i].name, (unsigned)t->t[i].ike_dh, t->t[i].name,
				    (unsigned)t->t[i].esp_dh);
	put_help(o, "appliance_tunnel_last_change_seconds", "gauge",
		 "When the tunnel last went up or down, seconds since the epoch.");
	for (size_t i = 0; i < t->n; i++)
		evbuffer_add_printf(o, "appliance_tunnel_last_change_seconds{tunnel=\"%s\"} %lld\n",
				    t->t[i].name, (long long)t->t[i].changed_unix);
	put_global(o, "appliance_bridge_restarts_total", "counter",
		   "Times the supervisor restarted the bridge.", t->bridge_restarts);
}

/* Per-destination counters of the MLLP senders, one family each. */
static const struct {
	const char *name, *help;
	size_t off;
} out_counters[] = {
    {"mllp_out_sent_total", "Frames written to the destination (a resend counts again).",
     offsetof(struct mllp_out_stats, sent)},
    {"mllp_out_acked_total", "Messages the receiver acknowledged (AA/CA, R2 commit ACK).",
     offsetof(struct mllp_out_stats, acked)},
    {"mllp_out_rejected_total", "Messages rejected (AE/AR under a dead policy).",
     offsetof(struct mllp_out_stats, rejected)},
    {"mllp_out_dead_total", "Messages that reached max_attempts.",
     offsetof(struct mllp_out_stats, dead)},
    {"mllp_out_retries_total", "Resends scheduled after a failure or an AE/AR.",
     offsetof(struct mllp_out_stats, retries)},
    {"mllp_out_ack_timeouts_total", "Messages not answered within ack_timeout.",
     offsetof(struct mllp_out_stats, ack_timeouts)},
    {"mllp_out_ack_errors_total", "Wrong MSA-2, unreadable answers, R2 NAKs.",
     offsetof(struct mllp_out_stats, ack_errors)},
    {"mllp_out_transport_errors_total", "Failed connects and closes mid-message.",
     offsetof(struct mllp_out_stats, transport_errors)},
    {"mllp_out_gate_waits_total", "Times a message waited because no CHILD_SA covered it.",
     offsetof(struct mllp_out_stats, gate_waits)},
    {"mllp_out_connects_total", "Connections established to the destination.",
     offsetof(struct mllp_out_stats, connects)},
    {"mllp_out_idle_closes_total", "Connections closed after idle_timeout.",
     offsetof(struct mllp_out_stats, idle_closes)},
};

static void put_out_gauges(struct evbuffer *o, const struct cfg *cfg,
			   const struct mllp_out_stats *st)
{
	int64_t now = (int64_t)time(NULL) * 1000;
	static const char *const names[] = {"mllp_out_queued", "mllp_out_connected",
					    "mllp_out_waiting_gate", "mllp_out_oldest_age_seconds"};
	static const char *const helps[] = {
	    "Messages waiting for the destination, the one in flight included.",
	    "1 while a connection to the destination is established.",
	    "1 while the next message waits for a CHILD_SA covering the destination.",
	    "Age of the oldest waiting message; 0 when none."};

	for (size_t g = 0; g < 4; g++) {
		put_help(o, names[g], "gauge", helps[g]);
		for (size_t i = 0; i < cfg->ndestinations; i++) {
			const struct mllp_out_stats *s = &st[i];
			double v = g == 0	  ? (double)s->queued
				   : g == 1	  ? s->connected
				   : g == 2	  ? s->waiting_gate
				   : s->oldest_ms ? (double)(now - s->oldest_ms) / 1000.0
						  : 0.0;

			evbuffer_add_printf(o, "%s{destination=\"%s\"} %g\n", names[g],
					    cfg->destinations[i].name, v);
		}
	}
}

/* The outbound senders, per destination, and the memory their queues hold. */
static void put_outbound(struct evbuffer *o, const struct cfg *cfg, const struct mllp_out *out)
{
	struct mllp_out_stats *st = calloc(cfg->ndestinations, sizeof *st);

	if (!st)
		return;
	for (size_t i = 0; i < cfg->ndestinations; i++)
		mllp_out_stats(out, i, &st[i]);
	put_out_gauges(o, cfg, st);
	put_global(o, "mllp_out_body_bytes", "gauge",
		   "Bytes of queued outbound bodies held in memory, all destinations.",
		   mllp_out_mem_bodies(out));
	for (size_t c = 0; c < sizeof out_counters / sizeof *out_counters; c++) {
		put_help(o, out_counters[c].name, "counter", out_counters[c].help);
		for (size_t i = 0; i < cfg->ndestinations; i++) {
			uint64_t v;

			memcpy(&v, (const char *)&st[i] + out_counters[c].off, sizeof v);
			evbuffer_add_printf(o, "%s{destination=\"%s\"} %llu\n",
					    out_counters[c].name, cfg->destinations[i].name,
					    (unsigned long long)v);
		}
	}
	free(st);
}

/* ---- SFTP file channels, one line per channel and outcome ---- */

#define FST(f) offsetof(struct files_stats, f)

static const struct {
	const char *name, *label, *help;
	size_t off;
} file_counters[] = {
    {"mllp_sftp_sessions_total", "outcome=\"ok\"", "SFTP sessions by outcome.", FST(sessions)},
    {"mllp_sftp_sessions_total", "outcome=\"error\"", NULL, FST(session_errors)},
    {"mllp_sftp_sessions_total", "outcome=\"hostkey_mismatch\"", NULL, FST(hostkey_mismatches)},
    {"mllp_sftp_files_total", "outcome=\"stored\"",
     "Files by outcome: pulled into the spool (stored), moved to done/ or deleted (done), moved "
     "to error/ after a dead letter (error), refused before the spool (refused), left because "
     "they changed while read (unstable); pushed and renamed in place (written).",
     FST(files)},
    {"mllp_sftp_files_total", "outcome=\"done\"", NULL, FST(done)},
    {"mllp_sftp_files_total", "outcome=\"error\"", NULL, FST(errors)},
    {"mllp_sftp_files_total", "outcome=\"refused\"", NULL, FST(refused)},
    {"mllp_sftp_files_total", "outcome=\"unstable\"", NULL, FST(unstable)},
    {"mllp_sftp_messages_total", "",
     "Spool rows made from pulled files (one per HL7 message "
     "of a split batch, else one per file).",
     FST(rows)},
    {"mllp_sftp_bytes_total", "", "Bytes of files pulled into the spool or pushed.", FST(bytes)},
    {"mllp_sftp_push_retries_total", "", "Pushed files whose write failed and will be retried.",
     FST(push_retries)},
    {"mllp_sftp_push_dead_total", "", "Pushed files that reached max_attempts (dead letters).",
     FST(push_dead)},
};

static void put_file_counters(struct evbuffer *o, const struct files_stats *st, size_t n)
{
	for (size_t c = 0; c < sizeof file_counters / sizeof *file_counters; c++) {
		const char *l = file_counters[c].label;

		if (file_counters[c].help)
			put_help(o, file_counters[c].name, "counter", file_counters[c].help);
		for (size_t i = 0; i < n; i++) {
			uint64_t v;

			memcpy(&v, (const char *)&st[i] + file_counters[c].off, sizeof v);
			/* the three session outcomes do not overlap */
			if (file_counters[c].off == FST(sessions))
				v -= st[i].session_errors;
			else if (file_counters[c].off == FST(session_errors))
				v -= st[i].hostkey_mismatches;
			evbuffer_add_printf(o, "%s{channel=\"%s\",direction=\"%s\"%s%s} %llu\n",
					    file_counters[c].name, st[i].name,
					    st[i].push ? "push" : "pull", *l ? "," : "", l,
					    (unsigned long long)v);
		}
	}
}

static void put_file_gauges(struct evbuffer *o, const struct files_stats *st, size_t n)
{
	static const char *const names[] = {"mllp_sftp_up",
					    "mllp_sftp_waiting_gate",
					    "mllp_sftp_next_key_in_use",
					    "mllp_sftp_next_key_present",
					    "mllp_sftp_open_files",
					    "mllp_sftp_queued",
					    "mllp_sftp_last_success_timestamp_seconds"};
	static const char *const helps[] = {
	    "1 when the channel's last SFTP session worked.",
	    "1 while the server is outside every installed CHILD_SA (nothing is tried).",
	    "1 when the last session authenticated with <key>.next: the server has the new key "
	    "and the old one can be retired.",
	    "1 while <key>.next exists (a key rotation is under way).",
	    "Pull: files in the spool whose remote copy waits to be moved.",
	    "Push: files waiting to be written.",
	    "When the channel's last session worked (Unix time); 0 if never."};

	for (size_t g = 0; g < sizeof names / sizeof *names; g++) {
		put_help(o, names[g], "gauge", helps[g]);
		for (size_t i = 0; i < n; i++) {
			const struct files_stats *s = &st[i];
			double v = g == 0   ? s->up
				   : g == 1 ? s->waiting_gate
				   : g == 2 ? s->last_ok_ms && s->key_index == 0
				   : g == 3 ? s->next_key
				   : g == 4 ? (double)s->open_files
				   : g == 5 ? (double)s->queued
					    : (double)s->last_ok_ms / 1000.0;

			evbuffer_add_printf(o, "%s{channel=\"%s\",direction=\"%s\"} %.15g\n",
					    names[g], s->name, s->push ? "push" : "pull", v);
		}
	}
}

static void put_files(struct evbuffer *o, const struct files *f)
{
	size_t n = files_count(f);
	struct files_stats *st = calloc(n, sizeof *st);

	if (!st)
		return;
	for (size_t i = 0; i < n; i++)
		files_stats(f, i, &st[i]);
	put_file_gauges(o, st, n);
	put_file_counters(o, st, n);
	free(st);
}

/* The outbound API's requests by outcome. */
static void put_https(struct evbuffer *o, const struct https_in *h)
{
	struct https_in_stats st;

	https_in_stats(h, &st);
	put_help(o, "mllp_https_requests_total", "counter",
		 "Outbound API requests answered, by outcome.");
	evbuffer_add_printf(o,
			    "mllp_https_requests_total{outcome=\"accepted\"} %llu\n"
			    "mllp_https_requests_total{outcome=\"repeated\"} %llu\n"
			    "mllp_https_requests_total{outcome=\"sync_ack\"} %llu\n"
			    "mllp_https_requests_total{outcome=\"sync_timeout\"} %llu\n"
			    "mllp_https_requests_total{outcome=\"unauthenticated\"} %llu\n"
			    "mllp_https_requests_total{outcome=\"forbidden\"} %llu\n"
			    "mllp_https_requests_total{outcome=\"refused\"} %llu\n"
			    "mllp_https_requests_total{outcome=\"failed\"} %llu\n",
			    (unsigned long long)st.accepted, (unsigned long long)st.repeated,
			    (unsigned long long)st.sync_acks, (unsigned long long)st.sync_timeouts,
			    (unsigned long long)st.unauthenticated,
			    (unsigned long long)st.forbidden, (unsigned long long)st.refused,
			    (unsigned long long)st.failed);
	put_help(o, "mllp_https_translations_total", "counter",
		 "JSON bodies translated into HL7 v2, or refused by the translator.");
	evbuffer_add_printf(o,
			    "mllp_https_translations_total{outcome=\"translated\"} %llu\n"
			    "mllp_https_translations_total{outcome=\"refused\"} %llu\n",
			    (unsigned long long)st.translated, (unsigned long long)st.untranslated);
}

static void on_metrics(struct evhttp_request *req, void *arg)
{
	struct metrics *m = arg;
	size_t n = m->cfg->nintegrations;
	struct evbuffer *o = evbuffer_new();
	struct snap *s = calloc(n ? n : 1, sizeof(*s));

	if (!o || !s) {
		evhttp_send_error(req, 500, "out of memory");
	} else {
		for (size_t i = 0; i < n; i++) {
			s[i].name = m->cfg->integrations[i].name;
			mllp_in_integ_stats(m->src.in, i, &s[i].in);
			forward_stats(m->src.fwd, i, &s[i].fwd);
		}
		put_integrations(o, s, n);
		put_listeners(o, m->src.in);
		put_bridge(o, &m->src);
		put_gate(o, m->src.gate);
		if (m->src.tun)
			put_appliance(o, m->src.tun);
		if (m->src.out)
			put_outbound(o, m->cfg, m->src.out);
		if (m->src.files)
			put_files(o, m->src.files);
		if (m->src.https)
			put_https(o, m->src.https);
		evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
				  "text/plain; version=0.0.4; charset=utf-8");
		evhttp_send_reply(req, 200, "OK", o);
	}
	free(s);
	if (o)
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
	struct metrics *m = arg;

	if (m->src.ready(m->src.arg))
		send_text(req, 200, "OK", "ready");
	else
		send_text(req, 503, "Service Unavailable", "not ready");
}

static void on_other(struct evhttp_request *req, void *arg)
{
	(void)arg;
	send_text(req, 404, "Not Found", "not found: try /metrics, /healthz or /readyz");
}

static void on_resume(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	evconnlistener_enable(arg);
}

/* Out of descriptors: a listening socket stays readable, and accepting
 * again at once would spin; it rests for METRICS_ACCEPT_PAUSE_MS. (The
 * callback's argument is evhttp's, not ours: the listener is all it has.) */
static void on_accept_error(struct evconnlistener *lev, void *arg)
{
	static const struct timeval pause = {0, METRICS_ACCEPT_PAUSE_MS * 1000};

	(void)arg;
	evconnlistener_disable(lev);
	if (event_base_once(evconnlistener_get_base(lev), -1, EV_TIMEOUT, on_resume, lev, &pause) <
	    0)
		evconnlistener_enable(lev); /* better to spin than to go deaf */
}

static int bind_http(struct metrics *m)
{
	struct evhttp_bound_socket *bound;
	const struct cfg *cfg = m->cfg;
	const struct sockaddr *sa = (const struct sockaddr *)&cfg->observability_addr;
	evutil_socket_t fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0 || evutil_make_listen_socket_reuseable(fd) < 0 ||
	    bind(fd, sa, cfg->observability_len) < 0 || listen(fd, METRICS_BACKLOG) < 0 ||
	    !(bound = evhttp_accept_socket_with_handle(m->http, fd))) {
		int err = errno;

		if (fd >= 0)
			close(fd);
		log_event(LOG_ERR, "observability_listen_failed", " listen=%s error=\"%s\"",
			  cfg->observability_listen, strerror(err));
		return -(err ? err : EADDRNOTAVAIL);
	}
	evconnlistener_set_error_cb(evhttp_bound_socket_get_listener(bound), on_accept_error);
	log_event(LOG_INFO, "observability", " listen=%s", cfg->observability_listen);
	return 0;
}

int metrics_new(struct event_base *base, const struct cfg *cfg, const struct metrics_sources *src,
		struct metrics **out)
{
	struct metrics *m;
	int err;

	*out = NULL;
	if (!cfg->observability_listen)
		return 0;
	if (!(m = calloc(1, sizeof(*m))) || !(m->http = evhttp_new(base))) {
		free(m);
		return -ENOMEM;
	}
	m->cfg = cfg;
	m->src = *src;
	evhttp_set_allowed_methods(m->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
	evhttp_set_cb(m->http, "/metrics", on_metrics, m);
	evhttp_set_cb(m->http, "/healthz", on_healthz, m);
	evhttp_set_cb(m->http, "/readyz", on_readyz, m);
	evhttp_set_gencb(m->http, on_other, m);
	if ((err = bind_http(m)) < 0) {
		metrics_free(m);
		return err;
	}
	*out = m;
	return 0;
}

void metrics_free(struct metrics *m)
{
	if (!m)
		return;
	if (m->http)
		evhttp_free(m->http);
	free(m);
}
