"""Measures of a map or a set: sparsity, ROAD, insertion/deletion, the interaction test,
region effects and paired statistics.
"""
