"""What a run tells its operator: one line per event, as text or JSON, on stderr."""

from __future__ import annotations

import json
import math
import sys
import threading
import time

_WRITE_LOCK = threading.Lock()


class Reporter:
    """Progress lines and bars for the CLI and :func:`distgmm.run_job`.

    Parameters
    ----------
    quiet : bool
        Print nothing but errors.
    log_format : {"text", "json"}
        ``json`` prints one object per line: ``{"event": ..., "time": ..., ...}``.
    stream : file, default=sys.stderr
    """

    def __init__(self, quiet: bool = False, log_format: str = "text", stream=None):
        if log_format not in ("text", "json"):
            raise ValueError(f"log format {log_format!r} is not one of ('text', 'json').")
        self.quiet, self.log_format = quiet, log_format
        self.stream = stream if stream is not None else sys.stderr

    def event(self, name: str, message: str = "", **fields) -> None:
        """Report one event (``message`` is the text rendering)."""
        if self.quiet:
            return
        if self.log_format == "json":
            fields = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                      for k, v in fields.items()}
            line = json.dumps({"event": name, "time": round(time.time(), 3), **fields},
                              default=str)
        else:
            line = message or f"{name}: " + ", ".join(f"{k}={v}" for k, v in fields.items())
        with _WRITE_LOCK:  # candidates report from their own threads: whole lines only
            self.stream.write(line + "\n")
            self.stream.flush()

    def iteration(self, info) -> None:
        """One line per EM iteration: iteration, lower bound, change, seconds."""
        restart = f"init {info.init}  " if info.init else ""
        who = f"{info.candidate}  " if info.candidate else ""
        self.event(
            "iteration",
            f"{who}{restart}iter {info.n_iter:4d}  lower bound {info.lower_bound: .6f}  "
            f"change {info.change: .3e}  {info.seconds:6.2f} s",
            init=info.init, n_iter=info.n_iter, lower_bound=info.lower_bound,
            change=info.change, seconds=round(info.seconds, 4),
            **({"candidate": info.candidate} if info.candidate else {}),
        )

    def wait(self, futures, label: str) -> None:
        """A progress bar over ``futures`` when attached to a terminal in text mode."""
        if self.quiet or self.log_format != "text" or not self.stream.isatty():
            return
        from distributed import wait
        from distributed.diagnostics.progressbar import progress

        print(label, file=self.stream, flush=True)
        progress(futures, notebook=False)
        wait(futures)
