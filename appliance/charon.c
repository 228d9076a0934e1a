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
	const struct cfg_charon *cfg;
	pid_t pid;
	int stopping;
	unsigned backoff_ms;
	struct event *restart;
	struct timespec started;
};

static void start(struct charon_proc *p)
{
	pid_t pid;

	if (p->pid || p->stopping || evtimer_pending(p->restart, NULL))
		return;
	pid = fork();
	if (pid < 0) {
		log_event(LOG_ERR, "charon_start_failed", " error=\"%s\"", strerror(errno));
		return;
	}
	if (pid == 0) {
		if (p->cfg->strongswan_conf)
			setenv("STRONGSWAN_CONF", p->cfg->strongswan_conf, 1);
		execl(p->cfg->binary, p->cfg->binary, (char *)NULL);
		fprintf(stderr, "appliance: cannot run %s: %s\n", p->cfg->binary, strerror(errno));
		_exit(127);
	}
	p->pid = pid;
	clock_gettime(CLOCK_MONOTONIC, &p->started);
	log_event(LOG_INFO, "charon_started", " pid=%d binary=%s", (int)pid, p->cfg->binary);
}

static void on_restart(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	start(arg);
}

int charon_proc_new(struct event_base *base, const struct cfg_charon *cfg, struct charon_proc **out)
{
	struct charon_proc *p = calloc(1, sizeof *p);

	*out = NULL;
	if (!p)
		return -ENOMEM;
	p->base = base;
	p->cfg = cfg;
	if (!(p->restart = evtimer_new(base, on_restart, p))) {
		free(p);
		return -ENOMEM;
	}
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

void charon_proc_stop(struct charon_proc *p, int timeout_ms)
{
	p->stopping = 1;
	evtimer_del(p->restart);
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
	return p->pid;
}

void charon_proc_free(struct charon_proc *p)
{
	if (!p)
		return;
	if (p->restart)
		event_free(p->restart);
	free(p);
}
