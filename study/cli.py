"""``vae-study``: run a study, validate a spec, export results, show a study's status,
write its report, deliver tracking that could not reach MLflow (``sync``).

Exit codes (:class:`ExitCode`):

* 0: every trial ended by design: completed, failed (diverged) or pruned;
* 1: some trials errored (crashed after their retries), listed in the summary; for
  ``sync``, something is still undelivered;
* 2: bad input: an invalid spec, a missing or malformed file, a study folder in use, or
  what the preflight found (a storage, tracking server or cluster that cannot serve
  the study), with an error naming the field or file, and nothing written;
* 130: interrupted (Ctrl+C): the study stopped and can be resumed.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import textwrap
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING

from study.errors import SpecError
from study.folder import RecordError, StudyFolder

if TYPE_CHECKING:
    from study.runner import Output, StudyOutcome
    from study.spec import StudySpec


class ExitCode(IntEnum):
    """What ``vae-study`` exits with (see the module docstring)."""

    OK = 0
    TRIALS_ERRORED = 1
    BAD_INPUT = 2
    INTERRUPTED = 130


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Examples keep their lines; an option's help shows its default where it has one worth showing.

    argparse's own ArgumentDefaultsHelpFormatter would also print ``(default: None)`` and
    ``(default: False)`` for every flag and unset option, which says nothing."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if "%(default)" in text or default in (None, False, [], argparse.SUPPRESS) or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


#: Each command's description and examples (its ``--help``), written once here; docs/reference/cli.md
#: is generated from the parser.
_COMMANDS: dict[str, tuple[str, str, str]] = {
    "run": (
        "run a study from a YAML spec",
        "Run a study: validate SPEC, check what only connecting can tell (storage, tracking server, GPUs, "
        "cluster), then train its trials on a local Ray (default) or a cluster, print one line per trial event, "
        "and end with results.parquet, report.html and the Pareto plot in the study folder.",
        "vae-study run examples/default.yaml\n"
        "vae-study run examples/default.yaml --study-dir studies/beta-sweep --num-trials 32 --quiet\n"
        "vae-study run examples/cluster_gpu.yaml --study-dir /mnt/studies/locatello-gpu --address auto",
    ),
    "resume": (
        "finish a stopped study, or one whose driver died",
        "Go on with a study: keep the trials that ended, run each interrupted trial (or pack) again from its "
        "newest checkpoint into its own MLflow run, and ask the search only for the trials still missing, so "
        "the study ends with exactly its spec's trials.",
        "vae-study resume studies/default\n"
        "vae-study resume studies/default --take-over     # the driver died and left its study.lock",
    ),
    "submit": (
        "run a study as a Ray Job on a cluster (its driver runs there; this returns at once)",
        "Submit a study to a Ray cluster through its dashboard's job API: the driver runs on the head and "
        "outlives this shell.  Checked before submitting: the spec, an absolute study folder on the cluster's "
        "shared filesystem, the dashboard and its token, shared storage on a multi-node cluster.",
        "export RAY_API_SERVER_ADDRESS=http://127.0.0.1:8265   # an SSH tunnel to the head's dashboard\n"
        "vae-study submit examples/cluster_gpu.yaml --study-dir /mnt/studies/locatello-gpu\n"
        "vae-study submit --resume /mnt/studies/locatello-gpu --take-over",
    ),
    "jobs": (
        "the studies submitted to a cluster: state, trials done, who, since when",
        "List every study submitted to the cluster with vae-study, by anyone: job id, study, state (with the "
        "driver's exit code when it failed), trials done out of the total, start time, user and folder.",
        "vae-study jobs --address http://127.0.0.1:8265",
    ),
    "logs": (
        "a submitted study's run log",
        "Print a submitted study's run log; with --follow, stream it until the study ends and exit as its "
        "driver did (0, 1, 2, or 130 when it was stopped).",
        "vae-study logs locatello-gpu --follow           # a study's name means its latest job\n"
        "vae-study logs locatello-gpu-20261202-111448",
    ),
    "stop": (
        "stop a submitted study gracefully (it stays resumable)",
        "Stop a submitted study as Ctrl+C would: running trials checkpoint, the study's MLflow run ends KILLED, "
        "and the job ends STOPPED; 'vae-study submit --resume DIR' goes on with it.  Exit 1 if the job still "
        "runs after the wait.",
        "vae-study stop locatello-gpu\nvae-study stop locatello-gpu-20261202-111448 --no-wait",
    ),
    "validate": (
        "check a spec and print it resolved",
        "Validate SPEC as 'run' would (types, bounds, the weights each variant takes, schedules, objectives, "
        "data files) and print it with every default filled in, as JSON; exit 2 naming the field otherwise.",
        "vae-study validate examples/default.yaml",
    ),
    "export": (
        "write results.parquet and history.parquet of a study folder",
        "(Re)write the study's results.parquet (one row per trial) and history.parquet (every logged term) "
        "from what its trials wrote; an old study's file is rewritten in the current schema.",
        "vae-study export studies/default",
    ),
    "status": (
        "trials done / running / failed / pending, best so far, ETA",
        "Show a study's progress from its folder: trials completed, running, failed and pending, the best "
        "trial so far on each objective, and an ETA from the completed trials' mean duration.",
        "vae-study status studies/default",
    ),
    "sync": (
        "deliver tracking that trials could not send to MLflow",
        "Send the metrics and tags that trials spilled to undelivered_tracking.jsonl while the MLflow server "
        "was away; exit 1 while some are still undelivered.",
        "vae-study sync studies/default --timeout 120",
    ),
    "report": (
        "write report.html (figures and tables) of a study folder",
        "Write the study's self-contained report.html: the Pareto front, the front trials' reconstructions, "
        "traversals and curves, objectives against each weight, spread across seeds, correlations and UDR.",
        "vae-study report studies/default",
    ),
}

_STUDY_DIR_HELP = "the study folder (the one 'run' wrote)"


def _command_parser(commands: argparse._SubParsersAction, name: str) -> argparse.ArgumentParser:
    summary, description, examples = _COMMANDS[name]
    epilog = "examples:\n" + "\n".join(f"  {line}" for line in examples.splitlines())
    return commands.add_parser(
        name, help=summary, description=textwrap.fill(description, 88), epilog=epilog, formatter_class=_HelpFormatter
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vae-study",
        description="Hyperparameter studies of disentangling VAEs: Ray Tune runs the trials, Optuna searches the "
        "weights and their schedules, MLflow records every term, and each study ends with a Pareto front.",
        epilog="'vae-study COMMAND --help' describes each command, with examples.  Exit codes: 0 every trial ended "
        "by design; 1 some trials errored; 2 bad input (nothing written); 130 interrupted (resumable).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = _command_parser(commands, "run")
    run.add_argument("spec", type=Path, metavar="SPEC", help="the study's YAML spec (see examples/)")
    run.add_argument("--study-dir", type=Path, help="study folder (default: spec's study_dir, else studies/<name>)")
    run.add_argument(
        "--address", help="Ray cluster address (auto, ray://host:10001); default RAY_ADDRESS or a local Ray"
    )
    run.add_argument("--num-trials", type=int, help="override search.num_trials")
    run.add_argument("--dashboard", action="store_true", help="start Ray's dashboard with a local Ray (127.0.0.1:8265)")
    _output_options(run)

    resume = _command_parser(commands, "resume")
    resume.add_argument("study_dir", type=Path, metavar="STUDY_DIR", help=_STUDY_DIR_HELP)
    resume.add_argument("--address", help="Ray cluster address; default RAY_ADDRESS or a local Ray")
    resume.add_argument(
        "--take-over", action="store_true", help="claim a folder whose run died (its study.lock names a dead process)"
    )
    resume.add_argument("--dashboard", action="store_true", help="start Ray's dashboard with a local Ray")
    _output_options(resume)

    submit = _command_parser(commands, "submit")
    submit.add_argument("spec", type=Path, nargs="?", metavar="SPEC", help="the study's spec (or --resume STUDY_DIR)")
    submit.add_argument("--resume", metavar="STUDY_DIR", help="go on with a stopped or crashed study, as a job")
    submit.add_argument(
        "--take-over", action="store_true",
        help="with --resume: claim a folder whose driver died (its study.lock names a dead process or another host)",
    )  # fmt: skip
    submit.add_argument("--study-dir", help="the study folder: an absolute path on the cluster's shared filesystem")
    submit.add_argument("--num-trials", type=int, help="override search.num_trials")
    submit.add_argument(
        "--env", action="append", default=[], metavar="NAME",
        help="set this variable of your environment in the job's too (repeatable; visible in the job's record)",
    )  # fmt: skip
    submit.add_argument(
        "--progress-every", type=float, default=30.0, metavar="S", help="seconds between progress lines"
    )
    _address_option(submit)

    jobs = _command_parser(commands, "jobs")
    _address_option(jobs)

    logs = _command_parser(commands, "logs")
    logs.add_argument("job", metavar="JOB", help="job id, or a study's name (its latest job)")
    logs.add_argument("--follow", "-f", action="store_true", help="print as it grows, until the study ends")
    _address_option(logs)

    stop = _command_parser(commands, "stop")
    stop.add_argument("job", metavar="JOB", help="job id, or a study's name (its latest job)")
    stop.add_argument("--no-wait", action="store_true", help="return once asked; do not wait for the study to stop")
    _address_option(stop)

    validate = _command_parser(commands, "validate")
    validate.add_argument("spec", type=Path, metavar="SPEC", help="the YAML spec to check")

    for name in ("export", "status", "report"):
        _command_parser(commands, name).add_argument("study_dir", type=Path, metavar="STUDY_DIR", help=_STUDY_DIR_HELP)

    sync = _command_parser(commands, "sync")
    sync.add_argument("study_dir", type=Path, metavar="STUDY_DIR", help=_STUDY_DIR_HELP)
    sync.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the server per trial")
    return parser


def _address_option(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--address", help="the cluster's dashboard, e.g. http://127.0.0.1:8265 (default RAY_API_SERVER_ADDRESS)"
    )


def _output_options(command: argparse.ArgumentParser) -> None:
    loudness = command.add_mutually_exclusive_group()
    loudness.add_argument("--quiet", action="store_true", help="print only failures and the closing summary")
    loudness.add_argument(
        "--verbose", action="store_true", help="also print Ray's own output (its status table, the trials' logs)"
    )
    command.add_argument(
        "--progress-every", type=float, default=30.0, metavar="S", help="seconds between progress lines"
    )


def _output(args: argparse.Namespace) -> Output:
    if args.progress_every <= 0:
        raise SpecError("--progress-every: must be > 0 seconds")
    from study.runner import Output

    return Output(quiet=args.quiet, verbose=args.verbose, every=args.progress_every)


def _command() -> str:
    return shlex.join(["vae-study", *sys.argv[1:]])


def _load_spec(args: argparse.Namespace) -> StudySpec:
    """The spec with ``--num-trials`` applied."""
    spec = _load_spec_file(args.spec)  # the trainers' registries (torch): only commands that read a spec
    if args.num_trials is not None:
        if args.num_trials < 1:
            raise SpecError("--num-trials: must be >= 1")
        if spec.search.mode == "grid":
            raise SpecError("--num-trials: a grid study runs every combination of its choices and seeds")
        spec.search.num_trials = args.num_trials
    return spec


def _load_spec_file(path: Path) -> StudySpec:
    from study.spec import load_spec

    return load_spec(path)


def _run(args: argparse.Namespace) -> int:
    spec = _load_spec(args)
    study_dir = args.study_dir or Path(spec.study_dir or Path("studies") / spec.name)
    default = StudyFolder(study_dir)
    if args.study_dir is None and default.spec_json.exists() and not default.lock_file.exists():
        raise SpecError(_default_folder_used(args.spec, spec.name, study_dir))
    output = _output(args)

    from study.runner import run_study  # Ray and MLflow load only when a study runs
    from study.spec import read_spec_text

    text = read_spec_text(args.spec)
    outcome = run_study(
        spec, study_dir, args.address, spec_text=text, command=_command(), dashboard=args.dashboard, output=output
    )
    return _print_outcome(spec.name, outcome)


def _default_folder_used(spec_path: Path, name: str, study_dir: Path) -> str:
    """What to do when a spec's default study folder already holds a study (it is never overwritten)."""
    where, spec_arg = shlex.quote(str(study_dir)), shlex.quote(str(spec_path))
    return (
        f"{study_dir}: this spec's study folder already holds the study {name!r} (finished trials are never "
        f"overwritten). Either\n"
        f"  go on with it:     vae-study resume {where}\n"
        f"  or start another:  vae-study run {spec_arg} --study-dir {shlex.quote(str(study_dir) + '-2')}"
        f"   (or give the spec another `name:`)"
    )


def _print_outcome(name: str, outcome: StudyOutcome) -> int:
    """The closing summary; returns the exit code it stands for."""
    counts = ", ".join(f"{n} {status}" for status, n in sorted(outcome.counts.items())) or "no trials"
    if outcome.interrupted:
        code, headline = ExitCode.INTERRUPTED, f"Study {name!r} stopped ({counts} so far)"
    elif outcome.counts.get("error"):
        code, headline = ExitCode.TRIALS_ERRORED, f"Study {name!r} done, with errors: {counts}"
    else:
        code, headline = ExitCode.OK, f"Study {name!r} done: {counts}"
    folder = StudyFolder(outcome.study_dir)
    where = shlex.quote(relative(outcome.study_dir))
    lines = [f"\n{headline}.", f"  study folder : {relative(outcome.study_dir)}"]
    lines.append(f"  results      : {relative(outcome.results)} (pandas.read_parquet)")
    if folder.report.exists():
        lines.append(f"  report       : {relative(folder.report)}")
    if outcome.pareto:
        lines.append(f"  pareto front : {relative(outcome.pareto)}")
    # MLflow 3's UI opens experiments as GenAI or model training per browser; this address asks for the runs table.
    runs_page = f"/#/experiments/{outcome.experiment_id}?workflowType=machine_learning" if outcome.experiment_id else ""
    if outcome.tracking_uri.startswith(("http://", "https://")):
        lines.append(f"  browse runs  : {outcome.tracking_uri.rstrip('/')}{runs_page}")
    else:
        store = outcome.tracking_uri.removeprefix("sqlite:///")
        uri = f"sqlite:///{relative(Path(store))}" if outcome.tracking_uri.startswith("sqlite:///") else store
        lines.append(f"  browse runs  : mlflow ui --backend-store-uri {uri}")
        lines.append(f"                 then http://127.0.0.1:5000{runs_page}")
    if code == ExitCode.TRIALS_ERRORED:
        lines.append(f"  errors       : failure_reason in {outcome.results.name}, or vae-study status {where}")
    lines.append(f"  status       : vae-study status {where}")
    if code == ExitCode.INTERRUPTED:
        lines.append(f"  resume with  : vae-study resume {where}")
    print("\n".join(lines), flush=True)
    return code


def relative(path: Path) -> str:
    """``path`` relative to the working directory where it lies below it (shorter lines)."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _resume(args: argparse.Namespace) -> int:
    from study.resume import resume_study

    outcome = resume_study(args.study_dir, args.address, args.take_over, _command(), args.dashboard, _output(args))
    return _print_outcome(outcome.study_dir.name, outcome)


def _export(args: argparse.Namespace) -> int:
    folder = StudyFolder(args.study_dir)
    if not folder.trials_dir.is_dir():
        raise SpecError(f"{args.study_dir}: not a study folder (no {folder.trials_dir.name}/ inside)")
    from study.export import export_results

    print(export_results(args.study_dir))
    return 0


def _submit(args: argparse.Namespace) -> int:
    """``vae-study submit``: checks what it can from here, submits, prints the job and how to follow it."""
    from study import jobs

    if (args.spec is None) == (args.resume is None):
        raise SpecError("submit: give a SPEC to start a study, or --resume STUDY_DIR to go on with one")
    if args.progress_every <= 0:
        raise SpecError("--progress-every: must be > 0 seconds")
    if args.resume is not None:
        if args.study_dir is not None or args.num_trials is not None:
            raise SpecError("--resume: a resumed study keeps its folder and its number of trials")
        study_dir = _cluster_path(args.resume, "--resume")
        folder = StudyFolder(study_dir)
        spec = _load_spec_file(folder.spec_yaml) if folder.spec_yaml.is_file() else None  # a share mounted here
        name = spec.name if spec else Path(study_dir).name
        arguments = ["resume", study_dir] + (["--take-over"] if args.take_over else [])
    else:
        if args.take_over:
            raise SpecError("--take-over: only with --resume")
        spec = _load_spec(args)
        _cluster_paths(spec)
        study_dir = _cluster_path(args.study_dir or spec.study_dir, "--study-dir" if args.study_dir else "study_dir")
        if StudyFolder(study_dir).spec_json.exists():
            raise SpecError(f"--study-dir: {study_dir} holds a study; go on with it: vae-study submit --resume DIR")
        name = spec.name
        arguments = ["run", jobs.JOB_SPEC, "--study-dir", study_dir]
        if args.num_trials is not None:
            arguments += ["--num-trials", str(args.num_trials)]
    arguments += ["--progress-every", str(args.progress_every)]
    client = jobs.connect(args.address)
    note = jobs.check_submission(client, spec, study_dir)
    if note:
        print(f"note: {note}", file=sys.stderr)
    total = jobs.study_total(spec) if spec is not None and args.resume is None else None
    job_id = jobs.submit(
        client, arguments, name=name, study_dir=study_dir, total=total,
        spec_file=args.spec if args.resume is None else None, forward_env=args.env,
    )  # fmt: skip
    address = shlex.quote(jobs.dashboard_address(args.address))
    print(f"submitted {job_id}: study {name!r}" + (f", {total} trials" if total else ", resumed"))
    print(f"  study folder : {study_dir} (on the cluster)")
    print(f"  follow       : vae-study logs {job_id} --follow --address {address}")
    print(f"  list         : vae-study jobs --address {address}")
    print(f"  stop         : vae-study stop {job_id} --address {address}")
    return ExitCode.OK


def _job_command(args: argparse.Namespace) -> int:
    """``submit``, ``jobs``, ``logs``, ``stop``: a dashboard that fails part-way is exit 2 with its
    cause (not a traceback); Ctrl+C leaves the cluster's studies as they are."""
    from study import jobs

    command = {"submit": _submit, "jobs": _jobs, "logs": _logs, "stop": _stop}[args.command]
    try:
        return command(args)
    except jobs.network_errors() as error:
        address = jobs.dashboard_address(args.address)
        print(f"error: --address: Ray's job API at {address} failed: {jobs.explain(error)}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    except KeyboardInterrupt:
        print("\ninterrupted; the cluster's studies are as they were (vae-study jobs lists them)", file=sys.stderr)
        return ExitCode.INTERRUPTED


def _cluster_path(path: str | None, option: str) -> str:
    if not path or not Path(path).is_absolute():
        raise SpecError(
            f"{option}: a submitted study's folder is a path on the cluster's shared filesystem, given absolute "
            f"(e.g. --study-dir /shared/studies/NAME), not {path!r}"
        )
    return str(path)


def _cluster_paths(spec: StudySpec) -> None:
    """A spec's own paths resolve on the head, inside the job's temporary working_dir: refuse relative ones."""
    path = spec.storage.path
    if path and "://" not in path and not Path(path).is_absolute():
        raise SpecError(f"storage.path: {path!r} would lie in the job's temporary folder on the head; give it absolute")
    uri = spec.tracking.uri or ""
    local = uri.removeprefix("sqlite:///") if uri.startswith("sqlite:///") else uri if "://" not in uri else ""
    if local and not Path(local).is_absolute():
        raise SpecError(f"tracking.uri: {uri!r} would lie in the job's temporary folder on the head; give it absolute")


def _jobs(args: argparse.Namespace) -> int:
    from study import jobs

    print(jobs.jobs_table(jobs.study_jobs(jobs.connect(args.address))))
    return ExitCode.OK


def _logs(args: argparse.Namespace) -> int:
    """Prints the study's log; with ``--follow``, exits as the study's driver did (0, 1, 2, 130)."""
    from study import jobs

    client = jobs.connect(args.address)
    job = jobs.find_job(client, args.job)
    if not args.follow:
        print(client.get_job_logs(job.job_id), end="")
        return ExitCode.OK
    try:
        jobs.follow_logs(client, job.job_id)
    except KeyboardInterrupt:
        print(f"\nstopped following; the study runs on (vae-study stop {job.job_id} stops it)", file=sys.stderr)
        return ExitCode.INTERRUPTED
    ended = jobs.find_job(client, job.job_id)
    print(f"job {ended.job_id}: {ended.outcome}")
    if ended.state == "STOPPED":
        return ExitCode.INTERRUPTED
    if ended.state == "SUCCEEDED":
        return ExitCode.OK
    return ended.exit_code if ended.exit_code in (1, 2, 130) else ExitCode.TRIALS_ERRORED


def _stop(args: argparse.Namespace) -> int:
    from study import jobs

    client = jobs.connect(args.address)
    job = jobs.find_job(client, args.job)
    resume = f"vae-study submit --resume {shlex.quote(job.study_dir)} --address {jobs.dashboard_address(args.address)}"
    if job.ended:
        print(f"job {job.job_id} has already ended: {job.outcome}")
        return ExitCode.OK
    client.stop_job(job.job_id)
    if args.no_wait:
        print(f"stopping {job.job_id}: its running trials checkpoint first; resume with: {resume}")
        return ExitCode.OK
    print(f"stopping {job.job_id}: its running trials checkpoint first (at most {jobs.STOP_WAIT_SECONDS} s) ...")
    jobs.wait_until_ended(client, job.job_id, jobs.STOP_WAIT_SECONDS + 30)
    ended = jobs.find_job(client, job.job_id)
    if not ended.ended:
        waited = jobs.STOP_WAIT_SECONDS + 30
        print(f"error: job {ended.job_id} is still {ended.state} after {waited} s", file=sys.stderr)
        return ExitCode.TRIALS_ERRORED
    print(f"job {ended.job_id}: {ended.outcome}; resume with: {resume}")
    return ExitCode.OK


def _status(args: argparse.Namespace) -> int:
    from study.status import format_status, study_status

    status = study_status(args.study_dir)
    spec = StudyFolder(args.study_dir).read_spec()
    objectives = {o["name"]: o["mode"] for o in spec.get("objectives", [])}
    print(format_status(args.study_dir, status, objectives))
    return 0


def _report(args: argparse.Namespace) -> int:
    results = StudyFolder(args.study_dir).results
    if not results.is_file():
        raise SpecError(f"{args.study_dir}: no {results.name} (run `vae-study export` first)")
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
    return ExitCode.TRIALS_ERRORED if left else ExitCode.OK


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "run":
            return _run(args)
        if args.command == "validate":
            spec = _load_spec_file(args.spec)
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
        if args.command in ("submit", "jobs", "logs", "stop"):
            return _job_command(args)
        return _export(args)
    except (SpecError, RecordError) as error:
        print(f"error: {error}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    except KeyboardInterrupt:
        print("\nstopped at once (second Ctrl+C); finished trials are kept; vae-study resume goes on", file=sys.stderr)
        return ExitCode.INTERRUPTED


def entry() -> None:
    """The ``vae-study`` command: :func:`main`, then a quick exit after a study.

    A process that ran a study spends ≈ 4 s in the interpreter's teardown after Ray has
    shut down (its native threads and the modules of torch, Ray and MLflow); everything
    the study wrote is on disk and in MLflow by then, so it leaves at once instead.
    """
    code = main()
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        sys.exit(code)
    ray.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(int(code))


if __name__ == "__main__":
    entry()
