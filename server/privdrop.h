/*
 * privdrop: give up root once the listeners are bound and the TLS keys read:
 * supplementary groups, then gid, then uid (setgroups -> setresgid ->
 * setresuid), then prove root cannot come back. Fail closed: on any doubt the
 * caller exits instead of serving half-dropped.
 */
#ifndef POP3D_PRIVDROP_H
#define POP3D_PRIVDROP_H

#include <stddef.h>
#include <sys/types.h>

#include "server/config.h"

#define PRIVDROP_MAX_GROUPS 256   /* supplementary groups kept; more is an error, not a cut */

/*
 * Apply the process group of the config (process.user, process.group,
 * process.allow_root). Call it once, after every listener is bound and every
 * key file is read, before the event loop runs and before any thread exists.
 *
 *   euid 0, user set      look the user (and group, default the user's primary
 *                         group) up, set the user's supplementary groups, then
 *                         setresgid and setresuid, then verify with
 *                         privdrop_verify. A user with uid 0 is refused unless
 *                         allow_root.
 *   euid 0, no user       0 when allow_root, else -1 "refusing to serve as
 *                         root: set process.user, or process.allow_root = true".
 *   euid not 0            0 when user (and group) are unset or are the ones the
 *                         process already runs as; else -1 (only root can switch).
 *
 * Returns 0 or -1 with the reason in err (always NUL-terminated when errlen >
 * 0). After -1 the process may have dropped part of its privileges: exit.
 */
int privdrop(const struct process_cfg *p, char *err, size_t errlen);

/* Who the process should become: resolved ids and the supplementary groups. */
struct privdrop_target {
	uid_t        uid;
	gid_t        gid;
	const gid_t *groups;     /* supplementary groups to set (may include gid) */
	size_t       ngroups;
};

/* Who the process is: what getresuid/getresgid/setfsuid/getgroups report. */
struct privdrop_ids {
	uid_t        ruid, euid, suid, fsuid;
	gid_t        rgid, egid, sgid, fsgid;
	const gid_t *groups;
	size_t       ngroups;
};

/*
 * Pure check, no system calls: do the observed ids match the target? Every
 * uid (real, effective, saved, fs) must equal t->uid, every gid t->gid, the
 * supplementary groups must be the same set as t->groups (t->gid may appear in
 * either list only), and gid 0 may appear only when the target itself has it
 * (t->gid == 0 or 0 in t->groups). Returns 0, or -1 naming the first mismatch
 * in err.
 */
int privdrop_check_ids(const struct privdrop_target *t, const struct privdrop_ids *have,
                       char *err, size_t errlen);

/*
 * Read the process's ids into *have (groups into buf, at most nbuf entries)
 * and run privdrop_check_ids; then, unless the target is uid 0, check that
 * setuid(0) and setgid(0) fail and that no capability is left (permitted and
 * effective sets empty). Returns 0 or -1 with the reason in err.
 */
int privdrop_verify(const struct privdrop_target *t, char *err, size_t errlen);

#endif
