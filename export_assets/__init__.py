"""export_assets: governed, incremental exports of ProxyWhirl deployments, on Dagster."""
