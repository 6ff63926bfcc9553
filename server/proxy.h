/*
 * proxy: a pure parser for HAProxy's PROXY protocol header, versions 1 (text)
 * and 2 (binary), which a load balancer sends before the client's first byte.
 * Never allocates, never reads past the bytes it is given.
 */
#ifndef POP3D_PROXY_H
#define POP3D_PROXY_H

#include <stddef.h>
#include <sys/socket.h>

/* v1 is at most 107 octets; v2 is 16 + a 16-bit length. We accept v2 TLVs up to this. */
#define PROXY_HEADER_MAX (16 + 512)

enum proxy_status {
	PROXY_MORE,      /* a valid prefix: need more octets */
	PROXY_OK,        /* complete: *used octets form the header; the rest is the client's */
	PROXY_BAD        /* not a valid header (or longer than PROXY_HEADER_MAX) */
};

struct proxy_result {
	int                     local;   /* v2 LOCAL / v1 UNKNOWN: keep the connection's own address */
	struct sockaddr_storage src;     /* client address and port (AF_INET or AF_INET6) */
	struct sockaddr_storage dst;     /* address and port the client connected to */
};

/*
 * Parse p[0..n). On PROXY_OK sets *used and *r. On PROXY_MORE nothing is set.
 * v1: "PROXY TCP4|TCP6|UNKNOWN src dst sport dport\r\n" with strict numbers
 * and addresses; v2: the 12-octet signature, version 2, command LOCAL or PROXY,
 * family INET/INET6 over STREAM (others: treated as LOCAL), TLVs skipped.
 */
enum proxy_status proxy_parse(const unsigned char *p, size_t n, size_t *used, struct proxy_result *r);

#endif
