"""Molecular summary of the laboratory's results (profile classes, recurrent alterations, Table 3, cBioPortal).

Kept import-light: :mod:`clms_etl.warehouse.schema` imports :mod:`clms_etl.molecular.tables`.
"""
