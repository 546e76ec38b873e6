"""Monitoring: drift checks now; concept drift, alerts and retrain triggers later."""
