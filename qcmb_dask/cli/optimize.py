"""``optimize``: a geometry optimization on the many-body energy, every step's gradient a graph on one cluster."""

from __future__ import annotations

import click

from qcmb_dask.cli import flags
from qcmb_dask.cli.outcome import run_errors, write_result


@click.command("optimize")
@click.argument("input_file", metavar="INPUT", type=click.Path(exists=True, dir_okay=False))
@flags.model
@click.option("--cluster", default=None, help="As for run; one cluster serves every step.")
@flags.jobs
@flags.cluster_option
@flags.workers
@flags.threads_per_task
@flags.result_store
@click.option("--no-cache", is_flag=True, help="Keep no results: no resuming, every point computed.")
@click.option("--out", type=click.Path(dir_okay=False), help="Write the OptimizationResult (JSON) here.")
@click.option("--xyz", type=click.Path(dir_okay=False), help="Write the final geometry (XYZ, Angstrom) here.")
@click.option("--maxiter", type=int, help="geomeTRIC's most optimization steps (its default: 300).")
@click.option("--convergence-set", help="geomeTRIC's convergence criteria: GAU (default), GAU_TIGHT, NWCHEM_LOOSE, ...")
@click.option("--optimizer-keyword", "optimizer_keyword", multiple=True, metavar="KEY=VALUE",
              help="Any other geomeTRIC keyword, e.g. coordsys=dlc.")  # fmt: skip
@click.option("--quiet", "-q", is_flag=True, help="No line per step, only the summary.")
def optimize_command(input_file, model, cluster, jobs, cluster_option, workers, threads_per_task, cache, no_cache,
                     out, xyz, maxiter, convergence_set, optimizer_keyword, quiet):  # fmt: skip
    """Optimize the geometry in INPUT on its many-body energy with geomeTRIC: every step's gradient is one graph
    on one cluster, started once. Run the same command again after an interruption (or a walltime) to resume from
    the last finished step: the steps taken are in the result store.

    \b
    qcmb-dask optimize water-hexamer.xyz --method mp2 --basis cc-pvdz --bsse nocp --max-nbody 2 --xyz final.xyz
    """
    import qcmb_dask

    if cache and no_cache:
        raise click.UsageError("give --cache PATH or --no-cache, not both")
    keywords = flags.parse_key_values(optimizer_keyword) or {}
    keywords.update({k: v for k, v in (("maxiter", maxiter), ("convergence_set", convergence_set)) if v is not None})
    with run_errors():
        for path, option in ((out, "--out"), (xyz, "--xyz")):
            if path:
                from qcmb_dask.options import check_output_path

                check_output_path(path, option)
        result = qcmb_dask.optimize(
            flags.input_from(input_file, model),
            cluster,
            jobs=jobs,
            cluster_options=flags.parse_key_values(cluster_option),
            n_workers=workers,
            threads_per_task=threads_per_task,
            cache=False if no_cache else cache,
            progress=not (quiet or click.get_current_context().find_root().params.get("log_level")),
            **keywords,
        )
    energies = [p.return_energy for p in result.trajectory_properties]
    click.echo(f"Converged in {len(energies)} points: E = {result.properties.return_energy:.10f} Eh "
               f"(start {energies[0]:.10f}, change {energies[-1] - energies[0]:+.10f})")  # fmt: skip
    click.echo(result.final_molecule.to_string("xyz"))
    if out:
        click.echo(f"OptimizationResult written to {write_result(out, result.model_dump_json(indent=1))}")
    if xyz:
        click.echo(f"Final geometry written to {write_result(xyz, result.final_molecule.to_string('xyz'))}")
