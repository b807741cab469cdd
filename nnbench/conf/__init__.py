"""Hydra configs, packaged with nnbench so an installed copy finds them."""
