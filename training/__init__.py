"""e2llm.training: the three training stages, evaluation, baselines and the `e2llm` command line."""
