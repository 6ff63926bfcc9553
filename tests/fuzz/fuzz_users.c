/*
 * fuzz_users: libFuzzer harness for the users file parser in server/auth.c:
 * the input is written to a file and loaded with users_load.
 *
 * Properties: a readable regular file always loads (bad lines become
 * problems, never a failure); users are sorted by name, unique and found by
 * users_find; every name passes login_name_valid and occurs in the input;
 * home is never NULL; a {SCRAM-SHA-256} user, and a {PLAIN} user when the
 * file has a {SCRAM-SHA-256} user, have SCRAM credentials (iterations
 * 4096..10^7, salt 1..128 octets) and users_scram says so; anyone else has none.
 *
 * Cost guard: users_load derives SCRAM keys for each {PLAIN} user with the
 * most common SCRAM iteration count (up to 10^7 HMACs each). That is the
 * administrator's choice, not an attack, so inputs with more than 4 {PLAIN}
 * or {CLEARTEXT} secrets, or any of them next to an iteration count above
 * 20000, are skipped to keep executions fast.
 */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/auth.h"
#include "tests/fuzz/fuzzutil.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t count_nocase(const uint8_t *p, size_t n, const char *word)
{
	size_t k = 0, w = strlen(word), i;

	for (i = 0; i + w <= n; i++) {
		if (fz_contains_nocase(p + i, w, word)) {
			k++;
			i += w - 1;
		}
	}
	return k;
}

/* Any run of digits longer than 5 or above 20000 after "SCRAM-SHA-256}". */
static int costly_iterations(const uint8_t *p, size_t n)
{
	static const char tag[] = "scram-sha-256}";
	size_t w = sizeof tag - 1, i, j;
	uint32_t v;

	for (i = 0; i + w <= n; i++) {
		if (!fz_contains_nocase(p + i, w, tag))
			continue;
		for (j = i + w, v = 0; j < n && p[j] >= '0' && p[j] <= '9'; j++) {
			if (j - i - w >= 6)
				return 1;
			v = v * 10 + (uint32_t)(p[j] - '0');
		}
		if (v > 20000)
			return 1;
	}
	return 0;
}

static int memmem_found(const uint8_t *h, size_t hn, const char *needle, size_t nn)
{
	size_t i;

	for (i = 0; nn <= hn && i <= hn - nn; i++)
		if (memcmp(h + i, needle, nn) == 0)
			return 1;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char path[PATH_MAX];
	const char *dir = fz_tmpdir("users");
	struct users *u = NULL;
	struct diag d = { 0 };
	struct scram_cred cred;
	size_t plain, i, nscram = 0;
	int r;

	plain = count_nocase(data, size, "plain}") + count_nocase(data, size, "cleartext}");
	if (plain > 4 || (plain > 0 && costly_iterations(data, size)))
		return 0;
	snprintf(path, sizeof path, "%s/users", dir);
	fz_write_file(path, data, size);
	r = users_load(path, &u, &d);
	FZ_CHECK(r == 0 && u != NULL, "users_load failed: %s", d.n ? d.msg[0] : "?");
	FZ_CHECK(u->refs == 1, "refs %u", u->refs);
	for (i = 0; i < d.n; i++)
		FZ_CHECK(strncmp(d.msg[i], path, strlen(path)) == 0, "problem without the file: %s",
		    d.msg[i]);
	for (i = 0; i < u->n; i++) {
		const struct user *usr = &u->v[i];
		size_t n = strlen(usr->name);

		FZ_CHECK(login_name_valid(usr->name, n), "loaded an invalid name");
		FZ_CHECK(memmem_found(data, size, usr->name, n), "name not in the file");
		FZ_CHECK(i == 0 || strcmp(u->v[i - 1].name, usr->name) < 0, "not sorted or duplicate");
		FZ_CHECK(users_find(u, usr->name, n) == usr, "users_find misses %s", usr->name);
		FZ_CHECK(usr->secret != NULL && usr->secret[0] != '\0' && usr->home != NULL,
		    "user without secret or home");
		FZ_CHECK(usr->line >= 1, "line %d", usr->line);
		if (usr->scheme == PW_CRYPT || (usr->scheme == PW_PLAIN && u->nscram == 0)) {
			/* {PLAIN} users get keys only when SCRAM is offered (a {SCRAM-SHA-256} user). */
			FZ_CHECK(usr->scram == NULL, "user %s (scheme %d) with SCRAM keys", usr->name,
			    (int)usr->scheme);
			FZ_CHECK(users_scram(u, usr->name, n, &cred) == 0, "SCRAM for %s", usr->name);
		} else {
			FZ_CHECK(usr->scram != NULL, "user %s (scheme %d, line %d) without SCRAM keys",
			    usr->name, (int)usr->scheme, usr->line);
			FZ_CHECK(usr->scram->iter >= SCRAM_ITER_MIN && usr->scram->iter <= SCRAM_ITER_MAX &&
			    usr->scram->salt_len >= 1 && usr->scram->salt_len <= SCRAM_SALT_MAX,
			    "SCRAM parameters out of range");
			FZ_CHECK(users_scram(u, usr->name, n, &cred) == 1, "users_scram misses %s",
			    usr->name);
		}
		nscram += usr->scheme == PW_SCRAM;
	}
	FZ_CHECK(nscram == u->nscram, "nscram %zu, counted %zu", u->nscram, nscram);
	FZ_CHECK(users_any_scram(u) == (nscram > 0), "users_any_scram");
	FZ_CHECK(users_find(u, "", 0) == NULL, "found the empty name");
	users_ref(u);
	users_unref(u);
	users_unref(u);
	diag_free(&d);
	return 0;
}
