/*
 * Unit tests for policy/rules.c: resolution order, domain matching, EXPIRE and
 * LOGIN-DELAY arithmetic, the pre-login summary, build problems and the -t table.
 * Config and users are built by hand; tests only through policy/rules.h.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "policy/rules.h"
#include "server/auth.h"

#define U POLICY_UNSET

struct fixture {
	struct config           cfg;
	struct policy_rule_cfg  dom[128];
	struct policy_rule_cfg  usr[16];
	char                    names[128][24];
	struct user             uv[16];
	struct users            users;
	struct diag             d;
	struct rules           *r;
};

static struct policy_rule_cfg level(const char *match, int line, enum retention ret,
                                    int32_t keep, int32_t unread, int32_t delay)
{
	struct policy_rule_cfg c;

	c.match = (char *)(uintptr_t)match;   /* the config owns it; rules copies it */
	c.line = line;
	c.retention = ret;
	c.keep_days = keep;
	c.unread_days = unread;
	c.login_delay = delay;
	return c;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (f == NULL)
		return -1;
	f->cfg.path = (char *)(uintptr_t)"pop3d.conf";
	f->cfg.policy.def = level(NULL, 0, RET_UNSET, U, U, U);
	f->cfg.policy.domains = f->dom;
	f->cfg.policy.users = f->usr;
	f->users.v = f->uv;
	f->users.path = (char *)(uintptr_t)"users";
	f->users.refs = 1;   /* hand-built: never users_unref */
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	rules_free(f->r);
	diag_free(&f->d);
	free(f);
	return 0;
}

static void add_domain(struct fixture *f, struct policy_rule_cfg c)
{
	f->dom[f->cfg.policy.ndomains++] = c;
}

static void add_override(struct fixture *f, struct policy_rule_cfg c)
{
	f->usr[f->cfg.policy.nusers++] = c;
}

/* Users must be added in strcmp order, as users_load sorts them. */
static void add_user(struct fixture *f, const char *name)
{
	if (f->users.n > 0)
		assert_true(strcmp(f->uv[f->users.n - 1].name, name) < 0);
	f->uv[f->users.n].name = (char *)(uintptr_t)name;
	f->uv[f->users.n].secret = (char *)(uintptr_t)"x";
	f->uv[f->users.n].home = (char *)(uintptr_t)"";
	f->uv[f->users.n].line = (int)f->users.n + 1;
	f->users.n++;
}

static void build_ok(struct fixture *f)
{
	f->r = rules_build(&f->cfg, f->users.n > 0 ? &f->users : NULL, &f->d);
	assert_non_null(f->r);
	assert_int_equal(f->d.oom, 0);
}

static struct rule rule_of(const struct fixture *f, const char *name)
{
	struct rule r;

	memset(&r, 0x5a, sizeof r);
	rules_for(f->r, name, strlen(name), &r);
	return r;
}

static void assert_rule(struct rule r, enum retention ret, int32_t keep, int32_t unread,
                        int32_t delay)
{
	assert_int_equal(r.retention, ret);
	assert_int_equal(r.keep_days, keep);
	assert_int_equal(r.unread_days, unread);
	assert_int_equal(r.login_delay, delay);
}

/* 1 when some diag entry contains a and, unless NULL, b. */
static int diag_has(const struct diag *d, const char *a, const char *b)
{
	size_t i;

	for (i = 0; i < d->n; i++)
		if (strstr(d->msg[i], a) != NULL && (b == NULL || strstr(d->msg[i], b) != NULL))
			return 1;
	return 0;
}

static int32_t expire_of(struct rule r)
{
	return rule_expire_days(&r);
}

/* ---- resolution ---- */

static void test_nothing_configured(void **state)
{
	struct fixture *f = *state;

	build_ok(f);
	assert_int_equal(f->d.n, 0);
	assert_rule(rule_of(f, "bob@example.org"), RET_KEEP, DAYS_NEVER, 0, 0);
	assert_rule(rule_of(f, "bob"), RET_KEEP, DAYS_NEVER, 0, 0);
	assert_int_equal(expire_of(rule_of(f, "bob")), DAYS_NEVER);
}

static void test_order_default_domain_user(void **state)
{
	struct fixture *f = *state;

	f->cfg.policy.def = level(NULL, 3, RET_KEEP, 30, 5, 60);
	add_domain(f, level("example.org", 10, RET_DELETE, U, U, U));
	add_override(f, level("bob@example.org", 20, RET_UNSET, U, U, 300));
	add_override(f, level("carol@other.org", 21, RET_UNSET, U, 0, U));
	build_ok(f);
	assert_int_equal(f->d.n, 0);
	/* user over domain over default, field by field */
	assert_rule(rule_of(f, "bob@example.org"), RET_DELETE, DAYS_NEVER, 5, 300);
	assert_rule(rule_of(f, "alice@example.org"), RET_DELETE, DAYS_NEVER, 5, 60);
	assert_rule(rule_of(f, "carol@other.org"), RET_KEEP, 30, 0, 60);
	assert_rule(rule_of(f, "dave@other.org"), RET_KEEP, 30, 5, 60);
	assert_rule(rule_of(f, "eve"), RET_KEEP, 30, 5, 60);
}

static void test_retention_resets_keep_days(void **state)
{
	struct fixture *f = *state;

	f->cfg.policy.def = level(NULL, 3, RET_KEEP, 30, U, U);
	add_domain(f, level("a.org", 10, RET_UNSET, 10, U, U));     /* keep_days alone */
	add_domain(f, level("b.org", 11, RET_KEEP, U, U, U));       /* retention alone: forever */
	add_domain(f, level("c.org", 12, RET_KEEP, 7, U, U));
	add_override(f, level("x@a.org", 20, RET_KEEP, U, U, U));  /* resets the domain's 10 */
	add_override(f, level("y@b.org", 21, RET_UNSET, 3, U, U));  /* keep_days alone over forever */
	add_override(f, level("z@c.org", 22, RET_DELETE, U, U, U));
	build_ok(f);
	assert_int_equal(f->d.n, 0);
	assert_rule(rule_of(f, "w@a.org"), RET_KEEP, 10, 0, 0);
	assert_rule(rule_of(f, "w@b.org"), RET_KEEP, DAYS_NEVER, 0, 0);
	assert_rule(rule_of(f, "w@c.org"), RET_KEEP, 7, 0, 0);
	assert_rule(rule_of(f, "x@a.org"), RET_KEEP, DAYS_NEVER, 0, 0);
	assert_rule(rule_of(f, "y@b.org"), RET_KEEP, 3, 0, 0);
	assert_rule(rule_of(f, "z@c.org"), RET_DELETE, DAYS_NEVER, 0, 0);
}

static void test_domain_case_insensitive(void **state)
{
	struct fixture *f = *state;

	add_domain(f, level("Example.ORG", 10, RET_DELETE, U, U, U));
	add_override(f, level("bob@example.org", 20, RET_UNSET, U, U, 300));
	build_ok(f);
	assert_int_equal(rule_of(f, "a@example.org").retention, RET_DELETE);
	assert_int_equal(rule_of(f, "a@EXAMPLE.org").retention, RET_DELETE);
	assert_int_equal(rule_of(f, "a@eXaMpLe.OrG").retention, RET_DELETE);
	assert_int_equal(rule_of(f, "a@example.org.").retention, RET_KEEP);
	assert_int_equal(rule_of(f, "a@xexample.org").retention, RET_KEEP);
	assert_int_equal(rule_of(f, "a@example.or").retention, RET_KEEP);
	/* user names are exact */
	assert_int_equal(rule_of(f, "bob@example.org").login_delay, 300);
	assert_int_equal(rule_of(f, "Bob@example.org").login_delay, 0);
	assert_int_equal(rule_of(f, "bob@EXAMPLE.org").login_delay, 0);
}

static void test_domain_after_last_at(void **state)
{
	struct fixture *f = *state;
	struct rule r;

	add_domain(f, level("example.org", 10, RET_DELETE, U, U, U));
	add_domain(f, level("b", 11, RET_KEEP, 9, U, U));
	build_ok(f);
	assert_int_equal(rule_of(f, "a@b@example.org").retention, RET_DELETE);
	assert_int_equal(rule_of(f, "a@example.org@b").keep_days, 9);
	assert_int_equal(rule_of(f, "example.org").retention, RET_KEEP);    /* no '@' */
	assert_int_equal(rule_of(f, "bob@").retention, RET_KEEP);           /* empty domain */
	assert_int_equal(rule_of(f, "@example.org").retention, RET_DELETE);
	/* only name[0..n) counts: no NUL needed, nothing read past n */
	rules_for(f->r, "bob@example.orgXYZ", 15, &r);
	assert_int_equal(r.retention, RET_DELETE);
	rules_for(f->r, "bob@example.org", 14, &r);
	assert_int_equal(r.retention, RET_KEEP);
	rules_for(f->r, "", 0, &r);
	assert_int_equal(r.retention, RET_KEEP);
}

/* Enough domains that the lookup must really search. */
static void test_many_domains(void **state)
{
	struct fixture *f = *state;
	char login[40];
	int i;

	for (i = 0; i < 100; i++) {
		snprintf(f->names[i], sizeof f->names[i], "D%d.example", i % 1000);
		add_domain(f, level(f->names[i], 100 + i, RET_UNSET, U, i + 1, U));
	}
	build_ok(f);
	assert_int_equal(f->d.n, 0);
	for (i = 0; i < 100; i++) {
		snprintf(login, sizeof login, "u@d%d.example", i);
		assert_int_equal(rule_of(f, login).unread_days, i + 1);
	}
	assert_int_equal(rule_of(f, "u@d100.example").unread_days, 0);
}

/* ---- EXPIRE ---- */

static void test_expire_days(void **state)
{
	struct rule r;

	(void)state;
	r = (struct rule){ RET_DELETE, DAYS_NEVER, 0, 0 };
	assert_int_equal(rule_expire_days(&r), 0);
	assert_int_equal(rule_promise_days(&r), 0);
	r = (struct rule){ RET_KEEP, 30, 0, 0 };
	assert_int_equal(rule_expire_days(&r), 30);
	assert_int_equal(rule_promise_days(&r), 30);
	r = (struct rule){ RET_KEEP, DAYS_NEVER, 0, 0 };
	assert_int_equal(rule_expire_days(&r), DAYS_NEVER);
	assert_int_equal(rule_promise_days(&r), DAYS_NEVER);
	r = (struct rule){ RET_KEEP, DAYS_NEVER, 10, 0 };
	assert_int_equal(rule_expire_days(&r), 10);
	assert_int_equal(rule_promise_days(&r), DAYS_NEVER);   /* unread_days is no promise */
	r = (struct rule){ RET_KEEP, 30, 10, 0 };
	assert_int_equal(rule_expire_days(&r), 10);
	assert_int_equal(rule_promise_days(&r), 30);
	r = (struct rule){ RET_KEEP, 5, 10, 0 };
	assert_int_equal(rule_expire_days(&r), 5);
	r = (struct rule){ RET_KEEP, 10, 10, 0 };
	assert_int_equal(rule_expire_days(&r), 10);
	r = (struct rule){ RET_DELETE, DAYS_NEVER, 10, 0 };
	assert_int_equal(rule_expire_days(&r), 0);
	r = (struct rule){ RET_KEEP, 0, 10, 0 };
	assert_int_equal(rule_expire_days(&r), 0);
	assert_int_equal(rule_promise_days(&r), 0);
	/* a rule with no retention promises nothing it could break */
	r = (struct rule){ RET_UNSET, 3, 0, 0 };
	assert_int_equal(rule_promise_days(&r), DAYS_NEVER);
}

static void test_capa_expire_text(void **state)
{
	char buf[32];

	(void)state;
	assert_int_equal(capa_expire_text(buf, sizeof buf, 0, 0), 8);
	assert_string_equal(buf, "EXPIRE 0");
	assert_int_equal(capa_expire_text(buf, sizeof buf, 30, 0), 9);
	assert_string_equal(buf, "EXPIRE 30");
	assert_int_equal(capa_expire_text(buf, sizeof buf, DAYS_NEVER, 0), 12);
	assert_string_equal(buf, "EXPIRE NEVER");
	assert_int_equal(capa_expire_text(buf, sizeof buf, 0, 1), 13);
	assert_string_equal(buf, "EXPIRE 0 USER");
	assert_int_equal(capa_expire_text(buf, sizeof buf, DAYS_NEVER, 1), 17);
	assert_string_equal(buf, "EXPIRE NEVER USER");
	assert_int_equal(capa_expire_text(buf, sizeof buf, 36500, 1), 17);
	assert_string_equal(buf, "EXPIRE 36500 USER");
	/* fits exactly / one byte short: the return is what was written */
	assert_int_equal(capa_expire_text(buf, 10, 30, 0), 9);
	assert_string_equal(buf, "EXPIRE 30");
	assert_int_equal(capa_expire_text(buf, 9, 30, 0), 8);
	assert_string_equal(buf, "EXPIRE 3");
	assert_int_equal(capa_expire_text(buf, 1, 30, 0), 0);
	assert_string_equal(buf, "");
	assert_int_equal(capa_expire_text(buf, 0, 30, 0), 0);
}

/* ---- summary ---- */

static void test_summary_varies(void **state)
{
	struct fixture *f = *state;
	struct capa_summary s;
	char buf[32];

	f->cfg.policy.def = level(NULL, 3, RET_KEEP, 30, U, 60);
	add_domain(f, level("example.org", 10, RET_DELETE, U, U, U));
	add_override(f, level("carol@other.org", 20, RET_UNSET, U, U, 300));
	add_user(f, "alice@example.org");
	add_user(f, "bob@other.org");
	add_user(f, "carol@other.org");
	build_ok(f);
	assert_int_equal(f->d.n, 0);
	rules_summary(f->r, &f->users, &s);
	assert_int_equal(s.expire, 0);
	assert_int_equal(s.expire_varies, 1);
	assert_int_equal(s.login_delay, 300);
	assert_int_equal(s.delay_varies, 1);
	capa_expire_text(buf, sizeof buf, s.expire, s.expire_varies);
	assert_string_equal(buf, "EXPIRE 0 USER");
}

/* NEVER counts as the largest: one user with 10 days beats everyone's NEVER. */
static void test_summary_never_is_largest(void **state)
{
	struct fixture *f = *state;
	struct capa_summary s;

	add_override(f, level("b", 20, RET_UNSET, U, 10, U));
	add_user(f, "a");
	add_user(f, "b");
	add_user(f, "c");
	build_ok(f);
	rules_summary(f->r, &f->users, &s);
	assert_int_equal(s.expire, 10);
	assert_int_equal(s.expire_varies, 1);
	assert_int_equal(s.login_delay, 0);
	assert_int_equal(s.delay_varies, 0);
}

static void test_summary_all_equal(void **state)
{
	struct fixture *f = *state;
	struct capa_summary s;
	char buf[32];

	f->cfg.policy.def = level(NULL, 3, RET_KEEP, 30, U, 60);
	add_domain(f, level("example.org", 10, RET_KEEP, 30, U, U));   /* same result */
	add_user(f, "alice@example.org");
	add_user(f, "bob@other.org");
	build_ok(f);
	rules_summary(f->r, &f->users, &s);
	assert_int_equal(s.expire, 30);
	assert_int_equal(s.expire_varies, 0);
	assert_int_equal(s.login_delay, 60);
	assert_int_equal(s.delay_varies, 0);
	capa_expire_text(buf, sizeof buf, s.expire, s.expire_varies);
	assert_string_equal(buf, "EXPIRE 30");
}

/*
 * Only users who can log in count (RFC 2449: USER "when they differ between
 * users"): defaults nobody gets do not make the users differ. A user added to
 * the users file later comes with a reload, which recomputes the summary.
 */
static void test_summary_counts_users_only(void **state)
{
	struct fixture *f = *state;
	struct capa_summary s;

	f->cfg.policy.def = level(NULL, 3, RET_DELETE, U, U, U);
	add_override(f, level("a", 20, RET_KEEP, 30, U, U));
	add_user(f, "a");
	build_ok(f);
	rules_summary(f->r, &f->users, &s);
	assert_int_equal(s.expire, 30);
	assert_int_equal(s.expire_varies, 0);
	/* without users: the defaults alone */
	rules_summary(f->r, NULL, &s);
	assert_int_equal(s.expire, 0);
	assert_int_equal(s.expire_varies, 0);
}

/* ---- build problems ---- */

static void test_keep_days_with_delete_is_error(void **state)
{
	struct fixture *f = *state;

	add_domain(f, level("example.org", 12, RET_DELETE, 7, U, U));
	f->r = rules_build(&f->cfg, NULL, &f->d);
	assert_null(f->r);
	assert_true(diag_has(&f->d, "pop3d.conf:12: ", "keep_days"));
	diag_free(&f->d);
	f->cfg.policy.ndomains = 0;
	f->cfg.policy.def = level(NULL, 4, RET_DELETE, 0, U, U);
	f->r = rules_build(&f->cfg, NULL, &f->d);
	assert_null(f->r);
	assert_true(diag_has(&f->d, "pop3d.conf:4: ", "keep_days"));
}

static void test_duplicates_are_errors(void **state)
{
	struct fixture *f = *state;

	add_domain(f, level("example.org", 10, RET_DELETE, U, U, U));
	add_domain(f, level("other.org", 11, RET_DELETE, U, U, U));
	add_domain(f, level("EXAMPLE.org", 14, RET_KEEP, U, U, U));
	add_override(f, level("bob", 20, RET_KEEP, U, U, U));
	add_override(f, level("bob", 22, RET_KEEP, U, U, U));
	add_override(f, level("Bob", 23, RET_KEEP, U, U, U));   /* users are exact: no clash */
	f->r = rules_build(&f->cfg, NULL, &f->d);
	assert_null(f->r);
	assert_int_equal(f->d.n, 2);
	assert_true(diag_has(&f->d, "pop3d.conf:14: ", "line 10"));
	assert_true(diag_has(&f->d, "pop3d.conf:22: ", "line 20"));
}

static void test_bad_entries_are_errors(void **state)
{
	struct fixture *f = *state;

	add_domain(f, level("a@example.org", 10, RET_DELETE, U, U, U));
	add_domain(f, level("", 11, RET_DELETE, U, U, U));
	add_domain(f, level(NULL, 12, RET_DELETE, U, U, U));
	add_override(f, level("x", 20, RET_KEEP, -3, U, U));
	add_override(f, level("y", 21, RET_KEEP, U, 36501, U));
	add_override(f, level("z", 22, RET_KEEP, U, U, 86401));
	add_override(f, level("w", 23, (enum retention)9, U, U, U));
	f->r = rules_build(&f->cfg, NULL, &f->d);
	assert_null(f->r);
	assert_true(diag_has(&f->d, "pop3d.conf:10: ", "'@'"));
	assert_true(diag_has(&f->d, "pop3d.conf:11: ", "name"));
	assert_true(diag_has(&f->d, "pop3d.conf:12: ", "name"));
	assert_true(diag_has(&f->d, "pop3d.conf:20: ", "keep_days"));
	assert_true(diag_has(&f->d, "pop3d.conf:21: ", "unread_days"));
	assert_true(diag_has(&f->d, "pop3d.conf:22: ", "login_delay"));
	assert_true(diag_has(&f->d, "pop3d.conf:23: ", "retention"));
}

static void test_edges_accepted(void **state)
{
	struct fixture *f = *state;

	add_override(f, level("x", 20, RET_KEEP, 36500, 36500, 86400));
	add_override(f, level("y", 21, RET_KEEP, 0, 0, 0));
	build_ok(f);
	assert_int_equal(f->d.n, 0);
	assert_rule(rule_of(f, "x"), RET_KEEP, 36500, 36500, 86400);
	assert_rule(rule_of(f, "y"), RET_KEEP, 0, 0, 0);
}

static void test_unknown_user_is_warning(void **state)
{
	struct fixture *f = *state;

	add_override(f, level("ghost@example.org", 30, RET_DELETE, U, U, U));
	add_override(f, level("bob@example.org", 31, RET_DELETE, U, U, U));
	add_user(f, "alice@example.org");
	add_user(f, "bob@example.org");
	build_ok(f);
	assert_int_equal(f->d.n, 1);
	assert_true(diag_has(&f->d, "pop3d.conf:30: warning: ", "ghost@example.org"));
	/* the override still works for a login the users file may gain later */
	assert_int_equal(rule_of(f, "ghost@example.org").retention, RET_DELETE);
	/* without a users file there is nothing to check */
	rules_free(f->r);
	diag_free(&f->d);
	f->r = rules_build(&f->cfg, NULL, &f->d);
	assert_non_null(f->r);
	assert_int_equal(f->d.n, 0);
}

static void test_keep_days_under_inherited_delete_warns(void **state)
{
	struct fixture *f = *state;

	f->cfg.policy.def = level(NULL, 3, RET_DELETE, U, U, U);
	add_domain(f, level("example.org", 10, RET_UNSET, 5, U, U));
	add_override(f, level("bob@other.org", 20, RET_UNSET, 9, U, U));
	build_ok(f);
	assert_int_equal(f->d.n, 2);
	assert_true(diag_has(&f->d, "pop3d.conf:10: warning: ", "keep_days"));
	assert_true(diag_has(&f->d, "pop3d.conf:20: warning: ", "keep_days"));
	assert_int_equal(expire_of(rule_of(f, "bob@other.org")), 0);
}

/* ---- rules_print ---- */

static char *print_to_string(const struct rules *r, const struct users *u)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *mf = open_memstream(&buf, &len);

	assert_non_null(mf);
	rules_print(r, u, mf);
	assert_int_equal(fclose(mf), 0);
	assert_non_null(buf);
	return buf;
}

static void test_print(void **state)
{
	struct fixture *f = *state;
	char *out;

	f->cfg.policy.def = level(NULL, 3, RET_KEEP, U, U, U);
	add_domain(f, level("Example.org", 10, RET_DELETE, U, U, U));
	add_domain(f, level("keep.org", 11, RET_KEEP, 30, 10, U));
	add_override(f, level("carol@other.org", 20, RET_UNSET, U, U, 300));
	add_override(f, level("ghost", 21, RET_UNSET, U, U, U));
	add_user(f, "alice@example.org");
	add_user(f, "carol@other.org");
	build_ok(f);
	out = print_to_string(f->r, &f->users);
	assert_non_null(strstr(out, "default"));
	assert_non_null(strstr(out, "example.org"));
	assert_non_null(strstr(out, "keep.org"));
	assert_non_null(strstr(out, "carol@other.org"));
	assert_non_null(strstr(out, "NEVER"));
	assert_non_null(strstr(out, "not in the users file"));
	assert_non_null(strstr(out, "CAPA before login: EXPIRE 0 USER, LOGIN-DELAY 300 USER\n"));
	free(out);
	/* every user alike: no USER suffix */
	out = print_to_string(f->r, NULL);
	assert_non_null(strstr(out, "CAPA before login: EXPIRE NEVER\n"));
	free(out);
}

static void test_null_rules(void **state)
{
	struct rule r;
	struct capa_summary s;

	(void)state;
	rules_free(NULL);
	rules_for(NULL, "bob", 3, &r);
	assert_rule(r, RET_KEEP, DAYS_NEVER, 0, 0);
	rules_summary(NULL, NULL, &s);
	assert_int_equal(s.expire, DAYS_NEVER);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_nothing_configured),
		T(test_order_default_domain_user),
		T(test_retention_resets_keep_days),
		T(test_domain_case_insensitive),
		T(test_domain_after_last_at),
		T(test_many_domains),
		cmocka_unit_test(test_expire_days),
		cmocka_unit_test(test_capa_expire_text),
		T(test_summary_varies),
		T(test_summary_never_is_largest),
		T(test_summary_all_equal),
		T(test_summary_counts_users_only),
		T(test_keep_days_with_delete_is_error),
		T(test_duplicates_are_errors),
		T(test_bad_entries_are_errors),
		T(test_edges_accepted),
		T(test_unknown_user_is_warning),
		T(test_keep_days_under_inherited_delete_warns),
		T(test_print),
		cmocka_unit_test(test_null_rules),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
