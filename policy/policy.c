/*
 * policy: chooses the messages UPDATE removes. Only sets flags; the removal
 * itself lives in maildrop/ and is armed by QUIT alone.
 */
#include "policy/policy.h"

void
policy_mark_update(struct maildrop *md, time_t now)
{
	size_t i;

	(void)now;
	for (i = 0; i < md->n; i++) {
		if (md->msgs[i].flags & MSG_DELE)
			md->msgs[i].flags |= MSG_REMOVE;
		else
			md->msgs[i].flags &= ~MSG_REMOVE;
	}
}
