"""The operations domain: schedules, sensors, retention, restore, the dead-run sweep and the
audit trail (``export_audit_log``)."""
