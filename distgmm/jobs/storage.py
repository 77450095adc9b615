"""``--storage-option KEY=VALUE``: fsspec/s3fs options for every URL a command touches.

Values are read as YAML scalars (``true``, ``3``, ``1.5``, ``null``; anything else is
text); a dotted key builds nested options, e.g. ``config_kwargs.connect_timeout=2`` or
``client_kwargs.region_name=eu-west-1``. The options go to the URLs only (input, output,
checkpoint, model): local paths take none.
"""

from __future__ import annotations

from collections.abc import Sequence


def is_url(path: str | None) -> bool:
    """Whether ``path`` is a URL of a filesystem other than the local one."""
    return bool(path) and "://" in path and not path.startswith("file://")


def _scalar(text: str):
    import yaml

    try:
        value = yaml.safe_load(text) if text else ""
    except yaml.YAMLError:
        return text
    # only scalars: "[1, 2]" or "{a: 1}" stay text, nested options come from dotted keys
    return value if isinstance(value, (str, int, float, bool, type(None))) else text


def parse_storage_options(items: Sequence[str]) -> dict:
    """``["key=k", "config_kwargs.connect_timeout=2"]`` -> nested options.

    Raises
    ------
    ValueError
        An item that is not ``KEY=VALUE``, or a key used both as a value and a section.
    """
    options: dict = {}
    for item in items:
        key, sep, text = item.partition("=")
        parts = [p.strip() for p in key.split(".")]
        if not sep or not all(parts):
            raise ValueError(f"--storage-option {item!r}: write it as KEY=VALUE, e.g. "
                             "endpoint_url=http://127.0.0.1:9000 or "
                             "config_kwargs.connect_timeout=2.")
        node = options
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"--storage-option {item!r}: {part} already has a value.")
        if isinstance(node.get(parts[-1]), dict):
            raise ValueError(f"--storage-option {item!r}: {parts[-1]} is a section.")
        node[parts[-1]] = _scalar(text.strip())
    return options


def merged(base: dict, extra: dict) -> dict:
    """``base`` updated by ``extra``, nested sections merged key by key."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


def for_path(path: str | None, options: dict) -> dict:
    """The options when ``path`` is a URL, else none."""
    return dict(options) if options and is_url(path) else {}


def with_storage_options(spec, options: dict):
    """The job spec with ``options`` added to its input's and output's storage options
    (where those are URLs); the spec's own options are overridden key by key."""
    if not options:
        return spec
    raw = spec.model_dump()
    for section in ("input", "output"):
        extra = for_path(raw[section]["path"], options)
        raw[section]["storage_options"] = merged(raw[section]["storage_options"], extra)
    new = type(spec).model_validate(raw)
    new._output_template, new._variables = spec._output_template, dict(spec._variables)
    return new
