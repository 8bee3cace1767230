"""The H-Sets method, step by step: IG and its seeds, Hessian rows, thresholds, growth,
IDG values, the heatmap, and the Explainer that runs them in order.
"""
