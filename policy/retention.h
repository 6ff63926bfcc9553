/*
 * retention: the decision "keep or remove this message now" as a pure
 * function of (rule, message state, now). No I/O, no clock: now is passed in.
 * Unknown or contradictory state always means KEEP.
 */
#ifndef POP3D_RETENTION_H
#define POP3D_RETENTION_H

#include <stdint.h>

#include "policy/rules.h"

enum decision { KEEP, DELETE };

enum cause {
	CAUSE_NONE,
	CAUSE_DELE,          /* the client sent DELE and then QUIT */
	CAUSE_DOWNLOAD,      /* retention = delete: downloaded, removed at UPDATE */
	CAUSE_KEEP_DAYS,     /* downloaded and its keep period (promise) is over */
	CAUSE_UNREAD_DAYS    /* never downloaded and older than unread_days */
};

enum when {
	AT_UPDATE,           /* the end of a session that received QUIT */
	AT_SWEEP             /* an expiry sweep of a maildrop nobody holds */
};

struct msg_meta {
	int      dele;            /* AT_UPDATE: marked by DELE in this session */
	int      retr_now;        /* AT_UPDATE: sent whole by RETR in this session */
	int      has_record;      /* a download record exists in the state file */
	int64_t  first_download;  /* record: unix time of the first download */
	int32_t  promised_days;   /* record: days promised then; DAYS_NEVER = forever */
	int64_t  arrived;         /* delivery time (file mtime); -1 when unknown */
	int      seen;            /* carries the maildir S flag */
	int      state_ok;        /* the state file was read without doubt */
	int      unreadable;      /* AT_SWEEP: the sweeping process may not read the file */
};

/*
 * Decide for one message. AT_UPDATE: DELE -> DELETE (CAUSE_DELE); retr_now
 * under retention delete -> DELETE (CAUSE_DOWNLOAD); else KEEP. AT_SWEEP:
 * with a record, DELETE once now >= first_download + max(promised_days,
 * today's period) days (today's period: keep_days, 0 for delete, never for
 * keep-forever; DAYS_NEVER on either side means never); without a record and
 * not seen, DELETE once unread_days > 0 and now >= arrived + unread_days days.
 * KEEP on any doubt: !state_ok, now before first_download or before arrived,
 * arrived unknown, seen without a record, and at a sweep a message due for
 * removal that is unreadable (nobody could have read it: README). *cause is set for DELETE; *why (may
 * be NULL) gets a short static reason for a KEEP caused by doubt, else NULL.
 */
enum decision retention_decide(const struct rule *r, const struct msg_meta *m, int64_t now,
                               enum when when, enum cause *cause, const char **why);

/* "dele", "download", "keep_days", "unread_days" (log and --json names). */
const char *cause_name(enum cause c);

#endif
