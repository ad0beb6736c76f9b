"""``symbrg experiment shell``: train an ensemble and renormalize it shell by shell (results + figures)."""
from __future__ import annotations

import argparse

from . import command_group

EPILOG = """examples:
  symbrg experiment shell --preset paper --out runs/paper
  symbrg experiment shell --preset paper --members 200 --fisher-set 1000 --seed 1 --out runs/paper-f1000
  symbrg experiment shell --preset paper --out runs/paper --resume      # continue an interrupted run
  symbrg experiment shell --preset cosnet --members 50 --out runs/cosnet --force

writes DIR/config.json, DIR/blocks/block_*.npz (as member blocks finish), DIR/results.json
(lambdas, mse_mean, mse_std, fraction_resampled, lambda_c, predictive mean/variance, ...) and the
figures mse_vs_lambda.png, fisher_spectrum.png, outputs_at_test_point.png, predictive_variance.png.
Progress goes to stderr.
"""


def run_shell(ns: argparse.Namespace) -> int:
    from ..experiment import preset, run_shell_experiment
    overrides = {k: v for k, v in {
        "members": ns.members, "fisher_set": ns.fisher_set, "seed": ns.seed, "epochs": ns.epochs,
        "block": ns.block, "criterion": ns.criterion, "mode": ns.mode, "rtol": ns.rtol}.items()
        if v is not None}
    if ns.afresh:
        overrides["cumulative"] = False
    cfg = preset(ns.preset, **overrides)
    res = run_shell_experiment(cfg, ns.out, resume=ns.resume, force=ns.force,
                               figures=not ns.no_figures)
    lam_c = res["lambda_c"]
    print(f"{res['preset']}: {res['members_kept']}/{res['members']} members, trained test MSE "
          f"{res['mse_trained']:.4g}, Λ_C = {'none' if lam_c is None else f'{lam_c:g}'}; "
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
    p.add_argument("--preset", required=True, help="'paper' (the authors' set-up) or 'cosnet'")
    p.add_argument("--members", type=int, help="ensemble size (preset: 100)")
    p.add_argument("--fisher-set", type=int, dest="fisher_set",
                   help="number of Fisher inputs (paper preset: 10, as the authors)")
    p.add_argument("--seed", type=int, help="seed of data and members (default 0)")
    p.add_argument("--epochs", type=int, help="training epochs (paper preset: 1000)")
    p.add_argument("--block", type=int, help="members trained together and saved as one block")
    p.add_argument("--criterion", help="'diagonal' (the paper's numerics) or 'eigen'")
    p.add_argument("--mode", help="'resample' (from the prior), 'zero' or 'marginalize'")
    p.add_argument("--afresh", action="store_true", help="redraw the sloppy parameters at every "
                   "cutoff (default: cumulative, as the authors)")
    p.add_argument("--rtol", type=float, help="relative tolerance defining Λ_C (default 0.05)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    p.add_argument("--force", action="store_true", help="overwrite an existing run in --out")
    p.add_argument("--no-figures", action="store_true", dest="no_figures", help="skip the PNG figures")
    p.set_defaults(func=run_shell)
