"""Operations that act on a running fleet: admission, autoscaling, failures and repairs, replica
lifecycles, model swaps, power capping, time slicing."""
