/*
 * fuzzutil: what every libFuzzer harness in tests/fuzz/ shares: a property
 * check that aborts with a message (libFuzzer then saves the input and prints
 * the stack), a private temporary folder, and whole-file writes.
 * Never touches anything outside the folder it made.
 */
#ifndef POP3D_FUZZUTIL_H
#define POP3D_FUZZUTIL_H

#include <stddef.h>
#include <stdint.h>

/* A broken property: print where and why, then abort (libFuzzer reports a crash). */
#define FZ_CHECK(cond, ...) \
	do { \
		if (!(cond)) \
			fz_fail(__FILE__, __LINE__, #cond, __VA_ARGS__); \
	} while (0)

void fz_fail(const char *file, int line, const char *cond, const char *fmt, ...)
	__attribute__((noreturn, format(printf, 4, 5)));

/*
 * Make a fresh folder named after tag under /dev/shm (or $TMPDIR, or /tmp when
 * /dev/shm is missing) and return its absolute path (static storage; one per
 * process). Aborts on failure: a harness without its folder cannot run.
 * The folder is removed at exit.
 */
const char *fz_tmpdir(const char *tag);

/* Write exactly n octets to path (created or truncated, mode 0600). Aborts on failure. */
void fz_write_file(const char *path, const void *p, size_t n);

/* Read a whole file into a malloc'd buffer (NUL-terminated); NULL when it cannot be read. */
char *fz_read_file(const char *path, size_t *n);

/* Remove everything inside dir (not dir itself), recursively. */
void fz_clear_dir(const char *dir);

/* 1 when p[0..n) contains the ASCII word, ignoring ASCII case. */
int fz_contains_nocase(const uint8_t *p, size_t n, const char *word);

#endif
