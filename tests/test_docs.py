"""The docs say what the code does: every spec field is described, every spec the docs show
validates, every command they show parses, and every command explains its arguments.

The reference pages are generated from the code by ``docs/gen_reference.py`` at each
``mkdocs build --strict`` (run by ``make test``); these tests check what the generator cannot:
the hand-written pages, the README, the benchmarks' provenance lines and claims the code
contradicts.  All of them run in seconds: nothing here starts Ray or trains.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import shlex
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml

from study.spec import SpecLoader, load_spec, parse_spec

ROOT = Path(__file__).resolve().parents[1]
#: Pages written by hand (the reference pages are generated, not in docs/).
PAGES = sorted([ROOT / "README.md", ROOT / "infra" / "README.md", *(ROOT / "docs").rglob("*.md")])
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


def _generator():
    """docs/gen_reference.py, the mkdocs hook that writes the reference (not a package: loaded by path)."""
    spec = importlib.util.spec_from_file_location("gen_reference", ROOT / "docs" / "gen_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GEN = _generator()


def _blocks(path: Path, languages: tuple[str, ...]) -> list[str]:
    """The fenced code blocks of a Markdown page in these languages."""
    pattern = r"^```(\w*)\n(.*?)^```"
    return [body for lang, body in re.findall(pattern, path.read_text(), re.M | re.S) if lang in languages]


def _documented_specs() -> list[tuple[str, dict]]:
    """Every YAML block of the pages that is a whole spec (it names the study and its objectives)."""
    specs = []
    for page in PAGES:
        for i, block in enumerate(_blocks(page, ("yaml",))):
            data = yaml.load(block, Loader=SpecLoader)
            if isinstance(data, dict) and "name" in data and "objectives" in data:
                specs.append((f"{page.relative_to(ROOT)}#{i}", data))
    return specs


def _documented_commands() -> list[tuple[str, list[str]]]:
    """Every ``vae-study ...`` command line in the pages' shell blocks (and inside ``ray exec "..."``)."""
    commands = []
    for page in PAGES:
        for block in _blocks(page, ("bash", "sh")):
            for line in block.splitlines():
                if "vae-study " not in line:
                    continue
                for part in re.findall(r'"(vae-study [^"]*)"', line) or line.split("&&"):
                    words = shlex.split(part, comments=True)
                    if words[:1] == ["vae-study"]:
                        commands.append((f"{page.relative_to(ROOT)}: {part.strip()}", words[1:]))
    return commands


SPECS = _documented_specs()
COMMANDS = _documented_commands()


def test_every_spec_field_has_a_description():
    """A field added without a description would reach the reference and the editors' schema blank."""
    fields = GEN.spec_fields()
    assert len(fields) > 60  # the walk reaches the nested sections, not only the top level
    blank = [f"{path}.{name}".lstrip(".") for path, _, name, info in fields if not (info.description or "").strip()]
    assert not blank, f"spec fields without a description (Field(description=...), #: in trainers/config.py): {blank}"
    described = {f"{path}.{name}".lstrip("."): info.description for path, _, name, info in fields}
    # the trainers' fields are described by their #: comments, read when the spec's sections are made
    assert "step 0" in described["training.checkpoint_every"]
    assert "Members trained together" in described["training.pack_size"]
    assert described["search.early_stopping.reduction_factor"].startswith("ASHA's η")


def test_the_spec_reference_lists_every_key_with_its_bounds():
    page = GEN.spec_page()
    for path, _, name, _ in GEN.spec_fields():
        assert f"`{f'{path}.{name}'.lstrip('.')}`" in page
    row = next(line for line in page.splitlines() if line.startswith("| `training.steps` "))
    assert "1 to 1,000,000,000" in row and "`1000`" in row  # bounds from trainers.config's checks, default
    row = next(line for line in page.splitlines() if line.startswith("| `search.num_trials` "))
    assert "≥ 1" in row and "≤ 1,000,000" in row


def test_the_other_reference_pages_come_from_the_registries():
    from analysis.results import COLUMN_TYPES
    from trainers.metrics import METRICS
    from trainers.objectives import OBJECTIVES
    from trainers.schedules import FAMILIES

    variants, metrics, schedules = GEN.variants_page(), GEN.metrics_page(), GEN.schedules_page()
    results = GEN.results_page()
    assert all(f"| `{name}` |" in variants for name in OBJECTIVES)
    assert "`beta`: constant(value 4)" in variants
    assert all(f"| `{name}` |" in metrics for name in METRICS)
    assert "`num_bins`: `20`" in metrics
    assert all(f"| `{name}` |" in schedules for name in FAMILIES)
    assert all(f"`{column}`" in results for column in COLUMN_TYPES)
    cli = GEN.cli_page()
    assert all(f"## `vae-study {name}`" in cli for name in GEN.command_parsers() if name)


@pytest.mark.parametrize("where, data", SPECS, ids=[where for where, _ in SPECS])
def test_every_spec_in_the_docs_validates(where, data):
    spec = parse_spec(data, where)
    assert spec.name == data["name"]
    jsonschema.validate(data, GEN.spec_json_schema())


def test_the_docs_show_specs_and_commands():
    """The two collections above are not empty by accident (a renamed fence would empty them)."""
    pages = {where.split("#")[0] for where, _ in SPECS}
    assert {"README.md", "docs/how-to/write-a-spec.md", "docs/how-to/search-schedules.md"} <= pages
    assert len(COMMANDS) >= 20


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_example_matches_the_json_schema(path):
    jsonschema.validate(yaml.safe_load(path.read_text()), GEN.spec_json_schema())
    load_spec(path)


def test_the_json_schema_refuses_what_the_spec_refuses():
    schema = GEN.spec_json_schema()
    good = {"name": "t", "variant": "beta_vae", "weights": {"beta": 4}}
    good["objectives"] = [{"name": "recon", "mode": "min"}]
    jsonschema.validate(good, schema)
    for bad in (
        {**good, "training": {"steps": "many"}},
        {**good, "trainig": {}},
        {**good, "search": {"num_trials": 0}},
        {**good, "weights": {"beta": "four"}},
        {**good, "weights": {"beta": {"value": {"low": 1}}}},
        {key: value for key, value in good.items() if key != "objectives"},
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)
    assert schema["properties"]["name"]["description"]
    assert schema["$defs"]["TrainingSpec"]["properties"]["checkpoint_every"]["description"]


@pytest.mark.parametrize("where, args", COMMANDS, ids=[where for where, _ in COMMANDS])
def test_every_command_in_the_docs_parses(where, args):
    """Each documented command line is one the parser accepts (options, positionals, their count)."""
    parser = GEN.command_parsers()[""]
    try:
        parser.parse_args(args)
    except SystemExit as exit:  # --help exits 0 once printed; a refusal exits 2
        if exit.code != 0:
            pytest.fail(f"{where}: vae-study refuses it (exit {exit.code})")


@pytest.mark.parametrize("command", sorted({args[0] for _, args in COMMANDS if not args[0].startswith("-")}))
def test_help_of_every_command_in_the_docs(command, capsys):
    from study.cli import main

    with pytest.raises(SystemExit) as exit:
        main([command, "--help"])
    assert exit.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: vae-study {command}") and "examples:" in text
    assert f"vae-study {command}" in text.split("examples:")[1]


def test_every_command_describes_its_arguments():
    """Descriptions, examples that parse, a help for each positional, and defaults shown."""
    parsers = GEN.command_parsers()
    assert len(parsers) == 12
    for name, parser in parsers.items():
        if not name:
            continue
        assert parser.description and len(parser.description) > 60, name
        examples = [line.strip() for line in parser.epilog.split("examples:")[1].splitlines() if line.strip()]
        assert any(line.startswith(f"vae-study {name}") for line in examples), name
        for line in examples:
            words = shlex.split(line, comments=True)
            if words[:1] == ["vae-study"]:
                parsers[""].parse_args(words[1:])
        options = parser.format_help().split("\noptions:")[1]
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help, f"vae-study {name}: {action.dest} has no help"
            if action.option_strings and action.default not in (None, False, []):
                line = options[options.index(f"  {action.option_strings[0]}") :].split("\n  -")[0]
                assert "(default: " in line, f"vae-study {name} {action.option_strings[0]}: default not shown"


def test_the_real_command_prints_its_help(cli):
    result = cli.run("submit", "--help")
    assert result.returncode == 0 and "SPEC" in result.stdout and "--resume STUDY_DIR" in result.stdout


def test_the_readme_is_short_and_its_links_resolve():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    assert "source .venv/bin/activate" in readme  # vae-study is not on PATH after make demo otherwise
    assert "docs/benchmarks.md#learning" in readme
    for page in PAGES:
        if page.is_relative_to(ROOT / "docs"):
            continue  # mkdocs build --strict checks the site's own links
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text()):
            assert (page.parent / target).exists(), f"{page.relative_to(ROOT)}: link to {target}"


def test_the_readme_shows_the_test_command_ci_runs():
    """CI runs the README's test command: the command .ci/run ends with is shown in the README."""
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.strip().startswith("make ")]
    assert ci, ".ci/run runs no make target"
    shown = [line.split("#")[0].strip() for line in (ROOT / "README.md").read_text().splitlines()]
    assert ci[-1] in shown, f"README.md does not show CI's command {ci[-1]!r}"


def test_every_benchmark_table_says_where_it_comes_from():
    """One "measured on <date>, <host>, <command>" line per table; history lives in CHANGELOG.md."""
    text = (ROOT / "docs" / "benchmarks.md").read_text()
    assert re.search(r"^## Learning$", text, re.M) and "benchmarks/learning_check.py" in text
    sections = re.split(r"^#{2,3} ", text, flags=re.M)[1:]
    for section in sections:
        title = section.splitlines()[0]
        tables = section.count("```") // 2
        if not tables:
            continue
        provenance = re.findall(r"(?:Measured|Computed) (?:on|at) .*?(?=\n\n)", section, re.S)
        assert len(provenance) == tables, f"{title}: {tables} tables, {len(provenance)} provenance lines"
        for line in provenance:
            assert re.search(r"\d{4}-\d{2}-\d{2}", line) and "host" in line, f"{title}: {line}"
            assert re.search(r"`(python benchmarks/|make |CI=true bash \.ci/run)", " ".join(line.split())), title
    assert "→" not in text and " earlier" not in text  # figures' history is CHANGELOG.md's


def test_the_docs_make_no_claim_the_code_contradicts():
    pages = {page.relative_to(ROOT).as_posix(): " ".join(page.read_text().split()) for page in PAGES}
    everything = "\n".join(pages.values())
    # the submit transcript names the study by the spec's name, so logs/stop find it
    cluster_spec = load_spec(ROOT / "examples" / "cluster_gpu.yaml")
    for _, args in COMMANDS:
        if args[0] in ("logs", "stop") and not args[1].startswith("JOB"):
            assert args[1].startswith(cluster_spec.name), args
    assert "12600 trials" not in everything and "TORCH='torch" not in everything
    # stopped trials reach Optuna PRUNED (study/searchers.py), never as complete
    assert "would reach Optuna as complete" not in everything
    assert "PRUNED in Optuna" in pages["docs/how-to/write-a-spec.md"]
    # checkpoint_every: 0 means no periodic checkpoint: the docs must not promise otherwise
    assert "step 0" in pages["docs/how-to/resume.md"]


def test_the_early_stopping_page_names_the_metrics_a_rung_estimates_on_fewer_points():
    """Pareto stopping's estimate shrinks a metric's ``num_points`` only; the page's list is that set."""
    from trainers.metrics import METRICS

    text = " ".join((ROOT / "docs" / "how-to" / "early-stopping.md").read_text().split())
    listed = re.search(r"takes a `num_points` option \(([^)]*)\)", text)
    assert listed, "the page no longer says which metrics a rung estimates on metric_points points"
    takes = sorted(name for name, metric in METRICS.items() if "num_points" in metric.options)
    assert sorted(re.findall(r"`(\w+)`", listed.group(1))) == takes


def test_infra_runs_a_spec_a_multi_node_gpu_cluster_accepts():
    """Preflight refuses a multi-node cluster without storage.shared; GPU nodes are wasted without gpus."""
    job = yaml.safe_load((ROOT / "infra" / "rayjob.yaml").read_text())
    launcher = (ROOT / "infra" / "cluster-aws.yaml").read_text()
    entrypoints = [job["spec"]["entrypoint"], *re.findall(r'"(vae-study run [^"]+)"', launcher)]
    for entrypoint in entrypoints:
        spec = load_spec(ROOT / entrypoint.split()[2].removeprefix("/opt/vae-study/"))
        assert spec.storage.shared and spec.resources.gpus > 0 and spec.training.checkpoint_every > 0, entrypoint
        assert spec.tracking.uri and spec.tracking.uri.startswith("http"), entrypoint  # not SQLite on a share


def test_make_passes_the_torch_index_to_pip_as_an_option():
    """``TORCH='torch==X --index-url URL'`` reached pip as one requirement and failed; TORCH_INDEX is an option."""
    dry = subprocess.run(
        ["make", "-n", "-B", ".venv/.installed", "TORCH_INDEX=https://download.pytorch.org/whl/cu128"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    pip = next(line for line in dry.stdout.splitlines() if '"torch==' in line)
    assert pip.endswith('" --index-url https://download.pytorch.org/whl/cu128'), pip
    assert "TORCH_INDEX=" in (ROOT / "CONTRIBUTING.md").read_text()
