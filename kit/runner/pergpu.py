"""`--isolation per-gpu`: up to one group process per listed GPU at once.

One worker thread per GPU runs that GPU's groups (kit.runner.placement: round-robin, in run
order) one after another through the sweep's own `_run_group`, so crash containment,
timeouts, attempts and Stop/Abort are those of a serial run. Workers only start processes and
read their events; every journal line and cell result goes through the sweep's locks.
"""

from __future__ import annotations

import threading
from typing import Any

from kit.matrix import Cell


def run_per_gpu(sweep: Any, groups: list[list[Cell]], inputs: dict[str, Any]) -> bool:
    """Run `groups` on their GPUs at once; False when stopped early (resumable). An
    exception in a worker stops the others (abort) and is raised here."""
    queues: dict[int, list[list[Cell]]] = {gpu: [] for gpu in sweep.gpus}
    for group in groups:
        queues[sweep.gpu_for(group[0])].append(group)
    sweep.record(
        {
            "event": "per_gpu_started",
            "gpus": list(sweep.gpus),
            "queues": {str(g): [q[0].group_id() for q in queue] for g, queue in queues.items()},
        }
    )
    completed: dict[int, bool] = {}
    failures: list[BaseException] = []

    def work(gpu: int) -> None:
        try:
            for group in queues[gpu]:
                if sweep.controls.stopping or not sweep._run_group(group, inputs):
                    completed[gpu] = False
                    return
            completed[gpu] = True
        except BaseException as err:  # re-raised in the caller's thread, after the others stop
            failures.append(err)
            completed[gpu] = False
            sweep.controls.abort.set()

    workers = [
        threading.Thread(target=work, args=(gpu,), name=f"kit-gpu{gpu}", daemon=True)
        for gpu, queue in queues.items()
        if queue
    ]
    for worker in workers:
        worker.start()
    try:
        for worker in workers:
            while worker.is_alive():
                worker.join(0.2)  # short joins: Ctrl-C still reaches the main thread
    except KeyboardInterrupt:
        sweep.controls.abort.set()
        for worker in workers:
            worker.join()
        raise
    if failures:
        raise failures[0]
    return all(completed.get(gpu, True) for gpu, queue in queues.items() if queue)
