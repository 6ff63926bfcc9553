/*
 * limits: every protocol and resource limit in one place, each with its reason.
 * Configurable limits (idle timeout, connection caps) have their defaults here.
 */
#ifndef POP3D_LIMITS_H
#define POP3D_LIMITS_H

/* RFC 2449 §4: a command line is at most 255 octets including CRLF; we accept
 * 255 octets of command text to be generous with clients that count without it. */
#define CMD_LINE_MAX         255

/* Octets without LF after which a client is considered to be flooding us: far
 * above any legitimate line, small enough that we never buffer it (we discard). */
#define LINE_FLOOD_MAX       (64 * 1024)

/* Input buffer: starts small (a command line, pipelined ones, a PROXY header:
 * idle sessions are most sessions) and grows to INPUT_BUF_SIZE, which holds
 * an AUTH response line (SASL_LINE_MAX + 2), only when an AUTH exchange starts. */
#define INPUT_BUF_INITIAL    1024
#define INPUT_BUF_SIZE       (4096 + 64)

/* Output queue: stop producing RETR/LIST/UIDL data and stop reading commands
 * above the high-water mark; resume below the low-water mark. Bounds what a
 * client that does not read can make us hold (plus one encoded chunk). */
#define OUTPUT_HIGH_WATER    (128 * 1024)
#define OUTPUT_LOW_WATER     (32 * 1024)

/* Ciphertext read per step from a TLS connection (one TLS record is <= 16 KiB). */
#define TLS_READ_BUF         (16 * 1024 + 64)

/* Message file chunk read per step; the encoder output is at most twice it.
 * Larger chunks mean fewer thread-pool round trips per message. */
#define FILE_CHUNK           (64 * 1024)

/* Bad commands tolerated before the session is closed (Dovecot, nginx).
 * Fewer before authentication: that is where scanners live. */
#define BAD_CMDS_AUTH        10
#define BAD_CMDS_TRANS       20

/* A PROXY protocol header must arrive this soon after the balancer connects. */
#define PROXY_TIMEOUT_MS     3000

/* RFC 1939 §3: the autologout timer is at least 10 minutes. */
#define IDLE_TIMEOUT_DEFAULT 600

#define MAX_CONNECTIONS_DEFAULT        10000
#define MAX_CONNECTIONS_PER_IP_DEFAULT 50

/* Delay before every failed authentication reply, in ms (auth.failure_delay). */
#define AUTH_FAILURE_DELAY_DEFAULT_MS  2000

/* Snapshots of at most this many messages are freed on the loop at session end. */
#define MD_CLOSE_INLINE_MAX 1000

/* process.workers at most: event loops beyond the cores only add switching. */
#define WORKERS_MAX 64

/*
 * "update kept" log lines per session (one per message kept at UPDATE only
 * because something was in doubt): enough to see what and why, few enough
 * that a broken state file in a 100k-message maildrop cannot flood the log;
 * the update line carries the full count. Sweeps cap theirs the same way.
 */
#define DOUBT_LOG_MAX 20

/*
 * Seconds from the daemon's start to its first expiry sweep (or
 * policy.expire_interval when shorter): without a sweep soon after a start,
 * restarts more frequent than the interval would postpone expiry forever;
 * not at once, so a daemon started only to be looked at or tested, or
 * restarted in a loop, does not sweep every maildrop each time.
 */
#define EXPIRE_FIRST_DELAY 300

/* Password hashes computed at once; further checks wait in line. A yescrypt
 * check takes 16 MiB: without a cap, a flood of bogus logins on the 16-thread
 * pool would cost 256 MiB and starve the maildrop work sharing that pool. */
#define AUTH_HASH_CONCURRENCY 4

/* Login names: longer ones are refused before any path is built. */
#define LOGIN_MAX            255

#endif
