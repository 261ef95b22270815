"""Imported by the code server's forkserver (:func:`assets.run_workers.warm_code_server`): what a run worker
imports to open this deployment's Dagster instance and warehouse, imported once for every run it forks."""

from assets.run_workers import preload_deployment

preload_deployment()
