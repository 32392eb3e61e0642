"""PySCF fragments on a CUDA GPU through gpu4pyscf: is there one, can gpu4pyscf run this, one card's lock, and
GPU out-of-memory as QCEngine's resource error.

Nothing here imports CuPy or gpu4pyscf at import time: the client and CPU workers have neither.
"""

from __future__ import annotations

import fcntl
import functools
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from qcengine.exceptions import ResourceError

from qcmb_dask.programs import protocol

#: The start of the message of an out-of-memory ResourceError, and the flag of a fragment that must have its card
#: to itself: the harness protocol's, shared by any GPU harness (the worker retries such a fragment alone).
GPU_OUT_OF_MEMORY = protocol.GPU_OUT_OF_MEMORY
ALONE = protocol.ALONE
alone = protocol.alone_on_the_gpu

_INSTALL = {12: "pip install gpu4pyscf-cuda12x", 13: "pip install gpu4pyscf-cuda13x"}


@functools.lru_cache(maxsize=1)
def _import_problem() -> str | None:
    """Why gpu4pyscf/CuPy do not import (cached: an import is costly and its answer does not change)."""
    try:
        import cupy  # noqa: F401
        import gpu4pyscf  # noqa: F401
    except Exception as err:  # ImportError, or a CUDA library that fails to load
        return f"{type(err).__name__}: {err}"
    return None


def _cuda_major() -> int | None:
    """The CUDA major version of the driver (nvidia-smi's "CUDA Version: 13.0"), else CuPy's runtime's."""
    if shutil.which("nvidia-smi"):
        try:
            text = subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            text = ""
        found = re.search(r"CUDA Version:\s*(\d+)", text)
        if found:
            return int(found.group(1))
    try:
        import cupy

        return int(cupy.cuda.runtime.runtimeGetVersion()) // 1000
    except Exception:
        return None


def _install_hint() -> str:
    major = _cuda_major()
    if major in _INSTALL:
        return f"`{_INSTALL[major]}` (CUDA {major} found)"
    return f"`{_INSTALL[12]}` or `{_INSTALL[13]}`, whichever matches the CUDA version of nvidia-smi"


def unavailable() -> str | None:
    """None where this process can run PySCF on a GPU; else one line saying why and what to install."""
    problem = _import_problem()
    if problem is not None:
        return f"gpu4pyscf with CuPy is not importable on this worker ({problem}): install {_install_hint()}."
    try:
        import cupy

        count = int(cupy.cuda.runtime.getDeviceCount())
    except Exception:
        count = 0
    if count < 1:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>")
        return f"no CUDA GPU is visible to this process (CUDA_VISIBLE_DEVICES={visible})."
    return None


def unsupported(family: str, driver: str, reference: str | None, embedded: bool, density_fitting) -> str | None:
    """Why gpu4pyscf (1.8/1.9) cannot run this calculation as the CPU path does, or None.

    ``reference`` None means "as the molecule's spin says" (RHF for singlets): only what is known is judged.
    Embedding point charges are supported (gpu4pyscf.qmmm has energies and gradients), as are density-fitted
    and conventional SCF, RHF/UHF/RKS/UKS gradients and Hessians.
    """
    if family in ("ccsd", "ccsd(t)"):
        return f"gpu4pyscf has no {family.upper()} with gradients or (T) (only an in-core RCCSD energy)"
    if family == "mp2":
        if driver != "energy":
            return f"gpu4pyscf has no MP2 {driver}s"
        if reference in ("uhf", "rohf"):
            return f"gpu4pyscf's MP2 needs a closed-shell RHF reference, not {reference.upper()}"
    if reference == "rohf" and driver != "energy":
        return f"gpu4pyscf has no ROHF/ROKS {driver}s"
    return None


def lock_path() -> str:
    """The lock file of the current card, named by its PCI bus id (the same for every process that sees it)."""
    import cupy

    bus_id = str(cupy.cuda.Device().pci_bus_id)
    # one per user: another user's lock file in a sticky /tmp cannot be opened for writing (fs.protected_regular),
    # and another user's fragments are not ours to wait for or to hold back
    card = re.sub(r"[^0-9A-Za-z]", "_", bus_id)
    return os.path.join(tempfile.gettempdir(), f"qcmb_dask-gpu-{card}-uid{os.getuid()}.lock")


@contextmanager
def card_lock(path: str | None = None) -> Iterator[None]:
    """Hold the card's lock: shared beside other fragments, exclusive under :func:`alone`.

    Every fragment passes a gate (a second lock) on its way in; a fragment that must run alone holds the gate
    until it has the card, so no new fragment starts meanwhile. Without it, fragments of the card's other
    processes taking turns on the shared lock could keep it from the one waiting to run alone for ever.
    """
    path = path or lock_path()
    with open(path + ".gate", "a") as gate, open(path, "a") as card:
        fcntl.flock(gate, fcntl.LOCK_EX)
        try:
            fcntl.flock(card, fcntl.LOCK_EX if ALONE.get() else fcntl.LOCK_SH)
        finally:
            fcntl.flock(gate, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(card, fcntl.LOCK_UN)


def is_out_of_memory(err: BaseException) -> bool:
    """CuPy's OutOfMemoryError, or a CUDA runtime error saying cudaErrorMemoryAllocation."""
    if type(err).__name__ == "OutOfMemoryError" and type(err).__module__.startswith("cupy"):
        return True
    return "cudaErrorMemoryAllocation" in str(err)


@contextmanager
def out_of_memory_as_resource_error() -> Iterator[None]:
    try:
        yield
    except Exception as err:
        if not is_out_of_memory(err):
            raise
        details = f"{type(err).__name__}: {err}"
        raise ResourceError(
            f"{GPU_OUT_OF_MEMORY} ({details}): retried with the card to itself, or give fewer processes per GPU."
        ) from err


def free_memory() -> None:
    """Give CuPy's cached blocks back, so the next fragment on this card (any process) has the memory."""
    import cupy

    cupy.get_default_memory_pool().free_all_blocks()
    cupy.get_default_pinned_memory_pool().free_all_blocks()


@contextmanager
def on_card() -> Iterator[None]:
    """Around one GPU fragment: the card's lock, out of memory as a ResourceError, memory given back after."""
    with card_lock(), out_of_memory_as_resource_error():
        try:
            yield
        finally:
            free_memory()


def to_numpy(value):
    """A CuPy array or scalar as numpy; anything else as it is."""
    if type(value).__module__.startswith("cupy"):
        return value.get()
    return value
