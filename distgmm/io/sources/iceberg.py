"""Apache Iceberg tables: a scan of one snapshot, planned once with ``pyiceberg``.

How a table is named:

- ``iceberg://CATALOG/NAMESPACE.TABLE``: the table as the catalog ``CATALOG`` knows it
  (its current snapshot is authoritative). The catalog's properties come from
  pyiceberg's own configuration (``~/.pyiceberg.yaml`` or ``PYICEBERG_CATALOG__CATALOG__URI``
  and friends), overridden by ``storage_options`` (for a SQL catalog in a job spec:
  ``storage_options: {type: sql, uri: "sqlite:////data/catalog.db", warehouse: ...}``).
- a table directory holding ``metadata/*.metadata.json``, or one ``.metadata.json``
  file: read without a catalog, from the newest metadata file (by its sequence number).

The scan's file tasks (data files and their delete files) are planned on the client:
filters become the scan's row filter (partition pruning and min/max pruning by
pyiceberg, exact row filtering as the files are read), positional deletes are honoured
by pyiceberg's reader on the workers, equality deletes are refused. Small files that
need nothing resolved (no filter, no deletes, columns stored under the table's field
ids, names and types) are read with pyarrow directly (:meth:`IcebergScan.plain`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import UTC
from functools import partial

from .base import DEFAULT_CHUNK_BYTES, Dataset
from .filters import check_filter_columns, plain_filters
from .parquet_files import SMALL_FILE
from .tables import Fragment, pick_columns, table_dataset

_FIELD_ID = b"PARQUET:field_id"  # where Parquet (and pyarrow) keep a column's field id

_URL = re.compile(r"^iceberg://([^/]+)/(.+)$")


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split())[:200]


def _static_metadata(path: str) -> str:
    if path.endswith(".metadata.json"):
        return path
    meta = os.path.join(path, "metadata")
    names = sorted(n for n in os.listdir(meta) if n.endswith(".metadata.json"))

    def seq(name):
        m = re.match(r"^v?(\d+)", name)
        return int(m.group(1)) if m else -1

    return os.path.join(os.path.abspath(meta), max(names, key=seq))


def load_iceberg_table(path: str, properties: dict | None = None):
    """The ``pyiceberg`` table ``path`` names (see the module docstring)."""
    try:
        from pyiceberg.catalog import load_catalog
        from pyiceberg.exceptions import NoSuchTableError
        from pyiceberg.table import StaticTable
    except ImportError as e:
        raise ImportError("Iceberg input needs pyiceberg: pip install 'distgmm[lake]'.",
                          name=e.name) from None
    m = _URL.match(path)
    if m is None:
        if "://" not in path and not os.path.exists(path):
            raise FileNotFoundError(f"No Iceberg table at {path}: check the input path.")
        try:
            return StaticTable.from_metadata(_static_metadata(path), properties or {})
        except (OSError, ValueError) as e:
            raise ValueError(f"Cannot read the Iceberg metadata of {path} "
                             f"({_one_line(e)}).") from None
    name, identifier = m.groups()
    try:
        catalog = load_catalog(name, **(properties or {}))
        return catalog.load_table(identifier)
    except NoSuchTableError:
        raise ValueError(f"The Iceberg catalog {name!r} has no table {identifier!r}: check "
                         "the namespace and table name.") from None
    except Exception as e:  # pyiceberg raises many kinds for a misconfigured catalog
        raise ValueError(f"Cannot open the Iceberg table {identifier!r} in the catalog "
                         f"{name!r} ({type(e).__name__}: {_one_line(e)}): check the "
                         "catalog settings (pyiceberg config or storage_options).") from None


def _snapshot(table, path: str, snapshot: int | None, as_of: str | None):
    """The snapshot to scan: by id, as of a timestamp, or the current one."""
    if snapshot is not None and as_of is not None:
        raise ValueError(f"{path}: give either snapshot or as_of, not both.")
    if snapshot is not None:
        if not str(snapshot).strip().lstrip("-").isdigit():
            raise ValueError(f"snapshot={snapshot!r}: an Iceberg snapshot id is a whole "
                             "number.")
        snap = table.snapshot_by_id(int(snapshot))
        if snap is None:
            ids = [s.snapshot_id for s in table.snapshots()]
            raise ValueError(f"{path} has no snapshot {snapshot}; it has {ids[-5:]} "
                             "(the last five): pick one of its snapshots.")
        return snap
    if as_of is not None:
        from datetime import datetime

        try:
            when = datetime.fromisoformat(str(as_of).replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"as_of={as_of!r} is not an ISO timestamp: write e.g. "
                             "2026-11-21T00:00:00Z.") from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        snap = table.snapshot_as_of_timestamp(int(when.timestamp() * 1000))
        if snap is None:
            raise ValueError(f"{path} had no snapshot at {as_of}: pick a later as_of.")
        return snap
    snap = table.current_snapshot()
    if snap is None:
        raise ValueError(f"{path} has no snapshot (no data was ever committed).")
    return snap


def row_filter(parsed):
    """Parsed ``(col, op, value)`` filters ANDed as a pyiceberg expression."""
    from pyiceberg import expressions as ex

    ops = {"==": ex.EqualTo, "!=": ex.NotEqualTo, "<": ex.LessThan, "<=": ex.LessThanOrEqual,
           ">": ex.GreaterThan, ">=": ex.GreaterThanOrEqual, "in": ex.In, "not in": ex.NotIn}
    expr = ex.AlwaysTrue()
    for col, op, value in parsed:
        expr = ex.And(expr, ops[op](col, value))
    return expr


def _in_commit_order(table, snap, tasks) -> list:
    """File tasks oldest commit first (planning order follows manifests, newest first):
    a deterministic row order that matches how the rows were appended."""
    entries = table.inspect.entries(snapshot_id=snap.snapshot_id)
    seq = {f["file_path"]: s for f, s in zip(entries["data_file"].to_pylist(),
                                              entries["sequence_number"].to_pylist())}
    return sorted(tasks, key=lambda t: (seq.get(t.file.file_path) or 0, t.file.file_path))


@dataclass(frozen=True)
class IcebergScan:
    """What a worker needs to read file tasks: metadata, file IO, projection, filter."""

    metadata: object
    io: object
    projection: object
    filter: object

    def read(self, tasks: list, columns: list[str]) -> list:
        """One group's file tasks, in order: read as plain Parquet where that gives what
        pyiceberg's scan gives (:meth:`plain`), else by one pyiceberg scan, in its
        threads (a scan per file cost about 1.7 ms of setup for a small file)."""
        from pyiceberg.io.pyarrow import ArrowScan

        plain = self.plain(tasks, columns)
        if plain is not None:
            return plain
        table = ArrowScan(self.metadata, self.io, self.projection, self.filter).to_table(tasks)
        return [table.select(columns)]

    def plain(self, tasks: list, columns: list[str]) -> list | None:
        """The tasks' ``columns`` read whole with pyarrow, or None where pyiceberg's own
        reading is needed.

        Plain reads are taken only when nothing needs resolving: no row filter and no
        delete files, small Parquet files (at most ``SMALL_FILE`` bytes, read in one
        request through the table's own FileIO), and each column stored under the
        table's field id, name and type, none of them nested. Anything else (a renamed
        or promoted column, files without field ids, a column a file lacks, a struct)
        goes to pyiceberg, which spends about 1.6 ms of CPU on a 1,000 x 8 file that
        pyarrow reads in 0.42 ms.
        """
        import pyarrow as pa
        import pyarrow.parquet as pq
        from pyiceberg.expressions import AlwaysTrue
        from pyiceberg.io.pyarrow import schema_to_pyarrow
        from pyiceberg.manifest import FileFormat

        if self.filter != AlwaysTrue() or any(
                t.delete_files or t.file.file_format != FileFormat.PARQUET
                or t.file.file_size_in_bytes > SMALL_FILE for t in tasks):
            return None
        want = schema_to_pyarrow(self.projection, include_field_ids=True)
        want = [want.field(c) for c in columns]
        if any(pa.types.is_nested(col.type) for col in want):
            return None  # field ids inside a struct, list or map are not compared here
        tables = []
        for task in tasks:
            with self.io.new_input(task.file.file_path).open() as fh:
                pf = pq.ParquetFile(pa.BufferReader(fh.read()))
            stored = pf.schema_arrow
            for col in want:
                i = stored.get_field_index(col.name)  # -1 if missing or not unique
                if i < 0 or stored.field(i).type != col.type or (
                        (stored.field(i).metadata or {}).get(_FIELD_ID)
                        != col.metadata[_FIELD_ID]):
                    return None
            tables.append(pf.read(columns=columns, use_threads=False))
        return tables


def _read_group(scan: IcebergScan, tasks: list, columns: list[str]) -> list:
    return scan.read(tasks, columns)


@dataclass(frozen=True)
class IcebergSource:
    """The rows of one snapshot of an Apache Iceberg table, features as float64.

    Parameters
    ----------
    path : str
        ``iceberg://CATALOG/NAMESPACE.TABLE``, a table directory or a
        ``.metadata.json`` file (see the module docstring).
    snapshot : int, optional
        Scan this snapshot id; default the current snapshot.
    as_of : str, optional
        Scan the snapshot current at this ISO timestamp.
    columns, filters, id_column, passthrough, chunk_bytes
        As for :class:`~distgmm.io.sources.ParquetSource`; filters become the scan's
        row filter.
    storage_options : dict
        Catalog and file-IO properties (pyiceberg's names: ``uri``, ``warehouse``,
        ``s3.endpoint``, ...).
    """

    path: str
    snapshot: int | str | None = None
    as_of: str | None = None
    columns: tuple[str, ...] | None = None
    filters: tuple = ()
    id_column: str | None = None
    passthrough: tuple[str, ...] = ()
    storage_options: dict = field(default_factory=dict)
    chunk_bytes: int = DEFAULT_CHUNK_BYTES

    def load(self) -> Dataset:
        from pyiceberg.manifest import DataFileContent

        table = load_iceberg_table(self.path, self.storage_options)
        snap = _snapshot(table, self.path, self.snapshot, self.as_of)
        # the current snapshot is read with the table's current schema (Iceberg's rule);
        # pinning it by id would read it with the schema it was written under
        pinned = snap.snapshot_id if self.snapshot is not None or self.as_of is not None \
            else None
        schema = table.scan(snapshot_id=pinned).projection().as_arrow()
        where = f"the Iceberg table {self.path} (snapshot {snap.snapshot_id})"
        features = pick_columns(where, schema.names, self.columns, self.id_column,
                                self.passthrough)
        parsed = check_filter_columns(where, self.filters, schema.names)
        scan = table.scan(row_filter=row_filter(parsed), snapshot_id=pinned)
        tasks = _in_commit_order(table, snap, scan.plan_files())
        if any(d.content == DataFileContent.EQUALITY_DELETES
               for t in tasks for d in t.delete_files):
            raise ValueError(f"{where} has equality deletes, which distgmm does not apply: "
                             "compact the table (rewrite its data files) first.")
        reader = partial(_read_group, IcebergScan(table.metadata, table.io, scan.projection(),
                                                  row_filter(parsed)))
        # record counts are before deletes and filters: exact only without either
        fragments = [Fragment(t, int(t.file.record_count)) for t in tasks]
        desc = {"kind": "iceberg", "path": self.path, "snapshot": snap.snapshot_id,
                "as_of": self.as_of, "files": len(tasks), "filters": plain_filters(parsed)}
        return table_dataset(
            where=where, fragments=fragments, read=reader, schema=schema,
            features=features, id_column=self.id_column, passthrough=self.passthrough,
            chunk_bytes=self.chunk_bytes, description=desc,
            lengths_known=not parsed and not any(t.delete_files for t in tasks))
