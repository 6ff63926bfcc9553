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
#include <sys/random.h>
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

/* The order maildir.c lists messages in (and so writes them): mtime, then name. */
static int
rec_order_cmp(const struct md_cache_rec *a, const struct md_cache_rec *b)
{
	if (a->mtime != b->mtime)
		return a->mtime < b->mtime ? -1 : 1;
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

/* ---- the name hash: SipHash-1-3 (Aumasson, Bernstein), keyed per load ---- */

#define ROTL64(x, b) (((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND(v0, v1, v2, v3) do { \
		v0 += v1; v1 = ROTL64(v1, 13); v1 ^= v0; v0 = ROTL64(v0, 32); \
		v2 += v3; v3 = ROTL64(v3, 16); v3 ^= v2; \
		v0 += v3; v3 = ROTL64(v3, 21); v3 ^= v0; \
		v2 += v1; v1 = ROTL64(v1, 17); v1 ^= v2; v2 = ROTL64(v2, 32); \
	} while (0)

uint64_t
md_cache_hash(const struct md_cache *c, const char *name, size_t namelen)
{
	uint64_t v0 = c->key[0] ^ 0x736f6d6570736575ULL, v1 = c->key[1] ^ 0x646f72616e646f6dULL;
	uint64_t v2 = c->key[0] ^ 0x6c7967656e657261ULL, v3 = c->key[1] ^ 0x7465646279746573ULL;
	uint64_t m, b = (uint64_t)namelen << 56;
	size_t i;

	for (i = 0; i + 8 <= namelen; i += 8) {
		memcpy(&m, name + i, 8);   /* host byte order: the hash is never stored */
		v3 ^= m;
		SIPROUND(v0, v1, v2, v3);
		v0 ^= m;
	}
	m = 0;
	memcpy(&m, name + i, namelen - i);   /* 0..7 octets; the first in the low byte on x86 */
	b |= m;
	v3 ^= b;
	SIPROUND(v0, v1, v2, v3);
	v0 ^= b;
	v2 ^= 0xff;
	SIPROUND(v0, v1, v2, v3);
	SIPROUND(v0, v1, v2, v3);
	SIPROUND(v0, v1, v2, v3);
	return v0 ^ v1 ^ v2 ^ v3;
}

/*
 * A fresh key, so that names crafted to collide (the maildir and the cache
 * are untrusted) cannot turn lookups quadratic. Without getrandom (very old
 * kernels, an early boot) the clock and an address still make it unguessable
 * from outside the process.
 */
static void
new_key(struct md_cache *c)
{
	struct timespec ts;

	if (getrandom(c->key, sizeof c->key, GRND_NONBLOCK) == (ssize_t)sizeof c->key)
		return;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	c->key[0] = ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)ts.tv_nsec ^ (uint64_t)(uintptr_t)c;
	c->key[1] = ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)&ts ^ 0x9e3779b97f4a7c15ULL;
}

/* ---- parsing ---- */

/* One record line without its LF: four tab-separated fields, all strict. */
static int
parse_line(const char *p, size_t n, struct md_cache_rec *r)
{
	const char *end = p + n, *f[4], *t;
	size_t fl[4];
	uint64_t mtime;
	int k;

	f[0] = p;
	for (k = 0; k < 3; k++) {
		t = memchr(f[k], '\t', (size_t)(end - f[k]));
		if (t == NULL)
			return -1;
		fl[k] = (size_t)(t - f[k]);
		f[k + 1] = t + 1;
	}
	fl[3] = (size_t)(end - f[3]);
	/* The name holds no tab (it ends at the first) and no LF (the line does): md_cache_name_ok. */
	if (fl[0] == 0 || fl[0] > NAME_MAX || memchr(f[0], '\0', fl[0]) != NULL || f[0][0] == '.')
		return -1;
	/* A fifth field fails here: parse_u64 takes digits only, so no tab. */
	if (parse_u64(f[1], fl[1], &mtime) < 0 || mtime > INT64_MAX)
		return -1;
	if (parse_u64(f[2], fl[2], &r->disk_size) < 0 || parse_u64(f[3], fl[3], &r->size) < 0)
		return -1;
	/* Each octet is sent as one or two: anything else is not a size we wrote. */
	if (r->size < r->disk_size || r->size - r->disk_size > r->disk_size)
		return -1;
	r->name = f[0];
	r->namelen = fl[0];
	r->mtime = (int64_t)mtime;
	return 0;
}

/*
 * Index c->rec by name. A name on two lines is marked MD_CACHE_DUP on both
 * (neither can be believed) and counted bad; c->n counts the others.
 * Returns -1 without memory.
 */
static int
index_recs(struct md_cache *c)
{
	struct md_cache_slot *sl;
	const struct md_cache_rec *a, *b;
	size_t nslot = 16, i, pos;
	uint64_t h;
	uint32_t tag;

	while (nslot < 2 * c->nrec)   /* at most half full: short probe runs */
		nslot *= 2;
	c->slot = calloc(nslot, sizeof *c->slot);
	c->mark = calloc(c->nrec ? c->nrec : 1, 1);
	if (c->slot == NULL || c->mark == NULL)
		return -1;
	c->mask = nslot - 1;
	for (i = 0; i < c->nrec; i++) {
		b = &c->rec[i];
		h = md_cache_hash(c, b->name, b->namelen);
		tag = (uint32_t)(h >> 32);
		for (pos = (size_t)h & c->mask;; pos = (pos + 1) & c->mask) {
			sl = &c->slot[pos];
			if (sl->idx == 0) {
				sl->tag = tag;
				sl->idx = (uint32_t)(i + 1);
				c->n++;
				break;
			}
			a = &c->rec[sl->idx - 1];
			if (sl->tag != tag || a->namelen != b->namelen || memcmp(a->name, b->name, a->namelen) != 0)
				continue;
			if (!(c->mark[sl->idx - 1] & MD_CACHE_DUP)) {
				c->mark[sl->idx - 1] |= MD_CACHE_DUP;
				c->n--;
				c->bad++;
			}
			c->mark[i] |= MD_CACHE_DUP;
			c->bad++;
			break;
		}
	}
	return 0;
}

/* Fill c->rec from buf[0..len) and index it; returns -1 when the version line is wrong or without memory. */
static int
parse(struct md_cache *c, const char *buf, size_t len, size_t max_recs)
{
	static const char ver[] = MD_CACHE_VERSION "\n";
	size_t pos, lines = 0;
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
	if (lines > UINT32_MAX - 1)   /* slot indexes are 32 bits */
		lines = UINT32_MAX - 1;
	c->rec = malloc((lines ? lines : 1) * sizeof *c->rec);   /* only rec[0..nrec) is read */
	if (c->rec == NULL)
		return -1;
	c->ordered = 1;
	for (pos = sizeof ver - 1; pos < len; pos = (size_t)(nl - buf) + 1) {
		nl = memchr(buf + pos, '\n', len - pos);
		if (nl == NULL) {
			c->bad++;   /* a last line without LF */
			break;
		}
		if (c->nrec == lines || parse_line(buf + pos, (size_t)(nl - buf) - pos, &c->rec[c->nrec]) < 0) {
			c->bad++;
			continue;
		}
		if (c->nrec > 0 && rec_order_cmp(&c->rec[c->nrec - 1], &c->rec[c->nrec]) >= 0)
			c->ordered = 0;
		c->nrec++;
	}
	return index_recs(c);
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
	new_key(c);
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
	return 0;
ignore:
	close(fd);
	md_cache_free(c);
	c->bad = 1;
	return -1;
}

const struct md_cache_rec *
md_cache_find(struct md_cache *c, const char *name, size_t namelen, uint64_t hash)
{
	const struct md_cache_slot *sl;
	const struct md_cache_rec *r;
	uint32_t tag = (uint32_t)(hash >> 32);
	size_t pos;

	if (c->slot == NULL)
		return NULL;
	/* Terminates: the table is at most half full. */
	for (pos = (size_t)hash & c->mask;; pos = (pos + 1) & c->mask) {
		sl = &c->slot[pos];
		if (sl->idx == 0)
			return NULL;
		r = &c->rec[sl->idx - 1];
		if (sl->tag == tag && r->namelen == namelen && memcmp(r->name, name, namelen) == 0)
			break;
	}
	if (c->mark[sl->idx - 1] & MD_CACHE_DUP)
		return NULL;
	if (!(c->mark[sl->idx - 1] & MD_CACHE_USED)) {
		c->mark[sl->idx - 1] |= MD_CACHE_USED;
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
	free(c->slot);
	free(c->mark);
	c->buf = NULL;
	c->rec = NULL;
	c->slot = NULL;
	c->mark = NULL;
	c->nrec = 0;
	c->mask = 0;
	c->n = 0;
	c->n_used = 0;
	c->ordered = 0;   /* the key stays: md_cache_hash still works */
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
