/*
 * fuzz_maildir: libFuzzer harness for maildrop/maildir.c: file names (",S=",
 * ",W=", ":2,FLAGS", dot files, odd octets) and the sizes and UIDLs derived
 * from them. maildir.c keeps its name parsing static, so the harness makes the
 * files in a maildir under /dev/shm and calls maildrop_open, as a session does.
 *
 * Input: records separated by NUL, each "K NAME[/CONTENT]" where K is one octet:
 *   K & 3 = 0: new/NAME, 1: cur/NAME (mtime 1000000000 + (K >> 2)),
 *           2: the rest is ROOT/pop3d.cache, 3: the rest is ROOT/pop3d.state.
 * Properties of the first open (no cache, no state):
 *   MD_OK; one message per distinct base name (the part before ':') outside
 *   dot files, the cur/ file when both exist; UIDL = the base name when it is
 *   1..70 octets of 0x21..0x7E, else "H" + 40 hex digits, never twice; order by
 *   mtime then base name; disk_size the file's length; size the ",W=" value
 *   when it is plausible (disk <= W <= 2 disk), else the CRLF count of the
 *   content; total the sum; maildrop_msg_open gives the content back.
 * While it is open, a second session and a sweep get MD_INUSE. Then again from
 *   the size cache the first open wrote: the same listing, checked the same way;
 *   a sweep (which reads no message) lists the same files, UIDLs and mtimes, and
 *   the same sizes except where neither the cache nor ",W=" can tell it (a name
 *   with a tab or LF is never cached: the disk size). Last, with the fuzzer's
 *   cache and state files: the same number of messages, valid unique UIDLs.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "maildrop/cache.h"
#include "maildrop/maildrop.h"
#include "tests/fuzz/fuzzutil.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_FILES 48

struct file {
	int          cur;         /* in cur/ */
	const char  *name;        /* into the input; not NUL-terminated */
	size_t       nlen;
	size_t       baselen;
	const char  *content;
	size_t       clen;
	int64_t      mtime;
	int          live;        /* the last record for this sub/name (an earlier one was overwritten) */
};

/* ",W=<n>": the first ",W=" in the base name, its digits up to ',' or the end, strictly. */
static int name_w(const char *b, size_t n, uint64_t *out)
{
	size_t i, j;
	uint64_t v = 0;

	for (i = 0; i + 3 <= n; i++) {
		if (b[i] != ',' || b[i + 1] != 'W' || b[i + 2] != '=')
			continue;
		for (j = i + 3; j < n && b[j] != ','; j++) {
			if (b[j] < '0' || b[j] > '9' || v > (UINT64_MAX - (uint64_t)(b[j] - '0')) / 10)
				return -1;
			v = v * 10 + (uint64_t)(b[j] - '0');
		}
		if (j == i + 3)
			return -1;
		*out = v;
		return 0;
	}
	return -1;
}

static uint64_t crlf_size(const char *p, size_t n)
{
	uint64_t s = n;
	size_t i;

	for (i = 0; i < n; i++)
		if (p[i] == '\n' && (i == 0 || p[i - 1] != '\r'))
			s++;
	return s;
}

static int uidl_printable(const char *p, size_t n)
{
	size_t i;

	if (n < 1 || n > UIDL_MAX)
		return 0;
	for (i = 0; i < n; i++)
		if ((unsigned char)p[i] < 0x21 || (unsigned char)p[i] > 0x7e)
			return 0;
	return 1;
}

/* A base name kept as its own UIDL: printable, and not shaped like a hash ("H" + 40
 * lowercase hex), which would let it collide with a hashed name. */
static int uidl_literal(const char *p, size_t n)
{
	size_t i;

	if (!uidl_printable(p, n))
		return 0;
	if (n != 41 || p[0] != 'H')
		return 1;
	for (i = 1; i < n; i++)
		if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f')))
			return 1;
	return 0;
}

static int cmp_base(const struct file *a, const struct file *b)
{
	size_t n = a->baselen < b->baselen ? a->baselen : b->baselen;
	int r = memcmp(a->name, b->name, n);

	return r != 0 ? r : (a->baselen > b->baselen) - (a->baselen < b->baselen);
}

/* The file msgs[i] names, among ours; NULL when none. */
static const struct file *file_of(const struct file *f, size_t nf, const char *rel)
{
	size_t i, len = strlen(rel);

	for (i = 0; i < nf; i++)
		if (f[i].live && len == 4 + f[i].nlen && memcmp(rel, f[i].cur ? "cur/" : "new/", 4) == 0 &&
		    memcmp(rel + 4, f[i].name, f[i].nlen) == 0)
			return &f[i];
	return NULL;
}

/* UIDLs valid and unique; every message one of our files. */
static void check_common(const struct maildrop *md, const struct file *f, size_t nf)
{
	size_t i, j;

	for (i = 0; i < md->n; i++) {
		const struct msg *m = &md->msgs[i];

		FZ_CHECK(uidl_printable(m->uidl, strlen(m->uidl)), "bad UIDL for %s", m->file);
		FZ_CHECK(file_of(f, nf, m->file) != NULL, "listed a file never made: %s", m->file);
		for (j = 0; j < i; j++)
			FZ_CHECK(strcmp(m->uidl, md->msgs[j].uidl) != 0, "UIDL %s twice", m->uidl);
	}
}

static void check_first(struct maildrop *md, const struct file *f, size_t nf)
{
	const struct file *a, *b;
	size_t i, j, distinct = 0, got;
	uint64_t total = 0, w;
	char buf[4096];
	ssize_t r;
	int fd;

	/* One message per base name, not a dot file. */
	for (i = 0; i < nf; i++) {
		if (!f[i].live || f[i].name[0] == '.')
			continue;
		for (j = 0; j < i; j++)
			if (f[j].live && f[j].name[0] != '.' && cmp_base(&f[i], &f[j]) == 0)
				break;
		distinct += j == i;
	}
	FZ_CHECK(md->n == distinct, "%zu messages listed, %zu base names", md->n, distinct);
	check_common(md, f, nf);
	for (i = 0; i < md->n; i++) {
		const struct msg *m = &md->msgs[i];

		a = file_of(f, nf, m->file);
		FZ_CHECK(a->name[0] != '.', "listed a dot file");
		/* The cur/ copy wins, then the smallest full name. */
		for (j = 0; j < nf; j++) {
			b = &f[j];
			if (b == a || !b->live || cmp_base(a, b) != 0)
				continue;
			FZ_CHECK(a->cur > b->cur || (a->cur == b->cur && (memcmp(a->name, b->name,
			    a->nlen < b->nlen ? a->nlen : b->nlen) < 0 ||
			    (memcmp(a->name, b->name, a->nlen < b->nlen ? a->nlen : b->nlen) == 0 &&
			    a->nlen < b->nlen))), "%s listed instead of its other copy", m->file);
		}
		if (uidl_literal(a->name, a->baselen))
			FZ_CHECK(strlen(m->uidl) == a->baselen && memcmp(m->uidl, a->name, a->baselen) == 0,
			    "UIDL %s is not the base name", m->uidl);
		else
			FZ_CHECK(strlen(m->uidl) == 41 && m->uidl[0] == 'H' &&
			    strspn(m->uidl + 1, "0123456789abcdef") == 40, "hashed UIDL %s", m->uidl);
		FZ_CHECK(m->disk_size == a->clen, "disk size %llu, file has %zu",
		    (unsigned long long)m->disk_size, a->clen);
		if (name_w(a->name, a->baselen, &w) == 0 && w >= a->clen && w - a->clen <= a->clen)
			FZ_CHECK(m->size == w, "size %llu, ,W= says %llu", (unsigned long long)m->size,
			    (unsigned long long)w);
		else
			FZ_CHECK(m->size == crlf_size(a->content, a->clen), "size %llu, CRLF count %llu",
			    (unsigned long long)m->size, (unsigned long long)crlf_size(a->content, a->clen));
		FZ_CHECK(m->mtime == a->mtime, "mtime %lld, set %lld", (long long)m->mtime,
		    (long long)a->mtime);
		FZ_CHECK(m->flags == 0 && !m->has_record, "fresh message with flags or a record");
		if (i > 0) {
			b = file_of(f, nf, md->msgs[i - 1].file);
			FZ_CHECK(b->mtime < a->mtime || (b->mtime == a->mtime && cmp_base(b, a) < 0),
			    "order: %s before %s", md->msgs[i - 1].file, m->file);
		}
		total += m->size;
		fd = maildrop_msg_open(md, i);
		FZ_CHECK(fd >= 0, "maildrop_msg_open(%s): %d", m->file, fd);
		for (got = 0;; got += (size_t)r) {
			r = read(fd, buf, sizeof buf);
			FZ_CHECK(r >= 0, "read %s: %s", m->file, strerror(errno));
			if (r == 0)
				break;
			FZ_CHECK(got + (size_t)r <= a->clen && memcmp(buf, a->content + got, (size_t)r) == 0,
			    "message %s reads back wrong", m->file);
		}
		close(fd);
		FZ_CHECK(got == a->clen, "message %s: %zu octets read, %zu written", m->file, got, a->clen);
	}
	FZ_CHECK(md->total == total, "total %llu, sum %llu", (unsigned long long)md->total,
	    (unsigned long long)total);
	FZ_CHECK(md->state_ok && md->last_login == 0, "no state file, but state_ok %d", md->state_ok);
}

/* What a listing said, kept after maildrop_close. */
struct snap {
	size_t n;
	char   file[MAX_FILES][4 + NAME_MAX + 1];
	char   uidl[MAX_FILES][UIDL_MAX + 1];
	uint64_t size[MAX_FILES], disk_size[MAX_FILES];
	int64_t  mtime[MAX_FILES];
};

static void snap_take(struct snap *s, const struct maildrop *md)
{
	size_t i;

	FZ_CHECK(md->n <= MAX_FILES, "%zu messages from %d files", md->n, MAX_FILES);
	s->n = md->n;
	for (i = 0; i < md->n; i++) {
		snprintf(s->file[i], sizeof s->file[i], "%s", md->msgs[i].file);
		memcpy(s->uidl[i], md->msgs[i].uidl, sizeof s->uidl[i]);
		s->size[i] = md->msgs[i].size;
		s->disk_size[i] = md->msgs[i].disk_size;
		s->mtime[i] = md->msgs[i].mtime;
	}
}

static void snap_same(const struct snap *s, const struct maildrop *md, const char *what)
{
	const char *base;
	uint64_t want, w;
	size_t i, blen;

	FZ_CHECK(s->n == md->n, "%s: %zu messages, first open had %zu", what, md->n, s->n);
	for (i = 0; i < s->n; i++) {
		const struct msg *m = &md->msgs[i];

		FZ_CHECK(strcmp(s->file[i], m->file) == 0 && strcmp(s->uidl[i], m->uidl) == 0,
		    "%s: message %zu is %s %s, was %s %s", what, i, m->file, m->uidl, s->file[i],
		    s->uidl[i]);
		base = m->file + 4;
		blen = strcspn(base, ":");
		want = s->size[i];
		/* A sweep reads no message: without a cache line or ",W=" it says the disk size. */
		if (!md_cache_name_ok(base, blen) &&
		    !(name_w(base, blen, &w) == 0 && w >= m->disk_size && w - m->disk_size <= m->disk_size))
			want = s->disk_size[i];
		FZ_CHECK(want == m->size && s->disk_size[i] == m->disk_size &&
		    s->mtime[i] == m->mtime, "%s: %s: size %llu/%llu mtime %lld, was %llu/%llu %lld",
		    what, m->file, (unsigned long long)m->size, (unsigned long long)m->disk_size,
		    (long long)m->mtime, (unsigned long long)s->size[i],
		    (unsigned long long)s->disk_size[i], (long long)s->mtime[i]);
	}
}

static void make_dir(const char *root, const char *sub)
{
	char path[PATH_MAX];

	snprintf(path, sizeof path, "%s%s", root, sub);
	FZ_CHECK(mkdir(path, 0700) == 0, "mkdir %s: %s", path, strerror(errno));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct file f[MAX_FILES];
	static struct snap first;
	static char root[PATH_MAX];
	const char *dir = fz_tmpdir("maildir");
	const uint8_t *p = data, *end = data + size, *z, *c;
	const uint8_t *cache = NULL, *state = NULL;
	size_t nf = 0, cache_len = 0, state_len = 0, i, j;
	struct maildrop *md, *md2;
	char path[PATH_MAX], err[512];
	struct timespec ts[2];
	enum md_status st;

	snprintf(root, sizeof root, "%s/m", dir);
	while (p < end && nf < MAX_FILES) {
		uint8_t k = *p++;
		const uint8_t *rec = p;

		z = memchr(p, '\0', (size_t)(end - p));
		if (z == NULL)
			z = end;
		p = z < end ? z + 1 : end;
		if ((k & 3) == 2) {
			cache = rec;
			cache_len = (size_t)(z - rec);
			continue;
		}
		if ((k & 3) == 3) {
			state = rec;
			state_len = (size_t)(z - rec);
			continue;
		}
		c = memchr(rec, '/', (size_t)(z - rec));
		f[nf].cur = k & 1;
		f[nf].name = (const char *)rec;
		f[nf].nlen = (size_t)((c != NULL ? c : z) - rec);
		f[nf].content = c != NULL ? (const char *)c + 1 : "";
		f[nf].clen = c != NULL ? (size_t)(z - c - 1) : 0;
		f[nf].mtime = 1000000000 + (k >> 2);
		f[nf].live = 1;
		if (f[nf].nlen == 0 || f[nf].nlen > NAME_MAX ||
		    (f[nf].nlen == 1 && rec[0] == '.') ||
		    (f[nf].nlen == 2 && rec[0] == '.' && rec[1] == '.'))
			continue;   /* not a name a file can have */
		c = memchr(rec, ':', f[nf].nlen);
		f[nf].baselen = c != NULL ? (size_t)(c - rec) : f[nf].nlen;
		for (j = 0; j < nf; j++)
			if (f[j].live && f[j].cur == f[nf].cur && f[j].nlen == f[nf].nlen &&
			    memcmp(f[j].name, f[nf].name, f[nf].nlen) == 0)
				f[j].live = 0;    /* the same file made again: the later one counts */
		nf++;
	}

	fz_clear_dir(dir);
	make_dir(root, "");
	make_dir(root, "/new");
	make_dir(root, "/cur");
	make_dir(root, "/tmp");
	for (i = 0; i < nf; i++) {
		snprintf(path, sizeof path, "%s/%s/%.*s", root, f[i].cur ? "cur" : "new",
		    (int)f[i].nlen, f[i].name);
		fz_write_file(path, f[i].content, f[i].clen);
		ts[0].tv_sec = ts[1].tv_sec = (time_t)f[i].mtime;
		ts[0].tv_nsec = ts[1].tv_nsec = 0;
		FZ_CHECK(utimensat(AT_FDCWD, path, ts, 0) == 0, "utimensat");
	}

	/* 1. No cache, no state: everything from the names and the files. */
	st = maildrop_open(root, &md, err, sizeof err);
	FZ_CHECK(st == MD_OK, "maildrop_open: %d %s", (int)st, err);
	check_first(md, f, nf);
	snap_take(&first, md);
	st = maildrop_open(root, &md2, err, sizeof err);
	FZ_CHECK(st == MD_INUSE, "second session while locked: %d", (int)st);
	st = maildrop_open_sweep(root, &md2, err, sizeof err);
	FZ_CHECK(st == MD_INUSE, "sweep while locked: %d", (int)st);
	maildrop_close(md);

	/* 2. From the size cache the first open wrote: the same listing. */
	st = maildrop_open(root, &md, err, sizeof err);
	FZ_CHECK(st == MD_OK, "maildrop_open with cache: %d %s", (int)st, err);
	check_first(md, f, nf);
	maildrop_close(md);

	/* 3. A sweep reads no message: with that cache it must still agree. */
	st = maildrop_open_sweep(root, &md, err, sizeof err);
	FZ_CHECK(st == MD_OK, "maildrop_open_sweep: %d %s", (int)st, err);
	snap_same(&first, md, "sweep");
	maildrop_close(md);

	/* 4. The fuzzer's cache and state files: no crash, files and UIDLs still sound. */
	if (cache == NULL && state == NULL)
		return 0;
	if (cache != NULL) {
		snprintf(path, sizeof path, "%s/pop3d.cache", root);
		fz_write_file(path, cache, cache_len);
	}
	if (state != NULL) {
		snprintf(path, sizeof path, "%s/pop3d.state", root);
		fz_write_file(path, state, state_len);
	}
	st = maildrop_open_sweep(root, &md, err, sizeof err);
	FZ_CHECK(st == MD_OK, "sweep with fuzzed files: %d %s", (int)st, err);
	check_common(md, f, nf);
	FZ_CHECK(md->n == first.n, "sweep lists %zu, first open %zu", md->n, first.n);
	maildrop_close(md);
	st = maildrop_open(root, &md, err, sizeof err);
	FZ_CHECK(st == MD_OK, "open with fuzzed files: %d %s", (int)st, err);
	check_common(md, f, nf);
	FZ_CHECK(md->n == first.n, "lists %zu, first open %zu", md->n, first.n);
	maildrop_close(md);
	return 0;
}
