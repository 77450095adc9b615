"""The Dask layer: row blocks, one tree reduction per pass, initialisers, EM loop."""
