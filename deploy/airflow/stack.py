"""Start, check and stop Walnut's own Airflow 3 components on this machine, tracked by pid files.

    python -m deploy.airflow.stack start [--celery-workers N] [--broker rabbitmq|redis]
    python -m deploy.airflow.stack status
    python -m deploy.airflow.stack stop

AIRFLOW_HOME (default $WALNUT_HOME/airflow) holds everything: `walnut_stack.json` (the settings
the running components were started with), `pids/<component>.pid`, `logs/<component>.log`, the
task logs and the simple auth manager's generated admin password. Metadata go to the PostgreSQL
database `walnut_airflow` on 127.0.0.1:5432 (created when missing); SQLite is the fallback when
PostgreSQL does not answer. Every component listens on loopback only.
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from base64 import urlsafe_b64encode
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
PG_PORT = 5432
DEFAULT_DATABASE = "walnut_airflow"
DEFAULT_PORT = 8080
ADMIN_USER = "admin"
LOCAL_COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
# Airflow's log servers bind every interface; on one machine the api-server reads the task logs
# straight from logs/, so they are not started (a multi-machine deployment needs them or remote
# logging, see README "Operating").
SERVES_LOGS = ("scheduler", "triggerer")
HEALTH_PATH = "/api/v2/monitor/health"
BROKERS = {
    "rabbitmq": f"amqp://guest:guest@{HOST}:5672//",
    "redis": f"redis://{HOST}:6379/0",
}
STATE_FILE = "walnut_stack.json"
SECRETS_FILE = "walnut_secrets.json"
PASSWORD_FILE = "simple_auth_manager_passwords.json.generated"  # noqa: S105 (a file name)


@dataclass(frozen=True)
class StackConfig:
    """What the components of one Airflow deployment share; saved so a rerun reuses it."""

    airflow_home: Path
    walnut_home: Path
    db_url: str
    port: int
    executor: str = "LocalExecutor"
    parallelism: int = 4
    log_server_port: int = 8793
    trigger_log_server_port: int = 8794
    broker_url: str | None = None
    result_backend: str | None = None
    queue: str = "default"
    workers: tuple[str, ...] = ()
    worker_concurrency: int = 1
    worker_log_ports: tuple[int, ...] = ()
    extra_env: Mapping[str, str] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def pids_dir(self) -> Path:
        return self.airflow_home / "pids"

    @property
    def logs_dir(self) -> Path:
        return self.airflow_home / "logs"

    @property
    def password_file(self) -> Path:
        return self.airflow_home / PASSWORD_FILE

    @property
    def components(self) -> tuple[str, ...]:
        return (*LOCAL_COMPONENTS, *(f"celery-worker-{name}" for name in self.workers))


def find_postgres_role(host: str = HOST, port: int = PG_PORT) -> str | None:
    """The first role that connects without a password (trust auth on loopback), or None."""
    import psycopg2

    for role in dict.fromkeys(("postgres", getpass.getuser())):
        try:
            psycopg2.connect(
                host=host, port=port, user=role, dbname="postgres", connect_timeout=3
            ).close()
        except psycopg2.Error:
            continue
        return role
    return None


def postgres_url(database: str, role: str, driver: str = "postgresql+psycopg2") -> str:
    return f"{driver}://{role}@{HOST}:{PG_PORT}/{database}"


def _admin_execute(role: str, statement: str) -> None:
    import psycopg2

    conn = psycopg2.connect(host=HOST, port=PG_PORT, user=role, dbname="postgres")
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(statement)
    finally:
        conn.close()


def ensure_database(database: str, role: str) -> None:
    """Create the metadata database when missing (names are ours: [a-z0-9_] only)."""
    import psycopg2

    if not database.replace("_", "").isalnum():
        raise ValueError(f"unsafe database name {database!r}")
    conn = psycopg2.connect(host=HOST, port=PG_PORT, user=role, dbname="postgres")
    try:
        with conn.cursor() as cur:
            cur.execute("select 1 from pg_database where datname = %s", (database,))
            exists = cur.fetchone() is not None
    finally:
        conn.close()
    if not exists:
        _admin_execute(role, f'create database "{database}"')
        log.info("created PostgreSQL database %s", database)


def drop_database(database: str, role: str) -> None:
    """Drop a (test) metadata database, disconnecting whoever is still on it."""
    if not database.replace("_", "").isalnum():
        raise ValueError(f"unsafe database name {database!r}")
    _admin_execute(role, f'drop database if exists "{database}" with (force)')


def is_port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def find_free_port(preferred: int | None = None) -> int:
    """`preferred` when nothing listens on it, else any free loopback port."""
    if preferred and is_port_free(preferred):
        return preferred
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def load_secrets(airflow_home: Path) -> dict[str, str]:
    """Per-deployment signing keys shared by all components (created once, mode 0600)."""
    path = airflow_home / SECRETS_FILE
    if path.is_file():
        return json.loads(path.read_text())
    values = {
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
        "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
        "AIRFLOW__CORE__FERNET_KEY": urlsafe_b64encode(secrets.token_bytes(32)).decode(),
    }
    airflow_home.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(values, handle)
    return values


def build_env(config: StackConfig, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment every component runs with; WALNUT_* settings pass through from `base`."""
    env = dict(os.environ if base is None else base)
    env.update(load_secrets(config.airflow_home))
    env.update(
        AIRFLOW_HOME=str(config.airflow_home),
        WALNUT_HOME=str(config.walnut_home),
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
        AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "dags"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__EXECUTOR=config.executor,
        AIRFLOW__CORE__PARALLELISM=str(config.parallelism),
        # A task queued by a scheduler that then died is re-queued after this many seconds
        # instead of Airflow's default 10 minutes (the executor holding it is gone).
        AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT="90",
        AIRFLOW__CORE__AUTH_MANAGER=(
            "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
        ),
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=f"{ADMIN_USER}:admin",
        AIRFLOW__CORE__HOSTNAME_CALLABLE="deploy.airflow.hostname.get_worker_hostname",
        AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"{config.base_url}/execution/",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=config.db_url,
        AIRFLOW__API__HOST=HOST,
        AIRFLOW__API__PORT=str(config.port),
        AIRFLOW__API__BASE_URL=config.base_url,
        AIRFLOW__API__EXPOSE_CONFIG="False",
        AIRFLOW__LOGGING__BASE_LOG_FOLDER=str(config.logs_dir),
        AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=str(config.log_server_port),
        AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT=str(config.trigger_log_server_port),
        AIRFLOW__OPERATORS__DEFAULT_QUEUE=config.queue,
    )
    if config.broker_url:
        env.update(
            AIRFLOW__CELERY__BROKER_URL=config.broker_url,
            AIRFLOW__CELERY__RESULT_BACKEND=config.result_backend or "",
            AIRFLOW__CELERY__WORKER_CONCURRENCY=str(config.worker_concurrency),
        )
    env.update(config.extra_env)
    return env


def airflow_bin() -> str:
    """The `airflow` script of the interpreter running this module (the project's .venv)."""
    return str(Path(sys.executable).with_name("airflow"))


def component_command(config: StackConfig, name: str) -> tuple[list[str], dict[str, str]]:
    """Command line and extra environment of one component."""
    if name == "api-server":
        return [airflow_bin(), "api-server", "-H", HOST, "-p", str(config.port)], {}
    if name.startswith("celery-worker-"):
        worker = name.removeprefix("celery-worker-")
        port = config.worker_log_ports[config.workers.index(worker)]
        command = [
            airflow_bin(),
            "celery",
            "worker",
            "-H",
            f"{worker}@%h",
            "-c",
            str(config.worker_concurrency),
            "-q",
            config.queue,
            "--skip-serve-logs",
        ]
        return command, {
            "WALNUT_WORKER_NAME": worker,
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(port),
        }
    if name in SERVES_LOGS:
        return [airflow_bin(), name, "--skip-serve-logs"], {}
    return [airflow_bin(), name], {}


def read_pid(config: StackConfig, name: str) -> int | None:
    """The recorded pid when that process is still one of ours (alive and an airflow command)."""
    path = config.pids_dir / f"{name}.pid"
    if not path.is_file():
        return None
    pid = int(path.read_text().strip() or 0)
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    alive = stat.rsplit(")", 1)[-1].split()[0] != "Z"
    # Celery workers retitle themselves "[celeryd: w1@host:MainProcess]".
    return pid if alive and (b"airflow" in cmdline or b"celeryd" in cmdline) else None


def process_exited(config: StackConfig, name: str) -> bool:
    """True once the recorded process is gone or a zombie. Unlike `read_pid`, no command-line
    check: a starting Airflow process rewrites its title (setproctitle), and /proc's cmdline
    can read empty for that instant, which must not count as an exit."""
    path = config.pids_dir / f"{name}.pid"
    if not path.is_file():
        return True
    try:
        stat = Path(f"/proc/{int(path.read_text().strip() or 0)}/stat").read_text()
    except (OSError, ValueError):
        return True
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


def running_components(config: StackConfig) -> dict[str, int]:
    return {name: pid for name in config.components if (pid := read_pid(config, name))}


def migrate_db(config: StackConfig, env: Mapping[str, str]) -> None:
    """`airflow db migrate` (idempotent); its output goes to logs/db-migrate.log."""
    config.logs_dir.mkdir(parents=True, exist_ok=True)
    with open(config.logs_dir / "db-migrate.log", "ab") as out:
        subprocess.run(  # noqa: S603
            [airflow_bin(), "db", "migrate"],
            env=dict(env),
            stdout=out,
            stderr=subprocess.STDOUT,
            check=True,
            timeout=600,
        )


def start_component(config: StackConfig, name: str, env: Mapping[str, str]) -> int:
    """Start one component in its own process group (so stop takes its children too)."""
    command, extra = component_command(config, name)
    config.pids_dir.mkdir(parents=True, exist_ok=True)
    config.logs_dir.mkdir(parents=True, exist_ok=True)
    with open(config.logs_dir / f"{name}.log", "ab") as out:
        proc = subprocess.Popen(  # noqa: S603
            command,
            env={**env, **extra},
            cwd=config.airflow_home,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    (config.pids_dir / f"{name}.pid").write_text(f"{proc.pid}\n")
    log.info("started %s (pid %s)", name, proc.pid)
    return proc.pid


def save_config(config: StackConfig) -> None:
    data = asdict(config)
    data.update(airflow_home=str(config.airflow_home), walnut_home=str(config.walnut_home))
    (config.airflow_home / STATE_FILE).write_text(json.dumps(data, indent=2) + "\n")


def load_config(airflow_home: Path) -> StackConfig | None:
    path = airflow_home / STATE_FILE
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    data.update(
        airflow_home=Path(data["airflow_home"]),
        walnut_home=Path(data["walnut_home"]),
        workers=tuple(data["workers"]),
        worker_log_ports=tuple(data["worker_log_ports"]),
    )
    return StackConfig(**data)


def start_stack(config: StackConfig, base_env: Mapping[str, str] | None = None) -> list[str]:
    """Migrate, then start each component not already running; returns the names started."""
    config.airflow_home.mkdir(parents=True, exist_ok=True)
    env = build_env(config, base_env)
    running = running_components(config)
    if not running:
        migrate_db(config, env)
    save_config(config)
    started = []
    for name in config.components:
        if name in running:
            log.info("%s already running (pid %s)", name, running[name])
            continue
        start_component(config, name, env)
        started.append(name)
    return started


def fetch_health(config: StackConfig) -> dict:
    with urllib.request.urlopen(config.base_url + HEALTH_PATH, timeout=5) as resp:  # noqa: S310
        return json.loads(resp.read())


def is_healthy(health: dict) -> bool:
    parts = ("metadatabase", "scheduler", "triggerer", "dag_processor")
    return all((health.get(part) or {}).get("status") == "healthy" for part in parts)


def wait_healthy(config: StackConfig, timeout: float = 180) -> dict:
    """Poll the health endpoint until every component reports healthy; raises on timeout."""
    deadline = time.monotonic() + timeout
    health: dict = {}
    while time.monotonic() < deadline:
        for name in config.components:
            if process_exited(config, name):
                raise RuntimeError(f"{name} exited; see {config.logs_dir / (name + '.log')}")
        try:
            health = fetch_health(config)
        except (urllib.error.URLError, OSError, ValueError):
            health = {}
        if is_healthy(health):
            return health
        time.sleep(2)
    raise TimeoutError(f"Airflow not healthy after {timeout:.0f}s: {health or 'no answer'}")


def read_admin_password(config: StackConfig) -> str:
    """The password the simple auth manager generated for ADMIN_USER at first start."""
    return json.loads(config.password_file.read_text())[ADMIN_USER]


def stop_process_group(pid: int, timeout: float = 20) -> None:
    """TERM the process group led by `pid`, then KILL what is left after `timeout` seconds."""
    stop_process_groups([pid], timeout)


def _alive(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    return True


def stop_process_groups(pids: list[int], timeout: float = 20) -> None:
    """TERM every group at once, wait for all on one deadline, KILL what ignored it."""
    for pid in pids:
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
        time.sleep(0.5)
    for pid in pids:
        if _alive(pid):
            log.warning("process group %s ignored SIGTERM for %ss; killing it", pid, timeout)
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def stop_stack(config: StackConfig, timeout: float = 20) -> list[str]:
    """Stop exactly the components whose pid files we wrote; returns the names stopped."""
    running = {name: read_pid(config, name) for name in reversed(config.components)}
    stop_process_groups([pid for pid in running.values() if pid is not None], timeout)
    for name in running:
        (config.pids_dir / f"{name}.pid").unlink(missing_ok=True)
    return [name for name, pid in running.items() if pid is not None]


def default_airflow_home(environ: Mapping[str, str] | None = None) -> Path:
    """$AIRFLOW_HOME, else $WALNUT_HOME/airflow (var/airflow)."""
    env = os.environ if environ is None else environ
    walnut_home = Path(env.get("WALNUT_HOME") or ROOT / "var")
    return Path(env.get("AIRFLOW_HOME") or walnut_home / "airflow").resolve()


def resolve_config(args: argparse.Namespace, environ: Mapping[str, str]) -> StackConfig:
    """A new deployment's settings: PostgreSQL when reachable (else SQLite), free loopback ports."""
    walnut_home = Path(environ.get("WALNUT_HOME") or ROOT / "var").resolve()
    airflow_home = default_airflow_home(environ)
    role = find_postgres_role()
    if role:
        ensure_database(args.database, role)
        db_url = postgres_url(args.database, role)
    else:
        log.warning("PostgreSQL on %s:%s unreachable: falling back to SQLite", HOST, PG_PORT)
        db_url = f"sqlite:///{airflow_home / 'airflow.db'}"
    config = StackConfig(
        airflow_home=airflow_home,
        walnut_home=walnut_home,
        db_url=db_url,
        port=find_free_port(args.port),
        log_server_port=find_free_port(8793),
        trigger_log_server_port=find_free_port(8794),
    )
    if args.celery_workers:
        if not role:
            raise RuntimeError("the Celery variant needs PostgreSQL as its result backend")
        config = replace(
            config,
            executor="CeleryExecutor",
            broker_url=BROKERS[args.broker],
            result_backend=postgres_url(args.database, role, driver="db+postgresql+psycopg2"),
            workers=tuple(f"w{i}" for i in range(1, args.celery_workers + 1)),
            worker_log_ports=tuple(find_free_port() for _ in range(args.celery_workers)),
            worker_concurrency=args.concurrency,
        )
    return config


def print_login(config: StackConfig) -> None:
    db = config.db_url.split("://", 1)[0]
    print(f"Airflow is up: {config.base_url}  ({config.executor}, metadata on {db})")
    print(f"  user: {ADMIN_USER}   password: in {config.password_file}")
    print(f"  logs: {config.logs_dir}/   stop: make airflow-stop")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("action", choices=["start", "stop", "status"])
    parser.add_argument("--database", default=DEFAULT_DATABASE, help="PostgreSQL database")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="api-server port wanted")
    parser.add_argument("--celery-workers", type=int, default=0, help="0 = LocalExecutor")
    parser.add_argument("--broker", choices=sorted(BROKERS), default="rabbitmq")
    parser.add_argument("--concurrency", type=int, default=2, help="task slots per worker")
    parser.add_argument("--timeout", type=float, default=180, help="seconds to wait for health")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    saved = load_config(default_airflow_home())
    if args.action == "stop":
        stopped = stop_stack(saved) if saved else []
        print(f"stopped: {', '.join(stopped) or 'nothing was running'}")
        return 0
    if args.action == "status":
        running = running_components(saved) if saved else {}
        for name in saved.components if saved else ():
            print(f"{name:24} {'pid ' + str(running[name]) if name in running else 'stopped'}")
        return 0 if saved and len(running) == len(saved.components) else 1
    config = saved if saved and running_components(saved) else resolve_config(args, os.environ)
    started = start_stack(config)
    print(f"started: {', '.join(started) or 'nothing (all components already running)'}")
    wait_healthy(config, args.timeout)
    print_login(config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
