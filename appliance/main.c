/*
 * appliance: the supervisor. The one process an operator starts.
 *
 *   appliance [-c FILE] [-v]     run in the foreground (as root)
 *   appliance [-c FILE] -n       check the configuration and exit
 */
#include <errno.h>
#include <limits.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "appliance/sup.h"
#include "mllp-bridge/config.h"
#include "mllp-bridge/log.h"

#define DEFAULT_CONFIG "/etc/appliance/appliance.yaml"
#define VERSION	       "0.1.0"

static void usage(FILE *f)
{
	fprintf(f, "usage: appliance [-c FILE] [-n] [-v]\n"
		   "  -c FILE  configuration (default " DEFAULT_CONFIG ")\n"
		   "  -n       check the configuration, print every error, exit 0 if valid\n"
		   "  -v       debug logging (the bridge too)\n"
		   "  -V       print the version\n");
}

static int load_config(const char *path, struct cfg **cfg)
{
	struct cfg_errors errs = {0};
	int err = cfg_load_as(path, CFG_ROLE_SUPERVISOR, cfg, &errs);

	for (size_t i = 0; i < errs.n; i++)
		fprintf(stderr, "%s\n", errs.msg[i]);
	cfg_errors_free(&errs);
	return err;
}

/* mllp-bridge next to this binary, unless the file names one. */
static void default_bridge(char *buf, size_t cap)
{
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);

	if (n <= 0) {
		snprintf(buf, cap, "/usr/sbin/mllp-bridge");
		return;
	}
	self[n] = '\0';
	snprintf(buf, cap, "%s/mllp-bridge", dirname(self));
}

static int run(const char *path, struct cfg *cfg, int verbose)
{
	char bridge[PATH_MAX];
	struct sup_opts o = {.config_path = path, .verbose = verbose};
	struct sup *s;
	int err;

	default_bridge(bridge, sizeof bridge);
	o.bridge_path = bridge;
	signal(SIGPIPE, SIG_IGN);
	err = sup_new(&o, cfg, &s);
	if (err < 0) {
		log_event(LOG_ERR, "startup_failed", " error=\"%s\"", strerror(-err));
		return 1;
	}
	err = sup_run(s);
	sup_free(s);
	log_event(LOG_INFO, "stopped", "%s", "");
	return err < 0 ? 1 : 0;
}

int main(int argc, char **argv)
{
	const char *path = DEFAULT_CONFIG;
	int check_only = 0, verbose = 0, opt;
	struct cfg *cfg = NULL;

	while ((opt = getopt(argc, argv, "c:nvVh")) != -1) {
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
		case 'V':
			printf("appliance %s\n", MLLP_EDGE_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	if (load_config(path, &cfg) < 0)
		return 1;
	if (check_only) {
		printf("%s: configuration is valid\n", path);
		cfg_free(cfg);
		return 0;
	}
	log_init(verbose ? LOG_DEBUG : LOG_INFO, cfg->log_phi);
	log_set_program("appliance");
	return run(path, cfg, verbose);
}
