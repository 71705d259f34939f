"""``vae-study``: run a study, validate a spec, export results, show a study's status,
write its report, deliver tracking that could not reach MLflow (``sync``).

Exit codes: 0 success; 1 `sync` left something undelivered; 2 bad input (an invalid spec, a missing file, a study
folder in use), with an error naming the field or file and nothing written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from study.folder import RecordError, StudyFolder
from study.spec import SpecError, load_spec, read_spec_text

if TYPE_CHECKING:
    from study.runner import StudyOutcome

EXIT_BAD_INPUT = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vae-study", description="Hyperparameter studies of disentangling VAEs.")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run a study from a YAML spec")
    run.add_argument("spec", type=Path)
    run.add_argument("--study-dir", type=Path, help="study folder (default: spec's study_dir, else studies/<name>)")
    run.add_argument(
        "--address", help="Ray cluster address (auto, ray://host:10001); default RAY_ADDRESS or a local Ray"
    )
    run.add_argument("--num-trials", type=int, help="override search.num_trials")

    resume = commands.add_parser(
        "resume", help="finish a study whose driver died (kept trials, resumed ones, the rest)"
    )
    resume.add_argument("study_dir", type=Path)
    resume.add_argument("--address", help="Ray cluster address; default RAY_ADDRESS or a local Ray")

    validate = commands.add_parser("validate", help="check a spec and print it resolved")
    validate.add_argument("spec", type=Path)

    export = commands.add_parser("export", help="write results.parquet of a study folder")
    export.add_argument("study_dir", type=Path)

    status = commands.add_parser("status", help="trials done / running / failed / pending, best so far, ETA")
    status.add_argument("study_dir", type=Path)

    sync = commands.add_parser("sync", help="deliver tracking that trials could not send to MLflow")
    sync.add_argument("study_dir", type=Path)
    sync.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the server per trial")

    report = commands.add_parser("report", help="write report.html (figures and tables) of a study folder")
    report.add_argument("study_dir", type=Path)
    return parser


def _run(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec)
    if args.num_trials is not None:
        if args.num_trials < 1:
            raise SpecError("--num-trials: must be >= 1")
        if spec.search.mode == "grid":
            raise SpecError("--num-trials: a grid study runs every combination of its choices and seeds")
        spec.search.num_trials = args.num_trials
    study_dir = args.study_dir or Path(spec.study_dir or Path("studies") / spec.name)

    from study.runner import run_study  # Ray and MLflow load only when a study runs

    outcome = run_study(spec, study_dir, args.address, spec_text=read_spec_text(args.spec))
    _print_outcome(spec.name, outcome)
    return 0


def _print_outcome(name: str, outcome: StudyOutcome) -> None:
    counts = ", ".join(f"{n} {status}" for status, n in sorted(outcome.counts.items())) or "no trials"
    print(f"\nStudy {name!r} done: {counts}.")
    print(f"  study folder : {outcome.study_dir}")
    print(f"  results      : {outcome.results}")
    if outcome.pareto:
        print(f"  pareto front : {outcome.pareto}")
    if outcome.tracking_uri.startswith(("http://", "https://")):
        print(f"  browse runs  : {outcome.tracking_uri}")
    else:
        print(f"  browse runs  : mlflow ui --backend-store-uri {outcome.tracking_uri}")


def _resume(args: argparse.Namespace) -> int:
    from study.resume import resume_study

    outcome = resume_study(args.study_dir, args.address)
    _print_outcome(outcome.study_dir.name, outcome)
    return 0


def _export(args: argparse.Namespace) -> int:
    folder = StudyFolder(args.study_dir)
    if not folder.trials_dir.is_dir():
        raise SpecError(f"{args.study_dir}: not a study folder (no {folder.trials_dir.name}/ inside)")
    from study.export import export_results

    print(export_results(args.study_dir))
    return 0


def _status(args: argparse.Namespace) -> int:
    from study.status import format_status, study_status

    status = study_status(args.study_dir)
    spec = StudyFolder(args.study_dir).read_spec()
    objectives = {o["name"]: o["mode"] for o in spec.get("objectives", [])}
    print(format_status(args.study_dir, status, objectives))
    return 0


def _report(args: argparse.Namespace) -> int:
    if not StudyFolder(args.study_dir).results.is_file():
        raise SpecError(f"{args.study_dir}: no results.parquet (run `vae-study export` first)")
    from analysis.report import write_report

    print(write_report(args.study_dir))
    return 0


def _sync(args: argparse.Namespace) -> int:
    """Replays every trial's spill file; exit 1 while something is still undelivered."""
    folder = StudyFolder(args.study_dir)
    spec = folder.read_spec()
    from study.export import export_results
    from study.tracking import default_tracking_uri, replay_spill

    uri = (spec.get("tracking") or {}).get("uri") or default_tracking_uri(args.study_dir)
    delivered = left = 0
    for trial in folder.trials():
        if not trial.spill_file.exists():
            continue
        done, remaining = replay_spill(uri, trial.spill_file, args.timeout)
        delivered, left = delivered + done, left + remaining
        print(f"{trial.trial_id}: {done} delivered, {remaining} left")
    if folder.results.exists():
        export_results(args.study_dir)  # its undelivered_metrics column
    print(f"{delivered} operations delivered to {uri}; {left} still waiting")
    return 1 if left else 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "run":
            return _run(args)
        if args.command == "validate":
            spec = load_spec(args.spec)
            print(spec.model_dump_json(indent=2))
            return 0
        if args.command == "status":
            return _status(args)
        if args.command == "report":
            return _report(args)
        if args.command == "sync":
            return _sync(args)
        if args.command == "resume":
            return _resume(args)
        return _export(args)
    except (SpecError, RecordError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
