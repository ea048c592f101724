"""launch/: the Cloud TPU scripts, run as real bash subprocesses against a fake `gcloud`.

The fake (written into tmp_path/bin, first on PATH) appends its argv to a log, one JSON
list per line, answers `config get-value project` and `describe` from canned states
(FAKE_TPU_STATES / FAKE_QR_STATES: a comma-separated sequence, the last one repeating),
fails when its command line contains FAKE_GCLOUD_FAIL, copies `scp`'s file where it was
sent, and, when FAKE_WORKER_HOMES lists worker home folders, runs an `ssh --command` with
bash in each worker's home (HOME set, --worker=all or one number): the remote side of
setup/run/status/logs/stop then runs for real on this machine, with a fake `python` (the
trainer) and `pip` in each worker's ~/venv and a fake `curl` answering the metadata
server's worker number.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAUNCH = ROOT / "launch"
SCRIPTS = ["common.sh", "create.sh", "setup.sh", "run.sh", "status.sh", "logs.sh", "stop.sh", "teardown.sh"]

FAKE_GCLOUD = """#!{python}
import json, os, shutil, subprocess, sys
from pathlib import Path

args = sys.argv[1:]
log = os.environ["FAKE_GCLOUD_LOG"]
with open(log, "a") as f:
    f.write(json.dumps(args) + "\\n")
fail = os.environ.get("FAKE_GCLOUD_FAIL")
if fail and fail in " ".join(args):
    print("ERROR: (gcloud) fake failure: " + fail, file=sys.stderr)
    sys.exit(1)
if args[:3] == ["config", "get-value", "project"]:
    print(os.environ.get("FAKE_PROJECT", ""))
    sys.exit(0)
if "describe" in args:
    kind = "QR" if "queued-resources" in args else "TPU"
    states = os.environ.get("FAKE_%s_STATES" % kind, "ACTIVE" if kind == "QR" else "READY").split(",")
    counter = Path(log + "." + kind)
    n = int(counter.read_text()) if counter.exists() else 0
    counter.write_text(str(n + 1))
    print(states[min(n, len(states) - 1)])
    sys.exit(0)
if "scp" in args:
    positional = [a for a in args[4:] if not a.startswith("--")]
    shutil.copy(positional[0], positional[1].split(":", 1)[1])
    sys.exit(0)
if "ssh" in args and os.environ.get("FAKE_WORKER_HOMES"):
    flag = {a.split("=", 1)[0]: a.split("=", 1)[1] for a in args if a.startswith("--") and "=" in a}
    homes = os.environ["FAKE_WORKER_HOMES"].split(os.pathsep)
    chosen = range(len(homes)) if flag["--worker"] == "all" else [int(flag["--worker"])]
    rc = 0
    for i in chosen:
        env = dict(os.environ, HOME=homes[i], FAKE_WORKER=str(i))
        rc = max(rc, subprocess.run(["bash", "-c", flag["--command"]], env=env, cwd=homes[i]).returncode)
    sys.exit(rc)
"""

# The metadata server's answer: this worker's number.
FAKE_CURL = """#!/usr/bin/env bash
[ -n "${FAKE_WORKER:-}" ] && echo "$FAKE_WORKER"
"""

# The trainer: prints its arguments one per line; exits with FAKE_TRAINER_EXIT at once,
# or else runs until SIGTERM (then "writes a final checkpoint" and exits 0), 20 s at most.
FAKE_PYTHON = """#!/usr/bin/env bash
if [ "${1:-}" = -c ]; then echo 0.0.fake; exit 0; fi
echo "fake trainer on worker $FAKE_WORKER in $PWD, args:"
printf '<%s>\\n' "$@"
if [ -n "${FAKE_TRAINER_EXIT:-}" ]; then echo "trainer failed"; exit "$FAKE_TRAINER_EXIT"; fi
trap 'echo "SIGTERM received: final checkpoint written"; exit 0' TERM
for _ in $(seq 400); do sleep 0.05; done
exit 9
"""

FAKE_PIP = """#!/usr/bin/env bash
echo "pip $*" >> "$HOME/pip.log"
"""

# Settings the scripts read: none may leak in from the environment running the tests.
SETTINGS = ["TPU_NAME", "ZONE", "ACCELERATOR", "RUNTIME", "QUEUED", "QR_NAME", "SPOT", "RESERVED", "POLL_S",
            "TIMEOUT_S", "STOP_WAIT_S", "REPO_DIR", "VENV", "LOG_DIR", "WORKER", "RUN_NAME", "PROJECT", "WORKDIR",
            "FOLLOW", "FORCE", "WAIT_ONLY", "ARCHIVE", "REMOTE_ARCHIVE", "TAIL_LINES"]


def _write(path: Path, text: str, mode: int = 0o755) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


class Launch:
    """Runs launch scripts against the fake gcloud; `calls()` is what gcloud was asked."""

    def __init__(self, tmp_path: Path, launch_dir: Path = LAUNCH):
        self.tmp = tmp_path
        self.launch_dir = launch_dir
        bin_dir = tmp_path / "bin"
        _write(bin_dir / "gcloud", FAKE_GCLOUD.replace("{python}", sys.executable))
        _write(bin_dir / "curl", FAKE_CURL)
        self.log = tmp_path / "gcloud.log"
        self.env = {k: v for k, v in os.environ.items() if k not in SETTINGS and not k.startswith("FAKE_")}
        self.env.update(PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", FAKE_GCLOUD_LOG=str(self.log),
                        PROJECT="proj-x", TPU_NAME="tpu-1", ZONE="zone-a", ACCELERATOR="v4-8", POLL_S="0",
                        REMOTE_ARCHIVE=str(tmp_path / "remote.tgz"))  # where the fake scp puts it
        self.homes: list[Path] = []

    def workers(self, n: int) -> list[Path]:
        """n fake worker homes, each with the checkout folder and a venv holding the fakes."""
        for i in range(n):
            home = self.tmp / f"worker{i}"
            (home / "archer_jax").mkdir(parents=True)
            _write(home / "venv/bin/activate", 'export PATH="$HOME/venv/bin:$PATH"\n', 0o644)
            _write(home / "venv/bin/python", FAKE_PYTHON)
            _write(home / "venv/bin/pip", FAKE_PIP)
            self.homes.append(home)
        self.env["FAKE_WORKER_HOMES"] = os.pathsep.join(map(str, self.homes))
        return self.homes

    def __call__(self, script: str, *args: str, check: bool = True, **env: str) -> subprocess.CompletedProcess:
        done = subprocess.run(["bash", str(self.launch_dir / script), *args], env={**self.env, **env},
                              capture_output=True, text=True, timeout=60)
        if check:
            assert done.returncode == 0, f"{script} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
        return done

    def calls(self) -> list[list[str]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def reset(self) -> None:
        for f in self.tmp.glob("gcloud.log*"):
            f.unlink()

    def kill_leftovers(self) -> None:
        for pid_file in self.tmp.glob("worker*/archer_logs/*.pid"):
            try:
                os.kill(int(pid_file.read_text()), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass


@pytest.fixture
def launch(tmp_path):
    runner = Launch(tmp_path)
    yield runner
    runner.kill_leftovers()


def _wait_for(path: Path, timeout: float = 15.0) -> str:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)
    time.sleep(0.05)  # written by a rename, or by the trainer's first write: complete by now
    return path.read_text()


TPU = ["compute", "tpus", "tpu-vm"]
QR = ["compute", "tpus", "queued-resources"]
WHERE = ["--zone=zone-a", "--project=proj-x"]
DESCRIBE_TPU = [*TPU, "describe", "tpu-1", "--format=value(state)", *WHERE]
DESCRIBE_QR = [*QR, "describe", "tpu-1", "--format=value(state.state)", *WHERE]


# -- every script -------------------------------------------------------------------------

@pytest.mark.parametrize("name", SCRIPTS)
def test_scripts_are_strict_documented_and_share_settings(name):
    lines = (LAUNCH / name).read_text().splitlines()
    assert lines[0] == "#!/usr/bin/env bash"
    assert lines[1].startswith("# ") and lines[2].startswith("#"), "a usage comment at the top"
    assert "set -euo pipefail" in lines
    if name != "common.sh":
        assert 'source "$(dirname "${BASH_SOURCE[0]}")/common.sh"' in lines


# -- create.sh ----------------------------------------------------------------------------

def test_create_waits_until_ready(launch):
    done = launch("create.sh", FAKE_TPU_STATES="CREATING,CREATING,READY", TPU_NAME="tpu-1",
                  ACCELERATOR="v4-32")
    assert launch.calls() == [
        [*TPU, "create", "tpu-1", "--accelerator-type=v4-32", "--version=tpu-ubuntu2204-base", *WHERE],
        DESCRIBE_TPU, DESCRIBE_TPU, DESCRIBE_TPU,
    ]
    assert "tpu-vm tpu-1 is READY" in done.stderr


@pytest.mark.parametrize("accelerator, runtime", [
    ("v2-8", "tpu-ubuntu2204-base"), ("v3-32", "tpu-ubuntu2204-base"), ("v4-8", "tpu-ubuntu2204-base"),
    ("v5litepod-16", "v2-alpha-tpuv5-lite"), ("v5e-8", "v2-alpha-tpuv5-lite"), ("v5p-8", "v2-alpha-tpuv5"),
    ("v6e-8", "v2-alpha-tpuv6e"),
])
def test_runtime_follows_the_accelerator(launch, accelerator, runtime):
    launch("create.sh", ACCELERATOR=accelerator)
    assert launch.calls()[0] == [*TPU, "create", "tpu-1", f"--accelerator-type={accelerator}",
                                 f"--version={runtime}", *WHERE]


def test_runtime_setting_wins_and_unknown_accelerators_need_it(launch):
    launch("create.sh", ACCELERATOR="v4-8", RUNTIME="v2-alpha-tpuv4")
    assert "--version=v2-alpha-tpuv4" in launch.calls()[0]
    launch.reset()
    done = launch("create.sh", ACCELERATOR="v9x-8", check=False)
    assert done.returncode != 0 and "set RUNTIME" in done.stderr
    assert launch.calls() == []
    launch("teardown.sh", ACCELERATOR="v9x-8")  # only create.sh needs a runtime


def test_create_spot_and_reserved(launch):
    launch("create.sh", SPOT="1")
    assert launch.calls()[0][-3:] == ["--spot", *WHERE]
    launch.reset()
    launch("create.sh", RESERVED="1")
    assert launch.calls()[0][-3:] == ["--reserved", *WHERE]
    done = launch("create.sh", SPOT="1", RESERVED="1", check=False)
    assert done.returncode != 0 and "exclude each other" in done.stderr


def test_create_queued_resource_waits_for_active_then_ready(launch):
    launch("create.sh", QUEUED="1", SPOT="1", ACCELERATOR="v5litepod-16",
           FAKE_QR_STATES="ACCEPTED,WAITING_FOR_RESOURCES,PROVISIONING,ACTIVE")
    assert launch.calls() == [
        [*QR, "create", "tpu-1", "--node-id=tpu-1", "--accelerator-type=v5litepod-16",
         "--runtime-version=v2-alpha-tpuv5-lite", "--spot", *WHERE],
        DESCRIBE_QR, DESCRIBE_QR, DESCRIBE_QR, DESCRIBE_QR,
        DESCRIBE_TPU,
    ]


def test_create_wait_only_creates_nothing(launch):
    launch("create.sh", QUEUED="1", QR_NAME="my-qr", WAIT_ONLY="1", RESERVED="1")
    assert launch.calls() == [[*QR, "describe", "my-qr", "--format=value(state.state)", *WHERE], DESCRIBE_TPU]


@pytest.mark.parametrize("queued, states", [("0", "CREATING,PREEMPTED"), ("1", "WAITING_FOR_RESOURCES,FAILED"),
                                            ("1", "SUSPENDED")])
def test_create_fails_on_a_state_that_cannot_become_ready(launch, queued, states):
    done = launch("create.sh", QUEUED=queued, FAKE_QR_STATES=states, FAKE_TPU_STATES=states, check=False)
    assert done.returncode != 0
    assert f"is {states.split(',')[-1]}, it will not become" in done.stderr
    assert "launch/teardown.sh" in done.stderr
    if queued == "1":
        assert DESCRIBE_TPU not in launch.calls(), "no waiting for a node that will not come"


def test_create_times_out(launch):
    done = launch("create.sh", FAKE_TPU_STATES="CREATING", TIMEOUT_S="0", check=False)
    assert done.returncode != 0
    assert "timed out after 0s waiting for tpu-vm tpu-1 to be READY (last state: CREATING)" in done.stderr


def test_project_comes_from_gcloud_config_or_is_required(launch):
    env = {k: v for k, v in launch.env.items() if k != "PROJECT"}
    launch.env = env
    launch("teardown.sh", FAKE_PROJECT="from-config")
    assert launch.calls() == [["config", "get-value", "project"],
                              [*TPU, "delete", "tpu-1", "--quiet", "--zone=zone-a", "--project=from-config"]]
    launch.reset()
    done = launch("teardown.sh", FAKE_PROJECT="", check=False)
    assert done.returncode != 0 and "no Google Cloud project" in done.stderr
    assert launch.calls() == [["config", "get-value", "project"]]


# -- a failing gcloud fails the script, and nothing runs after it ---------------------------

@pytest.mark.parametrize("script, fail, env", [
    ("create.sh", "tpu-vm create", {}),
    ("create.sh", "queued-resources create", {"QUEUED": "1"}),
    ("create.sh", "describe", {}),
    ("setup.sh", "scp", {}),
    ("setup.sh", "ssh", {}),
    ("run.sh", "ssh", {"WORKDIR": "gs://b/r"}),
    ("status.sh", "describe", {}),
    ("status.sh", "ssh", {}),
    ("logs.sh", "ssh", {}),
    ("stop.sh", "ssh", {}),
    ("teardown.sh", "delete", {}),
    ("teardown.sh", "delete", {"QUEUED": "1"}),
])
def test_a_failing_gcloud_fails_the_script(launch, script, fail, env):
    done = launch(script, check=False, FAKE_GCLOUD_FAIL=fail, **env)
    assert done.returncode != 0, done.stderr
    assert "fake failure" in done.stderr
    calls = launch.calls()
    assert fail in " ".join(calls[-1]), "the script stopped at the failing call"


# -- teardown.sh --------------------------------------------------------------------------

def test_teardown(launch):
    launch("teardown.sh")
    launch("teardown.sh", QUEUED="1", QR_NAME="my-qr")
    assert launch.calls() == [[*TPU, "delete", "tpu-1", "--quiet", *WHERE],
                              [*QR, "delete", "my-qr", "--force", "--quiet", *WHERE]]


# -- setup.sh -----------------------------------------------------------------------------

def _members(archive: Path) -> list[str]:
    with tarfile.open(archive) as tar:
        return [m.name for m in tar.getmembers() if m.isfile()]


def _assert_nothing_local(members: list[str]) -> None:
    for name in members:
        parts = name.split("/")
        assert not {".git", ".venv", "venv", ".ci-venv", "__pycache__", ".pytest_cache"} & set(parts), name
        assert not any(p.endswith(".egg-info") for p in parts), name
        assert not parts[1].startswith("workdir") and not name.endswith(".pyc"), name


def test_setup_ships_this_checkout_without_local_state(launch, tmp_path):
    archive = tmp_path / "src.tgz"
    launch("setup.sh", ARCHIVE=str(archive))
    members = _members(archive)
    _assert_nothing_local(members)
    git = shutil.which("git") and subprocess.run(["git", "-C", str(ROOT), "ls-files"], capture_output=True)
    if git and git.returncode == 0:  # a git checkout: exactly the files git knows (none untracked here)
        for name in ["README.md", "requirements-tpu.txt", "setup.py", "launch/run.sh", "archer_jax/trainer.py"]:
            assert "./" + name in members
    assert launch.calls() == [
        [*TPU, "scp", str(archive), f"tpu-1:{tmp_path / 'remote.tgz'}", "--worker=all", *WHERE],
        [*TPU, "ssh", "tpu-1", "--worker=all", launch.calls()[1][6], *WHERE],
    ]
    command = launch.calls()[1][6]
    assert command.startswith("--command=REPO_DIR=archer_jax\nVENV=venv\n")
    assert "pip install -q -r requirements-tpu.txt" in command


def test_setup_outside_git_excludes_local_state_and_installs_on_the_worker(launch, tmp_path):
    # A copy of launch/ in a folder that is no git checkout, with everything that must stay home.
    checkout = tmp_path / "checkout"
    for name in SCRIPTS:
        _write(checkout / "launch" / name, (LAUNCH / name).read_text())
    for name in ["README.md", "requirements-tpu.txt", "pkg/mod.py", "pkg/sub/data.txt", "experiments/workdir_util.py",
                 ".venv/bin/python", "venv/lib/x.py", ".ci-venv/x", ".git/HEAD", "pkg/__pycache__/mod.cpython-312.pyc",
                 "pkg.egg-info/PKG-INFO", ".pytest_cache/v/cache", "workdir/checkpoints/1", "workdir_gc/m.jsonl",
                 "pkg/old.pyc"]:
        _write(checkout / name, name + "\n", 0o644)
    launch.launch_dir = checkout / "launch"
    (home,) = launch.workers(1)
    (home / "archer_jax/stale.py").write_text("deleted since the last setup\n")
    archive = tmp_path / "src.tgz"
    remote = tmp_path / "remote.tgz"
    done = launch("setup.sh", ARCHIVE=str(archive), GIT_CEILING_DIRECTORIES=str(tmp_path))
    assert sorted(_members(archive)) == ["./README.md", "./experiments/workdir_util.py",
                                         *[f"./launch/{n}" for n in sorted(SCRIPTS)],
                                         "./pkg/mod.py", "./pkg/sub/data.txt", "./requirements-tpu.txt"]
    # the worker side ran: the new copy in place, the previous one kept aside, requirements installed
    assert (home / "archer_jax/pkg/sub/data.txt").read_text() == "pkg/sub/data.txt\n"
    assert not (home / "archer_jax/stale.py").exists() and (home / "archer_jax.old/stale.py").exists()
    assert not remote.exists()
    assert (home / "pip.log").read_text() == "pip install -q --upgrade pip\npip install -q -r requirements-tpu.txt\n"
    assert "archer_jax installed, jax 0.0.fake" in done.stdout


# -- run.sh, status.sh, logs.sh, stop.sh --------------------------------------------------

def test_run_is_detached_logged_per_worker_and_records_a_failure(launch):
    homes = launch.workers(2)
    done = launch("run.sh", "--config=guess_city.py", "--config.seed=1", "a b'c", WORKDIR="gs://bucket/runs/gc1/",
                  FAKE_TRAINER_EXIT="3")
    (call,) = launch.calls()
    assert call[:6] == [*TPU, "ssh", "tpu-1", "--worker=all"] and call[7:] == WHERE
    command = call[6]
    assert command.startswith("--command=RUN_NAME=gc1\nLOG_DIR=archer_logs\n")
    assert "nohup setsid bash \"$d/$RUN_NAME.sh\" > /dev/null 2>&1 < /dev/null &" in command
    assert "set -o pipefail" in command
    for i, home in enumerate(homes):
        assert f"worker {i}: started gc1, log ~/archer_logs/gc1.log" in done.stdout
        assert _wait_for(home / "archer_logs/gc1.exit") == "3\n"
        log = (home / "archer_logs/gc1.log").read_text()
        assert (f"fake trainer on worker {i} in {home}/archer_jax, args:\n<-m>\n<experiments.run>\n<--distributed>\n"
                "<--workdir=gs://bucket/runs/gc1/>\n<--config=guess_city.py>\n<--config.seed=1>\n<a b'c>\n"
                "trainer failed\n") in log
        assert "gc1 exited with 3" in log
        assert (home / "archer_logs/latest").read_text() == "gc1\n"
    status = launch("status.sh")
    assert status.stdout.splitlines() == [
        "TPU tpu-1 (zone-a, proj-x): READY",
        "worker 0: gc1 finished, exit code 3 (log ~/archer_logs/gc1.log)",
        "worker 1: gc1 finished, exit code 3 (log ~/archer_logs/gc1.log)",
    ]


def test_run_status_logs_stop(launch):
    homes = launch.workers(2)
    launch("run.sh", "--config=guess_city.py", WORKDIR="gs://bucket/gc1", RUN_NAME="gc1-seed1")
    for home in homes:
        _wait_for(home / "archer_logs/gc1-seed1.pid")
    status = launch("status.sh").stdout
    assert "worker 0: gc1-seed1 RUNNING (pid" in status and "worker 1: gc1-seed1 RUNNING (pid" in status

    again = launch("run.sh", WORKDIR="gs://bucket/other", check=False)
    assert again.returncode != 0 and "worker 0: run gc1-seed1 is still running" in again.stderr
    assert not (homes[0] / "archer_logs/other.sh").exists()

    logs = launch("logs.sh").stdout
    assert "[worker 0] <--config=guess_city.py>" in logs and "[worker 1] <--config=guess_city.py>" in logs
    logs = launch("logs.sh", WORKER="1", TAIL_LINES="1").stdout
    assert logs == "[worker 1] <--config=guess_city.py>\n"
    assert launch.calls()[-1][5] == "--worker=1"

    stop = launch("stop.sh", STOP_WAIT_S="15")
    for i, home in enumerate(homes):
        assert f"worker {i}: sent SIGTERM to gc1-seed1" in stop.stdout
        assert f"worker {i}: gc1-seed1 ended, exit code 0" in stop.stdout
        assert (home / "archer_logs/gc1-seed1.exit").read_text() == "0\n"
        assert "SIGTERM received: final checkpoint written" in (home / "archer_logs/gc1-seed1.log").read_text()
    assert "stopped by launch/stop.sh, exit code 0" in launch("status.sh").stdout
    assert "already ended, exit code 0" in launch("stop.sh").stdout


def test_stop_signals_once_and_reports_a_run_that_does_not_end(launch):
    (home,) = launch.workers(1)
    launch("run.sh", WORKDIR="gs://bucket/gc1")
    pid = int(_wait_for(home / "archer_logs/gc1.pid"))
    (home / "archer_logs/gc1.stopped").write_text("earlier\n")  # as if stop.sh had signalled it already
    done = launch("stop.sh", STOP_WAIT_S="1", check=False)
    assert done.returncode != 0
    assert "was sent SIGTERM at earlier; not again" in done.stdout
    assert "still running after 1s" in done.stderr
    os.kill(pid, 0)  # untouched


def test_logs_follow_command_and_died_runs(launch):
    launch("logs.sh", FOLLOW="1", WORKER="0")
    assert "TAIL_ARGS=-n\\ 50\\ -F" in launch.calls()[0][6]
    (home,) = launch.workers(1)
    logs = home / "archer_logs"
    logs.mkdir()
    (logs / "latest").write_text("gone\n")
    dead = subprocess.Popen(["true"])
    dead.wait()
    (logs / "gone.pid").write_text(f"{dead.pid}\n")
    assert "worker 0: gone DIED without an exit code" in launch("status.sh").stdout
    assert "worker 0: gone is not running" in launch("stop.sh").stdout


def test_status_of_a_queued_resource_still_waiting(launch):
    done = launch("status.sh", QUEUED="1", FAKE_QR_STATES="WAITING_FOR_RESOURCES", check=False)
    assert done.returncode == 1
    assert done.stdout == "queued resource tpu-1: WAITING_FOR_RESOURCES\n"
    assert launch.calls() == [DESCRIBE_QR]


def test_run_needs_a_workdir_and_names_stay_in_their_folders(launch):
    done = launch("run.sh", check=False)
    assert done.returncode != 0 and "set WORKDIR" in done.stderr
    done = launch("run.sh", WORKDIR="gs://b/x", RUN_NAME="../x", check=False)
    assert done.returncode != 0 and "RUN_NAME=../x" in done.stderr
    for bad in ["/", "..", "a/../..", "/home/x"]:
        done = launch("setup.sh", REPO_DIR=bad, check=False)
        assert done.returncode != 0 and f"REPO_DIR={bad}: a folder under the home directory" in done.stderr
    assert launch.calls() == []
