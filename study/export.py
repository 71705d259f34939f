"""``results.parquet``: one row per trial, and ``history.parquet``, read from what the trials wrote.

Schema (version 2; the version is stored in the file's metadata under
``vae_study.schema_version``, with the study's objectives under ``vae_study.objectives``).
Every column has one Arrow type whatever its values, nulls included: integers are
``int64`` (pandas ``Int64``, nullable), measurements ``float64`` (null: NaN), text
``string``, times ``timestamp[us, UTC]``.  Rows are ordered by ``started_at``, then
``trial_id`` (trials that never started, such as a crash before training, come last).

==========================  ======================================================
column                      meaning
==========================  ======================================================
``trial_id``                the trial's id (also its folder name)
``trial_name``              its readable name (the MLflow run name)
``optuna_number``           the trial's Optuna trial number in an Optuna search (Int64;
                            null in a grid, or for a record that predates it)
``status``                  ``completed``, ``failed`` (diverged), ``error`` (crashed) or
                            ``pruned`` (stopped early by the scheduler)
``failure_reason``          why a trial did not complete (null otherwise)
``failed_step``             step at which a term became non-finite (Int64)
``failed_term``             the term that became non-finite
``variant``, ``seed``       the trial's variant and seed (Int64)
``steps``                   training steps (Int64)
``<weight>.<param>``        schedule of each weight, e.g. ``beta.schedule`` (string),
                            ``beta.end`` (float64), ``beta.end_step`` (Int64: a parameter
                            whose values are all integers); null where the trial's
                            schedule family has no such parameter
``<term>``                  held-out value of each objective term (``recon``, ``kl``,
                            ``index_code_mi``, ``total_correlation``, ``dimwise_kl``,
                            ``loss``, schedule values such as ``beta``), float64
``<metric>``                each metric, e.g. ``mig``, float64
``udr``                     UDR (Duan et al. 2020) among the completed seeds of the
                            trial's configuration; null for a configuration run once
``on_front``                bool: the trial is completed and no other completed trial
                            dominates it on the study's objectives (all of them)
``mlflow_run_id``           the trial's nested MLflow run
``mlflow_parent_run_id``    the study's MLflow run
``checkpoint``              path of the final model, relative to the study folder
``codes``                   path of the trial's ``codes.npz`` (mean codes for UDR),
                            relative to the study folder
``train_seconds``, ``eval_seconds``, ``images_per_second``  float64
``started_at``, ``finished_at``  ``timestamp[us, UTC]``
``duration_s``              ``finished_at − started_at`` in seconds (float64; null when
                            either is unknown)
``resumed_from_step``       Int64
``pack_id``, ``pack_size``  the Ray trial (pack) that trained the trial, and the
                            pack's size (an unpacked trial is a pack of one: its own id, 1)
``undelivered_metrics``     metrics of the trial still waiting in its spill file for
                            the tracking server (``vae-study sync`` delivers them)
==========================  ======================================================

Version 1 differed in: no ``optuna_number``, ``on_front`` or ``duration_s``; times as
Unix seconds (float64); rows in trial-id order; a column whose values were all null
typed ``null`` and read as ``object`` of None; an integer column with nulls read as
float64.  :func:`analysis.results.load_results` reads both versions into the
version-2 shape (see its docstring for the migration note).

``history.parquet`` (same schema version) is the long form of every trial's term
histories, read from each trial's ``history.jsonl``: columns ``trial_id``, ``step``,
``split`` (``train``: averaged over the ``log_every`` steps ending at ``step``;
``heldout``: the final evaluation), ``term``, ``value``.  A resumed trial re-logs the
steps after its checkpoint; the last value of each (trial, split, step, term) is kept.

Writes go to a temporary file renamed into place: readers never see half a file,
and exporting twice gives the same table.  An export whose trials' histories have not
changed since the last one keeps its ``history.parquet`` (see :func:`_export_history`).
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson
import pyarrow.parquet as pq

from analysis.folder import HISTORY_JSONL
from analysis.pareto import pareto_mask
from analysis.results import (
    COLUMN_TYPES,
    META_COLUMNS,
    OBJECTIVES_KEY,
    SCHEMA_VERSION,
    SCHEMA_VERSION_KEY,
    TAIL_COLUMNS,
    TIMESTAMP,
    nullable_dtype,
)
from analysis.udr import udr_by_configuration
from study.folder import StudyFolder, TrialFolder, write_json_atomic
from study.tracking import spilled_metric_count

#: Files per call of Arrow's JSON reader once a call over all of them failed (an odd file costs
#: its block, read line by line, not the study).
_BLOCK = 64
#: Blocks of 4 MiB: few enough to keep per-block work small, many enough (80 for 10,000 trials)
#: to share among Arrow's threads (measured: 1 MiB to 16 MiB differ by under a tenth).
_JSON_READ = pajson.ReadOptions(use_threads=True, block_size=1 << 22)
_EMPTY = (
    np.zeros(0, np.int64), np.zeros(0, np.int64), pa.array([], pa.string()), pa.array([], pa.string()),
    np.zeros(0, np.float64),
)  # fmt: skip


def trial_rows(study_dir: Path, trials: list[TrialFolder] | None = None) -> list[dict[str, Any]]:
    """The record of every ended trial, flattened, in trial-id order.

    ``trials``: the study's trial folders when the caller has listed them already (a listing
    of 10,000 folders costs a few tenths of a second).
    """
    rows = []
    for trial in StudyFolder(study_dir).trials() if trials is None else trials:
        record = trial.read_record()
        if record is None:
            continue
        row = record.row()
        if row.get("optuna_number") is None:
            plan = trial.read_plan()  # None: no plan file
            row["optuna_number"] = plan.optuna_number if plan is not None else None
        # Counted now, not when the trial ended: `vae-study sync` may have delivered them since.
        row["undelivered_metrics"] = spilled_metric_count(trial.spill_file)
        rows.append(row)
    if any(row.get("codes") for row in rows):
        udr = udr_by_configuration(pd.DataFrame(rows), root=study_dir)
        for row, value in zip(rows, udr.tolist(), strict=True):
            row["udr"] = None if value != value else value  # null, not NaN: no score
    return rows


def _column_order(rows: list[dict[str, Any]]) -> list[str]:
    seen: dict[str, None] = dict.fromkeys(("optuna_number", "on_front", "duration_s"))
    for row in rows:
        seen.update(dict.fromkeys(row))
    fixed = {*META_COLUMNS, *TAIL_COLUMNS, "udr"}
    middle = sorted(k for k in seen if k not in fixed and "." in k)
    middle += [k for k in seen if k not in fixed and "." not in k]
    middle.append("udr")  # always there: null where no configuration was run with several seeds
    return [*META_COLUMNS, *middle, *(k for k in TAIL_COLUMNS if k in seen)]


def _inferred_type(values: list[Any]) -> pa.DataType:
    """A ``<weight>.<param>`` column's type: bool, int64 (all integers), float64 (numbers) or string."""
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        return pa.bool_()
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in present):
        return pa.string()
    return pa.int64() if present and all(isinstance(v, int) for v in present) else pa.float64()


def _array(name: str, values: list[Any]) -> pa.Array:
    kind = COLUMN_TYPES.get(name) or (_inferred_type(values) if "." in name else pa.float64())
    if kind == TIMESTAMP:  # Unix seconds → microseconds
        micros = [None if v is None else round(float(v) * 1e6) for v in values]
        return pa.array(micros, pa.int64()).cast(TIMESTAMP)
    if kind == pa.string():
        return pa.array([None if v is None else str(v) for v in values], pa.string())
    if kind == pa.float64():
        return pa.array([None if v is None or v != v else float(v) for v in values], pa.float64())
    return pa.array(values, kind)


def _with_study_columns(rows: list[dict[str, Any]], objectives: list[dict[str, str]]) -> None:
    """Add ``duration_s`` and ``on_front`` to every row (in place)."""
    for row in rows:
        start, end = row.get("started_at"), row.get("finished_at")
        row["duration_s"] = None if start is None or end is None else float(end) - float(start)
        row["on_front"] = False
    names = [o["name"] for o in objectives]
    done = [row for row in rows if row.get("status") == "completed"]
    if not names or not done:
        return
    values = np.array([[_number(row.get(n)) for n in names] for row in done], dtype=np.float64)
    for row, on in zip(done, pareto_mask(values, [o["mode"] for o in objectives]).tolist(), strict=True):
        row["on_front"] = on


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else np.nan


def results_table(rows: list[dict[str, Any]], objectives: list[dict[str, str]] | None = None) -> pa.Table:
    """The rows as the version-2 table: typed columns, ordered by start, ``on_front`` and ``duration_s`` added.

    Args:
        rows: One flat dict per trial (:meth:`study.folder.TrialRecord.row`, plus ``udr``,
            ``optuna_number`` and ``undelivered_metrics``); not modified.
        objectives: ``[{"name", "mode"}]``: what ``on_front`` is computed on.

    Returns:
        The Arrow table, with the schema version, the objectives and pandas' dtypes in its metadata.
    """
    objectives = list(objectives or [])
    rows = [dict(row) for row in rows]
    _with_study_columns(rows, objectives)
    columns = _column_order(rows)
    table = pa.table({name: _array(name, [row.get(name) for row in rows]) for name in columns})
    if rows:
        table = table.sort_by([("started_at", "ascending"), ("trial_id", "ascending")])
    # pandas' own metadata, so that a plain pd.read_parquet gives Int64 columns too.
    empty = table.schema.empty_table().to_pandas(types_mapper=nullable_dtype)
    with warnings.catch_warnings():  # pyarrow reads a UTC column's .values, which pandas 3 deprecates
        warnings.simplefilter("ignore")
        pandas_meta = pa.Table.from_pandas(empty, schema=table.schema, preserve_index=False).schema.metadata or {}
    metadata = {
        **pandas_meta,
        SCHEMA_VERSION_KEY.encode(): str(SCHEMA_VERSION).encode(),
        OBJECTIVES_KEY.encode(): json.dumps(objectives).encode(),
    }
    return table.replace_schema_metadata(metadata)


def _history_entries(trial: TrialFolder) -> list[dict[str, Any]]:
    """The lines of a trial's ``history.jsonl``: parsed as one JSON array when the file is whole
    (one parser call per file, not per line), else line by line (:meth:`TrialFolder.history`)."""
    try:
        text = trial.history_file.read_text()
    except FileNotFoundError:
        return []
    try:
        return json.loads("[" + ",".join(line for line in text.splitlines() if line.strip()) + "]")
    except json.JSONDecodeError:  # a line cut short by a kill: skipped there
        return list(trial.history())


#: One block of ``history.parquet``'s rows, columns as arrays: the trial (its index in the
#: study's trial-id order), step, split, term, value.  Rows are in the file's order within a trial.
_Rows = tuple[np.ndarray, np.ndarray, pa.Array, pa.Array, np.ndarray]


def _python_rows(index: int, trial: TrialFolder) -> _Rows:
    """A trial's rows read line by line with Python's JSON parser: the reference reader, and the
    path of any file the Arrow reader does not take whole (a resumed trial's re-logged steps,
    a line cut short by a kill, anything unusual)."""
    merged: dict[tuple[str, int], dict[str, float]] = {}
    for entry in _history_entries(trial):
        # A resumed trial re-logs steps after its checkpoint: the last value of each term wins.
        merged.setdefault((entry["split"], int(entry["step"])), {}).update(entry["terms"])
    steps: list[int] = []
    splits: list[str] = []
    terms: list[str] = []
    values: list[float] = []
    for split, step in sorted(merged):
        items = sorted(merged[(split, step)].items())
        terms.extend(term for term, _ in items)
        values.extend(float(value) for _, value in items)
        splits.extend([split] * len(items))
        steps.extend([step] * len(items))
    return (
        np.full(len(terms), index, dtype=np.int64),
        np.array(steps, dtype=np.int64),
        pa.array(splits, pa.string()),
        pa.array(terms, pa.string()),
        np.array(values, dtype=np.float64),
    )


class _NotWhole(Exception):
    """Arrow's reader did not take a block of files whole: its trials go the slower way."""


def _line_schema(texts: list[bytes], samples: int = 64) -> pa.Schema:
    """The lines' schema as far as the first and last lines of a few files tell (the reader infers
    any other term): a reader told the types spends a fifth less time than one inferring them."""
    names: set[str] = set()
    for text in texts[:: max(1, len(texts) // samples)]:
        for line in (text[: text.find(b"\n")], text[text.rfind(b"\n", 0, -1) + 1 :]):
            try:
                terms = json.loads(line).get("terms")
            except (ValueError, AttributeError):
                continue  # the reader will say what is wrong with it
            if isinstance(terms, dict):
                names.update(terms)
    terms_type = pa.struct([(name, pa.float64()) for name in sorted(names)])
    return pa.schema([("step", pa.int64()), ("split", pa.string()), ("terms", terms_type)])


def _arrow_rows(indices: list[int], texts: list[bytes], lines: list[int]) -> tuple[_Rows, list[int]]:
    """The rows of several trials' histories from one call of Arrow's JSON reader over their
    concatenated files (multithreaded, no Python object per line or value).

    Args:
        indices: The trials' indices.
        texts: Their ``history.jsonl`` bytes, every line ending with ``}}`` and a newline.
        lines: How many lines each holds.

    Returns:
        The rows of every trial whose (split, step) pairs are distinct, ordered by trial, split,
        step and term; and the indices of the trials that re-logged a step (a resume), whose
        last values :func:`_python_rows` keeps.

    Raises:
        _NotWhole: a line is not a whole history line (cut short, not JSON, lacking a field,
            a value that is not a number), or the reader's lines do not match the files' lines.
    """
    options = pajson.ParseOptions(explicit_schema=_line_schema(texts))
    try:
        table = pajson.read_json(pa.py_buffer(b"".join(texts)), read_options=_JSON_READ, parse_options=options)
    except pa.ArrowInvalid as error:
        raise _NotWhole(str(error)) from None
    schema = table.schema
    if (
        table.num_rows != sum(lines)
        or not {"step", "split", "terms"} <= set(schema.names)
        or schema.field("step").type != pa.int64()
        or schema.field("split").type != pa.string()
        or not pa.types.is_struct(schema.field("terms").type)
        or not schema.field("terms").type.num_fields
        or any(f.type not in (pa.float64(), pa.int64()) for f in schema.field("terms").type)
    ):
        raise _NotWhole("not history lines")
    step_col, split_col, terms_col = (table.column(n).combine_chunks() for n in ("step", "split", "terms"))
    if step_col.null_count or split_col.null_count or terms_col.null_count:
        raise _NotWhole("a line lacks step, split or terms")
    trial = np.repeat(np.array(indices, dtype=np.int64), np.array(lines, dtype=np.int64))
    step = step_col.to_numpy()
    # Ordered as Python orders the split strings (code points), via their rank among the few distinct ones.
    encoded = pc.dictionary_encode(split_col)
    distinct = encoded.dictionary.to_pylist()
    rank = np.empty(len(distinct), dtype=np.int64)
    rank[sorted(range(len(distinct)), key=distinct.__getitem__)] = np.arange(len(distinct))
    split_rank = rank[encoded.indices.to_numpy()]
    order = np.lexsort((step, split_rank, trial))
    same = (np.diff(trial[order]) == 0) & (np.diff(split_rank[order]) == 0) & (np.diff(step[order]) == 0)
    resumed = np.unique(trial[order][1:][same])
    if len(resumed):
        order = order[~np.isin(trial[order], resumed)]
    names = sorted(f.name for f in terms_col.type)
    children = [terms_col.field(name) for name in names]
    # Row-major over (line, term) with the terms in name order: each line's terms come out sorted.
    values = np.column_stack([c.cast(pa.float64(), safe=False).to_numpy(zero_copy_only=False) for c in children])
    present = np.column_stack([c.is_valid().to_numpy(zero_copy_only=False) for c in children])
    present = present[order].ravel()
    line = np.repeat(order, len(names))[present]
    term = np.tile(np.arange(len(names), dtype=np.int64), len(order))[present]
    rows = (
        trial[line],
        step[line],
        _strings(encoded.indices.to_numpy()[line], distinct),
        pa.array(names, pa.string()).take(pa.array(term)),
        values[order].ravel()[present],
    )
    return rows, resumed.tolist()


def _strings(codes: np.ndarray, vocab: list[str]) -> pa.Array:
    """``vocab[codes]`` as an Arrow string array, built run by run: for codes in long runs (trial
    ids, splits) a few bytes joins instead of a take of millions of strings."""
    if not len(codes):
        return pa.array([], pa.string())
    encoded = [value.encode() for value in vocab]
    starts = np.concatenate(([0], np.flatnonzero(np.diff(codes)) + 1))
    counts = np.diff(np.append(starts, len(codes)))
    data = b"".join(encoded[c] * n for c, n in zip(codes[starts].tolist(), counts.tolist(), strict=True))
    if len(data) >= 1 << 31:  # past 32-bit offsets
        return pa.array(vocab, pa.string()).take(pa.array(codes))
    offsets = np.zeros(len(codes) + 1, dtype=np.int64)
    np.cumsum(np.array([len(e) for e in encoded], dtype=np.int64)[codes], out=offsets[1:])
    return pa.StringArray.from_buffers(len(codes), pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(data))


def _read_bytes(path: str) -> bytes | None:
    try:
        with open(path, "rb") as file:
            return file.read()
    except FileNotFoundError:
        return None


def history_table(study_dir: Path, trials: list[TrialFolder] | None = None) -> pa.Table:
    """``history.parquet``'s table: one row per (trial, split, step, term), the last value of each kept.

    Whole histories are parsed by Arrow's JSON reader in one call over all of them (no
    Python object per line or value: half the CPU time of parsing line by line, spread over
    Arrow's threads);
    a trial whose file that call cannot take, or that re-logged a step, is read by
    :func:`_python_rows`, which gives the same rows (``tests/test_export_speed.py``).

    Args:
        study_dir: The study folder.
        trials: Its trial folders, when the caller has listed them already.

    Returns:
        Columns ``trial_id``, ``step``, ``split``, ``term``, ``value``, ordered by trial id,
        split, step and term.
    """
    if trials is None:
        trials = StudyFolder(study_dir).trials()
    # One by one: from the page cache a read is a copy, and threads only add switching on a busy host.
    texts = [_read_bytes(os.path.join(trial.path, HISTORY_JSONL)) for trial in trials]
    # Every line append_history writes ends with "}}" (its terms, then the line's object); a file
    # with another line (one cut short by a kill, ended or not by the next write; an empty one)
    # is read line by line, so that one odd file does not fail the reader's call for the study.
    lines = [text.count(b"\n") if text else 0 for text in texts]
    whole = [i for i, text in enumerate(texts) if text and text.endswith(b"}}\n") and text.count(b"}}\n") == lines[i]]
    slow = sorted({i for i, text in enumerate(texts) if text} - set(whole))
    parts: list[_Rows] = []

    def arrow(block: list[int]) -> None:
        try:
            rows, resumed = _arrow_rows(block, [texts[i] for i in block], [lines[i] for i in block])
        except _NotWhole:
            if len(block) > _BLOCK:  # one odd file: the others in blocks, and the block holding it line by line
                for start in range(0, len(block), _BLOCK):
                    arrow(block[start : start + _BLOCK])
            else:
                slow.extend(block)
            return
        parts.append(rows)
        slow.extend(resumed)

    if whole:
        arrow(whole)
    parts.extend(_python_rows(i, trials[i]) for i in sorted(slow))
    trial, step, split, term, value = (
        (np.concatenate([p[k] for p in parts]) if k in (0, 1, 4) else pa.concat_arrays([p[k] for p in parts]))
        if parts
        else _EMPTY[k]
        for k in range(5)
    )
    if len(parts) > 1:  # blocks and slow trials interleave: back into trial order (stable: rows keep theirs)
        order = np.argsort(trial, kind="stable")
        trial, step, value = trial[order], step[order], value[order]
        split, term = split.take(pa.array(order)), term.take(pa.array(order))
    table = pa.table(
        {
            "trial_id": _strings(trial, [t.trial_id for t in trials]),
            "step": pa.array(step, pa.int64()),
            "split": split,
            "term": term,
            "value": pa.array(value, pa.float64()),
        }
    )
    return table.replace_schema_metadata({SCHEMA_VERSION_KEY: str(SCHEMA_VERSION)})


def _write_atomic(table: pa.Table, target: Path) -> Path:
    tmp = target.with_name(target.name + ".tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, target)
    return target


def export_results(study_dir: str | Path, objectives: list[dict[str, str]] | None = None) -> Path:
    """Write ``STUDY_DIR/results.parquet`` from the trials' ``result.json`` files."""
    folder = StudyFolder(study_dir)
    if objectives is None:
        objectives = folder.read_spec().get("objectives", []) if folder.spec_json.exists() else []
    trials = folder.trials()
    _export_history(folder, trials)
    return _write_atomic(results_table(trial_rows(folder.root, trials), objectives), folder.results)


def _stat(path: str | Path) -> list[int] | None:
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return [stat.st_size, stat.st_mtime_ns]


def _export_history(folder: StudyFolder, trials: list[TrialFolder]) -> Path:
    """Write ``history.parquet``, unless it was written from the histories as they are now.

    ``history.sources.json`` keeps the size and modification time of every ``history.jsonl``
    taken before they were read, and of the ``history.parquet`` made from them: when none
    changed (an export after the run's own, ``vae-study sync``), the file stands.  A history
    written during the export, a trial added or removed, a copy that does not keep the
    times, or another ``history.parquet``, each changes a stat: the table is rebuilt.
    """
    sources = {trial.trial_id: _stat(os.path.join(trial.path, HISTORY_JSONL)) for trial in trials}
    try:
        known = json.loads(folder.history_sources.read_text())
    except (OSError, ValueError):
        known = None
    if known == {"history": _stat(folder.history), "trials": sources}:
        return folder.history
    folder.history_sources.unlink(missing_ok=True)  # stale from here until rewritten
    _write_atomic(history_table(folder.root, trials), folder.history)
    write_json_atomic(folder.history_sources, {"history": _stat(folder.history), "trials": sources})
    return folder.history
