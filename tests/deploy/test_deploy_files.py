"""The files of ``deploy/`` parse, and every command they contain is a real command of this package
or of Dask, with real options: checked against the actual ``--help`` output of ``dask-enrich
<command>`` and ``dask worker`` / ``dask scheduler``, and parsed by the real parsers."""
from __future__ import annotations

import functools
import json
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
YAML_FILES = sorted(DEPLOY.rglob("*.yaml")) + sorted(DEPLOY.rglob("*.yml"))
DASK_ROLES = {"dask-scheduler": "scheduler", "dask-worker": "worker"}


# --- the real command lines' options ---------------------------------------------------------------
@functools.cache
def help_text(*cmd: str) -> str:
    done = subprocess.run([sys.executable, *cmd, "--help"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def options_in(text: str) -> set[str]:
    return set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", text))


@functools.cache
def enrich_subcommands() -> frozenset[str]:
    text = help_text("-m", "dask_enrich.cli")
    section = text.split("positional arguments:", 1)[1].split("options:", 1)[0]
    found = set(re.findall(r"^ {4}([a-z][a-z0-9-]*)", section, flags=re.M))
    found |= set(re.findall(r"\{([a-z0-9,-]+)\}", section)[0].split(",")) if "{" in section else set()
    assert {"run", "build-cache"} <= found, text
    return frozenset(found)


def enrich_options(sub: str) -> set[str]:
    return options_in(help_text("-m", "dask_enrich.cli", sub))


def dask_options(role: str) -> set[str]:
    return options_in(help_text("-m", "dask", role))


def console_scripts() -> dict[str, str]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]


# --- finding the commands in the files ---------------------------------------------------------------
def _program(tokens: list[str]) -> tuple[str, int] | None:
    """(kind, index of the first argument) of a command line, or None when it is not ours/Dask's."""
    for i, tok in enumerate(tokens):
        base = tok.rsplit("/", 1)[-1]
        if base == "dask-enrich":
            return "dask-enrich", i + 1
        if base in DASK_ROLES:
            return DASK_ROLES[base], i + 1
        if base == "dask" and i + 1 < len(tokens) and tokens[i + 1] in ("scheduler", "worker"):
            return tokens[i + 1], i + 2
        if tok == "-m" and i + 1 < len(tokens):
            module = tokens[i + 1]
            if module == "distributed.cli.dask_worker":
                return "worker", i + 2
            if module == "distributed.cli.dask_scheduler":
                return "scheduler", i + 2
            if module == "dask_enrich.cli":
                return "dask-enrich", i + 2
    return None


def check_command(tokens: list[str], where: str, strict_subcommand: bool = True) -> str | None:
    """Assert that a command line uses real subcommands and options; return its kind."""
    found = _program(tokens)
    if found is None:
        return None
    kind, start = found
    args = tokens[start:]
    if kind == "dask-enrich":
        assert "dask-enrich" in console_scripts()
        if not args or args[0].startswith("-"):
            assert set(a.split("=")[0] for a in args if a.startswith("--")) <= options_in(
                help_text("-m", "dask_enrich.cli")), where
            return kind
        sub = args[0]
        if sub not in enrich_subcommands():
            assert not strict_subcommand, f"{where}: `dask-enrich {sub}` is not a command"
            return None
        known = enrich_options(sub)
    else:
        sub, known = kind, dask_options(kind)
    used = {a.split("=", 1)[0] for a in args if a.startswith("--")}
    assert used <= known, f"{where}: unknown option(s) {sorted(used - known)} of {kind} {sub}"
    return f"{kind} {sub}" if kind == "dask-enrich" else kind


def _walk_command_lists(node, found: list[list[str]]) -> None:
    if isinstance(node, dict):
        cmd = [*(node.get("command") or []), *(node.get("args") or [])] if isinstance(
            node.get("command") or [], list) and isinstance(node.get("args") or [], list) else []
        if cmd and all(isinstance(t, (str, int, float)) for t in cmd):
            found.append([str(t) for t in cmd])
        for value in node.values():
            _walk_command_lists(value, found)
    elif isinstance(node, list):
        for value in node:
            _walk_command_lists(value, found)


def compose_defaults(node):
    """Docker Compose interpolation with the file's defaults: ${VAR:-default} -> default."""
    if isinstance(node, dict):
        return {k: compose_defaults(v) for k, v in node.items()}
    if isinstance(node, list):
        return [compose_defaults(v) for v in node]
    if isinstance(node, str):
        return re.sub(r"\$\{\w+(?::?-([^}]*))?\}", lambda m: m.group(1) or "", node)
    return node


def load_yaml(path: Path) -> list:
    docs = list(yaml.safe_load_all(path.read_text()))
    return [compose_defaults(d) for d in docs] if "compose" in path.name else docs


def yaml_commands(path: Path) -> list[list[str]]:
    found: list[list[str]] = []
    for doc in load_yaml(path):
        _walk_command_lists(doc, found)
    return found


def helm_commands(values: dict) -> list[list[str]]:
    """The scheduler and worker command lines the dask/dask chart builds from these values
    (templates dask-scheduler-deployment.yaml / dask-worker-deployment.yaml)."""
    s, w = values["scheduler"], values["worker"]
    scheduler = ["dask-scheduler", f"--port={s.get('servicePort', 8786)}",
                 "--dashboard-address=:8787", *map(str, s.get("extraArgs") or [])]
    worker = [w["image"].get("dask_worker", "dask-worker"), "dask-enrich-scheduler:8786"]
    limits = (w.get("resources") or {}).get("limits")
    if limits:
        worker += ["--nthreads", str(w.get("threads_per_worker") or limits["cpu"]),
                   "--memory-limit", str(limits["memory"])]
    worker += ["--no-dashboard", "--dashboard-address", "8790", *map(str, w.get("extraArgs") or [])]
    return [scheduler, worker]


def shell_lines(text: str) -> list[str]:
    """Logical lines of a shell script (continuations joined, comments dropped)."""
    joined = re.sub(r"\\\n", " ", text)
    return [line for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def shell_commands(line: str) -> list[list[str]]:
    """The simple commands of a shell line (split at ; && || | and redirections)."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    commands, current = [], []
    for token in lexer:
        if token in (";", "&&", "||", "|", "&"):
            commands.append(current)
            current = []
        elif token in (">", ">>", "<", "2>", "&>"):
            current.append("\0")  # a redirection target follows: not an argument
        elif current and current[-1] == "\0":
            current.pop()
        else:
            current.append(token)
    commands.append(current)
    return [c for c in commands if c]


def start_cluster_run(tokens: list[str]) -> list[str] | None:
    """The dask-enrich command that start_cluster.py runs for this invocation (options after --)."""
    if not any(t.endswith("start_cluster.py") for t in tokens):
        return None
    sys.path.insert(0, str(DEPLOY / "slurm"))
    try:
        import start_cluster
    finally:
        sys.path.pop(0)
    own, rest = start_cluster.parse_args(tokens[[t.endswith("start_cluster.py")
                                                 for t in tokens].index(True) + 1:])
    assert own.jobs >= 1
    return start_cluster.run_command("tcp://192.0.2.1:8786", rest)


def dockerfile() -> str:
    return (DEPLOY / "Dockerfile").read_text()


def dockerfile_instructions() -> list[tuple[str, str]]:
    lines = re.sub(r"\\\n", " ", dockerfile()).splitlines()
    out = []
    for line in lines:
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def all_commands() -> list[tuple[str, list[str]]]:
    """(where, command line) of every command in deploy/ that is meant to be run as is."""
    cmds: list[tuple[str, list[str]]] = []
    for path in YAML_FILES:
        if path.name == "values.yaml" and path.parent.name == "helm":
            cmds += [(f"{path} (chart)", c) for c in helm_commands(yaml.safe_load(path.read_text()))]
        elif path.name != "jobqueue.yaml":
            cmds += [(str(path), c) for c in yaml_commands(path)]
    for instruction, rest in dockerfile_instructions():
        if instruction in ("CMD", "ENTRYPOINT") and rest.startswith("["):
            cmds.append((f"Dockerfile {instruction}", json.loads(rest)))
        elif instruction == "RUN":
            cmds += [("Dockerfile RUN", c) for c in shell_commands(rest)]
    for script in DEPLOY.rglob("*.sh"):
        defaults: dict[str, str] = {}
        for line in shell_lines(script.read_text()):
            assign = re.match(r"^(\w+)=\$\{\w+:-([^}]*)\}$", line.strip())
            if assign:  # NAME=${ENV:-default}: use the default in the lines below
                defaults[assign.group(1)] = assign.group(2)
                continue
            line = re.sub(r"\$\{?(\w+)\}?", lambda m: defaults.get(m.group(1), m.group(0)), line)
            for tokens in shell_commands(line):
                run = start_cluster_run(tokens)
                cmds.append((str(script), run if run is not None else tokens))
    return cmds


# --- tests ---------------------------------------------------------------------------------------------
def test_deploy_tree_is_complete():
    for name in ("README.md", "Dockerfile", "docker-compose.yml", "helm/values.yaml",
                 "helm/README.md", "kubernetes/daskcluster.yaml", "kubernetes/daskjob.yaml",
                 "kubernetes/README.md", "slurm/jobqueue.yaml", "slurm/submit.sh",
                 "slurm/start_cluster.py", "slurm/README.md"):
        assert (DEPLOY / name).is_file(), name


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_yaml_file_parses(path):
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert docs and all(isinstance(d, dict) for d in docs)


def test_dockerfile_builds_on_the_official_dask_image_pinned_to_the_installed_release():
    import dask

    instructions = dockerfile_instructions()
    args = dict(re.match(r"(\w+)=?(.*)", rest).groups() for word, rest in instructions
                if word == "ARG")
    froms = [rest for word, rest in instructions if word == "FROM"]
    assert len(froms) == 1
    image = re.sub(r"\$\{?(\w+)\}?", lambda m: args[m.group(1)], froms[0].split()[0])
    name, _, tag = image.partition(":")
    assert name == "ghcr.io/dask/dask"
    release = ".".join(dask.__version__.split(".")[:2])  # 2026.8
    assert tag.startswith(release + "."), f"base tag {tag} is not dask {release}.x"
    python = re.search(r"-py(3\.\d+)$", tag)
    if python:  # the image's Python satisfies requires-python
        project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
        minimum = project["requires-python"].removeprefix(">=")
        assert tuple(map(int, python.group(1).split("."))) >= tuple(map(int, minimum.split(".")))


def test_dockerfile_installs_the_package_at_build_time_not_at_start():
    instructions = dockerfile_instructions()
    copied = [rest.split() for word, rest in instructions if word == "COPY"]
    sources = {src for parts in copied for src in parts[:-1] if not src.startswith("--")}
    assert {"pyproject.toml", "dask_enrich"} <= sources
    for src in sources:  # the build context is the repository root
        assert (ROOT / src).exists(), f"COPY {src}: no such file in the build context"
    readme = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"].get("readme")
    if isinstance(readme, str):  # setuptools refuses to build without it
        assert readme in sources
    destinations = {parts[-1].rstrip("/") for parts in copied}
    runs = [rest for word, rest in instructions if word == "RUN"]
    assert any(re.search(r"pip install\b.*\s[\"']?/opt/dask-enrich\b", r) for r in runs), runs
    assert "/opt/dask-enrich" in destinations or "/opt/dask-enrich/dask_enrich" in destinations
    # Nothing is installed when a container starts.
    text = dockerfile() + (DEPLOY / "docker-compose.yml").read_text()
    text += "".join(p.read_text() for p in YAML_FILES)
    assert "EXTRA_PIP_PACKAGES" not in re.sub(r"#.*", "", text)
    entry = [rest for word, rest in instructions if word in ("CMD", "ENTRYPOINT")]
    assert not any("pip" in e for e in entry)
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    assert "**" in ignore and "!dask_enrich" in ignore and "!pyproject.toml" in ignore


def test_image_provides_the_entry_commands_the_chart_and_manifests_use():
    """`dask-enrich` is the package's console script; `dask-scheduler`/`dask-worker` (called by the
    dask/dask chart) are no longer shipped by distributed, so the image must create them."""
    assert console_scripts()["dask-enrich"] == "dask_enrich.cli:main"
    called = {c[_program(c)[1] - 1].rsplit("/", 1)[-1] for _, c in all_commands() if _program(c)}
    legacy = called & set(DASK_ROLES)
    if legacy:
        text = re.sub(r"\\\n", " ", dockerfile())
        shim = re.search(r"for role in ([\w ]+); do.*?exec dask %s", text, flags=re.S)
        assert shim, "the image calls dask-scheduler/dask-worker but does not provide them"
        assert {f"dask-{r}" for r in shim.group(1).split()} >= legacy
        assert re.search(r"/usr/local/bin/dask-\$\{role\}", text)
        for role in legacy:  # and `dask <role>` itself is real
            assert dask_options(DASK_ROLES[role])


def test_every_command_uses_real_subcommands_and_options():
    kinds = [check_command(tokens, where) for where, tokens in all_commands()]
    # What the deployment must contain: a scheduler, workers, the cache build and the run.
    assert {"scheduler", "worker", "dask-enrich run", "dask-enrich build-cache"} <= set(kinds)


def test_every_run_command_targets_a_scheduler_and_parses_with_the_real_parser():
    from dask_enrich.cli import build_parser

    runs = [(w, c[_program(c)[1]:]) for w, c in all_commands()
            if _program(c) and _program(c)[0] == "dask-enrich" and c[_program(c)[1]:][:1] == ["run"]]
    assert len(runs) >= 4  # compose, DaskJob, Helm Job, SLURM
    for where, args in runs:
        assert "--scheduler" in args, f"{where}: a deployed run must use the cluster"
        address = args[args.index("--scheduler") + 1]
        assert re.match(r"(tcp://[\w.-]+:\d+|\$\(DASK_SCHEDULER_ADDRESS\))$", address), address
        parsed = build_parser().parse_args(args)  # exits on a bad option, value or combination
        assert parsed.scheduler == address and parsed.manifest and parsed.out


def test_dask_commands_parse_with_the_real_dask_cli():
    """Every `dask scheduler` / `dask worker` line is accepted by distributed's click commands."""
    from distributed.cli.dask_scheduler import main as scheduler_main
    from distributed.cli.dask_worker import main as worker_main

    n = 0
    for where, tokens in all_commands():
        found = _program(tokens)
        if found and found[0] in ("scheduler", "worker"):
            command = scheduler_main if found[0] == "scheduler" else worker_main
            command.make_context(f"dask {found[0]}", list(tokens[found[1]:]))  # raises if invalid
            n += 1
    assert n >= 6


def test_markdown_and_comment_commands_use_real_options():
    """Commands shown in the READMEs (code) and in comments use real options too."""
    checked = 0
    for path in [*DEPLOY.rglob("*.md"), *YAML_FILES, DEPLOY / "Dockerfile",
                 *DEPLOY.rglob("*.sh"), *DEPLOY.rglob("*.py")]:
        text = path.read_text()
        if path.suffix == ".md":
            snippets = re.findall(r"`([^`]+)`", text, flags=re.S)
            snippets += re.findall(r"^(?: {4}|\t)(.+(?:\\\n.*)*)", text, flags=re.M)
            strict = True
        else:
            snippets = [m for m in re.findall(r"#\s*(.*)", text)]
            strict = False
        for snippet in snippets:
            snippet = re.sub(r"\\\n", " ", snippet)
            for match in re.finditer(r"(?:dask-enrich|dask-worker|dask-scheduler|\bdask (?:worker|scheduler))\b[^|;&`]*",
                                     snippet):
                try:
                    tokens = shlex.split(match.group(0))
                except ValueError:
                    tokens = match.group(0).split()
                if tokens and tokens[0] == "dask-enrich" and len(tokens) > 1 and (
                        tokens[1] not in enrich_subcommands() and not tokens[1].startswith("-")):
                    continue  # prose ("dask-enrich on the official image"), not a command
                if check_command(tokens, f"{path}: {match.group(0)}", strict_subcommand=strict):
                    checked += 1
    assert checked >= 10


def test_compose_cluster_and_job_share_the_scheduler_and_the_volume():
    (compose,) = load_yaml(DEPLOY / "docker-compose.yml")
    services = compose["services"]
    assert {"scheduler", "worker", "job"} <= set(services)
    for name, service in services.items():
        build = service.get("build")
        assert build and (DEPLOY / build["context"] / build["dockerfile"]).resolve() == \
            (DEPLOY / "Dockerfile").resolve(), name
    assert services["worker"]["command"][:3] == ["dask", "worker", "tcp://scheduler:8786"]
    job = services["job"]["command"]
    assert job[:2] == ["dask-enrich", "run"] and job[job.index("--scheduler") + 1] == "tcp://scheduler:8786"
    assert "--port" in services["scheduler"]["command"]
    port = services["scheduler"]["command"][services["scheduler"]["command"].index("--port") + 1]
    assert port == "8786"
    mounts = {name: {v.split(":")[1] for v in s.get("volumes", [])} for name, s in services.items()}
    assert "/data" in mounts["worker"] & mounts["job"]
    # The job's paths are on the shared volume.
    paths = [a for a in job if a.startswith("/")]
    assert len(paths) >= 4 and all(p.startswith("/data/") for p in paths)


def test_kubernetes_manifests_are_dask_operator_resources():
    kinds = {}
    for name in ("daskcluster.yaml", "daskjob.yaml"):
        for doc in yaml.safe_load_all((DEPLOY / "kubernetes" / name).read_text()):
            kinds[doc["kind"]] = doc
    for kind in ("DaskCluster", "DaskJob"):
        assert kinds[kind]["apiVersion"] == "kubernetes.dask.org/v1"
    cluster = kinds["DaskCluster"]["spec"]
    job = kinds["DaskJob"]["spec"]
    for spec in (cluster, job["cluster"]["spec"]):
        assert spec["worker"]["replicas"] >= 1
        ports = {p["name"]: p["port"] for p in spec["scheduler"]["service"]["ports"]}
        assert ports["tcp-comm"] == 8786
    (runner,) = job["job"]["spec"]["containers"]
    assert runner["args"][:2] == ["dask-enrich", "run"]
    # The claim the pods mount exists (daskcluster.yaml) and is shared (ReadWriteMany).
    claim = kinds["PersistentVolumeClaim"]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    claims = re.findall(r"claimName: (\S+)", "".join(p.read_text() for p in YAML_FILES))
    assert set(claims) == {claim["metadata"]["name"]}


def test_all_images_are_one_dask_enrich_image_of_this_version():
    from dask_enrich import __version__

    images = set()
    for path in YAML_FILES:
        if path.name == "values.yaml":
            values = yaml.safe_load(path.read_text())
            images |= {f"{values[r]['image']['repository']}:{values[r]['image']['tag']}"
                       for r in ("scheduler", "worker")}
        else:
            images |= set(re.findall(r"^\s*image:\s*\"?([^\s\"]+)", path.read_text(), flags=re.M))
    compose = {i for i in images if i.startswith("${")}
    assert compose == {"${DASK_ENRICH_IMAGE:-dask-enrich:%s}" % __version__}
    others = images - compose
    assert len(others) == 1 and others.pop().endswith(f"/dask-enrich:{__version__}")


def test_jobqueue_yaml_uses_only_keys_dask_jobqueue_knows():
    config = yaml.safe_load((DEPLOY / "slurm" / "jobqueue.yaml").read_text())
    slurm = config["jobqueue"]["slurm"]
    assert slurm["cores"] >= 1 and slurm["memory"]
    jobqueue = pytest.importorskip("dask_jobqueue")
    defaults = yaml.safe_load((Path(jobqueue.__file__).parent / "jobqueue.yaml").read_text())
    unknown = set(slurm) - set(defaults["jobqueue"]["slurm"])
    assert not unknown, f"keys dask-jobqueue ignores: {sorted(unknown)}"


def test_submit_script_is_valid_bash():
    done = subprocess.run(["bash", "-n", str(DEPLOY / "slurm" / "submit.sh")], capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr


def test_start_cluster_without_dask_jobqueue_stops_with_a_clear_error(tmp_path):
    blocker = tmp_path / "block"
    (blocker / "dask_jobqueue").mkdir(parents=True)
    (blocker / "dask_jobqueue" / "__init__.py").write_text("raise ImportError('blocked for a test')\n")
    done = subprocess.run([sys.executable, str(DEPLOY / "slurm" / "start_cluster.py"), "--jobs", "2",
                           "--", "--positions", "p", "--manifest", "m", "--out", "o"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=60,
                          env={**__import__("os").environ, "PYTHONPATH": str(blocker)})
    assert done.returncode == 3
    assert "dask-jobqueue is not installed" in done.stderr and "--scheduler" in done.stderr


def test_start_cluster_dry_run_job_script_uses_real_worker_options(tmp_path):
    pytest.importorskip("dask_jobqueue")
    done = subprocess.run([sys.executable, str(DEPLOY / "slurm" / "start_cluster.py"), "--dry-run",
                           "--", "--positions", "p.parquet", "--manifest", "m", "--out", "o",
                           "--resume"], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("#!")
    config = yaml.safe_load((DEPLOY / "slurm" / "jobqueue.yaml").read_text())["jobqueue"]["slurm"]
    assert f"#SBATCH --cpus-per-task={config['cores']}" in lines
    assert f"#SBATCH -t {config['walltime']}" in lines
    (worker,) = [line for line in lines if "distributed.cli.dask_worker" in line]
    tokens = shlex.split(worker)
    assert check_command(tokens, "SLURM job script") == "worker"
    assert tokens[tokens.index("--nthreads") + 1] == str(config["cores"])
    assert all(a in tokens for a in config["worker-extra-args"])
    run = shlex.split(lines[lines.index("# dask-enrich command:") + 1])
    assert check_command(run, "start_cluster.py") == "dask-enrich run"
    assert run[2] == "--scheduler" and run[3].startswith("tcp://") and run[-1] == "--resume"


# --- behaviour on a real cluster (issue 20) ----------------------------------------------------------
def _worker_containers() -> list[tuple[str, dict]]:
    """(where, container) of every dask worker container of the operator manifests."""
    found = []
    for name in ("daskcluster.yaml", "daskjob.yaml"):
        for doc in yaml.safe_load_all((DEPLOY / "kubernetes" / name).read_text()):
            spec = doc.get("spec", {})
            spec = spec.get("cluster", {}).get("spec", spec)
            for container in spec.get("worker", {}).get("spec", {}).get("containers", []):
                found.append((f"{name} {doc['kind']}", container))
    return found


def _effective_worker_params(args: list[str]) -> dict:
    """The options `dask worker` actually uses for ``args`` (the last of a repeated option wins)."""
    from distributed.cli.dask_worker import main as worker_main

    found = _program(args)
    assert found and found[0] == "worker", args
    return worker_main.make_context("dask worker", list(args[found[1]:])).params


def test_daskjob_runner_is_not_restarted_in_a_loop():
    """A failed runner (e.g. bad input, exit 2) must end the DaskJob, so that the operator removes
    its cluster; with OnFailure it restarts forever and the workers are never cleaned up."""
    (job,) = [d for d in yaml.safe_load_all((DEPLOY / "kubernetes" / "daskjob.yaml").read_text())
              if d["kind"] == "DaskJob"]
    assert job["spec"]["job"]["spec"]["restartPolicy"] == "Never"
    helm_job = yaml.safe_load((DEPLOY / "helm" / "job.yaml").read_text())
    assert helm_job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_worker_memory_limit_is_below_the_container_limit():
    """Dask must spill, pause and restart a worker before the kernel's OOM killer ends the pod:
    the --memory-limit each worker really gets is at most 90% of its container's memory limit."""
    from dask.utils import parse_bytes

    values = yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())
    cases = [("helm chart worker", helm_commands(values)[1],
              values["worker"]["resources"]["limits"]["memory"])]
    cases += [(where, [*c.get("command", []), *c["args"]], c["resources"]["limits"]["memory"])
              for where, c in _worker_containers()]
    assert len(cases) == 3
    for where, args, container in cases:
        limit = _effective_worker_params(args)["memory_limit"]
        assert parse_bytes(str(limit)) <= 0.9 * parse_bytes(str(container)), \
            f"{where}: --memory-limit {limit} vs container limit {container}"


def test_readwritemany_claim_documents_the_storage_class():
    text = (DEPLOY / "kubernetes" / "daskcluster.yaml").read_text()
    claim_doc = text[:text.index("kind: DaskCluster")]
    assert "storageClassName" in claim_doc and "Pending" in claim_doc
    readme = (DEPLOY / "kubernetes" / "README.md").read_text()
    assert "storageClassName" in readme and "Pending" in readme and "ReadWriteMany" in readme


def test_image_installs_the_models_extra_and_the_spliceai_weights_from_their_package():
    """`score`, `demo --score` and `predict-base` work in the image: the [models] extra is
    installed, and SpliceAI's weights come from the `spliceai` package at build time (GPLv3 data,
    never vendored into this repository)."""
    from dask_enrich.basemodel import spliceai

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    instructions = dockerfile_instructions()
    args = dict(re.match(r"(\w+)=?(.*)", rest).groups() for word, rest in instructions
                if word == "ARG")
    installs = []
    for word, rest in instructions:
        if word == "RUN":
            for tokens in shell_commands(rest):
                if tokens[:4] == ["python", "-m", "pip", "install"]:
                    installs.append([re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], t)
                                     for t in tokens[4:]])
    targets = [t for tokens in installs for t in tokens if not t.startswith("-")]
    package = [t for t in targets if t.startswith("/opt/dask-enrich")]
    assert package == ["/opt/dask-enrich[models]"] and "models" in extras
    (weights,) = [tokens for tokens in installs if any(t.startswith("spliceai==") for t in tokens)]
    assert "--no-deps" in weights  # the weights only, not TensorFlow/Keras
    version = [t for t in weights if t.startswith("spliceai==")][0].split("==")[1]
    assert f"spliceai=={version}" in spliceai._WEIGHTS_HELP  # the release the port was checked on
    runs = " ".join(rest for word, rest in instructions if word == "RUN")
    assert "load_models()" in runs  # the build fails when the weights cannot be read
    copied = " ".join(rest for word, rest in instructions if word in ("COPY", "ADD"))
    assert ".h5" not in copied
    tracked = subprocess.run(["git", "-C", str(ROOT), "ls-files", "*.h5"], capture_output=True,
                             text=True).stdout
    assert tracked.strip() == ""
    for doc in (dockerfile(), (DEPLOY / "README.md").read_text()):
        assert "GPLv3" in doc and "spliceai" in doc
