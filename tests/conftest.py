# Fixtures shared across test modules live in their own files, registered here.
pytest_plugins = ["hub_fixtures"]
