"""golf's Hydra launchers (submitit on Slurm or locally); see :mod:`.launcher` and ``launch/README.md``."""
