"""history.parquet's fast reader (Arrow's JSON reader over every trial's history at once) gives
the table a plain line-by-line reader gives, odd files included, and leaves only odd files to
the slow path."""

import json
import math
import os
import shutil

import pyarrow.parquet as pq
import pytest

from study import export
from study.export import history_table
from study.folder import RecordError, StudyFolder, TrialFolder

TERMS = ("recon", "kl", "loss", "beta")


def reference_rows(study_dir):
    """The table as a plain reader makes it: every line through TrialFolder.history(), the last
    value of each (trial, split, step, term) kept, ordered by trial, split, step and term."""
    rows = []
    for trial in StudyFolder(study_dir).trials():
        merged = {}
        for entry in trial.history():
            merged.setdefault((entry["split"], int(entry["step"])), {}).update(entry["terms"])
        for split, step in sorted(merged):
            rows.extend(
                (trial.trial_id, step, split, term, float(v)) for term, v in sorted(merged[split, step].items())
            )
    return rows


def _comparable(rows):
    # NaN never equals itself: compare its text instead.
    return [(*row[:4], "nan" if math.isnan(row[4]) else row[4]) for row in rows]


def _fast_rows(study_dir):
    table = history_table(study_dir)
    assert table.schema.names == ["trial_id", "step", "split", "term", "value"]
    assert [str(t) for t in table.schema.types] == ["string", "int64", "string", "string", "double"]
    return _comparable(list(zip(*(table.column(n).to_pylist() for n in table.schema.names), strict=True)))


def _trial(root, trial_id, steps=(10, 20, 30), heldout=True, terms=TERMS):
    trial = TrialFolder(root / "trials" / trial_id).create()
    for step in steps:
        trial.append_history(step, {t: step / (k + 1) for k, t in enumerate(terms)}, "train")
    if heldout:
        trial.append_history(steps[-1] if steps else 0, {**dict.fromkeys(terms, 0.5), "mig": 0.25}, "heldout")
    return trial


@pytest.fixture
def odd_study(tmp_path):
    """Ordinary trials around every odd case a study folder can hold."""
    for i in range(5):
        _trial(tmp_path, f"t{i:04d}")
    (tmp_path / "trials" / "t0005").mkdir()  # started, no history yet
    _trial(tmp_path, "t0006").history_file.write_text("")  # empty
    killed = _trial(tmp_path, "t0007", heldout=False)
    with killed.history_file.open("a") as out:
        out.write('{"step": 40, "split": "train", "terms": {"recon": 0.')  # killed mid-write: no newline
    resumed = _trial(tmp_path, "t0008", steps=(10, 20, 30), heldout=False)
    with resumed.history_file.open("a") as out:
        out.write('{"step": 40, "split": "tr')  # killed mid-write, then resumed from step 20
    for step in (30, 40, 50):  # re-logs 30 and 40 with other values, and a term of its own
        resumed.append_history(step, {"recon": -step, "kl": 1.0, "extra": 2.0}, "train")
    resumed.append_history(50, {"recon": 9.0}, "heldout")
    odd_values = TrialFolder(tmp_path / "trials" / "t0009").create()
    odd_values.append_history(10, {"recon": float("nan"), "kl": float("inf"), "loss": -float("inf")}, "train")
    odd_values.append_history(20, {"recon": 3, "kl": 2**53 + 1, "loss": 1e-310}, "train")  # integers, subnormal
    _trial(tmp_path, "t0010", terms=("recon", "kl", "tc", "group_kl"))  # another variant's terms
    blank = _trial(tmp_path, "t0011")
    blank.history_file.write_text(blank.history_file.read_text().replace("\n", "\n\n", 1))
    _trial(tmp_path, "t0012", steps=(), heldout=True)  # only the held-out line
    reordered = _trial(tmp_path, "t0013", steps=(30, 10, 20))  # lines out of step order
    assert reordered.history_file.exists()
    relogged = _trial(tmp_path, "t0014", steps=(10, 20, 30), heldout=False)  # resumed after a clean stop
    for step in (20, 30):
        relogged.append_history(step, {"recon": -step}, "train")
    return tmp_path


def test_the_fast_reader_gives_the_reference_table_with_every_odd_case(odd_study):
    rows = _fast_rows(odd_study)
    assert rows == _comparable(reference_rows(odd_study))
    by_trial = {}
    for row in rows:
        by_trial.setdefault(row[0], []).append(row[1:])
    assert ("train", 30, "recon", -30.0) in [(s, st, t, v) for st, s, t, v in by_trial["t0008"]]
    assert [r for r in by_trial["t0009"] if r[0] == 10] == [
        (10, "train", "kl", math.inf),
        (10, "train", "loss", -math.inf),
        (10, "train", "recon", "nan"),
    ]
    assert (20, "train", "kl", float(2**53 + 1)) in by_trial["t0009"]
    assert "t0005" not in by_trial and "t0006" not in by_trial and "t0007" in by_trial
    assert by_trial["t0000"][0][:2] == (30, "heldout")  # held-out first: the splits in name order


def test_only_odd_files_take_the_slow_path(odd_study, monkeypatch):
    slow = []
    reader = export._python_rows
    monkeypatch.setattr(export, "_python_rows", lambda i, trial: slow.append(trial.trial_id) or reader(i, trial))
    history_table(odd_study)
    # The killed one (its last line cut short), the resumed one (a line cut short, then re-logged
    # steps), the one with an empty line and the one that re-logged steps (whose last values count);
    # the other odd ones are whole JSON lines.
    assert sorted(slow) == ["t0007", "t0008", "t0011", "t0014"]


def test_a_file_the_reader_refuses_costs_its_block_not_the_study(tmp_path, monkeypatch):
    for i in range(3 * export._BLOCK):
        _trial(tmp_path, f"t{i:04d}", steps=(10, 20))
    odd = TrialFolder(tmp_path / "trials" / f"t{export._BLOCK + 3:04d}")
    # Whole lines, but a key twice (Python's parser keeps the last value; Arrow's refuses the call).
    with odd.history_file.open("a") as out:
        out.write('{"step": 30, "split": "train", "terms": {"recon": 1.0, "recon": 2.0}}\n')
    slow = []
    reader = export._python_rows
    monkeypatch.setattr(export, "_python_rows", lambda i, trial: slow.append(i) or reader(i, trial))
    assert _fast_rows(tmp_path) == _comparable(reference_rows(tmp_path))
    assert slow == list(range(export._BLOCK, 2 * export._BLOCK))


def test_a_broken_line_in_the_middle_is_still_an_error(tmp_path):
    _trial(tmp_path, "t0000")
    broken = _trial(tmp_path, "t0001")
    lines = broken.history_file.read_text().splitlines()
    lines[1] = '{"step": 20, "split": "train", "terms": {"recon": 1}, }'
    broken.history_file.write_text("\n".join(lines) + "\n")
    with pytest.raises(RecordError, match=r"t0001/history\.jsonl: line 2 is not JSON"):
        history_table(tmp_path)


def test_no_trials_gives_the_empty_table(tmp_path):
    table = history_table(tmp_path)
    assert table.num_rows == 0 and table.schema.names == ["trial_id", "step", "split", "term", "value"]
    assert table.schema.metadata == {b"vae_study.schema_version": b"2"}
    assert json.loads("2") == int(table.schema.metadata[b"vae_study.schema_version"])


def test_a_repeat_export_keeps_history_parquet_until_a_history_changes(tmp_path, monkeypatch):
    for i in range(3):
        _trial(tmp_path, f"t{i:04d}")
    folder = StudyFolder(tmp_path)
    export.export_results(tmp_path, [])
    first = folder.history.read_bytes()
    assert folder.history_sources.exists()
    built = []
    reader = export.history_table
    monkeypatch.setattr(export, "history_table", lambda root, trials: built.append(root) or reader(root, trials))

    export.export_results(tmp_path, [])  # nothing changed: kept, not rebuilt
    assert built == [] and folder.history.read_bytes() == first

    TrialFolder(tmp_path / "trials" / "t0001").append_history(40, {"recon": 7.0}, "train")
    export.export_results(tmp_path, [])  # a trial logged on (a longer file)
    assert len(built) == 1 and _fast_rows(tmp_path) == _comparable(reference_rows(tmp_path))
    assert ("t0001", 40, "train", "recon", 7.0) in _comparable(reference_rows(tmp_path))

    _trial(tmp_path, "t0003")
    export.export_results(tmp_path, [])  # a new trial
    assert len(built) == 2

    history = TrialFolder(tmp_path / "trials" / "t0000").history_file
    stat = history.stat()
    history.write_text(history.read_text().replace("0.5", "0.7"))  # the same size, rewritten later
    os.utime(history, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    export.export_results(tmp_path, [])
    assert len(built) == 3 and pq.read_table(folder.history).equals(reader(tmp_path))

    shutil.rmtree(tmp_path / "trials" / "t0002")
    export.export_results(tmp_path, [])  # a trial removed
    assert len(built) == 4 and "t0002" not in pq.read_table(folder.history).column("trial_id").to_pylist()

    folder.history.unlink()
    export.export_results(tmp_path, [])  # history.parquet gone (its sources file left behind)
    assert len(built) == 5 and folder.history.exists()
    export.export_results(tmp_path, [])
    assert len(built) == 5
