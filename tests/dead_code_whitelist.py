"""Names the unused-symbol check (tests/test_dead_code.py, vulture) cannot see used: frameworks call
them by name or by registration. Parsed by vulture, never imported (``_`` is vulture's
whitelist placeholder). Add a name here only with the reason it is live."""

# ruff: noqa
# Dagster calls IO managers, resources and the instance class (named in deploy/dagster.*.yaml).
_.handle_output  # assets/handoff.py
_.load_input  # assets/handoff.py
OwnerOnlyInstance  # assets/private_instance.py, named by class in every dagster.yaml
_.config_schema  # assets/private_instance.py (ConfigurableClass)
_.setup_for_execution  # assets/resources.py
_.teardown_after_execution  # assets/resources.py
_._no_password  # assets/resources.py, a pydantic field validator

# Typer commands, registered by decorator (clms_etl/cli.py; run_command: assets/cli.py).
_root
synth
run_command
warehouse_create
warehouse_rollback
warehouse_roles
warehouse_rekey
warehouse_adopt_key
warehouse_docs
export_analysis_command
export_cbioportal_command
export_omop_command
survival_command

# SQLAlchemy: the dialect is registered by name, the attribute read by the engine (duckdb_buffered.py);
# the base tables are declared on the MetaData, their module-level names are for readers.
BufferedDuckDBDialect
supports_statement_cache
data_query
delivery_file
delivery_count
warehouse_key
audit_delivery

# Great Expectations reads its context's settings (clms_etl/warehouse/expectations.py).
_.progress_bars

# Read through self.__dict__ (clms_etl/readers/base.py, the lazy query list).
_._pending

# Fields of returned records: part of what the caller gets, not all read today.
covariate  # clms_etl/survival/univariate.py HazardRatio
old_key_id  # clms_etl/warehouse/load.py RekeyReport
rows_changed  # clms_etl/warehouse/load.py RekeyReport

# The contract of the clms_etl.synth.formats.<format> modules (a typing Protocol, documentation).
CentreFormat

# Dead: left for the branch that owns clms_etl/molecular (cBioPortal export); remove there.
ID_PATTERN  # clms_etl/molecular/cbioportal.py

# firthmodels' FirthCoxPH reads these fitted attributes in lrt() / conf_int(); FrequencyWeightedFirthCoxPH
# (clms_etl/survival/firth.py) sets them as its fit() does.
_.n_features_in_
_.loglik_
_.n_iter_
_._fisher_info
_._cov
_.pvalues_
_.lrt_bse_
_._profile_ci_cache
_._profile_ci_computed

# Dagster's code server reads it in StartRun (assets/run_workers.py sets it on the class).
_._mp_ctx

# Great Expectations registers an expectation class by its snake-case name when the class is created
# and reads its metric dependencies and _validate (clms_etl/warehouse/counted_query.py).
UnexpectedRowsCountExpectation
_.metric_dependencies
_._validate
