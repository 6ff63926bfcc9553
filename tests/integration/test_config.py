"""The command line: -t on good and bad configs (FILE:LINE: messages, exit 1), --version, --help,
--hash-password (its output works as a users-file password), refusing to start on a bad config."""
import os
import re
import subprocess
import unittest

from harness import Daemon, Pop3TestCase, child_env, free_port, make_maildir, pop3d_path

TIMEOUT = 30


def run(args, stdin=None, cwd="/"):
    r = subprocess.run([pop3d_path()] + args, input=stdin, capture_output=True, timeout=TIMEOUT,
                       env=child_env(), cwd=cwd)
    return r.returncode, r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")


class ConfigCheckTest(Pop3TestCase):

    def setUp(self):
        self.d = Daemon()
        self.addCleanup(self.d.cleanup_dir)
        self.d.port = free_port()
        self.d.write_files()
        self.conf = self.d.conf

    def write(self, text, name="pop3d.conf"):
        path = os.path.join(self.d.dir, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def good_lines(self):
        return self.d.config_text().splitlines()

    def assertReports(self, out, path, line, word=None):
        """out has a line starting with PATH:LINE: (mentioning word, if given)."""
        prefix = "%s:%d:" % (path, line)
        hits = [l for l in out.splitlines() if prefix in l]
        self.assertTrue(hits, "no %r in output:\n%s" % (prefix, out))
        if word:
            self.assertTrue(any(word in l for l in hits), "%r not in %r" % (word, hits))

    def test_good_config(self):
        rc, out = run(["-c", self.conf, "-t"])
        self.assertEqual(rc, 0, out)
        self.assertTrue(out.strip(), "-t printed no summary")
        self.assertNotRegex(out, re.escape(self.conf) + r":\d+:", "a good config got a problem report")

    def test_warns_when_root_would_be_refused(self):
        """No process.user and no allow_root: valid, but started as root pop3d will not serve."""
        lines = [l for l in self.good_lines() if not l.startswith("process")]
        path = self.write("\n".join(lines) + "\n", name="noprocess.conf")
        rc, out = run(["-c", path, "-t"])
        self.assertEqual(rc, 0, out)
        self.assertIn("warning: process.user is not set", out)
        rc, out = run(["-c", self.conf, "-t"])      # allow_root = true (tests run as root)
        if os.geteuid() == 0:
            self.assertNotIn("process.user is not set", out)

    def test_good_config_from_another_folder(self):
        """users_file = "users" resolves against the config's folder, not the working dir."""
        rc, out = run(["-c", self.conf, "-t"], cwd="/tmp")
        self.assertEqual(rc, 0, out)

    def test_unknown_key(self):
        lines = self.good_lines()
        lines.insert(2, "bogus_setting = 1;")
        path = self.write("\n".join(lines) + "\n")
        rc, out = run(["-c", path, "-t"])
        self.assertEqual(rc, 1, out)
        self.assertReports(out, path, 3, "bogus_setting")

    def test_unknown_key_in_group(self):
        lines = self.good_lines()
        lines[1] = lines[1].replace("failure_delay", "colour = \"red\"; failure_delay")
        path = self.write("\n".join(lines) + "\n")
        rc, out = run(["-c", path, "-t"])
        self.assertEqual(rc, 1, out)
        self.assertReports(out, path, 2, "colour")

    def test_wrong_types(self):
        lines = self.good_lines()
        lines[0] = re.sub(r"port = \d+", 'port = "110"', lines[0])
        lines[3] = re.sub(r"idle_timeout = \d+", 'idle_timeout = "ten minutes"', lines[3])
        path = self.write("\n".join(lines) + "\n")
        rc, out = run(["-c", path, "-t"])
        self.assertEqual(rc, 1, out)
        # each problem is reported, not just the first
        self.assertReports(out, path, 1, "port")
        self.assertReports(out, path, 4, "idle_timeout")

    def test_wrong_type_group_as_scalar(self):
        lines = self.good_lines()
        lines[2] = 'maildrop = "/var/mail";'
        path = self.write("\n".join(lines) + "\n")
        rc, out = run(["-c", path, "-t"])
        self.assertEqual(rc, 1, out)
        self.assertReports(out, path, 3, "maildrop")

    def test_bad_values(self):
        for bad, line in (('plaintext = "sometimes"', 2), ("port = 70000", 1),
                          ('address = "not-an-address"', 1), ("idle_timeout = 0", 4)):
            with self.subTest(bad=bad):
                key = bad.split(" ")[0]
                lines = self.good_lines()
                lines[line - 1] = re.sub(key + r' = ("[^"]*"|[\d.]+)', bad, lines[line - 1])
                self.assertIn(bad, lines[line - 1])
                path = self.write("\n".join(lines) + "\n")
                rc, out = run(["-c", path, "-t"])
                self.assertEqual(rc, 1, out)
                self.assertReports(out, path, line)

    def test_syntax_error(self):
        lines = self.good_lines()
        lines.insert(1, "this is not libconfig")
        path = self.write("\n".join(lines) + "\n")
        rc, out = run(["-c", path, "-t"])
        self.assertEqual(rc, 1, out)
        self.assertReports(out, path, 2)

    def test_missing_required_key(self):
        lines = [l for l in self.good_lines() if not l.startswith("maildrop")]
        path = self.write("\n".join(lines) + "\n")
        rc, out = run(["-c", path, "-t"])
        self.assertEqual(rc, 1, out)
        self.assertIn("maildrop", out)
        self.assertIn(path, out)

    def test_bad_template(self):
        lines = self.good_lines()
        for bad in ("/tmp/x/%q/Maildir", "relative/%u", "/tmp/x/%"):
            with self.subTest(path=bad):
                lines[2] = 'maildrop = { path = "%s"; };' % bad
                path = self.write("\n".join(lines) + "\n")
                rc, out = run(["-c", path, "-t"])
                self.assertEqual(rc, 1, out)
                self.assertReports(out, path, 3, "maildrop.path")

    def test_user_whose_maildrop_cannot_be_built(self):
        """%h needs a home: a user without one is reported at its users-file line by -t; the
        daemon logs the same and still serves everybody else."""
        lines = self.good_lines()
        lines[2] = 'maildrop = { path = "%h/Maildir"; };'
        path = self.write("\n".join(lines) + "\n")
        home = os.path.join(self.d.dir, "home", "alice")
        with open(self.d.users_file, "w") as f:
            f.write("alice:{PLAIN}alice-pw:1000:1000::%s::\nbob:{PLAIN}bob-pw\n"
                    "carol:{PLAIN}carol-pw:1000:1000::relative/home::\n" % home)
        rc, out = run(["-c", path, "-t"])
        self.assertEqual(rc, 1, out)
        self.assertReports(out, self.d.users_file, 2, "home field")
        self.assertReports(out, self.d.users_file, 3, "absolute")
        self.assertNotIn("%s:1:" % self.d.users_file, out)

        d = self.daemon(users_text="alice:{PLAIN}alice-pw:1000:1000::@DIR@/home/alice::\n"
                                   "bob:{PLAIN}bob-pw\n", maildrop_path="%h/Maildir")
        make_maildir(os.path.join(d.dir, "home", "alice", "Maildir"))
        d.wait_log("user bob has no home field")
        c = self.connect(d)
        self.assertOK(c.login("alice", "alice-pw"))
        self.assertOK(c.cmd("QUIT"))
        c = self.connect(d)
        self.assertOK(c.cmd("USER bob"))
        self.assertERR(c.cmd("PASS bob-pw"))
        c.close()

    def test_bad_users_line_at_run_time(self):
        """One unparsable line is logged with its number; the other users still log in."""
        d = self.daemon(users_text="alice:{PLAIN}alice-pw\nno-colon-here\n"
                                   "bob@example.org:{PLAIN}bob-pw\n")
        d.wait_log("%s:2:" % d.users_file)
        for user, pw in (("alice", "alice-pw"), ("bob@example.org", "bob-pw")):
            c = self.connect(d)
            self.assertOK(c.login(user, pw))
            self.assertOK(c.cmd("QUIT"))

    def test_bad_users_file_line(self):
        with open(self.d.users_file, "w") as f:
            f.write("alice:{PLAIN}alice-pw\nno-colon-here\n# comment\n\nbob:{NOSUCHSCHEME}x\n")
        rc, out = run(["-c", self.conf, "-t"])
        self.assertEqual(rc, 1, out)
        self.assertReports(out, self.d.users_file, 2)
        self.assertReports(out, self.d.users_file, 5)

    def test_missing_users_file(self):
        os.unlink(self.d.users_file)
        rc, out = run(["-c", self.conf, "-t"])
        self.assertEqual(rc, 1, out)
        self.assertReports(out, self.conf, 2, "auth.users_file")
        self.assertIn(self.d.users_file, out)

    def test_missing_config_file(self):
        path = os.path.join(self.d.dir, "nonexistent.conf")
        rc, out = run(["-c", path, "-t"])
        self.assertEqual(rc, 1, out)
        self.assertIn(path, out)

    def test_daemon_refuses_bad_config(self):
        lines = self.good_lines()
        lines.insert(2, "bogus_setting = 1;")
        path = self.write("\n".join(lines) + "\n")
        rc, out = run(["-c", path])       # not -t: must exit, not serve
        self.assertNotEqual(rc, 0, out)
        self.assertNotIn("ready", out)
        self.assertReports(out, path, 3, "bogus_setting")


class CommandLineTest(unittest.TestCase):

    def test_version(self):
        rc, out = run(["--version"])
        self.assertEqual(rc, 0, out)
        self.assertRegex(out, r"\d")

    def test_help(self):
        rc, out = run(["--help"])
        self.assertEqual(rc, 0, out)
        self.assertIn("-c", out)

    def test_unknown_option(self):
        rc, out = run(["--no-such-option"])
        self.assertNotEqual(rc, 0, out)


class HashPasswordTest(Pop3TestCase):

    def hash(self, password):
        r = subprocess.run([pop3d_path(), "--hash-password"], input=password.encode() + b"\n",
                           capture_output=True, timeout=TIMEOUT, env=child_env(), cwd="/")
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stdout.decode().splitlines()
        self.assertEqual(len(lines), 1, r.stdout)
        self.assertTrue(lines[0].startswith("$y$"), lines[0])
        self.assertNotIn(password, r.stdout.decode() + r.stderr.decode())
        return lines[0]

    def test_hash_is_salted(self):
        self.assertNotEqual(self.hash("same"), self.hash("same"))

    def test_hash_works_in_users_file(self):
        pw = "pa ss:w\u00f6rd"       # a space and a colon are part of the password
        h = self.hash(pw)
        d = self.daemon(users={"frank": h, "alice": "{PLAIN}alice-pw"}, failure_delay=0.1)
        make_maildir(d.maildir("frank"))
        rc, out = run(["-c", d.conf, "-t"])
        self.assertEqual(rc, 0, out)
        c = self.connect(d)
        self.assertOK(c.cmd("USER frank"))
        self.assertTrue(c.cmd("PASS pa ss").startswith(b"-ERR [AUTH]"))
        self.assertOK(c.cmd("USER frank"))
        self.assertTrue(c.cmd(b"PASS " + "pa ss:w\u00f6rdX".encode()).startswith(b"-ERR [AUTH]"))
        self.assertOK(c.cmd("USER frank"))
        self.assertOK(c.cmd(b"PASS " + pw.encode()))
        self.assertEqual(c.cmd("STAT"), b"+OK 0 0")
        c.quit()


if __name__ == "__main__":
    unittest.main()
