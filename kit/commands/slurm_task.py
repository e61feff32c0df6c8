"""`kit slurm-task SWEEP`: run this array task's cell group (called by the batch script)."""

from __future__ import annotations

import argparse
import faulthandler
import os
import signal
import threading
from pathlib import Path
from typing import Any

NAME = "slurm-task"
HELP = "run one Slurm array task's cell group of a sweep (the batch script calls it)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sweep", type=Path, metavar="SWEEP")
    parser.add_argument("--submission", type=int, default=0, help="the submission number")


def run(args: argparse.Namespace) -> int:
    from kit.errors import ExitCode
    from kit.runner.slurm_task import describe, run_task
    from kit.runner.sweep import Controls

    controls = Controls()

    def on_signal(signum: int, _frame: Any) -> None:
        # Slurm may signal every process of the job and the batch shell passes TERM on too:
        # stopping is idempotent here (no second-signal escalation as in `kit run`). No
        # print(): a handler re-entering a buffered stream write raises in the main thread.
        first = not controls.abort.is_set()
        controls.abort.set()
        if first:
            note = f"kit: signal {signum}: stopping the group, journaling `interrupted`\n"
            os.write(2, note.encode())
            # Should the stop hang, the job log gets every thread's stack before SIGKILL.
            faulthandler.dump_traceback_later(15, exit=False)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # The group runs in a worker thread; the main thread only waits in short timed joins.
    # Python runs signal handlers in the main thread alone: when Slurm signals every process
    # of the job at once, a main thread blocked in a pipe read may not wake (the signal can
    # land on another thread) and the kit would be SIGKILLed without journaling its stop.
    outcome: list[Any] = []
    failure: list[BaseException] = []

    def work() -> None:
        try:
            outcome.append(run_task(args.sweep.resolve(), args.submission, controls))
        except BaseException as err:  # re-raised in the main thread (KitError rendering)
            failure.append(err)

    worker = threading.Thread(target=work, name="slurm-task")
    worker.start()
    while worker.is_alive():
        worker.join(0.2)
    if failure:
        raise failure[0]
    task = outcome[0]
    print(describe(task))
    if task.outcome is None:
        return 0
    if task.outcome.interrupted:
        return int(ExitCode.INTERRUPTED)
    bad = task.outcome.counts.get("crash", 0) + task.outcome.counts.get("degraded", 0)
    return int(ExitCode.CELLS_FAILED) if bad else 0
