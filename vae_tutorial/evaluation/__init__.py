"""Evaluation: test bounds in nats and bits/dim, honest comparisons between models, and
annealed importance sampling with bidirectional Monte Carlo.
"""
