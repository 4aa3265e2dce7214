"""When `ariel local trigger` may say a dag_id is unknown: the parse bookkeeping, without a stack
(tests/test_local_stack.py runs the same on a real one)."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ariel_airflow.localdev.dag_lookup import (
    NO_RECORD_WINDOW,
    dag_files,
    last_parses,
    might_contain_dag,
    unknown_dag,
    unparsed,
)

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "content",
    [
        b"from airflow.sdk import dag\n",
        b"from airflow.sdk import DAG\n",
        b"import airflow\nfrom airflow.sdk import Asset\n",
        b"import airflow\n",
        b"def dag(): pass\n",
        b"",
    ],
)
def test_files_skipped_as_airflow_skips_them_in_safe_mode(content: bytes, tmp_path: Path) -> None:
    from airflow.utils.file import might_contain_dag_via_default_heuristic

    path = tmp_path / "f.py"
    path.write_bytes(content)
    assert might_contain_dag(content) == might_contain_dag_via_default_heuristic(str(path))


def test_dag_files_are_relative_and_leave_out_caches_and_helpers(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.py").write_text("from airflow.sdk import dag\n")
    (tmp_path / "helpers.py").write_text("def add(a, b): return a + b\n")
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "b.py").write_text("from airflow.sdk import dag\n")
    assert list(dag_files(tmp_path)) == ["sub/a.py"]


def test_a_file_saved_during_its_last_parse_is_still_unparsed() -> None:
    saved = NOW - timedelta(seconds=5)
    dags = [
        {
            "dag_id": "t__a",
            "bundle_name": "t",
            "relative_fileloc": "a.py",
            "last_parsed_time": (NOW - timedelta(seconds=4)).isoformat(),
            "last_parse_duration": 2.0,  # began 6 s ago, before the save
        }
    ]
    assert unparsed({"a.py": saved}, last_parses(dags, [], "t"), NOW) == ["a.py"]
    dags[0]["last_parse_duration"] = 0.5
    assert unparsed({"a.py": saved}, last_parses(dags, [], "t"), NOW) == []


def test_an_import_error_counts_as_a_parse_and_other_bundles_do_not() -> None:
    saved = NOW - timedelta(seconds=5)
    errors = [{"filename": "a.py", "bundle_name": "t", "timestamp": NOW.isoformat()}]
    other = [
        {
            "dag_id": "x",
            "bundle_name": "other",
            "relative_fileloc": "a.py",
            "last_parsed_time": NOW.isoformat(),
        }
    ]
    assert unparsed({"a.py": saved}, last_parses([], errors, "t"), NOW) == []
    assert unparsed({"a.py": saved}, last_parses(other, [], "t"), NOW) == ["a.py"]


def test_a_file_without_any_record_is_waited_for_only_briefly() -> None:
    assert unparsed({"helper.py": NOW - timedelta(seconds=1)}, {}, NOW) == ["helper.py"]
    assert unparsed({"helper.py": NOW - NO_RECORD_WINDOW - timedelta(seconds=1)}, {}, NOW) == []


def test_an_old_file_without_a_record_waits_for_a_dag_processor_that_just_started() -> None:
    """A new stack: the files are old, but the dag-processor has not parsed them all yet."""
    old = NOW - timedelta(hours=1)
    assert unparsed({"daily.py": old}, {}, NOW, started=NOW - timedelta(seconds=2)) == ["daily.py"]
    assert unparsed({"daily.py": old}, {}, NOW, started=NOW - NO_RECORD_WINDOW - timedelta(seconds=1)) == []


def test_unknown_dag_names_the_close_match_and_the_import_errors(tmp_path: Path) -> None:
    error = unknown_dag(
        "demo_daily_export",
        tmp_path,
        ["demo__daily_export", "demo__fails"],
        [{"filename": "b.py", "stack_trace": "Traceback ...\nSyntaxError: invalid syntax\n"}],
    )
    assert "did you mean `demo__daily_export`?" in error.fix
    assert "1 file fails to import:\n  b.py: SyntaxError: invalid syntax" in error.message
    nothing_close = unknown_dag("zzz", tmp_path, ["demo__daily_export"], [])
    assert nothing_close.fix == "use one of the known DAGs: demo__daily_export"
