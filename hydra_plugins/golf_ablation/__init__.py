"""golf's ablation sweeper (``hydra/sweeper=ablation``): see :mod:`.sweeper`."""
