"""clms-etl: registry ETL library (no Dagster imports here)."""
