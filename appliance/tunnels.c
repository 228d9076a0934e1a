#include "appliance/tunnels.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "appliance/reconcile.h"
#include "appliance/sas.h"
#include "mllp-bridge/log.h"

#define LIST_TIMEOUT_MS	     10000
#define INITIATE_TIMEOUT_MS  10000 /* charon's own; the request waits a bit longer */
#define REQUEST_MARGIN_MS    5000
#define TERMINATE_TIMEOUT_MS 5000
#define REFRESH_DELAY_MS     20 /* coalesces a burst of events into one list-sas */
#define CHECK_POLL_MS	     250
#define CHECK_TIMEOUT_MS     10000 /* a CREATE_CHILD_SA that takes longer has failed */
#define SNAP_MAX	     256   /* IKE_SAs read from one list-sas */

struct check;

/* One configured tunnel. */
struct tstate {
	struct tunnels *owner;
	const struct cfg_tunnel *cfg;
	int up;
	int64_t since_unix; /* when up last changed; start-up counts as a change */
	int have_ike;	    /* ike holds the tunnel's newest IKE_SA */
	struct sas_ike ike;
	char last_error[TUNNELS_REASON_MAX];
	int64_t last_error_unix;
	int initiating;
	int load_failed; /* charon refused the connection: shown until the next load */
	unsigned backoff_ms;
	struct event *retry;
	/* rekey-check */
	char pfs_result[8]; /* never, ok, failed */
	unsigned pfs_group;
	char pfs_reason[TUNNELS_REASON_MAX];
	struct check *check;
};

struct tunnels {
	struct event_base *base;
	struct vloop *v;
	const struct cfg *cfg;
	int own_charon;
	int connected;
	int reconciled; /* charon holds the file's connections */
	int stopping;
	struct tstate *t;
	size_t n;
	struct event *refresh_ev;
	int listing, list_again;
	struct sas_ike *snap; /* filled by list-sa events */
	size_t nsnap;
	tunnels_changed_cb changed;
	void *arg;
};

/* A rekey-check in progress: charon's log on a second connection, polled
 * list-sas on the main one until a new CHILD_SA shows up. */
struct check {
	struct tunnels *tun;
	struct tstate *ts;
	struct vloop *logv;
	uint32_t old_child;
	char child[CFG_NAME_MAX + 1];
	char log[4096];
	struct event *poll;
	int64_t deadline_ms;
	tunnels_check_cb cb;
	void *arg;
};

static void schedule_refresh(struct tunnels *t);
static void schedule_initiate(struct tunnels *t, struct tstate *ts);
static void check_finish(struct check *c, int ok, const char *text);

static int64_t now_unix(void)
{
	return (int64_t)time(NULL);
}

static struct tstate *find(struct tunnels *t, const char *name)
{
	for (size_t i = 0; i < t->n; i++)
		if (strcmp(t->t[i].cfg->name, name) == 0)
			return &t->t[i];
	return NULL;
}

static void set_error(struct tstate *ts, const char *why)
{
	snprintf(ts->last_error, sizeof ts->last_error, "%s", why);
	ts->last_error_unix = now_unix();
}

/* After a failed attempt, or an SA the audit had to terminate, the next
 * initiate waits, doubling: a peer that insists on a weak group would
 * otherwise be re-initiated (and terminated) many times a second. */
static void back_off(struct tstate *ts)
{
	ts->backoff_ms = ts->backoff_ms ? ts->backoff_ms * 2 : TUNNELS_BACKOFF_MIN_MS;
	if (ts->backoff_ms > TUNNELS_BACKOFF_MAX_MS)
		ts->backoff_ms = TUNNELS_BACKOFF_MAX_MS;
}

static void kick(struct tunnels *t)
{
	vloop_kick(t->v);
}

/* ---------- terminate ---------- */

static void on_terminated(void *arg, int err, const struct vici_tree *reply)
{
	(void)arg;
	(void)err;
	(void)reply;
	/* The down events that follow re-read the state. */
}

/* Terminates one IKE_SA (child 0) or CHILD_SA by its unique id. */
static void terminate_sa(struct tunnels *t, const char *kind, uint32_t id)
{
	struct vici_builder *b = vici_builder_new();
	char num[16];
	uint8_t *msg = NULL;
	size_t len = 0;

	snprintf(num, sizeof num, "%u", id);
	vici_builder_key_str(b, kind, num);
	vici_builder_key_str(b, "force", "yes");
	vici_builder_key_str(b, "timeout", "-1");
	if (vici_builder_finish(b, &msg, &len) == 0 &&
	    vici_conn_command(vloop_conn(t->v), "terminate", msg, len,
			      TERMINATE_TIMEOUT_MS + REQUEST_MARGIN_MS, on_terminated, t) == 0)
		kick(t);
	vici_builder_free(b);
	free(msg);
}

/* ---------- the audit: DH 14 and 21 only ---------- */

static int allowed_group(unsigned g)
{
	return g == 14 || g == 21;
}

/* A CHILD_SA created with IKE_AUTH did no DH: its group is empty, not wrong. */
static int child_ok(const struct sas_child *c)
{
	return !c->dh[0] || allowed_group(c->dh_group);
}

static int ike_ok(const struct sas_ike *ike)
{
	/* Only a swanctl.conf tunnel can be IKEv1: ours say version 2. */
	return (!ike->version || ike->version == 2) &&
	       (!ike->dh[0] || allowed_group(ike->dh_group));
}

static void report(struct tunnels *t, struct tstate *ts, const char *kind, uint32_t id,
		   const char *why, const char *fields)
{
	set_error(ts, why);
	log_event(LOG_ERR, "sa_audit_terminated", " tunnel=%s %s", ts->cfg->name, fields);
	terminate_sa(t, kind, id);
}

/*
 * Invariant 5: an SA with another group (or IKEv1) is terminated and
 * reported. Returns how many SAs of ike were. Whatever is terminated here
 * is never counted as installed (child_ok, pick_ike): the gate must not
 * open for it even during the moment charon takes to delete it.
 */
static int audit(struct tunnels *t, struct tstate *ts, const struct sas_ike *ike)
{
	char why[TUNNELS_REASON_MAX], fields[96];
	int n = 0;

	if (!ike_ok(ike)) {
		if (ike->version && ike->version != 2)
			snprintf(why, sizeof why, "IKE_SA is IKEv%u: only IKEv2 is allowed",
				 ike->version);
		else
			snprintf(why, sizeof why,
				 "IKE_SA negotiated %s (DH %u): only 14 and 21 are allowed",
				 ike->dh, ike->dh_group);
		snprintf(fields, sizeof fields, "sa=ike dh=%s version=%u", ike->dh, ike->version);
		report(t, ts, "ike-id", ike->uniqueid, why, fields);
		return 1;
	}
	for (size_t i = 0; i < ike->nchildren; i++) {
		const struct sas_child *c = &ike->child[i];

		if (child_ok(c) || strcmp(c->state, "INSTALLED"))
			continue;
		snprintf(why, sizeof why,
			 "CHILD_SA %s negotiated PFS %s (DH %u): only 14 and 21 are allowed",
			 c->name, c->dh, c->dh_group);
		snprintf(fields, sizeof fields, "sa=child child=%s dh=%s", c->name, c->dh);
		report(t, ts, "child-id", c->uniqueid, why, fields);
		n++;
	}
	return n;
}

/* ---------- initiate ---------- */

static int child_installed(const struct sas_child *c)
{
	return !strcmp(c->state, "INSTALLED") && child_ok(c);
}

static const struct sas_child *installed(const struct sas_ike *ike, const char *child)
{
	const struct sas_child *best = NULL;

	/* While a rekey overlaps, the newest INSTALLED one counts; one the
	 * audit terminates never does. */
	for (size_t i = 0; i < ike->nchildren; i++)
		if (!strcmp(ike->child[i].name, child) && child_installed(&ike->child[i]) &&
		    (!best || ike->child[i].uniqueid > best->uniqueid))
			best = &ike->child[i];
	return best;
}

/* The first configured child without an installed CHILD_SA, or NULL. */
static const struct cfg_child *missing_child(const struct tstate *ts)
{
	for (size_t i = 0; i < ts->cfg->nchildren; i++)
		if (!ts->have_ike || strcmp(ts->ike.state, "ESTABLISHED") ||
		    !installed(&ts->ike, ts->cfg->children[i].name))
			return &ts->cfg->children[i];
	return NULL;
}

/* The reason when the control log names none: charon's own words, or what
 * they mean for a tunnel the operator loads (ours are loaded before any
 * initiate; the operator's may not be). */
static void reply_reason(const struct tstate *ts, const char *fail, char *buf, size_t cap)
{
	if (ts->cfg->source == CFG_SOURCE_SWANCTL && strstr(fail, "not found"))
		snprintf(buf, cap, "charon has no connection %s: load it with swanctl --load-all",
			 ts->cfg->name);
	else
		snprintf(buf, cap, "%s", *fail ? fail : "initiate failed");
}

static void reconcile(struct tunnels *t, const struct cfg *old);

/* Charon no longer knows one of our connections, though it was loaded: an
 * operator's `swanctl --load-all` (which unloads what swanctl.conf does
 * not hold) or `unload-conn` took it. Initiating again would fail forever:
 * load ours again first. Once per failed attempt, after the backoff, and
 * never while a load is under way. */
static void reload_if_lost(struct tunnels *t, struct tstate *ts, const char *fail)
{
	if (ts->cfg->source != CFG_SOURCE_APPLIANCE || ts->load_failed || !t->reconciled ||
	    !strstr(fail, "not found"))
		return;
	log_event(LOG_WARN, "tunnel_reload", " tunnel=%s reason=\"charon no longer has it\"",
		  ts->cfg->name);
	reconcile(t, NULL);
}

struct initiate_req {
	struct tunnels *t;
	char name[CFG_NAME_MAX + 1];
};

static void on_initiated(void *arg, int err, const struct vici_tree *reply, const char *log)
{
	struct initiate_req *r = arg;
	struct tunnels *t = r->t;
	struct tstate *ts = err == -ECANCELED ? NULL : find(t, r->name);
	const char *fail = err < 0 ? strerror(-err) : vici_reply_error(reply);
	char reason[TUNNELS_REASON_MAX];

	free(r);
	if (!ts)
		return;
	ts->initiating = 0;
	if (!fail) {
		/* The backoff is reset once list-sas shows the tunnel up and
		 * the audit let it live (apply_one). */
		schedule_refresh(t);
		return;
	}
	/* The reply only says "establishing CHILD_SA failed": the peer's
	 * reason is in charon's control log. */
	if (!vici_control_reason(log ? log : "", reason, sizeof reason))
		reply_reason(ts, fail, reason, sizeof reason);
	back_off(ts);
	/* A load failure said more than charon's "config not found" would. */
	if (!ts->load_failed)
		set_error(ts, reason);
	log_event(LOG_WARN, "tunnel_initiate_failed", " tunnel=%s reason=\"%s\" retry_ms=%u",
		  ts->cfg->name, reason, ts->backoff_ms);
	reload_if_lost(t, ts, fail);
	/* A failed initiate can leave a half-open IKE_SA: the refresh finds
	 * and terminates it, and schedules the next attempt. */
	schedule_refresh(t);
}

static void initiate(struct tunnels *t, struct tstate *ts)
{
	const struct cfg_child *ch = missing_child(ts);
	struct initiate_req *r;
	struct vici_builder *b;
	uint8_t *msg = NULL;
	size_t len = 0;
	char tmo[16];

	if (!ch || ts->initiating || !t->connected || !t->reconciled || t->stopping)
		return;
	if (!(r = calloc(1, sizeof *r)))
		return;
	r->t = t;
	snprintf(r->name, sizeof r->name, "%s", ts->cfg->name);
	snprintf(tmo, sizeof tmo, "%d", INITIATE_TIMEOUT_MS);
	b = vici_builder_new();
	vici_builder_key_str(b, "child", ch->name);
	vici_builder_key_str(b, "ike", ts->cfg->name);
	vici_builder_key_str(b, "timeout", tmo);
	vici_builder_key_str(b, "init-limits", "no");
	if (vici_builder_finish(b, &msg, &len) == 0 &&
	    vici_conn_control(vloop_conn(t->v), "initiate", msg, len,
			      INITIATE_TIMEOUT_MS + REQUEST_MARGIN_MS, on_initiated, r) == 0) {
		ts->initiating = 1;
		log_event(LOG_INFO, "tunnel_initiate", " tunnel=%s child=%s", ts->cfg->name,
			  ch->name);
		kick(t);
	} else {
		free(r);
	}
	vici_builder_free(b);
	free(msg);
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
	struct tstate *ts = arg;

	(void)fd;
	(void)what;
	initiate(ts->owner, ts);
}

/* ---------- list-sas ---------- */

static void on_list_sa(void *arg, const char *event, const struct vici_tree *msg)
{
	struct tunnels *t = arg;
	const struct vici_node *n;

	(void)event;
	for (n = vici_node_first(vici_tree_root(msg)); n; n = vici_node_next(n)) {
		if (vici_node_kind(n) != VICI_NODE_SECTION || t->nsnap >= SNAP_MAX)
			continue;
		sas_read_ike(n, &t->snap[t->nsnap++]);
	}
}

/* The tunnel's newest IKE_SA, ESTABLISHED preferred, among those the audit
 * lets live; half-open ones the supervisor is not waiting for are
 * terminated. Returns how many SAs the audit terminated. */
static int pick_ike(struct tunnels *t, struct tstate *ts)
{
	const struct sas_ike *best = NULL;
	int audited = 0;

	for (size_t i = 0; i < t->nsnap; i++) {
		const struct sas_ike *s = &t->snap[i];
		int est = !strcmp(s->state, "ESTABLISHED");

		if (strcmp(s->name, ts->cfg->name))
			continue;
		/* Ours, and no initiate waits for it: a failed attempt's
		 * leftover. A peer's handshake in progress is left alone. */
		if (!est && s->initiator && !ts->initiating && !strcmp(s->state, "CONNECTING")) {
			log_event(LOG_INFO, "tunnel_half_open_terminated", " tunnel=%s ike_id=%u",
				  s->name, s->uniqueid);
			terminate_sa(t, "ike-id", s->uniqueid);
			continue;
		}
		if (est) {
			audited += audit(t, ts, s);
			if (!ike_ok(s))
				continue; /* terminated: never the tunnel's SA */
		}
		if (!best || (est && strcmp(best->state, "ESTABLISHED")) ||
		    (est == !strcmp(best->state, "ESTABLISHED") && s->uniqueid > best->uniqueid))
			best = s;
	}
	ts->have_ike = best != NULL;
	if (best)
		ts->ike = *best;
	return audited;
}

static void log_change(const struct tstate *ts)
{
	if (ts->up)
		log_event(LOG_INFO, "tunnel_up", " tunnel=%s ike=%s/%s/%s", ts->cfg->name,
			  ts->ike.encr, ts->ike.prf, ts->ike.dh);
	else
		log_event(LOG_WARN, "tunnel_down", " tunnel=%s", ts->cfg->name);
}

/* Applies one list-sas snapshot; returns whether anything the bridge sees changed. */
static int apply_one(struct tunnels *t, struct tstate *ts)
{
	int was_up = ts->up;

	if (pick_ike(t, ts))
		back_off(ts);
	ts->up = ts->have_ike && !strcmp(ts->ike.state, "ESTABLISHED") && !missing_child(ts);
	if (ts->up && !was_up)
		ts->backoff_ms = 0; /* only a tunnel that is up resets it */
	if (ts->up != was_up) {
		/* charon knows since when: a restarted supervisor reports that. */
		ts->since_unix =
		    now_unix() - (ts->up && ts->ike.established_s > 0 ? ts->ike.established_s : 0);
		log_change(ts);
	}
	if (!ts->up)
		schedule_initiate(t, ts);
	return 1; /* groups and selectors may have changed even when up did not */
}

static void on_listed(void *arg, int err, const struct vici_tree *reply)
{
	struct tunnels *t = arg;
	int changed = 0;

	(void)reply;
	t->listing = 0;
	if (err == 0)
		for (size_t i = 0; i < t->n; i++)
			changed |= apply_one(t, &t->t[i]);
	t->nsnap = 0;
	if (changed && t->changed)
		t->changed(t->arg);
	if (t->list_again) {
		t->list_again = 0;
		schedule_refresh(t);
	}
}

static void refresh(evutil_socket_t fd, short what, void *arg)
{
	struct tunnels *t = arg;

	(void)fd;
	(void)what;
	if (!t->connected)
		return;
	if (t->listing) {
		t->list_again = 1;
		return;
	}
	t->nsnap = 0;
	if (vici_conn_stream(vloop_conn(t->v), "list-sas", "list-sa", NULL, 0, LIST_TIMEOUT_MS,
			     on_list_sa, on_listed, t) == 0) {
		t->listing = 1;
		kick(t);
	}
}

static void schedule_refresh(struct tunnels *t)
{
	struct timeval tv = {0, REFRESH_DELAY_MS * 1000};

	if (!evtimer_pending(t->refresh_ev, NULL))
		evtimer_add(t->refresh_ev, &tv);
}

/* ---------- retry with backoff ---------- */

static void schedule_initiate(struct tunnels *t, struct tstate *ts)
{
	struct timeval tv;

	if (ts->initiating || t->stopping || evtimer_pending(ts->retry, NULL))
		return;
	tv.tv_sec = ts->backoff_ms / 1000;
	tv.tv_usec = (ts->backoff_ms % 1000) * 1000;
	evtimer_add(ts->retry, &tv);
}

/* ---------- charon's connection ---------- */

static void on_reconcile_error(void *arg, const char *tunnel, const char *why)
{
	struct tunnels *t = arg;
	struct tstate *ts = tunnel ? find(t, tunnel) : NULL;

	log_event(LOG_ERR, "tunnel_load_failed", " tunnel=%s reason=\"%s\"", tunnel ? tunnel : "-",
		  why);
	if (ts) {
		set_error(ts, why);
		ts->load_failed = 1;
	}
}

static void on_reconciled(void *arg)
{
	struct tunnels *t = arg;

	t->reconciled = 1;
	schedule_refresh(t);
}

static void reconcile(struct tunnels *t, const struct cfg *old)
{
	t->reconciled = 0;
	for (size_t i = 0; i < t->n; i++)
		t->t[i].load_failed = 0;
	if (!t->connected)
		return;
	if (reconcile_run(vloop_conn(t->v), t->cfg, old, t->own_charon, on_reconcile_error,
			  on_reconciled, t) == 0)
		kick(t);
}

/* Without charon nothing is known to be installed: the gate closes. */
static void all_down(struct tunnels *t)
{
	for (size_t i = 0; i < t->n; i++) {
		struct tstate *ts = &t->t[i];

		ts->have_ike = 0;
		ts->initiating = 0;
		if (ts->up) {
			ts->up = 0;
			ts->since_unix = now_unix();
			log_change(ts);
		}
	}
	if (t->changed)
		t->changed(t->arg);
}

void tunnels_on_vici(struct tunnels *t, enum vici_state state, int err)
{
	if (state == VICI_STATE_UP) {
		log_event(LOG_INFO, "charon_connected", "%s", "");
		t->connected = 1;
		/* A restarted charon has nothing loaded, and SAs may have come
		 * and gone meanwhile: load, then re-read list-sas. */
		reconcile(t, NULL);
		return;
	}
	if (t->connected)
		log_event(LOG_WARN, "charon_disconnected", " error=\"%s\"", strerror(-err));
	t->connected = 0;
	t->reconciled = 0;
	t->listing = 0;
	all_down(t);
}

static void on_sa_event(void *arg, const char *event, const struct vici_tree *msg)
{
	struct tunnels *t = arg;

	(void)msg;
	log_event(LOG_DEBUG, "charon_event", " event=%s", event);
	schedule_refresh(t);
}

/* ---------- configuration ---------- */

static void free_states(struct tunnels *t)
{
	for (size_t i = 0; i < t->n; i++) {
		if (t->t[i].check)
			check_finish(t->t[i].check, 0, "the configuration was reloaded");
		if (t->t[i].retry)
			event_free(t->t[i].retry);
	}
	free(t->t);
	t->t = NULL;
	t->n = 0;
}

/* New states for cfg, carrying over what is known of same-named tunnels. */
static int build_states(struct tunnels *t, const struct cfg *cfg)
{
	struct tstate *ns = calloc(cfg->ntunnels ? cfg->ntunnels : 1, sizeof *ns);

	if (!ns)
		return -ENOMEM;
	for (size_t i = 0; i < cfg->ntunnels; i++) {
		struct tstate *old = find(t, cfg->tunnels[i].name);

		if (old) {
			ns[i] = *old;
			ns[i].check = NULL;
		} else {
			ns[i].since_unix = now_unix();
			snprintf(ns[i].pfs_result, sizeof ns[i].pfs_result, "never");
		}
		ns[i].owner = t;
		ns[i].cfg = &cfg->tunnels[i];
		ns[i].initiating = old ? old->initiating : 0;
		ns[i].retry = evtimer_new(t->base, on_retry, &ns[i]);
	}
	free_states(t);
	t->t = ns;
	t->n = cfg->ntunnels;
	t->cfg = cfg;
	for (size_t i = 0; i < t->n; i++)
		if (!t->t[i].retry)
			return -ENOMEM;
	return 0;
}

void tunnels_set_config(struct tunnels *t, const struct cfg *cfg, const struct cfg *old)
{
	if (build_states(t, cfg) < 0)
		log_event(LOG_ERR, "out_of_memory", " where=tunnels_set_config");
	reconcile(t, old);
	if (t->changed)
		t->changed(t->arg);
}

static const char *const sa_events[] = {"ike-updown", "child-updown", "ike-rekey", "child-rekey"};

int tunnels_new(struct event_base *base, struct vloop *v, const struct cfg *cfg, int own_charon,
		tunnels_changed_cb changed, void *arg, struct tunnels **out)
{
	struct tunnels *t = calloc(1, sizeof *t);
	int err = 0;

	*out = NULL;
	if (!t)
		return -ENOMEM;
	*t = (struct tunnels){
	    .base = base, .v = v, .own_charon = own_charon, .changed = changed, .arg = arg};
	t->snap = calloc(SNAP_MAX, sizeof *t->snap);
	t->refresh_ev = evtimer_new(base, refresh, t);
	if (!t->snap || !t->refresh_ev)
		err = -ENOMEM;
	if (err == 0)
		err = build_states(t, cfg);
	for (size_t i = 0; err == 0 && i < sizeof sa_events / sizeof *sa_events; i++)
		err = vici_conn_subscribe(vloop_conn(v), sa_events[i], on_sa_event, t);
	if (err < 0) {
		tunnels_free(t);
		return err;
	}
	*out = t;
	return 0;
}

void tunnels_stop(struct tunnels *t)
{
	t->stopping = 1;
	for (size_t i = 0; i < t->n; i++)
		evtimer_del(t->t[i].retry);
}

int tunnels_connected(const struct tunnels *t)
{
	return t->connected;
}

void tunnels_free(struct tunnels *t)
{
	if (!t)
		return;
	free_states(t);
	if (t->refresh_ev)
		event_free(t->refresh_ev);
	free(t->snap);
	free(t);
}

/* ---------- what the bridge and the heartbeat see ---------- */

/* Calls fn for every remote traffic selector of every installed CHILD_SA. */
static int each_remote_ts(const struct tunnels *t, int (*fn)(void *arg, const struct cfg_cidr *c),
			  void *arg)
{
	for (size_t i = 0; i < t->n; i++) {
		const struct tstate *ts = &t->t[i];

		if (!ts->have_ike || strcmp(ts->ike.state, "ESTABLISHED"))
			continue;
		for (size_t j = 0; j < ts->ike.nchildren; j++) {
			const struct sas_child *c = &ts->ike.child[j];
			struct cfg_cidr cidr;

			if (!child_installed(c))
				continue;
			for (size_t k = 0; k < c->nremote_ts; k++)
				if (sas_ts_cidr(c->remote_ts[k], &cidr) == 0 && fn(arg, &cidr))
					return 1;
		}
	}
	return 0;
}

static int add_gate(void *arg, const struct cfg_cidr *cidr)
{
	struct ipc_gate *g = arg;
	struct ipc_cidr *c;

	if (g->n >= IPC_GATE_MAX)
		return 1;
	c = &g->cidr[g->n++];
	memset(c, 0, sizeof *c);
	c->family = (uint8_t)cidr->family;
	c->prefix = (uint8_t)cidr->prefix;
	memcpy(c->addr, cidr->addr, cidr->family == AF_INET ? 4 : 16);
	return 0;
}

void tunnels_gate(const struct tunnels *t, struct ipc_gate *g)
{
	static uint32_t generation;

	g->generation = ++generation;
	g->n = 0;
	(void)each_remote_ts(t, add_gate, g);
}

static int covers_one(void *arg, const struct cfg_cidr *c)
{
	const struct sockaddr *const *addr = arg;

	return cfg_cidr_contains(c, *addr);
}

int tunnels_covers(const struct tunnels *t, const struct sockaddr *addr)
{
	return each_remote_ts(t, covers_one, &addr);
}

/* The PFS group of the tunnel's newest installed CHILD_SA, 0 when none. */
static unsigned child_group(const struct tstate *ts)
{
	const struct sas_child *best = NULL;

	for (size_t i = 0; ts->have_ike && i < ts->ike.nchildren; i++)
		if (child_installed(&ts->ike.child[i]) &&
		    (!best || ts->ike.child[i].uniqueid > best->uniqueid))
			best = &ts->ike.child[i];
	return best ? best->dh_group : 0;
}

void tunnels_ipc(const struct tunnels *t, struct ipc_tunnels *out)
{
	memset(out, 0, sizeof *out);
	for (size_t i = 0; i < t->n && out->n < IPC_TUNNELS_MAX; i++) {
		const struct tstate *ts = &t->t[i];
		struct ipc_tunnel *o = &out->t[out->n++];

		snprintf(o->name, sizeof o->name, "%s", ts->cfg->name);
		o->up = (uint8_t)ts->up;
		o->ike_dh = (uint16_t)(ts->up ? ts->ike.dh_group : 0);
		o->esp_dh = (uint16_t)(ts->up ? child_group(ts) : 0);
		o->changed_unix = ts->since_unix;
	}
}

/* ---------- rekey-check ---------- */

static void check_finish(struct check *c, int ok, const char *text)
{
	struct tstate *ts = c->ts;

	snprintf(ts->pfs_result, sizeof ts->pfs_result, "%s", ok ? "ok" : "failed");
	snprintf(ts->pfs_reason, sizeof ts->pfs_reason, "%s", ok ? "" : text);
	log_event(ok ? LOG_INFO : LOG_WARN, "rekey_check", " tunnel=%s result=%s detail=\"%s\"",
		  ts->cfg->name, ts->pfs_result, text);
	ts->check = NULL;
	c->cb(c->arg, ok, text);
	if (c->poll)
		event_free(c->poll);
	/* Not from the log connection's own callback: see on_check_log(). */
	vloop_free(c->logv);
	free(c);
}

/* The CHILD_SA the rekey made: same name, another id, installed, whatever
 * its group (a weak one is reported here before the audit removes it). */
static const struct sas_child *rekeyed(const struct check *c)
{
	const struct sas_ike *ike = &c->ts->ike;

	for (size_t i = 0; c->ts->have_ike && i < ike->nchildren; i++)
		if (!strcmp(ike->child[i].name, c->child) &&
		    ike->child[i].uniqueid != c->old_child &&
		    !strcmp(ike->child[i].state, "INSTALLED"))
			return &ike->child[i];
	return NULL;
}

static void check_poll(evutil_socket_t fd, short what, void *arg)
{
	struct check *c = arg;
	const struct sas_child *now = rekeyed(c);
	char text[2 * TUNNELS_REASON_MAX], reason[TUNNELS_REASON_MAX];
	struct timeval tv = {0, CHECK_POLL_MS * 1000};

	(void)fd;
	(void)what;
	if (now && now->dh[0]) {
		int ok = allowed_group(now->dh_group);

		c->ts->pfs_group = now->dh_group;
		snprintf(text, sizeof text, "CHILD_SA %s rekeyed with PFS %s (DH %u)%s", c->child,
			 now->dh, now->dh_group, ok ? "" : ": not allowed, terminated");
		check_finish(c, ok, text);
		return;
	}
	/* The peer's refusal (NO_PROPOSAL_CHOSEN...) ends the check at once. */
	if (vici_control_reason(c->log, reason, sizeof reason) || vici_now_ms() >= c->deadline_ms) {
		if (!reason[0])
			snprintf(reason, sizeof reason, "no new CHILD_SA within %d s",
				 CHECK_TIMEOUT_MS / 1000);
		snprintf(text, sizeof text, "CHILD_SA %s was not rekeyed: %s", c->child, reason);
		check_finish(c, 0, text);
		return;
	}
	schedule_refresh(c->tun);
	evtimer_add(c->poll, &tv);
}

/* charon's log lines of this tunnel, kept in the form vici_control_reason() reads. */
static void on_check_log(void *arg, const char *event, const struct vici_tree *msg)
{
	struct check *c = arg;
	const char *name = vici_tree_get(msg, "ikesa-name"), *text = vici_tree_get(msg, "msg");
	const char *group = vici_tree_get(msg, "group");
	size_t len = strlen(c->log);

	(void)event;
	if (!name || !text || strcmp(name, c->ts->cfg->name) || len >= sizeof c->log - 1)
		return;
	snprintf(c->log + len, sizeof c->log - len, "[%s] %s: %s\n", group ? group : "?", name,
		 text);
}

static void on_rekeyed(void *arg, int err, const struct vici_tree *reply)
{
	struct check *c = arg;
	const char *fail = err < 0 ? strerror(-err) : vici_reply_error(reply);
	struct timeval tv = {0, CHECK_POLL_MS * 1000};

	if (err == -ECANCELED)
		return;
	if (fail) {
		char text[TUNNELS_REASON_MAX];

		snprintf(text, sizeof text, "rekey refused by charon: %s", *fail ? fail : "?");
		check_finish(c, 0, text);
		return;
	}
	evtimer_add(c->poll, &tv);
}

/* The log subscription is registered once this answer arrives (requests
 * run in order): only then is the rekey started, so no line is missed. */
static void on_log_ready(void *arg, int err, const struct vici_tree *reply)
{
	struct check *c = arg;
	struct vici_builder *b;
	uint8_t *msg = NULL;
	size_t len = 0;
	char id[16];

	(void)reply;
	if (err < 0)
		return; /* the deadline poll reports it */
	snprintf(id, sizeof id, "%u", c->old_child);
	b = vici_builder_new();
	vici_builder_key_str(b, "child-id", id);
	if (vici_builder_finish(b, &msg, &len) == 0 &&
	    vici_conn_command(vloop_conn(c->tun->v), "rekey", msg, len, LIST_TIMEOUT_MS, on_rekeyed,
			      c) == 0)
		kick(c->tun);
	vici_builder_free(b);
	free(msg);
}

static int check_start(struct check *c, const char *uri)
{
	struct timeval deadline = {CHECK_TIMEOUT_MS / 1000 + 1, 0};
	int err = vloop_new(c->tun->base, uri, &c->logv);

	if (err < 0)
		return err;
	if (!(c->poll = evtimer_new(c->tun->base, check_poll, c)))
		return -ENOMEM;
	if ((err = vici_conn_subscribe(vloop_conn(c->logv), "log", on_check_log, c)) < 0 ||
	    (err = vici_conn_command(vloop_conn(c->logv), "version", NULL, 0, LIST_TIMEOUT_MS,
				     on_log_ready, c)) < 0)
		return err;
	vloop_kick(c->logv);
	/* The poll also ends a check whose log connection never came up. */
	return evtimer_add(c->poll, &deadline) < 0 ? -ENOMEM : 0;
}

int tunnels_rekey_check(struct tunnels *t, const char *name, tunnels_check_cb cb, void *arg)
{
	struct tstate *ts = find(t, name);
	const struct sas_child *child;
	struct check *c;
	int err;

	if (!ts)
		return -ENOENT;
	if (ts->check)
		return -EBUSY;
	child = ts->up ? installed(&ts->ike, ts->cfg->children[0].name) : NULL;
	if (!child)
		return -ENOTCONN;
	if (!(c = calloc(1, sizeof *c)))
		return -ENOMEM;
	*c = (struct check){.tun = t,
			    .ts = ts,
			    .old_child = child->uniqueid,
			    .deadline_ms = vici_now_ms() + CHECK_TIMEOUT_MS,
			    .cb = cb,
			    .arg = arg};
	snprintf(c->child, sizeof c->child, "%s", child->name);
	if ((err = check_start(c, t->cfg->charon.vici)) < 0) {
		if (c->poll)
			event_free(c->poll);
		vloop_free(c->logv);
		free(c);
		return err;
	}
	ts->check = c;
	log_event(LOG_INFO, "rekey_check_started", " tunnel=%s child=%s child_id=%u", name,
		  c->child, c->old_child);
	return 0;
}

/* ---------- what status shows ---------- */

size_t tunnels_count(const struct tunnels *t)
{
	return t->n;
}

void tunnels_view(const struct tunnels *t, size_t i, struct tunnel_view *v)
{
	const struct tstate *ts = &t->t[i];

	*v = (struct tunnel_view){.cfg = ts->cfg,
				  .up = ts->up,
				  .since_unix = ts->since_unix,
				  .ike = ts->have_ike ? &ts->ike : NULL,
				  .last_error = ts->last_error,
				  .last_error_unix = ts->last_error_unix,
				  .pfs_result = ts->pfs_result,
				  .pfs_group = ts->pfs_group,
				  .pfs_reason = ts->pfs_reason};
}
