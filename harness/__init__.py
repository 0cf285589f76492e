"""Conformance and benchmark harness for deployed video models: plain pipeline stages."""
