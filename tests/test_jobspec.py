"""Job specs: strict validation, one-line errors, templates and overrides."""

import re

import pydantic
import pytest

from distgmm import options
from distgmm.jobs.spec import JobSpec

BASE = {
    "input": {"path": "{root}/x.zarr"},
    "model": {"n_components": 3},
    "output": {"path": "{root}/out/{date}"},
}


def test_templates_and_overrides():
    spec = JobSpec.from_mapping(BASE, ["root=/data", "date=2026-11-22",
                                       "model.covariance_type=diag", "model.n_init=3",
                                       "input.filters=[\"d == '{date}'\"]"])
    assert spec.input.path == "/data/x.zarr" and spec.output.path == "/data/out/2026-11-22"
    assert spec.model.covariance_type == "diag" and spec.model.n_init == 3
    assert spec.input.filters == (("d", "==", "2026-11-22"),)
    assert spec.input.chunk_size == 128 * 2**20


def test_set_keeps_text_settings_as_written():
    spec = JobSpec.from_mapping(BASE, ["root=/r", "date=2026-11-22", "output.path=2026-11-22",
                                       "input.array=0001", "input.id_column=no",
                                       "input.path=in/{date}/x", "model.tol=1e-4"])
    assert spec.output.path == "2026-11-22" and spec.input.array == "0001"
    assert spec.input.id_column == "no" and spec.input.path == "in/2026-11-22/x"
    assert spec.model.tol == 1e-4


def test_spec_is_frozen_and_fingerprinted():
    a = JobSpec.from_mapping(BASE, ["root=/a", "date=1"])
    with pytest.raises(pydantic.ValidationError):
        a.model.n_components = 4
    assert a.fingerprint() == JobSpec.from_mapping(BASE, ["root=/a", "date=1"]).fingerprint()
    assert a.fingerprint() != JobSpec.from_mapping(BASE, ["root=/b", "date=1"]).fingerprint()
    same = JobSpec.from_mapping(BASE, ["root=/a", "date=1", "output.overwrite=true",
                                       "cluster.n_workers=3"])
    assert same.fingerprint() == a.fingerprint()


@pytest.mark.parametrize("raw, settings, message", [
    ({**BASE, "modle": {}}, ["root=/", "date=1"],
     r"unknown key 'modle'; allowed here: name, run_key, input, model, output, cluster"),
    ({**BASE, "model": {"n_components": 3, "covariance": "full"}}, ["root=/", "date=1"],
     r"unknown key 'model.covariance'; allowed here: n_components, covariance_type"),
    ({**BASE, "model": {"n_components": "three"}}, ["root=/", "date=1"],
     r"model.n_components: .*integer.*\(got 'three'\)"),
    ({**BASE, "model": {"n_components": -1}}, ["root=/", "date=1"],
     r"model.n_components: Input should be greater than or equal to 1"),
    ({**BASE, "model": {}}, ["root=/", "date=1"], r"missing required key 'model.n_components'"),
    (BASE, ["root=/"], r"the template \{date\} has no value: pass --set date=\.\.\."),
    (BASE, ["root=/", "date=1", "dat=2"], r"--set dat=\.\.\. matches no \{dat\} template"),
    (BASE, ["root=/", "date=1", "oops"], r"write it as key=value"),
    ({**BASE, "input": {"path": "x", "filters": ["x ~ 3"]}}, ["root=/", "date=1"],
     r"COLUMN OP VALUE"),
    ({**BASE, "model": {"n_components": 2, "covariance_type": "ful"}}, ["root=/", "date=1"],
     r"model.covariance_type: Input should be 'full', 'tied', 'diag' or 'spherical'"),
    ([1, 2], [], r"top level must be a mapping"),
    ({**BASE, "input": {"path": "x", "chunk_size": 0}}, ["root=/", "date=1"],
     r"input.chunk_size: give at least 1024 bytes"),
    ({**BASE, "output": {"path": "o", "storage_options": {"anon": True}}},
     ["root=/"], r"storage_options apply to URLs"),
])
def test_errors_are_one_line(raw, settings, message):
    with pytest.raises(ValueError, match=message) as info:
        JobSpec.from_mapping(raw, settings, where="job.yaml")
    assert "\n" not in str(info.value) and str(info.value).startswith("job.yaml")


def test_yaml_and_toml_files(tmp_path):
    (tmp_path / "a.yaml").write_text(
        "input: {path: x.zarr}\nmodel: {n_components: 2, tol: 1e-4}\noutput: {path: o}\n")
    (tmp_path / "a.toml").write_text(
        '[input]\npath = "x.zarr"\n[model]\nn_components = 2\ntol = 1e-4\n[output]\npath = "o"\n')
    a = JobSpec.from_file(str(tmp_path / "a.yaml"))
    b = JobSpec.from_file(str(tmp_path / "a.toml"))
    assert a == b and a.model.tol == 1e-4
    (tmp_path / "bad.yaml").write_text("input: [unclosed\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        JobSpec.from_file(str(tmp_path / "bad.yaml"))
    (tmp_path / "evil.yaml").write_text("input: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(ValueError, match="refused"):
        JobSpec.from_file(str(tmp_path / "evil.yaml"))
    (tmp_path / "job.json").write_text("{}")
    with pytest.raises(ValueError, match=r"\.yaml, \.yml or \.toml"):
        JobSpec.from_file(str(tmp_path / "job.json"))
    with pytest.raises(FileNotFoundError, match="No job spec"):
        JobSpec.from_file(str(tmp_path / "none.yaml"))


def test_candidates_from_ranges_and_lists():
    spec = JobSpec.from_mapping(BASE, ["root=/r", "date=1", "model.n_components=2..5",
                                       "model.covariance_type=full,diag"])
    assert spec.model.candidates == ([2, 3, 4, 5], ["full", "diag"]) and spec.model.is_sweep
    one = JobSpec.from_mapping(BASE, ["root=/r", "date=1"])
    assert not one.model.is_sweep and one.model.estimator_params()["n_components"] == 3
    with pytest.raises(ValueError, match="range '5..2' is empty"):
        JobSpec.from_mapping(BASE, ["root=/r", "date=1", "model.n_components=5..2"])
    with pytest.raises(ValueError, match="model.covariance_type"):
        JobSpec.from_mapping(BASE, ["root=/r", "date=1", "model.covariance_type=full,dense"])


def test_compute_dtype_reaches_the_estimator():
    spec = JobSpec.from_mapping(BASE, ["root=/r", "date=1", "model.compute_dtype=float32"])
    assert spec.model.estimator_params()["compute_dtype"] == "float32"
    assert JobSpec.from_mapping(BASE, ["root=/r", "date=1"]).model.compute_dtype == "float64"
    with pytest.raises(ValueError, match="model.compute_dtype") as err:
        JobSpec.from_mapping(BASE, ["root=/r", "date=1", "model.compute_dtype=float16"])
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("section, key, values", [
    ("model", "covariance_type", options.COVARIANCE_TYPES),
    ("model", "criterion", options.CRITERIA),
    ("model", "init_params", options.JOB_INIT_PARAMS),
    ("model", "cache", options.CACHES),
    ("model", "compute_dtype", options.COMPUTE_DTYPES),
    ("input", "format", options.INPUT_FORMATS),
    ("output", "format", options.OUTPUT_FORMATS),
])
def test_spec_choices_are_the_options_lists(section, key, values):
    """The spec accepts every value distgmm.options lists, and nothing else."""
    for value in values:
        spec = JobSpec.from_mapping(BASE, ["root=/r", "date=1", f"{section}.{key}={value}"])
        assert getattr(getattr(spec, section), key) == value
    quoted = ", ".join(f"'{v}'" for v in values[:-1]) + f" or '{values[-1]}'"
    with pytest.raises(ValueError, match=f"{section}.{key}: Input should be {re.escape(quoted)}"):
        JobSpec.from_mapping(BASE, ["root=/r", "date=1", f"{section}.{key}=bogus"])


def test_a_job_keeps_its_fingerprint_across_added_settings():
    """Upgrading must not change what a published job is recognised by: this value is
    what distgmm gave this spec before the table, gridded, outlier and Bayesian settings
    existed (commit 355feb9). Setting one of them does change it."""
    raw = {"name": "nightly",
           "input": {"path": "/lake/events", "format": "parquet", "columns": ["a", "b"],
                     "filters": ["date == '2026-11-20'"]},
           "model": {"n_components": 4, "covariance_type": "diag"},
           "output": {"path": "/lake/clusters/2026-11-20", "probabilities": True}}
    before = "a53faa8016b6550a3b8094600dc5a8e994ff68c0ed6d3a5d5d2bf16be0afad2d"
    assert JobSpec.from_mapping(raw).fingerprint() == before
    for section, key, value in (("model", "missing", "omit"), ("model", "kind", "bayes"),
                                ("model", "outliers", 0.01), ("input", "version", 3)):
        changed = {**raw, section: {**raw[section], key: value}}
        assert JobSpec.from_mapping(changed).fingerprint() != before, key
