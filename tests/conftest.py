import numpy as np
import pytest


@pytest.fixture(scope="session")
def client():
    """A real distributed cluster: two worker processes on loopback."""
    from distributed import Client, LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address=None, memory_limit="2GiB",
    ) as cluster, Client(cluster) as c:
        yield c


def blobs(n=1500, d=3, k=3, seed=0, offset=0.0, spread=1.0):
    """Well-separated Gaussian blobs, shuffled."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=6.0, size=(k, d))
    labels = rng.integers(0, k, size=n)
    scale = rng.uniform(0.5, 1.5, size=(k, d))[labels]
    X = centers[labels] + spread * rng.normal(size=(n, d)) * scale
    return X + offset, labels, centers + offset


def sklearn_start(X, k, covariance_type, seed=0):
    """Initial parameters (weights, means, precisions) taken from data, for both libraries."""
    from sklearn.mixture import GaussianMixture as SK

    rng = np.random.default_rng(seed)
    means = X[rng.choice(len(X), k, replace=False)]
    weights = np.full(k, 1.0 / k)
    ref = SK(k, covariance_type=covariance_type, max_iter=1, weights_init=weights,
             means_init=means, random_state=seed)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref.fit(X)
    return dict(weights_init=weights, means_init=means, precisions_init=ref.precisions_)
