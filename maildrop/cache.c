/*
 * cache: reads and crash-safely rewrites ROOT/pop3d.cache for maildir.c.
 * Treats every byte of the file as untrusted; never touches a message file
 * and never lets a cache failure fail a session.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "maildrop/afile.h"
#include "maildrop/cache.h"
#include "server/strutil.h"


static void
cache_err(char *err, size_t errlen, const char *what, const char *path, int e)
{
	char eb[128];

	if (err == NULL || errlen == 0)
		return;
	snprintf(err, errlen, "%s %s: %s", what, path, strerror_r(e, eb, sizeof eb));
}

static int
name_cmp(const char *a, size_t an, const char *b, size_t bn)
{
	int r = memcmp(a, b, an < bn ? an : bn);

	if (r != 0)
		return r;
	return an < bn ? -1 : an > bn;
}

static int
rec_cmp(const void *x, const void *y)
{
	const struct md_cache_rec *a = x, *b = y;

	return name_cmp(a->name, a->namelen, b->name, b->namelen);
}

int
md_cache_name_ok(const char *name, size_t namelen)
{
	if (namelen == 0 || namelen > NAME_MAX)
		return 0;
	return memchr(name, '\t', namelen) == NULL && memchr(name, '\n', namelen) == NULL &&
	    memchr(name, '\0', namelen) == NULL;
}

/* One record line without its LF: four tab-separated fields, all strict. */
static int
parse_line(const char *p, size_t n, struct md_cache_rec *r)
{
	struct slice f[4];
	size_t i, k = 0, start = 0;
	uint64_t mtime;

	for (i = 0; i <= n; i++) {
		if (i < n && p[i] != '\t')
			continue;
		if (k == 4)
			return -1;
		f[k].p = p + start;
		f[k].n = i - start;
		k++;
		start = i + 1;
	}
	if (k != 4 || !md_cache_name_ok(f[0].p, f[0].n) || f[0].p[0] == '.')
		return -1;
	if (parse_u64(f[1].p, f[1].n, &mtime) < 0 || mtime > INT64_MAX)
		return -1;
	if (parse_u64(f[2].p, f[2].n, &r->disk_size) < 0 || parse_u64(f[3].p, f[3].n, &r->size) < 0)
		return -1;
	/* Each octet is sent as one or two: anything else is not a size we wrote. */
	if (r->size < r->disk_size || r->size - r->disk_size > r->disk_size)
		return -1;
	r->name = f[0].p;
	r->namelen = f[0].n;
	r->mtime = (int64_t)mtime;
	return 0;
}

/* Fill c->rec from buf[0..len); returns -1 when the version line is wrong. */
static int
parse(struct md_cache *c, const char *buf, size_t len, size_t max_recs)
{
	static const char ver[] = MD_CACHE_VERSION "\n";
	size_t pos, lines = 0, w, i, j;
	const char *nl;

	if (len < sizeof ver - 1 || memcmp(buf, ver, sizeof ver - 1) != 0) {
		c->bad++;
		return -1;
	}
	for (pos = sizeof ver - 1; pos < len && (nl = memchr(buf + pos, '\n', len - pos)) != NULL;
	    pos = (size_t)(nl - buf) + 1)
		lines++;
	if (lines > max_recs)
		lines = max_recs;
	if (lines == 0)
		return 0;
	c->rec = calloc(lines, sizeof *c->rec);
	if (c->rec == NULL)
		return -1;
	for (pos = sizeof ver - 1; pos < len; pos = (size_t)(nl - buf) + 1) {
		nl = memchr(buf + pos, '\n', len - pos);
		if (nl == NULL) {
			c->bad++;   /* a last line without LF */
			break;
		}
		if (c->n == lines || parse_line(buf + pos, (size_t)(nl - buf) - pos, &c->rec[c->n]) < 0)
			c->bad++;
		else
			c->n++;
	}
	if (c->n > 1)
		qsort(c->rec, c->n, sizeof *c->rec, rec_cmp);
	/* Two lines for one name: neither can be believed. */
	for (i = 0, w = 0; i < c->n; i = j) {
		for (j = i + 1; j < c->n && rec_cmp(&c->rec[i], &c->rec[j]) == 0; j++)
			;
		if (j - i == 1)
			c->rec[w++] = c->rec[i];
		else
			c->bad += j - i;
	}
	c->n = w;
	return 0;
}

int
md_cache_load(struct md_cache *c, const char *root, size_t max_recs, char *err, size_t errlen)
{
	char path[PATH_MAX];
	struct stat st;
	size_t got = 0;
	ssize_t r;
	int fd, n;

	memset(c, 0, sizeof *c);
	n = snprintf(path, sizeof path, "%s/%s", root, MD_CACHE_FILE);
	if (n < 0 || (size_t)n >= sizeof path) {
		cache_err(err, errlen, "cache path too long:", root, ENAMETOOLONG);
		return -1;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0) {
		if (errno == ENOENT)
			return 0;
		cache_err(err, errlen, "ignoring cache", path, errno);
		c->bad++;
		return -1;
	}
	if (fstat(fd, &st) < 0) {
		cache_err(err, errlen, "ignoring cache", path, errno);
		goto ignore;
	}
	if (!S_ISREG(st.st_mode) || st.st_size < 0 || (uint64_t)st.st_size > MD_CACHE_FILE_MAX) {
		if (err != NULL && errlen > 0)
			snprintf(err, errlen, "ignoring cache %s: not a regular file of at most %u octets",
			    path, MD_CACHE_FILE_MAX);
		goto ignore;
	}
	c->buf = malloc((size_t)st.st_size + 1);
	if (c->buf == NULL) {
		cache_err(err, errlen, "ignoring cache", path, ENOMEM);
		goto ignore;
	}
	while (got < (size_t)st.st_size) {
		r = read(fd, c->buf + got, (size_t)st.st_size - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			cache_err(err, errlen, "ignoring cache", path, errno);
			goto ignore;
		}
		if (r == 0)
			break;   /* shrank meanwhile: parse what is there */
		got += (size_t)r;
	}
	close(fd);
	if (parse(c, c->buf, got, max_recs) < 0) {
		if (err != NULL && errlen > 0)
			snprintf(err, errlen, "ignoring cache %s: bad version line or no memory", path);
		md_cache_free(c);
		c->bad = 1;
		return -1;
	}
	c->used = calloc(c->n ? c->n : 1, 1);
	if (c->used == NULL) {
		md_cache_free(c);
		c->bad = 1;
		cache_err(err, errlen, "ignoring cache", path, ENOMEM);
		return -1;
	}
	return 0;
ignore:
	close(fd);
	md_cache_free(c);
	c->bad = 1;
	return -1;
}

const struct md_cache_rec *
md_cache_find(struct md_cache *c, const char *name, size_t namelen)
{
	struct md_cache_rec key;
	const struct md_cache_rec *r;
	size_t i;

	if (c->n == 0)
		return NULL;
	key.name = name;
	key.namelen = namelen;
	r = bsearch(&key, c->rec, c->n, sizeof *c->rec, rec_cmp);
	if (r == NULL)
		return NULL;
	i = (size_t)(r - c->rec);
	if (!c->used[i]) {
		c->used[i] = 1;
		c->n_used++;
	}
	return r;
}

int
md_cache_stale(const struct md_cache *c)
{
	return c->bad > 0 || c->n_used < c->n;
}

void
md_cache_free(struct md_cache *c)
{
	free(c->buf);
	free(c->rec);
	free(c->used);
	c->buf = NULL;
	c->rec = NULL;
	c->used = NULL;
	c->n = 0;
	c->n_used = 0;
}

int
md_cache_write(const char *root, const struct md_cache_rec *recs, size_t n, char *err, size_t errlen)
{
	struct afile a;
	char num[96];
	size_t i;
	int k;

	if (afile_open(&a, root, MD_CACHE_FILE) != 0) {
		cache_err(err, errlen, "writing cache", a.tmp, errno);
		return -1;
	}
	afile_put(&a, MD_CACHE_VERSION "\n", sizeof MD_CACHE_VERSION);
	for (i = 0; i < n && a.e == 0; i++) {
		if (!md_cache_name_ok(recs[i].name, recs[i].namelen) || recs[i].mtime < 0)
			continue;
		k = snprintf(num, sizeof num, "\t%" PRId64 "\t%" PRIu64 "\t%" PRIu64 "\n",
		    recs[i].mtime, recs[i].disk_size, recs[i].size);
		if (k < 0 || (size_t)k >= sizeof num)
			continue;
		/* Past the size the loader accepts the rest is left out, not the whole file. */
		if (a.total + recs[i].namelen + (size_t)k > MD_CACHE_FILE_MAX)
			break;
		afile_put(&a, recs[i].name, recs[i].namelen);
		afile_put(&a, num, (size_t)k);
	}
	if (afile_finish(&a) != 0) {
		cache_err(err, errlen, "writing cache", a.tmp, errno);
		return -1;
	}
	switch (afile_install(&a)) {
	case -1:
		cache_err(err, errlen, "writing cache", a.final, errno);
		return -1;
	case -2:   /* the new cache is in place; only its durability is in doubt */
		cache_err(err, errlen, "fsync", root, errno);
		return -1;
	}
	return 0;
}
