"""The command line: one package of Hydra apps, one dispatcher, no parser of its own."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import graphmm
from graphmm.cli import COMMANDS, main

PACKAGE = Path(graphmm.__file__).parent


def test_dispatcher_usage_and_unknown_commands(capsys):
    assert main([]) == 2 and "usage: python -m graphmm {train,pretrain,predict,inspect}" in capsys.readouterr().out
    assert main(["--help"]) == 0
    assert main(["fit"]) == 2
    assert capsys.readouterr().err.strip() == "graphmm: error: unknown command 'fit'; choose one of train, pretrain, predict, inspect"


def test_train_runs_through_the_dispatcher(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "debug=fast", "trainer.max_epochs=1", "trainer.device=cpu", f"output_dir={out}"]) == 0
    assert "test/acc=" in capsys.readouterr().out
    assert "test/acc" in json.loads((out / "metrics.json").read_text())
    # a config Hydra refuses is its message and exit code 1, not a traceback
    assert main(["train", "model.hiden=3"]) == 1
    err = capsys.readouterr().err
    assert "hiden" in err and "Traceback" not in err


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_hydra_help(command, capsys):
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert ("== Config ==" in out or "== Keys and defaults ==" in out) and "_schema" not in out.split("==")[1]


def test_no_argument_parsing_outside_the_cli_package():
    """Every entry point is a Hydra app in graphmm/cli: nothing else reads sys.argv or
    builds an argparse parser, and the modules run as `python -m graphmm.<name>` hand
    over to graphmm.cli."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel.startswith("cli/"):
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr == "argv" and getattr(node.value, "id", "") == "sys":
                offenders.append(f"{rel}:{node.lineno} sys.argv")
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                if "argparse" in names:
                    offenders.append(f"{rel}:{node.lineno} argparse")
    assert offenders == []
    for name in ("train", "predict", "pretrain"):
        assert f"from graphmm.cli.{name} import main" in (PACKAGE / f"{name}.py").read_text()
    # no runnable module is named like a standard-library module that it would shadow
    # when run as a script (its folder goes first on sys.path)
    runnable = [*PACKAGE.glob("*.py"), *(PACKAGE / "cli").glob("*.py")]
    assert not [p.name for p in runnable if p.stem in sys.stdlib_module_names]


def test_module_aliases_still_run(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "DGLBACKEND": "pytorch", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "graphmm.predict", "--help"], capture_output=True, text=True,
                          env=env, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0 and "usage: python -m graphmm predict" in proc.stdout, proc.stderr


def test_only_a_command_that_owns_its_process_freezes_the_collector():
    import gc

    from graphmm.cli import _import_command

    before = gc.get_freeze_count()
    assert _import_command("graphmm.cli.inspect_graph", freeze=False).main is not None
    assert gc.isenabled() and gc.get_freeze_count() == before  # main([...]) in a program: untouched
    code = ("import gc, sys\nfrom graphmm.cli import main\nsys.argv = ['graphmm', 'predict', '--help']\n"
            "main()\nprint(gc.isenabled(), gc.get_freeze_count() > 100000)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "True True"  # the process's own command line: frozen


def test_runs_as_command_reads_the_interpreters_command_line():
    from graphmm._compat import runs_as_command

    assert runs_as_command(["python", "-m", "graphmm", "predict", "ckpt_path=x"])
    assert runs_as_command(["python", "-m", "graphmm.train", "experiment=mr"])
    assert runs_as_command(["/venv/bin/python", "/venv/bin/graphmm", "train"])
    assert not runs_as_command(["python", "-m", "graphmmx"])
    assert not runs_as_command(["python", "-m", "pytest", "tests"])
    assert not runs_as_command(["python", "-c", "import graphmm"])
    assert not runs_as_command(["python", "my_script.py"])
    assert not runs_as_command(["python"])
    # the interpreter's options come first (torchrun: python -u -m ...)
    assert runs_as_command(["python", "-u", "-m", "graphmm.train"])
    assert runs_as_command(["python", "-X", "importtime", "-W", "ignore", "-O", "-m", "graphmm", "predict"])
    assert not runs_as_command(["python", "-u", "-c", "import graphmm"])
    assert not runs_as_command(["python", "-X", "importtime", "script.py"])


def test_importing_graphmm_freezes_the_collector_only_in_a_command_process():
    env = {"PATH": "/usr/bin:/bin", "DGLBACKEND": "pytorch", "OMP_NUM_THREADS": "1"}
    code = "import gc, graphmm; print(gc.isenabled(), gc.get_freeze_count())"
    program = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert program.returncode == 0, program.stderr
    enabled, frozen = program.stdout.split()
    assert enabled == "True" and int(frozen) == 0  # a user's program: the collector as it was
    # `python -m graphmm` imports the package (and DGL) before its __main__ runs: seen as that
    # process's command line, the import freezes what it made
    probe = ("import gc, sys; sys.orig_argv = [sys.executable, '-m', 'graphmm']; import graphmm; "
             "print(gc.isenabled(), gc.get_freeze_count())")
    frozen_run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=300)
    assert frozen_run.returncode == 0, frozen_run.stderr
    enabled, frozen = frozen_run.stdout.split()
    assert enabled == "True" and int(frozen) > 100_000, frozen_run.stderr
