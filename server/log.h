/*
 * log: one line per event, to stderr (syslog comes with the operations work).
 * Callers escape untrusted bytes with str_escape before they reach a format.
 */
#ifndef POP3D_LOG_H
#define POP3D_LOG_H

enum log_level {
	LOG_ERR,
	LOG_WARN,
	LOG_INFO,
	LOG_DEBUG
};

/* Lines below min are dropped. The default is LOG_INFO. */
void log_set_level(enum log_level min);

/* Write one line "TIME pop3d[PID]: LEVEL: TEXT" to stderr. */
void log_msg(enum log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
