from pathlib import Path

import pytest

from ariel_airflow.errors import UserError
from ariel_airflow.localdev.local_secrets import check_local_secrets


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_counts_entries_of_valid_files(tmp_path: Path) -> None:
    conns = write(tmp_path / "c.yaml", "a: postgresql://u:p@h:5432/d\nb:\n  conn_type: http\n  host: x\n")
    variables = write(tmp_path / "v.yaml", "x: 1\ny: two\n")
    assert check_local_secrets(conns, variables) == {"connections": 2, "variables": 2}


def test_missing_file_names_it_and_says_how_to_create_it(tmp_path: Path) -> None:
    variables = write(tmp_path / "v.yaml", "x: 1\n")
    with pytest.raises(UserError) as err:
        check_local_secrets(tmp_path / "connections.yaml", variables)
    assert err.value.where == str(tmp_path / "connections.yaml")
    assert "missing" in err.value.message
    assert "create it" in err.value.fix


def test_malformed_yaml_names_file_and_line(tmp_path: Path) -> None:
    conns = write(tmp_path / "c.yaml", "a: http://h\n")
    variables = write(tmp_path / "v.yaml", "ok: 1\nbroken: [1, 2\nnext: 3\n")
    with pytest.raises(UserError) as err:
        check_local_secrets(conns, variables)
    assert err.value.where == str(variables)
    assert "line" in err.value.message
    assert "YAML mapping" in err.value.fix


def test_connection_of_wrong_shape_is_rejected(tmp_path: Path) -> None:
    conns = write(tmp_path / "c.yaml", "a: [1, 2]\n")
    variables = write(tmp_path / "v.yaml", "x: 1\n")
    with pytest.raises(UserError) as err:
        check_local_secrets(conns, variables)
    assert err.value.where == str(conns)
