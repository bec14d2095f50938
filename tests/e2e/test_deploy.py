"""The deployment files in examples/ are tested by running what they describe.

Each test reads the shipped file (systemd units, Dockerfile, nginx site, Kubernetes
manifest), rewrites only what cannot work on a test machine (install paths, the public
port, /run), and runs the result with the real greenhorn: the unit's ExecStart under
systemd-socket-activate with sd_notify, the Dockerfile's ENTRYPOINT + CMD as PID 1 of a
new PID namespace, nginx in front of greenhorn's UNIX socket. So a change to an example
that breaks it breaks a test.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml

from conftest import ROOT, alive, base_env, children, read_all, wait_until
from greenhorn.config import load

EXAMPLES = ROOT / "examples"
SYSTEMD = EXAMPLES / "systemd"
UNIT_INSTALL_DIR = "/srv/greenhorn"  # the unit's WorkingDirectory: examples/ deployed there

pytestmark = pytest.mark.e2e


# --- helpers --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def short_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory whose paths fit in a UNIX socket address (108 bytes)."""
    if len(str(tmp_path)) < 70:
        yield tmp_path
        return
    path = Path(tempfile.mkdtemp(prefix="gh-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def greenhorn_executable(tmp_path: Path) -> str:
    """The installed ``greenhorn`` script, or a wrapper that execs ``python -m greenhorn``
    (exec keeps the PID, which socket activation and PID 1 both need)."""
    script = Path(sys.executable).with_name("greenhorn")
    if script.is_file() and os.access(script, os.X_OK):
        return str(script)
    wrapper = tmp_path / "greenhorn"
    wrapper.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m greenhorn "$@"\n')
    wrapper.chmod(0o755)
    return str(wrapper)


def parse_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """A systemd unit file as {section: {key: [values in order]}} (continuations joined)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    pending = ""
    for raw in path.read_text().splitlines():
        line = pending + raw.strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"{path.name}: {line!r} outside a section"
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not a Key=Value line: {line!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def parse_dockerfile(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue
        line = pending + stripped
        if line.endswith("\\"):
            pending = line[:-1].rstrip() + " "
            continue
        pending = ""
        instruction, _, args = line.partition(" ")
        out.append((instruction.upper(), args.strip()))
    return out


def one(instructions: list[tuple[str, str]], name: str) -> str:
    """The arguments of the last ``name`` instruction (the one Docker uses)."""
    found = [args for instr, args in instructions if instr == name]
    assert found, f"Dockerfile has no {name}"
    return found[-1]


def replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"expected exactly one {old!r} in the shipped file"
    return text.replace(old, new)


class Notifications:
    """The receiving end of NOTIFY_SOCKET: an AF_UNIX datagram socket we bound."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.messages: list[str] = []

    def count(self, needle: str) -> int:
        try:
            while True:
                self.messages.append(self.sock.recv(4096).decode())
        except TimeoutError:
            pass
        return sum(needle in m.splitlines() for m in self.messages)

    def wait(self, needle: str, n: int = 1, timeout: float = 15.0) -> None:
        wait_until(
            lambda: self.count(needle) >= n, timeout, what=f"{n}x {needle} in {self.messages}"
        )

    def close(self) -> None:
        self.sock.close()


def stop_process(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
    """Signal ``proc`` by PID and wait; SIGKILL its process group if it does not exit."""
    if proc.poll() is None:
        try:
            os.kill(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    kill_group(proc)
    return proc.returncode


def kill_group(proc: subprocess.Popen) -> None:
    """Last resort for a test that failed half way: the whole session we started."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        pass


def unix_get(path: Path, target: str = "/", timeout: float = 10) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(path))
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
        return read_all(s)


def live_children(pid: int) -> list[int]:
    return [p for p in children(pid) if alive(p)]


# --- systemd ----------------------------------------------------------------------------------


def unit_copies(tmp_path: Path, exe: str) -> tuple[Path, Path]:
    """The shipped units, with ExecStart pointing at the greenhorn installed here."""
    service = (SYSTEMD / "greenhorn.service").read_text()
    argv0 = shlex.split(parse_unit(SYSTEMD / "greenhorn.service")["Service"]["ExecStart"][-1])[0]
    service = replace_once(service, f"ExecStart={argv0} ", f"ExecStart={exe} ")
    units = tmp_path / "units"
    units.mkdir()
    (units / "greenhorn.service").write_text(service)
    shutil.copy(SYSTEMD / "greenhorn.socket", units / "greenhorn.socket")
    return units / "greenhorn.service", units / "greenhorn.socket"


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
def test_systemd_units_pass_systemd_analyze_verify(tmp_path):
    service, sock = unit_copies(tmp_path, greenhorn_executable(tmp_path))
    proc = subprocess.run(
        ["systemd-analyze", "verify", str(sock), str(service)],
        capture_output=True,
        text=True,
        timeout=60,
        env=base_env(SYSTEMD_LOG_COLOR="0"),
    )
    output = proc.stdout + proc.stderr
    # Unknown keys and unparsable values are only warnings (exit status 0): any line that
    # names one of our units is a failure.
    ours = [line for line in output.splitlines() if "greenhorn." in line]
    assert not ours, output
    assert proc.returncode == 0, output


def test_systemd_unit_settings_fit_together():
    service = parse_unit(SYSTEMD / "greenhorn.service")["Service"]
    sock = parse_unit(SYSTEMD / "greenhorn.socket")["Socket"]
    assert service["Type"] == ["notify"]
    assert service["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert service["KillMode"] == ["mixed"]
    assert service["Restart"][-1] in ("on-failure", "always")
    assert sock["ListenStream"][-1].startswith("/"), "the socket unit should be a UNIX socket"
    # greenhorn's own graceful deadline must end before systemd's SIGKILL.
    argv = shlex.split(service["ExecStart"][-1])
    cfg = load(argv[1:], {}, cwd=str(EXAMPLES), warn=pytest.fail)
    assert cfg.wsgi_app
    stop_sec = int(service["TimeoutStopSec"][-1].removesuffix("s"))
    assert stop_sec > cfg.graceful_timeout, (stop_sec, cfg.graceful_timeout)


@pytest.mark.skipif(
    not shutil.which("systemd-socket-activate"), reason="systemd-socket-activate not installed"
)
def test_systemd_unit_serves_with_socket_activation_and_sd_notify(tmp_path, short_dir):
    service = parse_unit(SYSTEMD / "greenhorn.service")["Service"]
    listen = parse_unit(SYSTEMD / "greenhorn.socket")["Socket"]["ListenStream"][-1]
    argv = shlex.split(service["ExecStart"][-1])
    assert service["WorkingDirectory"] == [UNIT_INSTALL_DIR]
    sock_path = short_dir / Path(listen).name  # ListenStream=/run/greenhorn.sock, moved
    # RuntimeDirectory=greenhorn (/run/greenhorn) moves too.
    assert service["RuntimeDirectory"] == ["greenhorn"]
    args = [a.replace("/run/greenhorn/", f"{short_dir}/") for a in argv[1:]]
    control = short_dir / "control.sock"
    assert args[args.index("--control-socket") + 1] == str(control)
    notify = Notifications(short_dir / "notify.sock")
    setenv = [f"NOTIFY_SOCKET={notify.path}"]
    for assignments in service.get("Environment", []):
        setenv.extend(shlex.split(assignments))
    cmd = ["systemd-socket-activate", "-l", str(sock_path)]
    for assignment in setenv:  # systemd-socket-activate passes on only what -E names
        cmd += ["-E", assignment]
    cmd += [greenhorn_executable(tmp_path), *args]
    err = tmp_path / "service.err"
    with open(err, "wb") as e:
        proc = subprocess.Popen(
            cmd,
            cwd=str(EXAMPLES),
            stdout=subprocess.DEVNULL,
            stderr=e,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        wait_until(sock_path.exists, 10, what="the activation socket")
        # systemd-socket-activate execs the service on the first connection.
        response = unix_get(sock_path)
        assert response.startswith(b"HTTP/1.1 200 "), response
        assert response.endswith(b"Hello from greenhorn!\n"), response
        notify.wait("READY=1")
        log = err.read_text()
        assert f"Listening at: unix:{sock_path} ({proc.pid})" in log, log
        assert log.count("Listening at:") == 1, "the activated socket is the only listener"
        workers = set(live_children(proc.pid))
        assert len(workers) == 4, log
        ctl = subprocess.run(
            [sys.executable, "-m", "greenhorn", "ctl", "-s", str(control), "--json", "workers"],
            capture_output=True,
            text=True,
            timeout=15,
            env=base_env(),
        )
        assert ctl.returncode == 0, ctl.stderr
        assert {w["pid"] for w in json.loads(ctl.stdout)["workers"]} == workers

        # ExecReload, as systemd would run it.
        reload_cmd = service["ExecReload"][-1].replace("$MAINPID", str(proc.pid))
        subprocess.run(shlex.split(reload_cmd), check=True, timeout=10)
        notify.wait("RELOADING=1")
        notify.wait("READY=1", n=2)
        wait_until(
            lambda: len(live_children(proc.pid)) == 4 and not workers & set(children(proc.pid)),
            20,
            what="a new generation of workers",
        )
        assert unix_get(sock_path).startswith(b"HTTP/1.1 200 ")

        # systemctl stop with KillMode=mixed: SIGTERM to the main process only.
        new_workers = set(live_children(proc.pid))
        timeout_stop = int(service["TimeoutStopSec"][-1].removesuffix("s"))
        assert stop_process(proc, timeout=timeout_stop) == 0
        notify.wait("STOPPING=1", timeout=5)
        assert not [p for p in new_workers if alive(p)]
        assert sock_path.exists(), "greenhorn must not unlink a socket systemd owns"
    finally:
        kill_group(proc)
        notify.close()


# --- Docker -----------------------------------------------------------------------------------


def _unshare_prefix() -> list[str] | None:
    if not shutil.which("unshare"):
        return None
    for prefix in (["unshare", "-pf", "--mount-proc"], ["unshare", "-rpf", "--mount-proc"]):
        try:
            probe = subprocess.run([*prefix, "true"], capture_output=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if probe.returncode == 0:
            return prefix
    return None


UNSHARE = _unshare_prefix()


def dockerfile_command() -> tuple[list[str], dict[str, str]]:
    """ENTRYPOINT + CMD (exec form) and the ENV of examples/Dockerfile."""
    instructions = parse_dockerfile(EXAMPLES / "Dockerfile")
    entrypoint = json.loads(one(instructions, "ENTRYPOINT"))
    cmd = json.loads(one(instructions, "CMD"))
    env: dict[str, str] = {}
    for instr, args in instructions:
        if instr == "ENV":
            for assignment in shlex.split(args):
                key, sep, value = assignment.partition("=")
                assert sep, f"ENV without '=': {assignment!r}"
                env[key] = value
    return entrypoint + cmd, env


def test_dockerfile_is_a_production_image():
    instructions = parse_dockerfile(EXAMPLES / "Dockerfile")
    assert re.fullmatch(r"python:3\.\d+-slim(-\w+)?", one(instructions, "FROM")), "slim base"
    user = one(instructions, "USER")
    assert user not in ("root", "0"), user
    assert one(instructions, "STOPSIGNAL") == "SIGTERM"
    assert json.loads(one(instructions, "ENTRYPOINT")) == ["greenhorn"]
    argv, env = dockerfile_command()
    assert env.get("WEB_CONCURRENCY", "").isdigit(), "workers should come from the environment"
    assert "-w" not in argv and "--workers" not in argv
    cfg = load(argv[1:], env, cwd=str(EXAMPLES), warn=pytest.fail)
    assert cfg.bind == [f"0.0.0.0:{env['PORT']}"]  # reachable from outside the container
    assert cfg.workers == int(env["WEB_CONCURRENCY"])
    assert cfg.wsgi_app == "hello:app"


def start_as_pid1(tmp_path: Path, sock_dir: Path) -> tuple[subprocess.Popen, int, int, Path]:
    """Run the Dockerfile's command as PID 1 of a new PID namespace, cwd = the image's
    WORKDIR contents (examples/), and wait until every worker has booted (sd_notify
    READY=1). Returns (unshare process, host pid of PID 1, port, error log)."""
    assert UNSHARE is not None
    argv, env = dockerfile_command()
    port = free_port()
    notify = Notifications(sock_dir / "notify.sock")
    # `docker run -e GREENHORN_CMD_ARGS=...`: bind to loopback for the test, not 0.0.0.0.
    environ = base_env(
        **env, GREENHORN_CMD_ARGS=f"--bind 127.0.0.1:{port}", NOTIFY_SOCKET=str(notify.path)
    )
    err = tmp_path / "container.err"
    with open(err, "wb") as e:
        proc = subprocess.Popen(
            [*UNSHARE, greenhorn_executable(tmp_path), *argv[1:]],
            cwd=str(EXAMPLES),
            env=environ,
            stdout=subprocess.DEVNULL,
            stderr=e,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        init = wait_until(lambda: children(proc.pid), 10, what="PID 1 of the namespace")[0]  # type: ignore[index]
        wait_until(
            lambda: _answers(port) or proc.poll() is not None,
            20,
            what=f"the container answering\n{err.read_text()[-2000:]}",
        )
        assert proc.poll() is None, err.read_text()
        notify.wait("READY=1")
    except BaseException:
        kill_group(proc)
        raise
    finally:
        notify.close()
    return proc, init, port, err


def _answers(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def ns_pid(host_pid: int) -> int:
    """The PID of ``host_pid`` inside its own (innermost) PID namespace."""
    with open(f"/proc/{host_pid}/status") as f:
        line = next(line for line in f if line.startswith("NSpid:"))
    return int(line.split()[-1])


@pytest.mark.skipif(UNSHARE is None, reason="unshare cannot create a PID namespace here")
def test_dockerfile_command_as_pid1_stops_cleanly_on_sigterm(tmp_path, short_dir):
    _, env = dockerfile_command()
    proc, init, port, err = start_as_pid1(tmp_path, short_dir)
    try:
        assert ns_pid(init) == 1
        r = requests.get(f"http://127.0.0.1:{port}/", timeout=10)
        assert r.text == "Hello from greenhorn!\n"
        workers = wait_until(
            lambda: (p := live_children(init)) and len(p) == int(env["WEB_CONCURRENCY"]) and p,
            10,
            what="WEB_CONCURRENCY workers",
        )
        # docker stop: STOPSIGNAL (SIGTERM) to PID 1.
        os.kill(init, signal.SIGTERM)
        assert proc.wait(20) == 0, err.read_text()  # unshare exits with PID 1's status
        log = err.read_text()
        assert "Handling signal: term" in log, log
        assert log.count("Worker exited (pid:") == len(workers), log  # not killed by the kernel
        assert not alive(init)
        assert not [p for p in workers if alive(p)]
    finally:
        kill_group(proc)


@pytest.mark.skipif(UNSHARE is None, reason="unshare cannot create a PID namespace here")
@pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("nsenter"), reason="needs root and nsenter"
)
def test_dockerfile_command_as_pid1_reaps_orphans(tmp_path, short_dir):
    proc, init, _, err = start_as_pid1(tmp_path, short_dir)
    try:
        workers = set(live_children(init))
        # A process inside the container whose parent exits: it is re-parented to PID 1.
        subprocess.run(
            ["nsenter", "-t", str(init), "-p", "--", "sh", "-c", "sleep 0.5 >/dev/null 2>&1 &"],
            check=True,
            timeout=10,
        )
        orphans = wait_until(
            lambda: set(children(init)) - workers, 5, what="the orphan re-parented to PID 1"
        )
        # Once it exits, PID 1 must reap it: no zombie left among its children.
        wait_until(
            lambda: not (set(children(init)) & orphans),  # type: ignore[operator]
            10,
            what=f"orphans {orphans} reaped by greenhorn",
        )
        assert set(live_children(init)) == workers, "reaping an orphan touched no worker"
        os.kill(init, signal.SIGTERM)
        assert proc.wait(20) == 0, err.read_text()
    finally:
        kill_group(proc)


# --- Kubernetes -------------------------------------------------------------------------------


def test_kubernetes_deployment_drains_before_it_is_killed():
    docs = list(yaml.safe_load_all((EXAMPLES / "kubernetes" / "deployment.yaml").read_text()))
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert "command" not in container, "keep the image's ENTRYPOINT"
    # the image is built locally (examples/Dockerfile) and is in no registry: with the
    # :latest tag the default pull policy (Always) would fail with ErrImagePull
    image, _, tag = container["image"].partition(":")
    assert "/" not in image and container.get("imagePullPolicy") in ("IfNotPresent", "Never")
    env = {e["name"]: e["value"] for e in container.get("env", [])}
    cfg = load(container["args"], env, cwd=str(EXAMPLES), warn=pytest.fail)
    port = int(env["PORT"])
    assert cfg.bind == [f"0.0.0.0:{port}"]
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    # Readiness goes through a worker (the application's port); liveness asks the master.
    ready = container["readinessProbe"]["httpGet"]
    assert named.get(ready["port"], ready["port"]) == port
    live = container["livenessProbe"]
    if "httpGet" in live:
        assert cfg.metrics_bind, "an HTTP liveness probe needs the master's /livez"
        assert live["httpGet"]["path"] == "/livez"
        metrics_port = int(cfg.metrics_bind.rsplit(":", 1)[1])
        assert named.get(live["httpGet"]["port"]) == metrics_port
    else:
        assert named.get(live["tcpSocket"]["port"]) == port
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    drain = float(pre_stop[1])
    assert drain > 0
    assert pod["terminationGracePeriodSeconds"] > drain + cfg.graceful_timeout
    service = next(d for d in docs if d["kind"] == "Service")
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]


def test_kubernetes_probes_answer(tmp_path):
    """The container's args and env, run for real: readiness through a worker, liveness
    from the master's /livez (addresses moved to loopback ports)."""
    docs = list(yaml.safe_load_all((EXAMPLES / "kubernetes" / "deployment.yaml").read_text()))
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container.get("env", [])}
    args = list(container["args"])
    app_port, metrics_port = free_port(), free_port()
    if "--metrics-bind" in args:
        args[args.index("--metrics-bind") + 1] = f"127.0.0.1:{metrics_port}"
    environ = base_env(**env, GREENHORN_CMD_ARGS=f"--bind 127.0.0.1:{app_port}")
    err = tmp_path / "pod.err"
    with open(err, "wb") as e:
        proc = subprocess.Popen(
            [greenhorn_executable(tmp_path), *args],
            cwd=str(EXAMPLES),
            env=environ,
            stdout=subprocess.DEVNULL,
            stderr=e,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        ready = container["readinessProbe"]["httpGet"]
        live = container["livenessProbe"]["httpGet"]
        ports = {"http": app_port, "metrics": metrics_port}

        def probe(spec: dict) -> int:
            url = f"http://127.0.0.1:{ports[spec['port']]}{spec['path']}"
            try:
                return requests.get(url, timeout=2).status_code
            except requests.RequestException:
                return 0

        wait_until(lambda: probe(ready) == 200, 20, what=f"readiness\n{err.read_text()}")
        assert probe(live) == 200
        # The master's own readiness: 200 once every worker has booted.
        readyz = {"port": "metrics", "path": "/readyz"}
        wait_until(lambda: probe(readyz) == 200, 20, what="/readyz")
        assert stop_process(proc) == 0, err.read_text()
    finally:
        kill_group(proc)


# --- nginx ------------------------------------------------------------------------------------

NGINX = shutil.which("nginx") or next(
    (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
)

NGINX_MAIN = """\
daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log info;
events {{ worker_connections 64; }}
http {{
    access_log {d}/nginx-access.log;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    include {d}/site.conf;
}}
"""


@pytest.mark.skipif(NGINX is None, reason="nginx not installed")
def test_nginx_site_proxies_to_the_unix_socket(greenhorn, tmp_path, short_dir):
    sock = short_dir / "greenhorn.sock"
    server = greenhorn(
        "-b",
        f"unix:{sock}",
        "--forwarded-allow-ips",
        "*",
        "--access-logfile",
        "-",
        "--timeout",
        "3",
        "echo_or_stuck:app",
        wait=False,
    )
    server.wait_for_log(r"Listening at: unix:")
    port = free_port()
    static = tmp_path / "static"
    static.mkdir()
    (static / "hello.txt").write_text("static from nginx\n")
    site = (EXAMPLES / "nginx" / "greenhorn.conf").read_text()
    site = replace_once(site, "server unix:/run/greenhorn.sock ", f"server unix:{sock} ")
    site = replace_once(site, "listen 80;", f"listen 127.0.0.1:{port};")
    site = replace_once(site, "alias /srv/greenhorn/static/;", f"alias {static}/;")
    (tmp_path / "site.conf").write_text(site)
    (tmp_path / "nginx.conf").write_text(NGINX_MAIN.format(d=tmp_path))
    nginx_err = tmp_path / "nginx.stderr"
    with open(nginx_err, "wb") as e:
        nginx = subprocess.Popen(
            [
                NGINX,
                "-p",
                f"{tmp_path}/",
                "-c",
                str(tmp_path / "nginx.conf"),
                "-e",
                str(tmp_path / "nginx-error.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=e,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:

        def nginx_up() -> bool:
            if nginx.poll() is not None:
                raise AssertionError(
                    f"nginx exited {nginx.returncode}: {nginx_err.read_text()}"
                    + (tmp_path / "nginx-error.log").read_text()
                )
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return True
            except OSError:
                return False

        wait_until(nginx_up, 10, what="nginx listening")
        base = f"http://127.0.0.1:{port}"

        # Forwarded headers come from nginx, not from the client.
        r = requests.get(
            f"{base}/some/path?q=1",
            headers={"Host": "example.com", "X-Forwarded-Proto": "https"},
            timeout=10,
        )
        assert r.status_code == 200, r.text
        info = json.loads(r.text.split("\n", 1)[0])
        assert info["PATH_INFO"] == "/some/path"
        assert info["QUERY_STRING"] == "q=1"
        assert info["HTTP_HOST"] == "example.com"
        assert info["headers"]["HTTP_X_FORWARDED_FOR"] == "127.0.0.1"
        assert info["headers"]["HTTP_X_FORWARDED_PROTO"] == "http"
        assert info["wsgi.url_scheme"] == "http"

        # Request buffering: a chunked upload reaches greenhorn whole, with a length.
        body = os.urandom(300_000)
        r = requests.post(f"{base}/upload", data=iter([body[:100_000], body[100_000:]]), timeout=20)
        assert r.status_code == 200, r.text
        head, echoed = r.content.split(b"\n", 1)
        info = json.loads(head)
        assert info["CONTENT_LENGTH"] == str(len(body))
        assert "HTTP_TRANSFER_ENCODING" not in info["headers"]
        assert echoed == body

        # Static files never reach greenhorn (whose access log has the proxied requests).
        r = requests.get(f"{base}/static/hello.txt", timeout=10)
        assert r.text == "static from nginx\n"
        wait_until(lambda: '"POST /upload HTTP/1.0" 200' in server.out, 10, what=server.out)
        assert "/static/" not in server.out

        # docs/deploy/nginx.md: proxy_read_timeout (60 s) is longer than greenhorn's timeout,
        # so greenhorn gives up on a stuck request first and its log names the request; the
        # client gets a 5xx (not nginx's 504 Gateway Timeout).
        r = requests.get(f"{base}/stuck?t=20", timeout=30)
        assert 500 <= r.status_code < 600 and r.status_code != 504, r.status_code
        assert r.elapsed.total_seconds() < 15
        server.wait_for_log(r"WORKER TIMEOUT \(pid:\d+\) while serving GET /stuck")
    finally:
        stop_process(nginx, signal.SIGQUIT, timeout=10)
    errors = (tmp_path / "nginx-error.log").read_text()
    assert not re.search(r"\[(emerg|alert|crit)\]", errors), errors
