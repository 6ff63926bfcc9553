/*
 * fault: an LD_PRELOAD shim that makes chosen file-system calls fail, for tests
 * of pop3d's error paths (tests/fault/README.md). Rules come from POP3D_FAULT;
 * without it every call passes straight through. Never changes a call it does
 * not fail, and never fails one that no rule names.
 *
 * POP3D_FAULT="RULE[;RULE...]", RULE = OP:MATCH:ERRNO[:WHICH]
 *   OP     open (any open), openw (open for writing or creating), openr (read-only
 *          open), rename, unlink, fsync, opendir, readdir, read, write
 *   MATCH  a substring of the path: for rename the destination, for fsync, readdir,
 *          read and write the path of the descriptor (/proc/self/fd); empty = any
 *   ERRNO  a name (EIO, ENOSPC, EACCES, ...) or a number
 *   WHICH  N: the Nth matching call only (default 1), N+: the Nth and all later,
 *          N-M: the Nth to the Mth, *: every matching call
 * POP3D_FAULT_LOG=FILE appends one line per injected failure ("-" is stderr).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

enum op { OP_OPEN, OP_OPENW, OP_OPENR, OP_RENAME, OP_UNLINK, OP_FSYNC, OP_OPENDIR, OP_READDIR,
          OP_READ, OP_WRITE, OP_N };

static const char *const OP_NAMES[OP_N] = {
	"open", "openw", "openr", "rename", "unlink", "fsync", "opendir", "readdir", "read", "write"
};

struct rule {
	enum op       op;
	char          match[PATH_MAX];
	int           err;
	unsigned long from, to;      /* matching calls from..to (1-based) fail */
	unsigned long seen;          /* matching calls so far (atomic) */
};

#define MAX_RULES 16

static struct rule rules[MAX_RULES];
static int nrules;
static int any_op[OP_N];        /* some rule names this op: only then is a path looked up */
static int log_fd = -1;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static const struct { const char *name; int err; } ERRNOS[] = {
	{ "EIO", EIO }, { "ENOSPC", ENOSPC }, { "EACCES", EACCES }, { "EPERM", EPERM },
	{ "ENOENT", ENOENT }, { "EROFS", EROFS }, { "EDQUOT", EDQUOT }, { "EMFILE", EMFILE },
	{ "ENFILE", ENFILE }, { "ENOMEM", ENOMEM }, { "EINTR", EINTR }, { "EAGAIN", EAGAIN },
	{ "EBUSY", EBUSY }, { "EEXIST", EEXIST }, { "EISDIR", EISDIR }, { "ENOTDIR", ENOTDIR },
	{ "EXDEV", EXDEV }, { "ELOOP", ELOOP }, { "ENAMETOOLONG", ENAMETOOLONG },
	{ "ESTALE", ESTALE }, { "EFBIG", EFBIG },
};

/* write(2) without going through our own write wrapper. */
static void raw_write(int fd, const char *p, size_t n)
{
	while (n > 0) {
		long w = syscall(SYS_write, fd, p, n);

		if (w <= 0)
			return;
		p += w;
		n -= (size_t)w;
	}
}

static void complain(const char *fmt, const char *arg)
{
	char line[PATH_MAX + 128];
	int k = snprintf(line, sizeof line, fmt, arg);

	if (k > 0)
		raw_write(2, line, (size_t)k < sizeof line ? (size_t)k : sizeof line - 1);
}

static int parse_errno(const char *s)
{
	size_t i;
	char *end;
	long v;

	for (i = 0; i < sizeof ERRNOS / sizeof ERRNOS[0]; i++)
		if (strcmp(s, ERRNOS[i].name) == 0)
			return ERRNOS[i].err;
	v = strtol(s, &end, 10);
	return *s != '\0' && *end == '\0' && v > 0 && v < 4096 ? (int)v : -1;
}

/* "N", "N+", "N-M" or "*" into r->from..r->to; 0 or -1. */
static int parse_which(const char *s, struct rule *r)
{
	char *end;

	if (strcmp(s, "*") == 0) {
		r->from = 1;
		r->to = (unsigned long)-1;
		return 0;
	}
	r->from = strtoul(s, &end, 10);
	if (end == s || r->from == 0)
		return -1;
	if (*end == '\0') {
		r->to = r->from;
		return 0;
	}
	if (strcmp(end, "+") == 0) {
		r->to = (unsigned long)-1;
		return 0;
	}
	if (*end == '-') {
		s = end + 1;
		r->to = strtoul(s, &end, 10);
		return end != s && *end == '\0' && r->to >= r->from ? 0 : -1;
	}
	return -1;
}

static int looks_like_which(const char *s)
{
	return strcmp(s, "*") == 0 || (s[0] >= '0' && s[0] <= '9');
}

/* One rule, "OP:MATCH:ERRNO[:WHICH]" (MATCH may itself hold ':'); 0 or -1. */
static int parse_rule(char *s, struct rule *r)
{
	char *colon = strchr(s, ':'), *last, *err;
	int i;

	if (colon == NULL)
		return -1;
	*colon = '\0';
	for (i = 0; i < OP_N && strcmp(s, OP_NAMES[i]) != 0; i++)
		;
	if (i == OP_N)
		return -1;
	r->op = (enum op)i;
	s = colon + 1;
	last = strrchr(s, ':');
	if (last == NULL)
		return -1;
	r->from = r->to = 1;
	if (looks_like_which(last + 1)) {
		if (parse_which(last + 1, r) < 0)
			return -1;
		*last = '\0';
		last = strrchr(s, ':');
		if (last == NULL)
			return -1;
	}
	err = last + 1;
	*last = '\0';
	r->err = parse_errno(err);
	if (r->err < 0 || strlen(s) >= sizeof r->match)
		return -1;
	memcpy(r->match, s, strlen(s) + 1);
	return 0;
}

static void init(void)
{
	const char *spec = getenv("POP3D_FAULT"), *logp = getenv("POP3D_FAULT_LOG");
	char *copy, *tok, *save = NULL;

	if (logp != NULL && logp[0] != '\0')
		log_fd = strcmp(logp, "-") == 0 ? 2 :
		    (int)syscall(SYS_open, logp, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (spec == NULL || spec[0] == '\0' || (copy = strdup(spec)) == NULL)
		return;
	for (tok = strtok_r(copy, ";", &save); tok != NULL; tok = strtok_r(NULL, ";", &save)) {
		if (nrules == MAX_RULES) {
			complain("pop3d-fault: more than 16 rules; ignoring \"%s\"\n", tok);
			continue;
		}
		if (parse_rule(tok, &rules[nrules]) < 0) {
			complain("pop3d-fault: bad rule \"%s\" (OP:MATCH:ERRNO[:WHICH])\n", tok);
			continue;
		}
		any_op[rules[nrules].op] = 1;
		nrules++;
	}
	free(copy);
}

static void *real(const char *name)
{
	void *f = dlsym(RTLD_NEXT, name);

	if (f == NULL) {
		complain("pop3d-fault: no %s in libc\n", name);
		abort();
	}
	return f;
}

/* real_NAME: the next definition of NAME (libc's), looked up on first use. */
#define REAL(name) \
	static __typeof__(name) *real_##name; \
	if (real_##name == NULL) \
		real_##name = (__typeof__(name) *)real(#name)

/* The path of a descriptor, or "" when it has none. */
static void fd_path(int fd, char *out, size_t cap)
{
	char link[64];
	ssize_t n;

	snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
	n = readlink(link, out, cap - 1);
	out[n > 0 ? (size_t)n : 0] = '\0';
}

/* dirfd + name as one path (for *at calls). */
static void at_path(int dirfd, const char *name, char *out, size_t cap)
{
	char dir[PATH_MAX];

	if (name == NULL)
		name = "";
	if (name[0] == '/' || dirfd == AT_FDCWD) {
		snprintf(out, cap, "%s", name);
		return;
	}
	fd_path(dirfd, dir, sizeof dir);
	if (snprintf(out, cap, "%s/%s", dir, name) >= (int)cap)
		out[cap - 1] = '\0';    /* cut: a match on the start still works */
}

/*
 * Whether this call of op on path must fail; sets errno and logs when so.
 * what describes the call for the log.
 */
static int inject(enum op op, const char *path, const char *what)
{
	char line[2 * PATH_MAX];
	int i, k;

	pthread_once(&once, init);
	for (i = 0; i < nrules; i++) {
		struct rule *r = &rules[i];
		unsigned long n;

		if (r->op != op || strstr(path, r->match) == NULL)
			continue;
		n = __atomic_add_fetch(&r->seen, 1, __ATOMIC_SEQ_CST);
		if (n < r->from || n > r->to)
			continue;
		if (log_fd >= 0) {
			k = snprintf(line, sizeof line, "pop3d-fault: %s %s: %s (rule %d, call %lu)\n",
			    what, path, strerror(r->err), i + 1, n);
			if (k > 0)
				raw_write(log_fd, line, (size_t)k < sizeof line ? (size_t)k : sizeof line - 1);
		}
		errno = r->err;
		return 1;
	}
	return 0;
}

static int active(enum op op)
{
	pthread_once(&once, init);
	return any_op[op];
}

/* ---- open ---- */

static int open_fails(int dirfd, const char *path, int flags)
{
	char full[PATH_MAX];
	int w = (flags & (O_WRONLY | O_RDWR | O_CREAT)) != 0;

	if (!active(OP_OPEN) && !active(OP_OPENW) && !active(OP_OPENR))
		return 0;
	at_path(dirfd, path, full, sizeof full);
	return inject(OP_OPEN, full, "open") || inject(w ? OP_OPENW : OP_OPENR, full, "open");
}

#define OPEN_MODE(flags, mode) \
	do { \
		if ((flags) & (O_CREAT | O_TMPFILE)) { \
			va_list ap; \
			va_start(ap, flags); \
			mode = va_arg(ap, mode_t); \
			va_end(ap); \
		} \
	} while (0)

int open(const char *path, int flags, ...)
{
	REAL(open);
	mode_t mode = 0;

	OPEN_MODE(flags, mode);
	if (open_fails(AT_FDCWD, path, flags))
		return -1;
	return real_open(path, flags, mode);
}

int open64(const char *path, int flags, ...)
{
	REAL(open64);
	mode_t mode = 0;

	OPEN_MODE(flags, mode);
	if (open_fails(AT_FDCWD, path, flags))
		return -1;
	return real_open64(path, flags, mode);
}

int openat(int dirfd, const char *path, int flags, ...)
{
	REAL(openat);
	mode_t mode = 0;

	OPEN_MODE(flags, mode);
	if (open_fails(dirfd, path, flags))
		return -1;
	return real_openat(dirfd, path, flags, mode);
}

int openat64(int dirfd, const char *path, int flags, ...)
{
	REAL(openat64);
	mode_t mode = 0;

	OPEN_MODE(flags, mode);
	if (open_fails(dirfd, path, flags))
		return -1;
	return real_openat64(dirfd, path, flags, mode);
}

/* _FORTIFY_SOURCE builds call these instead of open when the flags are constant. */
int __open_2(const char *path, int flags);
int __open_2(const char *path, int flags)
{
	REAL(__open_2);

	if (open_fails(AT_FDCWD, path, flags))
		return -1;
	return real___open_2(path, flags);
}

int __openat_2(int dirfd, const char *path, int flags);
int __openat_2(int dirfd, const char *path, int flags)
{
	REAL(__openat_2);

	if (open_fails(dirfd, path, flags))
		return -1;
	return real___openat_2(dirfd, path, flags);
}

/* ---- rename, unlink ---- */

static int rename_fails(int olddirfd, const char *oldp, int newdirfd, const char *newp)
{
	char from[PATH_MAX], to[PATH_MAX], what[PATH_MAX + 16];

	if (!active(OP_RENAME))
		return 0;
	at_path(olddirfd, oldp, from, sizeof from);
	at_path(newdirfd, newp, to, sizeof to);
	if (snprintf(what, sizeof what, "rename %s ->", from) >= (int)sizeof what)
		what[sizeof what - 1] = '\0';
	return inject(OP_RENAME, to, what);
}

int rename(const char *oldp, const char *newp)
{
	REAL(rename);

	if (rename_fails(AT_FDCWD, oldp, AT_FDCWD, newp))
		return -1;
	return real_rename(oldp, newp);
}

int renameat(int olddirfd, const char *oldp, int newdirfd, const char *newp)
{
	REAL(renameat);

	if (rename_fails(olddirfd, oldp, newdirfd, newp))
		return -1;
	return real_renameat(olddirfd, oldp, newdirfd, newp);
}

int renameat2(int olddirfd, const char *oldp, int newdirfd, const char *newp, unsigned flags)
{
	REAL(renameat2);

	if (rename_fails(olddirfd, oldp, newdirfd, newp))
		return -1;
	return real_renameat2(olddirfd, oldp, newdirfd, newp, flags);
}

int unlink(const char *path)
{
	REAL(unlink);

	if (active(OP_UNLINK) && inject(OP_UNLINK, path, "unlink"))
		return -1;
	return real_unlink(path);
}

int unlinkat(int dirfd, const char *path, int flags)
{
	REAL(unlinkat);
	char full[PATH_MAX];

	if (active(OP_UNLINK)) {
		at_path(dirfd, path, full, sizeof full);
		if (inject(OP_UNLINK, full, "unlink"))
			return -1;
	}
	return real_unlinkat(dirfd, path, flags);
}

/* ---- descriptors: fsync, read, write ---- */

static int fd_fails(enum op op, int fd, const char *what)
{
	char path[PATH_MAX];

	if (!active(op))
		return 0;
	fd_path(fd, path, sizeof path);
	return inject(op, path, what);
}

int fsync(int fd)
{
	REAL(fsync);

	if (fd_fails(OP_FSYNC, fd, "fsync"))
		return -1;
	return real_fsync(fd);
}

int fdatasync(int fd)
{
	REAL(fdatasync);

	if (fd_fails(OP_FSYNC, fd, "fdatasync"))
		return -1;
	return real_fdatasync(fd);
}

ssize_t read(int fd, void *buf, size_t n)
{
	REAL(read);

	if (fd_fails(OP_READ, fd, "read"))
		return -1;
	return real_read(fd, buf, n);
}

ssize_t pread(int fd, void *buf, size_t n, off_t off)
{
	REAL(pread);

	if (fd_fails(OP_READ, fd, "pread"))
		return -1;
	return real_pread(fd, buf, n, off);
}

ssize_t pread64(int fd, void *buf, size_t n, off_t off)
{
	REAL(pread64);

	if (fd_fails(OP_READ, fd, "pread"))
		return -1;
	return real_pread64(fd, buf, n, off);
}

ssize_t readv(int fd, const struct iovec *iov, int cnt)
{
	REAL(readv);

	if (fd_fails(OP_READ, fd, "readv"))
		return -1;
	return real_readv(fd, iov, cnt);
}

ssize_t preadv(int fd, const struct iovec *iov, int cnt, off_t off)
{
	REAL(preadv);

	if (fd_fails(OP_READ, fd, "preadv"))
		return -1;
	return real_preadv(fd, iov, cnt, off);
}

ssize_t write(int fd, const void *buf, size_t n)
{
	REAL(write);

	if (fd_fails(OP_WRITE, fd, "write"))
		return -1;
	return real_write(fd, buf, n);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
	REAL(pwrite);

	if (fd_fails(OP_WRITE, fd, "pwrite"))
		return -1;
	return real_pwrite(fd, buf, n, off);
}

/* ---- folders ---- */

DIR *opendir(const char *path)
{
	REAL(opendir);

	if (active(OP_OPENDIR) && inject(OP_OPENDIR, path, "opendir"))
		return NULL;
	return real_opendir(path);
}

DIR *fdopendir(int fd)
{
	REAL(fdopendir);

	if (fd_fails(OP_OPENDIR, fd, "opendir"))
		return NULL;
	return real_fdopendir(fd);
}

/* A failing readdir returns NULL with errno set: a read error, not the end. */
struct dirent *readdir(DIR *d)
{
	REAL(readdir);

	if (fd_fails(OP_READDIR, dirfd(d), "readdir"))
		return NULL;
	return real_readdir(d);
}

struct dirent64 *readdir64(DIR *d)
{
	REAL(readdir64);

	if (fd_fails(OP_READDIR, dirfd(d), "readdir"))
		return NULL;
	return real_readdir64(d);
}
