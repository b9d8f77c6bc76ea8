"""Serving: replicas running their batching loops, and the router in front of them."""
