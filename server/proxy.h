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
 * Parse p[0..n); stateless, so call again with the grown buffer after MORE.
 * On PROXY_OK sets *used and *r; on PROXY_MORE and PROXY_BAD nothing is set.
 * BAD comes at the first octet that no valid header could continue.
 * v1: "PROXY TCP4|TCP6 src dst sport dport\r\n", single spaces, addresses in
 * the named family (inet_pton), ports 0..65535 without heading zeroes ("0" ok,
 * "080" BAD), at most 107 octets; "PROXY UNKNOWN" then anything up to CRLF is
 * local. v2: the 12-octet signature, version 2, command LOCAL (family ignored)
 * or PROXY; INET/INET6 over STREAM give addresses, the other assigned families
 * and protocols (UNSPEC, UNIX, DGRAM) give local, unassigned ones are BAD; the
 * length must cover the family's address block; TLVs are skipped unread.
 * When r->local is 1, src and dst are zeroed (AF_UNSPEC).
 */
enum proxy_status proxy_parse(const unsigned char *p, size_t n, size_t *used, struct proxy_result *r);

#endif
