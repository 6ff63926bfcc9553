"""What sessions do to the maildir: UPDATE, dropped connections, locks, delivery during a session,
the idle timeout."""
import hashlib
import os
import socket
import time
import unittest

from harness import (Pop3TestCase, apop_timestamp, deliver, pop3_size, expected_retr, make_maildir,
                     parse_list, snapshot)


class UpdateTest(Pop3TestCase):

    def setUp(self):
        self.d = self.daemon(corpus_for=("alice",))
        self.corpus = self.d.corpora["alice"]
        self.md = self.corpus.maildir

    def numbers(self, c):
        st, data = c.cmd_multi("UIDL")
        self.assertOK(st)
        return {u: n for n, u in parse_list(data)}

    def test_quit_removes_deleted_and_marks_retrieved_seen(self):
        before = snapshot(self.md)
        c = self.session(self.d)
        num = self.numbers(c)
        by = self.corpus.by_why
        retr_only = [by["plain-lf"], by["no-final-newline"], by["seen-in-cur"]]
        dele_only = [by["crlf-already"], by["zero-bytes"]]
        retr_dele = [by["dot-lines"]]
        for m in retr_only + retr_dele:
            st, body = c.cmd_multi("RETR %d" % num[m.base])
            self.assertEqual(body, expected_retr(m.data))
        for m in dele_only + retr_dele:
            self.assertOK(c.cmd("DELE %d" % num[m.base]))
        c.quit()
        self.d.wait_session_end(1)
        after = snapshot(self.md)
        expect = dict(before)
        for m in dele_only + retr_dele:
            del expect[m.path]
        for m in retr_only:
            data = expect.pop(m.path)
            expect["cur/" + m.base + ":2,S"] = data
        self.assertEqual(sorted(after), sorted(expect))
        self.assertEqual(after, expect)

    def test_uidls_survive_the_move_to_cur(self):
        """Clients track messages by UIDL: after RETR + QUIT moves messages to cur/ with the S
        flag, the next session lists the same UIDLs, numbers and sizes."""
        c = self.session(self.d)
        st, uidl1 = c.cmd_multi("UIDL")
        st, list1 = c.cmd_multi("LIST")
        for n in range(1, len(self.corpus.listed) + 1):
            self.assertOK(c.cmd_multi("RETR %d" % n)[0])
        c.quit()
        self.d.wait_session_end(1)
        self.assertEqual(os.listdir(os.path.join(self.md, "new")), [".hidden-dotfile"])
        c = self.session(self.d)
        st2, uidl2 = c.cmd_multi("UIDL")
        st2, list2 = c.cmd_multi("LIST")
        self.assertEqual(uidl2, uidl1)
        self.assertEqual(list2, list1)
        c.quit()

    def test_rset_undoes_dele(self):
        before = snapshot(self.md)
        c = self.session(self.d)
        for n in range(1, len(self.corpus.listed) + 1):
            self.assertOK(c.cmd("DELE %d" % n))
        self.assertEqual(c.cmd("STAT"), b"+OK 0 0")
        self.assertOK(c.cmd("RSET"))
        self.assertEqual(c.cmd("STAT"), b"+OK %d %d" % (len(self.corpus.listed), self.corpus.total()))
        c.quit()
        self.d.wait_session_end(1)
        self.assertEqual(snapshot(self.md), before)

    def test_delete_everything(self):
        c = self.session(self.d)
        for n in range(1, len(self.corpus.listed) + 1):
            self.assertOK(c.cmd("DELE %d" % n))
        c.quit()
        self.d.wait_session_end(1)
        left = set(snapshot(self.md))
        self.assertEqual(left, {m.path for m in self.corpus.ignored})   # tmp/ and dot file stay
        c = self.session(self.d)
        self.assertEqual(c.cmd("STAT"), b"+OK 0 0")
        c.quit()

    def test_dropped_connection_deletes_nothing(self):
        before = snapshot(self.md)
        c = self.session(self.d)
        for n in range(1, len(self.corpus.listed) + 1):
            self.assertOK(c.cmd_multi("RETR %d" % n)[0])
            self.assertOK(c.cmd("DELE %d" % n))
        c.close()   # no QUIT: no UPDATE
        line = self.d.wait_session_end(1)
        self.assertIn("user=alice", line)
        self.assertEqual(snapshot(self.md), before, "a dropped session changed the maildir")
        # and the lock went with the session
        c = self.session(self.d)
        self.assertEqual(c.cmd("STAT"), b"+OK %d %d" % (len(self.corpus.listed), self.corpus.total()))
        c.quit()

    def test_dropped_during_retr_deletes_nothing(self):
        before = snapshot(self.md)
        c = self.session(self.d)
        num = self.numbers(c)
        self.assertOK(c.cmd("DELE 1"))
        c.send(b"RETR %d\r\n" % num[self.corpus.by_why["attachment-350k"].base])
        c.line()
        c.close()   # mid-response
        self.d.wait_session_end(1)
        self.assertEqual(snapshot(self.md), before)
        c = self.session(self.d)
        c.quit()


class LockTest(Pop3TestCase):

    def setUp(self):
        self.d = self.daemon()
        self.md = make_maildir(self.d.maildir("alice"))
        deliver(self.md, b"Subject: x\n\nx\n")

    def test_second_login_is_in_use(self):
        a = self.session(self.d)
        b = self.connect(self.d)
        self.assertOK(b.cmd("USER alice"))
        st = b.cmd("PASS alice-pw")
        self.assertTrue(st.startswith(b"-ERR [IN-USE]"), st)
        # the first session is unaffected
        self.assertEqual(a.cmd("STAT"), b"+OK 1 %d" % len(b"Subject: x\r\n\r\nx\r\n"))
        # other users are not locked out
        make_maildir(self.d.maildir("carol"))
        self.session(self.d, "carol").quit()
        a.quit()
        self.d.wait_session_end(2)
        c = self.session(self.d)
        self.assertOK(c.cmd("STAT"))
        c.quit()

    def test_lock_released_at_quit(self):
        """RFC 1939 §6 QUIT: after UPDATE "the server then releases any exclusive-access lock on
        the maildrop and closes the TCP connection". A client that got +OK for QUIT may poll
        again at once, before its old socket is fully closed (here: not closed yet)."""
        a = self.session(self.d)
        self.assertOK(a.cmd("QUIT"))
        b = self.connect(self.d)
        self.assertOK(b.cmd("USER alice"))
        st = b.cmd("PASS alice-pw")
        self.assertOK(st, "maildrop still locked after QUIT's +OK: %r" % st)
        b.quit()

    def test_lock_released_after_drop(self):
        a = self.session(self.d)
        a.close()
        self.d.wait_session_end(1)
        b = self.session(self.d)
        self.assertOK(b.cmd("STAT"))
        b.close()
        self.d.wait_session_end(2)
        c = self.session(self.d)
        c.quit()

    def test_lock_holds_between_two_processes(self):
        """Two pop3d serving one maildir store: a session on one locks the maildrop for the
        other; the lock goes with the session, and with the process when it is killed."""
        other = self.daemon(maildrop_path=self.d.maildrop_template)
        a = self.session(self.d)
        b = self.connect(other)
        self.assertOK(b.cmd("USER alice"))
        st = b.cmd("PASS alice-pw")
        self.assertTrue(st.startswith(b"-ERR [IN-USE]"), st)
        a.close()
        self.d.wait_session_end(1)
        b = self.session(other)              # the other process, once the first let go
        self.assertEqual(b.cmd("STAT"), b"+OK 1 %d" % len(b"Subject: x\r\n\r\nx\r\n"))
        c = self.connect(self.d)
        self.assertOK(c.cmd("USER alice"))
        self.assertTrue(c.cmd("PASS alice-pw").startswith(b"-ERR [IN-USE]"))
        other.proc.kill()                    # dies holding the lock: no stale lock is left
        other.proc.wait(timeout=10)
        other.stopped = True
        c = self.session(self.d)
        self.assertOK(c.cmd("STAT"))
        c.quit()

    def test_apop_sees_the_lock_too(self):
        a = self.session(self.d)
        b = self.connect(self.d)
        digest = hashlib.md5(apop_timestamp(b.greeting) + b"alice-pw").hexdigest()
        st = b.cmd("APOP alice " + digest)
        self.assertTrue(st.startswith(b"-ERR [IN-USE]"), st)
        a.quit()


class DeliveryTest(Pop3TestCase):

    def test_message_delivered_during_session_waits_for_next_session(self):
        d = self.daemon()
        md = make_maildir(d.maildir("alice"))
        old = deliver(md, b"Subject: old\n\nold\n", mtime=1700000000)
        c = self.session(d)
        self.assertEqual(c.cmd("STAT"), b"+OK 1 21")
        new_data = b"Subject: new\n\nnew message\n"
        new = deliver(md, new_data)   # tmp/ then rename into new/, as an MDA does
        self.assertEqual(c.cmd("STAT"), b"+OK 1 21")
        st, data = c.cmd_multi("UIDL")
        self.assertEqual(parse_list(data), [(1, old)])
        st, data = c.cmd_multi("LIST")
        self.assertEqual(parse_list(data), [(1, "21")])
        self.assertERR(c.cmd("RETR 2"))
        self.assertERR(c.cmd("LIST 2"))
        self.assertOK(c.cmd("DELE 1"))
        c.quit()
        d.wait_session_end(1)
        self.assertEqual(sorted(os.listdir(os.path.join(md, "new"))), [new])
        c = self.session(d)
        self.assertEqual(c.cmd("STAT"), b"+OK 1 %d" % (len(new_data) + 3))
        st, data = c.cmd_multi("UIDL")
        self.assertEqual(parse_list(data), [(1, new)])
        st, body = c.cmd_multi("RETR 1")
        self.assertEqual(body, expected_retr(new_data))
        c.quit()

    def test_file_removed_by_another_program_during_session(self):
        """Another client (or a cleanup job) removes a listed message: RETR may fail with -ERR,
        but the daemon survives and UPDATE still works."""
        d = self.daemon()
        md = make_maildir(d.maildir("alice"))
        a = deliver(md, b"Subject: a\n\na\n", mtime=1700000000)
        deliver(md, b"Subject: b\n\nb\n", mtime=1700000001)
        c = self.session(d)
        os.unlink(os.path.join(md, "new", a))
        st = c.cmd("RETR 1")
        if st.startswith(b"+OK"):
            c.multi()
        self.assertOK(c.cmd("DELE 1"))
        st, body = c.cmd_multi("RETR 2")
        self.assertEqual(body, b"Subject: b\r\n\r\nb\r\n")
        c.quit()
        d.wait_session_end(1)
        self.assertEqual(os.listdir(os.path.join(md, "new")), [])
        self.assertEqual(len(os.listdir(os.path.join(md, "cur"))), 1)


    def test_file_renamed_by_another_program_during_session(self):
        """Another program moves a listed message to cur/ with flags: RETR still finds it by its
        base name and sends it whole."""
        d = self.daemon()
        md = make_maildir(d.maildir("alice"))
        data = b"Subject: moved\n\n.moved\n"
        a = deliver(md, data, mtime=1700000000)
        c = self.session(d)
        os.rename(os.path.join(md, "new", a), os.path.join(md, "cur", a + ":2,F"))
        st, body = c.cmd_multi("RETR 1")
        self.assertOK(st)
        self.assertEqual(body, expected_retr(data))
        self.assertEqual(c.cmd("UIDL 1"), b"+OK 1 " + a.encode())
        c.quit()


class MaildirLayoutTest(Pop3TestCase):

    def test_empty_maildir(self):
        d = self.daemon()
        make_maildir(d.maildir("alice"))
        c = self.session(d)
        self.assertEqual(c.cmd("STAT"), b"+OK 0 0")
        st, data = c.cmd_multi("LIST")
        self.assertEqual((st[:3], data), (b"+OK", b""))
        st, data = c.cmd_multi("UIDL")
        self.assertEqual((st[:3], data), (b"+OK", b""))
        self.assertERR(c.cmd("RETR 1"))
        c.quit()

    def test_missing_maildir_is_created(self):
        d = self.daemon()
        path = os.path.join(d.dir, "mail", "alice", "Maildir")
        self.assertFalse(os.path.exists(path))
        c = self.session(d)
        self.assertEqual(c.cmd("STAT"), b"+OK 0 0")
        c.quit()
        for sub in ("new", "cur", "tmp"):
            self.assertTrue(os.path.isdir(os.path.join(path, sub)), sub)

    def test_template_domain_and_local_part(self):
        d = self.daemon()
        md = d.maildir("bob@example.org")
        self.assertTrue(md.endswith("/mail/example.org/bob/Maildir"), md)
        deliver(md, b"Subject: bob\n\nfor bob\n")
        c = self.session(d, "bob@example.org")
        st, body = c.cmd_multi("RETR 1")
        self.assertEqual(body, b"Subject: bob\r\n\r\nfor bob\r\n")
        c.quit()

    def test_template_home(self):
        d = self.daemon(users_text="henry:{PLAIN}henry-pw::::@DIR@/home/henry::\n",
                        maildrop_path="%h/Maildir")
        md = make_maildir(os.path.join(d.dir, "home", "henry", "Maildir"))
        deliver(md, b"Subject: h\n\nhome\n")
        c = self.connect(d)
        c.login("henry", "henry-pw")
        self.assertEqual(c.cmd("STAT"), b"+OK 1 %d" % len(b"Subject: h\r\n\r\nhome\r\n"))
        c.quit()

    def test_wrong_size_in_name_is_logged(self):
        """A ,W= size in the name is trusted for LIST (that is its point); when RETR then sends
        another count, the mismatch is logged so the admin can find the file."""
        d = self.daemon()
        md = make_maildir(d.maildir("alice"))
        body = b"Subject: w\n\n.dot\nbody\n"       # 25 octets in CRLF form, one stuffed dot
        right = deliver(md, body, name="1700000000.M1.host,W=%d" % pop3_size(body))
        wrong = deliver(md, body, name="1700000001.M2.host,W=%d" % (pop3_size(body) + 5))
        c = self.session(d)
        self.assertEqual(c.cmd("LIST 2"), b"+OK 2 %d" % (pop3_size(body) + 5))
        for n in (1, 2):
            st, got = c.cmd_multi("RETR %d" % n)
            self.assertEqual(got, b"Subject: w\r\n\r\n.dot\r\nbody\r\n")
        c.quit()
        line = d.wait_log("differs from LIST")
        self.assertIn(wrong, line)
        self.assertIn("listed=%d sent=%d" % (pop3_size(body) + 5, pop3_size(body)), line)
        self.assertEqual(d.count_log("differs from LIST"), 1, right)

    def test_long_and_odd_file_names(self):
        """UIDL is the base name when it is 1..70 printable octets; otherwise the server must
        send something else that is valid (1..70 octets in 0x21..0x7E), still unique."""
        d = self.daemon()
        md = make_maildir(d.maildir("alice"))
        ok70 = "A" * 70
        long71 = "B" * 71
        spaced = "has space"
        for i, name in enumerate((ok70, long71, spaced, "C" * 200 + ":2,S")):
            sub = "cur" if ":" in name else "new"
            path = os.path.join(md, sub, name)
            with open(path, "wb") as f:
                f.write(b"Subject: %d\n\n" % i)
            os.utime(path, (1700000000 + i, 1700000000 + i))
        c = self.session(d)
        st, data = c.cmd_multi("UIDL")
        got = parse_list(data)
        self.assertEqual(len(got), 4)
        self.assertEqual(got[0], (1, ok70))
        uidls = [u for _, u in got]
        self.assertEqual(len(set(uidls)), 4)
        for u in uidls:
            self.assertTrue(1 <= len(u) <= 70 and all(0x21 <= ord(ch) <= 0x7E for ch in u), u)
        self.assertNotEqual(uidls[1], long71)
        c.quit()


class IdleTimeoutTest(Pop3TestCase):

    def test_idle_timeout_closes_without_update(self):
        d = self.daemon(idle_timeout=2, corpus_for=("alice",))
        md = d.corpora["alice"].maildir
        before = snapshot(md)
        c = self.session(d)
        self.assertOK(c.cmd("DELE 1"))
        self.assertOK(c.cmd_multi("RETR 2")[0])
        t0 = time.monotonic()
        c.wait_closed(timeout=15)
        took = time.monotonic() - t0
        self.assertGreaterEqual(took, 1.5, "closed before the idle timeout")
        self.assertLess(took, 10)
        d.wait_session_end(1)
        self.assertEqual(snapshot(md), before, "idle timeout ran UPDATE")
        # the timeout released the lock, and the next session sees every message again
        c = self.session(d)
        st = c.cmd("STAT")
        self.assertEqual(st, b"+OK %d %d" % (len(d.corpora["alice"].listed),
                                           d.corpora["alice"].total()))
        c.quit()

    def test_idle_timeout_in_authorization(self):
        d = self.daemon(idle_timeout=2)
        c = self.connect(d)
        t0 = time.monotonic()
        c.wait_closed(timeout=15)
        self.assertGreaterEqual(time.monotonic() - t0, 1.5)

    def test_activity_resets_the_timer(self):
        d = self.daemon(idle_timeout=2)
        make_maildir(d.maildir("alice"))
        c = self.session(d)
        t0 = time.monotonic()
        # a NOOP every ~0.7 s for ~3.5 s: longer than the timeout, never idle for 2 s
        for _ in range(5):
            c.sock.settimeout(0.7)
            try:
                data = c.sock.recv(1)   # waits 0.7 s for an event that must not come
                self.fail("server sent %r / closed while the client was active" % data)
            except socket.timeout:
                pass
            c.sock.settimeout(c.timeout)
            self.assertOK(c.cmd("NOOP"))
        self.assertGreater(time.monotonic() - t0, 3.0)
        c.quit()


if __name__ == "__main__":
    unittest.main()
