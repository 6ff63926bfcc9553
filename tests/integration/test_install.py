"""`make install` with PREFIX and DESTDIR puts the binary, both man pages and the examples in place;
the installed pop3d.service runs PREFIX/sbin/pop3d.

Runs the real Makefile target into a temporary DESTDIR, for the build the suite is testing (the
folder of $POP3D), so nothing is rebuilt and nothing outside the temporary folder is written.
"""
import os
import shutil
import subprocess
import tempfile
import unittest

from harness import REPO, pop3d_path


class InstallTest(unittest.TestCase):
    def test_install_into_destdir(self):
        build = os.path.relpath(os.path.dirname(pop3d_path()), REPO)
        dest = tempfile.mkdtemp(prefix="pop3d-install-")
        try:
            r = subprocess.run(["make", "-s", "install", "BUILD=" + build, "PREFIX=/opt/p3",
                                "DESTDIR=" + dest], cwd=REPO, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
            self.assertEqual(r.returncode, 0, r.stdout.decode(errors="replace"))
            root = os.path.join(dest, "opt", "p3")
            binary = os.path.join(root, "sbin", "pop3d")
            self.assertTrue(os.access(binary, os.X_OK))
            self.assertEqual(os.stat(binary).st_mode & 0o777, 0o755)
            out = subprocess.run([binary, "--version"], stdout=subprocess.PIPE, timeout=30)
            self.assertTrue(out.stdout.startswith(b"pop3d "), out.stdout)
            for rel in ("share/man/man8/pop3d.8", "share/man/man5/pop3d.conf.5",
                        "share/doc/pop3d/examples/pop3d.conf",
                        "share/doc/pop3d/examples/users.example",
                        "share/doc/pop3d/examples/pop3d.service",
                        "share/doc/pop3d/examples/pop3d.socket",
                        "share/doc/pop3d/examples/haproxy.cfg",
                        "share/doc/pop3d/examples/fail2ban/filter.d/pop3d.conf",
                        "share/doc/pop3d/examples/fail2ban/jail.d/pop3d.conf"):
                path = os.path.join(root, rel)
                self.assertTrue(os.path.isfile(path), rel)
                self.assertEqual(os.stat(path).st_mode & 0o777, 0o644, rel)
                with open(os.path.join(REPO, "etc", os.path.basename(rel) if "fail2ban" not in rel
                                       else rel.split("examples/", 1)[1]), "rb") as a, \
                        open(path, "rb") as b:
                    want = a.read()
                    if rel.endswith("pop3d.service"):
                        # the unit runs the binary of this PREFIX, never DESTDIR's staging copy
                        self.assertIn(b"ExecStart=/usr/local/sbin/pop3d ", want)
                        want = want.replace(b"/usr/local/sbin/pop3d", b"/opt/p3/sbin/pop3d")
                    self.assertEqual(want, b.read(), rel)
            # nothing but the prefix under DESTDIR
            self.assertEqual(os.listdir(dest), ["opt"])
        finally:
            shutil.rmtree(dest, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
