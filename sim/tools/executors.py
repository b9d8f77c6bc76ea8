"""Where a sweep's runs execute: a local process pool, or a Dask distributed cluster.

Both offer `map_unordered(fn, tasks, *args)`, yielding `(task, fn(task, *args))` as runs
finish, in whatever order they finish. `fn` must be importable by the workers (a
module-level function), and never raise: a sweep records a failed run as a row.

- `ProcessExecutor(workers)`: a pool of `workers` processes on this machine, started fresh
  (spawn), so a run sees no state of the client's.
- `DaskExecutor(address)`: the tasks go to a Dask scheduler (`tcp://host:8786`), whose workers
  need this project installed (`pip install 'dcsim[dask]'`, the same version) and the
  scenario files at the same paths. `address="local"` starts a `LocalCluster` of
  `workers` processes here, to try it without a cluster. A `distributed.Client` may be
  passed instead of an address (the tests pass one on an in-process cluster).
"""
from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

from ..spec.errors import Loc, ScenarioError


def _die_with(parent: int) -> None:
    """A worker's initializer: it ends when the sweep's process does, even a SIGKILLed one
    (Linux: the kernel signals it; elsewhere a watcher thread sees it orphaned)."""
    try:
        import ctypes
        import signal
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)    # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    import threading
    import time

    def watch():
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)
    threading.Thread(target=watch, daemon=True).start()


class ProcessExecutor:
    def __init__(self, workers: int | None = None):
        self.workers = workers or os.cpu_count() or 1
        self.where = f"a process pool of {self.workers} worker(s)"

    def map_unordered(self, fn, tasks, *args):
        if not tasks:
            return
        pool = ProcessPoolExecutor(max_workers=min(self.workers, len(tasks)),
                                   mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_die_with, initargs=(os.getpid(),))
        finished = False
        try:
            pending = {pool.submit(fn, t, *args): t for t in tasks}
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    yield pending.pop(future), future.result()
            finished = True
        finally:
            if not finished:     # interrupted (Ctrl-C) or abandoned: stop the runs under way now
                for process in list(getattr(pool, "_processes", {}).values()):
                    process.terminate()
            pool.shutdown(wait=finished, cancel_futures=True)

    def close(self) -> None:
        pass


class DaskExecutor:
    def __init__(self, address, workers: int | None = None):
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise ScenarioError.one(Loc("--cluster"), "cluster", "running on a Dask cluster needs dask.distributed: "
                                    "pip install 'dcsim[dask]'") from None
        self._owned = []
        if isinstance(address, str):
            if address == "local":
                cluster = LocalCluster(n_workers=workers or os.cpu_count() or 1, threads_per_worker=1,
                                       dashboard_address=None)
                self._owned.append(cluster)
                address = cluster
            try:
                self.client = Client(address, timeout="20s")
            except (OSError, TimeoutError) as exc:
                raise ScenarioError.one(Loc("--cluster"), "cluster", f"no Dask scheduler answers at {address}: "
                                        f"{exc}") from None
            self._owned.insert(0, self.client)
        else:
            self.client = address
        self.where = f"the Dask cluster at {self.client.scheduler.address}"

    def map_unordered(self, fn, tasks, *args):
        from distributed import as_completed

        futures = {self.client.submit(fn, t, *args, pure=False): t for t in tasks}
        try:
            for future in as_completed(futures):
                yield futures[future], future.result()
        finally:
            for future in futures:
                future.cancel()

    def close(self) -> None:
        for thing in self._owned:
            thing.close()


def executor_for(cluster: str | None, workers: int | None):
    """The executor a sweep asks for: a Dask cluster when `cluster` names one, else a pool."""
    return DaskExecutor(cluster, workers) if cluster else ProcessExecutor(workers)
