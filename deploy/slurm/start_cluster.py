#!/usr/bin/env python
"""Start a Dask cluster of SLURM jobs (dask-jobqueue) and run ``dask-enrich run`` against it.

    python deploy/slurm/start_cluster.py --jobs 8 -- --positions P --manifest M --cache C --out O

Everything after ``--`` is passed to ``dask-enrich run``, with ``--scheduler <the cluster's
address>`` added. The scheduler runs in this process (on the node that runs the script, e.g. the
small allocation of submit.sh); the workers are SLURM jobs configured by jobqueue.yaml, kept at
``--jobs`` by ``cluster.adapt`` (a job whose workers leave at their ``--lifetime`` is replaced).
The exit code is that of ``dask-enrich run``; the worker jobs are cancelled when it ends.
``--dry-run`` prints the worker job script and the command, submits nothing and runs nothing.
"""
from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
NO_JOBQUEUE = 3  # exit code when dask-jobqueue is missing


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """Split ``argv`` at ``--``: this script's options, then the ``dask-enrich run`` options."""
    if "--" in argv:
        cut = argv.index("--")
        own, rest = argv[:cut], argv[cut + 1:]
    else:
        own, rest = argv, []
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(HERE / "jobqueue.yaml"),
                        help="dask-jobqueue YAML (default: jobqueue.yaml beside this script)")
    parser.add_argument("--jobs", type=int, default=4, help="SLURM worker jobs to start (default 4)")
    parser.add_argument("--min-workers", type=int, default=1,
                        help="workers to wait for before the run starts (default 1)")
    parser.add_argument("--wait", type=float, default=1800.0,
                        help="seconds to wait for --min-workers (queue time; default 1800)")
    parser.add_argument("--scheduler-file", default=None,
                        help="also write Dask's JSON scheduler file here, for other clients and "
                             "workers (`dask worker --scheduler-file F`, Client(scheduler_file=F))")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the worker job script and the dask-enrich command; submit nothing")
    args = parser.parse_args(own)
    if args.jobs < 1 or args.min_workers < 1:
        parser.error("--jobs and --min-workers must be at least 1")
    if any(a == "--scheduler" or a.startswith("--scheduler=") for a in rest):
        parser.error("do not pass --scheduler to dask-enrich run: this script adds its own")
    return args, rest


def load_config(path: str) -> None:
    """Merge the jobqueue YAML into the dask configuration of this process."""
    import dask.config
    import yaml

    with open(path) as handle:
        data = yaml.safe_load(handle) or {}
    dask.config.update(dask.config.config, data, priority="new")


def keep_jobs(cluster, jobs: int):
    """Keep ``jobs`` worker jobs running for the whole run: adaptive with minimum = maximum, so a
    job that ends (its workers leave at ``--lifetime`` before the walltime, or SLURM pre-empts it)
    is replaced by a new submission. ``cluster.scale(jobs=N)`` submits N jobs once and never
    replaces them: with ``--lifetime`` every worker would be gone after the first walltime."""
    return cluster.adapt(minimum_jobs=jobs, maximum_jobs=jobs)


def run_command(address: str, rest: list[str]) -> list[str]:
    """The ``dask-enrich run`` command line for a scheduler address."""
    return ["dask-enrich", "run", "--scheduler", address, *rest]


def main(argv: list[str] | None = None) -> int:
    args, rest = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError:
        print("error: dask-jobqueue is not installed (pip install dask-jobqueue), so no SLURM cluster "
              "can be started from here. Either install it, or start a cluster yourself (e.g. "
              "`dask scheduler --scheduler-file F` plus `srun dask worker --scheduler-file F`) and run "
              "`dask-enrich run --scheduler <address> ...`.", file=sys.stderr)
        return NO_JOBQUEUE
    load_config(args.config)
    from distributed import Client

    with SLURMCluster() as cluster:
        command = run_command(cluster.scheduler_address, rest)
        if args.dry_run:
            print(cluster.job_script())
            print("# dask-enrich command:")
            print(shlex.join(command))
            return 0
        print(f"scheduler {cluster.scheduler_address}, dashboard {cluster.dashboard_link}; "
              f"keeping {args.jobs} SLURM job(s)", file=sys.stderr, flush=True)
        keep_jobs(cluster, args.jobs)
        with Client(cluster) as client:
            if args.scheduler_file:
                client.write_scheduler_file(args.scheduler_file)  # Dask's JSON scheduler file
            client.wait_for_workers(args.min_workers, timeout=args.wait)
        print("running: " + shlex.join(command), file=sys.stderr, flush=True)
        return subprocess.call(command, env=os.environ.copy())


if __name__ == "__main__":
    sys.exit(main())
