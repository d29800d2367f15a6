"""graphmm's command line: every entry point is a Hydra app in this package.

One command, three subcommands, each composed by Hydra from ``graphmm/conf``::

    python -m graphmm train   [overrides]            # the same as python -m graphmm.train
    python -m graphmm pretrain [overrides]           # self-supervised; then train model.init_from=...
    python -m graphmm predict ckpt_path=RUN input.image=digit.png
    python -m graphmm inspect split=test index=3 out=graph.png
    graphmm <command> ...                             # the installed script

Each subcommand takes Hydra overrides, so ``--help``, ``--cfg job``, ``-m`` sweeps
and the override grammar work the same everywhere. Free text follows that
grammar: quote a text with commas, brackets or ``=`` for Hydra inside the shell's
quotes (``'input.text="one, two"'``), or pass it as a file (``input.text_file=``).

:func:`hydra_command` turns a function of the composed config into such a
command, with graphmm's exit codes: ``0`` success, ``1`` an error (a missing or
unreadable file, a bad checkpoint, a config Hydra cannot compose), ``2`` a usage
error graphmm detects (:class:`graphmm.predict.UsageError`); each error is one
line on stderr, without a traceback.
"""

from __future__ import annotations

import functools
import gc
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["COMMANDS", "hydra_command", "main", "one_line", "run_app"]

#: Subcommand -> module whose ``main(argv) -> int`` runs it.
COMMANDS: dict[str, str] = {
    "train": "graphmm.cli.train",
    "pretrain": "graphmm.cli.pretrain",
    "predict": "graphmm.cli.predict",
    "inspect": "graphmm.cli.inspect_graph",
}

USAGE = """usage: python -m graphmm {train,pretrain,predict,inspect} [key=value ...] [--help]

  train    train a model (Hydra config graphmm/conf/config.yaml; also python -m graphmm.train)
  pretrain self-supervised pretraining of a model's encoders and GNN (then train model.init_from=...)
  predict  classify one input, or generate its text, with a trained checkpoint
  inspect  draw one sample's graph to a PNG (and GraphML)

Run `python -m graphmm <command> --help` for a command's keys."""


def one_line(err: BaseException) -> str:
    """An exception as one line: ``KeyError``'s message without its quotes, blanks folded."""
    msg = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
    return " ".join(msg.split()) or type(err).__name__


def run_app(app: Callable[[], Any], argv: Sequence[str] | None, prog: str) -> int:
    """Run a ``@hydra.main`` app on ``argv`` (default: ``sys.argv[1:]``); its exit code.

    Hydra reads its overrides from ``sys.argv``, so ``argv`` is put there for the
    call and restored after it; Hydra's own exits (``--help``, a composition
    error) become the return value instead of ending the process.
    """
    saved = sys.argv
    if argv is not None:
        sys.argv = [prog, *argv]
    try:
        app()
    except SystemExit as exit_:
        code = exit_.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    finally:
        sys.argv = saved
    return 0


def hydra_command(config_name: str, prog: str) -> Callable[[Callable[[Any], int]], Callable[..., int]]:
    """Decorator: ``body(cfg) -> exit code`` becomes ``main(argv=None) -> exit code``.

    ``main`` composes ``graphmm/conf/<config_name>.yaml`` with the overrides in
    ``argv`` under ``@hydra.main`` and calls ``body`` with the config. A
    :class:`~graphmm.predict.UsageError` is printed as ``<prog>: error: ...`` and
    gives ``2``; a missing file, a bad value or an unreadable checkpoint gives ``1``.

    Args:
        config_name: Primary config in ``graphmm/conf`` (e.g. ``"predict"``).
        prog: Name used in error lines (``graphmm.predict``).
    """

    def wrap(body: Callable[[Any], int]) -> Callable[..., int]:
        @functools.wraps(body)
        def main(argv: Sequence[str] | None = None) -> int:
            import hydra

            from graphmm.config import CONF_DIR
            from graphmm.predict import UsageError

            os.environ.setdefault("MPLBACKEND", "Agg")
            result = [0]

            def task(cfg: Any) -> None:
                try:
                    result[0] = body(cfg)
                except UsageError as err:
                    print(f"{prog}: error: {one_line(err)}", file=sys.stderr)
                    result[0] = 2
                except (FileNotFoundError, ValueError, RuntimeError, KeyError, OSError) as err:
                    print(f"{prog}: error: {one_line(err)}", file=sys.stderr)
                    result[0] = 1

            # Hydra names the job after the task function's module: `predict`, `inspect`
            task.__module__, task.__qualname__ = body.__module__, body.__qualname__
            app = hydra.main(config_path=CONF_DIR, config_name=config_name, version_base="1.3")(task)
            code = run_app(app, argv, prog)
            return code or result[0]

        return main

    return wrap


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m graphmm <command> [overrides]``; returns the exit code.

    Called without ``argv`` (the ``graphmm`` script, ``python -m graphmm``) it runs the
    process's own command line, and owns the process: see :func:`_import_command`.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command not in COMMANDS:
        print(f"graphmm: error: unknown command {command!r}; choose one of {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    return int(_import_command(COMMANDS[command], freeze=argv is None).main(rest))


def _import_command(module: str, freeze: bool = True) -> Any:
    """Import a command's module without the cyclic garbage collector, and with
    ``freeze`` move every object made so far to its permanent generation
    (:func:`gc.freeze`).

    What the imports make (torch, DGL, Hydra: some 10^6 objects) is not garbage and
    lives as long as the process, yet each full collection walks all of it, and so
    does the collection at interpreter exit: together about 0.3 s of a 2 s prediction
    on these machines. Only a command that owns its process freezes; ``import graphmm``
    or ``main([...])`` in a user's program leave the collector as it was.
    """
    collecting = gc.isenabled()
    gc.disable()  # nothing to collect among fresh imports
    try:
        return importlib.import_module(module)
    finally:
        if freeze:
            gc.freeze()
        if collecting:
            gc.enable()
