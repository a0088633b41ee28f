# Root conftest: makes pytest put the repository root on sys.path so tests can import pipeline.
