"""Survival analysis of the registry (endpoints, Kaplan-Meier, univariate analysis, Table 1/2, Figure 2).

Kept import-light: :mod:`clms_etl.warehouse.schema` imports :mod:`clms_etl.survival.tables`.
"""
