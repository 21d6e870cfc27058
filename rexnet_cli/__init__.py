"""The command line of rexnet_backbones: one module per command (``rexnet-train``, ``rexnet-test``, ...).

A separate top-level package, so that a command parses its arguments before anything imports torch:
importing any module of ``rexnet_backbones`` runs ``rexnet_backbones/__init__.py``, which registers the
timm models (and so imports torch). Each command's ``main(argv=None) -> int`` parses with argparse,
then imports the library and calls it through :func:`rexnet_backbones.cli.run_cli`. ``tools/*.py`` are
thin shims that call these ``main`` functions.
"""
