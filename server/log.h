/*
 * log: one line per event, to stderr or to syslog (log.target).
 * Callers escape untrusted bytes with str_escape before they reach a format.
 */
#ifndef POP3D_LOG_H
#define POP3D_LOG_H

/*
 * <syslog.h> defines LOG_ERR, LOG_INFO and LOG_DEBUG as syslog priorities;
 * our levels below have the same names. Include it here, once, and drop those
 * three macros, so every file that includes this header sees our enum whatever
 * its include order (a later #include <syslog.h> is a no-op). log.c maps our
 * levels to syslog priorities; LOG_MAIL, LOG_WARNING etc. stay available.
 */
#include <syslog.h>
#undef LOG_ERR
#undef LOG_INFO
#undef LOG_DEBUG

enum log_level {
	LOG_ERR,
	LOG_WARN,
	LOG_INFO,
	LOG_DEBUG
};

struct log_cfg;

/*
 * Start logging as c says (the log group of the config): c->level becomes the
 * minimum, and with target "syslog" the process opens syslog as
 * openlog("pop3d", LOG_PID | LOG_NDELAY, c->facility) (NDELAY: the socket is
 * open before a chroot or privilege drop). Call it before any thread logs;
 * calling it again switches target. Reads c only during the call.
 */
void log_open(const struct log_cfg *c);

/* Back to stderr, closing syslog if it was open. The level stays. */
void log_close(void);

/* Lines below min are dropped. The default is LOG_INFO. Call before threads log. */
void log_set_level(enum log_level min);

/*
 * One event. On stderr: one write of "TIME pop3d[PID]: LEVEL: TEXT\n" (TIME in
 * UTC, ISO 8601). On syslog: TEXT alone (syslog adds time, host and
 * pop3d[PID]) at the priority of lvl. Thread-safe; TEXT is cut at about 2 KiB.
 */
void log_msg(enum log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * The answer to something the admin did: start ("ready"), SIGHUP ("reloading",
 * "reloaded"), SIGUSR1 ("counters"), SIGTERM/SIGINT ("shutting down",
 * "stopped"). Written whatever log.level says, even "error": an admin who
 * asked for the counters must get them, and these lines come one per request,
 * so they cannot flood a quiet log. Priority LOG_NOTICE on syslog, the word
 * "notice" on stderr; otherwise as log_msg.
 */
void log_notice(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
