"""Tests of fleetwise.forecast (a package so that test_models.py does not clash with tests/catalog/test_models.py)."""
