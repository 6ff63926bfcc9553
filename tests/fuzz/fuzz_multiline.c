/*
 * fuzz_multiline: libFuzzer harness for server/multiline.c, the RETR/TOP encoder.
 *
 * Input: a message, optionally behind a header that starts with 0x01:
 *   0x01, top (0xff: RETR, else TOP's line count), k, k chunk sizes, message
 * Without the header (any other first octet) the whole input is the message,
 * encoded for RETR, and chunks of 1, 2, 3, ... octets; so the files from
 * ../shared/corpus/make_corpus.py are seeds as they are.
 *
 * Properties, for the fuzzer's chunking (a chunk size 0 is an empty call):
 *  - the chunked output equals the output of one call over the whole message;
 *  - each call writes at most 2 * n octets and, for RETR, consumes all n;
 *  - every LF in the output has a CR before it; a line starting with '.' has
 *    it doubled, so the terminating line is the first "." line a client sees;
 *  - undoing the stuffing (as a client does) gives the message in CRLF form
 *    (each LF not after CR becomes CRLF), and its length equals what
 *    crlf_count_update (maildrop, what LIST says) counts over the same chunks;
 *  - ml_finish adds CRLF exactly when the message is not empty and does not end with LF;
 *  - TOP n is a prefix of RETR: the header, its empty line and n body lines.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "maildrop/maildrop.h"
#include "server/multiline.h"
#include "tests/fuzz/fuzzutil.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct chunks {
	const uint8_t *size;    /* sizes, used in turn; NULL: 1, 2, 3, ... */
	size_t         n;
	size_t         next;
};

static size_t next_chunk(struct chunks *c)
{
	size_t k;

	if (c->size == NULL || c->n == 0)
		return 1 + (c->next++ % 61);
	k = c->size[c->next++ % c->n];
	return k;
}

/* Encode msg in the given chunks; returns a malloc'd output and its length (before finish). */
static char *encode(const char *msg, size_t n, long top, struct chunks *ch, size_t *outlen,
                    struct ml_enc *e, size_t *used)
{
	char *out = malloc(2 * n + ML_FINISH_MAX + 1);
	size_t pos = 0, w = 0, k, consumed, zeros = 0, got;

	FZ_CHECK(out != NULL, "out of memory");
	ml_init(e, top);
	while (pos < n && !ml_ended(e)) {
		k = ch != NULL ? next_chunk(ch) : n - pos;
		if (k == 0 && ++zeros > 64)
			k = 1;    /* all sizes 0: still make progress */
		if (k > n - pos)
			k = n - pos;
		got = ml_encode(e, msg + pos, k, out + w, &consumed);
		FZ_CHECK(got <= 2 * k, "wrote %zu octets for %zu in", got, k);
		FZ_CHECK(consumed <= k, "consumed %zu of %zu", consumed, k);
		if (top < 0)
			FZ_CHECK(consumed == k, "RETR consumed %zu of %zu", consumed, k);
		if (consumed < k)
			FZ_CHECK(ml_ended(e), "stopped early without ending");
		w += got;
		pos += consumed;
	}
	if (ml_ended(e)) {
		got = ml_encode(e, msg, n, out + w, &consumed);
		FZ_CHECK(got == 0 && consumed == 0, "encoded after the TOP budget ended");
	}
	*used = pos;
	*outlen = w;
	return out;
}

/* The message in CRLF form: every LF not preceded by CR becomes CRLF. */
static char *crlf_form(const char *msg, size_t n, size_t *outlen)
{
	char *out = malloc(2 * n + 1);
	size_t i, w = 0;

	FZ_CHECK(out != NULL, "out of memory");
	for (i = 0; i < n; i++) {
		if (msg[i] == '\n' && (i == 0 || msg[i - 1] != '\r'))
			out[w++] = '\r';
		out[w++] = msg[i];
	}
	*outlen = w;
	return out;
}

/*
 * What a client does (RFC 1939 §3): split at CRLF, a line "." ends the
 * response, a line starting with '.' loses it. Checks that no "." line comes
 * before the end, and that every LF follows a CR. Returns the unstuffed bytes.
 */
static char *unstuff(const char *enc, size_t n, size_t *outlen)
{
	char *out = malloc(n + 1);
	size_t i, w = 0;
	int line_start = 1;

	FZ_CHECK(out != NULL, "out of memory");
	for (i = 0; i < n; i++) {
		if (enc[i] == '\n')
			FZ_CHECK(i > 0 && enc[i - 1] == '\r', "bare LF at output octet %zu", i);
		if (line_start && enc[i] == '.') {
			FZ_CHECK(i + 1 < n && enc[i + 1] == '.',
			    "line at output octet %zu starts with an unstuffed '.'", i);
			i++;
		}
		out[w++] = enc[i];
		line_start = enc[i] == '\n';
	}
	*outlen = w;
	return out;
}

/* End of TOP's text: after the header's empty line and then top LF-ended body lines. */
static size_t top_prefix(const char *msg, size_t n, long top)
{
	size_t i, start = 0;
	int in_body = 0;
	long left = top;

	for (i = 0; i < n; i++) {
		if (msg[i] != '\n')
			continue;
		if (!in_body) {
			size_t len = i - start;

			if (len == 0 || (len == 1 && msg[start] == '\r')) {
				in_body = 1;
				if (left == 0)
					return i + 1;
			}
		} else if (--left == 0) {
			return i + 1;
		}
		start = i + 1;
	}
	return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct chunks ch = { NULL, 0, 0 }, ch2;
	struct ml_enc e, e1;
	struct crlf_count cc = { 0, 0 };
	const char *msg = (const char *)data;
	char *chunked, *whole, *crlf, *plain, *retr, fin[ML_FINISH_MAX];
	size_t n = size, clen, wlen, crlen, plen, rlen, used, used1, flen, pos, k, p, zeros;
	long top = -1;

	if (size >= 3 && data[0] == 0x01) {
		top = data[1] == 0xff ? -1 : (long)data[1];
		ch.n = data[2];
		if (ch.n > size - 3)
			ch.n = size - 3;
		ch.size = data + 3;
		msg = (const char *)data + 3 + ch.n;
		n = size - 3 - ch.n;
	}

	ch2 = ch;
	chunked = encode(msg, n, top, &ch, &clen, &e, &used);
	whole = encode(msg, n, top, NULL, &wlen, &e1, &used1);
	FZ_CHECK(clen == wlen && memcmp(chunked, whole, clen) == 0,
	    "chunking changed the output (%zu vs %zu octets)", clen, wlen);
	FZ_CHECK(used == used1, "chunking changed what TOP consumed");

	flen = ml_finish(&e, fin);
	FZ_CHECK(flen <= ML_FINISH_MAX, "finish wrote %zu", flen);
	memcpy(chunked + clen, fin, flen);
	FZ_CHECK(flen >= 3 && memcmp(fin + flen - 3, ".\r\n", 3) == 0, "no terminator");
	p = top < 0 ? n : top_prefix(msg, n, top);
	FZ_CHECK(used == p, "TOP %ld consumed %zu octets, expected %zu", top, used, p);
	FZ_CHECK(flen == ((p > 0 && msg[p - 1] != '\n') ? 5u : 3u),
	    "finish wrote %zu octets after a text of %zu", flen, p);

	FZ_CHECK(clen + flen == 3 || chunked[clen + flen - 4] == '\n', "terminator not on its own line");
	/* A client reads up to the terminator and unstuffs: the message (prefix) in CRLF form. */
	plain = unstuff(chunked, clen + flen - 3, &plen);
	if (flen == 5)
		plen -= 2;    /* the CRLF added before "." is not part of the message */
	crlf = crlf_form(msg, p, &crlen);
	FZ_CHECK(plen == crlen && memcmp(plain, crlf, crlen) == 0,
	    "unstuffed output is not the CRLF form (%zu vs %zu octets)", plen, crlen);

	if (top < 0) {
		/* The size LIST reports, counted over the same chunks as maildrop reads. */
		for (pos = 0, zeros = 0; pos < n; pos += k) {
			k = next_chunk(&ch2);
			if (k == 0 && ++zeros > 64)
				k = 1;
			if (k > n - pos)
				k = n - pos;
			crlf_count_update(&cc, msg + pos, k);
		}
		FZ_CHECK(cc.size == crlen, "crlf_count says %llu, CRLF form has %zu octets",
		    (unsigned long long)cc.size, crlen);
	} else {
		/* TOP is a prefix of RETR. */
		retr = encode(msg, n, -1, NULL, &rlen, &e1, &used1);
		FZ_CHECK(clen <= rlen && memcmp(chunked, retr, clen) == 0, "TOP is not a prefix of RETR");
		free(retr);
	}
	free(chunked);
	free(whole);
	free(crlf);
	free(plain);
	return 0;
}
