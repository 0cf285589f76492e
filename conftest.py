"""The suite's pytest entry: loads the fixture plugins, one module per pipeline stage.

Options are declared in video_model_conformance.py (the installed entry point); their
validation and the parametrization over the model registry are in fixtures/options.py.
"""
pytest_plugins = [
    "video_model_conformance",
    "fixtures.options",
    "fixtures.weights",
    "fixtures.export",
    "fixtures.compile",
    "fixtures.data",
    "fixtures.outputs",
    "fixtures.report",
    "fixtures.benchmark",
    "pytester",  # the suite tests itself by running itself (tests/conftest.py: run_suite)
]
