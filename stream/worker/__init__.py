"""The stream worker: Faust wiring, the batch pipeline with its acknowledgements and checkpoints, metrics, and the `hfrisk worker` command."""
