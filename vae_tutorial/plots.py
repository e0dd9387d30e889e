"""PLACEHOLDER being replaced by the plots helper."""
def plot_history(history, ax=None):
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots()
    ax.plot(history["train_elbo"])
    return fig
