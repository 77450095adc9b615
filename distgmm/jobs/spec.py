"""Job specs: YAML (safe_load only) or TOML, validated into frozen objects.

Build them with :meth:`JobSpec.from_file` or :meth:`JobSpec.from_mapping`, never
``JobSpec(**raw)``. Strings may hold template variables such as ``{date}``, filled by
``--set date=2026-11-22``; ``--set section.key=value`` overrides one setting.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ByteSize,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from ..io.sources import DEFAULT_CHUNK_BYTES, parse_filter
from ..options import (
    CACHES,
    COMPUTE_DTYPES,
    COVARIANCE_TYPES,
    CRITERIA,
    ESTIMATORS,
    INPUT_FORMATS,
    JOB_INIT_PARAMS,
    MISSING,
    OUTPUT_FORMATS,
    TABLE_OUTPUT_FORMATS,
    WEIGHT_CONCENTRATION_PRIOR_TYPES,
)
from . import bounds

_VARIABLE = re.compile(r"\{([A-Za-z_]\w*)\}")


MIN_CHUNK_SIZE = 1024


def _check_storage_options(path: str, options: dict) -> None:
    if options and "://" not in path:
        raise ValueError("storage_options apply to URLs (s3://, gs://, ...), not to local "
                         "paths: drop them or give a URL")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class InputSpec(_Frozen):
    """Where the rows come from (see :func:`distgmm.open_source`)."""

    path: str
    format: Literal[INPUT_FORMATS] = "auto"  # type: ignore[valid-type]
    array: str | None = None
    columns: tuple[str, ...] | None = None
    filters: tuple[Any, ...] = ()
    id_column: str | None = None
    passthrough: tuple[str, ...] = ()
    storage_options: dict[str, Any] = Field(default_factory=dict)
    chunk_size: ByteSize = ByteSize(DEFAULT_CHUNK_BYTES)
    chunk_rows: Annotated[int, Field(ge=1)] | None = None
    # tables: a Delta version (an Icechunk branch or tag), an Iceberg or Icechunk
    # snapshot id, or the snapshot current at an ISO timestamp
    version: int | str | None = None
    snapshot: int | str | None = None
    as_of: str | None = None

    @field_validator("as_of", mode="before")
    @classmethod
    def _as_of_text(cls, value):
        # YAML reads an unquoted timestamp as a datetime
        return value.isoformat() if hasattr(value, "isoformat") else value

    @field_validator("chunk_rows", mode="before")
    @classmethod
    def _rows_not_bool(cls, value):
        return bounds.not_bool(value)
    # gridded Zarr (xarray groups, N-D arrays): see distgmm.io.sources.GriddedSource
    variables: tuple[str, ...] | None = None
    feature_dim: str | None = None
    feature_axis: int | None = None

    @field_validator("filters")
    @classmethod
    def _filters_parse(cls, value):
        return tuple(parse_filter(f) for f in value)

    @field_validator("chunk_size")
    @classmethod
    def _chunk_size_sane(cls, value):
        if value < MIN_CHUNK_SIZE:
            raise ValueError(f"give at least {MIN_CHUNK_SIZE} bytes, e.g. 128MiB")
        return value

    @model_validator(mode="after")
    def _options_need_urls(self):
        _check_storage_options(self.path, self.storage_options)
        return self

    def source_options(self) -> dict:
        """Keyword options for :func:`distgmm.open_source` (unset ones left out)."""
        opts = {"format": self.format, "array": self.array, "columns": self.columns,
                "filters": self.filters, "id_column": self.id_column,
                "passthrough": self.passthrough, "storage_options": self.storage_options,
                "chunk_rows": self.chunk_rows, "chunk_bytes": int(self.chunk_size),
                "version": self.version, "snapshot": self.snapshot, "as_of": self.as_of,
                "variables": self.variables, "feature_dim": self.feature_dim,
                "feature_axis": self.feature_axis}
        return opts


PositiveInt = Annotated[int, Field(ge=1)]
CovarianceType = Literal[COVARIANCE_TYPES]  # type: ignore[valid-type]


def parse_range(value):
    """``"1..10"`` -> [1, ..., 10]; ``"2,4,8"`` -> [2, 4, 8]; other values unchanged."""
    if isinstance(value, str):
        text = value.strip()
        m = re.fullmatch(r"(\d+)\s*\.\.\s*(\d+)", text)
        if m:
            lo, hi = int(m.group(1)), int(m.group(2))
            if hi < lo:
                raise ValueError(f"range {text!r} is empty: write LOW..HIGH, e.g. 1..10")
            bounds.range_size(lo, hi, text)
            return list(range(lo, hi + 1))
        if "," in text:
            return [part.strip() for part in text.split(",") if part.strip()]
    return value


class ModelSpec(_Frozen):
    """Parameters of :class:`distgmm.GaussianMixture`.

    ``n_components`` (a list, or a range ``"1..10"``) and ``covariance_type`` (a list)
    may name several candidates: the job then fits them all in shared passes and keeps
    the one with the lowest ``criterion``.
    """

    n_components: PositiveInt | list[PositiveInt]
    covariance_type: CovarianceType | list[CovarianceType] = "full"
    criterion: Literal[CRITERIA] = "bic"  # type: ignore[valid-type]
    tol: Annotated[float, Field(ge=0)] = 1e-3
    reg_covar: Annotated[float, Field(ge=0)] = 1e-6
    max_iter: Annotated[int, Field(ge=0)] = 100
    n_init: Annotated[int, Field(ge=1)] = 1
    # "previous": start from the last model this job published (scheduled runs)
    init_params: Literal[JOB_INIT_PARAMS] = "kmeans"  # type: ignore[valid-type]
    random_state: int | None = 0
    cache: Literal[CACHES] = "auto"  # type: ignore[valid-type]
    compute_dtype: Literal[COMPUTE_DTYPES] = "float64"  # type: ignore[valid-type]
    # flag this share of rows with the lowest density (an extra pass after the fit)
    outliers: Annotated[float, Field(gt=0, lt=0.5)] | None = None
    # "bayes": distgmm.BayesianGaussianMixture, n_components an upper bound; the prior
    # settings below apply to it only
    kind: Literal[ESTIMATORS] = "gmm"  # type: ignore[valid-type]
    weight_concentration_prior_type: Literal[  # type: ignore[valid-type]
        WEIGHT_CONCENTRATION_PRIOR_TYPES] = "dirichlet_process"
    weight_concentration_prior: Annotated[float, Field(gt=0)] | None = None

    @model_validator(mode="after")
    def _bayes_fits_one_model(self):
        if self.kind == "bayes" and self.is_sweep:
            raise ValueError("kind: bayes fits one model and switches off the components "
                             "it does not need: give one n_components (an upper bound) and "
                             "one covariance_type, or kind: gmm for a sweep")
        if self.kind == "gmm" and (self.weight_concentration_prior is not None or
                                   self.weight_concentration_prior_type != "dirichlet_process"):
            raise ValueError("weight_concentration_prior(_type) apply to kind: bayes only: "
                             "set kind: bayes, or drop them")
        if self.kind == "bayes" and self.init_params == "previous":
            raise ValueError("init_params: previous starts a GaussianMixture from the last "
                             "run; with kind: bayes use kmeans (or another initialisation)")
        return self
    missing: Literal[MISSING] = "error"  # type: ignore[valid-type]

    @field_validator("n_components", "covariance_type", mode="before")
    @classmethod
    def _ranges(cls, value):
        value = parse_range(value)
        if isinstance(value, (list, tuple)) and not value:
            raise ValueError("give at least one value")
        return value

    @field_validator("n_components", "tol", "reg_covar", "max_iter", "n_init",
                     "random_state", mode="before")
    @classmethod
    def _not_bool(cls, value):
        return bounds.not_bool(value)

    @field_validator("n_components", "tol", "reg_covar", "max_iter", "n_init")
    @classmethod
    def _bounded(cls, value, info):
        return bounds.check_model_value(info.field_name, value)

    @property
    def candidates(self) -> tuple[list[int], list[str]]:
        """The n_components and covariance types to try."""
        ks = self.n_components if isinstance(self.n_components, list) else [self.n_components]
        cts = (self.covariance_type if isinstance(self.covariance_type, list)
               else [self.covariance_type])
        return ks, cts

    @property
    def is_sweep(self) -> bool:
        ks, cts = self.candidates
        return len(ks) * len(cts) > 1

    def estimator_params(self) -> dict:
        """Keyword arguments of :class:`distgmm.GaussianMixture` (one candidate), or of
        :class:`distgmm.BayesianGaussianMixture` for ``kind: bayes``."""
        bayes_only = {"weight_concentration_prior_type", "weight_concentration_prior"}
        params = self.model_dump(exclude={"criterion", "kind", "outliers"}
                                 | (bayes_only if self.kind == "gmm" else set()))
        ks, cts = self.candidates
        params.update(n_components=ks[0], covariance_type=cts[0])
        if params["init_params"] == "previous":  # used when there is no previous model
            params["init_params"] = "kmeans"
        return params


class OutputSpec(_Frozen):
    """Where results are published and which ones."""

    path: str
    format: Literal[OUTPUT_FORMATS] = "auto"  # type: ignore[valid-type]
    labels: bool = True
    probabilities: bool = False
    log_likelihood: bool = False
    report: bool = False
    overwrite: bool = False
    storage_options: dict[str, Any] = Field(default_factory=dict)
    # format delta/icechunk: the table the predictions are committed to (default
    # inside the output directory) and, for Delta, the partition this run replaces
    table: str | None = None
    partition: dict[str, str] = Field(default_factory=dict)
    # where the checkpoint and the job's lease live (default: next to the output)
    checkpoint_dir: str | None = None
    # seconds a second run of the same job waits for the first before exiting 0
    lease_wait: Annotated[float, Field(ge=0, le=86400)] = 120.0

    @model_validator(mode="after")
    def _options_need_urls(self):
        _check_storage_options(self.path, self.storage_options)
        return self

    @model_validator(mode="after")
    def _table_options_need_a_table_format(self):
        if self.partition and self.format != "delta":
            raise ValueError("output.partition needs format: delta (a Delta table "
                             "partitioned by those columns)")
        if self.table and self.format not in TABLE_OUTPUT_FORMATS:
            raise ValueError(f"output.table needs format: {' or '.join(TABLE_OUTPUT_FORMATS)}")
        return self


class ClusterSpec(_Frozen):
    """The Dask cluster: an address, or settings of the embedded local cluster."""

    address: str | None = None
    n_workers: Annotated[int, Field(ge=1)] | None = None
    threads_per_worker: Annotated[int, Field(ge=1)] | None = None
    memory_limit: str | None = None
    # seconds without a finished task before the watchdog says why and stops the run
    stall_timeout: Annotated[float, Field(gt=0, le=86400)] = 300.0

    @field_validator("n_workers", "threads_per_worker", mode="before")
    @classmethod
    def _not_bool(cls, value):
        return bounds.not_bool(value)


class JobSpec(_Frozen):
    """A whole clustering job: input, model, output, cluster."""

    name: str | None = None
    # the template variable that changes from run to run; earlier runs are found by it
    run_key: str = "date"
    input: InputSpec
    model: ModelSpec
    output: OutputSpec
    cluster: ClusterSpec = ClusterSpec()
    _output_template: str | None = PrivateAttr(default=None)
    _variables: dict = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _partition_columns_are_not_written(self):
        written = {self.input.id_column, *self.input.passthrough}
        clash = sorted(written & set(self.output.partition))
        if clash:
            raise ValueError(f"output.partition column(s) {clash} are also id/passthrough "
                             "columns: drop them there (the partition value is stored once)")
        return self

    def sibling_outputs(self) -> tuple[str, str, str] | None:
        """Where this job's other runs publish: a glob, a regex reading the run key out
        of a path (group ``key``), and this run's key; None unless the output path uses
        ``{run_key}``. Every other variable keeps its value."""
        template = self._output_template
        if not template or f"{{{self.run_key}}}" not in template:
            return None
        parts = _VARIABLE.split(template)  # text, name, text, name, ...
        glob, regex = "", ""
        for i, part in enumerate(parts):
            if i % 2 == 0:
                glob, regex = glob + part, regex + re.escape(part)
            elif part == self.run_key:
                glob += "*"
                regex += "(?P=key)" if "(?P<key>" in regex else "(?P<key>[^/]+)"
            else:
                value = self._variables.get(part, "")
                glob, regex = glob + value, regex + re.escape(value)
        return glob, regex, self._variables.get(self.run_key, "")

    @classmethod
    def from_mapping(cls, raw: dict, settings: Sequence[str] = (), *,
                     where: str = "job spec") -> JobSpec:
        """Validate a mapping after filling templates and applying ``key=value`` settings.

        Raises
        ------
        ValueError
            One line naming the bad key or value and what is allowed.
        """
        if not isinstance(raw, dict):
            raise ValueError(f"{where}: the top level must be a mapping with input, model, "
                             "output (and optionally cluster, name) sections.")
        for item in settings:
            bounds.check_setting(item, where)
        variables, overrides = _split_settings(settings, where)
        unused = sorted(set(variables) - _variables_in([raw, list(overrides.values())]))
        if unused:
            raise ValueError(
                f"{where}: --set {unused[0]}=... matches no {{{unused[0]}}} template in the "
                "spec; use section.key=value to override a setting."
            )
        output = raw.get("output")
        template = overrides.get("output.path",
                                 output.get("path") if isinstance(output, dict) else None)
        raw = _fill(raw, variables, where)
        for dotted, text in overrides.items():
            _assign(raw, dotted, _setting_value(dotted, _fill(text, variables, where)), where)
        try:
            spec = cls.model_validate(raw)
        except ValidationError as e:
            raise ValueError(_one_line(e, where)) from None
        _check_column_clash(spec, where)
        bounds.check_apart(spec.input.path, spec.output.path, where=where)
        if isinstance(template, str) and _VARIABLE.search(template):
            bounds.check_output_template(template, variables, spec.output.path, where)
            spec._output_template, spec._variables = template, dict(variables)
        return spec

    @classmethod
    def from_file(cls, path: str, settings: Sequence[str] = ()) -> JobSpec:
        """Read a ``.yaml``/``.yml`` (safe loader) or ``.toml`` job spec."""
        return cls.from_mapping(read_spec_file(path), settings, where=path)

    def fingerprint(self) -> str:
        """SHA-256 of what decides the results: input, model and output settings.

        Leaves out what does not change them (``name``, ``output.overwrite``, the
        cluster) and credentials (``storage_options``). Two runs with the same
        fingerprint on the same input publish the same thing.
        """
        doc = self.model_dump(mode="json", exclude={
            "name": True, "run_key": True, "cluster": True, "input": {"storage_options"},
            "output": {"overwrite", "storage_options", "checkpoint_dir", "lease_wait"}})
        for section, defaults in _ADDED_LATER.items():
            for key, default in defaults.items():
                if doc[section].get(key, default) == default:
                    doc[section].pop(key, None)
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


_ADDED_LATER = {
    "input": {"version": None, "snapshot": None, "as_of": None, "variables": None,
              "feature_dim": None, "feature_axis": None},
    "model": {"outliers": None, "kind": "gmm", "weight_concentration_prior_type":
              "dirichlet_process", "weight_concentration_prior": None, "missing": "error"},
    "output": {"table": None, "partition": {}},
}
"""Settings added after specs were in use, left out of the fingerprint at their defaults:
a job that does not use them keeps its fingerprint, so an upgrade neither refits nor
refuses ("already exists") what that job published."""


def _check_column_clash(spec: JobSpec, where: str) -> None:
    """id/passthrough columns named like an output column: refused before any work."""
    from ..io.outputs import check_column_clash

    ks = [k for k in spec.model.candidates[0] if isinstance(k, int)]
    try:
        check_column_clash((spec.input.id_column, *spec.input.passthrough), max(ks or [1]))
    except ValueError as e:
        raise ValueError(f"{where}: input.passthrough: {e}") from None


def read_spec_file(path: str) -> dict:
    """Parse a YAML or TOML file into a mapping (no object construction from tags)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No job spec at {path}: check the path.")
    ext = os.path.splitext(path)[1].lower()
    if ext not in (".yaml", ".yml", ".toml"):
        raise ValueError(f"{path}: job specs end in .yaml, .yml or .toml.")
    text = bounds.read_spec_bytes(path)
    if ext == ".toml":
        import tomllib

        try:
            raw = tomllib.loads(text.decode())
        except tomllib.TOMLDecodeError as e:
            raise ValueError(f"{path}: not valid TOML ({e}).") from None
        except RecursionError:
            raise bounds.SpecBoundError(f"{path}: nested more than {bounds.MAX_DEPTH} "
                                        "levels deep") from None
        bounds.check_depth(raw, path)
        return raw
    import yaml

    try:
        return bounds.load_yaml(text) or {}
    except bounds.SpecBoundError as e:
        raise bounds.SpecBoundError(f"{path}: {e}") from None
    except yaml.constructor.ConstructorError as e:
        tag = getattr(e, "problem", "") or str(e)
        raise ValueError(
            f"{path}: {tag.strip()} — job specs are plain YAML; language-specific tags such "
            "as !!python/object are refused."
        ) from None
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not valid YAML ({' '.join(str(e).split())}).") from None


def _setting_value(dotted: str, text: str):
    """A ``--set`` value: kept as written for text settings, else read as YAML."""
    import yaml

    *parents, last = dotted.split(".")
    model = _model_at(tuple(parents))
    field = model.model_fields.get(last) if model is not None else None
    if field is not None and field.annotation in (str, str | None):
        return text
    try:
        return bounds.load_yaml(text) if text else ""
    except bounds.SpecBoundError as e:
        raise bounds.SpecBoundError(f"--set {dotted}: {e}") from None
    except yaml.YAMLError:
        return text


def _split_settings(settings: Sequence[str], where: str) -> tuple[dict, dict]:
    variables, overrides = {}, {}
    for item in settings:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"{where}: --set {item!r}: write it as key=value (e.g. "
                             "date=2026-11-22 or model.n_components=5).")
        if "." in key:
            overrides[key] = value
        else:
            variables[key] = value
    return variables, overrides


def _variables_in(raw) -> set:
    if isinstance(raw, dict):
        return set().union(*(_variables_in(v) for v in raw.values())) if raw else set()
    if isinstance(raw, list):
        return set().union(*(_variables_in(v) for v in raw)) if raw else set()
    return set(_VARIABLE.findall(raw)) if isinstance(raw, str) else set()


def _fill(raw, variables: dict, where: str):
    if isinstance(raw, dict):
        return {k: _fill(v, variables, where) for k, v in raw.items()}
    if isinstance(raw, list):
        return [_fill(v, variables, where) for v in raw]
    if not isinstance(raw, str):
        return raw

    def sub(m):
        name = m.group(1)
        if name not in variables:
            raise ValueError(f"{where}: the template {{{name}}} has no value: pass "
                             f"--set {name}=...")
        return variables[name]

    return _VARIABLE.sub(sub, raw)


def _assign(raw: dict, dotted: str, value, where: str) -> None:
    *parents, last = dotted.split(".")
    node = raw
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ValueError(f"{where}: --set {dotted}: {part} is not a section.")
        node = child
    node[last] = value


def _model_at(loc: tuple):
    model: Any = JobSpec
    for part in loc:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return None
        model = field.annotation
    return model if hasattr(model, "model_fields") else None


def validate_section(model: type[BaseModel], raw: dict, where: str):
    """One section (``InputSpec``, ``OutputSpec``, ...) validated, errors in one line."""
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        raise ValueError(_one_line(e, where)) from None


def _clean_loc(loc) -> tuple:
    """The key path without pydantic's union-branch tags ("constrained-int", "list[...]")."""
    return tuple(str(p) for p in loc if isinstance(p, int) or re.fullmatch(r"\w+", str(p)))


def _one_line(error: ValidationError, where: str) -> str:
    errors = error.errors()
    first = errors[0]
    loc = _clean_loc(first["loc"])
    key = ".".join(loc) or "(top level)"
    n_more = len({_clean_loc(e["loc"]) for e in errors}) - 1
    more = f" (and {n_more} more problem(s))" if n_more > 0 else ""
    if first["type"] == "extra_forbidden":
        parent = _model_at(loc[:-1])
        allowed = ", ".join(parent.model_fields) if parent else "see the docs"
        return f"{where}: unknown key {key!r}; allowed here: {allowed}{more}."
    if first["type"] == "missing":
        return f"{where}: missing required key {key!r}{more}."
    got = first.get("input")
    got = "" if isinstance(got, dict) else f" (got {got!r})"
    msg = first["msg"].removeprefix("Value error, ")
    return f"{where}: {key}: {msg}{got}{more}."
