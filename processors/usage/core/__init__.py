"""Usage rules as pure code: what counts, billing periods, thresholds."""
