"""The suite's pytest entry: loads the fixture plugins (options, pipeline stages, report).

Options and the parametrization over the model registry live in fixtures/options.py.
"""
pytest_plugins = [
    "fixtures.options",
    "fixtures.pipeline",
    "fixtures.export",
    "fixtures.outputs",
    "fixtures.report",
]
