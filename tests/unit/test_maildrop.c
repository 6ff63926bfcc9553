/*
 * test_maildrop: maildrop/ (maildir.c, cache.c, update.c) through maildrop.h
 * (the download state, state.c, has its own test_state.c),
 * each test in its own mkdtemp folder. Tests run as root, so nothing here
 * relies on permissions to prove a file was not read.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
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

#include <openssl/evp.h>

#include "maildrop/maildrop.h"
#include "server/strutil.h"

extern char **environ;

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

static int
setup(void **state)
{
	struct fx *f = calloc(1, sizeof *f);

	assert_non_null(f);
	snprintf(f->dir, sizeof f->dir, "/tmp/test_maildrop.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->root, sizeof f->root, "%s/Maildir", f->dir);
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
pathf(char *out, size_t outlen, const struct fx *f, const char *rel)
{
	int k = snprintf(out, outlen, "%s/%s", f->root, rel);

	assert_true(k > 0 && (size_t)k < outlen);
}

static void
mkmaildir(const struct fx *f)
{
	char p[PATH_MAX];

	assert_int_equal(mkdir(f->root, 0700), 0);
	pathf(p, sizeof p, f, "new");
	assert_int_equal(mkdir(p, 0700), 0);
	pathf(p, sizeof p, f, "cur");
	assert_int_equal(mkdir(p, 0700), 0);
	pathf(p, sizeof p, f, "tmp");
	assert_int_equal(mkdir(p, 0700), 0);
}

static void
set_mtime(const char *path, time_t t)
{
	struct timespec ts[2] = { { t, 0 }, { t, 0 } };

	assert_int_equal(utimensat(AT_FDCWD, path, ts, AT_SYMLINK_NOFOLLOW), 0);
}

/* Write rel under the root with the given bytes; mtime 0 leaves the current time. */
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
	if (mtime != 0)
		set_mtime(p, mtime);
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
ren(const struct fx *f, const char *from, const char *to)
{
	char a[PATH_MAX], b[PATH_MAX];

	pathf(a, sizeof a, f, from);
	pathf(b, sizeof b, f, to);
	assert_int_equal(rename(a, b), 0);
}

static void
rm(const struct fx *f, const char *rel)
{
	char p[PATH_MAX];

	pathf(p, sizeof p, f, rel);
	assert_int_equal(unlink(p), 0);
}

/* Whole file into a malloc'd buffer (NUL-terminated for convenience). */
static char *
slurp(const char *path, size_t *len)
{
	struct stat st;
	char *b;
	int fd = open(path, O_RDONLY);

	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	b = malloc((size_t)st.st_size + 1);
	assert_non_null(b);
	assert_int_equal(read(fd, b, (size_t)st.st_size), st.st_size);
	close(fd);
	b[st.st_size] = '\0';
	*len = (size_t)st.st_size;
	return b;
}

static char *
slurp_fd(int fd, size_t *len)
{
	size_t cap = 4096, n = 0;
	char *b = malloc(cap);
	ssize_t r;

	assert_non_null(b);
	for (;;) {
		if (n == cap) {
			cap *= 2;
			b = realloc(b, cap);
			assert_non_null(b);
		}
		r = read(fd, b + n, cap - n);
		assert_true(r >= 0);
		if (r == 0)
			break;
		n += (size_t)r;
	}
	*len = n;
	return b;
}

static ssize_t
find_msg(const struct maildrop *md, const char *file)
{
	size_t i;

	for (i = 0; i < md->n; i++)
		if (strcmp(md->msgs[i].file, file) == 0)
			return (ssize_t)i;
	return -1;
}

static struct maildrop *
open_ok(const struct fx *f)
{
	struct maildrop *md = NULL;
	char err[256];
	enum md_status st = maildrop_open(f->root, &md, err, sizeof err);

	if (st != MD_OK)
		fail_msg("maildrop_open: %d %s", st, err);
	assert_non_null(md);
	return md;
}

/* Size of the only listed message with this file name. */
static uint64_t
size_of(const struct fx *f, const char *file)
{
	struct maildrop *md = open_ok(f);
	ssize_t i = find_msg(md, file);
	uint64_t n;

	assert_true(i >= 0);
	n = md->msgs[i].size;
	maildrop_close(md);
	return n;
}

static struct stat
stat_rel(const struct fx *f, const char *rel)
{
	char p[PATH_MAX];
	struct stat st;

	pathf(p, sizeof p, f, rel);
	assert_int_equal(stat(p, &st), 0);
	return st;
}

static int
same_file_version(const struct stat *a, const struct stat *b)
{
	return a->st_ino == b->st_ino && a->st_mtim.tv_sec == b->st_mtim.tv_sec &&
	    a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

/* Entries in ROOT/tmp (the cache writer must leave nothing behind). */
static size_t
count_tmp(const struct fx *f)
{
	char p[PATH_MAX], cmd[PATH_MAX + 64];
	FILE *fp;
	size_t n = 0;
	int c;

	pathf(p, sizeof p, f, "tmp");
	snprintf(cmd, sizeof cmd, "ls -A '%s'", p);
	fp = popen(cmd, "r");
	assert_non_null(fp);
	while ((c = fgetc(fp)) != EOF)
		n += c == '\n';
	pclose(fp);
	return n;
}

/* ---- crlf_count ---- */

static void
test_crlf_count_splits(void **state)
{
	static const char s[] = "a\r\nb\nc\r\rd\n\n\r\r\n.\nend\r";
	size_t n = sizeof s - 1, i, j;
	struct crlf_count one = { 0, 0 };

	(void)state;
	crlf_count_update(&one, s, n);
	/* bare LFs: after "b", after "d", the empty line, after "." */
	assert_int_equal(one.size, n + 4);
	for (i = 0; i <= n; i++) {
		for (j = i; j <= n; j++) {
			struct crlf_count c = { 0, 0 };

			crlf_count_update(&c, s, i);
			crlf_count_update(&c, s + i, j - i);
			crlf_count_update(&c, s + j, n - j);
			assert_int_equal(c.size, one.size);
		}
	}
	{
		struct crlf_count c = { 0, 0 };

		crlf_count_update(&c, "\n", 1);
		assert_int_equal(c.size, 2);
		crlf_count_update(&c, "\r", 1);
		crlf_count_update(&c, "\n", 1);
		assert_int_equal(c.size, 4);
	}
}

/* ---- the corpus ---- */

static const char *
corpus_script(void)
{
	/* The tests run from the repository root; shared/ sits beside the clone. */
	static const char *const cand[] = {
		"../shared/corpus/make_corpus.py",
	};
	const char *env = getenv("POP3D_CORPUS_SCRIPT");
	size_t i;

	if (env != NULL && access(env, R_OK) == 0)
		return env;
	for (i = 0; i < sizeof cand / sizeof cand[0]; i++)
		if (access(cand[i], R_OK) == 0)
			return cand[i];
	return NULL;
}

struct row {
	char     path[PATH_MAX];
	uint64_t disk;
	uint64_t pop3;
	int      listed;
};

static size_t
read_manifest(const struct fx *f, struct row *rows, size_t max)
{
	char p[PATH_MAX];
	size_t len, pos, n = 0;
	char *b, *nl, *t1, *t2, *t3;

	snprintf(p, sizeof p, "%s/MANIFEST.tsv", f->dir);
	b = slurp(p, &len);
	nl = memchr(b, '\n', len);
	assert_non_null(nl);    /* the header line */
	for (pos = (size_t)(nl - b) + 1; pos < len; pos = (size_t)(nl - b) + 1) {
		char *l = b + pos;

		nl = memchr(l, '\n', len - pos);
		assert_non_null(nl);
		t1 = memchr(l, '\t', (size_t)(nl - l));
		assert_non_null(t1);
		t2 = memchr(t1 + 1, '\t', (size_t)(nl - t1 - 1));
		assert_non_null(t2);
		t3 = memchr(t2 + 1, '\t', (size_t)(nl - t2 - 1));
		assert_non_null(t3);
		assert_true(n < max);
		assert_true((size_t)(t1 - l) < sizeof rows[n].path);
		memcpy(rows[n].path, l, (size_t)(t1 - l));
		rows[n].path[t1 - l] = '\0';
		assert_int_equal(parse_u64(t1 + 1, (size_t)(t2 - t1 - 1), &rows[n].disk), 0);
		rows[n].listed = !(t3 - t2 - 1 == 1 && t2[1] == '-');
		if (rows[n].listed)
			assert_int_equal(parse_u64(t2 + 1, (size_t)(t3 - t2 - 1), &rows[n].pop3), 0);
		n++;
	}
	free(b);
	return n;
}

static void
check_corpus(const struct fx *f, const struct row *rows, size_t nrows)
{
	struct maildrop *md = open_ok(f);
	uint64_t total = 0;
	size_t i, k = 0, len;
	char *data;
	int fd;

	for (i = 0; i < nrows; i++) {
		if (!rows[i].listed) {
			assert_int_equal(find_msg(md, rows[i].path), -1);
			continue;
		}
		/* The manifest is in mtime order, which is the session's order. */
		assert_true(k < md->n);
		assert_string_equal(md->msgs[k].file, rows[i].path);
		assert_int_equal(md->msgs[k].size, rows[i].pop3);
		assert_int_equal(md->msgs[k].disk_size, rows[i].disk);
		assert_int_equal(md->msgs[k].flags, 0);
		assert_int_equal(strcspn(rows[i].path + 4, ":"), strlen(md->msgs[k].uidl));
		assert_memory_equal(md->msgs[k].uidl, rows[i].path + 4, strlen(md->msgs[k].uidl));
		fd = maildrop_msg_open(md, k);
		assert_true(fd >= 0);
		data = slurp_fd(fd, &len);
		close(fd);
		assert_int_equal(len, rows[i].disk);
		free(data);
		total += rows[i].pop3;
		k++;
	}
	assert_int_equal(md->n, k);
	assert_int_equal(md->total, total);
	for (i = 0; i < md->n; i++) {
		assert_true(strncmp(md->msgs[i].file, "tmp/", 4) != 0);
		assert_true(md->msgs[i].file[4] != '.');
	}
	maildrop_close(md);
}

static void
test_corpus(void **state)
{
	struct fx *f = *state;
	const char *script = corpus_script();
	char *argv[4];
	struct row rows[64];
	size_t nrows, listed = 0, i;
	struct stat c1, c2;
	pid_t pid;
	int status;

	if (script == NULL) {
		print_message("make_corpus.py not found (set POP3D_CORPUS_SCRIPT)\n");
		skip();
	}
	argv[0] = (char *)(uintptr_t)"python3";
	argv[1] = (char *)(uintptr_t)script;
	argv[2] = f->root;
	argv[3] = NULL;
	assert_int_equal(posix_spawnp(&pid, "python3", NULL, NULL, argv, environ), 0);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);

	nrows = read_manifest(f, rows, sizeof rows / sizeof rows[0]);
	for (i = 0; i < nrows; i++)
		listed += (size_t)rows[i].listed;
	assert_true(listed >= 18);
	assert_true(nrows > listed);

	check_corpus(f, rows, nrows);          /* reads every file, writes the cache */
	assert_true(exists(f, "pop3d.cache"));
	assert_true(exists(f, "pop3d.lock"));
	c1 = stat_rel(f, "pop3d.cache");
	check_corpus(f, rows, nrows);          /* from the cache */
	c2 = stat_rel(f, "pop3d.cache");
	assert_true(same_file_version(&c1, &c2));
	/* tmp/ holds the corpus's undelivered message, and nothing of ours. */
	assert_int_equal(count_tmp(f), 1);
}

/* ---- creating the maildir ---- */

static void
test_missing_maildir_created(void **state)
{
	struct fx *f = *state;
	struct maildrop *md = NULL;
	char err[256];
	struct stat st;
	const char *subs[] = { "", "/new", "/cur", "/tmp" };
	char p[PATH_MAX];
	size_t i;

	snprintf(f->root, sizeof f->root, "%s/a/b/Maildir", f->dir);
	assert_int_equal(maildrop_open(f->root, &md, err, sizeof err), MD_OK);
	assert_int_equal(md->n, 0);
	assert_int_equal(md->total, 0);
	for (i = 0; i < 4; i++) {
		snprintf(p, sizeof p, "%s%s", f->root, subs[i]);
		assert_int_equal(stat(p, &st), 0);
		assert_true(S_ISDIR(st.st_mode));
		assert_int_equal(st.st_mode & 077, 0);
	}
	maildrop_close(md);
	assert_true(exists(f, "pop3d.lock"));   /* never unlinked */
	/* An empty maildrop writes no cache. */
	assert_false(exists(f, "pop3d.cache"));
}

static void
test_path_not_a_folder(void **state)
{
	struct fx *f = *state;
	struct maildrop *md = NULL;
	char err[256], p[PATH_MAX];
	int fd;

	snprintf(p, sizeof p, "%s/file", f->dir);
	fd = open(p, O_WRONLY | O_CREAT, 0600);
	assert_true(fd >= 0);
	close(fd);

	/* a component that is a file */
	snprintf(f->root, sizeof f->root, "%s/file/Maildir", f->dir);
	assert_int_equal(maildrop_open(f->root, &md, err, sizeof err), MD_PERM);
	assert_null(md);
	assert_non_null(strstr(err, "Not a directory"));

	/* the root itself is a file */
	snprintf(f->root, sizeof f->root, "%s/file", f->dir);
	err[0] = '\0';
	assert_int_equal(maildrop_open(f->root, &md, err, sizeof err), MD_PERM);
	assert_non_null(strstr(err, "Not a directory"));

	/* tmp/ is a file */
	snprintf(f->root, sizeof f->root, "%s/Maildir", f->dir);
	assert_int_equal(mkdir(f->root, 0700), 0);
	puts_(f, "tmp", "x", 0);
	err[0] = '\0';
	assert_int_equal(maildrop_open(f->root, &md, err, sizeof err), MD_PERM);
	assert_non_null(strstr(err, "tmp"));

	err[0] = '\0';
	assert_int_equal(maildrop_open("", &md, err, sizeof err), MD_PERM);
	assert_true(err[0] != '\0');
}

/* ---- scanning ---- */

static void
test_order_and_skips(void **state)
{
	struct fx *f = *state;
	struct maildrop *md;
	char a[PATH_MAX], b[PATH_MAX];

	mkmaildir(f);
	puts_(f, "cur/a:2,S", "a\n", 3000);
	puts_(f, "new/z", "z\n", 1000);
	puts_(f, "cur/b:2,", "b\n", 1000);
	puts_(f, "new/.dot", "x\n", 10);
	puts_(f, "cur/.dot:2,S", "x\n", 10);
	puts_(f, "tmp/t", "x\n", 10);
	pathf(a, sizeof a, f, "new/dir");
	assert_int_equal(mkdir(a, 0700), 0);
	pathf(a, sizeof a, f, "new/fifo");
	assert_int_equal(mkfifo(a, 0600), 0);
	pathf(a, sizeof a, f, "new/link");
	pathf(b, sizeof b, f, "new/z");
	assert_int_equal(symlink(b, a), 0);

	md = open_ok(f);
	assert_int_equal(md->n, 3);
	assert_string_equal(md->msgs[0].file, "cur/b:2,");
	assert_string_equal(md->msgs[1].file, "new/z");
	assert_string_equal(md->msgs[2].file, "cur/a:2,S");
	assert_int_equal(md->msgs[0].mtime, 1000);
	assert_int_equal(md->msgs[2].mtime, 3000);
	assert_int_equal(md->total, 9);
	maildrop_close(md);
}

static void
test_w_names(void **state)
{
	struct fx *f = *state;
	struct maildrop *md;
	char body[100];
	struct stat c1, c2;

	mkmaildir(f);
	memset(body, 'x', sizeof body);
	body[49] = '\n';
	body[99] = '\n';            /* 100 octets, CRLF size 102 */
	put(f, "new/2000.W1,W=150", body, sizeof body, 2000);
	put(f, "cur/2001.W2,S=100,W=120:2,S", body, sizeof body, 2001);
	puts_(f, "new/2002.W3,W=12x", "ab\n", 2002);
	puts_(f, "new/2003.W4,W=999", "ab\n", 2003);      /* no 3-octet file has 999 */
	puts_(f, "new/2004.W5,W=", "ab\n", 2004);
	puts_(f, "new/2005.W6,W=-4", "ab\n", 2005);
	puts_(f, "new/2006.W7,W=+4", "ab\n", 2006);
	puts_(f, "new/2007.W8,W=4,S=3", "ab\n", 2007);

	md = open_ok(f);
	assert_int_equal(md->n, 8);
	assert_int_equal(md->msgs[0].size, 150);      /* trusted, not counted */
	assert_int_equal(md->msgs[0].disk_size, 100);
	assert_int_equal(md->msgs[1].size, 120);
	assert_int_equal(md->msgs[2].size, 4);
	assert_int_equal(md->msgs[3].size, 4);
	assert_int_equal(md->msgs[4].size, 4);
	assert_int_equal(md->msgs[5].size, 4);
	assert_int_equal(md->msgs[6].size, 4);
	assert_int_equal(md->msgs[7].size, 4);
	assert_int_equal(md->total, 150 + 120 + 6 * 4);
	maildrop_close(md);

	/* Second and third opens: same sizes, and the cache is not rewritten
	 * (an implausible W= must not make every login dirty the cache). */
	md = open_ok(f);
	assert_int_equal(md->msgs[0].size, 150);
	assert_int_equal(md->msgs[3].size, 4);
	maildrop_close(md);
	c1 = stat_rel(f, "pop3d.cache");
	md = open_ok(f);
	assert_int_equal(md->msgs[3].size, 4);
	maildrop_close(md);
	c2 = stat_rel(f, "pop3d.cache");
	assert_true(same_file_version(&c1, &c2));
}

static void
test_cache_used(void **state)
{
	struct fx *f = *state;
	struct maildrop *md;
	struct stat c1, c2;
	char p[PATH_MAX], *cache;
	size_t len;

	mkmaildir(f);
	puts_(f, "new/1000.A", "a\nb\n", 1000);           /* 4 octets, CRLF size 6 */
	puts_(f, "cur/1001.B,S=3:2,S", "ab\n", 1001);
	puts_(f, "new/1002.C", "gone\n", 1002);
	assert_int_equal(size_of(f, "new/1000.A"), 6);
	assert_true(exists(f, "pop3d.cache"));
	pathf(p, sizeof p, f, "pop3d.cache");
	cache = slurp(p, &len);
	assert_string_equal(cache, "pop3d-size-cache 1\n"
	    "1000.A\t1000\t4\t6\n"
	    "1001.B,S=3\t1001\t3\t4\n"
	    "1002.C\t1002\t5\t6\n");
	free(cache);
	assert_int_equal(count_tmp(f), 0);
	c1 = stat_rel(f, "pop3d.cache");

	/* Same length, same mtime, different bytes: a reader would say 4. */
	puts_(f, "new/1000.A", "a\r\nb", 1000);
	md = open_ok(f);
	assert_int_equal(md->msgs[find_msg(md, "new/1000.A")].size, 6);
	assert_int_equal(md->msgs[find_msg(md, "new/1000.A")].mtime, 1000);
	maildrop_close(md);
	c2 = stat_rel(f, "pop3d.cache");
	assert_true(same_file_version(&c1, &c2));   /* nothing changed, nothing written */

	/* A flag change renames the file; the base name still finds the entry. */
	ren(f, "new/1000.A", "cur/1000.A:2,S");
	assert_int_equal(size_of(f, "cur/1000.A:2,S"), 6);

	/* A message gone: its line is dropped on the rewrite. */
	rm(f, "new/1002.C");
	md = open_ok(f);
	assert_int_equal(md->n, 2);
	maildrop_close(md);
	cache = slurp(p, &len);
	assert_null(strstr(cache, "1002.C"));
	assert_non_null(strstr(cache, "1000.A\t"));
	free(cache);

	/* Without the cache the file is read again, proving 6 came from it. */
	rm(f, "pop3d.cache");
	assert_int_equal(size_of(f, "cur/1000.A:2,S"), 4);
	assert_int_equal(count_tmp(f), 0);
}

/* The message M1 holds "x\n": CRLF size 3. A cache that says 4 must be ignored
 * unless it parses strictly. */
static void
with_cache(const struct fx *f, const char *content, size_t n, uint64_t want)
{
	put(f, "pop3d.cache", content, n, 0);
	assert_int_equal(size_of(f, "new/M1"), want);
}

static void
test_cache_corrupt(void **state)
{
	static const char *const bad[] = {
		"pop3d-size-cache 2\nM1\t1000\t2\t4\n",
		"pop3d-size-cache 1 \nM1\t1000\t2\t4\n",
		"M1\t1000\t2\t4\n",
		"pop3d-size-cache 1\nM1\t1000\t2\t4\textra\n",
		"pop3d-size-cache 1\nM1\t1000\t2\n",
		"pop3d-size-cache 1\nM1\t+1000\t2\t4\n",
		"pop3d-size-cache 1\nM1\t1000\t 2\t4\n",
		"pop3d-size-cache 1\nM1\t1000\t2\t4 \n",
		"pop3d-size-cache 1\nM1\t1000\t2\t4",
		"pop3d-size-cache 1\nM1\t99999999999999999999\t2\t4\n",
		"pop3d-size-cache 1\nM1\t9223372036854775808\t2\t4\n",
		"pop3d-size-cache 1\nM1\t-5\t2\t4\n",
		"pop3d-size-cache 1\nM1\t1000\t2\t5\n",      /* more than twice the disk size */
		"pop3d-size-cache 1\nM1\t1000\t2\t1\n",      /* less than the disk size */
		"pop3d-size-cache 1\nM1\t1000\t\t4\n",
		"pop3d-size-cache 1\n\t1000\t2\t4\n",
		"pop3d-size-cache 1\nM1\t1000\t2\t4\nM1\t1000\t2\t4\n",  /* twice: neither */
		"",
	};
	static const char bin[] = "pop3d-size-cache 1\n\x00\xff\tM1\t1000\t2\t4\n\x01";
	struct fx *f = *state;
	struct maildrop *md;
	char p[PATH_MAX];
	size_t i;
	int fd;

	mkmaildir(f);
	puts_(f, "new/M1", "x\n", 1000);
	puts_(f, "cur/1001.S,S=3:2,S", "ab\n", 1001);
	/* The control: a strict line is believed. */
	with_cache(f, "pop3d-size-cache 1\nM1\t1000\t2\t4\n", 31, 4);
	for (i = 0; i < sizeof bad / sizeof bad[0]; i++)
		with_cache(f, bad[i], strlen(bad[i]), 3);
	with_cache(f, bin, sizeof bin - 1, 3);

	/* ,S= in the name disagrees with the cached disk size: recounted. */
	puts_(f, "pop3d.cache", "pop3d-size-cache 1\n1001.S,S=3\t1001\t4\t8\n", 0);
	assert_int_equal(size_of(f, "cur/1001.S,S=3:2,S"), 4);

	/* Over 64 MiB: not read at all, even with a good first line. */
	puts_(f, "pop3d.cache", "pop3d-size-cache 1\nM1\t1000\t2\t4\n", 0);
	pathf(p, sizeof p, f, "pop3d.cache");
	fd = open(p, O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 64 * 1024 * 1024 + 1), 0);
	close(fd);
	assert_int_equal(size_of(f, "new/M1"), 3);

	/* A folder where the cache should be: ignored, the session works. */
	rm(f, "pop3d.cache");
	assert_int_equal(mkdir(p, 0700), 0);
	md = open_ok(f);
	assert_int_equal(md->msgs[find_msg(md, "new/M1")].size, 3);
	maildrop_close(md);
	assert_int_equal(count_tmp(f), 0);
}

/* ---- locking ---- */

static void
test_lock_same_process(void **state)
{
	struct fx *f = *state;
	struct maildrop *a, *b = NULL;
	char err[256];

	a = open_ok(f);
	err[0] = '\0';
	assert_int_equal(maildrop_open(f->root, &b, err, sizeof err), MD_INUSE);
	assert_null(b);
	assert_true(err[0] != '\0');
	maildrop_close(a);
	b = open_ok(f);
	maildrop_close(b);
	maildrop_close(NULL);
}

static void
test_lock_child_exit(void **state)
{
	struct fx *f = *state;
	struct maildrop *md = NULL;
	int ready[2], hold[2], status;
	char err[256], c;
	pid_t pid;

	mkmaildir(f);
	assert_int_equal(pipe(ready), 0);
	assert_int_equal(pipe(hold), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct maildrop *cmd = NULL;

		close(ready[0]);
		close(hold[1]);
		c = maildrop_open(f->root, &cmd, err, sizeof err) == MD_OK ? 'y' : 'n';
		if (write(ready[1], &c, 1) != 1)
			_exit(2);
		while (read(hold[0], &c, 1) > 0)
			;
		_exit(0);   /* exits holding the lock: the kernel must drop it */
	}
	close(ready[1]);
	close(hold[0]);
	assert_int_equal(read(ready[0], &c, 1), 1);
	assert_int_equal(c, 'y');
	assert_int_equal(maildrop_open(f->root, &md, err, sizeof err), MD_INUSE);
	close(hold[1]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	close(ready[0]);
	assert_int_equal(maildrop_open(f->root, &md, err, sizeof err), MD_OK);
	maildrop_close(md);
}

/* ---- UIDLs ---- */

static void
expect_hash(const char *uidl, const char *base, size_t n)
{
	unsigned char dg[EVP_MAX_MD_SIZE];
	unsigned int dl;
	char hex[2 * 20 + 1];

	assert_int_equal(EVP_Digest(base, n, dg, &dl, EVP_sha256(), NULL), 1);
	hex_encode(hex, dg, 20);
	assert_int_equal(strlen(uidl), 41);
	assert_int_equal(uidl[0], 'H');
	assert_string_equal(uidl + 1, hex);
}

static void
test_uidl(void **state)
{
	struct fx *f = *state;
	struct maildrop *md, *md2;
	char n70[71], n71[72], rel[PATH_MAX], u[4][UIDL_MAX + 1];
	ssize_t i;
	size_t k;

	mkmaildir(f);
	memset(n70, 'u', 70);
	n70[70] = '\0';
	memset(n71, 'v', 71);
	n71[71] = '\0';
	snprintf(rel, sizeof rel, "cur/%s:2,S", n70);
	puts_(f, rel, "1\n", 100);
	snprintf(rel, sizeof rel, "new/%s", n71);
	puts_(f, rel, "2\n", 101);
	puts_(f, "new/bad\001name", "3\n", 102);
	puts_(f, "new/sp ace", "4\n", 103);
	puts_(f, "cur/X:2,FS", "5\n", 104);
	puts_(f, "cur/:2,S", "6\n", 105);

	md = open_ok(f);
	assert_int_equal(md->n, 6);
	assert_string_equal(md->msgs[0].uidl, n70);                 /* 70: as is */
	expect_hash(md->msgs[1].uidl, n71, 71);                     /* 71: hashed */
	expect_hash(md->msgs[2].uidl, "bad\001name", 8);
	expect_hash(md->msgs[3].uidl, "sp ace", 6);
	assert_string_equal(md->msgs[4].uidl, "X");                 /* before ':' */
	expect_hash(md->msgs[5].uidl, "", 0);                       /* empty base */
	for (k = 0; k < md->n; k++) {
		const char *p;

		assert_true(strlen(md->msgs[k].uidl) >= 1 && strlen(md->msgs[k].uidl) <= UIDL_MAX);
		for (p = md->msgs[k].uidl; *p; p++)
			assert_true(*p >= 0x21 && *p <= 0x7e);
	}
	for (k = 0; k < 4; k++)
		memcpy(u[k], md->msgs[k].uidl, sizeof u[k]);
	maildrop_close(md);

	/* Deterministic: the same UIDLs from the cache path. */
	md2 = open_ok(f);
	for (k = 0; k < 4; k++)
		assert_string_equal(md2->msgs[k].uidl, u[k]);
	i = find_msg(md2, "new/bad\001name");
	assert_true(i >= 0);
	maildrop_close(md2);
}

/*
 * A file literally named like another name's hash must not share its UIDL
 * (found by tests/fuzz/fuzz_maildir: "a b" hashes to Hc8687a08...).
 */
static void
test_uidl_hash_lookalike(void **state)
{
	struct fx *f = *state;
	struct maildrop *md;
	char hashed[UIDL_MAX + 1];

	mkmaildir(f);
	puts_(f, "new/a b", "1\n", 100);
	md = open_ok(f);
	assert_int_equal(md->n, 1);
	snprintf(hashed, sizeof hashed, "%s", md->msgs[0].uidl);
	maildrop_close(md);
	assert_int_equal(hashed[0], 'H');
	{
		char rel[PATH_MAX];
		snprintf(rel, sizeof rel, "new/%s", hashed);
		puts_(f, rel, "2\n", 101);
	}
	puts_(f, "new/HC8687A08AA5D6ED2044328FA6A697AB8E96DC342", "3\n", 102);  /* upper case: literal */
	md = open_ok(f);
	assert_int_equal(md->n, 3);
	assert_string_equal(md->msgs[0].uidl, hashed);
	assert_string_not_equal(md->msgs[1].uidl, hashed);            /* the look-alike is hashed */
	expect_hash(md->msgs[1].uidl, hashed, strlen(hashed));
	assert_string_equal(md->msgs[2].uidl, "HC8687A08AA5D6ED2044328FA6A697AB8E96DC342");
	maildrop_close(md);
}

static void
test_duplicates(void **state)
{
	struct fx *f = *state;
	struct maildrop *md;
	struct md_update_result res;

	mkmaildir(f);
	puts_(f, "new/D1", "one\n", 100);
	puts_(f, "cur/D1:2,S", "one\n", 100);
	puts_(f, "new/D2", "two\n", 101);
	md = open_ok(f);
	assert_int_equal(md->n, 2);
	assert_string_equal(md->msgs[0].file, "cur/D1:2,S");
	assert_string_equal(md->msgs[1].file, "new/D2");
	assert_int_equal(md->total, 10);
	md->msgs[0].flags |= MSG_DELE | MSG_REMOVE;
	maildrop_quit(md);
	assert_int_equal(maildrop_update(md, &res), 0);
	assert_int_equal(res.removed, 1);
	maildrop_close(md);
	assert_false(exists(f, "cur/D1:2,S"));
	assert_true(exists(f, "new/D1"));     /* the duplicate: not touched */
	assert_true(exists(f, "new/D2"));
}

/* The three copies of one message: the file name that sorts first is listed, cache or not. */
static void
test_duplicates_three(void **state)
{
	struct fx *f = *state;
	struct maildrop *md;
	int pass;

	mkmaildir(f);
	puts_(f, "new/T1", "one\n", 100);
	puts_(f, "cur/T1:2,S", "one\n", 100);
	puts_(f, "cur/T1:2,RS", "one\n", 100);
	puts_(f, "cur/T0:2,S", "zero\n", 100);
	puts_(f, "new/T0", "zero\n", 100);
	for (pass = 0; pass < 2; pass++) {   /* without, then with the cache */
		md = open_ok(f);
		assert_int_equal(md->n, 2);
		assert_string_equal(md->msgs[0].file, "cur/T0:2,S");
		assert_string_equal(md->msgs[1].file, "cur/T1:2,RS");
		assert_string_equal(md->msgs[1].uidl, "T1");
		assert_int_equal(md->total, 11);
		maildrop_close(md);
		assert_true(exists(f, "pop3d.cache"));
	}
}

/* One open's listing, to compare opens. */
struct listing {
	size_t   n;
	char   **line;   /* "file uidl size disk_size mtime" */
};

static void
listing_of(const struct fx *f, struct listing *l)
{
	struct maildrop *md = open_ok(f);
	char buf[PATH_MAX + 128];
	size_t i;

	l->n = md->n;
	l->line = calloc(md->n ? md->n : 1, sizeof *l->line);
	assert_non_null(l->line);
	for (i = 0; i < md->n; i++) {
		const struct msg *m = &md->msgs[i];

		snprintf(buf, sizeof buf, "%s %s %llu %llu %lld", m->file, m->uidl,
		    (unsigned long long)m->size, (unsigned long long)m->disk_size, (long long)m->mtime);
		l->line[i] = strdup(buf);
		assert_non_null(l->line[i]);
		/* The rule: mtime, then base name, strictly (base names are unique). */
		if (i > 0) {
			const struct msg *p = &md->msgs[i - 1];
			size_t pn = strcspn(p->file + 4, ":"), mn = strcspn(m->file + 4, ":");
			int c = memcmp(p->file + 4, m->file + 4, pn < mn ? pn : mn);

			if (c == 0)
				c = pn < mn ? -1 : pn > mn;
			assert_true(p->mtime < m->mtime || (p->mtime == m->mtime && c < 0));
		}
	}
	maildrop_close(md);
}

static void
listing_free(struct listing *l)
{
	size_t i;

	for (i = 0; i < l->n; i++)
		free(l->line[i]);
	free(l->line);
}

static void
assert_same_listing(const struct listing *a, const struct listing *b)
{
	size_t i;

	assert_int_equal(a->n, b->n);
	for (i = 0; i < a->n; i++)
		assert_string_equal(a->line[i], b->line[i]);
}

/* Next of a small deterministic generator (the test must not depend on the run). */
static uint32_t
lcg(uint32_t *x)
{
	*x = *x * 1103515245u + 12345u;
	return *x >> 8;
}

/*
 * The order from the cache (placed by its line order, the rest merged in)
 * is exactly the order of a fresh scan: with new mail among cached mail,
 * equal mtimes, renamed and removed messages, and a cache whose lines were
 * shuffled by hand.
 */
static void
test_cache_order(void **state)
{
	struct fx *f = *state;
	struct listing truth, cached;
	char rel[128], body[64], p[PATH_MAX], *cache, *q;
	uint32_t x = 7;
	size_t len, i, nl;
	int k;

	mkmaildir(f);
	for (k = 0; k < 300; k++) {
		uint32_t r = lcg(&x);

		snprintf(rel, sizeof rel, "%s/%u.M%uP%d.h%s", r % 3 == 0 ? "new" : "cur",
		    1000 + r % 97, lcg(&x) % 100000, k, r % 3 == 0 ? "" : ":2,S");
		snprintf(body, sizeof body, "message %d\n%s", k, k % 2 ? "x\n" : "");
		puts_(f, rel, body, (time_t)(1000 + lcg(&x) % 20));   /* many equal mtimes */
	}
	listing_of(f, &truth);          /* reads every file, writes the cache */
	assert_int_equal(truth.n, 300);
	listing_of(f, &cached);
	assert_same_listing(&truth, &cached);
	listing_free(&cached);
	listing_free(&truth);

	/* New mail with mtimes before, among and after the cached ones; one message gone. */
	for (k = 0; k < 40; k++) {
		uint32_t r = lcg(&x);

		snprintf(rel, sizeof rel, "new/%u.N%uP%d.h", 1000 + r % 97, lcg(&x) % 100000, k);
		puts_(f, rel, "new\n", (time_t)(995 + lcg(&x) % 30));
	}
	puts_(f, "new/0.first", "a\n", 1000);
	puts_(f, "new/~last", "a\n", 1000);
	listing_of(f, &cached);         /* 300 from the cache, 42 read */
	rm(f, "pop3d.cache");
	listing_of(f, &truth);
	assert_same_listing(&truth, &cached);
	listing_free(&cached);
	listing_free(&truth);

	/* The cache's lines reversed: still used for sizes, but the order is sorted anew. */
	pathf(p, sizeof p, f, "pop3d.cache");
	cache = slurp(p, &len);
	q = strchr(cache, '\n') + 1;    /* after the version line */
	{
		char *out = malloc(len + 1), *lines[400] = { NULL };
		size_t w;

		assert_non_null(out);
		for (nl = 0; *q != '\0' && nl < 400; nl++) {
			lines[nl] = q;
			q = strchr(q, '\n') + 1;
		}
		assert_int_equal(nl, 342);
		w = (size_t)(lines[0] - cache);
		memcpy(out, cache, w);
		for (i = nl; i-- > 0;) {
			size_t ln = (size_t)(strchr(lines[i], '\n') + 1 - lines[i]);

			memcpy(out + w, lines[i], ln);
			w += ln;
		}
		put(f, "pop3d.cache", out, w, 0);
		free(out);
	}
	free(cache);
	listing_of(f, &cached);
	rm(f, "pop3d.cache");
	listing_of(f, &truth);
	assert_same_listing(&truth, &cached);
	listing_free(&cached);
	listing_free(&truth);
}

/* ---- message access ---- */

static void
test_msg_open_after_rename(void **state)
{
	struct fx *f = *state;
	struct maildrop *md;
	size_t len;
	char *data;
	int fd;

	mkmaildir(f);
	puts_(f, "new/R", "hello\n", 100);
	puts_(f, "new/S", "other\n", 101);
	md = open_ok(f);
	ren(f, "new/R", "cur/R:2,RS");
	fd = maildrop_msg_open(md, 0);
	assert_true(fd >= 0);
	assert_string_equal(md->msgs[0].file, "cur/R:2,RS");
	data = slurp_fd(fd, &len);
	close(fd);
	assert_int_equal(len, 6);
	assert_memory_equal(data, "hello\n", 6);
	free(data);

	rm(f, "cur/R:2,RS");
	assert_int_equal(maildrop_msg_open(md, 0), -ENOENT);
	assert_int_equal(maildrop_msg_open(md, 2), -EINVAL);
	fd = maildrop_msg_open(md, 1);
	assert_true(fd >= 0);
	close(fd);
	maildrop_close(md);
}

/* ---- UPDATE ---- */

static void
test_update_refuses_without_quit(void **state)
{
	struct fx *f = *state;
	struct maildrop *md;
	struct md_update_result res = { 9, 9, 9, 9, 9 };

	mkmaildir(f);
	puts_(f, "new/A", "a\n", 100);
	puts_(f, "new/B", "b\n", 101);
	md = open_ok(f);
	md->msgs[0].flags |= MSG_DELE | MSG_REMOVE;
	md->msgs[1].flags |= MSG_RETR;
	assert_int_equal(maildrop_update(md, &res), -1);
	assert_int_equal(res.removed + res.failed + res.seen, 0);
	assert_int_equal(maildrop_update(md, NULL), -1);
	maildrop_close(md);     /* closing never removes either */
	assert_true(exists(f, "new/A"));
	assert_true(exists(f, "new/B"));
	assert_int_equal(maildrop_update(NULL, &res), -1);
}

static void
flag(struct maildrop *md, const char *file, unsigned fl)
{
	ssize_t i = find_msg(md, file);

	if (i < 0)
		fail_msg("no message %s", file);
	md->msgs[i].flags |= fl;
}

static void
test_update(void **state)
{
	struct fx *f = *state;
	struct maildrop *md;
	struct md_update_result res;

	mkmaildir(f);
	puts_(f, "new/A", "a\n", 100);
	puts_(f, "new/B", "b\n", 101);
	puts_(f, "cur/C:2,RF", "c\n", 102);
	puts_(f, "cur/D:2,S", "d\n", 103);
	puts_(f, "new/E", "e\n", 104);
	puts_(f, "cur/F:2,RS", "f\n", 105);
	puts_(f, "new/G", "g\n", 106);
	puts_(f, "new/H", "h\n", 107);
	puts_(f, "new/I", "i\n", 108);
	puts_(f, "cur/J:2,a", "j\n", 109);
	puts_(f, "new/K", "k\n", 110);
	puts_(f, "cur/L:1,x", "l\n", 111);
	puts_(f, "new/N:2,S", "n\n", 112);

	md = open_ok(f);
	assert_int_equal(md->n, 13);
	flag(md, "new/A", MSG_DELE | MSG_REMOVE);
	flag(md, "new/B", MSG_RETR);
	flag(md, "cur/C:2,RF", MSG_RETR);
	flag(md, "cur/D:2,S", MSG_RETR);
	flag(md, "cur/F:2,RS", MSG_RETR | MSG_DELE | MSG_REMOVE);
	flag(md, "new/G", MSG_REMOVE);
	flag(md, "new/H", MSG_REMOVE);
	flag(md, "new/I", MSG_RETR);
	flag(md, "cur/J:2,a", MSG_RETR);
	flag(md, "new/K", MSG_DELE);          /* DELE alone: policy did not choose it */
	flag(md, "cur/L:1,x", MSG_RETR);      /* info we do not understand: left alone */
	flag(md, "new/N:2,S", MSG_RETR);      /* seen already, but still in new/ */
	/* Meanwhile another program moves and deletes files. */
	ren(f, "new/G", "cur/G:2,T");
	rm(f, "new/H");
	ren(f, "new/I", "cur/I:2,F");

	maildrop_quit(md);
	assert_int_equal(maildrop_update(md, &res), 0);
	assert_int_equal(res.removed, 4);
	assert_int_equal(res.failed, 0);
	assert_int_equal(res.seen, 5);
	assert_string_equal(md->err, "");     /* nothing failed, nothing to say */
	assert_string_equal(md->msgs[find_msg(md, "cur/B:2,S")].uidl, "B");
	maildrop_close(md);

	assert_false(exists(f, "new/A"));
	assert_false(exists(f, "new/B"));
	assert_true(exists(f, "cur/B:2,S"));
	assert_false(exists(f, "cur/C:2,RF"));
	assert_true(exists(f, "cur/C:2,FRS"));
	assert_true(exists(f, "cur/D:2,S"));
	assert_true(exists(f, "new/E"));
	assert_false(exists(f, "cur/F:2,RS"));
	assert_false(exists(f, "cur/G:2,T"));
	assert_false(exists(f, "new/H"));
	assert_true(exists(f, "cur/I:2,FS"));
	assert_false(exists(f, "cur/I:2,F"));
	assert_true(exists(f, "cur/J:2,Sa"));
	assert_true(exists(f, "new/K"));
	assert_true(exists(f, "cur/L:1,x"));
	assert_false(exists(f, "new/N:2,S"));
	assert_true(exists(f, "cur/N:2,S"));

	/* The next session sees exactly what is left, with the same UIDLs. */
	md = open_ok(f);
	assert_int_equal(md->n, 9);
	assert_int_equal(find_msg(md, "cur/F:2,RS"), -1);
	maildrop_close(md);
}

static void
test_update_failure(void **state)
{
	struct fx *f = *state;
	struct maildrop *md;
	struct md_update_result res;
	char p[PATH_MAX];

	mkmaildir(f);
	puts_(f, "new/X", "x\n", 100);
	puts_(f, "new/Y", "y\n", 101);
	puts_(f, "new/Z", "z\n", 102);
	md = open_ok(f);
	flag(md, "new/X", MSG_REMOVE);
	flag(md, "new/Y", MSG_REMOVE);
	flag(md, "new/Z", MSG_RETR);
	/* X becomes a folder: unlink fails (EISDIR), and that is not "gone". */
	rm(f, "new/X");
	pathf(p, sizeof p, f, "new/X");
	assert_int_equal(mkdir(p, 0700), 0);
	/* Z cannot be renamed: its target is taken. */
	puts_(f, "cur/Z:2,S", "other\n", 0);
	maildrop_quit(md);
	assert_int_equal(maildrop_update(md, &res), 1);
	assert_int_equal(res.removed, 1);
	assert_int_equal(res.failed, 1);
	assert_int_equal(res.seen, 0);
	assert_true(md->err[0] != '\0');
	maildrop_close(md);
	assert_true(exists(f, "new/X"));
	assert_false(exists(f, "new/Y"));
	assert_true(exists(f, "new/Z"));
	assert_true(exists(f, "cur/Z:2,S"));
}

/* ---- sweep open ---- */

static void
test_open_sweep(void **state)
{
	struct fx *f = *state;
	struct maildrop *md = NULL, *held = NULL;
	char err[256], p[PATH_MAX];

	/* A missing maildir: an empty maildrop, and nothing is created. */
	assert_int_equal(maildrop_open_sweep(f->root, &md, err, sizeof err), MD_OK);
	assert_non_null(md);
	assert_int_equal(md->n, 0);
	assert_int_equal(md->sweep, 1);
	assert_int_equal(md->state_ok, 1);
	maildrop_close(md);
	assert_false(exists(f, ""));

	/* Without new/ and tmp/: cur/ is listed, and no folder is made. */
	assert_int_equal(mkdir(f->root, 0700), 0);
	pathf(p, sizeof p, f, "cur");
	assert_int_equal(mkdir(p, 0700), 0);
	puts_(f, "cur/A:2,S", "a\nb\n", 1000);       /* 4 octets, CRLF size 6 */
	md = NULL;
	assert_int_equal(maildrop_open_sweep(f->root, &md, err, sizeof err), MD_OK);
	assert_int_equal(md->n, 1);
	assert_int_equal(md->msgs[0].mtime, 1000);
	assert_int_equal(md->msgs[0].disk_size, 4);
	assert_int_equal(md->msgs[0].size, 4);       /* not read: the disk size */
	maildrop_close(md);
	assert_false(exists(f, "new"));
	assert_false(exists(f, "tmp"));
	assert_false(exists(f, "pop3d.cache"));      /* never writes the cache */

	/* With the cache a session wrote, the CRLF size. */
	held = open_ok(f);
	assert_true(exists(f, "pop3d.cache"));
	/* Held by a session: in use, without waiting. */
	md = NULL;
	assert_int_equal(maildrop_open_sweep(f->root, &md, err, sizeof err), MD_INUSE);
	assert_null(md);
	maildrop_close(held);
	assert_int_equal(maildrop_open_sweep(f->root, &md, err, sizeof err), MD_OK);
	assert_int_equal(md->msgs[0].size, 6);
	/* And a sweep holds off a session. */
	assert_int_equal(maildrop_open(f->root, &held, err, sizeof err), MD_INUSE);
	maildrop_close(md);

	/* The root is a file: permanent failure. */
	snprintf(f->root, sizeof f->root, "%s/file", f->dir);
	{
		int fd = open(f->root, O_WRONLY | O_CREAT | O_EXCL, 0600);

		assert_true(fd >= 0);
		close(fd);
	}
	md = NULL;
	assert_int_equal(maildrop_open_sweep(f->root, &md, err, sizeof err), MD_PERM);
	assert_null(md);
}

/*
 * The sweep in two steps: the scan takes no lock (a session may hold it), a
 * dry run's claim creates nothing and only asks, a real claim locks, and
 * both look at the state again.
 */
static void
test_scan_and_claim(void **state)
{
	struct fx *f = *state;
	struct maildrop *md = NULL, *held = NULL;
	char err[256];

	mkmaildir(f);
	puts_(f, "new/A", "a\n", 1000);
	puts_(f, "new/B", "b\n", 1000);
	assert_int_equal(maildrop_scan_sweep(f->root, &md, err, sizeof err), MD_OK);
	assert_int_equal(md->lock_fd, -1);
	assert_int_equal(md->n, 2);
	/* Dry run, no lock file: nobody holds it, and none is made. */
	md->msgs[0].flags |= MSG_REMOVE;
	assert_int_equal(maildrop_sweep_claim(md, 1, err, sizeof err), MD_OK);
	assert_int_equal(md->lock_fd, -1);
	assert_false(exists(f, "pop3d.lock"));
	assert_true((md->msgs[0].flags & MSG_REMOVE) != 0);
	assert_int_equal(md->msgs[0].flags & MSG_UNREADABLE, 0);   /* root reads anything */
	maildrop_close(md);

	/* A session holds the lock: the scan still works, a claim of either kind is refused. */
	held = open_ok(f);
	md = NULL;
	assert_int_equal(maildrop_scan_sweep(f->root, &md, err, sizeof err), MD_OK);
	assert_int_equal(md->n, 2);
	assert_int_equal(maildrop_sweep_claim(md, 1, err, sizeof err), MD_INUSE);
	assert_int_equal(maildrop_sweep_claim(md, 0, err, sizeof err), MD_INUSE);
	assert_int_equal(md->lock_fd, -1);
	maildrop_close(held);

	/* Free now: a real claim locks; a candidate gone since the scan loses its flag. */
	md->msgs[0].flags |= MSG_REMOVE;
	md->msgs[1].flags |= MSG_REMOVE;
	{
		char p[PATH_MAX];

		pathf(p, sizeof p, f, md->msgs[1].file);
		assert_int_equal(unlink(p), 0);
	}
	assert_int_equal(maildrop_sweep_claim(md, 0, err, sizeof err), MD_OK);
	assert_true(md->lock_fd >= 0);
	assert_true((md->msgs[0].flags & MSG_REMOVE) != 0);
	assert_int_equal(md->msgs[1].flags & MSG_REMOVE, 0);
	assert_int_equal(maildrop_open(f->root, &held, err, sizeof err), MD_INUSE);
	maildrop_unlock(md);
	held = open_ok(f);
	maildrop_close(held);
	maildrop_close(md);
}

/* ---- templates ---- */

static void
expand_is(const char *tmpl, const char *login, const char *home, const char *want)
{
	char out[PATH_MAX];

	if (maildrop_expand(tmpl, login, home, out, sizeof out) != 0)
		fail_msg("expand %s for %s failed", tmpl, login);
	assert_string_equal(out, want);
}

static void
expand_fails(const char *tmpl, const char *login, const char *home)
{
	char out[PATH_MAX];

	assert_int_equal(maildrop_expand(tmpl, login, home, out, sizeof out), -1);
	assert_string_equal(out, "");
}

static void
test_expand(void **state)
{
	char out[32];

	(void)state;
	expand_is("/var/mail/%d/%n", "bob@example.org", "", "/var/mail/example.org/bob");
	expand_is("/var/mail/%u", "bob@example.org", NULL, "/var/mail/bob@example.org");
	expand_is("/var/mail/%d/%n", "bob", "", "/var/mail//bob");
	expand_is("%h/Maildir", "bob", "/home/bob", "/home/bob/Maildir");
	expand_is("/m/100%%/%n", "bob", "", "/m/100%/bob");
	expand_is("/m/%n@%d", "a@b@c.org", "", "/m/a@b@c.org");
	expand_fails("/m/%x", "bob", "");
	expand_fails("/m/%", "bob", "");
	expand_fails("Maildir/%u", "bob", "/home/bob");
	expand_fails("%u/Maildir", "bob", "/home/bob");
	expand_fails("%%/x", "bob", "");
	expand_fails("%h/Maildir", "bob", "");
	expand_fails("%h/Maildir", "bob", NULL);
	expand_fails("/m/%u", "../etc", "");
	expand_fails("/m/%u", "..", "");
	expand_fails("/m/%n", "@example.org", "");
	expand_fails("/m/%d/%n", "bob@..", "");
	expand_fails("/m/%u", "", "");

	/* "/var/mail/bob" is 13 octets: fits in 14, not in 13. */
	assert_int_equal(maildrop_expand("/var/mail/%u", "bob", "", out, 14), 0);
	assert_string_equal(out, "/var/mail/bob");
	assert_int_equal(maildrop_expand("/var/mail/%u", "bob", "", out, 13), -1);
	assert_int_equal(maildrop_expand("/var/mail/bob", "x", "", out, 13), -1);
	assert_int_equal(maildrop_expand("/var/mail/bob", "x", "", out, 14), 0);
}

static void
test_template_check(void **state)
{
	char err[256];

	(void)state;
	assert_int_equal(maildrop_template_check("/var/mail/%d/%n", err, sizeof err), 0);
	assert_int_equal(maildrop_template_check("%h/Maildir", err, sizeof err), 0);
	assert_int_equal(maildrop_template_check("/m/%u/100%%", err, sizeof err), 0);
	assert_int_equal(maildrop_template_check("/m/%x", err, sizeof err), -1);
	assert_non_null(strstr(err, "%x"));
	assert_int_equal(maildrop_template_check("/m/%\001", err, sizeof err), -1);
	assert_non_null(strstr(err, "\\x01"));
	assert_int_equal(maildrop_template_check("/m/%", err, sizeof err), -1);
	assert_true(err[0] != '\0');
	assert_int_equal(maildrop_template_check("Maildir", err, sizeof err), -1);
	assert_non_null(strstr(err, "absolute"));
	assert_int_equal(maildrop_template_check("%u/x", err, sizeof err), -1);
	assert_int_equal(maildrop_template_check("", err, sizeof err), -1);
}

/* A sweep holds the lock, so pop3d's own temp files in tmp/ are stale: removed. */
static void
test_sweep_removes_stale_temps(void **state)
{
	struct fx *f = *state;
	struct maildrop *md;
	char err[256];

	mkmaildir(f);
	puts_(f, "new/1.M1.x", "Subject: a\n\nbody\n", 0);
	puts_(f, "tmp/pop3d.state.4242.00000000deadbeef", "pop3d-state", 0);
	puts_(f, "tmp/pop3d.cache.4242.00000000deadbeef", "pop3d-cache", 0);
	puts_(f, "tmp/1700000000.M5P6.delivering", "a delivery in progress\n", 0);
	puts_(f, "tmp/pop3d.stateful-but-not-ours", "x", 0);
	assert_int_equal(maildrop_open_sweep(f->root, &md, err, sizeof err), MD_OK);
	assert_true(exists(f, "tmp/pop3d.state.4242.00000000deadbeef"));   /* opening touches nothing */
	maildrop_sweep_tidy(md);
	assert_false(exists(f, "tmp/pop3d.state.4242.00000000deadbeef"));
	assert_false(exists(f, "tmp/pop3d.cache.4242.00000000deadbeef"));
	assert_true(exists(f, "tmp/1700000000.M5P6.delivering"));
	assert_true(exists(f, "tmp/pop3d.stateful-but-not-ours"));
	assert_true(exists(f, "new/1.M1.x"));
	maildrop_close(md);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_crlf_count_splits),
		cmocka_unit_test_setup_teardown(test_corpus, setup, teardown),
		cmocka_unit_test_setup_teardown(test_missing_maildir_created, setup, teardown),
		cmocka_unit_test_setup_teardown(test_path_not_a_folder, setup, teardown),
		cmocka_unit_test_setup_teardown(test_order_and_skips, setup, teardown),
		cmocka_unit_test_setup_teardown(test_w_names, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cache_used, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cache_corrupt, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lock_same_process, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lock_child_exit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_uidl, setup, teardown),
		cmocka_unit_test_setup_teardown(test_uidl_hash_lookalike, setup, teardown),
		cmocka_unit_test_setup_teardown(test_duplicates, setup, teardown),
		cmocka_unit_test_setup_teardown(test_duplicates_three, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cache_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_msg_open_after_rename, setup, teardown),
		cmocka_unit_test_setup_teardown(test_update_refuses_without_quit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_update, setup, teardown),
		cmocka_unit_test_setup_teardown(test_update_failure, setup, teardown),
		cmocka_unit_test_setup_teardown(test_open_sweep, setup, teardown),
		cmocka_unit_test_setup_teardown(test_scan_and_claim, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sweep_removes_stale_temps, setup, teardown),
		cmocka_unit_test(test_expand),
		cmocka_unit_test(test_template_check),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
