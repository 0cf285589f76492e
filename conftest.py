"""The suite's pytest entry: loads the fixture plugins, one per pipeline stage.

Options and the parametrization over the model registry live in fixtures/options.py.
"""
pytest_plugins = [
    "fixtures.options",
    "fixtures.weights",
    "fixtures.export",
    "fixtures.compile",
    "fixtures.data",
    "fixtures.outputs",
    "fixtures.report",
]
