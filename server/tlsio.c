/*
 * tlsio: owns every SSL_CTX (default certificate plus one per SNI entry) and
 * one SSL engine per connection on two memory BIOs. Never touches a socket,
 * never blocks, never prompts for a passphrase and never logs by itself.
 */
#include "server/tlsio.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/buffer.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "server/strutil.h"

/* For TLS <= 1.2 when tls.ciphers is not set: AEAD with forward secrecy only. */
#define TLS_DEFAULT_CIPHERS "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20"

/*
 * OpenSSL level 2 = 112-bit security: RSA/DH >= 2048 bits, no SHA-1
 * signatures, and (OpenSSL 3) no TLS 1.0/1.1. A "@SECLEVEL=0" in tls.ciphers
 * cannot lower it.
 */
#define TLS_MIN_SECLEVEL 2

/* A certificate that expires sooner than this gets a warning. */
#define TLS_EXPIRY_WARN_SECS (30L * 24 * 3600)

/* RFC 6066: a host_name is at most 255 octets (OpenSSL enforces it too). */
#define TLS_SNI_MAX 255

/*
 * A memory BIO keeps its largest size until freed. Once a drained one has
 * grown past this, it is replaced, so an idle session costs little memory.
 */
#define TLS_BIO_KEEP (64 * 1024)

/* How many subjectAltNames tls_ctx_describe shows per certificate. */
#define TLS_DESCRIBE_SANS 4

struct tls_sni {
	char    *name;        /* lower/upper case as configured; "*.x" is a wildcard */
	SSL_CTX *ctx;
};

struct tls_ctx {
	SSL_CTX        *def;
	struct tls_sni *sni;
	size_t          nsni;
};

struct tls_conn {
	SSL  *ssl;
	BIO  *rbio;           /* ciphertext from the peer; owned by ssl */
	BIO  *wbio;           /* ciphertext for the peer; owned by ssl */
	char *sni;            /* escaped requested name, or NULL */
	int   shutdown_sent;
	char  err[128];       /* last error reason, "" when none */
};

/* Append s at buf[*w], truncating to fit len; buf stays NUL-terminated. */
static void put(char *buf, size_t len, size_t *w, const char *s)
{
	size_t n = strlen(s);

	if (len == 0 || *w + 1 >= len)
		return;
	if (n > len - 1 - *w)
		n = len - 1 - *w;
	memcpy(buf + *w, s, n);
	*w += n;
	buf[*w] = '\0';
}

/*
 * The reason text of OpenSSL error e, with its data string in parentheses
 * unless it is a system error (whose data only repeats the path).
 */
static void err_text(unsigned long e, const char *data, int flags, char *buf, size_t len)
{
	const char *r = ERR_reason_error_string(e);
	char full[256];
	size_t w = 0;
	int skip;

	if (r == NULL) {
		/* "error:XXXXXXXX:lib:func:reason": keep what follows the 4th ':'. */
		ERR_error_string_n(e, full, sizeof(full));
		r = full;
		for (skip = 0; skip < 4; skip++) {
			const char *colon = strchr(r, ':');

			if (colon == NULL)
				break;
			r = colon + 1;
		}
		if (*r == '\0')
			r = full;
	}
	if (len > 0)
		buf[0] = '\0';
	put(buf, len, &w, r);
	if (data != NULL && *data != '\0' && (flags & ERR_TXT_STRING) && !ERR_SYSTEM_ERROR(e)) {
		put(buf, len, &w, " (");
		put(buf, len, &w, data);
		put(buf, len, &w, ")");
	}
}

/* Set c->err to a fixed text. */
static void conn_set_error(struct tls_conn *c, const char *text)
{
	size_t w = 0;

	c->err[0] = '\0';
	put(c->err, sizeof(c->err), &w, text);
}

/* The first (root cause) error in the queue for configuration messages; clears it. */
static void cfg_reason(char *buf, size_t len)
{
	const char *data = NULL;
	int flags = 0;
	unsigned long e = ERR_peek_error_all(NULL, NULL, NULL, &data, &flags);

	if (e == 0)
		snprintf(buf, len, "unknown OpenSSL error");
	else
		err_text(e, data, flags, buf, len);
	ERR_clear_error();
}

/* The last error in the queue into c->err (fallback when the queue is empty); clears it. */
static void conn_error(struct tls_conn *c, const char *fallback)
{
	unsigned long e = ERR_peek_last_error();

	if (e != 0)
		err_text(e, NULL, 0, c->err, sizeof(c->err));
	else
		conn_set_error(c, fallback);
	ERR_clear_error();
}

/* ASCII-only case-insensitive equality of two NUL-terminated strings. */
static int eq_nocase(const char *a, const char *b)
{
	for (;; a++, b++) {
		unsigned char x = (unsigned char)*a, y = (unsigned char)*b;

		if (x >= 'A' && x <= 'Z')
			x = (unsigned char)(x - 'A' + 'a');
		if (y >= 'A' && y <= 'Z')
			y = (unsigned char)(y - 'A' + 'a');
		if (x != y)
			return 0;
		if (x == '\0')
			return 1;
	}
}

/* 1 when pattern "*.rest" matches host: exactly one non-empty label, then ".rest". */
static int wildcard_match(const char *pattern, const char *host)
{
	const char *dot = strchr(host, '.');

	if (dot == NULL || dot == host)
		return 0;
	return eq_nocase(pattern + 1, dot);
}

static int is_wildcard(const char *name)
{
	return name[0] == '*' && name[1] == '.';
}

/* Chooses the certificate: exact names first, then wildcards, else the default. */
static int servername_cb(SSL *ssl, int *alert, void *arg)
{
	const struct tls_ctx *t = arg;
	struct tls_conn *c = SSL_get_app_data(ssl);
	const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
	char esc[TLS_SNI_MAX * 4 + 4];
	size_t i, n;
	SSL_CTX *pick = NULL;

	if (name == NULL)
		return SSL_TLSEXT_ERR_OK;
	n = strnlen(name, TLS_SNI_MAX + 1);
	if (c != NULL && c->sni == NULL) {
		str_escape(esc, sizeof(esc), name, n, TLS_SNI_MAX);
		c->sni = strdup(esc);
		if (c->sni == NULL) {
			*alert = SSL_AD_INTERNAL_ERROR;
			return SSL_TLSEXT_ERR_ALERT_FATAL;
		}
	}
	if (n > TLS_SNI_MAX)
		return SSL_TLSEXT_ERR_OK;
	for (i = 0; i < t->nsni && pick == NULL; i++)
		if (!is_wildcard(t->sni[i].name) && eq_nocase(t->sni[i].name, name))
			pick = t->sni[i].ctx;
	for (i = 0; i < t->nsni && pick == NULL; i++)
		if (is_wildcard(t->sni[i].name) && wildcard_match(t->sni[i].name, name))
			pick = t->sni[i].ctx;
	if (pick != NULL && SSL_set_SSL_CTX(ssl, pick) == NULL) {
		*alert = SSL_AD_INTERNAL_ERROR;
		return SSL_TLSEXT_ERR_ALERT_FATAL;
	}
	return SSL_TLSEXT_ERR_OK;
}

/*
 * Never prompt on the terminal: an encrypted key file is a configuration
 * error. u, when set, is an int raised to say a passphrase was wanted.
 */
static int no_passphrase_cb(char *buf, int size, int rwflag, void *u)
{
	(void)buf; (void)size; (void)rwflag;
	if (u != NULL)
		*(int *)u = 1;
	return -1;
}

/* "2026-01-31 12:00:00 UTC", or "?" when the time cannot be decoded. */
static void asn1_date(const ASN1_TIME *t, char *buf, size_t len)
{
	struct tm tm;

	if (t == NULL || !ASN1_TIME_to_tm(t, &tm) ||
	    strftime(buf, len, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
		snprintf(buf, len, "?");
}

/* Expired: error. Expiring within 30 days or not yet valid: warning. */
static void check_dates(X509 *x, const char *path, const char *label,
			struct diag *errors, struct diag *warnings)
{
	const ASN1_TIME *na = X509_get0_notAfter(x);
	const ASN1_TIME *nb = X509_get0_notBefore(x);
	time_t now = time(NULL);
	time_t soon = now + TLS_EXPIRY_WARN_SECS;
	char date[64];

	asn1_date(na, date, sizeof(date));
	if (X509_cmp_time(na, &now) <= 0)
		diag_add(errors, "%s: %s.certificate: expired on %s", path, label, date);
	else if (X509_cmp_time(na, &soon) <= 0)
		diag_add(warnings, "%s: %s.certificate: expires on %s (within 30 days)",
			 path, label, date);
	if (X509_cmp_time(nb, &now) > 0) {
		asn1_date(nb, date, sizeof(date));
		diag_add(warnings, "%s: %s.certificate: not valid before %s", path, label, date);
	}
}

/*
 * A server SSL_CTX with the protocol floor, cipher lists and options of cfg.
 * report: add setting problems to errors (done once, for the default). A
 * context with a bad setting is still returned, so that certificates get
 * checked too; the errors already make tls_ctx_new fail. NULL on ENOMEM.
 */
static SSL_CTX *ctx_base(const struct tls_cfg *cfg, int report,
			 struct diag *errors, struct diag *warnings)
{
	char why[256];
	int minv = cfg->min_version ? cfg->min_version : TLS1_2_VERSION;
	const char *ciphers = cfg->ciphers ? cfg->ciphers : TLS_DEFAULT_CIPHERS;
	SSL_CTX *ctx;

	ERR_clear_error();
	ctx = SSL_CTX_new(TLS_method());
	if (ctx == NULL) {
		cfg_reason(why, sizeof(why));
		diag_add(errors, "tls: cannot create an OpenSSL context: %s", why);
		return NULL;
	}
	if (minv != TLS1_2_VERSION && minv != TLS1_3_VERSION) {
		if (report)
			diag_add(errors, "tls.min_version: only TLS 1.2 or TLS 1.3 allowed");
		minv = TLS1_2_VERSION;    /* the context is discarded anyway */
	}
	if (!SSL_CTX_set_min_proto_version(ctx, minv)) {
		cfg_reason(why, sizeof(why));
		if (report)
			diag_add(errors, "tls.min_version: %s", why);
	}
	if (!SSL_CTX_set_cipher_list(ctx, ciphers)) {
		cfg_reason(why, sizeof(why));
		if (report)
			diag_add(errors, "tls.ciphers: \"%s\": %s", ciphers, why);
	}
	if (cfg->ciphersuites != NULL && !SSL_CTX_set_ciphersuites(ctx, cfg->ciphersuites)) {
		cfg_reason(why, sizeof(why));
		if (report)
			diag_add(errors, "tls.ciphersuites: \"%s\": %s", cfg->ciphersuites, why);
	}
	/* After the cipher list, which may carry its own @SECLEVEL. */
	if (SSL_CTX_get_security_level(ctx) < TLS_MIN_SECLEVEL) {
		if (report && cfg->ciphers != NULL)
			diag_add(warnings, "tls.ciphers: security level raised to %d",
				 TLS_MIN_SECLEVEL);
		SSL_CTX_set_security_level(ctx, TLS_MIN_SECLEVEL);
	}
	/* CLEANSE_PLAINTEXT: OpenSSL wipes each decrypted record once read, since PASS and
	 * AUTH lines carry passwords (the line reader wipes its own copy). */
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
			    SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_TICKET |
			    SSL_OP_CLEANSE_PLAINTEXT);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	/*
	 * No resumption: no cache to bound and no ticket key that would live as
	 * long as the daemon. Mail clients reconnect rarely enough.
	 */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_num_tickets(ctx, 0);
	SSL_CTX_set_dh_auto(ctx, 1);
	SSL_CTX_set_default_passwd_cb(ctx, no_passphrase_cb);
	return ctx;
}

/*
 * Load certificate chain and key into ctx, check they match and check the
 * leaf's dates. label is "tls" or "tls.sni[i]". 0, or -1 after adding errors.
 */
static int load_pair(SSL_CTX *ctx, const char *label, const char *cert, const char *key,
		     struct diag *errors, struct diag *warnings)
{
	char why[256];
	int have_cert = 0, have_key = 0, asked = 0;
	X509 *x;

	if (cert == NULL || key == NULL) {
		diag_add(errors, "%s.%s: missing", label, cert == NULL ? "certificate" : "key");
		return -1;
	}
	ERR_clear_error();
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) == 1) {
		have_cert = 1;
	} else {
		cfg_reason(why, sizeof(why));
		diag_add(errors, "%s: %s.certificate: %s", cert, label, why);
	}
	if (have_cert) {
		x = SSL_CTX_get0_certificate(ctx);
		if (x != NULL) {
			size_t before = errors->n;

			check_dates(x, cert, label, errors, warnings);
			if (errors->n != before)
				have_cert = 0;
		}
	}
	SSL_CTX_set_default_passwd_cb_userdata(ctx, &asked);
	if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) == 1) {
		have_key = 1;
	} else {
		unsigned long e = ERR_peek_error();

		cfg_reason(why, sizeof(why));
		if (ERR_GET_LIB(e) == ERR_LIB_X509 && ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH)
			diag_add(errors, "%s: %s.key: does not match %s (%s)", key, label, cert, why);
		else if (asked)
			diag_add(errors, "%s: %s.key: encrypted keys are not supported (%s)",
				 key, label, why);
		else
			diag_add(errors, "%s: %s.key: %s", key, label, why);
	}
	SSL_CTX_set_default_passwd_cb_userdata(ctx, NULL);
	if (have_key && SSL_CTX_get0_certificate(ctx) != NULL &&
	    SSL_CTX_check_private_key(ctx) != 1) {
		cfg_reason(why, sizeof(why));
		diag_add(errors, "%s: %s.key: does not match %s (%s)", key, label, cert, why);
		have_key = 0;
	}
	ERR_clear_error();
	return have_cert && have_key ? 0 : -1;
}

/* Warn when an exact SNI name is not among the certificate's names. */
static void check_covers(SSL_CTX *ctx, const char *name, const char *path, const char *label,
			 struct diag *warnings)
{
	X509 *x = SSL_CTX_get0_certificate(ctx);

	if (x == NULL || is_wildcard(name))
		return;
	if (X509_check_host(x, name, strlen(name), 0, NULL) != 1)
		diag_add(warnings, "%s: %s.certificate: does not cover \"%s\"", path, label, name);
	ERR_clear_error();
}

/* An SNI name must be a non-empty host name; '*' only as the whole first label. */
static int sni_name_ok(const char *name)
{
	size_t n = name ? strlen(name) : 0;

	if (n == 0 || n > TLS_SNI_MAX)
		return 0;
	if (strchr(is_wildcard(name) ? name + 1 : name, '*') != NULL)
		return 0;
	if (is_wildcard(name) && name[2] == '\0')
		return 0;
	return 1;
}

struct tls_ctx *tls_ctx_new(const struct tls_cfg *cfg, struct diag *errors, struct diag *warnings)
{
	struct tls_ctx *t;
	size_t before = errors->n, i;
	char label[48];

	t = calloc(1, sizeof(*t));
	if (t == NULL) {
		diag_add(errors, "tls: out of memory");
		return NULL;
	}
	t->def = ctx_base(cfg, 1, errors, warnings);
	if (t->def != NULL)
		load_pair(t->def, "tls", cfg->certificate, cfg->key, errors, warnings);
	if (cfg->nsni > 0) {
		t->sni = calloc(cfg->nsni, sizeof(*t->sni));
		if (t->sni == NULL) {
			diag_add(errors, "tls: out of memory");
			tls_ctx_free(t);
			return NULL;
		}
	}
	for (i = 0; i < cfg->nsni; i++) {
		const struct tls_sni_cfg *s = &cfg->sni[i];
		struct tls_sni *d = &t->sni[t->nsni];

		snprintf(label, sizeof(label), "tls.sni[%zu]", i);
		if (!sni_name_ok(s->name)) {
			diag_add(errors, "%s.name: \"%s\": not a host name or \"*.domain\"",
				 label, s->name ? s->name : "");
			continue;
		}
		d->name = strdup(s->name);
		if (d->name == NULL) {
			diag_add(errors, "tls: out of memory");
			continue;
		}
		t->nsni++;
		d->ctx = ctx_base(cfg, 0, errors, warnings);
		if (d->ctx == NULL)
			continue;
		if (load_pair(d->ctx, label, s->certificate, s->key, errors, warnings) == 0)
			check_covers(d->ctx, s->name, s->certificate, label, warnings);
	}
	if (t->def != NULL) {
		SSL_CTX_set_tlsext_servername_callback(t->def, servername_cb);
		SSL_CTX_set_tlsext_servername_arg(t->def, t);
	}
	if (errors->n != before || errors->oom || t->def == NULL) {
		if (errors->n == before)
			diag_add(errors, "tls: out of memory");
		tls_ctx_free(t);
		return NULL;
	}
	return t;
}

/* "cn=... san=a,b,c,+2 not_after=..." for one certificate. */
static void describe_cert(X509 *x, FILE *f)
{
	X509_NAME *subj = X509_get_subject_name(x);
	GENERAL_NAMES *sans = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	char esc[64 * 4 + 4], date[64];
	int idx = subj ? X509_NAME_get_index_by_NID(subj, NID_commonName, -1) : -1;
	int i, shown = 0, total = 0;

	if (idx >= 0) {
		const ASN1_STRING *s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, idx));

		str_escape(esc, sizeof(esc), (const char *)ASN1_STRING_get0_data(s),
			   (size_t)ASN1_STRING_length(s), 64);
		fprintf(f, " cn=%s", esc);
	} else {
		fprintf(f, " cn=-");
	}
	fprintf(f, " san=");
	for (i = 0; sans != NULL && i < sk_GENERAL_NAME_num(sans); i++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);

		if (g->type != GEN_DNS)
			continue;
		total++;
		if (shown >= TLS_DESCRIBE_SANS)
			continue;
		str_escape(esc, sizeof(esc), (const char *)ASN1_STRING_get0_data(g->d.dNSName),
			   (size_t)ASN1_STRING_length(g->d.dNSName), 64);
		fprintf(f, "%s%s", shown ? "," : "", esc);
		shown++;
	}
	if (total == 0)
		fprintf(f, "-");
	else if (total > shown)
		fprintf(f, ",+%d", total - shown);
	GENERAL_NAMES_free(sans);
	asn1_date(X509_get0_notAfter(x), date, sizeof(date));
	fprintf(f, " not_after=\"%s\"", date);
}

void tls_ctx_describe(const struct tls_ctx *t, FILE *f)
{
	size_t i;
	X509 *x;
	char esc[TLS_SNI_MAX * 4 + 4];

	if (t == NULL)
		return;
	x = SSL_CTX_get0_certificate(t->def);
	fprintf(f, "tls default");
	if (x != NULL)
		describe_cert(x, f);
	fprintf(f, "\n");
	for (i = 0; i < t->nsni; i++) {
		str_escape(esc, sizeof(esc), t->sni[i].name, strlen(t->sni[i].name), TLS_SNI_MAX);
		fprintf(f, "tls sni[%zu] name=%s", i, esc);
		x = t->sni[i].ctx ? SSL_CTX_get0_certificate(t->sni[i].ctx) : NULL;
		if (x != NULL)
			describe_cert(x, f);
		fprintf(f, "\n");
	}
}

void tls_ctx_free(struct tls_ctx *t)
{
	size_t i;

	if (t == NULL)
		return;
	for (i = 0; i < t->nsni; i++) {
		SSL_CTX_free(t->sni[i].ctx);
		free(t->sni[i].name);
	}
	free(t->sni);
	SSL_CTX_free(t->def);
	free(t);
}

struct tls_conn *tls_conn_new(struct tls_ctx *t)
{
	struct tls_conn *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return NULL;
	ERR_clear_error();
	c->ssl = SSL_new(t->def);
	c->rbio = BIO_new(BIO_s_mem());
	c->wbio = BIO_new(BIO_s_mem());
	if (c->ssl == NULL || c->rbio == NULL || c->wbio == NULL) {
		BIO_free(c->rbio);
		BIO_free(c->wbio);
		SSL_free(c->ssl);
		free(c);
		ERR_clear_error();
		return NULL;
	}
	/* An empty read BIO means "retry later", not end of file. */
	BIO_set_mem_eof_return(c->rbio, -1);
	BIO_set_mem_eof_return(c->wbio, -1);
	SSL_set_bio(c->ssl, c->rbio, c->wbio);
	SSL_set_app_data(c->ssl, c);
	SSL_set_accept_state(c->ssl);
	return c;
}

void tls_conn_free(struct tls_conn *c)
{
	if (c == NULL)
		return;
	SSL_free(c->ssl);     /* frees both BIOs */
	free(c->sni);
	free(c);
}

/* Capacity of a memory BIO's buffer. */
static size_t bio_capacity(BIO *b)
{
	BUF_MEM *m = NULL;

	BIO_get_mem_ptr(b, &m);
	return m != NULL ? m->max : 0;
}

/* Replace a drained, oversized memory BIO with a fresh one (keeps the old on ENOMEM). */
static void trim_bio(struct tls_conn *c, int rd)
{
	BIO *old = rd ? c->rbio : c->wbio;
	BIO *b;

	if (BIO_ctrl_pending(old) != 0 || bio_capacity(old) <= TLS_BIO_KEEP)
		return;
	b = BIO_new(BIO_s_mem());
	if (b == NULL) {
		ERR_clear_error();
		return;
	}
	BIO_set_mem_eof_return(b, -1);
	if (rd) {
		SSL_set0_rbio(c->ssl, b);    /* frees old */
		c->rbio = b;
	} else {
		SSL_set0_wbio(c->ssl, b);
		c->wbio = b;
	}
}

int tls_conn_feed(struct tls_conn *c, const char *p, size_t n)
{
	ERR_clear_error();
	while (n > 0) {
		int chunk = n > INT32_MAX ? INT32_MAX : (int)n;
		int w = BIO_write(c->rbio, p, chunk);

		if (w <= 0) {
			conn_error(c, "out of memory");
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Map a failed SSL call (ret <= 0) to a status, recording errors. */
static enum tls_status fail_status(struct tls_conn *c, int ret)
{
	switch (SSL_get_error(c->ssl, ret)) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		ERR_clear_error();
		return TLS_WANT;
	case SSL_ERROR_ZERO_RETURN:
		ERR_clear_error();
		return TLS_CLOSED;
	case SSL_ERROR_SYSCALL:
		conn_error(c, "unexpected end of stream");
		return TLS_FAIL;
	default:
		conn_error(c, "TLS failure");
		return TLS_FAIL;
	}
}

enum tls_status tls_conn_handshake(struct tls_conn *c)
{
	int ret;
	enum tls_status st;

	ERR_clear_error();
	ret = SSL_do_handshake(c->ssl);
	if (ret == 1) {
		trim_bio(c, 1);
		return TLS_OK;
	}
	st = fail_status(c, ret);
	/* ZERO_RETURN cannot complete a handshake. */
	if (st == TLS_CLOSED) {
		conn_set_error(c, "closed during handshake");
		st = TLS_FAIL;
	}
	return st;
}

size_t tls_conn_read(struct tls_conn *c, char *p, size_t n, enum tls_status *st)
{
	size_t got = 0;
	int ret;

	if (n == 0) {
		*st = TLS_WANT;
		return 0;
	}
	ERR_clear_error();
	ret = SSL_read_ex(c->ssl, p, n, &got);
	if (ret == 1 && got > 0) {
		*st = TLS_OK;
		return got;
	}
	*st = fail_status(c, 0);
	if (*st == TLS_WANT)
		trim_bio(c, 1);
	return 0;
}

int tls_conn_write(struct tls_conn *c, const char *p, size_t n)
{
	size_t done = 0;

	if (n == 0)
		return 0;
	ERR_clear_error();
	if (SSL_write_ex(c->ssl, p, n, &done) == 1 && done == n)
		return 0;
	switch (SSL_get_error(c->ssl, 0)) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		ERR_clear_error();
		conn_set_error(c, "write before the handshake completed");
		break;
	default:
		conn_error(c, "TLS write failure");
		break;
	}
	return -1;
}

size_t tls_conn_pending(const struct tls_conn *c)
{
	return BIO_ctrl_pending(c->wbio);
}

size_t tls_conn_take(struct tls_conn *c, char *p, size_t n)
{
	size_t got = 0;

	if (n == 0)
		return 0;
	ERR_clear_error();
	if (BIO_read_ex(c->wbio, p, n, &got) != 1)
		got = 0;
	ERR_clear_error();
	trim_bio(c, 0);
	return got;
}

void tls_conn_close_notify(struct tls_conn *c)
{
	if (c->shutdown_sent)
		return;
	c->shutdown_sent = 1;
	ERR_clear_error();
	/* 0 = sent, peer's not yet seen; < 0 = in handshake or after a fatal error. */
	if (SSL_shutdown(c->ssl) < 0)
		conn_error(c, "shutdown failed");
}

const char *tls_conn_version(const struct tls_conn *c)
{
	return SSL_get_version(c->ssl);
}

const char *tls_conn_cipher(const struct tls_conn *c)
{
	const SSL_CIPHER *ci = SSL_get_current_cipher(c->ssl);

	return ci != NULL ? SSL_CIPHER_get_name(ci) : "-";
}

int tls_conn_cleanses_plaintext(const struct tls_conn *c)
{
	return (SSL_get_options(c->ssl) & SSL_OP_CLEANSE_PLAINTEXT) != 0;
}

const char *tls_conn_sni(const struct tls_conn *c)
{
	return c->sni != NULL ? c->sni : "-";
}

const char *tls_conn_error(const struct tls_conn *c)
{
	return c->err[0] != '\0' ? c->err : "-";
}
