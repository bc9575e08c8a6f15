"""The `scaletune` command: thin subcommands over the packages' functions."""

from __future__ import annotations

import argparse
import signal
import sys

from rich.console import Console

from scaletune.trainer.errors import ConfigError, ScaletuneError

EXIT_BAD_INPUT = 2


def _errors(console: Console, e: ScaletuneError) -> int:
    """Print any error of ours as its lines alone (no traceback); exit code 2."""
    lines = getattr(e, "errors", None) or [str(e)]
    source = getattr(e, "source", None) or "scaletune"
    console.print(f"[red]{len(lines)} error(s)[/] in {source}:", highlight=False, soft_wrap=True)
    for line in lines:
        console.print(f"  {line}", highlight=False, markup=False, soft_wrap=True)
    return EXIT_BAD_INPUT


def cmd_run(args: argparse.Namespace, console: Console) -> int:
    from scaletune.search.config import load_study
    from scaletune.search.runner import best_summary, dumps, run_study

    cfg = load_study(args.study)
    try:
        study = run_study(cfg, console)
    except KeyboardInterrupt as e:
        # The shell's convention: 128 + the signal (130 for Ctrl-C, 143 for SIGTERM).
        return 128 + getattr(e, "signum", signal.SIGINT)
    best = best_summary(study)
    if best is None:
        console.print("[red]no trial finished[/]")
        return 1
    console.print(f"[bold green]best trial {best['number']}[/]: val loss {best['value']:.4f}")
    console.print(dumps({"params": best["params"], "derived": best["derived"]}), markup=False)
    return 0


def cmd_validate(args: argparse.Namespace, console: Console) -> int:
    from scaletune.search.config import load_study
    from scaletune.trainer.config import load_train_config, load_yaml

    status = 0
    for path in args.studies:
        try:
            raw = load_yaml(path)
            # A training config (for `scaletune train`) has a token budget and no trials.
            if "tokens" in raw and not {"n_trials", "tokens_per_trial"} & raw.keys():
                load_train_config(path)
                console.print(f"{path}: ok (training config)", highlight=False)
                continue
            load_study(path)
            console.print(f"{path}: ok", highlight=False)
        except ConfigError as e:
            status = _errors(console, e)
    return status


def cmd_priors(args: argparse.Namespace, console: Console) -> int:
    from scaletune.heuristics.priors import print_priors
    from scaletune.search.config import load_study
    from scaletune.search.space import study_priors
    from scaletune.trainer.data import prepare_data

    cfg = load_study(args.study)
    data = prepare_data(cfg.data, cfg.model.block_size)
    priors = study_priors(cfg, data.vocab_size, data.n_train_tokens)
    print_priors(priors, json_output=args.json)
    return 0


def cmd_dashboard(args: argparse.Namespace, console: Console) -> int:
    from scaletune.search.dashboard import serve

    return serve(args.study, host=args.host, port=args.port, allow_writes=args.allow_writes,
                 console=console)


def cmd_train(args: argparse.Namespace, console: Console) -> int:
    from scaletune.trainer.cli import train_main

    if args.nproc_per_node > 1:
        from scaletune.trainer.cli import launch

        return launch(args.config, args.nproc_per_node, resume=args.resume,
                      overwrite=args.overwrite)
    return train_main(args.config, resume=args.resume, overwrite=args.overwrite)


def cmd_fit(args: argparse.Namespace, console: Console) -> int:
    from scaletune.search.config import load_study
    from scaletune.search.fit import fit_from_studies

    laws = fit_from_studies([load_study(p) for p in args.studies], scale_kind=args.by)
    laws.save(args.output)
    for fit in (laws.lr, laws.tau, laws.batch_size):
        if fit is not None:
            console.print(fit.describe(), highlight=False)
    console.print(f"wrote {args.output}; use it with  priors: {{laws: fitted, fitted_file: "
                  f"{args.output}}}", highlight=False, markup=False)
    return 0


def _tokens(text: str) -> int:
    """A token count as argparse sees it: 2e9, 2_000_000_000 or 2000000000."""
    from scaletune.trainer.config import parse_number

    value = parse_number(text)
    if isinstance(value, str):
        raise argparse.ArgumentTypeError(f"expected a number of tokens, got {text!r}")
    if not (value >= 1 and float(value).is_integer()):
        raise argparse.ArgumentTypeError(f"expected a whole number of tokens >= 1, got {text!r}")
    return int(value)


def cmd_export(args: argparse.Namespace, console: Console) -> int:
    from scaletune.search.config import load_study
    from scaletune.search.export import export_study, parse_model_overrides, summary_lines

    cfg = load_study(args.study)
    done = export_study(
        cfg, args.output, source=args.study, trial=args.trial, tokens=args.tokens,
        model=parse_model_overrides(args.model), max_batch_size=args.max_batch_size,
    )
    for line in summary_lines(done.config.provenance or {}):
        console.print(line, highlight=False, markup=False, soft_wrap=True)
    console.print(f"wrote {done.path}", highlight=False, markup=False)
    console.print(f"train it with:  scaletune train {done.path}", highlight=False, markup=False)
    return 0


def cmd_report(args: argparse.Namespace, console: Console) -> int:
    from scaletune.search.config import load_study
    from scaletune.search.report import make_report

    cfg = load_study(args.study)
    out = args.output or cfg.folder / "report"
    make_report(cfg, out, source=args.study, console=console)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scaletune",
        description="Hyperparameter search for GPT pretraining, seeded by scaling laws.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run or resume a study")
    p.add_argument("study", help="study YAML")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("validate", help="check study (or training) files; every error at once")
    p.add_argument("studies", nargs="+", help="study YAML files")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("priors", help="print the scaling-law priors of a study and their sources")
    p.add_argument("study", help="study YAML")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_priors)

    from scaletune.search.dashboard import tcp_port

    p = sub.add_parser("dashboard", help="serve optuna-dashboard for a study's storage (read-only)")
    p.add_argument("study", help="study YAML")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1); anyone who can reach it reads "
                        "every trial, config and user attr of the study, with no login")
    p.add_argument("--port", type=tcp_port, default=8080, help="port 1-65535 (default 8080)")
    p.add_argument("--allow-writes", action="store_true",
                   help="let the dashboard change the storage: notes, rename and delete studies, "
                        "tell trials, edit user attrs (default read-only)")
    p.set_defaults(func=cmd_dashboard)

    p = sub.add_parser("train", help="one training run from a training YAML")
    p.add_argument("config", help="training YAML (see trainer/config.py)")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    p.add_argument("--overwrite", action="store_true",
                   help="train from scratch even if out_dir already holds a run's checkpoint")
    p.add_argument("--nproc-per-node", type=int, default=1, metavar="N",
                   help="data-parallel processes on this machine (torchrun DDP; one per GPU)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("fit", help="fit lr, tau and batch-size laws to finished studies")
    p.add_argument("studies", nargs="+", help="study YAML files at two or more scales")
    p.add_argument("--by", choices=["tokens", "params"], default="tokens",
                   help="the scale the laws are a function of (default tokens per trial)")
    p.add_argument("-o", "--output", required=True, help="JSON file to write")
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser("export", help="write the best trial as the training config of a final run")
    p.add_argument("study", help="study YAML")
    p.add_argument("--trial", type=int, help="export this trial number instead of the best")
    p.add_argument("--tokens", type=_tokens,
                   help="train this many tokens (e.g. 2e9); lr, batch and weight decay follow "
                        "the scaling laws")
    p.add_argument("--model", action="append", default=[], metavar="KEY=VALUE",
                   help="change a model field, e.g. --model n_embd=512 --model n_layer=12")
    p.add_argument("--max-batch-size", type=int, help="cap on the transferred batch (sequences)")
    p.add_argument("-o", "--output", required=True, help="training YAML to write")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("report", help="trials table, plots and compute summary of a study")
    p.add_argument("study", help="study YAML")
    p.add_argument("-o", "--output", help="folder to write (default <study folder>/report)")
    p.set_defaults(func=cmd_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = Console(stderr=False)
    try:
        return args.func(args, console)
    except ScaletuneError as e:
        return _errors(console, e)


if __name__ == "__main__":
    sys.exit(main())
