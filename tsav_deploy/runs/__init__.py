"""Runs over many videos or a stream, above the front door: a batch into one output folder, an
isolated worker, Ray, live runs, the folder's pages, the benchmark and the demo."""
