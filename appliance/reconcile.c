#include "appliance/reconcile.h"

#include <errno.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mllp-bridge/log.h"

#define RECONCILE_TIMEOUT_MS 10000

/* One reconciliation: the requests in flight and their subjects. */
struct run {
	struct vici_conn *conn;
	char **keep; /* every tunnel the file names: never unloaded */
	size_t nkeep;
	char **mine; /* the previous file's appliance tunnels: unloaded when not kept */
	size_t nmine;
	int own_charon;
	reconcile_error_cb error_cb;
	reconcile_done_cb done_cb;
	void *arg;
	unsigned pending; /* requests not answered yet, +1 while queuing */
};

/* A request's subject: which tunnel to blame when it fails. */
struct req {
	struct run *run;
	char tunnel[CFG_NAME_MAX + 1]; /* "" for none of the file's */
	char what[32];
};

static void free_names(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

static void run_free(struct run *r)
{
	free_names(r->keep, r->nkeep);
	free_names(r->mine, r->nmine);
	free(r);
}

static void run_put(struct run *r)
{
	if (--r->pending)
		return;
	r->done_cb(r->arg);
	run_free(r);
}

/* The names the run needs after reconcile_run() returns: the configs are
 * the caller's and may be replaced by a reload meanwhile. */
static int copy_names(const struct cfg *cfg, int appliance_only, char ***out, size_t *n)
{
	*n = 0;
	*out = cfg && cfg->ntunnels ? calloc(cfg->ntunnels, sizeof **out) : NULL;
	if (cfg && cfg->ntunnels && !*out)
		return -ENOMEM;
	for (size_t i = 0; cfg && i < cfg->ntunnels; i++) {
		if (appliance_only && cfg->tunnels[i].source != CFG_SOURCE_APPLIANCE)
			continue;
		if (!((*out)[*n] = strdup(cfg->tunnels[i].name)))
			return -ENOMEM;
		++*n;
	}
	return 0;
}

static void on_load_reply(void *arg, int err, const struct vici_tree *reply)
{
	struct req *q = arg;
	const char *why = err < 0 ? strerror(-err) : vici_reply_error(reply);

	if (why) {
		char text[512];

		snprintf(text, sizeof text, "%s failed: %s", q->what,
			 *why ? why : "no reason given");
		q->run->error_cb(q->run->arg, q->tunnel[0] ? q->tunnel : NULL, text);
	}
	run_put(q->run);
	free(q);
}

/* Queues cmd with b's message; the builder is consumed. */
static int send_req(struct vici_conn *c, struct run *r, const char *tunnel, const char *cmd,
		    struct vici_builder *b)
{
	struct req *q = calloc(1, sizeof *q);
	uint8_t *msg = NULL;
	size_t len = 0;
	int err = vici_builder_finish(b, &msg, &len);

	vici_builder_free(b);
	if (err == 0 && !q)
		err = -ENOMEM;
	if (err == 0) {
		*q = (struct req){.run = r};
		snprintf(q->tunnel, sizeof q->tunnel, "%s", tunnel ? tunnel : "");
		snprintf(q->what, sizeof q->what, "%s", cmd);
		r->pending++;
		err = vici_conn_command(c, cmd, msg, len, RECONCILE_TIMEOUT_MS, on_load_reply, q);
		if (err < 0)
			r->pending--;
	}
	if (err < 0)
		free(q);
	free(msg);
	return err;
}

static void list(struct vici_builder *b, const char *name, char *const *items, size_t n)
{
	vici_builder_list_start(b, name);
	for (size_t i = 0; i < n; i++)
		vici_builder_list_item_str(b, items[i]);
	vici_builder_list_end(b);
}

/* Adds each certificate of a PEM bundle as one list item: vici takes one
 * certificate per item, and a CA file may hold several (only the first
 * would count otherwise). A file without PEM armour (DER) is one item. */
static void cert_list(struct vici_builder *b, const char *name, const char *pem, size_t len)
{
	static const char begin[] = "-----BEGIN CERTIFICATE-----";
	static const char end[] = "-----END CERTIFICATE-----";
	const char *p = pem, *stop = pem + len, *e;
	int n = 0;

	vici_builder_list_start(b, name);
	while ((p = memmem(p, (size_t)(stop - p), begin, sizeof begin - 1)) &&
	       (e = memmem(p, (size_t)(stop - p), end, sizeof end - 1))) {
		e += sizeof end - 1;
		vici_builder_list_item(b, p, (size_t)(e - p));
		n++;
		p = e;
	}
	if (n == 0)
		vici_builder_list_item(b, pem, len);
	vici_builder_list_end(b);
}

static void auth_round(struct vici_builder *b, const char *section, const char *id,
		       const struct reconcile_pems *pems, int local)
{
	vici_builder_section_start(b, section);
	vici_builder_key_str(b, "auth", pems ? "pubkey" : "psk");
	if (id)
		vici_builder_key_str(b, "id", id);
	/* vici wants the certificates themselves, not their file names. */
	if (pems && local)
		cert_list(b, "certs", pems->cert, pems->cert_len);
	else if (pems)
		cert_list(b, "cacerts", pems->ca, pems->ca_len);
	vici_builder_section_end(b);
}

static void child_msg(struct vici_builder *b, const struct cfg_child *ch)
{
	char ts[INET6_ADDRSTRLEN + 8], addr[INET6_ADDRSTRLEN];

	vici_builder_section_start(b, ch->name);
	for (int remote = 0; remote < 2; remote++) {
		const struct cfg_cidr *c = remote ? ch->remote_ts : ch->local_ts;
		size_t n = remote ? ch->nremote_ts : ch->nlocal_ts;

		vici_builder_list_start(b, remote ? "remote_ts" : "local_ts");
		for (size_t i = 0; i < n; i++) {
			inet_ntop(c[i].family, c[i].addr, addr, sizeof addr);
			snprintf(ts, sizeof ts, "%s/%u", addr, c[i].prefix);
			vici_builder_list_item_str(b, ts);
		}
		vici_builder_list_end(b);
	}
	list(b, "esp_proposals", ch->esp_proposals, ch->nesp_proposals);
	/* The supervisor initiates, and re-initiates with backoff: charon
	 * must neither start nor restart a CHILD_SA on its own. */
	vici_builder_key_str(b, "start_action", "none");
	vici_builder_key_str(b, "close_action", "none");
	vici_builder_key_str(b, "dpd_action", "clear");
	vici_builder_section_end(b);
}

void reconcile_conn_msg(const struct cfg_tunnel *t, const struct reconcile_pems *pems,
			struct vici_builder *b)
{
	char dpd[32];

	vici_builder_section_start(b, t->name);
	vici_builder_key_str(b, "version", "2");
	list(b, "local_addrs", t->local_addrs, t->nlocal_addrs);
	list(b, "remote_addrs", t->remote_addrs, t->nremote_addrs);
	list(b, "proposals", t->ike_proposals, t->nike_proposals);
	/* strongSwan's durations have no milliseconds: whole seconds, at least 1. */
	snprintf(dpd, sizeof dpd, "%llus",
		 (unsigned long long)(t->dpd_delay_ms < 1000 ? 1 : t->dpd_delay_ms / 1000));
	vici_builder_key_str(b, "dpd_delay", dpd);
	/* One IKE_SA per peer: a re-initiate replaces, never duplicates. */
	vici_builder_key_str(b, "unique", "replace");
	vici_builder_key_str(b, "keyingtries", "1");
	auth_round(b, "local", t->local_id, pems, 1);
	auth_round(b, "remote", t->remote_id, pems, 0);
	vici_builder_section_start(b, "children");
	for (size_t i = 0; i < t->nchildren; i++)
		child_msg(b, &t->children[i]);
	vici_builder_section_end(b);
	vici_builder_section_end(b);
}

/* load-shared for a PSK tunnel; the secret's id is the tunnel's name.
 * Returns 0, 1 when the file could not be read (reported: the connection
 * is not loaded either), or a send_req() error. */
static int load_psk(struct vici_conn *c, struct run *r, const struct cfg_tunnel *t)
{
	struct vici_builder *b;
	char *psk = NULL, id[CFG_NAME_MAX + 16];
	size_t len = 0;
	int err = cfg_read_file(t->psk_file, CFG_AUTH_FILE_MAX, &psk, &len);

	if (err < 0) {
		char why[256];

		snprintf(why, sizeof why, "cannot read psk_file %s: %s", t->psk_file,
			 strerror(-err));
		r->error_cb(r->arg, t->name, why);
		return 1;
	}
	/* The secret is the file's bytes without one final line end, as the
	 * configuration's check counts it (config.h, psk_file). */
	if (len && psk[len - 1] == '\n')
		len -= len > 1 && psk[len - 2] == '\r' ? 2 : 1;
	snprintf(id, sizeof id, "appliance-%s", t->name);
	b = vici_builder_new();
	vici_builder_key_str(b, "id", id);
	vici_builder_key_str(b, "type", "IKE");
	vici_builder_key_value(b, "data", psk, len);
	vici_builder_list_start(b, "owners");
	vici_builder_list_item_str(b, t->local_id ? t->local_id : t->local_addrs[0]);
	vici_builder_list_item_str(b, t->remote_id ? t->remote_id : t->remote_addrs[0]);
	vici_builder_list_end(b);
	explicit_bzero(psk, len);
	free(psk);
	return send_req(c, r, t->name, "load-shared", b);
}

static void free_pems(struct reconcile_pems *p)
{
	if (p->key)
		explicit_bzero(p->key, p->key_len);
	free(p->cert);
	free(p->key);
	free(p->ca);
}

/* A certificate tunnel's three files, all read before anything is sent: a
 * connection loaded without its CA would accept any CA charon trusts. */
static int read_pems(struct run *r, const struct cfg_tunnel *t, struct reconcile_pems *p)
{
	const char *const what[3] = {"cert", "key", "ca"};
	const char *const path[3] = {t->cert, t->key, t->ca};
	char **const dst[3] = {&p->cert, &p->key, &p->ca};
	size_t *const len[3] = {&p->cert_len, &p->key_len, &p->ca_len};
	char why[512];

	for (int i = 0; i < 3; i++) {
		int err = cfg_read_file(path[i], CFG_AUTH_FILE_MAX, dst[i], len[i]);

		if (err < 0) {
			snprintf(why, sizeof why, "cannot read %s %s: %s", what[i], path[i],
				 strerror(-err));
			r->error_cb(r->arg, t->name, why);
			free_pems(p);
			return err;
		}
	}
	return 0;
}

static int load_pubkey_tunnel(struct vici_conn *c, struct run *r, const struct cfg_tunnel *t)
{
	struct reconcile_pems p = {0};
	struct vici_builder *b;
	int err;

	if (read_pems(r, t, &p) < 0)
		return 0; /* reported; nothing of this tunnel is loaded */
	b = vici_builder_new();
	vici_builder_key_str(b, "type", "any");
	vici_builder_key_value(b, "data", p.key, p.key_len);
	err = send_req(c, r, t->name, "load-key", b);
	if (err == 0) {
		b = vici_builder_new();
		reconcile_conn_msg(t, &p, b);
		err = send_req(c, r, t->name, "load-conn", b);
	}
	free_pems(&p);
	return err;
}

static int load_tunnel(struct vici_conn *c, struct run *r, const struct cfg_tunnel *t)
{
	struct vici_builder *b;
	int err;

	if (t->source != CFG_SOURCE_APPLIANCE)
		return 0;
	if (!t->psk_file)
		return load_pubkey_tunnel(c, r, t);
	if ((err = load_psk(c, r, t)) != 0)
		return err < 0 ? err : 0; /* 1: the secret was not read, reported */
	b = vici_builder_new();
	reconcile_conn_msg(t, NULL, b);
	return send_req(c, r, t->name, "load-conn", b);
}

static int named(char *const *names, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(names[i], name) == 0)
			return 1;
	return 0;
}

/* "no matching SAs" is the usual answer: nothing to report either way. */
static void on_terminated(void *arg, int err, const struct vici_tree *reply)
{
	(void)err;
	(void)reply;
	run_put(arg);
}

/* Unloading a connection leaves its SAs up (charon keeps them, and DPD
 * keeps them alive): its IKE_SAs are terminated too. */
static int unload(struct vici_conn *c, struct run *r, const char *name)
{
	struct vici_builder *b = vici_builder_new();
	uint8_t *msg = NULL;
	size_t len = 0;
	int err;

	vici_builder_key_str(b, "name", name);
	/* Not the new file's: errors are reported against no tunnel. */
	if ((err = send_req(c, r, NULL, "unload-conn", b)) < 0)
		return err;
	b = vici_builder_new();
	vici_builder_key_str(b, "ike", name);
	vici_builder_key_str(b, "force", "yes");
	vici_builder_key_str(b, "timeout", "-1");
	err = vici_builder_finish(b, &msg, &len);
	vici_builder_free(b);
	if (err == 0) {
		r->pending++;
		err = vici_conn_command(c, "terminate", msg, len, RECONCILE_TIMEOUT_MS,
					on_terminated, r);
		if (err < 0)
			r->pending--;
	}
	free(msg);
	log_event(LOG_INFO, "tunnel_unloaded", " tunnel=%s", name);
	return err;
}

/* get-conns answered: unload what the supervisor owns but no longer wants. */
static void on_conns(void *arg, int err, const struct vici_tree *reply)
{
	struct run *r = arg;
	const struct vici_node *conns = err ? NULL : vici_tree_find(reply, "conns");

	for (size_t i = 0; conns && i < vici_node_item_count(conns); i++) {
		const char *name = vici_node_item(conns, i, NULL);

		if (named(r->keep, r->nkeep, name))
			continue;
		if (r->own_charon || named(r->mine, r->nmine, name))
			(void)unload(r->conn, r, name);
	}
	run_put(r);
}

int reconcile_run(struct vici_conn *c, const struct cfg *cfg, const struct cfg *old, int own_charon,
		  reconcile_error_cb error_cb, reconcile_done_cb done_cb, void *arg)
{
	struct run *r = calloc(1, sizeof *r);
	int err = 0;

	if (!r)
		return -ENOMEM;
	*r = (struct run){.conn = c,
			  .own_charon = own_charon,
			  .error_cb = error_cb,
			  .done_cb = done_cb,
			  .arg = arg,
			  .pending = 1}; /* held until everything is queued */
	if (copy_names(cfg, 0, &r->keep, &r->nkeep) < 0 ||
	    copy_names(old, 1, &r->mine, &r->nmine) < 0) {
		run_free(r);
		return -ENOMEM;
	}
	for (size_t i = 0; i < cfg->ntunnels && err == 0; i++)
		err = load_tunnel(c, r, &cfg->tunnels[i]);
	if (err == 0) {
		r->pending++;
		err = vici_conn_command(c, "get-conns", NULL, 0, RECONCILE_TIMEOUT_MS, on_conns, r);
		if (err < 0)
			r->pending--;
	}
	if (err < 0 && r->pending == 1) {
		run_free(r);
		return err;
	}
	/* Some requests are queued: their answers will finish the run. */
	run_put(r);
	return 0;
}
