/*
 * maildrop: one user's maildir as a POP3 session sees it: the lock, a fixed
 * snapshot of new/ and cur/ with CRLF sizes and UIDLs, and UPDATE.
 * Every function here may block on the file system: call it from the libuv
 * thread pool (uv_queue_work), never from the event loop thread.
 */
#ifndef POP3D_MAILDROP_H
#define POP3D_MAILDROP_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define MSG_DELE    0x01u  /* marked by DELE in this session */
#define MSG_RETR    0x02u  /* sent whole by RETR in this session */
#define MSG_REMOVE  0x04u  /* chosen by policy for removal at UPDATE */
#define MSG_UNREADABLE 0x08u /* sweep: this process may not open the file for reading */
#define UIDL_MAX    70     /* RFC 1939 §7: 1..70 octets in 0x21..0x7E */

/*
 * At most this many messages are listed per session; the rest wait for a
 * later one. Bounds the memory and the worker time of one scan, and is far
 * above what a POP3 client downloads in one session.
 */
#define MAILDROP_MSGS_MAX 1000000u

struct msg {
	char     *file;          /* "new/NAME" or "cur/NAME:2,FLAGS", relative to the root */
	char      uidl[UIDL_MAX + 1];
	uint64_t  size;          /* octets of the CRLF form (what LIST says) */
	uint64_t  disk_size;     /* octets on disk */
	int64_t   mtime;
	unsigned  flags;         /* MSG_* */

	/* From the download state file (ROOT/pop3d.state), keyed by UIDL. */
	int       has_record;     /* downloaded before: first_download/promised_days valid */
	int64_t   first_download; /* unix time of the first download */
	int32_t   promised_days;  /* days promised then; -1 = forever */
};

struct maildrop {
	char       *path;        /* the maildir root */
	int         lock_fd;     /* holds an OFD lock on ROOT/pop3d.lock; -1 once closed */
	struct msg *msgs;        /* sorted by mtime, then by file name */
	size_t      n;
	uint64_t    total;       /* sum of sizes */
	int         quit_seen;   /* set only by maildrop_quit() */
	int         sweep;       /* opened for a sweep: no session, no UPDATE */
	int         absent;      /* sweep: the maildir does not exist (nothing listed) */

	/* Download state (retention policies). */
	int         state_ok;    /* the state file was absent or read without doubt */
	int         state_unread;/* it exists but could not be read (I/O error): never replaced */
	size_t      state_unlisted; /* records of UIDLs not listed, at the last state read */
	int         pruned;      /* sweep: records of messages gone were pruned once already */
	int64_t     last_login;  /* last successful login recorded, 0 when none */
	int32_t     promise_days;/* set by the session before UPDATE: what a first download
	                            records (0 delete, N keep days, -1 forever) */
	int64_t     now;         /* set by the session before UPDATE: the time recorded */
	char        err[256];    /* the last failure, for logs */
};

enum md_status {
	MD_OK,
	MD_INUSE,   /* another session (any process) holds the lock */
	MD_TEMP,    /* temporary failure: I/O error, ENOMEM */
	MD_PERM     /* permanent failure: path not usable (e.g. a file where a folder must be) */
};

/*
 * MD_PERM when an errno from a file operation will recur until someone fixes
 * the file system (permissions, a read-only mount, a file where a folder must
 * be), else MD_TEMP. For the RFC 3206 [SYS/PERM] and [SYS/TEMP] codes.
 */
enum md_status maildrop_errno_status(int e);

/*
 * Expand a maildrop template: %u the login, %n its local part (all of it when
 * there is no '@'), %d its domain ("" without '@'), %h the user's home, %%
 * a percent sign. Returns 0, or -1 when an escape is unknown, %h is used with
 * an empty home, the result is not absolute, or it does not fit outlen.
 * Also -1 when %u or %n would be empty, or %u %n %d would insert "." or ".."
 * or a '/' (a login must never name a folder other than its own).
 */
int maildrop_expand(const char *tmpl, const char *login, const char *home, char *out, size_t outlen);

/* Check a template without a user: 0, or -1 with a reason in err. */
int maildrop_template_check(const char *tmpl, char *err, size_t errlen);

/*
 * Lock and scan the maildir at path, creating it (and new/ cur/ tmp/) with
 * mode 0700 when missing. Only regular files in new/ and cur/ whose names do
 * not start with '.' are listed; tmp/ never is. Sizes come from ",W=" in the
 * name, else from the size cache ROOT/pop3d.cache, else by reading the file
 * once (and the cache is rewritten crash-safely). UIDLs are the part of the
 * name before ":" when 1..70 octets of 0x21..0x7E (and not itself of the form "H" + 40
 * lowercase hex digits, which a hash looks like), else a hash of the name;
 * a base name seen twice is listed once. On MD_OK sets *out; otherwise writes
 * a reason into err.
 */
enum md_status maildrop_open(const char *path, struct maildrop **out, char *err, size_t errlen);

/*
 * The download state ROOT/pop3d.state (see maildrop/state.h for the format)
 * is read by maildrop_open and maildrop_sweep_claim under the lock: it fills
 * md->state_ok, md->last_login and msgs[i].has_record / first_download /
 * promised_days by UIDL. A missing file is state_ok = 1 with no records; a
 * file in doubt (too large, unknown version, any line that does not parse
 * strictly) or one that could not be read (open, stat or read failed) is
 * state_ok = 0, no message has a record, and the reason is in md->err. It is
 * written only by maildrop_update, maildrop_record_login and
 * maildrop_sweep_remove, crash-safely, dropping records of messages no longer
 * listed. A file in doubt is never overwritten but renamed aside to
 * pop3d.state.bad-<unix> first (noted in md->err); a file that could not be
 * read (md->state_unread) is not written at all in this open: an I/O error is
 * no evidence against its content, which may hold the only copy of a promise.
 */

/*
 * For an expiry sweep, in two steps so that a long scan never turns a login
 * away: maildrop_scan_sweep lists the maildrop WITHOUT its lock, then the
 * caller decides, then maildrop_sweep_claim takes the lock (or, for a dry
 * run, only asks whether someone holds it) for the short removal phase and
 * looks at the state and at every candidate again.
 *
 * maildrop_scan_sweep: like maildrop_open, but creates nothing at all (a
 * missing maildir is MD_OK with n = 0 and md->absent; missing new/ or cur/
 * hold no mail), takes no lock (md->lock_fd is -1), reads no message (sizes
 * come from the size cache or ",W=", else the disk size), never writes the
 * size cache, and sets md->sweep. The state file is read without the lock,
 * which is safe because every writer replaces it by rename. maildrop_update
 * refuses such a maildrop; maildrop_sweep_remove is its only way to remove.
 */
enum md_status maildrop_scan_sweep(const char *path, struct maildrop **out, char *err, size_t errlen);

/*
 * Claim a scanned maildrop for the removal phase. A real run takes the lock
 * without waiting more than a login does (held by anyone: MD_INUSE), creating
 * ROOT/pop3d.lock if needed. A dry run creates and holds nothing: it opens an
 * existing lock file read-only and asks whether a lock is held (MD_INUSE), so
 * that it reports what a real run would. Then (both) the state file is read
 * again and every message flagged MSG_REMOVE is looked at again under its
 * listed name: mtime and disk size refreshed, MSG_UNREADABLE set when this
 * process may not open it for reading, and MSG_REMOVE dropped when it is no
 * longer there (removed, or renamed: the next sweep decides on the new name)
 * or cannot be looked at. The caller
 * must decide again on what it finds (policy_recheck_sweep). An absent maildir
 * is MD_OK without a lock. Release with maildrop_unlock (or maildrop_close).
 */
enum md_status maildrop_sweep_claim(struct maildrop *md, int dry_run, char *err, size_t errlen);

/*
 * maildrop_scan_sweep then maildrop_sweep_claim (real run) in one call, with
 * no window between them: for tests and fuzzing. On failure nothing is kept.
 * Sweeps themselves scan first and claim per batch (policy/expire.c).
 */
enum md_status maildrop_open_sweep(const char *path, struct maildrop **out, char *err, size_t errlen);

/*
 * Record a successful login at now (md->last_login, for LOGIN-DELAY) in the
 * state file. Session maildrops only (not a sweep), under the session's lock.
 * Returns 0, or -1 with a reason in md->err (nothing else changes then).
 */
int maildrop_record_login(struct maildrop *md, int64_t now);

/*
 * Open message i for reading. Returns a file descriptor, or -errno. When the
 * file was renamed meanwhile (another program changed its flags or moved it
 * to cur/), finds it again by its base name and updates msgs[i].file.
 */
int maildrop_msg_open(struct maildrop *md, size_t i);

/* Record that QUIT arrived in TRANSACTION state: the only way to arm maildrop_update. */
void maildrop_quit(struct maildrop *md);

struct md_update_result {
	size_t removed;   /* MSG_REMOVE files unlinked (or, in a session, already gone) */
	size_t failed;    /* MSG_REMOVE files that could not be removed */
	size_t failed_perm; /* of those, how many for a reason that will recur (EACCES, EROFS) */
	size_t seen;      /* MSG_RETR files moved to cur/ with the S flag */
	int    state_failed; /* first downloads could not be recorded (md->err says why) */
};

/*
 * UPDATE (RFC 1939 §6). First the state file: a record {md->now,
 * md->promise_days} for every MSG_RETR message that is not MSG_REMOVE and has
 * no record yet (a first download; an existing record never changes), and no
 * record for MSG_REMOVE messages. md->now <= 0 (not set) records the current
 * time. Then unlink exactly the messages flagged MSG_REMOVE, move every other
 * MSG_RETR message to cur/ with the S flag, and fsync new/ and cur/. When the
 * state cannot be written (reason in md->err), MSG_DELE messages are still
 * removed (the client asked) but messages flagged MSG_REMOVE by the policy
 * alone are kept and counted in res->failed. Refuses (returns -1, removes and
 * writes nothing) unless maildrop_quit was called, and for a sweep maildrop.
 * Returns 0 when every removal succeeded, 1 when some failed (res->failed).
 */
int maildrop_update(struct maildrop *md, struct md_update_result *res);

/*
 * Expiry: unlink exactly the messages flagged MSG_REMOVE of a sweep maildrop
 * claimed by maildrop_sweep_claim (refuses anything else: -1, nothing
 * removed), then write the state without their records and fsync new/ and
 * cur/. A message that cannot be removed keeps its record and loses
 * MSG_REMOVE (counted in failed); one no longer under its listed name is left
 * alone and loses MSG_REMOVE too (not a failure), so afterwards MSG_REMOVE
 * marks exactly what went. With nothing to remove, the state is still written
 * once when it holds records of unlisted UIDLs (state.h: a sweep prunes). Refuses too when md->state_ok is 0
 * (every sweep removal is a time rule). Returns 0, 1 when some removal
 * (res->failed) or the state write (md->err) failed, -1 when refused.
 */
int maildrop_sweep_remove(struct maildrop *md, struct md_update_result *res);

/*
 * Release the lock but keep the snapshot (UPDATE is over: RFC 1939 §6 frees
 * the maildrop before the +OK, so a client that logs in again at once is not
 * refused with [IN-USE]). Nothing may be read or changed through md after it.
 */
void maildrop_unlock(struct maildrop *md);

/*
 * Sweep only (md->sweep, lock held): remove pop3d's own temporary files left in
 * tmp/ by a writer that died (they are only written under the lock, so any
 * found now are stale). Never called for a dry run.
 */
void maildrop_sweep_tidy(struct maildrop *md);

/* Release the lock and free everything; NULL is fine. Removes nothing. */
void maildrop_close(struct maildrop *md);

/* Counting CRLF octets across chunks: each LF not preceded by CR counts 2. */
struct crlf_count {
	uint64_t size;
	int      prev_cr;
};

void crlf_count_update(struct crlf_count *c, const char *p, size_t n);

#endif
