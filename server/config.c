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
#include <sys/stat.h>

/* PATH_MAX only: <limits.h> would also bring glibc's LOGIN_NAME_MAX, which
 * clashes with server/limits.h. */
#include <linux/limits.h>
#include <libconfig.h>

#include "server/config.h"
#include "server/limits.h"

/*
 * What a table entry holds and how it is stored at base + off:
 *   F_UINT    libconfig int or int64 in [min, max]; stored in an unsigned field of size sz
 *   F_MS      seconds as float or int; stored as milliseconds in a uint32_t;
 *             min, max and def are in milliseconds
 *   F_ENUM    one of the strings in names[]; stored as its value in an enum field
 *   F_STRING  copied; no control characters, not empty; check() may refuse it
 *   F_PATH    as F_STRING, then resolved against the config file's folder
 *   F_GROUP   a nested group whose table (sub) fills the same base
 *   F_LIST    a list of groups, allocated as an array described by list
 */
enum ftype { F_UINT, F_MS, F_ENUM, F_STRING, F_PATH, F_GROUP, F_LIST };

struct ctx;
struct group;

struct enum_name {
	const char *name;
	int         value;
};

struct list {
	const struct group *elem;       /* table for every element */
	size_t elem_size;
	size_t arr_off;                 /* where the array pointer goes */
	size_t count_off;               /* where the element count goes (a size_t) */
	size_t line_off;                /* an int for each element's line, or NO_OFF */
	size_t min_count;
	/* Whole-list rule (duplicates), called only when every element was valid. */
	void (*check)(struct ctx *, const config_setting_t *s, void *arr, size_t n);
};

struct field {
	const char *name;
	enum ftype  type;
	int         required;
	long long   min, max, def;      /* F_UINT, F_MS; def also for F_ENUM */
	size_t      off, sz;            /* destination; unused for F_GROUP */
	const struct enum_name *names;  /* F_ENUM, ended by a NULL name */
	const struct group     *sub;    /* F_GROUP */
	const struct list      *list;   /* F_LIST */
	/* F_STRING, F_PATH: extra rule; returns NULL or what is wrong. */
	const char *(*check)(const char *value);
};

struct group {
	const struct field *fields;
	size_t nfields;
	/* Cross-field rule, called only when every field of the group was valid. */
	void (*check)(struct ctx *, const config_setting_t *s, void *base);
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
		if (f->type == F_UINT || f->type == F_MS || f->type == F_ENUM)
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
		if (!config_setting_is_group(e)) {
			report(c, e, elem, "", "must be a group { ... }, not %s",
			    type_name(config_setting_type(e)));
			continue;
		}
		set_defaults(l->elem, eb);
		parse_group(c, e, elem, l->elem, eb);
	}
	if (c->errors == before && l->check != NULL)
		l->check(c, s, arr, n);
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
	char *copy;

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
	char sub[128], choices[128];

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
		if (type != CONFIG_TYPE_LIST) {
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
	if (c->errors == before && g->check != NULL)
		g->check(c, s, base);
}

/* --- the tables --------------------------------------------------------- */

static void
check_listen(struct ctx *c, const config_setting_t *s, void *arr, size_t n)
{
	const struct listen_cfg *l = arr;
	unsigned char a[16], b[16];
	size_t i, j;
	int fa, fb;
	char elem[32];

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

static void
check_limits(struct ctx *c, const config_setting_t *s, void *base)
{
	const struct config *cfg = base;
	const config_setting_t *m = config_setting_get_member(s, "max_connections_per_ip");

	if (cfg->max_connections_per_ip > cfg->max_connections)
		report(c, m ? m : s, "limits", "max_connections_per_ip",
		    "is %u, more than max_connections (%u)",
		    (unsigned)cfg->max_connections_per_ip, (unsigned)cfg->max_connections);
}

static const struct field listen_fields[] = {
	{ .name = "address", .type = F_STRING, .required = 1,
	  .off = AT(struct listen_cfg, address), .check = check_address },
	{ .name = "port", .type = F_UINT, .required = 1, .min = 1, .max = 65535,
	  .off = AT(struct listen_cfg, port) },
};
static const struct group listen_group = { listen_fields, NFIELDS(listen_fields), NULL };

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

static const struct field auth_fields[] = {
	{ .name = "users_file", .type = F_PATH, .required = 1,
	  .off = AT(struct config, users_file) },
	{ .name = "plaintext", .type = F_ENUM, .def = PLAINTEXT_TLS_ONLY,
	  .off = AT(struct config, plaintext), .names = plaintext_names },
	{ .name = "failure_delay", .type = F_MS, .min = 0, .max = 60000,
	  .def = AUTH_FAILURE_DELAY_DEFAULT_MS, .off = AT(struct config, failure_delay_ms) },
};
static const struct group auth_group = { auth_fields, NFIELDS(auth_fields), NULL };

static const struct field maildrop_fields[] = {
	/* Kept as written; the maildrop module validates the % escapes. */
	{ .name = "path", .type = F_STRING, .required = 1,
	  .off = AT(struct config, maildrop_path) },
};
static const struct group maildrop_group = { maildrop_fields, NFIELDS(maildrop_fields), NULL };

static const struct field limits_fields[] = {
	{ .name = "idle_timeout", .type = F_UINT, .min = 1, .max = 86400,
	  .def = IDLE_TIMEOUT_DEFAULT, .off = AT(struct config, idle_timeout) },
	{ .name = "max_connections", .type = F_UINT, .min = 1, .max = 1000000,
	  .def = MAX_CONNECTIONS_DEFAULT, .off = AT(struct config, max_connections) },
	{ .name = "max_connections_per_ip", .type = F_UINT, .min = 1, .max = 1000000,
	  .def = MAX_CONNECTIONS_PER_IP_DEFAULT,
	  .off = AT(struct config, max_connections_per_ip) },
};
static const struct group limits_group = { limits_fields, NFIELDS(limits_fields), check_limits };

static const struct field root_fields[] = {
	{ .name = "listen",   .type = F_LIST,  .required = 1, .list = &listen_list },
	{ .name = "auth",     .type = F_GROUP, .required = 1, .sub = &auth_group },
	{ .name = "maildrop", .type = F_GROUP, .required = 1, .sub = &maildrop_group },
	{ .name = "limits",   .type = F_GROUP, .sub = &limits_group },
};
static const struct group root_group = { root_fields, NFIELDS(root_fields), NULL };

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
	fclose(fp);

	cfg = calloc(1, sizeof(*cfg));
	if (cfg == NULL || (cfg->path = strdup(path)) == NULL) {
		diag_add(d, "%s: out of memory", path);
		config_free(cfg);
		return -1;
	}
	cfg->dir = config_dir(path, &why);
	if (cfg->dir == NULL) {
		diag_add(d, "%s: cannot resolve its folder: %s", path, why);
		config_free(cfg);
		return -1;
	}
	c.dir = cfg->dir;

	config_init(&lc);
	/* @include "x" is relative to the config's folder, like every other path. */
	config_set_include_dir(&lc, cfg->dir);
	if (!config_read_file(&lc, path)) {
		if (config_error_type(&lc) == CONFIG_ERR_FILE_IO)
			diag_add(d, "%s: cannot read: %s", path, config_error_text(&lc));
		else
			diag_add(d, "%s:%d: syntax error: %s",
			    config_error_file(&lc) ? config_error_file(&lc) : path,
			    config_error_line(&lc), config_error_text(&lc));
		config_destroy(&lc);
		config_free(cfg);
		return -1;
	}
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
			for (j = 0; p != NULL && j < n; j++)
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
