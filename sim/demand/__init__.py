"""The demand: arrival processes, length distributions, media, sessions, traces, the workload."""
