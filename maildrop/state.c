/*
 * state: reads and crash-safely rewrites ROOT/pop3d.state for maildrop/, under the lock.
 * Every byte of the file is untrusted; never overwrites a file it doubts, never touches mail.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "maildrop/afile.h"
#include "maildrop/state.h"
#include "server/strutil.h"

#define BAD_TRIES      10      /* pop3d.state.bad-<unix>, -2 .. -10: then give up */

struct srec {
	const char *uidl;          /* points into the file buffer; not NUL-terminated */
	size_t      n;
	int64_t     first_download;
	int32_t     promised_days;
};

struct sfile {
	char        *buf;          /* owned: the file's bytes */
	struct srec *rec;          /* owned: sorted by UIDL, unique */
	size_t       n;
	int64_t      last_login;
};

static void
sfile_free(struct sfile *f)
{
	free(f->buf);
	free(f->rec);
	memset(f, 0, sizeof *f);
}

/* md->err, cut at its size (paths may be long; the log line only needs the start). */
static void errf(struct maildrop *md, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
errf(struct maildrop *md, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(md->err, sizeof md->err, fmt, ap);
	va_end(ap);
}

static void
note(struct maildrop *md, const char *what, const char *path, int e)
{
	char eb[128];

	errf(md, "%s %s: %s", what, path, strerror_r(e, eb, sizeof eb));
}

static int
path_in(char *out, size_t outlen, const char *root, const char *name)
{
	int k = snprintf(out, outlen, "%s/%s", root, name);

	return k < 0 || (size_t)k >= outlen ? -1 : 0;
}

static int
uidl_ok(const char *p, size_t n)
{
	size_t i;

	if (n == 0 || n > UIDL_MAX)
		return 0;
	for (i = 0; i < n; i++)
		if ((unsigned char)p[i] < 0x21 || (unsigned char)p[i] > 0x7e)
			return 0;
	return 1;
}

/* Decimal as we write it: digits only, no leading zero, at most max. */
static int
parse_canon(const char *p, size_t n, uint64_t max, uint64_t *out)
{
	if (n == 0 || (n > 1 && p[0] == '0'))
		return -1;
	if (parse_u64(p, n, out) < 0 || *out > max)
		return -1;
	return 0;
}

static int
parse_days(const char *p, size_t n, int32_t *out)
{
	uint64_t v;

	if (n == 2 && p[0] == '-' && p[1] == '1') {
		*out = -1;
		return 0;
	}
	if (parse_canon(p, n, INT32_MAX, &v) < 0)
		return -1;
	*out = (int32_t)v;
	return 0;
}

static int
slice_cmp(const char *a, size_t an, const char *b, size_t bn)
{
	int r = memcmp(a, b, an < bn ? an : bn);

	if (r != 0)
		return r;
	return an < bn ? -1 : an > bn;
}

static int
srec_cmp(const void *x, const void *y)
{
	const struct srec *a = x, *b = y;

	return slice_cmp(a->uidl, a->n, b->uidl, b->n);
}

/* Split one line into exactly k space-separated non-empty fields. */
static int
fields(const char *p, size_t n, struct slice *f, size_t k)
{
	size_t i, start = 0, got = 0;

	for (i = 0; i <= n; i++) {
		if (i < n && p[i] != ' ')
			continue;
		if (got == k || i == start)
			return -1;
		f[got].p = p + start;
		f[got].n = i - start;
		got++;
		start = i + 1;
	}
	return got == k ? 0 : -1;
}

/* Parse buf[0..len) strictly. 0, or -1 with a reason in why. */
static int
parse(struct sfile *f, size_t len, char *why, size_t whylen)
{
	static const char ver[] = MD_STATE_VERSION "\n";
	const char *buf = f->buf, *nl;
	struct slice fl[3];
	size_t pos, lines = 0, line = 2, i;
	uint64_t v;

	if (len < sizeof ver - 1 || memcmp(buf, ver, sizeof ver - 1) != 0) {
		snprintf(why, whylen, "line 1: not \"%s\"", MD_STATE_VERSION);
		return -1;
	}
	if (buf[len - 1] != '\n') {
		snprintf(why, whylen, "the last line has no line end (cut short?)");
		return -1;
	}
	pos = sizeof ver - 1;
	nl = memchr(buf + pos, '\n', len - pos);
	if (nl == NULL || fields(buf + pos, (size_t)(nl - buf) - pos, fl, 2) < 0 ||
	    fl[0].n != 10 || memcmp(fl[0].p, "last_login", 10) != 0 ||
	    parse_canon(fl[1].p, fl[1].n, INT64_MAX, &v) < 0) {
		snprintf(why, whylen, "line 2: not \"last_login <unix time>\"");
		return -1;
	}
	f->last_login = (int64_t)v;
	pos = (size_t)(nl - buf) + 1;
	for (i = pos; i < len; i++)
		lines += buf[i] == '\n';
	if (lines > 0) {
		f->rec = calloc(lines, sizeof *f->rec);
		if (f->rec == NULL) {
			snprintf(why, whylen, "out of memory");
			return -1;
		}
	}
	for (; pos < len; pos = (size_t)(nl - buf) + 1) {
		struct srec *r = &f->rec[f->n];

		line++;
		nl = memchr(buf + pos, '\n', len - pos);   /* found: the file ends with LF */
		if (fields(buf + pos, (size_t)(nl - buf) - pos, fl, 3) < 0 ||
		    !uidl_ok(fl[0].p, fl[0].n) ||
		    parse_canon(fl[1].p, fl[1].n, INT64_MAX, &v) < 0 ||
		    parse_days(fl[2].p, fl[2].n, &r->promised_days) < 0) {
			snprintf(why, whylen, "line %zu: not \"<uidl> <unix time> <days>\"", line);
			return -1;
		}
		r->uidl = fl[0].p;
		r->n = fl[0].n;
		r->first_download = (int64_t)v;
		f->n++;
	}
	if (f->n > 1)
		qsort(f->rec, f->n, sizeof *f->rec, srec_cmp);
	for (i = 1; i < f->n; i++) {
		if (srec_cmp(&f->rec[i - 1], &f->rec[i]) == 0) {
			snprintf(why, whylen, "UIDL %.*s has two records", (int)f->rec[i].n, f->rec[i].uidl);
			return -1;
		}
	}
	return 0;
}

/*
 * Load ROOT/pop3d.state. 1 when absent (f empty), 0 when read without doubt,
 * -1 when its content is in doubt, -2 when it could not be read (reason in
 * md->err; f empty).
 */
static int
load(struct maildrop *md, struct sfile *f)
{
	char path[PATH_MAX], why[160];
	struct stat st;
	size_t got = 0;
	ssize_t r;
	int fd;

	memset(f, 0, sizeof *f);
	if (path_in(path, sizeof path, md->path, MD_STATE_FILE) < 0) {
		note(md, "state unreadable:", md->path, ENAMETOOLONG);
		return -2;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0) {
		if (errno == ENOENT)
			return 1;
		if (errno == ELOOP) {   /* a symbolic link: not a file we wrote */
			note(md, "state in doubt: open", path, errno);
			return -1;
		}
		note(md, "state unreadable: open", path, errno);
		return -2;
	}
	if (fstat(fd, &st) < 0) {
		note(md, "state unreadable: stat", path, errno);
		goto unread;
	}
	if (!S_ISREG(st.st_mode) || st.st_size < 0 || (uint64_t)st.st_size > MD_STATE_FILE_MAX) {
		errf(md, "state in doubt: %s is not a regular file of at most %u octets",
		    path, MD_STATE_FILE_MAX);
		goto doubt;
	}
	f->buf = malloc((size_t)st.st_size + 1);
	if (f->buf == NULL) {
		note(md, "state unreadable: reading", path, ENOMEM);
		goto unread;
	}
	while (got < (size_t)st.st_size) {
		r = read(fd, f->buf + got, (size_t)st.st_size - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			note(md, "state unreadable: read", path, errno);
			goto unread;
		}
		if (r == 0) {   /* nobody writes it without our lock: a file system fault */
			errf(md, "state unreadable: %s shrank while read", path);
			goto unread;
		}
		got += (size_t)r;
	}
	close(fd);
	fd = -1;
	if (parse(f, got, why, sizeof why) < 0) {
		errf(md, "state in doubt: %s: %s", path, why);
		goto doubt;
	}
	return 0;
doubt:
	if (fd >= 0)
		close(fd);
	sfile_free(f);
	return -1;
unread:
	close(fd);
	sfile_free(f);
	return -2;
}

static const struct srec *
find(const struct sfile *f, const char *uidl)
{
	struct srec key;

	if (f->n == 0)
		return NULL;
	key.uidl = uidl;
	key.n = strlen(uidl);
	return bsearch(&key, f->rec, f->n, sizeof *f->rec, srec_cmp);
}

int
md_state_read(struct maildrop *md)
{
	struct sfile f;
	const struct srec *r;
	size_t i;
	int rc;

	for (i = 0; i < md->n; i++) {
		md->msgs[i].has_record = 0;
		md->msgs[i].first_download = 0;
		md->msgs[i].promised_days = 0;
	}
	md->last_login = 0;
	md->state_unlisted = 0;
	rc = load(md, &f);
	md->state_ok = rc >= 0;
	md->state_unread = rc == -2;
	if (rc < 0)
		return -1;
	md->last_login = f.last_login;
	md->state_unlisted = f.n;
	for (i = 0; i < md->n; i++) {
		r = find(&f, md->msgs[i].uidl);
		if (r == NULL)
			continue;
		md->state_unlisted--;
		md->msgs[i].has_record = 1;
		md->msgs[i].first_download = r->first_download;
		md->msgs[i].promised_days = r->promised_days;
	}
	sfile_free(&f);
	return 0;
}

/* ---- writing ---- */

static void
wb_rec(struct afile *w, const char *uidl, size_t n, int64_t t, int32_t days)
{
	char num[64];
	int k;

	if (!uidl_ok(uidl, n) || t < 0 || days < -1)
		return;   /* nothing we could read back: leave it out */
	k = snprintf(num, sizeof num, " %" PRId64 " %" PRId32 "\n", t, days);
	if (k < 0 || (size_t)k >= sizeof num)
		return;
	afile_put(w, uidl, n);
	afile_put(w, num, (size_t)k);
}

/* Move a doubtful ROOT/pop3d.state out of the way. 0 (also when absent), or -1 noted. */
static int
set_aside(struct maildrop *md, const char *final)
{
	char bad[PATH_MAX];
	long now = (long)time(NULL);
	int i, k, e = 0;

	for (i = 1; i <= BAD_TRIES; i++) {
		if (i == 1)
			k = snprintf(bad, sizeof bad, "%s/%s.bad-%ld", md->path, MD_STATE_FILE, now);
		else
			k = snprintf(bad, sizeof bad, "%s/%s.bad-%ld-%d", md->path, MD_STATE_FILE, now, i);
		if (k < 0 || (size_t)k >= sizeof bad) {
			note(md, "state: setting aside", final, ENAMETOOLONG);
			return -1;
		}
		if (renameat2(AT_FDCWD, final, AT_FDCWD, bad, RENAME_NOREPLACE) == 0) {
			errf(md, "state %s was in doubt: renamed to %s", final, bad);
			return 0;
		}
		e = errno;
		if (e == ENOENT)
			return 0;
		if (e != EEXIST)
			break;
	}
	note(md, "state in doubt, cannot set it aside:", final, e);
	return -1;
}

static int
idx_cmp_uidl(const void *key, const void *elt, const struct maildrop *md)
{
	const struct srec *r = key;
	const char *u = md->msgs[*(const size_t *)elt].uidl;

	return slice_cmp(r->uidl, r->n, u, strlen(u));
}

/* Whether a record's UIDL is listed: binary search over idx (msgs sorted by UIDL). */
static int
listed(const struct maildrop *md, const size_t *idx, const struct srec *r)
{
	size_t lo = 0, hi = md->n, mid;
	int c;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		c = idx_cmp_uidl(r, &idx[mid], md);
		if (c == 0)
			return 1;
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return 0;
}

/* qsort has no context argument: sort indices with a small merge sort. */
static void
sort_idx(const struct maildrop *md, size_t *v, size_t *tmp, size_t n)
{
	size_t h, i, j, k;

	if (n < 2)
		return;
	h = n / 2;
	sort_idx(md, v, tmp, h);
	sort_idx(md, v + h, tmp, n - h);
	for (i = 0, j = h, k = 0; i < h && j < n; k++)
		tmp[k] = strcmp(md->msgs[v[i]].uidl, md->msgs[v[j]].uidl) <= 0 ? v[i++] : v[j++];
	while (i < h)
		tmp[k++] = v[i++];
	while (j < n)
		tmp[k++] = v[j++];
	memcpy(v, tmp, n * sizeof *v);
}

/* The file's records of UIDLs the listing does not hold, and which of them still exist. */
struct unlisted {
	const struct srec **v;     /* in the file's order: sorted by UIDL */
	unsigned char      *alive;
	size_t              n;
};

static void
mark_alive(const char *uidl, size_t n, void *arg)
{
	struct unlisted *u = arg;
	size_t lo = 0, hi = u->n, mid;
	int c;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		c = slice_cmp(uidl, n, u->v[mid]->uidl, u->v[mid]->n);
		if (c == 0) {
			u->alive[mid] = 1;
			return;
		}
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
}

/*
 * Which unlisted records still have a message: a pass over both folders,
 * trusted only if neither folder changed during it (readdir may miss a file
 * renamed meanwhile, and a flag set over IMAP is a rename). Up to three
 * tries; 0 with u->alive filled, or -1 when no pass was trustworthy (or a
 * folder could not be read): then every record counts as alive.
 */
#define PRUNE_TRIES 3

static int
find_alive(const struct maildrop *md, struct unlisted *u)
{
	int k, tries;

	for (tries = 0; tries < PRUNE_TRIES; tries++) {
		memset(u->alive, 0, u->n);
		k = md_each_uidl(md->path, mark_alive, u);
		if (k == 0)
			return 0;
		if (k < 0)
			return -1;
	}
	return -1;
}

/*
 * Write again the file's records of messages the listing does not hold: a
 * listing can miss a file (renamed by an IMAP server while it was taken,
 * unreadable, beyond MAILDROP_MSGS_MAX), and a sweep's listing predates its
 * lock. Only a sweep drops any of them, once per sweep of a maildrop: those
 * whose message is missing from its own listing and from a pass over both
 * folders, under the lock, during which neither folder changed (a message an
 * IMAP server deleted leaves its record behind until then; it is harmless).
 * Reads the file again (under our lock). -1 when it cannot be read (md->err
 * says why): better no write than a dropped promise.
 */
static int
carry_over(struct maildrop *md, struct afile *w)
{
	struct unlisted u = { NULL, NULL, 0 };
	size_t *idx = NULL, *tmp = NULL, i;
	char keep[sizeof md->err], why[sizeof md->err];
	struct sfile f;
	int k;

	memcpy(keep, md->err, sizeof keep);
	md->err[0] = '\0';
	k = load(md, &f);
	if (k == 1) {   /* no file any more: no record to keep */
		memcpy(md->err, keep, sizeof keep);
		return 0;
	}
	if (k != 0) {
		memcpy(why, md->err, sizeof why);
		errf(md, "state not written: it could not be read again for the records of "
		    "messages not listed (%.150s)", why);
		return -1;
	}
	memcpy(md->err, keep, sizeof keep);
	idx = malloc((md->n ? md->n : 1) * sizeof *idx);
	tmp = malloc((md->n ? md->n : 1) * sizeof *tmp);
	u.v = malloc((f.n ? f.n : 1) * sizeof *u.v);
	u.alive = calloc(f.n ? f.n : 1, 1);
	if (idx == NULL || tmp == NULL || u.v == NULL || u.alive == NULL) {
		w->e = ENOMEM;   /* better no write than dropping promises */
		goto out;
	}
	for (i = 0; i < md->n; i++)
		idx[i] = i;
	sort_idx(md, idx, tmp, md->n);
	for (i = 0; i < f.n; i++)
		if (!listed(md, idx, &f.rec[i]))
			u.v[u.n++] = &f.rec[i];
	memset(u.alive, 1, u.n);
	if (u.n > 0 && md->sweep && !md->pruned) {
		md->pruned = 1;
		if (find_alive(md, &u) < 0)
			memset(u.alive, 1, u.n);   /* no trustworthy pass: keep them all */
	}
	for (i = 0; i < u.n && w->e == 0; i++)
		if (u.alive[i])
			wb_rec(w, u.v[i]->uidl, u.v[i]->n, u.v[i]->first_download,
			    u.v[i]->promised_days);
out:
	free(idx);
	free(tmp);
	free(u.v);
	free(u.alive);
	sfile_free(&f);
	return 0;
}

int
md_state_write(struct maildrop *md)
{
	struct afile w;
	char num[48];
	size_t i;
	int k;

	if (md->state_unread) {
		errf(md, "state not written: %s/%s could not be read when the maildrop was opened, "
		    "and may hold promises", md->path, MD_STATE_FILE);
		return -1;
	}
	if (afile_open(&w, md->path, MD_STATE_FILE) != 0) {
		note(md, "writing state", w.tmp, errno);
		return -1;
	}
	afile_put(&w, MD_STATE_VERSION "\n", sizeof MD_STATE_VERSION);
	k = snprintf(num, sizeof num, "last_login %" PRId64 "\n", md->last_login > 0 ? md->last_login : 0);
	afile_put(&w, num, (size_t)k);
	for (i = 0; i < md->n && w.e == 0; i++) {
		const struct msg *m = &md->msgs[i];

		if (m->has_record)
			wb_rec(&w, m->uidl, strlen(m->uidl), m->first_download, m->promised_days);
	}
	if (md->state_ok && carry_over(md, &w) < 0) {
		w.e = EIO;
		(void)afile_finish(&w);   /* removes the temporary file */
		return -1;                /* md->err says why */
	}
	if (afile_finish(&w) != 0) {
		note(md, "writing state", w.tmp, errno);
		return -1;
	}
	/* Never replace a file we doubt: it may hold the only copy of a promise. */
	if (!md->state_ok && set_aside(md, w.final) < 0) {
		afile_discard(&w);
		return -1;
	}
	switch (afile_install(&w)) {
	case -1:
		note(md, "writing state", w.final, errno);
		return -1;
	case -2:   /* the new state is in place; only its durability is in doubt */
		md->state_ok = 1;
		note(md, "fsync", md->path, errno);
		return -1;
	}
	md->state_ok = 1;
	return 0;
}
