"""Stage 2 of a job: open the input, check it, and put it where the fit will read it.

The input's fingerprint and the job's checkpoint are settled here, before any pass
over the data, so a checkpoint of another job or input is refused at once.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import time
import warnings
from dataclasses import dataclass, replace

from ..io.checkpoint import Checkpoint
from ..io.sources import Dataset, Source, open_source
from ..parallel.blocks import should_persist
from ..parallel.inputs import check_features
from .bounds import check_tasks_per_pass
from .events import Reporter
from .watchdog import check_chunk_fits, largest_chunk_bytes


@dataclass(frozen=True)
class LoadedInput:
    """The opened input of a job, and the checkpoint its fit reads and writes."""

    dataset: Dataset
    checkpoint: Checkpoint | None
    input_fingerprint: str
    seconds: float


def checkpoint_url(output_url: str, checkpoint_dir: str | None = None) -> str:
    """Where a job's checkpoint lives: a hidden file next to its output, or in
    ``checkpoint_dir`` (named after the output and a hash of its full path)."""
    parent, name = posixpath.split(output_url.rstrip("/"))
    if checkpoint_dir:
        digest = hashlib.sha256(output_url.rstrip("/").encode()).hexdigest()[:12]
        return posixpath.join(checkpoint_dir.rstrip("/"), f".{name}-{digest}.checkpoint.json")
    return posixpath.join(parent, f".{name}.checkpoint.json")


def input_fingerprint(dataset: Dataset) -> str:
    """SHA-256 of the input's description (location, shape, dtype, chunks, store facts)."""
    text = json.dumps(dataset.description, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def open_input(path: str, source_options: dict) -> Source:
    """The input's source: its path, format and options checked before a cluster is
    started or reached, so those mistakes exit 2 even with the scheduler down (columns,
    filters and array paths are checked by ``load()``, on the cluster)."""
    return open_source(path, **source_options)


def open_dataset(source: Source, path: str, reporter: Reporter) -> Dataset:
    """The source as a lazy :class:`Dataset`, announced to the reporter."""
    dataset = source.load()
    reporter.event("input", f"input {path}: {dataset.n_samples} rows x "
                   f"{dataset.n_features} features in {dataset.X.numblocks[0]} chunks",
                   **{k: dataset.description.get(k) for k in ("kind", "shape")})
    return dataset


def persist(client, dataset: Dataset, cache: str, reporter: Reporter) -> Dataset:
    """The dataset with its rows in cluster memory when ``cache`` says so."""
    if not should_persist(dataset.X, cache):
        return dataset
    X = client.persist(dataset.X)
    reporter.wait(X, "loading the data into cluster memory")
    return replace(dataset, X=X)


def checkpoint_expectations(spec, dataset: Dataset) -> dict:
    """What a resumed state must agree with: the job's one candidate and EM settings."""
    m = spec.model
    expect = {"n_features": dataset.n_features, "n_init": m.n_init, "tol": m.tol,
              "max_iter": m.max_iter}
    if not m.is_sweep:
        ks, cts = m.candidates
        expect.update(n_components=ks[0], covariance_type=cts[0])
    return expect


def load_input(spec, source: Source, client, reporter: Reporter, *,
               restart: bool = False) -> LoadedInput:
    """Load a job's input, settle its checkpoint, and persist it if the job caches."""
    t0 = time.perf_counter()
    dataset = open_dataset(source, spec.input.path, reporter)
    check_tasks_per_pass(dataset.X.numblocks[0], dataset.n_samples, spec.input.path)
    check_chunk_fits(client, largest_chunk_bytes(dataset.X))
    smallest = min(spec.model.candidates[0])
    if dataset.n_samples < smallest:
        raise ValueError(f"The input has {dataset.n_samples} rows but n_components="
                         f"{smallest}: use fewer components or more data.")
    fingerprint = input_fingerprint(dataset)
    identity = {"job": spec.fingerprint(), "input": fingerprint}
    ckpt = Checkpoint(checkpoint_url(spec.output.path, spec.output.checkpoint_dir), identity,
                      spec.output.storage_options, expect=checkpoint_expectations(spec, dataset))
    if restart:
        ckpt.clear()
    ckpt.restore()  # refuse a mismatching checkpoint before any work
    dataset = persist(client, dataset, spec.model.cache, reporter)
    return LoadedInput(dataset, ckpt, fingerprint, time.perf_counter() - t0)


def check_model_input(model, dataset: Dataset, path: str) -> None:
    """The input has rows, and the features the model was fitted on (the estimator's
    own check)."""
    if dataset.n_samples == 0:
        raise ValueError(f"The input {path} has no rows: check the path and filters.")
    names = list(dataset.feature_names) if dataset.feature_names else None
    try:
        with warnings.catch_warnings():
            # unnamed inputs (Zarr, .npy) are matched by position, as in the fit
            warnings.simplefilter("ignore", UserWarning)
            check_features(model, dataset.n_features, names, reset=False)
    except ValueError as e:
        hint = (f"pass --columns {','.join(model.feature_names_in_)}"
                if hasattr(model, "feature_names_in_") else "select the same columns")
        raise ValueError(f"{e} The model was fitted on other columns: {hint}.") from None
