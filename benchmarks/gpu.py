"""GPU fragments: qcmb_dask's CPU workers, GPU workers and both, end to end, on DF-MP2/cc-pVTZ water expansions.

Each row is one ``qcmb_dask.compute(input, cluster="local", cache=False)``, the embedded cluster started and closed
inside the timing, in one of three modes:

- ``cpu``: CPU workers alone, PySCF keyword ``device="cpu"``, one single-threaded fragment per core, every core;
- ``gpu xN``: GPU workers alone, ``device="gpu"``, ``gpus`` = every GPU shown, N fragment processes per GPU
  (``--processes-per-gpu``, default 1,2,4), no CPU workers (``n_workers=0``);
- ``both xN``: ``device="auto"``, the GPU processes plus CPU workers on the cores left; each fragment where the
  placement expects it to finish first (N: the largest of ``--processes-per-gpu``).

Per row: wall seconds (end to end, cluster start included), the fragments' span (first fragment start to last
end, from the run's timeline), throughput over the CPU row (both), where the fragments ran (the run's
"placement: ..." line), and the GPU busy fraction: ``nvidia-smi --query-gpu=utilization.gpu -lms 200`` sampled in
the background while the run goes, the mean of its samples. A last check computes every fragment of the (H2O)6
expansion (and a counterpoise dimer, for ghost atoms) with ``qcengine.compute`` and the shipped PySCF harness on
CPU and on GPU, and prints the largest difference. Without a usable GPU (gpu4pyscf and CuPy importable, a card
visible) every GPU figure is "not measured: <why>", and the script exits 0.

    python benchmarks/gpu.py                       # (H2O)6 to 3-body and (H2O)16 to 2-body, nocp: every mode
    python benchmarks/gpu.py --systems h2o6        # the goals' system alone
    python benchmarks/gpu.py --systems h2o16 --skip-same
    python benchmarks/gpu.py --quick               # (H2O)3 2-body DF-MP2/6-31G; for CI (no GPU: the CPU row)
"""

from __future__ import annotations

import concurrent.futures
import itertools
import logging
import multiprocessing
import re
import shutil
import subprocess
import threading
import time

from common import median, parser
from systems import mbe_input, water_cluster

import qcmb_dask
from qcmb_dask.clusters.resources import machine_cores, visible_gpus

METHOD, BASIS = "mp2", "cc-pvtz"
KEYWORDS = {"density_fitting": True}
#: name -> (waters, max_nbody, basis); the full run's systems
SYSTEMS = {"h2o6": (6, 3, BASIS), "h2o16": (16, 2, BASIS)}
QUICK = {"h2o3-quick": (3, 2, "6-31g")}
GOAL_SYSTEM = "h2o6"
GOAL_THROUGHPUT = 12.0
GOAL_BUSY = 0.80
GOAL_SAME_EH = 1e-8


def system_input(nwaters: int, nbody: int, basis: str, device: str) -> dict:
    data = mbe_input(nwaters, nbody, "nocp", method=METHOD, basis=basis)
    for spec in data["specification"]["specification"].values():
        spec["keywords"] = {**KEYWORDS, "device": device}
    return data


class GpuBusy:
    """``nvidia-smi --query-gpu=utilization.gpu -lms 200`` in a background process while a run goes: the mean of
    its samples (every card's), or None where there is no nvidia-smi or no sample."""

    COMMAND = ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-lms", "200"]

    def __init__(self) -> None:
        self.samples: list[float] = []
        self.process: subprocess.Popen | None = None
        self.reader: threading.Thread | None = None

    def __enter__(self) -> GpuBusy:
        if shutil.which("nvidia-smi"):
            self.process = subprocess.Popen(
                self.COMMAND, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1
            )
            self.reader = threading.Thread(target=self._read, daemon=True)
            self.reader.start()
        return self

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            try:
                value = float(line.strip())
            except ValueError:  # "[N/A]", a warning
                continue
            if value >= 0:
                self.samples.append(value)

    def __exit__(self, *exc) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.reader is not None:
            self.reader.join(timeout=5)

    def fraction(self) -> float | None:
        return sum(self.samples) / len(self.samples) / 100 if self.samples else None


class PlacementLines(logging.Handler):
    """Keeps the run's "placement: ..." line (the qcmb_dask logger, INFO)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "placement:" in message:
            self.lines.append(message.split("placement:", 1)[1].strip())


def placement_counts(line: str | None, nfragments: int, device: str) -> str:
    if line:
        found = re.match(r"(\d+) fragment\(s\) on GPU, (\d+) on CPU", line)
        if found:
            return f"{found.group(1)} GPU / {found.group(2)} CPU"
        return line
    return f"0 GPU / {nfragments} CPU" if device == "cpu" else "no placement line"


def run_mode(data: dict, mode: dict, repeat: int, nfragments: int) -> dict:
    """``repeat`` end-to-end runs of one mode: medians of wall, span and GPU busy; the energy; the placement."""
    from qcmanybody.models.v2 import ManyBodyInput

    from qcmb_dask.diagnostics.provenance import record_of

    mbin = ManyBodyInput(**data)
    logger = logging.getLogger("qcmb_dask")
    handler = PlacementLines()
    logger.addHandler(handler)
    previous_level = logger.level
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    walls, spans, busy, energy = [], [], [], None
    try:
        for _ in range(repeat):
            with GpuBusy() as sampler:
                start = time.perf_counter()
                result = qcmb_dask.compute(mbin, cluster="local", cache=False, progress=False, **mode["options"])
                walls.append(time.perf_counter() - start)
            timeline = (record_of(result) or {}).get("timeline") or []
            computed = [r for r in timeline if r.get("start") is not None and r.get("stop") is not None]
            if computed:
                spans.append(max(r["stop"] for r in computed) - min(r["start"] for r in computed))
            if sampler.fraction() is not None:
                busy.append(sampler.fraction())
            energy = float(result.properties.return_energy)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous_level)
    return {
        "wall": median(walls),
        "walls": walls,
        "span": median(spans) if spans else None,
        "busy": median(busy) if busy else None,
        "energy": energy,
        "placement": placement_counts(handler.lines[-1] if handler.lines else None, nfragments, mode["device"]),
    }


def modes(cores: int, gpus: int, per_gpu: list[int], both_per_gpu: int, skip_cpu: bool) -> list[dict]:
    """The rows' modes: name, device keyword and compute() options (GPU ones with ``gpu`` set)."""
    rows = []
    if not skip_cpu:
        rows.append(
            {"name": "cpu", "device": "cpu", "gpu": False, "options": {"n_workers": cores, "threads_per_task": 1}}
        )
    for n in per_gpu:
        options = {"gpus": gpus, "processes_per_gpu": n, "n_workers": 0, "threads_per_task": 1}
        rows.append({"name": f"gpu x{n}", "device": "gpu", "gpu": True, "options": options})
    options = {"gpus": gpus, "processes_per_gpu": both_per_gpu, "threads_per_task": 1}
    rows.append({"name": f"both x{both_per_gpu}", "device": "auto", "gpu": True, "options": options})
    return rows


def fragment_molecules(nwaters: int) -> dict:
    """label -> qcelemental Molecule: every monomer, dimer and trimer of the cluster (real atoms), and a
    counterpoise dimer (waters 1 and 2 real, 3 as ghosts) for the ghost-atom path."""
    from qcelemental.models.v2 import Molecule

    cluster = Molecule(**water_cluster(nwaters), fix_com=True, fix_orientation=True)
    molecules = {}
    for k in (1, 2, 3):
        for waters in itertools.combinations(range(nwaters), k):
            molecules["+".join(str(w + 1) for w in waters)] = cluster.get_fragment(list(waters))
    molecules["1+2 (3 ghost)"] = cluster.get_fragment([0, 1], [2])
    return molecules


def fragment_energy(molecule, basis: str, device: str) -> float:
    """One fragment through qcengine.compute and the shipped PySCF harness, one core (importable: a pool runs it)."""
    import qcengine
    from qcelemental.models.v2 import AtomicInput

    from qcmb_dask.programs import register_shipped

    register_shipped()
    inp = AtomicInput(
        molecule=molecule,
        specification={
            "driver": "energy",
            "model": {"method": METHOD, "basis": basis},
            "keywords": {**KEYWORDS, "device": device},
        },
    )
    result = qcengine.compute(inp, "pyscf", raise_error=True, task_config={"ncores": 1, "memory": 4})
    return float(result.return_result)


def same_numbers(nwaters: int, basis: str, cores: int) -> tuple[float, str, int]:
    """The largest |E_gpu - E_cpu| over the fragments, which fragment, how many: CPU energies in a pool of
    ``cores`` single-threaded processes (spawned: this process has CUDA), GPU energies here, one at a time."""
    molecules = fragment_molecules(nwaters)
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=cores, mp_context=context) as pool:
        futures = {label: pool.submit(fragment_energy, mol, basis, "cpu") for label, mol in molecules.items()}
        cpu = {label: future.result() for label, future in futures.items()}
    gpu = {label: fragment_energy(mol, basis, "gpu") for label, mol in molecules.items()}
    label = max(molecules, key=lambda name: abs(gpu[name] - cpu[name]))
    return abs(gpu[label] - cpu[label]), label, len(molecules)


def fmt(value: float | None, spec: str, unit: str, width: int) -> str:
    return f"{'-' if value is None else f'{value:{spec}}{unit}':>{width}}"


def main() -> None:
    from qcmb_dask.programs.pyscf import gpu as pyscf_gpu

    p = parser(__doc__)
    p.add_argument("--systems", default=",".join(SYSTEMS), help=f"comma list of {', '.join(SYSTEMS)}")
    p.add_argument("--processes-per-gpu", default="1,2,4", help="GPU-alone rows: fragment processes per GPU")
    p.add_argument("--skip-cpu", action="store_true", help="no CPU-alone row (throughput ratios not measured)")
    p.add_argument("--skip-same", action="store_true", help="no CPU-vs-GPU fragment energies")
    args = p.parse_args()
    per_gpu = [int(n) for n in args.processes_per_gpu.split(",") if n.strip()]
    if args.quick:
        systems = dict(QUICK)
    else:
        unknown = [s for s in args.systems.split(",") if s and s not in SYSTEMS]
        if unknown:
            p.error(f"unknown system(s) {unknown}: expected some of {', '.join(SYSTEMS)}")
        systems = {s: SYSTEMS[s] for s in args.systems.split(",") if s}
    repeat = args.repeat or 1
    cores = machine_cores()
    why_no_gpu = pyscf_gpu.unavailable()
    gpus = visible_gpus() or 1
    if why_no_gpu is None:
        print(f"machine: {cores} cores, {gpus} GPU(s) for the GPU rows; {repeat} run(s) per row (medians)")
    else:
        print(f"machine: {cores} cores, no usable GPU: {why_no_gpu}")
    print(f"method: DF-MP2 (PySCF keywords {KEYWORDS}), nocp; each row end to end, cluster start included")

    measured: dict[str, dict[str, dict]] = {}
    failed = 0
    header = (
        f"{'system':<12} {'mode':<9} {'wall':>9} {'span':>9} {'vs cpu':>8} {'busy':>6} {'placement':<20} "
        "return energy (Eh)"
    )
    for name, (nwaters, nbody, basis) in systems.items():
        from qcmanybody.models.v2 import ManyBodyInput

        data = system_input(nwaters, nbody, basis, "cpu")
        nfragments = len(qcmb_dask.plan(ManyBodyInput(**data)))
        print(f"\n{name}: (H2O){nwaters} to {nbody}-body, DF-MP2/{basis}, {nfragments} fragments")
        print(header)
        rows = measured.setdefault(name, {})
        for mode in modes(cores, gpus, per_gpu, max(per_gpu), args.skip_cpu):
            if mode["gpu"] and why_no_gpu is not None:
                print(f"{name:<12} {mode['name']:<9} not measured: {why_no_gpu}")
                continue
            try:
                row = run_mode(system_input(nwaters, nbody, basis, mode["device"]), mode, repeat, nfragments)
            except Exception as err:  # a mode that fails says so; the others still run
                first = str(err).strip().splitlines()[0] if str(err).strip() else ""
                print(f"{name:<12} {mode['name']:<9} failed: {type(err).__name__}: {first}")
                failed += 1
                continue
            rows[mode["name"]] = row
            cpu = rows.get("cpu")
            ratio = cpu["wall"] / row["wall"] if cpu else None
            busy = row["busy"] * 100 if row["busy"] is not None else None
            print(
                f"{name:<12} {mode['name']:<9} {fmt(row['wall'], '.2f', ' s', 9)} {fmt(row['span'], '.2f', ' s', 9)} "
                f"{fmt(ratio, '.2f', 'x', 8)} {fmt(busy, '.0f', '%', 6)} {row['placement']:<20} {row['energy']:.10f}"
            )
        if "cpu" in rows:
            others = [abs(r["energy"] - rows["cpu"]["energy"]) for m, r in rows.items() if m != "cpu"]
            if others:
                print(f"{name}: largest |E(mode) - E(cpu)| of the expansion: {max(others):.2e} Eh")

    print()
    same = None
    if args.skip_same:
        print("same numbers: not measured (--skip-same)")
    elif why_no_gpu is not None:
        print(f"same numbers: not measured: {why_no_gpu}")
    else:
        nwaters, _, basis = systems.get(GOAL_SYSTEM, next(iter(systems.values())))
        same, label, count = same_numbers(nwaters, basis, cores)
        print(
            f"same numbers: (H2O){nwaters} DF-MP2/{basis}, {count} fragments on CPU and on GPU through "
            f"qcengine.compute: largest |E_gpu - E_cpu| {same:.2e} Eh (fragment {label})"
        )

    print("\ngoals:")
    goal_rows = measured.get(GOAL_SYSTEM, {})
    gpu_rows = {m: r for m, r in goal_rows.items() if m != "cpu"}
    best = min(gpu_rows, key=lambda m: gpu_rows[m]["wall"]) if gpu_rows else None
    if args.quick:
        reason = "not measured (--quick: the goals are on the (H2O)6 expansion)"
        throughput = busy = reason
    elif GOAL_SYSTEM not in systems:
        throughput = busy = f"not measured ({GOAL_SYSTEM} not among --systems)"
    elif why_no_gpu is not None:
        throughput = busy = f"not measured: {why_no_gpu}"
    elif best is None:
        throughput = busy = "not measured (no GPU row completed)"
    else:
        if "cpu" in goal_rows:
            ratio = goal_rows["cpu"]["wall"] / gpu_rows[best]["wall"]
            throughput = f"{'met' if ratio >= GOAL_THROUGHPUT else 'missed'} ({ratio:.2f}x, {best})"
        else:
            throughput = "not measured (--skip-cpu)"
        fraction = gpu_rows[best]["busy"]
        if fraction is None:
            busy = "not measured (no nvidia-smi sample)"
        else:
            busy = f"{'met' if fraction >= GOAL_BUSY else 'missed'} ({fraction * 100:.0f} %, {best})"
    if same is None:
        same_goal = "not measured" + (" (--skip-same)" if args.skip_same else f": {why_no_gpu}")
    else:
        same_goal = f"{'met' if same <= GOAL_SAME_EH else 'missed'} ({same:.2e} Eh)"
    print(f"  throughput >= {GOAL_THROUGHPUT:.0f}x all {cores} cores on (H2O)6 (best GPU mode vs cpu): {throughput}")
    print(f"  GPU busy >= {GOAL_BUSY * 100:.0f} % of the run (best GPU mode on (H2O)6): {busy}")
    print(f"  every fragment within {GOAL_SAME_EH:.0e} Eh on CPU and GPU: {same_goal}")
    if failed:
        raise SystemExit(f"{failed} row(s) failed (above)")


if __name__ == "__main__":
    main()
