"""The project's defs folder (``[tool.dg.project] defs_module``): every module here is loaded by
``dg.load_from_defs_folder`` into the code location (``assets/definitions.py``), and
``dg scaffold defs`` writes new definitions here."""
