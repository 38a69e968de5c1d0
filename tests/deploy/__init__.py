"""Deployment tests: replicas of the app behind nginx on one PostgreSQL, in Chromium."""
