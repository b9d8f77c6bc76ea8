"""What a run leaves: summary, intervals, tables, the HTML report, traces, analysis."""
