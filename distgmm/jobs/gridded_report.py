"""The report's gridded figures: a map of the labels and each component's mean profile.

The map is the first 2-D slice of the sample dimensions (e.g. the first time step) with
a categorical legend (grey: rows omitted for missing values). The profiles are the
fitted means laid out along the feature dimension, one panel per variable (e.g.
temperature and salinity against depth, one line per component).
"""

from __future__ import annotations

import numpy as np

_VERTICAL = ("depth", "z", "level", "lev", "pressure", "pres", "height", "altitude")


def _axis_values(grid, dim: str, n: int):
    coord = (grid.coords or {}).get(dim)
    if coord is not None and coord.ndim == 1 and np.issubdtype(coord.dtype, np.number):
        return np.asarray(coord.values)
    return np.arange(n)


def _fig_label_map(plt, label_map, grid, n_components: int):
    from matplotlib.colors import BoundaryNorm, ListedColormap
    from matplotlib.patches import Patch

    colors = ["lightgrey"] + [f"C{k % 10}" for k in range(n_components)]
    cmap = ListedColormap(colors)
    norm = BoundaryNorm(np.arange(-1.5, n_components), cmap.N)
    ydim, xdim = grid.sample_dims[-2:]
    ys = _axis_values(grid, ydim, label_map.shape[0])
    xs = _axis_values(grid, xdim, label_map.shape[1])
    fig, ax = plt.subplots(figsize=(6.4, 5))
    ax.pcolormesh(xs, ys, np.asarray(label_map), cmap=cmap, norm=norm, shading="auto")
    lead = ", ".join(f"{d}[0]" for d in grid.sample_dims[:-2])
    ax.set_title("Labels" + (f" at {lead}" if lead else ""))
    ax.set_xlabel(xdim)
    ax.set_ylabel(ydim)
    handles = [Patch(color=c, label=name) for c, name in zip(
        colors, ["missing"] + [f"component {k}" for k in range(n_components)])]
    ax.legend(handles=handles, fontsize="small", loc="upper left", bbox_to_anchor=(1, 1))
    return fig


def _fig_profiles(plt, model, grid):
    variables = list(grid.variables or ["value"])
    positions = np.asarray(grid.feature_coords)
    if not np.issubdtype(positions.dtype, np.number):
        positions = np.arange(len(positions))
    means = model.means_.reshape(model.n_components, len(variables), len(positions))
    fig, axes = plt.subplots(1, len(variables), figsize=(3.6 * len(variables), 4.4),
                             squeeze=False)
    for v, ax in enumerate(axes[0]):
        for k in range(model.n_components):
            ax.plot(means[k, v], positions, marker=".", color=f"C{k % 10}",
                    label=f"component {k}")
        ax.set_xlabel(f"mean {variables[v]}")
        ax.set_ylabel(grid.feature_dim)
        if str(grid.feature_dim).lower() in _VERTICAL:
            ax.invert_yaxis()
    axes[0][-1].legend(fontsize="small")
    fig.suptitle("Mean profile of each component")
    fig.tight_layout()
    return fig


def gridded_figures(plt, model, grid, label_map=None) -> dict:
    """``{"label_map": fig, "profiles": fig}`` (each when it applies)."""
    figures = {}
    if label_map is not None:
        figures["label_map"] = _fig_label_map(plt, label_map, grid, model.n_components)
    if grid.feature_dim is not None and grid.feature_coords:
        figures["profiles"] = _fig_profiles(plt, model, grid)
    return figures
