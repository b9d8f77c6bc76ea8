"""Questions asked of many runs: sweep, plan, compare, calibrate, fidelity."""
