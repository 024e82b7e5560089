"""golf's ablation sweeper (``hydra/sweeper=ablation``): see :mod:`.sweeper`.

The planning modules are named ``_techniques`` and ``_plan`` so that Hydra's plugin scan, which
executes every public module of ``hydra_plugins`` again in place, leaves them (and their classes) alone.
"""
