"""The cycle: detect, apply the clinical rules, plan, dispatch, build messages, digest."""
