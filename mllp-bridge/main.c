/*
 * mllp-bridge: the appliance's data path.
 *
 *   mllp-bridge [-c FILE] [-v] [-S FD]  run in the foreground; -S: the
 *                                       supervisor's end of the socketpair
 *   mllp-bridge [-c FILE] -n            check the configuration and exit
 *   mllp-bridge [-c FILE] spool CMD...  operator commands on the spool
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mllp-bridge/bridge.h"
#include "mllp-bridge/config.h"
#include "mllp-bridge/log.h"
#include "mllp-bridge/spool_cli.h"

#define DEFAULT_CONFIG "/etc/appliance/appliance.yaml"
#define VERSION	       "0.1.0"

static void usage(FILE *f)
{
	fprintf(f, "usage: mllp-bridge [-c FILE] [-n] [-v] [-S FD]\n"
		   "       mllp-bridge [-c FILE] spool list|show|replay|purge|stats [ARGS]\n"
		   "  -c FILE  configuration (default " DEFAULT_CONFIG ")\n"
		   "  -n       check the configuration, print every error, exit 0 if valid\n"
		   "  -v       debug logging\n"
		   "  -S FD    the supervisor link: a SOCK_SEQPACKET socket on descriptor FD\n"
		   "           (set by the appliance supervisor; without it, `gate: closed`\n"
		   "           accepts no MLLP connection)\n"
		   "  -V       print the version\n");
}

static int load_config(const char *path, struct cfg **cfg)
{
	struct cfg_errors errs = {0};
	size_t i;
	int err = cfg_load(path, cfg, &errs);

	for (i = 0; i < errs.n; i++)
		fprintf(stderr, "%s\n", errs.msg[i]);
	cfg_errors_free(&errs);
	return err;
}

/* "-S FD": an open descriptor, kept from every program the bridge might
 * start (FD_CLOEXEC). Returns it, or -1 (said on stderr). */
static int supervisor_fd(const char *arg)
{
	char *end;
	long v;
	int flags;

	errno = 0;
	v = strtol(arg, &end, 10);
	if (errno || end == arg || *end || v < 0 || v > INT_MAX) {
		fprintf(stderr, "mllp-bridge: -S %s: not a file descriptor number\n", arg);
		return -1;
	}
	if ((flags = fcntl((int)v, F_GETFD)) < 0 ||
	    fcntl((int)v, F_SETFD, flags | FD_CLOEXEC) < 0) {
		fprintf(stderr, "mllp-bridge: -S %s: %s\n", arg, strerror(errno));
		return -1;
	}
	return (int)v;
}

static int run(const struct cfg *cfg, int sup_fd)
{
	struct bridge *b;
	int err;

	signal(SIGPIPE, SIG_IGN);
	srandom((unsigned)time(NULL) ^ (unsigned)getpid());
	err = bridge_new(cfg, sup_fd, &b);
	if (err < 0) {
		log_event(LOG_ERR, "startup_failed", " error=\"%s\"", strerror(-err));
		return 1;
	}
	err = bridge_run(b);
	bridge_free(b);
	log_event(LOG_INFO, "stopped", "%s", "");
	return err < 0 ? 1 : 0;
}

int main(int argc, char **argv)
{
	const char *path = DEFAULT_CONFIG;
	int check_only = 0, verbose = 0, opt, rc, sup_fd = -1;
	struct cfg *cfg = NULL;

	while ((opt = getopt(argc, argv, "+c:nvVhS:")) != -1) {
		switch (opt) {
		case 'c':
			path = optarg;
			break;
		case 'n':
			check_only = 1;
			break;
		case 'v':
			verbose = 1;
			break;
		case 'S':
			if ((sup_fd = supervisor_fd(optarg)) < 0)
				return 2;
			break;
		case 'V':
			printf("mllp-bridge %s\n", MLLP_EDGE_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc && strcmp(argv[optind], "spool") != 0) {
		usage(stderr);
		return 2;
	}
	if (load_config(path, &cfg) < 0)
		return 1;
	if (check_only) {
		printf("%s: configuration is valid\n", path);
		rc = 0;
	} else if (optind < argc) {
		rc = spool_cli(cfg->spool_path, argc - optind - 1, argv + optind + 1, stdout,
			       stderr);
	} else {
		log_init(verbose ? LOG_DEBUG : LOG_INFO, cfg->log_phi);
		/* Under the supervisor both write to one stderr. */
		if (sup_fd >= 0)
			log_set_program("mllp-bridge");
		rc = run(cfg, sup_fd);
	}
	cfg_free(cfg);
	return rc;
}
