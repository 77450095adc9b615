"""Bounds on what a job spec may ask for, checked before anything is computed.

A spec file is read only up to :data:`MAX_SPEC_BYTES`; YAML is composed with a loader
that bounds nesting and alias expansion (a "billion laughs" document fails at once)
and refuses duplicate keys; ``--set`` keys and values are bounded the same way.
Counts (candidates, restarts, iterations, tasks per pass) have ceilings named in
their messages; booleans are not numbers; template values cannot walk out of the
output's directory; an output may not be, hold or sit inside its input.
"""

from __future__ import annotations

import math
import os
import posixpath
import re

MAX_SPEC_BYTES = 256 * 1024
MAX_DEPTH = 32  # nesting of mappings and lists, aliases expanded
MAX_NODES = 100_000  # values in the document, aliases expanded
MAX_SET_PARTS = 6  # section.key.subkey... of one --set
MAX_SET_BYTES = 64 * 1024
MAX_CANDIDATES = 1000
MAX_COMPONENTS = 100_000
MAX_N_INIT = 1000
MAX_ITER = 1_000_000
MAX_TASKS_PER_PASS = 100_000
MAX_TOL = 10.0
MAX_REG_COVAR = 1e10

_VARIABLE = re.compile(r"\{([A-Za-z_]\w*)\}")


# ------------------------------------------------------------------------ YAML


def _loader_class():
    import yaml

    class BoundedLoader(yaml.SafeLoader):
        """SafeLoader with bounded nesting, no duplicate keys, and a count of the
        document's size with aliases expanded (checked before construction)."""

        depth = 0

        def compose_node(self, parent, index):
            self.depth += 1
            try:
                if self.depth > MAX_DEPTH:
                    mark = self.peek_event().start_mark
                    raise SpecBoundError(f"nested more than {MAX_DEPTH} levels deep (line "
                                         f"{mark.line + 1})")
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

        def construct_mapping(self, node, deep=False):
            seen = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                if isinstance(key, (list, dict)):
                    continue  # unhashable: the base class refuses it
                if key in seen:
                    raise SpecBoundError(f"duplicate key {key!r} (line "
                                         f"{key_node.start_mark.line + 1}): keep one")
                seen.add(key)
            return super().construct_mapping(node, deep)

    return BoundedLoader


class SpecBoundError(ValueError):
    """A spec (or ``--set``) beyond a bound: too big, too deep, duplicate keys."""


def _expanded(node, memo: dict, busy: set, level: int = 1) -> tuple[int, int]:
    """``(values, depth)`` of a composed YAML node with every alias expanded, refused
    beyond :data:`MAX_NODES` values or :data:`MAX_DEPTH` levels (``level``: where the
    node sits; recursion never goes deeper than the bound)."""
    key = id(node)
    if key in busy:
        raise SpecBoundError("an alias refers to the mapping or list that holds it")
    if key not in memo:
        if level > MAX_DEPTH:
            raise SpecBoundError(f"nested more than {MAX_DEPTH} levels deep once aliases "
                                 "are expanded: write the spec out plainly")
        busy.add(key)
        size, depth = 1, 1
        for child in node.value if isinstance(node.value, list) else []:
            for sub in (child if isinstance(child, tuple) else (child,)):
                s, d = _expanded(sub, memo, busy, level + 1)
                size, depth = size + s, max(depth, d + 1)
                if size > MAX_NODES:
                    raise SpecBoundError(f"expands to more than {MAX_NODES} values once "
                                         "aliases are expanded: write the spec out plainly")
        busy.discard(key)
        memo[key] = (size, depth)
    size, depth = memo[key]
    if level + depth - 1 > MAX_DEPTH:
        raise SpecBoundError(f"nested more than {MAX_DEPTH} levels deep once aliases are "
                             "expanded: write the spec out plainly")
    return size, depth


def load_yaml(text: bytes | str):
    """Parse YAML text within the bounds; plain data only (safe tags).

    Raises
    ------
    SpecBoundError
        Too deep, too large once aliases are expanded, or a duplicate key.
    yaml.YAMLError
        Not YAML, or a tag that is not plain data.
    """
    loader = _loader_class()(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded(node, {}, set())
        return loader.construct_document(node)
    finally:
        loader.dispose()


def check_depth(value, where: str) -> None:
    """Refuse parsed data nested deeper than :data:`MAX_DEPTH` (checked iteratively)."""
    stack, seen = [(value, 1)], 0
    while stack:
        node, depth = stack.pop()
        seen += 1
        if depth > MAX_DEPTH or seen > MAX_NODES:
            raise SpecBoundError(f"{where}: nested more than {MAX_DEPTH} levels deep or "
                                 f"more than {MAX_NODES} values: write it out plainly")
        children = (node.values() if isinstance(node, dict)
                    else node if isinstance(node, list) else ())
        stack.extend((child, depth + 1) for child in children)


def read_spec_bytes(path: str) -> bytes:
    """The spec file's bytes, refused unread beyond :data:`MAX_SPEC_BYTES`."""
    size = os.stat(path).st_size
    if size > MAX_SPEC_BYTES:
        raise SpecBoundError(f"{path}: {size} bytes; a job spec is at most "
                             f"{MAX_SPEC_BYTES} bytes")
    with open(path, "rb") as fh:
        data = fh.read(MAX_SPEC_BYTES + 1)
    if len(data) > MAX_SPEC_BYTES:
        raise SpecBoundError(f"{path}: a job spec is at most {MAX_SPEC_BYTES} bytes")
    return data


def check_setting(item: str, where: str) -> None:
    """A ``--set`` within bounds: a few dotted parts, a value of moderate size."""
    key = item.partition("=")[0]
    if key.count(".") >= MAX_SET_PARTS:
        raise SpecBoundError(f"{where}: --set {key[:40]}...: at most {MAX_SET_PARTS} "
                             "dotted parts (section.key)")
    if len(item) > MAX_SET_BYTES:
        raise SpecBoundError(f"{where}: --set {key[:40]}=...: {len(item)} bytes; at most "
                             f"{MAX_SET_BYTES}")


# ------------------------------------------------------------- numbers and counts


def not_bool(value):
    """Refuse ``true``/``false`` where a number is expected (also inside a list)."""
    items = value if isinstance(value, list) else [value]
    if any(isinstance(v, bool) for v in items):
        raise ValueError("true/false is not a number: write the number")
    return value


def range_size(lo: int, hi: int, text: str) -> None:
    """A ``LOW..HIGH`` candidate range within :data:`MAX_CANDIDATES` values."""
    if hi - lo + 1 > MAX_CANDIDATES:
        raise ValueError(f"range {text!r} has {hi - lo + 1} candidates; a sweep fits at "
                         f"most {MAX_CANDIDATES}: narrow it or give a list such as 2,4,8")


def check_model_value(name: str, value):
    """Ceilings on one model setting, the number in the message."""
    limits = {"n_init": MAX_N_INIT, "max_iter": MAX_ITER}
    if name == "n_components":
        ks = value if isinstance(value, list) else [value]
        if len(ks) > MAX_CANDIDATES:
            raise ValueError(f"{len(ks)} candidates; a sweep fits at most {MAX_CANDIDATES}")
        big = max(ks)
        if big > MAX_COMPONENTS:
            raise ValueError(f"n_components={big} is more than {MAX_COMPONENTS} components")
    elif name in limits and value > limits[name]:
        raise ValueError(f"{name}={value} is more than the {limits[name]} allowed")
    elif name in ("tol", "reg_covar"):
        top = MAX_TOL if name == "tol" else MAX_REG_COVAR
        if not math.isfinite(value) or value > top:
            raise ValueError(f"{name}={value!r} is not a usable value: give a finite number "
                             f"from 0 to {top:g}")
    return value


def check_tasks_per_pass(n_chunks: int, n_rows: int, where: str) -> None:
    """Refuse a chunking that makes one pass over the data more than
    :data:`MAX_TASKS_PER_PASS` tasks."""
    if n_chunks > MAX_TASKS_PER_PASS:
        raise SpecBoundError(
            f"{where}: {n_rows} rows in chunks of {-(-n_rows // n_chunks)} make {n_chunks} "
            f"tasks per pass, more than {MAX_TASKS_PER_PASS}: raise chunk_rows or "
            "chunk_size")


# ------------------------------------------------------------------- the paths


def _has_dotdot(value: str) -> bool:
    return ".." in re.split(r"[/\\]", value)


def check_output_template(template: str, variables: dict, output: str, where: str) -> None:
    """Template values keep the output under the directory its template names.

    A variable that opens the template (``{root}/...``) names that directory and may
    hold separators, but no ``..`` part; every later one stays within one path
    component: no ``/`` or ``\\``, no ``..``. The resolved output must then lie strictly
    under the template's fixed directory (an empty value that would make the output
    that directory itself is refused by this).
    """
    parts = _VARIABLE.split(template)  # text, name, text, name, ...
    for i in range(1, len(parts), 2):
        name, value = parts[i], str(variables.get(parts[i], ""))
        leading = i == 1 and parts[0] == ""
        if _has_dotdot(value) or (not leading and (
                ".." in value or re.search(r"[/\\]", value))):
            raise SpecBoundError(
                f"{where}: --set {name}={value!r} would move the output {template!r} out "
                "of its directory: a template value is one path component (no '/', '\\' "
                "or '..')")
    first = 3 if parts[0] == "" and len(parts) > 1 else 1
    fixed = "".join(p if i % 2 == 0 else str(variables.get(p, ""))
                    for i, p in enumerate(parts[:first]))
    root = fixed.rsplit("/", 1)[0] if "/" in fixed else ""
    if root and not _normal(output).startswith(_normal(root).rstrip("/") + "/"):
        raise SpecBoundError(f"{where}: the output {output!r} is not under {root!r}, the "
                             f"directory its template {template!r} names")


def _normal(path: str) -> str:
    if "://" in path:
        protocol, rest = path.split("://", 1)
        return f"{protocol}://{posixpath.normpath('/' + rest).lstrip('/')}"
    return os.path.realpath(os.path.abspath(path))


def check_apart(source: str, output: str, what: str = "input", where: str = "") -> None:
    """The output is not the ``what`` (input, model), does not hold it, and does not
    lie inside it: publishing with overwrite would destroy it."""
    a, b = _normal(source), _normal(output)
    if a == b:
        relation = "is"
    elif b.startswith(a.rstrip("/") + "/"):
        relation = "lies inside"
    elif a.startswith(b.rstrip("/") + "/"):
        relation = "contains"
    else:
        return
    raise ValueError(f"{where + ': ' if where else ''}the output {output} {relation} the "
                     f"{what} {source}: publishing "
                     f"there would overwrite the {what}; choose an output outside it")


def check_cli_output(path: str) -> None:
    """The CLI's results must persist: ``memory://`` lives only in this process."""
    if path.startswith("memory://"):
        raise ValueError(f"the output {path} is in this process's memory and is gone when "
                         "the command exits: give a directory or a storage URL (s3://...)")
