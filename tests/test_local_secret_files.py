"""`ariel secrets local init|check`: the git-ignored local secret files against secrets.yaml."""

from __future__ import annotations

import stat
from pathlib import Path

import yaml

from ariel_airflow.template import generate_team_repo

from conftest import run_ariel


def _declare(root: Path, connections: dict, variables: dict) -> None:
    declared = yaml.safe_load((root / "secrets.yaml").read_text())
    declared["connections"] = {**(declared["connections"] or {}), **connections}
    declared["variables"] = {**(declared["variables"] or {}), **variables}
    (root / "secrets.yaml").write_text(yaml.safe_dump(declared, sort_keys=False))


def test_init_adds_placeholders_and_never_overwrites(workdir: Path) -> None:
    from airflow.secrets.local_filesystem import load_connections_dict, load_variables

    root = generate_team_repo(workdir / "recon", "recon")
    _declare(root, {"partner_sftp": {"type": "sftp", "description": "Partner SFTP"}}, {"batch-size": {}})
    connections, variables = root / ".local" / "connections.yaml", root / ".local" / "variables.yaml"
    before = connections.read_text()
    variables.unlink()  # a new clone: the git-ignored file is not there

    result = run_ariel("secrets", "local", "init", "--team-repo", str(root))
    assert result.returncode == 0, result.stderr
    assert "added partner_sftp" in result.stdout and "added recon_export_path, batch-size" in result.stdout
    after = connections.read_text()
    assert after.startswith(before)  # the team's values and comments untouched
    assert "# connection (sftp): Partner SFTP" in after
    assert stat.S_IMODE(variables.stat().st_mode) == 0o600
    # What the local stack's LocalFilesystemBackend reads from the files init wrote.
    assert load_connections_dict(str(connections))["partner_sftp"].conn_type == "sftp"
    assert load_variables(str(variables)) == {"recon_export_path": "REPLACE-ME", "batch-size": "REPLACE-ME"}

    connections.write_text(after.replace("sftp://REPLACE-ME", "sftp://me:secret@sftp.example.com:22"))
    filled = connections.read_text()
    again = run_ariel("secrets", "local", "init", "--team-repo", str(root))
    assert again.returncode == 0 and "every declared secret has a local entry" in again.stdout
    assert connections.read_text() == filled
    assert not list((root / ".local").glob(".*.tmp"))  # the atomic writes left no temporary file


def test_init_fills_an_empty_mapping(workdir: Path) -> None:
    root = generate_team_repo(workdir / "recon", "recon", include_examples=False)
    assert "{}" in (root / ".local" / "connections.yaml").read_text()
    _declare(root, {"my_conn": {"type": "http"}}, {})
    assert run_ariel("secrets", "local", "init", "--team-repo", str(root)).returncode == 0
    assert yaml.safe_load((root / ".local" / "connections.yaml").read_text()) == {
        "my_conn": "http://REPLACE-ME"
    }


def test_check_reports_file_line_and_id(workdir: Path) -> None:
    root = generate_team_repo(workdir / "recon", "recon")
    clean = run_ariel("secrets", "local", "check", "--team-repo", str(root))
    assert clean.returncode == 0, clean.stdout + clean.stderr

    _declare(root, {"bad_port": {}, "no_scheme": {}, "todo": {}, "absent": {}}, {"later": {}})
    with (root / ".local" / "connections.yaml").open("a") as file:
        file.write(
            "bad_port: postgresql://user:pw@db:notaport/x\n"  # line 4
            "no_scheme: just some words\n"  # line 5
            "todo: {conn_type: http, host: REPLACE-ME}\n"  # line 6
        )
    (root / ".local" / "variables.yaml").write_text("recon_export_path: /tmp\nlater: REPLACE-ME\n")
    result = run_ariel("secrets", "local", "check", "--team-repo", str(root))
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines == [
        ".local/connections.yaml: connection 'absent' is declared in secrets.yaml but has no entry here: "
        "run `ariel secrets local init`, then fill in its value",
        ".local/connections.yaml:4: connection 'bad_port' does not parse as a connection: "
        "Port could not be cast to integer value as 'notaport'",
        ".local/connections.yaml:5: connection 'no_scheme' has no connection type: "
        "write a URI such as postgres://user:password@host:5432/db",
        ".local/connections.yaml:6: connection 'todo' still holds the placeholder REPLACE-ME",
        ".local/variables.yaml:2: variable 'later' still holds the placeholder REPLACE-ME",
    ]
    assert "pw" not in result.stdout  # values are never printed

    (root / ".local" / "variables.yaml").write_text("a: [unclosed\n")
    broken = run_ariel("secrets", "local", "check", "--team-repo", str(root))
    assert broken.returncode == 1
    assert ".local/variables.yaml:2: not valid YAML" in broken.stdout
    refused = run_ariel("secrets", "local", "init", "--team-repo", str(root))
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "variables.yaml" in refused.stderr and "line 2" in refused.stderr
