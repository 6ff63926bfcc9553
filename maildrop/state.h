/*
 * state: the download state ROOT/pop3d.state, private to maildrop/. It keeps,
 * per UIDL, when a message was first downloaded and how many days were
 * promised then, plus the last successful login. Several servers sharing the
 * maildir read and write it only under the maildrop lock.
 *
 * Format (text, every line ends with LF, fields separated by one space):
 *   pop3d-state 1
 *   last_login <unix>
 *   <uidl> <first_download_unix> <promised_days>
 * where uidl is 1..70 octets of 0x21..0x7E, the times are decimal without a
 * sign or leading zeros, and promised_days is "-1" (forever) or 0..INT32_MAX.
 *
 * The file lives in the user's maildir and is untrusted: a file over
 * MD_STATE_FILE_MAX, a wrong version line, or any line that does not parse
 * strictly (or a UIDL given twice) puts the whole file in doubt. A doubtful
 * file is never overwritten: it is renamed aside to pop3d.state.bad-<unix>.
 */
#ifndef POP3D_MAILDROP_STATE_H
#define POP3D_MAILDROP_STATE_H

#include "maildrop/maildrop.h"

#define MD_STATE_FILE     "pop3d.state"
#define MD_STATE_VERSION  "pop3d-state 1"
/*
 * A record line is at most 70 + 1 + 19 + 1 + 10 + 1 = 102 octets, so the
 * records of MAILDROP_MSGS_MAX messages fit in about 98 MiB: whatever is
 * larger was not written by us, and is not read.
 */
#define MD_STATE_FILE_MAX (128u * 1024 * 1024)

/*
 * Read ROOT/pop3d.state (call with the lock held) and fill md->state_ok,
 * md->last_login and every msgs[i].has_record / first_download /
 * promised_days by UIDL. A missing file: state_ok = 1, no records. A file in
 * doubt (or one that cannot be read): state_ok = 0, no message has a record,
 * last_login = 0, and the reason is written into md->err; when the cause was
 * an I/O error (open, stat, read, memory) rather than the content,
 * md->state_unread is set too. Returns 0 when state_ok, -1 otherwise.
 */
int md_state_read(struct maildrop *md);

/*
 * Replace ROOT/pop3d.state with md->last_login and one record for every
 * listed message with has_record, plus the file's records of unlisted UIDLs
 * (a listing can miss a message: renamed while it was taken, unreadable,
 * beyond MAILDROP_MSGS_MAX, delivered after a sweep's listing). Only a
 * sweep, once, drops unlisted records: those whose message no name in new/
 * or cur/ has in a pass during which neither folder changed. Crash-safe:
 * ROOT/tmp/pop3d.state.
 * PID.RANDOM is written, fsynced, renamed over, and ROOT is fsynced. When
 * md->state_ok is 0 the old file is first renamed to pop3d.state.bad-<unix>
 * (noted in md->err); if that fails nothing is written. When
 * md->state_unread is set, nothing is written or renamed (-1). Call with the lock
 * held. Returns 0 (and sets md->state_ok), or -1 with a reason in md->err;
 * the old file is then unchanged.
 */
int md_state_write(struct maildrop *md);

/*
 * In maildir.c: call fn with the UIDL (NUL-terminated, n octets) of every
 * name in ROOT/new and ROOT/cur but dot files, whatever its flags: what
 * exists now, for records the listing does not hold. 0; 1 when a folder
 * changed during its pass (a name may have been missed); -1 with errno set
 * when a folder could not be read (a missing folder holds nothing).
 */
int md_each_uidl(const char *root, void (*fn)(const char *uidl, size_t n, void *arg), void *arg);

#endif
