/*
 * config: parses the libconfig file once into a typed struct config, copying
 * every string out of libconfig. Unknown keys, wrong types, missing required
 * keys and impossible values are "FILE:LINE: text" errors, never skipped.
 */
#ifndef POP3D_CONFIG_H
#define POP3D_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include "server/diag.h"

enum plaintext_mode {
	PLAINTEXT_TLS_ONLY,   /* USER/PASS only once TLS is active (default) */
	PLAINTEXT_ALWAYS      /* USER/PASS allowed on clear-text connections */
};

enum tls_mode {
	TLS_NONE,             /* clear text; STLS not offered */
	TLS_STARTTLS,         /* clear text; STLS offered (RFC 2595) */
	TLS_IMPLICIT          /* TLS from the first byte (RFC 8314, port 995) */
};

struct cidr;

struct listen_cfg {
	char     *address;    /* numeric IPv4 or IPv6 address */
	uint16_t  port;
	int       tls;        /* enum tls_mode; listen[].tls, default "none" */
	int       proxy_protocol;      /* listen[].proxy_protocol: a PROXY v1/v2 header is required */
	struct cidr *proxy_trusted;    /* listen[].proxy_trusted: peers allowed to send it */
	size_t    nproxy_trusted;      /* (required, non-empty, when proxy_protocol is true) */
	int       line;       /* config line of the entry, for messages */
};

/* An address block such as 127.0.0.0/8 or ::1 (prefix 128). */
struct cidr {
	int      family;      /* AF_INET or AF_INET6 */
	uint8_t  addr[16];    /* network byte order; 4 octets used for AF_INET */
	uint8_t  prefix;      /* 0..32 or 0..128 */
};

struct tls_sni_cfg {
	char *name;           /* host name the client asks for (exact, case-insensitive) */
	char *certificate;    /* absolute path, PEM, chain allowed */
	char *key;            /* absolute path, PEM */
	int   line;
};

struct tls_cfg {
	int                 present;          /* the tls group was given */
	char               *certificate;      /* absolute path, PEM (chain allowed) */
	char               *key;              /* absolute path, PEM */
	int                 min_version;      /* OpenSSL TLS1_2_VERSION (default) or TLS1_3_VERSION */
	char               *ciphers;          /* TLS <= 1.2 list, OpenSSL syntax; NULL = our default */
	char               *ciphersuites;     /* TLS 1.3 suites; NULL = OpenSSL's default */
	struct tls_sni_cfg *sni;
	size_t              nsni;
	uint32_t            handshake_timeout; /* seconds, default 30 */
	int                 line;
};

enum retention {
	RET_UNSET,            /* inherit from the enclosing level */
	RET_DELETE,           /* remove downloaded messages at UPDATE (EXPIRE 0) */
	RET_KEEP              /* keep downloaded messages keep_days (or forever) */
};

#define POLICY_UNSET (-1) /* an integer policy field that was not written */

/*
 * One policy level: the defaults (match NULL), a domain, or a user. Fields
 * left out are RET_UNSET / POLICY_UNSET and inherit (see policy/rules.h).
 */
struct policy_rule_cfg {
	char           *match;        /* domain or login name; NULL for the defaults */
	int             line;
	enum retention  retention;
	int32_t         keep_days;    /* 0..36500 */
	int32_t         unread_days;  /* 0..36500; 0 = never expire unread mail */
	int32_t         login_delay;  /* seconds, 0..86400 */
};

struct policy_cfg {
	struct policy_rule_cfg  def;          /* policy.retention, keep_days, ... */
	struct policy_rule_cfg *domains;      /* policy.domains */
	size_t                  ndomains;
	struct policy_rule_cfg *users;        /* policy.users */
	size_t                  nusers;
	uint32_t                expire_interval;  /* seconds, 1..604800, default 3600 */
};

enum log_target { LOGT_STDERR, LOGT_SYSLOG };

struct log_cfg {
	int       target;          /* enum log_target; log.target, default "stderr" */
	int       facility;        /* syslog LOG_MAIL etc.; log.facility, default "mail" */
	int       level;           /* enum log_level (server/log.h); log.level, default "info" */
};

struct process_cfg {
	char     *user;            /* process.user: drop to this user after binding; NULL = stay */
	char     *group;           /* process.group: default the user's primary group */
	int       allow_root;      /* process.allow_root: serve sessions as root (default false) */
	uint32_t  shutdown_grace;  /* process.shutdown_grace: seconds sessions may finish after
	                              SIGTERM before they are closed; 0..3600, default 10 */
	uint32_t  workers;         /* process.workers: event loops (threads) serving sessions;
	                              0 (default) = one per CPU core; 1..WORKERS_MAX */
};

struct backoff_cfg {
	uint32_t     base_ms;      /* limits.auth_backoff_base: first extra delay, seconds (float),
	                              doubled per further failure; 0 = off; default 1 */
	uint32_t     max_ms;       /* limits.auth_backoff_max: cap, seconds; default 60 */
	uint32_t     forget;       /* limits.auth_backoff_forget: seconds without failure after
	                              which an address starts again from zero; default 900 */
	struct cidr *trusted;      /* limits.trusted: exempt from the backoff and per-IP cap */
	size_t       ntrusted;
};

struct config {
	char              *path;          /* the config file as given */
	char              *dir;           /* its folder: base for relative paths */

	struct listen_cfg *listen;        /* at least one entry */
	size_t             nlisten;

	char              *users_file;    /* absolute (resolved against dir) */
	int                users_file_line;  /* its line in the config file, for messages */
	enum plaintext_mode plaintext;
	struct cidr       *plaintext_trusted;  /* auth.plaintext_trusted: clear-text login allowed */
	size_t             nplaintext_trusted;
	uint32_t           failure_delay_ms;  /* auth.failure_delay, in ms */

	char              *maildrop_path; /* template with %u %n %d %h %% */
	int                maildrop_line; /* its line in the config file, for messages */

	uint32_t           idle_timeout;  /* seconds, 1..86400; -t warns below 600 (RFC 1939) */
	uint32_t           max_connections;
	uint32_t           max_connections_per_ip;

	struct backoff_cfg backoff;       /* in the limits group */
	struct log_cfg     log;           /* the log group */
	struct process_cfg process;       /* the process group */
	struct tls_cfg     tls;           /* the tls group */
	struct policy_cfg  policy;        /* the policy group */
};

/*
 * Read and validate the file at path. On success returns 0 and sets *out
 * (free with config_free). On failure returns -1 with every problem added to
 * d as "FILE:LINE: text" (or "FILE: setting.path: text" without a line); *out
 * is left NULL. Does not read the users file or touch maildirs.
 */
int config_load(const char *path, struct config **out, struct diag *d);

/* Free a config and everything it owns; NULL is fine. */
void config_free(struct config *c);

#endif
