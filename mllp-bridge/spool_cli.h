/*
 * The operator's spool commands, run by `mllp-bridge -c CONFIG spool ...`:
 *
 *   list [--state queued|inflight|delivered|dead|all] [--integration NAME] [--limit N]
 *   show ID [--body]
 *   replay ID | replay --all-dead [--integration NAME]
 *   purge --delivered-before DURATION | --all-delivered [--dead]
 *   stats
 *   files [--integration NAME] [--limit N]
 *
 * No command prints a message body except `show ID --body`, which writes
 * the body alone, raw, to out (it is patient data: redirect it to a file).
 * `files` lists the records of files pulled by file channels, newest first:
 * id, integration, name, size, state (spooled, done, error), rows,
 * received, disposed and the reason of an error. `show ID` prints the
 * row's file_name when it came from a file.
 */
#ifndef SPOOL_CLI_H
#define SPOOL_CLI_H

#include <stdio.h>

#define SPOOL_CLI_LIMIT_DEFAULT	  100
#define SPOOL_CLI_LIMIT_MAX	  1000000
#define SPOOL_CLI_DURATION_MAX_MS (100LL * 366 * 24 * 3600 * 1000) /* a century */

/* Runs one command on the spool at db_path, which must exist (it is never
 * created here). argv[0] is the command name ("list", ...); argv is
 * borrowed. Output goes to out, messages to err. Returns the process exit
 * code: 0 done, 1 failed (message on err), 2 usage error (usage on err). */
int spool_cli(const char *db_path, int argc, char **argv, FILE *out, FILE *err);

#endif
