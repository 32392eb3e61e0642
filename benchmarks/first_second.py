"""The first second: the README's trimer, each run in a fresh process, against QCManyBody's sequential computer.

A chemist's first try is one small input in a new process: starting workers can cost more than the chemistry.
Every row is a new Python process that imports the modules it calls (not timed: QCManyBody's row imports QCEngine
and registers the PySCF harness; qcmb_dask's imports its API and QCEngine) and then times one call. Each
program's own import and first-call set-up are inside the timing for every row. Repetitions are interleaved.

- QCManyBody's sequential ``ManyBodyComputer`` on the input;
- ``qcmb_dask.compute(input)``: the default, which runs a plan this small in-process or starts the embedded
  cluster, whichever it predicts is faster (``qcmb_dask.local.startup-seconds``, measured on this machine);
- ``qcmb_dask.compute(input, "local")``: an embedded cluster started, used and closed inside the timing;
- the same process's second ``compute(input)`` with the embedded cluster it kept, against ``"sync"``.

    python benchmarks/first_second.py            # examples/water-trimer.json (HF/6-31G, CP + nocp, 13 calcs)
    python benchmarks/first_second.py --program nwchem
    python benchmarks/first_second.py --quick    # one repetition, for CI
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from common import median, parser

ROOT = Path(__file__).resolve().parent.parent
TRIMER = ROOT / "examples" / "water-trimer.json"

RUNS = {
    "QCManyBody sequential": """
from qcmanybody.models.v2 import ManyBodyInput
from qcmanybody.v2 import ManyBodyComputer
mbin = ManyBodyInput(**data)
import qcmb_dask.programs; qcmb_dask.programs.register_shipped()
start = time.perf_counter()
ManyBodyComputer.from_manybodyinput(mbin)
print(json.dumps({"first": time.perf_counter() - start}))
""",
    "qcmb_dask default": """
import qcmb_dask, qcmb_dask.api, qcmb_dask.programs
start = time.perf_counter()
qcmb_dask.compute(data, cache=False, progress=False)
print(json.dumps({"first": time.perf_counter() - start}))
""",
    "qcmb_dask cluster='local'": """
import qcmb_dask, qcmb_dask.api, qcmb_dask.programs
start = time.perf_counter()
qcmb_dask.compute(data, "local", cache=False, progress=False)
print(json.dumps({"first": time.perf_counter() - start}))
""",
    "qcmb_dask second call, cluster kept": """
import dask, qcmb_dask, qcmb_dask.api, qcmb_dask.programs
with dask.config.set({"qcmb_dask.local.startup-seconds": 0}):  # the first call starts the cluster it keeps
    start = time.perf_counter(); qcmb_dask.compute(data, cache=False, progress=False)
    first = time.perf_counter() - start
    start = time.perf_counter(); qcmb_dask.compute(data, cache=False, progress=False)
    second = time.perf_counter() - start
qcmb_dask.compute(data, "sync", cache=False, progress=False)  # its first call pays PySCF's first-call set-up
start = time.perf_counter(); qcmb_dask.compute(data, "sync", cache=False, progress=False)
sync = time.perf_counter() - start
print(json.dumps({"first": first, "second": second, "sync": sync}))
""",
}


def run(code: str, data: dict) -> dict:
    with tempfile.TemporaryDirectory() as scratch:
        script = Path(scratch) / "run.py"
        script.write_text(
            "import json, time\n"
            f"data = json.loads({json.dumps(json.dumps(data))})\n"
            "if __name__ == '__main__':\n" + "\n".join("    " + line for line in code.strip().splitlines()) + "\n"
        )
        out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=900, cwd=scratch)
    if out.returncode != 0:
        raise SystemExit(f"benchmark run failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--program", default="pyscf")
    args = p.parse_args()
    repeat = args.repeat or (1 if args.quick else 5)
    data = json.loads(TRIMER.read_text())
    for spec in data["specification"]["specification"].values():
        spec["program"] = args.program
    results = {name: [] for name in RUNS}
    for _ in range(repeat):  # interleaved, so that a slow minute of the machine hits every row alike
        for name, code in RUNS.items():
            results[name].append(run(code, data))
    sequential = median([r["first"] for r in results["QCManyBody sequential"]])
    print(f"README trimer, {args.program}, {repeat} repetition(s), each in a fresh process:")
    for name in ("QCManyBody sequential", "qcmb_dask default", "qcmb_dask cluster='local'"):
        times = [r["first"] for r in results[name]]
        print(f"  {name:<36} median {median(times):6.2f} s   {sequential / median(times):5.2f}x   {times}")
    kept = results["qcmb_dask second call, cluster kept"]
    second, sync = median([r["second"] for r in kept]), median([r["sync"] for r in kept])
    print(f"  {'second call, embedded cluster kept':<36} median {second:6.2f} s   {sequential / second:5.2f}x")
    print(f"  {'second call, sync (in-process)':<36} median {sync:6.2f} s   {sequential / sync:5.2f}x")


if __name__ == "__main__":
    main()
