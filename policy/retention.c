/*
 * retention: owns the keep-or-remove arithmetic over (rule, message state, now).
 * Never does I/O, never reads the clock, never allocates; any doubt means KEEP.
 */
#include "policy/retention.h"

#include <stddef.h>
#include <stdint.h>

#define DAY_SECONDS ((int64_t)86400)   /* a "day" of keep_days/unread_days: 24 h, no calendar */

/*
 * Cause naming, the same at UPDATE and at a sweep: a downloaded message goes
 * with CAUSE_DOWNLOAD when the period that protected it was 0 days (retention
 * "delete", or keep_days 0, with a promise of 0): the download alone removed
 * it. It goes with CAUSE_KEEP_DAYS when a period of 1 day or more ran out. So
 * a message downloaded under "delete" that survived its UPDATE (crash, lost
 * connection after QUIT) is removed by the next sweep as CAUSE_DOWNLOAD.
 */

static enum decision doubt(const char **why, const char *reason)
{
	if (why != NULL)
		*why = reason;
	return KEEP;
}

/* The longer of two periods; DAYS_NEVER on either side wins. */
static int32_t period_max(int32_t a, int32_t b)
{
	if (a < 0 || b < 0)
		return DAYS_NEVER;
	return a > b ? a : b;
}

/* 1 when days whole days have passed since start; needs 0 <= start <= now, days >= 0. */
static int days_over(int64_t start, int64_t now, int32_t days)
{
	return now - start >= (int64_t)days * DAY_SECONDS;
}

/* A message with a download record: the promise made then, or today's rule if longer. */
static enum decision decide_record(const struct rule *r, const struct msg_meta *m, int64_t now,
                                   enum cause *cause, const char **why)
{
	int32_t period;

	if (m->first_download < 0)
		return doubt(why, "download record has an impossible time");
	if (m->promised_days < 0 && m->promised_days != DAYS_NEVER)
		return doubt(why, "download record has an impossible promise");
	if (now < m->first_download)
		return doubt(why, "clock is before the first download");
	period = period_max(m->promised_days, rule_promise_days(r));
	if (period < 0 || !days_over(m->first_download, now, period))
		return KEEP;
	*cause = period == 0 ? CAUSE_DOWNLOAD : CAUSE_KEEP_DAYS;
	return DELETE;
}

/*
 * AT_UPDATE, beyond what rules.h/retention.h spell out: a RETR under
 * retention "delete" still honours an older record's promise (a message first
 * downloaded under keep_days 30 is not removed by a later download after the
 * admin switched to "delete"), so the state file must have been read without
 * doubt. DELE needs nothing: it is the client's explicit wish.
 */
static enum decision decide_update(const struct rule *r, const struct msg_meta *m, int64_t now,
                                   enum cause *cause, const char **why)
{
	if (m->dele) {
		*cause = CAUSE_DELE;
		return DELETE;
	}
	if (!m->retr_now || r->retention != RET_DELETE)
		return KEEP;
	if (!m->state_ok)
		return doubt(why, "state file not read: an earlier promise may exist");
	if (m->has_record)
		return decide_record(r, m, now, cause, why);
	*cause = CAUSE_DOWNLOAD;
	return DELETE;
}

static enum decision decide_sweep(const struct rule *r, const struct msg_meta *m, int64_t now,
                                  enum cause *cause, const char **why)
{
	if (!m->state_ok)
		return doubt(why, "state file not read");
	if (m->has_record)
		return decide_record(r, m, now, cause, why);
	if (m->seen)
		return doubt(why, "seen flag without a download record");
	if (r->unread_days <= 0)
		return KEEP;
	if (m->arrived < 0)
		return doubt(why, "arrival time unknown");
	if (now < m->arrived)
		return doubt(why, "clock is before the arrival");
	if (!days_over(m->arrived, now, r->unread_days))
		return KEEP;
	*cause = CAUSE_UNREAD_DAYS;
	return DELETE;
}

enum decision retention_decide(const struct rule *r, const struct msg_meta *m, int64_t now,
                               enum when when, enum cause *cause, const char **why)
{
	enum cause scratch;

	if (cause == NULL)
		cause = &scratch;
	*cause = CAUSE_NONE;
	if (why != NULL)
		*why = NULL;
	if (r == NULL || m == NULL)
		return doubt(why, "no rule or no message state");
	switch (when) {
	case AT_UPDATE:
		return decide_update(r, m, now, cause, why);
	case AT_SWEEP:
		/* Checked only once the time rules say remove: the sweep opens candidates only. */
		if (decide_sweep(r, m, now, cause, why) == KEEP)
			return KEEP;
		if (m->unreadable) {
			*cause = CAUSE_NONE;
			return doubt(why, "message file cannot be read");
		}
		return DELETE;
	}
	return doubt(why, "unknown moment");
}

const char *cause_name(enum cause c)
{
	switch (c) {
	case CAUSE_NONE:
		return "none";
	case CAUSE_DELE:
		return "dele";
	case CAUSE_DOWNLOAD:
		return "download";
	case CAUSE_KEEP_DAYS:
		return "keep_days";
	case CAUSE_UNREAD_DAYS:
		return "unread_days";
	}
	return "unknown";
}
