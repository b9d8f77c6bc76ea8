"""Operations that act on a running fleet: power capping."""
