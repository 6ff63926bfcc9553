/*
 * listen: binds the configured addresses and accepts connections. Owns the
 * listening handles only; every accepted socket belongs to a session at once.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/config.h"
#include "server/confset.h"
#include "server/daemon.h"
#include "server/listen.h"
#include "server/log.h"
#include "server/session.h"

#define LISTEN_BACKLOG 511

static void
on_connection(uv_stream_t *server, int status)
{
	struct listener *l = server->data;

	if (status < 0) {
		log_msg(LOG_WARN, "accept on %s: %s", l->name, uv_strerror(status));
		return;
	}
	session_accept(l->d, server);
}

static int
listen_one(struct daemon *d, struct listener *l, const struct listen_cfg *c)
{
	struct sockaddr_storage ss;
	unsigned flags = 0;
	int r;

	l->d = d;
	if (strchr(c->address, ':') != NULL) {
		snprintf(l->name, sizeof l->name, "[%s]:%u", c->address, c->port);
		r = uv_ip6_addr(c->address, c->port, (struct sockaddr_in6 *)&ss);
		flags = UV_TCP_IPV6ONLY;
	} else {
		snprintf(l->name, sizeof l->name, "%s:%u", c->address, c->port);
		r = uv_ip4_addr(c->address, c->port, (struct sockaddr_in *)&ss);
	}
	if (r == 0)
		r = uv_tcp_init(d->loop, &l->tcp);
	if (r != 0) {
		log_msg(LOG_ERR, "listen %s: %s", l->name, uv_strerror(r));
		return -1;
	}
	l->tcp.data = l;
	l->open = 1;
	r = uv_tcp_bind(&l->tcp, (const struct sockaddr *)&ss, flags);
	if (r == 0)
		r = uv_listen((uv_stream_t *)&l->tcp, LISTEN_BACKLOG, on_connection);
	if (r != 0) {
		log_msg(LOG_ERR, "listen %s: %s", l->name, uv_strerror(r));
		return -1;
	}
	log_msg(LOG_INFO, "listening on %s tls=%s", l->name,
	        c->tls == TLS_IMPLICIT ? "implicit" : c->tls == TLS_STARTTLS ? "starttls" : "none");
	return 0;
}

int
listen_open_all(struct daemon *d)
{
	size_t i;

	const struct config *cfg = d->cur->cfg;

	d->listeners = calloc(cfg->nlisten, sizeof *d->listeners);
	if (d->listeners == NULL) {
		log_msg(LOG_ERR, "listen: out of memory");
		return -1;
	}
	d->nlisteners = cfg->nlisten;
	for (i = 0; i < d->nlisteners; i++) {
		d->listeners[i].index = i;
		if (listen_one(d, &d->listeners[i], &cfg->listen[i]) != 0)
			return -1;
	}
	return 0;
}

void
listen_close_all(struct daemon *d)
{
	size_t i;

	for (i = 0; i < d->nlisteners; i++) {
		if (d->listeners[i].open && !uv_is_closing((uv_handle_t *)&d->listeners[i].tcp))
			uv_close((uv_handle_t *)&d->listeners[i].tcp, NULL);
	}
}
