"""``ductaflow run`` and ``ductaflow sweep``: instances of a flow, one or from a table or grid."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

import ductaflow

from ..configkeys import config_help
from ..console import print_plan, shown
from ..options import memory_limit
from .common import CONTEXT, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, debug_option
from .grid import parse_grids
from .spaces import parse_paired, parse_space


def _instance_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """Options shared by run and sweep."""
    options = [
        click.argument("flow", type=click.Path(path_type=Path)),
        click.option("--config", "config_file", type=click.Path(path_type=Path), metavar="FILE",
                     help="Config file: .json, .yaml/.yml or .toml (for sweep: the base under every row)."),
        click.option("-o", "--override", "overrides", multiple=True, metavar="KEY=VALUE",
                     help="Set a config key (dotted: nested; value read as JSON if it parses). Repeatable."),
        click.option("--step", "step_name", metavar="NAME",
                     help="Step folder under runs/ (default: the flow's name)."),
        click.option("--runs-dir", type=click.Path(path_type=Path), metavar="DIR",
                     help="Where step folders go (default: runs)."),
        click.option("--input", "inputs", multiple=True, metavar="PATH",
                     help="A file, folder, glob or config key the flow reads: a change re-runs. Repeatable."),
        click.option("--force", is_flag=True, help="Run even when up to date."),
        click.option("--dry-run", is_flag=True, help="Show what would run and why; run nothing."),
        click.option("--no-html", is_flag=True, help="Skip the HTML report."),
        click.option("--timeout", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
                     help="Limit on each cell's run time."),
        click.option("--instance-timeout", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
                     help="Limit on each instance's whole run time."),
        click.option("--max-memory", metavar="SIZE",
                     help="Memory each instance's flow may allocate, such as 2GB or 512MB."),
        click.option("--retries", type=click.IntRange(min=0), default=0, metavar="N",
                     help="Try an instance again up to N times when its process died, was killed or "
                          "timed out."),
        click.option("--retry-on-error", is_flag=True,
                     help="With --retries: also try again when the flow raised an exception."),
        click.option("--only-failed", is_flag=True,
                     help="Run only the instances whose last attempt failed, crashed or was interrupted."),
        click.option("--seed", type=int, metavar="N",
                     help="Sweep seed: each instance's seed (ductaflow.seed()) derives from it and the "
                          "instance's name, and is put in its config as ductaflow_seed."),
        click.option("--replicates", type=click.IntRange(min=1), metavar="N",
                     help="N instances of each row, <row>-r0 ... -r{N-1}, differing only by their seed."),
        click.option("--upstream", "upstream", multiple=True, metavar="STEP[/INSTANCE]",
                     help="An upstream step whose instance this one reads (default: named like this one; "
                          "{key} fills in a config value), besides the flow's output_of calls. Repeatable."),
        click.option("--with-upstream", is_flag=True,
                     help="Run again first the upstream instances that failed or are out of date."),
        click.option("--rerun-on-env-change", is_flag=True,
                     help="Also run an instance whose last success recorded another environment (packages, "
                          "Python, machine) than today's."),
        click.option("--cache", metavar="URL",
                     help="Share successes by fingerprint through this folder or fsspec URL (s3://...): an "
                          "instance it holds is restored, not run; each success is pushed. Default: cache "
                          "in ductaflow.toml."),
        click.option("--no-cache", is_flag=True, help="Use no cache, whatever ductaflow.toml says."),
        click.option("--kernel", "kernel_name", metavar="NAME",
                     help="An installed Jupyter kernel (default: this Python)."),
        click.option("--engine", metavar="NAME",
                     help="How notebooks execute: kernel, or fork (default: engine in ductaflow.toml, "
                          "else kernel)."),
        click.option("--preload", multiple=True, metavar="MODULE",
                     help="A module the engine may import once for many notebooks (fork does), such as "
                          "pandas (default: preload in ductaflow.toml). Repeatable."),
        click.option("--no-check-config", "check_config", is_flag=True, flag_value=False, default=True,
                     help="Run configs with keys the flow's parameters cell does not declare, or values of "
                          "other types than its defaults."),
        debug_option,
    ]  # fmt: skip
    for option in reversed(options):
        function = option(function)
    return function


@click.command(context_settings=CONTEXT)
@_instance_options
@click.option(
    "--instance",
    "instance_name",
    metavar="NAME",
    help="Instance name (default: config's instance_name, else the config file's name, else default).",
)
@click.option(
    "--replace",
    is_flag=True,
    help="Without --instance: replace the instance even when it holds the run of another config.",
)
@click.option("--echo", is_flag=True, help="Also print the flow's output as it runs.")
@click.option("--report", is_flag=True, help="Refresh runs/index.html (ductaflow report) at the end.")
@click.option(
    "--help-config", is_flag=True, help="List the flow's config keys, types and defaults; run nothing."
)
def run(
    flow: Path, instance_name: str | None, replace: bool, echo: bool, help_config: bool, **options: Any
) -> int:
    """Run one instance of FLOW, unless it is up to date.

    The config is --config with the -o overrides applied (without --config,
    the overrides make the whole config). The instance goes to
    runs/<step>/<instance>/ and is skipped when its flow, config and --input
    files have not changed since its last success. Without --instance, an
    instance holding the run of another config (other -o values, another
    config file of the same name) is not replaced: pass --instance NAME to
    keep both, or --replace.

    \b
    Examples:
      ductaflow run flow/simulate.py --config config/simulate.json
      ductaflow run flow/simulate.py --config config/simulate.json -o drift=0.3 --instance steep
      ductaflow run flow/simulate.py --config config/simulate.json -o drift=0.5 --replace
      ductaflow run flow/analyse.py -o input_csv=data/demand.csv --input input_csv --force
      ductaflow run flow/simulate.py --help-config
    """
    if help_config:
        click.echo(config_help(flow))
        return EXIT_OK
    return _run_sweep(flow, options, instance_name=instance_name, replace=replace, jobs=1, log_output=echo)


@click.command(context_settings=CONTEXT)
@_instance_options
@click.option(
    "--table",
    type=click.Path(path_type=Path),
    metavar="FILE",
    help="Control table, one instance per row: .csv .tsv .xlsx .parquet .json.",
)
@click.option(
    "--grid",
    "grids",
    multiple=True,
    metavar="KEY=V1,V2",
    help="Values for one key; several --grid give every combination. Repeatable.",
)
@click.option(
    "--zip",
    "--paired",
    "paired",
    multiple=True,
    metavar="KEY=V1,V2",
    help="Values for one key, taken together with the other --zip keys' (one instance per position, "
    "not every combination); all need as many values. Repeatable.",
)
@click.option("--random", "draws", type=click.IntRange(min=1), metavar="N",
              help="N random draws from the --space values, reproducible from --seed.")  # fmt: skip
@click.option(
    "--space",
    "spaces",
    multiple=True,
    metavar="KEY=SPEC",
    help="What --random draws for a key: log:LOW:HIGH (log-uniform), range:LOW:HIGH (uniform; whole "
    "numbers give whole numbers) or V1,V2,... (one of them). Repeatable.",
)
@click.option(
    "--name-column", default="instance_name", show_default=True, help="Table column naming instances."
)
@click.option(
    "--new-keys", is_flag=True, help="Let table columns add keys the --config file lacks (else: an error)."
)
@click.option("--report", is_flag=True, help="Refresh runs/index.html (ductaflow report) at the end.")
@click.option(
    "-j",
    "--jobs",
    type=click.IntRange(min=1),
    help="Instances at once (default: number of CPUs; with --scheduler: all, the cluster queues).",
)
@click.option(
    "--scheduler",
    metavar="ADDRESS",
    help="Run on Dask: local:N (N worker processes here) or tcp://HOST:8786 (a running scheduler). "
    "Needs ductaflow[dask].",
)
def sweep(flow: Path, table: Path | None, grids: tuple[str, ...], paired: tuple[str, ...], draws: int | None,
          spaces: tuple[str, ...], name_column: str, new_keys: bool, jobs: int | None, scheduler: str | None,
          **options: Any) -> int:  # fmt: skip
    """Run FLOW for every row of a table, every combination of a grid, paired values or random draws.

    Each row (and grid combination) is merged over the base config; dotted
    columns or keys (model.alpha) reach into nested sections. Instances are
    named by the --name-column, else by the values that vary (drift=0.1,seed=2).
    With --config, every column must be a key of it (a typo is an error
    naming the closest keys); --new-keys lets the table add keys.
    Only new or changed instances run. Grid values are read as JSON when they
    parse: --grid seed=1,2,3, --grid mode=fast,slow, --grid 'weights=[[1,2],[3,4]]'.
    --zip lists are taken together (a=1,b=x then a=2,b=y); --random N draws N
    rows from the --space values, the same for the same --seed. Table rows,
    grid combinations, zipped rows and draws multiply each other.

    \b
    Examples:
      ductaflow sweep flow/simulate.py --config config/simulate.json --table scenarios.csv --jobs 4
      ductaflow sweep flow/simulate.py --config config/simulate.json --grid seed=1,2,3 --grid drift=0,0.5
      ductaflow sweep flow/simulate.py --config config/simulate.json --table scenarios.xlsx --dry-run
      ductaflow sweep flow/simulate.py --table scenarios.csv --scheduler local:4
      ductaflow sweep flow/simulate.py --table scenarios.csv --scheduler tcp://login1:8786
      ductaflow sweep flow/fit.py --random 20 --space lr=log:1e-4:1e-1 --space layers=1,2,3 --seed 7
      ductaflow sweep flow/fit.py --zip lr=0.1,0.01 --zip epochs=10,50 --replicates 3
    """
    if table is None and not grids and not paired and draws is None:
        raise click.UsageError("sweep needs --table FILE, a --grid KEY=V1,V2, a --zip KEY=V1,V2 or "
                               "--random N with --space KEY=SPEC (use 'run' for one).")  # fmt: skip
    if (draws is None) != (not spaces):
        raise click.UsageError("--random N and --space KEY=SPEC go together: N draws from the --space "
                               "values.")  # fmt: skip
    grid = parse_grids(grids)
    kwargs = {
        "table": table,
        "grid": grid or None,
        "paired": parse_paired(paired) or None,
        "random": draws,
        "space": parse_space(spaces) or None,
        "jobs": jobs,
        "name_column": name_column,
        "new_keys": new_keys,
    }
    if scheduler is None or options["dry_run"]:
        return _run_sweep(flow, options, **kwargs)
    with ductaflow.dask_client(scheduler) as client:
        return _run_sweep(flow, options, executor=client, **kwargs)


def _run_sweep(flow: Path, options: dict[str, Any], **kwargs: Any) -> int:
    Status = ductaflow.RunStatus
    dry_run = options.pop("dry_run")
    export_html = not options.pop("no_html")
    options["preload"] = options["preload"] or None  # none given: the project's ductaflow.toml decides
    options["upstream"] = list(options["upstream"]) or None  # none given: the flow's output_of calls
    if options.pop("no_cache"):
        if options["cache"] is not None:
            raise click.UsageError("--cache and --no-cache contradict each other: give one.")
        options["cache"] = False
    if options["max_memory"] is not None:
        try:
            options["max_memory"] = memory_limit(options["max_memory"])
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--max-memory") from None
    frame = ductaflow.sweep(flow, **options, **kwargs, export_html=export_html, dry_run=dry_run,
                            progress=not dry_run)  # fmt: skip
    if dry_run:
        print_plan(frame)
        return EXIT_OK
    for row in frame.itertuples():
        if row.status in (Status.SUCCESS, Status.FAILED):
            click.echo(f"{row.status}: {shown(row.run_dir)}")
    if (frame.status == Status.INTERRUPTED).any():
        return EXIT_INTERRUPTED
    return EXIT_FAILED if (frame.status == Status.FAILED).any() else EXIT_OK
