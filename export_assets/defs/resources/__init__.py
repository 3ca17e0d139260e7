"""Resources: the ProxyWhirl source, the export destination, the IO manager that publishes
and verifies, and the failure notifier."""
