"""The clinicians' report: one self-contained HTML file and an Excel workbook of the study's tables."""
