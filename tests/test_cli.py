"""The CLI's bad-input contract: exit code 2, an error naming the field or file, nothing written.

Commands that start no study run in this process (``cli.call``); the last test runs the real
``python -m study.cli`` process."""

import pytest

GOOD = """\
name: t
variant: beta_vae
objectives: [{name: recon, mode: min}]
"""


@pytest.mark.parametrize(
    "text, expected",
    [
        (GOOD.replace("beta_vae", "wavelet_vae"), "variant: unknown variant 'wavelet_vae'"),
        (GOOD + "weights: {beta: -3}\n", "weights.beta.value: must be >= 0, got -3"),
        (
            GOOD + "weights: {beta: {schedule: linear, end: 2}}\n",
            "weights.beta.end_step: required by schedule 'linear'",
        ),
        ("name: [unclosed\n", "not valid YAML"),
    ],
)
def test_bad_spec_exits_2_names_the_field_and_writes_nothing(cli, tmp_path, text, expected):
    spec = tmp_path / "spec.yaml"
    spec.write_text(text)
    result = cli.call("run", spec, "--study-dir", tmp_path / "study")
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr and str(spec) in result.stderr
    assert not (tmp_path / "study").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.yaml"]


def test_missing_spec_file_and_non_study_folder(cli, tmp_path):
    result = cli.call("run", tmp_path / "nope.yaml")
    assert result.returncode == 2 and "nope.yaml: cannot read spec" in result.stderr
    result = cli.call("export", tmp_path)
    assert result.returncode == 2 and "not a study folder" in result.stderr


def test_a_used_study_folder_is_never_overwritten(cli, tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(GOOD)
    used = tmp_path / "study"
    used.mkdir()
    (used / "results.parquet").write_text("precious")
    result = cli.call("run", spec, "--study-dir", used)
    assert result.returncode == 2 and "already holds files" in result.stderr
    assert (used / "results.parquet").read_text() == "precious"


def test_validate_prints_the_resolved_spec(cli, tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(GOOD)
    result = cli.run("validate", spec)
    assert result.returncode == 0 and '"latent_dim": 10' in result.stdout


@pytest.mark.parametrize(
    "counts, interrupted, code, line",
    [
        ({"completed": 3, "failed": 1, "pruned": 2}, False, 0, "done: 3 completed, 1 failed, 2 pruned."),
        ({"completed": 2, "error": 1}, False, 1, "done, with errors: 2 completed, 1 error."),
        ({"completed": 1}, True, 130, "stopped (1 completed so far)."),
    ],
)
def test_the_exit_code_says_how_the_study_ended(tmp_path, capsys, counts, interrupted, code, line):
    """0: every trial ended by design (diverged and pruned included); 1: some errored; 130: Ctrl+C."""
    from study.cli import _print_outcome
    from study.runner import StudyOutcome

    outcome = StudyOutcome(tmp_path, "sqlite:///x.db", tmp_path / "results.parquet", None, counts, interrupted)
    assert _print_outcome("s", outcome) == code
    out = capsys.readouterr().out
    assert line in out
    assert ("resume with  : vae-study resume" in out) == interrupted


def test_a_spec_whose_default_folder_holds_a_study_says_how_to_go_on(cli, make_spec, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # studies/<name> is relative to where the command runs
    spec = cli.write_spec(make_spec(name="again"))
    folder = tmp_path / "studies" / "again"
    folder.mkdir(parents=True)
    (folder / "spec.json").write_text("{}")
    result = cli.call("run", spec)
    assert result.returncode == 2 and result.stdout == ""
    assert "studies/again: this spec's study folder already holds the study 'again'" in result.stderr
    assert "vae-study resume studies/again" in result.stderr
    assert f"vae-study run {spec} --study-dir studies/again-2" in result.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["spec.json"]
