"""benchmarks.driver_scale with two probes of the driver's loop (runner._drive): Python's switch
interval set from $SWITCH_MS (the default 5 ms when unset), and, with $PROFILE set to a path,
py-spy sampling every thread of this process for the first $PROFILE_S seconds of the loop
(--idle: waiting is counted too), written as collapsed stacks to that path."""

import os
import subprocess
import sys

import scaletune.search.runner as runner
from benchmarks.driver_scale import main

if os.environ.get("SWITCH_MS"):
    sys.setswitchinterval(float(os.environ["SWITCH_MS"]) / 1e3)


def drive(*a, _drive=runner._drive, **k):
    spy = None
    if os.environ.get("PROFILE"):
        spy = subprocess.Popen(["py-spy", "record", "--pid", str(os.getpid()), "--threads",
                                "--idle", "--nonblocking", "--rate", "200", "--duration",
                                os.environ.get("PROFILE_S", "40"), "--format", "raw",
                                "-o", os.environ["PROFILE"]],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        return _drive(*a, **k)
    finally:
        if spy is not None:
            spy.wait()


runner._drive = drive
main(sys.argv[1:])
