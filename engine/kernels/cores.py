"""How many cores this process is given: the size of every pool the kernels open.

The smallest of: the CPUs this process may run on (its affinity mask, which container
limits and ``taskset`` set), Numba's thread count (``NUMBA_NUM_THREADS``, or
``numba.set_num_threads`` in this thread), ``OMP_NUM_THREADS`` where set (Ray sets it to a
task's CPU grant), and the CPUs Ray assigned to this task or actor when run inside one.
No pool in the engine has a fixed size: a kernel gives the same answer at 1 and N threads
(tests/test_kernels_threads.py), and uses what it was given.
"""

from __future__ import annotations

import os
import sys


def _ray_grant() -> int | None:
    if "ray" not in sys.modules:  # not inside a Ray worker unless Ray was imported
        return None
    try:
        import ray

        if not ray.is_initialized():
            return None
        ctx = ray.get_runtime_context()
        if ctx.worker.mode != ray.WORKER_MODE:  # the driver is not limited by a grant
            return None
        cpus = ctx.get_assigned_resources().get("CPU")
    except Exception:  # an old or partial Ray: no grant known
        return None
    return max(1, int(cpus)) if cpus else None


def allowed() -> int:
    """The number of threads a kernel may use here (at least 1)."""
    import numba

    n = [numba.get_num_threads()]
    if hasattr(os, "sched_getaffinity"):
        n.append(len(os.sched_getaffinity(0)))
    else:  # macOS
        n.append(os.cpu_count() or 1)
    omp = os.environ.get("OMP_NUM_THREADS", "")
    if omp.isdigit() and int(omp) > 0:
        n.append(int(omp))
    grant = _ray_grant()
    if grant is not None:
        n.append(grant)
    return max(1, min(n))


class numba_threads:
    """Run Numba's parallel kernels on :func:`allowed` threads (restored after)."""

    def __enter__(self) -> int:
        import numba

        self._before = numba.get_num_threads()
        n = min(self._before, allowed())
        numba.set_num_threads(n)
        return n

    def __exit__(self, *exc: object) -> None:
        import numba

        numba.set_num_threads(self._before)
