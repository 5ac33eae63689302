"""Tooling around the occupancy node, never imported by it: nuScenes -> bag (gausstr-bag), bag player
(gausstr-play), node-in-a-process replay and output recording (tests, benchmarks), the end-to-end demo."""
