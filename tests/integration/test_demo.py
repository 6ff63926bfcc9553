"""`make run`'s demo (scripts/demo.sh): it sets itself up, then serves STLS and implicit TLS.

Runs the real script with the binary under test, in a temporary folder (so its demo/ is not the
repository's) and on free high ports (POP3D_DEMO_PORT, POP3D_DEMO_TLS_PORT), then downloads with
curl over STLS and over implicit TLS, checking the certificate the script generated, and logs in
with poplib in clear text from loopback, which the demo trusts. A second run reuses the password.
"""
import os
import poplib
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import unittest

from harness import REPO, READY_TIMEOUT, child_env, free_port, pop3d_path

USER = "demo@example.org"


class DemoRun:
    def __init__(self, top):
        self.top = top
        self.port = free_port()
        self.tls_port = free_port()
        while self.tls_port == self.port:
            self.tls_port = free_port()
        env = child_env(POP3D_DEMO_PORT=str(self.port), POP3D_DEMO_TLS_PORT=str(self.tls_port))
        self.proc = subprocess.Popen(["sh", os.path.join(REPO, "scripts", "demo.sh"), pop3d_path()],
                                     cwd=top, env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.out = []
        self.err = []
        self.cond = threading.Condition()
        for stream, sink in ((self.proc.stdout, self.out), (self.proc.stderr, self.err)):
            threading.Thread(target=self._read, args=(stream, sink), daemon=True).start()

    def _read(self, stream, sink):
        for raw in iter(stream.readline, b""):
            with self.cond:
                sink.append(raw.decode("utf-8", "replace"))
                self.cond.notify_all()

    def wait_ready(self):
        with self.cond:
            ok = self.cond.wait_for(lambda: any(" ready" in l for l in self.err)
                                    or self.proc.poll() is not None, timeout=READY_TIMEOUT * 3)
        if not ok or self.proc.poll() is not None:
            raise AssertionError("demo did not get ready:\n%s%s" % ("".join(self.out), "".join(self.err)))

    def password(self):
        m = re.search(r"user %s, password (\S+)" % re.escape(USER), "".join(self.out))
        if not m:
            raise AssertionError("no password printed:\n" + "".join(self.out))
        return m.group(1)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=30)
        return code


class DemoTest(unittest.TestCase):
    def setUp(self):
        self.top = tempfile.mkdtemp(prefix="pop3d-demo-")

    def tearDown(self):
        shutil.rmtree(self.top, ignore_errors=True)

    def curl(self, url, password, *opts):
        r = subprocess.run(["curl", "-sS", "--max-time", "30", "-u", "%s:%s" % (USER, password),
                            "--cacert", os.path.join(self.top, "demo", "cert.pem")] + list(opts)
                           + [url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr.decode(errors="replace"))
        return r.stdout

    def test_demo_serves_stls_and_implicit_tls(self):
        run = DemoRun(self.top)
        try:
            run.wait_ready()
            pw = run.password()
            with open(os.path.join(self.top, "demo", "password")) as f:
                self.assertEqual(f.read().strip(), pw)
            # What the demo prints to try must name both ports.
            text = "".join(run.out)
            self.assertIn("pop3s://localhost:%d/" % run.tls_port, text)
            self.assertIn("--ssl-reqd", text)

            listing = self.curl("pop3://localhost:%d/" % run.port, pw, "--ssl-reqd")
            self.assertRegex(listing, rb"^1 \d+\r\n")
            self.assertEqual(listing, self.curl("pop3s://localhost:%d/" % run.tls_port, pw))
            first = self.curl("pop3s://localhost:%d/1" % run.tls_port, pw)
            self.assertEqual(first, self.curl("pop3://localhost:%d/1" % run.port, pw, "--ssl-reqd"))
            self.assertGreater(len(first), 0)

            p = poplib.POP3("127.0.0.1", run.port, timeout=30)
            try:
                caps = p.capa()
                self.assertIn("STLS", caps)
                self.assertEqual(caps.get("EXPIRE"), ["30"])
                p.user(USER)
                p.pass_(pw)
                count, _size = p.stat()
                self.assertEqual(count, len(listing.splitlines()))
            finally:
                p.quit()
        finally:
            code = run.stop()
        self.assertEqual(code, 0, "".join(run.err))

        # A second `make run` keeps the setup: same password, same certificate.
        with open(os.path.join(self.top, "demo", "cert.pem"), "rb") as f:
            cert = f.read()
        again = DemoRun(self.top)
        try:
            again.wait_ready()
            self.assertEqual(again.password(), pw)
        finally:
            self.assertEqual(again.stop(), 0, "".join(again.err))
        with open(os.path.join(self.top, "demo", "cert.pem"), "rb") as f:
            self.assertEqual(f.read(), cert)


if __name__ == "__main__":
    unittest.main()
