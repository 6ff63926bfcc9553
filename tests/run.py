#!/usr/bin/env python3
"""Test runner for `make check`.

    python3 tests/run.py --build DIR [--jobs N] [--only PATTERN] UNIT_BIN...

Runs each cmocka unit binary (printing its output), then every tests/integration/test_*.py module
with unittest against DIR/pop3d (env POP3D), up to --jobs modules at a time (default 2), and ends
with one line "N passed, N failed" counting every cmocka test case and every unittest test.
Exits non-zero when anything failed or when no test ran. Sanitizer options are set for every
child so a sanitizer build (DIR=build/san) aborts on the first report.

Skipped tests are listed at the end with their reasons. With POP3D_REQUIRE_ALL=1 in the
environment (or --require-all) every skip counts as a failure: `make test` sets it, because it
installs every tool the tests need (fail2ban, haproxy, ...) and runs as root, so a skip there
means the set-up is broken, not that the feature works. The exception is a skip whose reason
starts with "host:" (no IPv6 loopback on this machine): no package can fix that, so it is
reported, not failed. `make check` and --only runs leave it unset: a skip is reported, not
failed.
"""
import argparse
import concurrent.futures
import glob
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
INTEGRATION = os.path.join(HERE, "integration")

UNIT_TIMEOUT = 120        # seconds per cmocka binary
MODULE_TIMEOUT = 240      # seconds per integration module
RESULT_TAG = "@@pop3d-test-result "

SAN_ENV = {
    "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=1",
    "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
}

CMOCKA_PASSED = re.compile(r"^\[  PASSED  \] (\d+) test\(s\)\.", re.M)
CMOCKA_FAILED = re.compile(r"^\[  FAILED  \] (\d+) test\(s\)", re.M)
CMOCKA_SKIPPED = re.compile(r"^\[  SKIPPED \] (\d+) test\(s\)", re.M)
CMOCKA_RUNNING = re.compile(r"^\[==========\] Running (\d+) test\(s\)\.", re.M)



# A skip reason starting with this is about the machine, not the set-up (no IPv6 loopback in a
# container): reported, never counted as failed, even under POP3D_REQUIRE_ALL=1.
HOST_SKIP = "host:"

def run_unit(path, env):
    """Run one cmocka binary; return (passed, failed, skipped, output)."""
    try:
        r = subprocess.run([path], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=UNIT_TIMEOUT, env=env, cwd=REPO)
        out = r.stdout.decode("utf-8", "replace")
        rc = r.returncode
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode("utf-8", "replace") + "\n%s: timed out after %ds\n" % (
            path, UNIT_TIMEOUT)
        rc = None
    except OSError as e:
        return 0, 1, 0, "%s: cannot run: %s\n" % (path, e)
    passed = sum(int(n) for n in CMOCKA_PASSED.findall(out))
    failed = sum(int(n) for n in CMOCKA_FAILED.findall(out))
    skipped = sum(int(n) for n in CMOCKA_SKIPPED.findall(out))
    running = sum(int(n) for n in CMOCKA_RUNNING.findall(out))
    # A crash or timeout mid-group leaves cases that neither passed nor failed: count them failed,
    # and count at least one failure for any abnormal exit.
    unaccounted = running - passed - failed - skipped
    if rc != 0 and failed == 0:
        failed = max(1, unaccounted)
        out += "\n%s: exit status %s%s\n" % (
            path, rc, " (signal %d)" % -rc if rc is not None and rc < 0 else "")
    elif unaccounted > 0:
        failed += unaccounted
    if rc == 0 and passed == 0 and failed == 0 and skipped == 0:
        out += "\n%s: no cmocka summary found\n" % path
        failed = 1
    return passed, failed, skipped, out


def run_module_inprocess(path):
    """Child mode: run one integration module, print results and a machine-readable line."""
    sys.path.insert(0, os.path.dirname(path))
    name = os.path.splitext(os.path.basename(path))[0]
    loader = unittest.TestLoader()
    try:
        suite = loader.loadTestsFromName(name)
    except Exception as e:    # import error: one failure
        print("%s: cannot load: %r" % (name, e))
        print(RESULT_TAG + json.dumps({"ran": 1, "failed": 1, "skipped": 0}))
        return 1
    runner = unittest.TextTestRunner(stream=sys.stdout, verbosity=2)
    t0 = time.monotonic()
    res = runner.run(suite)
    # subTest failures and cleanup errors are entries of their own: count failed tests
    failed_ids = {getattr(t, "test_case", t).id()
                  for t, _ in res.failures + res.errors + res.unexpectedSuccesses}
    # An error in a cleanup (e.g. the daemon's exit check) is reported as its own entry for a
    # test that may also have failed; count tests, not entries.
    failed = len(failed_ids)
    print(RESULT_TAG + json.dumps({"ran": res.testsRun, "failed": failed,
                                   "skipped": len(res.skipped),
                                   "skips": [[t.id(), reason] for t, reason in res.skipped],
                                   "seconds": round(time.monotonic() - t0, 1)}))
    return 0 if failed == 0 else 1


def run_module(path, env):
    """Run one module in a child python; return (passed, failed, skips, output, seconds), skips
    being [(test id, reason)]."""
    t0 = time.monotonic()
    try:
        r = subprocess.run([sys.executable, os.path.abspath(__file__), "--module", path],
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=MODULE_TIMEOUT, env=env, cwd=REPO)
        out = r.stdout.decode("utf-8", "replace")
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode("utf-8", "replace")
        out += "\n%s: timed out after %ds\n" % (path, MODULE_TIMEOUT)
    seconds = time.monotonic() - t0
    m = None
    for line in out.splitlines():
        if line.startswith(RESULT_TAG):
            m = json.loads(line[len(RESULT_TAG):])
    if m is None:
        return 0, 1, [], out + "\n%s: no result (crashed or timed out)\n" % path, seconds
    out = "\n".join(l for l in out.splitlines() if not l.startswith(RESULT_TAG)) + "\n"
    passed = max(0, m["ran"] - m["failed"] - m["skipped"])
    skips = [tuple(x) for x in m.get("skips", [])]
    return passed, m["failed"], skips, out, seconds


def make_corpus():
    """Generate ../shared/corpus into a temp dir (shared/ sits beside the clone); None without it."""
    script = os.path.join(os.path.dirname(REPO), "shared", "corpus", "make_corpus.py")
    if not os.path.exists(script):
        print("warning: %s not found: corpus unit tests are skipped" % script)
        return None
    tmp = tempfile.TemporaryDirectory(prefix="pop3d-corpus-")
    subprocess.run([sys.executable, script, os.path.join(tmp.name, "Maildir")], check=True,
                   stdin=subprocess.DEVNULL, timeout=60)
    return tmp


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--build", help="build folder holding pop3d (e.g. build, build/san)")
    ap.add_argument("--jobs", type=int, default=2, help="integration modules run at once")
    ap.add_argument("--only", help="run only integration modules whose name contains this")
    ap.add_argument("--require-all", action="store_true",
                    default=os.environ.get("POP3D_REQUIRE_ALL") == "1",
                    help="count every skipped test as failed (default: env POP3D_REQUIRE_ALL=1)")
    ap.add_argument("--module", help=argparse.SUPPRESS)
    ap.add_argument("units", nargs="*", help="cmocka unit test binaries")
    args = ap.parse_args()

    if args.module:
        return run_module_inprocess(args.module)
    if not args.build:
        ap.error("--build DIR is required")

    env = dict(os.environ)
    env.update(SAN_ENV)
    env["POP3D"] = os.path.abspath(os.path.join(args.build, "pop3d"))
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["CMOCKA_MESSAGE_OUTPUT"] = "stdout"     # the summary lines parsed above
    corpus_tmp = make_corpus()
    if corpus_tmp is not None:                   # test_multiline checks every corpus message
        env["POP3D_CORPUS"] = os.path.join(corpus_tmp.name, "Maildir")
    total_pass = total_fail = total_skip = 0
    skipped = []          # (what, reason) for the report at the end
    t_start = time.monotonic()

    for path in args.units:
        print("=== unit %s" % path, flush=True)
        p, f, s, out = run_unit(os.path.abspath(path), env)
        sys.stdout.write(out)
        print("--- %s: %d passed, %d failed%s" % (os.path.basename(path), p, f,
                                                 ", %d skipped" % s if s else ""), flush=True)
        total_pass += p
        total_fail += f
        total_skip += s
        if s:
            skipped.append((os.path.basename(path), "%d cmocka test(s) called skip()" % s))

    if not os.access(env["POP3D"], os.X_OK):
        print("warning: %s is missing: every integration test will fail" % env["POP3D"])
    modules = sorted(glob.glob(os.path.join(INTEGRATION, "test_*.py")))
    if args.only:
        modules = [m for m in modules if args.only in os.path.basename(m)]
    # Slowest first so the two workers finish together (client tools, timeouts).
    weight = {"test_clients.py": 0, "test_maildrop.py": 1, "test_hostile.py": 2}
    modules.sort(key=lambda m: weight.get(os.path.basename(m), 9))
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futs = {pool.submit(run_module, m, env): m for m in modules}
        for fut in concurrent.futures.as_completed(futs):
            path = futs[fut]
            p, f, skips, out, secs = fut.result()
            s = len(skips)
            print("=== integration %s (%.1fs)" % (os.path.relpath(path, REPO), secs))
            sys.stdout.write(out)
            print("--- %s: %d passed, %d failed%s" % (os.path.basename(path), p, f,
                                                     ", %d skipped" % s if s else ""), flush=True)
            total_pass += p
            total_fail += f
            total_skip += s
            skipped.extend(skips)

    print("=== %.1fs for %s" % (time.monotonic() - t_start, env["POP3D"]))
    for what, reason in sorted(skipped):
        print("skipped: %s: %s" % (what, reason.strip().splitlines()[0] if reason.strip() else ""))
    # What the kernel lacks no package can install: such skips never count as failures.
    host = sum(1 for _, reason in skipped if reason.strip().startswith(HOST_SKIP))
    if total_skip - host and args.require_all:
        print("%d skipped, counted as failed (POP3D_REQUIRE_ALL=1: make test installs what the "
              "tests need and runs as root, so a skip means the set-up is broken)"
              % (total_skip - host))
        total_fail += total_skip - host
        if host:
            print("(%d more skipped for the host, not counted)" % host)
    elif total_skip:
        print("(%d skipped, not counted as passed)" % total_skip)
    print("%d passed, %d failed" % (total_pass, total_fail), flush=True)
    return 1 if total_fail or total_pass == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
