"""The command line's arguments and errors, in process; its work on a cache:
test_cli_cachedir.py, and end to end test_e2e_cache_cli.py."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from regmirror.cache.index import Index
from regmirror.cache.options import DEFAULT_DIR
from regmirror.cache.store import Store
from regmirror.cli.main import main, parser

REPO = Path(__file__).resolve().parents[1]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize("command", ["ls", "rm", "verify", "gc", "warm"])
def test_every_subcommand_has_help(capsys, command):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: run.sh cache {command}")
    if command != "warm":
        assert "--cache DIR" in out and DEFAULT_DIR in out


def test_the_cache_defaults_to_the_mirrors():
    assert parser().parse_args(["ls"]).cache == DEFAULT_DIR == "~/.cache/regmirror"


def test_a_missing_cache_is_said_in_one_line(capsys, tmp_path):
    status, out, err = run(capsys, "ls", "--cache", str(tmp_path / "nope"))
    assert status == 2 and out == ""
    said = "no cache directory {}/nope (the mirror's regmirror_cache; see --cache)"
    assert err == "regmirror cache ls: " + said.format(tmp_path) + "\n"
    assert not (tmp_path / "nope").exists()


def test_a_bad_reference_is_said_before_the_cache_is_opened(capsys, tmp_path):
    status, _, err = run(capsys, "rm", "Nginx:1", "--cache", str(tmp_path / "nope"))
    assert status == 2
    assert err == (
        "regmirror cache rm: 'Nginx:1': 'library/Nginx' is not a repository name"
        " (lowercase letters, digits and separators . _ - /)\n"
    )


def test_an_unreachable_mirror_is_said_in_one_line(capsys, tmp_path):
    from tests.support.procs import free_port

    (tmp_path / "list").write_text("nginx:1\n")
    port = free_port()
    status, out, err = run(
        capsys, "warm", str(tmp_path / "list"), "--mirror", f"http://127.0.0.1:{port}"
    )
    assert status == 2 and out == ""
    assert err.startswith(
        f"regmirror cache warm: cannot reach the mirror at http://127.0.0.1:{port}: "
    )
    assert err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize(
    "argv, says",
    [
        (
            ["warm", "missing.txt"],
            "regmirror cache warm: cannot read missing.txt: No such file or directory",
        ),
        (["warm", "empty.txt"], "regmirror cache warm: no image references in empty.txt"),
        (
            ["warm", "bad.txt"],
            "regmirror cache warm: bad.txt line 2: 'a b': 'library/a b' is not a repository name",
        ),
        (
            ["warm", "empty.txt", "--user", "alice"],
            "regmirror cache warm: --user needs the password in the REGMIRROR_PASSWORD variable",
        ),
        (
            ["gc", "--max-size", "lots", "--cache", "cache"],
            "regmirror cache gc: --max-size: 'lots' is not a size",
        ),
    ],
)
def test_errors_name_what_is_wrong(capsys, tmp_path, monkeypatch, argv, says):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("REGMIRROR_PASSWORD", raising=False)
    (tmp_path / "empty.txt").write_text("# nothing yet\n\n")
    (tmp_path / "bad.txt").write_text("nginx:1\na b\n")
    Store.open(tmp_path / "cache")
    Index.open(tmp_path / "cache" / "index.db").close()
    status, _, err = run(capsys, *argv)
    assert status == 2
    assert err.startswith(says) and err.count("\n") == 1


def test_usage_errors_exit_2(capsys):
    for argv in (["frobnicate"], ["warm", "-", "--platform", "linux"], ["rm"], []):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2
    assert "'linux' is not os/arch[/variant]" in capsys.readouterr().err


def test_ls_of_an_empty_cache(capsys, tmp_path):
    Store.open(tmp_path / "cache")
    Index.open(tmp_path / "cache" / "index.db").close()
    status, out, err = run(capsys, "ls", "--json", "--cache", str(tmp_path / "cache"))
    assert (status, json.loads(out)) == (0, [])
    status, out, err = run(capsys, "ls", "--cache", str(tmp_path / "cache"))
    assert status == 0 and "IMAGE" in out
    assert err == "0 images; the cache holds 0 files, 0 B\n"


def test_run_sh_dispatches_cache_to_the_cli_in_the_callers_directory(tmp_path):
    """run.sh's own line, with a stand-in for the venv's python that says what it got (the
    real venv is shared: run.sh would reinstall it)."""
    root = tmp_path / "repo"
    (root / ".venv" / "bin").mkdir(parents=True)
    shutil.copy(REPO / "run.sh", root / "run.sh")
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    python = root / ".venv" / "bin" / "python"
    python.write_text('#!/bin/sh\necho "pwd=$PWD"\necho "PYTHONPATH=$PYTHONPATH"\necho "args=$*"\n')
    python.chmod(0o755)
    stamp = root / ".venv" / ".installed"
    stamp.touch()
    os.utime(stamp, (os.stat(root / "pyproject.toml").st_mtime + 10,) * 2)  # no reinstall
    caller = tmp_path / "elsewhere"
    caller.mkdir()
    done = subprocess.run(
        [str(root / "run.sh"), "cache", "warm", "images.txt", "--platform", "linux/amd64"],
        cwd=caller,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"pwd={caller}",
        f"PYTHONPATH={root}/addon",
        "args=-m regmirror.cli warm images.txt --platform linux/amd64",
    ]
