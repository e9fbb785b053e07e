"""Progress bars (tqdm) that print plain lines when the output is not a terminal."""

import sys
from typing import Any

LOG_INTERVAL = 30.0
"""Seconds between the lines of progress written to a file or a pipe."""


class _Lines:
    """A stream for tqdm that writes each refresh of the bar as one line (no carriage
    returns, no blank lines), for logs of batch jobs."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text: str) -> None:
        text = text.replace("\r", "").strip("\n")
        if text.strip():
            self.stream.write(text + "\n")

    def flush(self) -> None:
        self.stream.flush()


def progress_bar(iterable: Any = None, *, total: int | None = None, desc: str, unit: str,
                 disable: bool = False, **options):
    """A tqdm bar on stderr: the usual bar on a terminal (or a notebook); elsewhere (a
    file, a pipe, a batch job's log) one plain line every `LOG_INTERVAL` seconds and at
    the end. `options` go to tqdm."""
    from tqdm.auto import tqdm

    stream = sys.stderr
    if not disable and not (hasattr(stream, "isatty") and stream.isatty()) and "ipykernel" not in sys.modules:
        options = {"file": _Lines(stream), "mininterval": LOG_INTERVAL, "ascii": True, "ncols": 100, **options}
    else:
        options = {"dynamic_ncols": True, **options}
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=disable, **options)
