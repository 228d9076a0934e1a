#include "appliance/sup.h"

#include <errno.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <event2/event.h>

#include "appliance/charon.h"
#include "appliance/child.h"
#include "appliance/control.h"
#include "appliance/heartbeat.h"
#include "appliance/sftpkeys.h"
#include "appliance/status.h"
#include "appliance/tunnels.h"
#include "appliance/vloop.h"
#include "mllp-bridge/log.h"

#define NSIGNALS	       4
#define BRIDGE_STOP_TIMEOUT_MS 30000 /* the bridge drains in-flight requests first */
#define CHARON_STOP_TIMEOUT_MS 5000

struct sup {
	struct event_base *base;
	struct sup_opts opts;
	struct cfg *cfg;
	char *pidfile;	      /* the bridge's */
	char *charon_pidfile; /* the charon we started */
	struct vloop *v;
	struct tunnels *tun;
	struct charon_proc *charon;
	struct bridge_child *bridge;
	struct heartbeat *hb;
	struct control *ctl;
	struct event *sig_ev[NSIGNALS];
	int stopping;
};

/* ---------- the bridge's view ---------- */

static void send_snapshots(void *arg)
{
	struct sup *s = arg;
	struct ipc_gate *g = calloc(1, sizeof *g);
	struct ipc_tunnels *t = calloc(1, sizeof *t);

	if (g && t) {
		tunnels_gate(s->tun, g);
		tunnels_ipc(s->tun, t);
		child_send_gate(s->bridge, g);
		child_send_tunnels(s->bridge, t);
	}
	free(g);
	free(t);
}

static void on_bridge_status(void *arg, const struct ipc_status *st)
{
	(void)arg;
	(void)st; /* kept by the child module; read back for status */
}

static int hb_allowed(void *arg, const struct sockaddr *addr)
{
	struct sup *s = arg;

	return tunnels_covers(s->tun, addr);
}

static void on_vici_state(void *arg, enum vici_state state, int err)
{
	struct sup *s = arg;

	if (state == VICI_STATE_DOWN && s->charon && !s->stopping)
		charon_proc_vici_down(s->charon);
	tunnels_on_vici(s->tun, state, err);
}

/* ---------- control commands ---------- */

static void reply_status(struct sup *s, struct control_req *req, int json)
{
	struct status_src src = {.cfg = s->cfg,
				 .config_path = s->opts.config_path,
				 .tun = s->tun,
				 .bridge = s->bridge,
				 .hb = s->hb,
				 .charon_pid = s->charon ? charon_proc_pid(s->charon) : 0};
	char *buf = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&buf, &len);

	if (!out) {
		control_reply(req, 0, "out of memory\n");
		return;
	}
	if (json)
		status_json(&src, out);
	else
		status_text(&src, out);
	fclose(out);
	control_reply(req, 1, buf);
	free(buf);
}

static void on_checked(void *arg, int ok, const char *text)
{
	struct control_req *req = arg;
	char line[1024];

	snprintf(line, sizeof line, "rekey-check: %s: %s\n", ok ? "ok" : "FAILED", text);
	control_reply(req, ok, line);
}

static void do_rekey_check(struct sup *s, struct control_req *req, const char *name)
{
	int err = tunnels_rekey_check(s->tun, name, on_checked, req);
	char line[256];

	if (err == 0)
		return;
	snprintf(line, sizeof line, "rekey-check %s: %s\n", name,
		 err == -ENOENT	    ? "no such tunnel"
		 : err == -ENOTCONN ? "the tunnel is not up"
		 : err == -EBUSY    ? "a check is already running"
				    : strerror(-err));
	control_reply(req, 0, line);
}

static int reload(struct sup *s, char *why, size_t cap);

static void on_sftp_answer(void *arg, int ok, const char *text)
{
	control_reply(arg, ok, text);
}

static void on_command(void *arg, struct control_req *req, int argc, char **argv)
{
	struct sup *s = arg;
	char why[4096];

	if (argc >= 1 && !strcmp(argv[0], "status") &&
	    (argc == 1 || (argc == 2 && !strcmp(argv[1], "--json"))))
		reply_status(s, req, argc == 2);
	else if (argc == 2 && !strcmp(argv[0], "rekey-check"))
		do_rekey_check(s, req, argv[1]);
	else if (argc == 1 && !strcmp(argv[0], "reload"))
		control_reply(req, reload(s, why, sizeof why) == 0, why);
	else if (argc >= 1 && !strcmp(argv[0], "sftp"))
		sftpkeys_command(s->base, s->cfg, s->cfg->supervisor.bridge_user, argc, argv,
				 on_sftp_answer, req);
	else
		control_reply(req, 0,
			      "usage: status [--json] | rekey-check TUNNEL | reload | sftp ...\n");
}

/* ---------- reload ---------- */

/* The bridge reads the file only at start: a reload restarts it. */
static void restart_bridge(void *arg)
{
	struct sup *s = arg;

	if (!s->stopping && child_start(s->bridge) < 0)
		log_event(LOG_ERR, "bridge_start_failed", "%s", "");
}

/* A file that fails validation changes nothing; a good one is reconciled
 * with charon and the bridge is restarted to read it. */
static int reload(struct sup *s, char *why, size_t cap)
{
	struct cfg_errors errs = {0};
	struct cfg *next = NULL;
	size_t used = 0;
	int err = cfg_load_as(s->opts.config_path, CFG_ROLE_SUPERVISOR, &next, &errs);

	why[0] = '\0';
	for (size_t i = 0; i < errs.n; i++) {
		log_event(LOG_ERR, "reload_rejected", " error=\"%s\"", errs.msg[i]);
		if (used < cap)
			used += (size_t)snprintf(why + used, cap - used, "%s\n", errs.msg[i]);
	}
	cfg_errors_free(&errs);
	if (err < 0) {
		if (!why[0])
			snprintf(why, cap, "%s: %s\n", s->opts.config_path, strerror(-err));
		return err;
	}
	tunnels_set_config(s->tun, next, s->cfg);
	/* The heartbeat reads the destinations; it is rebuilt on the new file. */
	heartbeat_free(s->hb);
	s->hb = NULL;
	if (heartbeat_new(s->base, next, hb_allowed, s, &s->hb) < 0)
		log_event(LOG_ERR, "heartbeat_failed", "%s", "");
	cfg_free(s->cfg);
	s->cfg = next;
	log_event(LOG_INFO, "reloaded", " config=%s tunnels=%zu", s->opts.config_path,
		  next->ntunnels);
	child_stop(s->bridge, BRIDGE_STOP_TIMEOUT_MS, restart_bridge, s);
	snprintf(why, cap, "reloaded %s\n", s->opts.config_path);
	return 0;
}

/* ---------- signals ---------- */

static void on_bridge_stopped(void *arg)
{
	struct sup *s = arg;

	if (s->charon)
		charon_proc_stop(s->charon, CHARON_STOP_TIMEOUT_MS);
	event_base_loopexit(s->base, NULL);
}

static void reap(struct sup *s)
{
	int st;
	pid_t pid;

	while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
		if (child_reaped(s->bridge, pid, st))
			continue;
		if (s->charon)
			charon_proc_reaped(s->charon, pid, st);
	}
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct sup *s = arg;
	char why[4096];

	(void)what;
	if (sig == SIGCHLD) {
		reap(s);
	} else if (sig == SIGHUP) {
		(void)reload(s, why, sizeof why);
	} else if (!s->stopping) {
		log_event(LOG_INFO, "shutdown", " signal=%d", (int)sig);
		s->stopping = 1;
		tunnels_stop(s->tun);
		child_stop(s->bridge, BRIDGE_STOP_TIMEOUT_MS, on_bridge_stopped, s);
	}
}

static int setup_signals(struct sup *s)
{
	static const int sigs[NSIGNALS] = {SIGINT, SIGTERM, SIGHUP, SIGCHLD};

	for (int i = 0; i < NSIGNALS; i++) {
		s->sig_ev[i] = evsignal_new(s->base, sigs[i], on_signal, s);
		if (!s->sig_ev[i] || event_add(s->sig_ev[i], NULL) < 0)
			return -ENOMEM;
	}
	return 0;
}

/* ---------- setup ---------- */

/* PIDs sit next to the control socket, in the runtime dir. */
static char *pidfile_path(const char *control_socket, const char *name)
{
	char *copy = strdup(control_socket), *path = NULL;

	if (copy && asprintf(&path, "%s/%s.pid", dirname(copy), name) < 0)
		path = NULL;
	free(copy);
	return path;
}

static int start_bridge(struct sup *s)
{
	const struct cfg_supervisor *c = &s->cfg->supervisor;
	struct child_opts o = {.path = c->bridge_path ? c->bridge_path : s->opts.bridge_path,
			       .config = s->opts.config_path,
			       .user = c->bridge_user,
			       .pidfile = s->pidfile,
			       .verbose = s->opts.verbose};
	int err;

	if (!(s->pidfile = pidfile_path(c->control_socket, "bridge")))
		return -ENOMEM;
	o.pidfile = s->pidfile;
	if ((err = child_new(s->base, &o, on_bridge_status, s, &s->bridge)) < 0)
		return err;
	/* Closed until the tunnels say otherwise: the first gate is empty. */
	send_snapshots(s);
	return child_start(s->bridge);
}

static int sup_setup(struct sup *s)
{
	int err;

	if (!(s->base = event_base_new()))
		return -ENOMEM;
	if ((err = setup_signals(s)) < 0 ||
	    (err = vloop_new(s->base, s->cfg->charon.vici, &s->v)) < 0)
		return err;
	if (s->cfg->charon.start &&
	    (!(s->charon_pidfile = pidfile_path(s->cfg->supervisor.control_socket, "charon")) ||
	     (err = charon_proc_new(s->base, &s->cfg->charon, s->charon_pidfile, &s->charon)) < 0))
		return s->charon_pidfile ? err : -ENOMEM;
	if ((err = tunnels_new(s->base, s->v, s->cfg, s->cfg->charon.start, send_snapshots, s,
			       &s->tun)) < 0)
		return err;
	vici_conn_on_state(vloop_conn(s->v), on_vici_state, s);
	if ((err = control_new(s->base, s->cfg->supervisor.control_socket,
			       s->cfg->supervisor.control_group, on_command, s, &s->ctl)) < 0) {
		log_event(LOG_ERR, "control_socket_failed", " path=%s error=\"%s\"",
			  s->cfg->supervisor.control_socket, strerror(-err));
		return err;
	}
	if ((err = heartbeat_new(s->base, s->cfg, hb_allowed, s, &s->hb)) < 0 ||
	    (err = start_bridge(s)) < 0)
		return err;
	/* The first connect may have failed before the callback was set. */
	if (s->charon && !tunnels_connected(s->tun))
		charon_proc_vici_down(s->charon);
	return 0;
}

int sup_new(const struct sup_opts *o, struct cfg *cfg, struct sup **out)
{
	struct sup *s = calloc(1, sizeof *s);
	int err;

	*out = NULL;
	if (!s) {
		cfg_free(cfg);
		return -ENOMEM;
	}
	s->opts = *o;
	s->cfg = cfg;
	if ((err = sup_setup(s)) < 0) {
		sup_free(s);
		return err;
	}
	*out = s;
	return 0;
}

int sup_run(struct sup *s)
{
	log_event(LOG_INFO, "started", " config=%s tunnels=%zu charon=%s", s->opts.config_path,
		  s->cfg->ntunnels, s->cfg->charon.start ? "start" : "attach");
	return event_base_dispatch(s->base) < 0 ? -EIO : 0;
}

void sup_free(struct sup *s)
{
	if (!s)
		return;
	control_free(s->ctl);
	heartbeat_free(s->hb);
	child_free(s->bridge);
	tunnels_free(s->tun);
	vloop_free(s->v);
	charon_proc_free(s->charon);
	for (int i = 0; i < NSIGNALS; i++)
		if (s->sig_ev[i])
			event_free(s->sig_ev[i]);
	if (s->base)
		event_base_free(s->base);
	cfg_free(s->cfg);
	free(s->pidfile);
	free(s->charon_pidfile);
	free(s);
}
