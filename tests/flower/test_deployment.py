"""A real Flower deployment on 127.0.0.1: one SuperLink and two SuperNodes with TLS and node authentication.

The test starts every process itself, submits a two-round FMoE-CDSR with ``python main.py fit ...
--federation.runtime=flower`` and stops every process by its PID at the end. It also checks that a node whose key
is not on the SuperLink's allow-list is refused, and that a client failing in a round ends the run with an error
naming that client. Every wait is bounded.
"""

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from conftest import CONFIG, ROOT, TINY
from flower_runs import broken_beauty, metrics_of, run_in_process

from lightning_fed.flower.credentials import write_credentials
from lightning_fed.flower.launch import QUIET_FLOWER_ENV


def tool(name: str) -> str:
    """A Flower command of this interpreter's environment."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.is_file() else shutil.which(name)
    assert found is not None, f"{name} is not installed (pip install -e '.[flower]')"
    return found


TWO_ROUNDS = [*TINY, "--federation.rounds=2", "--federation.local_epochs=1"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, log: Path, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()[-3000:]
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise AssertionError(f"nothing listens on port {port} after {seconds} s: {log.read_text()[-3000:]}")


def wait_for_text(log: Path, text: str, process: subprocess.Popen, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if text in log.read_text():
            return
        assert process.poll() is None, log.read_text()[-3000:]
        time.sleep(0.5)
    raise AssertionError(f"{text!r} not in {log} after {seconds} s: {log.read_text()[-3000:]}")


def test_a_tls_and_node_authenticated_deployment_on_loopback(tmp_path):
    creds = write_credentials(tmp_path / "creds", "127.0.0.1", ["Food", "Beauty", "Intruder"])
    home = tmp_path / "flwr_home"
    home.mkdir()
    port = free_port()
    (home / "config.toml").write_text(
        f'[superlink.ci]\naddress = "127.0.0.1:{port}"\nroot-certificates = "{creds["ca.crt"]}"\n'
    )
    env = {**os.environ, **QUIET_FLOWER_ENV, "FLWR_HOME": str(home), "WANDB_MODE": "disabled"}
    processes: list[subprocess.Popen] = []

    def start(name: str, *command: str) -> tuple[subprocess.Popen, Path]:
        """Start a Flower process in its own process group (it starts a SuperExec child, stopped with it)."""
        log = tmp_path / f"{name}.log"
        process = subprocess.Popen(
            command, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env, cwd=tmp_path, start_new_session=True
        )
        processes.append(process)
        return process, log

    def supernode(client: str, key: str, *extra: str) -> list[str]:
        return [
            tool("flower-supernode"), "--superlink", f"127.0.0.1:{port}", "--root-certificates",
            str(creds["ca.crt"]), "--auth-supernode-private-key", str(creds[key]), "--node-config",
            f'client="{client}"', "--port", str(free_port()), *extra,
        ]  # fmt: skip

    def fit(run_dir: Path, *extra: str) -> subprocess.CompletedProcess:
        command = [
            sys.executable, str(ROOT / "main.py"), "fit", CONFIG, *TWO_ROUNDS, *extra,
            "--federation.runtime=flower", "--federation.flower.superlink=ci",
            "--federation.flower.round_timeout=300", f"--trainer.default_root_dir={run_dir}",
        ]  # fmt: skip
        return subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=900)

    try:
        superlink, superlink_log = start(
            "superlink", tool("flower-superlink"), "--host", "127.0.0.1", "--port", str(port),
            "--ssl-ca-certfile", str(creds["ca.crt"]), "--ssl-certfile", str(creds["server.pem"]),
            "--ssl-keyfile", str(creds["server.key"]), "--enable-supernode-auth",
            "--disable-runtime-dependency-installation",
        )  # fmt: skip
        wait_for_port(port, superlink, superlink_log)
        for client in ("Food", "Beauty"):  # the allow-list: only these two keys
            register = [tool("flwr"), "supernode", "register", str(creds[f"{client}.pub"]), "ci"]
            proc = subprocess.run(register, capture_output=True, text=True, env=env, timeout=120)
            assert proc.returncode == 0 and "registered successfully" in proc.stdout, proc.stdout + proc.stderr

        # A node whose key is not registered is refused, and gives up.
        intruder, intruder_log = start("intruder", *supernode("Food", "Intruder", "--max-retries", "1"))
        assert intruder.wait(timeout=180) != 0
        assert "Failed to activate SuperNode" in intruder_log.read_text()
        assert "No SuperNode found with the given public key" in superlink_log.read_text()

        for client in ("Food", "Beauty"):
            node, node_log = start(client, *supernode(client, client))
        wait_for_text(superlink_log, "Activated node_id", superlink, 120)

        started = time.monotonic()
        proc = fit(tmp_path / "flower")
        seconds = time.monotonic() - started
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
        flower = json.loads((tmp_path / "flower" / "results.json").read_text())
        assert flower["rounds_run"] == 2 and flower["clients"] == ["Food", "Beauty"]
        assert (tmp_path / "flower" / "flower_app" / "experiment.yaml").is_file()
        local = run_in_process([CONFIG, *TWO_ROUNDS], tmp_path / "inprocess")
        assert metrics_of(flower) == metrics_of(local)
        print(f"deployment: two rounds of FMoE-CDSR on 2 SuperNodes in {seconds:.1f} s")

        # A client that fails in a round ends the run with an error that names it (no hang).
        path = broken_beauty(tmp_path / "broken", ("Food", "Beauty"))
        proc = fit(tmp_path / "broken_run", f"--data.init_args.root={tmp_path / 'broken'}")
        output = proc.stdout + proc.stderr
        assert proc.returncode == 2, output[-4000:]
        assert "flower: client Beauty failed train" in output and f"{path}:3" in output, output[-4000:]
        assert len([line for line in proc.stderr.splitlines() if line.startswith("error:")]) == 1
    finally:
        for process in processes:  # each process group by its leader's PID: the process and its SuperExec
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)
        time.sleep(1)
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # a SuperExec that outlived its parent
