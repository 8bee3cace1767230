"""Runs over many images: the resumable runner, the Ray cluster, sweeps, the result store,
datasets, reports and the read-only records reader.
"""
