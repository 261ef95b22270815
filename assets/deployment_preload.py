"""Imported last by a forkserver of this code location (:func:`assets.run_workers.warm_code_server`,
:func:`assets.automation.warm_executor`): what a run or step process imports to open this deployment's
Dagster instance and warehouse, imported once for every process it forks; then everything the forkserver
imported is moved out of the garbage collector's sight (``gc.freeze``): a forked process neither scans
those objects again in its collections nor copies their memory pages by touching them."""

import gc

from assets.run_workers import preload_deployment

preload_deployment()
gc.freeze()
