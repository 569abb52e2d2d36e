"""Where an experiment's arms run: here, one after the other (``local``), or as Ray tasks (``ray``).

Both executors run the same :func:`neftune.experiments.arm.run_arm` and share one protocol:
an arm is finished exactly when its ``arm.json`` exists in the experiment folder, and the
driver rebuilds ``results.json`` from the arm folders after each arm. So an experiment started
with one executor resumes with the other, and an arm gives the same metrics wherever it ran.

``ray``: each pending arm is one Ray task with declared resources (``cpus_per_arm``,
``gpus_per_arm``), in a fresh worker process (``max_calls=1``: GPU memory and library state
are not carried from one arm to the next). Arms run concurrently as resources allow. A task
whose worker dies (killed, out of memory, node lost) is retried up to ``max_retries`` times by
Ray; it resumes from the arm's last checkpoint. An arm that raises is recorded as failed and
the others go on; :class:`ArmsFailed` is raised at the end. Ctrl-C cancels every task (their
workers are killed; the arm folders stay resumable) and re-raises ``KeyboardInterrupt``.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..finetune.training import RunError

if TYPE_CHECKING:
    from .arm import ExperimentProgress
    from .plan import Arm, ExperimentConfig

EXECUTORS = ("local", "ray")


class ArmsFailed(RuntimeError):
    """Some arms failed (others may have finished); ``failures`` maps arm id -> error message."""

    def __init__(self, failures: dict[str, str]) -> None:
        self.failures = dict(failures)
        shown = "; ".join(f"{k}: {v}" for k, v in list(failures.items())[:3])
        more = f" (and {len(failures) - 3} more)" if len(failures) > 3 else ""
        super().__init__(f"{len(failures)} arm(s) failed: {shown}{more}")


@dataclass
class ArmWork:
    """What an executor is handed by :func:`~neftune.experiments.run.run_experiment`.

    ``pending``: (index in the plan, arm) of the arms to run. ``run_here(arm, progress)`` runs
    one arm in this process and returns its record. ``done(index, arm, record)`` and
    ``failed(arm, message)`` update ``results.json`` on the driver (and report progress).
    """

    cfg: ExperimentConfig
    folder: Path
    total: int
    pending: list[tuple[int, Arm]]
    progress: ExperimentProgress
    run_here: Callable[[Arm, ExperimentProgress], dict[str, Any]]
    done: Callable[[int, Arm, dict[str, Any]], None]
    failed: Callable[[Arm, str], None]


class Executor(Protocol):
    name: str

    def run(self, work: ArmWork) -> None:
        """Run every pending arm; raise after recording what failed."""


class LocalExecutor:
    """One arm after the other in this process; stops at the first arm that raises."""

    name = "local"

    def run(self, work: ArmWork) -> None:
        for index, arm in work.pending:
            work.progress.arm_started(index, work.total, arm)
            try:
                record = work.run_here(arm, work.progress)
            except Exception as exc:
                work.failed(arm, f"{type(exc).__name__}: {exc}")
                raise
            work.done(index, arm, record)


@dataclass
class RayExecutor:
    """Arms as Ray tasks on the cluster at ``address`` (None: a local Ray started for the run).

    ``gpus_per_arm`` None: 1 when the cluster has GPUs, else 0. When Ray is already initialized
    in this process (a notebook, a test fixture), that instance is used and left running.
    """

    address: str | None = None
    cpus_per_arm: float = 1.0
    gpus_per_arm: float | None = None
    max_retries: int = 2
    poll_seconds: float = 0.2
    name: str = "ray"

    def validate(self) -> None:
        if not self.cpus_per_arm > 0:
            raise RunError(f"--cpus-per-arm must be > 0, got {self.cpus_per_arm}")
        if self.gpus_per_arm is not None and not self.gpus_per_arm >= 0:
            raise RunError(f"--gpus-per-arm must be >= 0, got {self.gpus_per_arm}")
        if self.max_retries < 0:
            raise RunError(f"--max-retries must be >= 0, got {self.max_retries}")

    def run(self, work: ArmWork) -> None:
        self.validate()
        try:
            import ray
        except ImportError:
            raise RunError(
                "--executor ray needs Ray: pip install 'neftune[ray]' (or run with --executor local)"
            ) from None
        started_here = not ray.is_initialized()
        if started_here:
            try:
                ray.init(address=self.address, include_dashboard=False, log_to_driver=False)
            except (ConnectionError, ValueError, RuntimeError) as exc:
                raise RunError(f"--ray-address {self.address}: cannot connect to Ray ({exc})") from None
        try:
            self._run(ray, work, local_cluster=started_here and self.address is None)
        finally:
            if started_here:
                ray.shutdown()

    def _resources(self, ray: Any, local_cluster: bool) -> tuple[float, float]:
        available = ray.cluster_resources()
        gpus = self.gpus_per_arm
        if gpus is None:
            gpus = 1.0 if available.get("GPU", 0) > 0 else 0.0
        if local_cluster:  # an autoscaling cluster may add nodes later; a local one will not
            for name, want, flag in (("CPU", self.cpus_per_arm, "cpus"), ("GPU", gpus, "gpus")):
                if want > available.get(name, 0):
                    raise RunError(
                        f"--{flag}-per-arm {want:g}: the local Ray has {available.get(name, 0):g} {name}s; "
                        f"lower --{flag}-per-arm or give --ray-address of a cluster that has them"
                    )
        return self.cpus_per_arm, gpus

    def _run(self, ray: Any, work: ArmWork, *, local_cluster: bool) -> None:
        from ray.util.queue import Empty, Queue

        from .layout import ARM_FILE

        cpus, gpus = self._resources(ray, local_cluster)
        events = Queue(actor_options={"num_cpus": 0})
        task = ray.remote(max_calls=1)(_ray_arm)  # a fresh worker process per arm
        options = {
            "num_cpus": cpus,
            "num_gpus": gpus,
            "max_retries": self.max_retries,
            "retry_exceptions": False,
        }
        refs = {}
        for index, arm in work.pending:
            ref = task.options(name=f"neftune-arm:{arm.id}", **options).remote(
                work.cfg, arm, str(work.folder), events
            )
            refs[ref] = (index, arm)
        by_id = {arm.id: (index, arm) for index, arm in work.pending}
        attempts: dict[str, int] = {}
        failures: dict[str, str] = {}

        def drain() -> None:
            while True:
                try:
                    arm_id, host, pid = events.get_nowait()
                except Empty:
                    return
                attempts[arm_id] = attempts.get(arm_id, 0) + 1
                index, arm = by_id[arm_id]
                if attempts[arm_id] == 1:
                    work.progress.arm_started(index, work.total, arm)
                else:
                    work.progress.arm_retried(
                        index, work.total, arm, attempts[arm_id], f"on {host}, pid {pid}"
                    )

        try:
            while refs:
                ready, _ = ray.wait(list(refs), num_returns=1, timeout=self.poll_seconds)
                drain()
                for ref in ready:
                    index, arm = refs.pop(ref)
                    try:
                        record = ray.get(ref)
                    except ray.exceptions.RayTaskError as exc:  # the arm itself raised: not retried
                        cause = exc.cause if exc.cause is not None else exc
                        message = f"{type(cause).__name__}: {cause}"
                    except ray.exceptions.RayError as exc:  # its worker or node died, retries spent
                        tried = attempts.get(arm.id, 0)
                        message = (
                            f"{type(exc).__name__}: the worker running it died {tried} time(s) "
                            f"(--max-retries {self.max_retries}): {str(exc).splitlines()[0] if str(exc) else ''}"
                        )
                    else:
                        if not (work.folder / "arms" / arm.id / ARM_FILE).exists():
                            message = (
                                f"finished on {record.get('host')}, but its arm.json is not visible here at "
                                f"{work.folder}: --out must be a folder that every Ray node and this "
                                "machine share"
                            )
                        else:
                            work.done(index, arm, record)
                            continue
                    failures[arm.id] = message
                    work.failed(arm, message)
        except KeyboardInterrupt:
            for ref in refs:
                ray.cancel(ref, force=True)
            raise
        if failures:
            raise ArmsFailed(failures)


def _ray_arm(cfg: ExperimentConfig, arm: Arm, folder: str, events: Any) -> dict[str, Any]:
    """The Ray task: one arm in a worker process; the driver sees only its record and arm.json."""
    from ..finetune.data.bundle import resolve_data
    from .arm import NullProgress, run_arm
    from .layout import EXPERIMENT_FILE

    host = socket.gethostname()
    events.put((arm.id, host, os.getpid()))
    path = Path(folder)
    if not (path / EXPERIMENT_FILE).exists():
        raise RunError(
            f"{path / EXPERIMENT_FILE} is not visible on Ray node {host}: --out must be a folder "
            "that every Ray node shares (a network file system mounted at the same path)"
        )
    start = time.perf_counter()
    bundle = resolve_data(cfg.train.data, seed=cfg.train.data_seed)
    record = run_arm(cfg, arm, path, bundle, NullProgress())
    return {**record, "host": host, "task_seconds": time.perf_counter() - start}


def make_executor(
    name: str,
    *,
    address: str | None = None,
    cpus_per_arm: float = 1.0,
    gpus_per_arm: float | None = None,
    max_retries: int = 2,
) -> Executor:
    """An executor from the CLI's options; a clear error naming the option otherwise."""
    if name not in EXECUTORS:
        raise RunError(f"--executor must be one of {', '.join(EXECUTORS)}, got {name!r}")
    if name == "local":
        if address is not None:
            raise RunError("--ray-address needs --executor ray")
        return LocalExecutor()
    executor = RayExecutor(address, cpus_per_arm, gpus_per_arm, max_retries)
    executor.validate()
    return executor
