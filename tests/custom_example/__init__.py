"""A user's own network and images, reaching the pipeline through configs only (tests/test_custom_model.py)."""
