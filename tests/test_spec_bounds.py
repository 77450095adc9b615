"""Bounded spec input: every hostile or absurd spec ends at once with exit 2 and one line.

Each case asserts the exit code, the one `distgmm: error:` line (no traceback), the
bound or the offending value named in it, and that nothing was written. The cases
that used to hang or exhaust memory run as real subprocesses under a timeout.
"""

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import zarr
from conftest import blobs, invoke_main, run_cli

from distgmm.jobs import bounds

BAD = 2
SPEC = "input: {{path: {inp}}}\nmodel: {{n_components: {k}}}\noutput: {{path: out}}\n"


def alias_bomb(levels: int) -> str:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def deep_yaml(n: int) -> str:
    return "input: {path: x.npy}\nmodel: {n_components: " + "[" * n + "2" + "]" * n + "}\n"


# name -> (file name, text)
FILES = {
    "bomb9.yaml": alias_bomb(9),
    "bomb6.yaml": alias_bomb(6),
    "deep.yaml": deep_yaml(5000),
    "deepmap.yaml": "".join(" " * i + f"k{i}:\n" for i in range(200)) + " " * 200 + "v: 1\n",
    "deep.toml": "[input]\npath = 'x.npy'\n[model]\nn_components = " + "[" * 5000 + "2"
                 + "]" * 5000 + "\n",
    "deeptable.toml": "[" + ".".join(f"k{i}" for i in range(5000)) + "]\nv = 1\n",
    "recursive.yaml": "input: &a {path: x.npy, more: *a}\n",
    "dup-top.yaml": SPEC.format(inp="x.npy", k=2) + "model: {n_components: 3}\n",
    "dup-nested.yaml": "input: {path: x.npy}\nmodel:\n  n_components: 2\n  n_components: 3\n"
                       "output: {path: out}\n",
    "dup.toml": "[input]\npath = 'x.npy'\n[model]\nn_components = 2\nn_components = 3\n"
                "[output]\npath = 'out'\n",
    "huge-range.yaml": SPEC.format(inp="x.npy", k="'1..1000000000'"),
    "huge-k.yaml": SPEC.format(inp="x.npy", k=1000000000),
    "huge-list.yaml": SPEC.format(inp="x.npy", k="[" + ",".join(["2"] * 1001) + "]"),
    "bool-k.yaml": SPEC.format(inp="x.npy", k="true"),
    "bool-k-list.yaml": SPEC.format(inp="x.npy", k="[2, true]"),
    "bool-tol.yaml": "input: {path: x.npy}\nmodel: {n_components: 2, tol: true}\n"
                     "output: {path: out}\n",
    "bool-n-init.yaml": "input: {path: x.npy}\nmodel: {n_components: 2, n_init: false}\n"
                        "output: {path: out}\n",
    "bool-chunk-rows.yaml": "input: {path: x.npy, chunk_rows: true}\nmodel: {n_components: 2}"
                            "\noutput: {path: out}\n",
    "huge-n-init.yaml": "input: {path: x.npy}\nmodel: {n_components: 2, n_init: 1000000000}\n"
                        "output: {path: out}\n",
    "huge-max-iter.yaml": "input: {path: x.npy}\nmodel: {n_components: 2, max_iter: "
                          "1000000000}\noutput: {path: out}\n",
    "inf-tol.yaml": "input: {path: x.npy}\nmodel: {n_components: 2, tol: .inf}\n"
                    "output: {path: out}\n",
    "nan-tol.yaml": "input: {path: x.npy}\nmodel: {n_components: 2, tol: .nan}\n"
                    "output: {path: out}\n",
    "huge-reg.yaml": "input: {path: x.npy}\nmodel: {n_components: 2, reg_covar: 1e300}\n"
                     "output: {path: out}\n",
    "inf-reg.toml": "[input]\npath = 'x.npy'\n[model]\nn_components = 2\nreg_covar = inf\n"
                    "[output]\npath = 'out'\n",
    "lake.yaml": "input: {path: x.npy}\nmodel: {n_components: 2}\n"
                 "output: {path: 'lake/clusters/{date}'}\n",
    "rooted.yaml": "input: {path: x.npy}\nmodel: {n_components: 2}\n"
                   "output: {path: '{root}/clusters/{date}'}\n",
    "self.yaml": "input: {path: x.npy}\nmodel: {n_components: 2}\noutput: {path: x.npy}\n",
    "inside.yaml": "input: {path: in.zarr}\nmodel: {n_components: 2}\n"
                   "output: {path: in.zarr/clusters}\n",
    "holds.yaml": "input: {path: lake/x.npy}\nmodel: {n_components: 2}\noutput: {path: lake}\n",
    "memory.yaml": "input: {path: x.npy}\nmodel: {n_components: 2}\n"
                   "output: {path: 'memory://bucket/out'}\n",
    "ok.yaml": SPEC.format(inp="x.npy", k=2),
}

# (case, argv, pattern): argv's {d} is the directory holding FILES and the data
CASES = [
    ("alias-bomb-9-levels", ["validate", "{d}/bomb9.yaml"],
     rf"expands to more than {bounds.MAX_NODES} values once aliases are expanded"),
    ("alias-bomb-6-levels", ["validate", "{d}/bomb6.yaml"], r"expands to more than"),
    ("nested-yaml-5000", ["validate", "{d}/deep.yaml"],
     rf"nested more than {bounds.MAX_DEPTH} levels deep \(line 2\)"),
    ("nested-yaml-mappings-200", ["validate", "{d}/deepmap.yaml"],
     rf"nested more than {bounds.MAX_DEPTH} levels"),
    ("nested-toml-5000", ["validate", "{d}/deep.toml"],
     rf"nested more than {bounds.MAX_DEPTH} levels"),
    ("nested-toml-tables-5000", ["validate", "{d}/deeptable.toml"],
     rf"nested more than {bounds.MAX_DEPTH} levels"),
    ("nested-set-value-5000", ["validate", "{d}/ok.yaml", "--set",
                               "model.n_components=" + "[" * 5000 + "2" + "]" * 5000],
     rf"--set model.n_components: nested more than {bounds.MAX_DEPTH} levels"),
    ("nested-set-key-5000", ["validate", "{d}/ok.yaml", "--set",
                             "model." + ".".join(["a"] * 5000) + "=1"],
     rf"at most {bounds.MAX_SET_PARTS} dotted parts"),
    ("recursive-alias", ["validate", "{d}/recursive.yaml"], r"alias refers to the mapping"),
    ("huge-spec-file", ["validate", "{d}/huge.yaml"],
     rf"209715200 bytes; a job spec is at most {bounds.MAX_SPEC_BYTES} bytes"),
    ("duplicate-yaml-section", ["validate", "{d}/dup-top.yaml"],
     r"duplicate key 'model' \(line 4\): keep one"),
    ("duplicate-yaml-key", ["validate", "{d}/dup-nested.yaml"],
     r"duplicate key 'n_components' \(line 4\)"),
    ("duplicate-toml-key", ["validate", "{d}/dup.toml"], r"not valid TOML.*overwrite"),
    ("range-of-a-billion", ["validate", "{d}/huge-range.yaml"],
     r"range '1\.\.1000000000' has 1000000000 candidates; a sweep fits at most 1000"),
    ("range-of-a-billion-by-set", ["validate", "{d}/ok.yaml", "--set",
                                   "model.n_components=1..1000000000"],
     r"has 1000000000 candidates"),
    ("a-billion-components", ["validate", "{d}/huge-k.yaml"],
     r"n_components=1000000000 is more than 100000 components"),
    ("too-many-candidates", ["validate", "{d}/huge-list.yaml"],
     r"1001 candidates; a sweep fits at most 1000"),
    ("boolean-k", ["validate", "{d}/bool-k.yaml"],
     r"model.n_components: true/false is not a number"),
    ("boolean-in-k-list", ["validate", "{d}/bool-k-list.yaml"], r"true/false is not a number"),
    ("boolean-k-on-cli-set", ["validate", "{d}/ok.yaml", "--set", "model.n_components=true"],
     r"true/false is not a number"),
    ("boolean-tol", ["validate", "{d}/bool-tol.yaml"], r"model.tol: true/false is not"),
    ("boolean-n-init", ["validate", "{d}/bool-n-init.yaml"], r"model.n_init: true/false"),
    ("boolean-chunk-rows", ["validate", "{d}/bool-chunk-rows.yaml"],
     r"input.chunk_rows: true/false"),
    ("a-billion-restarts", ["validate", "{d}/huge-n-init.yaml"],
     r"n_init=1000000000 is more than the 1000 allowed"),
    ("a-billion-iterations", ["validate", "{d}/huge-max-iter.yaml"],
     r"max_iter=1000000000 is more than the 1000000 allowed"),
    ("infinite-tol", ["validate", "{d}/inf-tol.yaml"], r"tol=inf is not a usable value"),
    ("nan-tol", ["validate", "{d}/nan-tol.yaml"], r"model.tol: .*\(got nan\)"),
    ("absurd-reg-covar", ["validate", "{d}/huge-reg.yaml"],
     r"reg_covar=1e\+300 is not a usable value: give a finite number from 0 to 1e\+10"),
    ("infinite-reg-covar-toml", ["validate", "{d}/inf-reg.toml"], r"reg_covar=inf"),
    ("infinite-tol-on-cli", ["fit", "{d}/x.npy", "-k", 2, "--tol", "inf", "-o", "{d}/o"],
     r"tol=inf"),
    # ------------------------------------------------------ templates out of the lake
    ("template-dotdot", ["validate", "{d}/lake.yaml", "--set", "date=../../../escape"],
     r"--set date='\.\./\.\./\.\./escape' would move the output"),
    ("template-parent", ["validate", "{d}/lake.yaml", "--set", "date=.."], r"date='\.\.'"),
    ("template-slash", ["validate", "{d}/lake.yaml", "--set", "date=2026/../../x"],
     r"one path component"),
    ("template-absolute", ["validate", "{d}/lake.yaml", "--set", "date=/tmp/elsewhere"],
     r"date='/tmp/elsewhere' would move"),
    ("template-backslash", ["validate", "{d}/lake.yaml", "--set", "date=..\\..\\x"],
     r"one path component"),
    ("template-empty", ["validate", "{d}/lake.yaml", "--set", "date="],
     r"the output 'lake/clusters/' is not under 'lake/clusters', the directory its "
     r"template 'lake/clusters/\{date\}' names"),
    ("template-root-dotdot", ["validate", "{d}/rooted.yaml", "--set", "root=/data/../..",
                              "--set", "date=1"], r"--set root='/data/\.\./\.\.'"),
    # -------------------------------------------------------- outputs and inputs
    ("output-is-input", ["validate", "{d}/self.yaml"], r"the output \S*x.npy is the input"),
    ("output-inside-input", ["validate", "{d}/inside.yaml"], r"lies inside the input"),
    ("output-holds-input", ["validate", "{d}/holds.yaml"], r"contains the input"),
    ("fit-onto-its-input", ["fit", "{d}/in.zarr", "-k", 2, "-o", "{d}/in.zarr", "--overwrite"],
     r"the output \S+in.zarr is the input \S+in.zarr: publishing there would overwrite"),
    ("fit-into-its-input", ["fit", "{d}/in.zarr", "-k", 2, "-o", "{d}/in.zarr/c", "--overwrite"],
     r"lies inside the input"),
    ("fit-over-its-directory", ["fit", "{d}/x.npy", "-k", 2, "-o", "{d}", "--overwrite"],
     r"contains the input"),
    ("fit-via-a-relative-path", ["fit", "{d}/in.zarr", "-k", 2, "-o", "{d}/sub/../in.zarr",
                                 "--overwrite"], r"is the input"),
    ("predict-over-its-model", ["predict", "{d}/model", "{d}/x.npy", "-o", "{d}/model",
                                "--overwrite"], r"is the model"),
    ("predict-onto-its-input", ["predict", "{d}/model", "{d}/x.npy", "-o", "{d}/x.npy",
                                "--overwrite"], r"is the input"),
    ("memory-output-fit", ["fit", "{d}/x.npy", "-k", 2, "-o", "memory://x/out"],
     r"memory://x/out is in this process's memory"),
    ("memory-output-spec", ["run", "{d}/memory.yaml"], r"in this process's memory"),
    ("memory-output-predict", ["predict", "{d}/model", "{d}/x.npy", "-o", "memory://x/p"],
     r"in this process's memory"),
]


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    d = tmp_path_factory.mktemp("bounds")
    X = blobs(n=300, d=2, k=2, seed=1)[0]
    np.save(d / "x.npy", X)
    (d / "lake").mkdir()
    np.save(d / "lake" / "x.npy", X)
    zarr.create_array(store=str(d / "in.zarr"), shape=X.shape, dtype="f8", chunks=(100, 2))[:] = X
    (d / "sub").mkdir()
    from distgmm import GaussianMixture

    GaussianMixture(2, random_state=0).fit(X).save(str(d / "model"))
    for name, text in FILES.items():
        (d / name).write_text(text)
    with open(d / "huge.yaml", "wb") as fh:  # sparse: 200 MB that takes no disk
        fh.truncate(200 * 2**20)
    return d


def _tree(path: Path) -> dict:
    return {str(p.relative_to(path)): p.stat().st_mtime_ns for p in path.rglob("*")}


invoke = invoke_main  # conftest: distgmm in this process


@pytest.mark.parametrize("case, argv, pattern", CASES, ids=[c[0] for c in CASES])
def test_bounded_spec(case, argv, pattern, d, tmp_path, monkeypatch):
    monkeypatch.chdir(d)
    argv = [str(a).format(d=d) for a in argv]
    if argv[0] in ("fit", "predict", "run"):  # were the check missed: 75, not a cluster
        argv += ["--address", "tcp://127.0.0.1:9"]
    before = _tree(d)
    code, err = invoke(argv + ["--quiet"])
    assert code == BAD, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("distgmm: error: "), err
    assert re.search(pattern, err), err
    assert _tree(d) == before, "something was written or changed"


@pytest.mark.parametrize("argv", [
    ["validate", "bomb9.yaml"],
    ["validate", "deep.yaml"],
    ["validate", "deep.toml"],
    ["validate", "ok.yaml", "--set", "model.n_components=" + "[" * 5000 + "2" + "]" * 5000],
    ["validate", "huge.yaml"],
], ids=["alias-bomb", "deep-yaml", "deep-toml", "deep-set", "200MB-spec"])
def test_hostile_specs_end_at_once_in_a_real_process(argv, d):
    """Before: no exit in 90 s (the bomb), or ~3,000 traceback lines (nesting)."""
    try:
        r = run_cli(*argv, cwd=d, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{argv[:2]} did not end within 60 s")
    assert r.returncode == BAD, r.stderr
    assert r.stderr.startswith("distgmm: error: ") and len(r.stderr.splitlines()) == 1, \
        r.stderr[-2000:]


def test_tasks_per_pass_are_bounded(tmp_path, scheduler_address, monkeypatch):
    """chunk_rows: 1 on 150,000 rows would make 150,000 tasks per pass: refused, with
    the numbers, before any pass."""
    monkeypatch.chdir(tmp_path)
    np.save(tmp_path / "rows.npy", np.random.default_rng(0).normal(size=(150_000, 2)))
    (tmp_path / "job.yaml").write_text("input: {path: rows.npy, chunk_rows: 1}\n"
                                       "model: {n_components: 2}\noutput: {path: out}\n")
    before = _tree(tmp_path)
    code, err = invoke(["run", str(tmp_path / "job.yaml"), "--address", scheduler_address,
                        "--quiet"])
    assert code == BAD, err
    assert re.fullmatch(r"distgmm: error: rows.npy: 150000 rows in chunks of 1 make 150000 "
                        rf"tasks per pass, more than {bounds.MAX_TASKS_PER_PASS}: raise "
                        r"chunk_rows or chunk_size\n", err), err
    assert _tree(tmp_path) == before


def test_sane_specs_still_pass(d, monkeypatch):
    """The bounds leave ordinary specs alone: anchors, templates with a root, ranges."""
    from distgmm.jobs.spec import JobSpec

    monkeypatch.chdir(d)
    spec = JobSpec.from_file(str(d / "rooted.yaml"), ["root=/data", "date=2026-11-22"])
    assert spec.output.path == "/data/clusters/2026-11-22"
    text = ("x: &o {anon: false}\ninput: {path: 's3://b/x.zarr', storage_options: *o}\n"
            "model: {n_components: '1..1000'}\noutput: {path: 's3://b/out'}\n")
    raw = bounds.load_yaml(text)
    assert raw["input"]["storage_options"] == {"anon": False}
    raw.pop("x")
    assert JobSpec.from_mapping(raw).model.candidates[0] == list(range(1, 1001))
