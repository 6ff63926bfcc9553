"""PROXY protocol listeners (issue 5, "Several nodes behind a load balancer"), with raw sockets
against one pop3d: v1 TCP4/TCP6/UNKNOWN, v2 INET/INET6/LOCAL built byte by byte after HAProxy's
proxy-protocol.txt, a header sharing its write with the first commands, a header trickled one
octet per write, an untrusted peer, invalid headers, the 3 s header deadline, the per-IP cap
counting the header's address, the authentication backoff keyed by the header's address (per IPv4
address, per IPv6 /64, none for limits.trusted), the address every log line carries, and implicit
TLS behind a header. IPv6 clients come only from headers: no IPv6 socket is needed.

Nothing sleeps for a guessed time: waits are for a reply, a close or a log line, except the
deliberate pacing of the trickling clients, which is what those tests are about.
"""
import ipaddress
import os
import re
import select
import socket
import struct
import sys
import time
import unittest

# tests/run.py puts this folder on sys.path; `python3 -m unittest tests/integration/...` does not.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import Client, Daemon, Pop3TestCase, deliver, free_port, pop3_size  # noqa: E402
from tlsutil import TlsClient, client_context, test_certs  # noqa: E402

PROXY_TIMEOUT = 3.0           # server/limits.h PROXY_TIMEOUT_MS
V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"
MSG = b"Subject: one\n\nbody\n"
STAT_ONE = b"+OK 1 %d" % pop3_size(MSG)


# ---------------------------------------------------------------- headers (proxy-protocol.txt)

def v1(src, dst, sport, dport):
    fam = "TCP6" if ":" in src else "TCP4"
    return ("PROXY %s %s %s %d %d\r\n" % (fam, src, dst, sport, dport)).encode()


def v2(src=None, dst=None, sport=0, dport=0, local=False, tlvs=b"", family=None):
    """A v2 header. local: command LOCAL with family UNSPEC and no address block. family
    overrides the family/protocol octet (0x11 TCP over IPv4, 0x21 TCP over IPv6)."""
    if local:
        return V2_SIG + struct.pack("!BBH", 0x20, 0x00 if family is None else family,
                                    len(tlvs)) + tlvs
    a = ipaddress.ip_address(src)
    b = ipaddress.ip_address(dst)
    if a.version == 4:
        block = struct.pack("!4s4sHH", a.packed, b.packed, sport, dport)
        fam = 0x11
    else:
        block = struct.pack("!16s16sHH", a.packed, b.packed, sport, dport)
        fam = 0x21
    if family is not None:
        fam = family
    body = block + tlvs
    return V2_SIG + struct.pack("!BBH", 0x21, fam, len(body)) + body


def tlv(kind, value):
    return struct.pack("!BH", kind, len(value)) + value


# ---------------------------------------------------------------- daemon with PROXY listeners

class ProxyDaemon(Daemon):
    """harness.Daemon whose listener (self.port) requires a PROXY header from `trusted`;
    with tls=True a second PROXY listener with implicit TLS (self.tls_port)."""

    def __init__(self, trusted=("127.0.0.1",), tls=False, **kw):
        super().__init__(**kw)
        self.trusted = trusted
        self.tls = tls
        self.tls_port = None

    def write_files(self):
        if self.tls:
            for _ in range(20):
                self.tls_port = free_port()
                if self.tls_port != self.port:
                    break
            test_certs().copy_into(self.dir)
        super().write_files()

    def config_text(self):
        text = super().config_text()
        old = 'listen = ( { address = "127.0.0.1"; port = %d; } );' % self.port
        assert old in text, text
        pt = "proxy_protocol = true; proxy_trusted = ( %s );" % ", ".join(
            '"%s"' % t for t in self.trusted)
        entries = ['{ address = "127.0.0.1"; port = %d; %s }' % (self.port, pt)]
        if self.tls:
            entries.append('{ address = "127.0.0.1"; port = %d; tls = "implicit"; %s }'
                           % (self.tls_port, pt))
        text = text.replace(old, "listen = ( %s );" % ",\n           ".join(entries))
        if self.tls:
            cert, key = (os.path.basename(p) for p in test_certs().files("default"))
            text += 'tls = { certificate = "%s"; key = "%s"; };\n' % (cert, key)
        return text


class RawClient(Client):
    """harness.Client that connects without reading a greeting, optionally from another
    loopback source address, with Nagle off so each send() is its own segment."""

    def __init__(self, port, source=None, timeout=10.0):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        if source is not None:
            self.sock.bind((source, 0))
        self.sock.connect(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.local_port = self.sock.getsockname()[1]    # kept: the socket is closed at QUIT
        self.timeout = timeout
        self.buf = bytearray()
        self.greeting = None

    def nothing_yet(self):
        """True when the server has sent nothing and not closed (non-blocking look)."""
        r, _, _ = select.select([self.sock], [], [], 0)
        return not r and not self.buf


class ProxyCase(Pop3TestCase):

    def pdaemon(self, **kw):
        d = ProxyDaemon(**kw)
        self.addCleanup(d.cleanup_dir)
        self.addCleanup(d.stop)
        d.start()
        return d

    def raw(self, d, port=None, source=None):
        c = RawClient(port or d.port, source=source)
        self.addCleanup(c.close)
        return c

    def greeted(self, d, header, port=None):
        """Connect, send header, expect the greeting."""
        c = self.raw(d, port)
        c.send(header)
        c.greeting = c.line()
        self.assertOK(c.greeting)
        return c

    def assertClosedSilently(self, c, timeout=5.0):
        """The server closes without sending a single octet."""
        data = c.wait_closed(timeout)
        self.assertEqual(data, b"", "server replied before closing")

    def session_end(self, d, ip, port):
        """The session end line for a client at ip:port (waits for it)."""
        return d.wait_log("ip=%s port=%d " % (ip, port))


# ---------------------------------------------------------------- valid headers

# Proxied ports below are under 32768, outside Linux's ephemeral range, so they never equal the
# test client's own source port.

class HeaderTest(ProxyCase):

    def setUp(self):
        self.d = self.pdaemon()
        deliver(self.d.maildir("alice"), MSG)

    def full_session(self, header, ip, port):
        """Greeting, login, STAT, QUIT behind header; the login and session end lines carry
        ip (and port), never the balancer's connection."""
        c = self.greeted(self.d, header)
        self.assertNotEqual(c.local_port, port)
        c.login("alice", "alice-pw")
        self.assertEqual(c.cmd("STAT"), STAT_ONE)
        c.quit()
        end = self.session_end(self.d, ip, port)
        self.assertIn("user=alice", end)
        logins = self.d.log_lines("login id=")
        self.assertTrue(any(" ip=%s user=alice " % ip in l for l in logins), logins)
        self.assertFalse(any("port=%d " % c.local_port in l for l in self.d.lines),
                         "the balancer's connection port was logged:\n" + self.d.stderr())
        return end

    def test_v1_tcp4(self):
        self.full_session(v1("192.0.2.10", "198.51.100.1", 20001, 110), "192.0.2.10", 20001)

    def test_v1_tcp6(self):
        self.full_session(v1("2001:db8::5", "2001:db8::1", 20002, 110), "2001:db8::5", 20002)

    def test_v2_inet(self):
        self.full_session(v2("192.0.2.11", "198.51.100.1", 20003, 110), "192.0.2.11", 20003)

    def test_v2_inet6(self):
        self.full_session(v2("2001:db8:0:1::7", "2001:db8::1", 20004, 995),
                          "2001:db8:0:1::7", 20004)

    def test_v2_tlvs_are_skipped(self):
        tlvs = tlv(0x01, b"pop3") + tlv(0x04, b"\x00" * 20) + tlv(0x05, b"unique-id")
        self.full_session(v2("192.0.2.12", "198.51.100.1", 20005, 110, tlvs=tlvs),
                          "192.0.2.12", 20005)

    def test_v2_local_keeps_the_connection_address(self):
        c = self.greeted(self.d, v2(local=True))
        c.login("alice", "alice-pw")
        c.quit()
        self.assertIn("user=alice", self.session_end(self.d, "127.0.0.1", c.local_port))

    def test_v1_unknown_keeps_the_connection_address(self):
        c = self.greeted(self.d, b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n")
        c.login("alice", "alice-pw")
        c.quit()
        self.assertIn("user=alice", self.session_end(self.d, "127.0.0.1", c.local_port))

    def test_header_and_commands_in_one_write(self):
        for name, header in (("v1", v1("192.0.2.20", "198.51.100.1", 21000, 110)),
                             ("v2", v2("192.0.2.21", "198.51.100.1", 21001, 110))):
            with self.subTest(name):
                c = self.raw(self.d)
                c.send(header + b"USER alice\r\nPASS alice-pw\r\nSTAT\r\nQUIT\r\n")
                self.assertOK(c.line())                       # greeting
                self.assertOK(c.line())                       # USER
                self.assertOK(c.line())                       # PASS
                self.assertEqual(c.line(), STAT_ONE)       # STAT
                self.assertOK(c.line())                       # QUIT
                self.assertEqual(c.wait_closed(), b"")
                ip = "192.0.2.20" if name == "v1" else "192.0.2.21"
                port = 21000 if name == "v1" else 21001
                self.assertIn("user=alice", self.session_end(self.d, ip, port))

    def test_header_one_octet_per_write(self):
        """Every octet its own segment; no reply (and no close) before the last one."""
        for name, header, ip, port in (
                ("v1", v1("192.0.2.30", "198.51.100.1", 22000, 110), "192.0.2.30", 22000),
                ("v2", v2("2001:db8::30", "2001:db8::1", 22001, 110), "2001:db8::30", 22001)):
            with self.subTest(name):
                c = self.raw(self.d)
                for i in range(len(header) - 1):
                    c.send(header[i:i + 1])
                    # let the octet arrive and be parsed alone; a reply or close would show here
                    r, _, _ = select.select([c.sock], [], [], 0.01)
                    self.assertFalse(r, "server answered or closed after %d of %d header octets"
                                     % (i + 1, len(header)))
                c.send(header[-1:])
                self.assertOK(c.line())
                self.assertOK(c.cmd("CAPA"))
                c.multi()
                c.quit()
                self.session_end(self.d, ip, port)

    def test_failed_login_logs_the_header_address(self):
        c = self.greeted(self.d, v1("198.51.100.77", "198.51.100.1", 23000, 110))
        self.assertOK(c.cmd("USER alice"))
        self.assertEqual(c.cmd("PASS wrong")[:10], b"-ERR [AUTH")
        c.quit()
        line = self.d.wait_log("login failed id=")
        self.assertIn(" ip=198.51.100.77 user=alice ", line)
        self.session_end(self.d, "198.51.100.77", 23000)

    def test_a_second_header_is_a_command(self):
        """The header is read once: a PROXY line after it is an unknown POP3 command."""
        c = self.greeted(self.d, v1("192.0.2.40", "198.51.100.1", 24000, 110))
        self.assertERR(c.cmd("PROXY TCP4 192.0.2.41 198.51.100.1 24001 110"))
        c.quit()
        self.session_end(self.d, "192.0.2.40", 24000)


# ---------------------------------------------------------------- refused connections

class RefuseTest(ProxyCase):

    def test_untrusted_peer_closed_without_reply(self):
        d = self.pdaemon(trusted=("192.0.2.1",))
        c = self.raw(d)
        c.send(v1("192.0.2.50", "198.51.100.1", 25000, 110) + b"CAPA\r\n")
        self.assertClosedSilently(c)
        line = d.wait_log("proxy listener refused untrusted peer")
        self.assertIn("ip=127.0.0.1 port=%d" % c.local_port, line)
        c2 = self.raw(d)                                   # nothing sent at all
        self.assertClosedSilently(c2)
        d.wait_log("proxy listener refused untrusted peer", count=2)
        self.assertEqual(d.count_log("session end"), 0, d.stderr())
        self.assertEqual(d.count_log("ip=192.0.2.50"), 0, d.stderr())

    def test_untrusted_loopback_source(self):
        """Trusted 127.0.0.1/32 only: a connection from 127.0.0.2 is refused, 127.0.0.1 is not."""
        d = self.pdaemon(trusted=("127.0.0.1/32",))
        c = self.raw(d, source="127.0.0.2")
        c.send(v2("192.0.2.51", "198.51.100.1", 25001, 110))
        self.assertClosedSilently(c)
        self.assertIn("ip=127.0.0.2 ", d.wait_log("proxy listener refused untrusted peer"))
        ok = self.greeted(d, v2("192.0.2.51", "198.51.100.1", 25001, 110))
        ok.quit()
        self.session_end(d, "192.0.2.51", 25001)

    def test_invalid_headers_closed_without_reply(self):
        d = self.pdaemon()
        good4 = v2("192.0.2.60", "198.51.100.1", 26000, 110)
        bad = {
            "pop3 command": b"USER alice\r\n",
            "http": b"GET / HTTP/1.0\r\n\r\n",
            "v1 lower case": b"proxy TCP4 192.0.2.60 198.51.100.1 26000 110\r\n",
            "v1 double space": b"PROXY TCP4  192.0.2.60 198.51.100.1 26000 110\r\n",
            "v1 port with heading zero": b"PROXY TCP4 192.0.2.60 198.51.100.1 026000 110\r\n",
            "v1 port too large": b"PROXY TCP4 192.0.2.60 198.51.100.1 65536 110\r\n",
            "v1 ipv6 in TCP4": b"PROXY TCP4 2001:db8::1 198.51.100.1 26000 110\r\n",
            "v1 bad address": b"PROXY TCP4 192.0.2.600 198.51.100.1 26000 110\r\n",
            "v1 bare LF": b"PROXY TCP4 192.0.2.60 198.51.100.1 26000 110\n",
            "v1 too long": b"PROXY UNKNOWN " + b"x" * 120 + b"\r\n",
            "v2 version 1": good4[:12] + b"\x11" + good4[13:],
            "v2 command 2": good4[:12] + b"\x22" + good4[13:],
            "v2 family 4": good4[:13] + b"\x41" + good4[14:],
            "v2 length short of the address block": good4[:14] + b"\x00\x08" + good4[16:24],
            "v2 longer than accepted": V2_SIG + b"\x21\x11" + struct.pack("!H", 4000)
                                       + b"\x00" * 600,
        }
        n = 0
        for name, data in bad.items():
            with self.subTest(name):
                c = self.raw(d)
                c.send(data)
                self.assertClosedSilently(c)
                n += 1
                line = d.wait_log("proxy header invalid", count=n)
                self.assertIn("from=127.0.0.1", line)
        self.assertEqual(d.count_log("session end"), 0, d.stderr())
        ok = self.greeted(d, good4)      # the listener still works
        ok.quit()

    def test_header_deadline(self):
        """Silent, half a header, and a header trickled one octet per 0.4 s: each is closed
        without a reply about 3 s after connecting; no greeting is ever sent before a header."""
        d = self.pdaemon()
        silent = self.raw(d)
        half = self.raw(d)
        half.send(b"PROXY TCP4 192.0.2.70 ")
        trickle = self.raw(d)
        slow = v1("192.0.2.71", "198.51.100.1", 27000, 110)
        t0 = time.monotonic()
        socks = {silent.sock: "silent", half.sock: "half", trickle.sock: "trickle"}
        closed = {}
        sent = 0
        hard = t0 + PROXY_TIMEOUT + 3.0
        while socks and time.monotonic() < hard:
            r, _, _ = select.select(list(socks), [], [], 0.4)
            for s in r:
                try:
                    data = s.recv(4096)
                except ConnectionResetError:
                    data = b""
                self.assertEqual(data, b"", "%s got a reply before any header" % socks[s])
                closed[socks.pop(s)] = time.monotonic() - t0
            if trickle.sock in socks and sent < len(slow) - 1:
                trickle.send(slow[sent:sent + 1])
                sent += 1
        self.assertEqual(set(closed), {"silent", "half", "trickle"},
                         "still open after %.1fs: %s" % (hard - t0, sorted(socks.values())))
        for name, t in closed.items():
            self.assertGreater(t, PROXY_TIMEOUT - 0.5, "%s closed early (%.2fs)" % (name, t))
            self.assertLess(t, PROXY_TIMEOUT + 2.0, "%s closed late (%.2fs)" % (name, t))
        self.assertLess(sent, len(slow) - 1, "the trickled header completed before the deadline")
        d.wait_log("proxy header timeout", count=3)
        self.assertEqual(d.count_log("ip=192.0.2.7"), 0, d.stderr())


# ---------------------------------------------------------------- per-IP cap

class PerIpCapTest(ProxyCase):

    def test_cap_counts_the_header_address(self):
        d = self.pdaemon(max_connections_per_ip=1)
        a = self.greeted(d, v2("203.0.113.5", "198.51.100.1", 28000, 110))
        b = self.raw(d)
        b.send(v2("203.0.113.5", "198.51.100.1", 28001, 110))
        st = b.line()
        self.assertTrue(st.startswith(b"-ERR [SYS/TEMP]"), st)
        self.assertIn(b"your address", st)
        b.wait_closed()
        self.assertIn("ip=203.0.113.5 ", d.wait_log("connection refused"))
        # another client address behind the same balancer connection address is fine,
        # in v1 and v2, and so is the balancer itself (LOCAL)
        c = self.greeted(d, v1("203.0.113.6", "198.51.100.1", 28002, 110))
        e = self.greeted(d, v2("2001:db8::6", "2001:db8::1", 28003, 110))
        f = self.greeted(d, v2(local=True))
        for x in (c, e, f):
            x.quit()
        # once a's session has ended its slot is free again
        a.quit()
        self.session_end(d, "203.0.113.5", 28000)
        g = self.greeted(d, v1("203.0.113.5", "198.51.100.1", 28004, 110))
        g.quit()
        self.session_end(d, "203.0.113.5", 28004)


# ---------------------------------------------------------------- backoff keyed by the header

class ProxyBackoffDaemon(ProxyDaemon):
    """ProxyDaemon without the failure delay: the backoff alone is measured."""

    def __init__(self, **kw):
        super().__init__(failure_delay=0, **kw)


class BackoffTest(ProxyCase):
    """The per-address backoff counts the address from the PROXY header (every connection here
    comes from 127.0.0.1), per IPv4 address and per IPv6 /64, and skips limits.trusted."""

    BASE_MS = 50

    def bdaemon(self, trusted=None):
        extra = ("auth_backoff_base = %s; auth_backoff_max = 5.0; auth_backoff_forget = 600;"
                 % repr(self.BASE_MS / 1000.0))
        if trusted:
            extra += " trusted = ( %s );" % ", ".join('"%s"' % t for t in trusted)
        d = ProxyBackoffDaemon(limits_extra=extra)
        self.addCleanup(d.cleanup_dir)
        self.addCleanup(d.stop)
        d.start()
        return d

    def backoff(self, d, header, ip):
        """One failed login behind header; the backoff_ms its "login failed" line shows."""
        n = d.count_log("login failed")
        c = self.greeted(d, header)
        self.assertOK(c.cmd("USER alice"))
        self.assertTrue(c.cmd("PASS wrong").startswith(b"-ERR [AUTH]"))
        c.quit()
        line = d.wait_log("login failed", count=n + 1)
        self.assertIn(" ip=%s user=alice " % ip, line)
        m = re.search(r" backoff_ms=(\d+)", line)
        self.assertIsNotNone(m, line)
        return int(m.group(1))

    def test_ipv4_header_address_is_the_key(self):
        d = self.bdaemon()
        b = self.BASE_MS
        self.assertEqual(self.backoff(d, v1("192.0.2.50", "198.51.100.1", 25000, 110),
                                      "192.0.2.50"), b)
        self.assertEqual(self.backoff(d, v2("192.0.2.50", "198.51.100.1", 25001, 110),
                                      "192.0.2.50"), 2 * b)
        # same balancer connection address (127.0.0.1), another client: its own count
        self.assertEqual(self.backoff(d, v1("192.0.2.51", "198.51.100.1", 25002, 110),
                                      "192.0.2.51"), b)
        self.assertEqual(self.backoff(d, v2("192.0.2.50", "198.51.100.1", 25003, 110),
                                      "192.0.2.50"), 4 * b)

    def test_ipv6_counts_per_64(self):
        d = self.bdaemon()
        b = self.BASE_MS
        # three addresses of 2001:db8:1:2::/64, over v1 and v2: one count
        self.assertEqual(self.backoff(d, v1("2001:db8:1:2::1", "2001:db8::1", 25100, 110),
                                      "2001:db8:1:2::1"), b)
        self.assertEqual(self.backoff(d, v2("2001:db8:1:2::ffff", "2001:db8::1", 25101, 110),
                                      "2001:db8:1:2::ffff"), 2 * b)
        self.assertEqual(self.backoff(d, v1("2001:db8:1:2:aaaa::9", "2001:db8::1", 25102, 110),
                                      "2001:db8:1:2:aaaa::9"), 4 * b)
        # the next /64 starts from zero
        self.assertEqual(self.backoff(d, v2("2001:db8:1:3::1", "2001:db8::1", 25103, 110),
                                      "2001:db8:1:3::1"), b)

    def test_trusted_networks_get_no_backoff(self):
        d = self.bdaemon(trusted=("2001:db8:9::/48", "192.0.2.128/25"))
        for i, (ip, hdr) in enumerate((("2001:db8:9:1::1", v1), ("2001:db8:9:ffff::2", v2),
                                       ("2001:db8:9:1::1", v2), ("192.0.2.200", v1),
                                       ("192.0.2.200", v2))):
            with self.subTest(ip=ip):
                dst = "2001:db8::1" if ":" in ip else "198.51.100.1"
                self.assertEqual(self.backoff(d, hdr(ip, dst, 25200 + i, 110), ip), 0)
        # just outside the trusted blocks: counted
        self.assertEqual(self.backoff(d, v1("2001:db8:a::1", "2001:db8::1", 25210, 110),
                                      "2001:db8:a::1"), self.BASE_MS)
        self.assertEqual(self.backoff(d, v2("192.0.2.127", "198.51.100.1", 25211, 110),
                                      "192.0.2.127"), self.BASE_MS)
        # the balancer itself (127.0.0.1) is not trusted for the backoff: a LOCAL header
        # keys the count on it
        self.assertEqual(self.backoff(d, v2(local=True), "127.0.0.1"), self.BASE_MS)


# ---------------------------------------------------------------- implicit TLS behind a header

class ImplicitTlsTest(ProxyCase):

    def test_header_then_handshake(self):
        d = self.pdaemon(tls=True)
        deliver(d.maildir("alice"), MSG)
        for name, header, ip, port in (
                ("v2", v2("192.0.2.80", "198.51.100.1", 29000, 995), "192.0.2.80", 29000),
                ("v1", v1("2001:db8::80", "2001:db8::1", 29001, 995), "2001:db8::80", 29001)):
            with self.subTest(name):
                c = TlsClient(d.tls_port, greeting=False)
                self.addCleanup(c.close)
                c.send(header)
                c.start_tls(client_context(test_certs().cafile))
                self.assertOK(c.line())
                c.login("alice", "alice-pw")
                self.assertEqual(c.cmd("STAT"), STAT_ONE)
                c.quit()
                self.assertIn("tls=yes", self.session_end(d, ip, port))


if __name__ == "__main__":
    unittest.main()
