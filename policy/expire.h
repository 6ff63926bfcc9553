/*
 * expire: one expiry sweep over every maildrop (or one user's): for each,
 * open it without waiting for its lock, let the policy choose by the rules,
 * remove, and report. Blocking: the daemon runs it on the libuv thread pool,
 * the command line directly.
 */
#ifndef POP3D_EXPIRE_H
#define POP3D_EXPIRE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "policy/rules.h"
#include "server/auth.h"
#include "server/config.h"

struct expire_opts {
	int64_t     now;        /* the clock the rules are applied at (unix time) */
	int         live_clock; /* no --at: now is read again for each user and each removal
	                           batch, so a download recorded during a long sweep is not
	                           taken for a clock gone back */
	int         dry_run;    /* decide and report, remove and write nothing */
	const char *user;       /* one login name; NULL = every user of the users file */
	int         json;       /* one JSON object per line instead of key=value text */
	FILE       *out;        /* report here; NULL = through log_msg (server/log.h) */
};

struct expire_totals {
	size_t   users;           /* maildrops swept (opened; a missing maildir counts) */
	size_t   skipped_locked;  /* maildrops in use by a session: left for the next sweep */
	size_t   failed;          /* users whose sweep failed: path, open, a removal or the state write */
	size_t   removed;         /* messages removed */
	size_t   would_remove;    /* dry_run: messages that would have been removed */
	size_t   kept_doubt;      /* messages kept only because something was in doubt */
	uint64_t bytes;           /* disk octets of the messages removed (or that would be) */
};

/*
 * Sweep every user of users (or only o->user) at o->now: maildrop path from
 * cfg->maildrop_path and the user's home, maildrop_scan_sweep, rules_for,
 * policy_mark_sweep, then per batch maildrop_sweep_claim (in use: skipped,
 * logged "expire skipped user=... reason=in-use"), policy_recheck_sweep and
 * maildrop_sweep_remove unless o->dry_run. Reports one
 * line per message removed (or that would be: user, UIDL, cause, age in days
 * since arrival, days since the first download when recorded, disk size), one
 * line per user (through log_msg at debug level when nothing happened) and a
 * final summary. *t is zeroed first, then filled. Never waits for a lock.
 * Returns 0, 1 when some user failed (t->failed), or -1 when nothing was
 * swept: o->user unknown or an argument missing (reason reported).
 */
int expire_sweep(const struct config *cfg, const struct users *users, const struct rules *rules,
                 const struct expire_opts *o, struct expire_totals *t);

/*
 * Parse a sweep time for the command line: "2027-01-31" (midnight UTC),
 * "2027-01-31T12:00:00Z" (UTC), or relative to now "+10d" / "+36h" (only the
 * units d and h). Years 1970..9999, real calendar dates, no leap second, no
 * spaces, signs or other suffixes. Returns 0 with *out set, or -1.
 */
int expire_parse_at(const char *s, int64_t now, int64_t *out);

#endif
