"""Raw bytes that attack the protocol (STYLE 24): overlong lines, NUL, bare LF, floods, pipelining,
clients that vanish at awkward moments, connection caps."""
import os
import random
import socket
import struct
import threading
import time
import unittest

from harness import (Client, Closed, Pop3TestCase, deliver, expected_retr, expected_top,
                     parse_list, snapshot)

PW250 = "p" * 250                 # "PASS " + PW250 is a 255-octet line (without CRLF)
USERS = {
    "alice": "{PLAIN}alice-pw",
    "longpw": "{PLAIN}" + PW250,
    "carol": "{PLAIN}carol-pw",
}


def read_response(c, multi):
    st = c.line()
    if st.startswith(b"+OK") and multi:
        return st, c.multi()
    return st, None


class LineTest(Pop3TestCase):

    def setUp(self):
        self.d = self.daemon(users=USERS)
        for u in USERS:
            deliver(self.d.maildir(u), b"Subject: s\n\nbody\n")

    def test_255_octet_line_accepted(self):
        c = self.connect(self.d)
        self.assertOK(c.cmd("USER longpw"))
        line = "PASS " + PW250
        self.assertEqual(len(line), 255)
        self.assertOK(c.cmd(line))
        self.assertEqual(c.cmd("STAT"), b"+OK 1 20")
        c.quit()

    def test_256_octet_line_rejected_not_truncated(self):
        """PASS + the right password + one more octet: -ERR, and no login with the first 255
        octets (a server that truncates would let this in). The session goes on."""
        c = self.connect(self.d)
        self.assertOK(c.cmd("USER longpw"))
        line = "PASS " + PW250 + "X"
        self.assertEqual(len(line), 256)
        self.assertERR(c.cmd(line))
        self.assertERR(c.cmd("STAT"), "logged in by a truncated line")
        c.login("longpw", PW250)
        self.assertEqual(c.cmd("STAT"), b"+OK 1 20")
        c.quit()

    def test_overlong_lines_in_transaction(self):
        c = self.session(self.d)
        for n in (256, 300, 1000, 4096, 5000, 60000):
            with self.subTest(octets=n):
                self.assertERR(c.cmd(b"NOOP" + b" " * (n - 4)))
                self.assertOK(c.cmd("NOOP"))
        self.assertEqual(c.cmd("STAT"), b"+OK 1 20")
        c.quit()

    def test_overlong_line_then_pipelined_command(self):
        """The rest of an overlong line is skipped up to its LF, not executed."""
        c = self.session(self.d)
        c.send(b"NOOP " + b"A" * 300 + b" DELE 1\r\nSTAT\r\n")
        self.assertERR(c.line())
        self.assertEqual(c.line(), b"+OK 1 20")
        c.send(b"X" * 1000 + b"\r\nDELE 1\r\n")
        self.assertERR(c.line())
        self.assertOK(c.line())
        c.quit()

    def test_nul_in_line(self):
        c = self.connect(self.d)
        self.assertERR(c.cmd(b"USER ali\x00ce"))
        self.assertOK(c.cmd("USER alice"))
        self.assertERR(c.cmd(b"PASS alice-pw\x00"))
        self.assertERR(c.cmd("STAT"), "NUL-terminated password accepted")
        self.assertERR(c.cmd(b"\x00"))
        c.login("alice", "alice-pw")
        self.assertERR(c.cmd(b"NOOP\x00"))
        self.assertERR(c.cmd(b"LIST 1\x00"))
        self.assertERR(c.cmd(b"\x00STAT"))
        self.assertOK(c.cmd("NOOP"))
        c.quit()

    def test_bare_lf_and_split_lines(self):
        c = self.connect(self.d)
        c.send(b"USER alice\nPASS alice-pw\nSTAT\n")
        self.assertOK(c.line())
        self.assertOK(c.line())
        self.assertEqual(c.line(), b"+OK 1 20")
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for piece in (b"NO", b"OP", b"\r", b"\n"):      # one command in four writes
            c.send(piece)
        self.assertOK(c.line())
        for byte in b"LIST 1\r\n":                       # one octet per write
            c.send(bytes([byte]))
        self.assertEqual(c.line(), b"+OK 1 20")
        c.quit()

    def test_trailing_and_doubled_spaces(self):
        c = self.session(self.d)
        # whatever the server decides about odd spacing, it answers exactly once per line
        c.send(b"LIST  1\r\nLIST 1 \r\n NOOP\r\nNOOP\r\n")
        for _ in range(3):
            st = c.line()
            self.assertTrue(st.startswith(b"+OK") or st.startswith(b"-ERR"), st)
        self.assertOK(c.line())
        c.quit()

    def test_binary_garbage(self):
        rnd = random.Random(1939)
        c = self.connect(self.d)
        for _ in range(8):      # below the pre-auth bad-command limit
            junk = bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 200)))
            junk = junk.replace(b"\n", b"").replace(b"\r", b"")
            st = c.cmd(b"\xff" + junk)
            self.assertERR(st)
        c.login("alice", "alice-pw")
        self.assertEqual(c.cmd("STAT"), b"+OK 1 20")
        c.quit()

    def test_flood_without_newline_disconnects(self):
        c = self.connect(self.d)
        chunk = b"A" * 65536
        sent = 0
        closed = False
        deadline = time.monotonic() + 20
        c.sock.settimeout(5)
        while sent < 8 * 1024 * 1024 and time.monotonic() < deadline:
            try:
                c.sock.sendall(chunk)
                sent += len(chunk)
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            except socket.timeout:
                break       # the server stopped reading: fine, the read below decides
        if not closed:
            c.wait_closed(timeout=10)
        self.d.wait_session_end(1)
        self.assertTrue(self.d.alive())
        c2 = self.session(self.d)
        self.assertEqual(c2.cmd("STAT"), b"+OK 1 20")
        c2.quit()


class PipelineTest(Pop3TestCase):

    def setUp(self):
        self.d = self.daemon(corpus_for=("alice",))
        self.corpus = self.d.corpora["alice"]
        self.num = {m.base: i + 1 for i, m in enumerate(self.corpus.listed)}

    def n(self, why):
        return self.num[self.corpus.by_why[why].base]

    def test_everything_in_one_write(self):
        big = self.n("attachment-350k")
        dots = self.n("many-dots")
        cmds = [("USER alice", False), ("PASS alice-pw", False), ("STAT", False), ("LIST", True),
                ("UIDL", True), ("RETR %d" % big, True), ("NOOP", False), ("LIST %d" % big, False),
                ("TOP %d 2" % dots, True), ("RETR 99", True), ("CAPA", True),
                ("RETR %d" % dots, True), ("DELE 1", False), ("STAT", False), ("RSET", False),
                ("UIDL %d" % big, False), ("QUIT", False)]
        c = self.connect(self.d)
        c.send(b"".join(cmd.encode() + b"\r\n" for cmd, _ in cmds))
        got = [read_response(c, multi) for _, multi in cmds]
        c.wait_closed()
        total = self.corpus.total()
        count = len(self.corpus.listed)
        bigm = self.corpus.by_why["attachment-350k"]
        dotm = self.corpus.by_why["many-dots"]
        self.assertOK(got[0][0])
        self.assertOK(got[1][0])
        self.assertEqual(got[2][0], b"+OK %d %d" % (count, total))
        self.assertEqual(len(parse_list(got[3][1])), count)
        self.assertEqual(len(parse_list(got[4][1])), count)
        self.assertEqual(got[5][1], expected_retr(bigm.data))
        self.assertOK(got[6][0])
        self.assertEqual(got[7][0], b"+OK %d %d" % (big, bigm.pop3_size))
        self.assertEqual(got[8][1], expected_top(dotm.data, 2))
        self.assertERR(got[9][0])
        self.assertIn(b"PIPELINING", got[10][1])
        self.assertEqual(got[11][1], expected_retr(dotm.data))
        self.assertOK(got[12][0])
        self.assertEqual(got[13][0], b"+OK %d %d" % (count - 1, total - self.corpus.listed[0].pop3_size))
        self.assertOK(got[14][0])
        self.assertEqual(got[15][0], b"+OK %d %s" % (big, bigm.base.encode()))
        self.assertOK(got[16][0])

    def test_big_retr_then_more_commands(self):
        big = self.n("attachment-350k")
        bigm = self.corpus.by_why["attachment-350k"]
        c = self.session(self.d)
        c.send(b"RETR %d\r\nLIST %d\r\nNOOP\r\nUIDL %d\r\nRETR 1\r\n" % (big, big, big))
        st, body = read_response(c, True)
        self.assertOK(st)
        self.assertEqual(body, expected_retr(bigm.data))
        self.assertEqual(c.line(), b"+OK %d %d" % (big, bigm.pop3_size))
        self.assertOK(c.line())
        self.assertEqual(c.line(), b"+OK %d %s" % (big, bigm.base.encode()))
        st, body = read_response(c, True)
        self.assertEqual(body, expected_retr(self.corpus.listed[0].data))
        c.quit()

    def test_many_big_retrs_unread(self):
        """20 RETRs of the 350 KB message in one write, read only after all are sent: the server
        must apply backpressure, not drop or reorder anything."""
        big = self.n("attachment-350k")
        want = expected_retr(self.corpus.by_why["attachment-350k"].data)
        c = self.session(self.d)
        c.send(b"RETR %d\r\n" % big * 20 + b"NOOP\r\n")
        for i in range(20):
            st, body = read_response(c, True)
            self.assertOK(st)
            self.assertEqual(len(body), len(want), i)
            self.assertEqual(body, want, i)
        self.assertOK(c.line())
        c.quit()

    def test_thousands_of_commands_in_one_write(self):
        """More pipelined input than one input buffer holds."""
        c = self.session(self.d)
        n = 3000
        payload = b"NOOP\r\nLIST 1\r\n" * (n // 2)
        # write from a thread so a server that stops reading cannot deadlock us
        t = threading.Thread(target=c.send, args=(payload,), daemon=True)
        t.start()
        want1 = b"+OK 1 %d" % self.corpus.listed[0].pop3_size
        for i in range(n):
            st = c.line()
            self.assertEqual(st[:3], b"+OK", i)
            if i % 2:
                self.assertEqual(st, want1, i)
        t.join(10)
        self.assertFalse(t.is_alive())
        c.quit()

    def test_commands_after_quit_are_not_run(self):
        before = snapshot(self.corpus.maildir)
        c = self.session(self.d)
        c.send(b"QUIT\r\nDELE 1\r\nQUIT\r\n")
        self.assertOK(c.line())
        rest = c.wait_closed()
        self.assertEqual(rest, b"", "answers after QUIT")
        self.d.wait_session_end(1)
        self.assertEqual(snapshot(self.corpus.maildir), before)

    def test_half_close_after_quit(self):
        c = self.session(self.d)
        self.assertOK(c.cmd("DELE 1"))
        c.send(b"QUIT\r\n")
        c.sock.shutdown(socket.SHUT_WR)
        self.assertOK(c.line())
        c.wait_closed()
        self.d.wait_session_end(1)
        self.assertFalse(os.path.exists(os.path.join(self.corpus.maildir,
                                                     self.corpus.listed[0].path)))


class VanishingClientTest(Pop3TestCase):

    def setUp(self):
        self.d = self.daemon(users=USERS, failure_delay=0.3, corpus_for=("alice",))

    def test_close_while_auth_pending(self):
        for pw in ("wrong", "alice-pw"):
            c = self.connect(self.d)
            c.send(b"USER alice\r\nPASS " + pw.encode() + b"\r\n")
            c.close()
        self.d.wait_session_end(2)
        c = self.session(self.d)      # no lock left behind by the vanished sessions
        self.assertOK(c.cmd("STAT"))
        c.quit()

    def test_reset_mid_retr(self):
        big = [i + 1 for i, m in enumerate(self.d.corpora["alice"].listed)
               if m.why == "attachment-350k"][0]
        for _ in range(3):
            c = self.session(self.d)
            c.send(b"RETR %d\r\n" % big)
            c.line()
            # RST instead of FIN
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            c.close()
        self.d.wait_session_end(3)
        c = self.session(self.d)
        self.assertOK(c.cmd("STAT"))
        c.quit()

    def test_sigterm_with_sessions_open(self):
        before = snapshot(self.d.corpora["alice"].maildir)
        a = self.session(self.d)
        self.assertOK(a.cmd("DELE 1"))
        a.send(b"RETR 2\r\n")        # unread output in flight
        b = self.connect(self.d)     # one in AUTHORIZATION
        b.send(b"USER carol\r\n")
        self.d.stop()                # raises if the exit is not clean
        self.assertEqual(snapshot(self.d.corpora["alice"].maildir), before,
                         "shutdown ran UPDATE for a session without QUIT")


class ConnectionCapTest(Pop3TestCase):

    def test_per_ip_cap(self):
        d = self.daemon(max_connections_per_ip=3)
        held = [self.connect(d) for _ in range(3)]
        for c in held:
            self.assertOK(c.greeting)
        extra = Client(d.port, greeting=False)
        self.addCleanup(extra.close)
        try:
            first = extra.line()
        except (Closed, ConnectionError):
            first = b""
        self.assertFalse(first.startswith(b"+OK"), "4th connection from one IP greeted: %r" % first)
        held[0].quit()
        # When the server counts the closed connection out is not observable: poll (deadline 5 s).
        deadline = time.monotonic() + 5
        while True:
            c = Client(d.port, greeting=False)
            self.addCleanup(c.close)
            try:
                if c.line().startswith(b"+OK"):
                    break
            except (Closed, ConnectionError):
                pass
            self.assertLess(time.monotonic(), deadline, "a freed slot was never given back")
            c.close()
            time.sleep(0.05)
        c.quit()

    def test_many_concurrent_connections(self):
        d = self.daemon()
        conns = [self.connect(d) for _ in range(40)]
        for c in conns:
            c.send(b"CAPA\r\n")
        for c in conns:
            st, data = read_response(c, True)
            self.assertOK(st)
            self.assertIn(b"UIDL", data)
        for c in conns:
            c.quit()


if __name__ == "__main__":
    unittest.main()
