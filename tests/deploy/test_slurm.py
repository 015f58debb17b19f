"""The SLURM set-up (deploy/slurm) against the real dask-jobqueue: the worker command it generates
starts where SLURM leaves ``TMPDIR`` unset, and ``start_cluster.py`` keeps its worker jobs (a job
whose workers leave at ``--lifetime`` is replaced) and writes Dask's JSON scheduler file.

The end-to-end test runs ``start_cluster.py`` as a user would, with stand-ins for ``sbatch`` /
``scancel`` (each job script runs as a local process, with ``TMPDIR`` unset) and for
``dask-enrich`` (it checks the cluster from the outside, then exits)."""
from __future__ import annotations

import json
import re
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")
pytest.importorskip("dask_jobqueue")

ROOT = Path(__file__).resolve().parents[2]
SLURM = ROOT / "deploy" / "slurm"
NO_TMPDIR = {k: v for k, v in os.environ.items() if k != "TMPDIR"}


def job_script(tmp_path: Path, env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, str(SLURM / "start_cluster.py"), "--dry-run", "--",
                           "--positions", "p", "--manifest", "m", "--out", "o"],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def shell_words(line: str, env: dict[str, str]) -> list[str]:
    """The argv bash gives the command ``line`` (variables expanded, quotes removed) under ``env``."""
    done = subprocess.run(["bash", "-c", f'set -- {line}\nprintf "%s\\0" "$@"'], env=env,
                          capture_output=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return [w.decode() for w in done.stdout.split(b"\0")[:-1]]


@pytest.mark.parametrize("tmpdir", [None, "/scratch/job 42"], ids=["TMPDIR unset", "TMPDIR with space"])
def test_generated_worker_command_parses_whatever_tmpdir(tmp_path, tmpdir):
    """The worker line of the generated job script, expanded by bash as SLURM runs it, is a valid
    `dask worker` command with the lifetime options intact (a bare $TMPDIR that expands to nothing
    made `--local-directory --lifetime 115m`)."""
    from distributed.cli.dask_worker import main as worker_main

    env = {**NO_TMPDIR, **({"TMPDIR": tmpdir} if tmpdir else {})}
    (line,) = [ln for ln in job_script(tmp_path, NO_TMPDIR).splitlines()
               if "distributed.cli.dask_worker" in ln]
    argv = shell_words(line, env)
    start = argv.index("distributed.cli.dask_worker") + 1
    params = worker_main.make_context("dask worker", argv[start:]).params  # raises if invalid
    assert params["local_directory"] == (tmpdir or "/tmp")
    config = yaml.safe_load((SLURM / "jobqueue.yaml").read_text())["jobqueue"]["slurm"]
    extra = config["worker-extra-args"]
    assert params["lifetime"] == extra[extra.index("--lifetime") + 1]
    assert params["lifetime_stagger"] == extra[extra.index("--lifetime-stagger") + 1]
    assert params["scheduler"] == argv[start] and argv[start].startswith("tcp://")


FAKE_SBATCH = """\
#!/bin/bash
# stand-in for sbatch: run the job script as a local process (TMPDIR unset, as on some sites)
set -e
n=$(( $(ls "$FAKE_SLURM" | grep -c '\\.sh$' || true) + 1 ))
cp "$1" "$FAKE_SLURM/$n.sh"
setsid env -u TMPDIR bash "$FAKE_SLURM/$n.sh" > "$FAKE_SLURM/$n.log" 2>&1 < /dev/null &
echo $! > "$FAKE_SLURM/$n.pid"
echo "Submitted batch job $n"
"""
FAKE_SCANCEL = """\
#!/bin/bash
for job in "$@"; do kill -TERM -- -"$(cat "$FAKE_SLURM/$job.pid")" 2>/dev/null || true; done
"""
#: stand-in for dask-enrich: waits until a replacement job's worker has joined, reads the scheduler
#: file with Dask's own client, and exits 0 (or 9 with the reason)
FAKE_ENRICH = """\
#!{python}
import glob, os, sys, time
from distributed import Client

args = sys.argv[1:]
address = args[args.index("--scheduler") + 1]
with Client(scheduler_file=os.environ["SCHEDULER_FILE"], timeout="20s") as client:
    assert client.scheduler.address == address, (client.scheduler.address, address)
    client.wait_for_workers(1, timeout=60)
    first = set(client.scheduler_info()["workers"])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        jobs = len(glob.glob(os.path.join(os.environ["FAKE_SLURM"], "*.sh")))
        workers = set(client.scheduler_info()["workers"])
        if jobs >= 2 and workers - first:  # a worker of a later job
            print("replacement worker", sorted(workers), "after", sorted(first), flush=True)
            sys.exit(0)
        time.sleep(0.5)
print("no replacement job joined", jobs, sorted(workers), flush=True)
sys.exit(9)
"""


def _kill_jobs(folder: Path) -> None:
    for pid_file in folder.glob("*.pid"):
        try:
            os.killpg(int(pid_file.read_text()), signal.SIGKILL)
        except (ProcessLookupError, PermissionError, ValueError):
            pass


@pytest.mark.distributed
def test_start_cluster_replaces_jobs_that_reach_their_lifetime(tmp_path):
    """start_cluster.py with the shipped jobqueue.yaml (lifetime shortened to seconds): the first
    job starts with TMPDIR unset, its worker leaves at its lifetime, and a new job is submitted
    and joins while `dask-enrich run` still runs; the scheduler file is Dask's JSON."""
    jobs, bin_dir = tmp_path / "jobs", tmp_path / "bin"
    jobs.mkdir()
    bin_dir.mkdir()
    for name, text in (("sbatch", FAKE_SBATCH), ("scancel", FAKE_SCANCEL),
                       ("dask-enrich", FAKE_ENRICH.format(python=sys.executable))):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    config = yaml.safe_load((SLURM / "jobqueue.yaml").read_text())
    slurm = config["jobqueue"]["slurm"]
    slurm.update({"cores": 1, "memory": "1GiB", "death-timeout": 30, "job-script-prologue": [],
                  "log-directory": None, "worker-extra-args": ["--lifetime", "4s",
                                                               "--lifetime-stagger", "0s"],
                  "scheduler-options": {"host": "127.0.0.1", "dashboard_address": None}})
    assert slurm["local-directory"] == '"${TMPDIR:-/tmp}"'  # the shipped value, unchanged
    (tmp_path / "jobqueue.yaml").write_text(yaml.safe_dump(config))
    scheduler_file = tmp_path / "scheduler.json"
    env = {**NO_TMPDIR, "PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_SLURM": str(jobs),
           "SCHEDULER_FILE": str(scheduler_file), "PYTHONPATH": str(ROOT),
           "DASK_DISTRIBUTED__DEPLOY__LOST_WORKER_TIMEOUT": "1s", "PYTHONWARNINGS": "ignore"}
    try:
        done = subprocess.run([sys.executable, str(SLURM / "start_cluster.py"), "--config",
                               str(tmp_path / "jobqueue.yaml"), "--jobs", "1", "--wait", "60",
                               "--scheduler-file", str(scheduler_file), "--", "--positions", "p",
                               "--manifest", "m", "--out", "o"],
                              capture_output=True, text=True, cwd=tmp_path, env=env, timeout=180)
    finally:
        _kill_jobs(jobs)
    logs = "\n".join(f"--- {p.name}\n{p.read_text()[-1500:]}" for p in sorted(jobs.glob("*.log")))
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n{logs}"
    assert "replacement worker" in done.stdout
    first = (jobs / "1.log").read_text()
    assert "Start worker" in first and "/tmp/" in first  # started, spilling under /tmp
    identity = json.loads(scheduler_file.read_text())
    assert identity["type"] == "Scheduler" and identity["address"].startswith("tcp://127.0.0.1:")


def test_scheduler_file_option_is_dask_json_in_submit_script():
    text = (SLURM / "submit.sh").read_text()
    (path,) = re.findall(r"--scheduler-file\s+(\S+)", text)
    assert path.strip('"').endswith(".json")
