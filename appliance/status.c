#include "appliance/status.h"

#include <string.h>
#include <time.h>
#include <unistd.h>

/* Names come from the validated file, algorithms and selectors from
 * charon: escaping '"' and '\\' and dropping control bytes keeps it JSON. */
static void json_str(FILE *out, const char *s)
{
	fputc('"', out);
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			fputc('\\', out);
		if ((unsigned char)*s >= 0x20)
			fputc(*s, out);
	}
	fputc('"', out);
}

/* ,"key":"value" */
static void json_kv(FILE *out, const char *key, const char *value)
{
	fprintf(out, ",\"%s\":", key);
	json_str(out, value);
}

static void json_list(FILE *out, const char (*items)[SAS_TS_TEXT_MAX], size_t n)
{
	fputc('[', out);
	for (size_t i = 0; i < n; i++) {
		if (i)
			fputc(',', out);
		json_str(out, items[i]);
	}
	fputc(']', out);
}

static void json_child(FILE *out, const struct sas_child *c)
{
	fputs("{\"name\":", out);
	json_str(out, c->name);
	json_kv(out, "state", c->state);
	json_kv(out, "esp", c->esp);
	json_kv(out, "dh", c->dh);
	fprintf(out, ",\"dh_group\":%u,\"local_ts\":", c->dh_group);
	json_list(out, (const char(*)[SAS_TS_TEXT_MAX])c->local_ts, c->nlocal_ts);
	fputs(",\"remote_ts\":", out);
	json_list(out, (const char(*)[SAS_TS_TEXT_MAX])c->remote_ts, c->nremote_ts);
	fputc('}', out);
}

static void json_ike(FILE *out, const struct sas_ike *k)
{
	if (!k) {
		fputs("null", out);
		return;
	}
	fputs("{\"state\":", out);
	json_str(out, k->state);
	json_kv(out, "encr", k->encr);
	json_kv(out, "integ", k->integ);
	json_kv(out, "prf", k->prf);
	json_kv(out, "dh", k->dh);
	fprintf(out, ",\"dh_group\":%u}", k->dh_group);
}

static const char *hb_state_name(enum hb_state st)
{
	static const char *const names[] = {"unknown", "ok", "failed", "skipped"};

	return names[st];
}

/* A destination belongs to the tunnel whose remote_ts holds it. */
static int dest_in_tunnel(const struct cfg_destination *d, const struct cfg_tunnel *t)
{
	for (size_t i = 0; i < t->nchildren; i++)
		for (size_t j = 0; j < t->children[i].nremote_ts; j++)
			if (cfg_cidr_contains(&t->children[i].remote_ts[j],
					      (const struct sockaddr *)&d->addr))
				return 1;
	return 0;
}

static void json_heartbeats(const struct status_src *s, const struct cfg_tunnel *t, FILE *out)
{
	int first = 1;

	fputc('[', out);
	for (size_t i = 0; i < s->cfg->ndestinations; i++) {
		const struct cfg_destination *d = &s->cfg->destinations[i];
		const struct hb_result *r = s->hb ? heartbeat_result(s->hb, i) : NULL;

		if (d->sftp || !dest_in_tunnel(d, t)) /* sftp: no address, no heartbeat */
			continue;
		fputs(first ? "{\"destination\":" : ",{\"destination\":", out);
		json_str(out, d->name);
		json_kv(out, "address", d->address_text);
		json_kv(out, "state", hb_state_name(r ? r->state : HB_UNKNOWN));
		fprintf(out, ",\"rtt_ms\":%.3f", r ? (double)r->rtt_us / 1000.0 : 0.0);
		json_kv(out, "error", r && r->err ? strerror(r->err) : "");
		fprintf(out, ",\"at_unix\":%lld}", r ? (long long)r->at_unix : 0LL);
		first = 0;
	}
	fputc(']', out);
}

static void json_tunnel(const struct status_src *s, const struct tunnel_view *v, FILE *out)
{
	fputs("{\"name\":", out);
	json_str(out, v->cfg->name);
	json_kv(out, "source", v->cfg->source == CFG_SOURCE_SWANCTL ? "swanctl" : "appliance");
	fprintf(out, ",\"up\":%s,\"since_unix\":%lld,\"ike\":", v->up ? "true" : "false",
		(long long)v->since_unix);
	json_ike(out, v->ike);
	fputs(",\"children\":[", out);
	for (size_t i = 0; v->ike && i < v->ike->nchildren; i++) {
		if (i)
			fputc(',', out);
		json_child(out, &v->ike->child[i]);
	}
	fputc(']', out);
	json_kv(out, "last_error", v->last_error);
	fprintf(out, ",\"last_error_unix\":%lld,\"pfs_check\":{\"result\":",
		(long long)v->last_error_unix);
	json_str(out, v->pfs_result);
	fprintf(out, ",\"dh_group\":%u", v->pfs_group);
	json_kv(out, "reason", v->pfs_reason);
	fputs("},\"heartbeats\":", out);
	json_heartbeats(s, v->cfg, out);
	fputc('}', out);
}

static void json_integrations(const struct status_src *s, FILE *out)
{
	const struct ipc_status *st = child_status(s->bridge);

	fputc('[', out);
	for (size_t i = 0; st && i < st->n; i++) {
		fputs(i ? ",{\"name\":" : "{\"name\":", out);
		json_str(out, st->in[i].name);
		fprintf(out, ",\"depth\":%llu,\"oldest_age_ms\":%llu,\"dead\":%llu}",
			(unsigned long long)st->in[i].depth,
			(unsigned long long)st->in[i].oldest_age_ms,
			(unsigned long long)st->in[i].dead);
	}
	fputc(']', out);
}

static void json_destinations(const struct status_src *s, FILE *out)
{
	const struct ipc_outbox *ob = child_outbox(s->bridge);

	fputc('[', out);
	for (size_t i = 0; ob && i < ob->n; i++) {
		const struct ipc_destination *d = &ob->d[i];

		fputs(i ? ",{\"name\":" : "{\"name\":", out);
		json_str(out, d->name);
		fprintf(out,
			",\"queued\":%llu,\"oldest_age_ms\":%llu,\"waiting_gate\":%s,"
			"\"connected\":%s,\"failed\":%llu}",
			(unsigned long long)d->queued, (unsigned long long)d->oldest_age_ms,
			d->waiting_gate ? "true" : "false", d->connected ? "true" : "false",
			(unsigned long long)d->failed);
	}
	fputc(']', out);
}

void status_json(const struct status_src *s, FILE *out)
{
	pid_t bp = child_pid(s->bridge);
	struct tunnel_view v;

	fprintf(out, "{\"supervisor\":{\"pid\":%d", (int)getpid());
	json_kv(out, "config", s->config_path);
	fputs("},\"charon\":{\"vici\":", out);
	json_str(out, s->cfg->charon.vici);
	fprintf(out, ",\"connected\":%s,\"started\":%s,\"pid\":%d}",
		tunnels_connected(s->tun) ? "true" : "false", s->charon_pid ? "true" : "false",
		(int)s->charon_pid);
	fprintf(out, ",\"bridge\":{\"pid\":%d,\"running\":%s,\"restarts\":%u}", (int)bp,
		bp ? "true" : "false", child_restarts(s->bridge));
	fputs(",\"tunnels\":[", out);
	for (size_t i = 0; i < tunnels_count(s->tun); i++) {
		if (i)
			fputc(',', out);
		tunnels_view(s->tun, i, &v);
		json_tunnel(s, &v, out);
	}
	fputs("],\"integrations\":", out);
	json_integrations(s, out);
	fputs(",\"destinations\":", out);
	json_destinations(s, out);
	fputs("}\n", out);
}

static void text_time(FILE *out, int64_t when)
{
	struct tm tm;
	time_t t = (time_t)when;
	char buf[32];

	gmtime_r(&t, &tm);
	strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
	fputs(buf, out);
}

static void text_tunnel(const struct tunnel_view *v, FILE *out)
{
	fprintf(out, "tunnel %s (%s): %s since ", v->cfg->name,
		v->cfg->source == CFG_SOURCE_SWANCTL ? "swanctl" : "appliance",
		v->up ? "UP" : "DOWN");
	text_time(out, v->since_unix);
	fputc('\n', out);
	if (v->ike)
		fprintf(out, "  IKE_SA #%u %s %s/%s/%s (DH %u)\n", v->ike->uniqueid, v->ike->state,
			v->ike->encr, v->ike->prf, v->ike->dh, v->ike->dh_group);
	for (size_t j = 0; v->ike && j < v->ike->nchildren; j++) {
		const struct sas_child *c = &v->ike->child[j];

		fprintf(out, "  CHILD_SA %s #%u %s %s%s%s remote %s\n", c->name, c->uniqueid,
			c->state, c->esp, c->dh[0] ? "/" : "", c->dh,
			c->nremote_ts ? c->remote_ts[0] : "-");
	}
	if (v->last_error[0]) {
		/* History, not state: it stays after the tunnel came up. */
		fputs("  last error at ", out);
		text_time(out, v->last_error_unix);
		fprintf(out, ": %s\n", v->last_error);
	}
	fprintf(out, "  pfs check: %s%s%s\n", v->pfs_result, v->pfs_reason[0] ? ": " : "",
		v->pfs_reason);
}

static void text_destinations(const struct status_src *s, FILE *out)
{
	const struct ipc_outbox *ob = child_outbox(s->bridge);

	for (size_t i = 0; ob && i < ob->n; i++) {
		const struct ipc_destination *d = &ob->d[i];

		fprintf(out, "destination %s: %llu queued, oldest %.1f s, %s%s, %llu failed\n",
			d->name, (unsigned long long)d->queued, (double)d->oldest_age_ms / 1000.0,
			d->connected ? "connected" : "not connected",
			d->waiting_gate ? ", WAITING FOR ITS TUNNEL" : "",
			(unsigned long long)d->failed);
	}
}

void status_text(const struct status_src *s, FILE *out)
{
	const struct ipc_status *st = child_status(s->bridge);
	pid_t bp = child_pid(s->bridge);
	struct tunnel_view v;

	fprintf(out, "charon: %s (%s)\n", tunnels_connected(s->tun) ? "connected" : "NOT CONNECTED",
		s->cfg->charon.vici);
	fprintf(out, "bridge: %s pid %d, %u restarts\n", bp ? "running" : "NOT RUNNING", (int)bp,
		child_restarts(s->bridge));
	for (size_t i = 0; i < tunnels_count(s->tun); i++) {
		tunnels_view(s->tun, i, &v);
		text_tunnel(&v, out);
	}
	for (size_t i = 0; st && i < st->n; i++)
		fprintf(out, "integration %s: %llu queued, oldest %.1f s, %llu dead\n",
			st->in[i].name, (unsigned long long)st->in[i].depth,
			(double)st->in[i].oldest_age_ms / 1000.0,
			(unsigned long long)st->in[i].dead);
	text_destinations(s, out);
}
