"""The local stack's executor (``topology.EXECUTOR_CLASS``): Airflow's LocalExecutor, lighter at idle.

Two changes, both about memory (measured with ``bench/local_stack.py --breakdown``):

- One worker per workload in flight, forked when it is queued and retired when it is done, instead
  of ``parallelism`` workers forked at start for good. A worker that has supervised tasks keeps
  30 to 50 MB of its own (pages copied from the scheduler, allocator leftovers): an idle stack now
  holds none, and a task waits for one fork of the scheduler, milliseconds.
- What the scheduler froze stays frozen. The native engine forks the scheduler from the launcher,
  which froze the Airflow it imported (``gc.freeze``) so that the components share those pages.
  The LocalExecutor freezes before forking its workers but then unfreezes everything: the next
  full collection walks every inherited object and writes to its header, which copied about
  130 MB of shared pages into the scheduler. Objects frozen live as long as the process, like the
  modules and start-up objects they are.
"""

from __future__ import annotations

import gc
from typing import Any

from airflow.executors.local_executor import LocalExecutor


class LeanLocalExecutor(LocalExecutor):
    def start(self) -> None:
        self._in_flight: dict[Any, Any] = {}  # workload key -> its running state (None for tasks)
        self._retiring = 0  # workers sent the stop message (None), not yet reaped
        super().start()

    def _process_workloads(self, workload_list) -> None:  # noqa: ANN001 - Airflow's signature
        self._in_flight.update({w.key: w.running_state for w in workload_list})
        super()._process_workloads(workload_list)  # queues them, then _check_workers() forks

    def _read_results(self) -> None:
        while not self.result_queue.empty():
            key, state, _ = self.result_queue.get()
            if state != self._in_flight.get(key):  # not the "running" report: the workload is done
                self._in_flight.pop(key, None)
            self.change_state(key, state)
        # Retire the idle workers: a stop message each (Airflow's own, as in end()); a workload
        # queued after it finds another worker or a new fork.
        for _ in range(len(self.workers) - self._retiring - len(self._in_flight)):
            self.activity_queue.put(None)
            self._retiring += 1

    def _check_workers(self) -> None:
        gone = sum(not proc.is_alive() for proc in self.workers.values())
        self._retiring = max(0, self._retiring - gone)
        super()._check_workers()  # reaps them, and forks for unread workloads

    def _spawn_workers_with_gc_freeze(self, spawn_number: int) -> None:
        # Airflow asks for `parallelism` workers at start and for every free slot whenever a workload
        # waits; one worker per workload in flight is enough.
        active = len(self.workers) - getattr(self, "_retiring", 0)
        wanted = min(spawn_number, len(getattr(self, "_in_flight", {})) - active)
        if wanted > 0:
            super()._spawn_workers_with_gc_freeze(wanted)
            gc.freeze()
