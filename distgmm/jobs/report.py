"""A visual report of a run: PNG figures and one self-contained ``report.html``.

Figures: the lower bound per iteration (every candidate of a sweep), BIC/AIC against
the number of components (sweeps), component weights and cluster sizes, and the data
seen along its top two principal components (from the covariance computed over all
rows) with every component's 1, 2 and 3 sigma ellipses over a sample of points.
matplotlib (the ``plot`` extra) draws them with the non-interactive Agg backend, so
reports work on headless machines.
"""

from __future__ import annotations

import base64
import html
import io
import posixpath

import numpy as np


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ImportError(
            "Reports need matplotlib: pip install 'distgmm[plot]'"
        ) from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def principal_axes(total: np.ndarray, n: float, cross: np.ndarray, center=0.0):
    """Mean and top-two principal axes from ``sum (x - c)`` and ``sum (x - c)(x - c)^T``.

    ``center`` ``c`` is any point near the data (the mixture's centre): sums about it
    keep their digits however far the data lies from the origin.
    """
    shift = total / n
    cov = cross / n - np.outer(shift, shift)
    mean = shift + center
    values, vectors = np.linalg.eigh((cov + cov.T) / 2)
    order = np.argsort(values)[::-1][:2]
    axes = vectors[:, order]
    if axes.shape[1] == 1:  # one feature: plot it against zero
        axes = np.hstack([axes, np.zeros_like(axes)])
    return mean, axes, values[order]


def _fig_convergence(plt, curves: dict):
    fig, ax = plt.subplots(figsize=(6.4, 4))
    for label, values in curves.items():
        if values:
            ax.plot(range(1, len(values) + 1), values, marker=".", label=label)
    ax.set_xlabel("EM iteration")
    ax.set_ylabel("lower bound (mean log-likelihood)")
    ax.set_title("Convergence")
    if 1 < len(curves) <= 12:
        ax.legend(fontsize="small")
    return fig


def _fig_selection(plt, table: list):
    fig, ax = plt.subplots(figsize=(6.4, 4))
    types = sorted({row["covariance_type"] for row in table})
    for ct in types:
        rows = sorted((r for r in table if r["covariance_type"] == ct),
                      key=lambda r: r["n_components"])
        ks = [r["n_components"] for r in rows]
        ax.plot(ks, [r["bic"] if r["bic"] is not None else np.nan for r in rows],
                marker="o", label=f"BIC {ct}")
        ax.plot(ks, [r["aic"] if r["aic"] is not None else np.nan for r in rows],
                marker="x", linestyle="--", label=f"AIC {ct}")
    ax.set_xlabel("number of components")
    ax.set_ylabel("criterion (lower is better)")
    ax.set_title("Model selection")
    ax.legend(fontsize="small")
    return fig


def _fig_weights(plt, weights, sizes, off=()):
    fig, (a, b) = plt.subplots(1, 2, figsize=(8, 3.6))
    ks = np.arange(len(weights))
    a.bar(ks, weights, color=["lightgrey" if k in off else f"C{k % 10}" for k in ks])
    a.set_title("component weights" + (" (grey: switched off)" if len(off) else ""))
    a.set_xlabel("component")
    b.bar(ks, sizes, color=[f"C{k % 10}" for k in ks])
    b.set_title("cluster sizes (rows labelled)")
    b.set_xlabel("component")
    fig.tight_layout()
    return fig


def _fig_projection(plt, points, labels, means, covariances, mean, axes):
    from matplotlib.patches import Ellipse

    fig, ax = plt.subplots(figsize=(6.4, 6))
    xy = (points - mean) @ axes
    ax.scatter(xy[:, 0], xy[:, 1], s=3, alpha=0.35,
               c=[f"C{k % 10}" for k in labels], linewidths=0)
    for k, (m, c) in enumerate(zip(means, covariances)):
        centre = (m - mean) @ axes
        c2 = axes.T @ c @ axes
        values, vectors = np.linalg.eigh((c2 + c2.T) / 2)
        values = np.maximum(values, 0)
        angle = np.degrees(np.arctan2(vectors[1, 1], vectors[0, 1]))
        for sigma in (1, 2, 3):
            ax.add_patch(Ellipse(centre, 2 * sigma * np.sqrt(values[1]),
                                 2 * sigma * np.sqrt(values[0]), angle=angle, fill=False,
                                 color=f"C{k % 10}", linewidth=1.6 / sigma))
        ax.plot(*centre, marker="+", color="black")
    ax.set_xlabel("principal component 1")
    ax.set_ylabel("principal component 2")
    ax.set_title("Data and components (1, 2, 3 sigma)")
    ax.set_aspect("equal", adjustable="datalim")
    return fig


def write_report(url: str, metrics: dict, model, projection: dict,
                 storage_options: dict | None = None, gridded: dict | None = None
                 ) -> list[str]:
    """Draw the figures and write ``report/*.png`` and ``report.html`` under ``url``.

    Parameters
    ----------
    url : str
        Directory (the run's staging directory).
    metrics : dict
        The run's metrics (lower bounds, selection table, weights, sizes).
    model : GaussianMixture
        The fitted model.
    projection : dict
        ``total`` and ``cross`` (sum of ``x - center`` and of its outer products),
        ``n``, ``center``, ``points`` (a sample of rows) and ``labels`` (their labels).
    gridded : dict, optional
        Gridded input: ``grid`` and ``label_map`` (the labels of the first 2-D slice);
        adds the label map and the mean profile of each component
        (:mod:`distgmm.jobs.gridded_report`).

    Returns
    -------
    list of str
        The files written, relative to ``url``.
    """
    import fsspec

    plt = _pyplot()
    fs, root = fsspec.core.url_to_fs(url, **(storage_options or {}))
    figures = {}
    selection = metrics.get("selection")
    if selection:
        curves = {f"k={r['n_components']} {r['covariance_type']}": r.get("lower_bounds") or []
                  for r in selection["candidates"]}
    else:
        curves = {"fit": metrics["lower_bounds"]}
    figures["convergence"] = _fig_convergence(plt, curves)
    if selection:
        figures["selection"] = _fig_selection(plt, selection["candidates"])
    figures["weights"] = _fig_weights(plt, metrics["weights"], metrics["cluster_sizes"],
                                      metrics.get("switched_off", ()))
    mean, axes, _ = principal_axes(projection["total"], projection["n"], projection["cross"],
                                   projection.get("center", 0.0))
    figures["projection"] = _fig_projection(
        plt, projection["points"], projection["labels"], model.means_,
        _full_covariances(model), mean, axes)
    if gridded:
        from .gridded_report import gridded_figures

        figures.update(gridded_figures(plt, model, **gridded))
    written, images = [], []
    fs.makedirs(posixpath.join(root, "report"), exist_ok=True)
    for name, fig in figures.items():
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        png = buf.getvalue()
        fs.pipe_file(posixpath.join(root, "report", f"{name}.png"), png)
        written.append(f"report/{name}.png")
        images.append((name, base64.b64encode(png).decode()))
    fs.pipe_file(posixpath.join(root, "report.html"), _html(metrics, images).encode())
    return ["report.html", *written]


def _full_covariances(model) -> np.ndarray:
    k, d = model.means_.shape
    cov = model.covariances_
    return {"full": lambda: cov, "tied": lambda: np.broadcast_to(cov, (k, d, d)),
            "diag": lambda: np.stack([np.diag(c) for c in cov]),
            "spherical": lambda: np.stack([np.eye(d) * c for c in cov])}[
        model.covariance_type]()


def _bayes_rows(metrics: dict) -> str:
    """A Bayesian mixture's weight per component, marking those switched off."""
    if metrics.get("kind") != "bayes":
        return ""
    off = set(metrics.get("switched_off", ()))
    cells = "".join(
        f"<tr><td>{k}</td><td>{w:.6g}</td><td>{'switched off' if k in off else 'on'}</td></tr>"
        for k, w in enumerate(metrics["weights"]))
    return (f"<tr><th>kind</th><td>Bayesian (variational): "
            f"{metrics.get('effective_components')} of {len(metrics['weights'])} components "
            "used</td></tr><tr><th>weights</th><td><table><tr><th>component</th>"
            f"<th>weight</th><th>state</th></tr>{cells}</table></td></tr>")


def _html(metrics: dict, images: list) -> str:
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(metrics.get(k)))}</td></tr>"
        for k in ("n_samples", "n_features", "n_components", "covariance_type", "n_iter",
                  "converged", "lower_bound", "bic", "aic", "cluster_sizes"))
    rows += _bayes_rows(metrics)
    figs = "".join(
        f'<figure><img alt="{name}" src="data:image/png;base64,{data}">'
        f"<figcaption>{name}</figcaption></figure>" for name, data in images)
    title = html.escape(str((metrics.get("job") or {}).get("name") or "distgmm run"))
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title>"
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
            "th,td{border:1px solid #ccc;padding:4px 8px;text-align:left}"
            "figure{display:inline-block;margin:1em}</style></head><body>"
            f"<h1>{title}</h1><table>{rows}</table>{figs}</body></html>")
