"""The classifier and its inputs: loading models and images, the explained score, and the
one forward-pass module every batched pass goes through.
"""
