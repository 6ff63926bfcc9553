/*
 * test_tlsio: drives server/tlsio.c through tlsio.h against an OpenSSL client
 * in the same thread, shuttling bytes between memory BIOs. Certificates are
 * generated at test time in a mkdtemp folder that is removed afterwards.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "server/tlsio.h"

#define DAY (24L * 3600)

/* Certificate/key pairs written by group_setup: dir/NAME.pem and dir/NAME.key. */
static const struct cert_spec {
	const char *file;
	const char *cn;
	const char *san;      /* comma-separated DNS names */
	long        nb;       /* notBefore, seconds from now */
	long        na;       /* notAfter, seconds from now */
} specs[] = {
	{ "default", "default.test",     "default.test,www.default.test", -DAY, 365 * DAY },
	{ "mail",    "mail.example.net", "mail.example.net",              -DAY, 365 * DAY },
	{ "wild",    "*.example.org",    "*.example.org",                 -DAY, 365 * DAY },
	{ "other",   "other.test",       "other.test",                    -DAY, 365 * DAY },
	{ "expired", "old.test",         "old.test",                 -40 * DAY, -DAY },
	{ "soon",    "soon.test",        "soon.test",                     -DAY, 10 * DAY },
};
#define NSPECS (sizeof(specs) / sizeof(specs[0]))

struct env {
	char dir[64];
	char pem[NSPECS][128];
	char key[NSPECS][128];
};

enum { C_DEFAULT, C_MAIL, C_WILD, C_OTHER, C_EXPIRED, C_SOON };

/* A self-signed P-256 certificate; 0 or -1. */
static int make_cert(const struct cert_spec *s, const char *pem, const char *key)
{
	EVP_PKEY *pk = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	X509_NAME *nm;
	X509_EXTENSION *ext;
	X509V3_CTX v3;
	char san[256];
	FILE *f;
	int rc = -1;

	if (pk == NULL || x == NULL)
		goto out;
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), s->nb);
	X509_gmtime_adj(X509_getm_notAfter(x), s->na);
	X509_set_pubkey(x, pk);
	nm = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_ASC,
				   (const unsigned char *)s->cn, -1, -1, 0);
	X509_set_issuer_name(x, nm);
	{
		/* "DNS:a,DNS:b" from "a,b". */
		const char *p = s->san;
		size_t w = 0;

		w += (size_t)snprintf(san + w, sizeof(san) - w, "DNS:");
		for (; *p && w + 5 < sizeof(san); p++) {
			if (*p == ',')
				w += (size_t)snprintf(san + w, sizeof(san) - w, ",DNS:");
			else
				san[w++] = *p;
		}
		san[w] = '\0';
	}
	X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, san);
	if (ext == NULL)
		goto out;
	X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	if (!X509_sign(x, pk, EVP_sha256()))
		goto out;
	f = fopen(pem, "w");
	if (f == NULL)
		goto out;
	PEM_write_X509(f, x);
	fclose(f);
	f = fopen(key, "w");
	if (f == NULL)
		goto out;
	PEM_write_PrivateKey(f, pk, NULL, NULL, 0, NULL, NULL);
	fclose(f);
	rc = 0;
out:
	X509_free(x);
	EVP_PKEY_free(pk);
	return rc;
}

static int group_setup(void **state)
{
	struct env *e = calloc(1, sizeof(*e));
	size_t i;

	if (e == NULL)
		return -1;
	snprintf(e->dir, sizeof(e->dir), "/tmp/test_tlsio.XXXXXX");
	if (mkdtemp(e->dir) == NULL)
		return -1;
	for (i = 0; i < NSPECS; i++) {
		snprintf(e->pem[i], sizeof(e->pem[i]), "%s/%s.pem", e->dir, specs[i].file);
		snprintf(e->key[i], sizeof(e->key[i]), "%s/%s.key", e->dir, specs[i].file);
		if (make_cert(&specs[i], e->pem[i], e->key[i]) < 0)
			return -1;
	}
	*state = e;
	return 0;
}

static int group_teardown(void **state)
{
	struct env *e = *state;
	size_t i;

	for (i = 0; i < NSPECS; i++) {
		unlink(e->pem[i]);
		unlink(e->key[i]);
	}
	rmdir(e->dir);
	free(e);
	return 0;
}

/* A tls_cfg with the default certificate and, when sni != NULL, those entries. */
static struct tls_cfg base_cfg(const struct env *e, struct tls_sni_cfg *sni, size_t nsni)
{
	struct tls_cfg c;

	memset(&c, 0, sizeof(c));
	c.present = 1;
	c.certificate = (char *)(uintptr_t)e->pem[C_DEFAULT];
	c.key = (char *)(uintptr_t)e->key[C_DEFAULT];
	c.min_version = TLS1_2_VERSION;
	c.sni = sni;
	c.nsni = nsni;
	c.handshake_timeout = 30;
	return c;
}

static char *S(const char *s)
{
	return (char *)(uintptr_t)s;
}

/* 1 when some entry of d contains needle. */
static int diag_has(const struct diag *d, const char *needle)
{
	size_t i;

	for (i = 0; i < d->n; i++)
		if (strstr(d->msg[i], needle) != NULL)
			return 1;
	return 0;
}

static void diag_print(const char *what, const struct diag *d)
{
	size_t i;

	for (i = 0; i < d->n; i++)
		fprintf(stderr, "  %s: %s\n", what, d->msg[i]);
}

/* ---- the in-process client ---- */

struct client {
	SSL_CTX *ctx;
	SSL     *ssl;
	BIO     *in;      /* bytes from the server; owned by ssl */
	BIO     *out;     /* bytes to the server; owned by ssl */
};

/* maxv/minv 0 = library default; sni NULL = none. */
static void client_new(struct client *cl, int minv, int maxv, const char *sni)
{
	cl->ctx = SSL_CTX_new(TLS_client_method());
	assert_non_null(cl->ctx);
	if (minv != 0 && minv < TLS1_2_VERSION) {
		/* Old protocols need level 0 on the client to be offered at all. */
		assert_int_equal(SSL_CTX_set_cipher_list(cl->ctx, "DEFAULT:@SECLEVEL=0"), 1);
	}
	if (minv)
		assert_int_equal(SSL_CTX_set_min_proto_version(cl->ctx, minv), 1);
	if (maxv)
		assert_int_equal(SSL_CTX_set_max_proto_version(cl->ctx, maxv), 1);
	cl->ssl = SSL_new(cl->ctx);
	assert_non_null(cl->ssl);
	cl->in = BIO_new(BIO_s_mem());
	cl->out = BIO_new(BIO_s_mem());
	assert_non_null(cl->in);
	assert_non_null(cl->out);
	BIO_set_mem_eof_return(cl->in, -1);
	SSL_set_bio(cl->ssl, cl->in, cl->out);
	SSL_set_connect_state(cl->ssl);
	if (sni != NULL)
		assert_int_equal(SSL_set_tlsext_host_name(cl->ssl, S(sni)), 1);
}

static void client_free(struct client *cl)
{
	SSL_free(cl->ssl);
	SSL_CTX_free(cl->ctx);
}

/* Move every pending octet both ways, in odd-sized pieces. */
static void pump(struct tls_conn *s, struct client *cl)
{
	char buf[1500];
	size_t n;
	int r;

	while ((r = BIO_read(cl->out, buf, 1009)) > 0)
		assert_int_equal(tls_conn_feed(s, buf, (size_t)r), 0);
	while (tls_conn_pending(s) > 0) {
		n = tls_conn_take(s, buf, sizeof(buf));
		assert_true(n > 0);
		assert_int_equal(BIO_write(cl->in, buf, (int)n), (int)n);
	}
}

static int client_wants(SSL *ssl, int ret)
{
	int e = SSL_get_error(ssl, ret);

	return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE;
}

/*
 * Run both handshakes to the end or the first failure, at most 20 rounds.
 * Returns the server's last status; *cret gets the client's last return.
 */
static enum tls_status handshake(struct tls_conn *s, struct client *cl, int *cret)
{
	enum tls_status st = TLS_WANT;
	int round, c = 0;

	for (round = 0; round < 20; round++) {
		if (c != 1) {
			c = SSL_do_handshake(cl->ssl);
			if (c <= 0 && !client_wants(cl->ssl, c))
				break;
		}
		pump(s, cl);
		if (st != TLS_OK) {
			st = tls_conn_handshake(s);
			pump(s, cl);
			if (st == TLS_FAIL)
				break;
		}
		if (c == 1 && st == TLS_OK)
			break;
	}
	/* Let the other side see a final alert. */
	if (st == TLS_FAIL && c != 1)
		c = SSL_do_handshake(cl->ssl);
	else if (c <= 0 && st != TLS_OK)
		st = tls_conn_handshake(s);
	*cret = c;
	return st;
}

/* Subject CN of the certificate the client got. */
static void peer_cn(struct client *cl, char *buf, int len)
{
	X509 *x = SSL_get0_peer_certificate(cl->ssl);

	assert_non_null(x);
	assert_true(X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName,
					      buf, len) > 0);
}

struct pair {
	struct diag     errs;
	struct diag     warns;
	struct tls_ctx *t;
	struct tls_conn *s;
	struct client   cl;
};

/* Build the context from cfg, a server conn and a client; the context must load. */
static void pair_new(struct pair *p, const struct tls_cfg *cfg, int cmin, int cmax, const char *sni)
{
	memset(p, 0, sizeof(*p));
	p->t = tls_ctx_new(cfg, &p->errs, &p->warns);
	if (p->t == NULL)
		diag_print("error", &p->errs);
	assert_non_null(p->t);
	assert_int_equal(p->errs.n, 0);
	p->s = tls_conn_new(p->t);
	assert_non_null(p->s);
	client_new(&p->cl, cmin, cmax, sni);
}

static void pair_free(struct pair *p)
{
	client_free(&p->cl);
	tls_conn_free(p->s);
	tls_ctx_free(p->t);
	diag_free(&p->errs);
	diag_free(&p->warns);
}

/* Connect with the given SNI (or none) and return the CN the client saw. */
static void sni_probe(const struct tls_cfg *cfg, const char *sni, char *cn, int cnlen,
		      char *seen, size_t seenlen)
{
	struct pair p;
	int c;

	pair_new(&p, cfg, 0, 0, sni);
	assert_int_equal(handshake(p.s, &p.cl, &c), TLS_OK);
	assert_int_equal(c, 1);
	peer_cn(&p.cl, cn, cnlen);
	snprintf(seen, seenlen, "%s", tls_conn_sni(p.s));
	pair_free(&p);
}

/* ---- tests ---- */

static void test_handshake_tls13(void **state)
{
	struct tls_cfg cfg = base_cfg(*state, NULL, 0);
	struct pair p;
	enum tls_status st;
	char buf[16];
	int c;

	pair_new(&p, &cfg, 0, 0, NULL);
	assert_string_equal(tls_conn_cipher(p.s), "-");
	assert_string_equal(tls_conn_error(p.s), "-");
	/* Nothing fed yet: the server waits. */
	assert_int_equal(tls_conn_handshake(p.s), TLS_WANT);
	assert_int_equal(tls_conn_pending(p.s), 0);
	assert_int_equal(handshake(p.s, &p.cl, &c), TLS_OK);
	assert_int_equal(c, 1);
	assert_string_equal(tls_conn_version(p.s), "TLSv1.3");
	assert_string_equal(SSL_get_version(p.cl.ssl), "TLSv1.3");
	assert_string_not_equal(tls_conn_cipher(p.s), "-");
	assert_string_equal(tls_conn_sni(p.s), "-");
	assert_string_equal(tls_conn_error(p.s), "-");
	/* No session tickets: nothing further for the client, no plaintext yet. */
	assert_int_equal(tls_conn_pending(p.s), 0);
	assert_int_equal(tls_conn_read(p.s, buf, sizeof(buf), &st), 0);
	assert_int_equal(st, TLS_WANT);
	assert_int_equal(tls_conn_handshake(p.s), TLS_OK);
	pair_free(&p);
}

static void test_handshake_tls12(void **state)
{
	struct tls_cfg cfg = base_cfg(*state, NULL, 0);
	struct pair p;
	int c;

	pair_new(&p, &cfg, 0, TLS1_2_VERSION, NULL);
	assert_int_equal(handshake(p.s, &p.cl, &c), TLS_OK);
	assert_int_equal(c, 1);
	assert_string_equal(tls_conn_version(p.s), "TLSv1.2");
	/* Our default list: forward secret AEAD only. */
	assert_memory_equal(tls_conn_cipher(p.s), "ECDHE-", 6);
	assert_non_null(strstr(tls_conn_cipher(p.s), "GCM"));
	assert_int_equal(SSL_get_session(p.cl.ssl) != NULL &&
			 SSL_SESSION_has_ticket(SSL_get_session(p.cl.ssl)), 0);
	pair_free(&p);
}

static void test_small_data_both_ways(void **state)
{
	struct tls_cfg cfg = base_cfg(*state, NULL, 0);
	struct pair p;
	enum tls_status st;
	char buf[64];
	size_t n, got = 0;
	int c;

	pair_new(&p, &cfg, 0, 0, NULL);
	assert_int_equal(handshake(p.s, &p.cl, &c), TLS_OK);
	assert_int_equal(tls_conn_write(p.s, "+OK hello\r\n", 11), 0);
	assert_true(tls_conn_pending(p.s) > 11);
	pump(p.s, &p.cl);
	assert_int_equal(SSL_read_ex(p.cl.ssl, buf, sizeof(buf), &got), 1);
	assert_int_equal(got, 11);
	assert_memory_equal(buf, "+OK hello\r\n", 11);

	assert_int_equal(SSL_write_ex(p.cl.ssl, "CAPA\r\n", 6, &got), 1);
	pump(p.s, &p.cl);
	n = tls_conn_read(p.s, buf, sizeof(buf), &st);
	assert_int_equal(st, TLS_OK);
	assert_int_equal(n, 6);
	assert_memory_equal(buf, "CAPA\r\n", 6);
	/* Writing nothing is fine and queues nothing. */
	assert_int_equal(tls_conn_write(p.s, "", 0), 0);
	assert_int_equal(tls_conn_pending(p.s), 0);
	pair_free(&p);
}

#define BIG (1024 * 1024)

static void fill(unsigned char *b, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		b[i] = (unsigned char)(i * 31 + (i >> 11));
}

static void test_one_megabyte_each_way(void **state)
{
	struct tls_cfg cfg = base_cfg(*state, NULL, 0);
	static const size_t pieces[] = { 1, 10007, 100000, 16384, 16385, 4093 };
	unsigned char *src = malloc(BIG), *dst = malloc(BIG);
	struct pair p;
	enum tls_status st;
	size_t off, got, k = 0, w, sent;
	int c;

	assert_non_null(src);
	assert_non_null(dst);
	fill(src, BIG);
	pair_new(&p, &cfg, 0, 0, NULL);
	assert_int_equal(handshake(p.s, &p.cl, &c), TLS_OK);

	/* Server to client, in uneven pieces, draining after each. */
	got = 0;
	for (off = 0; off < BIG; off += w) {
		w = pieces[k++ % 6];
		if (w > BIG - off)
			w = BIG - off;
		assert_int_equal(tls_conn_write(p.s, (const char *)src + off, w), 0);
		pump(p.s, &p.cl);
		for (;;) {
			size_t r = 0;

			if (SSL_read_ex(p.cl.ssl, dst + got, BIG - got, &r) != 1)
				break;
			got += r;
		}
		assert_int_equal(got, off + w);
	}
	assert_int_equal(got, BIG);
	assert_memory_equal(src, dst, BIG);

	/* Client to server, fed in 1009-octet pieces, read 3000 at a time. */
	memset(dst, 0, BIG);
	got = 0;
	k = 0;
	for (off = 0; off < BIG; off += w) {
		w = pieces[k++ % 6];
		if (w > BIG - off)
			w = BIG - off;
		assert_int_equal(SSL_write_ex(p.cl.ssl, src + off, w, &sent), 1);
		assert_int_equal(sent, w);
		pump(p.s, &p.cl);
		for (;;) {
			size_t want = BIG - got < 3000 ? BIG - got : 3000;
			size_t r;

			if (want == 0)
				break;
			r = tls_conn_read(p.s, (char *)dst + got, want, &st);
			if (r == 0) {
				assert_int_equal(st, TLS_WANT);
				break;
			}
			got += r;
		}
		assert_int_equal(got, off + w);
	}
	assert_memory_equal(src, dst, BIG);
	assert_int_equal(tls_conn_pending(p.s), 0);
	pair_free(&p);
	free(src);
	free(dst);
}

static void test_tls11_client_refused(void **state)
{
	struct tls_cfg cfg = base_cfg(*state, NULL, 0);
	struct pair p;
	int c;

	pair_new(&p, &cfg, TLS1_VERSION, TLS1_1_VERSION, NULL);
	assert_int_equal(handshake(p.s, &p.cl, &c), TLS_FAIL);
	assert_true(c <= 0);
	assert_non_null(strstr(tls_conn_error(p.s), "unsupported protocol"));
	pair_free(&p);
}

/* "@SECLEVEL=0" in tls.ciphers lowers nothing: TLS 1.1 stays refused. */
static void test_seclevel_cannot_be_lowered(void **state)
{
	struct tls_cfg cfg = base_cfg(*state, NULL, 0);
	struct pair p;
	int c;

	cfg.ciphers = S("DEFAULT:@SECLEVEL=0");
	pair_new(&p, &cfg, TLS1_VERSION, TLS1_1_VERSION, NULL);
	assert_true(diag_has(&p.warns, "tls.ciphers: security level raised to 2"));
	assert_int_equal(handshake(p.s, &p.cl, &c), TLS_FAIL);
	assert_true(c <= 0);
	assert_non_null(strstr(tls_conn_error(p.s), "unsupported protocol"));
	pair_free(&p);
}

static void test_tls13_only_refuses_tls12(void **state)
{
	struct tls_cfg cfg = base_cfg(*state, NULL, 0);
	struct pair p;
	int c;

	cfg.min_version = TLS1_3_VERSION;
	pair_new(&p, &cfg, 0, TLS1_2_VERSION, NULL);
	assert_int_equal(handshake(p.s, &p.cl, &c), TLS_FAIL);
	assert_true(c <= 0);
	assert_string_not_equal(tls_conn_error(p.s), "-");
	pair_free(&p);

	/* And a 1.3 client still gets in. */
	pair_new(&p, &cfg, 0, 0, NULL);
	assert_int_equal(handshake(p.s, &p.cl, &c), TLS_OK);
	assert_string_equal(tls_conn_version(p.s), "TLSv1.3");
	pair_free(&p);
}

static void test_sni_selects_certificate(void **state)
{
	const struct env *e = *state;
	struct tls_sni_cfg sni[] = {
		{ S("*.example.org"),    S(e->pem[C_WILD]), S(e->key[C_WILD]), 1 },
		{ S("mail.example.net"), S(e->pem[C_MAIL]), S(e->key[C_MAIL]), 2 },
	};
	struct tls_cfg cfg = base_cfg(e, sni, 2);
	char cn[128], seen[300];

	sni_probe(&cfg, "mail.example.net", cn, sizeof(cn), seen, sizeof(seen));
	assert_string_equal(cn, "mail.example.net");
	assert_string_equal(seen, "mail.example.net");

	/* Case-insensitive; the requested spelling is what gets recorded. */
	sni_probe(&cfg, "MAIL.Example.NET", cn, sizeof(cn), seen, sizeof(seen));
	assert_string_equal(cn, "mail.example.net");
	assert_string_equal(seen, "MAIL.Example.NET");

	sni_probe(&cfg, "unknown.test", cn, sizeof(cn), seen, sizeof(seen));
	assert_string_equal(cn, "default.test");
	assert_string_equal(seen, "unknown.test");

	/* A longer name that merely ends with an entry is not a match. */
	sni_probe(&cfg, "xmail.example.net", cn, sizeof(cn), seen, sizeof(seen));
	assert_string_equal(cn, "default.test");

	sni_probe(&cfg, NULL, cn, sizeof(cn), seen, sizeof(seen));
	assert_string_equal(cn, "default.test");
	assert_string_equal(seen, "-");
}

static void test_sni_wildcard(void **state)
{
	const struct env *e = *state;
	struct tls_sni_cfg sni[] = {
		{ S("*.example.org"), S(e->pem[C_WILD]), S(e->key[C_WILD]), 1 },
	};
	struct tls_cfg cfg = base_cfg(e, sni, 1);
	char cn[128], seen[300];

	sni_probe(&cfg, "pop.example.org", cn, sizeof(cn), seen, sizeof(seen));
	assert_string_equal(cn, "*.example.org");
	sni_probe(&cfg, "POP.EXAMPLE.ORG", cn, sizeof(cn), seen, sizeof(seen));
	assert_string_equal(cn, "*.example.org");
	/* Exactly one label: neither the bare domain nor two labels. */
	sni_probe(&cfg, "example.org", cn, sizeof(cn), seen, sizeof(seen));
	assert_string_equal(cn, "default.test");
	sni_probe(&cfg, "a.b.example.org", cn, sizeof(cn), seen, sizeof(seen));
	assert_string_equal(cn, "default.test");
	sni_probe(&cfg, "pop.example.org.evil", cn, sizeof(cn), seen, sizeof(seen));
	assert_string_equal(cn, "default.test");
}

/* Exact entries win over a wildcard listed before them. */
static void test_sni_exact_beats_wildcard(void **state)
{
	const struct env *e = *state;
	struct tls_sni_cfg sni[] = {
		{ S("*.example.org"),   S(e->pem[C_WILD]),  S(e->key[C_WILD]),  1 },
		{ S("pop.example.org"), S(e->pem[C_OTHER]), S(e->key[C_OTHER]), 2 },
	};
	struct tls_cfg cfg = base_cfg(e, sni, 2);
	struct diag errs = { 0 }, warns = { 0 };
	struct tls_ctx *t;
	char cn[128], seen[300];

	sni_probe(&cfg, "pop.example.org", cn, sizeof(cn), seen, sizeof(seen));
	assert_string_equal(cn, "other.test");
	/* ... and the certificate not naming pop.example.org is worth a warning. */
	t = tls_ctx_new(&cfg, &errs, &warns);
	assert_non_null(t);
	assert_true(diag_has(&warns, "tls.sni[1].certificate: does not cover \"pop.example.org\""));
	tls_ctx_free(t);
	diag_free(&errs);
	diag_free(&warns);
}

/* The recorded name is escaped for logs. */
static void test_sni_recorded_escaped(void **state)
{
	struct tls_cfg cfg = base_cfg(*state, NULL, 0);
	char cn[128], seen[300];

	sni_probe(&cfg, "bad\x01name\"", cn, sizeof(cn), seen, sizeof(seen));
	assert_string_equal(cn, "default.test");
	assert_string_equal(seen, "bad\\x01name\\\"");
}

/* Expect tls_ctx_new to fail with an error containing needle. */
static void expect_error(const struct tls_cfg *cfg, const char *needle)
{
	struct diag errs = { 0 }, warns = { 0 };
	struct tls_ctx *t = tls_ctx_new(cfg, &errs, &warns);

	if (!diag_has(&errs, needle)) {
		fprintf(stderr, "  wanted an error with: %s\n", needle);
		diag_print("error", &errs);
	}
	assert_null(t);
	assert_true(diag_has(&errs, needle));
	diag_free(&errs);
	diag_free(&warns);
}

static void test_key_mismatch(void **state)
{
	const struct env *e = *state;
	struct tls_cfg cfg = base_cfg(e, NULL, 0);
	char want[400];

	cfg.key = S(e->key[C_OTHER]);
	snprintf(want, sizeof(want), "%s: tls.key: does not match %s", e->key[C_OTHER],
		 e->pem[C_DEFAULT]);
	expect_error(&cfg, want);
	expect_error(&cfg, "key values mismatch");
}

static void test_sni_key_mismatch_named(void **state)
{
	const struct env *e = *state;
	struct tls_sni_cfg sni[] = {
		{ S("mail.example.net"), S(e->pem[C_MAIL]), S(e->key[C_MAIL]), 1 },
		{ S("x.example.net"),    S(e->pem[C_MAIL]), S(e->key[C_WILD]), 2 },
	};
	struct tls_cfg cfg = base_cfg(e, sni, 2);

	expect_error(&cfg, "tls.sni[1].key: does not match");
}

static void test_missing_files(void **state)
{
	const struct env *e = *state;
	struct tls_cfg cfg = base_cfg(e, NULL, 0);
	struct tls_sni_cfg sni[] = {
		{ S("mail.example.net"), S("/nonexistent/mail.pem"), S(e->key[C_MAIL]), 1 },
	};

	cfg.certificate = S("/nonexistent/cert.pem");
	expect_error(&cfg, "/nonexistent/cert.pem: tls.certificate: No such file or directory");

	cfg = base_cfg(e, NULL, 0);
	cfg.key = S("/nonexistent/key.pem");
	expect_error(&cfg, "/nonexistent/key.pem: tls.key: No such file or directory");

	cfg = base_cfg(e, sni, 1);
	expect_error(&cfg, "/nonexistent/mail.pem: tls.sni[0].certificate: No such file");

	cfg = base_cfg(e, NULL, 0);
	cfg.certificate = NULL;
	expect_error(&cfg, "tls.certificate: missing");
}

/* A key file in place of the certificate and the other way round. */
static void test_not_pem(void **state)
{
	const struct env *e = *state;
	struct tls_cfg cfg = base_cfg(e, NULL, 0);

	cfg.certificate = S(e->key[C_DEFAULT]);
	expect_error(&cfg, "tls.certificate: no start line");
	cfg = base_cfg(e, NULL, 0);
	cfg.key = S("/dev/null");
	expect_error(&cfg, "/dev/null: tls.key: ");
}

/* A passphrase-protected key is refused without prompting. */
static void test_encrypted_key(void **state)
{
	const struct env *e = *state;
	struct tls_cfg cfg = base_cfg(e, NULL, 0);
	char path[128];
	EVP_PKEY *pk;
	FILE *f;

	f = fopen(e->key[C_DEFAULT], "r");
	assert_non_null(f);
	pk = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	assert_non_null(pk);
	snprintf(path, sizeof(path), "%s/enc.key", e->dir);
	f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(PEM_write_PrivateKey(f, pk, EVP_aes_128_cbc(),
					      (const unsigned char *)"secret", 6, NULL, NULL), 1);
	fclose(f);
	EVP_PKEY_free(pk);
	cfg.key = path;
	expect_error(&cfg, "tls.key: encrypted keys are not supported");
	unlink(path);
}

/* A chain file (leaf first, then more certificates) loads; the leaf is served. */
static void test_chain_file(void **state)
{
	const struct env *e = *state;
	struct tls_cfg cfg = base_cfg(e, NULL, 0);
	char path[128], buf[4096], cn[128];
	struct pair p;
	size_t i, n;
	FILE *out, *in;
	int c;

	snprintf(path, sizeof(path), "%s/chain.pem", e->dir);
	out = fopen(path, "w");
	assert_non_null(out);
	for (i = 0; i < 2; i++) {
		in = fopen(e->pem[i == 0 ? C_DEFAULT : C_MAIL], "r");
		assert_non_null(in);
		while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
			assert_int_equal(fwrite(buf, 1, n, out), n);
		fclose(in);
	}
	fclose(out);
	cfg.certificate = path;
	pair_new(&p, &cfg, 0, 0, NULL);
	assert_int_equal(handshake(p.s, &p.cl, &c), TLS_OK);
	peer_cn(&p.cl, cn, sizeof(cn));
	assert_string_equal(cn, "default.test");
	assert_int_equal(sk_X509_num(SSL_get_peer_cert_chain(p.cl.ssl)), 2);
	pair_free(&p);
	unlink(path);
}

/* A TLS 1.2 client asking to renegotiate does not get a new handshake. */
/* Decrypted records (PASS, AUTH lines) are wiped by OpenSSL, also after SNI picks a context. */
static void test_plaintext_cleansed(void **state)
{
	const struct env *e = *state;
	struct tls_sni_cfg sni[] = {
		{ S("mail.example.net"), S(e->pem[C_MAIL]), S(e->key[C_MAIL]), 1 },
	};
	struct tls_cfg cfg = base_cfg(e, sni, 1);
	struct pair p;
	char cn[128];
	int c;

	pair_new(&p, &cfg, 0, 0, "mail.example.net");
	assert_true(tls_conn_cleanses_plaintext(p.s));
	assert_int_equal(handshake(p.s, &p.cl, &c), TLS_OK);
	peer_cn(&p.cl, cn, sizeof(cn));
	assert_string_equal(cn, "mail.example.net");
	assert_true(tls_conn_cleanses_plaintext(p.s));
	pair_free(&p);
}

static void test_no_renegotiation(void **state)
{
	struct tls_cfg cfg = base_cfg(*state, NULL, 0);
	struct pair p;
	enum tls_status st;
	char buf[16];
	size_t n;
	int c, r;

	pair_new(&p, &cfg, 0, TLS1_2_VERSION, NULL);
	assert_int_equal(handshake(p.s, &p.cl, &c), TLS_OK);
	assert_int_equal(SSL_renegotiate(p.cl.ssl), 1);
	r = SSL_do_handshake(p.cl.ssl);
	assert_true(r <= 0);
	pump(p.s, &p.cl);
	/* The server answers with a no_renegotiation warning and carries on. */
	assert_int_equal(tls_conn_read(p.s, buf, sizeof(buf), &st), 0);
	assert_int_equal(st, TLS_WANT);
	assert_true(tls_conn_pending(p.s) > 0);
	pump(p.s, &p.cl);
	r = SSL_read_ex(p.cl.ssl, buf, sizeof(buf), &n);
	assert_int_equal(r, 0);
	assert_int_equal(SSL_get_error(p.cl.ssl, r), SSL_ERROR_SSL);
	assert_int_equal(ERR_GET_REASON(ERR_peek_last_error()), SSL_R_NO_RENEGOTIATION);
	ERR_clear_error();
	pair_free(&p);
}

static void test_expired_is_error(void **state)
{
	const struct env *e = *state;
	struct tls_cfg cfg = base_cfg(e, NULL, 0);
	struct tls_sni_cfg sni[] = {
		{ S("old.test"), S(e->pem[C_EXPIRED]), S(e->key[C_EXPIRED]), 1 },
	};
	char want[300];

	cfg.certificate = S(e->pem[C_EXPIRED]);
	cfg.key = S(e->key[C_EXPIRED]);
	snprintf(want, sizeof(want), "%s: tls.certificate: expired on 20", e->pem[C_EXPIRED]);
	expect_error(&cfg, want);

	cfg = base_cfg(e, sni, 1);
	expect_error(&cfg, "tls.sni[0].certificate: expired on ");
}

static void test_near_expiry_is_warning(void **state)
{
	const struct env *e = *state;
	struct tls_cfg cfg = base_cfg(e, NULL, 0);
	struct diag errs = { 0 }, warns = { 0 };
	struct tls_ctx *t;

	cfg.certificate = S(e->pem[C_SOON]);
	cfg.key = S(e->key[C_SOON]);
	t = tls_ctx_new(&cfg, &errs, &warns);
	assert_non_null(t);
	assert_int_equal(errs.n, 0);
	assert_int_equal(warns.n, 1);
	assert_true(diag_has(&warns, "tls.certificate: expires on 20"));
	assert_true(diag_has(&warns, "UTC"));
	tls_ctx_free(t);
	diag_free(&warns);

	/* A fresh certificate warns about nothing. */
	cfg = base_cfg(e, NULL, 0);
	t = tls_ctx_new(&cfg, &errs, &warns);
	assert_non_null(t);
	assert_int_equal(warns.n, 0);
	tls_ctx_free(t);
	diag_free(&errs);
	diag_free(&warns);
}

static void test_bad_settings(void **state)
{
	const struct env *e = *state;
	struct tls_cfg cfg = base_cfg(e, NULL, 0);
	struct tls_sni_cfg sni[] = {
		{ S("a.*.example.net"), S(e->pem[C_MAIL]), S(e->key[C_MAIL]), 1 },
	};

	cfg.ciphers = S("NOPE");
	expect_error(&cfg, "tls.ciphers: \"NOPE\": no cipher match");
	cfg = base_cfg(e, NULL, 0);
	cfg.ciphersuites = S("NOPE");
	expect_error(&cfg, "tls.ciphersuites: \"NOPE\": no cipher match");
	cfg = base_cfg(e, NULL, 0);
	cfg.min_version = TLS1_1_VERSION;
	expect_error(&cfg, "tls.min_version: only TLS 1.2 or TLS 1.3");
	cfg = base_cfg(e, sni, 1);
	expect_error(&cfg, "tls.sni[0].name: \"a.*.example.net\"");

	/* Every problem is reported at once, not just the first. */
	cfg = base_cfg(e, NULL, 0);
	cfg.ciphers = S("NOPE");
	cfg.key = S(e->key[C_OTHER]);
	expect_error(&cfg, "tls.ciphers: \"NOPE\"");
	expect_error(&cfg, "tls.key: does not match");
}

static void test_close_notify_reaches_client(void **state)
{
	struct tls_cfg cfg = base_cfg(*state, NULL, 0);
	struct pair p;
	char buf[16];
	size_t got = 0;
	int c;

	pair_new(&p, &cfg, 0, 0, NULL);
	assert_int_equal(handshake(p.s, &p.cl, &c), TLS_OK);
	assert_int_equal(tls_conn_write(p.s, "+OK bye\r\n", 9), 0);
	tls_conn_close_notify(p.s);
	tls_conn_close_notify(p.s);          /* once only */
	assert_true(tls_conn_pending(p.s) > 0);
	pump(p.s, &p.cl);
	assert_int_equal(SSL_read_ex(p.cl.ssl, buf, sizeof(buf), &got), 1);
	assert_int_equal(got, 9);
	assert_int_equal(SSL_read_ex(p.cl.ssl, buf, sizeof(buf), &got), 0);
	assert_int_equal(SSL_get_error(p.cl.ssl, 0), SSL_ERROR_ZERO_RETURN);
	/* No writing after our own close_notify. */
	assert_int_equal(tls_conn_write(p.s, "x", 1), -1);
	assert_string_not_equal(tls_conn_error(p.s), "-");
	pair_free(&p);
}

static void test_client_close_notify(void **state)
{
	struct tls_cfg cfg = base_cfg(*state, NULL, 0);
	struct pair p;
	enum tls_status st = TLS_OK;
	char buf[16];
	size_t n;
	int c;

	pair_new(&p, &cfg, 0, 0, NULL);
	assert_int_equal(handshake(p.s, &p.cl, &c), TLS_OK);
	assert_int_equal(SSL_write_ex(p.cl.ssl, "QUIT\r\n", 6, &n), 1);
	SSL_shutdown(p.cl.ssl);
	pump(p.s, &p.cl);
	assert_int_equal(tls_conn_read(p.s, buf, sizeof(buf), &st), 6);
	assert_int_equal(st, TLS_OK);
	assert_int_equal(tls_conn_read(p.s, buf, sizeof(buf), &st), 0);
	assert_int_equal(st, TLS_CLOSED);
	pair_free(&p);
}

static void test_garbage_fails(void **state)
{
	static const char http[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
	static const char pop[] = "USER bob\r\n";
	struct tls_cfg cfg = base_cfg(*state, NULL, 0);
	struct pair p;
	enum tls_status st;
	char buf[16];

	pair_new(&p, &cfg, 0, 0, NULL);
	assert_int_equal(tls_conn_feed(p.s, http, sizeof(http) - 1), 0);
	assert_int_equal(tls_conn_handshake(p.s), TLS_FAIL);
	assert_string_not_equal(tls_conn_error(p.s), "-");
	tls_conn_free(p.s);

	/* Plain text where a record was expected, through read as well. */
	p.s = tls_conn_new(p.t);
	assert_non_null(p.s);
	assert_int_equal(tls_conn_feed(p.s, pop, sizeof(pop) - 1), 0);
	assert_int_equal(tls_conn_read(p.s, buf, sizeof(buf), &st), 0);
	assert_int_equal(st, TLS_FAIL);
	assert_string_not_equal(tls_conn_error(p.s), "-");
	pair_free(&p);
}

/* Garbage after a good handshake (a corrupted record) also fails. */
static void test_corrupt_record_fails(void **state)
{
	struct tls_cfg cfg = base_cfg(*state, NULL, 0);
	struct pair p;
	enum tls_status st;
	unsigned char rec[256];
	char buf[64];
	size_t n;
	int c, len;

	pair_new(&p, &cfg, 0, 0, NULL);
	assert_int_equal(handshake(p.s, &p.cl, &c), TLS_OK);
	assert_int_equal(SSL_write_ex(p.cl.ssl, "NOOP\r\n", 6, &n), 1);
	len = BIO_read(p.cl.out, rec, sizeof(rec));
	assert_true(len > 10);
	rec[len - 1] ^= 0x55;
	assert_int_equal(tls_conn_feed(p.s, (const char *)rec, (size_t)len), 0);
	assert_int_equal(tls_conn_read(p.s, buf, sizeof(buf), &st), 0);
	assert_int_equal(st, TLS_FAIL);
	assert_non_null(strstr(tls_conn_error(p.s), "bad record mac"));
	pair_free(&p);
}

/* One connection's failure does not leak into the next's error text. */
static void test_errors_per_connection(void **state)
{
	struct tls_cfg cfg = base_cfg(*state, NULL, 0);
	struct tls_conn *bad;
	struct pair p;
	int c;

	pair_new(&p, &cfg, 0, 0, NULL);
	bad = tls_conn_new(p.t);
	assert_non_null(bad);
	assert_int_equal(tls_conn_feed(bad, "\x16\x03\x01\x00\x04\x01\x00\x00\x00", 9), 0);
	assert_int_equal(tls_conn_handshake(bad), TLS_FAIL);
	/*
	 * Stale errors left on the thread's queue by someone else must not turn
	 * a plain "want more input" into a failure.
	 */
	ERR_raise(ERR_LIB_SSL, SSL_R_BAD_LENGTH);
	assert_int_equal(tls_conn_handshake(p.s), TLS_WANT);
	ERR_raise(ERR_LIB_SSL, SSL_R_BAD_LENGTH);
	assert_int_equal(handshake(p.s, &p.cl, &c), TLS_OK);
	assert_string_equal(tls_conn_error(p.s), "-");
	assert_int_equal(ERR_peek_error(), 0);
	tls_conn_free(bad);
	pair_free(&p);
}

static void test_describe(void **state)
{
	const struct env *e = *state;
	struct tls_sni_cfg sni[] = {
		{ S("mail.example.net"), S(e->pem[C_MAIL]), S(e->key[C_MAIL]), 1 },
	};
	struct tls_cfg cfg = base_cfg(e, sni, 1);
	struct diag errs = { 0 }, warns = { 0 };
	struct tls_ctx *t = tls_ctx_new(&cfg, &errs, &warns);
	char *out = NULL;
	size_t len = 0;
	FILE *f;

	assert_non_null(t);
	f = open_memstream(&out, &len);
	assert_non_null(f);
	tls_ctx_describe(t, f);
	fclose(f);
	assert_non_null(strstr(out, "tls default cn=default.test san=default.test,www.default.test not_after=\"20"));
	assert_non_null(strstr(out, "\ntls sni[0] name=mail.example.net cn=mail.example.net san=mail.example.net not_after="));
	free(out);
	tls_ctx_free(t);
	diag_free(&errs);
	diag_free(&warns);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_handshake_tls13),
		cmocka_unit_test(test_handshake_tls12),
		cmocka_unit_test(test_small_data_both_ways),
		cmocka_unit_test(test_one_megabyte_each_way),
		cmocka_unit_test(test_tls11_client_refused),
		cmocka_unit_test(test_seclevel_cannot_be_lowered),
		cmocka_unit_test(test_tls13_only_refuses_tls12),
		cmocka_unit_test(test_sni_selects_certificate),
		cmocka_unit_test(test_sni_wildcard),
		cmocka_unit_test(test_sni_exact_beats_wildcard),
		cmocka_unit_test(test_sni_recorded_escaped),
		cmocka_unit_test(test_key_mismatch),
		cmocka_unit_test(test_sni_key_mismatch_named),
		cmocka_unit_test(test_missing_files),
		cmocka_unit_test(test_not_pem),
		cmocka_unit_test(test_encrypted_key),
		cmocka_unit_test(test_chain_file),
		cmocka_unit_test(test_plaintext_cleansed),
		cmocka_unit_test(test_no_renegotiation),
		cmocka_unit_test(test_expired_is_error),
		cmocka_unit_test(test_near_expiry_is_warning),
		cmocka_unit_test(test_bad_settings),
		cmocka_unit_test(test_close_notify_reaches_client),
		cmocka_unit_test(test_client_close_notify),
		cmocka_unit_test(test_garbage_fails),
		cmocka_unit_test(test_corrupt_record_fails),
		cmocka_unit_test(test_errors_per_connection),
		cmocka_unit_test(test_describe),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
