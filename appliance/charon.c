#include "appliance/charon.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mllp-bridge/log.h"

struct charon_proc {
	struct event_base *base;
	char *binary;
	char *conf; /* STRONGSWAN_CONF, or NULL */
	char *pidfile;
	pid_t pid;
	pid_t adopted; /* started by an earlier supervisor; not our child */
	int stopping;
	unsigned backoff_ms;
	struct event *restart;
	struct timespec started;
};

static int alive(pid_t pid)
{
	return pid > 0 && kill(pid, 0) == 0;
}

static void write_pidfile(const struct charon_proc *p)
{
	FILE *f = p->pidfile ? fopen(p->pidfile, "we") : NULL;

	if (!f)
		return;
	fprintf(f, "%d\n", (int)p->pid);
	fclose(f);
}

/* A charon an earlier supervisor started (and recorded) is kept: it holds
 * the SAs, and the hospital's traffic with them. */
static void adopt(struct charon_proc *p)
{
	char comm[64] = "", path[64];
	FILE *f = p->pidfile ? fopen(p->pidfile, "re") : NULL;
	int pid = 0;

	if (!f)
		return;
	if (fscanf(f, "%d", &pid) != 1)
		pid = 0;
	fclose(f);
	snprintf(path, sizeof path, "/proc/%d/comm", pid);
	if (pid <= 0 || !(f = fopen(path, "re")))
		return;
	if (!fgets(comm, sizeof comm, f))
		comm[0] = '\0';
	fclose(f);
	if (strncmp(comm, "charon", 6) == 0) {
		p->adopted = (pid_t)pid;
		log_event(LOG_INFO, "charon_adopted", " pid=%d", pid);
	}
}

static void start(struct charon_proc *p)
{
	pid_t pid;

	if (p->pid || p->stopping || evtimer_pending(p->restart, NULL) || alive(p->adopted))
		return;
	p->adopted = 0;
	pid = fork();
	if (pid < 0) {
		log_event(LOG_ERR, "charon_start_failed", " error=\"%s\"", strerror(errno));
		return;
	}
	if (pid == 0) {
		if (p->conf)
			setenv("STRONGSWAN_CONF", p->conf, 1);
		execl(p->binary, p->binary, (char *)NULL);
		fprintf(stderr, "appliance: cannot run %s: %s\n", p->binary, strerror(errno));
		_exit(127);
	}
	p->pid = pid;
	write_pidfile(p);
	clock_gettime(CLOCK_MONOTONIC, &p->started);
	log_event(LOG_INFO, "charon_started", " pid=%d binary=%s", (int)pid, p->binary);
}

static void on_restart(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	start(arg);
}

int charon_proc_new(struct event_base *base, const struct cfg_charon *cfg, const char *pidfile,
		    struct charon_proc **out)
{
	struct charon_proc *p = calloc(1, sizeof *p);

	*out = NULL;
	if (!p)
		return -ENOMEM;
	p->base = base;
	if (!(p->binary = strdup(cfg->binary)) ||
	    (cfg->strongswan_conf && !(p->conf = strdup(cfg->strongswan_conf))) ||
	    (pidfile && !(p->pidfile = strdup(pidfile))) ||
	    !(p->restart = evtimer_new(base, on_restart, p))) {
		charon_proc_free(p);
		return -ENOMEM;
	}
	adopt(p);
	*out = p;
	return 0;
}

void charon_proc_vici_down(struct charon_proc *p)
{
	start(p);
}

/* A charon that ran a minute was healthy: its next crash restarts at once. */
static unsigned next_backoff(struct charon_proc *p)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	if (now.tv_sec - p->started.tv_sec >= 60)
		p->backoff_ms = 0;
	p->backoff_ms = p->backoff_ms ? p->backoff_ms * 2 : CHARON_BACKOFF_MIN_MS;
	if (p->backoff_ms > CHARON_BACKOFF_MAX_MS)
		p->backoff_ms = CHARON_BACKOFF_MAX_MS;
	return p->backoff_ms;
}

int charon_proc_reaped(struct charon_proc *p, pid_t pid, int wstatus)
{
	struct timeval tv;
	unsigned ms;

	if (!p->pid || pid != p->pid)
		return 0;
	p->pid = 0;
	if (p->stopping) {
		log_event(LOG_INFO, "charon_stopped", " pid=%d", (int)pid);
		return 1;
	}
	ms = next_backoff(p);
	log_event(LOG_ERR, "charon_exited", " pid=%d status=%d signal=%d restart_ms=%u", (int)pid,
		  WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : -1,
		  WIFSIGNALED(wstatus) ? WTERMSIG(wstatus) : 0, ms);
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	evtimer_add(p->restart, &tv);
	return 1;
}

/* An adopted charon is no child of ours: polled, not waited for. */
static void stop_adopted(struct charon_proc *p, int timeout_ms)
{
	kill(p->adopted, SIGTERM);
	for (int waited = 0; waited < timeout_ms && alive(p->adopted); waited += 20)
		usleep(20 * 1000);
	if (alive(p->adopted))
		kill(p->adopted, SIGKILL);
	log_event(LOG_INFO, "charon_stopped", " pid=%d", (int)p->adopted);
	p->adopted = 0;
}

void charon_proc_stop(struct charon_proc *p, int timeout_ms)
{
	p->stopping = 1;
	evtimer_del(p->restart);
	if (alive(p->adopted))
		stop_adopted(p, timeout_ms);
	if (!p->pid)
		return;
	kill(p->pid, SIGTERM);
	/* Shutdown is the one place the supervisor may block: its loop has
	 * nothing else left to serve. */
	for (int waited = 0; waited < timeout_ms; waited += 20) {
		int st;

		if (waitpid(p->pid, &st, WNOHANG) == p->pid) {
			charon_proc_reaped(p, p->pid, st);
			return;
		}
		usleep(20 * 1000);
	}
	log_event(LOG_WARN, "charon_killed", " pid=%d after_ms=%d", (int)p->pid, timeout_ms);
	kill(p->pid, SIGKILL);
	waitpid(p->pid, NULL, 0);
	p->pid = 0;
}

pid_t charon_proc_pid(const struct charon_proc *p)
{
	return p->pid ? p->pid : alive(p->adopted) ? p->adopted : 0;
}

void charon_proc_free(struct charon_proc *p)
{
	if (!p)
		return;
	if (p->restart)
		event_free(p->restart);
	free(p->binary);
	free(p->conf);
	free(p->pidfile);
	free(p);
}
