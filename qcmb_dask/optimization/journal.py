"""Where an optimization is: the points it evaluated, one JSON line each, kept next to the result store.

geomeTRIC is deterministic: an optimization started again from the same input asks for the same points in the
same order. A restarted ``optimize`` hands each point the journal recorded back to the evaluation as it was
written (so the store keys match to the bit, and every fragment is a read), and goes on computing after the
last recorded one: it resumes from its last finished step with the trajectory an unbroken run would have.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np

from qcmb_dask.errors import StoreWarning

#: a point geomeTRIC asks for again, in bohr: far below any step it takes (its smallest trust radius is 1e-4)
SAME_POINT_BOHR = 1e-8
FOLDER = "optimizations"


class Journal:
    """The recorded points of one optimization (its input, optimizer and keywords: ``token``); no file without a
    store."""

    def __init__(self, path: Path | None):
        self.path = path
        self.points: list[np.ndarray] = _read(path) if path is not None else []

    @classmethod
    def in_store(cls, store_root, token: str) -> Journal:
        return cls(Path(store_root) / FOLDER / f"{token}.jsonl" if store_root is not None else None)

    def recall(self, index: int, coordinates: np.ndarray) -> np.ndarray | None:
        """The recorded point ``index`` if it is where the optimizer asks to go now, else None (from there on the
        run is a new one: the record past it is dropped)."""
        if index >= len(self.points):
            return None
        recorded = self.points[index]
        if recorded.shape == coordinates.shape and np.max(np.abs(recorded - coordinates)) <= SAME_POINT_BOHR:
            return recorded
        self._truncate(index)
        return None

    def record(self, index: int, coordinates: np.ndarray) -> None:
        """Point ``index`` is finished (its result in the store): appended and on disk before the optimizer moves."""
        if self.path is None:
            return
        line = _line(index, coordinates)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a") as f:
                f.write(line + "\n")
                f.flush()
                os.fsync(f.fileno())
        except OSError as err:  # the optimization goes on; only a restart would have to start over
            warnings.warn(
                f"qcmb_dask: cannot record this optimization's points in {self.path} ({err}): it goes on, but a "
                "restart would begin again from the first point (its calculations are still read from the store).",
                StoreWarning,
                stacklevel=2,
            )
            self.path = None
        self.points.append(np.array(coordinates, dtype=float).reshape(-1, 3))

    def _truncate(self, index: int) -> None:
        self.points = self.points[:index]
        if self.path is not None:
            self.path.write_text("".join(_line(i, p) + "\n" for i, p in enumerate(self.points)))


def _line(index: int, coordinates: np.ndarray) -> str:
    return json.dumps({"point": index, "coordinates": np.asarray(coordinates).ravel().tolist()})


def _read(path: Path) -> list[np.ndarray]:
    """The points in order; a torn last line (the run was killed while writing it) ends the record."""
    points = []
    try:
        lines = path.read_text().splitlines()
    except OSError:  # none yet, or unreadable: nothing to replay (recording says so, if it cannot write either)
        return points
    for line in lines:
        try:
            entry = json.loads(line)
            coordinates = np.array(entry["coordinates"], dtype=float).reshape(-1, 3)
        except (ValueError, KeyError, TypeError):
            break
        if entry.get("point") != len(points):
            break
        points.append(coordinates)
    return points
