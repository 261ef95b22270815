"""The registry in the OMOP Common Data Model v5.4 with its Oncology extension (docs/omop.md).

:mod:`~clms_etl.omop.build` turns the warehouse's tables into CDM tables (pseudonyms as
``person_source_value``, dates exact or shifted per person), :mod:`~clms_etl.omop.mapping` holds
the pinned concepts (``concepts.csv``), :mod:`~clms_etl.omop.cdm` the official DDL,
:mod:`~clms_etl.omop.quality` the Data Quality Dashboard's checks that need no vocabulary, and
:mod:`~clms_etl.omop.export` writes a folder (CSV + DuckDB) or a database.
"""
