"""The whole shared corpus through STAT, LIST, UIDL, TOP and RETR, compared byte for byte with the
files and with MANIFEST.tsv (make_corpus.py)."""
import re
import unittest

from harness import Pop3TestCase, expected_retr, expected_top, parse_list, snapshot


class CorpusTest(Pop3TestCase):
    """One daemon and one corpus per test (tests are cheap; no shared state between them)."""

    def setUp(self):
        self.d = self.daemon(corpus_for=("alice",))
        self.corpus = self.d.corpora["alice"]
        self.c = self.session(self.d, "alice")

    def uidls(self):
        st, data = self.c.cmd_multi("UIDL")
        self.assertOK(st)
        return parse_list(data)

    def numbered(self):
        """[(msgno, CorpusMessage)] as the server numbers them, matched by UIDL."""
        out = []
        for n, uidl in self.uidls():
            self.assertIn(uidl, self.corpus.by_uidl, "server lists a file the corpus does not have")
            out.append((n, self.corpus.by_uidl[uidl]))
        return out

    def test_stat(self):
        st = self.c.cmd("STAT")
        self.assertEqual(st, b"+OK %d %d" % (len(self.corpus.listed), self.corpus.total()))

    def test_uidl_is_base_name_and_ignored_files_absent(self):
        got = self.uidls()
        self.assertEqual([n for n, _ in got], list(range(1, len(self.corpus.listed) + 1)))
        self.assertEqual(sorted(u for _, u in got), sorted(m.base for m in self.corpus.listed))
        names = {u for _, u in got}
        for m in self.corpus.ignored:   # tmp/ and dot files are never listed
            self.assertNotIn(m.base, names, m)

    def test_order_is_mtime_then_name(self):
        self.assertEqual([u for _, u in self.uidls()], [m.base for m in self.corpus.listed])

    def test_uidl_single(self):
        for n, m in self.numbered():
            self.assertEqual(self.c.cmd("UIDL %d" % n), b"+OK %d %s" % (n, m.base.encode()))

    def test_list_all_and_single(self):
        num = dict(self.numbered())
        st, data = self.c.cmd_multi("LIST")
        self.assertOK(st)
        got = parse_list(data)
        self.assertEqual(len(got), len(self.corpus.listed))
        for n, size in got:
            self.assertEqual(int(size), num[n].pop3_size, num[n])
        for n, m in num.items():
            self.assertEqual(self.c.cmd("LIST %d" % n), b"+OK %d %d" % (n, m.pop3_size))

    def test_retr_every_message_byte_exact(self):
        for n, m in self.numbered():
            with self.subTest(msg=m.why):
                st, body = self.c.cmd_multi("RETR %d" % n)
                self.assertOK(st)
                self.assertEqual(body, expected_retr(m.data))
                # LIST size is the length of the un-stuffed body, less the CRLF added to a file
                # without a final newline (that CRLF is not part of the message).
                added = 2 if m.data and not m.data.endswith(b"\n") else 0
                self.assertEqual(len(body) - added, m.pop3_size)
                self.assertEqual(self.c.cmd("LIST %d" % n), b"+OK %d %d" % (n, len(body) - added))
        # pop3d checks the same after every RETR and would have warned
        self.assertNotIn("differs from LIST", self.d.stderr())

    def test_retr_wire_form(self):
        """Every line on the wire ends with CRLF, lines starting with '.' are stuffed, and the
        terminator is alone on its line (checked on the raw bytes, before un-stuffing)."""
        for n, m in self.numbered():
            with self.subTest(msg=m.why):
                self.assertOK(self.c.cmd("RETR %d" % n))
                raw = self.c.multi_raw()
                self.assertTrue(raw.endswith(b".\r\n"))
                self.assertTrue(raw == b".\r\n" or raw.endswith(b"\r\n.\r\n"), raw[-20:])
                self.assertNotIn(b"\r\n.\r\n", raw[:-3])
                bare = re.search(rb"(?<!\r)\n", raw)
                self.assertIsNone(bare, "bare LF at %d" % (bare.start() if bare else 0))

    def test_top_every_message(self):
        for n, m in self.numbered():
            for lines in (0, 1, 2, 5, 1000000):
                with self.subTest(msg=m.why, lines=lines):
                    st, body = self.c.cmd_multi("TOP %d %d" % (n, lines))
                    self.assertOK(st)
                    self.assertEqual(body, expected_top(m.data, lines))

    def test_top_does_not_mark_seen(self):
        """TOP is not RETR: after QUIT the message stays in new/ under its name."""
        before = snapshot(self.corpus.maildir)
        for n, _ in self.numbered():
            self.assertOK(self.c.cmd_multi("TOP %d 3" % n)[0])
        self.c.quit()
        self.d.wait_session_end(1)
        self.assertEqual(snapshot(self.corpus.maildir), before)

    def test_big_message_twice_and_interleaved(self):
        """The 350 KB message, then a small one, then the big one again: no state leaks."""
        num = {m.why: n for n, m in self.numbered()}
        big = self.corpus.by_why["attachment-350k"]
        small = self.corpus.by_why["many-dots"]
        for m in (big, small, big):
            st, body = self.c.cmd_multi("RETR %d" % num[m.why])
            self.assertOK(st)
            self.assertEqual(body, expected_retr(m.data))


if __name__ == "__main__":
    unittest.main()
