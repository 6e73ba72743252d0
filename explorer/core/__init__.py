"""Pure computation: families, loading, sampling, scoring, metrics, provenance, attribution.

Nothing in this package imports ipywidgets or IPython (a test enforces it).
"""
