"""The short crash test for `make test`: tests/crash/crash.py (README there) with a few dozen
trials. pop3d is SIGKILLed during UPDATE (retention "delete", "keep", keep_days) and during
`pop3d --expire` sweeps over hundreds of due messages, restarted, and the invariant is checked
after every trial: no message lost or duplicated, the download state readable and not in doubt,
promises unchanged. The test fails on any violation, and when no kill landed inside a removal loop.

POP3D_CRASH_TRIALS (default 30), POP3D_CRASH_SECONDS (default 20: no trial starts later) and
POP3D_CRASH_SEED (default random; printed) change the run. `make crash` runs the long version.
"""
import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "crash"))

import crash  # noqa: E402


class CrashShortRun(unittest.TestCase):

    def test_sigkill_during_update_and_expiry(self):
        seed = os.environ.get("POP3D_CRASH_SEED")
        res = crash.run(trials=int(os.environ.get("POP3D_CRASH_TRIALS", "30")),
                        seconds=float(os.environ.get("POP3D_CRASH_SECONDS", "20")),
                        seed=int(seed) if seed else None, messages=300,
                        log=lambda s: sys.stdout.write(s + "\n"))
        report = res.report()
        print(report)
        rerun = ("\nre-run: POP3D_CRASH_SEED=%d python3 tests/crash/crash.py --seed %d "
                 "--trials %d -v" % (res.seed, res.seed, len(res.trials)))
        self.assertEqual(res.violations, [], report + rerun)
        killed = [t for t in res.trials if t["strategy"] != "none"]
        self.assertGreaterEqual(len(killed), 4, report + rerun)
        self.assertGreater(res.inside, 0, "no kill landed inside a removal loop\n" + report)
        for name in crash.SCENARIOS:
            self.assertTrue(any(t["scenario"] == name for t in killed), name + "\n" + report)


if __name__ == "__main__":
    unittest.main()
