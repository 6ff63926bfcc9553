/*
 * fuzz_state: libFuzzer harness for maildrop/state.c, the download state file
 * ROOT/pop3d.state (untrusted: it lives in the user's maildir). The input is
 * the file; md_state_read reads it for a maildrop listing a few UIDLs (fixed
 * ones, and the first word of each input line that is a valid UIDL).
 *
 * Properties:
 *  - md_state_read agrees with a strict parser written here from the format in
 *    state.h: in doubt exactly when that one refuses; otherwise the same
 *    last_login and, for each listed UIDL, the same record or none;
 *  - in doubt: no record, last_login 0, a reason in md->err;
 *  - md_state_write then writes the canonical file (version, last_login, the
 *    records of listed messages), which reads back the same; a file in doubt
 *    is first renamed to pop3d.state.bad-<unix> with its bytes unchanged.
 */
#include <dirent.h>
#include <inttypes.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "maildrop/maildrop.h"
#include "maildrop/state.h"
#include "tests/fuzz/fuzzutil.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_MSGS 24

struct ref_rec {
	const char *uidl;
	size_t      n;
	int64_t     t;
	int32_t     days;
};

static int uidl_ok(const char *p, size_t n)
{
	size_t i;

	if (n < 1 || n > UIDL_MAX)
		return 0;
	for (i = 0; i < n; i++)
		if ((unsigned char)p[i] < 0x21 || (unsigned char)p[i] > 0x7e)
			return 0;
	return 1;
}

/* Decimal without sign or leading zero, at most max. */
static int ref_num(const char *p, size_t n, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;
	size_t i;

	if (n == 0 || (n > 1 && p[0] == '0'))
		return -1;
	for (i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return -1;
		if (v > (max - (uint64_t)(p[i] - '0')) / 10)
			return -1;
		v = v * 10 + (uint64_t)(p[i] - '0');
	}
	*out = v;
	return 0;
}

/* The format of state.h, parsed independently. 0 or -1 (in doubt). */
static int ref_parse(const char *b, size_t len, int64_t *last, struct ref_rec **recs, size_t *nrec)
{
	static const char ver[] = "pop3d-state 1\n";
	const char *line = b, *end = b + len, *nl, *sp1, *sp2;
	size_t j, cap = 0;
	uint64_t v;

	*recs = NULL;
	*nrec = 0;
	if (len < sizeof ver - 1 || memcmp(b, ver, sizeof ver - 1) != 0 || b[len - 1] != '\n')
		return -1;
	line += sizeof ver - 1;
	nl = memchr(line, '\n', (size_t)(end - line));
	if (nl == NULL || (size_t)(nl - line) < 12 || memcmp(line, "last_login ", 11) != 0 ||
	    ref_num(line + 11, (size_t)(nl - line) - 11, INT64_MAX, &v) < 0)
		return -1;
	*last = (int64_t)v;
	for (line = nl + 1; line < end; line = nl + 1) {
		struct ref_rec r;

		nl = memchr(line, '\n', (size_t)(end - line));
		sp1 = memchr(line, ' ', (size_t)(nl - line));
		sp2 = sp1 != NULL ? memchr(sp1 + 1, ' ', (size_t)(nl - sp1 - 1)) : NULL;
		if (sp2 == NULL || memchr(sp2 + 1, ' ', (size_t)(nl - sp2 - 1)) != NULL)
			goto bad;
		r.uidl = line;
		r.n = (size_t)(sp1 - line);
		if (!uidl_ok(r.uidl, r.n) ||
		    ref_num(sp1 + 1, (size_t)(sp2 - sp1 - 1), INT64_MAX, &v) < 0)
			goto bad;
		r.t = (int64_t)v;
		if (nl - sp2 - 1 == 2 && sp2[1] == '-' && sp2[2] == '1')
			r.days = -1;
		else if (ref_num(sp2 + 1, (size_t)(nl - sp2 - 1), INT32_MAX, &v) == 0)
			r.days = (int32_t)v;
		else
			goto bad;
		for (j = 0; j < *nrec; j++)
			if ((*recs)[j].n == r.n && memcmp((*recs)[j].uidl, r.uidl, r.n) == 0)
				goto bad;     /* a UIDL twice */
		if (*nrec == cap) {
			cap = cap ? cap * 2 : 16;
			*recs = realloc(*recs, cap * sizeof **recs);
			FZ_CHECK(*recs != NULL, "out of memory");
		}
		(*recs)[(*nrec)++] = r;
	}
	return 0;
bad:
	free(*recs);
	*recs = NULL;
	*nrec = 0;
	return -1;
}

static const struct ref_rec *ref_find(const struct ref_rec *r, size_t n, const char *uidl)
{
	size_t i, len = strlen(uidl);

	for (i = 0; i < n; i++)
		if (r[i].n == len && memcmp(r[i].uidl, uidl, len) == 0)
			return &r[i];
	return NULL;
}

/* The one pop3d.state.bad-* file in root, read whole; NULL when there is none. */
static char *read_bad(const char *root, size_t *n)
{
	char path[PATH_MAX];
	struct dirent *de;
	DIR *d = opendir(root);
	char *buf = NULL;

	FZ_CHECK(d != NULL, "opendir %s", root);
	while ((de = readdir(d)) != NULL) {
		if (strncmp(de->d_name, "pop3d.state.bad-", 16) != 0)
			continue;
		FZ_CHECK(buf == NULL, "two files set aside");
		snprintf(path, sizeof path, "%s/%s", root, de->d_name);
		buf = fz_read_file(path, n);
		FZ_CHECK(buf != NULL, "cannot read %s", path);
	}
	closedir(d);
	return buf;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const fixed[] = { "a", "1700000000.M1P2.host", "Hdeadbeef", "x" };
	static char uidls[MAX_MSGS][UIDL_MAX + 1];
	static struct msg msgs[MAX_MSGS];
	static char root[PATH_MAX], path[PATH_MAX + 32], expect[64 * 1024];
	const char *dir = fz_tmpdir("state");
	const char *b = (const char *)data, *line, *end = b + size, *nl, *sp;
	struct ref_rec *recs;
	struct maildrop md;
	size_t nrec, n = 0, i, j, blen, flen, elen;
	int64_t last = 0;
	char *back;
	int ok, k;

	/* The listing: fixed UIDLs, and the first word of lines that look like records. */
	for (i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
		snprintf(uidls[n++], sizeof uidls[0], "%s", fixed[i]);
	for (line = b; line < end && n < MAX_MSGS; line = nl + 1) {
		nl = memchr(line, '\n', (size_t)(end - line));
		if (nl == NULL)
			nl = end;
		sp = memchr(line, ' ', (size_t)(nl - line));
		if (sp == NULL || !uidl_ok(line, (size_t)(sp - line)))
			continue;
		for (j = 0; j < n; j++)
			if (strlen(uidls[j]) == (size_t)(sp - line) && memcmp(uidls[j], line, (size_t)(sp - line)) == 0)
				break;
		if (j == n) {
			memcpy(uidls[n], line, (size_t)(sp - line));
			uidls[n][sp - line] = '\0';
			n++;
		}
	}
	memset(msgs, 0, sizeof msgs);
	for (i = 0; i < n; i++) {
		memcpy(msgs[i].uidl, uidls[i], sizeof msgs[i].uidl);
		msgs[i].has_record = 1;            /* md_state_read must reset these */
		msgs[i].first_download = 77;
	}
	memset(&md, 0, sizeof md);
	fz_clear_dir(dir);
	snprintf(root, sizeof root, "%s", dir);
	snprintf(path, sizeof path, "%s/tmp", root);
	FZ_CHECK(mkdir(path, 0700) == 0, "mkdir %s", path);
	snprintf(path, sizeof path, "%s/" MD_STATE_FILE, root);
	fz_write_file(path, data, size);
	md.path = root;
	md.lock_fd = -1;
	md.msgs = msgs;
	md.n = n;
	md.last_login = 12345;

	k = md_state_read(&md);
	ok = ref_parse(b, size, &last, &recs, &nrec) == 0;
	FZ_CHECK((k == 0) == (md.state_ok != 0), "return %d, state_ok %d", k, md.state_ok);
	FZ_CHECK(md.state_ok == ok, "state_ok %d, the format says %d (%s)", md.state_ok, ok, md.err);
	if (!ok) {
		FZ_CHECK(md.last_login == 0 && md.err[0] != '\0', "doubt without reason or with last_login");
		for (i = 0; i < n; i++)
			FZ_CHECK(!msgs[i].has_record, "record from a file in doubt");
	} else {
		FZ_CHECK(md.last_login == last, "last_login %lld, expected %lld",
		    (long long)md.last_login, (long long)last);
		for (i = 0; i < n; i++) {
			const struct ref_rec *r = ref_find(recs, nrec, msgs[i].uidl);

			FZ_CHECK(msgs[i].has_record == (r != NULL), "record for %s: %d", msgs[i].uidl,
			    msgs[i].has_record);
			if (r != NULL)
				FZ_CHECK(msgs[i].first_download == r->t && msgs[i].promised_days == r->days,
				    "record for %s differs", msgs[i].uidl);
		}
	}
	free(recs);

	/* Write it back: canonical, and a doubtful file set aside unchanged. */
	md.err[0] = '\0';
	FZ_CHECK(md_state_write(&md) == 0, "md_state_write: %s", md.err);
	FZ_CHECK(md.state_ok, "state_ok after a write");
	back = read_bad(root, &blen);
	if (ok)
		FZ_CHECK(back == NULL, "a sound file was set aside");
	else
		FZ_CHECK(back != NULL && blen == size && memcmp(back, data, size) == 0,
		    "the doubtful file was not kept as it was");
	free(back);
	elen = (size_t)snprintf(expect, sizeof expect, "pop3d-state 1\nlast_login %lld\n",
	    (long long)md.last_login);
	for (i = 0; i < n; i++)
		if (msgs[i].has_record)
			elen += (size_t)snprintf(expect + elen, sizeof expect - elen, "%s %" PRId64 " %" PRId32 "\n",
			    msgs[i].uidl, msgs[i].first_download, msgs[i].promised_days);
	back = fz_read_file(path, &flen);
	FZ_CHECK(back != NULL && flen == elen && memcmp(back, expect, elen) == 0,
	    "written file is not canonical:\n%s\nexpected:\n%s", back ? back : "(none)", expect);
	free(back);
	last = md.last_login;
	FZ_CHECK(md_state_read(&md) == 0 && md.last_login == last, "written file does not read back");
	return 0;
}
