"""Scheduled jobs: APScheduler 3 in the process that holds the scheduler lease, one run per slot."""
