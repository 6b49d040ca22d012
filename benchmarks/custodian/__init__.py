"""Support for the idle-scan benchmark against Cloud Custodian: the counting proxy and the c7n policy."""
