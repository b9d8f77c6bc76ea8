"""Reading scenario files: YAML with line numbers, units, limits, the spec base and its errors."""
