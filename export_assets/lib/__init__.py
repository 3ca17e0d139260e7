"""Library code that does not import Dagster: reading the source, writing and verifying
exports, security, rendering reports, restoring and the sample deployment.

Each part can be used and tested on its own; ``export_assets.defs`` wires them into assets,
checks, jobs and resources. ``export_assets_tests/test_imports.py`` proves no module here
loads Dagster.
"""
