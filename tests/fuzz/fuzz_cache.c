/*
 * fuzz_cache: libFuzzer harness for maildrop/cache.c, the size cache
 * ROOT/pop3d.cache (untrusted: it lives in the user's maildir). The input is
 * the file; the first octet picks max_recs (0: MAILDROP_MSGS_MAX, else 1..255).
 *
 * Properties: md_cache_load never fails on a readable file with the right
 * version line; every record has a storable name not starting with '.', a
 * CRLF size between the disk size and twice it, a non-negative mtime; at
 * most max_recs records, in file order; c->ordered only when they are
 * strictly increasing by (mtime, name); md_cache_find finds each record not
 * marked MD_CACHE_DUP (so their names are unique, and there are c->n of
 * them) and nothing for a duplicated name; writing the found records back
 * with md_cache_write and loading again gives the same records in the same
 * order and no bad line.
 */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "maildrop/cache.h"
#include "maildrop/maildrop.h"
#include "tests/fuzz/fuzzutil.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int name_cmp(const struct md_cache_rec *a, const struct md_cache_rec *b)
{
	size_t n = a->namelen < b->namelen ? a->namelen : b->namelen;
	int r = memcmp(a->name, b->name, n);

	return r != 0 ? r : (a->namelen > b->namelen) - (a->namelen < b->namelen);
}

static int order_cmp(const struct md_cache_rec *a, const struct md_cache_rec *b)
{
	if (a->mtime != b->mtime)
		return a->mtime < b->mtime ? -1 : 1;
	return name_cmp(a, b);
}

static const struct md_cache_rec *find(struct md_cache *c, const struct md_cache_rec *x)
{
	return md_cache_find(c, x->name, x->namelen, md_cache_hash(c, x->name, x->namelen));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char path[PATH_MAX];
	const char *dir = fz_tmpdir("cache");
	struct md_cache c, c2;
	struct md_cache_rec *copy;
	size_t max_recs, i, k;
	char err[512] = "";
	int r;

	if (size < 1)
		return 0;
	max_recs = data[0] == 0 ? MAILDROP_MSGS_MAX : data[0];
	fz_clear_dir(dir);
	snprintf(path, sizeof path, "%s/tmp", dir);
	FZ_CHECK(mkdir(path, 0700) == 0, "mkdir %s", path);
	snprintf(path, sizeof path, "%s/" MD_CACHE_FILE, dir);
	fz_write_file(path, data + 1, size - 1);

	r = md_cache_load(&c, dir, max_recs, err, sizeof err);
	if (size - 1 >= sizeof MD_CACHE_VERSION && memcmp(data + 1, MD_CACHE_VERSION "\n",
	    sizeof MD_CACHE_VERSION) == 0)
		FZ_CHECK(r == 0, "load refused a file with the right version line: %s", err);
	else
		FZ_CHECK(r < 0 && c.n == 0, "loaded a file without the version line");
	FZ_CHECK(c.nrec <= max_recs && c.n <= c.nrec, "%zu records (%zu usable), max %zu", c.nrec,
	    c.n, max_recs);
	for (i = 0; i < c.nrec; i++) {
		const struct md_cache_rec *x = &c.rec[i];

		FZ_CHECK(md_cache_name_ok(x->name, x->namelen) && x->name[0] != '.', "bad name kept");
		FZ_CHECK(x->disk_size <= x->size && x->size - x->disk_size <= x->disk_size,
		    "size %llu for %llu on disk", (unsigned long long)x->size,
		    (unsigned long long)x->disk_size);
		FZ_CHECK(x->mtime >= 0, "negative mtime");
		FZ_CHECK(!c.ordered || i == 0 || order_cmp(&c.rec[i - 1], x) < 0, "ordered but not in order");
	}
	FZ_CHECK(md_cache_stale(&c) == (c.bad > 0 || c.n > 0), "stale before any lookup");
	copy = calloc(c.nrec ? c.nrec : 1, sizeof *copy);
	FZ_CHECK(copy != NULL, "out of memory");
	for (i = 0, k = 0; i < c.nrec; i++) {
		if (c.mark[i] & MD_CACHE_DUP) {
			FZ_CHECK(find(&c, &c.rec[i]) == NULL, "md_cache_find returns duplicated record %zu", i);
			continue;
		}
		copy[k++] = c.rec[i];
		FZ_CHECK(find(&c, &c.rec[i]) == &c.rec[i], "md_cache_find misses record %zu", i);
	}
	FZ_CHECK(k == c.n, "%zu records found, %zu usable", k, c.n);
	FZ_CHECK(md_cache_stale(&c) == (c.bad > 0), "stale after every record was found");

	/* Round trip: what we write reads back the same, in the same order, with nothing bad. */
	FZ_CHECK(md_cache_write(dir, copy, c.n, err, sizeof err) == 0, "md_cache_write: %s", err);
	FZ_CHECK(md_cache_load(&c2, dir, MAILDROP_MSGS_MAX, err, sizeof err) == 0, "reload: %s", err);
	FZ_CHECK(c2.n == c.n && c2.nrec == c.n && c2.bad == 0, "reload: %zu records (%zu bad), wrote %zu",
	    c2.n, c2.bad, c.n);
	FZ_CHECK(c2.ordered || !c.ordered, "reload: order lost");
	for (i = 0; i < c.n; i++)
		FZ_CHECK(name_cmp(&c2.rec[i], &copy[i]) == 0 && c2.rec[i].mtime == copy[i].mtime &&
		    c2.rec[i].disk_size == copy[i].disk_size && c2.rec[i].size == copy[i].size,
		    "record %zu changed on the round trip", i);
	free(copy);
	md_cache_free(&c2);
	md_cache_free(&c);
	md_cache_free(&c);    /* documented safe twice */
	return 0;
}
