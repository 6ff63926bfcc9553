/*
 * config: turns the libconfig file into a struct config, driven by one static
 * table per group. Owns every string it copies out; never opens the users file
 * or a maildir, never skips a bad setting and never exits the process.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <syslog.h>           /* LOG_MAIL etc.: log.facility */

/* PATH_MAX only: <limits.h> would also bring glibc's LOGIN_NAME_MAX, which
 * clashes with server/limits.h. */
#include <linux/limits.h>
#include <libconfig.h>
#include <openssl/ssl.h>      /* TLS1_2_VERSION, TLS1_3_VERSION */

#include "maildrop/maildrop.h"   /* maildrop_template_check: maildrop.path */
#include "server/config.h"
#include "server/limits.h"
#include "server/log.h"       /* enum log_level: log.level */

/*
 * What a table entry holds and how it is stored at base + off:
 *   F_UINT    libconfig int or int64 in [min, max]; stored in an unsigned field of size sz
 *   F_BOOL    true or false; stored as 1 or 0 in an int; def is the default
 *   F_MS      seconds as float or int; stored as milliseconds in a uint32_t;
 *             min, max and def are in milliseconds
 *   F_ENUM    one of the strings in names[]; stored as its value in an enum field
 *   F_STRING  copied; no control characters, not empty; check() may refuse it
 *   F_PATH    as F_STRING, then resolved against the config file's folder
 *   F_GROUP   a nested group whose table (sub) fills the same base
 *   F_LIST    a list, allocated as an array described by list: of groups
 *             (list->elem), or of strings (list->scalar; a libconfig array
 *             [ ... ] is accepted too)
 */
enum ftype { F_UINT, F_BOOL, F_MS, F_ENUM, F_STRING, F_PATH, F_GROUP, F_LIST };

struct ctx;
struct group;

struct enum_name {
	const char *name;
	int         value;
};

struct list {
	const struct group *elem;       /* table for every element, or NULL: */
	/* strings: fill dst from v (already free of control characters); returns
	 * NULL, or what is wrong (static or written into buf). Owns nothing. */
	const char *(*scalar)(const char *v, void *dst, char *buf, size_t len);
	size_t elem_size;
	size_t arr_off;                 /* where the array pointer goes */
	size_t count_off;               /* where the element count goes (a size_t) */
	size_t line_off;                /* an int for each element's line, or NO_OFF */
	size_t min_count;
	/* Whole-list rule (duplicates), called after the elements; clean is 1 when
	 * none of them had a problem, else it must skip what was not stored. */
	void (*check)(struct ctx *, const config_setting_t *s, const char *path,
	    void *arr, size_t n, int clean);
};

struct field {
	const char *name;
	enum ftype  type;
	int         required;
	long long   min, max, def;      /* F_UINT, F_MS; def also for F_BOOL, F_ENUM */
	size_t      off, sz;            /* destination; unused for F_GROUP */
	const struct enum_name *names;  /* F_ENUM, ended by a NULL name */
	const struct group     *sub;    /* F_GROUP */
	const struct list      *list;   /* F_LIST */
	/* F_STRING, F_PATH: extra rule; returns NULL or what is wrong. */
	const char *(*check)(const char *value);
	int         lower;              /* F_STRING: stored with A-Z folded to a-z */
};

struct group {
	const struct field *fields;
	size_t nfields;
	/* Called first when the group is present (to record that and its line). */
	void (*begin)(struct ctx *, const config_setting_t *s, void *base);
	/* Cross-field rule, called after the fields; clean is 1 when none of them
	 * (nested ones included) had a problem. A field with a problem keeps its
	 * default, so a rule that only compares stored values may run anyway. */
	void (*check)(struct ctx *, const config_setting_t *s, const char *prefix,
	    void *base, int clean);
};

struct ctx {
	const char  *file;      /* the config file as given, for messages */
	const char  *dir;       /* absolute folder of the config file */
	struct diag *d;
	size_t       errors;
};

#define NO_OFF     ((size_t)-1)
#define AT(T, m)   offsetof(T, m), sizeof(((T *)0)->m)
#define NFIELDS(a) (sizeof(a) / sizeof((a)[0]))

/* --- reporting ---------------------------------------------------------- */

/*
 * Add "FILE:LINE: PATH: text" for setting s (or "FILE: PATH: text" when s is
 * NULL or has no line). PATH is prefix.name; both come from our tables or from
 * libconfig's setting names, so neither needs escaping.
 */
static void __attribute__((format(printf, 5, 6)))
report(struct ctx *c, const config_setting_t *s, const char *prefix,
    const char *name, const char *fmt, ...)
{
	const char *file = c->file, *dot = (*prefix && *name) ? "." : "";
	unsigned line = 0;
	char *text;
	va_list ap;

	c->errors++;
	if (s != NULL) {
		line = config_setting_source_line(s);
		if (config_setting_source_file(s) != NULL)
			file = config_setting_source_file(s);
	}
	va_start(ap, fmt);
	if (vasprintf(&text, fmt, ap) < 0) {
		va_end(ap);
		c->d->oom = 1;
		return;
	}
	va_end(ap);
	if (line > 0)
		diag_add(c->d, "%s:%u: %s%s%s: %s", file, line, prefix, dot, name, text);
	else
		diag_add(c->d, "%s: %s%s%s: %s", file, prefix, dot, name, text);
	free(text);
}

static const char *
type_name(int type)
{
	switch (type) {
	case CONFIG_TYPE_GROUP:  return "a group";
	case CONFIG_TYPE_INT:
	case CONFIG_TYPE_INT64:  return "an integer";
	case CONFIG_TYPE_FLOAT:  return "a float";
	case CONFIG_TYPE_STRING: return "a string";
	case CONFIG_TYPE_BOOL:   return "a boolean";
	case CONFIG_TYPE_ARRAY:  return "an array";
	case CONFIG_TYPE_LIST:   return "a list";
	default:                 return "nothing";
	}
}

/* --- storing ------------------------------------------------------------ */

static void
store_uint(void *base, const struct field *f, uint64_t v)
{
	char *dst = (char *)base + f->off;

	switch (f->sz) {
	case 1: { uint8_t  x = (uint8_t)v;  memcpy(dst, &x, 1); break; }
	case 2: { uint16_t x = (uint16_t)v; memcpy(dst, &x, 2); break; }
	case 4: { uint32_t x = (uint32_t)v; memcpy(dst, &x, 4); break; }
	case 8: memcpy(dst, &v, 8); break;
	default: break;         /* not reachable with the AT() macro */
	}
}

static void
store_ptr(void *base, size_t off, void *p)
{
	memcpy((char *)base + off, &p, sizeof(p));
}

static void
set_defaults(const struct group *g, void *base)
{
	const struct field *f;
	size_t i;

	for (i = 0; i < g->nfields; i++) {
		f = &g->fields[i];
		if (f->type == F_UINT || f->type == F_BOOL || f->type == F_MS
		    || f->type == F_ENUM)
			store_uint(base, f, (uint64_t)f->def);
		else if (f->type == F_GROUP)
			set_defaults(f->sub, base);
	}
}

/* --- value checks ------------------------------------------------------- */

/* NULL when s is a usable path or template; otherwise what is wrong. */
static const char *
bad_path_text(const char *s)
{
	const unsigned char *p;

	if (*s == '\0')
		return "must not be empty";
	for (p = (const unsigned char *)s; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			return "must not contain control characters";
	if (strlen(s) >= PATH_MAX)
		return "is too long";
	return NULL;
}

/* Parse a numeric address into buf (16 bytes); returns its family or -1. */
static int
parse_address(const char *s, unsigned char buf[16])
{
	if (inet_pton(AF_INET, s, buf) == 1)
		return AF_INET;
	if (inet_pton(AF_INET6, s, buf) == 1)
		return AF_INET6;
	return -1;
}

static const char *
check_address(const char *s)
{
	unsigned char buf[16];

	if (parse_address(s, buf) < 0)
		return "must be a numeric IPv4 or IPv6 address (no brackets, no names)";
	return NULL;
}

/*
 * An address block "ADDR/PREFIX", or a bare ADDR meaning /32 or /128, into the
 * struct cidr at dst. Refuses a block whose address has bits set beyond the
 * prefix: "10.1.2.3/8" is more likely a typo than a wish for 10.0.0.0/8.
 */
static const char *
parse_cidr(const char *v, void *dst, char *buf, size_t len)
{
	struct cidr *out = dst;
	unsigned char a[16], net[16], mask;
	char addr[INET6_ADDRSTRLEN], text[INET6_ADDRSTRLEN];
	const char *slash = strchr(v, '/'), *p;
	size_t alen = slash != NULL ? (size_t)(slash - v) : strlen(v), k, nbytes;
	unsigned prefix, max;
	int family, host = 0;

	if (alen >= sizeof(addr))
		return "must be an IPv4 or IPv6 address, optionally with /prefix (no names)";
	memcpy(addr, v, alen);
	addr[alen] = '\0';
	family = parse_address(addr, a);
	if (family < 0)
		return "must be an IPv4 or IPv6 address, optionally with /prefix (no names)";
	max = family == AF_INET ? 32 : 128;
	prefix = max;
	if (slash != NULL) {
		/* 1 to 3 digits, nothing else: no sign, no space, no overflow. */
		prefix = 0;
		for (p = slash + 1; *p >= '0' && *p <= '9' && p - slash <= 3; p++)
			prefix = prefix * 10 + (unsigned)(*p - '0');
		if (p == slash + 1 || *p != '\0' || prefix > max) {
			snprintf(buf, len, "the prefix after / must be a number from 0 to %u", max);
			return buf;
		}
	}
	nbytes = max / 8;
	for (k = 0; k < nbytes; k++) {
		if (prefix >= (k + 1) * 8)
			mask = 0xff;
		else if (prefix <= k * 8)
			mask = 0;
		else
			mask = (unsigned char)(0xff << (8 - (prefix - k * 8)));
		net[k] = a[k] & mask;
		host |= a[k] != net[k];
	}
	if (host) {
		if (inet_ntop(family, net, text, sizeof(text)) == NULL)
			text[0] = '\0';
		snprintf(buf, len, "has address bits set beyond the /%u prefix (the block is %s/%u)",
		    prefix, text, prefix);
		return buf;
	}
	out->family = family;
	memcpy(out->addr, a, nbytes);
	out->prefix = (uint8_t)prefix;
	return NULL;
}

/*
 * NULL when s is a DNS name: dot-separated labels of ASCII letters, digits
 * and '-' (not first or last), each 1..63 octets, 253 in all; with wildcard,
 * a leading "*." is allowed too. Internationalised names go in as xn--.
 */
static const char *
bad_dns_name(const char *s, int wildcard)
{
	const char *p = s, *label;

	if (strlen(s) > 253)
		return "is longer than 253 octets";
	if (wildcard && p[0] == '*' && p[1] == '.')
		p += 2;
	for (;;) {
		label = p;
		while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
		    || (*p >= '0' && *p <= '9') || *p == '-')
			p++;
		if (*p != '\0' && *p != '.')
			return wildcard
			    ? "must be a host name: letters, digits, '-' and '.', "
			      "optionally after a leading \"*.\""
			    : "must be a domain name: letters, digits, '-' and '.'";
		if (p == label)
			return "has an empty label (a leading, trailing or doubled '.')";
		if (p - label > 63)
			return "has a label longer than 63 octets";
		if (label[0] == '-' || p[-1] == '-')
			return "has a label that starts or ends with '-'";
		if (*p == '\0')
			return NULL;
		p++;
	}
}

static const char *
check_domain(const char *s)
{
	return bad_dns_name(s, 0);
}

static const char *
check_sni_name(const char *s)
{
	return bad_dns_name(s, 1);
}

/* A login name as policy.users names it; the users file has stricter rules. */
static const char *
check_user(const char *s)
{
	if (strlen(s) > LOGIN_MAX)
		return "must be at most 255 octets";
	return NULL;
}

/*
 * A user or group name for process.user and process.group: 1..64 octets of
 * letters, digits, '.', '_' and '-' (what useradd and groupadd accept
 * everywhere), not starting with '-'. Whether it exists is for the privilege
 * drop at startup to say: the config may be checked on another host.
 */
#define ACCOUNT_NAME_MAX 64
static const char *
check_account(const char *s)
{
	const char *p;

	if (s[0] == '-')
		return "must not start with '-'";
	if (strlen(s) > ACCOUNT_NAME_MAX)
		return "must be at most 64 characters";
	for (p = s; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
		    || (*p >= '0' && *p <= '9') || *p == '.' || *p == '_' || *p == '-'))
			return "must be a name of letters, digits, '.', '_' and '-'";
	return NULL;
}

/* A relative path joined to dir; NULL on ENOMEM or when the result is too long. */
static char *
resolve(const char *dir, const char *path, const char **why)
{
	size_t len;
	char *out;
	int n;

	*why = "out of memory";
	if (path[0] == '/')
		return strdup(path);
	len = strlen(dir) + 1 + strlen(path);
	if (len >= PATH_MAX) {
		*why = "is too long once joined to the config folder";
		return NULL;
	}
	out = malloc(len + 1);
	if (out == NULL)
		return NULL;
	n = snprintf(out, len + 1, "%s/%s", dir, path);
	if (n < 0 || (size_t)n != len) {
		free(out);
		*why = "could not be joined to the config folder";
		return NULL;
	}
	return out;
}

/* --- the walker --------------------------------------------------------- */

static void parse_group(struct ctx *c, const config_setting_t *s,
    const char *prefix, const struct group *g, void *base);

static void
join_prefix(char *buf, size_t len, const char *prefix, const char *name)
{
	int n;

	/* Table names only, so this always fits; truncation just shortens a message. */
	n = snprintf(buf, len, "%s%s%s", prefix, *prefix ? "." : "", name);
	if (n < 0 || (size_t)n >= len)
		buf[len - 1] = '\0';
}

/*
 * One string element of a scalar list. libconfig gives a string element the
 * line of the token after it (it looks ahead for "a" "b" concatenation), so
 * the last element of a list spread over lines is reported at the ")" line;
 * the [index] in the path says which one it is.
 */
static void
parse_scalar(struct ctx *c, const config_setting_t *e, const char *elem,
    const struct list *l, void *eb)
{
	const char *v, *why;
	char buf[160];

	if (config_setting_type(e) != CONFIG_TYPE_STRING) {
		report(c, e, elem, "", "must be a string, not %s",
		    type_name(config_setting_type(e)));
		return;
	}
	v = config_setting_get_string(e);
	why = bad_path_text(v);
	if (why == NULL)
		why = l->scalar(v, eb, buf, sizeof(buf));
	if (why != NULL)
		report(c, e, elem, "", "%s", why);
}

static void
parse_list(struct ctx *c, const config_setting_t *s, const char *prefix,
    const struct field *f, void *base)
{
	const struct list *l = f->list;
	size_t i, n, before = c->errors;
	char path[128], elem[160];
	char *arr;
	int k;

	join_prefix(path, sizeof(path), prefix, f->name);
	n = (size_t)config_setting_length(s);
	if (n < l->min_count) {
		report(c, s, prefix, f->name, "needs at least %zu entr%s", l->min_count,
		    l->min_count == 1 ? "y" : "ies");
		return;
	}
	arr = calloc(n ? n : 1, l->elem_size);
	if (arr == NULL) {
		report(c, s, prefix, f->name, "out of memory");
		return;
	}
	/* Owned by the config from here on, so config_free covers every exit. */
	store_ptr(base, l->arr_off, arr);
	memcpy((char *)base + l->count_off, &n, sizeof(n));

	for (i = 0; i < n; i++) {
		const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
		void *eb = arr + i * l->elem_size;

		k = snprintf(elem, sizeof(elem), "%s[%zu]", path, i);
		if (k < 0 || (size_t)k >= sizeof(elem))
			elem[sizeof(elem) - 1] = '\0';
		if (l->line_off != NO_OFF) {
			int line = (int)config_setting_source_line(e);
			memcpy((char *)eb + l->line_off, &line, sizeof(line));
		}
		if (l->elem == NULL) {
			parse_scalar(c, e, elem, l, eb);
			continue;
		}
		if (!config_setting_is_group(e)) {
			report(c, e, elem, "", "must be a group { ... }, not %s",
			    type_name(config_setting_type(e)));
			continue;
		}
		set_defaults(l->elem, eb);
		parse_group(c, e, elem, l->elem, eb);
	}
	if (l->check != NULL)
		l->check(c, s, path, arr, n, c->errors == before);
}

/* "\"a\"", "\"a\" or \"b\"", "\"a\", \"b\" or \"c\"" from a table's names. */
static void
enum_choices(char *buf, size_t len, const struct enum_name *names)
{
	size_t used = 0, i;
	int n;

	buf[0] = '\0';
	for (i = 0; names[i].name != NULL && used < len; i++) {
		n = snprintf(buf + used, len - used, "%s\"%s\"",
		    i == 0 ? "" : names[i + 1].name ? ", " : " or ", names[i].name);
		if (n < 0)
			break;
		used += (size_t)n;
	}
	/* Table names only; on truncation snprintf has already ended the string. */
}

static void
parse_string(struct ctx *c, const config_setting_t *s, const char *prefix,
    const struct field *f, void *base)
{
	const char *v = config_setting_get_string(s), *why;
	char *copy, *p;

	why = bad_path_text(v);
	if (why == NULL && f->check != NULL)
		why = f->check(v);
	if (why != NULL) {
		report(c, s, prefix, f->name, "%s", why);
		return;
	}
	if (f->type == F_PATH)
		copy = resolve(c->dir, v, &why);
	else
		copy = strdup(v);
	if (copy == NULL) {
		report(c, s, prefix, f->name, "%s", why ? why : "out of memory");
		return;
	}
	if (f->lower)
		for (p = copy; *p; p++)
			if (*p >= 'A' && *p <= 'Z')
				*p = (char)(*p - 'A' + 'a');
	store_ptr(base, f->off, copy);
}

static void
parse_field(struct ctx *c, const config_setting_t *s, const char *prefix,
    const struct field *f, void *base)
{
	int type = config_setting_type(s);
	long long v;
	double sec;
	size_t i;
	char sub[128], choices[192];

	switch (f->type) {
	case F_UINT:
		if (type != CONFIG_TYPE_INT && type != CONFIG_TYPE_INT64) {
			report(c, s, prefix, f->name, "must be an integer, not %s", type_name(type));
			return;
		}
		/* libconfig 1.5 wraps plain literals above 2^31; most land out of range. */
		v = config_setting_get_int64(s);
		if (v < f->min || v > f->max) {
			report(c, s, prefix, f->name, "must be between %lld and %lld",
			    f->min, f->max);
			return;
		}
		store_uint(base, f, (uint64_t)v);
		return;

	case F_BOOL:
		if (type != CONFIG_TYPE_BOOL) {
			report(c, s, prefix, f->name, "must be true or false, not %s",
			    type_name(type));
			return;
		}
		store_uint(base, f, config_setting_get_bool(s) ? 1 : 0);
		return;

	case F_MS:
		if (type == CONFIG_TYPE_FLOAT)
			sec = config_setting_get_float(s);
		else if (type == CONFIG_TYPE_INT || type == CONFIG_TYPE_INT64)
			sec = (double)config_setting_get_int64(s);
		else {
			report(c, s, prefix, f->name, "must be a number of seconds, not %s",
			    type_name(type));
			return;
		}
		/* Written so that NaN fails too. */
		if (!(sec * 1000.0 >= (double)f->min && sec * 1000.0 <= (double)f->max)) {
			report(c, s, prefix, f->name, "must be between %g and %g seconds",
			    (double)f->min / 1000.0, (double)f->max / 1000.0);
			return;
		}
		store_uint(base, f, (uint64_t)(sec * 1000.0 + 0.5));   /* >= 0: rounds */
		return;

	case F_ENUM:
		if (type != CONFIG_TYPE_STRING) {
			report(c, s, prefix, f->name, "must be a string, not %s", type_name(type));
			return;
		}
		for (i = 0; f->names[i].name != NULL; i++) {
			if (strcmp(f->names[i].name, config_setting_get_string(s)) == 0) {
				store_uint(base, f, (uint64_t)f->names[i].value);
				return;
			}
		}
		enum_choices(choices, sizeof(choices), f->names);
		report(c, s, prefix, f->name, "must be %s", choices);
		return;

	case F_STRING:
	case F_PATH:
		if (type != CONFIG_TYPE_STRING) {
			report(c, s, prefix, f->name, "must be a string, not %s", type_name(type));
			return;
		}
		parse_string(c, s, prefix, f, base);
		return;

	case F_GROUP:
		if (type != CONFIG_TYPE_GROUP) {
			report(c, s, prefix, f->name, "must be a group { ... }, not %s",
			    type_name(type));
			return;
		}
		join_prefix(sub, sizeof(sub), prefix, f->name);
		parse_group(c, s, sub, f->sub, base);
		return;

	case F_LIST:
		if (f->list->elem == NULL) {
			if (type != CONFIG_TYPE_LIST && type != CONFIG_TYPE_ARRAY) {
				report(c, s, prefix, f->name,
				    "must be a list of strings ( \"...\", ... ), not %s",
				    type_name(type));
				return;
			}
		} else if (type != CONFIG_TYPE_LIST) {
			report(c, s, prefix, f->name, "must be a list of groups ( { ... } ), not %s",
			    type_name(type));
			return;
		}
		parse_list(c, s, prefix, f, base);
		return;
	}
}

/*
 * Check every member of group s against table g (in file order, so messages
 * come out sorted by line), then report the required fields that are absent
 * at the group's own line.
 */
static void
parse_group(struct ctx *c, const config_setting_t *s, const char *prefix,
    const struct group *g, void *base)
{
	size_t before = c->errors, i, j;
	int n = config_setting_length(s), k;

	if (g->begin != NULL)
		g->begin(c, s, base);
	for (k = 0; k < n; k++) {
		const config_setting_t *m = config_setting_get_elem(s, (unsigned)k);
		const char *name = config_setting_name(m);

		for (j = 0; j < g->nfields; j++)
			if (strcmp(g->fields[j].name, name) == 0)
				break;
		if (j == g->nfields) {
			report(c, m, prefix, name, "unknown setting");
			continue;
		}
		parse_field(c, m, prefix, &g->fields[j], base);
	}
	for (i = 0; i < g->nfields; i++) {
		if (g->fields[i].required
		    && config_setting_get_member(s, g->fields[i].name) == NULL)
			report(c, s, prefix, g->fields[i].name, "required setting is missing");
	}
	if (g->check != NULL)
		g->check(c, s, prefix, base, c->errors == before);
}

/* --- the tables --------------------------------------------------------- */

/* Defaults of the settings added with TLS and the retention policy; they
 * belong with the others in server/limits.h and give way to it there. */
#ifndef TLS_HANDSHAKE_TIMEOUT_DEFAULT
#define TLS_HANDSHAKE_TIMEOUT_DEFAULT 30      /* seconds for a TLS handshake */
#endif
#ifndef EXPIRE_INTERVAL_DEFAULT
#define EXPIRE_INTERVAL_DEFAULT       3600    /* seconds between expiry sweeps */
#endif
/* Likewise for the operations settings (process, log, limits.auth_backoff_*). */
#ifndef SHUTDOWN_GRACE_DEFAULT
#define SHUTDOWN_GRACE_DEFAULT        10      /* seconds sessions may finish after SIGTERM */
#endif
#ifndef AUTH_BACKOFF_BASE_DEFAULT_MS
#define AUTH_BACKOFF_BASE_DEFAULT_MS  1000    /* first extra delay per address, doubled */
#endif
#ifndef AUTH_BACKOFF_MAX_DEFAULT_MS
#define AUTH_BACKOFF_MAX_DEFAULT_MS   60000   /* its cap */
#endif
#ifndef AUTH_BACKOFF_FORGET_DEFAULT
#define AUTH_BACKOFF_FORGET_DEFAULT   900     /* seconds without a failure to start over */
#endif

static int
setting_line(const config_setting_t *s)
{
	return (int)config_setting_source_line(s);
}

static void
check_listen(struct ctx *c, const config_setting_t *s, const char *path,
    void *arr, size_t n, int clean)
{
	const struct listen_cfg *l = arr;
	unsigned char a[16], b[16];
	size_t i, j;
	int fa, fb;
	char elem[32];

	(void)path;
	if (!clean)
		return;
	for (i = 1; i < n; i++) {
		fa = parse_address(l[i].address, a);
		for (j = 0; j < i; j++) {
			fb = parse_address(l[j].address, b);
			if (fa != fb || l[i].port != l[j].port
			    || memcmp(a, b, fa == AF_INET ? 4 : 16) != 0)
				continue;
			snprintf(elem, sizeof(elem), "listen[%zu]", i);
			report(c, config_setting_get_elem(s, (unsigned)i), elem, "",
			    "%s port %u is already in listen[%zu] (line %d)",
			    l[i].address, (unsigned)l[i].port, j, l[j].line);
			break;
		}
	}
}

/*
 * No two elements of a list of groups may share the string at str_off (key
 * in the file); fold compares without case. Elements whose string was not
 * stored (a problem already reported) are skipped. Reported at the later one.
 */
static void
check_unique(struct ctx *c, const config_setting_t *s, const char *path,
    const char *key, const char *arr, size_t n, size_t size, size_t str_off,
    size_t line_off, int fold)
{
	const config_setting_t *e;
	char *a, *b, elem[160];
	size_t i, j;
	int line, k;

	for (i = 1; i < n; i++) {
		memcpy(&a, arr + i * size + str_off, sizeof(a));
		for (j = 0; a != NULL && j < i; j++) {
			memcpy(&b, arr + j * size + str_off, sizeof(b));
			if (b == NULL || (fold ? strcasecmp(a, b) : strcmp(a, b)) != 0)
				continue;
			memcpy(&line, arr + j * size + line_off, sizeof(line));
			k = snprintf(elem, sizeof(elem), "%s[%zu]", path, i);
			if (k < 0 || (size_t)k >= sizeof(elem))
				elem[sizeof(elem) - 1] = '\0';
			e = config_setting_get_elem(s, (unsigned)i);
			/* As written, not as folded, so the admin can find it. */
			report(c, config_setting_get_member(e, key), elem, key,
			    "\"%s\" is already in %s[%zu] (line %d)",
			    config_setting_get_string(config_setting_get_member(e, key)),
			    path, j, line);
			break;
		}
	}
}

static void
check_sni(struct ctx *c, const config_setting_t *s, const char *path,
    void *arr, size_t n, int clean)
{
	(void)clean;
	check_unique(c, s, path, "name", arr, n, sizeof(struct tls_sni_cfg),
	    offsetof(struct tls_sni_cfg, name), offsetof(struct tls_sni_cfg, line), 1);
}

static void
check_domains(struct ctx *c, const config_setting_t *s, const char *path,
    void *arr, size_t n, int clean)
{
	(void)clean;
	check_unique(c, s, path, "domain", arr, n, sizeof(struct policy_rule_cfg),
	    offsetof(struct policy_rule_cfg, match), offsetof(struct policy_rule_cfg, line), 1);
}

static void
check_users(struct ctx *c, const config_setting_t *s, const char *path,
    void *arr, size_t n, int clean)
{
	(void)clean;
	check_unique(c, s, path, "user", arr, n, sizeof(struct policy_rule_cfg),
	    offsetof(struct policy_rule_cfg, match), offsetof(struct policy_rule_cfg, line), 0);
}

/* One policy level (group s at prefix): keep_days means nothing for delete. */
static void
check_rule(struct ctx *c, const config_setting_t *s, const char *prefix,
    const struct policy_rule_cfg *r)
{
	if (r->retention == RET_DELETE && r->keep_days != POLICY_UNSET)
		report(c, config_setting_get_member(s, "keep_days"), prefix, "",
		    "keep_days has no effect with retention = \"delete\"");
}

static void
check_rule_entry(struct ctx *c, const config_setting_t *s, const char *prefix,
    void *base, int clean)
{
	(void)clean;    /* a field with a problem stayed unset: no false alarm */
	check_rule(c, s, prefix, base);
}

static void
check_policy(struct ctx *c, const config_setting_t *s, const char *prefix,
    void *base, int clean)
{
	(void)clean;
	check_rule(c, s, prefix, &((struct config *)base)->policy.def);
}

static void
begin_policy(struct ctx *c, const config_setting_t *s, void *base)
{
	(void)c;
	((struct config *)base)->policy.def.line = setting_line(s);
}

static void
begin_tls(struct ctx *c, const config_setting_t *s, void *base)
{
	struct config *cfg = base;

	(void)c;
	cfg->tls.present = 1;
	cfg->tls.line = setting_line(s);
}

static void
check_limits(struct ctx *c, const config_setting_t *s, const char *prefix,
    void *base, int clean)
{
	const struct config *cfg = base;
	const struct backoff_cfg *b = &cfg->backoff;
	const config_setting_t *m = config_setting_get_member(s, "max_connections_per_ip");

	if (!clean)
		return;
	if (cfg->max_connections_per_ip > cfg->max_connections)
		report(c, m ? m : s, prefix, "max_connections_per_ip",
		    "is %u, more than max_connections (%u)",
		    (unsigned)cfg->max_connections_per_ip, (unsigned)cfg->max_connections);
	/* base is at most 60 s and max defaults to 60 s: only a max written can be lower. */
	m = config_setting_get_member(s, "auth_backoff_max");
	if (b->base_ms > 0 && b->max_ms < b->base_ms)
		report(c, m ? m : s, prefix, "auth_backoff_max",
		    "is %g seconds, less than auth_backoff_base (%g seconds); "
		    "set auth_backoff_base = 0 to turn the backoff off",
		    (double)b->max_ms / 1000.0, (double)b->base_ms / 1000.0);
}

/* proxy_trusted goes with proxy_protocol = true, and only with it. */
static void
check_listen_entry(struct ctx *c, const config_setting_t *s, const char *prefix,
    void *base, int clean)
{
	const struct listen_cfg *l = base;
	const config_setting_t *pp = config_setting_get_member(s, "proxy_protocol");
	const config_setting_t *pt = config_setting_get_member(s, "proxy_trusted");
	int type = pt != NULL ? config_setting_type(pt) : CONFIG_TYPE_NONE;

	(void)clean;
	/* A wrong type is reported on its own; there is nothing to compare then. */
	if (pp != NULL && config_setting_type(pp) != CONFIG_TYPE_BOOL)
		return;
	if (!l->proxy_protocol) {
		if (pt != NULL)
			report(c, pt, prefix, "proxy_trusted",
			    "is only allowed with proxy_protocol = true");
		return;
	}
	if (pt == NULL)
		report(c, s, prefix, "proxy_trusted",
		    "required setting is missing (proxy_protocol is true)");
	else if ((type == CONFIG_TYPE_LIST || type == CONFIG_TYPE_ARRAY)
	    && config_setting_length(pt) == 0)
		report(c, pt, prefix, "proxy_trusted",
		    "needs at least 1 entry when proxy_protocol is true");
}

/* pop3d changes its group only when it changes its user. */
static void
check_process(struct ctx *c, const config_setting_t *s, const char *prefix,
    void *base, int clean)
{
	const config_setting_t *g = config_setting_get_member(s, "group");

	(void)base;
	(void)clean;
	if (g != NULL && config_setting_get_member(s, "user") == NULL)
		report(c, g, prefix, "group", "needs process.user as well");
}

static const struct enum_name tls_mode_names[] = {
	{ "none",     TLS_NONE },
	{ "starttls", TLS_STARTTLS },
	{ "implicit", TLS_IMPLICIT },
	{ NULL, 0 },
};

/* A listener that speaks TLS needs the tls group; said at the listener. */
static void
check_root(struct ctx *c, const config_setting_t *s, const char *prefix,
    void *base, int clean)
{
	const struct config *cfg = base;
	const config_setting_t *ls = config_setting_get_member(s, "listen");
	char elem[32];
	size_t i;

	(void)prefix;
	(void)clean;    /* a bad tls value stayed "none" */
	/* Given but wrong (tls = 5, a missing key) is reported on its own. */
	if (ls == NULL || config_setting_get_member(s, "tls") != NULL)
		return;
	for (i = 0; i < cfg->nlisten; i++) {
		if (cfg->listen[i].tls == TLS_NONE)
			continue;
		snprintf(elem, sizeof(elem), "listen[%zu]", i);
		report(c, config_setting_get_elem(ls, (unsigned)i), elem, "tls",
		    "is \"%s\", which needs the tls group (certificate and key)",
		    tls_mode_names[cfg->listen[i].tls].name);
	}
}

static const struct list proxy_trusted_list = {
	.scalar = parse_cidr, .elem_size = sizeof(struct cidr),
	.arr_off = offsetof(struct listen_cfg, proxy_trusted),
	.count_off = offsetof(struct listen_cfg, nproxy_trusted),
	.line_off = NO_OFF,
};

static const struct field listen_fields[] = {
	{ .name = "address", .type = F_STRING, .required = 1,
	  .off = AT(struct listen_cfg, address), .check = check_address },
	{ .name = "port", .type = F_UINT, .required = 1, .min = 1, .max = 65535,
	  .off = AT(struct listen_cfg, port) },
	{ .name = "tls", .type = F_ENUM, .def = TLS_NONE,
	  .off = AT(struct listen_cfg, tls), .names = tls_mode_names },
	{ .name = "proxy_protocol", .type = F_BOOL, .def = 0,
	  .off = AT(struct listen_cfg, proxy_protocol) },
	{ .name = "proxy_trusted", .type = F_LIST, .list = &proxy_trusted_list },
};
static const struct group listen_group = {
	listen_fields, NFIELDS(listen_fields), NULL, check_listen_entry
};

static const struct list listen_list = {
	.elem = &listen_group, .elem_size = sizeof(struct listen_cfg),
	.arr_off = offsetof(struct config, listen),
	.count_off = offsetof(struct config, nlisten),
	.line_off = offsetof(struct listen_cfg, line),
	.min_count = 1, .check = check_listen,
};

static const struct enum_name plaintext_names[] = {
	{ "tls-only", PLAINTEXT_TLS_ONLY },
	{ "always",   PLAINTEXT_ALWAYS },
	{ NULL, 0 },
};

static const struct list trusted_list = {
	.scalar = parse_cidr, .elem_size = sizeof(struct cidr),
	.arr_off = offsetof(struct config, plaintext_trusted),
	.count_off = offsetof(struct config, nplaintext_trusted),
	.line_off = NO_OFF,
};

static const struct field auth_fields[] = {
	{ .name = "users_file", .type = F_PATH, .required = 1,
	  .off = AT(struct config, users_file) },
	{ .name = "plaintext", .type = F_ENUM, .def = PLAINTEXT_TLS_ONLY,
	  .off = AT(struct config, plaintext), .names = plaintext_names },
	{ .name = "plaintext_trusted", .type = F_LIST, .list = &trusted_list },
	{ .name = "failure_delay", .type = F_MS, .min = 0, .max = 60000,
	  .def = AUTH_FAILURE_DELAY_DEFAULT_MS, .off = AT(struct config, failure_delay_ms) },
};
/* The users file is read later (confset); its problems then name this line. */
static void
check_auth(struct ctx *c, const config_setting_t *s, const char *prefix, void *base,
    int clean)
{
	const config_setting_t *f = config_setting_get_member(s, "users_file");

	(void)c;
	(void)prefix;
	(void)clean;
	if (f != NULL)
		((struct config *)base)->users_file_line = (int)config_setting_source_line(f);
}

static const struct group auth_group = { auth_fields, NFIELDS(auth_fields), NULL, check_auth };

static const struct field maildrop_fields[] = {
	/* Kept as written; the maildrop module validates the % escapes. */
	{ .name = "path", .type = F_STRING, .required = 1,
	  .off = AT(struct config, maildrop_path) },
};
/* The % escapes are the maildrop module's business; the line is ours. */
static void
check_maildrop(struct ctx *c, const config_setting_t *s, const char *prefix, void *base,
    int clean)
{
	struct config *cfg = base;
	const config_setting_t *f = config_setting_get_member(s, "path");
	char err[256];

	if (f == NULL)
		return;
	cfg->maildrop_line = (int)config_setting_source_line(f);
	if (clean && cfg->maildrop_path != NULL &&
	    maildrop_template_check(cfg->maildrop_path, err, sizeof(err)) != 0)
		report(c, f, prefix, "path", "%s", err);
}

static const struct group maildrop_group = {
	maildrop_fields, NFIELDS(maildrop_fields), NULL, check_maildrop
};

static const struct list limits_trusted_list = {
	.scalar = parse_cidr, .elem_size = sizeof(struct cidr),
	.arr_off = offsetof(struct config, backoff.trusted),
	.count_off = offsetof(struct config, backoff.ntrusted),
	.line_off = NO_OFF,
};

static const struct field limits_fields[] = {
	{ .name = "idle_timeout", .type = F_UINT, .min = 1, .max = 86400,
	  .def = IDLE_TIMEOUT_DEFAULT, .off = AT(struct config, idle_timeout) },
	{ .name = "max_connections", .type = F_UINT, .min = 1, .max = 1000000,
	  .def = MAX_CONNECTIONS_DEFAULT, .off = AT(struct config, max_connections) },
	{ .name = "max_connections_per_ip", .type = F_UINT, .min = 1, .max = 1000000,
	  .def = MAX_CONNECTIONS_PER_IP_DEFAULT,
	  .off = AT(struct config, max_connections_per_ip) },
	{ .name = "auth_backoff_base", .type = F_MS, .min = 0, .max = 60000,
	  .def = AUTH_BACKOFF_BASE_DEFAULT_MS, .off = AT(struct config, backoff.base_ms) },
	{ .name = "auth_backoff_max", .type = F_MS, .min = 0, .max = 3600000,
	  .def = AUTH_BACKOFF_MAX_DEFAULT_MS, .off = AT(struct config, backoff.max_ms) },
	{ .name = "auth_backoff_forget", .type = F_UINT, .min = 1, .max = 86400,
	  .def = AUTH_BACKOFF_FORGET_DEFAULT, .off = AT(struct config, backoff.forget) },
	{ .name = "trusted", .type = F_LIST, .list = &limits_trusted_list },
};
static const struct group limits_group = {
	limits_fields, NFIELDS(limits_fields), NULL, check_limits
};

static const struct field sni_fields[] = {
	{ .name = "name", .type = F_STRING, .required = 1, .lower = 1,
	  .off = AT(struct tls_sni_cfg, name), .check = check_sni_name },
	{ .name = "certificate", .type = F_PATH, .required = 1,
	  .off = AT(struct tls_sni_cfg, certificate) },
	{ .name = "key", .type = F_PATH, .required = 1,
	  .off = AT(struct tls_sni_cfg, key) },
};
static const struct group sni_group = { sni_fields, NFIELDS(sni_fields), NULL, NULL };

static const struct list sni_list = {
	.elem = &sni_group, .elem_size = sizeof(struct tls_sni_cfg),
	.arr_off = offsetof(struct config, tls.sni),
	.count_off = offsetof(struct config, tls.nsni),
	.line_off = offsetof(struct tls_sni_cfg, line),
	.check = check_sni,
};

static const struct enum_name tls_version_names[] = {
	{ "TLSv1.2", TLS1_2_VERSION },
	{ "TLSv1.3", TLS1_3_VERSION },
	{ NULL, 0 },
};

static const struct field tls_fields[] = {
	{ .name = "certificate", .type = F_PATH, .required = 1,
	  .off = AT(struct config, tls.certificate) },
	{ .name = "key", .type = F_PATH, .required = 1,
	  .off = AT(struct config, tls.key) },
	{ .name = "min_version", .type = F_ENUM, .def = TLS1_2_VERSION,
	  .off = AT(struct config, tls.min_version), .names = tls_version_names },
	/* Handed to OpenSSL as written; tlsio reports a list it refuses. */
	{ .name = "ciphers", .type = F_STRING, .off = AT(struct config, tls.ciphers) },
	{ .name = "ciphersuites", .type = F_STRING, .off = AT(struct config, tls.ciphersuites) },
	{ .name = "handshake_timeout", .type = F_UINT, .min = 1, .max = 600,
	  .def = TLS_HANDSHAKE_TIMEOUT_DEFAULT, .off = AT(struct config, tls.handshake_timeout) },
	{ .name = "sni", .type = F_LIST, .list = &sni_list },
};
static const struct group tls_group = { tls_fields, NFIELDS(tls_fields), begin_tls, NULL };

static const struct enum_name retention_names[] = {
	{ "keep",   RET_KEEP },
	{ "delete", RET_DELETE },
	{ NULL, 0 },
};

/*
 * The settings every policy level shares, for a level at T.P (P is empty or
 * ends in '.'): RDEF is retention's default, IDEF that of unread_days and
 * login_delay. keep_days is POLICY_UNSET unless written, at every level.
 */
#define RULE_FIELDS(T, P, RDEF, IDEF) \
	{ .name = "retention", .type = F_ENUM, .def = RDEF, \
	  .off = AT(T, P retention), .names = retention_names }, \
	{ .name = "keep_days", .type = F_UINT, .min = 0, .max = 36500, \
	  .def = POLICY_UNSET, .off = AT(T, P keep_days) }, \
	{ .name = "unread_days", .type = F_UINT, .min = 0, .max = 36500, \
	  .def = IDEF, .off = AT(T, P unread_days) }, \
	{ .name = "login_delay", .type = F_UINT, .min = 0, .max = 86400, \
	  .def = IDEF, .off = AT(T, P login_delay) }

static const struct field domain_fields[] = {
	{ .name = "domain", .type = F_STRING, .required = 1, .lower = 1,
	  .off = AT(struct policy_rule_cfg, match), .check = check_domain },
	RULE_FIELDS(struct policy_rule_cfg, , RET_UNSET, POLICY_UNSET),
};
static const struct group domain_group = {
	domain_fields, NFIELDS(domain_fields), NULL, check_rule_entry
};

static const struct field user_fields[] = {
	{ .name = "user", .type = F_STRING, .required = 1,
	  .off = AT(struct policy_rule_cfg, match), .check = check_user },
	RULE_FIELDS(struct policy_rule_cfg, , RET_UNSET, POLICY_UNSET),
};
static const struct group user_group = {
	user_fields, NFIELDS(user_fields), NULL, check_rule_entry
};

static const struct list domain_list = {
	.elem = &domain_group, .elem_size = sizeof(struct policy_rule_cfg),
	.arr_off = offsetof(struct config, policy.domains),
	.count_off = offsetof(struct config, policy.ndomains),
	.line_off = offsetof(struct policy_rule_cfg, line),
	.check = check_domains,
};

static const struct list user_list = {
	.elem = &user_group, .elem_size = sizeof(struct policy_rule_cfg),
	.arr_off = offsetof(struct config, policy.users),
	.count_off = offsetof(struct config, policy.nusers),
	.line_off = offsetof(struct policy_rule_cfg, line),
	.check = check_users,
};

static const struct field policy_fields[] = {
	RULE_FIELDS(struct config, policy.def., RET_KEEP, 0),
	/* 1 s lets a test watch the daemon's own sweeps; a real setup wants minutes or hours. */
	{ .name = "expire_interval", .type = F_UINT, .min = 1, .max = 604800,
	  .def = EXPIRE_INTERVAL_DEFAULT, .off = AT(struct config, policy.expire_interval) },
	{ .name = "domains", .type = F_LIST, .list = &domain_list },
	{ .name = "users", .type = F_LIST, .list = &user_list },
};
static const struct group policy_group = {
	policy_fields, NFIELDS(policy_fields), begin_policy, check_policy
};

static const struct enum_name log_target_names[] = {
	{ "stderr", LOGT_STDERR },
	{ "syslog", LOGT_SYSLOG },
	{ NULL, 0 },
};

static const struct enum_name log_facility_names[] = {
	{ "mail",   LOG_MAIL },
	{ "daemon", LOG_DAEMON },
	{ "user",   LOG_USER },
	{ "local0", LOG_LOCAL0 },
	{ "local1", LOG_LOCAL1 },
	{ "local2", LOG_LOCAL2 },
	{ "local3", LOG_LOCAL3 },
	{ "local4", LOG_LOCAL4 },
	{ "local5", LOG_LOCAL5 },
	{ "local6", LOG_LOCAL6 },
	{ "local7", LOG_LOCAL7 },
	{ NULL, 0 },
};

/* Our levels (server/log.h), not syslog's priorities: log.c maps them. */
static const struct enum_name log_level_names[] = {
	{ "error",   LOG_ERR },
	{ "warning", LOG_WARN },
	{ "info",    LOG_INFO },
	{ "debug",   LOG_DEBUG },
	{ NULL, 0 },
};

static const struct field log_fields[] = {
	{ .name = "target", .type = F_ENUM, .def = LOGT_STDERR,
	  .off = AT(struct config, log.target), .names = log_target_names },
	/* Kept with target = "stderr" too, so switching target is one edit. */
	{ .name = "facility", .type = F_ENUM, .def = LOG_MAIL,
	  .off = AT(struct config, log.facility), .names = log_facility_names },
	{ .name = "level", .type = F_ENUM, .def = LOG_INFO,
	  .off = AT(struct config, log.level), .names = log_level_names },
};
static const struct group log_group = { log_fields, NFIELDS(log_fields), NULL, NULL };

static const struct field process_fields[] = {
	{ .name = "user", .type = F_STRING, .off = AT(struct config, process.user),
	  .check = check_account },
	{ .name = "group", .type = F_STRING, .off = AT(struct config, process.group),
	  .check = check_account },
	{ .name = "allow_root", .type = F_BOOL, .def = 0,
	  .off = AT(struct config, process.allow_root) },
	{ .name = "shutdown_grace", .type = F_UINT, .min = 0, .max = 3600,
	  .def = SHUTDOWN_GRACE_DEFAULT, .off = AT(struct config, process.shutdown_grace) },
	{ .name = "workers", .type = F_UINT, .min = 0, .max = WORKERS_MAX, .def = 0,
	  .off = AT(struct config, process.workers) },
};
static const struct group process_group = {
	process_fields, NFIELDS(process_fields), NULL, check_process
};

static const struct field root_fields[] = {
	{ .name = "listen",   .type = F_LIST,  .required = 1, .list = &listen_list },
	{ .name = "auth",     .type = F_GROUP, .required = 1, .sub = &auth_group },
	{ .name = "maildrop", .type = F_GROUP, .required = 1, .sub = &maildrop_group },
	{ .name = "limits",   .type = F_GROUP, .sub = &limits_group },
	{ .name = "tls",      .type = F_GROUP, .sub = &tls_group },
	{ .name = "policy",   .type = F_GROUP, .sub = &policy_group },
	{ .name = "log",      .type = F_GROUP, .sub = &log_group },
	{ .name = "process",  .type = F_GROUP, .sub = &process_group },
};
static const struct group root_group = { root_fields, NFIELDS(root_fields), NULL, check_root };

/* --- entry points ------------------------------------------------------- */

/* The absolute, canonical folder of path, or NULL with *why set. */
static char *
config_dir(const char *path, const char **why)
{
	char *copy, *slash, *dir;

	copy = strdup(path);
	if (copy == NULL) {
		*why = strerror(ENOMEM);
		return NULL;
	}
	slash = strrchr(copy, '/');
	if (slash == NULL)
		dir = realpath(".", NULL);
	else if (slash == copy)
		dir = strdup("/");
	else {
		*slash = '\0';
		dir = realpath(copy, NULL);
	}
	if (dir == NULL)
		*why = strerror(errno);
	free(copy);
	return dir;
}

int
config_load(const char *path, struct config **out, struct diag *d)
{
	struct ctx c = { .file = path, .d = d };
	struct config *cfg;
	struct stat st;
	const char *why;
	config_t lc;
	FILE *fp;

	*out = NULL;
	/* libconfig only says "file I/O error": find the cause ourselves first. */
	fp = fopen(path, "r");
	if (fp == NULL) {
		diag_add(d, "%s: cannot open: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fileno(fp), &st) == 0 && S_ISDIR(st.st_mode)) {
		fclose(fp);
		diag_add(d, "%s: cannot open: %s", path, strerror(EISDIR));
		return -1;
	}

	cfg = calloc(1, sizeof(*cfg));
	if (cfg == NULL || (cfg->path = strdup(path)) == NULL) {
		diag_add(d, "%s: out of memory", path);
		fclose(fp);
		config_free(cfg);
		return -1;
	}
	cfg->dir = config_dir(path, &why);
	if (cfg->dir == NULL) {
		diag_add(d, "%s: cannot resolve its folder: %s", path, why);
		fclose(fp);
		config_free(cfg);
		return -1;
	}
	c.dir = cfg->dir;

	config_init(&lc);
	/* @include "x" is relative to the config's folder, like every other path. */
	config_set_include_dir(&lc, cfg->dir);
	/* The file opened above, read once: what was checked is what is parsed. */
	if (!config_read(&lc, fp)) {
		if (config_error_type(&lc) == CONFIG_ERR_FILE_IO)
			diag_add(d, "%s: cannot read: %s", path, config_error_text(&lc));
		else
			diag_add(d, "%s:%d: syntax error: %s",
			    config_error_file(&lc) ? config_error_file(&lc) : path,
			    config_error_line(&lc), config_error_text(&lc));
		fclose(fp);
		config_destroy(&lc);
		config_free(cfg);
		return -1;
	}
	fclose(fp);
	set_defaults(&root_group, cfg);
	parse_group(&c, config_root_setting(&lc), "", &root_group, cfg);
	config_destroy(&lc);

	if (c.errors > 0) {
		config_free(cfg);
		return -1;
	}
	*out = cfg;
	return 0;
}

/* Free every string and list the table g put at base; the tables know the layout. */
static void
free_group(const struct group *g, void *base)
{
	const struct field *f;
	size_t i, j, n;
	char *p;

	for (i = 0; i < g->nfields; i++) {
		f = &g->fields[i];
		if (f->type == F_STRING || f->type == F_PATH) {
			memcpy(&p, (char *)base + f->off, sizeof(p));
			free(p);
		} else if (f->type == F_GROUP) {
			free_group(f->sub, base);
		} else if (f->type == F_LIST) {
			memcpy(&p, (char *)base + f->list->arr_off, sizeof(p));
			memcpy(&n, (char *)base + f->list->count_off, sizeof(n));
			for (j = 0; p != NULL && f->list->elem != NULL && j < n; j++)
				free_group(f->list->elem, p + j * f->list->elem_size);
			free(p);
		}
	}
}

void
config_free(struct config *c)
{
	if (c == NULL)
		return;
	free_group(&root_group, c);
	free(c->dir);
	free(c->path);
	free(c);
}
