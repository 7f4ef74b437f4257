"""experiments: entry points and experiment definitions that turn a composed config into runs
(training, evaluation, the run store and W&B logging, benchmarks)."""
