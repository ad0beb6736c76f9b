"""``symbrg experiment shell``: train an ensemble and renormalize it shell by shell (results + figures)."""
from __future__ import annotations

import argparse
import os

from symbrg.cli import Names, command_group, progress

#: The closed sets of the experiment's options: the engine's PRESETS, CRITERIA and MODES (kept here so
#: that ``--help`` does not import the engine; tests/test_ecosystem_cli.py holds them equal).
PRESET_NAMES = ("paper", "cosnet")
CRITERION_NAMES = ("diagonal", "eigen")
MODE_NAMES = ("resample", "zero", "marginalize")

EPILOG = """examples:
  symbrg experiment shell --preset paper --out runs/paper
  symbrg experiment shell --preset paper --members 200 --fisher-set 1000 --seed 1 --out runs/paper-f1000
  symbrg experiment shell --preset paper --out runs/paper --resume      # continue an interrupted run
  symbrg experiment shell --preset paper --members 200 --out runs/paper --resume   # 100 more members
  symbrg experiment shell --preset cosnet --members 50 --out runs/cosnet --force
  symbrg experiment shell --preset paper --members 1000 --out runs/big --scheduler tcp://head:8786

With --scheduler (or $DASK_SCHEDULER_ADDRESS) the member blocks are trained as tasks on that
dask.distributed cluster (the [dask] extra) and saved here; every member has its own seeds, so the
results equal a local run's bit for bit.

Each member draws its own training, test and Fisher sets (--data shared: one set for all).
Λ_C is read off the median test MSE (--statistic mean: the mean), with a percentile bootstrap
interval over members; a Λ_C at the edge of the cutoff grid is said in the summary and the figure.
--resume also extends a finished run: a larger --members trains only the new members (a cutoff grid
containing the old one, from the Python API, renormalizes the saved members at the new cutoffs only),
and --rtol, --statistic, --bootstrap may change; the results are those of a fresh run.  Any other
change (seed, widths, data, epochs, ...) is refused.  Read a run back with symbrg.load_run(DIR).

The estimated memory and time are checked first (limits experiment_memory, experiment_time; lift
with --limit NAME=N).

writes DIR/config.json, DIR/blocks/block_*.npz (as member blocks finish), DIR/results.json
(lambdas, mse_mean, mse_median and their _ci, fraction_resampled, lambda_c, lambda_c_ci,
lambda_c_at_grid_edge, predictive mean/variance, ...) and the figures mse_vs_lambda.png,
fisher_spectrum.png, outputs_at_test_point.png, predictive_variance.png.  Progress goes to stderr
(a bar when it is a terminal; none with symbrg --quiet).
"""

#: Configuration fields set by an option, and the option's spelling (errors name the option).
OPTIONS = {"members": "--members", "fisher_set": "--fisher-set", "seed": "--seed", "epochs": "--epochs",
           "block": "--block", "criterion": "--criterion", "mode": "--mode", "rtol": "--rtol",
           "data": "--data", "statistic": "--statistic", "bootstrap": "--bootstrap", "out": "--out",
           "resume": "--resume", "preset": "--preset"}
#: Arguments of the cluster client and their option.
CLUSTER = {"client": "--scheduler", "address": "--scheduler"}


def run_shell(ns: argparse.Namespace) -> int:
    from symbrg.core.errors import SymbrgError
    from symbrg.ensembles.experiment import preset, run_shell_experiment, summary
    overrides = {k: getattr(ns, k) for k in OPTIONS if k not in ("out", "resume", "preset")
                 and getattr(ns, k) is not None}
    if ns.afresh:
        overrides["cumulative"] = False
    client = None
    try:
        cfg = preset(ns.preset, **overrides)
        if ns.scheduler is not None or os.environ.get("DASK_SCHEDULER_ADDRESS", "").strip():
            from symbrg.kernels.chunked import client_from
            client = client_from(ns.scheduler)
        res = run_shell_experiment(cfg, ns.out, resume=ns.resume, force=ns.force,
                                   figures=not ns.no_figures,
                                   progress=(lambda line: None) if progress.quiet(ns) else None,
                                   bar=progress.enabled(ns), client=client)
    except SymbrgError as exc:
        if exc.argument is not None:
            exc.argument = {**OPTIONS, **CLUSTER}.get(exc.argument, exc.argument)
        raise
    finally:
        if client is not None:
            client.close()
    print(f"{res['preset']}: {res['members_kept']}/{res['members']} members, trained test MSE "
          f"median {res['mse_trained_median']:.4g}, mean {res['mse_trained']:.4g}; {summary(res)}; "
          f"results in {ns.out}/results.json")
    return 0


def register(commands, derive) -> None:
    sub = command_group(commands, "experiment", help="numerical experiments on trained ensembles",
                        description="Numerical experiments on trained network ensembles.",
                        dest="experiment", metavar="EXPERIMENT",
                        epilog="examples:\n  symbrg experiment shell --preset paper --out runs/paper\n")
    p = sub.add_parser("shell", help="information-shell renormalization of a trained ensemble "
                       "(arXiv:2405.17538 §5)",
                       description="Train an ensemble, compute each member's Fisher metric on a Fisher "
                       "set, resample the sloppy parameters for every cutoff Λ, and measure the test "
                       "loss, predictive variance and the critical cutoff Λ_C.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="paper", choices=Names(PRESET_NAMES), help="'paper' (the authors' set-up, the default) or 'cosnet'")
    p.add_argument("--members", type=int, help="ensemble size (preset: 100)")
    p.add_argument("--fisher-set", type=int, dest="fisher_set",
                   help="number of Fisher inputs (paper preset: 10, as the authors)")
    p.add_argument("--seed", type=int, help="seed of data and members (default 0)")
    p.add_argument("--epochs", type=int, help="training epochs (paper preset: 1000)")
    p.add_argument("--block", type=int, help="members trained together and saved as one block")
    p.add_argument("--criterion", choices=Names(CRITERION_NAMES), help="'diagonal' (the paper's numerics) or 'eigen'")
    p.add_argument("--mode", choices=Names(MODE_NAMES), help="'resample' (from the prior), 'zero' or 'marginalize'")
    p.add_argument("--afresh", action="store_true", help="redraw the sloppy parameters at every "
                   "cutoff (default: cumulative, as the authors)")
    p.add_argument("--rtol", type=float, help="relative tolerance defining Λ_C (default 0.05)")
    p.add_argument("--data", choices=("fresh", "shared"),
                   help="'fresh' (default): each member draws its own training, test and Fisher sets; "
                        "'shared': one set for all members")
    p.add_argument("--statistic", choices=("median", "mean"),
                   help="curve of the test MSE that defines Λ_C (default: median)")
    p.add_argument("--bootstrap", type=int, help="bootstrap resamples of the intervals (default 2000)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out, or extend "
                   "a finished one (a larger --members; other statistics)")
    p.add_argument("--force", action="store_true", help="overwrite an existing run in --out")
    p.add_argument("--no-figures", action="store_true", dest="no_figures", help="skip the PNG figures")
    p.add_argument("--scheduler", metavar="ADDRESS", help="train the member blocks on the dask.distributed "
                   "cluster at ADDRESS (e.g. tcp://head:8786; default $DASK_SCHEDULER_ADDRESS, else here)")
    p.set_defaults(func=run_shell)
