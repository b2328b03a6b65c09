"""Locust scenarios, correctness verification and a local runner for humtemp."""
