"""What every running component shares: the request table, the clock, the column store."""
