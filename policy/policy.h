/*
 * policy: decides what UPDATE and an expiry sweep remove, by applying
 * retention_decide (policy/retention.h) to every message of a maildrop.
 * Pure decisions over the message flags and download records; never touches
 * files.
 */
#ifndef POP3D_POLICY_H
#define POP3D_POLICY_H

#include <stddef.h>
#include <stdint.h>

#include "maildrop/maildrop.h"
#include "policy/retention.h"
#include "policy/rules.h"

/* Told about one message kept only because something was in doubt (why: a static string). */
typedef void policy_doubt_fn(void *arg, const struct msg *m, const char *why);

/*
 * At QUIT, before maildrop_update: set MSG_REMOVE on exactly the messages
 * UPDATE must remove (retention_decide AT_UPDATE: DELE, and downloads under
 * retention "delete") and clear it on every other one. A message marked with
 * DELE is always removed. Also sets md->now = now and md->promise_days =
 * rule_promise_days(r), what maildrop_update records at a first download.
 * r == NULL (no rule known): DELE alone removes, and first downloads are
 * recorded with DAYS_NEVER (on doubt keep). kept (may be NULL) is called with
 * arg for every message kept only because of a doubt, so the caller can log it.
 */
void policy_mark_update(struct maildrop *md, const struct rule *r, int64_t now,
                        policy_doubt_fn *kept, void *arg);

/*
 * For an expiry sweep of a maildrop from maildrop_scan_sweep: set MSG_REMOVE
 * on exactly the messages retention_decide AT_SWEEP removes at now, clear it
 * on every other one, and when causes is not NULL set causes[i] (md->n
 * entries) to the cause, CAUSE_NONE for a kept message.
 */
void policy_mark_sweep(struct maildrop *md, const struct rule *r, int64_t now, enum cause *causes);

/*
 * After maildrop_sweep_claim looked at the state and the candidates again:
 * decide again for every message still flagged MSG_REMOVE and drop the flag
 * (causes[i] = CAUSE_NONE) where the answer is now KEEP; never adds a flag,
 * so only what was due before and is still due now goes. Returns how many
 * remain flagged.
 */
size_t policy_recheck_sweep(struct maildrop *md, const struct rule *r, int64_t now,
                            enum cause *causes);

/*
 * What retention_decide sees of msgs[i] at a sweep: the download record,
 * arrived = mtime (-1 when negative), seen = the ":2," flags contain 'S',
 * state_ok = md->state_ok, unreadable = MSG_UNREADABLE; dele and retr_now are 0.
 */
void policy_sweep_meta(const struct maildrop *md, size_t i, struct msg_meta *out);

#endif
