/* verbs: the command line of the versioning verbs (commit, status, log,
 * branch, reset, flush, refs) and stats, which run inside the daemon
 * serving PATH.
 *
 * The command checks its arguments, asks the mount for a ticket (a
 * getxattr of LF_CTL_XATTR on PATH, so the kernel checks that the caller
 * may see PATH), and sends the verb over the daemon's control channel
 * (lakefuse/ctl.h); the daemon's answer is printed as it comes.
 */
#ifndef LAKEFUSE_VERBS_H
#define LAKEFUSE_VERBS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

/* The attribute that hands out tickets: "<address>\n<ticket>\n". */
#define LF_CTL_XATTR "user.lakefuse.control"

/* Whether name is one of these verbs. */
bool lf_verb_known(const char *name);
/* Runs `lakefuse VERB ...` (argv[0] is the verb); returns the exit code:
 * 0, 1 when the verb failed, 2 for a usage error. */
int lf_verb_main(int argc, char **argv);
/* One line per verb, for the top-level usage. */
void lf_verbs_usage(FILE *out);
/* The uploads the daemon serving path has waiting: files and bytes, from
 * its stats. 0, or a negative errno (quietly: no daemon, an older one). */
int lf_stats_pending(const char *path, uint64_t *files, uint64_t *bytes);
/* The pid of the daemon serving path (the process behind its control
 * channel), or -1 (quietly: no daemon, an older one). */
pid_t lf_daemon_pid(const char *path);

#endif
