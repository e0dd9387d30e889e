"""The maths and the objectives: KL terms, the reparameterisation trick, likelihoods, bounds,
Monte Carlo gradient estimators, and probabilistic PCA, whose evidence is exact.
"""
