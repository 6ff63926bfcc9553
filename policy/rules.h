/*
 * rules: the retention policy table compiled from the config: defaults, then
 * per-domain, then per-user overrides, resolved field by field; and the
 * RFC 2449 EXPIRE / LOGIN-DELAY values clients are told.
 */
#ifndef POP3D_RULES_H
#define POP3D_RULES_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "server/config.h"
#include "server/diag.h"

#define DAYS_NEVER (-1)

/* The effective rule for one user. */
struct rule {
	enum retention retention;     /* RET_DELETE or RET_KEEP, never RET_UNSET */
	int32_t        keep_days;     /* RET_KEEP: days after first download; DAYS_NEVER = forever */
	int32_t        unread_days;   /* 0 = never; else days after arrival for never-downloaded mail */
	int32_t        login_delay;   /* seconds between two successful logins; 0 = none */
};

struct users;
struct rules;

/*
 * Compile the policy. Resolution for a login "local@domain": start from the
 * defaults, apply the domain entry (case-insensitive match of the part after
 * '@'), then the user entry (exact login name). Applying an entry: when it sets
 * retention, retention AND keep_days are taken from it (keep_days unset there
 * means forever); when it sets only keep_days, keep_days alone is taken; each
 * of unread_days and login_delay is taken when set. Problems (keep_days given
 * with retention = "delete" in the same entry, a domain or user listed twice,
 * a policy.users entry naming nobody in the users file: warning only) are
 * added to d as "FILE:LINE: text". users may be NULL (no user checks).
 * Returns NULL on ENOMEM or when an error (not a warning) was found.
 */
struct rules *rules_build(const struct config *cfg, const struct users *users, struct diag *d);

void rules_free(struct rules *r);

/* The effective rule for login name[0..n). */
void rules_for(const struct rules *r, const char *name, size_t n, struct rule *out);

/*
 * EXPIRE value (RFC 2449 §6.7) for one rule: the smallest number of days
 * after which any of its parts may remove a message: 0 for delete, keep_days,
 * unread_days when set and smaller; DAYS_NEVER when nothing ever removes.
 */
int32_t rule_expire_days(const struct rule *r);

/* What the keep promise recorded at first download is: 0, N, or DAYS_NEVER. */
int32_t rule_promise_days(const struct rule *r);

/*
 * Before login (RFC 2449 §6.5, §6.7): over every user in users (the defaults
 * when there are none); *_varies when the users' values differ.
 */
struct capa_summary {
	int32_t expire;          /* smallest EXPIRE (DAYS_NEVER counts as the largest) */
	int     expire_varies;   /* users differ: append " USER" */
	int32_t login_delay;     /* largest LOGIN-DELAY */
	int     delay_varies;
};

void rules_summary(const struct rules *r, const struct users *users, struct capa_summary *out);

/*
 * Format "EXPIRE 0", "EXPIRE 30", "EXPIRE NEVER" (with " USER" when varies)
 * into buf; returns the length, always NUL-terminated when len > 0.
 */
size_t capa_expire_text(char *buf, size_t len, int32_t days, int varies);

/* Print the effective policy table for pop3d -t (defaults, each domain, each user). */
void rules_print(const struct rules *r, const struct users *users, FILE *f);

#endif
