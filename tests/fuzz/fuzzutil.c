/*
 * fuzzutil: helpers shared by the libFuzzer harnesses (checks, temporary folder, files).
 * Never deletes outside the folder fz_tmpdir made.
 */
#include "tests/fuzz/fuzzutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmp_root[PATH_MAX];

void fz_fail(const char *file, int line, const char *cond, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "\n%s:%d: property broken: %s: ", file, line, cond);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	abort();
}

static void remove_tmp_root(void)
{
	if (tmp_root[0] != '\0') {
		fz_clear_dir(tmp_root);
		rmdir(tmp_root);
	}
}

const char *fz_tmpdir(const char *tag)
{
	const char *base = getenv("TMPDIR");
	struct stat st;
	int k;

	if (tmp_root[0] != '\0')
		return tmp_root;
	if (stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) && access("/dev/shm", W_OK) == 0)
		base = "/dev/shm";   /* tmpfs: the harnesses create and fsync many small files */
	else if (base == NULL || base[0] != '/')
		base = "/tmp";
	k = snprintf(tmp_root, sizeof tmp_root, "%s/pop3d-fuzz-%s.XXXXXX", base, tag);
	if (k < 0 || (size_t)k >= sizeof tmp_root || mkdtemp(tmp_root) == NULL) {
		fprintf(stderr, "fuzz: cannot make a temporary folder under %s: %s\n", base,
		    strerror(errno));
		abort();
	}
	atexit(remove_tmp_root);
	return tmp_root;
}

void fz_write_file(const char *path, const void *p, size_t n)
{
	const char *c = p;
	ssize_t w;
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	if (fd < 0) {
		fprintf(stderr, "fuzz: open %s: %s\n", path, strerror(errno));
		abort();
	}
	while (n > 0) {
		w = write(fd, c, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			fprintf(stderr, "fuzz: write %s: %s\n", path, strerror(errno));
			abort();
		}
		c += w;
		n -= (size_t)w;
	}
	close(fd);
}

char *fz_read_file(const char *path, size_t *n)
{
	struct stat st;
	char *buf;
	size_t got = 0;
	ssize_t r;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return NULL;
	if (fstat(fd, &st) < 0 || (buf = malloc((size_t)st.st_size + 1)) == NULL) {
		close(fd);
		return NULL;
	}
	while (got < (size_t)st.st_size) {
		r = read(fd, buf + got, (size_t)st.st_size - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	close(fd);
	buf[got] = '\0';
	*n = got;
	return buf;
}

void fz_clear_dir(const char *dir)
{
	char path[PATH_MAX];
	struct dirent *de;
	struct stat st;
	DIR *d = opendir(dir);
	int k;

	if (d == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		k = snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
		if (k < 0 || (size_t)k >= sizeof path)
			continue;
		if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
			fz_clear_dir(path);
			rmdir(path);
		} else {
			unlink(path);
		}
	}
	closedir(d);
}

int fz_contains_nocase(const uint8_t *p, size_t n, const char *word)
{
	size_t w = strlen(word), i, j;

	for (i = 0; w <= n && i <= n - w; i++) {
		for (j = 0; j < w; j++) {
			uint8_t a = p[i + j], b = (uint8_t)word[j];

			if (a >= 'A' && a <= 'Z')
				a = (uint8_t)(a - 'A' + 'a');
			if (b >= 'A' && b <= 'Z')
				b = (uint8_t)(b - 'A' + 'a');
			if (a != b)
				break;
		}
		if (j == w)
			return 1;
	}
	return 0;
}
