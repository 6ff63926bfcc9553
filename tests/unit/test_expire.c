/*
 * test_expire: policy/expire.c through expire.h: sweeps over temp maildirs
 * with a hand-built config, users and rules, the clock moved by o->now; the
 * report lines (text and JSON); and expire_parse_at. Each test works in its
 * own mkdtemp folder with one maildir per user at DIR/<login>.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <setjmp.h>
#include <cmocka.h>

#include "maildrop/maildrop.h"
#include "policy/expire.h"
#include "policy/policy.h"
#include "policy/rules.h"
#include "server/auth.h"
#include "server/config.h"

#define DAY 86400
#define T0  1700000000
#define U   POLICY_UNSET

struct fx {
	char                   dir[64];
	char                   tmpl[PATH_MAX];
	struct config          cfg;
	struct policy_rule_cfg usr[8];
	struct user            uv[8];
	struct users           users;
	struct rules          *rules;
	struct diag            d;
	char                  *out;       /* the last sweep's report */
	size_t                 outlen;
};

/* ---- fixture ---- */

static int
rm_one(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
	(void)sb;
	(void)ftw;
	return type == FTW_DP ? rmdir(path) : unlink(path);
}

static struct policy_rule_cfg
level(const char *match, enum retention ret, int32_t keep, int32_t unread)
{
	struct policy_rule_cfg c;

	memset(&c, 0, sizeof c);
	c.match = (char *)(uintptr_t)match;
	c.line = 1;
	c.retention = ret;
	c.keep_days = keep;
	c.unread_days = unread;
	c.login_delay = U;
	return c;
}

static int
setup(void **state)
{
	struct fx *f = calloc(1, sizeof *f);

	assert_non_null(f);
	snprintf(f->dir, sizeof f->dir, "/tmp/test_expire.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->tmpl, sizeof f->tmpl, "%s/%%u", f->dir);
	f->cfg.path = (char *)(uintptr_t)"pop3d.conf";
	f->cfg.maildrop_path = f->tmpl;
	f->cfg.policy.def = level(NULL, RET_UNSET, U, U);
	f->cfg.policy.users = f->usr;
	f->users.v = f->uv;
	f->users.path = (char *)(uintptr_t)"users";
	f->users.refs = 1;    /* hand-built: never users_unref */
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *f = *state;

	nftw(f->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	rules_free(f->rules);
	diag_free(&f->d);
	free(f->out);
	free(f);
	return 0;
}

/* Users in strcmp order, as users_load sorts them. */
static void
add_user(struct fx *f, const char *name)
{
	if (f->users.n > 0)
		assert_true(strcmp(f->uv[f->users.n - 1].name, name) < 0);
	f->uv[f->users.n].name = (char *)(uintptr_t)name;
	f->uv[f->users.n].secret = (char *)(uintptr_t)"x";
	f->uv[f->users.n].home = (char *)(uintptr_t)"";
	f->users.n++;
}

/* (Re)build the rules from f->cfg.policy: the admin changing the config. */
static void
build(struct fx *f)
{
	rules_free(f->rules);
	diag_free(&f->d);
	f->rules = rules_build(&f->cfg, &f->users, &f->d);
	assert_non_null(f->rules);
}

static void
set_default(struct fx *f, enum retention ret, int32_t keep, int32_t unread)
{
	f->cfg.policy.def = level(NULL, ret, keep, unread);
	build(f);
}

static void
upath(char *out, size_t outlen, const struct fx *f, const char *user, const char *rel)
{
	int k = snprintf(out, outlen, "%s/%s%s%s", f->dir, user, rel[0] ? "/" : "", rel);

	assert_true(k > 0 && (size_t)k < outlen);
}

static void
mkmaildir(const struct fx *f, const char *user)
{
	static const char *const subs[] = { "", "new", "cur", "tmp" };
	char p[PATH_MAX];
	size_t i;

	for (i = 0; i < 4; i++) {
		upath(p, sizeof p, f, user, subs[i]);
		assert_int_equal(mkdir(p, 0700), 0);
	}
}

static void
put(const struct fx *f, const char *user, const char *rel, const char *s, time_t mtime)
{
	struct timespec ts[2] = { { mtime, 0 }, { mtime, 0 } };
	char p[PATH_MAX];
	size_t n = strlen(s);
	int fd;

	upath(p, sizeof p, f, user, rel);
	fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, s, n), (ssize_t)n);
	assert_int_equal(close(fd), 0);
	if (mtime != 0)
		assert_int_equal(utimensat(AT_FDCWD, p, ts, 0), 0);
}

static int
exists(const struct fx *f, const char *user, const char *rel)
{
	char p[PATH_MAX];
	struct stat st;

	upath(p, sizeof p, f, user, rel);
	return lstat(p, &st) == 0;
}

static char *
slurp(const struct fx *f, const char *user, const char *rel)
{
	char p[PATH_MAX];
	struct stat st;
	char *b;
	int fd;

	upath(p, sizeof p, f, user, rel);
	fd = open(p, O_RDONLY);
	if (fd < 0)
		return NULL;
	assert_int_equal(fstat(fd, &st), 0);
	b = malloc((size_t)st.st_size + 1);
	assert_non_null(b);
	assert_int_equal(read(fd, b, (size_t)st.st_size), st.st_size);
	close(fd);
	b[st.st_size] = '\0';
	return b;
}

/* A session at now that downloads (RETR) the messages with these UIDLs, then QUIT. */
static void
download(const struct fx *f, const char *user, int64_t now, const char *uidl1, const char *uidl2)
{
	struct maildrop *md = NULL;
	struct md_update_result res;
	struct rule r;
	char p[PATH_MAX], err[256];
	size_t i;

	upath(p, sizeof p, f, user, "");
	assert_int_equal(maildrop_open(p, &md, err, sizeof err), MD_OK);
	for (i = 0; i < md->n; i++)
		if (strcmp(md->msgs[i].uidl, uidl1) == 0 ||
		    (uidl2 != NULL && strcmp(md->msgs[i].uidl, uidl2) == 0))
			md->msgs[i].flags |= MSG_RETR;
	rules_for(f->rules, user, strlen(user), &r);
	maildrop_quit(md);
	policy_mark_update(md, &r, now, NULL, NULL);
	assert_true(maildrop_update(md, &res) >= 0);
	maildrop_close(md);
}

static int live_clock;   /* expire_opts.live_clock for sweep() */

static int
sweep(struct fx *f, int64_t now, int dry, const char *user, int json, struct expire_totals *t)
{
	struct expire_opts o;
	FILE *fp;
	int rc;

	free(f->out);
	f->out = NULL;
	fp = open_memstream(&f->out, &f->outlen);
	assert_non_null(fp);
	memset(&o, 0, sizeof o);
	o.now = now;
	o.dry_run = dry;
	o.user = user;
	o.json = json;
	o.out = fp;
	o.live_clock = live_clock;
	rc = expire_sweep(&f->cfg, &f->users, f->rules, &o, t);
	assert_int_equal(fclose(fp), 0);
	return rc;
}

static void
out_has(const struct fx *f, const char *s)
{
	if (strstr(f->out, s) == NULL)
		fail_msg("report lacks \"%s\":\n%s", s, f->out);
}

static void
out_lacks(const struct fx *f, const char *s)
{
	if (strstr(f->out, s) != NULL)
		fail_msg("report has \"%s\":\n%s", s, f->out);
}

/* Every path, size, mtime and inode under the test folder, sorted. */
static char *
listing(const struct fx *f)
{
	char cmd[PATH_MAX + 128], *b = NULL;
	size_t cap = 0, n = 0;
	FILE *fp;
	int c;

	snprintf(cmd, sizeof cmd, "find '%s' -printf '%%P %%s %%T@ %%i %%m\\n' | LC_ALL=C sort", f->dir);
	fp = popen(cmd, "r");
	assert_non_null(fp);
	while ((c = fgetc(fp)) != EOF) {
		if (n + 1 >= cap) {
			cap = cap ? cap * 2 : 4096;
			b = realloc(b, cap);
			assert_non_null(b);
		}
		b[n++] = (char)c;
	}
	assert_int_equal(pclose(fp), 0);
	assert_non_null(b);
	b[n] = '\0';
	return b;
}

/* ---- keep N days ---- */

static void
test_keep_days(void **state)
{
	struct fx *f = *state;
	struct expire_totals t;
	char *st;

	add_user(f, "alice");
	set_default(f, RET_KEEP, 10, U);
	mkmaildir(f, "alice");
	put(f, "alice", "new/A", "a\n", T0 - 20 * DAY);
	put(f, "alice", "new/B", "b\n", T0 - 20 * DAY);
	download(f, "alice", T0, "A", NULL);
	assert_true(exists(f, "alice", "cur/A:2,S"));
	st = slurp(f, "alice", "pop3d.state");
	assert_non_null(strstr(st, "\nA 1700000000 10\n"));
	free(st);

	/* One second short of 10 days: kept. */
	assert_int_equal(sweep(f, T0 + 10 * DAY - 1, 0, NULL, 0, &t), 0);
	assert_int_equal(t.users, 1);
	assert_int_equal(t.removed, 0);
	assert_int_equal(t.kept_doubt, 0);
	assert_true(exists(f, "alice", "cur/A:2,S"));
	out_lacks(f, "expire removed");
	out_has(f, "expire user=alice messages=2 removed=0 would_remove=0 failed=0 kept_doubt=0 bytes=0\n");

	/* At 10 days: removed, with its record. */
	assert_int_equal(sweep(f, T0 + 10 * DAY, 0, NULL, 0, &t), 0);
	assert_int_equal(t.removed, 1);
	assert_int_equal(t.bytes, 2);
	assert_int_equal(t.failed, 0);
	assert_false(exists(f, "alice", "cur/A:2,S"));
	assert_true(exists(f, "alice", "new/B"));      /* never downloaded, no unread rule */
	out_has(f, "expire removed user=alice uidl=A cause=keep_days age_days=30 downloaded_days=10 size=2\n");
	out_has(f, "expire done now=1700864000 dry_run=no users=1 skipped_locked=0 failed=0 "
	    "removed=1 would_remove=0 kept_doubt=0 bytes=2\n");
	st = slurp(f, "alice", "pop3d.state");
	assert_null(strstr(st, "\nA "));
	free(st);
}

/*
 * Without --at the clock is read again per user: a download recorded after
 * the sweep started (a long sweep over many users) is not a clock gone back.
 * With a fixed --at time the same record is in doubt, and kept.
 */
static void
test_live_clock(void **state)
{
	struct fx *f = *state;
	struct expire_totals t;
	int64_t real = (int64_t)time(NULL);

	add_user(f, "alice");
	set_default(f, RET_KEEP, 10, U);
	mkmaildir(f, "alice");
	put(f, "alice", "new/A", "a\n", (time_t)(real - 20 * DAY));
	download(f, "alice", real - 50, "A", NULL);

	live_clock = 0;
	assert_int_equal(sweep(f, real - 100, 1, NULL, 0, &t), 0);
	assert_int_equal(t.kept_doubt, 1);
	out_has(f, "reason=\"clock is before the first download\"");

	live_clock = 1;
	assert_int_equal(sweep(f, real - 100, 1, NULL, 0, &t), 0);
	live_clock = 0;
	assert_int_equal(t.kept_doubt, 0);
	assert_int_equal(t.would_remove, 0);
	out_lacks(f, "clock is before");
}

/* The promise made at the first download outlives a shorter setting. */
static void
test_promise_outlives_rule(void **state)
{
	struct fx *f = *state;
	struct expire_totals t;

	add_user(f, "alice");
	set_default(f, RET_KEEP, 30, U);
	mkmaildir(f, "alice");
	put(f, "alice", "new/A", "a\n", T0 - DAY);
	put(f, "alice", "new/B", "bb\n", T0 - DAY);
	download(f, "alice", T0, "A", "B");

	/* The admin shortens keep to 5 days: A stays for its 30. */
	set_default(f, RET_KEEP, 5, U);
	assert_int_equal(sweep(f, T0 + 10 * DAY, 0, NULL, 0, &t), 0);
	assert_int_equal(t.removed, 0);
	/* Then switches to delete: still 30 days. */
	set_default(f, RET_DELETE, U, U);
	assert_int_equal(sweep(f, T0 + 30 * DAY - 1, 0, NULL, 0, &t), 0);
	assert_int_equal(t.removed, 0);
	assert_true(exists(f, "alice", "cur/A:2,S"));
	assert_int_equal(sweep(f, T0 + 30 * DAY, 0, NULL, 0, &t), 0);
	assert_int_equal(t.removed, 2);
	assert_int_equal(t.bytes, 5);
	out_has(f, "uidl=A cause=keep_days");
	out_has(f, "uidl=B cause=keep_days");

	/* A longer setting counts from the same first download. */
	put(f, "alice", "new/C", "c\n", T0 - DAY);
	set_default(f, RET_KEEP, 5, U);
	download(f, "alice", T0, "C", NULL);
	set_default(f, RET_KEEP, 60, U);
	assert_int_equal(sweep(f, T0 + 59 * DAY, 0, NULL, 0, &t), 0);
	assert_int_equal(t.removed, 0);
	assert_int_equal(sweep(f, T0 + 60 * DAY, 0, NULL, 0, &t), 0);
	assert_int_equal(t.removed, 1);
}

/* ---- delete mode ---- */

static void
test_delete_mode(void **state)
{
	struct fx *f = *state;
	struct expire_totals t;
	char *st;

	add_user(f, "alice");
	set_default(f, RET_DELETE, U, U);
	mkmaildir(f, "alice");
	put(f, "alice", "new/A", "a\n", T0 - DAY);
	put(f, "alice", "new/B", "b\n", T0 - DAY);
	/* UPDATE removes what was downloaded; its first download is recorded (promise 0)
	 * before the unlink, so a crash in between still lets the next sweep remove it. */
	download(f, "alice", T0, "A", NULL);
	assert_false(exists(f, "alice", "new/A"));
	assert_false(exists(f, "alice", "cur/A:2,S"));
	assert_true(exists(f, "alice", "new/B"));
	st = slurp(f, "alice", "pop3d.state");
	assert_non_null(st);
	assert_non_null(strstr(st, "\nA 1700000000 0\n"));
	free(st);

	/* A download whose UPDATE removal did not happen (promise 0): the sweep removes it. */
	put(f, "alice", "pop3d.state", "pop3d-state 1\nlast_login 0\nB 1700000000 0\n", 0);
	assert_int_equal(sweep(f, T0 - 1, 0, NULL, 0, &t), 0);     /* clock before: doubt */
	assert_int_equal(t.removed, 0);
	assert_int_equal(t.kept_doubt, 1);
	out_has(f, "doubt=\"clock is before the first download\"");
	assert_int_equal(sweep(f, T0, 0, NULL, 0, &t), 0);
	assert_int_equal(t.removed, 1);
	out_has(f, "expire removed user=alice uidl=B cause=download age_days=1 downloaded_days=0 size=2\n");
	assert_false(exists(f, "alice", "new/B"));
	st = slurp(f, "alice", "pop3d.state");
	assert_string_equal(st, "pop3d-state 1\nlast_login 0\n");
	free(st);
}

/* ---- unread ---- */

static void
unread_setup(struct fx *f)
{
	add_user(f, "alice");
	set_default(f, RET_KEEP, U, 5);    /* keep forever; unread mail goes after 5 days */
	mkmaildir(f, "alice");
	put(f, "alice", "new/U1", "u1\n", T0 - 5 * DAY);
	put(f, "alice", "new/U2", "u2\n", T0 - 5 * DAY + 1);
	put(f, "alice", "cur/S:2,S", "s\n", T0 - 100 * DAY);       /* seen, no record */
	put(f, "alice", "cur/R:2,S", "r\n", T0 - 100 * DAY);
	put(f, "alice", "pop3d.state", "pop3d-state 1\nlast_login 0\nR 1690000000 -1\n", 0);
}

static void
test_unread(void **state)
{
	struct fx *f = *state;
	struct expire_totals t;

	unread_setup(f);
	assert_int_equal(sweep(f, T0, 0, NULL, 0, &t), 0);
	assert_int_equal(t.removed, 1);
	assert_int_equal(t.kept_doubt, 1);
	assert_false(exists(f, "alice", "new/U1"));
	assert_true(exists(f, "alice", "new/U2"));
	assert_true(exists(f, "alice", "cur/S:2,S"));
	assert_true(exists(f, "alice", "cur/R:2,S"));
	out_has(f, "expire removed user=alice uidl=U1 cause=unread_days age_days=5 size=3\n");
	out_has(f, "kept_doubt=1 bytes=3 doubt=\"seen flag without a download record\"\n");
	assert_int_equal(sweep(f, T0 + 1, 0, NULL, 0, &t), 0);
	assert_int_equal(t.removed, 1);
	assert_false(exists(f, "alice", "new/U2"));
	/* Far later: the record's forever and the seen message stay. */
	assert_int_equal(sweep(f, T0 + 10000 * (int64_t)DAY, 0, NULL, 0, &t), 0);
	assert_int_equal(t.removed, 0);
	assert_true(exists(f, "alice", "cur/R:2,S"));
}

static void
test_dry_run(void **state)
{
	struct fx *f = *state;
	struct expire_totals t;
	char *before, *after, *st1, *st2;

	unread_setup(f);
	/* The lock file exists once any session ran; the dry run must add nothing else. */
	{
		struct maildrop *md = NULL;
		char p[PATH_MAX], err[256];

		upath(p, sizeof p, f, "alice", "");
		assert_int_equal(maildrop_open(p, &md, err, sizeof err), MD_OK);
		maildrop_close(md);
	}
	before = listing(f);
	st1 = slurp(f, "alice", "pop3d.state");
	assert_int_equal(sweep(f, T0 + DAY, 1, NULL, 0, &t), 0);
	after = listing(f);
	st2 = slurp(f, "alice", "pop3d.state");
	assert_string_equal(before, after);
	assert_string_equal(st1, st2);
	assert_int_equal(t.removed, 0);
	assert_int_equal(t.would_remove, 2);
	assert_int_equal(t.bytes, 6);
	out_has(f, "expire would_remove user=alice uidl=U1 cause=unread_days age_days=6 size=3\n");
	out_has(f, "expire would_remove user=alice uidl=U2 cause=unread_days");
	out_has(f, "dry_run=yes");
	out_lacks(f, "expire removed");
	free(before);
	free(after);
	free(st1);
	free(st2);

	/* A dry run over a maildir nobody has: it creates nothing. */
	add_user(f, "bob");
	build(f);
	before = listing(f);
	assert_int_equal(sweep(f, T0 + DAY, 1, "bob", 0, &t), 0);
	after = listing(f);
	assert_string_equal(before, after);
	assert_int_equal(t.users, 1);
	free(before);
	free(after);
}

/* ---- locked ---- */

static void
test_locked_skipped(void **state)
{
	struct fx *f = *state;
	struct expire_totals t;
	struct maildrop *held = NULL;
	char p[PATH_MAX], err[256];

	unread_setup(f);
	upath(p, sizeof p, f, "alice", "");
	assert_int_equal(maildrop_open(p, &held, err, sizeof err), MD_OK);
	assert_int_equal(sweep(f, T0 + DAY, 0, NULL, 0, &t), 0);
	assert_int_equal(t.skipped_locked, 1);
	assert_int_equal(t.users, 0);
	assert_int_equal(t.removed, 0);
	assert_int_equal(t.failed, 0);
	out_has(f, "expire skipped user=alice reason=in-use\n");
	assert_true(exists(f, "alice", "new/U1"));
	maildrop_close(held);

	/* The next sweep does it. */
	assert_int_equal(sweep(f, T0 + DAY, 0, NULL, 0, &t), 0);
	assert_int_equal(t.skipped_locked, 0);
	assert_int_equal(t.removed, 2);
	assert_false(exists(f, "alice", "new/U1"));
}

/* ---- users ---- */

static void
test_users(void **state)
{
	struct fx *f = *state;
	struct expire_totals t;

	add_user(f, "alice");
	add_user(f, "bob");          /* no maildir */
	add_user(f, "carol");
	f->usr[0] = level("carol", RET_KEEP, U, 1);
	f->cfg.policy.nusers = 1;
	set_default(f, RET_KEEP, U, U);
	mkmaildir(f, "alice");
	mkmaildir(f, "carol");
	put(f, "alice", "new/A", "a\n", T0 - 50 * DAY);
	put(f, "carol", "new/C", "c\n", T0 - 50 * DAY);

	assert_int_equal(sweep(f, T0, 0, NULL, 0, &t), 0);
	assert_int_equal(t.users, 3);
	assert_int_equal(t.removed, 1);
	assert_true(exists(f, "alice", "new/A"));      /* no unread rule for alice */
	assert_false(exists(f, "carol", "new/C"));     /* carol's own rule */
	assert_false(exists(f, "bob", ""));            /* a sweep creates no maildir */
	out_has(f, "expire user=bob messages=0 removed=0");

	/* One user only; an unknown one is an error. */
	put(f, "alice", "new/A2", "a\n", T0 - 50 * DAY);
	assert_int_equal(sweep(f, T0, 0, "alice", 0, &t), 0);
	assert_int_equal(t.users, 1);
	assert_int_equal(sweep(f, T0, 0, "dave", 0, &t), -1);
	out_has(f, "unknown user dave");
	assert_int_equal(t.users, 0);

	/* A maildrop path that is a file: that user fails, the others are swept. */
	put(f, "", "bob", "not a folder\n", 0);
	assert_int_equal(sweep(f, T0, 0, NULL, 0, &t), 1);
	assert_int_equal(t.failed, 1);
	assert_int_equal(t.users, 2);
	out_has(f, "expire failed user=bob");
}

static void
test_state_in_doubt(void **state)
{
	struct fx *f = *state;
	struct expire_totals t;
	char *st;

	unread_setup(f);
	put(f, "alice", "pop3d.state", "pop3d-state 1\nlast_login 0\nR 1690000000 forever\n", 0);
	assert_int_equal(sweep(f, T0 + 100 * DAY, 0, NULL, 0, &t), 0);
	assert_int_equal(t.removed, 0);
	assert_int_equal(t.kept_doubt, 4);
	out_has(f, "expire note user=alice reason=\"state in doubt:");
	out_has(f, "doubt=\"state file not read\"");
	assert_true(exists(f, "alice", "new/U1"));
	/* The sweep leaves the doubtful file for a human (and the next login) to see. */
	st = slurp(f, "alice", "pop3d.state");
	assert_non_null(strstr(st, "forever"));
	free(st);
}

/* ---- JSON ---- */

static void
test_json(void **state)
{
	static const char user[] = "q\"u\\o\x01\xff\xc3\xa9";
	struct fx *f = *state;
	struct expire_totals t;
	char *p, *nl, cmd[256];
	size_t lines = 0;
	FILE *py;

	add_user(f, user);
	set_default(f, RET_KEEP, U, 5);
	mkmaildir(f, user);
	put(f, user, "new/A", "a\n", T0 - 5 * DAY);
	put(f, user, "cur/S:2,S", "s\n", T0 - 5 * DAY);
	assert_int_equal(sweep(f, T0, 0, NULL, 1, &t), 0);
	out_has(f, "{\"event\":\"removed\",\"user\":\"q\\\"u\\\\o\\u0001\\u00ff\xc3\xa9\",\"uidl\":\"A\","
	    "\"cause\":\"unread_days\",\"age_days\":5,\"size\":2}\n");
	out_has(f, "{\"event\":\"user\",\"user\":\"q\\\"u\\\\o\\u0001\\u00ff\xc3\xa9\",\"messages\":2,"
	    "\"removed\":1,\"would_remove\":0,\"failed\":0,\"kept_doubt\":1,\"bytes\":2,"
	    "\"doubt\":\"seen flag without a download record\"}\n");
	out_has(f, "{\"event\":\"summary\",\"now\":1700000000,\"dry_run\":false,\"users\":1,"
	    "\"skipped_locked\":0,\"failed\":0,\"removed\":1,\"would_remove\":0,\"kept_doubt\":1,"
	    "\"bytes\":2}\n");
	/* The message kept in doubt has a line of its own, with its UIDL and reason. */
	out_has(f, "{\"event\":\"kept\",\"user\":\"q\\\"u\\\\o\\u0001\\u00ff\xc3\xa9\",\"uidl\":\"S\","
	    "\"reason\":\"seen flag without a download record\"}\n");
	/* One object per line, nothing else. */
	for (p = f->out; *p != '\0'; p = nl + 1) {
		nl = strchr(p, '\n');
		assert_non_null(nl);
		assert_int_equal(p[0], '{');
		assert_int_equal(nl[-1], '}');
		lines++;
	}
	assert_int_equal(lines, 4);
	/* And every line is JSON to a real parser, when one is at hand. */
	if (system("python3 -c '' >/dev/null 2>&1") == 0) {
		snprintf(cmd, sizeof cmd, "python3 -c 'import sys,json\nfor l in sys.stdin.buffer: "
		    "json.loads(l)' ");
		py = popen(cmd, "w");
		assert_non_null(py);
		fwrite(f->out, 1, f->outlen, py);
		assert_int_equal(pclose(py), 0);
	}

	/* Dry run, skipped and unknown user in JSON too. */
	put(f, user, "new/B", "b\n", T0 - 5 * DAY);
	assert_int_equal(sweep(f, T0, 1, NULL, 1, &t), 0);
	out_has(f, "{\"event\":\"would_remove\",");
	out_has(f, "\"dry_run\":true");
	assert_int_equal(sweep(f, T0, 1, "nobody", 1, &t), -1);
	out_has(f, "{\"event\":\"error\",\"user\":\"nobody\",\"reason\":\"unknown user\"}\n");
}

/* ---- expire_parse_at ---- */

static void
at_is(const char *s, int64_t now, int64_t want)
{
	int64_t got = -12345;

	if (expire_parse_at(s, now, &got) != 0)
		fail_msg("\"%s\" refused", s);
	assert_int_equal(got, want);
}

static void
at_bad(const char *s)
{
	int64_t got = -12345;

	if (expire_parse_at(s, T0, &got) != -1)
		fail_msg("\"%s\" accepted", s);
	assert_int_equal(got, -12345);
}

static void
test_parse_at(void **state)
{
	static const char *const bad[] = {
		"", "+", "+d", "+h", "10d", "+10", "+10m", "+10s", "+10w", "+10D", "+-1d", "+ 1d",
		"+1.5d", "+010d", "+1d ", " +1d", "+1e3d", "++1d", "+1000000000d", "-1d",
		"2027-01-31 ", " 2027-01-31", "2027-1-31", "2027-01-1", "27-01-31", "2027/01/31",
		"2027-01-32", "2027-02-29", "2100-02-29", "2027-04-31", "2027-13-01", "2027-00-10",
		"2027-01-00", "1969-12-31", "0000-01-01", "2027-01-31T", "2027-01-31Z",
		"2027-01-31T24:00:00Z", "2027-01-31T12:60:00Z", "2027-01-31T12:00:60Z",
		"2027-01-31T12:00:00", "2027-01-31 12:00:00Z", "2027-01-31t12:00:00z",
		"2027-01-31T12:00:00+00:00", "2027-01-31T12:00Z", "2027-01-31T1:00:00Z",
		"2027-01-31T12:00:00.5Z", "+2027-01-31", "2027-01-31x", "\xef\xbc\x92" "027-01-31",
	};
	int64_t got;
	size_t i;

	(void)state;
	at_is("1970-01-01", T0, 0);
	at_is("2027-01-31", T0, 1801353600);
	at_is("2027-01-31T12:00:00Z", T0, 1801353600 + 12 * 3600);
	at_is("2027-01-31T23:59:59Z", T0, 1801353600 + DAY - 1);
	at_is("2024-02-29", T0, 1709164800);
	at_is("2000-02-29T00:00:01Z", T0, 951782401);
	at_is("9999-12-31", T0, 253402214400);
	at_is("+10d", T0, T0 + 10 * DAY);
	at_is("+36h", T0, T0 + 36 * 3600);
	at_is("+0d", T0, T0);
	at_is("+0h", T0, T0);
	at_is("+999999999d", 0, (int64_t)999999999 * DAY);
	for (i = 0; i < sizeof bad / sizeof bad[0]; i++)
		at_bad(bad[i]);
	assert_int_equal(expire_parse_at(NULL, T0, &got), -1);
	assert_int_equal(expire_parse_at("+1d", INT64_MAX - 10, &got), -1);    /* overflow */
	assert_int_equal(expire_parse_at("+1h", INT64_MAX - 3600, &got), 0);    /* fits exactly */
	assert_int_equal(got, INT64_MAX);
	assert_int_equal(expire_parse_at("+1h", INT64_MAX - 3599, &got), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_keep_days, setup, teardown),
		cmocka_unit_test_setup_teardown(test_promise_outlives_rule, setup, teardown),
		cmocka_unit_test_setup_teardown(test_live_clock, setup, teardown),
		cmocka_unit_test_setup_teardown(test_delete_mode, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unread, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dry_run, setup, teardown),
		cmocka_unit_test_setup_teardown(test_locked_skipped, setup, teardown),
		cmocka_unit_test_setup_teardown(test_users, setup, teardown),
		cmocka_unit_test_setup_teardown(test_state_in_doubt, setup, teardown),
		cmocka_unit_test_setup_teardown(test_json, setup, teardown),
		cmocka_unit_test(test_parse_at),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
