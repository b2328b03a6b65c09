"""Monitoring assets checks: dashboard round trip, PromQL syntax, alert rule tests."""
