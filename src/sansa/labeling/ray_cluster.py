"""Joining a Ray cluster and sizing the actor pool of a labelling run (:mod:`sansa.labeling.ray`).

* :class:`RayOptions`: where the job runs and what each actor reserves (``--actors MIN-MAX``,
  ``--cpus-per-actor``, ``--memory-per-actor``, ``--gpus-per-actor``), its error budget
  (``--max-failures``) and what reaches the workers (``--worker-env``, ``--runtime-env``).
* :func:`connect`: joins the cluster before anything is written, with one line naming the cause
  when it cannot (no cluster, a token-authenticated cluster without the token, ...).
* :func:`quiet_ray_data`: Ray Data's console progress and warnings off (the run prints one
  progress line of its own).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from sansa.errors import SansaError

_CONNECT_HELP = "start one with `ray start --head`, or leave the address out for a local instance"
# Memory each CPU actor reserves by default (GiB): above the peak RSS measured for one process with
# its reader and writer threads (README, Memory: Hiera-T 3.7 GiB, Hiera-L 2.5 GiB, test_tiny 1 GiB),
# plus a share per extra lane.
ACTOR_MEMORY_GIB = {"test_tiny": 1.5}
DEFAULT_ACTOR_MEMORY_GIB = 4.0
LANE_MEMORY_GIB = 0.5
GPU_ACTOR_CPUS = 2.0  # reading, decoding and writing beside a GPU


@dataclasses.dataclass(frozen=True)
class RayOptions:
    """Where and how wide a job runs on Ray.

    Attributes:
        address: ``None``: ``RAY_ADDRESS`` when set (as under ``ray job submit``), else a new
            local instance; ``"auto"``: the cluster already running on this machine; else a
            cluster address (``host:6379``, ``ray://host:10001``).
        actors: model replicas: ``N`` (a fixed pool) or ``(MIN, MAX)`` (Ray Data's autoscaling
            pool; ``MAX`` ``None``: as many as the cluster offers, nodes an autoscaler adds included).
            Default ``(1, None)``.
        gpus_per_actor: GPUs each actor reserves (fractions share a GPU); ``0``: CPU actors.
        cpus_per_actor: CPUs each actor reserves (default 1 for CPU actors, 2 beside a GPU); a CPU
            actor segments that many batches at once (lanes, one model thread each).
        memory_per_actor: GiB each actor reserves (default: per model, see :data:`ACTOR_MEMORY_GIB`).
        max_failures: targets that may fail to be written (after retries) before the job stops;
            they are listed in ``failures.txt`` and redone by the next run. Unreadable images are
            failure entries and never count.
        worker_env: environment variables for every worker: ``NAME=VALUE``, or ``NAME`` for the
            driver's value (credentials stay off the command line and out of ``run.json``).
        runtime_env: a Ray runtime environment (``pip``, ``env_vars``, ``working_dir``, ...).
        on_actor_start: called in each actor once it is ready, with its handle (monitoring, and
            the fault tests that ``ray.kill`` an actor mid-run).
    """

    address: str | None = None
    actors: int | tuple[int, int | None] | None = None
    gpus_per_actor: float = 0.0
    cpus_per_actor: float | None = None
    memory_per_actor: float | None = None
    max_failures: int = 0
    worker_env: Sequence[str] = ()
    runtime_env: Mapping[str, Any] | None = None
    on_actor_start: Callable[[Any], None] | None = None

    def check(self) -> None:
        """One line naming the option, before the cluster is joined or anything is written."""
        low, high = self.pool
        if low < 1 or (high is not None and high < low):
            raise SansaError(f"actors: must be N or MIN-MAX with 1 <= MIN <= MAX, got {_show(self.actors)}")
        for name in ("gpus_per_actor", "cpus_per_actor", "memory_per_actor", "max_failures"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise SansaError(f"{name}: must be 0 or more, got {value}")
        if self.cpus_per_actor == 0 and self.gpus_per_actor == 0:
            raise SansaError("cpus_per_actor: CPU actors need at least 1 CPU, got 0")
        self.env_vars()

    @property
    def device(self) -> str:
        """Where actors run the model: ``cuda`` when they reserve GPUs, else ``cpu``."""
        return "cuda" if self.gpus_per_actor > 0 else "cpu"

    @property
    def pool(self) -> tuple[int, int | None]:
        """``(min, max)`` actors (``max`` ``None``: no limit but the cluster's)."""
        if self.actors is None:
            return 1, None
        if isinstance(self.actors, int):
            return self.actors, self.actors
        return self.actors[0], self.actors[1]

    @property
    def cpus(self) -> float:
        """CPUs each actor reserves."""
        if self.cpus_per_actor is not None:
            return self.cpus_per_actor
        return GPU_ACTOR_CPUS if self.gpus_per_actor > 0 else 1.0

    def memory_bytes(self, backbone: str | None) -> int:
        """Bytes of memory each actor reserves (see :attr:`memory_per_actor`)."""
        if self.memory_per_actor is not None:
            return int(self.memory_per_actor * 2**30)
        base = next((gib for name, gib in ACTOR_MEMORY_GIB.items() if backbone and name in backbone), None)
        lanes = max(1, int(self.cpus)) if self.device == "cpu" else 1
        return int(((base or DEFAULT_ACTOR_MEMORY_GIB) + LANE_MEMORY_GIB * (lanes - 1)) * 2**30)

    def env_vars(self) -> dict[str, str]:
        """:attr:`worker_env` as a mapping (``NAME`` alone: the driver's value, which must be set)."""
        values = {}
        for item in self.worker_env:
            name, sep, value = item.partition("=")
            if not name or not name.replace("_", "a").isalnum():
                raise SansaError(f"worker_env {item}: expected NAME=VALUE or NAME")
            if not sep:
                if name not in os.environ:
                    raise SansaError(f"worker_env {name}: not set here, so there is no value to pass on")
                value = os.environ[name]
            values[name] = value
        return values

    def job_runtime_env(self) -> dict[str, Any] | None:
        """The runtime environment the job's workers get: :attr:`runtime_env` with :attr:`worker_env`
        added to its ``env_vars`` (``None`` when neither is given)."""
        env = dict(self.runtime_env or {})
        extra = self.env_vars()
        if extra:
            env["env_vars"] = {**dict(env.get("env_vars") or {}), **extra}
        return env or None


def parse_actors(text: str) -> int | tuple[int, int | None]:
    """``"4"`` -> 4 (a fixed pool); ``"1-8"`` -> ``(1, 8)``; ``"2-"`` -> ``(2, None)`` (autoscaling)."""
    low, sep, high = text.partition("-")
    try:
        if not sep:
            return int(low)
        return int(low), int(high) if high else None
    except ValueError:
        raise SansaError(f"actors {text}: expected N or MIN-MAX (e.g. 4 or 1-8)") from None


def parse_runtime_env(text: str) -> dict[str, Any]:
    """``runtime_env``: a JSON object, or a ``.json``/``.yaml`` file holding one."""
    path = Path(text).expanduser()
    try:
        if not text.lstrip().startswith("{") and path.is_file():
            import yaml

            values = yaml.safe_load(path.read_text(encoding="utf-8"))
        else:
            values = json.loads(text)
    except (OSError, ValueError) as err:  # yaml's and json's errors are ValueErrors
        raise SansaError(f"runtime_env: not a JSON object or a JSON/YAML file ({_first_line(err)})") from None
    if not isinstance(values, dict):
        raise SansaError('runtime_env: expected an object ({"pip": [...], "env_vars": {...}})')
    return values


def connect(options: RayOptions) -> None:
    """Join the Ray cluster at ``options.address`` (see :class:`RayOptions`) with the job's runtime
    environment, unless this process already has.

    Raises:
        SansaError: one line: no cluster there, a token-authenticated cluster without the token, ...
    """
    ray = import_ray()
    if ray.is_initialized():
        return
    where = f"address {options.address}" if options.address else "address"  # the CLI writes it as --ray
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")  # the core's own error lines: ours says why
    joining = bool(options.address) and options.address != "local"  # no Ray processes started here
    with _stderr_kept() if joining else contextlib.nullcontext(lambda: "") as said:
        # Ray's core writes a line per retry to file descriptor 2 (InvalidAuthToken, ...): kept back
        try:
            ray.init(
                address=options.address,
                runtime_env=options.job_runtime_env(),
                configure_logging=False,
                log_to_driver=True,
            )
            failure = None
        except Exception as err:  # Ray raises many kinds; every one becomes a line naming the cause
            failure = err
    if failure is None:
        sys.stderr.write(said())  # joined: whatever Ray said goes on as usual
        return
    _refuse(where, failure, said())


def _refuse(where: str, err: BaseException, said: str) -> None:
    """Raise the one-line :class:`SansaError` of a failed ``ray.init`` (``said``: what Ray wrote to stderr)."""
    if _is_auth_error(err) or _is_auth_error_text(said):
        raise SansaError(
            f"{where}: the cluster requires a token (RAY_AUTH_MODE=token) and this process has none "
            "or another: set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN (or ~/.ray/auth_token) as on the cluster"
        ) from None
    raise SansaError(f"{where}: cannot join a Ray cluster ({_first_line(err)}); {_CONNECT_HELP}") from None


@contextlib.contextmanager
def _stderr_kept() -> Iterator[Callable[[], str]]:
    """Collect what this process writes to file descriptor 2 (Ray's C++ core included) in the block;
    yields a function giving it as text once the block has ended."""
    sys.stderr.flush()
    with tempfile.TemporaryFile() as kept:
        saved = os.dup(2)
        text: list[str] = []
        try:
            os.dup2(kept.fileno(), 2)
            yield lambda: "".join(text)
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            kept.seek(0)
            text.append(kept.read().decode("utf-8", "replace"))


def quiet_ray_data() -> None:
    """Ray Data's progress bars, start-up lines and warnings off for this driver."""
    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    for name in ("ray.data", "ray.data._internal.execution.streaming_executor"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=UserWarning, module="ray.data")  # advice on pool sizes
    warnings.filterwarnings("ignore", category=DeprecationWarning, module="ray.data")


def import_ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise SansaError("executor: Ray is not installed: pip install 'sansa-segment[scale]'") from None
    return ray


def _is_auth_error(err: BaseException) -> bool:
    return _is_auth_error_text(f"{type(err).__name__} {err}")


def _is_auth_error_text(text: str) -> bool:
    return any(word in text for word in ("AuthenticationError", "InvalidAuthToken", "Unauthenticated", "auth token"))


def _show(actors: Any) -> str:
    if isinstance(actors, tuple):
        return f"{actors[0]}-{'' if actors[1] is None else actors[1]}"
    return str(actors)


def _first_line(err: BaseException) -> str:

    text = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return re.sub(r" at 0x[0-9a-fA-F]+", "", text)
