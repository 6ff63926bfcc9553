"""Privilege drop: the real pop3d started as root with a process group (server/privdrop.c).

With process.user = "nobody" and process.group = "nogroup" the daemon must, by the time it
prints its `ready` line, be nobody/nogroup in every id the kernel keeps (/proc/PID/status: real,
effective, saved and file-system uid and gid), hold only nobody's supplementary groups (never
0) and no capability, and still serve a login, a RETR and an UPDATE in a maildir owned by nobody.
Without process.user it refuses to serve as root unless process.allow_root = true. A user that
does not exist, a user with uid 0 (without allow_root), and a user other than the current one when
not started as root, stop the start. A SIGHUP after the drop reads the files as that user: a users
file it cannot read is rejected, logged, and the running settings stay.
These tests need root (they skip otherwise) and the nobody user and nogroup group of Debian.
"""
import grp
import os
import pwd
import signal
import subprocess
import unittest

from harness import (READY_TIMEOUT, Daemon, DaemonError, Pop3TestCase, child_env, deliver,
                     free_port, pop3d_path)

READY = ": ready"    # the startup line; a bare "ready" would also match "already in use"
REFUSE_ROOT = "refusing to serve as root: set process.user, or process.allow_root = true"
MSG = b"From: a@example.org\nSubject: dropped\n\nserved by nobody\n"


def lookup(user, group):
    try:
        return pwd.getpwnam(user), grp.getgrnam(group)
    except KeyError:
        return None, None


NOBODY, NOGROUP = lookup("nobody", "nogroup")


def proc_status(pid):
    """{field: [values]} for the Uid, Gid, Groups, CapPrm, CapEff and CapAmb lines."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            key, _, val = line.partition(":")
            if key in ("Uid", "Gid", "Groups", "CapPrm", "CapEff", "CapAmb"):
                out[key] = val.split()
    return out


def process_config(**kv):
    """process = { ... }; from keyword arguments (str -> string, bool -> true/false)."""
    items = []
    for k, v in kv.items():
        if isinstance(v, bool):
            items.append("%s = %s;" % (k, "true" if v else "false"))
        else:
            items.append('%s = "%s";' % (k, v))
    return "process = { %s };\n" % " ".join(items)


class ProcessDaemon(Daemon):
    """A Daemon with a process group; its maildirs handed to `owner` (uid, gid) before start,
    and its temp dir opened for traversal so that user can reach them."""

    def __init__(self, process, owner=None, **kw):
        super().__init__(extra_config=process_config(**process), **kw)
        self.owner = owner

    def write_files(self):
        super().write_files()
        if self.owner is None:
            return
        os.chmod(self.dir, 0o711)    # config and users file stay root's (read before the drop)
        mail = os.path.join(self.dir, "mail")
        os.makedirs(mail, exist_ok=True)
        for root, dirs, files in os.walk(mail):
            for name in [root] + [os.path.join(root, n) for n in dirs + files]:
                os.chown(name, *self.owner)


@unittest.skipUnless(os.geteuid() == 0, "needs root")
@unittest.skipIf(NOBODY is None, "needs the nobody user and the nogroup group")
class PrivDropTest(Pop3TestCase):

    def daemon_with(self, process, owner=None, start=True, **kw):
        d = ProcessDaemon(process, owner=owner, **kw)
        self.addCleanup(d.cleanup_dir)
        self.addCleanup(d.stop)
        if start:
            d.start()
        return d

    def refused(self, d, reason):
        """Start d, expect it to exit non-zero before `ready` with reason in its log."""
        with self.assertRaises(DaemonError):
            d.start()
        err = d.stderr()
        self.assertIsNotNone(d.proc.returncode)
        self.assertGreater(d.proc.returncode, 0, "killed or died from a signal:\n" + err)
        self.assertNotIn(READY, err)
        self.assertIn(reason, err)
        return err

    def test_drops_to_nobody_everywhere(self):
        uid, gid = NOBODY.pw_uid, NOGROUP.gr_gid
        d = self.daemon_with({"user": "nobody", "group": "nogroup"}, owner=(uid, gid),
                             start=False)
        md = d.maildir("alice")
        name = deliver(md, MSG)
        d.start()

        st = proc_status(d.proc.pid)
        # real, effective, saved set, file system
        self.assertEqual(st["Uid"], [str(uid)] * 4, st)
        self.assertEqual(st["Gid"], [str(gid)] * 4, st)
        groups = set(int(g) for g in st.get("Groups", []))
        self.assertNotIn(0, groups, st)
        self.assertEqual(groups - {gid}, set(os.getgrouplist("nobody", gid)) - {gid}, st)
        for cap in ("CapPrm", "CapEff", "CapAmb"):
            self.assertEqual(int(st[cap][0], 16), 0, "%s not empty: %s" % (cap, st))

        # Still serves: login, RETR, and an UPDATE that writes into nobody's maildir.
        c = self.connect(d)
        self.assertOK(c.greeting)
        c.login("alice", d.password("alice"))
        self.assertEqual(c.cmd("STAT"), b"+OK 1 %d" % len(MSG.replace(b"\n", b"\r\n")))
        st_, data = c.cmd_multi("RETR 1")
        self.assertOK(st_)
        self.assertIn(b"served by nobody", data)
        self.assertOK(c.cmd("DELE 1"))
        c.quit()
        d.wait_session_end(1)
        self.assertFalse(any(n.startswith(name) for sub in ("new", "cur")
                             for n in os.listdir(os.path.join(md, sub))),
                         "message not removed at UPDATE:\n" + d.stderr())
        d.stop()

    def test_group_defaults_to_primary_group(self):
        uid, gid = NOBODY.pw_uid, NOBODY.pw_gid
        d = self.daemon_with({"user": "nobody"}, owner=(uid, gid))
        st = proc_status(d.proc.pid)
        self.assertEqual(st["Uid"], [str(uid)] * 4, st)
        self.assertEqual(st["Gid"], [str(gid)] * 4, st)
        d.stop()

    def test_root_without_user_refused(self):
        d = self.daemon_with({"allow_root": False}, start=False)
        self.refused(d, REFUSE_ROOT)

    def test_root_by_default_refused(self):
        # allow_root defaults to false: an empty process group is the same refusal.
        d = self.daemon_with({}, start=False)
        self.refused(d, REFUSE_ROOT)

    def test_user_with_uid_0_refused(self):
        # Naming root (or any uid-0 account) as process.user is not a drop: refused the same
        # way as no user, unless allow_root says so.
        d = self.daemon_with({"user": "root"}, start=False)
        self.refused(d, 'process.user "root" is uid 0: refusing to serve as root')

    def test_user_with_uid_0_and_allow_root_serves(self):
        d = self.daemon_with({"user": "root", "allow_root": True})
        self.assertEqual(proc_status(d.proc.pid)["Uid"], ["0"] * 4)
        d.stop()

    def test_reload_after_drop_with_unreadable_users_file(self):
        """SIGHUP after the drop reads the files as nobody: a users file only root can read
        is rejected with its error logged; the old settings stay and sessions go on."""
        uid, gid = NOBODY.pw_uid, NOGROUP.gr_gid
        d = self.daemon_with({"user": "nobody", "group": "nogroup"}, owner=(uid, gid),
                             start=False)
        deliver(d.maildir("alice"), MSG)
        d.start()
        before = self.connect(d)                     # a session open across the reload
        before.login("alice", d.password("alice"))
        self.assertEqual(os.stat(d.users_file).st_uid, 0)
        self.assertEqual(os.stat(d.users_file).st_mode & 0o777, 0o600)
        d.users["erin"] = "{PLAIN}erin-pw"           # what the rejected reload would add
        d.write_files()                              # root-owned, 0600 again
        d.proc.send_signal(signal.SIGHUP)
        line = d.wait_log("reload rejected")
        err = d.stderr()
        self.assertIn("Permission denied", err)
        self.assertIn(d.users_file, err)
        self.assertEqual(d.count_log("reloaded users="), 0, err)
        self.assertIn("running one stays in force", line)
        self.assertTrue(d.alive())
        # the open session works on; a new one uses the old users (no erin)
        self.assertTrue(before.cmd("STAT").startswith(b"+OK 1 "))
        before.quit()
        c = self.connect(d)
        c.login("bob@example.org", d.password("bob@example.org"))
        c.quit()
        e = self.connect(d)
        self.assertOK(e.cmd("USER erin"))
        self.assertTrue(e.cmd("PASS erin-pw").startswith(b"-ERR [AUTH]"))
        e.quit()
        # made readable for nobody, the same files are taken
        os.chown(d.users_file, uid, gid)
        d.proc.send_signal(signal.SIGHUP)
        d.wait_log("reloaded users=")
        e = self.connect(d)
        e.login("erin", "erin-pw")
        e.quit()
        d.stop()

    def test_check_warns_what_a_reload_could_not_read(self):
        """pop3d -t as root with process.user: a users file only root can read passes the
        check (the daemon reads it before the drop) with a warning that a reload will fail;
        once nobody can read it, no warning."""
        d = self.daemon_with({"user": "nobody", "group": "nogroup"}, start=False)
        d.port = free_port()
        d.write_files()                              # users file root's, 0600
        r = subprocess.run([pop3d_path(), "-c", d.conf, "-t"], capture_output=True, text=True,
                           env=child_env(), timeout=30)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn('warning: %s cannot be read by process.user "nobody"' % d.users_file,
                      r.stdout)
        self.assertIn("reload (SIGHUP) will be rejected", r.stdout)
        os.chmod(d.dir, 0o711)
        os.chmod(d.users_file, 0o644)
        os.chmod(d.conf, 0o644)
        r = subprocess.run([pop3d_path(), "-c", d.conf, "-t"], capture_output=True, text=True,
                           env=child_env(), timeout=30)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertNotIn("cannot be read by process.user", r.stdout)

    def test_allow_root_serves_as_root(self):
        d = self.daemon_with({"allow_root": True})
        st = proc_status(d.proc.pid)
        self.assertEqual(st["Uid"], ["0"] * 4, st)
        c = self.connect(d)
        self.assertOK(c.greeting)
        c.login("carol", d.password("carol"))
        c.quit()
        d.wait_session_end(1)
        d.stop()

    def test_unknown_user_refused(self):
        d = self.daemon_with({"user": "no-such-user-pop3d"}, start=False)
        self.refused(d, "no-such-user-pop3d")

    def test_unknown_group_refused(self):
        d = self.daemon_with({"user": "nobody", "group": "no-such-group-pop3d"}, start=False)
        self.refused(d, "no-such-group-pop3d")

    def test_not_root_cannot_switch_user(self):
        # Started as nobody (no root to give up), process.user = "root": pop3d cannot become it.
        d = ProcessDaemon({"user": "root"})
        self.addCleanup(d.cleanup_dir)
        d.port = free_port()
        d.write_files()
        os.chmod(d.dir, 0o755)
        for f in (d.conf, d.users_file):
            os.chown(f, NOBODY.pw_uid, NOGROUP.gr_gid)
        try:
            r = subprocess.run([pop3d_path(), "-c", d.conf], stdin=subprocess.DEVNULL,
                               capture_output=True, cwd="/", env=child_env(),
                               timeout=READY_TIMEOUT, user=NOBODY.pw_uid, group=NOGROUP.gr_gid,
                               extra_groups=[])
        except subprocess.TimeoutExpired as e:
            self.fail("pop3d run as nobody with process.user = \"root\" kept running; stderr:\n"
                      + (e.stderr or b"").decode("utf-8", "replace"))
        err = r.stderr.decode("utf-8", "replace")
        self.assertGreater(r.returncode, 0, err)
        self.assertNotIn(READY, err)
        self.assertIn("process.user", err)
        self.assertIn("only root can switch", err)


if __name__ == "__main__":
    unittest.main()
