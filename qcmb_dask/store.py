"""A content-addressed store of fragment results on disk: what makes a crash cost minutes, not the run.

One file per (calculation, driver). The key is a SHA-256 of everything that changes the answer: the
fragment molecule with its ghosts, charge and multiplicity, the program and its version, method,
basis, keywords. It does not depend on dictionary order (canonical JSON), the fragment's label or
the run it came from, so a nocp run reuses the identical calculations of an earlier cp run, and a
larger cluster reuses the dimers of a smaller one at the same geometry.

Entries are written by the worker right after its fragment finishes, to a temporary file in the
same directory and renamed into place (atomic on POSIX filesystems, NFS and Lustre included), so a
reader sees a whole entry or none. Each entry carries a checksum of its payload; a torn or corrupt
entry is reported and recomputed, never used. Several runs and many workers may share one store:
two writers of one key write the same answer and the last rename wins.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qcmb_dask.errors import StoreWarning

FORMAT = "qcmb-dask-store-1"
#: A file in the store's directory that says it is one: ``cache clear`` deletes nothing where it is missing.
MARKER = ".qcmb-dask-store"
#: The only names the store writes: an entry ``<key[:2]>/<key>.<driver>.json``, its temporary file while it is
#: written, and a failure record ``failed/<key>.<driver>.json``.
_ENTRY = re.compile(r"^(?P<key>[0-9a-f]{64})\.(?P<driver>energy|gradient|hessian)\.json$")
_TEMPORARY = re.compile(r"^\.[0-9a-f]{64}\.(energy|gradient|hessian)\.json\..+\.tmp$")
#: A stored result serves any driver at or below its own: a hessian run also holds energy and gradient.
DRIVER_RANK = {"energy": 0, "gradient": 1, "hessian": 2}
#: Geometry is keyed to 1e-10 Bohr: far below any physical difference, above float noise from unit conversion.
GEOMETRY_DECIMALS = 10


def default_location() -> Path:
    """``$XDG_CACHE_HOME/qcmb_dask/results``, else ``~/.cache/qcmb_dask/results``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "qcmb_dask" / "results"


def location(cache: Any) -> Path | None:
    """``cache=`` -> the store's directory, or None when turned off.

    ``None`` takes ``qcmb_dask.cache`` from dask config; there ``True``/``"default"`` mean
    :func:`default_location` and ``False`` turns the store off.
    """
    if cache is None:
        from qcmb_dask.options import setting  # the Dask config: imported only where it is read

        cache = setting("cache", True)
    if cache is False:
        return None
    if cache is True or cache == "default":
        return default_location()
    if isinstance(cache, (str, os.PathLike)):
        return Path(cache).expanduser().absolute()
    from qcmb_dask.errors import InvalidArgument

    raise InvalidArgument(
        f"cache={cache!r}: expected a directory path, True (the default location) or False (no store)."
    )


def make_ready(root: Path) -> None:
    """Create the store's directory and prove it writable, before anything is submitted."""
    try:
        Path(root).mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=root, prefix=".write-test-"):
            pass
        _mark(Path(root))
    except OSError as err:
        from qcmb_dask.errors import InvalidArgument

        raise InvalidArgument(
            f"the result store {str(root)!r} cannot be written ({err}). Pass cache=<a writable directory> "
            "(on a cluster: one every worker can reach), or cache=False to run without a store."
        ) from err


def _mark(root: Path) -> None:
    """Leave the marker that lets ``cache clear`` tell the store from a directory of other files. Best effort: a
    store whose marker cannot be written is still recognised by its entries."""
    marker = root / MARKER
    if not marker.exists():
        with contextlib.suppress(OSError):
            marker.write_text(json.dumps({"format": FORMAT}) + "\n")


def calculation_key(
    atomic_input, program: str, program_version: str, harness: Any = None, keywords: dict | None = None
) -> str:
    """The content key of one calculation, independent of its driver (the driver is part of the file name).

    ``harness`` stands for what the QCEngine harness adds to the input (keyword defaults, how it calls the
    program): :func:`harness_fingerprint`. Without it a changed default would serve old numbers as new ones.
    ``keywords``: the keywords that decide the number, where the harness says which
    (:func:`qcmb_dask.programs.protocol.store_keywords`: PySCF's ``device`` does not); default: all of them.
    """
    spec = atomic_input.specification
    mol = atomic_input.molecule
    content = {
        "format": FORMAT,
        "program": program.lower(),
        "program_version": program_version,
        "harness": harness,
        "method": spec.model.method.lower(),
        "basis": (spec.model.basis or "").lower(),
        "keywords": spec.keywords if keywords is None else keywords,
        "extras": spec.extras,
        "molecule": {
            "symbols": list(mol.symbols),
            "geometry": [round(float(x), GEOMETRY_DECIMALS) + 0.0 for x in mol.geometry.ravel()],
            "real": [bool(r) for r in mol.real],
            "molecular_charge": float(mol.molecular_charge),
            "molecular_multiplicity": float(mol.molecular_multiplicity),
            # The frame of derivatives and NWChem's symmetry handling depend on these.
            "fix_com": bool(mol.fix_com),
            "fix_orientation": bool(mol.fix_orientation),
            "fix_symmetry": mol.fix_symmetry,
            "embedding_charges": mol.extras.get("embedding_charges"),
        },
    }
    return hashlib.sha256(canonical_json(content).encode()).hexdigest()


def harness_fingerprint(harness) -> Any:
    """What a harness adds to every calculation: its own ``store_fingerprint()`` where it has one (the shipped
    PySCF harness: its keyword defaults and a revision), else QCEngine's version, whose harnesses set defaults
    of their own (a QCEngine upgrade then recomputes rather than trust them unchanged)."""
    from qcmb_dask.programs.protocol import FingerprintsResults

    if isinstance(harness, FingerprintsResults):  # see qcmb_dask.programs.protocol
        return harness.store_fingerprint()
    import qcengine

    return {"qcengine": qcengine.__version__}


def canonical_json(obj: Any) -> str:
    """Sorted keys, no whitespace, numpy values as lists: equal content gives equal text."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_to_builtin)


def _to_builtin(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "model_dump"):
        return value.model_dump()
    raise TypeError(f"{type(value).__name__} is not storable in a store key")


@dataclass(frozen=True)
class ResultStore:
    """A directory of entries ``<root>/<key[:2]>/<key>.<driver>.json``."""

    root: Path

    def path(self, key: str, driver: str) -> Path:
        return Path(self.root) / key[:2] / f"{key}.{driver}.json"

    def load(self, key: str, driver: str, exact_driver: bool = False) -> dict[str, Any] | None:
        """The stored AtomicResult (as a dict) that serves ``driver``, or None.

        A result of a higher driver serves a lower one (its energy is the same calculation's) unless
        ``exact_driver``. Unreadable or corrupt entries give a :class:`StoreWarning` and count as absent.
        """
        drivers = [driver] if exact_driver else [d for d, r in DRIVER_RANK.items() if r >= DRIVER_RANK[driver]]
        for candidate in drivers:
            path = self.path(key, candidate)
            try:
                blob = path.read_bytes()
            except FileNotFoundError:
                continue
            except OSError as err:
                warnings.warn(f"qcmb_dask store: cannot read {path}: {err}; recomputing.", StoreWarning, stacklevel=2)
                continue
            payload = _verified_payload(blob, key, candidate)
            if payload is None:
                warnings.warn(
                    f"qcmb_dask store: entry {path} is torn or corrupt (checksum or format mismatch); "
                    "it is ignored and the calculation recomputed.",
                    StoreWarning,
                    stacklevel=2,
                )
                continue
            return payload
        return None

    def has(self, key: str, driver: str) -> bool:
        """Whether an entry that serves ``driver`` exists (not read or verified: for counting, not for use)."""
        return any(self.path(key, d).is_file() for d, r in DRIVER_RANK.items() if r >= DRIVER_RANK[driver])

    def save(self, key: str, driver: str, result_json: str) -> Path:
        """Write one entry atomically (temp file in the same directory + rename). Raises OSError."""
        payload = result_json.encode()
        header = {"format": FORMAT, "key": key, "driver": driver, "sha256": hashlib.sha256(payload).hexdigest()}
        return write_atomically(self.path(key, driver), json.dumps(header).encode() + b"\n" + payload)

    def failure_path(self, key: str, driver: str) -> Path:
        return Path(self.root) / "failed" / f"{key}.{driver}.json"

    def save_failure(self, key: str, driver: str, failed_json: str) -> Path:
        """Keep a failed calculation's whole record (QCEngine's FailedOperation: its input, the error, the
        traceback) where the user can read it; never read back as a result. Raises OSError."""
        return write_atomically(self.failure_path(key, driver), failed_json.encode())

    def failure_records(self) -> list:
        """(path, record) of every failure record, oldest first; a record of another kind is left out."""
        records = []
        for path in Path(self.root).glob("failed/*.json"):
            if not _ENTRY.match(path.name):
                continue
            try:
                record = json.loads(path.read_bytes())
            except (OSError, ValueError):
                continue
            if isinstance(record, dict) and "error" in record:
                records.append((path, record))
        return sorted(records, key=lambda item: (item[1].get("qcmb_dask") or {}).get("when", 0))

    def forget_failure(self, key: str, driver: str) -> None:
        """The calculation succeeded: an earlier failure record would only mislead."""
        self.failure_path(key, driver).unlink(missing_ok=True)

    def entries(self) -> Iterable[Path]:
        """The store's result entries: files it named and headed, nothing else that may share the directory."""
        for path in Path(self.root).glob("??/*.json"):
            match = _ENTRY.match(path.name)
            if (
                match
                and path.parent.name == match["key"][:2]
                and _header(path) == (FORMAT, match["key"], match["driver"])
            ):
                yield path

    def written_since(self, since: float) -> int:
        """Entries written (or rewritten) since ``since`` (epoch seconds): what a run that began then kept."""
        count = 0
        for path in self.entries():
            with contextlib.suppress(OSError):
                count += path.stat().st_mtime >= since - 1  # a second's slack for coarse file system clocks
        return count

    def is_store(self) -> bool:
        """Whether the directory holds the store's marker or at least one of its entries (stores made before the
        marker existed)."""
        return (Path(self.root) / MARKER).is_file() or next(iter(self.entries()), None) is not None

    def info(self) -> dict[str, Any]:
        """Entry count and bytes on disk."""
        files = list(self.entries())
        return {"root": str(self.root), "entries": len(files), "bytes": sum(f.stat().st_size for f in files)}

    def clear(self) -> int:
        """Delete every entry, failure record and leftover temporary file the store wrote, and nothing else; returns
        how many entries were removed. Refuses (ValueError) a directory that is not a store."""
        root = Path(self.root)
        if not self.is_store():
            raise ValueError(
                f"{str(root)!r} is not a qcmb_dask result store (it has no {MARKER} file and no entries): nothing "
                "was deleted. Name the store's own directory."
            )
        removed = 0
        for path in list(self.entries()):
            path.unlink(missing_ok=True)
            removed += 1
        leftovers = [p for p in root.glob("??/.*.tmp") if _TEMPORARY.match(p.name)]
        leftovers += [p for p in root.glob("failed/*.json") if _ENTRY.match(p.name) and _is_failure_record(p)]
        for leftover in leftovers:
            leftover.unlink(missing_ok=True)
        for folder in [*root.glob("??"), root / "failed"]:
            with contextlib.suppress(OSError):  # only empty folders go
                folder.rmdir()
        return removed


def _header(path: Path):
    """(format, key, driver) from an entry's first line, or None."""
    try:
        with open(path, "rb") as f:
            header = json.loads(f.readline(4096))
        return header.get("format"), header.get("key"), header.get("driver")
    except (OSError, ValueError, AttributeError):
        return None


def _is_failure_record(path: Path) -> bool:
    """QCEngine's FailedOperation, as :meth:`ResultStore.save_failure` writes it."""
    try:
        record = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return False
    return isinstance(record, dict) and "error" in record


def write_atomically(path: Path, data: bytes) -> Path:
    """A temporary file in the same directory, fsync, rename: readers see the whole file or none."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            _write_bytes(f, data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def _write_bytes(f, data: bytes) -> None:
    """One place for the write, so that tests can make the disk full."""
    f.write(data)


def _verified_payload(blob: bytes, key: str, driver: str) -> dict[str, Any] | None:
    head, sep, payload = blob.partition(b"\n")
    if not sep:
        return None
    try:
        header = json.loads(head)
        if (header.get("format"), header.get("key"), header.get("driver")) != (FORMAT, key, driver):
            return None
        if hashlib.sha256(payload).hexdigest() != header.get("sha256"):
            return None
        return json.loads(payload)
    except (ValueError, AttributeError):
        return None
