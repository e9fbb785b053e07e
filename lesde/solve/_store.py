"""Finished chunks of a batched computation kept on disk, so that an interrupted run
resumes where it stopped (`sweep`, and `lesde.nets.train_separation`)."""

import json
import os
from collections.abc import Sequence
from pathlib import Path

import jax
import numpy as np

from .._json import dump_json


class StoreError(ValueError):
    """A chunk store that cannot be used: of another computation, or damaged. The
    message names the file and how to recover."""


class ChunkStore:
    """The finished chunks of one computation over `num_members` members, in the folder
    `path` (final).

    Each chunk is one `.npz` file holding the ids of its members (`member`) and their
    results (arrays with the members first), written under a temporary name and renamed,
    so an interrupted chunk leaves nothing that looks complete. `sweep.json` in the folder
    records `fingerprint` (what identifies the computation, e.g. a hash of its config)
    and `num_members`; a folder of another computation is refused, so a store is never
    mixed with another one (`StoreError`, a ValueError, as is a damaged chunk file). With
    several processes only the first one writes.

    **Arguments:**
    - `path`: the folder (created by the first process).
    - `fingerprint`: a string that identifies the computation.
    - `num_members`: how many members the computation has.

    Example:

        store = ChunkStore("out/chunks", fingerprint_of(config), num_members=1000)
        done = store.load()               # [{"member": ids, name: results, ...}, ...]
        store.save(ids, {"loss": loss})   # after each chunk
    """

    def __init__(self, path: str | Path, fingerprint: str, num_members: int):
        self.path = Path(path)
        self.writer = jax.process_index() == 0  # several processes: the first one writes
        if self.writer:
            self.path.mkdir(parents=True, exist_ok=True)
        meta = self.path / "sweep.json"
        info = {"fingerprint": fingerprint, "num_members": num_members}
        if meta.exists():
            try:
                old = json.loads(meta.read_text())
            except (OSError, ValueError) as e:
                raise StoreError(
                    f"the chunk store's description {meta} cannot be read ({e}); remove the "
                    f"folder {self.path} to start the computation again"
                ) from None
            if old != info:
                raise StoreError(
                    f"the chunk store {self.path} holds a different computation (fingerprint "
                    f"{old.get('fingerprint')!r}, {old.get('num_members')} members); remove it "
                    "or use another output directory"
                )
        elif self.writer:
            tmp = meta.with_name(".sweep.json.partial")
            tmp.write_text(dump_json(info, indent=None))
            os.replace(tmp, meta)

    def load(self, required: Sequence[str] = ()) -> list[dict[str, np.ndarray]]:
        """The finished chunks, each {"member": ids, name: results}; a chunk file that
        cannot be read, or lacks `member` or one of the `required` results, is named,
        with how to recover (remove it: its members are computed again)."""
        out = []
        for f in sorted(self.path.glob("members_*.npz")):
            try:
                with np.load(f) as z:
                    part = {k: z[k] for k in z.files}
                missing = [k for k in ("member", *required) if k not in part]
                if missing:
                    raise ValueError(f"it lacks {missing[0]}")
            except Exception as e:  # zipfile, pickle and format errors of a damaged file
                raise StoreError(
                    f"the chunk file {f} is damaged ({type(e).__name__}: {e}); remove it and "
                    "run the same command again: its members are computed again, the other "
                    "chunks are kept"
                ) from None
            out.append(part)
        return out

    def save(self, members: np.ndarray, results: dict[str, np.ndarray]) -> None:
        """Write the chunk of `members` (their ids) and their `results`."""
        if not self.writer:
            return
        name = f"members_{int(members[0]):09d}_{int(members[-1]):09d}.npz"
        tmp = self.path / f".{name}.partial"
        with open(tmp, "wb") as f:
            np.savez(f, member=members, **results)
        os.replace(tmp, self.path / name)
