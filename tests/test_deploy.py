"""deploy/: every manifest parses, every `distgmm` command line is one the CLI accepts,
and a fit runs on a cluster secured with TLS."""

import ast
import os
import re
import shlex
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
import zarr
from conftest import blobs, run_cli

from distgmm.cli import cli
from distgmm.jobs.spec import JobSpec

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
COMMANDS = tuple(cli.commands)
_SHELL_BITS = [(re.compile(r"\{\{.*?\}\}"), "X"), (re.compile(r"\$\([^)]*\)"), "X"),
               (re.compile(r"\$\{[^}]*\}"), "X"), (re.compile(r"\$[A-Za-z_]\w*"), "X")]


def _unshell(arg: str) -> str:
    for pattern, repl in _SHELL_BITS:
        arg = pattern.sub(repl, arg)
    return arg


def _text_commands(text: str) -> list[list[str]]:
    text = text.replace("\\\n", " ")
    found = []
    for m in re.finditer(rf"\bdistgmm\s+(?:{'|'.join(COMMANDS)})\b[^\n\"'`#>]*", text):
        found.append(shlex.split(_unshell(m.group(0))))
    return found


def _yaml_commands(node) -> list[list[str]]:
    if isinstance(node, dict):
        return [c for v in node.values() for c in _yaml_commands(v)]
    if isinstance(node, list):
        if node and node[0] == "distgmm":
            return [[_unshell(str(a)) for a in node]]
        return [c for v in node for c in _yaml_commands(v)]
    return []


def _env_defaults(tree) -> dict[str, str]:
    """Module constants `NAME = os.environ.get("VAR", "default")`: NAME -> its default."""
    out = {}
    for node in tree.body:
        if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)
                and ast.unparse(node.value.func) == "os.environ.get"
                and len(node.value.args) == 2 and isinstance(node.value.args[1], ast.Constant)):
            out.update({t.id: str(node.value.args[1].value) for t in node.targets})
    return out


def _literal(node, names: dict[str, str]) -> str:
    """A string literal, with names resolved to their defaults and other fields written as X."""
    if isinstance(node, ast.Constant):
        return str(node.value)
    if isinstance(node, ast.Name):
        return names.get(node.id, "X")
    if isinstance(node, ast.FormattedValue):
        return _literal(node.value, names)
    if isinstance(node, ast.JoinedStr):
        return "".join(_literal(v, names) for v in node.values)
    return "X"


def _python_commands(tree) -> list[list[str]]:
    found, names = [], _env_defaults(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            found += _text_commands(node.value)
        elif isinstance(node, ast.List) and node.elts and getattr(
                node.elts[0], "value", None) == "distgmm":
            found.append([_literal(e, names) for e in node.elts])
    return found


def all_commands() -> dict[str, list[list[str]]]:
    out = {}
    for path in sorted(p for p in DEPLOY.rglob("*") if p.is_file()):
        text = path.read_text()
        rel = str(path.relative_to(DEPLOY))
        if path.suffix in (".yaml", ".yml"):
            cmds = [c for doc in yaml.safe_load_all(text) for c in _yaml_commands(doc)]
        elif path.suffix == ".py":
            cmds = _python_commands(ast.parse(text))
        else:
            cmds = _text_commands(text)
        out[rel] = cmds
    return out


def test_every_yaml_file_parses():
    files = sorted(DEPLOY.rglob("*.yaml")) + sorted(DEPLOY.rglob("*.yml"))
    assert len(files) >= 7
    for path in files:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
        assert docs, path
    for path in sorted(DEPLOY.rglob("*.py")):
        compile(path.read_text(), str(path), "exec")


def test_the_matrix_names_every_recipe():
    readme = (DEPLOY / "README.md").read_text()
    for recipe in ("compose/compose.yaml", "kubernetes/daskjob.yaml", "daskcluster.yaml",
                   "networkpolicy.yaml", "hpc/jobqueue.yaml", "run-distgmm.sbatch",
                   "schedule/crontab", "airflow_dag.py", "prefect_flow.py", "tls/"):
        assert recipe in readme
    assert "deploy/" in (ROOT / "README.md").read_text()


def _job_for(path_arg: str, manifests: dict) -> str | None:
    local = ROOT / "jobs" / os.path.basename(path_arg)
    return str(local) if local.exists() else manifests.get(path_arg)


def test_every_distgmm_command_line_parses(tmp_path):
    commands = all_commands()
    where = {k for k, v in commands.items() if v}
    assert {"compose/compose.yaml", "kubernetes/daskjob.yaml", "hpc/run-distgmm.sbatch",
            "schedule/crontab", "schedule/airflow_dag.py", "schedule/prefect_flow.py",
            "tls/README.md"} <= where
    cm = yaml.safe_load((DEPLOY / "kubernetes" / "configmap.yaml").read_text())
    (tmp_path / "job.yaml").write_text(cm["data"]["job.yaml"])
    manifests = {"/etc/distgmm/job.yaml": str(tmp_path / "job.yaml")}
    checked = 0
    for rel, cmds in commands.items():
        for argv in cmds:
            assert argv[0] == "distgmm" and argv[1] in COMMANDS, (rel, argv)
            ctx = cli.commands[argv[1]].make_context(argv[1], argv[2:])  # raises if bad
            if argv[1] in ("run", "validate"):
                job = _job_for(ctx.params["job"], manifests)
                if job:
                    settings = [s if not s.endswith("=X") else s[:-1] + "2026-11-22"
                                for s in ctx.params["settings"]]
                    JobSpec.from_file(job, settings)
            checked += 1
    assert checked >= 8


def test_fit_on_a_tls_cluster(tmp_path):
    certs = tmp_path / "tls"
    subprocess.run(["bash", str(DEPLOY / "tls" / "make-certs.sh"), str(certs)], check=True,
                   capture_output=True)
    X = blobs(n=2000, d=3, k=3, seed=9)[0]
    zarr.create_array(store=str(tmp_path / "x.zarr"), shape=X.shape, chunks=(500, 3),
                      dtype="f8")[:] = X
    tls = ["--tls-ca-file", certs / "ca.pem", "--tls-cert", certs / "dask.pem",
           "--tls-key", certs / "dask.key"]
    bindir = os.path.dirname(os.path.realpath(os.sys.executable))
    dask = os.path.join(os.path.dirname(os.sys.executable), "dask")
    assert bindir
    sfile = tmp_path / "scheduler.json"
    procs = [subprocess.Popen([dask, "scheduler", "--protocol", "tls", "--host", "127.0.0.1",
                               "--port", "0", "--no-dashboard", "--scheduler-file", sfile,
                               *tls], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        import time

        deadline = time.time() + 60
        while not sfile.exists() and time.time() < deadline:
            time.sleep(0.1)
        procs.append(subprocess.Popen(
            [dask, "worker", "--scheduler-file", sfile, "--nthreads", "1", "--no-dashboard",
             "--host", "127.0.0.1", *tls], stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL))
        import json

        address = json.loads(sfile.read_text())["address"]
        assert address.startswith("tls://")
        env = {"DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION": "True",
               "DASK_DISTRIBUTED__COMM__TLS__CA_FILE": str(certs / "ca.pem"),
               "DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT": str(certs / "dask.pem"),
               "DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY": str(certs / "dask.key")}
        r = run_cli("fit", tmp_path / "x.zarr", "-k", 3, "--output", tmp_path / "out",
                    "--address", address, extra_env=env)
        assert r.returncode == 0, r.stderr
        assert f"connected to {address}" in r.stderr
        labels = zarr.open_group(str(tmp_path / "out" / "predictions.zarr"), mode="r")["label"]
        assert np.bincount(labels[:], minlength=3).min() > 500
        # without the client certificate the scheduler refuses the connection
        r = run_cli("fit", tmp_path / "x.zarr", "-k", 3, "--output", tmp_path / "out2",
                    "--address", address, extra_env={
                        "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "3s"})
        assert r.returncode != 0 and not (tmp_path / "out2").exists()
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


@pytest.mark.parametrize("name", ["constraints.txt"])
def test_image_pins_every_dependency(name):
    pins = (DEPLOY / "docker" / name).read_text()
    for dep in ("dask", "distributed", "numpy", "scipy", "scikit-learn", "pandas", "zarr",
                "pyarrow", "fsspec", "click", "PyYAML", "pydantic"):
        assert re.search(rf"^{re.escape(dep)}==\S+$", pins, re.M | re.I), dep
