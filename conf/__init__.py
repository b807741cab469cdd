"""nnbench's Hydra configs: conf/ in the repository, installed as the package nnbench.conf
(pyproject.toml maps it), so that an installed copy finds them."""
