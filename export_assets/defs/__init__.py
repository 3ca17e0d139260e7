"""What Dagster loads, by domain: ``exports`` (the daily records, templates, requests and
their checks), ``reports`` (the weekly PDF and workbook), ``operations`` (schedules,
sensors, retention, restore, the audit trail), the ProxyWhirl ``source`` assets and the
``resources``. ``export_assets.definitions`` merges each domain's ``Definitions``.

Library code without Dagster lives in ``export_assets.lib``.
"""
