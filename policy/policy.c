/*
 * policy: chooses the messages UPDATE and an expiry sweep remove. Only sets
 * flags (and what UPDATE records); the removal itself lives in maildrop/,
 * armed by QUIT or by a sweep open, and the decision in retention.c.
 */
#include <string.h>

#include "policy/policy.h"

/* The maildir S flag: "NAME:2,FLAGS" with 'S' among FLAGS. */
static int
seen(const char *file)
{
	const char *colon;

	if (strlen(file) < 4)
		return 0;
	colon = strchr(file + 4, ':');
	if (colon == NULL || colon[1] != '2' || colon[2] != ',')
		return 0;
	return strchr(colon + 3, 'S') != NULL;
}

static void
meta_of(const struct maildrop *md, const struct msg *m, struct msg_meta *out)
{
	memset(out, 0, sizeof *out);
	out->has_record = m->has_record;
	out->first_download = m->first_download;
	out->promised_days = m->promised_days;
	out->arrived = m->mtime >= 0 ? m->mtime : -1;
	out->seen = m->file != NULL && seen(m->file);
	out->state_ok = md->state_ok;
	out->unreadable = (m->flags & MSG_UNREADABLE) != 0;
}

void
policy_sweep_meta(const struct maildrop *md, size_t i, struct msg_meta *out)
{
	meta_of(md, &md->msgs[i], out);
}

void
policy_mark_update(struct maildrop *md, const struct rule *r, int64_t now,
                   policy_doubt_fn *kept, void *arg)
{
	struct msg_meta m;
	enum cause cause;
	const char *why;
	size_t i;
	int remove;

	md->now = now;
	md->promise_days = r != NULL ? rule_promise_days(r) : DAYS_NEVER;
	for (i = 0; i < md->n; i++) {
		struct msg *msg = &md->msgs[i];

		/* The client's DELE is honoured whatever the rule says (RFC 1939 §6). */
		remove = (msg->flags & MSG_DELE) != 0;
		if (!remove && r != NULL) {
			meta_of(md, msg, &m);
			m.dele = 0;
			m.retr_now = (msg->flags & MSG_RETR) != 0;
			cause = CAUSE_NONE;
			why = NULL;
			remove = retention_decide(r, &m, now, AT_UPDATE, &cause, &why) == DELETE;
			if (!remove && why != NULL && kept != NULL)
				kept(arg, msg, why);
		}
		if (remove)
			msg->flags |= MSG_REMOVE;
		else
			msg->flags &= ~MSG_REMOVE;
	}
}

void
policy_mark_sweep(struct maildrop *md, const struct rule *r, int64_t now, enum cause *causes)
{
	struct msg_meta m;
	enum cause cause;
	size_t i;
	int remove;

	for (i = 0; i < md->n; i++) {
		struct msg *msg = &md->msgs[i];

		meta_of(md, msg, &m);
		cause = CAUSE_NONE;
		remove = r != NULL && retention_decide(r, &m, now, AT_SWEEP, &cause, NULL) == DELETE;
		if (remove)
			msg->flags |= MSG_REMOVE;
		else
			msg->flags &= ~MSG_REMOVE;
		if (causes != NULL)
			causes[i] = remove ? cause : CAUSE_NONE;
	}
}

size_t
policy_recheck_sweep(struct maildrop *md, const struct rule *r, int64_t now, enum cause *causes)
{
	struct msg_meta m;
	enum cause cause;
	size_t i, left = 0;

	for (i = 0; i < md->n; i++) {
		struct msg *msg = &md->msgs[i];

		if (!(msg->flags & MSG_REMOVE))
			continue;
		meta_of(md, msg, &m);
		cause = CAUSE_NONE;
		if (r == NULL || retention_decide(r, &m, now, AT_SWEEP, &cause, NULL) != DELETE) {
			msg->flags &= ~MSG_REMOVE;
			cause = CAUSE_NONE;
		} else {
			left++;
		}
		if (causes != NULL)
			causes[i] = cause;
	}
	return left;
}
