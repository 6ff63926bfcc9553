/*
 * test_state: the download state ROOT/pop3d.state (maildrop/state.c) through
 * maildrop.h: reading at open, writing at login, UPDATE and sweep removal,
 * doubt, setting a bad file aside, and crash safety. Each test works in its
 * own mkdtemp folder. Tests run as root, so no test relies on permissions.
 */
#include <dirent.h>
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
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <setjmp.h>
#include <cmocka.h>

#include "maildrop/maildrop.h"
#include "policy/policy.h"

#define DAY 86400
#define T0  1700000000   /* a fixed "now" for records */

struct fx {
	char dir[64];            /* the mkdtemp folder */
	char root[PATH_MAX];     /* dir/Maildir */
};

/* ---- helpers ---- */

static int
rm_one(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
	(void)sb;
	(void)ftw;
	return type == FTW_DP ? rmdir(path) : unlink(path);
}

static void
pathf(char *out, size_t outlen, const struct fx *f, const char *rel)
{
	int k = snprintf(out, outlen, "%s/%s", f->root, rel);

	assert_true(k > 0 && (size_t)k < outlen);
}

static void
mkdir_rel(const struct fx *f, const char *rel)
{
	char p[PATH_MAX];

	pathf(p, sizeof p, f, rel);
	assert_int_equal(mkdir(p, 0700), 0);
}

static int
setup(void **state)
{
	struct fx *f = calloc(1, sizeof *f);

	assert_non_null(f);
	snprintf(f->dir, sizeof f->dir, "/tmp/test_state.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->root, sizeof f->root, "%s/Maildir", f->dir);
	assert_int_equal(mkdir(f->root, 0700), 0);
	mkdir_rel(f, "new");
	mkdir_rel(f, "cur");
	mkdir_rel(f, "tmp");
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *f = *state;

	nftw(f->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(f);
	return 0;
}

static void
put(const struct fx *f, const char *rel, const char *data, size_t n, time_t mtime)
{
	char p[PATH_MAX];
	int fd;

	pathf(p, sizeof p, f, rel);
	fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, n), (ssize_t)n);
	assert_int_equal(close(fd), 0);
	if (mtime != 0) {
		struct timespec ts[2] = { { mtime, 0 }, { mtime, 0 } };

		assert_int_equal(utimensat(AT_FDCWD, p, ts, 0), 0);
	}
}

static void
puts_(const struct fx *f, const char *rel, const char *s, time_t mtime)
{
	put(f, rel, s, strlen(s), mtime);
}

static int
exists(const struct fx *f, const char *rel)
{
	char p[PATH_MAX];
	struct stat st;

	pathf(p, sizeof p, f, rel);
	return lstat(p, &st) == 0;
}

static void
rm(const struct fx *f, const char *rel)
{
	char p[PATH_MAX];

	pathf(p, sizeof p, f, rel);
	assert_int_equal(unlink(p), 0);
}

/* ROOT/rel as a malloc'd NUL-terminated string (NULL when absent). */
static char *
slurp(const struct fx *f, const char *rel)
{
	char p[PATH_MAX];
	struct stat st;
	char *b;
	int fd;

	pathf(p, sizeof p, f, rel);
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

static void
state_is(const struct fx *f, const char *want)
{
	char *got = slurp(f, "pop3d.state");

	assert_non_null(got);
	assert_string_equal(got, want);
	free(got);
}

static struct maildrop *
open_ok(const struct fx *f)
{
	struct maildrop *md = NULL;
	char err[256];
	enum md_status st = maildrop_open(f->root, &md, err, sizeof err);

	if (st != MD_OK)
		fail_msg("maildrop_open: %d %s", st, err);
	return md;
}

static struct maildrop *
open_sweep_ok(const struct fx *f)
{
	struct maildrop *md = NULL;
	char err[256];
	enum md_status st = maildrop_open_sweep(f->root, &md, err, sizeof err);

	if (st != MD_OK)
		fail_msg("maildrop_open_sweep: %d %s", st, err);
	return md;
}

static struct msg *
by_uidl(struct maildrop *md, const char *uidl)
{
	size_t i;

	for (i = 0; i < md->n; i++)
		if (strcmp(md->msgs[i].uidl, uidl) == 0)
			return &md->msgs[i];
	fail_msg("no message %s", uidl);
	return NULL;
}

/* Entries of ROOT/sub whose names start with prefix. */
static size_t
count_prefix(const struct fx *f, const char *sub, const char *prefix)
{
	char p[PATH_MAX];
	struct dirent *de;
	size_t n = 0;
	DIR *d;

	pathf(p, sizeof p, f, sub);
	d = opendir(p);
	assert_non_null(d);
	while ((de = readdir(d)) != NULL)
		n += strncmp(de->d_name, prefix, strlen(prefix)) == 0;
	closedir(d);
	return n;
}

/* Three messages A (new/), B (cur/, seen), C (new/). */
static void
three(const struct fx *f)
{
	puts_(f, "new/A", "a\n", T0 - 3 * DAY);
	puts_(f, "cur/B:2,S", "b\n", T0 - 2 * DAY);
	puts_(f, "new/C", "c\n", T0 - 1 * DAY);
}

/* ---- reading ---- */

static void
test_missing_is_ok(void **state)
{
	struct fx *f = *state;
	struct maildrop *md;
	size_t i;

	three(f);
	md = open_ok(f);
	assert_int_equal(md->state_ok, 1);
	assert_int_equal(md->last_login, 0);
	for (i = 0; i < md->n; i++)
		assert_int_equal(md->msgs[i].has_record, 0);
	maildrop_close(md);
	assert_false(exists(f, "pop3d.state"));    /* reading writes nothing */
}

static void
test_round_trip(void **state)
{
	static const char file[] =
	    "pop3d-state 1\n"
	    "last_login 1699999999\n"
	    "B 1699000000 30\n"
	    "A 1698000000 -1\n"
	    "Z 1600000000 0\n";              /* no such message */
	struct fx *f = *state;
	struct maildrop *md;
	struct msg *m;

	three(f);
	puts_(f, "pop3d.state", file, 0);
	md = open_ok(f);
	assert_int_equal(md->state_ok, 1);
	assert_int_equal(md->last_login, 1699999999);
	m = by_uidl(md, "A");
	assert_int_equal(m->has_record, 1);
	assert_int_equal(m->first_download, 1698000000);
	assert_int_equal(m->promised_days, -1);
	m = by_uidl(md, "B");
	assert_int_equal(m->has_record, 1);
	assert_int_equal(m->first_download, 1699000000);
	assert_int_equal(m->promised_days, 30);
	assert_int_equal(by_uidl(md, "C")->has_record, 0);
	assert_string_equal(md->err, "");

	/* Writing it back (login): same records in listing order; Z, unlisted, kept after
	 * them (only a sweep drops it, test_unlisted_records_kept_until_a_sweep_finds_them_gone). */
	assert_int_equal(maildrop_record_login(md, T0), 0);
	assert_int_equal(md->last_login, T0);
	maildrop_close(md);
	state_is(f, "pop3d-state 1\n"
	    "last_login 1700000000\n"
	    "A 1698000000 -1\n"
	    "B 1699000000 30\n"
	    "Z 1600000000 0\n");
	assert_int_equal(count_prefix(f, "tmp", "pop3d.state"), 0);

	md = open_ok(f);
	assert_int_equal(md->last_login, T0);
	assert_int_equal(by_uidl(md, "A")->promised_days, -1);
	maildrop_close(md);
}

static void
test_vanished_records(void **state)
{
	struct fx *f = *state;
	struct md_update_result res;
	struct maildrop *md;
	char err[256];

	three(f);
	puts_(f, "pop3d.state", "pop3d-state 1\nlast_login 0\nA 1 1\nB 2 2\nC 3 3\n", 0);
	rm(f, "new/C");
	md = open_ok(f);
	assert_int_equal(md->n, 2);
	assert_int_equal(maildrop_record_login(md, 5), 0);
	maildrop_close(md);
	/* A session keeps the record of what it did not list ... */
	state_is(f, "pop3d-state 1\nlast_login 5\nA 1 1\nB 2 2\nC 3 3\n");
	/* ... and a sweep drops it, C being gone. */
	md = NULL;
	assert_int_equal(maildrop_scan_sweep(f->root, &md, err, sizeof err), MD_OK);
	assert_int_equal(maildrop_sweep_claim(md, 0, err, sizeof err), MD_OK);
	assert_int_equal(maildrop_sweep_remove(md, &res), 0);
	maildrop_close(md);
	state_is(f, "pop3d-state 1\nlast_login 5\nA 1 1\nB 2 2\n");

	/* A message renamed (flags) keeps its record: the key is the UIDL. */
	{
		char a[PATH_MAX], b[PATH_MAX];

		pathf(a, sizeof a, f, "new/A");
		pathf(b, sizeof b, f, "cur/A:2,FS");
		assert_int_equal(rename(a, b), 0);
	}
	md = open_ok(f);
	assert_int_equal(by_uidl(md, "A")->has_record, 1);
	assert_int_equal(by_uidl(md, "A")->first_download, 1);
	maildrop_close(md);
}

/*
 * A record of a message the listing does not hold is never dropped by a
 * session (a listing can miss a file an IMAP server renames meanwhile). A
 * sweep drops it once no name in new/ or cur/ has that UIDL.
 */
static void
test_unlisted_records_kept_until_a_sweep_finds_them_gone(void **state)
{
	struct fx *f = *state;
	struct md_update_result res;
	struct maildrop *md;
	char err[256];

	three(f);
	puts_(f, "pop3d.state", "pop3d-state 1\nlast_login 0\nA 1 1\nG 9 9\n", 0);
	md = open_ok(f);
	assert_int_equal(md->n, 3);
	assert_int_equal(md->state_unlisted, 1);
	/* Missed by the listing: X, now in cur/ with flags, and its record. */
	puts_(f, "cur/X:2,FS", "x\n", T0);
	puts_(f, "pop3d.state", "pop3d-state 1\nlast_login 0\nA 1 1\nG 9 9\nX 4 4\n", 0);
	assert_int_equal(maildrop_record_login(md, 5), 0);
	maildrop_close(md);
	state_is(f, "pop3d-state 1\nlast_login 5\nA 1 1\nG 9 9\nX 4 4\n");

	/* A sweep with nothing to remove still prunes G (gone) and keeps X (there). */
	rm(f, "cur/X:2,FS");
	puts_(f, "cur/X:2,S", "x\n", T0);
	md = NULL;
	assert_int_equal(maildrop_scan_sweep(f->root, &md, err, sizeof err), MD_OK);
	rm(f, "cur/X:2,S");   /* listed by the sweep as X, now renamed again */
	puts_(f, "cur/X:2,RS", "x\n", T0);
	assert_int_equal(maildrop_sweep_claim(md, 0, err, sizeof err), MD_OK);
	assert_int_equal(maildrop_sweep_remove(md, &res), 0);
	assert_int_equal(res.removed, 0);
	maildrop_close(md);
	state_is(f, "pop3d-state 1\nlast_login 5\nA 1 1\nX 4 4\n");
}

/* Open with this state file: it must be in doubt, with no record and nothing removable. */
static void
expect_doubt(const struct fx *f, const char *content, size_t n)
{
	/* A rule that would remove everything at once: delete, unread after 1 day. */
	const struct rule r = { RET_DELETE, 0, 1, 0 };
	struct maildrop *md;
	enum cause causes[8];
	size_t i;

	if (content != NULL)
		put(f, "pop3d.state", content, n, 0);
	md = open_ok(f);
	if (md->state_ok != 0)
		fail_msg("not in doubt: \"%.*s\"", (int)n, content != NULL ? content : "");
	assert_int_equal(md->last_login, 0);
	assert_non_null(strstr(md->err, "doubt"));
	for (i = 0; i < md->n; i++)
		assert_int_equal(md->msgs[i].has_record, 0);
	maildrop_close(md);

	md = open_sweep_ok(f);
	assert_int_equal(md->state_ok, 0);
	assert_true(md->n <= 8);
	policy_mark_sweep(md, &r, T0 + 1000 * DAY, causes);
	for (i = 0; i < md->n; i++) {
		assert_int_equal(md->msgs[i].flags & MSG_REMOVE, 0);
		assert_int_equal(causes[i], CAUSE_NONE);
	}
	/* Even when asked directly, a sweep removal refuses on a state in doubt. */
	if (md->n > 0) {
		struct md_update_result res;

		md->msgs[0].flags |= MSG_REMOVE;
		assert_int_equal(maildrop_sweep_remove(md, &res), -1);
		assert_int_equal(res.removed, 0);
	}
	maildrop_close(md);
	assert_true(exists(f, "new/A"));
	assert_true(exists(f, "cur/B:2,S"));
	assert_true(exists(f, "new/C"));
}

static void
test_corrupt_is_doubt(void **state)
{
	static const char *const bad[] = {
		"",
		"pop3d-state 2\nlast_login 0\n",
		"pop3d-state 1 \nlast_login 0\n",
		"POP3D-STATE 1\nlast_login 0\n",
		"pop3d-state 1\n",                                   /* no last_login */
		"pop3d-state 1\nA 1 1\n",
		"pop3d-state 1\nlast_login\n",
		"pop3d-state 1\nlast_login -1\n",
		"pop3d-state 1\nlast_login 01\n",
		"pop3d-state 1\nlast_login 1 2\n",
		"pop3d-state 1\nlast_login 1\nlast_login 1\n",
		"pop3d-state 1\nlast_login 0\nA 1\n",
		"pop3d-state 1\nlast_login 0\nA 1 1 1\n",
		"pop3d-state 1\nlast_login 0\nA  1 1\n",
		"pop3d-state 1\nlast_login 0\nA 1 1 \n",
		"pop3d-state 1\nlast_login 0\n A 1 1\n",
		"pop3d-state 1\nlast_login 0\nA\t1 1\n",
		"pop3d-state 1\nlast_login 0\nA 1 1\r\n",
		"pop3d-state 1\nlast_login 0\nA 1 1",                 /* cut short */
		"pop3d-state 1\nlast_login 0\n\nA 1 1\n",             /* empty line */
		"pop3d-state 1\nlast_login 0\nA 1 -2\n",
		"pop3d-state 1\nlast_login 0\nA 1 +5\n",
		"pop3d-state 1\nlast_login 0\nA 1 05\n",
		"pop3d-state 1\nlast_login 0\nA 01 5\n",
		"pop3d-state 1\nlast_login 0\nA -1 5\n",
		"pop3d-state 1\nlast_login 0\nA 1 2147483648\n",
		"pop3d-state 1\nlast_login 0\nA 9223372036854775808 5\n",
		"pop3d-state 1\nlast_login 0\nA 1x 5\n",
		"pop3d-state 1\nlast_login 0\nB 1 1\nA 2 2\nB 1 1\n", /* twice */
		"pop3d-state 1\nlast_login 0\n"
		"uuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuu 1 1\n", /* 71 */
		"pop3d-state 1\nlast_login 0\nA\x7f 1 1\n",
		"pop3d-state 1\nlast_login 0\nA\xc3\xa9 1 1\n",
	};
	static const char nul[] = "pop3d-state 1\nlast_login 0\nA 1 1\0\n";
	struct fx *f = *state;
	struct maildrop *md;
	char p[PATH_MAX], q[PATH_MAX];
	size_t i;
	int fd;

	three(f);
	/* The controls: strict lines are believed (70 octets, the limits). */
	puts_(f, "pop3d.state", "pop3d-state 1\nlast_login 9223372036854775807\n"
	    "uuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuu 0 2147483647\n"
	    "A 9223372036854775807 0\n", 0);
	md = open_ok(f);
	assert_int_equal(md->state_ok, 1);
	assert_int_equal(by_uidl(md, "A")->first_download, INT64_MAX);
	maildrop_close(md);

	for (i = 0; i < sizeof bad / sizeof bad[0]; i++)
		expect_doubt(f, bad[i], strlen(bad[i]));
	expect_doubt(f, nul, sizeof nul - 1);

	/* Over the size cap, even with good lines. */
	puts_(f, "pop3d.state", "pop3d-state 1\nlast_login 0\nA 1 1\n", 0);
	pathf(p, sizeof p, f, "pop3d.state");
	fd = open(p, O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 128 * 1024 * 1024 + 1), 0);
	close(fd);
	expect_doubt(f, NULL, 0);

	/* Not a regular file: a folder, a symlink to a good file, a FIFO. */
	rm(f, "pop3d.state");
	assert_int_equal(mkdir(p, 0700), 0);
	expect_doubt(f, NULL, 0);
	assert_int_equal(rmdir(p), 0);
	puts_(f, "good", "pop3d-state 1\nlast_login 0\nA 1 1\n", 0);
	pathf(q, sizeof q, f, "good");
	assert_int_equal(symlink(q, p), 0);
	expect_doubt(f, NULL, 0);
	rm(f, "pop3d.state");
	assert_int_equal(mkfifo(p, 0600), 0);
	expect_doubt(f, NULL, 0);
	rm(f, "pop3d.state");
}

/* ---- writing ---- */

static void
test_bad_file_set_aside(void **state)
{
	static const char bad[] = "pop3d-state 1\nlast_login 0\nA 1 1 garbage\nB 5 5\n";
	struct fx *f = *state;
	struct maildrop *md;
	char p[PATH_MAX];
	struct dirent *de;
	char *kept = NULL;
	DIR *d;

	three(f);
	puts_(f, "pop3d.state", bad, 0);
	md = open_ok(f);
	assert_int_equal(md->state_ok, 0);
	assert_int_equal(maildrop_record_login(md, T0), 0);
	assert_non_null(strstr(md->err, "renamed to"));
	assert_non_null(strstr(md->err, "pop3d.state.bad-"));
	assert_int_equal(md->state_ok, 1);
	maildrop_close(md);

	/* The fresh file has no record (B's is lost, which keeps B: seen without record). */
	state_is(f, "pop3d-state 1\nlast_login 1700000000\n");
	assert_int_equal(count_prefix(f, ".", "pop3d.state.bad-"), 1);
	d = opendir(f->root);
	assert_non_null(d);
	while ((de = readdir(d)) != NULL) {
		if (strncmp(de->d_name, "pop3d.state.bad-", 16) == 0) {
			snprintf(p, sizeof p, "%s", de->d_name);
			kept = slurp(f, p);
		}
	}
	closedir(d);
	assert_non_null(kept);
	assert_string_equal(kept, bad);     /* set aside byte for byte */
	free(kept);

	md = open_ok(f);
	assert_int_equal(md->state_ok, 1);
	assert_int_equal(md->last_login, T0);
	/* A second doubt in the same second does not overwrite the first one set aside. */
	maildrop_close(md);
	puts_(f, "pop3d.state", "junk\n", 0);
	md = open_ok(f);
	assert_int_equal(maildrop_record_login(md, T0 + 1), 0);
	maildrop_close(md);
	assert_true(count_prefix(f, ".", "pop3d.state.bad-") == 2);
}

static struct stat
stat_rel(const struct fx *f, const char *rel)
{
	char p[PATH_MAX];
	struct stat st;

	pathf(p, sizeof p, f, rel);
	assert_int_equal(lstat(p, &st), 0);
	return st;
}

/* ROOT/tmp replaced by a file: no temp file can be made (root ignores modes). */
static void
break_tmp(const struct fx *f)
{
	char p[PATH_MAX];

	pathf(p, sizeof p, f, "tmp");
	assert_int_equal(rmdir(p), 0);
	puts_(f, "tmp", "not a folder\n", 0);
}

static void
fix_tmp(const struct fx *f)
{
	rm(f, "tmp");
	mkdir_rel(f, "tmp");
}

static void
test_write_failure_leaves_old(void **state)
{
	static const char good[] = "pop3d-state 1\nlast_login 7\nA 1 1\n";
	static const char bad[] = "pop3d-state 1\nlast_login 7\nA 1\n";
	struct fx *f = *state;
	struct maildrop *md;
	struct stat a, b;

	three(f);
	puts_(f, "pop3d.state", good, 0);
	a = stat_rel(f, "pop3d.state");
	md = open_ok(f);
	break_tmp(f);
	assert_int_equal(maildrop_record_login(md, T0), -1);
	assert_true(md->err[0] != '\0');
	assert_int_equal(md->last_login, 7);     /* unchanged in memory too */
	maildrop_close(md);
	b = stat_rel(f, "pop3d.state");
	assert_int_equal(a.st_ino, b.st_ino);    /* the very same file, untouched */
	state_is(f, good);

	/* A doubtful file is not even set aside when the new one cannot be written. */
	fix_tmp(f);
	puts_(f, "pop3d.state", bad, 0);
	md = open_ok(f);
	assert_int_equal(md->state_ok, 0);
	break_tmp(f);
	assert_int_equal(maildrop_record_login(md, T0), -1);
	maildrop_close(md);
	state_is(f, bad);
	assert_int_equal(count_prefix(f, ".", "pop3d.state.bad-"), 0);
	assert_int_equal(count_prefix(f, ".", "pop3d.state."), 0);
}

static void
test_update_records(void **state)
{
	struct fx *f = *state;
	struct maildrop *md;
	struct md_update_result res;

	puts_(f, "new/A", "a\n", T0 - 9 * DAY);
	puts_(f, "cur/B:2,S", "b\n", T0 - 8 * DAY);
	puts_(f, "new/C", "c\n", T0 - 7 * DAY);
	puts_(f, "new/D", "d\n", T0 - 6 * DAY);
	puts_(f, "new/E", "e\n", T0 - 5 * DAY);
	puts_(f, "pop3d.state", "pop3d-state 1\nlast_login 3\nB 1000 7\nC 2000 7\n", 0);

	md = open_ok(f);
	by_uidl(md, "A")->flags |= MSG_RETR;                        /* first download */
	by_uidl(md, "B")->flags |= MSG_RETR;                        /* downloaded before */
	by_uidl(md, "C")->flags |= MSG_RETR | MSG_DELE | MSG_REMOVE; /* goes; its record stays
	                                                                until a sweep prunes it */
	by_uidl(md, "E")->flags |= MSG_RETR | MSG_REMOVE;            /* goes by policy; recorded
	                                                                first, in case we die */
	md->now = T0;
	md->promise_days = 30;
	maildrop_quit(md);
	assert_int_equal(maildrop_update(md, &res), 0);
	assert_int_equal(res.removed, 2);
	assert_int_equal(res.seen, 1);
	assert_int_equal(by_uidl(md, "A")->has_record, 1);
	assert_int_equal(by_uidl(md, "A")->first_download, T0);
	maildrop_close(md);
	/* Written before the unlinks: a crash in between leaves every record right. */
	state_is(f, "pop3d-state 1\nlast_login 3\nA 1700000000 30\nB 1000 7\nC 2000 7\n"
	         "E 1700000000 30\n");
	assert_false(exists(f, "new/C"));
	assert_false(exists(f, "new/E"));
	assert_true(exists(f, "cur/A:2,S"));

	/* Downloaded again later under another promise: the first download never moves. */
	md = open_ok(f);
	by_uidl(md, "A")->flags |= MSG_RETR;
	by_uidl(md, "B")->flags |= MSG_RETR;
	by_uidl(md, "D")->flags |= MSG_RETR;
	md->now = T0 + 5 * DAY;
	md->promise_days = -1;
	maildrop_quit(md);
	assert_int_equal(maildrop_update(md, &res), 0);
	maildrop_close(md);
	state_is(f, "pop3d-state 1\nlast_login 3\nA 1700000000 30\nB 1000 7\nD 1700432000 -1\n"
	         "C 2000 7\nE 1700000000 30\n");

	/* Nothing changes: nothing is written. */
	{
		struct stat a = stat_rel(f, "pop3d.state"), b;

		md = open_ok(f);
		by_uidl(md, "A")->flags |= MSG_RETR;
		md->now = T0 + 9 * DAY;
		maildrop_quit(md);
		assert_int_equal(maildrop_update(md, &res), 0);
		maildrop_close(md);
		b = stat_rel(f, "pop3d.state");
		assert_int_equal(a.st_ino, b.st_ino);
	}

	/* Without a time set (md->now 0) the record takes the clock, never 0. */
	puts_(f, "new/F", "f\n", T0);
	md = open_ok(f);
	by_uidl(md, "F")->flags |= MSG_RETR;
	maildrop_quit(md);
	assert_int_equal(maildrop_update(md, &res), 0);
	assert_true(by_uidl(md, "F")->first_download >= time(NULL) - 60);
	maildrop_close(md);
}

static void
test_update_state_failure(void **state)
{
	struct fx *f = *state;
	struct maildrop *md;
	struct md_update_result res;

	puts_(f, "new/A", "a\n", T0 - 9 * DAY);
	puts_(f, "new/B", "b\n", T0 - 8 * DAY);
	puts_(f, "new/C", "c\n", T0 - 7 * DAY);
	puts_(f, "new/D", "d\n", T0 - 6 * DAY);
	puts_(f, "pop3d.state", "pop3d-state 1\nlast_login 3\n", 0);

	md = open_ok(f);
	by_uidl(md, "A")->flags |= MSG_DELE | MSG_REMOVE;            /* the client asked */
	by_uidl(md, "B")->flags |= MSG_RETR | MSG_REMOVE;            /* the policy alone */
	by_uidl(md, "C")->flags |= MSG_RETR;                         /* first download */
	md->now = T0;
	md->promise_days = 10;
	break_tmp(f);
	maildrop_quit(md);
	assert_int_equal(maildrop_update(md, &res), 1);
	assert_int_equal(res.removed, 1);
	assert_int_equal(res.failed, 1);
	assert_non_null(strstr(md->err, "state"));
	assert_int_equal(by_uidl(md, "C")->has_record, 0);
	maildrop_close(md);
	assert_false(exists(f, "new/A"));
	assert_true(exists(f, "new/B"));               /* on doubt keep */
	assert_true(exists(f, "cur/C:2,S"));           /* seen, no record: kept by later sweeps */
	assert_true(exists(f, "new/D"));
	state_is(f, "pop3d-state 1\nlast_login 3\n");
}

static void
test_update_doubt_set_aside(void **state)
{
	struct fx *f = *state;
	struct maildrop *md;
	struct md_update_result res;

	three(f);
	puts_(f, "pop3d.state", "pop3d-state 1\nlast_login 3\nA 1 1\nA 1 1\n", 0);
	md = open_ok(f);
	assert_int_equal(md->state_ok, 0);
	by_uidl(md, "A")->flags |= MSG_RETR;
	md->now = T0;
	md->promise_days = 0;
	maildrop_quit(md);
	assert_int_equal(maildrop_update(md, &res), 0);
	assert_non_null(strstr(md->err, "pop3d.state.bad-"));
	maildrop_close(md);
	/* In doubt, the download is recorded as a first one now: later, never sooner. */
	state_is(f, "pop3d-state 1\nlast_login 0\nA 1700000000 0\n");
	assert_int_equal(count_prefix(f, ".", "pop3d.state.bad-"), 1);
}

/*
 * A state file that exists but could not be read (EIO, EACCES: what
 * md_state_read sets as state_unread; the errno itself is injected by
 * tests/integration/test_faults.py) is not evidence against its content: it
 * is neither set aside nor replaced, so UPDATE removes only what the client
 * deleted and records nothing, and a login time is not written either. A
 * symbolic link in its place is a file we did not write: doubt, set aside.
 */
static void
test_unreadable_state_untouched(void **state)
{
	struct fx *f = *state;
	struct maildrop *md;
	struct md_update_result res;
	char target[PATH_MAX], link[PATH_MAX];
	static const char healthy[] = "pop3d-state 1\nlast_login 3\nC 1699000000 30\n";

	puts_(f, "new/A", "a\n", T0 - 9 * DAY);
	puts_(f, "new/B", "b\n", T0 - 8 * DAY);
	puts_(f, "new/C", "c\n", T0 - 7 * DAY);
	puts_(f, "pop3d.state", healthy, 0);

	md = open_ok(f);
	assert_int_equal(md->state_ok, 1);
	assert_int_equal(md->state_unread, 0);
	md->state_ok = 0;           /* as md_state_read leaves it after a read error */
	md->state_unread = 1;
	by_uidl(md, "A")->flags |= MSG_DELE | MSG_REMOVE;
	by_uidl(md, "B")->flags |= MSG_RETR | MSG_REMOVE;
	md->now = T0;
	md->promise_days = 0;
	assert_int_equal(maildrop_record_login(md, T0), -1);
	assert_non_null(strstr(md->err, "could not be read"));
	maildrop_quit(md);
	assert_int_equal(maildrop_update(md, &res), 1);
	assert_int_equal(res.state_failed, 1);
	assert_int_equal(res.removed, 1);
	assert_int_equal(res.failed, 1);
	maildrop_close(md);
	assert_false(exists(f, "new/A"));
	assert_true(exists(f, "new/B"));               /* the policy removal is refused: kept */
	assert_true(exists(f, "new/C"));
	state_is(f, healthy);
	assert_int_equal(count_prefix(f, ".", "pop3d.state.bad-"), 0);

	pathf(target, sizeof target, f, "elsewhere");
	pathf(link, sizeof link, f, "pop3d.state");
	assert_int_equal(rename(link, target), 0);
	assert_int_equal(symlink(target, link), 0);
	md = open_ok(f);
	assert_int_equal(md->state_ok, 0);
	assert_int_equal(md->state_unread, 0);
	assert_int_equal(maildrop_record_login(md, T0), 0);
	maildrop_close(md);
	assert_int_equal(count_prefix(f, ".", "pop3d.state.bad-"), 1);
	state_is(f, "pop3d-state 1\nlast_login 1700000000\n");
}

static void
test_sweep_remove(void **state)
{
	struct fx *f = *state;
	struct maildrop *md;
	struct md_update_result res;

	three(f);
	puts_(f, "new/D", "d\n", T0);
	puts_(f, "pop3d.state", "pop3d-state 1\nlast_login 3\nA 1 1\nB 2 2\nC 3 3\n", 0);

	/* A session maildrop: refused, nothing removed. */
	md = open_ok(f);
	by_uidl(md, "A")->flags |= MSG_REMOVE;
	assert_int_equal(maildrop_sweep_remove(md, &res), -1);
	maildrop_close(md);
	assert_true(exists(f, "new/A"));

	/* A sweep maildrop: no UPDATE, no login record. */
	md = open_sweep_ok(f);
	assert_int_equal(md->sweep, 1);
	maildrop_quit(md);
	by_uidl(md, "A")->flags |= MSG_REMOVE;
	assert_int_equal(maildrop_update(md, &res), -1);
	assert_int_equal(maildrop_record_login(md, T0), -1);
	assert_true(exists(f, "new/A"));

	/* Removes exactly the marked ones and drops their records. */
	by_uidl(md, "C")->flags |= MSG_REMOVE;
	by_uidl(md, "D")->flags |= MSG_REMOVE;
	assert_int_equal(maildrop_sweep_remove(md, &res), 0);
	assert_int_equal(res.removed, 3);
	assert_int_equal(res.failed, 0);
	maildrop_close(md);
	assert_false(exists(f, "new/A"));
	assert_true(exists(f, "cur/B:2,S"));
	assert_false(exists(f, "new/C"));
	assert_false(exists(f, "new/D"));
	state_is(f, "pop3d-state 1\nlast_login 3\nB 2 2\n");

	/* One that cannot be removed keeps its record and loses MSG_REMOVE. */
	puts_(f, "new/E", "e\n", T0);
	puts_(f, "pop3d.state", "pop3d-state 1\nlast_login 3\nB 2 2\nE 4 4\n", 0);
	md = open_sweep_ok(f);
	by_uidl(md, "B")->flags |= MSG_REMOVE;
	by_uidl(md, "E")->flags |= MSG_REMOVE;
	{
		char p[PATH_MAX];

		rm(f, "new/E");
		pathf(p, sizeof p, f, "new/E");
		assert_int_equal(mkdir(p, 0700), 0);      /* unlink: EISDIR */
	}
	assert_int_equal(maildrop_sweep_remove(md, &res), 1);
	assert_int_equal(res.removed, 1);
	assert_int_equal(res.failed, 1);
	assert_int_equal(by_uidl(md, "E")->flags & MSG_REMOVE, 0);
	assert_true((by_uidl(md, "B")->flags & MSG_REMOVE) != 0);
	maildrop_close(md);
	state_is(f, "pop3d-state 1\nlast_login 3\nE 4 4\n");
}

/*
 * A sweep lists before it locks: a session may meanwhile record the download
 * of mail delivered after the listing. The sweep's state write must keep that
 * record (and drop only what it removed).
 */
static void
test_sweep_keeps_records_it_did_not_list(void **state)
{
	struct fx *f = *state;
	struct md_update_result res;
	struct maildrop *md = NULL;
	char err[256];

	three(f);
	puts_(f, "pop3d.state", "pop3d-state 1\nlast_login 0\nB 1690000000 1\n", 0);
	assert_int_equal(maildrop_scan_sweep(f->root, &md, err, sizeof err), MD_OK);
	assert_int_equal(md->n, 3);
	/* Meanwhile: X delivered, downloaded and recorded by a session. */
	puts_(f, "new/X", "x\n", T0);
	puts_(f, "pop3d.state", "pop3d-state 1\nlast_login 7\nB 1690000000 1\nX 1700000000 30\n", 0);
	by_uidl(md, "B")->flags |= MSG_REMOVE;
	assert_int_equal(maildrop_sweep_claim(md, 0, err, sizeof err), MD_OK);
	assert_int_equal(by_uidl(md, "B")->has_record, 1);
	assert_int_equal(maildrop_sweep_remove(md, &res), 0);
	assert_int_equal(res.removed, 1);
	maildrop_close(md);
	state_is(f, "pop3d-state 1\nlast_login 7\nX 1700000000 30\n");
}

/*
 * A candidate renamed between the claim and its unlink (a flag set over IMAP)
 * is left alone: the sweep decided on the file under the old name, and the
 * next sweep decides on the new one. Not a failure either.
 */
static void
test_sweep_does_not_follow_a_rename(void **state)
{
	struct fx *f = *state;
	struct md_update_result res;
	struct maildrop *md = NULL;
	char err[256], a[PATH_MAX], b[PATH_MAX];

	three(f);
	assert_int_equal(maildrop_scan_sweep(f->root, &md, err, sizeof err), MD_OK);
	by_uidl(md, "A")->flags |= MSG_REMOVE;
	assert_int_equal(maildrop_sweep_claim(md, 0, err, sizeof err), MD_OK);
	assert_true(by_uidl(md, "A")->flags & MSG_REMOVE);
	pathf(a, sizeof a, f, "new/A");
	pathf(b, sizeof b, f, "cur/A:2,S");
	assert_int_equal(rename(a, b), 0);
	assert_int_equal(maildrop_sweep_remove(md, &res), 0);
	assert_int_equal(res.removed, 0);
	assert_int_equal(res.failed, 0);
	assert_false(by_uidl(md, "A")->flags & MSG_REMOVE);
	maildrop_close(md);
	assert_int_equal(access(b, F_OK), 0);
}

static void
test_login_record(void **state)
{
	struct fx *f = *state;
	struct maildrop *md, *other = NULL;
	char err[256];

	three(f);
	md = open_ok(f);
	assert_int_equal(md->last_login, 0);
	assert_int_equal(maildrop_record_login(md, T0), 0);
	/* Still locked: another session or a sweep cannot get in meanwhile. */
	assert_int_equal(maildrop_open_sweep(f->root, &other, err, sizeof err), MD_INUSE);
	maildrop_close(md);
	state_is(f, "pop3d-state 1\nlast_login 1700000000\n");
	md = open_ok(f);
	assert_int_equal(md->last_login, T0);
	assert_int_equal(maildrop_record_login(md, T0 + 60), 0);
	maildrop_close(md);
	md = open_ok(f);
	assert_int_equal(md->last_login, T0 + 60);
	maildrop_close(md);
	assert_int_equal(maildrop_record_login(NULL, T0), -1);
}

/*
 * Killing the writer at any instant leaves either the old or the new file,
 * never a partial one: a child rewrites the state in a loop and is killed
 * after a varying delay; every time, the file must read without doubt.
 */
static void
test_kill_while_writing(void **state)
{
	struct fx *f = *state;
	struct maildrop *md;
	char rel[32];
	int round, i, status;
	pid_t pid;

	for (i = 0; i < 200; i++) {
		snprintf(rel, sizeof rel, "new/M%03d", i);
		puts_(f, rel, "m\n", T0 - DAY + i);
	}
	md = open_ok(f);
	for (i = 0; i < (int)md->n; i++) {
		md->msgs[i].has_record = 1;
		md->msgs[i].first_download = T0 + i;
		md->msgs[i].promised_days = i;
	}
	assert_int_equal(maildrop_record_login(md, 1), 0);
	maildrop_close(md);

	for (round = 0; round < 25; round++) {
		pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			struct maildrop *c = NULL;
			char e[256];
			int64_t n;

			if (maildrop_open(f->root, &c, e, sizeof e) != MD_OK)
				_exit(3);
			for (n = 2;; n++)
				if (maildrop_record_login(c, n) != 0)
					_exit(4);
		}
		usleep((useconds_t)(1000 + round * 1700));
		assert_int_equal(kill(pid, SIGKILL), 0);
		assert_int_equal(waitpid(pid, &status, 0), pid);
		assert_true(WIFSIGNALED(status));
		md = open_ok(f);
		assert_int_equal(md->state_ok, 1);
		assert_int_equal(md->n, 200);
		for (i = 0; i < (int)md->n; i++) {
			assert_int_equal(md->msgs[i].has_record, 1);
			assert_int_equal(md->msgs[i].first_download, T0 + i);
		}
		maildrop_close(md);
	}
	/* A killed writer may leave its temp file in tmp/, never anything in place. */
	assert_int_equal(count_prefix(f, ".", "pop3d.state.bad-"), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_missing_is_ok, setup, teardown),
		cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unlisted_records_kept_until_a_sweep_finds_them_gone, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sweep_does_not_follow_a_rename, setup, teardown),
		cmocka_unit_test_setup_teardown(test_vanished_records, setup, teardown),
		cmocka_unit_test_setup_teardown(test_corrupt_is_doubt, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_file_set_aside, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_failure_leaves_old, setup, teardown),
		cmocka_unit_test_setup_teardown(test_update_records, setup, teardown),
		cmocka_unit_test_setup_teardown(test_update_state_failure, setup, teardown),
		cmocka_unit_test_setup_teardown(test_update_doubt_set_aside, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unreadable_state_untouched, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sweep_remove, setup, teardown),
		cmocka_unit_test_setup_teardown(test_login_record, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sweep_keeps_records_it_did_not_list, setup, teardown),
		cmocka_unit_test_setup_teardown(test_kill_while_writing, setup, teardown),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
