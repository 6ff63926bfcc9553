/*
 * afile: the one crash-safe way maildrop/ replaces its own files (the size
 * cache and the download state). Never touches a message file.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "maildrop/afile.h"

#define AFILE_BUF (64 * 1024)

int
afile_open(struct afile *a, const char *root, const char *name)
{
	struct timespec ts;
	uint64_t rnd;
	int k, m;

	memset(a, 0, sizeof *a);
	a->fd = -1;
	a->root = root;
	if (getrandom(&rnd, sizeof rnd, GRND_NONBLOCK) != (ssize_t)sizeof rnd) {
		/* Only has to differ from a concurrent writer's; O_EXCL catches the rest. */
		clock_gettime(CLOCK_MONOTONIC, &ts);
		rnd = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^ (uint64_t)(uintptr_t)&ts;
	}
	k = snprintf(a->tmp, sizeof a->tmp, "%s/tmp/%s.%ld.%016" PRIx64, root, name,
	             (long)getpid(), rnd);
	m = snprintf(a->final, sizeof a->final, "%s/%s", root, name);
	if (k < 0 || (size_t)k >= sizeof a->tmp || m < 0 || (size_t)m >= sizeof a->final) {
		snprintf(a->tmp, sizeof a->tmp, "%s", root);
		errno = ENAMETOOLONG;
		return -1;
	}
	a->b = malloc(AFILE_BUF);
	if (a->b == NULL) {
		errno = ENOMEM;
		return -1;
	}
	a->fd = open(a->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (a->fd < 0) {
		int e = errno;
		free(a->b);
		a->b = NULL;
		errno = e;
		return -1;
	}
	return 0;
}

static void
flush(struct afile *a)
{
	size_t off = 0;
	ssize_t r;

	while (a->e == 0 && off < a->len) {
		r = write(a->fd, a->b + off, a->len - off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			a->e = r < 0 ? errno : EIO;
		else
			off += (size_t)r;
	}
	a->len = 0;
}

void
afile_put(struct afile *a, const char *p, size_t n)
{
	size_t k;

	while (n > 0 && a->e == 0) {
		if (a->len == AFILE_BUF)
			flush(a);
		k = AFILE_BUF - a->len < n ? AFILE_BUF - a->len : n;
		memcpy(a->b + a->len, p, k);
		a->len += k;
		a->total += k;
		p += k;
		n -= k;
	}
}

int
afile_finish(struct afile *a)
{
	flush(a);
	free(a->b);
	a->b = NULL;
	if (a->e == 0 && fsync(a->fd) < 0)
		a->e = errno;
	if (close(a->fd) < 0 && a->e == 0)
		a->e = errno;
	a->fd = -1;
	if (a->e != 0) {
		unlink(a->tmp);
		errno = a->e;
		return -1;
	}
	return 0;
}

static int
fsync_dir(const char *path)
{
	int fd, r, e;

	fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	r = fsync(fd);
	e = errno;
	close(fd);
	errno = e;
	return r;
}

int
afile_install(struct afile *a)
{
	int e;

	if (rename(a->tmp, a->final) < 0) {
		e = errno;
		unlink(a->tmp);
		errno = e;
		return -1;
	}
	return fsync_dir(a->root) < 0 ? -2 : 0;
}

void
afile_discard(struct afile *a)
{
	unlink(a->tmp);
}
