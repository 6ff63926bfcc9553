/*
 * listen: the listening sockets from the config's `listen` list; hands each
 * accepted connection to session_accept. Never reads client bytes.
 */
#ifndef POP3D_LISTEN_H
#define POP3D_LISTEN_H

#include <uv.h>

struct daemon;

struct listener {
	uv_tcp_t        tcp;
	struct daemon  *d;
	size_t          index;      /* its entry in every generation's listen list */
	char            name[80];   /* "addr:port" for logs */
	int             open;
};

/*
 * Bind and listen on every configured address. Returns 0, or -1 after logging
 * which address failed and why (listeners opened so far are closed by
 * listen_close_all).
 */
int listen_open_all(struct daemon *d);

/*
 * Give worker `to` its own handles on the sockets `from` listens on (each a
 * duplicate descriptor in to's loop): connections then go to whichever loop
 * accepts first, so a busy loop leaves them to an idle one. Call before to's
 * loop runs. Returns 0, or -1 after logging (handles made so far are closed by
 * listen_close_all(to)).
 */
int listen_clone_all(const struct daemon *from, struct daemon *to);

/* Stop accepting: close every listener (their close callbacks free nothing). */
void listen_close_all(struct daemon *d);

#endif
