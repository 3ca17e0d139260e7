"""Reports people read: the weekly PDF health report and the analytics workbook."""
