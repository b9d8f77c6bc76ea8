"""The network: topology specs and graphs, and flows over links."""
