/*
 * multiline: the pure encoder for RFC 1939 multi-line responses (RETR, TOP).
 * Carries state between chunks; does no I/O and never allocates.
 */
#ifndef POP3D_MULTILINE_H
#define POP3D_MULTILINE_H

#include <stddef.h>

struct ml_enc {
	long top_lines;     /* body lines still allowed; -1 means no limit (RETR) */
	int  line_start;    /* next input byte starts a line */
	int  prev_cr;       /* last input byte was CR */
	int  in_body;       /* the empty line ending the header was seen */
	int  line_empty;    /* current line so far holds nothing but possibly one CR */
	int  ended;         /* TOP budget reached: stop feeding input */
	int  any;           /* at least one octet was encoded */
	unsigned long long stuffed;  /* dots added by dot-stuffing so far */
};

/* Start encoding a message; top_lines < 0 for RETR, else TOP's body line count. */
void ml_init(struct ml_enc *e, long top_lines);

/*
 * Encode in[0..n) into out, which must hold at least 2 * n octets. Every LF
 * not preceded by CR becomes CRLF, existing CRLF and bare CR pass unchanged,
 * a '.' starting a line is doubled. Returns octets written; *consumed is set
 * to the input octets used (less than n only once the TOP budget ends).
 */
size_t ml_encode(struct ml_enc *e, const char *in, size_t n, char *out, size_t *consumed);

/* 1 once TOP's budget is used up: no more input is needed. */
int ml_ended(const struct ml_enc *e);

/*
 * Finish the response into out (at least ML_FINISH_MAX octets): a CRLF when the
 * message did not end with a line break, then ".\r\n". Returns octets written.
 */
#define ML_FINISH_MAX 5
size_t ml_finish(struct ml_enc *e, char *out);

#endif
