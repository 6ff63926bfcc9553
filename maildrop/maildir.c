/*
 * maildir: opening a maildrop for a session or a sweep: path templates, the lock, one
 * scan of new/ and cur/ with CRLF sizes and UIDLs, and finding a message again
 * after another program renamed it. Runs on the thread pool; never removes or
 * renames a message (update.c does, and only after QUIT or for a sweep).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "maildrop/cache.h"
#include "maildrop/maildrop.h"
#include "maildrop/state.h"
#include "server/strutil.h"

#define LOCK_FILE  "pop3d.lock"
#define READ_CHUNK (64 * 1024)

/* One candidate message while scanning. */
struct ent {
	char     *file;       /* owned: "new/NAME" or "cur/NAME" */
	size_t    baselen;    /* octets of NAME before the first ':' */
	uint64_t  hash;       /* md_cache_hash of the base name */
	size_t    crec;       /* mtime and name are those of cache record crec, else NO_REC */
	int64_t   mtime;
	uint64_t  disk_size;
	uint64_t  size;
	int       computed;   /* mtime and sizes came from the disk, not the cache */
	int       cacheable;  /* a complete, consistent read: worth a cache line */
};

struct scan {
	struct ent *v;        /* owned */
	size_t      n;
	size_t      cap;
	size_t      over;     /* files left out beyond MAILDROP_MSGS_MAX */
	size_t      unreadable;  /* files left out because they cannot be read */
	char        why[160];    /* the first of those, and why, for the note */
};

#define ENT_BASE(e) ((e)->file + 4)
#define NO_REC      SIZE_MAX

static enum md_status
fail(char *err, size_t errlen, enum md_status st, const char *what, const char *path, int e)
{
	char eb[128];

	if (err != NULL && errlen > 0)
		snprintf(err, errlen, "%s %s: %s", what, path, strerror_r(e, eb, sizeof eb));
	return st;
}

enum md_status
maildrop_errno_status(int e)
{
	switch (e) {
	case EACCES:
	case EPERM:
	case EROFS:
	case ENOTDIR:
	case ELOOP:
	case ENAMETOOLONG:
		return MD_PERM;
	default:
		return MD_TEMP;
	}
}

/* "a/b" into out; 0, or -1 when it does not fit. */
static int
join(char *out, size_t outlen, const char *a, const char *b)
{
	int k = snprintf(out, outlen, "%s/%s", a, b);

	return k < 0 || (size_t)k >= outlen ? -1 : 0;
}

static int
name_cmp(const char *a, size_t an, const char *b, size_t bn)
{
	int r = memcmp(a, b, an < bn ? an : bn);

	if (r != 0)
		return r;
	return an < bn ? -1 : an > bn;
}

/* ---- templates ---- */

/* A login part must not be able to name another folder. */
static int
part_ok(const char *p, size_t n)
{
	if (n == 0 || memchr(p, '/', n) != NULL)
		return 0;
	return !(n == 1 && p[0] == '.') && !(n == 2 && p[0] == '.' && p[1] == '.');
}

int
maildrop_expand(const char *tmpl, const char *login, const char *home, char *out, size_t outlen)
{
	const char *p, *at, *v;
	size_t pos = 0, n;

	if (tmpl == NULL || login == NULL || out == NULL || outlen == 0)
		return -1;
	at = strrchr(login, '@');
	for (p = tmpl; *p != '\0'; p++) {
		v = p;
		n = 1;
		if (*p == '%') {
			switch (*++p) {
			case 'u':
				v = login;
				n = strlen(login);
				if (!part_ok(v, n))
					goto bad;
				break;
			case 'n':
				v = login;
				n = at != NULL ? (size_t)(at - login) : strlen(login);
				if (!part_ok(v, n))
					goto bad;
				break;
			case 'd':
				v = at != NULL ? at + 1 : "";
				n = strlen(v);
				if (n > 0 && !part_ok(v, n))
					goto bad;
				break;
			case 'h':
				if (home == NULL || home[0] == '\0')
					goto bad;
				v = home;
				n = strlen(home);
				break;
			case '%':
				v = p;
				break;
			default:   /* unknown escape, or a lone '%' at the end */
				goto bad;
			}
		}
		if (n >= outlen - pos)
			goto bad;
		memcpy(out + pos, v, n);
		pos += n;
	}
	out[pos] = '\0';
	if (out[0] != '/')
		goto bad;
	return 0;
bad:
	out[0] = '\0';
	return -1;
}

int
maildrop_template_check(const char *tmpl, char *err, size_t errlen)
{
	const char *p;
	unsigned char c;

	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (tmpl == NULL || tmpl[0] == '\0') {
		snprintf(err, errlen, "maildrop path is empty");
		return -1;
	}
	if (strlen(tmpl) >= PATH_MAX) {
		snprintf(err, errlen, "maildrop path is longer than %d octets", PATH_MAX - 1);
		return -1;
	}
	for (p = tmpl; *p != '\0'; p++) {
		if (*p != '%')
			continue;
		c = (unsigned char)*++p;
		if (c == '\0') {
			snprintf(err, errlen, "maildrop path ends with a lone '%%' (write %%%% for a percent sign)");
			return -1;
		}
		if (strchr("undh%", c) == NULL) {
			if (c > 0x20 && c < 0x7f)
				snprintf(err, errlen, "unknown escape '%%%c' in maildrop path at offset %zu (known: %%u %%n %%d %%h %%%%)",
				    c, (size_t)(p - tmpl) - 1);
			else
				snprintf(err, errlen, "unknown escape '%%\\x%02x' in maildrop path at offset %zu",
				    c, (size_t)(p - tmpl) - 1);
			return -1;
		}
	}
	if (tmpl[0] != '/' && strncmp(tmpl, "%h", 2) != 0) {
		snprintf(err, errlen, "maildrop path is not absolute (start it with '/' or '%%h')");
		return -1;
	}
	return 0;
}

/* ---- creating and locking ---- */

/*
 * mkdir 0700 unless a folder is already there. Returns 0 or an errno value.
 * Looks first: on every login the folders exist, and one stat is cheaper
 * than a failing mkdir followed by a stat.
 */
static int
ensure_dir(const char *path)
{
	struct stat st;

	if (stat(path, &st) == 0)
		return S_ISDIR(st.st_mode) ? 0 : ENOTDIR;
	if (errno != ENOENT)
		return errno;
	if (mkdir(path, 0700) == 0 || errno == EEXIST)   /* EEXIST: created meanwhile */
		return stat(path, &st) < 0 ? errno : S_ISDIR(st.st_mode) ? 0 : ENOTDIR;
	return errno;
}

static enum md_status
ensure_maildir(const char *root, char *err, size_t errlen)
{
	static const char *const subs[] = { "new", "cur", "tmp" };
	char p[PATH_MAX];
	struct stat st;
	size_t len = strlen(root), i;
	int e;

	if (len >= sizeof p)
		return fail(err, errlen, MD_PERM, "maildrop path", root, ENAMETOOLONG);
	if (stat(root, &st) < 0 || !S_ISDIR(st.st_mode)) {
		/* mkdir -p: every missing component, then the root itself. */
		memcpy(p, root, len + 1);
		for (i = 1; i < len; i++) {
			if (p[i] != '/' || p[i - 1] == '/')
				continue;
			p[i] = '\0';
			e = ensure_dir(p);
			if (e != 0)
				return fail(err, errlen, maildrop_errno_status(e), "mkdir", p, e);
			p[i] = '/';
		}
		e = ensure_dir(root);
		if (e != 0)
			return fail(err, errlen, maildrop_errno_status(e), "mkdir", root, e);
	}
	for (i = 0; i < sizeof subs / sizeof subs[0]; i++) {
		if (join(p, sizeof p, root, subs[i]) < 0)
			return fail(err, errlen, MD_PERM, "maildrop path", root, ENAMETOOLONG);
		e = ensure_dir(p);
		if (e != 0)
			return fail(err, errlen, maildrop_errno_status(e), "mkdir", p, e);
	}
	return MD_OK;
}

/*
 * An open-file-description lock: it conflicts with every other open of the
 * file, in this process or another, and the kernel drops it when the last
 * descriptor goes. The file is never unlinked: that would race other lockers.
 */
/* How long a login waits for a maildrop lock that is being let go (runs on a pool thread). */
#define LOCK_RETRY_MS      250
#define LOCK_RETRY_STEP_MS 25

static enum md_status
take_lock(const char *root, int *fdp, char *err, size_t errlen)
{
	char path[PATH_MAX];
	struct flock fl;
	int fd, e, tries;

	if (join(path, sizeof path, root, LOCK_FILE) < 0)
		return fail(err, errlen, MD_PERM, "maildrop path", root, ENAMETOOLONG);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return fail(err, errlen, maildrop_errno_status(errno), "open", path, errno);
	memset(&fl, 0, sizeof fl);
	fl.l_type = F_WRLCK;
	fl.l_whence = SEEK_SET;
	/* A session that has just ended (here or on another node) may still be letting go:
	 * try a few times within LOCK_RETRY_MS before answering [IN-USE]. */
	for (tries = 0; fcntl(fd, F_OFD_SETLK, &fl) < 0; tries++) {
		const struct timespec pause = { 0, LOCK_RETRY_STEP_MS * 1000000L };

		e = errno;
		if ((e == EAGAIN || e == EACCES) && tries < LOCK_RETRY_MS / LOCK_RETRY_STEP_MS) {
			nanosleep(&pause, NULL);
			continue;
		}
		close(fd);
		if (e == EAGAIN || e == EACCES) {
			if (err != NULL && errlen > 0)
				snprintf(err, errlen, "maildrop %s is in use by another session", root);
			return MD_INUSE;
		}
		return fail(err, errlen, MD_TEMP, "lock", path, e);
	}
	*fdp = fd;
	return MD_OK;
}

/* ---- scanning ---- */

static enum md_status
scan_add(struct scan *s, const char *sub, const char *name, size_t nlen)
{
	struct ent *e;
	const char *colon;

	if (s->n == MAILDROP_MSGS_MAX) {
		s->over++;
		return MD_OK;
	}
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 256;

		if (cap > MAILDROP_MSGS_MAX)
			cap = MAILDROP_MSGS_MAX;
		e = realloc(s->v, cap * sizeof *e);
		if (e == NULL)
			return MD_TEMP;
		s->v = e;
		s->cap = cap;
	}
	e = &s->v[s->n];
	memset(e, 0, sizeof *e);
	e->file = malloc(4 + nlen + 1);
	if (e->file == NULL)
		return MD_TEMP;
	memcpy(e->file, sub, 3);
	e->file[3] = '/';
	memcpy(e->file + 4, name, nlen + 1);
	colon = memchr(name, ':', nlen);
	e->baselen = colon != NULL ? (size_t)(colon - name) : nlen;
	e->crec = NO_REC;
	s->n++;
	return MD_OK;
}

/* One readdir pass: regular files whose names do not start with '.'. */
static enum md_status
scan_dir(const char *root, const char *sub, struct scan *s, int sweep, char *err, size_t errlen)
{
	char path[PATH_MAX];
	enum md_status st = MD_OK;
	struct dirent *de;
	struct stat sb;
	size_t nlen;
	DIR *d;
	int fd;

	if (join(path, sizeof path, root, sub) < 0)
		return fail(err, errlen, MD_PERM, "maildrop path", root, ENAMETOOLONG);
	fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 && sweep && errno == ENOENT)
		return MD_OK;   /* a sweep creates nothing: a missing folder holds no mail */
	if (fd < 0)
		return fail(err, errlen, maildrop_errno_status(errno), "open", path, errno);
	d = fdopendir(fd);
	if (d == NULL) {
		st = fail(err, errlen, MD_TEMP, "opendir", path, errno);
		close(fd);
		return st;
	}
	for (;;) {
		errno = 0;
		de = readdir(d);
		if (de == NULL) {
			if (errno != 0)
				st = fail(err, errlen, MD_TEMP, "readdir", path, errno);
			break;
		}
		if (de->d_name[0] == '.' || de->d_type == DT_DIR)
			continue;
		nlen = strlen(de->d_name);
		if (nlen > NAME_MAX)
			continue;
		if (de->d_type != DT_REG) {
			/* Unknown type, or a symlink/FIFO/device: only regular files count. */
			if (fstatat(dirfd(d), de->d_name, &sb, AT_SYMLINK_NOFOLLOW) < 0) {
				if (errno == ENOENT)
					continue;   /* moved away meanwhile */
				st = fail(err, errlen, MD_TEMP, "stat in", path, errno);
				break;
			}
			if (!S_ISREG(sb.st_mode))
				continue;
		}
		if (scan_add(s, sub, de->d_name, nlen) != MD_OK) {
			st = fail(err, errlen, MD_TEMP, "scan", path, ENOMEM);
			break;
		}
	}
	closedir(d);
	return st;
}

/* The session's order: mtime, then base name. */
static int
ent_order_cmp(const void *x, const void *y)
{
	const struct ent *a = x, *b = y;
	int r;

	if (a->mtime != b->mtime)
		return a->mtime < b->mtime ? -1 : 1;
	r = name_cmp(ENT_BASE(a), a->baselen, ENT_BASE(b), b->baselen);
	return r != 0 ? r : strcmp(a->file, b->file);
}

/*
 * Put s (deduplicated) in the session's order. The cache was written in
 * that order, so when its records are still strictly in it (c->ordered),
 * the entries that took mtime and name from a record (e->crec) are already
 * ordered by record index: they are placed without comparing, and only the
 * others (new mail, recounted files) are sorted and merged in. The result
 * is exactly what sorting everything with ent_order_cmp gives, which is
 * what happens otherwise (and when memory is short: this cannot fail).
 */
static void
order(struct scan *s, const struct md_cache *c)
{
	struct ent *out, *rest = NULL;
	size_t *at = NULL, i, k, na = 0, nb, ia, ib, w;

	if (s->n < 2)
		return;
	if (c->ordered && c->nrec > 0)
		at = malloc(c->nrec * sizeof *at);
	if (at != NULL) {
		for (k = 0; k < c->nrec; k++)
			at[k] = NO_REC;
		for (i = 0; i < s->n; i++) {
			k = s->v[i].crec;
			if (k == NO_REC)
				continue;
			if (k >= c->nrec || at[k] != NO_REC) {   /* cannot happen: names are unique */
				free(at);
				at = NULL;
				break;
			}
			at[k] = i;
			na++;
		}
	}
	nb = s->n - na;
	out = at != NULL && na > 0 ? malloc(s->n * sizeof *out) : NULL;
	if (out != NULL && nb > 0)
		rest = malloc(nb * sizeof *rest);
	if (out == NULL || (nb > 0 && rest == NULL)) {
		free(out);
		free(at);
		qsort(s->v, s->n, sizeof *s->v, ent_order_cmp);
		return;
	}
	for (i = 0, ib = 0; i < s->n; i++)
		if (s->v[i].crec == NO_REC)
			rest[ib++] = s->v[i];
	if (nb > 1)
		qsort(rest, nb, sizeof *rest, ent_order_cmp);
	/* Merge the cached run (in record order) with the sorted rest. */
	for (k = 0, ia = 0, ib = 0, w = 0; ia < na || ib < nb;) {
		while (ia < na && at[k] == NO_REC)
			k++;
		if (ia < na && (ib == nb || ent_order_cmp(&s->v[at[k]], &rest[ib]) < 0)) {
			out[w++] = s->v[at[k++]];
			ia++;
		} else {
			out[w++] = rest[ib++];
		}
	}
	free(at);
	free(rest);
	free(s->v);
	s->v = out;
	s->cap = s->n;
}

/*
 * Keep one entry per base name: the one whose file name sorts first (the cur/
 * one, as "cur/" < "new/"); free the others. Hashes every base name into
 * e->hash on the way. The survivors keep the scan's order. MD_TEMP without
 * memory (s unchanged but for e->hash).
 */
static enum md_status
dedupe(struct scan *s, const struct md_cache *c)
{
	struct md_cache_slot *tab;
	struct ent *a, *b;
	size_t nslot = 16, mask, i, w, pos;
	uint32_t tag;

	for (i = 0; i < s->n; i++)
		s->v[i].hash = md_cache_hash(c, ENT_BASE(&s->v[i]), s->v[i].baselen);
	if (s->n < 2)
		return MD_OK;
	while (nslot < 2 * s->n)   /* at most half full */
		nslot *= 2;
	tab = calloc(nslot, sizeof *tab);
	if (tab == NULL)
		return MD_TEMP;
	mask = nslot - 1;
	for (i = 0; i < s->n; i++) {
		b = &s->v[i];
		tag = (uint32_t)(b->hash >> 32);
		for (pos = (size_t)b->hash & mask;; pos = (pos + 1) & mask) {
			if (tab[pos].idx == 0) {
				tab[pos].tag = tag;
				tab[pos].idx = (uint32_t)(i + 1);   /* n <= MAILDROP_MSGS_MAX */
				break;
			}
			a = &s->v[tab[pos].idx - 1];
			if (tab[pos].tag != tag ||
			    name_cmp(ENT_BASE(a), a->baselen, ENT_BASE(b), b->baselen) != 0)
				continue;
			/* The same message twice: the loser's name is freed, the slot names the winner. */
			if (strcmp(b->file, a->file) < 0) {
				free(a->file);
				a->file = NULL;
				tab[pos].idx = (uint32_t)(i + 1);
			} else {
				free(b->file);
				b->file = NULL;
			}
			break;
		}
	}
	free(tab);
	for (i = 0, w = 0; i < s->n; i++)
		if (s->v[i].file != NULL)
			s->v[w++] = s->v[i];
	s->n = w;
	return MD_OK;
}

/* ",S=<n>" and ",W=<n>" in a base name: the first of each, parsed strictly. */
struct name_sizes {
	int      has_s, has_w;
	uint64_t s, w;
};

static void
name_sizes(const char *base, size_t n, struct name_sizes *ns)
{
	const char *p = base, *end = base + n, *c, *v, *ve;
	int seen_s = 0, seen_w = 0;

	memset(ns, 0, sizeof *ns);
	while ((!seen_s || !seen_w) && p < end && (c = memchr(p, ',', (size_t)(end - p))) != NULL) {
		p = c + 1;
		if (end - c < 3 || c[2] != '=' || (c[1] == 'S' ? seen_s : c[1] == 'W' ? seen_w : 1))
			continue;
		v = c + 3;
		ve = memchr(v, ',', (size_t)(end - v));
		if (ve == NULL)
			ve = end;
		if (c[1] == 'S') {
			seen_s = 1;
			ns->has_s = parse_u64(v, (size_t)(ve - v), &ns->s) == 0;
		} else {
			seen_w = 1;
			ns->has_w = parse_u64(v, (size_t)(ve - v), &ns->w) == 0;
		}
	}
}

/* A CRLF size that a file of disk octets can have: disk <= w <= 2 * disk. */
static int
w_plausible(uint64_t w, uint64_t disk)
{
	return w >= disk && w - disk <= disk;
}

/* What moved away or stopped being a regular file is not listed. */
static int
vanished(int e)
{
	return e == ENOENT || e == ELOOP;
}

/*
 * A message this process may not read (EACCES, EPERM: a delivery with the
 * wrong owner or mode) is left out of the session rather than refusing the
 * login: unlisted, nobody can delete it, and the rest of the mail is served.
 */
static int
unreadable(int e)
{
	return e == EACCES || e == EPERM;
}

/* Read the file once, counting. 0, 1 when it vanished, 2 when it may not be read, -1 with err set. */
static int
count_file(const char *root, struct ent *e, char *buf, char *err, size_t errlen)
{
	struct crlf_count cc = { 0, 0 };
	char path[PATH_MAX];
	struct stat st;
	uint64_t got = 0;
	ssize_t r;
	int fd;

	if (join(path, sizeof path, root, e->file) < 0) {
		fail(err, errlen, MD_TEMP, "path", e->file, ENAMETOOLONG);
		return -1;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0) {
		if (vanished(errno))
			return 1;
		if (unreadable(errno))
			return 2;
		fail(err, errlen, MD_TEMP, "open", path, errno);
		return -1;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return 1;
	}
	for (;;) {
		r = read(fd, buf, READ_CHUNK);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			fail(err, errlen, MD_TEMP, "read", path, errno);
			close(fd);
			return -1;
		}
		if (r == 0)
			break;
		crlf_count_update(&cc, buf, (size_t)r);
		got += (uint64_t)r;
	}
	close(fd);
	e->mtime = (int64_t)st.st_mtime;
	e->disk_size = got;
	e->size = cc.size;
	e->computed = 1;
	/* A file that changed size while we read it is not worth remembering. */
	e->cacheable = got == (uint64_t)st.st_size;
	return 0;
}

/* Sizes and mtime for one entry: from ",W=", the cache or the disk. 0, 1 (vanished) or -1. */
static int
measure(const char *root, struct ent *e, struct md_cache *c, char *buf, char *err, size_t errlen)
{
	const struct md_cache_rec *r;
	char path[PATH_MAX];
	struct name_sizes ns;
	uint64_t w;
	struct stat st;

	name_sizes(ENT_BASE(e), e->baselen, &ns);
	w = ns.w;
	r = md_cache_find(c, ENT_BASE(e), e->baselen, e->hash);
	if (r != NULL && (!ns.has_s || r->disk_size == ns.s) &&
	    (!ns.has_w || !w_plausible(w, r->disk_size) || r->size == w)) {
		e->mtime = r->mtime;
		e->disk_size = r->disk_size;
		e->size = r->size;
		e->crec = (size_t)(r - c->rec);
		return 0;
	}
	if (ns.has_w) {
		if (join(path, sizeof path, root, e->file) < 0) {
			fail(err, errlen, MD_TEMP, "path", e->file, ENAMETOOLONG);
			return -1;
		}
		if (fstatat(AT_FDCWD, path, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			if (vanished(errno))
				return 1;
			fail(err, errlen, MD_TEMP, "stat", path, errno);
			return -1;
		}
		if (!S_ISREG(st.st_mode))
			return 1;
		/* Trusted, unless no file of this length can have that CRLF size. */
		if (w_plausible(w, (uint64_t)st.st_size)) {
			e->mtime = (int64_t)st.st_mtime;
			e->disk_size = (uint64_t)st.st_size;
			e->size = w;
			e->computed = 1;
			e->cacheable = 1;
			return 0;
		}
	}
	return count_file(root, e, buf, err, errlen);
}

/*
 * For a sweep: mtime and disk size from a fresh stat; the CRLF size from the
 * cache or ",W=" when they fit the file, else the disk size. Reads no message
 * (a sweep over an account nobody reads must not read all of it every hour).
 * 0, 1 (vanished) or -1.
 */
static int
measure_sweep(const char *root, struct ent *e, struct md_cache *c, char *err, size_t errlen)
{
	const struct md_cache_rec *r;
	char path[PATH_MAX];
	struct name_sizes ns;
	struct stat st;

	if (join(path, sizeof path, root, e->file) < 0) {
		fail(err, errlen, MD_TEMP, "path", e->file, ENAMETOOLONG);
		return -1;
	}
	if (fstatat(AT_FDCWD, path, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		if (vanished(errno))
			return 1;
		fail(err, errlen, MD_TEMP, "stat", path, errno);
		return -1;
	}
	if (!S_ISREG(st.st_mode))
		return 1;
	e->mtime = (int64_t)st.st_mtime;
	e->disk_size = (uint64_t)st.st_size;
	e->size = e->disk_size;
	r = md_cache_find(c, ENT_BASE(e), e->baselen, e->hash);
	if (r != NULL && r->disk_size == e->disk_size) {
		e->size = r->size;
		return 0;
	}
	name_sizes(ENT_BASE(e), e->baselen, &ns);
	if (ns.has_w && w_plausible(ns.w, e->disk_size))
		e->size = ns.w;
	return 0;
}

/* 1 when base looks like a hashed UIDL: "H" and 40 lowercase hex digits. */
static int
looks_hashed(const char *base, size_t n)
{
	size_t i;

	if (n != 41 || base[0] != 'H')
		return 0;
	for (i = 1; i < n; i++)
		if (!((base[i] >= '0' && base[i] <= '9') || (base[i] >= 'a' && base[i] <= 'f')))
			return 0;
	return 1;
}

static int
make_uidl(const char *base, size_t n, char out[UIDL_MAX + 1])
{
	unsigned char dg[EVP_MAX_MD_SIZE];
	unsigned int dl = 0;
	size_t i = 0;
	int ok;

	while (i < n && (unsigned char)base[i] - 0x21u <= 0x7eu - 0x21u)   /* 0x21..0x7E */
		i++;
	ok = n >= 1 && n <= UIDL_MAX && i == n;
	/* A name that could be some other name's hash is hashed too: two messages can
	 * then share a UIDL only through a SHA-256 collision (found by fuzz_maildir). */
	if (ok && !looks_hashed(base, n)) {
		memcpy(out, base, n);
		out[n] = '\0';
		return 0;
	}
	/* "H" + 160 bits of SHA-256 of the base name: stable across restarts. */
	if (EVP_Digest(base, n, dg, &dl, EVP_sha256(), NULL) != 1 || dl < 20)
		return -1;
	out[0] = 'H';
	hex_encode(out + 1, dg, 20);
	return 0;
}

static int
same_time(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec == b->tv_sec && a->tv_nsec == b->tv_nsec;
}

int
md_each_uidl(const char *root, void (*fn)(const char *uidl, size_t n, void *arg), void *arg)
{
	static const char *const subs[] = { "new", "cur" };
	char path[PATH_MAX], uidl[UIDL_MAX + 1];
	struct stat before, after;
	struct dirent *de;
	const char *colon;
	size_t k, baselen;
	int e, changed = 0;
	DIR *d;

	for (k = 0; k < 2; k++) {
		if (join(path, sizeof path, root, subs[k]) < 0) {
			errno = ENAMETOOLONG;
			return -1;
		}
		d = opendir(path);
		if (d == NULL && errno == ENOENT)
			continue;
		if (d == NULL)
			return -1;
		if (fstat(dirfd(d), &before) < 0) {
			e = errno;
			closedir(d);
			errno = e;
			return -1;
		}
		for (;;) {
			errno = 0;
			de = readdir(d);
			if (de == NULL)
				break;
			if (de->d_name[0] == '.')
				continue;
			colon = strchr(de->d_name, ':');
			baselen = colon != NULL ? (size_t)(colon - de->d_name) : strlen(de->d_name);
			if (make_uidl(de->d_name, baselen, uidl) < 0) {
				errno = EIO;
				break;
			}
			fn(uidl, strlen(uidl), arg);
		}
		e = errno;
		if (e == 0 && fstat(dirfd(d), &after) < 0)
			e = errno;
		closedir(d);
		if (e != 0) {
			errno = e;
			return -1;
		}
		/* A rename in the folder during the pass may have hidden a name from it. */
		if (!same_time(&before.st_mtim, &after.st_mtim) ||
		    !same_time(&before.st_ctim, &after.st_ctim))
			changed = 1;
	}
	return changed;
}

static void
scan_free(struct scan *s)
{
	size_t i;

	for (i = 0; i < s->n; i++)
		free(s->v[i].file);
	free(s->v);
	s->v = NULL;
	s->n = 0;
}

/* Rewrite the cache from the listed messages; failure only leaves a note in md->err. */
static void
cache_update(struct maildrop *md, const struct scan *s)
{
	struct md_cache_rec *recs;
	size_t i, k = 0;

	recs = calloc(s->n ? s->n : 1, sizeof *recs);
	if (recs == NULL) {
		fail(md->err, sizeof md->err, MD_TEMP, "cache for", md->path, ENOMEM);
		return;
	}
	for (i = 0; i < s->n; i++) {
		if (s->v[i].computed && !s->v[i].cacheable)
			continue;
		recs[k].name = ENT_BASE(&s->v[i]);
		recs[k].namelen = s->v[i].baselen;
		recs[k].mtime = s->v[i].mtime;
		recs[k].disk_size = s->v[i].disk_size;
		recs[k].size = s->v[i].size;
		k++;
	}
	md_cache_write(md->path, recs, k, md->err, sizeof md->err);
	free(recs);
}

/* A sweep of a maildir that does not exist: nothing to lock, nothing listed. */
static enum md_status
open_absent(const char *path, struct maildrop **out, char *err, size_t errlen)
{
	struct maildrop *md = calloc(1, sizeof *md);

	if (md != NULL) {
		md->path = strdup(path);
		md->msgs = calloc(1, sizeof *md->msgs);
	}
	if (md == NULL || md->path == NULL || md->msgs == NULL) {
		if (md != NULL) {
			free(md->path);
			free(md->msgs);
			free(md);
		}
		return fail(err, errlen, MD_TEMP, "scan", path, ENOMEM);
	}
	md->lock_fd = -1;
	md->sweep = 1;
	md->absent = 1;
	md->state_ok = 1;
	*out = md;
	return MD_OK;
}

static enum md_status
open_md(const char *path, int sweep, struct maildrop **out, char *err, size_t errlen)
{
	struct maildrop *md = NULL;
	struct md_cache cache;
	struct scan s = { NULL, 0, 0, 0, 0, "" };
	enum md_status st;
	char cerr[256] = "";
	char *buf = NULL;
	size_t i, w;
	int lock_fd = -1, r, dirty;

	*out = NULL;
	memset(&cache, 0, sizeof cache);
	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (path == NULL || path[0] == '\0')
		return fail(err, errlen, MD_PERM, "maildrop path", "\"\"", EINVAL);
	if (sweep) {
		struct stat rs;

		if (stat(path, &rs) < 0) {
			if (errno == ENOENT)
				return open_absent(path, out, err, errlen);
			return fail(err, errlen, maildrop_errno_status(errno), "stat", path, errno);
		}
		if (!S_ISDIR(rs.st_mode))
			return fail(err, errlen, MD_PERM, "maildrop", path, ENOTDIR);
	} else {
		st = ensure_maildir(path, err, errlen);
		if (st != MD_OK)
			return st;
	}
	/* A sweep scans unlocked (sweep_claim locks later, for the removals only). */
	if (!sweep) {
		st = take_lock(path, &lock_fd, err, errlen);
		if (st != MD_OK)
			return st;
	}

	st = scan_dir(path, "cur", &s, sweep, err, errlen);
	if (st == MD_OK)
		st = scan_dir(path, "new", &s, sweep, err, errlen);
	if (st != MD_OK)
		goto out;
	md_cache_load(&cache, path, MAILDROP_MSGS_MAX, cerr, sizeof cerr);
	buf = malloc(READ_CHUNK);
	if (buf == NULL || dedupe(&s, &cache) != MD_OK) {
		st = fail(err, errlen, MD_TEMP, "scan", path, ENOMEM);
		goto out;
	}
	dirty = 0;
	for (i = 0, w = 0; i < s.n; i++) {
		r = sweep ? measure_sweep(path, &s.v[i], &cache, err, errlen)
		          : measure(path, &s.v[i], &cache, buf, err, errlen);
		if (r < 0) {
			st = MD_TEMP;
			goto out;
		}
		if (r == 2 && s.unreadable++ == 0)
			snprintf(s.why, sizeof s.why, "%.100s", s.v[i].file);
		if (r > 0) {
			free(s.v[i].file);
			continue;
		}
		if (s.v[i].computed && s.v[i].cacheable && s.v[i].mtime >= 0 &&
		    md_cache_name_ok(ENT_BASE(&s.v[i]), s.v[i].baselen))
			dirty = 1;
		s.v[w++] = s.v[i];
	}
	s.n = w;
	/* After every lookup: lines for messages that are gone make it stale. */
	if (md_cache_stale(&cache))
		dirty = 1;
	order(&s, &cache);

	md = calloc(1, sizeof *md);
	if (md != NULL) {
		md->path = strdup(path);
		md->msgs = calloc(s.n ? s.n : 1, sizeof *md->msgs);
	}
	if (md == NULL || md->path == NULL || md->msgs == NULL) {
		st = fail(err, errlen, MD_TEMP, "scan", path, ENOMEM);
		goto out;
	}
	md->lock_fd = -1;
	for (i = 0; i < s.n; i++) {
		struct msg *m = &md->msgs[i];

		if (make_uidl(ENT_BASE(&s.v[i]), s.v[i].baselen, m->uidl) < 0) {
			st = fail(err, errlen, MD_TEMP, "hashing a name in", path, EIO);
			goto out;
		}
		m->size = s.v[i].size;
		m->disk_size = s.v[i].disk_size;
		m->mtime = s.v[i].mtime;
		md->total += m->size;
	}
	/* Nothing can fail from here: hand the names over. */
	for (i = 0; i < s.n; i++)
		md->msgs[i].file = s.v[i].file;
	md->n = s.n;
	md->lock_fd = lock_fd;
	lock_fd = -1;
	md->sweep = sweep;
	if (cerr[0] != '\0')
		snprintf(md->err, sizeof md->err, "%s", cerr);
	if (dirty && !sweep)
		cache_update(md, &s);
	if (s.over > 0)
		snprintf(md->err, sizeof md->err, "listing only the first %u messages of %s (%zu more)",
		    MAILDROP_MSGS_MAX, path, s.over);
	if (s.unreadable > 0) {
		snprintf(md->err, sizeof md->err, "%zu message%s cannot be read (permission denied; "
		    "first: %.100s), left out of this session and not removed", s.unreadable,
		    s.unreadable == 1 ? "" : "s", s.why);
	}
	/*
	 * Last, so that a doubt is what md->err reports. A session reads it under
	 * the lock; a sweep without it, which is safe because every writer replaces
	 * the file by rename: a reader sees the old file or the new one, whole.
	 */
	md_state_read(md);
	free(s.v);
	s.v = NULL;
	s.n = 0;
	*out = md;
	md = NULL;
	st = MD_OK;
out:
	md_cache_free(&cache);
	free(buf);
	scan_free(&s);
	if (md != NULL) {
		free(md->msgs);   /* holds no names yet */
		free(md->path);
		free(md);
	}
	if (lock_fd >= 0)
		close(lock_fd);
	return st;
}

enum md_status
maildrop_open(const char *path, struct maildrop **out, char *err, size_t errlen)
{
	return open_md(path, 0, out, err, errlen);
}

/*
 * Our temporary files (tmp/pop3d.cache.* and tmp/pop3d.state.*) are written
 * only under the maildrop lock, so any found while we hold it belong to a
 * writer that died between create and rename: remove them. Nothing else in
 * tmp/ is ours to touch. Failures only leave litter behind.
 */
static void
remove_stale_temps(struct maildrop *md)
{
	char dir[PATH_MAX];
	struct dirent *e;
	DIR *dp;
	int dfd;

	if (join(dir, sizeof dir, md->path, "tmp") < 0)
		return;
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (dfd < 0)
		return;
	dp = fdopendir(dfd);
	if (dp == NULL) {
		close(dfd);
		return;
	}
	while ((e = readdir(dp)) != NULL) {
		if (strncmp(e->d_name, MD_CACHE_FILE ".", sizeof MD_CACHE_FILE) == 0 ||
		    strncmp(e->d_name, MD_STATE_FILE ".", sizeof MD_STATE_FILE) == 0)
			(void)unlinkat(dirfd(dp), e->d_name, 0);
	}
	closedir(dp);
}

static int open_regular(const char *root, const char *file);

enum md_status
maildrop_scan_sweep(const char *path, struct maildrop **out, char *err, size_t errlen)
{
	return open_md(path, 1, out, err, errlen);
}

/*
 * Dry run: would a sweep get the lock? Opens the lock file read-only and only
 * asks (F_OFD_GETLK), so nothing is created or held: a file that is not there
 * is a lock nobody holds.
 */
static enum md_status
probe_lock(const char *root, char *err, size_t errlen)
{
	char path[PATH_MAX];
	struct flock fl;
	int fd;

	if (join(path, sizeof path, root, LOCK_FILE) < 0)
		return fail(err, errlen, MD_PERM, "maildrop path", root, ENAMETOOLONG);
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0 && errno == ENOENT)
		return MD_OK;
	if (fd < 0)
		return fail(err, errlen, maildrop_errno_status(errno), "open", path, errno);
	memset(&fl, 0, sizeof fl);
	fl.l_type = F_WRLCK;
	fl.l_whence = SEEK_SET;
	if (fcntl(fd, F_OFD_GETLK, &fl) < 0) {
		int e = errno;

		close(fd);
		return fail(err, errlen, MD_TEMP, "lock", path, e);
	}
	close(fd);
	if (fl.l_type != F_UNLCK) {
		if (err != NULL && errlen > 0)
			snprintf(err, errlen, "maildrop %s is in use by another session", root);
		return MD_INUSE;
	}
	return MD_OK;
}

/*
 * Find a sweep candidate again and look at it now: its current name, mtime
 * and size, and whether this process can open it for reading (a file nobody
 * can read was never delivered to anyone: keep it, README "On any doubt").
 * Drops MSG_REMOVE when it is gone or cannot be looked at.
 */
static void
sweep_recheck(struct maildrop *md, size_t i)
{
	struct msg *m = &md->msgs[i];
	struct stat st;
	int fd;

	m->flags &= ~MSG_UNREADABLE;
	/*
	 * Not found under its listed name: removed (another node's sweep, a
	 * client's DELE) or renamed (a flag set over IMAP). Either way it is not
	 * removed now, and not looked for either: that lists both folders, under
	 * the lock, once per such message. The next sweep lists it afresh.
	 */
	fd = open_regular(md->path, m->file);
	if (fd == -EACCES || fd == -EPERM) {
		m->flags |= MSG_UNREADABLE;
		return;
	}
	if (fd < 0 || fstat(fd, &st) < 0) {
		if (fd >= 0)
			close(fd);
		m->flags &= ~MSG_REMOVE;   /* gone, or in doubt: nothing to remove this time */
		return;
	}
	close(fd);
	m->mtime = (int64_t)st.st_mtime;
	m->disk_size = (uint64_t)st.st_size;
}

enum md_status
maildrop_sweep_claim(struct maildrop *md, int dry_run, char *err, size_t errlen)
{
	enum md_status st;
	size_t i;

	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (md == NULL || !md->sweep || md->lock_fd >= 0)
		return fail(err, errlen, MD_TEMP, "sweep claim", md != NULL ? md->path : "?", EINVAL);
	if (md->absent)
		return MD_OK;   /* no maildir: nothing to lock, nothing listed */
	st = dry_run ? probe_lock(md->path, err, errlen) : take_lock(md->path, &md->lock_fd, err, errlen);
	if (st != MD_OK)
		return st;
	/* What a session wrote since the scan counts: decide on the state as it is now. */
	md_state_read(md);
	for (i = 0; i < md->n; i++)
		if (md->msgs[i].flags & MSG_REMOVE)
			sweep_recheck(md, i);
	return MD_OK;
}

enum md_status
maildrop_open_sweep(const char *path, struct maildrop **out, char *err, size_t errlen)
{
	struct maildrop *md = NULL;
	enum md_status st = open_md(path, 1, &md, err, errlen);

	if (st != MD_OK)
		return st;
	st = maildrop_sweep_claim(md, 0, err, errlen);
	if (st != MD_OK) {
		maildrop_close(md);
		return st;
	}
	*out = md;
	return MD_OK;
}

void
maildrop_sweep_tidy(struct maildrop *md)
{
	if (md->sweep && md->lock_fd >= 0)
		remove_stale_temps(md);
}

/* ---- one message ---- */

/* Open ROOT/file as a regular file. A descriptor or -errno. */
static int
open_regular(const char *root, const char *file)
{
	char path[PATH_MAX];
	struct stat st;
	int fd, e;

	if (join(path, sizeof path, root, file) < 0)
		return -ENAMETOOLONG;
	/* O_NONBLOCK: a FIFO put in the message's place must not hang a worker; no effect on files. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		e = errno;
		close(fd);
		return -e;
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		return S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
	}
	return fd;
}

/* Look for msgs[i]'s base name in cur/, then new/. 0 (file updated), or -errno. */
static int
refind(struct maildrop *md, size_t i)
{
	static const char *const subs[] = { "cur", "new" };
	const char *base = md->msgs[i].file + 4;
	size_t baselen = strcspn(base, ":"), nlen, k;
	char path[PATH_MAX], *file;
	struct dirent *de;
	DIR *d;
	int fd, e;

	for (k = 0; k < 2; k++) {
		if (join(path, sizeof path, md->path, subs[k]) < 0)
			return -ENAMETOOLONG;
		fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0)
			return -errno;
		d = fdopendir(fd);
		if (d == NULL) {
			e = errno;
			close(fd);
			return -e;
		}
		for (;;) {
			errno = 0;
			de = readdir(d);
			if (de == NULL) {
				e = errno;
				closedir(d);
				if (e != 0)
					return -e;
				break;
			}
			nlen = strlen(de->d_name);
			if (de->d_name[0] == '.' || de->d_type == DT_DIR || nlen < baselen ||
			    memcmp(de->d_name, base, baselen) != 0 ||
			    (de->d_name[baselen] != '\0' && de->d_name[baselen] != ':'))
				continue;
			file = malloc(4 + nlen + 1);
			if (file == NULL) {
				closedir(d);
				return -ENOMEM;
			}
			memcpy(file, subs[k], 3);
			file[3] = '/';
			memcpy(file + 4, de->d_name, nlen + 1);
			closedir(d);
			free(md->msgs[i].file);
			md->msgs[i].file = file;
			return 0;
		}
	}
	return -ENOENT;
}

int
maildrop_msg_open(struct maildrop *md, size_t i)
{
	int tries, r;

	if (md == NULL || i >= md->n || md->lock_fd < 0)
		return -EINVAL;
	/* A few rounds: an IMAP server may rename it again between our readdir and open. */
	for (tries = 0; tries < 3; tries++) {
		r = open_regular(md->path, md->msgs[i].file);
		if (r != -ENOENT)
			return r;
		r = refind(md, i);
		if (r < 0)
			return r;
	}
	return -ENOENT;
}

void
maildrop_unlock(struct maildrop *md)
{
	if (md->lock_fd >= 0)
		close(md->lock_fd);   /* drops the OFD lock; the lock file stays */
	md->lock_fd = -1;
}

void
maildrop_close(struct maildrop *md)
{
	size_t i;

	if (md == NULL)
		return;
	if (md->lock_fd >= 0)
		close(md->lock_fd);   /* drops the OFD lock; the lock file stays */
	md->lock_fd = -1;
	for (i = 0; i < md->n; i++)
		free(md->msgs[i].file);
	free(md->msgs);
	free(md->path);
	free(md);
}

void
crlf_count_update(struct crlf_count *c, const char *p, size_t n)
{
	const char *lf, *end = p + n, *q = p;
	int prev_cr = c->prev_cr;

	if (n == 0)
		return;
	c->size += n;
	while ((lf = memchr(q, '\n', (size_t)(end - q))) != NULL) {
		if (!(lf > p ? lf[-1] == '\r' : prev_cr))
			c->size++;
		q = lf + 1;
	}
	c->prev_cr = end[-1] == '\r';
}
