"""hsets_widgets: H-Sets (Hessian Sets) feature-interaction explanations, with notebook widgets."""
__version__ = "0.1.0"
